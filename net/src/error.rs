//! Errors of the `net` crate: decoding frames from untrusted bytes, and the blocking client.
//!
//! Every decode error names the frame type, the field and the byte offset from the start of the
//! frame (its length prefix is byte 0), so a bad peer can be diagnosed from one log line.

use crate::ingest::ErrorCode;

/// A frame's bytes do not follow the ingest protocol.
///
/// Offsets count from the first byte of the frame's length prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix exceeds [`crate::ingest::FRAME_LEN_MAX`]; nothing was allocated.
    #[error("frame length {len} at byte 0 exceeds the maximum of {max} bytes")]
    FrameTooLong {
        /// The length the prefix claims.
        len: u32,
        /// The largest length accepted.
        max: u32,
    },
    /// The length prefix is zero, leaving no room for the type byte.
    #[error("frame length 0 at byte 0 leaves no room for the type byte")]
    EmptyFrame,
    /// The type byte names no frame type.
    #[error("unknown frame type {frame_type} at byte 4")]
    UnknownType {
        /// The type byte found.
        frame_type: u8,
    },
    /// The frame ends in the middle of a field.
    #[error("{frame} frame ends inside field `{field}` at byte {offset}")]
    Truncated {
        /// Frame type name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
        /// Offset where the field starts.
        offset: usize,
    },
    /// The frame has bytes left after its last field.
    #[error("{frame} frame has {count} trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Frame type name.
        frame: &'static str,
        /// Offset of the first unread byte.
        offset: usize,
        /// How many bytes were left over.
        count: usize,
    },
    /// A Hello frame does not start with the protocol magic.
    #[error("hello frame has magic {found:?} at byte 5, expected \"WIRE\"")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// A string field is not valid UTF-8.
    #[error("{frame} frame field `{field}` at byte {offset} is not valid UTF-8")]
    BadUtf8 {
        /// Frame type name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
        /// Offset of the string's length prefix.
        offset: usize,
    },
    /// A schema field has a type code the protocol does not define.
    #[error("hello frame schema field {index} has unknown type code {code} at byte {offset}")]
    UnknownDataType {
        /// Position of the field in the schema.
        index: usize,
        /// The type code found.
        code: u8,
        /// Offset of the type code.
        offset: usize,
    },
    /// A boolean byte is neither 0 nor 1.
    #[error("{frame} frame field `{field}` at byte {offset} is {value}, expected 0 or 1")]
    BadBool {
        /// Frame type name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
        /// Offset of the byte.
        offset: usize,
        /// The byte found.
        value: u8,
    },
}

/// Errors of [`crate::ingest::IngestClient`].
///
/// After any error other than [`ClientError::BatchTooLarge`] and [`ClientError::TooLong`] the
/// connection's state is unknown: drop the client and reconnect, re-sending unacked batches.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed.
    #[error("ingest socket error")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that are not a valid frame.
    #[error("server sent an invalid frame")]
    Decode(#[from] DecodeError),
    /// The server sent an Error frame; it closes the connection after one.
    #[error("server error {code:?} (seq {seq}): {message}")]
    Server {
        /// Error code.
        code: ErrorCode,
        /// Sequence number of the batch concerned, 0 when not about a batch.
        seq: u64,
        /// Server's explanation.
        message: String,
    },
    /// The server sent a frame the protocol does not allow at this point.
    #[error("protocol violation: server sent {found} while the client expected {expected}")]
    Unexpected {
        /// What the client was waiting for.
        expected: &'static str,
        /// Type name of the frame received.
        found: &'static str,
    },
    /// The server acknowledged a sequence number other than the oldest unacked one.
    #[error("protocol violation: server acked seq {found}, expected {expected:?}")]
    AckOutOfOrder {
        /// The oldest unacked sequence number, if any.
        expected: Option<u64>,
        /// The sequence number acked.
        found: u64,
    },
    /// The server closed the connection (end of stream or a Close frame).
    #[error("server closed the connection")]
    ConnectionClosed,
    /// The TLS handshake failed (wrong CA, a server without TLS, a refused client
    /// certificate); the message says what rustls found and the likely cause.
    #[error("{0}")]
    Tls(String),
    /// A batch is larger than the server accepts; nothing was sent.
    #[error("batch of {bytes} bytes exceeds the server's limit of {max} bytes")]
    BatchTooLarge {
        /// Encoded batch size.
        bytes: usize,
        /// Largest batch the server accepts.
        max: usize,
    },
    /// An idempotent producer has used all 2^32 - 1 batch sequence numbers; connect again
    /// for a new producer id.
    #[error("the producer has used every batch sequence number; connect again")]
    SequencesExhausted,
    /// A name or schema does not fit the protocol's u16 length fields; nothing was sent.
    #[error("{what} is {len} long, the protocol allows at most {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length (bytes for names, fields for a schema).
        len: usize,
        /// The protocol's limit.
        max: usize,
    },
}
