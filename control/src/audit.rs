//! The audit log: one JSON line per AdminService call and per refused authentication, in
//! `<data-dir>/audit.log` (mode 0600, appended) and on the `wire::audit` tracing target.
//! A record names who called (token id, certificate fingerprint, node host), what (the RPC,
//! and the pipeline when the request names one), when, from where, and the outcome; never a
//! token's secret.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// The audit log's file name in the data directory.
pub const AUDIT_FILE: &str = "audit.log";

/// One call, as the audit log records it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When the call arrived, ms since the epoch.
    pub ts_ms: u64,
    /// `token:<id>`, `cert:<fingerprint>`, `node:<host>`, `joining-node:<address>` or
    /// `anonymous`.
    pub who: String,
    /// The AdminService method.
    pub rpc: String,
    /// The pipeline the request names, if it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// The ingest source an `IngestHello` asks to write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The caller's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `Ok`, or the gRPC code of the answer (`Unauthenticated`, `PermissionDenied`,
    /// `NotFound`, ...).
    pub outcome: String,
    /// Why an authentication failed (for the operator; the caller is not told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl AuditRecord {
    /// A record of a call to `rpc` from `peer`, arriving now.
    pub fn new(rpc: &str, pipeline: Option<String>, peer: Option<SocketAddr>) -> AuditRecord {
        AuditRecord {
            ts_ms: crate::auth::now_ms(),
            who: "anonymous".into(),
            rpc: rpc.to_string(),
            pipeline,
            source: None,
            peer: peer.map(|p| p.to_string()),
            outcome: String::new(),
            reason: None,
        }
    }
}

/// Where audit records go.
pub struct Audit {
    file: Option<Mutex<std::fs::File>>,
}

impl Audit {
    /// Appends to `<data_dir>/audit.log`, created with mode 0600.
    pub fn open(data_dir: &Path) -> Result<Audit, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(AUDIT_FILE);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|err| format!("audit log {}: {err}", path.display()))?;
        Ok(Audit {
            file: Some(Mutex::new(file)),
        })
    }

    /// Records to the tracing target only.
    pub fn tracing_only() -> Audit {
        Audit { file: None }
    }

    /// Writes `record` (a failure to write is logged, and the call still proceeds).
    pub fn write(&self, record: &AuditRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        tracing::info!(target: "wire::audit", "{line}");
        let Some(file) = &self.file else {
            return;
        };
        line.push('\n');
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(err) = file.write_all(line.as_bytes()) {
            tracing::error!(%err, "cannot append to the audit log");
        }
    }
}
