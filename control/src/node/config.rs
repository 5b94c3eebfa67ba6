//! A node's settings: `wire start` flags and the same keys in a TOML file (`--config`), with
//! flags winning over the file. An unknown key or a bad value in the file is an error naming
//! the file, line and key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use wire_storage::checkpoint::StoreUrl;

use crate::auth::AdminLimits;
use crate::tls::TlsFiles;

/// The keys of `node.toml`, each optional (a flag may give it instead).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeFile {
    /// `node-id`: this node's raft id (not 0).
    pub node_id: Option<u64>,
    /// `listen`: HOST:PORT of the gRPC server (AdminService and RaftService).
    pub listen: Option<String>,
    /// `data-dir`: where the raft log and snapshots live.
    pub data_dir: Option<PathBuf>,
    /// `cores`: data cores for pipelines (default: every CPU).
    pub cores: Option<usize>,
    /// `pin`: pin each data core to its own CPU (default: true; false when several nodes
    /// share a machine, as in tests).
    pub pin: Option<bool>,
    /// `initial-cluster`: `1=HOST:PORT,2=HOST:PORT,…`, the founding members.
    pub initial_cluster: Option<String>,
    /// `join`: HOST:PORT of a member to ask to add this node.
    pub join: Option<String>,
    /// `tls-cert`: the node's certificate chain (PEM); TLS is on when given.
    pub tls_cert: Option<PathBuf>,
    /// `tls-key`: its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// `tls-client-ca`: the cluster CA (PEM) that node and admin client certificates chain to.
    pub tls_client_ca: Option<PathBuf>,
    /// `tls-require-client-cert`: admin clients must present a certificate too.
    pub tls_require_client_cert: Option<bool>,
    /// `insecure`: serve without TLS on an address that is not loopback.
    pub insecure: Option<bool>,
    /// `metrics-addr`: HOST:PORT to serve `/metrics`, `/healthz` and `/readyz` on.
    pub metrics_addr: Option<String>,
    /// `checkpoint-store`: where pipelines' checkpoints go, each under
    /// `<pipeline>-<incarnation>/`: `file:///DIR`, a directory, or `s3://BUCKET/PREFIX`.
    pub checkpoint_store: Option<String>,
    /// `admin-rate-limit`: AdminService calls a second per connection and per token (0: no
    /// limit).
    pub admin_rate_limit: Option<u32>,
    /// `admin-rate-burst`: calls each may make at once.
    pub admin_rate_burst: Option<u32>,
    /// `ingest-port-offset`: added to the port of every `ingest` source this node serves
    /// (for several nodes on one machine; 0 on a cluster of one node per machine).
    pub ingest_port_offset: Option<u16>,
}

/// How a node with no data of its own enters a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A founding member: every founding node gets the same list (id → address).
    Initial(BTreeMap<u64, String>),
    /// Ask this member to add the node, then wait to be contacted.
    Join(String),
}

/// Checked settings of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Raft id, not 0.
    pub node_id: u64,
    /// The address the gRPC server binds.
    pub listen: SocketAddr,
    /// The address other members reach this node at (its `initial-cluster` entry, else
    /// `listen`).
    pub advertise: String,
    /// Raft log, snapshots.
    pub data_dir: PathBuf,
    /// Data cores for pipelines (the node's core pool); every CPU when `None`.
    pub cores: Option<usize>,
    /// Pin each data core to its own CPU.
    pub pin: bool,
    /// How to enter the cluster when the data directory is empty.
    pub bootstrap: Bootstrap,
    /// Whether `initial-cluster` or `join` was given (a restart ignores them, with a note).
    pub bootstrap_given: bool,
    /// TLS on the listener and between members, when configured.
    pub tls: Option<TlsFiles>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`, if anywhere.
    pub metrics_addr: Option<String>,
    /// Where pipelines' checkpoints go (default: each pipeline's directory on this node).
    pub checkpoint_store: Option<StoreUrl>,
    /// Rate limits on AdminService calls.
    pub admin_limits: AdminLimits,
    /// Added to the port of every `ingest` source this node serves (not to port 0).
    pub ingest_port_offset: u16,
}

/// The default `--listen` (and `wirectl`'s default endpoint).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

impl NodeFile {
    /// Reads `path`; errors name the file, line and key.
    pub fn read(path: &Path) -> Result<NodeFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        NodeFile::parse(&path.display().to_string(), &text)
    }

    /// Parses TOML `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<NodeFile, String> {
        toml::from_str(text).map_err(|err| toml_error(file, text, &err))
    }

    /// Fills what `self` lacks from `file` (so flags win over the file; a flag choosing
    /// `initial-cluster` or `join` overrides both of the file's).
    pub fn or(self, file: NodeFile) -> NodeFile {
        let (initial_cluster, join) = if self.initial_cluster.is_some() || self.join.is_some() {
            (self.initial_cluster, self.join)
        } else {
            (file.initial_cluster, file.join)
        };
        NodeFile {
            node_id: self.node_id.or(file.node_id),
            listen: self.listen.or(file.listen),
            data_dir: self.data_dir.or(file.data_dir),
            cores: self.cores.or(file.cores),
            pin: self.pin.or(file.pin),
            initial_cluster,
            join,
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            tls_require_client_cert: self
                .tls_require_client_cert
                .or(file.tls_require_client_cert),
            insecure: self.insecure.or(file.insecure),
            metrics_addr: self.metrics_addr.or(file.metrics_addr),
            checkpoint_store: self.checkpoint_store.or(file.checkpoint_store),
            admin_rate_limit: self.admin_rate_limit.or(file.admin_rate_limit),
            admin_rate_burst: self.admin_rate_burst.or(file.admin_rate_burst),
            ingest_port_offset: self.ingest_port_offset.or(file.ingest_port_offset),
        }
    }

    /// The TLS files, all three or none; no TLS is refused on an address that is not
    /// loopback unless `insecure` is set.
    fn tls(&self, listen: &SocketAddr) -> Result<Option<TlsFiles>, String> {
        let files = match (&self.tls_cert, &self.tls_key, &self.tls_client_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
                require_client_cert: self.tls_require_client_cert.unwrap_or(false),
            }),
            _ => {
                return Err(
                    "tls: give tls-cert, tls-key and tls-client-ca together (the \
                            node's certificate, its key, and the cluster CA)"
                        .into(),
                )
            }
        };
        if files.is_none() && self.tls_require_client_cert == Some(true) {
            return Err(
                "tls-require-client-cert needs TLS: give tls-cert, tls-key and \
                        tls-client-ca"
                    .into(),
            );
        }
        if files.is_none() && !listen.ip().is_loopback() && self.insecure != Some(true) {
            return Err(format!(
                "listen: {listen} is not a loopback address, and without TLS anyone who can \
                 reach it could run admin and raft calls; give tls-cert, tls-key and \
                 tls-client-ca (`wire certs init` makes development certificates; see \
                 docs/security.md), or --insecure on a network you trust"
            ));
        }
        Ok(files)
    }

    /// Checks the merged settings.
    pub fn resolve(self) -> Result<NodeConfig, String> {
        let node_id = match self.node_id {
            Some(0) => return Err("node-id: 0 is not a node id (use 1 or more)".into()),
            // The node id is the high bits of the producer ids the node issues.
            Some(id) if id > wire_actors::NODE_ID_MAX => {
                return Err(format!(
                    "node-id: {id} is above {} (the largest node id; idempotent producers' \
                     ids carry it in {} bits, docs/protocol.md)",
                    wire_actors::NODE_ID_MAX,
                    wire_actors::NODE_ID_BITS
                ))
            }
            Some(id) => id,
            None => return Err("node-id is required (--node-id or `node-id` in --config)".into()),
        };
        let listen_text = self
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = resolve_addr(&listen_text).map_err(|err| format!("listen: {err}"))?;
        let tls = self.tls(&listen)?;
        let admin_limits = self.admin_limits()?;
        let data_dir = self
            .data_dir
            .ok_or("data-dir is required (--data-dir or `data-dir` in --config)")?;
        if self.cores == Some(0) {
            return Err("cores: 0 is not a core count (use 1 or more)".into());
        }
        if let Some(addr) = &self.metrics_addr {
            check_host_port(addr).map_err(|err| format!("metrics-addr: {err}"))?;
        }
        let checkpoint_store = match &self.checkpoint_store {
            Some(url) => Some(check_store(url).map_err(|err| format!("checkpoint-store: {err}"))?),
            None => None,
        };
        let bootstrap_given = self.initial_cluster.is_some() || self.join.is_some();
        let (bootstrap, advertise) =
            bootstrap(node_id, self.initial_cluster, self.join, listen_text)?;
        Ok(NodeConfig {
            node_id,
            listen,
            advertise,
            data_dir,
            cores: self.cores,
            pin: self.pin.unwrap_or(true),
            bootstrap,
            bootstrap_given,
            tls,
            metrics_addr: self.metrics_addr,
            checkpoint_store,
            admin_limits,
            ingest_port_offset: self.ingest_port_offset.unwrap_or(0),
        })
    }

    /// `admin-rate-limit` and `admin-rate-burst`, defaults filled in.
    fn admin_limits(&self) -> Result<AdminLimits, String> {
        let defaults = AdminLimits::default();
        let limits = AdminLimits {
            rate: self.admin_rate_limit.unwrap_or(defaults.rate),
            burst: self.admin_rate_burst.unwrap_or(defaults.burst),
        };
        if limits.rate > 0 && limits.burst == 0 {
            return Err(
                "admin-rate-burst: 0 would refuse every call (use 1 or more, or admin-rate-limit = 0 for no limit)"
                    .into(),
            );
        }
        Ok(limits)
    }
}

/// How node `node_id` starts its raft group (`initial-cluster`, `join`, or alone at
/// `listen_text`), and the address the other members know it by.
fn bootstrap(
    node_id: u64,
    initial_cluster: Option<String>,
    join: Option<String>,
    listen_text: String,
) -> Result<(Bootstrap, String), String> {
    match (initial_cluster, join) {
        (Some(_), Some(_)) => Err("initial-cluster and join exclude each other: give one".into()),
        (Some(list), None) => {
            let members = parse_initial_cluster(&list)?;
            let own = members.get(&node_id).cloned().ok_or_else(|| {
                format!("initial-cluster: node {node_id} (this node's id) is not in `{list}`")
            })?;
            Ok((Bootstrap::Initial(members), own))
        }
        (None, Some(join)) => {
            check_host_port(&join).map_err(|err| format!("join: {err}"))?;
            Ok((Bootstrap::Join(join), listen_text))
        }
        // A single founding member at its listen address (or a restart, where this is
        // ignored).
        (None, None) => {
            let members = BTreeMap::from([(node_id, listen_text.clone())]);
            Ok((Bootstrap::Initial(members), listen_text))
        }
    }
}

/// Parses a checkpoint store URL, and for an S3 store checks that a client can be made from
/// the `AWS_*` environment (nothing is sent).
pub fn check_store(url: &str) -> Result<StoreUrl, String> {
    let parsed = StoreUrl::parse(url)?;
    if let StoreUrl::S3 { bucket, prefix } = &parsed {
        wire_storage::checkpoint::Remote::connect(bucket, prefix)
            .map_err(|err| format!("checkpoint store {parsed}: {err}"))?;
    }
    Ok(parsed)
}

/// Parses `1=HOST:PORT,2=HOST:PORT`: ids not 0, unique, addresses HOST:PORT, unique.
pub fn parse_initial_cluster(list: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry.split_once('=').ok_or_else(|| {
            format!("initial-cluster: `{entry}` is not ID=HOST:PORT (like 1=10.0.0.1:7400)")
        })?;
        let id: u64 = match id.trim().parse() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "initial-cluster: `{id}` in `{entry}` is not a node id (1 or more)"
                ))
            }
            Ok(id) => id,
        };
        let addr = addr.trim();
        check_host_port(addr).map_err(|err| format!("initial-cluster: node {id}: {err}"))?;
        if members.values().any(|a: &String| a == addr) {
            return Err(format!("initial-cluster: address {addr} is listed twice"));
        }
        if members.insert(id, addr.to_string()).is_some() {
            return Err(format!("initial-cluster: node {id} is listed twice"));
        }
    }
    if members.is_empty() {
        return Err("initial-cluster: no members (give 1=HOST:PORT,…)".into());
    }
    Ok(members)
}

/// `HOST:PORT` with a port from 1 to 65535 and a non-empty host.
pub fn check_host_port(text: &str) -> Result<(), String> {
    let bad = || format!("`{text}` is not HOST:PORT (like 127.0.0.1:7400)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(_) => Ok(()),
    }
}

fn resolve_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    check_host_port(text)?;
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve `{text}`: {err}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// `FILE:LINE:COLUMN: key `KEY`: MESSAGE` for a TOML or schema error.
fn toml_error(file: &str, text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end_matches('\n');
    let Some(span) = err.span() else {
        return format!("{file}: {message}");
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    match line_text.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => {
            format!("{file}:{line}:{column}: key `{}`: {message}", key.trim())
        }
        _ => format!("{file}:{line}:{column}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_parse_and_flags_win() {
        let file = NodeFile::parse(
            "node.toml",
            "node-id = 2\nlisten = \"127.0.0.1:7402\"\ndata-dir = \"/var/lib/wire\"\n\
             initial-cluster = \"1=127.0.0.1:7401,2=127.0.0.1:7402\"\n",
        )
        .unwrap();
        let flags = NodeFile {
            listen: Some("127.0.0.1:9000".into()),
            ..NodeFile::default()
        };
        let config = flags.or(file).resolve().unwrap();
        assert_eq!(config.node_id, 2);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.advertise, "127.0.0.1:7402");
    }

    #[test]
    fn node_ids_above_the_producer_id_split_are_refused() {
        let config = |id: u64| NodeFile {
            node_id: Some(id),
            data_dir: Some("/var/lib/wire".into()),
            ..NodeFile::default()
        };
        assert!(config(wire_actors::NODE_ID_MAX).resolve().is_ok());
        let err = config(wire_actors::NODE_ID_MAX + 1).resolve().unwrap_err();
        assert!(err.contains("node-id: 65536 is above 65535"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = NodeFile::parse("node.toml", "node-id = 1\nlisten_addr = \"x:1\"\n").unwrap_err();
        assert!(err.starts_with("node.toml:2:1: key `listen_addr`"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let err = NodeFile::parse("n.toml", "\nnode-id = \"one\"\n").unwrap_err();
        assert!(err.starts_with("n.toml:2:11: key `node-id`"), "{err}");
    }

    #[test]
    fn bad_initial_clusters_are_refused() {
        for (list, want) in [
            ("1=a:1,1=b:2", "listed twice"),
            ("0=a:1", "not a node id"),
            ("1=a", "not HOST:PORT"),
            ("1=a:1,2=a:1", "listed twice"),
            ("x", "not ID=HOST:PORT"),
        ] {
            let err = parse_initial_cluster(list).unwrap_err();
            assert!(err.contains(want), "{list}: {err}");
        }
    }

    #[test]
    fn own_id_must_be_in_the_initial_cluster() {
        let flags = NodeFile {
            node_id: Some(3),
            data_dir: Some("d".into()),
            initial_cluster: Some("1=127.0.0.1:1,2=127.0.0.1:2".into()),
            ..NodeFile::default()
        };
        let err = flags.resolve().unwrap_err();
        assert!(err.contains("node 3"), "{err}");
    }

    #[test]
    fn tls_files_come_together_and_open_addresses_need_tls_or_insecure() {
        let base = NodeFile {
            node_id: Some(1),
            data_dir: Some("d".into()),
            ..NodeFile::default()
        };
        let half = NodeFile {
            tls_cert: Some("node.pem".into()),
            ..base.clone()
        };
        assert!(half.resolve().unwrap_err().contains("together"));
        let open = NodeFile {
            listen: Some("0.0.0.0:7400".into()),
            ..base.clone()
        };
        let err = open.clone().resolve().unwrap_err();
        assert!(
            err.starts_with("listen: 0.0.0.0:7400 is not a loopback"),
            "{err}"
        );
        let insecure = NodeFile {
            insecure: Some(true),
            ..open.clone()
        };
        assert_eq!(insecure.resolve().unwrap().tls, None);
        let tls = NodeFile {
            tls_cert: Some("node.pem".into()),
            tls_key: Some("node-key.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            ..open
        };
        let files = tls.resolve().unwrap().tls.unwrap();
        assert_eq!(files.client_ca, PathBuf::from("ca.pem"));
        assert!(!files.require_client_cert);
        let require = NodeFile {
            tls_require_client_cert: Some(true),
            ..base
        };
        assert!(require.resolve().unwrap_err().contains("needs TLS"));
    }
}
