//! Producer authentication on ingest: with security on, the node that runs a pipeline gives
//! its ingest sources an [`IngestAuth`], and every Hello must carry a bearer token that it
//! accepts (a `producer` token scoped to the pipeline and source, or an `admin` token) before
//! the session is greeted, so no batch of a refused producer is ever appended.
//! Plain `wire run` has none: every producer is accepted, as before.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use wire_net::ingest::{ErrorCode, ErrorFrame, Hello, TOKEN_VERSION};

/// How long a Hello waits for its token to be checked before it is refused as `Overloaded`
/// (retryable): the check reads the node's metadata, which a busy node may answer late.
pub const AUTH_WAIT: Duration = Duration::from_secs(5);
/// How often an accepted session's token is checked again: a revoked or expired token stops
/// its connections within this time (plus the time the node takes to apply a revocation).
pub const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// What a producer asks for: its token, and the pipeline and source it wants to write.
/// Before protocol version 3 a Hello has no token: it is checked with an empty one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestAuthRequest {
    /// The Hello's bearer token (`wire_<id>_<secret>`), empty for none; never logged.
    pub token: String,
    /// The pipeline the source belongs to.
    pub pipeline: String,
    /// The source the port serves.
    pub source: String,
    /// The producer's address, for the audit log.
    pub peer: Option<SocketAddr>,
    /// Whether this is a session's periodic check of a token accepted at its Hello (audited
    /// only when it fails).
    pub recheck: bool,
}

impl IngestAuthRequest {
    fn new(
        token: &str,
        pipeline: &str,
        source: &str,
        peer: Option<SocketAddr>,
        recheck: bool,
    ) -> IngestAuthRequest {
        IngestAuthRequest {
            token: token.to_string(),
            pipeline: pipeline.to_string(),
            source: source.to_string(),
            peer,
            recheck,
        }
    }
}

/// Why a producer is refused: [`ErrorCode::Unauthenticated`] (no valid token),
/// [`ErrorCode::PermissionDenied`] (a valid token that may not write here) or a retryable
/// code when the node cannot check now. The message must not say which check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRefusal {
    /// The Error frame's code.
    pub code: ErrorCode,
    /// What the producer is told.
    pub message: String,
}

/// The future an [`IngestAuth`] answers with; it may be polled on any runtime.
pub type AuthFuture = Pin<Box<dyn Future<Output = Result<(), IngestRefusal>> + Send>>;

/// Decides whether a producer may write to a source (implemented by the node, which knows the
/// tokens; see `wire_control::auth`).
pub trait IngestAuth: Send + Sync + std::fmt::Debug {
    /// Checks `request`; the future must not depend on the glommio executor it is polled on.
    fn check(&self, request: IngestAuthRequest) -> AuthFuture;
}

/// Checks `hello` against `auth`, waiting at most [`AUTH_WAIT`]: `Ok` when the producer may
/// write to `source` of `pipeline`, else the Error frame to refuse it with.
pub(super) async fn authenticate(
    auth: &dyn IngestAuth,
    hello: &Hello,
    pipeline: &str,
    source: &str,
    peer: Option<SocketAddr>,
) -> Result<(), ErrorFrame> {
    // A Hello without a token is checked too (and refused), so that the node audits it.
    let request = IngestAuthRequest::new(&hello.token, pipeline, source, peer, false);
    let checked = futures_lite::future::or(async { Some(auth.check(request).await) }, async {
        glommio::timer::sleep(AUTH_WAIT).await;
        None
    });
    match checked.await {
        Some(Ok(())) => Ok(()),
        Some(Err(refusal))
            if refusal.code == ErrorCode::Unauthenticated && hello.token.is_empty() =>
        {
            let message = format!(
                "this node requires a producer token: send one in the hello (ingest protocol version {TOKEN_VERSION}, wire-loadgen --token)"
            );
            Err(ErrorFrame::new(ErrorCode::Unauthenticated, 0, message))
        }
        Some(Err(refusal)) => Err(ErrorFrame::new(refusal.code, 0, refusal.message)),
        None => Err(ErrorFrame::new(
            ErrorCode::Overloaded,
            0,
            format!(
                "the node could not check the token within {} s; retry",
                AUTH_WAIT.as_secs()
            ),
        )),
    }
}

/// Checks a session's `token` again, waiting at most [`AUTH_WAIT`]: the Error frame that ends
/// the session when the token may no longer write to `source` of `pipeline`. A node that
/// cannot answer now (busy metadata) does not end it: the next check will tell.
pub(super) async fn recheck(
    auth: &dyn IngestAuth,
    token: &str,
    pipeline: &str,
    source: &str,
    peer: Option<SocketAddr>,
) -> Result<(), ErrorFrame> {
    let request = IngestAuthRequest::new(token, pipeline, source, peer, true);
    let checked = futures_lite::future::or(async { Some(auth.check(request).await) }, async {
        glommio::timer::sleep(AUTH_WAIT).await;
        None
    });
    match checked.await {
        Some(Err(refusal))
            if matches!(
                refusal.code,
                ErrorCode::Unauthenticated | ErrorCode::PermissionDenied
            ) =>
        {
            let message = format!(
                "{}: the producer token is no longer valid here (revoked, expired or out of scope); this connection is closed, the batches acked before stay",
                refusal.message
            );
            Err(ErrorFrame::new(refusal.code, 0, message))
        }
        _ => Ok(()),
    }
}
