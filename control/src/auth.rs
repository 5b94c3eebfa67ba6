//! Who may call what on the AdminService: bearer tokens, client certificates that carry a
//! role, the one table of RPCs and the roles allowed to call them ([`RPC_ROLES`]), and the
//! layer ([`Guarded`]) that enforces it before any handler runs and writes the audit log.
//!
//! Authentication is on exactly when the node serves TLS (plaintext serves loopback only, or a
//! network trusted entirely with `--insecure`). Then a call needs, in this order:
//! - a bearer token (`authorization: Bearer wire_<id>_<secret>`): its id must be in the
//!   metadata, the SHA-256 of its secret must equal the recorded hash (compared in constant
//!   time) and it must not have expired; a token that fails refuses the call (no fallback);
//! - or a client certificate (checked against the cluster CA by the handshake) that names the
//!   host of a member (a node: every call, so forwarded requests work), or carries a role as
//!   the DNS name `<role>.role.wire.invalid` among its subject alternative names;
//! - or, for `AddNode` only, a node certificate naming the host of the address in the
//!   `x-wire-join` header (a node joining asks to be added with its own address).
//!
//! Anything else is UNAUTHENTICATED; a role not in the RPC's row is PERMISSION_DENIED.

mod guard;
mod http;
mod ingest;
mod limit;
mod token;

use rustls_pki_types::{CertificateDer, ServerName};

pub use crate::raft::AccessRole;
pub use guard::{Guard, Guarded};
pub use http::{http_access, HttpRefusal, HTTP_ROLES};
pub use ingest::{ingest_allowed, IngestTokens, INGEST_HELLO};
pub use limit::{AdminLimits, RateLimiter};
pub use token::{
    found_admin_token, generate, hash_secret, now_ms, parse, NewToken, ADMIN_TOKEN_FILE,
};

use AccessRole::{Admin, Operator, Viewer};

/// The header a joining node sends with its `AddNode` call: its own address.
pub const JOIN_HEADER: &str = "x-wire-join";

/// Every AdminService RPC and the roles that may call it (a node may call every one). An RPC
/// not listed is refused to every role.
pub const RPC_ROLES: &[(&str, &[AccessRole])] = &[
    ("ClusterStatus", &[Admin, Operator, Viewer]),
    ("AddNode", &[Admin]),
    ("RemoveNode", &[Admin]),
    ("CreatePipeline", &[Admin, Operator]),
    ("ListPipelines", &[Admin, Operator, Viewer]),
    ("GetPipeline", &[Admin, Operator, Viewer]),
    ("PausePipeline", &[Admin, Operator]),
    ("ResumePipeline", &[Admin, Operator]),
    ("StopPipeline", &[Admin, Operator]),
    ("DeletePipeline", &[Admin, Operator]),
    ("ScalePipeline", &[Admin, Operator]),
    ("TriggerCheckpoint", &[Admin, Operator]),
    ("ListCheckpoints", &[Admin, Operator, Viewer]),
    ("CreateSavepoint", &[Admin, Operator]),
    // A backup holds every pipeline and the token hashes.
    ("CreateBackup", &[Admin]),
    ("Compact", &[Admin]),
    ("CreateToken", &[Admin]),
    ("ListTokens", &[Admin]),
    ("RevokeToken", &[Admin]),
];

/// Whether `role` may call `rpc`.
pub fn allowed(rpc: &str, role: AccessRole) -> bool {
    RPC_ROLES
        .iter()
        .any(|(name, roles)| *name == rpc && roles.contains(&role))
}

/// Who made a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Authentication is off (no TLS): everyone may do everything.
    Anonymous,
    /// A member, by its certificate.
    Node {
        /// The member's host its certificate names.
        host: String,
    },
    /// A node asking to be added at `address` (may call `AddNode` for that address only).
    Joining {
        /// The address its certificate names and it asks to be added at.
        address: String,
    },
    /// A bearer token.
    Token {
        /// The token's id.
        id: String,
        /// Its role.
        role: AccessRole,
    },
    /// A client certificate carrying a role.
    Cert {
        /// The first 8 bytes of the certificate's SHA-256, in hex.
        fingerprint: String,
        /// Its role.
        role: AccessRole,
    },
}

impl Identity {
    /// Whether this caller may call `rpc`.
    pub fn may_call(&self, rpc: &str) -> bool {
        match self {
            Identity::Anonymous | Identity::Node { .. } => true,
            Identity::Joining { .. } => rpc == "AddNode",
            Identity::Token { role, .. } | Identity::Cert { role, .. } => allowed(rpc, *role),
        }
    }

    /// How the audit log names the caller (never a secret).
    pub fn who(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Node { host } => format!("node:{host}"),
            Identity::Joining { address } => format!("joining-node:{address}"),
            Identity::Token { id, .. } => format!("token:{id}"),
            Identity::Cert { fingerprint, .. } => format!("cert:{fingerprint}"),
        }
    }

    /// The role, for callers that have one.
    pub fn role(&self) -> Option<AccessRole> {
        match self {
            Identity::Token { role, .. } | Identity::Cert { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// The DNS name that gives a client certificate `role`.
pub fn role_name(role: AccessRole) -> String {
    format!("{}.role.wire.invalid", role.name())
}

/// The role `cert` carries, if any (the first in [`AccessRole::ALL`] order: admin first).
pub fn cert_role(cert: &CertificateDer<'_>) -> Option<AccessRole> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    AccessRole::ALL.into_iter().find(|role| {
        ServerName::try_from(role_name(*role))
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    })
}

#[cfg(test)]
mod tests;
