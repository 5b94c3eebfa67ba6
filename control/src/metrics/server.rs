//! The HTTP endpoint of `--metrics-addr`: `GET /metrics`, `/healthz`, `/readyz` and the
//! dashboard (`/`, its data at `/api/dashboard`) over
//! HTTP/1.1 (hyper), on the control plane's tokio runtime, never on a data core.
//!
//! Requests are bounded: a request head over [`MAX_REQUEST_BYTES`] or [`MAX_HEADERS`] headers
//! is answered 431 and the connection closed, one that does not arrive within
//! [`HEADER_TIMEOUT`] is dropped, a malformed one gets 400, and at most [`MAX_CONNECTIONS`]
//! connections are served at once (more are closed at once). Bodies are never read.
//!
//! On a node with TLS ([`HttpSecurity`]) the endpoint serves HTTPS only, with the node's
//! certificate, and the metrics and the dashboard need a `viewer` (or stronger) token or
//! client certificate (`crate::auth::http_access`); `/healthz` and `/readyz` stay open.
//! Refusals go to the audit log, and failed authentications count against the address's
//! failure bucket of the node's rate limiter (shared with the gRPC guard): while it is empty,
//! the address gets 429 before its credentials are checked.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::dashboard;
use super::encode::{classic, Snapshot};
use super::process::Usage;
use super::Metrics;
use crate::audit::{Audit, AuditRecord};
use crate::auth::{AccessRole, HttpRefusal, RateLimiter};
use crate::raft::{ActualState, DesiredState, MetaHandle};

/// HTTPS, and authentication, for the endpoint (a node with TLS on, or `wire run` with
/// `--tls-cert`).
#[derive(Clone)]
pub struct HttpSecurity {
    /// The server configuration now (replaced on SIGHUP; each connection takes the current).
    pub tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    /// Whether the metrics and the dashboard need a role (a token, or a client certificate
    /// carrying one); `wire run` without `--tls-client-ca` serves them over HTTPS to anyone.
    pub authenticate: bool,
    /// Where refusals are recorded (a node's audit log).
    pub audit: Option<Arc<Audit>>,
    /// Counts failed authentications per address (the node's, shared with the gRPC guard).
    pub limiter: Option<Arc<RateLimiter>>,
}

impl std::fmt::Debug for HttpSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSecurity")
            .field("authenticate", &self.authenticate)
            .finish_non_exhaustive()
    }
}

/// The largest request head accepted (hyper's smallest buffer is 8 KiB).
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 32;
/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long one connection may stay open.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a scrape waits for the node's metadata group.
const META_WAIT: Duration = Duration::from_secs(2);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// A serving endpoint; dropping it stops accepting connections.
#[derive(Debug)]
pub struct MetricsServer {
    addr: std::net::SocketAddr,
    https: bool,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The URL of its metrics: `http://ADDR/metrics`, or `https://…` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/metrics", self.addr)
    }
}

/// Binds `addr` (HOST:PORT) and serves `metrics` there on the current tokio runtime (over
/// HTTPS with authentication with `security`). A port in use, or an address that is not this
/// machine's, is an error naming the address.
pub async fn serve(
    addr: &str,
    metrics: Metrics,
    security: Option<HttpSecurity>,
) -> Result<MetricsServer, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot serve metrics on {addr}: {}", lower(&err)))?;
    let bound = listener
        .local_addr()
        .map_err(|err| format!("cannot serve metrics on {addr}: {}", lower(&err)))?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let https = security.is_some();
    tokio::spawn(accept(listener, metrics, security, stopped));
    tracing::info!(addr = %bound, https, "serving /metrics, /healthz and /readyz");
    Ok(MetricsServer {
        addr: bound,
        https,
        _stop: stop,
    })
}

/// An IO error's text in lower case without the `(os error N)` suffix.
fn lower(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

async fn accept(
    listener: TcpListener,
    metrics: Metrics,
    security: Option<HttpSecurity>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %err, "metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // too many at once: closed
        };
        let metrics = metrics.clone();
        let Some(security) = &security else {
            tokio::spawn(async move {
                serve_connection(stream, metrics, None).await;
                drop(permit);
            });
            continue;
        };
        let config = security
            .tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let security = security.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let access = security.authenticate.then(|| Access {
                        cert_role: cert.and_then(crate::auth::cert_role),
                        peer,
                        audit: security.audit.clone(),
                        limiter: security.limiter.clone(),
                    });
                    serve_connection(tls, metrics, access).await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "metrics endpoint: TLS handshake failed")
                }
                Err(_) => tracing::debug!("metrics endpoint: no TLS handshake in time"),
            }
            drop(permit);
        });
    }
}

/// What a connection proved at its handshake, when authentication is on, and where its
/// refusals are counted and recorded.
#[derive(Clone)]
struct Access {
    /// The role its client certificate carries, if any.
    cert_role: Option<AccessRole>,
    /// The client's address.
    peer: std::net::SocketAddr,
    audit: Option<Arc<Audit>>,
    limiter: Option<Arc<RateLimiter>>,
}

impl Access {
    /// Writes the audit record of a refused request for `path`.
    fn record(&self, path: &str, outcome: &str, who: &str, reason: Option<&'static str>) {
        let Some(audit) = &self.audit else {
            return;
        };
        // The path comes from the client: at most 64 characters of it.
        let path: String = path.chars().take(64).collect();
        let mut record = AuditRecord::new(&format!("HTTP {path}"), None, Some(self.peer));
        record.who = who.to_string();
        record.outcome = outcome.to_string();
        record.reason = reason;
        audit.write(&record);
    }
}

/// Serves HTTP/1.1 requests on one connection (plain or TLS) until it closes or expires.
async fn serve_connection<IO>(io: IO, metrics: Metrics, access: Option<Access>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let metrics = metrics.clone();
        let access = access.clone();
        async move { Ok::<_, Infallible>(answer(&metrics, access.as_ref(), request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
}

/// `None` when the request may read `path`, else the answer refusing it (recorded in the
/// audit log; a failed authentication counts against the client's address).
async fn refuse(
    metrics: &Metrics,
    access: Option<&Access>,
    request: &Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let access = access?;
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz") {
        return None;
    }
    let limiter = access.limiter.as_deref();
    if let Some(Err(why)) = limiter.map(|l| l.check_failures(Some(access.peer))) {
        let reason = Some("too many failed authentications");
        access.record(path, "ResourceExhausted", "anonymous", reason);
        return Some(text(StatusCode::TOO_MANY_REQUESTS, format!("{why}\n")));
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or(""));
    let meta = metrics.meta().map(|(_, meta)| meta);
    let checked = tokio::time::timeout(
        META_WAIT,
        crate::auth::http_access(meta.as_ref(), authorization, access.cert_role),
    )
    .await
    .unwrap_or(Err(HttpRefusal::Unavailable));
    let refusal = checked.err()?;
    match &refusal {
        HttpRefusal::Unauthenticated { who, reason } => {
            access.record(path, "Unauthenticated", who, Some(reason));
            if let Some(limiter) = limiter {
                limiter.failed(Some(access.peer));
            }
        }
        HttpRefusal::Denied { who, .. } => access.record(path, "PermissionDenied", who, None),
        HttpRefusal::Unavailable => access.record(path, "Unavailable", "anonymous", None),
    }
    Some(refused(&refusal))
}

/// The answer to a refused request: 401 with the challenges, 403 or 503.
fn refused(refusal: &HttpRefusal) -> Response<Full<Bytes>> {
    match refusal {
        HttpRefusal::Unauthenticated { .. } => {
            let mut answer = text(
                StatusCode::UNAUTHORIZED,
                "authentication required: give a viewer, operator or admin token \
                 (authorization: Bearer TOKEN, or as the password of Basic authentication), \
                 or a client certificate carrying such a role\n"
                    .into(),
            );
            let challenges = answer.headers_mut();
            for challenge in ["Basic realm=\"wire\"", "Bearer realm=\"wire\""] {
                challenges.append(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            answer
        }
        HttpRefusal::Denied { role, .. } => text(
            StatusCode::FORBIDDEN,
            format!(
                "permission denied: role {} may not read metrics or the dashboard\n",
                role.name()
            ),
        ),
        HttpRefusal::Unavailable => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node cannot read its metadata now; retry\n".into(),
        ),
    }
}

async fn answer(
    metrics: &Metrics,
    access: Option<&Access>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    if let Some(refused) = refuse(metrics, access, &request).await {
        return refused;
    }
    match request.uri().path() {
        "/metrics" => scrape(metrics, wants_openmetrics(request.headers())).await,
        "/" | "/dashboard" => response(StatusCode::OK, HTML, dashboard::PAGE.to_string()),
        "/api/dashboard" => {
            let raft = raft_status(metrics).await;
            match dashboard::state(metrics, raft.as_ref()) {
                Ok(json) => response(StatusCode::OK, JSON, json),
                Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness(metrics).await {
            Ok(why) => text(StatusCode::OK, format!("ready: {why}\n")),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the paths are /metrics, /healthz, /readyz, / (the dashboard) and \
             /api/dashboard\n"
                .into(),
        ),
    }
}

/// Whether the client asks for OpenMetrics (Prometheus does; curl and promtool do not).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"))
}

/// On a node: its view of the metadata group, if it answers in time.
async fn raft_status(metrics: &Metrics) -> Option<crate::raft::MetaStatus> {
    let (_, meta) = metrics.meta()?;
    tokio::time::timeout(META_WAIT, meta.status())
        .await
        .ok()
        .and_then(Result::ok)
}

async fn scrape(metrics: &Metrics, openmetrics: bool) -> Response<Full<Bytes>> {
    let raft = raft_status(metrics).await;
    let snapshot = Snapshot {
        pipelines: metrics.pipelines(),
        raft,
        process: Usage::read(),
        now_ms: super::now_ms(),
    };
    match snapshot.openmetrics() {
        Ok(body) if openmetrics => response(StatusCode::OK, OPENMETRICS, body),
        Ok(body) => response(StatusCode::OK, CLASSIC, classic(&body)),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n".into(),
        ),
    }
}

/// `wire run`: ready while its pipeline runs. A node: ready once it is a voter of a raft group
/// with a leader and every pipeline placed on it runs.
async fn readiness(metrics: &Metrics) -> Result<String, String> {
    let pipelines = metrics.pipelines();
    let running = |name: &str| pipelines.iter().any(|(n, _, run)| n == name && *run);
    let Some((id, meta)) = metrics.meta() else {
        return match pipelines.iter().find(|(_, _, run)| *run) {
            Some((name, _, _)) => Ok(format!("pipeline `{name}` is running")),
            None => Err("the pipeline is not running".into()),
        };
    };
    let placed = node_joined(id, &meta).await?;
    let waiting: Vec<&String> = placed.iter().filter(|name| !running(name)).collect();
    match waiting.first() {
        None => Ok(format!(
            "node {id} joined the raft group and runs its {} pipeline(s)",
            placed.len()
        )),
        Some(name) => Err(format!(
            "pipeline `{name}` is placed on node {id} and does not run yet"
        )),
    }
}

/// Checks that node `id` is a voter of a group with a leader; the pipelines placed on it
/// that should run.
async fn node_joined(id: u64, meta: &MetaHandle) -> Result<Vec<String>, String> {
    let unavailable = || "the metadata group does not answer".to_string();
    let status = tokio::time::timeout(META_WAIT, meta.status())
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    if status.leader.is_none() {
        return Err(format!("node {id} knows no raft leader"));
    }
    if !status.members.iter().any(|m| m.id == id && m.voter) {
        return Err(format!("node {id} is not a voter of the raft group yet"));
    }
    let state = tokio::time::timeout(META_WAIT, meta.read(false))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    let placed = state
        .pipelines
        .iter()
        .filter(|(_, p)| p.assignment.iter().any(|a| a.node == id))
        .filter(|(_, p)| p.desired != DesiredState::Stopped)
        .filter(|(_, p)| !matches!(p.actual, ActualState::Finished | ActualState::Failed))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(placed)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body)
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
