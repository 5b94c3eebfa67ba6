//! What a first-time user runs into, through the real `wire` binary: errors that say what to
//! do, checks that catch a missing input before a run, a failed run that reports once and
//! leaves nothing behind, logging set with `RUST_LOG`, `--version` with its commit, and help
//! that comes before any work.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wire_tests::{repo_root, wire_bin};

/// `wire ARGS` from the repository root, with the log variables cleared unless set here.
fn wire(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(repo_root())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("WIRE_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("wire runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

const PER_DAY: &str = "name: g
sources:
  bids: {type: nexmark, stream: bid, events: 10}
operators:
  - name: per_day
    from: bids
    group_by: GROUP
    aggregate: {n: count(*)}
sinks:
  o: {type: blackhole, from: per_day}
";

#[test]
fn an_expression_cut_by_a_flow_mapping_is_an_error_that_says_to_quote_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (group, column) in [
        ("{day: date_format(date_time, 'yyyy-MM-dd')}", 21),
        ("{bucket: substr(extra, 1, 1)}", 24),
    ] {
        let file = write(dir.path(), "g.yaml", &PER_DAY.replace("GROUP", group));
        let out = wire(&["check", &file], &[]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(&format!("g.yaml:7:{column}: ")), "{text}");
        assert!(
            text.contains("quote the expression or use the block form"),
            "{text}"
        );
    }
    let quoted = "{day: \"date_format(date_time, 'yyyy-MM-dd')\"}";
    let file = write(dir.path(), "g.yaml", &PER_DAY.replace("GROUP", quoted));
    let out = wire(&["check", &file], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_and_run_refuse_a_missing_input_at_its_path_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such.csv");
    let yaml = format!(
        "name: m\nsources:\n  orders:\n    type: file\n    format: csv\n    schema: {{id: i64}}\n    path: {}\nsinks:\n  out: {{type: file, path: {}, from: orders}}\n",
        missing.display(),
        dir.path().join("out").display()
    );
    let file = write(dir.path(), "m.yaml", &yaml);
    for command in ["check", "run"] {
        let out = wire(&[command, &file], &[]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        assert!(
            text.contains("m.yaml:7:11: sources.orders.path: `") && text.contains("does not exist"),
            "{command}: {text}"
        );
    }
    assert!(!dir.path().join("out").exists(), "nothing ran");
}

#[test]
fn a_file_sink_path_no_file_system_can_hold_fails_check_and_run_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = dir.path().join("x".repeat(70_000));
    let yaml = format!(
        "name: l\nsources:\n  bids: {{type: nexmark, stream: bid, events: 10}}\nsinks:\n  out:\n    type: file\n    from: bids\n    path: {}\n",
        long.display()
    );
    let file = write(dir.path(), "l.yaml", &yaml);
    for command in ["check", "run"] {
        let out = wire(&[command, &file], &[]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        assert!(text.contains("l.yaml:8:11: sinks.out.path: "), "{text}");
        assert!(text.contains("PATH_MAX"), "{text}");
    }
    let component = dir.path().join("y".repeat(300)).join("out");
    let yaml = yaml.replace(
        &long.display().to_string(),
        &component.display().to_string(),
    );
    let out = wire(&["check", &write(dir.path(), "c.yaml", &yaml)], &[]);
    assert!(stderr(&out).contains("NAME_MAX"), "{}", stderr(&out));
}

#[test]
fn a_run_that_fails_before_any_row_reports_once_and_leaves_no_empty_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    // One file per core, each failing on its first data line.
    for (name, bad) in [("a.csv", "1x"), ("b.csv", "2x")] {
        std::fs::write(input.join(name), format!("id\n{bad}\n")).expect("write");
    }
    let out_dir = dir.path().join("out");
    let yaml = format!(
        "name: bad\nsources:\n  s: {{type: file, path: {}, format: csv, schema: {{id: i64}}}}\nsinks:\n  out: {{type: file, path: {}, from: s}}\n",
        input.display(),
        out_dir.join("nested").display()
    );
    let file = write(dir.path(), "bad.yaml", &yaml);
    let data = dir.path().join("data").display().to_string();
    let out = wire(
        &[
            "run",
            "--no-progress",
            "--cores",
            "2",
            "--data-dir",
            &data,
            &file,
        ],
        &[],
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        text.matches("expected an integer").count(),
        1,
        "one error, once: {text}"
    );
    assert!(text.starts_with("error: "), "{text}");
    assert!(
        !text.contains("pipeline `bad` on"),
        "no summary of zeros: {text}"
    );
    assert!(
        !out_dir.exists(),
        "the failed run left {}",
        out_dir.display()
    );
}

#[test]
fn rust_log_sets_the_filter_wire_log_wins_and_a_bad_value_exits_2() {
    let etl = "examples/etl.yaml";
    for (var, value) in [("RUST_LOG", "info,wire=nonsense"), ("WIRE_LOG", "[")] {
        let out = wire(&["check", etl], &[(var, value)]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {text}");
        assert!(
            text.starts_with(&format!("error: {var}=`{value}` is not a log filter")),
            "{text}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "name: q\nsources:\n  bids: {type: nexmark, stream: bid, events: 10}\nsinks:\n  o: {type: blackhole, from: bids}\n";
    let file = write(dir.path(), "q.yaml", yaml);
    let run = ["run", "--no-progress", "--cores", "1", file.as_str()];
    let info = stderr(&wire(&run, &[("RUST_LOG", "info")]));
    assert!(
        info.contains(" INFO "),
        "RUST_LOG=info logs at info: {info}"
    );
    let quiet = stderr(&wire(&run, &[("RUST_LOG", "info"), ("WIRE_LOG", "warn")]));
    assert!(!quiet.contains(" INFO "), "WIRE_LOG wins: {quiet}");
    let help = String::from_utf8_lossy(&wire(&["--help"], &[]).stdout).into_owned();
    assert!(
        help.contains("RUST_LOG") && help.contains("WIRE_LOG"),
        "{help}"
    );
    assert!(!help.contains("wirectl"), "{help}");
}

#[test]
fn version_names_the_commit() {
    let out = wire(&["--version"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let inside = text
        .trim()
        .strip_prefix("wire ")
        .and_then(|rest| rest.split_once(" ("))
        .and_then(|(_, commit)| commit.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`{text}` is not `wire X (COMMIT)`"));
    let hash = inside.strip_suffix("-dirty").unwrap_or(inside);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        // The binary may predate the last commit of a test run, but it is a hash of this repo.
        Some(_) => {
            let known = Command::new("git")
                .args(["cat-file", "-e", &format!("{hash}^{{commit}}")])
                .current_dir(repo_root())
                .status()
                .expect("git");
            assert!(known.success(), "`{hash}` is not a commit of this checkout");
        }
        None => assert_eq!(hash, "unknown"),
    }
}

#[test]
fn bench_scripts_print_help_before_building_or_measuring_anything() {
    // A PATH with only `sed`: building (cargo), installing (python3) or measuring (java, gcc)
    // would fail, so exit 0 with the usage shows that --help came first.
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/bin/sed", bin.path().join("sed")).expect("symlink sed");
    let scripts = [
        "bench/flink/compare.sh",
        "bench/flink/crosscheck.sh",
        "bench/flink/install.sh",
        "bench/scripts/exchange_stress.sh",
        "bench/scripts/latency.sh",
        "bench/scripts/machine_limits.sh",
    ];
    for script in scripts {
        for flag in ["--help", "-h"] {
            let started = Instant::now();
            let out = Command::new("/bin/bash")
                .arg(repo_root().join(script))
                .arg(flag)
                .env_clear()
                .env("PATH", bin.path())
                .output()
                .expect("bash runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{script} {flag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.lines().count() >= 2, "{script} {flag} printed: {text}");
            assert!(!text.contains("#!/"), "{text}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{script} worked"
            );
        }
    }
}

#[test]
fn the_ingest_rate_counts_from_the_first_batch_not_from_the_wait_for_producers() {
    use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
    use wire_net::ingest::IngestClient;

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = std::fs::read_to_string(repo_root().join("examples/ingest.yaml"))
        .expect("example")
        .replace("127.0.0.1:7070", "127.0.0.1:0");
    let file = write(dir.path(), "ingest.yaml", &yaml);
    let data = dir.path().join("data").display().to_string();
    let mut child = Command::new(wire_bin())
        .args([
            "run",
            "--no-progress",
            "--cores",
            "1",
            "--data-dir",
            &data,
            &file,
        ])
        .env_remove("RUST_LOG")
        .env_remove("WIRE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let addr = loop {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).expect("stderr") > 0,
            "no listen line"
        );
        if let Some(addr) = line.trim().strip_prefix("source `readings` listening on ") {
            break addr.to_string();
        }
    };
    // The producer comes late on purpose: this wait is what the rate must not include.
    std::thread::sleep(Duration::from_millis(1500));
    let schema = Schema::new(vec![
        Field::new("sensor", DataType::String),
        Field::new("value", DataType::F64),
        Field::new("at", DataType::Timestamp),
    ]);
    let mut client = IngestClient::connect(&addr, "test", "readings", &schema).expect("connect");
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for row in 0..100 {
        let at = 1_700_000_000_000 + row;
        let values = [
            ValueRef::Str("s"),
            ValueRef::F64(1.0),
            ValueRef::Timestamp(at),
        ];
        builder.push_with_time(&values, at).expect("push");
    }
    client.send(&builder.finish()).expect("send");
    client.close().expect("close");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut text = String::new();
    lines.read_to_string(&mut text).expect("stderr");
    assert!(child.wait().expect("wait").success(), "{text}");
    let number = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(prefix)
                    .map(|(_, rest)| rest.to_string())
            })
            .unwrap_or_else(|| panic!("no `{prefix}` in {text}"));
        line.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after `{prefix}` in {text}"))
    };
    let waited = number("first batch received ");
    let active = number("100 events in ");
    assert!(waited >= 1.5, "{text}");
    assert!(active < waited, "the rate's time excludes the wait: {text}");
}
