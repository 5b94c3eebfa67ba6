//! Batch verification must never panic or misbehave on any bytes, and whatever it accepts must
//! be readable in full, and every row it accepts must be one rkyv's own validator accepts (rows
//! are then read with `access_unchecked`). This is the decoder every batch from disk or the
//! network goes through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::record::row::rkyv_accepts_row;
use wire_core::{BatchHeader, BatchView};

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
    }
});
