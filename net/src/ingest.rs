//! The ingest protocol (producers to a node) as a pure codec: [`encode`], [`decode`] and a
//! [`FrameBuffer`] that cuts frames out of a byte stream, plus a blocking [`IngestClient`].
//!
//! Invariant: [`decode`] never panics and never allocates more than the bytes it was given,
//! whatever those bytes are; it is fuzzed by `fuzz/fuzz_targets/ingest_decode.rs`.
//! The byte layout, handshake and credit rules are specified in `docs/protocol.md`.

use std::io::{self, Read};

use wire_core::{DataType, Field, Schema};

pub use crate::error::DecodeError;

mod client;

pub use client::{ClientOptions, ClientTls, IngestClient};

/// The four bytes a Hello frame starts its body with.
pub const MAGIC: [u8; 4] = *b"WIRE";
/// The newest protocol version this code speaks: 2 adds idempotent producers, 3 a bearer
/// token in the Hello.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest protocol version a server still accepts: 1 (no idempotent producers).
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// The first protocol version whose Hello and HelloOk carry the producer fields.
pub const IDEMPOTENT_VERSION: u16 = 2;
/// The first protocol version whose Hello carries a bearer token.
pub const TOKEN_VERSION: u16 = 3;
/// Largest value of a frame's length prefix (type byte plus body): 16 MiB of batch plus room
/// for the Produce header.
pub const FRAME_LEN_MAX: u32 = (16 << 20) + 64;
/// Largest batch a Produce frame can carry (the frame maximum less type byte and `seq`).
pub const PRODUCE_BATCH_BYTES_MAX: usize = FRAME_LEN_MAX as usize - 1 - 8;
/// Largest string (in bytes) the protocol's u16 length prefix can describe.
pub const STRING_BYTES_MAX: usize = u16::MAX as usize;
/// Largest number of schema fields a Hello frame can carry.
pub const SCHEMA_FIELDS_MAX: usize = u16::MAX as usize;

/// Size of the length prefix in front of every frame.
const LEN_PREFIX: usize = 4;

/// A client's opening frame: who it is, which source it writes, and the schema of its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u16,
    /// Free-form client name, for logs and metrics.
    pub client: String,
    /// Name of the source (stream) the client produces to.
    pub source: String,
    /// Schema of every row the client will send.
    pub schema: Schema,
    /// Version 2: the client asks to be an idempotent producer. Not encoded in version 1.
    pub idempotent: bool,
    /// Version 2: the producer id to resume (0 asks the server for a new one).
    pub producer_id: u64,
    /// Version 2: the epoch of `producer_id` (0 for a new producer).
    pub producer_epoch: u16,
    /// Version 3: the producer's bearer token (`wire_<id>_<secret>`), empty for none.
    /// Not encoded before version 3.
    pub token: String,
}

/// The server's answer to a successful [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloOk {
    /// Protocol version the session uses.
    pub version: u16,
    /// Partition the connection's batches are appended to.
    pub partition: u32,
    /// Initial credits: how many Produce frames the client may send before the next grant.
    pub credits: u32,
    /// Largest batch (in bytes, header included) one Produce frame may carry.
    pub max_batch_bytes: u32,
    /// Version 2: the producer id the client stamps its batches with (0: not idempotent).
    pub producer_id: u64,
    /// Version 2: the producer's epoch.
    pub producer_epoch: u16,
}

/// The server's acknowledgement that a batch was appended to the partition's WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Sequence number of the acknowledged Produce frame.
    pub seq: u64,
    /// Log offset assigned to the batch's first row.
    pub base_offset: u64,
    /// Number of rows appended.
    pub rows: u32,
    /// Additional credits granted (added to the client's balance).
    pub credits: u32,
}

/// An Error frame: the server explains why it is closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What went wrong.
    pub code: ErrorCode,
    /// Sequence number of the batch concerned, 0 when the error is not about a batch.
    pub seq: u64,
    /// Human-readable explanation, at most [`STRING_BYTES_MAX`] bytes.
    pub message: String,
}

/// Error codes carried by Error frames; codes this version does not know decode to
/// [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: the Hello frame did not start with `WIRE`.
    BadMagic,
    /// 2: the server does not speak the client's protocol version.
    UnsupportedVersion,
    /// 3: the Hello frame names a source the server does not know.
    UnknownSource,
    /// 4: the Hello schema, or a batch's rows, do not match the source's schema.
    SchemaMismatch,
    /// 5: a Produce frame's batch failed verification.
    BadBatch,
    /// 6: a batch exceeds `max_batch_bytes`.
    TooLarge,
    /// 7: a frame was invalid or not allowed at this point (e.g. Produce without credit).
    ProtocolViolation,
    /// 8: the server cannot take the connection now; retry later.
    Overloaded,
    /// 9: the server failed internally.
    Internal,
    /// 10: the server is shutting down; reconnect to another node or later.
    ShuttingDown,
    /// 11: the peer sent nothing for too long (no Hello in time, or a frame stalled halfway).
    Timeout,
    /// 12: an idempotent producer's batch does not follow its last appended sequence number.
    OutOfOrderSequence,
    /// 13: an idempotent producer's epoch is older than the server's, or a newer connection
    /// of the same producer took over.
    ProducerFenced,
    /// 14: the server has no sequence state for the producer id (never appended, or evicted),
    /// so it cannot tell whether a re-sent batch is a duplicate.
    UnknownProducer,
    /// 15: the node requires a valid producer token and the Hello carried none, or one that
    /// is malformed, unknown, revoked or expired.
    Unauthenticated,
    /// 16: the Hello's token may not write to this pipeline or source.
    PermissionDenied,
    /// A code this version does not define.
    Unknown(u16),
}

/// One ingest protocol frame. `B` holds a Produce frame's batch bytes: `Vec<u8>` when owned,
/// `&[u8]` when borrowed from the receive buffer (see [`FrameRef`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<B = Vec<u8>> {
    /// Client to server, first frame of a connection.
    Hello(Hello),
    /// Server to client, accepts the Hello.
    HelloOk(HelloOk),
    /// Client to server: one batch, consuming one credit.
    Produce {
        /// Client-assigned sequence number: 1 for the first batch, then +1 per batch.
        seq: u64,
        /// A Wire batch's bytes; the codec does not verify them, the server does.
        batch: B,
    },
    /// Server to client: a batch is durable in the WAL.
    Ack(Ack),
    /// Server to client: additional credits.
    Credit {
        /// Additional credits granted (added to the client's balance).
        credits: u32,
    },
    /// Server to client: fatal error; the server closes the connection after it.
    Error(ErrorFrame),
    /// Either side: orderly end of the session.
    Close,
}

/// A frame whose Produce batch borrows from the decoded buffer, avoiding a copy.
pub type FrameRef<'a> = Frame<&'a [u8]>;

/// The frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Hello (1).
    Hello = 1,
    /// HelloOk (2).
    HelloOk = 2,
    /// Produce (3).
    Produce = 3,
    /// Ack (4).
    Ack = 4,
    /// Credit (5).
    Credit = 5,
    /// Error (6).
    Error = 6,
    /// Close (7).
    Close = 7,
}

/// Accumulates bytes read from a socket and cuts complete frames out of them.
///
/// ```
/// use wire_net::ingest::{encode, Frame, FrameBuffer};
/// let mut bytes = Vec::new();
/// encode(&Frame::<Vec<u8>>::Credit { credits: 4 }, &mut bytes);
/// let mut buffer = FrameBuffer::new();
/// buffer.extend(&bytes[..3]);
/// assert_eq!(buffer.next_frame().unwrap(), None);
/// buffer.extend(&bytes[3..]);
/// assert_eq!(buffer.next_frame().unwrap(), Some(Frame::Credit { credits: 4 }));
/// ```
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    start: usize,
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::BadMagic => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::UnknownSource => 3,
            ErrorCode::SchemaMismatch => 4,
            ErrorCode::BadBatch => 5,
            ErrorCode::TooLarge => 6,
            ErrorCode::ProtocolViolation => 7,
            ErrorCode::Overloaded => 8,
            ErrorCode::Internal => 9,
            ErrorCode::ShuttingDown => 10,
            ErrorCode::Timeout => 11,
            ErrorCode::OutOfOrderSequence => 12,
            ErrorCode::ProducerFenced => 13,
            ErrorCode::UnknownProducer => 14,
            ErrorCode::Unauthenticated => 15,
            ErrorCode::PermissionDenied => 16,
            ErrorCode::Unknown(code) => code,
        }
    }

    /// The code for a number read from the wire.
    pub fn from_u16(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::BadMagic,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::UnknownSource,
            4 => ErrorCode::SchemaMismatch,
            5 => ErrorCode::BadBatch,
            6 => ErrorCode::TooLarge,
            7 => ErrorCode::ProtocolViolation,
            8 => ErrorCode::Overloaded,
            9 => ErrorCode::Internal,
            10 => ErrorCode::ShuttingDown,
            11 => ErrorCode::Timeout,
            12 => ErrorCode::OutOfOrderSequence,
            13 => ErrorCode::ProducerFenced,
            14 => ErrorCode::UnknownProducer,
            15 => ErrorCode::Unauthenticated,
            16 => ErrorCode::PermissionDenied,
            other => ErrorCode::Unknown(other),
        }
    }
}

impl ErrorFrame {
    /// An Error frame whose message is cut (at a character boundary) to fit the protocol.
    pub fn new(code: ErrorCode, seq: u64, message: impl Into<String>) -> ErrorFrame {
        let mut message = message.into();
        if message.len() > STRING_BYTES_MAX {
            let mut end = STRING_BYTES_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        ErrorFrame { code, seq, message }
    }
}

impl FrameType {
    /// The type for a type byte, if it names one.
    pub fn from_u8(byte: u8) -> Option<FrameType> {
        Some(match byte {
            1 => FrameType::Hello,
            2 => FrameType::HelloOk,
            3 => FrameType::Produce,
            4 => FrameType::Ack,
            5 => FrameType::Credit,
            6 => FrameType::Error,
            7 => FrameType::Close,
            _ => return None,
        })
    }

    /// Lower-case name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::HelloOk => "hello_ok",
            FrameType::Produce => "produce",
            FrameType::Ack => "ack",
            FrameType::Credit => "credit",
            FrameType::Error => "error",
            FrameType::Close => "close",
        }
    }
}

impl<B> Frame<B> {
    /// The frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::HelloOk(_) => FrameType::HelloOk,
            Frame::Produce { .. } => FrameType::Produce,
            Frame::Ack(_) => FrameType::Ack,
            Frame::Credit { .. } => FrameType::Credit,
            Frame::Error(_) => FrameType::Error,
            Frame::Close => FrameType::Close,
        }
    }
}

impl FrameRef<'_> {
    /// Copies the borrowed batch bytes (if any) into an owned frame.
    pub fn into_owned(self) -> Frame {
        match self {
            Frame::Hello(hello) => Frame::Hello(hello),
            Frame::HelloOk(ok) => Frame::HelloOk(ok),
            Frame::Produce { seq, batch } => Frame::Produce {
                seq,
                batch: batch.to_vec(),
            },
            Frame::Ack(ack) => Frame::Ack(ack),
            Frame::Credit { credits } => Frame::Credit { credits },
            Frame::Error(error) => Frame::Error(error),
            Frame::Close => Frame::Close,
        }
    }
}

impl FrameBuffer {
    /// How many bytes [`FrameBuffer::read_from`] asks the reader for at most.
    pub const READ_CHUNK: usize = 64 << 10;

    /// An empty buffer.
    pub fn new() -> FrameBuffer {
        FrameBuffer::default()
    }

    /// Appends bytes received from the peer.
    ///
    /// Consumed bytes are dropped first, so the buffer holds at most the unfinished frame plus
    /// `bytes`; after [`FrameBuffer::reserve_frame`], appending no more than the frame's
    /// missing bytes never reallocates.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.drain_consumed();
        self.bytes.extend_from_slice(bytes);
    }

    /// Size in bytes (length prefix included) of the frame at the front of the buffer, once
    /// its length prefix has arrived. The prefix is not checked here: a length above
    /// [`FRAME_LEN_MAX`] is reported as is and refused by [`FrameBuffer::next_frame_ref`].
    pub fn next_frame_bytes(&self) -> Option<usize> {
        let pending = self.bytes.get(self.start..).unwrap_or_default();
        let prefix = pending.first_chunk::<LEN_PREFIX>()?;
        Some(LEN_PREFIX + u32::from_le_bytes(*prefix) as usize)
    }

    /// Bytes still missing from the frame at the front, once its length prefix has arrived.
    pub fn next_frame_missing(&self) -> Option<usize> {
        let total = self.next_frame_bytes()?;
        Some(total.saturating_sub(self.pending_len()))
    }

    /// Allocates room for exactly the rest of the frame at the front (whose length prefix
    /// must have arrived and been checked by the caller against its limits), so that
    /// receiving it does not grow the buffer by doubling.
    pub fn reserve_frame(&mut self) {
        if let Some(missing) = self.next_frame_missing() {
            self.drain_consumed();
            self.bytes.reserve_exact(missing);
        }
    }

    /// Gives memory back once a large frame has been consumed, keeping at most `capacity`
    /// bytes of room (or what the unconsumed bytes need).
    pub fn shrink_to(&mut self, capacity: usize) {
        self.drain_consumed();
        self.bytes.shrink_to(capacity);
    }

    /// Bytes of memory the buffer holds (its capacity).
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Reads once from `reader` into the buffer, retrying on `Interrupted`.
    /// Returns the number of bytes read; 0 means end of stream.
    pub fn read_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        self.compact();
        let len = self.bytes.len();
        self.bytes.resize(len + Self::READ_CHUNK, 0);
        let result = loop {
            match reader.read(&mut self.bytes[len..]) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.bytes.truncate(len + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Drops every consumed byte.
    fn drain_consumed(&mut self) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending_len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    /// After an error the buffer's contents are meaningless; close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        Ok(self.next_frame_ref()?.map(FrameRef::into_owned))
    }

    /// Like [`FrameBuffer::next_frame`], but a Produce batch borrows from the buffer.
    pub fn next_frame_ref(&mut self) -> Result<Option<FrameRef<'_>>, DecodeError> {
        let pending = self.bytes.get(self.start..).unwrap_or_default();
        match decode_ref(pending)? {
            None => Ok(None),
            Some((frame, consumed)) => {
                self.start += consumed;
                Ok(Some(frame))
            }
        }
    }

    /// Drops consumed bytes once they make up at least half of the buffer, so compaction
    /// costs amortised O(1) per byte.
    fn compact(&mut self) {
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Appends `frame`'s encoding to `out`.
///
/// # Panics
/// If a string is longer than [`STRING_BYTES_MAX`], a schema has more than
/// [`SCHEMA_FIELDS_MAX`] fields, a batch is longer than [`PRODUCE_BATCH_BYTES_MAX`], or a
/// schema uses a data type the protocol has no code for. These are caller bugs: check sizes
/// before building a frame (as [`IngestClient`] does), or build errors with [`ErrorFrame::new`].
///
/// ```
/// use wire_net::ingest::{decode, encode, Ack, Frame};
/// let ack = Frame::Ack(Ack { seq: 7, base_offset: 100, rows: 3, credits: 1 });
/// let mut bytes = Vec::new();
/// encode(&ack, &mut bytes);
/// assert_eq!(decode(&bytes).unwrap(), Some((ack, bytes.len())));
/// ```
pub fn encode<B: AsRef<[u8]>>(frame: &Frame<B>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(frame.frame_type() as u8);
    match frame {
        Frame::Hello(hello) => encode_hello(hello, out),
        Frame::HelloOk(ok) => {
            put_u16(out, ok.version);
            put_u32(out, ok.partition);
            put_u32(out, ok.credits);
            put_u32(out, ok.max_batch_bytes);
            if ok.version >= IDEMPOTENT_VERSION {
                put_u64(out, ok.producer_id);
                put_u16(out, ok.producer_epoch);
            }
        }
        Frame::Produce { seq, batch } => {
            let batch = batch.as_ref();
            assert!(
                batch.len() <= PRODUCE_BATCH_BYTES_MAX,
                "batch of {} bytes does not fit a produce frame",
                batch.len()
            );
            put_u64(out, *seq);
            out.extend_from_slice(batch);
        }
        Frame::Ack(ack) => {
            put_u64(out, ack.seq);
            put_u64(out, ack.base_offset);
            put_u32(out, ack.rows);
            put_u32(out, ack.credits);
        }
        Frame::Credit { credits } => put_u32(out, *credits),
        Frame::Error(error) => {
            put_u16(out, error.code.to_u16());
            put_u64(out, error.seq);
            put_str(out, &error.message);
        }
        Frame::Close => {}
    }
    let len = out.len() - start - LEN_PREFIX;
    let len = u32::try_from(len).ok().filter(|&len| len <= FRAME_LEN_MAX);
    let len = len.expect("encoded frame exceeds FRAME_LEN_MAX");
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
}

/// Decodes the frame at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, and `Ok(Some((frame, consumed)))`
/// with the number of bytes the frame took otherwise. Never panics, whatever `buf` holds.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    Ok(decode_ref(buf)?.map(|(frame, consumed)| (frame.into_owned(), consumed)))
}

/// Like [`decode`], but a Produce frame's batch borrows from `buf`.
///
/// ```
/// use wire_net::ingest::{decode_ref, encode, Frame};
/// let mut bytes = Vec::new();
/// encode(&Frame::Produce { seq: 1, batch: &b"batch bytes"[..] }, &mut bytes);
/// let (frame, _) = decode_ref(&bytes).unwrap().unwrap();
/// assert_eq!(frame, Frame::Produce { seq: 1, batch: &b"batch bytes"[..] });
/// ```
pub fn decode_ref(buf: &[u8]) -> Result<Option<(FrameRef<'_>, usize)>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*prefix);
    if len > FRAME_LEN_MAX {
        return Err(DecodeError::FrameTooLong {
            len,
            max: FRAME_LEN_MAX,
        });
    }
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    // `len` is at most FRAME_LEN_MAX, so this cannot overflow a usize on any supported target.
    let total = LEN_PREFIX + len as usize;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let type_byte = frame.get(LEN_PREFIX).copied().unwrap_or_default();
    let frame_type = FrameType::from_u8(type_byte).ok_or(DecodeError::UnknownType {
        frame_type: type_byte,
    })?;
    let mut reader = Reader {
        frame,
        pos: LEN_PREFIX + 1,
        frame_type,
    };
    let decoded = decode_body(&mut reader)?;
    reader.finish()?;
    Ok(Some((decoded, total)))
}

/// The protocol's code for a data type.
///
/// # Panics
/// For a data type added to `wire-core` after this protocol version, which has no code yet.
pub fn data_type_code(data_type: DataType) -> u8 {
    match data_type {
        DataType::I64 => 1,
        DataType::F64 => 2,
        DataType::Bool => 3,
        DataType::String => 4,
        DataType::Bytes => 5,
        DataType::Timestamp => 6,
        other => panic!("data type {other} has no ingest protocol code"),
    }
}

/// The data type for a protocol type code, if it names one.
pub fn data_type_from_code(code: u8) -> Option<DataType> {
    Some(match code {
        1 => DataType::I64,
        2 => DataType::F64,
        3 => DataType::Bool,
        4 => DataType::String,
        5 => DataType::Bytes,
        6 => DataType::Timestamp,
        _ => return None,
    })
}

fn encode_hello(hello: &Hello, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    put_u16(out, hello.version);
    put_str(out, &hello.client);
    put_str(out, &hello.source);
    let fields = hello.schema.fields();
    let count = u16::try_from(fields.len()).expect("schema has more than 65535 fields");
    put_u16(out, count);
    for field in fields {
        put_str(out, &field.name);
        out.push(data_type_code(field.data_type));
        out.push(u8::from(field.nullable));
    }
    if hello.version >= IDEMPOTENT_VERSION {
        out.push(u8::from(hello.idempotent));
        put_u64(out, hello.producer_id);
        put_u16(out, hello.producer_epoch);
    }
    if hello.version >= TOKEN_VERSION {
        put_str(out, &hello.token);
    }
}

fn decode_body<'a>(reader: &mut Reader<'a>) -> Result<FrameRef<'a>, DecodeError> {
    Ok(match reader.frame_type {
        FrameType::Hello => Frame::Hello(decode_hello(reader)?),
        FrameType::HelloOk => Frame::HelloOk(decode_hello_ok(reader)?),
        FrameType::Produce => Frame::Produce {
            seq: reader.u64("seq")?,
            batch: reader.rest(),
        },
        FrameType::Ack => Frame::Ack(Ack {
            seq: reader.u64("seq")?,
            base_offset: reader.u64("base_offset")?,
            rows: reader.u32("rows")?,
            credits: reader.u32("credits")?,
        }),
        FrameType::Credit => Frame::Credit {
            credits: reader.u32("credits")?,
        },
        FrameType::Error => Frame::Error(ErrorFrame {
            code: ErrorCode::from_u16(reader.u16("code")?),
            seq: reader.u64("seq")?,
            message: reader.string("message")?,
        }),
        FrameType::Close => Frame::Close,
    })
}

fn decode_hello(reader: &mut Reader<'_>) -> Result<Hello, DecodeError> {
    let magic = reader.array::<4>("magic")?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = reader.u16("version")?;
    let client = reader.string("client")?;
    let source = reader.string("source")?;
    let count = usize::from(reader.u16("field_count")?);
    // Every field takes at least 4 bytes, which bounds the allocation by the frame's size.
    let mut fields = Vec::with_capacity(count.min(reader.remaining() / 4));
    for index in 0..count {
        let name = reader.string("field_name")?;
        let offset = reader.pos;
        let code = reader.u8("field_type")?;
        let data_type = data_type_from_code(code).ok_or(DecodeError::UnknownDataType {
            index,
            code,
            offset,
        })?;
        let nullable = reader.bool("field_nullable")?;
        fields.push(Field {
            name,
            data_type,
            nullable,
        });
    }
    let mut hello = Hello {
        version,
        client,
        source,
        schema: Schema::new(fields),
        idempotent: false,
        producer_id: 0,
        producer_epoch: 0,
        token: String::new(),
    };
    if version >= IDEMPOTENT_VERSION {
        hello.idempotent = reader.bool("idempotent")?;
        hello.producer_id = reader.u64("producer_id")?;
        hello.producer_epoch = reader.u16("producer_epoch")?;
    }
    if version >= TOKEN_VERSION {
        hello.token = reader.string("token")?;
    }
    Ok(hello)
}

fn decode_hello_ok(reader: &mut Reader<'_>) -> Result<HelloOk, DecodeError> {
    let mut ok = HelloOk {
        version: reader.u16("version")?,
        partition: reader.u32("partition")?,
        credits: reader.u32("credits")?,
        max_batch_bytes: reader.u32("max_batch_bytes")?,
        producer_id: 0,
        producer_epoch: 0,
    };
    if ok.version >= IDEMPOTENT_VERSION {
        ok.producer_id = reader.u64("producer_id")?;
        ok.producer_epoch = reader.u16("producer_epoch")?;
    }
    Ok(ok)
}

/// A bounds-checked cursor over one complete frame; `pos` counts from the length prefix.
struct Reader<'a> {
    frame: &'a [u8],
    pos: usize,
    frame_type: FrameType,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(len);
        let bytes = end.and_then(|end| self.frame.get(self.pos..end));
        let bytes = bytes.ok_or(DecodeError::Truncated {
            frame: self.frame_type.name(),
            field,
            offset: self.pos,
        })?;
        self.pos += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.bytes(N, field)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool {
                frame: self.frame_type.name(),
                field,
                offset,
                value,
            }),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let offset = self.pos;
        let len = usize::from(self.u16(field)?);
        let bytes = self.bytes(len, field)?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8 {
            frame: self.frame_type.name(),
            field,
            offset,
        })?;
        Ok(text.to_owned())
    }

    fn remaining(&self) -> usize {
        self.frame.len().saturating_sub(self.pos)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = self.frame.get(self.pos..).unwrap_or_default();
        self.pos = self.frame.len();
        rest
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                frame: self.frame_type.name(),
                offset: self.pos,
                count,
            }),
        }
    }
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).expect("string longer than 65535 bytes");
    put_u16(out, len);
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests;
