//! `wire start`: a long-lived cluster node (see `wire_control::node`).

use std::path::PathBuf;
use std::process::ExitCode;

use wire_control::node::config::NodeFile;

/// `wire start` flags; each may also be a key of the `--config` file (flags win).
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// A TOML file with the same keys as these flags (`node-id = 1`, `listen = "…"`, …).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id (1 or more; unique in the cluster).
    #[arg(long)]
    node_id: Option<u64>,
    /// HOST:PORT of the gRPC server (AdminService and RaftService) [default: 127.0.0.1:7400].
    #[arg(long)]
    listen: Option<String>,
    /// Directory for the raft log and snapshots.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Data cores for the pipelines this node runs (one executor each) [default: every CPU].
    #[arg(long)]
    cores: Option<usize>,
    /// Do not pin the data cores to CPUs (for several nodes on one machine, as in tests).
    #[arg(long)]
    no_pin: bool,
    /// Founding members, the same list on each: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`
    /// (ignored when the data directory already holds this node's state).
    #[arg(long, conflicts_with = "join")]
    initial_cluster: Option<String>,
    /// Ask the member at HOST:PORT to add this node, then run (ignored on a restart).
    #[arg(long)]
    join: Option<String>,
    /// The node's certificate chain (PEM): serve gRPC over TLS, and dial members with it.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): members' and admin clients' certificates must chain to it.
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Admin clients (wirectl) must present a certificate signed by --tls-client-ca.
    #[arg(long)]
    tls_require_client_cert: bool,
    /// Serve without TLS on an address that is not loopback (a network you trust).
    #[arg(long)]
    insecure: bool,
    /// Serve Prometheus metrics (`/metrics`), `/healthz`, `/readyz` and the
    /// web dashboard (`/`) on HOST:PORT (`--http-addr` is the same).
    #[arg(long, value_name = "HOST:PORT", visible_alias = "http-addr")]
    metrics_addr: Option<String>,
    /// Where pipelines' checkpoints go, each under `<pipeline>-<incarnation>/`:
    /// `file:///DIR` (or a path; a shared mount for a cluster) or `s3://BUCKET/PREFIX`
    /// (endpoint and credentials from the AWS_* environment) [default: the node's data dir].
    #[arg(long, value_name = "URL")]
    checkpoint_store: Option<String>,
    /// AdminService calls a second allowed per connection and per token or certificate
    /// (0: no limit) [default: 100].
    #[arg(long, value_name = "N")]
    admin_rate_limit: Option<u32>,
    /// AdminService calls each connection and token may make at once [default: 200].
    #[arg(long, value_name = "N")]
    admin_rate_burst: Option<u32>,
    /// Added to the port of every `ingest` source this node serves, so that several nodes
    /// on one machine can serve the same pipeline (its `listen` port 9000: node 2 with
    /// offset 10 listens on 9010) [default: 0].
    #[arg(long, value_name = "N")]
    ingest_port_offset: Option<u16>,
}

/// Runs the node until SIGTERM or SIGINT; exit 0 after a clean stop, 1 when the node failed,
/// 2 for bad settings.
pub fn start(args: StartArgs) -> ExitCode {
    let config = match settings(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let id = config.node_id;
    let serving = move |addr: &str| println!("node {id} serving on {addr}");
    let note = |note: &str| eprintln!("note: {note}");
    match wire_control::node::run(config, serving, note) {
        Ok(()) => {
            eprintln!("node {id} stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: node {id}: {err}");
            ExitCode::from(1)
        }
    }
}

fn settings(args: StartArgs) -> Result<wire_control::node::config::NodeConfig, String> {
    let flags = NodeFile {
        node_id: args.node_id,
        listen: args.listen,
        data_dir: args.data_dir,
        cores: args.cores,
        pin: args.no_pin.then_some(false),
        initial_cluster: args.initial_cluster,
        join: args.join,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_client_ca: args.tls_client_ca,
        tls_require_client_cert: args.tls_require_client_cert.then_some(true),
        insecure: args.insecure.then_some(true),
        metrics_addr: args.metrics_addr,
        checkpoint_store: args.checkpoint_store,
        admin_rate_limit: args.admin_rate_limit,
        admin_rate_burst: args.admin_rate_burst,
        ingest_port_offset: args.ingest_port_offset,
    };
    let merged = match &args.config {
        Some(path) => flags.or(NodeFile::read(path)?),
        None => flags,
    };
    merged.resolve()
}
