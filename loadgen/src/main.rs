//! `wire-loadgen`: drives a Wire node's ingest port with Nexmark events or random rows of the
//! source's schema, open loop at a target rate or as fast as credits allow, and reports the
//! rate achieved and the acknowledgement latency.
//!
//! Each batch has a scheduled send time (at `--rate`); its latency runs from that time, not from
//! when it was actually sent, so a stalled node shows up as latency instead of hiding behind a
//! slower send rate (no coordinated omission). An ack's time is when the producer observes it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use mimalloc::MiMalloc;
use wire_core::spec::{PipelineSpec, SourceKind};
use wire_core::{BatchBuilder, PartitionId, Schema, StreamId};
use wire_loadgen::RowMaker;
use wire_net::ingest::{Ack, IngestClient};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Feed a Wire ingest source.
#[derive(Debug, Parser)]
#[command(name = "wire-loadgen", version)]
struct Args {
    /// The pipeline file whose ingest source to feed; the schema and address come from it.
    pipeline: PathBuf,
    /// The ingest source to feed (default: the pipeline's first ingest source).
    #[arg(long)]
    source: Option<String>,
    /// Address to connect to (default: the source's `listen`, with 0.0.0.0 read as 127.0.0.1).
    #[arg(long)]
    addr: Option<String>,
    /// Rows to send in total.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Target rows per second over all connections; 0 sends as fast as credits allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Producer connections (each on its own thread).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 1024)]
    batch_rows: usize,
    /// Seed of the generated rows (Nexmark: the generator's seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// One connection's outcome.
struct Report {
    rows_sent: u64,
    rows_acked: u64,
    latency_us: Histogram<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.batch_rows == 0 {
        bail!("--connections and --batch-rows must be at least 1");
    }
    let (source, schema, addr) = target(&args)?;
    let started = Instant::now();
    let producers: Vec<_> = (0..args.connections)
        .map(|p| {
            let (source, schema) = (source.clone(), schema.clone());
            let plan = Producer {
                addr,
                source,
                schema,
                index: p as u64,
                count: args.connections as u64,
                rows: share(args.events, p as u64, args.connections as u64),
                rate: args.rate as f64 / args.connections as f64,
                batch_rows: args.batch_rows,
                seed: args.seed,
            };
            std::thread::spawn(move || plan.run())
        })
        .collect();
    let mut total = Report {
        rows_sent: 0,
        rows_acked: 0,
        latency_us: histogram(),
    };
    for producer in producers {
        let report = producer
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        total.rows_sent += report.rows_sent;
        total.rows_acked += report.rows_acked;
        total.latency_us.add(&report.latency_us)?;
    }
    print_summary(&args, &source, addr, &total, started.elapsed());
    Ok(())
}

/// The source name, schema and address to feed.
fn target(args: &Args) -> anyhow::Result<(String, Schema, SocketAddr)> {
    let spec = PipelineSpec::from_file(&args.pipeline).map_err(|err| anyhow::anyhow!("{err}"))?;
    let found = spec.sources.iter().find_map(|s| match &s.kind {
        SourceKind::Ingest(ingest)
            if args
                .source
                .as_deref()
                .is_none_or(|name| name == s.name.name) =>
        {
            Some((s.name.name.clone(), ingest))
        }
        _ => None,
    });
    let Some((name, ingest)) = found else {
        bail!(
            "{}: no ingest source{}",
            args.pipeline.display(),
            args.source
                .as_ref()
                .map(|s| format!(" named `{s}`"))
                .unwrap_or_default()
        );
    };
    let text = args.addr.clone().unwrap_or_else(|| ingest.listen.clone());
    let mut addr: SocketAddr = text
        .parse()
        .with_context(|| format!("`{text}` is not an IP address and port"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    if addr.port() == 0 {
        bail!("source `{name}` listens on port 0: pass the port `wire run` printed with --addr");
    }
    Ok((name, ingest.schema.clone(), addr))
}

/// Producer `index`'s share of `total` rows.
fn share(total: u64, index: u64, count: u64) -> u64 {
    total / count + u64::from(index < total % count)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

struct Producer {
    addr: SocketAddr,
    source: String,
    schema: Schema,
    index: u64,
    count: u64,
    rows: u64,
    rate: f64,
    batch_rows: usize,
    seed: u64,
}

impl Producer {
    fn run(self) -> anyhow::Result<Report> {
        let mut client =
            IngestClient::connect(self.addr, "wire-loadgen", &self.source, &self.schema)
                .with_context(|| format!("connecting to {}", self.addr))?;
        let mut maker = RowMaker::for_schema(&self.schema, self.seed, self.index, self.count);
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(client.partition()));
        let mut report = Report {
            rows_sent: 0,
            rows_acked: 0,
            latency_us: histogram(),
        };
        let mut scheduled: VecDeque<(u64, Instant)> = VecDeque::new();
        let start = Instant::now();
        while report.rows_sent < self.rows {
            let rows = (self.rows - report.rows_sent).min(self.batch_rows as u64);
            let due = if self.rate > 0.0 {
                start + Duration::from_secs_f64(report.rows_sent as f64 / self.rate)
            } else {
                Instant::now()
            };
            maker.fill(&mut builder, rows as usize)?;
            let batch = builder.finish();
            while Instant::now() < due {
                record(&mut report, &mut scheduled, client.poll_acks()?);
                std::thread::sleep((due - Instant::now()).min(Duration::from_micros(500)));
            }
            let seq = client.send(&batch)?;
            scheduled.push_back((seq, due));
            report.rows_sent += rows;
            record(&mut report, &mut scheduled, client.poll_acks()?);
        }
        let rest = client.close()?;
        record(&mut report, &mut scheduled, rest);
        Ok(report)
    }
}

/// Records the latency of `acks`, observed now, against their batches' scheduled times.
fn record(report: &mut Report, scheduled: &mut VecDeque<(u64, Instant)>, acks: Vec<Ack>) {
    let now = Instant::now();
    for ack in acks {
        while let Some((seq, due)) = scheduled.pop_front() {
            if seq == ack.seq {
                let us = now.saturating_duration_since(due).as_micros().max(1) as u64;
                report.latency_us.saturating_record(us);
                report.rows_acked += u64::from(ack.rows);
                break;
            }
        }
    }
}

fn print_summary(args: &Args, source: &str, addr: SocketAddr, total: &Report, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let achieved = total.rows_acked as f64 / secs;
    let h = &total.latency_us;
    let percentiles = [50.0, 90.0, 99.0, 99.9];
    if args.json {
        let latency: serde_json::Map<String, serde_json::Value> = percentiles
            .iter()
            .map(|p| (format!("p{p}"), h.value_at_quantile(p / 100.0).into()))
            .chain([("max".to_string(), h.max().into())])
            .collect();
        let summary = serde_json::json!({
            "source": source, "addr": addr.to_string(), "connections": args.connections,
            "rows_sent": total.rows_sent, "rows_acked": total.rows_acked, "seconds": secs,
            "offered_rows_per_s": args.rate, "achieved_rows_per_s": achieved,
            "ack_latency_us": latency,
        });
        println!("{summary}");
        return;
    }
    println!(
        "wire-loadgen: {} rows to source `{source}` at {addr} over {} connection(s) in {secs:.2} s",
        total.rows_sent, args.connections
    );
    let offered = if args.rate == 0 {
        "as fast as credits allow".to_string()
    } else {
        format!("{} rows/s", args.rate)
    };
    println!(
        "  offered {offered}; achieved {achieved:.0} rows/s; acknowledged {} rows",
        total.rows_acked
    );
    let line: Vec<String> = percentiles
        .iter()
        .map(|p| format!("p{p} {}", micros(h.value_at_quantile(p / 100.0))))
        .chain([format!("max {}", micros(h.max()))])
        .collect();
    println!("  ack latency from scheduled send: {}", line.join(", "));
}

fn micros(us: u64) -> String {
    match us {
        us if us >= 10_000 => format!("{:.1} ms", us as f64 / 1000.0),
        us => format!("{us} µs"),
    }
}
