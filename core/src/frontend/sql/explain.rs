//! `wire explain`: a checked pipeline's plan as text, for SQL and YAML alike.

use std::fmt::Write as _;

use crate::frontend::plan::{Input, Operator, Plan, PlanOperator};
use crate::frontend::spec::{
    GroupKey, OperatorKind, PipelineSpec, SinkKind, SourceKind, TopSpec, WindowSpec,
};
use crate::record::schema::Schema;
use crate::time::window::{TimeDomain, WindowKind};

/// The plan of `spec` (already checked into `plan`): sources, operators in the order they run
/// with their keys, windows and state, and sinks.
pub fn explain(spec: &PipelineSpec, plan: &Plan) -> String {
    let mut out = format!("pipeline {} ({})\n", plan.name, spec.origin.file);
    for (index, source) in plan.sources.iter().enumerate() {
        let kind = match &source.kind {
            SourceKind::Nexmark(n) => format!("nexmark {:?}", n.stream).to_lowercase(),
            SourceKind::File(f) => format!("file {}", f.path.display()),
            SourceKind::Ingest(i) => format!("ingest {}", i.listen),
            SourceKind::Kafka(_) => "kafka".to_string(),
            SourceKind::Mongodb(m) => format!("mongodb {}.{}", m.database, m.collection),
        };
        let _ = writeln!(out, "source {}: {kind}", source.name);
        let marked = changes(source.changelog());
        let _ = writeln!(out, "  rows: {}{marked}", fields(&source.schema));
        if let Some(index) = source.event_time {
            let name = &source.schema.fields()[index].name;
            let delay = source.watermark.max_out_of_orderness_ms;
            let _ = writeln!(out, "  event time: {name}, watermark {delay} ms behind");
        }
        // The generator leaves the fields nothing reads NULL (`Plan::source_keep`).
        if let (SourceKind::Nexmark(_), Some(keep)) = (&source.kind, plan.source_keep(index)) {
            let read = kept_fields(plan, Input::Source(index), &keep);
            let _ = writeln!(out, "  generates only the fields read after it: {read}");
        }
    }
    for (index, operator) in plan.operators.iter().enumerate() {
        let inputs: Vec<&str> = operator.inputs.iter().map(|i| plan.name_of(*i)).collect();
        let state = if operator.op.is_stateful() {
            ", keeps state"
        } else {
            ""
        };
        let kind = op_name(&operator.op);
        let _ = writeln!(
            out,
            "operator {}: {kind} of {}{state}",
            operator.name,
            inputs.join(", ")
        );
        if let Some(spec_op) = spec.operators.iter().find(|o| o.name.name == operator.name) {
            details(&mut out, &spec_op.kind);
        }
        pruned(&mut out, plan, operator);
        exchanged(&mut out, plan, index, operator);
        let marked = changes(operator.changelog);
        let _ = writeln!(out, "  rows: {}{marked}", fields(&operator.schema));
    }
    for sink in &plan.sinks {
        let kind = match &sink.kind {
            SinkKind::Blackhole => "blackhole".to_string(),
            SinkKind::Stdout { .. } => "stdout".to_string(),
            SinkKind::File(f) => format!("file {}", f.path.display()),
            SinkKind::Kafka(_) => "kafka".to_string(),
            SinkKind::Postgres(_) => "postgres".to_string(),
            SinkKind::Elasticsearch(_) => "elasticsearch".to_string(),
            SinkKind::Mongodb(m) => format!("mongodb {}.{}", m.database, m.collection),
        };
        let _ = writeln!(
            out,
            "sink {}: {kind} of {}",
            sink.name,
            input_name(plan, sink.input)
        );
    }
    out
}

/// The fields a join keeps of each input when the planner pruned the others (nothing after
/// the join reads them).
fn pruned(out: &mut String, plan: &Plan, operator: &PlanOperator) {
    let Operator::Join(join) = &operator.op else {
        return;
    };
    let Some(keep) = &join.keep else {
        return;
    };
    let mut sides = Vec::with_capacity(2);
    for (input, keep) in operator.inputs.iter().zip(keep) {
        sides.push(kept_fields(plan, *input, keep));
    }
    let _ = writeln!(
        out,
        "  stores only the fields read after it: {}",
        sides.join(", ")
    );
}

/// The fields rows routed between cores to a keyed operator (an aggregate, a join, a
/// `key_by`) carry, when not all (`Plan::exchange_keep`): the others cross as NULL.
fn exchanged(out: &mut String, plan: &Plan, index: usize, operator: &PlanOperator) {
    if !matches!(
        operator.op,
        Operator::Aggregate(_) | Operator::Join(_) | Operator::KeyBy(_)
    ) {
        return;
    }
    let mut sides = Vec::new();
    for (port, input) in operator.inputs.iter().enumerate() {
        if let Some(keep) = plan.exchange_keep(index, port) {
            sides.push(kept_fields(plan, *input, &keep));
        }
    }
    if !sides.is_empty() {
        let _ = writeln!(
            out,
            "  rows from other cores carry only: {}",
            sides.join(", ")
        );
    }
}

/// `input (a, b)`: the input's name and the fields `keep` marks.
fn kept_fields(plan: &Plan, input: Input, keep: &[bool]) -> String {
    let kept: Vec<&str> = (plan.schema_of(input).fields().iter().zip(keep))
        .filter(|(_, keep)| **keep)
        .map(|(field, _)| field.name.as_str())
        .collect();
    format!("{} ({})", plan.name_of(input), kept.join(", "))
}

/// What follows the rows of an update stream.
fn changes(changelog: bool) -> &'static str {
    if changelog {
        " (update stream)"
    } else {
        ""
    }
}

fn input_name(plan: &Plan, input: Input) -> &str {
    plan.name_of(input)
}

fn op_name(op: &Operator) -> &'static str {
    match op {
        Operator::Filter(_) => "filter",
        Operator::Project(_) => "project",
        Operator::KeyBy(_) => "key_by",
        Operator::Union => "union",
        Operator::Aggregate(_) => "aggregate",
        Operator::Top(_) => "top",
        Operator::Join(_) => "join",
        Operator::Lookup(_) => "lookup",
        Operator::Process(_) => "process",
        Operator::Late => "late rows",
    }
}

fn fields(schema: &Schema) -> String {
    let parts: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name,
                f.data_type,
                if f.nullable { "?" } else { "" }
            )
        })
        .collect();
    format!("({})", parts.join(", "))
}

fn window(window: &WindowSpec) -> String {
    let shape = match window.kind {
        WindowKind::Tumbling { size_ms } => format!("tumbling {size_ms} ms"),
        WindowKind::Hop { size_ms, slide_ms } => format!("hop {size_ms} ms every {slide_ms} ms"),
        WindowKind::Cumulate { step_ms, size_ms } => {
            format!("cumulate up to {size_ms} ms every {step_ms} ms")
        }
        WindowKind::Session { gap_ms } => format!("session, gap {gap_ms} ms"),
    };
    match window.time {
        TimeDomain::Processing => format!("{shape}, processing time"),
        TimeDomain::Event => shape,
    }
}

/// The group keys `keys`, each `name = expr` or `expr`.
fn keys(keys: &[GroupKey]) -> String {
    let names: Vec<String> = keys
        .iter()
        .map(|k| match &k.name {
            Some(n) => format!("{} = {}", n.name, k.expr.text),
            None => k.expr.text.clone(),
        })
        .collect();
    names.join(", ")
}

fn details(out: &mut String, kind: &OperatorKind) {
    match kind {
        OperatorKind::Filter(e) => {
            let _ = writeln!(out, "  where: {}", e.text);
        }
        OperatorKind::Map(list) | OperatorKind::Project(list) => {
            for (name, e) in list {
                let _ = writeln!(out, "  {} = {}", name.name, e.text);
            }
        }
        OperatorKind::Aggregate(a) => {
            let _ = writeln!(out, "  keys: [{}]", keys(&a.group_by));
            if let Some(w) = &a.window {
                let _ = writeln!(out, "  window: {}", window(w));
            }
            for (name, e) in &a.aggregates {
                let _ = writeln!(out, "  {} = {}", name.name, e.text);
            }
        }
        OperatorKind::Top(t) => top(out, t),
        OperatorKind::Join(j) => {
            let l: Vec<&str> = j.left_key.iter().map(|e| e.text.as_str()).collect();
            let r: Vec<&str> = j.right_key.iter().map(|e| e.text.as_str()).collect();
            let _ = writeln!(out, "  keys: [{}] = [{}]", l.join(", "), r.join(", "));
            if let Some((lower, upper)) = &j.between {
                let _ = writeln!(
                    out,
                    "  interval: right event time between {} and {}",
                    lower.text, upper.text
                );
            }
        }
        OperatorKind::Lookup(l) => {
            let k: Vec<&str> = l.key.iter().map(|e| e.text.as_str()).collect();
            let t: Vec<&str> = l.table_key.iter().map(|n| n.name.as_str()).collect();
            let _ = writeln!(out, "  table: {} (read once at start)", l.path.display());
            let _ = writeln!(out, "  keys: [{}] = table [{}]", k.join(", "), t.join(", "));
        }
        OperatorKind::Process(p) => {
            let _ = writeln!(out, "  function: {}", p.function.name);
            let _ = writeln!(out, "  keys: [{}]", keys(&p.group_by));
            for (key, value) in &p.config {
                let _ = writeln!(out, "  {}: {value}", key.name);
            }
        }
        _ => {}
    }
}

fn top(out: &mut String, t: &TopSpec) {
    let order: Vec<String> = t
        .order_by
        .iter()
        .map(|(e, desc)| format!("{}{}", e.text, if *desc { " desc" } else { "" }))
        .collect();
    let ties = if t.with_ties { " with ties" } else { "" };
    let _ = writeln!(
        out,
        "  first {}{ties} by {} per [{}]",
        t.n,
        order.join(", "),
        keys(&t.group_by)
    );
    if let Some(w) = &t.window {
        let _ = writeln!(out, "  window: {}", window(w));
    }
}
