//! The flusher task: hands staged buffers to the device, several writes and one sync in
//! flight at once, and accounts for them in log order.
//!
//! Invariants: writes are issued in queue order and accounted in that order, so
//! `written_offset` and the active segment's `written_len` only grow. Two writes in flight
//! never share a block: a write that ends in a partial block (`close_open_buffer`) is followed
//! by one that rewrites that block, and that one is issued only after the first has completed.
//! A sync covers the writes completed before it was issued, and no more.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::io::DmaBuffer;
use glommio::Task;

use super::segment::{segment_file_name, SealedSegment, SparseIndex};
use super::writer::{align_up, close_open_buffer, queue_whole_blocks, Op, Staged};
use super::{Active, Durability, Failure, Shared, State, WRITE_ALIGNMENT};
use crate::disk::{Disk, DiskFile};
use crate::error::Error;

/// Writes handed to the device at once. More keep the device busy while the appenders of a
/// completed write stage their next batches.
const WRITES_IN_FLIGHT: usize = 4;

/// The flusher task: writes queued buffers in order, syncs per the policy, and wakes waiters.
pub(crate) async fn run_flusher<D: Disk>(shared: Rc<Shared<D>>) {
    let mut flight = Flight {
        writes: VecDeque::new(),
        zeros: None,
        sync: None,
        last_sync: Instant::now(),
        load: Load::new(),
    };
    let result = flush_loop(&shared, &mut flight).await;
    // After a failure, writes and a sync may still be in flight, each holding the segment
    // file. Dropping their tasks only cancels them later, so the file's last reference (and
    // its close) would outlive `close()`, leaking the descriptor if the executor stops first.
    flight.land().await;
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

/// A write handed to the device and what it makes written once it completes.
struct Flying {
    task: Task<Result<(), Failure>>,
    file_pos: u64,
    len: usize,
    new_bytes: usize,
    end_offset: u64,
}

impl Flying {
    fn overlaps(&self, file_pos: u64, len: usize) -> bool {
        self.file_pos < file_pos + len as u64 && file_pos < self.file_pos + self.len as u64
    }
}

/// Writes and the sync the device has not yet answered, oldest data write first.
struct Flight {
    writes: VecDeque<Flying>,
    /// Zeros ahead of the data, accounted apart so that data writes never wait for them.
    zeros: Option<Flying>,
    sync: Option<Task<Result<u64, Failure>>>,
    last_sync: Instant,
    load: Load,
}

/// How busy the device is with data writes: the fraction of the last window (at least
/// `LOAD_WINDOW`) during which a data write was in flight. Zeros go ahead only while it is
/// under half, because they double the bytes written.
struct Load {
    window_start: Instant,
    busy: Duration,
    busy_since: Option<Instant>,
    last: f64,
}

const LOAD_WINDOW: Duration = Duration::from_millis(50);

impl Load {
    fn new() -> Load {
        Load {
            window_start: Instant::now(),
            busy: Duration::ZERO,
            busy_since: None,
            last: 0.0,
        }
    }

    /// Data writes are now in flight (`true`) or none is (`false`).
    fn set_busy(&mut self, busy: bool) {
        match (busy, self.busy_since) {
            (true, None) => self.busy_since = Some(Instant::now()),
            (false, Some(since)) => {
                self.busy += since.elapsed();
                self.busy_since = None;
            }
            _ => {}
        }
    }

    /// The busy fraction of the last complete window.
    fn fraction(&mut self) -> f64 {
        let now = Instant::now();
        let elapsed = now - self.window_start;
        if elapsed >= LOAD_WINDOW {
            let open = self.busy_since.map_or(Duration::ZERO, |since| now - since);
            self.last = (self.busy + open).as_secs_f64() / elapsed.as_secs_f64();
            self.busy = Duration::ZERO;
            self.busy_since = self.busy_since.map(|_| now);
            self.window_start = now;
        }
        self.last
    }
}

impl Flight {
    /// Waits for every write and sync in flight to complete, whatever their outcome.
    async fn land(&mut self) {
        while let Some(write) = self.writes.pop_front() {
            let _ = write.task.await;
        }
        if let Some(zeros) = self.zeros.take() {
            let _ = zeros.task.await;
        }
        if let Some(sync) = self.sync.take() {
            let _ = sync.await;
        }
    }

    fn idle(&self) -> bool {
        self.writes.is_empty() && self.zeros.is_none() && self.sync.is_none()
    }

    /// Whether `next`, the next queued write, may be issued now: not over a block that a
    /// write in flight also writes (the padded last block of the previous data write, or
    /// zeros ahead of the data).
    fn takes_write(&self, next: &Staged) -> bool {
        let padded_last = self
            .writes
            .back()
            .is_some_and(|last| !(last.len as u64).is_multiple_of(WRITE_ALIGNMENT));
        self.writes.len() < WRITES_IN_FLIGHT
            && !padded_last
            && !self
                .zeros
                .as_ref()
                .is_some_and(|zeros| zeros.overlaps(next.file_pos, next.len))
    }
}

enum Event {
    Written(Result<(), Failure>),
    Zeroed(Result<(), Failure>),
    Synced(Result<u64, Failure>),
    Woken,
}

async fn flush_loop<D: Disk>(shared: &Shared<D>, flight: &mut Flight) -> Result<(), Failure> {
    loop {
        issue_writes(shared, flight).await?;
        start_sync(shared, flight);
        zero_ahead(shared, flight);
        if flight.idle() && finished(&shared.state.borrow()) {
            return trim_active(shared).await;
        }
        match next_event(shared, flight).await {
            // A completed task leaves the flight before its result is looked at: `land`
            // awaits whatever is still in it.
            Event::Written(result) => {
                let Some(done) = flight.writes.pop_front() else {
                    unreachable!("a write completed")
                };
                result?;
                account_write(shared, &done);
                flight.load.set_busy(!flight.writes.is_empty());
            }
            Event::Zeroed(result) => {
                let Some(done) = flight.zeros.take() else {
                    unreachable!("zeros completed")
                };
                result?;
                let mut state = shared.state.borrow_mut();
                let end = done.file_pos + done.len as u64;
                state.active.zeroed_len = state.active.zeroed_len.max(end);
                state.probe.bytes_zeroed += done.len as u64;
                continue; // nothing a waiter looks at changed
            }
            Event::Synced(result) => {
                flight.sync = None;
                let target = result?;
                flight.last_sync = Instant::now();
                let mut state = shared.state.borrow_mut();
                state.synced_offset = state.synced_offset.max(target);
                state.probe.syncs += 1;
            }
            Event::Woken => continue,
        }
        shared.progress.notify();
    }
}

/// Closing, with everything written and synced.
fn finished<D: Disk>(state: &State<D>) -> bool {
    state.closing
        && state.open.is_none()
        && state.queue.is_empty()
        && state.synced_offset >= state.written_offset
}

/// Issues queued writes while the flight takes them; seals a segment once everything before
/// the roll is written and synced. When no data write is in flight (or the log is closing, or
/// a sync waits for staged data) the open buffer goes out whole; otherwise only its whole blocks
/// do, and its last partial block waits for the writes in flight.
async fn issue_writes<D: Disk>(shared: &Shared<D>, flight: &mut Flight) -> Result<(), Failure> {
    while let Some(op) = next_op(shared, flight) {
        match op {
            Op::Write(staged) => {
                flight.writes.push_back(spawn_write(shared, staged));
                flight.load.set_busy(true);
            }
            Op::Roll {
                next_base,
                next_index,
            } => {
                roll_segment(shared, next_base, next_index).await?;
                flight.last_sync = Instant::now();
                shared.progress.notify();
            }
        }
    }
    Ok(())
}

/// The next queued op the flight can take now, if any.
fn next_op<D: Disk>(shared: &Shared<D>, flight: &Flight) -> Option<Op> {
    let mut state = shared.state.borrow_mut();
    if let (true, Some(open)) = (state.queue.is_empty(), state.open.as_ref()) {
        let urgent = state.closing || state.sync_wanted > state.written_offset;
        if flight.writes.is_empty() || urgent {
            close_open_buffer(&mut state);
        } else if open.whole_blocks_len() > 0 {
            queue_whole_blocks(shared, &mut state, 0);
        }
    }
    let ready = match state.queue.front()? {
        Op::Write(next) => flight.takes_write(next),
        Op::Roll { .. } => flight.idle(),
    };
    if ready {
        state.queue.pop_front()
    } else {
        None
    }
}

fn spawn_write<D: Disk>(shared: &Shared<D>, staged: Staged) -> Flying {
    let end_offset = staged.end_offset();
    let Staged {
        file_pos,
        buf,
        len,
        new_bytes,
        ..
    } = staged;
    let mut flying = spawn_zeros_or_data(shared, buf, file_pos);
    flying.len = len;
    flying.new_bytes = new_bytes;
    flying.end_offset = end_offset;
    flying
}

/// Writes `buf` at `file_pos` in the active segment, as a task; the returned write carries
/// no data (`new_bytes` and `end_offset` 0) until the caller says otherwise.
fn spawn_zeros_or_data<D: Disk>(shared: &Shared<D>, buf: DmaBuffer, file_pos: u64) -> Flying {
    let (file, path) = active_file(shared);
    let len = buf.len();
    let task = glommio::spawn_local(async move { write_fully(&*file, &path, buf, file_pos).await });
    Flying {
        task,
        file_pos,
        len,
        new_bytes: 0,
        end_offset: 0,
    }
}

/// When nothing waits to be written and the device was less than half busy with data writes
/// in the last window, writes zeros ahead of the data (half of
/// `zero_ahead_bytes` at a time) until that many bytes past it are on the device, within the
/// segment's size.
fn zero_ahead<D: Disk>(shared: &Shared<D>, flight: &mut Flight) {
    let ahead = shared.config.zero_ahead_bytes as u64;
    let (file_pos, len) = {
        let state = shared.state.borrow();
        let busy = !state.queue.is_empty() || state.open.is_some() || state.closing;
        let in_flight = !flight.writes.is_empty() || flight.zeros.is_some();
        if ahead == 0 || busy || in_flight || flight.load.fraction() >= 0.5 {
            return;
        }
        let data_end = align_up(state.active.written_len);
        let from = state.active.zeroed_len.max(data_end);
        let until = (data_end + ahead).min(align_up(shared.config.segment_bytes));
        if from + ahead / 2 > until {
            return;
        }
        (from, (ahead / 2) as usize)
    };
    let mut buf = glommio::allocate_dma_buffer(len);
    buf.as_bytes_mut().fill(0);
    flight.zeros = Some(spawn_zeros_or_data(shared, buf, file_pos));
}

fn account_write<D: Disk>(shared: &Shared<D>, done: &Flying) {
    let mut state = shared.state.borrow_mut();
    let end = done.file_pos + done.len as u64;
    state.active.zeroed_len = state.active.zeroed_len.max(align_up(end));
    state.active.written_len = end;
    state.written_offset = state.written_offset.max(done.end_offset);
    state.pending_bytes -= done.new_bytes;
    state.probe.writes += 1;
    state.probe.bytes_written += align_up(done.len as u64);
}

/// Starts a sync of everything written so far when the policy, a `sync` call or closing wants
/// one and none is in flight.
fn start_sync<D: Disk>(shared: &Shared<D>, flight: &mut Flight) {
    if flight.sync.is_some() {
        return;
    }
    let target = {
        let state = shared.state.borrow();
        if state.written_offset <= state.synced_offset {
            return;
        }
        let due = match shared.config.durability {
            Durability::Always => true,
            Durability::Interval(every) => flight.last_sync.elapsed() >= every,
            Durability::Never => false,
        };
        if !(due || state.closing || state.sync_wanted > state.synced_offset) {
            return;
        }
        state.written_offset
    };
    let (file, path) = active_file(shared);
    flight.sync = Some(glommio::spawn_local(async move {
        let started = Instant::now();
        file.fdatasync()
            .await
            .map_err(|e| failure("syncing segment", &path, e))?;
        super::stats::synced(started.elapsed());
        Ok(target)
    }));
}

/// Waits for the oldest write or the sync to complete, for new work, or for an interval sync
/// to fall due.
async fn next_event<D: Disk>(shared: &Shared<D>, flight: &mut Flight) -> Event {
    let changed = shared.work.changed();
    let deadline = match shared.config.durability {
        Durability::Interval(every) if flight.sync.is_none() => {
            let state = shared.state.borrow();
            (state.written_offset > state.synced_offset).then_some(flight.last_sync + every)
        }
        _ => None,
    };
    let timer = async move {
        match deadline {
            Some(deadline) => {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            }
            None => future::pending::<()>().await,
        }
    };
    let mut woken = pin!(future::or(changed, timer));
    future::poll_fn(|cx| {
        if let Some(oldest) = flight.writes.front_mut() {
            if let Poll::Ready(result) = Pin::new(&mut oldest.task).poll(cx) {
                return Poll::Ready(Event::Written(result));
            }
        }
        if let Some(zeros) = flight.zeros.as_mut() {
            if let Poll::Ready(result) = Pin::new(&mut zeros.task).poll(cx) {
                return Poll::Ready(Event::Zeroed(result));
            }
        }
        if let Some(sync) = flight.sync.as_mut() {
            if let Poll::Ready(result) = Pin::new(sync).poll(cx) {
                return Poll::Ready(Event::Synced(result));
            }
        }
        woken.as_mut().poll(cx).map(|()| Event::Woken)
    })
    .await
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
        zeroed_len: 0,
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
