//! One pipeline spread over two pools (two "nodes" in one process) that exchange rows over
//! real loopback TCP through their hubs: the output equals the pipeline's on one pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::PipelineSpec;

use super::*;
use crate::pipeline::Deploy;
use crate::pool::{CorePool, PoolOptions, RunReport};

/// A hopping-window count per auction and the top auction per window (Nexmark q5), written
/// as jsonl to `out`.
fn q5(out: &Path, events: u64) -> Plan {
    let text = format!(
        "name: q5
sources:
  bids: {{type: nexmark, stream: bid, events: {events}, seed: 3}}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {{type: hop, size: 10s, slide: 2s}}
    aggregate:
      num: count(*)
  - name: hottest
    from: per_auction
    top: {{n: 1, order_by: num desc, group_by: [window_end], with_ties: true}}
sinks:
  out: {{type: file, format: jsonl, path: {}, from: hottest}}
",
        out.display()
    );
    let spec = PipelineSpec::parse("q5.yaml", &text).expect("spec");
    Plan::from_spec(&spec).expect("plan")
}

fn pool(cores: usize) -> CorePool {
    CorePool::start(PoolOptions {
        cores,
        pin: false,
        io_memory: wire_storage::io::IO_MEMORY_BYTES_MIN,
    })
    .expect("pool starts")
}

/// The lines of every published part file under `dirs`, sorted.
fn lines(dirs: &[PathBuf]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut dirs = dirs.to_vec();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                dirs.push(path);
            } else if !name.starts_with('.') && !name.ends_with(".inprogress") {
                let text = std::fs::read_to_string(&path).expect("part file");
                lines.extend(text.lines().map(str::to_string));
            }
        }
    }
    lines.sort();
    lines
}

fn run_alone(dir: &Path, events: u64) -> Vec<String> {
    let out = dir.join("alone");
    let deploy = Deploy {
        cores: 2,
        data_dir: dir.join("alone-data"),
        checkpoints: None,
        placement: None,
        ingest_auth: None,
        ingest_tls: None,
        node_id: 0,
    };
    let report = pool(2)
        .handle()
        .deploy(q5(&out, events), deploy)
        .expect("deploys")
        .wait();
    assert!(report.error.is_none(), "{:?}", report.error);
    lines(&[out])
}

/// Runs q5 on two "nodes": node 0 runs slot 0 on one core, node 1 slots 1 and 2 on two.
fn run_spread(dir: &Path, events: u64) -> (Vec<String>, Vec<RunReport>) {
    let hubs = [loopback_hub(), loopback_hub()];
    let peers = vec![hubs[0].addr(), hubs[1].addr(), hubs[1].addr()];
    let nodes = [vec![0], vec![1, 2]];
    let mut outs = Vec::new();
    let mut running = Vec::new();
    for (node, local) in nodes.iter().enumerate() {
        let out = dir.join(format!("node{node}"));
        let placement = Placement {
            pipeline: "q5".to_string(),
            epoch: 1,
            slots: 3,
            local: local.clone(),
            peers: peers.clone(),
            hub: hubs[node].clone(),
        };
        let deploy = Deploy {
            cores: local.len(),
            data_dir: dir.join(format!("node{node}-data")),
            checkpoints: None,
            placement: Some(placement),
            ingest_auth: None,
            ingest_tls: None,
            node_id: 0,
        };
        let pool = pool(local.len());
        let deployment = pool
            .handle()
            .deploy(q5(&out, events), deploy)
            .expect("deploys");
        running.push((pool, deployment));
        outs.push(out);
    }
    let reports = running.into_iter().map(|(_pool, d)| d.wait()).collect();
    (lines(&outs), reports)
}

fn loopback_hub() -> Arc<ExchangeHub> {
    ExchangeHub::bind("127.0.0.1:0".parse().expect("address"), None).expect("hub binds")
}

#[test]
fn a_pipeline_spread_over_two_nodes_gives_the_same_rows_as_on_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = run_alone(dir.path(), 300_000);
    assert!(expected.len() > 10, "q5 has output: {}", expected.len());
    let (spread, reports) = run_spread(dir.path(), 300_000);
    for report in &reports {
        assert!(report.error.is_none(), "{:?}", report.error);
    }
    assert_eq!(spread.len(), expected.len());
    assert!(spread == expected, "the spread run's rows differ");
}

#[test]
fn garbage_on_the_exchange_port_is_refused_and_the_hub_keeps_serving() {
    use std::io::{Read, Write};
    let hub = loopback_hub();
    let mut stranger = std::net::TcpStream::connect(hub.addr()).expect("connects");
    stranger
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .expect("writes");
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = stranger.read_to_end(&mut answer);
    let refusal = wire_net::exchange::decode(&answer).expect("a frame");
    let Some((Frame::Refuse(why), _)) = refusal else {
        panic!("expected a refusal, got {refusal:?}");
    };
    assert!(why.contains("frame length"), "{why}");
    // A proper stream still arrives after it.
    let key = Placement {
        pipeline: "p".to_string(),
        epoch: 1,
        slots: 2,
        local: vec![0],
        peers: vec![hub.addr(), hub.addr()],
        hub: hub.clone(),
    }
    .stream(0, 0, 1, 0);
    let mut hello = Vec::new();
    let frame = Frame::Hello::<&[u8]> {
        version: exchange::VERSION,
        stream: key.clone(),
    };
    exchange::encode(&frame, &mut hello);
    let mut producer = std::net::TcpStream::connect(hub.addr()).expect("connects");
    producer.write_all(&hello).expect("writes");
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.claim(&key).is_none() {
        assert!(Instant::now() < deadline, "the stream never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Batches of about 64 KiB of rows each.
fn batches(count: usize) -> Vec<wire_core::Batch> {
    (0..count)
        .map(|n| {
            let mut builder =
                wire_core::BatchBuilder::new(wire_core::StreamId(0), wire_core::PartitionId(0));
            let text = "x".repeat(1000);
            for i in 0..64 {
                let row = [
                    wire_core::ValueRef::I64((n * 64 + i) as i64),
                    wire_core::ValueRef::Str(&text),
                ];
                builder.push(&row).expect("row fits");
            }
            builder.finish()
        })
        .collect()
}

/// A stream from slot 0 to slot 1 of pipeline `name`, both "nodes" on one loopback hub: the
/// hub, the stream's key and the address its producer connects to.
fn loopback_stream(name: &str) -> (Arc<ExchangeHub>, StreamKey, SocketAddr) {
    let hub = loopback_hub();
    let placement = Placement {
        pipeline: name.to_string(),
        epoch: 1,
        slots: 2,
        local: vec![1],
        peers: vec![hub.addr(), hub.addr()],
        hub: hub.clone(),
    };
    (hub, placement.stream(0, 0, 0, 1), placement.peers[1])
}

/// A producer on an executor of its own that sends `count` batches of [`batches`] over `key`
/// to `peer`, counting them in `sent`, then the end of the stream; it returns whether it sent
/// them all (false: the stream broke or the run failed).
fn produce(
    (peer, key): (SocketAddr, StreamKey),
    failure: Arc<Failure>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
    count: usize,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        wire_storage::io::local_executor()
            .expect("executor")
            .run(async move {
                let sender = NetSender::connect(peer, key, failure, None).await;
                let from = SenderId::new(0, 0);
                for batch in batches(count) {
                    let message = Message::Batch {
                        batch,
                        port: 0,
                        sender: from,
                    };
                    if !sender.send(message).await {
                        return false;
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                sender.send(Message::End { sender: from }).await
            })
    })
}

/// Backpressure across nodes, on the real transport: a consumer whose mailbox is full stops
/// granting credits, so its producer on another "node" stops after exactly the credit window
/// (the first grant plus what the full mailbox returned), holding no more than that in flight;
/// once the consumer takes batches again, every batch arrives, in order.
#[test]
fn a_consumer_that_stops_taking_batches_stops_its_producer_at_the_credit_window() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const MAILBOX: usize = 16;
    const BATCHES: usize = 200;
    let window = EXCHANGE_BATCHES + MAILBOX / CREDIT_GRANT as usize * CREDIT_GRANT as usize;
    let (hub, key, peer) = loopback_stream("backpressure");
    let failure = Arc::new(Failure::default());
    let sent = Arc::new(AtomicUsize::new(0));
    let (drain_now, drain_signal) = std::sync::mpsc::channel::<()>();
    let receiving = {
        let (hub, key, failure) = (hub.clone(), key.clone(), failure.clone());
        std::thread::spawn(move || {
            wire_storage::io::local_executor()
                .expect("executor")
                .run(async move {
                    let (tx, rx) = glommio::channels::local_channel::new_bounded(MAILBOX);
                    let pumping = glommio::spawn_local(receive(hub, key, 0, failure, Rc::new(tx)));
                    // Take nothing until told: the mailbox fills and the stream stalls.
                    while drain_signal.try_recv().is_err() {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                    let mut firsts = Vec::new();
                    while let Some(message) = rx.recv().await {
                        match message {
                            Message::Batch { batch, .. } => {
                                let first = batch.view().row(0).get(0).and_then(|v| v.as_i64());
                                firsts.push(first.expect("an i64 first column"));
                            }
                            Message::End { .. } => break,
                            _ => {}
                        }
                    }
                    pumping.await;
                    firsts
                })
        })
    };
    let sending = produce((peer, key), failure.clone(), sent.clone(), BATCHES);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::SeqCst) < window && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Had credits kept coming, a second is ample for the producer to send far more.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sent.load(Ordering::SeqCst),
        window,
        "the producer should stop at the credit window ({} first granted + {} returned by the \
         full mailbox)",
        EXCHANGE_BATCHES,
        window - EXCHANGE_BATCHES
    );
    assert!(failure.message().is_none(), "{:?}", failure.message());
    drain_now.send(()).expect("the receiver waits");
    assert!(
        sending.join().expect("the producer finishes"),
        "the stream broke"
    );
    let firsts = receiving.join().expect("the consumer finishes");
    let expected: Vec<i64> = (0..BATCHES as i64).map(|n| n * 64).collect();
    assert_eq!(firsts, expected, "every batch arrives once, in order");
    assert!(failure.message().is_none(), "{:?}", failure.message());
}

#[test]
fn an_aborted_run_frees_both_ends_of_a_stalled_stream() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (hub, key, peer) = loopback_stream("aborted");
    let failure = Arc::new(Failure::default());
    let sent = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let (key, failure) = (key.clone(), failure.clone());
        std::thread::spawn(move || {
            wire_storage::io::local_executor()
                .expect("executor")
                .run(async move {
                    // A consumer that takes no row until the run fails (its own output is
                    // stuck until then): the stream stalls on credits.
                    let (tx, rx) = glommio::channels::local_channel::new_bounded(8);
                    let pumping =
                        glommio::spawn_local(receive(hub, key, 0, failure.clone(), Rc::new(tx)));
                    while !failure.failed() {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                    while let Some(message) = rx.recv().await {
                        if matches!(message, Message::End { .. }) {
                            break;
                        }
                    }
                    pumping.await;
                })
        })
    };
    let producer = produce((peer, key), failure.clone(), sent.clone(), 100_000);
    // Stalled: the count stops moving at the credit window.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = usize::MAX;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = sent.load(Ordering::SeqCst);
        if now == last && now >= EXCHANGE_BATCHES {
            break;
        }
        last = now;
    }
    assert!(
        !consumer.is_finished() && !producer.is_finished(),
        "an end returned while stalled"
    );
    failure.record(Error::Aborted("replaced by version 2".to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(consumer.is_finished() && producer.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        consumer.is_finished() && producer.is_finished(),
        "both ends return once the run is aborted"
    );
    consumer.join().expect("the consumer returns");
    assert!(
        !producer.join().expect("the producer returns"),
        "it gave up"
    );
    let why = failure.message().unwrap_or_default();
    assert!(why.contains("aborted: replaced by version 2"), "{why}");
}
