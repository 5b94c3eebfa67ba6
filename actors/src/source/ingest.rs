//! The ingest source: producers push batches over TCP with the ingest protocol
//! (docs/protocol.md, codec in `wire_net::ingest`).
//!
//! The process binds the source's address once, without `SO_REUSEPORT` (a second process
//! on the port is refused), and every core accepts from a clone of that socket, so the
//! kernel hands each connection to one waiting core; its batches go to that core's partition.
//! Connections are limited in number, time and buffered bytes (`IngestLimits`, documented
//! with the bound they give in docs/protocol.md). Each accepted
//! batch is verified, checked against the schema, appended to the partition's WAL
//! (`<data-dir>/<pipeline>/<source>/p<core>`), handed to the pipeline, and only then
//! acknowledged with one credit. A pipeline that falls behind therefore stops granting credits
//! and the producer waits: backpressure reaches the socket.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpListener;
use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::{DurabilitySpec, IngestLimits, IngestSource, SourceKind};
use wire_core::{Batch, BatchView, Schema};
use wire_net::ingest::{
    encode, Ack, ErrorCode, ErrorFrame, Frame, FrameBuffer, Hello, HelloOk, IDEMPOTENT_VERSION,
    PRODUCE_BATCH_BYTES_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use wire_storage::wal::{Durability, LogConfig, SegmentLog};

use wire_storage::checkpoint::SourcePosition;

use super::Emitter;
use crate::pipeline::{CoreCx, Notice};
use crate::Error;

mod auth;
mod limits;
mod producers;
mod tls;

pub use auth::{
    AuthFuture, IngestAuth, IngestAuthRequest, IngestRefusal, AUTH_WAIT, TOKEN_RECHECK,
};
use limits::{Bucket, TokenShare};
use producers::{Admit, Appended, Producers};
pub use producers::{ID_COUNTER_BITS, NODE_ID_BITS, NODE_ID_MAX};
pub use tls::IngestTls;
use tls::{HandshakeError, IngestStream};

/// Rows at the end of each partition's WAL scanned at start for idempotent producers'
/// sequence numbers; a producer whose last batch is older is not known after a restart.
pub const PRODUCER_SCAN_ROWS: u64 = 1 << 20;
/// How often a re-sent batch looks again whether the same producer's batch being appended by
/// another connection is done, and an idempotent Hello whether the WALs have been scanned.
const PRODUCER_POLL: Duration = Duration::from_millis(2);

/// Batches appended and waiting for the pipeline, per core, before connections stop acking.
const QUEUED_BATCHES: usize = 4;
/// How often an idle source re-evaluates its watermark (idle partitions).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often an idle source looks for a requested checkpoint.
const BARRIER_POLL: Duration = Duration::from_millis(10);
/// How often blocked waits look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);
/// Frames up to this size (length prefix included) are received within a connection's own
/// buffers; larger ones reserve memory from the source's `frame_buffer_bytes_max` first.
/// Before the Hello is accepted, no larger frame is allowed.
pub const SMALL_FRAME_BYTES: usize = 64 << 10;
/// Bytes of a Produce frame that are not batch: length prefix, type byte and `seq`.
const PRODUCE_OVERHEAD_BYTES: usize = 4 + 1 + 8;
/// Receive buffer a connection keeps after a large frame: room for a small frame and a read.
const BUFFER_KEPT_BYTES: usize = SMALL_FRAME_BYTES + FrameBuffer::READ_CHUNK;
/// How long a refused or ending connection waits for the peer to read the last frame.
const LINGER: Duration = Duration::from_millis(200);
/// Reads of at most 1 KiB a lingering connection discards before it closes anyway.
const LINGER_READS: usize = 64;

pub(super) async fn run(
    cx: &Rc<CoreCx>,
    index: usize,
    spec: &IngestSource,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    let source = &cx.plan.sources[index];
    let log = open_partition(cx, index, spec).await?;
    let partition = cx.core as u32;
    emitter.own_partitions(&[partition]);
    let mut position = start_position(cx, &log, &source.name, partition, emitter).await?;
    let positions = |position| wal_positions(partition, position);
    let partitions = cx.cores as u32;
    let (accepting, rx) = accept_producers(cx, index, spec, &log)?;
    let poll = if cx.checkpoints.is_some() {
        BARRIER_POLL
    } else {
        IDLE_POLL
    };
    // WAL retention: the input before the oldest kept checkpoint's position is not needed.
    let mut barriers: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    let mut retired_for = 0;
    if let Some(restored) = cx.checkpoints.as_ref().and_then(|c| c.restore()) {
        barriers.push_back((restored.id, position));
    }
    // Ends when the acceptor and every connection have dropped their queue senders.
    loop {
        while let Some(id) = emitter.barrier_due() {
            emitter.inject(id, partitions, positions(position)).await;
            barriers.push_back((id, position));
        }
        if let Some(checkpoints) = &cx.checkpoints {
            let oldest = checkpoints.retained();
            if oldest > retired_for {
                retired_for = oldest;
                retain(&log, &source.name, oldest, &mut barriers).await;
            }
        }
        if emitter.held() && !cx.stopping() {
            // Appended batches wait in the queue, so connections hold their acks and
            // producers run out of credits.
            emitter.hold().await;
            continue;
        }
        let next = futures_lite::future::or(async { Some(rx.recv().await) }, async {
            glommio::timer::sleep(poll).await;
            None
        });
        match next.await {
            Some(Some((end, batch))) => {
                emitter.events(batch.row_count() as u64);
                emitter.emit(batch).await?;
                position = end;
            }
            Some(None) => break,
            None => emitter.tick().await,
        }
    }
    emitter.finished(partitions, positions(position));
    let _ = accepting.await;
    log.sync()
        .await
        .map_err(|error| wal_error(&source.name, error))?;
    Ok(())
}

/// A checkpoint's position of this instance's input: `position` in the WAL of `partition`.
fn wal_positions(partition: u32, position: u64) -> Vec<SourcePosition> {
    vec![SourcePosition {
        partition,
        position,
        line: 0,
        token: None,
    }]
}

/// Where this instance's input starts. With checkpoints the WAL is the input of record: a
/// restored run resumes at the checkpoint's offset, a first run at the log's start, and both
/// replay up to its end before accepting producers. Without, input starts at the log's end.
async fn start_position(
    cx: &CoreCx,
    log: &SegmentLog,
    source: &str,
    partition: u32,
    emitter: &mut Emitter,
) -> Result<u64, Error> {
    if cx.checkpoints.is_none() {
        return Ok(log.next_offset());
    }
    let saved = emitter
        .restored()
        .and_then(|s| s.positions.iter().find(|at| at.partition == partition))
        .map(|at| at.position);
    let position = saved.unwrap_or_else(|| log.start_offset());
    replay(log, source, position, emitter).await
}

/// The task that accepts producers' connections.
type Accepting = glommio::task::JoinHandle<()>;
/// The batches connections appended to the WAL, each with the log's end offset after it.
type Queue = LocalReceiver<(u64, Batch)>;

/// Starts accepting producers on source `index`'s port: a task whose connections append
/// batches to `log` and queue each, with the log's end offset after it, for this instance.
fn accept_producers(
    cx: &Rc<CoreCx>,
    index: usize,
    spec: &IngestSource,
    log: &SegmentLog,
) -> Result<(Accepting, Queue), Error> {
    let (listener, port) = listen(cx, index, &cx.plan.sources[index].name)?;
    let (tx, rx) = local_channel::new_bounded(QUEUED_BATCHES);
    let acceptor = Acceptor {
        cx: cx.clone(),
        source: index,
        port,
        log: log.clone(),
        queue: Rc::new(tx),
        credits: spec.credits.max(1),
    };
    let accepting = glommio::spawn_local(acceptor.run(listener)).detach();
    Ok((accepting, rx))
}

/// Deletes the WAL segments wholly before the position of checkpoint `oldest` (the oldest one
/// kept), once this instance knows that position. Failures only cost disk space: logged.
async fn retain(
    log: &SegmentLog,
    source: &str,
    oldest: u64,
    barriers: &mut std::collections::VecDeque<(u64, u64)>,
) {
    let mut keep_from = None;
    while let Some(&(id, position)) = barriers.front() {
        if id > oldest {
            break;
        }
        if id == oldest {
            keep_from = Some(position);
        }
        barriers.pop_front();
    }
    if let Some(position) = keep_from {
        barriers.push_front((oldest, position));
        match log.delete_before(position).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::debug!(source, deleted, before = position, "WAL segments retired")
            }
            Err(error) => tracing::warn!(source, %error, "cannot retire WAL segments"),
        }
    }
}

/// Emits the WAL's batches from `from` to its end; the offset after the last.
async fn replay(
    log: &SegmentLog,
    source: &str,
    from: u64,
    emitter: &mut Emitter,
) -> Result<u64, Error> {
    let end = log.next_offset();
    if from >= end {
        return Ok(from.max(end));
    }
    let from = from.max(log.start_offset());
    let mut reader = log.reader(from).map_err(|error| wal_error(source, error))?;
    let mut replayed = 0u64;
    while reader.position() < end {
        let batch = match reader
            .next()
            .await
            .map_err(|error| wal_error(source, error))?
        {
            Some(view) => view.to_batch(),
            None => break,
        };
        replayed += batch.row_count() as u64;
        emitter.events(batch.row_count() as u64);
        emitter.emit(batch).await?;
        while let Some(id) = emitter.barrier_due() {
            let position = reader.position();
            let partitions = emitter.partitions_hint();
            emitter
                .inject(
                    id,
                    partitions,
                    vec![SourcePosition {
                        partition: emitter.core() as u32,
                        position,
                        line: 0,
                        token: None,
                    }],
                )
                .await;
        }
    }
    tracing::info!(
        source,
        from,
        to = reader.position(),
        rows = replayed,
        "ingest WAL replayed"
    );
    Ok(reader.position())
}

/// Opens this core's partition of ingest source `index` and adds what its WAL says about
/// idempotent producers to the source's shared state.
async fn open_partition(
    cx: &CoreCx,
    index: usize,
    spec: &IngestSource,
) -> Result<SegmentLog, Error> {
    let name = &cx.plan.sources[index].name;
    let log = open_log(cx, name, spec).await?;
    let port = cx.ports[index]
        .as_ref()
        .expect("ingest sources have a port");
    recover_producers(&log, name, cx.core as u32, &port.producers).await?;
    Ok(log)
}

/// Rebuilds the idempotent producers' state from the tail of this partition's WAL: the
/// batch headers carry producer id, epoch and sequence number.
async fn recover_producers(
    log: &SegmentLog,
    source: &str,
    partition: u32,
    producers: &Producers,
) -> Result<(), Error> {
    let end = log.next_offset();
    let from = end
        .saturating_sub(PRODUCER_SCAN_ROWS)
        .max(log.start_offset());
    let mut batches = 0u64;
    if from < end {
        let mut reader = log.reader(from).map_err(|error| wal_error(source, error))?;
        while reader.position() < end {
            let next = reader.next().await;
            match next.map_err(|error| wal_error(source, error))? {
                Some(view) => producers.recover(view.header(), partition),
                None => break,
            }
            batches += 1;
        }
    }
    tracing::debug!(
        source,
        partition,
        from,
        to = end,
        batches,
        "idempotent producers recovered from the WAL"
    );
    producers.partition_recovered();
    Ok(())
}

async fn open_log(cx: &CoreCx, source: &str, spec: &IngestSource) -> Result<SegmentLog, Error> {
    let dir: PathBuf = cx
        .data_dir
        .join(&cx.plan.name)
        .join(source)
        .join(format!("p{}", cx.core));
    std::fs::create_dir_all(&dir).map_err(|err| Error::io(&dir, err))?;
    let config = LogConfig {
        segment_bytes: spec.segment_bytes,
        durability: match spec.durability {
            DurabilitySpec::Always => Durability::Always,
            DurabilitySpec::Interval(ms) => Durability::Interval(Duration::from_millis(ms)),
            DurabilitySpec::Never => Durability::Never,
        },
        ..LogConfig::default()
    };
    let (log, report) = SegmentLog::open(&dir, config)
        .await
        .map_err(|error| wal_error(source, error))?;
    tracing::info!(core = cx.core, source, dir = %dir.display(), next_offset = log.next_offset(), ?report, "ingest WAL open");
    Ok(log)
}

/// An ingest source's listening socket and the limits its connections share: one per source
/// per process, bound by [`bind_ports`] before the cores start. Every core accepts from its
/// own clone of the socket; the counters are shared by all of them.
pub(crate) struct IngestPort {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    limits: IngestLimits,
    /// Connections open now (refused ones not counted).
    connections: AtomicUsize,
    /// Bytes reserved by connections receiving (or handling) a frame larger than
    /// [`SMALL_FRAME_BYTES`], at most `limits.frame_buffer_bytes_max`.
    frame_bytes: AtomicUsize,
    /// The source's idempotent producers on this node, shared by its cores.
    producers: Producers,
    /// Who may produce, when security is on (`None`: everyone).
    auth: Option<Arc<dyn IngestAuth>>,
    /// TLS for every connection, when security is on (`None`: plaintext).
    tls: Option<Arc<IngestTls>>,
    /// Token buckets and per-peer connection counts.
    shared: limits::Shared,
    /// Whether a core announced the address ([`Notice::Listening`]): the first to listen.
    announced: std::sync::atomic::AtomicBool,
}

/// Binds every ingest source's address, exclusively (no `SO_REUSEPORT`): a port another
/// process listens on is an error, not a shared port.
/// Idempotent producers' ids are kept in `<data_dir>/<pipeline>/<source>/producer-ids`, and
/// carry `node` (this node's id, 0 for `wire run`) in their high bits; `cores` is the number
/// of the source's partitions on this node (their WALs are scanned before idempotent Hellos
/// are answered).
/// With `auth`, every Hello must carry a token it accepts; with `tls`, every connection
/// speaks TLS.
pub(crate) fn bind_ports(
    plan: &Plan,
    data_dir: &std::path::Path,
    cores: usize,
    node: u64,
    auth: Option<&Arc<dyn IngestAuth>>,
    tls: Option<&Arc<IngestTls>>,
) -> Result<Vec<Option<Arc<IngestPort>>>, Error> {
    let mut ports = Vec::with_capacity(plan.sources.len());
    for source in &plan.sources {
        let port = match &source.kind {
            SourceKind::Ingest(spec) => {
                let dir = data_dir.join(&plan.name).join(&source.name);
                let producers = Producers::new(dir, spec.credits as usize, cores, node);
                let mut port = IngestPort::bind(&source.name, spec, producers)?;
                port.auth = auth.cloned();
                port.tls = tls.cloned();
                Some(Arc::new(port))
            }
            _ => None,
        };
        ports.push(port);
    }
    Ok(ports)
}

impl IngestPort {
    fn bind(name: &str, spec: &IngestSource, producers: Producers) -> Result<IngestPort, Error> {
        let listen_error = |addr: String, error: std::io::Error| Error::Listen {
            source_name: name.to_string(),
            addr,
            error,
        };
        let addr: SocketAddr = spec.listen.parse().map_err(|_| {
            let error = std::io::Error::other("not an IP address and port");
            listen_error(spec.listen.clone(), error)
        })?;
        // std sets SO_REUSEADDR (a restart may bind while old connections sit in TIME_WAIT)
        // but never SO_REUSEPORT, so the kernel refuses a second listener on the port.
        let listener = std::net::TcpListener::bind(addr).map_err(|error| {
            let error = if error.kind() == std::io::ErrorKind::AddrInUse {
                std::io::Error::new(error.kind(), "address in use (is another wire running? cluster nodes on one machine need each their own `wire start --ingest-port-offset`)")
            } else {
                error
            };
            listen_error(addr.to_string(), error)
        })?;
        let addr = listener
            .local_addr()
            .map_err(|error| listen_error(addr.to_string(), error))?;
        Ok(IngestPort {
            listener,
            addr,
            limits: spec.limits,
            connections: AtomicUsize::new(0),
            frame_bytes: AtomicUsize::new(0),
            producers,
            auth: None,
            tls: None,
            shared: limits::Shared::default(),
            announced: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Counts a new connection from `peer`, unless `max_connections` are open already, or
    /// `max_connections_per_peer` from its address; else the Error frame to refuse it with.
    fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Admitted, ErrorFrame> {
        let max = self.limits.max_connections as usize;
        let counted = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            });
        if counted.is_err() {
            let message = format!("this source takes at most {max} connections at once (max_connections); retry later");
            return Err(ErrorFrame::new(ErrorCode::Overloaded, 0, message));
        }
        let mut admitted = Admitted(self.clone(), None);
        let per_peer = self.limits.max_connections_per_peer;
        if let Some(ip) = peer {
            if !self.shared.admit_peer(ip, per_peer) {
                let message = format!("this source takes at most {per_peer} connections at once from {ip} (max_connections_per_peer); retry later");
                return Err(ErrorFrame::new(ErrorCode::Overloaded, 0, message));
            }
            admitted.1 = Some(ip);
        }
        Ok(admitted)
    }

    /// Reserves `bytes` of the frame buffer budget, if that much is left.
    fn reserve(&self, bytes: usize) -> bool {
        let max = usize::try_from(self.limits.frame_buffer_bytes_max).unwrap_or(usize::MAX);
        self.frame_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= max)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.frame_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Largest batch a Produce may carry: the protocol's, or less when the frame buffer
    /// budget could not hold a frame that size.
    fn max_batch_bytes(&self) -> usize {
        let budget = usize::try_from(self.limits.frame_buffer_bytes_max).unwrap_or(usize::MAX);
        PRODUCE_BATCH_BYTES_MAX.min(budget - PRODUCE_OVERHEAD_BYTES)
    }
}

/// A connection counted against `max_connections` (and its peer address against
/// `max_connections_per_peer`); uncounted when dropped.
struct Admitted(Arc<IngestPort>, Option<IpAddr>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.1 {
            self.0.shared.release_peer(ip);
        }
    }
}

/// A connection's share of the frame buffer budget: held from a large frame's length prefix
/// until its batch is handed to the pipeline, returned when dropped.
struct Reservation<'a> {
    port: &'a IngestPort,
    bytes: usize,
}

impl Reservation<'_> {
    fn held(&self) -> bool {
        self.bytes > 0
    }

    fn take(&mut self, bytes: usize) -> bool {
        debug_assert!(!self.held());
        let taken = self.port.reserve(bytes);
        if taken {
            self.bytes = bytes;
        }
        taken
    }

    fn release(&mut self) {
        self.port.release(std::mem::take(&mut self.bytes));
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// This core's listener on the source's socket; the first core of the process to listen
/// announces the address (on a node running some slots of a spread pipeline, slot 0 may be
/// elsewhere).
fn listen(cx: &CoreCx, index: usize, name: &str) -> Result<(TcpListener, Arc<IngestPort>), Error> {
    let port = cx.ports[index].clone().expect("ingest sources have a port");
    let clone = port.listener.try_clone().map_err(|error| Error::Listen {
        source_name: name.to_string(),
        addr: port.addr.to_string(),
        error,
    })?;
    if !port.announced.swap(true, Ordering::Relaxed) {
        let _ = cx.notices.send(Notice::Listening {
            source: name.to_string(),
            addr: port.addr,
        });
    }
    Ok((TcpListener::from(clone), port))
}

fn wal_error(source: &str, error: wire_storage::Error) -> Error {
    Error::Wal {
        source_name: source.to_string(),
        error,
    }
}

/// Accepts producers until the pipeline stops.
struct Acceptor {
    cx: Rc<CoreCx>,
    source: usize,
    port: Arc<IngestPort>,
    log: SegmentLog,
    queue: Rc<LocalSender<(u64, Batch)>>,
    credits: u32,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        loop {
            let accepted =
                futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    stopped(&self.cx).await;
                    None
                })
                .await;
            let stream = match accepted {
                None => break,
                Some(Ok(stream)) => stream,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "ingest accept failed");
                    glommio::timer::sleep(STOP_POLL).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().ok();
            let admitted = self.port.admit(peer.map(|p| p.ip()));
            let connection = Connection {
                cx: self.cx.clone(),
                source: self.source,
                port: self.port.clone(),
                log: self.log.clone(),
                queue: self.queue.clone(),
                credits: self.credits,
                peer,
            };
            glommio::spawn_local(connection.start(stream, admitted)).detach();
        }
    }
}

/// Resolves once the pipeline is stopping.
async fn stopped(cx: &CoreCx) {
    while !cx.stopping() {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// Sends `refusal` and closes the connection.
async fn refuse(mut stream: IngestStream, refusal: ErrorFrame) {
    let mut out = Vec::new();
    encode::<Vec<u8>>(&Frame::Error(refusal), &mut out);
    let _ = stream.set_write_timeout(Some(LINGER));
    let _ = stream.write_all(&out).await;
    linger(&mut stream).await;
}

/// Half-closes the connection and reads (and drops) what the peer still sends, for at most
/// [`LINGER`], so that closing does not reset the connection before the peer has read our
/// last frame (closing a socket with unread bytes sends RST).
async fn linger(stream: &mut IngestStream) {
    let _ = stream.flush().await;
    let _ = stream.shutdown_write().await;
    let _ = stream.set_read_timeout(Some(LINGER));
    let drain = async {
        let mut sink = [0u8; 1024];
        for _ in 0..LINGER_READS {
            match stream.read(&mut sink).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    };
    futures_lite::future::or(drain, glommio::timer::sleep(LINGER)).await;
    let _ = stream.close().await;
}

/// One producer's session.
struct Connection {
    cx: Rc<CoreCx>,
    source: usize,
    port: Arc<IngestPort>,
    log: SegmentLog,
    queue: Rc<LocalSender<(u64, Batch)>>,
    credits: u32,
    peer: Option<SocketAddr>,
}

/// Why a session ends.
enum End {
    /// The peer closed or sent Close.
    Closed,
    /// The pipeline is stopping.
    Stopping,
    /// The peer broke the protocol, sent bad data or overstayed; tell it why.
    Refuse(ErrorFrame),
    /// The socket failed.
    Io(std::io::Error),
    /// The WAL or the pipeline failed.
    Fatal(Error),
}

/// What a session knows about its peer between frames.
struct Session<'a> {
    /// Hello accepted.
    greeted: bool,
    /// `seq` the next Produce must carry.
    expected_seq: u64,
    /// Credits granted in frames already written to the socket (HelloOk and Acks).
    granted: u64,
    /// `granted` when the last read was issued. The frame that read completes was sent before
    /// the peer could have seen any later grant, so its `seq` must be at most this.
    granted_at_read: u64,
    /// When the Hello must have arrived.
    hello_deadline: Instant,
    /// An idempotent session's producer id, epoch and connection token.
    producer: Option<(u64, u16, u64)>,
    /// The Hello's bearer token, checked again every [`TOKEN_RECHECK`] (with security on).
    token: String,
    /// When the token is checked next; `None` without security.
    recheck_at: Option<Instant>,
    /// This connection's rate limits, `None` when the source has none.
    bucket: Option<Bucket>,
    /// The rate limits of the token's connections together, `None` without a token.
    token_share: Option<TokenShare<'a>>,
}

impl Session<'_> {
    /// A session that has read nothing yet, under `limits`.
    fn new(limits: &IngestLimits) -> Self {
        Session {
            greeted: false,
            expected_seq: 1,
            granted: 0,
            granted_at_read: 0,
            hello_deadline: Instant::now() + Duration::from_millis(limits.hello_timeout_ms),
            producer: None,
            token: String::new(),
            recheck_at: None,
            bucket: Bucket::new(limits, Instant::now()),
            token_share: None,
        }
    }
}

impl Connection {
    /// Runs an accepted connection: the TLS handshake (with TLS on), then the session, or the
    /// refusal of a connection over a connection limit.
    async fn start(self, stream: glommio::net::TcpStream, admitted: Result<Admitted, ErrorFrame>) {
        let hello_timeout = Duration::from_millis(self.port.limits.hello_timeout_ms);
        let stream = match tls::handshake(stream, self.port.tls.as_deref(), hello_timeout).await {
            Ok(stream) => stream,
            Err(HandshakeError::Plaintext(stream, frame)) => {
                tracing::warn!(peer = ?self.peer, "ingest connection refused: plaintext on a TLS port");
                crate::ingest_stats::refused();
                return refuse(IngestStream::Plain(stream), frame).await;
            }
            Err(HandshakeError::Failed(reason)) => {
                tracing::warn!(peer = ?self.peer, %reason, "ingest connection refused");
                crate::ingest_stats::refused();
                return;
            }
        };
        match admitted {
            Ok(admitted) => {
                crate::ingest_stats::opened();
                self.run(stream, admitted).await;
                crate::ingest_stats::closed();
            }
            Err(refusal) => {
                tracing::warn!(peer = ?self.peer, message = %refusal.message, "ingest connection refused: too many connections");
                crate::ingest_stats::refused();
                refuse(stream, refusal).await;
            }
        }
    }

    async fn run(self, mut stream: IngestStream, admitted: Admitted) {
        let mut frames = FrameBuffer::new();
        let end = self.session(&mut stream, &mut frames).await;
        // Buffers go back before the goodbye, and the slot once the socket is closed.
        drop(frames);
        let frame = match &end {
            End::Closed | End::Io(_) => None,
            End::Stopping => Some(match self.cx.failure.message() {
                // The run failed elsewhere (a sink, another core): say why.
                Some(message) => Frame::Error(ErrorFrame::new(ErrorCode::Internal, 0, message)),
                None => Frame::Close,
            }),
            End::Refuse(frame) => Some(Frame::Error(frame.clone())),
            End::Fatal(err) => Some(Frame::Error(ErrorFrame::new(
                ErrorCode::Internal,
                0,
                err.to_string(),
            ))),
        };
        if let Some(frame) = frame {
            let mut out = Vec::new();
            encode::<Vec<u8>>(&frame, &mut out);
            let _ = stream.write_all(&out).await;
            linger(&mut stream).await;
        } else {
            let _ = stream.close().await;
        }
        match end {
            End::Refuse(frame) => {
                tracing::warn!(peer = ?self.peer, code = ?frame.code, seq = frame.seq, message = %frame.message, "ingest producer refused")
            }
            End::Io(err) => {
                tracing::debug!(peer = ?self.peer, error = %err, "ingest connection lost")
            }
            End::Fatal(err) => self.cx.failure.record(err),
            End::Closed | End::Stopping => {}
        }
        drop(admitted);
    }

    async fn session(&self, stream: &mut IngestStream, frames: &mut FrameBuffer) -> End {
        let source = &self.cx.plan.sources[self.source];
        let limits = self.port.limits;
        let _ = stream.set_write_timeout(Some(Duration::from_millis(limits.read_timeout_ms)));
        let mut scratch = vec![0u8; FrameBuffer::READ_CHUNK];
        let mut out = Vec::with_capacity(64);
        let mut large = Reservation {
            port: &self.port,
            bytes: 0,
        };
        let mut session = Session::new(&limits);
        loop {
            let frame = match frames.next_frame_ref() {
                Err(err) => return violation(0, err.to_string()),
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if let Err(end) = self
                        .read(stream, frames, &mut scratch, &mut large, &mut session)
                        .await
                    {
                        return end;
                    }
                    continue;
                }
            };
            out.clear();
            let grant = match frame {
                Frame::Hello(hello) if !session.greeted => {
                    match self.greet(&hello, &mut session, &mut out).await {
                        Ok(credits) => credits,
                        Err(end) => return end,
                    }
                }
                Frame::Produce { seq, batch } if session.greeted => {
                    let batch = match session.accept(seq, batch, &source.schema) {
                        Ok(batch) => batch,
                        Err(end) => return end,
                    };
                    if large.held() {
                        // The batch is copied out: give the frame's memory back now.
                        frames.shrink_to(BUFFER_KEPT_BYTES);
                    }
                    let bytes = batch.encoded_len() as u64;
                    if let Err(refusal) = session.within_rate(seq, bytes, &source.name) {
                        return End::Refuse(refusal);
                    }
                    let ack = match self.append_once(seq, batch, &session).await {
                        Ok(ack) => ack,
                        Err(end) => return end,
                    };
                    crate::ingest_stats::acked(bytes);
                    large.release();
                    session.expected_seq += 1;
                    encode::<Vec<u8>>(&Frame::Ack(ack), &mut out);
                    ack.credits
                }
                Frame::Close => return End::Closed,
                other => return unexpected(other.frame_type().name(), session.greeted),
            };
            if let Err(err) = stream.write_all(&out).await {
                return End::Io(err);
            }
            session.granted += u64::from(grant);
            crate::ingest_stats::granted(u64::from(grant));
        }
    }

    /// Checks the Hello and encodes the HelloOk into `out`, issuing or resuming a producer id
    /// when the client asks for idempotence (once every partition's WAL has been scanned); the
    /// credits it grants.
    async fn greet<'a>(
        &'a self,
        hello: &Hello,
        session: &mut Session<'a>,
        out: &mut Vec<u8>,
    ) -> Result<u32, End> {
        let source = &self.cx.plan.sources[self.source];
        if let Some(auth) = &self.port.auth {
            let pipeline = &self.cx.plan.name;
            auth::authenticate(auth.as_ref(), hello, pipeline, &source.name, self.peer)
                .await
                .map_err(End::Refuse)?;
            session.token = hello.token.clone();
            session.recheck_at = Some(Instant::now() + TOKEN_RECHECK);
            session.token_share = self.port.shared.token(&hello.token, &self.port.limits);
        }
        check_hello(hello, &source.name, &source.schema).map_err(End::Refuse)?;
        session.greeted = true;
        let mut ok = HelloOk {
            version: hello.version,
            partition: self.cx.core as u32,
            credits: self.credits,
            max_batch_bytes: self.port.max_batch_bytes() as u32,
            producer_id: 0,
            producer_epoch: 0,
        };
        if hello.version >= IDEMPOTENT_VERSION && hello.idempotent {
            let producers = &self.port.producers;
            while !producers.recovered() {
                if self.cx.stopping() {
                    return Err(End::Stopping);
                }
                glommio::timer::sleep(PRODUCER_POLL).await;
            }
            let (id, epoch, conn) = producers
                .hello(hello.producer_id, hello.producer_epoch)
                .map_err(|(code, message)| End::Refuse(ErrorFrame::new(code, 0, message)))?;
            (ok.producer_id, ok.producer_epoch) = (id, epoch);
            session.producer = Some((id, epoch, conn));
        }
        encode::<Vec<u8>>(&Frame::HelloOk(ok), out);
        Ok(ok.credits)
    }

    /// Appends a verified batch unless it is an idempotent producer's duplicate, which is
    /// acked again with the offsets it was first appended at; the Ack to send.
    async fn append_once(&self, seq: u64, batch: Batch, session: &Session<'_>) -> Result<Ack, End> {
        let header = *batch.header();
        let Some((id, epoch, conn)) = session.producer else {
            if header.producer != 0 {
                let message = format!("batch {seq} carries producer id {} but the session is not idempotent (ask for it in the hello)", header.producer_id());
                return Err(violation(seq, message));
            }
            return self.append(seq, batch).await;
        };
        if (header.producer_id(), header.producer_epoch()) != (id, epoch) {
            let message = format!("batch {seq} carries producer {} epoch {}, the session's is producer {id} epoch {epoch}", header.producer_id(), header.producer_epoch());
            return Err(violation(seq, message));
        }
        let producers = &self.port.producers;
        loop {
            match producers.begin(id, header.sequence, conn) {
                Ok(Admit::Append) => break,
                Ok(Admit::Duplicate(appended)) => {
                    tracing::debug!(
                        producer = id,
                        sequence = header.sequence,
                        "duplicate batch acked again"
                    );
                    return Ok(Ack {
                        seq,
                        base_offset: appended.base_offset,
                        rows: appended.rows,
                        credits: 1,
                    });
                }
                Ok(Admit::Wait) if self.cx.stopping() => return Err(End::Stopping),
                Ok(Admit::Wait) => glommio::timer::sleep(PRODUCER_POLL).await,
                Err((code, message)) => {
                    return Err(End::Refuse(ErrorFrame::new(code, seq, message)))
                }
            }
        }
        let appended = Appended {
            sequence: header.sequence,
            partition: self.cx.core as u32,
            base_offset: 0,
            rows: header.row_count,
        };
        self.append_with(seq, batch, |base_offset| {
            producers.complete(
                id,
                Appended {
                    base_offset,
                    ..appended
                },
            )
        })
        .await
        .inspect_err(|_| producers.abort(id))
    }

    /// Reads more bytes for the frame at the front, after checking its length prefix (once
    /// it has arrived) against the limits; a large frame first reserves its memory.
    async fn read(
        &self,
        stream: &mut IngestStream,
        frames: &mut FrameBuffer,
        scratch: &mut [u8],
        large: &mut Reservation<'_>,
        session: &mut Session<'_>,
    ) -> Result<(), End> {
        if session.recheck_at.is_some_and(|at| Instant::now() >= at) {
            self.recheck(session).await?;
        }
        let mut want = scratch.len();
        if let Some(total) = frames.next_frame_bytes() {
            if total > SMALL_FRAME_BYTES && !large.held() {
                self.admit_large(frames, total, large, session)?;
            }
            if large.held() {
                // Exactly the frame's missing bytes: the buffer was sized for them.
                want = want.min(frames.next_frame_missing().unwrap_or(want));
            }
        }
        let limits = self.port.limits;
        let timeout = if !session.greeted {
            let left = session
                .hello_deadline
                .saturating_duration_since(Instant::now());
            left.max(Duration::from_millis(1))
        } else if frames.pending_len() > 0 {
            Duration::from_millis(limits.read_timeout_ms)
        } else {
            Duration::from_millis(limits.idle_timeout_ms)
        };
        let _ = stream.set_read_timeout(Some(timeout));
        session.granted_at_read = session.granted;
        match self
            .read_more(stream, &mut scratch[..want], session.recheck_at)
            .await
        {
            Ok(Woke::Read(0)) => Err(End::Closed),
            Ok(Woke::Read(n)) => {
                frames.extend(&scratch[..n]);
                Ok(())
            }
            // The read goes on after the check (the socket keeps its place and its timeout).
            Ok(Woke::Recheck) => Ok(()),
            Ok(Woke::Stop) => Err(End::Stopping),
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {
                Err(End::Refuse(timed_out(session, frames, &limits)))
            }
            Err(err) => Err(End::Io(err)),
        }
    }

    /// Checks a frame larger than [`SMALL_FRAME_BYTES`] against the limits and reserves its
    /// memory, or says why it is refused.
    fn admit_large(
        &self,
        frames: &mut FrameBuffer,
        total: usize,
        large: &mut Reservation<'_>,
        session: &Session<'_>,
    ) -> Result<(), End> {
        if !session.greeted {
            return Err(violation(
                0,
                format!("a frame of {total} bytes before hello (at most {SMALL_FRAME_BYTES} until the hello is accepted)"),
            ));
        }
        let max = self.port.max_batch_bytes();
        if total > max + PRODUCE_OVERHEAD_BYTES {
            // Refused from its length prefix, before the batch arrives.
            let message = format!(
                "a frame of {total} bytes cannot carry a batch of at most max_batch_bytes ({max})"
            );
            return Err(End::Refuse(ErrorFrame::new(
                ErrorCode::TooLarge,
                session.expected_seq,
                message,
            )));
        }
        if !large.take(total) {
            let budget = self.port.limits.frame_buffer_bytes_max;
            let message = format!("no room to receive a frame of {total} bytes now (frame_buffer_bytes_max {budget} in use by other connections); retry later");
            return Err(End::Refuse(ErrorFrame::new(
                ErrorCode::Overloaded,
                session.expected_seq,
                message,
            )));
        }
        frames.reserve_frame();
        Ok(())
    }

    /// Appends a verified batch to the WAL and hands it to the pipeline; the Ack to send.
    async fn append(&self, seq: u64, batch: Batch) -> Result<Ack, End> {
        self.append_with(seq, batch, |_| {}).await
    }

    /// Like [`Connection::append`], calling `appended` with the base offset as soon as the WAL
    /// has the batch (before the pipeline takes it, which may wait).
    async fn append_with(
        &self,
        seq: u64,
        mut batch: Batch,
        appended: impl FnOnce(u64),
    ) -> Result<Ack, End> {
        let source = &self.cx.plan.sources[self.source];
        let rows = batch.row_count() as u32;
        let base_offset = match self.log.append(&mut batch).await {
            Ok(offset) => offset,
            Err(error) => return Err(End::Fatal(wal_error(&source.name, error))),
        };
        appended(base_offset);
        // Waits while the pipeline is behind: no ack, so no new credit.
        let end = base_offset + u64::from(rows);
        if self.queue.send((end, batch)).await.is_err() {
            return Err(End::Stopping);
        }
        Ok(Ack {
            seq,
            base_offset,
            rows,
            credits: 1,
        })
    }

    /// Reads more bytes, unless the pipeline stops first or `recheck_at` comes.
    async fn read_more(
        &self,
        stream: &mut IngestStream,
        scratch: &mut [u8],
        recheck_at: Option<Instant>,
    ) -> std::io::Result<Woke> {
        let read = async { stream.read(scratch).await.map(Woke::Read) };
        let stop = async {
            stopped(&self.cx).await;
            Ok(Woke::Stop)
        };
        let recheck = async {
            match recheck_at {
                Some(at) => {
                    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
                }
                None => futures_lite::future::pending::<()>().await,
            }
            Ok(Woke::Recheck)
        };
        futures_lite::future::or(read, futures_lite::future::or(stop, recheck)).await
    }

    /// Checks the session's token again: a revoked or expired one (or one whose scope no
    /// longer covers the source) ends the session with an Error frame; batches acked before
    /// stay appended. A node that cannot check now lets the session go on until the next check.
    async fn recheck(&self, session: &mut Session<'_>) -> Result<(), End> {
        session.recheck_at = Some(Instant::now() + TOKEN_RECHECK);
        let Some(auth) = &self.port.auth else {
            return Ok(());
        };
        let source = &self.cx.plan.sources[self.source].name;
        auth::recheck(
            auth.as_ref(),
            &session.token,
            &self.cx.plan.name,
            source,
            self.peer,
        )
        .await
        .map_err(End::Refuse)
    }
}

/// What ended a wait for bytes.
enum Woke {
    /// Bytes read (0: end of stream).
    Read(usize),
    /// The pipeline is stopping.
    Stop,
    /// The token is due for its check.
    Recheck,
}

impl Session<'_> {
    /// Takes a batch of `bytes` from the connection's rate limits and its token's; the Error
    /// frame for batch `seq` when it is over one of them.
    fn within_rate(&mut self, seq: u64, bytes: u64, source: &str) -> Result<(), ErrorFrame> {
        let now = Instant::now();
        if let Some(bucket) = &mut self.bucket {
            bucket
                .take(bytes, now)
                .map_err(|over| over.refusal(source, seq, false))?;
        }
        if let Some(share) = &self.token_share {
            let mut bucket = share.bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket
                .take(bytes, now)
                .map_err(|over| over.refusal(source, seq, true))?;
        }
        Ok(())
    }

    /// Checks a Produce's `seq` and credit, then verifies its batch and copies it out.
    fn accept(&self, seq: u64, batch: &[u8], schema: &Schema) -> Result<Batch, End> {
        self.check_produce(seq)?;
        accept_batch(batch, schema)
            .map_err(|(code, message)| End::Refuse(ErrorFrame::new(code, seq, message)))
    }

    /// A Produce's `seq` must be the next one and covered by a credit the peer could have
    /// seen when it sent the frame. Counting only: nothing allocated per frame.
    fn check_produce(&self, seq: u64) -> Result<(), End> {
        if seq != self.expected_seq {
            let expected = self.expected_seq;
            return Err(violation(
                seq,
                format!("expected batch seq {expected}, found {seq}"),
            ));
        }
        if seq > self.granted_at_read {
            let granted = self.granted_at_read;
            return Err(violation(
                seq,
                format!("batch {seq} sent without credit (only {granted} credits granted when it arrived)"),
            ));
        }
        Ok(())
    }
}

fn violation(seq: u64, message: String) -> End {
    End::Refuse(ErrorFrame::new(ErrorCode::ProtocolViolation, seq, message))
}

fn unexpected(what: &str, greeted: bool) -> End {
    let message = if greeted {
        format!("unexpected {what} frame")
    } else {
        format!("expected Hello first, found {what}")
    };
    violation(0, message)
}

/// The Error frame for a peer that sent nothing for too long.
fn timed_out(session: &Session<'_>, frames: &FrameBuffer, limits: &IngestLimits) -> ErrorFrame {
    let message = if !session.greeted {
        format!(
            "no hello within {} ms (hello_timeout_ms)",
            limits.hello_timeout_ms
        )
    } else if frames.pending_len() > 0 {
        format!(
            "nothing received for {} ms halfway through a frame ({} bytes received; read_timeout_ms)",
            limits.read_timeout_ms,
            frames.pending_len()
        )
    } else {
        format!("idle for {} ms (idle_timeout_ms)", limits.idle_timeout_ms)
    };
    ErrorFrame::new(ErrorCode::Timeout, 0, message)
}

fn check_hello(
    hello: &wire_net::ingest::Hello,
    source: &str,
    schema: &Schema,
) -> Result<(), ErrorFrame> {
    if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&hello.version) {
        return Err(ErrorFrame::new(
            ErrorCode::UnsupportedVersion,
            0,
            format!(
                "this server speaks ingest protocol versions {PROTOCOL_VERSION_MIN} to {PROTOCOL_VERSION}, not {}",
                hello.version
            ),
        ));
    }
    if hello.source != source {
        return Err(ErrorFrame::new(
            ErrorCode::UnknownSource,
            0,
            format!("this port serves source `{source}`, not `{}`", hello.source),
        ));
    }
    if hello.schema != *schema {
        return Err(ErrorFrame::new(
            ErrorCode::SchemaMismatch,
            0,
            format!(
                "source `{source}` has schema ({}), the producer sent ({})",
                describe(schema),
                describe(&hello.schema)
            ),
        ));
    }
    Ok(())
}

fn describe(schema: &Schema) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name,
                f.data_type,
                if f.nullable { "?" } else { "" }
            )
        })
        .collect();
    fields.join(", ")
}

/// Verifies a produced batch's bytes and rows; copies it out of the receive buffer.
fn accept_batch(bytes: &[u8], schema: &Schema) -> Result<Batch, (ErrorCode, String)> {
    let view = BatchView::verify(bytes).map_err(|err| (ErrorCode::BadBatch, err.to_string()))?;
    view.check_schema(schema)
        .map_err(|err| (ErrorCode::SchemaMismatch, err.to_string()))?;
    Ok(view.to_batch())
}

#[cfg(test)]
mod tests {
    use glommio::net::TcpListener;
    use wire_core::record::batch::stamp_producer;
    use wire_core::{BatchBuilder, PartitionId, StreamId, ValueRef};
    use wire_storage::wal::{LogConfig, SegmentLog};

    use super::producers::{Admit, Appended, Producers};

    fn stamped(id: u64, sequence: u32, rows: i64) -> wire_core::Batch {
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(9));
        for row in 0..rows {
            builder.push(&[ValueRef::I64(row)]).expect("row");
        }
        let mut bytes = builder.finish().into_bytes();
        stamp_producer(&mut bytes, id, 2, sequence);
        wire_core::Batch::from_bytes(bytes).expect("batch")
    }

    /// After a restart the producers' state comes back from the WAL alone: a re-sent batch is
    /// a duplicate acked with its original offsets, and the next one is appended.
    #[test]
    fn a_restart_recovers_the_producers_sequence_numbers_from_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("p3");
        let executor = wire_storage::io::local_executor().expect("executor");
        executor.run(async {
            let (log, _) = SegmentLog::open(&wal, LogConfig::default())
                .await
                .expect("open");
            // Producer 5 appends batches 1..=3 (3, 4 and 5 rows); producer 6 one batch.
            for (id, sequence, rows) in [(5, 1, 3), (6, 1, 1), (5, 2, 4), (5, 3, 5)] {
                log.append(&mut stamped(id, sequence, rows))
                    .await
                    .expect("append");
            }
            log.close().await.expect("close");
            let (log, _) = SegmentLog::open(&wal, LogConfig::default())
                .await
                .expect("reopen");
            let producers = Producers::new(dir.path().to_path_buf(), 16, 1, 0);
            assert!(!producers.recovered());
            super::recover_producers(&log, "rows", 3, &producers)
                .await
                .expect("recover");
            assert!(producers.recovered());
            let (id, epoch, conn) = producers.hello(5, 2).expect("resume");
            assert_eq!((id, epoch), (5, 2));
            let original = Appended {
                sequence: 3,
                partition: 3,
                base_offset: 8,
                rows: 5,
            };
            assert_eq!(producers.begin(5, 3, conn), Ok(Admit::Duplicate(original)));
            assert_eq!(producers.begin(5, 4, conn), Ok(Admit::Append));
            // A new producer gets an id above every recovered one.
            assert!(producers.hello(0, 0).expect("new").0 > 6);
        });
    }

    /// The acceptor races a pending accept against a stop timer, so the accept future is
    /// polled again every time the timer fires; every poll must not leave another reference
    /// to the task behind (glommio counts them in 16 bits and panics past 32,767).
    #[test]
    fn a_pending_accept_polled_many_times_does_not_leak_task_references() {
        let executor = wire_storage::io::local_executor().expect("executor");
        executor.run(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let accept = listener.accept();
            futures_lite::pin!(accept);
            for _ in 0..40_000 {
                // Nobody connects: the accept stays pending, polled with this task's waker.
                let polled = futures_lite::future::poll_once(&mut accept).await;
                assert!(
                    polled.is_none(),
                    "nobody connected, yet an accept completed"
                );
            }
        });
    }
}
