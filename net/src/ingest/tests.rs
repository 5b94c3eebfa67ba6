use proptest::prelude::*;
use wire_core::{DataType, Field, Schema};

use super::*;

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        client: "loadgen-1".into(),
        source: "bids".into(),
        schema: Schema::new(vec![
            Field::new("auction", DataType::I64),
            Field::new("price", DataType::F64),
            Field::nullable("flag", DataType::Bool),
            Field::nullable("bidder", DataType::String),
            Field::new("extra", DataType::Bytes),
            Field::new("date_time", DataType::Timestamp),
        ]),
        idempotent: true,
        producer_id: 0x0000_1234_5678_9abc,
        producer_epoch: 7,
        token: "wire_0011223344556677_secret".into(),
    }
}

fn every_frame() -> Vec<Frame> {
    vec![
        Frame::Hello(hello()),
        Frame::Hello(Hello {
            version: 9,
            client: String::new(),
            source: "ünïcode ✓".into(),
            schema: Schema::default(),
            idempotent: false,
            producer_id: u64::MAX,
            producer_epoch: u16::MAX,
            token: "tök€n".into(),
        }),
        Frame::HelloOk(HelloOk {
            version: 1,
            partition: 3,
            credits: 8,
            max_batch_bytes: 1 << 20,
            producer_id: 0,
            producer_epoch: 0,
        }),
        Frame::Hello(Hello {
            version: 1,
            client: "old".into(),
            source: "bids".into(),
            schema: Schema::default(),
            idempotent: false,
            producer_id: 0,
            producer_epoch: 0,
            token: String::new(),
        }),
        Frame::HelloOk(HelloOk {
            version: 2,
            partition: 1,
            credits: 16,
            max_batch_bytes: 1 << 20,
            producer_id: (1 << 48) - 1,
            producer_epoch: 2,
        }),
        Frame::Produce {
            seq: 1,
            batch: vec![],
        },
        Frame::Produce {
            seq: u64::MAX,
            batch: (0..=255).collect(),
        },
        Frame::Ack(Ack {
            seq: 5,
            base_offset: 1_000,
            rows: 42,
            credits: 1,
        }),
        Frame::Credit { credits: 7 },
        Frame::Error(ErrorFrame::new(
            ErrorCode::SchemaMismatch,
            3,
            "field 2: bad",
        )),
        Frame::Error(ErrorFrame::new(ErrorCode::Unknown(999), 0, "")),
        Frame::Close,
        Frame::Error(ErrorFrame::new(ErrorCode::Timeout, 0, "idle for 10 ms")),
    ]
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out);
    out
}

/// A frame with the given type byte and body, length prefix computed.
fn raw_frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len() + 1).unwrap();
    let mut out = len.to_le_bytes().to_vec();
    out.push(frame_type);
    out.extend_from_slice(body);
    out
}

#[test]
fn every_frame_round_trips() {
    for frame in every_frame() {
        let bytes = encoded(&frame);
        assert_eq!(decode(&bytes), Ok(Some((frame.clone(), bytes.len()))));
        let (borrowed, consumed) = decode_ref(&bytes).unwrap().unwrap();
        assert_eq!(consumed, bytes.len());
        assert_eq!(borrowed.into_owned(), frame);
    }
}

#[test]
fn layout_matches_the_spec() {
    let ack = encoded(&Frame::Ack(Ack {
        seq: 1,
        base_offset: 2,
        rows: 3,
        credits: 4,
    }));
    let mut expected = vec![25, 0, 0, 0, 4];
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.extend_from_slice(&2u64.to_le_bytes());
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.extend_from_slice(&4u32.to_le_bytes());
    assert_eq!(ack, expected);
    assert_eq!(encoded(&Frame::Close), [1, 0, 0, 0, 7]);
    let hello = encoded(&Frame::Hello(Hello {
        version: 1,
        client: "c".into(),
        source: "s".into(),
        schema: Schema::new(vec![Field::nullable("x", DataType::Timestamp)]),
        idempotent: false,
        producer_id: 0,
        producer_epoch: 0,
        token: String::new(),
    }));
    let body = [
        b'W', b'I', b'R', b'E', 1, 0, 1, 0, b'c', 1, 0, b's', 1, 0, 1, 0, b'x', 6, 1,
    ];
    assert_eq!(hello, raw_frame(1, &body));
    // Version 2 appends `idempotent`, `producer_id` and `producer_epoch` to the Hello, and
    // `producer_id` and `producer_epoch` to the HelloOk.
    let hello = encoded(&Frame::Hello(Hello {
        version: 2,
        client: "c".into(),
        source: "s".into(),
        schema: Schema::default(),
        idempotent: true,
        producer_id: 0x0102,
        producer_epoch: 3,
        token: String::new(),
    }));
    let body = [
        b'W', b'I', b'R', b'E', 2, 0, 1, 0, b'c', 1, 0, b's', 0, 0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0,
    ];
    assert_eq!(hello, raw_frame(1, &body));
    // Version 3 appends the token (a string) to the Hello; its HelloOk is version 2's.
    let hello = encoded(&Frame::Hello(Hello {
        version: 3,
        client: "c".into(),
        source: "s".into(),
        schema: Schema::default(),
        idempotent: false,
        producer_id: 0,
        producer_epoch: 0,
        token: "tk".into(),
    }));
    let body = [
        b'W', b'I', b'R', b'E', 3, 0, 1, 0, b'c', 1, 0, b's', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 2, 0, b't', b'k',
    ];
    assert_eq!(hello, raw_frame(1, &body));
    let ok = encoded(&Frame::HelloOk(HelloOk {
        version: 2,
        partition: 1,
        credits: 2,
        max_batch_bytes: 3,
        producer_id: 4,
        producer_epoch: 5,
    }));
    let body = [
        2, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5, 0,
    ];
    assert_eq!(ok, raw_frame(2, &body));
}

#[test]
fn every_strict_prefix_needs_more_bytes() {
    for frame in every_frame() {
        let bytes = encoded(&frame);
        for end in 0..bytes.len() {
            assert_eq!(decode(&bytes[..end]), Ok(None), "{frame:?} cut at {end}");
        }
    }
}

#[test]
fn decode_consumes_only_the_first_frame() {
    let mut bytes = encoded(&Frame::Credit { credits: 1 });
    let first = bytes.len();
    bytes.extend(encoded(&Frame::Close));
    assert_eq!(
        decode(&bytes),
        Ok(Some((Frame::Credit { credits: 1 }, first)))
    );
}

#[test]
fn over_long_length_is_an_error_before_any_body_arrives() {
    let bytes = (FRAME_LEN_MAX + 1).to_le_bytes();
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::FrameTooLong {
            len: FRAME_LEN_MAX + 1,
            max: FRAME_LEN_MAX
        }
    );
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    assert_eq!(decode(&u32::MAX.to_le_bytes()), Err(err_too_long(u32::MAX)));
    // The maximum itself is fine: it just needs more bytes.
    assert_eq!(decode(&FRAME_LEN_MAX.to_le_bytes()), Ok(None));
}

fn err_too_long(len: u32) -> DecodeError {
    DecodeError::FrameTooLong {
        len,
        max: FRAME_LEN_MAX,
    }
}

#[test]
fn malformed_frames_name_the_frame_field_and_offset() {
    let cases: Vec<(Vec<u8>, DecodeError, &str)> = vec![
        (vec![0, 0, 0, 0], DecodeError::EmptyFrame, "length 0"),
        (
            raw_frame(42, &[]),
            DecodeError::UnknownType { frame_type: 42 },
            "unknown frame type 42 at byte 4",
        ),
        (
            raw_frame(0, &[]),
            DecodeError::UnknownType { frame_type: 0 },
            "unknown frame type 0",
        ),
        (
            raw_frame(5, &[1, 0]),
            DecodeError::Truncated {
                frame: "credit",
                field: "credits",
                offset: 5,
            },
            "credit frame ends inside field `credits` at byte 5",
        ),
        (
            raw_frame(7, &[0]),
            DecodeError::TrailingBytes {
                frame: "close",
                offset: 5,
                count: 1,
            },
            "close frame has 1 trailing bytes at byte 5",
        ),
        (
            raw_frame(1, b"WIRX\x01\x00"),
            DecodeError::BadMagic { found: *b"WIRX" },
            "magic",
        ),
        (
            raw_frame(6, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xC3, 0x28]),
            DecodeError::BadUtf8 {
                frame: "error",
                field: "message",
                offset: 15,
            },
            "field `message` at byte 15 is not valid UTF-8",
        ),
        (
            raw_frame(6, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, b'a']),
            DecodeError::Truncated {
                frame: "error",
                field: "message",
                offset: 17,
            },
            "error frame ends inside field `message`",
        ),
        (
            raw_frame(1, b"WIRE\x01\x00\x00\x00\x00\x00\x01\x00\x01\x00x\x07\x00"),
            DecodeError::UnknownDataType {
                index: 0,
                code: 7,
                offset: 20,
            },
            "unknown type code 7 at byte 20",
        ),
        (
            raw_frame(1, b"WIRE\x01\x00\x00\x00\x00\x00\x01\x00\x01\x00x\x01\x02"),
            DecodeError::BadBool {
                frame: "hello",
                field: "field_nullable",
                offset: 21,
                value: 2,
            },
            "is 2, expected 0 or 1",
        ),
        (
            raw_frame(1, b"WIRE\x01\x00\x00\x00\x00\x00\xff\xff"),
            DecodeError::Truncated {
                frame: "hello",
                field: "field_name",
                offset: 17,
            },
            "hello frame ends inside field `field_name` at byte 17",
        ),
    ];
    for (bytes, expected, message) in cases {
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, expected);
        assert!(err.to_string().contains(message), "{err} lacks {message}");
    }
}

#[test]
fn error_frame_new_cuts_long_messages_at_a_char_boundary() {
    let message = "é".repeat(STRING_BYTES_MAX);
    let error = ErrorFrame::new(ErrorCode::Internal, 0, message);
    assert_eq!(error.message.len(), STRING_BYTES_MAX - 1);
    let frame = Frame::Error(error);
    assert_eq!(decode(&encoded(&frame)).unwrap().unwrap().0, frame);
}

#[test]
fn error_codes_round_trip_through_u16() {
    for code in 0..=u16::MAX {
        assert_eq!(ErrorCode::from_u16(code).to_u16(), code);
    }
    assert_eq!(ErrorCode::from_u16(7), ErrorCode::ProtocolViolation);
    assert_eq!(ErrorCode::from_u16(11), ErrorCode::Timeout);
    assert_eq!(ErrorCode::from_u16(12), ErrorCode::OutOfOrderSequence);
    assert_eq!(ErrorCode::from_u16(13), ErrorCode::ProducerFenced);
    assert_eq!(ErrorCode::from_u16(14), ErrorCode::UnknownProducer);
    assert_eq!(ErrorCode::from_u16(15), ErrorCode::Unauthenticated);
    assert_eq!(ErrorCode::from_u16(16), ErrorCode::PermissionDenied);
    assert_eq!(ErrorCode::from_u16(17), ErrorCode::Unknown(17));
}

#[test]
fn frame_buffer_sizes_a_large_frame_exactly_and_shrinks_after_it() {
    let small = Frame::Credit { credits: 1 };
    let large = Frame::Produce {
        seq: 1,
        batch: vec![7u8; 1 << 20],
    };
    let (small_bytes, large_bytes) = (encoded(&small), encoded(&large));
    let mut buffer = FrameBuffer::new();
    assert_eq!(buffer.next_frame_bytes(), None);
    let mut first = small_bytes.clone();
    first.extend_from_slice(&large_bytes[..100]);
    buffer.extend(&first);
    assert_eq!(buffer.next_frame_bytes(), Some(small_bytes.len()));
    assert_eq!(buffer.next_frame().unwrap(), Some(small));
    assert_eq!(buffer.next_frame().unwrap(), None);
    assert_eq!(buffer.next_frame_bytes(), Some(large_bytes.len()));
    assert_eq!(buffer.next_frame_missing(), Some(large_bytes.len() - 100));
    buffer.reserve_frame();
    let capacity = buffer.capacity();
    assert!(capacity >= large_bytes.len() && capacity < large_bytes.len() + 4096);
    for piece in large_bytes[100..].chunks(4096) {
        buffer.extend(piece);
    }
    assert_eq!(
        buffer.capacity(),
        capacity,
        "no reallocation while the frame arrives"
    );
    assert_eq!(buffer.next_frame_missing(), Some(0));
    assert_eq!(buffer.next_frame().unwrap(), Some(large));
    buffer.shrink_to(1024);
    assert!(buffer.capacity() <= 1024, "{}", buffer.capacity());
    assert_eq!(buffer.pending_len(), 0);
}

#[test]
fn frame_buffer_reassembles_split_reads_and_compacts() {
    let frames = every_frame();
    let mut stream = Vec::new();
    for frame in &frames {
        encode(frame, &mut stream);
    }
    for chunk in [1, 2, 3, 7, 64, stream.len()] {
        let mut buffer = FrameBuffer::new();
        let mut decoded = Vec::new();
        for piece in stream.chunks(chunk) {
            buffer.extend(piece);
            while let Some(frame) = buffer.next_frame().unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames, "chunk size {chunk}");
        assert_eq!(buffer.pending_len(), 0);
        assert!(buffer.bytes.len() < 2 * stream.len());
    }
}

#[test]
fn frame_buffer_reads_from_a_reader_until_end_of_stream() {
    let frames = every_frame();
    let mut stream = Vec::new();
    for frame in &frames {
        encode(frame, &mut stream);
    }
    let mut reader = &stream[..];
    let mut buffer = FrameBuffer::new();
    let mut decoded = Vec::new();
    while buffer.read_from(&mut reader).unwrap() > 0 {
        while let Some(frame) = buffer.next_frame_ref().unwrap() {
            decoded.push(frame.into_owned());
        }
    }
    assert_eq!(decoded, frames);
}

#[test]
fn frame_buffer_reports_garbage() {
    let mut buffer = FrameBuffer::new();
    buffer.extend(&[3, 0, 0, 0, 99, 0, 0]);
    assert_eq!(
        buffer.next_frame(),
        Err(DecodeError::UnknownType { frame_type: 99 })
    );
}

fn data_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::I64),
        Just(DataType::F64),
        Just(DataType::Bool),
        Just(DataType::String),
        Just(DataType::Bytes),
        Just(DataType::Timestamp),
    ]
}

fn any_frame() -> impl Strategy<Value = Frame> {
    let field =
        (".{0,12}", data_type(), any::<bool>()).prop_map(|(name, data_type, nullable)| Field {
            name,
            data_type,
            nullable,
        });
    let hello = (
        any::<u16>(),
        ".{0,20}",
        ".{0,20}",
        prop::collection::vec(field, 0..8),
        any::<(bool, u64, u16)>(),
        ".{0,20}",
    )
        .prop_map(|(version, client, source, fields, producer, token)| {
            // Version 1 has no producer fields: they decode as their defaults.
            let v2 = version >= IDEMPOTENT_VERSION;
            Frame::Hello(Hello {
                version,
                client,
                source,
                schema: Schema::new(fields),
                idempotent: v2 && producer.0,
                producer_id: if v2 { producer.1 } else { 0 },
                producer_epoch: if v2 { producer.2 } else { 0 },
                token: if version >= TOKEN_VERSION {
                    token
                } else {
                    String::new()
                },
            })
        });
    prop_oneof![
        hello,
        (any::<(u16, u32, u32, u32)>(), any::<(u64, u16)>()).prop_map(
            |((version, partition, credits, max), (id, epoch))| {
                let v2 = version >= IDEMPOTENT_VERSION;
                Frame::HelloOk(HelloOk {
                    version,
                    partition,
                    credits,
                    max_batch_bytes: max,
                    producer_id: if v2 { id } else { 0 },
                    producer_epoch: if v2 { epoch } else { 0 },
                })
            }
        ),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(seq, batch)| Frame::Produce { seq, batch }),
        any::<(u64, u64, u32, u32)>().prop_map(|(seq, base_offset, rows, credits)| {
            Frame::Ack(Ack {
                seq,
                base_offset,
                rows,
                credits,
            })
        }),
        any::<u32>().prop_map(|credits| Frame::Credit { credits }),
        (any::<u16>(), any::<u64>(), ".{0,40}").prop_map(|(code, seq, message)| {
            Frame::Error(ErrorFrame::new(ErrorCode::from_u16(code), seq, message))
        }),
        Just(Frame::Close),
    ]
}

proptest! {
    #[test]
    fn any_frame_round_trips(frame in any_frame()) {
        let bytes = encoded(&frame);
        prop_assert_eq!(decode(&bytes), Ok(Some((frame, bytes.len()))));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decoded_frames_re_encode(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(Some((frame, consumed))) = decode(&bytes) {
            prop_assert_eq!(&encoded(&frame)[..], &bytes[..consumed]);
        }
    }

    #[test]
    fn corrupting_one_byte_never_panics(frame in any_frame(), index in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encoded(&frame);
        let index = index % bytes.len();
        bytes[index] = byte;
        if let Ok(Some((frame, consumed))) = decode(&bytes) {
            prop_assert_eq!(&encoded(&frame)[..], &bytes[..consumed]);
        }
    }
}

/// Seeds for `fuzz/fuzz_targets/ingest_decode.rs`: each frame alone, plus all of them back to
/// back. Regenerate with `cargo test -p wire-net -- --ignored write_fuzz_seeds`.
fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut stream = Vec::new();
    for (index, frame) in every_frame().iter().enumerate() {
        let name = format!("{index:02}_{}", frame.frame_type().name());
        seeds.push((name, encoded(frame)));
        encode(frame, &mut stream);
    }
    let mut builder = wire_core::BatchBuilder::new(wire_core::StreamId(0), Default::default());
    builder
        .push_with_time(
            &[wire_core::ValueRef::I64(1), wire_core::ValueRef::Str("a")],
            5,
        )
        .unwrap();
    let batch = builder.finish().into_bytes();
    let mut stamped = batch.clone();
    wire_core::record::batch::stamp_producer(&mut stamped, 77, 1, 5);
    seeds.push((
        "real_batch".into(),
        encoded(&Frame::Produce { seq: 1, batch }),
    ));
    seeds.push((
        "real_batch_idempotent".into(),
        encoded(&Frame::Produce {
            seq: 1,
            batch: stamped,
        }),
    ));
    seeds.push(("stream".into(), stream));
    seeds
}

fn fuzz_seed_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/ingest_decode")
}

#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_fuzz_seeds() {
    let dir = fuzz_seed_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in fuzz_seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn fuzz_seeds_are_current() {
    for (name, bytes) in fuzz_seeds() {
        let stored = std::fs::read(fuzz_seed_dir().join(&name));
        assert_eq!(
            stored.ok(),
            Some(bytes),
            "seed {name} is stale: run write_fuzz_seeds"
        );
    }
}
