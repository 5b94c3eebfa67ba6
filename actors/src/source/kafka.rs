//! The Kafka source: each core reads the Kafka partitions it owns with a consumer of its own.
//!
//! The topics' partitions, sorted by topic and partition, are the source's partitions: the
//! `i`-th belongs to core `i % cores`, and each core assigns its partitions explicitly (no
//! consumer-group rebalancing). Positions (the next offset of each partition) go into
//! checkpoints, keyed by topic and partition, and a restored run resumes there; the offsets
//! may also be committed to a consumer group once their checkpoint completes, for monitoring.
//!
//! librdkafka fetches on its own threads into a bounded queue (`queued.max.messages.kbytes`);
//! the core polls it without blocking between batches. A pipeline that falls behind stops
//! polling, the queue fills and librdkafka stops fetching: backpressure reaches the broker.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use wire_core::frontend::spec::{
    FileFormat, KafkaFormat, KafkaMeta, KafkaOnError, KafkaSource, KafkaStart, KafkaTopics,
};
use wire_core::record::avro::AvroReader;
use wire_core::record::format::{push_timed, FormatError, RowReader};
use wire_core::{BatchBuilder, PartitionId, StreamId, ValueRef};
use wire_storage::checkpoint::SourcePosition;

use super::{owned_partitions, Emitter};
use crate::dead_letter::{DeadLetters, Letter};
use crate::kafka::{client_config, position_key, retry, Context};
use crate::pipeline::CoreCx;
use crate::sink::refusals::Tally;
use crate::Error;

type Client = BaseConsumer<Context>;

/// A partition's next offset: topic, partition, offset.
type Offsets = (String, i32, i64);

/// How long the core waits when the consumer's queue is empty.
const IDLE_POLL: Duration = Duration::from_millis(10);
/// Records taken from the queue per turn before barriers and pauses are looked at again.
const RECORDS_PER_TURN: usize = 4096;
/// Rejected records logged one by one before logging only every thousandth.
const REJECTS_LOGGED: u64 = 10;

/// One Kafka partition this core reads.
struct Part {
    topic: String,
    partition: i32,
    /// The source partition it is.
    index: u32,
    /// The offset of the next record to read.
    next: i64,
    builder: BatchBuilder,
}

pub(super) async fn run(
    cx: &Rc<CoreCx>,
    index: usize,
    spec: &KafkaSource,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    let source = &cx.plan.sources[index];
    let what = format!("kafka source `{}`", source.name);
    let context = Context::default();
    let client = Arc::new(consumer(cx, &source.name, spec, &context, &what)?);
    let deadline = Duration::from_millis(spec.connect_timeout_ms);
    let tally = emitter.tally();
    let all = list_partitions(&what, spec, &client, (&context, &tally), deadline).await?;
    let partitions = all.len() as u32;
    let mine = owned_partitions(cx, partitions);
    emitter.own_partitions(&mine);
    let mut parts = Vec::with_capacity(mine.len());
    for at in mine {
        let (topic, partition) = all[at as usize].clone();
        parts.push(Part {
            topic,
            partition,
            index: at,
            next: 0,
            builder: BatchBuilder::with_capacity(
                StreamId(index as u32),
                PartitionId(at),
                256 << 10,
            ),
        });
    }
    start_positions(
        &what, spec, emitter, &client, &context, deadline, &mut parts,
    )
    .await?;
    let mut assignment = TopicPartitionList::new();
    for part in &parts {
        assignment
            .add_partition_offset(&part.topic, part.partition, Offset::Offset(part.next))
            .map_err(|err| Error::Connector(format!("{what}: {err}")))?;
    }
    client
        .assign(&assignment)
        .map_err(|err| Error::Connector(format!("{what}: cannot assign partitions: {err}")))?;
    tracing::info!(core = cx.core, source = %source.name, partitions = parts.len(), of = partitions, "kafka source assigned");
    let mut reader = Reader::new(cx, index, spec, what)?;
    let result = reader
        .read(cx, spec, &client, &context, &mut parts, partitions, emitter)
        .await;
    if result.is_ok() {
        emitter.finished(partitions, positions(&parts));
    }
    result
}

fn consumer(
    cx: &CoreCx,
    source: &str,
    spec: &KafkaSource,
    context: &Context,
    what: &str,
) -> Result<Client, Error> {
    let group = spec
        .group_id
        .clone()
        .unwrap_or_else(|| format!("wire-{}-{source}", cx.plan.name));
    let mut config = client_config(&spec.brokers, &[]);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("queued.max.messages.kbytes", "8192")
        .set("session.timeout.ms", "6000");
    for (key, value) in &spec.properties {
        config.set(key, value);
    }
    config
        .create_with_context(context.clone())
        .map_err(|err| Error::Connector(format!("{what}: cannot create the consumer: {err}")))
}

/// Every partition of the source's topics, sorted by topic then partition.
async fn list_partitions(
    what: &str,
    spec: &KafkaSource,
    client: &Arc<Client>,
    context: (&Context, &Tally),
    deadline: Duration,
) -> Result<Vec<(String, i32)>, Error> {
    let topics = spec.topics.clone();
    let fetch = client.clone();
    let listed = retry(what, &spec.brokers, context, deadline, move |timeout| {
        let metadata = fetch.fetch_metadata(None, timeout)?;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let pattern = match &topics {
            KafkaTopics::Pattern(p) => regex::Regex::new(p).ok(),
            KafkaTopics::List(_) => None,
        };
        let wanted: Vec<&str> = match &topics {
            KafkaTopics::List(list) => list.iter().map(String::as_str).collect(),
            KafkaTopics::Pattern(_) => Vec::new(),
        };
        for topic in metadata.topics() {
            let take = match &pattern {
                Some(re) => re.is_match(topic.name()) && !topic.name().starts_with("__"),
                None => wanted.contains(&topic.name()),
            };
            if take {
                found.extend(
                    topic
                        .partitions()
                        .iter()
                        .map(|p| (topic.name().to_string(), p.id())),
                );
            }
        }
        for name in wanted {
            if !found.iter().any(|(topic, _)| topic == name) {
                missing.push(name.to_string());
            }
        }
        Ok((found, missing))
    })
    .await?;
    let (mut found, missing) = listed;
    if !missing.is_empty() {
        return Err(Error::Connector(format!(
            "{what}: topic {} does not exist at {}",
            missing.join(", "),
            spec.brokers
        )));
    }
    if found.is_empty() {
        return Err(Error::Connector(format!(
            "{what}: no topic matches at {}",
            spec.brokers
        )));
    }
    found.sort();
    Ok(found)
}

/// Sets each part's first offset: the restored checkpoint's position, else `start:`.
async fn start_positions(
    what: &str,
    spec: &KafkaSource,
    emitter: &Emitter,
    client: &Arc<Client>,
    context: &Context,
    deadline: Duration,
    parts: &mut [Part],
) -> Result<(), Error> {
    let restored = emitter.restored().cloned();
    let tally = emitter.tally();
    for part in parts.iter_mut() {
        let key = position_key(&part.topic, part.partition);
        let saved = restored
            .as_ref()
            .and_then(|s| s.positions.iter().find(|at| at.line == key));
        let (topic, partition) = (part.topic.clone(), part.partition);
        let start = spec.start.clone();
        let fetch = client.clone();
        let clients = (context, &tally);
        let (first, _) = retry(what, &spec.brokers, clients, deadline, move |timeout| {
            first_offset(&fetch, &topic, partition, &start, timeout)
        })
        .await?;
        part.next = saved.map_or(first, |saved| saved.position as i64);
    }
    Ok(())
}

/// Where `start` puts the first record of one partition, and the partition's end offset now.
fn first_offset(
    client: &Client,
    topic: &str,
    partition: i32,
    start: &KafkaStart,
    timeout: Duration,
) -> Result<(i64, i64), KafkaError> {
    let (low, high) = client.fetch_watermarks(topic, partition, timeout)?;
    let first = match start {
        KafkaStart::Earliest => low,
        KafkaStart::Latest => high,
        KafkaStart::Offsets(list) => list
            .iter()
            .find(|(t, p, _)| t == topic && *p == partition)
            .map_or(low, |(_, _, offset)| (*offset).clamp(low, high)),
        KafkaStart::Timestamp(ms) => {
            let mut query = TopicPartitionList::new();
            query.add_partition_offset(topic, partition, Offset::Offset(*ms))?;
            let found = client.offsets_for_times(query, timeout)?;
            match found.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => offset,
                _ => high,
            }
        }
    };
    Ok((first, high))
}

fn positions(parts: &[Part]) -> Vec<SourcePosition> {
    parts
        .iter()
        .map(|part| SourcePosition {
            partition: part.index,
            position: part.next.max(0) as u64,
            line: position_key(&part.topic, part.partition),
            token: None,
        })
        .collect()
}

/// Decodes records into rows and handles the ones that do not decode.
struct Reader {
    what: String,
    format: KafkaFormat,
    rows: RowReader,
    /// `format: avro`.
    avro: Option<AvroReader>,
    metadata: Vec<KafkaMeta>,
    event_time: Option<usize>,
    /// `format: raw` into a bytes field (else a string field).
    raw_bytes: bool,
    on_error: KafkaOnError,
    /// `on_error: dead_letter`: the file or topic.
    dead_letters: Option<DeadLetters>,
    rejected: u64,
    batch_rows: usize,
    /// When a consumer error was last logged.
    warned: Option<Instant>,
    /// Positions of checkpoints not yet known complete, for the consumer-group commit.
    pending: VecDeque<(u64, Vec<Offsets>)>,
}

impl Reader {
    fn new(cx: &CoreCx, index: usize, spec: &KafkaSource, what: String) -> Result<Reader, Error> {
        let source = &cx.plan.sources[index];
        let payload_len = spec.schema.len() - spec.metadata.len();
        let payload = wire_core::Schema::new(spec.schema.fields()[..payload_len].to_vec());
        let format = match spec.format {
            KafkaFormat::Csv => FileFormat::Csv,
            _ => FileFormat::JsonLines,
        };
        let rows =
            RowReader::with_extra_fields(format, &payload, spec.metadata.len(), source.event_time);
        let avro = match &spec.avro {
            None => None,
            Some(avro) => Some(
                AvroReader::new(
                    &avro.schema,
                    &payload,
                    spec.metadata.len(),
                    source.event_time,
                    avro.confluent,
                )
                .map_err(|err| Error::Connector(format!("{what}: {err}")))?,
            ),
        };
        let dead_letters = match &spec.on_error {
            KafkaOnError::DeadLetter(to) => {
                let timeout = Duration::from_millis(spec.connect_timeout_ms);
                Some(DeadLetters::open(to, &what, timeout)?)
            }
            _ => None,
        };
        Ok(Reader {
            what,
            format: spec.format,
            rows,
            avro,
            metadata: spec.metadata.clone(),
            event_time: source.event_time,
            raw_bytes: spec.schema.fields()[0].data_type == wire_core::DataType::Bytes,
            on_error: spec.on_error.clone(),
            dead_letters,
            rejected: 0,
            batch_rows: cx.plan.settings.batch_rows,
            warned: None,
            pending: VecDeque::new(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn read(
        &mut self,
        cx: &CoreCx,
        spec: &KafkaSource,
        client: &Arc<Client>,
        context: &Context,
        parts: &mut [Part],
        partitions: u32,
        emitter: &mut Emitter,
    ) -> Result<(), Error> {
        let deadline = Duration::from_millis(spec.connect_timeout_ms);
        let mut last_check = Instant::now();
        let mut last_record = Instant::now();
        while !cx.stopping() {
            while let Some(id) = emitter.barrier_due() {
                flush_all(parts, emitter).await?;
                // Dead letters are acknowledged before the checkpoint moves past their records.
                self.flush_dead_letters().await?;
                emitter.inject(id, partitions, positions(parts)).await;
                if spec.group_id.is_some() {
                    let offsets = parts
                        .iter()
                        .map(|p| (p.topic.clone(), p.partition, p.next))
                        .collect();
                    self.pending.push_back((id, offsets));
                }
            }
            self.commit_completed(cx, client);
            if emitter.held() {
                emitter.hold().await;
                continue;
            }
            let taken = self.take(client, parts, emitter).await?;
            if taken > 0 {
                last_record = Instant::now();
            } else {
                flush_all(parts, emitter).await?;
                emitter.tick().await;
                if spec.bounded && last_record.elapsed() > END_WAIT {
                    let probe = client.clone();
                    let ends: Vec<_> = parts
                        .iter()
                        .map(|p| (p.topic.clone(), p.partition, p.next))
                        .collect();
                    let done = glommio::executor()
                        .spawn_blocking(move || caught_up(&probe, &ends))
                        .await;
                    if done {
                        break;
                    }
                    last_record = Instant::now();
                }
                if last_check.elapsed() > Duration::from_secs(1) {
                    last_check = Instant::now();
                    self.check_brokers(spec, client, context, deadline).await?;
                }
                glommio::timer::sleep(IDLE_POLL).await;
            }
        }
        flush_all(parts, emitter).await?;
        self.flush_dead_letters().await
    }

    /// Waits until every dead letter so far is durable (acknowledged by the broker).
    async fn flush_dead_letters(&self) -> Result<(), Error> {
        match &self.dead_letters {
            None => Ok(()),
            Some(dead_letters) => dead_letters.sync_async().await,
        }
    }

    /// Takes up to [`RECORDS_PER_TURN`] records from the consumer's queue; how many.
    async fn take(
        &mut self,
        client: &Client,
        parts: &mut [Part],
        emitter: &mut Emitter,
    ) -> Result<usize, Error> {
        let mut taken = 0;
        while taken < RECORDS_PER_TURN {
            let message = match client.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    // librdkafka retries by itself; say so every few seconds, not every poll.
                    if self
                        .warned
                        .is_none_or(|at| at.elapsed() > Duration::from_secs(5))
                    {
                        self.warned = Some(Instant::now());
                        tracing::warn!(source = %self.what, %error, "kafka consumer error; librdkafka retries");
                    }
                    break;
                }
            };
            taken += 1;
            let Some(at) = parts
                .iter()
                .position(|p| p.partition == message.partition() && p.topic == message.topic())
            else {
                continue;
            };
            self.record(&message, &mut parts[at], emitter)?;
            if parts[at].builder.row_count() >= self.batch_rows {
                let batch = parts[at].builder.finish();
                emitter.emit(batch).await?;
            }
        }
        Ok(taken)
    }

    /// Decodes one record into its part's builder.
    fn record(
        &mut self,
        message: &BorrowedMessage<'_>,
        part: &mut Part,
        emitter: &Emitter,
    ) -> Result<(), Error> {
        part.next = message.offset() + 1;
        emitter.events(1);
        let payload = message.payload().unwrap_or_default();
        let timestamp = message.timestamp().to_millis().unwrap_or(0);
        let extra: Vec<ValueRef<'_>> = self
            .metadata
            .iter()
            .map(|meta| match meta {
                KafkaMeta::Timestamp => ValueRef::Timestamp(timestamp),
                KafkaMeta::Topic => ValueRef::Str(message.topic()),
                KafkaMeta::Partition => ValueRef::I64(i64::from(message.partition())),
                KafkaMeta::Offset => ValueRef::I64(message.offset()),
                KafkaMeta::Key => message.key().map_or(ValueRef::Null, ValueRef::Bytes),
            })
            .collect();
        let line = message.offset().max(0) as u64;
        let result = match (self.format, self.avro.as_mut()) {
            (KafkaFormat::Raw, _) => self.raw(payload, &extra, &mut part.builder),
            (KafkaFormat::Avro, Some(avro)) => {
                avro.decode_with(line, payload, &extra, &mut part.builder)
            }
            _ => match std::str::from_utf8(payload) {
                Err(err) => Err(FormatError {
                    line,
                    column: Some(err.valid_up_to() + 1),
                    field: None,
                    message: "the record is not valid UTF-8".into(),
                }),
                Ok(text) => self.rows.decode_with(line, text, &extra, &mut part.builder),
            },
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) => self.reject(message, err, emitter),
        }
    }

    fn raw(
        &self,
        payload: &[u8],
        extra: &[ValueRef<'_>],
        out: &mut BatchBuilder,
    ) -> Result<(), FormatError> {
        let fail = |message: String| FormatError {
            line: 0,
            column: None,
            field: None,
            message,
        };
        let value = match std::str::from_utf8(payload) {
            _ if self.raw_bytes => ValueRef::Bytes(payload),
            Ok(text) => ValueRef::Str(text),
            Err(_) => return Err(fail("the record is not valid UTF-8".into())),
        };
        let mut values = Vec::with_capacity(1 + extra.len());
        values.push(value);
        values.extend_from_slice(extra);
        push_timed(out, &values, self.event_time).map_err(fail)
    }

    /// Handles a record that does not decode as `on_error` says.
    fn reject(
        &mut self,
        message: &BorrowedMessage<'_>,
        err: FormatError,
        emitter: &Emitter,
    ) -> Result<(), Error> {
        let place = format!(
            "topic `{}` partition {} offset {}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let detail = describe(&err);
        match &self.on_error {
            KafkaOnError::Fail => {
                return Err(Error::Connector(format!(
                    "{}: {place}: {detail}",
                    self.what
                )))
            }
            KafkaOnError::Skip => {}
            KafkaOnError::DeadLetter(_) => {
                if let Some(dead_letters) = self.dead_letters.as_mut() {
                    let (partition, offset) = (message.partition(), message.offset());
                    let (partition_text, offset_text) = (partition.to_string(), offset.to_string());
                    let value = message.payload().unwrap_or_default();
                    let letter = Letter {
                        role: "source",
                        what: &self.what,
                        error: &detail,
                        place: &place,
                        key: message.key(),
                        value,
                        headers: &[
                            ("wire.topic", message.topic()),
                            ("wire.partition", &partition_text),
                            ("wire.offset", &offset_text),
                        ],
                    };
                    let line = || {
                        let base64 =
                            |bytes| base64::engine::general_purpose::STANDARD.encode(bytes);
                        let mut line = serde_json::json!({
                            "topic": message.topic(),
                            "partition": partition,
                            "offset": offset,
                            "error": detail,
                            "key_base64": message.key().map(base64),
                            "value_base64": base64(value),
                        })
                        .to_string()
                        .into_bytes();
                        line.push(b'\n');
                        line
                    };
                    dead_letters.send(&letter, line)?;
                }
            }
        }
        self.rejected += 1;
        emitter.rejected(1);
        if self.rejected <= REJECTS_LOGGED || self.rejected.is_multiple_of(1000) {
            tracing::warn!(source = %self.what, rejected = self.rejected, %place, error = %detail, "a record does not decode");
        }
        Ok(())
    }

    /// Commits the offsets of the newest completed checkpoint to the consumer group.
    fn commit_completed(&mut self, cx: &CoreCx, client: &Client) {
        let Some(completed) = cx.checkpoints.as_ref().map(|c| c.completed()) else {
            return;
        };
        let mut newest = None;
        while self.pending.front().is_some_and(|(id, _)| *id <= completed) {
            newest = self.pending.pop_front();
        }
        let Some((_, offsets)) = newest else { return };
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
        if let Err(error) = client.commit(&list, CommitMode::Async) {
            tracing::warn!(source = %self.what, %error, "cannot commit offsets to the consumer group");
        }
    }

    /// Fails once librdkafka has reported errors for longer than `deadline` and the brokers
    /// still do not answer.
    async fn check_brokers(
        &self,
        spec: &KafkaSource,
        client: &Arc<Client>,
        context: &Context,
        deadline: Duration,
    ) -> Result<(), Error> {
        let Some(since) = context.failing_since() else {
            return Ok(());
        };
        let probe = client.clone();
        let answered = glommio::executor()
            .spawn_blocking(move || probe.fetch_metadata(None, Duration::from_secs(1)).is_ok())
            .await;
        if answered {
            context.clear();
            return Ok(());
        }
        if since.elapsed() < deadline {
            return Ok(());
        }
        let cause = context.last_error().unwrap_or_else(|| "no answer".into());
        Err(Error::Connector(format!(
            "{}: lost the brokers at {} for {:.1} s: {cause}",
            self.what,
            spec.brokers,
            since.elapsed().as_secs_f64()
        )))
    }
}

fn describe(err: &FormatError) -> String {
    let mut text = String::new();
    if let Some(column) = err.column {
        text.push_str(&format!("column {column}, "));
    }
    if let Some(field) = &err.field {
        text.push_str(&format!("field \"{field}\": "));
    }
    text.push_str(&err.message);
    text
}

/// Whether every part has read up to the end offset the broker reports for it (one short
/// counts: the last offset may be a transaction marker, which is never delivered). Asked only
/// once no record has come for [`END_WAIT`], since some brokers report ends that are not yet
/// the last offset. Blocking.
fn caught_up(client: &Client, parts: &[Offsets]) -> bool {
    parts.iter().all(|(topic, partition, next)| {
        client
            .fetch_watermarks(topic, *partition, Duration::from_secs(5))
            .is_ok_and(|(_, high)| next + 1 >= high)
    })
}

/// How long a bounded source waits without records before it asks whether it is at the end.
const END_WAIT: Duration = Duration::from_secs(1);

async fn flush_all(parts: &mut [Part], emitter: &mut Emitter) -> Result<(), Error> {
    for part in parts.iter_mut() {
        if !part.builder.is_empty() {
            let batch = part.builder.finish();
            emitter.emit(batch).await?;
        }
    }
    Ok(())
}
