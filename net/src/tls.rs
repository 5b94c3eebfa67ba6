//! TLS settings for the ingest protocol (and any other listener that speaks rustls directly):
//! reading PEM files into rustls server and client configurations, with errors that name the
//! flag and the file. No sockets here: the node's ingest port drives a rustls connection over
//! its glommio socket, [`crate::ingest::IngestClient`] over a `std::net::TcpStream`.
//!
//! Both sides use the ring crypto provider explicitly, so they work whatever provider (if any)
//! the process installed as its default.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
pub use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that cannot be used, or a configuration rustls refuses.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {path}: {message}")]
pub struct TlsFileError {
    /// The flag (or TOML key) that named the file, e.g. `--tls-cert`.
    pub flag: String,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// What a server asks of its clients' certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// None asked for.
    Ignore,
    /// Verified against the CA when presented; a client without one is let in (it proves who
    /// it is some other way, e.g. with a bearer token).
    Optional,
    /// Every client must present one that chains to the CA.
    Required,
}

/// The certificates in a PEM file (at least one).
pub fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(flag, path, err.to_string()))?;
    if certs.is_empty() {
        let message = "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_string();
        return Err(file_error(flag, path, message));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let bytes = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|err| file_error(flag, path, format!("no PEM private key in it ({err})")))
}

/// A server configuration presenting `cert` (with `key`), verifying client certificates
/// against `client_ca` as `client_certs` says.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    client_certs: ClientCerts,
) -> Result<Arc<ServerConfig>, TlsFileError> {
    let chain = read_certs("--tls-cert", cert)?;
    let key_der = read_key("--tls-key", key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| file_error("--tls-cert", cert, err.to_string()))?;
    let builder = match client_certs {
        ClientCerts::Ignore => builder.with_no_client_auth(),
        ClientCerts::Optional | ClientCerts::Required => {
            let roots = Arc::new(roots("--tls-client-ca", client_ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if client_certs == ClientCerts::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|err| file_error("--tls-client-ca", client_ca, err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key_der)
        .map_err(|err| file_error("--tls-key", key, format!("does not fit --tls-cert: {err}")))?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the CA in `ca`, presenting `identity` (certificate and
/// key files) when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsFileError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| file_error("--ca", ca, err.to_string()))?
        .with_root_certificates(roots("--ca", ca)?);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs("--cert", cert)?;
            let key_der = read_key("--key", key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|err| file_error("--key", key, format!("does not fit --cert: {err}")))?
        }
    };
    Ok(Arc::new(config))
}

/// The name a client checks the server's certificate against: the host of `HOST:PORT`
/// (`[::1]:7070` gives `::1`), an IP address or a DNS name.
pub fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    let host = match address.rsplit_once(':') {
        Some((host, _port)) => host,
        None => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|err| format!("`{host}` (from {address}) is not a host name for TLS: {err}"))
}

/// Explains a failed handshake to a person: what rustls said, and the likely cause.
pub fn explain_handshake(error: &std::io::Error) -> String {
    use rustls::{CertificateError, Error as Tls};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Tls>()) else {
        return format!("TLS handshake failed: {error}");
    };
    let hint = match tls {
        Tls::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            " (the server's certificate is not signed by the CA given with --ca)"
        }
        Tls::InvalidCertificate(CertificateError::NotValidForName)
        | Tls::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            " (the server's certificate does not name the host dialed)"
        }
        Tls::InvalidCertificate(CertificateError::Expired)
        | Tls::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            " (the server's certificate has expired)"
        }
        Tls::InvalidMessage(_) => {
            " (the server did not answer with TLS: is its port plaintext? then connect without --ca)"
        }
        Tls::AlertReceived(_) => {
            " (the server refused the handshake: does it require a client certificate (--cert, --key) signed by its CA?)"
        }
        _ => "",
    };
    format!("TLS handshake failed: {tls}{hint}")
}

/// What the first bytes of a connection to a TLS ingest port are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamHead {
    /// A TLS handshake record: type 0x16, version 3.x with x at least 1.
    Tls,
    /// Not TLS: an ingest frame (a plaintext producer) or garbage.
    Plaintext,
    /// Too few bytes to tell.
    NeedMore,
}

/// Tells a TLS ClientHello from a plaintext ingest frame by the first three bytes. An ingest
/// frame cannot start like a TLS record before its Hello: its little-endian length prefix
/// would then be over 64 KiB, more than a frame may have before the Hello is accepted.
/// Fuzzed by `fuzz/fuzz_targets/ingest_tls_handshake.rs`.
pub fn classify_head(head: &[u8]) -> StreamHead {
    const TLS_HANDSHAKE: u8 = 0x16;
    match head {
        [] => StreamHead::NeedMore,
        [first, ..] if *first != TLS_HANDSHAKE => StreamHead::Plaintext,
        [_, major, ..] if *major != 3 => StreamHead::Plaintext,
        [_] | [_, _] => StreamHead::NeedMore,
        [_, _, 0, ..] => StreamHead::Plaintext,
        _ => StreamHead::Tls,
    }
}

/// The crypto provider both sides use.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(flag: &str, path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(flag, path)? {
        roots
            .add(cert)
            .map_err(|err| file_error(flag, path, format!("not a usable CA certificate: {err}")))?;
    }
    Ok(roots)
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|err| file_error(flag, path, format!("cannot read it: {err}")))
}

fn file_error(flag: &str, path: &Path, message: String) -> TlsFileError {
    TlsFileError {
        flag: flag.to_string(),
        path: path.display().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{encode, Frame, Hello, PROTOCOL_VERSION};

    /// A ClientHello's record header is TLS; every ingest Hello, whatever its length, is
    /// plaintext; one or two bytes that could still be TLS need more.
    #[test]
    fn client_hellos_and_ingest_hellos_are_told_apart() {
        assert_eq!(classify_head(&[0x16, 3, 1, 0, 200]), StreamHead::Tls);
        assert_eq!(classify_head(&[0x16, 3]), StreamHead::NeedMore);
        assert_eq!(classify_head(&[]), StreamHead::NeedMore);
        assert_eq!(classify_head(&[0x16, 3, 0]), StreamHead::Plaintext);
        for name_len in [0, 1, 100, 790, 5000, 60_000] {
            let hello = Hello {
                version: PROTOCOL_VERSION,
                client: "c".repeat(name_len),
                source: "rows".into(),
                schema: wire_core::Schema::new(vec![]),
                idempotent: true,
                producer_id: 0,
                producer_epoch: 0,
                token: String::new(),
            };
            let mut bytes = Vec::new();
            encode(&Frame::<Vec<u8>>::Hello(hello), &mut bytes);
            assert_eq!(classify_head(&bytes), StreamHead::Plaintext, "{name_len}");
        }
    }

    /// Missing and malformed files are errors naming the flag and the file.
    #[test]
    fn bad_files_name_the_flag() {
        let dir = std::env::temp_dir().join(format!("wire-net-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let err = client_config(&junk, None).unwrap_err();
        assert_eq!(err.flag, "--ca");
        assert!(err.message.contains("no PEM certificate"), "{err}");
        let err = server_config(&dir.join("missing.pem"), &junk, &junk, ClientCerts::Ignore);
        let err = err.unwrap_err();
        assert!(
            err.to_string().starts_with("--tls-cert ") && err.message.contains("cannot read"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
