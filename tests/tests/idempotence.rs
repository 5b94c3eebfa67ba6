//! Idempotent producers against the real `wire` binary: a batch re-sent on a live connection
//! is acked with its first offsets and appended once, and a producer whose node is SIGKILLed
//! mid-stream reconnects, re-sends its unacked batches, and the output has every row exactly
//! once. `WIRE_TEST_IDEMPOTENCE=off` runs the crash test's producer without idempotence (as a
//! check that the test catches duplicates: it must then fail).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wire_core::record::batch::stamp_producer;
use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
use wire_net::ingest::{
    encode, Ack, ClientOptions, Frame, FrameBuffer, Hello, IngestClient, IDEMPOTENT_VERSION,
};
use wire_tests::process::{listening_addr, wait_bounded};
use wire_tests::wire_bin;

/// How long a producer keeps trying to reconnect to a restarting node.
const RECONNECT: Duration = Duration::from_secs(60);

fn schema() -> Schema {
    Schema::new(vec![Field::new("id", DataType::I64)])
}

fn pipeline(listen: &str) -> String {
    format!(
        "name: idem
sources:
  rows: {{type: ingest, listen: \"{listen}\", durability: always, schema: {{id: i64}}}}
sinks:
  all: {{type: file, path: ./out/all, format: jsonl, from: rows}}
"
    )
}

fn wire(dir: &Path, stderr: Stdio) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(dir)
        .args(["run", "--no-progress", "--no-pin", "--cores", "2"])
        .args(["--checkpoint-interval", "150ms", "--data-dir"])
        .arg(dir.join("data"))
        .arg("p.yaml")
        .stdout(Stdio::null())
        .stderr(stderr)
        .env("RUST_LOG", "warn")
        .env_remove("WIRE_LOG");
    command
}

/// SIGINT, then wait (bounded): the run drains, checkpoints and publishes.
fn stop_gracefully(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = wait_bounded(child, Duration::from_secs(60));
    assert!(status.success(), "wire failed to stop gracefully: {status}");
}

/// Every `id` in the published part files, with how often it appears.
fn published_ids(dir: &Path) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("sink directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("part file");
        for line in text.lines() {
            let row: Json = serde_json::from_str(line).expect("row");
            *ids.entry(row["id"].as_i64().expect("id")).or_default() += 1;
        }
    }
    ids
}

fn rows_batch(ids: std::ops::Range<i64>) -> wire_core::Batch {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for id in ids {
        builder.push(&[ValueRef::I64(id)]).expect("row");
    }
    builder.finish()
}

/// A hand-driven protocol session, to send frames the client never would.
struct Raw {
    stream: TcpStream,
    buffer: FrameBuffer,
}

impl Raw {
    fn write(&mut self, frame: &Frame) {
        let mut out = Vec::new();
        encode(frame, &mut out);
        self.stream.write_all(&out).expect("write");
    }

    fn read(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.buffer.next_frame().expect("frame") {
                return frame;
            }
            let read = self.buffer.read_from(&mut self.stream).expect("read");
            assert!(read > 0, "the server closed the connection");
        }
    }

    fn ack(&mut self) -> Ack {
        match self.read() {
            Frame::Ack(ack) => ack,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

#[test]
fn a_duplicate_batch_on_a_live_connection_is_acked_again_and_appended_once() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("p.yaml"), pipeline("127.0.0.1:0")).expect("pipeline");
    let mut child = wire(dir, Stdio::piped()).spawn().expect("wire");
    let addr = listening_addr(&mut child, "rows");
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut raw = Raw {
        stream,
        buffer: FrameBuffer::new(),
    };
    raw.write(&Frame::Hello(Hello {
        version: IDEMPOTENT_VERSION,
        client: "raw".into(),
        source: "rows".into(),
        schema: schema(),
        idempotent: true,
        producer_id: 0,
        producer_epoch: 0,
        token: String::new(),
    }));
    let Frame::HelloOk(ok) = raw.read() else {
        panic!("expected hello_ok");
    };
    assert!(ok.producer_id != 0, "{ok:?}");
    let stamped = |ids, sequence| {
        let mut bytes = rows_batch(ids).into_bytes();
        stamp_producer(&mut bytes, ok.producer_id, ok.producer_epoch, sequence);
        bytes
    };
    let first = stamped(0..10, 1);
    raw.write(&Frame::Produce {
        seq: 1,
        batch: first.clone(),
    });
    let original = raw.ack();
    // The same batch again (a producer that missed the ack): acked with the same offsets.
    raw.write(&Frame::Produce {
        seq: 2,
        batch: first,
    });
    let again = raw.ack();
    assert_eq!(
        (again.seq, again.base_offset, again.rows),
        (2, original.base_offset, 10)
    );
    raw.write(&Frame::Produce {
        seq: 3,
        batch: stamped(10..15, 2),
    });
    let next = raw.ack();
    assert_eq!(next.base_offset, original.base_offset + 10, "appended once");
    // A gap is refused, naming the sequence numbers.
    raw.write(&Frame::Produce {
        seq: 4,
        batch: stamped(15..16, 9),
    });
    match raw.read() {
        Frame::Error(error) => {
            assert_eq!(error.code, wire_net::ingest::ErrorCode::OutOfOrderSequence);
            assert!(
                error.message.contains("expected batch sequence 3, found 9"),
                "{error:?}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    drop(raw);
    stop_gracefully(&mut child);
    let ids = published_ids(&dir.join("out/all"));
    let expected: BTreeMap<i64, usize> = (0..15).map(|id| (id, 1)).collect();
    assert_eq!(ids, expected);
}

/// A free port on 127.0.0.1, so that a restarted node listens where the producer reconnects.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Waits (bounded) until `addr` can be bound again: a SIGKILLed `wire` holds its listening
/// socket until the kernel has torn down its io_uring, a moment after the process is gone.
fn wait_port_free(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} is still in use");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `addr` accepts connections.
fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `batches` batches of 20 rows (ids from 0) through one client that reconnects,
/// counting acks in `acks`; the acks and the reconnections.
fn produce(addr: SocketAddr, batches: i64, idempotent: bool, acks: &AtomicU64) -> (u64, u64) {
    let options = ClientOptions {
        idempotent,
        reconnect: Some(RECONNECT),
        token: None,
        tls: None,
    };
    let mut client = IngestClient::connect_with(addr, "crash-test", "rows", &schema(), options)
        .expect("connect");
    let mut acked = 0u64;
    for batch in 0..batches {
        client
            .send(&rows_batch(batch * 20..batch * 20 + 20))
            .expect("send (the client reconnects on its own)");
        acked += client.poll_acks().expect("acks").len() as u64;
        acks.store(acked, Ordering::Relaxed);
    }
    acked += client.wait_acks().expect("acks").len() as u64;
    let reconnects = client.reconnects();
    client.close().expect("close");
    (acked, reconnects)
}

#[test]
fn sigkill_of_the_node_under_an_idempotent_producer_leaves_every_row_exactly_once() {
    let idempotent = std::env::var("WIRE_TEST_IDEMPOTENCE").map_or(true, |v| v != "off");
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let dir = tmp.path();
    let addr = free_addr();
    std::fs::write(dir.join("p.yaml"), pipeline(&addr.to_string())).expect("pipeline");
    let batches = 400i64;
    let log = |run: u64| {
        Stdio::from(std::fs::File::create(dir.join(format!("wire-{run}.log"))).expect("log"))
    };
    let mut child = wire(dir, log(0)).spawn().expect("wire");
    wait_listening(addr);
    let acks = Arc::new(AtomicU64::new(0));
    let counted = acks.clone();
    let producer = std::thread::spawn(move || produce(addr, batches, idempotent, &counted));
    // Kill the node three times while the producer streams (with batches in flight), each
    // time once more batches are acked, and start it again on the same port.
    for kill in 1..=3u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks.load(Ordering::Relaxed) < kill * 80 && !producer.is_finished() {
            assert!(Instant::now() < deadline, "the producer makes no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        wait_port_free(addr);
        child = wire(dir, log(kill)).spawn().expect("wire restarts");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !producer.is_finished() {
        assert!(Instant::now() < deadline, "the producer did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (acked, reconnects) = producer.join().expect("producer");
    eprintln!("{acked} batches acked, {reconnects} reconnections");
    assert_eq!(acked, batches as u64, "every batch acked in the end");
    assert!(reconnects >= 1, "the producer never lost its connection");
    stop_gracefully(&mut child);
    let ids = published_ids(&dir.join("out/all"));
    let twice: Vec<(&i64, &usize)> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "rows written more than once, e.g. {twice:?}"
    );
    let missing: Vec<i64> = (0..batches * 20)
        .filter(|id| !ids.contains_key(id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged rows missing, e.g. {missing:?}"
    );
    assert_eq!(ids.len() as i64, batches * 20);
}
