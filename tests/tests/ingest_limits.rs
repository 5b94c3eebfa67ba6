//! What hostile or unlucky producers do to a running `wire run` with an ingest source
//! (issue 14): stalled half-frames, producers that ignore their credits, a second `wire` on
//! the same port, and a run that fails under its producers. Real processes, real sockets;
//! every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use wire_core::{Batch, BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
use wire_net::ingest::{
    encode, ErrorCode, ErrorFrame, Frame, FrameBuffer, Hello, IngestClient, FRAME_LEN_MAX,
    PROTOCOL_VERSION,
};
use wire_net::ClientError;
use wire_tests::process::wait_bounded;
use wire_tests::{is_root, repo_root, wire_bin, LoopMount};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(30);

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("text", DataType::String),
    ])
}

/// A pipeline with one ingest source `rows` (extra keys appended to it) and a sink.
fn pipeline(listen: &str, source_keys: &str, sink: &str) -> String {
    format!(
        "name: limits
sources:
  rows:
    type: ingest
    listen: {listen}
    schema:
      id: i64
      text: string
    durability: never
{source_keys}
sinks:
  out:
{sink}
    from: rows
"
    )
}

const STDOUT_SINK: &str = "    type: stdout\n    format: jsonl";

/// A running `wire run`, with the address it listens on and its stderr so far.
struct Wire {
    child: Child,
    addr: String,
    stderr: Arc<std::sync::Mutex<String>>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Wire {
    /// Starts `wire run` on `yaml` and waits (bounded) until it listens.
    fn start(yaml: &str, dir: &Path, name: &str) -> Wire {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).expect("write pipeline");
        let mut child = wire_command(&file, &dir.join(format!("data-{name}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wire starts");
        let stdout = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stdout).read_to_string(&mut text);
            text
        });
        let stderr_text = Arc::new(std::sync::Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        let text = stderr_text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("source `rows` listening on ") {
                    let _ = addr_tx.send(addr.to_string());
                }
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let addr = match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("wire did not listen: {}", stderr_text.lock().unwrap());
            }
        };
        Wire {
            child,
            addr,
            stderr: stderr_text,
            stdout: Some(stdout),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, in bytes (VmRSS of /proc/<pid>/status).
    fn rss_bytes(&self) -> u64 {
        wire_tests::process::rss_bytes(self.pid()).expect("VmRSS of a running process")
    }

    /// Stops the run with SIGINT (graceful) and returns its exit status and stdout.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = wait_bounded(&mut self.child, WAIT);
        let stdout = self.stdout.take().expect("stdout").join().expect("stdout");
        (exit, stdout)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wire run --no-progress --no-pin --cores 2 --data-dir DATA FILE`, from the repository root.
fn wire_command(file: &Path, data: &Path) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(repo_root())
        .args(["run", "--no-progress", "--cores", "2", "--data-dir"])
        .arg(data)
        .arg(file);
    command
}

/// A producer speaking the protocol by hand, free to break its rules.
struct Raw {
    stream: TcpStream,
    frames: FrameBuffer,
}

/// What a raw producer read next.
#[derive(Debug)]
enum Got {
    Frame(Frame),
    /// The server closed (end of stream or reset) without another frame.
    Closed,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        Raw {
            stream,
            frames: FrameBuffer::new(),
        }
    }

    fn send<B: AsRef<[u8]>>(&mut self, frame: &Frame<B>) -> std::io::Result<()> {
        let mut out = Vec::new();
        encode(frame, &mut out);
        self.stream.write_all(&out)
    }

    fn hello(&mut self) -> std::io::Result<()> {
        self.send::<Vec<u8>>(&Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: "raw".into(),
            source: "rows".into(),
            schema: schema(),
            idempotent: false,
            producer_id: 0,
            producer_epoch: 0,
            token: String::new(),
        }))
    }

    /// The next frame from the server, waiting at most [`WAIT`].
    fn next(&mut self) -> Got {
        loop {
            match self.frames.next_frame() {
                Ok(Some(frame)) => return Got::Frame(frame),
                Ok(None) => {}
                Err(err) => panic!("server sent a malformed frame: {err}"),
            }
            match self.frames.read_from(&mut self.stream) {
                Ok(0) => return Got::Closed,
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    panic!("no answer from the server within {WAIT:?}")
                }
                Err(_) => return Got::Closed,
            }
        }
    }

    /// The Error frame the server must send next.
    fn error(&mut self) -> ErrorFrame {
        match self.next() {
            Got::Frame(Frame::Error(error)) => error,
            other => panic!("expected an Error frame, got {other:?}"),
        }
    }
}

/// A batch of `rows` rows whose ids start at `first`, each with `text_bytes` of text.
fn batch(first: i64, rows: usize, text_bytes: usize) -> Batch {
    let text = "x".repeat(text_bytes);
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for i in 0..rows as i64 {
        builder
            .push(&[ValueRef::I64(first + i), ValueRef::Str(&text)])
            .expect("push");
    }
    builder.finish()
}

/// Sends `count` one-row batches and waits for every ack.
fn produce_and_ack(client: &mut IngestClient, first: i64, count: usize) {
    for i in 0..count {
        client.send(&batch(first + i as i64, 1, 8)).expect("send");
    }
    let acks = client.wait_acks().expect("acks");
    assert_eq!(acks.len(), count, "every batch acked");
}

/// Watches a process's resident memory on a thread: the highest value seen until stopped.
struct RssWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(wire_tests::process::rss_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        RssWatch { stop, thread }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("rss watch")
    }
}

/// How one stalling producer fared.
#[derive(Debug)]
enum Stall {
    /// Refused before its Hello was answered.
    Refused(ErrorFrame),
    /// Admitted; then sent a maximum-size frame but its last byte, and got this answer
    /// this long after it stopped sending.
    Answered(ErrorFrame, Duration),
}

/// Connects, says Hello, waits at `barrier` with every other staller, then sends a
/// maximum-size length prefix and all but the last byte of the frame, and waits.
fn stall(addr: &str, barrier: &Barrier, stalled: &mpsc::Sender<()>) -> Stall {
    let mut raw = Raw::connect(addr);
    let _ = raw.hello();
    match raw.next() {
        Got::Frame(Frame::HelloOk(_)) => {}
        Got::Frame(Frame::Error(error)) => {
            barrier.wait();
            return Stall::Refused(error);
        }
        other => panic!("expected HelloOk or Error, got {other:?}"),
    }
    barrier.wait();
    let mut header = Vec::new();
    header.extend_from_slice(&FRAME_LEN_MAX.to_le_bytes());
    header.push(3); // Produce
    header.extend_from_slice(&1u64.to_le_bytes());
    let mut left = FRAME_LEN_MAX as usize - 1 - 8 - 1;
    let chunk = vec![0u8; 1 << 20];
    let mut result = raw.stream.write_all(&header);
    while result.is_ok() && left > 0 {
        let n = left.min(chunk.len());
        result = raw.stream.write_all(&chunk[..n]);
        left -= n;
    }
    if result.is_ok() {
        let _ = stalled.send(());
    }
    let since = Instant::now();
    let error = raw.error();
    Stall::Answered(error, since.elapsed())
}

/// Before its Hello, a connection may not announce a large frame, nor stay silent.
fn refuse_early_and_silent(addr: &str) {
    let mut early = Raw::connect(addr);
    early
        .stream
        .write_all(&FRAME_LEN_MAX.to_le_bytes())
        .expect("prefix");
    let refused = early.error();
    assert_eq!(refused.code, ErrorCode::ProtocolViolation, "{refused:?}");
    assert!(refused.message.contains("before hello"), "{refused:?}");
    let started = Instant::now();
    let mut silent = Raw::connect(addr);
    let timed_out = silent.error();
    assert_eq!(timed_out.code, ErrorCode::Timeout, "{timed_out:?}");
    assert!(
        timed_out.message.contains("hello_timeout_ms"),
        "{timed_out:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// Counts the stallers refused by the connection cap, by the frame buffer budget, and timed
/// out halfway through their frame, checking each answer's message and timing.
fn classify(outcomes: &[Stall]) -> (usize, usize, usize) {
    let (mut capped, mut over_budget, mut timed_out) = (0, 0, 0);
    for outcome in outcomes {
        match outcome {
            Stall::Refused(e) if e.code == ErrorCode::Overloaded => {
                assert!(e.message.contains("max_connections"), "{e:?}");
                capped += 1;
            }
            Stall::Answered(e, _) if e.code == ErrorCode::Overloaded => {
                assert!(e.message.contains("frame_buffer_bytes_max"), "{e:?}");
                over_budget += 1;
            }
            Stall::Answered(e, after) if e.code == ErrorCode::Timeout => {
                assert!(e.message.contains("read_timeout_ms"), "{e:?}");
                assert!(
                    *after >= Duration::from_millis(1000),
                    "closed after {after:?}"
                );
                assert!(*after < Duration::from_secs(10), "closed after {after:?}");
                timed_out += 1;
            }
            other => panic!("unexpected outcome for a staller: {other:?}"),
        }
    }
    (capped, over_budget, timed_out)
}

#[test]
fn stalled_half_frames_are_capped_refused_and_timed_out_within_the_memory_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget: u64 = 40 << 20;
    let keys = format!(
        "    credits: 16
    max_connections: 12
    frame_buffer_bytes_max: {budget}
    hello_timeout_ms: 1000
    read_timeout_ms: 1500
    idle_timeout_ms: 60000"
    );
    let wire = Wire::start(
        &pipeline("127.0.0.1:0", &keys, STDOUT_SINK),
        dir.path(),
        "a",
    );
    let addr = wire.addr.clone();
    let mut good = IngestClient::connect(&addr, "good", "rows", &schema()).expect("connect");
    produce_and_ack(&mut good, 0, 10);
    let baseline = wire.rss_bytes();
    let watch = RssWatch::start(wire.pid());

    refuse_early_and_silent(&addr);

    // 60 stalling producers at once: the connection cap refuses most at once, the frame
    // buffer budget most of the rest, and the few it holds time out.
    let stallers = 60;
    let barrier = Arc::new(Barrier::new(stallers));
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let threads: Vec<_> = (0..stallers)
        .map(|_| {
            let (addr, barrier, stalled) = (addr.clone(), barrier.clone(), stalled_tx.clone());
            std::thread::spawn(move || stall(&addr, &barrier, &stalled))
        })
        .collect();
    drop(stalled_tx);
    // While two connections sit on half-frames, the well-behaved producer is served.
    for _ in 0..2 {
        stalled_rx.recv_timeout(WAIT).expect("a staller stalls");
    }
    produce_and_ack(&mut good, 100, 10);
    let outcomes: Vec<Stall> = threads
        .into_iter()
        .map(|t| t.join().expect("staller"))
        .collect();
    let (capped, over_budget, timed_out) = classify(&outcomes);
    // 12 connections at most, one of them the good producer's.
    assert!(
        capped >= stallers - 11,
        "{capped} refused by the cap: {outcomes:?}"
    );
    // Two maximum-size frames fit the 40 MiB budget, a third does not.
    assert_eq!(timed_out, 2, "{outcomes:?}");
    assert_eq!(capped + over_budget + timed_out, stallers);
    produce_and_ack(&mut good, 200, 10);

    // The bound of docs/protocol.md: the frame budget plus 256 KiB per connection, plus the
    // pipeline's queues (a few small batches here); 16 MiB of slack for the allocator.
    let peak = watch.peak();
    let bound = baseline + budget + 12 * (256 << 10) + (16 << 20);
    assert!(
        peak <= bound,
        "peak RSS {} MiB over the bound {} MiB (baseline {} MiB)",
        peak >> 20,
        bound >> 20,
        baseline >> 20
    );
    // The stalled frames' memory is given back once they are closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let settled = baseline + (24 << 20);
    while wire.rss_bytes() > settled {
        assert!(
            Instant::now() < deadline,
            "RSS stays at {} MiB after the stalled connections closed (baseline {} MiB)",
            wire.rss_bytes() >> 20,
            baseline >> 20
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    good.close().expect("close");
    let stderr = wire.stderr();
    let (exit, _) = wire.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
fn a_producer_that_ignores_its_credits_is_refused_and_its_extra_batch_not_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = "    credits: 16";
    let wire = Wire::start(&pipeline("127.0.0.1:0", keys, STDOUT_SINK), dir.path(), "a");
    let mut raw = Raw::connect(&wire.addr);
    raw.hello().expect("hello");
    let Got::Frame(Frame::HelloOk(ok)) = raw.next() else {
        panic!("no HelloOk")
    };
    assert_eq!(ok.credits, 16);
    // 65 Produce frames in one write, without waiting for a single ack.
    let mut burst = Vec::new();
    for seq in 1..=65u64 {
        let rows = batch(seq as i64, 1, 8);
        encode(
            &Frame::Produce {
                seq,
                batch: rows.as_bytes(),
            },
            &mut burst,
        );
    }
    raw.stream.write_all(&burst).expect("burst");
    let mut acked = 0u64;
    let error = loop {
        match raw.next() {
            Got::Frame(Frame::Ack(ack)) => {
                assert_eq!(ack.seq, acked + 1);
                acked += 1;
            }
            Got::Frame(Frame::Error(error)) => break error,
            other => panic!("expected acks then an Error frame, got {other:?} after {acked} acks"),
        }
    };
    assert_eq!(error.code, ErrorCode::ProtocolViolation, "{error:?}");
    assert_eq!(error.seq, acked + 1, "{error:?}");
    assert!(error.message.contains("without credit"), "{error:?}");
    assert!((16..65).contains(&acked), "{acked} batches acked");
    assert!(
        matches!(raw.next(), Got::Closed),
        "the server closes after the error"
    );
    // Exactly the acked batches reached the pipeline; the refused one was not appended.
    let (exit, stdout) = wire.stop();
    assert!(exit.success());
    let mut ids: Vec<i64> = stdout
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            row["id"].as_i64().expect("id")
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=acked as i64).collect::<Vec<_>>());
}

#[test]
fn a_second_wire_on_the_same_port_exits_1_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let listen = format!("127.0.0.1:{port}");
    let yaml = pipeline(&listen, "    credits: 16", STDOUT_SINK);
    let first = Wire::start(&yaml, dir.path(), "first");
    assert_eq!(first.addr, listen);

    let file = dir.path().join("second.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let mut second = wire_command(&file, &dir.path().join("data-second"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire starts");
    let status = wait_bounded(&mut second, WAIT);
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let expected = format!(
        "source `rows`: cannot listen on {listen}: address in use (is another wire running?"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");

    // Every producer still reaches the first run, and all its rows come out there.
    for round in 0..4 {
        let mut client = IngestClient::connect(&listen, "p", "rows", &schema()).expect("connect");
        produce_and_ack(&mut client, round * 10, 10);
        client.close().expect("close");
    }
    let (exit, stdout) = first.stop();
    assert!(exit.success());
    assert_eq!(stdout.lines().count(), 40);
}

#[test]
fn producers_are_told_why_when_a_sink_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let sink = format!(
        "    type: file\n    path: {}\n    format: jsonl\n    roll_bytes: 1",
        out.display()
    );
    let yaml = pipeline("127.0.0.1:0", "    credits: 4", &sink);
    let mut wire = Wire::start(&yaml, dir.path(), "a");
    let mut client = IngestClient::connect(&wire.addr, "p", "rows", &schema()).expect("connect");
    produce_and_ack(&mut client, 0, 1);
    // The first batch's part is written and rolled; the next one needs a new part file,
    // which cannot be created once the sink's directory is a regular file.
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_dir(&out).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| !e.file_name().to_string_lossy().ends_with(".inprogress"))
    }) {
        assert!(Instant::now() < deadline, "the first part never rolled");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&out).expect("remove the sink directory");
    std::fs::write(&out, b"not a directory").expect("replace it with a file");
    let mut error = None;
    for round in 1..100 {
        let sent = client.send(&batch(round, 1, 8));
        if let Err(err) = sent.and_then(|_| client.wait_acks().map(|_| 0)) {
            error = Some(err);
            break;
        }
    }
    match error {
        Some(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Internal, "{message}");
            assert!(message.contains(&out.display().to_string()), "{message}");
            // The sink may try its next part between the directory's removal and the file
            // taking its place: either way the producer hears the path and the OS's reason.
            assert!(
                message.contains("Not a directory") || message.contains("No such file"),
                "{message}"
            );
        }
        other => panic!("expected an Error frame saying why, got {other:?}"),
    }
    let status = wait_bounded(&mut wire.child, WAIT);
    assert_eq!(status.code(), Some(1), "{}", wire.stderr());
}

#[test]
#[cfg_attr(not(wire_root), ignore = "needs root to mount a loop device")]
fn producers_are_told_why_when_the_sink_disk_is_full() {
    assert!(is_root(), "built as root but run as another user: rebuild");
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = LoopMount::new(dir.path(), 8);
    let out = mount.point.join("out");
    let sink = format!(
        "    type: file\n    path: {}\n    format: jsonl",
        out.display()
    );
    let yaml = pipeline("127.0.0.1:0", "    credits: 4", &sink);
    let mut wire = Wire::start(&yaml, dir.path(), "a");
    let mut client = IngestClient::connect(&wire.addr, "p", "rows", &schema()).expect("connect");
    // 256 KiB batches into an 8 MiB filesystem: the sink runs out of space.
    let mut error = None;
    for round in 0..400 {
        let sent = client.send(&batch(round * 256, 256, 1000));
        if let Err(err) = sent.and_then(|_| client.poll_acks().map(|_| 0)) {
            error = Some(err);
            break;
        }
    }
    // The producer may outrun the sink (acks follow the WAL, not the sink): the batches still
    // queued reach the full disk later. Wait, bounded, for the failure to reach the producer.
    let deadline = Instant::now() + WAIT;
    while error.is_none() && Instant::now() < deadline {
        match client.poll_acks() {
            Err(err) => error = Some(err),
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let error = error.unwrap_or_else(|| {
        let df = Command::new("df").arg(&mount.point).output().expect("df");
        let du = Command::new("du")
            .args(["-a"])
            .arg(&mount.point)
            .output()
            .expect("du");
        panic!(
            "the run did not fail: {}\n{}\n{}",
            wire.stderr(),
            String::from_utf8_lossy(&df.stdout),
            String::from_utf8_lossy(&du.stdout)
        )
    });
    match error {
        ClientError::Server { code, message, .. } => {
            assert_eq!(code, ErrorCode::Internal, "{message}");
            assert!(
                message.contains("No space") || message.contains("disk full"),
                "{message}"
            );
        }
        other => panic!("expected an Error frame saying why, got {other}"),
    }
    let status = wait_bounded(&mut wire.child, WAIT);
    assert_eq!(status.code(), Some(1), "{}", wire.stderr());
    drop(wire);
    drop(mount);
}

/// Reliability plan A3 end to end: the disk under the ingest WAL starts failing every write
/// with EIO (its loop device shrinks under the filesystem). The append that hits it fails,
/// the WAL poisons itself, the producer gets an Error frame that says so and why, and the run
/// exits 1 without a panic.
#[test]
#[cfg_attr(not(wire_root), ignore = "needs root to mount a loop device")]
fn producers_are_told_why_when_the_wal_disk_fails_with_eio() {
    assert!(is_root(), "built as root but run as another user: rebuild");
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = LoopMount::failable(dir.path(), 64);
    let yaml = pipeline("127.0.0.1:0", "    credits: 4", STDOUT_SINK);
    let mut wire = Wire::start(&yaml, &mount.point, "a");
    let mut client = IngestClient::connect(&wire.addr, "p", "rows", &schema()).expect("connect");
    produce_and_ack(&mut client, 0, 4);
    mount.fail_io();
    let mut error = None;
    for round in 1..200 {
        let sent = client.send(&batch(round * 16, 16, 100));
        if let Err(err) = sent.and_then(|_| client.wait_acks().map(|_| 0)) {
            error = Some(err);
            break;
        }
    }
    match error {
        Some(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Internal, "{message}");
            assert!(message.contains("log poisoned"), "{message}");
            assert!(message.contains("Input/output error"), "{message}");
            assert!(message.contains("source `rows`"), "{message}");
        }
        other => panic!("expected an Error frame saying why, got {other:?}"),
    }
    let status = wait_bounded(&mut wire.child, WAIT);
    let stderr = wire.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Input/output error"), "{stderr}");
    drop(wire);
    drop(mount);
}
