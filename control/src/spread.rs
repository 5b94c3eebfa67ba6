//! Pipelines spread over several nodes: where their slots go, what each node runs of them,
//! and how the node that reports for a pipeline learns that the others have finished.
//!
//! A pipeline's *slots* are the cores it runs on across the cluster, numbered from 0. The
//! leader deals them out round-robin over the live nodes and records one [`Assignment`] per
//! slot (in slot order: the key groups the slot owns, its node and the core there), so keys
//! and source partitions go to slots exactly as they go to cores on one node. Each node runs
//! its slots as one job whose rows reach the other nodes' slots over the exchange
//! (`wire_actors::exchange`); the exchange listens on the node's gRPC port + 1, on the same
//! address, which is where other nodes look for it.
//!
//! The node running slot 0 is the pipeline's *primary*: it alone reports the pipeline running,
//! finished or failed. Another node's job that ends tells the primary over the exchange (a
//! *done* stream: `End` when it finished, `Refuse` with the reason when it failed); the primary
//! reports the pipeline finished once its own slots and every other node's have finished.
//! A node whose slots fail also reports the pipeline failed itself, at once.
//!
//! A spread pipeline that checkpoints takes its checkpoints in parts: every node runs a
//! coordinator for its own slots, all of them trigger the same checkpoint ids in turn (each
//! counts up from the checkpoint the pipeline restored), and barriers cross the exchange with
//! the rows, so an operator aligns the barriers of its inputs on every node. A node writes its
//! part (its slots' state and source positions) into its *part store* in the cluster's shared
//! checkpoint store and records it in the metadata (`NodeCheckpoint`, fenced by the pipeline's
//! version); the checkpoint is complete once every node of the assignment has recorded its
//! part, and only then do the nodes' sinks publish what they staged for it. A restore reads
//! every part of the newest complete checkpoint and merges them ([`merge_parts`]): each slot
//! takes its key groups and partitions from the whole, wherever they were before.
//!
//! Not spread (they run whole on one node, as before): pipelines that checkpoint without a
//! shared checkpoint store (no other node could read a part), or into a sink that commits
//! transactions (Kafka, PostgreSQL, Elasticsearch), and pipelines with an `ingest` source (its
//! port and WALs are per node).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire_actors::exchange::{ExchangeHub, Placement};
use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::{PipelineSpec, SinkKind, SourceKind};
use wire_net::exchange::{self, Frame, StreamKey};
use wire_storage::checkpoint::{Checkpoint, CheckpointStore, StoreUrl};

use crate::raft::{Assignment, MetaState, PipelineMeta};

/// Where a node's exchange listens, given its gRPC address: the same host, the next port.
pub fn exchange_addr(grpc: &str) -> Option<SocketAddr> {
    let addr = grpc.to_socket_addrs().ok()?.next()?;
    let port = addr.port().checked_add(1)?;
    Some(SocketAddr::new(addr.ip(), port))
}

/// Binds this node's exchange hub next to its gRPC address (over mutual TLS with `tls`).
pub fn bind_hub(
    grpc: SocketAddr,
    tls: Option<Arc<wire_actors::exchange::ExchangeTls>>,
) -> Result<Arc<ExchangeHub>, String> {
    let addr =
        exchange_addr(&grpc.to_string()).ok_or_else(|| format!("no exchange port after {grpc}"))?;
    ExchangeHub::bind(addr, tls).map_err(|err| {
        format!("cannot listen for the exchange on {addr} (the gRPC port + 1): {err}")
    })
}

/// Whether `pipeline` can be spread over nodes, and its key groups if so; `shared_store`
/// says whether checkpoints go to a store every node reaches. An `ingest` source spreads when
/// the pipeline checkpoints (into the shared store): every node serving some of its slots
/// listens for producers, and its connections feed the node's own slots (partition = slot,
/// WAL `p<slot>` in the node's data directory). Without checkpoints it stays whole: a spread
/// pipeline that does not checkpoint fails with any of its nodes, where a whole ingest
/// pipeline waits for its node and resumes from its WALs.
pub fn spreadable(pipeline: &PipelineMeta, shared_store: bool) -> Option<u32> {
    let spec = PipelineSpec::parse_stored("pipeline", &pipeline.spec_yaml).ok()?;
    let plan = Plan::from_spec(&spec).ok()?;
    if reads_ingest(&plan) && pipeline.options.checkpoint_interval_ms.is_none() {
        return None;
    }
    if pipeline.options.checkpoint_interval_ms.is_some() {
        let staged = plan.sinks.iter().all(|s| {
            matches!(
                s.kind,
                SinkKind::Blackhole | SinkKind::Stdout { .. } | SinkKind::File(_)
            )
        });
        if !shared_store || !staged {
            return None;
        }
    }
    Some(plan.settings.max_parallelism)
}

/// Whether the pipeline reads an `ingest` source: its input is in the WALs of the nodes its
/// slots run on, so those slots never move to another node (not on a node's death, not by
/// `scale`).
pub fn has_ingest_source(pipeline: &PipelineMeta) -> bool {
    let Ok(spec) = PipelineSpec::parse_stored("pipeline", &pipeline.spec_yaml) else {
        return false;
    };
    Plan::from_spec(&spec).is_ok_and(|plan| reads_ingest(&plan))
}

fn reads_ingest(plan: &Plan) -> bool {
    plan.sources
        .iter()
        .any(|s| matches!(s.kind, SourceKind::Ingest(_)))
}

/// Whether a spread pipeline takes its checkpoints in parts (it checkpoints at all).
pub fn checkpoints_in_parts(pipeline: &PipelineMeta) -> bool {
    is_spread(pipeline) && pipeline.options.checkpoint_interval_ms.is_some()
}

/// Where node `node` writes its parts of version `version` of a spread pipeline: a store of
/// its own inside the pipeline's place in the shared store (`root`). A new version (a move)
/// starts a new part store, so its checkpoint ids never meet the old version's.
pub fn part_store(root: &StoreUrl, version: u64, node: u64) -> StoreUrl {
    root.join(&format!("part-v{version}-n{node}"))
}

/// The pipeline version that took a complete checkpoint in parts (`parts_at`: where each
/// node's part is, one per line, each in a [`part_store`] `…/part-v<version>-n<node>/<chk>`):
/// file sinks fenced their staged parts with it.
pub fn parts_version(parts_at: &str) -> Result<u64, String> {
    let mut version = None;
    for location in parts_at.lines() {
        let store = location.trim_end_matches('/').rsplit('/').nth(1);
        let of_part = store
            .and_then(|store| store.strip_prefix("part-v"))
            .and_then(|rest| rest.split_once("-n"))
            .and_then(|(v, _)| v.parse::<u64>().ok());
        match (of_part, version) {
            (None, _) => {
                return Err(format!(
                    "checkpoint part `{location}` is not in a part store `part-v<version>-n<node>`"
                ))
            }
            (Some(v), Some(seen)) if v != seen => {
                return Err(format!(
                    "the parts of one checkpoint come from versions {seen} and {v}"
                ))
            }
            (Some(v), _) => version = Some(v),
        }
    }
    version.ok_or_else(|| "a checkpoint in parts lists no part".to_string())
}

/// Reads the parts of complete checkpoint `id` (where each node's part is, in its part
/// store, as the metadata lists them, one per line) and merges them into one checkpoint;
/// `staging` is a local directory for parts in an S3 store.
pub fn read_parts(
    id: u64,
    parts_at: &str,
    staging: &std::path::Path,
) -> Result<Checkpoint, String> {
    let mut parts = Vec::new();
    for (i, line) in parts_at.lines().enumerate() {
        // `<part store>/chk-<id>`: the store is its parent (a directory, or an S3 prefix).
        let store = std::path::Path::new(line)
            .parent()
            .and_then(|p| p.to_str())
            .ok_or_else(|| format!("checkpoint {id}: part location `{line}` names no store"))?;
        let url = StoreUrl::parse(store).map_err(|err| format!("part store `{store}`: {err}"))?;
        let store = CheckpointStore::open_url(&url, staging.join(format!("part-{i}")), usize::MAX)
            .map_err(|err| format!("part store {url}: {err}"))?;
        let part = store
            .read(id)
            .map_err(|err| format!("checkpoint {id}, part in {url}: {err}"))?;
        parts.push(part);
    }
    merge_parts(parts).ok_or_else(|| format!("checkpoint {id} has no parts"))
}

/// One checkpoint from the parts of several nodes: every source's positions and every
/// operator's instances, together.
pub fn merge_parts(parts: Vec<Checkpoint>) -> Option<Checkpoint> {
    let mut parts = parts.into_iter();
    let mut whole = parts.next()?;
    for part in parts {
        whole.last &= part.last;
        whole.completed_ms = whole.completed_ms.max(part.completed_ms);
        for source in part.sources {
            match whole.sources.iter_mut().find(|s| s.name == source.name) {
                Some(into) => into.positions.extend(source.positions),
                None => whole.sources.push(source),
            }
        }
        for operator in part.operators {
            match whole.operators.iter_mut().find(|o| o.name == operator.name) {
                Some(into) => into.instances.extend(operator.instances),
                None => whole.operators.push(operator),
            }
        }
    }
    for source in &mut whole.sources {
        source.positions.sort_by_key(|p| p.partition);
    }
    for operator in &mut whole.operators {
        operator.instances.sort_by_key(|i| i.core);
    }
    Some(whole)
}

/// Deals `slots` slots over `live` nodes (sorted) round-robin: one assignment per slot, in
/// slot order, each with the key groups the slot owns and its core on its node.
pub fn deal(live: &[u64], slots: usize, key_groups: u32) -> Vec<Assignment> {
    let mut next_core: BTreeMap<u64, u32> = BTreeMap::new();
    (0..slots)
        .map(|slot| {
            let node = live[slot % live.len()];
            let core = next_core.entry(node).or_default();
            let assignment = Assignment {
                key_group_start: first_key_group(slot, slots, key_groups),
                key_group_end: first_key_group(slot + 1, slots, key_groups),
                node,
                core: *core,
            };
            *core += 1;
            assignment
        })
        .collect()
}

/// The first key group slot `slot` (of `slots`) owns, as `key_group_owner` deals them.
fn first_key_group(slot: usize, slots: usize, key_groups: u32) -> u32 {
    let (slot, slots, groups) = (slot as u64, slots as u64, u64::from(key_groups));
    // The smallest g with g * slots / groups >= slot.
    u32::try_from((slot * groups).div_ceil(slots)).unwrap_or(u32::MAX)
}

/// Whether the pipeline's assignment spreads it over slots (rather than placing it whole).
pub fn is_spread(pipeline: &PipelineMeta) -> bool {
    pipeline.assignment.len() > 1
}

/// The primary node: the one running slot 0.
pub fn primary(pipeline: &PipelineMeta) -> Option<u64> {
    pipeline.assignment.first().map(|a| a.node)
}

/// What node `node` runs of a spread pipeline `name`.
pub fn placement(
    state: &MetaState,
    name: &str,
    pipeline: &PipelineMeta,
    node: u64,
    hub: &Arc<ExchangeHub>,
) -> Result<Placement, String> {
    let mut peers = Vec::with_capacity(pipeline.assignment.len());
    for a in &pipeline.assignment {
        let info = state.nodes.get(&a.node).ok_or_else(|| {
            format!(
                "slot {} is on node {}, which is not registered",
                peers.len(),
                a.node
            )
        })?;
        let addr = exchange_addr(&info.addr)
            .ok_or_else(|| format!("node {}'s address {} does not resolve", a.node, info.addr))?;
        peers.push(addr);
    }
    let local = pipeline
        .assignment
        .iter()
        .enumerate()
        .filter(|(_, a)| a.node == node)
        .map(|(slot, _)| slot)
        .collect();
    Ok(Placement {
        pipeline: name.to_string(),
        epoch: pipeline.version,
        slots: pipeline.assignment.len(),
        local,
        peers,
        hub: hub.clone(),
    })
}

/// The done stream of the node whose first slot is `first_slot`.
fn done_key(placement: &Placement, first_slot: usize) -> StreamKey {
    StreamKey {
        pipeline: placement.pipeline.clone(),
        epoch: placement.epoch,
        task: u32::MAX,
        edge: u32::MAX,
        from: u32::try_from(first_slot).unwrap_or(u32::MAX),
        to: 0,
    }
}

/// How long a node keeps trying to tell the primary that its slots ended.
const TELL_WAIT: Duration = Duration::from_secs(30);

/// Tells the primary (the node of slot 0) that this node's slots ended, and how, retrying
/// for [`TELL_WAIT`] unless `give_up` says why to stop first (the run was replaced: a dead
/// primary must not hold this node's slots of the new version back).
pub fn tell_primary(
    placement: &Placement,
    result: &Result<(), String>,
    mut give_up: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let first = placement.local.first().copied().unwrap_or_default();
    let key = done_key(placement, first);
    let mut bytes = Vec::new();
    let hello = Frame::Hello::<&[u8]> {
        version: exchange::VERSION,
        stream: key,
    };
    exchange::encode(&hello, &mut bytes);
    let last = match result {
        Ok(()) => Frame::<&[u8]>::End,
        Err(why) => Frame::Refuse(why.chars().take(1000).collect()),
    };
    exchange::encode(&last, &mut bytes);
    let primary = placement.peers[0];
    let deadline = Instant::now() + TELL_WAIT;
    loop {
        let tls = placement.hub.tls().map(|tls| tls.as_ref());
        let sent =
            wire_actors::exchange::send_blocking(tls, primary, &bytes, Duration::from_secs(5));
        match sent {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() >= deadline => {
                return Err(format!("cannot tell the primary {primary}: {err}"))
            }
            Err(err) => {
                if let Some(why) = give_up() {
                    return Err(format!(
                        "stopped telling the primary {primary} ({err}): {why}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// How long the primary waits, after its own slots ended, for the other nodes' to end: a
/// bounded pipeline's slots end within moments of each other (the ends travel with the rows).
const OTHERS_WAIT: Duration = Duration::from_secs(120);

/// Waits until every other node running slots of `placement` has told how its slots ended,
/// or `give_up` says to stop waiting; the first failure any of them reports, if one did.
pub fn wait_for_others(
    placement: &Placement,
    assignment: &[Assignment],
    mut give_up: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let here = assignment.first().map(|a| a.node);
    // Each other node by its first slot.
    let mut waiting: BTreeMap<u64, usize> = BTreeMap::new();
    for (slot, a) in assignment.iter().enumerate() {
        if Some(a.node) != here {
            waiting.entry(a.node).or_insert(slot);
        }
    }
    let deadline = Instant::now() + OTHERS_WAIT;
    while !waiting.is_empty() {
        if Instant::now() >= deadline {
            let nodes: Vec<&u64> = waiting.keys().collect();
            return Err(format!(
                "nodes {nodes:?} did not say how their slots ended within {} s",
                OTHERS_WAIT.as_secs()
            ));
        }
        let mut told = Vec::new();
        for (node, slot) in &waiting {
            let Some(stream) = placement.hub.claim(&done_key(placement, *slot)) else {
                continue;
            };
            told.push(*node);
            let bytes = stream
                .read_to_end(Duration::from_secs(5))
                .map_err(|err| format!("node {node}'s done stream: {err}"))?;
            match exchange::decode(&bytes) {
                Ok(Some((Frame::End, _))) => {}
                Ok(Some((Frame::Refuse(why), _))) => return Err(format!("node {node}: {why}")),
                other => return Err(format!("node {node} ended without saying how: {other:?}")),
            }
        }
        for node in told {
            waiting.remove(&node);
        }
        if let Some(why) = give_up() {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dealt_round_robin_with_the_key_groups_they_own() {
        let dealt = deal(&[1, 2, 3], 5, 128);
        let nodes: Vec<u64> = dealt.iter().map(|a| a.node).collect();
        assert_eq!(nodes, [1, 2, 3, 1, 2]);
        let cores: Vec<u32> = dealt.iter().map(|a| a.core).collect();
        assert_eq!(cores, [0, 0, 0, 1, 1]);
        assert_eq!(dealt[0].key_group_start, 0);
        assert_eq!(dealt[4].key_group_end, 128);
        for (slot, a) in dealt.iter().enumerate() {
            for group in a.key_group_start..a.key_group_end {
                assert_eq!(
                    wire_core::record::key::key_group_owner(group, 128, 5),
                    slot,
                    "group {group}"
                );
            }
            if slot > 0 {
                assert_eq!(a.key_group_start, dealt[slot - 1].key_group_end);
            }
        }
    }

    /// One node's part of checkpoint 4: `slot`'s instance of operator `agg` and `partition`
    /// of source `bids` (and, on slot 0 only, operator `only0`).
    fn part(slot: usize, partition: u32) -> Checkpoint {
        use wire_storage::checkpoint::{InstanceState, OperatorState, SourcePosition, SourceState};
        let instance = InstanceState {
            core: slot,
            sections: Vec::new(),
            delta: false,
        };
        let mut operators = vec![OperatorState {
            name: "agg".into(),
            kind: "tumbling window".into(),
            instances: vec![instance.clone()],
        }];
        if slot == 0 {
            operators.push(OperatorState {
                name: "only0".into(),
                kind: "top".into(),
                instances: vec![instance],
            });
        }
        Checkpoint {
            id: 4,
            pipeline: "p".into(),
            cores: 3,
            max_parallelism: 128,
            last: false,
            base: None,
            completed_ms: i64::from(partition),
            sources: vec![SourceState {
                name: "bids".into(),
                partitions: 3,
                positions: vec![SourcePosition {
                    partition,
                    position: u64::from(partition) * 100,
                    line: 0,
                    token: None,
                }],
            }],
            operators,
        }
    }

    #[test]
    fn parts_merge_into_one_checkpoint_in_slot_and_partition_order() {
        let merged = merge_parts(vec![part(2, 2), part(0, 0), part(1, 1)]).expect("parts");
        let positions: Vec<u32> = merged.sources[0]
            .positions
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(positions, [0, 1, 2]);
        assert_eq!(merged.sources.len(), 1);
        let agg: Vec<usize> = merged.operators[0]
            .instances
            .iter()
            .map(|i| i.core)
            .collect();
        assert_eq!(
            (merged.operators[0].name.as_str(), agg),
            ("agg", vec![0, 1, 2])
        );
        assert_eq!(merged.operators[1].name, "only0");
        assert_eq!(merged.completed_ms, 2);
        assert!(merge_parts(Vec::new()).is_none());
    }

    #[test]
    fn parts_are_read_from_the_stores_their_locations_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut locations = Vec::new();
        for slot in 0..2 {
            let store = CheckpointStore::open(dir.path().join(format!("part-v1-n{slot}")), 3)
                .expect("store");
            store.write(&part(slot, slot as u32)).expect("write");
            locations.push(store.location_of(4).display().to_string());
        }
        let staging = dir.path().join("staging");
        let merged = read_parts(4, &locations.join("\n"), &staging).expect("read");
        assert_eq!(merged.sources[0].positions.len(), 2);
        let missing = read_parts(5, &locations.join("\n"), &staging).expect_err("no 5");
        assert!(missing.contains("checkpoint 5, part in"), "{missing}");
    }

    #[test]
    fn the_version_of_a_checkpoint_in_parts_is_that_of_its_part_stores() {
        let at = "/s/q5-0/part-v7-n1/chk-00000004\ns3://b/p/q5-0/part-v7-n2/chk-00000004/";
        assert_eq!(parts_version(at), Ok(7));
        let mixed = parts_version("/s/part-v7-n1/chk-4\n/s/part-v8-n2/chk-4").expect_err("mixed");
        assert!(mixed.contains("versions 7 and 8"), "{mixed}");
        let foreign = parts_version("/s/elsewhere/chk-4").expect_err("not a part store");
        assert!(foreign.contains("`/s/elsewhere/chk-4`"), "{foreign}");
        assert!(parts_version("").is_err());
    }

    #[test]
    fn the_exchange_listens_on_the_next_port() {
        assert_eq!(
            exchange_addr("127.0.0.11:7000"),
            Some("127.0.0.11:7001".parse().expect("addr"))
        );
        assert_eq!(exchange_addr("127.0.0.1:65535"), None);
    }
}
