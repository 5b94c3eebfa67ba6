//! The ingest handshake with security on: whatever bytes a producer sends, the Hello decoder
//! never panics, and the token check (`wire_control::auth::ingest_allowed`) never panics and
//! admits a Hello only when its token is exactly one of the valid tokens recorded (admin, or a
//! producer whose scope covers the source); revoked (unknown), expired, viewer and
//! out-of-scope tokens never get in. The raw bytes are also tried as a token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wire_control::auth::{hash_secret, ingest_allowed};
use wire_control::raft::{AccessRole, MetaState, TokenRecord, TokenScope};
use wire_net::ingest::{decode, Frame};

/// A token with a fixed id and secret (`n` picks both).
fn token(n: u8) -> (String, String, [u8; 32]) {
    let id = format!("{n:02x}").repeat(8);
    let secret = [n; 32];
    let text = format!("wire_{id}_{}", format!("{n:02x}").repeat(32));
    (id, text, hash_secret(&secret))
}

/// The tokens known, and which may ingest into `orders`/`rows`.
fn state() -> &'static (MetaState, Vec<String>) {
    static STATE: OnceLock<(MetaState, Vec<String>)> = OnceLock::new();
    STATE.get_or_init(|| {
        let scope = |pipeline: &str, source: Option<&str>| {
            Some(TokenScope {
                pipeline: pipeline.into(),
                source: source.map(str::to_string),
            })
        };
        let cases = [
            (1, AccessRole::Admin, None, None, true),
            (2, AccessRole::Producer, None, None, true),
            (3, AccessRole::Producer, scope("orders", Some("rows")), None, true),
            (4, AccessRole::Producer, scope("orders", Some("audit")), None, false),
            (5, AccessRole::Producer, scope("other", None), None, false),
            (6, AccessRole::Viewer, None, None, false),
            (7, AccessRole::Producer, None, Some(1), false),
        ];
        let mut state = MetaState::default();
        let mut allowed = Vec::new();
        for (n, role, scope, expires_at_ms, ok) in cases {
            let (id, text, hash) = token(n);
            let record = TokenRecord {
                role,
                hash,
                created_at_ms: 0,
                expires_at_ms,
                scope,
            };
            state.tokens.insert(id, record);
            if ok {
                allowed.push(text);
            }
        }
        (state, allowed)
    })
}

fn check(token: &str) {
    let (state, allowed) = state();
    let admitted = ingest_allowed(state, token, "orders", "rows");
    assert_eq!(admitted, allowed.iter().any(|t| t == token), "token {token:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    let mut rest = data;
    while let Ok(Some((frame, consumed))) = decode(rest) {
        if let Frame::Hello(hello) = &frame {
            check(&hello.token);
        }
        rest = &rest[consumed..];
    }
});
