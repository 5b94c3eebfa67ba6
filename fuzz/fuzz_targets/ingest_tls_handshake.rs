//! The first bytes of a connection to a TLS ingest port: whatever a client sends, telling a
//! ClientHello from a plaintext ingest frame (`wire_net::tls::classify_head`) never panics,
//! never calls a decodable ingest Hello TLS, and the bytes fed to the node's rustls server
//! connection (built from `wire certs init` certificates by `wire_net::tls::server_config`,
//! client certificates optional as on a node) never panic either.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

#[path = "common/tls.rs"]
mod tls;
use wire_net::ingest::{decode, Frame};
use wire_net::tls::{classify_head, server_config, ClientCerts, StreamHead};

fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("wire-fuzz-tls-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            wire_control::tls::init_dev_certs(&dir, &[]).expect("dev certificates");
            let file = |name: &str| dir.join(name);
            let config = server_config(
                &file("node.pem"),
                &file("node-key.pem"),
                &file("ca.pem"),
                ClientCerts::Optional,
            );
            config.expect("server config")
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let head = classify_head(data);
    if let Ok(Some((Frame::Hello(_), _))) = decode(data) {
        assert_ne!(head, StreamHead::Tls, "an ingest Hello taken for TLS");
    }
    let Ok(mut conn) = rustls::ServerConnection::new(config()) else {
        return;
    };
    tls::feed(&mut conn, data, |_| {});
});
