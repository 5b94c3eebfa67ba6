//! Batch verification must never panic or misbehave on any bytes, and whatever it accepts must
//! be readable in full. This is the decoder every batch from disk or the network goes through.
//! The one-pass row check it uses first must accept nothing rkyv's validation refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::{BatchHeader, BatchView};

fuzz_target!(|data: &[u8]| {
    if wire_core::record::row::is_canonical_row(data) {
        assert!(wire_core::record::row::rkyv_validates_row(data));
    }
    let _ = BatchHeader::decode(data);
    if let Ok(view) = BatchView::verify(data) {
        for row in view.rows() {
            for value in row.values() {
                let _ = value.to_value();
            }
        }
        assert_eq!(view.as_bytes().len(), view.header().total_len());
    }
});
