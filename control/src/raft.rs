//! The raft metadata group: a raft-rs `RawNode` replicating the cluster's metadata
//! ([`MetaState`]: nodes, pipelines, assignments, checkpoints, savepoints).
//!
//! Layers, innermost first: [`meta`] is the deterministic state machine and its binary
//! encoding; [`storage`] is the on-disk raft log over the [`disk::Disk`] seam; [`node`] is the
//! sans-IO [`MetaNode`] (no clocks, sockets or threads) that the simulation tests drive
//! directly; [`actor`] is the ractor actor that drives it on the process's tokio runtime, with
//! [`MetaHandle`] as the clonable front and [`Transport`] as the outbound seam for the gRPC
//! RaftService. See docs/raft.md.

pub mod actor;
mod codec;
pub mod disk;
pub mod meta;
pub mod node;
pub mod storage;

use std::sync::Arc;

pub use actor::{
    has_state, restore_backup, start, LocalTransport, MetaConfig, MetaHandle, MetaMsg,
    RestoreMembers, Transport,
};
pub use meta::{
    AccessRole, ActualState, Assignment, CheckpointRecord, DesiredState, MetaCommand, MetaResponse,
    MetaState, NodeInfo, PipelineMeta, RunOptions, SavepointRecord, TokenRecord, TokenScope,
};
pub use node::{
    AppliedEntry, Bootstrap, MemberStatus, MetaNode, MetaNodeConfig, MetaReady, MetaStatus,
    RequestId, Role,
};
pub use storage::StorageError;

/// Errors of the metadata group. Callers branch on the variant: the gRPC layer maps
/// `UnknownPipeline` to NOT_FOUND, `PipelineExists`/`NodeExists` to ALREADY_EXISTS, `Invalid`
/// and `Decode` to INVALID_ARGUMENT, `NotLeader` to a forward (or UNAVAILABLE), and the rest to
/// UNAVAILABLE or INTERNAL.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A pipeline with this name exists.
    #[error("pipeline {name} already exists")]
    PipelineExists {
        /// The name.
        name: String,
    },
    /// No pipeline with this name.
    #[error("unknown pipeline {name}")]
    UnknownPipeline {
        /// The name.
        name: String,
    },
    /// The node id is registered already.
    #[error("node id {id} is already in use")]
    NodeExists {
        /// The id.
        id: u64,
    },
    /// No node with this id is registered.
    #[error("unknown node {id}")]
    UnknownNode {
        /// The id.
        id: u64,
    },
    /// The command is not valid against the current metadata.
    #[error("invalid metadata command: {reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
    /// Bytes that do not decode (a command, snapshot or backup).
    #[error("{what}: {reason} in field {field} at byte {offset}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Byte offset in the input.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// This node is not the leader; writes go to `leader` (id and gRPC address) when known.
    #[error("this node is not the metadata leader{}", leader_hint(.leader))]
    NotLeader {
        /// The leader as this node knows it.
        leader: Option<(u64, String)>,
    },
    /// A membership change is still being applied; retry after it.
    #[error("a membership change is in progress; retry when it completes")]
    ConfChangePending,
    /// The request got no answer in time (a leader change can drop proposals: it may or may not
    /// have been applied).
    #[error("metadata request timed out (it may or may not have been applied)")]
    Timeout,
    /// The metadata actor is not running.
    #[error("the metadata group is stopped on this node")]
    Stopped,
    /// No token with this id.
    #[error("unknown token {id}")]
    UnknownToken {
        /// The id.
        id: String,
    },
    /// The data directory already holds raft state (restore refuses to overwrite it).
    #[error("{path} already holds raft state")]
    AlreadyInitialized {
        /// The directory.
        path: String,
    },
    /// The raft log store failed.
    #[error("raft log store failed")]
    Storage(#[source] Arc<StorageError>),
    /// raft-rs refused an operation.
    #[error("raft refused the operation")]
    Raft(#[source] Arc<::raft::Error>),
}

fn leader_hint(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => format!(" (leader: node {id} at {addr})"),
        None => " (no leader known; retry shortly)".to_owned(),
    }
}

impl From<StorageError> for MetaError {
    fn from(e: StorageError) -> Self {
        MetaError::Storage(Arc::new(e))
    }
}

impl From<::raft::Error> for MetaError {
    fn from(e: ::raft::Error) -> Self {
        MetaError::Raft(Arc::new(e))
    }
}

/// A `slog::Logger` for raft-rs that forwards its records to `tracing` (target `raft`).
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

/// Forwards slog records to tracing events at the same level.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let msg = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{msg}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}"),
            slog::Level::Debug => tracing::debug!(target: "raft", "{msg}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}
