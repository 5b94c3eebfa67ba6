//! `wire start` clusters on 127.0.0.1 driven by `wirectl`: real processes, real sockets, real
//! data directories. Every wait is bounded (see `wire_tests::cluster`).
//!
//! The tests run one at a time (a lock): each starts several nodes, and elections on a busy
//! two-CPU machine should not compete with another test's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
use wire_net::ingest::IngestClient;
use wire_tests::cluster::{
    cluster_status, create, start_cluster, start_cluster_behind, wait_for, wait_for_leader,
    wait_for_leader_among, wait_state, wirectl, wirectl_json, WireNode, PIPELINE_WAIT,
};
use wire_tests::proxy::Network;
use wire_tests::wire_bin;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long an election may take (the election timeout is 1 to 2 s; a busy machine is slow).
const ELECTION: Duration = Duration::from_secs(15);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A pipeline file `name.yaml` in `dir` that `wire check` accepts with no input files.
fn spec(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "name: {name}
sources:
  rows:
    type: ingest
    listen: 127.0.0.1:0
    schema: {{id: i64, v: f64}}
operators:
  - name: big
    from: rows
    filter: v > 1.0
sinks:
  out: {{type: stdout, format: jsonl, from: big}}
"
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// What the metadata says, in a form that does not change with terms or indexes: every
/// pipeline as `pipeline get -o json` shows it, and the members' ids and addresses; taken once
/// the pipelines have settled (see [`settle`]), without what running pipelines change all the
/// while (their last checkpoint).
fn dump(endpoint: &str) -> Value {
    settle(endpoint);
    let list = wirectl_json(endpoint, &["pipeline", "list"]);
    let names: Vec<String> = list["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    let pipelines: Vec<Value> = names
        .iter()
        .map(|name| wirectl_json(endpoint, &["pipeline", "get", name]))
        .collect();
    let status = wirectl_json(endpoint, &["cluster", "status"]);
    let mut members: Vec<Value> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| json!({"id": m["id"], "address": m["address"]}))
        .collect();
    members.sort_by_key(|m| m["id"].as_u64());
    without_progress(json!({"list": list, "pipelines": pipelines, "members": members}))
}

/// Waits until every pipeline is where its desired state leads (the nodes run them): running,
/// paused, or finished once stopped; or failed.
fn settle(endpoint: &str) {
    wait_for("every pipeline settles", PIPELINE_WAIT, || {
        let list = wirectl_json(endpoint, &["pipeline", "list"]);
        let moving: Vec<&Value> = list["pipelines"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|p| {
                        let settled = match p["desired_state"].as_str() {
                            Some("running") => ["running", "finished", "failed"].as_slice(),
                            Some("paused") => ["paused", "finished", "failed"].as_slice(),
                            _ => ["finished", "failed"].as_slice(),
                        };
                        !settled.contains(&p["state"].as_str().unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if moving.is_empty() {
            Ok(())
        } else {
            Err(format!("{moving:?}"))
        }
    });
}

/// Waits until every node's [`dump`] is the same (and `expected`, when given): pipelines that
/// restart (a new version, a node back) change state for a while.
fn agree(nodes: &[WireNode], expected: Option<&Value>) {
    wait_for("every node's metadata agrees", PIPELINE_WAIT, || {
        let dumps: Vec<Value> = nodes.iter().map(|n| dump(&n.addr)).collect();
        let same = dumps.windows(2).all(|w| w[0] == w[1]);
        match expected {
            _ if !same => Err(format!("{dumps:#?}")),
            Some(want) if dumps[0] != *want => Err(format!("{:#?}\nnot\n{want:#?}", dumps[0])),
            _ => Ok(()),
        }
    });
}

/// A [`dump`] without what running pipelines change by themselves (their last checkpoint, and
/// their live counters and listeners), and what only the leader says (`waiting`).
fn without_progress(mut dump: Value) -> Value {
    for key in ["list", "pipelines"] {
        let pipelines = match key {
            "list" => dump["list"]["pipelines"].as_array_mut(),
            _ => dump["pipelines"].as_array_mut(),
        };
        for pipeline in pipelines.into_iter().flatten() {
            pipeline["last_checkpoint"] = Value::Null;
            pipeline["operators"] = Value::Null;
            // Where its ingest sources listen now (ephemeral ports), asked of the nodes live.
            pipeline["ingest"] = Value::Null;
            // The leader's view of which nodes answer, not metadata: only the leader fills it.
            pipeline["waiting"] = Value::Null;
        }
    }
    dump
}

fn node(nodes: &[WireNode], id: u64) -> &WireNode {
    nodes.iter().find(|n| n.id == id).expect("node id")
}

/// Waits until the node at `addr` has applied what the node at `reference` had committed.
fn caught_up(addr: &str, reference: &str) {
    let commit = wirectl_json(reference, &["cluster", "status"])["commit_index"]
        .as_u64()
        .unwrap();
    wait_for(
        &format!("{addr} applies up to index {commit}"),
        ELECTION,
        || {
            let status = cluster_status(addr)?;
            match status["applied_index"].as_u64() {
                Some(applied) if applied >= commit => Ok(()),
                other => Err(format!("applied {other:?} < {commit}")),
            }
        },
    );
}

/// `wire start --node-id ID --join TARGET` on a fresh data directory, run to its exit (it
/// exits when the join fails; bounded by the join timeout).
fn join_once(dir: &Path, id: u64, target: &str) -> std::process::Output {
    let listen = format!("127.0.0.1:{}", wire_tests::cluster::free_port());
    std::process::Command::new(wire_bin())
        .args(["start", "--node-id", &id.to_string(), "--listen", &listen])
        .arg("--data-dir")
        .arg(dir.join(format!("joiner-{id}")))
        .args(["--join", target])
        .output()
        .unwrap()
}

/// `wire start ARGS` run to its exit (settings it refuses end it at once).
fn wire_start(args: &[&str]) -> std::process::Output {
    std::process::Command::new(wire_bin())
        .arg("start")
        .args(args)
        .output()
        .unwrap()
}

fn fails_with(out: &std::process::Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

#[test]
fn three_nodes_elect_a_leader_and_survive_its_sigkill() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3);
    let leader = wait_for_leader(&nodes, ELECTION);
    let status = wirectl_json(&node(&nodes, leader).addr, &["cluster", "status"]);
    let roles: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{status}"
    );
    assert_eq!(roles.len(), 3, "{status}");

    // Through a follower: the write is forwarded to the leader.
    let follower = nodes.iter().find(|n| n.id != leader).unwrap().addr.clone();
    let created = create(
        &follower,
        &spec(dir.path(), "clicks"),
        &["--checkpoint-interval", "2s"],
    );
    assert_eq!(created["name"], "clicks");
    assert_eq!(created["state"], "created");
    assert_eq!(created["desired_state"], "running");
    assert_eq!(created["options"]["checkpoint_interval_ms"], 2000);
    let list = wirectl_json(&follower, &["pipeline", "list"]);
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 1, "{list}");
    let table = wirectl(&follower, &["pipeline", "get", "clicks"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("state:") && text.contains("desired:") && text.contains("running"),
        "{text}"
    );
    let before = dump(&follower);

    let killed_at = Instant::now();
    let index = (nodes.iter().position(|n| n.id == leader)).unwrap();
    nodes[index].kill();
    let new_leader = wait_for_leader(&nodes, ELECTION);
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} after {:?}", killed_at.elapsed());
    let survivor = node(&nodes, new_leader).addr.clone();
    let mut after = dump(&survivor);
    // The killed member is still a member; its health differs, not its record.
    after["members"] = before["members"].clone();
    assert_eq!(before, after);

    // A write while it is down, then it restarts and catches up.
    create(&survivor, &spec(dir.path(), "views"), &[]);
    nodes[index].start();
    let restarted = nodes[index].addr.clone();
    caught_up(&restarted, &survivor);
    assert_eq!(dump(&restarted), dump(&survivor));
}

#[test]
fn a_node_down_past_a_compaction_catches_up_from_a_snapshot() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3);
    let leader = wait_for_leader(&nodes, ELECTION);
    let endpoint = node(&nodes, leader).addr.clone();
    let index = nodes.iter().position(|n| n.id != leader).unwrap();
    nodes[index].stop();
    for name in ["p1", "p2", "p3"] {
        create(&endpoint, &spec(dir.path(), name), &[]);
    }
    wirectl_json(&endpoint, &["pipeline", "delete", "p2"]);
    let compacted = wirectl_json(&endpoint, &["cluster", "compact"]);
    let message = compacted["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("compacted its raft log"), "{compacted}");
    nodes[index].start();
    caught_up(&nodes[index].addr, &endpoint);
    assert!(
        nodes[index].log_text().contains("restored snapshot"),
        "node {} caught up without a snapshot:\n{}",
        nodes[index].id,
        nodes[index].log_text()
    );
    assert_eq!(dump(&nodes[index].addr), dump(&endpoint));
}

#[test]
fn a_frozen_leader_commits_nothing_and_acknowledged_writes_apply_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3);
    let old = wait_for_leader(&nodes, ELECTION);
    let old_addr = node(&nodes, old).addr.clone();
    create(&old_addr, &spec(dir.path(), "x"), &[]);
    node(&nodes, old).freeze();
    // Sent to the frozen leader: answered only after it thaws, by then no longer the leader.
    let stale =
        std::thread::spawn(move || wirectl(&old_addr, &["pipeline", "scale", "x", "--cores", "9"]));
    let new = wait_for_leader_among(&nodes, Some(old), ELECTION);
    assert_ne!(new, old);
    let new_addr = node(&nodes, new).addr.clone();
    let mut acked = 0;
    for cores in 1..=3 {
        let cores = cores.to_string();
        wirectl_json(&new_addr, &["pipeline", "scale", "x", "--cores", &cores]);
        acked += 1;
    }
    node(&nodes, old).thaw();
    let stale = stale.join().unwrap();
    let stale_acked = stale.status.success();
    eprintln!("write to the frozen leader: {stale:?}");
    wait_for_leader(&nodes, ELECTION);
    for n in &nodes {
        caught_up(&n.addr, &new_addr);
    }
    let x = wirectl_json(&new_addr, &["pipeline", "get", "x"]);
    let applied = x["version"].as_u64().unwrap() - 1;
    // Every acknowledged scale applied exactly once; a failed one may or may not have (a
    // timeout is ambiguous), never twice.
    assert!(applied >= acked + u64::from(stale_acked), "{x}");
    assert!(applied <= acked + 1, "{x}");
    agree(&nodes, None);
}

/// Who claimed to lead in which term, as nodes answered `cluster status`.
#[derive(Default)]
struct LeaderClaims(std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>>);

impl LeaderClaims {
    /// Asks every node; a node that names itself leader claims its term.
    fn sample(&mut self, nodes: &[WireNode]) {
        for n in nodes {
            let Ok(status) = cluster_status(&n.addr) else {
                continue;
            };
            let (Some(id), Some(term)) = (status["node_id"].as_u64(), status["term"].as_u64())
            else {
                continue;
            };
            if status["leader_id"].as_u64() == Some(id) {
                self.0.entry(term).or_default().insert(id);
            }
        }
    }

    fn assert_one_per_term(&self) {
        for (term, leaders) in &self.0 {
            assert_eq!(leaders.len(), 1, "term {term} had leaders {leaders:?}");
        }
    }
}

/// A leader cut off by the network (the tests' proxies black-hole its links both ways, as a
/// pulled cable would) commits nothing: the write sent to it is never acknowledged nor applied.
/// The other two elect a leader of a later term and take writes; no term ever has two leaders;
/// once the cut heals every node holds the same metadata, each acknowledged write applied
/// exactly once.
#[test]
fn a_leader_cut_off_by_the_network_commits_nothing_and_no_term_has_two_leaders() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let network = Network::new();
    let nodes = start_cluster_behind(dir.path(), 3, &network);
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    let mut claims = LeaderClaims::default();
    let old = wait_for_leader(&nodes, ELECTION);
    let old_addr = node(&nodes, old).addr.clone();
    create(&old_addr, &spec(dir.path(), "x"), &[]);
    claims.sample(&nodes);
    network.isolate(old, &ids);
    let stale_addr = old_addr.clone();
    let stale = std::thread::spawn(move || {
        wirectl(&stale_addr, &["pipeline", "scale", "x", "--cores", "9"])
    });
    let new = wait_for_leader_among(&nodes, Some(old), ELECTION);
    assert_ne!(new, old);
    let new_addr = node(&nodes, new).addr.clone();
    let mut acked = 0;
    for cores in 1..=3 {
        claims.sample(&nodes);
        let cores = cores.to_string();
        wirectl_json(&new_addr, &["pipeline", "scale", "x", "--cores", &cores]);
        acked += 1;
    }
    let stale = stale.join().unwrap();
    assert!(
        !stale.status.success(),
        "a write to the cut-off leader was acknowledged: {stale:?}"
    );
    claims.sample(&nodes);
    network.heal();
    wait_for_leader(&nodes, ELECTION);
    claims.sample(&nodes);
    for n in &nodes {
        caught_up(&n.addr, &new_addr);
    }
    let x = wirectl_json(&new_addr, &["pipeline", "get", "x"]);
    assert_eq!(x["version"].as_u64(), Some(1 + acked), "{x}");
    agree(&nodes, None);
    claims.assert_one_per_term();
}

#[test]
fn membership_changes_survive_a_full_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3);
    let leader = wait_for_leader(&nodes, ELECTION);
    let endpoint = node(&nodes, leader).addr.clone();
    create(&endpoint, &spec(dir.path(), "a"), &["--cores", "2"]);
    create(&endpoint, &spec(dir.path(), "b"), &[]);

    let mut fourth = WireNode::new(dir.path(), 4, &["--join".to_string(), endpoint.clone()]);
    fourth.start();
    nodes.push(fourth);
    wait_for("node 4 is a member", ELECTION, || {
        let status = cluster_status(&endpoint)?;
        let ids: Vec<u64> = status["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["id"].as_u64()).collect())
            .unwrap_or_default();
        ids.contains(&4)
            .then_some(())
            .ok_or(format!("members {ids:?}"))
    });
    caught_up(&nodes[3].addr, &endpoint);
    let removed = nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader && *id != 4)
        .unwrap();
    let out = wirectl(&endpoint, &["node", "remove", &removed.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = nodes.iter().position(|n| n.id == removed).unwrap();
    nodes.remove(index).stop();
    wirectl_json(&endpoint, &["pipeline", "scale", "b", "--cores", "3"]);
    wirectl_json(&endpoint, &["pipeline", "pause", "a"]);
    let leader = wait_for_leader(&nodes, ELECTION);
    let before = dump(&node(&nodes, leader).addr);
    let members: Vec<u64> = before["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert!(
        members.contains(&4) && !members.contains(&removed),
        "{before}"
    );

    for node in &mut nodes {
        node.stop();
    }
    for node in &mut nodes {
        node.start();
    }
    wait_for_leader(&nodes, ELECTION);
    agree(&nodes, Some(&before));
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 1);
    wait_for_leader(&nodes, ELECTION);
    let at = nodes[0].addr.clone();
    create(&at, &spec(dir.path(), "good"), &[]);
    create(&at, &spec(dir.path(), "stopped"), &[]);
    wirectl_json(&at, &["pipeline", "stop", "stopped"]);
    let before = dump(&at);

    bad_spec_is_refused_as_wire_check_refuses_it(dir.path(), &at);
    let good = spec(dir.path(), "good");
    let refused: &[(&[&str], i32, &str)] = &[
        (
            &["pipeline", "create", "-f", good.to_str().unwrap()],
            1,
            "already exists",
        ),
        (&["pipeline", "get", "nope"], 1, "pipeline `nope` not found"),
        (&["pipeline", "pause", "nope"], 1, "not found"),
        (&["pipeline", "delete", "nope"], 1, "not found"),
        (&["checkpoint", "list", "nope"], 1, "not found"),
        (&["checkpoint", "trigger", "good"], 1, "does not checkpoint"),
        (
            &["savepoint", "create", "good", "--dir", "/tmp/sp"],
            1,
            "does not checkpoint",
        ),
        (&["pipeline", "scale", "good", "--cores", "0"], 1, "cores"),
        (
            &["pipeline", "scale", "stopped", "--cores", "2"],
            1,
            "delete it and create it again",
        ),
        (
            &["pipeline", "resume", "stopped"],
            1,
            "delete it and create it again",
        ),
        (&["node", "add", "1", "127.0.0.1:1"], 1, "already in use"),
        (&["node", "add", "9", "nohost"], 1, "not HOST:PORT"),
        (&["node", "remove", "7"], 1, "not a member"),
        (&["node", "remove", "1"], 1, "only member"),
        (&["pipeline", "frobnicate"], 2, "frobnicate"),
        (&["-o", "yaml", "pipeline", "list"], 2, "yaml"),
    ];
    for (args, code, needle) in refused {
        let out = wirectl(&at, args);
        assert_eq!(out.status.code(), Some(*code), "wirectl {args:?}");
        fails_with(&out, *code, needle);
    }
    // A node that asks to join with an id in use is refused, and exits 1.
    let joiner = join_once(dir.path(), 1, &at);
    fails_with(&joiner, 1, "node id 1 is already in use");
    let nobody = format!("127.0.0.1:{}", wire_tests::cluster::free_port());
    fails_with(
        &wirectl(&nobody, &["cluster", "status"]),
        1,
        &format!("cannot reach {nobody}: connection refused; is `wire start` running?"),
    );
    assert_eq!(dump(&at), before, "a refused request changed the metadata");
}

/// A spec that fails the check is refused with `wire check`'s very message.
fn bad_spec_is_refused_as_wire_check_refuses_it(dir: &Path, at: &str) {
    let bad = dir.join("bad.yaml");
    let yaml = "name: bad\nsources:\n  rows:\n    type: ingest\n    listen: 127.0.0.1:0\n    \
                schema: {id: i64}\noperators:\n  - name: f\n    from: rows\n    \
                filter: nope > 1\nsinks:\n  out: {type: stdout, from: f}\n";
    std::fs::write(&bad, yaml).unwrap();
    let out = wirectl(at, &["pipeline", "create", "-f", bad.to_str().unwrap()]);
    fails_with(&out, 1, &format!("{}:10:", bad.display()));
    let check = std::process::Command::new(wire_bin())
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    let local = String::from_utf8_lossy(&check.stderr);
    let remote = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        local.trim(),
        remote.trim(),
        "the server checks as `wire check`"
    );
}

#[test]
fn bad_node_settings_are_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "node-id = 1\ndata-dir = \"d\"\nlisten-on = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = wire_start(&["--config", config.to_str().unwrap()]);
    fails_with(
        &out,
        2,
        &format!("{}:3:1: key `listen-on`", config.display()),
    );
    std::fs::write(&config, "node-id = -1\n").unwrap();
    let out = wire_start(&["--config", config.to_str().unwrap()]);
    fails_with(
        &out,
        2,
        &format!("{}:1:11: key `node-id`", config.display()),
    );
    let out = wire_start(&[
        "--node-id",
        "3",
        "--data-dir",
        "d",
        "--initial-cluster",
        "1=127.0.0.1:1",
    ]);
    fails_with(&out, 2, "node 3 (this node's id) is not in");
    let nobody = format!("127.0.0.1:{}", wire_tests::cluster::free_port());
    let out = join_once(dir.path(), 5, &nobody);
    fails_with(&out, 1, &format!("cannot join the cluster via {nobody}"));
}

#[test]
fn a_backup_restores_into_wiped_data_dirs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3);
    let leader = wait_for_leader(&nodes, ELECTION);
    let endpoint = node(&nodes, leader).addr.clone();
    create(
        &endpoint,
        &spec(dir.path(), "one"),
        &["--checkpoint-interval", "1s"],
    );
    create(&endpoint, &spec(dir.path(), "two"), &[]);
    wirectl_json(&endpoint, &["pipeline", "stop", "two"]);
    let before = dump(&endpoint);
    let backup = dir.path().join("meta.backup");
    let follower = nodes.iter().find(|n| n.id != leader).unwrap().addr.clone();
    wirectl_json(
        &follower,
        &["backup", "create", "--out", backup.to_str().unwrap()],
    );

    for node in &mut nodes {
        node.stop();
        std::fs::remove_dir_all(&node.data_dir).unwrap();
    }
    for node in &nodes {
        let out = wirectl(
            &node.addr,
            &[
                "backup",
                "restore",
                backup.to_str().unwrap(),
                "--data-dir",
                node.data_dir.to_str().unwrap(),
                "--node-id",
                &node.id.to_string(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for node in &mut nodes {
        node.start();
    }
    let leader = wait_for_leader(&nodes, ELECTION);
    assert_eq!(dump(&node(&nodes, leader).addr), before);
    // The restored cluster takes writes.
    create(&node(&nodes, leader).addr, &spec(dir.path(), "three"), &[]);
}

/// A bounded pipeline: a few auctions' bids from the generator into a file sink at `out`.
fn bounded_spec(dir: &Path, out: &Path) -> PathBuf {
    let path = dir.join("bids.yaml");
    let yaml = format!(
        "name: bids
sources:
  bids: {{type: nexmark, stream: bid, events: 20000}}
operators:
  - name: some
    from: bids
    filter: auction % 7 = 0
sinks:
  out: {{type: file, path: {}, format: jsonl, from: some}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// An ingest pipeline on `port` keeping rows with `v > 1.0`, into a file sink at `out`.
fn ingest_spec(dir: &Path, port: u16, out: &Path) -> PathBuf {
    let path = dir.join("ingested.yaml");
    let yaml = format!(
        "name: ingested
sources:
  rows:
    type: ingest
    listen: 127.0.0.1:{port}
    schema: {{id: i64, v: f64}}
operators:
  - name: big
    from: rows
    filter: v > 1.0
sinks:
  out: {{type: file, path: {}, format: jsonl, from: big}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// Sends rows `ids` (one batch, `v` = id) and waits for their ack.
fn send_rows(client: &mut IngestClient, ids: std::ops::Range<i64>) {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for id in ids {
        builder
            .push(&[ValueRef::I64(id), ValueRef::F64(id as f64)])
            .expect("push");
    }
    client.send(&builder.finish()).expect("send");
    assert_eq!(client.wait_acks().expect("ack").len(), 1);
}

/// Connects to the ingest source on `port` once the node running it listens.
fn connect(port: u16) -> IngestClient {
    let schema = Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("v", DataType::F64),
    ]);
    let addr = format!("127.0.0.1:{port}");
    wait_for(
        &format!("the ingest source on {addr}"),
        PIPELINE_WAIT,
        || IngestClient::connect(addr.as_str(), "test", "rows", &schema).map_err(|e| e.to_string()),
    )
}

#[test]
fn pipelines_run_on_the_nodes_and_follow_wirectl() {
    let _one = serial();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut nodes = start_cluster(dir.path(), 3);
    let leader = wait_for_leader(&nodes, ELECTION);
    let endpoint = node(&nodes, leader).addr.clone();

    // A bounded pipeline runs to its end on a node, with the output `wire run` gives.
    let out = dir.path().join("out");
    create(&endpoint, &bounded_spec(dir.path(), &out.join("bids")), &[]);
    wait_state(&endpoint, "bids", "finished");
    let reference = dir.path().join("reference");
    std::fs::create_dir_all(&reference).expect("reference dir");
    let spec = bounded_spec(&reference, &reference.join("bids"));
    let ran = std::process::Command::new(wire_bin())
        .args(["run", "--no-progress", "--no-pin", "--cores", "1"])
        .arg("--data-dir")
        .arg(reference.join("data"))
        .arg(&spec)
        .output()
        .expect("wire run");
    assert!(ran.status.success(), "{ran:?}");
    let rows = wire_tests::sorted_json_rows(&out.join("bids"));
    assert!(rows.len() > 1000, "{} rows", rows.len());
    assert_eq!(rows, wire_tests::sorted_json_rows(&reference.join("bids")));

    // An ingest pipeline with checkpoints runs, pauses, resumes and stops with a last
    // checkpoint; every acknowledged row reaches its sink once.
    let port = wire_tests::cluster::free_port();
    let ingest = ingest_spec(dir.path(), port, &out.join("ingested"));
    create(&endpoint, &ingest, &["--checkpoint-interval", "300ms"]);
    wait_state(&endpoint, "ingested", "running");
    let mut client = connect(port);
    send_rows(&mut client, 0..100);
    let ok = |args: &[&str]| assert!(wirectl(&endpoint, args).status.success(), "{args:?}");
    ok(&["pipeline", "pause", "ingested"]);
    wait_state(&endpoint, "ingested", "paused");
    ok(&["pipeline", "resume", "ingested"]);
    wait_state(&endpoint, "ingested", "running");
    send_rows(&mut client, 100..200);
    client.close().expect("close");
    // SIGKILL every node and start them again: the pipeline resumes from its checkpoint,
    // and what was acknowledged before the kill still reaches the sink once.
    for node in &mut nodes {
        node.kill();
    }
    for node in &mut nodes {
        node.start();
    }
    let leader = wait_for_leader(&nodes, ELECTION);
    let endpoint = node(&nodes, leader).addr.clone();
    let ok = |args: &[&str]| assert!(wirectl(&endpoint, args).status.success(), "{args:?}");
    wait_state(&endpoint, "ingested", "running");
    let mut client = connect(port);
    send_rows(&mut client, 200..300);
    client.close().expect("close");
    ok(&["pipeline", "stop", "ingested"]);
    wait_state(&endpoint, "ingested", "finished");
    let ids: Vec<i64> = wire_tests::read_jsonl_dir(&out.join("ingested"))
        .iter()
        .map(|row| row["id"].as_i64().expect("id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (2..300).collect::<Vec<i64>>(), "each row once");
    let checkpoints = wirectl_json(&endpoint, &["checkpoint", "list", "ingested"]);
    let listed = checkpoints["checkpoints"].as_array().map_or(0, Vec::len);
    assert!(listed >= 1, "{checkpoints}");
    for node in &mut nodes {
        node.stop();
    }
}

/// An ingest pipeline `totals` on `port` counting and summing ids per parity (state that a
/// restore must carry), its changelog into a file sink at `out`.
fn totals_spec(dir: &Path, port: u16, out: &Path) -> PathBuf {
    let path = dir.join(format!("totals-{port}.yaml"));
    let yaml = format!(
        "name: totals
sources:
  rows:
    type: ingest
    listen: 127.0.0.1:{port}
    schema: {{id: i64, v: f64}}
operators:
  - name: per_parity
    from: rows
    group_by:
      k: id % 2
    aggregate:
      n: count(*)
      s: sum(id)
sinks:
  out: {{type: file, path: {}, format: jsonl, from: per_parity}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

/// `rows in` of operator `operator` in `pipeline get NAME` at `endpoint`, if shown.
fn rows_in(endpoint: &str, name: &str, operator: &str) -> Option<u64> {
    let got = wirectl_json(endpoint, &["pipeline", "get", name]);
    got["operators"]
        .as_array()?
        .iter()
        .find(|op| op["name"] == operator)?["rows_in"]
        .as_u64()
}

/// Waits until `pipeline get` at `endpoint` shows `want` rows into `operator`.
fn wait_rows_in(endpoint: &str, name: &str, operator: &str, want: u64) {
    wait_for(
        &format!("{want} rows into `{operator}` shown at {endpoint}"),
        PIPELINE_WAIT,
        || match rows_in(endpoint, name, operator) {
            Some(n) if n == want => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// The complete checkpoint directories (`chk-*`, with a manifest) of pipeline `name` on
/// `node`'s disk, wherever they are under its directory.
fn checkpoints_on_disk(node: &WireNode, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![node.data_dir.join("pipelines").join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with("chk-") && path.join("MANIFEST").exists() {
                found.push(file_name);
            } else if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    found
}

/// For each parity `k` in a `totals` changelog directory: the smallest and largest count, and
/// the largest sum.
fn per_parity(dir: &Path) -> Vec<(i64, i64, i64, i64)> {
    let mut by_k: std::collections::BTreeMap<i64, (i64, i64, i64)> = Default::default();
    for row in wire_tests::read_jsonl_dir(dir) {
        let k = row["k"].as_i64().expect("k");
        let n = row["n"].as_i64().expect("n");
        let s = row["s"].as_i64().expect("s");
        let e = by_k.entry(k).or_insert((n, n, s));
        *e = (e.0.min(n), e.1.max(n), e.2.max(s));
    }
    by_k.into_iter()
        .map(|(k, (lo, hi, s))| (k, lo, hi, s))
        .collect()
}

#[test]
fn checkpoints_savepoints_and_counters_come_from_the_hosting_node() {
    let _one = serial();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let nodes = start_cluster(dir.path(), 3);
    let leader = wait_for_leader(&nodes, ELECTION);
    let endpoint = node(&nodes, leader).addr.clone();
    let port = wire_tests::cluster::free_port();
    let spec = totals_spec(dir.path(), port, &dir.path().join("out").join("first"));
    let created = create(&endpoint, &spec, &RETAIN_ONE);
    assert_eq!(created["options"]["checkpoints_retained"], 1, "{created}");
    wait_state(&endpoint, "totals", "running");
    let (host_id, other) = checkpoints_on_demand(&nodes, &endpoint);

    // The live counters, asked on a node that does not host it, grow with the input.
    let mut client = connect(port);
    send_rows(&mut client, 0..100);
    wait_rows_in(&other, "totals", "per_parity", 100);
    send_rows(&mut client, 100..150);
    wait_rows_in(&other, "totals", "per_parity", 150);

    // A savepoint, asked on another node, written by the host; 150 rows are in its state.
    let savepoints = dir.path().join("savepoints");
    let sp = wirectl_json(
        &other,
        &[
            "savepoint",
            "create",
            "totals",
            "--dir",
            savepoints.to_str().unwrap(),
        ],
    );
    assert_eq!(sp["node_id"].as_u64(), Some(host_id), "{sp}");
    let sp_path = PathBuf::from(sp["path"].as_str().expect("path"));
    assert!(sp_path.starts_with(&savepoints), "{sp}");
    assert!(sp_path.join("MANIFEST").exists(), "{sp}");
    send_rows(&mut client, 150..200);
    wait_rows_in(&other, "totals", "per_parity", 200);
    client.close().expect("close");
    succeeds(&endpoint, &["pipeline", "stop", "totals"]);
    wait_state(&endpoint, "totals", "finished");
    succeeds(&endpoint, &["pipeline", "delete", "totals"]);
    restore_the_savepoint(dir.path(), &endpoint, port, &sp_path);
}

/// `--checkpoint-interval 1h --checkpoints-retained 1`: checkpoints only on demand, one kept.
const RETAIN_ONE: [&str; 4] = ["--checkpoint-interval", "1h", "--checkpoints-retained", "1"];

fn succeeds(endpoint: &str, args: &[&str]) {
    let out = wirectl(endpoint, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
}

/// Checkpoints of the running `totals` on demand, asked on `endpoint` and on a node that does
/// not host it: each is taken by the host, then listed, and one is kept on the host's disk.
/// The host's id and another node's address.
fn checkpoints_on_demand(nodes: &[WireNode], endpoint: &str) -> (u64, String) {
    let first = wirectl_json(endpoint, &["checkpoint", "trigger", "totals"]);
    let host_id = first["node_id"].as_u64().expect("node_id");
    let other = nodes.iter().find(|n| n.id != host_id).unwrap().addr.clone();
    let second = wirectl_json(&other, &["checkpoint", "trigger", "totals"]);
    let id = second["checkpoint_id"].as_u64().expect("checkpoint_id");
    assert!(
        id > first["checkpoint_id"].as_u64().unwrap(),
        "{first} {second}"
    );
    let listed = wirectl_json(&other, &["checkpoint", "list", "totals"]);
    let ids: Vec<u64> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    assert!(ids.contains(&id), "{id} not in {listed}");
    // --checkpoints-retained 1: one checkpoint on the host's disk.
    let host = node(nodes, host_id);
    wait_for(
        "one checkpoint kept on disk",
        PIPELINE_WAIT,
        || match checkpoints_on_disk(host, "totals") {
            kept if kept.len() == 1 => Ok(()),
            kept => Err(format!("{kept:?}")),
        },
    );
    (host_id, other)
}

/// Creates `totals` again from the savepoint at `sp_path` (taken after 150 rows; 200 were sent
/// before the stop): its state holds the 150 rows, the WAL replays the 50 after them, and new
/// rows follow; each row counted once.
fn restore_the_savepoint(dir: &Path, endpoint: &str, port: u16, sp_path: &Path) {
    let out = dir.join("out").join("second");
    let spec = totals_spec(dir, port, &out);
    let from = ["--from-savepoint", sp_path.to_str().unwrap()];
    create(endpoint, &spec, &[&RETAIN_ONE[..], &from[..]].concat());
    wait_state(endpoint, "totals", "running");
    let mut client = connect(port);
    send_rows(&mut client, 200..210);
    client.close().expect("close");
    succeeds(endpoint, &["pipeline", "stop", "totals"]);
    wait_state(endpoint, "totals", "finished");
    let sum = |k: i64| (0..210).filter(|id| id % 2 == k).sum::<i64>();
    let totals = per_parity(&out);
    let last: Vec<(i64, i64, i64)> = totals.iter().map(|t| (t.0, t.2, t.3)).collect();
    assert_eq!(last, vec![(0, 105, sum(0)), (1, 105, sum(1))], "{totals:?}");
    // The smallest count in the changelog is the savepoint's (75 per parity, retracted by the
    // first update): not empty state (replaying the whole WAL would show 50), nor the deleted
    // pipeline's last checkpoint (100).
    for (k, first, _, _) in &totals {
        let shown = format!("parity {k} first counted {first}: {totals:?}");
        assert!((75..100).contains(first), "{shown}");
    }
}

#[test]
fn checkpoints_on_demand_refuse_bad_requests_and_change_nothing() {
    let _one = serial();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let nodes = start_cluster(dir.path(), 1);
    wait_for_leader(&nodes, ELECTION);
    let at = nodes[0].addr.clone();
    let port = wire_tests::cluster::free_port();
    let out = dir.path().join("out");
    let spec = totals_spec(dir.path(), port, &out);
    create(&at, &spec, &["--checkpoint-interval", "1h"]);
    create(
        &at,
        &ingest_spec(dir.path(), wire_tests::cluster::free_port(), &out.join("i")),
        &[],
    );
    wait_state(&at, "totals", "running");
    wait_state(&at, "ingested", "running");
    let listed = || wirectl_json(&at, &["checkpoint", "list", "totals"]);
    let (before, checkpoints) = (dump(&at), listed());
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let unwritable = not_a_dir.join("sp");
    let unwritable = unwritable.to_str().unwrap();
    let retained = [
        "pipeline",
        "create",
        "-f",
        "x.yaml",
        "--checkpoints-retained",
        "1",
    ];
    fails_with(&wirectl(&at, &retained), 2, "--checkpoint-interval");
    let refused: &[(&[&str], &str)] = &[
        (
            &["checkpoint", "trigger", "ingested"],
            "does not checkpoint",
        ),
        (
            &["savepoint", "create", "totals", "--dir", "sp"],
            "is relative",
        ),
        (
            &["savepoint", "create", "totals", "--dir", unwritable],
            &format!("savepoint directory {unwritable} on node 1"),
        ),
        (&["checkpoint", "trigger", "nope"], "not found"),
    ];
    for (args, needle) in refused {
        fails_with(&wirectl(&at, args), 1, needle);
    }
    wirectl_json(&at, &["pipeline", "pause", "totals"]);
    wait_state(&at, "totals", "paused");
    let paused = wirectl(&at, &["checkpoint", "trigger", "totals"]);
    fails_with(&paused, 1, "pipeline `totals` is paused");
    let paused = wirectl(&at, &["savepoint", "create", "totals", "--dir", "/tmp/x"]);
    fails_with(&paused, 1, "pipeline `totals` is paused");
    wirectl_json(&at, &["pipeline", "resume", "totals"]);
    wait_state(&at, "totals", "running");
    assert_eq!(dump(&at), before, "a refused request changed the metadata");
    assert_eq!(listed(), checkpoints, "a refused request took a checkpoint");
    assert!(!not_a_dir.join("sp").exists());
}
