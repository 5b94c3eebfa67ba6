//! The stateless Nexmark examples q10, q21 and q22, in YAML and in SQL (examples/nexmark/sql/),
//! run by the real `wire` binary and checked row by row against references computed here in
//! plain Rust from the same generator. The
//! references implement q21's regular expression and q22's split by hand, so they share no
//! code with the engine's functions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;
use wire_core::frontend::spec::{stored_file_name, PipelineSpec, SourceKind};
use wire_core::nexmark::{Bid, Event, EventKind, Generator};
use wire_tests::{read_jsonl_dir, repo_root, wire_bin};

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(name)).expect("example exists")
}

/// Replaces `from` in `text`, insisting that it is there (so a changed example fails loudly).
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "example changed: no `{from}`");
    text.replacen(from, to, 1)
}

/// `wire run --no-progress --cores N --data-dir DIR/data FILE`, run from the repository root.
fn wire_run(file: &Path, dir: &Path, cores: usize) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(repo_root())
        .args([
            "run",
            "--no-progress",
            "--cores",
            &cores.to_string(),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg(file);
    command
}

/// Runs `wire run` on `yaml` (written into `dir`; SQL text too) from the repository root.
fn run_wire(yaml: &str, dir: &Path, cores: usize) -> Output {
    let file = dir.join(stored_file_name("pipeline", yaml));
    std::fs::write(&file, yaml).expect("write pipeline");
    let output = wire_run(&file, dir, cores).output().expect("wire runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "wire run failed: {}\n{stderr}",
        output.status
    );
    output
}

/// Every bid among the events of the pipeline's first (nexmark) source.
fn bids(yaml: &str) -> Vec<Bid> {
    let spec = PipelineSpec::parse_stored("pipeline", yaml).expect("pipeline parses");
    let SourceKind::Nexmark(source) = &spec.sources[0].kind else {
        panic!("the first source is not nexmark");
    };
    let generator = Generator::new(source.generator.clone()).expect("generator config");
    (0..source.events.expect("bounded"))
        .filter(|n| generator.kind(*n) == EventKind::Bid)
        .filter_map(|n| match generator.event(n) {
            Event::Bid(bid) => Some(bid),
            _ => None,
        })
        .collect()
}

/// Example `name` with its output directory replaced by `out` and `events: 1M` by `events`
/// (`'path' = ...` and `'events' = '1M'` in SQL).
fn example_into(name: &str, query: &str, out: &Path, events: &str) -> String {
    if name.ends_with(".sql") {
        let sql = edit(
            &example(name),
            &format!("'path' = './wire-output/{query}'"),
            &format!("'path' = '{}'", out.display()),
        );
        return edit(&sql, "'events' = '1M'", &format!("'events' = '{events}'"));
    }
    let yaml = edit(
        &example(name),
        &format!("path: ./wire-output/{query}"),
        &format!("path: {}", out.display()),
    );
    edit(
        &yaml,
        "\n    events: 1M\n",
        &format!("\n    events: {events}\n"),
    )
}

fn sorted(rows: Vec<Json>) -> Vec<String> {
    let mut text: Vec<String> = rows.iter().map(Json::to_string).collect();
    text.sort();
    text
}

/// q21's `regexp_extract(url, '(&|^)channel_id=([^&]*)', 2)`, by hand: the value after the
/// leftmost `channel_id=` that starts the URL or follows a `&`, up to the next `&`.
fn url_channel_id(url: &str) -> Option<&str> {
    const KEY: &str = "channel_id=";
    let rest = match url.strip_prefix(KEY) {
        Some(rest) => Some(rest),
        None => url
            .char_indices()
            .filter(|(_, c)| *c == '&')
            .map(|(at, _)| &url[at + 1..])
            .find_map(|after| after.strip_prefix(KEY)),
    }?;
    Some(rest.find('&').map_or(rest, |end| &rest[..end]))
}

/// q21's channel id of a bid, by hand; `None` drops the bid.
fn channel_id(channel: &str, url: &str) -> Option<String> {
    let named = match channel.to_lowercase().as_str() {
        "apple" => Some("0"),
        "google" => Some("1"),
        "facebook" => Some("2"),
        "baidu" => Some("3"),
        _ => None,
    };
    named.or_else(|| url_channel_id(url)).map(str::to_string)
}

fn q21_row(bid: &Bid, channel_id: String) -> Json {
    serde_json::json!({
        "auction": bid.auction, "bidder": bid.bidder, "price": bid.price,
        "channel": bid.channel, "channel_id": channel_id,
    })
}

#[test]
fn q21_takes_the_channel_id_from_the_name_or_the_url() {
    q21("nexmark/q21.yaml", 2);
}

#[test]
fn q21_in_sql_at_one_and_two_cores() {
    q21("nexmark/sql/q21.sql", 1);
    q21("nexmark/sql/q21.sql", 2);
}

fn q21(name: &str, cores: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = example_into(name, "q21", &out, "300000");
    run_wire(&yaml, dir.path(), cores);
    let bids = bids(&yaml);
    let expected: Vec<Json> = bids
        .iter()
        .filter_map(|bid| Some(q21_row(bid, channel_id(&bid.channel, &bid.url)?)))
        .collect();
    let from_url = bids
        .iter()
        .filter(|b| url_channel_id(&b.url).is_some())
        .count();
    assert!(
        from_url > bids.len() / 4 && from_url < bids.len(),
        "both kinds of channel should be common: {from_url} of {}",
        bids.len()
    );
    assert_eq!(sorted(read_jsonl_dir(&out)), sorted(expected));
}

/// Bids the generator never makes: other channel names and URLs without (or with odd) ids.
const CRAFTED_BIDS: &[(&str, &str)] = &[
    ("Apple", "https://x/item.htm?query=1"),
    ("BAIDU", "https://x/item.htm?query=1&channel_id=77"),
    ("other", "channel_id=9&x=1"),
    ("other", "https://x/?a=1&channel_id=&b=2"),
    ("other", "https://x/?a=1&channel_id=1&channel_id=2"),
    ("other", "https://x/?a=1"),
    ("other", "https://x/?xchannel_id=5"),
    ("other", "https://x/?a=1&Channel_id=5"),
    ("", ""),
];

#[test]
fn q21_drops_bids_with_neither_a_named_channel_nor_a_channel_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let input = dir.path().join("bids.jsonl");
    let mut lines = String::new();
    for (i, (channel, url)) in CRAFTED_BIDS.iter().enumerate() {
        let bid = serde_json::json!({
            "auction": 1000 + i, "bidder": 2000 + i, "price": 10 * i, "channel": channel,
            "url": url, "date_time": 1_700_000_000_000_i64, "extra": "",
        });
        lines.push_str(&format!("{bid}\n"));
    }
    std::fs::write(&input, lines).expect("write input");
    let file_source = format!(
        "type: file\n    path: {}\n    schema: {{auction: i64, bidder: i64, price: i64, channel: string, url: string, date_time: timestamp, extra: string}}",
        input.display()
    );
    let yaml = example_into("nexmark/q21.yaml", "q21", &out, "300000");
    let yaml = edit(
        &yaml,
        "type: nexmark\n    stream: bid\n    events: 300000\n    seed: 1",
        &file_source,
    );
    run_wire(&yaml, dir.path(), 1);
    let expected: Vec<Json> = CRAFTED_BIDS
        .iter()
        .enumerate()
        .filter_map(|(i, (channel, url))| {
            let id = channel_id(channel, url)?;
            Some(serde_json::json!({
                "auction": 1000 + i, "bidder": 2000 + i, "price": 10 * i,
                "channel": channel, "channel_id": id,
            }))
        })
        .collect();
    let ids: Vec<Option<String>> = CRAFTED_BIDS.iter().map(|(c, u)| channel_id(c, u)).collect();
    let want = ["0", "3", "9", "", "1"].map(|s| Some(s.to_string()));
    assert_eq!(ids[..5], want, "the hand-made reference itself");
    assert!(ids[5..].iter().all(Option::is_none));
    assert_eq!(sorted(read_jsonl_dir(&out)), sorted(expected));
}

#[test]
fn q22_splits_each_url_into_its_first_three_directories() {
    q22("nexmark/q22.yaml", 2);
}

#[test]
fn q22_in_sql_at_one_and_two_cores() {
    q22("nexmark/sql/q22.sql", 1);
    q22("nexmark/sql/q22.sql", 2);
}

fn q22(name: &str, cores: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = example_into(name, "q22", &out, "200000");
    run_wire(&yaml, dir.path(), cores);
    let expected: Vec<Json> = bids(&yaml)
        .iter()
        .map(|bid| {
            // https://www.nexmark.com/<dir1>/<dir2>/<dir3>/item.htm?…
            let after_host = bid.url.strip_prefix("https://").expect("https URL");
            let dirs: Vec<&str> = after_host.split('/').skip(1).take(3).collect();
            assert_eq!(dirs.len(), 3, "{}", bid.url);
            serde_json::json!({
                "auction": bid.auction, "bidder": bid.bidder, "price": bid.price,
                "channel": bid.channel, "dir1": dirs[0], "dir2": dirs[1], "dir3": dirs[2],
            })
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(sorted(read_jsonl_dir(&out)), sorted(expected));
}

/// The directory q10 writes a bid of time `ms` to, `yyyy-MM-dd-HH`, cut from RFC 3339.
fn hour_dir(ms: i64) -> String {
    let text = wire_core::time::to_rfc3339(ms); // 2023-11-14T22:13:20.000Z
    format!("{}-{}", &text[..10], &text[11..13])
}

/// The subdirectories of `dir`, sorted; fails on any file beside them but hidden ones (the
/// sink's `.wire-lock`).
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    for path in &dirs {
        assert!(
            path.is_dir(),
            "a file outside the partitions: {}",
            path.display()
        );
    }
    dirs
}

#[test]
fn q10_writes_every_bid_once_into_the_directory_of_its_hour() {
    q10("nexmark/q10.yaml", 2);
}

#[test]
fn q10_in_sql_at_one_and_two_cores() {
    q10("nexmark/sql/q10.sql", 1);
    q10("nexmark/sql/q10.sql", 2);
}

fn q10(name: &str, cores: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = example_into(name, "q10", &out, "200000");
    // 5 events per second of event time: 200,000 events span 11 hours, across midnight.
    let rate = if name.ends_with(".sql") {
        ("'events_per_second' = '100'", "'events_per_second' = '5'")
    } else {
        (
            "\n    events_per_second: 100\n",
            "\n    events_per_second: 5\n",
        )
    };
    let yaml = edit(&yaml, rate.0, rate.1);
    run_wire(&yaml, dir.path(), cores);
    let mut got = Vec::new();
    let dirs = subdirectories(&out);
    for partition in &dirs {
        let name = partition.file_name().expect("name").to_string_lossy();
        for row in read_jsonl_dir(partition) {
            let time = row["date_time"].as_str().expect("date_time is text");
            let ms = wire_core::time::parse_rfc3339(time).expect("a time");
            assert_eq!(hour_dir(ms), name, "{row} is in the wrong directory");
            got.push(row);
        }
    }
    let bids = bids(&yaml);
    let hours: std::collections::BTreeSet<String> =
        bids.iter().map(|b| hour_dir(b.date_time)).collect();
    assert!(hours.len() >= 10, "{hours:?}");
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, hours.into_iter().collect::<Vec<_>>());
    let expected: Vec<Json> = bids
        .iter()
        .map(|bid| {
            serde_json::json!({
                "auction": bid.auction, "bidder": bid.bidder, "price": bid.price,
                "date_time": wire_core::time::to_rfc3339(bid.date_time), "extra": bid.extra,
            })
        })
        .collect();
    assert_eq!(sorted(got), sorted(expected));
}

#[test]
fn a_partition_value_with_slashes_stays_inside_the_sink_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sink").join("out");
    let yaml = example_into("nexmark/q10.yaml", "q10", &out, "2000");
    let yaml = edit(
        &yaml,
        "partition_by: date_format(date_time, 'yyyy-MM-dd-HH')",
        "partition_by: concat('../../', auction % 2, '/x')",
    );
    run_wire(&yaml, dir.path(), 1);
    let names: Vec<String> = subdirectories(&out)
        .iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["_._.._0_x", "_._.._1_x"]);
    let sink_dir: Vec<_> = std::fs::read_dir(dir.path().join("sink"))
        .expect("sink parent")
        .collect();
    assert_eq!(sink_dir.len(), 1, "only `out` is in the sink's parent");
    let rows: usize = subdirectories(&out)
        .iter()
        .map(|d| read_jsonl_dir(d).len())
        .sum();
    assert_eq!(rows, bids(&yaml).len());
}

#[test]
fn bad_patterns_and_partitions_are_check_errors_naming_the_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q10 = example("nexmark/q10.yaml");
    let q21 = example("nexmark/q21.yaml");
    let cases = [
        (
            edit(&q10, "'yyyy-MM-dd-HH'", "'yy-MM-dd'"),
            "sinks.out.partition_by: `yy` is not a date_format field",
        ),
        (
            edit(&q10, "date_format(date_time", "date_format(datetime"),
            "sinks.out.partition_by: unknown field `datetime`; did you mean `date_time`?",
        ),
        (
            edit(&q21, "channel_id=([^&]*)', 2)", "channel_id=([^&]*', 2)"),
            "operators[0].project.channel_id: invalid regular expression: unclosed group",
        ),
        (
            edit(&q21, "channel_id=([^&]*)', 2)", "channel_id=([^&]*)', 3)"),
            "group 3 does not exist: the pattern has 2 capture groups",
        ),
    ];
    for (index, (yaml, message)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{index}.yaml"));
        std::fs::write(&file, yaml).expect("write");
        let output = Command::new(wire_bin())
            .arg("check")
            .arg(&file)
            .output()
            .expect("wire runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{index}: {stderr}");
        assert!(stderr.contains(message), "{index}: {stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    }
}
