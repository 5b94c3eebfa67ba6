//! Planning of the stateful operators (`aggregate`, `top`) and their late side outputs: keys
//! and aggregates type-checked against the input, output schemas derived, and the event-time
//! attribute and changelog flag carried from node to node.

use super::{output_field, unknown_field, Input, Operator, Plan, PlanOperator};
use crate::agg::{self, AggCall};
use crate::expr::{self, Expr};
use crate::schema::{DataType, Field, Schema};
use crate::spec::{
    AggregateSpec, ExprText, GroupKey, Named, PipelineSpec, SpecError, TopSpec, WindowSpec,
};
use crate::window::{TimeAttr, TimeDomain, WindowKind, WindowPlan};

/// The name of the change-kind field that leads every changelog row.
pub const OP_FIELD: &str = "op";
/// Change kinds of a changelog: insert, update-before (retract), update-after, delete.
pub const CHANGE_KINDS: [&str; 4] = ["+I", "-U", "+U", "-D"];

/// A checked `aggregate`.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// Group keys, over the input schema.
    pub keys: Vec<Expr>,
    /// The window, or none for an unbounded (changelog) aggregate.
    pub window: Option<WindowPlan>,
    /// The aggregates, in output order.
    pub aggregates: Vec<AggCall>,
    /// The input's event-time attribute.
    pub time: Option<TimeAttr>,
}

/// A checked `top`.
#[derive(Debug, Clone)]
pub struct TopPlan {
    /// Rows kept per group.
    pub n: usize,
    /// Order expressions over the input, each with `true` for descending.
    pub order_by: Vec<(Expr, bool)>,
    /// Group keys over the input.
    pub keys: Vec<Expr>,
    /// Keep rows tied with the n-th too.
    pub with_ties: bool,
    /// How results are emitted.
    pub mode: TopMode,
    /// The input's event-time attribute.
    pub time: Option<TimeAttr>,
}

/// How a `top` emits.
#[derive(Debug, Clone)]
pub enum TopMode {
    /// Updates as rows enter (`+I`) and leave (`-D`) the top n.
    Changelog,
    /// Once per window of its own, when the watermark passes the window's end.
    Window(WindowPlan),
    /// Once per group of a windowed input, when the watermark passes the group's
    /// `window_end` (field `window_end` of the input).
    InputWindow {
        /// Index of `window_end` in the input.
        window_end: usize,
    },
}

/// What the stateful planner needs from the node it reads.
pub(super) struct InputInfo<'a> {
    pub(super) schema: &'a Schema,
    pub(super) time: Option<TimeAttr>,
    pub(super) changelog: bool,
    pub(super) name: &'a str,
}

pub(super) fn plan_aggregate(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    input: &InputInfo<'_>,
    aggregate: &AggregateSpec,
    late_index: Option<usize>,
) -> Result<(Operator, Schema, Option<TimeAttr>, bool), SpecError> {
    refuse_changelog(spec, name, path, input)?;
    let (keys, mut fields) = plan_keys(spec, &aggregate.group_by, input.schema)?;
    let window = match &aggregate.window {
        Some(window) => Some(plan_window(spec, window, input, late_index)?),
        None => None,
    };
    let mut aggregates = Vec::with_capacity(aggregate.aggregates.len());
    for (named, text) in &aggregate.aggregates {
        let call = agg::compile(&text.text, input.schema)
            .map_err(|err| spec.expr_error(text, err.offset, err.message))?;
        fields.push(Field {
            name: named.name.clone(),
            data_type: call.data_type(),
            nullable: call.nullable(),
        });
        aggregates.push(call);
    }
    let key_count = keys.len();
    let (schema, time, changelog) = match &window {
        Some(_) => {
            fields.splice(key_count..key_count, window_fields());
            let time = TimeAttr {
                field: key_count + 1,
                offset_ms: -1,
            };
            (fields, Some(time), false)
        }
        None => {
            fields.insert(0, Field::new(OP_FIELD, DataType::String));
            (fields, None, true)
        }
    };
    let schema = checked_schema(spec, name, path, schema)?;
    let plan = AggregatePlan {
        keys,
        window,
        aggregates,
        time: input.time,
    };
    Ok((Operator::Aggregate(plan), schema, time, changelog))
}

pub(super) fn plan_top(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    input: &InputInfo<'_>,
    top: &TopSpec,
    late_index: Option<usize>,
) -> Result<(Operator, Schema, Option<TimeAttr>, bool), SpecError> {
    refuse_changelog(spec, name, path, input)?;
    let (keys, _) = plan_keys(spec, &top.group_by, input.schema)?;
    let order_by = top
        .order_by
        .iter()
        .map(|(text, descending)| Ok((compile(spec, text, input.schema)?, *descending)))
        .collect::<Result<Vec<_>, SpecError>>()?;
    let mut fields: Vec<Field> = input.schema.fields().to_vec();
    let (mode, time, changelog) = match &top.window {
        Some(window) => {
            let plan = plan_window(spec, window, input, late_index)?;
            if !matches!(plan.kind, WindowKind::Tumbling { .. }) {
                return Err(spec.error_at(
                    name,
                    &window.path,
                    "a windowed top takes a tumbling window".to_string(),
                ));
            }
            fields.extend(window_fields());
            let time = TimeAttr {
                field: fields.len() - 1,
                offset_ms: -1,
            };
            (TopMode::Window(plan), Some(time), false)
        }
        None => match input_window_end(input, &keys) {
            Some(window_end) => (TopMode::InputWindow { window_end }, input.time, false),
            None => {
                fields.insert(0, Field::new(OP_FIELD, DataType::String));
                (TopMode::Changelog, None, true)
            }
        },
    };
    let schema = checked_schema(spec, name, path, fields)?;
    let plan = TopPlan {
        n: top.n as usize,
        order_by,
        keys,
        with_ties: top.with_ties,
        mode,
        time: input.time,
    };
    Ok((Operator::Top(plan), schema, time, changelog))
}

/// The late side output of the windowed operator at `window_index`, reading rows of its input.
pub(super) fn late_output(plan: &Plan, window_index: usize, named: &Named) -> PlanOperator {
    let window = &plan.operators[window_index];
    let input = window.inputs[0];
    PlanOperator {
        name: named.name.clone(),
        inputs: vec![Input::Operator(window_index)],
        op: Operator::Late,
        schema: plan.schema_of(input).clone(),
        time: plan.time_of(input),
        changelog: false,
    }
}

/// The index of `window_end` when `keys` group a windowed input by its window.
fn input_window_end(input: &InputInfo<'_>, keys: &[Expr]) -> Option<usize> {
    let time = input.time?;
    let field = &input.schema.fields()[time.field];
    let by_window = keys.iter().any(|k| k.field_index() == Some(time.field));
    (field.name == "window_end" && time.offset_ms == -1 && by_window).then_some(time.field)
}

fn refuse_changelog(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    input: &InputInfo<'_>,
) -> Result<(), SpecError> {
    if !input.changelog {
        return Ok(());
    }
    Err(spec.error_at(
        name,
        path,
        format!(
            "`{}` is a changelog (its rows are updates, with an `op` field); windows, aggregates and top need an append-only input",
            input.name
        ),
    ))
}

fn plan_window(
    spec: &PipelineSpec,
    window: &WindowSpec,
    input: &InputInfo<'_>,
    late_index: Option<usize>,
) -> Result<WindowPlan, SpecError> {
    if window.time == TimeDomain::Event && input.time.is_none() {
        let named = Named {
            name: String::new(),
            pos: window.pos,
        };
        return Err(spec.error_at(
            &named,
            &window.path,
            format!(
                "an event-time window needs event time, but `{}` has none: set `event_time` on the source and keep that field through projections, or use `time: processing`",
                input.name
            ),
        ));
    }
    Ok(WindowPlan {
        kind: window.kind,
        time: window.time,
        allowed_lateness_ms: window.allowed_lateness_ms,
        late_output: late_index,
    })
}

fn window_fields() -> [Field; 2] {
    [
        Field::new("window_start", DataType::Timestamp),
        Field::new("window_end", DataType::Timestamp),
    ]
}

fn compile(spec: &PipelineSpec, text: &ExprText, schema: &Schema) -> Result<Expr, SpecError> {
    expr::compile(&text.text, schema).map_err(|err| spec.expr_error(text, err.offset, err.message))
}

/// Compiled keys and their output fields; a key that is not a bare field needs a name.
fn plan_keys(
    spec: &PipelineSpec,
    keys: &[GroupKey],
    schema: &Schema,
) -> Result<(Vec<Expr>, Vec<Field>), SpecError> {
    let mut exprs = Vec::with_capacity(keys.len());
    let mut fields = Vec::with_capacity(keys.len());
    for key in keys {
        let expr = match compile(spec, &key.expr, schema) {
            Ok(expr) => expr,
            Err(err) if key.name.is_none() && schema.index_of(key.expr.text.trim()).is_none() => {
                let message = if is_identifier(&key.expr.text) {
                    unknown_field(key.expr.text.trim(), schema)
                } else {
                    err.message
                };
                return Err(spec.expr_error(&key.expr, 0, message));
            }
            Err(err) => return Err(err),
        };
        let field = match (&key.name, expr.field_index()) {
            (Some(named), _) => output_field(named, &expr),
            (None, Some(index)) => schema.fields()[index].clone(),
            (None, None) => {
                return Err(spec.expr_error(
                    &key.expr,
                    0,
                    "a computed group key needs a name: write group_by as a mapping, like `{day: day(date_time)}`".to_string(),
                ))
            }
        };
        fields.push(field);
        exprs.push(expr);
    }
    Ok((exprs, fields))
}

fn is_identifier(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn checked_schema(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    fields: Vec<Field>,
) -> Result<Schema, SpecError> {
    for (i, field) in fields.iter().enumerate() {
        if fields[..i].iter().any(|f| f.name == field.name) {
            return Err(spec.error_at(
                name,
                path,
                format!(
                    "the output of `{}` would have two fields named `{}`; rename one",
                    name.name, field.name
                ),
            ));
        }
    }
    Ok(Schema::new(fields))
}
