//! What the node hosting a running pipeline answers: its live per-operator counters, and
//! checkpoints and savepoints taken on demand by its checkpoint coordinator.
//!
//! Any member takes the request; the pipeline's placement in the metadata names its host, and
//! a member that is not the host forwards the request there once ([`forward::host`]). The host
//! reads the job from its [`LocalJobs`](crate::supervisor::LocalJobs).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::Status;
use wire_actors::{Role, RunProbe};

use super::{convert, forward, AdminServer};
use crate::checkpoint::OnDemandError;
use crate::proto::admin::{
    CreateSavepointResponse, IngestEndpoint, OperatorStatus, PipelineRef, TriggerCheckpointResponse,
};
use crate::raft::{ActualState, DesiredState, MetaCommand, MetaState, PipelineMeta};
use crate::transport::propose_anywhere;

/// How long the host waits for an on-demand checkpoint before it answers DEADLINE_EXCEEDED
/// (within `wirectl`'s 15 s and a forward's 12 s).
const ON_DEMAND_WAIT: Duration = Duration::from_secs(10);

/// How long the node that took an on-demand checkpoint of a spread pipeline waits for the
/// metadata to record it complete once every node wrote its part (within `wirectl`'s 15 s).
const RECORD_WAIT: Duration = Duration::from_secs(3);

/// How long a member waits for the host's counters before it answers without them.
const COUNTERS_WAIT: Duration = Duration::from_secs(2);

/// Where a request about a running pipeline is served.
pub enum Hosting {
    /// Here: this node runs it.
    Here,
    /// By the node that runs it.
    Node(Box<forward::Peer>),
}

/// Whether `pipeline` may take a checkpoint or savepoint (`what`) on demand: it checkpoints,
/// runs and is not paused.
pub fn check_on_demand(name: &str, pipeline: &PipelineMeta, what: &str) -> Result<(), Status> {
    if pipeline.options.checkpoint_interval_ms.is_none() {
        return Err(Status::failed_precondition(format!(
            "pipeline `{name}` does not checkpoint (it was created without \
             --checkpoint-interval), so it takes no {what}; create it again with \
             --checkpoint-interval"
        )));
    }
    if pipeline.desired == DesiredState::Paused || pipeline.actual == ActualState::Paused {
        return Err(paused(name, what));
    }
    if pipeline.actual != ActualState::Running || pipeline.desired != DesiredState::Running {
        let state = match pipeline.desired {
            DesiredState::Stopped if pipeline.actual == ActualState::Running => "stopping",
            _ => convert::actual_name(pipeline.actual),
        };
        return Err(Status::failed_precondition(format!(
            "pipeline `{name}` is {state}, not running: only a running pipeline takes a {what}"
        )));
    }
    Ok(())
}

/// A savepoint of a spread pipeline is refused: its checkpoints are in parts, one per node,
/// and a savepoint is one directory a run restores from whole.
pub fn check_savepoint_whole(name: &str, pipeline: &PipelineMeta) -> Result<(), Status> {
    if !crate::spread::checkpoints_in_parts(pipeline) {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "pipeline `{name}` is spread over nodes and checkpoints in parts (one per node); a \
         savepoint of a spread pipeline is not built yet: take a checkpoint (`wirectl \
         checkpoint trigger {name}`), or stop it and create it again with --cores so it runs \
         whole"
    )))
}

fn paused(name: &str, what: &str) -> Status {
    Status::failed_precondition(format!(
        "pipeline `{name}` is paused: a paused pipeline takes no {what} (its sources read no \
         barrier); resume it first (`wirectl pipeline resume {name}`)"
    ))
}

/// A savepoint directory must be given, and absolute: it is a directory on the hosting node,
/// whose working directory the caller does not know.
pub fn check_savepoint_dir(dir: &str) -> Result<(), Status> {
    if dir.trim().is_empty() {
        return Err(Status::invalid_argument(
            "dir: give the directory the savepoint goes into",
        ));
    }
    if !Path::new(dir).is_absolute() {
        return Err(Status::invalid_argument(format!(
            "dir: `{dir}` is relative; give an absolute directory on the node that hosts the \
             pipeline"
        )));
    }
    Ok(())
}

/// Creates `dir` if needed and checks a file can be written in it, before any checkpoint is
/// triggered for it.
fn check_writable(node: u64, dir: &Path) -> Result<(), Status> {
    let refused = |err: std::io::Error| {
        Status::failed_precondition(format!(
            "savepoint directory {} on node {node}: {err}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(refused)?;
    let probe = dir.join(format!(".wire-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(refused)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl AdminServer {
    /// Where pipeline `name` runs: here, or the node to forward to. `hop`: the request was
    /// forwarded here as the host, so it is not forwarded again.
    pub(super) async fn host(
        &self,
        state: &MetaState,
        name: &str,
        hop: bool,
    ) -> Result<Hosting, Status> {
        let Some(node) = state
            .pipelines
            .get(name)
            .and_then(|p| p.assignment.first())
            .map(|a| a.node)
        else {
            return Err(Status::unavailable(format!(
                "pipeline `{name}` is not placed on a node yet; retry"
            )));
        };
        if node == self.node_id {
            return Ok(Hosting::Here);
        }
        if hop {
            return Err(Status::unavailable(format!(
                "pipeline `{name}` moved from node {} to node {node}; retry",
                self.node_id
            )));
        }
        let Some(info) = state.nodes.get(&node) else {
            return Err(Status::unavailable(format!(
                "pipeline `{name}` is placed on node {node}, which is not a member; retry"
            )));
        };
        let dialer = self.transport.dialer();
        let peer = forward::host(self.node_id, &dialer, (node, info.addr.clone()), name).await?;
        Ok(Hosting::Node(Box::new(peer)))
    }

    /// What pipeline `name` shows live: its per-operator counters, summed over every node it
    /// runs on, and where producers reach its ingest sources. When the request was forwarded
    /// here (`hop`), only what runs on this node. Nothing when it does not run (created,
    /// finished, failed); a node that cannot answer within [`COUNTERS_WAIT`] is left out.
    pub(super) async fn live(
        &self,
        state: &MetaState,
        name: &str,
        hop: bool,
    ) -> (Vec<OperatorStatus>, Vec<IngestEndpoint>) {
        let Some(pipeline) = state.pipelines.get(name).filter(|p| {
            matches!(
                p.actual,
                ActualState::Running | ActualState::Paused | ActualState::Stopping
            )
        }) else {
            return (Vec::new(), Vec::new());
        };
        let here = state.nodes.get(&self.node_id).map(|n| n.addr.as_str());
        if hop {
            return self.live_here(name, here.unwrap_or_default());
        }
        let mut nodes: Vec<u64> = pipeline.assignment.iter().map(|a| a.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut parts = Vec::new();
        for node in nodes {
            let slots = pipeline
                .assignment
                .iter()
                .filter(|a| a.node == node)
                .count();
            let part = match node == self.node_id {
                true => Some(self.live_here(name, here.unwrap_or_default())),
                false => self.live_of(state, name, node).await,
            };
            parts.extend(part.map(|part| (slots, part)));
        }
        let operators = merge_counters(parts.iter().map(|(slots, (ops, _))| (*slots, ops)));
        let ingest = parts
            .into_iter()
            .flat_map(|(_, (_, ingest))| ingest)
            .collect();
        (operators, ingest)
    }

    /// What node `node` runs of pipeline `name`, asked with a hop (so it answers for itself).
    async fn live_of(
        &self,
        state: &MetaState,
        name: &str,
        node: u64,
    ) -> Option<(Vec<OperatorStatus>, Vec<IngestEndpoint>)> {
        let info = state.nodes.get(&node)?;
        let dialer = self.transport.dialer();
        let asked = async {
            let peer =
                forward::host(self.node_id, &dialer, (node, info.addr.clone()), name).await?;
            let mut request = peer.request(PipelineRef { name: name.into() });
            request.set_timeout(COUNTERS_WAIT);
            peer.client.clone().get_pipeline(request).await
        };
        match tokio::time::timeout(COUNTERS_WAIT, asked).await {
            Ok(Ok(answer)) => {
                let answer = answer.into_inner();
                Some((answer.operators, answer.ingest))
            }
            Ok(Err(status)) => {
                tracing::debug!(pipeline = %name, node, error = %status.message(), "nothing live from the node");
                None
            }
            Err(_) => {
                tracing::debug!(pipeline = %name, node, "nothing live from the node in time");
                None
            }
        }
    }

    /// This node's part of pipeline `name`: its counters and its ingest listeners (an address
    /// bound to every interface given with the host of `advertised`, the node's gRPC address).
    fn live_here(
        &self,
        name: &str,
        advertised: &str,
    ) -> (Vec<OperatorStatus>, Vec<IngestEndpoint>) {
        let Some(job) = self.jobs.get(name) else {
            return (Vec::new(), Vec::new());
        };
        let host = advertised
            .rsplit_once(':')
            .map(|(host, _)| host.trim_matches(['[', ']']))
            .and_then(|host| host.parse::<std::net::IpAddr>().ok());
        let listening = job.ingest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ingest = listening
            .into_iter()
            .map(|(source, mut addr)| {
                if let Some(ip) = host.filter(|_| addr.ip().is_unspecified()) {
                    addr.set_ip(ip);
                }
                IngestEndpoint {
                    source,
                    node: self.node_id,
                    address: addr.to_string(),
                    partitions: job.slots.iter().map(|s| *s as u32).collect(),
                }
            })
            .collect();
        (operator_rows(&job.probe, job.cores), ingest)
    }

    /// Takes a checkpoint of pipeline `name`, which runs here, and records it.
    pub(super) async fn trigger_here(
        &self,
        name: &str,
    ) -> Result<TriggerCheckpointResponse, Status> {
        let (id, path) = self.on_demand(name, None, "checkpoint").await?;
        let path = path.display().to_string();
        let command = MetaCommand::RecordCheckpoint {
            name: name.to_string(),
            id,
            path: path.clone(),
        };
        // The job thread records it too once it sees it on disk; whichever comes second is
        // refused as not newer, which is fine.
        let dialer = self.transport.dialer();
        if let Err(err) = propose_anywhere(&self.meta, &dialer, command).await {
            tracing::debug!(pipeline = %name, id, error = %err, "checkpoint already recorded");
        }
        Ok(TriggerCheckpointResponse {
            checkpoint_id: id,
            path,
            node_id: self.node_id,
        })
    }

    /// Takes a checkpoint of spread pipeline `name` on demand: asks every node it runs on
    /// for its part at once (its coordinator triggers its next checkpoint id; the ids of all
    /// nodes stay in step, and a part completes only once every node's sources sent its
    /// barrier), then waits until the metadata records the checkpoint complete. `hop`: this
    /// node was asked for its part only.
    pub(super) async fn trigger_spread(
        &self,
        state: &MetaState,
        name: &str,
        hop: bool,
    ) -> Result<TriggerCheckpointResponse, Status> {
        if hop {
            let (id, path) = self.on_demand(name, None, "checkpoint").await?;
            return Ok(TriggerCheckpointResponse {
                checkpoint_id: id,
                path: path.display().to_string(),
                node_id: self.node_id,
            });
        }
        let mut nodes: Vec<u64> = state
            .pipelines
            .get(name)
            .map(|p| p.assignment.iter().map(|a| a.node).collect())
            .unwrap_or_default();
        nodes.sort_unstable();
        nodes.dedup();
        let mut others = tokio::task::JoinSet::new();
        for &node in nodes.iter().filter(|&&node| node != self.node_id) {
            let Some(info) = state.nodes.get(&node) else {
                return Err(Status::unavailable(format!(
                    "pipeline `{name}` runs on node {node}, which is not a member; retry"
                )));
            };
            let peer = (node, info.addr.clone());
            let (this, dialer, name) = (self.node_id, self.transport.dialer(), name.to_string());
            others.spawn(async move { part_of(this, &dialer, peer, &name).await });
        }
        let here = async {
            match nodes.contains(&self.node_id) {
                true => self
                    .on_demand(name, None, "checkpoint")
                    .await
                    .map(|(id, _)| id),
                false => Ok(0),
            }
        };
        let (here, others) = tokio::join!(here, others.join_all());
        let mut newest = here?;
        for part in others {
            newest = newest.max(part?);
        }
        self.recorded(name, newest).await
    }

    /// The first complete checkpoint of `name` from `id` on, once the metadata records it.
    async fn recorded(&self, name: &str, id: u64) -> Result<TriggerCheckpointResponse, Status> {
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        loop {
            if let Ok(state) = self.meta.read(false).await {
                let record = state
                    .pipelines
                    .get(name)
                    .and_then(|p| p.checkpoints.iter().find(|c| c.id >= id));
                if let Some(record) = record {
                    return Ok(TriggerCheckpointResponse {
                        checkpoint_id: record.id,
                        path: record.path.clone(),
                        node_id: self.node_id,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "every node of pipeline `{name}` wrote its part of checkpoint {id}, but the \
                     metadata does not record it complete after {}s; see `wirectl checkpoint \
                     list {name}`",
                    RECORD_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes a savepoint of pipeline `name`, which runs here, into `dir`, and records it.
    pub(super) async fn savepoint_here(
        &self,
        name: &str,
        dir: &str,
    ) -> Result<CreateSavepointResponse, Status> {
        let dir = PathBuf::from(dir);
        let (id, path) = self.on_demand(name, Some(dir), "savepoint").await?;
        let path = path.display().to_string();
        let command = MetaCommand::RecordSavepoint {
            name: name.to_string(),
            path: path.clone(),
            checkpoint_id: id,
        };
        let dialer = self.transport.dialer();
        if let Err(err) = propose_anywhere(&self.meta, &dialer, command).await {
            tracing::warn!(pipeline = %name, id, error = %err, "cannot record the savepoint");
        }
        Ok(CreateSavepointResponse {
            path,
            checkpoint_id: id,
            node_id: self.node_id,
        })
    }

    /// Asks the coordinator of pipeline `name` for a checkpoint now (a savepoint into
    /// `savepoint_dir` when given) and waits for it.
    async fn on_demand(
        &self,
        name: &str,
        savepoint_dir: Option<PathBuf>,
        what: &str,
    ) -> Result<(u64, PathBuf), Status> {
        let node = self.node_id;
        let Some(job) = self.jobs.get(name) else {
            return Err(Status::unavailable(format!(
                "pipeline `{name}` is placed on node {node} but does not run there yet \
                 (starting or restarting); retry"
            )));
        };
        if job.paused {
            return Err(paused(name, what));
        }
        let Some(coordinator) = job.coordinator else {
            return Err(Status::failed_precondition(format!(
                "pipeline `{name}` does not checkpoint, so it takes no {what}"
            )));
        };
        if let Some(dir) = &savepoint_dir {
            check_writable(node, dir)?;
        }
        match coordinator.checkpoint(savepoint_dir, ON_DEMAND_WAIT).await {
            Ok(done) => Ok(done),
            Err(OnDemandError::Failed(why)) => Err(Status::aborted(format!(
                "the {what} of pipeline `{name}` failed: {why}"
            ))),
            Err(OnDemandError::TimedOut) => Err(Status::deadline_exceeded(format!(
                "the {what} of pipeline `{name}` is not complete after {}s; it may still \
                 complete within the pipeline's checkpoint timeout (see `wirectl checkpoint \
                 list {name}`)",
                ON_DEMAND_WAIT.as_secs()
            ))),
            Err(OnDemandError::Gone) => Err(Status::unavailable(format!(
                "pipeline `{name}` ended or restarted on node {node} before its {what} \
                 completed; retry"
            ))),
        }
    }
}

/// Asks node `peer` (id, address) for its part of an on-demand checkpoint of spread pipeline
/// `pipeline`: the id of the checkpoint its part went into.
async fn part_of(
    this: u64,
    dialer: &crate::transport::Dialer,
    peer: (u64, String),
    pipeline: &str,
) -> Result<u64, Status> {
    let mut node = forward::host(this, dialer, peer, pipeline).await?;
    let request = node.request(PipelineRef {
        name: pipeline.into(),
    });
    let answer = node.client.trigger_checkpoint(request).await;
    node.answer(answer)
        .map(|part| part.into_inner().checkpoint_id)
}

/// One row per plan node of a running pipeline on `cores` cores, from its live probe.
pub fn operator_rows(probe: &RunProbe, cores: usize) -> Vec<OperatorStatus> {
    let busy_ns = probe.started.elapsed().as_nanos().max(1) as f64 * cores.max(1) as f64;
    probe
        .nodes
        .iter()
        .map(|node| {
            let rows_in = match node.role {
                Role::Source => node.total(|c| &c.events),
                _ => node.total(|c| &c.rows_in),
            };
            let blocked_ns = node.total(|c| &c.blocked_ns) as f64;
            let watermark_ms = node
                .cores
                .iter()
                .map(|c| c.watermark_ms.load(Ordering::Relaxed))
                .filter(|ms| *ms != wire_actors::NO_WATERMARK)
                .min();
            OperatorStatus {
                name: node.name.clone(),
                rows_in,
                rows_out: node.total(|c| &c.rows_out),
                backpressure: (blocked_ns / busy_ns).clamp(0.0, 1.0),
                watermark_ms,
                role: role_name(node.role).to_string(),
            }
        })
        .collect()
}

/// The counters of the nodes a pipeline runs on, each with its slot count, as one: rows
/// summed, backpressure averaged over the slots, the lowest watermark. Nodes run the same plan,
/// so their rows line up; a node whose rows do not (an older version) is left out.
fn merge_counters<'a>(
    parts: impl Iterator<Item = (usize, &'a Vec<OperatorStatus>)>,
) -> Vec<OperatorStatus> {
    let mut merged: Vec<OperatorStatus> = Vec::new();
    let mut slots = 0usize;
    for (part_slots, part) in parts.filter(|(_, ops)| !ops.is_empty()) {
        if merged.is_empty() {
            merged = part.clone();
            merged
                .iter_mut()
                .for_each(|op| op.backpressure *= part_slots as f64);
            slots = part_slots;
            continue;
        }
        let same =
            merged.len() == part.len() && merged.iter().zip(part).all(|(a, b)| a.name == b.name);
        if !same {
            continue;
        }
        slots += part_slots;
        for (into, op) in merged.iter_mut().zip(part) {
            into.rows_in += op.rows_in;
            into.rows_out += op.rows_out;
            into.backpressure += op.backpressure * part_slots as f64;
            into.watermark_ms = match (into.watermark_ms, op.watermark_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let slots = slots.max(1) as f64;
    merged.iter_mut().for_each(|op| op.backpressure /= slots);
    merged
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Operator => "operator",
        Role::Sink => "sink",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use wire_actors::{Counters, Role, RunProbe};

    use super::{merge_counters, operator_rows};
    use crate::proto::admin::OperatorStatus;

    fn op(name: &str, rows: u64, backpressure: f64, watermark_ms: Option<i64>) -> OperatorStatus {
        OperatorStatus {
            name: name.to_string(),
            rows_in: rows,
            rows_out: rows,
            backpressure,
            watermark_ms,
            role: "operator".to_string(),
        }
    }

    #[test]
    fn nodes_counters_sum_weighted_by_their_slots() {
        let one = vec![op("a", 10, 0.5, Some(300)), op("b", 1, 0.0, None)];
        let two = vec![op("a", 30, 0.2, Some(100)), op("b", 2, 0.0, Some(5))];
        let other_plan = vec![op("x", 1000, 1.0, None)];
        let none = Vec::new();
        let parts = [(1, &one), (3, &two), (1, &other_plan), (2, &none)];
        let merged = merge_counters(parts.into_iter());
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].rows_in, merged[0].rows_out), (40, 40));
        assert!((merged[0].backpressure - (0.5 + 3.0 * 0.2) / 4.0).abs() < 1e-9);
        assert_eq!(merged[0].watermark_ms, Some(100));
        assert_eq!((merged[1].rows_in, merged[1].watermark_ms), (3, Some(5)));
    }

    #[test]
    fn rows_sum_cores_and_the_watermark_is_the_lowest_sent() {
        let nodes = vec![
            ("rows".to_string(), Role::Source, "ingest".to_string()),
            ("big".to_string(), Role::Operator, "filter".to_string()),
        ];
        let probe = RunProbe::new(nodes, 2);
        for core in &probe.nodes[0].cores {
            Counters::add(&core.events, 10);
            Counters::add(&core.rows_out, 10);
        }
        Counters::add(&probe.nodes[1].cores[1].rows_in, 7);
        probe.nodes[1].cores[0]
            .watermark_ms
            .store(2_000, Ordering::Relaxed);
        probe.nodes[1].cores[1]
            .watermark_ms
            .store(1_000, Ordering::Relaxed);
        let rows = operator_rows(&probe, 2);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].rows_in, rows[0].rows_out), (20, 20));
        assert_eq!(rows[0].watermark_ms, None, "a source that sent none");
        assert_eq!(rows[0].role, "source");
        assert_eq!((rows[1].name.as_str(), rows[1].rows_in), ("big", 7));
        assert_eq!(rows[1].watermark_ms, Some(1_000));
        assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.backpressure)));
    }
}
