//! The SQL front end: Flink-style streaming SQL lowered to the same [`PipelineSpec`] the YAML
//! front end decodes, so the planner, the checks and the engine run it unchanged.
//!
//! The shared layer is [`PipelineSpec`]: typed sources, operators and sinks, with expressions
//! as text in Wire's expression language ([`ExprText`]) that carries its own map back to the
//! file it came from. YAML is decoded into it; SQL is parsed with the `sqlparser` crate and
//! lowered into it here. A table's `WITH` options are written as a YAML mapping and decoded by
//! the YAML front end's connector decoders, so every connector takes the same options in both.
//! The reference for users is docs/sql.md.

mod connector;
mod explain;
mod expr;
mod group;
mod lookup;
mod over;
mod prep;
mod process;
mod query;
pub mod session;
mod settings;
#[cfg(test)]
mod tests;

pub use explain::explain;
use sqlparser::ast::{
    ColumnOption, CreateTable, CreateTableOptions, Expr, ObjectName, SqlOption, Statement,
    TableObject,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;

use crate::frontend::spec::{
    decode_table, DecodedTable, Named, Origin, PipelineSpec, Pos, SinkSpec, SourceSpec, SpecError,
};

/// An error at a place in the SQL text.
#[derive(Debug, Clone)]
pub(crate) struct SqlError {
    pos: Pos,
    message: String,
}

fn pos_of(at: Location) -> Pos {
    Pos {
        line: usize::try_from(at.line).unwrap_or(usize::MAX),
        column: usize::try_from(at.column).unwrap_or(usize::MAX),
    }
}

fn err<T>(pos: Pos, message: impl Into<String>) -> Result<T, SqlError> {
    Err(SqlError {
        pos,
        message: message.into(),
    })
}

/// Parses and lowers SQL text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<PipelineSpec, SpecError> {
    let to_spec = |e: SqlError| SpecError {
        file: file.to_string(),
        pos: e.pos,
        path: String::new(),
        message: e.message,
    };
    let prepared = prep::prepare(text).map_err(to_spec)?;
    let statements = Parser::parse_sql(&GenericDialect {}, &prepared.text)
        .map_err(|e| to_spec(parser_error(&e.to_string())))?;
    let name = std::path::Path::new(file)
        .file_stem()
        .map_or_else(|| "pipeline".to_string(), |s| s.to_string_lossy().into());
    let origin = Origin {
        file: file.to_string(),
        text: text.to_string(),
    };
    let mut lower = query::Lower::new(file, name, origin);
    for mark in prepared.watermarks {
        lower.watermarks.push(mark);
    }
    lower.temporals = prepared.temporals;
    lower.proctimes = prepared.proctimes;
    lower.metadata = prepared.metadata;
    lower.partitions = prepared.partitions;
    let settings = settings::read(&prepared.sets).map_err(to_spec)?;
    for statement in &statements {
        lower.statement(statement).map_err(to_spec)?;
    }
    let mut spec = lower.finish().map_err(to_spec)?;
    settings.apply(&mut spec);
    Ok(spec)
}

/// A parser message `... at Line: L, Column: C` as an error at that place.
fn parser_error(message: &str) -> SqlError {
    let message = message
        .strip_prefix("sql parser error: ")
        .unwrap_or(message);
    let (text, pos) = match message.rsplit_once(" at Line: ") {
        Some((text, place)) => {
            let mut parts = place.split(", Column: ");
            let line = parts
                .next()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(1);
            let column = parts
                .next()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(1);
            (text, Pos { line, column })
        }
        None => (message, Pos { line: 1, column: 1 }),
    };
    SqlError {
        pos,
        message: format!("invalid SQL: {text}"),
    }
}

/// A `CREATE TABLE`: a source when read, a sink when inserted into.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    name: Named,
    columns: Vec<(String, String)>,
    options: Vec<(String, String, Pos)>,
    watermark: Option<(String, i64)>,
    /// `PRIMARY KEY (...)`: its columns and place.
    primary_key: Option<(Vec<String>, Pos)>,
    /// The `METADATA` columns (not part of the payload's schema).
    metadata: Vec<prep::Metadata>,
}

/// The last part of a dotted name.
fn object_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map_or_else(|| name.to_string(), |id| id.value.clone())
}

fn name_pos(name: &ObjectName, fallback: Pos) -> Pos {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .filter(|id| id.span.start.line > 0)
        .map_or(fallback, |id| pos_of(id.span.start))
}

/// Reads a `CREATE TABLE` statement.
fn table(create: &CreateTable, at: Pos) -> Result<Table, SqlError> {
    let pos = name_pos(&create.name, at);
    let mut columns = Vec::new();
    for column in &create.columns {
        let Some(kind) = expr::type_name(&column.data_type) else {
            return err(
                pos_of(column.name.span.start),
                format!("column `{}`: the type `{}` is not supported (BIGINT, INT, DOUBLE, BOOLEAN, VARCHAR, STRING, BYTES, TIMESTAMP(3))", column.name.value, column.data_type),
            );
        };
        let not_null = column.options.iter().any(|o| {
            matches!(
                o.option,
                ColumnOption::NotNull | ColumnOption::Unique { .. }
            )
        });
        let ty = if not_null {
            kind.to_string()
        } else {
            format!("{kind}?")
        };
        columns.push((column.name.value.clone(), ty));
    }
    let mut options = Vec::new();
    if let CreateTableOptions::With(list) = &create.table_options {
        for option in list {
            let SqlOption::KeyValue { key, value } = option else {
                return err(
                    pos,
                    format!(
                        "table `{}`: expected `'key' = 'value'` options",
                        create.name
                    ),
                );
            };
            let value_pos = expr::start_of(value).unwrap_or(pos);
            let text = match value {
                Expr::Value(v) => match &v.value {
                    sqlparser::ast::Value::SingleQuotedString(s)
                    | sqlparser::ast::Value::Number(s, _) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            options.push((key.value.clone(), text, value_pos));
        }
    } else if !matches!(create.table_options, CreateTableOptions::None) {
        return err(
            pos,
            "only `WITH ('key' = 'value', ...)` options are supported",
        );
    }
    let name = Named {
        name: object_name(&create.name),
        pos,
    };
    Ok(Table {
        name,
        columns,
        options,
        watermark: None,
        primary_key: connector::primary_key(create, pos)?,
        metadata: Vec::new(),
    })
}

/// The table option that sets a source's watermark idle timeout (Flink's name).
const IDLE_TIMEOUT_OPTION: &str = "scan.watermark.idle-timeout";

/// Flink's connector names and option keys, as Wire's YAML keys.
fn yaml_key(key: &str) -> String {
    match key {
        "properties.bootstrap.servers" => "brokers".into(),
        "scan.startup.mode" => "start".into(),
        "scan.startup.timestamp-millis" => "start_timestamp_ms".into(),
        other => other.replace(['.', '-'], "_"),
    }
}

fn yaml_type(connector: &str) -> &str {
    match connector {
        "filesystem" => "file",
        "print" => "stdout",
        "jdbc" => "postgres",
        "upsert-kafka" => "kafka",
        other => other,
    }
}

impl Table {
    fn option_pos(&self, key: &str) -> Pos {
        self.options
            .iter()
            .find(|(k, _, _)| yaml_key(k) == key || k == key || (k == "topic" && key == "topics"))
            .map_or(self.name.pos, |(_, _, p)| *p)
    }

    /// The table as a YAML mapping for the shared decoders; `from` for a sink.
    fn yaml(&self, from: Option<&str>) -> Result<String, SqlError> {
        let json = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let Some((_, connector, _)) = self.options.iter().find(|(k, _, _)| k == "connector") else {
            return err(self.name.pos, format!("table `{}` needs a `'connector' = '...'` option (nexmark, file, ingest, kafka, mongodb, blackhole, stdout, postgres, elasticsearch)", self.name.name));
        };
        let kind = yaml_type(connector);
        let mut out = format!("type: {}\n", json(kind));
        let mut properties = Vec::new();
        let mut maps: Vec<(&str, Vec<String>)> = Vec::new();
        for (key, value, _) in &self.options {
            if key == "connector" || key == IDLE_TIMEOUT_OPTION {
                continue;
            }
            if let Some(property) = key
                .strip_prefix("properties.")
                .filter(|k| *k != "bootstrap.servers")
            {
                properties.push(format!("  {}: {}\n", json(property), json(value)));
                continue;
            }
            if let Some((map, field)) = connector::map_option(key) {
                let entry = format!("  {}: {}\n", json(field), json(value));
                match maps.iter_mut().find(|(m, _)| *m == map) {
                    Some((_, entries)) => entries.push(entry),
                    None => maps.push((map, vec![entry])),
                }
                continue;
            }
            if connector::is_list_option(kind, key) {
                let items: Vec<String> = value.split(',').map(|v| json(v.trim())).collect();
                out.push_str(&format!("{}: [{}]\n", json(key), items.join(", ")));
                continue;
            }
            if key == "scan.startup.mode" {
                // Flink's names for the start positions Wire has.
                let start = match value.as_str() {
                    "earliest-offset" => "earliest",
                    "latest-offset" => "latest",
                    other => other,
                };
                out.push_str(&format!("start: {}\n", json(start)));
                continue;
            }
            if key == "topic" && kind == "kafka" {
                if from.is_some() {
                    out.push_str(&format!("topic: {}\n", json(value)));
                } else {
                    // Flink's source `'topic'` lists topics separated by `;`.
                    let topics: Vec<String> = value.split(';').map(|t| json(t.trim())).collect();
                    out.push_str(&format!("topics: [{}]\n", topics.join(", ")));
                }
                continue;
            }
            out.push_str(&format!("{}: {}\n", json(&yaml_key(key)), json(value)));
        }
        if connector == "upsert-kafka" && !self.options.iter().any(|(k, _, _)| k == "upsert") {
            out.push_str("upsert: true\n");
        }
        if !properties.is_empty() {
            out.push_str("properties:\n");
            out.extend(properties);
        }
        for (map, entries) in maps {
            out.push_str(&format!("{map}:\n"));
            out.extend(entries);
        }
        match from {
            Some(input) => {
                self.primary_key_yaml(kind, &mut out)?;
                out.push_str(&format!("from: {}\n", json(input)));
            }
            None => {
                if let Some((_, pos)) = &self.primary_key {
                    return err(*pos, format!("table `{}`: PRIMARY KEY is read only on sink tables (the upsert key of postgres, mongodb, elasticsearch and kafka sinks), not on a source", self.name.name));
                }
                if connector == "upsert-kafka" {
                    return err(self.name.pos, format!("table `{}`: `upsert-kafka` is a sink here; read the topic with 'connector' = 'kafka'", self.name.name));
                }
                self.metadata_yaml(kind, &mut out)?;
                self.source_yaml(kind, &mut out)?;
            }
        }
        Ok(out)
    }

    fn source_yaml(&self, kind: &str, out: &mut String) -> Result<(), SqlError> {
        let json = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        if kind == "nexmark" && !self.options.iter().any(|(k, _, _)| k == "stream") {
            out.push_str(&format!(
                "stream: {}\n",
                json(&self.name.name.to_ascii_lowercase())
            ));
        }
        if kind != "nexmark" && !self.columns.is_empty() {
            out.push_str("schema:\n");
            for (name, ty) in &self.columns {
                out.push_str(&format!("  {}: {}\n", json(name), json(ty)));
            }
        }
        let idle = self.idle_timeout()?;
        let idle = idle.map_or_else(String::new, |ms| format!(", idle_timeout: {ms}"));
        match &self.watermark {
            Some((column, delay)) => {
                if kind != "nexmark" {
                    out.push_str(&format!("event_time: {}\n", json(column)));
                }
                out.push_str(&format!(
                    "watermark: {{max_out_of_orderness: {delay}{idle}}}\n"
                ));
            }
            None if !idle.is_empty() => {
                out.push_str(&format!("watermark: {{{}}}\n", &idle[2..]));
            }
            None => {}
        }
        Ok(())
    }

    /// Flink's `'scan.watermark.idle-timeout'` option, in milliseconds.
    fn idle_timeout(&self) -> Result<Option<i64>, SqlError> {
        let Some((_, value, pos)) = self
            .options
            .iter()
            .find(|(k, _, _)| k == IDLE_TIMEOUT_OPTION)
        else {
            return Ok(None);
        };
        match settings::duration(value) {
            Ok(0) | Err(_) => err(
                *pos,
                format!(
                    "table `{}`: '{IDLE_TIMEOUT_OPTION}' takes a duration longer than 0 (`30 s`, `1 min`), not `{value}`",
                    self.name.name
                ),
            ),
            Ok(ms) => Ok(Some(ms)),
        }
    }

    /// Decodes the table as a source, or as a sink reading `from`.
    fn decode(&self, file: &str, from: Option<&str>) -> Result<DecodedTable, SqlError> {
        let yaml = self.yaml(from)?;
        decode_table(file, self.name.clone(), &yaml, from.is_some()).map_err(|e| {
            let key = e.path.rsplit('.').next().unwrap_or_default().to_string();
            SqlError {
                pos: self.option_pos(&key),
                message: format!("table `{}`: {}", self.name.name, e.message),
            }
        })
    }

    pub(crate) fn source(&self, file: &str) -> Result<SourceSpec, SqlError> {
        match self.decode(file, None)? {
            DecodedTable::Source(mut source) => {
                relocate_source(&mut source, self.name.pos);
                Ok(source)
            }
            DecodedTable::Sink(_) => err(self.name.pos, "expected a source"),
        }
    }

    pub(crate) fn sink(&self, file: &str, from: &str) -> Result<SinkSpec, SqlError> {
        match self.decode(file, Some(from))? {
            DecodedTable::Sink(mut sink) => {
                sink.name.pos = self.name.pos;
                if let crate::frontend::spec::SinkKind::File(f) = &mut sink.kind {
                    f.path_pos = self.option_pos("path");
                    if let Some(e) = f.partition_by.as_mut() {
                        e.relocate(self.option_pos("partition_by"));
                    }
                }
                Ok(sink)
            }
            DecodedTable::Source(_) => err(self.name.pos, "expected a sink"),
        }
    }
}

/// Moves the positions of a source decoded from generated YAML to its table.
fn relocate_source(source: &mut SourceSpec, pos: Pos) {
    source.name.pos = pos;
    if let crate::frontend::spec::SourceKind::File(f) = &mut source.kind {
        f.path_pos = pos;
        if let Some(t) = f.event_time.as_mut() {
            t.pos = pos;
        }
    }
}

/// Statement kinds accepted, for the error on any other.
const STATEMENTS: &str = "CREATE TABLE, CREATE [TEMPORARY] VIEW, INSERT INTO ... SELECT, SET";

fn statement_name(statement: &Statement) -> String {
    let text = statement.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The insert's target table.
fn insert_target(table: &TableObject) -> Option<&ObjectName> {
    match table {
        TableObject::TableName(name) => Some(name),
        _ => None,
    }
}
