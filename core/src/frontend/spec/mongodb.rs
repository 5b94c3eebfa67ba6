//! `type: mongodb` sources and sinks (docs/pipeline.md, "MongoDB"; ADR 0009).

use super::{
    assignments, decode_event_time, decode_schema, scalar, unknown_choice, Cx, ExprText, Fields,
    Named, SinkErrors, SpecError,
};
use crate::record::schema::Schema;

/// How a MongoDB sink writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MongoMode {
    /// `insertOne` every row (default); with `key`, a document already there (a replay) counts
    /// as written.
    Insert,
    /// `replaceOne` with `upsert: true` by `_id`; rows whose `op` is `-D` delete their `_id`,
    /// `-U` rows are skipped.
    Upsert,
}

/// `type: mongodb` as a sink.
#[derive(Debug, Clone)]
pub struct MongoSink {
    /// `mongodb://user:password@host:port/?options`; `${NAME}` is replaced by the environment
    /// variable `NAME` when the sink connects (never in errors or logs).
    pub uri: String,
    /// The database.
    pub database: String,
    /// The collection documents go to.
    pub collection: String,
    /// Insert or upsert.
    pub mode: MongoMode,
    /// The fields the document `_id` is made of (one: its value; several: a sub-document);
    /// required for upsert. Without it the server picks ids and a replay duplicates documents.
    pub key: Vec<String>,
    /// `document: {field: expression}`; every field of the input (without `op`) when empty.
    pub document: Vec<(String, ExprText)>,
    /// Documents per unordered bulk write (default 500).
    pub batch_rows: usize,
    /// How long an unreachable server is retried, in milliseconds (default 30000).
    pub connect_timeout_ms: u64,
    /// Documents the server refuses.
    pub errors: SinkErrors,
}

/// How a MongoDB source reads its collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MongoRead {
    /// Every document once, in `_id` order, then the source ends (bounded).
    Scan,
    /// The collection's change stream as an update stream (an `op` field first: `+I` for an
    /// insert, `+U` for an update or replacement with the document after it, `-D` for a delete
    /// with only `_id` and the event time filled), until the pipeline stops; the resume token
    /// goes into checkpoints.
    ChangeStream,
}

/// Where a change stream starts when no checkpoint is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MongoStart {
    /// At the first change after the stream opens (default).
    Now,
    /// After the change whose resume token has this `_data` (hex).
    ResumeAfter(String),
    /// At the first change at or after this cluster time (seconds since the epoch, increment).
    OperationTime {
        /// Seconds since the epoch.
        seconds: u32,
        /// The order within the second.
        increment: u32,
    },
}

/// `type: mongodb` as a source.
#[derive(Debug, Clone)]
pub struct MongoSource {
    /// `mongodb://…`, with `${NAME}` substituted when the source connects.
    pub uri: String,
    /// The database.
    pub database: String,
    /// The collection read.
    pub collection: String,
    /// Scan or change stream.
    pub mode: MongoRead,
    /// Where a change stream starts (`resume_after` or `start_at_operation_time`).
    pub start: MongoStart,
    /// The document fields made into rows (a missing field is null when nullable).
    pub schema: Schema,
    /// Field holding the event time, if any.
    pub event_time: Option<Named>,
    /// How long an unreachable server is retried, in milliseconds (default 30000).
    pub connect_timeout_ms: u64,
    /// Documents that do not fit `schema` (`on_error`, `dead_letter`).
    pub errors: SinkErrors,
}

pub(super) const MONGODB_SINK_KEYS: &[&str] = &[
    "type",
    "from",
    "uri",
    "database",
    "collection",
    "mode",
    "key",
    "document",
    "batch_rows",
    "connect_timeout_ms",
    "on_error",
    "dead_letter",
    "dead_letter_topic",
    "dead_letter_brokers",
];

pub(super) const MONGODB_SOURCE_KEYS: &[&str] = &[
    "type",
    "uri",
    "database",
    "collection",
    "mode",
    "resume_after",
    "start_at_operation_time",
    "schema",
    "event_time",
    "watermark",
    "connect_timeout_ms",
    "on_error",
    "dead_letter",
    "dead_letter_topic",
    "dead_letter_brokers",
];

pub(super) fn decode_sink(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<MongoSink, SpecError> {
    let (uri, database, collection) = decode_target(cx, fields)?;
    let document = match fields.get("document") {
        None => Vec::new(),
        Some((node, path)) => assignments(cx, node, &path)?
            .into_iter()
            .map(|(named, expr)| (named.name, expr))
            .collect(),
    };
    let mode = match fields.get("mode") {
        None => MongoMode::Insert,
        Some((node, path)) => match scalar(cx, node, &path)? {
            "insert" => MongoMode::Insert,
            "upsert" => MongoMode::Upsert,
            other => {
                let message = unknown_choice("mode", other, &["insert", "upsert"]);
                return Err(cx.err(node, &path, message));
            }
        },
    };
    let key = match fields.get("key") {
        None if mode == MongoMode::Upsert => {
            return Err(cx.err(
                fields.node,
                &fields.path,
                "mode: upsert needs `key: [field, …]` (the document `_id` is made of them)",
            ));
        }
        None => Vec::new(),
        Some((node, path)) => super::postgres::key_names(cx, node, &path, &document)?,
    };
    let batch_rows = fields.u64(cx, "batch_rows")?.unwrap_or(500);
    if !(1..=100_000).contains(&batch_rows) {
        let (node, path) = fields.get("batch_rows").expect("just read");
        return Err(cx.err(node, &path, "batch_rows must be in 1..=100000"));
    }
    Ok(MongoSink {
        uri,
        database,
        collection,
        mode,
        key,
        document,
        batch_rows: batch_rows as usize,
        connect_timeout_ms: super::kafka::connect_timeout(cx, fields)?,
        errors: super::elasticsearch::decode_errors(cx, fields)?,
    })
}

pub(super) fn decode_source(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
) -> Result<MongoSource, SpecError> {
    let (uri, database, collection) = decode_target(cx, fields)?;
    let mode = match fields.get("mode") {
        None => MongoRead::Scan,
        Some((node, path)) => match scalar(cx, node, &path)? {
            "scan" => MongoRead::Scan,
            "change_stream" => MongoRead::ChangeStream,
            other => {
                let message = unknown_choice("mode", other, &["scan", "change_stream"]);
                return Err(cx.err(node, &path, message));
            }
        },
    };
    let start = decode_start(cx, fields, mode)?;
    let schema = decode_schema(cx, fields)?;
    if mode == MongoRead::ChangeStream && schema.index_of("_id").is_none() {
        let (node, path) = fields.get("schema").expect("just read");
        let message = "mode: change_stream needs `_id` in the schema: a delete carries only the document's `_id`";
        return Err(cx.err(node, &path, message));
    }
    let event_time = decode_event_time(cx, fields)?;
    let connect_timeout_ms = super::kafka::connect_timeout(cx, fields)?;
    let errors = super::elasticsearch::decode_errors(cx, fields)?;
    let taken = std::mem::replace(fields, Fields::empty(fields.node));
    taken.finish(cx, MONGODB_SOURCE_KEYS)?;
    Ok(MongoSource {
        uri,
        database,
        collection,
        mode,
        start,
        schema,
        event_time,
        connect_timeout_ms,
        errors,
    })
}

/// `resume_after` or `start_at_operation_time` (not both, and only for a change stream).
fn decode_start(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    mode: MongoRead,
) -> Result<MongoStart, SpecError> {
    let after = fields.get("resume_after");
    let at = fields.get("start_at_operation_time");
    if let (Some(_), Some((node, path))) = (&after, &at) {
        let message = "give `resume_after` or `start_at_operation_time`, not both";
        return Err(cx.err(node, path, message));
    }
    let Some((node, path, key)) = after
        .map(|(node, path)| (node, path, "resume_after"))
        .or(at.map(|(node, path)| (node, path, "start_at_operation_time")))
    else {
        return Ok(MongoStart::Now);
    };
    if mode != MongoRead::ChangeStream {
        let message = format!("`{key}` is for `mode: change_stream`; a scan reads everything");
        return Err(cx.err(node, &path, message));
    }
    let text = scalar(cx, node, &path)?;
    if key == "resume_after" {
        let hex = !text.is_empty() && text.len() % 2 == 0;
        if !hex || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let message = format!("`{text}` is not a resume token: give its `_data` (hex digits), as in a change event's `_id: {{_data: …}}`");
            return Err(cx.err(node, &path, message));
        }
        return Ok(MongoStart::ResumeAfter(text.to_string()));
    }
    operation_time(text).ok_or_else(|| {
        let message = format!("`{text}` is not a cluster time: expected an RFC 3339 time in whole seconds (2026-12-06T02:00:00Z) or `<seconds>:<increment>` (1796524331:3)");
        cx.err(node, &path, message)
    })
}

/// A cluster time: `<seconds>:<increment>`, or an RFC 3339 time in whole seconds (increment 0).
fn operation_time(text: &str) -> Option<MongoStart> {
    if let Some((seconds, increment)) = text.split_once(':').filter(|_| !text.contains('-')) {
        return Some(MongoStart::OperationTime {
            seconds: seconds.trim().parse().ok()?,
            increment: increment.trim().parse().ok()?,
        });
    }
    let ms = crate::time::parse_rfc3339(text).ok()?;
    if ms % 1000 != 0 {
        return None;
    }
    Some(MongoStart::OperationTime {
        seconds: u32::try_from(ms / 1000).ok()?,
        increment: 0,
    })
}

/// `uri`, `database` and `collection`, checked for what the server would refuse.
fn decode_target(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
) -> Result<(String, String, String), SpecError> {
    let (node, path) = fields.required(cx, "uri")?;
    let uri = scalar(cx, node, &path)?.to_string();
    if uri.starts_with("mongodb+srv://") {
        let message = "`mongodb+srv://` needs DNS SRV look-ups, which Wire does not do: list the hosts in a mongodb:// URI";
        return Err(cx.err(node, &path, message));
    }
    // A URI read whole from the environment (`${MONGO_URI}`) is checked when the run starts.
    if !uri.starts_with("mongodb://") && !uri.starts_with("${") {
        let message = "expected a URI like mongodb://user:${MONGO_PASSWORD}@127.0.0.1:27017";
        return Err(cx.err(node, &path, message));
    }
    if let Some(name) = super::postgres::bad_substitution(&uri) {
        let message = format!("`${{{name}` is not closed by `}}` or names no variable");
        return Err(cx.err(node, &path, message));
    }
    let (node, path) = fields.required(cx, "database")?;
    let database = scalar(cx, node, &path)?.to_string();
    // The server's rule: no `/\. "$`, NUL, or more than 63 bytes.
    if database.is_empty()
        || database.len() > 63
        || database.contains(['/', '\\', '.', ' ', '"', '$', '\0'])
    {
        let message =
            format!("`{database}` is not a database name (at most 63 bytes, none of /\\. \"$)");
        return Err(cx.err(node, &path, message));
    }
    let (node, path) = fields.required(cx, "collection")?;
    let collection = scalar(cx, node, &path)?.to_string();
    if collection.is_empty()
        || collection.starts_with("system.")
        || collection.contains(['$', '\0'])
    {
        let message = format!(
            "`{collection}` is not a collection name (not empty, no `$`, not starting with `system.`)"
        );
        return Err(cx.err(node, &path, message));
    }
    Ok((uri, database, collection))
}
