//! Batch verification must never panic or misbehave on any bytes, and whatever it accepts must
//! be readable in full. This is the decoder every batch from disk or the network goes through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::{BatchHeader, BatchView};

fuzz_target!(|data: &[u8]| {
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
