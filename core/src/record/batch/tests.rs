use proptest::prelude::*;
use rkyv::rancor;

use super::*;
use crate::record::row::Value;
use crate::record::row::ValueRef;
use crate::record::schema::{DataType, Field};

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::I64),
        any::<f64>()
            .prop_filter("NaN never equals itself", |v| !v.is_nan())
            .prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,40}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
        any::<i64>().prop_map(Value::Timestamp),
    ]
}

fn rows_strategy() -> impl Strategy<Value = Vec<Vec<Value>>> {
    proptest::collection::vec(proptest::collection::vec(value_strategy(), 0..8), 0..40)
}

fn build(rows: &[Vec<Value>]) -> Batch {
    builder_with(rows).finish()
}

fn builder_with(rows: &[Vec<Value>]) -> BatchBuilder {
    let mut builder = BatchBuilder::new(StreamId(7), PartitionId(3));
    for (index, row) in rows.iter().enumerate() {
        let values: Vec<ValueRef<'_>> = row.iter().map(Value::as_ref).collect();
        builder
            .push_with_time(&values, index as i64 * 10 - 5)
            .unwrap();
    }
    builder
}

fn read_back(view: &BatchView<'_>) -> Vec<Vec<Value>> {
    view.rows().map(|row| row.to_values()).collect()
}

proptest! {
    #[test]
    fn rows_round_trip(rows in rows_strategy()) {
        let batch = build(&rows);
        prop_assert_eq!(batch.row_count(), rows.len());
        prop_assert_eq!(read_back(&batch.view()), rows.clone());
        let verified = BatchView::verify(batch.as_bytes()).unwrap();
        prop_assert_eq!(read_back(&verified), rows.clone());
        let header = verified.header();
        if rows.is_empty() {
            prop_assert_eq!((header.min_event_time, header.max_event_time), NO_EVENT_TIME);
        } else {
            prop_assert_eq!(header.min_event_time, -5);
            prop_assert_eq!(header.max_event_time, (rows.len() as i64 - 1) * 10 - 5);
        }
    }

    #[test]
    fn every_bit_flip_outside_the_base_offset_is_detected(
        rows in rows_strategy(), position in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let batch = build(&rows);
        let mut bytes = batch.as_bytes().to_vec();
        let at = position.index(bytes.len());
        prop_assume!(!(8..16).contains(&at));
        bytes[at] ^= 1 << bit;
        prop_assert!(BatchView::verify(&bytes).is_err());
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = BatchView::verify(&bytes);
    }

    #[test]
    fn garbage_with_a_valid_checksum_is_rejected_or_readable(
        rows in rows_strategy(), noise in proptest::collection::vec(any::<u8>(), 1..32), at in any::<prop::sample::Index>(),
    ) {
        // An attacker can always fix up the CRC; bytecheck must still stop bad rows.
        let batch = build(&rows);
        let mut bytes = batch.as_bytes().to_vec();
        let start = HEADER_LEN + at.index(bytes.len() - HEADER_LEN + 1).min(bytes.len() - HEADER_LEN);
        for (offset, byte) in noise.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(start + offset) {
                *slot = *byte;
            }
        }
        let crc = checksum(&bytes);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Ok(view) = BatchView::verify(&bytes) {
            for row in view.rows() {
                let _ = row.to_values();
            }
        }
    }
}

#[test]
fn truncated_batches_are_errors_at_every_length() {
    let rows = vec![vec![Value::I64(1), Value::Str("a".into())]; 5];
    let batch = build(&rows);
    for len in 0..batch.as_bytes().len() {
        assert!(
            BatchView::verify(&batch.as_bytes()[..len]).is_err(),
            "length {len} accepted"
        );
    }
}

#[test]
fn base_offset_is_outside_the_checksum() {
    let mut batch = build(&[vec![Value::I64(1)]]);
    batch.set_base_offset(42);
    let view = BatchView::verify(batch.as_bytes()).unwrap();
    assert_eq!(view.header().base_offset, 42);
    assert_eq!(view.header().next_offset(), 43);
}

#[test]
fn builder_is_reusable_and_resets_event_time() {
    let mut builder = BatchBuilder::new(StreamId(1), PartitionId(0));
    builder.push_with_time(&[ValueRef::I64(1)], 5).unwrap();
    let first = builder.finish();
    builder.push(&[ValueRef::Bool(true)]).unwrap();
    let second = builder.finish();
    assert_eq!(first.header().max_event_time, 5);
    assert_eq!(
        (
            second.header().min_event_time,
            second.header().max_event_time
        ),
        NO_EVENT_TIME
    );
    assert_eq!(
        second.view().row(0).get(0).and_then(|v| v.as_bool()),
        Some(true)
    );
}

#[test]
fn schema_check_names_row_and_field() {
    let schema = Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::nullable("name", DataType::String),
    ]);
    let good = build(&[
        vec![Value::I64(1), Value::Null],
        vec![Value::I64(2), Value::Str("x".into())],
    ]);
    good.view().check_schema(&schema).unwrap();
    let bad = build(&[
        vec![Value::I64(1), Value::Null],
        vec![Value::Str("2".into()), Value::Null],
    ]);
    let message = bad.view().check_schema(&schema).unwrap_err().to_string();
    assert_eq!(message, "row 1, field 0 (`id`): expected i64, found string");
    let short = build(&[vec![Value::I64(1)]]);
    assert!(matches!(
        short.view().check_schema(&schema),
        Err(Error::ArityMismatch { row: 0, .. })
    ));
}

#[test]
fn oversized_batch_is_refused_and_builder_stays_usable() {
    let mut builder = BatchBuilder::new(StreamId(1), PartitionId(0));
    let big = vec![0u8; 1 << 20];
    let mut pushed = 0;
    let err = loop {
        match builder.push(&[ValueRef::Bytes(&big)]) {
            Ok(()) => pushed += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, Error::BatchTooLarge { .. }));
    assert_eq!(builder.row_count(), pushed);
    let batch = builder.finish();
    assert!(batch.as_bytes().len() <= BATCH_BYTES_MAX);
    BatchView::verify(batch.as_bytes()).unwrap();
}

proptest! {
    #[test]
    fn direct_encoder_writes_exactly_what_rkyv_writes(rows in rows_strategy(), prefix in 0usize..17) {
        let mut arena = rkyv::ser::allocator::Arena::new();
        for row in &rows {
            let values: Vec<ValueRef<'_>> = row.iter().map(Value::as_ref).collect();
            let mut ours = vec![0xAAu8; prefix];
            crate::record::row::encode_row(&values, &mut ours);
            let theirs = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
                &crate::record::row::RowRef { values: &values },
                vec![0xAAu8; prefix],
                arena.acquire(),
            )
            .unwrap();
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(ours.len() - prefix, crate::record::row::archived_row_len(&values));
        }
    }
}

#[test]
fn patched_rows_equal_re_encoded_rows() {
    let mut source = BatchBuilder::new(StreamId(0), PartitionId(0));
    let row = [
        ValueRef::I64(7),
        ValueRef::Str("seven"),
        ValueRef::I64(700),
        ValueRef::Null,
    ];
    source.push(&row).unwrap();
    let batch = source.finish();
    let view = batch.view();
    let mut patched = BatchBuilder::new(StreamId(0), PartitionId(0));
    let patches = [(2, ValueRef::F64(635.6)), (3, ValueRef::Bool(true))];
    assert!(patched.push_row_patched(&view, 0, &patches).unwrap());
    let mut expected = BatchBuilder::new(StreamId(0), PartitionId(0));
    expected
        .push(&[
            ValueRef::I64(7),
            ValueRef::Str("seven"),
            ValueRef::F64(635.6),
            ValueRef::Bool(true),
        ])
        .unwrap();
    assert_eq!(patched.finish().as_bytes(), expected.finish().as_bytes());
    // Strings live outside their cell: neither replaced nor written by a patch.
    let mut refused = BatchBuilder::new(StreamId(0), PartitionId(0));
    assert!(!refused
        .push_row_patched(&view, 0, &[(1, ValueRef::I64(1))])
        .unwrap());
    assert!(!refused
        .push_row_patched(&view, 0, &[(0, ValueRef::Str("x"))])
        .unwrap());
    assert!(!refused
        .push_row_patched(&view, 0, &[(9, ValueRef::I64(1))])
        .unwrap());
    assert!(refused.is_empty());
    assert_eq!(refused.encoded_len(), HEADER_LEN + 4);
}

#[test]
fn a_producer_stamp_is_checksummed_and_survives_verification() {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    builder.push(&[ValueRef::I64(7)]).unwrap();
    let batch = builder.finish();
    assert_eq!((batch.header().producer, batch.header().sequence), (0, 0));
    let mut bytes = batch.as_bytes().to_vec();
    stamp_producer(&mut bytes, PRODUCER_ID_MAX, 3, 41);
    let view = BatchView::verify(&bytes).unwrap();
    let header = view.header();
    assert_eq!(header.producer_id(), PRODUCER_ID_MAX);
    assert_eq!(header.producer_epoch(), 3);
    assert_eq!(header.sequence, 41);
    // The stamp is covered by the checksum: changing it without re-stamping is caught.
    bytes[36] ^= 1;
    assert!(BatchView::verify(&bytes).is_err());
}

#[test]
fn a_local_batch_is_sealed_on_its_way_out_into_the_same_bytes() {
    let rows = vec![vec![Value::I64(1), Value::Str("a".into())]; 5];
    let sealed = build(&rows);
    let mut local = builder_with(&rows).finish_local();
    assert!(!local.is_sealed() && sealed.is_sealed());
    // Rows read the same, and the two compare equal before the checksum is set.
    assert_eq!(read_back(&local.view()), read_back(&sealed.view()));
    assert_eq!(local, sealed);
    assert_eq!(local.header().crc, 0);
    let copy = local.view().to_batch();
    assert!(!copy.is_sealed());
    assert_eq!(local.sealed_bytes(), sealed.as_bytes());
    assert!(local.is_sealed());
    assert!(BatchView::verify(local.as_bytes()).is_ok());
    assert_eq!(copy.into_bytes(), sealed.as_bytes());
}

#[test]
#[should_panic(expected = "unsealed batch")]
fn reading_the_bytes_of_an_unsealed_batch_is_a_bug() {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    builder.push(&[ValueRef::I64(1)]).unwrap();
    let _ = builder.finish_local().as_bytes();
}

/// Buffers of dropped batches are reused only by batches of a like size: a builder of small
/// batches on a thread that dropped a large batch gets a small buffer, and a builder of large
/// batches gets the large one back (no fresh allocation).
#[test]
fn spare_buffers_go_to_batches_of_a_like_size() {
    std::thread::spawn(|| {
        let big_row = [ValueRef::Str(&"x".repeat(1000))];
        let mut large = BatchBuilder::with_capacity(StreamId(1), PartitionId(0), 16 << 10);
        for _ in 0..1000 {
            large.push(&big_row).unwrap();
        }
        let first = large.finish_local();
        let large_capacity = first.bytes.capacity();
        assert!(large_capacity >= 1_000_000);
        drop(first);
        let mut small = BatchBuilder::with_capacity(StreamId(1), PartitionId(0), 16 << 10);
        for round in 0..3 {
            small.push(&[ValueRef::I64(round)]).unwrap();
            let batch = small.finish_local();
            assert!(
                batch.bytes.capacity() <= 64 << 10,
                "round {round}: a one-row batch holds {} bytes",
                batch.bytes.capacity()
            );
        }
        for _ in 0..1000 {
            large.push(&big_row).unwrap();
        }
        let again = large.finish_local();
        assert!(again.bytes.capacity() >= 1_000_000);
        assert!(again.bytes.capacity() <= 4 * large_capacity);
    })
    .join()
    .unwrap();
}

proptest! {
    #[test]
    fn masked_rows_equal_rows_encoded_with_nulls(
        rows in rows_strategy(),
        keep in proptest::collection::vec(any::<bool>(), 0..10),
    ) {
        let batch = build(&rows);
        let view = batch.view();
        let mut masked = BatchBuilder::new(StreamId(1), PartitionId(0));
        for index in 0..rows.len() {
            masked.push_row_masked(&view, index, &keep).unwrap();
        }
        let nulled: Vec<Vec<Value>> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(field, value)| match keep.get(field).copied().unwrap_or(true) {
                        true => value.clone(),
                        false => Value::Null,
                    })
                    .collect()
            })
            .collect();
        let masked = masked.finish();
        let expected = build(&nulled);
        let (masked_view, expected_view) = (masked.view(), expected.view());
        for index in 0..rows.len() {
            prop_assert_eq!(masked_view.row_bytes(index), expected_view.row_bytes(index));
        }
        BatchView::verify(masked.as_bytes()).unwrap();
    }
}
