//! The Kafka sink (ADR 0005).
//!
//! `delivery: at_least_once` produces records as rows come (idempotent producer) and, when a
//! checkpoint's barrier aligns, waits until the broker has acknowledged every record so far.
//! A record refused for what it is follows `on_error` (`sink::refusals`): refused by the
//! producer itself (larger than `message.max.bytes`, say), its letter is the row as JSON;
//! refused by the broker after it was sent (larger than the topic's `max.message.bytes`, an
//! invalid record), its letter is the record as it was sent, key and value, since the row is
//! gone by then. Such records are counted and written out before the barrier is acked, like
//! the rest.
//!
//! `delivery: exactly_once` writes a transaction per checkpoint per sink instance. Records are
//! appended to a staging file `<data-dir>/<pipeline>/<sink>/c<core>-<checkpoint>.inprogress`;
//! when checkpoint `n`'s barrier aligns the file is synced and renamed `….staged` (the
//! pre-commit), and once `n` is complete the instance produces the file's records in one Kafka
//! transaction, with a marker (offset `n` for the consumer group named after the transactional
//! id, `send_offsets_to_transaction`) in the same transaction, commits it and deletes the file.
//! After a crash, [`recover_kafka_sinks`] commits the staged files of checkpoints up to the
//! restored one whose marker is older (the crash came between completion and commit), and
//! deletes the rest, whose rows come again from the restored sources. The transactional id
//! `<prefix>-<core>` is the same at every start, so `init_transactions` fences a zombie.
//! A record refused in a transaction (by the producer, or by the broker, which makes the
//! transaction abortable) follows `on_error`: the transaction is aborted and produced again
//! without the refused records, until one commits (each refusal leaves one record out, so
//! this ends); their letters are synced before the commit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{Plan, PlanSink};
use wire_core::frontend::spec::{KafkaDelivery, KafkaSink, SinkKind};
use wire_core::record::format::RowWriter;
use wire_core::{ArchivedRow, Batch};

use super::refusals::{lock, Refusals, Tally};
use super::stage::{corrupt, frame, read_staged, staged_files, StageFiles};
use crate::kafka::{client_config, retry, retry_blocking, Context, Delivery};
use crate::pipeline::CoreCx;
use crate::Error;

/// How long a transaction may stay open at the broker.
const TRANSACTION_TIMEOUT_MS: u64 = 60_000;
/// Bytes of encoded records kept in memory before they are appended to the staging file.
const STAGE_BUFFER: usize = 1 << 20;
/// How long a full producer queue is waited on before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

type Client = BaseProducer<Delivery>;

/// A record's key and value (`None`: absent, or a tombstone).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);
/// The same, borrowed.
type KeyValueRef<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// One core's instance of a Kafka sink.
pub(super) struct KafkaOutput {
    what: String,
    spec: KafkaSink,
    key: Option<Expr>,
    value: Option<Expr>,
    /// `upsert: true`: the changelog's `op` field.
    op: Option<Expr>,
    writer: RowWriter,
    producer: Arc<Client>,
    context: Delivery,
    /// Exactly-once: the staging files.
    stage: Option<Stage>,
    /// Scratch for one record's value.
    scratch: Vec<u8>,
    /// Records the producer or the broker refuses; shared with the transactions' threads.
    refusals: Arc<Mutex<Refusals>>,
    /// Writes a refused row as JSON, when dead letters keep it.
    letters: Option<RowWriter>,
    /// Where retries are counted.
    tally: Tally,
}

/// The staging files of an exactly-once instance and its marker.
struct Stage {
    files: StageFiles,
    /// The consumer whose group metadata marks committed transactions.
    marker: Arc<BaseConsumer<Context>>,
    transactional_id: String,
}

impl KafkaOutput {
    /// The instance of `sink` on `cx`'s core; `epoch` is the checkpoint the first rows belong
    /// to (`None` without checkpoints).
    pub(super) fn open(cx: &CoreCx, sink: &PlanSink, epoch: Option<u64>) -> Result<Self, Error> {
        let SinkKind::Kafka(spec) = &sink.kind else {
            unreachable!("a kafka sink")
        };
        let what = format!("kafka sink `{}`", sink.name);
        let exactly_once = spec.delivery == KafkaDelivery::ExactlyOnce;
        if exactly_once && epoch.is_none() {
            return Err(Error::Connector(format!(
                "{what}: delivery: exactly_once commits a transaction per checkpoint: run with --checkpoint-interval"
            )));
        }
        let transactional_id = transactional_id(&cx.plan.name, &sink.name, spec, cx.core);
        // The records the broker refuses follow `on_error`.
        let context = Delivery::keeping_refused();
        let producer = Arc::new(producer(
            spec,
            &context,
            exactly_once.then_some(&transactional_id),
            &what,
        )?);
        let stage = match epoch.filter(|_| exactly_once) {
            None => None,
            Some(epoch) => {
                let dir = stage_dir(&cx.data_dir, &cx.plan.name, &sink.name);
                let marker = marker_consumer(spec, &transactional_id, &what)?;
                Some(Stage {
                    files: StageFiles::new(dir, cx.core, epoch)?,
                    marker: Arc::new(marker),
                    transactional_id: transactional_id.clone(),
                })
            }
        };
        let record = sink.record.clone();
        let op = spec
            .upsert
            .then(|| {
                wire_core::frontend::expr::compile(
                    wire_core::frontend::plan::OP_FIELD,
                    &sink.schema,
                )
                .ok()
            })
            .flatten();
        let index = cx.plan.sinks.iter().position(|s| s.name == sink.name);
        let node = cx.node(crate::graph::Head::Sink(index.unwrap_or(0)));
        let tally = Tally::new(cx.probe.clone(), node, cx.core);
        let timeout = Duration::from_millis(spec.connect_timeout_ms);
        let refusals = Refusals::open(&spec.errors, &what, timeout, Some(tally.clone()))?;
        let letters = refusals.keeps_rows().then(|| {
            RowWriter::new(
                wire_core::frontend::spec::FileFormat::JsonLines,
                &sink.schema,
            )
        });
        Ok(KafkaOutput {
            tally,
            refusals: Arc::new(Mutex::new(refusals)),
            letters,
            what,
            key: record.as_ref().and_then(|r| r.key.clone()),
            value: record.and_then(|r| r.value),
            op,
            writer: RowWriter::new(spec.format, &sink.schema).with_timestamps_as_millis(true),
            spec: (**spec).clone(),
            producer,
            context,
            stage,
            scratch: Vec::new(),
        })
    }

    /// Connects: waits for the brokers (with retries up to `connect_timeout_ms`) and, for
    /// exactly-once, fences earlier producers of the same transactional id.
    pub(super) async fn start(&mut self) -> Result<(), Error> {
        let producer = self.producer.clone();
        let transactional = self.stage.is_some();
        let topic = self.spec.topic.clone();
        let deadline = Duration::from_millis(self.spec.connect_timeout_ms);
        retry(
            &self.what,
            &self.spec.brokers,
            (&self.context.client, &self.tally),
            deadline,
            move |timeout| {
                producer.client().fetch_metadata(Some(&topic), timeout)?;
                if transactional {
                    producer.init_transactions(timeout)?;
                }
                Ok(())
            },
        )
        .await
    }

    pub(super) async fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        let view = batch.view();
        for row in view.rows() {
            let Some((key, value)) = self.encode(row) else {
                continue;
            };
            match &mut self.stage {
                Some(stage) => stage.files.append(&[key.as_deref(), value.as_deref()]),
                None => {
                    if let Some(error) = self.send(key.as_deref(), value.as_deref()).await? {
                        self.refuse(row, &error)?;
                    }
                }
            }
        }
        if let Some(stage) = &mut self.stage {
            if stage.files.buffered() >= STAGE_BUFFER {
                stage.files.write_out()?;
            }
        }
        self.failed()
    }

    /// The key and value of `row`'s record; `None` for a row that makes no record (an
    /// update-before with `upsert: true`).
    fn encode(&mut self, row: &ArchivedRow) -> Option<KeyValue> {
        let mut tombstone = false;
        if let Some(op) = &self.op {
            match op.eval(row) {
                Datum::Str(op) if op == "-U" => return None,
                Datum::Str(op) if op == "-D" => tombstone = true,
                _ => {}
            }
        }
        let key = self.key.as_ref().and_then(|key| datum_bytes(key.eval(row)));
        let value = if tombstone {
            None
        } else if let Some(value) = &self.value {
            datum_bytes(value.eval(row))
        } else {
            self.scratch.clear();
            self.writer.write_row(row, &mut self.scratch);
            while self
                .scratch
                .last()
                .is_some_and(|b| *b == b'\n' || *b == b'\r')
            {
                self.scratch.pop();
            }
            Some(self.scratch.clone())
        };
        Some((key, value))
    }

    /// Handles a row whose record the producer refused (`error`) as `on_error` says.
    fn refuse(&mut self, row: &ArchivedRow, error: &str) -> Result<(), Error> {
        let mut json = Vec::new();
        if let Some(letters) = &mut self.letters {
            letters.write_row(row, &mut json);
        }
        let place = format!("topic `{}` at {}", self.spec.topic, self.spec.brokers);
        lock(&self.refusals)?.refuse(&self.what, error, &place, &json)
    }

    /// Produces one record now, waiting while the producer's queue is full (backpressure);
    /// `Some(why)` when the producer refuses the record itself (too large, say).
    async fn send(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Option<String>, Error> {
        loop {
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.spec.topic);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(value) = value {
                record = record.payload(value);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(None),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::ZERO);
                    glommio::timer::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((KafkaError::MessageProduction(code), _))
                    if crate::kafka::refused_record(code) =>
                {
                    return Ok(Some(format!("the producer refused the record: {code}")));
                }
                Err((error, _)) => {
                    return Err(Error::Connector(format!(
                        "{}: cannot produce: {error}",
                        self.what
                    )))
                }
            }
        }
    }

    /// Serves the delivery reports so far: records the broker refused follow `on_error`;
    /// any other failed delivery fails the run.
    fn failed(&mut self) -> Result<(), Error> {
        self.producer.poll(Duration::ZERO);
        let refused = self.context.take_refused();
        if !refused.is_empty() {
            let mut refusals = lock(&self.refusals)?;
            for record in &refused {
                let (key, value) = (record.key.as_deref(), record.value.as_deref());
                let target = (&self.spec, record.partition);
                refuse_record(
                    &mut refusals,
                    &self.what,
                    target,
                    &record.error,
                    (key, value),
                )?;
            }
        }
        let failed = self.context.failure();
        match failed {
            None => Ok(()),
            Some(error) => Err(Error::Connector(format!(
                "{}: delivery to topic `{}` at {} failed: {error}",
                self.what, self.spec.topic, self.spec.brokers
            ))),
        }
    }

    /// Pre-commits at checkpoint `next_epoch - 1`: at-least-once waits for every record's
    /// acknowledgement; exactly-once syncs and stages the checkpoint's file.
    pub(super) async fn stage(&mut self, next_epoch: u64) -> Result<(), Error> {
        match &mut self.stage {
            None => self.flush().await,
            Some(stage) => {
                let id = next_epoch - 1;
                stage.files.seal(id).await?;
                stage.files.epoch = next_epoch;
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let producer = self.producer.clone();
        let timeout = Duration::from_millis(self.spec.connect_timeout_ms);
        let flushed = glommio::executor()
            .spawn_blocking(move || producer.flush(timeout))
            .await;
        if let Err(error) = flushed {
            let cause = self
                .context
                .client
                .last_error()
                .unwrap_or_else(|| error.to_string());
            return Err(Error::Connector(format!(
                "{}: records not acknowledged by {} within {} ms: {cause}",
                self.what, self.spec.brokers, self.spec.connect_timeout_ms
            )));
        }
        // Every record is acknowledged or refused now; the letters of the refused ones are
        // acknowledged with the records.
        self.failed()?;
        let refusals = self.refusals.clone();
        glommio::executor()
            .spawn_blocking(move || lock(&refusals)?.sync())
            .await
    }

    /// Commits the staged transactions of checkpoints up to `completed`.
    pub(super) async fn commit(&mut self, completed: u64) -> Result<(), Error> {
        let Some(stage) = &mut self.stage else {
            return Ok(());
        };
        while let Some((id, path)) = stage.files.staged.first().cloned() {
            if id > completed {
                break;
            }
            let producer = self.producer.clone();
            let marker = stage.marker.clone();
            let what = self.what.clone();
            let tag = stage.transactional_id.clone();
            let refusals = self.refusals.clone();
            let spec = self.spec.clone();
            let committed = glommio::executor()
                .spawn_blocking(move || {
                    let clients = (&*producer, &*marker, tag.as_str());
                    commit_file(&what, clients, (&spec, &refusals), id, &path)
                })
                .await;
            committed?;
            stage.files.staged.remove(0);
        }
        Ok(())
    }

    pub(super) async fn close(mut self) -> Result<(), Error> {
        match &mut self.stage {
            // The run's last checkpoint is written after the cores stop; the caller commits
            // this file then (`recover_kafka_sinks`).
            Some(stage) => stage.files.seal(stage.files.epoch).await,
            None => self.flush().await,
        }
    }
}

/// `<prefix>-<core>`, the prefix being `transactional_id:` or `wire-<pipeline>-<sink>`.
fn transactional_id(pipeline: &str, sink: &str, spec: &KafkaSink, core: usize) -> String {
    let prefix = spec
        .transactional_id
        .clone()
        .unwrap_or_else(|| format!("wire-{pipeline}-{sink}"));
    format!("{prefix}-{core}")
}

fn stage_dir(data_dir: &Path, pipeline: &str, sink: &str) -> PathBuf {
    data_dir.join(pipeline).join(sink).join("kafka-staged")
}

fn producer(
    spec: &KafkaSink,
    context: &Delivery,
    transactional_id: Option<&String>,
    what: &str,
) -> Result<Client, Error> {
    let mut config = client_config(&spec.brokers, &[]);
    config
        .set("enable.idempotence", "true")
        .set("partitioner", &spec.partitioner)
        .set("queue.buffering.max.kbytes", "16384")
        .set("message.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string());
    if let Some(id) = transactional_id {
        config
            .set("transactional.id", id)
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string());
    }
    for (key, value) in &spec.properties {
        config.set(key, value);
    }
    config
        .create_with_context(context.clone())
        .map_err(|err| Error::Connector(format!("{what}: cannot create the producer: {err}")))
}

/// A consumer of the group named after the transactional id: its group metadata goes into
/// each transaction with the checkpoint id as offset, which marks the transaction committed.
fn marker_consumer(
    spec: &KafkaSink,
    transactional_id: &str,
    what: &str,
) -> Result<BaseConsumer<Context>, Error> {
    let mut config = client_config(&spec.brokers, &spec.properties);
    config
        .set("group.id", transactional_id)
        .set("enable.auto.commit", "false");
    config
        .create_with_context(Context::default())
        .map_err(|err| {
            Error::Connector(format!("{what}: cannot create the marker consumer: {err}"))
        })
}

/// The newest checkpoint whose transaction this transactional id committed (0: none).
fn committed_marker(
    marker: &BaseConsumer<Context>,
    topic: &str,
    timeout: Duration,
) -> Result<u64, KafkaError> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = marker.committed_offsets(list, timeout)?;
    Ok(
        match committed.find_partition(topic, 0).map(|e| e.offset()) {
            Some(Offset::Offset(id)) if id > 0 => id as u64,
            _ => 0,
        },
    )
}

/// Produces the records of staged file `path` (checkpoint `id`) in one transaction with its
/// marker, commits it and deletes the file. Blocking. Each record carries the header
/// `wire-txn: <transactional id>:<checkpoint>:<run>`, so a reader can tell transactions apart
/// (and a transaction committed again after a crash from a replayed checkpoint).
///
/// A record refused (by the producer when queued, by the broker when flushed) follows
/// `refusals`; a broker's refusal aborts the transaction, which is produced again without the
/// refused records, its tag ending in `:<attempt>` (2, 3, …) so a reader that sees aborted
/// transactions can tell the attempts apart.
fn commit_file(
    what: &str,
    (producer, marker, transactional_id): (&Client, &BaseConsumer<Context>, &str),
    (spec, refusals): (&KafkaSink, &Mutex<Refusals>),
    id: u64,
    path: &Path,
) -> Result<(), Error> {
    let timeout = Duration::from_millis(TRANSACTION_TIMEOUT_MS);
    let bytes = read_staged(path)?;
    let records = staged_records(&bytes, path)?;
    let run = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.rsplit_once('-'))
        .map_or("", |(_, run)| run);
    let mut txn = Attempts {
        what,
        producer,
        spec,
        refusals,
        id,
        left_out: vec![false; records.len()],
        records,
    };
    // Attempts that failed abortably without a refusal (a broker that wants the epoch bumped
    // after an earlier refusal's gap in the sequence numbers).
    let mut barren = 0;
    for attempt in 1.. {
        producer
            .begin_transaction()
            .map_err(|e| txn.fail("begin", e))?;
        let tag = match attempt {
            1 => format!("{transactional_id}:{id}:{run}"),
            _ => format!("{transactional_id}:{id}:{run}:{attempt}"),
        };
        let stopped = txn.produce(&tag)?;
        // The records reach the broker before the marker does. Kafka makes both visible only
        // at the commit anyway; a broker that applies the marker early (tansu) then still
        // holds the records when a crash comes between the two.
        let flushed = producer.flush(timeout);
        if txn.leave_out_refused(path, attempt)? {
            continue;
        }
        if let Some(error) = stopped {
            return Err(txn.fail("produce", error));
        }
        flushed.map_err(|e| txn.fail("flush", e))?;
        // The letters are durable before the transaction commits.
        lock(refusals)?.sync()?;
        match mark_and_commit(what, (producer, marker), &spec.topic, id)? {
            Ok(()) => break,
            // After a refusal the broker may refuse the next transaction's sequence numbers
            // until the producer's epoch is bumped, which aborting does: abort and redo.
            Err((step, KafkaError::Transaction(error)))
                if error.txn_requires_abort() && txn.left_out.contains(&true) && barren < 3 =>
            {
                barren += 1;
                tracing::info!(sink = what, checkpoint = id, attempt, %error, "kafka transaction abortable after a refused record ({step}); producing it again");
                producer
                    .abort_transaction(timeout)
                    .map_err(|e| txn.fail("abort", e))?;
            }
            Err((step, error)) => return Err(txn.fail(step, error)),
        }
    }
    std::fs::remove_file(path).map_err(|err| Error::io(path, err))?;
    tracing::debug!(sink = what, checkpoint = id, "kafka transaction committed");
    Ok(())
}

/// The records of a staged file's bytes, in order.
fn staged_records<'a>(bytes: &'a [u8], path: &Path) -> Result<Vec<KeyValueRef<'a>>, Error> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (key, next) = frame(bytes, at).ok_or_else(|| corrupt(path))?;
        let (value, next) = frame(bytes, next).ok_or_else(|| corrupt(path))?;
        at = next;
        records.push((key, value));
    }
    Ok(records)
}

/// Sends checkpoint `id`'s marker in the open transaction and commits it; the inner error
/// names the step that failed.
#[allow(clippy::type_complexity)]
fn mark_and_commit(
    what: &str,
    (producer, marker): (&Client, &BaseConsumer<Context>),
    topic: &str,
    id: u64,
) -> Result<Result<(), (&'static str, KafkaError)>, Error> {
    let timeout = Duration::from_millis(TRANSACTION_TIMEOUT_MS);
    let group = marker.group_metadata().ok_or_else(|| {
        Error::Connector(format!("{what}: the marker consumer has no group metadata"))
    })?;
    let mut offsets = TopicPartitionList::new();
    Ok(offsets
        .add_partition_offset(topic, 0, Offset::Offset(id as i64))
        .and_then(|()| producer.send_offsets_to_transaction(&offsets, &group, timeout))
        .map_err(|e| ("marker", e))
        .and_then(|()| {
            tracing::debug!(
                sink = what,
                checkpoint = id,
                "kafka transaction: records and marker sent, committing"
            );
            producer
                .commit_transaction(timeout)
                .map_err(|e| ("commit", e))
        }))
}

/// The attempts at committing one staged transaction: its records, and those refused so far.
struct Attempts<'a> {
    what: &'a str,
    producer: &'a Client,
    spec: &'a KafkaSink,
    refusals: &'a Mutex<Refusals>,
    id: u64,
    records: Vec<KeyValueRef<'a>>,
    /// Records left out of the transaction: refused in an earlier attempt.
    left_out: Vec<bool>,
}

impl Attempts<'_> {
    fn fail(&self, step: &str, error: KafkaError) -> Error {
        let (what, id) = (self.what, self.id);
        Error::Connector(format!(
            "{what}: transaction of checkpoint {id}: {step}: {error}"
        ))
    }

    /// Queues every record not left out, tagged `tag`; one the producer refuses is handed to
    /// `on_error` and left out. `Some(error)`: the producer stopped taking records (once a
    /// refusal made the transaction abortable, it refuses the records after it too).
    fn produce(&mut self, tag: &str) -> Result<Option<KafkaError>, Error> {
        for (i, &(key, value)) in self.records.iter().enumerate() {
            if self.left_out[i] {
                continue;
            }
            match produce(self.producer, &self.spec.topic, tag, key, value) {
                Ok(()) => {}
                Err(KafkaError::MessageProduction(code)) if crate::kafka::refused_record(code) => {
                    self.left_out[i] = true;
                    let error = format!("the producer refused the record: {code}");
                    let mut refusals = lock(self.refusals)?;
                    let target = (self.spec, -1);
                    refuse_record(&mut refusals, self.what, target, &error, (key, value))?;
                }
                Err(error) => return Ok(Some(error)),
            }
        }
        Ok(None)
    }

    /// After a flush: when the broker refused records, aborts the transaction (it is abortable
    /// now), hands them to `on_error` and leaves them out; whether it did.
    fn leave_out_refused(&mut self, path: &Path, attempt: u32) -> Result<bool, Error> {
        let refused = self.producer.context().take_refused();
        if refused.is_empty() {
            return Ok(false);
        }
        let timeout = Duration::from_millis(TRANSACTION_TIMEOUT_MS);
        self.producer
            .abort_transaction(timeout)
            .map_err(|e| self.fail("abort after a refused record", e))?;
        let mut refusals = lock(self.refusals)?;
        for record in &refused {
            let sent = (record.key.as_deref(), record.value.as_deref());
            let matches = |i: &usize| !self.left_out[*i] && same_record(self.records[*i], sent);
            let Some(i) = (0..self.records.len()).find(matches) else {
                return Err(Error::Connector(format!(
                    "{}: transaction of checkpoint {}: the broker refused a record that is not in the staged file {}",
                    self.what,
                    self.id,
                    path.display()
                )));
            };
            self.left_out[i] = true;
            let target = (self.spec, record.partition);
            refuse_record(&mut refusals, self.what, target, &record.error, sent)?;
        }
        let (what, id) = (self.what, self.id);
        tracing::info!(
            sink = what,
            checkpoint = id,
            attempt,
            refused = refused.len(),
            "kafka transaction aborted for refused records; producing it again without them"
        );
        Ok(true)
    }
}

/// Whether two records have the same key and value bytes (an empty value may come back from
/// the broker as none).
fn same_record(a: KeyValueRef<'_>, b: KeyValueRef<'_>) -> bool {
    a.0.unwrap_or_default() == b.0.unwrap_or_default()
        && a.1.unwrap_or_default() == b.1.unwrap_or_default()
}

/// Hands a record refused as it was sent (`key`, `value`) to `refusals`, its place being
/// the sink's topic and `partition` (negative: not yet assigned one).
fn refuse_record(
    refusals: &mut Refusals,
    what: &str,
    (spec, partition): (&KafkaSink, i32),
    error: &str,
    (key, value): KeyValueRef<'_>,
) -> Result<(), Error> {
    let place = match partition {
        p if p >= 0 => format!("topic `{}` partition {p} at {}", spec.topic, spec.brokers),
        _ => format!("topic `{}` at {}", spec.topic, spec.brokers),
    };
    let value = value.unwrap_or_default();
    let json = record_json(key, value);
    refusals.refuse_record(what, (error, &place), key, value, &json)
}

/// Queues one record with header `wire-txn: <tag>`, waiting while the producer's queue is
/// full.
fn produce(
    producer: &Client,
    topic: &str,
    tag: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), KafkaError> {
    loop {
        let headers = OwnedHeaders::new().insert(Header {
            key: "wire-txn",
            value: Some(tag.as_bytes()),
        });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// A refused record as a dead-letter file's `row`: its value when that is JSON (the sink's
/// default format), else `{"key": …, "value": …}` with both as text (invalid UTF-8 replaced).
fn record_json(key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    if serde_json::from_slice::<serde_json::Value>(value).is_ok() {
        return value.to_vec();
    }
    let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    serde_json::json!({"key": text(key), "value": text(Some(value))})
        .to_string()
        .into_bytes()
}

/// The bytes a key or value expression's result is written as: strings and bytes as they
/// are, null as no bytes, other values as their text.
fn datum_bytes(datum: Datum<'_>) -> Option<Vec<u8>> {
    match datum {
        Datum::Null => None,
        Datum::Str(text) => Some(text.as_bytes().to_vec()),
        Datum::Bytes(bytes) => Some(bytes.to_vec()),
        other => {
            let mut text = String::new();
            other.write_text(&mut text);
            Some(text.into_bytes())
        }
    }
}

/// Settles the exactly-once Kafka sinks of `plan` after a crash or a finished run: each
/// staged transaction of a checkpoint up to `completed` is committed unless its marker shows
/// it was, later ones and unfinished files are deleted. Runs on the caller's thread before
/// the data cores start, or after they stop. Returns how many transactions it committed.
pub fn recover_kafka_sinks(plan: &Plan, data_dir: &Path, completed: u64) -> Result<usize, Error> {
    let mut committed = 0;
    for sink in &plan.sinks {
        let SinkKind::Kafka(spec) = &sink.kind else {
            continue;
        };
        if spec.delivery != KafkaDelivery::ExactlyOnce {
            continue;
        }
        let dir = stage_dir(data_dir, &plan.name, &sink.name);
        let mut files = staged_files(&dir)?;
        files.sort();
        let mut cores: Vec<usize> = files.iter().map(|(core, _, _, _)| *core).collect();
        cores.dedup();
        for core in cores {
            let mine = files.iter().filter(|(c, _, _, _)| *c == core);
            committed += settle_core(plan, sink, spec, core, completed, mine)?;
        }
    }
    Ok(committed)
}

fn settle_core<'a>(
    plan: &Plan,
    sink: &PlanSink,
    spec: &KafkaSink,
    core: usize,
    completed: u64,
    files: impl Iterator<Item = &'a (usize, u64, bool, PathBuf)>,
) -> Result<usize, Error> {
    let what = format!("kafka sink `{}`", sink.name);
    let mut client = None;
    let mut refusals = None;
    let mut committed = 0;
    for (_, id, staged, path) in files {
        if !staged || *id > completed {
            std::fs::remove_file(path).map_err(|err| Error::io(path, err))?;
            continue;
        }
        if client.is_none() {
            client = Some(recovery_clients(plan, sink, spec, core, &what)?);
        }
        let Some((producer, marker, done, transactional_id)) = &client else {
            continue;
        };
        if *id <= *done {
            tracing::info!(sink = %sink.name, core, checkpoint = id, marker = done, "a staged kafka transaction the broker's marker shows committed: deleted");
            std::fs::remove_file(path).map_err(|err| Error::io(path, err))?;
            continue;
        }
        let clients = (producer, marker, transactional_id.as_str());
        if refusals.is_none() {
            let timeout = Duration::from_millis(spec.connect_timeout_ms);
            let opened = Refusals::open(&spec.errors, &what, timeout, None)?;
            refusals = Some(Mutex::new(opened));
        }
        let Some(refusals) = &refusals else {
            continue;
        };
        commit_file(&what, clients, (spec, refusals), *id, path)?;
        committed += 1;
        tracing::info!(sink = %sink.name, core, checkpoint = id, "committed a staged kafka transaction after a restart");
    }
    Ok(committed)
}

/// A transactional producer that has fenced earlier ones of the same id, the marker
/// consumer, and the newest checkpoint whose transaction is committed.
fn recovery_clients(
    plan: &Plan,
    sink: &PlanSink,
    spec: &KafkaSink,
    core: usize,
    what: &str,
) -> Result<(Client, BaseConsumer<Context>, u64, String), Error> {
    let id = transactional_id(&plan.name, &sink.name, spec, core);
    let context = Delivery::keeping_refused();
    let producer = producer(spec, &context, Some(&id), what)?;
    let marker = marker_consumer(spec, &id, what)?;
    let deadline = Duration::from_millis(spec.connect_timeout_ms);
    let done = retry_blocking(what, &spec.brokers, &context.client, deadline, |timeout| {
        producer.init_transactions(timeout)?;
        committed_marker(&marker, &spec.topic, timeout)
    })?;
    Ok((producer, marker, done, id))
}
