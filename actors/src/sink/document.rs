//! The shared core of the document sinks (Elasticsearch, MongoDB): rows become document
//! actions staged per instance, sent in batches of `batch_rows` as they come, and everything
//! before a checkpoint's barrier is written (and the dead letters synced) before the sink acks
//! it. A [`DocumentSystem`] says how a row becomes a document and how a batch is written.
//!
//! Batches are written on glommio's blocking threads; the core waits for one before it takes
//! more rows, so a slow server slows the pipeline down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{PlanSink, OP_FIELD};
use wire_core::frontend::spec::{FileFormat, SinkErrors};
use wire_core::record::format::RowWriter;
use wire_core::{ArchivedRow, Batch};

use super::refusals::{lock, Refusals, Tally};
use crate::pipeline::CoreCx;
use crate::retry::RetryState;
use crate::Error;

/// The hooks of one document store.
pub(super) trait DocumentSystem: Sized + 'static {
    /// What the blocking threads write with: the client and where it writes.
    type Link: Send + Sync + 'static;
    /// A document's id.
    type Id: Send + 'static;
    /// A document as the store takes it (the default: the empty body of a delete).
    type Body: Default + Send + 'static;

    /// The id of `row`'s document; `None` when the sink gives documents no id.
    fn id(&self, row: &ArchivedRow) -> Option<Self::Id>;

    /// `row` as a document (of id `id`).
    fn body(&self, row: &ArchivedRow, id: Option<&Self::Id>) -> Self::Body;

    /// Waits (up to the connect timeout) for the server to answer, and fails at once when it
    /// refuses the credentials.
    fn ping(link: &Self::Link) -> Result<(), Error>;

    /// Writes `docs` (with retries); refused items go to `refusals`.
    fn send(
        link: &Self::Link,
        docs: Vec<Doc<Self>>,
        refusals: &Mutex<Refusals>,
    ) -> Result<(), Error>;
}

/// One document action.
pub(super) struct Doc<S: DocumentSystem> {
    pub(super) delete: bool,
    pub(super) id: Option<S::Id>,
    /// The document (empty for a delete).
    pub(super) body: S::Body,
    /// The input row as JSON, kept for the dead letters.
    pub(super) row: Vec<u8>,
}

/// One core's instance of a document sink.
pub(super) struct DocumentOutput<S: DocumentSystem> {
    system: S,
    link: Arc<S::Link>,
    /// An update stream's `op` field.
    op: Option<Expr>,
    /// Writes the input row for a dead letter, when they are kept.
    rows: Option<RowWriter>,
    batch_rows: usize,
    pending: Vec<Doc<S>>,
    refusals: Arc<Mutex<Refusals>>,
}

impl<S: DocumentSystem> DocumentOutput<S> {
    /// The instance of `sink` (a `kind` sink) on `cx`'s core: opens the dead-letter file of
    /// `errors` (a topic's letters must be acknowledged within `timeout`), then makes the system and its link with `make(what, tally)`; connects in
    /// [`DocumentOutput::start`].
    pub(super) fn open(
        cx: &CoreCx,
        sink: &PlanSink,
        kind: &str,
        errors: &SinkErrors,
        timeout: Duration,
        batch_rows: usize,
        make: impl FnOnce(String, Tally) -> Result<(S, S::Link), Error>,
    ) -> Result<Self, Error> {
        let what = format!("{kind} sink `{}`", sink.name);
        let index = cx.plan.sinks.iter().position(|s| s.name == sink.name);
        let node = cx.node(crate::graph::Head::Sink(index.unwrap_or(0)));
        let tally = Tally::new(cx.probe.clone(), node, cx.core);
        let refusals = Refusals::open(errors, &what, timeout, Some(tally.clone()))?;
        let rows = refusals
            .keeps_rows()
            .then(|| RowWriter::new(FileFormat::JsonLines, &sink.schema));
        let op = sink.schema.fields().iter().any(|f| f.name == OP_FIELD);
        let op = op
            .then(|| wire_core::frontend::expr::compile(OP_FIELD, &sink.schema).ok())
            .flatten();
        let (system, link) = make(what, tally)?;
        Ok(DocumentOutput {
            system,
            link: Arc::new(link),
            op,
            rows,
            batch_rows,
            pending: Vec::new(),
            refusals: Arc::new(Mutex::new(refusals)),
        })
    }

    /// Waits (up to the connect timeout) for the server to answer, and fails at once when it
    /// refuses the credentials.
    pub(super) async fn start(&mut self) -> Result<(), Error> {
        let link = self.link.clone();
        glommio::executor()
            .spawn_blocking(move || S::ping(&link))
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
    fn encode(&self, row: &ArchivedRow) -> Option<Doc<S>> {
        let delete = match self.op.as_ref().map(|op| op.eval(row)) {
            Some(Datum::Str(op)) if op == "-U" => return None,
            Some(Datum::Str(op)) => op == "-D",
            _ => false,
        };
        let id = self.system.id(row);
        let body = if delete {
            S::Body::default()
        } else {
            self.system.body(row, id.as_ref())
        };
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
            .spawn_blocking(move || S::send(&link, docs, &refusals))
            .await
    }
}

/// Writes `docs` with `attempt(docs, timeout)`, which returns the items to send again and why,
/// until none is left; between tries it backs off, until `state`'s deadline passes.
pub(super) fn write_all<D>(
    mut state: RetryState<'_>,
    tally: &Tally,
    mut docs: Vec<D>,
    mut attempt: impl FnMut(Vec<D>, Duration) -> Result<(Vec<D>, String), Error>,
) -> Result<(), Error> {
    loop {
        let timeout = state.attempt();
        let (again, why) = attempt(docs, timeout)?;
        if again.is_empty() {
            return Ok(());
        }
        docs = again;
        tally.retried(1);
        std::thread::sleep(state.failed(&why, why.clone())?);
    }
}
