//! The MongoDB sink (docs/pipeline.md, "MongoDB"; ADR 0009).
//!
//! Rows become documents sent in unordered bulk writes of `batch_rows`, as they come, and
//! everything before a checkpoint's barrier is written before the sink acks it. With `key`,
//! the document `_id` comes from the row: in upsert mode a row replaces (or creates) the
//! document of its `_id` and a `-D` row deletes it, so a replay after a restore writes the
//! same documents again; in insert mode a document already there (duplicate key) is counted as
//! written. Each write error is read: transient ones are sent again with backoff until
//! `connect_timeout_ms`, the others are refused rows and follow `on_error`. Staging and
//! flushing are `document.rs`'s; this module encodes documents and writes bulk writes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind, WriteError};
use mongodb::options::{DeleteOneModel, InsertOneModel, ReplaceOneModel, WriteModel};
use mongodb::Namespace;
use wire_core::frontend::expr::Expr;
use wire_core::frontend::plan::PlanSink;
use wire_core::frontend::spec::{MongoMode, SinkKind};
use wire_core::ArchivedRow;

use super::document::{write_all, DocumentOutput, DocumentSystem};
use super::refusals::{lock, Refusals, Tally};
use crate::mongo::{cause, to_bson, transient, Server};
use crate::pipeline::CoreCx;
use crate::retry::RetryState;
use crate::Error;

/// The server error code of a duplicate `_id`.
const DUPLICATE_KEY: i32 = 11000;

/// One core's instance of a MongoDB sink.
pub(super) type MongoOutput = DocumentOutput<Mongodb>;

type Doc = super::document::Doc<Mongodb>;

/// How rows become MongoDB documents.
pub(super) struct Mongodb {
    /// The fields `_id` is made of.
    key: Vec<(String, Expr)>,
    fields: Vec<(String, Expr)>,
}

/// What every bulk write of one instance needs.
pub(super) struct Link {
    server: Server,
    namespace: Namespace,
    mode: MongoMode,
    tally: Tally,
}

impl Mongodb {
    /// The instance of `sink` on `cx`'s core: reads the URI's variables and opens the
    /// dead-letter file; connects in [`DocumentOutput::start`].
    pub(super) fn open(cx: &CoreCx, sink: &PlanSink) -> Result<MongoOutput, Error> {
        let SinkKind::Mongodb(spec) = &sink.kind else {
            unreachable!("a mongodb sink")
        };
        let make = |what, tally| {
            let link = Link {
                server: Server::new(what, &spec.uri, spec.connect_timeout_ms)?,
                namespace: Namespace {
                    db: spec.database.clone(),
                    coll: spec.collection.clone(),
                },
                mode: spec.mode,
                tally,
            };
            let key = spec
                .key
                .iter()
                .filter_map(|name| sink.columns.iter().find(|(column, _)| column == name))
                .cloned()
                .collect();
            let system = Mongodb {
                key,
                fields: sink.columns.clone(),
            };
            Ok((system, link))
        };
        let timeout = Duration::from_millis(spec.connect_timeout_ms);
        DocumentOutput::open(
            cx,
            sink,
            "mongodb",
            &spec.errors,
            timeout,
            spec.batch_rows,
            make,
        )
    }
}

impl DocumentSystem for Mongodb {
    type Link = Link;
    type Id = Bson;
    type Body = Document;

    fn id(&self, row: &ArchivedRow) -> Option<Bson> {
        match self.key.as_slice() {
            [] => None,
            [(_, one)] => Some(to_bson(&one.eval(row))),
            several => Some(Bson::Document(
                several
                    .iter()
                    .map(|(name, expr)| (name.clone(), to_bson(&expr.eval(row))))
                    .collect(),
            )),
        }
    }

    fn body(&self, row: &ArchivedRow, id: Option<&Bson>) -> Document {
        let mut body = Document::new();
        if let Some(id) = id {
            body.insert("_id", id.clone());
        }
        for (name, expr) in &self.fields {
            body.insert(name.clone(), to_bson(&expr.eval(row)));
        }
        body
    }

    fn ping(link: &Link) -> Result<(), Error> {
        link.server.ping(&|| link.tally.retried(1))
    }

    /// Sends `docs` in one unordered bulk write, then again the items to retry, until none is
    /// left or the deadline passes; refused items go to `refusals`.
    fn send(link: &Link, docs: Vec<Doc>, refusals: &Mutex<Refusals>) -> Result<(), Error> {
        let docs = match link.mode {
            MongoMode::Upsert => last_per_id(docs),
            MongoMode::Insert => docs,
        };
        let place = link.server.place();
        let state = RetryState::new(&link.server.what, &place, link.server.deadline);
        write_all(state, &link.tally, docs, |docs, _| {
            let models: Vec<WriteModel> = docs.iter().map(|doc| link.model(doc)).collect();
            let Err(err) = link.server.client.bulk_write(models).ordered(false).run() else {
                return Ok((Vec::new(), String::new()));
            };
            match item_errors(&err) {
                None if transient(&err) => Ok((docs, cause(&err))),
                None => Err(link.server.refused(&err)),
                Some(errors) => sort_items(link, docs, errors, refusals),
            }
        })
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
