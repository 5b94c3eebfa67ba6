//! Batch verification must never panic or misbehave on any bytes, and whatever it accepts must
//! be readable in full, and every row it accepts must be one rkyv's own validator accepts (rows
//! are then read with `access_unchecked`). This is the decoder every batch from disk or the
//! network goes through. An exchange copies accepted rows with fields masked to NULL; those
//! copies must verify too and read as the rows with those fields NULL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::record::row::rkyv_accepts_row;
use wire_core::record::row::Value;
use wire_core::{BatchBuilder, BatchHeader, BatchView, PartitionId, StreamId};

fuzz_target!(|data: &[u8]| {
    let _ = BatchHeader::decode(data);
    if let Ok(view) = BatchView::verify(data) {
        for index in 0..view.row_count() {
            assert!(rkyv_accepts_row(view.row_bytes(index)), "row {index}");
        }
        for row in view.rows() {
            for value in row.values() {
                let _ = value.to_value();
            }
        }
        assert_eq!(view.as_bytes().len(), view.header().total_len());
        // A mask from the batch's own first byte: field i kept when bit i is set.
        let keep: Vec<bool> = (0..8).map(|bit| data[0] >> bit & 1 == 1).collect();
        let mut masked = BatchBuilder::new(StreamId(0), PartitionId(0));
        for index in 0..view.row_count() {
            masked
                .push_row_masked(&view, index, &keep)
                .expect("a verified row masks");
        }
        let masked = masked.finish();
        let copy = BatchView::verify(masked.as_bytes()).expect("a masked copy verifies");
        for (row, original) in copy.rows().zip(view.rows()) {
            let kept = keep.iter().copied().chain(std::iter::repeat(true));
            let expected: Vec<Value> = (original.values().iter().zip(kept))
                .map(|(value, kept)| match kept {
                    true => value.to_value(),
                    false => Value::Null,
                })
                .collect();
            assert_eq!(row.to_values(), expected);
        }
    }
});
