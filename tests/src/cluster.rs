//! Real `wire start` nodes on 127.0.0.1 and the `wirectl` client, for the cluster tests.
//!
//! Every wait is bounded: a node that does not print its `serving` line, or a condition that
//! does not hold, fails the test after a deadline with what was last seen.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long a node may take to print `node N serving on ADDR`.
pub const SERVING_TIMEOUT: Duration = Duration::from_secs(30);

/// The `wirectl` binary of this build (built here when missing, as [`crate::wire_bin`]).
pub fn wirectl_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| crate::built_bin("wirectl")).clone()
}

/// `wirectl top --once --interval 100ms -o json --metrics ADDR`, not yet run, with the
/// `WIRE_*` variables it reads cleared (add `--ca`, `--cert`, `--key` or `WIRE_TOKEN`).
pub fn wirectl_top(addr: &str) -> Command {
    let mut command = Command::new(wirectl_bin());
    command.args([
        "top",
        "--once",
        "--interval",
        "100ms",
        "-o",
        "json",
        "--metrics",
        addr,
    ]);
    for var in [
        "WIRE_TOKEN",
        "WIRE_CA",
        "WIRE_CERT",
        "WIRE_KEY",
        "WIRE_METRICS",
    ] {
        command.env_remove(var);
    }
    command
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on(std::net::Ipv4Addr::LOCALHOST)
}

/// The ports tests hand out: below the kernel's ephemeral range (32768–60999 by default),
/// so that no outgoing connection takes one between a test choosing it and a node binding
/// it, or while a killed node is down before it starts again on the same port.
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A TCP port on `ip` that was free a moment ago (see [`TEST_PORTS`]).
pub fn free_port_on(ip: std::net::Ipv4Addr) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..10_000 {
        // RandomState is seeded per process and per call: tests in parallel draw apart.
        let mut draw = std::collections::hash_map::RandomState::new().build_hasher();
        draw.write_u64(DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        draw.write_u32(std::process::id());
        let port = TEST_PORTS.start + (draw.finish() % span) as u16;
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} in {TEST_PORTS:?}");
}

/// A TCP port on `ip` that was free a moment ago, with the next port free too: a node's
/// exchange listens on its gRPC port + 1.
pub fn free_port_pair_on(ip: std::net::Ipv4Addr) -> u16 {
    loop {
        let port = free_port_on(ip);
        let next = port
            .checked_add(1)
            .map(|next| std::net::TcpListener::bind((ip, next)));
        if matches!(next, Some(Ok(_))) {
            return port;
        }
    }
}

/// `wirectl pipeline create -f FILE EXTRA...` against `endpoint`, its JSON answer.
pub fn create(endpoint: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "pipeline",
        "create",
        "-f",
        file.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    wirectl_json(endpoint, &args)
}

/// How long a pipeline may take to reach a state on a busy machine.
pub const PIPELINE_WAIT: Duration = Duration::from_secs(60);

/// Waits until `pipeline get NAME` shows `state`.
pub fn wait_state(endpoint: &str, name: &str, state: &str) {
    wait_for(&format!("pipeline `{name}` {state}"), PIPELINE_WAIT, || {
        let got = wirectl_json(endpoint, &["pipeline", "get", name]);
        match got["state"].as_str() {
            Some(s) if s == state => Ok(()),
            other => Err(format!("{other:?}: {got}")),
        }
    });
}

/// One `wire start` process (restartable), killed when dropped.
pub struct WireNode {
    /// Its raft id.
    pub id: u64,
    /// Its gRPC address, 127.0.0.1:PORT.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Extra `wire start` arguments (`--initial-cluster …` or `--join …`).
    pub args: Vec<String>,
    /// Where its stderr goes (appended across restarts).
    pub log: PathBuf,
    child: Option<Child>,
    /// Reads the running process's stdout (a `stdout` sink writes its rows there).
    stdout: Arc<StdoutTap>,
}

/// The reader of a node's stdout: it counts the rows (`{…}` lines) it reads, and can stop
/// reading, so that the pipe fills and a `stdout` sink blocks like a slow consumer.
#[derive(Default)]
struct StdoutTap {
    held: AtomicBool,
    rows: AtomicU64,
}

impl StdoutTap {
    /// Reads `stdout` to its end (pausing while held), sending every line to `lines`.
    fn read(&self, stdout: std::process::ChildStdout, lines: mpsc::Sender<String>) {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            while self.held.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.starts_with('{') {
                self.rows.fetch_add(1, Ordering::Relaxed);
            }
            let _ = lines.send(line.trim_end().to_string());
        }
    }
}

impl WireNode {
    /// A node `id` with its data under `dir/node-<id>` (not started).
    pub fn new(dir: &Path, id: u64, args: &[String]) -> WireNode {
        WireNode::at(std::net::Ipv4Addr::LOCALHOST, dir, id, args)
    }

    /// [`WireNode::new`] listening on `ip`.
    pub fn at(ip: std::net::Ipv4Addr, dir: &Path, id: u64, args: &[String]) -> WireNode {
        let addr = format!("{ip}:{}", free_port_pair_on(ip));
        WireNode {
            id,
            addr,
            data_dir: dir.join(format!("node-{id}")),
            args: args.to_vec(),
            log: dir.join(format!("node-{id}.log")),
            child: None,
            stdout: Arc::default(),
        }
    }

    /// Starts the process and waits (bounded) for its `serving` line.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let mut child = Command::new(crate::wire_bin())
            .args([
                "start",
                "--node-id",
                &self.id.to_string(),
                "--listen",
                &self.addr,
                // Several nodes share this machine's CPUs: one unpinned data core each.
                "--cores",
                "1",
                "--no-pin",
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("WIRE_LOG", "info,wire_control=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("wire start runs");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let want = format!("node {} serving on {}", self.id, self.addr);
        let (tx, rx) = mpsc::channel();
        let tap = Arc::clone(&self.stdout);
        std::thread::spawn(move || tap.read(stdout, tx));
        let deadline = Instant::now() + SERVING_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(_) => continue,
                Err(_) => panic!(
                    "node {} did not print `{want}` within {SERVING_TIMEOUT:?}; log:\n{}",
                    self.id,
                    self.log_text()
                ),
            }
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the exit; panics unless it exits 0.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "node {} exited with {status} on SIGTERM; log:\n{}",
                    self.id,
                    self.log_text()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {} did not exit within 20 s of SIGTERM", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process stays but neither sends nor answers (cut off from the others).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`WireNode::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Sends `signal` (`-HUP`, `-STOP`, …) to the running process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("node runs");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {} failed", child.id());
    }

    /// Stops reading the node's stdout: once the pipe is full, a `stdout` sink on this node
    /// blocks, as behind a slow consumer.
    pub fn hold_stdout(&self) {
        self.stdout.held.store(true, Ordering::Release);
    }

    /// Reads the node's stdout again after [`WireNode::hold_stdout`].
    pub fn release_stdout(&self) {
        self.stdout.held.store(false, Ordering::Release);
    }

    /// How many rows (`{…}` lines) have been read from the node's stdout, over its restarts.
    pub fn stdout_rows(&self) -> u64 {
        self.stdout.rows.load(Ordering::Relaxed)
    }

    /// The process id of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node runs").id()
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs `wirectl --endpoint ADDR ARGS…`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        wirectl(&self.addr, args)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WireNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `1=ADDR,2=ADDR,…` for `nodes`.
pub fn initial_cluster(nodes: &[(u64, String)]) -> String {
    nodes
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts founding nodes `1..=count` under `dir`, all with the same `--initial-cluster`.
pub fn start_cluster(dir: &Path, count: u64) -> Vec<WireNode> {
    start_cluster_with(dir, count, &[])
}

/// [`start_cluster`] with `extra` flags for every node (TLS files, say).
pub fn start_cluster_with(dir: &Path, count: u64, extra: &[String]) -> Vec<WireNode> {
    start_cluster_each(dir, count, |_| extra.to_vec())
}

/// [`start_cluster`] with `extra(id)` flags for node `id` (its own TLS files, say).
pub fn start_cluster_each(
    dir: &Path,
    count: u64,
    extra: impl Fn(u64) -> Vec<String>,
) -> Vec<WireNode> {
    let nodes: Vec<WireNode> = (1..=count)
        .map(|id| WireNode::new(dir, id, &extra(id)))
        .collect();
    let list: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    found(nodes, &list)
}

/// Starts `nodes`, all with `--initial-cluster` of `members` after their own flags.
fn found(mut nodes: Vec<WireNode>, members: &[(u64, String)]) -> Vec<WireNode> {
    let flag = initial_cluster(members);
    for node in &mut nodes {
        node.args
            .extend(["--initial-cluster".to_string(), flag.clone()]);
        node.start();
    }
    nodes
}

/// [`start_cluster`] behind `network`'s proxies: node `i` listens on
/// [`crate::proxy::node_ip`]`(i)` and the members know each other by their proxies.
pub fn start_cluster_behind(
    dir: &Path,
    count: u64,
    network: &crate::proxy::Network,
) -> Vec<WireNode> {
    let nodes: Vec<WireNode> = (1..=count)
        .map(|id| WireNode::at(crate::proxy::node_ip(id), dir, id, &[]))
        .collect();
    let list: Vec<(u64, String)> = nodes
        .iter()
        .map(|n| {
            let target = n.addr.parse().expect("a node address");
            (n.id, network.proxy(n.id, target))
        })
        .collect();
    found(nodes, &list)
}

/// `wirectl --endpoint ENDPOINT ARGS…`, with `WIRE_ENDPOINT` cleared.
pub fn wirectl(endpoint: &str, args: &[&str]) -> Output {
    Command::new(wirectl_bin())
        .args(["--endpoint", endpoint])
        .args(args)
        .env_remove("WIRE_ENDPOINT")
        .output()
        .expect("wirectl runs")
}

/// `wirectl … -o json ARGS…`, which must succeed, parsed.
pub fn wirectl_json(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = wirectl(endpoint, &all);
    assert!(
        out.status.success(),
        "wirectl {args:?} at {endpoint} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "wirectl {args:?}: not JSON ({err}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`
/// and the last `Err` it returned.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("never probed");
    while Instant::now() < deadline {
        match probe() {
            Ok(value) => return value,
            Err(err) => last = err,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {timeout:?}; last: {last}");
}

/// `cluster status -o json` from `endpoint`, or why not.
pub fn cluster_status(endpoint: &str) -> Result<serde_json::Value, String> {
    let out = wirectl(endpoint, &["-o", "json", "cluster", "status"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|err| err.to_string())
}

/// Waits until every running node in `nodes` names the same leader, itself a running node of
/// `nodes`; returns its id.
pub fn wait_for_leader(nodes: &[WireNode], timeout: Duration) -> u64 {
    wait_for_leader_among(nodes, None, timeout)
}

/// [`wait_for_leader`] ignoring node `skip` (a frozen one).
pub fn wait_for_leader_among(nodes: &[WireNode], skip: Option<u64>, timeout: Duration) -> u64 {
    let running: Vec<&WireNode> = nodes
        .iter()
        .filter(|n| n.is_running() && Some(n.id) != skip)
        .collect();
    wait_for(
        "one running leader all running nodes agree on",
        timeout,
        || {
            let mut leaders = Vec::new();
            for node in &running {
                let status = cluster_status(&node.addr)?;
                leaders.push(status["leader_id"].as_u64().unwrap_or(0));
            }
            match leaders.first() {
                Some(&leader)
                    if running.iter().any(|n| n.id == leader)
                        && leaders.iter().all(|l| *l == leader) =>
                {
                    Ok(leader)
                }
                _ => Err(format!("leaders seen: {leaders:?}")),
            }
        },
    )
}

/// How long a new leader may take to hear from every node.
pub const HEARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits until `leader` has heard from every other node lately: it places pipelines only on
/// the nodes it counts live, and right after an election it has heard from none.
pub fn wait_until_heard(nodes: &[WireNode], leader: u64) {
    let at = &nodes.iter().find(|n| n.id == leader).expect("leader").addr;
    wait_for("the leader to hear every node", HEARD_TIMEOUT, || {
        let status = wirectl_json(at, &["cluster", "status"]);
        let members = status["members"].as_array().cloned().unwrap_or_default();
        let heard = |m: &serde_json::Value| {
            m["id"].as_u64() == Some(leader)
                || m["last_contact_ms"]
                    .as_i64()
                    .is_some_and(|ms| (0..1000).contains(&ms))
        };
        match members.len() == nodes.len() && members.iter().all(heard) {
            true => Ok(()),
            false => Err(status.to_string()),
        }
    });
}

/// `wire certs init --dir DIR`, which must succeed; the directory.
pub fn dev_certs(dir: &Path) -> PathBuf {
    let out = Command::new(crate::wire_bin())
        .args(["certs", "init", "--dir"])
        .arg(dir)
        .output()
        .expect("wire runs");
    assert!(out.status.success(), "{out:?}");
    dir.to_path_buf()
}
