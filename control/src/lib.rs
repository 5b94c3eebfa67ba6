//! Wire's control plane and its binaries.
//!
//! Today this is the single-node `wire run` command ([`run`]): load a pipeline file, check it,
//! start the data cores, report progress, and print a summary. The tokio control plane (raft
//! metadata group, checkpoint coordinator, `wirectl`) comes with later issues.
#![forbid(unsafe_code)]

pub mod run;
pub mod summary;
