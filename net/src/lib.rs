//! Wire's network protocols as pure, fuzzable codecs.
//!
//! `wire-net` owns the byte layout of the ingest protocol (producers to a node; see
//! `docs/protocol.md`) and, later, the exchange protocol (node to node). Codecs are sans-IO:
//! [`ingest::decode`] turns bytes into frames and never panics on any input; socket loops,
//! retries and runtimes belong to the callers. The one exception is [`ingest::IngestClient`], a
//! small blocking client on `std::net` for tools, tests and the load generator; it runs on the
//! caller's thread.
//!
//! ```
//! use wire_net::ingest::{decode, encode, Frame};
//!
//! let mut bytes = Vec::new();
//! encode(&Frame::Produce { seq: 1, batch: vec![1, 2, 3] }, &mut bytes);
//! assert_eq!(decode(&bytes[..5]).unwrap(), None); // needs more bytes
//! let (frame, consumed) = decode(&bytes).unwrap().unwrap();
//! assert_eq!(frame, Frame::Produce { seq: 1, batch: vec![1, 2, 3] });
//! assert_eq!(consumed, bytes.len());
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod exchange;
pub mod ingest;
pub mod tls;

pub use error::{ClientError, DecodeError};
