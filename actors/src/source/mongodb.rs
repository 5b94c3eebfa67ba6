//! The MongoDB source (docs/pipeline.md, "MongoDB"; ADR 0009): one collection, read by one
//! instance (partition 0, on core 0).
//!
//! `mode: scan` reads every document once in `_id` order and ends; its checkpoint position is
//! the last `_id` read, and a restored run goes on after it. `mode: change_stream` follows the
//! collection's change stream until the pipeline stops, as an update stream: `+I` (insert) and
//! `+U` (update or replacement: the document as the server looks it up after the change) carry
//! the whole document, `-D` (delete) only `_id` and the event time. It starts where the spec
//! says (now, `resume_after`, `start_at_operation_time`); its checkpoint position is the
//! stream's resume token after the last change emitted, and a restored run resumes there, so no
//! change is lost or read twice. Documents that do not fit the schema follow `on_error`.
//!
//! The driver's blocking calls run on glommio's blocking threads, one batch at a time: a
//! pipeline that falls behind stops asking, and the server keeps the changes.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{self, doc, Bson, Document, Timestamp};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use mongodb::sync::{ChangeStream, Collection, Cursor};
use wire_core::frontend::expr::Datum;
use wire_core::frontend::spec::{MongoRead, MongoSource, MongoStart};
use wire_core::{BatchBuilder, PartitionId, StreamId};
use wire_storage::checkpoint::SourcePosition;

use super::{owned_partitions, Emitter};
use crate::mongo::{decode_position, encode_position, from_bson, to_json, transient, Server};
use crate::pipeline::CoreCx;
use crate::sink::refusals::{Refusals, Tally};
use crate::Error;

type Events = ChangeStream<ChangeStreamEvent<Document>>;

/// How long one request for changes waits on the server when there are none.
const AWAIT: Duration = Duration::from_millis(200);
/// Rejected documents logged one by one before logging only every thousandth.
const REJECTS_LOGGED: u64 = 10;

pub(super) async fn run(
    cx: &Rc<CoreCx>,
    index: usize,
    spec: &MongoSource,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    let mine = owned_partitions(cx, 1);
    emitter.own_partitions(&mine);
    if mine.is_empty() {
        emitter.finished(1, Vec::new());
        return Ok(());
    }
    let source = &cx.plan.sources[index];
    let what = format!("mongodb source `{}`", source.name);
    let server = Arc::new(Server::new(what, &spec.uri, spec.connect_timeout_ms)?);
    let (ping, tally) = (server.clone(), emitter.tally());
    let counted = tally.clone();
    glommio::executor()
        .spawn_blocking(move || ping.ping(&|| counted.retried(1)))
        .await?;
    let saved = emitter
        .restored()
        .and_then(|s| s.positions.iter().find(|at| at.partition == 0))
        .map(|at| (at.position, at.token.as_deref().and_then(decode_position)));
    // Without a checkpoint, a change stream starts after the token the spec gives, if any.
    let given = match &spec.start {
        MongoStart::ResumeAfter(data) => Some(Bson::Document(doc! {"_data": data.clone()})),
        _ => None,
    };
    let collection = server
        .client
        .database(&spec.database)
        .collection::<Document>(&spec.collection);
    let timeout = Duration::from_millis(spec.connect_timeout_ms);
    let refusals = Refusals::open_for_source(&spec.errors, &server.what, timeout)?;
    let mut reader = Reader {
        tally,
        server,
        spec,
        collection,
        event_time: source.event_time,
        builder: BatchBuilder::with_capacity(StreamId(index as u32), PartitionId(0), 256 << 10),
        batch_rows: cx.plan.settings.batch_rows,
        read: saved.as_ref().map_or(0, |(read, _)| *read),
        last: match saved {
            Some((_, last)) => last,
            None => given,
        },
        refusals,
        rejected: 0,
    };
    let result = match spec.mode {
        MongoRead::Scan => reader.scan(cx, emitter).await,
        MongoRead::ChangeStream => reader.follow(cx, emitter).await,
    };
    // The last letters are durable before the source says it has finished.
    let result = match result {
        Ok(()) => reader.refusals.sync_async().await,
        failed => failed,
    };
    if result.is_ok() {
        emitter.finished(1, vec![reader.position()]);
    }
    result
}

/// The one instance that reads.
struct Reader<'s> {
    server: Arc<Server>,
    /// Where retried requests are counted.
    tally: Tally,
    spec: &'s MongoSource,
    collection: Collection<Document>,
    event_time: Option<usize>,
    builder: BatchBuilder,
    batch_rows: usize,
    /// Documents (or changes) read so far, restored ones included.
    read: u64,
    /// The last `_id` read (scan) or the resume token after the last change (change stream).
    last: Option<Bson>,
    refusals: Refusals,
    rejected: u64,
}

impl Reader<'_> {
    fn position(&self) -> SourcePosition {
        SourcePosition {
            partition: 0,
            position: self.read,
            line: 0,
            token: self.last.clone().map(encode_position),
        }
    }

    /// Before the next batch: sends the barriers owed, with the position after everything
    /// emitted. False once the pipeline stops.
    async fn turn(&mut self, cx: &CoreCx, emitter: &mut Emitter) -> Result<bool, Error> {
        while let Some(id) = emitter.barrier_due() {
            self.flush(emitter).await?;
            self.refusals.sync_async().await?;
            emitter.inject(id, 1, vec![self.position()]).await;
        }
        while emitter.held() && !cx.stopping() {
            emitter.hold().await;
            while let Some(id) = emitter.barrier_due() {
                self.flush(emitter).await?;
                emitter.inject(id, 1, vec![self.position()]).await;
            }
        }
        Ok(!cx.stopping())
    }

    async fn scan(&mut self, cx: &CoreCx, emitter: &mut Emitter) -> Result<(), Error> {
        let mut cursor = None;
        while self.turn(cx, emitter).await? {
            let Some(mut open) = cursor.take() else {
                cursor = Some(self.open_scan().await?);
                continue;
            };
            let rows = self.batch_rows;
            let (open, taken) = glommio::executor()
                .spawn_blocking(move || {
                    let mut docs = Vec::new();
                    let result = loop {
                        match open.next() {
                            Some(Ok(doc)) => docs.push(doc),
                            Some(Err(err)) => break Err(err),
                            None => break Ok(true),
                        }
                        if docs.len() >= rows {
                            break Ok(false);
                        }
                    };
                    (open, (docs, result))
                })
                .await;
            let (docs, result) = taken;
            for doc in &docs {
                self.push(None, doc, None, emitter)?;
                self.last = doc.get("_id").cloned();
            }
            self.emit_full(emitter).await?;
            match result {
                Ok(true) => break,
                Ok(false) => cursor = Some(open),
                // The cursor is opened again after the last `_id` read.
                Err(err) if transient(&err) => {
                    tracing::warn!(source = %self.server.what, error = %crate::mongo::cause(&err), "scan interrupted; reopening")
                }
                Err(err) => return Err(self.server.refused(&err)),
            }
        }
        self.flush(emitter).await
    }

    /// A cursor over the documents after the last `_id` read, in `_id` order.
    async fn open_scan(&self) -> Result<Cursor<Document>, Error> {
        let filter = match &self.last {
            Some(id) => doc! {"_id": {"$gt": id.clone()}},
            None => doc! {},
        };
        let (server, collection) = (self.server.clone(), self.collection.clone());
        let tally = self.tally.clone();
        glommio::executor()
            .spawn_blocking(move || {
                server.retried(&|| tally.retried(1), || {
                    collection
                        .find(filter.clone())
                        .sort(doc! {"_id": 1})
                        .batch_size(1000)
                        .run()
                })
            })
            .await
    }

    async fn follow(&mut self, cx: &CoreCx, emitter: &mut Emitter) -> Result<(), Error> {
        let mut stream = None;
        while self.turn(cx, emitter).await? {
            let Some(mut open) = stream.take() else {
                let open = self.open_stream().await?;
                // A new stream's token (the server's post-batch token) is where it starts: a
                // checkpoint taken before the first change resumes there. Not when it starts at
                // an operation time: that token may lie past changes of its first batch not yet
                // emitted, and without a token a restored run starts at the same time again,
                // which loses nothing since nothing was emitted.
                let at_time = matches!(self.spec.start, MongoStart::OperationTime { .. });
                if self.last.is_none() && !at_time {
                    self.last = open.resume_token().and_then(|t| bson::to_bson(&t).ok());
                }
                stream = Some(open);
                continue;
            };
            let rows = self.batch_rows;
            let (open, taken) = glommio::executor()
                .spawn_blocking(move || {
                    let mut events = Vec::new();
                    let result = loop {
                        match open.next_if_any() {
                            Ok(Some(event)) => events.push(event),
                            Ok(None) => break Ok(()),
                            Err(err) => break Err(err),
                        }
                        if events.len() >= rows {
                            break Ok(());
                        }
                    };
                    let token = open.resume_token();
                    (open, (events, token, result))
                })
                .await;
            let (events, token, result) = taken;
            for event in &events {
                self.change(event, emitter)?;
            }
            if let Some(token) = token.and_then(|t| bson::to_bson(&t).ok()) {
                self.last = Some(token);
            }
            self.emit_full(emitter).await?;
            match result {
                Ok(()) if events.is_empty() => {
                    self.flush(emitter).await?;
                    emitter.tick().await;
                }
                Ok(()) => {}
                Err(err) if transient(&err) => {
                    tracing::warn!(source = %self.server.what, error = %crate::mongo::cause(&err), "change stream interrupted; resuming");
                    continue;
                }
                Err(err) => return Err(self.server.refused(&err)),
            }
            stream = Some(open);
        }
        self.flush(emitter).await
    }

    /// The change stream, resumed after the last change emitted when there is one, else
    /// started at `start_at_operation_time` when the spec gives one.
    async fn open_stream(&self) -> Result<Events, Error> {
        let token = self
            .last
            .clone()
            .and_then(|token| bson::from_bson::<ResumeToken>(token).ok());
        let at = match (&token, &self.spec.start) {
            (None, MongoStart::OperationTime { seconds, increment }) => Some(Timestamp {
                time: *seconds,
                increment: *increment,
            }),
            _ => None,
        };
        let (server, collection) = (self.server.clone(), self.collection.clone());
        let tally = self.tally.clone();
        glommio::executor()
            .spawn_blocking(move || {
                server.retried(&|| tally.retried(1), || {
                    let watch = collection
                        .watch()
                        .full_document(FullDocumentType::UpdateLookup)
                        .max_await_time(AWAIT)
                        .resume_after(token.clone());
                    match at {
                        Some(at) => watch.start_at_operation_time(at).run(),
                        None => watch.run(),
                    }
                })
            })
            .await
    }

    /// Appends the row of one change: `+I`, `+U` or `-D`.
    fn change(
        &mut self,
        event: &ChangeStreamEvent<Document>,
        emitter: &Emitter,
    ) -> Result<(), Error> {
        match (&event.operation_type, &event.full_document) {
            (OperationType::Insert, Some(doc)) => self.push(Some("+I"), doc, None, emitter),
            (OperationType::Update | OperationType::Replace, Some(doc)) => {
                self.push(Some("+U"), doc, None, emitter)
            }
            (OperationType::Delete, _) => match &event.document_key {
                Some(key) => self.push(Some("-D"), key, Some(change_time(event)), emitter),
                None => {
                    emitter.events(1);
                    Ok(())
                }
            },
            // An update of a document deleted since looks up no document (its delete comes
            // next); drops, renames and the like are not changes of documents.
            _ => {
                emitter.events(1);
                Ok(())
            }
        }
    }

    /// The row's values: `op` first when given, then the schema's fields from `doc`; for a
    /// delete (`deleted_at`), `doc` is the document key and only `_id` and the event time
    /// (the delete's) are filled.
    fn values<'d>(
        &self,
        op: Option<&'static str>,
        doc: &'d Document,
        deleted_at: Option<i64>,
    ) -> Result<Vec<Datum<'d>>, String> {
        let fields = self.spec.schema.fields();
        let time_field = self.event_time.map(|at| at - usize::from(op.is_some()));
        let mut values = Vec::with_capacity(fields.len() + 1);
        values.extend(op.map(|op| Datum::Str(Cow::Borrowed(op))));
        for (i, field) in fields.iter().enumerate() {
            values.push(match deleted_at {
                None => from_bson(doc, field)?,
                Some(_) if field.name == "_id" => from_bson(doc, field)?,
                Some(ms) if time_field == Some(i) => match field.data_type {
                    wire_core::DataType::Timestamp => Datum::Timestamp(ms),
                    _ => Datum::I64(ms),
                },
                Some(_) => Datum::Null,
            });
        }
        Ok(values)
    }

    /// Appends `doc` as a row (a change's when `op` is given), or handles it as `on_error`
    /// says when it does not fit.
    fn push(
        &mut self,
        op: Option<&'static str>,
        doc: &Document,
        deleted_at: Option<i64>,
        emitter: &Emitter,
    ) -> Result<(), Error> {
        self.read += 1;
        emitter.events(1);
        let fields = self.spec.schema.fields();
        let first = usize::from(op.is_some());
        let values = self.values(op, doc, deleted_at);
        let pushed = values.and_then(|values| {
            let result = match self.event_time {
                None => self.builder.push(&values),
                Some(at) => match values[at] {
                    Datum::Timestamp(ms) | Datum::I64(ms) => {
                        self.builder.push_with_time(&values, ms)
                    }
                    _ => {
                        return Err(format!(
                            "field `{}` (the event time) is null",
                            fields[at - first].name
                        ))
                    }
                },
            };
            result.map_err(|err| err.to_string())
        });
        let Err(error) = pushed else {
            return Ok(());
        };
        let id = doc.get("_id").map_or("(none)".to_string(), |id| {
            id.clone().into_relaxed_extjson().to_string()
        });
        let place = format!(
            "collection `{}.{}` at {}, document _id {id}",
            self.spec.database, self.spec.collection, self.server.address
        );
        self.refusals
            .refuse(&self.server.what, &error, &place, &to_json(doc))?;
        self.rejected += 1;
        emitter.rejected(1);
        if self.rejected <= REJECTS_LOGGED || self.rejected.is_multiple_of(1000) {
            tracing::warn!(source = %self.server.what, rejected = self.rejected, %place, %error, "a document does not fit the schema");
        }
        Ok(())
    }

    async fn emit_full(&mut self, emitter: &mut Emitter) -> Result<(), Error> {
        if self.builder.row_count() >= self.batch_rows {
            self.flush(emitter).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, emitter: &mut Emitter) -> Result<(), Error> {
        if !self.builder.is_empty() {
            let batch = self.builder.finish();
            emitter.emit(batch).await?;
        }
        Ok(())
    }
}

/// When a change happened, in milliseconds since the epoch: its wall time, else its cluster
/// time (whole seconds), else 0.
fn change_time(event: &ChangeStreamEvent<Document>) -> i64 {
    match (event.wall_time, event.cluster_time) {
        (Some(at), _) => at.timestamp_millis(),
        (None, Some(at)) => i64::from(at.time) * 1000,
        (None, None) => 0,
    }
}
