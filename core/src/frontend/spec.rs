//! Pipeline specifications: the YAML file a user writes, decoded into typed parts.
//!
//! Decoding is strict: an unknown key, a missing one or a value of the wrong shape is an error
//! that names the file, line, column and the key's path (`operators[1].filter`). Expressions
//! stay text here with their position; [`crate::frontend::plan`] type-checks them against schemas.
//! The reference for users is docs/pipeline.md.

mod elasticsearch;
mod kafka;
mod mongodb;
mod postgres;
mod stateful;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::nexmark::{EventKind, GeneratorConfig};
use crate::record::schema::{DataType, Field, Schema};
pub use elasticsearch::{DeadLetterTo, ElasticsearchSink, SinkErrors, SinkOnError};
pub use kafka::{
    KafkaAvro, KafkaDelivery, KafkaFormat, KafkaMeta, KafkaOnError, KafkaSink, KafkaSource,
    KafkaStart, KafkaTopics,
};
pub use mongodb::{MongoMode, MongoRead, MongoSink, MongoSource, MongoStart};
pub use postgres::{PostgresMode, PostgresSink};
pub use stateful::{
    parse_duration, AggregateSpec, GroupKey, JoinSpec, LookupSpec, ProcessSpec, TopSpec, WindowSpec,
};
pub use yaml::Pos;
use yaml::{Node, NodeKind};

/// A pipeline file, decoded.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The pipeline's name (`name:`), or the file stem.
    pub name: String,
    /// Named sources, in file order.
    pub sources: Vec<SourceSpec>,
    /// Operators, in file order.
    pub operators: Vec<OperatorSpec>,
    /// Named sinks, in file order.
    pub sinks: Vec<SinkSpec>,
    /// Pipeline-wide settings.
    pub settings: Settings,
    /// Where the spec came from, for error messages.
    pub origin: Origin,
}

/// The file a spec was read from and its text, kept to place later (type-check) errors.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Path as the user gave it.
    pub file: String,
    /// The whole file.
    pub text: String,
}

/// Pipeline-wide settings (`settings:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Key groups a `key_by` hashes into; fixed for the pipeline's life (default 128).
    pub max_parallelism: u32,
    /// Rows a source puts in one batch at most (default 1024).
    pub batch_rows: usize,
    /// Checkpoint this often unless the command line says otherwise (`checkpoint_interval`;
    /// SQL `execution.checkpointing.interval`); `None`: no checkpoints unless asked for.
    pub checkpoint_interval_ms: Option<u64>,
    /// Data cores unless the command line says otherwise (`cores`; SQL `parallelism.default`).
    pub cores: Option<u32>,
    /// Where the file set `cores`, as its errors quote it ("`cores: 64` in the file's settings
    /// (line 3)", "SET 'parallelism.default' = '64' (line 1)").
    pub cores_written: Option<String>,
    /// Watermark alignment (`watermark_alignment`): a source instance more than this far
    /// (event time) ahead of the node's slowest holds back; `None`: sources run free.
    pub watermark_alignment_ms: Option<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_parallelism: 128,
            batch_rows: 1024,
            checkpoint_interval_ms: None,
            cores: None,
            cores_written: None,
            watermark_alignment_ms: None,
        }
    }
}

/// A name and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The name.
    pub name: String,
    /// Its position.
    pub pos: Pos,
}

/// An expression's text and where it starts, so type errors can point inside it.
///
/// The text is in Wire's expression language whatever the front end: the YAML front end keeps
/// the scalar as written, the SQL front end writes each SQL expression in this language and
/// keeps anchors from offsets of that text back to the SQL it came from.
#[derive(Debug, Clone)]
pub struct ExprText {
    /// The expression as written.
    pub text: String,
    /// Key path of the expression, like `operators[0].filter`.
    pub path: String,
    place: Place,
}

/// How offsets inside an expression's text map to positions in the file.
#[derive(Debug, Clone)]
enum Place {
    /// A YAML scalar: the text is in the file (plain, quoted or block).
    Yaml(Node),
    /// Text written from another language: `(offset, pos)` anchors sorted by offset; an
    /// offset maps to the position of the last anchor at or before it.
    Anchors(Vec<(usize, Pos)>),
}

impl ExprText {
    /// An expression written by a front end other than YAML, with its anchors (see [`Place`]);
    /// without anchors every offset maps to `pos`.
    pub fn from_text(text: String, path: String, pos: Pos, anchors: Vec<(usize, Pos)>) -> ExprText {
        let mut all = vec![(0, pos)];
        all.extend(anchors);
        all.sort_by_key(|(offset, _)| *offset);
        ExprText {
            text,
            path,
            place: Place::Anchors(all),
        }
    }

    /// The file position of byte `offset` of the expression text.
    pub fn position(&self, origin: &Origin, offset: usize) -> Pos {
        match &self.place {
            Place::Yaml(node) => yaml::position_in_scalar(&origin.text, node, offset),
            Place::Anchors(anchors) => anchors
                .iter()
                .take_while(|(at, _)| *at <= offset)
                .last()
                .map_or_else(Pos::default, |(_, pos)| *pos),
        }
    }

    /// Where the expression starts (the scalar's node for YAML, the first anchor otherwise).
    pub(crate) fn position_of_start(&self) -> Pos {
        match &self.place {
            Place::Yaml(node) => node.pos,
            Place::Anchors(anchors) => anchors.first().map_or_else(Pos::default, |(_, pos)| *pos),
        }
    }

    /// Points every offset of the expression at `pos` (text decoded from a generated document).
    pub(crate) fn relocate(&mut self, pos: Pos) {
        self.place = Place::Anchors(vec![(0, pos)]);
    }
}

/// One named source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The source's name; operators and sinks refer to it.
    pub name: Named,
    /// What it reads.
    pub kind: SourceKind,
    /// How its watermarks are generated (`watermark:`).
    pub watermark: crate::time::watermark::WatermarkSpec,
}

/// The kinds of source.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceKind {
    /// The built-in Nexmark generator.
    Nexmark(NexmarkSource),
    /// JSON lines or CSV files.
    File(FileSource),
    /// Rows pushed by producers over the ingest protocol, logged to a WAL first.
    Ingest(IngestSource),
    /// Records of Kafka topics.
    Kafka(Box<KafkaSource>),
    /// Documents of a MongoDB collection: one scan, or its change stream.
    Mongodb(Box<MongoSource>),
}

/// `type: nexmark`.
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    /// Which event type this source emits (the others are generated and skipped).
    pub stream: EventKind,
    /// Stop after this many events of all types (`events:`); unbounded when absent.
    pub events: Option<u64>,
    /// Events per second across all partitions (`rate:`); as fast as possible when absent.
    pub rate: Option<u64>,
    /// Partitions (`partitions:`); one per core when absent.
    pub partitions: Option<u32>,
    /// Generator knobs (`seed`, `out_of_order_ms`, `first_event_time_ms`, `events_per_second`).
    pub generator: GeneratorConfig,
}

/// Text formats of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values (RFC 4180), one record per line.
    Csv,
}

/// `type: file` as a source.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// A file, or a directory whose files (sorted by name) are each one partition.
    pub path: PathBuf,
    /// Where `path` was written, for errors about the file (like a missing one).
    pub path_pos: Pos,
    /// Text format.
    pub format: FileFormat,
    /// Row schema.
    pub schema: Schema,
    /// Field holding the event time, if any.
    pub event_time: Option<Named>,
    /// Keep reading lines appended after the end (until Ctrl-C).
    pub tail: bool,
    /// CSV: the first line is a header naming the columns (default true).
    pub csv_header: bool,
    /// What to do with a line that does not decode.
    pub on_error: OnError,
}

/// What a file source does with a line that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop the pipeline with an error naming file, line and field (default).
    Fail,
    /// Log it, count it and go on.
    Skip,
}

/// Durability of an ingest source's WAL appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilitySpec {
    /// Acknowledge after fdatasync.
    Always,
    /// Acknowledge once written to the device; sync within this many milliseconds.
    Interval(u64),
    /// Acknowledge once written; sync only on segment roll and close.
    Never,
}

/// `type: ingest`.
#[derive(Debug, Clone)]
pub struct IngestSource {
    /// Address to listen on, like `127.0.0.1:7070` (port 0 picks a free port).
    pub listen: String,
    /// Row schema producers must send.
    pub schema: Schema,
    /// Field holding the event time, if any.
    pub event_time: Option<Named>,
    /// When an append counts as durable.
    pub durability: DurabilitySpec,
    /// WAL segment size in bytes.
    pub segment_bytes: u64,
    /// Unacknowledged batches a producer may have in flight per connection.
    pub credits: u32,
    /// Limits on producer connections.
    pub limits: IngestLimits,
}

/// Limits on an ingest source's producer connections, which bound the memory they can take
/// (docs/protocol.md, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Most producer connections open at once (per source, whole process).
    pub max_connections: u32,
    /// Memory for receiving frames larger than 64 KiB, shared by the source's connections.
    pub frame_buffer_bytes_max: u64,
    /// A new connection's Hello must arrive within this time.
    pub hello_timeout_ms: u64,
    /// A connection that stops halfway through a frame is closed after this time.
    pub read_timeout_ms: u64,
    /// A connection that sends nothing between frames is closed after this time.
    pub idle_timeout_ms: u64,
    /// Most connections open at once from one peer IP address; 0: only `max_connections`.
    pub max_connections_per_peer: u32,
    /// Most batches a second one connection may send, and (with security on) all the
    /// connections of one producer token to this source together; 0: no limit.
    pub max_batches_per_sec: u64,
    /// Most batch bytes a second, counted like `max_batches_per_sec`; 0: no limit.
    pub max_bytes_per_sec: u64,
}

/// One operator.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// The operator's name; operators and sinks downstream refer to it.
    pub name: Named,
    /// Names of its inputs (`from:`, or the list of a `union:`).
    pub inputs: Vec<Named>,
    /// What it does.
    pub kind: OperatorKind,
}

/// The operators of the data-plane issue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OperatorKind {
    /// Keep rows for which the expression is true.
    Filter(ExprText),
    /// All input fields, with the listed ones added or replaced.
    Map(Vec<(Named, ExprText)>),
    /// Exactly the listed fields.
    Project(Vec<(Named, ExprText)>),
    /// Route rows by the hash of these key expressions to the core owning the key group.
    KeyBy(Vec<ExprText>),
    /// The rows of all inputs, which must have the same schema.
    Union,
    /// Group (optionally windowed) aggregation.
    Aggregate(AggregateSpec),
    /// The first `n` rows per group by an order.
    Top(TopSpec),
    /// Rows of two inputs with equal keys, joined.
    Join(JoinSpec),
    /// Rows joined with a static table loaded from a file.
    Lookup(LookupSpec),
    /// A user-written keyed operator.
    Process(ProcessSpec),
}

/// One named sink.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The sink's name.
    pub name: Named,
    /// The source or operator it consumes.
    pub input: Named,
    /// Where rows go.
    pub kind: SinkKind,
}

/// The kinds of sink.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkKind {
    /// Counts rows and drops them.
    Blackhole,
    /// Writes rows to standard output.
    Stdout {
        /// Text format.
        format: FileFormat,
    },
    /// Writes rows to rolling files in a directory.
    File(FileSink),
    /// Produces rows as records to a Kafka topic.
    Kafka(Box<KafkaSink>),
    /// Inserts or upserts rows into a PostgreSQL table.
    Postgres(Box<PostgresSink>),
    /// Indexes rows as documents in Elasticsearch or OpenSearch.
    Elasticsearch(Box<ElasticsearchSink>),
    /// Inserts or upserts rows as documents into a MongoDB collection.
    Mongodb(Box<MongoSink>),
}

/// `type: file` as a sink.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// Directory the part files go to (created if missing).
    pub path: PathBuf,
    /// Where `path` was written, for errors about the directory.
    pub path_pos: Pos,
    /// Text format.
    pub format: FileFormat,
    /// Roll to a new part file after this many bytes.
    pub roll_bytes: u64,
    /// CSV: write a header line at the top of each part file (default true).
    pub csv_header: bool,
    /// `partition_by`: an expression whose value, as text, names the subdirectory of `path`
    /// each row goes to; every row goes to `path` itself when absent.
    pub partition_by: Option<ExprText>,
}

/// A spec that cannot be used, with the place it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {}{message}", pos.line, pos.column, path_prefix(path))]
pub struct SpecError {
    /// The pipeline file.
    pub file: String,
    /// Where in it.
    pub pos: Pos,
    /// Key path, like `operators[1].filter` (empty for the document itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Whether a pipeline file name says SQL (it ends in `.sql`, in any case).
pub fn is_sql_file(file: &str) -> bool {
    file.to_ascii_lowercase().ends_with(".sql")
}

/// The file name pipeline `name`'s text is read under when its own name is not kept:
/// `NAME.sql` when the text is SQL, `NAME.yaml` otherwise (a SQL pipeline takes its name from
/// the file's stem, so the name survives).
///
/// The text is SQL when its first word, after blank space and comments (`--`, `/* */`, `#`),
/// is a SQL statement keyword followed by a space or `(`. A YAML pipeline starts with a key
/// and a `:`, so no pipeline that passed its own front end's check reads as the other
/// language; [`stored_language_agrees`] lets a service check that before keeping a text.
pub fn stored_file_name(name: &str, text: &str) -> String {
    if reads_as_sql(text) {
        format!("{name}.sql")
    } else {
        format!("{name}.yaml")
    }
}

/// Whether text read from `file` keeps its language when kept without the file name.
pub fn stored_language_agrees(file: &str, text: &str) -> bool {
    is_sql_file(file) == reads_as_sql(text)
}

fn reads_as_sql(text: &str) -> bool {
    const KEYWORDS: &[&str] = &["CREATE", "INSERT", "SET", "BEGIN", "EXECUTE", "RESET"];
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.starts_with("--") || rest.starts_with('#') {
            rest = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let word_len = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let (word, after) = rest.split_at(word_len);
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
        && after.starts_with(|c: char| c.is_whitespace() || c == '(')
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl PipelineSpec {
    /// Reads and decodes the pipeline file at `path`.
    pub fn from_file(path: &Path) -> Result<PipelineSpec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| SpecError {
            file: file.clone(),
            pos: Pos { line: 1, column: 1 },
            path: String::new(),
            message: format!("cannot read the pipeline file: {err}"),
        })?;
        PipelineSpec::parse(&file, &text)
    }

    /// Decodes pipeline text kept without its file name (the cluster's metadata keeps only the
    /// text), under the name [`stored_file_name`] gives it.
    pub fn parse_stored(name: &str, text: &str) -> Result<PipelineSpec, SpecError> {
        PipelineSpec::parse(&stored_file_name(name, text), text)
    }

    /// Decodes pipeline text; `file` names it in errors. A file ending in `.sql` is read by
    /// the SQL front end ([`crate::frontend::sql`]), any other as YAML.
    pub fn parse(file: &str, text: &str) -> Result<PipelineSpec, SpecError> {
        if is_sql_file(file) {
            return crate::frontend::sql::parse(file, text);
        }
        let origin = Origin {
            file: file.to_string(),
            text: text.to_string(),
        };
        let root = yaml::parse(text).map_err(|(pos, message)| SpecError {
            file: file.to_string(),
            pos,
            path: String::new(),
            message,
        })?;
        let cx = Cx { file };
        decode_pipeline(&cx, &root, origin)
    }

    /// The error for `message` at `offset` inside expression `expr`.
    pub fn expr_error(&self, expr: &ExprText, offset: usize, message: String) -> SpecError {
        SpecError {
            file: self.origin.file.clone(),
            pos: expr.position(&self.origin, offset),
            path: expr.path.clone(),
            message,
        }
    }

    /// An error at a named thing (a source, operator, sink or input reference).
    pub fn error_at(&self, named: &Named, path: &str, message: String) -> SpecError {
        SpecError {
            file: self.origin.file.clone(),
            pos: named.pos,
            path: path.to_string(),
            message,
        }
    }
}

/// Decoding context: the file name for errors.
struct Cx<'a> {
    file: &'a str,
}

impl Cx<'_> {
    fn err(&self, node: &Node, path: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.to_string(),
            pos: node.pos,
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// A mapping's entries, checked off as they are read so leftovers can be reported.
struct Fields<'n> {
    node: &'n Node,
    path: String,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    fn new(cx: &Cx<'_>, node: &'n Node, path: &str) -> Result<Fields<'n>, SpecError> {
        let NodeKind::Map(entries) = &node.kind else {
            return Err(cx.err(
                node,
                path,
                format!("expected a mapping, found {}", node.kind_name()),
            ));
        };
        let mut list: Vec<(&str, &Node, &Node)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = key.as_scalar() else {
                return Err(cx.err(key, path, "mapping keys must be plain names"));
            };
            if list.iter().any(|(seen, _, _)| *seen == name) {
                return Err(cx.err(key, path, format!("duplicate key `{name}`")));
            }
            list.push((name, key, value));
        }
        let used = vec![false; list.len()];
        Ok(Fields {
            node,
            path: path.to_string(),
            entries: list,
            used,
        })
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &str) -> Option<(&'n Node, String)> {
        let index = self.entries.iter().position(|(name, _, _)| *name == key)?;
        self.used[index] = true;
        Some((self.entries[index].2, self.child_path(key)))
    }

    fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(name, _, _)| *name == key)
    }

    fn required(&mut self, cx: &Cx<'_>, key: &str) -> Result<(&'n Node, String), SpecError> {
        self.get(key).ok_or_else(|| {
            cx.err(
                self.node,
                &self.path,
                format!("missing required key `{key}`"),
            )
        })
    }

    fn string(&mut self, cx: &Cx<'_>, key: &str) -> Result<Option<String>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some((node, path)) => scalar(cx, node, &path).map(|s| Some(s.to_string())),
        }
    }

    fn u64(&mut self, cx: &Cx<'_>, key: &str) -> Result<Option<u64>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some((node, path)) => parse_u64(cx, node, &path).map(Some),
        }
    }

    fn bool(&mut self, cx: &Cx<'_>, key: &str) -> Result<Option<bool>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some((node, path)) => match scalar(cx, node, &path)? {
                "true" | "yes" | "on" => Ok(Some(true)),
                "false" | "no" | "off" => Ok(Some(false)),
                other => Err(cx.err(
                    node,
                    &path,
                    format!("expected true or false, found `{other}`"),
                )),
            },
        }
    }

    /// Fails on the first key nobody asked for, suggesting the closest allowed one.
    fn finish(self, cx: &Cx<'_>, allowed: &[&str]) -> Result<(), SpecError> {
        for ((name, key, _), used) in self.entries.iter().zip(&self.used) {
            if !used {
                let hint = closest(name, allowed)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(cx.err(
                    key,
                    &self.path,
                    format!(
                        "unknown key `{name}`{hint} (allowed here: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn scalar<'n>(cx: &Cx<'_>, node: &'n Node, path: &str) -> Result<&'n str, SpecError> {
    node.as_scalar().ok_or_else(|| {
        cx.err(
            node,
            path,
            format!("expected a single value, found {}", node.kind_name()),
        )
    })
}

fn parse_u64(cx: &Cx<'_>, node: &Node, path: &str) -> Result<u64, SpecError> {
    let text = scalar(cx, node, path)?;
    parse_count(text).ok_or_else(|| {
        cx.err(
            node,
            path,
            format!("expected a non-negative integer, found `{text}`"),
        )
    })
}

/// Parses `10000`, `10_000`, `10k`, `10M`, `1G` (decimal multipliers) and byte sizes `64MiB`.
fn parse_count(text: &str) -> Option<u64> {
    let clean: String = text.trim().chars().filter(|c| *c != '_').collect();
    let split = clean
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(clean.len());
    let (digits, suffix) = clean.split_at(split);
    let base: u64 = digits.parse().ok()?;
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" | "m" => 1_000_000,
        "G" | "g" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    base.checked_mul(multiplier)
}

/// The allowed word closest to `word` within edit distance 2, for "did you mean" hints.
pub fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

const PIPELINE_KEYS: &[&str] = &["name", "sources", "operators", "sinks", "settings"];

fn decode_pipeline(cx: &Cx<'_>, root: &Node, origin: Origin) -> Result<PipelineSpec, SpecError> {
    let mut fields = Fields::new(cx, root, "")?;
    let name = match fields.string(cx, "name")? {
        Some(name) => name,
        None => Path::new(&origin.file)
            .file_stem()
            .map_or_else(|| "pipeline".to_string(), |s| s.to_string_lossy().into()),
    };
    let (sources_node, sources_path) = fields.required(cx, "sources")?;
    let sources = named_entries(cx, sources_node, &sources_path)?
        .into_iter()
        .map(|(named, node, path)| decode_source(cx, named, node, &path))
        .collect::<Result<Vec<_>, _>>()?;
    let operators = match fields.get("operators") {
        None => Vec::new(),
        Some((node, path)) => decode_operators(cx, node, &path)?,
    };
    let (sinks_node, sinks_path) = fields.required(cx, "sinks")?;
    let sinks = named_entries(cx, sinks_node, &sinks_path)?
        .into_iter()
        .map(|(named, node, path)| decode_sink(cx, named, node, &path))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = match fields.get("settings") {
        None => Settings::default(),
        Some((node, path)) => decode_settings(cx, node, &path)?,
    };
    fields.finish(cx, PIPELINE_KEYS)?;
    if sources.is_empty() {
        return Err(cx.err(sources_node, &sources_path, "a pipeline needs a source"));
    }
    if sinks.is_empty() {
        return Err(cx.err(sinks_node, &sinks_path, "a pipeline needs a sink"));
    }
    Ok(PipelineSpec {
        name,
        sources,
        operators,
        sinks,
        settings,
        origin,
    })
}

/// The entries of a `name: {...}` mapping (sources, sinks) as (name, body, path).
fn named_entries<'n>(
    cx: &Cx<'_>,
    node: &'n Node,
    path: &str,
) -> Result<Vec<(Named, &'n Node, String)>, SpecError> {
    let fields = Fields::new(cx, node, path)?;
    Ok(fields
        .entries
        .iter()
        .map(|(name, key, value)| {
            let named = Named {
                name: name.to_string(),
                pos: key.pos,
            };
            (named, *value, fields.child_path(name))
        })
        .collect())
}

fn decode_settings(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Settings, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let mut settings = Settings::default();
    if let Some(value) = fields.u64(cx, "max_parallelism")? {
        if !(1..=32_768).contains(&value) {
            let (node, path) = fields.get("max_parallelism").expect("just read");
            return Err(cx.err(node, &path, "max_parallelism must be in 1..=32768"));
        }
        settings.max_parallelism = value as u32;
    }
    if let Some(value) = fields.u64(cx, "batch_rows")? {
        if !(1..=1 << 20).contains(&value) {
            let (node, path) = fields.get("batch_rows").expect("just read");
            return Err(cx.err(node, &path, "batch_rows must be in 1..=1048576"));
        }
        settings.batch_rows = value as usize;
    }
    if let Some(ms) = fields.duration(cx, "checkpoint_interval")? {
        if ms <= 0 {
            let (node, path) = fields.get("checkpoint_interval").expect("just read");
            return Err(cx.err(node, &path, "checkpoint_interval must be longer than 0ms"));
        }
        settings.checkpoint_interval_ms = Some(ms as u64);
    }
    if let Some(value) = fields.u64(cx, "cores")? {
        if !(1..=32_768).contains(&value) {
            let (node, path) = fields.get("cores").expect("just read");
            return Err(cx.err(node, &path, "cores must be in 1..=32768"));
        }
        settings.cores = Some(value as u32);
        let (node, _) = fields.get("cores").expect("just read");
        settings.cores_written = Some(format!(
            "`cores: {value}` in the file's settings (line {})",
            node.pos.line
        ));
    }
    if let Some(ms) = fields.duration(cx, "watermark_alignment")? {
        if ms <= 0 {
            let (node, path) = fields.get("watermark_alignment").expect("just read");
            return Err(cx.err(node, &path, "watermark_alignment must be longer than 0ms"));
        }
        settings.watermark_alignment_ms = Some(ms as u64);
    }
    fields.finish(
        cx,
        &[
            "max_parallelism",
            "batch_rows",
            "checkpoint_interval",
            "cores",
            "watermark_alignment",
        ],
    )?;
    Ok(settings)
}

const SOURCE_TYPES: &[&str] = &["nexmark", "file", "ingest", "kafka", "mongodb"];

fn decode_source(
    cx: &Cx<'_>,
    name: Named,
    node: &Node,
    path: &str,
) -> Result<SourceSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let (type_node, type_path) = fields.required(cx, "type")?;
    let type_name = scalar(cx, type_node, &type_path)?;
    // The reference Nexmark DDL declares `dateTime - 4 seconds`.
    let default_out_of_orderness_ms = if type_name == "nexmark" { 4_000 } else { 0 };
    let watermark = stateful::decode_watermark(cx, &mut fields, default_out_of_orderness_ms)?;
    let kind = match type_name {
        "nexmark" => SourceKind::Nexmark(decode_nexmark(cx, &mut fields)?),
        "file" => SourceKind::File(decode_file_source(cx, &mut fields)?),
        "ingest" => SourceKind::Ingest(decode_ingest(cx, &mut fields)?),
        "kafka" => SourceKind::Kafka(Box::new(kafka::decode_source(cx, &mut fields)?)),
        "mongodb" => SourceKind::Mongodb(Box::new(mongodb::decode_source(cx, &mut fields)?)),
        other => {
            return Err(cx.err(
                type_node,
                &type_path,
                unknown_choice("source type", other, SOURCE_TYPES),
            ))
        }
    };
    Ok(SourceSpec {
        name,
        kind,
        watermark,
    })
}

fn unknown_choice(what: &str, found: &str, allowed: &[&str]) -> String {
    let hint = closest(found, allowed)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    format!(
        "unknown {what} `{found}`{hint} (expected one of: {})",
        allowed.join(", ")
    )
}

const NEXMARK_KEYS: &[&str] = &[
    "type",
    "stream",
    "events",
    "rate",
    "partitions",
    "seed",
    "out_of_order_ms",
    "first_event_time_ms",
    "events_per_second",
    "watermark",
];

fn decode_nexmark(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<NexmarkSource, SpecError> {
    let (stream_node, stream_path) = fields.required(cx, "stream")?;
    let stream = match scalar(cx, stream_node, &stream_path)? {
        "bid" | "bids" => EventKind::Bid,
        "auction" | "auctions" => EventKind::Auction,
        "person" | "persons" | "people" => EventKind::Person,
        other => {
            return Err(cx.err(
                stream_node,
                &stream_path,
                unknown_choice("nexmark stream", other, &["bid", "auction", "person"]),
            ))
        }
    };
    let mut generator = GeneratorConfig::default();
    if let Some(seed) = fields.u64(cx, "seed")? {
        generator.seed = seed;
    }
    if let Some(ms) = fields.u64(cx, "out_of_order_ms")? {
        generator.out_of_order_ms = i64::try_from(ms).unwrap_or(i64::MAX);
    }
    if let Some(ms) = fields.u64(cx, "first_event_time_ms")? {
        generator.first_event_time_ms = i64::try_from(ms).unwrap_or(i64::MAX);
    }
    if let Some(rate) = fields.u64(cx, "events_per_second")? {
        generator.events_per_second = rate;
    }
    if let Err(err) = generator.validate() {
        return Err(cx.err(fields.node, &fields.path, err.to_string()));
    }
    let events = fields.u64(cx, "events")?;
    let rate = fields.u64(cx, "rate")?.filter(|rate| *rate > 0);
    let partitions = match fields.u64(cx, "partitions")? {
        Some(0) => {
            let (node, path) = fields.get("partitions").expect("just read");
            return Err(cx.err(node, &path, "partitions must be at least 1"));
        }
        other => other.map(|p| p.min(u64::from(u32::MAX)) as u32),
    };
    let taken = std::mem::replace(fields, Fields::empty(fields.node));
    taken.finish(cx, NEXMARK_KEYS)?;
    Ok(NexmarkSource {
        stream,
        events,
        rate,
        partitions,
        generator,
    })
}

impl<'n> Fields<'n> {
    fn empty(node: &'n Node) -> Fields<'n> {
        Fields {
            node,
            path: String::new(),
            entries: Vec::new(),
            used: Vec::new(),
        }
    }
}

fn decode_format(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<FileFormat, SpecError> {
    match fields.get("format") {
        None => Ok(FileFormat::JsonLines),
        Some((node, path)) => match scalar(cx, node, &path)? {
            "jsonl" | "json" | "ndjson" => Ok(FileFormat::JsonLines),
            "csv" => Ok(FileFormat::Csv),
            other => Err(cx.err(
                node,
                &path,
                unknown_choice("format", other, &["jsonl", "csv"]),
            )),
        },
    }
}

/// `schema:` as a mapping of field name to type; a type ending in `?` is nullable.
fn decode_schema(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<Schema, SpecError> {
    let (node, path) = fields.required(cx, "schema")?;
    let entries = named_entries(cx, node, &path)?;
    if entries.is_empty() {
        return Err(cx.err(node, &path, "a schema needs at least one field"));
    }
    let mut schema = Vec::with_capacity(entries.len());
    for (named, type_node, type_path) in entries {
        let written = scalar(cx, type_node, &type_path)?;
        let (type_name, nullable) = match written.strip_suffix('?') {
            Some(base) => (base.trim(), true),
            None => (written.trim(), false),
        };
        let Some(data_type) = DataType::parse(type_name) else {
            return Err(cx.err(
                type_node,
                &type_path,
                unknown_choice(
                    "type",
                    type_name,
                    &["i64", "f64", "bool", "string", "bytes", "timestamp"],
                ),
            ));
        };
        schema.push(Field {
            name: named.name,
            data_type,
            nullable,
        });
    }
    Ok(Schema::new(schema))
}

fn decode_event_time(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<Option<Named>, SpecError> {
    match fields.get("event_time") {
        None => Ok(None),
        Some((node, path)) => Ok(Some(Named {
            name: scalar(cx, node, &path)?.to_string(),
            pos: node.pos,
        })),
    }
}

const FILE_SOURCE_KEYS: &[&str] = &[
    "type",
    "path",
    "format",
    "schema",
    "event_time",
    "tail",
    "csv_header",
    "on_error",
    "watermark",
];

fn decode_file_source(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<FileSource, SpecError> {
    let (path_node, path_path) = fields.required(cx, "path")?;
    let file = PathBuf::from(scalar(cx, path_node, &path_path)?);
    check_path_lengths(cx, path_node, &path_path, &file)?;
    let format = decode_format(cx, fields)?;
    let schema = decode_schema(cx, fields)?;
    let event_time = decode_event_time(cx, fields)?;
    let tail = fields.bool(cx, "tail")?.unwrap_or(false);
    let csv_header = fields.bool(cx, "csv_header")?.unwrap_or(true);
    let on_error = match fields.get("on_error") {
        None => OnError::Fail,
        Some((node, key_path)) => match scalar(cx, node, &key_path)? {
            "fail" => OnError::Fail,
            "skip" => OnError::Skip,
            other => {
                return Err(cx.err(
                    node,
                    &key_path,
                    unknown_choice("on_error", other, &["fail", "skip"]),
                ))
            }
        },
    };
    let taken = std::mem::replace(fields, Fields::empty(fields.node));
    taken.finish(cx, FILE_SOURCE_KEYS)?;
    Ok(FileSource {
        path: file,
        path_pos: path_node.pos,
        format,
        schema,
        event_time,
        tail,
        csv_header,
        on_error,
    })
}

const INGEST_KEYS: &[&str] = &[
    "type",
    "listen",
    "schema",
    "event_time",
    "durability",
    "segment_bytes",
    "credits",
    "watermark",
    "max_connections",
    "frame_buffer_bytes_max",
    "hello_timeout_ms",
    "read_timeout_ms",
    "idle_timeout_ms",
    "max_connections_per_peer",
    "max_batches_per_sec",
    "max_bytes_per_sec",
];

fn decode_ingest(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<IngestSource, SpecError> {
    let listen = fields
        .string(cx, "listen")?
        .unwrap_or_else(|| "127.0.0.1:7070".to_string());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        let (node, key_path) = fields.get("listen").expect("just read");
        return Err(cx.err(
            node,
            &key_path,
            format!("`{listen}` is not an IP address and port, like 127.0.0.1:7070 or [::]:7070"),
        ));
    }
    let schema = decode_schema(cx, fields)?;
    let event_time = decode_event_time(cx, fields)?;
    let durability = match fields.get("durability") {
        None => DurabilitySpec::Interval(10),
        Some((node, key_path)) => {
            let text = scalar(cx, node, &key_path)?;
            parse_durability(text).ok_or_else(|| {
                cx.err(
                    node,
                    &key_path,
                    format!(
                        "unknown durability `{text}` (expected always, never, or interval(MS) like interval(10ms))"
                    ),
                )
            })?
        }
    };
    let segment_bytes = fields.u64(cx, "segment_bytes")?.unwrap_or(64 << 20);
    if segment_bytes < 1 << 20 {
        let (node, key_path) = fields.get("segment_bytes").expect("just read");
        return Err(cx.err(node, &key_path, "segment_bytes must be at least 1MiB"));
    }
    let credits = fields.u64(cx, "credits")?.unwrap_or(16);
    if !(1..=4096).contains(&credits) {
        let (node, key_path) = fields.get("credits").expect("just read");
        return Err(cx.err(node, &key_path, "credits must be in 1..=4096"));
    }
    let limits = decode_ingest_limits(cx, fields)?;
    let taken = std::mem::replace(fields, Fields::empty(fields.node));
    taken.finish(cx, INGEST_KEYS)?;
    Ok(IngestSource {
        listen,
        schema,
        event_time,
        durability,
        segment_bytes,
        credits: credits as u32,
        limits,
    })
}

impl Default for IngestLimits {
    /// The defaults documented in docs/pipeline.md and docs/protocol.md.
    fn default() -> Self {
        IngestLimits {
            max_connections: 256,
            frame_buffer_bytes_max: 64 << 20,
            hello_timeout_ms: 10_000,
            read_timeout_ms: 30_000,
            idle_timeout_ms: 600_000,
            max_connections_per_peer: 0,
            max_batches_per_sec: 0,
            max_bytes_per_sec: 0,
        }
    }
}

fn decode_ingest_limits(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<IngestLimits, SpecError> {
    let defaults = IngestLimits::default();
    let mut bounded =
        |key: &str, default: u64, range: std::ops::RangeInclusive<u64>, what: &str| {
            let value = fields.u64(cx, key)?.unwrap_or(default);
            if !range.contains(&value) {
                let (node, key_path) = fields.get(key).expect("just read");
                return Err(cx.err(node, &key_path, format!("{key} must be {what}")));
            }
            Ok(value)
        };
    let max_connections = bounded(
        "max_connections",
        u64::from(defaults.max_connections),
        1..=65_536,
        "in 1..=65536",
    )?;
    let frame_buffer_bytes_max = bounded(
        "frame_buffer_bytes_max",
        defaults.frame_buffer_bytes_max,
        (1 << 20)..=(1 << 40),
        "at least 1MiB",
    )?;
    let ms = 1..=(24 * 3_600_000);
    let within = "in 1..=86400000 (milliseconds)";
    let hello = defaults.hello_timeout_ms;
    let hello_timeout_ms = bounded("hello_timeout_ms", hello, ms.clone(), within)?;
    let read = defaults.read_timeout_ms;
    let read_timeout_ms = bounded("read_timeout_ms", read, ms.clone(), within)?;
    let idle = defaults.idle_timeout_ms;
    let idle_timeout_ms = bounded("idle_timeout_ms", idle, ms, within)?;
    let per_peer = bounded("max_connections_per_peer", 0, 0..=65_536, "in 0..=65536")?;
    let max_batches_per_sec = bounded("max_batches_per_sec", 0, 0..=u64::MAX, "a count")?;
    let max_bytes_per_sec = bounded("max_bytes_per_sec", 0, 0..=u64::MAX, "a size")?;
    Ok(IngestLimits {
        max_connections: max_connections as u32,
        frame_buffer_bytes_max,
        hello_timeout_ms,
        read_timeout_ms,
        idle_timeout_ms,
        max_connections_per_peer: per_peer as u32,
        max_batches_per_sec,
        max_bytes_per_sec,
    })
}

/// Parses `always`, `never`, `interval(10ms)`, `interval(10)` and `interval`.
pub fn parse_durability(text: &str) -> Option<DurabilitySpec> {
    match text.trim() {
        "always" => Some(DurabilitySpec::Always),
        "never" => Some(DurabilitySpec::Never),
        "interval" => Some(DurabilitySpec::Interval(10)),
        other => {
            let inner = other.strip_prefix("interval(")?.strip_suffix(')')?.trim();
            let ms = inner.strip_suffix("ms").unwrap_or(inner).trim();
            ms.parse().ok().map(DurabilitySpec::Interval)
        }
    }
}

const OPERATOR_KINDS: &[&str] = &[
    "filter",
    "map",
    "project",
    "key_by",
    "union",
    "aggregate",
    "top",
    "join",
    "lookup",
    "process",
];

fn decode_operators(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Vec<OperatorSpec>, SpecError> {
    let NodeKind::Seq(items) = &node.kind else {
        return Err(cx.err(
            node,
            path,
            format!(
                "expected a list of operators (`- name: ...`), found {}",
                node.kind_name()
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| decode_operator(cx, item, &format!("{path}[{index}]")))
        .collect()
}

fn decode_operator(cx: &Cx<'_>, node: &Node, path: &str) -> Result<OperatorSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let (name_node, name_path) = fields.required(cx, "name")?;
    let name = Named {
        name: scalar(cx, name_node, &name_path)?.to_string(),
        pos: name_node.pos,
    };
    let kind_name = operator_kind_name(cx, &fields, node, path, &name.name)?;
    let (kind_node, kind_path) = fields.get(kind_name).expect("present");
    let (kind, inputs) = if kind_name == "union" {
        let inputs = name_list(cx, kind_node, &kind_path)?;
        if inputs.len() < 2 {
            return Err(cx.err(kind_node, &kind_path, "a union needs at least two inputs"));
        }
        if let Some((from_node, from_path)) = fields.get("from") {
            return Err(cx.err(
                from_node,
                &from_path,
                "a union takes its inputs from its `union:` list, not `from:`",
            ));
        }
        (OperatorKind::Union, inputs)
    } else if kind_name == "join" {
        if let Some((from_node, from_path)) = fields.get("from") {
            return Err(cx.err(
                from_node,
                &from_path,
                "a join takes its inputs from `left:` and `right:`, not `from:`",
            ));
        }
        let (join, inputs) = stateful::decode_join(cx, kind_node, &kind_path)?;
        (OperatorKind::Join(join), inputs)
    } else {
        let (from_node, from_path) = fields.required(cx, "from")?;
        let inputs = name_list(cx, from_node, &from_path)?;
        if inputs.len() != 1 {
            return Err(cx.err(
                from_node,
                &from_path,
                format!("`{kind_name}` takes one input; use a `union` operator to merge streams"),
            ));
        }
        let kind = decode_one_input_kind(cx, &mut fields, kind_name, kind_node, &kind_path)?;
        (kind, inputs)
    };
    let mut allowed = vec!["name", "from"];
    allowed.extend_from_slice(OPERATOR_KINDS);
    if kind_name == "aggregate" {
        allowed.extend_from_slice(&["group_by", "window"]);
    }
    fields.finish(cx, &allowed)?;
    Ok(OperatorSpec { name, inputs, kind })
}

/// The one operator kind key (`filter`, `join`, ...) that operator `name`'s mapping has.
fn operator_kind_name(
    cx: &Cx<'_>,
    fields: &Fields<'_>,
    node: &Node,
    path: &str,
    name: &str,
) -> Result<&'static str, SpecError> {
    let kinds: Vec<&str> = OPERATOR_KINDS
        .iter()
        .copied()
        .filter(|k| fields.has(k))
        .collect();
    match kinds.as_slice() {
        [one] => Ok(*one),
        [] => Err(cx.err(
            node,
            path,
            format!(
                "operator `{name}` needs one of: {}",
                OPERATOR_KINDS.join(", ")
            ),
        )),
        several => Err(cx.err(
            node,
            path,
            format!(
                "operator `{name}` has several kinds ({}); write one operator per step",
                several.join(", ")
            ),
        )),
    }
}

/// An operator of one input: its kind `kind_name`, whose value is `kind_node`.
fn decode_one_input_kind(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    kind_name: &str,
    kind_node: &Node,
    kind_path: &str,
) -> Result<OperatorKind, SpecError> {
    Ok(match kind_name {
        "filter" => OperatorKind::Filter(expr_text(cx, kind_node, kind_path)?),
        "map" => OperatorKind::Map(assignments(cx, kind_node, kind_path)?),
        "project" => OperatorKind::Project(assignments(cx, kind_node, kind_path)?),
        "aggregate" => OperatorKind::Aggregate(stateful::decode_aggregate(
            cx, fields, kind_node, kind_path,
        )?),
        "top" => OperatorKind::Top(stateful::decode_top(cx, kind_node, kind_path)?),
        "lookup" => OperatorKind::Lookup(stateful::decode_lookup(cx, kind_node, kind_path)?),
        "process" => OperatorKind::Process(stateful::decode_process(cx, kind_node, kind_path)?),
        _ => OperatorKind::KeyBy(key_list(cx, kind_node, kind_path)?),
    })
}

fn name_list(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Vec<Named>, SpecError> {
    let one = |node: &Node, path: &str| -> Result<Named, SpecError> {
        Ok(Named {
            name: scalar(cx, node, path)?.to_string(),
            pos: node.pos,
        })
    };
    match &node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(item, &format!("{path}[{i}]")))
            .collect(),
        _ => Ok(vec![one(node, path)?]),
    }
}

fn expr_text(cx: &Cx<'_>, node: &Node, path: &str) -> Result<ExprText, SpecError> {
    let text = scalar(cx, node, path)?;
    if text.trim().is_empty() {
        return Err(cx.err(node, path, "empty expression"));
    }
    Ok(ExprText {
        text: text.to_string(),
        path: path.to_string(),
        place: Place::Yaml(node.clone()),
    })
}

/// `field: expression` pairs of a `map` or `project`, in order.
fn assignments(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Vec<(Named, ExprText)>, SpecError> {
    let entries = named_entries(cx, node, path)?;
    if entries.is_empty() {
        return Err(cx.err(node, path, "expected at least one `field: expression`"));
    }
    entries
        .into_iter()
        .map(|(named, value, value_path)| Ok((named, expr_text(cx, value, &value_path)?)))
        .collect()
}

fn key_list(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Vec<ExprText>, SpecError> {
    match &node.kind {
        NodeKind::Seq(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| expr_text(cx, item, &format!("{path}[{i}]")))
            .collect(),
        NodeKind::Seq(_) => Err(cx.err(node, path, "key_by needs at least one key")),
        _ => Ok(vec![expr_text(cx, node, path)?]),
    }
}

const SINK_TYPES: &[&str] = &[
    "blackhole",
    "stdout",
    "file",
    "kafka",
    "postgres",
    "elasticsearch",
    "mongodb",
];

fn decode_sink(cx: &Cx<'_>, name: Named, node: &Node, path: &str) -> Result<SinkSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let (type_node, type_path) = fields.required(cx, "type")?;
    let (from_node, from_path) = fields.required(cx, "from")?;
    let input = Named {
        name: scalar(cx, from_node, &from_path)?.to_string(),
        pos: from_node.pos,
    };
    let (kind, allowed): (SinkKind, &[&str]) = match scalar(cx, type_node, &type_path)? {
        "blackhole" => (SinkKind::Blackhole, &["type", "from"]),
        "stdout" => (
            SinkKind::Stdout {
                format: decode_format(cx, &mut fields)?,
            },
            &["type", "from", "format"],
        ),
        "file" => (
            SinkKind::File(decode_file_sink(cx, &mut fields)?),
            FILE_SINK_KEYS,
        ),
        "kafka" => (
            SinkKind::Kafka(Box::new(kafka::decode_sink(cx, &mut fields)?)),
            kafka::KAFKA_SINK_KEYS,
        ),
        "postgres" => (
            SinkKind::Postgres(Box::new(postgres::decode_sink(cx, &mut fields)?)),
            postgres::POSTGRES_SINK_KEYS,
        ),
        "elasticsearch" => (
            SinkKind::Elasticsearch(Box::new(elasticsearch::decode_sink(cx, &mut fields)?)),
            elasticsearch::ELASTICSEARCH_SINK_KEYS,
        ),
        "mongodb" => (
            SinkKind::Mongodb(Box::new(mongodb::decode_sink(cx, &mut fields)?)),
            mongodb::MONGODB_SINK_KEYS,
        ),
        other => {
            return Err(cx.err(
                type_node,
                &type_path,
                unknown_choice("sink type", other, SINK_TYPES),
            ))
        }
    };
    fields.finish(cx, allowed)?;
    Ok(SinkSpec { name, input, kind })
}

/// The keys a file sink takes.
const FILE_SINK_KEYS: &[&str] = &[
    "type",
    "from",
    "path",
    "format",
    "roll_bytes",
    "csv_header",
    "partition_by",
];

/// The settings of a file sink.
fn decode_file_sink(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<FileSink, SpecError> {
    let (path_node, path_path) = fields.required(cx, "path")?;
    let dir = PathBuf::from(scalar(cx, path_node, &path_path)?);
    check_path_lengths(cx, path_node, &path_path, &dir)?;
    let format = decode_format(cx, fields)?;
    let roll_bytes = fields.u64(cx, "roll_bytes")?.unwrap_or(128 << 20).max(1);
    let csv_header = fields.bool(cx, "csv_header")?.unwrap_or(true);
    let partition_by = match fields.get("partition_by") {
        None => None,
        Some((node, key_path)) => Some(expr_text(cx, node, &key_path)?),
    };
    Ok(FileSink {
        path: dir,
        path_pos: path_node.pos,
        format,
        roll_bytes,
        csv_header,
        partition_by,
    })
}

/// The longest file name (one path component) Linux file systems take, in bytes (NAME_MAX).
pub const NAME_BYTES_MAX: usize = 255;
/// The longest path the kernel takes, in bytes, counting the terminating NUL (PATH_MAX).
pub const PATH_BYTES_MAX: usize = 4096;

/// Refuses a path that no file system could hold, without touching the disk: a component
/// longer than [`NAME_BYTES_MAX`] or a whole path of [`PATH_BYTES_MAX`] bytes or more.
fn check_path_lengths(cx: &Cx<'_>, node: &Node, path: &str, value: &Path) -> Result<(), SpecError> {
    use std::os::unix::ffi::OsStrExt;
    let total = value.as_os_str().len();
    if total >= PATH_BYTES_MAX {
        return Err(cx.err(
            node,
            path,
            format!("the path is {total} bytes long; paths must be shorter than {PATH_BYTES_MAX} bytes (PATH_MAX)"),
        ));
    }
    let longest = value
        .components()
        .map(|c| c.as_os_str().as_bytes().len())
        .max();
    match longest {
        Some(len) if len > NAME_BYTES_MAX => Err(cx.err(
            node,
            path,
            format!("a component of the path is {len} bytes long; file names may have at most {NAME_BYTES_MAX} bytes (NAME_MAX)"),
        )),
        _ => Ok(()),
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFormat::JsonLines => "jsonl",
            FileFormat::Csv => "csv",
        })
    }
}

#[cfg(test)]
mod tests;

/// A source or sink decoded from a generated YAML mapping (the SQL front end writes a table's
/// `WITH` options this way, so both front ends share one decoder per connector).
#[derive(Debug)]
pub(crate) enum DecodedTable {
    /// `type:` named a source.
    Source(SourceSpec),
    /// `type:` named a sink.
    Sink(SinkSpec),
}

/// Decodes `yaml`, one mapping, as a source (`sink == false`) or a sink named `name`; errors
/// carry positions in `yaml`, which the caller moves to its own text.
pub(crate) fn decode_table(
    file: &str,
    name: Named,
    yaml: &str,
    sink: bool,
) -> Result<DecodedTable, SpecError> {
    let cx = Cx { file };
    let root = yaml::parse(yaml).map_err(|(pos, message)| SpecError {
        file: file.to_string(),
        pos,
        path: String::new(),
        message,
    })?;
    let path = name.name.clone();
    if sink {
        decode_sink(&cx, name, &root, &path).map(DecodedTable::Sink)
    } else {
        decode_source(&cx, name, &root, &path).map(DecodedTable::Source)
    }
}
