//! The exchange protocol (node to node) as a pure codec: what one task instance sends another
//! on a different node, in the order it sent it.
//!
//! One TCP connection carries one *stream*: the rows, watermarks, barriers and end of one
//! producing task instance for one consuming instance (a pipeline's `key_by` edge between two
//! slots on different nodes). The producer opens it with a [`Hello`] naming the stream; from
//! then on it sends [`Frame::Batch`] (a batch's archived bytes, exactly as the batch holds
//! them: nothing is re-encoded), [`Frame::Watermark`], [`Frame::Idle`], [`Frame::Barrier`] and
//! finally [`Frame::End`]. The consumer only ever sends [`Frame::Credit`] (one per batch it may
//! receive) or [`Frame::Refuse`] (then it closes). A producer sends a batch only while it holds
//! a credit, so a slow consumer slows its producers across nodes as a full queue does on one.
//!
//! Every frame is a little-endian `u32` length (of what follows it), a type byte and the body.
//! [`decode`] never panics and never allocates more than the bytes it was given, whatever they
//! are; it is fuzzed by `fuzz/fuzz_targets/exchange_decode.rs`. A receiver that reads a frame
//! in two steps (the 5-byte head, then the body straight into the batch's own buffer) uses
//! [`decode_head`] and [`decode_body`]. The layout is specified in `docs/protocol.md`.

/// The four bytes a Hello body starts with.
pub const MAGIC: [u8; 4] = *b"WIRX";
/// The exchange protocol version this code speaks.
pub const VERSION: u16 = 1;
/// Bytes in front of every body: the length prefix and the type byte.
pub const HEAD_LEN: usize = 5;
/// Largest length prefix: a batch of at most 64 MiB plus its type byte.
pub const FRAME_LEN_MAX: u32 = (64 << 20) + 1;
/// Largest pipeline name a Hello carries.
pub const NAME_BYTES_MAX: usize = u16::MAX as usize;

/// Which stream a connection carries: a producing task instance's output edge towards one
/// consuming slot, in one incarnation (`epoch`) of a pipeline's placement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The pipeline's name.
    pub pipeline: String,
    /// The placement the producer runs under; a connection from another epoch is refused,
    /// which fences producers of an older placement.
    pub epoch: u64,
    /// The producing task (index in the physical graph).
    pub task: u32,
    /// The producing task's output edge.
    pub edge: u32,
    /// The producer's slot.
    pub from: u32,
    /// The consumer's slot.
    pub to: u32,
}

/// One exchange frame; `B` holds a batch's bytes (`Vec<u8>` owned, `&[u8]` borrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<B = Vec<u8>> {
    /// Producer → consumer, first: the protocol version and the stream.
    Hello {
        /// The producer's protocol version.
        version: u16,
        /// The stream.
        stream: StreamKey,
    },
    /// Producer → consumer: a batch's bytes, header included.
    Batch(B),
    /// Producer → consumer: no more rows at or before this event time (ms).
    Watermark(i64),
    /// Producer → consumer: no rows for now; do not hold the watermark back.
    Idle,
    /// Producer → consumer: checkpoint barrier `id`.
    Barrier(u64),
    /// Producer → consumer: no more frames follow.
    End,
    /// Consumer → producer: this many more batches may be sent.
    Credit(u32),
    /// Consumer → producer: the stream is refused, and why; the consumer closes.
    Refuse(String),
}

/// Frame type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// [`Frame::Hello`].
    Hello = 1,
    /// [`Frame::Batch`].
    Batch = 2,
    /// [`Frame::Watermark`].
    Watermark = 3,
    /// [`Frame::Idle`].
    Idle = 4,
    /// [`Frame::Barrier`].
    Barrier = 5,
    /// [`Frame::End`].
    End = 6,
    /// [`Frame::Credit`].
    Credit = 7,
    /// [`Frame::Refuse`].
    Refuse = 8,
}

impl FrameType {
    /// The type of code `byte`, if any.
    pub fn from_u8(byte: u8) -> Option<FrameType> {
        Some(match byte {
            1 => FrameType::Hello,
            2 => FrameType::Batch,
            3 => FrameType::Watermark,
            4 => FrameType::Idle,
            5 => FrameType::Barrier,
            6 => FrameType::End,
            7 => FrameType::Credit,
            8 => FrameType::Refuse,
            _ => return None,
        })
    }

    /// The type's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::Batch => "batch",
            FrameType::Watermark => "watermark",
            FrameType::Idle => "idle",
            FrameType::Barrier => "barrier",
            FrameType::End => "end",
            FrameType::Credit => "credit",
            FrameType::Refuse => "refuse",
        }
    }
}

impl<B> Frame<B> {
    /// The frame's type code.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::Batch(_) => FrameType::Batch,
            Frame::Watermark(_) => FrameType::Watermark,
            Frame::Idle => FrameType::Idle,
            Frame::Barrier(_) => FrameType::Barrier,
            Frame::End => FrameType::End,
            Frame::Credit(_) => FrameType::Credit,
            Frame::Refuse(_) => FrameType::Refuse,
        }
    }
}

impl Frame<&[u8]> {
    /// The same frame owning its bytes.
    pub fn into_owned(self) -> Frame {
        match self {
            Frame::Batch(bytes) => Frame::Batch(bytes.to_vec()),
            Frame::Hello { version, stream } => Frame::Hello { version, stream },
            Frame::Watermark(time) => Frame::Watermark(time),
            Frame::Idle => Frame::Idle,
            Frame::Barrier(id) => Frame::Barrier(id),
            Frame::End => Frame::End,
            Frame::Credit(n) => Frame::Credit(n),
            Frame::Refuse(why) => Frame::Refuse(why),
        }
    }
}

/// Bytes that do not follow the exchange protocol. Offsets count from the first byte of the
/// frame's length prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The length prefix exceeds [`FRAME_LEN_MAX`]; nothing was allocated.
    #[error("exchange frame length {len} at byte 0 exceeds the maximum of {FRAME_LEN_MAX} bytes")]
    FrameTooLong {
        /// The length the prefix claims.
        len: u32,
    },
    /// The length prefix is zero, leaving no room for the type byte.
    #[error("exchange frame length 0 at byte 0 leaves no room for the type byte")]
    EmptyFrame,
    /// The type byte names no frame type.
    #[error("unknown exchange frame type {0} at byte 4")]
    UnknownType(u8),
    /// The frame ends inside a field.
    #[error("exchange {frame} frame ends inside field `{field}` at byte {offset}")]
    Truncated {
        /// Frame type name.
        frame: &'static str,
        /// The field.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
    },
    /// The frame has bytes after its last field.
    #[error("exchange {frame} frame has {count} trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Frame type name.
        frame: &'static str,
        /// The first unread byte.
        offset: usize,
        /// How many are left.
        count: usize,
    },
    /// A Hello does not start with [`MAGIC`].
    #[error("exchange hello frame has magic {0:?} at byte 5, expected \"WIRX\"")]
    BadMagic([u8; 4]),
    /// A string is not UTF-8.
    #[error("exchange {frame} frame field `{field}` at byte {offset} is not valid UTF-8")]
    BadUtf8 {
        /// Frame type name.
        frame: &'static str,
        /// The field.
        field: &'static str,
        /// Where its length prefix starts.
        offset: usize,
    },
}

/// Appends `frame`'s bytes to `out`.
///
/// # Panics
/// If a batch is longer than [`FRAME_LEN_MAX`] allows or a string than [`NAME_BYTES_MAX`]:
/// caller bugs (batches are at most 64 MiB, pipeline names are short).
///
/// ```
/// use wire_net::exchange::{decode, encode, Frame};
/// let mut bytes = Vec::new();
/// encode(&Frame::Barrier::<&[u8]>(7), &mut bytes);
/// assert_eq!(decode(&bytes).unwrap(), Some((Frame::Barrier(7), bytes.len())));
/// ```
pub fn encode<B: AsRef<[u8]>>(frame: &Frame<B>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(frame.frame_type() as u8);
    match frame {
        Frame::Hello { version, stream } => {
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&stream.epoch.to_le_bytes());
            for value in [stream.task, stream.edge, stream.from, stream.to] {
                out.extend_from_slice(&value.to_le_bytes());
            }
            put_str(out, &stream.pipeline);
        }
        Frame::Batch(bytes) => out.extend_from_slice(bytes.as_ref()),
        Frame::Watermark(time) => out.extend_from_slice(&time.to_le_bytes()),
        Frame::Barrier(id) => out.extend_from_slice(&id.to_le_bytes()),
        Frame::Credit(n) => out.extend_from_slice(&n.to_le_bytes()),
        Frame::Refuse(why) => put_str(out, why),
        Frame::Idle | Frame::End => {}
    }
    let len = u32::try_from(out.len() - start - 4)
        .ok()
        .filter(|len| *len <= FRAME_LEN_MAX)
        .expect("exchange frame exceeds FRAME_LEN_MAX");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// The head of a batch frame carrying `batch_len` bytes: write it, then the batch's own bytes
/// (two writes, no copy of the batch).
///
/// # Panics
/// If `batch_len` exceeds what a frame can carry.
pub fn batch_head(batch_len: usize) -> [u8; HEAD_LEN] {
    let len = u32::try_from(batch_len + 1)
        .ok()
        .filter(|len| *len <= FRAME_LEN_MAX)
        .expect("batch exceeds FRAME_LEN_MAX");
    let mut head = [0; HEAD_LEN];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4] = FrameType::Batch as u8;
    head
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).expect("exchange string exceeds 65535 bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Reads a frame's head: its type and the length of its body (which follows the head).
pub fn decode_head(head: [u8; HEAD_LEN]) -> Result<(FrameType, usize), ExchangeError> {
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if len > FRAME_LEN_MAX {
        return Err(ExchangeError::FrameTooLong { len });
    }
    if len == 0 {
        return Err(ExchangeError::EmptyFrame);
    }
    let kind = FrameType::from_u8(head[4]).ok_or(ExchangeError::UnknownType(head[4]))?;
    // At most FRAME_LEN_MAX, which fits a usize on every supported target.
    Ok((kind, len as usize - 1))
}

/// Decodes the body of a frame of type `kind` (the bytes after its head).
pub fn decode_body(kind: FrameType, body: &[u8]) -> Result<Frame<&[u8]>, ExchangeError> {
    let mut reader = Reader {
        body,
        pos: 0,
        frame: kind.name(),
    };
    let frame = match kind {
        FrameType::Batch => return Ok(Frame::Batch(body)),
        FrameType::Hello => decode_hello(&mut reader)?,
        FrameType::Watermark => Frame::Watermark(i64::from_le_bytes(reader.array("time")?)),
        FrameType::Idle => Frame::Idle,
        FrameType::Barrier => Frame::Barrier(u64::from_le_bytes(reader.array("id")?)),
        FrameType::End => Frame::End,
        FrameType::Credit => Frame::Credit(u32::from_le_bytes(reader.array("credits")?)),
        FrameType::Refuse => Frame::Refuse(reader.string("reason")?),
    };
    reader.finish()?;
    Ok(frame)
}

fn decode_hello<'a>(reader: &mut Reader<'a>) -> Result<Frame<&'a [u8]>, ExchangeError> {
    let magic = reader.array::<4>("magic")?;
    if magic != MAGIC {
        return Err(ExchangeError::BadMagic(magic));
    }
    let version = u16::from_le_bytes(reader.array("version")?);
    let epoch = u64::from_le_bytes(reader.array("epoch")?);
    let task = u32::from_le_bytes(reader.array("task")?);
    let edge = u32::from_le_bytes(reader.array("edge")?);
    let from = u32::from_le_bytes(reader.array("from")?);
    let to = u32::from_le_bytes(reader.array("to")?);
    let pipeline = reader.string("pipeline")?;
    let stream = StreamKey {
        pipeline,
        epoch,
        task,
        edge,
        from,
        to,
    };
    Ok(Frame::Hello { version, stream })
}

/// Decodes the frame at the start of `buf`: `Ok(None)` while `buf` holds only part of it, else
/// the frame (a batch borrowing from `buf`) and the bytes it took. Never panics.
pub fn decode_ref(buf: &[u8]) -> Result<Decoded<'_>, ExchangeError> {
    let Some(head) = buf.first_chunk::<HEAD_LEN>() else {
        // A short buffer may already show a bad length prefix; report it as early as a
        // reader of heads would.
        if let Some(prefix) = buf.first_chunk::<4>() {
            let len = u32::from_le_bytes(*prefix);
            if len > FRAME_LEN_MAX {
                return Err(ExchangeError::FrameTooLong { len });
            }
            if len == 0 {
                return Err(ExchangeError::EmptyFrame);
            }
        }
        return Ok(None);
    };
    let (kind, body_len) = decode_head(*head)?;
    let Some(body) = buf.get(HEAD_LEN..HEAD_LEN + body_len) else {
        return Ok(None);
    };
    let frame = decode_body(kind, body).map_err(|err| err.shifted(HEAD_LEN))?;
    Ok(Some((frame, HEAD_LEN + body_len)))
}

/// A decoded frame borrowing from the buffer, and the bytes it took; `None` if incomplete.
pub type Decoded<'a> = Option<(Frame<&'a [u8]>, usize)>;

/// Like [`decode_ref`], the frame owning its bytes.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, ExchangeError> {
    Ok(decode_ref(buf)?.map(|(frame, used)| (frame.into_owned(), used)))
}

impl ExchangeError {
    /// The same error with body offsets turned into frame offsets.
    fn shifted(self, by: usize) -> ExchangeError {
        match self {
            ExchangeError::Truncated {
                frame,
                field,
                offset,
            } => ExchangeError::Truncated {
                frame,
                field,
                offset: offset + by,
            },
            ExchangeError::TrailingBytes {
                frame,
                offset,
                count,
            } => ExchangeError::TrailingBytes {
                frame,
                offset: offset + by,
                count,
            },
            ExchangeError::BadUtf8 {
                frame,
                field,
                offset,
            } => ExchangeError::BadUtf8 {
                frame,
                field,
                offset: offset + by,
            },
            other => other,
        }
    }
}

/// A cursor over a frame body; offsets in its errors count from the body's start (the caller
/// shifts them by the head).
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
    frame: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], ExchangeError> {
        let bytes = self
            .pos
            .checked_add(len)
            .and_then(|end| self.body.get(self.pos..end));
        let bytes = bytes.ok_or(ExchangeError::Truncated {
            frame: self.frame,
            field,
            offset: self.pos,
        })?;
        self.pos += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ExchangeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    fn string(&mut self, field: &'static str) -> Result<String, ExchangeError> {
        let offset = self.pos;
        let len = usize::from(u16::from_le_bytes(self.array(field)?));
        let bytes = self.take(len, field)?;
        let text = std::str::from_utf8(bytes).map_err(|_| ExchangeError::BadUtf8 {
            frame: self.frame,
            field,
            offset,
        })?;
        Ok(text.to_string())
    }

    fn finish(&self) -> Result<(), ExchangeError> {
        let count = self.body.len() - self.pos;
        if count > 0 {
            return Err(ExchangeError::TrailingBytes {
                frame: self.frame,
                offset: self.pos,
                count,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
