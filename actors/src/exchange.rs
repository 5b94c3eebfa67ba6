//! The exchange between nodes: how a task instance sends rows to a consuming instance that
//! runs in another process (another node), over the exchange protocol (`wire_net::exchange`).
//!
//! A pipeline spread over nodes has *slots* (the cores of all its nodes, numbered across the
//! cluster); keys go to slots exactly as they go to cores on one node, and a [`Placement`]
//! tells each node which slots it runs and where the others are. For every `key_by` edge,
//! every producing slot here and every consuming slot elsewhere, the producer opens one TCP
//! connection (one *stream*) to the consuming node's [`ExchangeHub`], which hands it to the
//! consuming slot's core by its [`StreamKey`].
//!
//! Flow control is by credits: the consumer grants [`crate::pipeline::EXCHANGE_BATCHES`]
//! batches when it takes the stream and, as its mailbox accepts batches, grants them again
//! [`CREDIT_GRANT`] at a time (one frame per several batches, not one each), and the producer
//! sends a batch only while it holds a credit: a slow consumer suspends its
//! producers on other nodes as a full queue does on one node. Watermarks, barriers and the end
//! travel in the same stream, so their order with the rows is kept.
//!
//! Failures: a stream that breaks, ends without its `End`, or carries bytes that are not the
//! protocol (or a batch that does not verify) fails the pipeline with an error naming the
//! stream; the node itself carries on. A handshake that is not the protocol is refused and
//! logged by the hub.
//!
//! With the node's TLS on, every stream runs over mutual TLS ([`tls`]): the hub requires a
//! client certificate from the cluster CA that names a member, the producer checks the hub's
//! certificate against the same CA; a plaintext peer, or one with a certificate from another
//! CA, is refused on both sides (the hub logs it and keeps serving).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::LocalSender;
use glommio::sync::Semaphore;
use wire_core::time::watermark::SenderId;
use wire_core::Batch;
use wire_net::exchange::{self, Frame, FrameType, StreamKey, HEAD_LEN};
use wire_net::tls::{classify_head, StreamHead};

use crate::message::Message;
use crate::pipeline::{Failure, EXCHANGE_BATCHES};
use crate::Error;

pub mod tls;

use tls::{glommio_stream, Link};
pub use tls::{send_blocking, Arrived, ExchangeTls, MemberCheck};

/// How long a handshake may take before the hub drops the connection.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest Hello body the hub reads (a pipeline name and a few numbers).
const HELLO_BYTES_MAX: usize = 4096;
/// How long a producer keeps trying to reach a consuming node, and a consuming slot waits for
/// a producer's stream, before the pipeline fails.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Where a pipeline's slots run, as seen by one node.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The pipeline's name (streams are matched by it).
    pub pipeline: String,
    /// The placement's epoch: streams of another epoch are never matched.
    pub epoch: u64,
    /// Slots of the pipeline over all nodes.
    pub slots: usize,
    /// The slots this node runs, in the order of the pool cores they run on.
    pub local: Vec<usize>,
    /// The exchange address of the node running each slot (index: slot).
    pub peers: Vec<SocketAddr>,
    /// This node's hub.
    pub hub: Arc<ExchangeHub>,
}

impl Placement {
    /// Checks that the placement is whole: every slot has a peer, local slots are distinct
    /// and in range.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |why: String| {
            Err(Error::Pool(format!(
                "placement of `{}`: {why}",
                self.pipeline
            )))
        };
        if self.peers.len() != self.slots {
            return bad(format!(
                "{} slots but {} peers",
                self.slots,
                self.peers.len()
            ));
        }
        let mut seen = vec![false; self.slots];
        for slot in &self.local {
            match seen.get_mut(*slot) {
                None => return bad(format!("local slot {slot} of {}", self.slots)),
                Some(true) => return bad(format!("slot {slot} listed twice")),
                Some(seen) => *seen = true,
            }
        }
        if self.local.is_empty() {
            return bad("no slot runs here".to_string());
        }
        Ok(())
    }

    /// The key of the stream from `(task, edge)` on slot `from` to slot `to`.
    pub fn stream(&self, task: usize, edge: usize, from: usize, to: usize) -> StreamKey {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        StreamKey {
            pipeline: self.pipeline.clone(),
            epoch: self.epoch,
            task: n(task),
            edge: n(edge),
            from: n(from),
            to: n(to),
        }
    }
}

/// A node's exchange listener: accepts streams from producers on other nodes, reads their
/// Hello and keeps each connection until the consuming slot claims it.
#[derive(Debug)]
pub struct ExchangeHub {
    addr: SocketAddr,
    tls: Option<Arc<ExchangeTls>>,
    arrived: Mutex<HashMap<StreamKey, (Instant, Arrived)>>,
}

impl ExchangeHub {
    /// Listens on `addr` (port 0: any free port) on a thread of its own; with `tls`, every
    /// stream in and out runs over mutual TLS.
    pub fn bind(
        addr: SocketAddr,
        tls: Option<Arc<ExchangeTls>>,
    ) -> std::io::Result<Arc<ExchangeHub>> {
        let listener = TcpListener::bind(addr)?;
        let hub = Arc::new(ExchangeHub {
            addr: listener.local_addr()?,
            tls,
            arrived: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("wire-exchange".to_string())
            .spawn(move || accept(listener, weak))?;
        let weak = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("wire-exchange-sweep".to_string())
            .spawn(move || sweep(weak))?;
        Ok(hub)
    }

    /// The address producers connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS the hub serves and its node dials with, if on.
    pub fn tls(&self) -> Option<&Arc<ExchangeTls>> {
        self.tls.as_ref()
    }

    /// Takes the connection of `stream`, if it has arrived.
    pub fn claim(&self, stream: &StreamKey) -> Option<Arrived> {
        self.lock().remove(stream).map(|(_, stream)| stream)
    }

    /// Drops the unclaimed connections of a pipeline's placement (it ended).
    pub fn forget(&self, pipeline: &str, epoch: u64) {
        self.lock()
            .retain(|key, _| key.pipeline != pipeline || key.epoch != epoch);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, (Instant, Arrived)>> {
        self.arrived.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the streams no slot claimed within twice [`CONNECT_WAIT`] (their consumer never
/// started, or failed first): their producers see the stream end instead of waiting for
/// credits for ever.
fn sweep(hub: Weak<ExchangeHub>) {
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.lock().retain(|key, (arrived, _)| {
            let keep = arrived.elapsed() < 2 * CONNECT_WAIT;
            if !keep {
                tracing::warn!(?key, "exchange: closed a stream no slot claimed");
            }
            keep
        });
    }
}

fn accept(listener: TcpListener, hub: Weak<ExchangeHub>) {
    for connection in listener.incoming() {
        let Some(hub) = hub.upgrade() else {
            return;
        };
        match connection {
            Ok(stream) => {
                let spawned = std::thread::Builder::new()
                    .name("wire-exchange-hello".to_string())
                    .spawn(move || handshake(stream, &hub));
                if let Err(err) = spawned {
                    tracing::warn!(error = %err, "exchange: cannot start a handshake thread");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "exchange: accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Reads a producer's Hello (after the TLS handshake, with TLS on); keeps the connection for
/// its slot, or refuses it.
fn handshake(mut sock: std::net::TcpStream, hub: &ExchangeHub) {
    let peer = sock
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let _ = sock.set_read_timeout(Some(HELLO_TIMEOUT));
    let _ = sock.set_write_timeout(Some(HELLO_TIMEOUT));
    let refuse = |sock: &mut dyn Write, why: String| {
        tracing::warn!(%peer, error = %why, "exchange: refused a connection");
        let mut out = Vec::new();
        exchange::encode(&Frame::Refuse::<&[u8]>(why), &mut out);
        let _ = sock.write_all(&out).and_then(|()| sock.flush());
    };
    let speaks_tls = match first_bytes(&sock) {
        Ok(Some(tls)) => tls,
        // A node looking whether this one is alive (a held restart): nothing to refuse.
        Ok(None) => return tracing::debug!(%peer, "exchange: a connection closed before it spoke"),
        Err(why) => return refuse(&mut sock, why),
    };
    let Some(tls) = &hub.tls else {
        if speaks_tls {
            let why = "this node's exchange runs without TLS, the producing node with it: \
                       give both nodes the same TLS settings"
                .to_string();
            return refuse(&mut sock, why);
        }
        match read_hello(&mut sock) {
            Ok(key) => arrived(hub, &peer, key, Arrived { sock, tls: None }),
            Err(why) => refuse(&mut sock, why),
        }
        return;
    };
    if !speaks_tls {
        // Said in plaintext, so a plaintext producer reads why.
        let why = "this node's exchange requires mutual TLS (its TLS is on): the producing \
                   node runs without TLS"
            .to_string();
        return refuse(&mut sock, why);
    }
    let mut conn = match tls.accept(&mut sock) {
        Ok(conn) => conn,
        Err(why) => {
            // The handshake sent its alert, if any; nothing more can be said in the clear.
            tracing::warn!(%peer, error = %why, "exchange: refused a connection");
            return;
        }
    };
    let hello = read_hello(&mut rustls::Stream::new(&mut conn, &mut sock));
    match hello {
        Ok(key) => {
            let tls = Some(Box::new(conn));
            arrived(hub, &peer, key, Arrived { sock, tls })
        }
        Err(why) => refuse(&mut rustls::Stream::new(&mut conn, &mut sock), why),
    }
}

/// Keeps an arrived stream until its slot claims it.
fn arrived(hub: &ExchangeHub, peer: &str, key: StreamKey, stream: Arrived) {
    let _ = stream.sock.set_read_timeout(None);
    let _ = stream.sock.set_write_timeout(None);
    let _ = stream.sock.set_nodelay(true);
    tracing::debug!(%peer, ?key, "exchange: stream arrived");
    hub.lock().insert(key, (Instant::now(), stream));
}

/// Whether the connection starts with a TLS handshake record (see [`classify_head`]); an
/// exchange Hello never does (its length's third byte is 0). `None`: closed before its first
/// byte.
fn first_bytes(sock: &std::net::TcpStream) -> Result<Option<bool>, String> {
    let mut head = [0u8; 3];
    let started = Instant::now();
    loop {
        let n = sock
            .peek(&mut head)
            .map_err(|e| format!("reading the hello: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        match classify_head(&head[..n]) {
            StreamHead::Tls => return Ok(Some(true)),
            StreamHead::Plaintext => return Ok(Some(false)),
            StreamHead::NeedMore if started.elapsed() >= HELLO_TIMEOUT => {
                return Err("no hello in time".to_string())
            }
            StreamHead::NeedMore => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Reads the Hello a producer sends first (plain, or inside TLS): a Hello frame of at most
/// `HELLO_BYTES_MAX` bytes in this node's protocol version, else why not, for the refusal.
/// Fuzzed with the hub's TLS handshake by `fuzz/fuzz_targets/exchange_handshake.rs`.
pub fn read_hello(stream: &mut impl Read) -> Result<StreamKey, String> {
    let mut head = [0; HEAD_LEN];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("reading the hello: {e}"))?;
    let (kind, len) = exchange::decode_head(head).map_err(|e| e.to_string())?;
    if kind != FrameType::Hello || len > HELLO_BYTES_MAX {
        return Err(format!(
            "expected a hello of at most {HELLO_BYTES_MAX} bytes, got a {} frame of {len}",
            kind.name()
        ));
    }
    let mut body = vec![0; len];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("reading the hello: {e}"))?;
    match exchange::decode_body(kind, &body).map_err(|e| e.to_string())? {
        Frame::Hello { version, stream } if version == exchange::VERSION => Ok(stream),
        Frame::Hello { version, .. } => Err(format!(
            "exchange protocol version {version}; this node speaks {}",
            exchange::VERSION
        )),
        _ => Err("expected a hello".to_string()),
    }
}

/// The producing end of one stream, used by one task on one core.
pub struct NetSender {
    key: StreamKey,
    peer: SocketAddr,
    stream: RefCell<Option<Link>>,
    credits: Rc<Semaphore>,
    failure: Arc<Failure>,
    out: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for NetSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetSender({:?} to {})", self.key, self.peer)
    }
}

impl NetSender {
    /// Connects to `peer` (over mutual TLS with `tls`) and opens `key`'s stream, retrying
    /// until [`CONNECT_WAIT`]. If that fails, the pipeline has failed and the sender drops
    /// what it is given.
    pub async fn connect(
        peer: SocketAddr,
        key: StreamKey,
        failure: Arc<Failure>,
        tls: Option<Arc<ExchangeTls>>,
    ) -> NetSender {
        match NetSender::open(peer, key.clone(), failure.clone(), tls).await {
            Ok(sender) => sender,
            Err(err) => {
                failure.record(err);
                let credits = Rc::new(Semaphore::new(0));
                credits.close();
                NetSender {
                    key,
                    peer,
                    stream: RefCell::new(None),
                    credits,
                    failure,
                    out: RefCell::new(Vec::new()),
                }
            }
        }
    }

    async fn open(
        peer: SocketAddr,
        key: StreamKey,
        failure: Arc<Failure>,
        tls: Option<Arc<ExchangeTls>>,
    ) -> Result<NetSender, Error> {
        let std_stream = connect(peer, &key, &failure).await?;
        let io = |err: std::io::Error| {
            Error::Exchange(format!("stream {} to {peer}: {err}", describe(&key)))
        };
        let (mut writer, reader) = links(std_stream, tls, peer, &key).await?;
        let mut hello = Vec::new();
        let frame = Frame::Hello::<&[u8]> {
            version: exchange::VERSION,
            stream: key.clone(),
        };
        exchange::encode(&frame, &mut hello);
        writer.write_all(&hello).await.map_err(io)?;
        writer.flush().await.map_err(io)?;
        let credits = Rc::new(Semaphore::new(0));
        glommio::spawn_local(read_credits(
            reader,
            credits.clone(),
            failure.clone(),
            describe(&key),
        ))
        .detach();
        Ok(NetSender {
            key,
            peer,
            stream: RefCell::new(Some(writer)),
            credits,
            failure,
            out: RefCell::new(Vec::with_capacity(64 << 10)),
        })
    }

    /// Sends `message` (a batch once a credit is held); `false` if the stream is gone, which
    /// has failed the pipeline unless the consumer refused or closed it in order.
    pub async fn send(&self, message: Message) -> bool {
        if self.stream.borrow().is_none() {
            return false;
        }
        let mut out = std::mem::take(&mut *self.out.borrow_mut());
        out.clear();
        let end = matches!(message, Message::End { .. });
        match message {
            Message::Batch { mut batch, .. } => {
                let credit = unless_failed(&self.failure, self.credits.acquire(1)).await;
                if !matches!(credit, Some(Ok(()))) {
                    return false;
                }
                let bytes = batch.sealed_bytes();
                out.extend_from_slice(&exchange::batch_head(bytes.len()));
                out.extend_from_slice(bytes);
            }
            Message::Watermark { time, .. } => encode(&Frame::Watermark(time), &mut out),
            Message::Idle { .. } => encode(&Frame::Idle, &mut out),
            Message::Barrier { id, .. } => encode(&Frame::Barrier(id), &mut out),
            Message::End { .. } => encode(&Frame::End, &mut out),
        }
        let Some(mut stream) = self.stream.borrow_mut().take() else {
            return false;
        };
        let sent = unless_failed(&self.failure, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await;
        *self.out.borrow_mut() = out;
        let Some(sent) = sent else {
            return false; // the run failed while the peer did not take the bytes
        };
        if let Err(err) = sent {
            self.failure.record(Error::Exchange(format!(
                "stream {} to {}: {err}",
                describe(&self.key),
                self.peer
            )));
            return false;
        }
        if end {
            let _ = stream.close().await;
        } else {
            *self.stream.borrow_mut() = Some(stream);
        }
        true
    }
}

/// How often a task waiting on a peer looks whether the run failed meanwhile.
const FAILURE_POLL: Duration = Duration::from_millis(50);

/// Runs `work` unless the run fails first (`None` then): a peer that fell silent (a frozen
/// node keeps its sockets open) must not keep a failed or aborted run from ending. Free when
/// `work` is ready at once: the watch is polled, and its timer set, only if it is not.
async fn unless_failed<T>(
    failure: &Failure,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let watch = async {
        while !failure.failed() {
            glommio::timer::sleep(FAILURE_POLL).await;
        }
        None
    };
    futures_lite::future::or(async { Some(work.await) }, watch).await
}

fn encode(frame: &Frame<&[u8]>, out: &mut Vec<u8>) {
    exchange::encode(frame, out);
}

/// How a stream is named in errors.
fn describe(key: &StreamKey) -> String {
    format!(
        "`{}` task {} edge {} slot {} -> slot {} (epoch {})",
        key.pipeline, key.task, key.edge, key.from, key.to, key.epoch
    )
}

/// Reads the consumer's credits (and a refusal) until the stream closes.
async fn read_credits(
    mut stream: Link,
    credits: Rc<Semaphore>,
    failure: Arc<Failure>,
    name: String,
) {
    loop {
        match read_frame(&mut stream, 1024).await {
            Ok(Some(Frame::Credit(n))) => credits.signal(u64::from(n)),
            Ok(Some(Frame::Refuse(why))) => {
                failure.record(Error::Exchange(format!("stream {name} refused: {why}")));
                break;
            }
            Ok(Some(other)) => {
                let kind = other.frame_type().name();
                failure.record(Error::Exchange(format!(
                    "stream {name}: the consumer sent a {kind} frame"
                )));
                break;
            }
            Ok(None) => break,
            Err(err) => {
                failure.record(Error::Exchange(format!("stream {name}: {err}")));
                break;
            }
        }
    }
    credits.close();
}

/// Reads one frame of at most `max` body bytes; `None` at a clean end of stream.
async fn read_frame(stream: &mut Link, max: usize) -> Result<Option<Frame>, String> {
    let mut head = [0; HEAD_LEN];
    match stream.read(&mut head[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(err) => return Err(tls::explain(&err, "consuming")),
    }
    stream
        .read_exact(&mut head[1..])
        .await
        .map_err(|e| format!("reading a frame head: {e}"))?;
    let (kind, len) = exchange::decode_head(head).map_err(|e| e.to_string())?;
    if len > max {
        return Err(format!(
            "a {} frame of {len} bytes (at most {max})",
            kind.name()
        ));
    }
    let mut body = vec![0; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("reading a {} frame: {e}", kind.name()))?;
    let frame = exchange::decode_body(kind, &body).map_err(|e| e.to_string())?;
    Ok(Some(frame.into_owned()))
}

/// The consuming end of one stream: waits for the producer's connection at the hub, then
/// moves what arrives into the consumer's mailbox, granting credits back as batches are
/// delivered.
pub async fn receive(
    hub: Arc<ExchangeHub>,
    key: StreamKey,
    port: u8,
    failure: Arc<Failure>,
    mailbox: Rc<LocalSender<Message>>,
) {
    let sender = SenderId::new(key.task as usize, key.from as usize);
    let name = describe(&key);
    let result = match claim(&hub, &key, &failure).await {
        Ok(Some(stream)) => unless_failed(&failure, pump(stream, port, sender, &mailbox))
            .await
            .unwrap_or_else(|| Err("the run failed before the producer ended".into())),
        Ok(None) => Ok(()),
        Err(err) => Err(err),
    };
    if let Err(why) = result {
        failure.record(Error::Exchange(format!("stream {name}: {why}")));
        // Unblock the consumer: the run fails, and its rows are not taken as complete.
        let _ = mailbox.send(Message::End { sender }).await;
    }
}

/// The stream's connection once it arrived; `None` if the pipeline failed meanwhile.
async fn claim(
    hub: &ExchangeHub,
    key: &StreamKey,
    failure: &Failure,
) -> Result<Option<Link>, String> {
    let deadline = Instant::now() + CONNECT_WAIT;
    let mut pause = Duration::from_micros(500);
    loop {
        if let Some(stream) = hub.claim(key) {
            return stream.into_link().map(Some).map_err(|e| e.to_string());
        }
        if failure.failed() {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the producer did not connect within {} s",
                CONNECT_WAIT.as_secs()
            ));
        }
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Batches the consumer grants back in one credit frame, once its mailbox has taken that many;
/// well below [`EXCHANGE_BATCHES`], so a producer never waits on credits held back.
pub const CREDIT_GRANT: u32 = 8;
const _: () = assert!((CREDIT_GRANT as usize) * 2 <= EXCHANGE_BATCHES);

/// Writes `bytes` and sends them on (TLS holds written bytes until flushed).
async fn send_all(stream: &mut Link, bytes: &[u8]) -> Result<(), String> {
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// Connects to `peer`, retrying until [`CONNECT_WAIT`] has passed (the peer's node may still
/// be starting), or until the run fails or is aborted: a dead peer must not keep a run that
/// was replaced (its node found dead, say) from ending.
async fn connect(
    peer: SocketAddr,
    key: &StreamKey,
    failure: &Failure,
) -> Result<std::net::TcpStream, Error> {
    let deadline = Instant::now() + CONNECT_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match std::net::TcpStream::connect_timeout(&peer, Duration::from_secs(2)) {
            Ok(stream) => return Ok(stream),
            Err(err) if Instant::now() >= deadline => {
                return Err(Error::Exchange(format!(
                    "cannot reach node {peer} for stream {}: {err}",
                    describe(key)
                )))
            }
            Err(err) if failure.failed() => {
                return Err(Error::Exchange(format!(
                    "stream {}: the run failed while node {peer} could not be reached: {err}",
                    describe(key)
                )))
            }
            Err(_) => {
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The producer's two ends of a connected stream, plain or (with `tls`) after the handshake:
/// the one it writes frames to and the one it reads credits from.
async fn links(
    stream: std::net::TcpStream,
    tls: Option<Arc<ExchangeTls>>,
    peer: SocketAddr,
    key: &StreamKey,
) -> Result<(Link, Link), Error> {
    let io =
        |err: std::io::Error| Error::Exchange(format!("stream {} to {peer}: {err}", describe(key)));
    stream.set_nodelay(true).map_err(io)?;
    let Some(tls) = tls else {
        let reader = Link::Plain(glommio_stream(stream.try_clone().map_err(io)?).map_err(io)?);
        return Ok((Link::Plain(glommio_stream(stream).map_err(io)?), reader));
    };
    let link = Link::connect(stream, &tls, peer).await.map_err(|err| {
        Error::Exchange(format!(
            "stream {} to {peer}: {}",
            describe(key),
            tls::explain(&err, "consuming")
        ))
    })?;
    let reader = link
        .share()
        .ok_or_else(|| io(std::io::ErrorKind::Other.into()))?;
    Ok((link, reader))
}

/// Reads the next frame of a producer's stream as the message it carries.
async fn read_message(stream: &mut Link, port: u8, sender: SenderId) -> Result<Message, String> {
    let mut head = [0; HEAD_LEN];
    stream.read_exact(&mut head).await.map_err(|e| {
        format!(
            "connection lost before the end: {}",
            tls::explain(&e, "producing")
        )
    })?;
    let (kind, len) = exchange::decode_head(head).map_err(|e| e.to_string())?;
    if kind == FrameType::Batch {
        let mut bytes = vec![0; len];
        stream
            .read_exact(&mut bytes)
            .await
            .map_err(|e| format!("connection lost inside a batch: {e}"))?;
        let batch = Batch::from_bytes(bytes).map_err(|e| format!("bad batch: {e}"))?;
        return Ok(Message::Batch {
            batch,
            port,
            sender,
        });
    }
    let mut body = vec![0; len.min(64)];
    if len > body.len() {
        return Err(format!("a {} frame of {len} bytes", kind.name()));
    }
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("connection lost inside a frame: {e}"))?;
    match exchange::decode_body(kind, &body).map_err(|e| e.to_string())? {
        Frame::Watermark(time) => Ok(Message::Watermark { sender, time }),
        Frame::Idle => Ok(Message::Idle { sender }),
        Frame::Barrier(id) => Ok(Message::Barrier { sender, id }),
        Frame::End => Ok(Message::End { sender }),
        other => Err(format!(
            "the producer sent a {} frame",
            other.frame_type().name()
        )),
    }
}

/// Takes a producer's frames into the mailbox, granting credits back as batches are taken.
async fn pump(
    mut stream: Link,
    port: u8,
    sender: SenderId,
    mailbox: &LocalSender<Message>,
) -> Result<(), String> {
    let mut credit = Vec::new();
    exchange::encode(
        &Frame::Credit::<&[u8]>(EXCHANGE_BATCHES as u32),
        &mut credit,
    );
    send_all(&mut stream, &credit).await?;
    credit.clear();
    exchange::encode(&Frame::Credit::<&[u8]>(CREDIT_GRANT), &mut credit);
    let mut taken = 0;
    loop {
        let message = read_message(&mut stream, port, sender).await?;
        let is_batch = matches!(message, Message::Batch { .. });
        let end = matches!(message, Message::End { .. });
        if mailbox.send(message).await.is_err() {
            return Ok(());
        }
        if end {
            // Closed in order (TLS: close_notify), so the producer reads a clean end.
            let _ = stream.close().await;
            return Ok(());
        }
        if is_batch {
            taken += 1;
            if taken == CREDIT_GRANT {
                taken = 0;
                send_all(&mut stream, &credit).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests;
