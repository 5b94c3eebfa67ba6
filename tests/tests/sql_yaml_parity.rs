//! What YAML has, from SQL, on the real `wire` binary: `SET` statements choose the cores and
//! the checkpoint interval (as YAML `settings:` do, and the command line still wins);
//! `SET 'table.exec.emit.allow-lateness'` lets late rows re-fire a window, and a window's
//! `LATE_OUTPUT => 'name'` is a stream that an `INSERT` writes; `wire sql` passes its `SET`s to
//! the pipelines it runs; process table functions give the output of their YAML twin (q6);
//! `DISTRIBUTE BY` routes rows by key and keeps every row.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value as Json};
use wire_tests::rows::{assert_maps_eq, multiset};
use wire_tests::{read_jsonl_dir, wire_bin};

/// Event times (seconds) of key `a`, in file order: with a watermark that follows the rows
/// (no delay) and batches of one row, `3` arrives after the window [0, 10) fired (at `15`),
/// and `5` after the watermark passed 20 (at `40`).
const TIMES_S: [i64; 6] = [1, 2, 15, 3, 40, 5];

fn write_events(dir: &Path) {
    let lines: String = TIMES_S
        .iter()
        .map(|s| format!("{{\"k\": \"a\", \"t\": {}}}\n", s * 1000))
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines).expect("write events");
}

/// `wire run --no-progress --no-pin [extra] FILE` in `dir`; it must succeed.
fn run(dir: &Path, file: &str, extra: &[&str]) -> Output {
    let output = Command::new(wire_bin())
        .current_dir(dir)
        .args(["run", "--no-progress", "--no-pin", "--data-dir", "data"])
        .args(extra)
        .arg(file)
        .output()
        .expect("wire runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "wire run {file}: {stderr}");
    output
}

fn window(start_s: i64, n: i64) -> Json {
    let t = |s: i64| wire_core::time::to_rfc3339(s * 1000);
    json!({"k": "a", "window_start": t(start_s), "window_end": t(start_s + 10), "n": n})
}

fn late(s: i64) -> Json {
    json!({"k": "a", "t": wire_core::time::to_rfc3339(s * 1000)})
}

const COPY_SQL: &str = "SET 'parallelism.default' = '2';\n\
    SET 'execution.checkpointing.interval' = '100 ms';\n\
    CREATE TABLE ev (k STRING, t BIGINT) WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'jsonl');\n\
    CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'jsonl');\n\
    INSERT INTO out SELECT k, t FROM ev;\n";

const COPY_YAML: &str = "sources:\n  ev:\n    type: file\n    path: in.jsonl\n    format: jsonl\n    schema: {k: string, t: i64}\n\
    sinks:\n  out:\n    type: file\n    from: ev\n    path: out\n    format: jsonl\n\
    settings:\n  cores: 2\n  checkpoint_interval: 100ms\n";

/// The run used `cores` data cores, checkpointed every 100 ms (a last checkpoint is taken
/// when the sources end) and copied every row.
fn assert_copied(dir: &Path, output: &Output, cores: usize) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("on {cores} core(s)")), "{stderr}");
    assert!(stderr.contains("checkpointing every 100ms"), "{stderr}");
    let checkpoints: Vec<_> = std::fs::read_dir(dir.join("data").join("q").join("checkpoints"))
        .expect("the checkpoint directory exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
        .collect();
    assert!(!checkpoints.is_empty(), "no checkpoint taken: {stderr}");
    let got = read_jsonl_dir(&dir.join("out"));
    let expected: Vec<Json> = TIMES_S
        .iter()
        .map(|s| json!({"k": "a", "t": s * 1000}))
        .collect();
    assert_maps_eq(&multiset(&got), &multiset(&expected), "copied rows");
}

#[test]
fn set_statements_choose_cores_and_checkpoints_and_the_command_line_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_events(dir.path());
    std::fs::write(dir.path().join("q.sql"), COPY_SQL).expect("write sql");
    let output = run(dir.path(), "q.sql", &[]);
    assert_copied(dir.path(), &output, 2);
    let output = run(dir.path(), "q.sql", &["--cores", "1", "--fresh"]);
    assert_copied(dir.path(), &output, 1);
}

#[test]
fn yaml_settings_choose_cores_and_checkpoints_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_events(dir.path());
    std::fs::write(dir.path().join("q.yaml"), COPY_YAML).expect("write yaml");
    let output = run(dir.path(), "q.yaml", &[]);
    assert_copied(dir.path(), &output, 2);
}

fn late_sql(set: &str) -> String {
    format!(
        "{set}SET 'batch_rows' = '1';\n\
         CREATE TABLE ev (k STRING, t TIMESTAMP(3), WATERMARK FOR t AS t)\n  WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'jsonl');\n\
         CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'jsonl');\n\
         CREATE TABLE late WITH ('connector' = 'filesystem', 'path' = 'late', 'format' = 'jsonl');\n\
         INSERT INTO out SELECT k, window_start, window_end, count(*) AS n\n  \
           FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(t), INTERVAL '10' SECOND, LATE_OUTPUT => 'late_ev'))\n  \
           GROUP BY k, window_start, window_end;\n\
         INSERT INTO late SELECT * FROM late_ev;\n"
    )
}

/// Runs `sql` at one core over the events; returns the window rows and the late rows.
fn run_late(sql: &str) -> (Vec<Json>, Vec<Json>) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_events(dir.path());
    std::fs::write(dir.path().join("q.sql"), sql).expect("write sql");
    run(dir.path(), "q.sql", &["--cores", "1"]);
    (
        read_jsonl_dir(&dir.path().join("out")),
        read_jsonl_dir(&dir.path().join("late")),
    )
}

#[test]
fn allowed_lateness_refires_windows_and_later_rows_go_to_the_late_output() {
    // Ten seconds of lateness: `3` re-fires [0, 10) with 3 rows; `5` comes after the
    // watermark passed 10 + 10 and is too late for every window.
    let (windows, late_rows) = run_late(&late_sql(
        "SET 'table.exec.emit.allow-lateness' = '10 s';\n",
    ));
    let expected = [window(0, 2), window(0, 3), window(10, 1), window(40, 1)];
    assert_maps_eq(&multiset(&windows), &multiset(&expected), "windows");
    assert_maps_eq(&multiset(&late_rows), &multiset(&[late(5)]), "late rows");
    // Without lateness both `3` and `5` are late.
    let (windows, late_rows) = run_late(&late_sql(""));
    let expected = [window(0, 2), window(10, 1), window(40, 1)];
    assert_maps_eq(&multiset(&windows), &multiset(&expected), "windows");
    assert_maps_eq(
        &multiset(&late_rows),
        &multiset(&[late(3), late(5)]),
        "late rows",
    );
}

#[test]
fn the_sql_shell_passes_its_settings_to_the_queries_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_events(dir.path());
    let input = dir.path().join("in.jsonl");
    let script = format!(
        "SET 'batch_rows' = '1';\nSET 'table.exec.emit.allow-lateness' = '10 s';\n\
         CREATE TABLE ev (k STRING, t TIMESTAMP(3), WATERMARK FOR t AS t)\n  \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'jsonl');\n\
         CREATE TEMPORARY VIEW w AS SELECT k, window_start, window_end, count(*) AS n\n  \
         FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(t), INTERVAL '10' SECOND, LATE_OUTPUT => 'late_ev'))\n  \
         GROUP BY k, window_start, window_end;\n\
         SELECT * FROM late_ev;\n\
         SET 'no.such.key' = '1';\n",
        input.display()
    );
    let mut child = Command::new(wire_bin())
        .current_dir(dir.path())
        .arg("sql")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire sql starts");
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, script.as_bytes()).expect("write statements");
    drop(stdin);
    let output = child.wait_with_output().expect("wire sql runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // With the lateness set, only the row at 5 s is too late for every window.
    assert!(
        stdout.contains("1970-01-01T00:00:05.000Z"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("1970-01-01T00:00:03.000Z"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 row\n"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("unknown setting `no.such.key`"),
        "{stdout}\n{stderr}"
    );
}

/// `text` with its nexmark tables cut to `events` and its `./wire-output/` paths moved to `dir`.
fn cut(text: &str, events: &str, dir: &Path) -> String {
    text.replace("1M", events)
        .replace("./wire-output/", &format!("{}/", dir.display()))
}

#[test]
fn process_functions_from_sql_give_the_output_of_their_yaml_twin() {
    let root = wire_tests::repo_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("example");
    for (file, text) in [
        ("q6.yaml", read("examples/nexmark/q6.yaml")),
        ("q6.sql", read("examples/nexmark/sql/q6_process.sql")),
    ] {
        let out = dir.path().join(file.replace('.', "_"));
        let text = cut(&text, "200k", &out)
            .replace(&format!("{}/q6", out.display()), &out.display().to_string());
        std::fs::write(dir.path().join(file), text).expect("write");
        let output = run(dir.path(), file, &["--cores", "1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("max_until") && stderr.contains("last_n_average"),
            "{stderr}"
        );
    }
    let yaml = read_jsonl_dir(&dir.path().join("q6_yaml"));
    let sql = read_jsonl_dir(&dir.path().join("q6_sql"));
    assert!(yaml.len() >= 100, "only {} rows", yaml.len());
    assert_maps_eq(
        &multiset(&sql),
        &multiset(&yaml),
        "q6 SQL (process functions) vs YAML",
    );
}

#[test]
fn distribute_by_routes_rows_by_key_and_keeps_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: String = (0..1000)
        .map(|i| format!("{{\"k\": {}, \"v\": {i}}}\n", i % 7))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).expect("write events");
    let sql = "CREATE TABLE ev (k BIGINT, v BIGINT) WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'jsonl');\n\
        CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'jsonl');\n\
        INSERT INTO out SELECT k, v * 2 AS w FROM ev DISTRIBUTE BY k;\n";
    std::fs::write(dir.path().join("q.sql"), sql).expect("write sql");
    let output = run(dir.path(), "q.sql", &["--cores", "2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("key_by"), "{stderr}");
    let got = read_jsonl_dir(&dir.path().join("out"));
    let expected: Vec<Json> = (0..1000).map(|i| json!({"k": i % 7, "w": i * 2})).collect();
    assert_maps_eq(
        &multiset(&got),
        &multiset(&expected),
        "rows after DISTRIBUTE BY",
    );
}
