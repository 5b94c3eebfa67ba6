//! Scraping `wire --metrics-addr` and running a real Prometheus (the Debian package) against
//! it, for the metrics tests.
//!
//! [`ensure_prometheus`] installs `prometheus` (with `promtool`) with apt-get on first use,
//! once per machine (a lock file serialises concurrent test binaries); a failed install fails
//! the test, never skips it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.0 request to `addr` (so the answer is never chunked): the status code and the
/// body, or why not. `head` is extra header lines, each ending in `\r\n`.
pub fn http(addr: &str, method: &str, path: &str, head: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|err| format!("connect to {addr}: {err}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .map_err(|err| err.to_string())?;
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{head}\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("send to {addr}: {err}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|err| format!("read from {addr}: {err}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// `GET /metrics` in the classic text format (what curl and promtool read).
pub fn scrape(addr: &str) -> Result<String, String> {
    match http(addr, "GET", "/metrics", "")? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("/metrics answered {status}: {body}")),
    }
}

/// One sample of a scrape: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (`wire_rows_in_total`).
    pub name: String,
    /// Label pairs in the order given.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a text-format scrape (label values hold no `"` or `,` in these tests).
pub fn samples(text: &str) -> Vec<Sample> {
    let mut all = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
            .collect();
        all.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    all
}

/// Writes Nexmark q5 (a hop window and a top over the bids) into `dir/q5.yaml`, with its file
/// sink in `dir/out`; `bound` is the source's bound, like `events: 1000` or `rate: 20000`.
pub fn q5_file(dir: &Path, bound: &str) -> PathBuf {
    let sink = format!(
        "type: file, path: {}, format: jsonl",
        dir.join("out").display()
    );
    let yaml = crate::nexmark::q5_yaml(&format!("{bound}, seed: 1"), &sink);
    let path = dir.join("q5.yaml");
    std::fs::write(&path, yaml).expect("pipeline file");
    path
}

/// Tests that start several processes each take this lock: one at a time on small machines.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sum of `name` over the samples whose labels include every pair of `with`.
pub fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| with.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

/// Installs Debian's `prometheus` package (it brings `promtool`) unless both are on PATH;
/// once per machine, under a lock file. Panics when it cannot.
pub fn ensure_prometheus() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let script = "command -v prometheus >/dev/null && command -v promtool >/dev/null || \
             { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; }";
        let out = Command::new("flock")
            .args(["/tmp/wire-tests-prometheus.lock", "sh", "-c", script])
            .output()
            .expect("flock runs (util-linux)");
        assert!(
            out.status.success(),
            "cannot install prometheus with apt-get (the metrics tests need it): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// `promtool check metrics` on `text`: Ok, or what it said.
pub fn promtool_check(text: &str) -> Result<(), String> {
    ensure_prometheus();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("promtool: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|err| format!("promtool stdin: {err}"))?;
    }
    let out = child.wait_with_output().map_err(|err| err.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// A Prometheus server scraping one target every 200 ms, killed when dropped.
pub struct Prometheus {
    /// Its HTTP address (API and UI).
    pub addr: String,
    child: Child,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping `target` (HOST:PORT) and waits (bounded) until
    /// it is ready.
    pub fn start(dir: &Path, target: &str) -> Prometheus {
        ensure_prometheus();
        let config = dir.join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
             scrape_configs:\n  - job_name: wire\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(&config, yaml).expect("prometheus.yml");
        let addr = format!("127.0.0.1:{}", crate::cluster::free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("prometheus log"))
            .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("prometheus log"))
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus { addr, child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http(&prometheus.addr, "GET", "/-/ready", ""), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s: {}",
                prometheus.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        prometheus
    }

    /// The value of instant query `query` (a single number), or why not.
    pub fn query(&self, query: &str) -> Result<f64, String> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let path = format!("/api/v1/query?query={encoded}");
        let (status, body) = http(&self.addr, "GET", &path, "")?;
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|err| format!("{status} {body}: {err}"))?;
        let value = &json["data"]["result"][0]["value"][1];
        value
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no value for `{query}` yet: {body}"))
    }

    /// What Prometheus logged.
    pub fn log_text(&self) -> String {
        let err = self.log.with_file_name("prometheus.err");
        std::fs::read_to_string(err).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs Debian's `chromium` package unless `chromium` is on PATH; once per machine, under
/// a lock file. Panics when it cannot.
pub fn ensure_chromium() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let script = "command -v chromium >/dev/null || \
             { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }";
        let out = Command::new("flock")
            .args(["/tmp/wire-tests-chromium.lock", "sh", "-c", script])
            .output()
            .expect("flock runs (util-linux)");
        assert!(
            out.status.success(),
            "cannot install chromium with apt-get (the dashboard test needs it): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Headless Chromium on `url` with `extra` arguments (`--dump-dom`, `--screenshot=…`): its
/// stdout. It gets 3 s of page time to run the page's script and its first fetches, and at
/// most 60 s in all.
pub fn chromium(url: &str, extra: &[&str]) -> Result<String, String> {
    ensure_chromium();
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = std::env::temp_dir().join(format!("wire-chromium-{}-{run}", std::process::id()));
    let mut child = Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args(["--hide-scrollbars", "--window-size=1280,900"])
        .args(["--virtual-time-budget=3000", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run chromium: {err}"))?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() {
        return Err(format!(
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}
