//! Physical rewrites of a checked plan before it is cut into tasks.
//!
//! - A windowed `top` becomes two steps when there are several cores: a local top on every
//!   core (no exchange: each core keeps its own best rows per group and window), then the
//!   global top over the local results. Only `n` rows (plus ties) per group and window cross
//!   cores instead of every input row; a top without keys (Nexmark q7) or grouped by window
//!   only (q5) would otherwise send every row of a window to one core. The output is unchanged.

use wire_core::frontend::plan::{Input, Operator, Plan, PlanOperator, TopMode, TopPlan};
use wire_core::time::window::TimeAttr;
use wire_core::{DataType, Field, Schema};

/// Applies the rewrites for a run on `cores` cores.
pub(crate) fn optimize(mut plan: Plan, cores: usize) -> Plan {
    if cores < 2 {
        return plan;
    }
    let tops: Vec<usize> = (0..plan.operators.len())
        .filter(|i| splittable_top(&plan.operators[*i]))
        .collect();
    // From the last, so splitting one does not move the others.
    for index in tops.into_iter().rev() {
        split_top(&mut plan, index);
    }
    plan
}

/// A windowed top (with its own window, or over a windowed input).
fn splittable_top(operator: &PlanOperator) -> bool {
    matches!(&operator.op, Operator::Top(top) if !top.per_core && !matches!(top.mode, TopMode::Changelog))
}

/// Turns the top at `index` into a local top (at `index`, per core, same window and keys)
/// followed by a global top (at `index + 1`, keyed by the keys and `window_end`).
fn split_top(plan: &mut Plan, index: usize) {
    let original = &plan.operators[index];
    let Operator::Top(top) = &original.op else {
        return;
    };
    let local_schema = original.schema.clone();
    let (window_end, keys) = match top.mode {
        // Over a windowed input the global step groups as the original does.
        TopMode::InputWindow { window_end } => (window_end, top.keys.clone()),
        _ => {
            let window_end = local_schema.len() - 1;
            let mut keys = top.keys.clone();
            keys.push(window_end_key(&local_schema, window_end));
            (window_end, keys)
        }
    };
    let global = PlanOperator {
        name: original.name.clone(),
        inputs: vec![Input::Operator(index)],
        op: Operator::Top(TopPlan {
            keys,
            mode: TopMode::InputWindow { window_end },
            time: Some(TimeAttr {
                field: window_end,
                offset_ms: -1,
            }),
            ..top.clone()
        }),
        schema: local_schema,
        time: original.time,
        changelog: false,
    };
    // Every reference to operators after `index` moves one place; readers of the top read
    // the global step, its late output stays with the local step (which sees the raw rows).
    shift_references(plan, index);
    let local = &mut plan.operators[index];
    local.name = format!("{} (local)", local.name);
    if let Operator::Top(top) = &mut local.op {
        top.per_core = true;
    }
    plan.operators.insert(index + 1, global);
}

/// Renumbers inputs and late outputs for an operator inserted at `index + 1`, and points the
/// readers of operator `index` (other than its late output) at the inserted one.
fn shift_references(plan: &mut Plan, index: usize) {
    let moved = |input: &mut Input| {
        if let Input::Operator(i) = input {
            if *i > index {
                *i += 1;
            }
        }
    };
    for operator in &mut plan.operators {
        let is_late = matches!(operator.op, Operator::Late);
        for input in &mut operator.inputs {
            moved(input);
            if *input == Input::Operator(index) && !is_late {
                *input = Input::Operator(index + 1);
            }
        }
        if let Operator::Top(top) = &mut operator.op {
            if let TopMode::Window(window) = &mut top.mode {
                if let Some(late) = window.late_output.as_mut() {
                    if *late > index {
                        *late += 1;
                    }
                }
            }
        }
        if let Operator::Aggregate(aggregate) = &mut operator.op {
            if let Some(late) = aggregate
                .window
                .as_mut()
                .and_then(|w| w.late_output.as_mut())
            {
                if *late > index {
                    *late += 1;
                }
            }
        }
    }
    for sink in &mut plan.sinks {
        moved(&mut sink.input);
        if sink.input == Input::Operator(index) {
            sink.input = Input::Operator(index + 1);
        }
    }
}

/// The expression reading `window_end` of the local top's output.
fn window_end_key(schema: &Schema, window_end: usize) -> wire_core::frontend::expr::Expr {
    debug_assert_eq!(
        schema.fields()[window_end],
        Field::new("window_end", DataType::Timestamp)
    );
    wire_core::frontend::expr::compile("window_end", schema)
        .expect("a windowed top's output ends with window_end")
}
