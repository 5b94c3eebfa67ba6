//! A blocking ingest client over one `std::net::TcpStream`, for tools, tests and loadgen.
//!
//! It keeps the protocol's two counters: its credit balance (never sends a Produce without a
//! credit) and the queue of sent-but-unacked sequence numbers (acks must arrive in order).

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};

use wire_core::{Batch, Schema};

use super::{
    encode, Ack, ErrorFrame, Frame, FrameBuffer, Hello, HelloOk, PROTOCOL_VERSION,
    SCHEMA_FIELDS_MAX, STRING_BYTES_MAX,
};
use crate::error::ClientError;

/// A producer connection to one node's ingest port.
///
/// Not `Sync`: one thread drives it. `send` blocks only while the credit balance is zero.
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
    stream: TcpStream,
    buffer: FrameBuffer,
    out: Vec<u8>,
    accepted: HelloOk,
    credits: u64,
    next_seq: u64,
    unacked: VecDeque<u64>,
    acks: Vec<Ack>,
}

impl IngestClient {
    /// Connects, sends Hello and waits for the server's HelloOk (or Error).
    pub fn connect(
        addr: impl ToSocketAddrs,
        client_name: &str,
        source: &str,
        schema: &Schema,
    ) -> Result<IngestClient, ClientError> {
        check_len("client name", client_name.len(), STRING_BYTES_MAX)?;
        check_len("source name", source.len(), STRING_BYTES_MAX)?;
        check_len("schema", schema.len(), SCHEMA_FIELDS_MAX)?;
        for field in schema.fields() {
            check_len("field name", field.name.len(), STRING_BYTES_MAX)?;
        }
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            client: client_name.to_owned(),
            source: source.to_owned(),
            schema: schema.clone(),
        };
        let mut out = Vec::new();
        encode(&Frame::<Vec<u8>>::Hello(hello), &mut out);
        (&stream).write_all(&out)?;
        let mut client = IngestClient {
            stream,
            buffer: FrameBuffer::new(),
            out,
            accepted: HelloOk {
                version: 0,
                partition: 0,
                credits: 0,
                max_batch_bytes: 0,
            },
            credits: 0,
            next_seq: 1,
            unacked: VecDeque::new(),
            acks: Vec::new(),
        };
        match client.read_frame()? {
            Frame::HelloOk(ok) => {
                client.accepted = ok;
                client.credits = u64::from(ok.credits);
                Ok(client)
            }
            Frame::Error(error) => Err(server_error(error)),
            other => Err(unexpected("hello_ok", &other)),
        }
    }

    /// Partition the server appends this connection's batches to.
    pub fn partition(&self) -> u32 {
        self.accepted.partition
    }

    /// The server's HelloOk, as received.
    pub fn accepted(&self) -> HelloOk {
        self.accepted
    }

    /// Current credit balance: Produce frames that may be sent without waiting.
    pub fn credits(&self) -> u64 {
        self.credits
    }

    /// Sequence numbers sent but not yet acknowledged, oldest first.
    pub fn unacked(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.unacked.iter().copied()
    }

    /// Sends one batch and returns its sequence number, first waiting for a credit if the
    /// balance is zero. Acks read while waiting are kept for [`IngestClient::wait_acks`].
    pub fn send(&mut self, batch: &Batch) -> Result<u64, ClientError> {
        let bytes = batch.as_bytes();
        let max = (self.accepted.max_batch_bytes as usize).min(super::PRODUCE_BATCH_BYTES_MAX);
        if bytes.len() > max {
            return Err(ClientError::BatchTooLarge {
                bytes: bytes.len(),
                max,
            });
        }
        while self.credits == 0 {
            let frame = self.read_frame()?;
            self.apply("credit or ack", frame)?;
        }
        let seq = self.next_seq;
        self.out.clear();
        encode(&Frame::Produce { seq, batch: bytes }, &mut self.out);
        self.stream.write_all(&self.out)?;
        self.credits -= 1;
        self.next_seq += 1;
        self.unacked.push_back(seq);
        Ok(seq)
    }

    /// Blocks until every sent batch is acknowledged; returns the acks received since the
    /// last call, in sequence order.
    pub fn wait_acks(&mut self) -> Result<Vec<Ack>, ClientError> {
        while !self.unacked.is_empty() {
            let frame = self.read_frame()?;
            self.apply("ack", frame)?;
        }
        Ok(std::mem::take(&mut self.acks))
    }

    /// Returns the acks that have already arrived, without waiting for more.
    pub fn poll_acks(&mut self) -> Result<Vec<Ack>, ClientError> {
        self.stream.set_nonblocking(true)?;
        let read = self.read_available();
        self.stream.set_nonblocking(false)?;
        read?;
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
        self.stream.shutdown(Shutdown::Both)?;
        Ok(acks)
    }

    /// Applies a frame received after the handshake: acks and credits update the counters,
    /// anything else ends the session.
    fn apply(&mut self, expected: &'static str, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::Ack(ack) => {
                let oldest = self.unacked.front().copied();
                if oldest != Some(ack.seq) {
                    return Err(ClientError::AckOutOfOrder {
                        expected: oldest,
                        found: ack.seq,
                    });
                }
                self.unacked.pop_front();
                self.credits = self.credits.saturating_add(u64::from(ack.credits));
                self.acks.push(ack);
                Ok(())
            }
            Frame::Credit { credits } => {
                self.credits = self.credits.saturating_add(u64::from(credits));
                Ok(())
            }
            Frame::Error(error) => Err(server_error(error)),
            Frame::Close => Err(ClientError::ConnectionClosed),
            other => Err(unexpected(expected, &other)),
        }
    }

    fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = self.buffer.next_frame()? {
                return Ok(frame);
            }
            if self.buffer.read_from(&mut self.stream)? == 0 {
                return Err(ClientError::ConnectionClosed);
            }
        }
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
