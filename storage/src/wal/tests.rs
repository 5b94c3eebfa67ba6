use std::future::Future;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use wire_core::{Batch, BatchBuilder, PartitionId, StreamId, Value, ValueRef};

use super::*;

pub(crate) fn run<F: Future<Output = ()> + 'static>(body: impl FnOnce() -> F) {
    let executor = crate::io::local_executor().expect("glommio executor");
    executor.run(body());
}

/// A batch of `rows` rows whose first column is `first..first + rows` and second a string.
pub(crate) fn batch(first: i64, rows: usize, pad: usize) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(1), PartitionId(0));
    let text = "x".repeat(pad);
    for i in 0..rows as i64 {
        builder
            .push_with_time(&[ValueRef::I64(first + i), ValueRef::Str(&text)], first + i)
            .unwrap();
    }
    builder.finish()
}

fn config(segment_bytes: u64, durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes,
        durability,
        write_buffer_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

/// Runs `body` on a glommio executor with a fresh log in a temporary directory, passing the
/// log and its directory (for reopening).
fn with_log<F, Fut>(segment_bytes: u64, durability: Durability, body: F)
where
    F: FnOnce(SegmentLog, std::path::PathBuf) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let (log, _) = SegmentLog::open(&path, config(segment_bytes, durability))
            .await
            .unwrap();
        body(log, path).await;
    });
}

async fn read_all(log: &SegmentLog, from: u64) -> Vec<(u64, Vec<Vec<Value>>)> {
    let mut reader = log.reader(from).unwrap();
    let mut out = Vec::new();
    while let Some(view) = reader.next().await.unwrap() {
        out.push((
            view.header().base_offset,
            view.rows().map(|r| r.to_values()).collect(),
        ));
    }
    out
}

fn expected_rows(batches: &[Batch]) -> Vec<(u64, Vec<Vec<Value>>)> {
    batches
        .iter()
        .map(|b| {
            (
                b.header().base_offset,
                b.view().rows().map(|r| r.to_values()).collect(),
            )
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == segment::SEGMENT_SUFFIX))
        .collect();
    files.sort();
    files
}

#[test]
fn append_read_reopen_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let (log, report) = SegmentLog::open(&path, config(16 << 10, Durability::Always))
            .await
            .unwrap();
        assert_eq!(report.next_offset, 0);
        let mut appended = Vec::new();
        for i in 0..60 {
            let mut b = batch(i * 10, 10, (i as usize * 37) % 300);
            let offset = log.append(&mut b).await.unwrap();
            assert_eq!(offset, i as u64 * 10);
            appended.push(b);
        }
        assert!(
            log.segment_count() > 3,
            "rolled into {} segments",
            log.segment_count()
        );
        assert_eq!(read_all(&log, 0).await, expected_rows(&appended));
        // Reading from an offset inside a batch starts with the batch that holds it.
        assert_eq!(read_all(&log, 255).await, expected_rows(&appended[25..]));
        log.close().await.unwrap();

        let (log, report) = SegmentLog::open(&path, config(16 << 10, Durability::Always))
            .await
            .unwrap();
        assert_eq!(report.next_offset, 600);
        assert_eq!(report.truncated, None);
        assert_eq!(read_all(&log, 0).await, expected_rows(&appended));
        let mut more = batch(600, 3, 5);
        assert_eq!(log.append(&mut more).await.unwrap(), 600);
        appended.push(more);
        assert_eq!(read_all(&log, 0).await, expected_rows(&appended));
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_always_appends_share_syncs() {
    with_log(1 << 20, Durability::Always, |log, _| async move {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut b = batch(i, 1, 100);
                    let offset = log.append(&mut b).await.unwrap();
                    // Resolved means synced.
                    assert!(log.synced_offset() > offset);
                    offset
                })
            })
            .collect();
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<u64>>());
        let probe = log.probe();
        assert_eq!(probe.appends, 200);
        assert!(
            probe.syncs < 50,
            "200 concurrent appends took {} syncs",
            probe.syncs
        );
        log.close().await.unwrap();
    });
}

#[test]
fn interval_policy_acks_on_write_and_syncs_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let durability = Durability::Interval(Duration::from_millis(20));
        let (log, _) = SegmentLog::open(&path, config(1 << 20, durability))
            .await
            .unwrap();
        let mut b = batch(0, 5, 10);
        log.append(&mut b).await.unwrap();
        assert_eq!(log.acked_offset(), 5);
        // The interval sync comes later: wait for it (bounded), not for a guessed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while log.synced_offset() < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "interval sync did not run"
            );
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        log.close().await.unwrap();
    });
}

#[test]
fn never_policy_syncs_on_close_only() {
    with_log(1 << 20, Durability::Never, |log, _| async move {
        for i in 0..10 {
            log.append(&mut batch(i, 1, 10)).await.unwrap();
        }
        assert_eq!(log.probe().syncs, 0);
        log.sync().await.unwrap();
        assert_eq!(log.synced_offset(), 10);
        log.close().await.unwrap();
    });
}

#[test]
fn tailing_reader_sees_new_appends() {
    with_log(8 << 10, Durability::Always, |log, _| async move {
        let mut reader = log.reader(0).unwrap();
        let tail = glommio::spawn_local(async move {
            let mut seen = Vec::new();
            while seen.len() < 40 {
                let view = reader.next_wait().await.unwrap();
                seen.push(view.row(0).get(0).and_then(|v| v.as_i64()).unwrap());
            }
            seen
        });
        for i in 0..40 {
            log.append(&mut batch(i, 1, 400)).await.unwrap();
            if i % 7 == 0 {
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
        }
        assert_eq!(tail.await, (0..40).collect::<Vec<i64>>());
        log.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_whole_segments_below_an_offset() {
    with_log(8 << 10, Durability::Always, |log, path| async move {
        for i in 0..50 {
            log.append(&mut batch(i * 4, 4, 300)).await.unwrap();
        }
        let before = log.segment_count();
        let deleted = log.delete_before(100).await.unwrap();
        assert!(deleted > 0);
        assert_eq!(log.segment_count(), before - deleted);
        let start = log.start_offset();
        assert!(start <= 100 && start > 0, "start {start}");
        assert!(matches!(
            log.reader(start - 1),
            Err(Error::OffsetOutOfRange { .. })
        ));
        let rows: Vec<u64> = read_all(&log, start)
            .await
            .iter()
            .map(|(o, _)| *o)
            .collect();
        assert_eq!(rows, (start / 4..50).map(|i| i * 4).collect::<Vec<_>>());
        // Never deletes the active segment.
        log.delete_before(u64::MAX).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        log.close().await.unwrap();
        let (log, report) = SegmentLog::open(&path, config(8 << 10, Durability::Always))
            .await
            .unwrap();
        assert_eq!(report.next_offset, 200);
        assert_eq!(log.start_offset(), report.start_offset);
        log.close().await.unwrap();
    });
}

#[test]
fn a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let (log, _) = SegmentLog::open(&path, LogConfig::default()).await.unwrap();
        let err = SegmentLog::open(&path, LogConfig::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        log.close().await.unwrap();
        let (log, _) = SegmentLog::open(&path, LogConfig::default()).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn durability_parses() {
    assert_eq!("always".parse::<Durability>().unwrap(), Durability::Always);
    assert_eq!("never".parse::<Durability>().unwrap(), Durability::Never);
    assert_eq!(
        "interval(5ms)".parse::<Durability>().unwrap(),
        Durability::Interval(Duration::from_millis(5))
    );
    assert_eq!(
        "interval(7)".parse::<Durability>().unwrap(),
        Durability::Interval(Duration::from_millis(7))
    );
    assert!("interval(0ms)".parse::<Durability>().is_err());
    assert!("sometimes"
        .parse::<Durability>()
        .unwrap_err()
        .contains("sometimes"));
}

/// Writes `count` batches, closes, and returns the segment file and each batch's byte range.
fn write_log(path: &Path, count: usize) -> (std::path::PathBuf, Vec<std::ops::Range<usize>>) {
    let owned = path.to_owned();
    run(move || async move {
        let (log, _) = SegmentLog::open(&owned, config(1 << 20, Durability::Always))
            .await
            .unwrap();
        for i in 0..count {
            log.append(&mut batch(i as i64 * 3, 3, 20 + i))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
    });
    let file = segment_files(path).pop().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = wire_core::BatchHeader::decode(&bytes[at..]).unwrap();
        ranges.push(at..at + header.total_len());
        at += header.total_len();
    }
    (file, ranges)
}

fn reopen(path: &Path, truncate_corrupt_tail: bool) -> Result<(RecoveryReport, Vec<u64>)> {
    let owned = path.to_owned();
    let result = std::rc::Rc::new(std::cell::RefCell::new(None));
    let out = result.clone();
    run(move || async move {
        let config = LogConfig {
            truncate_corrupt_tail,
            ..config(1 << 20, Durability::Always)
        };
        let opened = SegmentLog::open(&owned, config).await;
        let value = match opened {
            Ok((log, report)) => {
                let offsets = read_all(&log, 0).await.iter().map(|(o, _)| *o).collect();
                log.close().await.unwrap();
                Ok((report, offsets))
            }
            Err(err) => Err(err),
        };
        *out.borrow_mut() = Some(value);
    });
    let value = result.borrow_mut().take().unwrap();
    value
}

#[test]
fn recovery_cuts_a_torn_last_batch_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (file, ranges) = write_log(dir.path(), 6);
    let pristine = std::fs::read(&file).unwrap();
    let last = ranges.last().unwrap().clone();
    for cut in last.start..last.end {
        std::fs::write(&file, &pristine[..cut]).unwrap();
        let (report, offsets) = reopen(dir.path(), false).unwrap();
        assert_eq!(report.next_offset, 15, "cut at {cut}");
        assert_eq!(offsets, vec![0, 3, 6, 9, 12], "cut at {cut}");
        let torn = (cut - last.start) as u64;
        assert_eq!(
            report.truncated.as_ref().map_or(0, |t| t.bytes),
            torn,
            "cut at {cut}"
        );
        assert_eq!(std::fs::metadata(&file).unwrap().len(), last.start as u64);
    }
}

#[test]
fn recovery_drops_a_corrupt_last_batch_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (file, ranges) = write_log(dir.path(), 6);
    let pristine = std::fs::read(&file).unwrap();
    let last = ranges.last().unwrap().clone();
    for at in last.start..last.end {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x20;
        std::fs::write(&file, &bytes).unwrap();
        let (report, offsets) = reopen(dir.path(), false).unwrap();
        assert_eq!(offsets, vec![0, 3, 6, 9, 12], "flip at {at}");
        let cut = report
            .truncated
            .unwrap_or_else(|| panic!("flip at {at} not reported"));
        assert_eq!(
            (cut.position, cut.bytes),
            (last.start as u64, last.len() as u64)
        );
    }
}

#[test]
fn damage_before_whole_batches_is_an_error_not_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (file, ranges) = write_log(dir.path(), 6);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[ranges[2].start + 70] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = reopen(dir.path(), false).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { position, .. } if position == ranges[2].start as u64),
        "{err}"
    );
    assert!(err.to_string().contains("not a torn tail"), "{err}");
    // The file is untouched, and an operator can choose to cut it.
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let (report, offsets) = reopen(dir.path(), true).unwrap();
    assert_eq!(offsets, vec![0, 3]);
    assert!(report.truncated.is_some());
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let owned = path.clone();
    run(move || async move {
        let (log, _) = SegmentLog::open(&owned, config(8 << 10, Durability::Always))
            .await
            .unwrap();
        for i in 0..30 {
            log.append(&mut batch(i, 1, 500)).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let first = segment_files(&path).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 4;
    std::fs::write(&first, &bytes).unwrap();
    run(move || async move {
        let (log, _) = SegmentLog::open(&path, config(8 << 10, Durability::Always))
            .await
            .unwrap();
        let mut reader = log.reader(0).unwrap();
        let err = reader.next().await.err().unwrap();
        assert!(matches!(&err, Error::Corrupt { position: 0, .. }), "{err}");
        log.close().await.unwrap();
    });
}

#[test]
fn zeros_after_the_last_batch_are_padding() {
    let dir = tempfile::tempdir().unwrap();
    let (file, ranges) = write_log(dir.path(), 3);
    let end = ranges[2].end;
    let block_end = end.div_ceil(4096) * 4096;
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.resize(block_end, 0);
    std::fs::write(&file, &bytes).unwrap();
    let (report, offsets) = reopen(dir.path(), false).unwrap();
    assert_eq!(offsets, vec![0, 3, 6]);
    assert_eq!(report.truncated, None);
    assert_eq!(report.padding_bytes, (block_end - end) as u64);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), end as u64);

    // Zeros the flusher wrote ahead of the data are padding too, however far they reach.
    bytes.resize(block_end + (1 << 20), 0);
    std::fs::write(&file, &bytes).unwrap();
    let (report, offsets) = reopen(dir.path(), false).unwrap();
    assert_eq!(offsets, vec![0, 3, 6]);
    assert_eq!(report.truncated, None);
    assert_eq!(report.padding_bytes, (block_end + (1 << 20) - end) as u64);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), end as u64);
}

#[test]
fn an_idle_log_writes_zeros_ahead_and_a_crash_copy_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let (path, copy_path) = (dir.path().to_owned(), copy.path().to_owned());
    run(move || async move {
        let config = LogConfig {
            zero_ahead_bytes: 256 << 10,
            ..config(1 << 20, Durability::Always)
        };
        let (log, _) = SegmentLog::open(&path, config.clone()).await.unwrap();
        let mut batches = Vec::new();
        for i in 0..5 {
            let mut b = batch(i * 2, 2, 300);
            log.append(&mut b).await.unwrap();
            batches.push(b);
        }
        for _ in 0..500 {
            if log.probe().bytes_zeroed >= 256 << 10 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            log.probe().bytes_zeroed,
            256 << 10,
            "idle: zeros up to 256 KiB ahead"
        );
        let file = segment_files(&path).pop().unwrap();
        let data: u64 = batches.iter().map(|b| b.encoded_len() as u64).sum();
        assert!(std::fs::metadata(&file).unwrap().len() >= data + (128 << 10));
        // What a machine that stopped now would leave: the data, then zeros.
        std::fs::copy(&file, copy_path.join(file.file_name().unwrap())).unwrap();
        // More appends land on the zeroed blocks, and a clean close trims the zeros.
        let mut b = batch(10, 2, 300);
        log.append(&mut b).await.unwrap();
        batches.push(b);
        assert_eq!(read_all(&log, 0).await, expected_rows(&batches));
        log.close().await.unwrap();
        let data = data + batches[5].encoded_len() as u64;
        assert_eq!(std::fs::metadata(&file).unwrap().len(), data);

        let (log, report) = SegmentLog::open(&copy_path, config).await.unwrap();
        assert_eq!(report.truncated, None);
        assert!(report.padding_bytes >= 128 << 10, "{report:?}");
        assert_eq!(read_all(&log, 0).await, expected_rows(&batches[..5]));
        log.close().await.unwrap();
    });
}

/// Writes a 200-batch log, zeroes `zeroed(block)` of its bytes, where `block` is the first
/// block boundary after the start of a batch beyond the third block, and reopens it: recovery
/// must cut the log at or before the zeros and keep some batches.
fn reopen_with_zeros(zeroed: impl Fn(usize) -> std::ops::Range<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let (file, ranges) = write_log(dir.path(), 200);
    let mut bytes = std::fs::read(&file).unwrap();
    let start = ranges.iter().find(|r| r.start > 3 * 4096).unwrap().start;
    let hole = zeroed(start.div_ceil(4096) * 4096);
    bytes[hole.clone()].fill(0);
    std::fs::write(&file, &bytes).unwrap();
    let (report, offsets) = reopen(dir.path(), false).unwrap();
    let cut = report.truncated.expect("the lost write must be reported");
    assert!(cut.position <= hole.start as u64);
    assert!(offsets.len() < 200 && !offsets.is_empty());
}

#[test]
fn a_lost_block_before_whole_batches_is_a_torn_tail() {
    // An unsynced write round of several blocks whose first block never reached the disk:
    // the batches after the hole were never acknowledged, so recovery cuts them.
    reopen_with_zeros(|block| block..block + 4096);
}

#[test]
fn a_write_torn_at_a_sector_before_whole_batches_is_a_torn_tail() {
    // Writes in flight together: the later one reached the disk whole, the earlier one lost
    // its last sector (never-written bytes of a fresh file read as zeros).
    reopen_with_zeros(|block_end| block_end - 512..block_end);
}

#[test]
fn a_lost_rewrite_of_a_padded_block_is_a_torn_tail() {
    // A write ended in a partial block, padded with zeros; the next write, which rewrote that
    // block, was lost while a later one reached the disk: zeros run from the last whole batch
    // to the end of its block.
    let dir = tempfile::tempdir().unwrap();
    let (file, ranges) = write_log(dir.path(), 200);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = ranges
        .iter()
        .find(|r| r.start > 3 * 4096 && r.end % 4096 > 0 && r.end % 4096 < 4096 - 512)
        .unwrap();
    let block_end = last.end.div_ceil(4096) * 4096;
    bytes[last.end..block_end].fill(0);
    std::fs::write(&file, &bytes).unwrap();
    let (report, _) = reopen(dir.path(), false).unwrap();
    let cut = report.truncated.expect("the lost rewrite must be reported");
    assert_eq!(cut.position, last.end as u64);
}

#[derive(Debug, Clone)]
enum Step {
    Append { rows: usize, pad: usize },
    Reopen,
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (1usize..20, 0usize..700).prop_map(|(rows, pad)| Step::Append { rows, pad }),
        1 => Just(Step::Reopen),
        1 => Just(Step::Sync),
    ]
}

#[test]
fn random_appends_and_reopens_read_back_identical() {
    let executor = crate::io::local_executor().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let strategy = (proptest::collection::vec(step(), 1..40), 12u64..40);
    runner
        .run(&strategy, |(steps, segment_kib)| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            executor.run(async move {
                let conf = config(segment_kib << 10, Durability::Always);
                let (mut log, _) = SegmentLog::open(&path, conf.clone()).await.unwrap();
                let mut model: Vec<Batch> = Vec::new();
                let mut next = 0i64;
                for step in steps {
                    match step {
                        Step::Append { rows, pad } => {
                            let mut b = batch(next, rows, pad);
                            next += rows as i64;
                            log.append(&mut b).await.unwrap();
                            model.push(b);
                        }
                        Step::Sync => log.sync().await.unwrap(),
                        Step::Reopen => {
                            log.close().await.unwrap();
                            let (reopened, report) =
                                SegmentLog::open(&path, conf.clone()).await.unwrap();
                            assert_eq!(report.truncated, None);
                            assert_eq!(report.next_offset, next as u64);
                            log = reopened;
                        }
                    }
                    assert_eq!(read_all(&log, 0).await, expected_rows(&model));
                }
                log.close().await.unwrap();
            });
            Ok(())
        })
        .unwrap();
}

#[test]
fn relative_directories_work() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let relative = dir
        .path()
        .strip_prefix(std::env::current_dir().unwrap())
        .unwrap()
        .to_owned();
    assert!(relative.is_relative());
    run(move || async move {
        let (log, _) = SegmentLog::open(&relative, config(8 << 10, Durability::Always))
            .await
            .unwrap();
        for i in 0..30 {
            log.append(&mut batch(i, 1, 500)).await.unwrap();
        }
        assert!(log.segment_count() > 1);
        assert!(log.dir().is_absolute());
        log.close().await.unwrap();
    });
}

#[test]
fn a_reader_finishes_a_segment_that_retention_deleted() {
    with_log(8 << 10, Durability::Always, |log, _| async move {
        for i in 0..40 {
            log.append(&mut batch(i, 1, 500)).await.unwrap();
        }
        let mut reader = log.reader(0).unwrap();
        let first = reader.next().await.unwrap().unwrap().header().base_offset;
        assert_eq!(first, 0);
        let first_segment_end = log.shared.state.borrow().sealed[0].next_offset;
        assert_eq!(log.delete_before(first_segment_end).await.unwrap(), 1);
        let mut seen = vec![first];
        while let Some(view) = reader.next().await.unwrap() {
            seen.push(view.header().base_offset);
        }
        assert_eq!(seen, (0..40).collect::<Vec<u64>>());
        assert!(matches!(log.reader(0), Err(Error::OffsetOutOfRange { .. })));
        log.close().await.unwrap();
    });
}
