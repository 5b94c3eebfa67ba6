use proptest::prelude::*;

use super::*;

fn stream() -> StreamKey {
    StreamKey {
        pipeline: "q5".to_string(),
        epoch: 3,
        task: 2,
        edge: 0,
        from: 1,
        to: 4,
    }
}

fn frames() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: VERSION,
            stream: stream(),
        },
        Frame::Batch(vec![1, 2, 3, 4]),
        Frame::Batch(Vec::new()),
        Frame::Watermark(-5),
        Frame::Idle,
        Frame::Barrier(u64::MAX),
        Frame::End,
        Frame::Credit(32),
        Frame::Refuse("unknown pipeline `q5`".to_string()),
    ]
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(frame, &mut bytes);
    bytes
}

#[test]
fn every_frame_round_trips_and_every_prefix_asks_for_more() {
    for frame in frames() {
        let bytes = encoded(&frame);
        assert_eq!(decode(&bytes), Ok(Some((frame.clone(), bytes.len()))));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "{frame:?} cut at {cut}");
        }
    }
}

#[test]
fn frames_back_to_back_decode_in_order() {
    let mut bytes = Vec::new();
    for frame in frames() {
        encode(&frame, &mut bytes);
    }
    let mut rest = &bytes[..];
    let mut decoded = Vec::new();
    while let Some((frame, used)) = decode(rest).unwrap() {
        decoded.push(frame);
        rest = &rest[used..];
    }
    assert_eq!(decoded, frames());
    assert!(rest.is_empty());
}

#[test]
fn a_batch_head_then_its_bytes_is_a_batch_frame() {
    let batch = vec![9u8; 100];
    let mut bytes = batch_head(batch.len()).to_vec();
    bytes.extend_from_slice(&batch);
    assert_eq!(encoded(&Frame::Batch(batch.clone())), bytes);
    let head: [u8; HEAD_LEN] = bytes[..HEAD_LEN].try_into().unwrap();
    assert_eq!(decode_head(head), Ok((FrameType::Batch, 100)));
}

#[test]
fn bad_heads_are_refused_before_any_body_is_read() {
    let too_long = (FRAME_LEN_MAX + 1).to_le_bytes();
    assert_eq!(
        decode(&too_long),
        Err(ExchangeError::FrameTooLong {
            len: FRAME_LEN_MAX + 1
        })
    );
    assert_eq!(decode(&[0, 0, 0, 0]), Err(ExchangeError::EmptyFrame));
    assert_eq!(
        decode(&[1, 0, 0, 0, 99]),
        Err(ExchangeError::UnknownType(99))
    );
}

#[test]
fn bad_bodies_name_the_frame_the_field_and_the_byte() {
    // A watermark of 4 bytes instead of 8.
    let bytes = [5, 0, 0, 0, FrameType::Watermark as u8, 1, 2, 3, 4];
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        ExchangeError::Truncated {
            frame: "watermark",
            field: "time",
            offset: 5
        }
    );
    assert_eq!(
        err.to_string(),
        "exchange watermark frame ends inside field `time` at byte 5"
    );
    // An end frame with a byte too many.
    let bytes = [2, 0, 0, 0, FrameType::End as u8, 0];
    assert_eq!(
        decode(&bytes),
        Err(ExchangeError::TrailingBytes {
            frame: "end",
            offset: 5,
            count: 1
        })
    );
    // A hello from another protocol.
    let mut hello = encoded(&frames()[0]);
    hello[5..9].copy_from_slice(b"WIRE");
    assert_eq!(decode(&hello), Err(ExchangeError::BadMagic(*b"WIRE")));
    // A refusal that is not UTF-8.
    let bytes = [4, 0, 0, 0, FrameType::Refuse as u8, 1, 0, 0xff];
    assert_eq!(
        decode(&bytes),
        Err(ExchangeError::BadUtf8 {
            frame: "refuse",
            field: "reason",
            offset: 5
        })
    );
}

proptest! {
    #[test]
    fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn hellos_round_trip(pipeline in "[a-z0-9-]{0,20}", epoch: u64, task: u32, edge: u32, from: u32, to: u32) {
        let frame = Frame::Hello {
            version: VERSION,
            stream: StreamKey { pipeline, epoch, task, edge, from, to },
        };
        let bytes = encoded(&frame);
        prop_assert_eq!(decode(&bytes), Ok(Some((frame, bytes.len()))));
    }
}
