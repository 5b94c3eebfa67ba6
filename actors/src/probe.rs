//! Counters of a running pipeline, per node and core: bumped per batch by the data cores,
//! read at any time by the main thread for the progress line and the summary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What kind of plan node a probe belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A source.
    Source,
    /// An operator.
    Operator,
    /// A sink.
    Sink,
}

/// [`Counters::watermark_ms`] before the first watermark.
pub const NO_WATERMARK: i64 = i64::MIN;

/// One node's counters on one core, alone on its cache line so cores never contend on a
/// line another core writes.
#[derive(Debug)]
#[repr(align(64))]
pub struct Counters {
    /// Rows received.
    pub rows_in: AtomicU64,
    /// Rows emitted.
    pub rows_out: AtomicU64,
    /// Source events consumed (Nexmark counts events of all types, not only emitted rows).
    pub events: AtomicU64,
    /// Nanoseconds spent waiting for room in a downstream queue.
    pub blocked_ns: AtomicU64,
    /// Input lines or batches rejected (skipped or refused); for a sink, rows the external
    /// system refused (skipped or dead-lettered).
    pub rejected: AtomicU64,
    /// Rows too late for every window (sent to the late output, if there is one); for a sink,
    /// which has no windows, requests it retried.
    pub late: AtomicU64,
    /// Groups (keys × windows) held in state at the last update.
    pub groups: AtomicU64,
    /// The last watermark this instance sent downstream, in epoch milliseconds
    /// ([`NO_WATERMARK`] until the first); written once per watermark, read on a scrape.
    pub watermark_ms: AtomicI64,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            events: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            late: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            watermark_ms: AtomicI64::new(NO_WATERMARK),
        }
    }
}

// One cache line per core's counters: a field more would share a line with the next core's.
const _: () = assert!(std::mem::size_of::<Counters>() == 64);

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the watermark `ms` just sent downstream.
    pub fn watermark(&self, ms: i64) {
        self.watermark_ms.store(ms, Ordering::Relaxed);
    }

    /// The last watermark sent downstream, if any.
    pub fn last_watermark(&self) -> Option<i64> {
        Some(self.watermark_ms.load(Ordering::Relaxed)).filter(|ms| *ms != NO_WATERMARK)
    }
}

/// A plan node's counters on every core.
#[derive(Debug)]
pub struct NodeProbe {
    /// The node's name from the pipeline file.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// A short description, like `filter` or `nexmark`.
    pub kind: String,
    /// Counters per core.
    pub cores: Vec<Counters>,
}

impl NodeProbe {
    /// Sum of `field` over cores.
    pub fn total(&self, field: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.cores
            .iter()
            .map(|c| field(c).load(Ordering::Relaxed))
            .sum()
    }
}

/// All counters of one run. Lives on the main thread; data cores hold an `Arc`.
#[derive(Debug)]
pub struct RunProbe {
    /// Sources, then operators, then sinks, in plan order.
    pub nodes: Vec<NodeProbe>,
    /// When the run started.
    pub started: Instant,
    /// Nanoseconds from start to the first batch a source emitted (0 until then).
    pub first_batch_ns: AtomicU64,
    /// Nanoseconds from start to the first rows a sink received (0 until then): after a
    /// restore, the first new output.
    pub first_output_ns: AtomicU64,
}

impl RunProbe {
    /// A probe with `nodes` and `cores` counters each.
    pub fn new(nodes: Vec<(String, Role, String)>, cores: usize) -> Arc<RunProbe> {
        Arc::new(RunProbe {
            nodes: nodes
                .into_iter()
                .map(|(name, role, kind)| NodeProbe {
                    name,
                    role,
                    kind,
                    cores: (0..cores).map(|_| Counters::default()).collect(),
                })
                .collect(),
            started: Instant::now(),
            first_batch_ns: AtomicU64::new(0),
            first_output_ns: AtomicU64::new(0),
        })
    }

    /// Records the first emitted batch's time, once.
    pub fn first_batch(&self) {
        self.once(&self.first_batch_ns);
    }

    /// Records the time a sink first received rows, once.
    pub fn first_output(&self) {
        if self.first_output_ns.load(Ordering::Relaxed) == 0 {
            self.once(&self.first_output_ns);
        }
    }

    fn once(&self, at: &AtomicU64) {
        let now = self.started.elapsed().as_nanos().max(1) as u64;
        let _ = at.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Total events consumed by all sources.
    pub fn source_events(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Source)
            .map(|n| n.total(|c| &c.events))
            .sum()
    }

    /// Total rows received by all sinks.
    pub fn sink_rows(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Sink)
            .map(|n| n.total(|c| &c.rows_in))
            .sum()
    }
}
