//! The segment-log write-ahead log: one append-only log per partition.
//!
//! A log is a directory of segment files named by the offset of their first row. Appends are
//! copied into aligned staging buffers and written with O_DIRECT through glommio's io_uring
//! reactor by one flusher task, which also runs the fsyncs, so concurrent appends share one
//! `fdatasync` (group commit). Sealed segments are read through a read-only memory map; the
//! active one through io_uring reads. A [`SegmentLog`] lives on one glommio executor (one core)
//! and is not `Send`.
//!
//! ```no_run
//! use wire_core::{BatchBuilder, PartitionId, StreamId, ValueRef};
//! use wire_storage::wal::{LogConfig, SegmentLog};
//!
//! let executor = wire_storage::io::local_executor().unwrap();
//! executor.run(async {
//!     let (log, _report) = SegmentLog::open("/var/lib/wire/p0", LogConfig::default()).await.unwrap();
//!     let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
//!     builder.push(&[ValueRef::I64(42)]).unwrap();
//!     let mut batch = builder.finish();
//!     let offset = log.append(&mut batch).await.unwrap();
//!     let mut reader = log.reader(offset).unwrap();
//!     let view = reader.next().await.unwrap().unwrap();
//!     assert_eq!(view.row(0).get(0).and_then(|v| v.as_i64()), Some(42));
//!     log.close().await.unwrap();
//! });
//! ```

mod flusher;
mod reader;
mod recovery;
pub mod segment;
pub mod stats;
mod writer;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use wire_core::Batch;

use crate::disk::{Disk, DiskFile, DmaDisk};
use crate::error::{Error, Result};
use crate::signal::Signal;
pub use reader::LogReader;
pub use recovery::{RecoveryReport, Truncation};
use segment::{SealedSegment, SparseIndex};
use writer::{Op, Staged};

/// Byte alignment of O_DIRECT writes: one 4 KiB block, valid for every common device.
pub const WRITE_ALIGNMENT: u64 = 4096;

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Resolve after `fdatasync`: the batch survives power loss. Concurrent appends share syncs.
    Always,
    /// Resolve once written to the device (survives a process crash); `fdatasync` at most this
    /// long after, so a power loss loses at most this much acknowledged data.
    Interval(Duration),
    /// Resolve once written to the device; sync only when a segment is sealed or the log closes.
    Never,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Interval(every) => write!(f, "interval({}ms)", every.as_millis()),
            Durability::Never => f.write_str("never"),
        }
    }
}

impl FromStr for Durability {
    type Err = String;

    /// Parses `always`, `never`, `interval(10ms)` or `interval(10)` (milliseconds).
    fn from_str(text: &str) -> Result<Durability, String> {
        let text = text.trim();
        match text {
            "always" => return Ok(Durability::Always),
            "never" => return Ok(Durability::Never),
            _ => {}
        }
        let inner = text
            .strip_prefix("interval(")
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| {
                format!("unknown durability `{text}`: expected always, never or interval(<ms>ms)")
            })?;
        let digits = inner.trim().trim_end_matches("ms").trim();
        let ms: u64 = digits
            .parse()
            .map_err(|_| format!("bad interval `{inner}` in `{text}`: expected milliseconds"))?;
        if ms == 0 {
            return Err(format!(
                "interval must be at least 1ms in `{text}`; use `always` to sync every append"
            ));
        }
        Ok(Durability::Interval(Duration::from_millis(ms)))
    }
}

/// Settings of one log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Segment size at which the log rolls to a new file.
    pub segment_bytes: u64,
    /// When appends resolve.
    pub durability: Durability,
    /// One sparse-index entry per this many bytes of log.
    pub index_interval_bytes: u32,
    /// Size of each staging buffer handed to one O_DIRECT write.
    pub write_buffer_bytes: usize,
    /// Appends wait while this many staged bytes are not yet written (backpressure).
    pub pending_bytes_max: usize,
    /// When the log is idle, the flusher writes zeros ahead of the data until this many bytes
    /// past it are on disk, half at a time, so that later appends overwrite written blocks:
    /// such a write neither grows the file (a journalled size change) nor goes to io_uring's
    /// kernel workers. 0 turns it off. Never done while writes are waiting.
    pub zero_ahead_bytes: usize,
    /// On open, discard damaged data in the last segment even when whole batches follow it.
    /// Off by default: such damage is not a torn tail, and opening fails instead.
    pub truncate_corrupt_tail: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 64 << 20,
            durability: Durability::Interval(Duration::from_millis(10)),
            index_interval_bytes: 4096,
            write_buffer_bytes: 1 << 20,
            pending_bytes_max: 8 << 20,
            zero_ahead_bytes: 2 << 20,
            truncate_corrupt_tail: false,
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        if self.segment_bytes < WRITE_ALIGNMENT {
            return Err(Error::Config(format!(
                "segment_bytes must be at least {WRITE_ALIGNMENT}"
            )));
        }
        // Index positions are u32, and a segment may overrun its size by one batch.
        let segment_bytes_max =
            u64::from(u32::MAX) - wire_core::record::batch::BATCH_BYTES_MAX as u64;
        if self.segment_bytes > segment_bytes_max {
            return Err(Error::Config(format!(
                "segment_bytes must be at most {segment_bytes_max}"
            )));
        }
        if self.pending_bytes_max == 0 {
            return Err(Error::Config("pending_bytes_max must be at least 1".into()));
        }
        if !(self.zero_ahead_bytes as u64).is_multiple_of(2 * WRITE_ALIGNMENT) {
            return Err(Error::Config(format!(
                "zero_ahead_bytes must be a multiple of {}",
                2 * WRITE_ALIGNMENT
            )));
        }
        if self.write_buffer_bytes < WRITE_ALIGNMENT as usize {
            return Err(Error::Config(format!(
                "write_buffer_bytes must be at least {WRITE_ALIGNMENT}"
            )));
        }
        Ok(())
    }
}

/// A partition's write-ahead log. Cheap to clone; every clone is the same log.
/// Lives on the glommio executor that opened it. `D` is the disk under it: the real one
/// ([`DmaDisk`]) unless a test puts a simulated one there ([`crate::disk::sim::SimDisk`]).
pub struct SegmentLog<D: Disk = DmaDisk> {
    shared: Rc<Shared<D>>,
    _owner: Rc<Owner<D>>,
}

impl<D: Disk> Clone for SegmentLog<D> {
    fn clone(&self) -> Self {
        SegmentLog {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
        }
    }
}

/// Closes the log (flushing what is staged) when the last `SegmentLog` clone drops. Prefer
/// [`SegmentLog::close`]: glommio closes a dropped file only at the executor's next IO cycle,
/// so a log dropped just before the executor stops leaves its active segment's descriptor open.
/// Readers hold `Shared` directly, so they never keep a dropped log open for writing.
struct Owner<D: Disk>(Rc<Shared<D>>);

impl<D: Disk> Drop for Owner<D> {
    fn drop(&mut self) {
        self.0.state.borrow_mut().closing = true;
        self.0.work.notify();
    }
}

pub(crate) struct Shared<D: Disk> {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) disk: D,
    pub(crate) state: RefCell<State<D>>,
    /// Wakes the flusher: new staged data, a sync request, or close.
    pub(crate) work: Signal,
    /// Wakes appenders and readers: progress, failure or close.
    pub(crate) progress: Signal,
    _lock: File,
}

pub(crate) struct State<D: Disk> {
    pub(crate) sealed: Vec<Rc<SealedSegment>>,
    pub(crate) active: Active<D>,
    pub(crate) staging: StagingCursor,
    pub(crate) open: Option<Staged>,
    pub(crate) queue: VecDeque<Op>,
    pub(crate) next_offset: u64,
    pub(crate) written_offset: u64,
    pub(crate) synced_offset: u64,
    pub(crate) pending_bytes: usize,
    /// A `sync` call waits for everything below this offset to be synced.
    pub(crate) sync_wanted: u64,
    pub(crate) failure: Option<Failure>,
    pub(crate) closing: bool,
    pub(crate) flusher: Option<glommio::task::JoinHandle<()>>,
    pub(crate) flusher_exited: bool,
    pub(crate) probe: LogProbe,
}

/// Counters of one log's work since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogProbe {
    /// Batches appended.
    pub appends: u64,
    /// Bytes appended (batch bytes, not counting block padding).
    pub bytes_appended: u64,
    /// O_DIRECT writes issued.
    pub writes: u64,
    /// Bytes handed to the device, padding and rewritten tail blocks included.
    pub bytes_written: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Bytes of zeros written ahead of the data (`LogConfig::zero_ahead_bytes`).
    pub bytes_zeroed: u64,
    /// Segments sealed.
    pub rolls: u64,
}

/// The segment the flusher writes and readers read past the sealed ones.
pub(crate) struct Active<D: Disk> {
    pub(crate) base_offset: u64,
    pub(crate) path: PathBuf,
    /// `None` once the log is closed: `close` closes the file explicitly, because glommio only
    /// queues the close of a dropped file for the executor's next IO cycle.
    pub(crate) file: Option<Rc<D::File>>,
    /// Bytes of this segment written to the device.
    pub(crate) written_len: u64,
    /// Bytes from the start of this segment that are on the device as data or zeros.
    pub(crate) zeroed_len: u64,
    pub(crate) index: Rc<RefCell<SparseIndex>>,
}

/// The segment appends are staged into; ahead of `Active` while a roll is queued.
pub(crate) struct StagingCursor {
    pub(crate) base_offset: u64,
    pub(crate) len: u64,
    pub(crate) index: Rc<RefCell<SparseIndex>>,
    /// The bytes of the last, partial 4 KiB block staged so far: the next buffer starts with
    /// them, because O_DIRECT writes whole blocks.
    pub(crate) carry: Vec<u8>,
}

/// Why the log stopped: kept so that every later call reports the original cause.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) op: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) kind: std::io::ErrorKind,
    pub(crate) message: String,
}

impl Failure {
    /// A full disk reads as such; any other failure poisons the log.
    fn to_error(&self) -> Error {
        let cause = std::io::Error::new(self.kind, self.message.clone());
        match self.kind {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Error::io(self.op, self.path.clone(), cause)
            }
            _ => Error::Poisoned {
                op: self.op,
                path: self.path.clone(),
                cause,
            },
        }
    }
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir`, recovering its tail. See [`RecoveryReport`].
    pub async fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<(SegmentLog, RecoveryReport)> {
        SegmentLog::open_on(DmaDisk, dir, config).await
    }
}

impl<D: Disk> SegmentLog<D> {
    /// Opens the log in `dir` as [`SegmentLog::open`] does, writing through `disk`.
    pub async fn open_on(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<(SegmentLog<D>, RecoveryReport)> {
        config.validate()?;
        recovery::open(disk, dir.as_ref(), config).await
    }

    /// Appends `batch`, setting its base offset, and resolves when the durability policy is
    /// met. Returns the batch's base offset. Appends resolve in offset order.
    pub async fn append(&self, batch: &mut Batch) -> Result<u64> {
        let started = std::time::Instant::now();
        self.wait_for_room().await?;
        let end = writer::stage(&self.shared, batch)?;
        self.wait_acked(end).await?;
        stats::appended(batch.encoded_len() as u64, started.elapsed());
        Ok(batch.header().base_offset)
    }

    /// Forces an `fdatasync` of everything appended so far, whatever the policy.
    pub async fn sync(&self) -> Result<()> {
        let target = {
            let mut state = self.shared.state.borrow_mut();
            state.sync_wanted = state.sync_wanted.max(state.next_offset);
            state.next_offset
        };
        self.shared.work.notify();
        self.wait_until(|state| state.synced_offset >= target).await
    }

    /// A reader positioned at the batch holding `offset`.
    pub fn reader(&self, offset: u64) -> Result<LogReader<D>> {
        LogReader::new(self.shared.clone(), offset)
    }

    /// The offset the next append will get.
    pub fn next_offset(&self) -> u64 {
        self.shared.state.borrow().next_offset
    }

    /// The first offset still held (retention removes segments below it).
    pub fn start_offset(&self) -> u64 {
        let state = self.shared.state.borrow();
        state
            .sealed
            .first()
            .map_or(state.active.base_offset, |s| s.base_offset)
    }

    /// Offsets below this are acknowledged: durable as the policy promises, visible to readers.
    pub fn acked_offset(&self) -> u64 {
        self.shared
            .state
            .borrow()
            .acked_offset(self.shared.config.durability)
    }

    /// Offsets below this are on stable storage.
    pub fn synced_offset(&self) -> u64 {
        self.shared.state.borrow().synced_offset
    }

    /// Number of segment files, the active one included.
    pub fn segment_count(&self) -> usize {
        self.shared.state.borrow().sealed.len() + 1
    }

    /// Counters since open.
    pub fn probe(&self) -> LogProbe {
        self.shared.state.borrow().probe
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Deletes every sealed segment whose rows all lie below `offset`; returns how many.
    /// The active segment is never deleted. Readers already inside a deleted segment finish it.
    pub async fn delete_before(&self, offset: u64) -> Result<usize> {
        writer::delete_before(&self.shared, offset).await
    }

    /// Writes and syncs everything staged and stops the flusher. The directory lock is released
    /// when the last handle to the log, readers included, is dropped: readers' memory maps are
    /// only sound while no other process may write the directory.
    pub async fn close(self) -> Result<()> {
        let flusher = {
            let mut state = self.shared.state.borrow_mut();
            state.closing = true;
            state.flusher.take()
        };
        self.shared.work.notify();
        if let Some(flusher) = flusher {
            flusher.await;
        }
        let file = self.shared.state.borrow_mut().active.file.take();
        if let Some(file) = file {
            let path = self.shared.state.borrow().active.path.clone();
            file.close()
                .await
                .map_err(|e| Error::io("closing segment", path, e))?;
        }
        let state = self.shared.state.borrow();
        match &state.failure {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }

    async fn wait_for_room(&self) -> Result<()> {
        let limit = self.shared.config.pending_bytes_max;
        self.wait_until(|state| state.pending_bytes < limit).await
    }

    async fn wait_acked(&self, end: u64) -> Result<()> {
        let durability = self.shared.config.durability;
        self.wait_until(|state| state.acked_offset(durability) >= end)
            .await
    }

    async fn wait_until(&self, done: impl Fn(&State<D>) -> bool) -> Result<()> {
        loop {
            let changed = self.shared.progress.changed();
            {
                let state = self.shared.state.borrow();
                // Met before a later failure still counts: the policy was honoured.
                if done(&state) {
                    return Ok(());
                }
                state.check_usable()?;
                if state.flusher_exited {
                    return Err(Error::Closed);
                }
            }
            changed.await;
        }
    }
}

impl<D: Disk> State<D> {
    pub(crate) fn acked_offset(&self, durability: Durability) -> u64 {
        match durability {
            Durability::Always => self.synced_offset,
            Durability::Interval(_) | Durability::Never => self.written_offset,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if let Some(failure) = &self.failure {
            return Err(failure.to_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
