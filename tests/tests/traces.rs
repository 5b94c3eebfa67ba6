//! `--otlp-endpoint` end to end: the real `wire` binary exports its spans over OTLP/HTTP to a
//! receiver that decodes the export requests with the official opentelemetry-proto types
//! (`wire_tests::otlp`). A checkpointed `wire run` sends each checkpoint as one trace
//! (trigger, barriers, acks, commit under a root `checkpoint` span) and its restore as
//! another; a `wire start` cluster sends its elections, applied commands, conf changes and
//! admin calls; an unreachable collector costs a warning and nothing else.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use wire_tests::cluster::{
    cluster_status, free_port, initial_cluster, wait_for, wait_for_leader, WireNode,
};
use wire_tests::metrics::{q5_file, serial};
use wire_tests::otlp::{Receiver, Span};
use wire_tests::wire_bin;

const WAIT: Duration = Duration::from_secs(30);

/// Nexmark q5 over `events` bids at 20,000 events/s into a file sink in `dir`.
fn q5(dir: &Path, events: u64) -> PathBuf {
    q5_file(dir, &format!("events: {events}, rate: 20000"))
}

/// `wire run FILE` on two unpinned cores with checkpoints every 200 ms, exporting to `otlp`.
fn wire_run(file: &Path, dir: &Path, otlp: &str) -> Output {
    Command::new(wire_bin())
        .arg("run")
        .arg(file)
        .args(["--cores", "2", "--no-pin", "--no-progress"])
        .args(["--checkpoint-interval", "200ms", "--otlp-endpoint", otlp])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("wire run")
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[test]
fn each_checkpoint_is_one_trace_and_a_restore_another() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let file = q5(dir.path(), 40_000);
    let out = wire_run(&file, dir.path(), &receiver.endpoint());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wire run failed:\n{stderr}");
    assert!(!stderr.contains("cannot export traces"), "{stderr}");
    // The exporter flushes at exit: everything is in by now.
    let spans = receiver.spans();
    assert!(receiver.requests() >= 1);
    let complete: Vec<&Span> = named(&spans, "checkpoint")
        .into_iter()
        .filter(|s| s.attr("outcome") == Some("complete") && s.attr("last").is_none())
        .collect();
    assert!(
        !complete.is_empty(),
        "no completed periodic checkpoint among {} spans: {:?}",
        spans.len(),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for root in &complete {
        assert_eq!(root.service, "wire-run");
        assert_eq!(root.attr("pipeline"), Some("q5"));
        assert!(
            root.parent_span_id.is_empty(),
            "a checkpoint is its trace's root"
        );
        let id = root.attr("checkpoint").expect("checkpoint id");
        let kids = children(&spans, root);
        let mut names: Vec<&str> = kids.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        for phase in ["acks", "barriers", "commit", "trigger"] {
            assert!(
                names.contains(&phase),
                "checkpoint {id}: children {names:?}"
            );
        }
        for kid in &kids {
            assert_eq!(kid.attr("checkpoint"), Some(id), "{}", kid.name);
            assert!(kid.start_ns >= root.start_ns && kid.end_ns <= root.end_ns);
        }
        // The phases follow each other: barriers end before the commit starts.
        let phase = |name: &str| kids.iter().find(|s| s.name == name).copied();
        let (barriers, commit) = (phase("barriers").unwrap(), phase("commit").unwrap());
        assert!(barriers.end_ns <= commit.start_ns);
        let bytes: u64 = root.attr("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
        assert!(bytes > 0, "checkpoint {id} wrote {bytes} bytes");
        assert_eq!(phase("acks").unwrap().attr("acks").map(|_| ()), Some(()));
    }
    // The run's last checkpoint is traced too.
    assert!(named(&spans, "checkpoint")
        .iter()
        .any(|s| s.attr("last") == Some("true") && s.attr("outcome") == Some("complete")));

    // A second run restores the last checkpoint: its restore is one trace with the cores'
    // part in it.
    let second = Receiver::start();
    let out = wire_run(&file, dir.path(), &second.endpoint());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = second.spans();
    let restore = named(&spans, "restore")
        .into_iter()
        .find(|s| s.attr("checkpoint").is_some())
        .unwrap_or_else(|| panic!("no restore span with a checkpoint: {spans:#?}"));
    assert!(restore.parent_span_id.is_empty());
    assert!(restore.attr("cores_ms").is_some(), "{restore:?}");
    let kids = children(&spans, restore);
    let names: Vec<&str> = kids.iter().map(|s| s.name.as_str()).collect();
    for part in ["read", "settle_sinks", "cores"] {
        assert!(names.contains(&part), "restore children {names:?}");
    }
}

#[test]
fn an_unreachable_collector_costs_one_warning_and_nothing_else() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let file = q5(dir.path(), 20_000);
    let out = wire_run(&file, dir.path(), &nobody);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the run fails with no collector:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot export traces").count(),
        1,
        "one warning per outage:\n{stderr}"
    );
    assert!(stderr.contains("WARN"), "{stderr}");
    let rows = std::fs::read_dir(dir.path().join("out")).map_or(0, |d| d.count());
    assert!(rows > 0, "the run wrote its output");

    let bad = Command::new(wire_bin())
        .args(["run", "--otlp-endpoint", "127.0.0.1:4318"])
        .arg(&file)
        .output()
        .expect("wire run");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--otlp-endpoint `127.0.0.1:4318`"),
        "{stderr}"
    );
}

#[test]
fn a_cluster_traces_elections_applied_commands_conf_changes_and_admin_calls() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let otlp = ["--otlp-endpoint".to_string(), receiver.endpoint()];
    let mut nodes: Vec<WireNode> = (1..=3)
        .map(|id| WireNode::new(dir.path(), id, &[]))
        .collect();
    let list: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    for node in &mut nodes {
        node.args = vec!["--initial-cluster".into(), initial_cluster(&list)];
        node.args.extend(otlp.iter().cloned());
        node.start();
    }
    let leader = wait_for_leader(&nodes, WAIT);
    let endpoint = nodes
        .iter()
        .find(|n| n.id == leader)
        .map(|n| n.addr.clone())
        .expect("leader");
    let status = nodes[0].ctl(&["cluster", "status"]);
    assert!(status.status.success(), "{status:?}");
    let mut fourth = WireNode::new(dir.path(), 4, &["--join".to_string(), endpoint.clone()]);
    fourth.args.extend(otlp.iter().cloned());
    fourth.start();
    nodes.push(fourth);
    wait_for("node 4 is a member", WAIT, || {
        let status = cluster_status(&endpoint)?;
        let members = status["members"].as_array().map_or(0, Vec::len);
        (members == 4)
            .then_some(())
            .ok_or(format!("{members} members"))
    });
    let spans = receiver.wait_for(WAIT, |spans| {
        let has = |name: &str| spans.iter().any(|s| s.name == name);
        has("raft.election") && has("raft.conf_change") && has("admin") && has("raft.apply")
    });
    let won = named(&spans, "raft.election")
        .into_iter()
        .find(|s| s.attr("outcome") == Some("won"))
        .unwrap_or_else(|| panic!("no election won among {spans:#?}"));
    assert_eq!(won.service, "wire-node");
    assert_eq!(won.attr("leader"), won.attr("node"));
    let added = named(&spans, "raft.conf_change")
        .into_iter()
        .find(|s| s.attr("member") == Some("4"))
        .unwrap_or_else(|| panic!("no conf change adding node 4: {spans:#?}"));
    assert_eq!(added.attr("change"), Some("AddNode"));
    // Applied commands name the command, never its fields.
    let applied = named(&spans, "raft.apply");
    assert!(applied
        .iter()
        .all(|s| s.attr("command").is_some_and(|c| !c.is_empty())));
    assert!(applied.iter().all(|s| s.attr("index").is_some()));
    let admin = named(&spans, "admin");
    assert!(
        admin
            .iter()
            .any(|s| s.attr("method") == Some("ClusterStatus"))
            && admin.iter().any(|s| s.attr("method") == Some("AddNode")),
        "admin calls: {:?}",
        admin.iter().map(|s| s.attr("method")).collect::<Vec<_>>()
    );
    for node in &mut nodes {
        node.stop();
    }
}
