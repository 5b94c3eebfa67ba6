//! One pipeline spread over the cores of three real `wire start` nodes on 127.0.0.1: rows
//! cross nodes over the exchange, and the output equals `wire run`'s on one node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use wire_tests::cluster::{
    create, start_cluster, wait_for_leader, wait_state, wirectl_json, WireNode,
};
use wire_tests::wire_bin;

const ELECTION: Duration = Duration::from_secs(15);

/// Nexmark q5 (hopping-window bid counts per auction, the hottest per window) into a file
/// sink at `out`.
fn q5_spec(dir: &Path, out: &Path) -> PathBuf {
    let path = dir.join("q5.yaml");
    let yaml = format!(
        "name: q5
sources:
  bids: {{type: nexmark, stream: bid, events: 300000, seed: 5}}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {{type: hop, size: 10s, slide: 2s}}
    aggregate:
      num: count(*)
  - name: hottest
    from: per_auction
    top: {{n: 1, order_by: num desc, group_by: [window_end], with_ties: true}}
sinks:
  out: {{type: file, path: {}, format: jsonl, from: hottest}}
",
        out.display()
    );
    std::fs::write(&path, yaml).expect("spec file");
    path
}

fn sorted_rows(dir: &Path) -> Vec<String> {
    let mut rows: Vec<String> = wire_tests::read_jsonl_dir(dir)
        .iter()
        .map(Value::to_string)
        .collect();
    rows.sort();
    rows
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

    let reference = dir.path().join("reference");
    std::fs::create_dir_all(&reference).expect("reference dir");
    let spec = q5_spec(&reference, &reference.join("out"));
    let ran = std::process::Command::new(wire_bin())
        .args(["run", "--no-progress", "--no-pin", "--cores", "1"])
        .arg("--data-dir")
        .arg(reference.join("data"))
        .arg(&spec)
        .output()
        .expect("wire run");
    assert!(ran.status.success(), "{ran:?}");
    let expected = sorted_rows(&reference.join("out"));
    assert!(expected.len() > 10, "{} rows", expected.len());
    let rows = sorted_rows(&out);
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows == expected,
        "the spread run's rows differ from wire run's"
    );
}
