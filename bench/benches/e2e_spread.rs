//! Pipelines spread over a cluster of real `wire start` processes on 127.0.0.1 (issue 16).
//!
//! 1. Throughput: Nexmark q5 (as `examples/nexmark/q5.yaml`, into a blackhole) created on a
//!    3-node cluster, where it takes one slot per node, and on a 1-node cluster (one slot);
//!    events/s from the create call until `pipeline get` says `finished` (polled every 20 ms).
//!    Every node runs one unpinned data core; on a 2-core machine the three nodes share two
//!    CPUs, so the ratio is what the exchange costs, not a speed-up.
//! 2. Recovery: a keyed count over nearly unique keys, paced, spread over 3 nodes with 2 s
//!    checkpoints in parts into a shared directory store. After about 70% of the run, once a
//!    checkpoint completes, a node that is not the leader is SIGKILLed. Measured: checkpoint
//!    duration across nodes (per checkpoint id, the slowest node's part, from the nodes'
//!    `checkpoint complete` lines) and size (its parts summed), the nodes' resident memory
//!    before the kill, and the time from the kill to the survivors' first output after the
//!    restore (their `first output after the restore` line). The leader counts a node dead
//!    after 6 s without a message, so 6 s of that is detection.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_spread [-- --events N --small-keys N
//! --large-keys N]`; `-- --test` is a smoke pass of a few seconds per phase.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use wire_tests::cluster::{
    create, start_cluster_with, wait_for_leader, wait_state, wait_until_heard, wirectl_json,
    WireNode,
};

/// How long a new leader may take to be elected and agreed on.
const ELECTION: Duration = Duration::from_secs(15);
/// How often pipeline state and node logs are polled.
const POLL: Duration = Duration::from_millis(20);
/// Distinct keys per bid of the keyed count (`bidder * 1000000 + price % 1000000`), measured.
const KEYS_PER_EVENT: f64 = 0.6;

fn main() -> anyhow::Result<()> {
    let numbers = [
        ("events", 10_000_000),
        ("small-keys", 600_000),
        ("large-keys", 6_000_000),
    ];
    let args = wire_bench::BenchArgs::parse("target/spread-bench", &numbers)?;
    std::fs::create_dir_all(&args.dir)?;
    println!(
        "# Spread pipelines on 3 `wire start` nodes on 127.0.0.1, 1 unpinned core each ({})",
        wire_bench::machine_description(&args.dir)
    );
    println!(
        "command: {} -- --events {} --small-keys {} --large-keys {}{}",
        wire_bench::cargo_command("e2e_spread"),
        args.number("events", 200_000),
        args.number("small-keys", 30_000),
        args.number("large-keys", 60_000),
        if args.smoke { " --test" } else { "" }
    );
    throughput(&args.dir, args.number("events", 200_000))?;
    println!(
        "## Recovery: SIGKILL of a node that is not the leader, until the survivors' first output"
    );
    println!("| keys (about) | nodes' RSS before the kill | checkpoint size (last before the kill) | checkpoint duration across nodes p50 / p99 | kill to first output | of which the restored run: deploy to first output |");
    println!("|---|---|---|---|---|---|");
    let run_s = if args.smoke { 6 } else { 40 };
    for keys in [
        args.number("small-keys", 30_000),
        args.number("large-keys", 60_000),
    ] {
        recovery(&args.dir, keys, run_s)?;
    }
    Ok(())
}

/// The keyed count over `events` bids at `rate` a second: about [`KEYS_PER_EVENT`] keys each.
fn keyed_count(events: u64, rate: u64) -> String {
    format!(
        "name: keyed
sources:
  bids: {{type: nexmark, stream: bid, events: {events}, rate: {rate}, seed: 1}}
operators:
  - name: per_key
    from: bids
    group_by: {{k: bidder * 1000000 + price % 1000000}}
    aggregate: {{num: count(*), total: sum(price)}}
sinks:
  out: {{type: blackhole, from: per_key}}
"
    )
}

/// A cluster of `count` nodes under `dir` sharing the checkpoint store `dir/store`, once its
/// leader has heard from every node (it places pipelines on the nodes it heard from).
fn cluster(dir: &Path, count: u64) -> (Vec<WireNode>, u64) {
    let store = format!("file://{}", dir.join("store").display());
    let extra = ["--checkpoint-store".to_string(), store];
    let nodes = start_cluster_with(dir, count, &extra);
    let leader = wait_for_leader(&nodes, ELECTION);
    wait_until_heard(&nodes, leader);
    (nodes, leader)
}

fn fresh(dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn throughput(root: &Path, events: u64) -> anyhow::Result<()> {
    println!(
        "## q5 over {} events: 3 nodes against 1",
        wire_bench::human(events as f64)
    );
    let mut rates = Vec::new();
    for count in [1, 3] {
        let dir = root.join(format!("q5-{count}"));
        fresh(&dir)?;
        let (nodes, _) = cluster(&dir, count);
        let file = dir.join("q5.yaml");
        std::fs::write(
            &file,
            wire_tests::nexmark::q5_yaml(&format!("events: {events}, seed: 1"), "type: blackhole"),
        )?;
        let endpoint = nodes[0].addr.clone();
        let started = Instant::now();
        create(&endpoint, &file, &[]);
        let slots = loop {
            let got = wirectl_json(&endpoint, &["pipeline", "get", "q5"]);
            match got["state"].as_str() {
                Some("finished") => break got["assignment"].as_array().map_or(0, Vec::len),
                Some("failed") => bail!("q5 failed on {count} node(s): {got}"),
                _ if started.elapsed() > Duration::from_secs(600) => {
                    bail!("q5 did not finish in 10 minutes: {got}")
                }
                _ => std::thread::sleep(POLL),
            }
        };
        let rate = events as f64 / started.elapsed().as_secs_f64();
        println!(
            "{count} node(s), {slots} slot(s): {} events/s (create to finished)",
            wire_bench::human(rate)
        );
        rates.push(rate);
    }
    println!(
        "3 nodes / 1 node: {:.2} (2 CPUs under 3 nodes: the exchange's cost, not a speed-up)",
        rates[1] / rates[0].max(1.0)
    );
    println!();
    Ok(())
}

/// One row of the recovery table: the keyed count with about `keys` keys, paced over `run_s`.
fn recovery(root: &Path, keys: u64, run_s: u64) -> anyhow::Result<()> {
    let dir = root.join(format!("recovery-{keys}"));
    fresh(&dir)?;
    let (mut nodes, leader) = cluster(&dir, 3);
    let events = (keys as f64 / KEYS_PER_EVENT) as u64;
    let file = dir.join("keyed.yaml");
    std::fs::write(&file, keyed_count(events, events / run_s))?;
    let endpoint = nodes[0].addr.clone();
    create(&endpoint, &file, &["--checkpoint-interval", "2s"]);
    wait_state(&endpoint, "keyed", "running");
    let started = Instant::now();
    let kill_after = Duration::from_secs(run_s * 7 / 10);
    let mut seen = 0;
    loop {
        let listed = wirectl_json(&endpoint, &["checkpoint", "list", "keyed"]);
        let newest = listed["checkpoints"]
            .as_array()
            .and_then(|c| c.last())
            .and_then(|c| c["id"].as_u64())
            .unwrap_or(0);
        if newest > seen && started.elapsed() >= kill_after {
            break;
        }
        seen = newest;
        if started.elapsed() > kill_after + Duration::from_secs(120) {
            bail!("no checkpoint completed after {kill_after:?}: {listed}");
        }
        std::thread::sleep(POLL);
    }
    let rss: u64 = nodes.iter().map(|n| rss_bytes(n.pid())).sum();
    let checkpoints = checkpoint_figures(&nodes);
    let victim = nodes
        .iter()
        .position(|n| n.id != leader)
        .context("a node that is not the leader")?;
    let before: Vec<usize> = nodes.iter().map(|n| n.log_text().len()).collect();
    let killed = Instant::now();
    nodes[victim].kill();
    let restored_ms = loop {
        let found = nodes.iter().zip(&before).find_map(|(node, from)| {
            let log = node.log_text();
            let (_, tail) = log
                .get(*from..)?
                .lines()
                .find_map(|l| l.split_once("first output after the restore"))?;
            Some(field(tail, " ms=").parse::<f64>().unwrap_or(f64::NAN))
        });
        if let Some(ms) = found {
            break ms;
        }
        if killed.elapsed() > Duration::from_secs(180) {
            bail!(
                "no survivor reported its first output within 3 minutes of the kill; logs under {}",
                dir.display()
            );
        }
        std::thread::sleep(POLL);
    };
    let to_output = killed.elapsed();
    println!(
        "| {} | {:.0} MiB | {:.1} MiB | {} | {:.2} s | {:.2} s |",
        wire_bench::human(keys as f64),
        rss as f64 / (1 << 20) as f64,
        checkpoints.last_bytes as f64 / (1 << 20) as f64,
        checkpoints.durations,
        to_output.as_secs_f64(),
        restored_ms / 1e3
    );
    Ok(())
}

/// What the nodes' logs say of the checkpoints so far.
struct CheckpointFigures {
    /// `p50 … ms / p99 … ms over N`, per checkpoint the slowest node's part.
    durations: String,
    /// The newest checkpoint every node completed its part of: its parts' bytes summed.
    last_bytes: u64,
}

/// Reads the `checkpoint complete id=… ms=… bytes=…` lines of every node's log.
fn checkpoint_figures(nodes: &[WireNode]) -> CheckpointFigures {
    let mut parts: std::collections::BTreeMap<u64, Vec<(f64, u64)>> = Default::default();
    for node in nodes {
        for line in node.log_text().lines() {
            // The fields after the message (the span's, before it, may have an `id` too).
            let Some((_, tail)) = line.split_once("checkpoint complete") else {
                continue;
            };
            let (Ok(id), Ok(ms), Ok(bytes)) = (
                field(tail, " id=").parse::<u64>(),
                field(tail, " ms=").parse::<f64>(),
                field(tail, " bytes=").parse::<u64>(),
            ) else {
                continue;
            };
            parts.entry(id).or_default().push((ms, bytes));
        }
    }
    let whole: Vec<(f64, u64)> = parts
        .values()
        .filter(|p| p.len() == nodes.len())
        .map(|p| {
            let slowest = p.iter().map(|(ms, _)| *ms).fold(0.0, f64::max);
            (slowest, p.iter().map(|(_, b)| b).sum())
        })
        .collect();
    let mut durations: Vec<f64> = whole.iter().map(|(ms, _)| *ms).collect();
    durations.sort_by(f64::total_cmp);
    let at = |q: f64| {
        durations
            .get(((durations.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    CheckpointFigures {
        durations: format!(
            "{:.0} ms / {:.0} ms over {}",
            at(0.5),
            at(0.99),
            durations.len()
        ),
        last_bytes: whole.last().map_or(0, |(_, bytes)| *bytes),
    }
}

/// The value after `name` in a tracing line (`ms=12.5 bytes=…`).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(name)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("")
}

/// The resident memory of process `pid`, 0 when it cannot be read.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
