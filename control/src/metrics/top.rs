//! The `top` view (`wirectl top`, `wire run --top`, the dashboard): pipelines and their
//! operators with rows, rates, backpressure, watermark lag and checkpoint age.
//!
//! The view is computed from `/metrics` text only ([`parse`] then [`Top::from_samples`]), so it
//! shows exactly the figures a scrape shows; rates come from two views ([`Top::rates_since`]).

use std::collections::BTreeMap;

use serde::Serialize;

/// One sample of a scrape: its name (with `_total` for counters), labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name.
    pub name: String,
    /// Its labels, in the order they came.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of Prometheus or OpenMetrics text; a line that is not a sample is an error
/// naming its line number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line)
            .ok_or_else(|| format!("metrics line {}: `{line}` is not a sample", n + 1))?;
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `k="v",…}` → the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        text = &after[end + 1..];
    }
}

/// What `top` shows: every pipeline the scraped processes run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Top {
    /// Wall-clock time of the view, epoch milliseconds.
    pub at_ms: i64,
    /// Pipelines by name.
    pub pipelines: Vec<PipelineView>,
}

/// One pipeline (summed over the processes scraped).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PipelineView {
    /// Its name.
    pub pipeline: String,
    /// Whether some process runs it.
    pub running: bool,
    /// Its checkpoints, when it takes them.
    pub checkpoint: Option<CheckpointView>,
    /// Seconds its cores took to restore the checkpoint it started from.
    pub restore_seconds: Option<f64>,
    /// Sources, operators and sinks in plan order.
    pub operators: Vec<OperatorView>,
}

/// A pipeline's checkpoints.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CheckpointView {
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints aborted.
    pub aborted: u64,
    /// The newest completed checkpoint's id (0: none).
    pub last_id: u64,
    /// Its duration, seconds.
    pub last_duration_seconds: f64,
    /// Its size, bytes.
    pub last_size_bytes: u64,
    /// Seconds since it completed, at the view's time.
    pub age_seconds: Option<f64>,
}

/// One source, operator or sink, summed over its cores (and processes).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OperatorView {
    /// Its name from the pipeline file.
    pub operator: String,
    /// What it is (`nexmark`, `window`, `file`, …).
    pub kind: String,
    /// `source`, `operator` or `sink`.
    pub role: String,
    /// Instances (one per core per process).
    pub instances: u64,
    /// Events a source consumed (`wire_source_events_total`).
    pub events: u64,
    /// Rows received (`wire_rows_in_total`).
    pub rows_in: u64,
    /// Rows emitted (`wire_rows_out_total`).
    pub rows_out: u64,
    /// Seconds spent blocked on a full downstream queue (`wire_blocked_seconds_total`).
    pub blocked_seconds: f64,
    /// Rows too late for every window.
    pub late_rows: u64,
    /// Groups held in state.
    pub state_groups: u64,
    /// The largest watermark lag of its instances, seconds.
    pub watermark_lag_seconds: Option<f64>,
    /// Rows (events for a source) in per second since the previous view.
    pub in_per_second: Option<f64>,
    /// Rows out per second since the previous view.
    pub out_per_second: Option<f64>,
    /// Share of the time since the previous view its instances spent blocked (0 to 1).
    pub backpressure: Option<f64>,
}

impl Top {
    /// The view of `samples` (of one or several processes) at `at_ms`.
    pub fn from_samples(samples: &[Sample], at_ms: i64) -> Top {
        let mut pipelines: BTreeMap<String, PipelineView> = BTreeMap::new();
        for s in samples {
            let Some(name) = s.label("pipeline") else {
                continue;
            };
            let pipeline = pipelines
                .entry(name.to_string())
                .or_insert_with(|| PipelineView {
                    pipeline: name.to_string(),
                    ..PipelineView::default()
                });
            pipeline.add(s, at_ms);
        }
        Top {
            at_ms,
            pipelines: pipelines.into_values().collect(),
        }
    }

    /// Fills the rates from `before`, an earlier view of the same processes.
    pub fn rates_since(&mut self, before: &Top) {
        let seconds = (self.at_ms - before.at_ms) as f64 / 1e3;
        if seconds <= 0.0 {
            return;
        }
        for pipeline in &mut self.pipelines {
            let Some(old) = before
                .pipelines
                .iter()
                .find(|p| p.pipeline == pipeline.pipeline)
            else {
                continue;
            };
            for op in &mut pipeline.operators {
                if let Some(was) = old.operators.iter().find(|o| o.operator == op.operator) {
                    op.rates_since(was, seconds);
                }
            }
        }
    }
}

impl PipelineView {
    fn add(&mut self, s: &Sample, at_ms: i64) {
        let whole = s.value.max(0.0) as u64;
        match s.name.as_str() {
            "wire_pipeline_running" => self.running |= s.value > 0.0,
            "wire_restore_duration_seconds" => {
                self.restore_seconds = Some(self.restore_seconds.unwrap_or(0.0).max(s.value))
            }
            "wire_checkpoints_completed_total" => self.checkpoint().completed += whole,
            "wire_checkpoints_aborted_total" => self.checkpoint().aborted += whole,
            "wire_checkpoint_last_id" => {
                let c = self.checkpoint();
                c.last_id = c.last_id.max(whole);
            }
            "wire_checkpoint_last_duration_seconds" => {
                self.checkpoint().last_duration_seconds = s.value
            }
            "wire_checkpoint_last_size_bytes" => self.checkpoint().last_size_bytes += whole,
            "wire_checkpoint_last_completed_timestamp_seconds" => {
                let age = (at_ms as f64 / 1e3 - s.value).max(0.0);
                self.checkpoint().age_seconds = Some(age);
            }
            _ => self.add_operator(s, whole),
        }
    }

    fn checkpoint(&mut self) -> &mut CheckpointView {
        self.checkpoint.get_or_insert_with(CheckpointView::default)
    }

    fn add_operator(&mut self, s: &Sample, whole: u64) {
        let (Some(name), Some(kind), Some(role)) =
            (s.label("operator"), s.label("kind"), s.label("role"))
        else {
            return;
        };
        let at = match self.operators.iter().position(|o| o.operator == name) {
            Some(at) => at,
            None => {
                self.operators.push(OperatorView {
                    operator: name.to_string(),
                    kind: kind.to_string(),
                    role: role.to_string(),
                    ..OperatorView::default()
                });
                self.operators.len() - 1
            }
        };
        let op = &mut self.operators[at];
        match s.name.as_str() {
            "wire_source_events_total" => op.events += whole,
            "wire_rows_in_total" => op.rows_in += whole,
            "wire_rows_out_total" => {
                op.rows_out += whole;
                op.instances += 1;
            }
            "wire_blocked_seconds_total" => op.blocked_seconds += s.value,
            "wire_late_rows_total" => op.late_rows += whole,
            "wire_state_groups" => op.state_groups += whole,
            "wire_watermark_lag_seconds" => {
                op.watermark_lag_seconds =
                    Some(op.watermark_lag_seconds.unwrap_or(0.0).max(s.value))
            }
            _ => {}
        }
    }
}

impl OperatorView {
    /// Rows in: a source's events, else its rows in.
    fn taken(&self) -> u64 {
        if self.role == "source" {
            self.events
        } else {
            self.rows_in
        }
    }

    fn rates_since(&mut self, was: &OperatorView, seconds: f64) {
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
        self.in_per_second = Some(per(self.taken(), was.taken()));
        self.out_per_second = Some(per(self.rows_out, was.rows_out));
        let blocked = (self.blocked_seconds - was.blocked_seconds).max(0.0);
        let share = blocked / (seconds * self.instances.max(1) as f64);
        self.backpressure = Some(share.min(1.0));
    }
}

/// The view as text for a terminal (no escape codes).
pub fn render_text(top: &Top) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if top.pipelines.is_empty() {
        out.push_str("no pipelines\n");
    }
    for p in &top.pipelines {
        let state = if p.running { "running" } else { "ended" };
        let _ = write!(out, "pipeline {}  {state}", p.pipeline);
        if let Some(c) = &p.checkpoint {
            let age = c
                .age_seconds
                .map_or("-".to_string(), |s| format!("{s:.1}s ago"));
            let _ = write!(
                out,
                "  checkpoint {} ({age}, took {:.0} ms; {} completed, {} aborted)",
                c.last_id,
                c.last_duration_seconds * 1e3,
                c.completed,
                c.aborted
            );
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "  {:<20} {:<12} {:<8} {:>14} {:>14} {:>12} {:>12} {:>8} {:>10}",
            "OPERATOR", "KIND", "ROLE", "IN", "OUT", "IN/S", "OUT/S", "BLOCKED", "WM LAG"
        );
        for o in &p.operators {
            out.push_str(&operator_line(o));
        }
    }
    out
}

fn operator_line(o: &OperatorView) -> String {
    let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0}"));
    let blocked = o
        .backpressure
        .map_or("-".to_string(), |b| format!("{:.1}%", b * 100.0));
    let lag = o
        .watermark_lag_seconds
        .map_or("-".to_string(), |s| format!("{s:.1}s"));
    format!(
        "  {:<20} {:<12} {:<8} {:>14} {:>14} {:>12} {:>12} {:>8} {:>10}\n",
        o.operator,
        o.kind,
        o.role,
        o.taken(),
        o.rows_out,
        rate(o.in_per_second),
        rate(o.out_per_second),
        blocked,
        lag
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE wire_rows_out counter
wire_rows_out_total{pipeline=\"q\",operator=\"a\",kind=\"nexmark\",role=\"source\",core=\"0\"} 10
wire_rows_out_total{pipeline=\"q\",operator=\"a\",kind=\"nexmark\",role=\"source\",core=\"1\"} 5
wire_source_events_total{pipeline=\"q\",operator=\"a\",kind=\"nexmark\",role=\"source\",core=\"0\"} 12
wire_blocked_seconds_total{pipeline=\"q\",operator=\"a\",kind=\"nexmark\",role=\"source\",core=\"0\"} 0.5
wire_pipeline_running{pipeline=\"q\"} 1
wire_checkpoint_last_id{pipeline=\"q\"} 7
wire_checkpoint_last_completed_timestamp_seconds{pipeline=\"q\"} 100.0
process_open_fds 9
# EOF
";

    #[test]
    fn a_scrape_becomes_a_view_and_two_views_give_rates() {
        let samples = parse(TEXT).unwrap();
        assert_eq!(samples.len(), 8);
        let mut before = Top::from_samples(&samples, 101_000);
        let p = &before.pipelines[0];
        assert!(p.running);
        let c = p.checkpoint.as_ref().unwrap();
        assert_eq!((c.last_id, c.age_seconds), (7, Some(1.0)));
        let a = &p.operators[0];
        assert_eq!((a.rows_out, a.events, a.instances), (15, 12, 2));
        before.pipelines[0].operators[0].rows_out = 5;
        before.pipelines[0].operators[0].blocked_seconds = 0.0;
        before.at_ms = 99_000;
        let mut now = Top::from_samples(&samples, 101_000);
        now.rates_since(&before);
        let a = &now.pipelines[0].operators[0];
        assert_eq!(a.out_per_second, Some(5.0));
        assert_eq!(a.backpressure, Some(0.125));
        assert!(render_text(&now).contains("pipeline q  running  checkpoint 7"));
    }

    #[test]
    fn labels_with_escapes_parse_and_garbage_is_named() {
        let s = parse("m{a=\"x\\\"y\",b=\"1,2}\"} 3 123\n").unwrap();
        assert_eq!(s[0].label("a"), Some("x\"y"));
        assert_eq!(s[0].label("b"), Some("1,2}"));
        assert_eq!(s[0].value, 3.0);
        let err = parse("ok 1\nnot a number\n").unwrap_err();
        assert!(err.starts_with("metrics line 2:"), "{err}");
    }
}
