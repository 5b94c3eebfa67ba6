//! `type: elasticsearch` sinks (docs/pipeline.md, "Elasticsearch and OpenSearch"; ADR 0008),
//! and the `on_error` / `dead_letter` keys sinks share.

use std::path::PathBuf;

use super::{assignments, expr_text, scalar, unknown_choice, Cx, ExprText, Fields, SpecError};

/// What a sink does with a row the external system refuses (a 4xx bulk item, a document
/// that does not fit the mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOnError {
    /// The pipeline fails with the system's error (default).
    Fail,
    /// The row is dropped and counted.
    Skip,
    /// The row goes to the dead-letter file or topic with the error and is counted.
    DeadLetter,
}

/// Where dead letters go: `dead_letter: <file>`, or `dead_letter_topic` with
/// `dead_letter_brokers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTo {
    /// A JSON-lines file letters are appended to.
    File(PathBuf),
    /// A Kafka topic letters are produced to.
    Topic {
        /// Bootstrap brokers, `host:port` separated by commas.
        brokers: String,
        /// The dead-letter topic.
        topic: String,
    },
}

/// `on_error` and where dead letters go, for a sink (or a source of documents).
#[derive(Debug, Clone)]
pub struct SinkErrors {
    /// What happens to a refused row.
    pub on_error: SinkOnError,
    /// `on_error: dead_letter`: where refused rows go.
    pub dead_letter: Option<DeadLetterTo>,
}

/// `type: elasticsearch` as a sink (Elasticsearch or OpenSearch, through `_bulk`).
#[derive(Debug, Clone)]
pub struct ElasticsearchSink {
    /// `http://host:port` or `https://host:port` (a path prefix is kept).
    pub url: String,
    /// The index documents go to.
    pub index: String,
    /// The document id; without it the server picks ids and a replay duplicates documents.
    pub id: Option<ExprText>,
    /// `document: {field: expression}`; every field of the input (without `op`) when empty.
    pub document: Vec<(String, ExprText)>,
    /// Basic auth user name.
    pub username: Option<String>,
    /// Basic auth password: `${NAME}` reads the environment variable when the sink starts.
    pub password: Option<String>,
    /// Basic auth password read from this file when the sink starts.
    pub password_file: Option<PathBuf>,
    /// `Authorization: ApiKey …`: `${NAME}` reads the environment variable.
    pub api_key: Option<String>,
    /// The API key read from this file when the sink starts.
    pub api_key_file: Option<PathBuf>,
    /// Rows per `_bulk` request (default 500).
    pub batch_rows: usize,
    /// How long unreachable servers and 429/5xx items are retried, in milliseconds (default
    /// 30000).
    pub connect_timeout_ms: u64,
    /// Refused documents.
    pub errors: SinkErrors,
}

pub(super) const ELASTICSEARCH_SINK_KEYS: &[&str] = &[
    "type",
    "from",
    "url",
    "index",
    "id",
    "document",
    "username",
    "password",
    "password_file",
    "api_key",
    "api_key_file",
    "batch_rows",
    "connect_timeout_ms",
    "on_error",
    "dead_letter",
    "dead_letter_topic",
    "dead_letter_brokers",
];

pub(super) fn decode_sink(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
) -> Result<ElasticsearchSink, SpecError> {
    let (node, path) = fields.required(cx, "url")?;
    let url = scalar(cx, node, &path)?.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(cx.err(node, &path, "expected a URL like http://127.0.0.1:9200"));
    }
    let (node, path) = fields.required(cx, "index")?;
    let index = scalar(cx, node, &path)?.to_string();
    if !index_name(&index) {
        let message = format!("`{index}` is not an index name (lower case letters, digits, `_`, `-`, `.`; not starting with `_`, `-` or `+`)");
        return Err(cx.err(node, &path, message));
    }
    let id = match fields.get("id") {
        None => None,
        Some((node, path)) => Some(expr_text(cx, node, &path)?),
    };
    let document = match fields.get("document") {
        None => Vec::new(),
        Some((node, path)) => assignments(cx, node, &path)?
            .into_iter()
            .map(|(named, expr)| (named.name, expr))
            .collect(),
    };
    let (username, password, password_file) = basic_auth(cx, fields)?;
    let api_key = secret(cx, fields, "api_key")?;
    let api_key_file = fields.string(cx, "api_key_file")?.map(PathBuf::from);
    if (api_key.is_some() || api_key_file.is_some()) && username.is_some() {
        let (node, path) = fields.get("username").expect("read above");
        return Err(cx.err(node, &path, "use either username/password or api_key"));
    }
    let batch_rows = fields.u64(cx, "batch_rows")?.unwrap_or(500);
    if !(1..=10_000).contains(&batch_rows) {
        let (node, path) = fields.get("batch_rows").expect("just read");
        return Err(cx.err(node, &path, "batch_rows must be in 1..=10000"));
    }
    Ok(ElasticsearchSink {
        url,
        index,
        id,
        document,
        username,
        password,
        password_file,
        api_key,
        api_key_file,
        batch_rows: batch_rows as usize,
        connect_timeout_ms: super::kafka::connect_timeout(cx, fields)?,
        errors: decode_errors(cx, fields)?,
    })
}

type BasicAuth = (Option<String>, Option<String>, Option<PathBuf>);

/// `username` with `password` or `password_file`.
fn basic_auth(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<BasicAuth, SpecError> {
    let username = fields.string(cx, "username")?;
    let password = secret(cx, fields, "password")?;
    let password_file = fields.string(cx, "password_file")?.map(PathBuf::from);
    let has_password = password.is_some() || password_file.is_some();
    if has_password != username.is_some() || (password.is_some() && password_file.is_some()) {
        return Err(cx.err(
            fields.node,
            &fields.path,
            "basic auth needs `username` and one of `password` or `password_file`",
        ));
    }
    Ok((username, password, password_file))
}

/// A secret given as `${NAME}` (an environment variable read when the sink starts) or as
/// text.
fn secret(cx: &Cx<'_>, fields: &mut Fields<'_>, key: &str) -> Result<Option<String>, SpecError> {
    let Some((node, path)) = fields.get(key) else {
        return Ok(None);
    };
    let text = scalar(cx, node, &path)?;
    if let Some(name) = text.strip_prefix("${") {
        let closed = name.strip_suffix('}');
        if !closed.is_some_and(|n| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            return Err(cx.err(
                node,
                &path,
                "expected `${NAME}` naming an environment variable",
            ));
        }
    }
    Ok(Some(text.to_string()))
}

/// `on_error: fail | skip | dead_letter` and `dead_letter: path` or `dead_letter_topic` with
/// `dead_letter_brokers` (one of them required by, and only with, `dead_letter`).
pub(super) fn decode_errors(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<SinkErrors, SpecError> {
    let on_error = match fields.get("on_error") {
        None => SinkOnError::Fail,
        Some((node, path)) => match scalar(cx, node, &path)? {
            "fail" => SinkOnError::Fail,
            "skip" => SinkOnError::Skip,
            "dead_letter" => SinkOnError::DeadLetter,
            other => {
                let choices = &["fail", "skip", "dead_letter"];
                return Err(cx.err(node, &path, unknown_choice("on_error", other, choices)));
            }
        },
    };
    let file = fields.string(cx, "dead_letter")?.map(PathBuf::from);
    let topic = fields.string(cx, "dead_letter_topic")?;
    let brokers = match fields.get("dead_letter_brokers") {
        None => None,
        Some((node, path)) => Some(super::kafka::broker_list(cx, node, &path)?),
    };
    let given = ["dead_letter", "dead_letter_topic", "dead_letter_brokers"]
        .into_iter()
        .find_map(|key| fields.get(key).map(|at| (key, at)));
    let dead_letter = match (file, topic, brokers) {
        (None, None, None) => None,
        (Some(file), None, None) => Some(DeadLetterTo::File(file)),
        (None, Some(topic), Some(brokers)) => Some(DeadLetterTo::Topic { brokers, topic }),
        (Some(_), Some(_), _) => {
            let (node, path) = fields.get("dead_letter_topic").expect("read above");
            let message = "give either `dead_letter` (a file) or `dead_letter_topic`, not both";
            return Err(cx.err(node, &path, message));
        }
        (_, None, Some(_)) => {
            let (node, path) = fields.get("dead_letter_brokers").expect("read above");
            return Err(cx.err(node, &path, "dead_letter_brokers needs `dead_letter_topic`"));
        }
        (None, Some(_), None) => {
            let (node, path) = fields.get("dead_letter_topic").expect("read above");
            let message = "dead_letter_topic needs `dead_letter_brokers` (host:port, …)";
            return Err(cx.err(node, &path, message));
        }
    };
    match (on_error, &dead_letter, given) {
        (SinkOnError::DeadLetter, None, _) => Err(cx.err(
            fields.node,
            &fields.path,
            "on_error: dead_letter needs `dead_letter: <file>` or `dead_letter_topic` with `dead_letter_brokers`",
        )),
        (SinkOnError::Fail | SinkOnError::Skip, Some(_), Some((key, (node, path)))) => Err(cx.err(
            node,
            &path,
            format!("`{key}` is for on_error: dead_letter"),
        )),
        _ => Ok(SinkErrors {
            on_error,
            dead_letter,
        }),
    }
}

/// An index name Elasticsearch takes: lower case, no spaces or `\/*?"<>|,#:`, not `.`/`..`,
/// not starting with `_`, `-` or `+`, at most 255 bytes.
fn index_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(['_', '-', '+'])
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
}
