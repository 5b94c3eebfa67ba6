//! What the leader does about a node that stopped answering: the pipelines placed on it are
//! restored elsewhere when they can be, failed when they cannot, and left waiting when their
//! input lives on that node's disk.
//!
//! A member the leader has not heard from for [`DEAD_AFTER`] is *dead* (raft messages count:
//! every member hears from the leader and answers it several times a second). A leader that
//! was just elected has heard from no one yet: it waits [`DEAD_AFTER`] from its election
//! before it calls a silent member dead.
//!
//! For each pipeline that should run and has a slot on a dead node:
//! - it checkpoints into the cluster's shared checkpoint store (`--checkpoint-store`, which
//!   every node must be given alike) and has no `ingest` source: a pipeline placed whole is
//!   moved onto the live node running the fewest pipelines; a pipeline spread over nodes has
//!   its slots dealt again over the live nodes (as many as before, but no more than the live
//!   nodes' cores: the leader's core count per node; state is restored by key group, so any
//!   slot count restores it). The move is a new version of the pipeline (its next epoch): the new nodes
//!   restore it from its last complete checkpoint in the store (every part of it, for a
//!   spread pipeline), and what the old nodes still report of the old version is refused as
//!   stale.
//! - it has an `ingest` source: it waits for its node to come back, since the acknowledged
//!   input is in that node's write-ahead logs (until those are replicated, a node whose disk
//!   is gone loses that input).
//! - otherwise (no checkpoints, or checkpoints only on the dead node's disk) it is reported
//!   failed, with the reason: nothing could restore its state or tell which of its output
//!   was already written.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::raft::{
    ActualState, Assignment, MetaCommand, MetaHandle, MetaState, MetaStatus, PipelineMeta,
};

/// A member not heard from for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(6);

/// The registered members `status` has not heard from for [`DEAD_AFTER`]; none while this
/// leader has led for less than that (`led_for`) and has not heard from a member yet.
pub fn dead_nodes(status: &MetaStatus, state: &MetaState, led_for: Duration) -> BTreeSet<u64> {
    let limit = DEAD_AFTER.as_millis() as u64;
    status
        .members
        .iter()
        .filter(|m| m.id != status.id && state.nodes.contains_key(&m.id))
        .filter(|m| match m.last_contact_ms {
            Some(ms) => ms >= limit,
            None => led_for >= DEAD_AFTER,
        })
        .map(|m| m.id)
        .collect()
}

/// Why `pipeline` waits, as `pipeline get` says it: a node it runs on is down (as `status`,
/// the leader's, saw it) and holds its ingest WALs; empty when it does not wait.
pub fn waiting(status: &MetaStatus, state: &MetaState, pipeline: &PipelineMeta) -> String {
    if !crate::supervisor::should_run(pipeline) || !crate::spread::has_ingest_source(pipeline) {
        return String::new();
    }
    // Only members silent for long count here, not those a new leader has not heard yet.
    let dead = dead_nodes(status, state, Duration::ZERO);
    match pipeline.assignment.iter().find(|a| dead.contains(&a.node)) {
        Some(a) => format!(
            "node {} is down (no contact for {} s or more) and holds the ingest WALs with the input acknowledged to this pipeline, which are not replicated; the pipeline resumes when the node is back",
            a.node,
            DEAD_AFTER.as_secs()
        ),
        None => String::new(),
    }
}

/// What becomes of a pipeline with a slot on a dead node.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    /// Restored whole on a live node.
    Move,
    /// Waits for its node to come back.
    Wait,
    /// Cannot be restored: failed with this reason.
    Fail(String),
}

/// What becomes of `pipeline`, one of whose slots is on dead node `node`; `shared_store`
/// says whether checkpoints go to a store every node reaches.
pub fn fate(pipeline: &PipelineMeta, node: u64, shared_store: bool) -> Fate {
    let dead = format!(
        "node {node} stopped answering (no contact for {} s)",
        DEAD_AFTER.as_secs()
    );
    if crate::spread::has_ingest_source(pipeline) {
        return Fate::Wait;
    }
    if pipeline.options.checkpoint_interval_ms.is_none() {
        return Fate::Fail(format!(
            "{dead}; the pipeline takes no checkpoints, so it cannot be restored on another node (create it with --checkpoint-interval to make it survive a node)"
        ));
    }
    if !shared_store {
        return Fate::Fail(format!(
            "{dead}; its checkpoints are on that node's disk, which no other node reads (start every node with the same --checkpoint-store to make pipelines survive a node)"
        ));
    }
    Fate::Move
}

/// Moves or fails the pipelines that should run and have a slot on one of the `dead` nodes;
/// `load` counts the pipelines on each live node (and is updated by the moves); a spread
/// pipeline gets at most `cores` slots per live node.
pub async fn fail_over(
    meta: &MetaHandle,
    state: &MetaState,
    dead: &BTreeSet<u64>,
    load: &mut HashMap<u64, usize>,
    (shared_store, cores): (bool, usize),
) {
    for (name, pipeline) in &state.pipelines {
        if !crate::supervisor::should_run(pipeline) {
            continue;
        }
        let Some(node) = pipeline
            .assignment
            .iter()
            .map(|a| a.node)
            .find(|n| dead.contains(n))
        else {
            continue;
        };
        let command = match fate(pipeline, node, shared_store) {
            Fate::Wait => continue,
            Fate::Fail(reason) => MetaCommand::ReportActual {
                name: name.clone(),
                actual: ActualState::Failed,
                failure: Some(reason),
            },
            Fate::Move if crate::spread::is_spread(pipeline) => {
                let mut live: Vec<u64> = load.keys().copied().collect();
                if live.is_empty() {
                    return;
                }
                live.sort_unstable();
                let key_groups = pipeline.assignment.last().map_or(0, |a| a.key_group_end);
                let slots = pipeline.assignment.len().min(cores.max(1) * live.len());
                MetaCommand::SetAssignment {
                    name: name.clone(),
                    assignment: crate::spread::deal(&live, slots, key_groups),
                }
            }
            Fate::Move => {
                let Some(target) = least_loaded(load) else {
                    return;
                };
                *load.entry(target).or_default() += 1;
                MetaCommand::SetAssignment {
                    name: name.clone(),
                    assignment: vec![Assignment {
                        key_group_start: 0,
                        key_group_end: u32::MAX,
                        node: target,
                        core: 0,
                    }],
                }
            }
        };
        tracing::warn!(pipeline = %name, dead = node, ?command, "failing over");
        if let Err(err) = meta.propose(command).await {
            tracing::warn!(pipeline = %name, error = %err, "cannot fail over");
        }
    }
}

/// The live node running the fewest pipelines (the lowest id among equals).
pub fn least_loaded(load: &HashMap<u64, usize>) -> Option<u64> {
    load.iter()
        .min_by_key(|(id, count)| (**count, **id))
        .map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{DesiredState, MemberStatus, NodeInfo, Role, RunOptions};

    fn pipeline(yaml: &str, checkpoints: bool, nodes: &[u64]) -> PipelineMeta {
        PipelineMeta {
            spec_yaml: yaml.into(),
            options: RunOptions {
                checkpoint_interval_ms: checkpoints.then_some(500),
                ..RunOptions::default()
            },
            version: 3,
            desired: DesiredState::Running,
            actual: ActualState::Running,
            failure: None,
            assignment: nodes
                .iter()
                .enumerate()
                .map(|(i, node)| Assignment {
                    key_group_start: i as u32,
                    key_group_end: i as u32 + 1,
                    node: *node,
                    core: 0,
                })
                .collect(),
            checkpoints: Vec::new(),
            savepoints: Vec::new(),
            created_at_index: 1,
            pending_parts: Default::default(),
        }
    }

    const NEXMARK: &str = "name: p\nsources:\n  e: {type: nexmark, events: 10}\nsinks:\n  out: {type: blackhole, from: e}\n";
    const INGEST: &str = "name: p\nsources:\n  rows: {type: ingest, listen: '127.0.0.1:0', schema: {id: i64}}\nsinks:\n  out: {type: blackhole, from: rows}\n";

    #[test]
    fn only_checkpointed_pipelines_on_a_shared_store_move() {
        assert_eq!(fate(&pipeline(NEXMARK, true, &[2]), 2, true), Fate::Move);
        assert_eq!(fate(&pipeline(INGEST, true, &[2]), 2, true), Fate::Wait);
        let unsaved = fate(&pipeline(NEXMARK, false, &[2]), 2, true);
        assert!(
            matches!(&unsaved, Fate::Fail(why) if why.contains("takes no checkpoints")),
            "{unsaved:?}"
        );
        let local = fate(&pipeline(NEXMARK, true, &[2]), 2, false);
        assert!(
            matches!(&local, Fate::Fail(why) if why.contains("same --checkpoint-store")),
            "{local:?}"
        );
        assert_eq!(fate(&pipeline(NEXMARK, true, &[1, 2]), 2, true), Fate::Move);
    }

    #[test]
    fn an_ingest_pipeline_spreads_only_when_it_checkpoints_into_a_shared_store() {
        use crate::spread::spreadable;
        assert_eq!(spreadable(&pipeline(INGEST, false, &[]), true), None);
        assert_eq!(spreadable(&pipeline(INGEST, true, &[]), false), None);
        assert_eq!(spreadable(&pipeline(INGEST, true, &[]), true), Some(128));
        let bids = "name: p\nsources:\n  e: {type: nexmark, stream: bid, events: 10}\nsinks:\n  out: {type: blackhole, from: e}\n";
        assert_eq!(spreadable(&pipeline(bids, false, &[]), false), Some(128));
    }

    #[test]
    fn a_member_is_dead_after_a_silence_and_a_new_leader_waits_before_saying_so() {
        let member = |id, last_contact_ms| MemberStatus {
            id,
            addr: None,
            voter: true,
            match_index: None,
            last_contact_ms,
        };
        let status = MetaStatus {
            id: 1,
            role: Role::Leader,
            leader: Some(1),
            leader_addr: None,
            term: 2,
            commit: 0,
            applied: 0,
            snapshot_index: 0,
            last_index: 0,
            members: vec![member(1, None), member(2, Some(7_000)), member(3, None)],
        };
        let mut state = MetaState::default();
        for id in [1, 2, 3] {
            let addr = format!("127.0.0.1:{id}");
            let info = NodeInfo {
                addr,
                joined_at_index: 1,
            };
            state.nodes.insert(id, info);
        }
        let just_elected = dead_nodes(&status, &state, Duration::from_secs(1));
        assert_eq!(just_elected.into_iter().collect::<Vec<_>>(), [2]);
        let settled = dead_nodes(&status, &state, DEAD_AFTER);
        assert_eq!(settled.into_iter().collect::<Vec<_>>(), [2, 3]);
    }
}
