//! The PostgreSQL sink against a real PostgreSQL 15 (tests/src/postgres.rs starts one per
//! test binary; `.ci/run` installs it): exactly-once through SIGKILLs, upserts, refused
//! tables and columns, and a server that goes away mid-run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wire_tests::postgres::Server;
use wire_tests::process::{
    check_pipeline, kill_after, outage, output_within, sigkill_restarts_when, Watched,
};
use wire_tests::wire_bin;

/// A name unique to this test run (the server is shared by the binary's tests).
fn unique(name: &str) -> String {
    format!("{name}_{}", std::process::id())
}

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
        .env("PGPASSWORD", "unused-with-trust")
        .env_remove("WIRE_LOG");
    if checkpoints {
        command.args(["--checkpoint-interval", "150ms"]);
    }
    command
}

/// Per auction and 1 s window of event time, the number of bids, into `table`.
fn windowed(server: &Server, name: &str, table: &str, delivery: &str, events: u64) -> String {
    format!(
        "name: {name}
sources:
  bids: {{type: nexmark, stream: bid, events: {events}, rate: {rate}}}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {{type: tumbling, size: 1s}}
    aggregate: {{num: count(*)}}
sinks:
  out:
    type: postgres
    from: per_auction
    url: {url}
    table: {table}
    columns: {{auction: auction, ws: window_start, num: num}}
    delivery: {delivery}
    batch_rows: 200
    connect_timeout_ms: 20000
",
        rate = events / 3,
        url = server.url()
    )
}

fn create_counts(server: &Server, table: &str) {
    server.execute(&format!(
        "CREATE TABLE {table} (auction bigint NOT NULL, ws timestamptz NOT NULL, num bigint NOT NULL)"
    ));
}

/// The rows of a counts table in order, and how many (auction, window) pairs repeat.
fn counts(server: &Server, table: &str) -> (Vec<Vec<Option<String>>>, usize) {
    let rows = server.rows(&format!(
        "SELECT auction, ws, num FROM {table} ORDER BY 1, 2, 3"
    ));
    let repeated = server.rows(&format!(
        "SELECT count(*) - count(DISTINCT (auction, ws)) FROM {table}"
    ));
    let repeated = repeated[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("a count");
    (rows, repeated)
}

/// Waits at most `limit` for `run` to end, which it must do successfully; its stderr.
fn finish_within(mut run: Watched, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while run.child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            panic!("still running after {limit:?}:\n{}", run.kill());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    run.finish()
}

/// SIGKILLs `run` as soon as the progress table shows a checkpoint of `pipeline` newer than
/// `seen` (polled every millisecond), unless the run ended first (successfully); whether it
/// was killed.
fn kill_after_commit(run: &mut Watched, server: &Server, pipeline: &str, seen: &mut i64) -> bool {
    let query = format!(
        "SELECT coalesce(max(checkpoint), 0) FROM wire_progress WHERE pipeline = '{pipeline}'"
    );
    let mut client = server.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = run.child.try_wait() {
            run.join();
            assert!(
                status.success(),
                "wire failed ({status}):\n{}",
                run.stderr()
            );
            return false;
        }
        let newest = match client.simple_query(&query).as_deref() {
            Ok([_, postgres::SimpleQueryMessage::Row(row), ..])
            | Ok([postgres::SimpleQueryMessage::Row(row), ..]) => {
                row.get(0).and_then(|n| n.parse().ok()).unwrap_or(0)
            }
            _ => 0, // no progress table yet
        };
        if newest > *seen {
            run.child.kill().expect("SIGKILL");
            let _ = run.child.wait();
            *seen = newest;
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = run.child.kill();
    run.join();
    panic!("no commit of {pipeline} within 60 s:\n{}", run.stderr());
}

#[test]
fn windowed_counts_into_postgres_exactly_once_through_sigkills() {
    let server = Server::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (reference, crashed) = (unique("ref_counts"), unique("eos_counts"));
    create_counts(server, &reference);
    create_counts(server, &crashed);
    let events = 600_000;
    let yaml = windowed(server, "pg_ref", &reference, "at_least_once", events);
    std::fs::write(dir.path().join("ref.yaml"), yaml).expect("pipeline");
    let yaml = windowed(server, "pg_eos", &crashed, "exactly_once", events);
    std::fs::write(dir.path().join("eos.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "ref.yaml", false),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (expected, repeated) = counts(server, &reference);
    assert!(expected.len() > 100, "{} reference rows", expected.len());
    assert_eq!(repeated, 0);

    // Kills right after a commit (the moment that shows a commit made at the barrier rather
    // than at completion: its checkpoint is then not complete yet) alternate with kills at
    // a time (which also land between completion and commit).
    let mut seen = 0;
    let delays = [None, Some(700), None, Some(900), None];
    let (killed, _) = sigkill_restarts_when(
        || wire_run(dir.path(), "eos.yaml", true),
        delays.len(),
        |run_index, run| match delays[run_index] {
            None => kill_after_commit(run, server, "pg_eos", &mut seen),
            Some(ms) => !kill_after(run, Duration::from_millis(ms)),
        },
        |killed, _| {
            let (rows, repeated) = counts(server, &crashed);
            assert_eq!(
                repeated,
                0,
                "a window written twice after {} kill(s)",
                killed + 1
            );
            assert!(rows.len() <= expected.len());
        },
    );
    let (rows, repeated) = counts(server, &crashed);
    eprintln!("{killed} kill(s); {} rows", rows.len());
    assert!(killed >= 1, "the run ended before the first kill");
    assert_eq!(repeated, 0, "a window written twice");
    assert_eq!(rows, expected, "the table differs from the reference");
}

#[test]
fn upsert_keeps_the_latest_row_per_key() {
    let yaml = |url: &str, table: &str| {
        format!(
            "name: pg_upsert
sources:
  input: {{type: file, path: in.jsonl, schema: {{k: string, v: i64}}}}
operators:
  - name: totals
    from: input
    group_by: [k]
    aggregate: {{n: count(*), total: sum(v)}}
sinks:
  out:
    type: postgres
    from: totals
    url: {url}
    table: public.{table}
    mode: upsert
    key: [k]
    delivery: exactly_once
"
        )
    };
    upserts_into_postgres("p.yaml", &unique("totals"), yaml);
}

/// The same pipeline in SQL: the sink table's `PRIMARY KEY` is its upsert key.
#[test]
fn a_sql_primary_key_upserts_the_latest_row_per_key() {
    let sql = |url: &str, table: &str| {
        format!(
            "CREATE TABLE input (k STRING, v BIGINT) WITH ('connector' = 'filesystem', 'path' = 'in.jsonl');
CREATE TABLE totals (k STRING, n BIGINT, total BIGINT, PRIMARY KEY (k) NOT ENFORCED)
  WITH ('connector' = 'jdbc', 'url' = '{url}', 'table' = 'public.{table}', 'delivery' = 'exactly_once');
INSERT INTO totals SELECT k, count(*) AS n, sum(v) AS total FROM input GROUP BY k;
"
        )
    };
    upserts_into_postgres("p.sql", &unique("sql_totals"), sql);
}

/// Runs pipeline `file` (written by `pipeline(url, table)`): per key `k` of 3000 rows, the
/// count and sum of `v`, upserted into `table`, which starts with a row the run must
/// overwrite and one it must leave alone.
fn upserts_into_postgres(file: &str, table: &str, pipeline: impl Fn(&str, &str) -> String) {
    let server = Server::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    server.execute(&format!(
        "CREATE TABLE {table} (k text PRIMARY KEY, n bigint NOT NULL, total bigint)"
    ));
    server.execute(&format!(
        "INSERT INTO {table} VALUES ('k1', -1, -1), ('other', 7, 7)"
    ));
    let input: String = (0..3000)
        .map(|i| format!("{{\"k\":\"k{}\",\"v\":{i}}}\n", i % 11))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
    std::fs::write(dir.path().join(file), pipeline(&server.url(), table)).expect("pipeline");
    let (code, stderr) = output_within(wire_run(dir.path(), file, true), Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let rows = server.rows(&format!("SELECT k, n, total FROM {table} ORDER BY k"));
    let mut expected: Vec<Vec<Option<String>>> = (0..11)
        .map(|k| {
            let values = (0..3000).filter(|i| i % 11 == k);
            let (n, total) = (values.clone().count(), values.sum::<i64>());
            vec![
                Some(format!("k{k}")),
                Some(n.to_string()),
                Some(total.to_string()),
            ]
        })
        .collect();
    expected.push(vec![
        Some("other".into()),
        Some("7".into()),
        Some("7".into()),
    ]);
    expected.sort();
    assert_eq!(rows, expected);
}

/// Runs `yaml` and returns its stderr; the run must fail within 60 s.
fn refused(server: &Server, table: &str, columns: &str) -> String {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let yaml = format!(
        "name: pg_bad
sources:
  input: {{type: nexmark, stream: bid, events: 1000}}
sinks:
  out: {{type: postgres, from: input, url: '{}', table: {table}, columns: {columns}}}
",
        server.url()
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "p.yaml", false),
        Duration::from_secs(60),
    );
    assert_ne!(code, Some(0), "{stderr}");
    stderr
}

#[test]
fn a_bad_table_column_or_type_is_refused_clearly() {
    let server = Server::shared();
    let address = format!("127.0.0.1:{}/postgres", server.port);
    let missing = unique("missing");
    let stderr = refused(server, &missing, "{auction: auction}");
    let expected = format!("postgres sink `out`: table `{missing}` does not exist at {address}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        !stderr.contains("unused-with-trust"),
        "the password leaked: {stderr}"
    );

    let table = unique("narrow");
    server.execute(&format!(
        "CREATE TABLE {table} (auction bigint, bidder integer)"
    ));
    let stderr = refused(server, &table, "{auction: auction, price: price}");
    let expected = format!(
        "postgres sink `out`: table `{table}` has no column `price` (its columns: auction, bidder)"
    );
    assert!(stderr.contains(&expected), "{stderr}");

    let stderr = refused(server, &table, "{auction: auction, bidder: channel}");
    let expected = format!("postgres sink `out`: table `{table}` column `bidder` is integer, which does not take the sink's string values");
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn wire_check_places_postgres_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    let pipeline = |sink: &str| {
        format!(
            "name: bad
sources:
  input: {{type: nexmark, stream: bid, events: 10}}
sinks:
  out:
    type: postgres
    from: input
    url: postgres://wire:${{PGPASSWORD}}@127.0.0.1:5432/app
{sink}"
        )
    };
    let cases = [
        (
            "    table: t\n    mode: merge\n",
            "10:11: sinks.out.mode: unknown mode `merge`",
        ),
        (
            "    table: t\n    mode: upsert\n",
            "6:9: sinks.out: mode: upsert needs `key: [column, …]`",
        ),
        (
            "    table: t;drop\n",
            "9:12: sinks.out.table: `t;drop` is not a table name",
        ),
        (
            "    table: t\n    colums: {a: auction}\n",
            "10:5: sinks.out: unknown key `colums`",
        ),
        (
            "    table: t\n    columns: {a: auction}\n    mode: upsert\n    key: [b]\n",
            "12:11: sinks.out.key[0]: `b` is not one of the `columns`",
        ),
        (
            "    table: t\n    columns: {a: nope}\n",
            "10:18: sinks.out.columns.a: unknown field `nope`",
        ),
    ];
    for (sink, expected) in cases {
        let (code, stderr) = check_pipeline(&path, &pipeline(sink));
        assert_ne!(code, Some(0), "{sink}");
        let expected = format!("{}:{expected}", path.display());
        assert!(stderr.contains(&expected), "{sink}: {stderr}");
    }
    let (code, stderr) = check_pipeline(
        &path,
        &pipeline("    table: app.t\n    mode: upsert\n    key: auction\n"),
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_postgres_example_checks() {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(wire_tests::repo_root())
        .args(["check", "examples/kafka-to-postgres.yaml"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    let (code, stderr) = output_within(command, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_server_gone_mid_run_is_retried_and_the_run_recovers() {
    let server = Server::start();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (reference, table) = (unique("down_ref"), unique("down_counts"));
    create_counts(&server, &reference);
    create_counts(&server, &table);
    let events = 1_500_000;
    let yaml = windowed(&server, "pg_down_ref", &reference, "at_least_once", events);
    std::fs::write(dir.path().join("ref.yaml"), yaml).expect("pipeline");
    let yaml = windowed(&server, "pg_down", &table, "exactly_once", events);
    std::fs::write(dir.path().join("p.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "ref.yaml", false),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (expected, _) = counts(&server, &reference);

    let mut run = Watched::spawn(wire_run(dir.path(), "p.yaml", true));
    let progress = "SELECT count(*) FROM wire_progress WHERE pipeline = 'pg_down'";
    run.wait_until("a committed checkpoint", Duration::from_secs(60), |_| {
        let rows = server.try_rows(progress).unwrap_or_default();
        rows.first()
            .is_some_and(|row| row[0].as_deref() != Some("0"))
    });
    // The outage lasts while the run goes on; the sink must see it and retry.
    outage(
        &mut run,
        &["postgres sink"],
        || server.stop(),
        || server.resume(),
    );
    let stderr = finish_within(run, Duration::from_secs(120));
    let (rows, repeated) = counts(&server, &table);
    assert_eq!(repeated, 0, "a window written twice:\n{stderr}");
    assert_eq!(
        rows, expected,
        "the table differs from the reference:\n{stderr}"
    );
    assert!(stderr.contains("the server at 127.0.0.1:"), "{stderr}");
}

#[test]
fn rows_the_server_refuses_go_to_the_dead_letter_file() {
    let server = Server::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    // Every third value is negative, which the table's CHECK refuses.
    let input: String = (0..30)
        .map(|i| {
            format!(
                "{{\"k\":{i},\"v\":{}}}\n",
                if i % 3 == 0 { -i - 1 } else { i }
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
    for delivery in ["at_least_once", "exactly_once"] {
        let table = unique(&format!("checked_{delivery}"));
        server.execute(&format!(
            "CREATE TABLE {table} (k bigint PRIMARY KEY, v bigint CHECK (v >= 0))"
        ));
        let yaml = format!(
            "name: pg_dead_{delivery}
sources:
  input: {{type: file, path: in.jsonl, schema: {{k: i64, v: i64}}}}
sinks:
  out: {{type: postgres, from: input, url: '{url}', table: {table}, delivery: {delivery}, batch_rows: 4, on_error: dead_letter, dead_letter: dead/{delivery}.jsonl}}
",
            url = server.url()
        );
        std::fs::write(dir.path().join("p.yaml"), yaml).expect("pipeline");
        let (code, stderr) = output_within(
            wire_run(dir.path(), "p.yaml", delivery == "exactly_once"),
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(0), "{stderr}");
        // Exactly-once writes the run's last checkpoint after the cores stopped, past the
        // counters of the summary.
        if delivery == "at_least_once" {
            assert!(stderr.contains("10 rows refused by the server"), "{stderr}");
        }
        let rows = server.rows(&format!("SELECT k FROM {table} ORDER BY k"));
        let keys: Vec<i64> = rows
            .iter()
            .filter_map(|r| r[0].as_deref()?.parse().ok())
            .collect();
        let expected: Vec<i64> = (0..30).filter(|i| i % 3 != 0).collect();
        assert_eq!(keys, expected, "{delivery}");
        let letters = std::fs::read_to_string(dir.path().join(format!("dead/{delivery}.jsonl")))
            .expect("dead letters");
        let mut keys: Vec<i64> = Vec::new();
        for line in letters.lines() {
            let letter: serde_json::Value = serde_json::from_str(line).expect("json");
            let error = letter["error"].as_str().expect("error");
            assert!(error.contains("violates check constraint"), "{error}");
            assert!(error.ends_with("[SQLSTATE 23514]"), "{error}");
            assert!(letter["place"].as_str().is_some_and(|p| p.contains(&table)));
            keys.push(
                letter["row"]["k"]
                    .as_str()
                    .and_then(|k| k.parse().ok())
                    .expect("k"),
            );
        }
        keys.sort_unstable();
        let expected: Vec<i64> = (0..30).filter(|i| i % 3 == 0).collect();
        assert_eq!(keys, expected, "{delivery}");
    }
}

#[test]
fn rows_the_server_refuses_go_to_a_dead_letter_topic() {
    let server = Server::shared();
    let broker = wire_tests::kafka::Broker::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let dead_topic = unique("pg-dead");
    broker.create_topic(&dead_topic, 1);
    // Every fourth value is negative, which the table's CHECK refuses.
    let input: String = (0..40)
        .map(|i| {
            format!(
                "{{\"k\":{i},\"v\":{}}}\n",
                if i % 4 == 0 { -i - 1 } else { i }
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
    let table = unique("checked_topic");
    server.execute(&format!(
        "CREATE TABLE {table} (k bigint PRIMARY KEY, v bigint CHECK (v >= 0))"
    ));
    let yaml = format!(
        "name: pg_dead_topic
sources:
  input: {{type: file, path: in.jsonl, schema: {{k: i64, v: i64}}}}
sinks:
  out:
    type: postgres
    from: input
    url: '{url}'
    table: {table}
    batch_rows: 4
    on_error: dead_letter
    dead_letter_topic: {dead_topic}
    dead_letter_brokers: {brokers}
",
        url = server.url(),
        brokers = broker.addr
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).expect("pipeline");
    let (code, stderr) = output_within(
        wire_run(dir.path(), "p.yaml", true),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let rows = server.rows(&format!("SELECT k FROM {table} ORDER BY k"));
    let keys: Vec<i64> = rows
        .iter()
        .filter_map(|r| r[0].as_deref()?.parse().ok())
        .collect();
    assert_eq!(keys, (0..40).filter(|i| i % 4 != 0).collect::<Vec<i64>>());
    // The letters were acknowledged before the checkpoint that committed the rows: they are
    // all in the topic once the run has ended.
    let letters = broker.read_committed_at_least(&dead_topic, 1, Duration::from_secs(2), 10);
    let mut refused: Vec<(i64, i64)> = Vec::new();
    for letter in &letters {
        assert_eq!(
            letter.header("wire.sink").as_deref(),
            Some("postgres sink `out`")
        );
        let place = letter.header("wire.place").expect("wire.place header");
        assert!(
            place.contains(&format!("table `{table}` at 127.0.0.1:")),
            "{place}"
        );
        let error = letter.header("wire.error").expect("wire.error header");
        assert!(error.contains("violates check constraint"), "{error}");
        assert!(error.ends_with("[SQLSTATE 23514]"), "{error}");
        let row: serde_json::Value =
            serde_json::from_slice(letter.value.as_deref().expect("a value")).expect("json row");
        let field = |name: &str| -> i64 {
            let value = &row[name];
            value
                .as_i64()
                .or_else(|| value.as_str().and_then(|v| v.parse().ok()))
                .unwrap_or_else(|| panic!("`{name}` in {row}"))
        };
        refused.push((field("k"), field("v")));
    }
    refused.sort_unstable();
    let expected: Vec<(i64, i64)> = (0..40)
        .filter(|i| i % 4 == 0)
        .map(|i| (i, -i - 1))
        .collect();
    assert_eq!(refused, expected, "{stderr}");
}

/// The issue's "Kafka → PostgreSQL upserts under SIGKILL": keyed updates in a Kafka topic
/// (each key on one partition, so its updates keep their order) upserted by key into a table,
/// exactly once, through SIGKILLs; the table ends as the reference says: each key's last
/// value. The source and sink are those of examples/kafka-to-postgres.yaml without its window.
#[test]
fn kafka_upserts_into_postgres_through_sigkills() {
    let server = Server::shared();
    let broker = wire_tests::kafka::Broker::shared();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (topic, table) = (unique("updates"), unique("latest"));
    broker.create_topic(&topic, 3);
    let (updates, keys) = (60_000i64, 500i64);
    let records: Vec<(i32, Vec<u8>, Vec<u8>)> = (0..updates)
        .map(|i| {
            let k = i * 7919 % keys;
            let key = format!("c{k}");
            let value = format!(r#"{{"customer":"{key}","balance":{i},"note":"update {i}"}}"#);
            ((k % 3) as i32, key.into_bytes(), value.into_bytes())
        })
        .collect();
    let produced: Vec<wire_tests::kafka::Produced<'_>> = records
        .iter()
        .map(|(partition, key, value)| (*partition, Some(key.as_slice()), value.as_slice()))
        .collect();
    broker.produce(&topic, &produced);
    server.execute(&format!(
        "CREATE TABLE {table} (customer text PRIMARY KEY, balance bigint NOT NULL, note text)"
    ));
    let yaml = format!(
        "name: kafka_pg_kills
sources:
  updates:
    type: kafka
    brokers: {brokers}
    topics: [{topic}]
    bounded: true
    schema: {{customer: string, balance: i64, note: string}}
sinks:
  latest:
    type: postgres
    from: updates
    url: {url}
    table: {table}
    columns: {{customer: customer, balance: balance, note: note}}
    mode: upsert
    key: [customer]
    delivery: exactly_once
    batch_rows: 500
    connect_timeout_ms: 20000
",
        brokers = broker.addr,
        url = server.url()
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).expect("pipeline");
    let mut expected: Vec<Vec<Option<String>>> = (0..keys)
        .map(|k| {
            let last = (0..updates)
                .filter(|i| i * 7919 % keys == k)
                .max()
                .expect("a value");
            vec![
                Some(format!("c{k}")),
                Some(last.to_string()),
                Some(format!("update {last}")),
            ]
        })
        .collect();
    expected.sort();

    let mut seen = 0;
    let delays = [None, Some(500), None, Some(800)];
    let (killed, stderrs) = sigkill_restarts_when(
        || wire_run(dir.path(), "p.yaml", true),
        delays.len(),
        |run_index, run| match delays[run_index] {
            None => kill_after_commit(run, server, "kafka_pg_kills", &mut seen),
            Some(ms) => !kill_after(run, Duration::from_millis(ms)),
        },
        |_, _| {},
    );
    let rows = server.rows(&format!(
        "SELECT customer, balance, note FROM {table} ORDER BY customer COLLATE \"C\""
    ));
    eprintln!("{killed} kill(s)");
    assert!(killed >= 1, "the run ended before the first kill");
    assert_eq!(
        rows,
        expected,
        "the table differs from the reference; the last run's stderr:\n{}",
        stderrs.last().map_or("", String::as_str)
    );
}

/// The run summary counts, under the sink, the requests retried while the server was down at
/// the start and the rows the server refused.
#[test]
fn the_summary_counts_retries_and_refused_rows() {
    let server = Server::start();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let table = unique("counted");
    server.execute(&format!(
        "CREATE TABLE {table} (k bigint PRIMARY KEY, v bigint CHECK (v >= 0))"
    ));
    // Every fifth value is negative, which the table's CHECK refuses.
    let input: String = (0..50)
        .map(|i| format!("{{\"k\":{i},\"v\":{}}}\n", if i % 5 == 0 { -1 } else { i }))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
    let yaml = format!(
        "name: pg_counted
sources:
  input: {{type: file, path: in.jsonl, schema: {{k: i64, v: i64}}}}
sinks:
  out: {{type: postgres, from: input, url: '{url}', table: {table}, batch_rows: 10, connect_timeout_ms: 30000, on_error: dead_letter, dead_letter: dead.jsonl}}
",
        url = server.url()
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).expect("pipeline");
    server.stop();
    let mut run = Watched::spawn(wire_run(dir.path(), "p.yaml", false));
    // Down for a moment at the start: the sink retries until the server is back.
    run.wait_until("a retry", Duration::from_secs(30), |run| {
        run.stderr().contains("retrying")
    });
    server.resume();
    let stderr = finish_within(run, Duration::from_secs(60));
    assert!(stderr.contains("10 rows refused by the server"), "{stderr}");
    let retried = stderr
        .lines()
        .find_map(|line| line.trim().strip_suffix(" requests retried"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no retries in the summary:\n{stderr}"));
    assert!(retried >= 1, "{stderr}");
    let letters = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    assert_eq!(letters.lines().count(), 10, "{letters}");
    let rows = server.rows(&format!("SELECT count(*) FROM {table}"));
    assert_eq!(rows[0][0].as_deref(), Some("40"));
}
