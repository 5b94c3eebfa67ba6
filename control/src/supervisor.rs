//! The pipeline supervisor of a `wire start` node: runs the pipelines the metadata places on
//! this node on the node's core pool, and records in the metadata what they do.
//!
//! Every [`TICK`] it reads the node's applied metadata (a local read) and reconciles:
//! - on the leader, a pipeline that is placed nowhere yet is placed, whole, on the registered
//!   node that runs the fewest pipelines (spreading a pipeline's key groups over several
//!   nodes comes with the exchange between nodes);
//! - a pipeline placed here that should run and does not is started as a [`Job`] on its own
//!   thread (the job blocks: it restores state, waits for its cores, writes its last
//!   checkpoint), its desired state is passed on (pause, resume, stop), and a new version
//!   (`wirectl pipeline scale`) stops it and starts it again from its last checkpoint;
//! - what the jobs report (running, paused, stopping, finished, failed, checkpoints) is
//!   proposed to the metadata, through the leader when this node does not lead.
//!
//! Each running job is listed in the node's [`LocalJobs`] (its live counters and a link to its
//! checkpoint coordinator), which the AdminService reads to answer `pipeline get` and to take
//! checkpoints and savepoints on demand.
//!
//! A pipeline's files live under `<data-dir>/pipelines/<name>/`: the spec of each version
//! (`v<version>/<name>.yaml`, or `.sql`), its WALs (`data/`) and the checkpoints of this incarnation of it
//! (`checkpoints-<index>/`, after the raft index that created it: a pipeline deleted and
//! created again under the same name starts without the old one's checkpoints, which are
//! removed, so `--from-savepoint` applies; its WALs stay). Paths inside the spec (file sinks,
//! file sources) are taken relative to the node's working directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::mpsc;
use wire_actors::{PoolHandle, RunProbe};
use wire_storage::checkpoint::{CheckpointStore, StoreUrl};

use crate::checkpoint::CoordinatorLink;

use crate::job::{self, CheckpointArgs, Job, Outcome, RunArgs};
use crate::raft::{
    ActualState, Assignment, DesiredState, MetaCommand, MetaHandle, MetaState, PipelineMeta, Role,
};
use crate::transport::{propose_anywhere, Dialer};

/// How often the supervisor reconciles.
const TICK: Duration = Duration::from_millis(200);
/// How often a job thread looks at its commands, notices and checkpoints.
const JOB_POLL: Duration = Duration::from_millis(50);
/// How often a job thread looks for newly completed checkpoints to record (the directory is
/// listed each time).
const CHECKPOINT_LOOK: Duration = Duration::from_millis(500);
/// `wire run`'s defaults, for the options `wirectl pipeline create` was not given.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);
const CHECKPOINTS_RETAINED: usize = 3;
const CHECKPOINT_DELTAS: u32 = 10;
/// Parts of a spread pipeline's checkpoints a node keeps beyond the retained count: a part
/// must outlive its checkpoint's completion, which waits for the slowest node.
const PARTS_SLACK: usize = 16;
/// How long a node whose part of a spread, checkpointed pipeline failed waits before it asks
/// for the pipeline to restart from its last complete checkpoint (a new version on the same
/// nodes); a node found dead meanwhile gets its slots moved instead.
const RESTART_DELAY: Duration = Duration::from_secs(2);
/// How long after its part failed a node holds the restart while another node of the run
/// looks dead (its exchange port refuses connections or does not answer): long enough for the
/// leader to judge it dead ([`crate::failover::DEAD_AFTER`]) and move its slots, the one new
/// version, also when the dead node was the leader (an election first, then a new leader waits
/// `DEAD_AFTER` from its election). Past it the restart is asked for all the same.
const RESTART_HOLD: Duration = Duration::from_secs(crate::failover::DEAD_AFTER.as_secs() + 5);
/// How often a held restart looks again at the run's other nodes.
const HOLD_LOOK: Duration = Duration::from_millis(500);
/// How long a look at a node's exchange port waits for the connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a node whose part of a spread, checkpointed pipeline finished waits for the
/// pipeline to be recorded finished before it publishes its sinks' staged files.
const PUBLISH_WAIT: Duration = Duration::from_secs(600);
/// How long it still waits once its job is told to stop meanwhile.
const STOPPED_PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// The jobs running on this node, by pipeline name: shared by the job threads (each lists
/// itself once deployed and leaves when it ended) and the AdminService (which reads them);
/// and the node's data cores.
#[derive(Clone, Default)]
pub struct LocalJobs {
    jobs: Arc<Mutex<HashMap<String, JobLink>>>,
    cores: usize,
}

/// What the AdminService may reach of a running job.
#[derive(Clone)]
pub struct JobLink {
    /// The pipeline version the job runs.
    pub version: u64,
    /// Its live counters.
    pub probe: Arc<RunProbe>,
    /// Its data cores.
    pub cores: usize,
    /// Its checkpoint coordinator, when it checkpoints.
    pub coordinator: Option<CoordinatorLink>,
    /// Whether it is paused (its sources read no barrier, so it takes no checkpoint).
    pub paused: bool,
    /// Its ingest sources' listeners (source, bound address), as they start listening.
    pub ingest: Arc<Mutex<Vec<(String, std::net::SocketAddr)>>>,
    /// The slots it runs (its partitions), in core order.
    pub slots: Vec<usize>,
}

impl LocalJobs {
    /// No jobs yet, on a node of `cores` data cores.
    pub fn new(cores: usize) -> LocalJobs {
        LocalJobs {
            jobs: Arc::default(),
            cores,
        }
    }

    /// The node's data cores: on the leader, how many slots of a spread pipeline it deals
    /// each node at most.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The job of pipeline `name`, if one runs here.
    pub fn get(&self, name: &str) -> Option<JobLink> {
        self.lock().get(name).cloned()
    }

    fn insert(&self, name: &str, link: JobLink) {
        self.lock().insert(name.to_string(), link);
    }

    /// Forgets the job of `name` at `version` (not a newer one that replaced it).
    fn remove(&self, name: &str, version: u64) {
        let mut jobs = self.lock();
        if jobs.get(name).is_some_and(|link| link.version == version) {
            jobs.remove(name);
        }
    }

    fn set_paused(&self, name: &str, paused: bool) {
        if let Some(link) = self.lock().get_mut(name) {
            link.paused = paused;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, JobLink>> {
        // The map holds no invariant a panicking holder could break halfway.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the node gives its supervisor.
pub struct Supervised {
    /// This node's id.
    pub node: u64,
    /// The metadata group.
    pub meta: MetaHandle,
    /// How it connects to other members.
    pub dialer: Dialer,
    /// The node's core pool.
    pub pool: PoolHandle,
    /// Its data cores.
    pub cores: usize,
    /// Whether its cores are pinned.
    pub pin: bool,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// Where pipelines' checkpoints go, if not in their directories on this node.
    pub checkpoint_store: Option<StoreUrl>,
    /// Where running jobs show their figures (`--metrics-addr`).
    pub metrics: crate::metrics::Metrics,
    /// The node's running jobs, shared with its AdminService.
    pub jobs: LocalJobs,
    /// The node's exchange listener, for pipelines spread over nodes.
    pub hub: Arc<wire_actors::exchange::ExchangeHub>,
    /// The runs (pipeline, incarnation, version) whose job on this node has ended and whose
    /// end is recorded (or, for a secondary part, told to the primary): not started again,
    /// though this node's copy of the metadata may not show that end yet.
    pub done: Arc<Mutex<std::collections::HashSet<Run>>>,
    /// Who may produce to ingest sources (security on: tokens); `None`: everyone.
    pub ingest_auth: Option<Arc<dyn wire_actors::IngestAuth>>,
    /// TLS on ingest ports (security on); `None`: plaintext.
    pub ingest_tls: Option<Arc<wire_actors::IngestTls>>,
    /// Added to the ports of the ingest sources this node serves (`--ingest-port-offset`).
    pub ingest_port_offset: u16,
    /// The (pipeline, version) parts this process has launched: a spread part found at a
    /// version it ran before a restart asks for a restart instead ([`relaunched_alone`]).
    pub launched: Arc<Mutex<std::collections::HashSet<(String, u64)>>>,
}

/// One run of a pipeline: its name, the raft index that created it (a pipeline deleted and
/// created again under the same name starts at version 1 again) and its version.
pub type Run = (String, u64, u64);

impl Supervised {
    /// Records that `run` ended here, so that [`reconcile`] does not launch it again.
    fn mark_done(&self, run: Option<Run>) {
        if let Some(run) = run {
            let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            done.insert(run);
        }
    }
}

/// What the supervisor tells a job's thread.
enum JobCommand {
    Pause,
    Resume,
    Stop,
    /// End the run without draining (its output is discarded): the text says why.
    Abort(String),
    /// A spread pipeline's checkpoint is complete on every node: sinks may publish it.
    Complete(u64),
    /// A spread pipeline is recorded finished: publish what the sinks staged at the end.
    Publish,
}

/// What a job's thread tells the supervisor.
enum JobEvent {
    /// The pipeline, the version the job runs, its state.
    Actual(String, u64, ActualState),
    /// The pipeline, the version the job runs, a checkpoint it completed and where it is.
    Checkpoint(String, u64, u64, PathBuf),
    /// A node's part of a spread, checkpointed pipeline failed while it ran: restart the
    /// pipeline (at this version) from its last complete checkpoint.
    Restart(String, u64),
    Ended(String, u64, Result<(), String>),
    /// The job (of this version) ended after asking for a restart: nothing to record, and
    /// nothing to launch again until a newer version comes.
    Superseded(String, u64),
}

/// A job running on this node, as the supervisor sees it.
struct Local {
    version: u64,
    /// The raft index that created the pipeline (its incarnation).
    created: u64,
    commands: Sender<JobCommand>,
    paused: bool,
    stopping: bool,
    /// Runs some slots of a spread pipeline whose primary is another node: its end is told
    /// to the primary, not recorded.
    secondary: bool,
    /// Runs a part of a spread pipeline that checkpoints in parts.
    in_parts: bool,
    /// Runs some slots of a pipeline spread over nodes (primary or not).
    spread: bool,
    /// The newest complete checkpoint the job was told of.
    completed: u64,
    /// The job was told that the pipeline finished.
    published: bool,
}

/// Reconciles until `shutdown` fires, then stops this node's jobs gracefully (each takes its
/// final checkpoint) and waits for them, at most [`DRAIN_WAIT`]. What they do then is not
/// recorded: their pipelines stay as they are in the metadata, and run again when the node
/// comes back.
pub async fn run(node: Supervised, mut shutdown: tokio::sync::oneshot::Receiver<()>) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut jobs: HashMap<String, Local> = HashMap::new();
    let mut awaiting = Awaiting::new();
    let mut led_since: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
            Some(event) = events.recv() => {
                report(&node, (&mut jobs, &mut awaiting), event).await;
                continue;
            }
        }
        let Ok(state) = node.meta.read(false).await else {
            continue;
        };
        if leads(&node.meta).await {
            let led_for = led_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed();
            let shared_store = node.checkpoint_store.is_some();
            place(&node.meta, &state, node.cores, (led_for, shared_store)).await;
        } else {
            led_since = None;
        }
        reconcile(&node, &state, (&mut jobs, &mut awaiting), &events_tx);
    }
    drain(jobs, events).await;
}

/// How long a stopping node waits for its jobs to drain and take their final checkpoints.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// Stops every job and waits (bounded) until each has ended. A part of a spread pipeline is
/// aborted, not drained: its inputs from the other nodes, which go on running, would never end.
/// The others' parts then fail as when the node dies, and the node, back, asks for a restart of
/// every part (`relaunched_alone`).
async fn drain(mut jobs: HashMap<String, Local>, mut events: mpsc::UnboundedReceiver<JobEvent>) {
    for local in jobs.values() {
        let command = match local.spread {
            true => JobCommand::Abort("the node is stopping".to_string()),
            false => JobCommand::Stop,
        };
        let _ = local.commands.send(command);
    }
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while !jobs.is_empty() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(JobEvent::Ended(name, _, _))) => {
                jobs.remove(&name);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if !jobs.is_empty() {
        let names: Vec<&String> = jobs.keys().collect();
        tracing::warn!(?names, "pipelines still draining when the node stopped");
    }
}

async fn leads(meta: &MetaHandle) -> bool {
    meta.status()
        .await
        .is_ok_and(|status| status.role == Role::Leader)
}

/// A member the leader heard from this recently counts as up when pipelines are placed.
const LIVE_CONTACT_MS: u64 = 3_000;

/// Places every unplaced pipeline that should run on the live node running the fewest; a
/// pipeline stopped before it was placed is recorded as finished. The pipelines of dead nodes
/// are moved or failed ([`crate::failover`]); this node has led for `led_for`, and
/// `shared_store` says whether checkpoints go to a store all nodes reach.
async fn place(
    meta: &MetaHandle,
    state: &MetaState,
    cores: usize,
    (led_for, shared_store): (Duration, bool),
) {
    let Ok(status) = meta.status().await else {
        return;
    };
    let dead = crate::failover::dead_nodes(&status, state, led_for);
    let (live, mut load) = live_load(&status, state, &dead);
    if !dead.is_empty() {
        crate::failover::fail_over(meta, state, &dead, &mut load, (shared_store, cores)).await;
    }
    for (name, pipeline) in &state.pipelines {
        // A pipeline on a node that was removed is placed again (it starts over there: its
        // WALs and checkpoints stayed on the removed node's disk).
        let placed = pipeline
            .assignment
            .first()
            .is_some_and(|a| state.nodes.contains_key(&a.node));
        if placed {
            continue;
        }
        let never_ran = pipeline.assignment.is_empty() && pipeline.actual == ActualState::Created;
        if pipeline.desired == DesiredState::Stopped && never_ran {
            let command = MetaCommand::ReportActual {
                name: name.clone(),
                actual: ActualState::Finished,
                failure: None,
            };
            let _ = meta.propose(command).await;
            continue;
        }
        if !should_run(pipeline) {
            continue;
        }
        let Some(node) = crate::failover::least_loaded(&load) else {
            return;
        };
        let assignment =
            spread_assignment(pipeline, &live, cores, shared_store).unwrap_or_else(|| {
                vec![Assignment {
                    key_group_start: 0,
                    key_group_end: u32::MAX,
                    node,
                    core: 0,
                }]
            });
        let command = MetaCommand::SetAssignment {
            name: name.clone(),
            assignment,
        };
        match meta.propose(command).await {
            Ok(_) => *load.entry(node).or_default() += 1,
            Err(err) => tracing::warn!(pipeline = %name, error = %err, "cannot place pipeline"),
        }
    }
}

/// The live registered members: heard from lately (or this node), and not `dead`.
pub(crate) fn live_nodes(
    status: &crate::raft::MetaStatus,
    state: &MetaState,
    dead: &std::collections::BTreeSet<u64>,
) -> Vec<u64> {
    status
        .members
        .iter()
        .filter(|m| m.id == status.id || m.last_contact_ms.is_some_and(|ms| ms < LIVE_CONTACT_MS))
        .map(|m| m.id)
        .filter(|id| state.nodes.contains_key(id) && !dead.contains(id))
        .collect()
}

/// The live registered members (heard from lately, not dead), and how many pipelines each
/// is the first node of.
fn live_load(
    status: &crate::raft::MetaStatus,
    state: &MetaState,
    dead: &std::collections::BTreeSet<u64>,
) -> (Vec<u64>, HashMap<u64, usize>) {
    let live = live_nodes(status, state, dead);
    let mut load: HashMap<u64, usize> = live.iter().map(|id| (*id, 0)).collect();
    for pipeline in state.pipelines.values() {
        if let Some(count) = pipeline
            .assignment
            .first()
            .and_then(|a| load.get_mut(&a.node))
        {
            *count += 1;
        }
    }
    (live, load)
}

/// The slots of `pipeline` dealt over the `live` nodes, when it can be spread over more than
/// one: `--cores` slots in all, else `cores` (the leader's) per live node.
fn spread_assignment(
    pipeline: &PipelineMeta,
    live: &[u64],
    cores: usize,
    shared_store: bool,
) -> Option<Vec<Assignment>> {
    if live.len() < 2 {
        return None;
    }
    let key_groups = crate::spread::spreadable(pipeline, shared_store)?;
    let slots = pipeline
        .options
        .cores
        .map_or(cores * live.len(), |c| c as usize)
        .min(key_groups as usize);
    let mut live = live.to_vec();
    live.sort_unstable();
    (slots > 1).then(|| crate::spread::deal(&live, slots, key_groups))
}

/// Whether a pipeline should be running (or paused) somewhere.
pub(crate) fn should_run(pipeline: &PipelineMeta) -> bool {
    pipeline.desired != DesiredState::Stopped
        && !matches!(pipeline.actual, ActualState::Finished | ActualState::Failed)
}

fn placed_here(pipeline: &PipelineMeta, node: u64) -> bool {
    pipeline.assignment.iter().any(|a| a.node == node)
}

/// The pipelines whose part on this node asked for a restart, with the version that part
/// ran: that version is not launched here again (its exchange streams and part store are
/// that run's), the node waits for the newer version the restart or a failover makes. An
/// entry goes once the pipeline is at another version, or deleted.
type Awaiting = HashMap<String, u64>;

/// Starts, steers and stops this node's jobs to match `state`.
fn reconcile(
    node: &Supervised,
    state: &MetaState,
    (jobs, awaiting): (&mut HashMap<String, Local>, &mut Awaiting),
    events: &mpsc::UnboundedSender<JobEvent>,
) {
    for (name, local) in jobs.iter_mut() {
        steer_local(node.node, state.pipelines.get(name), local);
    }
    awaiting.retain(|name, version| {
        state
            .pipelines
            .get(name)
            .is_some_and(|p| p.version == *version)
    });
    for (name, pipeline) in &state.pipelines {
        if jobs.contains_key(name) || !placed_here(pipeline, node.node) {
            continue;
        }
        if awaiting.contains_key(name) {
            continue; // asked for a restart at this version: waits for a newer one
        }
        let done = node.done.lock().unwrap_or_else(|p| p.into_inner());
        if done.contains(&(name.clone(), pipeline.created_at_index, pipeline.version)) {
            continue;
        }
        drop(done);
        if pipeline.desired == DesiredState::Stopped && pipeline.actual == ActualState::Created {
            // Stopped between its placement and its start: it ends without running.
            let _ = events.send(JobEvent::Ended(name.clone(), pipeline.version, Ok(())));
            continue;
        }
        if !should_run(pipeline) {
            continue;
        }
        if relaunched_alone(node, name, pipeline) {
            // This node ran its part of this version before it restarted; the other nodes'
            // parts went on (or failed) without it. Every part restores together instead.
            tracing::info!(pipeline = %name, version = pipeline.version, "this node's part ran before the node restarted: asking for a restart of every part");
            awaiting.insert(name.clone(), pipeline.version);
            let (meta, dialer) = (node.meta.clone(), node.dialer.clone());
            tokio::spawn(restart(meta, dialer, name.clone(), pipeline.version));
            continue;
        }
        match launch(node, state, name, pipeline, events.clone()) {
            Ok(local) => {
                jobs.insert(name.clone(), local);
            }
            Err(err) => {
                let ended = JobEvent::Ended(name.clone(), pipeline.version, Err(err));
                let _ = events.send(ended);
            }
        }
    }
}

/// Passes on to a running job what the metadata wants of its pipeline (`None`: deleted).
fn steer_local(here: u64, pipeline: Option<&PipelineMeta>, local: &mut Local) {
    let wanted = pipeline.filter(|p| placed_here(p, here));
    let stop = match wanted {
        None => true,
        Some(p) => {
            p.desired == DesiredState::Stopped
                || p.version != local.version
                || p.actual == ActualState::Failed
        }
    };
    if stop && !local.stopping {
        local.stopping = true;
        let job = (here, local.version, local.in_parts || local.secondary);
        let _ = local.commands.send(stop_command(pipeline, job));
    }
    let same = wanted.filter(|p| p.version == local.version);
    if let Some(p) = same.filter(|_| local.in_parts) {
        let complete = p.checkpoints.last().map_or(0, |c| c.id);
        if complete > local.completed && !stop {
            local.completed = complete;
            let _ = local.commands.send(JobCommand::Complete(complete));
        }
        if p.actual == ActualState::Finished && !local.published {
            local.published = true;
            let _ = local.commands.send(JobCommand::Publish);
        }
    }
    if let Some(p) = wanted.filter(|_| !local.stopping && !stop) {
        let pause = p.desired == DesiredState::Paused;
        if pause != local.paused {
            local.paused = pause;
            let command = if pause {
                JobCommand::Pause
            } else {
                JobCommand::Resume
            };
            let _ = local.commands.send(command);
        }
    }
}

/// How a job of `version` on node `here` that should no longer run ends. Stopped by the user
/// (or its pipeline deleted), it drains and takes its last checkpoint, and so does a whole
/// pipeline replaced by a newer version that still runs here (`scale`, an update): the new
/// version restores that checkpoint. Moved off this node, or spread (`in_parts`: a new
/// version of a spread pipeline restores the last checkpoint complete on every node), or
/// failed elsewhere, its output is discarded: it aborts, so that a peer that fell silent (a
/// frozen or cut-off node) cannot keep it, and the new version waiting for it, from ending.
fn stop_command(
    pipeline: Option<&PipelineMeta>,
    (here, version, in_parts): (u64, u64, bool),
) -> JobCommand {
    match pipeline {
        Some(p)
            if p.version != version
                && (in_parts || crate::spread::is_spread(p) || !placed_here(p, here)) =>
        {
            JobCommand::Abort(format!("replaced by version {}", p.version))
        }
        Some(p) if p.actual == ActualState::Failed => {
            JobCommand::Abort("the pipeline failed on another node".to_string())
        }
        _ => JobCommand::Stop,
    }
}

/// Proposes what a job reported; forgets a job that ended.
async fn report(
    node: &Supervised,
    (jobs, awaiting): (&mut HashMap<String, Local>, &mut Awaiting),
    event: JobEvent,
) {
    let command = match event {
        JobEvent::Actual(name, version, actual) => MetaCommand::NodeReport {
            node: node.node,
            version,
            name,
            actual,
            failure: None,
        },
        // Fenced: refused once the pipeline is moved off this node or changed.
        JobEvent::Checkpoint(name, version, id, path) => MetaCommand::NodeCheckpoint {
            node: node.node,
            version,
            name,
            id,
            path: path.display().to_string(),
        },
        JobEvent::Restart(name, version) => {
            let (meta, dialer) = (node.meta.clone(), node.dialer.clone());
            tokio::spawn(restart(meta, dialer, name, version));
            return;
        }
        JobEvent::Superseded(name, version) => {
            jobs.remove(&name);
            awaiting.insert(name, version);
            return;
        }
        JobEvent::Ended(name, version, result) => {
            let local = jobs.remove(&name);
            record_end(node, local, (name, version), result).await;
            return;
        }
    };
    if let Err(err) = propose_anywhere(&node.meta, &node.dialer, command).await {
        // A deleted pipeline has nothing left to report to, and a report of a pipeline this
        // node no longer runs (placed elsewhere, or a newer version) is refused as stale.
        tracing::debug!(error = %err, "cannot record a pipeline's report");
    }
}

/// Records how a job of `name` at `version` ended (`local`: the job, gone from the running
/// ones), unless it was stopped for a new version that starts at the next tick; a secondary
/// part's end was told to the primary, so only noted here.
async fn record_end(
    node: &Supervised,
    local: Option<Local>,
    (name, version): (String, u64),
    result: Result<(), String>,
) {
    let secondary = local.as_ref().is_some_and(|l| l.secondary);
    let run = local.as_ref().map(|l| (name.clone(), l.created, version));
    if secondary && result.is_ok() {
        node.mark_done(run);
        return;
    }
    // A job stopped for a new version starts again at the next tick.
    let restarting = local.is_some_and(|l| l.stopping) && result.is_ok() && {
        let state = node.meta.read(false).await.ok();
        state
            .as_ref()
            .and_then(|s| s.pipelines.get(&name))
            .is_some_and(|p| p.desired != DesiredState::Stopped)
    };
    if restarting {
        return;
    }
    let (actual, failure) = match result {
        Ok(()) => (ActualState::Finished, None),
        Err(why) => (ActualState::Failed, Some(why)),
    };
    let command = MetaCommand::NodeReport {
        node: node.node,
        version,
        name,
        actual,
        failure,
    };
    match propose_anywhere(&node.meta, &node.dialer, command).await {
        // The leader applied the end; this node's copy may apply it a heartbeat later, and
        // must not launch the run again meanwhile.
        Ok(_) => node.mark_done(run),
        Err(err) => tracing::debug!(error = %err, "cannot record a pipeline's end"),
    }
}

/// How long a node keeps asking for a restart that cannot be recorded yet (no leader).
const RESTART_TRIES: u32 = 60;

/// Restarts pipeline `name` from its last complete checkpoint (a new version with the same
/// spec, options and nodes), unless it is no longer at `version` or should not run; retried
/// each second while the metadata has no leader (the dead node may have been the leader).
async fn restart(meta: MetaHandle, dialer: Dialer, name: String, version: u64) {
    for _ in 0..RESTART_TRIES {
        let Ok(state) = meta.read(false).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Some(p) = state
            .pipelines
            .get(&name)
            .filter(|p| p.version == version && should_run(p))
        else {
            return; // moved, changed or stopped meanwhile: nothing to restart
        };
        let command = MetaCommand::UpdatePipeline {
            name: name.clone(),
            spec_yaml: p.spec_yaml.clone(),
            options: p.options.clone(),
        };
        match propose_anywhere(&meta, &dialer, command).await {
            Ok(_) => {
                tracing::warn!(pipeline = %name, version, "restarting from the last complete checkpoint");
                return;
            }
            Err(err) => {
                tracing::debug!(pipeline = %name, error = %err, "cannot ask for a restart yet")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::error!(pipeline = %name, version, "gave up asking for a restart: no leader");
}

/// Whether this node would launch its part of a spread, checkpointed pipeline at a version it
/// ran in an earlier process (the version's directory is there, and this process has not
/// launched it): the other nodes' parts of that version have run on meanwhile, counting their
/// checkpoints on, and the part would restore alone from an older checkpoint. It asks for a
/// restart instead: a new version in which every part restores the last complete checkpoint.
fn relaunched_alone(node: &Supervised, name: &str, pipeline: &PipelineMeta) -> bool {
    if !crate::spread::checkpoints_in_parts(pipeline) {
        return false;
    }
    let key = (name.to_string(), pipeline.version);
    let mut launched = node.launched.lock().unwrap_or_else(|p| p.into_inner());
    if launched.contains(&key) {
        return false;
    }
    launched.insert(key);
    let dir = node.data_dir.join("pipelines").join(name);
    dir.join(format!("v{}", pipeline.version)).exists()
}

/// Writes the pipeline's spec and starts its job thread.
fn launch(
    node: &Supervised,
    state: &MetaState,
    name: &str,
    pipeline: &PipelineMeta,
    events: mpsc::UnboundedSender<JobEvent>,
) -> Result<Local, String> {
    let root = std::path::absolute(&node.data_dir).unwrap_or_else(|_| node.data_dir.clone());
    let dir = root.join("pipelines").join(name);
    std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    // `v<version>/<name>.yaml` (or `.sql`): the extension picks the front end, and a SQL
    // pipeline takes its name from the file's stem.
    let spec_dir = dir.join(format!("v{}", pipeline.version));
    std::fs::create_dir_all(&spec_dir).map_err(|err| format!("{}: {err}", spec_dir.display()))?;
    let file_name = wire_core::frontend::spec::stored_file_name(name, &pipeline.spec_yaml);
    let spec = spec_dir.join(file_name);
    std::fs::write(&spec, &pipeline.spec_yaml)
        .map_err(|err| format!("{}: {err}", spec.display()))?;
    remove_older_incarnations(&dir, pipeline.created_at_index);
    let mut args = run_args(node, pipeline, spec, dir.join("data"));
    let secondary =
        crate::spread::is_spread(pipeline) && crate::spread::primary(pipeline) != Some(node.node);
    let in_parts = crate::spread::checkpoints_in_parts(pipeline);
    if crate::spread::is_spread(pipeline) {
        spread_args(node, (state, name, pipeline), &mut args)?;
    }
    store_args(node, (name, pipeline), &dir, &mut args);
    let (commands, inbox) = crossbeam_channel::unbounded();
    let paused = pipeline.desired == DesiredState::Paused;
    if paused {
        let _ = commands.send(JobCommand::Pause);
    }
    let thread = JobThread {
        name: name.to_string(),
        version: pipeline.version,
        args,
        pool: node.pool.clone(),
        runtime: tokio::runtime::Handle::current(),
        events,
        inbox,
        metrics: node.metrics.clone(),
        jobs: node.jobs.clone(),
        secondary,
        assignment: pipeline.assignment.clone(),
        aborted: std::cell::Cell::new(false),
        waits_for_nodes: crate::spread::has_ingest_source(pipeline),
    };
    std::thread::Builder::new()
        .name(format!("wire-job-{name}"))
        .spawn(move || thread.run())
        .map_err(|err| format!("cannot start the job's thread: {err}"))?;
    Ok(Local {
        version: pipeline.version,
        created: pipeline.created_at_index,
        commands,
        paused,
        stopping: false,
        secondary,
        in_parts,
        spread: crate::spread::is_spread(pipeline),
        completed: 0,
        published: false,
    })
}

/// What node `node` runs of spread pipeline `name`: its slots, its sink subdirectory.
fn spread_args(
    node: &Supervised,
    (state, name, pipeline): (&MetaState, &str, &PipelineMeta),
    args: &mut RunArgs,
) -> Result<(), String> {
    let placement = crate::spread::placement(state, name, pipeline, node.node, &node.hub)?;
    args.cores = Some(placement.local.len());
    args.sink_subdir = Some(format!("node-{}", node.node));
    let mut subdirs: Vec<String> = pipeline
        .assignment
        .iter()
        .map(|a| format!("node-{}", a.node))
        .collect();
    subdirs.sort();
    subdirs.dedup();
    args.spread_subdirs = subdirs;
    args.placement = Some(placement);
    Ok(())
}

/// Where pipeline `name` (whose files are in `dir`) keeps its checkpoints on this node: this
/// incarnation's directory, or its place in the shared store (S3: staged in the directory);
/// a spread pipeline's part store of this version, restoring what the metadata says.
fn store_args(
    node: &Supervised,
    (name, pipeline): (&str, &PipelineMeta),
    dir: &Path,
    args: &mut RunArgs,
) {
    if pipeline.created_at_index > 0 {
        let checkpoints = format!("checkpoints-{}", pipeline.created_at_index);
        args.checkpoint_dir = Some(dir.join(checkpoints));
    }
    let mut store = node
        .checkpoint_store
        .as_ref()
        .map(|store| store.join(&format!("{name}-{}", pipeline.created_at_index)));
    if crate::spread::checkpoints_in_parts(pipeline) {
        store = store.map(|root| crate::spread::part_store(&root, pipeline.version, node.node));
        let staging = format!(
            "checkpoints-{}-v{}",
            pipeline.created_at_index, pipeline.version
        );
        args.checkpoint_dir = Some(dir.join(staging));
        args.restore_parts = pipeline.checkpoints.last().map(|c| (c.id, c.path.clone()));
        if let Some(checkpoints) = args.checkpoints.as_mut() {
            checkpoints.retained += PARTS_SLACK;
        }
    }
    match store {
        Some(StoreUrl::Dir(store)) => args.checkpoint_dir = Some(store),
        Some(s3) => args.checkpoint_store = Some(s3),
        None => {}
    }
}

/// Removes the checkpoint directories (`checkpoints-<index>`) of the pipelines deleted before
/// the one created at raft index `created`. Failures only cost disk space: logged.
fn remove_older_incarnations(dir: &Path, created: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let older = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoints-"))
            .and_then(|index| index.parse::<u64>().ok())
            .is_some_and(|index| index < created);
        if !older {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a deleted pipeline's checkpoints")
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove a deleted pipeline's checkpoints")
            }
        }
    }
}

/// `wire run`'s arguments for a pipeline of the metadata.
fn run_args(node: &Supervised, pipeline: &PipelineMeta, spec: PathBuf, data: PathBuf) -> RunArgs {
    let options = &pipeline.options;
    let cores = options.cores.map_or(node.cores, |c| c as usize);
    RunArgs {
        pipeline: spec,
        cores: Some(cores.clamp(1, node.cores)),
        data_dir: data,
        progress: false,
        pin: node.pin,
        checkpoints: options
            .checkpoint_interval_ms
            .map(|interval| CheckpointArgs {
                interval: Duration::from_millis(interval),
                timeout: options
                    .checkpoint_timeout_ms
                    .map_or(CHECKPOINT_TIMEOUT, Duration::from_millis),
                retained: options
                    .checkpoints_retained
                    .map_or(CHECKPOINTS_RETAINED, |n| n as usize),
                deltas: options.checkpoint_deltas.unwrap_or(CHECKPOINT_DELTAS),
                from_savepoint: options.from_savepoint.as_ref().map(PathBuf::from),
                savepoint_dir: None,
            }),
        checkpoint_defaults: None,
        checkpoint_dir: None,
        checkpoint_store: None,
        fresh: false,
        append_output: false,
        allow_empty_restore: false,
        placement: None,
        sink_subdir: None,
        ingest_auth: node.ingest_auth.clone(),
        restore_parts: None,
        spread_subdirs: Vec::new(),
        ingest_tls: node.ingest_tls.clone(),
        node_id: node.node,
        ingest_port_offset: node.ingest_port_offset,
    }
}

/// The exchange address of a node running some of `peers`' slots (by slot), other than this
/// one (which runs the `local` slots), that does not take a connection: refused, or no answer
/// within [`PROBE_TIMEOUT`]. The connection is closed at once (the hub logs it at debug).
fn silent_peer(local: &[usize], peers: &[std::net::SocketAddr]) -> Option<std::net::SocketAddr> {
    let mine: Vec<std::net::SocketAddr> = local
        .iter()
        .filter_map(|slot| peers.get(*slot).copied())
        .collect();
    let mut others: Vec<std::net::SocketAddr> = peers
        .iter()
        .filter(|addr| !mine.contains(addr))
        .copied()
        .collect();
    others.sort_unstable();
    others.dedup();
    others
        .into_iter()
        .find(|addr| std::net::TcpStream::connect_timeout(addr, PROBE_TIMEOUT).is_err())
}

/// One job, run to its end on a thread of its own.
struct JobThread {
    name: String,
    version: u64,
    args: RunArgs,
    pool: PoolHandle,
    runtime: tokio::runtime::Handle,
    events: mpsc::UnboundedSender<JobEvent>,
    inbox: Receiver<JobCommand>,
    metrics: crate::metrics::Metrics,
    jobs: LocalJobs,
    /// Runs slots of a spread pipeline whose primary is another node.
    secondary: bool,
    /// The spread pipeline's slots (empty or one entry when it runs whole).
    assignment: Vec<Assignment>,
    /// Told to abort: a newer version replaces it, so it asks for no restart.
    aborted: std::cell::Cell<bool>,
    /// The pipeline's slots stay on their nodes when one dies (it reads an ingest source):
    /// a failed part holds its restart for as long as another node of the run is silent.
    waits_for_nodes: bool,
}

impl JobThread {
    fn run(self) {
        let name = self.name.clone();
        let (result, ran) = self.run_job();
        let result = self.settle_spread(result);
        self.jobs.remove(&name, self.version);
        if let Err(why) = &result {
            tracing::warn!(pipeline = %name, error = %why, "pipeline failed");
            if ran && self.args.in_parts() && !self.aborted.get() && self.ask_restart() {
                let _ = self.events.send(JobEvent::Superseded(name, self.version));
                return;
            }
        }
        let _ = self
            .events
            .send(JobEvent::Ended(name, self.version, result));
    }

    /// A part of a spread, checkpointed pipeline failed after it started: unless the
    /// pipeline is stopped or changed within [`RESTART_DELAY`] (a dead node's slots moved),
    /// asks for a restart of every node's part from the last complete checkpoint. While
    /// another node of the run looks dead (its exchange port does not take a connection), it
    /// holds the restart, up to [`RESTART_HOLD`] after the failure: the leader's failover
    /// then makes the one new version, instead of a restart on the same nodes that the
    /// failover replaces a few seconds later. What this job reports afterwards is of an
    /// older version, and refused.
    /// Returns whether it asked. Stopped or aborted (replaced) meanwhile, it does not ask:
    /// its failure is then reported, and refused as stale when a newer version replaced it.
    fn ask_restart(&self) -> bool {
        let failed = std::time::Instant::now();
        let mut next_look = failed + RESTART_DELAY;
        let mut held = false;
        loop {
            let left = next_look.saturating_duration_since(std::time::Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(JobCommand::Stop) => return false,
                Ok(JobCommand::Abort(why)) => {
                    tracing::info!(pipeline = %self.name, version = self.version, %why, "no restart: replaced");
                    self.aborted.set(true);
                    return false;
                }
                Ok(_) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return false,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            // The slots of a pipeline with an ingest source never move: it waits for the node.
            let silent = self
                .silent_peer()
                .filter(|_| self.waits_for_nodes || failed.elapsed() < RESTART_HOLD);
            let Some(peer) = silent else {
                let restart = JobEvent::Restart(self.name.clone(), self.version);
                return self.events.send(restart).is_ok();
            };
            if !held {
                held = true;
                tracing::info!(pipeline = %self.name, version = self.version, %peer, "holding the restart: a node of the run does not answer, its slots should move");
            }
            next_look = std::time::Instant::now() + HOLD_LOOK;
        }
    }

    /// The exchange address of another node of the run that does not take a connection: it
    /// looks dead.
    fn silent_peer(&self) -> Option<std::net::SocketAddr> {
        let placement = self.args.placement.as_ref()?;
        silent_peer(&placement.local, &placement.peers)
    }

    /// Runs the job to its end; whether it started running (a job refused at its start, a
    /// restore that fails for one, is not restarted).
    fn run_job(&self) -> (Result<(), String>, bool) {
        let mut ran = false;
        let result = self.run_job_noting(&mut ran);
        (result, ran)
    }

    fn run_job_noting(&self, ran: &mut bool) -> Result<(), String> {
        let name = self.name.as_str();
        let say = |line: &str| tracing::info!(pipeline = %name, "{line}");
        let plan = job::load(&self.args.pipeline)?;
        let checkpoints = self.args.checkpoints.as_ref().map(|_| {
            // This incarnation's, or `wire run`'s default checkpoint directory.
            self.args
                .checkpoint_dir
                .clone()
                .unwrap_or_else(|| self.args.data_dir.join(&plan.name).join("checkpoints"))
        });
        let key_groups = plan.settings.max_parallelism;
        let cores = job::data_cores(self.args.cores, None, false, key_groups, &say)?;
        let pool = &self.pool;
        let mut job = Job::launch(&self.args, plan, cores, pool, &self.runtime, &say)
            .map_err(|refused| refused.error)?;
        *ran = true;
        let shown = self.metrics.register(name, job.metric_sources());
        shown.running(true);
        let link = self.link(&job);
        let listening = link.ingest.clone();
        self.jobs.insert(name, link);
        self.actual(ActualState::Running);
        let mut recorded = 0;
        let mut looked = std::time::Instant::now();
        while !job.deployment().is_finished() {
            if let Ok(command) = self.inbox.recv_timeout(JOB_POLL) {
                self.steer(&mut job, command);
            }
            for notice in job.deployment().notices().try_iter() {
                let wire_actors::Notice::Listening { source, addr } = notice;
                tracing::info!(pipeline = %name, source = %source, %addr, "listening");
                let mut listening = listening.lock().unwrap_or_else(|p| p.into_inner());
                listening.push((source, addr));
            }
            if let Some(dir) = checkpoints
                .as_ref()
                .filter(|_| looked.elapsed() >= CHECKPOINT_LOOK)
            {
                looked = std::time::Instant::now();
                recorded = self.record_checkpoints(dir, recorded);
            }
        }
        let ended = job.finish(&say);
        shown.remove();
        if let Some(dir) = &checkpoints {
            self.record_checkpoints(dir, recorded);
        }
        match ended.outcome {
            Outcome::Done => Ok(()),
            _ => Err(ended.error.unwrap_or_else(|| "the run failed".into())),
        }
    }

    /// For a spread pipeline: a secondary tells the primary how its slots ended; the primary
    /// waits until every other node's slots have ended before its own end is recorded. A
    /// part of a pipeline that checkpoints publishes its sinks' staged files only then: the
    /// primary once the others ended, a secondary once the pipeline is recorded finished.
    fn settle_spread(&self, result: Result<(), String>) -> Result<(), String> {
        let Some(placement) = &self.args.placement else {
            return result;
        };
        // An abort taken here is the run's abort: it asks for no restart afterwards.
        let give_up = || match self.inbox.try_recv() {
            Ok(JobCommand::Stop) => Some("stopped while other nodes ran".to_string()),
            Ok(JobCommand::Abort(why)) => {
                self.aborted.set(true);
                Some(why)
            }
            _ => None,
        };
        if self.secondary {
            if let Err(err) = crate::spread::tell_primary(placement, &result, give_up) {
                tracing::warn!(pipeline = %self.name, error = %err, "cannot report to the primary");
            }
            result?;
            if self.args.in_parts() {
                self.publish_when_finished();
            }
            return Ok(());
        }
        result?;
        crate::spread::wait_for_others(placement, &self.assignment, give_up)?;
        if self.args.in_parts() {
            self.publish()?;
        }
        Ok(())
    }

    /// Waits (at most [`PUBLISH_WAIT`]) until the supervisor says the pipeline is recorded
    /// finished, then publishes; a stop (the pipeline failed, moved or changed) publishes
    /// nothing: the restored run writes those rows again.
    fn publish_when_finished(&self) {
        let mut deadline = std::time::Instant::now() + PUBLISH_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(JobCommand::Publish) => {
                    if let Err(err) = self.publish() {
                        tracing::error!(pipeline = %self.name, error = %err, "cannot publish the sinks' last files");
                    }
                    return;
                }
                Err(_) => {
                    tracing::warn!(pipeline = %self.name, "the sinks' last files stay staged: the pipeline did not finish");
                    return;
                }
                // Stopped while it waits: the pipeline was stopped (its end is still recorded
                // soon) or replaced (then no `Publish` comes): wait a little longer only.
                Ok(JobCommand::Stop) => {
                    let soon = std::time::Instant::now() + STOPPED_PUBLISH_WAIT;
                    deadline = deadline.min(soon);
                }
                // Replaced: its files are the new version's to write again.
                Ok(JobCommand::Abort(_)) => return,
                Ok(_) => {}
            }
        }
    }

    /// Publishes every file the sinks of this node's slots staged: the whole pipeline ended.
    fn publish(&self) -> Result<(), String> {
        let (published, _) = job::settle_spread_end(&self.args)?;
        tracing::info!(pipeline = %self.name, published, "published the sinks' last files");
        Ok(())
    }

    /// What the AdminService may reach of `job`.
    fn link(&self, job: &Job) -> JobLink {
        JobLink {
            version: self.version,
            probe: job.deployment().probe().clone(),
            cores: job.deployment().cores(),
            // A spread pipeline's part takes its part of a checkpoint on demand (see
            // `trigger_spread`); savepoints of it are refused before they reach here.
            coordinator: job.coordinator().map(|c| c.link()),
            paused: false,
            ingest: Arc::default(),
            slots: match &self.args.placement {
                Some(placement) => placement.local.clone(),
                None => (0..job.deployment().cores()).collect(),
            },
        }
    }

    fn steer(&self, job: &mut Job, command: JobCommand) {
        match command {
            JobCommand::Pause => {
                job.deployment().pause();
                self.jobs.set_paused(&self.name, true);
                self.actual(ActualState::Paused);
            }
            JobCommand::Resume => {
                job.deployment().resume();
                self.jobs.set_paused(&self.name, false);
                self.actual(ActualState::Running);
            }
            JobCommand::Stop => {
                job.stop();
                self.actual(ActualState::Stopping);
            }
            JobCommand::Abort(why) => {
                tracing::info!(pipeline = %self.name, version = self.version, %why, "aborting the run");
                self.aborted.set(true);
                job.abort(why);
                self.actual(ActualState::Stopping);
            }
            JobCommand::Complete(id) => {
                if let Some(coordinator) = job.coordinator() {
                    let checkpointing = coordinator.checkpointing();
                    checkpointing.complete(id);
                    // A restart restores the newest complete checkpoint, never an older one:
                    // sources (ingest WALs) may drop the input before its positions.
                    checkpointing.retain_from(id);
                }
            }
            JobCommand::Publish => {}
        }
    }

    fn actual(&self, actual: ActualState) {
        // Only the primary reports a spread pipeline's state; a secondary's late "running"
        // could otherwise overwrite "failed".
        if self.secondary {
            return;
        }
        let _ = self
            .events
            .send(JobEvent::Actual(self.name.clone(), self.version, actual));
    }

    /// Reports the complete checkpoints newer than `after`; the newest reported.
    fn record_checkpoints(&self, dir: &Path, after: u64) -> u64 {
        let retained = self.args.checkpoints.as_ref().map_or(1, |c| c.retained);
        let store = match &self.args.checkpoint_store {
            Some(url) => CheckpointStore::open_url(url, dir, retained),
            None => CheckpointStore::open(dir, retained),
        };
        let Ok(store) = store else {
            return after;
        };
        let Ok(ids) = store.ids() else {
            return after;
        };
        let mut newest = after;
        for id in ids.into_iter().filter(|id| *id > after) {
            if !store.path_of(id).join("MANIFEST").exists() {
                continue;
            }
            newest = id;
            let event =
                JobEvent::Checkpoint(self.name.clone(), self.version, id, store.location_of(id));
            let _ = self.events.send(event);
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_whose_exchange_port_refuses_connections_looks_silent() {
        let here = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let alive = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = {
            let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            gone.local_addr().expect("addr")
        };
        let (here, alive) = (
            here.local_addr().expect("addr"),
            alive.local_addr().expect("addr"),
        );
        // Slots 0 and 3 here, 1 on the live node, 2 on the dead one.
        assert_eq!(silent_peer(&[0, 3], &[here, alive, dead, here]), Some(dead));
        assert_eq!(silent_peer(&[0], &[here, alive, here]), None);
        // This node's own port is never probed.
        assert_eq!(silent_peer(&[0], &[dead, alive]), None);
    }
}
