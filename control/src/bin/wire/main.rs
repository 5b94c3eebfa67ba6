//! `wire`: the Wire node. `wire run PIPELINE.yaml` runs a pipeline on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
mod run;
mod summary;

use run::{run, Outcome, RunArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wire: a thread-per-core stream processor.
#[derive(Debug, Parser)]
#[command(name = "wire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline on this machine until its bounded sources are exhausted, or until Ctrl-C
    /// (which drains, flushes and exits 0). Prints a summary to stderr.
    Run {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
        /// Data cores (one pinned executor each); default: every CPU.
        #[arg(long)]
        cores: Option<usize>,
        /// Directory for WALs and other state.
        #[arg(long, default_value = "./wire-data")]
        data_dir: PathBuf,
        /// Do not print the live progress line.
        #[arg(long)]
        no_progress: bool,
        /// Do not pin executors to CPUs.
        #[arg(long)]
        no_pin: bool,
    },
    /// Check a pipeline file (syntax, names, types) without running it.
    Check {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WIRE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            pipeline,
            cores,
            data_dir,
            no_progress,
            no_pin,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let handler = ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    eprintln!("\nsecond interrupt: exiting without draining");
                    std::process::exit(130);
                }
                eprintln!("\ninterrupted: draining and flushing (Ctrl-C again to exit now)");
            });
            if let Err(err) = handler {
                eprintln!("warning: cannot handle Ctrl-C: {err}");
            }
            let args = RunArgs {
                pipeline,
                cores,
                data_dir,
                progress: !no_progress,
                pin: !no_pin,
            };
            exit_code(run(&args, stop))
        }
        Command::Check { pipeline } => match run::load(&pipeline) {
            Ok(plan) => {
                eprintln!(
                    "{}: ok ({} sources, {} operators, {} sinks)",
                    pipeline.display(),
                    plan.sources.len(),
                    plan.operators.len(),
                    plan.sinks.len()
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                exit_code(Outcome::Invalid)
            }
        },
    }
}

fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::from(1),
        Outcome::Invalid => ExitCode::from(2),
    }
}
