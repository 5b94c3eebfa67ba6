use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::record::batch::{Batch, BatchBuilder, PartitionId, StreamId};

fn input(price_type: DataType) -> Schema {
    Schema::new(vec![
        Field::new("seller", DataType::I64),
        Field::nullable("price", price_type),
        Field::new("category", DataType::String),
    ])
}

fn seller_key() -> Vec<Field> {
    vec![Field::new("seller", DataType::I64)]
}

fn config(pairs: &[(&str, &str)]) -> ProcessConfig {
    pairs.iter().copied().collect()
}

fn build(
    name: &str,
    input: &Schema,
    keys: &[Field],
    config: &ProcessConfig,
) -> Result<Box<dyn KeyedProcess>, ProcessError> {
    let factory = lookup(name)?;
    factory(&ProcessContext {
        input,
        keys,
        config,
        changelog: false,
    })
}

fn average_of(n: &str) -> Box<dyn KeyedProcess> {
    let config = config(&[("n", n), ("value", "price")]);
    build(
        "last_n_average",
        &input(DataType::I64),
        &seller_key(),
        &config,
    )
    .unwrap()
}

fn batch(rows: &[(i64, Value)]) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for (index, (seller, price)) in rows.iter().enumerate() {
        let row = [ValueRef::I64(*seller), price.as_ref(), ValueRef::Str("c")];
        builder.push_with_time(&row, index as i64).unwrap();
    }
    builder.finish()
}

/// Feeds every row of `batch` to `op`, keyed by field 0, at time `now`.
fn run(
    op: &mut dyn KeyedProcess,
    state: &mut KeyedState,
    batch: &Batch,
    now: i64,
) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = Vec::new();
    let view = batch.view();
    for row in view.rows() {
        let key = [Datum::I64(row.get(0).and_then(|v| v.as_i64()).unwrap())];
        let mut at = state.key(&key, now);
        op.process_row(&key, row, Some(now), &mut at, &mut out)
            .unwrap();
    }
    out
}

/// What `last_n_average` should emit, computed plainly: per seller, the last `n` non-NULL
/// prices summed oldest first.
fn model(rows: &[(i64, Value)], n: usize) -> Vec<Vec<Value>> {
    let mut last: HashMap<i64, VecDeque<Value>> = HashMap::new();
    let mut out = Vec::new();
    for (seller, price) in rows {
        let values = last.entry(*seller).or_default();
        if *price != Value::Null {
            values.push_back(price.clone());
        }
        while values.len() > n {
            values.pop_front();
        }
        let sum: f64 = values
            .iter()
            .map(|v| match v {
                Value::I64(v) => *v as f64,
                Value::F64(v) => *v,
                _ => 0.0,
            })
            .sum();
        let avg = match values.len() {
            0 => Value::Null,
            len => Value::F64(sum / len as f64),
        };
        out.push(vec![
            Value::I64(*seller),
            avg,
            Value::I64(values.len() as i64),
        ]);
    }
    out
}

#[test]
fn builtins_are_registered_everywhere() {
    let names: Vec<&str> = builtins().iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["last_n_average", "max_until", "over_rows"]);
    assert_eq!(ProcessRegistry::with_builtins().names(), names);
    assert!(ProcessRegistry::new().names().is_empty());
    assert!(registered_names().contains(&"last_n_average".to_string()));
    assert!(lookup("last_n_average").is_ok());
}

#[test]
fn an_unknown_name_lists_the_registered_ones() {
    let registry = ProcessRegistry::with_builtins();
    let error = registry.lookup("last_n_averages").err().unwrap();
    assert_eq!(
        error.to_string(),
        "unknown process `last_n_averages`; did you mean `last_n_average`?; the registered \
         processes are: last_n_average, max_until, over_rows"
    );
    let error = registry.lookup("top_k").err().unwrap();
    assert_eq!(
        error,
        ProcessError::Unknown {
            name: "top_k".into(),
            suggestion: None,
            registered: vec![
                "last_n_average".into(),
                "max_until".into(),
                "over_rows".into()
            ],
        }
    );
}

#[test]
fn registering_checks_the_name() {
    let mut registry = ProcessRegistry::new();
    let factory: ProcessFactory = last_n_average;
    for bad in ["", "Avg", "1st", "a-b", "a b", "é"] {
        assert_eq!(
            registry.register(bad, factory),
            Err(ProcessError::InvalidName { name: bad.into() })
        );
    }
    registry.register("a_1", factory).unwrap();
    assert_eq!(
        registry.register("a_1", factory).unwrap_err().to_string(),
        "a process named `a_1` is already registered"
    );
    let error = register("last_n_average", factory).unwrap_err();
    assert_eq!(
        error,
        ProcessError::Duplicate {
            name: "last_n_average".into()
        }
    );
}

/// A user process: counts rows per key in a value state.
struct RunningCount;

impl KeyedProcess for RunningCount {
    fn state_descriptors(&self) -> Vec<StateDescriptor> {
        vec![StateDescriptor::value("count")]
    }

    fn output_schema(&self) -> Schema {
        Schema::new(vec![Field::new("count", DataType::I64)])
    }

    fn process_row(
        &mut self,
        _key: &[Datum<'_>],
        _row: &ArchivedRow,
        _row_time: Option<i64>,
        state: &mut KeyState<'_>,
        out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        let mut count = state.value(0);
        let next = match count.get() {
            Some(Value::I64(n)) => n + 1,
            _ => 1,
        };
        count.set(Value::I64(next));
        out.emit(vec![Value::I64(next)]);
        Ok(())
    }
}

fn running_count(cx: &ProcessContext<'_>) -> Result<Box<dyn KeyedProcess>, ProcessError> {
    cx.config.check_keys(&[])?;
    Ok(Box::new(RunningCount))
}

#[test]
fn a_registered_user_process_runs() {
    register("test_running_count", running_count).unwrap();
    let schema = input(DataType::I64);
    let mut op = build("test_running_count", &schema, &seller_key(), &config(&[])).unwrap();
    let mut state = KeyedState::new(op.state_descriptors(), 8);
    let rows = batch(&[(1, Value::Null), (2, Value::Null), (1, Value::Null)]);
    let out = run(op.as_mut(), &mut state, &rows, 0);
    assert_eq!(out, [[Value::I64(1)], [Value::I64(1)], [Value::I64(2)]]);
    let mut none: Vec<Vec<Value>> = Vec::new();
    op.on_watermark(100, &mut state, &mut none).unwrap();
    assert!(none.is_empty(), "the default on_watermark emits nothing");
    let error = build(
        "test_running_count",
        &schema,
        &seller_key(),
        &config(&[("n", "1")]),
    )
    .err()
    .unwrap();
    assert_eq!(
        error.to_string(),
        "config `n` is not a setting of this process; this process takes no settings"
    );
}

#[test]
fn config_getters_name_the_key_and_the_value() {
    let config = config(&[
        ("n", " 5 "),
        ("neg", "-1"),
        ("word", "abc"),
        ("x", "1.5"),
        ("inf", "inf"),
        ("flag", "yes"),
        ("ttl", "0s"),
        ("wait", "2m"),
    ]);
    assert_eq!(config.positive_int("n"), Ok(Some(5)));
    assert_eq!(config.int("neg"), Ok(Some(-1)));
    assert_eq!(config.float("x"), Ok(Some(1.5)));
    assert_eq!(config.duration_ms("wait"), Ok(Some(120_000)));
    assert_eq!(config.bool("missing"), Ok(None));
    let errors = [
        config.positive_int("neg").unwrap_err(),
        config.int("word").unwrap_err(),
        config.float("inf").unwrap_err(),
        config.bool("flag").unwrap_err(),
        config.duration_ms("ttl").unwrap_err(),
        config.required_str("value").unwrap_err(),
        config.check_keys(&["n"]).unwrap_err(),
    ];
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "config `neg` must be a positive integer, found `-1`",
            "config `word` must be an integer, found `abc`",
            "config `inf` must be a number, found `inf`",
            "config `flag` must be `true` or `false`, found `yes`",
            "config `ttl` must be a positive duration such as `10s`, found `0s`",
            "config `value` is required",
            "config `flag` is not a setting of this process; the settings are: n",
        ]
    );
}

#[test]
fn last_n_average_checks_its_config_and_input() {
    let schema = input(DataType::I64);
    let keys = seller_key();
    let error = |pairs: &[(&str, &str)]| {
        build("last_n_average", &schema, &keys, &config(pairs))
            .err()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        error(&[("value", "prise")]),
        "config `value` names no input field `prise`; did you mean `price`?"
    );
    assert_eq!(
        error(&[("value", "amount")]),
        "config `value` names no input field `amount`; the input fields are: seller, price, \
         category"
    );
    assert_eq!(
        error(&[("value", "category")]),
        "config `value` must name a number field (i64 or f64), but `category` is string"
    );
    assert_eq!(
        error(&[("value", "price"), ("n", "0")]),
        "config `n` must be a positive integer, found `0`"
    );
    assert_eq!(
        error(&[("value", "price"), ("nn", "3")]),
        "config `nn` is not a setting of this process; did you mean `n`?"
    );
    assert_eq!(error(&[("n", "3")]), "config `value` is required");
    let clash = [Field::new("count", DataType::I64)];
    let error = build(
        "last_n_average",
        &schema,
        &clash,
        &config(&[("value", "price")]),
    )
    .err()
    .unwrap();
    assert!(matches!(error, ProcessError::Input { .. }), "{error}");
}

#[test]
fn last_n_average_outputs_the_keys_then_avg_and_count() {
    let keys = vec![
        Field::new("seller", DataType::I64),
        Field::nullable("region", DataType::String),
    ];
    let config = config(&[("value", "price")]);
    let op = build("last_n_average", &input(DataType::F64), &keys, &config).unwrap();
    assert_eq!(
        op.output_schema(),
        Schema::new(vec![
            Field::new("seller", DataType::I64),
            Field::nullable("region", DataType::String),
            Field::nullable("avg", DataType::F64),
            Field::new("count", DataType::I64),
        ])
    );
    assert_eq!(op.state_descriptors().len(), 1);
    assert_eq!(op.state_descriptors()[0].ttl_ms(), None);
}

#[test]
fn last_n_average_defaults_to_the_last_ten() {
    let mut op = average_of("10");
    let config = config(&[("value", "price")]);
    let mut default = build(
        "last_n_average",
        &input(DataType::I64),
        &seller_key(),
        &config,
    )
    .unwrap();
    let rows: Vec<(i64, Value)> = (0..25).map(|i| (1, Value::I64(i * 7))).collect();
    let rows = batch(&rows);
    let mut a = KeyedState::new(op.state_descriptors(), 128);
    let mut b = KeyedState::new(default.state_descriptors(), 128);
    let out = run(op.as_mut(), &mut a, &rows, 0);
    assert_eq!(out, run(default.as_mut(), &mut b, &rows, 0));
    // The last row averages 15 * 7 ..= 24 * 7.
    assert_eq!(
        out[24],
        [Value::I64(1), Value::F64(19.5 * 7.0), Value::I64(10)]
    );
}

fn price(float: bool) -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        6 => (0i64..1_000_000).prop_map(move |v| if float {
            Value::F64(v as f64 / 8.0)
        } else {
            Value::I64(v)
        }),
    ]
}

fn rows(float: bool) -> impl Strategy<Value = Vec<(i64, Value)>> {
    proptest::collection::vec((0i64..5, price(float)), 0..120)
}

proptest! {
    #[test]
    fn last_n_average_matches_a_plain_computation(
        n in 1usize..6, float in any::<bool>(), rows in rows(false), floats in rows(true),
    ) {
        let rows = if float { floats } else { rows };
        let price_type = if float { DataType::F64 } else { DataType::I64 };
        let config = config(&[("n", &n.to_string()), ("value", "price")]);
        let mut op = build("last_n_average", &input(price_type), &seller_key(), &config).unwrap();
        let mut state = KeyedState::new(op.state_descriptors(), 16);
        let out = run(op.as_mut(), &mut state, &batch(&rows), 0);
        prop_assert_eq!(out, model(&rows, n));
        let sellers: std::collections::HashSet<i64> = rows
            .iter()
            .filter(|(_, price)| *price != Value::Null)
            .map(|(seller, _)| *seller)
            .collect();
        prop_assert_eq!(state.len(), sellers.len());
    }

    #[test]
    fn last_n_average_resumes_from_a_snapshot(
        rows in rows(false), cut in any::<prop::sample::Index>(),
    ) {
        let (before, after) = rows.split_at(cut.index(rows.len() + 1));
        let mut op = average_of("3");
        let mut state = KeyedState::new(op.state_descriptors(), 8);
        run(op.as_mut(), &mut state, &batch(before), 0);
        let mut resumed = KeyedState::new(op.state_descriptors(), 8);
        for group in 0..8 {
            let bytes = state.snapshot_key_group(group);
            resumed.restore_key_group(group, &bytes).unwrap();
        }
        let mut fresh = average_of("3");
        let expected = run(op.as_mut(), &mut state, &batch(after), 0);
        prop_assert_eq!(run(fresh.as_mut(), &mut resumed, &batch(after), 0), expected);
        prop_assert_eq!(model(&rows, 3)[before.len()..].to_vec(), run_tail(&rows, before.len()));
    }
}

/// The outputs for `rows[from..]` of one uninterrupted run over all of `rows`.
fn run_tail(rows: &[(i64, Value)], from: usize) -> Vec<Vec<Value>> {
    let mut op = average_of("3");
    let mut state = KeyedState::new(op.state_descriptors(), 8);
    run(op.as_mut(), &mut state, &batch(rows), 0).split_off(from)
}

#[test]
fn last_n_average_forgets_a_seller_after_its_ttl() {
    let config = config(&[("n", "3"), ("value", "price"), ("ttl", "1s")]);
    let mut op = build(
        "last_n_average",
        &input(DataType::I64),
        &seller_key(),
        &config,
    )
    .unwrap();
    assert_eq!(op.state_descriptors()[0].ttl_ms(), Some(1_000));
    let mut state = KeyedState::new(op.state_descriptors(), 16);
    let first = batch(&[
        (1, Value::I64(10)),
        (2, Value::I64(40)),
        (1, Value::I64(20)),
    ]);
    run(op.as_mut(), &mut state, &first, 0);
    // Seller 2 writes again at 500 and so outlives seller 1.
    run(op.as_mut(), &mut state, &batch(&[(2, Value::I64(60))]), 500);
    assert_eq!(state.expire(999), 0);
    assert_eq!(state.expire(1_000), 1);
    assert_eq!(state.len(), 1);
    let out = run(
        op.as_mut(),
        &mut state,
        &batch(&[(1, Value::I64(30)), (2, Value::I64(80))]),
        1_000,
    );
    assert_eq!(
        out,
        [
            [Value::I64(1), Value::F64(30.0), Value::I64(1)],
            [Value::I64(2), Value::F64(60.0), Value::I64(3)],
        ]
    );
}

/// `over_rows`'s input: seller, an order time, a price.
fn timed_input(changelog: bool) -> Schema {
    let mut fields = vec![
        Field::new("seller", DataType::I64),
        Field::new("t", DataType::Timestamp),
        Field::nullable("price", DataType::I64),
    ];
    if changelog {
        fields.insert(0, Field::new("op", DataType::String));
    }
    Schema::new(fields)
}

const OVER_AGGREGATES: &str =
    "a = avg(price), s = sum(price), n = count(*), c = count(price), lo = min(price), hi = max(price)";

fn over_rows_op(preceding: usize, changelog: bool) -> Box<dyn KeyedProcess> {
    let preceding = preceding.to_string();
    let config = config(&[
        ("order", "t"),
        ("preceding", &preceding),
        ("aggregates", OVER_AGGREGATES),
    ]);
    let factory = lookup("over_rows").unwrap();
    factory(&ProcessContext {
        input: &timed_input(changelog),
        keys: &seller_key(),
        config: &config,
        changelog,
    })
    .unwrap()
}

/// One `over_rows` input row, led by `op` when it is `Some`.
fn timed_row(op: Option<&str>, seller: i64, t: i64, price: Option<i64>) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let price = price.map_or(ValueRef::Null, ValueRef::I64);
    let mut row = vec![ValueRef::I64(seller), ValueRef::Timestamp(t), price];
    if let Some(op) = op {
        row.insert(0, ValueRef::Str(op));
    }
    builder.push_with_time(&row, t).unwrap();
    builder.finish()
}

/// The row `over_rows` should emit for a frame of prices, the current row last.
fn over_model(seller: i64, t: i64, frame: &[Option<i64>]) -> Vec<Value> {
    let values: Vec<i64> = frame.iter().flatten().copied().collect();
    let or_null = |v: Option<Value>| v.unwrap_or(Value::Null);
    let sum = (!values.is_empty()).then(|| values.iter().sum::<i64>());
    vec![
        Value::I64(seller),
        Value::Timestamp(t),
        frame
            .last()
            .copied()
            .flatten()
            .map_or(Value::Null, Value::I64),
        or_null(sum.map(|s| Value::F64(s as f64 / values.len() as f64))),
        or_null(sum.map(Value::I64)),
        Value::I64(frame.len() as i64),
        Value::I64(values.len() as i64),
        or_null(values.iter().min().map(|v| Value::I64(*v))),
        or_null(values.iter().max().map(|v| Value::I64(*v))),
    ]
}

/// Feeds one changelog row keyed by its seller (field 1).
fn feed(op: &mut dyn KeyedProcess, state: &mut KeyedState, batch: &Batch) {
    let mut out: Vec<Vec<Value>> = Vec::new();
    for row in batch.view().rows() {
        let key = [Datum::I64(row.get(1).and_then(|v| v.as_i64()).unwrap())];
        op.process_row(&key, row, None, &mut state.key(&key, 0), &mut out)
            .unwrap();
    }
    assert!(out.is_empty(), "over_rows emits only on watermarks");
}

#[test]
fn over_rows_settles_an_update_stream_at_the_watermark() {
    let mut op = over_rows_op(1, true);
    assert!(op.reads_changelog());
    let names: Vec<String> = op
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(
        names,
        ["seller", "t", "price", "a", "s", "n", "c", "lo", "hi"]
    );
    let mut state = KeyedState::new(op.state_descriptors(), 16);
    let mut out: Vec<Vec<Value>> = Vec::new();
    feed(
        op.as_mut(),
        &mut state,
        &timed_row(Some("+I"), 1, 10, Some(5)),
    );
    feed(
        op.as_mut(),
        &mut state,
        &timed_row(Some("-U"), 1, 10, Some(5)),
    );
    feed(
        op.as_mut(),
        &mut state,
        &timed_row(Some("+U"), 1, 10, Some(7)),
    );
    feed(
        op.as_mut(),
        &mut state,
        &timed_row(Some("+I"), 1, 20, Some(3)),
    );
    op.on_watermark(9, &mut state, &mut out).unwrap();
    assert!(out.is_empty(), "nothing settles before its time");
    op.on_watermark(15, &mut state, &mut out).unwrap();
    assert_eq!(out, [over_model(1, 10, &[Some(7)])]);
    // Settled rows cannot be taken back (late), nor can rows arrive at settled times.
    feed(
        op.as_mut(),
        &mut state,
        &timed_row(Some("-U"), 1, 10, Some(7)),
    );
    feed(
        op.as_mut(),
        &mut state,
        &timed_row(Some("+I"), 1, 12, Some(100)),
    );
    out.clear();
    op.on_watermark(i64::MAX, &mut state, &mut out).unwrap();
    assert_eq!(out, [over_model(1, 20, &[Some(7), Some(3)])]);
}

#[test]
fn over_rows_checks_its_config() {
    let error = |pairs: &[(&str, &str)]| {
        build(
            "over_rows",
            &timed_input(false),
            &seller_key(),
            &config(pairs),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert_eq!(error(&[("order", "t")]), "config `aggregates` is required");
    let wrong = error(&[("order", "price2"), ("aggregates", "a = avg(price)")]);
    assert_eq!(
        wrong,
        "config `order` names no input field `price2`; did you mean `price`?"
    );
    let sum_of_time = error(&[("order", "t"), ("aggregates", "a = sum(t)")]);
    assert!(
        sum_of_time.contains("avg and sum take an i64 or f64 field"),
        "{sum_of_time}"
    );
    let star = error(&[("order", "t"), ("aggregates", "a = max(*)")]);
    assert!(star.contains("only count takes `*`"), "{star}");
    let clash = error(&[("order", "t"), ("aggregates", "price = max(price)")]);
    assert!(clash.contains("names `price` twice"), "{clash}");
    let bad = error(&[("order", "t"), ("aggregates", "a = median(price)")]);
    assert!(bad.contains("is not `name = func(field)`"), "{bad}");
}

proptest! {
    /// Rows in any arrival order, some late: each row that was not late comes out once, with
    /// the aggregates of it and the `preceding` rows of its seller before it by time.
    #[test]
    fn over_rows_matches_a_brute_force_frame(
        rows in prop::collection::vec((0i64..3, 0i64..200, prop::option::of(-50i64..50)), 1..80),
        preceding in 0usize..4,
        delay in 0i64..40,
    ) {
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<_> = rows.into_iter().filter(|(s, t, _)| seen.insert((*s, *t))).collect();
        let mut op = over_rows_op(preceding, false);
        let mut state = KeyedState::new(op.state_descriptors(), 16);
        let mut out: Vec<Vec<Value>> = Vec::new();
        let (mut kept, mut max_t, mut watermark) = (Vec::new(), i64::MIN, i64::MIN);
        for (seller, t, price) in rows {
            let batch = timed_row(None, seller, t, price);
            out.extend(run(op.as_mut(), &mut state, &batch, t));
            if t > watermark {
                kept.push((seller, t, price));
            }
            max_t = max_t.max(t);
            if max_t - delay > watermark {
                watermark = max_t - delay;
                op.on_watermark(watermark, &mut state, &mut out).unwrap();
            }
        }
        op.on_watermark(i64::MAX, &mut state, &mut out).unwrap();
        kept.sort_unstable();
        let mut expected = Vec::new();
        for (i, (seller, t, _)) in kept.iter().enumerate() {
            let first = kept[..=i].iter().rposition(|r| r.0 != *seller).map_or(0, |p| p + 1);
            let frame: Vec<Option<i64>> =
                kept[first.max(i.saturating_sub(preceding))..=i].iter().map(|r| r.2).collect();
            expected.push(over_model(*seller, *t, &frame));
        }
        out.sort_by(|a, b| {
            crate::state::total_cmp(a[0].as_ref(), b[0].as_ref())
                .then(crate::state::total_cmp(a[1].as_ref(), b[1].as_ref()))
        });
        prop_assert_eq!(out, expected);
    }
}

#[test]
fn over_rows_rebuilds_its_timers_from_restored_state() {
    let mut op = over_rows_op(1, false);
    let mut state = KeyedState::new(op.state_descriptors(), 16);
    for (t, price) in [(10, 4), (20, 6)] {
        let mut out: Vec<Vec<Value>> = Vec::new();
        let batch = timed_row(None, 1, t, Some(price));
        for row in batch.view().rows() {
            let key = [Datum::I64(1)];
            op.process_row(&key, row, None, &mut state.key(&key, 0), &mut out)
                .unwrap();
        }
    }
    let group = state.key_group_of(&[Value::I64(1)]);
    let bytes = state.snapshot_key_group(group);
    let mut restored_op = over_rows_op(1, false);
    let mut restored = KeyedState::new(restored_op.state_descriptors(), 16);
    restored.restore_key_group(group, &bytes).unwrap();
    restored_op.on_restore(&mut restored, group);
    let mut out: Vec<Vec<Value>> = Vec::new();
    restored_op
        .on_watermark(i64::MAX, &mut restored, &mut out)
        .unwrap();
    assert_eq!(
        out,
        [
            over_model(1, 10, &[Some(4)]),
            over_model(1, 20, &[Some(4), Some(6)])
        ]
    );
}
