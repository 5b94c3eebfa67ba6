//! The metadata actor: a ractor actor that drives a [`MetaNode`] over real files on the
//! process's tokio runtime, with [`MetaHandle`] as its clonable front.
//!
//! It ticks every `tick_interval` (100 ms; an election after 10 ticks without a leader), steps
//! inbound messages, runs the ready step after every event (entries and hard state are
//! fdatasync'ed before the messages that depend on them go to the [`Transport`]), answers
//! proposals when they apply, and fails requests that get no answer within `request_timeout`.
//! A storage error stops the actor (the node must restart and recover).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::raft::eraftpb::Message;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::disk::FsDisk;
use super::meta::{MetaCommand, MetaResponse, MetaState};
use super::node::{decode_backup, Bootstrap, MetaNode, MetaNodeConfig, MetaStatus, RequestId};
use super::storage::RaftStorage;
use super::{raft_logger, MetaError};

/// Sends raft messages to their `to` nodes. Implementations must not block (queue and drop
/// when full: raft tolerates loss) and are called from the metadata actor.
pub trait Transport: Send + Sync + 'static {
    /// Sends `messages`, each to its `to` node.
    fn send(&self, messages: Vec<Message>);
}

/// How to run the metadata group on this node.
#[derive(Clone, Debug)]
pub struct MetaConfig {
    /// This node's id (non-zero).
    pub id: u64,
    /// The node's data directory; raft files live in `<data_dir>/raft/`.
    pub data_dir: PathBuf,
    /// How to start when `<data_dir>/raft/` holds no state (ignored otherwise).
    pub bootstrap: Bootstrap,
    /// Time per raft tick.
    pub tick_interval: Duration,
    /// Raft settings (election and heartbeat ticks, compaction threshold).
    pub raft: MetaNodeConfig,
    /// How long a proposal or read may wait for its answer.
    pub request_timeout: Duration,
}

impl MetaConfig {
    /// Defaults: 100 ms ticks, election after 10 ticks, heartbeat every 2, compaction every
    /// 10,000 entries, 5 s request timeout.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>, bootstrap: Bootstrap) -> MetaConfig {
        MetaConfig {
            id,
            data_dir: data_dir.into(),
            bootstrap,
            tick_interval: Duration::from_millis(100),
            raft: MetaNodeConfig::new(id),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Which voters a restored data directory starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreMembers {
    /// The backup's own voters: restore the same backup into every original member's (empty)
    /// data directory, then start them all.
    Original,
    /// This node alone, at `addr`; the other registrations are dropped. Add nodes back with
    /// `add_node` (their data directories empty, started with `Bootstrap::Join`).
    Single {
        /// This node's gRPC address.
        addr: String,
    },
}

/// Whether `data_dir` holds raft state (a node started there resumes from it).
pub fn has_state(data_dir: &Path) -> Result<bool, MetaError> {
    let dir = data_dir.join("raft");
    if !dir.exists() {
        return Ok(false);
    }
    let disk = FsDisk::open(&dir).map_err(io_error(&dir))?;
    Ok(RaftStorage::open(disk)?.is_initialized())
}

/// Writes a fresh raft state from `backup` into `<data_dir>/raft/`, offline (the node is not
/// running). Refuses a directory that already holds raft state.
pub fn restore_backup(
    data_dir: &Path,
    node_id: u64,
    backup: &[u8],
    members: RestoreMembers,
) -> Result<(), MetaError> {
    let (mut snap, mut state) = decode_backup(backup)?;
    let dir = data_dir.join("raft");
    let disk = FsDisk::open(&dir).map_err(io_error(&dir))?;
    let mut store = RaftStorage::open(disk)?;
    if store.is_initialized() {
        return Err(MetaError::AlreadyInitialized {
            path: dir.display().to_string(),
        });
    }
    match members {
        RestoreMembers::Original => {
            if !snap
                .get_metadata()
                .get_conf_state()
                .voters
                .contains(&node_id)
            {
                return Err(MetaError::UnknownNode { id: node_id });
            }
        }
        RestoreMembers::Single { addr } => {
            state.nodes.clear();
            state.apply(
                snap.get_metadata().index,
                &MetaCommand::AddNode { id: node_id, addr },
            )?;
            let conf = ::raft::eraftpb::ConfState::from((vec![node_id], vec![]));
            snap.mut_metadata().set_conf_state(conf);
            snap.data = state.encode().into();
        }
    }
    store.apply_snapshot(&snap)?;
    Ok(())
}

fn io_error(dir: &Path) -> impl FnOnce(std::io::Error) -> MetaError + '_ {
    move |source| {
        MetaError::from(super::StorageError::Io {
            file: dir.display().to_string(),
            op: "open",
            source,
        })
    }
}

/// Starts the metadata actor for `config` on the current tokio runtime; outbound messages go
/// to `transport`. Resumes from `<data_dir>/raft/` when it holds state.
pub async fn start(
    config: MetaConfig,
    transport: Arc<dyn Transport>,
) -> Result<MetaHandle, MetaError> {
    let dir = config.data_dir.join("raft");
    let disk = FsDisk::open(&dir).map_err(io_error(&dir))?;
    let node = MetaNode::open(&config.raft, disk, &config.bootstrap, &raft_logger())?;
    let args = Box::new(ActorArgs {
        node,
        transport,
        config: config.clone(),
    });
    let (actor, _join) = Actor::spawn(None, MetaActor, args)
        .await
        .map_err(|_| MetaError::Stopped)?;
    Ok(MetaHandle {
        actor,
        id: config.id,
        timeout: config.request_timeout,
    })
}

/// A clonable handle to this node's metadata actor.
#[derive(Clone)]
pub struct MetaHandle {
    actor: ActorRef<MetaMsg>,
    id: u64,
    timeout: Duration,
}

impl MetaHandle {
    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Proposes a command and waits until it applies. On a follower: `NotLeader` naming the
    /// leader, so the caller can forward. `AddNode`/`RemoveNode` become membership changes.
    pub async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, MetaError> {
        self.call(|reply| MetaMsg::Propose(command, reply)).await?
    }

    /// The metadata; `linearizable` waits for a read index confirmed by the leader (works on
    /// followers too), otherwise this node's applied state is returned at once.
    pub async fn read(&self, linearizable: bool) -> Result<MetaState, MetaError> {
        self.call(|reply| MetaMsg::Read(linearizable, reply))
            .await?
    }

    /// This node's view of the group.
    pub async fn status(&self) -> Result<MetaStatus, MetaError> {
        self.call(MetaMsg::Status).await
    }

    /// Adds `id` at `addr` as a voter and registers it (on the leader).
    pub async fn add_node(&self, id: u64, addr: String) -> Result<MetaResponse, MetaError> {
        self.propose(MetaCommand::AddNode { id, addr }).await
    }

    /// Removes voter `id` and its registration (on the leader).
    pub async fn remove_node(&self, id: u64) -> Result<MetaResponse, MetaError> {
        self.propose(MetaCommand::RemoveNode { id }).await
    }

    /// Steps an inbound raft message (from the RaftService); never blocks.
    pub fn step(&self, message: Message) -> Result<(), MetaError> {
        self.actor
            .cast(MetaMsg::Step(message))
            .map_err(|_| MetaError::Stopped)
    }

    /// Snapshots now and drops the log prefix; returns the snapshot index.
    pub async fn compact(&self) -> Result<u64, MetaError> {
        self.call(MetaMsg::Compact).await?
    }

    /// A backup of the metadata (a snapshot at this node's applied index; ask the leader after a
    /// linearizable read for the newest).
    pub async fn backup(&self) -> Result<Vec<u8>, MetaError> {
        self.call(MetaMsg::Backup).await?
    }

    /// Stops the actor and waits for it (the data directory keeps its state).
    pub async fn stop(&self) {
        let _ = self
            .actor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> MetaMsg,
    ) -> Result<T, MetaError> {
        let limit = Some(self.timeout + Duration::from_secs(1));
        match self.actor.call(msg, limit).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            Ok(ractor::rpc::CallResult::Timeout) => Err(MetaError::Timeout),
            _ => Err(MetaError::Stopped),
        }
    }
}

/// An in-process [`Transport`] for tests: delivers to handles registered by node id.
#[derive(Clone, Default)]
pub struct LocalTransport {
    peers: Arc<Mutex<HashMap<u64, MetaHandle>>>,
}

impl LocalTransport {
    /// An empty transport.
    pub fn new() -> LocalTransport {
        LocalTransport::default()
    }

    /// Delivers messages for `id` to `handle` from now on.
    pub fn register(&self, id: u64, handle: MetaHandle) {
        self.peers
            .lock()
            .expect("transport lock")
            .insert(id, handle);
    }

    /// Drops messages for `id` from now on (a crashed or cut-off node).
    pub fn unregister(&self, id: u64) {
        self.peers.lock().expect("transport lock").remove(&id);
    }
}

impl Transport for LocalTransport {
    fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.lock().expect("transport lock");
        for m in messages {
            if let Some(peer) = peers.get(&m.to) {
                let _ = peer.step(m);
            }
        }
    }
}

/// Messages of the metadata actor.
pub enum MetaMsg {
    /// A raft tick.
    Tick,
    /// An inbound raft message.
    Step(Message),
    /// A proposal.
    Propose(MetaCommand, RpcReplyPort<Result<MetaResponse, MetaError>>),
    /// A read (linearizable or not).
    Read(bool, RpcReplyPort<Result<MetaState, MetaError>>),
    /// A status query.
    Status(RpcReplyPort<MetaStatus>),
    /// Compact now.
    Compact(RpcReplyPort<Result<u64, MetaError>>),
    /// Make a backup.
    Backup(RpcReplyPort<Result<Vec<u8>, MetaError>>),
}

struct ActorArgs {
    node: MetaNode<FsDisk>,
    transport: Arc<dyn Transport>,
    config: MetaConfig,
}

struct MetaActor;

struct ActorState {
    node: MetaNode<FsDisk>,
    transport: Arc<dyn Transport>,
    config: MetaConfig,
    next_request: RequestId,
    proposals: HashMap<RequestId, (Instant, RpcReplyPort<Result<MetaResponse, MetaError>>)>,
    reads: HashMap<RequestId, (Instant, RpcReplyPort<Result<MetaState, MetaError>>)>,
    last_contact: HashMap<u64, Instant>,
}

impl Actor for MetaActor {
    type Msg = MetaMsg;
    type State = ActorState;
    type Arguments = Box<ActorArgs>;

    async fn pre_start(
        &self,
        myself: ActorRef<MetaMsg>,
        args: Box<ActorArgs>,
    ) -> Result<ActorState, ActorProcessingErr> {
        let ActorArgs {
            node,
            transport,
            config,
        } = *args;
        myself.send_interval(config.tick_interval, || MetaMsg::Tick);
        tracing::info!(
            node = config.id,
            applied = node.applied(),
            "metadata group started"
        );
        // Request ids start from the wall clock so that ids from before a restart, which come
        // back when the log is re-applied, never match a new request.
        let next_request = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Ok(ActorState {
            node,
            transport,
            config,
            next_request,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            last_contact: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<MetaMsg>,
        message: MetaMsg,
        state: &mut ActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.on_message(message);
        if let Err(error) = state.drive() {
            tracing::error!(
                node = state.config.id,
                error = &error as &dyn std::error::Error,
                "metadata group stopping"
            );
            return Err(Box::new(error));
        }
        Ok(())
    }
}

impl ActorState {
    fn on_message(&mut self, message: MetaMsg) {
        match message {
            MetaMsg::Tick => {
                self.node.tick();
                self.expire();
            }
            MetaMsg::Step(m) => {
                self.last_contact.insert(m.from, Instant::now());
                self.node.step(m);
            }
            MetaMsg::Propose(cmd, reply) => self.propose(cmd, reply),
            MetaMsg::Read(linearizable, reply) => self.read(linearizable, reply),
            MetaMsg::Status(reply) => {
                let _ = reply.send(self.status());
            }
            MetaMsg::Compact(reply) => {
                let _ = reply.send(self.node.compact());
            }
            MetaMsg::Backup(reply) => {
                let _ = reply.send(self.node.backup());
            }
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request = self.next_request.wrapping_add(1);
        self.next_request
    }

    fn propose(&mut self, cmd: MetaCommand, reply: RpcReplyPort<Result<MetaResponse, MetaError>>) {
        let request = self.request_id();
        match self.node.propose(&cmd, request) {
            Ok(()) => {
                self.proposals.insert(
                    request,
                    (Instant::now() + self.config.request_timeout, reply),
                );
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn read(&mut self, linearizable: bool, reply: RpcReplyPort<Result<MetaState, MetaError>>) {
        if !linearizable {
            let _ = reply.send(Ok(self.node.state().clone()));
            return;
        }
        let request = self.request_id();
        match self.node.read_index(request) {
            Ok(()) => {
                let deadline = Instant::now() + self.config.request_timeout;
                self.reads.insert(request, (deadline, reply));
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn status(&self) -> MetaStatus {
        let mut status = self.node.status();
        let now = Instant::now();
        for m in &mut status.members {
            if let Some(at) = self.last_contact.get(&m.id) {
                m.last_contact_ms = Some(now.duration_since(*at).as_millis() as u64);
            }
        }
        status
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<RequestId> = self
            .proposals
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, reply)) = self.proposals.remove(&id) {
                let _ = reply.send(Err(MetaError::Timeout));
            }
        }
        let expired: Vec<RequestId> = self
            .reads
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, reply)) = self.reads.remove(&id) {
                let _ = reply.send(Err(MetaError::Timeout));
            }
        }
    }

    /// Runs ready steps until raft has nothing more, sending and answering as it goes.
    fn drive(&mut self) -> Result<(), MetaError> {
        while self.node.has_ready() {
            let ready = self.node.ready()?;
            if !ready.messages.is_empty() {
                self.transport.send(ready.messages);
            }
            for (request, result) in ready.applied {
                if let Some((_, reply)) = self.proposals.remove(&request) {
                    let _ = reply.send(result);
                }
            }
            for request in ready.reads {
                if let Some((_, reply)) = self.reads.remove(&request) {
                    let _ = reply.send(Ok(self.node.state().clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
