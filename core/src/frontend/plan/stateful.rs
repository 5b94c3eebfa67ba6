//! Planning of the stateful operators (`aggregate`, `top`) and their late side outputs: keys
//! and aggregates type-checked against the input, output schemas derived, and the event-time
//! attribute and changelog flag carried from node to node.

use super::{output_field, unknown_field, Input, Operator, Plan, PlanOperator};
use crate::frontend::expr::{self, Expr};
use crate::frontend::spec::{
    AggregateSpec, ExprText, GroupKey, JoinSpec, LookupSpec, Named, PipelineSpec, ProcessSpec,
    SpecError, TopSpec, WindowSpec,
};
use crate::operator::agg::{self, AggCall};
use crate::record::schema::{DataType, Field, Schema};
use crate::time::window::{TimeAttr, TimeDomain, WindowKind, WindowPlan};

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
    /// Whether the input is a changelog whose `-U`/`-D` rows retract earlier ones.
    pub retracting: bool,
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
    /// Each core keeps the top of the rows it already has, without an exchange (the local
    /// step of a two-step top).
    pub per_core: bool,
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

/// A checked `join`.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// Key expressions over the left input.
    pub left_keys: Vec<Expr>,
    /// Key expressions over the right input.
    pub right_keys: Vec<Expr>,
    /// Which join.
    pub kind: JoinKind,
    /// The left input's event-time attribute.
    pub left_time: Option<TimeAttr>,
    /// The right input's event-time attribute.
    pub right_time: Option<TimeAttr>,
    /// Per input (left, right), which of its fields some consumer of the output reads, when
    /// not all: the others are stored and emitted as NULL (set by the planner's column
    /// pruning, `plan::prune`).
    pub keep: Option<[Vec<bool>; 2]>,
}

/// How long joined rows are kept and which pairs match.
#[derive(Debug, Clone)]
pub enum JoinKind {
    /// Every pair with equal keys; rows kept for `retention_ms` of event time, or forever.
    Regular {
        /// How long a row waits for partners, if bounded.
        retention_ms: Option<i64>,
    },
    /// Pairs whose right event time lies in `[lower, upper]` of the left row.
    Interval {
        /// Lower bound, over the left row.
        lower: Expr,
        /// Upper bound, over the left row.
        upper: Expr,
    },
    /// Both inputs are window results joined on their `window_end`: rows of a window are
    /// dropped once the watermark closes it.
    Window {
        /// Index of `window_end` in the left input.
        left_end: usize,
        /// Index of `window_end` in the right input.
        right_end: usize,
    },
}

/// A checked `lookup`: the table is loaded by the data plane when the pipeline starts.
#[derive(Debug, Clone)]
pub struct LookupPlan {
    /// The table's file.
    pub path: std::path::PathBuf,
    /// Its text format.
    pub format: crate::frontend::spec::FileFormat,
    /// Its schema.
    pub table_schema: Schema,
    /// CSV: the first line is a header.
    pub csv_header: bool,
    /// Key expressions over the input row.
    pub keys: Vec<Expr>,
    /// The table fields (indices) the keys must equal.
    pub table_keys: Vec<usize>,
}

/// A checked `process`: a registered user operator with its keys and config.
#[derive(Clone)]
pub struct ProcessPlan {
    /// The registered name.
    pub function: String,
    /// Builds one instance (each core makes its own).
    pub factory: crate::operator::process::ProcessFactory,
    /// Group keys over the input.
    pub keys: Vec<Expr>,
    /// The key fields as the function sees them.
    pub key_fields: Vec<Field>,
    /// The config written in the pipeline file.
    pub config: crate::operator::process::ProcessConfig,
    /// The input's schema.
    pub input: Schema,
    /// The input's event-time attribute.
    pub time: Option<TimeAttr>,
    /// Whether the input is an update stream (only for a function that reads one).
    pub changelog: bool,
}

impl std::fmt::Debug for ProcessPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPlan")
            .field("function", &self.function)
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ProcessPlan {
    /// A new instance of the function, for one core.
    pub fn instantiate(
        &self,
    ) -> Result<
        Box<dyn crate::operator::process::KeyedProcess>,
        crate::operator::process::ProcessError,
    > {
        let cx = crate::operator::process::ProcessContext {
            input: &self.input,
            keys: &self.key_fields,
            config: &self.config,
            changelog: self.changelog,
        };
        (self.factory)(&cx)
    }
}

/// What the stateful planner needs from the node it reads.
pub(super) struct InputInfo<'a> {
    pub(super) schema: &'a Schema,
    pub(super) time: Option<TimeAttr>,
    pub(super) changelog: bool,
    /// The change-stream source whose `+U` rows come without a `-U` (see `Plan::upserts_of`).
    pub(super) upserts: Option<&'a str>,
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
    if input.changelog && aggregate.window.is_some() {
        refuse_changelog(spec, name, path, input)?;
    }
    refuse_upserts(spec, name, path, input)?;
    let (keys, mut fields) = plan_keys(spec, &aggregate.group_by, input.schema)?;
    let window = match &aggregate.window {
        Some(window) => Some(plan_window(spec, window, input, late_index)?),
        None => None,
    };
    let mut aggregates = Vec::with_capacity(aggregate.aggregates.len());
    for (named, text) in &aggregate.aggregates {
        let call = agg::compile(&text.text, input.schema)
            .map_err(|err| spec.expr_error(text, err.offset, err.message))?;
        if input.changelog && !call.is_retractable() {
            return Err(spec.expr_error(
                text,
                0,
                format!(
                    "`{}` reads a changelog, whose retractions only count, sum and avg can take back; {} cannot",
                    input.name,
                    call.kind().name()
                ),
            ));
        }
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
        retracting: input.changelog,
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
        per_core: false,
    };
    Ok((Operator::Top(plan), schema, time, changelog))
}

pub(super) fn plan_join(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    left: &InputInfo<'_>,
    right: &InputInfo<'_>,
    join: &JoinSpec,
) -> Result<(Operator, Schema, Option<TimeAttr>, bool), SpecError> {
    refuse_changelog(spec, name, path, left)?;
    refuse_changelog(spec, name, path, right)?;
    if left.name == right.name {
        return Err(spec.error_at(
            name,
            path,
            "a join of an input with itself is not supported; read it twice through two operators"
                .to_string(),
        ));
    }
    let (left_keys, right_keys) = join_keys(spec, left, right, join)?;
    let kind = join_kind(spec, name, path, left, right, join, &left_keys, &right_keys)?;
    let prefix = join
        .right_prefix
        .clone()
        .unwrap_or_else(|| format!("{}_", right.name));
    let mut fields: Vec<Field> = left.schema.fields().to_vec();
    for field in right.schema.fields() {
        let mut field = field.clone();
        if left.schema.index_of(&field.name).is_some() {
            field.name = format!("{prefix}{}", field.name);
        }
        fields.push(field);
    }
    let left_len = left.schema.len();
    let time = match &kind {
        JoinKind::Window { .. } => left.time,
        JoinKind::Interval { .. } => right.time.map(|t| TimeAttr {
            field: t.field + left_len,
            ..t
        }),
        JoinKind::Regular { .. } => None,
    };
    let schema = checked_schema(spec, name, path, fields)?;
    let plan = JoinPlan {
        left_keys,
        right_keys,
        kind,
        left_time: left.time,
        right_time: right.time,
        keep: None,
    };
    Ok((Operator::Join(plan), schema, time, false))
}

/// The left and the right join keys, compiled; they pair up by type.
fn join_keys(
    spec: &PipelineSpec,
    left: &InputInfo<'_>,
    right: &InputInfo<'_>,
    join: &JoinSpec,
) -> Result<(Vec<Expr>, Vec<Expr>), SpecError> {
    let left_keys = join
        .left_key
        .iter()
        .map(|text| compile(spec, text, left.schema))
        .collect::<Result<Vec<_>, _>>()?;
    let right_keys = join
        .right_key
        .iter()
        .map(|text| compile(spec, text, right.schema))
        .collect::<Result<Vec<_>, _>>()?;
    for ((l, r), text) in left_keys.iter().zip(&right_keys).zip(&join.right_key) {
        if l.data_type() != r.data_type() {
            return Err(spec.expr_error(
                text,
                0,
                format!(
                    "join keys pair up by type: left key `{}` is {} but this right key is {}; CAST one of them",
                    l.source(),
                    l.data_type(),
                    r.data_type()
                ),
            ));
        }
    }
    Ok((left_keys, right_keys))
}

#[allow(clippy::too_many_arguments)]
fn join_kind(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    left: &InputInfo<'_>,
    right: &InputInfo<'_>,
    join: &JoinSpec,
    left_keys: &[Expr],
    right_keys: &[Expr],
) -> Result<JoinKind, SpecError> {
    if let Some((lower, upper)) = &join.between {
        let lower = compile(spec, lower, left.schema)?;
        let upper = compile(spec, upper, left.schema)?;
        for (bound, text) in [
            (&lower, &join.between.as_ref().map(|b| &b.0)),
            (&upper, &join.between.as_ref().map(|b| &b.1)),
        ] {
            if !matches!(bound.data_type(), DataType::Timestamp | DataType::I64) {
                let text = text.expect("between is present");
                return Err(spec.expr_error(
                    text,
                    0,
                    format!(
                        "an interval bound must be a timestamp or i64, found {}",
                        bound.data_type()
                    ),
                ));
            }
        }
        if right.time.is_none() {
            return Err(spec.error_at(
                name,
                path,
                format!(
                    "an interval join needs event time on its right input, but `{}` has none",
                    right.name
                ),
            ));
        }
        return Ok(JoinKind::Interval { lower, upper });
    }
    let window_ends = input_window_end(left, left_keys).zip(input_window_end(right, right_keys));
    if let Some((left_end, right_end)) = window_ends {
        let paired = left_keys
            .iter()
            .zip(right_keys)
            .any(|(l, r)| l.field_index() == Some(left_end) && r.field_index() == Some(right_end));
        if paired {
            return Ok(JoinKind::Window {
                left_end,
                right_end,
            });
        }
    }
    Ok(JoinKind::Regular {
        retention_ms: join.retention_ms,
    })
}

pub(super) fn plan_lookup(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    input: &InputInfo<'_>,
    lookup: &LookupSpec,
) -> Result<(Operator, Schema), SpecError> {
    let keys = lookup
        .key
        .iter()
        .map(|text| compile(spec, text, input.schema))
        .collect::<Result<Vec<_>, _>>()?;
    let table = &lookup.schema;
    let mut table_keys = Vec::with_capacity(keys.len());
    for (named, key) in lookup.table_key.iter().zip(&keys) {
        let Some(index) = table.index_of(&named.name) else {
            return Err(spec.error_at(
                named,
                &format!("{path}.lookup.table_key"),
                unknown_field(&named.name, table),
            ));
        };
        let field_type = table.fields()[index].data_type;
        if field_type != key.data_type() {
            return Err(spec.error_at(
                named,
                &format!("{path}.lookup.table_key"),
                format!(
                    "table field `{}` is {field_type} but its key `{}` is {}; CAST the key",
                    named.name,
                    key.source(),
                    key.data_type()
                ),
            ));
        }
        table_keys.push(index);
    }
    let prefix = lookup
        .right_prefix
        .clone()
        .unwrap_or_else(|| "lookup_".to_string());
    let mut fields: Vec<Field> = input.schema.fields().to_vec();
    for field in table.fields() {
        let mut field = field.clone();
        if input.schema.index_of(&field.name).is_some() {
            field.name = format!("{prefix}{}", field.name);
        }
        fields.push(field);
    }
    let schema = checked_schema(spec, name, path, fields)?;
    let plan = LookupPlan {
        path: lookup.path.clone(),
        format: lookup.format,
        table_schema: table.clone(),
        csv_header: lookup.csv_header,
        keys,
        table_keys,
    };
    Ok((Operator::Lookup(plan), schema))
}

pub(super) fn plan_process(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    input: &InputInfo<'_>,
    process: &ProcessSpec,
) -> Result<(Operator, Schema), SpecError> {
    let function_path = format!("{path}.process.function");
    let factory = crate::operator::process::lookup(&process.function.name)
        .map_err(|err| spec.error_at(&process.function, &function_path, err.to_string()))?;
    let (keys, key_fields) = plan_keys(spec, &process.group_by, input.schema)?;
    let config: crate::operator::process::ProcessConfig = process
        .config
        .iter()
        .map(|(named, value)| (named.name.clone(), value.clone()))
        .collect();
    let plan = ProcessPlan {
        function: process.function.name.clone(),
        factory,
        keys,
        key_fields,
        config,
        input: input.schema.clone(),
        time: input.time,
        changelog: input.changelog,
    };
    let instance = plan.instantiate().map_err(|err| {
        let at = match &err {
            crate::operator::process::ProcessError::Config { key, .. } => process
                .config
                .iter()
                .find(|(named, _)| named.name == *key)
                .map_or(&process.function, |(named, _)| named),
            _ => &process.function,
        };
        spec.error_at(at, &format!("{path}.process"), err.to_string())
    })?;
    if !instance.reads_changelog() {
        refuse_changelog(spec, name, path, input)?;
    }
    refuse_upserts(spec, name, path, input)?;
    let schema = checked_schema(spec, name, path, instance.output_schema().fields().to_vec())?;
    Ok((Operator::Process(plan), schema))
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

/// Refuses an input whose updates cannot be taken back (a change stream's `+U` rows).
fn refuse_upserts(
    spec: &PipelineSpec,
    name: &Named,
    path: &str,
    input: &InputInfo<'_>,
) -> Result<(), SpecError> {
    match input.upserts {
        None => Ok(()),
        Some(source) => {
            let message = format!(
                "`{}` carries the change stream of source `{source}`, whose updates (`+U`) come without the row they replace, so an aggregate cannot take it back; write it to an upsert sink and aggregate there",
                input.name
            );
            Err(spec.error_at(name, path, message))
        }
    }
}

/// Refuses a changelog input where only appends can go.
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
