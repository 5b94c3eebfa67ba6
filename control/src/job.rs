//! One pipeline run on a core pool, from its file to its end: load and check the file, settle
//! what earlier runs left (the checkpoint to restore, refusals, `--fresh`), deploy on the pool,
//! run the checkpoint coordinator, and at the end publish the sinks' last files and report.
//!
//! `wire run` drives one [`Job`] on a pool of its own and prints what it says to stderr; a
//! `wire start` node drives one per pipeline assigned to it on the node's pool and sends what
//! it says to the log. What a job has to tell its operator goes through a [`Say`].

mod files;
mod resume;
mod summary;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire_actors::{Checkpointing, Deploy, Deployment, PoolHandle, RunProbe, RunReport};
use wire_core::frontend::plan::Plan;
use wire_storage::checkpoint::{CheckpointStore, StoreUrl};

use crate::checkpoint::{Chain, CheckpointReport, CoordinatorConfig, CoordinatorHandle};
pub use files::NewDirs;
use resume::Restore;
pub use summary::{human_count, peak_rss_bytes, Summary};

/// Where a job's lines for its operator go (stderr for `wire run`, the log on a node).
pub type Say<'a> = &'a (dyn Fn(&str) + Sync);

/// What a run was asked to do (`wire run`'s flags).
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Data cores; all CPUs when `None`.
    pub cores: Option<usize>,
    /// Where WALs and other state go.
    pub data_dir: PathBuf,
    /// Print the live progress line (when stderr is a terminal).
    pub progress: bool,
    /// Pin executors to CPUs.
    pub pin: bool,
    /// Checkpointing, when asked for.
    pub checkpoints: Option<CheckpointArgs>,
    /// The other checkpoint options (timeout, retained, deltas) for when the pipeline's
    /// `settings` ask for checkpoints and the command line does not; `None`: settings ignored.
    pub checkpoint_defaults: Option<CheckpointArgs>,
    /// Where checkpoints go (with an S3 `checkpoint_store`, where they are staged); default
    /// `<data-dir>/<pipeline>/checkpoints`.
    pub checkpoint_dir: Option<PathBuf>,
    /// An S3 checkpoint store (a directory store is `checkpoint_dir`).
    pub checkpoint_store: Option<StoreUrl>,
    /// `--fresh`: delete the checkpoints and the file sinks' part files first.
    pub fresh: bool,
    /// `--append-output`: write into file sink directories that hold an earlier run's parts.
    pub append_output: bool,
    /// `--allow-empty-restore`: start from empty state though committed checkpoints exist.
    pub allow_empty_restore: bool,
    /// The slots this process runs of a pipeline spread over nodes (`None`: all of them).
    pub placement: Option<wire_actors::exchange::Placement>,
    /// Write file sinks' parts into this subdirectory of each sink's path (each node of a
    /// spread pipeline writes its own, so nodes sharing a filesystem never share a directory).
    pub sink_subdir: Option<String>,
    /// Who may produce to the pipeline's ingest sources (security on); `None`: everyone.
    pub ingest_auth: Option<std::sync::Arc<dyn wire_actors::IngestAuth>>,
    /// A spread pipeline that checkpoints restores this complete checkpoint (its id, and its
    /// parts' stores one per line, as the metadata records them), never the newest in its
    /// own part store, which may be a part that other nodes never completed.
    pub restore_parts: Option<(u64, String)>,
    /// The sink subdirectories of every node a spread pipeline runs on (see `sink_subdir`).
    pub spread_subdirs: Vec<String>,
    /// TLS on the pipeline's ingest ports; `None`: plaintext.
    pub ingest_tls: Option<std::sync::Arc<wire_actors::IngestTls>>,
    /// The node running the job (0 for `wire run`): the high bits of the producer ids its
    /// ingest sources issue.
    pub node_id: u64,
    /// Added to the port of each `ingest` source's `listen` (not to port 0): several nodes on
    /// one machine serve the same pipeline on ports apart.
    pub ingest_port_offset: u16,
}

impl RunArgs {
    /// Whether the run is one node's part of a spread pipeline that checkpoints.
    pub fn in_parts(&self) -> bool {
        self.placement.is_some() && self.checkpoints.is_some()
    }

    /// These arguments with the pipeline's `settings` filling in what the command line left
    /// out: `cores`, and `checkpoint_interval` (with `checkpoint_defaults`' other options).
    pub fn with_settings(&self, settings: &wire_core::frontend::spec::Settings) -> RunArgs {
        let mut args = self.clone();
        if args.cores.is_none() {
            args.cores = settings.cores.map(|c| c as usize);
        }
        if args.checkpoints.is_none() {
            if let (Some(ms), Some(defaults)) =
                (settings.checkpoint_interval_ms, &self.checkpoint_defaults)
            {
                args.checkpoints = Some(CheckpointArgs {
                    interval: Duration::from_millis(ms),
                    ..defaults.clone()
                });
            }
        }
        args
    }

    /// Refuses flags that need checkpoints (`--savepoint-dir`, `--from-savepoint`,
    /// `--allow-empty-restore`) when neither the command line nor the pipeline's settings
    /// ask for checkpoints; call it on [`RunArgs::with_settings`]' result.
    pub fn check_checkpoint_flags(&self) -> Result<(), String> {
        if self.checkpoints.is_some() {
            return Ok(());
        }
        let defaults = self.checkpoint_defaults.as_ref();
        let flag = if defaults.is_some_and(|d| d.savepoint_dir.is_some()) {
            "--savepoint-dir"
        } else if defaults.is_some_and(|d| d.from_savepoint.is_some()) {
            "--from-savepoint"
        } else if self.allow_empty_restore {
            "--allow-empty-restore"
        } else {
            return Ok(());
        };
        Err(format!(
            "{flag} needs checkpoints: pass --checkpoint-interval, or set an interval in {} \
             (SQL: SET 'execution.checkpointing.interval' = '1s'; YAML: settings: \
             {{checkpoint_interval: 1s}})",
            self.pipeline.display()
        ))
    }

    /// The slots this run owns of a spread pipeline, if it is one.
    fn local_slots(&self) -> Option<&[usize]> {
        self.placement.as_ref().map(|p| p.local.as_slice())
    }
}

/// `--checkpoint-*` and savepoint options.
#[derive(Debug, Clone)]
pub struct CheckpointArgs {
    /// Time between checkpoints.
    pub interval: Duration,
    /// Abort a checkpoint not complete after this long.
    pub timeout: Duration,
    /// Completed checkpoints kept.
    pub retained: usize,
    /// Incremental checkpoints in a row at most (0: none).
    pub deltas: u32,
    /// Start from this savepoint when there is no checkpoint yet.
    pub from_savepoint: Option<PathBuf>,
    /// Also write the run's last checkpoint here as a savepoint.
    pub savepoint_dir: Option<PathBuf>,
}

/// How `wire run` ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ran to the end or stopped gracefully.
    Done,
    /// The pipeline file is not valid; nothing ran.
    Invalid,
    /// The run failed.
    Failed,
}

/// Loads and checks a pipeline file: every error names file, line, column and field.
pub fn load(path: &Path) -> Result<Plan, String> {
    let checked = crate::check::check_file(path).map_err(|err| err.to_string())?;
    Ok(checked.plan)
}

/// Adds `offset` to the port of every `ingest` source's `listen` address that has one (port 0
/// stays: the kernel picks); a port pushed past 65535 is an error naming the source.
fn offset_ingest_ports(plan: &mut Plan, offset: u16) -> Result<(), String> {
    if offset == 0 {
        return Ok(());
    }
    for source in &mut plan.sources {
        let wire_core::frontend::spec::SourceKind::Ingest(spec) = &mut source.kind else {
            continue;
        };
        // An address that does not parse is left for the bind to refuse, naming the source.
        let Ok(mut addr) = spec.listen.parse::<std::net::SocketAddr>() else {
            continue;
        };
        if addr.port() == 0 {
            continue;
        }
        let port = addr.port().checked_add(offset).ok_or_else(|| {
            format!(
                "source `{}`: listen port {} + the node's ingest-port-offset {offset} is above 65535",
                source.name,
                addr.port()
            )
        })?;
        addr.set_port(port);
        spec.listen = addr.to_string();
    }
    Ok(())
}

/// Moves the plan's file sinks into `args.sink_subdir` of their paths, if one is given.
fn localize_sinks(plan: &mut Plan, args: &RunArgs) {
    let Some(subdir) = &args.sink_subdir else {
        return;
    };
    for sink in &mut plan.sinks {
        if let wire_core::frontend::spec::SinkKind::File(file) = &mut sink.kind {
            file.path = file.path.join(subdir);
        }
    }
}

/// A job that did not start: how (for the exit code) and why.
#[derive(Debug)]
pub struct Refused {
    /// [`Outcome::Invalid`] or [`Outcome::Failed`].
    pub outcome: Outcome,
    /// What to tell the operator.
    pub error: String,
}

impl Refused {
    fn failed(error: impl std::fmt::Display) -> Refused {
        Refused {
            outcome: Outcome::Failed,
            error: error.to_string(),
        }
    }
}

/// A pipeline deployed on a core pool, with its checkpoint coordinator and the locks on its
/// sinks' directories, until [`Job::finish`].
pub struct Job {
    deployment: Deployment,
    coordinator: Option<CoordinatorHandle>,
    /// The data plane takes the plan; settling the sinks after the run needs its own copy.
    sinks_plan: Plan,
    /// The checkpoint restored: its id, and whether it was the last of a run that ended.
    restored: Option<(u64, bool)>,
    /// Held until the run's last files are published: no other process may write (or, when
    /// it restores, settle) these directories meanwhile.
    sink_locks: wire_actors::SinkLocks,
    /// The sink directories this run makes, removed again when it fails and they stayed empty.
    new_dirs: NewDirs,
    /// Where the Kafka sinks stage their transactions.
    data_dir: std::path::PathBuf,
    /// The pipeline file (the dashboard shows it).
    pipeline_file: std::path::PathBuf,
    stopped: bool,
    /// One node's part of a spread pipeline that checkpoints: its sinks publish when the
    /// metadata says a checkpoint is complete, not at the end of this run.
    in_parts: bool,
    /// The trace of the restore, closed here if the run ends before the watcher saw it done.
    restore_trace: Option<RestoreTrace>,
}

impl Job {
    /// Settles what earlier runs of `plan` (loaded from `args.pipeline`) left, deploys it on
    /// `cores` cores of `pool` and starts its checkpoint coordinator on `runtime`.
    pub fn launch(
        args: &RunArgs,
        plan: Plan,
        cores: usize,
        pool: &PoolHandle,
        runtime: &tokio::runtime::Handle,
        say: Say,
    ) -> Result<Job, Refused> {
        tracing::info!(pipeline = %plan.name, cores, "starting");
        let mut plan = plan;
        localize_sinks(&mut plan, args);
        offset_ingest_ports(&mut plan, args.ingest_port_offset).map_err(Refused::failed)?;
        // Before the locks create them.
        let new_dirs = NewDirs::of(&plan);
        let sink_locks = match wire_actors::lock_file_sinks(&plan) {
            Ok(locks) => locks,
            Err(err) => {
                new_dirs.remove_empty();
                return Err(Refused::failed(err));
            }
        };
        match deploy(args, plan, cores, pool, runtime, say) {
            Ok((deployment, coordinator, sinks_plan, restored, restore_trace)) => Ok(Job {
                deployment,
                coordinator,
                sinks_plan,
                restored,
                sink_locks,
                new_dirs,
                data_dir: args.data_dir.clone(),
                pipeline_file: args.pipeline.clone(),
                stopped: false,
                in_parts: args.in_parts(),
                restore_trace,
            }),
            Err(refused) => {
                drop(sink_locks);
                new_dirs.remove_empty();
                Err(refused)
            }
        }
    }

    /// The running pipeline: counters, notices, events, pause and resume.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The checkpoint coordinator, when the run takes checkpoints.
    pub fn coordinator(&self) -> Option<&CoordinatorHandle> {
        self.coordinator.as_ref()
    }

    /// Where `/metrics` reads this job's figures.
    pub fn metric_sources(&self) -> crate::metrics::PipelineSources {
        crate::metrics::PipelineSources {
            probe: self.deployment.probe().clone(),
            checkpoints: self.coordinator.as_ref().map(|c| c.gauges()),
            checkpointing: self.coordinator.as_ref().map(|c| c.checkpointing()),
            plan: Some(Arc::new(crate::metrics::PlanShape::of(
                &self.sinks_plan,
                std::fs::read_to_string(&self.pipeline_file).unwrap_or_default(),
            ))),
        }
    }

    /// The id of the checkpoint the run restored.
    pub fn restored(&self) -> Option<u64> {
        self.restored.map(|(id, _)| id)
    }

    /// Ends the run gracefully: sources stop, everything drains and flushes, and (with
    /// checkpoints) a last checkpoint is taken.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.deployment.cancel();
        }
    }

    /// Ends the run at once, without draining or a last checkpoint: it fails with `why`.
    /// For a run whose output is discarded (a superseded version of a spread pipeline).
    pub fn abort(&mut self, why: String) {
        self.stopped = true;
        self.deployment.abort(why);
    }

    /// Waits for the run to end, writes its last checkpoint, publishes the sinks' last files
    /// and tells the summary.
    pub fn finish(self, say: Say) -> Ended {
        let report: RunReport = self.deployment.wait();
        if let Some(trace) = &self.restore_trace {
            trace.close_if_restored();
        }
        let checkpoints = self.coordinator.map(|c| c.finish());
        let already_done = self
            .restored
            .filter(|(_, last)| *last && !self.stopped)
            .filter(|_| report.error.is_none() && report.probe.source_events() == 0)
            .map(|(id, _)| id);
        let settle = (&self.sinks_plan, self.data_dir.as_path());
        // A part of a spread pipeline publishes once every node has ended (see
        // `settle_parts`), not when this node's slots have.
        let publish = checkpoints.filter(|_| !self.in_parts);
        let ended = finish(settle, report, publish, already_done, say);
        drop(self.sink_locks);
        if ended.outcome != Outcome::Done {
            self.new_dirs.remove_empty();
        }
        ended
    }
}

/// What [`deploy`] starts.
type Deployed = (
    Deployment,
    Option<CoordinatorHandle>,
    Plan,
    Option<(u64, bool)>,
    Option<RestoreTrace>,
);

/// The trace of a restore: its root and its `cores` span stay open until the cores have
/// restored their state. A watcher closes them as soon as they have; the job's end closes
/// them too, should the run end before the watcher looked. The watcher then logs when the
/// restored run's sinks wrote their first rows (`first output after the restore`, with the
/// milliseconds since the job was deployed): how long a recovery kept the output waiting.
#[derive(Clone)]
struct RestoreTrace {
    shared: Arc<Checkpointing>,
    spans: Arc<std::sync::Mutex<Option<(tracing::Span, tracing::Span)>>>,
    probe: Arc<RunProbe>,
    deployed: Instant,
}

impl RestoreTrace {
    /// The trace of a restore's `cores` span, watched on `runtime` until the cores are up
    /// and the deployment's sinks have written (`probe`).
    fn watched(
        prepared: &Prepared,
        cores_span: tracing::Span,
        probe: Arc<RunProbe>,
        runtime: &tokio::runtime::Handle,
    ) -> RestoreTrace {
        let spans = (prepared.restore_span.clone(), cores_span);
        let trace = RestoreTrace {
            shared: prepared.shared.clone(),
            spans: Arc::new(std::sync::Mutex::new(Some(spans))),
            probe,
            deployed: Instant::now(),
        };
        runtime.spawn(trace.clone().watch());
        trace
    }

    /// Records how long the cores took on the root and closes both spans, once the cores
    /// have restored; false while they have not.
    fn close_if_restored(&self) -> bool {
        let Some(took) = self.shared.restore_duration() else {
            return false;
        };
        let spans = self.spans.lock().ok().and_then(|mut spans| spans.take());
        if let Some((root, cores)) = spans {
            root.record("cores_ms", took.as_secs_f64() * 1e3);
            drop(cores);
        }
        true
    }

    /// Closes the spans once the cores have restored (or after an hour: a run that never
    /// finishes restoring has failed, and says so itself).
    async fn watch(self) {
        let give_up = Instant::now() + Duration::from_secs(3600);
        while Instant::now() < give_up && !self.close_if_restored() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(checkpoint) = self.shared.restore().map(|c| c.id) else {
            return;
        };
        while Instant::now() < give_up {
            if self.probe.first_output_ns.load(Ordering::Relaxed) > 0 {
                let ms = self.deployed.elapsed().as_secs_f64() * 1e3;
                tracing::info!(checkpoint, ms, "first output after the restore");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Prepares the checkpoints (or refuses), deploys `plan` on `pool` and starts the coordinator.
fn deploy(
    args: &RunArgs,
    plan: Plan,
    cores: usize,
    pool: &PoolHandle,
    runtime: &tokio::runtime::Handle,
    say: Say,
) -> Result<Deployed, Refused> {
    let prepared = prepare(args, &plan, cores, say).map_err(Refused::failed)?;
    if let Some(prepared) = &prepared {
        // Transactions staged for checkpoints up to the restored one are committed (once),
        // later ones discarded: their rows come again.
        let completed = prepared.shared.restore().map_or(0, |c| c.id);
        wire_actors::recover_kafka_sinks(&plan, &args.data_dir, completed)
            .map_err(Refused::failed)?;
        wire_actors::recover_postgres_sinks(&plan, &args.data_dir, completed)
            .map_err(Refused::failed)?;
    }
    let restored = prepared
        .as_ref()
        .and_then(|p| p.shared.restore().map(|c| (c.id, c.last)));
    let mut sinks_plan = load(&args.pipeline).map_err(|error| Refused {
        outcome: Outcome::Invalid,
        error,
    })?;
    localize_sinks(&mut sinks_plan, args);
    let deploy = Deploy {
        cores,
        data_dir: args.data_dir.clone(),
        checkpoints: prepared.as_ref().map(|p| p.shared.clone()),
        placement: args.placement.clone(),
        ingest_auth: args.ingest_auth.clone(),
        ingest_tls: args.ingest_tls.clone(),
        node_id: args.node_id,
    };
    let cores_span = prepared
        .as_ref()
        .filter(|p| p.shared.restore().is_some())
        .map(|p| tracing::info_span!(parent: &p.restore_span, "cores", cores));
    let deployment = pool.deploy(plan, deploy).map_err(Refused::failed)?;
    let restore_trace = match (&prepared, cores_span) {
        (Some(prepared), Some(cores_span)) => {
            let probe = deployment.probe().clone();
            Some(RestoreTrace::watched(prepared, cores_span, probe, runtime))
        }
        _ => None,
    };
    let coordinator = match prepared {
        Some(prepared) => {
            let started = start_coordinator(prepared, &sinks_plan, &deployment, runtime);
            match started {
                Ok(handle) => Some(handle),
                Err(err) => {
                    deployment.cancel();
                    let _ = deployment.wait();
                    return Err(Refused::failed(format!(
                        "cannot start the checkpoint coordinator: {err}"
                    )));
                }
            }
        }
        None => None,
    };
    Ok((deployment, coordinator, sinks_plan, restored, restore_trace))
}

/// Starts the checkpoint coordinator of a running pipeline on `runtime`.
fn start_coordinator(
    prepared: Prepared,
    plan: &Plan,
    running: &Deployment,
    runtime: &tokio::runtime::Handle,
) -> Result<CoordinatorHandle, String> {
    let config = CoordinatorConfig {
        pipeline: plan.name.clone(),
        cores: running.cores(),
        max_parallelism: plan.settings.max_parallelism,
        participants: running.checkpoint_participants(),
        interval: prepared.interval,
        timeout: prepared.timeout,
        store: prepared.store,
        savepoint_dir: prepared.savepoint_dir,
        max_deltas: prepared.deltas,
        restored_chain: prepared.chain,
        in_parts: prepared.in_parts,
    };
    CoordinatorHandle::start(config, prepared.shared, prepared.acks, runtime)
        .map_err(|e| e.to_string())
}

/// Publishes the sinks' last files, prints the summary, and says when a restored run found
/// nothing left to do (`already_done`: the checkpoint it restored).
fn finish(
    (plan, data_dir): (&Plan, &std::path::Path),
    report: RunReport,
    checkpoints: Option<CheckpointReport>,
    already_done: Option<u64>,
    say: Say,
) -> Ended {
    if let (Some(done), None) = (&checkpoints, &report.error) {
        // The run's last checkpoint is written: publish what the sinks staged for it.
        if let Some(last) = done.last_id {
            if let Err(err) = wire_actors::recover_file_sinks(plan, last) {
                let error = format!("publishing the sinks' last files: {err}");
                say(&format!("error: {error}"));
                return Ended::failed(error);
            }
            if let Err(err) = wire_actors::recover_kafka_sinks(plan, data_dir, last) {
                let error = format!("committing the kafka sinks' last transactions: {err}");
                say(&format!("error: {error}"));
                return Ended::failed(error);
            }
            if let Err(err) = wire_actors::recover_postgres_sinks(plan, data_dir, last) {
                let error = format!("committing the postgres sinks' last transactions: {err}");
                say(&format!("error: {error}"));
                return Ended::failed(error);
            }
        }
    }
    report_end(&plan.name, &report, checkpoints.as_ref(), already_done, say)
}

/// Prints the summary (for a failed run, only when a source emitted something: a summary of
/// zeros says nothing), says when a restored run found nothing left to do (`already_done`:
/// the checkpoint it restored), and prints the run's error once.
fn report_end(
    name: &str,
    report: &RunReport,
    checkpoints: Option<&CheckpointReport>,
    already_done: Option<u64>,
    say: Say,
) -> Ended {
    let emitted = report.probe.first_batch_ns.load(Ordering::Relaxed) > 0;
    if report.error.is_none() || emitted {
        let summary = Summary::new(name, report).to_string();
        say(summary.trim_end_matches('\n'));
        if let Some(done) = checkpoints {
            say(&checkpoint_line(done));
        }
    }
    if let Some(id) = already_done {
        say(&format!(
            "note: the pipeline already finished at checkpoint {id}: its sources were exhausted, so there was nothing to do; pass --fresh to start over (it deletes the checkpoints and the file sinks' output)"
        ));
    }
    let Some(err) = &report.error else {
        return Ended {
            outcome: Outcome::Done,
            error: None,
        };
    };
    say(&format!("error: {err}"));
    if report.further_errors > 0 {
        say(&format!(
            "  ({} more task(s) failed after this error; RUST_LOG=info logs each)",
            report.further_errors
        ));
    }
    Ended::failed(err.to_string())
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// For the exit code.
    pub outcome: Outcome,
    /// The run's first error, when it failed.
    pub error: Option<String>,
}

impl Ended {
    fn failed(error: String) -> Ended {
        Ended {
            outcome: Outcome::Failed,
            error: Some(error),
        }
    }
}

/// The number of data cores: `--cores`, or every CPU the process may use. Pinned executors
/// take one CPU each, so asking for more than there are is refused; unpinned ones (`--no-pin`)
/// may outnumber the CPUs (tests do), with a warning. A core without a key group would idle.
/// `written` is how the pipeline's settings wrote the number when it came from them (see
/// [`Settings::cores_written`](wire_core::frontend::spec::Settings::cores_written)), so that
/// errors quote it instead of `--cores N`.
pub fn data_cores(
    requested: Option<usize>,
    written: Option<&str>,
    pin: bool,
    key_groups: u32,
    say: Say,
) -> Result<usize, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(cores) = requested else {
        return Ok(cpus.min(key_groups as usize).max(1));
    };
    let asked = match written {
        Some(written) => written.to_string(),
        None => format!("--cores {cores}"),
    };
    if cores == 0 {
        return Err(format!("{asked}: a pipeline needs at least one data core"));
    }
    if cores > key_groups as usize {
        return Err(format!(
            "{asked}: the pipeline has {key_groups} key groups (max_parallelism), so at most {key_groups} cores can own state"
        ));
    }
    if cores > cpus {
        if pin {
            let fewer = match written {
                Some(_) => format!("lower it to {cpus} or fewer, or pass --cores {cpus}"),
                None => format!("use --cores {cpus} or fewer"),
            };
            return Err(format!(
                "{asked}: this process may use {cpus} CPUs and each data core is pinned to its own; {fewer}, or add --no-pin to run {cores} executors that share the CPUs (slower; meant for tests)"
            ));
        }
        say(&format!("warning: {cores} data cores share {cpus} CPUs (--no-pin): expect lower throughput than with --cores {cpus}"));
    }
    Ok(cores)
}

/// What a checkpointed run needs before its cores start.
struct Prepared {
    shared: Arc<Checkpointing>,
    acks: crossbeam_channel::Receiver<wire_actors::Ack>,
    store: CheckpointStore,
    interval: Duration,
    timeout: Duration,
    savepoint_dir: Option<PathBuf>,
    deltas: u32,
    chain: Option<Chain>,
    in_parts: bool,
    /// The trace of what the run restores, open until its cores have restored it.
    restore_span: tracing::Span,
}

/// Settles what earlier runs left before the cores start: `--fresh`, the checkpoint to
/// restore (or the refusal to start without one), the output already published.
fn prepare(
    args: &RunArgs,
    plan: &Plan,
    cores: usize,
    say: Say,
) -> Result<Option<Prepared>, String> {
    if args.fresh {
        resume::start_fresh(args, plan, say)?;
    }
    let Some(checkpoint_args) = &args.checkpoints else {
        resume::refuse_earlier_output(args, plan)?;
        return Ok(None);
    };
    let store = resume::open_store(args, plan, checkpoint_args.retained)?;
    let started = Instant::now();
    let span = tracing::info_span!(
        parent: None,
        "restore",
        pipeline = %plan.name,
        checkpoint = tracing::field::Empty,
        state_bytes = tracing::field::Empty,
        cores_ms = tracing::field::Empty,
    );
    let read = tracing::info_span!(parent: &span, "read");
    let (checkpoint_args, restore) = if args.in_parts() {
        let restore = read.in_scope(|| restore_of_parts(args))?;
        // A part store keeps whole checkpoints of its slots only: no deltas to build on.
        let whole = CheckpointArgs {
            deltas: 0,
            ..checkpoint_args.clone()
        };
        (whole, restore)
    } else {
        let restore =
            read.in_scope(|| resume::choose_restore(args, checkpoint_args, &store, plan, say))?;
        if restore.is_none() {
            resume::refuse_earlier_output(args, plan)?;
        }
        (checkpoint_args.clone(), restore)
    };
    let _entered = span.enter();
    prepare_checkpoints(
        &checkpoint_args,
        (plan, args),
        cores,
        (store, restore),
        (started, say),
    )
    .map(|mut prepared| {
        prepared.restore_span = span.clone();
        Some(prepared)
    })
}

/// The checkpoint a node's part of a spread pipeline restores: the parts `--restore-parts`
/// names, merged (none without it).
fn restore_of_parts(args: &RunArgs) -> Result<Option<Restore>, String> {
    let Some((id, stores)) = &args.restore_parts else {
        return Ok(None);
    };
    let staging = args.data_dir.join("restore-staging");
    let checkpoint = crate::spread::read_parts(*id, stores, &staging)?;
    let path = PathBuf::from(stores.lines().next().unwrap_or_default());
    Ok(Some(Restore {
        checkpoint,
        path,
        from_store: false,
    }))
}

/// Settles the file sinks to the checkpoint restored (if any), tells the user, and sets up
/// the run's checkpointing.
fn prepare_checkpoints(
    checkpoint_args: &CheckpointArgs,
    (plan, args): (&Plan, &RunArgs),
    cores: usize,
    (store, restore): (CheckpointStore, Option<Restore>),
    (started, say): (Instant, Say),
) -> Result<Prepared, String> {
    // The next checkpoints may build on a restored checkpoint of this store taken with as
    // many cores: each core restored exactly its old state, so its changes since are a delta.
    let chain = match &restore {
        Some(r) if r.from_store && r.checkpoint.cores == cores => Some(Chain::of(&r.checkpoint)),
        _ => None,
    };
    if let Some(Restore { checkpoint, .. }) = &restore {
        if checkpoint.pipeline != plan.name {
            return Err(format!(
                "checkpoint {} is of pipeline `{}`, not `{}`",
                checkpoint.id, checkpoint.pipeline, plan.name
            ));
        }
    }
    let completed = restore.as_ref().map_or(0, |r| r.checkpoint.id);
    let (published, deleted) = tracing::info_span!("settle_sinks", checkpoint = completed)
        .in_scope(|| settle_sinks(plan, args, completed))?;
    if let Some(restore) = &restore {
        say_restoring(restore, (published, deleted), (started, say));
    }
    let last_id = store
        .newest_id()
        .map_err(|e| e.to_string())?
        .unwrap_or(0)
        .max(completed);
    let (tx, acks) = crossbeam_channel::unbounded();
    let chain_from = chain.as_ref().map(|c| c.last);
    let restore = restore.map(|r| r.checkpoint);
    let shared = Arc::new(Checkpointing::new(tx, restore, last_id).continuing(chain_from));
    let store = match args.in_parts() {
        true => store.keeping_from(shared.completed_cell()),
        false => store,
    };
    Ok(Prepared {
        shared,
        acks,
        store,
        interval: checkpoint_args.interval,
        timeout: checkpoint_args.timeout,
        savepoint_dir: checkpoint_args.savepoint_dir.clone(),
        deltas: checkpoint_args.deltas,
        chain,
        in_parts: args.in_parts(),
        restore_span: tracing::Span::none(),
    })
}

/// Tells the user which checkpoint the run restores, how much state, and what became of the
/// sinks' files.
fn say_restoring(
    Restore {
        checkpoint, path, ..
    }: &Restore,
    (published, deleted): (usize, usize),
    (started, say): (Instant, Say),
) {
    let bytes: usize = checkpoint
        .operators
        .iter()
        .flat_map(|o| &o.instances)
        .flat_map(|instance| &instance.sections)
        .map(|s| s.bytes.len())
        .sum();
    let span = tracing::Span::current();
    span.record("checkpoint", checkpoint.id);
    span.record("state_bytes", bytes);
    say(&format!(
        "restoring checkpoint {} from {} ({} of state, read in {:.1} ms); sink files: {published} published, {deleted} discarded",
        checkpoint.id,
        path.display(),
        human_bytes(bytes as u64),
        started.elapsed().as_secs_f64() * 1e3,
    ));
}

/// Settles the file sinks of `plan` to checkpoint `completed` before the run starts (a
/// spread pipeline's part: its slots' files, see [`settle_parts`]). Returns (published,
/// deleted).
fn settle_sinks(plan: &Plan, args: &RunArgs, completed: u64) -> Result<(usize, usize), String> {
    match args.local_slots().filter(|_| args.in_parts()) {
        Some(slots) => restored_version(args)
            .and_then(|version| settle_parts(plan, (completed, version), args, slots)),
        None => wire_actors::recover_file_sinks(plan, completed).map_err(|e| e.to_string()),
    }
}

/// Publishes every part file the sinks of `slots` staged, once a spread pipeline that
/// checkpoints has ended on every node (`args` as the node ran its part). Returns
/// (published, deleted).
pub fn settle_spread_end(args: &RunArgs) -> Result<(usize, usize), String> {
    let mut plan = load(&args.pipeline)?;
    localize_sinks(&mut plan, args);
    // Its own subdirectory only: what its slots left in other nodes' was settled when they
    // restored.
    let version = args.placement.as_ref().map_or(0, |p| p.epoch);
    settle_parts(&plan, (u64::MAX, version), args, &[])
}

/// The version of the spread pipeline that took the checkpoint a run restores in parts (its
/// file sinks' staged parts carry it); 0 when it restores none (nothing is then published).
fn restored_version(args: &RunArgs) -> Result<u64, String> {
    match &args.restore_parts {
        Some((_, parts_at)) => crate::spread::parts_version(parts_at),
        None => Ok(0),
    }
}

/// Settles a spread pipeline's file sinks (whose paths in `plan` are this node's
/// subdirectory, `<path>/node-<id>`) to checkpoint `completed`: every part file in this
/// node's subdirectory, and those of `slots` in the subdirectories of nodes the pipeline no
/// longer runs on (a slot may have run there before; slot 0's node also takes the slots
/// beyond the pipeline's slot count, which ran when it had more). Parts staged for checkpoints up to
/// `completed` by `version` (the pipeline version that took it) get their final names;
/// later ones, and those another version staged (a node cut off from it that kept writing),
/// are deleted (their rows come again). Returns (published, deleted).
pub fn settle_parts(
    plan: &Plan,
    kept: (u64, u64),
    args: &RunArgs,
    slots: &[usize],
) -> Result<(usize, usize), String> {
    let own = args.sink_subdir.as_deref().unwrap_or_default();
    // Slot 0's node also settles the slots beyond the pipeline's slot count (it had more).
    let beyond = args
        .placement
        .as_ref()
        .filter(|_| slots.contains(&0))
        .map(|p| p.slots);
    let slots = (slots, beyond);
    wire_actors::recover_file_sink_slots(plan, kept, (own, &args.spread_subdirs), slots)
        .map_err(|e| e.to_string())
}

/// `checkpointing every 1s; `kill -USR1 4242` writes a savepoint to DIR`: printed once the
/// coordinator runs and SIGUSR1 is handled, so a script may signal from then on.
pub fn checkpointing_line(args: &CheckpointArgs) -> String {
    let every = humantime_ms(args.interval);
    match &args.savepoint_dir {
        Some(dir) => format!(
            "checkpointing every {every}; `kill -USR1 {}` writes a savepoint to {}",
            std::process::id(),
            dir.display()
        ),
        None => format!("checkpointing every {every}"),
    }
}

fn humantime_ms(interval: Duration) -> String {
    let ms = interval.as_millis();
    match ms {
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// `checkpoints: 12 completed, 0 aborted; last 13 (1.2 MiB); p50 4.1 ms, p99 9.0 ms`.
fn checkpoint_line(report: &CheckpointReport) -> String {
    let mut durations = report.durations_ms.clone();
    durations.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if durations.is_empty() {
            return 0.0;
        }
        let at = ((durations.len() as f64 - 1.0) * p).round() as usize;
        durations[at.min(durations.len() - 1)]
    };
    let mut line = format!(
        "  checkpoints: {} completed ({} incremental), {} aborted",
        report.completed, report.incremental, report.aborted
    );
    if let Some(last) = report.last_id {
        line.push_str(&format!(
            "; last {last} ({}); duration p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            human_bytes(report.last_bytes),
            pct(0.5),
            pct(0.99),
            durations.last().copied().unwrap_or(0.0)
        ));
    }
    if let Some(path) = &report.savepoint {
        line.push_str(&format!("\n  savepoint written to {}", path.display()));
    }
    if let Some(reason) = &report.first_abort {
        line.push_str(&format!("\n  first aborted checkpoint: {reason}"));
    }
    line
}

fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1 << 20) as f64 {
        format!("{:.1} MiB", b / (1 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::frontend::spec::{PipelineSpec, SourceKind};

    fn ingest_plan(listen: &str) -> Plan {
        let yaml = format!(
            "name: p\nsources:\n  rows: {{type: ingest, listen: '{listen}', schema: {{id: i64}}}}\nsinks:\n  out: {{type: blackhole, from: rows}}\n"
        );
        let spec = PipelineSpec::parse_stored("p.yaml", &yaml).expect("spec");
        Plan::from_spec(&spec).expect("plan")
    }

    fn listen(plan: &Plan) -> &str {
        match &plan.sources[0].kind {
            SourceKind::Ingest(spec) => &spec.listen,
            _ => unreachable!("an ingest source"),
        }
    }

    #[test]
    fn a_node_offsets_its_ingest_ports_but_not_port_0() {
        let mut plan = ingest_plan("0.0.0.0:9000");
        offset_ingest_ports(&mut plan, 2).expect("offset");
        assert_eq!(listen(&plan), "0.0.0.0:9002");
        let mut plan = ingest_plan("127.0.0.1:0");
        offset_ingest_ports(&mut plan, 2).expect("offset");
        assert_eq!(listen(&plan), "127.0.0.1:0");
        let mut plan = ingest_plan("127.0.0.1:65535");
        let err = offset_ingest_ports(&mut plan, 1).unwrap_err();
        assert!(err.contains("source `rows`"), "{err}");
        assert!(err.contains("ingest-port-offset 1 is above 65535"), "{err}");
    }
}
