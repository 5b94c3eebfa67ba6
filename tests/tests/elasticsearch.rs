//! The Elasticsearch sink against osmem-server, an in-memory OpenSearch API server
//! (tests/src/osmem.rs starts one per test binary; `.ci/run` installs it): a replay after
//! SIGKILLs equals the reference, a server that is down at start, and refused documents that
//! follow `on_error` (dead-letter file, skip, fail).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wire_tests::osmem::Osmem;
use wire_tests::process::{outage, output_within, sigkill_restarts_after_writes, Watched};
use wire_tests::wire_bin;

fn wire_run(dir: &Path, pipeline: &str, checkpoints: bool) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(dir)
        .args(["run", "--no-progress", "--no-pin", "--cores", "2"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .env("ES_TEST_PASSWORD", "not-checked-by-osmem")
        .env_remove("WIRE_LOG");
    if checkpoints {
        command.args(["--checkpoint-interval", "150ms"]);
    }
    command
}

/// Bids of every tenth auction counted per auction and 1 s window of event time, one
/// document per (auction, window).
fn windowed(server: &Osmem, index: &str, events: u64) -> String {
    format!(
        "name: {index}
sources:
{windowed}sinks:
  out:
    type: elasticsearch
    from: per_auction
    url: {url}
    index: {index}
    id: CAST(auction AS string) || '@' || CAST(window_start AS string)
    document: {{auction: auction, ws: window_start, num: num, top: top}}
    username: wire
    password: ${{ES_TEST_PASSWORD}}
    batch_rows: 100
    connect_timeout_ms: 20000
",
        windowed = wire_tests::nexmark::windowed_bids_yaml(events, events / 3),
        url = server.url()
    )
}

#[test]
fn nexmark_windows_replayed_through_sigkills_equal_the_reference() {
    let server = Osmem::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let events = 150_000;
    let (reference, crashed) = (
        format!("ref-{}", std::process::id()),
        format!("eos-{}", std::process::id()),
    );
    std::fs::write(
        dir.path().join("ref.yaml"),
        windowed(server, &reference, events),
    )
    .expect("pipeline");
    std::fs::write(
        dir.path().join("eos.yaml"),
        windowed(server, &crashed, events),
    )
    .expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "ref.yaml", false),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let expected = server.documents(&reference);
    assert!(
        expected.len() > 50,
        "{} reference documents",
        expected.len()
    );

    // Only ids keep the rows a restored run writes again from becoming duplicates.
    let mut seen = Vec::new();
    let killed = sigkill_restarts_after_writes(
        || wire_run(dir.path(), "eos.yaml", true),
        4,
        &crashed,
        || server.count(&crashed),
        |_, _| {
            let now = server.documents(&crashed);
            // Each (auction, window) has at most one document.
            assert!(
                now.len() <= expected.len(),
                "{} > {}",
                now.len(),
                expected.len()
            );
            seen.push(now.len());
        },
    );
    let found = server.documents(&crashed);
    eprintln!(
        "{killed} kill(s); documents after each: {seen:?}; {} in the end",
        found.len()
    );
    assert_eq!(found.len(), expected.len());
    assert!(
        found == expected,
        "the replayed index differs from the reference"
    );
}

#[test]
fn a_server_down_at_start_fails_naming_the_sink_address_and_cause() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let yaml = format!(
        "sources:
  bids: {{type: nexmark, stream: bid, events: 1000}}
sinks:
  out: {{type: elasticsearch, from: bids, url: 'http://127.0.0.1:{port}', index: bids, connect_timeout_ms: 800}}
"
    );
    std::fs::write(dir.path().join("down.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "down.yaml", false),
        Duration::from_secs(30),
    );
    assert_ne!(code, Some(0), "{stderr}");
    let expected =
        format!("elasticsearch sink `out`: cannot reach the server at http://127.0.0.1:{port} (");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

/// Rows `(id, n)` with `n` a number for even ids and a word for odd ones, into an index whose
/// `n` is a `long`: the server refuses the odd ones.
fn refused_rows(server: &Osmem, dir: &Path, index: &str, on_error: &str) -> String {
    let lines: String = (0..40)
        .map(|i| match i % 2 {
            0 => format!("{{\"id\": {i}, \"n\": \"{}\"}}\n", i * 10),
            _ => format!("{{\"id\": {i}, \"n\": \"word{i}\"}}\n"),
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines).expect("input");
    server.create_index(index, r#"{"id":{"type":"long"},"n":{"type":"long"}}"#);
    format!(
        "sources:
  rows: {{type: file, path: in.jsonl, schema: {{id: i64, n: string}}}}
sinks:
  out:
    type: elasticsearch
    from: rows
    url: {url}
    index: {index}
    id: id
    batch_rows: 7
    {on_error}
",
        url = server.url()
    )
}

#[test]
fn refused_documents_go_to_the_dead_letter_file_or_are_skipped_or_fail_the_run() {
    let server = Osmem::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let pid = std::process::id();

    let index = format!("dead-{pid}");
    let yaml = refused_rows(
        server,
        dir.path(),
        &index,
        "on_error: dead_letter\n    dead_letter: letters/out.jsonl",
    );
    std::fs::write(dir.path().join("dead.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "dead.yaml", false),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let docs = server.documents(&index);
    let ids: Vec<i64> = docs
        .keys()
        .map(|id| id.parse().expect("numeric id"))
        .collect();
    assert_eq!(ids.len(), 20, "{ids:?}");
    assert!(ids.iter().all(|id| id % 2 == 0), "{ids:?}");
    assert_eq!(docs["4"]["n"], "40");
    assert!(stderr.contains("20 rows refused by the server"), "{stderr}");
    let letters =
        std::fs::read_to_string(dir.path().join("letters/out.jsonl")).expect("dead letters");
    let mut letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON dead letter"))
        .collect();
    letters.sort_by_key(|l| l["row"]["id"].as_i64());
    assert_eq!(letters.len(), 20);
    for (i, letter) in letters.iter().enumerate() {
        let id = 2 * i as i64 + 1;
        assert_eq!(
            letter["row"],
            serde_json::json!({"id": id, "n": format!("word{id}")})
        );
        assert_eq!(letter["sink"], "elasticsearch sink `out`");
        let error = letter["error"].as_str().expect("error");
        assert!(error.starts_with("mapper_parsing_exception: "), "{error}");
        let place = format!("index `{index}` at {}, document id `{id}`", server.url());
        assert_eq!(letter["place"], place);
    }

    let index = format!("skip-{pid}");
    let yaml = refused_rows(server, dir.path(), &index, "on_error: skip");
    std::fs::write(dir.path().join("skip.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "skip.yaml", false),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(server.documents(&index).len(), 20);
    assert!(stderr.contains("20 rows refused by the server"), "{stderr}");

    let index = format!("fail-{pid}");
    let yaml = refused_rows(server, dir.path(), &index, "on_error: fail");
    std::fs::write(dir.path().join("fail.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "fail.yaml", false),
        Duration::from_secs(30),
    );
    assert_ne!(code, Some(0), "{stderr}");
    let expected = format!(
        "elasticsearch sink `out`: index `{index}` at {}, document id `1`: mapper_parsing_exception: ",
        server.url()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn wire_check_refuses_a_bad_elasticsearch_sink() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let cases = [
        ("index: Bids", "is not an index name"),
        (
            "index: bids, on_error: dead_letter",
            "on_error: dead_letter needs `dead_letter: <file>`",
        ),
        (
            "index: bids, username: u",
            "basic auth needs `username` and one of",
        ),
        ("index: bids, batch_size: 3", "unknown key `batch_size`"),
    ];
    for (keys, message) in cases {
        let yaml = format!(
            "sources:
  bids: {{type: nexmark, stream: bid, events: 10}}
sinks:
  out: {{type: elasticsearch, from: bids, url: 'http://127.0.0.1:9200', {keys}}}
"
        );
        let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), &yaml);
        assert_eq!(code, Some(2), "{keys}: {stderr}");
        assert!(stderr.contains(message), "{keys}: {stderr}");
    }
}

#[test]
fn wire_check_wants_an_id_for_an_update_stream() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let yaml = "sources:
  bids: {type: nexmark, stream: bid, events: 10}
operators:
  - {name: totals, from: bids, group_by: [auction], aggregate: {n: count(*)}}
sinks:
  out: {type: elasticsearch, from: totals, url: 'http://127.0.0.1:9200', index: totals}
";
    let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), yaml);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("an update stream needs `id`"), "{stderr}");
    let with_id = yaml.replace("index: totals}", "index: totals, id: auction}");
    let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), &with_id);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_server_that_goes_away_mid_run_is_retried_until_it_is_back() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let server = Osmem::start();
    let (port, url) = (server.port, server.url());
    let yaml = format!(
        "sources:
  bids: {{type: nexmark, stream: bid, events: 30000, rate: 10000}}
operators:
  - {{name: tenth, from: bids, filter: price % 20 = 0}}
sinks:
  out: {{type: elasticsearch, from: tenth, url: '{url}', index: bids, id: CAST(auction AS string) || '/' || CAST(date_time AS string) || '/' || CAST(bidder AS string), batch_rows: 50, connect_timeout_ms: 20000}}
"
    );
    std::fs::write(dir.path().join("away.yaml"), yaml).expect("pipeline");
    let mut run = Watched::spawn(wire_run(dir.path(), "away.yaml", false));
    run.wait_until("the first documents", Duration::from_secs(30), |_| {
        server.count("bids") > 0
    });
    // Gone until the sink retries (every bulk request now fails to connect), then back, empty.
    let back = outage(
        &mut run,
        &["elasticsearch sink `out`"],
        || drop(server),
        || Osmem::start_on(port),
    );
    let status = wire_tests::process::wait_bounded(&mut run.child, Duration::from_secs(60));
    run.join();
    let stderr = run.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("requests retried"), "{stderr}");
    assert!(
        back.count("bids") > 0,
        "nothing written after the server came back"
    );
}
