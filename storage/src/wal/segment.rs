//! Segment files: naming, the header walk, and sealed segments read through a memory map.
//!
//! A segment is sealed once the log has rolled past it: its file is truncated to its exact
//! length, synced, and never written again, which is what makes mapping it sound.
//!
//! # Safety contract
//! `SealedSegment::map` maps a file only after the log (which holds the directory lock, so no
//! other Wire process writes here) has sealed it. Nothing in this process writes or truncates a
//! sealed file; retention only unlinks it, and the mapping stays valid until its last `Rc`
//! drops. A user editing files in a locked data directory is outside the contract, as it is for
//! every database.
//!
//! The same immutability lets a sealed segment verify each batch once: `verified_end` is the end
//! of the prefix whose batches passed `BatchView::verify`, and batches below it are re-read
//! with `BatchView::from_verified_bytes`.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use wire_core::record::batch::{BatchHeader, BatchView, HEADER_LEN};

use crate::error::{Error, Result};

/// File name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = "wal";

/// A segment's file name: its base offset, zero-padded so names sort like offsets.
pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its base offset.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Sparse map from log offsets to byte positions inside one segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct SparseIndex {
    entries: Vec<(u64, u32)>,
    interval_bytes: u32,
}

impl SparseIndex {
    pub(crate) fn new(interval_bytes: u32) -> SparseIndex {
        SparseIndex {
            entries: Vec::new(),
            interval_bytes: interval_bytes.max(1),
        }
    }

    pub(crate) fn interval(&self) -> u32 {
        self.interval_bytes
    }

    /// Notes that the batch starting at `offset` sits at `position`.
    pub(crate) fn note(&mut self, offset: u64, position: u64) {
        let due = match self.entries.last() {
            None => true,
            Some(&(_, last)) => position >= u64::from(last) + u64::from(self.interval_bytes),
        };
        if due {
            self.entries.push((offset, position as u32));
        }
    }

    /// The position of the last indexed batch at or before `offset` (0 if none).
    pub(crate) fn floor(&self, offset: u64) -> u64 {
        let index = self.entries.partition_point(|&(o, _)| o <= offset);
        if index == 0 {
            0
        } else {
            u64::from(self.entries[index - 1].1)
        }
    }
}

/// What a walk over a segment's bytes found.
pub(crate) struct Walk {
    /// Offset after the last whole batch.
    pub next_offset: u64,
    /// Byte position after the last whole batch.
    pub valid_len: u64,
    /// Why the walk stopped before the end of the bytes, if it did.
    pub stop_reason: Option<String>,
    pub index: SparseIndex,
}

/// Walks batches from the start of `bytes`, checking that offsets continue from `base_offset`.
/// With `verify`, every batch is checked in full (CRC and rows); without, only headers.
pub(crate) fn walk(bytes: &[u8], base_offset: u64, verify: bool, index_interval: u32) -> Walk {
    let mut index = SparseIndex::new(index_interval);
    let mut position = 0usize;
    let mut next_offset = base_offset;
    let stop_reason = loop {
        if position == bytes.len() {
            break None;
        }
        match check_batch_at(bytes, position, next_offset, verify) {
            Ok(header) => {
                index.note(next_offset, position as u64);
                next_offset = header.next_offset();
                position += header.total_len();
            }
            Err(reason) => break Some(reason),
        }
    };
    Walk {
        next_offset,
        valid_len: position as u64,
        stop_reason,
        index,
    }
}

fn check_batch_at(
    bytes: &[u8],
    position: usize,
    expected: u64,
    verify: bool,
) -> Result<BatchHeader, String> {
    let rest = &bytes[position..];
    let header = BatchHeader::decode(rest).map_err(|e| e.to_string())?;
    if header.total_len() > rest.len() {
        return Err(format!(
            "batch of {} bytes runs past the end",
            header.total_len()
        ));
    }
    if header.base_offset != expected {
        return Err(format!(
            "batch base offset {} where {expected} was expected",
            header.base_offset
        ));
    }
    if verify {
        BatchView::verify(&rest[..header.total_len()]).map_err(|e| e.to_string())?;
    }
    Ok(header)
}

/// Whether some whole, valid batch (any offset) starts after `from`: tells a torn tail, which
/// has none, from damage in the middle of acknowledged data.
pub(crate) fn valid_batch_after(bytes: &[u8], from: usize) -> Option<usize> {
    let mut position = from + 1;
    while position + HEADER_LEN <= bytes.len() {
        let found = bytes[position..]
            .windows(4)
            .position(|w| w == wire_core::record::batch::BATCH_MAGIC)?;
        position += found;
        if let Ok(header) = BatchHeader::decode(&bytes[position..]) {
            let end = position + header.total_len();
            if end <= bytes.len() && BatchView::verify(&bytes[position..end]).is_ok() {
                return Some(position);
            }
        }
        position += 1;
    }
    None
}

/// An immutable segment, mapped read-only. Lives on the core that owns the log.
pub(crate) struct SealedSegment {
    pub base_offset: u64,
    pub next_offset: u64,
    pub path: PathBuf,
    map: Option<Mmap>,
    index: SparseIndex,
    /// Batches wholly below this byte position have passed full verification.
    verified_end: Cell<u64>,
}

impl SealedSegment {
    /// Maps a sealed segment and walks its headers to build the index.
    pub(crate) fn open(
        path: &Path,
        base_offset: u64,
        index_interval: u32,
    ) -> Result<SealedSegment> {
        let map = map_sealed(path)?;
        let bytes = map.as_deref().unwrap_or_default();
        check_segment_len(path, bytes.len())?;
        let walk = walk(bytes, base_offset, false, index_interval);
        if let Some(reason) = walk.stop_reason {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                position: walk.valid_len,
                reason,
            });
        }
        Ok(SealedSegment {
            base_offset,
            next_offset: walk.next_offset,
            path: path.to_owned(),
            map,
            index: walk.index,
            verified_end: Cell::new(0),
        })
    }

    /// A freshly sealed segment whose index the writer already built.
    pub(crate) fn sealed(
        path: &Path,
        base_offset: u64,
        next_offset: u64,
        index: SparseIndex,
    ) -> Result<SealedSegment> {
        let map = map_sealed(path)?;
        Ok(SealedSegment {
            base_offset,
            next_offset,
            path: path.to_owned(),
            map,
            index,
            verified_end: Cell::new(0),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// Position of the batch holding `offset`, found from the index plus a short header walk.
    pub(crate) fn locate(&self, offset: u64) -> Result<u64> {
        let bytes = self.bytes();
        let mut position = self.index.floor(offset) as usize;
        loop {
            let header = self.header_at(position)?;
            if offset < header.next_offset() || position + header.total_len() >= bytes.len() {
                return Ok(position as u64);
            }
            position += header.total_len();
        }
    }

    /// The batch at `position`, verified in full the first time it is read, and the position
    /// after it.
    pub(crate) fn batch_at(&self, position: u64) -> Result<(BatchView<'_>, u64)> {
        let at = position as usize;
        let header = self.header_at(at)?;
        let end = at + header.total_len();
        let bytes = &self.bytes()[at..end];
        let view = if end as u64 <= self.verified_end.get() {
            // SAFETY: every batch below `verified_end` passed `BatchView::verify` on an earlier
            // read, and the mapped file is sealed and never written (module safety contract).
            unsafe { BatchView::from_verified_bytes(bytes) }
        } else {
            let view = BatchView::verify(bytes);
            if view.is_ok() && self.verified_end.get() == position {
                self.verified_end.set(end as u64);
            }
            view
        };
        let view = view.map_err(|e| self.corrupt(position, e.to_string()))?;
        Ok((view, end as u64))
    }

    fn header_at(&self, position: usize) -> Result<BatchHeader> {
        let bytes = self.bytes();
        let header = BatchHeader::decode(bytes.get(position..).unwrap_or_default())
            .map_err(|e| self.corrupt(position as u64, e.to_string()))?;
        if position + header.total_len() > bytes.len() {
            return Err(self.corrupt(
                position as u64,
                "batch runs past the end of the segment".into(),
            ));
        }
        Ok(header)
    }

    fn corrupt(&self, position: u64, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }
}

/// Refuses segment files whose positions would not fit the sparse index (which stores u32).
pub(crate) fn check_segment_len(path: &Path, len: usize) -> Result<()> {
    if len as u64 > u64::from(u32::MAX) {
        let reason = format!("segment is {len} bytes; segments larger than 4 GiB are not Wire's");
        return Err(Error::Corrupt {
            path: path.to_owned(),
            position: 0,
            reason,
        });
    }
    Ok(())
}

/// Maps a sealed segment file read-only; an empty file has no mapping.
pub(crate) fn map_sealed(path: &Path) -> Result<Option<Mmap>> {
    let file = File::open(path).map_err(|e| Error::io("opening segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("reading segment size", path, e))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the file is a segment in a directory this process has locked, and it is sealed or
    // not yet opened for writing (see the module's safety contract), so its bytes do not change
    // while mapped.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mapping segment", path, e))?;
    Ok(Some(map))
}
