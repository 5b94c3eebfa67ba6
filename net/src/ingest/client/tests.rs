//! The client against a tiny in-test server speaking the protocol over real sockets.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use wire_core::{Batch, BatchBuilder, BatchView, DataType, Field, PartitionId, StreamId, ValueRef};

use super::*;
use crate::ingest::{ErrorCode, FrameBuffer, PROTOCOL_VERSION};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::nullable("name", DataType::String),
    ])
}

fn batch(rows: i64) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(2));
    for id in 0..rows {
        builder
            .push(&[ValueRef::I64(id), ValueRef::Str("x")])
            .unwrap();
    }
    builder.finish()
}

/// Server-side connection helper.
struct Peer {
    stream: TcpStream,
    buffer: FrameBuffer,
}

impl Peer {
    fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.buffer.next_frame().unwrap() {
                return Some(frame);
            }
            if self.buffer.read_from(&mut self.stream).unwrap() == 0 {
                return None;
            }
        }
    }

    fn write(&mut self, frame: Frame) {
        let mut out = Vec::new();
        encode(&frame, &mut out);
        self.stream.write_all(&out).unwrap();
    }
}

/// Accepts one connection and runs `script` on it; returns the address and the thread.
fn serve<T: Send + 'static>(
    script: impl FnOnce(&mut Peer) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut peer = Peer {
            stream,
            buffer: FrameBuffer::new(),
        };
        script(&mut peer)
    });
    (addr, handle)
}

fn accept_hello(peer: &mut Peer, credits: u32) -> Hello {
    let Some(Frame::Hello(hello)) = peer.read() else {
        panic!("expected hello");
    };
    peer.write(Frame::HelloOk(HelloOk {
        version: PROTOCOL_VERSION,
        partition: 2,
        credits,
        max_batch_bytes: 1 << 20,
        producer_id: 0,
        producer_epoch: 0,
    }));
    hello
}

/// A well-behaved server: grants `credits` up front, acks each batch with no credit and then
/// grants one in a separate Credit frame (exercising both grant paths), and answers Close with
/// Close. Returns the hello and the row counts of the batches it verified.
fn well_behaved(peer: &mut Peer, credits: u32) -> (Hello, Vec<usize>) {
    let hello = accept_hello(peer, credits);
    let mut rows = Vec::new();
    let mut next_offset = 0u64;
    while let Some(frame) = peer.read() {
        match frame {
            Frame::Produce { seq, batch } => {
                let view = BatchView::verify(&batch).unwrap();
                view.check_schema(&hello.schema).unwrap();
                let count = view.row_count() as u32;
                rows.push(view.row_count());
                peer.write(Frame::Ack(Ack {
                    seq,
                    base_offset: next_offset,
                    rows: count,
                    credits: 0,
                }));
                next_offset += u64::from(count);
                peer.write(Frame::Credit { credits: 1 });
            }
            Frame::Close => {
                peer.write(Frame::Close);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (hello, rows)
}

#[test]
fn sends_batches_and_collects_acks_in_order() {
    let (addr, server) = serve(|peer| well_behaved(peer, 4));
    let mut client = IngestClient::connect(&addr, "test-client", "bids", &schema()).unwrap();
    assert_eq!(client.partition(), 2);
    assert_eq!(client.credits(), 4);
    let seqs: Vec<u64> = (1..=10).map(|n| client.send(&batch(n)).unwrap()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let acks = client.wait_acks().unwrap();
    assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(acks[3].base_offset, 1 + 2 + 3);
    assert_eq!(acks[3].rows, 4);
    assert_eq!(client.unacked().len(), 0);
    assert_eq!(client.close().unwrap(), vec![]);
    let (hello, rows) = server.join().unwrap();
    assert_eq!(hello.client, "test-client");
    assert_eq!(hello.source, "bids");
    assert_eq!(hello.schema, schema());
    assert_eq!(rows, (1..=10).collect::<Vec<_>>());
}

#[test]
fn send_blocks_for_credit_when_the_balance_is_zero() {
    // One credit up front and one per ack: every send after the first waits for the previous
    // batch's ack.
    let (addr, server) = serve(|peer| {
        accept_hello(peer, 1);
        let mut seen = 0;
        while let Some(frame) = peer.read() {
            match frame {
                Frame::Produce { seq, .. } => {
                    seen += 1;
                    peer.write(Frame::Ack(Ack {
                        seq,
                        base_offset: seq - 1,
                        rows: 1,
                        credits: 1,
                    }));
                }
                Frame::Close => {
                    peer.write(Frame::Close);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        seen
    });
    let mut client = IngestClient::connect(&addr, "c", "bids", &schema()).unwrap();
    for _ in 0..5 {
        client.send(&batch(1)).unwrap();
        assert_eq!(client.credits(), 0);
        assert_eq!(client.unacked().len(), 1);
    }
    let acks = client.close().unwrap();
    assert_eq!(acks.len(), 5);
    assert_eq!(server.join().unwrap(), 5);
}

#[test]
fn hello_rejection_surfaces_as_a_server_error() {
    let (addr, server) = serve(|peer| {
        peer.read();
        peer.write(Frame::Error(ErrorFrame::new(
            ErrorCode::UnknownSource,
            0,
            "no source `nope`",
        )));
    });
    let err = IngestClient::connect(&addr, "c", "nope", &schema()).unwrap_err();
    match err {
        ClientError::Server { code, seq, message } => {
            assert_eq!(code, ErrorCode::UnknownSource);
            assert_eq!(seq, 0);
            assert_eq!(message, "no source `nope`");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.join().unwrap();
}

#[test]
fn batch_rejection_names_the_sequence_number() {
    let (addr, server) = serve(|peer| {
        accept_hello(peer, 2);
        let Some(Frame::Produce { seq, .. }) = peer.read() else {
            panic!("expected produce");
        };
        peer.write(Frame::Error(ErrorFrame::new(
            ErrorCode::BadBatch,
            seq,
            "bad",
        )));
    });
    let mut client = IngestClient::connect(&addr, "c", "bids", &schema()).unwrap();
    let seq = client.send(&batch(1)).unwrap();
    let err = client.wait_acks().unwrap_err();
    assert!(
        matches!(err, ClientError::Server { code: ErrorCode::BadBatch, seq: s, .. } if s == seq),
        "{err:?}"
    );
    server.join().unwrap();
}

#[test]
fn out_of_order_ack_is_a_protocol_violation() {
    let (addr, server) = serve(|peer| {
        accept_hello(peer, 2);
        peer.read();
        peer.write(Frame::Ack(Ack {
            seq: 9,
            base_offset: 0,
            rows: 1,
            credits: 1,
        }));
    });
    let mut client = IngestClient::connect(&addr, "c", "bids", &schema()).unwrap();
    client.send(&batch(1)).unwrap();
    let err = client.wait_acks().unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::AckOutOfOrder {
                expected: Some(1),
                found: 9
            }
        ),
        "{err:?}"
    );
    server.join().unwrap();
}

#[test]
fn oversized_batches_are_refused_before_sending() {
    let (addr, server) = serve(|peer| {
        let Some(Frame::Hello(_)) = peer.read() else {
            panic!("expected hello");
        };
        peer.write(Frame::HelloOk(HelloOk {
            version: PROTOCOL_VERSION,
            partition: 0,
            credits: 1,
            max_batch_bytes: 16,
            producer_id: 0,
            producer_epoch: 0,
        }));
        peer.read()
    });
    let mut client = IngestClient::connect(&addr, "c", "bids", &schema()).unwrap();
    let err = client.send(&batch(1)).unwrap_err();
    assert!(
        matches!(err, ClientError::BatchTooLarge { max: 16, .. }),
        "{err:?}"
    );
    assert_eq!(client.credits(), 1);
    drop(client);
    assert_eq!(server.join().unwrap(), None);
}

#[test]
fn server_hanging_up_is_reported() {
    let (addr, server) = serve(|peer| {
        peer.read();
    });
    let err = IngestClient::connect(&addr, "c", "bids", &schema()).unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed), "{err:?}");
    server.join().unwrap();
}

#[test]
fn poll_acks_returns_what_has_arrived_without_blocking() {
    let (addr, server) = serve(|peer| well_behaved(peer, 8));
    let mut client = IngestClient::connect(&addr, "poller", "bids", &schema()).unwrap();
    assert_eq!(client.poll_acks().unwrap(), vec![]);
    for n in 1..=3 {
        client.send(&batch(n)).unwrap();
    }
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        seen.extend(client.poll_acks().unwrap().iter().map(|a| a.seq));
        thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(client.unacked().len(), 0);
    // The socket is blocking again: close waits for the server's Close.
    assert_eq!(client.close().unwrap(), vec![]);
    assert_eq!(server.join().unwrap().1, [1, 2, 3]);
}

/// Reads a Produce frame: its connection seq and the batch's producer stamp.
fn produce_stamp(peer: &mut Peer) -> (u64, u64, u32) {
    let Some(Frame::Produce { seq, batch }) = peer.read() else {
        panic!("expected produce");
    };
    let header = *BatchView::verify(&batch).unwrap().header();
    (seq, header.producer_id(), header.sequence)
}

#[test]
fn a_lost_connection_is_reopened_and_unacked_batches_are_re_sent_with_their_sequences() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let ok = |partition| HelloOk {
            version: PROTOCOL_VERSION,
            partition,
            credits: 4,
            max_batch_bytes: 1 << 20,
            producer_id: 77,
            producer_epoch: 3,
        };
        let (stream, _) = listener.accept().unwrap();
        let mut peer = Peer {
            stream,
            buffer: FrameBuffer::new(),
        };
        let Some(Frame::Hello(first)) = peer.read() else {
            panic!("expected hello");
        };
        peer.write(Frame::HelloOk(ok(0)));
        assert_eq!(produce_stamp(&mut peer), (1, 77, 1));
        let ack = |seq, base_offset| {
            Frame::Ack(Ack {
                seq,
                base_offset,
                rows: 2,
                credits: 1,
            })
        };
        peer.write(ack(1, 0));
        assert_eq!(produce_stamp(&mut peer), (2, 77, 2));
        // Batch 2 is never acked: the connection drops.
        drop(peer);
        let (stream, _) = listener.accept().unwrap();
        let mut peer = Peer {
            stream,
            buffer: FrameBuffer::new(),
        };
        let Some(Frame::Hello(second)) = peer.read() else {
            panic!("expected hello");
        };
        peer.write(Frame::HelloOk(ok(1)));
        // Re-sent under the same producer id and sequence, as the new connection's first.
        assert_eq!(produce_stamp(&mut peer), (1, 77, 2));
        peer.write(ack(1, 2));
        assert_eq!(produce_stamp(&mut peer), (2, 77, 3));
        peer.write(ack(2, 4));
        (first, second)
    });
    let options = ClientOptions {
        idempotent: true,
        reconnect: Some(std::time::Duration::from_secs(10)),
        token: None,
        tls: None,
    };
    let mut client = IngestClient::connect_with(&addr, "c", "bids", &schema(), options).unwrap();
    assert_eq!(client.producer(), Some((77, 3)));
    assert_eq!(client.send(&batch(2)).unwrap(), 1);
    assert_eq!(client.send(&batch(2)).unwrap(), 2);
    // Batch 2's ack comes on the second connection, after it was re-sent.
    let acks = client.wait_acks().unwrap();
    let seqs: Vec<(u64, u64)> = acks.iter().map(|a| (a.seq, a.base_offset)).collect();
    assert_eq!(seqs, [(1, 0), (2, 2)]);
    assert_eq!(client.reconnects(), 1);
    // The client's sequence numbers go on.
    assert_eq!(client.send(&batch(2)).unwrap(), 3);
    let acks = client.wait_acks().unwrap();
    let seqs: Vec<(u64, u64)> = acks.iter().map(|a| (a.seq, a.base_offset)).collect();
    assert_eq!(seqs, [(3, 4)]);
    let (first, second) = server.join().unwrap();
    assert!(first.idempotent && first.version == 2 && first.producer_id == 0);
    assert_eq!((second.producer_id, second.producer_epoch), (77, 3));
}

#[test]
fn without_idempotence_the_client_speaks_version_1_and_stamps_nothing() {
    let (addr, server) = serve(|peer| {
        let hello = accept_hello(peer, 4);
        let stamp = produce_stamp(peer);
        (hello, stamp)
    });
    let options = ClientOptions {
        idempotent: false,
        reconnect: None,
        token: None,
        tls: None,
    };
    let mut client = IngestClient::connect_with(&addr, "c", "bids", &schema(), options).unwrap();
    client.send(&batch(1)).unwrap();
    let (hello, stamp) = server.join().unwrap();
    assert_eq!((hello.version, hello.idempotent), (1, false));
    assert_eq!(stamp, (1, 0, 0));
}
