//! Where every connector's dead letters go: a JSON-lines file or a Kafka topic
//! (`dead_letter: <file>` or `dead_letter_topic` + `dead_letter_brokers`; the Kafka source says
//! `dead_letter_path` for the file). Used by the sinks' refused rows (`sink::refusals`) and by
//! the sources' undecodable records (Kafka, MongoDB).
//!
//! A letter in a topic is the original bytes as the value (a source's record as it was read,
//! with its key; a sink's row as a JSON object) with headers `wire.sink` or `wire.source` (the
//! connector), `wire.place` and `wire.error`, plus any the connector adds (the Kafka source:
//! `wire.topic`, `wire.partition`, `wire.offset`). A file line is written in one `write` to a
//! file opened for appending, so instances on different cores never interleave their lines.
//!
//! [`DeadLetters::sync`] makes every letter so far durable (the file synced, the topic's
//! producer flushed and every letter acknowledged by the broker); connectors call it before a
//! checkpoint's barrier leaves a source or before a sink acks (or commits) the rows the letters
//! belong to, so a completed checkpoint never passes a letter that was lost. Letters are
//! at-least-once: a replay after a crash may write one again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use wire_core::frontend::spec::DeadLetterTo;

use crate::kafka::{client_config, Delivery};
use crate::Error;

/// One dead letter.
pub(crate) struct Letter<'a> {
    /// `sink` or `source`: the header (`wire.sink`) naming the connector.
    pub(crate) role: &'a str,
    /// The connector (``postgres sink `out` ``).
    pub(crate) what: &'a str,
    /// Why the record or row was refused.
    pub(crate) error: &'a str,
    /// Where it was (a topic, partition and offset; a table at a server).
    pub(crate) place: &'a str,
    /// The original key, if it had one.
    pub(crate) key: Option<&'a [u8]>,
    /// The original bytes.
    pub(crate) value: &'a [u8],
    /// More headers, name and text.
    pub(crate) headers: &'a [(&'a str, &'a str)],
}

/// An open dead-letter destination.
pub(crate) enum DeadLetters {
    /// A JSON-lines file opened for appending.
    File(PathBuf, std::fs::File),
    /// A Kafka topic.
    Topic(DeadTopic),
}

impl DeadLetters {
    /// Opens `to` for connector `what`: the file (and its directory) is created if missing; a
    /// letter the topic's brokers do not acknowledge within `timeout` fails [`DeadLetters::sync`].
    pub(crate) fn open(to: &DeadLetterTo, what: &str, timeout: Duration) -> Result<Self, Error> {
        match to {
            DeadLetterTo::File(path) => Ok(DeadLetters::File(path.clone(), open_append(path)?)),
            DeadLetterTo::Topic { brokers, topic } => Ok(DeadLetters::Topic(DeadTopic::open(
                brokers, topic, what, timeout,
            )?)),
        }
    }

    /// Writes `letter`: to a file as the line `line` makes (the connector's JSON line), to a
    /// topic as a record. A topic's letter is only queued; [`DeadLetters::sync`] waits for it.
    pub(crate) fn send(
        &mut self,
        letter: &Letter<'_>,
        line: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), Error> {
        match self {
            DeadLetters::File(path, file) => file
                .write_all(&line())
                .map_err(|err| Error::io(&*path, err)),
            DeadLetters::Topic(topic) => topic.send(letter),
        }
    }

    /// Makes every letter so far durable; blocks (a file sync, or until the broker has
    /// acknowledged every letter), so a data core calls [`DeadLetters::sync_async`].
    pub(crate) fn sync(&self) -> Result<(), Error> {
        match self {
            DeadLetters::File(path, file) => file.sync_data().map_err(|err| Error::io(path, err)),
            DeadLetters::Topic(topic) => topic.flush(),
        }
    }

    /// The same on a data core: the wait runs on glommio's blocking pool.
    pub(crate) async fn sync_async(&self) -> Result<(), Error> {
        match self {
            DeadLetters::File(path, file) => {
                let (path, file) = match file.try_clone() {
                    Ok(file) => (path.clone(), file),
                    Err(err) => return Err(Error::io(path, err)),
                };
                glommio::executor()
                    .spawn_blocking(move || file.sync_data().map_err(|err| Error::io(&path, err)))
                    .await
            }
            DeadLetters::Topic(topic) => {
                let topic = topic.clone();
                glommio::executor()
                    .spawn_blocking(move || topic.flush())
                    .await
            }
        }
    }
}

/// The producer of a dead-letter topic (idempotent, so librdkafka's own retries do not
/// duplicate a letter).
#[derive(Clone)]
pub(crate) struct DeadTopic {
    producer: Arc<BaseProducer<Delivery>>,
    context: Delivery,
    /// The connector, for errors.
    what: String,
    brokers: String,
    topic: String,
    timeout: Duration,
}

impl DeadTopic {
    fn open(brokers: &str, topic: &str, what: &str, timeout: Duration) -> Result<Self, Error> {
        let context = Delivery::default();
        let mut config = client_config(brokers, &[]);
        config.set("enable.idempotence", "true").set(
            "message.timeout.ms",
            timeout.as_millis().max(1000).to_string(),
        );
        let producer = config.create_with_context(context.clone()).map_err(|err| {
            Error::Connector(format!(
                "{what}: cannot create the dead-letter producer for {brokers}: {err}"
            ))
        })?;
        Ok(DeadTopic {
            producer: Arc::new(producer),
            context,
            what: what.to_string(),
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            timeout,
        })
    }

    /// Queues one letter; waits (briefly, on the caller's thread) while the producer's queue is
    /// full.
    fn send(&self, letter: &Letter<'_>) -> Result<(), Error> {
        let role = match letter.role {
            "source" => "wire.source",
            _ => "wire.sink",
        };
        let mut headers = OwnedHeaders::new()
            .insert(header(role, letter.what))
            .insert(header("wire.place", letter.place))
            .insert(header("wire.error", letter.error));
        for (key, value) in letter.headers {
            headers = headers.insert(header(key, value));
        }
        let mut record = BaseRecord::to(&self.topic)
            .payload(letter.value)
            .headers(headers);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < self.timeout =>
                {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => {
                    return Err(Error::Connector(format!(
                        "{}: cannot produce a dead letter to topic `{}` at {}: {err}",
                        self.what, self.topic, self.brokers
                    )))
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until the broker has acknowledged every letter queued so far. Blocking.
    fn flush(&self) -> Result<(), Error> {
        let failed = match self.producer.flush(self.timeout) {
            Err(err) => Some(
                self.context
                    .client
                    .last_error()
                    .unwrap_or_else(|| err.to_string()),
            ),
            Ok(()) => self.context.failure(),
        };
        match failed {
            None => Ok(()),
            Some(cause) => Err(Error::Connector(format!(
                "{}: dead letters to topic `{}` at {} not acknowledged: {cause}",
                self.what, self.topic, self.brokers
            ))),
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value.as_bytes()),
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| Error::io(dir, err))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| Error::io(path, err))
}
