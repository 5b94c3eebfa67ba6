//! Readers: iterate batches from any offset, zero-copy from sealed segments, and tail the log.
//!
//! A reader sees only acknowledged batches (below `SegmentLog::acked_offset`), so it never
//! observes data that a crash could still take back under the log's durability policy.
//! Every batch is verified in full (checksum and rows) before it is handed out.

use std::rc::Rc;

use glommio::io::ReadResult;
use wire_core::record::batch::{BatchHeader, BatchView, HEADER_LEN};

use super::segment::SealedSegment;
use super::Shared;
use crate::disk::{Disk, DiskFile, DmaDisk};
use crate::error::{Error, Result};

/// Bytes read ahead from the active segment per io_uring read.
const READ_AHEAD_BYTES: usize = 256 << 10;

/// Reads a log in offset order. Lives on the log's executor.
pub struct LogReader<D: Disk = DmaDisk> {
    shared: Rc<Shared<D>>,
    next_offset: u64,
    /// Segment base and byte position of the next batch, when known.
    cursor: Option<(u64, u64)>,
    sealed: Option<Rc<SealedSegment>>,
    active: Option<ActiveChunk>,
}

/// Bytes read from the active segment: `data` holds `[start, start + data.len())` of `segment`.
struct ActiveChunk {
    segment: u64,
    start: u64,
    data: ReadResult,
}

enum Location<F> {
    Sealed(Rc<SealedSegment>),
    Active {
        base: u64,
        file: Option<Rc<F>>,
        written_len: u64,
        floor: u64,
    },
}

impl<D: Disk> LogReader<D> {
    pub(super) fn new(shared: Rc<Shared<D>>, offset: u64) -> Result<LogReader<D>> {
        let reader = LogReader {
            shared,
            next_offset: offset,
            cursor: None,
            sealed: None,
            active: None,
        };
        reader.check_in_range()?;
        Ok(reader)
    }

    /// The offset the reader will return next (the batch holding it, to be exact).
    pub fn position(&self) -> u64 {
        self.next_offset
    }

    /// The next acknowledged batch, or `None` when the reader has caught up.
    ///
    /// Reading from an offset inside a batch returns that whole batch; skip its first
    /// `offset - base_offset` rows if you need exact positioning.
    pub async fn next(&mut self) -> Result<Option<BatchView<'_>>> {
        let acked = self
            .shared
            .state
            .borrow()
            .acked_offset(self.shared.config.durability);
        if self.next_offset >= acked {
            return Ok(None);
        }
        // Finish a sealed segment the reader is in, even if retention has unlinked it since.
        let current = self.sealed.clone();
        if let Some(segment) = current
            .filter(|s| s.base_offset <= self.next_offset && self.next_offset < s.next_offset)
        {
            return self.next_sealed(segment).map(Some);
        }
        self.check_in_range()?;
        match self.locate() {
            Location::Sealed(segment) => self.next_sealed(segment).map(Some),
            Location::Active {
                base,
                file: Some(file),
                written_len,
                floor,
            } => self
                .next_active(base, file, written_len, floor)
                .await
                .map(Some),
            // The log was closed: its active segment can no longer be read.
            Location::Active { file: None, .. } => Err(Error::Closed),
        }
    }

    /// Waits until a batch is acknowledged at the reader's position, then returns it.
    pub async fn next_wait(&mut self) -> Result<BatchView<'_>> {
        self.wait_for_data().await?;
        self.next().await?.ok_or(Error::Closed)
    }

    async fn wait_for_data(&self) -> Result<()> {
        loop {
            let changed = self.shared.progress.changed();
            {
                let state = self.shared.state.borrow();
                state.check_usable()?;
                if state.acked_offset(self.shared.config.durability) > self.next_offset {
                    return Ok(());
                }
                if state.flusher_exited {
                    return Err(Error::Closed);
                }
            }
            changed.await;
        }
    }

    fn check_in_range(&self) -> Result<()> {
        let state = self.shared.state.borrow();
        let log_start = state
            .sealed
            .first()
            .map_or(state.active.base_offset, |s| s.base_offset);
        if self.next_offset < log_start {
            return Err(Error::OffsetOutOfRange {
                offset: self.next_offset,
                log_start,
            });
        }
        Ok(())
    }

    fn locate(&self) -> Location<D::File> {
        let state = self.shared.state.borrow();
        let index = state
            .sealed
            .partition_point(|s| s.next_offset <= self.next_offset);
        if let Some(segment) = state.sealed.get(index) {
            return Location::Sealed(segment.clone());
        }
        let active = &state.active;
        let floor = active.index.borrow().floor(self.next_offset);
        Location::Active {
            base: active.base_offset,
            file: active.file.clone(),
            written_len: active.written_len,
            floor,
        }
    }

    fn cursor_in(&self, segment_base: u64) -> Option<u64> {
        self.cursor
            .filter(|&(base, _)| base == segment_base)
            .map(|(_, position)| position)
    }

    fn next_sealed(&mut self, segment: Rc<SealedSegment>) -> Result<BatchView<'_>> {
        let position = match self.cursor_in(segment.base_offset) {
            Some(position) => position,
            None => segment.locate(self.next_offset)?,
        };
        let segment = self.sealed.insert(segment);
        let (view, end) = segment.batch_at(position)?;
        self.cursor = Some((segment.base_offset, end));
        self.next_offset = view.header().next_offset();
        Ok(view)
    }

    async fn next_active(
        &mut self,
        base: u64,
        file: Rc<D::File>,
        written_len: u64,
        floor: u64,
    ) -> Result<BatchView<'_>> {
        let mut position = self.cursor_in(base).unwrap_or(floor);
        let header = loop {
            let header = self
                .active_header(base, &file, written_len, position)
                .await?;
            if self.next_offset < header.next_offset() {
                break header;
            }
            position += header.total_len() as u64;
        };
        let end = position + header.total_len() as u64;
        self.fill(base, &file, written_len, position, header.total_len())
            .await?;
        self.cursor = Some((base, end));
        self.next_offset = header.next_offset();
        let Some(chunk) = self.active.as_ref() else {
            unreachable!("filled above")
        };
        let at = (position - chunk.start) as usize;
        BatchView::verify(&chunk.data[at..at + header.total_len()])
            .map_err(|e| corrupt(&self.shared, base, position, e))
    }

    async fn active_header(
        &mut self,
        base: u64,
        file: &Rc<D::File>,
        written_len: u64,
        position: u64,
    ) -> Result<BatchHeader> {
        self.fill(base, file, written_len, position, HEADER_LEN)
            .await?;
        let Some(chunk) = self.active.as_ref() else {
            unreachable!("filled above")
        };
        let at = (position - chunk.start) as usize;
        let header = BatchHeader::decode(&chunk.data[at..])
            .map_err(|e| corrupt(&self.shared, base, position, e))?;
        if position + header.total_len() as u64 > written_len {
            let reason = "batch runs past the written end of the segment";
            return Err(corrupt(&self.shared, base, position, reason));
        }
        Ok(header)
    }

    /// Makes `[position, position + len)` of the active segment available in `self.active`.
    async fn fill(
        &mut self,
        base: u64,
        file: &Rc<D::File>,
        written_len: u64,
        position: u64,
        len: usize,
    ) -> Result<()> {
        if let Some(chunk) = &self.active {
            let buffered = chunk.segment == base && chunk.start <= position;
            if buffered && position + len as u64 <= chunk.start + chunk.data.len() as u64 {
                return Ok(());
            }
        }
        let available = written_len.saturating_sub(position) as usize;
        if available < len {
            return Err(corrupt(
                &self.shared,
                base,
                position,
                "read past the written end of the segment",
            ));
        }
        let size = len.max(READ_AHEAD_BYTES).min(available);
        let path = self.shared.state.borrow().active.path.clone();
        let data = file
            .dma()
            .read_at(position, size)
            .await
            .map_err(|e| Error::io("reading segment", path, e))?;
        if data.len() < len {
            return Err(corrupt(
                &self.shared,
                base,
                position,
                "short read from the segment",
            ));
        }
        self.active = Some(ActiveChunk {
            segment: base,
            start: position,
            data,
        });
        Ok(())
    }
}

fn corrupt<D: Disk>(shared: &Shared<D>, base: u64, position: u64, reason: impl ToString) -> Error {
    let path = shared.dir.join(super::segment::segment_file_name(base));
    Error::Corrupt {
        path,
        position,
        reason: reason.to_string(),
    }
}
