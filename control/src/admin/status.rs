//! `ClusterStatus` and `CreateBackup`: this node's view of the group, with the members'
//! health as the leader sees it.

use std::time::Duration;

use tonic::Status;

use super::{convert, forward, AdminServer};
use crate::proto::admin::{
    ClusterStatusRequest, ClusterStatusResponse, CreateBackupResponse, Member,
};
use crate::raft::{MemberStatus, MetaStatus, Role};

/// A member the leader has not heard from for this long is `unreachable`.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);
/// A member this many entries behind the leader's commit index is `lagging`.
const LAGGING_ENTRIES: u64 = 100;

/// This node's term, commit and applied index; members as the leader sees them (asked of the
/// leader when this node is a follower; `unknown` health when it cannot be asked).
pub async fn cluster_status(
    server: &AdminServer,
    forwarded: bool,
) -> Result<ClusterStatusResponse, Status> {
    let status = server
        .meta
        .status()
        .await
        .map_err(|err| convert::status(&err))?;
    let mut answer = local(&status);
    let leader = status.leader.zip(status.leader_addr.clone());
    if status.role == Role::Leader || forwarded || leader.is_none() {
        return Ok(answer);
    }
    // The leader knows the members' health; a follower only knows its own view.
    if let Ok(mut leader) =
        forward::leader(server.node_id, &server.transport.dialer(), leader, false).await
    {
        let request = leader.request(ClusterStatusRequest {});
        if let Ok(view) = leader.client.cluster_status(request).await {
            answer.members = view.into_inner().members;
        }
    }
    Ok(answer)
}

fn local(status: &MetaStatus) -> ClusterStatusResponse {
    let leading = status.role == Role::Leader;
    ClusterStatusResponse {
        node_id: status.id,
        leader_id: status.leader.unwrap_or(0),
        leader_address: status.leader_addr.clone().unwrap_or_default(),
        term: status.term,
        commit_index: status.commit,
        applied_index: status.applied,
        members: status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| member(m, status, leading))
            .collect(),
    }
}

fn member(m: &MemberStatus, status: &MetaStatus, leading: bool) -> Member {
    let role = if Some(m.id) == status.leader {
        "leader"
    } else {
        "follower"
    };
    let health = if !leading {
        "unknown"
    } else if m.id == status.id {
        "ok"
    } else {
        health(m, status.commit)
    };
    Member {
        id: m.id,
        address: m.addr.clone().unwrap_or_default(),
        role: role.to_string(),
        health: health.to_string(),
        last_contact_ms: m
            .last_contact_ms
            .map_or(-1, |ms| ms.min(i64::MAX as u64) as i64),
        match_index: m.match_index.unwrap_or(0),
    }
}

fn health(m: &MemberStatus, commit: u64) -> &'static str {
    match m.last_contact_ms {
        None => "unreachable",
        Some(ms) if Duration::from_millis(ms) > UNREACHABLE_AFTER => "unreachable",
        _ if m.match_index.unwrap_or(0) + LAGGING_ENTRIES < commit => "lagging",
        _ => "ok",
    }
}

/// A backup of the metadata on this node (the caller made a linearizable read first).
pub async fn backup(server: &AdminServer) -> Result<CreateBackupResponse, Status> {
    let snapshot = server
        .meta
        .backup()
        .await
        .map_err(|err| convert::status(&err))?;
    Ok(CreateBackupResponse { snapshot })
}
