//! A WAL on a real, small ext4 filesystem (a loop-mounted image) runs out of space: the append
//! that hits ENOSPC fails with a disk-full error, nothing acknowledged is lost, and once space
//! is freed the log reopens and accepts appends again (reliability plan A4).
//!
//! Needs root (mount); built by any other user, the test is ignored (and shows as such).

use wire_storage::wal::{Durability, LogConfig, SegmentLog};
use wire_storage::Error;
use wire_tests::{crash_batch, crash_identity, crash_rows, is_root, LoopMount};

#[test]
#[cfg_attr(not(wire_root), ignore = "needs root to mount a loop device")]
fn disk_full_fails_the_append_and_loses_nothing_acknowledged() {
    assert!(is_root(), "built as root but run as another user: rebuild");
    let scratch = tempfile::tempdir().unwrap();
    let mount = LoopMount::new(scratch.path(), 24);
    let log_dir = mount.point.join("p0");
    let filler = mount.point.join("filler");
    std::fs::write(&filler, vec![7u8; 2 << 20]).unwrap();

    let dir = log_dir.clone();
    let executor = wire_storage::io::local_executor().unwrap();
    let acked = executor.run(async move {
        let config = LogConfig {
            durability: Durability::Always,
            segment_bytes: 4 << 20,
            ..LogConfig::default()
        };
        let (log, _) = SegmentLog::open(&dir, config).await.unwrap();
        let mut acked = Vec::new();
        let err = loop {
            let seq = acked.len() as u64;
            let mut batch = crash_batch(0, seq, crash_rows(seq));
            match log.append(&mut batch).await {
                Ok(base) => acked.push((base, seq)),
                Err(err) => break err,
            }
            assert!(acked.len() < 10_000, "the disk never filled up");
        };
        assert!(
            matches!(err, Error::DiskFull { .. }),
            "expected a disk-full error, got: {err}"
        );
        assert!(err.to_string().starts_with("disk full writing"), "{err}");
        let later = log.append(&mut crash_batch(0, 0, 1)).await.unwrap_err();
        assert!(
            matches!(later, Error::DiskFull { .. }),
            "a poisoned log must keep reporting the cause: {later}"
        );
        let closed = log.close().await.unwrap_err();
        assert!(
            matches!(closed, Error::DiskFull { .. }),
            "close reports the cause too: {closed}"
        );
        acked
    });
    assert!(acked.len() > 20, "only {} appends fitted", acked.len());

    std::fs::remove_file(&filler).unwrap();
    let executor = wire_storage::io::local_executor().unwrap();
    executor.run(async move {
        let (log, report) = SegmentLog::open(&log_dir, LogConfig::default())
            .await
            .unwrap();
        let mut reader = log.reader(0).unwrap();
        let mut found = Vec::new();
        while let Some(view) = reader.next().await.unwrap() {
            let (_, seq) = crash_identity(&view).expect("a recovered batch is damaged");
            found.push((view.header().base_offset, seq));
        }
        assert!(
            found.len() >= acked.len(),
            "lost acknowledged batches: {} of {}",
            acked.len() - found.len().min(acked.len()),
            acked.len()
        );
        assert_eq!(found[..acked.len()], acked[..]);
        assert_eq!(report.next_offset, reader.position());
        let base = log.append(&mut crash_batch(1, 0, 10)).await.unwrap();
        assert_eq!(base, report.next_offset);
        log.close().await.unwrap();
    });
    mount.unmount();
}
