//! Batches: one contiguous buffer of rkyv-archived rows behind a 64-byte header.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! 0   magic "WIRB"        4   crc32c of bytes [16, end)   8   base_offset u64
//! 16  version u16         18  flags u16                    20  stream u32
//! 24  partition u32       28  row_count u32                32  payload_len u32
//! 36  sequence u32        40  min_event_time i64           48  max_event_time i64
//! 56  producer u64        64  payload: archived rows, then row_count u32 row-end offsets
//! ```
//!
//! `producer` and `sequence` identify a batch from an idempotent producer (docs/protocol.md):
//! the producer id in the low 48 bits, its epoch in the high 16, and the batch's sequence
//! number. Both are 0 for every other batch. They are checksummed like the rest of the header,
//! so they travel into the WAL intact and the de-duplication state is recovered from it.
//!
//! The checksum leaves out the base offset (as Kafka's record batches do) so a log can assign
//! offsets without re-hashing the payload; the log checks offset continuity itself.
//!
//! # Safety contract
//! [`BatchView::row`] reads rows with `rkyv::access_unchecked`. That is sound because a
//! `BatchView` exists only over bytes that a [`BatchBuilder`] produced in this process (the
//! [`Batch`] type keeps them private and immutable apart from the base offset, which is outside
//! every row), or that [`BatchView::verify`] checked in full: header, checksum, row-end table
//! and every row with [`check_archived_row`], which accepts only rows that rkyv's bytecheck
//! validator accepts too.
#![allow(unsafe_code)]

use crate::error::{Error, Result};
use crate::record::row::{
    archived_row_len, boxed, check_archived_row, encode_row, fixed_width_cell, relative,
    ArchivedRow, AsValueRef, ValueRef, ARCHIVED_ROOT_BYTES, ARCHIVED_VALUE_BYTES, TAG_BYTES,
    TAG_STR,
};
use crate::record::schema::Schema;

/// Identifies a stream (a named source or an intermediate edge of a pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u32);

/// Identifies a partition of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PartitionId(pub u32);

/// The four bytes every batch starts with.
pub const BATCH_MAGIC: [u8; 4] = *b"WIRB";
/// The format version this code writes and reads.
pub const BATCH_VERSION: u16 = 1;
/// Size of the fixed batch header in bytes.
pub const HEADER_LEN: usize = 64;
/// Largest encoded batch (header included) the format accepts.
pub const BATCH_BYTES_MAX: usize = 64 << 20;
/// Event-time bounds of a batch whose rows carry no event time.
pub const NO_EVENT_TIME: (i64, i64) = (i64::MAX, i64::MIN);

const CRC_START: usize = 16;

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// CRC32C of bytes `[16, end)`.
    pub crc: u32,
    /// Log offset of the first row; rows take offsets `base_offset..base_offset + row_count`.
    pub base_offset: u64,
    /// Format version.
    pub version: u16,
    /// Reserved flag bits, zero in version 1.
    pub flags: u16,
    /// Stream the batch belongs to.
    pub stream: StreamId,
    /// Partition the batch belongs to.
    pub partition: PartitionId,
    /// Number of rows.
    pub row_count: u32,
    /// Bytes after the header.
    pub payload_len: u32,
    /// Smallest event time of any row, `i64::MAX` when none has one.
    pub min_event_time: i64,
    /// Largest event time of any row, `i64::MIN` when none has one.
    pub max_event_time: i64,
    /// Idempotent producer id (low 48 bits) and epoch (high 16 bits); 0 when none.
    pub producer: u64,
    /// The producer's sequence number of this batch (from 1); 0 when no producer.
    pub sequence: u32,
}

/// Largest idempotent producer id: it takes the low 48 bits of the header's `producer` field.
pub const PRODUCER_ID_MAX: u64 = (1 << 48) - 1;

const _: () = assert!(HEADER_LEN == 64);

impl BatchHeader {
    /// Decodes and sanity-checks a header from the start of `bytes` without touching the
    /// payload. Use it to walk a log; use [`BatchView::verify`] before reading rows.
    pub fn decode(bytes: &[u8]) -> Result<BatchHeader> {
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(bytes.len(), "truncated batch header"));
        }
        if bytes[0..4] != BATCH_MAGIC {
            return Err(corrupt(0, "bad magic"));
        }
        let header = BatchHeader {
            crc: le_u32(bytes, 4),
            base_offset: le_u64(bytes, 8),
            version: le_u16(bytes, 16),
            flags: le_u16(bytes, 18),
            stream: StreamId(le_u32(bytes, 20)),
            partition: PartitionId(le_u32(bytes, 24)),
            row_count: le_u32(bytes, 28),
            payload_len: le_u32(bytes, 32),
            min_event_time: le_u64(bytes, 40) as i64,
            max_event_time: le_u64(bytes, 48) as i64,
            producer: le_u64(bytes, 56),
            sequence: le_u32(bytes, 36),
        };
        if header.version != BATCH_VERSION {
            return Err(corrupt(
                16,
                format!("unsupported batch version {}", header.version),
            ));
        }
        if header.total_len() > BATCH_BYTES_MAX {
            return Err(corrupt(
                32,
                format!("payload length {} too large", header.payload_len),
            ));
        }
        if (header.row_count as usize) * 4 > header.payload_len as usize {
            return Err(corrupt(28, "row count larger than the payload allows"));
        }
        if header
            .base_offset
            .checked_add(u64::from(header.row_count))
            .is_none()
        {
            return Err(corrupt(8, "base offset plus row count overflows"));
        }
        Ok(header)
    }

    /// Header plus payload length in bytes.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// The offset after this batch's last row.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.row_count)
    }

    /// The idempotent producer id, 0 when the batch has none.
    pub fn producer_id(&self) -> u64 {
        self.producer & PRODUCER_ID_MAX
    }

    /// The idempotent producer's epoch.
    pub fn producer_epoch(&self) -> u16 {
        (self.producer >> 48) as u16
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&BATCH_MAGIC);
        out[4..8].copy_from_slice(&self.crc.to_le_bytes());
        out[8..16].copy_from_slice(&self.base_offset.to_le_bytes());
        out[16..18].copy_from_slice(&self.version.to_le_bytes());
        out[18..20].copy_from_slice(&self.flags.to_le_bytes());
        out[20..24].copy_from_slice(&self.stream.0.to_le_bytes());
        out[24..28].copy_from_slice(&self.partition.0.to_le_bytes());
        out[28..32].copy_from_slice(&self.row_count.to_le_bytes());
        out[32..36].copy_from_slice(&self.payload_len.to_le_bytes());
        out[36..40].copy_from_slice(&self.sequence.to_le_bytes());
        out[40..48].copy_from_slice(&self.min_event_time.to_le_bytes());
        out[48..56].copy_from_slice(&self.max_event_time.to_le_bytes());
        out[56..64].copy_from_slice(&self.producer.to_le_bytes());
    }
}

/// Writes an idempotent producer's id, epoch and sequence number into the header of the
/// encoded batch `bytes` and recomputes its checksum.
///
/// # Panics
/// If `bytes` is shorter than a header or `producer_id` exceeds [`PRODUCER_ID_MAX`].
pub fn stamp_producer(bytes: &mut [u8], producer_id: u64, epoch: u16, sequence: u32) {
    assert!(producer_id <= PRODUCER_ID_MAX, "producer id above 48 bits");
    let producer = producer_id | (u64::from(epoch) << 48);
    bytes[36..40].copy_from_slice(&sequence.to_le_bytes());
    bytes[56..64].copy_from_slice(&producer.to_le_bytes());
    let crc = checksum(bytes);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// CRC32C over the checksummed part of an encoded batch (everything from byte 16).
pub fn checksum(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// An owned, well-formed batch: built by a [`BatchBuilder`] or verified from outside bytes.
///
/// A batch that stays in the process needs no checksum, so [`BatchBuilder::finish_local`]
/// leaves it unsealed (checksum field zero) and whatever takes the bytes out of the process (a
/// log append, the exchange) seals it first with [`Batch::seal`]; sealing a sealed batch costs
/// nothing. [`Batch::as_bytes`] asserts, in debug builds, that the batch is sealed.
#[derive(Clone, Eq)]
pub struct Batch {
    bytes: Vec<u8>,
    header: BatchHeader,
    sealed: bool,
}

/// Equal rows and header; the checksum is compared only when both are sealed.
impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        let (ours, theirs) = (&self.bytes, &other.bytes);
        if self.sealed && other.sealed {
            return self.header == other.header && ours == theirs;
        }
        let header = |batch: &Batch| BatchHeader {
            crc: 0,
            ..batch.header
        };
        header(self) == header(other)
            && ours.len() == theirs.len()
            && ours[..4] == theirs[..4]
            && ours[8..] == theirs[8..]
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Verifies outside bytes in full (see [`BatchView::verify`]) and takes ownership.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Batch> {
        let header = BatchView::verify(&bytes)?.header;
        Ok(Batch {
            bytes,
            header,
            sealed: true,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The encoded bytes, as written to the log or the network. The batch must be sealed
    /// ([`Batch::seal`]); debug builds assert it.
    pub fn as_bytes(&self) -> &[u8] {
        debug_assert!(self.sealed, "bytes of an unsealed batch: seal() it first");
        &self.bytes
    }

    /// Size of the encoded batch in bytes, header included.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// Sets the checksum if [`BatchBuilder::finish_local`] left it out: call before the bytes
    /// leave the process.
    pub fn seal(&mut self) {
        if !self.sealed {
            self.header.crc = checksum(&self.bytes);
            self.bytes[4..8].copy_from_slice(&self.header.crc.to_le_bytes());
            self.sealed = true;
        }
    }

    /// Whether the checksum is set.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Seals the batch and returns its bytes, for writing them out.
    pub fn sealed_bytes(&mut self) -> &[u8] {
        self.seal();
        &self.bytes
    }

    /// Gives up the encoded bytes, sealed.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.seal();
        std::mem::take(&mut self.bytes)
    }

    /// Number of rows.
    pub fn row_count(&self) -> usize {
        self.header.row_count as usize
    }

    /// Sets the log offset of the first row. The checksum does not cover it.
    pub fn set_base_offset(&mut self, base_offset: u64) {
        self.header.base_offset = base_offset;
        self.bytes[8..16].copy_from_slice(&base_offset.to_le_bytes());
    }

    /// A zero-copy view for reading rows.
    pub fn view(&self) -> BatchView<'_> {
        BatchView {
            bytes: &self.bytes,
            header: self.header,
            sealed: self.sealed,
        }
    }
}

/// Where a row's value array starts, from its root (the row's last 8 bytes); `None` when the
/// root does not point inside the row.
fn value_array_pos(row: &[u8]) -> Option<usize> {
    let root_pos = row.len().checked_sub(ARCHIVED_ROOT_BYTES)?;
    let relative = i32::from_le_bytes(row.get(root_pos..root_pos + 4)?.try_into().ok()?);
    let len = u32::from_le_bytes(row.get(root_pos + 4..root_pos + 8)?.try_into().ok()?);
    let array_pos = usize::try_from(root_pos as i64 + i64::from(relative)).ok()?;
    let array_end = array_pos.checked_add(len as usize * ARCHIVED_VALUE_BYTES)?;
    (array_end <= root_pos).then_some(array_pos)
}

/// Appends `row` to `out` with the cells `keep` marks `false` as NULL and only the kept
/// out-of-line payloads. `row` is laid out as `encode_row` lays rows out, which is all that
/// `check_archived_row` accepts: payloads first, in field order and back to back, then the
/// value array, then the root. `None` (with `out` partly written) if it is not.
fn copy_masked(row: &[u8], keep: &[bool], out: &mut Vec<u8>) -> Option<()> {
    let array_pos = value_array_pos(row)?;
    let root_pos = row.len() - ARCHIVED_ROOT_BYTES;
    let cells = row.get(array_pos..root_pos)?;
    let kept = |field: usize| keep.get(field).copied().unwrap_or(true);
    let boxed_len = |cell: &[u8]| u32::from_le_bytes([cell[5], cell[6], cell[7], cell[8]]);
    out.reserve(row.len());
    let start = out.len();
    let mut source = 0;
    for (field, cell) in cells.chunks_exact(ARCHIVED_VALUE_BYTES).enumerate() {
        if cell[0] == TAG_STR || cell[0] == TAG_BYTES {
            let end = source + boxed_len(cell) as usize;
            if kept(field) {
                out.extend_from_slice(row.get(source..end)?);
            }
            source = end;
        }
    }
    // The cells as they are, then NULL over the dropped ones and new offsets for the kept
    // payloads, which moved.
    let new_array_pos = out.len() - start;
    out.extend_from_slice(cells);
    let new_cells = &mut out[start + new_array_pos..];
    let mut payload_pos = 0;
    for (field, cell) in new_cells.chunks_exact_mut(ARCHIVED_VALUE_BYTES).enumerate() {
        if !kept(field) {
            cell.fill(0);
        } else if cell[0] == TAG_STR || cell[0] == TAG_BYTES {
            let len = boxed_len(cell) as usize;
            let value_pos = new_array_pos + field * ARCHIVED_VALUE_BYTES;
            cell[1..].copy_from_slice(&boxed(payload_pos, value_pos + 1, len));
            payload_pos += len;
        }
    }
    out.extend_from_slice(&relative(new_array_pos, out.len() - start).to_le_bytes());
    out.extend_from_slice(&row[root_pos + 4..]);
    Some(())
}

impl Drop for Batch {
    fn drop(&mut self) {
        spare::put(std::mem::take(&mut self.bytes));
    }
}

/// Buffers of dropped batches, kept per thread for the next builder on that thread.
///
/// A data core builds and drops batches at a steady rate; reusing their buffers keeps each core
/// on memory it has already faulted in, instead of asking the allocator (and, after a purge,
/// the kernel) for fresh pages for every batch.
mod spare {
    use std::cell::RefCell;

    /// Buffers kept per thread at most.
    const COUNT_MAX: usize = 32;
    /// Bytes of buffers kept per thread at most: a core that drops the batches other cores
    /// built (an exchange) keeps more than it takes. (8 MiB kept q3 on two cores 5 MiB
    /// larger and one core no faster.)
    const KEPT_BYTES_MAX: usize = 2 << 20;
    /// Buffers smaller than this are not worth keeping; larger ones would pin too much memory.
    pub(super) const BYTES_MIN: usize = 16 << 10;
    const BYTES_MAX: usize = 4 << 20;

    #[derive(Default)]
    struct Pool {
        buffers: Vec<Vec<u8>>,
        /// The capacities of `buffers`, summed.
        bytes: usize,
    }

    thread_local! {
        static SPARE: RefCell<Pool> = RefCell::new(Pool::default());
    }

    /// An empty buffer of at least `capacity` bytes: the smallest spare one that fits and is
    /// at most four times as large, or a fresh one. Any fitting buffer used to do, so the
    /// small batches an exchange splits off went out in a source's 1 MiB buffers and kept
    /// them, and the queues between two cores held 70 MB (q4 on two cores, 2026-12-07).
    pub(super) fn take(capacity: usize) -> Vec<u8> {
        let largest = capacity.max(BYTES_MIN).saturating_mul(4);
        let reused = SPARE
            .try_with(|spare| {
                let mut spare = spare.borrow_mut();
                let (index, _) = spare
                    .buffers
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| (capacity..=largest).contains(&b.capacity()))
                    .min_by_key(|(_, b)| b.capacity())?;
                let buf = spare.buffers.swap_remove(index);
                spare.bytes -= buf.capacity();
                Some(buf)
            })
            .ok()
            .flatten();
        match reused {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Keeps `buf` for reuse on this thread if it is worth it and the pool has room.
    pub(super) fn put(buf: Vec<u8>) {
        let bytes = buf.capacity();
        if !(BYTES_MIN..=BYTES_MAX).contains(&bytes) {
            return;
        }
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.buffers.len() < COUNT_MAX && spare.bytes + bytes <= KEPT_BYTES_MAX {
                spare.bytes += bytes;
                spare.buffers.push(buf);
            }
        });
    }
}

/// A read-only view of a well-formed batch; rows are read in place.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
    /// Whether the checksum field holds the checksum (see [`Batch::seal`]).
    sealed: bool,
}

impl<'a> BatchView<'a> {
    /// Checks bytes from outside the process: header, length, checksum, the row-end table and
    /// every row with rkyv's validator. Extra bytes after the batch are an error; use
    /// [`BatchHeader::decode`] first to find a batch's length inside a larger buffer.
    ///
    /// ```
    /// use wire_core::{BatchBuilder, BatchView, PartitionId, StreamId, ValueRef};
    /// let mut builder = BatchBuilder::new(StreamId(1), PartitionId(0));
    /// builder.push(&[ValueRef::I64(7), ValueRef::Str("seven")]).unwrap();
    /// let batch = builder.finish();
    /// let view = BatchView::verify(batch.as_bytes()).unwrap();
    /// assert_eq!(view.row(0).get(1).and_then(|v| v.as_str()), Some("seven"));
    /// let mut bad = batch.as_bytes().to_vec();
    /// bad[70] ^= 1;
    /// assert!(BatchView::verify(&bad).is_err());
    /// ```
    pub fn verify(bytes: &'a [u8]) -> Result<BatchView<'a>> {
        let header = BatchHeader::decode(bytes)?;
        if bytes.len() != header.total_len() {
            let reason = format!(
                "batch is {} bytes, header says {}",
                bytes.len(),
                header.total_len()
            );
            return Err(corrupt(bytes.len().min(header.total_len()), reason));
        }
        let computed = checksum(bytes);
        if computed != header.crc {
            return Err(Error::ChecksumMismatch {
                stored: header.crc,
                computed,
            });
        }
        let view = BatchView {
            bytes,
            header,
            sealed: true,
        };
        view.verify_rows()?;
        Ok(view)
    }

    /// Re-creates a view over bytes that already passed [`BatchView::verify`], checking only
    /// the header. Lets a reader of immutable storage (a sealed, memory-mapped segment) verify
    /// each batch once, not on every read.
    ///
    /// # Safety
    /// `bytes` must be exactly the bytes of a batch that passed `verify` earlier, unchanged
    /// since, except for the base offset field (bytes 8..16), which rows never read.
    pub unsafe fn from_verified_bytes(bytes: &'a [u8]) -> Result<BatchView<'a>> {
        let header = BatchHeader::decode(bytes)?;
        if bytes.len() != header.total_len() {
            return Err(corrupt(
                bytes.len().min(header.total_len()),
                "verified batch changed length",
            ));
        }
        Ok(BatchView {
            bytes,
            header,
            sealed: true,
        })
    }

    fn verify_rows(&self) -> Result<()> {
        let rows_len = self.rows_len();
        let rows = &self.bytes[HEADER_LEN..HEADER_LEN + rows_len];
        let ends = &self.bytes[HEADER_LEN + rows_len..];
        let mut start = 0usize;
        for (index, end) in ends.chunks_exact(4).enumerate() {
            let end = u32::from_le_bytes([end[0], end[1], end[2], end[3]]) as usize;
            if end < start || end > rows_len {
                let at = HEADER_LEN + rows_len + index * 4;
                return Err(corrupt(
                    at,
                    format!("row {index} end offset {end} out of range"),
                ));
            }
            if let Err(fault) = check_archived_row(&rows[start..end]) {
                return Err(corrupt(
                    HEADER_LEN + start + fault.at,
                    format!("row {index} invalid: {}", fault.what),
                ));
            }
            start = end;
        }
        if start != rows_len {
            return Err(corrupt(HEADER_LEN + start, "bytes after the last row"));
        }
        Ok(())
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The encoded bytes; the batch must be sealed ([`Batch::seal`]), as debug builds assert.
    pub fn as_bytes(&self) -> &'a [u8] {
        debug_assert!(self.sealed, "bytes of an unsealed batch: seal() it first");
        self.bytes
    }

    /// Number of rows.
    pub fn row_count(&self) -> usize {
        self.header.row_count as usize
    }

    /// The archived bytes of row `index`. Rows are self-contained (all offsets relative), so
    /// these bytes can be copied into another batch unchanged. Panics if out of range.
    pub fn row_bytes(&self, index: usize) -> &'a [u8] {
        assert!(
            index < self.row_count(),
            "row {index} out of {}",
            self.row_count()
        );
        let start = if index == 0 {
            0
        } else {
            self.row_end(index - 1)
        };
        let end = self.row_end(index);
        &self.bytes[HEADER_LEN + start..HEADER_LEN + end]
    }

    /// Row `index`, read in place. Panics if `index >= row_count()`.
    pub fn row(&self, index: usize) -> &'a ArchivedRow {
        let row = self.row_bytes(index);
        // SAFETY: `self` was built from builder output or passed `verify`, which ran rkyv's
        // validator on exactly this slice (see the module's safety contract).
        unsafe { rkyv::access_unchecked::<ArchivedRow>(row) }
    }

    /// Iterates the rows in order, in place.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &'a ArchivedRow> + 'a {
        let view = *self;
        (0..view.row_count()).map(move |index| view.row(index))
    }

    /// Copies the batch into an owned [`Batch`].
    pub fn to_batch(&self) -> Batch {
        let mut bytes = spare::take(self.bytes.len());
        bytes.extend_from_slice(self.bytes);
        Batch {
            bytes,
            header: self.header,
            sealed: self.sealed,
        }
    }

    /// Checks every row against `schema`: arity, types and nullability.
    pub fn check_schema(&self, schema: &Schema) -> Result<()> {
        for (row_index, row) in self.rows().enumerate() {
            check_row(row_index, row, schema)?;
        }
        Ok(())
    }

    fn rows_len(&self) -> usize {
        self.header.payload_len as usize - self.row_count() * 4
    }

    #[inline]
    fn row_end(&self, index: usize) -> usize {
        le_u32(self.bytes, HEADER_LEN + self.rows_len() + index * 4) as usize
    }
}

fn check_row(row_index: usize, row: &ArchivedRow, schema: &Schema) -> Result<()> {
    if row.len() != schema.len() {
        return Err(Error::ArityMismatch {
            row: row_index,
            expected: schema.len(),
            found: row.len(),
        });
    }
    for (index, (value, field)) in row.values().iter().zip(schema.fields()).enumerate() {
        let fits = match value.data_type() {
            None => field.nullable,
            Some(data_type) => data_type == field.data_type,
        };
        if !fits {
            return Err(Error::SchemaMismatch {
                row: row_index,
                field: index,
                name: field.name.clone(),
                expected: field.data_type.to_string(),
                found: value.data_type().map_or("null", |t| t.name()).to_string(),
            });
        }
    }
    Ok(())
}

/// An owned copy of one row's archived bytes, read back in place: what stateful operators
/// keep. It can only be made from a row of a [`BatchView`] (built in-process or verified), so
/// reading it needs no validation.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedRow {
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for OwnedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OwnedRow")
            .field(&self.row().to_values())
            .finish()
    }
}

impl OwnedRow {
    /// A copy of row `index` of `view`.
    ///
    /// ```
    /// use wire_core::{BatchBuilder, OwnedRow, PartitionId, StreamId, ValueRef};
    /// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    /// builder.push(&[ValueRef::I64(7), ValueRef::Str("seven")]).unwrap();
    /// let batch = builder.finish();
    /// let kept = OwnedRow::copy_of(&batch.view(), 0);
    /// drop(batch);
    /// assert_eq!(kept.row().get(1).and_then(|v| v.as_str()), Some("seven"));
    /// ```
    pub fn copy_of(view: &BatchView<'_>, index: usize) -> OwnedRow {
        OwnedRow {
            bytes: view.row_bytes(index).into(),
        }
    }

    /// `values` encoded as one row.
    ///
    /// ```
    /// use wire_core::{OwnedRow, ValueRef};
    /// let kept = OwnedRow::encode(&[ValueRef::I64(7), ValueRef::Null]);
    /// assert_eq!(kept.row().get(0).and_then(|v| v.as_i64()), Some(7));
    /// ```
    pub fn encode<V: AsValueRef>(values: &[V]) -> OwnedRow {
        let mut bytes = Vec::with_capacity(archived_row_len(values));
        encode_row(values, &mut bytes);
        OwnedRow {
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// The row, read in place.
    pub fn row(&self) -> &ArchivedRow {
        // SAFETY: the bytes are an exact copy of one row of a `BatchView`, which was built by
        // `BatchBuilder` or passed `verify` (rkyv's validator over exactly these bytes), or
        // were written by `encode_row`, the encoder `BatchBuilder` uses; rows are
        // self-contained and the format is unaligned, so the bytes are valid at any address.
        unsafe { rkyv::access_unchecked::<ArchivedRow>(&self.bytes) }
    }

    /// Bytes held.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Appends rows into one contiguous buffer and seals it into a [`Batch`].
///
/// Reuses its buffers between batches: after warm-up, pushing a row does not allocate. Rows
/// are written by [`encode_row`], a direct encoder of rkyv's archived layout.
pub struct BatchBuilder {
    buf: Vec<u8>,
    ends: Vec<u32>,
    stream: StreamId,
    partition: PartitionId,
    min_event_time: i64,
    max_event_time: i64,
}

impl BatchBuilder {
    /// A builder for batches of `stream`/`partition`.
    pub fn new(stream: StreamId, partition: PartitionId) -> BatchBuilder {
        BatchBuilder::with_capacity(stream, partition, 4096)
    }

    /// A builder whose buffer starts with room for `bytes` bytes.
    pub fn with_capacity(stream: StreamId, partition: PartitionId, bytes: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            ends: Vec::new(),
            stream,
            partition,
            min_event_time: NO_EVENT_TIME.0,
            max_event_time: NO_EVENT_TIME.1,
        }
    }

    /// Appends a row without an event time.
    pub fn push<V: AsValueRef>(&mut self, values: &[V]) -> Result<()> {
        let projected = self.encoded_len() + archived_row_len(values) + 4;
        if projected > BATCH_BYTES_MAX {
            return Err(Error::BatchTooLarge {
                bytes: projected,
                limit: BATCH_BYTES_MAX,
            });
        }
        encode_row(values, &mut self.buf);
        self.ends.push((self.buf.len() - HEADER_LEN) as u32);
        Ok(())
    }

    /// Appends a row and widens the batch's event-time bounds by `event_time_ms`.
    pub fn push_with_time<V: AsValueRef>(
        &mut self,
        values: &[V],
        event_time_ms: i64,
    ) -> Result<()> {
        self.push(values)?;
        self.widen_event_time(event_time_ms, event_time_ms);
        Ok(())
    }

    /// Appends a copy of row `index` of `view` with the fixed-width values in `patches`
    /// (`(field, value)`) written over those fields' cells, without re-encoding the rest.
    /// Returns `false`, appending nothing, when the row cannot be patched in place: a patch is
    /// a string or bytes, or the value it replaces is (their bytes live outside the cell).
    pub fn push_row_patched(
        &mut self,
        view: &BatchView<'_>,
        index: usize,
        patches: &[(usize, ValueRef<'_>)],
    ) -> Result<bool> {
        let row = view.row_bytes(index);
        let Some(array_pos) = value_array_pos(row) else {
            return Ok(false);
        };
        let cells = patches.iter().map(|(field, value)| {
            let pos = array_pos + field * ARCHIVED_VALUE_BYTES;
            let replaced = *row.get(pos)?;
            let cell = fixed_width_cell(value)?;
            (replaced != TAG_STR && replaced != TAG_BYTES).then_some((pos, cell))
        });
        let start = self.buf.len();
        self.push_row_of(view, index)?;
        for cell in cells {
            let Some((pos, cell)) = cell else {
                self.buf.truncate(start);
                self.ends.pop();
                return Ok(false);
            };
            self.buf[start + pos..start + pos + ARCHIVED_VALUE_BYTES].copy_from_slice(&cell);
        }
        Ok(true)
    }

    /// Appends a copy of row `index` of `view`, byte for byte (no re-encoding).
    pub fn push_row_of(&mut self, view: &BatchView<'_>, index: usize) -> Result<()> {
        let row = view.row_bytes(index);
        let projected = self.encoded_len() + row.len() + 4;
        if projected > BATCH_BYTES_MAX {
            return Err(Error::BatchTooLarge {
                bytes: projected,
                limit: BATCH_BYTES_MAX,
            });
        }
        self.buf.extend_from_slice(row);
        self.ends.push((self.buf.len() - HEADER_LEN) as u32);
        Ok(())
    }

    /// Appends a copy of row `index` of `view` with the fields that `keep` marks `false`
    /// written as NULL (fields past `keep`'s end are kept). Cells are copied as they are and
    /// only the kept strings' and bytes' payloads are carried, so an exchange that prunes
    /// costs no more than one that copies whole rows.
    pub fn push_row_masked(
        &mut self,
        view: &BatchView<'_>,
        index: usize,
        keep: &[bool],
    ) -> Result<()> {
        let row = view.row_bytes(index);
        let start = self.buf.len();
        if copy_masked(row, keep, &mut self.buf).is_none() {
            self.buf.truncate(start);
            let at = HEADER_LEN
                + index
                    .checked_sub(1)
                    .map_or(0, |before| view.row_end(before));
            return Err(corrupt(at, "row not laid out as checked rows are"));
        }
        let projected = self.encoded_len() + 4;
        if projected > BATCH_BYTES_MAX {
            self.buf.truncate(start);
            return Err(Error::BatchTooLarge {
                bytes: projected,
                limit: BATCH_BYTES_MAX,
            });
        }
        self.ends.push((self.buf.len() - HEADER_LEN) as u32);
        Ok(())
    }

    /// Appends a kept row, byte for byte.
    pub fn push_owned(&mut self, row: &OwnedRow) -> Result<()> {
        let projected = self.encoded_len() + row.bytes.len() + 4;
        if projected > BATCH_BYTES_MAX {
            return Err(Error::BatchTooLarge {
                bytes: projected,
                limit: BATCH_BYTES_MAX,
            });
        }
        self.buf.extend_from_slice(&row.bytes);
        self.ends.push((self.buf.len() - HEADER_LEN) as u32);
        Ok(())
    }

    /// Widens the batch's event-time bounds to include `[min_ms, max_ms]`; operators that
    /// copy rows carry their input batch's bounds this way.
    pub fn widen_event_time(&mut self, min_ms: i64, max_ms: i64) {
        self.min_event_time = self.min_event_time.min(min_ms);
        self.max_event_time = self.max_event_time.max(max_ms);
    }

    /// Sets the stream and partition of the batches built from now on.
    pub fn set_origin(&mut self, stream: StreamId, partition: PartitionId) {
        self.stream = stream;
        self.partition = partition;
    }

    /// Rows pushed since the last `finish`.
    pub fn row_count(&self) -> usize {
        self.ends.len()
    }

    /// Whether no row was pushed since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Size the batch would have if finished now, header included.
    pub fn encoded_len(&self) -> usize {
        self.buf.len() + (self.ends.len() + 1) * 4
    }

    /// Seals the pushed rows into a batch with base offset 0 and starts a new one.
    pub fn finish(&mut self) -> Batch {
        let mut batch = self.finish_local();
        batch.seal();
        batch
    }

    /// Like [`BatchBuilder::finish`], without the checksum: for a batch that stays in this
    /// process, where nothing reads the checksum. Whatever takes it out seals it first.
    pub fn finish_local(&mut self) -> Batch {
        // The next batch gets room for one like this (rows and row-end table, rounded up to a
        // power of two so that similar batches ask for the same size): asking for this
        // buffer's capacity instead let capacities ratchet up through the pool.
        let next = (self.buf.len() + self.ends.len() * 4)
            .next_power_of_two()
            .max(spare::BYTES_MIN);
        let mut bytes = std::mem::replace(&mut self.buf, spare::take(next));
        self.buf.resize(HEADER_LEN, 0);
        let row_count = self.ends.len() as u32;
        bytes.reserve(self.ends.len() * 4);
        for end in self.ends.drain(..) {
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        let header = BatchHeader {
            crc: 0,
            base_offset: 0,
            version: BATCH_VERSION,
            flags: 0,
            stream: self.stream,
            partition: self.partition,
            row_count,
            payload_len: (bytes.len() - HEADER_LEN) as u32,
            min_event_time: std::mem::replace(&mut self.min_event_time, NO_EVENT_TIME.0),
            max_event_time: std::mem::replace(&mut self.max_event_time, NO_EVENT_TIME.1),
            producer: 0,
            sequence: 0,
        };
        header.encode(&mut bytes[..HEADER_LEN]);
        Batch {
            bytes,
            header,
            sealed: false,
        }
    }
}

fn corrupt(position: usize, reason: impl Into<String>) -> Error {
    Error::CorruptBatch {
        position,
        reason: reason.into(),
    }
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

#[inline]
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests;
