//! The end-of-run summary: rows in and out per node, throughput, wall time, memory.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use wire_actors::{Role, RunProbe, RunReport};

/// What `wire run` prints to stderr when a run ends.
pub struct Summary<'a> {
    name: &'a str,
    probe: &'a RunProbe,
    wall: Duration,
    cores: usize,
    peak_rss: Option<u64>,
}

impl<'a> Summary<'a> {
    /// The summary of `report` for pipeline `name`.
    pub fn new(name: &'a str, report: &'a RunReport) -> Summary<'a> {
        Summary {
            name,
            probe: &report.probe,
            wall: report.wall,
            cores: report.cores,
            peak_rss: peak_rss_bytes(),
        }
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let events = self.probe.source_events();
        writeln!(f, "pipeline `{}` on {} core(s)", self.name, self.cores)?;
        self.node_table(f, secs)?;
        let first_ns = self.probe.first_batch_ns.load(Ordering::Relaxed);
        // An ingest source waits for its producers: its rate counts from the first batch.
        let waits = self
            .probe
            .nodes
            .iter()
            .any(|n| n.role == Role::Source && n.kind == "ingest");
        let active_secs = match first_ns {
            0 => secs,
            _ if waits => (secs - first_ns as f64 / 1e9).max(1e-9),
            _ => secs,
        };
        writeln!(
            f,
            "  {} events in {:.3} s: {} events/s ({} per core)",
            events,
            active_secs,
            human_count(events as f64 / active_secs),
            human_count(events as f64 / active_secs / self.cores as f64),
        )?;
        if first_ns > 0 && waits {
            writeln!(
                f,
                "  first batch received {:.3} s after the start (waiting for producers); the rate counts from it",
                first_ns as f64 / 1e9
            )?;
        } else if first_ns > 0 {
            writeln!(f, "  first batch after {:.1} ms", first_ns as f64 / 1e6)?;
        }
        if let Some(rss) = self.peak_rss {
            writeln!(
                f,
                "  peak memory (RSS) {:.1} MiB",
                rss as f64 / (1 << 20) as f64
            )?;
        }
        Ok(())
    }
}

impl Summary<'_> {
    /// A row per node: rows in and out, and the share of the run its cores spent blocked
    /// (`secs` long), with the node's notes under it.
    fn node_table(&self, f: &mut fmt::Formatter<'_>, secs: f64) -> fmt::Result {
        writeln!(
            f,
            "  {:<20} {:<16} {:>14} {:>14} {:>9}",
            "node", "kind", "rows in", "rows out", "blocked"
        )?;
        for node in &self.probe.nodes {
            let rows_in = match node.role {
                Role::Source => node.total(|c| &c.events),
                _ => node.total(|c| &c.rows_in),
            };
            let blocked = node.total(|c| &c.blocked_ns) as f64 / 1e9;
            let share = blocked / (secs * self.cores as f64) * 100.0;
            writeln!(
                f,
                "  {:<20} {:<16} {:>14} {:>14} {:>8.1}%",
                node.name,
                node.kind,
                rows_in,
                node.total(|c| &c.rows_out),
                share,
            )?;
            node_notes(f, node)?;
        }
        Ok(())
    }
}

/// The lines under a node's row: rejected input, late rows and groups in state; for a source,
/// rejected input and retried requests; for a sink, refused rows and retried requests.
fn node_notes(f: &mut fmt::Formatter<'_>, node: &wire_actors::NodeProbe) -> fmt::Result {
    let rejected = node.total(|c| &c.rejected);
    if node.role == Role::Sink {
        return sink_errors(f, rejected, node.total(|c| &c.late));
    }
    if rejected > 0 {
        writeln!(f, "  {:<20} {rejected} input records rejected", "")?;
    }
    let late = node.total(|c| &c.late);
    if node.role == Role::Source {
        // A source has no windows: `late` counts its retried requests.
        if late > 0 {
            writeln!(f, "  {:<20} {late} requests retried", "")?;
        }
        return Ok(());
    }
    if late > 0 {
        writeln!(f, "  {:<20} {late} rows too late for every window", "")?;
    }
    let groups = node.total(|c| &c.groups);
    if groups > 0 {
        writeln!(f, "  {:<20} {groups} groups in state at the end", "")?;
    }
    Ok(())
}

/// A sink's refused rows (skipped or dead-lettered, per its `on_error`) and retried
/// requests, when there are any.
fn sink_errors(f: &mut fmt::Formatter<'_>, refused: u64, retries: u64) -> fmt::Result {
    if refused > 0 {
        writeln!(
            f,
            "  {:<20} {refused} rows refused by the server (skipped or dead-lettered)",
            ""
        )?;
    }
    if retries > 0 {
        writeln!(f, "  {:<20} {retries} requests retried", "")?;
    }
    Ok(())
}

/// `12.3M`, `4.5k`, `812`.
pub fn human_count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The process's peak resident set (VmHWM), if the kernel reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
