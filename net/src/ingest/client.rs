//! A blocking ingest client over one `std::net::TcpStream`, for tools, tests and loadgen.
//!
//! It keeps the protocol's two counters: its credit balance (never sends a Produce without a
//! credit) and the queue of sent-but-unacked batches (acks must arrive in order).
//! With idempotence (the default) the server issues a producer id, and every batch carries it
//! with the batch's sequence number in its header; with `reconnect` set, a lost connection is
//! re-opened under the same producer id and the unacked batches are re-sent with the same
//! sequence numbers, which the server recognises and does not append twice.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use wire_core::record::batch::stamp_producer;
use wire_core::{Batch, Schema};

use super::{
    encode, Ack, ErrorCode, ErrorFrame, Frame, FrameBuffer, Hello, HelloOk, IDEMPOTENT_VERSION,
    PROTOCOL_VERSION_MIN, SCHEMA_FIELDS_MAX, STRING_BYTES_MAX, TOKEN_VERSION,
};
use crate::error::ClientError;

mod conn;

pub use conn::ClientTls;
use conn::Conn;

/// Bytes of a Produce frame before its batch: length prefix, type byte and `seq`.
const PRODUCE_HEADER_BYTES: usize = 4 + 1 + 8;
/// First pause between reconnection attempts; it doubles up to [`RECONNECT_BACKOFF_MAX`].
const RECONNECT_BACKOFF: Duration = Duration::from_millis(20);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// How an [`IngestClient`] talks to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Be an idempotent producer (protocol version 2): the server drops a re-sent batch it
    /// has already appended and acks it again. Off: protocol version 1, at-least-once.
    pub idempotent: bool,
    /// On a lost connection (socket error, end of stream, or a retryable Error frame such as
    /// `ShuttingDown`), reconnect for at most this long and re-send the unacked batches.
    /// `None`: the error is returned and the client is done.
    pub reconnect: Option<Duration>,
    /// A bearer token (`wire_<id>_<secret>`) for a node with security on: sent in the Hello,
    /// which makes the client speak protocol version 3. `None`: no token (versions 1 and 2).
    pub token: Option<String>,
    /// Speak TLS to a node whose ingest ports have it (`wire start --tls-cert ...`).
    /// `None`: plaintext.
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    /// Idempotent, no reconnection.
    fn default() -> ClientOptions {
        ClientOptions {
            idempotent: true,
            reconnect: None,
            token: None,
            tls: None,
        }
    }
}

/// A batch sent (or to be re-sent) and not yet acknowledged.
#[derive(Debug)]
struct Pending {
    /// The client's sequence number for it (the producer sequence when idempotent).
    seq: u64,
    /// The connection's Produce `seq` it went out with, 0 while not sent on this connection.
    wire_seq: u64,
    /// The stamped batch, kept for re-sending when `reconnect` is set.
    bytes: Option<Vec<u8>>,
}

/// A producer connection to one node's ingest port.
///
/// Not `Sync`: one thread drives it. `send` blocks only while the credit balance is zero (or
/// while it reconnects).
///
/// ```no_run
/// use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
/// use wire_net::ingest::IngestClient;
///
/// let schema = Schema::new(vec![Field::new("id", DataType::I64)]);
/// let mut client = IngestClient::connect("127.0.0.1:7070", "example", "bids", &schema)?;
/// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(client.partition()));
/// builder.push(&[ValueRef::I64(1)])?;
/// let seq = client.send(&builder.finish())?;
/// let acks = client.wait_acks()?;
/// assert_eq!(acks.last().map(|ack| ack.seq), Some(seq));
/// client.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct IngestClient {
    addrs: Vec<SocketAddr>,
    hello: Hello,
    options: ClientOptions,
    stream: Conn,
    buffer: FrameBuffer,
    out: Vec<u8>,
    accepted: HelloOk,
    credits: u64,
    /// The client sequence number of the next batch (never reset).
    next_seq: u64,
    /// The connection's next Produce `seq` (1 on every new connection).
    next_wire_seq: u64,
    unacked: VecDeque<Pending>,
    acks: Vec<Ack>,
    reconnects: u64,
}

impl IngestClient {
    /// Connects with [`ClientOptions::default`] (idempotent, no reconnection), sends Hello and
    /// waits for the server's HelloOk (or Error).
    pub fn connect(
        addr: impl ToSocketAddrs,
        client_name: &str,
        source: &str,
        schema: &Schema,
    ) -> Result<IngestClient, ClientError> {
        IngestClient::connect_with(addr, client_name, source, schema, ClientOptions::default())
    }

    /// Connects with the given options.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        client_name: &str,
        source: &str,
        schema: &Schema,
        options: ClientOptions,
    ) -> Result<IngestClient, ClientError> {
        check_len("client name", client_name.len(), STRING_BYTES_MAX)?;
        check_len("source name", source.len(), STRING_BYTES_MAX)?;
        check_len("schema", schema.len(), SCHEMA_FIELDS_MAX)?;
        for field in schema.fields() {
            check_len("field name", field.name.len(), STRING_BYTES_MAX)?;
        }
        let token = options.token.clone().unwrap_or_default();
        check_len("token", token.len(), STRING_BYTES_MAX)?;
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let hello = Hello {
            version: hello_version(&options),
            client: client_name.to_owned(),
            source: source.to_owned(),
            schema: schema.clone(),
            idempotent: options.idempotent,
            producer_id: 0,
            producer_epoch: 0,
            token,
        };
        let (stream, buffer, accepted) = open_session(&addrs, &hello, options.tls.as_ref())?;
        Ok(IngestClient {
            addrs,
            hello,
            options,
            stream,
            buffer,
            out: Vec::new(),
            accepted,
            credits: u64::from(accepted.credits),
            next_seq: 1,
            next_wire_seq: 1,
            unacked: VecDeque::new(),
            acks: Vec::new(),
            reconnects: 0,
        })
    }

    /// Partition the server appends this connection's batches to.
    pub fn partition(&self) -> u32 {
        self.accepted.partition
    }

    /// The server's HelloOk, as received (on the current connection).
    pub fn accepted(&self) -> HelloOk {
        self.accepted
    }

    /// The producer id and epoch the server issued, `None` when not idempotent.
    pub fn producer(&self) -> Option<(u64, u16)> {
        let ok = self.accepted;
        (ok.producer_id != 0).then_some((ok.producer_id, ok.producer_epoch))
    }

    /// How many times the client reconnected.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Current credit balance: Produce frames that may be sent without waiting.
    pub fn credits(&self) -> u64 {
        self.credits
    }

    /// Sequence numbers sent but not yet acknowledged, oldest first.
    pub fn unacked(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.unacked.iter().map(|pending| pending.seq)
    }

    /// Sends one batch and returns its sequence number (1, 2, … for the client's lifetime,
    /// whatever reconnections happen), first waiting for a credit if the balance is zero.
    /// Acks read while waiting are kept for [`IngestClient::wait_acks`].
    pub fn send(&mut self, batch: &Batch) -> Result<u64, ClientError> {
        let bytes = batch.as_bytes();
        let max = (self.accepted.max_batch_bytes as usize).min(super::PRODUCE_BATCH_BYTES_MAX);
        if bytes.len() > max {
            return Err(ClientError::BatchTooLarge {
                bytes: bytes.len(),
                max,
            });
        }
        let seq = self.next_seq;
        let sequence = u32::try_from(seq).map_err(|_| ClientError::SequencesExhausted)?;
        let mut bytes = bytes.to_vec();
        if let Some((id, epoch)) = self.producer() {
            stamp_producer(&mut bytes, id, epoch, sequence);
        }
        self.unacked.push_back(Pending {
            seq,
            wire_seq: 0,
            bytes: Some(bytes),
        });
        self.next_seq += 1;
        self.retrying(|client| loop {
            client.send_unsent()?;
            if client.unacked.back().is_none_or(|p| p.wire_seq != 0) {
                return Ok(());
            }
            let frame = client.read_frame()?;
            client.apply("credit or ack", frame)?;
        })?;
        if self.options.reconnect.is_none() {
            // Nothing will be re-sent: do not keep the bytes.
            if let Some(pending) = self.unacked.back_mut() {
                pending.bytes = None;
            }
        }
        Ok(seq)
    }

    /// Sends the batches not yet sent on this connection, oldest first, while credit lasts.
    fn send_unsent(&mut self) -> Result<(), ClientError> {
        while self.credits > 0 {
            let Some(pending) = self.unacked.iter_mut().find(|p| p.wire_seq == 0) else {
                return Ok(());
            };
            let Some(bytes) = pending.bytes.as_deref() else {
                return Err(ClientError::ConnectionClosed);
            };
            let wire_seq = self.next_wire_seq;
            self.out.clear();
            self.out.reserve(PRODUCE_HEADER_BYTES + bytes.len());
            encode(
                &Frame::Produce {
                    seq: wire_seq,
                    batch: bytes,
                },
                &mut self.out,
            );
            pending.wire_seq = wire_seq;
            self.next_wire_seq += 1;
            self.credits -= 1;
            self.stream.write_all(&self.out)?;
        }
        Ok(())
    }

    /// Blocks until every sent batch is acknowledged; returns the acks received since the
    /// last call, in sequence order.
    pub fn wait_acks(&mut self) -> Result<Vec<Ack>, ClientError> {
        self.retrying(|client| {
            while !client.unacked.is_empty() {
                client.send_unsent()?;
                let frame = client.read_frame()?;
                client.apply("ack", frame)?;
            }
            Ok(())
        })?;
        Ok(std::mem::take(&mut self.acks))
    }

    /// Returns the acks that have already arrived, without waiting for more (unless the
    /// connection is lost and the client reconnects).
    pub fn poll_acks(&mut self) -> Result<Vec<Ack>, ClientError> {
        self.retrying(|client| {
            client.send_unsent()?;
            client.stream.set_nonblocking(true)?;
            let read = client.read_available();
            client.stream.set_nonblocking(false)?;
            read
        })?;
        Ok(std::mem::take(&mut self.acks))
    }

    /// Applies every complete frame that can be read without blocking.
    fn read_available(&mut self) -> Result<(), ClientError> {
        loop {
            while let Some(frame) = self.buffer.next_frame()? {
                self.apply("ack", frame)?;
            }
            match self.buffer.read_from(&mut self.stream) {
                Ok(0) => return Err(ClientError::ConnectionClosed),
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Alias of [`IngestClient::wait_acks`].
    pub fn flush(&mut self) -> Result<Vec<Ack>, ClientError> {
        self.wait_acks()
    }

    /// Waits for all acks, sends Close, waits for the server's Close (or end of stream) and
    /// shuts the socket down. Returns the acks not yet returned by `wait_acks`.
    pub fn close(mut self) -> Result<Vec<Ack>, ClientError> {
        let acks = self.wait_acks()?;
        self.out.clear();
        encode(&Frame::<Vec<u8>>::Close, &mut self.out);
        self.stream.write_all(&self.out)?;
        // Credit grants may still be in flight behind the last ack; they are harmless.
        loop {
            match self.read_frame() {
                Ok(Frame::Close) | Err(ClientError::ConnectionClosed) => break,
                Ok(frame) => self.apply("close", frame)?,
                Err(err) => return Err(err),
            }
        }
        self.stream.shutdown()?;
        Ok(acks)
    }

    /// Runs `op`; when it fails because the connection is lost and `reconnect` is set,
    /// reconnects (re-sending the unacked batches) and runs it again.
    fn retrying(
        &mut self,
        mut op: impl FnMut(&mut IngestClient) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let deadline = self.options.reconnect.map(|window| Instant::now() + window);
        loop {
            match op(self) {
                Err(err) if deadline.is_some() && retryable(&err) => {
                    self.reconnect(err, deadline.unwrap_or_else(Instant::now))?;
                }
                other => return other,
            }
        }
    }

    /// Opens a new session under the same producer id and epoch, until `deadline`; every
    /// unacked batch is then sent again (in order, as credit allows).
    fn reconnect(&mut self, mut last: ClientError, deadline: Instant) -> Result<(), ClientError> {
        let mut pause = RECONNECT_BACKOFF;
        if let Some((id, epoch)) = self.producer() {
            self.hello.producer_id = id;
            self.hello.producer_epoch = epoch;
        }
        loop {
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(RECONNECT_BACKOFF_MAX);
            match open_session(&self.addrs, &self.hello, self.options.tls.as_ref()) {
                Ok((stream, buffer, accepted)) => {
                    self.stream = stream;
                    self.buffer = buffer;
                    self.accepted = accepted;
                    self.credits = u64::from(accepted.credits);
                    self.next_wire_seq = 1;
                    for pending in &mut self.unacked {
                        pending.wire_seq = 0;
                    }
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(err) if retryable(&err) => last = err,
                Err(err) => return Err(err),
            }
        }
    }

    /// Applies a frame received after the handshake: acks and credits update the counters,
    /// anything else ends the session.
    fn apply(&mut self, expected: &'static str, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::Ack(ack) => {
                let oldest = self.unacked.front().map(|p| p.wire_seq).filter(|&s| s > 0);
                if oldest != Some(ack.seq) {
                    return Err(ClientError::AckOutOfOrder {
                        expected: oldest,
                        found: ack.seq,
                    });
                }
                let pending = self.unacked.pop_front().expect("checked above");
                self.credits = self.credits.saturating_add(u64::from(ack.credits));
                self.acks.push(Ack {
                    seq: pending.seq,
                    ..ack
                });
                Ok(())
            }
            Frame::Credit { credits } => {
                self.credits = self.credits.saturating_add(u64::from(credits));
                Ok(())
            }
            Frame::Error(mut error) => {
                // The server names the batch by this connection's seq; report the client's.
                let batch = self.unacked.iter().find(|p| p.wire_seq == error.seq);
                if let Some(pending) = batch.filter(|_| error.seq != 0) {
                    error.seq = pending.seq;
                }
                Err(server_error(error))
            }
            Frame::Close => Err(ClientError::ConnectionClosed),
            other => Err(unexpected(expected, &other)),
        }
    }

    fn read_frame(&mut self) -> Result<Frame, ClientError> {
        read_frame(&mut self.stream, &mut self.buffer)
    }
}

/// Connects to the first address that answers (over TLS with `tls`), sends `hello` and waits
/// for the HelloOk.
fn open_session(
    addrs: &[SocketAddr],
    hello: &Hello,
    tls: Option<&ClientTls>,
) -> Result<(Conn, FrameBuffer, HelloOk), ClientError> {
    let mut stream = Conn::open(addrs, tls)?;
    let mut out = Vec::new();
    encode(&Frame::<Vec<u8>>::Hello(hello.clone()), &mut out);
    stream.write_all(&out)?;
    let mut buffer = FrameBuffer::new();
    match read_frame(&mut stream, &mut buffer)? {
        Frame::HelloOk(ok) => Ok((stream, buffer, ok)),
        Frame::Error(error) => Err(server_error(error)),
        other => Err(unexpected("hello_ok", &other)),
    }
}

fn read_frame(stream: &mut impl Read, buffer: &mut FrameBuffer) -> Result<Frame, ClientError> {
    loop {
        if let Some(frame) = buffer.next_frame()? {
            return Ok(frame);
        }
        if buffer.read_from(stream)? == 0 {
            return Err(ClientError::ConnectionClosed);
        }
    }
}

/// Whether `err` means the connection (not the producer) failed, so a new one may succeed.
fn retryable(err: &ClientError) -> bool {
    match err {
        ClientError::Io(_) | ClientError::ConnectionClosed => true,
        ClientError::Server { code, .. } => matches!(
            code,
            ErrorCode::ShuttingDown
                | ErrorCode::Internal
                | ErrorCode::Overloaded
                | ErrorCode::Timeout
        ),
        _ => false,
    }
}

/// The oldest protocol version that carries what `options` ask for: a token needs version 3,
/// idempotence version 2; without either, version 1 works with every server.
fn hello_version(options: &ClientOptions) -> u16 {
    if options.token.is_some() {
        TOKEN_VERSION
    } else if options.idempotent {
        IDEMPOTENT_VERSION
    } else {
        PROTOCOL_VERSION_MIN
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), ClientError> {
    if len > max {
        return Err(ClientError::TooLong { what, len, max });
    }
    Ok(())
}

fn server_error(error: ErrorFrame) -> ClientError {
    ClientError::Server {
        code: error.code,
        seq: error.seq,
        message: error.message,
    }
}

fn unexpected(expected: &'static str, frame: &Frame) -> ClientError {
    ClientError::Unexpected {
        expected,
        found: frame.frame_type().name(),
    }
}

#[cfg(test)]
mod tests;
