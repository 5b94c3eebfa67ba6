//! The Elasticsearch / OpenSearch sink (docs/pipeline.md, "Elasticsearch and OpenSearch";
//! ADR 0008).
//!
//! Rows are sent in `_bulk` requests of `batch_rows` documents, as they come, and everything
//! before a checkpoint's barrier is written before the sink acks it. Each item's result is
//! read: 429 and 5xx items are sent again (with later items of the same id, so their order
//! holds) with backoff until `connect_timeout_ms`; other 4xx items are refused rows and
//! follow `on_error`. With `id`, a document's id comes from the row, so a replay after a
//! restore overwrites instead of duplicating: with checkpoints the index ends up as if each
//! row was written once. Rows whose `op` is `-D` delete their id; `-U` rows are skipped.
//!
//! The blocking HTTP client runs on glommio's blocking threads; the core waits for a bulk
//! request before it takes more rows, so a slow server slows the pipeline down. Staging and
//! flushing are `document.rs`'s; this module encodes documents and writes `_bulk` requests.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::PlanSink;
use wire_core::frontend::spec::{ElasticsearchSink, SinkKind};
use wire_core::ArchivedRow;

use super::document::{write_all, DocumentOutput, DocumentSystem};
use super::refusals::{lock, Refusals, Tally};
use crate::pipeline::CoreCx;
use crate::retry::RetryState;
use crate::Error;

/// One core's instance of an Elasticsearch sink.
pub(super) type ElasticsearchOutput = DocumentOutput<Elasticsearch>;

type Doc = super::document::Doc<Elasticsearch>;

/// How rows become Elasticsearch documents.
pub(super) struct Elasticsearch {
    id: Option<Expr>,
    fields: Vec<(String, Expr)>,
}

/// What every request of one instance needs.
pub(super) struct Link {
    /// ``elasticsearch sink `out` ``.
    what: String,
    /// The server's base URL, without a trailing `/`.
    url: String,
    index: String,
    /// The `Authorization` header's value (never logged).
    auth: Option<String>,
    client: reqwest::blocking::Client,
    deadline: Duration,
    tally: Tally,
}

impl Elasticsearch {
    /// The instance of `sink` on `cx`'s core: reads the credentials and opens the dead-letter
    /// file; connects in [`DocumentOutput::start`].
    pub(super) fn open(cx: &CoreCx, sink: &PlanSink) -> Result<ElasticsearchOutput, Error> {
        let SinkKind::Elasticsearch(spec) = &sink.kind else {
            unreachable!("an elasticsearch sink")
        };
        let make = |what: String, tally| {
            let client = reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|err| Error::Connector(format!("{what}: http client: {}", cause(&err))))?;
            let link = Link {
                auth: auth(&what, spec)?,
                what,
                url: spec.url.clone(),
                index: spec.index.clone(),
                client,
                deadline: Duration::from_millis(spec.connect_timeout_ms),
                tally,
            };
            let system = Elasticsearch {
                id: sink.record.as_ref().and_then(|r| r.key.clone()),
                fields: sink.columns.clone(),
            };
            Ok((system, link))
        };
        DocumentOutput::open(
            cx,
            sink,
            "elasticsearch",
            &spec.errors,
            Duration::from_millis(spec.connect_timeout_ms),
            spec.batch_rows,
            make,
        )
    }
}

impl DocumentSystem for Elasticsearch {
    type Link = Link;
    type Id = String;
    /// The document as JSON.
    type Body = String;

    fn id(&self, row: &ArchivedRow) -> Option<String> {
        self.id.as_ref().map(|id| {
            let mut text = String::new();
            id.eval(row).write_text(&mut text);
            text
        })
    }

    fn body(&self, row: &ArchivedRow, _id: Option<&String>) -> String {
        let mut body = String::from('{');
        for (i, (name, expr)) in self.fields.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            push_json_str(name, &mut body);
            body.push(':');
            push_json(&expr.eval(row), &mut body);
        }
        body.push('}');
        body
    }

    fn ping(link: &Link) -> Result<(), Error> {
        ping(link)
    }

    /// Sends `docs` in one `_bulk` request, then again the items to retry, until none is left
    /// or the deadline passes; refused items go to `refusals`.
    fn send(link: &Link, docs: Vec<Doc>, refusals: &Mutex<Refusals>) -> Result<(), Error> {
        let place = format!("the server at {}", link.url);
        let state = RetryState::new(&link.what, &place, link.deadline);
        write_all(state, &link.tally, docs, |docs, timeout| {
            match bulk(link, &docs, timeout) {
                Err(Failure::Permanent(error)) => Err(error),
                Err(Failure::Transient(why)) => Ok((docs, why)),
                Ok(items) => sort_items(link, docs, items, refusals),
            }
        })
    }
}

/// The `Authorization` header from the spec's credentials, reading `${NAME}` variables and
/// files now.
fn auth(what: &str, spec: &ElasticsearchSink) -> Result<Option<String>, Error> {
    use base64::Engine as _;
    let read = |key: &str, text: &Option<String>, file: &Option<std::path::PathBuf>| {
        secret(what, key, text.as_deref(), file.as_deref())
    };
    if let Some(key) = read("api_key", &spec.api_key, &spec.api_key_file)? {
        return Ok(Some(format!("ApiKey {key}")));
    }
    let Some(user) = &spec.username else {
        return Ok(None);
    };
    let password = read("password", &spec.password, &spec.password_file)?.unwrap_or_default();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Ok(Some(format!("Basic {token}")))
}

/// A secret given as `${NAME}`, as text or in a file (trailing newline dropped).
fn secret(
    what: &str,
    key: &str,
    text: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, Error> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|err| Error::io(path, err))?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
    }
    let Some(text) = text else {
        return Ok(None);
    };
    match text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        None => Ok(Some(text.to_string())),
        Some(name) => std::env::var(name).map(Some).map_err(|_| {
            Error::Connector(format!(
                "{what}: `{key}` names environment variable `{name}`, which is not set"
            ))
        }),
    }
}

/// A request's failure: worth another attempt, or the end.
enum Failure {
    Transient(String),
    Permanent(Error),
}

/// `GET /` until it answers 2xx (retrying unreachable servers and 429/5xx).
fn ping(link: &Link) -> Result<(), Error> {
    let place = format!("the server at {}", link.url);
    let mut state = RetryState::new(&link.what, &place, link.deadline);
    loop {
        let timeout = state.attempt();
        let mut request = link.client.get(format!("{}/", link.url)).timeout(timeout);
        if let Some(auth) = &link.auth {
            request = request.header("authorization", auth);
        }
        let failure = match request.send() {
            Ok(response) => match status_failure(link, response) {
                None => return Ok(()),
                Some(failure) => failure,
            },
            Err(err) => Failure::Transient(cause(&err)),
        };
        match failure {
            Failure::Permanent(error) => return Err(error),
            Failure::Transient(why) => {
                link.tally.retried(1);
                std::thread::sleep(state.failed(&why, why.clone())?);
            }
        }
    }
}

/// `None` for a 2xx response; a transient failure for 429 and 5xx; otherwise a permanent one
/// naming the status and the server's reason.
fn status_failure(link: &Link, response: reqwest::blocking::Response) -> Option<Failure> {
    let status = response.status();
    if status.is_success() {
        return None;
    }
    let body = response.text().unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| error_text(&v["error"]))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let why = format!("HTTP {status}: {reason}");
    if status.as_u16() == 429 || status.is_server_error() {
        return Some(Failure::Transient(why));
    }
    let what = if status.as_u16() == 401 || status.as_u16() == 403 {
        "refused the credentials"
    } else {
        "refused the request"
    };
    Some(Failure::Permanent(Error::Connector(format!(
        "{}: the server at {} {what} ({why})",
        link.what, link.url
    ))))
}

/// What the server said about one item.
enum Item {
    Done,
    Retry(String),
    Refused(String),
}

/// Hands refused items to `refusals`; returns the items to send again (the retried ones and
/// later ones of the same id) and why.
fn sort_items(
    link: &Link,
    docs: Vec<Doc>,
    items: Vec<Item>,
    refusals: &Mutex<Refusals>,
) -> Result<(Vec<Doc>, String), Error> {
    let mut again = Vec::new();
    let mut retried_ids = HashSet::new();
    let mut why = String::new();
    for (doc, item) in docs.into_iter().zip(items) {
        let follows = doc.id.as_ref().is_some_and(|id| retried_ids.contains(id));
        match item {
            Item::Retry(reason) => why = reason,
            _ if follows => {}
            Item::Done => continue,
            Item::Refused(error) => {
                let id = doc.id.as_deref().unwrap_or("(none)");
                let place = format!("index `{}` at {}, document id `{id}`", link.index, link.url);
                lock(refusals)?.refuse(&link.what, &error, &place, &doc.row)?;
                continue;
            }
        }
        if let Some(id) = &doc.id {
            retried_ids.insert(id.clone());
        }
        again.push(doc);
    }
    Ok((again, why))
}

/// One `POST /<index>/_bulk`: each item's result, in order.
fn bulk(link: &Link, docs: &[Doc], timeout: Duration) -> Result<Vec<Item>, Failure> {
    let mut body = String::new();
    for doc in docs {
        body.push_str(if doc.delete {
            "{\"delete\":{"
        } else {
            "{\"index\":{"
        });
        if let Some(id) = &doc.id {
            body.push_str("\"_id\":");
            push_json_str(id, &mut body);
        }
        body.push_str("}}\n");
        if !doc.delete {
            body.push_str(&doc.body);
            body.push('\n');
        }
    }
    let url = format!("{}/{}/_bulk", link.url, link.index);
    let mut request = link
        .client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(auth) = &link.auth {
        request = request.header("authorization", auth);
    }
    let response = request
        .send()
        .map_err(|err| Failure::Transient(cause(&err)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(
            status_failure(link, response).unwrap_or(Failure::Transient(status.to_string()))
        );
    }
    let text = response
        .text()
        .map_err(|err| Failure::Transient(cause(&err)))?;
    parse_items(link, &text, docs)
}

/// The per-item results of a bulk response.
fn parse_items(link: &Link, text: &str, docs: &[Doc]) -> Result<Vec<Item>, Failure> {
    let bad = |what: &str| {
        Failure::Permanent(Error::Connector(format!(
            "{}: the server at {} sent a bulk response {what}",
            link.what, link.url
        )))
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| bad("that is not JSON"))?;
    let items = value["items"]
        .as_array()
        .ok_or_else(|| bad("without `items`"))?;
    if items.len() != docs.len() {
        return Err(bad(&format!(
            "with {} items for {} actions",
            items.len(),
            docs.len()
        )));
    }
    Ok(items
        .iter()
        .zip(docs)
        .map(|(item, doc)| classify(item, doc))
        .collect())
}

fn classify(item: &serde_json::Value, doc: &Doc) -> Item {
    let result = item.as_object().and_then(|o| o.values().next());
    let Some(result) = result else {
        return Item::Refused("the server sent an empty item".into());
    };
    let status = result["status"].as_u64().unwrap_or(0);
    let reason = || error_text(&result["error"]).unwrap_or_else(|| format!("status {status}"));
    match status {
        200..=299 => Item::Done,
        // Deleting a document that is not there leaves the index as asked.
        404 if doc.delete => Item::Done,
        429 | 500..=599 => Item::Retry(reason()),
        _ => Item::Refused(reason()),
    }
}

/// `type: reason` of an Elasticsearch error object.
fn error_text(error: &serde_json::Value) -> Option<String> {
    match error {
        serde_json::Value::Object(map) => {
            let kind = map.get("type").and_then(|t| t.as_str()).unwrap_or("error");
            let reason = map.get("reason").and_then(|r| r.as_str()).unwrap_or("");
            Some(format!("{kind}: {reason}"))
        }
        serde_json::Value::String(text) => Some(text.clone()),
        _ => None,
    }
}

/// The innermost cause of an HTTP client error (`Connection refused (os error 111)`), which
/// names what went wrong, unlike the outer `error sending request`.
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    if error.to_string().contains("timed out") || text.contains("timed out") {
        return "timed out".to_string();
    }
    text
}

/// `datum` as JSON: bytes in base64, timestamps in RFC 3339, non-finite floats as null.
fn push_json(datum: &Datum<'_>, out: &mut String) {
    use base64::Engine as _;
    match datum {
        Datum::Null => out.push_str("null"),
        Datum::F64(v) if !v.is_finite() => out.push_str("null"),
        Datum::I64(_) | Datum::F64(_) | Datum::Bool(_) => datum.write_text(out),
        Datum::Str(text) => push_json_str(text, out),
        Datum::Bytes(bytes) => push_json_str(
            &base64::engine::general_purpose::STANDARD.encode(bytes),
            out,
        ),
        Datum::Timestamp(_) => {
            let mut text = String::new();
            datum.write_text(&mut text);
            push_json_str(&text, out);
        }
    }
}

fn push_json_str(text: &str, out: &mut String) {
    out.push_str(&serde_json::Value::from(text).to_string());
}
