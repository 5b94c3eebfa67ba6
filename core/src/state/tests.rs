use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::operator::agg::compile;
use crate::record::batch::{Batch, BatchBuilder, PartitionId, StreamId};
use crate::record::schema::{Field, Schema};

const VALUE: usize = 0;
const LIST: usize = 1;
const MAP: usize = 2;
const AGG: usize = 3;

fn i(v: i64) -> Value {
    Value::I64(v)
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

fn input_schema() -> Schema {
    Schema::new(vec![
        Field::new("price", DataType::I64),
        Field::nullable("name", DataType::String),
    ])
}

fn calls() -> Vec<AggCall> {
    let schema = input_schema();
    [
        "count(*)",
        "count(distinct name)",
        "count(distinct price)",
        "avg(price)",
        "max(name)",
        "sum(price) filter (where price > 1)",
    ]
    .iter()
    .map(|text| compile(text, &schema).unwrap())
    .collect()
}

fn descriptors(ttl_ms: Option<i64>) -> Vec<StateDescriptor> {
    let all = vec![
        StateDescriptor::value("v"),
        StateDescriptor::list("l"),
        StateDescriptor::map("m"),
        StateDescriptor::aggregating("a", calls()),
    ];
    match ttl_ms {
        Some(ttl) => all.into_iter().map(|d| d.with_ttl(ttl)).collect(),
        None => all,
    }
}

fn batch(rows: &[(i64, Option<&str>)]) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for (price, name) in rows {
        let name = name.map_or(ValueRef::Null, ValueRef::Str);
        builder.push(&[ValueRef::I64(*price), name]).unwrap();
    }
    builder.finish()
}

/// Fills every kind of state for `keys` keys, at time `now`.
fn filled(keys: i64, max_parallelism: u32, ttl_ms: Option<i64>, now: i64) -> KeyedState {
    let mut state = KeyedState::new(descriptors(ttl_ms), max_parallelism);
    let rows = batch(&[(1, Some("a")), (5, None), (3, Some("b")), (5, Some("a"))]);
    for k in 0..keys {
        let key = [i(k), s(&format!("key-{k}"))];
        let mut at = state.key(&key, now + k);
        at.value(VALUE)
            .set(if k % 2 == 0 { i(k) } else { s("odd") });
        for n in 0..k % 4 {
            at.list(LIST).push(vec![
                i(n),
                Value::F64(n as f64 / 2.0),
                Value::Bool(n % 2 == 0),
            ]);
        }
        at.map(MAP)
            .insert(s("x"), vec![Value::Bytes(vec![k as u8; 3])]);
        at.map(MAP).insert(Value::Timestamp(k), vec![]);
        if k % 3 != 0 {
            for row in rows.view().rows().take(k as usize % 5) {
                at.agg(AGG).update(row);
            }
        }
    }
    state
}

/// Everything a key's state reads as, for comparing two backends.
fn dump(state: &mut KeyedState, now: i64) -> BTreeMap<String, String> {
    let keys: Vec<Vec<Value>> = state.keys().map(<[Value]>::to_vec).collect();
    let mut out = BTreeMap::new();
    for key in keys {
        let mut at = state.key(&key, now);
        let value = format!("{:?}", at.value(VALUE).get());
        let list: Vec<Vec<Value>> = at.list(LIST).iter().map(<[Value]>::to_vec).collect();
        let map: Vec<(Value, Vec<Value>)> = at
            .map(MAP)
            .iter()
            .map(|(k, row)| (k.clone(), row.to_vec()))
            .collect();
        let agg = at.agg(AGG);
        let results: Vec<String> = (0..agg.calls().len())
            .map(|index| format!("{:?}", agg.result(index)))
            .collect();
        out.insert(
            format!("{key:?}"),
            format!("{value} {list:?} {map:?} {results:?}"),
        );
    }
    out
}

/// Content bytes recounted from scratch, to check the incremental count.
fn recount(state: &KeyedState) -> usize {
    let mut total = 0;
    for group in state.groups.iter().flatten() {
        for entry in group.entries() {
            for (cell, descriptor) in entry.cells.iter().zip(&*state.descriptors) {
                assert_eq!(cell.bytes, cell.data.bytes(&descriptor.kind), "{cell:?}");
            }
            total += entry.bytes();
        }
    }
    total
}

#[test]
fn each_kind_reads_back_what_was_written() {
    let mut state = KeyedState::new(descriptors(None), 128);
    let rows = batch(&[(1, Some("a")), (5, None), (3, Some("b")), (5, Some("a"))]);
    {
        let mut at = state.key(&[s("alice")], 0);
        at.value(VALUE).set(i(1));
        at.value(VALUE).set(s("two"));
        let mut list = at.list(LIST);
        list.push(vec![i(1)]);
        list.push(vec![i(2)]);
        list.push(vec![i(3)]);
        list.retain_last(2);
        let mut map = at.map(MAP);
        assert_eq!(map.insert(i(2), vec![s("b")]), None);
        assert_eq!(
            map.insert(i(2), vec![s("c")]).as_deref(),
            Some(&[s("b")][..])
        );
        map.insert(Value::Null, vec![]);
        for row in rows.view().rows() {
            at.agg(AGG).update(row);
        }
    }
    let mut at = state.key(&[ValueRef::Str("alice")], 10);
    assert_eq!(at.key(), [s("alice")]);
    assert_eq!(at.value(VALUE).get(), Some(&s("two")));
    let rows: Vec<Vec<Value>> = at.list(LIST).iter().map(<[Value]>::to_vec).collect();
    assert_eq!(rows, [[i(2)], [i(3)]]);
    let map = at.map(MAP);
    assert_eq!(map.get(&i(2)), Some(&[s("c")][..]));
    assert!(map.contains_key(&Value::Null));
    assert!(
        !map.contains_key(&Value::F64(2.0)),
        "2 and 2.0 are different map keys"
    );
    let agg = at.agg(AGG);
    let results: Vec<Datum<'_>> = (0..6).map(|index| agg.result(index)).collect();
    assert_eq!(
        results,
        [
            Datum::I64(4),
            Datum::I64(2),
            Datum::I64(3),
            Datum::F64(3.5),
            Datum::Str("b".into()),
            Datum::I64(13),
        ]
    );
}

#[test]
fn keys_without_state_are_not_kept() {
    let mut state = KeyedState::new(descriptors(None), 16);
    let empty = state.approx_bytes();
    state.key(&[i(1)], 0).value(VALUE).get();
    assert!(state.is_empty());
    state.key(&[i(1)], 0).list(LIST).push(vec![i(1)]);
    assert_eq!(state.len(), 1);
    assert!(state.key(&[i(1)], 0).list(LIST).pop_front().is_some());
    assert!(state.is_empty());
    state.key(&[i(2)], 0).map(MAP).insert(i(1), vec![]);
    state.key(&[i(2)], 0).clear();
    assert!(state.is_empty());
    assert_eq!(state.content_bytes, 0);
    assert_eq!(state.key_groups().count(), 0);
    assert!(state.approx_bytes() >= empty);
}

#[test]
fn a_key_is_the_same_whether_given_as_values_datums_or_archived_values() {
    let mut state = KeyedState::new(descriptors(None), 128);
    state
        .key(&[i(7), s("x"), Value::F64(-0.0)], 0)
        .value(VALUE)
        .set(i(1));
    let rows = {
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        builder
            .push(&[ValueRef::I64(7), ValueRef::Str("x"), ValueRef::F64(0.0)])
            .unwrap();
        builder.finish()
    };
    let archived = rows.view().row(0).values();
    assert_eq!(state.key(archived, 0).value(VALUE).get(), Some(&i(1)));
    let datums = [Datum::I64(7), Datum::Str("x".into()), Datum::F64(0.0)];
    assert_eq!(state.key(&datums, 0).value(VALUE).get(), Some(&i(1)));
    assert_eq!(state.key_group_of(&datums), state.key_group_of(archived));
    assert_eq!(state.key(&[Value::F64(0.0)], 0).value(VALUE).get(), None);
    assert_eq!(state.len(), 1);
}

#[test]
#[should_panic(expected = "state 1 (`l`) is list state, not value state")]
fn using_a_descriptor_as_another_kind_panics() {
    let mut state = KeyedState::new(descriptors(None), 8);
    state.key(&[i(1)], 0).value(LIST);
}

#[test]
fn map_iterates_in_total_order() {
    let mut state = KeyedState::new(descriptors(None), 8);
    let keys = [
        Value::Bytes(vec![0]),
        s("b"),
        Value::F64(f64::NAN),
        Value::F64(1.5),
        s("a"),
        Value::Timestamp(-1),
        i(1),
        Value::F64(1.0),
        Value::Bool(true),
        Value::Null,
        i(i64::MAX),
        Value::F64(-1e300),
        Value::Bool(false),
    ];
    let mut at = state.key(&[i(0)], 0);
    let mut map = at.map(MAP);
    for key in &keys {
        map.insert(key.clone(), vec![]);
    }
    let order: Vec<String> = map.iter().map(|(k, _)| format!("{k:?}")).collect();
    assert_eq!(
        order,
        [
            "Null",
            "Bool(false)",
            "Bool(true)",
            "F64(-1e300)",
            "I64(1)",
            "F64(1.0)",
            "F64(1.5)",
            "I64(9223372036854775807)",
            "F64(NaN)",
            "Timestamp(-1)",
            "Str(\"a\")",
            "Str(\"b\")",
            "Bytes([0])",
        ]
    );
    assert!(map.contains_key(&Value::F64(-0.0)) == map.contains_key(&Value::F64(0.0)));
    assert!(map.remove(&Value::F64(f64::NAN)).is_some(), "NaN finds NaN");
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (-3i64..3).prop_map(Value::I64),
        any::<i64>().prop_map(Value::I64),
        prop_oneof![
            (-3i64..3).prop_map(|v| v as f64 * 0.5),
            any::<f64>(),
            Just(f64::NAN),
            Just(-0.0),
            Just(9_223_372_036_854_775_808.0),
            Just(-9_223_372_036_854_775_808.0),
        ]
        .prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        "[ab]{0,2}".prop_map(Value::Str),
        proptest::collection::vec(0u8..2, 0..2).prop_map(Value::Bytes),
        (-2i64..2).prop_map(Value::Timestamp),
    ]
}

proptest! {
    #[test]
    fn total_cmp_is_a_total_order(a in any_value(), b in any_value(), c in any_value()) {
        let (a, b, c) = (a.as_ref(), b.as_ref(), c.as_ref());
        prop_assert_eq!(total_cmp(a, b), total_cmp(b, a).reverse());
        prop_assert_eq!(total_cmp(a, a), Ordering::Equal);
        if total_cmp(a, b) != Ordering::Greater && total_cmp(b, c) != Ordering::Greater {
            prop_assert_ne!(total_cmp(a, c), Ordering::Greater);
        }
        if let (ValueRef::I64(x), ValueRef::F64(y)) = (a, b) {
            // Exact comparison agrees with a wide comparison whenever `y` is an integer.
            if y.fract() == 0.0 && y.abs() < 1e30 {
                prop_assert_eq!(total_cmp(a, b), i128::from(x).cmp(&(y as i128)).then(Ordering::Less));
            }
        }
    }
}

#[test]
fn ttl_hides_then_expire_removes() {
    let mut state = KeyedState::new(descriptors(Some(100)), 16);
    state.key(&[i(1)], 0).value(VALUE).set(i(1));
    state.key(&[i(1)], 0).list(LIST).push(vec![i(1)]);
    state.key(&[i(1)], 50).list(LIST).push(vec![i(2)]);
    {
        let mut at = state.key(&[i(1)], 99);
        assert_eq!(at.value(VALUE).get(), Some(&i(1)));
        assert_eq!(at.list(LIST).len(), 2);
    }
    {
        let mut at = state.key(&[i(1)], 100);
        assert_eq!(at.value(VALUE).get(), None, "written at 0, gone at 0 + 100");
        assert_eq!(at.list(LIST).len(), 2, "written at 50, lives until 150");
    }
    assert_eq!(state.expire(100), 1);
    assert_eq!(state.len(), 1);
    // A write after expiry starts afresh rather than reviving old rows.
    state.key(&[i(1)], 160).list(LIST).push(vec![i(3)]);
    assert_eq!(state.key(&[i(1)], 160).list(LIST).len(), 1);
    assert_eq!(state.expire(259), 0);
    assert_eq!(state.expire(260), 1);
    assert!(state.is_empty());
    assert!(state.expiry.is_empty());
    assert_eq!(state.content_bytes, 0);
}

#[test]
fn the_expiry_queue_holds_one_item_per_state_however_often_it_is_written() {
    let mut state = KeyedState::new(descriptors(Some(1_000)), 16);
    for t in 0..10_000 {
        state.key(&[i(t % 3)], t).value(VALUE).set(i(t));
    }
    assert_eq!(state.expiry.len(), 3);
    // Items due at 1_000 find their states rewritten and move on, once each.
    assert_eq!(state.expire(1_000), 0);
    assert_eq!(state.expiry.len(), 3);
    assert_eq!(state.expire(10_997 + 1_000), 3);
    assert!(state.is_empty() && state.expiry.is_empty());
}

#[test]
fn a_stale_queue_item_never_expires_a_new_key_early() {
    let mut state = KeyedState::new(descriptors(Some(100)), 1);
    state.key(&[i(1)], 0).value(VALUE).set(i(1));
    state.key(&[i(1)], 0).value(VALUE).clear(); // key removed; its queue item lingers
    state.key(&[i(2)], 90).value(VALUE).set(i(2)); // reuses the slot
    assert_eq!(state.expire(100), 0);
    assert_eq!(state.key(&[i(2)], 100).value(VALUE).get(), Some(&i(2)));
    assert_eq!(state.expire(190), 1);
}

#[test]
fn aggregating_state_expires_to_no_rows() {
    let mut state = KeyedState::new(descriptors(Some(10)), 4);
    let rows = batch(&[(4, Some("a"))]);
    state.key(&[i(1)], 0).agg(AGG).update(rows.view().row(0));
    let mut at = state.key(&[i(1)], 10);
    let agg = at.agg(AGG);
    assert_eq!((agg.result(0), agg.result(3)), (Datum::I64(0), Datum::Null));
}

#[derive(Debug, Clone)]
enum Op {
    Set(i64, i64),
    Push(i64, String),
    Pop(i64),
    Retain(i64, usize),
    Insert(i64, Value, String),
    Remove(i64, Value),
    Update(i64, i64, Option<String>),
    Clear(i64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0i64..4;
    prop_oneof![
        (key.clone(), any::<i64>()).prop_map(|(k, v)| Op::Set(k, v)),
        (key.clone(), "[a-z]{0,20}").prop_map(|(k, v)| Op::Push(k, v)),
        key.clone().prop_map(Op::Pop),
        (key.clone(), 0usize..3).prop_map(|(k, n)| Op::Retain(k, n)),
        (key.clone(), any_value(), "[a-z]{0,9}").prop_map(|(k, m, v)| Op::Insert(k, m, v)),
        (key.clone(), any_value()).prop_map(|(k, m)| Op::Remove(k, m)),
        (key.clone(), -3i64..3, proptest::option::of("[a-c]{0,12}"))
            .prop_map(|(k, p, n)| Op::Update(k, p, n)),
        key.prop_map(Op::Clear),
        Just(Op::Expire),
    ]
}

fn apply(state: &mut KeyedState, op: &Op, now: i64) {
    let key = |k: &i64| [i(*k)];
    match op {
        Op::Set(k, v) => state.key(&key(k), now).value(VALUE).set(i(*v)),
        Op::Push(k, v) => state.key(&key(k), now).list(LIST).push(vec![s(v)]),
        Op::Pop(k) => drop(state.key(&key(k), now).list(LIST).pop_front()),
        Op::Retain(k, n) => state.key(&key(k), now).list(LIST).retain_last(*n),
        Op::Insert(k, m, v) => drop(
            state
                .key(&key(k), now)
                .map(MAP)
                .insert(m.clone(), vec![s(v)]),
        ),
        Op::Remove(k, m) => drop(state.key(&key(k), now).map(MAP).remove(m)),
        Op::Update(k, price, name) => {
            let rows = batch(&[(*price, name.as_deref())]);
            state.key(&key(k), now).agg(AGG).update(rows.view().row(0));
        }
        Op::Clear(k) => state.key(&key(k), now).clear(),
        Op::Expire => drop(state.expire(now)),
    }
}

proptest! {
    #[test]
    fn byte_accounting_matches_a_recount(ops in proptest::collection::vec(op(), 0..60)) {
        let mut state = KeyedState::new(descriptors(Some(5)), 4);
        let baseline = state.approx_bytes();
        for (t, op) in ops.iter().enumerate() {
            apply(&mut state, op, t as i64);
            prop_assert_eq!(state.content_bytes, recount(&state));
            prop_assert_eq!(state.keys, state.keys().count());
        }
        state.expire(i64::MAX);
        prop_assert!(state.is_empty());
        prop_assert_eq!(state.content_bytes, 0);
        prop_assert!(state.approx_bytes() >= baseline);
    }

    #[test]
    fn snapshots_round_trip_after_any_ops(ops in proptest::collection::vec(op(), 0..60)) {
        let mut state = KeyedState::new(descriptors(Some(20)), 4);
        for (t, op) in ops.iter().enumerate() {
            apply(&mut state, op, t as i64);
        }
        let now = ops.len() as i64;
        let mut restored = KeyedState::new(descriptors(Some(20)), 4);
        for group in 0..4 {
            let bytes = state.snapshot_key_group(group);
            restored.restore_key_group(group, &bytes).unwrap();
            prop_assert_eq!(restored.snapshot_key_group(group), bytes);
        }
        prop_assert_eq!(restored.content_bytes, recount(&restored));
        prop_assert_eq!(dump(&mut restored, now), dump(&mut state, now));
        prop_assert_eq!(restored.expire(now + 20), state.expire(now + 20));
        prop_assert!(restored.is_empty() && state.is_empty());
    }
}

#[test]
fn every_key_group_round_trips() {
    let mut state = filled(300, 16, None, 0);
    let groups: Vec<u32> = state.key_groups().collect();
    assert_eq!(groups.len(), 16);
    let mut restored = KeyedState::new(descriptors(None), 16);
    for &group in &groups {
        let bytes = state.snapshot_key_group(group);
        restored.restore_key_group(group, &bytes).unwrap();
        assert_eq!(restored.snapshot_key_group(group), bytes);
    }
    assert_eq!(restored.len(), 300);
    // Equal up to spare capacity (scratch buffers, hash sets), which a restore does not copy.
    assert_eq!(restored.content_bytes, recount(&restored));
    assert!(restored.content_bytes <= state.content_bytes);
    assert_eq!(dump(&mut restored, 0), dump(&mut state, 0));
}

#[test]
fn restoring_replaces_one_key_group_only() {
    let mut state = filled(100, 4, None, 0);
    let before = dump(&mut state, 0);
    let empty = KeyedState::new(descriptors(None), 4);
    let cleared = empty.snapshot_key_group(2);
    let saved = state.snapshot_key_group(2);
    let in_group = state
        .keys()
        .filter(|key| state.key_group_of(key) == 2)
        .count();
    state.restore_key_group(2, &cleared).unwrap();
    assert_eq!(state.len(), 100 - in_group);
    assert_eq!(state.key_groups().collect::<Vec<_>>(), [0, 1, 3]);
    state.restore_key_group(2, &saved).unwrap();
    assert_eq!(dump(&mut state, 0), before);
    assert_eq!(state.content_bytes, recount(&state));
}

#[test]
fn restored_state_keeps_its_write_times_and_expires() {
    let state = filled(40, 4, Some(1_000), 0);
    let mut restored = KeyedState::new(descriptors(Some(1_000)), 4);
    for group in 0..4 {
        let bytes = state.snapshot_key_group(group);
        restored.restore_key_group(group, &bytes).unwrap();
    }
    // Key k was written at time k, so it expires at 1_000 + k.
    assert_eq!(restored.expire(999), 0);
    assert_eq!(restored.len(), 40);
    assert!(restored.expire(1_009) > 0);
    assert_eq!(restored.len(), 30);
    restored.expire(1_039);
    assert!(restored.is_empty());
}

#[test]
fn a_snapshot_of_other_state_is_refused() {
    let state = filled(20, 4, None, 0);
    let bytes = state.snapshot_key_group(1);
    let mut other = KeyedState::new(descriptors(None), 4);
    let error = other.restore_key_group(2, &bytes).unwrap_err();
    assert_eq!(
        error,
        StateError::Mismatch {
            offset: 1,
            reason: "the snapshot is of key group 1, not 2".into()
        }
    );
    let mut fewer = KeyedState::new(descriptors(None)[..3].to_vec(), 4);
    let error = fewer.restore_key_group(1, &bytes).unwrap_err();
    assert!(
        matches!(error, StateError::Mismatch { offset: 5, .. }),
        "{error}"
    );
    let mut renamed = descriptors(None);
    renamed[1] = StateDescriptor::list("renamed");
    let error = KeyedState::new(renamed, 4)
        .restore_key_group(1, &bytes)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`l` (kind 1), here it is `renamed` (list)"),
        "{error}"
    );
    let mut rescaled = KeyedState::new(descriptors(None), 8);
    let error = rescaled.restore_key_group(1, &bytes).unwrap_err();
    assert!(
        error.to_string().contains("the key belongs to key group"),
        "{error}"
    );
    assert_eq!(
        rescaled.restore_key_group(8, &bytes),
        Err(StateError::KeyGroupOutOfRange {
            key_group: 8,
            max_parallelism: 8
        })
    );
    assert!(rescaled.is_empty());
}

#[test]
fn every_truncation_and_bit_flip_is_an_error_naming_an_offset() {
    let mut state = filled(12, 2, Some(50), 0);
    let group = state.key_groups().next().unwrap();
    let bytes = state.snapshot_key_group(group);
    let before = dump(&mut state, 0);
    for len in 0..bytes.len() {
        let error = state.restore_key_group(group, &bytes[..len]).unwrap_err();
        assert!(
            matches!(error, StateError::Corrupt { offset, .. } if offset <= len),
            "{error}"
        );
    }
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            let error = state.restore_key_group(group, &flipped).unwrap_err();
            assert!(
                matches!(error, StateError::Corrupt { .. }),
                "byte {at} bit {bit}: {error}"
            );
        }
    }
    assert_eq!(
        dump(&mut state, 0),
        before,
        "failed restores change nothing"
    );
}

/// Re-seals `body` with a valid checksum, as a hostile or buggy writer could.
fn sealed(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn damage_behind_a_valid_checksum_is_found_by_the_decoder() {
    let state = filled(6, 1, None, 0);
    let bytes = state.snapshot_key_group(0);
    let body = &bytes[..bytes.len() - 4];
    let mut restored = KeyedState::new(descriptors(None), 1);
    // A huge count is refused before anything is allocated.
    let mut huge = body.to_vec();
    let header_len = {
        let mut header = Vec::new();
        put_header(&mut header, 0, &descriptors(None));
        header.len()
    };
    huge[header_len..header_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = restored.restore_key_group(0, &sealed(huge)).unwrap_err();
    assert_eq!(
        error,
        StateError::Corrupt {
            offset: header_len,
            reason: format!(
                "4294967295 keys cannot fit in the {} bytes left",
                body.len() - header_len - 4
            )
        }
    );
    let mut trailing = body.to_vec();
    trailing.push(0);
    let error = restored
        .restore_key_group(0, &sealed(trailing))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "corrupt state snapshot at byte {}: 1 bytes follow the last item",
            body.len()
        )
    );
    let mut versioned = bytes.clone();
    versioned[0] = 9;
    let error = restored.restore_key_group(0, &versioned).unwrap_err();
    assert!(error.to_string().contains("version 9 is not 1"), "{error}");
}

proptest! {
    #[test]
    fn sealed_garbage_never_panics(
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        at in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let state = filled(5, 1, Some(10), 0);
        let bytes = state.snapshot_key_group(0);
        let mut body = bytes[..bytes.len() - 4].to_vec();
        let at = at.index(body.len());
        let end = (at + noise.len()).min(body.len());
        body[at..end].copy_from_slice(&noise[..end - at]);
        body.truncate(cut.index(body.len() + 1).max(1));
        let mut restored = KeyedState::new(descriptors(Some(10)), 1);
        if restored.restore_key_group(0, &sealed(body)).is_ok() {
            prop_assert_eq!(restored.content_bytes, recount(&restored));
            restored.expire(i64::MAX);
        }
    }
}
