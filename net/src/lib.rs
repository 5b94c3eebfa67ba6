//! Wire's network protocols (not built yet): the ingest protocol (producers to a node) and the
//! exchange protocol (node to node), as pure `decode(&[u8]) -> Result<Frame, FrameError>` codecs
//! with fuzz targets.
//!
//! This crate is an empty placeholder in the workspace layout until the data-plane issue
//! fills it; it exports nothing.
#![forbid(unsafe_code)]
