//! A simulated disk for crash and fault tests, in the spirit of SQLite's crash VFS and
//! RocksDB's `sync_fault_injection`.
//!
//! The real files always hold what the process wrote (the page cache's view), so the log reads
//! and maps them as usual. Beside them the simulation keeps, per file, the bytes that are on
//! stable storage and the writes, truncations and directory entries that are not yet synced.
//! [`SimDisk::crash`] is a power loss: each file is rewritten to what survived, chosen by a
//! seeded PRNG among: every unsynced write dropped, a prefix of them kept, a prefix kept and
//! the next write torn at a 512-byte sector boundary, or any subset kept with some torn (a
//! volatile cache that writes back out of order); a file whose directory entry was never
//! synced may vanish. A failed `fdatasync` behaves as Linux does (fsyncgate): the unsynced
//! writes are dropped from what can ever become durable, while the file still reads them back,
//! and a later sync "succeeds".
//!
//! Unlinks (retention) are not modelled: a file deleted through `std::fs` stays deleted.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use super::{open_dma, Disk, DiskFile};
use crate::error::{Error, Result};

/// Bytes of one sector: a torn write keeps a whole number of them.
pub const SECTOR_BYTES: usize = 512;

/// `EIO` on Linux.
const EIO: i32 = 5;

/// A simulated disk. Cheap to clone; every clone is the same disk.
#[derive(Clone)]
pub struct SimDisk {
    state: Rc<RefCell<SimState>>,
}

/// What one file kept through a simulated crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Survived {
    /// The file's directory entry was never synced, and the file is gone.
    Vanished,
    /// The synced bytes plus the first `kept` of `pending` unsynced operations, and the first
    /// `torn_bytes` bytes of the next write if it was torn.
    Kept {
        /// Unsynced operations applied, in order.
        kept: usize,
        /// Unsynced operations there were.
        pending: usize,
        /// Bytes of the next write that reached the disk (a multiple of [`SECTOR_BYTES`]).
        torn_bytes: Option<usize>,
    },
    /// The synced bytes plus the unsynced operations at `kept` (in order, any subset), some
    /// writes torn: a device whose volatile cache writes back out of order.
    Scattered {
        /// Indexes of the unsynced operations applied.
        kept: Vec<usize>,
        /// Unsynced operations there were.
        pending: usize,
    },
}

struct SimState {
    rng: SplitMix64,
    files: BTreeMap<PathBuf, SimFileState>,
    ops: u64,
    writes: u64,
    syncs: u64,
    crash_at_op: Option<u64>,
    fail_write: Option<u64>,
    fail_sync: Option<u64>,
    crashed: bool,
    /// Files opened and not yet dropped.
    open_files: usize,
    /// Writes handed to the real file whose caller has not seen them complete.
    writes_running: usize,
}

#[derive(Default)]
struct SimFileState {
    durable: Vec<u8>,
    pending: Vec<Pending>,
    entry_durable: bool,
}

enum Pending {
    Write { position: usize, bytes: Vec<u8> },
    SetLen(usize),
}

/// Which disk operation is being done.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Write,
    Sync,
    Other,
}

impl SimDisk {
    /// A disk whose crash choices follow `seed`.
    pub fn new(seed: u64) -> SimDisk {
        let state = SimState {
            rng: SplitMix64(seed),
            files: BTreeMap::new(),
            ops: 0,
            writes: 0,
            syncs: 0,
            crash_at_op: None,
            fail_write: None,
            fail_sync: None,
            crashed: false,
            open_files: 0,
            writes_running: 0,
        };
        SimDisk {
            state: Rc::new(RefCell::new(state)),
        }
    }

    /// The machine stops at disk operation `op` (1-based; writes, syncs, truncations, file
    /// creations and directory syncs count): it and every later one fail without effect.
    pub fn crash_at_op(&self, op: u64) {
        self.state.borrow_mut().crash_at_op = Some(op);
    }

    /// The `n`th write from now (1-based) fails with `EIO` and writes nothing.
    pub fn fail_write(&self, n: u64) {
        let mut state = self.state.borrow_mut();
        state.fail_write = Some(state.writes + n);
    }

    /// The `n`th `fdatasync` from now (1-based) fails with `EIO`, and the file's unsynced
    /// writes can then never become durable (they still read back, as from the page cache).
    pub fn fail_sync(&self, n: u64) {
        let mut state = self.state.borrow_mut();
        state.fail_sync = Some(state.syncs + n);
    }

    /// Disk operations done so far (the numbering of [`SimDisk::crash_at_op`]).
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }

    /// `fdatasync` calls so far, failed ones included.
    pub fn syncs(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// Files opened on this disk whose last handle is not yet dropped: after a log's `close`
    /// returns, none of its files may be left (a real descriptor would leak).
    pub fn open_files(&self) -> usize {
        self.state.borrow().open_files
    }

    /// Writes started on the real file that no caller waited out: a write whose future was
    /// dropped mid-flight still runs in the kernel, holding the file, after its caller moved on.
    pub fn writes_running(&self) -> usize {
        self.state.borrow().writes_running
    }

    /// Whether the machine has stopped (see [`SimDisk::crash_at_op`]).
    pub fn crashed(&self) -> bool {
        self.state.borrow().crashed
    }

    /// Loses power: rewrites every file this disk knows to what survived, and forgets them.
    /// Close the log first. Open the directory again with a new disk.
    pub fn crash(&self) -> io::Result<Vec<(PathBuf, Survived)>> {
        let mut state = self.state.borrow_mut();
        state.crashed = true;
        let files = std::mem::take(&mut state.files);
        let mut outcome = Vec::with_capacity(files.len());
        for (path, file) in files {
            if !path.exists() {
                continue; // Unlinked by retention: not modelled.
            }
            if !file.entry_durable && state.rng.below(2) == 0 {
                std::fs::remove_file(&path)?;
                outcome.push((path, Survived::Vanished));
                continue;
            }
            let (image, survived) = survivor(&mut state.rng, file);
            std::fs::write(&path, image)?;
            outcome.push((path, survived));
        }
        Ok(outcome)
    }
}

/// The bytes of one file after a power loss, chosen by `rng`.
fn survivor(rng: &mut SplitMix64, file: SimFileState) -> (Vec<u8>, Survived) {
    let SimFileState {
        durable: mut image,
        pending,
        ..
    } = file;
    let (kept, tear) = match rng.below(4) {
        3 => return scattered(rng, image, &pending),
        0 => (0, false),
        1 => (rng.below(pending.len() as u64 + 1) as usize, false),
        _ => (rng.below(pending.len() as u64 + 1) as usize, true),
    };
    pending[..kept].iter().for_each(|op| apply(&mut image, op));
    let mut torn_bytes = None;
    if let (true, Some(Pending::Write { position, bytes })) = (tear, pending.get(kept)) {
        let sectors = bytes.len().div_ceil(SECTOR_BYTES) as u64;
        let len = (rng.below(sectors) as usize * SECTOR_BYTES).min(bytes.len());
        apply(
            &mut image,
            &Pending::Write {
                position: *position,
                bytes: bytes[..len].to_vec(),
            },
        );
        torn_bytes = Some(len);
    }
    let survived = Survived::Kept {
        kept,
        pending: pending.len(),
        torn_bytes,
    };
    (image, survived)
}

/// Applies any subset of `pending` to `image`, in order, tearing some of the kept writes at a
/// sector boundary.
fn scattered(rng: &mut SplitMix64, mut image: Vec<u8>, pending: &[Pending]) -> (Vec<u8>, Survived) {
    let mut kept = Vec::new();
    for (index, op) in pending.iter().enumerate() {
        if rng.below(2) == 0 {
            continue;
        }
        match op {
            Pending::Write { position, bytes } if rng.below(4) == 0 => {
                let sectors = bytes.len().div_ceil(SECTOR_BYTES) as u64;
                let len = (rng.below(sectors) as usize * SECTOR_BYTES).min(bytes.len());
                let torn = Pending::Write {
                    position: *position,
                    bytes: bytes[..len].to_vec(),
                };
                apply(&mut image, &torn);
            }
            op => apply(&mut image, op),
        }
        kept.push(index);
    }
    let survived = Survived::Scattered {
        kept,
        pending: pending.len(),
    };
    (image, survived)
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { position, bytes } => {
            let end = position + bytes.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*position..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => image.resize(*len, 0),
    }
}

impl SimState {
    /// Counts one operation; fails it if the machine has stopped or a fault is due.
    fn step(&mut self, kind: OpKind) -> io::Result<()> {
        self.ops += 1;
        if self.crash_at_op.is_some_and(|at| self.ops >= at) {
            self.crashed = true;
        }
        if self.crashed {
            return Err(io::Error::other("simulated power loss"));
        }
        match kind {
            OpKind::Write => {
                self.writes += 1;
                if self.fail_write == Some(self.writes) {
                    return Err(io::Error::from_raw_os_error(EIO));
                }
            }
            OpKind::Sync => {
                self.syncs += 1;
                if self.fail_sync == Some(self.syncs) {
                    return Err(io::Error::from_raw_os_error(EIO));
                }
            }
            OpKind::Other => {}
        }
        Ok(())
    }

    fn file(&mut self, path: &Path) -> &mut SimFileState {
        self.files.entry(path.to_owned()).or_default()
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, create: bool) -> Result<SimFile> {
        if create {
            let step = self.state.borrow_mut().step(OpKind::Other);
            step.map_err(|e| Error::io("creating segment", path, e))?;
        }
        let real = open_dma(path, create).await?;
        let mut state = self.state.borrow_mut();
        if !state.files.contains_key(path) {
            // A file the disk has not seen yet: what it holds now is on stable storage.
            let durable = if create {
                Vec::new()
            } else {
                std::fs::read(path).map_err(|e| Error::io("reading segment", path, e))?
            };
            let file = SimFileState {
                durable,
                pending: Vec::new(),
                entry_durable: !create,
            };
            state.files.insert(path.to_owned(), file);
        }
        state.open_files += 1;
        Ok(SimFile {
            path: path.to_owned(),
            real,
            disk: self.state.clone(),
            _open: OpenFile(self.state.clone()),
        })
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut state = self.state.borrow_mut();
        state
            .step(OpKind::Other)
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        for (path, file) in state.files.iter_mut() {
            if path.parent() == Some(dir) {
                file.entry_durable = true;
            }
        }
        Ok(())
    }
}

/// A file on a [`SimDisk`].
pub struct SimFile {
    path: PathBuf,
    real: DmaFile,
    disk: Rc<RefCell<SimState>>,
    _open: OpenFile,
}

/// Counts a [`SimFile`] as open until it is dropped.
struct OpenFile(Rc<RefCell<SimState>>);

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.0.borrow_mut().open_files -= 1;
    }
}

impl DiskFile for SimFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, position: u64) -> io::Result<usize> {
        {
            let mut disk = self.disk.borrow_mut();
            disk.step(OpKind::Write)?;
            disk.writes_running += 1;
        }
        let written = self.real.write_rc_at(buf.clone(), position).await;
        self.disk.borrow_mut().writes_running -= 1;
        let written = written?;
        let write = Pending::Write {
            position: position as usize,
            bytes: buf.as_bytes()[..written].to_vec(),
        };
        self.disk.borrow_mut().file(&self.path).pending.push(write);
        Ok(written)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        let step = disk.step(OpKind::Sync);
        let crashed = disk.crashed;
        let file = disk.file(&self.path);
        if crashed {
            // The machine stopped: the unsynced writes are for `crash` to decide.
            return step;
        }
        // On EIO the kernel marks the pages clean: they never reach the disk (fsyncgate).
        let pending = std::mem::take(&mut file.pending);
        step?;
        pending.iter().for_each(|op| apply(&mut file.durable, op));
        Ok(())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.disk.borrow_mut().step(OpKind::Other)?;
        self.real.truncate(len).await?;
        let op = Pending::SetLen(len as usize);
        self.disk.borrow_mut().file(&self.path).pending.push(op);
        Ok(())
    }

    async fn close(self: Rc<Self>) -> io::Result<()> {
        match Rc::try_unwrap(self) {
            Ok(file) => Ok(file.real.close().await?),
            Err(_) => Ok(()),
        }
    }

    fn dma(&self) -> &DmaFile {
        &self.real
    }
}

/// A small seeded PRNG (SplitMix64): reproducible crash choices without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
