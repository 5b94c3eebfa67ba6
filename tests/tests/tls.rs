//! TLS between `wire start` nodes and for `wirectl`, with certificates from `wire certs init`:
//! real processes, real handshakes on 127.0.0.1. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use wire_tests::cluster::{start_cluster_with, wait_for, wirectl, WireNode};
use wire_tests::wire_bin;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long an election may take on a busy machine (TLS handshakes included).
const ELECTION: Duration = Duration::from_secs(20);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `wire certs init --dir DIR`, which must succeed.
fn certs(dir: &Path) -> PathBuf {
    let out = std::process::Command::new(wire_bin())
        .args(["certs", "init", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.to_path_buf()
}

/// `wire start` flags for TLS with the certificates in `certs`.
fn node_flags(certs: &Path, require_client_cert: bool) -> Vec<String> {
    let file = |name: &str| certs.join(name).display().to_string();
    let mut flags = vec![
        "--tls-cert".to_string(),
        file("node.pem"),
        "--tls-key".into(),
        file("node-key.pem"),
        "--tls-client-ca".into(),
        file("ca.pem"),
    ];
    if require_client_cert {
        flags.push("--tls-require-client-cert".into());
    }
    flags
}

/// `wirectl --ca … --cert … --key … ARGS` with the certificates in `certs`.
fn ctl(endpoint: &str, certs: &Path, args: &[&str]) -> Output {
    let file = |name: &str| certs.join(name).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client-key.pem"));
    let mut all = vec!["--ca", &ca, "--cert", &cert, "--key", &key];
    all.extend_from_slice(args);
    wirectl(endpoint, &all)
}

fn ctl_json(endpoint: &str, certs: &Path, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = ctl(endpoint, certs, &all);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|err| err.to_string())
}

/// Waits until every node names the same leader (over TLS); returns its id.
fn tls_leader(nodes: &[WireNode], certs: &Path) -> u64 {
    wait_for("one leader every node agrees on", ELECTION, || {
        let mut leaders = Vec::new();
        for node in nodes {
            let status = ctl_json(&node.addr, certs, &["cluster", "status"])?;
            leaders.push(status["leader_id"].as_u64().unwrap_or(0));
        }
        match leaders.first() {
            Some(&leader) if leader != 0 && leaders.iter().all(|l| *l == leader) => Ok(leader),
            _ => Err(format!("leaders seen: {leaders:?}")),
        }
    })
}

fn fails_saying(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

fn spec(dir: &Path) -> PathBuf {
    let path = dir.join("x.yaml");
    std::fs::write(
        &path,
        "name: x\nsources:\n  rows:\n    type: ingest\n    listen: 127.0.0.1:0\n    \
         schema: {id: i64}\nsinks:\n  out: {type: stdout, format: jsonl, from: rows}\n",
    )
    .unwrap();
    path
}

/// Three nodes elect a leader over mutual TLS; `wirectl` with the CA and a client certificate
/// manages them (a write sent to a follower is forwarded over TLS). Plaintext, a client with
/// no certificate, a client trusting another CA and a node with another CA's certificate are
/// all refused, each with an error that says so.
#[test]
fn a_tls_cluster_serves_its_own_and_refuses_strangers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ours = certs(&dir.path().join("certs"));
    let theirs = certs(&dir.path().join("other-certs"));
    let nodes = start_cluster_with(dir.path(), 3, &node_flags(&ours, true));
    let leader = tls_leader(&nodes, &ours);
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    let file = spec(dir.path()).display().to_string();
    let created = ctl(&follower.addr, &ours, &["pipeline", "create", "-f", &file]);
    assert!(created.status.success(), "{created:?}");
    let listed = ctl_json(&nodes[0].addr, &ours, &["pipeline", "list"]).unwrap();
    assert!(listed.to_string().contains("\"x\""), "{listed}");

    let plaintext = wirectl(&follower.addr, &["cluster", "status"]);
    fails_saying(&plaintext, "if the node serves TLS, give --ca");
    let ca = ours.join("ca.pem").display().to_string();
    let no_cert = wirectl(&follower.addr, &["--ca", &ca, "cluster", "status"]);
    fails_saying(&no_cert, "also --cert and --key");
    let wrong_ca = ctl(&follower.addr, &theirs, &["cluster", "status"]);
    fails_saying(&wrong_ca, "certificate");

    let endpoint = nodes[0].addr.clone();
    let mut stranger = WireNode::new(dir.path(), 4, &node_flags(&theirs, true));
    stranger.args.extend(["--join".to_string(), endpoint]);
    let out = std::process::Command::new(wire_bin())
        .args(["start", "--node-id", "4", "--listen", &stranger.addr])
        .arg("--data-dir")
        .arg(&stranger.data_dir)
        .args(&stranger.args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot join the cluster"), "{stderr}");
    let members = ctl_json(&nodes[0].addr, &ours, &["cluster", "status"]).unwrap();
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(3),
        "{members}"
    );
}

/// The RaftService serves members only: a caller with a certificate from the cluster CA that
/// does not name a member's host (the admin client certificate) is refused PERMISSION_DENIED,
/// and nothing it sent reaches raft.
#[test]
fn raft_calls_from_a_non_member_certificate_are_refused() {
    use wire_control::proto::raft::raft_service_client::RaftServiceClient;
    use wire_control::proto::raft::RaftBatch;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ours = certs(&dir.path().join("certs"));
    let nodes = start_cluster_with(dir.path(), 1, &node_flags(&ours, false));
    tls_leader(&nodes, &ours);
    let addr = nodes[0].addr.clone();
    let before = ctl_json(&addr, &ours, &["cluster", "status"]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let identity = Some((ours.join("client.pem"), ours.join("client-key.pem")));
        let tls = wire_control::tls::client_config(
            &ours.join("ca.pem"),
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .unwrap()
        .domain_name("127.0.0.1");
        let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        // A heartbeat of a far later term: if raft took it, the leader would step down.
        let mut heartbeat = raft::eraftpb::Message::default();
        heartbeat.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        heartbeat.from = 2;
        heartbeat.to = 1;
        heartbeat.term = 1000;
        let batch = RaftBatch {
            from: 2,
            to: 1,
            from_address: "127.0.0.1:1".into(),
            messages: vec![protobuf::Message::write_to_bytes(&heartbeat).unwrap()],
        };
        RaftServiceClient::new(channel)
            .send(batch)
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let after = ctl_json(&addr, &ours, &["cluster", "status"]).unwrap();
    assert_eq!(before["term"], after["term"]);
    assert_eq!(before["members"], after["members"]);
}

/// Without TLS a node listens on loopback only, unless told `--insecure`.
#[test]
fn an_open_address_without_tls_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let open = format!("0.0.0.0:{}", wire_tests::cluster::free_port());
    let out = std::process::Command::new(wire_bin())
        .args(["start", "--node-id", "1", "--listen", &open])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{open} is not a loopback address"))
            && stderr.contains("--insecure"),
        "{stderr}"
    );
}
