//! The layer in front of the AdminService: names the caller, checks [`super::RPC_ROLES`], and
//! writes one audit record per call, before and after the handler.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use prost::Message as _;
use rustls_pki_types::CertificateDer;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use super::token::{hash_secret, hex, now_ms, parse, same_hash};
use super::{cert_role, Identity, JOIN_HEADER};
use crate::audit::{Audit, AuditRecord};
use crate::proto::admin::PipelineRef;
use crate::raft::{MetaHandle, MetaState};
use crate::transport::GrpcTransport;

/// RPCs whose request names a pipeline in field 1 (`PipelineRef`, `ScalePipelineRequest`,
/// `CreateSavepointRequest`): the audit record names it.
const NAMES_A_PIPELINE: [&str; 9] = [
    "GetPipeline",
    "PausePipeline",
    "ResumePipeline",
    "StopPipeline",
    "DeletePipeline",
    "ScalePipeline",
    "TriggerCheckpoint",
    "ListCheckpoints",
    "CreateSavepoint",
];

/// The largest request of an RPC in [`NAMES_A_PIPELINE`] that is read before the handler.
const NAMING_BODY_MAX: usize = 64 << 10;

/// What the layer needs: whether authentication is on, the metadata (tokens, members), the
/// transport (members' addresses it knows) and the audit log.
pub struct Guard {
    enabled: bool,
    meta: MetaHandle,
    transport: GrpcTransport,
    audit: Audit,
    limiter: Arc<super::RateLimiter>,
}

/// Why a call (or an ingest Hello) was refused.
pub(super) enum Refusal {
    /// No credentials, or bad ones: `who` as far as known, `reason` for the audit log only.
    Unauthenticated { who: String, reason: &'static str },
    /// The caller's role may not make the call.
    Denied(Identity),
    /// The metadata could not be read.
    Unavailable,
}

impl Guard {
    /// A guard; `enabled` is whether the node serves TLS.
    pub fn new(enabled: bool, meta: MetaHandle, transport: GrpcTransport, audit: Audit) -> Guard {
        Guard {
            enabled,
            meta,
            transport,
            audit,
            limiter: Arc::new(super::RateLimiter::new(super::AdminLimits::default())),
        }
    }

    /// The guard with the rate limits of `limiter` on every call (and on failed
    /// authentications; the node's HTTP endpoint shares it).
    pub fn with_limiter(mut self, limiter: Arc<super::RateLimiter>) -> Guard {
        self.limiter = limiter;
        self
    }

    /// `service` behind this guard.
    pub fn wrap<S>(self, service: S) -> Guarded<S> {
        Guarded {
            inner: service,
            guard: Arc::new(self),
        }
    }

    async fn serve<S>(
        &self,
        inner: &mut S,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, Infallible>
    where
        S: tonic::codegen::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        >,
    {
        let rpc = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                let tls = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
                tls.and_then(|info| info.get_ref().remote_addr())
            });
        let (mut request, pipeline) = match pipeline_of(&rpc, request).await {
            Ok(read) => read,
            Err(status) => {
                let mut record = AuditRecord::new(&rpc, None, peer);
                record.outcome = format!("{:?}", status.code());
                self.audit.write(&record);
                return Ok(status.into_http());
            }
        };
        let mut record = AuditRecord::new(&rpc, pipeline, peer);
        if let Err(status) = self.check_failures(&mut record, peer) {
            return Ok(status.into_http());
        }
        let credentials = Credentials::of(&request);
        match self.authorize(&rpc, &credentials).await {
            Ok(identity) => {
                record.who = identity.who();
                if let Err(why) = self.limiter.admit(&identity, peer) {
                    let status = Status::resource_exhausted(why);
                    record.outcome = format!("{:?}", status.code());
                    self.audit.write(&record);
                    return Ok(status.into_http());
                }
                request.extensions_mut().insert(identity);
            }
            Err(refusal) => {
                if matches!(refusal, Refusal::Unauthenticated { .. }) {
                    self.limiter.failed(peer);
                }
                let status = refusal.status(&rpc);
                record.refused(refusal, &status);
                self.audit.write(&record);
                return Ok(status.into_http());
            }
        }
        let response = inner.call(request).await?;
        record.outcome = outcome_of(&response);
        self.audit.write(&record);
        Ok(response)
    }

    /// Refuses (and audits) a call from an address whose failed authentications used up its
    /// bucket, before its credentials are looked at.
    fn check_failures(
        &self,
        record: &mut AuditRecord,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(), Status> {
        let why = match self.limiter.check_failures(peer) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        let status = Status::resource_exhausted(why);
        record.outcome = format!("{:?}", status.code());
        record.reason = Some("too many failed authentications");
        self.audit.write(record);
        Err(status)
    }

    async fn authorize(&self, rpc: &str, credentials: &Credentials) -> Result<Identity, Refusal> {
        if !self.enabled {
            return Ok(Identity::Anonymous);
        }
        let state = self
            .meta
            .read(false)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        let identity = self.identify(&state, credentials)?;
        if identity.may_call(rpc) {
            Ok(identity)
        } else {
            Err(Refusal::Denied(identity))
        }
    }

    fn identify(&self, state: &MetaState, credentials: &Credentials) -> Result<Identity, Refusal> {
        if let Some(bearer) = &credentials.bearer {
            return token_identity(state, bearer);
        }
        let Some(cert) = &credentials.cert else {
            return Err(unauthenticated(
                "anonymous",
                "no token and no client certificate",
            ));
        };
        if let Some(host) = self.member_named(state, cert) {
            return Ok(Identity::Node { host });
        }
        let fingerprint = hex(&hash_secret(cert.as_ref())[..8]);
        if let Some(role) = cert_role(cert) {
            return Ok(Identity::Cert { fingerprint, role });
        }
        match credentials.joining.as_deref() {
            Some(address) if crate::tls::cert_names(cert, address) => Ok(Identity::Joining {
                address: address.to_string(),
            }),
            _ => Err(unauthenticated(
                &format!("cert:{fingerprint}"),
                "client certificate names no member and no role",
            )),
        }
    }

    /// The host of a member (registered, or known to the transport) that `cert` names.
    fn member_named(&self, state: &MetaState, cert: &CertificateDer<'_>) -> Option<String> {
        let registered = state.nodes.values().map(|node| node.addr.clone());
        let known = self.transport.peers().into_values();
        registered
            .chain(known)
            .find(|address| crate::tls::cert_names(cert, address))
            .map(|address| crate::tls::host_of(&address).to_string())
    }
}

/// What a request presents to prove who sent it.
struct Credentials {
    /// The `authorization` header's value (empty when not text).
    bearer: Option<String>,
    /// The client certificate, if the TLS handshake got one.
    cert: Option<CertificateDer<'static>>,
    /// The [`JOIN_HEADER`] header's value.
    joining: Option<String>,
}

impl Credentials {
    fn of(request: &http::Request<Body>) -> Credentials {
        let text = |value: &http::HeaderValue| value.to_str().unwrap_or("").to_string();
        let headers = request.headers();
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        Credentials {
            bearer: headers.get(http::header::AUTHORIZATION).map(text),
            cert: certs.and_then(|certs| certs.first().cloned()),
            joining: headers.get(JOIN_HEADER).map(text),
        }
    }
}

fn unauthenticated(who: &str, reason: &'static str) -> Refusal {
    Refusal::Unauthenticated {
        who: who.to_string(),
        reason,
    }
}

/// The identity `authorization: <value>` proves, or why it proves none.
fn token_identity(state: &MetaState, value: &str) -> Result<Identity, Refusal> {
    match value.strip_prefix("Bearer ").map(str::trim) {
        Some(token) => verify_token(state, token),
        None => Err(unauthenticated("anonymous", "malformed token")),
    }
}

/// The identity bearer token `token` (`wire_<id>_<secret>`) proves, or why it proves none.
pub(super) fn verify_token(state: &MetaState, token: &str) -> Result<Identity, Refusal> {
    let Some((id, secret)) = parse(token) else {
        return Err(unauthenticated("anonymous", "malformed token"));
    };
    let who = format!("token:{id}");
    let Some(record) = state.tokens.get(id) else {
        return Err(unauthenticated(&who, "unknown or revoked token"));
    };
    if !same_hash(&hash_secret(&secret), &record.hash) {
        return Err(unauthenticated(&who, "wrong token secret"));
    }
    if record.expires_at_ms.is_some_and(|at| now_ms() >= at) {
        return Err(unauthenticated(&who, "expired token"));
    }
    Ok(Identity::Token {
        id: id.to_string(),
        role: record.role,
    })
}

impl Refusal {
    /// The status the caller gets: no detail about which check failed.
    fn status(&self, rpc: &str) -> Status {
        match self {
            Refusal::Unauthenticated { .. } => Status::unauthenticated(
                "authentication required: give a valid bearer token (--token or WIRE_TOKEN) or a \
                 client certificate with a role",
            ),
            Refusal::Denied(identity) => Status::permission_denied(format!(
                "permission denied: role {} may not call {rpc}",
                identity.role().map_or("none", |role| role.name())
            )),
            Refusal::Unavailable => {
                Status::unavailable("this node cannot read its metadata now; retry")
            }
        }
    }
}

impl AuditRecord {
    fn refused(&mut self, refusal: Refusal, status: &Status) {
        self.refused_with(refusal, &format!("{:?}", status.code()));
    }

    /// Records who was refused, why (for the operator), and the answer `outcome`.
    pub(super) fn refused_with(&mut self, refusal: Refusal, outcome: &str) {
        match refusal {
            Refusal::Unauthenticated { who, reason } => {
                self.who = who;
                self.reason = Some(reason);
            }
            Refusal::Denied(identity) => self.who = identity.who(),
            Refusal::Unavailable => {}
        }
        self.outcome = outcome.to_string();
    }
}

/// The request, and the pipeline it names if its RPC names one (the body of such a unary
/// request, a name and maybe a path, is read whole, at most [`NAMING_BODY_MAX`] bytes, and put
/// back).
async fn pipeline_of(
    rpc: &str,
    request: http::Request<Body>,
) -> Result<(http::Request<Body>, Option<String>), Status> {
    if !NAMES_A_PIPELINE.contains(&rpc) {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::Limited::new(body, NAMING_BODY_MAX)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return Err(Status::invalid_argument(format!(
                "{rpc}: cannot read the request ({err}; at most {NAMING_BODY_MAX} bytes)"
            )))
        }
    };
    // A gRPC frame: 1 byte compression flag, 4 bytes length, the message.
    let name = bytes
        .get(5..)
        .filter(|_| bytes.first() == Some(&0))
        .and_then(|message| PipelineRef::decode(message).ok())
        .map(|message| message.name);
    let body = Body::new(http_body_util::Full::new(bytes));
    Ok((http::Request::from_parts(parts, body), name))
}

/// `ok`, or the gRPC code a failed unary call answered with.
fn outcome_of(response: &http::Response<Body>) -> String {
    match response.headers().get("grpc-status") {
        None => "Ok".to_string(),
        Some(code) => format!("{:?}", tonic::Code::from_bytes(code.as_bytes())),
    }
}

/// A service behind a [`Guard`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tonic::codegen::Service<http::Request<Body>> for Guarded<S>
where
    S: tonic::codegen::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let guard = self.guard.clone();
        Box::pin(async move { guard.serve(&mut inner, request).await })
    }
}
