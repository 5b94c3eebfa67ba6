//! The SQL front end on the real `wire` binary: the Nexmark queries of examples/nexmark/sql/
//! run at one and at two cores and checked against the same plain-Rust references as their YAML
//! twins (tests/src/nexmark.rs), `wire check` errors that name the line and column, and
//! `wire explain` for SQL and YAML.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value as Json};
use wire_core::frontend::spec::PipelineSpec;
use wire_core::time::to_rfc3339;
use wire_tests::cluster::{
    create, start_cluster, wait_for_leader, wait_state, wirectl, wirectl_json,
};
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

/// Runs a bids-only example (q0, q1) over 20k events into a file and checks every bid came
/// out once, its price mapped by `price`.
fn check_bids(name: &str, price: fn(i64) -> Json) {
    let example = Example::load(
        name,
        &[("'events' = '10M'", "'events' = '20k'"), SINK_TO_FILE],
    );
    let expected: Vec<Json> = example
        .events
        .bids
        .iter()
        .map(|b| {
            json!({"auction": b.auction, "bidder": b.bidder, "price": price(b.price),
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
fn q1_converts_every_price() {
    check_bids("q1.sql", |p| (0.908 * p as f64).into());
}

#[test]
fn q0_passes_every_bid_through() {
    check_bids("q0.sql", |p| p.into());
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

/// q6's OVER aggregate emits each closed auction once, in closing order per seller, so every
/// row is checked, not only each seller's last.
#[test]
fn q6_average_selling_price_by_seller_over_rows() {
    let example = Example::load("q6.sql", &[SHORT, JITTER]);
    let (expected, ties) = nexmark::q6_over(&example.events);
    eprintln!(
        "q6: {} rows; {} sellers with auctions closing at the same time left out",
        expected.len(),
        ties.len()
    );
    for cores in [1, 2] {
        let (dir, _) = example.run(cores);
        let out_dir = dir.path().join("q6");
        assert_fields(&out_dir, &["seller", "expires", "avg", "count"]);
        let got: Vec<Json> = read_jsonl_dir(&out_dir)
            .into_iter()
            .filter(|row| !row["seller"].as_i64().is_some_and(|s| ties.contains(&s)))
            .collect();
        assert_maps_eq(
            &multiset(&got),
            &multiset(&expected),
            &format!("q6 at {cores} cores (row -> count)"),
        );
    }
}

/// q12's windows follow the wall clock, so only what does not depend on it is compared.
#[test]
fn q12_processing_time_windows_from_proctime() {
    let example = Example::load("q12.sql", &[SHORT]);
    for cores in [1, 2] {
        let before = nexmark::now_ms();
        let (dir, _) = example.run(cores);
        let after = nexmark::now_ms();
        let out = dir.path().join("q12");
        assert_fields(&out, &["bidder", "bid_count", "window_start", "window_end"]);
        let what = format!("q12 at {cores} cores");
        let rows = read_jsonl_dir(&out);
        nexmark::check_q12(&rows, &example.events.bids, (before, after), &what);
    }
}

/// CUMULATE on the real binary: bids per auction in windows growing by 2 s up to 10 s, rows
/// out of order but none late, against a plain count.
#[test]
fn cumulate_windows_count_the_bids_of_each_growing_window() {
    let text = "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
        url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR, \
        WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
        WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '100k', 'seed' = '1', \
        'out_of_order_ms' = '3000');\n\
        CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = './wire-output/out', 'format' = 'json');\n\
        INSERT INTO out SELECT auction, window_start, window_end, count(*) AS n \
        FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
        GROUP BY auction, window_start, window_end;";
    let spec = PipelineSpec::parse("cumulate.sql", text).unwrap_or_else(|e| panic!("{e}"));
    let example = Example {
        sql: text.to_string(),
        events: Events::of(&spec),
    };
    let (step, size) = (2000, 10_000);
    let mut counts: std::collections::BTreeMap<(i64, i64, i64), i64> = Default::default();
    for bid in &example.events.bids {
        let start = bid.date_time - bid.date_time.rem_euclid(size);
        let first = bid.date_time - bid.date_time.rem_euclid(step) + step;
        for end in (first..=start + size).step_by(step as usize) {
            *counts.entry((bid.auction, start, end)).or_default() += 1;
        }
    }
    let expected: Vec<Json> = counts
        .into_iter()
        .map(|((auction, start, end), n)| {
            json!({"auction": auction, "window_start": time(start), "window_end": time(end), "n": n})
        })
        .collect();
    example.check(
        "out",
        &["auction", "window_start", "window_end", "n"],
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
    // The count per auction reads only the auction and the time of a bid.
    assert!(
        text.contains("rows from other cores carry only: bid (auction, date_time)"),
        "{text}"
    );
    // ... so the generator makes only those two fields.
    assert!(
        text.contains("generates only the fields read after it: bid (auction, date_time)"),
        "{text}"
    );
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

#[test]
fn wirectl_creates_a_sql_pipeline_that_the_node_lowers_and_runs() {
    let example = Example::load("q5.sql", &[SHORT, JITTER]);
    let expected = nexmark::q5(&example.events.bids);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let sql = example
        .sql
        .replace("./wire-output/", &format!("{}/", out.display()));
    let file = dir.path().join("q5.sql");
    std::fs::write(&file, &sql).expect("write query");
    let nodes = start_cluster(dir.path(), 1);
    wait_for_leader(&nodes, Duration::from_secs(15));
    let endpoint = nodes[0].addr.clone();

    // A SQL error is refused by the node, naming the file, line and column; nothing is kept.
    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, sql.replace("FROM auction_bids", "FROM auction_bidz")).expect("write");
    let refused = wirectl(
        &endpoint,
        &["pipeline", "create", "-f", bad.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    let line = sql
        .lines()
        .position(|l| l.contains("FROM auction_bids"))
        .expect("q5 reads the view")
        + 1;
    assert!(stderr.contains(&format!("bad.sql:{line}:")), "{stderr}");
    assert!(
        stderr.contains("unknown table or view `auction_bidz`"),
        "{stderr}"
    );

    let created = create(&endpoint, &file, &[]);
    assert_eq!(created["name"], "q5", "{created}");
    wait_state(&endpoint, "q5", "finished");
    let got = read_jsonl_dir(&out.join("q5"));
    assert_maps_eq(
        &multiset(&got),
        &multiset(&expected),
        "q5 created with wirectl (row -> count)",
    );
    let pipeline = wirectl_json(&endpoint, &["pipeline", "get", "q5"]);
    assert_eq!(pipeline["spec"].as_str(), Some(sql.as_str()), "{pipeline}");
    let list = wirectl_json(&endpoint, &["pipeline", "list"]);
    assert_eq!(
        list["pipelines"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
}

/// `wire sql` with `stdin` as its standard input (not a terminal): its exit status, stdout and
/// stderr.
fn shell(stdin: &str) -> Output {
    let mut child = Command::new(wire_bin())
        .current_dir(repo_root())
        .arg("sql")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wire sql starts");
    let mut input = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("write statements");
    drop(input);
    child.wait_with_output().expect("wire sql runs")
}

/// The data rows of the result tables in a shell's output: lines `| a | b |` after the
/// header, cells trimmed.
fn table_rows(stdout: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut borders = 0;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with('+') {
            borders += 1;
            if borders == 3 {
                tables.push(std::mem::take(&mut rows));
                borders = 0;
            }
        } else if line.starts_with('|') && borders == 2 {
            let cells = line.trim_matches('|').split(" | ");
            rows.push(cells.map(|c| c.trim().to_string()).collect());
        }
    }
    tables
}

const SHELL_BID: &str = "CREATE TABLE bid (\n  auction BIGINT, bidder BIGINT, price BIGINT, \
    channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR\n) WITH ('connector' = \
    'nexmark', 'stream' = 'bid', 'events' = '20k', 'seed' = '1');\n";

#[test]
fn the_sql_shell_reads_statements_from_stdin_and_prints_rows() {
    let script = format!(
        "{SHELL_BID}CREATE TEMPORARY VIEW cheap AS\n  SELECT auction, price FROM bid WHERE price < 1000000;\n\
         SHOW TABLES;\nDESCRIBE cheap;\n\
         SET 'sql-client.row-limit' = '5';\nSELECT auction, price FROM cheap;\n\
         RESET 'sql-client.row-limit';\n\
         SELECT auction, price\n  FROM cheap WHERE auction % 123 = 0;\n"
    );
    let output = shell(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[INFO] table `bid` created"), "{stdout}");
    assert!(stdout.contains("[INFO] view `cheap` created"), "{stdout}");
    let tables = table_rows(&stdout);
    assert_eq!(tables.len(), 4, "{stdout}");
    assert_eq!(tables[0], [["bid", "table"], ["cheap", "view"]], "{stdout}");
    assert_eq!(
        tables[1],
        // A nexmark table's schema is fixed: its columns are never null.
        [["auction", "i64", "false"], ["price", "i64", "false"]],
        "{stdout}"
    );
    // The row limit stops the first query after five rows.
    assert_eq!(tables[2].len(), 5, "{stdout}");
    assert!(
        stdout.contains("5 rows (the row limit 5 is reached; query stopped)"),
        "{stdout}"
    );
    let spec = PipelineSpec::parse("bid.sql", &format!("{SHELL_BID}CREATE TABLE o WITH ('connector' = 'blackhole'); INSERT INTO o SELECT * FROM bid;"))
        .expect("the table parses");
    let events = Events::of(&spec);
    let mut expected: Vec<Vec<String>> = events
        .bids
        .iter()
        .filter(|b| b.price < 1_000_000 && b.auction % 123 == 0)
        .map(|b| vec![b.auction.to_string(), b.price.to_string()])
        .collect();
    expected.sort();
    assert!(expected.len() >= 3, "{expected:?}");
    let mut got = tables[3].clone();
    got.sort();
    assert_eq!(got, expected);
    assert!(
        stdout.contains(&format!("{} rows\n", expected.len())),
        "{stdout}"
    );
}

#[test]
fn a_sql_shell_script_stops_at_the_first_error_naming_line_and_column() {
    let script = format!("{SHELL_BID}SELECT auction,\n  prise FROM bid;\nSHOW TABLES;\n");
    let output = shell(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("[ERROR] line 2, column 3: unknown field `prise`; did you mean `price`?"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("| bid"),
        "SHOW TABLES ran after the error: {stdout}"
    );
}

#[test]
fn ctrl_c_stops_the_running_query_not_the_shell() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::process::CommandExt;
    // An unbounded source: the query runs until Ctrl-C.
    let unbounded =
        "CREATE TABLE bid (auction BIGINT, price BIGINT) WITH ('connector' = 'nexmark', \
         'stream' = 'bid', 'seed' = '1', 'events_per_second' = '200');\n";
    let mut child = Command::new(wire_bin())
        .current_dir(repo_root())
        .arg("sql")
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wire sql starts");
    let mut input = child.stdin.take().expect("stdin");
    let script = format!("{unbounded}SELECT auction, price FROM bid;\nSHOW TABLES;\n");
    input.write_all(script.as_bytes()).expect("write");
    drop(input);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    // The header (border, names, border), then the first row.
    while seen.iter().filter(|l: &&String| l.starts_with('|')).count() < 2 {
        let line = lines.next().expect("a row before the end").expect("utf-8");
        seen.push(line);
    }
    // Ctrl-C on a terminal signals the whole foreground process group.
    let pgid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.expect("utf-8")).collect();
    let status = child.wait().expect("wait");
    let text = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("(query stopped by Ctrl-C)"), "{text}");
    // The shell went on to the next statement.
    let shown = text
        .lines()
        .any(|l| l.starts_with('|') && l.contains(" bid |") && l.contains(" table |"));
    assert!(shown, "{text}");
}

/// A pipeline over `events` nexmark bids counting bids per 2 s window into `out`, with `set`
/// (SET statements) at its top.
fn counting_sql(set: &str, events: &str, out: &Path) -> String {
    format!(
        "{set}CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
        url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR, \
        WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
        WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '{events}', 'seed' = '1');\n\
        CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
        INSERT INTO out SELECT window_start, count(*) AS n \
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND)) \
        GROUP BY window_start, window_end;\n",
        out.display()
    )
}

/// `wire run --no-progress --cores 1 --data-dir DIR/data FILE ARGS…` in `dir`.
fn run_in(dir: &Path, file: &str, args: &[&str]) -> Output {
    const RUN: [&str; 6] = ["run", "--no-progress", "--cores", "1", "--data-dir", "data"];
    Command::new(wire_bin())
        .current_dir(dir)
        .args(RUN)
        .arg(file)
        .args(args)
        .output()
        .expect("wire runs")
}

#[test]
fn savepoint_flags_take_the_checkpoint_interval_of_the_files_settings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let set = "SET 'execution.checkpointing.interval' = '1s';\n";
    std::fs::write(
        dir.join("first.sql"),
        counting_sql(set, "50k", &dir.join("out1")),
    )
    .expect("write");
    let first = run_in(dir, "first.sql", &["--savepoint-dir", "savepoints"]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{}\n{stderr}", first.status);
    assert!(stderr.contains("savepoint written to"), "{stderr}");
    let savepoint = std::fs::read_dir(dir.join("savepoints"))
        .expect("savepoint directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("a savepoint");

    // The same query over more bids, in a data directory of its own, from the savepoint.
    let next = dir.join("next");
    std::fs::create_dir_all(&next).expect("dir");
    std::fs::write(
        next.join("first.sql"),
        counting_sql(set, "100k", &next.join("out2")),
    )
    .expect("write");
    let savepoint = savepoint.to_string_lossy();
    let second = run_in(&next, "first.sql", &["--from-savepoint", &savepoint]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{}\n{stderr}", second.status);
    assert!(stderr.contains("restoring checkpoint"), "{stderr}");

    // YAML `settings: {checkpoint_interval: 1s}` counts too.
    let yaml = format!(
        "name: counts\nsettings: {{checkpoint_interval: 1s}}\n\
         sources:\n  bids: {{type: nexmark, stream: bid, events: 20k, seed: 1}}\n\
         sinks:\n  out: {{type: file, path: {}, format: jsonl, from: bids}}\n",
        dir.join("out3").display()
    );
    std::fs::write(dir.join("p.yaml"), yaml).expect("write");
    let third = run_in(dir, "p.yaml", &["--savepoint-dir", "yaml-savepoints"]);
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{}\n{stderr}", third.status);
    assert!(stderr.contains("savepoint written to"), "{stderr}");

    // Without an interval anywhere the flags are refused, naming the flag and the file.
    std::fs::write(
        dir.join("plain.sql"),
        counting_sql("", "50k", &dir.join("out4")),
    )
    .expect("write");
    for flag in ["--savepoint-dir", "--from-savepoint"] {
        let refused = run_in(dir, "plain.sql", &[flag, "somewhere"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "error: {flag} needs checkpoints: pass --checkpoint-interval, or set an interval in plain.sql"
            )),
            "{stderr}"
        );
        assert!(!dir.join("out4").exists(), "a refused run wrote output");
    }
}

#[test]
fn core_errors_quote_the_setting_that_asked_for_the_cores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let set = "SET 'pipeline.max-parallelism' = '4';\nSET 'parallelism.default' = '8';\n";
    std::fs::write(dir.join("q.sql"), counting_sql(set, "1k", &dir.join("out"))).expect("write");
    // `wire run FILE ARGS…` is refused with exit 2 and this error; its stderr.
    let refused = |file: &str, args: &[&str], error: &str| {
        let output = Command::new(wire_bin())
            .current_dir(dir)
            .args(["run", "--no-progress", "--data-dir", "data", file])
            .args(args)
            .output()
            .expect("wire runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("error: {error}")), "{stderr}");
        stderr
    };
    let stderr = refused(
        "q.sql",
        &[],
        "SET 'parallelism.default' = '8' (line 2): the pipeline has 4 key groups",
    );
    assert!(!stderr.contains("--cores 8"), "{stderr}");

    let yaml = "name: counts\nsettings:\n  max_parallelism: 4\n  cores: 8\n\
         sources:\n  bids: {type: nexmark, stream: bid, events: 1k, seed: 1}\n\
         sinks:\n  out: {type: blackhole, from: bids}\n";
    std::fs::write(dir.join("p.yaml"), yaml).expect("write");
    let error = "`cores: 8` in the file's settings (line 4): the pipeline has 4 key groups";
    refused("p.yaml", &[], error);

    // The command line's number is the command line's.
    let error = "--cores 6: the pipeline has 4 key groups";
    refused("q.sql", &["--cores", "6"], error);
}
