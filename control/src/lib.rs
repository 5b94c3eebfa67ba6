//! Wire's control plane and its binaries.
//!
//! Today this crate holds the single-node `wire` binary (`src/bin/wire/`): `wire run` loads a
//! pipeline file, checks it, starts the data cores, reports progress and prints a summary;
//! `wire check` only checks. The tokio control plane (raft metadata group, checkpoint
//! coordinator, `wirectl`) comes with later issues.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod raft;
