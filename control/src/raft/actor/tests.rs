use std::time::Duration;

use super::*;
use crate::raft::meta::RunOptions;

fn create(name: &str) -> MetaCommand {
    MetaCommand::CreatePipeline {
        name: name.into(),
        spec_yaml: "name: x".into(),
        options: RunOptions::default(),
    }
}

fn config(id: u64, dir: &Path, bootstrap: Bootstrap) -> MetaConfig {
    let mut c = MetaConfig::new(id, dir.join(format!("n{id}")), bootstrap);
    c.tick_interval = Duration::from_millis(20);
    c
}

async fn leader_of(handles: &[MetaHandle]) -> MetaHandle {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for h in handles {
            if h.status()
                .await
                .is_ok_and(|s| s.role == super::super::Role::Leader)
            {
                return h.clone();
            }
        }
        assert!(Instant::now() < deadline, "no leader within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A linearizable read, retried while elections settle (a busy CI machine can delay ticks).
async fn read(handle: &MetaHandle) -> MetaState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match handle.read(true).await {
            Ok(state) => return state,
            Err(err) => assert!(
                Instant::now() < deadline,
                "no linearizable read within 20 s: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_three(dir: &Path, transport: &LocalTransport) -> Vec<MetaHandle> {
    let members: Vec<(u64, String)> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", 7400 + id)))
        .collect();
    let mut handles = Vec::new();
    for id in 1..=3 {
        let c = config(id, dir, Bootstrap::InitialCluster(members.clone()));
        let h = start(c, Arc::new(transport.clone())).await.unwrap();
        transport.register(id, h.clone());
        handles.push(h);
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_actors_commit_forward_read_join_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let transport = LocalTransport::new();
    let handles = start_three(dir.path(), &transport).await;
    let leader = leader_of(&handles).await;
    let response = leader.propose(create("a")).await.unwrap();
    assert_eq!(response.version, Some(1));
    assert!(matches!(
        leader.propose(create("a")).await,
        Err(MetaError::PipelineExists { .. })
    ));
    let follower = handles.iter().find(|h| h.id() != leader.id()).unwrap();
    match follower.propose(create("b")).await {
        Err(MetaError::NotLeader {
            leader: Some((id, addr)),
        }) => {
            assert_eq!(id, leader.id());
            assert_eq!(addr, format!("127.0.0.1:{}", 7400 + id));
        }
        other => panic!("expected NotLeader from a follower, got {other:?}"),
    }
    // A linearizable read on a follower sees the acknowledged write.
    assert!(read(follower).await.pipelines.contains_key("a"));
    // Node 4 joins empty and catches up.
    let joiner = start(
        config(4, dir.path(), Bootstrap::Join),
        Arc::new(transport.clone()),
    )
    .await
    .unwrap();
    transport.register(4, joiner.clone());
    leader.add_node(4, "127.0.0.1:7404".into()).await.unwrap();
    assert!(matches!(
        leader.add_node(4, "x:1".into()).await,
        Err(MetaError::NodeExists { id: 4 })
    ));
    assert!(read(&joiner).await.pipelines.contains_key("a"));
    let status = leader.status().await.unwrap();
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 4);
    // Restart every node from its data dir: the metadata survives.
    let before = read(&leader).await;
    for h in handles.iter().chain([&joiner]) {
        transport.unregister(h.id());
        h.stop().await;
    }
    let mut restarted = Vec::new();
    for id in 1..=4 {
        assert!(has_state(&dir.path().join(format!("n{id}"))).unwrap());
        let h = start(
            config(id, dir.path(), Bootstrap::Join),
            Arc::new(transport.clone()),
        )
        .await
        .unwrap();
        transport.register(id, h.clone());
        restarted.push(h);
    }
    let leader = leader_of(&restarted).await;
    assert_eq!(read(&leader).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restores_into_a_fresh_single_member() {
    let dir = tempfile::tempdir().unwrap();
    let transport = LocalTransport::new();
    let handles = start_three(dir.path(), &transport).await;
    let leader = leader_of(&handles).await;
    leader.propose(create("a")).await.unwrap();
    leader.compact().await.unwrap();
    leader.propose(create("b")).await.unwrap();
    let backup = leader.backup().await.unwrap();
    let before = read(&leader).await;
    for h in &handles {
        h.stop().await;
    }
    let fresh = dir.path().join("restored");
    let single = RestoreMembers::Single {
        addr: "127.0.0.1:9999".into(),
    };
    restore_backup(&fresh, 1, &backup, single.clone()).unwrap();
    assert!(matches!(
        restore_backup(&fresh, 1, &backup, single),
        Err(MetaError::AlreadyInitialized { .. })
    ));
    let mut bad = backup.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        restore_backup(&dir.path().join("other"), 1, &bad, RestoreMembers::Original),
        Err(MetaError::Decode { field: "crc", .. })
    ));
    let mut c = MetaConfig::new(1, &fresh, Bootstrap::Join);
    c.tick_interval = Duration::from_millis(20);
    let h = start(c, Arc::new(LocalTransport::new())).await.unwrap();
    let h = leader_of(&[h]).await;
    let after = read(&h).await;
    assert_eq!(after.pipelines, before.pipelines);
    assert_eq!(after.nodes.keys().copied().collect::<Vec<_>>(), vec![1]);
    h.propose(create("c")).await.unwrap();
}
