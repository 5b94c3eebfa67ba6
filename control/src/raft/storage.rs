//! The raft log store: entries, hard state, conf state and the latest snapshot, kept in memory
//! and written through a [`Disk`] as CRC-framed records.
//!
//! Layout: file `log` holds records `[len u32][crc32c u32][kind u8][payload]` (little-endian;
//! the CRC covers kind and payload; payloads are raft protobufs), file `snapshot` holds one such
//! record with the latest snapshot. Appends become durable at [`RaftStorage::sync`], which the
//! node calls before advancing raft and before sending messages that depend on them. On open, a
//! torn last record is cut off; a bad record with valid data after it is refused with an error
//! naming file and offset. Compaction writes the snapshot, then rewrites `log` without the
//! prefix (both by atomic replace). A failed write or sync poisons the store.

use ::raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use ::raft::{GetEntriesContext, RaftState, StorageError as RaftStoreError};
use protobuf::Message as _;

use super::disk::Disk;

/// Name of the log file.
pub const LOG_FILE: &str = "log";
/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = "snapshot";

const HEADER_SIZE: usize = 9;
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;

/// Errors of the raft log store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A record failed its check (or the file is not a log) with valid data after it.
    #[error("raft store {file} corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A read, write or sync failed.
    #[error("raft store {file}: {op} failed")]
    Io {
        /// The file.
        file: String,
        /// The operation.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A write or sync failed earlier; the store refuses everything until restarted.
    #[error("raft store poisoned by a failed write or sync; restart to recover")]
    Poisoned,
}

/// The raft log store over a [`Disk`]; implements [`raft::Storage`] from its in-memory copy.
pub struct RaftStorage<D: Disk> {
    disk: D,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Entries after the snapshot: `entries[0].index == snapshot index + 1`.
    entries: Vec<Entry>,
    unsynced: bool,
    poisoned: bool,
}

impl<D: Disk> RaftStorage<D> {
    /// Opens the store: loads the snapshot and replays the log, cutting a torn tail.
    pub fn open(mut disk: D) -> Result<RaftStorage<D>, StorageError> {
        let snapshot = load_snapshot(&mut disk)?;
        let mut store = RaftStorage {
            disk,
            hard_state: HardState::default(),
            conf_state: snapshot.get_metadata().get_conf_state().clone(),
            snapshot,
            entries: Vec::new(),
            unsynced: false,
            poisoned: false,
        };
        store.replay_log()?;
        Ok(store)
    }

    /// Whether the store holds any raft state (a restarted node resumes from it).
    pub fn is_initialized(&self) -> bool {
        self.hard_state.term > 0 || !self.entries.is_empty() || self.snapshot_index() > 0
    }

    /// The latest snapshot (empty data and index 0 when there is none).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current conf state.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The in-memory entries (after the snapshot).
    pub fn entries_ref(&self) -> &[Entry] {
        &self.entries
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Appends entries, replacing any conflicting suffix; durable after [`RaftStorage::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.snapshot_index(),
            "append below the snapshot"
        );
        assert!(
            first.index <= self.last() + 1,
            "append leaves a gap in the raft log"
        );
        let mut buf = Vec::new();
        for e in entries {
            frame(&mut buf, KIND_ENTRY, &encode_pb(e));
        }
        self.write(&buf)?;
        self.splice(entries);
        Ok(())
    }

    fn splice(&mut self, entries: &[Entry]) {
        let keep = (entries[0].index - self.snapshot_index() - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Records a new hard state; durable after [`RaftStorage::sync`].
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        frame(&mut buf, KIND_HARD_STATE, &encode_pb(hs));
        self.write(&buf)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Records a new commit index; durable after [`RaftStorage::sync`].
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Records the conf state after the conf change applied at `index`; durable after a sync.
    pub fn set_conf_state(&mut self, index: u64, cs: &ConfState) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        frame(&mut buf, KIND_CONF_STATE, &conf_payload(index, cs));
        self.write(&buf)?;
        self.conf_state = cs.clone();
        Ok(())
    }

    /// Makes every record written so far durable (fdatasync).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if self.unsynced {
            if let Err(source) = self.disk.sync(LOG_FILE) {
                self.poisoned = true;
                return Err(self.io_error(LOG_FILE, "sync", source));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Installs a snapshot received from the leader: drops the whole log, durably.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.hard_state = hs;
        self.conf_state = meta.get_conf_state().clone();
        self.entries.clear();
        self.install_snapshot(snapshot)
    }

    /// Compacts: `snapshot` (taken at an applied index) replaces the stored one and the log
    /// prefix up to its index is dropped, durably.
    pub fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let index = snapshot.get_metadata().index;
        if index <= self.snapshot_index() {
            return Ok(());
        }
        assert!(index <= self.last(), "compaction past the last entry");
        let drop = (index - self.snapshot_index()) as usize;
        self.entries.drain(..drop);
        self.install_snapshot(snapshot)
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let mut buf = Vec::new();
        frame(&mut buf, KIND_SNAPSHOT, &encode_pb(snapshot));
        if let Err(source) = self.disk.replace(SNAPSHOT_FILE, &buf) {
            self.poisoned = true;
            return Err(self.io_error(SNAPSHOT_FILE, "write", source));
        }
        self.snapshot = snapshot.clone();
        self.rewrite_log()
    }

    /// Replaces `log` with the hard state, conf state and remaining entries.
    fn rewrite_log(&mut self) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        frame(&mut buf, KIND_HARD_STATE, &encode_pb(&self.hard_state));
        let conf = conf_payload(self.snapshot_index(), &self.conf_state);
        frame(&mut buf, KIND_CONF_STATE, &conf);
        for e in &self.entries {
            frame(&mut buf, KIND_ENTRY, &encode_pb(e));
        }
        if let Err(source) = self.disk.replace(LOG_FILE, &buf) {
            self.poisoned = true;
            return Err(self.io_error(LOG_FILE, "write", source));
        }
        self.unsynced = false;
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if let Err(source) = self.disk.append(LOG_FILE, buf) {
            self.poisoned = true;
            return Err(self.io_error(LOG_FILE, "write", source));
        }
        self.unsynced = true;
        Ok(())
    }

    fn io_error(&self, file: &str, op: &'static str, source: std::io::Error) -> StorageError {
        StorageError::Io {
            file: self.disk.describe(file),
            op,
            source,
        }
    }

    fn replay_log(&mut self) -> Result<(), StorageError> {
        let bytes = self.read(LOG_FILE)?.unwrap_or_default();
        let file = self.disk.describe(LOG_FILE);
        let (records, valid_len) = parse_records(&bytes, &file)?;
        if valid_len < bytes.len() {
            tracing::warn!(file = %file, offset = valid_len, "raft log: cutting a torn last record");
            if let Err(source) = self.disk.truncate(LOG_FILE, valid_len as u64) {
                return Err(self.io_error(LOG_FILE, "truncate", source));
            }
        }
        for (offset, kind, payload) in records {
            self.replay_record(&file, offset, kind, payload)?;
        }
        // The log may predate the snapshot (a crash before its rewrite): never below the snapshot.
        let snap = self.snapshot.get_metadata();
        self.hard_state.term = self.hard_state.term.max(snap.term);
        self.hard_state.commit = self.hard_state.commit.max(snap.index);
        Ok(())
    }

    fn replay_record(
        &mut self,
        file: &str,
        offset: usize,
        kind: u8,
        payload: &[u8],
    ) -> Result<(), StorageError> {
        let corrupt = |reason| StorageError::Corrupt {
            file: file.to_owned(),
            offset: offset as u64,
            reason,
        };
        match kind {
            KIND_ENTRY => {
                let e = Entry::parse_from_bytes(payload).map_err(|_| corrupt("bad entry"))?;
                if e.index <= self.snapshot_index() {
                    return Ok(());
                }
                if e.index > self.last() + 1 {
                    return Err(corrupt("gap in the entry indexes"));
                }
                self.splice(&[e]);
            }
            KIND_HARD_STATE => {
                self.hard_state =
                    HardState::parse_from_bytes(payload).map_err(|_| corrupt("bad hard state"))?;
            }
            KIND_CONF_STATE => {
                if payload.len() < 8 {
                    return Err(corrupt("short conf state"));
                }
                let (index, pb) = payload.split_at(8);
                let cs = ConfState::parse_from_bytes(pb).map_err(|_| corrupt("bad conf state"))?;
                let index = u64::from_le_bytes(index.try_into().expect("8 bytes"));
                if index >= self.snapshot_index() {
                    self.conf_state = cs;
                }
            }
            _ => return Err(corrupt("unknown record kind")),
        }
        Ok(())
    }

    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.disk
            .read(name)
            .map_err(|source| self.io_error(name, "read", source))
    }
}

fn load_snapshot<D: Disk>(disk: &mut D) -> Result<Snapshot, StorageError> {
    let file = disk.describe(SNAPSHOT_FILE);
    let bytes = disk
        .read(SNAPSHOT_FILE)
        .map_err(|source| StorageError::Io {
            file: file.clone(),
            op: "read",
            source,
        })?;
    let Some(bytes) = bytes else {
        return Ok(Snapshot::default());
    };
    let corrupt = |reason| StorageError::Corrupt {
        file: file.clone(),
        offset: 0,
        reason,
    };
    let (records, valid_len) = parse_records(&bytes, &file)?;
    // The snapshot file is replaced atomically, so anything but one whole record is corruption.
    if valid_len != bytes.len() || records.len() != 1 || records[0].1 != KIND_SNAPSHOT {
        return Err(corrupt("not one snapshot record"));
    }
    Snapshot::parse_from_bytes(records[0].2).map_err(|_| corrupt("bad snapshot"))
}

/// A record's offset in its file, kind and payload.
type Record<'a> = (usize, u8, &'a [u8]);

/// Splits `bytes` into `(offset, kind, payload)` records. Returns the records and the length of
/// the valid prefix: a bad record at the very end (torn write) ends the prefix; a bad record
/// followed by more bytes is corruption.
fn parse_records<'a>(
    bytes: &'a [u8],
    file: &str,
) -> Result<(Vec<Record<'a>>, usize), StorageError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < HEADER_SIZE {
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if rest.len() - HEADER_SIZE < len {
            break;
        }
        let end = HEADER_SIZE + len;
        if crc32c::crc32c(&rest[8..end]) != crc {
            if end == rest.len() {
                break;
            }
            return Err(StorageError::Corrupt {
                file: file.to_owned(),
                offset: offset as u64,
                reason: "record checksum mismatch",
            });
        }
        out.push((offset, rest[8], &rest[HEADER_SIZE..end]));
        offset += end;
    }
    Ok((out, offset))
}

fn frame(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("raft record over 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

/// A conf state record: the index it was applied at, then the protobuf. On replay, a record
/// older than the snapshot (a crash between writing a received snapshot and rewriting the log)
/// loses to the snapshot's own conf state.
fn conf_payload(index: u64, cs: &ConfState) -> Vec<u8> {
    let mut out = index.to_le_bytes().to_vec();
    out.extend_from_slice(&encode_pb(cs));
    out
}

fn encode_pb(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes().expect("raft protobufs always encode")
}

impl<D: Disk> ::raft::Storage for RaftStorage<D> {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> ::raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(::raft::Error::Store(RaftStoreError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(::raft::Error::Store(RaftStoreError::Unavailable));
        }
        let first = self.snapshot_index() + 1;
        let mut out = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        ::raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> ::raft::Result<u64> {
        let snap = self.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < snap.index {
            return Err(::raft::Error::Store(RaftStoreError::Compacted));
        }
        if idx > self.last() {
            return Err(::raft::Error::Store(RaftStoreError::Unavailable));
        }
        Ok(self.entries[(idx - snap.index - 1) as usize].term)
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> ::raft::Result<Snapshot> {
        if self.snapshot_index() < request_index {
            return Err(::raft::Error::Store(
                RaftStoreError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests;
