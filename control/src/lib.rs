//! Wire's control plane (not built yet): the tokio runtime, tonic admin and raft services,
//! the raft-rs metadata group and the checkpoint coordinator, and the `wire` and `wirectl`
//! binaries.
//!
//! This crate is an empty placeholder in the workspace layout until later issues fill it;
//! it exports nothing.
#![forbid(unsafe_code)]
