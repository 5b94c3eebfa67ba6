//! Nexmark's windowed and stateful queries (q5, q7, q11, q12, q15–q19) and late rows
//! (`examples/late.yaml`), run by the real `wire` binary at one and at two cores and checked
//! against references computed here in plain Rust, with maps and folds, from the generated bids.
//!
//! Readings of ADR 0003 the references rely on, where the ADR leaves room:
//! - Windows are aligned to the epoch: a tumbling window of size `S` starts at a multiple of `S`
//!   (so `1d` windows are UTC days); a hop window `[s, s + size)` starts at a multiple of `slide`
//!   and holds `ts` when `s <= ts < s + size`.
//! - A session window of a key is `[first ts, last ts + gap)`; rows of the key, sorted by time,
//!   share a session when they are at most `gap` apart (as Flink's `TimeWindow.intersects`
//!   merges windows that touch).
//! - A nexmark source's watermark lags by 4 s by default, so with `out_of_order_ms: 3000` no row
//!   is late and every window holds all its bids.
//! - A `top` with a `window` outputs its input fields, then `window_start`, `window_end`; a top
//!   over a windowed aggregate grouped by `window_end` outputs exactly its input fields.
//! - In a changelog, a `-U` is followed by a `+U` of the same key before any other change of that
//!   key, and a `+U` only ever follows a `-U`; `-U` and `-D` repeat an emitted row exactly.
//! - The file sink writes `part-<core>-<seq>.jsonl`: one core's parts in name order are its output
//!   in order, and all changes of one key come from one core.
//! - `avg` is compared within a relative 1e-9: the order of its float arithmetic is the engine's.
//! - q12 (processing time): each (bidder, window) is emitted once, and its window lies within the
//!   wall-clock time of the run.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use serde_json::{json, Value as Json};
use wire_core::frontend::spec::{stored_file_name, PipelineSpec, SourceKind};
use wire_core::nexmark::{Bid, Event, EventKind, Generator};
use wire_core::time::{parse_rfc3339, to_rfc3339};
use wire_tests::nexmark::{self, daily_stats, rank_stats};
use wire_tests::rows::{assert_fields, assert_maps_eq, canon, key_of, multiset, replay, tumble};
use wire_tests::{read_jsonl_dir, repo_root, wire_bin};

const SECOND: i64 = 1000;
/// Event-time jitter below the default 4 s watermark bound: rows out of order, none late.
const JITTER: (&str, &str) = ("seed: 1\n", "seed: 1\n    out_of_order_ms: 3000\n");
/// 30 s of event time instead of the examples' 100 s, to keep the references quick.
const SHORT: (&str, &str) = ("events: 1M", "events: 300k");
/// [`JITTER`] in a SQL example (examples/nexmark/sql/).
const SQL_JITTER: (&str, &str) = ("'seed' = '1'", "'seed' = '1', 'out_of_order_ms' = '3000'");
/// [`SHORT`] in a SQL example.
const SQL_SHORT: (&str, &str) = ("'events' = '1M'", "'events' = '300k'");
/// The fields of a bid row, in schema order.
const BID_FIELDS: [&str; 7] = [
    "auction",
    "bidder",
    "price",
    "channel",
    "url",
    "date_time",
    "extra",
];

/// Whether a price is in a rank.
type InRank = fn(i64) -> bool;
/// Price ranks of q15–q17: all bids, then ranks 1 to 3.
const RANKS: [(&str, InRank); 4] = [
    ("total", |_| true),
    ("rank1", |p| p < 10_000),
    ("rank2", |p| (10_000..1_000_000).contains(&p)),
    ("rank3", |p| p >= 1_000_000),
];

/// An example with edits applied, and the bids its nexmark source generates.
struct Example {
    yaml: String,
    bids: Vec<Bid>,
}

impl Example {
    fn load(name: &str, edits: &[(&str, &str)]) -> Example {
        let path = repo_root().join("examples").join(name);
        let mut yaml = std::fs::read_to_string(path).expect("example exists");
        for (from, to) in edits {
            assert!(yaml.contains(from), "{name} changed: no `{from}`");
            yaml = yaml.replacen(from, to, 1);
        }
        let bids = bids_of(&yaml);
        Example { yaml, bids }
    }

    /// `wire run --no-progress --cores N` from the repository root, with the sinks' paths
    /// `./wire-output/...` moved into the returned temporary directory.
    fn run(&self, cores: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = self
            .yaml
            .replace("./wire-output/", &format!("{}/", dir.path().display()));
        assert_ne!(yaml, self.yaml, "the example writes to ./wire-output/");
        let file = dir.path().join(stored_file_name("pipeline", &yaml));
        std::fs::write(&file, yaml).expect("write pipeline");
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
        eprintln!("--cores {cores}\n{stderr}");
        dir
    }
}

/// The bids of the pipeline's first (nexmark) source, generated in plain Rust.
fn bids_of(yaml: &str) -> Vec<Bid> {
    let spec = PipelineSpec::parse_stored("pipeline", yaml).unwrap_or_else(|e| panic!("{e}"));
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

fn time(ms: i64) -> Json {
    to_rfc3339(ms).into()
}

fn ms(value: &Json) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A JSON object with the fields in the order given.
fn row(fields: Vec<(String, Json)>) -> Json {
    Json::Object(fields.into_iter().collect())
}

fn bid_json(bid: &Bid) -> Json {
    json!({
        "auction": bid.auction, "bidder": bid.bidder, "price": bid.price, "channel": bid.channel,
        "url": bid.url, "date_time": time(bid.date_time), "extra": bid.extra,
    })
}

/// Runs the example at one and at two cores; each time, the output `out` must hold exactly the
/// `expected` rows (as a multiset), with `fields` in this order.
fn check_rows(example: &Example, out: &str, fields: &[&str], expected: &[Json]) {
    assert!(!expected.is_empty(), "the reference has no rows");
    for cores in [1, 2] {
        let dir = example.run(cores);
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

/// The reference of a changelog `top`: per group, the order values of the first `n` rows
/// (canonical text, sorted) and the rows allowed to hold them (tied rows included).
struct TopRef {
    values: Vec<String>,
    candidates: HashMap<String, usize>,
}

/// For each group of bids by `key`, the `n` bids with the largest `rank`, read in `field`.
fn top_reference(
    bids: &[Bid],
    key: &[&str],
    n: usize,
    field: &str,
    rank: fn(&Bid) -> i64,
) -> BTreeMap<String, TopRef> {
    let mut groups: BTreeMap<String, Vec<&Bid>> = BTreeMap::new();
    for bid in bids {
        groups
            .entry(key_of(&bid_json(bid), key))
            .or_default()
            .push(bid);
    }
    groups
        .into_iter()
        .map(|(k, mut group)| {
            group.sort_by_key(|b| std::cmp::Reverse(rank(b)));
            let last = rank(group[group.len().min(n) - 1]);
            let mut values: Vec<String> = group
                .iter()
                .take(n)
                .map(|b| bid_json(b)[field].to_string())
                .collect();
            values.sort();
            let mut candidates = HashMap::new();
            for bid in group.iter().take_while(|b| rank(b) >= last) {
                *candidates.entry(canon(&bid_json(bid))).or_insert(0) += 1;
            }
            (k, TopRef { values, candidates })
        })
        .collect()
}

/// Runs a changelog `top` example at one and at two cores and checks the replayed final state:
/// per group the order values of `expected`, each row a distinct generated bid of the group.
fn check_top(
    example: &Example,
    out: &str,
    key: &[&str],
    field: &str,
    expected: &BTreeMap<String, TopRef>,
) {
    let fields: Vec<&str> = std::iter::once("op").chain(BID_FIELDS).collect();
    let want: BTreeMap<&String, Vec<String>> = expected
        .iter()
        .map(|(k, t)| (k, t.values.clone()))
        .collect();
    for cores in [1, 2] {
        let dir = example.run(cores);
        let out_dir = dir.path().join(out);
        assert_fields(&out_dir, &fields);
        let (_, state) = replay(&out_dir, key);
        let mut values: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (k, rows) in &state {
            let mut left = expected
                .get(k)
                .map(|t| t.candidates.clone())
                .unwrap_or_default();
            for row in rows {
                let n = left.get_mut(&canon(row)).filter(|n| **n > 0);
                *n.unwrap_or_else(|| {
                    panic!("{cores} cores: key {k}: {row} is not one of its top bids, or repeated")
                }) -= 1;
            }
            let mut v: Vec<String> = rows.iter().map(|r| r[field].to_string()).collect();
            v.sort();
            values.insert(k, v);
        }
        assert_maps_eq(
            &values,
            &want,
            &format!("{out} at {cores} cores: `{field}` of the final rows per key"),
        );
    }
}

/// The names of [`nexmark::rank_stats`], in order.
fn rank_stat_names() -> Vec<String> {
    rank_stats(&[]).into_iter().map(|(name, _)| name).collect()
}

#[test]
fn q5_hot_items_per_sliding_window() {
    let example = Example::load("nexmark/q5.yaml", &[SHORT, JITTER]);
    let expected = nexmark::q5(&example.bids);
    let fields = ["auction", "num", "window_start", "window_end"];
    check_rows(&example, "q5", &fields, &expected);
}

#[test]
fn q7_highest_bids_per_tumbling_window() {
    let example = Example::load("nexmark/q7.yaml", &[SHORT, JITTER]);
    let expected = nexmark::q7(&example.bids);
    let fields = [
        "auction",
        "price",
        "bidder",
        "date_time",
        "extra",
        "window_end",
    ];
    check_rows(&example, "q7", &fields, &expected);
}

#[test]
fn q11_bids_per_bidder_session() {
    // With the reference's 10 s gap every bidder of the run has one session (hot bidders bid
    // all the time, the others only while they are among the active people), so a 500 ms gap
    // is checked too: many sessions per bidder, split and merged by out-of-order bids.
    for (gap_text, gap) in [("gap: 10s", 10 * SECOND), ("gap: 500ms", 500)] {
        let example = Example::load("nexmark/q11.yaml", &[SHORT, JITTER, ("gap: 10s", gap_text)]);
        let expected = nexmark::q11(&example.bids, gap);
        let sessions = expected.len();
        eprintln!("{gap_text}: {sessions} sessions");
        let fields = ["bidder", "window_start", "window_end", "bid_count"];
        check_rows(&example, "q11", &fields, &expected);
    }
}

#[test]
fn q12_processing_time_windows_count_every_bid() {
    let example = Example::load("nexmark/q12.yaml", &[SHORT]);
    for cores in [1, 2] {
        let before = nexmark::now_ms();
        let dir = example.run(cores);
        let after = nexmark::now_ms();
        let out = dir.path().join("q12");
        assert_fields(&out, &["bidder", "window_start", "window_end", "bid_count"]);
        let what = format!("q12 at {cores} cores");
        nexmark::check_q12(&read_jsonl_dir(&out), &example.bids, (before, after), &what);
    }
}

#[test]
fn q15_daily_bid_statistics_per_price_rank() {
    let example = Example::load("nexmark/q15.yaml", &[]);
    let expected = daily_stats(&example.bids, false);
    assert!(expected.len() >= 2, "the run should cross midnight");
    let names = rank_stat_names();
    let fields: Vec<&str> = ["window_start", "window_end"]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .collect();
    check_rows(&example, "q15", &fields, &expected);
}

#[test]
fn q16_daily_channel_statistics() {
    q16(&Example::load("nexmark/q16.yaml", &[]));
}

#[test]
fn q16_in_sql() {
    q16(&Example::load("nexmark/sql/q16.sql", &[]));
}

fn q16(example: &Example) {
    let expected = daily_stats(&example.bids, true);
    let names = rank_stat_names();
    let fields: Vec<&str> = ["channel", "window_start", "window_end", "minute"]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .collect();
    check_rows(example, "q16", &fields, &expected);
}

#[test]
fn q17_auction_day_statistics_changelog() {
    q17(&Example::load("nexmark/q17.yaml", &[SHORT]));
}

#[test]
fn q17_in_sql() {
    q17(&Example::load("nexmark/sql/q17.sql", &[SQL_SHORT]));
}

fn q17(example: &Example) {
    let key = ["auction", "day"];
    let mut groups: BTreeMap<(i64, String), Vec<&Bid>> = BTreeMap::new();
    for bid in &example.bids {
        let day = to_rfc3339(bid.date_time)[..10].to_string();
        groups.entry((bid.auction, day)).or_default().push(bid);
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut expected_avg: BTreeMap<String, f64> = BTreeMap::new();
    for ((auction, day), group) in groups {
        let prices: Vec<i64> = group.iter().map(|b| b.price).collect();
        let sum = prices.iter().fold(0i64, |s, p| s.wrapping_add(*p));
        let mut fields: Vec<(String, Json)> = vec![
            ("auction".into(), auction.into()),
            ("day".into(), day.into()),
        ];
        let stats = rank_stats(&group).into_iter().take(RANKS.len());
        fields.extend(stats);
        fields.push(("min_price".into(), prices.iter().min().copied().into()));
        fields.push(("max_price".into(), prices.iter().max().copied().into()));
        fields.push(("sum_price".into(), sum.into()));
        let r = row(fields);
        let k = key_of(&r, &key);
        expected_avg.insert(k.clone(), sum as f64 / prices.len() as f64);
        expected.insert(k, vec![canon(&r)]);
    }
    let fields = [
        "op",
        "auction",
        "day",
        "total_bids",
        "rank1_bids",
        "rank2_bids",
        "rank3_bids",
        "min_price",
        "max_price",
        "avg_price",
        "sum_price",
    ];
    for cores in [1, 2] {
        let dir = example.run(cores);
        let out = dir.path().join("q17");
        assert_fields(&out, &fields);
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut far: Vec<String> = Vec::new();
        for (k, rows) in replay(&out, &key).1 {
            for mut r in rows {
                let avg = r.as_object_mut().and_then(|o| o.remove("avg_price"));
                let avg = avg.and_then(|a| a.as_f64()).unwrap_or(f64::NAN);
                let want = expected_avg.get(&k).copied().unwrap_or(f64::NAN);
                let close = (avg - want).abs() <= 1e-9 * want.abs();
                if !close {
                    far.push(format!("{k}: avg_price {avg}, expected {want}"));
                }
                got.entry(k.clone()).or_default().push(canon(&r));
            }
        }
        assert_maps_eq(
            &got,
            &expected,
            &format!("q17 at {cores} cores: final rows per key"),
        );
        assert!(
            far.is_empty(),
            "q17 at {cores} cores: {} wrong averages: {:?}",
            far.len(),
            &far[..far.len().min(6)]
        );
    }
}

#[test]
fn q18_last_bid_per_bidder_and_auction_changelog() {
    q18(&Example::load("nexmark/q18.yaml", &[JITTER]));
}

#[test]
fn q18_in_sql() {
    q18(&Example::load("nexmark/sql/q18.sql", &[SQL_JITTER]));
}

fn q18(example: &Example) {
    let key = ["bidder", "auction"];
    let expected = top_reference(&example.bids, &key, 1, "date_time", |b| b.date_time);
    check_top(example, "q18", &key, "date_time", &expected);
}

#[test]
fn q19_top_10_bids_per_auction_changelog() {
    q19(&Example::load("nexmark/q19.yaml", &[]));
}

#[test]
fn q19_in_sql() {
    q19(&Example::load("nexmark/sql/q19.sql", &[]));
}

fn q19(example: &Example) {
    let key = ["auction"];
    let expected = top_reference(&example.bids, &key, 10, "price", |b| b.price);
    check_top(example, "q19", &key, "price", &expected);
}

#[test]
fn late_bids_go_to_the_late_output_and_every_bid_is_counted_once() {
    let example = Example::load("late.yaml", &[("events: 500k", "events: 300k")]);
    let size = 10 * SECOND;
    let all: BTreeMap<String, usize> =
        multiset(&example.bids.iter().map(bid_json).collect::<Vec<_>>());
    let mut per_window: BTreeMap<i64, i64> = BTreeMap::new();
    for bid in &example.bids {
        *per_window.entry(tumble(bid.date_time, size)).or_default() += 1;
    }
    for cores in [1, 2] {
        let dir = example.run(cores);
        let (counts_dir, late_dir) = (
            dir.path().join("late/counts"),
            dir.path().join("late/late_bids"),
        );
        let late = read_jsonl_dir(&late_dir);
        assert!(!late.is_empty(), "{cores} cores: no bid was late");
        assert_fields(&late_dir, &BID_FIELDS);
        assert_fields(&counts_dir, &["window_start", "window_end", "bids"]);
        let mut left = all.clone();
        let mut on_time = per_window.clone();
        for row in &late {
            let n = left.get_mut(&canon(row)).filter(|n| **n > 0);
            *n.unwrap_or_else(|| panic!("late row {row} is not a generated bid, or repeated")) -= 1;
            *on_time
                .entry(tumble(ms(&row["date_time"]), size))
                .or_default() -= 1;
        }
        on_time.retain(|_, n| *n != 0);
        let mut counted: BTreeMap<i64, i64> = BTreeMap::new();
        for row in read_jsonl_dir(&counts_dir) {
            let start = ms(&row["window_start"]);
            assert_eq!(ms(&row["window_end"]), start + size, "{row}");
            let n = row["bids"].as_i64().expect("count");
            assert!(
                counted.insert(start, n).is_none(),
                "window emitted twice: {row}"
            );
        }
        let what = format!("late at {cores} cores: count per window vs bids not late");
        assert_maps_eq(&counted, &on_time, &what);
        eprintln!(
            "{cores} cores: {} of {} bids late",
            late.len(),
            example.bids.len()
        );
    }
}
