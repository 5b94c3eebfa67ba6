//! The web dashboard served next to `/metrics`: one page ([`PAGE`], plain HTML and JS built
//! into the binary, no CDN) that polls [`state`] (`/api/dashboard`) every second and draws the
//! node, its pipelines with their operator graph, per-operator rates and backpressure, the
//! checkpoint history and each pipeline's file. Read-only: it only GETs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::process::Usage;
use super::{CheckpointEntry, Metrics, PlanShape};
use crate::raft::{MetaStatus, Role};

/// The page (`/` and `/dashboard`).
pub(super) const PAGE: &str = include_str!("dashboard/index.html");

#[derive(Serialize)]
struct State {
    /// On a `wire start` node: its raft view.
    node: Option<NodeState>,
    /// This process's memory and CPU.
    rss_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    /// The figures of `/metrics`, per pipeline and operator.
    top: super::top::Top,
    /// Per pipeline: its plan and checkpoint history.
    pipelines: BTreeMap<String, PipelineState>,
}

#[derive(Serialize)]
struct NodeState {
    id: u64,
    role: String,
    leader: Option<u64>,
    term: u64,
    applied: u64,
    members: Vec<(u64, Option<String>, bool)>,
}

#[derive(Serialize)]
struct PipelineState {
    plan: Option<PlanShape>,
    checkpoints: Vec<CheckpointEntry>,
}

/// The dashboard's JSON: `metrics`' figures and, on a node, its raft view `raft`.
pub(super) fn state(metrics: &Metrics, raft: Option<&MetaStatus>) -> Result<String, String> {
    let usage = Usage::read();
    let pipelines = metrics
        .pipelines()
        .into_iter()
        .map(|(name, sources, _)| {
            let checkpoints = sources
                .checkpoints
                .as_ref()
                .map(|c| c.history())
                .unwrap_or_default();
            let plan = sources.plan.as_deref().cloned();
            (name, PipelineState { plan, checkpoints })
        })
        .collect();
    let node = raft.map(|r| NodeState {
        id: r.id,
        role: match r.role {
            Role::Leader => "leader".into(),
            other => format!("{other:?}").to_lowercase(),
        },
        leader: r.leader,
        term: r.term,
        applied: r.applied,
        members: r
            .members
            .iter()
            .map(|m| (m.id, m.addr.clone(), m.voter))
            .collect(),
    });
    let state = State {
        node,
        rss_bytes: usage.rss_bytes,
        cpu_seconds: usage.cpu_seconds,
        top: metrics.top(),
        pipelines,
    };
    serde_json::to_string(&state).map_err(|err| format!("cannot encode the dashboard: {err}"))
}
