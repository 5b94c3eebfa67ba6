//! What authentication costs an admin call: `ClusterStatus` and `ListPipelines` against two
//! one-node clusters of real `wire start` processes on 127.0.0.1, one plain (loopback, no
//! TLS: authentication off) and one with TLS and a bearer token (authentication on: the token's
//! hash checked against the metadata, the role table, the rate limiter's buckets and the audit
//! line). Both nodes' limits are set high enough (`--admin-rate-limit 1000000`) that their
//! code runs but never refuses. Calls are sequential on one connection per node, in rounds that alternate
//! between the nodes so both see the same machine load; latency is per call, from the client.
//!
//! Run: `cargo bench --profile dev -p wire-bench --bench e2e_admin_auth [-- --calls N]`;
//! `-- --test` is a seconds-long smoke pass.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;
use wire_control::proto::admin::admin_service_client::AdminServiceClient;
use wire_control::proto::admin::{ClusterStatusRequest, ListPipelinesRequest};
use wire_tests::cluster::{dev_certs, start_cluster_with, wait_for, wait_for_leader, WireNode};

/// Calls per round on one node before switching to the other.
const ROUND: usize = 100;
/// How long the founding admin token may take to appear.
const FOUNDING: Duration = Duration::from_secs(60);

struct Args {
    calls: usize,
    smoke: bool,
    dir: PathBuf,
}

/// One node under test, its client and the `authorization` header (none without TLS).
struct Target {
    name: &'static str,
    client: AdminServiceClient<Channel>,
    bearer: Option<String>,
    status: Histogram<u64>,
    list: Histogram<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    println!("# Admin calls with authentication on against off: 2 one-node `wire start` clusters");
    println!(
        "command: {} -- --calls {}{}",
        wire_bench::cargo_command("e2e_admin_auth"),
        args.calls,
        if args.smoke { " --test" } else { "" }
    );
    println!("machine: {}", wire_bench::machine_description(&args.dir));
    println!("load average at start: {}", load_average());
    wire_control::tls::install_crypto_provider();
    let certs = dev_certs(&args.dir.join("certs"));
    for sub in ["plain", "tls"] {
        std::fs::create_dir_all(args.dir.join(sub))?;
    }
    // Both nodes run the limiter (a plain node limits per connection), never refusing.
    let limits: Vec<String> = [
        "--admin-rate-limit",
        "1000000",
        "--admin-rate-burst",
        "1000000",
    ]
    .map(String::from)
    .to_vec();
    let plain = start_cluster_with(&args.dir.join("plain"), 1, &limits);
    wait_for_leader(&plain, FOUNDING);
    let file = |name: &str| certs.join(name).display().to_string();
    let flags: Vec<String> = [
        "--tls-cert",
        &file("node.pem"),
        "--tls-key",
        &file("node-key.pem"),
        "--tls-client-ca",
        &file("ca.pem"),
    ]
    .map(String::from)
    .to_vec();
    let flags = [flags, limits].concat();
    let secure = start_cluster_with(&args.dir.join("tls"), 1, &flags);
    let token_file = secure[0].data_dir.join("admin-token");
    let token = wait_for("the founding admin token", FOUNDING, || {
        std::fs::read_to_string(&token_file).map_err(|err| err.to_string())
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(&args, &plain[0], &secure[0], &certs, token.trim()))?;
    println!("load average at end: {}", load_average());
    Ok(())
}

async fn measure(
    args: &Args,
    plain: &WireNode,
    secure: &WireNode,
    certs: &Path,
    token: &str,
) -> anyhow::Result<()> {
    let off = Endpoint::from_shared(format!("http://{}", plain.addr))?
        .connect()
        .await
        .context("connecting to the plain node")?;
    let tls = wire_control::tls::client_config(&certs.join("ca.pem"), None)
        .map_err(anyhow::Error::msg)?
        .domain_name("127.0.0.1");
    let on = Endpoint::from_shared(format!("https://{}", secure.addr))?
        .tls_config(tls)?
        .connect()
        .await
        .context("connecting to the TLS node")?;
    let mut targets = [
        Target::new("off (plain, no auth)", off, None)?,
        Target::new("on (TLS + token)", on, Some(format!("Bearer {token}")))?,
    ];
    // Warm both connections and the nodes' metadata reads.
    for target in &mut targets {
        for _ in 0..ROUND {
            target.call(false).await?;
            target.call(true).await?;
        }
        target.status.reset();
        target.list.reset();
    }
    let mut done = 0;
    while done < args.calls {
        for target in &mut targets {
            for _ in 0..ROUND {
                target.call(false).await?;
                target.call(true).await?;
            }
        }
        done += ROUND;
    }
    report(&targets);
    Ok(())
}

impl Target {
    fn new(name: &'static str, channel: Channel, bearer: Option<String>) -> anyhow::Result<Target> {
        Ok(Target {
            name,
            client: AdminServiceClient::new(channel),
            bearer,
            status: Histogram::new(3)?,
            list: Histogram::new(3)?,
        })
    }

    /// One `ClusterStatus` (or `ListPipelines` with `list`), timed; a failed call is an error.
    async fn call(&mut self, list: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        if list {
            let answer = self
                .client
                .list_pipelines(self.request(ListPipelinesRequest {})?);
            answer.await.context("ListPipelines")?;
            self.list.record(started.elapsed().as_micros() as u64)?;
        } else {
            let answer = self
                .client
                .cluster_status(self.request(ClusterStatusRequest {})?);
            answer.await.context("ClusterStatus")?;
            self.status.record(started.elapsed().as_micros() as u64)?;
        }
        Ok(())
    }

    fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.parse()?);
        }
        Ok(request)
    }
}

fn report(targets: &[Target]) {
    println!();
    println!("| rpc | authentication | calls | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) |");
    println!("|---|---|---|---|---|---|---|");
    for (rpc, pick) in [("ClusterStatus", false), ("ListPipelines", true)] {
        for target in targets {
            let h = if pick { &target.list } else { &target.status };
            println!(
                "| {rpc} | {} | {} | {} | {} | {} | {} |",
                target.name,
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
    }
    println!();
    for (rpc, pick) in [("ClusterStatus", false), ("ListPipelines", true)] {
        let [off, on] = [&targets[0], &targets[1]].map(|t| if pick { &t.list } else { &t.status });
        let ratio =
            |q: f64| on.value_at_quantile(q) as f64 / off.value_at_quantile(q).max(1) as f64;
        println!(
            "{rpc}: on / off p50 {:.2}, p99 {:.2}",
            ratio(0.5),
            ratio(0.99)
        );
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        calls: 5_000,
        smoke: false,
        dir: std::env::temp_dir().join(format!("wire-bench-admin-auth-{}", std::process::id())),
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--calls" => {
                let value = given.next().context("--calls needs a number")?;
                args.calls = value.parse().context("--calls")?;
            }
            "--test" => {
                args.smoke = true;
                args.calls = ROUND;
            }
            // cargo bench passes --bench; other harness flags are ignored.
            "--bench" => {}
            other if other.starts_with("--") => bail!("unknown flag {other}"),
            _ => {}
        }
    }
    Ok(args)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
