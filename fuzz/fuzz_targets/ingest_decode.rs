//! Ingest frame decoding must never panic on any bytes, must agree with the incremental
//! `FrameBuffer` however the bytes are split, and every frame it accepts must re-encode to
//! exactly the bytes it was decoded from (the encoding is canonical). Version 1 Hello and
//! HelloOk frames carry no producer fields; a Produce batch that verifies exposes its
//! idempotent producer stamp (id, epoch, sequence) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::BatchView;
use wire_net::ingest::{decode, decode_ref, encode, Frame, FrameBuffer, IDEMPOTENT_VERSION};

/// What version 2 added must be absent from older frames, and a batch's stamp readable.
fn check_fields(frame: &Frame) {
    match frame {
        Frame::Hello(hello) if hello.version < IDEMPOTENT_VERSION => {
            assert!(!hello.idempotent && hello.producer_id == 0 && hello.producer_epoch == 0);
        }
        Frame::HelloOk(ok) if ok.version < IDEMPOTENT_VERSION => {
            assert!(ok.producer_id == 0 && ok.producer_epoch == 0);
        }
        Frame::Produce { batch, .. } => {
            if let Ok(view) = BatchView::verify(batch) {
                let header = view.header();
                let _ = (header.producer_id(), header.producer_epoch(), header.sequence);
                assert!(header.producer_id() <= wire_core::record::batch::PRODUCER_ID_MAX);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // Decode frames back to back, as a server reading a pipelined stream would.
    let mut direct = Vec::new();
    let mut rest = data;
    let mut direct_error = None;
    loop {
        match decode(rest) {
            Ok(Some((frame, consumed))) => {
                assert!(consumed > 0 && consumed <= rest.len());
                let mut encoded = Vec::new();
                encode(&frame, &mut encoded);
                assert_eq!(encoded, rest[..consumed], "re-encoding differs");
                let (borrowed, borrowed_consumed) = decode_ref(rest)
                    .expect("decode_ref disagrees with decode")
                    .expect("decode_ref needs more bytes than decode");
                assert_eq!(borrowed_consumed, consumed);
                assert_eq!(borrowed.into_owned(), frame);
                check_fields(&frame);
                direct.push(frame);
                rest = &rest[consumed..];
            }
            Ok(None) => break,
            Err(err) => {
                let _ = err.to_string();
                direct_error = Some(err);
                break;
            }
        }
    }

    // The same bytes fed in uneven pieces (split sizes taken from the data itself) must give
    // the same frames and the same error.
    let mut buffer = FrameBuffer::new();
    let mut buffered = Vec::new();
    let mut buffered_error = None;
    let mut offset = 0;
    let mut step = 1;
    'feed: while offset < data.len() {
        let end = (offset + step).min(data.len());
        buffer.extend(&data[offset..end]);
        step = usize::from(data[offset] % 17) + 1;
        offset = end;
        // The sizing calls a server makes before reading more (bounded here, as a server
        // bounds them by its limits) must agree with the bytes and never disturb decoding.
        if let Some(total) = buffer.next_frame_bytes() {
            let missing = buffer.next_frame_missing().expect("prefix arrived");
            assert_eq!(missing, total.saturating_sub(buffer.pending_len()));
            if total <= 1 << 16 {
                buffer.reserve_frame();
                assert!(buffer.capacity() >= buffer.pending_len() + missing);
            }
        }
        loop {
            match buffer.next_frame() {
                Ok(Some(frame)) => {
                    buffered.push(frame);
                    buffer.shrink_to(64);
                }
                Ok(None) => break,
                Err(err) => {
                    buffered_error = Some(err);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(direct, buffered);
    assert_eq!(direct_error, buffered_error);
});
