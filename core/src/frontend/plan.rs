//! The logical plan: a pipeline spec with names resolved, schemas inferred and every
//! expression type-checked, before anything runs.
//!
//! [`Plan::from_spec`] is the single gate between a user's file and the data plane: a plan
//! that exists is one the runtime can execute. Operators are kept in topological order.

mod prune;
mod stateful;

pub use stateful::{
    AggregatePlan, JoinKind, JoinPlan, LookupPlan, ProcessPlan, TopMode, TopPlan, CHANGE_KINDS,
    OP_FIELD,
};

use crate::frontend::expr::{self, Expr};
use crate::frontend::spec::{
    closest, ExprText, MongoRead, Named, OperatorKind, PipelineSpec, Settings, SinkKind,
    SourceKind, SpecError,
};
use crate::nexmark::{self, EventKind};
use crate::record::schema::{DataType, Field, Schema};
use crate::time::watermark::WatermarkSpec;
use crate::time::window::TimeAttr;
use stateful::InputInfo;

/// A checked pipeline.
#[derive(Debug)]
pub struct Plan {
    /// The pipeline's name.
    pub name: String,
    /// Pipeline-wide settings.
    pub settings: Settings,
    /// Sources, in file order.
    pub sources: Vec<PlanSource>,
    /// Operators in topological order: every input comes before its consumers.
    pub operators: Vec<PlanOperator>,
    /// Sinks, in file order.
    pub sinks: Vec<PlanSink>,
}

/// Where an operator or sink reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// `plan.sources[i]`.
    Source(usize),
    /// `plan.operators[i]`.
    Operator(usize),
}

/// A source with its schema.
#[derive(Debug)]
pub struct PlanSource {
    /// Its name.
    pub name: String,
    /// Its configuration.
    pub kind: SourceKind,
    /// The rows it emits.
    pub schema: Schema,
    /// Index of the event-time field, if it has one.
    pub event_time: Option<usize>,
    /// The event-time attribute of its rows.
    pub time: Option<TimeAttr>,
    /// How it generates watermarks.
    pub watermark: WatermarkSpec,
    /// `event_time:` as an expression (not a field): watermarks follow it, and the operator
    /// `<source>.event_time` right after the source appends it as a field.
    pub time_expr: Option<Expr>,
}

impl PlanSource {
    /// Whether its rows are changes (a leading `op` field): a MongoDB change stream's are.
    pub fn changelog(&self) -> bool {
        matches!(&self.kind, SourceKind::Mongodb(mongo) if mongo.mode == MongoRead::ChangeStream)
    }
}

/// An operator with its checked expressions and output schema.
#[derive(Debug)]
pub struct PlanOperator {
    /// Its name.
    pub name: String,
    /// Its inputs (one, or several for a union).
    pub inputs: Vec<Input>,
    /// What it computes.
    pub op: Operator,
    /// The rows it emits.
    pub schema: Schema,
    /// Where its rows' event time is, if they have one.
    pub time: Option<TimeAttr>,
    /// Whether its rows are changes (a leading `op` field) rather than appends.
    pub changelog: bool,
}

/// A checked operator.
#[derive(Debug)]
#[non_exhaustive]
pub enum Operator {
    /// Keeps rows for which the predicate is true.
    Filter(Expr),
    /// Emits one row of these expressions per input row (`map` and `project` both lower here).
    Project(Vec<Expr>),
    /// Routes rows by the hash of these keys; rows are unchanged.
    KeyBy(Vec<Expr>),
    /// Merges its inputs; rows are unchanged.
    Union,
    /// Group aggregation, windowed or unbounded.
    Aggregate(AggregatePlan),
    /// The first n rows per group.
    Top(TopPlan),
    /// Rows of two inputs with equal keys.
    Join(JoinPlan),
    /// Rows joined with a static table (stateless: the table never changes).
    Lookup(LookupPlan),
    /// A user-written keyed operator.
    Process(ProcessPlan),
    /// The late rows of the windowed operator that is its input (a side output).
    Late,
}

impl Operator {
    /// Whether the operator keeps state and heads a task of its own.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            Operator::Aggregate(_) | Operator::Top(_) | Operator::Join(_) | Operator::Process(_)
        )
    }

    /// The keys a stateful operator needs its input `port` (0, or 1 for a join's right)
    /// partitioned by; `None` when rows stay on their core.
    pub fn group_keys(&self, port: usize) -> Option<&[Expr]> {
        match self {
            Operator::Top(plan) if plan.per_core => None,
            Operator::Aggregate(plan) => Some(&plan.keys),
            Operator::Top(plan) => Some(&plan.keys),
            Operator::Process(plan) => Some(&plan.keys),
            Operator::Join(plan) if port == 0 => Some(&plan.left_keys),
            Operator::Join(plan) => Some(&plan.right_keys),
            _ => None,
        }
    }
}

/// A sink with the schema of what it receives.
#[derive(Debug)]
pub struct PlanSink {
    /// Its name.
    pub name: String,
    /// What it consumes.
    pub input: Input,
    /// Where rows go.
    pub kind: SinkKind,
    /// The rows it receives.
    pub schema: Schema,
    /// A file sink's `partition_by`, compiled against `schema`.
    pub partition_by: Option<Expr>,
    /// A Kafka sink's `key` and `value` (an Elasticsearch sink's `id` as the key), compiled
    /// against `schema`.
    pub record: Option<RecordExprs>,
    /// A PostgreSQL sink's columns (an Elasticsearch sink's document fields) and the
    /// expressions that fill them, compiled against `schema`; empty for other sinks.
    pub columns: Vec<(String, Expr)>,
}

/// The expressions a Kafka sink makes its records of.
#[derive(Debug, Clone)]
pub struct RecordExprs {
    /// The record key; none when absent.
    pub key: Option<Expr>,
    /// The record value; the whole row when absent.
    pub value: Option<Expr>,
}

impl Plan {
    /// Resolves, infers and type-checks `spec`.
    pub fn from_spec(spec: &PipelineSpec) -> Result<Plan, SpecError> {
        check_unique_names(spec)?;
        let sources = spec
            .sources
            .iter()
            .map(|source| plan_source(spec, source))
            .collect::<Result<Vec<_>, _>>()?;
        let order = topological_order(spec)?;
        let mut plan = Plan {
            name: spec.name.clone(),
            settings: spec.settings.clone(),
            sources,
            operators: Vec::with_capacity(order.len()),
            sinks: Vec::with_capacity(spec.sinks.len()),
        };
        let mut placed: Vec<(String, Input)> = plan
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), Input::Source(i)))
            .collect();
        // A source whose event time is an expression is read through an operator that
        // appends it; everything naming the source reads that operator.
        for (index, place) in placed.iter_mut().enumerate() {
            if let Some(operator) = event_time_operator(&plan, index) {
                place.1 = Input::Operator(plan.operators.len());
                plan.operators.push(operator);
            }
        }
        for index in order {
            let operator = plan_operator(spec, &plan, &placed, index)?;
            let at = plan.operators.len();
            placed.push((operator.name.clone(), Input::Operator(at)));
            plan.operators.push(operator);
            if let Some(named) = late_output_of(&spec.operators[index].kind) {
                let late = stateful::late_output(&plan, at, named);
                placed.push((late.name.clone(), Input::Operator(at + 1)));
                plan.operators.push(late);
            }
        }
        for sink in &spec.sinks {
            let path = format!("sinks.{}.from", sink.name.name);
            let input = resolve(spec, &placed, &sink.input, &path)?;
            let schema = plan.schema_of(input).clone();
            let partition_by = sink_partition(spec, &sink.kind, &schema)?;
            let record = sink_record(spec, &sink.kind, &schema)?;
            let columns = sink_columns(spec, sink, &schema)?;
            plan.sinks.push(PlanSink {
                name: sink.name.name.clone(),
                input,
                kind: sink.kind.clone(),
                schema,
                partition_by,
                record,
                columns,
            });
        }
        prune::prune_joins(&mut plan);
        Ok(plan)
    }

    /// Which fields of the rows entering operator `consumer` on input `port` it reads (with
    /// what reads its output), or `None` for all: an exchange into it carries only those,
    /// the others as NULL.
    pub fn exchange_keep(&self, consumer: usize, port: usize) -> Option<Vec<bool>> {
        prune::exchange_keep(self, consumer, port)
    }

    /// Which fields of source `source`'s rows some consumer reads, or `None` for all: the
    /// source may leave the others NULL.
    pub fn source_keep(&self, source: usize) -> Option<Vec<bool>> {
        prune::source_keep(self, source)
    }

    /// The schema of the rows `input` emits.
    pub fn schema_of(&self, input: Input) -> &Schema {
        match input {
            Input::Source(i) => &self.sources[i].schema,
            Input::Operator(i) => &self.operators[i].schema,
        }
    }

    /// The event-time attribute of `input`'s rows.
    pub fn time_of(&self, input: Input) -> Option<TimeAttr> {
        match input {
            Input::Source(i) => self.sources[i].time,
            Input::Operator(i) => self.operators[i].time,
        }
    }

    /// Whether `input` emits a changelog.
    pub fn changelog_of(&self, input: Input) -> bool {
        match input {
            Input::Source(i) => self.sources[i].changelog(),
            Input::Operator(i) => self.operators[i].changelog,
        }
    }

    /// The source whose change stream `input`'s rows are, when they come from one through
    /// stateless operators only: its updates are `+U` rows without the `-U` of what they
    /// replace, which an upsert by key applies but an aggregate cannot take back.
    pub fn upserts_of(&self, input: Input) -> Option<&str> {
        match input {
            Input::Source(i) => self.sources[i]
                .changelog()
                .then_some(self.sources[i].name.as_str()),
            Input::Operator(i) => {
                let operator = &self.operators[i];
                let stateless = matches!(
                    operator.op,
                    Operator::Filter(_)
                        | Operator::Project(_)
                        | Operator::KeyBy(_)
                        | Operator::Union
                        | Operator::Lookup(_)
                );
                if !stateless || !operator.changelog {
                    return None;
                }
                operator.inputs.iter().find_map(|at| self.upserts_of(*at))
            }
        }
    }

    /// What planning an operator reads of its input `input`.
    fn input_info(&self, input: Input) -> InputInfo<'_> {
        InputInfo {
            schema: self.schema_of(input),
            time: self.time_of(input),
            changelog: self.changelog_of(input),
            upserts: self.upserts_of(input),
            name: self.name_of(input),
        }
    }

    /// The name of `input`.
    pub fn name_of(&self, input: Input) -> &str {
        match input {
            Input::Source(i) => &self.sources[i].name,
            Input::Operator(i) => &self.operators[i].name,
        }
    }
}

/// Compiles a file sink's `partition_by` against the schema the sink receives; any type will
/// do, since the sink uses the value's text form.
fn sink_partition(
    spec: &PipelineSpec,
    kind: &SinkKind,
    schema: &Schema,
) -> Result<Option<Expr>, SpecError> {
    let SinkKind::File(file) = kind else {
        return Ok(None);
    };
    let Some(text) = &file.partition_by else {
        return Ok(None);
    };
    expr::compile(&text.text, schema)
        .map(Some)
        .map_err(|err| spec.expr_error(text, err.offset, err.message))
}

/// Compiles a Kafka sink's `key` and `value` against the schema the sink receives; any type
/// will do (strings and bytes are written as they are, other values as their text).
fn sink_record(
    spec: &PipelineSpec,
    kind: &SinkKind,
    schema: &Schema,
) -> Result<Option<RecordExprs>, SpecError> {
    let compile = |text: &Option<ExprText>| -> Result<Option<Expr>, SpecError> {
        match text {
            None => Ok(None),
            Some(text) => expr::compile(&text.text, schema)
                .map(Some)
                .map_err(|err| spec.expr_error(text, err.offset, err.message)),
        }
    };
    match kind {
        SinkKind::Kafka(kafka) => Ok(Some(RecordExprs {
            key: compile(&kafka.key)?,
            value: compile(&kafka.value)?,
        })),
        // An Elasticsearch sink's document id is its record key.
        SinkKind::Elasticsearch(es) => Ok(Some(RecordExprs {
            key: compile(&es.id)?,
            value: None,
        })),
        _ => Ok(None),
    }
}

/// Compiles a PostgreSQL sink's `columns` (an Elasticsearch sink's `document`) against the schema the sink receives (every field
/// under its own name when none are listed, without `op` in upsert mode), and checks that its
/// `key` names columns.
fn sink_columns(
    spec: &PipelineSpec,
    sink: &crate::frontend::spec::SinkSpec,
    schema: &Schema,
) -> Result<Vec<(String, Expr)>, SpecError> {
    use crate::frontend::spec::PostgresMode;
    let (listed, upsert, key) = match &sink.kind {
        SinkKind::Postgres(pg) => (&pg.columns, pg.mode == PostgresMode::Upsert, &pg.key),
        // A document's fields; an update stream's `op` only says what to do with it.
        SinkKind::Elasticsearch(es) => (&es.document, true, &Vec::new()),
        // A MongoDB sink's `_id` is made of `key`, which must name fields of the document.
        SinkKind::Mongodb(mongo) => (&mongo.document, true, &mongo.key),
        _ => return Ok(Vec::new()),
    };
    let path = format!("sinks.{}", sink.name.name);
    if let SinkKind::Mongodb(mongo) = &sink.kind {
        let update_stream = schema.fields().iter().any(|f| f.name == OP_FIELD);
        if update_stream && mongo.mode != crate::frontend::spec::MongoMode::Upsert {
            let message = "an update stream needs `mode: upsert` with `key`: a `-D` row deletes the document of its `_id`";
            return Err(spec.error_at(&sink.name, &path, message.to_string()));
        }
    }
    if let SinkKind::Elasticsearch(es) = &sink.kind {
        if es.id.is_none() && schema.fields().iter().any(|f| f.name == OP_FIELD) {
            let message = "an update stream needs `id`: a `-D` row deletes the document of its id";
            return Err(spec.error_at(&sink.name, &path, message.to_string()));
        }
    }
    let mut columns = Vec::new();
    for (column, text) in listed {
        let compiled = expr::compile(&text.text, schema)
            .map_err(|err| spec.expr_error(text, err.offset, err.message))?;
        columns.push((column.clone(), compiled));
    }
    if listed.is_empty() {
        for field in schema.fields() {
            if upsert && field.name == OP_FIELD {
                continue;
            }
            let compiled = expr::compile(&field.name, schema).map_err(|_| {
                let message = format!("field `{}` needs a column: list `columns`", field.name);
                spec.error_at(&sink.name, &path, message)
            })?;
            columns.push((field.name.clone(), compiled));
        }
    }
    for key in key {
        if !columns.iter().any(|(column, _)| column == key) {
            let fields: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            let message = format!("key `{key}` is not a column; the columns are {fields:?}");
            return Err(spec.error_at(&sink.name, &format!("{path}.key"), message));
        }
    }
    Ok(columns)
}

fn check_unique_names(spec: &PipelineSpec) -> Result<(), SpecError> {
    let mut seen: Vec<&str> = Vec::new();
    let all = spec
        .sources
        .iter()
        .map(|s| (&s.name, "sources"))
        .chain(spec.operators.iter().map(|o| (&o.name, "operators")))
        .chain(
            spec.operators
                .iter()
                .filter_map(|o| late_output_of(&o.kind).map(|n| (n, "operators"))),
        )
        .chain(spec.sinks.iter().map(|s| (&s.name, "sinks")));
    for (named, section) in all {
        if seen.contains(&named.name.as_str()) {
            return Err(spec.error_at(
                named,
                section,
                format!(
                    "the name `{}` is used twice; sources, operators and sinks share one namespace",
                    named.name
                ),
            ));
        }
        seen.push(&named.name);
    }
    Ok(())
}

fn plan_source(
    spec: &PipelineSpec,
    source: &crate::frontend::spec::SourceSpec,
) -> Result<PlanSource, SpecError> {
    let (schema, event_time) = match &source.kind {
        SourceKind::Nexmark(nexmark) => {
            let schema = match nexmark.stream {
                EventKind::Bid => nexmark::bid_schema(),
                EventKind::Auction => nexmark::auction_schema(),
                EventKind::Person => nexmark::person_schema(),
            };
            let time = match schema.index_of("date_time") {
                Some(index) => SourceTime::Field(index),
                None => SourceTime::None,
            };
            (schema, time)
        }
        SourceKind::File(file) => {
            let time = event_time_index(spec, &source.name, &file.schema, &file.event_time)?;
            (file.schema.clone(), time)
        }
        SourceKind::Ingest(ingest) => {
            let time = event_time_index(spec, &source.name, &ingest.schema, &ingest.event_time)?;
            (ingest.schema.clone(), time)
        }
        SourceKind::Kafka(kafka) => {
            let time = event_time_index(spec, &source.name, &kafka.schema, &kafka.event_time)?;
            (kafka.schema.clone(), time)
        }
        SourceKind::Mongodb(mongo) => {
            let schema = match mongo.mode {
                MongoRead::Scan => mongo.schema.clone(),
                MongoRead::ChangeStream => change_stream_schema(&mongo.schema, &mongo.event_time),
            };
            let time = event_time_index(spec, &source.name, &schema, &mongo.event_time)?;
            (schema, time)
        }
    };
    let (event_time, time_expr) = match event_time {
        SourceTime::None => (None, None),
        SourceTime::Field(index) => (Some(index), None),
        SourceTime::Expr(expr) => (None, Some(expr)),
    };
    Ok(PlanSource {
        name: source.name.name.clone(),
        kind: source.kind.clone(),
        schema,
        event_time,
        time: event_time.map(|field| TimeAttr {
            field,
            offset_ms: 0,
        }),
        watermark: source.watermark,
        time_expr,
    })
}

/// The rows of a MongoDB change stream: the change kind (`op`) first, then the schema's
/// fields, nullable except `_id` and the event-time field (a `-D` row has only those).
fn change_stream_schema(schema: &Schema, event_time: &Option<Named>) -> Schema {
    let mut fields = vec![Field::new(OP_FIELD, DataType::String)];
    fields.extend(schema.fields().iter().map(|field| {
        let kept =
            field.name == "_id" || event_time.as_ref().is_some_and(|at| at.name == field.name);
        Field {
            nullable: field.nullable || !kept,
            ..field.clone()
        }
    }));
    Schema::new(fields)
}

/// The operator that appends source `index`'s computed event time (as `event_time`, or
/// `<source>_event_time` when the source has an `event_time` field), if it has one.
fn event_time_operator(plan: &Plan, index: usize) -> Option<PlanOperator> {
    let source = &plan.sources[index];
    let time = source.time_expr.clone()?;
    let mut exprs: Vec<Expr> = (0..source.schema.len())
        .map(|i| {
            let name = &source.schema.fields()[i].name;
            expr::compile(&format!("`{}`", name.replace('`', "")), &source.schema)
                .expect("a field of the schema compiles")
        })
        .collect();
    let name = if source.schema.index_of("event_time").is_some() {
        format!("{}_event_time", source.name)
    } else {
        "event_time".to_string()
    };
    let mut fields = source.schema.fields().to_vec();
    fields.push(Field {
        name,
        data_type: time.data_type(),
        nullable: time.nullable(),
    });
    exprs.push(time);
    Some(PlanOperator {
        name: format!("{}.event_time", source.name),
        inputs: vec![Input::Source(index)],
        op: Operator::Project(exprs),
        schema: Schema::new(fields),
        time: Some(TimeAttr {
            field: source.schema.len(),
            offset_ms: 0,
        }),
        changelog: source.changelog(),
    })
}

/// The event time of a source: a field index, or an expression over its rows.
enum SourceTime {
    None,
    Field(usize),
    Expr(Expr),
}

fn event_time_index(
    spec: &PipelineSpec,
    source: &Named,
    schema: &Schema,
    event_time: &Option<Named>,
) -> Result<SourceTime, SpecError> {
    let Some(field) = event_time else {
        return Ok(SourceTime::None);
    };
    let path = format!("sources.{}.event_time", source.name);
    let Some(index) = schema.index_of(&field.name) else {
        let is_name = field.name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if is_name {
            return Err(spec.error_at(field, &path, unknown_field(&field.name, schema)));
        }
        let expr = expr::compile(&field.name, schema)
            .map_err(|err| spec.error_at(field, &path, format!("event_time: {err}")))?;
        if !matches!(expr.data_type(), DataType::Timestamp | DataType::I64) {
            return Err(spec.error_at(
                field,
                &path,
                format!(
                    "event_time must be a timestamp or i64, found {}",
                    expr.data_type()
                ),
            ));
        }
        return Ok(SourceTime::Expr(expr));
    };
    match schema.fields()[index].data_type {
        DataType::Timestamp | DataType::I64 => Ok(SourceTime::Field(index)),
        other => Err(spec.error_at(
            field,
            &path,
            format!(
                "event_time field `{}` must be a timestamp or i64, found {other}",
                field.name
            ),
        )),
    }
}

fn unknown_field(name: &str, schema: &Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
    let hint = closest(name, &names)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    format!(
        "unknown field `{name}`{hint} (fields are: {})",
        names.join(", ")
    )
}

/// Operator indices (into `spec.operators`) so that inputs come first; a cycle is an error.
fn topological_order(spec: &PipelineSpec) -> Result<Vec<usize>, SpecError> {
    let index_of = |name: &str| {
        spec.operators.iter().position(|o| {
            o.name.name == name || late_output_of(&o.kind).is_some_and(|n| n.name == name)
        })
    };
    let mut state = vec![0u8; spec.operators.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::with_capacity(spec.operators.len());
    fn visit(
        spec: &PipelineSpec,
        index: usize,
        state: &mut [u8],
        order: &mut Vec<usize>,
        index_of: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<(), SpecError> {
        match state[index] {
            2 => return Ok(()),
            1 => {
                let operator = &spec.operators[index];
                return Err(spec.error_at(
                    &operator.name,
                    &format!("operators[{index}]"),
                    format!("operator `{}` is part of a cycle", operator.name.name),
                ));
            }
            _ => {}
        }
        state[index] = 1;
        for input in &spec.operators[index].inputs {
            if let Some(upstream) = index_of(&input.name) {
                visit(spec, upstream, state, order, index_of)?;
            }
        }
        state[index] = 2;
        order.push(index);
        Ok(())
    }
    for index in 0..spec.operators.len() {
        visit(spec, index, &mut state, &mut order, &index_of)?;
    }
    Ok(order)
}

fn resolve(
    spec: &PipelineSpec,
    placed: &[(String, Input)],
    named: &Named,
    path: &str,
) -> Result<Input, SpecError> {
    if let Some((_, input)) = placed.iter().find(|(name, _)| *name == named.name) {
        return Ok(*input);
    }
    let names: Vec<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    let message = if spec.sinks.iter().any(|s| s.name.name == named.name) {
        format!("`{}` is a sink; sinks cannot be read from", named.name)
    } else {
        let hint = closest(&named.name, &names)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        format!(
            "unknown input `{}`{hint} (sources and operators are: {})",
            named.name,
            names.join(", ")
        )
    };
    Err(spec.error_at(named, path, message))
}

fn plan_operator(
    spec: &PipelineSpec,
    plan: &Plan,
    placed: &[(String, Input)],
    index: usize,
) -> Result<PlanOperator, SpecError> {
    let operator = &spec.operators[index];
    let path = format!("operators[{index}]");
    let inputs = operator
        .inputs
        .iter()
        .map(|named| resolve(spec, placed, named, &format!("{path}.from")))
        .collect::<Result<Vec<_>, _>>()?;
    let input = plan.input_info(inputs[0]);
    // The late output, when there is one, is placed right after this operator.
    let late_index = late_output_of(&operator.kind).map(|_| plan.operators.len() + 1);
    let (op, schema, time, changelog) = match &operator.kind {
        OperatorKind::Aggregate(aggregate) => {
            stateful::plan_aggregate(spec, &operator.name, &path, &input, aggregate, late_index)?
        }
        OperatorKind::Top(top) => {
            stateful::plan_top(spec, &operator.name, &path, &input, top, late_index)?
        }
        OperatorKind::Join(join) => {
            let right = plan.input_info(inputs[1]);
            stateful::plan_join(spec, &operator.name, &path, &input, &right, join)?
        }
        OperatorKind::Union => {
            let (op, schema) = plan_union(spec, plan, &path, operator, &inputs, input.schema)?;
            let time = inputs
                .iter()
                .map(|i| plan.time_of(*i))
                .reduce(|a, b| if a == b { a } else { None })
                .flatten();
            let changelog = inputs.iter().any(|i| plan.changelog_of(*i));
            (op, schema, time, changelog)
        }
        OperatorKind::Process(process) => {
            let (op, schema) =
                stateful::plan_process(spec, &operator.name, &path, &input, process)?;
            (op, schema, None, false)
        }
        OperatorKind::Lookup(lookup) => {
            let (op, schema) = stateful::plan_lookup(spec, &operator.name, &path, &input, lookup)?;
            (op, schema, input.time, input.changelog)
        }
        kind => {
            let (op, schema) = plan_stateless(spec, &path, operator, kind, &input)?;
            let time = carried_time(&op, input.time);
            (op, schema, time, input.changelog)
        }
    };
    Ok(PlanOperator {
        name: operator.name.name.clone(),
        inputs,
        op,
        schema,
        time,
        changelog,
    })
}

/// The late side output an operator names, if any.
fn late_output_of(kind: &OperatorKind) -> Option<&Named> {
    let window = match kind {
        OperatorKind::Aggregate(aggregate) => aggregate.window.as_ref(),
        OperatorKind::Top(top) => top.window.as_ref(),
        _ => None,
    };
    window.and_then(|w| w.late_output.as_ref())
}

/// Where the event time lands after a stateless operator: unchanged rows keep it; a projection
/// keeps it when it passes the time field through unchanged.
fn carried_time(op: &Operator, time: Option<TimeAttr>) -> Option<TimeAttr> {
    let time = time?;
    match op {
        Operator::Project(exprs) => exprs
            .iter()
            .position(|e| e.field_index() == Some(time.field))
            .map(|field| TimeAttr { field, ..time }),
        _ => Some(time),
    }
}

fn plan_stateless(
    spec: &PipelineSpec,
    path: &str,
    operator: &crate::frontend::spec::OperatorSpec,
    kind: &OperatorKind,
    input: &InputInfo<'_>,
) -> Result<(Operator, Schema), SpecError> {
    let input_schema = input.schema;
    let compile = |text: &ExprText| -> Result<Expr, SpecError> {
        expr::compile(&text.text, input_schema)
            .map_err(|err| spec.expr_error(text, err.offset, err.message))
    };
    Ok(match kind {
        OperatorKind::Filter(text) => {
            let predicate = compile(text)?;
            if predicate.data_type() != DataType::Bool {
                return Err(spec.expr_error(
                    text,
                    0,
                    format!(
                        "a filter condition must be bool, found {}",
                        predicate.data_type()
                    ),
                ));
            }
            (Operator::Filter(predicate), input_schema.clone())
        }
        OperatorKind::Map(assignments) => plan_map(spec, path, operator, assignments, input)?,
        OperatorKind::Project(assignments) => {
            let mut fields: Vec<Field> = Vec::with_capacity(assignments.len() + 1);
            let mut exprs = Vec::with_capacity(assignments.len() + 1);
            let listed_op = assignments.iter().any(|(named, _)| named.name == OP_FIELD);
            if input.changelog && !listed_op {
                // A changelog keeps its change kind in front, whatever the projection lists.
                exprs.push(field_ref(spec, path, operator, OP_FIELD, input_schema)?);
                fields.push(input_schema.fields()[0].clone());
            }
            for (named, text) in assignments {
                let expr = compile(text)?;
                fields.push(output_field(named, &expr));
                exprs.push(expr);
            }
            (Operator::Project(exprs), Schema::new(fields))
        }
        OperatorKind::KeyBy(keys) => {
            let exprs = keys.iter().map(compile).collect::<Result<Vec<_>, _>>()?;
            (Operator::KeyBy(exprs), input_schema.clone())
        }
        _ => unreachable!("stateful kinds and unions are planned elsewhere"),
    })
}

fn field_ref(
    spec: &PipelineSpec,
    path: &str,
    operator: &crate::frontend::spec::OperatorSpec,
    name: &str,
    schema: &Schema,
) -> Result<Expr, SpecError> {
    let reference = format!("`{}`", name.replace('`', ""));
    expr::compile(&reference, schema)
        .map_err(|err| spec.error_at(&operator.name, path, format!("field `{name}`: {err}")))
}

fn plan_map(
    spec: &PipelineSpec,
    path: &str,
    operator: &crate::frontend::spec::OperatorSpec,
    assignments: &[(Named, ExprText)],
    input: &InputInfo<'_>,
) -> Result<(Operator, Schema), SpecError> {
    let input_schema = input.schema;
    let mut outputs: Vec<(Field, Expr)> = Vec::with_capacity(input_schema.len());
    for field in input_schema.fields() {
        let expr = field_ref(spec, path, operator, &field.name, input_schema)?;
        outputs.push((field.clone(), expr));
    }
    for (named, text) in assignments {
        if input.changelog && named.name == OP_FIELD {
            return Err(spec.error_at(
                named,
                path,
                format!("`{OP_FIELD}` holds the change kind of a changelog and cannot be replaced"),
            ));
        }
        let expr = expr::compile(&text.text, input_schema)
            .map_err(|err| spec.expr_error(text, err.offset, err.message))?;
        let field = output_field(named, &expr);
        match outputs.iter_mut().find(|(f, _)| f.name == named.name) {
            Some(slot) => *slot = (field, expr),
            None => outputs.push((field, expr)),
        }
    }
    let (fields, exprs) = outputs.into_iter().unzip();
    Ok((Operator::Project(exprs), Schema::new(fields)))
}

fn plan_union(
    spec: &PipelineSpec,
    plan: &Plan,
    path: &str,
    operator: &crate::frontend::spec::OperatorSpec,
    inputs: &[Input],
    input_schema: &Schema,
) -> Result<(Operator, Schema), SpecError> {
    for (input, named) in inputs.iter().zip(&operator.inputs).skip(1) {
        let other = plan.schema_of(*input);
        if !same_shape(other, input_schema) {
            return Err(spec.error_at(
                named,
                &format!("{path}.union"),
                format!(
                    "union inputs must have the same fields and types: `{}` has ({}) but `{}` has ({})",
                    operator.inputs[0].name,
                    describe(input_schema),
                    named.name,
                    describe(other)
                ),
            ));
        }
    }
    Ok((Operator::Union, union_schema(inputs, plan)))
}

fn output_field(named: &Named, expr: &Expr) -> Field {
    Field {
        name: named.name.clone(),
        data_type: expr.data_type(),
        nullable: expr.nullable(),
    }
}

fn same_shape(a: &Schema, b: &Schema) -> bool {
    a.len() == b.len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name == y.name && x.data_type == y.data_type)
}

/// The union's schema: the inputs' fields, nullable where any input's is.
fn union_schema(inputs: &[Input], plan: &Plan) -> Schema {
    let first = plan.schema_of(inputs[0]);
    let fields = first
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| Field {
            nullable: inputs
                .iter()
                .any(|input| plan.schema_of(*input).fields()[i].nullable),
            ..field.clone()
        })
        .collect();
    Schema::new(fields)
}

fn describe(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name, f.data_type))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
