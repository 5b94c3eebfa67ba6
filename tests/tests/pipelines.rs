//! The shipped example pipelines, run by the real `wire` binary, checked row by row against
//! references computed here in plain Rust from the same generator or input file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wire_core::frontend::spec::{stored_file_name, PipelineSpec, SourceKind};
use wire_core::nexmark::{Bid, Event, EventKind, Generator};
use wire_tests::{read_jsonl_dir, repo_root, wire_bin};

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(name)).expect("example exists")
}

/// `wire run --no-progress --cores N --data-dir DIR/data FILE`, run from the repository root.
fn wire_run(file: &Path, dir: &Path, cores: usize) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(repo_root())
        .args([
            "run",
            "--no-progress",
            "--cores",
            &cores.to_string(),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg(file);
    command
}

/// Starts `wire run` with stdout and stderr piped to the test.
fn spawn_wire(file: &Path, dir: &Path, cores: usize) -> std::process::Child {
    wire_run(file, dir, cores)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire starts")
}

/// Waits for a spawned `wire` to exit successfully and returns what it wrote to stderr.
fn finish_wire(child: &mut std::process::Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "wire exited with {status}: {stderr}");
    stderr
}

/// Runs `wire run` on `yaml` (written into `dir`) from the repository root.
fn run_wire(yaml: &str, dir: &Path, cores: usize) -> Output {
    let file = dir.join(stored_file_name("pipeline", yaml));
    std::fs::write(&file, yaml).expect("write pipeline");
    let output = wire_run(&file, dir, cores).output().expect("wire runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "wire run failed: {}\n{stderr}",
        output.status
    );
    eprintln!("{stderr}");
    output
}

/// The generator and event count of the pipeline's first (nexmark) source.
fn generator_of(yaml: &str) -> (Generator, u64) {
    let spec = PipelineSpec::parse_stored("pipeline", yaml).expect("pipeline parses");
    let SourceKind::Nexmark(source) = &spec.sources[0].kind else {
        panic!("the first source is not nexmark");
    };
    let generator = Generator::new(source.generator.clone()).expect("generator config");
    (generator, source.events.expect("bounded"))
}

fn bids(yaml: &str) -> Vec<Bid> {
    let (generator, events) = generator_of(yaml);
    (0..events)
        .filter(|n| generator.kind(*n) == EventKind::Bid)
        .filter_map(|n| match generator.event(n) {
            Event::Bid(bid) => Some(bid),
            _ => None,
        })
        .collect()
}

fn to_file_sink(yaml: &str, from: &str, to_dir: &Path) -> String {
    let to = format!(
        "type: file\n    path: {}\n    format: jsonl",
        to_dir.display()
    );
    assert!(yaml.contains(from), "example changed: no `{from}`");
    yaml.replace(from, &to)
}

fn time_text(ms: i64) -> String {
    wire_core::time::to_rfc3339(ms)
}

fn bid_json(bid: &Bid, price: Json) -> Json {
    serde_json::json!({
        "auction": bid.auction, "bidder": bid.bidder, "price": price, "channel": bid.channel,
        "url": bid.url, "date_time": time_text(bid.date_time), "extra": bid.extra,
    })
}

fn sorted(mut rows: Vec<Json>) -> Vec<String> {
    let mut text: Vec<String> = rows.drain(..).map(|r| r.to_string()).collect();
    text.sort();
    text
}

#[test]
fn q2_prints_exactly_the_bids_on_every_123rd_auction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = example("nexmark/q2.yaml");
    let output = run_wire(&yaml, dir.path(), 2);
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("auction,price"));
    let mut got: Vec<(i64, i64)> = lines
        .map(|line| {
            let (a, p) = line.split_once(',').expect("two columns");
            (a.parse().expect("auction"), p.parse().expect("price"))
        })
        .collect();
    let mut expected: Vec<(i64, i64)> = bids(&yaml)
        .iter()
        .filter(|bid| bid.auction % 123 == 0)
        .map(|bid| (bid.auction, bid.price))
        .collect();
    assert!(expected.len() > 1000, "the example should select many bids");
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

/// Runs a bids-only example into a file sink over 50k events and checks every row is a bid
/// with its price mapped by `price`.
fn check_bids_example(example_name: &str, cores: usize, price: fn(i64) -> Json) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = to_file_sink(&example(example_name), "type: blackhole", &out)
        .replace("events: 10M", "events: 50000");
    run_wire(&yaml, dir.path(), cores);
    let expected: Vec<Json> = bids(&yaml)
        .iter()
        .map(|b| bid_json(b, price(b.price)))
        .collect();
    assert_eq!(sorted(read_jsonl_dir(&out)), sorted(expected));
}

#[test]
fn q0_passes_every_bid_through_unchanged() {
    check_bids_example("nexmark/q0.yaml", 2, |price| price.into());
}

#[test]
fn q1_converts_every_price_to_euros() {
    check_bids_example("nexmark/q1.yaml", 1, |price| (price as f64 * 0.908).into());
}

#[test]
fn q14_filters_classifies_and_counts() {
    q14("nexmark/q14.yaml", "events: 10M", "events: 300000", 2);
}

#[test]
fn q14_in_sql_at_one_and_two_cores() {
    for cores in [1, 2] {
        q14(
            "nexmark/sql/q14.sql",
            "'events' = '10M'",
            "'events' = '300000'",
            cores,
        );
    }
}

fn q14(name: &str, events: &str, fewer: &str, cores: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = example(name);
    assert!(yaml.contains(events), "{name} changed: no `{events}`");
    let yaml = yaml
        .replace("./wire-output/q14", &out.display().to_string())
        .replace(events, fewer);
    run_wire(&yaml, dir.path(), cores);
    let expected: Vec<Json> = bids(&yaml)
        .iter()
        .filter(|b| {
            let euros = b.price as f64 * 0.908;
            euros > 1_000_000.0 && euros < 50_000_000.0
        })
        .map(|b| {
            let hour = b.date_time.rem_euclid(86_400_000) / 3_600_000;
            let kind = if (8..=18).contains(&hour) {
                "dayTime"
            } else if hour <= 6 || hour >= 20 {
                "nightTime"
            } else {
                "otherTime"
            };
            serde_json::json!({
                "auction": b.auction, "bidder": b.bidder, "price": b.price as f64 * 0.908,
                "bid_time_type": kind, "date_time": time_text(b.date_time), "extra": b.extra,
                "c_counts": b.extra.matches('c').count(),
            })
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(sorted(read_jsonl_dir(&out)), sorted(expected));
}

/// Splits one CSV record with RFC 4180 quotes (the reference's own, tiny parser).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[test]
fn etl_reads_csv_and_writes_enriched_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = example("etl.yaml").replace("./wire-output/etl", &out.display().to_string());
    run_wire(&yaml, dir.path(), 2);
    let csv = std::fs::read_to_string(repo_root().join("examples/data/orders.csv")).expect("csv");
    let mut expected = Vec::new();
    for line in csv.lines().skip(1) {
        let f = csv_fields(line);
        let amount: f64 = f[3].parse().expect("amount");
        let quantity: i64 = f[4].parse().expect("quantity");
        let total = amount * quantity as f64;
        if total < 1000.0 {
            continue;
        }
        let placed_at: i64 = f[5].parse().expect("placed_at");
        expected.push(serde_json::json!({
            "order_id": f[0].parse::<i64>().expect("id"), "customer": f[1].to_uppercase(),
            "city": f[2], "amount": amount, "quantity": quantity,
            "placed_at": time_text(placed_at), "total": total.round(),
            "size": if total >= 2500.0 { "xl" } else { "l" },
        }));
    }
    assert!(expected.len() > 20);
    assert!(
        csv.contains("\"Lagos, NG\""),
        "the example keeps a quoted field"
    );
    assert_eq!(sorted(read_jsonl_dir(&out)), sorted(expected));
}

#[test]
fn malformed_yaml_and_ill_typed_expressions_exit_2_naming_the_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "sources:\n  a: {type: nexmark, stream: bid\n",
            ":3:1: invalid YAML",
        ),
        (
            &example("nexmark/q1.yaml").replace("price * 0.908", "price * 'x'") as &str,
            ":14:22: operators[0].map.price: `*` needs numbers, found string",
        ),
        (
            &example("nexmark/q2.yaml").replace("auction % 123 = 0", "auktion % 123 = 0"),
            "did you mean `auction`",
        ),
    ];
    for (index, (yaml, message)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{index}.yaml"));
        std::fs::write(&file, yaml).expect("write");
        for command in ["check", "run"] {
            let output = Command::new(wire_bin())
                .arg(command)
                .arg(&file)
                .output()
                .expect("wire runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command} {index}: {stderr}");
            let expected = format!("{}{message}", file.display());
            assert!(
                stderr.contains(&expected) || stderr.contains(message),
                "{command} {index}: {stderr}"
            );
            assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        }
    }
}

/// Resident memory of a running process, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    wire_tests::process::rss_bytes(pid).map(|bytes| bytes / 1024)
}

#[test]
fn a_slow_sink_slows_the_source_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "\
name: slow
sources:
  bids: {type: nexmark, stream: bid, events: 200000, seed: 7}
sinks:
  out: {type: stdout, format: jsonl, from: bids}
";
    let file = dir.path().join("slow.yaml");
    std::fs::write(&file, yaml).expect("write");
    let mut child = spawn_wire(&file, dir.path(), 2);
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    // The sink writes into a pipe this test drains slowly: 16 KiB per millisecond at most.
    let mut buf = vec![0u8; 16 << 10];
    let mut lines = 0u64;
    let mut peak_rss = 0u64;
    let mut last_sample = Instant::now();
    loop {
        let n = stdout.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        std::thread::sleep(Duration::from_millis(1));
        if last_sample.elapsed() > Duration::from_millis(50) {
            last_sample = Instant::now();
            peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
        }
    }
    let stderr = finish_wire(&mut child);
    eprintln!("{stderr}peak RSS while throttled: {} MiB", peak_rss / 1024);
    let expected = bids(yaml).len() as u64;
    assert_eq!(lines, expected, "every bid reaches the slow sink");
    // Bounded queues: memory stays near the idle footprint instead of buffering the stream
    // (200k events make ~35 MB of JSON).
    assert!(
        peak_rss > 0 && peak_rss < 200 << 10,
        "peak RSS {peak_rss} KiB"
    );
    let source_line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("bids"))
        .expect("summary row of the source");
    let blocked: f64 = source_line
        .split_whitespace()
        .last()
        .and_then(|v| v.trim_end_matches('%').parse().ok())
        .expect("blocked share");
    assert!(
        blocked > 50.0,
        "the source should mostly wait for the sink: {source_line}"
    );
}

#[test]
fn ingest_appends_to_the_wal_acks_and_processes_every_row() {
    use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
    use wire_net::ingest::{ErrorCode, IngestClient};
    use wire_net::ClientError;

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = example("ingest.yaml").replace("127.0.0.1:7070", "127.0.0.1:0");
    let file = dir.path().join("ingest.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let mut child = spawn_wire(&file, dir.path(), 2);
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stdout)
            .read_to_string(&mut text)
            .map(|_| text)
    });
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let addr = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("stderr") == 0 {
            panic!("wire exited before listening");
        }
        if let Some(addr) = line.trim().strip_prefix("source `readings` listening on ") {
            break addr.to_string();
        }
    };
    let schema = Schema::new(vec![
        Field::new("sensor", DataType::String),
        Field::new("value", DataType::F64),
        Field::new("at", DataType::Timestamp),
    ]);
    let mut expected = BTreeMap::new();
    let mut acked_rows = 0u64;
    for client_no in 0..4u32 {
        let mut client =
            IngestClient::connect(&addr, "test", "readings", &schema).expect("connect");
        for batch_no in 0..40u32 {
            let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
            for row in 0..100u32 {
                let sensor = format!("s{}", (client_no + batch_no + row) % 7);
                let value = f64::from((client_no * 7919 + batch_no * 104_729 + row * 13) % 80);
                let at = 1_700_000_000_000 + i64::from(batch_no * 100 + row);
                let values = [
                    ValueRef::Str(&sensor),
                    ValueRef::F64(value),
                    ValueRef::Timestamp(at),
                ];
                builder.push_with_time(&values, at).expect("push");
                if value > 40.0 {
                    let key =
                        serde_json::json!({"sensor": sensor, "value": value, "at": time_text(at)});
                    *expected.entry(key.to_string()).or_insert(0u32) += 1;
                }
            }
            client.send(&builder.finish()).expect("send");
        }
        let acks = client.close().expect("close");
        acked_rows += acks.iter().map(|a| u64::from(a.rows)).sum::<u64>();
    }
    assert_eq!(acked_rows, 4 * 40 * 100, "every row acknowledged");
    // A producer with the wrong schema is refused with a clear error.
    let wrong = Schema::new(vec![Field::new("sensor", DataType::I64)]);
    match IngestClient::connect(&addr, "test", "readings", &wrong) {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::SchemaMismatch);
            assert!(message.contains("sensor: string"), "{message}");
        }
        other => panic!("expected a schema mismatch, got {:?}", other.map(|_| ())),
    }
    // Graceful stop: drain and flush, exit 0.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr");
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "{rest}");
    let text = reader.join().expect("reader").expect("stdout");
    let mut got = BTreeMap::new();
    for line in text.lines() {
        let row: Json = serde_json::from_str(line).expect("JSON line");
        *got.entry(row.to_string()).or_insert(0u32) += 1;
    }
    assert_eq!(got, expected);
    // Every accepted batch is in a WAL segment under the data directory.
    let wal = dir.path().join("data/ingest/readings");
    let segments: u64 = std::fs::read_dir(&wal)
        .expect("wal dir")
        .filter_map(|p| std::fs::read_dir(p.ok()?.path()).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(
        segments > 4 * 40 * 100 * 20,
        "WAL holds the rows: {segments} bytes"
    );
}

#[test]
fn a_tailed_directory_reads_appends_to_every_file_and_skips_bad_lines() {
    use std::io::Write;

    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    for name in ["a.jsonl", "b.jsonl"] {
        std::fs::write(
            input.join(name),
            format!("{{\"id\": 0, \"file\": \"{name}\"}}\n"),
        )
        .expect("write");
    }
    let yaml = format!(
        "name: tail
sources:
  lines:
    type: file
    path: {}
    format: jsonl
    schema: {{id: i64, file: string}}
    tail: true
    on_error: skip
sinks:
  out: {{type: stdout, format: jsonl, from: lines}}
",
        input.display()
    );
    let file = dir.path().join("tail.yaml");
    std::fs::write(&file, yaml).expect("write");
    // One core owns both files: a tailed file must not starve the other.
    let mut child = spawn_wire(&file, dir.path(), 1);
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for id in 1..=3 {
        for name in ["a.jsonl", "b.jsonl"] {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(input.join(name))
                .expect("open");
            writeln!(f, "{{\"id\": {id}, \"file\": \"{name}\"}}").expect("append");
            if id == 2 {
                writeln!(f, "{{\"id\": \"two\"}}").expect("append a bad line");
            }
        }
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 8 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(line);
        }
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let stderr = finish_wire(&mut child);
    got.sort();
    let mut expected: Vec<String> = (0..=3)
        .flat_map(|id| {
            ["a.jsonl", "b.jsonl"].map(|name| format!("{{\"id\":{id},\"file\":\"{name}\"}}"))
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected, "{stderr}");
    assert!(
        stderr.contains("skipping a line that does not decode") || stderr.contains("rejected"),
        "{stderr}"
    );
}

#[test]
fn key_by_sends_each_key_to_one_core_and_union_merges_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let yaml = format!(
        "name: keyed
sources:
  early: {{type: nexmark, stream: bid, events: 20000, seed: 1}}
  late: {{type: nexmark, stream: bid, events: 20000, seed: 2}}
operators:
  - name: both
    union: [early, late]
  - name: by_auction
    from: both
    key_by: [auction]
sinks:
  out: {{type: file, path: {}, format: jsonl, from: by_auction}}
",
        out.display()
    );
    run_wire(&yaml, dir.path(), 2);
    let mut cores_of_auction: BTreeMap<i64, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut parts = std::fs::read_dir(&out)
        .expect("output dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect::<Vec<_>>();
    parts.sort();
    for part in parts {
        let name = part
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let core = name
            .split('-')
            .nth(1)
            .expect("part-<core>-<seq>")
            .to_string();
        for line in std::fs::read_to_string(&part).expect("read").lines() {
            let row: Json = serde_json::from_str(line).expect("json");
            let auction = row["auction"].as_i64().expect("auction");
            cores_of_auction
                .entry(auction)
                .or_default()
                .insert(core.clone());
            rows.push(row);
        }
    }
    let spread: Vec<_> = cores_of_auction
        .iter()
        .filter(|(_, cores)| cores.len() > 1)
        .collect();
    assert!(
        spread.is_empty(),
        "auctions written by several cores: {spread:?}"
    );
    let used: std::collections::BTreeSet<_> = cores_of_auction.values().flatten().collect();
    assert_eq!(used.len(), 2, "both cores own some key groups");
    let expected: Vec<Json> = bids(&yaml)
        .iter()
        .chain(bids(&yaml.replace("seed: 1}", "seed: 2}")).iter())
        .map(|b| bid_json(b, b.price.into()))
        .collect();
    assert_eq!(sorted(rows), sorted(expected));
}

#[test]
fn wire_loadgen_feeds_the_ingest_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = example("ingest.yaml").replace("127.0.0.1:7070", "127.0.0.1:0");
    let file = dir.path().join("ingest.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let mut child = wire_run(&file, dir.path(), 2)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("stderr") > 0,
            "wire exited"
        );
        if let Some(addr) = line.trim().strip_prefix("source `readings` listening on ") {
            break addr.to_string();
        }
    };
    let output = Command::new(wire_tests::loadgen_bin())
        .arg(&file)
        .args([
            "--addr",
            &addr,
            "--events",
            "50000",
            "--connections",
            "2",
            "--rate",
            "200000",
        ])
        .arg("--json")
        .output()
        .expect("loadgen runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Json = serde_json::from_slice(&output.stdout).expect("JSON summary");
    assert_eq!(summary["rows_acked"], 50_000, "{summary}");
    assert!(
        summary["ack_latency_us"]["p50"]
            .as_u64()
            .is_some_and(|us| us > 0),
        "{summary}"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr");
    assert!(child.wait().expect("wait").success(), "{rest}");
    let source_row = rest
        .lines()
        .find(|l| l.trim_start().starts_with("readings"))
        .expect("summary row of the source");
    assert_eq!(
        source_row.split_whitespace().nth(2),
        Some("50000"),
        "{rest}"
    );
}

#[test]
fn an_event_time_expression_drives_windows_and_late_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Readings stamped in whole seconds; the event time is computed from them.
    let mut csv = String::from("sensor,secs\n");
    let secs = [1, 3, 12, 2, 15, 25, 11, 31];
    for (i, s) in secs.iter().enumerate() {
        csv.push_str(&format!("s{},{s}\n", i % 2));
    }
    std::fs::write(dir.path().join("in.csv"), csv).expect("csv");
    let yaml = format!(
        "sources:
  readings:
    type: file
    path: {dir}/in.csv
    format: csv
    schema: {{sensor: string, secs: i64}}
    event_time: to_timestamp(secs * 1000)
operators:
  - name: per_window
    from: readings
    window: {{type: tumbling, size: 10s, late_output: late}}
    aggregate: {{n: count(*), first_secs: min(secs)}}
sinks:
  counts: {{type: file, path: {dir}/counts, format: jsonl, from: per_window}}
  late_rows: {{type: file, path: {dir}/late, format: jsonl, from: late}}
settings: {{batch_rows: 1}}
",
        dir = dir.path().display()
    );
    run_wire(&yaml, dir.path(), 1);
    let counts: Vec<String> = sorted(read_jsonl_dir(&dir.path().join("counts")));
    // One row per batch, so the watermark (bound 0) follows the computed time row by row:
    // 12 closes [0, 10), making 2 late; 25 closes [10, 20), making 11 late.
    let window = |start: i64, n: i64, first: i64| {
        serde_json::json!({"window_start": time_text(start * 1000),
            "window_end": time_text((start + 10) * 1000), "n": n, "first_secs": first})
    };
    let expected = vec![
        window(0, 2, 1),
        window(10, 2, 12),
        window(20, 1, 25),
        window(30, 1, 31),
    ];
    assert_eq!(counts, sorted(expected));
    let mut late: Vec<(i64, String)> = read_jsonl_dir(&dir.path().join("late"))
        .iter()
        .map(|row| {
            let at = row["event_time"].as_str().expect("event_time").to_string();
            (row["secs"].as_i64().expect("secs"), at)
        })
        .collect();
    late.sort();
    let expected_late = vec![(2, time_text(2000)), (11, time_text(11_000))];
    assert_eq!(
        late, expected_late,
        "late rows carry the appended event_time field"
    );
}

/// Keys equal to the key hash are one group: NaNs of any sign (`NaN`, `-NaN`, `nan`) and both
/// zeros. Before the one key equality (`wire_core::record::key`), the group table compared floats by
/// bits, and `-NaN` started a second NaN group on the same core.
#[test]
fn nan_and_signed_zero_keys_group_as_one_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "k\nNaN\n-NaN\nnan\n0.0\n-0.0\n1.5\n").expect("write input");
    let yaml = format!(
        "name: nan\nsources:\n  s: {{type: file, path: {}, format: csv, schema: {{k: f64}}}}\n\
         operators:\n  - name: per_key\n    from: s\n    group_by: [k]\n    aggregate:\n      n: count(*)\n\
         sinks:\n  out: {{type: stdout, format: jsonl, from: per_key}}\n",
        input.display()
    );
    let output = run_wire(&yaml, dir.path(), 1);
    let rows: Vec<Json> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON row"))
        .collect();
    // The last count seen per key (NaN prints as null).
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut inserts: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        let key = row["k"].to_string();
        if row["op"] == "+I" {
            *inserts.entry(key.clone()).or_default() += 1;
        }
        if let Some(n) = row["n"].as_i64() {
            last.insert(key, n);
        }
    }
    assert_eq!(inserts.get("null"), Some(&1), "one NaN group: {rows:?}");
    assert_eq!(last.get("null"), Some(&3), "{rows:?}");
    assert_eq!(
        inserts.values().sum::<usize>(),
        3,
        "NaN, zero and 1.5: {rows:?}"
    );
    assert_eq!(last.values().sum::<i64>(), 6, "{rows:?}");
}
