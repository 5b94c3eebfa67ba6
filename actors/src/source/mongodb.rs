//! The MongoDB source (docs/pipeline.md, "MongoDB"; ADR 0009): one collection, read by one
//! instance (partition 0, on core 0).
//!
//! `mode: scan` reads every document once in `_id` order and ends; its checkpoint position is
//! the last `_id` read, and a restored run goes on after it. `mode: change_stream` follows the
//! collection's change stream (inserts, replacements and updates, as the full document) until
//! the pipeline stops; its checkpoint position is the stream's resume token after the last
//! change emitted, and a restored run resumes there, so no change is lost or read twice.
//! Documents that do not fit the schema follow `on_error`.
//!
//! The driver's blocking calls run on glommio's blocking threads, one batch at a time: a
//! pipeline that falls behind stops asking, and the server keeps the changes.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{self, doc, Bson, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use mongodb::sync::{ChangeStream, Collection, Cursor};
use wire_core::frontend::expr::Datum;
use wire_core::frontend::spec::{MongoRead, MongoSource};
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
        last: saved.and_then(|(_, last)| last),
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
        while cx.paused() && !cx.stopping() {
            super::paused().await;
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
                self.push(doc, emitter)?;
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
                // checkpoint taken before the first change resumes there.
                if self.last.is_none() {
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
                let full = matches!(
                    event.operation_type,
                    OperationType::Insert | OperationType::Replace | OperationType::Update
                );
                match &event.full_document {
                    Some(doc) if full => self.push(doc, emitter)?,
                    // Deletes, and updates of documents deleted since, carry no document.
                    _ => emitter.events(1),
                }
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

    /// The change stream, resumed after the last change emitted when there is one.
    async fn open_stream(&self) -> Result<Events, Error> {
        let token = self
            .last
            .clone()
            .and_then(|token| bson::from_bson::<ResumeToken>(token).ok());
        let (server, collection) = (self.server.clone(), self.collection.clone());
        let tally = self.tally.clone();
        glommio::executor()
            .spawn_blocking(move || {
                server.retried(&|| tally.retried(1), || {
                    collection
                        .watch()
                        .full_document(FullDocumentType::UpdateLookup)
                        .max_await_time(AWAIT)
                        .resume_after(token.clone())
                        .run()
                })
            })
            .await
    }

    /// Appends `doc` as a row, or handles it as `on_error` says when it does not fit.
    fn push(&mut self, doc: &Document, emitter: &Emitter) -> Result<(), Error> {
        self.read += 1;
        emitter.events(1);
        let fields = self.spec.schema.fields();
        let values: Result<Vec<Datum<'_>>, String> =
            fields.iter().map(|field| from_bson(doc, field)).collect();
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
                            fields[at].name
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
