//! The SQL front end on the real `wire` binary: the Nexmark queries of examples/nexmark/sql/
//! run at one and at two cores and checked against the same plain-Rust references as their YAML
//! twins (tests/src/nexmark.rs), `wire check` errors that name the line and column, and
//! `wire explain` for SQL and YAML.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value as Json};
use wire_core::frontend::spec::PipelineSpec;
use wire_core::time::to_rfc3339;
use wire_tests::nexmark::{self, Events};
use wire_tests::rows::{assert_fields, assert_maps_eq, multiset};
use wire_tests::{read_jsonl_dir, repo_root, wire_bin};

/// Event-time jitter below the 4 s watermark delay: rows out of order, none late.
const JITTER: (&str, &str) = ("'seed' = '1'", "'seed' = '1', 'out_of_order_ms' = '3000'");
/// 30 s of event time instead of the examples' 100 s.
const SHORT: (&str, &str) = ("'events' = '1M'", "'events' = '300k'");

/// A SQL example with edits applied, and the events its nexmark tables generate.
struct Example {
    sql: String,
    events: Events,
}

impl Example {
    fn load(name: &str, edits: &[(&str, &str)]) -> Example {
        let path = repo_root().join("examples/nexmark/sql").join(name);
        let mut sql = std::fs::read_to_string(path).expect("example exists");
        for (from, to) in edits {
            assert!(sql.contains(from), "{name} changed: no `{from}`");
            sql = sql.replace(from, to);
        }
        let spec = PipelineSpec::parse(name, &sql).unwrap_or_else(|e| panic!("{e}"));
        let events = Events::of(&spec);
        Example { sql, events }
    }

    /// `wire run --no-progress --cores N` from the repository root, with the sinks' paths
    /// `./wire-output/...` moved into the returned temporary directory.
    fn run(&self, cores: usize) -> (tempfile::TempDir, Output) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sql = self
            .sql
            .replace("./wire-output/", &format!("{}/", dir.path().display()));
        let file = dir.path().join("query.sql");
        std::fs::write(&file, sql).expect("write query");
        let output = Command::new(wire_bin())
            .current_dir(repo_root())
            .args(["run", "--no-progress", "--cores", &cores.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg(&file)
            .output()
            .expect("wire runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "wire run: {}\n{stderr}",
            output.status
        );
        (dir, output)
    }

    /// At one and at two cores, the output `out` holds exactly `expected` (as a multiset),
    /// with `fields` in this order.
    fn check(&self, out: &str, fields: &[&str], expected: &[Json]) {
        assert!(
            expected.len() >= 3,
            "the reference has only {} rows",
            expected.len()
        );
        for cores in [1, 2] {
            let (dir, _) = self.run(cores);
            let out_dir = dir.path().join(out);
            assert_fields(&out_dir, fields);
            let got = read_jsonl_dir(&out_dir);
            assert_maps_eq(
                &multiset(&got),
                &multiset(expected),
                &format!("{out} at {cores} cores (row -> count)"),
            );
        }
    }
}

fn time(ms: i64) -> Json {
    to_rfc3339(ms).into()
}

const SINK_TO_FILE: (&str, &str) = (
    "'connector' = 'blackhole'",
    "'connector' = 'filesystem', 'path' = './wire-output/out'",
);

#[test]
fn q1_converts_every_price() {
    let example = Example::load(
        "q1.sql",
        &[("'events' = '10M'", "'events' = '20k'"), SINK_TO_FILE],
    );
    let expected: Vec<Json> = example
        .events
        .bids
        .iter()
        .map(|b| {
            json!({"auction": b.auction, "bidder": b.bidder, "price": 0.908 * b.price as f64,
                "channel": b.channel, "url": b.url, "date_time": time(b.date_time), "extra": b.extra})
        })
        .collect();
    let fields = [
        "auction",
        "bidder",
        "price",
        "channel",
        "url",
        "date_time",
        "extra",
    ];
    example.check("out", &fields, &expected);
}

#[test]
fn q2_selects_every_123rd_auction_as_csv() {
    let example = Example::load("q2.sql", &[("'events' = '1M'", "'events' = '100k'")]);
    let mut expected: Vec<String> = example
        .events
        .bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| format!("{},{}", b.auction, b.price))
        .collect();
    expected.sort();
    assert!(expected.len() >= 10);
    for cores in [1, 2] {
        let (_dir, output) = example.run(cores);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some("auction,price"));
        let mut got: Vec<String> = lines.map(str::to_string).collect();
        got.sort();
        assert_eq!(got, expected, "q2 at {cores} cores");
    }
}

#[test]
fn q3_joins_sellers_and_auctions() {
    let example = Example::load("q3.sql", &[SHORT]);
    let expected = nexmark::q3(&example.events);
    example.check("q3", &["name", "city", "state", "id"], &expected);
}

#[test]
fn q5_hot_items_per_hop_window() {
    let example = Example::load("q5.sql", &[SHORT, JITTER]);
    let expected = nexmark::q5(&example.events.bids);
    example.check(
        "q5",
        &["auction", "num", "window_start", "window_end"],
        &expected,
    );
}

#[test]
fn q7_highest_bids_per_tumbling_window() {
    let example = Example::load("q7.sql", &[SHORT, JITTER]);
    let expected = nexmark::q7(&example.events.bids);
    let fields = [
        "auction",
        "price",
        "bidder",
        "date_time",
        "extra",
        "window_end",
    ];
    example.check("q7", &fields, &expected);
}

#[test]
fn q8_new_users_by_window_join() {
    let example = Example::load("q8.sql", &[SHORT, JITTER]);
    let expected = nexmark::q8(&example.events);
    example.check("q8", &["id", "name", "starttime"], &expected);
}

#[test]
fn q11_bids_per_session() {
    let example = Example::load(
        "q11.sql",
        &[
            SHORT,
            JITTER,
            ("INTERVAL '10' SECOND", "INTERVAL '500' MILLISECOND"),
        ],
    );
    let expected = nexmark::q11(&example.events.bids, 500);
    example.check(
        "q11",
        &["bidder", "window_start", "window_end", "bid_count"],
        &expected,
    );
}

#[test]
fn q15_daily_statistics_with_distinct_and_filter() {
    let example = Example::load("q15.sql", &[]);
    let expected = nexmark::daily_stats(&example.events.bids, false);
    let stats: Vec<String> = nexmark::rank_stats(&[])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let fields: Vec<&str> = ["window_start", "window_end"]
        .into_iter()
        .chain(stats.iter().map(String::as_str))
        .collect();
    assert!(expected.len() >= 2, "the run should cross midnight");
    for cores in [1, 2] {
        let (dir, _) = example.run(cores);
        let out_dir = dir.path().join("q15");
        assert_fields(&out_dir, &fields);
        let got = read_jsonl_dir(&out_dir);
        assert_maps_eq(
            &multiset(&got),
            &multiset(&expected),
            &format!("q15 at {cores} cores"),
        );
    }
}

fn wire(args: &[&str], file: &Path) -> Output {
    Command::new(wire_bin())
        .current_dir(repo_root())
        .args(args)
        .arg(file)
        .output()
        .expect("wire runs")
}

#[test]
fn every_sql_example_checks() {
    let dir = repo_root().join("examples/nexmark/sql");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    assert!(names.len() >= 10);
    for path in names {
        let output = wire(&["check"], &path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", path.display());
        assert!(stderr.contains(": ok ("), "{stderr}");
    }
}

#[test]
fn check_errors_name_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.sql");
    let text = "CREATE TABLE bid WITH ('connector' = 'nexmark', 'events' = '1000');\n\
                CREATE TABLE out WITH ('connector' = 'blackhole');\n\
                INSERT INTO out SELECT auction,\n  prise * 2 AS p FROM bid;\n";
    std::fs::write(&file, text).expect("write");
    let output = wire(&["check"], &file);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.sql:4:3: "), "{stderr}");
    assert!(
        stderr.contains("unknown field `prise`; did you mean `price`?"),
        "{stderr}"
    );
    std::fs::write(&file, "CREATE TABLE bid WITH ('connector' = 'nexmark');\nINSERT INTO bid SELECT * FROM bid FULL JOIN bid AS b ON bid.auction = b.auction;\n").expect("write");
    let output = wire(&["check"], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.sql:2:"), "{stderr}");
    assert!(stderr.contains("not supported"), "{stderr}");
}

#[test]
fn explain_prints_the_plan_of_sql_and_yaml() {
    let sql = wire(
        &["explain"],
        &repo_root().join("examples/nexmark/sql/q5.sql"),
    );
    assert!(
        sql.status.success(),
        "{}",
        String::from_utf8_lossy(&sql.stderr)
    );
    let text = String::from_utf8_lossy(&sql.stdout);
    assert!(text.contains("source bid: nexmark bid"), "{text}");
    assert!(
        text.contains("window: hop 10000 ms every 2000 ms"),
        "{text}"
    );
    assert!(
        text.contains("first 1 with ties by num desc per [window_end]"),
        "{text}"
    );
    let yaml = wire(&["explain"], &repo_root().join("examples/nexmark/q5.yaml"));
    assert!(yaml.status.success());
    let text = String::from_utf8_lossy(&yaml.stdout);
    assert!(
        text.contains("window: hop 10000 ms every 2000 ms"),
        "{text}"
    );
    assert!(
        text.contains("first 1 with ties by num desc per [window_end]"),
        "{text}"
    );
}

#[test]
fn every_sql_snippet_in_the_docs_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for doc in ["README.md", "docs/sql.md"] {
        let text = std::fs::read_to_string(repo_root().join(doc)).expect("doc exists");
        for (index, block) in text.split("```sql\n").skip(1).enumerate() {
            let sql = block.split("```").next().expect("a closed fence");
            let file = dir.path().join(format!("snippet{index}.sql"));
            std::fs::write(&file, sql).expect("write");
            let output = wire(&["check"], &file);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{doc}, sql block {index}: {stderr}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} sql snippets");
}
