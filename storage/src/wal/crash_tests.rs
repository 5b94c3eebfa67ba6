//! The log over a simulated disk ([`SimDisk`]): a crash-point sweep (reliability plan A2) and
//! `EIO` on write and on `fdatasync` (A3).
//!
//! The sweep runs a seeded workload of appends, syncs and segment rolls, stops the machine at
//! every disk operation in turn, loses power (the simulated disk drops, keeps a prefix of, or
//! tears the unsynced writes), reopens the directory (recovery), and checks: opening
//! succeeds, every acknowledged batch is there, whole and in order, and whatever else is there
//! is exactly the next batches that were handed to the log (never a torn or foreign one).
//! Replay one seed with `SIM_SEED=<n> cargo test -p wire-storage sim`; a failure prints it.

use std::path::Path;

use wire_core::{Batch, Value};

use super::tests::{batch, run};
use super::*;
use crate::disk::sim::{SimDisk, Survived};

/// One step of a workload.
#[derive(Debug, Clone, Copy)]
enum Step {
    Append { rows: usize, pad: usize },
    Sync,
}

/// What a run handed to the log before the machine stopped.
struct Outcome {
    /// Batches handed to the log with their offsets set: acknowledged ones, then possibly the
    /// one whose append failed (it may or may not have reached the disk).
    handed: Vec<Batch>,
    /// How many of `handed` were acknowledged as durable (synced).
    durable: usize,
}

/// `SIM_SEED=<n>` replays one seed; `SIM_SEEDS=<count>` runs more than the default two (each
/// seed's sweep takes a few seconds: about 80 crash points per durability policy).
fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.parse().expect("SIM_SEED is a number")];
    }
    let count = std::env::var("SIM_SEEDS").map_or(8, |n| n.parse().expect("SIM_SEEDS is a number"));
    (0..count).collect()
}

/// A small PRNG for workloads (the disk has its own).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 29)
}

/// Appends of 1–8 rows padded to 0–2999 bytes (so writes span blocks and segments roll every
/// few appends), with an explicit sync now and then.
fn workload(seed: u64) -> Vec<Step> {
    (0..20)
        .map(|i| match mix(seed, i) % 6 {
            0 => Step::Sync,
            r => Step::Append {
                rows: 1 + (r as usize * 3 + i as usize) % 8,
                pad: (mix(seed, i + 1000) % 3000) as usize,
            },
        })
        .collect()
}

fn sim_config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 12 << 10,
        durability,
        write_buffer_bytes: 8 << 10,
        // Small enough that idle moments write zeros ahead within the 12 KiB segments.
        zero_ahead_bytes: 8 << 10,
        ..LogConfig::default()
    }
}

/// Runs `steps` on a log over `disk` until the first failure (the machine stopping).
async fn run_steps(disk: &SimDisk, dir: &Path, durability: Durability, steps: &[Step]) -> Outcome {
    let mut outcome = Outcome {
        handed: Vec::new(),
        durable: 0,
    };
    let Ok((log, _)) = SegmentLog::open_on(disk.clone(), dir, sim_config(durability)).await else {
        assert!(disk.crashed(), "open failed on a healthy disk");
        return outcome;
    };
    let mut first = 0;
    for step in steps {
        let done = match *step {
            Step::Append { rows, pad } => {
                let mut next = batch(first, rows, pad);
                first += rows as i64;
                let before = log.next_offset();
                let appended = log.append(&mut next).await;
                // A failed append that was staged (took offsets) may still reach the disk.
                if appended.is_ok() || log.next_offset() > before {
                    outcome.handed.push(next);
                }
                appended.map(|_| durability == Durability::Always)
            }
            Step::Sync => log.sync().await.map(|()| true),
        };
        match done {
            Ok(true) => outcome.durable = outcome.handed.len(),
            Ok(false) => {}
            Err(_) => break,
        }
    }
    let _ = log.close().await;
    outcome
}

fn rows_of(batches: &[Batch]) -> Vec<Rows> {
    batches
        .iter()
        .map(|b| {
            let rows = b.view().rows().map(|r| r.to_values()).collect();
            (b.header().base_offset, rows)
        })
        .collect()
}

/// Reopens `dir` after a power loss and returns every batch in it. The recovery is the real
/// one; the new disk under it only spares the real `fdatasync`s of closing the log again.
async fn recover(dir: &Path, durability: Durability) -> Result<Vec<Rows>> {
    let (log, _) = SegmentLog::open_on(SimDisk::new(0), dir, sim_config(durability)).await?;
    let mut reader = log.reader(log.start_offset())?;
    let mut found = Vec::new();
    while let Some(view) = reader.next().await? {
        let rows = view.rows().map(|r| r.to_values()).collect();
        found.push((view.header().base_offset, rows));
    }
    drop(reader);
    log.close().await?;
    Ok(found)
}

type Rows = (u64, Vec<Vec<Value>>);

/// One crash point: run, stop at disk operation `crash_at`, lose power, recover, check.
async fn crash_point(seed: u64, durability: Durability, crash_at: u64) -> u64 {
    let scratch = tempfile::tempdir().unwrap();
    crash_and_check(scratch.path(), &[], seed, durability, crash_at)
        .await
        .0
}

/// Runs seed `seed`'s workload over the log in `dir` (which holds `before`), stops the machine
/// at disk operation `crash_at`, loses power, recovers and checks. Returns the disk operations
/// done and every batch recovery found.
async fn crash_and_check(
    dir: &Path,
    before: &[Rows],
    seed: u64,
    durability: Durability,
    crash_at: u64,
) -> (u64, Vec<Rows>) {
    let disk = SimDisk::new(seed ^ crash_at.rotate_left(32));
    disk.crash_at_op(crash_at);
    let outcome = run_steps(&disk, dir, durability, &workload(seed)).await;
    let ops = disk.ops();
    let survived: Vec<(std::path::PathBuf, Survived)> = disk.crash().unwrap();
    let replay = format!(
        "SIM_SEED={seed} durability={durability} crash_at={crash_at} over {} batches: {} \
         handed, {} durable, survivors {survived:?}",
        before.len(),
        outcome.handed.len(),
        outcome.durable
    );
    let found = recover(dir, durability)
        .await
        .unwrap_or_else(|e| panic!("{replay}: recovery refused a crashed log: {e}"));
    let (old, new) = found.split_at(before.len().min(found.len()));
    assert_eq!(old, before, "{replay}: batches recovered before changed");
    assert!(
        new.len() >= outcome.durable,
        "{replay}: lost acknowledged batches: found {}",
        new.len()
    );
    assert!(
        new.len() <= outcome.handed.len(),
        "{replay}: batches from nowhere"
    );
    assert_eq!(
        new,
        rows_of(&outcome.handed[..new.len()]),
        "{replay}: recovered batches differ from those appended"
    );
    (ops, found)
}

/// Every crash point of the seed's workload under `durability`; returns how many were run.
async fn sweep(seed: u64, durability: Durability) -> u64 {
    // A run that never stops counts the disk operations; then one crash at each of them, and
    // one power loss after the whole workload.
    let total = crash_point(seed, durability, u64::MAX).await;
    for crash_at in 1..=total {
        crash_point(seed, durability, crash_at).await;
    }
    total + 1
}

#[test]
fn sim_crash_point_sweep_keeps_every_acknowledged_batch() {
    run(|| async {
        let mut points = 0;
        for seed in seeds() {
            points += sweep(seed, Durability::Always).await;
            points += sweep(seed, Durability::Never).await;
        }
        assert!(
            points > 100,
            "only {points} crash points: the workload is too small"
        );
    });
}

/// A power loss after a recovery: the first run crashes at every other disk operation, and
/// the run after its recovery (appending after a cut tail, from a partial block) at one chosen
/// by the seed. Both runs' acknowledged batches survive, and the first run's recovered
/// batches are never changed.
#[test]
fn sim_a_second_crash_after_recovery_keeps_both_runs_batches() {
    run(|| async {
        let seed = seeds()[0];
        for durability in [Durability::Always, Durability::Never] {
            let total = crash_point(seed, durability, u64::MAX).await;
            for crash_at in (1..=total).step_by(2) {
                let scratch = tempfile::tempdir().unwrap();
                let dir = scratch.path();
                let (_, found) = crash_and_check(dir, &[], seed, durability, crash_at).await;
                let second = 1 + mix(seed, crash_at) % (total + 1);
                crash_and_check(dir, &found, seed + 1000, durability, second).await;
            }
        }
    });
}

/// Damage inside acknowledged data (a flipped byte in a batch with a whole batch after it) is
/// not a torn tail: recovery refuses it, over a log that a simulated crash left behind.
#[test]
fn sim_mid_log_damage_after_a_crash_is_refused() {
    run(|| async {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let disk = SimDisk::new(7);
        let steps = [Step::Append { rows: 3, pad: 10 }; 3];
        let outcome = run_steps(&disk, dir, Durability::Always, &steps).await;
        assert_eq!(outcome.durable, 3);
        disk.crash().unwrap();
        let segment = dir.join(segment::segment_file_name(0));
        let mut bytes = std::fs::read(&segment).unwrap();
        let first_len = outcome.handed[0].encoded_len();
        bytes[first_len / 2] ^= 0x40;
        std::fs::write(&segment, bytes).unwrap();
        match recover(dir, Durability::Always).await {
            Err(Error::Corrupt { position: 0, .. }) => {}
            other => panic!("expected a refusal at byte 0, got {other:?}"),
        }
    });
}

/// Appends `count` batches concurrently (each its own task) and returns their results.
async fn append_concurrently(log: &SegmentLog<SimDisk>, count: usize) -> Vec<Result<u64>> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let log = log.clone();
            glommio::spawn_local(async move { log.append(&mut batch(i as i64, 2, 100)).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await);
    }
    results
}

fn assert_poisoned(result: Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(err @ Error::Poisoned { .. }) => {
            let text = err.to_string();
            assert!(text.contains("Input/output error"), "{what}: {text}");
            assert!(text.starts_with("log poisoned"), "{what}: {text}");
        }
        other => panic!("{what}: expected the poisoning EIO, got {other:?}"),
    }
}

/// A3, fsyncgate: `fdatasync` fails with EIO. The appends waiting on it fail, every later one
/// fails, nothing is acknowledged after it, and the log never syncs again (a retried sync would
/// "succeed" with the data gone). After a power loss every acknowledged batch is there.
#[test]
fn sim_eio_on_fdatasync_poisons_the_log_and_is_never_retried() {
    run(|| async {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let disk = SimDisk::new(3);
        let (log, _) = SegmentLog::open_on(disk.clone(), dir, sim_config(Durability::Always))
            .await
            .unwrap();
        let before = append_concurrently(&log, 4).await;
        assert!(before.iter().all(Result::is_ok), "{before:?}");
        let acked = log.acked_offset();
        disk.fail_sync(1);
        let syncs = disk.syncs();
        for (i, result) in append_concurrently(&log, 5).await.into_iter().enumerate() {
            assert_poisoned(result, &format!("pending append {i}"));
        }
        assert_eq!(disk.syncs(), syncs + 1, "one failed sync, never retried");
        assert_poisoned(log.append(&mut batch(0, 1, 0)).await, "a later append");
        assert_poisoned(log.sync().await, "an explicit sync");
        assert_eq!(
            log.acked_offset(),
            acked,
            "nothing acknowledged after the failure"
        );
        assert_eq!(disk.syncs(), syncs + 1, "one failed sync, never retried");
        assert_poisoned(log.close().await, "close");
        disk.crash().unwrap();
        let found = recover(dir, Durability::Always).await.unwrap();
        assert_eq!(
            found.iter().map(|(o, r)| *o + r.len() as u64).max(),
            Some(acked)
        );
    });
}

/// A3: a write fails with EIO. That append fails, and so does every later one and every sync,
/// even though the device works again; the batches acknowledged before survive a power loss.
#[test]
fn sim_eio_on_write_poisons_the_log() {
    run(|| async {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let disk = SimDisk::new(5);
        let (log, _) = SegmentLog::open_on(disk.clone(), dir, sim_config(Durability::Always))
            .await
            .unwrap();
        for i in 0..3 {
            log.append(&mut batch(i * 2, 2, 50)).await.unwrap();
        }
        let acked = log.acked_offset();
        disk.fail_write(1);
        assert_poisoned(log.append(&mut batch(6, 2, 50)).await, "the failed append");
        assert_poisoned(log.append(&mut batch(8, 2, 50)).await, "a later append");
        assert_poisoned(log.sync().await, "an explicit sync");
        assert_eq!(log.acked_offset(), acked);
        let mut reader = log.reader(0).unwrap();
        let first = reader.next().await.map(|view| view.map(|v| v.row_count()));
        assert!(
            matches!(first, Ok(Some(2))),
            "acknowledged batches stay readable: {first:?}"
        );
        drop(reader);
        assert_poisoned(log.close().await, "close");
        disk.crash().unwrap();
        let found = recover(dir, Durability::Always).await.unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
    });
}

/// A write fails while later writes are still in flight: once `close` returns, no task holds a
/// segment file any more (a leaked descriptor keeps a filesystem from unmounting).
#[test]
fn a_failed_write_with_writes_in_flight_leaves_no_file_open() {
    run(|| async {
        let scratch = tempfile::tempdir().unwrap();
        let disk = SimDisk::new(11);
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..sim_config(Durability::Never)
        };
        let (log, _) = SegmentLog::open_on(disk.clone(), scratch.path(), config)
            .await
            .unwrap();
        // Batches of about one write buffer each: the second write fails while the writes
        // after it are in flight.
        disk.fail_write(2);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move { log.append(&mut batch(i, 2, 3000)).await })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            failed += usize::from(task.await.is_err());
        }
        assert!(failed > 0, "no append failed");
        assert_poisoned(log.close().await, "close");
        assert_eq!(
            disk.writes_running(),
            0,
            "close returned with writes running"
        );
        assert_eq!(
            disk.open_files(),
            0,
            "a closed log left a segment file open"
        );
    });
}
