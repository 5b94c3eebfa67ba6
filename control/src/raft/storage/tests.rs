use ::raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use ::raft::{GetEntriesContext, Storage};

use super::*;
use crate::raft::disk::{FsDisk, MemDisk};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index}").into_bytes().into(),
        ..Default::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn indexes<D: Disk>(s: &RaftStorage<D>) -> Vec<(u64, u64)> {
    s.entries_ref().iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn restart_recovers_synced_state_and_drops_unsynced() {
    let disk = MemDisk::new();
    let mut s = RaftStorage::open(disk.clone()).unwrap();
    s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
    s.set_hard_state(&hard_state(1, 2, 2)).unwrap();
    s.set_conf_state(3, &ConfState::from((vec![1, 2, 3], vec![])))
        .unwrap();
    s.sync().unwrap();
    // A conflicting suffix replaces entries 3.. (as raft asks after a leader change).
    s.append(&[entry(3, 2), entry(4, 2)]).unwrap();
    s.sync().unwrap();
    s.append(&[entry(5, 2)]).unwrap(); // never synced
    disk.crash(0);
    let s = RaftStorage::open(disk).unwrap();
    assert_eq!(indexes(&s), vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
    assert_eq!(s.initial_state().unwrap().hard_state, hard_state(1, 2, 2));
    assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
    assert_eq!(s.last_index().unwrap(), 4);
    assert_eq!(s.term(3).unwrap(), 2);
}

#[test]
fn torn_last_record_is_cut_off() {
    let disk = MemDisk::new();
    let mut s = RaftStorage::open(disk.clone()).unwrap();
    s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    s.sync().unwrap();
    let synced = disk.len(LOG_FILE);
    s.append(&[entry(3, 1)]).unwrap();
    // Power loss keeps 5 bytes of the unsynced record: a torn header.
    disk.crash(5);
    assert_eq!(disk.len(LOG_FILE), synced + 5);
    let mut s = RaftStorage::open(disk.clone()).unwrap();
    assert_eq!(indexes(&s), vec![(1, 1), (2, 1)]);
    assert_eq!(
        disk.len(LOG_FILE),
        synced,
        "the torn tail is truncated on disk"
    );
    // Appending after the cut works and survives another restart.
    s.append(&[entry(3, 2)]).unwrap();
    s.sync().unwrap();
    // A torn payload (header whole, body short or checksum bad at the very end) is cut too.
    s.append(&[entry(4, 2)]).unwrap();
    disk.crash(20);
    let s = RaftStorage::open(disk).unwrap();
    assert_eq!(indexes(&s), vec![(1, 1), (2, 1), (3, 2)]);
}

#[test]
fn corruption_in_the_middle_is_refused_naming_file_and_offset() {
    let disk = MemDisk::new();
    let mut s = RaftStorage::open(disk.clone()).unwrap();
    s.append(&[entry(1, 1)]).unwrap();
    s.sync().unwrap();
    let second = disk.len(LOG_FILE);
    s.append(&[entry(2, 1), entry(3, 1)]).unwrap();
    s.sync().unwrap();
    disk.corrupt(LOG_FILE, second + HEADER_SIZE + 2);
    let err = RaftStorage::open(disk)
        .err()
        .expect("corrupt log must be refused");
    assert_eq!(
        err.to_string(),
        format!("raft store mem:log corrupt at offset {second}: record checksum mismatch")
    );
}

#[test]
fn compaction_keeps_the_suffix_and_survives_restart() {
    let disk = MemDisk::new();
    let mut s = RaftStorage::open(disk.clone()).unwrap();
    let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
    s.append(&entries).unwrap();
    s.set_hard_state(&hard_state(1, 1, 10)).unwrap();
    s.sync().unwrap();
    let mut snap = Snapshot {
        data: b"state at 6".to_vec().into(),
        ..Default::default()
    };
    snap.mut_metadata().index = 6;
    snap.mut_metadata().term = 1;
    s.compact(&snap).unwrap();
    assert_eq!(s.first_index().unwrap(), 7);
    assert!(matches!(
        s.entries(3, 8, None, GetEntriesContext::empty(false)),
        Err(::raft::Error::Store(::raft::StorageError::Compacted))
    ));
    drop(s);
    disk.crash(0);
    let s = RaftStorage::open(disk).unwrap();
    assert_eq!(s.first_index().unwrap(), 7);
    assert_eq!(s.last_index().unwrap(), 10);
    assert_eq!(s.term(6).unwrap(), 1);
    assert_eq!(&s.snapshot(0, 2).unwrap().data[..], b"state at 6");
    assert_eq!(
        s.entries(7, 11, None, GetEntriesContext::empty(false))
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn real_files_recover_and_refuse_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = RaftStorage::open(FsDisk::open(dir.path()).unwrap()).unwrap();
    s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
    s.set_hard_state(&hard_state(1, 1, 3)).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = RaftStorage::open(FsDisk::open(dir.path()).unwrap()).unwrap();
    assert_eq!(s.last_index().unwrap(), 3);
    assert_eq!(s.hard_state().commit, 3);
    drop(s);
    let path = dir.path().join(LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_SIZE + 1] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = RaftStorage::open(FsDisk::open(dir.path()).unwrap())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "raft store {} corrupt at offset 0: record checksum mismatch",
            path.display()
        )
    );
}

#[test]
fn crash_between_snapshot_and_log_rewrite_keeps_the_snapshots_conf_and_commit() {
    let disk = MemDisk::new();
    let mut s = RaftStorage::open(disk.clone()).unwrap();
    s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
    s.set_hard_state(&hard_state(1, 1, 2)).unwrap();
    s.set_conf_state(2, &ConfState::from((vec![1, 2, 3], vec![])))
        .unwrap();
    s.sync().unwrap();
    // A snapshot from the leader lands (index 9, a fourth voter) and power fails before the
    // log is rewritten: the old log still carries the old conf state and commit.
    let mut snap = Snapshot {
        data: b"state at 9".to_vec().into(),
        ..Default::default()
    };
    snap.mut_metadata().index = 9;
    snap.mut_metadata().term = 2;
    snap.mut_metadata()
        .set_conf_state(ConfState::from((vec![1, 2, 3, 4], vec![])));
    let mut buf = Vec::new();
    frame(&mut buf, KIND_SNAPSHOT, &encode_pb(&snap));
    let mut raw_disk = disk.clone();
    raw_disk.replace(SNAPSHOT_FILE, &buf).unwrap();
    drop(s);
    let s = RaftStorage::open(disk).unwrap();
    assert_eq!(s.conf_state().voters, vec![1, 2, 3, 4]);
    assert_eq!((s.hard_state().term, s.hard_state().commit), (2, 9));
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (10, 9));
}
