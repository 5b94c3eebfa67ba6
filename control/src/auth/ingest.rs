//! Producer authentication on ingest ([`wire_actors::IngestAuth`]): a Hello's bearer token is
//! checked against the metadata like an admin call's (known id, matching hash, not expired),
//! then its role: `admin` may write everywhere, `producer` within its scope (every pipeline
//! when it has none), any other role nowhere. Every Hello checked is audited as `IngestHello`.

use std::net::SocketAddr;
use std::sync::Arc;

use wire_actors::{AuthFuture, IngestAuth, IngestAuthRequest, IngestRefusal};
use wire_net::ingest::ErrorCode;

use super::guard::{verify_token, Refusal};
use super::Identity;
use crate::audit::{Audit, AuditRecord};
use crate::raft::{AccessRole, MetaHandle, MetaState};

/// What the audit log calls an ingest Hello.
pub const INGEST_HELLO: &str = "IngestHello";
/// What the audit log calls a session's periodic token check that failed (checks that pass
/// are not recorded: one a second per connection).
pub const INGEST_RECHECK: &str = "IngestRecheck";

/// Checks ingest tokens against this node's metadata (its applied state: a token just created
/// or revoked takes effect here as the node applies it, as for admin calls).
pub struct IngestTokens {
    meta: MetaHandle,
    runtime: tokio::runtime::Handle,
    audit: Arc<Audit>,
}

impl std::fmt::Debug for IngestTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestTokens").finish_non_exhaustive()
    }
}

impl IngestTokens {
    /// Checks on `runtime` (the node's tokio runtime, where the metadata actor answers).
    pub fn new(meta: MetaHandle, runtime: tokio::runtime::Handle, audit: Audit) -> IngestTokens {
        IngestTokens {
            meta,
            runtime,
            audit: Arc::new(audit),
        }
    }
}

impl IngestAuth for IngestTokens {
    fn check(&self, request: IngestAuthRequest) -> AuthFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (meta, audit) = (self.meta.clone(), self.audit.clone());
        self.runtime.spawn(async move {
            let decided = match meta.read(false).await {
                Ok(state) => decide(&state, &request),
                Err(_) => Err(Refusal::Unavailable),
            };
            let _ = tx.send(answer(&audit, &request, decided));
        });
        // A tokio oneshot receiver may be awaited on any executor (the ingest core's glommio).
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(IngestRefusal {
                    code: ErrorCode::Internal,
                    message: "the node stopped while checking the token".into(),
                })
            })
        })
    }
}

/// Whether bearer `token` may ingest into `source` of `pipeline` by `state`'s tokens (the
/// decision [`IngestTokens`] makes, without the audit; fuzzed by `ingest_hello_auth`).
pub fn ingest_allowed(state: &MetaState, token: &str, pipeline: &str, source: &str) -> bool {
    let request = IngestAuthRequest {
        token: token.to_string(),
        pipeline: pipeline.to_string(),
        source: source.to_string(),
        peer: None,
        recheck: false,
    };
    decide(state, &request).is_ok()
}

/// Who `request`'s token proves and whether that caller may write its source.
fn decide(state: &MetaState, request: &IngestAuthRequest) -> Result<Identity, Refusal> {
    if request.token.is_empty() {
        return Err(Refusal::Unauthenticated {
            who: "anonymous".into(),
            reason: "no token",
        });
    }
    let identity = verify_token(state, &request.token)?;
    let Identity::Token { id, role } = &identity else {
        return Err(Refusal::Denied(identity));
    };
    let scope = state.tokens.get(id).and_then(|t| t.scope.as_ref());
    let allowed = match role {
        AccessRole::Admin => true,
        AccessRole::Producer => scope.is_none_or(|s| s.covers(&request.pipeline, &request.source)),
        AccessRole::Operator | AccessRole::Viewer => false,
    };
    if allowed {
        Ok(identity)
    } else {
        Err(Refusal::Denied(identity))
    }
}

/// Audits the decision and turns it into the producer's answer, which does not say which
/// check failed.
fn answer(
    audit: &Audit,
    request: &IngestAuthRequest,
    decided: Result<Identity, Refusal>,
) -> Result<(), IngestRefusal> {
    let peer: Option<SocketAddr> = request.peer;
    if request.recheck && decided.is_ok() {
        return Ok(());
    }
    let rpc = if request.recheck {
        INGEST_RECHECK
    } else {
        INGEST_HELLO
    };
    let mut record = AuditRecord::new(rpc, Some(request.pipeline.clone()), peer);
    record.source = Some(request.source.clone());
    let result = match decided {
        Ok(identity) => {
            record.who = identity.who();
            record.outcome = "Ok".into();
            Ok(())
        }
        Err(refusal) => {
            let refused = refusal.ingest(&request.pipeline, &request.source);
            record.refused_with(refusal, &format!("{:?}", refused.code));
            Err(refused)
        }
    };
    audit.write(&record);
    result
}

impl Refusal {
    /// The Error frame a refused producer gets.
    fn ingest(&self, pipeline: &str, source: &str) -> IngestRefusal {
        let (code, message) = match self {
            Refusal::Unauthenticated { .. } => (
                ErrorCode::Unauthenticated,
                "authentication required: give a valid producer token".to_string(),
            ),
            Refusal::Denied(identity) => (
                ErrorCode::PermissionDenied,
                format!(
                    "permission denied: this {} token may not ingest into source `{source}` of pipeline `{pipeline}`",
                    identity.role().map_or("", |role| role.name())
                ),
            ),
            Refusal::Unavailable => (
                ErrorCode::Overloaded,
                "this node cannot read its metadata now; retry".to_string(),
            ),
        };
        IngestRefusal { code, message }
    }
}
