//! One scrape: the registry's figures read into a [`Snapshot`] and encoded by
//! prometheus-client (OpenMetrics text), or that text in the classic Prometheus format for
//! clients that do not ask for OpenMetrics.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use wire_actors::ingest_stats::IngestStats;
use wire_actors::probe::{Latency, LATENCY_BUCKETS_MS};
use wire_actors::{Counters, NodeProbe, Role};
use wire_storage::wal::stats::{Histogram, WalStats, BUCKETS_US};

use super::process::Usage;
use super::PipelineSources;
use crate::raft::{MetaStatus, Role as RaftRole};

/// Labels of one sample.
type Labels = Vec<(&'static str, String)>;

/// Everything one scrape shows, read when the scrape arrives.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// Registered pipelines: name, sources, running.
    pub pipelines: Vec<(String, PipelineSources, bool)>,
    /// On a node: its view of the metadata group.
    pub raft: Option<MetaStatus>,
    /// This process's memory and CPU.
    pub process: Usage,
    /// Wall-clock time of the scrape, epoch milliseconds (for watermark lag).
    pub now_ms: i64,
}

impl Snapshot {
    /// The OpenMetrics text (ends with `# EOF`).
    pub fn openmetrics(self) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// The classic Prometheus text format (0.0.4) of OpenMetrics `text`: a counter family is named
/// with its `_total` suffix, and the `# UNIT` and `# EOF` lines go.
pub(super) fn classic(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + counters.len() * 12);
    for line in text.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.encode_pipelines(&mut encoder)?;
        self.encode_nodes(&mut encoder)?;
        self.encode_flow(&mut encoder)?;
        self.encode_watermarks(&mut encoder)?;
        self.encode_checkpoints(&mut encoder)?;
        self.encode_process(&mut encoder)?;
        encode_wal(&wire_storage::wal::stats::snapshot(), &mut encoder)?;
        encode_ingest(&wire_actors::ingest_stats::snapshot(), &mut encoder)?;
        if let Some(raft) = &self.raft {
            encode_raft(raft, &mut encoder)?;
        }
        Ok(())
    }
}

/// One plan node on one core of one pipeline.
struct Instance<'a> {
    pipeline: &'a str,
    node: &'a NodeProbe,
    core: usize,
    counters: &'a Counters,
}

impl Instance<'_> {
    fn labels(&self) -> Labels {
        vec![
            ("pipeline", self.pipeline.to_string()),
            ("operator", self.node.name.clone()),
            ("kind", self.node.kind.clone()),
            ("role", role_name(self.node.role).to_string()),
            ("core", self.core.to_string()),
        ]
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Operator => "operator",
        Role::Sink => "sink",
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Snapshot {
    fn instances(&self) -> Vec<Instance<'_>> {
        let mut all = Vec::new();
        for (pipeline, sources, _) in &self.pipelines {
            for node in &sources.probe.nodes {
                for (core, counters) in node.cores.iter().enumerate() {
                    all.push(Instance {
                        pipeline,
                        node,
                        core,
                        counters,
                    });
                }
            }
        }
        all
    }

    fn encode_pipelines(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let running = self
            .pipelines
            .iter()
            .map(|(name, _, running)| (vec![("pipeline", name.clone())], i64::from(*running)));
        gauges(
            encoder,
            "wire_pipeline_running",
            "1 while the pipeline's cores run it, 0 once it ended",
            running,
        )
    }

    fn encode_nodes(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let all = self.instances();
        let per = |field: fn(&Counters) -> &AtomicU64, only: Option<Role>| {
            all.iter()
                .filter(move |i| only.is_none_or(|role| i.node.role == role))
                .map(move |i| (i.labels(), load(field(i.counters))))
        };
        let source = Some(Role::Source);
        counters(
            encoder,
            "wire_source_events",
            "Events a source consumed (Nexmark counts events of every type)",
            per(|c| &c.events, source),
        )?;
        counters(
            encoder,
            "wire_rows_in",
            "Rows an operator or sink received",
            all.iter()
                .filter(|i| i.node.role != Role::Source)
                .map(|i| (i.labels(), load(&i.counters.rows_in))),
        )?;
        counters(
            encoder,
            "wire_rows_out",
            "Rows a source, operator or sink emitted",
            per(|c| &c.rows_out, None),
        )?;
        let blocked = all.iter().map(|i| {
            let ns = load(&i.counters.blocked_ns);
            (i.labels(), ns as f64 / 1e9)
        });
        float_counters(
            encoder,
            "wire_blocked_seconds",
            "Time spent waiting for room in a downstream queue (backpressure)",
            blocked,
        )?;
        self.encode_rejects(encoder, &all)
    }

    fn encode_rejects(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        all: &[Instance<'_>],
    ) -> fmt::Result {
        counters(
            encoder,
            "wire_rejected_records",
            "Input lines or batches rejected (skipped or refused)",
            all.iter()
                .filter(|i| i.node.role == Role::Source)
                .map(|i| (i.labels(), load(&i.counters.rejected))),
        )?;
        counters(
            encoder,
            "wire_refused_rows",
            "Rows a sink's external system refused (skipped or dead-lettered, per on_error)",
            all.iter()
                .filter(|i| i.node.role == Role::Sink)
                .map(|i| (i.labels(), load(&i.counters.rejected))),
        )?;
        counters(
            encoder,
            "wire_retried_requests",
            "Requests a source or sink retried after a transient error (backoff with jitter)",
            all.iter()
                .filter(|i| i.node.role != Role::Operator)
                .map(|i| (i.labels(), load(&i.counters.late))),
        )?;
        counters(
            encoder,
            "wire_late_rows",
            "Rows too late for every window",
            all.iter()
                .filter(|i| i.node.role == Role::Operator)
                .map(|i| (i.labels(), load(&i.counters.late))),
        )?;
        gauges(
            encoder,
            "wire_state_groups",
            "Groups (keys x windows) an operator holds in state",
            all.iter()
                .filter(|i| i.node.role == Role::Operator)
                .map(|i| (i.labels(), load(&i.counters.groups) as i64)),
        )
    }

    /// Bytes, mailboxes, state size, alignment and end-to-end latency per instance.
    fn encode_flow(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let all = self.instances();
        let not_sources = || all.iter().filter(|i| i.node.role != Role::Source);
        counters(
            encoder,
            "wire_bytes_in",
            "Batch bytes an operator or sink received",
            not_sources().map(|i| (i.labels(), load(&i.counters.bytes_in))),
        )?;
        counters(
            encoder,
            "wire_bytes_out",
            "Batch bytes a source, operator or sink emitted",
            all.iter()
                .map(|i| (i.labels(), load(&i.counters.bytes_out))),
        )?;
        gauges(
            encoder,
            "wire_mailbox_messages",
            "Messages (batches, watermarks, barriers) queued in the instance's mailbox when it last took a batch",
            not_sources().map(|i| (i.labels(), load(&i.counters.mailbox) as i64)),
        )?;
        gauges(
            encoder,
            "wire_state_bytes",
            "Memory an operator's state tables take (estimate: tables at capacity, not the heap keys and values own)",
            all.iter()
                .filter(|i| i.node.role == Role::Operator)
                .map(|i| (i.labels(), load(&i.counters.state_bytes) as i64)),
        )?;
        float_counters(
            encoder,
            "wire_checkpoint_alignment_seconds",
            "Time spent aligning checkpoint barriers (first sender's barrier to the last's)",
            not_sources().map(|i| (i.labels(), load(&i.counters.align_ns) as f64 / 1e9)),
        )?;
        float_gauges(
            encoder,
            "wire_checkpoint_alignment_last_seconds",
            "How long the instance's last checkpoint alignment took",
            not_sources().map(|i| (i.labels(), load(&i.counters.align_last_ns) as f64 / 1e9)),
        )?;
        self.encode_skew(encoder)?;
        let sinks = all.iter().filter_map(|i| {
            let latency = i.node.latency.get(i.core)?;
            (latency.count() > 0).then(|| (i.labels(), LatencyHistogram(latency)))
        });
        family(
            encoder,
            "wire_sink_latency_seconds",
            "End-to-end latency: per batch a sink received, wall-clock time minus the batch's newest event time",
            MetricType::Histogram,
            sinks,
        )
    }

    /// Per source: the newest minus the oldest partition event time over all its cores.
    fn encode_skew(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut skews = Vec::new();
        for (pipeline, sources, _) in &self.pipelines {
            for node in sources
                .probe
                .nodes
                .iter()
                .filter(|n| n.role == Role::Source)
            {
                let ranges = node.cores.iter().filter_map(Counters::partition_range);
                let range = ranges.reduce(|(n1, o1), (n2, o2)| (n1.max(n2), o1.min(o2)));
                if let Some((newest, oldest)) = range {
                    let labels = vec![
                        ("pipeline", pipeline.clone()),
                        ("operator", node.name.clone()),
                        ("kind", node.kind.clone()),
                    ];
                    skews.push((labels, newest.saturating_sub(oldest) as f64 / 1e3));
                }
            }
        }
        float_gauges(
            encoder,
            "wire_source_event_time_skew_seconds",
            "Newest minus oldest event time over a source's partitions (each partition's newest row)",
            skews,
        )
    }

    fn encode_watermarks(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let all = self.instances();
        let marked: Vec<(Labels, i64)> = all
            .iter()
            .filter_map(|i| Some((i.labels(), i.counters.last_watermark()?)))
            .collect();
        float_gauges(
            encoder,
            "wire_watermark_seconds",
            "The last watermark an instance sent downstream (event time, epoch seconds)",
            marked.iter().map(|(l, ms)| (l.clone(), *ms as f64 / 1e3)),
        )?;
        let now = self.now_ms;
        float_gauges(
            encoder,
            "wire_watermark_lag_seconds",
            "Wall-clock time now minus the instance's watermark",
            marked
                .into_iter()
                .map(|(l, ms)| (l, now.saturating_sub(ms) as f64 / 1e3)),
        )
    }

    fn encode_checkpoints(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let with: Vec<(Labels, &super::CheckpointGauges)> = self
            .pipelines
            .iter()
            .filter_map(|(name, s, _)| {
                Some((vec![("pipeline", name.clone())], s.checkpoints.as_deref()?))
            })
            .collect();
        let each = |f: fn(&super::CheckpointGauges) -> u64| {
            with.iter().map(move |(l, g)| (l.clone(), f(g)))
        };
        counters(
            encoder,
            "wire_checkpoints_completed",
            "Checkpoints completed (the run's last one included)",
            each(|g| load(&g.completed)),
        )?;
        counters(
            encoder,
            "wire_checkpoints_aborted",
            "Checkpoints aborted (failed, timed out or not writable)",
            each(|g| load(&g.aborted)),
        )?;
        gauges(
            encoder,
            "wire_checkpoint_last_id",
            "Id of the newest completed checkpoint (0: none yet)",
            each(|g| load(&g.last_id)).map(|(l, v)| (l, v as i64)),
        )?;
        float_gauges(
            encoder,
            "wire_checkpoint_last_duration_seconds",
            "Time from trigger to complete of the newest completed checkpoint",
            each(|g| load(&g.last_duration_us)).map(|(l, us)| (l, us as f64 / 1e6)),
        )?;
        gauges(
            encoder,
            "wire_checkpoint_last_size_bytes",
            "Bytes written by the newest completed checkpoint",
            each(|g| load(&g.last_bytes)).map(|(l, v)| (l, v as i64)),
        )?;
        self.encode_restores(encoder)
    }

    fn encode_restores(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let completed_at = self.pipelines.iter().filter_map(|(name, s, _)| {
            let ms = load(&s.checkpoints.as_ref()?.last_completed_ms);
            (ms > 0).then(|| (vec![("pipeline", name.clone())], ms as f64 / 1e3))
        });
        float_gauges(
            encoder,
            "wire_checkpoint_last_completed_timestamp_seconds",
            "When the newest completed checkpoint completed (epoch seconds)",
            completed_at,
        )?;
        let restores = self.pipelines.iter().filter_map(|(name, s, _)| {
            let took = s.checkpointing.as_ref()?.restore_duration()?;
            Some((vec![("pipeline", name.clone())], took.as_secs_f64()))
        });
        float_gauges(
            encoder,
            "wire_restore_duration_seconds",
            "Time the cores took to restore the checkpoint the run started from",
            restores,
        )
    }

    fn encode_process(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let none = || Vec::<(&'static str, String)>::new();
        if let Some(rss) = self.process.rss_bytes {
            gauges(
                encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                [(none(), rss as i64)],
            )?;
        }
        if let Some(cpu) = self.process.cpu_seconds {
            float_counters(
                encoder,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                [(none(), cpu)],
            )?;
        }
        if let Some(fds) = self.process.open_fds {
            gauges(
                encoder,
                "process_open_fds",
                "Number of open file descriptors",
                [(none(), fds as i64)],
            )?;
        }
        Ok(())
    }
}

/// A histogram read from the WAL's counters.
struct WalHistogram<'a>(&'a Histogram);

impl EncodeMetric for WalHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let bounds = BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .chain(std::iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.buckets.iter().copied()).collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_seconds, self.0.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A sink's end-to-end latency histogram on one core.
struct LatencyHistogram<'a>(&'a Latency);

impl EncodeMetric for LatencyHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let bounds = LATENCY_BUCKETS_MS
            .iter()
            .map(|ms| *ms as f64 / 1e3)
            .chain(std::iter::once(f64::MAX));
        // Counts per bucket; the encoder makes them cumulative.
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.buckets.iter().map(load)).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = load(&self.0.sum_ms) as f64 / 1e3;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn encode_wal(wal: &WalStats, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let none = Labels::new;
    family(
        encoder,
        "wire_wal_append_seconds",
        "Time from a WAL append to its durability policy met (written, or synced)",
        MetricType::Histogram,
        [(none(), WalHistogram(&wal.append))],
    )?;
    family(
        encoder,
        "wire_wal_sync_seconds",
        "Time one WAL fdatasync took",
        MetricType::Histogram,
        [(none(), WalHistogram(&wal.sync))],
    )?;
    counters(
        encoder,
        "wire_wal_bytes",
        "Batch bytes appended to the process's WALs",
        [(none(), wal.bytes)],
    )
}

fn encode_ingest(ingest: &IngestStats, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let one = |v: u64| [(Labels::new(), v)];
    let all: [(&str, &str, u64); 5] = [
        (
            "wire_ingest_connections_accepted",
            "Producer connections the ingest sources admitted",
            ingest.accepted,
        ),
        (
            "wire_ingest_connections_refused",
            "Producer connections refused (max_connections reached)",
            ingest.refused,
        ),
        (
            "wire_ingest_acks",
            "Batches appended to a WAL and acknowledged",
            ingest.acks,
        ),
        (
            "wire_ingest_credits_granted",
            "Credits granted to producers (a producer sends one batch per credit)",
            ingest.credits,
        ),
        (
            "wire_ingest_bytes",
            "Batch bytes the ingest sources accepted",
            ingest.bytes,
        ),
    ];
    for (name, help, value) in all {
        counters(encoder, name, help, one(value))?;
    }
    gauges(
        encoder,
        "wire_ingest_connections_open",
        "Producer connections open now",
        [(Labels::new(), ingest.open as i64)],
    )
}

fn encode_raft(raft: &MetaStatus, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let node = || vec![("node", raft.id.to_string())];
    let voters = raft.members.iter().filter(|m| m.voter).count();
    let figures: [(&str, &str, u64); 6] = [
        ("wire_raft_term", "The node's raft term", raft.term),
        (
            "wire_raft_commit_index",
            "The node's raft commit index",
            raft.commit,
        ),
        (
            "wire_raft_applied_index",
            "The metadata log index the node applied",
            raft.applied,
        ),
        (
            "wire_raft_leader_id",
            "The leader the node knows of (0: none)",
            raft.leader.unwrap_or(0),
        ),
        (
            "wire_raft_is_leader",
            "1 on the leader",
            u64::from(raft.role == RaftRole::Leader),
        ),
        (
            "wire_raft_members",
            "Voting members of the metadata group",
            voters as u64,
        ),
    ];
    for (name, help, value) in figures {
        gauges(encoder, name, help, [(node(), value as i64)])?;
    }
    Ok(())
}

/// One family of samples of `metric_type`; nothing when there are none.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    if let Some((labels, _)) = samples.peek().filter(|(labels, _)| labels.is_empty()) {
        // One process-wide sample: no `{}` after its name.
        debug_assert!(labels.is_empty());
        if let Some((_, value)) = samples.next() {
            return value.encode(metric);
        }
    }
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(encoder, name, help, MetricType::Counter, samples)
}

fn float_counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(encoder, name, help, MetricType::Counter, samples)
}

fn gauges(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, i64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(encoder, name, help, MetricType::Gauge, samples)
}

fn float_gauges(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(encoder, name, help, MetricType::Gauge, samples)
}

#[cfg(test)]
mod tests {
    use super::classic;

    #[test]
    fn classic_names_counters_with_total_and_drops_openmetrics_lines() {
        let open = "# HELP a Rows.\n# TYPE a counter\na_total{x=\"1\"} 5\n\
                    # HELP b Size.\n# TYPE b gauge\n# UNIT b bytes\nb 1\n# EOF\n";
        let want = "# HELP a_total Rows.\n# TYPE a_total counter\na_total{x=\"1\"} 5\n\
                    # HELP b Size.\n# TYPE b gauge\nb 1\n";
        assert_eq!(classic(open), want);
    }
}
