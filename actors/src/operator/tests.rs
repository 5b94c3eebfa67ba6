use super::*;
use std::cmp::Ordering;
use wire_core::plan::Plan;
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
    let spec = wire_core::spec::PipelineSpec::parse("t.yaml", &text).expect("spec");
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
