//! What checkpoints cost and how fast a run recovers, on the real `wire` binary.
//!
//! 1. Throughput of Nexmark q5 and of a keyed count (unbounded count per auction) without
//!    checkpoints and with `--checkpoint-interval 1s`, in one run, as a ratio; with each
//!    checkpointed run's checkpoint duration (p50, p99) and size.
//! 2. Incremental against whole-state checkpoints: the same growing unbounded count, once with
//!    `--checkpoint-deltas 0` (every checkpoint copies the whole state) and once with the
//!    default (deltas of the groups changed since the previous checkpoint, the whole state
//!    every 11th), with the size and duration of each kind.
//! 3. Recovery: an unbounded count over about one key per event grows large state; once a
//!    checkpoint of it completes the process is SIGKILLed and restarted, and the time from the
//!    restart to the first new output (restored state, rewound source, a sink's first rows) is
//!    measured.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_checkpoint [-- --events N --state-events N]`;
//! `-- --test` is a seconds-long smoke pass.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Args {
    smoke: bool,
    events: u64,
    state_events: u64,
    dir: PathBuf,
}

#[derive(Debug, Default)]
struct Figures {
    events_per_s: f64,
    checkpoint_line: String,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let wire = wire_tests::wire_bin();
    println!("# Checkpoints on wire");
    println!(
        "command: {} -- --events {} --state-events {}{}",
        wire_bench::cargo_command("e2e_checkpoint"),
        args.events,
        args.state_events,
        if args.smoke { " --test" } else { "" }
    );
    println!("machine: {}", wire_bench::machine_description(&args.dir));
    println!();
    overhead(&args, &wire)?;
    incremental(&args, &wire)?;
    recovery(&args, &wire)?;
    Ok(())
}

fn q5(events: u64) -> String {
    format!(
        "name: q5\nsources:\n  bids: {{type: nexmark, stream: bid, events: {events}, seed: 1}}\noperators:\n  - name: per_auction\n    from: bids\n    group_by: [auction]\n    window: {{type: hop, size: 10s, slide: 2s}}\n    aggregate: {{num: count(*)}}\n  - name: hottest\n    from: per_auction\n    top: {{n: 1, order_by: num desc, group_by: [window_end], with_ties: true}}\nsinks:\n  out: {{type: file, path: ./out, format: jsonl, from: hottest}}\n"
    )
}

fn keyed_count(events: u64, key: &str) -> String {
    format!(
        "name: keyed\nsources:\n  bids: {{type: nexmark, stream: bid, events: {events}, seed: 1}}\noperators:\n  - name: per_key\n    from: bids\n    group_by: {{k: {key}}}\n    aggregate: {{num: count(*), total: sum(price)}}\nsinks:\n  out: {{type: blackhole, from: per_key}}\n"
    )
}

fn overhead(args: &Args, wire: &Path) -> anyhow::Result<()> {
    println!(
        "## throughput with 1 s checkpoints vs none, 1 core, best of two alternated runs each"
    );
    println!("| pipeline | events | none events/s | checkpointed events/s | ratio | checkpoints |");
    println!("|---|---|---|---|---|---|");
    let pipelines = [
        ("q5", q5(args.events)),
        ("keyed count", keyed_count(args.events, "auction")),
    ];
    for (name, yaml) in pipelines {
        // Alternated, best of two each, so neither mode gets the cold first run.
        let mut none = Figures::default();
        let mut with = Figures::default();
        for _ in 0..2 {
            let plain = run(wire, &args.dir, &yaml, None)?;
            if plain.events_per_s > none.events_per_s {
                none = plain;
            }
            let checkpointed = run(wire, &args.dir, &yaml, Some("1s"))?;
            if checkpointed.events_per_s > with.events_per_s {
                with = checkpointed;
            }
        }
        println!(
            "| {name} | {} | {} | {} | {:.3} | {} |",
            wire_bench::human(args.events as f64),
            wire_bench::human(none.events_per_s),
            wire_bench::human(with.events_per_s),
            with.events_per_s / none.events_per_s.max(1.0),
            with.checkpoint_line
                .trim()
                .trim_start_matches("checkpoints: "),
        );
    }
    println!();
    Ok(())
}

/// One completed checkpoint, from the coordinator's log line.
struct Completed {
    ms: f64,
    bytes: u64,
    incremental: bool,
}

fn incremental(args: &Args, wire: &Path) -> anyhow::Result<()> {
    let run_s: u64 = if args.smoke { 4 } else { 30 };
    println!(
        "## incremental vs whole-state checkpoints: a keyed count growing to about {} keys over {run_s} s, 1 s checkpoints, 1 core",
        wire_bench::human(args.state_events as f64 * 0.6)
    );
    println!("| checkpoints | completed | whole-state: size (last), duration p50 / p99 | deltas: size p50 / max, duration p50 / p99 | events/s |");
    println!("|---|---|---|---|---|");
    let rate = args.state_events / run_s;
    let yaml = keyed_count(args.state_events, "bidder * 1000000 + price % 1000000")
        .replace(", seed: 1}", &format!(", seed: 1, rate: {rate}}}"));
    for (name, deltas) in [
        ("whole state every time", "0"),
        ("incremental (default)", "10"),
    ] {
        let dir = args.dir.join("incremental");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("keyed.yaml");
        std::fs::write(&file, &yaml)?;
        let output = Command::new(wire)
            .current_dir(&dir)
            .args(["run", "--no-progress", "--cores", "1"])
            .args(["--checkpoint-interval", "1s", "--checkpoint-deltas", deltas])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg(&file)
            .env("WIRE_LOG", "wire_control=info")
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!("wire run failed on\n{yaml}\n{stderr}");
        }
        let completed: Vec<Completed> = stderr
            .lines()
            .filter(|l| l.contains("checkpoint complete"))
            .filter_map(|l| {
                Some(Completed {
                    ms: field(l, "ms=").parse().ok()?,
                    bytes: field(l, "bytes=").parse().ok()?,
                    incremental: field(l, "incremental=") == "true",
                })
            })
            .collect();
        let events_per_s = stderr
            .lines()
            .find_map(|l| wire_bench::summary_events_per_s(l.trim()))
            .unwrap_or(0.0);
        let of = |incremental: bool| {
            let mut ms: Vec<f64> = Vec::new();
            let mut bytes: Vec<u64> = Vec::new();
            for c in completed.iter().filter(|c| c.incremental == incremental) {
                ms.push(c.ms);
                bytes.push(c.bytes);
            }
            (ms, bytes)
        };
        let (whole_ms, whole_bytes) = of(false);
        let (delta_ms, delta_bytes) = of(true);
        let whole = match whole_bytes.last() {
            Some(last) => format!(
                "{} × {}, {:.0} / {:.0} ms",
                whole_bytes.len(),
                mib(*last),
                percentile(&whole_ms, 0.5),
                percentile(&whole_ms, 0.99)
            ),
            None => "none".into(),
        };
        let delta = if delta_bytes.is_empty() {
            "none".to_string()
        } else {
            let sizes: Vec<f64> = delta_bytes.iter().map(|b| *b as f64).collect();
            format!(
                "{} × {} / {}, {:.0} / {:.0} ms",
                delta_bytes.len(),
                mib(percentile(&sizes, 0.5) as u64),
                mib(delta_bytes.iter().copied().max().unwrap_or(0)),
                percentile(&delta_ms, 0.5),
                percentile(&delta_ms, 0.99)
            )
        };
        println!(
            "| {name} | {} | {whole} | {delta} | {} |",
            completed.len(),
            wire_bench::human(events_per_s)
        );
    }
    println!();
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The `p` quantile of `values` (0 if empty).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn recovery(args: &Args, wire: &Path) -> anyhow::Result<()> {
    println!("## recovery: SIGKILL with large state, restart until the first new output");
    println!("| cores | keys (about) | checkpoint size (whole state + deltas read) | checkpoint duration (trigger to manifest) | restore read | restart to first new output |");
    println!("|---|---|---|---|---|---|");
    for cores in [1, 2] {
        recover_on(args, wire, cores)?;
    }
    println!();
    Ok(())
}

/// One row of the recovery table: the keyed count on `cores` cores, killed and restarted.
fn recover_on(args: &Args, wire: &Path, cores: usize) -> anyhow::Result<()> {
    let dir = args.dir.join("recovery");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Paced so the run lasts about `run_s` seconds and is killed after about 70% of it.
    let run_s: u64 = if args.smoke { 4 } else { 40 };
    let rate = args.state_events / run_s;
    let yaml = keyed_count(args.state_events, "bidder * 1000000 + price % 1000000")
        .replace(", seed: 1}", &format!(", seed: 1, rate: {rate}}}"));
    let file = dir.join("keyed.yaml");
    std::fs::write(&file, &yaml)?;
    let checkpoints = dir.join("data/keyed/checkpoints");
    let spawn = || -> anyhow::Result<std::process::Child> {
        Ok(Command::new(wire)
            .current_dir(&dir)
            .args(["run", "--no-progress", "--cores", &cores.to_string()])
            .args(["--checkpoint-interval", "2s"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg(&file)
            .env("WIRE_LOG", "wire_control=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?)
    };
    let mut first = spawn()?;
    // The coordinator logs `checkpoint complete id=… ms=… bytes=…` at info level.
    let log = first.stderr.take().context("stderr piped")?;
    let durations = std::thread::spawn(move || {
        BufReader::new(log)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("checkpoint complete"))
            .filter_map(|l| field(&l, "ms=").parse::<f64>().ok())
            .collect::<Vec<f64>>()
    });
    let started = Instant::now();
    let kill_after = Duration::from_secs(run_s * 7 / 10);
    let mut last_seen = None;
    let size = loop {
        if let Some(status) = first.try_wait()? {
            bail!("the state run ended ({status}) before a checkpoint could be killed");
        }
        let newest = newest_complete(&checkpoints);
        if newest != last_seen {
            last_seen = newest.clone();
            if let Some(path) = &newest {
                let bytes = chain_bytes(path);
                if bytes > 0 && started.elapsed() > kill_after {
                    // Let the coordinator log the checkpoint it just completed.
                    std::thread::sleep(Duration::from_millis(200));
                    first.kill()?;
                    let _ = first.wait();
                    break bytes;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        if started.elapsed() > Duration::from_secs(600) {
            first.kill()?;
            bail!("no checkpoint completed in 10 minutes");
        }
    };
    let durations = durations.join().unwrap_or_default();
    let restart = Instant::now();
    let mut second = spawn()?;
    let stderr = second.stderr.take().context("stderr piped")?;
    let mut restore_read = String::new();
    let mut flowing = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.starts_with("restoring checkpoint") {
            restore_read = line
                .split("read in ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or("")
                .to_string();
        }
        if line.starts_with("resumed from checkpoint") {
            flowing = Some(restart.elapsed());
            break;
        }
    }
    second.kill()?;
    let _ = second.wait();
    let flowing = flowing.context("the restarted run never reported its first output")?;
    let pct = |p: f64| percentile(&durations, p);
    println!(
        "| {cores} | {} | {:.1} MiB | p50 {:.0} ms, p99 {:.0} ms over {} | {restore_read} | {:.0} ms |",
        wire_bench::human(args.state_events as f64 * 0.6),
        size as f64 / (1 << 20) as f64,
        pct(0.5),
        pct(0.99),
        durations.len(),
        flowing.as_secs_f64() * 1e3
    );
    Ok(())
}

/// The value after `name` in a tracing line (`ms=12.5 bytes=…`).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(name)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("")
}

fn newest_complete(dir: &Path) -> Option<PathBuf> {
    let mut complete: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("MANIFEST").exists())
        .collect();
    complete.sort();
    complete.pop()
}

/// Bytes of the state files a checkpoint's restore reads (its own and, for an incremental
/// one, its chain's): the sum of the manifest's `"bytes"` entries.
fn chain_bytes(dir: &Path) -> u64 {
    let Ok(manifest) = std::fs::read_to_string(dir.join("MANIFEST")) else {
        return 0;
    };
    manifest
        .split("\"bytes\":")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

fn run(wire: &Path, dir: &Path, yaml: &str, interval: Option<&str>) -> anyhow::Result<Figures> {
    let work = dir.join("overhead");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let file = work.join("p.yaml");
    std::fs::write(&file, yaml)?;
    let mut command = Command::new(wire);
    command
        .current_dir(&work)
        .args(["run", "--no-progress", "--cores", "1", "--data-dir"])
        .arg(work.join("data"))
        .arg(&file);
    if let Some(interval) = interval {
        command.args(["--checkpoint-interval", interval]);
    }
    let output = command.output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("wire run failed on\n{yaml}\n{stderr}");
    }
    let mut figures = Figures::default();
    for line in stderr.lines().map(str::trim) {
        if let Some(rate) = wire_bench::summary_events_per_s(line) {
            figures.events_per_s = rate;
        } else if line.starts_with("checkpoints:") {
            figures.checkpoint_line = line.to_string();
        }
    }
    Ok(figures)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        smoke: false,
        events: 10_000_000,
        state_events: 12_000_000,
        dir: PathBuf::from("target/checkpoint-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--test" | "--smoke" => args.smoke = true,
            "--events" => args.events = value("--events")?.parse()?,
            "--state-events" => args.state_events = value("--state-events")?.parse()?,
            "--dir" => args.dir = value("--dir")?.into(),
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.smoke {
        args.events = args.events.min(200_000);
        args.state_events = args.state_events.min(3_000_000);
    }
    args.dir = std::path::absolute(&args.dir)?;
    Ok(args)
}
