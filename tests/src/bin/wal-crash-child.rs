//! Appends crash batches to a WAL from several concurrent tasks until killed, printing
//! `ack <base_offset> <task> <seq>` once each append has resolved.
//!
//! Usage: `wal-crash-child <dir> <durability> <tasks>`; the parent test SIGKILLs it.
#![forbid(unsafe_code)]

use std::io::Write;

use anyhow::{bail, Context};
use mimalloc::MiMalloc;
use wire_storage::wal::{Durability, LogConfig, SegmentLog};
use wire_tests::{crash_batch, crash_rows};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, durability, tasks] = args.as_slice() else {
        bail!("usage: wal-crash-child <dir> <durability> <tasks>");
    };
    let durability: Durability = durability.parse().map_err(anyhow::Error::msg)?;
    let tasks: u32 = tasks.parse().context("tasks must be a number")?;
    let dir = dir.clone();
    let executor = wire_storage::io::local_executor().context("starting glommio")?;
    executor.run(async move { append_forever(&dir, durability, tasks).await })
}

async fn append_forever(dir: &str, durability: Durability, tasks: u32) -> anyhow::Result<()> {
    // Small segments so that kills also land in rolls, seals and directory syncs.
    let config = LogConfig {
        durability,
        segment_bytes: 256 << 10,
        write_buffer_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let (log, report) = SegmentLog::open(dir, config)
        .await
        .context("opening the log")?;
    println!(
        "open {} {}",
        report.next_offset,
        report.truncated.map_or(0, |t| t.bytes)
    );
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let log = log.clone();
            glommio::spawn_local(async move {
                for seq in 0u64.. {
                    let mut batch = crash_batch(task, seq, crash_rows(seq));
                    let base = log.append(&mut batch).await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {base} {task} {seq}")?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    Ok(())
}
