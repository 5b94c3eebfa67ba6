use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::record::batch::{Batch, BatchBuilder, PartitionId, StreamId};
use crate::record::row::ValueRef;
use crate::record::schema::Field;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("auction", DataType::I64),
        Field::nullable("bidder", DataType::I64),
        Field::nullable("price", DataType::I64),
        Field::nullable("ratio", DataType::F64),
        Field::nullable("channel", DataType::String),
        Field::new("at", DataType::Timestamp),
        Field::nullable("ok", DataType::Bool),
        Field::nullable("blob", DataType::Bytes),
        Field::new("distinct_id", DataType::I64),
        Field::new("we)ird", DataType::I64),
    ])
}

/// Five bids; NULLs in most columns.
fn bids() -> Batch {
    use ValueRef::{Bool, Bytes, Null, Str, Timestamp, F64, I64};
    let rows: [[ValueRef<'_>; 10]; 5] = [
        [
            I64(1),
            I64(10),
            I64(100),
            F64(0.5),
            Str("web"),
            Timestamp(1000),
            Bool(true),
            Bytes(b"a"),
            I64(1),
            I64(1),
        ],
        [
            I64(1),
            I64(11),
            Null,
            Null,
            Str("app"),
            Timestamp(3000),
            Bool(false),
            Null,
            I64(2),
            I64(2),
        ],
        [
            I64(2),
            I64(10),
            I64(50),
            F64(-1.5),
            Null,
            Timestamp(2000),
            Null,
            Bytes(b"b"),
            I64(3),
            I64(1),
        ],
        [
            I64(2),
            Null,
            I64(300),
            F64(2.0),
            Str("web"),
            Timestamp(500),
            Bool(true),
            Bytes(b"a"),
            I64(4),
            I64(3),
        ],
        [
            I64(3),
            I64(12),
            I64(20),
            Null,
            Str("it's (odd"),
            Timestamp(4000),
            Bool(false),
            Bytes(b"c"),
            I64(5),
            I64(1),
        ],
    ];
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for row in &rows {
        builder.push(row).unwrap();
    }
    builder.finish()
}

fn owned_result(call: &AggCall, acc: &Acc) -> Value {
    owned(call.result(acc))
}

/// Folds every row of `batch` into one accumulator of `text` and returns the result.
fn run_on(text: &str, schema: &Schema, batch: &Batch) -> Value {
    let call = compile(text, schema).unwrap_or_else(|e| panic!("{text}: {e} at {}", e.offset));
    let mut acc = call.new_acc();
    for row in batch.view().rows() {
        call.update(&mut acc, row);
    }
    owned_result(&call, &acc)
}

fn run(text: &str) -> Value {
    run_on(text, &schema(), &bids())
}

fn err(text: &str) -> ExprError {
    compile(text, &schema()).expect_err(text)
}

/// Asserts that `text` fails at `offset` with a message containing `needle`.
fn check_err(text: &str, offset: usize, needle: &str) {
    let e = err(text);
    assert_eq!(e.offset, offset, "{text}: {}", e.message);
    assert!(e.message.contains(needle), "{text}: {}", e.message);
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// A one-column (`x`, nullable) batch of floats.
fn floats(values: &[f64]) -> (Schema, Batch) {
    let schema = Schema::new(vec![Field::nullable("x", DataType::F64)]);
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for v in values {
        builder.push(&[ValueRef::F64(*v)]).unwrap();
    }
    (schema, builder.finish())
}

/// A one-column (`x`, nullable) batch of integers and NULLs.
fn ints(values: &[Option<i64>]) -> (Schema, Batch) {
    let schema = Schema::new(vec![Field::nullable("x", DataType::I64)]);
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for v in values {
        builder
            .push(&[v.map_or(ValueRef::Null, ValueRef::I64)])
            .unwrap();
    }
    (schema, builder.finish())
}

#[test]
fn kinds_types_and_nullability() {
    let cases = [
        ("count(*)", AggKind::CountStar, DataType::I64, false),
        ("count(price)", AggKind::Count, DataType::I64, false),
        (
            "count(distinct channel)",
            AggKind::CountDistinct,
            DataType::I64,
            false,
        ),
        ("sum(price)", AggKind::Sum, DataType::I64, true),
        ("sum(ratio)", AggKind::Sum, DataType::F64, true),
        ("min(at)", AggKind::Min, DataType::Timestamp, true),
        ("max(channel)", AggKind::Max, DataType::String, true),
        ("avg(price)", AggKind::Avg, DataType::F64, true),
        ("first(blob)", AggKind::First, DataType::Bytes, true),
        ("last(ok)", AggKind::Last, DataType::Bool, true),
    ];
    for (text, kind, data_type, nullable) in cases {
        let call = compile(text, &schema()).unwrap();
        assert_eq!(call.kind(), kind, "{text}");
        assert_eq!(call.data_type(), data_type, "{text}");
        assert_eq!(call.nullable(), nullable, "{text}");
        assert_eq!(call.source(), text);
    }
}

#[test]
fn case_and_whitespace_are_free() {
    let call = compile(
        "  COUNT (  DISTINCT   bidder )FILTER(WHERE price<200)  ",
        &schema(),
    )
    .unwrap();
    assert_eq!(call.kind(), AggKind::CountDistinct);
    assert_eq!(call.arg().map(Expr::source), Some("bidder"));
    assert_eq!(call.filter().map(Expr::source), Some("price<200"));
    assert_eq!(
        run("Sum(price) filter\n(\twhere channel = 'web')"),
        Value::I64(400)
    );
}

#[test]
fn distinct_is_a_keyword_only_as_a_whole_word() {
    let call = compile("count(distinct_id)", &schema()).unwrap();
    assert_eq!(call.kind(), AggKind::Count);
    let call = compile("count(distinct(bidder))", &schema()).unwrap();
    assert_eq!(call.kind(), AggKind::CountDistinct);
    assert_eq!(run("count(distinct(bidder))"), Value::I64(3));
}

#[test]
fn counts() {
    assert_eq!(run("count(*)"), Value::I64(5));
    assert_eq!(run("count(price)"), Value::I64(4));
    assert_eq!(run("count(bidder)"), Value::I64(4));
    assert_eq!(run("count(distinct bidder)"), Value::I64(3));
    assert_eq!(run("count(distinct channel)"), Value::I64(3));
    assert_eq!(run("count(distinct ratio)"), Value::I64(3));
    assert_eq!(run("count(distinct ok)"), Value::I64(2));
    assert_eq!(run("count(distinct blob)"), Value::I64(3));
    assert_eq!(run("count(distinct at)"), Value::I64(5));
    assert_eq!(run("count(distinct auction % 2)"), Value::I64(2));
}

#[test]
fn sums_and_averages() {
    assert_eq!(run("sum(price)"), Value::I64(470));
    assert_eq!(run("sum(price * 2)"), Value::I64(940));
    assert_eq!(run("sum(ratio)"), Value::F64(1.0));
    assert_eq!(run("avg(price)"), Value::F64(117.5));
    assert_eq!(run("avg(ratio)"), Value::F64(1.0 / 3.0));
}

#[test]
fn sum_of_i64_wraps_and_avg_is_exact() {
    let (schema, batch) = ints(&[Some(i64::MAX), Some(1)]);
    assert_eq!(run_on("sum(x)", &schema, &batch), Value::I64(i64::MIN));
    let (schema, batch) = ints(&[Some(i64::MAX), None, Some(i64::MAX)]);
    assert_eq!(
        run_on("avg(x)", &schema, &batch),
        Value::F64(i64::MAX as f64)
    );
    let (schema, batch) = ints(&[Some(i64::MIN), Some(i64::MIN), Some(-1)]);
    let expected = (2 * i128::from(i64::MIN) - 1) as f64 / 3.0;
    assert_eq!(run_on("avg(x)", &schema, &batch), Value::F64(expected));
}

#[test]
fn min_and_max_keep_the_type() {
    assert_eq!(run("min(price)"), Value::I64(20));
    assert_eq!(run("max(price)"), Value::I64(300));
    assert_eq!(run("min(ratio)"), Value::F64(-1.5));
    assert_eq!(run("max(ratio)"), Value::F64(2.0));
    assert_eq!(run("min(at)"), Value::Timestamp(500));
    assert_eq!(run("max(at)"), Value::Timestamp(4000));
    assert_eq!(run("min(channel)"), s("app"));
    assert_eq!(run("max(channel)"), s("web"));
    assert_eq!(run("min(ok)"), Value::Bool(false));
    assert_eq!(run("max(ok)"), Value::Bool(true));
    assert_eq!(run("max(`we)ird`)"), Value::I64(3));
}

#[test]
fn floats_order_by_total_cmp_and_distinct_by_value() {
    let (schema, batch) = floats(&[0.0, -0.0, 1.0]);
    let Value::F64(min) = run_on("min(x)", &schema, &batch) else {
        panic!("min(x) is not a float");
    };
    assert!(min == 0.0 && min.is_sign_negative(), "{min}");
    assert_eq!(run_on("count(distinct x)", &schema, &batch), Value::I64(2));
    let (schema, batch) = floats(&[1.0, f64::NAN, 3.0]);
    let Value::F64(max) = run_on("max(x)", &schema, &batch) else {
        panic!("max(x) is not a float");
    };
    assert!(max.is_nan());
    assert_eq!(run_on("min(x)", &schema, &batch), Value::F64(1.0));
}

#[test]
fn first_and_last_follow_arrival_and_skip_nulls() {
    assert_eq!(run("first(price)"), Value::I64(100));
    assert_eq!(run("last(price)"), Value::I64(20));
    assert_eq!(run("first(ratio)"), Value::F64(0.5));
    assert_eq!(run("last(ratio)"), Value::F64(2.0));
    assert_eq!(run("first(channel)"), s("web"));
    assert_eq!(run("last(channel)"), s("it's (odd"));
    assert_eq!(run("first(blob)"), Value::Bytes(b"a".to_vec()));
    assert_eq!(run("last(blob)"), Value::Bytes(b"c".to_vec()));
    assert_eq!(run("first(ok)"), Value::Bool(true));
    assert_eq!(run("last(ok)"), Value::Bool(false));
    assert_eq!(run("last(at)"), Value::Timestamp(4000));
}

#[test]
fn no_values_gives_null_or_zero() {
    let none = "filter (where auction = 99)";
    for text in [
        "sum(price)",
        "sum(ratio)",
        "min(channel)",
        "max(at)",
        "avg(price)",
        "avg(ratio)",
    ] {
        assert_eq!(run(&format!("{text} {none}")), Value::Null, "{text}");
    }
    for text in ["first(blob)", "last(ok)"] {
        assert_eq!(run(&format!("{text} {none}")), Value::Null, "{text}");
    }
    for text in [
        "count(*)",
        "count(price)",
        "count(distinct bidder)",
        "count(distinct channel)",
    ] {
        assert_eq!(run(&format!("{text} {none}")), Value::I64(0), "{text}");
    }
    let (schema, batch) = ints(&[None, None]);
    assert_eq!(run_on("sum(x)", &schema, &batch), Value::Null);
    assert_eq!(run_on("count(x)", &schema, &batch), Value::I64(0));
    assert_eq!(run_on("count(*)", &schema, &batch), Value::I64(2));
}

#[test]
fn filters_select_rows() {
    assert_eq!(run("count(*) filter (where price < 100)"), Value::I64(2));
    assert_eq!(run("count(*) filter (where ok)"), Value::I64(2));
    assert_eq!(
        run("sum(price) filter (where channel = 'web')"),
        Value::I64(400)
    );
    assert_eq!(
        run("count(distinct bidder) filter (where price < 200)"),
        Value::I64(2)
    );
    assert_eq!(
        run("count(*) filter (where channel = 'it''s (odd')"),
        Value::I64(1)
    );
    assert_eq!(
        run("last(channel) filter (where channel <> 'it''s (odd')"),
        s("web")
    );
    assert_eq!(
        run("count(price) filter (where `we)ird` = 1)"),
        Value::I64(3)
    );
}

#[test]
fn unknown_functions_get_a_hint() {
    check_err(
        "cnt(*)",
        0,
        "unknown aggregate function `cnt`; did you mean `count`?",
    );
    check_err("  SUMM(price)", 2, "did you mean `sum`?");
    check_err("median(price)", 0, "the functions are: count, sum");
    check_err("", 0, "expected an aggregate call");
    check_err("(price)", 0, "expected an aggregate call");
}

#[test]
fn malformed_calls() {
    check_err("sum price", 4, "expected `(` after `sum`");
    check_err("SUM", 3, "expected `(` after `sum`");
    check_err("sum(price", 3, "missing `)`");
    check_err("count(channel = 'x)", 16, "unterminated string");
    check_err("count(`x)", 6, "unterminated field name");
    check_err("count()", 6, "count needs an argument");
    check_err("max( )", 5, "max needs an argument: max(x)");
    check_err("count(distinct )", 14, "count(distinct) needs an argument");
    check_err("sum(*)", 4, "`*` is only allowed in count(*)");
    check_err(
        "min(distinct price)",
        4,
        "`distinct` is only allowed in count(distinct x)",
    );
    check_err(
        "sum(price) extra",
        11,
        "unexpected `extra` after the aggregate call",
    );
    check_err("sum(price) filtr (where ok)", 11, "did you mean `filter`?");
    check_err(
        "sum(price) filter (where ok) x",
        29,
        "unexpected `x` after the filter",
    );
    check_err(
        "count(*) filter (where ok) filter (where ok)",
        27,
        "after the filter",
    );
}

#[test]
fn malformed_filters() {
    check_err(
        "count(*) filter where ok",
        16,
        "expected `(` after `filter`",
    );
    check_err("count(*) filter (ok)", 17, "expected `where`");
    check_err("count(*) filter (wherever)", 17, "expected `where`");
    check_err("count(*) filter ( where  )", 23, "needs a condition");
    check_err(
        "count(*) filter (where price)",
        23,
        "filter needs a bool condition, found i64",
    );
    check_err("count(*) filter (where ok", 16, "missing `)`");
}

#[test]
fn argument_types_are_checked() {
    check_err("sum(channel)", 4, "sum needs a number, found string");
    check_err("avg( at)", 5, "avg needs a number, found timestamp");
    check_err("sum(ok)", 4, "sum needs a number, found bool");
    check_err(
        "min(blob)",
        4,
        "min needs a number, timestamp, string or bool, found bytes",
    );
    check_err("max(blob)", 4, "max needs");
    for text in [
        "count(blob)",
        "count(distinct blob)",
        "first(blob)",
        "last(at)",
    ] {
        assert!(compile(text, &schema()).is_ok(), "{text}");
    }
}

#[test]
fn expression_errors_point_into_the_whole_text() {
    let e = err("sum(prcie)");
    assert_eq!(e.offset, 4);
    assert_eq!(e.field.as_deref(), Some("prcie"));
    assert!(e.message.contains("did you mean `price`"), "{}", e.message);
    let text = "count(*) filter (where pricee < 3)";
    let e = err(text);
    assert_eq!(e.offset, text.find("pricee").unwrap());
    assert_eq!(e.field.as_deref(), Some("pricee"));
    let text = "count(distinct   bidder + 'x')";
    let inner = expr::compile("bidder + 'x'", &schema()).unwrap_err();
    assert_eq!(
        err(text).offset,
        text.find("bidder").unwrap() + inner.offset
    );
    let text = "count(*) filter (where price > )";
    let inner = expr::compile("price >", &schema()).unwrap_err();
    assert_eq!(err(text).offset, text.find("price").unwrap() + inner.offset);
}

#[test]
fn parentheses_inside_quotes_and_nesting_do_not_close_the_call() {
    assert_eq!(run("count(distinct (auction + (1)))"), Value::I64(3));
    assert_eq!(run("count(channel = ')')"), Value::I64(4));
    assert_eq!(
        run("count(*) filter (where channel = ')(' or (price > 60))"),
        Value::I64(2)
    );
}

#[test]
fn accumulators_are_small_and_bytes_are_counted() {
    assert!(size_of::<Acc>() <= 32);
    let call = compile("count(*)", &schema()).unwrap();
    assert_eq!(call.acc_bytes(&call.new_acc()), size_of::<Acc>());
    let call = compile("count(distinct channel)", &schema()).unwrap();
    let empty = call.acc_bytes(&call.new_acc());
    let batch = bids();
    let mut acc = call.new_acc();
    for row in batch.view().rows() {
        call.update(&mut acc, row);
    }
    assert!(call.acc_bytes(&acc) > empty + "webappit's (odd".len());
    let call = compile("last(channel)", &schema()).unwrap();
    let mut acc = call.new_acc();
    call.update(&mut acc, batch.view().row(4));
    assert!(call.acc_bytes(&acc) >= size_of::<Acc>() + "it's (odd".len());
}

#[test]
fn merging_panes_in_time_order() {
    let batch = bids();
    let view = batch.view();
    for text in [
        "first(channel)",
        "last(channel)",
        "count(distinct blob)",
        "avg(ratio)",
    ] {
        let call = compile(text, &schema()).unwrap();
        let mut early = call.new_acc();
        let mut late = call.new_acc();
        for index in 0..view.row_count() {
            let pane = if index < 2 { &mut early } else { &mut late };
            call.update(pane, view.row(index));
        }
        call.merge(&mut early, &late);
        assert_eq!(owned_result(&call, &early), run(text), "{text}");
    }
}

#[test]
#[should_panic(expected = "cannot merge")]
fn merging_accumulators_of_different_calls_panics() {
    let count = compile("count(*)", &schema()).unwrap();
    let sum = compile("sum(price)", &schema()).unwrap();
    let mut into = sum.new_acc();
    sum.merge(&mut into, &count.new_acc());
}

// Property: panes merged in time order equal one accumulator over the whole sequence.

/// Calls over a nullable `x: i64` that together cover every kind and every accumulator.
const PANE_CALLS: &[&str] = &[
    "count(*)",
    "count(x)",
    "count(distinct x)",
    "sum(x)",
    "min(x)",
    "max(x)",
    "avg(x)",
    "first(x)",
    "last(x)",
    "count(*) filter (where x > 0)",
    "count(distinct x % 5) filter (where x < 10)",
    "count(distinct cast(x % 7 as string))",
    "sum(x) filter (where x % 2 = 0)",
    "min(cast(x as string))",
    "max(cast(x as f64))",
    "avg(cast(x % 1000 as f64))",
    "first(cast(x as string)) filter (where x > 3)",
    "last(cast(x as string))",
];

/// The naive result of `kind` over `x`, for the calls without a filter or expression.
fn model(kind: AggKind, values: &[Option<i64>]) -> Value {
    let seen: Vec<i64> = values.iter().flatten().copied().collect();
    let or_null = |v: Option<i64>| v.map_or(Value::Null, Value::I64);
    match kind {
        AggKind::CountStar => Value::I64(values.len() as i64),
        AggKind::Count => Value::I64(seen.len() as i64),
        AggKind::CountDistinct => Value::I64(seen.iter().collect::<BTreeSet<_>>().len() as i64),
        AggKind::Sum => or_null(seen.iter().copied().reduce(i64::wrapping_add)),
        AggKind::Min => or_null(seen.iter().copied().min()),
        AggKind::Max => or_null(seen.iter().copied().max()),
        AggKind::Avg if seen.is_empty() => Value::Null,
        AggKind::Avg => {
            let sum: i128 = seen.iter().copied().map(i128::from).sum();
            Value::F64(sum as f64 / seen.len() as f64)
        }
        AggKind::First => or_null(seen.first().copied()),
        AggKind::Last => or_null(seen.last().copied()),
    }
}

fn sequence() -> impl Strategy<Value = Vec<Option<i64>>> {
    let value = prop_oneof![
        2 => Just(None),
        4 => (-20i64..20).prop_map(Some),
        1 => any::<i64>().prop_map(Some),
    ];
    proptest::collection::vec(value, 0..60)
}

/// Pane boundaries: `[0, c1), [c1, c2), …, [ck, len)`, some possibly empty.
fn panes(len: usize, cuts: &[prop::sample::Index]) -> Vec<std::ops::Range<usize>> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(len + 1)).collect();
    points.sort_unstable();
    let starts = std::iter::once(0).chain(points.iter().copied());
    let ends = points.iter().copied().chain(std::iter::once(len));
    starts.zip(ends).map(|(start, end)| start..end).collect()
}

#[test]
fn pane_calls_cover_every_kind() {
    let schema = Schema::new(vec![Field::nullable("x", DataType::I64)]);
    let kinds: Vec<AggKind> = PANE_CALLS
        .iter()
        .map(|text| compile(text, &schema).unwrap().kind())
        .collect();
    for kind in [
        AggKind::CountStar,
        AggKind::Count,
        AggKind::CountDistinct,
        AggKind::Sum,
        AggKind::Min,
        AggKind::Max,
        AggKind::Avg,
        AggKind::First,
        AggKind::Last,
    ] {
        assert!(kinds.contains(&kind), "{kind:?}");
    }
}

proptest! {
    #[test]
    fn merged_panes_equal_one_accumulator(
        values in sequence(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let (schema, batch) = ints(&values);
        let view = batch.view();
        let panes = panes(values.len(), &cuts);
        for text in PANE_CALLS {
            let call = compile(text, &schema).unwrap();
            let mut whole = call.new_acc();
            for row in view.rows() {
                call.update(&mut whole, row);
            }
            let mut merged = call.new_acc();
            for pane in &panes {
                let mut acc = call.new_acc();
                for index in pane.clone() {
                    call.update(&mut acc, view.row(index));
                }
                call.merge(&mut merged, &acc);
            }
            let expected = owned_result(&call, &whole);
            prop_assert_eq!(owned_result(&call, &merged), expected.clone(), "{}", text);
            if !text.contains(' ') || *text == "count(distinct x)" {
                prop_assert_eq!(expected, model(call.kind(), &values), "{}", text);
            }
            prop_assert!(call.acc_bytes(&merged) >= size_of::<Acc>());
        }
    }
}
