//! The MongoDB sink (docs/pipeline.md, "MongoDB"; ADR 0009).
//!
//! Rows become documents sent in unordered bulk writes of `batch_rows`, as they come, and
//! everything before a checkpoint's barrier is written before the sink acks it. With `key`,
//! the document `_id` comes from the row: in upsert mode a row replaces (or creates) the
//! document of its `_id` and a `-D` row deletes it, so a replay after a restore writes the
//! same documents again; in insert mode a document already there (duplicate key) is counted as
//! written. Each write error is read: transient ones are sent again with backoff until
//! `connect_timeout_ms`, the others are refused rows and follow `on_error`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind, WriteError};
use mongodb::options::{DeleteOneModel, InsertOneModel, ReplaceOneModel, WriteModel};
use mongodb::Namespace;
use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{PlanSink, OP_FIELD};
use wire_core::frontend::spec::{FileFormat, MongoMode, SinkKind};
use wire_core::record::format::RowWriter;
use wire_core::{ArchivedRow, Batch};

use super::refusals::{lock, Refusals, Tally};
use crate::mongo::{cause, to_bson, transient, Server};
use crate::pipeline::CoreCx;
use crate::retry::RetryState;
use crate::Error;

/// The server error code of a duplicate `_id`.
const DUPLICATE_KEY: i32 = 11000;

/// What every bulk write of one instance needs.
struct Link {
    server: Server,
    namespace: Namespace,
    mode: MongoMode,
    tally: Tally,
}

/// One document action.
struct Doc {
    delete: bool,
    id: Option<Bson>,
    /// The document (empty for a delete).
    body: Document,
    /// The input row as JSON, kept for the dead letters.
    row: Vec<u8>,
}

/// One core's instance of a MongoDB sink.
pub(super) struct MongoOutput {
    link: Arc<Link>,
    /// The fields `_id` is made of.
    key: Vec<(String, Expr)>,
    fields: Vec<(String, Expr)>,
    /// An update stream's `op` field.
    op: Option<Expr>,
    /// Writes the input row for a dead letter, when they are kept.
    rows: Option<RowWriter>,
    batch_rows: usize,
    pending: Vec<Doc>,
    refusals: Arc<Mutex<Refusals>>,
}

impl MongoOutput {
    /// The instance of `sink` on `cx`'s core: reads the URI's variables and opens the
    /// dead-letter file; connects in [`MongoOutput::start`].
    pub(super) fn open(cx: &CoreCx, sink: &PlanSink) -> Result<Self, Error> {
        let SinkKind::Mongodb(spec) = &sink.kind else {
            unreachable!("a mongodb sink")
        };
        let what = format!("mongodb sink `{}`", sink.name);
        let index = cx.plan.sinks.iter().position(|s| s.name == sink.name);
        let node = cx.node(crate::graph::Head::Sink(index.unwrap_or(0)));
        let tally = Tally::new(cx.probe.clone(), node, cx.core);
        let refusals = Refusals::open(&spec.errors, Some(tally.clone()))?;
        let rows = refusals
            .keeps_rows()
            .then(|| RowWriter::new(FileFormat::JsonLines, &sink.schema));
        let op = sink.schema.fields().iter().any(|f| f.name == OP_FIELD);
        let op = op
            .then(|| wire_core::frontend::expr::compile(OP_FIELD, &sink.schema).ok())
            .flatten();
        let key = spec
            .key
            .iter()
            .filter_map(|name| sink.columns.iter().find(|(column, _)| column == name))
            .cloned()
            .collect();
        let link = Link {
            server: Server::new(what, &spec.uri, spec.connect_timeout_ms)?,
            namespace: Namespace {
                db: spec.database.clone(),
                coll: spec.collection.clone(),
            },
            mode: spec.mode,
            tally,
        };
        Ok(MongoOutput {
            link: Arc::new(link),
            key,
            fields: sink.columns.clone(),
            op,
            rows,
            batch_rows: spec.batch_rows,
            pending: Vec::new(),
            refusals: Arc::new(Mutex::new(refusals)),
        })
    }

    /// Waits (up to `connect_timeout_ms`) for the server to answer, and fails at once when
    /// it refuses the credentials.
    pub(super) async fn start(&mut self) -> Result<(), Error> {
        let link = self.link.clone();
        glommio::executor()
            .spawn_blocking(move || link.server.ping(&|| link.tally.retried(1)))
            .await
    }

    pub(super) async fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        let view = batch.view();
        for row in view.rows() {
            if let Some(doc) = self.encode(row) {
                self.pending.push(doc);
            }
        }
        if self.pending.len() >= self.batch_rows {
            self.flush().await?;
        }
        Ok(())
    }

    /// Before a checkpoint's barrier is acked: everything received is written, and the dead
    /// letters are synced.
    pub(super) async fn stage(&mut self) -> Result<(), Error> {
        self.flush().await?;
        let refusals = self.refusals.clone();
        glommio::executor()
            .spawn_blocking(move || lock(&refusals)?.sync())
            .await
    }

    pub(super) async fn close(mut self) -> Result<(), Error> {
        self.stage().await
    }

    /// `row` as a document action; `None` for an update-before (`-U`).
    fn encode(&self, row: &ArchivedRow) -> Option<Doc> {
        let delete = match self.op.as_ref().map(|op| op.eval(row)) {
            Some(Datum::Str(op)) if op == "-U" => return None,
            Some(Datum::Str(op)) => op == "-D",
            _ => false,
        };
        let id = match self.key.as_slice() {
            [] => None,
            [(_, one)] => Some(to_bson(&one.eval(row))),
            several => Some(Bson::Document(
                several
                    .iter()
                    .map(|(name, expr)| (name.clone(), to_bson(&expr.eval(row))))
                    .collect(),
            )),
        };
        let mut body = Document::new();
        if !delete {
            if let Some(id) = &id {
                body.insert("_id", id.clone());
            }
            for (name, expr) in &self.fields {
                body.insert(name.clone(), to_bson(&expr.eval(row)));
            }
        }
        let mut json = Vec::new();
        if let Some(rows) = &self.rows {
            rows.write_row(row, &mut json);
        }
        Some(Doc {
            delete,
            id,
            body,
            row: json,
        })
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let docs = std::mem::take(&mut self.pending);
        let (link, refusals) = (self.link.clone(), self.refusals.clone());
        glommio::executor()
            .spawn_blocking(move || send(&link, docs, &refusals))
            .await
    }
}

/// The last action of each `_id` (an unordered bulk write may apply two of the same `_id` in
/// any order; replacing and deleting by `_id` leave what the last one says).
fn last_per_id(docs: Vec<Doc>) -> Vec<Doc> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Doc> = docs
        .into_iter()
        .rev()
        .filter(|doc| match &doc.id {
            Some(id) => seen.insert(format!("{id:?}")),
            None => true,
        })
        .collect();
    kept.reverse();
    kept
}

impl Link {
    fn model(&self, doc: &Doc) -> WriteModel {
        let namespace = self.namespace.clone();
        match (&doc.id, doc.delete, self.mode) {
            (Some(id), true, _) => DeleteOneModel::builder()
                .namespace(namespace)
                .filter(doc! {"_id": id.clone()})
                .build()
                .into(),
            (Some(id), false, MongoMode::Upsert) => ReplaceOneModel::builder()
                .namespace(namespace)
                .filter(doc! {"_id": id.clone()})
                .replacement(doc.body.clone())
                .upsert(true)
                .build()
                .into(),
            _ => InsertOneModel::builder()
                .namespace(namespace)
                .document(doc.body.clone())
                .build()
                .into(),
        }
    }
}

/// Sends `docs` in one unordered bulk write, then again the items to retry, until none is
/// left or the deadline passes; refused items go to `refusals`.
fn send(link: &Link, docs: Vec<Doc>, refusals: &Mutex<Refusals>) -> Result<(), Error> {
    let mut docs = match link.mode {
        MongoMode::Upsert => last_per_id(docs),
        MongoMode::Insert => docs,
    };
    let place = link.server.place();
    let mut state = RetryState::new(&link.server.what, &place, link.server.deadline);
    loop {
        state.attempt();
        let models: Vec<WriteModel> = docs.iter().map(|doc| link.model(doc)).collect();
        let result = link.server.client.bulk_write(models).ordered(false).run();
        let why = match result {
            Ok(_) => return Ok(()),
            Err(err) => match item_errors(&err) {
                None if transient(&err) => cause(&err),
                None => return Err(link.server.refused(&err)),
                Some(errors) => {
                    let (again, why) = sort_items(link, docs, errors, refusals)?;
                    if again.is_empty() {
                        return Ok(());
                    }
                    docs = again;
                    why
                }
            },
        };
        link.tally.retried(1);
        std::thread::sleep(state.failed(&why, why.clone())?);
    }
}

/// The per-document errors of a bulk write that ran to its end (no error of the whole
/// request behind them).
fn item_errors(err: &DriverError) -> Option<&HashMap<usize, WriteError>> {
    match &*err.kind {
        ErrorKind::BulkWrite(bulk)
            if std::error::Error::source(err).is_none()
                && bulk.write_concern_errors.is_empty()
                && !bulk.write_errors.is_empty() =>
        {
            Some(&bulk.write_errors)
        }
        _ => None,
    }
}

/// Hands refused items to `refusals`; returns the items to send again and why.
fn sort_items(
    link: &Link,
    docs: Vec<Doc>,
    errors: &HashMap<usize, WriteError>,
    refusals: &Mutex<Refusals>,
) -> Result<(Vec<Doc>, String), Error> {
    let mut again = Vec::new();
    let mut why = String::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let Some(error) = errors.get(&i) else {
            continue;
        };
        // Inserting an `_id` that is there: a replay of a row written before a restore.
        let on_id = error.message.contains("index: _id_ ");
        if error.code == DUPLICATE_KEY
            && on_id
            && link.mode == MongoMode::Insert
            && doc.id.is_some()
        {
            continue;
        }
        let text = format!("{} (code {})", error.message, error.code);
        if crate::mongo::TRANSIENT_CODES.contains(&error.code) {
            why = text;
            again.push(doc);
            continue;
        }
        let id = doc.id.as_ref().map_or("(none)".to_string(), |id| {
            id.clone().into_relaxed_extjson().to_string()
        });
        let place = format!(
            "collection `{}.{}` at {}, document _id {id}",
            link.namespace.db, link.namespace.coll, link.server.address
        );
        lock(refusals)?.refuse(&link.server.what, &text, &place, &doc.row)?;
    }
    Ok((again, why))
}
