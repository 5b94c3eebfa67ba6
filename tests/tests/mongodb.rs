//! The MongoDB sink and source against SecantusDB, a MongoDB-compatible server (tests/src/mongo.rs
//! starts one per test binary; `.ci/run` installs it): Nexmark windows and an update stream
//! replayed through SIGKILLs equal an uninterrupted run, a server down at start, a server
//! SIGKILLed mid-run under a sink and a change stream, a change stream resumed after SIGKILLs
//! into an exactly-once file sink, a change stream of inserts, updates and deletes from a
//! cluster time copied by an upsert sink, and documents that do not fit (source) or that the
//! server refuses (sink) in the dead-letter files.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mongodb::bson::{doc, Document};
use wire_tests::mongo::Mongo;
use wire_tests::nexmark::windowed_bids_yaml;
use wire_tests::process::{outage, output_within, sigkill_restarts_after_writes, Watched};
use wire_tests::wire_bin;

const DB: &str = "wire";

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
        .env("MONGO_TEST_URI", Mongo::shared().uri())
        .env_remove("WIRE_LOG");
    if checkpoints {
        command.args(["--checkpoint-interval", "150ms"]);
    }
    command
}

/// Runs pipeline `yaml` (as `ref.yaml` in `dir`) to its end without checkpoints, and returns
/// the documents it wrote to `collection` of the shared server, at least `least` of them.
fn reference_documents(
    dir: &Path,
    yaml: &str,
    collection: &str,
    least: usize,
) -> BTreeMap<String, serde_json::Value> {
    std::fs::write(dir.join("ref.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(wire_run(dir, "ref.yaml", false), Duration::from_secs(90));
    assert_eq!(code, Some(0), "{stderr}");
    let expected = Mongo::shared().documents(DB, collection);
    assert!(
        expected.len() >= least,
        "{} reference documents",
        expected.len()
    );
    expected
}

/// Runs `yaml` to its end without checkpoints (the reference), then through SIGKILLs with
/// checkpoints into `collection`-eos, and asserts both collections hold the same documents.
fn replayed_equals_reference(name: &str, yaml: impl Fn(&str) -> String, least: usize) {
    let server = Mongo::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let pid = std::process::id();
    let (reference, crashed) = (format!("{name}-ref-{pid}"), format!("{name}-eos-{pid}"));
    std::fs::write(dir.path().join("eos.yaml"), yaml(&crashed)).expect("pipeline");
    let expected = reference_documents(dir.path(), &yaml(&reference), &reference, least);

    // Only `_id`s keep the rows a restored run writes again from becoming duplicates.
    let killed = sigkill_restarts_after_writes(
        || wire_run(dir.path(), "eos.yaml", true),
        3,
        &crashed,
        || server.count(DB, &crashed),
        |_, _| {},
    );
    let found = server.documents(DB, &crashed);
    eprintln!("{killed} kill(s); {} documents", found.len());
    assert_eq!(found.len(), expected.len());
    assert!(
        found == expected,
        "the replayed collection differs from the reference"
    );
}

#[test]
fn nexmark_windows_inserted_through_sigkills_equal_the_reference() {
    // Insert mode with `key`: a replayed window's document is already there (duplicate key),
    // which counts as written.
    let yaml = |collection: &str| {
        format!(
            "name: {collection}
sources:
{}sinks:
  out:
    type: mongodb
    from: per_auction
    uri: ${{MONGO_TEST_URI}}
    database: {DB}
    collection: {collection}
    key: [auction, ws]
    document: {{auction: auction, ws: window_start, num: num, top: top}}
    batch_rows: 100
    connect_timeout_ms: 20000
",
            windowed_bids_yaml(120_000, 40_000)
        )
    };
    replayed_equals_reference("windows", yaml, 50);
}

#[test]
fn upserts_of_an_update_stream_through_sigkills_equal_the_reference() {
    let yaml = |collection: &str| {
        format!(
            "name: {collection}
sources:
  bids: {{type: nexmark, stream: bid, events: 90000, rate: 30000}}
operators:
  - name: totals
    from: bids
    group_by: [auction]
    aggregate: {{bids: count(*), top: max(price)}}
sinks:
  out:
    type: mongodb
    from: totals
    uri: ${{MONGO_TEST_URI}}
    database: {DB}
    collection: {collection}
    mode: upsert
    key: [auction]
    batch_rows: 200
"
        )
    };
    replayed_equals_reference("totals", yaml, 50);
    // The documents are the last version of each auction's row, `_id` being the auction.
    let server = Mongo::shared();
    let docs = server.documents(DB, &format!("totals-ref-{}", std::process::id()));
    for (id, doc) in docs.iter().take(5) {
        assert_eq!(doc["auction"].to_string(), *id, "{doc}");
        assert!(doc["bids"].as_i64().is_some_and(|n| n >= 1), "{doc}");
        assert!(doc.get("op").is_none(), "{doc}");
    }
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
  out: {{type: mongodb, from: bids, uri: 'mongodb://wire:${{MONGO_TEST_SECRET}}@127.0.0.1:{port}/', database: d, collection: c, connect_timeout_ms: 1500}}
"
    );
    std::fs::write(dir.path().join("down.yaml"), yaml).expect("pipeline");
    let mut command = wire_run(dir.path(), "down.yaml", false);
    command.env("MONGO_TEST_SECRET", "hunter2-not-logged");
    let (code, stderr) = output_within(command, Duration::from_secs(30));
    assert_ne!(code, Some(0), "{stderr}");
    let expected = format!("mongodb sink `out`: cannot reach the server at 127.0.0.1:{port} (");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password was logged:\n{stderr}"
    );
}

/// Committed rows of a file sink's directory (parts still in progress are not output yet).
fn committed_rows(dir: &Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".inprogress") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            rows.push(serde_json::from_str(line).expect("a JSON row"));
        }
    }
    rows
}

/// Inserts documents `{n, at}` for `n` in `range`, 50 per `insert_many`, 10 ms apart.
fn insert_numbers(server: &Mongo, collection: &str, range: std::ops::Range<i64>) {
    let coll = server.collection(DB, collection);
    let numbers: Vec<i64> = range.collect();
    for chunk in numbers.chunks(50) {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|n| doc! {"n": *n, "at": mongodb::bson::DateTime::from_millis(1_000 * n)})
            .collect();
        coll.insert_many(docs).run().expect("insert_many");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_change_stream_resumes_after_sigkills_without_losing_or_repeating_a_change() {
    let server = Mongo::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let collection = format!("changes-{}", std::process::id());
    let yaml = format!(
        "name: follow
sources:
  changes:
    type: mongodb
    uri: ${{MONGO_TEST_URI}}
    database: {DB}
    collection: {collection}
    mode: change_stream
    schema: {{_id: string, n: i64, at: timestamp}}
    event_time: at
sinks:
  out: {{type: file, from: changes, path: out}}
"
    );
    std::fs::write(dir.path().join("follow.yaml"), yaml).expect("pipeline");
    let out = dir.path().join("out");
    let mut run = Watched::spawn(wire_run(dir.path(), "follow.yaml", true));
    // The stream opens some time after the start: insert one document at a time until one
    // comes out; the changes from the first one seen on must all come out, once each.
    let mut next = 0;
    run.wait_until(
        "the change stream delivers",
        Duration::from_secs(60),
        |_| {
            if committed_rows(&out).is_empty() {
                insert_numbers(server, &collection, next..next + 1);
                next += 1;
                std::thread::sleep(Duration::from_millis(50));
                return false;
            }
            true
        },
    );
    let end = next + 3000;
    let mut from = next;
    for kill in 0..3 {
        let upto = from + 750;
        insert_numbers(server, &collection, from..upto);
        from = upto;
        // Changes made while Wire is down must come out after it resumes.
        run.child.kill().expect("SIGKILL");
        let _ = run.child.wait();
        run.join();
        if kill < 2 {
            insert_numbers(server, &collection, from..from + 50);
            from += 50;
        }
        run = Watched::spawn(wire_run(dir.path(), "follow.yaml", true));
    }
    insert_numbers(server, &collection, from..end);
    run.wait_until("every change is committed", Duration::from_secs(90), |_| {
        committed_rows(&out)
            .iter()
            .filter_map(|r| r["n"].as_i64())
            .any(|n| n == end - 1)
    });
    interrupt(run);
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for row in committed_rows(&out) {
        *counts.entry(row["n"].as_i64().expect("n")).or_default() += 1;
    }
    let first = *counts.keys().next().expect("rows");
    let repeated: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(repeated.is_empty(), "changes read twice: {repeated:?}");
    let missing: Vec<i64> = (first..end).filter(|n| !counts.contains_key(n)).collect();
    assert!(missing.is_empty(), "changes lost: {missing:?}");
    assert_eq!(*counts.keys().last().expect("rows"), end - 1);
}

/// Waits (at most `within`) until `db.name` holds exactly `expected`; panics with the run's
/// stderr and the difference otherwise.
fn wait_for_documents(
    run: &mut Watched,
    server: &Mongo,
    name: &str,
    expected: &BTreeMap<String, serde_json::Value>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let found = server.documents(DB, name);
        if found == *expected {
            return;
        }
        let ended = run.child.try_wait().ok().flatten();
        if ended.is_some() || Instant::now() > deadline {
            let missing: Vec<_> = expected
                .keys()
                .filter(|k| !found.contains_key(*k))
                .collect();
            let extra: Vec<_> = found
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect();
            let differ: Vec<_> = found
                .iter()
                .filter(|(k, v)| expected.get(*k).is_some_and(|e| e != *v))
                .collect();
            if ended.is_some() {
                run.join();
            }
            panic!(
                "`{name}` differs (the run: {ended:?}): missing {missing:?}, extra {extra:?}, differ {differ:?}\n{}",
                run.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops `run` with SIGINT, which must end it successfully (at most 60 s).
fn interrupt(mut run: Watched) {
    let status = Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = wire_tests::process::wait_bounded(&mut run.child, Duration::from_secs(60));
    run.join();
    assert!(status.success(), "{}", run.stderr());
}

/// The next whole second since the epoch, once the clock has passed it.
fn next_second() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    let next = now.as_secs() + 1;
    std::thread::sleep(Duration::from_secs(next) - now + Duration::from_millis(50));
    next
}

#[test]
fn a_change_stream_from_a_cluster_time_copied_by_upserts_ends_equal_to_the_collection() {
    let server = Mongo::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let pid = std::process::id();
    let (source, copy) = (format!("source-{pid}"), format!("copy-{pid}"));
    let coll = server.collection(DB, &source);
    let numbered = |id: i64, tag: &str| doc! {"_id": id, "n": id * 10, "tag": tag};
    let ids = |range: std::ops::Range<i64>| doc! {"_id": {"$gte": range.start, "$lt": range.end}};
    // Changes before the start time must not be read.
    let before: Vec<Document> = (0..40).map(|i| numbered(i, "before")).collect();
    coll.insert_many(before).run().expect("insert");
    let start = next_second();
    let start_text = mongodb::bson::DateTime::from_millis(1000 * start as i64)
        .try_to_rfc3339_string()
        .expect("a time");
    // Made before Wire starts, but after the start time: all read.
    let after: Vec<Document> = (100..140).map(|i| numbered(i, "after")).collect();
    coll.insert_many(after).run().expect("insert");
    let set = doc! {"$set": {"tag": "updated"}};
    coll.update_many(ids(100..110), set.clone())
        .run()
        .expect("update");
    coll.replace_one(doc! {"_id": 110}, doc! {"n": -1, "tag": "replaced"})
        .run()
        .expect("replace");
    coll.delete_many(ids(120..130)).run().expect("delete");
    // An earlier document updated after the start time is copied; one deleted is not there.
    coll.update_one(doc! {"_id": 5}, set.clone())
        .run()
        .expect("update");
    coll.delete_one(doc! {"_id": 6}).run().expect("delete");
    let yaml = format!(
        "name: copy
sources:
  changes:
    type: mongodb
    uri: ${{MONGO_TEST_URI}}
    database: {DB}
    collection: {source}
    mode: change_stream
    start_at_operation_time: '{start_text}'
    schema: {{_id: i64, n: i64, tag: string}}
sinks:
  copy: {{type: mongodb, from: changes, uri: '${{MONGO_TEST_URI}}', database: {DB}, collection: {copy}, mode: upsert, key: [_id], batch_rows: 16}}
"
    );
    std::fs::write(dir.path().join("copy.yaml"), yaml).expect("pipeline");
    let expected = |server: &Mongo| -> BTreeMap<String, serde_json::Value> {
        let mut docs = server.documents(DB, &source);
        docs.retain(|id, _| id.parse::<i64>().is_ok_and(|id| id >= 100 || id == 5));
        docs
    };
    let mut run = Watched::spawn(wire_run(dir.path(), "copy.yaml", false));
    wait_for_documents(
        &mut run,
        server,
        &copy,
        &expected(server),
        Duration::from_secs(40),
    );
    // Live changes: the same kinds, while the stream is open.
    let live: Vec<Document> = (200..210).map(|i| numbered(i, "live")).collect();
    coll.insert_many(live).run().expect("insert");
    coll.delete_one(doc! {"_id": 100}).run().expect("delete");
    coll.update_one(doc! {"_id": 101}, doc! {"$set": {"tag": "again"}})
        .run()
        .expect("update");
    coll.replace_one(doc! {"_id": 200}, doc! {"n": 7, "tag": "replaced"})
        .run()
        .expect("replace");
    coll.delete_many(ids(205..210)).run().expect("delete");
    let reference = expected(server);
    assert_eq!(reference.len(), 40 - 10 + 1 - 1 + 5, "{reference:?}");
    wait_for_documents(&mut run, server, &copy, &reference, Duration::from_secs(30));
    interrupt(run);
}

#[test]
fn a_server_killed_mid_run_is_ridden_out_by_the_sink_and_the_change_stream() {
    let shared = Mongo::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let durable = Mongo::start_durable(&dir.path().join("mongo"));
    let pid = std::process::id();
    let (reference, written, copy) = (
        format!("outage-ref-{pid}"),
        format!("outage-{pid}"),
        format!("outage-copy-{pid}"),
    );
    // Windows of Nexmark bids, one document per (auction, window), `_id` a string.
    let windows = |uri: &str, collection: &str| {
        format!(
            "{}sinks:
  out:
    type: mongodb
    from: per_auction
    uri: {uri}
    database: {DB}
    collection: {collection}
    key: [k]
    document: {{k: \"CAST(auction AS string) || '/' || CAST(window_start AS string)\", num: num, top: top}}
    batch_rows: 50
    connect_timeout_ms: 20000
",
            windowed_bids_yaml(90_000, 30_000)
        )
    };
    let yaml = format!("sources:\n{}", windows("${MONGO_TEST_URI}", &reference));
    let expected = reference_documents(dir.path(), &yaml, &reference, 50);

    // The same windows into the server that is killed, whose change stream (from a second
    // before the run) is copied into the shared server.
    let start = next_second() - 1;
    let yaml = format!(
        "sources:
  written:
    type: mongodb
    uri: ${{MONGO_DURABLE_URI}}
    database: {DB}
    collection: {written}
    mode: change_stream
    start_at_operation_time: '{start}:0'
    schema: {{_id: string, k: string, num: i64, top: i64}}
    connect_timeout_ms: 20000
{}  copy: {{type: mongodb, from: written, uri: '${{MONGO_TEST_URI}}', database: {DB}, collection: {copy}, mode: upsert, key: [_id]}}
",
        windows("${MONGO_DURABLE_URI}", &written)
    );
    std::fs::write(dir.path().join("outage.yaml"), yaml).expect("pipeline");
    let mut command = wire_run(dir.path(), "outage.yaml", true);
    command.env("MONGO_DURABLE_URI", durable.uri());
    let mut run = Watched::spawn(command);
    run.wait_until("the first documents", Duration::from_secs(30), |_| {
        durable.count(DB, &written) > 0
    });
    // The sink must meet the outage (it writes a window every second of the run's three);
    // the change stream meets it when it next asks for changes, which may be after the
    // restart (waiting for that too can outlast the sink's deadline under load).
    let sink = ["mongodb sink `out`"];
    outage(&mut run, &sink, || durable.kill(), || durable.restart());
    wait_for_documents(
        &mut run,
        &durable,
        &written,
        &expected,
        Duration::from_secs(40),
    );
    wait_for_documents(&mut run, shared, &copy, &expected, Duration::from_secs(20));
    let stderr = run.stderr();
    interrupt(run);
    let address = format!("127.0.0.1:{}", durable.port);
    assert!(stderr.contains(&address), "{stderr}");
}

#[test]
fn documents_that_do_not_fit_or_are_refused_go_to_the_dead_letter_files() {
    let server = Mongo::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let pid = std::process::id();
    let (input, output) = (format!("mixed-{pid}"), format!("unique-{pid}"));
    // Even `n`: a number; odd `n`: a word, which does not fit `n: i64`.
    let docs: Vec<Document> = (0..40_i64)
        .map(|i| match i % 2 {
            0 => doc! {"_id": i, "n": i * 10, "email": format!("e{}", i % 8)},
            _ => doc! {"_id": i, "n": format!("word{i}"), "email": "x"},
        })
        .collect();
    server
        .collection(DB, &input)
        .insert_many(docs)
        .run()
        .expect("insert");
    // A unique index the sink's documents break: `email` repeats every 8 ids (4 even ids).
    server
        .client
        .database(DB)
        .run_command(doc! {
            "createIndexes": &output,
            "indexes": [{"key": {"email": 1}, "name": "email_1", "unique": true}],
        })
        .run()
        .expect("unique index");
    let yaml = format!(
        "sources:
  docs:
    type: mongodb
    uri: ${{MONGO_TEST_URI}}
    database: {DB}
    collection: {input}
    schema: {{_id: i64, n: i64, email: string}}
    on_error: dead_letter
    dead_letter: letters/source.jsonl
sinks:
  out:
    type: mongodb
    from: docs
    uri: ${{MONGO_TEST_URI}}
    database: {DB}
    collection: {output}
    mode: upsert
    key: [_id]
    batch_rows: 7
    on_error: dead_letter
    dead_letter: letters/sink.jsonl
"
    );
    std::fs::write(dir.path().join("dead.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "dead.yaml", false),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join("letters").join(name))
            .expect("dead letters")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON dead letter"))
            .collect()
    };
    let mut letters = read("source.jsonl");
    letters.sort_by_key(|l| l["row"]["_id"].as_i64());
    assert_eq!(letters.len(), 20, "{letters:?}");
    for (i, letter) in letters.iter().enumerate() {
        let id = 2 * i as i64 + 1;
        assert_eq!(letter["source"], "mongodb source `docs`");
        assert_eq!(letter["row"]["n"], format!("word{id}"));
        let place = format!(
            "collection `{DB}.{input}` at 127.0.0.1:{}, document _id {id}",
            server.port
        );
        assert_eq!(letter["place"], place);
        let error = letter["error"].as_str().expect("error");
        assert!(
            error.starts_with("field `n`: expected i64, found BSON"),
            "{error}"
        );
    }
    // 20 even ids over 4 `email`s: the first of each email is kept, the others refused.
    let refused = read("sink.jsonl");
    let kept = server.documents(DB, &output);
    assert_eq!(kept.len() + refused.len(), 20, "{kept:?} {refused:?}");
    assert_eq!(kept.len(), 4, "{kept:?}");
    for letter in &refused {
        assert_eq!(letter["sink"], "mongodb sink `out`");
        let error = letter["error"].as_str().expect("error");
        assert!(error.contains("(code 11000)"), "{error}");
        assert!(letter["row"]["_id"].as_i64().is_some(), "{letter}");
    }
    assert!(stderr.contains("20 input records rejected"), "{stderr}");
    assert!(stderr.contains("16 rows refused by the server"), "{stderr}");
}

#[test]
fn wire_check_refuses_bad_mongodb_connectors() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let sink = |keys: &str| {
        format!(
            "sources:
  bids: {{type: nexmark, stream: bid, events: 10}}
sinks:
  out: {{type: mongodb, from: bids, uri: 'mongodb://127.0.0.1:27017', {keys}}}
"
        )
    };
    let source = |keys: &str| {
        format!(
            "sources:
  docs: {{type: mongodb, uri: 'mongodb://127.0.0.1:27017', {keys}}}
sinks:
  out: {{type: stdout, from: docs}}
"
        )
    };
    let cases = [
        (sink("collection: c"), "missing required key `database`"),
        (
            sink("database: d, collection: c, mode: upsert"),
            "mode: upsert needs `key",
        ),
        (
            sink("database: d, collection: c, key: [nope]"),
            "key `nope` is not a column",
        ),
        (
            sink("database: 'a.b', collection: c"),
            "is not a database name",
        ),
        (
            sink("database: d, collection: c, batch: 3"),
            "unknown key `batch`",
        ),
        (
            sink("database: d, collection: c, on_error: dead_letter"),
            "on_error: dead_letter needs `dead_letter: <file>`",
        ),
        (
            source("database: d, collection: c, mode: tail, schema: {n: i64}"),
            "unknown mode `tail`",
        ),
        (
            source("database: d, collection: c"),
            "missing required key `schema`",
        ),
        (
            source("database: d, collection: c, schema: {n: decimal}"),
            "unknown type `decimal`",
        ),
        (
            source("database: d, collection: c, mode: change_stream, schema: {n: i64}"),
            "mode: change_stream needs `_id` in the schema",
        ),
        (
            source("database: d, collection: c, resume_after: '8264', schema: {_id: i64}"),
            "`resume_after` is for `mode: change_stream`",
        ),
        (
            source("database: d, collection: c, mode: change_stream, resume_after: '8264', start_at_operation_time: '1796524331:3', schema: {_id: i64}"),
            "p.yaml:2:155: sources.docs.start_at_operation_time: give `resume_after` or `start_at_operation_time`, not both",
        ),
        (
            source("database: d, collection: c, mode: change_stream, resume_after: 'xyz', schema: {_id: i64}"),
            "`xyz` is not a resume token",
        ),
        (
            source("database: d, collection: c, mode: change_stream, start_at_operation_time: '2026-12-06T02:00:00.5Z', schema: {_id: i64}"),
            "is not a cluster time: expected an RFC 3339 time in whole seconds",
        ),
    ];
    for (yaml, message) in cases {
        let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), &yaml);
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert!(stderr.contains(message), "{yaml}: {stderr}");
    }
    let update_stream = "sources:
  bids: {type: nexmark, stream: bid, events: 10}
operators:
  - {name: totals, from: bids, group_by: [auction], aggregate: {n: count(*)}}
sinks:
  out: {type: mongodb, from: totals, uri: 'mongodb://h:1', database: d, collection: c}
";
    let (code, stderr) =
        wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), update_stream);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("an update stream needs `mode: upsert`"),
        "{stderr}"
    );
    let upsert = update_stream.replace(
        "collection: c}",
        "collection: c, mode: upsert, key: [auction]}",
    );
    let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), &upsert);
    assert_eq!(code, Some(0), "{stderr}");
    // A change stream's `+U` rows come without their `-U`: upserts take them, aggregates not.
    let changes = "sources:
  docs: {type: mongodb, uri: 'mongodb://h:1', database: d, collection: c, mode: change_stream, start_at_operation_time: '2026-12-06T02:00:00Z', schema: {_id: i64, n: i64}}
operators:
  - {name: big, from: docs, filter: n > 10}
  - {name: per_n, from: big, group_by: [n], aggregate: {c: count(*)}}
sinks:
  out: {type: stdout, from: per_n}
";
    let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), changes);
    assert_eq!(code, Some(2), "{stderr}");
    let refused = "`big` carries the change stream of source `docs`, whose updates (`+U`) come without the row they replace";
    assert!(stderr.contains(refused), "{stderr}");
    let copied = changes
        .replace("  - {name: per_n, from: big, group_by: [n], aggregate: {c: count(*)}}\n", "")
        .replace(
            "{type: stdout, from: per_n}",
            "{type: mongodb, from: big, uri: 'mongodb://h:1', database: d, collection: e, mode: upsert, key: [_id]}",
        );
    let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), &copied);
    assert_eq!(code, Some(0), "{copied}: {stderr}");
    // Into an insert-mode sink, the update stream is refused as any other.
    let inserted = copied.replace(", mode: upsert, key: [_id]", "");
    let (code, stderr) = wire_tests::process::check_pipeline(&dir.path().join("p.yaml"), &inserted);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("an update stream needs `mode: upsert`"),
        "{stderr}"
    );
}
