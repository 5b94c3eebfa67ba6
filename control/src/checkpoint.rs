//! The checkpoint coordinator: one ractor actor per running pipeline, on the process's one
//! tokio runtime (owned by the binary; the coordinator takes a handle to it).
//!
//! It triggers checkpoint `n` every interval (never two at a time) by raising
//! [`Checkpointing::request`], which the data cores' sources poll between batches; it collects
//! one [`Ack`] per task instance (forwarded from a crossbeam channel by a bridge thread),
//! counting an instance's final ack for every checkpoint after it ended; when all are in it
//! writes the checkpoint on tokio's blocking pool ([`CheckpointStore::write`]: state files,
//! then the manifest, each synced) and only then marks it complete, which lets sinks publish
//! what they staged. A checkpoint that an instance fails, or that is not complete within the
//! timeout, is aborted; the next one starts at the next tick. A failed write (disk full) aborts
//! the checkpoint and the pipeline runs on.
//!
//! On demand ([`CoordinatorLink`], `wirectl checkpoint trigger` and `savepoint create`), a
//! checkpoint is triggered at once, or right after the running one ends; the request is
//! answered when that checkpoint completes (with its id and where it went) or aborts.
//!
//! Each checkpoint is one trace (exported with `--otlp-endpoint`): a root `checkpoint` span
//! from trigger to complete or abort, with the child spans `trigger` (the request raised),
//! `barriers` (until the first instance acks: the barriers travel from the sources),
//! `acks` (from the first ack to the last) and `commit` (assembling the acks, writing the
//! state files and the manifest, marking the checkpoint complete).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::field::Empty;
use tracing::Instrument as _;
use wire_actors::{Ack, AckContent, Checkpointing};
use wire_storage::checkpoint::{
    Checkpoint, CheckpointStore, InstanceState, OperatorState, SourceState,
};

use crate::metrics::CheckpointGauges;

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The pipeline's name (recorded in manifests).
    pub pipeline: String,
    /// Data cores of the run.
    pub cores: usize,
    /// Key groups of the pipeline.
    pub max_parallelism: u32,
    /// Task instances that ack each checkpoint.
    pub participants: usize,
    /// Time between the end of one checkpoint and the trigger of the next.
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Where checkpoints go.
    pub store: CheckpointStore,
    /// Where the run's last checkpoint is also written as a savepoint, if anywhere.
    pub savepoint_dir: Option<std::path::PathBuf>,
    /// Incremental checkpoints: at most this many checkpoints in a row hold only the changes
    /// of the operators that track them, before one holds the whole state again (0: every
    /// checkpoint holds the whole state).
    pub max_deltas: u32,
    /// The restored checkpoint's chain, if the run's first checkpoints may build on it.
    pub restored_chain: Option<Chain>,
    /// The run is one node's part of a pipeline spread over nodes: a checkpoint written here
    /// is only this node's part, complete once the metadata says every node wrote its part
    /// (the node then calls [`Checkpointing::complete`]), and the run writes no last
    /// checkpoint of its own as it ends.
    pub in_parts: bool,
}

/// The newest completed checkpoint and the chain of incremental checkpoints it ends: the
/// deltas since the last that held whole state (restoring reads all of them).
#[derive(Debug, Clone, Copy)]
pub struct Chain {
    /// The newest checkpoint's id.
    pub last: u64,
    /// Deltas in the chain (the most of any operator instance).
    pub deltas: u32,
    /// Bytes of the whole-state files the chain reads.
    pub whole_bytes: u64,
    /// Bytes of the delta files the chain reads.
    pub delta_bytes: u64,
}

impl Chain {
    /// The chain `checkpoint` (as read back) ends.
    pub fn of(checkpoint: &Checkpoint) -> Chain {
        let mut chain = Chain {
            last: checkpoint.id,
            deltas: 0,
            whole_bytes: 0,
            delta_bytes: 0,
        };
        let mut per_instance: HashMap<(&str, usize), u32> = HashMap::new();
        for operator in &checkpoint.operators {
            for instance in &operator.instances {
                let bytes: u64 = instance.sections.iter().map(|s| s.bytes.len() as u64).sum();
                if instance.delta {
                    chain.delta_bytes += bytes;
                    *per_instance
                        .entry((&operator.name, instance.core))
                        .or_default() += 1;
                } else {
                    chain.whole_bytes += bytes;
                }
            }
        }
        chain.deltas = per_instance.values().copied().max().unwrap_or(0);
        chain
    }
}

/// What the coordinator did, for the run summary.
#[derive(Debug, Clone, Default)]
pub struct CheckpointReport {
    /// Checkpoints completed (the last one included).
    pub completed: u64,
    /// Checkpoints aborted (failed, timed out or not writable).
    pub aborted: u64,
    /// Id of the newest completed checkpoint.
    pub last_id: Option<u64>,
    /// Milliseconds from trigger to complete, per completed checkpoint.
    pub durations_ms: Vec<f64>,
    /// Bytes of the newest completed checkpoint.
    pub last_bytes: u64,
    /// Completed checkpoints that were incremental (held changes of some operators).
    pub incremental: u64,
    /// Bytes written per completed checkpoint, and whether it was incremental.
    pub sizes: Vec<(u64, bool)>,
    /// Where the savepoint went, if one was written.
    pub savepoint: Option<std::path::PathBuf>,
    /// The first reason a checkpoint was aborted.
    pub first_abort: Option<String>,
}

/// The answer to an on-demand checkpoint: the checkpoint's id and where it went (its directory
/// in the store, or the savepoint's), or why it did not complete.
pub type OnDemand = Result<(u64, PathBuf), String>;

/// An on-demand checkpoint waiting for its answer.
struct Waiter {
    /// Also write the checkpoint as a savepoint into this directory.
    savepoint_dir: Option<PathBuf>,
    /// The checkpoint that answers it, once triggered.
    id: Option<u64>,
    reply: RpcReplyPort<OnDemand>,
}

/// Messages to the coordinator.
pub enum CoordinatorMsg {
    /// Take a checkpoint now (or right after the running one) and answer when it completes
    /// or aborts; with a directory, also write it there as `savepoint-<id>`.
    OnDemand(Option<PathBuf>, RpcReplyPort<OnDemand>),
    /// Time to trigger, or to check the running checkpoint's timeout.
    Tick,
    /// An ack from a data core.
    Ack(Ack),
    /// Take a savepoint now: the next checkpoint (triggered at once if none is running) is
    /// also written to the savepoint directory.
    Savepoint,
    /// The run has ended (every core joined): write its last checkpoint if every instance
    /// ended cleanly, and report. Replies `None` while final acks are still on their way,
    /// unless the flag (give up waiting) is set.
    Finish(bool, RpcReplyPort<Option<CheckpointReport>>),
}

/// The coordinator actor.
pub struct Coordinator;

/// The coordinator's state.
pub struct CoordinatorState {
    config: CoordinatorConfig,
    shared: Arc<Checkpointing>,
    next_id: u64,
    pending: Option<Pending>,
    /// Final acks, by (task, core).
    finished: HashMap<(usize, usize), AckContent>,
    /// When the last checkpoint ended (completed or aborted).
    last_end: Instant,
    report: CheckpointReport,
    /// A savepoint was asked for; the first checkpoint triggered after the request is it.
    savepoint_wanted: bool,
    /// The checkpoint that is also the asked-for savepoint.
    savepoint_id: Option<u64>,
    /// What the user should be told while the run goes on (savepoints written).
    notices: crossbeam_channel::Sender<String>,
    /// The chain of incremental checkpoints the next one may extend.
    chain: Option<Chain>,
    /// What `/metrics` shows of `report`, updated as it changes.
    gauges: Arc<CheckpointGauges>,
    /// On-demand checkpoints waiting for their answers.
    waiters: Vec<Waiter>,
}

struct Pending {
    id: u64,
    /// The checkpoint its deltas may build on.
    base: Option<u64>,
    started: Instant,
    acks: HashMap<(usize, usize), AckContent>,
    /// The checkpoint's trace: its root span, closed when the checkpoint ends.
    span: tracing::Span,
    /// The phase open under `span` (`barriers`, then `acks`).
    phase: tracing::Span,
}

impl Pending {
    /// Ends the phase open now and opens `name` under the root span.
    fn enter_phase(&mut self, phase: tracing::Span) {
        self.phase = phase;
    }

    /// Marks the trace of a checkpoint that did not complete.
    fn aborted(&self, reason: &str) {
        self.span.record("outcome", "aborted");
        self.span.record("otel.status_code", "ERROR");
        self.span.record("otel.status_message", reason);
    }
}

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = (
        CoordinatorConfig,
        Arc<Checkpointing>,
        crossbeam_channel::Sender<String>,
        Arc<CheckpointGauges>,
    );

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (config, shared, notices, gauges): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let tick =
            (config.interval / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
        myself.send_interval(tick, || CoordinatorMsg::Tick);
        Ok(CoordinatorState {
            next_id: shared.requested() + 1,
            shared,
            pending: None,
            finished: HashMap::new(),
            last_end: Instant::now(),
            report: CheckpointReport::default(),
            savepoint_wanted: false,
            savepoint_id: None,
            notices,
            chain: config.restored_chain,
            waiters: Vec::new(),
            config,
            gauges,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMsg::Tick => state.tick(),
            CoordinatorMsg::OnDemand(savepoint_dir, reply) => {
                state.waiters.push(Waiter {
                    savepoint_dir,
                    id: None,
                    reply,
                });
                if state.pending.is_none() {
                    state.trigger();
                }
            }
            CoordinatorMsg::Savepoint => {
                state.savepoint_wanted = true;
                if state.pending.is_none() {
                    state.trigger();
                }
            }
            CoordinatorMsg::Ack(ack) => {
                state.on_ack(ack);
                state.try_complete().await;
            }
            CoordinatorMsg::Finish(force, reply) => {
                let report = if force || state.finished.len() >= state.config.participants {
                    Some(state.finish().await)
                } else {
                    None
                };
                let _ = reply.send(report);
            }
        }
        Ok(())
    }
}

impl CoordinatorState {
    fn tick(&mut self) {
        match &self.pending {
            Some(pending) if pending.started.elapsed() > self.config.timeout => {
                let reason = format!(
                    "checkpoint {} timed out after {:?} with {} of {} acks",
                    pending.id,
                    self.config.timeout,
                    pending.acks.len(),
                    self.config.participants
                );
                self.abort(reason);
            }
            Some(_) => {}
            None if self.last_end.elapsed() >= self.config.interval => self.trigger(),
            None if self.waiters.iter().any(|w| w.id.is_none()) => self.trigger(),
            None => {}
        }
    }

    fn trigger(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        if std::mem::take(&mut self.savepoint_wanted) {
            self.savepoint_id = Some(id);
        }
        for waiter in self.waiters.iter_mut().filter(|w| w.id.is_none()) {
            waiter.id = Some(id);
        }
        // A savepoint holds whole state; a chain is cut once it is as long as allowed or
        // its deltas add up to the whole state it builds on (restore reads at most twice).
        let savepoint = self.savepoint_id == Some(id) || self.savepoint_waiter(id);
        let base = self.chain.as_ref().and_then(|chain| {
            let extend = !savepoint
                && chain.deltas < self.config.max_deltas
                && chain.delta_bytes < chain.whole_bytes;
            extend.then_some(chain.last)
        });
        tracing::debug!(id, ?base, "checkpoint triggered");
        let span = tracing::info_span!(
            parent: None,
            "checkpoint",
            pipeline = %self.config.pipeline,
            checkpoint = id,
            base = base.unwrap_or(0),
            participants = self.config.participants,
            savepoint,
            outcome = Empty,
            bytes = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        tracing::info_span!(parent: &span, "trigger", checkpoint = id)
            .in_scope(|| self.shared.request(id, base));
        let phase = tracing::info_span!(parent: &span, "barriers", checkpoint = id);
        self.pending = Some(Pending {
            id,
            base,
            started: Instant::now(),
            acks: HashMap::new(),
            span,
            phase,
        });
    }

    /// Whether an on-demand savepoint waits for checkpoint `id`.
    fn savepoint_waiter(&self, id: u64) -> bool {
        self.waiters
            .iter()
            .any(|w| w.id == Some(id) && w.savepoint_dir.is_some())
    }

    /// Writes `checkpoint` as `savepoint-<id>` in the savepoint directory, and says where.
    async fn write_savepoint(&mut self, checkpoint: Checkpoint) {
        let Some(dir) = self.config.savepoint_dir.clone() else {
            return;
        };
        match write_savepoint_into(&dir, checkpoint).await {
            Ok(path) => {
                tracing::info!(path = %path.display(), "savepoint written");
                let _ = self
                    .notices
                    .send(format!("savepoint written to {}", path.display()));
                self.report.savepoint = Some(path);
            }
            Err(reason) => self.savepoint_failed(reason),
        }
    }

    /// Answers the on-demand requests that waited for completed checkpoint `id`, writing
    /// the savepoints they asked for (`checkpoint` is a copy, when one did).
    async fn answer_completed(&mut self, id: u64, checkpoint: Option<Checkpoint>) {
        let (done, waiting) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.id == Some(id));
        self.waiters = waiting;
        for waiter in done {
            let answer = match (&waiter.savepoint_dir, &checkpoint) {
                (None, _) => Ok((id, self.config.store.location_of(id))),
                (Some(dir), Some(checkpoint)) => write_savepoint_into(dir, checkpoint.clone())
                    .await
                    .map(|path| (id, path)),
                (Some(_), None) => Err(format!("checkpoint {id}: no copy for the savepoint")),
            };
            if let Ok((_, path)) = &answer {
                tracing::info!(id, path = %path.display(), "on-demand checkpoint answered");
            }
            let _ = waiter.reply.send(answer);
        }
    }

    /// Answers the on-demand requests that waited for the checkpoint in flight: it failed.
    fn answer_aborted(&mut self, reason: &str) {
        let (aborted, waiting) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.id.is_some());
        self.waiters = waiting;
        for waiter in aborted {
            let _ = waiter.reply.send(Err(format!("aborted: {reason}")));
        }
    }

    fn savepoint_failed(&mut self, reason: String) {
        tracing::error!(%reason, "savepoint failed");
        let _ = self.notices.send(format!("error: savepoint: {reason}"));
        self.report
            .first_abort
            .get_or_insert(format!("savepoint: {reason}"));
    }

    fn abort(&mut self, reason: String) {
        tracing::warn!(%reason, "checkpoint aborted");
        if let Some(pending) = &self.pending {
            pending.aborted(&reason);
        }
        self.report.aborted += 1;
        self.answer_aborted(&reason);
        self.report.first_abort.get_or_insert(reason);
        if self.savepoint_id.take().is_some() {
            self.savepoint_wanted = true; // the next checkpoint is the savepoint
        }
        self.pending = None;
        self.last_end = Instant::now();
        self.gauges.publish(&self.report);
    }

    fn on_ack(&mut self, ack: Ack) {
        let instance = (ack.task, ack.core);
        match ack.checkpoint {
            None => {
                self.finished.insert(instance, ack.content);
            }
            Some(id) => {
                let Some(pending) = self.pending.as_mut().filter(|p| p.id == id) else {
                    return; // an aborted checkpoint's late ack
                };
                if let AckContent::Failed(reason) = &ack.content {
                    let reason = format!("checkpoint {id}: {reason}");
                    self.abort(reason);
                    return;
                }
                if pending.acks.is_empty() {
                    let acks = tracing::info_span!(parent: &pending.span, "acks", checkpoint = id, acks = Empty);
                    pending.enter_phase(acks);
                }
                pending.acks.insert(instance, ack.content);
            }
        }
    }

    /// Completes the pending checkpoint if every instance has acked it or ended.
    async fn try_complete(&mut self) {
        let Some(pending) = &self.pending else { return };
        let ended = self
            .finished
            .keys()
            .filter(|instance| !pending.acks.contains_key(instance))
            .count();
        if pending.acks.len() + ended < self.config.participants {
            return;
        }
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        pending.phase.record("acks", pending.acks.len());
        let commit = tracing::info_span!(parent: &pending.span, "commit", checkpoint = pending.id, bytes = Empty);
        pending.enter_phase(commit.clone());
        let entered = commit.clone().entered();
        let mut contents: Vec<(usize, &AckContent)> = pending
            .acks
            .iter()
            .map(|((_, core), content)| (*core, content))
            .collect();
        contents.extend(
            self.finished
                .iter()
                .filter(|(instance, _)| !pending.acks.contains_key(instance))
                .map(|((_, core), content)| (*core, content)),
        );
        if let Some((_, AckContent::Failed(reason))) = contents
            .iter()
            .find(|(_, c)| matches!(c, AckContent::Failed(_)))
        {
            let reason = format!("checkpoint {}: {reason}", pending.id);
            pending.aborted(&reason);
            self.abort(reason);
            return;
        }
        let checkpoint = match self.assemble(pending.id, pending.base, false, &contents) {
            Ok(checkpoint) => checkpoint,
            Err(reason) => {
                let reason = format!("checkpoint {}: {reason}", pending.id);
                pending.aborted(&reason);
                return self.abort(reason);
            }
        };
        drop(entered);
        let incremental = checkpoint.base.is_some();
        let wanted = self.savepoint_id == Some(pending.id) || self.savepoint_waiter(pending.id);
        let copy = wanted.then(|| checkpoint.clone());
        let written = self.write(checkpoint).instrument(commit.clone()).await;
        drop(commit);
        match written {
            Ok(bytes) => self.committed(pending, bytes, incremental, copy).await,
            Err(reason) => {
                let reason = format!("checkpoint {}: {reason}", pending.id);
                pending.aborted(&reason);
                self.abort(reason);
            }
        }
    }

    /// `pending` was written (`bytes`): marks it complete, then writes the savepoints and
    /// answers the requests that waited for it (`copy` of it, if they need one).
    async fn committed(
        &mut self,
        mut pending: Pending,
        bytes: u64,
        incremental: bool,
        copy: Option<Checkpoint>,
    ) {
        let commit = std::mem::replace(&mut pending.phase, tracing::Span::none());
        commit.record("bytes", bytes);
        pending.span.record("bytes", bytes);
        pending.span.record("outcome", "complete");
        let ms = pending.started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            id = pending.id,
            ms,
            bytes,
            incremental,
            "checkpoint complete"
        );
        commit.in_scope(|| {
            self.completed(pending.id, ms, bytes, incremental);
            if !self.config.in_parts {
                self.shared.complete(pending.id);
                if let Ok(Some(oldest)) = self.config.store.oldest_retained() {
                    self.shared.retain_from(oldest);
                }
            }
        });
        self.last_end = Instant::now();
        drop(commit);
        let answer = tracing::info_span!(parent: &pending.span, "answer", checkpoint = pending.id);
        self.after_complete(pending.id, copy)
            .instrument(answer)
            .await;
    }

    /// Writes the savepoints completed checkpoint `id` was asked for (`copy` of it) and
    /// answers its on-demand requests.
    async fn after_complete(&mut self, id: u64, copy: Option<Checkpoint>) {
        if self.savepoint_id == Some(id) {
            self.savepoint_id = None;
            if let Some(checkpoint) = copy.clone() {
                self.write_savepoint(checkpoint).await;
            }
        }
        self.answer_completed(id, copy).await;
    }

    /// Records completed checkpoint `id` (`bytes` written in `ms`) in the report and the
    /// chain.
    fn completed(&mut self, id: u64, ms: f64, bytes: u64, incremental: bool) {
        let report = &mut self.report;
        report.completed += 1;
        report.last_id = Some(id);
        report.durations_ms.push(ms);
        report.last_bytes = bytes;
        report.sizes.push((bytes, incremental));
        report.incremental += u64::from(incremental);
        self.gauges.publish(report);
        self.chain = match self.chain.take() {
            Some(chain) if incremental => Some(Chain {
                last: id,
                deltas: chain.deltas + 1,
                delta_bytes: chain.delta_bytes + bytes,
                ..chain
            }),
            _ => Some(Chain {
                last: id,
                deltas: 0,
                whole_bytes: bytes,
                delta_bytes: 0,
            }),
        };
    }

    /// Gathers acks into checkpoint `id`, whose deltas build on `base`. A delta on another
    /// base is an error (it cannot happen: the instances follow [`Checkpointing::base`]).
    fn assemble(
        &self,
        id: u64,
        base: Option<u64>,
        last: bool,
        contents: &[(usize, &AckContent)],
    ) -> Result<Checkpoint, String> {
        let (sources, operators) = gather(base, contents)?;
        let incremental = operators
            .iter()
            .any(|o| o.instances.iter().any(|i| i.delta));
        Ok(Checkpoint {
            id,
            pipeline: self.config.pipeline.clone(),
            cores: self.config.cores,
            max_parallelism: self.config.max_parallelism,
            last,
            base: base.filter(|_| incremental),
            completed_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            sources,
            operators,
        })
    }

    /// Writes on the blocking pool; the bytes written.
    async fn write(&self, checkpoint: Checkpoint) -> Result<u64, String> {
        let store = self.config.store.clone();
        tokio::task::spawn_blocking(move || store.write(&checkpoint))
            .await
            .map_err(|err| err.to_string())?
            .map(|written| written.bytes)
            .map_err(|err| err.to_string())
    }

    /// The trace of the run's last checkpoint `id`: its root and its `commit` span.
    fn last_checkpoint_spans(&self, id: u64) -> (tracing::Span, tracing::Span) {
        let span = tracing::info_span!(
            parent: None,
            "checkpoint",
            pipeline = %self.config.pipeline,
            checkpoint = id,
            last = true,
            outcome = Empty,
            bytes = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let commit = tracing::info_span!(parent: &span, "commit", checkpoint = id, bytes = Empty);
        (span, commit)
    }

    /// The run ended: the last checkpoint from every instance's final ack.
    async fn finish(&mut self) -> CheckpointReport {
        self.try_complete().await;
        if let Some(pending) = self.pending.take() {
            pending.aborted("the pipeline ended before the checkpoint completed");
        }
        for waiter in std::mem::take(&mut self.waiters) {
            let why = "the pipeline ended before the checkpoint completed".to_string();
            let _ = waiter.reply.send(Err(why));
        }
        let clean = !self.config.in_parts
            && self.finished.len() >= self.config.participants
            && !self
                .finished
                .values()
                .any(|c| matches!(c, AckContent::Failed(_)));
        if clean {
            let id = self.next_id;
            self.next_id += 1;
            let contents: Vec<(usize, &AckContent)> = self
                .finished
                .iter()
                .map(|((_, core), content)| (*core, content))
                .collect();
            let (span, commit) = self.last_checkpoint_spans(id);
            // Final acks hold whole state: the last checkpoint is one.
            let checkpoint = commit.in_scope(|| self.assemble(id, None, true, &contents));
            let savepoint = match &checkpoint {
                Ok(checkpoint) if self.config.savepoint_dir.is_some() => Some(checkpoint.clone()),
                _ => None,
            };
            let started = Instant::now();
            let written = match checkpoint {
                Ok(checkpoint) => self.write(checkpoint).instrument(commit.clone()).await,
                Err(reason) => Err(reason),
            };
            match written {
                Ok(bytes) => {
                    commit.record("bytes", bytes);
                    span.record("bytes", bytes);
                    span.record("outcome", "complete");
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    self.completed(id, ms, bytes, false);
                    self.shared.complete(id);
                }
                Err(reason) => {
                    span.record("outcome", "aborted");
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_message", reason.as_str());
                    self.report.aborted += 1;
                    self.report
                        .first_abort
                        .get_or_insert(format!("last checkpoint {id}: {reason}"));
                    self.gauges.publish(&self.report);
                }
            }
            if let Some(checkpoint) = savepoint {
                self.write_savepoint(checkpoint).await;
            }
        }
        self.report.clone()
    }
}

/// The sources' positions and the operators' instances of `contents` (sorted by partition
/// and by core); an instance's delta must build on `base`.
fn gather(
    base: Option<u64>,
    contents: &[(usize, &AckContent)],
) -> Result<(Vec<SourceState>, Vec<OperatorState>), String> {
    let mut sources: Vec<SourceState> = Vec::new();
    let mut operators: Vec<OperatorState> = Vec::new();
    for (core, content) in contents {
        match content {
            AckContent::Source {
                name,
                partitions,
                positions,
            } => {
                let new = || SourceState {
                    name: name.clone(),
                    partitions: *partitions,
                    positions: Vec::new(),
                };
                let source = entry(&mut sources, |s| s.name == *name, new);
                source.positions.extend(positions.iter().cloned());
            }
            AckContent::Operator {
                name,
                kind,
                sections,
                delta_of,
            } => {
                if delta_of.is_some() && *delta_of != base {
                    return Err(format!(
                        "operator `{name}` on core {core} sent changes since checkpoint {delta_of:?}, not {base:?}"
                    ));
                }
                let new = || OperatorState {
                    name: name.clone(),
                    kind: kind.clone(),
                    instances: Vec::new(),
                };
                let operator = entry(&mut operators, |o| o.name == *name, new);
                operator.instances.push(InstanceState {
                    core: *core,
                    sections: sections.clone(),
                    delta: delta_of.is_some(),
                });
            }
            AckContent::Passed | AckContent::Failed(_) => {}
        }
    }
    for operator in &mut operators {
        operator.instances.sort_by_key(|instance| instance.core);
    }
    for source in &mut sources {
        source.positions.sort_by_key(|p| p.partition);
    }
    Ok((sources, operators))
}

/// The entry of `list` that `is` picks, pushed there by `new()` when there is none.
fn entry<T>(list: &mut Vec<T>, is: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> &mut T {
    let at = match list.iter().position(is) {
        Some(at) => at,
        None => {
            list.push(new());
            list.len() - 1
        }
    };
    &mut list[at]
}

/// Writes `checkpoint` as `<dir>/savepoint-<id>` on the blocking pool; the path.
async fn write_savepoint_into(
    dir: &std::path::Path,
    checkpoint: Checkpoint,
) -> Result<PathBuf, String> {
    let path = dir.join(format!("savepoint-{:08}", checkpoint.id));
    let written = tokio::task::spawn_blocking({
        let path = path.clone();
        move || wire_storage::checkpoint::write_dir(&path, &checkpoint)
    })
    .await;
    match written {
        Ok(Ok(_)) => Ok(path),
        Ok(Err(err)) => Err(format!("savepoint {}: {err}", path.display())),
        Err(err) => Err(format!("savepoint {}: {err}", path.display())),
    }
}

/// Why an on-demand checkpoint has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDemandError {
    /// It was aborted (an instance failed, it timed out, it could not be written) or the
    /// run ended first.
    Failed(String),
    /// Not answered within the wait; it may still complete.
    TimedOut,
    /// The coordinator is gone (the run ended).
    Gone,
}

/// A `Send + Clone` link to a running coordinator, for on-demand checkpoints from any task of
/// the process's tokio runtime.
#[derive(Clone)]
pub struct CoordinatorLink {
    actor: ActorRef<CoordinatorMsg>,
}

impl CoordinatorLink {
    /// Takes a checkpoint now (with `savepoint_dir`, also written there as `savepoint-<id>`)
    /// and waits at most `wait` for it: its id and where it went.
    pub async fn checkpoint(
        &self,
        savepoint_dir: Option<PathBuf>,
        wait: Duration,
    ) -> Result<(u64, PathBuf), OnDemandError> {
        let build = |reply| CoordinatorMsg::OnDemand(savepoint_dir, reply);
        match self.actor.call(build, Some(wait)).await {
            Ok(ractor::rpc::CallResult::Success(Ok(done))) => Ok(done),
            Ok(ractor::rpc::CallResult::Success(Err(why))) => Err(OnDemandError::Failed(why)),
            Ok(ractor::rpc::CallResult::Timeout) => Err(OnDemandError::TimedOut),
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(OnDemandError::Gone),
        }
    }
}

/// A running coordinator, on the process's tokio runtime.
pub struct CoordinatorHandle {
    runtime: tokio::runtime::Handle,
    actor: ActorRef<CoordinatorMsg>,
    notices: crossbeam_channel::Receiver<String>,
    gauges: Arc<CheckpointGauges>,
    shared: Arc<Checkpointing>,
}

impl CoordinatorHandle {
    /// Starts the coordinator on `runtime` from a thread outside it; acks arrive on `acks`.
    pub fn start(
        config: CoordinatorConfig,
        shared: Arc<Checkpointing>,
        acks: crossbeam_channel::Receiver<Ack>,
        runtime: &tokio::runtime::Handle,
    ) -> std::io::Result<CoordinatorHandle> {
        runtime.block_on(Self::spawn(config, shared, acks))
    }

    /// Starts the coordinator on the current tokio runtime; acks arrive on `acks`.
    pub async fn spawn(
        config: CoordinatorConfig,
        shared: Arc<Checkpointing>,
        acks: crossbeam_channel::Receiver<Ack>,
    ) -> std::io::Result<CoordinatorHandle> {
        let (notice_tx, notices) = crossbeam_channel::unbounded();
        let gauges = Arc::new(CheckpointGauges::default());
        let arguments = (config, shared.clone(), notice_tx, gauges.clone());
        let (actor, _) = Actor::spawn(None, Coordinator, arguments)
            .await
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        let bridge = actor.clone();
        std::thread::Builder::new()
            .name("wire-acks".into())
            .spawn(move || {
                for ack in acks {
                    if bridge.cast(CoordinatorMsg::Ack(ack)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(CoordinatorHandle {
            runtime: tokio::runtime::Handle::current(),
            actor,
            notices,
            gauges,
            shared,
        })
    }

    /// What the coordinator shares with the data cores (the restore's duration).
    pub fn checkpointing(&self) -> Arc<Checkpointing> {
        self.shared.clone()
    }

    /// The coordinator's figures for `/metrics`, kept up to date as checkpoints end.
    pub fn gauges(&self) -> Arc<CheckpointGauges> {
        self.gauges.clone()
    }

    /// Lines for the user that arrived since the last call (savepoints written or failed).
    pub fn notices(&self) -> Vec<String> {
        self.notices.try_iter().collect()
    }

    /// A link for on-demand checkpoints from the runtime's tasks.
    pub fn link(&self) -> CoordinatorLink {
        CoordinatorLink {
            actor: self.actor.clone(),
        }
    }

    /// Asks for a savepoint now (see [`CoordinatorMsg::Savepoint`]).
    pub fn savepoint(&self) {
        let _ = self.actor.cast(CoordinatorMsg::Savepoint);
    }

    /// After the run, from a thread outside the runtime: writes the last checkpoint and
    /// reports.
    pub fn finish(self) -> CheckpointReport {
        let runtime = self.runtime.clone();
        runtime.block_on(self.finished())
    }

    /// After the run (every core's instance ended): writes the last checkpoint, reports, and
    /// stops the coordinator.
    pub async fn finished(self) -> CheckpointReport {
        let actor = self.actor.clone();
        // Final acks sent as the cores ended may still be on the bridge.
        let deadline = Instant::now() + FINAL_ACKS_WAIT;
        let report = loop {
            let force = Instant::now() >= deadline;
            match ractor::call!(actor, CoordinatorMsg::Finish, force) {
                Ok(Some(report)) => break Some(report),
                Ok(None) => tokio::time::sleep(Duration::from_millis(2)).await,
                Err(_) => break None,
            }
        };
        self.actor.stop(None);
        report.unwrap_or_default()
    }
}

/// How long the coordinator waits for the final acks of a run whose cores have all joined.
const FINAL_ACKS_WAIT: Duration = Duration::from_secs(2);
