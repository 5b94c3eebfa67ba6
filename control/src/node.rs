//! `wire start`: one long-lived cluster node. One process-wide tokio runtime hosts the raft
//! metadata actor, the outbound raft transport and the gRPC server (AdminService, RaftService
//! and server reflection) on `--listen`.
//!
//! A node whose data directory holds raft state resumes from it (bootstrap settings are then
//! ignored); otherwise it founds the cluster with `--initial-cluster` or asks a member to add
//! it (`--join`). SIGTERM or SIGINT stops it cleanly: the server drains, the raft actor stops,
//! the membership is unchanged, so a restart rejoins.

pub mod config;
mod incoming;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use wire_actors::{CorePool, PoolHandle, PoolOptions};

use crate::admin::AdminServer;
use crate::auth::{Guard, RateLimiter};
use crate::metrics::{server as metrics_server, Metrics};
use crate::proto::admin::admin_service_client::AdminServiceClient;
use crate::proto::admin::AddNodeRequest;
use crate::raft::{self, MetaConfig, MetaHandle};
use crate::supervisor::{self, Supervised};
use crate::tls::NodeTls;
use crate::transport::{Dialer, GrpcTransport, RaftServer};
use config::{Bootstrap, NodeConfig};

/// How often the transport's peer addresses are refreshed from the membership.
const PEER_REFRESH: Duration = Duration::from_millis(500);
/// How long `--join` may wait for the member it asks.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the node until SIGTERM or SIGINT. `serving` is called once with the listen address
/// when the node serves; `note` with remarks for the operator (ignored flags).
pub fn run(
    config: NodeConfig,
    serving: impl FnOnce(&str),
    note: impl Fn(&str),
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wire-control")
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the tokio runtime: {err}"))?;
    // The data plane: one executor per core for the node's life, sized for ingest WALs.
    let cores = config
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = CorePool::start(PoolOptions {
        cores,
        pin: config.pin,
        io_memory: wire_actors::WAL_IO_MEMORY_BYTES,
    })
    .map_err(|err| format!("cannot start the data cores: {err}"))?;
    let data = Data {
        pool: pool.handle(),
        cores,
        pin: config.pin,
    };
    let served = runtime.block_on(serve(config, data, serving, note));
    pool.shutdown();
    served
}

/// The node's data plane, as its supervisor uses it.
struct Data {
    pool: PoolHandle,
    cores: usize,
    pin: bool,
}

async fn serve(
    config: NodeConfig,
    data: Data,
    serving: impl FnOnce(&str),
    note: impl Fn(&str),
) -> Result<(), String> {
    let id = config.node_id;
    let resumed = resumes(&config, note)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let metrics = Metrics::new();
    let (tls, dialer, transport, bootstrap) = members(&config)?;
    let limiter = Arc::new(RateLimiter::new(config.admin_limits));
    let meta_config = MetaConfig::new(id, config.data_dir.clone(), bootstrap);
    let meta = raft::start(meta_config, Arc::new(transport.clone()))
        .await
        .map_err(|err| format!("cannot start the metadata group: {err}"))?;
    metrics.set_meta(id, meta.clone());
    // After the metadata group made the data directory (the audit log lives there).
    let _metrics_server = serve_metrics(&config, &metrics, tls.as_ref(), &limiter).await?;
    let refresh = tokio::spawn(refresh_peers(meta.clone(), transport.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let jobs = supervisor::LocalJobs::new(data.cores);
    let services = (id, meta.clone(), transport.clone(), jobs);
    let supervised = supervised(&config, data, &services, &dialer, metrics, tls.as_ref())?;
    let reload = tls.clone().map(|tls| tokio::spawn(reload_on_sighup(tls)));
    if tls.is_some() && !resumed && founds(&config) {
        let data_dir = config.data_dir.clone();
        tokio::spawn(admin_token(meta.clone(), dialer.clone(), data_dir));
    }
    let server = start_grpc(&config, listener, services, tls, stop_rx, limiter)?;
    let joined = match (&config.bootstrap, resumed) {
        (Bootstrap::Join(member), false) => join(id, &config.advertise, member, &transport).await,
        _ => Ok(()),
    };
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let supervisor = tokio::spawn(supervisor::run(supervised, drain_rx));
    if joined.is_ok() {
        serving(&config.listen.to_string());
        shutdown_signal().await;
        tracing::info!(node = id, "stopping: draining pipelines");
    }
    // Pipelines drain and take their final checkpoints while the node still serves.
    let _ = drain_tx.send(());
    let _ = supervisor.await;
    let _ = stop_tx.send(());
    let served = stop_serving(id, server).await;
    refresh.abort();
    if let Some(reload) = reload {
        reload.abort();
    }
    meta.stop().await;
    joined?;
    served
}

/// With `--metrics-addr`: the metrics endpoint, over HTTPS with authentication when the node
/// has TLS (refusals audited, failed authentications counted by `limiter`).
async fn serve_metrics(
    config: &NodeConfig,
    metrics: &Metrics,
    tls: Option<&NodeTls>,
    limiter: &Arc<RateLimiter>,
) -> Result<Option<metrics_server::MetricsServer>, String> {
    let Some(addr) = &config.metrics_addr else {
        return Ok(None);
    };
    let security = match tls {
        Some(tls) => Some(metrics_server::HttpSecurity {
            tls: tls.http.clone(),
            authenticate: true,
            audit: Some(Arc::new(crate::audit::Audit::open(&config.data_dir)?)),
            limiter: Some(limiter.clone()),
        }),
        None => None,
    };
    Ok(Some(
        metrics_server::serve(addr, metrics.clone(), security).await?,
    ))
}

/// What the node's pipeline supervisor works with (its exchange hub bound, with mutual TLS
/// when the node has TLS).
fn supervised(
    config: &NodeConfig,
    data: Data,
    (_, meta, transport, jobs): &(u64, MetaHandle, GrpcTransport, supervisor::LocalJobs),
    dialer: &Dialer,
    metrics: Metrics,
    tls: Option<&NodeTls>,
) -> Result<Supervised, String> {
    let exchange_tls = match tls {
        Some(tls) => Some(tls.exchange(member_check(transport))?),
        None => None,
    };
    Ok(Supervised {
        node: config.node_id,
        meta: meta.clone(),
        dialer: dialer.clone(),
        pool: data.pool,
        cores: data.cores,
        pin: data.pin,
        data_dir: config.data_dir.clone(),
        checkpoint_store: config.checkpoint_store.clone(),
        metrics,
        jobs: jobs.clone(),
        hub: crate::spread::bind_hub(config.listen, exchange_tls)?,
        done: Arc::default(),
        ingest_auth: ingest_auth(config, tls.is_some(), meta)?,
        ingest_tls: tls.map(|t| t.ingest.clone()),
        ingest_port_offset: config.ingest_port_offset,
        launched: Arc::default(),
    })
}

/// Starts serving gRPC behind the authorization guard (the audit log, and `limiter`'s rate
/// limits).
fn start_grpc(
    config: &NodeConfig,
    listener: TcpListener,
    services: (u64, MetaHandle, GrpcTransport, supervisor::LocalJobs),
    tls: Option<NodeTls>,
    stop: tokio::sync::oneshot::Receiver<()>,
    limiter: Arc<RateLimiter>,
) -> Result<tokio::task::JoinHandle<Result<(), String>>, String> {
    let audit = crate::audit::Audit::open(&config.data_dir)?;
    let (_, meta, transport, _) = &services;
    let guard =
        Guard::new(tls.is_some(), meta.clone(), transport.clone(), audit).with_limiter(limiter);
    Ok(tokio::spawn(grpc(listener, services, guard, tls, stop)))
}

/// Whether the data directory holds raft state to resume from (bootstrap flags are then
/// ignored, which `note` tells the operator).
fn resumes(config: &NodeConfig, note: impl Fn(&str)) -> Result<bool, String> {
    let resumed = raft::actor::has_state(&config.data_dir)
        .map_err(|err| format!("data directory {}: {err}", config.data_dir.display()))?;
    if resumed && config.bootstrap_given {
        note(&format!(
            "{} holds node {}'s raft state: resuming from it (--initial-cluster and --join \
             are ignored)",
            config.data_dir.display(),
            config.node_id
        ));
    }
    Ok(resumed)
}

/// With security on (TLS), who may produce to the node's ingest sources: holders of a
/// `producer` token in scope, or of an `admin` token. Without TLS, everyone (as before).
fn ingest_auth(
    config: &NodeConfig,
    secure: bool,
    meta: &MetaHandle,
) -> Result<Option<Arc<dyn wire_actors::IngestAuth>>, String> {
    if !secure {
        return Ok(None);
    }
    let audit = crate::audit::Audit::open(&config.data_dir)?;
    let runtime = tokio::runtime::Handle::current();
    let tokens = crate::auth::IngestTokens::new(meta.clone(), runtime, audit);
    Ok(Some(Arc::new(tokens)))
}

/// Whether this node is the founding member that writes the first admin token: the lowest id
/// of `--initial-cluster`.
fn founds(config: &NodeConfig) -> bool {
    match &config.bootstrap {
        Bootstrap::Initial(members) => members.keys().next() == Some(&config.node_id),
        Bootstrap::Join(_) => false,
    }
}

/// Records the founding admin token and writes it to the data directory (see
/// [`crate::auth::found_admin_token`]).
async fn admin_token(meta: MetaHandle, dialer: Dialer, data_dir: std::path::PathBuf) {
    if let Err(err) = crate::auth::found_admin_token(&meta, &dialer, &data_dir).await {
        tracing::error!(%err, "no founding admin token");
    }
}

/// Whether a certificate names the host of a member, as the transport knows them (the
/// founding members, then the metadata's, kept up to date by `refresh_peers`).
fn member_check(transport: &GrpcTransport) -> wire_actors::exchange::MemberCheck {
    let transport = transport.clone();
    Arc::new(move |cert| {
        transport
            .peers()
            .into_values()
            .any(|address| crate::tls::cert_names(cert, &address))
    })
}

/// This node's TLS, how it dials other members, its raft transport (knowing the founding
/// members' addresses) and how its raft group starts.
fn members(
    config: &NodeConfig,
) -> Result<(Option<NodeTls>, Dialer, GrpcTransport, raft::Bootstrap), String> {
    let tls = match &config.tls {
        Some(files) => Some(NodeTls::load(files)?),
        None => None,
    };
    let dialer = Dialer::new(config.listen, tls.as_ref().map(|t| t.client.clone()));
    let transport = GrpcTransport::new(
        config.node_id,
        &config.advertise,
        dialer.clone(),
        tokio::runtime::Handle::current(),
    );
    let bootstrap = match &config.bootstrap {
        Bootstrap::Initial(members) => {
            transport.set_peers(&members.clone().into_iter().collect());
            raft::Bootstrap::InitialCluster(members.clone().into_iter().collect())
        }
        Bootstrap::Join(_) => raft::Bootstrap::Join,
    };
    Ok((tls, dialer, transport, bootstrap))
}

/// Waits for the gRPC server to finish the requests in flight. One waiting on a leader that
/// is gone would hold the stop for its whole timeout, so the wait is bounded.
async fn stop_serving(
    id: u64,
    server: tokio::task::JoinHandle<Result<(), String>>,
) -> Result<(), String> {
    match tokio::time::timeout(SERVER_STOP_WAIT, server).await {
        Ok(Ok(result)) => result,
        Ok(Err(err)) => Err(format!("the gRPC server task failed: {err}")),
        Err(_) => {
            tracing::info!(node = id, "requests still in flight at the stop; dropped");
            Ok(())
        }
    }
}

/// How long a stopping node waits for the gRPC requests in flight.
const SERVER_STOP_WAIT: Duration = Duration::from_secs(2);

/// Serves AdminService, RaftService and reflection on `listener` until `stop` fires.
async fn grpc(
    listener: TcpListener,
    (id, meta, transport, jobs): (u64, MetaHandle, GrpcTransport, supervisor::LocalJobs),
    guard: Guard,
    tls: Option<NodeTls>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    // Both reflection versions: grpcurl asks v1 first, older clients only know v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|err| format!("server reflection: {err}"))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|err| format!("server reflection: {err}"))?;
    let admin = guard.wrap(AdminServer::service(
        id,
        meta.clone(),
        transport.clone(),
        jobs,
    ));
    let router = Server::builder()
        .trace_fn(move |request| admin_span(id, request))
        .add_service(admin)
        .add_service(RaftServer::service(id, meta, transport))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let shutdown = async {
        let _ = stop.await;
    };
    let served = match tls {
        // TLS by our own acceptor: its configuration can be replaced while serving.
        Some(tls) => {
            let incoming = incoming::tls_incoming(listener, tls);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    served.map_err(|err| format!("the gRPC server failed: {err}"))
}

/// The span of one gRPC call: `admin` for AdminService calls (method, node; the call's own
/// events nest in it); none for the raft messages between nodes, which come many a second.
fn admin_span(node: u64, request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    match path.strip_prefix("/wire.admin.v1.AdminService/") {
        Some(method) => tracing::info_span!(
            "admin",
            method,
            node,
            rpc.service = "wire.admin.v1.AdminService"
        ),
        None => tracing::Span::none(),
    }
}

/// Keeps the transport's peer addresses equal to the registered nodes'.
async fn refresh_peers(meta: MetaHandle, transport: GrpcTransport) {
    let mut tick = tokio::time::interval(PEER_REFRESH);
    loop {
        tick.tick().await;
        let Ok(state) = meta.read(false).await else {
            continue;
        };
        // A node that joined knows no registrations until it has the state: keep what it
        // learned from inbound batches meanwhile.
        if state.nodes.is_empty() {
            continue;
        }
        let peers: HashMap<u64, String> = state
            .nodes
            .iter()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        if peers != transport.peers() {
            transport.set_peers(&peers);
        }
    }
}

/// Asks the member at `member` to add this node (it forwards to the leader).
async fn join(
    id: u64,
    advertise: &str,
    member: &str,
    transport: &GrpcTransport,
) -> Result<(), String> {
    let fail = |why: String| format!("cannot join the cluster via {member}: {why}");
    let endpoint = transport
        .dialer()
        .endpoint(member, Duration::from_secs(3), JOIN_TIMEOUT)
        .map_err(fail)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| fail(root_cause(&err)))?;
    let request = AddNodeRequest {
        id,
        address: advertise.to_string(),
    };
    let mut request = tonic::Request::new(request);
    if let Ok(value) = advertise.parse() {
        request
            .metadata_mut()
            .insert(crate::auth::JOIN_HEADER, value);
    }
    let answer = AdminServiceClient::new(channel)
        .add_node(request)
        .await
        .map_err(|status| fail(status.message().to_string()))?;
    for m in answer.into_inner().members {
        transport.add_peer(m.id, &m.address);
    }
    tracing::info!(node = id, via = member, "joined the cluster");
    Ok(())
}

/// The innermost cause of `err`, in lower case without the `(os error N)` suffix.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Reads the TLS files again on every SIGHUP: new gRPC, ingest and member connections use
/// the new certificates, open ones keep theirs. A bad file is logged and changes nothing.
async fn reload_on_sighup(tls: NodeTls) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::error!(error = %err, "cannot install the SIGHUP handler; TLS files are not reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key files reloaded"),
            Err(err) => {
                tracing::error!(%err, "SIGHUP: TLS files not reloaded, the old ones stay in use")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install SIGTERM/SIGINT handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Writes node `node_id`'s data directory from a metadata backup, offline (see
/// `wirectl backup restore`): the backup's own members, so restore the same backup into every
/// original member's empty data directory, then start them all.
pub fn restore_backup(
    data_dir: &std::path::Path,
    node_id: u64,
    backup: &[u8],
) -> Result<(), String> {
    raft::restore_backup(data_dir, node_id, backup, raft::RestoreMembers::Original).map_err(|err| {
        match err {
            raft::MetaError::UnknownNode { id } => format!(
                "node {id} is not a member in this backup; restore into the data directories of \
                 the members it names"
            ),
            other => format!("cannot restore into {}: {other}", data_dir.display()),
        }
    })
}
