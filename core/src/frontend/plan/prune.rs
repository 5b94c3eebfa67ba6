//! Column pruning: which fields of each operator's output some consumer reads.
//!
//! A join keeps every row of both inputs until it expires (or forever), and a row keeps all
//! its fields, though the operators after the join often read a few of them (Nexmark q3 reads
//! four of the auction's and person's twenty). This pass walks the plan from the sinks back
//! and marks, per operator, the output fields something downstream reads; a join then stores
//! and emits NULL for the fields nothing reads (`JoinPlan::keep`), so its state and output
//! hold only what is used. The schema is unchanged: a pruned field is one no consumer looks
//! at, so no one sees the NULL. The same walk says what an exchange into a keyed operator
//! must carry (`exchange_keep`): the rest crosses cores as NULL; and what a source must produce
//! (`source_keep`): the Nexmark generator leaves the rest NULL and does not generate them.
//!
//! The walk is conservative: a sink reads every field, and so does every operator whose reads
//! it does not enumerate (lookups, `process`, late side outputs, update streams). Filters,
//! projections, `key_by`, unions, aggregates (keys, arguments, filters, event time), tops
//! (what is read after them, keys, order, event time) and joins (what is read after them,
//! keys, event times, interval bounds, window ends) pass narrower needs upstream. A changelog keeps every field, and every node its event-time field.

use super::{AggregatePlan, Input, JoinKind, JoinPlan, Operator, Plan, TopMode, TopPlan};

/// Sets `JoinPlan::keep` of every join whose output has a field no consumer reads.
pub(super) fn prune_joins(plan: &mut Plan) {
    if !ordered(plan) {
        return;
    }
    let used = used_fields(plan);
    for (index, mut used) in used.into_iter().enumerate() {
        let Some(&left) = plan.operators[index].inputs.first() else {
            continue;
        };
        let left_len = plan.schema_of(left).len();
        if let Operator::Join(join) = &mut plan.operators[index].op {
            if used.contains(&false) && left_len <= used.len() {
                let right = used.split_off(left_len);
                join.keep = Some([used, right]);
            }
        }
    }
}

/// Whether every operator's inputs come before it, as the planner places them: the walk
/// needs that.
fn ordered(plan: &Plan) -> bool {
    plan.operators.iter().enumerate().all(|(index, operator)| {
        (operator.inputs.iter())
            .all(|input| !matches!(*input, Input::Operator(from) if from >= index))
    })
}

/// Per operator, which of its output fields a consumer reads.
fn used_fields(plan: &Plan) -> Vec<Vec<bool>> {
    let mut used: Vec<Vec<bool>> = plan
        .operators
        .iter()
        .map(|operator| vec![false; operator.schema.len()])
        .collect();
    for sink in &plan.sinks {
        if let Input::Operator(index) = sink.input {
            used[index].fill(true);
        }
    }
    for index in (0..plan.operators.len()).rev() {
        let operator = &plan.operators[index];
        if operator.changelog {
            used[index].fill(true);
        }
        if let Some(slot) = operator
            .time
            .and_then(|time| used[index].get_mut(time.field))
        {
            *slot = true;
        }
        for (port, input) in operator.inputs.iter().enumerate() {
            let Input::Operator(from) = *input else {
                continue;
            };
            let reads = input_reads(plan, &used, index, port, used[from].len());
            or_into(&mut used[from], &reads);
        }
    }
    used
}

/// Which fields of a row (`width` fields) entering operator `index` on input `port` it
/// reads, given what its own consumers read (`used`).
fn input_reads(
    plan: &Plan,
    used: &[Vec<bool>],
    index: usize,
    port: usize,
    width: usize,
) -> Vec<bool> {
    let operator = &plan.operators[index];
    let mut reads = vec![false; width];
    match &operator.op {
        Operator::Filter(predicate) => {
            or_into(&mut reads, &used[index]);
            predicate.mark_fields(&mut reads);
        }
        Operator::KeyBy(keys) => {
            or_into(&mut reads, &used[index]);
            keys.iter().for_each(|key| key.mark_fields(&mut reads));
        }
        Operator::Union => or_into(&mut reads, &used[index]),
        Operator::Project(exprs) => exprs.iter().for_each(|e| e.mark_fields(&mut reads)),
        Operator::Aggregate(aggregate) => aggregate_reads(aggregate, &mut reads),
        Operator::Top(top) => top_reads(top, &used[index], &mut reads),
        Operator::Join(join) => {
            let left_len = operator
                .inputs
                .first()
                .map_or(0, |&left| plan.schema_of(left).len());
            join_reads(join, port, &used[index], left_len, &mut reads);
        }
        _ => reads.fill(true),
    }
    reads
}

/// The fields of input `port` a join reads: those its output's readers read (`used`, the
/// left input's fields then the right's), its keys on that side, its event time there, and
/// what places a row in time (an interval's bounds, a window's end).
fn join_reads(join: &JoinPlan, port: usize, used: &[bool], left_len: usize, reads: &mut [bool]) {
    let (output, keys, time) = match port {
        0 => (used.get(..left_len), &join.left_keys, join.left_time),
        _ => (used.get(left_len..), &join.right_keys, join.right_time),
    };
    let Some(output) = output else {
        reads.fill(true);
        return;
    };
    or_into(reads, output);
    keys.iter().for_each(|key| key.mark_fields(reads));
    let end = match (&join.kind, port) {
        (JoinKind::Interval { lower, upper }, 0) => {
            lower.mark_fields(reads);
            upper.mark_fields(reads);
            None
        }
        (JoinKind::Window { left_end, .. }, 0) => Some(*left_end),
        (JoinKind::Window { right_end, .. }, _) => Some(*right_end),
        _ => None,
    };
    for field in time.map(|time| time.field).into_iter().chain(end) {
        if let Some(slot) = reads.get_mut(field) {
            *slot = true;
        }
    }
}

/// Which fields of the rows entering operator `index` on input `port` it (with what reads
/// its output) reads, when not all: an exchange into it need carry only those.
pub(super) fn exchange_keep(plan: &Plan, index: usize, port: usize) -> Option<Vec<bool>> {
    let input = *plan.operators.get(index)?.inputs.get(port)?;
    if !ordered(plan) {
        return None;
    }
    let width = plan.schema_of(input).len();
    let used = used_fields(plan);
    let reads = input_reads(plan, &used, index, port, width);
    reads.contains(&false).then_some(reads)
}

/// Which fields of source `source`'s rows some consumer reads, when not all: the source need
/// not produce the others. A sink reads every field, and so does a changelog; the event time
/// (field or expression) is always read.
pub(super) fn source_keep(plan: &Plan, source: usize) -> Option<Vec<bool>> {
    let spec = plan.sources.get(source)?;
    let input = Input::Source(source);
    if !ordered(plan) || spec.changelog() || plan.sinks.iter().any(|sink| sink.input == input) {
        return None;
    }
    let width = spec.schema.len();
    let used = used_fields(plan);
    let mut reads = vec![false; width];
    for (index, operator) in plan.operators.iter().enumerate() {
        for (port, _) in (operator.inputs.iter().enumerate()).filter(|(_, i)| **i == input) {
            or_into(&mut reads, &input_reads(plan, &used, index, port, width));
        }
    }
    let time = (spec.event_time.into_iter()).chain(spec.time.map(|time| time.field));
    time.for_each(|field| {
        if let Some(slot) = reads.get_mut(field) {
            *slot = true;
        }
    });
    if let Some(expr) = &spec.time_expr {
        expr.mark_fields(&mut reads);
    }
    reads.contains(&false).then_some(reads)
}

/// The input fields an aggregate reads: its keys, its calls' arguments and filters, its
/// event time; all of them when rows can leave whole (a late side output) or retract.
fn aggregate_reads(aggregate: &AggregatePlan, reads: &mut [bool]) {
    let late = (aggregate.window.as_ref()).is_some_and(|window| window.late_output.is_some());
    if late || aggregate.retracting {
        reads.fill(true);
        return;
    }
    aggregate.keys.iter().for_each(|key| key.mark_fields(reads));
    aggregate
        .aggregates
        .iter()
        .for_each(|call| call.mark_fields(reads));
    if let Some(slot) = aggregate.time.and_then(|time| reads.get_mut(time.field)) {
        *slot = true;
    }
}

/// The input fields a top reads: those read of its output (which starts with the input's
/// fields, then its window's), its keys, its order, its event time and an input window's end;
/// every field for an update stream (its rows lead with `op`) or a late side output.
fn top_reads(top: &TopPlan, used: &[bool], reads: &mut [bool]) {
    let window_end = match &top.mode {
        TopMode::Window(window) if window.late_output.is_none() => None,
        TopMode::InputWindow { window_end } => Some(*window_end),
        _ => {
            reads.fill(true);
            return;
        }
    };
    or_into(reads, used);
    top.keys.iter().for_each(|key| key.mark_fields(reads));
    (top.order_by.iter()).for_each(|(order, _)| order.mark_fields(reads));
    let time = top.time.map(|time| time.field);
    for field in time.into_iter().chain(window_end) {
        if let Some(slot) = reads.get_mut(field) {
            *slot = true;
        }
    }
}

/// `into |= from`, field by field.
fn or_into(into: &mut [bool], from: &[bool]) {
    for (into, &from) in into.iter_mut().zip(from) {
        *into |= from;
    }
}
