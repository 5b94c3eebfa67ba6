//! `wire run PIPELINE.yaml`: load, check, run on the embedded single node, report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire_actors::{Notice, RunOptions, RunReport};
use wire_core::plan::Plan;
use wire_core::spec::PipelineSpec;

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
    let spec = PipelineSpec::from_file(path).map_err(|err| err.to_string())?;
    Plan::from_spec(&spec).map_err(|err| err.to_string())
}

/// Runs `args`; `stop` ends the run gracefully when set (Ctrl-C).
pub fn run(args: &RunArgs, stop: Arc<AtomicBool>) -> Outcome {
    let plan = match load(&args.pipeline) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Invalid;
        }
    };
    let cores = args
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let name = plan.name.clone();
    tracing::info!(pipeline = %name, cores, "starting");
    let options = RunOptions {
        cores,
        pin: args.pin,
        data_dir: args.data_dir.clone(),
        stop,
    };
    let running = match wire_actors::start(plan, options) {
        Ok(running) => running,
        Err(err) => {
            eprintln!("error: {err}");
            return Outcome::Failed;
        }
    };
    let progress = args.progress && std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut line_shown = false;
    while !running.is_finished() {
        for notice in running.notices().try_iter() {
            let Notice::Listening { source, addr } = notice;
            eprintln!("source `{source}` listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
        if progress && last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            let probe = running.probe();
            let secs = probe.started.elapsed().as_secs_f64();
            let events = probe.source_events();
            eprint!(
                "\r[{secs:6.1}s] {} events ({}/s), {} rows to sinks   ",
                human_count(events as f64),
                human_count(events as f64 / secs.max(1e-9)),
                human_count(probe.sink_rows() as f64),
            );
            let _ = std::io::stderr().flush();
            line_shown = true;
        }
    }
    if line_shown {
        eprintln!();
    }
    let report: RunReport = running.wait();
    let summary = Summary::new(&name, &report);
    eprint!("{summary}");
    match report.error {
        Some(err) => {
            eprintln!("error: {err}");
            Outcome::Failed
        }
        None => Outcome::Done,
    }
}
