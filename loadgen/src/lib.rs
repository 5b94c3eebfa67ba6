//! `wire-loadgen` (not built yet): Nexmark and schema-driven event generators, open-loop rate
//! control and end-to-end latency measurement.
//!
//! This crate is an empty placeholder in the workspace layout until the load-generator issue
//! fills it; it exports nothing.
#![forbid(unsafe_code)]
