//! Metadata records to AdminService messages, and metadata errors to gRPC statuses.

use tonic::Status;

use crate::proto::admin::{Checkpoint, Pipeline, PipelineOptions, Slot};
use crate::raft::{ActualState, DesiredState, MetaError, PipelineMeta, RunOptions};

/// The answer for pipeline `name`; the spec text only when `with_spec`, its secrets redacted
/// (connector passwords and keys, a URL's password; see `wire_core::frontend::redact`).
pub fn pipeline(name: &str, meta: &PipelineMeta, with_spec: bool) -> Pipeline {
    Pipeline {
        name: name.to_string(),
        version: meta.version,
        desired_state: desired_name(meta.desired).to_string(),
        state: actual_name(meta.actual).to_string(),
        failure: meta.failure.clone().unwrap_or_default(),
        options: Some(options(&meta.options)),
        spec: if with_spec {
            wire_core::frontend::redact::redact_secrets(&meta.spec_yaml)
        } else {
            String::new()
        },
        last_checkpoint: meta.checkpoints.last().map_or(0, |c| c.id),
        // Filled from the hosting node's live counters by `GetPipeline`.
        operators: Vec::new(),
        // Filled by `GetPipeline` on the leader, which knows which members are down.
        waiting: String::new(),
        // Filled by `GetPipeline` from the nodes serving its ingest sources.
        ingest: Vec::new(),
        assignment: meta
            .assignment
            .iter()
            .zip(0..)
            .map(|(a, slot)| Slot {
                slot,
                node: a.node,
                core: a.core,
                key_group_start: a.key_group_start,
                key_group_end: a.key_group_end,
            })
            .collect(),
    }
}

/// A pipeline's checkpoints, oldest first.
pub fn checkpoints(meta: &PipelineMeta) -> Vec<Checkpoint> {
    meta.checkpoints
        .iter()
        .map(|c| Checkpoint {
            id: c.id,
            path: c.path.clone(),
        })
        .collect()
}

/// Recorded run options as the API shows them.
pub fn options(o: &RunOptions) -> PipelineOptions {
    PipelineOptions {
        checkpoint_interval_ms: o.checkpoint_interval_ms.unwrap_or(0),
        cores: o.cores.unwrap_or(0),
        from_savepoint: o.from_savepoint.clone().unwrap_or_default(),
        checkpoint_timeout_ms: o.checkpoint_timeout_ms,
        checkpoints_retained: o.checkpoints_retained,
        checkpoint_deltas: o.checkpoint_deltas,
    }
}

/// Requested run options as the metadata records them (0 and empty mean "not given").
pub fn run_options(o: Option<&PipelineOptions>) -> RunOptions {
    let Some(o) = o else {
        return RunOptions::default();
    };
    RunOptions {
        checkpoint_interval_ms: (o.checkpoint_interval_ms > 0).then_some(o.checkpoint_interval_ms),
        cores: (o.cores > 0).then_some(o.cores),
        from_savepoint: (!o.from_savepoint.is_empty()).then(|| o.from_savepoint.clone()),
        checkpoint_timeout_ms: o.checkpoint_timeout_ms,
        checkpoints_retained: o.checkpoints_retained,
        checkpoint_deltas: o.checkpoint_deltas,
    }
}

/// Refuses requested run options `wire run` would refuse: checkpoint options without
/// `--checkpoint-interval`, a zero timeout, no checkpoint retained.
pub fn check_options(o: &RunOptions) -> Result<(), Status> {
    let checkpointing = o.checkpoint_interval_ms.is_some();
    let given = [
        ("from_savepoint", o.from_savepoint.is_some()),
        ("checkpoint_timeout_ms", o.checkpoint_timeout_ms.is_some()),
        ("checkpoints_retained", o.checkpoints_retained.is_some()),
        ("checkpoint_deltas", o.checkpoint_deltas.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(_, set)| *set && !checkpointing) {
        return Err(Status::invalid_argument(format!(
            "options.{field}: needs a checkpoint interval (--checkpoint-interval)"
        )));
    }
    if o.checkpoint_timeout_ms == Some(0) {
        return Err(Status::invalid_argument(
            "options.checkpoint_timeout_ms: 0 is not a timeout (give 1ms or more)",
        ));
    }
    if o.checkpoints_retained == Some(0) {
        return Err(Status::invalid_argument(
            "options.checkpoints_retained: 0 keeps no checkpoint to restore (give 1 or more)",
        ));
    }
    Ok(())
}

/// `running`, `paused`, `stopped`.
pub fn desired_name(state: DesiredState) -> &'static str {
    match state {
        DesiredState::Running => "running",
        DesiredState::Paused => "paused",
        DesiredState::Stopped => "stopped",
    }
}

/// `created`, `running`, `paused`, `stopping`, `finished`, `failed`.
pub fn actual_name(state: ActualState) -> &'static str {
    match state {
        ActualState::Created => "created",
        ActualState::Running => "running",
        ActualState::Paused => "paused",
        ActualState::Stopping => "stopping",
        ActualState::Finished => "finished",
        ActualState::Failed => "failed",
    }
}

/// The gRPC status for a metadata error (not `NotLeader`, which callers forward).
pub fn status(err: &MetaError) -> Status {
    match err {
        MetaError::UnknownPipeline { name } => Status::not_found(format!(
            "pipeline `{name}` not found (see `wirectl pipeline list`)"
        )),
        MetaError::UnknownNode { id } => Status::not_found(format!(
            "node {id} is not a member (see `wirectl cluster status`)"
        )),
        MetaError::UnknownToken { id } => {
            Status::not_found(format!("token `{id}` not found (see `wirectl token list`)"))
        }
        MetaError::PipelineExists { name } => Status::already_exists(format!(
            "a pipeline named `{name}` already exists (delete it first, or rename it with `name:`)"
        )),
        MetaError::NodeExists { id } => {
            Status::already_exists(format!("node id {id} is already in use"))
        }
        MetaError::Invalid { reason } => Status::invalid_argument(reason.clone()),
        MetaError::Decode { .. } => Status::invalid_argument(err.to_string()),
        MetaError::AlreadyInitialized { .. } => Status::failed_precondition(err.to_string()),
        MetaError::Storage(_) | MetaError::Raft(_) => Status::internal(format!(
            "metadata group on this node failed: {}",
            error_chain(err)
        )),
        MetaError::NotLeader { leader: None } => Status::unavailable(
            "no leader is elected yet (is a majority of the members up?); retry",
        ),
        // ConfChangePending, Timeout, Stopped and what comes later: retrying may help.
        other => Status::unavailable(other.to_string()),
    }
}

/// `err` and its sources, joined with `: `.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
