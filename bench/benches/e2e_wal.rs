//! End-to-end benchmark of the segment-log WAL beside this machine's raw disk limits.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_wal [-- --dir PATH]` (PATH on the disk to test;
//! default `target/wal-bench`). `-- --test` runs a seconds-long smoke pass with tiny sizes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use mimalloc::MiMalloc;
use wire_bench::{
    machine_description, memory_scan_bandwidth, new_histogram, percentiles_us, record_us,
};
use wire_core::{Batch, BatchBuilder, PartitionId, StreamId, ValueRef};
use wire_storage::wal::{Durability, LogConfig, SegmentLog};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Plan {
    dir: PathBuf,
    smoke: bool,
    budget: Duration,
    latency_samples: usize,
    replay_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    let plan = parse_args()?;
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("creating {}", plan.dir.display()))?;
    println!("# wire WAL benchmark");
    println!(
        "command: {} -- --dir {}{}",
        wire_bench::cargo_command("e2e_wal"),
        plan.dir.display(),
        if plan.smoke { " --test" } else { "" }
    );
    println!("machine: {}", machine_description(&plan.dir));
    println!("executor: one glommio LocalExecutor, unpinned; allocator mimalloc");
    println!(
        "method: each WAL figure is paired with a raw O_DIRECT + fdatasync figure measured in"
    );
    println!(
        "alternating slices (throughput) or interleaved sample by sample (latency), so both see"
    );
    println!("the same disk state");
    let executor = wire_storage::io::local_executor().context("starting glommio")?;
    executor.run(async move { run_wal_benches(&plan).await })
}

fn parse_args() -> anyhow::Result<Plan> {
    let mut dir = PathBuf::from("target/wal-bench");
    let mut smoke = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next().context("--dir needs a path")?.into(),
            "--test" | "--smoke" => smoke = true,
            "--bench" => {}
            other => {
                anyhow::bail!("unknown argument `{other}`; usage: e2e_wal [--dir PATH] [--test]")
            }
        }
    }
    Ok(if smoke {
        Plan {
            dir,
            smoke,
            budget: Duration::from_millis(100),
            latency_samples: 50,
            replay_bytes: 4 << 20,
        }
    } else {
        Plan {
            dir,
            smoke,
            budget: Duration::from_secs(2),
            latency_samples: 3000,
            replay_bytes: 520 << 20,
        }
    })
}

async fn run_wal_benches(plan: &Plan) -> anyhow::Result<()> {
    let raw_path = plan.dir.join("raw.bin");
    println!(
        "\n## append throughput (16 concurrent appenders, 1 MiB write buffers, 64 MiB segments)"
    );
    println!("raw = sequential O_DIRECT 1 MiB writes, each followed by fdatasync, in 5 slices alternating with the WAL's");
    println!(
        "{:<16} {:>6} {:>9} {:>11} {:>13} {:>9} {:>7}",
        "durability", "batch", "WAL MB/s", "batches/s", "batches/sync", "raw MB/s", "WAL/raw"
    );
    for durability in [
        Durability::Always,
        Durability::Interval(Duration::from_millis(10)),
        Durability::Never,
    ] {
        for batch_bytes in [4 << 10, 64 << 10, 1 << 20] {
            let result = append_throughput(plan, durability, batch_bytes, 16).await?;
            println!(
                "{:<16} {:>5}K {:>9.0} {:>11.0} {:>13.1} {:>9.0} {:>6.2}x",
                durability.to_string(),
                batch_bytes >> 10,
                result.bytes_per_s / 1e6,
                result.batches_per_s,
                result.batches_per_sync,
                result.raw_bytes_per_s / 1e6,
                result.bytes_per_s / result.raw_bytes_per_s
            );
        }
    }
    println!("\n## durable append latency: one appender, 4 KiB, interleaved sample by sample");
    let (wal, raw) = append_latency(plan, &raw_path).await?;
    println!(
        "raw O_DIRECT 4 KiB write + fdatasync: {}",
        percentiles_us(&raw)
    );
    println!(
        "WAL append, durability always:       {}",
        percentiles_us(&wal)
    );
    let ratio = wal.value_at_quantile(0.99) as f64 / raw.value_at_quantile(0.99).max(1) as f64;
    println!("p99 WAL/raw: {ratio:.2}x (target <= 1.3x, issue 20)");
    println!(
        "\n## sequential replay (64 KiB batches of bid-like rows, 64 MiB segments, one reader)"
    );
    replay(plan).await?;
    Ok(())
}

/// A batch of Nexmark-bid-like rows whose encoding is at least `bytes` long.
fn bid_batch(bytes: usize) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let mut i = 0i64;
    while builder.encoded_len() < bytes {
        let row = [
            ValueRef::I64(1000 + i % 977),
            ValueRef::I64(2000 + i % 313),
            ValueRef::I64(100 + i * 7 % 10_000),
            ValueRef::Str(["apple", "google", "facebook", "baidu"][(i % 4) as usize]),
            ValueRef::Str("https://www.nexmark.com/bid/item.htm?query=1&channel_id=8291"),
            ValueRef::Timestamp(1_700_000_000_000 + i),
            ValueRef::Str(""),
        ];
        if builder.push_with_time(&row, 1_700_000_000_000 + i).is_err() {
            break;
        }
        i += 1;
    }
    builder.finish()
}

struct Throughput {
    bytes_per_s: f64,
    batches_per_s: f64,
    batches_per_sync: f64,
    raw_bytes_per_s: f64,
}

fn fresh_dir(plan: &Plan, name: &str) -> anyhow::Result<PathBuf> {
    let dir = plan.dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    Ok(dir)
}

/// Alternates short slices of raw O_DIRECT 1 MiB write+fdatasync and of WAL appends, so both
/// see the same disk state (this shared disk's speed drifts by 2x within a minute).
async fn append_throughput(
    plan: &Plan,
    durability: Durability,
    batch_bytes: usize,
    appenders: usize,
) -> anyhow::Result<Throughput> {
    const SLICES: u32 = 5;
    let dir = fresh_dir(plan, "throughput")?;
    let (log, _) = SegmentLog::open(
        &dir,
        LogConfig {
            durability,
            ..LogConfig::default()
        },
    )
    .await?;
    let raw_path = plan.dir.join("raw-throughput.bin");
    let mut raw = wire_bench::RawSyncWriter::create(&raw_path, 1 << 20)?;
    let template = bid_batch(batch_bytes);
    let slice = plan.budget / SLICES;
    let (mut raw_bytes, mut raw_seconds, mut wal_seconds) = (0u64, 0f64, 0f64);
    for _ in 0..SLICES {
        let started = Instant::now();
        while started.elapsed() < slice {
            raw.append()?;
            raw_bytes += 1 << 20;
        }
        raw_seconds += started.elapsed().as_secs_f64();
        wal_seconds += append_slice(&log, &template, appenders, slice).await?;
    }
    let probe = log.probe();
    log.close().await?;
    drop(raw);
    std::fs::remove_file(&raw_path)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(Throughput {
        bytes_per_s: probe.bytes_appended as f64 / wal_seconds,
        batches_per_s: probe.appends as f64 / wal_seconds,
        batches_per_sync: probe.appends as f64 / probe.syncs.max(1) as f64,
        raw_bytes_per_s: raw_bytes as f64 / raw_seconds,
    })
}

/// Runs `appenders` concurrent appenders for `slice`, then syncs so the next raw slice starts
/// on a quiet device; returns the seconds taken.
async fn append_slice(
    log: &SegmentLog,
    template: &Batch,
    appenders: usize,
    slice: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + slice;
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let log = log.clone();
            let mut batch = template.clone();
            glommio::spawn_local(async move {
                while Instant::now() < deadline {
                    log.append(&mut batch).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    log.sync().await?;
    Ok(seconds)
}

async fn append_latency(
    plan: &Plan,
    raw_path: &std::path::Path,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let dir = fresh_dir(plan, "latency")?;
    let config = LogConfig {
        durability: Durability::Always,
        ..LogConfig::default()
    };
    let (log, _) = SegmentLog::open(&dir, config).await?;
    let mut raw_writer = wire_bench::RawSyncWriter::create(raw_path, 4096)?;
    // Just under 4 KiB, so that each append writes one block like the raw writer's.
    let mut batch = bid_batch(4096 - 200);
    let (mut wal, mut raw) = (new_histogram(), new_histogram());
    for _ in 0..plan.latency_samples {
        record_us(&mut raw, raw_writer.append()?);
        let started = Instant::now();
        log.append(&mut batch).await?;
        record_us(&mut wal, started.elapsed());
    }
    drop(raw_writer);
    std::fs::remove_file(raw_path)?;
    log.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok((wal, raw))
}

async fn replay(plan: &Plan) -> anyhow::Result<()> {
    let dir = fresh_dir(plan, "replay")?;
    let segment_bytes = if plan.smoke { 1 << 20 } else { 64 << 20 };
    let config = LogConfig {
        durability: Durability::Never,
        segment_bytes,
        ..LogConfig::default()
    };
    let (log, _) = SegmentLog::open(&dir, config.clone()).await?;
    let mut batch = bid_batch(64 << 10);
    let mut appended = 0usize;
    while appended < plan.replay_bytes {
        log.append(&mut batch).await?;
        appended += batch.as_bytes().len();
    }
    log.close().await?;
    // Pass 1 reads from disk (O_DIRECT writes bypass the page cache) and warms the cache.
    let (log, _) = SegmentLog::open(&dir, config.clone()).await?;
    let cold = read_everything(&log).await?;
    log.close().await?;
    // A fresh open forgets which batches were verified: pass 2 verifies from the page cache,
    // pass 3 re-reads batches this open already verified.
    let (log, _) = SegmentLog::open(&dir, config).await?;
    let warm = read_everything(&log).await?;
    let again = read_everything(&log).await?;
    let sealed_segments = log.segment_count() - 1;
    log.close().await?;
    std::fs::remove_dir_all(&dir)?;
    let scan = memory_scan_bandwidth(&vec![1u8; 64 << 20], 4);
    println!(
        "data: {} MB in {} sealed segments + the active one",
        warm.0 / 1_000_000,
        sealed_segments
    );
    for (label, (bytes, rows, seconds)) in [
        (
            "from disk, verifying every batch (CRC32C + bytecheck)",
            cold,
        ),
        ("from page cache, verifying every batch", warm),
        (
            "from page cache, batches verified earlier in this open",
            again,
        ),
    ] {
        println!(
            "{label}: {:.2} GB/s, {:.1} M rows/s",
            bytes as f64 / seconds / 1e9,
            rows as f64 / seconds / 1e6
        );
    }
    let (bytes, _, seconds) = warm;
    println!(
        "memory scan limit (one core, 8-byte words): {:.2} GB/s; replay/scan: {:.2}x",
        scan / 1e9,
        bytes as f64 / seconds / scan
    );
    Ok(())
}

async fn read_everything(log: &SegmentLog) -> anyhow::Result<(usize, usize, f64)> {
    let started = Instant::now();
    let mut reader = log.reader(log.start_offset())?;
    let (mut bytes, mut rows) = (0usize, 0usize);
    while let Some(view) = reader.next().await? {
        bytes += view.as_bytes().len();
        rows += view.row_count();
    }
    Ok((bytes, rows, started.elapsed().as_secs_f64()))
}
