//! Fused stateless operators: a chain runs filter, map/project and key_by steps on a batch
//! inline, in the task that received it, so a map→filter→map costs no queue hop.
//!
//! Rows are read in place; a filter that keeps every row forwards the batch itself, one that
//! keeps some copies the kept rows' bytes; a projection evaluates its expressions and archives
//! the results. After warm-up nothing here allocates per row.

use std::sync::Arc;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{Operator, Plan};
use wire_core::{Batch, BatchBuilder, DataType, PartitionId, StreamId, ValueRef};

use crate::lookup::{LookupTable, LookupTables};
use crate::probe::RunProbe;

/// The fused operators of one task instance on one core.
pub struct Chain {
    steps: Vec<Step>,
    probe: Arc<RunProbe>,
    core: usize,
}

struct Step {
    kind: StepKind,
    /// Index of this operator's probe in `RunProbe::nodes`.
    node: usize,
}

enum StepKind {
    Filter(Expr, BatchBuilder),
    Project(Vec<Expr>, BatchBuilder),
    /// A `map` that only replaces fixed-width fields with fixed-width results: rows are copied
    /// and the replaced cells overwritten, falling back to `Project` for a row that cannot be.
    Patch(Vec<(usize, Expr)>, Vec<Expr>, BatchBuilder),
    /// Each row joined with the matching rows of a static table.
    Lookup(Arc<LookupTable>, Vec<Expr>, BatchBuilder),
    /// Rows pass unchanged; routing happens in the task's outlet.
    PassThrough,
}

impl Chain {
    /// The chain of `operators` (plan indices, in order); `node_base` is the probe index of
    /// operator 0.
    pub fn new(
        plan: &Plan,
        operators: &[usize],
        probe: Arc<RunProbe>,
        node_base: usize,
        core: usize,
        lookups: &LookupTables,
    ) -> Chain {
        let builder = || BatchBuilder::with_capacity(StreamId(0), PartitionId(0), 64 << 10);
        let steps = operators
            .iter()
            .map(|&index| Step {
                node: node_base + index,
                kind: match &plan.operators[index].op {
                    Operator::Filter(expr) => StepKind::Filter(expr.clone(), builder()),
                    Operator::Project(exprs) => match patches(plan, index, exprs) {
                        Some(patches) => StepKind::Patch(patches, exprs.clone(), builder()),
                        None => StepKind::Project(exprs.clone(), builder()),
                    },
                    Operator::Lookup(lookup) => match lookups.get(&index) {
                        Some(table) => {
                            StepKind::Lookup(table.clone(), lookup.keys.clone(), builder())
                        }
                        None => unreachable!("lookup tables are loaded before the cores start"),
                    },
                    _ => StepKind::PassThrough,
                },
            })
            .collect();
        Chain { steps, probe, core }
    }

    /// The probe node of the chain's first step, if it has one.
    pub(crate) fn first_node(&self) -> Option<usize> {
        self.steps.first().map(|step| step.node)
    }

    /// Runs every step over `batch`; `None` when no row is left.
    pub fn process(&mut self, batch: Batch) -> Result<Option<Batch>, wire_core::Error> {
        let mut current = batch;
        for step in &mut self.steps {
            let counters = &self.probe.nodes[step.node].cores[self.core];
            counters.batch_in(current.row_count(), current.encoded_len());
            let next = match &mut step.kind {
                StepKind::Filter(predicate, builder) => filter(predicate, builder, current)?,
                StepKind::Project(exprs, builder) => Some(project(exprs, builder, &current)?),
                StepKind::Patch(patches, exprs, builder) => {
                    Some(patch(patches, exprs, builder, &current)?)
                }
                StepKind::Lookup(table, keys, builder) => lookup(table, keys, builder, &current)?,
                StepKind::PassThrough => Some(current),
            };
            match next {
                Some(batch) => {
                    counters.batch_out(batch.row_count(), batch.encoded_len());
                    current = batch;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }
}

fn filter(
    predicate: &Expr,
    builder: &mut BatchBuilder,
    batch: Batch,
) -> Result<Option<Batch>, wire_core::Error> {
    let view = batch.view();
    let rows = view.row_count();
    // Find the first rejected row; until then the batch may pass whole.
    let first_rejected = view.rows().position(|row| !predicate.eval_predicate(row));
    let Some(first_rejected) = first_rejected else {
        return Ok(Some(batch));
    };
    start(builder, &batch);
    for index in 0..first_rejected {
        builder.push_row_of(&view, index)?;
    }
    for index in first_rejected + 1..rows {
        if predicate.eval_predicate(view.row(index)) {
            builder.push_row_of(&view, index)?;
        }
    }
    if builder.is_empty() {
        return Ok(None);
    }
    Ok(Some(builder.finish_local()))
}

fn project(
    exprs: &[Expr],
    builder: &mut BatchBuilder,
    batch: &Batch,
) -> Result<Batch, wire_core::Error> {
    let view = batch.view();
    start(builder, batch);
    let mut values: Vec<Datum<'_>> = Vec::with_capacity(exprs.len());
    for row in view.rows() {
        values.clear();
        values.extend(exprs.iter().map(|expr| expr.eval(row)));
        builder.push(&values)?;
    }
    Ok(builder.finish_local())
}

fn lookup(
    table: &LookupTable,
    keys: &[Expr],
    builder: &mut BatchBuilder,
    batch: &Batch,
) -> Result<Option<Batch>, wire_core::Error> {
    let view = batch.view();
    start(builder, batch);
    let mut key: Vec<Datum<'_>> = Vec::with_capacity(keys.len());
    let mut values: Vec<ValueRef<'_>> = Vec::new();
    for row in view.rows() {
        key.clear();
        key.extend(keys.iter().map(|k| k.eval(row)));
        if key.iter().any(|d| matches!(d, Datum::Null)) {
            continue;
        }
        for found in table.get(&key) {
            values.clear();
            values.extend(row.values().iter().map(|v| v.as_value_ref()));
            values.extend(found.row().values().iter().map(|v| v.as_value_ref()));
            builder.push(&values)?;
        }
    }
    if builder.is_empty() {
        return Ok(None);
    }
    Ok(Some(builder.finish_local()))
}

/// The `(field, expression)` pairs of a projection that keeps every input field in place and
/// computes only fixed-width values over fixed-width fields; `None` when it does more.
fn patches(plan: &Plan, operator: usize, exprs: &[Expr]) -> Option<Vec<(usize, Expr)>> {
    let op = &plan.operators[operator];
    let input = plan.schema_of(*op.inputs.first()?);
    if exprs.len() != input.len() {
        return None;
    }
    let fixed = |t: DataType| !matches!(t, DataType::String | DataType::Bytes);
    let mut patches = Vec::new();
    for (index, (expr, field)) in exprs.iter().zip(input.fields()).enumerate() {
        if expr.field_index() == Some(index) {
            continue;
        }
        if !fixed(expr.data_type()) || !fixed(field.data_type) {
            return None;
        }
        patches.push((index, expr.clone()));
    }
    Some(patches)
}

fn patch(
    patches: &[(usize, Expr)],
    exprs: &[Expr],
    builder: &mut BatchBuilder,
    batch: &Batch,
) -> Result<Batch, wire_core::Error> {
    let view = batch.view();
    start(builder, batch);
    let mut cells: Vec<(usize, ValueRef<'_>)> = Vec::with_capacity(patches.len());
    let mut values: Vec<Datum<'_>> = Vec::new();
    for (index, row) in view.rows().enumerate() {
        cells.clear();
        cells.extend(
            patches
                .iter()
                .map(|(field, expr)| (*field, fixed_value(expr.eval(row)))),
        );
        if !builder.push_row_patched(&view, index, &cells)? {
            values.clear();
            values.extend(exprs.iter().map(|expr| expr.eval(row)));
            builder.push(&values)?;
        }
    }
    Ok(builder.finish_local())
}

/// A fixed-width datum as a value (strings and bytes never come out of a patch expression).
fn fixed_value(datum: Datum<'_>) -> ValueRef<'static> {
    match datum {
        Datum::I64(v) => ValueRef::I64(v),
        Datum::F64(v) => ValueRef::F64(v),
        Datum::Bool(v) => ValueRef::Bool(v),
        Datum::Timestamp(v) => ValueRef::Timestamp(v),
        Datum::Null | Datum::Str(_) | Datum::Bytes(_) => ValueRef::Null,
    }
}

/// Points `builder` at `batch`'s stream and partition and carries its event-time bounds.
fn start(builder: &mut BatchBuilder, batch: &Batch) {
    let header = batch.header();
    builder.set_origin(header.stream, header.partition);
    builder.widen_event_time(header.min_event_time, header.max_event_time);
}
