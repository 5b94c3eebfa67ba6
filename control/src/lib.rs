//! Wire's control plane and its binaries.
//!
//! The `wire` binary (`src/bin/wire/`): `wire run` loads a pipeline file, checks it
//! ([`check`]), starts the data cores, reports progress and prints a summary; `wire check` only
//! checks; `wire start` runs a long-lived cluster [`node`]: the [`raft`] metadata group, the
//! gRPC [`admin`] service and the raft [`transport`], on one tokio runtime. The `wirectl`
//! binary (`src/bin/wirectl/`) is the admin client. With TLS on, [`auth`] checks every admin
//! call against its table of roles and [`audit`] records it. [`telemetry`] exports the
//! control plane's spans over OTLP (`--otlp-endpoint`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod check;
pub mod checkpoint;
pub mod failover;
pub mod job;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod raft;
pub mod spread;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod transport;
