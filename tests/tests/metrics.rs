//! `--metrics-addr` end to end, with real processes: a real Prometheus (Debian's package,
//! installed on first use) scrapes a running `wire run` and sees its counters grow and its
//! checkpoints advance; `promtool check metrics` accepts a scrape; the final scrape of a
//! bounded run (`--metrics-linger`) agrees with the summary; `/readyz` of a 3-node `wire start`
//! cluster turns ready; a busy port and bad HTTP requests are refused; `--log-format json`;
//! `wire run --top` draws the top view and `wirectl top --once -o json` shows the scrape's figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wire_tests::cluster::{
    free_port, initial_cluster, wait_for, wait_for_leader, wirectl_bin, WireNode,
};
use wire_tests::metrics::{
    chromium, http, promtool_check, q5_file, samples, scrape, serial, sum, Prometheus,
};
use wire_tests::process::Watched;
use wire_tests::wire_bin;

/// Nexmark q5 (a hop window and a top) into a file sink in `dir`: `events` bounds it, else it
/// runs until stopped at 20,000 events/s.
fn q5(dir: &Path, events: Option<&str>) -> PathBuf {
    match events {
        Some(events) => q5_file(dir, &format!("events: {events}")),
        None => q5_file(dir, "rate: 20000"),
    }
}

/// `wire run FILE` with two unpinned cores, checkpoints every 300 ms and metrics on `addr`.
fn wire_run(file: &Path, dir: &Path, addr: &str) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .arg("run")
        .arg(file)
        .args(["--cores", "2", "--no-pin", "--no-progress"])
        .args(["--checkpoint-interval", "300ms", "--metrics-addr", addr])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn local_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

const START: Duration = Duration::from_secs(30);

#[test]
fn prometheus_scrapes_a_running_pipeline_and_sees_rows_and_checkpoints_advance() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut wire = Watched::spawn(wire_run(&q5(dir.path(), None), dir.path(), &addr));
    wire.wait_for_line("metrics on http://", START);
    let prometheus = Prometheus::start(dir.path(), &addr);
    let query = |q: &str| prometheus.query(q);
    let positive = |q: &'static str| {
        move || match query(q)? {
            v if v > 0.0 => Ok(v),
            v => Err(format!("{q} = {v}")),
        }
    };
    let up = "up{job=\"wire\"}";
    wait_for("prometheus scrapes wire", START, positive(up));
    let events = "sum(wire_source_events_total)";
    let checkpoint = "max(wire_checkpoint_last_id)";
    let first_events = wait_for("rows counted", START, positive(events));
    let first_checkpoint = wait_for("a checkpoint completed", START, positive(checkpoint));
    let grown = |q: &'static str, than: f64| {
        move || match query(q)? {
            v if v > than => Ok(v),
            v => Err(format!("{q} = {v}, not above {than}")),
        }
    };
    wait_for("rows counter grows", START, grown(events, first_events));
    wait_for(
        "checkpoint id advances",
        START,
        grown(checkpoint, first_checkpoint),
    );
    // Prometheus reads OpenMetrics; curl and promtool get the classic text format.
    let text = scrape(&addr).expect("scrape");
    if let Err(said) = promtool_check(&text) {
        panic!("promtool check metrics refused the scrape: {said}\n{text}");
    }
    let (status, open) = http(
        &addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    )
    .expect("openmetrics scrape");
    assert_eq!(status, 200);
    assert!(open.ends_with("# EOF\n"), "{open}");
    wire.kill();
}

/// The summary table's rows: node name → (rows in, rows out), as `wire run` prints them
/// (`  {name:<20} {kind:<16} {rows in:>14} {rows out:>14} {blocked:>8}%`).
fn summary_rows(stderr: &str) -> Vec<(String, u64, u64)> {
    let table = stderr
        .lines()
        .skip_while(|l| !l.starts_with("pipeline `q5` on"))
        .skip(2)
        .take_while(|l| l.ends_with('%'));
    table
        .map(|line| {
            let name = line.get(2..22).unwrap_or_default().trim().to_string();
            let numbers: Vec<&str> = line.split_whitespace().rev().skip(1).take(2).collect();
            let out = numbers[0].parse().expect("rows out");
            let rows_in = numbers[1].parse().expect("rows in");
            (name, rows_in, out)
        })
        .collect()
}

/// `checkpoints: N completed (…), M aborted; last ID (…)` of the summary: (N, ID).
fn summary_checkpoints(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("checkpoints: "))
        .expect("checkpoint line in the summary");
    let completed = line
        .trim_start()
        .trim_start_matches("checkpoints: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("completed count");
    let last = line
        .split("; last ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .expect("last checkpoint id");
    (completed, last)
}

#[test]
fn the_last_scrape_of_a_bounded_run_agrees_with_its_summary() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut command = wire_run(&q5(dir.path(), Some("300k")), dir.path(), &addr);
    command.args(["--metrics-linger", "60s"]);
    let mut wire = Watched::spawn(command);
    wire.wait_for_line("serving the final metrics", Duration::from_secs(120));
    let text = scrape(&addr).expect("final scrape");
    let all = samples(&text);
    let stderr = wire.stderr();
    let rows = summary_rows(&stderr);
    assert!(rows.len() >= 4, "summary table not found:\n{stderr}");
    for (name, rows_in, rows_out) in &rows {
        let of = [("operator", name.as_str())];
        let counted_in = match name.as_str() {
            "bids" => sum(&all, "wire_source_events_total", &of),
            _ => sum(&all, "wire_rows_in_total", &of),
        };
        assert_eq!(counted_in as u64, *rows_in, "rows in of `{name}`:\n{text}");
        let counted_out = sum(&all, "wire_rows_out_total", &of);
        assert_eq!(
            counted_out as u64, *rows_out,
            "rows out of `{name}`:\n{text}"
        );
    }
    let (completed, last) = summary_checkpoints(&stderr);
    let q5 = [("pipeline", "q5")];
    assert_eq!(
        sum(&all, "wire_checkpoints_completed_total", &q5) as u64,
        completed
    );
    assert_eq!(sum(&all, "wire_checkpoint_last_id", &q5) as u64, last);
    assert_eq!(sum(&all, "wire_pipeline_running", &q5), 0.0);
    let (status, why) = http(&addr, "GET", "/readyz", "").expect("readyz");
    assert_eq!(status, 503, "an ended run is not ready: {why}");
    // Ctrl-C ends the linger; the run exits 0.
    let pid = wire.child.id().to_string();
    let interrupted = Command::new("kill").args(["-INT", &pid]).status();
    assert!(interrupted.expect("kill runs").success());
    wire.finish();
}

/// q5 with a second sink writing the bids as they come (rows that carry their event time,
/// for the end-to-end latency), running at 20,000 events/s until stopped.
fn q5_with_raw_sink(dir: &Path) -> PathBuf {
    let file = q5(dir, None);
    let mut yaml = std::fs::read_to_string(&file).expect("q5 file");
    yaml.push_str(&format!(
        "  raw: {{type: file, path: {}, format: jsonl, from: bids}}\n",
        dir.join("raw").display()
    ));
    std::fs::write(&file, yaml).expect("pipeline file");
    file
}

#[test]
fn per_operator_bytes_state_alignment_skew_and_latency_move_on_a_real_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut wire = Watched::spawn(wire_run(&q5_with_raw_sink(dir.path()), dir.path(), &addr));
    wire.wait_for_line("metrics on http://", START);
    let read = || samples(&scrape(&addr).unwrap_or_default());
    let at_least = |what: &'static str, name: &'static str, of: &'static str, than: f64| {
        let read = &read;
        move || {
            let all = read();
            match sum(&all, name, &[("operator", of)]) {
                v if v > than => Ok(all),
                v => Err(format!("{what}: {name}{{operator={of}}} = {v}")),
            }
        }
    };
    wait_for("a checkpoint completed", START, || {
        match sum(&read(), "wire_checkpoint_last_id", &[]) {
            id if id >= 2.0 => Ok(()),
            id => Err(format!("last checkpoint {id}")),
        }
    });
    let first = read();
    let of = |all: &[wire_tests::metrics::Sample], name: &str, op: &str| {
        sum(all, name, &[("operator", op)])
    };
    let grows = |name: &'static str, op: &'static str| {
        let before = of(&first, name, op);
        wait_for(
            "a counter grows",
            START,
            at_least("grows", name, op, before),
        );
    };
    grows("wire_bytes_out_total", "bids");
    grows("wire_bytes_in_total", "per_auction");
    grows("wire_bytes_out_total", "per_auction");
    grows("wire_bytes_in_total", "raw");
    grows("wire_sink_latency_seconds_count", "raw");
    // The keyed window holds state; two source instances feed it, so its barriers align.
    wait_for(
        "state held",
        START,
        at_least("state", "wire_state_bytes", "per_auction", 0.0),
    );
    let aligned = wait_for(
        "barriers aligned",
        START,
        at_least(
            "alignment",
            "wire_checkpoint_alignment_seconds_total",
            "per_auction",
            0.0,
        ),
    );
    let latency = of(&aligned, "wire_sink_latency_seconds_sum", "raw");
    assert!(latency > 0.0, "end-to-end latency sum {latency}");
    let mailbox: Vec<_> = aligned
        .iter()
        .filter(|s| s.name == "wire_mailbox_messages" && s.label("operator") == Some("per_auction"))
        .collect();
    assert_eq!(mailbox.len(), 2, "one mailbox gauge per core");
    let skew = aligned
        .iter()
        .find(|s| s.name == "wire_source_event_time_skew_seconds")
        .unwrap_or_else(|| panic!("no skew gauge"));
    assert_eq!(skew.label("operator"), Some("bids"));
    assert!(skew.value >= 0.0);
    assert!(sum(&aligned, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(sum(&aligned, "process_cpu_seconds_total", &[]) > 0.0);
    let text = scrape(&addr).expect("scrape");
    if let Err(said) = promtool_check(&text) {
        panic!("promtool check metrics refused the scrape: {said}\n{text}");
    }
    wire.kill();
}

#[test]
fn a_restored_run_shows_how_long_its_restore_took() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = q5(dir.path(), None);
    let addr = local_addr();
    let mut first = Watched::spawn(wire_run(&file, dir.path(), &addr));
    first.wait_for_line("metrics on http://", START);
    wait_for("a checkpoint completed", START, || {
        let all = samples(&scrape(&addr)?);
        match sum(&all, "wire_checkpoint_last_id", &[]) {
            id if id >= 2.0 => Ok(()),
            id => Err(format!("last checkpoint {id}")),
        }
    });
    assert!(
        !scrape(&addr)
            .expect("scrape")
            .contains("wire_restore_duration_seconds"),
        "a fresh run restored nothing"
    );
    first.kill();
    let addr = local_addr();
    let mut second = Watched::spawn(wire_run(&file, dir.path(), &addr));
    second.wait_for_line("metrics on http://", START);
    let took = wait_for("the restore's duration", START, || {
        let all = samples(&scrape(&addr)?);
        match sum(&all, "wire_restore_duration_seconds", &[("pipeline", "q5")]) {
            s if s > 0.0 => Ok(s),
            s => Err(format!("restore duration {s}")),
        }
    });
    assert!(took < 60.0, "restore took {took} s");
    second.wait_for_line("resumed from checkpoint", START);
    second.kill();
}

#[test]
fn oversized_and_malformed_requests_are_refused_and_the_pipeline_runs_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut wire = Watched::spawn(wire_run(&q5(dir.path(), None), dir.path(), &addr));
    wire.wait_for_line("metrics on http://", START);
    let ready = || match http(&addr, "GET", "/readyz", "")? {
        (200, _) => Ok(()),
        (status, body) => Err(format!("{status} {body}")),
    };
    wait_for("/readyz answers 200", START, ready);
    let events = || {
        sum(
            &samples(&scrape(&addr).expect("scrape")),
            "wire_source_events_total",
            &[],
        )
    };
    let before = events();
    let huge = format!("X-Big: {}\r\n", "a".repeat(64 << 10));
    let refused: [(&str, &str, String, u16); 4] = [
        ("GET", "/metrics", huge, 431),
        ("POST", "/metrics", String::new(), 405),
        ("GET", "/nope", String::new(), 404),
        ("GET /metrics", "HTTP/9", String::new(), 400),
    ];
    for (method, path, head, want) in refused {
        match http(&addr, method, path, &head) {
            Ok((status, _)) => assert_eq!(status, want, "{method} {path}"),
            Err(err) => panic!("{method} {path}: no answer: {err}"),
        }
    }
    // Garbage that is not HTTP at all: answered 400 or closed, never a crash.
    let _ = http(&addr, "\u{1}\u{2}", "\u{3}", "");
    assert_eq!(http(&addr, "GET", "/healthz", "").expect("healthz").0, 200);
    wait_for("rows still counted", START, || match events() {
        now if now > before => Ok(()),
        now => Err(format!("{now} events, {before} before")),
    });
    wire.kill();
}

#[test]
fn a_busy_metrics_port_is_a_clear_error_at_start() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let want = format!("cannot serve metrics on {addr}: address already in use");
    let run = wire_run(&q5(dir.path(), Some("1k")), dir.path(), &addr).output();
    let run = run.expect("wire run");
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("error: {want}")), "{said}");
    let start = Command::new(wire_bin())
        .args(["start", "--node-id", "1", "--listen", &local_addr()])
        .args(["--cores", "1", "--no-pin", "--metrics-addr", &addr])
        .arg("--data-dir")
        .arg(dir.path().join("node"))
        .stdin(Stdio::null())
        .output()
        .expect("wire start");
    let said = String::from_utf8_lossy(&start.stderr);
    assert_eq!(start.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("error: node 1: {want}")), "{said}");
}

#[test]
fn readyz_of_a_three_node_cluster_turns_ready_and_shows_raft_and_pipelines() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let metrics: Vec<String> = (0..3).map(|_| local_addr()).collect();
    let mut nodes: Vec<WireNode> = (1..=3)
        .map(|id| WireNode::new(dir.path(), id, &[]))
        .collect();
    let list: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    for (node, at) in nodes.iter_mut().zip(&metrics) {
        node.args = vec![
            "--initial-cluster".into(),
            initial_cluster(&list),
            "--metrics-addr".into(),
            at.clone(),
        ];
    }
    for node in &mut nodes {
        node.start();
    }
    wait_for_leader(&nodes, START);
    for at in &metrics {
        wait_for("/readyz answers 200", START, || {
            match http(at, "GET", "/readyz", "")? {
                (200, body) => Ok(body),
                (status, body) => Err(format!("{status} {body}")),
            }
        });
    }
    let all: Vec<_> = metrics
        .iter()
        .flat_map(|at| samples(&scrape(at).expect("scrape")))
        .collect();
    assert_eq!(sum(&all, "wire_raft_is_leader", &[]), 1.0, "one leader");
    assert_eq!(
        sum(&all, "wire_raft_members", &[]),
        9.0,
        "3 voters seen by each"
    );
    // A pipeline placed on a node shows up there, running, and the node stays ready.
    let spec = dir.path().join("p.yaml");
    std::fs::write(&spec, q5_unbounded_yaml(dir.path())).expect("spec");
    let created = nodes[0].ctl(&["pipeline", "create", "-f", spec.to_str().expect("utf-8")]);
    assert!(created.status.success(), "{created:?}");
    // q5 is keyed, so the cluster may spread it: every node that runs a part shows it.
    let running = wait_for("the pipeline runs on some node", START, || {
        let shown: Vec<_> = metrics
            .iter()
            .flat_map(|at| samples(&scrape(at).unwrap_or_default()))
            .collect();
        match sum(&shown, "wire_pipeline_running", &[("pipeline", "q5")]) {
            n if n >= 1.0 => Ok(shown),
            n => Err(format!("running on {n} nodes")),
        }
    });
    assert!(sum(&running, "wire_source_events_total", &[]) >= 0.0);
    for at in &metrics {
        wait_for("/readyz stays 200", START, || {
            match http(at, "GET", "/readyz", "")? {
                (200, body) => Ok(body),
                (status, body) => Err(format!("{status} {body}")),
            }
        });
    }
}

fn q5_unbounded_yaml(dir: &Path) -> String {
    std::fs::read_to_string(q5(dir, None)).expect("q5 file")
}

#[test]
fn json_logs_are_one_object_per_line() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(wire_bin())
        .args(["--log-format", "json", "run"])
        .arg(q5(dir.path(), Some("10k")))
        .args(["--cores", "1", "--no-pin", "--no-progress", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("WIRE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("wire run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let logs: Vec<serde_json::Value> = said
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{l}: {err}")))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "starting"),
        "{said}"
    );
}

/// `wirectl top --once -o FORMAT --metrics ADDR`: its stdout (it must succeed).
fn wirectl_top(addr: &str, format: &str) -> String {
    let out = Command::new(wirectl_bin())
        .args(["top", "--once", "--interval", "200ms", "-o", format])
        .args(["--metrics", addr])
        .stdin(Stdio::null())
        .output()
        .expect("wirectl top");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wirectl top failed: {said}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn wire_run_top_draws_the_view_and_wirectl_top_shows_the_figures_of_metrics() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    // 40,000 events at 20,000/s: two seconds, so `--top` draws while the run goes on.
    let file = q5(dir.path(), Some("40k, rate: 20000"));
    let mut command = wire_run(&file, dir.path(), &addr);
    command.args(["--metrics-linger", "60s", "--top"]);
    let mut wire = Watched::spawn(command);
    wire.wait_for_line("serving the final metrics", Duration::from_secs(60));
    let drawn = wire.stderr();
    assert!(drawn.contains("pipeline q5  running"), "{drawn}");
    assert!(
        drawn.contains("OPERATOR") && drawn.contains("per_auction"),
        "{drawn}"
    );
    let all = samples(&scrape(&addr).expect("final scrape"));
    let json: serde_json::Value =
        serde_json::from_str(&wirectl_top(&addr, "json")).expect("top's json");
    let pipeline = &json["pipelines"][0];
    assert_eq!(pipeline["pipeline"], "q5");
    assert_eq!(pipeline["running"], false);
    let ops = pipeline["operators"].as_array().expect("operators");
    assert!(ops.len() >= 4, "{json}");
    for op in ops {
        let name = op["operator"].as_str().expect("operator name");
        let of = [("operator", name)];
        for (field, metric) in [
            ("events", "wire_source_events_total"),
            ("rows_in", "wire_rows_in_total"),
            ("rows_out", "wire_rows_out_total"),
        ] {
            let want = sum(&all, metric, &of) as u64;
            assert_eq!(op[field].as_u64(), Some(want), "{field} of `{name}`");
        }
        assert_eq!(op["out_per_second"].as_f64(), Some(0.0), "an ended run");
    }
    let q5 = [("pipeline", "q5")];
    let checkpoint = &pipeline["checkpoint"];
    let last = sum(&all, "wire_checkpoint_last_id", &q5) as u64;
    assert!(last > 0);
    assert_eq!(checkpoint["last_id"].as_u64(), Some(last));
    let completed = sum(&all, "wire_checkpoints_completed_total", &q5) as u64;
    assert_eq!(checkpoint["completed"].as_u64(), Some(completed));
    assert!(checkpoint["age_seconds"].as_f64().is_some_and(|s| s >= 0.0));
    let text = wirectl_top(&addr, "text");
    assert!(text.contains("pipeline q5  ended  checkpoint"), "{text}");
    wire.kill();
}

/// The number in `<b class="events" id="events-q5">N</b>` of a dumped page.
fn dumped_events(dom: &str) -> Option<u64> {
    let (_, rest) = dom.split_once("id=\"events-q5\">")?;
    rest.split('<').next()?.parse().ok()
}

#[test]
fn the_dashboard_shows_the_running_pipeline_and_its_numbers_change_in_headless_chromium() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    // `--http-addr` is `--metrics-addr` by another name.
    let mut command = Command::new(wire_bin());
    command
        .arg("run")
        .arg(q5(dir.path(), None))
        .args([
            "--cores",
            "2",
            "--no-pin",
            "--no-progress",
            "--http-addr",
            &addr,
        ])
        .args(["--checkpoint-interval", "300ms", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut wire = Watched::spawn(command);
    wire.wait_for_line("metrics on http://", START);
    let url = format!("http://{addr}/");
    let first = chromium(&url, &["--dump-dom"]).expect("first dump");
    assert!(first.contains("data-pipeline=\"q5\""), "{first}");
    assert!(first.contains("class=\"state running\""), "{first}");
    for operator in ["bids", "per_auction", "hottest", "out"] {
        let node = format!("data-operator=\"{operator}\"");
        assert!(first.contains(&node), "no graph node {operator}: {first}");
    }
    assert!(
        first.contains("rate: 20000"),
        "the pipeline file is shown: {first}"
    );
    let before = dumped_events(&first).expect("events shown");
    let later = wait_for("the events number grows", START, || {
        let dom = chromium(&url, &["--dump-dom"])?;
        match dumped_events(&dom) {
            Some(now) if now > before => Ok(now),
            other => Err(format!("{other:?} events, {before} before")),
        }
    });
    assert!(later > before);
    // The screenshot, kept as the test's artefact under target/.
    let shot = wire_tests::repo_root().join("target/dashboard.png");
    let arg = format!("--screenshot={}", shot.display());
    chromium(&url, &[&arg]).expect("screenshot");
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    wire.kill();
}

#[test]
fn promtool_accepts_the_alerting_rules() {
    let rules = wire_tests::repo_root().join("deploy/prometheus/alerts.yml");
    wire_tests::metrics::ensure_prometheus();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules: {said}");
    for alert in [
        "WireNodeDown",
        "WireCheckpointFailing",
        "WireWatermarkStuck",
        "WireBackpressureHigh",
    ] {
        let text = std::fs::read_to_string(&rules).expect("rules");
        assert!(text.contains(&format!("alert: {alert}")), "{alert} missing");
    }
}

#[test]
fn the_example_node_toml_starts_a_tls_node_that_turns_ready() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let made = Command::new(wire_bin())
        .args(["certs", "init", "--host", "127.0.0.1", "--dir"])
        .arg(&certs)
        .output()
        .expect("wire certs init");
    assert!(made.status.success(), "{made:?}");
    // The example as shipped, its certificate paths pointed at the test's; flags win over
    // the addresses, directories and cores (this machine is not 10.0.0.1).
    let example = std::fs::read_to_string(wire_tests::repo_root().join("deploy/node.toml"))
        .expect("deploy/node.toml");
    let config = dir.path().join("node.toml");
    let tls = format!("{}/", certs.display());
    std::fs::write(&config, example.replace("/etc/wire/tls/", &tls)).expect("config");
    let listen = local_addr();
    let metrics = local_addr();
    let mut command = Command::new(wire_bin());
    command
        .arg("start")
        .arg("--config")
        .arg(&config)
        .args([
            "--listen",
            &listen,
            "--metrics-addr",
            &metrics,
            "--cores",
            "1",
            "--no-pin",
        ])
        .args(["--initial-cluster", &format!("1={listen}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--checkpoint-store")
        .arg(dir.path().join("checkpoints"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let node = Watched::spawn(command);
    // With TLS on the endpoint serves HTTPS only; /readyz needs no token nor certificate.
    let ready = wait_for("the node turns ready", START, || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--fail", "--cacert"])
            .arg(certs.join("ca.pem"))
            .arg(format!("https://{metrics}/readyz"))
            .output()
            .map_err(|err| format!("curl: {err}"))?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.success() {
            true => Ok(body),
            false => Err(format!("{body}{}", String::from_utf8_lossy(&out.stderr))),
        }
    });
    assert!(ready.contains("node 1 joined"), "{ready}");
    node.kill();
}

#[test]
fn wal_latency_and_bytes_and_ingest_connections_and_acks_are_measured() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(wire_tests::repo_root().join("examples/ingest.yaml"))
        .expect("examples/ingest.yaml");
    let file = dir.path().join("ingest.yaml");
    std::fs::write(&file, example.replace("127.0.0.1:7070", "127.0.0.1:0")).expect("write");
    let addr = local_addr();
    let mut wire = Watched::spawn(wire_run(&file, dir.path(), &addr));
    wire.wait_for_line("source `readings` listening on ", START);
    let stderr = wire.stderr();
    let ingest = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("source `readings` listening on "))
        .expect("ingest address")
        .to_string();
    let before = samples(&scrape(&addr).expect("scrape"));
    assert_eq!(sum(&before, "wire_wal_append_seconds_count", &[]), 0.0);
    let fed = Command::new(wire_tests::loadgen_bin())
        .arg(&file)
        .args(["--addr", &ingest, "--events", "20000", "--connections", "1"])
        .args(["--rate", "100000", "--json"])
        .output()
        .expect("loadgen runs");
    assert!(
        fed.status.success(),
        "{}",
        String::from_utf8_lossy(&fed.stderr)
    );
    let text = scrape(&addr).expect("scrape");
    let all = samples(&text);
    assert!(
        sum(&all, "wire_wal_append_seconds_count", &[]) > 0.0,
        "{text}"
    );
    assert!(
        sum(&all, "wire_wal_sync_seconds_count", &[]) > 0.0,
        "{text}"
    );
    assert!(sum(&all, "wire_wal_sync_seconds_sum", &[]) > 0.0, "{text}");
    // 20,000 rows of a string, a float and a timestamp: well over 20 bytes each.
    assert!(sum(&all, "wire_wal_bytes_total", &[]) > 400_000.0, "{text}");
    assert_eq!(
        sum(&all, "wire_ingest_connections_accepted_total", &[]),
        1.0
    );
    assert_eq!(
        sum(&all, "wire_ingest_connections_open", &[]),
        0.0,
        "loadgen closed"
    );
    let acks = sum(&all, "wire_ingest_acks_total", &[]);
    assert_eq!(
        acks,
        sum(&all, "wire_wal_append_seconds_count", &[]),
        "{text}"
    );
    assert!(sum(&all, "wire_ingest_credits_granted_total", &[]) >= acks);
    let wal_bytes = sum(&all, "wire_wal_bytes_total", &[]);
    assert_eq!(sum(&all, "wire_ingest_bytes_total", &[]), wal_bytes);
    let inf = [("le", "+Inf")];
    assert_eq!(
        sum(&all, "wire_wal_append_seconds_bucket", &inf),
        sum(&all, "wire_wal_append_seconds_count", &[])
    );
    if let Err(said) = promtool_check(&text) {
        panic!("promtool check metrics refused the scrape: {said}\n{text}");
    }
    wire.kill();
}
