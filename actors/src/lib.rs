//! Wire's data plane (not built yet): one pinned glommio executor per core, operator actors
//! with bounded mailboxes, operator fusion, exchange between cores and backpressure.
//!
//! This crate is an empty placeholder in the workspace layout until the data-plane issue
//! fills it; it exports nothing.
#![forbid(unsafe_code)]
