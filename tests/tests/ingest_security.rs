//! Ingest ports under security (issue 19): TLS on `wire run`'s ingest port (plaintext and
//! wrong-CA clients refused, each with an error that says why, `wire-loadgen --ca`), client
//! certificates when required, certificate reload on SIGHUP (ingest and gRPC), and the rate
//! limits and per-peer connection cap. Real processes, real sockets; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use wire_core::{Batch, BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
use wire_net::ingest::{ClientOptions, ClientTls, ErrorCode, IngestClient};
use wire_net::ClientError;
use wire_tests::cluster::{dev_certs as certs, start_cluster_with, wait_for, wirectl_bin};
use wire_tests::process::wait_bounded;
use wire_tests::{loadgen_bin, wire_bin};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(30);

fn schema() -> Schema {
    Schema::new(vec![Field::new("id", DataType::I64)])
}

/// A pipeline with ingest source `rows` on 127.0.0.1 (any port, extra source keys appended)
/// into stdout.
fn pipeline(dir: &Path, source_keys: &str) -> PathBuf {
    let file = dir.join("p.yaml");
    let yaml = format!(
        "name: sec\nsources:\n  rows:\n    type: ingest\n    listen: 127.0.0.1:0\n    \
         schema: {{id: i64}}\n    durability: never\n{source_keys}sinks:\n  out: {{type: stdout, \
         format: jsonl, from: rows}}\n"
    );
    std::fs::write(&file, yaml).unwrap();
    file
}

/// A running `wire run` (one core) and the address its source listens on.
struct Run {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Run {
    fn start(pipeline: &Path, flags: &[&str]) -> Run {
        let data = pipeline.with_extension("data");
        let mut child = Command::new(wire_bin())
            .args([
                "run",
                "--no-progress",
                "--no-pin",
                "--cores",
                "1",
                "--data-dir",
            ])
            .arg(&data)
            .arg(pipeline)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let (pipe, text) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line.trim().strip_prefix("source `rows` listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                text.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let Ok(addr) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            panic!("wire run did not listen: {}", stderr.lock().unwrap());
        };
        Run {
            child,
            addr,
            stderr,
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success());
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, WAIT);
    }
}

/// TLS trusting `ca`, presenting `identity` (certificate, key) if given, for 127.0.0.1.
fn tls(ca: &Path, identity: Option<(&Path, &Path)>) -> ClientTls {
    ClientTls {
        config: wire_net::tls::client_config(ca, identity).unwrap(),
        server_name: wire_net::tls::server_name("127.0.0.1:0").unwrap(),
    }
}

fn connect(addr: &str, tls: Option<ClientTls>) -> Result<IngestClient, ClientError> {
    let options = ClientOptions {
        tls,
        ..ClientOptions::default()
    };
    IngestClient::connect_with(addr, "t", "rows", &schema(), options)
}

fn batch(first: i64, rows: i64) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for id in first..first + rows {
        builder.push(&[ValueRef::I64(id)]).unwrap();
    }
    builder.finish()
}

/// Sends `count` batches of one row and waits for their acks.
fn send_acked(client: &mut IngestClient, count: usize) {
    for i in 0..count {
        client.send(&batch(i as i64, 1)).unwrap();
    }
    assert_eq!(client.wait_acks().unwrap().len(), count);
}

fn tls_error(result: Result<IngestClient, ClientError>) -> String {
    match result {
        Err(ClientError::Tls(message)) => message,
        Err(other) => panic!("expected a TLS error, got {other:?}"),
        Ok(_) => panic!("the connection was accepted"),
    }
}

fn flag_paths(certs: &Path, names: &[(&'static str, &str)]) -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, file) in names {
        flags.push(flag.to_string());
        flags.push(certs.join(file).display().to_string());
    }
    flags
}

/// `wire-loadgen FILE --addr ADDR --events 500 --json` with `extra`: its output.
fn loadgen(pipeline: &Path, addr: &str, extra: &[&str]) -> std::process::Output {
    Command::new(loadgen_bin())
        .arg(pipeline)
        .args([
            "--addr",
            addr,
            "--events",
            "500",
            "--batch-rows",
            "50",
            "--json",
        ])
        .args(["--reconnect", "0s"])
        .args(extra)
        .env_remove("WIRE_CA")
        .output()
        .unwrap()
}

/// `wire run --tls-cert --tls-key` serves its ingest port over TLS: a client trusting the CA
/// produces; a plaintext client is told the port requires TLS; a client trusting another CA
/// fails the handshake saying the certificate is not signed by its CA; `wire-loadgen --ca`
/// produces and without `--ca` fails saying why; a TLS client to a plaintext port is told the
/// server did not answer with TLS.
#[test]
fn ingest_over_tls_refuses_plaintext_and_strangers_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ours = certs(&dir.path().join("ours"));
    let theirs = certs(&dir.path().join("theirs"));
    let file = pipeline(dir.path(), "");
    let flags = flag_paths(
        &ours,
        &[("--tls-cert", "node.pem"), ("--tls-key", "node-key.pem")],
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let run = Run::start(&file, &flags);
    let ca = ours.join("ca.pem");

    let mut client = connect(&run.addr, Some(tls(&ca, None))).unwrap();
    send_acked(&mut client, 20);
    client.close().unwrap();

    match connect(&run.addr, None) {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::ProtocolViolation);
            assert!(message.contains("requires TLS"), "{message}");
        }
        other => panic!("a plaintext client was not refused with an error frame: {other:?}"),
    }
    let wrong = tls_error(connect(&run.addr, Some(tls(&theirs.join("ca.pem"), None))));
    assert!(wrong.contains("not signed by the CA"), "{wrong}");

    let ok = loadgen(&file, &run.addr, &["--ca", ca.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{ok:?}\nthe run said: {}",
        run.stderr()
    );
    let summary: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(summary["rows_acked"], 500, "{summary}");
    let plain = loadgen(&file, &run.addr, &[]);
    assert!(!plain.status.success(), "{plain:?}");
    let said = String::from_utf8_lossy(&plain.stdout) + String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("requires TLS"), "{said}");

    let plain_dir = dir.path().join("plain");
    std::fs::create_dir_all(&plain_dir).unwrap();
    let plain_run = Run::start(&pipeline(&plain_dir, ""), &[]);
    let no_tls = tls_error(connect(&plain_run.addr, Some(tls(&ca, None))));
    assert!(no_tls.contains("did not answer with TLS"), "{no_tls}");
}

/// With `--tls-client-ca --tls-require-client-cert`, a producer without a client certificate
/// fails the handshake and one with a certificate from the CA produces.
#[test]
fn ingest_client_certificates_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let ours = certs(&dir.path().join("ours"));
    let file = pipeline(dir.path(), "");
    let flags = flag_paths(
        &ours,
        &[
            ("--tls-cert", "node.pem"),
            ("--tls-key", "node-key.pem"),
            ("--tls-client-ca", "ca.pem"),
        ],
    );
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.push("--tls-require-client-cert");
    let run = Run::start(&file, &flags);
    let ca = ours.join("ca.pem");
    // TLS 1.3: the client learns of the refusal when it reads the server's first answer.
    let refused = connect(&run.addr, Some(tls(&ca, None)));
    assert!(
        refused.is_err(),
        "a producer without a certificate was accepted"
    );
    let identity = (ours.join("client.pem"), ours.join("client-key.pem"));
    let with_cert = Some(tls(&ca, Some((&identity.0, &identity.1))));
    let mut client = connect(&run.addr, with_cert).unwrap();
    send_acked(&mut client, 3);
    client.close().unwrap();
}

/// Copies `names` from `from` into `to`, replacing what is there.
fn install(from: &Path, to: &Path, names: &[&str]) {
    for name in names {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// `wirectl top --once -o json --metrics ADDR`, trusting `certs`' CA when given and presenting
/// its `client.pem` (role admin) when `identity`.
fn top(addr: &str, certs: Option<&Path>, identity: bool) -> std::process::Output {
    let mut command = wire_tests::cluster::wirectl_top(addr);
    if let Some(certs) = certs {
        command.arg("--ca").arg(certs.join("ca.pem"));
        if identity {
            command.arg("--cert").arg(certs.join("client.pem"));
            command.arg("--key").arg(certs.join("client-key.pem"));
        }
    }
    command.output().unwrap()
}

fn said(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wire run --tls-cert … --tls-client-ca CA --metrics-addr`: the metrics endpoint serves
/// HTTPS only, with the ingest ports' certificate; `/metrics` needs a client certificate from
/// CA carrying a viewer, operator or admin role (`wire run` keeps no tokens), `/healthz` none.
/// `wirectl top` reads it with `--ca --cert --key`, and is refused without the certificate or
/// without `--ca`, saying what to give.
#[test]
fn wire_run_serves_its_metrics_over_https_to_role_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(&dir.path().join("certs"));
    let file = pipeline(dir.path(), "");
    let http = format!("127.0.0.1:{}", wire_tests::cluster::free_port());
    let mut flags = flag_paths(
        &certs,
        &[
            ("--tls-cert", "node.pem"),
            ("--tls-key", "node-key.pem"),
            ("--tls-client-ca", "ca.pem"),
        ],
    );
    flags.extend(["--metrics-addr".to_string(), http.clone()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let run = Run::start(&file, &flags);
    assert!(
        run.stderr()
            .contains(&format!("metrics on https://{http}/metrics")),
        "{}",
        run.stderr()
    );
    let mut producer = connect(&run.addr, Some(tls(&certs.join("ca.pem"), None))).unwrap();
    send_acked(&mut producer, 2);

    let out = top(&http, Some(&certs), true);
    assert!(out.status.success(), "{out:?}");
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["pipelines"][0]["pipeline"], "sec", "{view}");
    let out = top(&http, Some(&certs), false);
    assert!(!out.status.success());
    assert!(said(&out).contains("401"), "{out:?}");
    let out = top(&http, None, false);
    assert!(!out.status.success());
    assert!(said(&out).contains("give --ca"), "{out:?}");
    // Health probes need no credentials; plaintext gets no answer.
    let curl = |url: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(certs.join("ca.pem"))
            .arg(url)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&format!("https://{http}/healthz")), "200");
    assert_eq!(curl(&format!("https://{http}/metrics")), "401");
    assert_eq!(curl(&format!("http://{http}/healthz")), "000");
}

/// A producer dialing a node whose certificate has expired, or names another host, fails the
/// handshake with an error that says which.
#[test]
fn expired_and_misnamed_node_certificates_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = wire_tests::certs::TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let cases = [
        (
            "expired",
            ca.issue_expired(&["127.0.0.1"], 2),
            "the server's certificate has expired",
        ),
        (
            "misnamed",
            ca.issue(&["elsewhere.invalid"], 3),
            "the server's certificate does not name the host dialed",
        ),
    ];
    for (name, issued, want) in cases {
        let case = dir.path().join(name);
        std::fs::create_dir_all(&case).unwrap();
        issued.write(&case, "node.pem", "node-key.pem");
        let flags = flag_paths(
            &case,
            &[("--tls-cert", "node.pem"), ("--tls-key", "node-key.pem")],
        );
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let run = Run::start(&pipeline(&case, ""), &flags);
        let err = tls_error(connect(&run.addr, Some(tls(&ca_file, None))));
        assert!(err.contains(want), "{name}: {err}");
    }
}

/// After the certificate and key files are replaced (by another CA's) and the process gets
/// SIGHUP, new ingest connections see the new certificate: a client trusting the old CA is
/// refused, one trusting the new CA produces; a connection opened before goes on. The metrics
/// endpoint (HTTPS, open without `--tls-client-ca`) serves the new certificate too.
#[test]
fn sighup_reloads_the_ingest_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        certs(&dir.path().join("old")),
        certs(&dir.path().join("new")),
    );
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    install(&old, &live, &["node.pem", "node-key.pem"]);
    let file = pipeline(dir.path(), "");
    let http = format!("127.0.0.1:{}", wire_tests::cluster::free_port());
    let mut flags = flag_paths(
        &live,
        &[("--tls-cert", "node.pem"), ("--tls-key", "node-key.pem")],
    );
    flags.extend(["--metrics-addr".to_string(), http.clone()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let run = Run::start(&file, &flags);
    let mut before = connect(&run.addr, Some(tls(&old.join("ca.pem"), None))).unwrap();
    send_acked(&mut before, 2);
    let out = top(&http, Some(&old), false);
    assert!(out.status.success(), "{out:?}");

    install(&new, &live, &["node.pem", "node-key.pem"]);
    run.signal("-HUP");
    wait_for("the reload", WAIT, || {
        let said = run.stderr();
        said.contains("TLS certificate and key reloaded")
            .then_some(())
            .ok_or(said)
    });
    let stale = tls_error(connect(&run.addr, Some(tls(&old.join("ca.pem"), None))));
    assert!(stale.contains("not signed by the CA"), "{stale}");
    let mut after = connect(&run.addr, Some(tls(&new.join("ca.pem"), None))).unwrap();
    send_acked(&mut after, 2);
    send_acked(&mut before, 2);
    let out = top(&http, Some(&new), false);
    assert!(out.status.success(), "{out:?}");
    let out = top(&http, Some(&old), false);
    assert!(said(&out).contains("not signed by the CA"), "{out:?}");

    // A broken file is reported and changes nothing.
    std::fs::write(live.join("node.pem"), "garbage").unwrap();
    run.signal("-HUP");
    wait_for("the refused reload", WAIT, || {
        let said = run.stderr();
        said.contains("TLS files not reloaded")
            .then_some(())
            .ok_or(said)
    });
    let mut still = connect(&run.addr, Some(tls(&new.join("ca.pem"), None))).unwrap();
    send_acked(&mut still, 1);
}

/// A `wire start` node reloads its gRPC and metrics certificates on SIGHUP: after its files
/// are replaced by another CA's, `wirectl` (and `wirectl top`) trusting the new CA (with the
/// new admin certificate) is served and one trusting the old CA is refused.
#[test]
fn sighup_reloads_the_grpc_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        certs(&dir.path().join("old")),
        certs(&dir.path().join("new")),
    );
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let files = ["node.pem", "node-key.pem", "ca.pem"];
    install(&old, &live, &files);
    let flags = flag_paths(
        &live,
        &[
            ("--tls-cert", "node.pem"),
            ("--tls-key", "node-key.pem"),
            ("--tls-client-ca", "ca.pem"),
        ],
    );
    let http = format!("127.0.0.1:{}", wire_tests::cluster::free_port());
    let flags = [flags, vec!["--metrics-addr".to_string(), http.clone()]].concat();
    let cluster = dir.path().join("cluster");
    std::fs::create_dir_all(&cluster).unwrap();
    let nodes = start_cluster_with(&cluster, 1, &flags);
    let node = &nodes[0];
    let status = |certs: &Path| {
        Command::new(wirectl_bin())
            .args(["--endpoint", &node.addr, "cluster", "status"])
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join("client.pem"))
            .arg("--key")
            .arg(certs.join("client-key.pem"))
            .env_remove("WIRE_TOKEN")
            .output()
            .unwrap()
    };
    wait_for("wirectl with the old certificates", WAIT, || {
        let out = status(&old);
        out.status.success().then_some(()).ok_or(format!("{out:?}"))
    });
    install(&new, &live, &files);
    node.signal("-HUP");
    let deadline = Instant::now() + WAIT;
    while !status(&new).status.success() {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served: {:?}",
            status(&new)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stale = status(&old);
    assert!(!stale.status.success(), "{stale:?}");
    let out = top(&http, Some(&new), true);
    assert!(out.status.success(), "{out:?}");
    let out = top(&http, Some(&old), true);
    assert!(said(&out).contains("not signed by the CA"), "{out:?}");
}

/// With `max_batches_per_sec: 20`, a producer that floods (as fast as its credits allow,
/// reconnecting at once whenever it is refused) gets a retryable `Overloaded` error naming
/// the limit, has at most a second's burst plus the rate appended, and does not slow a
/// producer that keeps within the limit: every one of its acks arrives within
/// `ACK_BOUND`. A third connection from the same address over `max_connections_per_peer: 2`
/// is refused with `Overloaded` naming that limit.
#[test]
fn a_flooding_producer_is_limited_and_does_not_slow_another() {
    /// The stated bound on the polite producer's ack latency while the flood goes on (its
    /// acks take milliseconds on an idle machine; this leaves room for a loaded CI box).
    const ACK_BOUND: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let keys = "    max_batches_per_sec: 20\n    max_connections_per_peer: 2\n";
    let file = pipeline(dir.path(), keys);
    let run = Run::start(&file, &[]);
    let addr = run.addr.clone();

    let flood_addr = addr.clone();
    // Per connection: (batches acked, how long it lived).
    let flood = std::thread::spawn(move || {
        let started = Instant::now();
        let (mut connections, mut last) = (Vec::new(), None);
        while started.elapsed() < Duration::from_secs(3) {
            let Ok(mut client) = connect(&flood_addr, None) else {
                continue;
            };
            let (opened, mut acked) = (Instant::now(), 0usize);
            loop {
                let sent = client.send(&batch(0, 100));
                match sent.and_then(|_| client.poll_acks()) {
                    Ok(acks) => acked += acks.len(),
                    Err(err) => {
                        last = Some(err);
                        break;
                    }
                }
            }
            connections.push((acked, opened.elapsed()));
        }
        (connections, last)
    });
    let mut polite = connect(&addr, None).unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let sent = Instant::now();
        polite.send(&batch(i, 1)).unwrap();
        assert_eq!(polite.wait_acks().unwrap().len(), 1);
        slowest = slowest.max(sent.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (connections, last) = flood.join().unwrap();
    assert!(
        slowest < ACK_BOUND,
        "the polite producer waited {slowest:?} for an ack"
    );
    assert!(!connections.is_empty(), "the flood was never refused");
    match last {
        Some(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Overloaded);
            assert!(message.contains("max_batches_per_sec"), "{message}");
        }
        other => panic!("expected an Overloaded error frame, got {other:?}"),
    }
    // Each connection has its own bucket: a burst of 20, then 20 a second.
    for &(acked, lived) in &connections {
        let allowed = 20 + (lived.as_secs_f64() * 20.0).ceil() as usize;
        assert!(acked <= allowed, "{acked} batches acked in {lived:?}");
    }

    // The flood's last connection is released once the node has closed it.
    let _second = wait_for("a second connection", WAIT, || {
        connect(&addr, None).map_err(|err| err.to_string())
    });
    match connect(&addr, None) {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Overloaded);
            assert!(message.contains("max_connections_per_peer"), "{message}");
        }
        other => panic!("a third connection from one address: {other:?}"),
    }
    polite.close().unwrap();
}
