use super::*;
use std::cmp::Ordering;
use wire_core::frontend::plan::Plan;
use wire_core::state::total_cmp as cmp_ref;
use wire_core::ValueRef;

#[test]
fn values_order_nulls_first_and_numbers_by_value() {
    assert_eq!(cmp_ref(ValueRef::Null, ValueRef::I64(-5)), Ordering::Less);
    assert_eq!(
        cmp_ref(ValueRef::I64(2), ValueRef::F64(1.5)),
        Ordering::Greater
    );
    assert_eq!(
        cmp_ref(ValueRef::Str("b"), ValueRef::Str("a")),
        Ordering::Greater
    );
    assert!(datum_eq(&Datum::F64(0.0), &Value::F64(-0.0)));
    assert!(!datum_eq(&Datum::I64(1), &Value::F64(1.0)));
}

/// The stateful operator `name` of a pipeline reading a file source `(k: i64, t: timestamp)`.
fn operator(operators: &str, name: &str) -> Box<dyn Stateful> {
    let text = format!(
        "sources:\n  s:\n    type: file\n    path: x.csv\n    schema: {{k: i64, t: timestamp}}\n    event_time: t\noperators:\n{operators}\nsinks:\n  out: {{type: blackhole, from: {name}}}\n"
    );
    let spec = wire_core::frontend::spec::PipelineSpec::parse("t.yaml", &text).expect("spec");
    let plan = Plan::from_spec(&spec).expect("plan");
    let index = plan
        .operators
        .iter()
        .position(|o| o.name == name)
        .expect("operator");
    build(&plan, index).expect("stateful")
}

fn rows(pairs: &[(i64, i64)]) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for (k, t) in pairs {
        builder
            .push_with_time(&[ValueRef::I64(*k), ValueRef::Timestamp(*t)], *t)
            .expect("push");
    }
    builder.finish()
}

/// Every row of `out`'s finished result batches, as values.
fn results(out: &mut Output) -> Vec<Vec<Value>> {
    out.seal();
    let mut all = Vec::new();
    for batch in out.ready.drain(..) {
        all.extend(batch.view().rows().map(|r| r.to_values()));
    }
    all
}

#[test]
fn a_late_row_within_the_allowed_lateness_refires_only_its_key() {
    let mut op = operator(
        "  - name: c\n    from: s\n    group_by: [k]\n    window: {type: tumbling, size: 10, allowed_lateness: 5}\n    aggregate: {n: count(*)}",
        "c",
    );
    let mut out = Output::new(100);
    op.on_batch(&rows(&[(1, 1), (1, 2), (2, 3)]), 0, 0, &mut out)
        .unwrap();
    op.on_watermark(9, &mut out).unwrap();
    let fired = results(&mut out);
    assert_eq!(fired.len(), 2, "both keys fire at watermark 9: {fired:?}");
    // Late but within the lateness: key 1's window fires again with the new count.
    op.on_batch(&rows(&[(1, 4)]), 0, 0, &mut out).unwrap();
    op.on_watermark(10, &mut out).unwrap();
    let refired = results(&mut out);
    assert_eq!(
        refired,
        [vec![
            Value::I64(1),
            Value::Timestamp(0),
            Value::Timestamp(10),
            Value::I64(3)
        ]]
    );
    // Past the lateness: the row is late for every window.
    op.on_watermark(14, &mut out).unwrap();
    op.on_batch(&rows(&[(2, 5)]), 0, 0, &mut out).unwrap();
    assert!(results(&mut out).is_empty());
    assert_eq!(out.late_rows, 1);
}

#[test]
fn a_row_between_two_sessions_merges_them() {
    let mut op = operator(
        "  - name: s2\n    from: s\n    group_by: [k]\n    window: {type: session, gap: 10}\n    aggregate: {n: count(*)}",
        "s2",
    );
    let mut out = Output::new(100);
    op.on_batch(&rows(&[(1, 0), (1, 18)]), 0, 0, &mut out)
        .unwrap();
    assert_eq!(op.groups(), 1);
    op.on_batch(&rows(&[(1, 9)]), 0, 0, &mut out).unwrap();
    op.on_watermark(i64::MAX, &mut out).unwrap();
    let sessions = results(&mut out);
    assert_eq!(
        sessions,
        [vec![
            Value::I64(1),
            Value::Timestamp(0),
            Value::Timestamp(28),
            Value::I64(3)
        ]],
        "[0,10) and [18,28) are bridged by [9,19)"
    );
}

#[test]
fn a_changelog_top_inserts_and_deletes_and_keeps_ties_with_ties() {
    let mut op = operator(
        "  - name: best\n    from: s\n    top: {n: 1, order_by: k desc, with_ties: true}",
        "best",
    );
    let mut out = Output::new(100);
    op.on_batch(&rows(&[(5, 1), (5, 2), (3, 3), (7, 4)]), 0, 0, &mut out)
        .unwrap();
    let ops: Vec<(String, i64)> = results(&mut out)
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Str(op), Value::I64(k)) => (op.clone(), *k),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    let expected = [("+I", 5), ("+I", 5), ("-D", 5), ("-D", 5), ("+I", 7)];
    let expected: Vec<(String, i64)> = expected.iter().map(|(o, k)| (o.to_string(), *k)).collect();
    assert_eq!(ops, expected);
}

/// The stateful operator `name` of a pipeline with `sources` (YAML under `sources:`).
fn operator_in(sources: &str, operators: &str, name: &str) -> Box<dyn Stateful> {
    operator_read_by(sources, operators, name, name)
}

/// Operator `name` of a pipeline whose sink reads `sunk`.
fn operator_read_by(sources: &str, operators: &str, name: &str, sunk: &str) -> Box<dyn Stateful> {
    let text = format!(
        "sources:\n{sources}operators:\n{operators}\nsinks:\n  out: {{type: blackhole, from: {sunk}}}\n"
    );
    let spec = wire_core::frontend::spec::PipelineSpec::parse("t.yaml", &text).expect("spec");
    let plan = Plan::from_spec(&spec).expect("plan");
    let index = plan
        .operators
        .iter()
        .position(|o| o.name == name)
        .expect("operator");
    build(&plan, index).expect("stateful")
}

/// One step of an operator's input.
enum Step {
    /// Rows arriving on an input port.
    Rows(usize, Vec<Vec<Value>>),
    Watermark(i64),
}

fn batch_of(rows: &[Vec<Value>]) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for row in rows {
        let values: Vec<ValueRef<'_>> = row.iter().map(Value::as_ref).collect();
        let time = row.iter().find_map(|v| match v {
            Value::Timestamp(t) => Some(*t),
            _ => None,
        });
        match time {
            Some(time) => builder.push_with_time(&values, time).expect("push"),
            None => builder.push(&values).expect("push"),
        }
    }
    builder.finish()
}

/// What an operator emitted: result rows, late rows, the late count, and the groups held
/// after each step.
#[derive(Debug, Default, PartialEq)]
struct Emitted {
    results: Vec<String>,
    late: Vec<String>,
    late_rows: u64,
    groups: Vec<usize>,
}

impl Emitted {
    /// Adds what `out` holds; rows are kept as text and sorted by [`Emitted::sorted`].
    fn take(&mut self, out: &mut Output) {
        out.seal();
        for batch in out.ready.drain(..) {
            let view = batch.view();
            let rows = view.rows().map(|r| format!("{:?}", r.to_values()));
            self.results.extend(rows);
        }
        for batch in out.late_ready.drain(..) {
            let view = batch.view();
            let rows = view.rows().map(|r| format!("{:?}", r.to_values()));
            self.late.extend(rows);
        }
        self.late_rows += std::mem::take(&mut out.late_rows);
    }

    /// Order across keys (and so across operator instances) is not part of the output.
    fn sorted(mut self) -> Emitted {
        self.results.sort();
        self.late.sort();
        self
    }
}

/// Feeds `steps` to `ops`, each row to `ops[route(port, row)]` and every watermark to all.
fn drive(
    ops: &mut [Box<dyn Stateful>],
    steps: &[Step],
    route: &dyn Fn(usize, &[Value]) -> usize,
) -> Emitted {
    let mut emitted = Emitted::default();
    let mut out = Output::new(100);
    for step in steps {
        match step {
            Step::Rows(port, rows) => {
                for (at, op) in ops.iter_mut().enumerate() {
                    let mine: Vec<Vec<Value>> = rows
                        .iter()
                        .filter(|row| route(*port, row) == at)
                        .cloned()
                        .collect();
                    if !mine.is_empty() {
                        op.on_batch(&batch_of(&mine), *port, 0, &mut out)
                            .expect("batch");
                    }
                }
            }
            Step::Watermark(watermark) => {
                for op in ops.iter_mut() {
                    op.on_watermark(*watermark, &mut out).expect("watermark");
                }
            }
        }
        emitted.take(&mut out);
        emitted.groups.push(ops.iter().map(|op| op.groups()).sum());
    }
    emitted.sorted()
}

const MAX_PARALLELISM: u32 = 128;

/// Feeds `before` to an operator, snapshots it, and checks that restoring the sections into
/// fresh operators (in order, in reverse order, and split over two instances by key group
/// owner, each then fed only the rows of its keys) makes them emit for `after` what the
/// original emits. `key_of` is the partition key of a row arriving on a port. Returns what
/// the original emitted after the snapshot.
fn assert_round_trip(
    make: &dyn Fn() -> Box<dyn Stateful>,
    before: &[Step],
    after: &[Step],
    key_of: &dyn Fn(usize, &[Value]) -> Vec<Value>,
) -> Emitted {
    let one = |_: usize, _: &[Value]| 0;
    let mut original = vec![make()];
    drive(&mut original, before, &one);
    let groups = original[0].groups();
    assert!(groups > 0, "the operator holds state at the snapshot");
    let sections = original[0].snapshot(MAX_PARALLELISM).expect("snapshot");
    let key_groups: Vec<u32> = sections.iter().map(|s| s.key_group).collect();
    assert!(
        key_groups.windows(2).all(|w| w[0] < w[1]),
        "one section per key group: {key_groups:?}"
    );
    assert!(
        key_groups.len() > 1,
        "the test spreads keys over key groups"
    );
    let expected = drive(&mut original, after, &one);

    for reverse in [false, true] {
        let mut restored = vec![make()];
        let order: Vec<&Section> = if reverse {
            sections.iter().rev().collect()
        } else {
            sections.iter().collect()
        };
        for section in order {
            restored[0].restore(section).expect("restore");
        }
        assert_eq!(restored[0].groups(), groups, "reverse: {reverse}");
        // A restored operator snapshots the same key groups again.
        let again = restored[0].snapshot(MAX_PARALLELISM).expect("snapshot");
        let again: Vec<u32> = again.iter().map(|s| s.key_group).collect();
        assert_eq!(again, key_groups);
        let emitted = drive(&mut restored, after, &one);
        assert_eq!(emitted, expected, "restored (reverse: {reverse})");
    }

    // Rescaled to two instances.
    let owner =
        |key_group: u32| wire_core::record::key::key_group_owner(key_group, MAX_PARALLELISM, 2);
    let mut split = vec![make(), make()];
    for section in sections.iter().rev() {
        split[owner(section.key_group)]
            .restore(section)
            .expect("restore");
    }
    assert!(split.iter().all(|op| op.groups() > 0), "both get state");
    assert_eq!(split.iter().map(|op| op.groups()).sum::<usize>(), groups);
    let route = |port: usize, row: &[Value]| {
        let hash = wire_core::state::key_hash(&key_of(port, row));
        owner(wire_core::record::key::key_group(hash, MAX_PARALLELISM))
    };
    let emitted = drive(&mut split, after, &route);
    assert_eq!(emitted, expected, "restored into two instances");
    expected
}

fn kt(k: i64, t: i64) -> Vec<Value> {
    vec![Value::I64(k), Value::Timestamp(t)]
}

fn first_field(_: usize, row: &[Value]) -> Vec<Value> {
    vec![row[0].clone()]
}

#[test]
fn sessions_survive_a_snapshot_and_merge_across_it() {
    let make = || {
        operator(
            "  - name: s2\n    from: s\n    group_by: [k]\n    window: {type: session, gap: 10, allowed_lateness: 20}\n    aggregate: {n: count(*), total: sum(k), last: max(t)}",
            "s2",
        )
    };
    // Keys 10.. only spread the state over key groups.
    // Keys 4 (fired before the snapshot) and 5 (open) get no rows after it.
    let mut first: Vec<Vec<Value>> = vec![
        kt(1, 0),
        kt(1, 18),
        kt(2, 1),
        kt(3, 100),
        kt(4, 2),
        kt(5, 30),
    ];
    first.extend((10..40).map(|k| kt(k, 50 + k)));
    let before = [Step::Rows(0, first), Step::Watermark(12)];
    let after = [
        // Late for the watermark the snapshot kept.
        Step::Rows(0, vec![kt(6, -30)]),
        // Bridges key 1's fired [0, 10) and open [18, 28).
        Step::Rows(0, vec![kt(1, 9), kt(3, 105)]),
        // Late within the lateness: key 2's fired session fires again, extended.
        Step::Rows(0, vec![kt(2, 3)]),
        Step::Watermark(20),
        Step::Rows(0, (10..40).map(|k| kt(k, 55 + k)).collect()),
        Step::Watermark(40),
        // Key 2's session expired at watermark 40: late.
        Step::Rows(0, vec![kt(2, 5)]),
        Step::Watermark(i64::MAX),
    ];
    let emitted = assert_round_trip(&make, &before, &after, &first_field);
    let session = |k: i64, start: i64, end: i64, n: i64, last: i64| {
        format!(
            "{:?}",
            [
                Value::I64(k),
                Value::Timestamp(start),
                Value::Timestamp(end),
                Value::I64(n),
                Value::I64(k * n),
                Value::Timestamp(last),
            ]
        )
    };
    for expected in [
        session(1, 0, 28, 3, 18),
        session(2, 1, 13, 2, 3),
        session(3, 100, 115, 2, 105),
        session(5, 30, 40, 1, 30),
        session(10, 60, 75, 2, 65),
    ] {
        assert!(
            emitted.results.contains(&expected),
            "{expected} in {:?}",
            emitted.results
        );
    }
    assert_eq!(emitted.late_rows, 2);
    assert_eq!(emitted.results.len(), 4 + 30, "{:?}", emitted.results);
}

const JOIN_SOURCES: &str = "  a:\n    type: file\n    path: a.csv\n    schema: {k: i64, t: timestamp, e: timestamp}\n    event_time: t\n  b:\n    type: file\n    path: b.csv\n    schema: {k: i64, t: timestamp}\n    event_time: t\n";

fn kte(k: i64, t: i64, e: i64) -> Vec<Value> {
    vec![Value::I64(k), Value::Timestamp(t), Value::Timestamp(e)]
}

/// Left rows `(k, t)` (with `e = t + 10`) and right rows `(k, t)` stored on both sides
/// before the snapshot, matched and expired after it.
fn join_steps() -> (Vec<Step>, Vec<Step>) {
    let left = |rows: &[(i64, i64)]| {
        let rows = rows.iter().map(|(k, t)| kte(*k, *t, t + 10)).collect();
        Step::Rows(0, rows)
    };
    let right = |rows: &[(i64, i64)]| Step::Rows(1, rows.iter().map(|(k, t)| kt(*k, *t)).collect());
    let spread: Vec<(i64, i64)> = (10..30).map(|k| (k, 1)).collect();
    let before = vec![
        left(&[(1, 0), (2, 5)]),
        right(&[(1, 3), (3, 12)]),
        left(&spread),
        Step::Watermark(2),
    ];
    let after = vec![
        // Too old for the watermark the snapshot kept: neither is stored to meet the other.
        right(&[(1, -20)]),
        left(&[(1, -25)]),
        left(&[(3, 10)]),
        right(&[(2, 8), (1, 9)]),
        right(&spread),
        Step::Watermark(9),
        left(&[(1, 5)]),
        right(&[(1, 12)]),
        Step::Watermark(12),
        right(&[(1, 11), (1, 4), (2, 13)]),
        Step::Watermark(24),
        right(&[(1, 25), (2, 26)]),
        left(&[(1, 20), (3, 30)]),
        Step::Watermark(100),
        left(&[(1, 50)]),
        right(&[(3, 60)]),
        Step::Watermark(i64::MAX),
    ];
    (before, after)
}

#[test]
fn regular_joins_keep_both_sides_across_a_snapshot() {
    for retention in ["", ", retention: 20"] {
        let make = || {
            operator_in(
                JOIN_SOURCES,
                &format!("  - name: j\n    join: {{left: a, right: b, left_key: [k], right_key: [k]{retention}}}"),
                "j",
            )
        };
        let (before, after) = join_steps();
        let emitted = assert_round_trip(&make, &before, &after, &first_field);
        let pair = |l: (i64, i64), r: (i64, i64)| {
            let mut row = kte(l.0, l.1, l.1 + 10);
            row.extend(kt(r.0, r.1));
            format!("{row:?}")
        };
        // A left row stored before the snapshot meets a right row after it, and back.
        assert!(emitted.results.contains(&pair((2, 5), (2, 8))));
        assert!(emitted.results.contains(&pair((3, 10), (3, 12))));
        assert!(emitted.results.contains(&pair((10, 1), (10, 1))));
        // Left (1, 0) is kept for 20 ms, or forever.
        let forever = retention.is_empty();
        assert_eq!(
            emitted.results.contains(&pair((1, 0), (1, 25))),
            forever,
            "retention {retention:?}: {:?}",
            emitted.results
        );
    }
}

#[test]
fn interval_joins_keep_bounds_and_expiry_across_a_snapshot() {
    let make = || {
        operator_in(
            JOIN_SOURCES,
            "  - name: j\n    join: {left: a, right: b, left_key: [k], right_key: [k], between: [t, e]}",
            "j",
        )
    };
    let (before, after) = join_steps();
    let emitted = assert_round_trip(&make, &before, &after, &first_field);
    let pair = |l: (i64, i64), r: (i64, i64)| {
        let mut row = kte(l.0, l.1, l.1 + 10);
        row.extend(kt(r.0, r.1));
        format!("{row:?}")
    };
    // Stored left rows meet right rows within their bounds, and stored right rows left rows.
    assert!(emitted.results.contains(&pair((1, 0), (1, 9))));
    assert!(emitted.results.contains(&pair((3, 10), (3, 12))));
    assert!(emitted.results.contains(&pair((1, 5), (1, 11))));
    assert!(!emitted.results.contains(&pair((1, 0), (1, 12))));
    assert!(emitted.late_rows > 0);
}

/// An interval join over a long stream: it emits every pair within bounds (against a nested
/// loop), its rows leave as the watermark passes them, and its state reuses its memory rather
/// than growing with the stream.
#[test]
fn a_long_interval_join_matches_every_pair_and_keeps_its_memory_flat() {
    let mut op = operator_in(
        JOIN_SOURCES,
        "  - name: j\n    join: {left: a, right: b, left_key: [k], right_key: [k], between: [t, e]}",
        "j",
    );
    let mut out = Output::new(100);
    let mut emitted = Emitted::default();
    let (keys, steps, rounds) = (50, 100, 6);
    let mut bytes = Vec::new();
    for round in 0..rounds {
        for step in 0..steps {
            let t = (round * steps + step) * 10;
            let left: Vec<Vec<Value>> = (0..keys).map(|k| kte(k, t, t + 15)).collect();
            let right: Vec<Vec<Value>> = (0..keys)
                .flat_map(|k| [kt(k, t + 3), kt(k, t + 12)])
                .collect();
            op.on_batch(&batch_of(&left), 0, 0, &mut out).expect("left");
            op.on_batch(&batch_of(&right), 1, 0, &mut out)
                .expect("right");
            op.on_watermark(t, &mut out).expect("watermark");
            emitted.take(&mut out);
        }
        bytes.push(op.state_bytes());
    }
    op.on_watermark(i64::MAX, &mut out).expect("watermark");
    emitted.take(&mut out);
    let lefts: Vec<i64> = (0..rounds * steps).map(|i| i * 10).collect();
    let rights: Vec<i64> = lefts.iter().flat_map(|t| [t + 3, t + 12]).collect();
    let per_key = lefts
        .iter()
        .map(|l| rights.iter().filter(|&&r| *l <= r && r <= l + 15).count())
        .sum::<usize>();
    assert_eq!(emitted.results.len(), per_key * keys as usize);
    assert_eq!(emitted.late_rows, 0);
    assert_eq!(op.groups(), 0, "every row expired");
    // Each round streams 15,000 rows through; the state holds about 150 at a time.
    assert!(
        bytes[5] <= bytes[3] && bytes[5] < 150_000,
        "state bytes by round: {bytes:?}"
    );
}

#[test]
fn window_joins_keep_windows_across_a_snapshot() {
    let sources = "  a:\n    type: file\n    path: a.csv\n    schema: {k: i64, t: timestamp}\n    event_time: t\n  b:\n    type: file\n    path: b.csv\n    schema: {k: i64, t: timestamp}\n    event_time: t\n";
    let operators = "  - name: wa\n    from: a\n    group_by: [k]\n    window: {type: tumbling, size: 10}\n    aggregate: {n: count(*)}\n  - name: wb\n    from: b\n    group_by: [k]\n    window: {type: tumbling, size: 10}\n    aggregate: {m: count(*)}\n  - name: j\n    join: {left: wa, right: wb, left_key: [k, window_end], right_key: [k, window_end]}";
    let make = || operator_in(sources, operators, "j");
    let window = |k: i64, end: i64, n: i64| {
        vec![
            Value::I64(k),
            Value::Timestamp(end - 10),
            Value::Timestamp(end),
            Value::I64(n),
        ]
    };
    let mut left: Vec<Vec<Value>> = (1..30).map(|k| window(k, 10, k)).collect();
    left.push(window(1, 20, 5));
    let before = [
        Step::Rows(0, left),
        Step::Rows(1, vec![window(2, 10, 7), window(3, 20, 8)]),
        Step::Watermark(5),
    ];
    let after = [
        // Closed for the watermark the snapshot kept: neither is stored to meet the other.
        Step::Rows(1, vec![window(1, 0, 50)]),
        Step::Rows(0, vec![window(1, 0, 51)]),
        Step::Rows(1, (1..30).map(|k| window(k, 10, 100 + k)).collect()),
        Step::Watermark(9),
        // Windows ending at 10 are closed: these rows meet nothing and are not kept.
        Step::Rows(1, vec![window(1, 10, 1)]),
        Step::Rows(0, vec![window(3, 20, 9), window(3, 10, 9)]),
        Step::Rows(1, vec![window(1, 20, 6)]),
        Step::Watermark(i64::MAX),
    ];
    let key = |_: usize, row: &[Value]| vec![row[0].clone(), row[2].clone()];
    let emitted = assert_round_trip(&make, &before, &after, &key);
    let pair = |l: Vec<Value>, r: Vec<Value>| {
        let mut row = l;
        row.extend(r);
        format!("{row:?}")
    };
    assert!(emitted
        .results
        .contains(&pair(window(5, 10, 5), window(5, 10, 105))));
    assert!(emitted
        .results
        .contains(&pair(window(3, 20, 9), window(3, 20, 8))));
    assert!(emitted
        .results
        .contains(&pair(window(1, 20, 5), window(1, 20, 6))));
    assert_eq!(emitted.results.len(), 29 + 2);
    assert_eq!(emitted.late_rows, 4);
}

fn change(op: &str, k: i64, n: i64) -> Vec<Value> {
    vec![Value::Str(op.into()), Value::I64(k), Value::I64(n)]
}

/// Whole state, then two deltas (with groups added, updated, deleted, and deleted and added
/// again): restoring them in order, into one instance or split over two, continues exactly as
/// the original does.
#[test]
fn an_unbounded_aggregate_restores_from_its_whole_state_and_deltas() {
    let make = || {
        operator(
            "  - name: c1\n    from: s\n    group_by: [k]\n    aggregate: {n: count(*)}\n  - name: c2\n    from: c1\n    group_by: [n]\n    aggregate: {keys: count(*), sum_k: sum(k)}",
            "c2",
        )
    };
    // c2's input is c1's changelog: (op, k, n); c2 groups by n.
    let inserts = |ks: std::ops::Range<i64>| {
        Step::Rows(0, ks.map(|k| change("+I", k, 100 + k % 40)).collect())
    };
    let before = [inserts(0..200)];
    // Group 100 loses all 5 rows (deleted), groups 101..110 change, 300 is new.
    let mid: Vec<Vec<Value>> = (0..200)
        .step_by(40)
        .map(|k| change("-D", k, 100))
        .chain((1..11).map(|k| change("+I", 1000 + k, 100 + k)))
        .chain([change("+I", 7, 300)])
        .collect();
    // Group 100 comes back, 300 goes, 111 changes.
    let mid2 = vec![
        change("+I", 5000, 100),
        change("-D", 7, 300),
        change("+I", 2000, 111),
    ];
    let after = [
        Step::Rows(
            0,
            vec![
                change("+I", 1, 100),
                change("-U", 11, 111),
                change("+I", 9, 300),
            ],
        ),
        inputs_spread(),
    ];
    let key_of = |_: usize, row: &[Value]| row[2..3].to_vec();
    assert_chain_round_trip(
        &make,
        &[&before, &[Step::Rows(0, mid)], &[Step::Rows(0, mid2)]],
        &after,
        &key_of,
    );
}

/// Feeds `stages[0]` to an operator that tracks changes and takes a whole snapshot, then each
/// later stage followed by a delta; checks that restoring the chain in order (into one
/// instance, and split over two by key group owner) makes it emit for `after` what the
/// original emits, that a delta holds fewer key groups' changes than the whole state when
/// little changed, and that restoring the whole snapshot alone does not (so the deltas
/// matter).
fn assert_chain_round_trip(
    make: &dyn Fn() -> Box<dyn Stateful>,
    stages: &[&[Step]],
    after: &[Step],
    key_of: &dyn Fn(usize, &[Value]) -> Vec<Value>,
) -> Emitted {
    let one = |_: usize, _: &[Value]| 0;
    let mut original = vec![make()];
    original[0].track_changes();
    drive(&mut original, stages[0], &one);
    let mut chain = original[0].snapshot(MAX_PARALLELISM).expect("snapshot");
    let whole = chain.clone();
    for stage in &stages[1..] {
        drive(&mut original, stage, &one);
        let delta = original[0]
            .snapshot_changes(MAX_PARALLELISM)
            .expect("tracks changes")
            .expect("delta");
        chain.extend(delta);
    }
    let groups = original[0].groups();
    let expected = drive(&mut original, after, &one);
    assert!(
        !expected.results.is_empty(),
        "the test emits after the chain"
    );

    let mut restored = vec![make()];
    for section in &chain {
        restored[0].restore(section).expect("restore");
    }
    assert_eq!(restored[0].groups(), groups);
    assert_eq!(drive(&mut restored, after, &one), expected, "one instance");

    let owner =
        |key_group: u32| wire_core::record::key::key_group_owner(key_group, MAX_PARALLELISM, 2);
    let mut split = vec![make(), make()];
    for section in &chain {
        split[owner(section.key_group)]
            .restore(section)
            .expect("restore");
    }
    let route = |port: usize, row: &[Value]| {
        let hash = wire_core::state::key_hash(&key_of(port, row));
        owner(wire_core::record::key::key_group(hash, MAX_PARALLELISM))
    };
    assert_eq!(drive(&mut split, after, &route), expected, "two instances");

    let mut stale = vec![make()];
    for section in &whole {
        stale[0].restore(section).expect("restore");
    }
    assert_ne!(
        drive(&mut stale, after, &one),
        expected,
        "the deltas matter"
    );
    expected
}

/// More changes over many groups, for the test above.
fn inputs_spread() -> Step {
    Step::Rows(
        0,
        (0..50)
            .map(|k| change("+I", 10_000 + k, 100 + k % 45))
            .collect(),
    )
}

/// Regular (kept forever, or 20 ms), interval and window joins: their deltas hold the rows
/// stored since the last snapshot, and rows that expired by a later watermark are expired
/// again on restore.
#[test]
fn joins_restore_from_their_whole_state_and_deltas() {
    for spec in [
        "left_key: [k], right_key: [k]",
        "left_key: [k], right_key: [k], retention: 20",
        "left_key: [k], right_key: [k], between: [t, e]",
    ] {
        let make = || {
            operator_in(
                JOIN_SOURCES,
                &format!("  - name: j\n    join: {{left: a, right: b, {spec}}}"),
                "j",
            )
        };
        let (before, after) = join_steps();
        let (mid1, rest) = after.split_at(6);
        let (mid2, rest) = rest.split_at(3);
        assert_chain_round_trip(&make, &[&before, mid1, mid2], rest, &first_field);
    }
}

/// A regular join whose output only a projection of the left `e` and the right `t` reads:
/// the planner prunes the rest, so stored rows hold those fields only and the other output
/// fields are NULL. Whole and pruned runs agree on what is read; pruned state survives a
/// snapshot, and restores from a snapshot of the whole join (rows are written whole).
#[test]
fn a_pruned_join_keeps_and_emits_only_the_fields_read_after_it() {
    let join = "  - name: j\n    join: {left: a, right: b, left_key: [k], right_key: [k], right_prefix: r_}";
    let projected = format!("{join}\n  - name: p\n    from: j\n    project: {{e: e, rt: r_t}}");
    let whole = || operator_in(JOIN_SOURCES, join, "j");
    let pruned = || operator_read_by(JOIN_SOURCES, &projected, "j", "p");
    let (before, after) = join_steps();
    let all: Vec<Step> = before.into_iter().chain(after).collect();
    let as_read = |row: &str| {
        // `[I64(k), Timestamp(t), Timestamp(e), I64(k), Timestamp(t)]` with k, t, k as NULL.
        let fields: Vec<&str> = row.trim_matches(['[', ']']).split(", ").collect();
        format!("[Null, Null, {}, Null, {}]", fields[2], fields[4])
    };
    let mut expected: Vec<String> = drive(&mut [whole()], &all, &|_, _| 0)
        .results
        .iter()
        .map(|row| as_read(row))
        .collect();
    expected.sort();
    let emitted = drive(&mut [pruned()], &all, &|_, _| 0);
    assert!(!expected.is_empty());
    assert_eq!(emitted.results, expected);

    let (before, after) = join_steps();
    let pruned_after = assert_round_trip(&pruned, &before, &after, &first_field);
    let mut from_whole = vec![whole()];
    drive(&mut from_whole, &before, &|_, _| 0);
    let mut restored = vec![pruned()];
    for section in from_whole[0].snapshot(MAX_PARALLELISM).expect("snapshot") {
        restored[0].restore(&section).expect("restore");
    }
    assert_eq!(drive(&mut restored, &after, &|_, _| 0), pruned_after);
}

/// Keys that hash alike must compare alike: NaNs of any sign or payload are one key (as the
/// key hash and `key_by` routing treat them), and so are `0.0` and `-0.0`. Before the one key
/// equality of `wire_core::record::key`, a NaN parsed from `-NaN` and one from `NaN` made two groups.
#[test]
fn nan_keys_of_any_bit_pattern_make_one_group() {
    let keys = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_0000_0000_0001),
        0.0,
        -0.0,
    ];
    let mut table = GroupTable::<u32>::default();
    for k in keys {
        let key = [Datum::F64(k)];
        let (id, _) = table.find_or_insert(table::key_hash(&key), &key, || 0);
        if let Some(group) = table.get_mut(id) {
            group.value += 1;
        }
    }
    let counts: Vec<(String, u32)> = table
        .iter()
        .map(|(_, g)| (format!("{:?}", g.key[0]), g.value))
        .collect();
    assert_eq!(table.len(), 2, "{counts:?}");
    assert!(key_part_eq(
        ValueRef::F64(f64::NAN),
        ValueRef::F64(-f64::NAN)
    ));
    assert!(datum_eq(&Datum::F64(-f64::NAN), &Value::F64(f64::NAN)));
}

/// Groups across several chunks of the table's slab: every one is found under its id, a
/// removed group's id is reused, and iteration sees each live group once, in id order.
#[test]
fn a_group_table_over_many_chunks_keeps_ids_stable() {
    let mut table = GroupTable::<u32>::default();
    let n = 10_000u32;
    let mut ids = Vec::new();
    for k in 0..n {
        let key = [Datum::I64(i64::from(k))];
        let (id, new) = table.find_or_insert(table::key_hash(&key), &key, || k);
        assert!(new);
        ids.push(id);
    }
    for k in (0..n).step_by(7) {
        let key = [Datum::I64(i64::from(k))];
        assert_eq!(
            table.find(table::key_hash(&key), &key),
            Some(ids[k as usize])
        );
        assert_eq!(table.get(ids[k as usize]).map(|g| g.value), Some(k));
    }
    let gone = table.remove(ids[5000]).map(|g| g.value);
    assert_eq!(gone, Some(5000));
    let key = [Datum::I64(-1)];
    let (id, new) = table.find_or_insert(table::key_hash(&key), &key, || 99);
    assert!(new);
    assert_eq!(id, ids[5000], "the free id is reused");
    let seen: Vec<(u32, u32)> = table.iter().map(|(id, g)| (id, g.value)).collect();
    assert_eq!(seen.len(), n as usize);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(seen[5000], (ids[5000], 99));
    assert!(table.footprint_bytes() >= n as usize * size_of::<Option<u32>>());
}

/// A cumulate window aggregate against a brute-force model: rows `(k, t)` arrive out of order
/// (those the watermark has passed are not sent), the watermark follows the largest time minus
/// `delay`; every window `[s, e)` (`e` a step boundary of the period starting at `s`) with rows
/// of a key is emitted once for it, with the count and the maximum of those rows.
#[test]
fn cumulate_windows_match_a_brute_force_model() {
    use proptest::prelude::*;
    let (step, size) = (5i64, 20i64);
    let strategy = (prop::collection::vec((0i64..3, 0i64..100), 1..80), 0i64..30);
    proptest!(|((arrivals, delay) in strategy)| {
        let mut op = operator(
            "  - name: c\n    from: s\n    group_by: [k]\n    window: {type: cumulate, step: 5, size: 20}\n    aggregate: {n: count(*), hi: max(t)}",
            "c",
        );
        let mut out = Output::new(1 << 16);
        let mut got = Vec::new();
        let (mut max_t, mut watermark) = (i64::MIN, i64::MIN);
        let mut kept = Vec::new();
        for (k, t) in arrivals {
            if t <= watermark {
                continue;
            }
            op.on_batch(&rows(&[(k, t)]), 0, 0, &mut out).unwrap();
            kept.push((k, t));
            max_t = max_t.max(t);
            if max_t - delay > watermark {
                watermark = max_t - delay;
                op.on_watermark(watermark, &mut out).unwrap();
                got.extend(results(&mut out));
            }
        }
        op.on_watermark(i64::MAX, &mut out).unwrap();
        got.extend(results(&mut out));
        let mut expected = Vec::new();
        for k in 0..3 {
            for start in (0..100).step_by(size as usize) {
                for end in (start + step..=start + size).step_by(step as usize) {
                    let inside: Vec<i64> = kept
                        .iter()
                        .filter(|(kk, t)| *kk == k && start <= *t && *t < end)
                        .map(|(_, t)| *t)
                        .collect();
                    if let Some(hi) = inside.iter().max() {
                        expected.push(vec![
                            Value::I64(k),
                            Value::Timestamp(start),
                            Value::Timestamp(end),
                            Value::I64(inside.len() as i64),
                            Value::Timestamp(*hi),
                        ]);
                    }
                }
            }
        }
        let key = |row: &Vec<Value>| format!("{row:?}");
        got.sort_by_key(key);
        expected.sort_by_key(key);
        prop_assert_eq!(got, expected);
    });
}

/// A hop window aggregate against a brute-force model. Rows `(k, v, t)` arrive out of order,
/// also behind the watermark while a window that holds them has yet to fire (the rows a key's
/// slide must take in); the watermark follows the largest time minus `delay`. Every window
/// `[e - size, e)` with rows of a key is emitted once for it, at the first watermark that fires
/// it, with what arrived before. Run once with aggregates that unmerge exactly (the windows
/// slide) and once with one that does not (every firing merges its panes).
#[test]
fn hop_windows_match_a_brute_force_model() {
    use proptest::prelude::*;
    use wire_core::time::window::fires;
    for (slide, with_max) in [(5i64, false), (3, false), (5, true)] {
        let size = 20i64;
        let strategy = (
            prop::collection::vec((0i64..3, -50i64..50, 0i64..100), 1..80),
            0i64..30,
        );
        proptest!(|((arrivals, delay) in strategy)| {
            let aggregates = if with_max {
                "{n: count(*), total: sum(v), mean: avg(v), hi: max(v)}"
            } else {
                "{n: count(*), total: sum(v), mean: avg(v)}"
            };
            let text = format!(
                "sources:\n  s:\n    type: file\n    path: x.csv\n    schema: {{k: i64, v: i64, t: timestamp}}\n    event_time: t\noperators:\n  - name: h\n    from: s\n    group_by: [k]\n    window: {{type: hop, size: {size}, slide: {slide}}}\n    aggregate: {aggregates}\nsinks:\n  out: {{type: blackhole, from: h}}\n"
            );
            let spec = wire_core::frontend::spec::PipelineSpec::parse("t.yaml", &text).expect("spec");
            let plan = Plan::from_spec(&spec).expect("plan");
            let mut op = build(&plan, 0).expect("stateful");
            let mut out = Output::new(1 << 16);
            let mut got = Vec::new();
            let mut expected = Vec::new();
            let (mut max_t, mut watermark) = (i64::MIN, i64::MIN);
            let mut sent: Vec<(i64, i64, i64)> = Vec::new();
            // Windows start at multiples of the slide; rows have 0 <= t < 100.
            let ends: Vec<i64> = (-size / slide - 1..=100 / slide)
                .map(|i| i * slide + size)
                .collect();
            // As the operator: the earliest window after the last fired one that holds rows
            // fires once the watermark passes its end; windows skipped for want of rows stay so.
            let mut fired_end = i64::MIN;
            let fire_up_to = |watermark: i64, fired_end: &mut i64, sent: &[(i64, i64, i64)], expected: &mut Vec<Vec<Value>>| {
                while let Some(&end) = ends.iter().find(|&&end| {
                    end > *fired_end && sent.iter().any(|(_, _, t)| end - size <= *t && *t < end)
                }) {
                    if !fires(end, watermark) {
                        break;
                    }
                    for k in 0..3 {
                        let vs: Vec<i64> = sent
                            .iter()
                            .filter(|(kk, _, t)| *kk == k && end - size <= *t && *t < end)
                            .map(|(_, v, _)| *v)
                            .collect();
                        if vs.is_empty() {
                            continue;
                        }
                        let total: i64 = vs.iter().sum();
                        let mut row = vec![
                            Value::I64(k),
                            Value::Timestamp(end - size),
                            Value::Timestamp(end),
                            Value::I64(vs.len() as i64),
                            Value::I64(total),
                            Value::F64(total as f64 / vs.len() as f64),
                        ];
                        if with_max {
                            row.push(Value::I64(*vs.iter().max().expect("rows")));
                        }
                        expected.push(row);
                    }
                    *fired_end = end;
                }
            };
            for (k, v, t) in arrivals {
                let last_end = t.div_euclid(slide) * slide + size;
                if fires(last_end, watermark) {
                    continue; // late: no open window holds it
                }
                let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
                builder
                    .push_with_time(&[ValueRef::I64(k), ValueRef::I64(v), ValueRef::Timestamp(t)], t)
                    .expect("push");
                op.on_batch(&builder.finish(), 0, 0, &mut out).unwrap();
                sent.push((k, v, t));
                max_t = max_t.max(t);
                if max_t - delay > watermark {
                    watermark = max_t - delay;
                    fire_up_to(watermark, &mut fired_end, &sent, &mut expected);
                    op.on_watermark(watermark, &mut out).unwrap();
                    got.extend(results(&mut out));
                }
            }
            fire_up_to(i64::MAX, &mut fired_end, &sent, &mut expected);
            op.on_watermark(i64::MAX, &mut out).unwrap();
            got.extend(results(&mut out));
            let key = |row: &Vec<Value>| format!("{row:?}");
            got.sort_by_key(key);
            expected.sort_by_key(key);
            prop_assert_eq!(got, expected, "slide {}, max {}", slide, with_max);
        });
    }
}

/// Hop windows with late rows, restored from a snapshot taken while keys hold slides and
/// panes some fired windows still read: the restored operator (its slides rebuilt from the
/// panes) emits what the original does, with aggregates that unmerge (sliding) and without.
#[test]
fn hop_windows_survive_a_snapshot_with_slides_and_late_rows() {
    for aggregates in ["{n: count(*), total: sum(k)}", "{n: count(*), hi: max(t)}"] {
        let make = || {
            operator(
                &format!("  - name: h\n    from: s\n    group_by: [k]\n    window: {{type: hop, size: 20, slide: 5, allowed_lateness: 10}}\n    aggregate: {aggregates}"),
                "h",
            )
        };
        // Keys over several panes each; 30.. only spread the state over key groups.
        let mut first: Vec<Vec<Value>> = (1..30).map(|k| kt(k, k % 17)).collect();
        first.extend((1..10).map(|k| kt(k, 20 + k)));
        first.extend((30..60).map(|k| kt(k, 40 + k % 5)));
        let before = [
            Step::Rows(0, first),
            Step::Watermark(24),
            Step::Rows(0, vec![kt(2, 26), kt(3, 3)]),
            Step::Watermark(29),
        ];
        let after = [
            // Late within the lateness: the fired windows that hold t = 9 fire again.
            Step::Rows(0, vec![kt(1, 9), kt(40, 44)]),
            // Into panes a fired window's slide holds, and past the lateness (late).
            Step::Rows(0, vec![kt(2, 27), kt(5, 28), kt(6, -20)]),
            Step::Watermark(40),
            Step::Rows(0, (1..60).map(|k| kt(k, 45 + k % 9)).collect()),
            Step::Watermark(52),
            Step::Watermark(i64::MAX),
        ];
        let emitted = assert_round_trip(&make, &before, &after, &first_field);
        assert_eq!(emitted.late_rows, 1, "{aggregates}");
        assert!(
            emitted.results.len() > 100,
            "{aggregates}: {}",
            emitted.results.len()
        );
    }
}

/// A window firing cut short by a full output (one batch of two rows here) goes on where it
/// stopped: paused and resumed until nothing is pending, it emits exactly what one unpaused
/// firing does, for tumbling windows, sliding hop windows and hop windows that merge panes.
#[test]
fn a_firing_paused_by_a_full_output_resumes_where_it_stopped() {
    let windows = [
        "{type: tumbling, size: 10}",
        "{type: hop, size: 20, slide: 5}",
        "{type: cumulate, step: 5, size: 20}",
    ];
    for window in windows {
        for aggregates in ["{n: count(*), total: sum(k)}", "{n: count(*), hi: max(t)}"] {
            let run = |limit: Option<usize>| {
                let mut op = operator(
                    &format!("  - name: w\n    from: s\n    group_by: [k]\n    window: {window}\n    aggregate: {aggregates}"),
                    "w",
                );
                let mut out = Output::new(2);
                if let Some(limit) = limit {
                    out = out.with_limit(limit);
                }
                let pairs: Vec<(i64, i64)> = (0..300).map(|i| (i % 37, i % 50)).collect();
                op.on_batch(&rows(&pairs), 0, 0, &mut out).unwrap();
                let (mut got, mut pauses) = (Vec::new(), 0);
                for watermark in [24, 49, i64::MAX] {
                    op.on_watermark(watermark, &mut out).unwrap();
                    got.extend(results(&mut out));
                    while op.pending() {
                        pauses += 1;
                        op.resume(&mut out).unwrap();
                        got.extend(results(&mut out));
                    }
                }
                got.sort_by_key(|row| format!("{row:?}"));
                (got, pauses)
            };
            let (whole, _) = run(None);
            let (pieces, pauses) = run(Some(1));
            assert!(whole.len() > 100, "{window} {aggregates}: {}", whole.len());
            assert!(
                pauses > whole.len() / 4,
                "{window} {aggregates}: {pauses} pauses"
            );
            assert_eq!(pieces, whole, "{window} {aggregates}");
        }
    }
}

/// A key's session in [`SessionModel`]: its bounds, its rows' times in fold order, fired.
type ModelSession = (i64, i64, Vec<i64>, bool);

/// Session windows as plainly as they can be written: every watermark scans every session.
/// The operator arms one timer per key and checks sessions only when it fires.
struct SessionModel {
    gap: i64,
    lateness: i64,
    watermark: i64,
    keys: std::collections::BTreeMap<i64, Vec<ModelSession>>,
    late: u64,
}

impl SessionModel {
    fn add(&mut self, k: i64, ts: i64) {
        let end = ts + self.gap;
        let sessions = self.keys.entry(k).or_default();
        let touches = |s: &ModelSession| s.0 <= end && ts <= s.1;
        if !sessions.iter().any(touches)
            && wire_core::time::window::expired(end, self.lateness, self.watermark)
        {
            self.late += 1;
            return;
        }
        // Merge in order of start; the new row's session last among equal starts.
        let (mut merging, rest): (Vec<ModelSession>, Vec<ModelSession>) =
            sessions.drain(..).partition(touches);
        *sessions = rest;
        merging.push((ts, end, vec![ts], false));
        merging.sort_by_key(|s| s.0);
        let start = merging.iter().map(|s| s.0).min().unwrap_or(ts);
        let last_end = merging.iter().map(|s| s.1).max().unwrap_or(end);
        let times = merging.into_iter().flat_map(|s| s.2).collect();
        sessions.push((start, last_end, times, false));
    }

    fn advance(&mut self, watermark: i64) -> Vec<Vec<Value>> {
        use wire_core::time::window::{expired, fires};
        self.watermark = self.watermark.max(watermark);
        let mut fired = Vec::new();
        for (k, sessions) in &mut self.keys {
            for (start, end, times, done) in sessions.iter_mut() {
                if !*done && fires(*end, self.watermark) {
                    *done = true;
                    fired.push(vec![
                        Value::I64(*k),
                        Value::Timestamp(*start),
                        Value::Timestamp(*end),
                        Value::I64(times.len() as i64),
                        Value::Timestamp(times[0]),
                        Value::Timestamp(times[times.len() - 1]),
                    ]);
                }
            }
            sessions.retain(|s| !expired(s.1, self.lateness, self.watermark));
        }
        fired.sort_by_key(|row| format!("{row:?}"));
        fired
    }
}

#[test]
fn session_windows_fire_as_a_scan_of_every_session_would() {
    use proptest::prelude::*;
    // Batches of (key, time) and watermark moves; rows may come late or bridge sessions.
    let step = prop_oneof![
        prop::collection::vec((0i64..3, 0i64..300), 1..6).prop_map(Ok),
        (0i64..40).prop_map(Err),
    ];
    let strategy = (prop::collection::vec(step, 1..60), 1i64..25, 0i64..30);
    proptest!(|((steps, gap, lateness) in strategy)| {
        let mut op = operator(
            &format!("  - name: s2\n    from: s\n    group_by: [k]\n    window: {{type: session, gap: {gap}, allowed_lateness: {lateness}}}\n    aggregate: {{n: count(*), f: first(t), l: last(t)}}"),
            "s2",
        );
        let mut model = SessionModel { gap, lateness, watermark: i64::MIN, keys: Default::default(), late: 0 };
        let mut out = Output::new(1 << 16);
        let mut watermark = 0;
        for step in steps.into_iter().map(Some).chain([None]) {
            match step {
                Some(Ok(batch)) => {
                    op.on_batch(&rows(&batch), 0, 0, &mut out).unwrap();
                    batch.iter().for_each(|&(k, t)| model.add(k, t));
                    continue;
                }
                Some(Err(by)) => watermark += by,
                None => watermark = i64::MAX,
            }
            op.on_watermark(watermark, &mut out).unwrap();
            let mut got = results(&mut out);
            got.sort_by_key(|row| format!("{row:?}"));
            prop_assert_eq!(got, model.advance(watermark), "at watermark {}", watermark);
            prop_assert_eq!(out.late_rows, model.late);
        }
        prop_assert_eq!(op.groups(), 0);
    });
}

/// The rows a top keeps of `rows` (in arrival order): the best `n` by `order` descending,
/// earlier rows first among equals, plus the rows tied with the n-th when `with_ties`.
fn top_of(rows: &[Vec<Value>], order: usize, n: usize, with_ties: bool) -> Vec<Vec<Value>> {
    let mut sorted = rows.to_vec();
    // Stable: equal rows keep their arrival order.
    sorted.sort_by(|a, b| cmp_ref(b[order].as_ref(), a[order].as_ref()));
    let mut keep = n.min(sorted.len());
    if with_ties && keep == n && keep > 0 {
        let nth = sorted[keep - 1][order].clone();
        keep += sorted[keep..]
            .iter()
            .take_while(|r| cmp_ref(r[order].as_ref(), nth.as_ref()) == Ordering::Equal)
            .count();
    }
    sorted.truncate(keep);
    sorted
}

#[test]
fn tops_keep_what_sorting_every_group_would() {
    use proptest::prelude::*;
    // Rows (group, price, time): few prices, so ties are common.
    let row = (0i64..3, 0i64..5, 0i64..60);
    let strategy = (
        prop::collection::vec(prop::collection::vec(row, 1..20), 1..8),
        1usize..4,
        any::<bool>(),
        any::<bool>(),
    );
    let sources = "  s:\n    type: file\n    path: x.csv\n    schema: {g: i64, p: i64, t: timestamp}\n    event_time: t\n";
    proptest!(|((batches, n, with_ties, windowed) in strategy)| {
        let window = if windowed { ", window: {type: tumbling, size: 10}" } else { "" };
        let operators = format!(
            "  - name: best\n    from: s\n    top: {{n: {n}, order_by: p desc, group_by: [g], with_ties: {with_ties}{window}}}"
        );
        let mut op = operator_in(sources, &operators, "best");
        let mut out = Output::new(1 << 16);
        let mut all: Vec<Vec<Value>> = Vec::new();
        for batch in &batches {
            let batch: Vec<Vec<Value>> = batch
                .iter()
                .map(|&(g, p, t)| vec![Value::I64(g), Value::I64(p), Value::Timestamp(t)])
                .collect();
            op.on_batch(&batch_of(&batch), 0, 0, &mut out).unwrap();
            all.extend(batch);
        }
        op.on_watermark(i64::MAX, &mut out).unwrap();
        let got = results(&mut out);
        // The kept rows per group (and window): a windowed top emits them when the window
        // closes; a changelog top's `+I` and `-D` leave them.
        let mut kept: Vec<Vec<Value>> = Vec::new();
        if windowed {
            kept = got;
        } else {
            for change in got {
                let row = change[1..].to_vec();
                match &change[0] {
                    Value::Str(op) if op == "+I" => kept.push(row),
                    Value::Str(op) if op == "-D" => {
                        let at = kept.iter().position(|r| *r == row);
                        prop_assert!(at.is_some(), "-D of a row not kept: {:?}", row);
                        kept.remove(at.unwrap_or_default());
                    }
                    other => prop_assert!(false, "unexpected op {:?}", other),
                }
            }
        }
        let mut expected: Vec<Vec<Value>> = Vec::new();
        let mut groups: std::collections::BTreeMap<(i64, i64), Vec<Vec<Value>>> = Default::default();
        for row in &all {
            let (Value::I64(g), Value::Timestamp(t)) = (&row[0], &row[2]) else { unreachable!() };
            let end = if windowed { t - t % 10 + 10 } else { 0 };
            groups.entry((*g, end)).or_default().push(row.clone());
        }
        for ((_, end), rows) in &groups {
            for mut row in top_of(rows, 1, n, with_ties) {
                if windowed {
                    row.extend([Value::Timestamp(end - 10), Value::Timestamp(*end)]);
                }
                expected.push(row);
            }
        }
        kept.sort_by_key(|row| format!("{row:?}"));
        expected.sort_by_key(|row| format!("{row:?}"));
        prop_assert_eq!(kept, expected);
    });
}
