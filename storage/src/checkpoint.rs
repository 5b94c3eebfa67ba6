//! Checkpoint storage: one directory per completed checkpoint, written so that a half-written
//! checkpoint is never used.
//!
//! ```text
//! <checkpoints>/chk-00000007/
//!     state-<operator>-c<core>.bin   one file per stateful operator instance
//!     MANIFEST                       written, synced and renamed into place last
//! ```
//!
//! A state file is a sequence of sections, one per key group: `key group: u32`, `length: u32`,
//! the operator's sealed snapshot bytes. The manifest (JSON, then a `crc32c` line over it)
//! names the pipeline, the checkpoint id, every source's positions and every state file with
//! its size and CRC-32C. A checkpoint counts only when its manifest parses, its checksum holds
//! and every file it lists has that size and checksum: [`CheckpointStore::latest`] skips
//! anything else and falls back to the previous checkpoint.
//!
//! Plain blocking `std::fs`: the coordinator calls this from its own threads, never from a
//! data core.
//!
//! # Safety contract
//! [`read_dir`] memory-maps state files, and their sections are slices of the maps. A state
//! file is written once, synced before its manifest exists, and never modified or truncated
//! after; retention only unlinks whole directories, which leaves existing maps valid until
//! their last slice drops. A user editing files of a checkpoint directory while a run restores
//! from it is outside the contract.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value as Json};
use wire_core::state::snapshot::Section;

mod remote;
pub use remote::{Remote, RemoteDir, StoreUrl};

/// The manifest format this build writes (it reads every earlier one too). Format 2 added
/// incremental checkpoints: file entries may be deltas and may live in an earlier checkpoint.
pub const FORMAT: u64 = 2;
const MANIFEST: &str = "MANIFEST";
/// Left in a retired checkpoint whose files newer checkpoints still read.
const RETIRED: &str = "RETIRED";

/// What can go wrong reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The checkpoint store (an S3 bucket) could not be reached or refused a request.
    #[error("checkpoint store {url}: {reason}")]
    Store {
        /// The store's URL.
        url: String,
        /// What failed, and the cause.
        reason: String,
    },
    /// A checkpoint's files are damaged, truncated or not a checkpoint.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file found damaged.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl CheckpointError {
    fn io(path: &Path, source: io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn corrupt(path: &Path, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Where one source instance was when it emitted its barrier (or finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The partition.
    pub partition: u32,
    /// The source's position in it: the next WAL offset, generator event number or file
    /// byte offset to read.
    pub position: u64,
    /// Lines read before `position` (file sources, for line numbers in errors); 0 otherwise.
    pub line: u64,
    /// A position a number cannot hold, as text (a MongoDB change stream's resume token);
    /// `None` for the other sources. Kept in the manifest only when present.
    pub token: Option<String>,
}

/// Every partition position of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// The source's name in the pipeline.
    pub name: String,
    /// How many partitions the source had.
    pub partitions: u32,
    /// One entry per partition.
    pub positions: Vec<SourcePosition>,
}

/// One operator instance's part of a checkpoint: its whole state, or the changes since its
/// part of the checkpoint named by [`Checkpoint::base`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// The core the instance ran on.
    pub core: usize,
    /// One section per key group it holds (or changed).
    pub sections: Vec<Section>,
    /// Whether `sections` are changes to apply on top of the same core's earlier entries.
    pub delta: bool,
}

/// The state of one stateful operator, over all its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorState {
    /// The operator's name in the pipeline.
    pub name: String,
    /// Its kind (`hop window`, `top`, …), checked when restoring.
    pub kind: String,
    /// The instances' state. A checkpoint read back lists, per core, its whole state first and
    /// then the changes of each later checkpoint, oldest first: restore applies them in order.
    pub instances: Vec<InstanceState>,
}

/// Everything a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Checkpoint ids grow by one per trigger.
    pub id: u64,
    /// The pipeline's name.
    pub pipeline: String,
    /// Data cores of the run that took it.
    pub cores: usize,
    /// Key groups of the pipeline.
    pub max_parallelism: u32,
    /// Whether it was taken as the run ended (every source finished or stopped).
    pub last: bool,
    /// The checkpoint whose state the delta instances of this one build on (written only:
    /// [`read_dir`] resolves the chain and leaves `None`).
    pub base: Option<u64>,
    /// Wall-clock time it completed, in epoch milliseconds.
    pub completed_ms: i64,
    /// Source positions.
    pub sources: Vec<SourceState>,
    /// Operator state.
    pub operators: Vec<OperatorState>,
}

/// What writing a checkpoint cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Bytes of state files and manifest.
    pub bytes: u64,
    /// Files written.
    pub files: usize,
}

/// What [`CheckpointStore::latest`] found: the newest checkpoint that reads back intact, and
/// every newer checkpoint directory (every one, when none is intact) that cannot be used.
#[derive(Debug)]
pub struct Latest {
    /// The checkpoint and its directory, if one is intact.
    pub loaded: Option<(Checkpoint, PathBuf)>,
    /// The directories passed over, newest first.
    pub skipped: Vec<Skipped>,
}

/// A checkpoint directory that cannot be restored.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The checkpoint's id.
    pub id: u64,
    /// Its directory.
    pub path: PathBuf,
    /// Why it cannot be used.
    pub reason: String,
    /// Whether it completed once: it holds a manifest (intact or not) or was retired. A
    /// directory without either is a checkpoint that was still being written when the run
    /// ended, which committed nothing.
    pub committed: bool,
}

impl Latest {
    /// Whether any skipped directory shows that a checkpoint completed there once.
    pub fn committed_before(&self) -> bool {
        self.skipped.iter().any(|s| s.committed)
    }
}

/// A directory of checkpoints, keeping the newest `retain`. With a [`Remote`] (an S3 store)
/// the bucket holds the checkpoints and the directory stages them: a checkpoint is written
/// there, uploaded (its manifest last), and only then complete; a restore downloads it there.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    retain: usize,
    remote: Option<Arc<Remote>>,
    /// Checkpoints from this id on are never retired, however many newer ones there are
    /// (see [`CheckpointStore::keeping_from`]).
    floor: Option<Arc<AtomicU64>>,
}

impl CheckpointStore {
    /// Opens (creating) `dir`, keeping the newest `retain` (at least 1) checkpoints.
    pub fn open(
        dir: impl Into<PathBuf>,
        retain: usize,
    ) -> Result<CheckpointStore, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| CheckpointError::io(&dir, e))?;
        Ok(CheckpointStore {
            dir,
            retain: retain.max(1),
            remote: None,
            floor: None,
        })
    }

    /// This store never retires a checkpoint whose id is `floor` or more, read at each
    /// retirement. A node's part store of a spread pipeline keeps the parts from the
    /// pipeline's last complete checkpoint on: a checkpoint completes only once every node
    /// wrote its part, and a node that is down stops that for as long as it is down, while
    /// the others go on writing parts; a restore needs each part of the last complete one.
    pub fn keeping_from(mut self, floor: Arc<AtomicU64>) -> CheckpointStore {
        self.floor = Some(floor);
        self
    }

    /// Opens the store at `url`, keeping the newest `retain` checkpoints: a directory as
    /// [`CheckpointStore::open`] does, an S3 store with `staging` as its local directory.
    pub fn open_url(
        url: &StoreUrl,
        staging: impl Into<PathBuf>,
        retain: usize,
    ) -> Result<CheckpointStore, CheckpointError> {
        match url {
            StoreUrl::Dir(dir) => CheckpointStore::open(dir.clone(), retain),
            StoreUrl::S3 { bucket, prefix } => {
                let remote =
                    Remote::connect(bucket, prefix).map_err(|reason| CheckpointError::Store {
                        url: url.to_string(),
                        reason,
                    })?;
                let mut store = CheckpointStore::open(staging, retain)?;
                store.remote = Some(Arc::new(remote));
                Ok(store)
            }
        }
    }

    /// The directory (with an S3 store, the local staging directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the checkpoints are: the directory, or the S3 store's URL.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(remote) => remote.url().to_string(),
            None => self.dir.display().to_string(),
        }
    }

    /// Where checkpoint `id` is: its directory, or its URL in the S3 store.
    pub fn location_of(&self, id: u64) -> PathBuf {
        match &self.remote {
            Some(remote) => PathBuf::from(format!("{}/{}", remote.url(), dir_name(id))),
            None => self.path_of(id),
        }
    }

    /// The directory of checkpoint `id`.
    pub fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(dir_name(id))
    }

    /// Ids of every checkpoint directory (complete or not) in the directory, oldest first.
    pub fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut ids = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| CheckpointError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CheckpointError::io(&self.dir, e))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_dir_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The newest checkpoint id in use (complete or not), in the directory or the S3 store:
    /// the next checkpoint's id must be above it.
    pub fn newest_id(&self) -> Result<Option<u64>, CheckpointError> {
        let local = self.ids()?.last().copied();
        let remote = match &self.remote {
            Some(remote) => remote.dirs()?.keys().next_back().copied(),
            None => None,
        };
        Ok(local.max(remote))
    }

    /// Writes `checkpoint` as `chk-<id>` (with an S3 store, uploads it too before its manifest
    /// goes into place locally), then retires all but the newest `retain` complete
    /// checkpoints (and any incomplete directory older than the newest complete one). A delta
    /// instance's entry lists the files of its chain in [`Checkpoint::base`] first, so each
    /// manifest names every file its restore reads. On an error the partial directory is
    /// removed and the earlier checkpoints are untouched.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<Written, CheckpointError> {
        let path = self.path_of(checkpoint.id);
        let base = match checkpoint.base {
            Some(base) => Some((base, read_manifest(&self.path_of(base))?.1)),
            None => None,
        };
        let chain = |operator: &str, core: usize| match &base {
            Some((id, manifest)) => chain_of(&self.path_of(*id), *id, manifest, operator, core),
            None => Err(CheckpointError::corrupt(
                &path,
                format!(
                    "operator `{operator}` on core {core} has only changes, and no base checkpoint"
                ),
            )),
        };
        let publish = |names: &[String], manifest: &[u8]| match &self.remote {
            Some(remote) => remote.upload(&path, names, manifest),
            None => Ok(()),
        };
        match write_with(&path, checkpoint, chain, publish) {
            Ok(written) => {
                sync_dir(&self.dir)?;
                self.retire(checkpoint.id);
                Ok(written)
            }
            Err(err) => {
                let _ = fs::remove_dir_all(&path);
                Err(err)
            }
        }
    }

    /// Retires checkpoints older than the newest `retain` below or at `newest`: deletes them,
    /// except that one whose files a kept checkpoint's chain reads loses only its manifest (it
    /// can no longer be restored: sources may have dropped the input before it). Failures are
    /// logged (they only cost disk space).
    fn retire(&self, newest: u64) {
        let Ok(ids) = self.ids() else { return };
        let Some((keep_from, shared)) = self.retirement(&ids, newest) else {
            return;
        };
        if let Some(remote) = &self.remote {
            retire_remote(remote, keep_from, &shared);
        }
        for id in ids.into_iter().filter(|id| *id < keep_from) {
            let path = self.path_of(id);
            let result = if shared.contains(&id) {
                retire_manifest(&path)
            } else {
                fs::remove_dir_all(&path)
            };
            if let Err(err) = result {
                tracing::warn!(path = %path.display(), error = %err, "cannot retire an old checkpoint");
            }
        }
    }

    /// The oldest checkpoint to keep (the newest `retain` complete ones at or below `newest`
    /// in `ids`, from the first), and the older ones whose files their chains read; `None`
    /// when a kept checkpoint's chain is unknown (then everything older stays).
    fn retirement(&self, ids: &[u64], newest: u64) -> Option<(u64, BTreeSet<u64>)> {
        let complete: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| *id <= newest && self.path_of(*id).join(MANIFEST).exists())
            .collect();
        let mut keep_from = complete
            .len()
            .checked_sub(self.retain)
            .map_or(0, |at| complete[at]);
        if let Some(floor) = &self.floor {
            keep_from = keep_from.min(floor.load(Ordering::Acquire));
        }
        let mut shared = BTreeSet::new();
        for id in complete.iter().filter(|id| **id >= keep_from) {
            let (_, manifest) = read_manifest(&self.path_of(*id)).ok()?;
            shared.extend(chained_checkpoints(&manifest));
        }
        Some((keep_from, shared))
    }

    /// The oldest checkpoint kept, once it is complete (sources keep their input from its
    /// positions on). With an S3 store, the oldest complete one there.
    pub fn oldest_retained(&self) -> Result<Option<u64>, CheckpointError> {
        if let Some(remote) = &self.remote {
            let dirs = remote.dirs()?;
            return Ok(dirs.into_iter().find(|(_, d)| d.manifest).map(|(id, _)| id));
        }
        Ok(self
            .ids()?
            .into_iter()
            .find(|id| self.path_of(*id).join(MANIFEST).exists()))
    }

    /// The newest checkpoint that reads back intact, if any, and the newer ones that do not.
    /// A checkpoint is restorable only as a whole: one damaged or missing file of its chain
    /// (whole state or delta) makes it unusable, never a restore that skips that file.
    /// With an S3 store, the store is read (each checkpoint tried is downloaded into the
    /// directory first), not the directory.
    pub fn latest(&self) -> Result<Latest, CheckpointError> {
        if let Some(remote) = &self.remote {
            return self.latest_remote(remote);
        }
        let mut skipped = Vec::new();
        for id in self.ids()?.into_iter().rev() {
            let path = self.path_of(id);
            match read_dir(&path) {
                Ok(checkpoint) => {
                    return Ok(Latest {
                        loaded: Some((checkpoint, path)),
                        skipped,
                    })
                }
                Err(err) => skipped.push(Skipped {
                    id,
                    committed: path.join(MANIFEST).exists() || path.join(RETIRED).exists(),
                    path,
                    reason: err.to_string(),
                }),
            }
        }
        Ok(Latest {
            loaded: None,
            skipped,
        })
    }

    /// Reads complete checkpoint `id`, verifying every file; with an S3 store, from the
    /// bucket (downloaded into the directory first).
    pub fn read(&self, id: u64) -> Result<Checkpoint, CheckpointError> {
        if let Some(remote) = &self.remote {
            let dir = remote.dirs()?.get(&id).copied().unwrap_or_default();
            self.fetch(remote, id, dir)?;
        }
        read_dir(&self.path_of(id))
    }

    /// Deletes every checkpoint directory (complete, retired or unfinished), leaving the
    /// directory itself: a run started afterwards starts from empty state. Returns how many
    /// were deleted.
    pub fn discard_all(&self) -> Result<usize, CheckpointError> {
        let local = self.ids()?;
        let mut ids: BTreeSet<u64> = local.iter().copied().collect();
        if let Some(remote) = &self.remote {
            ids.extend(remote.dirs()?.keys());
            remote.delete(None)?;
        }
        for id in &local {
            let path = self.path_of(*id);
            fs::remove_dir_all(&path).map_err(|e| CheckpointError::io(&path, e))?;
        }
        sync_dir(&self.dir)?;
        Ok(ids.len())
    }

    /// [`CheckpointStore::latest`] of an S3 store: tries its checkpoints newest first, each
    /// downloaded into the directory (with the files of its chain) and verified there.
    fn latest_remote(&self, remote: &Remote) -> Result<Latest, CheckpointError> {
        let mut skipped = Vec::new();
        for (id, dir) in remote.dirs()?.into_iter().rev() {
            let path = self.path_of(id);
            match self.fetch(remote, id, dir).and_then(|()| read_dir(&path)) {
                Ok(checkpoint) => {
                    return Ok(Latest {
                        loaded: Some((checkpoint, self.location_of(id))),
                        skipped,
                    })
                }
                Err(err) => {
                    // Not complete here either: retention and listings must not count it.
                    let _ = fs::remove_file(path.join(MANIFEST));
                    skipped.push(Skipped {
                        id,
                        path: self.location_of(id),
                        reason: err.to_string(),
                        committed: dir.manifest || dir.retired,
                    });
                }
            }
        }
        Ok(Latest {
            loaded: None,
            skipped,
        })
    }

    /// Downloads checkpoint `id` of the S3 store into the directory: every file its manifest
    /// lists (in its own or an earlier checkpoint's directory), then the manifest.
    fn fetch(&self, remote: &Remote, id: u64, dir: RemoteDir) -> Result<(), CheckpointError> {
        let location = self.location_of(id);
        if !dir.manifest {
            let reason = if dir.retired {
                "retired: kept only for the files newer checkpoints build on"
            } else {
                "no MANIFEST: the checkpoint never completed"
            };
            return Err(CheckpointError::corrupt(&location, reason));
        }
        let path = self.path_of(id);
        fs::create_dir_all(&path).map_err(|e| CheckpointError::io(&path, e))?;
        let staged = path.join("MANIFEST.fetched");
        remote.download(&dir_name(id), MANIFEST, &staged)?;
        let text = fs::read_to_string(&staged).map_err(|e| CheckpointError::io(&staged, e))?;
        let manifest = parse_manifest(&location.join(MANIFEST), &text)?;
        for (in_id, name) in listed_files(&manifest, id) {
            if name.contains('/') || name.starts_with('.') {
                let reason = format!("file name `{name}` leaves the checkpoint");
                return Err(CheckpointError::corrupt(&location.join(MANIFEST), reason));
            }
            let dir = self.path_of(in_id);
            fs::create_dir_all(&dir).map_err(|e| CheckpointError::io(&dir, e))?;
            remote.download(&dir_name(in_id), &name, &dir.join(&name))?;
        }
        let manifest_path = path.join(MANIFEST);
        fs::rename(&staged, &manifest_path).map_err(|e| CheckpointError::io(&manifest_path, e))
    }
}

/// Retires the checkpoints of S3 store `remote` older than `keep_from`: deletes them, except
/// those in `shared` (a kept chain reads their files), which lose only their manifest.
/// Failures are logged (they only cost space).
fn retire_remote(remote: &Remote, keep_from: u64, shared: &BTreeSet<u64>) {
    let dirs: BTreeMap<u64, RemoteDir> = match remote.dirs() {
        Ok(dirs) => dirs,
        Err(err) => {
            tracing::warn!(error = %err, "cannot retire old checkpoints in the store");
            return;
        }
    };
    for (id, dir) in dirs.range(..keep_from) {
        let result = match shared.contains(id) {
            true if dir.manifest => remote.retire(*id),
            true => Ok(()),
            false => remote.delete(Some(*id)),
        };
        if let Err(err) = result {
            tracing::warn!(id, error = %err, "cannot retire an old checkpoint in the store");
        }
    }
}

/// Every file `manifest` (of checkpoint `id`) lists: the checkpoint that holds it, its name.
fn listed_files(manifest: &Json, id: u64) -> Vec<(u64, String)> {
    manifest
        .get("operators")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|op| op.get("files").and_then(Json::as_array))
        .flatten()
        .filter_map(|file| {
            let name = file.get("file").and_then(Json::as_str)?;
            let in_id = file.get("checkpoint").and_then(Json::as_u64).unwrap_or(id);
            Some((in_id, name.to_string()))
        })
        .collect()
}

/// Reads the checkpoint (or savepoint) in directory `path`, verifying every file.
pub fn read_dir(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let (manifest_path, manifest) = read_manifest(path)?;
    let reader = ManifestReader {
        dir: path,
        manifest: &manifest_path,
    };
    let field = |name: &str| {
        manifest
            .get(name)
            .ok_or_else(|| reader.bad(format!("no `{name}`")))
    };
    let uint = |name: &str| {
        field(name)?
            .as_u64()
            .ok_or_else(|| reader.bad(format!("`{name}` is not a number")))
    };
    let format = uint("format")?;
    if !(1..=FORMAT).contains(&format) {
        return Err(reader.bad(format!(
            "format {format} is newer than this build's {FORMAT}"
        )));
    }
    let list = |name: &str| {
        field(name)?
            .as_array()
            .ok_or_else(|| reader.bad(format!("`{name}` is not a list")))
    };
    let sources = list("sources")?.iter().map(|s| reader.source(s));
    let sources = sources.collect::<Result<_, _>>()?;
    let operators = list("operators")?.iter().map(|o| reader.operator(o));
    let operators = operators.collect::<Result<_, _>>()?;
    Ok(Checkpoint {
        id: uint("id")?,
        pipeline: reader.text(&manifest, "pipeline")?,
        cores: uint("cores")? as usize,
        max_parallelism: uint("max_parallelism")? as u32,
        last: field("last")?.as_bool().unwrap_or(false),
        base: None,
        completed_ms: field("completed_ms")?.as_i64().unwrap_or(0),
        sources,
        operators,
    })
}

/// A checkpoint's manifest being read ([`read_dir`]): where its parts and its errors point.
struct ManifestReader<'a> {
    /// The checkpoint's directory.
    dir: &'a Path,
    /// Its manifest file, which errors about its content name.
    manifest: &'a Path,
}

impl ManifestReader<'_> {
    fn bad(&self, reason: String) -> CheckpointError {
        CheckpointError::corrupt(self.manifest, reason)
    }

    /// The text of `value`'s key `name`.
    fn text(&self, value: &Json, name: &str) -> Result<String, CheckpointError> {
        value
            .get(name)
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.bad(format!("no `{name}`")))
    }

    /// One entry of `sources`: a source's name, partition count and positions.
    fn source(&self, source: &Json) -> Result<SourceState, CheckpointError> {
        let mut positions = Vec::new();
        for pair in source
            .get("positions")
            .and_then(Json::as_array)
            .ok_or_else(|| self.bad("no `positions`".into()))?
        {
            let (Some(partition), Some(position)) = (
                pair.get(0).and_then(Json::as_u64),
                pair.get(1).and_then(Json::as_u64),
            ) else {
                return Err(self.bad("a position is not [partition, position]".into()));
            };
            positions.push(SourcePosition {
                partition: partition as u32,
                position,
                line: pair.get(2).and_then(Json::as_u64).unwrap_or(0),
                token: pair.get(3).and_then(Json::as_str).map(str::to_string),
            });
        }
        Ok(SourceState {
            name: self.text(source, "name")?,
            partitions: source.get("partitions").and_then(Json::as_u64).unwrap_or(0) as u32,
            positions,
        })
    }

    /// One entry of `operators`: its files, read and verified, whose chains must hold.
    fn operator(&self, operator: &Json) -> Result<OperatorState, CheckpointError> {
        let files = operator
            .get("files")
            .and_then(Json::as_array)
            .ok_or_else(|| self.bad("no `files`".into()))?;
        let instances = files.iter().map(|file| self.instance(file));
        let instances = instances.collect::<Result<Vec<_>, _>>()?;
        let name = self.text(operator, "name")?;
        check_chains(&name, &instances).map_err(|reason| self.bad(reason))?;
        Ok(OperatorState {
            name,
            kind: self.text(operator, "kind")?,
            instances,
        })
    }

    /// One operator file: mapped, its size and checksum checked against the manifest's.
    fn instance(&self, file: &Json) -> Result<InstanceState, CheckpointError> {
        let name = self.text(file, "file")?;
        if name.contains('/') || name.starts_with('.') {
            return Err(self.bad(format!("file name `{name}` leaves the checkpoint")));
        }
        let (Some(core), Some(bytes), Some(crc)) = (
            file.get("core").and_then(Json::as_u64),
            file.get("bytes").and_then(Json::as_u64),
            file.get("crc32c").and_then(Json::as_u64),
        ) else {
            return Err(self.bad(format!("file `{name}` lacks core, bytes or crc32c")));
        };
        // A file an earlier checkpoint wrote (the chain of an incremental checkpoint)
        // lives in that checkpoint's directory, beside this one.
        let dir = match file.get("checkpoint").and_then(Json::as_u64) {
            None => self.dir.to_path_buf(),
            Some(id) => match self.dir.parent() {
                Some(parent) => parent.join(dir_name(id)),
                None => {
                    return Err(self.bad(format!(
                    "file `{name}` is in checkpoint {id}, which has no directory beside this one"
                )))
                }
            },
        };
        let file_path = dir.join(&name);
        let data = map_file(&file_path)?;
        if data.len() as u64 != bytes {
            let reason = format!("{} bytes, the manifest says {bytes}", data.len());
            return Err(CheckpointError::corrupt(&file_path, reason));
        }
        let found = u64::from(crc32c::crc32c(&data));
        if found != crc {
            let reason = format!("checksum {found:#010x}, the manifest says {crc:#010x}");
            return Err(CheckpointError::corrupt(&file_path, reason));
        }
        Ok(InstanceState {
            core: core as usize,
            sections: parse_sections(&file_path, data)?,
            delta: file.get("delta").and_then(Json::as_bool).unwrap_or(false),
        })
    }
}

/// Checks that each core's entries of an operator form one chain: a whole state first, then
/// only deltas. A chain that starts with a delta, or holds two whole states, would restore
/// something other than the state the checkpoint took.
fn check_chains(operator: &str, instances: &[InstanceState]) -> Result<(), String> {
    let mut started = std::collections::BTreeSet::new();
    for instance in instances {
        let first = started.insert(instance.core);
        if first == instance.delta {
            let what = if first {
                "starts with a delta, not a whole state"
            } else {
                "has a second whole state after its first"
            };
            return Err(format!(
                "the chain of operator `{operator}` on core {} {what}",
                instance.core
            ));
        }
    }
    Ok(())
}

/// Writes `checkpoint` into directory `path` (which must not hold a manifest yet) on its own,
/// as a savepoint: every instance must hold its whole state.
pub fn write_dir(path: &Path, checkpoint: &Checkpoint) -> Result<Written, CheckpointError> {
    let chain = |operator: &str, core: usize| {
        Err(CheckpointError::corrupt(
            path,
            format!("operator `{operator}` on core {core} has only changes: a savepoint must hold whole state"),
        ))
    };
    write_with(path, checkpoint, chain, |_: &[String], _: &[u8]| Ok(()))
}

/// Writes `checkpoint` into `path`; `chain(operator, core)` gives the manifest entries that a
/// delta instance builds on; `publish(files, manifest)` runs once the state files are synced,
/// before the manifest goes into place (an S3 store uploads them).
fn write_with(
    path: &Path,
    checkpoint: &Checkpoint,
    chain: impl Fn(&str, usize) -> Result<Vec<Json>, CheckpointError>,
    publish: impl FnOnce(&[String], &[u8]) -> Result<(), CheckpointError>,
) -> Result<Written, CheckpointError> {
    fs::create_dir_all(path).map_err(|e| CheckpointError::io(path, e))?;
    let mut written = Written::default();
    let mut names = Vec::new();
    let mut operators = Vec::new();
    for operator in &checkpoint.operators {
        let mut files = Vec::new();
        for instance in &operator.instances {
            let core = instance.core;
            if instance.delta {
                files.extend(chain(&operator.name, core)?);
            }
            let suffix = if instance.delta { "delta" } else { "state" };
            let name = format!("{suffix}-{}-c{core}.bin", file_safe(&operator.name));
            let data = encode_sections(&instance.sections);
            let file_path = path.join(&name);
            write_synced(&file_path, &data)?;
            names.push(name.clone());
            written.bytes += data.len() as u64;
            written.files += 1;
            files.push(json!({
                "file": name,
                "core": core,
                "bytes": data.len(),
                "crc32c": crc32c::crc32c(&data),
                "key_groups": instance.sections.len(),
                "delta": instance.delta,
            }));
        }
        operators.push(json!({"name": operator.name, "kind": operator.kind, "files": files}));
    }
    let sources = sources_json(&checkpoint.sources);
    let manifest = json!({
        "format": FORMAT,
        "id": checkpoint.id,
        "pipeline": checkpoint.pipeline,
        "cores": checkpoint.cores,
        "max_parallelism": checkpoint.max_parallelism,
        "last": checkpoint.last,
        "base": checkpoint.base,
        "completed_ms": checkpoint.completed_ms,
        "sources": sources,
        "operators": operators,
    });
    let body = serde_json::to_string_pretty(&manifest)
        .map_err(|e| CheckpointError::corrupt(path, e.to_string()))?;
    let text = format!("{body}\ncrc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
    sync_dir(path)?;
    let staged = path.join("MANIFEST.tmp");
    write_synced(&staged, text.as_bytes())?;
    publish(&names, text.as_bytes())?;
    let manifest_path = path.join(MANIFEST);
    fs::rename(&staged, &manifest_path).map_err(|e| CheckpointError::io(&manifest_path, e))?;
    sync_dir(path)?;
    written.bytes += text.len() as u64;
    written.files += 1;
    Ok(written)
}

/// The manifest's `sources`: name, partitions, and `[partition, position, line]` per partition
/// (`[partition, position, line, token]` when the source keeps a token).
fn sources_json(sources: &[SourceState]) -> Vec<Json> {
    sources
        .iter()
        .map(|s| {
            let positions: Vec<Json> = s
                .positions
                .iter()
                .map(|p| match &p.token {
                    None => json!([p.partition, p.position, p.line]),
                    Some(token) => json!([p.partition, p.position, p.line, token]),
                })
                .collect();
            json!({"name": s.name, "partitions": s.partitions, "positions": positions})
        })
        .collect()
}

/// The directory name of checkpoint `id`.
fn dir_name(id: u64) -> String {
    format!("chk-{id:08}")
}

/// The id of checkpoint directory `name` (`chk-<id>`).
fn parse_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// Reads and verifies the manifest of checkpoint directory `path`.
fn read_manifest(path: &Path) -> Result<(PathBuf, Json), CheckpointError> {
    let manifest_path = path.join(MANIFEST);
    let text = fs::read_to_string(&manifest_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound if path.join(RETIRED).exists() => CheckpointError::corrupt(
            path,
            "retired: kept only for the files newer checkpoints build on",
        ),
        io::ErrorKind::NotFound => {
            CheckpointError::corrupt(path, "no MANIFEST: the checkpoint never completed")
        }
        _ => CheckpointError::io(&manifest_path, e),
    })?;
    let manifest = parse_manifest(&manifest_path, &text)?;
    Ok((manifest_path, manifest))
}

/// The manifest entries of `operator`'s files on `core` in checkpoint `id` (directory
/// `path`), each naming the checkpoint that holds it: the chain a delta on top of it extends.
fn chain_of(
    path: &Path,
    id: u64,
    manifest: &Json,
    operator: &str,
    core: usize,
) -> Result<Vec<Json>, CheckpointError> {
    let files = manifest
        .get("operators")
        .and_then(Json::as_array)
        .and_then(|ops| {
            ops.iter()
                .find(|op| op.get("name").and_then(Json::as_str) == Some(operator))
        })
        .and_then(|op| op.get("files"))
        .and_then(Json::as_array);
    let chain: Vec<Json> = files
        .into_iter()
        .flatten()
        .filter(|file| file.get("core").and_then(Json::as_u64) == Some(core as u64))
        .map(|file| {
            let mut file = file.clone();
            if file.get("checkpoint").is_none() {
                file["checkpoint"] = json!(id);
            }
            file
        })
        .collect();
    if chain.is_empty() {
        return Err(CheckpointError::corrupt(
            path,
            format!("no state of operator `{operator}` on core {core} for a delta to build on"),
        ));
    }
    Ok(chain)
}

/// The earlier checkpoints whose files `manifest` lists.
fn chained_checkpoints(manifest: &Json) -> impl Iterator<Item = u64> + '_ {
    manifest
        .get("operators")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|op| op.get("files").and_then(Json::as_array))
        .flatten()
        .filter_map(|file| file.get("checkpoint").and_then(Json::as_u64))
}

/// Makes checkpoint directory `path` unrestorable, keeping its state files.
fn retire_manifest(path: &Path) -> io::Result<()> {
    fs::write(
        path.join(RETIRED),
        "This checkpoint was retired; newer checkpoints still read its state files.\n",
    )?;
    match fs::remove_file(path.join(MANIFEST)) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn parse_manifest(path: &Path, text: &str) -> Result<Json, CheckpointError> {
    let body = text.trim_end_matches('\n');
    let Some((body, crc_line)) = body.rsplit_once('\n') else {
        return Err(CheckpointError::corrupt(path, "truncated: no crc32c line"));
    };
    let stored = crc_line
        .strip_prefix("crc32c ")
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            CheckpointError::corrupt(path, "truncated: the last line is not `crc32c <hex>`")
        })?;
    let found = crc32c::crc32c(body.as_bytes());
    if found != stored {
        let reason = format!("checksum {found:08x}, the manifest says {stored:08x}");
        return Err(CheckpointError::corrupt(path, reason));
    }
    serde_json::from_str(body)
        .map_err(|e| CheckpointError::corrupt(path, format!("line {}: {e}", e.line())))
}

fn encode_sections(sections: &[Section]) -> Vec<u8> {
    let len: usize = sections.iter().map(|s| s.bytes.len() + 8).sum();
    let mut out = Vec::with_capacity(len);
    for section in sections {
        out.extend_from_slice(&section.key_group.to_le_bytes());
        let bytes = u32::try_from(section.bytes.len()).expect("a key group's state fits in 4 GiB");
        out.extend_from_slice(&bytes.to_le_bytes());
        out.extend_from_slice(&section.bytes);
    }
    out
}

/// Maps a state file: its sections become slices of the mapping, so restoring reads state
/// straight from the page cache, with no copy.
#[allow(unsafe_code)] // one memory map, as in the WAL's segment reader
fn map_file(path: &Path) -> Result<Bytes, CheckpointError> {
    let file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let len = file
        .metadata()
        .map_err(|e| CheckpointError::io(path, e))?
        .len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: checkpoint files are written once, synced, and never modified or truncated
    // afterwards (retention deletes whole directories, which leaves existing mappings
    // intact); the mapping is read only.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
    Ok(Bytes::from_owner(map))
}

fn parse_sections(path: &Path, data: Bytes) -> Result<Vec<Section>, CheckpointError> {
    let mut sections = Vec::new();
    let total = data.len();
    let mut at = 0;
    while at < total {
        let rest = &data[at..];
        if rest.len() < 8 {
            return Err(CheckpointError::corrupt(
                path,
                format!("byte {at}: a truncated section header"),
            ));
        }
        let key_group = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        if rest.len() - 8 < len {
            let reason = format!(
                "byte {at}: key group {key_group} needs {len} bytes, {} left",
                rest.len() - 8
            );
            return Err(CheckpointError::corrupt(path, reason));
        }
        sections.push(Section {
            key_group,
            bytes: data.slice(at + 8..at + 8 + len),
        });
        at += 8 + len;
    }
    Ok(sections)
}

/// An operator name as a file name: anything but ASCII letters, digits, `-` and `_` becomes `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), CheckpointError> {
    let io = |e| CheckpointError::io(path, e);
    let mut file = File::create(path).map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Makes the entries of directory `path` durable.
pub fn sync_dir(path: &Path) -> Result<(), CheckpointError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| CheckpointError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            pipeline: "p".into(),
            cores: 2,
            max_parallelism: 128,
            last: false,
            base: None,
            completed_ms: 1,
            sources: vec![SourceState {
                name: "bids".into(),
                partitions: 2,
                positions: vec![
                    SourcePosition {
                        partition: 0,
                        position: 10 * id,
                        line: 0,
                        token: None,
                    },
                    SourcePosition {
                        partition: 1,
                        position: 7,
                        line: 3,
                        token: Some("gmXX\"token".into()),
                    },
                ],
            }],
            operators: vec![OperatorState {
                name: "count (per auction)".into(),
                kind: "aggregate".into(),
                instances: vec![
                    InstanceState {
                        core: 0,
                        sections: vec![Section {
                            key_group: 3,
                            bytes: vec![1, 2, 3].into(),
                        }],
                        delta: false,
                    },
                    InstanceState {
                        core: 1,
                        sections: vec![
                            Section {
                                key_group: 90,
                                bytes: Bytes::new(),
                            },
                            Section {
                                key_group: 91,
                                bytes: vec![9; 100].into(),
                            },
                        ],
                        delta: false,
                    },
                ],
            }],
        }
    }

    /// `sample(id)` whose core-1 instance holds only changes (`[id; 4]` in key group 91) on
    /// top of checkpoint `id - 1`.
    fn delta(id: u64) -> Checkpoint {
        let mut checkpoint = sample(id);
        checkpoint.base = Some(id - 1);
        checkpoint.operators[0].instances[1] = InstanceState {
            core: 1,
            sections: vec![Section {
                key_group: 91,
                bytes: vec![id as u8; 4].into(),
            }],
            delta: true,
        };
        checkpoint
    }

    #[test]
    fn checkpoints_read_back_and_only_the_newest_are_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path().join("c"), 2).expect("open");
        for id in 1..=4 {
            store.write(&sample(id)).expect("write");
        }
        assert_eq!(store.ids().expect("ids"), [3, 4]);
        let latest = store.latest().expect("read");
        assert_eq!(latest.loaded.expect("one").0, sample(4));
        assert!(latest.skipped.is_empty());
        assert_eq!(store.oldest_retained().expect("ids"), Some(3));
    }

    #[test]
    fn a_store_keeping_from_a_checkpoint_retires_none_from_it_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let floor = Arc::new(AtomicU64::new(2));
        let store = CheckpointStore::open(tmp.path().join("c"), 2)
            .expect("open")
            .keeping_from(floor.clone());
        for id in 1..=6 {
            store.write(&sample(id)).expect("write");
        }
        // Two kept, but none from 2 on (the part of the last complete checkpoint).
        assert_eq!(store.ids().expect("ids"), [2, 3, 4, 5, 6]);
        floor.store(5, Ordering::Release);
        store.write(&sample(7)).expect("write");
        assert_eq!(store.ids().expect("ids"), [5, 6, 7]);
        floor.store(0, Ordering::Release);
        store.write(&sample(8)).expect("write");
        assert_eq!(
            store.ids().expect("ids"),
            [5, 6, 7, 8],
            "0: nothing is retired"
        );
    }

    #[test]
    fn a_damaged_or_unfinished_newest_checkpoint_falls_back_to_the_previous() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 3).expect("open");
        store.write(&sample(1)).expect("write");
        store.write(&sample(2)).expect("write");
        let state = store.path_of(2).join("state-count__per_auction_-c1.bin");
        let mut data = fs::read(&state).expect("state file");
        data[20] ^= 1;
        fs::write(&state, &data).expect("damage");
        // An unfinished one: files but no manifest.
        fs::create_dir_all(store.path_of(3)).expect("dir");
        let latest = store.latest().expect("read");
        assert_eq!(latest.loaded.expect("one").0.id, 1);
        let skipped = &latest.skipped;
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("never completed"), "{skipped:?}");
        assert!(
            !skipped[0].committed,
            "an unfinished checkpoint committed nothing"
        );
        assert!(skipped[1].reason.contains("checksum"), "{skipped:?}");
        assert!(skipped[1].committed);
        // A truncated manifest: nothing is left to restore, and every reason is kept.
        let manifest = store.path_of(1).join(MANIFEST);
        let text = fs::read(&manifest).expect("manifest");
        fs::write(&manifest, &text[..text.len() / 2]).expect("truncate");
        let latest = store.latest().expect("read");
        assert!(latest.loaded.is_none());
        let ids: Vec<u64> = latest.skipped.iter().map(|s| s.id).collect();
        assert_eq!(ids, [3, 2, 1]);
        assert!(
            latest.skipped[2].reason.contains("truncated"),
            "{:?}",
            latest.skipped
        );
        assert!(latest.committed_before());
    }

    #[test]
    fn an_incremental_checkpoint_reads_back_as_its_chain_and_keeps_the_files_it_reads() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 2).expect("open");
        store.write(&sample(1)).expect("write");
        for id in 2..=4 {
            store.write(&delta(id)).expect("write");
        }
        // Kept: 3 and 4, restorable; 1 and 2 only for their files.
        assert_eq!(store.ids().expect("ids"), [1, 2, 3, 4]);
        assert_eq!(store.oldest_retained().expect("ids"), Some(3));
        let (checkpoint, _) = store.latest().expect("read").loaded.expect("one");
        assert_eq!(checkpoint.id, 4);
        let instances = &checkpoint.operators[0].instances;
        let core1: Vec<(&[Section], bool)> = instances
            .iter()
            .filter(|i| i.core == 1)
            .map(|i| (&i.sections[..], i.delta))
            .collect();
        assert_eq!(core1.len(), 4, "the whole state, then three deltas");
        assert_eq!(
            core1[0].0,
            &sample(1).operators[0].instances[1].sections[..]
        );
        assert!(!core1[0].1 && core1[1..].iter().all(|(_, delta)| *delta));
        for (at, id) in (2..=4).enumerate() {
            assert_eq!(core1[at + 1].0[0].bytes, vec![id as u8; 4]);
        }
        assert_eq!(instances.iter().filter(|i| i.core == 0).count(), 1);
        // Retired checkpoints are not restorable.
        for id in [1, 2] {
            let err = read_dir(&store.path_of(id)).expect_err("retired");
            assert!(err.to_string().contains("retired"), "{err}");
        }
        // A full checkpoint ends the chain: the old directories go.
        store.write(&sample(5)).expect("write");
        store.write(&sample(6)).expect("write");
        assert_eq!(store.ids().expect("ids"), [5, 6]);
    }

    #[test]
    fn damage_to_a_chained_file_fails_every_checkpoint_that_reads_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 3).expect("open");
        store.write(&sample(1)).expect("write");
        store.write(&sample(2)).expect("write");
        store.write(&delta(3)).expect("write");
        store.write(&delta(4)).expect("write");
        // Damage the delta of 3: checkpoint 4 reads it too, so 2 is the newest usable.
        let file = store.path_of(3).join("delta-count__per_auction_-c1.bin");
        let mut data = fs::read(&file).expect("delta file");
        data[9] ^= 0xff;
        fs::write(&file, &data).expect("damage");
        let latest = store.latest().expect("read");
        assert_eq!(latest.loaded.expect("one").0.id, 2);
        assert_eq!(latest.skipped.len(), 2, "{:?}", latest.skipped);
    }

    #[test]
    fn a_missing_or_damaged_delta_never_restores_its_base_without_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 3).expect("open");
        store.write(&sample(1)).expect("write");
        store.write(&delta(2)).expect("write");
        store.write(&delta(3)).expect("write");
        let delta_file = |id: u64| store.path_of(id).join("delta-count__per_auction_-c1.bin");
        // The newest delta is gone: checkpoint 3 is unusable, 2 restores with its own delta.
        fs::remove_file(delta_file(3)).expect("remove");
        let latest = store.latest().expect("read");
        let (checkpoint, _) = latest.loaded.expect("one");
        assert_eq!(checkpoint.id, 2);
        let core1: Vec<&InstanceState> = checkpoint.operators[0]
            .instances
            .iter()
            .filter(|i| i.core == 1)
            .collect();
        assert_eq!(core1.len(), 2, "the whole state and the delta of 2");
        assert_eq!(core1[1].sections[0].bytes, vec![2u8; 4]);
        assert_eq!(latest.skipped.len(), 1);
        let reason = &latest.skipped[0].reason;
        assert!(
            reason.contains("chk-00000003/delta-count__per_auction_-c1.bin"),
            "{reason}"
        );
        // The delta of 2, which 3 reads too, is damaged: only 1 is left.
        let mut data = fs::read(delta_file(2)).expect("delta");
        data[8] ^= 0x10;
        fs::write(delta_file(2), &data).expect("damage");
        let latest = store.latest().expect("read");
        assert_eq!(latest.loaded.expect("one").0.id, 1);
        // The whole state every chain reads is damaged: nothing restores, every reason stays.
        let state = store.path_of(1).join("state-count__per_auction_-c1.bin");
        let mut data = fs::read(&state).expect("state");
        data[8] ^= 0x10;
        fs::write(&state, &data).expect("damage");
        let latest = store.latest().expect("read");
        assert!(latest.loaded.is_none());
        assert!(latest.committed_before());
        let why: Vec<(u64, bool)> = latest
            .skipped
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.reason.contains("checksum") || s.reason.contains("No such file"),
                )
            })
            .collect();
        assert_eq!(
            why,
            [(3, true), (2, true), (1, true)],
            "{:?}",
            latest.skipped
        );
    }

    /// Rewrites the manifest of `path` through `edit`, with a valid checksum.
    fn edit_manifest(path: &Path, edit: impl FnOnce(&mut Json)) {
        let (manifest_path, mut manifest) = read_manifest(path).expect("manifest");
        edit(&mut manifest);
        let body = serde_json::to_string_pretty(&manifest).expect("json");
        let text = format!("{body}\ncrc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        fs::write(manifest_path, text).expect("write manifest");
    }

    #[test]
    fn a_chain_without_its_whole_state_is_refused_even_with_a_valid_manifest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 3).expect("open");
        store.write(&sample(1)).expect("write");
        store.write(&delta(2)).expect("write");
        edit_manifest(&store.path_of(2), |manifest| {
            let files = manifest["operators"][0]["files"]
                .as_array_mut()
                .expect("files");
            let at = files
                .iter()
                .position(|f| f["core"] == 1 && f["delta"] == false)
                .expect("the base of core 1");
            files.remove(at);
        });
        let err = read_dir(&store.path_of(2)).expect_err("a delta without its base");
        assert!(
            err.to_string().contains("on core 1 starts with a delta"),
            "{err}"
        );
        assert_eq!(store.latest().expect("read").loaded.expect("one").0.id, 1);
    }

    #[test]
    fn discarding_deletes_every_checkpoint_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 1).expect("open");
        store.write(&sample(1)).expect("write");
        store.write(&delta(2)).expect("write");
        fs::create_dir_all(store.path_of(3)).expect("an unfinished one");
        assert_eq!(store.discard_all().expect("discard"), 3);
        assert!(store.ids().expect("ids").is_empty());
        assert!(store.latest().expect("read").skipped.is_empty());
    }

    #[test]
    fn a_delta_needs_its_base_and_a_savepoint_needs_whole_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(tmp.path(), 3).expect("open");
        let err = store.write(&delta(2)).expect_err("no base");
        assert!(err.to_string().contains("MANIFEST"), "{err}");
        assert_eq!(store.ids().expect("ids"), Vec::<u64>::new());
        let err = write_dir(&tmp.path().join("sp"), &delta(2)).expect_err("a delta");
        assert!(err.to_string().contains("whole state"), "{err}");
    }
}
