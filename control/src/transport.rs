//! Raft messages between nodes over gRPC: the RaftService server, which steps inbound
//! messages into this node's [`MetaHandle`], and [`GrpcTransport`], the raft actor's outbound
//! side.
//!
//! Outbound, each peer has a bounded queue and one task that connects lazily, sends batches
//! and reconnects with backoff. [`GrpcTransport::send`] only pushes into queues: it never
//! blocks the raft actor, and a full queue drops the message (raft retransmits what matters).
//! Runs on the process's tokio runtime.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

use crate::proto::raft::raft_service_client::RaftServiceClient;
use crate::proto::raft::raft_service_server::{RaftService, RaftServiceServer};
use crate::proto::raft::{ProposeAnswer, ProposeRequest, RaftAck, RaftBatch};
use crate::raft::{MetaCommand, MetaError, MetaHandle, Transport};

/// Messages queued for one peer at most; more are dropped until the peer catches up.
const PEER_QUEUE: usize = 1024;
/// Messages in one RPC at most.
const BATCH_MAX: usize = 256;
/// Largest gRPC message either side accepts (a snapshot of the metadata travels in one).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How this node opens connections to other members: over TLS with its certificate when the
/// node has TLS on, and from its own listen address when that is one address (not `0.0.0.0`
/// or `::`), so that peers and firewalls see the node's traffic come from the address it is
/// known by (on a host with several addresses, the kernel would otherwise pick one by route).
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    source: Option<IpAddr>,
    tls: Option<Arc<RwLock<ClientTlsConfig>>>,
}

impl Dialer {
    /// Connections from `listen`'s address, unless it is unspecified, with `tls` if given.
    /// `tls` may be replaced while the node runs (SIGHUP): later dials use the new one.
    pub fn new(listen: std::net::SocketAddr, tls: Option<Arc<RwLock<ClientTlsConfig>>>) -> Dialer {
        let ip = listen.ip();
        Dialer {
            source: (!ip.is_unspecified()).then_some(ip),
            tls,
        }
    }

    /// Whether connections between members use TLS (and so the RaftService checks that its
    /// callers are members).
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An endpoint for `address` with these timeouts, from this node's source address.
    pub fn endpoint(
        &self,
        address: &str,
        connect: Duration,
        request: Duration,
    ) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|err| format!("bad address {address}: {err}"))?;
        if let Some(tls) = &self.tls {
            let tls = tls.read().unwrap_or_else(|e| e.into_inner()).clone();
            let tls = tls.domain_name(crate::tls::host_of(address));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|err| format!("tls for {address}: {err}"))?;
        }
        Ok(endpoint
            .connect_timeout(connect)
            .timeout(request)
            .local_address(self.source))
    }
}

/// The RaftService: steps every message of an inbound batch into the local raft node.
pub struct RaftServer {
    node_id: u64,
    meta: MetaHandle,
    transport: GrpcTransport,
}

impl RaftServer {
    /// The tonic service for node `node_id`; senders' addresses are taught to `transport`.
    pub fn service(
        node_id: u64,
        meta: MetaHandle,
        transport: GrpcTransport,
    ) -> RaftServiceServer<RaftServer> {
        RaftServiceServer::new(RaftServer {
            node_id,
            meta,
            transport,
        })
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }
}

impl RaftServer {
    /// With TLS on, a caller must be the member it says it is: its client certificate (which
    /// the handshake checked against the cluster CA) must name the host of that member's
    /// address, the one this node knows or, for a sender it does not know yet (this node is
    /// joining), the one it gives. Without TLS the node serves only loopback or was started
    /// `--insecure`, and every caller is taken at its word.
    fn check_member<T>(
        &self,
        request: &Request<T>,
        from: u64,
        given: Option<&String>,
    ) -> Result<(), Status> {
        if !self.transport.dialer().has_tls() {
            return Ok(());
        }
        let denied = || Status::permission_denied("only cluster members may call RaftService");
        let known = self.transport.peers().get(&from).cloned();
        let address = match (known, given) {
            (Some(known), Some(given)) if !given.is_empty() && *given != known => {
                return Err(denied())
            }
            (Some(known), _) => known,
            (None, Some(given)) if !given.is_empty() => given.clone(),
            _ => return Err(denied()),
        };
        let certs = request.peer_certs().ok_or_else(denied)?;
        match certs.first() {
            Some(cert) if crate::tls::cert_names(cert, &address) => Ok(()),
            _ => {
                tracing::warn!(from, address = %address, "refused a RaftService call: its certificate does not name the member's host");
                Err(denied())
            }
        }
    }
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn send(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        let claimed = request.get_ref();
        self.check_member(&request, claimed.from, Some(&claimed.from_address))?;
        let batch = request.into_inner();
        if batch.to != self.node_id {
            return Err(Status::failed_precondition(format!(
                "this is node {}, not node {} (from node {}): check the members' addresses",
                self.node_id, batch.to, batch.from
            )));
        }
        let messages = decode_batch(&batch)?;
        if !batch.from_address.is_empty() {
            self.transport.learn(batch.from, &batch.from_address);
        }
        let accepted = messages.len() as u32;
        for message in messages {
            self.meta
                .step(message)
                .map_err(|err| Status::unavailable(format!("raft node is not running: {err}")))?;
        }
        Ok(Response::new(RaftAck { accepted }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeAnswer>, Status> {
        self.check_member(&request, request.get_ref().from, None)?;
        let asked = request.into_inner();
        let command = MetaCommand::decode(&asked.command).map_err(|err| {
            Status::invalid_argument(format!("command from node {}: {err}", asked.from))
        })?;
        match self.meta.propose(command).await {
            Ok(applied) => Ok(Response::new(ProposeAnswer {
                index: applied.index,
            })),
            Err(err) => Err(crate::admin::convert::status(&err)),
        }
    }
}

/// Proposes `command` on this node when it leads, else asks the leader to (over its
/// RaftService); the error says why neither could.
pub async fn propose_anywhere(
    meta: &MetaHandle,
    dialer: &Dialer,
    command: MetaCommand,
) -> Result<u64, String> {
    let leader = match meta.propose(command.clone()).await {
        Ok(applied) => return Ok(applied.index),
        Err(MetaError::NotLeader {
            leader: Some((_, address)),
        }) => address,
        Err(err) => return Err(err.to_string()),
    };
    let endpoint = dialer.endpoint(&leader, CONNECT_TIMEOUT, SEND_TIMEOUT)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| format!("cannot reach the leader at {leader}: {err}"))?;
    let request = ProposeRequest {
        from: meta.id(),
        command: command.encode(),
    };
    let answer = RaftServiceClient::new(channel)
        .propose(request)
        .await
        .map_err(|status| format!("the leader at {leader}: {}", status.message()))?;
    Ok(answer.into_inner().index)
}

/// Decodes every message first, so a batch with a bad message steps none of them.
fn decode_batch(batch: &RaftBatch) -> Result<Vec<Message>, Status> {
    batch
        .messages
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let message = Message::parse_from_bytes(bytes).map_err(|err| {
                Status::invalid_argument(format!(
                    "raft batch from node {}: message {index} does not decode: {err}",
                    batch.from
                ))
            })?;
            if message.to != batch.to {
                return Err(Status::invalid_argument(format!(
                    "raft batch from node {}: message {index} is for node {}, not {}",
                    batch.from, message.to, batch.to
                )));
            }
            Ok(message)
        })
        .collect()
}

/// The outbound side: per-peer queues drained by per-peer sender tasks.
#[derive(Clone)]
pub struct GrpcTransport {
    inner: Arc<Shared>,
}

struct Shared {
    node_id: u64,
    /// This node's address, sent with every batch.
    advertise: String,
    dialer: Dialer,
    runtime: tokio::runtime::Handle,
    /// Where each peer is reached; updated from the membership.
    addresses: Mutex<HashMap<u64, String>>,
    /// The queue of each peer whose sender task runs.
    queues: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

impl GrpcTransport {
    /// A transport for node `node_id`, reached at `advertise`, connecting through `dialer`,
    /// whose sender tasks run on `runtime`.
    pub fn new(
        node_id: u64,
        advertise: &str,
        dialer: Dialer,
        runtime: tokio::runtime::Handle,
    ) -> GrpcTransport {
        GrpcTransport {
            inner: Arc::new(Shared {
                node_id,
                advertise: advertise.to_string(),
                dialer,
                runtime,
                addresses: Mutex::new(HashMap::new()),
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How this node connects to other members.
    pub fn dialer(&self) -> Dialer {
        self.inner.dialer.clone()
    }

    /// Sets the members' addresses (this node's own entry is ignored). A peer whose address
    /// changed or that left gets a fresh sender on its next message.
    pub fn set_peers(&self, peers: &HashMap<u64, String>) {
        let mut addresses = lock(&self.inner.addresses);
        let mut queues = lock(&self.inner.queues);
        queues.retain(|id, _| peers.get(id) == addresses.get(id));
        *addresses = peers
            .iter()
            .filter(|(id, _)| **id != self.inner.node_id)
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
    }

    /// Sets one peer's address (a node being added, before the leader contacts it).
    pub fn add_peer(&self, id: u64, address: &str) {
        if id == self.inner.node_id {
            return;
        }
        let mut addresses = lock(&self.inner.addresses);
        if addresses.get(&id).map(String::as_str) != Some(address) {
            lock(&self.inner.queues).remove(&id);
            addresses.insert(id, address.to_string());
        }
    }

    /// Learns where peer `id` is from a batch it sent, unless its address is known already
    /// (the membership's address wins).
    pub fn learn(&self, id: u64, address: &str) {
        if id != self.inner.node_id {
            lock(&self.inner.addresses)
                .entry(id)
                .or_insert_with(|| address.to_string());
        }
    }

    /// The known peers' addresses.
    pub fn peers(&self) -> HashMap<u64, String> {
        lock(&self.inner.addresses).clone()
    }

    fn enqueue(&self, message: Message) {
        let to = message.to;
        // Lock order everywhere: addresses, then queues.
        let address = lock(&self.inner.addresses).get(&to).cloned();
        let mut queues = lock(&self.inner.queues);
        let queue = match queues.entry(to) {
            Entry::Occupied(queue) => queue.into_mut(),
            Entry::Vacant(slot) => {
                let Some(address) = address else {
                    tracing::debug!(
                        peer = to,
                        "raft message for a node with no known address dropped"
                    );
                    return;
                };
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                let peer = Peer {
                    from: self.inner.node_id,
                    from_address: self.inner.advertise.clone(),
                    dialer: self.inner.dialer.clone(),
                    to,
                    address,
                };
                self.inner.runtime.spawn(peer.run(rx));
                slot.insert(tx)
            }
        };
        match queue.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(peer = to, "raft queue full, message dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                queues.remove(&to);
            }
        }
    }
}

impl Transport for GrpcTransport {
    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            self.enqueue(message);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves them consistent (single inserts).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One peer's sender task.
struct Peer {
    from: u64,
    from_address: String,
    dialer: Dialer,
    to: u64,
    address: String,
}

impl Peer {
    /// Sends what arrives on `rx` until every sender is gone.
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut client: Option<RaftServiceClient<Channel>> = None;
        let mut backoff = BACKOFF_MIN;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let sent = match &mut client {
                Some(c) => self.send(c, &batch).await,
                None => match self.connect().await {
                    Ok(mut c) => {
                        let sent = self.send(&mut c, &batch).await;
                        client = Some(c);
                        sent
                    }
                    Err(err) => Err(err),
                },
            };
            match sent {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(err) => {
                    tracing::debug!(peer = self.to, address = %self.address, error = %err, "raft send failed, backing off");
                    client = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // What queued while the peer was away is stale: raft resends.
                    while rx.try_recv().is_ok() {}
                }
            }
        }
    }

    async fn connect(&self) -> Result<RaftServiceClient<Channel>, String> {
        let endpoint = self
            .dialer
            .endpoint(&self.address, CONNECT_TIMEOUT, SEND_TIMEOUT)?
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|err| err.to_string())?;
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX))
    }

    async fn send(
        &self,
        client: &mut RaftServiceClient<Channel>,
        batch: &[Message],
    ) -> Result<(), String> {
        let mut messages = Vec::with_capacity(batch.len());
        for message in batch {
            messages.push(message.write_to_bytes().map_err(|err| err.to_string())?);
        }
        let request = RaftBatch {
            from: self.from,
            to: self.to,
            messages,
            from_address: self.from_address.clone(),
        };
        client
            .send(request)
            .await
            .map(|_| ())
            .map_err(|status| status.message().to_string())
    }
}
