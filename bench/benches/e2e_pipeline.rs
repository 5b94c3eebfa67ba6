//! End-to-end pipeline benchmark: Nexmark q0, q1 and q2 run by the real `wire` binary, fed by
//! the in-process generator and through the durable ingest path, at 1 and 2 cores.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_pipeline [-- --events N --ingest-rows N]`;
//! `-- --test` runs a seconds-long smoke pass. Builds `target/release/wire` first. Each figure
//! comes from the binary's own summary (events/s, time to first batch, peak RSS from VmHWM);
//! ingest throughput is rows acknowledged per second as the producers see it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use wire_core::nexmark::{Event, EventKind, Generator, GeneratorConfig};
use wire_core::{Batch, BatchBuilder, PartitionId, StreamId};
use wire_net::ingest::IngestClient;

/// The queries, as the operators after a `bids` source.
const QUERIES: [(&str, &str); 3] = [
    ("q0", ""),
    (
        "q1",
        "operators:\n  - name: euros\n    from: bids\n    map: {price: price * 0.908}\n",
    ),
    (
        "q2",
        "operators:\n  - name: selection\n    from: bids\n    filter: auction % 123 = 0\n  - name: result\n    from: selection\n    project: {auction: auction, price: price}\n",
    ),
];

struct Args {
    smoke: bool,
    events: u64,
    ingest_rows: u64,
    producers: usize,
    dir: PathBuf,
}

/// One run's figures, read from `wire run`'s summary.
#[derive(Debug, Default)]
struct Summary {
    events_per_s: f64,
    first_batch_ms: f64,
    peak_rss_mib: f64,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let wire = wire_tests::wire_bin();
    println!("# wire pipeline benchmark");
    println!(
        "command: {} -- --events {} --ingest-rows {}{}",
        wire_bench::cargo_command("e2e_pipeline"),
        args.events,
        args.ingest_rows,
        if args.smoke { " --test" } else { "" }
    );
    println!("machine: {}", wire_bench::machine_description(&args.dir));
    println!();
    println!("## generator source (in process), events/s");
    println!("| query | cores | events/s | per core | first batch | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for (name, operators) in QUERIES {
        for cores in [1, 2] {
            let yaml = generator_pipeline(name, operators, args.events);
            let summary = run_bounded(&wire, &args.dir, &yaml, cores)?;
            print_row(name, cores, &summary, summary.events_per_s);
            println!();
        }
    }
    println!();
    println!(
        "## ingest source (WAL, durability interval(10ms)), {} producer connections",
        args.producers
    );
    println!("| query | cores | rows acked/s | per core | first batch | peak RSS | into the WAL |");
    println!("|---|---|---|---|---|---|---|");
    let batches = std::sync::Arc::new(bid_batches(args.ingest_rows.min(1 << 20)));
    let bytes: usize = batches.iter().map(|b| b.as_bytes().len()).sum();
    let rows: usize = batches.iter().map(Batch::row_count).sum();
    let bytes_per_row = bytes as f64 / rows.max(1) as f64;
    for (name, operators) in QUERIES {
        for cores in [1, 2] {
            let yaml = ingest_pipeline(name, operators);
            let (rate, summary) = run_ingest(&wire, &args, &yaml, cores, &batches)?;
            print_row(name, cores, &summary, rate);
            println!("  {:.0} MB/s |", rate * bytes_per_row / 1e6);
        }
    }
    println!();
    println!(
        "rows are Nexmark bids of {bytes_per_row:.0} bytes each in the record format; compare the WAL \
         figure with the raw disk bandwidth printed by `cargo bench -p wire-bench --bench e2e_wal`"
    );
    Ok(())
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        smoke: false,
        events: 20_000_000,
        ingest_rows: 10_000_000,
        producers: 2,
        dir: PathBuf::from("target/pipeline-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--test" | "--smoke" => args.smoke = true,
            "--events" => args.events = value("--events")?.parse()?,
            "--ingest-rows" => args.ingest_rows = value("--ingest-rows")?.parse()?,
            "--producers" => args.producers = value("--producers")?.parse()?,
            "--dir" => args.dir = value("--dir")?.into(),
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.smoke {
        args.events = args.events.min(200_000);
        args.ingest_rows = args.ingest_rows.min(100_000);
    }
    Ok(args)
}

fn generator_pipeline(name: &str, operators: &str, events: u64) -> String {
    let last = last_node(operators);
    format!(
        "name: {name}\nsources:\n  bids: {{type: nexmark, stream: bid, events: {events}, seed: 1}}\n{operators}sinks:\n  out: {{type: blackhole, from: {last}}}\n"
    )
}

fn ingest_pipeline(name: &str, operators: &str) -> String {
    let last = last_node(operators);
    let schema = "{auction: i64, bidder: i64, price: i64, channel: string, url: string, date_time: timestamp, extra: string}";
    format!(
        "name: {name}_ingest\nsources:\n  bids:\n    type: ingest\n    listen: 127.0.0.1:0\n    schema: {schema}\n    durability: interval(10ms)\n{operators}sinks:\n  out: {{type: blackhole, from: {last}}}\n"
    )
}

fn last_node(operators: &str) -> &str {
    operators
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .next_back()
        .unwrap_or("bids")
}

fn wire_run(wire: &Path, data: &Path, file: &Path, cores: usize) -> Command {
    let mut command = Command::new(wire);
    command
        .args([
            "run",
            "--no-progress",
            "--cores",
            &cores.to_string(),
            "--data-dir",
        ])
        .arg(data)
        .arg(file);
    command
}

fn run_bounded(wire: &Path, dir: &Path, yaml: &str, cores: usize) -> anyhow::Result<Summary> {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml)?;
    let output = wire_run(wire, &dir.join("data"), &file, cores).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("wire run failed: {stderr}");
    }
    Ok(parse_summary(&stderr))
}

fn run_ingest(
    wire: &Path,
    args: &Args,
    yaml: &str,
    cores: usize,
    batches: &std::sync::Arc<Vec<Batch>>,
) -> anyhow::Result<(f64, Summary)> {
    let data = args.dir.join("ingest-data");
    let _ = std::fs::remove_dir_all(&data);
    let file = args.dir.join("ingest.yaml");
    std::fs::write(&file, yaml)?;
    let mut child = wire_run(wire, &data, &file, cores)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
    let addr = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line)? == 0 {
            bail!("wire exited before listening");
        }
        if let Some((_, addr)) = line.trim().split_once(" listening on ") {
            break addr.to_string();
        }
    };
    let schema = wire_core::nexmark::bid_schema();
    let rows_each = args.ingest_rows / args.producers as u64;
    let started = Instant::now();
    let producers: Vec<_> = (0..args.producers)
        .map(|p| {
            let (addr, schema, batches) =
                (addr.clone(), schema.clone(), std::sync::Arc::clone(batches));
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut client = IngestClient::connect(&addr, "bench", "bids", &schema)?;
                let mut sent = 0u64;
                let mut i = p;
                while sent < rows_each {
                    let batch = &batches[i % batches.len()];
                    client.send(batch)?;
                    sent += batch.row_count() as u64;
                    i += 1;
                }
                let acked: u64 = client.close()?.iter().map(|a| u64::from(a.rows)).sum();
                Ok(acked)
            })
        })
        .collect();
    let mut acked = 0;
    for producer in producers {
        acked += producer
            .join()
            .map_err(|_| anyhow::anyhow!("producer panicked"))??;
    }
    let rate = acked as f64 / started.elapsed().as_secs_f64();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest)?;
    child.wait()?;
    let _ = std::fs::remove_dir_all(&data);
    Ok((rate, parse_summary(&rest)))
}

/// Pre-generated batches of 1024 Nexmark bids, encoded once.
fn bid_batches(rows: u64) -> Vec<Batch> {
    let generator = Generator::new(GeneratorConfig::default()).expect("default config");
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let mut n = 0u64;
    let mut made = 0u64;
    while made < rows.max(1024) {
        if generator.kind(n) == EventKind::Bid {
            if let Event::Bid(bid) = generator.event(n) {
                bid.push_to(&mut builder).expect("bid fits");
                made += 1;
            }
            if builder.row_count() == 1024 {
                out.push(builder.finish());
            }
        }
        n += 1;
    }
    out
}

fn parse_summary(stderr: &str) -> Summary {
    let mut summary = Summary::default();
    for line in stderr.lines() {
        let line = line.trim();
        if let Some(rest) = line
            .split_once(": ")
            .map(|(_, r)| r)
            .filter(|_| line.contains(" events in "))
        {
            summary.events_per_s =
                wire_bench::summary_number(rest.split(" events/s").next().unwrap_or(""));
        } else if let Some(rest) = line.strip_prefix("first batch after ") {
            summary.first_batch_ms = wire_bench::summary_number(rest.trim_end_matches(" ms"));
        } else if let Some(rest) = line.strip_prefix("first batch received ") {
            // Ingest runs: seconds from the start to the first producer's batch.
            let secs = rest.split(" s ").next().unwrap_or("");
            summary.first_batch_ms = wire_bench::summary_number(secs) * 1e3;
        } else if let Some(rest) = line.strip_prefix("peak memory (RSS) ") {
            summary.peak_rss_mib = wire_bench::summary_number(rest.trim_end_matches(" MiB"));
        }
    }
    summary
}

fn print_row(name: &str, cores: usize, summary: &Summary, rate: f64) {
    print!(
        "| {name} | {cores} | {} | {} | {:.1} ms | {:.0} MiB |",
        wire_bench::human(rate),
        wire_bench::human(rate / cores as f64),
        summary.first_batch_ms,
        summary.peak_rss_mib
    );
}
