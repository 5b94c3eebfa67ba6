//! End-to-end benchmark of the segment-log WAL beside this machine's raw disk limits.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_wal [-- --dir PATH]` (PATH on the disk to test;
//! default `target/wal-bench`). `-- --test` runs a seconds-long smoke pass with tiny sizes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use mimalloc::MiMalloc;
use wire_bench::{
    machine_description, mb_per_s, memory_scan_bandwidth, new_histogram, percentiles_us, record_us,
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
        "command: cargo bench -p wire-bench --bench e2e_wal -- --dir {}{}",
        plan.dir.display(),
        if plan.smoke { " --test" } else { "" }
    );
    println!("machine: {}", machine_description(&plan.dir));
    println!("executor: one glommio LocalExecutor, unpinned; allocator mimalloc");
    let raw_path = plan.dir.join("raw.bin");
    let raw_bw = wire_bench::raw_sync_write_bandwidth(&raw_path, 1 << 20, plan.budget)?;
    let raw_lat = wire_bench::raw_sync_write_latency(&raw_path, 4096, plan.latency_samples)?;
    println!("\n## machine limits (same run)");
    println!(
        "raw O_DIRECT 1 MiB write + fdatasync, sequential: {}",
        mb_per_s(raw_bw)
    );
    println!(
        "raw O_DIRECT 4 KiB write + fdatasync latency: {}",
        percentiles_us(&raw_lat)
    );
    let executor = wire_storage::io::local_executor().context("starting glommio")?;
    let raw_p99 = raw_lat.value_at_quantile(0.99);
    executor.run(async move { run_wal_benches(&plan, raw_bw, raw_p99).await })
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

async fn run_wal_benches(plan: &Plan, raw_bw: f64, raw_p99_us: u64) -> anyhow::Result<()> {
    println!(
        "\n## append throughput (16 concurrent appenders, 1 MiB write buffers, 64 MiB segments)"
    );
    println!(
        "{:<16} {:>9} {:>12} {:>14} {:>14} {:>10}",
        "durability", "batch", "MB/s", "batches/s", "batches/sync", "vs raw"
    );
    for durability in [
        Durability::Always,
        Durability::Interval(Duration::from_millis(10)),
        Durability::Never,
    ] {
        for batch_bytes in [4 << 10, 64 << 10, 1 << 20] {
            let result = append_throughput(plan, durability, batch_bytes, 16).await?;
            println!(
                "{:<16} {:>8}K {:>12.0} {:>14.0} {:>14.1} {:>9.2}x",
                durability.to_string(),
                batch_bytes >> 10,
                result.bytes_per_s / 1e6,
                result.batches_per_s,
                result.batches_per_sync,
                result.bytes_per_s / raw_bw
            );
        }
    }
    println!("\n## durable append latency (durability always, one appender, 4 KiB batches)");
    let latency = append_latency(plan).await?;
    let p99 = latency.value_at_quantile(0.99);
    println!("wal append: {}", percentiles_us(&latency));
    println!(
        "p99 ratio wal/raw: {:.2}x (target <= 1.5x)",
        p99 as f64 / raw_p99_us.max(1) as f64
    );
    println!("\n## sequential replay from page cache (64 KiB batches of bid-like rows, full verification)");
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
}

fn fresh_dir(plan: &Plan, name: &str) -> anyhow::Result<PathBuf> {
    let dir = plan.dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    Ok(dir)
}

async fn append_throughput(
    plan: &Plan,
    durability: Durability,
    batch_bytes: usize,
    appenders: usize,
) -> anyhow::Result<Throughput> {
    let dir = fresh_dir(plan, "throughput")?;
    let config = LogConfig {
        durability,
        ..LogConfig::default()
    };
    let (log, _) = SegmentLog::open(&dir, config).await?;
    let template = bid_batch(batch_bytes);
    let deadline = Instant::now() + plan.budget;
    let started = Instant::now();
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
    let elapsed = started.elapsed().as_secs_f64();
    let probe = log.probe();
    log.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(Throughput {
        bytes_per_s: probe.bytes_appended as f64 / elapsed,
        batches_per_s: probe.appends as f64 / elapsed,
        batches_per_sync: probe.appends as f64 / probe.syncs.max(1) as f64,
    })
}

async fn append_latency(plan: &Plan) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let dir = fresh_dir(plan, "latency")?;
    let config = LogConfig {
        durability: Durability::Always,
        ..LogConfig::default()
    };
    let (log, _) = SegmentLog::open(&dir, config).await?;
    // Just under 4 KiB, so that each append is one block like the raw probe's.
    let mut batch = bid_batch(4096 - 200);
    let mut histogram = new_histogram();
    for _ in 0..plan.latency_samples {
        let started = Instant::now();
        log.append(&mut batch).await?;
        record_us(&mut histogram, started.elapsed());
    }
    log.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(histogram)
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
    let (log, _) = SegmentLog::open(&dir, config).await?;
    let mut passes = Vec::new();
    for _ in 0..3 {
        passes.push(read_everything(&log).await?);
    }
    let sealed_segments = log.segment_count() - 1;
    log.close().await?;
    std::fs::remove_dir_all(&dir)?;
    let (bytes, rows, seconds) = passes[passes.len() - 1];
    let scan = memory_scan_bandwidth(&vec![1u8; 64 << 20], 4);
    println!(
        "replay: {:.2} GB/s, {:.1} M rows/s over {} MB in {} sealed segments + the active one (first pass {:.2} GB/s)",
        bytes as f64 / seconds / 1e9,
        rows as f64 / seconds / 1e6,
        bytes / 1_000_000,
        sealed_segments,
        passes[0].0 as f64 / passes[0].2 / 1e9
    );
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
