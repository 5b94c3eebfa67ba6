//! `type: postgres` sinks (docs/pipeline.md, "PostgreSQL").

use super::yaml::NodeKind;
use super::{assignments, scalar, unknown_choice, Cx, ExprText, Fields, KafkaDelivery, SpecError};

/// How a PostgreSQL sink writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresMode {
    /// `INSERT` every row (default).
    Append,
    /// `INSERT … ON CONFLICT (key) DO UPDATE`; rows whose `op` is `-D` delete their key, `-U`
    /// rows are skipped.
    Upsert,
}

/// `type: postgres` as a sink.
#[derive(Debug, Clone)]
pub struct PostgresSink {
    /// `postgres://user:password@host:port/database`; `${NAME}` is replaced by the
    /// environment variable `NAME` when the sink connects (never in errors or logs).
    pub url: String,
    /// The table, `name` or `schema.name`.
    pub table: String,
    /// `columns: {column: expression}`; every field of the input under its own name when
    /// empty (without `op` in upsert mode).
    pub columns: Vec<(String, ExprText)>,
    /// Insert or upsert.
    pub mode: PostgresMode,
    /// Upsert: the columns of the table's primary key or unique constraint.
    pub key: Vec<String>,
    /// At-least-once writes as rows come; exactly-once writes each checkpoint's rows in one
    /// transaction with a progress row.
    pub delivery: KafkaDelivery,
    /// Rows per `INSERT` statement (default 500).
    pub batch_rows: usize,
    /// The progress table exactly-once keeps its checkpoint ids in (default `wire_progress`).
    pub progress_table: String,
    /// How long an unreachable server is retried, in milliseconds (default 30000).
    pub connect_timeout_ms: u64,
    /// Rows the server refuses (a constraint or a value it does not take).
    pub errors: super::SinkErrors,
}

pub(super) const POSTGRES_SINK_KEYS: &[&str] = &[
    "type",
    "from",
    "url",
    "table",
    "columns",
    "mode",
    "key",
    "delivery",
    "batch_rows",
    "progress_table",
    "connect_timeout_ms",
    "on_error",
    "dead_letter",
    "dead_letter_topic",
    "dead_letter_brokers",
];

pub(super) fn decode_sink(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<PostgresSink, SpecError> {
    let url = decode_url(cx, fields)?;
    let table = decode_table(cx, fields)?;
    let columns = match fields.get("columns") {
        None => Vec::new(),
        Some((node, path)) => assignments(cx, node, &path)?
            .into_iter()
            .map(|(named, expr)| (named.name, expr))
            .collect(),
    };
    for (column, expr) in &columns {
        if !identifier(column) {
            let message = format!("`{column}` is not a column name (letters, digits, `_`)");
            return Err(SpecError {
                file: cx.file.to_string(),
                pos: expr.position_of_start(),
                path: expr.path.clone(),
                message,
            });
        }
    }
    let mode = match fields.get("mode") {
        None => PostgresMode::Append,
        Some((node, path)) => match scalar(cx, node, &path)? {
            "append" => PostgresMode::Append,
            "upsert" => PostgresMode::Upsert,
            other => {
                return Err(cx.err(
                    node,
                    &path,
                    unknown_choice("mode", other, &["append", "upsert"]),
                ))
            }
        },
    };
    let key = key_columns(cx, fields, mode, &columns)?;
    let delivery = super::kafka::decode_delivery(cx, fields)?;
    let batch_rows = fields.u64(cx, "batch_rows")?.unwrap_or(500);
    if !(1..=10_000).contains(&batch_rows) {
        let (node, path) = fields.get("batch_rows").expect("just read");
        return Err(cx.err(node, &path, "batch_rows must be in 1..=10000"));
    }
    let progress_table = fields
        .string(cx, "progress_table")?
        .unwrap_or_else(|| "wire_progress".to_string());
    if !progress_table.split('.').all(identifier) {
        let (node, path) = fields.get("progress_table").expect("just read");
        return Err(cx.err(node, &path, "not a table name (letters, digits, `_`)"));
    }
    let connect_timeout_ms = super::kafka::connect_timeout(cx, fields)?;
    Ok(PostgresSink {
        url,
        table,
        columns,
        mode,
        key,
        delivery,
        batch_rows: batch_rows as usize,
        progress_table,
        connect_timeout_ms,
        errors: super::elasticsearch::decode_errors(cx, fields)?,
    })
}

/// `url:`, a PostgreSQL URL whose `${NAME}`s are closed.
fn decode_url(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<String, SpecError> {
    let (node, path) = fields.required(cx, "url")?;
    let url = scalar(cx, node, &path)?.to_string();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let message = "expected a URL like postgres://user:${PGPASSWORD}@127.0.0.1:5432/db";
        return Err(cx.err(node, &path, message));
    }
    if let Some(name) = bad_substitution(&url) {
        return Err(cx.err(
            node,
            &path,
            format!("`${{{name}` is not closed by `}}` or names no variable"),
        ));
    }
    Ok(url)
}

/// `table:`, `name` or `schema.name`.
fn decode_table(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<String, SpecError> {
    let (node, path) = fields.required(cx, "table")?;
    let table = scalar(cx, node, &path)?.to_string();
    if table.split('.').count() > 2 || !table.split('.').all(identifier) {
        return Err(cx.err(
            node,
            &path,
            format!(
                "`{table}` is not a table name like `name` or `schema.name` (letters, digits, `_`)"
            ),
        ));
    }
    Ok(table)
}

/// `key: [column, …]`: required for upsert, refused for append; each must be a mapped column
/// when `columns` is given (the plan checks them against the fields otherwise).
fn key_columns(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    mode: PostgresMode,
    columns: &[(String, ExprText)],
) -> Result<Vec<String>, SpecError> {
    let Some((node, path)) = fields.get("key") else {
        if mode == PostgresMode::Upsert {
            return Err(cx.err(
                fields.node,
                &fields.path,
                "mode: upsert needs `key: [column, …]`",
            ));
        }
        return Ok(Vec::new());
    };
    if mode == PostgresMode::Append {
        return Err(cx.err(node, &path, "`key` is for mode: upsert"));
    }
    key_names(cx, node, &path, columns)
}

/// The names of a `key:` list (or one name); each must be one of `columns` when they are
/// given (the plan checks them against the fields otherwise).
pub(super) fn key_names(
    cx: &Cx<'_>,
    node: &super::Node,
    path: &str,
    columns: &[(String, ExprText)],
) -> Result<Vec<String>, SpecError> {
    let path = path.to_string();
    let items: Vec<(&super::Node, String)> = match &node.kind {
        NodeKind::Seq(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| (item, format!("{path}[{i}]")))
            .collect(),
        NodeKind::Seq(_) => return Err(cx.err(node, &path, "key needs at least one column")),
        _ => vec![(node, path.clone())],
    };
    let mut key = Vec::new();
    for (item, item_path) in items {
        let name = scalar(cx, item, &item_path)?;
        if !columns.is_empty() && !columns.iter().any(|(column, _)| column == name) {
            return Err(cx.err(
                item,
                &item_path,
                format!("`{name}` is not one of the `columns`"),
            ));
        }
        key.push(name.to_string());
    }
    Ok(key)
}

/// A plain SQL identifier (quoted when written, so case is kept).
pub(crate) fn identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// The text after the first `${` that is not a closed variable name, if any.
pub(super) fn bad_substitution(url: &str) -> Option<String> {
    let mut rest = url;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end)
                if end > 0
                    && after[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                rest = &after[end + 1..];
            }
            _ => return Some(after.chars().take(16).collect()),
        }
    }
    None
}
