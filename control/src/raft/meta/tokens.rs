//! Bearer tokens in the metadata (version 3 of the encoding): each token's id, role, expiry and
//! the SHA-256 of its secret. The secret itself is never stored (see `crate::auth`).
//! A producer token may be scoped to a pipeline (and a source of it): its role byte is then
//! 4 (a scoped producer) and the scope follows the expiry; older encodings never carry a 4,
//! so they decode unchanged, and a member that predates scopes refuses such a record rather
//! than widen it.

use super::super::codec::{Reader, Writer};
use super::super::MetaError;

/// What a token or client certificate may do (see `crate::auth::RPC_ROLES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessRole {
    /// Everything.
    Admin,
    /// Pipelines, checkpoints and savepoints; not tokens or nodes.
    Operator,
    /// Read-only calls.
    Viewer,
    /// Ingest only (no admin call).
    Producer,
}

impl AccessRole {
    /// Every role.
    pub const ALL: [AccessRole; 4] = [
        AccessRole::Admin,
        AccessRole::Operator,
        AccessRole::Viewer,
        AccessRole::Producer,
    ];

    /// The role's name (`admin`, `operator`, `viewer`, `producer`).
    pub fn name(self) -> &'static str {
        match self {
            AccessRole::Admin => "admin",
            AccessRole::Operator => "operator",
            AccessRole::Viewer => "viewer",
            AccessRole::Producer => "producer",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<AccessRole> {
        AccessRole::ALL.into_iter().find(|role| role.name() == name)
    }

    fn tag(self) -> u8 {
        match self {
            AccessRole::Admin => 0,
            AccessRole::Operator => 1,
            AccessRole::Viewer => 2,
            AccessRole::Producer => 3,
        }
    }
}

/// One bearer token as the metadata records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// What it may do.
    pub role: AccessRole,
    /// SHA-256 of the token's secret.
    pub hash: [u8; 32],
    /// When it was created (ms since the epoch, the creating node's clock).
    pub created_at_ms: u64,
    /// When it stops working (ms since the epoch); `None`: never.
    pub expires_at_ms: Option<u64>,
    /// Producer tokens only: the pipeline (and source) it may write to; `None`: every one.
    pub scope: Option<TokenScope>,
}

/// Where a producer token may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    /// The pipeline.
    pub pipeline: String,
    /// One source of it; `None`: each of its ingest sources.
    pub source: Option<String>,
}

impl TokenScope {
    /// Whether the scope covers `source` of `pipeline`.
    pub fn covers(&self, pipeline: &str, source: &str) -> bool {
        self.pipeline == pipeline && self.source.as_deref().is_none_or(|s| s == source)
    }
}

/// The role byte of a producer token that carries a scope.
const SCOPED_PRODUCER_TAG: u8 = 4;

/// Writes token `id` and its record.
pub(super) fn encode_token(w: &mut Writer, id: &str, token: &TokenRecord) {
    w.str(id);
    let scope = token
        .scope
        .as_ref()
        .filter(|_| token.role == AccessRole::Producer);
    w.u8(scope.map_or(token.role.tag(), |_| SCOPED_PRODUCER_TAG));
    w.bytes(&token.hash);
    w.u64(token.created_at_ms);
    w.opt_u64(token.expires_at_ms);
    if let Some(scope) = scope {
        w.str(&scope.pipeline);
        w.opt_str(scope.source.as_deref());
    }
}

/// Reads what [`encode_token`] wrote.
pub(super) fn decode_token(r: &mut Reader<'_>) -> Result<(String, TokenRecord), MetaError> {
    let id = r.string("token id")?;
    let tag = r.u8("role")?;
    let role = match tag {
        0 => AccessRole::Admin,
        1 => AccessRole::Operator,
        2 => AccessRole::Viewer,
        3 | SCOPED_PRODUCER_TAG => AccessRole::Producer,
        _ => return Err(r.error("role", "unknown role")),
    };
    let hash = <[u8; 32]>::try_from(r.bytes("token hash")?)
        .map_err(|_| r.error("token hash", "not 32 bytes"))?;
    let mut token = TokenRecord {
        role,
        hash,
        created_at_ms: r.u64("created_at_ms")?,
        expires_at_ms: r.opt_u64("expires_at_ms")?,
        scope: None,
    };
    if tag == SCOPED_PRODUCER_TAG {
        token.scope = Some(TokenScope {
            pipeline: r.string("scope pipeline")?,
            source: r.opt_string("scope source")?,
        });
    }
    Ok((id, token))
}
