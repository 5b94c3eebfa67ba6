//! The sans-IO metadata node: raft-rs `RawNode` over [`RaftStorage`] plus the [`MetaState`]
//! it applies committed entries to.
//!
//! No clocks, sockets or threads: the caller ticks it, steps inbound messages, proposes, and
//! calls [`MetaNode::ready`], which persists and syncs what raft asks for *before* it returns
//! the messages to send, applies committed entries, and reports results by request id. The
//! ractor actor and the deterministic simulation both drive it the same way.

use ::raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Message, Snapshot};
use ::raft::{Config, RawNode, StateRole};

use super::disk::Disk;
use super::meta::{MetaCommand, MetaResponse, MetaState};
use super::storage::RaftStorage;
use super::MetaError;

/// A caller-chosen id that matches a proposal or read to its result.
pub type RequestId = u64;

/// How a node with an empty data directory starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A founding member: every founder gets the same `(id, gRPC address)` list.
    InitialCluster(Vec<(u64, String)>),
    /// Start empty and wait for a member to add this node (`add_node` on the leader).
    Join,
}

/// Raft settings of a [`MetaNode`].
#[derive(Clone, Debug)]
pub struct MetaNodeConfig {
    /// This node's id (non-zero).
    pub id: u64,
    /// Ticks without a leader before an election (randomised in `[n, max)`).
    pub election_tick: usize,
    /// The randomised election timeout's exclusive bound; 0 means `2 * election_tick`. The
    /// simulation sets `election_tick + 1` (no randomness inside raft-rs, whose draw is not
    /// seedable) and draws `election_tick` per node from its own seeded generator.
    pub election_tick_max: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Take a snapshot and drop the log prefix once this many entries were applied after the
    /// last snapshot.
    pub compact_after_entries: u64,
}

impl MetaNodeConfig {
    /// Defaults for `id`: election after 10 ticks, heartbeat every 2, compaction every 10,000.
    pub fn new(id: u64) -> MetaNodeConfig {
        MetaNodeConfig {
            id,
            election_tick: 10,
            election_tick_max: 0,
            heartbeat_tick: 2,
            compact_after_entries: 10_000,
        }
    }
}

/// An entry this node applied, for checkers and tracing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// The entry's context (proposer node id and request id, 16 bytes) or empty.
    pub context: Vec<u8>,
    /// The entry's data (an encoded command, a conf change, or empty for a leader's no-op).
    pub data: Vec<u8>,
}

/// What one [`MetaNode::ready`] step did and what the caller must do next.
#[derive(Debug, Default)]
pub struct MetaReady {
    /// Messages to send; what they depend on is already synced.
    pub messages: Vec<Message>,
    /// Results of this node's own proposals, applied in this step.
    pub applied: Vec<(RequestId, Result<MetaResponse, MetaError>)>,
    /// Linearizable reads that may now be served from [`MetaNode::state`].
    pub reads: Vec<RequestId>,
    /// Every entry applied in this step, in order.
    pub applied_entries: Vec<AppliedEntry>,
    /// The index of a snapshot installed in this step (the state jumped to it).
    pub installed_snapshot: Option<u64>,
    /// Entries appended (and synced) in this step.
    pub persisted_entries: usize,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes.
    Leader,
    /// Follows a leader (or waits for one).
    Follower,
    /// Campaigning.
    Candidate,
    /// Checking it could win before campaigning.
    PreCandidate,
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// Registered gRPC address.
    pub addr: Option<String>,
    /// Whether it is a voter (registered nodes not yet or no longer voters show `false`).
    pub voter: bool,
    /// Highest log index known to be replicated there (leader only).
    pub match_index: Option<u64>,
    /// Milliseconds since this node last heard from it (filled by the actor).
    pub last_contact_ms: Option<u64>,
}

/// A node's view of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaStatus {
    /// This node.
    pub id: u64,
    /// Its role.
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The leader's gRPC address.
    pub leader_addr: Option<String>,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Index of the latest snapshot (the log starts after it).
    pub snapshot_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Voters and registered nodes, by id.
    pub members: Vec<MemberStatus>,
}

/// The sans-IO metadata node.
pub struct MetaNode<D: Disk> {
    raw: RawNode<RaftStorage<D>>,
    state: MetaState,
    applied: u64,
    compact_after_entries: u64,
    /// Set when an added voter must be able to start from a snapshot that includes it.
    compact_requested: bool,
    pending_reads: Vec<(u64, RequestId)>,
    /// The election this node campaigns in, traced until it leads or follows.
    election: Option<tracing::Span>,
}

impl<D: Disk> MetaNode<D> {
    /// Opens the node on `disk`: resumes from its raft state when there is any (ignoring
    /// `bootstrap`), else bootstraps as `bootstrap` says.
    pub fn open(
        config: &MetaNodeConfig,
        disk: D,
        bootstrap: &Bootstrap,
        logger: &slog::Logger,
    ) -> Result<MetaNode<D>, MetaError> {
        let mut store = RaftStorage::open(disk)?;
        if !store.is_initialized() {
            if let Bootstrap::InitialCluster(members) = bootstrap {
                store.apply_snapshot(&founding_snapshot(config.id, members)?)?;
            }
        }
        let snap = store.snapshot_ref();
        let state = if snap.get_metadata().index == 0 {
            MetaState::default()
        } else {
            MetaState::decode(&snap.data)?
        };
        let applied = snap.get_metadata().index;
        let raft_config = Config {
            id: config.id,
            election_tick: config.election_tick,
            min_election_tick: config.election_tick,
            max_election_tick: config.election_tick_max,
            heartbeat_tick: config.heartbeat_tick,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Config::default()
        };
        raft_config.validate()?;
        let raw = RawNode::new(&raft_config, store, logger)?;
        Ok(MetaNode {
            raw,
            state,
            applied,
            compact_after_entries: config.compact_after_entries.max(1),
            compact_requested: false,
            pending_reads: Vec::new(),
            election: None,
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// The metadata as applied on this node.
    pub fn state(&self) -> &MetaState {
        &self.state
    }

    /// The highest applied index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The log store (read-only).
    pub fn store(&self) -> &RaftStorage<D> {
        self.raw.store()
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The leader this node knows of (id and registered address).
    pub fn leader(&self) -> Option<(u64, String)> {
        let id = self.raw.raft.leader_id;
        if id == 0 {
            return None;
        }
        let addr = self
            .state
            .nodes
            .get(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Steps an inbound raft message (errors for stale or foreign messages are dropped, as raft
    /// tolerates loss).
    pub fn step(&mut self, message: Message) {
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "raft message dropped"
            );
        }
    }

    /// Proposes `command`; its result comes back in [`MetaReady::applied`] under `request`.
    /// `AddNode`/`RemoveNode` become conf changes. Only the leader accepts proposals.
    pub fn propose(&mut self, command: &MetaCommand, request: RequestId) -> Result<(), MetaError> {
        self.check_leader()?;
        match command {
            MetaCommand::AddNode { .. } | MetaCommand::RemoveNode { .. } => {
                self.propose_conf_change(command, request)
            }
            _ => Ok(self.raw.propose(self.context(request), command.encode())?),
        }
    }

    /// Proposes a membership change with its registration (`AddNode` or `RemoveNode`).
    pub fn propose_conf_change(
        &mut self,
        command: &MetaCommand,
        request: RequestId,
    ) -> Result<(), MetaError> {
        self.check_leader()?;
        if self.raw.raft.pending_conf_index > self.applied {
            return Err(MetaError::ConfChangePending);
        }
        let mut cc = ConfChange::default();
        match command {
            MetaCommand::AddNode { id, addr } => {
                self.state.check_add_node(*id, addr)?;
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = *id;
            }
            MetaCommand::RemoveNode { id } => {
                self.state.check_remove_node(*id)?;
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = *id;
            }
            _ => {
                return Err(MetaError::Invalid {
                    reason: "not a membership change".into(),
                })
            }
        }
        cc.context = command.encode().into();
        Ok(self.raw.propose_conf_change(self.context(request), cc)?)
    }

    /// Asks for a linearizable read; `request` comes back in [`MetaReady::reads`] once this
    /// node has applied everything committed when the leader confirmed its leadership. Without
    /// a known leader it fails at once (raft would drop the request silently).
    pub fn read_index(&mut self, request: RequestId) -> Result<(), MetaError> {
        if self.raw.raft.leader_id == ::raft::INVALID_ID {
            return Err(MetaError::NotLeader { leader: None });
        }
        self.raw.read_index(request.to_le_bytes().to_vec());
        Ok(())
    }

    /// Whether [`MetaNode::ready`] has work.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready() || self.pending_reads.iter().any(|(i, _)| *i <= self.applied)
    }

    fn check_leader(&self) -> Result<(), MetaError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(MetaError::NotLeader {
                leader: self.leader(),
            })
        }
    }

    fn context(&self, request: RequestId) -> Vec<u8> {
        let mut ctx = self.id().to_le_bytes().to_vec();
        ctx.extend_from_slice(&request.to_le_bytes());
        ctx
    }
}

/// The snapshot every founder starts from: index 1, term 1, the founders as voters and as
/// registered nodes. Identical on every founder given the same list.
fn founding_snapshot(id: u64, members: &[(u64, String)]) -> Result<Snapshot, MetaError> {
    let mut state = MetaState::default();
    for (member, addr) in members {
        state.apply(
            1,
            &MetaCommand::AddNode {
                id: *member,
                addr: addr.clone(),
            },
        )?;
    }
    if !state.nodes.contains_key(&id) {
        return Err(MetaError::Invalid {
            reason: format!("node {id} is not in its own initial cluster list"),
        });
    }
    let voters: Vec<u64> = state.nodes.keys().copied().collect();
    let mut snap = Snapshot {
        data: state.encode().into(),
        ..Default::default()
    };
    let meta = snap.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.set_conf_state(ConfState::from((voters, vec![])));
    Ok(snap)
}

fn conf_state_of<D: Disk>(raw: &RawNode<RaftStorage<D>>) -> ConfState {
    raw.raft.prs().conf().to_conf_state()
}

mod ready;

pub(crate) use ready::decode_backup;
