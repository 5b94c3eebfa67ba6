//! SIGKILL a process in the middle of WAL appends, many times, and check that every
//! acknowledged batch is there, intact, after each restart (reliability plan A1).
//!
//! `WIRE_CRASH_CYCLES` sets kills per durability policy (default 40); `WIRE_CRASH_SEED` replays
//! a run's kill timings.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wire_storage::wal::{LogConfig, SegmentLog};
use wire_tests::crash_identity;

/// xorshift64*: enough randomness for kill timings, replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Default)]
struct Card {
    kills: u64,
    acked: u64,
    truncated_bytes: u64,
    recovery_ms: Vec<u128>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the writer, lets it run for a random while, SIGKILLs it, and returns its acks.
/// One kill in five lands at a random moment from spawn (often during open and recovery);
/// the rest land a random 1-300 ms after the writer reported the log open.
fn run_and_kill(dir: &Path, durability: &str, rng: &mut Rng) -> Vec<(u64, u32, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
        .args([dir.to_str().unwrap(), durability, "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wal-crash-child");
    let stdout = child.stdout.take().unwrap();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.is_empty() {
                let _ = opened_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    if rng.next().is_multiple_of(5) {
        std::thread::sleep(Duration::from_millis(rng.next() % 20));
    } else {
        opened_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("writer never opened the log");
        std::thread::sleep(Duration::from_millis(1 + rng.next() % 300));
    }
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().unwrap();
    assert!(!status.success(), "writer exited by itself: {status}");
    let lines = reader.join().unwrap();
    lines
        .iter()
        .filter_map(|line| {
            // The last line may be cut mid-write by the kill; only whole lines count.
            let mut parts = line.strip_prefix("ack ")?.split(' ');
            let base = parts.next()?.parse().ok()?;
            let task = parts.next()?.parse().ok()?;
            let seq = parts.next()?.parse().ok()?;
            Some((base, task, seq))
        })
        .collect()
}

/// Every recovered batch's identity by base offset, truncated bytes, and time to open.
type Recovered = (BTreeMap<u64, Option<(u32, u64)>>, u64, Duration);

/// Reopens the log in this process and returns every batch's identity by base offset.
fn recover(dir: &Path) -> Recovered {
    let dir = dir.to_owned();
    let executor = wire_storage::io::local_executor().unwrap();
    executor.run(async move {
        let started = Instant::now();
        let (log, report) = SegmentLog::open(&dir, LogConfig::default())
            .await
            .expect("recovery failed");
        let took = started.elapsed();
        let mut found = BTreeMap::new();
        let mut reader = log.reader(log.start_offset()).unwrap();
        while let Some(view) = reader.next().await.expect("recovered log unreadable") {
            found.insert(view.header().base_offset, crash_identity(&view));
        }
        assert_eq!(
            found.keys().last().map_or(0, |_| reader.position()),
            report.next_offset
        );
        log.close().await.unwrap();
        (found, report.truncated.map_or(0, |t| t.bytes), took)
    })
}

fn torture(durability: &str) {
    let cycles = env_u64("WIRE_CRASH_CYCLES", 40);
    let seed = env_u64(
        "WIRE_CRASH_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    ) | 1;
    eprintln!("wal crash test: durability {durability}, {cycles} kills, WIRE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    let mut card = Card::default();
    for cycle in 0..cycles {
        for (base, task, seq) in run_and_kill(dir.path(), durability, &mut rng) {
            assert!(
                acked.insert(base, (task, seq)).is_none(),
                "offset {base} acknowledged twice"
            );
        }
        card.kills += 1;

        let (found, truncated, took) = recover(dir.path());

        card.truncated_bytes += truncated;
        card.recovery_ms.push(took.as_millis());
        for (base, identity) in &acked {
            match found.get(base) {
                Some(Some(got)) if got == identity => {}
                other => panic!(
                    "cycle {cycle} (WIRE_CRASH_SEED={seed}): acknowledged batch {identity:?} at offset {base} \
                     recovered as {other:?}"
                ),
            }
        }
        assert!(
            found.values().all(Option::is_some),
            "cycle {cycle}: a recovered batch is not one the writer made"
        );
    }
    card.acked = acked.len() as u64;
    card.recovery_ms.sort_unstable();
    let p = |q: f64| card.recovery_ms[((card.recovery_ms.len() - 1) as f64 * q) as usize];
    eprintln!(
        "wal crash report: durability={durability} kills={} acked={} lost_acked=0 truncated_tail_bytes={} \
         recovery_ms_p50={} recovery_ms_max={}",
        card.kills, card.acked, card.truncated_bytes, p(0.5), p(1.0)
    );
    assert!(
        card.acked > cycles,
        "too few appends were acknowledged to mean anything"
    );
}

#[test]
fn sigkill_loses_no_acknowledged_batch_with_always() {
    torture("always");
}

#[test]
fn sigkill_loses_no_acknowledged_batch_with_interval() {
    torture("interval(5ms)");
}
