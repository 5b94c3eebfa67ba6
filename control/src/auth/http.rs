//! Who may read a node's HTTP endpoint (`--metrics-addr`) when authentication is on: the
//! metrics and the dashboard need a `viewer`, `operator` or `admin` token, given as
//! `authorization: Bearer <token>` (Prometheus' `authorization` scrape setting) or as the
//! password of HTTP Basic authentication (what a browser asks for), or a client certificate
//! carrying one of those roles. `/healthz` and `/readyz` stay open (probes carry no tokens).

use base64::Engine;

use super::guard::{verify_token, Refusal};
use super::{AccessRole, Identity};
use crate::raft::MetaHandle;

/// The roles that may read metrics and the dashboard.
pub const HTTP_ROLES: [AccessRole; 3] =
    [AccessRole::Admin, AccessRole::Operator, AccessRole::Viewer];

/// Why an HTTP request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRefusal {
    /// No credentials, or bad ones (401): who, as far as known (`anonymous`, `token:<id>`),
    /// and why, for the audit log only.
    Unauthenticated {
        /// `anonymous` or `token:<id>`.
        who: String,
        /// Why (the audit log's `reason`).
        reason: &'static str,
    },
    /// A role that may not read it (403).
    Denied {
        /// Who asked (`token:<id>`, `cert:…`).
        who: String,
        /// Its role.
        role: AccessRole,
    },
    /// The metadata could not be read (503).
    Unavailable,
}

fn unauthenticated(who: &str, reason: &'static str) -> HttpRefusal {
    HttpRefusal::Unauthenticated {
        who: who.to_string(),
        reason,
    }
}

/// The identity an HTTP request proves with its `authorization` header, or else with the
/// role `cert_role` of its client certificate; refused unless the role is in [`HTTP_ROLES`].
pub async fn http_access(
    meta: Option<&MetaHandle>,
    authorization: Option<&str>,
    cert_role: Option<AccessRole>,
) -> Result<Identity, HttpRefusal> {
    let identity = match (authorization, cert_role) {
        (Some(value), _) => {
            let token = request_token(value)
                .ok_or_else(|| unauthenticated("anonymous", "malformed token"))?;
            // `wire run` keeps no tokens: only a client certificate with a role proves one.
            let meta = meta.ok_or_else(|| unauthenticated("anonymous", "no tokens on wire run"))?;
            let state = meta
                .read(false)
                .await
                .map_err(|_| HttpRefusal::Unavailable)?;
            verify_token(&state, &token).map_err(|refusal| match refusal {
                Refusal::Unauthenticated { who, reason } => unauthenticated(&who, reason),
                Refusal::Denied(_) | Refusal::Unavailable => HttpRefusal::Unavailable,
            })?
        }
        (None, Some(role)) => Identity::Cert {
            fingerprint: String::new(),
            role,
        },
        (None, None) => {
            return Err(unauthenticated(
                "anonymous",
                "no token and no client certificate",
            ))
        }
    };
    match identity.role() {
        Some(role) if HTTP_ROLES.contains(&role) => Ok(identity),
        Some(role) => Err(HttpRefusal::Denied {
            who: identity.who(),
            role,
        }),
        None => Err(unauthenticated(&identity.who(), "no role")),
    }
}

/// The token in `Bearer <token>` or in `Basic base64(<any user>:<token>)`.
fn request_token(value: &str) -> Option<String> {
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, token) = text.split_once(':')?;
    Some(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_as_bearer_or_as_a_basic_password() {
        assert_eq!(
            request_token("Bearer wire_a_b").as_deref(),
            Some("wire_a_b")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("me:wire_a_b");
        assert_eq!(
            request_token(&format!("Basic {basic}")).as_deref(),
            Some("wire_a_b")
        );
        assert_eq!(request_token("Basic !!!"), None);
        assert_eq!(request_token("Token wire_a_b"), None);
    }
}
