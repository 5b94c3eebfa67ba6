//! `wirectl`: the admin client of a Wire cluster. It talks gRPC (the AdminService) to any
//! member started with `wire start`; the member forwards writes to the leader.
//!
//! Exit status: 0 ok, 1 the request failed (the message says why), 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

mod client;
mod output;
mod top;
mod verbs;

/// The endpoint when neither `--endpoint` nor `WIRE_ENDPOINT` is given (`wire start`'s default).
const DEFAULT_ENDPOINT: &str = "127.0.0.1:7400";

/// `wirectl --version`: the crate version and the git commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("WIRE_COMMIT"), ")");

/// Manage a Wire cluster: its members, pipelines, checkpoints and metadata backups.
#[derive(Debug, Parser)]
#[command(name = "wirectl", version = VERSION)]
struct Cli {
    /// The member to talk to, HOST:PORT (or http://HOST:PORT); default: $WIRE_ENDPOINT, else
    /// 127.0.0.1:7400.
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// The cluster CA (PEM): talk TLS and trust the node's certificate if it chains to this.
    #[arg(long, global = true, env = "WIRE_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) signed by the cluster CA, for nodes that require one.
    #[arg(
        long,
        global = true,
        env = "WIRE_CERT",
        value_name = "FILE",
        requires = "key"
    )]
    cert: Option<PathBuf>,
    /// A bearer token (`wire_…`, from `wirectl token create` or the founding node's
    /// `<data-dir>/admin-token`); prefer WIRE_TOKEN, which does not show in `ps`.
    #[arg(
        long,
        global = true,
        env = "WIRE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// The private key of --cert (PEM).
    #[arg(
        long,
        global = true,
        env = "WIRE_KEY",
        value_name = "FILE",
        requires = "cert"
    )]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people (`text` is the same).
    #[value(alias = "text")]
    Table,
    /// One JSON document (the answer's fields, stable for scripts).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The cluster: leader, term, commit index, members.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Add or remove members.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Create, inspect and steer pipelines.
    #[command(subcommand)]
    Pipeline(PipelineCmd),
    /// Checkpoints of a pipeline.
    #[command(subcommand)]
    Checkpoint(CheckpointCmd),
    /// Savepoints of a pipeline.
    #[command(subcommand)]
    Savepoint(SavepointCmd),
    /// Backups of the cluster metadata.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Bearer tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// A live view of pipelines and operators (rows, rates, backpressure, watermark lag,
    /// checkpoint age), read from the nodes' `/metrics`; refreshes until Ctrl-C.
    Top(TopArgs),
}

/// `wirectl top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The nodes' metrics endpoints (their `--metrics-addr`), HOST:PORT, comma-separated or
    /// repeated; default: $WIRE_METRICS.
    #[arg(
        long = "metrics",
        env = "WIRE_METRICS",
        value_delimiter = ',',
        required = true
    )]
    pub metrics: Vec<String>,
    /// Print one view and exit (rates over one --interval).
    #[arg(long)]
    pub once: bool,
    /// Time between two views (`1s`, `500ms`).
    #[arg(long, value_parser = parse_interval, default_value = "1s")]
    pub interval: Duration,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a token with role R (admin, operator, viewer, producer); prints it once.
    Create {
        /// What the token may do.
        #[arg(long)]
        role: String,
        /// How long it works (`30s`, `12h`, `90d`), or `never`.
        #[arg(long, value_parser = parse_expiry)]
        expires: Expiry,
        /// Producer tokens only: the one pipeline it may ingest into (default: every one).
        #[arg(long)]
        pipeline: Option<String>,
        /// Producer tokens only, with --pipeline: the one source it may ingest into.
        #[arg(long, requires = "pipeline")]
        source: Option<String>,
    },
    /// Every token's id, role and expiry (never the secrets).
    List,
    /// Revoke token ID: it stops working at once on every member.
    Revoke {
        /// The token's id (`token list`).
        id: String,
    },
}

/// How long a new token works.
#[derive(Debug, Clone, Copy)]
pub struct Expiry(Option<Duration>);

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// Leader, term, commit index, and each member with its health and last contact.
    Status,
    /// Snapshot the metadata on the --endpoint node now and drop its raft log up to it.
    Compact,
}

#[derive(Debug, Subcommand)]
enum NodeCmd {
    /// Add node ID, reachable at HOST:PORT, as a voting member (start it with `--join` or
    /// empty data first).
    Add {
        /// The new node's id (not 0, not in use).
        id: u64,
        /// Its gRPC address, HOST:PORT.
        address: String,
    },
    /// Remove node ID from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// `wire run`'s pipeline options.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineOpts {
    /// Take a checkpoint this often (`500ms`, `1s`, `1m`).
    #[arg(long, value_parser = parse_interval)]
    pub checkpoint_interval: Option<Duration>,
    /// Data cores for the pipeline (default: the node's).
    #[arg(long)]
    pub cores: Option<u32>,
    /// Start from this savepoint directory (on the nodes).
    #[arg(long, requires = "checkpoint_interval")]
    pub from_savepoint: Option<PathBuf>,
    /// Abort a checkpoint that is not complete after this long [default: 60s].
    #[arg(long, value_parser = parse_interval, requires = "checkpoint_interval")]
    pub checkpoint_timeout: Option<Duration>,
    /// Completed checkpoints to keep on the node's disk [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), requires = "checkpoint_interval")]
    pub checkpoints_retained: Option<u32>,
    /// Incremental checkpoints: up to this many checkpoints in a row write only what changed,
    /// then one writes the whole state again; 0 writes the whole state every time [default: 10].
    #[arg(long, requires = "checkpoint_interval")]
    pub checkpoint_deltas: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum PipelineCmd {
    /// Check a pipeline file on the server and record it (desired state: running).
    Create {
        /// The pipeline file (YAML, or SQL when it ends in `.sql`).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        options: PipelineOpts,
    },
    /// Every pipeline with its state.
    List,
    /// One pipeline: options, desired and actual state, operators, last checkpoint.
    Get {
        /// The pipeline's name.
        name: String,
    },
    /// Ask for the pipeline to be paused.
    Pause {
        /// The pipeline's name.
        name: String,
    },
    /// Ask for a paused pipeline to run again.
    Resume {
        /// The pipeline's name.
        name: String,
    },
    /// Ask for the pipeline to stop (with a final checkpoint when it checkpoints).
    Stop {
        /// The pipeline's name.
        name: String,
    },
    /// Delete the pipeline's record.
    Delete {
        /// The pipeline's name.
        name: String,
    },
    /// Ask for the pipeline to run on N cores (rescaled through a checkpoint).
    Scale {
        /// The pipeline's name.
        name: String,
        /// Data cores.
        #[arg(long)]
        cores: u32,
    },
}

#[derive(Debug, Subcommand)]
enum CheckpointCmd {
    /// Take a checkpoint of a running pipeline now; answers once it is complete.
    Trigger {
        /// The pipeline's name.
        name: String,
    },
    /// The pipeline's completed checkpoints, oldest first.
    List {
        /// The pipeline's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SavepointCmd {
    /// Write a savepoint of a running pipeline into DIR on the node that runs it; answers
    /// once it is written.
    Create {
        /// The pipeline's name.
        name: String,
        /// The directory the savepoint goes into: absolute, on the node running the pipeline.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCmd {
    /// Write a snapshot of the cluster metadata to FILE.
    Create {
        /// Where the backup goes.
        #[arg(long)]
        out: PathBuf,
    },
    /// Disaster recovery, offline: write a node's data directory from a backup (the node
    /// must be stopped and its data directory absent or empty); see docs/operations.md.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory of the node to restore.
        #[arg(long)]
        data_dir: PathBuf,
        /// The node's id.
        #[arg(long)]
        node_id: u64,
    },
}

fn main() -> ExitCode {
    wire_control::tls::install_crypto_provider();
    let mut cli = Cli::parse();
    if cli.endpoint.is_none() {
        let from_env = std::env::var("WIRE_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty());
        cli.endpoint = Some(from_env.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let endpoint = cli.endpoint.clone().unwrap_or_default();
    match runtime.block_on(verbs::run(&cli, &endpoint)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Parses `30s`, `12h`, `90d` or `never`.
fn parse_expiry(text: &str) -> Result<Expiry, String> {
    if text == "never" {
        return Ok(Expiry(None));
    }
    parse_interval(text)
        .map(|d| Expiry(Some(d)))
        .map_err(|_| format!("`{text}` is not a duration like 30s, 12h or 90d, nor `never`"))
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
