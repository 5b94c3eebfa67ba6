//! Bearer tokens in the metadata (version 3 of the encoding): each token's id, role, expiry and
//! the SHA-256 of its secret. The secret itself is never stored (see `crate::auth`).

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
}

/// Writes token `id` and its record.
pub(super) fn encode_token(w: &mut Writer, id: &str, token: &TokenRecord) {
    w.str(id);
    w.u8(token.role.tag());
    w.bytes(&token.hash);
    w.u64(token.created_at_ms);
    w.opt_u64(token.expires_at_ms);
}

/// Reads what [`encode_token`] wrote.
pub(super) fn decode_token(r: &mut Reader<'_>) -> Result<(String, TokenRecord), MetaError> {
    let id = r.string("token id")?;
    let role = match r.u8("role")? {
        0 => AccessRole::Admin,
        1 => AccessRole::Operator,
        2 => AccessRole::Viewer,
        3 => AccessRole::Producer,
        _ => return Err(r.error("role", "unknown role")),
    };
    let hash = <[u8; 32]>::try_from(r.bytes("token hash")?)
        .map_err(|_| r.error("token hash", "not 32 bytes"))?;
    let token = TokenRecord {
        role,
        hash,
        created_at_ms: r.u64("created_at_ms")?,
        expires_at_ms: r.opt_u64("expires_at_ms")?,
    };
    Ok((id, token))
}
