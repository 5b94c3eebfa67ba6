//! One pipeline spread over the cores of three real `wire start` nodes on 127.0.0.1: rows
//! cross nodes over the exchange, and the output equals `wire run`'s on one node.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wire_tests::certs::{Issued, TestCa};
use wire_tests::cluster::{
    create, start_cluster, wait_for_leader, wait_state, wait_until_heard, wirectl_json, WireNode,
};
use wire_tests::wire_bin;

const ELECTION: Duration = Duration::from_secs(15);

/// Nexmark q5 (hopping-window bid counts per auction, the hottest per window) into a file
/// sink at `out`.
fn q5_spec(dir: &Path, out: &Path) -> PathBuf {
    q5_spec_with(dir, out, "events: 300000")
}

/// [`q5_spec`] with `bids` taking `keys` (`events: N, rate: R`).
fn q5_spec_with(dir: &Path, out: &Path, keys: &str) -> PathBuf {
    let path = dir.join("q5.yaml");
    let sink = format!("type: file, path: {}, format: jsonl", out.display());
    let yaml = wire_tests::nexmark::q5_yaml(&format!("{keys}, seed: 5"), &sink);
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// The rows `wire run` on one core writes for the pipeline `spec(dir, out)` makes, sorted
/// (run in `dir/reference`).
fn reference_rows(dir: &Path, spec: fn(&Path, &Path) -> PathBuf) -> Vec<String> {
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).expect("reference dir");
    let spec = spec(&reference, &reference.join("out"));
    let ran = std::process::Command::new(wire_bin())
        .args(["run", "--no-progress", "--no-pin", "--cores", "1"])
        .arg("--data-dir")
        .arg(reference.join("data"))
        .arg(&spec)
        .output()
        .expect("wire run");
    assert!(ran.status.success(), "{ran:?}");
    wire_tests::sorted_json_rows(&reference.join("out"))
}

fn endpoint(nodes: &[WireNode]) -> String {
    let leader = wait_for_leader(nodes, ELECTION);
    let node = nodes.iter().find(|n| n.id == leader).expect("leader");
    node.addr.clone()
}

#[test]
fn a_keyed_pipeline_spread_over_three_nodes_gives_the_rows_of_one() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let nodes = start_cluster(dir.path(), 3);
    let endpoint = endpoint(&nodes);
    let out = dir.path().join("out");
    create(&endpoint, &q5_spec(dir.path(), &out), &[]);
    wait_state(&endpoint, "q5", "finished");

    // One slot per core of every node, dealt round-robin: every node runs some.
    let got = wirectl_json(&endpoint, &["pipeline", "get", "q5"]);
    let assignment = got["assignment"].as_array().expect("assignment");
    assert!(assignment.len() >= 3, "{got}");
    for node in &nodes {
        let runs = assignment
            .iter()
            .any(|a| a["node"].as_u64() == Some(node.id));
        assert!(runs, "node {} runs no slot: {got}", node.id);
        assert!(
            out.join(format!("node-{}", node.id)).is_dir(),
            "node {} wrote nothing",
            node.id
        );
    }

    let expected = reference_rows(dir.path(), q5_spec);
    assert!(expected.len() > 10, "{} rows", expected.len());
    let rows = wire_tests::sorted_json_rows(&out);
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows == expected,
        "the spread run's rows differ from wire run's"
    );

    // Deleted and created again under the same name (at version 1 again), it runs again on
    // every node: the nodes that ran the first one do not take it for the run that ended.
    wirectl_json(&endpoint, &["pipeline", "delete", "q5"]);
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).expect("again dir");
    let out = dir.path().join("out-again");
    create(&endpoint, &q5_spec(&again, &out), &[]);
    wait_state(&endpoint, "q5", "finished");
    let rows = wire_tests::sorted_json_rows(&out);
    assert!(
        rows == expected,
        "the second run's rows differ from wire run's"
    );
}

/// Nexmark bids at a bounded rate (about 60 s of them), counted per auction, into `out`.
fn long_spec(dir: &Path, out: &Path) -> PathBuf {
    let path = dir.join("long.yaml");
    let yaml = format!(
        "name: long
sources:
  bids: {{type: nexmark, stream: bid, events: 3000000, rate: 50000}}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {{type: tumbling, size: 1s}}
    aggregate:
      num: count(*)
sinks:
  out: {{type: file, path: {}, format: jsonl, from: per_auction}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

#[test]
fn a_node_killed_under_a_spread_pipeline_fails_it_and_the_others_carry_on() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut nodes = start_cluster(dir.path(), 3);
    let first = endpoint(&nodes);
    create(&first, &long_spec(dir.path(), &dir.path().join("out")), &[]);
    wait_state(&first, "long", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "long"]);
    let primary = got["assignment"][0]["node"].as_u64().expect("placed");
    // Kill a node that runs slots but is not the primary (nor, if possible, the leader, so
    // the endpoint keeps answering).
    let leader_addr = first.clone();
    let victim = nodes
        .iter_mut()
        .filter(|n| n.id != primary)
        .min_by_key(|n| n.addr == leader_addr)
        .expect("a secondary");
    let victim_id = victim.id;
    victim.kill();
    let survivor = endpoint_among(&nodes, victim_id);
    wait_state(&survivor, "long", "failed");
    let got = wirectl_json(&survivor, &["pipeline", "get", "long"]);
    let failure = got["failure"].as_str().unwrap_or_default();
    // Whichever comes first: a survivor's exchange with the dead node failed, or the leader
    // found the node silent.
    assert!(
        failure.contains("exchange") || failure.contains("stopped answering"),
        "the failure names the exchange or the dead node: {got}"
    );
    // The survivors serve on, and the node that comes back does not run it again.
    for node in nodes.iter().filter(|n| n.id != victim_id) {
        let status = wire_tests::cluster::cluster_status(&node.addr);
        assert!(status.is_ok(), "node {} still serves: {status:?}", node.id);
    }
    let victim = nodes
        .iter_mut()
        .find(|n| n.id == victim_id)
        .expect("victim");
    victim.start();
    // Once it is back in the group (it has applied the metadata), it has had its chance.
    let all = endpoint(&nodes);
    let got = wirectl_json(&all, &["pipeline", "get", "long"]);
    assert_eq!(got["state"], "failed", "{got}");
}

/// An endpoint of a live node other than `skip`, once a leader is known among them.
fn endpoint_among(nodes: &[WireNode], skip: u64) -> String {
    let leader = wire_tests::cluster::wait_for_leader_among(nodes, Some(skip), ELECTION);
    let node = nodes.iter().find(|n| n.id == leader).expect("leader");
    node.addr.clone()
}

/// Nexmark bids at a bounded rate (about 8 s of them), counted per auction and 1 s window,
/// into `out`: the same rows whatever the cores, restarts and restores.
fn steady_spec(dir: &Path, out: &Path) -> PathBuf {
    steady_spec_of(dir, out, 400_000)
}

/// `steady` over `events` bids (at 50,000 a second).
fn steady_spec_of(dir: &Path, out: &Path, events: u64) -> PathBuf {
    let path = dir.join("steady.yaml");
    let yaml = format!(
        "name: steady
sources:
  bids: {{type: nexmark, stream: bid, events: {events}, rate: 50000, seed: 7}}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {{type: tumbling, size: 1s}}
    aggregate:
      num: count(*)
      top: max(price)
sinks:
  out: {{type: file, path: {}, format: jsonl, from: per_auction}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// A bounded pipeline `name` that ends at once (it only takes a place on a node).
fn filler_spec(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "name: {name}\nsources:\n  e: {{type: nexmark, stream: bid, events: 10}}\nsinks:\n  out: {{type: blackhole, from: e}}\n"
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// The seed of the kill points (`WIRE_TEST_SEED`, else fixed): printed, so a failing run can
/// be repeated.
fn kill_seed() -> u64 {
    let seed = std::env::var("WIRE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    eprintln!("kill points from WIRE_TEST_SEED={seed}");
    seed
}

#[test]
fn a_checkpointed_spread_pipeline_whose_node_is_killed_is_restored_on_the_survivors_exactly_once() {
    killed_under_a_spread_pipeline(false);
}

#[test]
fn a_checkpointed_spread_pipeline_survives_the_leader_being_killed() {
    killed_under_a_spread_pipeline(true);
}

/// Runs `steady` with 300 ms checkpoints spread over a 3-node cluster sharing a checkpoint
/// store, SIGKILLs the leader or (`leader` false) another node after a seeded number of
/// complete checkpoints, and checks the survivors finish it with `wire run`'s rows: the
/// dead node's slots are dealt over the survivors, every slot restores from the last
/// checkpoint every node completed its part of, and no row is lost or written twice.
fn killed_under_a_spread_pipeline(leader: bool) {
    let seed = kill_seed() + u64::from(leader);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (mut nodes, first, led) = cluster_with_store(dir.path());
    let out = dir.path().join("out");
    let victim_id = match (leader, led) {
        (true, l) => l,
        (false, 1) => 2,
        (false, _) => 1,
    };
    let run = Run {
        endpoint: &first,
        out: &out,
        on_demand: !leader,
        checkpoints: 1 + seed % 4,
    };
    let survivor = fault_mid_run(&mut nodes, run, victim_id, Fault::Kill);
    let got = wirectl_json(&survivor, &["pipeline", "get", "steady"]);
    let now = assignment_nodes(&got);
    assert!(!now.contains(&victim_id), "moved off the dead node: {got}");
    assert_eq!(now.len(), 2, "dealt over both survivors: {got}");
    assert!(got["version"].as_u64() > Some(1), "a new epoch: {got}");

    assert_rows_once(dir.path(), steady_spec, &out);
    // The node that comes back does not run it again.
    let victim = nodes
        .iter_mut()
        .find(|n| n.id == victim_id)
        .expect("victim");
    victim.start();
    let all = endpoint(&nodes);
    let got = wirectl_json(&all, &["pipeline", "get", "steady"]);
    assert_eq!(got["state"], "finished", "{got}");
}

/// How a node fails under a running pipeline.
enum Fault {
    /// SIGKILL: it is gone.
    Kill,
    /// SIGSTOP: it keeps its sockets and its running part, but falls silent.
    Freeze,
}

/// The run of `steady` that a fault interrupts.
struct Run<'a> {
    /// Where to create it.
    endpoint: &'a str,
    /// Its file sink's directory.
    out: &'a Path,
    /// Whether to take a checkpoint in parts on demand first.
    on_demand: bool,
    /// How many complete checkpoints to wait for before the fault.
    checkpoints: u64,
}

/// Runs `steady` with 300 ms checkpoints spread over the three `nodes` (one slot each), hits
/// node `victim` with `fault` after `run.checkpoints` complete checkpoints, and waits until
/// the survivors finish it; returns a survivor's endpoint.
fn fault_mid_run(nodes: &mut [WireNode], run: Run<'_>, victim: u64, fault: Fault) -> String {
    let spec = steady_spec(run.out.parent().expect("out has a parent"), run.out);
    create(run.endpoint, &spec, &["--checkpoint-interval", "300ms"]);
    wait_state(run.endpoint, "steady", "running");
    let got = wirectl_json(run.endpoint, &["pipeline", "get", "steady"]);
    assert_eq!(
        assignment_nodes(&got),
        [1, 2, 3],
        "spread over every node: {got}"
    );
    if run.on_demand {
        checkpoint_in_parts_on_demand(run.endpoint);
    }
    wait_for_checkpoints(run.endpoint, run.checkpoints);
    let node = nodes.iter_mut().find(|n| n.id == victim).expect("victim");
    match fault {
        Fault::Kill => node.kill(),
        Fault::Freeze => node.freeze(),
    }
    let survivor = endpoint_among(nodes, victim);
    wait_state(&survivor, "steady", "finished");
    survivor
}

/// A checkpoint of the running, spread `steady` on demand: every node writes its part, and
/// the answer is the checkpoint the metadata records complete, with its three parts.
fn checkpoint_in_parts_on_demand(endpoint: &str) {
    // Recorded running by its primary, a part on another node may still be starting.
    let taken = wire_tests::cluster::wait_for("an on-demand checkpoint", ELECTION, || {
        let out = wire_tests::cluster::wirectl(
            endpoint,
            &["-o", "json", "checkpoint", "trigger", "steady"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.success() {
            true => serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map_err(|err| err.to_string()),
            false if stderr.contains("retry") => Err(stderr.into_owned()),
            false => panic!("checkpoint trigger failed: {stderr}"),
        }
    });
    let id = taken["checkpoint_id"].as_u64().expect("checkpoint_id");
    let parts: Vec<&str> = taken["path"].as_str().expect("path").lines().collect();
    assert_eq!(parts.len(), 3, "a part per node: {taken}");
    for node in 1..=3 {
        let store = format!("-n{node}/");
        let of_node = |p: &&str| p.contains("part-v") && p.contains(&store);
        assert!(parts.iter().any(of_node), "node {node}'s part: {taken}");
    }
    let listed = wirectl_json(endpoint, &["checkpoint", "list", "steady"]);
    let ids: Vec<u64> = listed["checkpoints"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    assert!(ids.contains(&id), "{id} not in {listed}");
    let savepoint = wire_tests::cluster::wirectl(
        endpoint,
        &["savepoint", "create", "steady", "--dir", "/tmp/never"],
    );
    let stderr = String::from_utf8_lossy(&savepoint.stderr);
    assert!(!savepoint.status.success(), "{stderr}");
    assert!(stderr.contains("checkpoints in parts"), "{stderr}");
}

/// Checks that the rows under `out` are `wire run`'s rows of `spec` (run in `dir`), each once.
fn assert_rows_once(dir: &Path, spec: fn(&Path, &Path) -> PathBuf, out: &Path) {
    let expected = reference_rows(dir, spec);
    assert!(expected.len() > 100, "{} rows", expected.len());
    let rows = wire_tests::sorted_json_rows(out);
    let missing = expected.iter().filter(|r| !rows.contains(r)).count();
    assert_eq!(
        (rows.len(), missing),
        (expected.len(), 0),
        "every row once, none lost; the files of rows written twice: {}",
        files_of_repeated_rows(out, &rows)
    );
    assert!(rows == expected, "the rows differ from `wire run`'s");
}

/// Where the rows that `rows` (sorted) holds more than once are, for a failure message: each
/// part file under `out` with its number of such rows.
fn files_of_repeated_rows(out: &Path, rows: &[String]) -> String {
    let twice: std::collections::HashSet<&String> = rows
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    let mut found = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let row = |line: &str| serde_json::from_str::<serde_json::Value>(line).ok();
            let n = text
                .lines()
                .filter_map(row)
                .filter(|r| twice.contains(&r.to_string()))
                .count();
            if n > 0 {
                found.push(format!("{} ({n})", path.display()));
            }
        }
    }
    found.sort();
    found.join(", ")
}

/// Waits until `steady` has `after` complete checkpoints.
fn wait_for_checkpoints(endpoint: &str, after: u64) {
    wire_tests::cluster::wait_for("checkpoints of `steady`", Duration::from_secs(30), || {
        let listed = wirectl_json(endpoint, &["checkpoint", "list", "steady"]);
        match listed["checkpoints"].as_array().map_or(0, Vec::len) as u64 {
            n if n >= after => Ok(()),
            _ => Err(listed.to_string()),
        }
    });
}

/// Three nodes that write checkpoints to one store in `dir` (so any can restore them); an
/// endpoint and the leader.
fn cluster_with_store(dir: &Path) -> (Vec<WireNode>, String, u64) {
    let store = format!("file://{}", dir.join("store").display());
    let extra = ["--checkpoint-store".to_string(), store];
    let nodes = wire_tests::cluster::start_cluster_with(dir, 3, &extra);
    let first = endpoint(&nodes);
    let leader = wait_for_leader(&nodes, ELECTION);
    wait_until_heard(&nodes, leader);
    (nodes, first, leader)
}

/// The distinct nodes of a `pipeline get` answer's assignment, sorted.
fn assignment_nodes(got: &serde_json::Value) -> Vec<u64> {
    let mut nodes: Vec<u64> = got["assignment"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["node"].as_u64())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

#[test]
fn a_checkpointed_pipeline_on_the_leader_is_restored_whole_when_the_leader_is_killed() {
    let seed = kill_seed() + 2;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (mut nodes, first, leader) = cluster_with_store(dir.path());
    // The leader places a pipeline on the node running the fewest (the lowest id among
    // equals): pipelines that end at once fill the nodes before the one wanted. One core
    // (one slot) keeps a pipeline whole on one node: the fillers too, or each would be
    // spread with its first slot on node 1.
    for filler in 1..leader {
        let name = format!("filler{filler}");
        create(&first, &filler_spec(dir.path(), &name), &["--cores", "1"]);
        wait_state(&first, &name, "finished");
    }
    let out = dir.path().join("out");
    create(
        &first,
        &steady_spec(dir.path(), &out),
        &["--checkpoint-interval", "300ms", "--cores", "1"],
    );
    wait_state(&first, "steady", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "steady"]);
    assert_eq!(
        assignment_nodes(&got),
        [leader],
        "whole on the leader: {got}"
    );
    // Mid-run, after a seeded number of recorded checkpoints: SIGKILL the node that runs it.
    wait_for_checkpoints(&first, 1 + seed % 4);
    let victim = nodes.iter_mut().find(|n| n.id == leader).expect("host");
    victim.kill();
    let survivor = endpoint_among(&nodes, leader);
    wait_state(&survivor, "steady", "finished");
    let got = wirectl_json(&survivor, &["pipeline", "get", "steady"]);
    let now = assignment_nodes(&got);
    assert!(
        now.len() == 1 && now[0] != leader,
        "moved whole off the dead node: {got}"
    );
    assert!(got["version"].as_u64() > Some(1), "a new epoch: {got}");
    let expected = reference_rows(dir.path(), steady_spec);
    let rows = wire_tests::sorted_json_rows(&out);
    assert_eq!(rows.len(), expected.len(), "every row once");
    assert!(rows == expected, "the restored run's rows differ");
}

#[test]
fn an_ingest_pipeline_waits_for_its_dead_node_and_says_so() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = format!("file://{}", dir.path().join("store").display());
    let extra = ["--checkpoint-store".to_string(), store];
    let mut nodes = wire_tests::cluster::start_cluster_with(dir.path(), 3, &extra);
    let leader = wait_for_leader(&nodes, ELECTION);
    let first = endpoint(&nodes);
    // Placed on the lowest id: node 1, or node 2 when node 1 leads (so the leader survives).
    // One core (one slot) keeps each whole on one node (with more, an ingest pipeline is
    // spread too, every node serving its slots).
    if leader == 1 {
        create(
            &first,
            &filler_spec(dir.path(), "filler1"),
            &["--cores", "1"],
        );
        wait_state(&first, "filler1", "finished");
    }
    let port = wire_tests::cluster::free_port();
    let spec = dir.path().join("rows.yaml");
    let yaml = format!(
        "name: rows\nsources:\n  rows: {{type: ingest, listen: '127.0.0.1:{port}', schema: {{id: i64}}}}\nsinks:\n  out: {{type: blackhole, from: rows}}\n"
    );
    std::fs::write(&spec, yaml).expect("spec file");
    create(
        &first,
        &spec,
        &["--checkpoint-interval", "300ms", "--cores", "1"],
    );
    wait_state(&first, "rows", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
    let host = got["assignment"][0]["node"].as_u64().expect("placed");
    assert_ne!(host, leader, "{got}");
    assert_eq!(got["waiting"], "", "{got}");
    let victim = nodes.iter_mut().find(|n| n.id == host).expect("host");
    victim.kill();
    // Its acknowledged input is in the dead node's WALs: it is not moved, and says why.
    wire_tests::cluster::wait_for(
        "the pipeline to say it waits",
        Duration::from_secs(30),
        || {
            let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
            let waiting = got["waiting"].as_str().unwrap_or_default().to_string();
            match waiting.contains(&format!("node {host} is down")) {
                true => Ok(got),
                false => Err(got.to_string()),
            }
        },
    );
    let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
    assert_eq!(got["assignment"][0]["node"].as_u64(), Some(host), "{got}");
    assert_eq!(got["state"], "running", "{got}");
    let victim = nodes.iter_mut().find(|n| n.id == host).expect("host");
    victim.start();
    wire_tests::cluster::wait_for("the node back", Duration::from_secs(30), || {
        let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
        match got["waiting"].as_str() {
            Some("") => Ok(()),
            _ => Err(got.to_string()),
        }
    });
}

/// `wirectl -o json ARGS…` over TLS with the CA and admin certificate in `certs`, or why not.
fn tls_ctl(endpoint: &str, certs: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let file = |name: &str| certs.join(name).display().to_string();
    let out = std::process::Command::new(wire_tests::cluster::wirectl_bin())
        .args(["--endpoint", endpoint, "-o", "json"])
        .args(["--ca", &file("ca.pem"), "--cert", &file("client.pem")])
        .args(["--key", &file("client-key.pem")])
        .args(args)
        .env_remove("WIRE_ENDPOINT")
        .env_remove("WIRE_TOKEN")
        .output()
        .expect("wirectl runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|err| err.to_string())
}

/// A plaintext exchange Hello for a stream of pipeline `q5`.
fn plaintext_hello() -> Vec<u8> {
    use wire_net::exchange::{encode, Frame, StreamKey, VERSION};
    let stream = StreamKey {
        pipeline: "q5".to_string(),
        epoch: 1,
        task: 0,
        edge: 0,
        from: 1,
        to: 0,
    };
    let mut bytes = Vec::new();
    encode(
        &Frame::Hello::<&[u8]> {
            version: VERSION,
            stream,
        },
        &mut bytes,
    );
    bytes
}

/// With TLS on, the exchange runs over mutual TLS: a plaintext producer and one whose
/// certificate is from another CA are refused (each told why, and the hub logs it and keeps
/// serving), and a q5 spread over three TLS nodes still gives `wire run`'s rows.
#[test]
fn the_exchange_of_a_tls_cluster_is_mutual_tls_and_refuses_strangers() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let ours = wire_tests::cluster::dev_certs(&dir.path().join("certs"));
    let theirs = wire_tests::cluster::dev_certs(&dir.path().join("other-certs"));
    let file = |certs: &Path, name: &str| certs.join(name).display().to_string();
    let flags: Vec<String> = [
        "--tls-cert",
        &file(&ours, "node.pem"),
        "--tls-key",
        &file(&ours, "node-key.pem"),
        "--tls-client-ca",
        &file(&ours, "ca.pem"),
    ]
    .map(str::to_string)
    .to_vec();
    let nodes = wire_tests::cluster::start_cluster_with(dir.path(), 3, &flags);
    let endpoint = nodes[0].addr.clone();
    wire_tests::cluster::wait_for("a leader over TLS", ELECTION, || {
        let status = tls_ctl(&endpoint, &ours, &["cluster", "status"])?;
        match status["leader_id"].as_u64() {
            Some(id) if id != 0 => Ok(()),
            _ => Err(format!("{status}")),
        }
    });
    let exchange = wire_control::spread::exchange_addr(&nodes[1].addr).expect("exchange address");

    // Plaintext: told in plaintext that the exchange requires mutual TLS.
    let mut plain = std::net::TcpStream::connect(exchange).expect("connects");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain.write_all(&plaintext_hello()).expect("writes");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    let refusal = wire_net::exchange::decode(&answer).expect("a frame");
    let Some((wire_net::exchange::Frame::Refuse(why), _)) = refusal else {
        panic!("expected a refusal, got {refusal:?}");
    };
    assert!(why.contains("requires mutual TLS"), "{why}");

    // Another cluster's node certificate (trusting ours, so only the hub can refuse it).
    let config = wire_net::tls::client_config(
        &ours.join("ca.pem"),
        Some((&theirs.join("node.pem"), &theirs.join("node-key.pem"))),
    )
    .expect("client config");
    let name = wire_net::tls::server_name(&exchange.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let tcp = std::net::TcpStream::connect(exchange).expect("connects");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let wrote = tls.write_all(&plaintext_hello()).and_then(|()| tls.flush());
    let mut answer = Vec::new();
    let read = wrote.and_then(|()| tls.read_to_end(&mut answer));
    let err = read.expect_err("the hub refuses a certificate from another CA");
    // Both development CAs have the same name: the hub finds ours by name, and its
    // signature does not verify the stranger's certificate.
    assert!(err.to_string().contains("received fatal alert"), "{err}");
    assert!(answer.is_empty(), "the hub answered a stranger: {answer:?}");
    wire_tests::cluster::wait_for("the hub logs both refusals", ELECTION, || {
        let log = nodes[1].log_text();
        let refused = log.matches("exchange: refused a connection").count();
        if refused >= 2 && log.contains("not signed by this node's cluster CA") {
            Ok(())
        } else {
            Err(format!("{refused} refusals logged"))
        }
    });

    // The hubs keep serving: a spread pipeline's rows cross nodes over mutual TLS.
    let out = dir.path().join("out");
    let spec = q5_spec(dir.path(), &out);
    let spec = spec.to_str().expect("utf-8 path");
    tls_ctl(&endpoint, &ours, &["pipeline", "create", "-f", spec]).expect("created");
    wire_tests::cluster::wait_for("q5 finished", wire_tests::cluster::PIPELINE_WAIT, || {
        let got = tls_ctl(&endpoint, &ours, &["pipeline", "get", "q5"])?;
        match got["state"].as_str() {
            Some("finished") => Ok(got),
            _ => Err(format!("{got}")),
        }
    });
    for node in &nodes {
        assert!(
            out.join(format!("node-{}", node.id)).is_dir(),
            "node {} wrote nothing",
            node.id
        );
    }
    let expected = reference_rows(dir.path(), q5_spec);
    let rows = wire_tests::sorted_json_rows(&out);
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows == expected,
        "the spread run's rows differ from wire run's"
    );
}

/// The end-entity certificate a new TLS connection to `addr` is served, dialing with the CA
/// in `certs` trusted and the client certificate in `certs` presented.
fn served_certificate(addr: &str, certs: &Path) -> Result<Vec<u8>, String> {
    let identity = (certs.join("client.pem"), certs.join("client-key.pem"));
    let config =
        wire_net::tls::client_config(&certs.join("ca.pem"), Some((&identity.0, &identity.1)))
            .map_err(|err| err.to_string())?;
    let name = wire_net::tls::server_name(addr)?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|err| err.to_string())?;
    let mut tcp = std::net::TcpStream::connect(addr).map_err(|err| format!("{addr}: {err}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| tcp.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|err| err.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|err| format!("{addr}: handshake: {err}"))?;
    }
    let served = conn.peer_certificates().and_then(|chain| chain.first());
    served
        .map(|cert| cert.to_vec())
        .ok_or_else(|| format!("{addr} sent no certificate"))
}

/// Waits until new connections to `node`'s gRPC port and exchange port are served `want`.
fn wait_served(node: &WireNode, certs: &Path, want: &Issued, what: &str) {
    let exchange = wire_control::spread::exchange_addr(&node.addr).expect("exchange address");
    for addr in [node.addr.clone(), exchange.to_string()] {
        wire_tests::cluster::wait_for(
            &format!("node {} serves {what} on {addr}", node.id),
            ELECTION,
            || {
                let served = served_certificate(&addr, certs)?;
                if served == want.der {
                    Ok(())
                } else {
                    Err("another certificate".to_string())
                }
            },
        );
    }
}

/// How many times `node`'s log says `line`.
fn said(node: &WireNode, line: &str) -> usize {
    node.log_text().matches(line).count()
}

/// Certificate rotation under load: while a q5 spread over three mutual-TLS nodes runs (its
/// rows crossing nodes over the exchange), every node's certificate and key files are
/// replaced by new ones from the same CA and the node gets SIGHUP. New gRPC and exchange
/// connections are then served the new certificate (the exact bytes of the new file), the
/// pipeline goes on over the connections it has and finishes with `wire run`'s rows; a
/// garbage certificate file on a later SIGHUP is refused, logged naming the file, and the
/// node keeps serving the certificate it had.
#[test]
fn sighup_rotates_every_node_certificate_under_a_running_spread_pipeline() {
    const RELOADED: &str = "SIGHUP: TLS certificate and key files reloaded";
    const REFUSED: &str = "SIGHUP: TLS files not reloaded, the old ones stay in use";
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let ca = TestCa::new();
    // The admin's files, as `tls_ctl` and `served_certificate` read them.
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::write(certs.join("ca.pem"), &ca.pem).expect("ca.pem");
    let admin = ca.issue(&["admin.role.wire.invalid"], 1);
    admin.write(&certs, "client.pem", "client-key.pem");
    // Each node's own files, which the test rewrites.
    let files = |id: u64| dir.path().join(format!("tls-{id}"));
    let mut first = Vec::new();
    for id in 1..=3 {
        std::fs::create_dir_all(files(id)).expect("tls dir");
        first.push(ca.node_files(&files(id), 100 + id));
    }
    let ca_file = certs.join("ca.pem").display().to_string();
    let nodes = wire_tests::cluster::start_cluster_each(dir.path(), 3, |id| {
        let file = |name: &str| files(id).join(name).display().to_string();
        vec![
            "--tls-cert".to_string(),
            file("node.pem"),
            "--tls-key".to_string(),
            file("node-key.pem"),
            "--tls-client-ca".to_string(),
            ca_file.clone(),
        ]
    });
    let endpoint = nodes[0].addr.clone();
    let state = |name: &str| -> Result<String, String> {
        let got = tls_ctl(&endpoint, &certs, &["pipeline", "get", name])?;
        Ok(got["state"].as_str().unwrap_or_default().to_string())
    };
    let wait_q5 = |want: &str| {
        let what = format!("q5 {want}");
        wire_tests::cluster::wait_for(&what, wire_tests::cluster::PIPELINE_WAIT, || {
            let now = state("q5")?;
            (now == want).then_some(()).ok_or(now)
        });
    };
    wire_tests::cluster::wait_for("a leader over TLS", ELECTION, || {
        let status = tls_ctl(&endpoint, &certs, &["cluster", "status"])?;
        match status["leader_id"].as_u64() {
            Some(id) if id != 0 => Ok(()),
            _ => Err(format!("{status}")),
        }
    });
    for (node, issued) in nodes.iter().zip(&first) {
        wait_served(node, &certs, issued, "its first certificate");
    }

    // About 16 s of bids at a paced rate: the rotation happens while rows cross nodes.
    let out = dir.path().join("out");
    let spec = q5_spec_with(dir.path(), &out, "events: 400000, rate: 25000");
    let spec = spec.to_str().expect("utf-8 path");
    tls_ctl(&endpoint, &certs, &["pipeline", "create", "-f", spec]).expect("created");
    wait_q5("running");

    let mut second = Vec::new();
    for node in &nodes {
        let issued = ca.node_files(&files(node.id), 200 + node.id);
        node.signal("-HUP");
        wire_tests::cluster::wait_for("the reload", ELECTION, || {
            (said(node, RELOADED) == 1)
                .then_some(())
                .ok_or_else(|| node.log_text())
        });
        wait_served(node, &certs, &issued, "the new certificate");
        second.push(issued);
    }

    // Garbage in node 2's certificate file: refused, named, and the new certificate stays.
    let broken = files(2).join("node.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("garbage");
    nodes[1].signal("-HUP");
    let refusal = wire_tests::cluster::wait_for("the refused reload", ELECTION, || {
        let log = nodes[1].log_text();
        let line = log.lines().find(|line| line.contains(REFUSED));
        line.map(str::to_string).ok_or(log)
    });
    assert!(
        refusal.contains(&broken.display().to_string()),
        "the refusal does not name the file: {refusal}"
    );
    assert_eq!(said(&nodes[1], RELOADED), 1, "{}", nodes[1].log_text());
    wait_served(&nodes[1], &certs, &second[1], "the certificate it had");

    // All of it happened while the pipeline ran; it finishes with wire run's rows.
    assert_eq!(
        state("q5").as_deref(),
        Ok("running"),
        "q5 ended during the rotation"
    );
    wait_q5("finished");
    let expected = reference_rows(dir.path(), |dir, out| {
        q5_spec_with(dir, out, "events: 400000")
    });
    let rows = wire_tests::sorted_json_rows(&out);
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows == expected,
        "the rotated run's rows differ from wire run's"
    );
}

/// Nexmark bids as fast as they come, keyed by auction (so every node's rows cross to every
/// node), into each node's stdout.
fn keyed_stdout_spec(dir: &Path, events: u64) -> PathBuf {
    let path = dir.join("keyed.yaml");
    let yaml = format!(
        "name: keyed
sources:
  bids: {{type: nexmark, stream: bid, events: {events}, seed: 11}}
operators:
  - name: by_auction
    from: bids
    key_by: [auction]
sinks:
  out: {{type: stdout, format: jsonl, from: by_auction}}
"
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// What a stalled cluster shows: the rows read from each node's stdout and each node's
/// resident memory.
fn stalled_sample(nodes: &[WireNode]) -> (Vec<u64>, Vec<u64>) {
    let rows = nodes.iter().map(WireNode::stdout_rows).collect();
    let rss = nodes
        .iter()
        .map(|n| wire_tests::process::rss_bytes(n.pid()).unwrap_or(0))
        .collect();
    (rows, rss)
}

#[test]
fn a_slow_sink_on_one_node_stalls_the_sources_on_the_others_with_memory_bounded() {
    const EVENTS: u64 = 3_000_000;
    // What a node may hold while stalled: its credit windows and mailboxes, not the stream.
    const RSS_BOUND: u64 = 400 << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let nodes = start_cluster(dir.path(), 3);
    let first = endpoint(&nodes);
    wait_until_heard(&nodes, wait_for_leader(&nodes, ELECTION));
    // Nobody reads node 2's stdout: its sink blocks once the pipe is full.
    let slow = &nodes[1];
    slow.hold_stdout();
    create(&first, &keyed_stdout_spec(dir.path(), EVENTS), &[]);
    wait_state(&first, "keyed", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "keyed"]);
    assert_eq!(assignment_nodes(&got), vec![1, 2, 3], "{got}");

    // The other nodes' sinks stop getting rows: their sources are held by the credits of
    // the rows they owe node 2's slot.
    let mut before = stalled_sample(&nodes);
    wire_tests::cluster::wait_for(
        "the cluster to stall",
        wire_tests::cluster::PIPELINE_WAIT,
        || {
            std::thread::sleep(Duration::from_secs(2));
            let now = stalled_sample(&nodes);
            let same = now.0 == before.0;
            let seen = std::mem::replace(&mut before, now);
            match same {
                true => Ok(()),
                false => Err(format!(
                    "rows read per node went {:?} -> {:?}",
                    seen.0, before.0
                )),
            }
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let (rows, rss) = stalled_sample(&nodes);
    assert_eq!(rows, before.0, "rows still flow with node 2's sink blocked");
    let read: u64 = rows.iter().sum();
    eprintln!("stalled: rows read per node {rows:?}, resident bytes per node {rss:?}");
    assert!(
        read < EVENTS / 3,
        "{read} of {EVENTS} rows passed a blocked sink's node: {rows:?}"
    );
    for (node, (then, now)) in nodes.iter().zip(before.1.iter().zip(&rss)) {
        assert!(
            *now < RSS_BOUND,
            "node {} holds {now} bytes stalled",
            node.id
        );
        assert!(
            now.saturating_sub(*then) < 32 << 20,
            "node {} grew from {then} to {now} bytes while stalled",
            node.id
        );
    }
    let state = wirectl_json(&first, &["pipeline", "get", "keyed"]);
    assert_eq!(state["state"], "running", "{state}");

    // Read again: everything arrives, once.
    slow.release_stdout();
    wait_state(&first, "keyed", "finished");
    let nexmark = wire_core::nexmark::GeneratorConfig::default();
    let proportions =
        nexmark.person_proportion + nexmark.auction_proportion + nexmark.bid_proportion;
    let bids = EVENTS / proportions * nexmark.bid_proportion;
    wire_tests::cluster::wait_for("every bid read", wire_tests::cluster::PIPELINE_WAIT, || {
        let read: u64 = nodes.iter().map(WireNode::stdout_rows).sum();
        match read == bids {
            true => Ok(()),
            false => Err(format!("{read} of {bids} bids")),
        }
    });
}

#[test]
fn a_frozen_node_whose_slots_moved_on_writes_nothing_when_it_wakes() {
    let seed = kill_seed() + 3;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (mut nodes, first, led) = cluster_with_store(dir.path());
    let out = dir.path().join("out");
    let zombie_id = if led == 1 { 2 } else { 1 };
    let run = Run {
        endpoint: &first,
        out: &out,
        on_demand: false,
        checkpoints: 1 + seed % 4,
    };
    // The leader declares the frozen node dead and restores the pipeline on the two others.
    let survivor = fault_mid_run(&mut nodes, run, zombie_id, Fault::Freeze);
    let zombie = nodes.iter().find(|n| n.id == zombie_id).expect("zombie");
    let finished = wirectl_json(&survivor, &["pipeline", "get", "steady"]);
    // Every survivor publishes its last files once it sees the pipeline finished.
    let expected = reference_rows(dir.path(), steady_spec);
    assert!(expected.len() > 100, "{} rows", expected.len());
    wire_tests::cluster::wait_for(
        "the survivors' files",
        wire_tests::cluster::PIPELINE_WAIT,
        || {
            let rows = wire_tests::sorted_json_rows(&out);
            match rows == expected {
                true => Ok(()),
                false => Err(format!(
                    "{} rows of {}; repeated: {}",
                    rows.len(),
                    expected.len(),
                    files_of_repeated_rows(&out, &rows)
                )),
            }
        },
    );

    // It wakes still running its part of the old version: that part must stop without
    // publishing a file or changing what the metadata recorded.
    let seen = zombie.log_text().len();
    zombie.thaw();
    wire_tests::cluster::wait_for(
        "the woken node to end its stale part",
        wire_tests::cluster::PIPELINE_WAIT,
        || {
            let log = zombie.log_text();
            let woken = log.get(seen..).unwrap_or_default();
            let ended = woken.lines().any(|l| {
                l.contains("steady")
                    && ["aborting the run", "pipeline failed", "stay staged"]
                        .iter()
                        .any(|said| l.contains(said))
            });
            match ended {
                true => Ok(()),
                false => Err(woken.to_string()),
            }
        },
    );
    let now = wirectl_json(&survivor, &["pipeline", "get", "steady"]);
    assert_eq!(
        (&now["state"], &now["version"]),
        (&finished["state"], &finished["version"]),
        "the woken node changed the metadata: {now}"
    );
    // The part the woken node was writing stays unpublished (in progress or staged for a
    // checkpoint that never completes); a later restore of the pipeline would discard it.
    let unpublished = set_aside_unpublished(&out, &dir.path().join("unpublished"));
    eprintln!("the woken node left unpublished: {unpublished:?}");
    let after = wire_tests::sorted_json_rows(&out);
    assert_eq!(
        after.len(),
        expected.len(),
        "the woken node published files: {}",
        files_of_repeated_rows(&out, &after)
    );
    assert!(after == expected, "the woken node changed the output");
}

/// Moves the part files under `out` that are not published (`….inprogress`, staged
/// `….pending-<n>-v<version>`) into `aside`; their names.
fn set_aside_unpublished(out: &Path, aside: &Path) -> Vec<String> {
    let mut moved = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".inprogress") || name.contains(".pending-") {
                std::fs::create_dir_all(aside).expect("aside dir");
                std::fs::rename(&path, aside.join(moved.len().to_string())).expect("set aside");
                moved.push(name);
            }
        }
    }
    moved
}

/// `steady` over 750,000 bids: 15 s at its rate, long enough to be scaled twice.
fn rescaled_spec(dir: &Path, out: &Path) -> PathBuf {
    steady_spec_of(dir, out, 750_000)
}

/// The newest complete checkpoint of `steady` (0 before the first).
fn newest_checkpoint(endpoint: &str) -> u64 {
    let listed = wirectl_json(endpoint, &["checkpoint", "list", "steady"]);
    let ids = listed["checkpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ids.iter()
        .filter_map(|c| c["id"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Scales `steady` to `cores` slots; the answer, after checking it is a new version with the
/// slots dealt again over `nodes`.
fn scale_steady(endpoint: &str, cores: usize, nodes: &[u64], after: u64) -> serde_json::Value {
    let scaled = wirectl_json(
        endpoint,
        &["pipeline", "scale", "steady", "--cores", &cores.to_string()],
    );
    let slots = scaled["assignment"].as_array().map_or(0, Vec::len);
    assert_eq!(slots, cores, "{cores} slots: {scaled}");
    assert_eq!(assignment_nodes(&scaled), nodes, "dealt again: {scaled}");
    assert!(
        scaled["version"].as_u64() > Some(after),
        "a new version: {scaled}"
    );
    scaled
}

#[test]
fn a_spread_pipeline_scaled_down_and_up_moves_its_slots_through_a_checkpoint_exactly_once() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (_nodes, first, _) = cluster_with_store(dir.path());
    let out = dir.path().join("out");
    let spec = rescaled_spec(dir.path(), &out);
    create(&first, &spec, &["--checkpoint-interval", "300ms"]);
    wait_state(&first, "steady", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "steady"]);
    assert_eq!(assignment_nodes(&got), [1, 2, 3], "one slot a node: {got}");
    let version = got["version"].as_u64().expect("version");
    wait_for_checkpoints(&first, 1);

    // Down to two slots: node 3 runs nothing of it; up again: it takes a slot back. Each
    // time the slots' key groups and the sources' partitions move through a checkpoint.
    let down = scale_steady(&first, 2, &[1, 2], version);
    let since = newest_checkpoint(&first);
    wire_tests::cluster::wait_for(
        "a checkpoint of two slots",
        ELECTION,
        || match newest_checkpoint(&first) {
            newest if newest > since => Ok(()),
            newest => Err(format!("newest {newest}")),
        },
    );
    let version = down["version"].as_u64().expect("version");
    let up = scale_steady(&first, 3, &[1, 2, 3], version);
    wait_state(&first, "steady", "finished");
    let got = wirectl_json(&first, &["pipeline", "get", "steady"]);
    assert_eq!(
        got["version"], up["version"],
        "no move after the last scale: {got}"
    );

    assert_rows_once(dir.path(), rescaled_spec, &out);

    // Without checkpoints a spread pipeline's state cannot move: refused, and left as it is.
    let plain = long_spec(dir.path(), &dir.path().join("plain"));
    create(&first, &plain, &[]);
    wait_state(&first, "long", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "long"]);
    assert_eq!(assignment_nodes(&got), [1, 2, 3], "spread: {got}");
    let refused =
        wire_tests::cluster::wirectl(&first, &["pipeline", "scale", "long", "--cores", "2"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("takes no checkpoints"), "{stderr}");
}

/// An ingest pipeline spread over three nodes, each serving its own slot's partition: every
/// row goes to the file sink `all`, and a count per `k` makes rows cross the exchange.
fn ingest_spec(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("rows.yaml");
    let out = dir.join("out");
    let yaml = format!(
        "name: rows
sources:
  rows: {{type: ingest, listen: '127.0.0.1:{port}', durability: always, schema: {{id: i64, k: i64}}}}
operators:
  - name: per_k
    from: rows
    group_by: [k]
    aggregate:
      n: count(*)
sinks:
  all: {{type: file, path: {}, format: jsonl, from: rows}}
  counts: {{type: blackhole, from: per_k}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// A port on 127.0.0.1 with the next `count - 1` ports free too (one per node's offset).
fn free_ports(count: u16) -> u16 {
    loop {
        let port = wire_tests::cluster::free_port();
        let all_free = (1..count).all(|i| {
            port.checked_add(i)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return port;
        }
    }
}

/// One idempotent producer that reconnects (for up to a minute) to `addr`: `batches`
/// batches of 50 rows, ids from `first`; counts its acked batches in `acked`.
fn produce_ids(addr: std::net::SocketAddr, first: i64, batches: i64, acked: &AtomicU64) -> u64 {
    use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
    let schema = Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("k", DataType::I64),
    ]);
    let options = wire_net::ingest::ClientOptions {
        reconnect: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let client =
        wire_net::ingest::IngestClient::connect_with(addr, "spread", "rows", &schema, options);
    let mut client = client.unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
    for batch in 0..batches {
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        for id in first + batch * 50..first + batch * 50 + 50 {
            builder
                .push(&[ValueRef::I64(id), ValueRef::I64(id % 7)])
                .expect("row");
        }
        client
            .send(&builder.finish())
            .expect("send (the client reconnects on its own)");
        let acks = client.poll_acks().expect("acks").len() as u64;
        acked.fetch_add(acks, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
    }
    let acks = client.wait_acks().expect("acks").len() as u64;
    acked.fetch_add(acks, Ordering::Relaxed);
    let reconnects = client.reconnects();
    client.close().expect("close");
    reconnects
}

/// Every `id` in the published part files (`*.jsonl`, not those staged or in progress)
/// under `out` and its subdirectories (one per node), counted.
fn published_ids(out: &Path) -> std::collections::BTreeMap<i64, usize> {
    fn read(dir: &Path, ids: &mut std::collections::BTreeMap<i64, usize>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                read(&path, ids);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines() {
                    let row: serde_json::Value = serde_json::from_str(line).expect("row");
                    *ids.entry(row["id"].as_i64().expect("id")).or_default() += 1;
                }
            }
        }
    }
    let mut ids = std::collections::BTreeMap::new();
    read(out, &mut ids);
    ids
}

#[test]
fn an_ingest_pipeline_spread_over_three_nodes_keeps_every_acked_row_once_when_a_node_is_killed() {
    let seed = kill_seed();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = format!("file://{}", dir.path().join("store").display());
    let port = free_ports(3);
    // Three nodes on one machine: each serves the ingest source on its own port.
    let mut nodes = wire_tests::cluster::start_cluster_each(dir.path(), 3, |id| {
        let offset = (id - 1).to_string();
        let store = store.clone();
        vec![
            "--checkpoint-store".into(),
            store,
            "--ingest-port-offset".into(),
            offset,
        ]
    });
    let leader = wait_for_leader(&nodes, ELECTION);
    wait_until_heard(&nodes, leader);
    let first = endpoint(&nodes);
    create(
        &first,
        &ingest_spec(dir.path(), port),
        &["--checkpoint-interval", "300ms"],
    );
    wait_state(&first, "rows", "running");
    let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
    assert_eq!(
        assignment_nodes(&got),
        [1, 2, 3],
        "spread over every node: {got}"
    );
    // Any node says where producers connect: each node's port (its offset added), once its
    // part listens.
    let endpoints =
        wire_tests::cluster::wait_for("3 ingest endpoints", Duration::from_secs(60), || {
            let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
            let mut endpoints: Vec<(u64, String)> = got["ingest"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["node"].as_u64().unwrap_or(0),
                        e["address"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            endpoints.sort();
            match endpoints.len() {
                3 => Ok(endpoints),
                _ => Err(got.to_string()),
            }
        });
    let want: Vec<(u64, String)> = (1..=3u16)
        .map(|id| (u64::from(id), format!("127.0.0.1:{}", port + id - 1)))
        .collect();
    assert_eq!(endpoints, want);
    // One producer per node, each sticking to its node's port.
    let batches = 300i64;
    let acked = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = endpoints
        .iter()
        .zip(0i64..)
        .map(|((_, addr), i)| {
            let addr: std::net::SocketAddr = addr.parse().expect("address");
            let acked = acked.clone();
            std::thread::spawn(move || produce_ids(addr, i * 1_000_000, batches, &acked))
        })
        .collect();
    // Mid-stream (a seeded share of the input acked), SIGKILL a node that is not the leader,
    // and start it again: its producer reconnects to it and re-sends what was not acked.
    let victim = if leader == 1 + seed % 3 {
        1 + (seed + 1) % 3
    } else {
        1 + seed % 3
    };
    let kill_at = (batches as u64 * 3) * (20 + seed % 40) / 100;
    wire_tests::cluster::wait_for(
        "acks before the kill",
        Duration::from_secs(60),
        || match acked.load(Ordering::Relaxed) {
            n if n >= kill_at => Ok(()),
            n => Err(format!("{n} of {kill_at} batches acked")),
        },
    );
    let node = nodes.iter_mut().find(|n| n.id == victim).expect("victim");
    node.kill();
    std::thread::sleep(Duration::from_millis(1500));
    // A SIGKILLed node's listening sockets go with its io_uring, a moment after the process:
    // its part must find its ingest port free again when it starts.
    let victim_port = port + victim as u16 - 1;
    wire_tests::cluster::wait_for("the ingest port free", Duration::from_secs(30), || {
        std::net::TcpListener::bind(("127.0.0.1", victim_port))
            .map(drop)
            .map_err(|err| err.to_string())
    });
    node.start();
    let mut reconnects = 0;
    for producer in producers {
        reconnects += producer.join().expect("producer");
    }
    assert_eq!(
        acked.load(Ordering::Relaxed),
        batches as u64 * 3,
        "every batch acked"
    );
    assert!(reconnects >= 1, "no producer lost its connection");
    // Every acked row is in the WAL of its node; once a checkpoint completes after the last
    // ack, the sink has published it.
    let out = dir.path().join("out");
    let expected: Vec<i64> = (0..3i64)
        .flat_map(|i| (0..batches * 50).map(move |n| i * 1_000_000 + n))
        .collect();
    wire_tests::cluster::wait_for("every acked row published", Duration::from_secs(60), || {
        let ids = published_ids(&out);
        match expected.iter().filter(|id| !ids.contains_key(id)).count() {
            0 => Ok(()),
            missing => Err(format!("{missing} rows not published yet")),
        }
    });
    let ids = published_ids(&out);
    let twice: Vec<(&i64, &usize)> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "rows published more than once, e.g. {twice:?}"
    );
    assert_eq!(ids.len(), expected.len(), "no row that was not sent");
    let got = wirectl_json(&first, &["pipeline", "get", "rows"]);
    assert_eq!(
        assignment_nodes(&got),
        [1, 2, 3],
        "its slots stayed on their nodes: {got}"
    );
    // The node that came back asked for a restart of every part, rather than run its own
    // part of the old version alone.
    assert!(got["version"].as_u64() > Some(1), "a new version: {got}");
    eprintln!("node {victim} killed after {kill_at} batches; {reconnects} reconnections; {got}");
    // SIGTERM under the running pipeline: the node aborts its part (the others' inputs would
    // never end) and exits 0 within the harness's 20 s.
    nodes
        .iter_mut()
        .find(|n| n.id == victim)
        .expect("victim")
        .stop();
}
