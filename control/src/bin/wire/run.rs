//! `wire run PIPELINE.yaml`: load, check, run on the embedded single node, report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire_actors::{
    Checkpointing, CorePool, Deploy, Deployment, Notice, PoolOptions, RunProbe, RunReport,
};
use wire_control::checkpoint::{Chain, CheckpointReport, CoordinatorConfig, CoordinatorHandle};
use wire_core::plan::Plan;
use wire_storage::checkpoint::CheckpointStore;

use crate::resume::{self, Restore};

use crate::summary::{human_count, Summary};

/// What `wire run` was asked to do.
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
    /// Where checkpoints go; default `<data-dir>/<pipeline>/checkpoints`.
    pub checkpoint_dir: Option<PathBuf>,
    /// `--fresh`: delete the checkpoints and the file sinks' part files first.
    pub fresh: bool,
    /// `--append-output`: write into file sink directories that hold an earlier run's parts.
    pub append_output: bool,
    /// `--allow-empty-restore`: start from empty state though committed checkpoints exist.
    pub allow_empty_restore: bool,
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
    let checked = wire_control::check::check_file(path).map_err(|err| err.to_string())?;
    Ok(checked.plan)
}

/// Runs `args` on a core pool of its own; `stop` ends the run gracefully when set (Ctrl-C);
/// the checkpoint coordinator runs on `runtime`.
pub fn run(args: &RunArgs, stop: Arc<AtomicBool>, runtime: &tokio::runtime::Handle) -> Outcome {
    let launched = Instant::now();
    let plan = match load(&args.pipeline) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Invalid;
        }
    };
    let cores = match data_cores(args.cores, args.pin, plan.settings.max_parallelism) {
        Ok(cores) => cores,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Invalid;
        }
    };
    tracing::info!(pipeline = %plan.name, cores, "starting");
    // Before the locks create them: the sink directories this run makes, removed again when
    // the run fails and they stayed empty.
    let new_dirs = crate::files::NewDirs::of(&plan);
    // Held until the run's last files are published: no other process may write (or, when
    // it restores, settle) these directories meanwhile.
    let sink_locks = match wire_actors::lock_file_sinks(&plan) {
        Ok(locks) => locks,
        Err(err) => {
            new_dirs.remove_empty();
            eprintln!("error: {err}");
            return Outcome::Failed;
        }
    };
    let outcome = match prepare(args, &plan, cores) {
        Ok(prepared) => execute(args, plan, cores, prepared, (stop, runtime), launched),
        Err(err) => {
            eprintln!("error: {err}");
            Outcome::Failed
        }
    };
    drop(sink_locks);
    if outcome != Outcome::Done {
        new_dirs.remove_empty();
    }
    outcome
}

/// Runs the prepared pipeline to its end and reports.
fn execute(
    args: &RunArgs,
    plan: Plan,
    cores: usize,
    prepared: Option<Prepared>,
    (stop, runtime): (Arc<AtomicBool>, &tokio::runtime::Handle),
    launched: Instant,
) -> Outcome {
    let restored = prepared
        .as_ref()
        .and_then(|p| p.shared.restore().map(|c| (c.id, c.last)));
    // The data plane takes the plan; settling sinks after the run needs its own copy.
    let sinks_plan = match load(&args.pipeline) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Invalid;
        }
    };
    let deploy = Deploy {
        cores,
        data_dir: args.data_dir.clone(),
        checkpoints: prepared.as_ref().map(|p| p.shared.clone()),
    };
    let (pool, running) = match start(plan, args.pin, deploy) {
        Ok(started) => started,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Failed;
        }
    };
    let coordinator = match prepared {
        Some(prepared) => match start_coordinator(prepared, &sinks_plan, &running, runtime) {
            Ok(handle) => Some(handle),
            Err(err) => {
                eprintln!("error: cannot start the checkpoint coordinator: {err}");
                return Outcome::Failed;
            }
        },
        None => None,
    };
    watch(
        args,
        (&running, &stop),
        coordinator.as_ref(),
        restored.map(|(id, _)| id),
        launched,
    );
    let report: RunReport = running.wait();
    let checkpoints = coordinator.map(|c| c.finish());
    pool.shutdown();
    let already_done = restored
        .filter(|(_, last)| *last && !stop.load(Ordering::Relaxed))
        .filter(|_| report.error.is_none() && report.probe.source_events() == 0)
        .map(|(id, _)| id);
    finish(&sinks_plan, report, checkpoints, already_done)
}

/// Starts a core pool of `deploy.cores` cores (registered IO memory sized for `plan`) and
/// deploys `plan` on it.
fn start(
    plan: Plan,
    pin: bool,
    deploy: Deploy,
) -> Result<(CorePool, Deployment), wire_actors::Error> {
    let pool = CorePool::start(PoolOptions {
        cores: deploy.cores,
        pin,
        io_memory: wire_actors::io_memory_for(&plan),
    })?;
    let running = pool.handle().deploy(plan, deploy)?;
    Ok((pool, running))
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
    };
    CoordinatorHandle::start(config, prepared.shared, prepared.acks, runtime)
        .map_err(|e| e.to_string())
}

/// Prints what the run tells until it ends: listening sources, checkpoint notices, the first
/// output after a restore, the progress line; takes a savepoint on SIGUSR1; cancels the
/// pipeline (drain and flush) once `stop` is set.
fn watch(
    args: &RunArgs,
    (running, stop): (&Deployment, &AtomicBool),
    coordinator: Option<&CoordinatorHandle>,
    restored: Option<u64>,
    launched: Instant,
) {
    // SIGUSR1 asks for a savepoint while the run goes on (`kill -USR1 <pid>`).
    let savepoint_signal = Arc::new(AtomicBool::new(false));
    if coordinator.is_some() {
        if let Err(err) =
            signal_hook::flag::register(signal_hook::consts::SIGUSR1, savepoint_signal.clone())
        {
            eprintln!("warning: cannot handle SIGUSR1 (savepoints on demand): {err}");
        }
    }
    if let Some(c) = &args.checkpoints {
        eprintln!("{}", checkpointing_line(c));
    }
    let mut resumed_shown = restored.is_none();
    let progress = args.progress && std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut line_shown = false;
    let mut cancelled = false;
    while !running.is_finished() {
        if !cancelled && stop.load(Ordering::Relaxed) {
            cancelled = true;
            running.cancel();
        }
        for notice in running.notices().try_iter() {
            let Notice::Listening { source, addr } = notice;
            eprintln!("source `{source}` listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(if resumed_shown { 20 } else { 1 }));
        if let Some(coordinator) = coordinator {
            for line in coordinator.notices() {
                eprintln!("{line}");
            }
        }
        if savepoint_signal.swap(false, Ordering::Relaxed) {
            match (coordinator, &args.checkpoints) {
                (Some(coordinator), Some(c)) if c.savepoint_dir.is_some() => {
                    coordinator.savepoint()
                }
                _ => eprintln!("SIGUSR1: no --savepoint-dir given, so no savepoint is taken"),
            }
        }
        if !resumed_shown && running.probe().first_output_ns.load(Ordering::Relaxed) > 0 {
            resumed_shown = true;
            if let Some(id) = restored {
                eprintln!(
                    "resumed from checkpoint {id}: first output {:.1} ms after start",
                    launched.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        if progress && last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            progress_line(running.probe());
            line_shown = true;
        }
    }
    if line_shown {
        eprintln!();
    }
}

/// Redraws the progress line.
fn progress_line(probe: &RunProbe) {
    let secs = probe.started.elapsed().as_secs_f64();
    let events = probe.source_events();
    eprint!(
        "\r[{secs:6.1}s] {} events ({}/s), {} rows to sinks   ",
        human_count(events as f64),
        human_count(events as f64 / secs.max(1e-9)),
        human_count(probe.sink_rows() as f64),
    );
    let _ = std::io::stderr().flush();
}

/// Publishes the sinks' last files, prints the summary, and says when a restored run found
/// nothing left to do (`already_done`: the checkpoint it restored).
fn finish(
    plan: &Plan,
    report: RunReport,
    checkpoints: Option<CheckpointReport>,
    already_done: Option<u64>,
) -> Outcome {
    if let (Some(done), None) = (&checkpoints, &report.error) {
        // The run's last checkpoint is written: publish what the sinks staged for it.
        if let Some(last) = done.last_id {
            if let Err(err) = wire_actors::recover_file_sinks(plan, last) {
                eprintln!("error: publishing the sinks' last files: {err}");
                return Outcome::Failed;
            }
        }
    }
    report_end(&plan.name, &report, checkpoints.as_ref(), already_done)
}

/// Prints the summary (for a failed run, only when a source emitted something: a summary of
/// zeros says nothing), says when a restored run found nothing left to do (`already_done`:
/// the checkpoint it restored), and prints the run's error once.
fn report_end(
    name: &str,
    report: &RunReport,
    checkpoints: Option<&CheckpointReport>,
    already_done: Option<u64>,
) -> Outcome {
    let emitted = report.probe.first_batch_ns.load(Ordering::Relaxed) > 0;
    if report.error.is_none() || emitted {
        eprint!("{}", Summary::new(name, report));
        if let Some(done) = checkpoints {
            eprintln!("{}", checkpoint_line(done));
        }
    }
    if let Some(id) = already_done {
        eprintln!(
            "note: the pipeline already finished at checkpoint {id}: its sources were exhausted, so there was nothing to do; pass --fresh to start over (it deletes the checkpoints and the file sinks' output)"
        );
    }
    let Some(err) = &report.error else {
        return Outcome::Done;
    };
    eprintln!("error: {err}");
    if report.further_errors > 0 {
        eprintln!(
            "  ({} more task(s) failed after this error; RUST_LOG=info logs each)",
            report.further_errors
        );
    }
    Outcome::Failed
}

/// The number of data cores: `--cores`, or every CPU the process may use. Pinned executors
/// take one CPU each, so asking for more than there are is refused; unpinned ones (`--no-pin`)
/// may outnumber the CPUs (tests do), with a warning. A core without a key group would idle.
fn data_cores(requested: Option<usize>, pin: bool, key_groups: u32) -> Result<usize, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(cores) = requested else {
        return Ok(cpus.min(key_groups as usize).max(1));
    };
    if cores == 0 {
        return Err("--cores 0: a pipeline needs at least one data core".into());
    }
    if cores > key_groups as usize {
        return Err(format!(
            "--cores {cores}: the pipeline has {key_groups} key groups (max_parallelism), so at most {key_groups} cores can own state"
        ));
    }
    if cores > cpus {
        if pin {
            return Err(format!(
                "--cores {cores}: this process may use {cpus} CPUs and each data core is pinned to its own; use --cores {cpus} or fewer, or add --no-pin to run {cores} executors that share the CPUs (slower; meant for tests)"
            ));
        }
        eprintln!("warning: {cores} data cores share {cpus} CPUs (--no-pin): expect lower throughput than with --cores {cpus}");
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
}

/// Settles what earlier runs left before the cores start: `--fresh`, the checkpoint to
/// restore (or the refusal to start without one), the output already published.
fn prepare(args: &RunArgs, plan: &Plan, cores: usize) -> Result<Option<Prepared>, String> {
    if args.fresh {
        resume::start_fresh(args, plan)?;
    }
    let Some(checkpoint_args) = &args.checkpoints else {
        resume::refuse_earlier_output(args, plan)?;
        return Ok(None);
    };
    let dir = resume::checkpoint_dir(args, plan);
    let store = CheckpointStore::open(&dir, checkpoint_args.retained).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let restore = resume::choose_restore(args, checkpoint_args, &store, plan)?;
    if restore.is_none() {
        resume::refuse_earlier_output(args, plan)?;
    }
    prepare_checkpoints(checkpoint_args, plan, cores, store, restore, started).map(Some)
}

/// Settles the file sinks to the checkpoint restored (if any), tells the user, and sets up
/// the run's checkpointing.
fn prepare_checkpoints(
    checkpoint_args: &CheckpointArgs,
    plan: &Plan,
    cores: usize,
    store: CheckpointStore,
    restore: Option<Restore>,
    started: Instant,
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
    let (published, deleted) =
        wire_actors::recover_file_sinks(plan, completed).map_err(|e| e.to_string())?;
    if let Some(Restore {
        checkpoint, path, ..
    }) = &restore
    {
        let bytes: usize = checkpoint
            .operators
            .iter()
            .flat_map(|o| &o.instances)
            .flat_map(|instance| &instance.sections)
            .map(|s| s.bytes.len())
            .sum();
        eprintln!(
            "restoring checkpoint {} from {} ({} of state, read in {:.1} ms); sink files: {published} published, {deleted} discarded",
            checkpoint.id,
            path.display(),
            human_bytes(bytes as u64),
            started.elapsed().as_secs_f64() * 1e3,
        );
    }
    let last_id = store
        .ids()
        .map_err(|e| e.to_string())?
        .last()
        .copied()
        .unwrap_or(0)
        .max(completed);
    let (tx, acks) = crossbeam_channel::unbounded();
    let chain_from = chain.as_ref().map(|c| c.last);
    let restore = restore.map(|r| r.checkpoint);
    let shared = Arc::new(Checkpointing::new(tx, restore, last_id).continuing(chain_from));
    Ok(Prepared {
        shared,
        acks,
        store,
        interval: checkpoint_args.interval,
        timeout: checkpoint_args.timeout,
        savepoint_dir: checkpoint_args.savepoint_dir.clone(),
        deltas: checkpoint_args.deltas,
        chain,
    })
}

/// `checkpointing every 1s; `kill -USR1 4242` writes a savepoint to DIR`: printed once the
/// coordinator runs and SIGUSR1 is handled, so a script may signal from then on.
fn checkpointing_line(args: &CheckpointArgs) -> String {
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
