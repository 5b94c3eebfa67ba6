use super::*;

const Q2: &str = "\
name: q2
sources:
  bids:
    type: nexmark
    stream: bid
    events: 10k
    seed: 7
operators:
  - name: selection
    from: bids
    filter: auction % 123 = 0
  - name: out
    from: selection
    project:
      auction: auction
      price: price
sinks:
  print:
    type: stdout
    from: out
";

fn err(text: &str) -> SpecError {
    PipelineSpec::parse("p.yaml", text).unwrap_err()
}

#[test]
fn decodes_a_nexmark_pipeline() {
    let spec = PipelineSpec::parse("q2.yaml", Q2).unwrap();
    assert_eq!(spec.name, "q2");
    let SourceKind::Nexmark(nexmark) = &spec.sources[0].kind else {
        panic!("not nexmark")
    };
    assert_eq!(nexmark.stream, EventKind::Bid);
    assert_eq!(nexmark.events, Some(10_000));
    assert_eq!(nexmark.generator.seed, 7);
    assert_eq!(spec.operators.len(), 2);
    let OperatorKind::Filter(filter) = &spec.operators[0].kind else {
        panic!("not a filter")
    };
    assert_eq!(filter.text, "auction % 123 = 0");
    assert_eq!(filter.path, "operators[0].filter");
    // `%` is at byte 8 of the expression, which starts at line 11, column 13.
    assert_eq!(
        filter.position(&spec.origin, 8),
        Pos {
            line: 11,
            column: 21
        }
    );
    let OperatorKind::Project(fields) = &spec.operators[1].kind else {
        panic!("not a project")
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.name.as_str()).collect();
    assert_eq!(names, ["auction", "price"]);
    assert_eq!(spec.sinks[0].input.name, "out");
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let error = err(&Q2.replace("    filter: auction", "    filtre: auction"));
    assert_eq!(error.pos.line, 9);
    assert!(
        error.message.contains("operator `selection` needs one of"),
        "{error}"
    );
    let error = err(&Q2.replace("    seed: 7", "    sed: 7"));
    assert_eq!(error.to_string().split(": ").next(), Some("p.yaml:7:5"));
    assert!(error.message.contains("did you mean `seed`"), "{error}");
    assert_eq!(error.path, "sources.bids");
}

#[test]
fn bad_values_name_their_key() {
    let error = err(&Q2.replace("events: 10k", "events: ten"));
    assert_eq!(error.path, "sources.bids.events");
    assert_eq!(
        error.pos,
        Pos {
            line: 6,
            column: 13
        }
    );
    let error = err(&Q2.replace("stream: bid", "stream: bidz"));
    assert!(error.message.contains("did you mean `bid`"), "{error}");
    let error = err(&Q2.replace("type: stdout", "type: cassandra"));
    assert!(
        error.message.contains("unknown sink type `cassandra`"),
        "{error}"
    );
    let error = err(&Q2.replace("type: stdout", "type: mongodb"));
    assert_eq!(error.message, "missing required key `uri`");
    let error = err(&Q2.replace("type: stdout", "type: postgres"));
    assert_eq!(error.message, "missing required key `url`");
    let error = err(&Q2.replace("type: stdout", "type: kafka"));
    assert_eq!(error.message, "missing required key `brokers`");
    assert_eq!(error.path, "sinks.print");
    let error = err(&Q2.replace("from: selection", "from: [selection, bids]"));
    assert!(error.message.contains("use a `union`"), "{error}");
}

#[test]
fn malformed_yaml_is_an_error_with_a_line() {
    let error = err("sources:\n  a: [1, 2\nsinks: {}\n");
    assert!(error.message.starts_with("invalid YAML"), "{error}");
    assert!(error.pos.line >= 2);
    let error = err("- just\n- a list\n");
    assert!(error.message.contains("expected a mapping"), "{error}");
    let error = err("sources: {}\nsinks: {}\n");
    assert!(error.message.contains("needs a source"), "{error}");
}

#[test]
fn schemas_and_durability_decode() {
    let text = "\
sources:
  events:
    type: ingest
    listen: 127.0.0.1:0
    durability: interval(5ms)
    schema:
      id: i64
      note: string?
      at: timestamp
    event_time: at
sinks:
  out: {type: blackhole, from: events}
";
    let spec = PipelineSpec::parse("i.yaml", text).unwrap();
    let SourceKind::Ingest(ingest) = &spec.sources[0].kind else {
        panic!("not ingest")
    };
    assert_eq!(ingest.durability, DurabilitySpec::Interval(5));
    assert_eq!(ingest.schema.len(), 3);
    assert!(ingest.schema.fields()[1].nullable);
    assert_eq!(ingest.event_time.as_ref().unwrap().name, "at");
    let error = err(&text.replace("string?", "strng"));
    assert!(error.message.contains("did you mean `string`"), "{error}");
    assert_eq!(error.pos.line, 8);
}

#[test]
fn ingest_limits_default_decode_and_are_checked() {
    let text = "\
sources:
  rows:
    type: ingest
    listen: 127.0.0.1:0
    schema: {a: i64}
sinks:
  out: {type: blackhole, from: rows}
";
    let limits = |text: &str| {
        let spec = PipelineSpec::parse("i.yaml", text).unwrap();
        let SourceKind::Ingest(ingest) = &spec.sources[0].kind else {
            panic!("not ingest")
        };
        ingest.limits
    };
    assert_eq!(limits(text), IngestLimits::default());
    let keys = "    schema: {a: i64}\n    max_connections: 8\n    frame_buffer_bytes_max: 2MiB\n    hello_timeout_ms: 5\n    read_timeout_ms: 6\n    idle_timeout_ms: 7\n    max_connections_per_peer: 2\n    max_batches_per_sec: 100\n    max_bytes_per_sec: 1MiB\n";
    let set = text.replace("    schema: {a: i64}\n", keys);
    let expected = IngestLimits {
        max_connections: 8,
        frame_buffer_bytes_max: 2 << 20,
        hello_timeout_ms: 5,
        read_timeout_ms: 6,
        idle_timeout_ms: 7,
        max_connections_per_peer: 2,
        max_batches_per_sec: 100,
        max_bytes_per_sec: 1 << 20,
    };
    assert_eq!(limits(&set), expected);
    let e = err(&set.replace("max_connections: 8", "max_connections: 0"));
    assert_eq!(e.path, "sources.rows.max_connections");
    assert!(e.message.contains("in 1..=65536"), "{e}");
    let e = err(&set.replace("2MiB", "1000"));
    assert_eq!(e.path, "sources.rows.frame_buffer_bytes_max");
    assert!(e.message.contains("at least 1MiB"), "{e}");
    let e = err(&set.replace(
        "max_connections_per_peer: 2",
        "max_connections_per_peer: -1",
    ));
    assert_eq!(e.path, "sources.rows.max_connections_per_peer");
}

#[test]
fn counts_accept_suffixes() {
    assert_eq!(parse_count("10_000"), Some(10_000));
    assert_eq!(parse_count("2M"), Some(2_000_000));
    assert_eq!(parse_count("64MiB"), Some(64 << 20));
    assert_eq!(parse_count("-1"), None);
    assert_eq!(parse_count("99999999999999999999G"), None);
}

#[test]
fn ingest_addresses_and_union_inputs_are_checked_up_front() {
    let ingest = "\
sources:
  rows:
    type: ingest
    listen: localhost:7070
    schema: {a: i64}
sinks:
  out: {type: blackhole, from: rows}
";
    let e = err(ingest);
    assert_eq!((e.path.as_str(), e.pos.line), ("sources.rows.listen", 4));
    assert!(e.message.contains("not an IP address and port"), "{e}");
    let union = Q2.replace(
        "  - name: out\n    from: selection\n    project:\n      auction: auction\n      price: price\n",
        "  - name: out\n    from: selection\n    union: [bids, selection]\n",
    );
    let e = err(&union);
    assert!(e.message.contains("not `from:`"), "{e}");
}

#[test]
fn paths_no_file_system_can_hold_are_refused_where_they_are_written() {
    let sink = |path: &str| {
        format!(
            "name: p\nsources:\n  bids: {{type: nexmark, stream: bid}}\nsinks:\n  out:\n    type: file\n    from: bids\n    path: {path}\n"
        )
    };
    let long = format!("out/{}", "x".repeat(70_000));
    let error = err(&sink(&long));
    assert_eq!((error.pos.line, error.pos.column), (8, 11), "{error}");
    assert_eq!(error.path, "sinks.out.path");
    assert!(error.message.contains("PATH_MAX"), "{error}");
    let error = err(&sink(&format!("out/{}/x", "y".repeat(256))));
    assert!(error.message.contains("256 bytes"), "{error}");
    assert!(error.message.contains("NAME_MAX"), "{error}");
    let fine = format!("out/{}/x", "y".repeat(255));
    assert!(PipelineSpec::parse("p.yaml", &sink(&fine)).is_ok());
    let source = "name: p\nsources:\n  rows:\n    type: file\n    format: jsonl\n    schema: {a: i64}\n    path: ";
    let error = err(&format!(
        "{source}{}\nsinks:\n  o: {{type: stdout, from: rows}}\n",
        "z".repeat(300)
    ));
    assert_eq!(error.path, "sources.rows.path");
}

const KAFKA: &str = "name: k
sources:
  orders:
    type: kafka
    brokers: [127.0.0.1:9092, 127.0.0.1:9093]
    topic_pattern: 'orders-.*'
    format: csv
    schema: {id: i64, amount: f64}
    metadata: {ts: timestamp, k: key}
    event_time: ts
    start: offsets
    start_offsets: {orders-eu: {0: 42, 2: 7}}
    on_error: dead_letter
    dead_letter_path: dead.jsonl
sinks:
  out:
    type: kafka
    from: orders
    brokers: 127.0.0.1:9092
    topic: out
    key: id
    delivery: exactly_once
    upsert: true
";

#[test]
fn kafka_source_and_sink_decode() {
    let spec = PipelineSpec::parse("k.yaml", KAFKA).expect("valid");
    let SourceKind::Kafka(source) = &spec.sources[0].kind else {
        panic!("a kafka source")
    };
    assert_eq!(source.brokers, "127.0.0.1:9092,127.0.0.1:9093");
    assert_eq!(source.topics, KafkaTopics::Pattern("orders-.*".into()));
    assert_eq!(source.format, KafkaFormat::Csv);
    assert_eq!(source.metadata, [KafkaMeta::Timestamp, KafkaMeta::Key]);
    let names: Vec<&str> = source
        .schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["id", "amount", "ts", "k"]);
    assert_eq!(
        source.start,
        KafkaStart::Offsets(vec![
            ("orders-eu".into(), 0, 42),
            ("orders-eu".into(), 2, 7)
        ])
    );
    assert_eq!(
        source.on_error,
        KafkaOnError::DeadLetter(DeadLetterTo::File("dead.jsonl".into()))
    );
    let SinkKind::Kafka(sink) = &spec.sinks[0].kind else {
        panic!("a kafka sink")
    };
    assert_eq!(sink.delivery, KafkaDelivery::ExactlyOnce);
    assert_eq!(sink.partitioner, "murmur2_random");
    assert!(sink.upsert);
    assert_eq!(sink.key.as_ref().map(|k| k.text.as_str()), Some("id"));
}

#[test]
fn kafka_keys_are_checked() {
    let error = err(&KAFKA.replace("    dead_letter_path: dead.jsonl\n", ""));
    assert_eq!(
        error.message,
        "on_error: dead_letter needs `dead_letter_path` or `dead_letter_topic`"
    );
    assert_eq!(error.path, "sources.orders.on_error");
    let topic = KAFKA.replace(
        "    dead_letter_path: dead.jsonl\n",
        "    dead_letter_topic: dead\n    dead_letter_brokers: 10.0.0.9:9092\n",
    );
    let spec = PipelineSpec::parse("k.yaml", &topic).expect("valid");
    let SourceKind::Kafka(source) = &spec.sources[0].kind else {
        panic!("a kafka source")
    };
    assert_eq!(
        source.on_error,
        KafkaOnError::DeadLetter(DeadLetterTo::Topic {
            brokers: "10.0.0.9:9092".into(),
            topic: "dead".into()
        })
    );
    let error = err(&KAFKA.replace("format: csv", "format: raw"));
    assert!(
        error
            .message
            .contains("format raw needs a schema of one field"),
        "{error}"
    );
    let error = err(&KAFKA.replace("127.0.0.1:9093", "localhost"));
    assert!(
        error
            .message
            .contains("`localhost` is not a broker address"),
        "{error}"
    );
    let error = err(&KAFKA.replace("topic_pattern: 'orders-.*'", "topic_pattern: '('"));
    assert!(
        error.message.contains("not a regular expression"),
        "{error}"
    );
    let error = err(&KAFKA.replace("delivery: exactly_once", "delivery: exactly-once"));
    assert!(
        error.message.contains("did you mean `exactly_once`"),
        "{error}"
    );
    let error = err(&KAFKA.replace("    upsert: true", "    upsert: true\n    linger: 5"));
    assert!(error.message.starts_with("unknown key `linger`"), "{error}");
}

#[test]
fn every_sink_with_on_error_takes_a_dead_letter_topic() {
    let at_least_once = KAFKA.replace("delivery: exactly_once", "delivery: at_least_once");
    let topic = "    on_error: dead_letter\n    dead_letter_topic: refused\n    dead_letter_brokers: [127.0.0.1:9092]\n";
    let spec = PipelineSpec::parse("k.yaml", &format!("{at_least_once}{topic}")).expect("valid");
    let SinkKind::Kafka(sink) = &spec.sinks[0].kind else {
        panic!("a kafka sink")
    };
    assert_eq!(sink.errors.on_error, SinkOnError::DeadLetter);
    assert_eq!(
        sink.errors.dead_letter,
        Some(DeadLetterTo::Topic {
            brokers: "127.0.0.1:9092".into(),
            topic: "refused".into()
        })
    );
    // An exactly-once sink takes it too (a refusal redoes the transaction without the record).
    let spec = PipelineSpec::parse("k.yaml", &format!("{KAFKA}{topic}")).expect("valid");
    let SinkKind::Kafka(sink) = &spec.sinks[0].kind else {
        panic!("a kafka sink")
    };
    assert_eq!(sink.delivery, KafkaDelivery::ExactlyOnce);
    assert_eq!(sink.errors.on_error, SinkOnError::DeadLetter);
    let error = err(&format!(
        "{at_least_once}    on_error: dead_letter\n    dead_letter_topic: refused\n"
    ));
    assert_eq!(error.path, "sinks.out.dead_letter_topic");
    assert!(
        error.message.contains("needs `dead_letter_brokers`"),
        "{}",
        error.message
    );
    let error = err(&format!(
        "{at_least_once}    on_error: skip\n    dead_letter_topic: refused\n    dead_letter_brokers: 127.0.0.1:9092\n"
    ));
    assert_eq!(
        error.message,
        "`dead_letter_topic` is for on_error: dead_letter"
    );
    let error = err(&format!(
        "{at_least_once}    on_error: dead_letter\n    dead_letter: d.jsonl\n    dead_letter_topic: refused\n    dead_letter_brokers: 127.0.0.1:9092\n"
    ));
    assert!(error.message.contains("not both"), "{}", error.message);
    let error = err(&format!(
        "{at_least_once}    on_error: dead_letter\n    dead_letter_topic: refused\n    dead_letter_brokers: nowhere\n"
    ));
    assert_eq!(error.path, "sinks.out.dead_letter_brokers");
}

#[test]
fn stored_text_keeps_its_language_and_name() {
    let sql = "-- q\n/* c */ CREATE TABLE bid (a BIGINT) WITH ('connector' = 'nexmark');";
    assert_eq!(stored_file_name("q5", sql), "q5.sql");
    assert_eq!(stored_file_name("q5", "set 'x' = 'y';"), "q5.sql");
    assert_eq!(stored_file_name("q5", "---\n# c\nname: q5\n"), "q5.yaml");
    assert_eq!(stored_file_name("q5", "name: q5\n"), "q5.yaml");
    // A YAML key that happens to be a SQL keyword is still a key.
    assert_eq!(stored_file_name("q5", "create: x\n"), "q5.yaml");
    assert!(stored_language_agrees("Q.SQL", sql));
    assert!(stored_language_agrees("q.yaml", "name: q\n"));
    assert!(!stored_language_agrees("q.yaml", sql));
    assert!(!stored_language_agrees("q.sql", "name: q\n"));
    let sql = "CREATE TABLE bid WITH ('connector' = 'nexmark', 'events' = '10');\n\
               CREATE TABLE out WITH ('connector' = 'blackhole');\n\
               INSERT INTO out SELECT * FROM bid;";
    let spec = PipelineSpec::parse_stored("q5", sql).expect("stored SQL parses");
    assert_eq!(spec.name, "q5");
    assert_eq!(
        PipelineSpec::parse_stored("q5", Q2).expect("YAML").name,
        "q2"
    );
}

#[test]
fn watermark_alignment_is_a_positive_duration() {
    let with = |value: &str| {
        Q2.replace(
            "sources:",
            &format!("settings:\n  watermark_alignment: {value}\nsources:"),
        )
    };
    let spec = PipelineSpec::parse("q2.yaml", &with("10s")).unwrap();
    assert_eq!(spec.settings.watermark_alignment_ms, Some(10_000));
    assert_eq!(
        PipelineSpec::parse("q2.yaml", Q2)
            .unwrap()
            .settings
            .watermark_alignment_ms,
        None
    );
    let error = err(&with("0s")).to_string();
    assert!(
        error.contains("p.yaml:3:")
            && error.contains("watermark_alignment must be longer than 0ms"),
        "{error}"
    );
}
