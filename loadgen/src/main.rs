//! `wire-loadgen`: drives a Wire node's ingest port with Nexmark events or random rows of the
//! source's schema, open loop at a target rate or as fast as credits allow, and reports the
//! rate achieved, the acknowledgement latency and (with `--e2e-from`) the end-to-end latency
//! to a sink. With `--output` it writes the generated stream to a file instead of sending it.
//!
//! Each batch has a scheduled send time (at `--rate`); its latency runs from that time, not from
//! when it was actually sent, so a stalled node shows up as latency instead of hiding behind a
//! slower send rate (no coordinated omission). An ack's time is when the producer observes it.
//! With `--timestamp-field`, every row of a batch carries the batch's scheduled send time in
//! unix nanoseconds; `--e2e-from` reads the sink's JSON lines back and times each row by it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use mimalloc::MiMalloc;
use wire_core::frontend::spec::{PipelineSpec, SourceKind};
use wire_core::{BatchBuilder, PartitionId, Schema, StreamId};
use wire_loadgen::{
    events_for, parse_duration, random_options, stamp_field, write_stream, E2eRecorder,
    OutputFormat, RandomOptions, RowMaker, ShapeArgs, StreamPlan,
};
use wire_net::ingest::{Ack, ClientOptions, ClientTls, IngestClient};
use wire_net::ClientError;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Feed a Wire ingest source, or write the same rows to a file.
#[derive(Debug, Parser)]
#[command(name = "wire-loadgen", version)]
struct Args {
    /// The pipeline file whose ingest source to feed; the schema and address come from it.
    pipeline: PathBuf,
    /// The ingest source to feed (default: the pipeline's first ingest source).
    #[arg(long)]
    source: Option<String>,
    /// Address to connect to (default: the source's `listen`, with 0.0.0.0 read as 127.0.0.1).
    /// Several, comma-separated (a cluster's nodes serving the source, as `wirectl pipeline
    /// get` lists them): connection `i` sticks to address `i mod n`, so that an idempotent
    /// producer re-sends to the node that knows its sequence numbers.
    #[arg(long)]
    addr: Option<String>,
    /// Rows to send in total (default 1000000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    events: Option<u64>,
    /// Run for this long (`30s`, `500ms`, `2m`): with --rate, rate × duration rows; without,
    /// as many rows as credits allow until the time is up.
    #[arg(long)]
    duration: Option<String>,
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
    /// Write the generated rows to this file instead of sending them (no node is needed).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Format of --output: jsonl or csv (default: from the file's extension).
    #[arg(long, requires = "output")]
    format: Option<String>,
    /// An i64 field of the schema that gets each row's scheduled send time (unix ns).
    #[arg(long)]
    timestamp_field: Option<String>,
    /// A sink's JSON-lines output (a FIFO or a growing file) to read back for end-to-end latency.
    #[arg(long, requires = "timestamp_field", conflicts_with = "output")]
    e2e_from: Option<PathBuf>,
    /// Rows the sink is expected to write (default: every acknowledged row).
    #[arg(long, requires = "e2e_from")]
    e2e_rows: Option<u64>,
    /// After the last ack, stop reading the sink once no line has come for this long.
    #[arg(long, default_value = "2s")]
    e2e_wait: String,
    /// Retry a refused connection for this long (e.g. while `wire run` starts).
    #[arg(long, default_value = "0s")]
    connect_wait: String,
    /// Produce without idempotence (ingest protocol version 1): a batch re-sent after a lost
    /// connection may then be appended twice. For comparison; idempotence is on by default.
    #[arg(long)]
    no_idempotence: bool,
    /// On a lost connection, reconnect for at most this long and re-send the unacked batches
    /// (with idempotence, the node drops those it already has); `0s` fails instead.
    #[arg(long, default_value = "30s")]
    reconnect: String,
    /// A producer (or admin) bearer token for a node with security on (ingest protocol
    /// version 3); also read from `WIRE_TOKEN`.
    #[arg(long, env = "WIRE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Speak TLS, trusting this CA (PEM) for the node's certificate, which must name the host
    /// of the address (a node started with --tls-cert); also read from `WIRE_CA`.
    #[arg(long, env = "WIRE_CA")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) to present over TLS; also read from `WIRE_CERT`.
    #[arg(long, env = "WIRE_CERT", requires = "ca", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM); also read from `WIRE_KEY`.
    #[arg(long, env = "WIRE_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Draw key fields from this many distinct values (`key0`, `key1`, … for strings; 0, 1, …
    /// for i64), so keyed state and sessions see repeated keys.
    #[arg(long)]
    keys: Option<u64>,
    /// A key field for --keys (repeatable; default: every string field).
    #[arg(long, requires = "keys")]
    key_field: Vec<String>,
    /// `now`: the event-time field (the source's `event_time`, else every timestamp field)
    /// follows the wall clock, each batch's scheduled send time; `spread` (the default) spreads
    /// timestamps over one day from 2023-11-14.
    #[arg(long)]
    event_time: Option<String>,
    /// With `--event-time now`: each row is up to this much older than the clock (`2s`), in
    /// no order; a watermark with that much out-of-orderness sees no late rows.
    #[arg(long)]
    disorder: Option<String>,
}

/// How long each producer sends.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// A fixed number of rows.
    Rows(u64),
    /// As fast as possible until the time is up.
    Until(Duration),
}

/// Maps instants to unix nanoseconds from one reading of the wall clock, so stamps and the
/// times lines are read back are on one monotonic scale.
#[derive(Debug, Clone, Copy)]
struct Clock {
    instant: Instant,
    unix_ns: i64,
}

impl Clock {
    fn new() -> Clock {
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Clock {
            instant: Instant::now(),
            unix_ns,
        }
    }

    fn unix_ns(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.unix_ns + after.as_nanos() as i64,
            None => self.unix_ns - self.instant.duration_since(at).as_nanos() as i64,
        }
    }

    fn now_ns(&self) -> i64 {
        self.unix_ns(Instant::now())
    }
}

/// One connection's outcome.
struct Report {
    rows_sent: u64,
    rows_acked: u64,
    bytes_sent: u64,
    latency_us: Histogram<u64>,
    /// From each batch's scheduled time to when `send` returned.
    send_lag_us: Histogram<u64>,
    /// Batches that found no credit and waited for the node to grant one.
    credit_waits: u64,
    started: Option<Instant>,
    ended: Option<Instant>,
}

impl Report {
    fn new() -> Report {
        Report {
            rows_sent: 0,
            rows_acked: 0,
            bytes_sent: 0,
            latency_us: histogram(),
            send_lag_us: histogram(),
            credit_waits: 0,
            started: None,
            ended: None,
        }
    }
}

/// What the end-to-end reader found.
struct E2eState {
    recorder: E2eRecorder,
    eof: bool,
    error: Option<String>,
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("wire-loadgen: error: {err:#}");
            std::process::exit(1);
        }
    }
}

/// How much to send: `--events`, else rate × `--duration` (or until the time is up without
/// a rate), else a million rows.
fn bound_of(events: Option<u64>, rate: u64, duration: Option<Duration>) -> Bound {
    match (events, duration) {
        (Some(events), _) => Bound::Rows(events),
        (None, Some(duration)) => match events_for(rate, duration) {
            Some(events) => Bound::Rows(events),
            None => Bound::Until(duration),
        },
        (None, None) => Bound::Rows(1_000_000),
    }
}

/// Runs; `Ok(false)` when the summary was printed but the run had errors.
fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    if args.connections == 0 || args.batch_rows == 0 {
        bail!("--connections and --batch-rows must be at least 1");
    }
    let duration = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|err| anyhow::anyhow!("--duration: {err}"))?;
    let e2e_wait =
        parse_duration(&args.e2e_wait).map_err(|err| anyhow::anyhow!("--e2e-wait: {err}"))?;
    let (connect_wait, options) = connection_options(&args)?;
    let bound = bound_of(args.events, args.rate, duration);
    let (source, schema, listen, event_time) = target(&args)?;
    let shape = ShapeArgs {
        keys: args.keys,
        key_fields: args.key_field.clone(),
        event_time: args.event_time.clone(),
        disorder: args.disorder.clone(),
    };
    let random = random_options(&schema, event_time.as_deref(), &shape)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let stamp = match &args.timestamp_field {
        Some(name) => {
            let index = stamp_field(&schema, name)
                .map_err(|err| anyhow::anyhow!("{}: {err}", args.pipeline.display()))?;
            if RowMaker::for_schema(&schema, args.seed, 0, 1).is_nexmark() {
                bail!(
                    "{}: --timestamp-field `{name}`: source `{source}` has a Nexmark schema, whose fields all carry generator data; add a separate `{name}: i64` field",
                    args.pipeline.display()
                );
            }
            Some(index)
        }
        None => None,
    };
    if let Some(path) = &args.output {
        let format = match &args.format {
            Some(text) => {
                OutputFormat::parse(text).map_err(|err| anyhow::anyhow!("--format: {err}"))?
            }
            None => {
                OutputFormat::from_path(path).map_err(|err| anyhow::anyhow!("--output: {err}"))?
            }
        };
        write_output(&args, &schema, (stamp, random), bound, path, format)?;
        return Ok(true);
    }
    let addrs = addresses(&args, &source, &listen)?;
    let clock = Clock::new();
    let e2e = args
        .e2e_from
        .as_ref()
        .zip(args.timestamp_field.as_ref())
        .map(|(path, field)| spawn_e2e_reader(path.clone(), field, clock));
    let producers: Vec<ProducerThread> = (0..args.connections)
        .map(|p| {
            let (source, schema) = (source.clone(), schema.clone());
            let count = args.connections as u64;
            let addr = addrs[p % addrs.len()];
            let mut options = options.clone();
            options.tls = tls_options(&args, addr)?;
            let plan = Producer {
                addr,
                source,
                schema,
                index: p as u64,
                count,
                bound: match bound {
                    Bound::Rows(rows) => Bound::Rows(share(rows, p as u64, count)),
                    until => until,
                },
                rate: args.rate as f64 / args.connections as f64,
                batch_rows: args.batch_rows,
                seed: args.seed,
                stamp,
                random,
                clock,
                connect_wait,
                options,
            };
            Ok(std::thread::spawn(move || plan.run()))
        })
        .collect::<anyhow::Result<_>>()?;
    let (total, mut errors) = gather(producers)?;
    let e2e = e2e.map(|shared| {
        let expected = args.e2e_rows.unwrap_or(total.rows_acked);
        wait_for_sink(&shared, expected, e2e_wait);
        let mut state = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(err) = state.error.take() {
            errors.push(err);
        }
        let path = args.e2e_from.clone().unwrap_or_default();
        E2eSummary {
            path,
            expected,
            rows: state.recorder.rows,
            stale: state.recorder.stale,
            future: state.recorder.future,
            latency_us: state.recorder.latency_us.clone(),
        }
    });
    let addrs: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    print_summary(
        &args,
        &source,
        &addrs.join(","),
        &total,
        e2e.as_ref(),
        &errors,
    );
    Ok(errors.is_empty())
}

/// Waits for every producer thread; their reports summed, and what went wrong per connection.
fn gather(producers: Vec<ProducerThread>) -> anyhow::Result<(Report, Vec<String>)> {
    let mut total = Report::new();
    let mut errors = Vec::new();
    for (p, producer) in producers.into_iter().enumerate() {
        let mut report = Report::new();
        match producer.join() {
            Ok(Ok(done)) => report = done,
            Ok(Err(failed)) => {
                let (partial, err) = *failed;
                report = partial;
                errors.push(format!("connection {p}: {err:#}"));
            }
            Err(_) => errors.push(format!("connection {p}: the producer thread panicked")),
        }
        total.rows_sent += report.rows_sent;
        total.rows_acked += report.rows_acked;
        total.bytes_sent += report.bytes_sent;
        total.latency_us.add(&report.latency_us)?;
        total.send_lag_us.add(&report.send_lag_us)?;
        total.credit_waits += report.credit_waits;
        total.started = earliest(total.started, report.started);
        total.ended = latest(total.ended, report.ended);
    }
    Ok((total, errors))
}

/// A producer's thread: its report, or what it measured before its error.
type ProducerThread = std::thread::JoinHandle<Result<Report, Box<(Report, anyhow::Error)>>>;

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The source name, schema and `listen` text of the ingest source to feed.
/// The source to feed: its name, schema, listen address and event-time field.
type Target = (String, Schema, String, Option<String>);

fn target(args: &Args) -> anyhow::Result<Target> {
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
    let event_time = ingest.event_time.as_ref().map(|n| n.name.clone());
    Ok((
        name,
        ingest.schema.clone(),
        ingest.listen.clone(),
        event_time,
    ))
}

/// `--connect-wait`, and the client's options from `--no-idempotence` and `--reconnect`.
fn connection_options(args: &Args) -> anyhow::Result<(Duration, ClientOptions)> {
    let connect_wait = parse_duration(&args.connect_wait)
        .map_err(|err| anyhow::anyhow!("--connect-wait: {err}"))?;
    let reconnect =
        parse_duration(&args.reconnect).map_err(|err| anyhow::anyhow!("--reconnect: {err}"))?;
    let options = ClientOptions {
        idempotent: !args.no_idempotence,
        reconnect: (!reconnect.is_zero()).then_some(reconnect),
        token: args.token.clone(),
        tls: None,
    };
    Ok((connect_wait, options))
}

/// `--ca`, `--cert` and `--key`: TLS to the node at `addr`, or `None` for plaintext.
fn tls_options(args: &Args, addr: SocketAddr) -> anyhow::Result<Option<ClientTls>> {
    let Some(ca) = &args.ca else {
        return Ok(None);
    };
    let identity = args.cert.as_deref().zip(args.key.as_deref());
    let config = wire_net::tls::client_config(ca, identity)?;
    let server_name = rustls_name(addr);
    Ok(Some(ClientTls {
        config,
        server_name,
    }))
}

/// The name a node's certificate must carry when dialed at `addr`: its IP address.
fn rustls_name(addr: SocketAddr) -> wire_net::tls::ServerName<'static> {
    wire_net::tls::ServerName::IpAddress(addr.ip().into())
}

/// The addresses to connect to: `--addr` (one or more, comma-separated), or the source's
/// `listen`.
fn addresses(args: &Args, source: &str, listen: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let text = args.addr.as_deref().unwrap_or(listen);
    let mut addrs = Vec::new();
    for part in text.split(',').map(str::trim) {
        let mut addr: SocketAddr = part
            .parse()
            .with_context(|| format!("--addr: `{part}` is not an IP address and port"))?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        if addr.port() == 0 {
            bail!(
                "source `{source}` listens on port 0: pass the port `wire run` printed with --addr"
            );
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// Producer `index`'s share of `total` rows.
fn share(total: u64, index: u64, count: u64) -> u64 {
    total / count + u64::from(index < total % count)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// How often a producer waiting for a batch's send time looks for acks.
const POLL: Duration = Duration::from_micros(200);

struct Producer {
    addr: SocketAddr,
    source: String,
    schema: Schema,
    index: u64,
    count: u64,
    bound: Bound,
    rate: f64,
    batch_rows: usize,
    seed: u64,
    stamp: Option<usize>,
    random: RandomOptions,
    clock: Clock,
    connect_wait: Duration,
    options: ClientOptions,
}

impl Producer {
    /// Sends its share; on error, returns what it measured so far with the error.
    fn run(self) -> Result<Report, Box<(Report, anyhow::Error)>> {
        let mut report = Report::new();
        match self.send(&mut report) {
            Ok(()) => Ok(report),
            Err(err) => Err(Box::new((report, err))),
        }
    }

    fn connect(&self) -> anyhow::Result<IngestClient> {
        let deadline = Instant::now() + self.connect_wait;
        loop {
            let (name, source) = ("wire-loadgen", &self.source);
            match IngestClient::connect_with(
                self.addr,
                name,
                source,
                &self.schema,
                self.options.clone(),
            ) {
                Ok(client) => return Ok(client),
                Err(ClientError::Io(err))
                    if err.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => {
                    return Err(
                        anyhow::Error::new(err).context(format!("connecting to {}", self.addr))
                    )
                }
            }
        }
    }

    fn send(&self, report: &mut Report) -> anyhow::Result<()> {
        let mut client = self.connect()?;
        let mut maker = RowMaker::for_schema(&self.schema, self.seed, self.index, self.count)
            .with_options(self.random);
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(client.partition()));
        let mut scheduled: VecDeque<(u64, Instant)> = VecDeque::new();
        let start = Instant::now();
        report.started = Some(start);
        loop {
            let rows = match self.bound {
                Bound::Rows(total) => (total - report.rows_sent).min(self.batch_rows as u64),
                Bound::Until(duration) if start.elapsed() < duration => self.batch_rows as u64,
                Bound::Until(_) => 0,
            };
            if rows == 0 {
                break;
            }
            let due = if self.rate > 0.0 {
                start + Duration::from_secs_f64(report.rows_sent as f64 / self.rate)
            } else {
                Instant::now()
            };
            let stamp = self.stamp.map(|field| (field, self.clock.unix_ns(due)));
            maker.set_clock_ms(self.clock.unix_ns(due) / 1_000_000);
            maker.fill_stamped(&mut builder, rows as usize, stamp)?;
            let batch = builder.finish();
            while Instant::now() < due {
                record(report, &mut scheduled, client.poll_acks()?);
                std::thread::sleep(due.saturating_duration_since(Instant::now()).min(POLL));
            }
            report.credit_waits += u64::from(client.credits() == 0);
            let seq = client.send(&batch)?;
            let lag = Instant::now().saturating_duration_since(due);
            report
                .send_lag_us
                .saturating_record(lag.as_micros().max(1) as u64);
            scheduled.push_back((seq, due));
            report.rows_sent += rows;
            report.bytes_sent += batch.as_bytes().len() as u64;
            record(report, &mut scheduled, client.poll_acks()?);
        }
        let rest = client.close()?;
        record(report, &mut scheduled, rest);
        report.ended = Some(Instant::now());
        Ok(())
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

/// Writes the rows the producers would send to `path` (see [`write_stream`]).
fn write_output(
    args: &Args,
    schema: &Schema,
    (stamp, random): (Option<usize>, RandomOptions),
    bound: Bound,
    path: &Path,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let file =
        File::create(path).with_context(|| format!("--output: creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let plan = StreamPlan {
        seed: args.seed,
        producers: args.connections as u64,
        rows: match bound {
            Bound::Rows(rows) => Some(rows),
            Bound::Until(_) => None,
        },
        batch_rows: args.batch_rows,
        rate: args.rate,
        stamp,
        random,
        clock_start_ms: Clock::new().now_ns() / 1_000_000,
    };
    let (rows_written, bytes) = write_stream(schema, &plan, format, &mut out, || match bound {
        Bound::Until(duration) => started.elapsed() < duration,
        Bound::Rows(_) => true,
    })
    .with_context(|| format!("--output: writing {}", path.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let summary = serde_json::json!({
            "output": path.display().to_string(),
            "format": match format { OutputFormat::JsonLines => "jsonl", OutputFormat::Csv => "csv" },
            "rows_written": rows_written, "bytes_written": bytes, "seconds": secs,
        });
        println!("{summary}");
    } else {
        println!(
            "wire-loadgen: wrote {rows_written} rows ({bytes} bytes) to {} in {secs:.2} s",
            path.display()
        );
    }
    Ok(())
}

/// Starts the thread that reads the sink's output at `path` into a recorder.
fn spawn_e2e_reader(path: PathBuf, field: &str, clock: Clock) -> Arc<Mutex<E2eState>> {
    let shared = Arc::new(Mutex::new(E2eState {
        recorder: E2eRecorder::new(field, clock.unix_ns),
        eof: false,
        error: None,
    }));
    let state = Arc::clone(&shared);
    std::thread::spawn(move || {
        let result = read_sink(&path, &state, clock);
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.eof = true;
        if let Err(err) = result {
            state.error = Some(format!("--e2e-from {}: {err:#}", path.display()));
        }
    });
    shared
}

fn read_sink(path: &Path, state: &Mutex<E2eState>, clock: Clock) -> anyhow::Result<()> {
    // A FIFO's open blocks until the writer opens it; a file may not exist yet.
    let mut file = loop {
        match File::open(path) {
            Ok(file) => break file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(anyhow::Error::new(err).context("opening")),
        }
    };
    let fifo = file
        .metadata()
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    let mut buf = vec![0u8; 1 << 18];
    loop {
        let n = file.read(&mut buf).context("reading")?;
        let now = clock.now_ns();
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if n == 0 {
            if fifo {
                // The writer closed the pipe: the last line may lack its newline.
                return state.recorder.finish(now).map_err(anyhow::Error::new);
            }
            drop(state);
            std::thread::sleep(POLL);
            continue;
        }
        state.recorder.feed(&buf[..n], now)?;
    }
}

/// Waits until the sink has written `expected` rows, the reader stopped, or no line has come
/// for `wait`.
fn wait_for_sink(shared: &Mutex<E2eState>, expected: u64, wait: Duration) {
    let mut last_lines = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        {
            let state = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if state.eof || state.error.is_some() || state.recorder.rows >= expected {
                return;
            }
            if state.recorder.lines() != last_lines {
                last_lines = state.recorder.lines();
                last_change = Instant::now();
            }
        }
        if last_change.elapsed() >= wait {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct E2eSummary {
    path: PathBuf,
    expected: u64,
    rows: u64,
    stale: u64,
    future: u64,
    latency_us: Histogram<u64>,
}

const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = PERCENTILES
        .iter()
        .map(|p| (format!("p{p}"), h.value_at_quantile(p / 100.0).into()))
        .chain([("max".to_string(), h.max().into())])
        .collect();
    map.into()
}

fn latency_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".to_string();
    }
    let line: Vec<String> = PERCENTILES
        .iter()
        .map(|p| format!("p{p} {}", micros(h.value_at_quantile(p / 100.0))))
        .chain([format!("max {}", micros(h.max()))])
        .collect();
    line.join(", ")
}

fn print_summary(
    args: &Args,
    source: &str,
    addr: &str,
    total: &Report,
    e2e: Option<&E2eSummary>,
    errors: &[String],
) {
    let secs = match (total.started, total.ended) {
        (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
        _ => 0.0,
    }
    .max(1e-9);
    let achieved = total.rows_acked as f64 / secs;
    let mb_per_s = total.bytes_sent as f64 / secs / 1e6;
    if args.json {
        let mut summary = serde_json::json!({
            "source": source, "addr": addr, "connections": args.connections,
            "batch_rows": args.batch_rows,
            "rows_sent": total.rows_sent, "rows_acked": total.rows_acked,
            "bytes_sent": total.bytes_sent, "seconds": secs,
            "offered_rows_per_s": args.rate, "achieved_rows_per_s": achieved,
            "achieved_mb_per_s": mb_per_s,
            "ack_latency_us": latency_json(&total.latency_us),
            "send_lag_us": latency_json(&total.send_lag_us),
            "credit_waits": total.credit_waits,
            "errors": errors,
        });
        if let (Some(e2e), Some(object)) = (e2e, summary.as_object_mut()) {
            object.insert(
                "e2e".to_string(),
                serde_json::json!({
                    "from": e2e.path.display().to_string(),
                    "field": args.timestamp_field,
                    "rows": e2e.rows, "expected_rows": e2e.expected,
                    "stale_rows": e2e.stale, "future_rows": e2e.future,
                }),
            );
            object.insert("e2e_latency_us".to_string(), latency_json(&e2e.latency_us));
        }
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
        "  offered {offered}; achieved {achieved:.0} rows/s ({mb_per_s:.1} MB/s of batches); acknowledged {} rows",
        total.rows_acked
    );
    println!(
        "  ack latency from scheduled send: {}",
        latency_text(&total.latency_us)
    );
    println!(
        "  send lag behind schedule: {}; {} batch(es) waited for credit",
        latency_text(&total.send_lag_us),
        total.credit_waits
    );
    if let Some(e2e) = e2e {
        println!(
            "  end-to-end latency to {}: {}",
            e2e.path.display(),
            latency_text(&e2e.latency_us)
        );
        let mut seen = format!(
            "  sink rows read: {} of {} expected",
            e2e.rows, e2e.expected
        );
        if e2e.stale > 0 {
            seen += &format!(", {} stale (stamped before this run) skipped", e2e.stale);
        }
        if e2e.future > 0 {
            seen += &format!(", {} stamped in the future", e2e.future);
        }
        println!("{seen}");
    }
    println!("  errors: {}", errors.len());
    for err in errors {
        println!("  error: {err}");
    }
}

fn micros(us: u64) -> String {
    match us {
        us if us >= 10_000 => format!("{:.1} ms", us as f64 / 1000.0),
        us => format!("{us} µs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wait_until(shared: &Mutex<E2eState>, done: impl Fn(&E2eState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done(&shared.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the reader did not get there in 10 s");
    }

    #[test]
    fn shares_add_up() {
        for (total, count) in [(10, 3), (0, 2), (7, 7), (1_000_001, 4)] {
            let sum: u64 = (0..count).map(|p| share(total, p, count)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn addr_takes_several_nodes_and_names_a_bad_one() {
        let parse = |addr: &str| {
            let args = Args::try_parse_from(["wire-loadgen", "p.yaml", "--addr", addr]).unwrap();
            addresses(&args, "rows", "0.0.0.0:7070")
        };
        let addrs: Vec<String> = parse("127.0.0.1:7070, 0.0.0.0:7071")
            .unwrap()
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        assert_eq!(addrs, ["127.0.0.1:7070", "127.0.0.1:7071"]);
        let err = parse("127.0.0.1:7070,node2:7071").unwrap_err().to_string();
        assert_eq!(err, "--addr: `node2:7071` is not an IP address and port");
    }

    #[test]
    fn the_clock_maps_instants_to_unix_nanoseconds() {
        let clock = Clock::new();
        let later = clock.instant + Duration::from_millis(3);
        assert_eq!(clock.unix_ns(later) - clock.unix_ns, 3_000_000);
        let earlier = clock.instant - Duration::from_millis(2);
        assert_eq!(clock.unix_ns - clock.unix_ns(earlier), 2_000_000);
        assert!(clock.now_ns() >= clock.unix_ns);
    }

    #[test]
    fn the_reader_follows_a_growing_file_and_names_a_bad_line() {
        let dir = std::env::temp_dir().join(format!("wire-loadgen-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sink.jsonl");
        let _ = std::fs::remove_file(&path);
        let clock = Clock::new();
        // The file does not exist yet: the reader waits for it.
        let shared = spawn_e2e_reader(path.clone(), "sent_at", clock);
        let mut file = File::create(&path).unwrap();
        let stamp = clock.now_ns();
        writeln!(file, "{{\"x\":1,\"sent_at\":{stamp}}}").unwrap();
        write!(file, "{{\"x\":2,\"sent_at\":{}", stamp + 1).unwrap();
        file.flush().unwrap();
        wait_until(&shared, |s| s.recorder.rows == 1);
        writeln!(file, "}}\n{{\"x\":3,\"sent_at\":5}}").unwrap();
        wait_until(&shared, |s| s.recorder.rows == 2 && s.recorder.stale == 1);
        writeln!(file, "{{\"x\":4}}").unwrap();
        wait_until(&shared, |s| s.error.is_some());
        let state = shared.lock().unwrap();
        let error = state.error.clone().unwrap();
        assert!(error.contains("line 4: no field `sent_at`"), "{error}");
        assert!(error.contains("sink.jsonl"), "{error}");
        drop(state);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
