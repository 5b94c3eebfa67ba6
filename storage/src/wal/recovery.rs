//! Opening a log: lock the directory, map and check sealed segments, scan the last segment's
//! tail, keep every whole batch, and cut a torn tail off.
//!
//! Invariant: after `open`, every byte of the active segment below its length is part of a
//! verified batch, and offsets run without gaps from the first segment to the last.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{self, File};

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::flusher::run_flusher;
use super::segment::{
    parse_segment_file_name, segment_file_name, valid_batch_after, walk, SealedSegment, SparseIndex,
};
use super::writer::align_down;
use super::{Active, LogConfig, Owner, SegmentLog, Shared, StagingCursor, State, WRITE_ALIGNMENT};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::signal::Signal;

/// Name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";

/// What `open` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in the log after recovery.
    pub segments: usize,
    /// First offset held.
    pub start_offset: u64,
    /// Offset the next append gets.
    pub next_offset: u64,
    /// Bytes of a torn or corrupt tail that were cut off, if any.
    pub truncated: Option<Truncation>,
    /// Zero bytes after the last batch (block padding and zeros written ahead of the data in an
    /// unsealed segment) that were dropped.
    pub padding_bytes: u64,
}

/// A torn or corrupt tail cut off by recovery. No acknowledged batch is ever in it unless the
/// device lost synced data (see `LogConfig::truncate_corrupt_tail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Segment file that was cut.
    pub segment: PathBuf,
    /// Byte position the file was cut at: the end of the last whole batch.
    pub position: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Why the first removed byte did not start a whole batch.
    pub reason: String,
}

pub(super) async fn open<D: Disk>(
    disk: D,
    dir: &Path,
    config: LogConfig,
) -> Result<(SegmentLog<D>, RecoveryReport)> {
    fs::create_dir_all(dir).map_err(|e| Error::io("creating log directory", dir, e))?;
    // glommio resolves relative paths against an invalid directory descriptor; use absolute ones.
    let dir = &fs::canonicalize(dir).map_err(|e| Error::io("resolving log directory", dir, e))?;
    let lock = lock_dir(dir)?;
    prime_iopoll_probe(dir).await?;
    let mut bases = list_segments(dir)?;
    if bases.is_empty() {
        let path = dir.join(segment_file_name(0));
        File::create(&path).map_err(|e| Error::io("creating segment", &path, e))?;
        disk.sync_dir(dir).await?;
        bases.push(0);
    }
    let Some((&last_base, sealed_bases)) = bases.split_last() else {
        unreachable!("one segment exists")
    };
    let sealed = open_sealed(dir, sealed_bases, &config)?;
    check_continuity(dir, sealed.last(), last_base)?;
    let path = dir.join(segment_file_name(last_base));
    let tail = recover_tail(&path, last_base, &config)?;
    let file = disk.open(&path, false).await?;
    let report = RecoveryReport {
        segments: sealed.len() + 1,
        start_offset: sealed.first().map_or(last_base, |s| s.base_offset),
        next_offset: tail.next_offset,
        truncated: tail.truncated.clone(),
        padding_bytes: tail.padding_bytes,
    };
    log_report(dir, &report);
    let state = recovered_state(sealed, path, Rc::new(file), last_base, tail);
    let shared = Rc::new(Shared {
        dir: dir.to_owned(),
        config,
        disk,
        state: RefCell::new(state),
        work: Signal::default(),
        progress: Signal::default(),
        _lock: lock,
    });
    let flusher = glommio::spawn_local(run_flusher(shared.clone())).detach();
    shared.state.borrow_mut().flusher = Some(flusher);
    let log = SegmentLog {
        shared: shared.clone(),
        _owner: Rc::new(Owner(shared)),
    };
    Ok((log, report))
}

/// The log's state after recovery: `sealed` segments and the active one at `path` (based at
/// `base`, opened as `file`) whose recovered `tail` everything continues from.
fn recovered_state<D: Disk>(
    sealed: Vec<Rc<SealedSegment>>,
    path: PathBuf,
    file: Rc<D::File>,
    base: u64,
    tail: Tail,
) -> State<D> {
    let index = Rc::new(RefCell::new(tail.index));
    State {
        sealed,
        active: Active {
            base_offset: base,
            path,
            file: Some(file),
            written_len: tail.len,
            zeroed_len: tail.len,
            index: index.clone(),
        },
        staging: StagingCursor {
            base_offset: base,
            len: tail.len,
            index,
            carry: tail.carry,
        },
        open: None,
        queue: VecDeque::new(),
        next_offset: tail.next_offset,
        written_offset: tail.next_offset,
        synced_offset: tail.next_offset,
        pending_bytes: 0,
        sync_wanted: 0,
        failure: None,
        closing: false,
        flusher: None,
        flusher_exited: false,
        probe: Default::default(),
    }
}

fn log_report(dir: &Path, report: &RecoveryReport) {
    match &report.truncated {
        Some(cut) => tracing::warn!(
            dir = %dir.display(), segment = %cut.segment.display(), position = cut.position,
            bytes = cut.bytes, reason = %cut.reason, "segment log tail truncated on recovery"
        ),
        None => tracing::info!(
            dir = %dir.display(), segments = report.segments, next_offset = report.next_offset,
            "segment log opened"
        ),
    }
}

/// Makes glommio's once-per-device io_poll probe read real data.
///
/// glommio decides whether a device supports polled IO by reading the first block of the first
/// DMA file it opens there, and caches the answer for the process. If that file is empty (a new
/// segment) the read succeeds without reaching the device, the device is wrongly marked
/// pollable, and every later read fails with EOPNOTSUPP. Opening a one-block file first makes
/// the probe exercise the device for real.
async fn prime_iopoll_probe(dir: &Path) -> Result<()> {
    let path = dir.join(".iopoll-probe");
    fs::write(&path, [0u8; 4096]).map_err(|e| Error::io("writing io_poll probe file", &path, e))?;
    let opened = glommio::io::DmaFile::open(&path).await;
    let removed = fs::remove_file(&path);
    let file = opened.map_err(|e| {
        let err = std::io::Error::from(e);
        if err.kind() == std::io::ErrorKind::InvalidInput {
            Error::DirectIoUnsupported { path: path.clone() }
        } else {
            Error::io("opening io_poll probe file", &path, err)
        }
    })?;
    removed.map_err(|e| Error::io("removing io_poll probe file", &path, e))?;
    file.close()
        .await
        .map_err(|e| Error::io("closing io_poll probe file", &path, e))
}

/// Takes the directory's advisory lock and writes our pid into the lock file.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    crate::lock::lock_exclusive(&path).map_err(|err| match err {
        crate::lock::LockError::Held { holder } => Error::Locked {
            path: dir.to_owned(),
            holder,
        },
        crate::lock::LockError::Io(e) => Error::io("locking log directory", &path, e),
    })
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing log directory", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing log directory", dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Offsets must run without gaps: segment `base` starts where the previous one ended.
fn check_continuity(dir: &Path, previous: Option<&Rc<SealedSegment>>, base: u64) -> Result<()> {
    match previous {
        Some(previous) if previous.next_offset != base => Err(Error::Corrupt {
            path: dir.join(segment_file_name(base)),
            position: 0,
            reason: format!(
                "segment starts at {base}, previous one ends at {}",
                previous.next_offset
            ),
        }),
        _ => Ok(()),
    }
}

fn open_sealed(dir: &Path, bases: &[u64], config: &LogConfig) -> Result<Vec<Rc<SealedSegment>>> {
    let mut sealed: Vec<Rc<SealedSegment>> = Vec::with_capacity(bases.len());
    for &base in bases {
        check_continuity(dir, sealed.last(), base)?;
        let path = dir.join(segment_file_name(base));
        sealed.push(Rc::new(SealedSegment::open(
            &path,
            base,
            config.index_interval_bytes,
        )?));
    }
    Ok(sealed)
}

/// What follows the last whole batch of the last segment.
enum TailKind {
    /// Nothing but zeros after the last whole batch: O_DIRECT padding of the last block, and
    /// zeros the flusher wrote ahead of the data (`LogConfig::zero_ahead_bytes`).
    Padding,
    /// Unsynced writes that did not all reach the disk (torn or lost): safe to cut.
    Torn,
    /// Bad bytes with a whole batch after them and no sign of a lost write: bit rot or tampering.
    Damage { later: usize },
}

/// Bytes of the smallest unit a device writes whole: a lost or torn write loses whole sectors.
const SECTOR: usize = 512;

/// Tells padding, a torn tail and damage apart. The flusher has several writes in flight, each
/// ending on a block boundary, and a power loss may keep any of them and tear any at a sector.
/// What a write loses is a suffix of it, so a lost write shows as either
/// - the last sector of a block reading as zeros (never-written bytes of a fresh file), or
/// - zeros from the last whole batch to the end of its block: the padding of a write whose
///   successor, which rewrote that block, never reached the disk.
///
/// Either before a later whole batch means the batches after it belonged to unsynced writes,
/// not to acknowledged data. Anything else before a whole batch is damage.
fn classify_tail(bytes: &[u8], valid_len: usize) -> TailKind {
    let rest = &bytes[valid_len..];
    let block = WRITE_ALIGNMENT as usize;
    let padding_end = valid_len.div_ceil(block) * block;
    if rest.iter().all(|&b| b == 0) {
        return TailKind::Padding;
    }
    let Some(later) = valid_batch_after(bytes, valid_len) else {
        return TailKind::Torn;
    };
    let zeros = |range: std::ops::Range<usize>| bytes[range].iter().all(|&b| b == 0);
    let padded = padding_end > valid_len && padding_end <= later && zeros(valid_len..padding_end);
    let lost_sector = (valid_len / block..later / block).any(|b| {
        let last_sector = (b + 1) * block - SECTOR;
        last_sector >= valid_len && zeros(last_sector..(b + 1) * block)
    });
    if padded || lost_sector {
        TailKind::Torn
    } else {
        TailKind::Damage { later }
    }
}

struct Tail {
    next_offset: u64,
    len: u64,
    index: SparseIndex,
    carry: Vec<u8>,
    truncated: Option<Truncation>,
    padding_bytes: u64,
}

/// Verifies every batch of the last segment and cuts the file after the last whole one.
fn recover_tail(path: &Path, base: u64, config: &LogConfig) -> Result<Tail> {
    let map = super::segment::map_sealed(path)?;
    let bytes = map.as_deref().unwrap_or_default();
    super::segment::check_segment_len(path, bytes.len())?;
    let found = walk(bytes, base, true, config.index_interval_bytes);
    let valid_len = found.valid_len as usize;
    let rest = &bytes[valid_len..];
    let mut truncated = None;
    let mut padding_bytes = 0;
    if let Some(reason) = found.stop_reason {
        match classify_tail(bytes, valid_len) {
            TailKind::Padding => padding_bytes = rest.len() as u64,
            TailKind::Damage { later } if !config.truncate_corrupt_tail => {
                let reason = format!(
                    "{reason}; a whole batch follows at byte {later} with no lost block before it, so this \
                     is damage, not a torn tail: refusing to discard it (set truncate_corrupt_tail to override)"
                );
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    position: valid_len as u64,
                    reason,
                });
            }
            TailKind::Torn | TailKind::Damage { .. } => {
                truncated = Some(Truncation {
                    segment: path.to_owned(),
                    position: valid_len as u64,
                    bytes: rest.len() as u64,
                    reason,
                });
            }
        }
    }
    let carry = bytes[align_down(valid_len as u64) as usize..valid_len].to_vec();
    let cut = !rest.is_empty();
    drop(map);
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening segment", path, e))?;
    if cut {
        file.set_len(valid_len as u64)
            .map_err(|e| Error::io("truncating segment tail", path, e))?;
    }
    // Bytes a killed process wrote but never synced may sit in the device's volatile cache;
    // sync before counting anything in this segment as synced.
    file.sync_all()
        .map_err(|e| Error::io("syncing recovered segment", path, e))?;
    Ok(Tail {
        next_offset: found.next_offset,
        len: valid_len as u64,
        index: found.index,
        carry,
        truncated,
        padding_bytes,
    })
}
