//! `wire`: the Wire node. `wire run PIPELINE.yaml` runs a pipeline on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::{Parser, Subcommand};
mod run;
mod sql;
mod start;

use run::run;
use wire_control::job::{self, Outcome, RunArgs};
use wire_control::metrics::{server, Metrics};
use wire_control::telemetry::Traces;
use wire_control::tls::RunTlsFiles;
use wire_storage::checkpoint::StoreUrl;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `wire --version`: the crate version and the git commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("WIRE_COMMIT"), ")");

const ENVIRONMENT: &str = "\
Environment:
  RUST_LOG   Log filter for stderr, like `info` or `warn,wire_actors=debug` (default: warn).
  WIRE_LOG   The same; wins over RUST_LOG when both are set.
  A value that is not a valid filter is an error (exit 2).
  Logs are lines of text, or one JSON object per line with --log-format json.
  WIRE_THP   1 leaves transparent huge pages as the system sets them (default: off for wire).";

/// Wire: a thread-per-core stream processor.
#[derive(Debug, Parser)]
#[command(name = "wire", version = VERSION, after_help = ENVIRONMENT)]
struct Cli {
    /// How log lines on stderr look: `text`, or `json` (one object per line, for shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Export spans (checkpoints, restores, raft events, admin calls) to this OTLP/HTTP
    /// collector (`http://HOST:4318`; `/v1/traces` is appended unless the URL has a path).
    /// For `run` and `start`; an unreachable collector only costs a warning.
    #[arg(long, global = true, value_name = "URL")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline on this machine until its bounded sources are exhausted, or until Ctrl-C
    /// (which drains, flushes and exits 0). Prints a summary to stderr.
    Run(RunCmd),
    /// Run a long-lived cluster node: the raft metadata group and the gRPC AdminService and
    /// RaftService on --listen. SIGTERM or Ctrl-C stops it cleanly (membership unchanged).
    Start(start::StartArgs),
    /// Check a pipeline file (syntax, names, types) without running it.
    Check {
        /// The pipeline file (YAML, or SQL when it ends in `.sql`).
        pipeline: PathBuf,
    },
    /// Print the checked plan of a pipeline file (YAML or SQL): sources, operators with their
    /// keys, windows and state, and sinks.
    Explain {
        /// The pipeline file (YAML, or SQL when it ends in `.sql`).
        pipeline: PathBuf,
    },
    /// An interactive SQL shell: CREATE TABLE and CREATE VIEW accumulate, SHOW TABLES,
    /// DESCRIBE, and a SELECT prints its rows as they come (see docs/sql.md). Reads statements
    /// from standard input when it is not a terminal.
    Sql(sql::SqlArgs),
    /// Certificates for trying TLS out.
    #[command(subcommand)]
    Certs(CertsCmd),
}

/// `wire run`'s arguments.
#[derive(Debug, clap::Args)]
struct RunCmd {
    /// The pipeline file (YAML, or SQL when it ends in `.sql`).
    pipeline: PathBuf,
    /// Data cores (one pinned executor each); default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// Directory for WALs and other state.
    #[arg(long, default_value = "./wire-data")]
    data_dir: PathBuf,
    /// Do not print the live progress line.
    #[arg(long)]
    no_progress: bool,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Take a checkpoint this often (`500ms`, `1s`, `1m`) and make file sinks
    /// exactly-once; a restart resumes from the newest intact checkpoint.
    #[arg(long, value_parser = parse_interval)]
    checkpoint_interval: Option<Duration>,
    /// Where checkpoints go (default: <data-dir>/<pipeline>/checkpoints).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Where checkpoints go, as a URL: `file:///DIR` (or a path: the same as
    /// --checkpoint-dir) or `s3://BUCKET/PREFIX` (an S3-compatible store; endpoint and
    /// credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP; checkpoints are staged in --checkpoint-dir's
    /// default directory, then uploaded).
    #[arg(long, value_name = "URL", value_parser = parse_store, conflicts_with = "checkpoint_dir")]
    checkpoint_store: Option<StoreUrl>,
    /// Abort a checkpoint that is not complete after this long.
    #[arg(long, value_parser = parse_interval, default_value = "60s")]
    checkpoint_timeout: Duration,
    /// Completed checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    checkpoints_retained: usize,
    /// Incremental checkpoints: up to this many checkpoints in a row write only what
    /// changed (for operators that track changes), then one writes the whole state again;
    /// 0 writes the whole state every time.
    #[arg(long, default_value_t = 10)]
    checkpoint_deltas: u32,
    /// Start from this savepoint directory when there is no checkpoint yet (needs checkpoints:
    /// --checkpoint-interval or the pipeline's settings).
    #[arg(long)]
    from_savepoint: Option<PathBuf>,
    /// When the run ends (its sources are exhausted, or Ctrl-C), also write its last
    /// checkpoint as a savepoint `savepoint-<id>` in this directory (needs checkpoints:
    /// --checkpoint-interval or the pipeline's settings).
    #[arg(long)]
    savepoint_dir: Option<PathBuf>,
    /// Start over: delete the pipeline's checkpoints and its file sinks' part files
    /// first (ingest WALs, which hold accepted input, are kept).
    #[arg(long, conflicts_with_all = ["append_output", "allow_empty_restore"])]
    fresh: bool,
    /// Write into file sink directories that already hold part files of an earlier run
    /// (by default a run that does not resume from a checkpoint refuses to).
    #[arg(long)]
    append_output: bool,
    /// Start from empty state even though checkpoints were committed and none of them can
    /// be restored (state is lost; published output is kept and rows may repeat; needs
    /// checkpoints: --checkpoint-interval or the pipeline's settings).
    #[arg(long)]
    allow_empty_restore: bool,
    /// Serve Prometheus metrics (`/metrics`), `/healthz`, `/readyz` and the
    /// web dashboard (`/`) on HOST:PORT (`--http-addr` is the same).
    #[arg(long, value_name = "HOST:PORT", visible_alias = "http-addr")]
    metrics_addr: Option<String>,
    /// After the run ends, keep serving its final metrics this long (or until Ctrl-C),
    /// so a last scrape sees the figures of the summary.
    #[arg(long, value_parser = parse_interval, requires = "metrics_addr")]
    metrics_linger: Option<Duration>,
    /// Show the live top view of the pipeline's operators on stderr every second (the
    /// figures of `/metrics` and `wirectl top`) instead of the progress line.
    #[arg(long)]
    top: bool,
    /// Serve the ingest ports over TLS with this certificate chain (PEM); SIGHUP reloads
    /// it and --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Verify producers' client certificates against this CA (PEM) when they present one.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Every producer must present a client certificate signed by --tls-client-ca.
    #[arg(long, requires = "tls_client_ca")]
    tls_require_client_cert: bool,
}

/// `wire certs …`.
#[derive(Debug, Subcommand)]
enum CertsCmd {
    /// Write a development CA and certificates into DIR: ca.pem, ca-key.pem, node.pem,
    /// node-key.pem (valid for localhost, 127.0.0.1 and each --host), client.pem,
    /// client-key.pem. Not for production: the CA key sits beside the certificates.
    Init {
        /// Where to write them (created; existing certificates are never overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// Another name or IP address the node certificate is valid for (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
}

/// `wire run`'s TLS: the ingest ports' configuration and the metrics endpoint's.
struct RunTls {
    ingest: Arc<wire_actors::IngestTls>,
    http: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    /// Whether the metrics endpoint asks for a client certificate with a role
    /// (`--tls-client-ca` given).
    authenticate: bool,
}

/// Loads `wire run`'s TLS (ingest ports and metrics endpoint) and reloads it on every SIGHUP
/// (a bad file is reported and changes nothing).
fn run_tls(files: RunTlsFiles) -> Result<RunTls, String> {
    let tls = RunTls {
        ingest: Arc::new(wire_actors::IngestTls::new(files.server_config()?)),
        http: Arc::new(RwLock::new(files.http_config()?)),
        authenticate: files.client_ca.is_some(),
    };
    let mut hangups = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|err| format!("cannot handle SIGHUP (TLS reload): {err}"))?;
    let (ingest, http) = (tls.ingest.clone(), tls.http.clone());
    std::thread::Builder::new()
        .name("wire-sighup".into())
        .spawn(move || {
            for _ in hangups.forever() {
                match files
                    .server_config()
                    .and_then(|i| Ok((i, files.http_config()?)))
                {
                    Ok((config, http_config)) => {
                        ingest.replace(config);
                        *http.write().unwrap_or_else(|e| e.into_inner()) = http_config;
                        eprintln!("SIGHUP: TLS certificate and key reloaded");
                    }
                    Err(err) => eprintln!(
                        "warning: SIGHUP: TLS files not reloaded ({err}); the old ones stay in use"
                    ),
                }
            }
        })
        .map_err(|err| format!("cannot start the SIGHUP thread: {err}"))?;
    Ok(tls)
}

fn main() -> ExitCode {
    wire_control::tls::install_crypto_provider();
    let cli = Cli::parse();
    let filter = match log_filter() {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("error: {err}");
            return exit_code(Outcome::Invalid);
        }
    };
    let service = match &cli.command {
        Command::Start(_) => "wire-node",
        _ => "wire-run",
    };
    let traces = match cli
        .otlp_endpoint
        .as_deref()
        .map(|url| Traces::start(url, service))
    {
        None => None,
        Some(Ok(traces)) => Some(traces),
        Some(Err(err)) => {
            eprintln!("error: {err}");
            return exit_code(Outcome::Invalid);
        }
    };
    init_logs(cli.log_format, filter, traces.as_ref());
    huge_pages_off();
    let code = dispatch(cli.command);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

/// Turns transparent huge pages off for this process unless `WIRE_THP=1`. The kernel zeroes a
/// whole 2 MiB page on the first touch of every region the allocator purged and reuses: up to
/// 30% of a core in `clear_page_erms` on joins, 4× the wall time of Nexmark q20
/// (docs/benchmarks.md, "Huge pages"). mimalloc is built with `no_thp`, so it never asks for
/// them itself (its first arena, touched before this call, used to be huge pages: 2–3 MiB of
/// every run's RSS). Faults after this call get 4 KiB pages, also in memory mapped before it.
fn huge_pages_off() {
    if std::env::var_os("WIRE_THP").is_some_and(|value| value == "1") {
        tracing::debug!("WIRE_THP=1: transparent huge pages stay as the system sets them");
        return;
    }
    if let Err(err) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(%err, "could not turn transparent huge pages off");
    }
}

/// Runs the subcommand.
fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Run(cmd) => run_cmd(cmd),
        Command::Start(args) => start::start(args),
        Command::Sql(args) => sql::shell(args),
        Command::Certs(CertsCmd::Init { dir, hosts }) => certs_init(&dir, &hosts),
        Command::Check { pipeline } => check(&pipeline),
        Command::Explain { pipeline } => explain(&pipeline),
    }
}

/// The checkpoint flags but the interval: with `--checkpoint-interval`, or for an interval
/// that the pipeline's settings give.
fn checkpoint_options(cmd: &RunCmd) -> job::CheckpointArgs {
    job::CheckpointArgs {
        interval: Duration::ZERO,
        timeout: cmd.checkpoint_timeout,
        retained: cmd.checkpoints_retained,
        deltas: cmd.checkpoint_deltas,
        from_savepoint: cmd.from_savepoint.clone(),
        savepoint_dir: cmd.savepoint_dir.clone(),
    }
}

/// `wire run`.
fn run_cmd(cmd: RunCmd) -> ExitCode {
    let checkpoint_defaults = checkpoint_options(&cmd);
    let stop = handle_ctrl_c();
    let tls = cmd
        .tls_cert
        .zip(cmd.tls_key)
        .map(|(cert, key)| RunTlsFiles {
            cert,
            key,
            client_ca: cmd.tls_client_ca,
            require_client_cert: cmd.tls_require_client_cert,
        });
    let tls = match tls.map(run_tls).transpose() {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("error: {err}");
            return exit_code(Outcome::Invalid);
        }
    };
    let ingest_tls = tls.as_ref().map(|tls| tls.ingest.clone());
    let https = tls.map(|tls| server::HttpSecurity {
        tls: tls.http,
        authenticate: tls.authenticate,
        audit: None,
        limiter: None,
    });
    let args = RunArgs {
        placement: None,
        sink_subdir: None,
        ingest_auth: None,
        restore_parts: None,
        spread_subdirs: Vec::new(),
        ingest_tls,
        node_id: 0,
        ingest_port_offset: 0,
        pipeline: cmd.pipeline,
        cores: cmd.cores,
        data_dir: cmd.data_dir,
        progress: !cmd.no_progress && !cmd.top,
        pin: !cmd.no_pin,
        checkpoints: cmd.checkpoint_interval.map(|interval| job::CheckpointArgs {
            interval,
            ..checkpoint_defaults.clone()
        }),
        checkpoint_defaults: Some(checkpoint_defaults),
        checkpoint_dir: match &cmd.checkpoint_store {
            Some(StoreUrl::Dir(dir)) => Some(dir.clone()),
            _ => cmd.checkpoint_dir,
        },
        checkpoint_store: cmd
            .checkpoint_store
            .filter(|s| matches!(s, StoreUrl::S3 { .. })),
        fresh: cmd.fresh,
        append_output: cmd.append_output,
        allow_empty_restore: cmd.allow_empty_restore,
    };
    let metrics = MetricsArgs {
        addr: cmd.metrics_addr,
        linger: cmd.metrics_linger,
        https,
    };
    exit_code(run_command(&args, &stop, metrics, cmd.top))
}

/// `wire run`'s metrics endpoint: where, how long it lingers, and its HTTPS (with
/// `--tls-cert`).
struct MetricsArgs {
    addr: Option<String>,
    linger: Option<Duration>,
    https: Option<server::HttpSecurity>,
}

/// `wire run`: starts the control plane's runtime and the metrics server, runs `args`.
fn run_command(
    args: &RunArgs,
    stop: &Arc<AtomicBool>,
    metrics_args: MetricsArgs,
    top: bool,
) -> Outcome {
    // The process's one tokio runtime: the control plane (the checkpoint coordinator).
    let runtime = match control_runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the control plane's runtime: {err}");
            return Outcome::Failed;
        }
    };
    let MetricsArgs {
        addr,
        linger,
        https,
    } = metrics_args;
    let metrics = match start_metrics(addr.as_deref(), https, &runtime) {
        Ok(metrics) => metrics,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Failed;
        }
    };
    let outcome = run_served(args, stop, &runtime, metrics, linger, top);
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// `wire certs init`: the paths written, or the error.
fn certs_init(dir: &std::path::Path, hosts: &[String]) -> ExitCode {
    match wire_control::tls::init_dev_certs(dir, hosts) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// `wire check`: one line on success, the first error otherwise.
fn check(pipeline: &std::path::Path) -> ExitCode {
    match job::load(pipeline) {
        Ok(plan) => {
            eprintln!(
                "{}: ok ({} sources, {} operators, {} sinks)",
                pipeline.display(),
                plan.sources.len(),
                plan.operators.len(),
                plan.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            exit_code(Outcome::Invalid)
        }
    }
}

/// `wire explain`: the checked plan on standard output.
fn explain(pipeline: &std::path::Path) -> ExitCode {
    match wire_control::check::check_file(pipeline) {
        Ok(checked) => {
            let text = wire_core::frontend::sql::explain(&checked.spec, &checked.plan);
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            exit_code(Outcome::Invalid)
        }
    }
}

/// Installs the subscriber: log lines on stderr (`filter`, in `format`) and, with
/// `--otlp-endpoint`, Wire's spans to the collector (their own filter: `RUST_LOG` only
/// says what is logged).
fn init_logs(format: LogFormat, filter: tracing_subscriber::EnvFilter, traces: Option<&Traces>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => logs.json().with_ansi(false).with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces.map(|t| t.layer()))
        .init();
}

/// Runs `args` with its figures in `metrics` (or, for `--top` alone, in a registry nobody
/// serves), then serves the final figures for `linger`.
fn run_served(
    args: &RunArgs,
    stop: &Arc<AtomicBool>,
    runtime: &tokio::runtime::Runtime,
    metrics: Option<(Metrics, server::MetricsServer)>,
    linger: Option<Duration>,
    top: bool,
) -> Outcome {
    let registry = metrics.as_ref().map(|(registry, _)| registry.clone());
    let registry = registry.or_else(|| top.then(Metrics::new));
    let outcome = run(args, stop.clone(), runtime.handle(), registry.as_ref(), top);
    if let (Some((_, server)), Some(linger)) = (&metrics, linger) {
        linger_serving(server, linger, stop);
    }
    outcome
}

/// With `--metrics-addr`: a registry served there on `runtime` (a port in use is an error).
fn start_metrics(
    addr: Option<&str>,
    https: Option<server::HttpSecurity>,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<(Metrics, server::MetricsServer)>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let registry = Metrics::new();
    let served = runtime.block_on(server::serve(addr, registry.clone(), https))?;
    eprintln!("metrics on {}", served.url());
    Ok(Some((registry, served)))
}

/// `--metrics-linger`: serves the final metrics for `linger`, or until Ctrl-C.
fn linger_serving(server: &server::MetricsServer, linger: Duration, stop: &AtomicBool) {
    eprintln!(
        "serving the final metrics on {} for {linger:?} (Ctrl-C ends)",
        server.url()
    );
    let until = std::time::Instant::now() + linger;
    while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The control plane's runtime: one worker thread (it hosts little), two blocking threads
/// (checkpoint writes).
fn control_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("wire-control")
        .enable_all()
        .build()
}

/// The log filter from `WIRE_LOG`, else `RUST_LOG` (an empty value counts as unset), else
/// `warn`; a value that does not parse is an error naming the variable.
fn log_filter() -> Result<tracing_subscriber::EnvFilter, String> {
    for var in ["WIRE_LOG", "RUST_LOG"] {
        let value = match std::env::var(var) {
            Ok(value) if value.trim().is_empty() => continue,
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => continue,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("{var} is not valid UTF-8"));
            }
        };
        return tracing_subscriber::EnvFilter::try_new(&value).map_err(|err| {
            format!(
                "{var}=`{value}` is not a log filter ({err}); use a level like `info` or \
                 directives like `warn,wire_actors=debug`"
            )
        });
    }
    Ok(tracing_subscriber::EnvFilter::new("warn"))
}

/// Parses `500ms`, `1s`, `2m` (as in pipeline files).
fn parse_interval(text: &str) -> Result<Duration, String> {
    match wire_core::frontend::spec::parse_duration(text) {
        Some(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(format!(
            "`{text}` is not a positive duration like 500ms, 1s or 2m"
        )),
    }
}

fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::from(1),
        Outcome::Invalid => ExitCode::from(2),
    }
}

/// `--checkpoint-store`: a URL that parses, and for S3 an environment a client can be made from.
fn parse_store(text: &str) -> Result<StoreUrl, String> {
    wire_control::node::config::check_store(text)
}

/// Ctrl-C drains and flushes (the flag returned is set); a second one exits at once.
fn handle_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without draining");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: draining and flushing (Ctrl-C again to exit now)");
    });
    if let Err(err) = handler {
        eprintln!("warning: cannot handle Ctrl-C: {err}");
    }
    stop
}
