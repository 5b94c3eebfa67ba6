//! The ingest source: producers push batches over TCP with the ingest protocol
//! (docs/protocol.md, codec in `wire_net::ingest`).
//!
//! Every core listens on the source's address with `SO_REUSEPORT`, so the kernel spreads
//! connections over cores; a connection's batches go to its core's partition. Each accepted
//! batch is verified, checked against the schema, appended to the partition's WAL
//! (`<data-dir>/<pipeline>/<source>/p<core>`), handed to the pipeline, and only then
//! acknowledged with one credit. A pipeline that falls behind therefore stops granting credits
//! and the producer waits: backpressure reaches the socket.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use wire_core::spec::{DurabilitySpec, IngestSource};
use wire_core::{Batch, BatchView, Schema};
use wire_net::ingest::{
    encode, Ack, ErrorCode, ErrorFrame, Frame, FrameBuffer, HelloOk, PRODUCE_BATCH_BYTES_MAX,
    PROTOCOL_VERSION,
};
use wire_storage::wal::{Durability, LogConfig, SegmentLog};

use wire_storage::checkpoint::SourcePosition;

use super::Emitter;
use crate::runtime::{CoreCx, Notice};
use crate::Error;

/// Batches appended and waiting for the pipeline, per core, before connections stop acking.
const QUEUED_BATCHES: usize = 4;
/// How often an idle source re-evaluates its watermark (idle partitions).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often an idle source looks for a requested checkpoint.
const BARRIER_POLL: Duration = Duration::from_millis(10);
/// How often blocked waits look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);

pub(super) async fn run(
    cx: &Rc<CoreCx>,
    index: usize,
    spec: &IngestSource,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    let source = &cx.plan.sources[index];
    let log = open_log(cx, &source.name, spec).await?;
    let partition = cx.core as u32;
    emitter.own_partitions(&[partition]);
    // With checkpoints the WAL is the input of record: a restored run resumes at the
    // checkpoint's offset, a first run at the log's start, and replays up to its end before
    // accepting producers.
    let mut position = log.next_offset();
    if cx.checkpoints.is_some() {
        let saved = emitter
            .restored()
            .and_then(|s| s.positions.iter().find(|at| at.partition == partition))
            .map(|at| at.position);
        position = saved.unwrap_or_else(|| log.start_offset());
        position = replay(&log, &source.name, position, emitter).await?;
    }
    let positions = |position: u64| {
        vec![SourcePosition {
            partition,
            position,
            line: 0,
        }]
    };
    let partitions = cx.cores as u32;
    let listener = listen(cx, index, &source.name, spec).await?;
    let (tx, rx) = local_channel::new_bounded::<(u64, Batch)>(QUEUED_BATCHES);
    let acceptor = Acceptor {
        cx: cx.clone(),
        source: index,
        log: log.clone(),
        queue: Rc::new(tx),
        credits: spec.credits.max(1),
    };
    let accepting = glommio::spawn_local(acceptor.run(listener)).detach();
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

/// Binds the source's address on this core. With port 0, core 0 picks the port and the other
/// cores bind the same one.
async fn listen(
    cx: &CoreCx,
    index: usize,
    name: &str,
    spec: &IngestSource,
) -> Result<TcpListener, Error> {
    let listen_error = |addr: String, error: std::io::Error| Error::Listen {
        source_name: name.to_string(),
        addr,
        error,
    };
    let mut addr: SocketAddr = spec.listen.parse().map_err(|_| {
        listen_error(
            spec.listen.clone(),
            std::io::Error::other("not an IP address and port"),
        )
    })?;
    if addr.port() == 0 && cx.core != 0 {
        addr = loop {
            if let Some(bound) = cx.bound_addr(index) {
                break bound;
            }
            if cx.stopping() {
                return Err(listen_error(
                    spec.listen.clone(),
                    std::io::Error::other("stopped before core 0 bound"),
                ));
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        };
    }
    let listener =
        TcpListener::bind(addr).map_err(|err| listen_error(addr.to_string(), err.into()))?;
    let bound = listener
        .local_addr()
        .map_err(|err| listen_error(addr.to_string(), err.into()))?;
    if cx.core == 0 {
        cx.set_bound_addr(index, bound);
        let _ = cx.notices.send(Notice::Listening {
            source: name.to_string(),
            addr: bound,
        });
    }
    Ok(listener)
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
    log: SegmentLog,
    queue: Rc<LocalSender<(u64, Batch)>>,
    credits: u32,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let next_id = Cell::new(0u64);
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
            next_id.set(next_id.get() + 1);
            let connection = Connection {
                cx: self.cx.clone(),
                source: self.source,
                log: self.log.clone(),
                queue: self.queue.clone(),
                credits: self.credits,
                peer: stream.peer_addr().ok(),
            };
            glommio::spawn_local(connection.run(stream)).detach();
        }
    }
}

/// Resolves once the pipeline is stopping.
async fn stopped(cx: &CoreCx) {
    while !cx.stopping() {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// One producer's session.
struct Connection {
    cx: Rc<CoreCx>,
    source: usize,
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
    /// The peer broke the protocol or sent bad data; tell it why.
    Refuse(ErrorFrame),
    /// The socket failed.
    Io(std::io::Error),
    /// The WAL or the pipeline failed.
    Fatal(Error),
}

impl Connection {
    async fn run(self, mut stream: TcpStream) {
        let mut frames = FrameBuffer::new();
        let end = self.session(&mut stream, &mut frames).await;
        let mut out = Vec::new();
        match &end {
            End::Closed | End::Io(_) => {}
            End::Stopping => encode::<Vec<u8>>(&Frame::Close, &mut out),
            End::Refuse(frame) => encode::<Vec<u8>>(&Frame::Error(frame.clone()), &mut out),
            End::Fatal(err) => encode::<Vec<u8>>(
                &Frame::Error(ErrorFrame::new(ErrorCode::Internal, 0, err.to_string())),
                &mut out,
            ),
        }
        if !out.is_empty() {
            let _ = stream.write_all(&out).await;
            let _ = stream.flush().await;
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
        let _ = stream.close().await;
    }

    async fn session(&self, stream: &mut TcpStream, frames: &mut FrameBuffer) -> End {
        let source = &self.cx.plan.sources[self.source];
        let mut scratch = vec![0u8; FrameBuffer::READ_CHUNK];
        let mut out = Vec::with_capacity(64);
        let mut greeted = false;
        let mut expected_seq = 1u64;
        let mut credits = self.credits;
        loop {
            let frame = match frames.next_frame_ref() {
                Err(err) => {
                    return End::Refuse(ErrorFrame::new(
                        ErrorCode::ProtocolViolation,
                        0,
                        err.to_string(),
                    ))
                }
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    match self.read_more(stream, &mut scratch).await {
                        Ok(Some(0)) => return End::Closed,
                        Ok(Some(n)) => frames.extend(&scratch[..n]),
                        Ok(None) => return End::Stopping,
                        Err(err) => return End::Io(err),
                    }
                    continue;
                }
            };
            out.clear();
            match frame {
                Frame::Hello(hello) if !greeted => {
                    if let Err(refusal) = check_hello(&hello, &source.name, &source.schema) {
                        return End::Refuse(refusal);
                    }
                    greeted = true;
                    let ok = HelloOk {
                        version: PROTOCOL_VERSION,
                        partition: self.cx.core as u32,
                        credits,
                        max_batch_bytes: PRODUCE_BATCH_BYTES_MAX as u32,
                    };
                    encode::<Vec<u8>>(&Frame::HelloOk(ok), &mut out);
                }
                Frame::Produce { seq, batch } if greeted => {
                    let refuse =
                        |code, message: String| End::Refuse(ErrorFrame::new(code, seq, message));
                    if seq != expected_seq {
                        return refuse(
                            ErrorCode::ProtocolViolation,
                            format!("expected batch seq {expected_seq}, found {seq}"),
                        );
                    }
                    if credits == 0 {
                        return refuse(
                            ErrorCode::ProtocolViolation,
                            "batch sent without credit".into(),
                        );
                    }
                    credits -= 1;
                    let mut batch = match accept_batch(batch, &source.schema) {
                        Ok(batch) => batch,
                        Err((code, message)) => return refuse(code, message),
                    };
                    let rows = batch.row_count() as u32;
                    let base_offset = match self.log.append(&mut batch).await {
                        Ok(offset) => offset,
                        Err(error) => return End::Fatal(wal_error(&source.name, error)),
                    };
                    // Waits while the pipeline is behind: no ack, so no new credit.
                    let end = base_offset + u64::from(rows);
                    if self.queue.send((end, batch)).await.is_err() {
                        return End::Stopping;
                    }
                    expected_seq += 1;
                    let ack = Ack {
                        seq,
                        base_offset,
                        rows,
                        credits: 1,
                    };
                    encode::<Vec<u8>>(&Frame::Ack(ack), &mut out);
                    credits += ack.credits;
                }
                Frame::Close => return End::Closed,
                other => {
                    let what = other.frame_type().name();
                    let message = if greeted {
                        format!("unexpected {what} frame")
                    } else {
                        format!("expected Hello first, found {what}")
                    };
                    return End::Refuse(ErrorFrame::new(ErrorCode::ProtocolViolation, 0, message));
                }
            }
            if let Err(err) = stream.write_all(&out).await {
                return End::Io(err);
            }
        }
    }

    /// Reads more bytes; `None` when the pipeline stops first.
    async fn read_more(
        &self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
    ) -> std::io::Result<Option<usize>> {
        futures_lite::future::or(async { stream.read(scratch).await.map(Some) }, async {
            stopped(&self.cx).await;
            Ok(None)
        })
        .await
    }
}

fn check_hello(
    hello: &wire_net::ingest::Hello,
    source: &str,
    schema: &Schema,
) -> Result<(), ErrorFrame> {
    if hello.version != PROTOCOL_VERSION {
        return Err(ErrorFrame::new(
            ErrorCode::UnsupportedVersion,
            0,
            format!(
                "this server speaks ingest protocol version {PROTOCOL_VERSION}, not {}",
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
