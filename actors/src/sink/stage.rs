//! Staging files of the transactional sinks (Kafka and PostgreSQL exactly-once): a sink
//! instance appends the framed records of the current checkpoint to
//! `<dir>/c<core>-<checkpoint>-<run>.inprogress`; when the checkpoint's barrier aligns the
//! file is synced and renamed `….staged` (the pre-commit), and the sink writes it to the
//! external system in one transaction once the checkpoint is complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// One instance's staging files.
pub(super) struct StageFiles {
    pub(super) dir: PathBuf,
    core: usize,
    /// The checkpoint the records appended now belong to.
    pub(super) epoch: u64,
    file: Option<std::fs::File>,
    buffer: Vec<u8>,
    /// Staged files waiting for their checkpoint to complete: (checkpoint, path).
    pub(super) staged: Vec<(u64, PathBuf)>,
    /// This instance's run, in the names of its files: a transaction committed again after
    /// a crash keeps it, a checkpoint's rows written again by a replay get another.
    run: String,
}

impl StageFiles {
    /// The staging files of `core` in `dir` (created), starting at checkpoint `epoch`.
    pub(super) fn new(dir: PathBuf, core: usize, epoch: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir).map_err(|err| Error::io(&dir, err))?;
        Ok(StageFiles {
            dir,
            core,
            epoch,
            file: None,
            buffer: Vec::new(),
            staged: Vec::new(),
            run: run_id(),
        })
    }

    fn path(&self, id: u64, suffix: &str) -> PathBuf {
        let (core, run) = (self.core, &self.run);
        self.dir.join(format!("c{core}-{id:020}-{run}.{suffix}"))
    }

    /// Appends one record of framed fields: per field a u32 length (`u32::MAX`: none) and
    /// its bytes.
    pub(super) fn append(&mut self, fields: &[Option<&[u8]>]) {
        for part in fields {
            match part {
                None => self.buffer.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(bytes) => {
                    self.buffer
                        .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    self.buffer.extend_from_slice(bytes);
                }
            }
        }
    }

    /// Bytes appended and not yet written to the file.
    pub(super) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    pub(super) fn write_out(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = self.path(self.epoch, "inprogress");
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(|err| Error::io(&path, err))?;
            self.file = Some(file);
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(&self.buffer)
                .map_err(|err| Error::io(&path, err))?;
        }
        self.buffer.clear();
        Ok(())
    }

    /// Syncs the file of checkpoint `id` and renames it `….staged`; nothing when it is empty.
    pub(super) async fn seal(&mut self, id: u64) -> Result<(), Error> {
        self.write_out()?;
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let from = self.path(self.epoch, "inprogress");
        let to = self.path(id, "staged");
        let dir = self.dir.clone();
        let (from_moved, to_moved) = (from.clone(), to.clone());
        glommio::executor()
            .spawn_blocking(move || -> std::io::Result<()> {
                file.sync_data()?;
                std::fs::rename(&from_moved, &to_moved)?;
                std::fs::File::open(&dir)?.sync_all()
            })
            .await
            .map_err(|err| Error::io(&from, err))?;
        self.staged.push((id, to));
        Ok(())
    }
}

/// A hex id of this process's run of a sink instance (time and pid).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:x}{:x}", std::process::id())
}

/// The bytes of staged file `path`.
pub(super) fn read_staged(path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|err| Error::io(path, err))?;
    Ok(bytes)
}

/// One framed field at `at`: its bytes (`None`: absent) and where the next starts.
pub(super) fn frame(bytes: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
    if len == u32::MAX {
        return Some((None, at + 4));
    }
    let end = at + 4 + len as usize;
    Some((Some(bytes.get(at + 4..end)?), end))
}

pub(super) fn corrupt(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::other("the staged transaction file is cut short"),
    )
}

/// `(core, checkpoint, staged, path)` of the files in a staging directory.
pub(super) fn staged_files(dir: &Path) -> Result<Vec<(usize, u64, bool, PathBuf)>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io(dir, err)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, suffix)) = name.rsplit_once('.') else {
            continue;
        };
        let mut fields = stem.strip_prefix('c').unwrap_or_default().splitn(3, '-');
        let (Some(core), Some(id)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(core), Ok(id)) = (core.parse::<usize>(), id.parse::<u64>()) else {
            continue;
        };
        files.push((core, id, suffix == "staged", entry.path()));
    }
    Ok(files)
}
