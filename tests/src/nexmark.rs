//! Plain-Rust references of Nexmark queries, shared by the YAML example tests
//! (tests/tests/nexmark_*.rs) and their SQL twins (tests/tests/sql.rs): the events a pipeline's
//! nexmark sources generate, and the rows each query must output for them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{json, Value as Json};
use wire_core::frontend::spec::{PipelineSpec, SourceKind};
use wire_core::nexmark::{Auction, Bid, Event, Generator, Person};
use wire_core::time::to_rfc3339;

use crate::rows::tumble;

const SECOND: i64 = 1000;
const DAY: i64 = 86_400_000;

/// The events of all the nexmark sources of a pipeline, generated in plain Rust.
#[derive(Debug, Default)]
pub struct Events {
    /// Persons of the `person` sources.
    pub persons: Vec<Person>,
    /// Auctions of the `auction` sources.
    pub auctions: Vec<Auction>,
    /// Bids of the `bid` sources.
    pub bids: Vec<Bid>,
}

impl Events {
    /// Generates what each (bounded) nexmark source of `spec` emits.
    pub fn of(spec: &PipelineSpec) -> Events {
        let mut events = Events::default();
        for source in &spec.sources {
            let SourceKind::Nexmark(source) = &source.kind else {
                panic!("a source is not nexmark");
            };
            let generator = Generator::new(source.generator.clone()).expect("generator config");
            for n in 0..source.events.expect("bounded") {
                if generator.kind(n) != source.stream {
                    continue;
                }
                match generator.event(n) {
                    Event::Person(p) => events.persons.push(p),
                    Event::Auction(a) => events.auctions.push(a),
                    Event::Bid(b) => events.bids.push(b),
                }
            }
        }
        events
    }
}

fn time(ms: i64) -> Json {
    to_rfc3339(ms).into()
}

/// Nexmark q5 as YAML (a hop window of 10 s sliding by 2 s, then the hottest auctions of each
/// window) with the bid source's options `source` (`events: 1000, seed: 1`) and its sink given
/// by `sink` (`type: blackhole`, `type: file, path: out, format: jsonl`).
pub fn q5_yaml(source: &str, sink: &str) -> String {
    format!(
        "name: q5
sources:
  bids: {{type: nexmark, stream: bid, {source}}}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {{type: hop, size: 10s, slide: 2s}}
    aggregate: {{num: count(*)}}
  - name: hottest
    from: per_auction
    top: {{n: 1, order_by: num desc, group_by: [window_end], with_ties: true}}
sinks:
  out: {{{sink}, from: hottest}}
"
    )
}

/// Starts of the hop windows `[s, s + size)` holding `ts`, `s` a multiple of `slide`.
pub fn hop_starts(ts: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let last = tumble(ts, slide);
    (0..)
        .map(move |k| last - k * slide)
        .take_while(move |s| ts < s + size)
}

/// q3: `name, city, state, id` of category-10 auctions whose seller lives in OR, ID or CA.
pub fn q3(events: &Events) -> Vec<Json> {
    let western: HashMap<i64, &Person> = events
        .persons
        .iter()
        .filter(|p| ["OR", "ID", "CA"].contains(&p.state.as_str()))
        .map(|p| (p.id, p))
        .collect();
    events
        .auctions
        .iter()
        .filter(|a| a.category == 10)
        .filter_map(|a| {
            let p = western.get(&a.seller)?;
            Some(json!({"name": p.name, "city": p.city, "state": p.state, "id": a.id}))
        })
        .collect()
}

/// q5: per 10 s window every 2 s, the auctions with the most bids (ties kept):
/// `auction, num, window_start, window_end`.
pub fn q5(bids: &[Bid]) -> Vec<Json> {
    let (size, slide) = (10 * SECOND, 2 * SECOND);
    let mut counts: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for bid in bids {
        for start in hop_starts(bid.date_time, size, slide) {
            *counts.entry((start, bid.auction)).or_default() += 1;
        }
    }
    let mut max: BTreeMap<i64, u64> = BTreeMap::new();
    for (&(start, _), &num) in &counts {
        let m = max.entry(start).or_default();
        *m = (*m).max(num);
    }
    counts
        .iter()
        .filter(|((start, _), num)| max[start] == **num)
        .map(|(&(start, auction), &num)| {
            json!({"auction": auction, "num": num, "window_start": time(start), "window_end": time(start + size)})
        })
        .collect()
}

/// q7: per 10 s tumbling window, the bids with the highest price (ties kept):
/// `auction, price, bidder, date_time, extra, window_end`.
pub fn q7(bids: &[Bid]) -> Vec<Json> {
    let size = 10 * SECOND;
    let mut max: BTreeMap<i64, i64> = BTreeMap::new();
    for bid in bids {
        let m = max.entry(tumble(bid.date_time, size)).or_insert(i64::MIN);
        *m = (*m).max(bid.price);
    }
    bids.iter()
        .filter(|b| max[&tumble(b.date_time, size)] == b.price)
        .map(|b| {
            json!({"auction": b.auction, "price": b.price, "bidder": b.bidder,
                "date_time": time(b.date_time), "extra": b.extra,
                "window_end": time(tumble(b.date_time, size) + size)})
        })
        .collect()
}

/// q8: persons who opened an auction in the 10 s tumbling window they registered in:
/// `id, name, starttime`.
pub fn q8(events: &Events) -> Vec<Json> {
    let size = 10 * SECOND;
    let sellers: HashSet<(i64, i64)> = events
        .auctions
        .iter()
        .map(|a| (a.seller, tumble(a.date_time, size)))
        .collect();
    let new_users: BTreeSet<(i64, &str, i64)> = events
        .persons
        .iter()
        .map(|p| (p.id, p.name.as_str(), tumble(p.date_time, size)))
        .filter(|(id, _, start)| sellers.contains(&(*id, *start)))
        .collect();
    new_users
        .into_iter()
        .map(|(id, name, start)| json!({"id": id, "name": name, "starttime": time(start)}))
        .collect()
}

/// q11: bids per bidder and session (`gap` ms without a bid closes one):
/// `bidder, window_start, window_end, bid_count`.
pub fn q11(bids: &[Bid], gap: i64) -> Vec<Json> {
    let mut times: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for bid in bids {
        times.entry(bid.bidder).or_default().push(bid.date_time);
    }
    let mut expected = Vec::new();
    let session = |bidder: i64, start: i64, last: i64, n: u64| {
        json!({"bidder": bidder, "window_start": time(start), "window_end": time(last + gap),
            "bid_count": n})
    };
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
        for t in ts {
            if t - last > gap {
                expected.push(session(bidder, start, last, n));
                (start, n) = (t, 0);
            }
            (last, n) = (t, n + 1);
        }
        expected.push(session(bidder, start, last, n));
    }
    expected
}

/// Whether a price is in a rank.
type InRank = fn(i64) -> bool;
/// Price ranks of q15–q17: all bids, then ranks 1 to 3.
const RANKS: [(&str, InRank); 4] = [
    ("total", |_| true),
    ("rank1", |p| p < 10_000),
    ("rank2", |p| (10_000..1_000_000).contains(&p)),
    ("rank3", |p| p >= 1_000_000),
];

/// q15's twelve statistics of `bids` (bids, distinct bidders, distinct auctions per price
/// rank), in the order the examples write them.
pub fn rank_stats(bids: &[&Bid]) -> Vec<(String, Json)> {
    let mut stats = Vec::new();
    for what in ["bids", "bidders", "auctions"] {
        for (rank, in_rank) in RANKS {
            let ranked = bids.iter().filter(|b| in_rank(b.price));
            let value = match what {
                "bids" => ranked.count(),
                "bidders" => ranked.map(|b| b.bidder).collect::<HashSet<_>>().len(),
                _ => ranked.map(|b| b.auction).collect::<HashSet<_>>().len(),
            };
            stats.push((format!("{rank}_{what}"), value.into()));
        }
    }
    stats
}

/// The rows of q15, or of q16 (`per_channel`): per (channel and) UTC day, the window, (the
/// latest `HH:mm` of a bid,) and the rank statistics.
pub fn daily_stats(bids: &[Bid], per_channel: bool) -> Vec<Json> {
    let mut groups: BTreeMap<(Option<&str>, i64), Vec<&Bid>> = BTreeMap::new();
    for bid in bids {
        let channel = per_channel.then_some(bid.channel.as_str());
        let day = tumble(bid.date_time, DAY);
        groups.entry((channel, day)).or_default().push(bid);
    }
    groups
        .into_iter()
        .map(|((channel, day), group)| {
            let mut fields: Vec<(String, Json)> = Vec::new();
            fields.extend(channel.map(|c| ("channel".to_string(), c.into())));
            fields.push(("window_start".into(), time(day)));
            fields.push(("window_end".into(), time(day + DAY)));
            if per_channel {
                let minutes = group
                    .iter()
                    .map(|b| to_rfc3339(b.date_time)[11..16].to_string());
                fields.push(("minute".into(), minutes.max().into()));
            }
            fields.extend(rank_stats(&group));
            Json::Object(fields.into_iter().collect())
        })
        .collect()
}

/// Nexmark q6's closed auctions: per seller, `(expires, final price)` of each auction that had
/// a bid while it was open (`[date_time, expires]`, inclusive), the final price its highest
/// such bid, sorted by closing time.
pub fn closed_auctions(auctions: &[Auction], bids: &[Bid]) -> BTreeMap<i64, Vec<(i64, i64)>> {
    let mut max: HashMap<i64, i64> = HashMap::new();
    let by_id: HashMap<i64, &Auction> = auctions.iter().map(|a| (a.id, a)).collect();
    for bid in bids {
        let Some(a) = by_id.get(&bid.auction) else {
            continue;
        };
        if a.date_time <= bid.date_time && bid.date_time <= a.expires {
            let held = max.entry(a.id).or_insert(bid.price);
            *held = (*held).max(bid.price);
        }
    }
    let mut closed: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for a in auctions {
        if let Some(price) = max.get(&a.id) {
            closed
                .entry(a.seller)
                .or_default()
                .push((a.expires, *price));
        }
    }
    for finals in closed.values_mut() {
        finals.sort_unstable();
    }
    closed
}

/// Nexmark q6 as a rows-frame OVER aggregate: for each closed auction, `seller`, `expires`, and
/// the `avg` and `count` of the final prices of it and the 9 auctions of its seller that
/// closed before it. Sellers with two auctions closing at the same time are left out (the
/// order of those rows is not defined) and returned apart.
pub fn q6_over(events: &Events) -> (Vec<Json>, BTreeSet<i64>) {
    let (mut rows, mut ties) = (Vec::new(), BTreeSet::new());
    for (seller, finals) in closed_auctions(&events.auctions, &events.bids) {
        if finals.windows(2).any(|w| w[0].0 == w[1].0) {
            ties.insert(seller);
            continue;
        }
        for (i, (expires, _)) in finals.iter().enumerate() {
            let frame = &finals[i.saturating_sub(9)..=i];
            let sum: i64 = frame.iter().map(|f| f.1).sum();
            let avg = sum as f64 / frame.len() as f64;
            rows.push(
                json!({"seller": seller, "expires": time(*expires), "avg": avg,
                "count": frame.len()}),
            );
        }
    }
    (rows, ties)
}

/// Checks Nexmark q12's output `rows` (processing-time windows of 10 s) from a run between
/// `before` and `after` (wall-clock ms) over `bids`: every window is 10 s long and aligned,
/// lies within the run, is emitted once per bidder, and each bidder's counts add up to its
/// bids (which windows the bids fall in depends on the clock).
pub fn check_q12(rows: &[Json], bids: &[Bid], (before, after): (i64, i64), what: &str) {
    let size = 10 * SECOND;
    let ms = |value: &Json| {
        let text = value
            .as_str()
            .unwrap_or_else(|| panic!("not a timestamp: {value}"));
        wire_core::time::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for bid in bids {
        *expected.entry(bid.bidder).or_default() += 1;
    }
    let mut per_bidder: BTreeMap<i64, i64> = BTreeMap::new();
    let mut windows = HashSet::new();
    for row in rows {
        let (start, end) = (ms(&row["window_start"]), ms(&row["window_end"]));
        assert!(
            end - start == size && start % size == 0,
            "not a 10 s window: {row}"
        );
        assert!(
            (before - size..=after).contains(&start),
            "window of {row} is outside the run's wall-clock time [{before}, {after}]"
        );
        let bidder = row["bidder"].as_i64().expect("bidder");
        assert!(
            windows.insert((bidder, start)),
            "window emitted twice: {row}"
        );
        let n = row["bid_count"].as_i64().filter(|n| *n > 0);
        *per_bidder.entry(bidder).or_default() += n.unwrap_or_else(|| panic!("{row}"));
    }
    crate::rows::assert_maps_eq(&per_bidder, &expected, &format!("{what}: bids per bidder"));
}

/// The wall clock, in ms since the epoch (to bound processing-time windows).
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// The windowed Nexmark load the connector tests write: the YAML of source `bids` (`events`
/// bids at `rate` per second, as an entry of `sources:`) and of operators `tenth` (every tenth
/// auction) and `per_auction` (`num` bids and `top` price per auction and 1 s window of event
/// time), up to the `sinks:` a test adds.
pub fn windowed_bids_yaml(events: u64, rate: u64) -> String {
    format!(
        "  bids: {{type: nexmark, stream: bid, events: {events}, rate: {rate}}}
operators:
  - name: tenth
    from: bids
    filter: auction % 10 = 0
  - name: per_auction
    from: tenth
    group_by: [auction]
    window: {{type: tumbling, size: 1s}}
    aggregate: {{num: count(*), top: max(price)}}
"
    )
}
