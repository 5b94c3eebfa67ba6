//! `type: kafka` sources and sinks (docs/pipeline.md, "Kafka"; the design is ADR 0005).

use std::path::PathBuf;

use super::yaml::NodeKind;
use super::DeadLetterTo;
use super::{
    decode_event_time, decode_schema, expr_text, named_entries, scalar, unknown_choice, Cx,
    ExprText, Fields, Named, SpecError,
};
use crate::record::schema::{DataType, Field, Schema};

/// How the payload of a Kafka record is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    /// A JSON object per record.
    Json,
    /// One CSV line per record, columns in schema order (no header).
    Csv,
    /// The record's bytes as they are, into the schema's only field (bytes or string).
    Raw,
    /// Avro binary records of [`KafkaSource::avro`]'s schema.
    Avro,
}

/// The Avro schema of a `format: avro` Kafka source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaAvro {
    /// The schema's JSON text (`avro_schema:`, or the contents of `avro_schema_file:`),
    /// checked to fit the source's schema.
    pub schema: String,
    /// Each record starts with the Confluent header (magic byte 0 and a 4-byte schema id).
    pub confluent: bool,
}

/// Record metadata a Kafka source can put into a field of its rows (`metadata:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaMeta {
    /// The record's timestamp (`timestamp`, milliseconds since the epoch).
    Timestamp,
    /// The topic (`string`).
    Topic,
    /// The Kafka partition (`i64`).
    Partition,
    /// The record's offset (`i64`).
    Offset,
    /// The record's key (`bytes?`).
    Key,
}

impl KafkaMeta {
    /// The type of the field it fills.
    pub fn field(self, name: &str) -> Field {
        let (data_type, nullable) = match self {
            KafkaMeta::Timestamp => (DataType::Timestamp, false),
            KafkaMeta::Topic => (DataType::String, false),
            KafkaMeta::Partition | KafkaMeta::Offset => (DataType::I64, false),
            KafkaMeta::Key => (DataType::Bytes, true),
        };
        Field {
            name: name.to_string(),
            data_type,
            nullable,
        }
    }
}

/// Where a Kafka source starts when no checkpoint is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaStart {
    /// The oldest record of each partition (default).
    Earliest,
    /// Only records produced after the start.
    Latest,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
    /// Given offsets `(topic, partition, offset)`; unlisted partitions start at the earliest.
    Offsets(Vec<(String, i32, i64)>),
}

/// What a Kafka source does with a record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaOnError {
    /// Stop the pipeline with an error naming topic, partition and offset (default).
    Fail,
    /// Count it, log it and go on.
    Skip,
    /// Append it (place, error, original bytes) as a JSON line to a file, or produce it
    /// (original key and value, place and error in headers) to a topic (of the source's
    /// brokers unless `dead_letter_brokers` says otherwise), and go on.
    DeadLetter(super::DeadLetterTo),
}

/// The topics a Kafka source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaTopics {
    /// These topics.
    List(Vec<String>),
    /// Every topic whose name matches this regular expression, listed at start.
    Pattern(String),
}

/// `type: kafka` as a source.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topics it reads.
    pub topics: KafkaTopics,
    /// Payload format.
    pub format: KafkaFormat,
    /// `format: avro`: the Avro schema.
    pub avro: Option<KafkaAvro>,
    /// Row schema: the payload's fields, then the `metadata:` fields.
    pub schema: Schema,
    /// The metadata the last `metadata.len()` fields of `schema` hold.
    pub metadata: Vec<KafkaMeta>,
    /// Field (or expression) holding the event time, if any.
    pub event_time: Option<Named>,
    /// Where a run without a restored checkpoint starts.
    pub start: KafkaStart,
    /// Consumer group the checkpointed offsets are committed to, for monitoring only.
    pub group_id: Option<String>,
    /// Read each partition up to its end offset at start, then end.
    pub bounded: bool,
    /// Records that do not decode.
    pub on_error: KafkaOnError,
    /// How long the source retries an unreachable broker before it fails.
    pub connect_timeout_ms: u64,
    /// Extra librdkafka client properties.
    pub properties: Vec<(String, String)>,
}

/// Delivery guarantee of a Kafka sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaDelivery {
    /// Records are produced as they come and flushed at each checkpoint (default).
    AtLeastOnce,
    /// One transaction per checkpoint per sink instance, committed when it completes.
    ExactlyOnce,
}

/// `type: kafka` as a sink.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    /// Bootstrap brokers.
    pub brokers: String,
    /// The topic records go to.
    pub topic: String,
    /// Record key expression; no key when absent.
    pub key: Option<ExprText>,
    /// Record value expression; the whole row in `format` when absent.
    pub value: Option<ExprText>,
    /// Format of the whole-row value.
    pub format: super::FileFormat,
    /// librdkafka partitioner for keyed records.
    pub partitioner: String,
    /// Delivery guarantee.
    pub delivery: KafkaDelivery,
    /// Prefix of the transactional ids (`<prefix>-<core>`); `wire-<pipeline>-<sink>` when absent.
    pub transactional_id: Option<String>,
    /// Write a changelog's deletes as tombstones (null value) and drop update-befores.
    pub upsert: bool,
    /// How long the sink retries an unreachable broker before it fails.
    pub connect_timeout_ms: u64,
    /// Extra librdkafka client properties.
    pub properties: Vec<(String, String)>,
    /// Records the producer refuses (too large, say): `on_error` and where dead letters go.
    pub errors: super::SinkErrors,
}

pub(super) const KAFKA_SOURCE_KEYS: &[&str] = &[
    "type",
    "brokers",
    "topics",
    "topic_pattern",
    "format",
    "schema",
    "metadata",
    "event_time",
    "watermark",
    "start",
    "start_timestamp_ms",
    "start_offsets",
    "group_id",
    "bounded",
    "on_error",
    "dead_letter_path",
    "dead_letter_topic",
    "dead_letter_brokers",
    "avro_schema",
    "avro_schema_file",
    "avro_confluent",
    "connect_timeout_ms",
    "properties",
];

pub(super) fn decode_source(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
) -> Result<KafkaSource, SpecError> {
    let brokers = brokers(cx, fields)?;
    let topics = topics(cx, fields)?;
    let format = match fields.get("format") {
        None => KafkaFormat::Json,
        Some((node, path)) => match scalar(cx, node, &path)? {
            "json" | "jsonl" => KafkaFormat::Json,
            "csv" => KafkaFormat::Csv,
            "raw" => KafkaFormat::Raw,
            "avro" => KafkaFormat::Avro,
            other => {
                let message = unknown_choice("format", other, &["json", "csv", "raw", "avro"]);
                return Err(cx.err(node, &path, message));
            }
        },
    };
    let payload = decode_schema(cx, fields)?;
    if format == KafkaFormat::Raw {
        let one = payload.fields();
        if one.len() != 1 || !matches!(one[0].data_type, DataType::Bytes | DataType::String) {
            let (node, path) = fields.get("schema").expect("read above");
            return Err(cx.err(
                node,
                &path,
                "format raw needs a schema of one field of type bytes or string",
            ));
        }
    }
    let avro = avro(cx, fields, format, &payload)?;
    let (schema, metadata) = metadata(cx, fields, payload)?;
    let event_time = decode_event_time(cx, fields)?;
    let start = start(cx, fields)?;
    let group_id = fields.string(cx, "group_id")?;
    let bounded = fields.bool(cx, "bounded")?.unwrap_or(false);
    let on_error = on_error(cx, fields, &brokers)?;
    let connect_timeout_ms = connect_timeout(cx, fields)?;
    let properties = properties(cx, fields)?;
    let taken = std::mem::replace(fields, Fields::empty(fields.node));
    taken.finish(cx, KAFKA_SOURCE_KEYS)?;
    Ok(KafkaSource {
        brokers,
        topics,
        format,
        avro,
        schema,
        metadata,
        event_time,
        start,
        group_id,
        bounded,
        on_error,
        connect_timeout_ms,
        properties,
    })
}

pub(super) const KAFKA_SINK_KEYS: &[&str] = &[
    "type",
    "from",
    "brokers",
    "topic",
    "key",
    "value",
    "format",
    "partitioner",
    "delivery",
    "transactional_id",
    "upsert",
    "connect_timeout_ms",
    "properties",
    "on_error",
    "dead_letter",
    "dead_letter_topic",
    "dead_letter_brokers",
];

const PARTITIONERS: &[&str] = &[
    "murmur2_random",
    "murmur2",
    "consistent_random",
    "consistent",
    "fnv1a_random",
    "fnv1a",
    "random",
];

pub(super) fn decode_sink(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<KafkaSink, SpecError> {
    let brokers = brokers(cx, fields)?;
    let (node, path) = fields.required(cx, "topic")?;
    let topic = scalar(cx, node, &path)?.to_string();
    let key = match fields.get("key") {
        None => None,
        Some((node, path)) => Some(expr_text(cx, node, &path)?),
    };
    let value = match fields.get("value") {
        None => None,
        Some((node, path)) => Some(expr_text(cx, node, &path)?),
    };
    let format = super::decode_format(cx, fields)?;
    let partitioner = match fields.get("partitioner") {
        None => "murmur2_random".to_string(),
        Some((node, path)) => {
            let text = scalar(cx, node, &path)?;
            if !PARTITIONERS.contains(&text) {
                return Err(cx.err(
                    node,
                    &path,
                    unknown_choice("partitioner", text, PARTITIONERS),
                ));
            }
            text.to_string()
        }
    };
    let delivery = decode_delivery(cx, fields)?;
    let transactional_id = fields.string(cx, "transactional_id")?;
    let upsert = fields.bool(cx, "upsert")?.unwrap_or(false);
    let connect_timeout_ms = connect_timeout(cx, fields)?;
    let properties = properties(cx, fields)?;
    let errors = super::elasticsearch::decode_errors(cx, fields)?;
    Ok(KafkaSink {
        brokers,
        topic,
        key,
        value,
        format,
        partitioner,
        delivery,
        transactional_id,
        upsert,
        connect_timeout_ms,
        properties,
        errors,
    })
}

/// `delivery: at_least_once | exactly_once` (default at-least-once).
pub(super) fn decode_delivery(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
) -> Result<KafkaDelivery, SpecError> {
    Ok(match fields.get("delivery") {
        None => KafkaDelivery::AtLeastOnce,
        Some((node, path)) => match scalar(cx, node, &path)? {
            "at_least_once" => KafkaDelivery::AtLeastOnce,
            "exactly_once" => KafkaDelivery::ExactlyOnce,
            other => {
                let choices = &["at_least_once", "exactly_once"];
                return Err(cx.err(node, &path, unknown_choice("delivery", other, choices)));
            }
        },
    })
}

/// `brokers:` as `host:port,host:port` or a list of `host:port`.
fn brokers(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<String, SpecError> {
    let (node, path) = fields.required(cx, "brokers")?;
    broker_list(cx, node, &path)
}

/// A list of brokers (a YAML list, or `host:port` separated by commas) as librdkafka's
/// `bootstrap.servers`.
pub(super) fn broker_list(
    cx: &Cx<'_>,
    node: &super::Node,
    path: &str,
) -> Result<String, SpecError> {
    let list: Vec<String> = match &node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(cx, item, &format!("{path}[{i}]")).map(str::to_string))
            .collect::<Result<_, _>>()?,
        _ => scalar(cx, node, path)?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    };
    for broker in &list {
        let port = broker.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
        if broker.is_empty() || !matches!(port, Some(Ok(_))) {
            return Err(cx.err(
                node,
                path,
                format!("`{broker}` is not a broker address like 127.0.0.1:9092"),
            ));
        }
    }
    Ok(list.join(","))
}

fn topics(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<KafkaTopics, SpecError> {
    match (fields.get("topics"), fields.get("topic_pattern")) {
        (Some((node, path)), None) => {
            let names = super::name_list(cx, node, &path)?;
            if names.is_empty() {
                return Err(cx.err(node, &path, "topics needs at least one topic"));
            }
            Ok(KafkaTopics::List(
                names.into_iter().map(|n| n.name).collect(),
            ))
        }
        (None, Some((node, path))) => {
            let pattern = scalar(cx, node, &path)?;
            if let Err(err) = regex::Regex::new(pattern) {
                return Err(cx.err(node, &path, format!("not a regular expression: {err}")));
            }
            Ok(KafkaTopics::Pattern(pattern.to_string()))
        }
        (Some((node, path)), Some(_)) => Err(cx.err(
            node,
            &path,
            "give either `topics` or `topic_pattern`, not both",
        )),
        (None, None) => Err(cx.err(
            fields.node,
            &fields.path,
            "missing required key `topics` (or `topic_pattern`)",
        )),
    }
}

/// `metadata: {field: timestamp|topic|partition|offset|key}` appended to the payload schema.
fn metadata(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    payload: Schema,
) -> Result<(Schema, Vec<KafkaMeta>), SpecError> {
    let mut all = payload.fields().to_vec();
    let mut metas = Vec::new();
    if let Some((node, path)) = fields.get("metadata") {
        for (named, value, value_path) in named_entries(cx, node, &path)? {
            let meta = match scalar(cx, value, &value_path)? {
                "timestamp" => KafkaMeta::Timestamp,
                "topic" => KafkaMeta::Topic,
                "partition" => KafkaMeta::Partition,
                "offset" => KafkaMeta::Offset,
                "key" => KafkaMeta::Key,
                other => {
                    let choices = &["timestamp", "topic", "partition", "offset", "key"];
                    let message = unknown_choice("record metadata", other, choices);
                    return Err(cx.err(value, &value_path, message));
                }
            };
            if all.iter().any(|f| f.name == named.name) {
                return Err(cx.err(
                    value,
                    &value_path,
                    format!("field `{}` is already in the schema", named.name),
                ));
            }
            all.push(meta.field(&named.name));
            metas.push(meta);
        }
    }
    Ok((Schema::new(all), metas))
}

fn start(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<KafkaStart, SpecError> {
    let Some((node, path)) = fields.get("start") else {
        return Ok(KafkaStart::Earliest);
    };
    match scalar(cx, node, &path)? {
        "earliest" => Ok(KafkaStart::Earliest),
        "latest" => Ok(KafkaStart::Latest),
        "timestamp" => {
            let ms = fields.u64(cx, "start_timestamp_ms")?.ok_or_else(|| {
                cx.err(node, &path, "start: timestamp needs `start_timestamp_ms`")
            })?;
            Ok(KafkaStart::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX)))
        }
        "offsets" => {
            let (offsets_node, offsets_path) = fields
                .get("start_offsets")
                .ok_or_else(|| cx.err(node, &path, "start: offsets needs `start_offsets`"))?;
            start_offsets(cx, offsets_node, &offsets_path).map(KafkaStart::Offsets)
        }
        other => {
            let choices = &["earliest", "latest", "timestamp", "offsets"];
            Err(cx.err(node, &path, unknown_choice("start", other, choices)))
        }
    }
}

/// `start_offsets: {topic: {partition: offset}}`.
fn start_offsets(
    cx: &Cx<'_>,
    node: &super::Node,
    path: &str,
) -> Result<Vec<(String, i32, i64)>, SpecError> {
    let mut offsets = Vec::new();
    for (topic, partitions, topic_path) in named_entries(cx, node, path)? {
        for (partition, offset, offset_path) in named_entries(cx, partitions, &topic_path)? {
            let Ok(partition_no) = partition.name.parse::<i32>() else {
                return Err(cx.err(offset, &offset_path, "partitions are numbers like 0"));
            };
            let offset_no = super::parse_u64(cx, offset, &offset_path)?;
            let offset_no = i64::try_from(offset_no).unwrap_or(i64::MAX);
            offsets.push((topic.name.clone(), partition_no, offset_no));
        }
    }
    Ok(offsets)
}

/// `on_error:` with `dead_letter_path:` (a file) or `dead_letter_topic:` (and optionally
/// `dead_letter_brokers:`, else the source's `brokers`).
fn on_error(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    brokers: &str,
) -> Result<KafkaOnError, SpecError> {
    let file = fields.string(cx, "dead_letter_path")?;
    let topic = fields.string(cx, "dead_letter_topic")?;
    let topic_brokers = match fields.get("dead_letter_brokers") {
        None => None,
        Some((node, path)) => {
            if topic.is_none() {
                return Err(cx.err(node, &path, "dead_letter_brokers needs `dead_letter_topic`"));
            }
            Some(broker_list(cx, node, &path)?)
        }
    };
    let dead_letter = match (file, topic) {
        (Some(_), Some(_)) => {
            let (node, path) = fields.get("dead_letter_topic").expect("read above");
            return Err(cx.err(
                node,
                &path,
                "give either `dead_letter_path` or `dead_letter_topic`, not both",
            ));
        }
        (Some(file), None) => Some(KafkaOnError::DeadLetter(DeadLetterTo::File(PathBuf::from(
            file,
        )))),
        (None, Some(topic)) => Some(KafkaOnError::DeadLetter(DeadLetterTo::Topic {
            brokers: topic_brokers.unwrap_or_else(|| brokers.to_string()),
            topic,
        })),
        (None, None) => None,
    };
    let Some((node, path)) = fields.get("on_error") else {
        return match dead_letter {
            None => Ok(KafkaOnError::Fail),
            Some(_) => {
                let (node, path) = fields
                    .get("dead_letter_path")
                    .or_else(|| fields.get("dead_letter_topic"))
                    .expect("read above");
                let key = path
                    .rsplit('.')
                    .next()
                    .unwrap_or("dead_letter_path")
                    .to_string();
                Err(cx.err(node, &path, format!("{key} needs `on_error: dead_letter`")))
            }
        };
    };
    match scalar(cx, node, &path)? {
        "fail" => Ok(KafkaOnError::Fail),
        "skip" => Ok(KafkaOnError::Skip),
        "dead_letter" => dead_letter.ok_or_else(|| {
            cx.err(
                node,
                &path,
                "on_error: dead_letter needs `dead_letter_path` or `dead_letter_topic`",
            )
        }),
        other => {
            let choices = &["fail", "skip", "dead_letter"];
            Err(cx.err(node, &path, unknown_choice("on_error", other, choices)))
        }
    }
}

/// `avro_schema:` (the JSON text) or `avro_schema_file:`, and `avro_confluent:`; required by,
/// and only with, `format: avro`. The schema must fit the payload fields.
fn avro(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    format: KafkaFormat,
    payload: &Schema,
) -> Result<Option<KafkaAvro>, SpecError> {
    let inline = fields.get("avro_schema");
    let file = fields.get("avro_schema_file");
    let confluent = fields.bool(cx, "avro_confluent")?;
    if format != KafkaFormat::Avro {
        let given = inline.or(file).or_else(|| fields.get("avro_confluent"));
        if let Some((node, path)) = given {
            return Err(cx.err(node, &path, "avro_* keys are for `format: avro`"));
        }
        return Ok(None);
    }
    let (node, path, text) = match (inline, file) {
        (Some((node, path)), None) => (node, path.clone(), scalar(cx, node, &path)?.to_string()),
        (None, Some((node, path))) => {
            let name = scalar(cx, node, &path)?;
            let text = std::fs::read_to_string(name).map_err(|err| {
                cx.err(
                    node,
                    &path,
                    format!("cannot read Avro schema file `{name}`: {err}"),
                )
            })?;
            (node, path, text)
        }
        (Some((node, path)), Some(_)) => {
            let message = "give either `avro_schema` or `avro_schema_file`, not both";
            return Err(cx.err(node, &path, message));
        }
        (None, None) => {
            return Err(cx.err(
                fields.node,
                &fields.path,
                "format: avro needs `avro_schema` (the schema's JSON) or `avro_schema_file`",
            ))
        }
    };
    if let Err(message) = crate::record::avro::check(&text, payload) {
        return Err(cx.err(node, &path, message));
    }
    Ok(Some(KafkaAvro {
        schema: text,
        confluent: confluent.unwrap_or(false),
    }))
}

pub(super) fn connect_timeout(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<u64, SpecError> {
    let ms = fields.u64(cx, "connect_timeout_ms")?.unwrap_or(30_000);
    if !(100..=3_600_000).contains(&ms) {
        let (node, path) = fields.get("connect_timeout_ms").expect("just read");
        return Err(cx.err(node, &path, "connect_timeout_ms must be in 100..=3600000"));
    }
    Ok(ms)
}

/// `properties: {name: value}`: librdkafka settings passed as they are.
fn properties(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<Vec<(String, String)>, SpecError> {
    let Some((node, path)) = fields.get("properties") else {
        return Ok(Vec::new());
    };
    named_entries(cx, node, &path)?
        .into_iter()
        .map(|(named, value, value_path)| {
            Ok((named.name, scalar(cx, value, &value_path)?.to_string()))
        })
        .collect()
}
