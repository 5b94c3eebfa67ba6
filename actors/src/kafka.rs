//! What the Kafka source and sink share: client configuration, a client context that keeps
//! the last broker error, and retries with exponential backoff and jitter bounded by a
//! deadline (ADR 0005).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics};

use crate::retry::RetryState;
use crate::sink::refusals::Tally;
use crate::Error;

/// A client context that remembers the last error librdkafka reported (a refused
/// connection, all brokers down) so errors can say why a broker is unreachable, and logs
/// librdkafka's messages through tracing.
#[derive(Clone, Default)]
pub(crate) struct Context {
    last_error: Arc<Mutex<Option<(Instant, String)>>>,
}

impl Context {
    /// The last error librdkafka reported, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        let guard = self.last_error.lock().ok()?;
        guard.as_ref().map(|(_, text)| text.clone())
    }

    /// Forgets the last error (after a request succeeded).
    pub(crate) fn clear(&self) {
        if let Ok(mut guard) = self.last_error.lock() {
            *guard = None;
        }
    }

    /// Since when librdkafka has been reporting errors without a success in between.
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        let guard = self.last_error.lock().ok()?;
        guard.as_ref().map(|(since, _)| *since)
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error");
        if let Ok(mut guard) = self.last_error.lock() {
            let since = guard
                .as_ref()
                .map_or_else(Instant::now, |(since, _)| *since);
            *guard = Some((since, reason.to_string()));
        }
    }

    fn stats(&self, _: Statistics) {}
}

impl ConsumerContext for Context {}

/// A producer's context: the client context plus the first delivery failure, and (for a
/// sink whose refused records follow `on_error`) the records the broker refused for what
/// they are.
#[derive(Clone, Default)]
pub(crate) struct Delivery {
    pub(crate) client: Context,
    pub(crate) failed: Arc<Mutex<Option<String>>>,
    /// `Some`: a delivery that fails for the record itself ([`refused_record`]) is kept here
    /// instead of failing the producer.
    refused: Option<Arc<Mutex<Vec<RefusedRecord>>>>,
}

/// A record the broker refused for what it is (too large, invalid), as it was sent.
pub(crate) struct RefusedRecord {
    pub(crate) error: String,
    pub(crate) partition: i32,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
}

impl Delivery {
    /// A context that keeps the records the broker refuses for what they are, for
    /// [`Delivery::take_refused`], rather than counting them as a failed delivery.
    pub(crate) fn keeping_refused() -> Delivery {
        Delivery {
            refused: Some(Arc::default()),
            ..Delivery::default()
        }
    }

    /// The first delivery failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// The refused records reported since the last call, oldest first.
    pub(crate) fn take_refused(&self) -> Vec<RefusedRecord> {
        self.refused
            .as_ref()
            .and_then(|refused| refused.lock().ok().map(|mut r| std::mem::take(&mut *r)))
            .unwrap_or_default()
    }
}

impl ClientContext for Delivery {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }
}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Err((error, message)) = result else {
            return;
        };
        if let (Some(refused), KafkaError::MessageProduction(code)) = (&self.refused, error) {
            if refused_record(*code) {
                if let Ok(mut refused) = refused.lock() {
                    refused.push(RefusedRecord {
                        error: format!("the broker refused the record: {code}"),
                        partition: message.partition(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                    });
                    return;
                }
            }
        }
        if let Ok(mut failed) = self.failed.lock() {
            failed.get_or_insert_with(|| error.to_string());
        }
    }
}

/// Whether a record was refused (by the producer or the broker) for what it is, its size or
/// its contents, rather than for the state of the brokers: sending it again cannot succeed.
pub(crate) fn refused_record(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

/// The librdkafka settings every client of `brokers` gets, then the user's `properties`.
pub(crate) fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("log_level", "3")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("reconnect.backoff.max.ms", "2000");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Runs `attempt` (blocking, on a thread of its own) until it succeeds or `deadline` passes,
/// waiting with exponential backoff and jitter in between, and counts each retry in `tally`.
/// `what` and `brokers` name the connector and address in the error.
pub(crate) async fn retry<T: Send + 'static>(
    what: &str,
    brokers: &str,
    (context, tally): (&Context, &Tally),
    deadline: Duration,
    attempt: impl Fn(Duration) -> Result<T, KafkaError> + Send + Sync + 'static,
) -> Result<T, Error> {
    let place = format!("the brokers at {brokers}");
    let mut state = RetryState::new(what, &place, deadline);
    let attempt = Arc::new(attempt);
    loop {
        let (run, timeout) = (attempt.clone(), state.attempt());
        let result = glommio::executor()
            .spawn_blocking(move || run(timeout))
            .await;
        match result {
            Ok(value) => {
                context.clear();
                return Ok(value);
            }
            Err(error) => {
                let wait = state.failed(&error, cause(context, &error))?;
                tally.retried(1);
                glommio::timer::sleep(wait).await;
            }
        }
    }
}

/// The same, on the caller's thread (before the data cores start or after they stop).
pub(crate) fn retry_blocking<T>(
    what: &str,
    brokers: &str,
    context: &Context,
    deadline: Duration,
    attempt: impl Fn(Duration) -> Result<T, KafkaError>,
) -> Result<T, Error> {
    let place = format!("the brokers at {brokers}");
    let mut state = RetryState::new(what, &place, deadline);
    loop {
        match attempt(state.attempt()) {
            Ok(value) => {
                context.clear();
                return Ok(value);
            }
            Err(error) => {
                let wait = state.failed(&error, cause(context, &error))?;
                std::thread::sleep(wait);
            }
        }
    }
}

/// Why a request failed: librdkafka's last error (a refused connection says more than a
/// timeout), else the request's own.
fn cause(context: &Context, error: &KafkaError) -> String {
    context.last_error().unwrap_or_else(|| error.to_string())
}

/// A stable 32-bit hash (FNV-1a) of a topic name, kept in checkpoints to find a partition's
/// position again whatever the order of the partitions at the next start.
pub(crate) fn topic_hash(topic: &str) -> u32 {
    topic.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The key a Kafka partition's position is saved under (in `SourcePosition::line`).
pub(crate) fn position_key(topic: &str, partition: i32) -> u64 {
    (u64::from(topic_hash(topic)) << 32) | u64::from(partition as u32)
}
