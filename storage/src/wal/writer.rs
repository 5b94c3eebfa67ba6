//! The write side: staging appends into aligned buffers for the flusher (`flusher.rs`), and
//! retention. Both run on the log's executor; the flusher is the only task doing disk writes.
//!
//! Invariant: buffers are queued in log order and each starts where the previous one's whole
//! blocks end. A buffer closed with a partial last block leaves that block as the `carry`, which
//! the next buffer starts with, so rewriting that block never changes bytes already written.

use glommio::io::DmaBuffer;
use std::cell::RefCell;
use std::rc::Rc;
use wire_core::Batch;

use super::segment::SparseIndex;
use super::{Shared, State, WRITE_ALIGNMENT};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// One O_DIRECT write: an aligned buffer and where it goes in the active segment.
pub(crate) struct Staged {
    pub(super) file_pos: u64,
    pub(super) buf: DmaBuffer,
    pub(super) len: usize,
    pub(super) new_bytes: usize,
    /// The offset before the first batch that ends in this buffer.
    start_offset: u64,
    /// Where each batch that ends in `buf` ends, with the offset after it.
    ends: Vec<(usize, u64)>,
}

impl Staged {
    /// The offset after the last batch that ends in this buffer.
    pub(super) fn end_offset(&self) -> u64 {
        self.ends
            .last()
            .map_or(self.start_offset, |&(_, offset)| offset)
    }

    /// Bytes of whole blocks from the start of the buffer.
    pub(super) fn whole_blocks_len(&self) -> usize {
        (align_down(self.file_pos + self.len as u64) - self.file_pos) as usize
    }
}

/// Work for the flusher, in log order.
pub(crate) enum Op {
    Write(Staged),
    /// Seal the active segment and start the next one at `next_base`.
    Roll {
        next_base: u64,
        next_index: Rc<RefCell<SparseIndex>>,
    },
}

pub(crate) fn align_down(value: u64) -> u64 {
    value - value % WRITE_ALIGNMENT
}

pub(crate) fn align_up(value: u64) -> u64 {
    align_down(value + WRITE_ALIGNMENT - 1)
}

/// Copies `batch` into the staging buffers and assigns its offsets. Returns the offset after it.
pub(crate) fn stage<D: Disk>(shared: &Shared<D>, batch: &mut Batch) -> Result<u64> {
    let mut state = shared.state.borrow_mut();
    state.check_usable()?;
    if state.closing {
        return Err(Error::Closed);
    }
    if batch.row_count() == 0 {
        return Err(Error::Config(
            "cannot append an empty batch: it would take no offset".into(),
        ));
    }
    batch.seal();
    let len = batch.encoded_len() as u64;
    if state.staging.len > 0 && state.staging.len + len > shared.config.segment_bytes {
        roll(&mut state);
    }
    let base_offset = state.next_offset;
    batch.set_base_offset(base_offset);
    let end_offset = batch.header().next_offset();
    let position = state.staging.len;
    state.staging.index.borrow_mut().note(base_offset, position);
    copy_into_buffers(shared, &mut state, batch.as_bytes(), end_offset);
    state.next_offset = end_offset;
    state.pending_bytes += batch.encoded_len();
    state.probe.appends += 1;
    state.probe.bytes_appended += len;
    drop(state);
    shared.work.notify();
    Ok(end_offset)
}

fn roll<D: Disk>(state: &mut State<D>) {
    close_open_buffer(state);
    let next_base = state.next_offset;
    let next_index = Rc::new(RefCell::new(SparseIndex::new(
        state.staging.index.borrow().interval(),
    )));
    state.staging.base_offset = next_base;
    state.staging.len = 0;
    state.staging.carry.clear();
    state.staging.index = next_index.clone();
    state.queue.push_back(Op::Roll {
        next_base,
        next_index,
    });
}

/// Copies a whole batch into the open buffer, or into a new one sized to hold it.
fn copy_into_buffers<D: Disk>(
    shared: &Shared<D>,
    state: &mut State<D>,
    bytes: &[u8],
    end_offset: u64,
) {
    let fits = state
        .open
        .as_ref()
        .is_some_and(|open| open.buf.len() - open.len >= bytes.len());
    if !fits {
        if state.open.is_some() {
            queue_whole_blocks(shared, state, bytes.len());
        } else {
            state.open = Some(open_buffer(shared, state, bytes.len()));
        }
    }
    let Some(staged) = state.open.as_mut() else {
        unreachable!("buffer opened above")
    };
    staged.buf.as_bytes_mut()[staged.len..staged.len + bytes.len()].copy_from_slice(bytes);
    staged.len += bytes.len();
    staged.new_bytes += bytes.len();
    staged.ends.push((staged.len, end_offset));
    state.staging.len += bytes.len() as u64;
}

fn open_buffer<D: Disk>(shared: &Shared<D>, state: &State<D>, need: usize) -> Staged {
    let carry = &state.staging.carry;
    let file_pos = align_down(state.staging.len);
    debug_assert_eq!(file_pos + carry.len() as u64, state.staging.len);
    let size = align_up(shared.config.write_buffer_bytes.max(carry.len() + need) as u64) as usize;
    let mut buf = glommio::allocate_dma_buffer(size);
    buf.as_bytes_mut()[..carry.len()].copy_from_slice(carry);
    Staged {
        file_pos,
        buf,
        len: carry.len(),
        new_bytes: 0,
        start_offset: state.next_offset,
        ends: Vec::new(),
    }
}

/// Queues the open buffer for writing, padded to whole blocks, and remembers its last partial
/// block as the carry: the next buffer starts by rewriting that block, so its write must not
/// be in flight together with this one.
pub(crate) fn close_open_buffer<D: Disk>(state: &mut State<D>) {
    let Some(mut staged) = state.open.take() else {
        return;
    };
    let logical_end = staged.file_pos + staged.len as u64;
    let block_start = (align_down(logical_end) - staged.file_pos) as usize;
    state.staging.carry.clear();
    state
        .staging
        .carry
        .extend_from_slice(&staged.buf.as_bytes()[block_start..staged.len]);
    let aligned = align_up(staged.len as u64) as usize;
    staged.buf.as_bytes_mut()[staged.len..aligned].fill(0);
    staged.buf.trim_to_size(aligned);
    state.queue.push_back(Op::Write(staged));
}

/// Queues the open buffer's whole blocks for writing and moves its partial last block into a
/// new open buffer with room for `need` more bytes. No block is written twice, so the queued
/// write may be in flight together with the next one.
pub(crate) fn queue_whole_blocks<D: Disk>(shared: &Shared<D>, state: &mut State<D>, need: usize) {
    let Some(mut head) = state.open.take() else {
        return;
    };
    let cut = head.whole_blocks_len();
    let tail_len = head.len - cut;
    let size = align_up(shared.config.write_buffer_bytes.max(tail_len + need) as u64) as usize;
    let mut buf = glommio::allocate_dma_buffer(size);
    buf.as_bytes_mut()[..tail_len].copy_from_slice(&head.buf.as_bytes()[cut..head.len]);
    let whole = head.ends.partition_point(|&(end, _)| end <= cut);
    let moved_new = tail_len.min(head.new_bytes);
    let tail = Staged {
        file_pos: head.file_pos + cut as u64,
        buf,
        len: tail_len,
        new_bytes: moved_new,
        start_offset: head.ends[..whole].last().map_or(head.start_offset, |e| e.1),
        ends: head.ends[whole..]
            .iter()
            .map(|&(end, o)| (end - cut, o))
            .collect(),
    };
    state.open = Some(tail);
    if cut == 0 {
        return;
    }
    head.ends.truncate(whole);
    head.len = cut;
    head.new_bytes -= moved_new;
    head.buf.trim_to_size(cut);
    state.queue.push_back(Op::Write(head));
}

pub(crate) async fn delete_before<D: Disk>(shared: &Shared<D>, offset: u64) -> Result<usize> {
    shared.state.borrow().check_usable()?;
    let mut deleted = 0;
    // A segment leaves the list only once its file is gone, so a failed unlink leaves the
    // remaining segments readable.
    let unlinked = loop {
        let segment = match shared.state.borrow().sealed.first() {
            Some(first) if first.next_offset <= offset => first.clone(),
            _ => break Ok(()),
        };
        if let Err(err) = std::fs::remove_file(&segment.path) {
            break Err(Error::io("deleting segment", &segment.path, err));
        }
        shared.state.borrow_mut().sealed.remove(0);
        deleted += 1;
        tracing::info!(path = %segment.path.display(), next_offset = segment.next_offset, "segment deleted by retention");
    };
    if deleted > 0 {
        shared.disk.sync_dir(&shared.dir).await?;
    }
    unlinked.map(|()| deleted)
}
