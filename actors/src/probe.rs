//! Counters of a running pipeline, per node and core: bumped per batch by the data cores,
//! read at any time by the main thread for the progress line and the summary, and by a
//! `/metrics` scrape, which sums the cores. Each core writes only its own cache lines, with
//! relaxed stores and adds: counting costs a data core no lock and no shared line.

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

/// One node's counters on one core, alone on its two cache lines so cores never contend on
/// a line another core writes.
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
    /// Rows too late for every window (sent to the late output, if there is one); for a source
    /// or a sink, which have no windows, requests they retried.
    pub late: AtomicU64,
    /// Groups (keys × windows) held in state at the last update.
    pub groups: AtomicU64,
    /// The last watermark this instance sent downstream, in epoch milliseconds
    /// ([`NO_WATERMARK`] until the first); written once per watermark, read on a scrape.
    pub watermark_ms: AtomicI64,
    /// Batch bytes received (operators and sinks).
    pub bytes_in: AtomicU64,
    /// Batch bytes emitted.
    pub bytes_out: AtomicU64,
    /// Messages queued in the instance's mailbox when it last took one (a gauge).
    pub mailbox: AtomicU64,
    /// Bytes the instance's state holds, as its operator estimates them (a gauge).
    pub state_bytes: AtomicU64,
    /// Nanoseconds spent aligning checkpoint barriers: from the first sender's barrier to the
    /// last one's, summed over checkpoints.
    pub align_ns: AtomicU64,
    /// The last alignment's nanoseconds (a gauge).
    pub align_last_ns: AtomicU64,
    /// For a source: the newest and the oldest per-partition event time of the partitions
    /// it owns (their maxima so far), epoch ms ([`NO_WATERMARK`] until rows came); the scrape
    /// subtracts them over all cores to give the skew across partitions.
    pub partition_newest_ms: AtomicI64,
    /// See `partition_newest_ms`.
    pub partition_oldest_ms: AtomicI64,
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
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            mailbox: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            align_ns: AtomicU64::new(0),
            align_last_ns: AtomicU64::new(0),
            partition_newest_ms: AtomicI64::new(NO_WATERMARK),
            partition_oldest_ms: AtomicI64::new(NO_WATERMARK),
        }
    }
}

// Two cache lines per core's counters: a field more would share a line with the next core's.
const _: () = assert!(std::mem::size_of::<Counters>() == 128);

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

    /// Counts one batch of `rows` rows and `bytes` bytes in.
    pub fn batch_in(&self, rows: usize, bytes: usize) {
        Counters::add(&self.rows_in, rows as u64);
        Counters::add(&self.bytes_in, bytes as u64);
    }

    /// Counts one batch of `rows` rows and `bytes` bytes out.
    pub fn batch_out(&self, rows: usize, bytes: usize) {
        Counters::add(&self.rows_out, rows as u64);
        Counters::add(&self.bytes_out, bytes as u64);
    }

    /// Records a checkpoint alignment that took `took`, if one completed.
    pub fn aligned(&self, took: Option<std::time::Duration>) {
        let Some(took) = took else { return };
        let ns = took.as_nanos() as u64;
        Counters::add(&self.align_ns, ns);
        self.align_last_ns.store(ns, Ordering::Relaxed);
    }

    /// A source's per-partition event-time range (newest and oldest partition maximum).
    pub fn partition_times(&self, (newest, oldest): (i64, i64)) {
        self.partition_newest_ms.store(newest, Ordering::Relaxed);
        self.partition_oldest_ms.store(oldest, Ordering::Relaxed);
    }

    /// The range [`Counters::partition_times`] recorded, if rows came.
    pub fn partition_range(&self) -> Option<(i64, i64)> {
        let newest = self.partition_newest_ms.load(Ordering::Relaxed);
        let oldest = self.partition_oldest_ms.load(Ordering::Relaxed);
        (newest != NO_WATERMARK && oldest != NO_WATERMARK).then_some((newest, oldest))
    }
}

/// Upper bounds of the end-to-end latency buckets, milliseconds (`+Inf` follows).
pub const LATENCY_BUCKETS_MS: [u64; 14] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// A sink's end-to-end latency on one core: per batch written, wall-clock time minus the
/// batch's newest event time. Alone on its cache lines, written by its core only.
#[derive(Debug)]
#[repr(align(64))]
pub struct Latency {
    /// Batches per bucket of [`LATENCY_BUCKETS_MS`], then `+Inf`.
    pub buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of the observed latencies, milliseconds.
    pub sum_ms: AtomicU64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS_MS.len() + 1],
            sum_ms: AtomicU64::new(0),
        }
    }
}

impl Latency {
    /// Counts one batch whose newest row has event time `event_ms`, written at `now_ms`
    /// (a clock behind the event time counts as 0).
    pub fn observe(&self, event_ms: i64, now_ms: i64) {
        let ms = now_ms.saturating_sub(event_ms).max(0) as u64;
        let at = LATENCY_BUCKETS_MS.partition_point(|bound| *bound < ms);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Batches observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
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
    /// End-to-end latency per core (sinks only; empty for other nodes).
    pub latency: Vec<Latency>,
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
                    latency: match role {
                        Role::Sink => (0..cores).map(|_| Latency::default()).collect(),
                        _ => Vec::new(),
                    },
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
