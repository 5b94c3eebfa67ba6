//! Printing answers: aligned tables for people, or the answer's fields as one JSON document
//! (`-o json`, field names as in admin.proto, stable for scripts).

use std::path::Path;

use serde::Serialize;
use wire_control::proto::admin::{
    ClusterStatusResponse, CreateBackupResponse, CreateSavepointResponse, CreateTokenResponse,
    ListCheckpointsResponse, ListPipelinesResponse, ListTokensResponse, Pipeline, Token,
    TriggerCheckpointResponse,
};

use crate::Format;

/// Prints answers in one format to stdout.
pub struct Printer {
    format: Format,
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: Format) -> Printer {
        Printer { format }
    }

    /// `cluster status`.
    pub fn cluster(&self, status: &ClusterStatusResponse) {
        if self.json(status) {
            return;
        }
        let leader = match status.leader_id {
            0 => "none".to_string(),
            id => format!("{id} ({})", status.leader_address),
        };
        println!("leader:        {leader}");
        println!("term:          {}", status.term);
        println!("commit index:  {}", status.commit_index);
        println!("answered by:   node {}", status.node_id);
        println!();
        let mut rows = vec![row(&[
            "ID",
            "ADDRESS",
            "ROLE",
            "HEALTH",
            "LAST CONTACT",
            "MATCH",
        ])];
        for m in &status.members {
            let contact = match m.last_contact_ms {
                ms if ms < 0 => "-".to_string(),
                ms => format!("{ms}ms ago"),
            };
            rows.push(vec![
                m.id.to_string(),
                m.address.clone(),
                m.role.clone(),
                m.health.clone(),
                contact,
                m.match_index.to_string(),
            ]);
        }
        print_table(&rows);
    }

    /// `pipeline list`.
    pub fn pipelines(&self, list: &ListPipelinesResponse) {
        if self.json(list) {
            return;
        }
        let mut rows = vec![row(&["NAME", "STATE", "DESIRED", "VERSION", "CHECKPOINT"])];
        for p in &list.pipelines {
            rows.push(vec![
                p.name.clone(),
                p.state.clone(),
                p.desired_state.clone(),
                p.version.to_string(),
                checkpoint_text(p.last_checkpoint),
            ]);
        }
        print_table(&rows);
    }

    /// `pipeline create|get|pause|resume|stop|scale`.
    pub fn pipeline(&self, p: &Pipeline) {
        if self.json(p) {
            return;
        }
        println!("name:             {}", p.name);
        println!("state:            {}", p.state);
        if !p.waiting.is_empty() {
            println!("waiting:          {}", p.waiting);
        }
        if !p.failure.is_empty() {
            println!("failure:          {}", p.failure);
        }
        println!("desired:          {}", p.desired_state);
        println!("version:          {}", p.version);
        println!("last checkpoint:  {}", checkpoint_text(p.last_checkpoint));
        if let Some(o) = &p.options {
            println!("options:          {}", options_text(o));
        }
        if !p.assignment.is_empty() {
            println!("placement:        {}", placement_text(&p.assignment));
        }
        for line in ingest_lines(&p.ingest) {
            println!("ingest:           {line}");
        }
        if p.operators.is_empty() {
            return;
        }
        println!();
        let mut rows = vec![row(&[
            "OPERATOR",
            "ROWS IN",
            "ROWS OUT",
            "BACKPRESSURE",
            "WATERMARK",
        ])];
        for op in &p.operators {
            rows.push(vec![
                op.name.clone(),
                op.rows_in.to_string(),
                op.rows_out.to_string(),
                format!("{:.0}%", op.backpressure * 100.0),
                op.watermark_ms.map_or("-".to_string(), |ms| ms.to_string()),
            ]);
        }
        print_table(&rows);
    }

    /// `checkpoint list`.
    pub fn checkpoints(&self, list: &ListCheckpointsResponse) {
        if self.json(list) {
            return;
        }
        let mut rows = vec![row(&["ID", "PATH"])];
        for c in &list.checkpoints {
            rows.push(vec![c.id.to_string(), c.path.clone()]);
        }
        print_table(&rows);
    }

    /// `checkpoint trigger`.
    pub fn triggered(&self, name: &str, answer: &TriggerCheckpointResponse) {
        if !self.json(answer) {
            println!(
                "checkpoint {} of {name} complete on node {}: {}",
                answer.checkpoint_id, answer.node_id, answer.path
            );
        }
    }

    /// `savepoint create`.
    pub fn savepoint(&self, answer: &CreateSavepointResponse) {
        if !self.json(answer) {
            println!(
                "savepoint written to {} on node {} (checkpoint {})",
                answer.path, answer.node_id, answer.checkpoint_id
            );
        }
    }

    /// `backup create`: the file is written; say what it holds.
    pub fn backup(&self, path: &Path, backup: &CreateBackupResponse) {
        #[derive(Serialize)]
        struct Written {
            file: String,
            bytes: usize,
        }
        let written = Written {
            file: path.display().to_string(),
            bytes: backup.snapshot.len(),
        };
        if !self.json(&written) {
            println!(
                "backup of the metadata written to {} ({} bytes)",
                path.display(),
                backup.snapshot.len()
            );
        }
    }

    /// `token create`: the token on stdout (its only showing), what it is on stderr.
    pub fn token_created(&self, answer: &CreateTokenResponse) {
        if self.json(answer) {
            return;
        }
        if let Some(token) = &answer.token {
            eprintln!(
                "token {} (role {}, scope {}, expires {}); it is shown only this once:",
                token.id,
                token.role,
                scope_text(token),
                expiry_text(token)
            );
        }
        println!("{}", answer.secret);
    }

    /// `token list`.
    pub fn tokens(&self, list: &ListTokensResponse) {
        if self.json(list) {
            return;
        }
        let mut rows = vec![row(&["ID", "ROLE", "SCOPE", "CREATED (MS)", "EXPIRES"])];
        for t in &list.tokens {
            rows.push(vec![
                t.id.clone(),
                t.role.clone(),
                scope_text(t),
                t.created_at_ms.to_string(),
                expiry_text(t),
            ]);
        }
        print_table(&rows);
    }

    /// A verb that answers nothing but success.
    pub fn done(&self, message: &str) {
        #[derive(Serialize)]
        struct Done<'a> {
            message: &'a str,
        }
        if !self.json(&Done { message }) {
            println!("{message}");
        }
    }

    /// Prints `value` as JSON when that is the format; false when the caller prints a table.
    fn json<T: Serialize>(&self, value: &T) -> bool {
        if self.format != Format::Json {
            return false;
        }
        match serde_json::to_string_pretty(value) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("error: cannot print the answer as JSON: {err}"),
        }
        true
    }
}

/// Where a producer token may ingest: `q5`, `q5/bids`, or `any`.
fn scope_text(token: &Token) -> String {
    match (token.pipeline.as_str(), token.source.as_str()) {
        ("", _) => "any".to_string(),
        (pipeline, "") => pipeline.to_string(),
        (pipeline, source) => format!("{pipeline}/{source}"),
    }
}

/// When a token expires: `never`, or how far from now (`in 3600s`, `expired`).
fn expiry_text(token: &Token) -> String {
    if token.expires_at_ms == 0 {
        return "never".to_string();
    }
    let now = wire_control::auth::now_ms();
    match token.expires_at_ms.checked_sub(now) {
        Some(left) if left > 0 => format!(
            "in {}s (at {} ms)",
            left.div_ceil(1000),
            token.expires_at_ms
        ),
        _ => format!("expired (at {} ms)", token.expires_at_ms),
    }
}

fn checkpoint_text(id: u64) -> String {
    match id {
        0 => "none".to_string(),
        id => id.to_string(),
    }
}

/// `node 1: slots 0 3, node 2: slots 1 4`, or `whole on node 1`.
fn placement_text(slots: &[wire_control::proto::admin::Slot]) -> String {
    if let [only] = slots {
        return format!("whole on node {}", only.node);
    }
    let mut nodes: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for s in slots {
        nodes.entry(s.node).or_default().push(s.slot.to_string());
    }
    let parts: Vec<String> = nodes
        .iter()
        .map(|(node, slots)| format!("node {node}: slots {}", slots.join(" ")))
        .collect();
    format!("{} slots; {}", slots.len(), parts.join(", "))
}

/// One line per ingest source: where its producers connect, node by node (`rows: node 1
/// 10.0.0.1:9000 (partitions 0 3), node 2 …`); the addresses alone come from `-o json`.
fn ingest_lines(endpoints: &[wire_control::proto::admin::IngestEndpoint]) -> Vec<String> {
    let mut sources: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for e in endpoints {
        let partitions: Vec<String> = e.partitions.iter().map(u32::to_string).collect();
        sources.entry(&e.source).or_default().push(format!(
            "node {} {} (partitions {})",
            e.node,
            e.address,
            partitions.join(" ")
        ));
    }
    sources
        .into_iter()
        .map(|(source, nodes)| format!("{source}: {}", nodes.join(", ")))
        .collect()
}

fn options_text(o: &wire_control::proto::admin::PipelineOptions) -> String {
    let mut parts = Vec::new();
    if o.checkpoint_interval_ms > 0 {
        parts.push(format!(
            "checkpoint-interval={}ms",
            o.checkpoint_interval_ms
        ));
    }
    if o.cores > 0 {
        parts.push(format!("cores={}", o.cores));
    }
    if !o.from_savepoint.is_empty() {
        parts.push(format!("from-savepoint={}", o.from_savepoint));
    }
    if let Some(ms) = o.checkpoint_timeout_ms {
        parts.push(format!("checkpoint-timeout={ms}ms"));
    }
    if let Some(n) = o.checkpoints_retained {
        parts.push(format!("checkpoints-retained={n}"));
    }
    if let Some(n) = o.checkpoint_deltas {
        parts.push(format!("checkpoint-deltas={n}"));
    }
    if parts.is_empty() {
        "defaults".to_string()
    } else {
        parts.join(" ")
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_string()).collect()
}

/// Prints rows with each column padded to its widest cell.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
