//! The exchange between nodes against the machine's loopback TCP, measured in one run.
//!
//! 1. Loopback TCP: one thread writes 256 KiB buffers to a 127.0.0.1 socket as fast as it
//!    can, another reads them: the bandwidth a byte stream gets on this machine.
//! 2. Exchange stream: a glommio core sends prebuilt batches (about 64 KiB of Nexmark bids each)
//!    through `NetSender` to another core's `exchange::receive`, which verifies every batch
//!    and hands it to a mailbox drained by a task that drops it: the path rows take between
//!    two nodes (framing, credits, checks), minus the operators. Both executors are set up
//!    as a pool's cores are (`wire_actors::core_executor`: they spin briefly before parking).
//!    Both also report the CPU time of their two threads per GiB carried, which other work on a
//!    shared machine disturbs far less than their wall-clock rates.
//! 3. q5 spread: Nexmark q5 on one pool of 2 cores against the same query spread over two
//!    pools of 1 core each, joined by the exchange (each pool stands in for a node, in one
//!    process): the cost of crossing nodes instead of cores, as events/s.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_exchange [-- --megabytes N --events N]`;
//! `-- --test` is a seconds-long smoke pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use glommio::channels::local_channel;
use wire_actors::exchange::{self, ExchangeHub, ExchangeTls, NetSender, Placement};
use wire_actors::message::Message;
use wire_actors::{CorePool, Deploy, Failure, PoolOptions};
use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::PipelineSpec;
use wire_core::nexmark::{Event, Generator, GeneratorConfig};
use wire_core::time::watermark::SenderId;
use wire_core::{Batch, BatchBuilder, PartitionId, StreamId};
use wire_net::exchange::StreamKey;

// The same allocator as Wire's binaries: received batches are allocated and freed at the
// exchange's rate, and glibc's malloc returns such buffers to the kernel each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    smoke: bool,
    megabytes: usize,
    events: u64,
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    println!(
        "# Exchange between nodes vs loopback TCP ({})",
        wire_bench::machine_description(&args.dir)
    );
    let bytes = args.megabytes << 20;
    let (tcp, tcp_cpu) = loopback_tcp(bytes)?;
    println!(
        "loopback TCP:      {} ({} MiB), {:.3} CPU-s per GiB",
        wire_bench::mb_per_s(tcp),
        args.megabytes,
        tcp_cpu
    );
    let (exchange, rows_per_s, [sender_cpu, receiver_cpu]) = exchange_stream(bytes, None)?;
    let exchange_cpu = sender_cpu + receiver_cpu;
    println!(
        "exchange stream:   {} ({} rows/s) = {:.2} of loopback TCP; {:.3} CPU-s per GiB (sender {:.3}, receiver {:.3}) = {:.2} of loopback TCP's bytes per CPU-second",
        wire_bench::mb_per_s(exchange),
        wire_bench::human(rows_per_s),
        exchange / tcp,
        exchange_cpu,
        sender_cpu,
        receiver_cpu,
        tcp_cpu / exchange_cpu.max(1e-9)
    );
    let tls = Some(exchange_tls(&args.dir)?);
    let (mtls, mtls_rows_per_s, mtls_cpu) = exchange_stream(bytes, tls.clone())?;
    println!(
        "exchange stream over mutual TLS: {} ({} rows/s) = {:.2} of the plaintext stream; {:.3} CPU-s per GiB",
        wire_bench::mb_per_s(mtls),
        wire_bench::human(mtls_rows_per_s),
        mtls / exchange,
        mtls_cpu[0] + mtls_cpu[1]
    );
    let one = q5_events_per_s(&args.dir.join("one"), args.events, false, None)?;
    let spread = q5_events_per_s(&args.dir.join("spread"), args.events, true, None)?;
    println!(
        "q5, {} events:  one pool of 2 cores {} events/s; two pools of 1 core joined by the exchange {} events/s = {:.2}",
        args.events,
        wire_bench::human(one),
        wire_bench::human(spread),
        spread / one
    );
    let spread_tls = q5_events_per_s(&args.dir.join("spread-tls"), args.events, true, tls)?;
    println!(
        "q5, {} events:  two pools joined by the exchange over mutual TLS {} events/s = {:.2} of plaintext",
        args.events,
        wire_bench::human(spread_tls),
        spread_tls / spread
    );
    println!(
        "command: {} -- --megabytes {} --events {}{}",
        wire_bench::cargo_command("e2e_exchange"),
        args.megabytes,
        args.events,
        if args.smoke { " --test" } else { "" }
    );
    Ok(())
}

/// Bytes per second one socket pair on 127.0.0.1 carries, and its two threads' CPU-seconds
/// per GiB.
fn loopback_tcp(bytes: usize) -> anyhow::Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<(usize, f64)> {
        let (mut stream, _) = listener.accept()?;
        let cpu = wire_bench::thread_cpu_s();
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0;
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok((total, wire_bench::thread_cpu_s() - cpu)),
                n => total += n,
            }
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    let buf = vec![7u8; 256 << 10];
    let started = Instant::now();
    let cpu = wire_bench::thread_cpu_s();
    let mut sent = 0;
    while sent < bytes {
        stream.write_all(&buf)?;
        sent += buf.len();
    }
    drop(stream);
    let writer_cpu = wire_bench::thread_cpu_s() - cpu;
    let (received, reader_cpu) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    anyhow::ensure!(received == sent, "sent {sent} bytes, received {received}");
    let per_gib = (writer_cpu + reader_cpu) * (1u64 << 30) as f64 / sent as f64;
    Ok((sent as f64 / started.elapsed().as_secs_f64(), per_gib))
}

/// Batches of Nexmark bids of about 64 KiB each, `bytes` of them in all.
fn batches(bytes: usize) -> anyhow::Result<Vec<Batch>> {
    let generator = Generator::new(GeneratorConfig::default())?;
    let mut out = Vec::new();
    let mut total = 0;
    let mut n = 0u64;
    while total < bytes {
        let mut builder = BatchBuilder::with_capacity(StreamId(0), PartitionId(0), 70 << 10);
        while builder.encoded_len() < 64 << 10 {
            if let Event::Bid(bid) = generator.event(n) {
                bid.push_to(&mut builder)?;
            }
            n += 1;
        }
        let batch = builder.finish();
        total += batch.as_bytes().len();
        out.push(batch);
    }
    Ok(out)
}

/// The exchange's mutual TLS with `wire certs init`'s development certificates (made afresh
/// under `dir/certs`); every peer counts as a member.
fn exchange_tls(dir: &Path) -> anyhow::Result<Arc<ExchangeTls>> {
    let certs = dir.join("certs");
    let _ = std::fs::remove_dir_all(&certs);
    wire_control::tls::init_dev_certs(&certs, &[]).map_err(anyhow::Error::msg)?;
    let tls = ExchangeTls::load(
        &certs.join("node.pem"),
        &certs.join("node-key.pem"),
        &certs.join("ca.pem"),
        Arc::new(|_| true),
    )?;
    Ok(Arc::new(tls))
}

/// Bytes and rows per second through one exchange stream between two cores (over mutual
/// TLS with `tls`), and the sending and the receiving core's CPU-seconds per GiB.
fn exchange_stream(
    bytes: usize,
    tls: Option<Arc<ExchangeTls>>,
) -> anyhow::Result<(f64, f64, [f64; 2])> {
    let batches = batches(bytes)?;
    let total: usize = batches.iter().map(|b| b.as_bytes().len()).sum();
    let rows: usize = batches.iter().map(Batch::row_count).sum();
    let hub = ExchangeHub::bind("127.0.0.1:0".parse()?, tls.clone())?;
    let placement = Placement {
        pipeline: "bench".to_string(),
        epoch: 1,
        slots: 2,
        local: vec![1],
        peers: vec![hub.addr(), hub.addr()],
        hub: hub.clone(),
    };
    let key = placement.stream(0, 0, 0, 1);
    let failure = Arc::new(Failure::default());
    let receiving = receiving_core(hub, key.clone(), failure.clone());
    let started = Instant::now();
    let sending = sending_core(placement.peers[1], key, failure, tls, batches);
    let sent = sending
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?;
    let (sent, sender_cpu) = sent.context("sending core")?;
    let received = receiving
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    let (received, receiver_cpu) = received.context("receiving core")?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = sent {
        bail!("the exchange failed: {error}");
    }
    anyhow::ensure!(received == rows, "sent {rows} rows, received {received}");
    let per_gib = |cpu: f64| cpu * (1u64 << 30) as f64 / total as f64;
    Ok((
        total as f64 / seconds,
        rows as f64 / seconds,
        [per_gib(sender_cpu), per_gib(receiver_cpu)],
    ))
}

/// A core (thread) receiving stream `key` from `hub` into a mailbox drained by a task that
/// drops the batches; it returns the rows received and its CPU-seconds.
fn receiving_core(
    hub: Arc<ExchangeHub>,
    key: StreamKey,
    failure: Arc<Failure>,
) -> std::thread::JoinHandle<std::io::Result<(usize, f64)>> {
    std::thread::spawn(move || {
        core_executor()?.run(async move {
            let cpu = wire_bench::thread_cpu_s();
            let (tx, rx) = local_channel::new_bounded(wire_actors::MAILBOX_BATCHES);
            let drain = glommio::spawn_local(async move {
                let mut rows = 0;
                while let Some(message) = rx.recv().await {
                    match message {
                        Message::Batch { batch, .. } => rows += batch.row_count(),
                        Message::End { .. } => break,
                        _ => {}
                    }
                }
                rows
            });
            exchange::receive(hub, key, 0, failure, Rc::new(tx)).await;
            let rows = drain.await;
            Ok((rows, wire_bench::thread_cpu_s() - cpu))
        })
    })
}

/// A core (thread) sending `batches` and an end on stream `key` to `peer`; it returns the
/// exchange's failure, if any, and its CPU-seconds.
fn sending_core(
    peer: std::net::SocketAddr,
    key: StreamKey,
    failure: Arc<Failure>,
    tls: Option<Arc<ExchangeTls>>,
    batches: Vec<Batch>,
) -> std::thread::JoinHandle<std::io::Result<(Option<String>, f64)>> {
    std::thread::spawn(move || {
        core_executor()?.run(async move {
            let cpu = wire_bench::thread_cpu_s();
            let sender = NetSender::connect(peer, key, failure.clone(), tls).await;
            let from = SenderId::new(0, 0);
            for batch in batches {
                let message = Message::Batch {
                    batch,
                    port: 0,
                    sender: from,
                };
                if !sender.send(message).await {
                    return Ok((failure.message(), 0.0));
                }
            }
            sender.send(Message::End { sender: from }).await;
            Ok((failure.message(), wire_bench::thread_cpu_s() - cpu))
        })
    })
}

/// An executor set up as a pool's core is (one of two), so the stream runs as it does
/// between two nodes' cores.
fn core_executor() -> std::io::Result<glommio::LocalExecutor> {
    let builder = wire_actors::core_executor(
        glommio::Placement::Unbound,
        2,
        wire_storage::io::IO_MEMORY_BYTES_MIN,
    )
    .map_err(std::io::Error::other)?;
    builder.make().map_err(std::io::Error::from)
}

/// Nexmark q5 without a sink's IO (blackhole).
fn q5(events: u64) -> anyhow::Result<Plan> {
    let text =
        wire_tests::nexmark::q5_yaml(&format!("events: {events}, seed: 1"), "type: blackhole");
    let spec = PipelineSpec::parse("q5.yaml", &text)?;
    Ok(Plan::from_spec(&spec)?)
}

/// Events per second of q5 on one pool of 2 cores, or spread over two pools of 1 core (the
/// exchange over mutual TLS with `tls`).
fn q5_events_per_s(
    dir: &Path,
    events: u64,
    spread: bool,
    tls: Option<Arc<ExchangeTls>>,
) -> anyhow::Result<f64> {
    let shapes: Vec<Vec<usize>> = if spread {
        vec![vec![0], vec![1]]
    } else {
        vec![vec![0, 1]]
    };
    let hubs: Vec<Arc<ExchangeHub>> = shapes
        .iter()
        .map(|_| ExchangeHub::bind("127.0.0.1:0".parse().expect("address"), tls.clone()))
        .collect::<Result<_, _>>()?;
    let peers = vec![hubs[0].addr(), hubs[hubs.len() - 1].addr()];
    let started = Instant::now();
    let mut running = Vec::new();
    for (node, local) in shapes.iter().enumerate() {
        let pool = CorePool::start(PoolOptions {
            cores: local.len(),
            pin: false,
            io_memory: wire_storage::io::IO_MEMORY_BYTES_MIN,
        })?;
        let placement = spread.then(|| Placement {
            pipeline: "q5".to_string(),
            epoch: 1,
            slots: 2,
            local: local.clone(),
            peers: peers.clone(),
            hub: hubs[node].clone(),
        });
        let deploy = Deploy {
            cores: local.len(),
            data_dir: dir.join(format!("node{node}")),
            checkpoints: None,
            placement,
            ingest_auth: None,
            ingest_tls: None,
            node_id: 0,
        };
        let deployment = pool.handle().deploy(q5(events)?, deploy)?;
        running.push((pool, deployment));
    }
    for (_pool, deployment) in running {
        let report = deployment.wait();
        if let Some(error) = report.error {
            bail!("q5 failed: {error}");
        }
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        smoke: false,
        megabytes: 2048,
        events: 10_000_000,
        dir: PathBuf::from("target/exchange-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--test" | "--smoke" => args.smoke = true,
            "--megabytes" => args.megabytes = value("--megabytes")?.parse()?,
            "--events" => args.events = value("--events")?.parse()?,
            "--dir" => args.dir = value("--dir")?.into(),
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.smoke {
        args.megabytes = args.megabytes.min(16);
        args.events = args.events.min(100_000);
    }
    args.dir = std::path::absolute(&args.dir)?;
    Ok(args)
}
