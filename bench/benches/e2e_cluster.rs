//! What a 3-node cluster of real `wire start` processes on 127.0.0.1 costs to form, how fast it
//! fails over, and how long a metadata write takes.
//!
//! 1. Formation: from spawning the 3 processes until the leader answers `ClusterStatus`.
//! 2. Failover: SIGKILL of the leader until a survivor names another leader (polled every
//!    10 ms), against the election timeout (10 ticks of 100 ms, randomised up to 20); then the
//!    killed node restarts and catches up before the next kill.
//! 3. Metadata writes: sequential pause/resume toggles of one pipeline against the leader
//!    (each a raft commit on a quorum), interleaved with 4 KiB `write` + `fdatasync` of a plain
//!    file on the same filesystem, as a ratio of their p99s.
//!
//! Status and writes go through the gRPC admin client in this process, so no `wirectl`
//! start-up is timed.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_cluster [-- --kills N --writes N]`;
//! `-- --test` is a seconds-long smoke pass.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};
use wire_control::proto::admin::admin_service_client::AdminServiceClient;
use wire_control::proto::admin::{
    ClusterStatusRequest, ClusterStatusResponse, CreatePipelineRequest, PipelineRef,
};

type Client = AdminServiceClient<Channel>;

/// The raft election timeout (`control/src/raft/actor.rs`: 100 ms ticks, 10 ticks).
const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one status call may take (a dead peer must not stall the polling).
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);
/// How long one metadata write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node may take to print its `serving` line, or a cluster to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often status is polled.
const POLL: Duration = Duration::from_millis(10);

struct Args {
    smoke: bool,
    formations: usize,
    kills: usize,
    writes: usize,
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let wire = wire_tests::wire_bin();
    println!("# Cluster on wire: 3 `wire start` nodes on 127.0.0.1 (--cores 1 --no-pin)");
    println!(
        "command: {} -- --formations {} --kills {} --writes {}{}",
        wire_bench::cargo_command("e2e_cluster"),
        args.formations,
        args.kills,
        args.writes,
        if args.smoke { " --test" } else { "" }
    );
    println!("machine: {}", wire_bench::machine_description(&args.dir));
    println!("load average at start: {}", load_average());
    println!();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&args, &wire))?;
    println!("load average at end: {}", load_average());
    Ok(())
}

async fn run(args: &Args, wire: &Path) -> anyhow::Result<()> {
    formation(args, wire).await?;
    let dir = args.dir.join("cluster");
    let mut cluster = Cluster::create(&dir, wire)?;
    cluster.start_all().await?;
    failover(args, &mut cluster).await?;
    writes(args, &mut cluster).await?;
    Ok(())
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// One `wire start` process (restartable), SIGKILLed when dropped.
struct Node {
    id: u64,
    addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    wire: PathBuf,
    child: Option<Child>,
    /// Stdout lines with the time each was read.
    lines: Option<mpsc::Receiver<(Instant, String)>>,
    client: Client,
}

impl Node {
    /// Spawns the process (does not wait for it).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = Command::new(&self.wire)
            .args(["start", "--node-id", &self.id.to_string()])
            .args(["--listen", &self.addr, "--cores", "1", "--no-pin"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("WIRE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.wire.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        self.lines = Some(rx);
        Ok(())
    }

    /// Waits (bounded) for `node N serving on ADDR`; returns when it was printed.
    async fn serving(&mut self) -> anyhow::Result<Instant> {
        let want = format!("node {} serving on {}", self.id, self.addr);
        let lines = self.lines.as_ref().context("node not spawned")?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            match lines.try_recv() {
                Ok((at, line)) if line == want => return Ok(at),
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(2)).await
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        bail!(
            "node {} did not print `{want}` within {SETTLE_TIMEOUT:?}; see {}",
            self.id,
            self.log.display()
        )
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.lines = None;
    }

    /// `ClusterStatus` from this node, bounded by [`STATUS_TIMEOUT`].
    async fn status(&self) -> Result<ClusterStatusResponse, String> {
        let mut client = self.client.clone();
        match tokio::time::timeout(
            STATUS_TIMEOUT,
            client.cluster_status(ClusterStatusRequest {}),
        )
        .await
        {
            Ok(Ok(answer)) => Ok(answer.into_inner()),
            Ok(Err(status)) => Err(format!("node {}: {}", self.id, status.message())),
            Err(_) => Err(format!("node {}: no answer in {STATUS_TIMEOUT:?}", self.id)),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A lazily connecting admin client for `addr` (connects on the first call, reconnects after
/// a failure).
fn client(addr: &str) -> anyhow::Result<Client> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(STATUS_TIMEOUT)
        .connect_lazy();
    Ok(AdminServiceClient::new(channel))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Three founding nodes under one directory; every process is killed when this is dropped,
/// on every exit path.
struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    /// Nodes 1..=3 with fresh data directories under `dir` (none started).
    fn create(dir: &Path, wire: &Path) -> anyhow::Result<Cluster> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            let addr = format!("127.0.0.1:{}", free_port()?);
            nodes.push(Node {
                id,
                client: client(&addr)?,
                addr,
                data_dir: dir.join(format!("node-{id}")),
                log: dir.join(format!("node-{id}.log")),
                args: Vec::new(),
                wire: wire.to_owned(),
                child: None,
                lines: None,
            });
        }
        let list: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect();
        for node in &mut nodes {
            node.args = vec!["--initial-cluster".into(), list.join(",")];
        }
        Ok(Cluster { nodes })
    }

    /// Spawns every node and waits for each `serving` line and a settled leader.
    async fn start_all(&mut self) -> anyhow::Result<u64> {
        for node in &mut self.nodes {
            node.spawn()?;
        }
        for node in &mut self.nodes {
            node.serving().await?;
        }
        self.settled_leader().await
    }

    fn node(&self, id: u64) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    /// Waits (bounded) until every running node names the same leader, a running node that
    /// names itself, and has applied what it committed; returns the leader's id.
    async fn settled_leader(&self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut last = String::from("never polled");
        while Instant::now() < deadline {
            match self.agreed_leader().await {
                Ok(leader) => return Ok(leader),
                Err(err) => last = err,
            }
            tokio::time::sleep(POLL).await;
        }
        bail!("no settled leader within {SETTLE_TIMEOUT:?}; last: {last}")
    }

    async fn agreed_leader(&self) -> Result<u64, String> {
        let mut statuses = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            statuses.push(node.status().await?);
        }
        let leader = statuses.first().map_or(0, |s| s.leader_id);
        let leading = statuses.iter().find(|s| s.node_id == leader);
        match leading {
            Some(l)
                if statuses.iter().all(|s| s.leader_id == leader)
                    && statuses.iter().all(|s| s.applied_index >= l.commit_index) =>
            {
                Ok(leader)
            }
            _ => Err(format!(
                "(node, leader, applied) seen: {:?}",
                statuses
                    .iter()
                    .map(|s| (s.node_id, s.leader_id, s.applied_index))
                    .collect::<Vec<_>>()
            )),
        }
    }
}

/// Spawn to all `serving` lines, and spawn to the leader answering, over `args.formations`
/// fresh clusters.
async fn formation(args: &Args, wire: &Path) -> anyhow::Result<()> {
    println!("## formation: spawning 3 processes until the leader answers ClusterStatus");
    println!("| clusters | all 3 serving p50 / max | leader answers p50 / max |");
    println!("|---|---|---|");
    let mut serving = wire_bench::new_histogram();
    let mut leading = wire_bench::new_histogram();
    for _ in 0..args.formations {
        let mut cluster = Cluster::create(&args.dir.join("formation"), wire)?;
        let started = Instant::now();
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        let answered = leader_answers(&cluster, started).await?;
        wire_bench::record_us(&mut leading, answered);
        let mut last = started;
        for node in &mut cluster.nodes {
            last = last.max(node.serving().await?);
        }
        wire_bench::record_us(&mut serving, last - started);
    }
    println!(
        "| {} | {} / {} | {} / {} |",
        args.formations,
        ms(serving.value_at_quantile(0.5)),
        ms(serving.max()),
        ms(leading.value_at_quantile(0.5)),
        ms(leading.max())
    );
    println!();
    Ok(())
}

/// Polls every node every [`POLL`] until one answers as the leader; the time since `started`.
async fn leader_answers(cluster: &Cluster, started: Instant) -> anyhow::Result<Duration> {
    let deadline = started + SETTLE_TIMEOUT;
    let mut last = String::from("never polled");
    while Instant::now() < deadline {
        for node in &cluster.nodes {
            match node.status().await {
                Ok(s) if s.leader_id != 0 && s.leader_id == s.node_id => {
                    return Ok(started.elapsed())
                }
                Ok(s) => last = format!("node {} names leader {}", s.node_id, s.leader_id),
                Err(err) => last = err,
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("no leader answered within {SETTLE_TIMEOUT:?}; last: {last}")
}

/// `args.kills` times: SIGKILL the leader, time until a survivor names another one, restart
/// the killed node and time until it has caught up.
async fn failover(args: &Args, cluster: &mut Cluster) -> anyhow::Result<()> {
    println!(
        "## leader failover after SIGKILL (election timeout {} ms: 10 ticks of 100 ms, randomised to [10, 20) ticks; pre-vote and check-quorum on)",
        ELECTION_TIMEOUT.as_millis()
    );
    println!("| kills | new leader p50 | p99 | max | p99 / election timeout | restart to caught up p50 / max |");
    println!("|---|---|---|---|---|---|");
    let mut elect = wire_bench::new_histogram();
    let mut catch_up = wire_bench::new_histogram();
    for _ in 0..args.kills {
        let old = cluster.settled_leader().await?;
        let killed = cluster.nodes.iter().position(|n| n.id == old);
        let killed = killed.context("the leader is not a cluster node")?;
        let started = Instant::now();
        cluster.nodes[killed].kill();
        let new = new_leader(cluster, old, started).await?;
        wire_bench::record_us(&mut elect, started.elapsed());
        let restarted = Instant::now();
        let node = &mut cluster.nodes[killed];
        node.spawn()?;
        node.serving().await?;
        caught_up(cluster, old, new).await?;
        wire_bench::record_us(&mut catch_up, restarted.elapsed());
    }
    let p99 = elect.value_at_quantile(0.99);
    println!(
        "| {} | {} | {} | {} | {:.2} | {} / {} |",
        args.kills,
        ms(elect.value_at_quantile(0.5)),
        ms(p99),
        ms(elect.max()),
        p99 as f64 / ELECTION_TIMEOUT.as_micros() as f64,
        ms(catch_up.value_at_quantile(0.5)),
        ms(catch_up.max())
    );
    println!();
    Ok(())
}

/// Polls the survivors every [`POLL`] until one names a leader other than `old`.
async fn new_leader(cluster: &Cluster, old: u64, started: Instant) -> anyhow::Result<u64> {
    let deadline = started + SETTLE_TIMEOUT;
    let mut last = String::from("never polled");
    while Instant::now() < deadline {
        for node in cluster.nodes.iter().filter(|n| n.id != old) {
            match node.status().await {
                Ok(s) if s.leader_id != 0 && s.leader_id != old => return Ok(s.leader_id),
                Ok(s) => last = format!("node {} names leader {}", s.node_id, s.leader_id),
                Err(err) => last = err,
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("no survivor named a new leader within {SETTLE_TIMEOUT:?}; last: {last}")
}

/// Waits (bounded) until restarted node `id` follows `leader` and has applied everything the
/// leader had committed when asked.
async fn caught_up(cluster: &Cluster, id: u64, leader: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = String::from("never polled");
    while Instant::now() < deadline {
        let both = match cluster.node(leader)?.status().await {
            Ok(l) => cluster.node(id)?.status().await.map(|n| (l, n)),
            Err(err) => Err(err),
        };
        match both {
            Ok((l, n)) if n.leader_id == l.node_id && n.applied_index >= l.commit_index => {
                return Ok(())
            }
            Ok((l, n)) => {
                last = format!(
                    "node {id} names leader {} and applied {} of {}",
                    n.leader_id, n.applied_index, l.commit_index
                )
            }
            Err(err) => last = err,
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("node {id} did not catch up within {SETTLE_TIMEOUT:?}; last: {last}")
}

/// A pipeline that runs until stopped, slowly (it exists to be paused and resumed).
const TOGGLED: &str = "name: toggled\nsources:\n  bids: {type: nexmark, stream: bid, events: 1000000000, seed: 1, rate: 10}\nsinks:\n  out: {type: blackhole, from: bids}\n";

/// `args.writes` sequential pause/resume toggles against the leader, each followed by a 4 KiB
/// append + `fdatasync` of a plain file in the cluster's directory.
async fn writes(args: &Args, cluster: &mut Cluster) -> anyhow::Result<()> {
    println!("## metadata writes (pause/resume toggles, sequential, against the leader) vs 4 KiB write + fdatasync on the same filesystem, interleaved");
    println!("| writes | write p50 | write p99 | write max | fdatasync p50 | fdatasync p99 | write p99 / fdatasync p99 |");
    println!("|---|---|---|---|---|---|---|");
    let leader = cluster.settled_leader().await?;
    let mut client = cluster.node(leader)?.client.clone();
    let create = CreatePipelineRequest {
        file: "toggled.yaml".into(),
        spec: TOGGLED.into(),
        options: None,
    };
    tokio::time::timeout(WRITE_TIMEOUT, client.create_pipeline(create))
        .await
        .context("create pipeline: no answer")?
        .context("create pipeline")?;
    let probe = args.dir.join("cluster").join("fdatasync-probe");
    let file = File::create(&probe).with_context(|| format!("creating {}", probe.display()))?;
    let block = vec![0x5au8; 4096];
    let mut write = wire_bench::new_histogram();
    let mut sync = wire_bench::new_histogram();
    for i in 0..args.writes {
        let name = PipelineRef {
            name: "toggled".into(),
        };
        let started = Instant::now();
        let call = if i % 2 == 0 {
            tokio::time::timeout(WRITE_TIMEOUT, client.pause_pipeline(name)).await
        } else {
            tokio::time::timeout(WRITE_TIMEOUT, client.resume_pipeline(name)).await
        };
        call.with_context(|| format!("write {i}: no answer in {WRITE_TIMEOUT:?}"))?
            .with_context(|| format!("write {i}"))?;
        wire_bench::record_us(&mut write, started.elapsed());
        let started = Instant::now();
        file.write_all_at(&block, i as u64 * 4096)?;
        file.sync_data()?;
        wire_bench::record_us(&mut sync, started.elapsed());
    }
    print_writes(args.writes, &write, &sync);
    Ok(())
}

fn print_writes(count: usize, write: &Histogram<u64>, sync: &Histogram<u64>) {
    let write_p99 = write.value_at_quantile(0.99);
    let sync_p99 = sync.value_at_quantile(0.99);
    println!(
        "| {count} | {} | {} | {} | {} | {} | {:.2} |",
        ms(write.value_at_quantile(0.5)),
        ms(write_p99),
        ms(write.max()),
        ms(sync.value_at_quantile(0.5)),
        ms(sync_p99),
        write_p99 as f64 / sync_p99.max(1) as f64
    );
    println!();
}

/// Microseconds as `12.3 ms`.
fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1e3)
}

fn parse_args() -> anyhow::Result<Args> {
    let numbers = [("formations", 5), ("kills", 20), ("writes", 1000)];
    let args = wire_bench::BenchArgs::parse("target/cluster-bench", &numbers)?;
    Ok(Args {
        smoke: args.smoke,
        formations: args.number("formations", 1) as usize,
        kills: args.number("kills", 2) as usize,
        writes: args.number("writes", 50) as usize,
        dir: args.dir,
    })
}
