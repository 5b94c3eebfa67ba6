//! `wire run PIPELINE.yaml`: load, check, run on the embedded single node (a core pool of its
//! own), print what the run tells and its summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire_actors::{CorePool, Notice, PoolOptions, RunProbe};
use wire_control::checkpoint::CoordinatorHandle;
use wire_control::job::{self, human_count, Job, Outcome, RunArgs};
use wire_control::metrics::top::{render_text, Top};
use wire_control::metrics::Metrics;

/// Prints a job's line to stderr.
fn say(line: &str) {
    eprintln!("{line}");
}

/// Runs `args` on a core pool of its own; `stop` ends the run gracefully when set (Ctrl-C);
/// the checkpoint coordinator runs on `runtime`; the pipeline's figures go to `metrics`.
pub fn run(
    args: &RunArgs,
    stop: Arc<AtomicBool>,
    runtime: &tokio::runtime::Handle,
    metrics: Option<&Metrics>,
    top: bool,
) -> Outcome {
    let launched = Instant::now();
    let plan = match job::load(&args.pipeline) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Invalid;
        }
    };
    // How the file wrote the number of cores, when the command line did not give it.
    let cores_written = match args.cores {
        Some(_) => None,
        None => plan.settings.cores_written.clone(),
    };
    let args = &args.with_settings(&plan.settings);
    if let Err(err) = args.check_checkpoint_flags() {
        eprintln!("error: {err}");
        return Outcome::Invalid;
    }
    let cores = match job::data_cores(
        args.cores,
        cores_written.as_deref(),
        args.pin,
        plan.settings.max_parallelism,
        &say,
    ) {
        Ok(cores) => cores,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Invalid;
        }
    };
    let pool = match CorePool::start(PoolOptions {
        cores,
        pin: args.pin,
        io_memory: wire_actors::io_memory_for(&plan),
    }) {
        Ok(pool) => pool,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Failed;
        }
    };
    let mut job = match Job::launch(args, plan, cores, &pool.handle(), runtime, &say) {
        Ok(job) => job,
        Err(refused) => {
            eprintln!("error: {}", refused.error);
            pool.shutdown();
            return refused.outcome;
        }
    };
    let registration = metrics.map(|m| m.register(job.deployment().name(), job.metric_sources()));
    if let Some(registration) = &registration {
        registration.running(true);
    }
    let mut screen = metrics.filter(|_| top).map(TopScreen::new);
    watch(args, &mut job, &stop, launched, screen.as_mut());
    if let Some(registration) = &registration {
        registration.running(false);
    }
    let ended = job.finish(&say);
    pool.shutdown();
    ended.outcome
}

/// Prints what the run tells until it ends: listening sources, checkpoint notices, the first
/// output after a restore, the progress line; takes a savepoint on SIGUSR1; stops the
/// pipeline (drain and flush) once `stop` is set.
fn watch(
    args: &RunArgs,
    job: &mut Job,
    stop: &AtomicBool,
    launched: Instant,
    mut top: Option<&mut TopScreen>,
) {
    // SIGUSR1 asks for a savepoint while the run goes on (`kill -USR1 <pid>`).
    let savepoint_signal = Arc::new(AtomicBool::new(false));
    if job.coordinator().is_some() {
        if let Err(err) =
            signal_hook::flag::register(signal_hook::consts::SIGUSR1, savepoint_signal.clone())
        {
            eprintln!("warning: cannot handle SIGUSR1 (savepoints on demand): {err}");
        }
    }
    if let Some(c) = &args.checkpoints {
        eprintln!("{}", job::checkpointing_line(c));
    }
    let restored = job.restored();
    let mut resumed_shown = restored.is_none();
    let progress = args.progress && std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut line_shown = false;
    while !job.deployment().is_finished() {
        if stop.load(Ordering::Relaxed) {
            job.stop();
        }
        for notice in job.deployment().notices().try_iter() {
            let Notice::Listening { source, addr } = notice;
            eprintln!("source `{source}` listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(if resumed_shown { 20 } else { 1 }));
        if let Some(coordinator) = job.coordinator() {
            coordinator_lines(args, coordinator, &savepoint_signal);
        }
        let probe = job.deployment().probe();
        if !resumed_shown && probe.first_output_ns.load(Ordering::Relaxed) > 0 {
            resumed_shown = true;
            if let Some(id) = restored {
                eprintln!(
                    "resumed from checkpoint {id}: first output {:.1} ms after start",
                    launched.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            if let Some(top) = top.as_deref_mut() {
                top.show();
            } else if progress {
                progress_line(probe);
                line_shown = true;
            }
        }
    }
    if line_shown {
        eprintln!();
    }
}

/// `wire run --top`: the top view of the run's registry on stderr, redrawn in place on a
/// terminal, one view after another otherwise.
struct TopScreen {
    metrics: Metrics,
    before: Top,
    terminal: bool,
}

impl TopScreen {
    fn new(metrics: &Metrics) -> TopScreen {
        TopScreen {
            metrics: metrics.clone(),
            before: metrics.top(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self) {
        let mut now = self.metrics.top();
        now.rates_since(&self.before);
        let text = render_text(&now);
        let mut err = std::io::stderr().lock();
        let _ = match self.terminal {
            true => write!(
                err,
                "\x1b[H\x1b[2Jwire run --top (Ctrl-C stops the run)\n\n{text}"
            ),
            false => writeln!(err, "{text}"),
        };
        self.before = now;
    }
}

/// Prints the coordinator's notices and asks it for a savepoint after a SIGUSR1.
fn coordinator_lines(args: &RunArgs, coordinator: &CoordinatorHandle, signal: &AtomicBool) {
    for line in coordinator.notices() {
        eprintln!("{line}");
    }
    if signal.swap(false, Ordering::Relaxed) {
        match &args.checkpoints {
            Some(c) if c.savepoint_dir.is_some() => coordinator.savepoint(),
            _ => eprintln!("SIGUSR1: no --savepoint-dir given, so no savepoint is taken"),
        }
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
