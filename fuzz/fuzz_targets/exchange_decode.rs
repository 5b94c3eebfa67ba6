//! Exchange frame decoding must never panic on any bytes, must agree with the two-step
//! decoding a receiver does (head, then body), and every frame it accepts must re-encode to
//! exactly the bytes it was decoded from (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_net::exchange::{decode, decode_body, decode_head, encode, HEAD_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match decode(rest) {
            Ok(Some((frame, used))) => {
                assert!(used >= HEAD_LEN && used <= rest.len());
                let mut encoded = Vec::new();
                encode(&frame, &mut encoded);
                assert_eq!(encoded, rest[..used], "re-encoding differs");
                let head: [u8; HEAD_LEN] = rest[..HEAD_LEN].try_into().expect("a head");
                let (kind, body_len) = decode_head(head).expect("decode accepted this head");
                assert_eq!(HEAD_LEN + body_len, used);
                let body = decode_body(kind, &rest[HEAD_LEN..used]).expect("decode accepted");
                assert_eq!(body.into_owned(), frame);
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(err) => {
                let _ = err.to_string();
                // The two-step reader refuses the same bytes.
                if let Some(head) = rest.first_chunk::<HEAD_LEN>() {
                    if let Ok((kind, body_len)) = decode_head(*head) {
                        if let Some(body) = rest.get(HEAD_LEN..HEAD_LEN + body_len) {
                            assert!(decode_body(kind, body).is_err());
                        }
                    }
                }
                break;
            }
        }
    }
});
