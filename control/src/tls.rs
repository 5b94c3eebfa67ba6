//! TLS for a node's gRPC listener and for its connections to other members (rustls, through
//! tonic), the check that a RaftService caller is a member, and the development certificates
//! of `wire certs init`.
//!
//! The model: one cluster CA (`--tls-client-ca`). Every node presents a certificate signed by
//! it, valid for the host of the address the other members know it by; nodes verify each
//! other's server certificates against that CA, and present their own as client certificates
//! when they dial. The RaftService serves only callers whose client certificate is valid for
//! the host of the member they say they are. Admin clients (`wirectl`) present a certificate
//! signed by the same CA when `--tls-require-client-cert` is set.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Where a node's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The cluster CA (PEM): other nodes' certificates and admin client certificates chain
    /// to it.
    pub client_ca: PathBuf,
    /// Whether admin clients must present a certificate (nodes always must).
    pub require_client_cert: bool,
}

/// A node's loaded TLS settings, shared by its listeners and its dialer, and replaced in
/// place by [`NodeTls::reload`] (SIGHUP): connections made after a reload use the new files,
/// open ones keep theirs.
#[derive(Debug, Clone)]
pub struct NodeTls {
    files: TlsFiles,
    /// For the gRPC listener (ALPN `h2`).
    pub grpc: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    /// For the ingest ports of the node's pipelines.
    pub ingest: Arc<wire_actors::IngestTls>,
    /// For the HTTP endpoint (`--metrics-addr`; ALPN `http/1.1`).
    pub http: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    /// For dialing other members: trusts the cluster CA, presents the node's certificate.
    pub client: Arc<RwLock<ClientTlsConfig>>,
    /// For the exchange (mutual TLS both ways), once [`NodeTls::exchange`] made it.
    exchange: Arc<OnceLock<Arc<wire_actors::exchange::ExchangeTls>>>,
}

impl NodeTls {
    /// Reads and checks the files; errors name the flag and the file.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, String> {
        let (grpc, ingest, client) = configs(files)?;
        Ok(NodeTls {
            files: files.clone(),
            grpc: Arc::new(RwLock::new(grpc)),
            http: Arc::new(RwLock::new(http_config(files)?)),
            ingest: Arc::new(wire_actors::IngestTls::new(ingest)),
            client: Arc::new(RwLock::new(client)),
            exchange: Arc::default(),
        })
    }

    /// The exchange's mutual TLS (its hub and its dials), with `is_member` telling whether
    /// a peer's certificate names a member; reloaded with the rest from then on.
    pub fn exchange(
        &self,
        is_member: wire_actors::exchange::MemberCheck,
    ) -> Result<Arc<wire_actors::exchange::ExchangeTls>, String> {
        if let Some(exchange) = self.exchange.get() {
            return Ok(exchange.clone());
        }
        let files = &self.files;
        let loaded = wire_actors::exchange::ExchangeTls::load(
            &files.cert,
            &files.key,
            &files.client_ca,
            is_member,
        )
        .map_err(|err| err.to_string())?;
        Ok(self.exchange.get_or_init(|| Arc::new(loaded)).clone())
    }

    /// Reads the files again and, when they are all good, serves new connections with them;
    /// on an error nothing changes.
    pub fn reload(&self) -> Result<(), String> {
        // Everything that can fail comes before anything is replaced (the exchange's reload,
        // last, replaces its configurations only when it succeeds).
        let (grpc, ingest, client) = configs(&self.files)?;
        let http = http_config(&self.files)?;
        if let Some(exchange) = self.exchange.get() {
            let files = &self.files;
            exchange
                .reload(&files.cert, &files.key, &files.client_ca)
                .map_err(|err| err.to_string())?;
        }
        *self.grpc.write().unwrap_or_else(|e| e.into_inner()) = grpc;
        *self.http.write().unwrap_or_else(|e| e.into_inner()) = http;
        self.ingest.replace(ingest);
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        Ok(())
    }

    /// The gRPC server configuration now.
    pub fn grpc_config(&self) -> Arc<rustls::ServerConfig> {
        self.grpc.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The HTTP endpoint's configuration: the node's certificate, HTTP/1.1, and a client
/// certificate from the cluster CA taken when presented but never required (even with
/// `--tls-require-client-cert`): health probes carry none, and scrapers prove who they are
/// with a token.
fn http_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    use wire_net::tls::ClientCerts;
    let config = wire_net::tls::server_config(
        &files.cert,
        &files.key,
        &files.client_ca,
        ClientCerts::Optional,
    )
    .map_err(|err| err.to_string())?;
    let mut http = (*config).clone();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(http))
}

/// The gRPC and ingest server configurations and the dialing configuration from `files`.
fn configs(
    files: &TlsFiles,
) -> Result<
    (
        Arc<rustls::ServerConfig>,
        Arc<rustls::ServerConfig>,
        ClientTlsConfig,
    ),
    String,
> {
    install_crypto_provider();
    let cert = read_certs("tls-cert", &files.cert)?;
    let key = read_key("tls-key", &files.key)?;
    let ca = read_certs("tls-client-ca", &files.client_ca)?;
    let ingest = server_config(files)?;
    let mut grpc = (*ingest).clone();
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let identity = Identity::from_pem(&cert, &key);
    let client = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .identity(identity);
    Ok((Arc::new(grpc), ingest, client))
}

/// A rustls server configuration for `files`: the node's certificate, client certificates
/// verified against the cluster CA (required with `require_client_cert`, else optional: token
/// holders need none; members always present theirs).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    use wire_net::tls::ClientCerts;
    let client_certs = if files.require_client_cert {
        ClientCerts::Required
    } else {
        ClientCerts::Optional
    };
    wire_net::tls::server_config(&files.cert, &files.key, &files.client_ca, client_certs)
        .map_err(|err| err.to_string())
}

/// `wire run`'s TLS on ingest ports: the certificate and key, and optionally the CA that
/// producers' client certificates must chain to (there are no tokens without a cluster, so a
/// client certificate is the only producer credential of `wire run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTlsFiles {
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
    /// `--tls-client-ca`: verify producers' client certificates against it when they send one.
    pub client_ca: Option<PathBuf>,
    /// `--tls-require-client-cert`: every producer must present one.
    pub require_client_cert: bool,
}

impl RunTlsFiles {
    /// The ingest ports' server configuration from the files; errors name the flag and file.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        use wire_net::tls::ClientCerts;
        let (client_certs, ca) = match &self.client_ca {
            Some(ca) if self.require_client_cert => (ClientCerts::Required, ca.as_path()),
            Some(ca) => (ClientCerts::Optional, ca.as_path()),
            None if self.require_client_cert => {
                return Err("--tls-require-client-cert needs --tls-client-ca".into())
            }
            None => (ClientCerts::Ignore, self.cert.as_path()),
        };
        wire_net::tls::server_config(&self.cert, &self.key, ca, client_certs)
            .map_err(|err| err.to_string())
    }

    /// The metrics endpoint's configuration (`--metrics-addr`): the certificate, HTTP/1.1, and
    /// with `--tls-client-ca` a client certificate from it taken when presented, never
    /// required (health probes carry none; `/metrics` then needs one carrying a role).
    pub fn http_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        use wire_net::tls::ClientCerts;
        let (client_certs, ca) = match &self.client_ca {
            Some(ca) => (ClientCerts::Optional, ca.as_path()),
            None => (ClientCerts::Ignore, self.cert.as_path()),
        };
        let config = wire_net::tls::server_config(&self.cert, &self.key, ca, client_certs)
            .map_err(|err| err.to_string())?;
        let mut http = (*config).clone();
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(http))
    }
}

/// Makes ring the process's TLS crypto provider. Two are built in (ring for gRPC, aws-lc-rs
/// through the S3 client), so rustls has no default of its own and refuses to build a TLS
/// configuration until one is chosen. Safe to call any number of times.
pub fn install_crypto_provider() {
    // An error means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS settings of an admin client (`wirectl`): the CA to trust, and optionally a client
/// certificate and key.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, String> {
    install_crypto_provider();
    let ca = read_certs("ca", ca)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        let cert = read_certs("cert", cert)?;
        let key = read_key("key", key)?;
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(config)
}

/// The file's bytes, which must hold at least one PEM certificate.
fn read_certs(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    let bytes = read(flag, path)?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        cert.map_err(|err| format!("--{flag} {}: {err}", path.display()))?;
        found += 1;
    }
    if found == 0 {
        return Err(format!(
            "--{flag} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The file's bytes, which must hold a PEM private key.
fn read_key(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    let bytes = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        format!(
            "--{flag} {}: no PEM private key in it ({err})",
            path.display()
        )
    })?;
    Ok(bytes)
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("--{flag} {}: cannot read it: {err}", path.display()))
}

/// The host part of `HOST:PORT` (`[::1]:7400` → `::1`).
pub fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((host, _port)) => host,
        None => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `cert` (a client's end-entity certificate, already verified to chain to the cluster
/// CA by the TLS handshake) is valid for the host of `address`, a member's address.
pub fn cert_names(cert: &CertificateDer<'_>, address: &str) -> bool {
    let host = host_of(address);
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => match ServerName::try_from(host.to_string()) {
            Ok(name) => name,
            Err(_) => return false,
        },
    };
    webpki::EndEntityCert::try_from(cert)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
        .is_ok()
}

/// The files `wire certs init` writes.
pub const DEV_FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "node.pem",
    "node-key.pem",
    "client.pem",
    "client-key.pem",
];

/// Writes a development CA, a node certificate valid for `localhost`, `127.0.0.1` and `hosts`
/// (server and client use), and an admin client certificate into `dir`; refuses to overwrite.
/// Keys are written with mode 0600.
pub fn init_dev_certs(dir: &Path, hosts: &[String]) -> Result<Vec<PathBuf>, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let fail = |err: rcgen::Error| format!("generating certificates: {err}");
    for name in DEV_FILES {
        if dir.join(name).exists() {
            return Err(format!(
                "{} exists: `wire certs init` does not overwrite certificates (use another --dir)",
                dir.join(name).display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wire development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().cloned());
    let mut node = CertificateParams::new(names).map_err(fail)?;
    node.distinguished_name
        .push(DnType::CommonName, "wire node");
    node.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let node_key = KeyPair::generate().map_err(fail)?;
    let node_cert = node.signed_by(&node_key, &issuer).map_err(fail)?;

    // The admin role, as `crate::auth` reads it from a client certificate.
    let role = crate::auth::role_name(crate::auth::AccessRole::Admin);
    let mut client = CertificateParams::new(vec![role]).map_err(fail)?;
    client
        .distinguished_name
        .push(DnType::CommonName, "wire admin");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().map_err(fail)?;
    let client_cert = client.signed_by(&client_key, &issuer).map_err(fail)?;

    let contents = [
        ca_pem,
        ca_key_pem,
        node_cert.pem(),
        node_key.serialize_pem(),
        client_cert.pem(),
        client_key.serialize_pem(),
    ];
    let mut written = Vec::new();
    for (name, text) in DEV_FILES.iter().zip(contents) {
        let path = dir.join(name);
        write_new(&path, text.as_bytes(), name.ends_with("-key.pem"))?;
        written.push(path);
    }
    Ok(written)
}

/// Creates `path` (never replacing a file), mode 0600 when `secret`, else 0644.
pub(crate) fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|err| format!("{}: {err}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:7400"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7400"), "::1");
        assert_eq!(host_of("node-1.example:7400"), "node-1.example");
    }

    #[test]
    fn dev_certs_name_their_hosts_and_the_admin_cert_names_none() {
        let dir = tempfile::tempdir().unwrap();
        init_dev_certs(dir.path(), &["wire-1.example".into()]).unwrap();
        let der = |name: &str| {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            CertificateDer::from_pem_slice(&bytes).unwrap()
        };
        let node = der("node.pem");
        assert!(cert_names(&node, "127.0.0.1:7401"));
        assert!(cert_names(&node, "localhost:7401"));
        assert!(cert_names(&node, "wire-1.example:7400"));
        assert!(!cert_names(&node, "10.0.0.9:7400"));
        assert!(!cert_names(&der("client.pem"), "127.0.0.1:7401"));
        let mode = |name: &str| {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            meta.permissions().mode() & 0o777
        };
        assert_eq!(mode("node-key.pem"), 0o600);
        assert_eq!(mode("node.pem"), 0o644);
        let again = init_dev_certs(dir.path(), &[]).unwrap_err();
        assert!(again.contains("does not overwrite"), "{again}");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let files = TlsFiles {
            cert: junk.clone(),
            key: junk.clone(),
            client_ca: junk.clone(),
            require_client_cert: false,
        };
        let err = NodeTls::load(&files).unwrap_err();
        assert!(
            err.starts_with("--tls-cert ") && err.contains("junk.pem"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = client_config(&missing, None).unwrap_err();
        assert!(err.contains("--ca") && err.contains("cannot read"), "{err}");
    }
}
