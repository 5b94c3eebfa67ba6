//! The file seam under the raft log store: a [`Disk`] of named files in one directory.
//!
//! [`FsDisk`] is the real one (fdatasync on `sync`, write-temp-sync-rename for `replace`);
//! [`MemDisk`] is the simulation's, and on [`MemDisk::crash`] it drops every write not yet synced
//! (optionally keeping a torn prefix of the last unsynced append).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Named files in one directory, as the raft log store needs them.
pub trait Disk: Send + 'static {
    /// The file's bytes, or `None` when it does not exist.
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Appends to the file (creating it); durable only after [`Disk::sync`].
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes every append to the file durable (fdatasync).
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Replaces the file's whole content atomically and durably.
    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// A path or label for error messages.
    fn describe(&self, name: &str) -> String;
}

/// Files in a real directory.
pub struct FsDisk {
    dir: PathBuf,
    open: BTreeMap<String, File>,
}

impl FsDisk {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> io::Result<FsDisk> {
        std::fs::create_dir_all(dir)?;
        Ok(FsDisk {
            dir: dir.to_owned(),
            open: BTreeMap::new(),
        })
    }

    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if !self.open.contains_key(name) {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))?;
            self.open.insert(name.to_owned(), f);
        }
        Ok(self.open.get_mut(name).expect("just inserted"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl Disk for FsDisk {
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match File::open(self.dir.join(name)) {
            Ok(mut f) => {
                let mut out = Vec::new();
                f.read_to_end(&mut out)?;
                Ok(Some(out))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let f = self.file(name)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.open.remove(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(name))?;
        self.sync_dir()
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A file's bytes; the first `durable_len` of them survive a crash. Appends only extend the
/// bytes, so the durable part is always a prefix.
#[derive(Default)]
struct MemFile {
    bytes: Vec<u8>,
    durable_len: usize,
}

/// In-memory files shared by clones; [`MemDisk::crash`] loses what was not synced.
#[derive(Clone, Default)]
pub struct MemDisk {
    files: Arc<Mutex<BTreeMap<String, MemFile>>>,
    power: Arc<Mutex<Power>>,
}

/// A simulated power loss: armed with the writes left before it, then lost until the crash.
#[derive(Default)]
struct Power {
    writes_left: Option<usize>,
    lost: bool,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    /// Simulates power loss: every file goes back to its last synced content, plus the first
    /// `torn_bytes` bytes of what was appended after it (a torn write), at most all of them.
    pub fn crash(&self, torn_bytes: usize) {
        *self.power.lock().expect("mem disk lock") = Power::default();
        let mut files = self.files.lock().expect("mem disk lock");
        for f in files.values_mut() {
            let keep = f.durable_len + (f.bytes.len() - f.durable_len).min(torn_bytes);
            f.bytes.truncate(keep);
            f.durable_len = keep;
        }
    }

    /// Arms a power loss after `writes` more appends, syncs, truncates or replaces: from then on
    /// every write fails until [`MemDisk::crash`], so a crash can land inside a ready step.
    pub fn lose_power_after(&self, writes: usize) {
        let mut power = self.power.lock().expect("mem disk lock");
        if !power.lost {
            power.writes_left = Some(writes);
        }
    }

    /// Disarms a power loss that has not happened yet.
    pub fn keep_power(&self) {
        self.power.lock().expect("mem disk lock").writes_left = None;
    }

    /// Whether an armed power loss has happened (writes are failing).
    pub fn power_lost(&self) -> bool {
        self.power.lock().expect("mem disk lock").lost
    }

    fn write_op(&self) -> io::Result<()> {
        let mut power = self.power.lock().expect("mem disk lock");
        match power.writes_left {
            _ if power.lost => {}
            Some(0) => power.lost = true,
            Some(n) => {
                power.writes_left = Some(n - 1);
                return Ok(());
            }
            None => return Ok(()),
        }
        Err(io::Error::other("simulated power loss"))
    }

    /// Flips one byte of a file (durably), to test corruption handling.
    pub fn corrupt(&self, name: &str, offset: usize) {
        let mut files = self.files.lock().expect("mem disk lock");
        if let Some(f) = files.get_mut(name) {
            if offset < f.bytes.len() {
                f.bytes[offset] ^= 0x5a;
            }
        }
    }

    /// The current length of a file.
    pub fn len(&self, name: &str) -> usize {
        let files = self.files.lock().expect("mem disk lock");
        files.get(name).map_or(0, |f| f.bytes.len())
    }

    /// Whether no file has any bytes.
    pub fn is_empty(&self) -> bool {
        let files = self.files.lock().expect("mem disk lock");
        files.values().all(|f| f.bytes.is_empty())
    }
}

impl Disk for MemDisk {
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let files = self.files.lock().expect("mem disk lock");
        Ok(files.get(name).map(|f| f.bytes.clone()))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_op()?;
        let mut files = self.files.lock().expect("mem disk lock");
        files
            .entry(name.to_owned())
            .or_default()
            .bytes
            .extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.write_op()?;
        let mut files = self.files.lock().expect("mem disk lock");
        let f = files.entry(name.to_owned()).or_default();
        f.durable_len = f.bytes.len();
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.write_op()?;
        let mut files = self.files.lock().expect("mem disk lock");
        let f = files.entry(name.to_owned()).or_default();
        f.bytes.truncate(len as usize);
        f.durable_len = f.bytes.len();
        Ok(())
    }

    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_op()?;
        let mut files = self.files.lock().expect("mem disk lock");
        let f = files.entry(name.to_owned()).or_default();
        f.bytes = bytes.to_vec();
        f.durable_len = f.bytes.len();
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        format!("mem:{name}")
    }
}
