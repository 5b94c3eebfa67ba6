//! The metrics registry behind `--metrics-addr`: what `/metrics`, `/healthz` and `/readyz`
//! report ([`server`]).
//!
//! A running pipeline registers its [`RunProbe`] (per-core counters the data cores bump once
//! per batch, each core on its own cache line), its checkpoint coordinator's
//! [`CheckpointGauges`] and its [`Checkpointing`] (restore time). A scrape reads them then and
//! sums nothing under a lock the data cores take: counting costs the cores what it did before.
//! The registry lives on the control plane (the tokio runtime); data cores never see it.

mod dashboard;
mod encode;
mod process;
pub mod server;
pub mod top;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wire_actors::{Checkpointing, RunProbe};

use crate::checkpoint::CheckpointReport;
use crate::raft::MetaHandle;

/// What the checkpoint coordinator of one pipeline has done, as `/metrics` shows it: the
/// same figures as the run summary's checkpoint line, updated each time a checkpoint ends.
#[derive(Debug, Default)]
pub struct CheckpointGauges {
    /// Checkpoints completed.
    pub completed: AtomicU64,
    /// Checkpoints aborted.
    pub aborted: AtomicU64,
    /// Id of the newest completed checkpoint (0: none yet).
    pub last_id: AtomicU64,
    /// Microseconds from trigger to complete of the newest completed checkpoint.
    pub last_duration_us: AtomicU64,
    /// Bytes written by the newest completed checkpoint.
    pub last_bytes: AtomicU64,
    /// Wall-clock time the newest completed checkpoint completed, epoch milliseconds (0: none
    /// yet); `wirectl top` shows its age.
    pub last_completed_ms: AtomicU64,
    /// The newest completed checkpoints, oldest first (the dashboard's history); written by
    /// the coordinator when a checkpoint ends, never by a data core.
    history: Mutex<std::collections::VecDeque<CheckpointEntry>>,
}

/// How many completed checkpoints [`CheckpointGauges`] remembers.
const HISTORY: usize = 20;

/// One completed checkpoint in [`CheckpointGauges`]'s history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointEntry {
    /// Its id.
    pub id: u64,
    /// When it completed, epoch milliseconds.
    pub completed_ms: i64,
    /// Trigger to complete, milliseconds.
    pub duration_ms: f64,
    /// Bytes written.
    pub bytes: u64,
}

impl CheckpointGauges {
    /// Copies `report`'s figures.
    pub fn publish(&self, report: &CheckpointReport) {
        let ms = report.durations_ms.last().copied().unwrap_or(0.0);
        self.completed.store(report.completed, Ordering::Relaxed);
        self.aborted.store(report.aborted, Ordering::Relaxed);
        self.last_duration_us
            .store((ms * 1e3) as u64, Ordering::Relaxed);
        self.last_bytes.store(report.last_bytes, Ordering::Relaxed);
        let id = report.last_id.unwrap_or(0);
        if self.last_id.swap(id, Ordering::Relaxed) != id {
            let at = now_ms();
            self.last_completed_ms.store(at as u64, Ordering::Relaxed);
            if let Ok(mut history) = self.history.lock() {
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(CheckpointEntry {
                    id,
                    completed_ms: at,
                    duration_ms: ms,
                    bytes: report.last_bytes,
                });
            }
        }
    }

    /// The newest completed checkpoints, oldest first.
    pub fn history(&self) -> Vec<CheckpointEntry> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// One pipeline's sources of figures.
#[derive(Debug, Clone)]
pub struct PipelineSources {
    /// Its counters.
    pub probe: Arc<RunProbe>,
    /// Its coordinator's figures, when it takes checkpoints.
    pub checkpoints: Option<Arc<CheckpointGauges>>,
    /// Its checkpoint state shared with the cores (restore duration), when it takes
    /// checkpoints.
    pub checkpointing: Option<Arc<Checkpointing>>,
    /// Its plan's graph and pipeline file, for the dashboard.
    pub plan: Option<Arc<PlanShape>>,
}

/// What the dashboard draws of a pipeline: its plan's nodes with their inputs, and its file.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlanShape {
    /// Sources, operators and sinks in plan order.
    pub nodes: Vec<PlanNode>,
    /// The pipeline file (YAML) as it was run.
    pub yaml: String,
}

/// One node of a [`PlanShape`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanNode {
    /// Its name from the pipeline file.
    pub name: String,
    /// `source`, `operator` or `sink`.
    pub role: &'static str,
    /// The nodes it reads from.
    pub inputs: Vec<String>,
}

impl PlanShape {
    /// The shape of `plan`, run from `yaml`.
    pub fn of(plan: &wire_core::frontend::plan::Plan, yaml: String) -> PlanShape {
        use wire_core::frontend::plan::Input;
        let name = |input: &Input| match *input {
            Input::Source(i) => plan.sources.get(i).map(|s| s.name.clone()),
            Input::Operator(i) => plan.operators.get(i).map(|o| o.name.clone()),
        };
        let node = |name: &str, role, inputs: Vec<String>| PlanNode {
            name: name.to_string(),
            role,
            inputs,
        };
        let sources = plan.sources.iter().map(|s| node(&s.name, "source", vec![]));
        let operators = plan.operators.iter().map(|o| {
            node(
                &o.name,
                "operator",
                o.inputs.iter().filter_map(name).collect(),
            )
        });
        let sinks = plan
            .sinks
            .iter()
            .map(|s| node(&s.name, "sink", name(&s.input).into_iter().collect()));
        PlanShape {
            nodes: sources.chain(operators).chain(sinks).collect(),
            yaml,
        }
    }
}

#[derive(Debug)]
struct Registered {
    sources: PipelineSources,
    running: Arc<AtomicBool>,
}

/// The process's registry: cheap to clone, shared by the HTTP server and whoever runs
/// pipelines.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    pipelines: Mutex<BTreeMap<String, Registered>>,
    /// On a `wire start` node: its metadata group (raft figures, readiness).
    meta: Mutex<Option<(u64, MetaHandle)>>,
}

/// A pipeline's entry in the registry; [`Registration::running`] marks it running or not.
#[derive(Debug)]
pub struct Registration {
    metrics: Metrics,
    name: String,
    running: Arc<AtomicBool>,
}

impl Registration {
    /// Marks the pipeline running (its cores run it) or not (ended, still shown).
    pub fn running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// Takes the pipeline out of the registry.
    pub fn remove(self) {
        if let Ok(mut pipelines) = self.metrics.inner.pipelines.lock() {
            // A newer registration under the same name stays.
            if pipelines
                .get(&self.name)
                .is_some_and(|r| Arc::ptr_eq(&r.running, &self.running))
            {
                pipelines.remove(&self.name);
            }
        }
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Adds (or replaces) pipeline `name`, not running yet.
    pub fn register(&self, name: &str, sources: PipelineSources) -> Registration {
        let running = Arc::new(AtomicBool::new(false));
        if let Ok(mut pipelines) = self.inner.pipelines.lock() {
            let entry = Registered {
                sources,
                running: running.clone(),
            };
            pipelines.insert(name.to_string(), entry);
        }
        Registration {
            metrics: self.clone(),
            name: name.to_string(),
            running,
        }
    }

    /// On a node: the metadata group of node `id`, for the raft figures and `/readyz`.
    pub fn set_meta(&self, id: u64, meta: MetaHandle) {
        if let Ok(mut slot) = self.inner.meta.lock() {
            *slot = Some((id, meta));
        }
    }

    /// The registered pipelines: name, sources, running.
    fn pipelines(&self) -> Vec<(String, PipelineSources, bool)> {
        let Ok(pipelines) = self.inner.pipelines.lock() else {
            return Vec::new();
        };
        pipelines
            .iter()
            .map(|(name, r)| {
                let running = r.running.load(Ordering::Relaxed);
                (name.clone(), r.sources.clone(), running)
            })
            .collect()
    }

    /// The OpenMetrics text of the registered pipelines and this process, as `/metrics` shows
    /// them (without the raft figures, which need the metadata group).
    pub fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        encode::Snapshot {
            pipelines: self.pipelines(),
            raft: None,
            process: process::Usage::read(),
            now_ms: now_ms(),
        }
        .openmetrics()
    }

    /// The `top` view of this process's pipelines, read from [`Metrics::openmetrics`].
    pub fn top(&self) -> top::Top {
        let at_ms = now_ms();
        let text = self.openmetrics().unwrap_or_default();
        let samples = top::parse(&text).unwrap_or_default();
        top::Top::from_samples(&samples, at_ms)
    }

    fn meta(&self) -> Option<(u64, MetaHandle)> {
        self.inner.meta.lock().ok()?.clone()
    }
}

/// Wall-clock time now, epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
