//! The write side: staging appends into aligned buffers and the flusher task that writes and
//! syncs them. Both run on the log's executor; the flusher is the only task doing disk writes.
//!
//! Invariant: the flusher writes ops in queue order, so `written_offset` only grows, and every
//! buffer after the first of a segment starts with the previous buffer's last partial block
//! (`carry`), so rewriting that block never changes bytes already written.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::future;
use glommio::io::DmaBuffer;
use wire_core::Batch;

use super::segment::{segment_file_name, SealedSegment, SparseIndex};
use super::{Active, Durability, Failure, Shared, State, WRITE_ALIGNMENT};
use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Result};

/// One O_DIRECT write: an aligned buffer and where it goes in the active segment.
pub(crate) struct Staged {
    file_pos: u64,
    buf: DmaBuffer,
    len: usize,
    new_bytes: usize,
    end_offset: u64,
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

/// Copies a whole batch into the open buffer, or into a new one sized to hold it, so that a
/// batch never straddles two writes.
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
        close_open_buffer(state);
        state.open = Some(open_buffer(shared, state, bytes.len()));
    }
    let Some(staged) = state.open.as_mut() else {
        unreachable!("buffer opened above")
    };
    staged.buf.as_bytes_mut()[staged.len..staged.len + bytes.len()].copy_from_slice(bytes);
    staged.len += bytes.len();
    staged.new_bytes += bytes.len();
    staged.end_offset = end_offset;
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
        end_offset: state.next_offset,
    }
}

/// Queues the open buffer for writing and remembers its last partial block as the carry.
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

/// The flusher task: writes queued buffers in order, syncs per the policy, and wakes waiters.
pub(crate) async fn run_flusher<D: Disk>(shared: Rc<Shared<D>>) {
    let result = flush_loop(&shared).await;
    {
        let mut state = shared.state.borrow_mut();
        if let Err(failure) = result {
            tracing::error!(dir = %shared.dir.display(), op = failure.op, path = %failure.path.display(),
                error = %failure.message, "segment log failed; it accepts no more appends until reopened");
            state.failure = Some(failure);
        }
        state.flusher_exited = true;
    }
    shared.progress.notify();
}

async fn flush_loop<D: Disk>(shared: &Shared<D>) -> Result<(), Failure> {
    let mut last_sync = Instant::now();
    loop {
        wait_for_work(shared, last_sync).await;
        let (ops, requested, closing) = take_work(shared);
        for op in ops {
            execute(shared, op).await?;
            shared.progress.notify();
        }
        if requested || closing || sync_due(shared, last_sync) {
            sync_active(shared).await?;
            last_sync = Instant::now();
            shared.progress.notify();
        }
        if closing && nothing_staged(&shared.state.borrow()) {
            return trim_active(shared).await;
        }
    }
}

fn nothing_staged<D: Disk>(state: &State<D>) -> bool {
    state.open.is_none() && state.queue.is_empty()
}

fn sync_due<D: Disk>(shared: &Shared<D>, last_sync: Instant) -> bool {
    let state = shared.state.borrow();
    if state.synced_offset >= state.written_offset {
        return false;
    }
    match shared.config.durability {
        Durability::Always => true,
        Durability::Interval(every) => last_sync.elapsed() >= every,
        Durability::Never => false,
    }
}

async fn wait_for_work<D: Disk>(shared: &Shared<D>, last_sync: Instant) {
    loop {
        let changed = shared.work.changed();
        let deadline = {
            let state = shared.state.borrow();
            if !nothing_staged(&state) || state.sync_requested || state.closing {
                return;
            }
            match shared.config.durability {
                Durability::Interval(every) if state.synced_offset < state.written_offset => {
                    Some(last_sync + every)
                }
                _ => None,
            }
        };
        match deadline {
            None => changed.await,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                future::or(changed, glommio::timer::sleep(deadline - now)).await;
            }
        }
    }
}

fn take_work<D: Disk>(shared: &Shared<D>) -> (Vec<Op>, bool, bool) {
    let mut state = shared.state.borrow_mut();
    close_open_buffer(&mut state);
    let ops = state.queue.drain(..).collect();
    let requested = std::mem::take(&mut state.sync_requested);
    (ops, requested, state.closing)
}

async fn execute<D: Disk>(shared: &Shared<D>, op: Op) -> Result<(), Failure> {
    match op {
        Op::Write(staged) => write_staged(shared, staged).await,
        Op::Roll {
            next_base,
            next_index,
        } => roll_segment(shared, next_base, next_index).await,
    }
}

async fn write_staged<D: Disk>(shared: &Shared<D>, staged: Staged) -> Result<(), Failure> {
    let (file, path) = active_file(shared);
    let Staged {
        file_pos,
        buf,
        len,
        new_bytes,
        end_offset,
    } = staged;
    write_fully(&*file, &path, buf, file_pos).await?;
    let mut state = shared.state.borrow_mut();
    state.active.written_len = file_pos + len as u64;
    state.written_offset = state.written_offset.max(end_offset);
    state.pending_bytes -= new_bytes;
    state.probe.writes += 1;
    state.probe.bytes_written += align_up(len as u64);
    Ok(())
}

/// Writes all of `buf` at `position`, continuing after short writes (which a nearly full
/// device may return) until the device either takes everything or reports an error.
async fn write_fully(
    file: &impl DiskFile,
    path: &Path,
    buf: DmaBuffer,
    position: u64,
) -> Result<(), Failure> {
    let mut buf = Rc::new(buf);
    let mut position = position;
    loop {
        let expected = buf.len();
        let written = file
            .write_at(buf.clone(), position)
            .await
            .map_err(|e| failure("writing segment", path, e))?;
        if written == expected {
            return Ok(());
        }
        if written == 0 || !(written as u64).is_multiple_of(WRITE_ALIGNMENT) {
            let message = format!("short write: {written} of {expected} bytes at {position}");
            return Err(Failure {
                op: "writing segment",
                path: path.to_owned(),
                kind: std::io::ErrorKind::WriteZero,
                message,
            });
        }
        let mut rest = file.dma().alloc_dma_buffer(expected - written);
        rest.as_bytes_mut()
            .copy_from_slice(&buf.as_bytes()[written..]);
        buf = Rc::new(rest);
        position += written as u64;
    }
}

async fn sync_active<D: Disk>(shared: &Shared<D>) -> Result<(), Failure> {
    let (file, path) = active_file(shared);
    let target = shared.state.borrow().written_offset;
    let started = Instant::now();
    file.fdatasync()
        .await
        .map_err(|e| failure("syncing segment", &path, e))?;
    super::stats::synced(started.elapsed());
    let mut state = shared.state.borrow_mut();
    state.synced_offset = state.synced_offset.max(target);
    state.probe.syncs += 1;
    Ok(())
}

/// Cuts the active segment's block padding off on clean close, so closed logs hold exact files.
async fn trim_active<D: Disk>(shared: &Shared<D>) -> Result<(), Failure> {
    let (file, path) = active_file(shared);
    let written_len = shared.state.borrow().active.written_len;
    file.truncate(written_len)
        .await
        .map_err(|e| failure("trimming segment", &path, e))?;
    file.fdatasync()
        .await
        .map_err(|e| failure("trimming segment", &path, e))
}

async fn roll_segment<D: Disk>(
    shared: &Shared<D>,
    next_base: u64,
    next_index: Rc<RefCell<SparseIndex>>,
) -> Result<(), Failure> {
    sync_active(shared).await?;
    let (file, path) = active_file(shared);
    let (base_offset, written_len, index) = {
        let state = shared.state.borrow();
        let index = state.active.index.borrow().clone();
        (state.active.base_offset, state.active.written_len, index)
    };
    file.truncate(written_len)
        .await
        .map_err(|e| failure("sealing segment", &path, e))?;
    file.fdatasync()
        .await
        .map_err(|e| failure("sealing segment", &path, e))?;
    let sealed = SealedSegment::sealed(&path, base_offset, next_base, index)
        .map_err(|e| storage_failure("mapping segment", &path, e))?;
    let next_path = shared.dir.join(segment_file_name(next_base));
    let next_file = Rc::new(
        shared
            .disk
            .open(&next_path, true)
            .await
            .map_err(|e| storage_failure("creating segment", &next_path, e))?,
    );
    if let Err(err) = shared.disk.sync_dir(&shared.dir).await {
        // Close explicitly: glommio only queues the close of a dropped file, and a failed
        // flusher may run no further IO cycle to carry it out.
        let _ = next_file.close().await;
        return Err(storage_failure("syncing directory", &shared.dir, err));
    }
    let mut state = shared.state.borrow_mut();
    state.sealed.push(Rc::new(sealed));
    state.probe.rolls += 1;
    state.active = Active {
        base_offset: next_base,
        path: next_path,
        file: Some(next_file),
        written_len: 0,
        index: next_index,
    };
    tracing::debug!(dir = %shared.dir.display(), base_offset = next_base, "segment rolled");
    Ok(())
}

fn active_file<D: Disk>(shared: &Shared<D>) -> (Rc<D::File>, PathBuf) {
    let state = shared.state.borrow();
    let Some(file) = state.active.file.clone() else {
        unreachable!("the active file is taken only after the flusher has exited")
    };
    (file, state.active.path.clone())
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

fn failure(op: &'static str, path: &Path, err: impl Into<std::io::Error>) -> Failure {
    let err = err.into();
    Failure {
        op,
        path: path.to_owned(),
        kind: err.kind(),
        message: err.to_string(),
    }
}

fn storage_failure(op: &'static str, path: &Path, err: Error) -> Failure {
    let kind = match &err {
        Error::DiskFull { .. } => std::io::ErrorKind::StorageFull,
        Error::PermissionDenied { .. } => std::io::ErrorKind::PermissionDenied,
        Error::Io { source, .. } => source.kind(),
        _ => std::io::ErrorKind::Other,
    };
    Failure {
        op,
        path: path.to_owned(),
        kind,
        message: err.to_string(),
    }
}
