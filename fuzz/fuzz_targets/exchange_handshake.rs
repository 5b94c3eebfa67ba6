//! The bytes a peer sends an exchange hub before its rows, as the hub reads them: telling TLS
//! from plaintext (`wire_net::tls::classify_head`), the Hello (`wire_actors::exchange::
//! read_hello`, plain or inside TLS), and the hub's rustls server connection (built by
//! `ExchangeTls::load` from `wire certs init` certificates: client certificates required, the
//! exchange's ALPN). None may panic; a Hello the hub accepts is never taken for TLS, is what
//! `wire_net::exchange::decode` reads from the same bytes, and is of this node's version.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

#[path = "common/tls.rs"]
mod tls;
use wire_actors::exchange::{read_hello, ExchangeTls};
use wire_net::exchange::{decode, Frame, VERSION};
use wire_net::tls::{classify_head, StreamHead};

fn hub() -> &'static ExchangeTls {
    static HUB: OnceLock<ExchangeTls> = OnceLock::new();
    HUB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wire-fuzz-exchange-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        wire_control::tls::init_dev_certs(&dir, &[]).expect("dev certificates");
        let file = |name: &str| dir.join(name);
        let is_member: wire_actors::exchange::MemberCheck = Arc::new(|_| true);
        ExchangeTls::load(
            &file("node.pem"),
            &file("node-key.pem"),
            &file("ca.pem"),
            is_member,
        )
        .expect("exchange TLS")
    })
}

fuzz_target!(|data: &[u8]| {
    let head = classify_head(data);
    if let Ok(key) = read_hello(&mut &data[..]) {
        assert_ne!(head, StreamHead::Tls, "an exchange Hello taken for TLS");
        match decode(data) {
            Ok(Some((Frame::Hello { version, stream }, _))) => {
                assert_eq!(version, VERSION);
                assert_eq!(stream, key);
            }
            other => panic!("read_hello accepted what decode reads as {other:?}"),
        }
    }
    let Ok(mut conn) = rustls::ServerConnection::new(hub().server_config()) else {
        return;
    };
    // Whatever plaintext gets through is read as the hub reads a Hello.
    tls::feed(&mut conn, data, |conn| {
        let _ = read_hello(&mut conn.reader());
    });
});
