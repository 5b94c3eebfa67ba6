use proptest::prelude::*;

use super::*;
use crate::record::row::{encode_row, Value, ValueRef};

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::I64),
        any::<f64>().prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::Str),
        "[a-z]{0,12}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        any::<i64>().prop_map(Value::Timestamp),
    ]
}

fn encoded(values: &[Value]) -> Vec<u8> {
    let refs: Vec<ValueRef<'_>> = values.iter().map(Value::as_ref).collect();
    let mut out = Vec::new();
    encode_row(&refs, &mut out);
    out
}

/// Bytes a mutation writes: the ones that turn one valid layout into another nearby one
/// (tags, bools, small offsets and lengths, high bits that break UTF-8) and any byte at all.
fn byte_strategy() -> impl Strategy<Value = u8> {
    prop_oneof![
        0u8..8,
        Just(0x80u8),
        Just(0xc3),
        Just(0xff),
        Just(0xf7),
        any::<u8>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_encoded_row_passes_both_checks(values in proptest::collection::vec(value_strategy(), 0..10)) {
        let row = encoded(&values);
        prop_assert_eq!(check_archived_row(&row), Ok(()));
        prop_assert!(rkyv_accepts_row(&row));
    }

    #[test]
    fn a_row_that_passes_is_one_rkyv_accepts(
        values in proptest::collection::vec(value_strategy(), 0..10),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), byte_strategy()), 1..4),
        cut in 0usize..3,
    ) {
        let mut row = encoded(&values);
        for (at, byte) in &edits {
            let at = at.index(row.len());
            row[at] = *byte;
        }
        // A shorter row moves the root: the layout must then fail, never be misread.
        let row = &row[cut.min(row.len())..];
        if check_archived_row(row).is_ok() {
            prop_assert!(rkyv_accepts_row(row), "check accepted a row rkyv rejects: {:?}", row);
        }
    }

    #[test]
    fn garbage_that_passes_is_one_rkyv_accepts(row in proptest::collection::vec(any::<u8>(), 0..64)) {
        if check_archived_row(&row).is_ok() {
            prop_assert!(rkyv_accepts_row(&row));
        }
    }
}

#[test]
fn each_fault_is_named_at_its_byte() {
    let row = encoded(&[Value::Bool(true), Value::Str("héllo".into()), Value::I64(7)]);
    let array = row.len() - ARCHIVED_ROOT_BYTES - 3 * ARCHIVED_VALUE_BYTES;
    let broken = |at: usize, byte: u8| {
        let mut copy = row.clone();
        copy[at] = byte;
        check_archived_row(&copy).expect_err("broken row passed")
    };
    assert_eq!(
        broken(array + 1, 2),
        fault(array + 1, "bool neither 0 nor 1")
    );
    assert_eq!(broken(array, 9).what, "unknown value tag");
    assert_eq!(
        broken(array + 18, 9),
        fault(array + 18, "unknown value tag")
    );
    // The second byte of "é" alone is not UTF-8.
    assert_eq!(broken(1, b'x'), fault(0, "string not UTF-8"));
    assert_eq!(
        check_archived_row(&row[1..])
            .expect_err("shifted row passed")
            .what,
        "payload not where the previous one ends"
    );
    assert_eq!(
        check_archived_row(&row[..4]),
        Err(fault(0, "row shorter than its root"))
    );
}

#[test]
fn bytes_need_not_be_utf8_but_strings_must() {
    let raw = vec![0xff, 0xfe, 0x80];
    assert_eq!(
        check_archived_row(&encoded(&[Value::Bytes(raw.clone())])),
        Ok(())
    );
    let mut row = encoded(&[Value::Bytes(raw), Value::Str("ok".into())]);
    assert_eq!(check_archived_row(&row), Ok(()));
    let tag = row.len() - ARCHIVED_ROOT_BYTES - 2 * ARCHIVED_VALUE_BYTES;
    row[tag] = TAG_STR;
    assert_eq!(check_archived_row(&row), Err(fault(0, "string not UTF-8")));
    assert!(!rkyv_accepts_row(&row));
}
