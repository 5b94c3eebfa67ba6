//! The connectors against what their servers do on their own, measured in one run (issue 17).
//! The test servers of `wire_tests` are started once (installed on first use, as the tests do).
//!
//! 1. Kafka → Wire → Kafka: N JSON records in a 2-partition topic. First the broker's own
//!    rate: one rdkafka consumer reads them and one producer writes each to another topic
//!    (consume + produce of the same records, flushed). Then `wire run --cores 2` with a
//!    bounded Kafka source and an at-least-once Kafka sink does the same; its wall time
//!    includes the start-up and the bounded source's 1 s wait for more records at the end.
//! 2. PostgreSQL: `COPY … FROM STDIN` of N rows into a table with a primary key, then the
//!    PostgreSQL sink upserting the same N rows (`mode: upsert`, batches of 500) into the
//!    emptied table from a JSON-lines file, wall time of the whole run.
//! 3. Elasticsearch-compatible server (osmem): two direct `_bulk` loops at once (Wire runs on
//!    two cores) indexing N documents with ids in batches of 500, then the Elasticsearch sink
//!    doing the same from a JSON-lines file.
//!
//! Every phase checks the server holds all N records before its figure is printed.
//! Run: `cargo test -p wire-bench --bench e2e_connectors -- [--events N] [--rows N] [--docs N]`
//! (the test profile, like every figure here); `-- --test` is a seconds-long smoke pass.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::ensure;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use wire_tests::kafka::Broker;
use wire_tests::osmem::Osmem;

/// Rows per `_bulk` request and per sink batch.
const BATCH: usize = 500;

struct Args {
    events: usize,
    rows: usize,
    docs: usize,
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    println!(
        "# Connectors against their servers' own rates ({})",
        wire_bench::machine_description(&args.dir)
    );
    println!(
        "command: {} -- --events {} --rows {} --docs {}",
        wire_bench::cargo_command("e2e_connectors"),
        args.events,
        args.rows,
        args.docs
    );
    kafka(&args)?;
    postgres(&args)?;
    elasticsearch(&args)?;
    Ok(())
}

fn parse_args() -> anyhow::Result<Args> {
    let numbers = [("events", 200_000), ("rows", 100_000), ("docs", 10_000)];
    let args = wire_bench::BenchArgs::parse("target/connectors-bench", &numbers)?;
    Ok(Args {
        events: args.number("events", 2_000) as usize,
        rows: args.number("rows", 2_000) as usize,
        docs: args.number("docs", 1_000) as usize,
        dir: args.dir,
    })
}

fn row_json(i: usize) -> String {
    format!(
        r#"{{"id":{i},"auction":{},"price":{},"bidder":"b{i}"}}"#,
        i % 1000,
        i * 7 % 10007
    )
}

/// Writes N rows as JSON lines to `dir/rows.jsonl`.
fn rows_file(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join("rows.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for i in 0..n {
        writeln!(file, "{}", row_json(i))?;
    }
    file.flush()?;
    Ok(path)
}

/// Writes the N rows to `dir/rows.jsonl` and returns the head of a pipeline `name` reading
/// them into sink `out`, whose keys (indented four spaces) the caller appends.
fn file_to_sink(dir: &Path, n: usize, name: &str) -> anyhow::Result<String> {
    rows_file(dir, n)?;
    Ok(format!(
        "name: {name}
sources:
  rows: {{type: file, path: rows.jsonl, schema: {{id: i64, auction: i64, price: i64, bidder: string}}}}
sinks:
  out:
    from: rows
"
    ))
}

/// Runs `wire run` on `pipeline` (2 cores, no checkpoints) and returns its wall time.
fn wire_run(dir: &Path, name: &str, pipeline: &str) -> anyhow::Result<f64> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, pipeline)?;
    let data = dir.join(format!("{name}-data"));
    let _ = std::fs::remove_dir_all(&data);
    let start = Instant::now();
    let out = Command::new(wire_tests::wire_bin())
        .current_dir(dir)
        .args([
            "run",
            "--no-progress",
            "--no-pin",
            "--cores",
            "2",
            "--data-dir",
        ])
        .arg(&data)
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "wire run {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(seconds)
}

fn line(what: &str, per_s: f64, base: f64, note: &str) {
    println!(
        "{what:<38} {:>9}/s = {:.2} of the baseline{note}",
        wire_bench::human(per_s),
        per_s / base
    );
}

fn kafka(args: &Args) -> anyhow::Result<()> {
    let n = args.events;
    let broker = Broker::start();
    let run = std::process::id();
    let (input, copy, output) = (
        format!("bench-in-{run}"),
        format!("bench-copy-{run}"),
        format!("bench-out-{run}"),
    );
    for topic in [&input, &copy, &output] {
        broker.create_topic(topic, 2);
    }
    let values: Vec<(i32, Vec<u8>)> = (0..n)
        .map(|i| ((i % 2) as i32, row_json(i).into_bytes()))
        .collect();
    broker.produce_values(&input, &values);

    let base = broker_copy(&broker.addr, &input, &copy, n)?;

    let pipeline = format!(
        "name: kafka_bench
sources:
  input:
    type: kafka
    brokers: {brokers}
    topics: [{input}]
    bounded: true
    schema: {{id: i64, auction: i64, price: i64, bidder: string}}
sinks:
  out:
    type: kafka
    from: input
    brokers: {brokers}
    topic: {output}
    properties: {{batch.num.messages: '500'}}
",
        brokers = broker.addr
    );
    let seconds = wire_run(&args.dir, "kafka", &pipeline)?;
    let read = broker.read_committed_at_least(&output, 2, Duration::from_secs(3), n);
    ensure!(
        read.len() == n,
        "wire wrote {} of {n} records to the output topic",
        read.len()
    );
    let wire = n as f64 / seconds;
    let steady = n as f64 / (seconds - 1.0).max(1e-3);
    println!("\n## Kafka -> Wire -> Kafka, {n} events (tansu in memory)");
    line("broker consume + produce (rdkafka)", base, base, "");
    line(
        "wire kafka -> kafka, 2 cores",
        wire,
        base,
        &format!(
            " ({}/s per core; wall time {seconds:.2} s with start-up and the 1 s end wait)",
            wire_bench::human(wire / 2.0)
        ),
    );
    line(
        "  the same without the 1 s end wait",
        steady,
        base,
        &format!(" ({}/s per core)", wire_bench::human(steady / 2.0)),
    );
    broker.stop();
    Ok(())
}

fn postgres(args: &Args) -> anyhow::Result<()> {
    let n = args.rows;
    let server = wire_tests::postgres::Server::start();
    let table = "bench_upsert";
    server.execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, auction bigint, price bigint, bidder text)"
    ));
    let mut client = server.client();
    let start = Instant::now();
    let mut copy = client.copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv)"))?;
    let mut text = Vec::with_capacity(64 * 1024);
    for i in 0..n {
        writeln!(text, "{i},{},{},b{i}", i % 1000, i * 7 % 10007)?;
        if text.len() > 60 * 1024 {
            copy.write_all(&text)?;
            text.clear();
        }
    }
    copy.write_all(&text)?;
    copy.finish()?;
    let base = n as f64 / start.elapsed().as_secs_f64();
    let count = |client: &mut postgres::Client| -> anyhow::Result<i64> {
        Ok(client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
            .get(0))
    };
    ensure!(count(&mut client)? == n as i64, "COPY left a wrong count");
    client.batch_execute(&format!("TRUNCATE {table}"))?;

    let pipeline = file_to_sink(&args.dir, n, "postgres_bench")?;
    let pipeline = format!(
        "{pipeline}    type: postgres
    url: postgres://postgres@127.0.0.1:{}/postgres
    table: {table}
    mode: upsert
    key: [id]
    batch_rows: {BATCH}
",
        server.port
    );
    let seconds = wire_run(&args.dir, "postgres", &pipeline)?;
    ensure!(
        count(&mut client)? == n as i64,
        "the sink left a wrong count"
    );
    let wire = n as f64 / seconds;
    println!("\n## PostgreSQL, {n} rows (PostgreSQL 15, fsync off)");
    line("COPY FROM STDIN (csv)", base, base, "");
    line(
        "wire postgres sink, upsert",
        wire,
        base,
        &format!(" (wall time {seconds:.2} s with start-up)"),
    );
    server.stop();
    Ok(())
}

fn elasticsearch(args: &Args) -> anyhow::Result<()> {
    let n = args.docs;
    let server = Osmem::start();
    // Keep-alive clients, as the sink has (the test helper opens a connection per request),
    // two of them at once, as the sink has one per core on Wire's two.
    // The server's first requests are slow (about 1 s for the first `_bulk`): warm it up on
    // an index of its own first, so neither side pays that.
    bulk_loop(&format!("{}/warmup/_bulk", server.url()), BATCH * 2, 0)?;
    server.request("DELETE", "/warmup", "")?;
    let bulk = format!("{}/direct/_bulk", server.url());
    let start = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let loops: Vec<_> = (0..2)
            .map(|half| {
                let bulk = &bulk;
                scope.spawn(move || bulk_loop(bulk, n, half))
            })
            .collect();
        for one in loops {
            one.join()
                .map_err(|_| anyhow::anyhow!("a _bulk loop panicked"))??;
        }
        Ok(())
    })?;
    let base = n as f64 / start.elapsed().as_secs_f64();
    ensure!(server.count("direct") == n as u64, "direct _bulk count");
    server.request("DELETE", "/direct", "")?;

    let pipeline = file_to_sink(&args.dir, n, "es_bench")?;
    let pipeline = format!(
        "{pipeline}    type: elasticsearch
    url: {}
    index: sink
    id: CAST(id AS string)
    batch_rows: {BATCH}
",
        server.url()
    );
    let seconds = wire_run(&args.dir, "elasticsearch", &pipeline)?;
    ensure!(server.count("sink") == n as u64, "the sink's count");
    let wire = n as f64 / seconds;
    println!("\n## Elasticsearch-compatible server, {n} documents (osmem 0.1.6)");
    line("direct _bulk loops (2, batches of 500)", base, base, "");
    line(
        "wire elasticsearch sink",
        wire,
        base,
        &format!(" (wall time {seconds:.2} s with start-up)"),
    );
    Ok(())
}

/// Indexes every other batch (`half` 0 or 1) of the N documents with `_bulk` requests.
fn bulk_loop(bulk: &str, n: usize, half: usize) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::new();
    let mut body = String::new();
    for at in (0..n).step_by(BATCH).skip(half).step_by(2) {
        body.clear();
        for i in at..(at + BATCH).min(n) {
            body.push_str(&format!(
                "{{\"index\":{{\"_id\":\"{i}\"}}}}\n{}\n",
                row_json(i)
            ));
        }
        let response = client
            .post(bulk)
            .header("Content-Type", "application/x-ndjson")
            .body(body.clone())
            .send()?;
        let status = response.status();
        let answer = response.text()?;
        ensure!(
            status.is_success() && answer.contains("\"errors\":false"),
            "_bulk: {status} {answer:.300}"
        );
    }
    Ok(())
}

/// The broker's own rate: one consumer reads the N records of `input` and one producer writes
/// each to `copy`, until all are acknowledged; records per second.
fn broker_copy(brokers: &str, input: &str, copy: &str, n: usize) -> anyhow::Result<f64> {
    // The broker's own rate: consume the input, produce each record to `copy`, flush.
    let start = Instant::now();
    let config = |extra: &[(&str, &str)]| {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
    };
    let consumer: BaseConsumer = config(&[
        ("group.id", "bench-baseline"),
        ("enable.auto.commit", "false"),
    ])
    .create()?;
    let mut list = TopicPartitionList::new();
    for partition in 0..2 {
        list.add_partition_offset(input, partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    // The same producer settings as the test helper: tansu stalls after large record batches.
    let producer: BaseProducer = config(&[("batch.num.messages", "500")]).create()?;
    let mut copied = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while copied < n {
        ensure!(
            Instant::now() < deadline,
            "baseline copied {copied} of {n} records"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        let payload = message.payload().unwrap_or_default();
        let mut record = BaseRecord::<(), [u8]>::to(copy)
            .partition(message.partition())
            .payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
        copied += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
