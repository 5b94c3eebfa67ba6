//! An S3-compatible server for tests: moto in server mode (PyPI `moto[server]`, see
//! ../shared/notes/connectors.md §5), installed on first use into a cached virtualenv and
//! started on a free port of 127.0.0.1, with a small HTTP client to make buckets and list keys.
//!
//! The install is guarded by a lock directory, so test binaries running at once install once.
//! A failed install fails the test: there is no silent skip. moto keeps its state in memory:
//! a restarted server is empty.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PyPI requirement that ships `moto_server`.
const PACKAGE: &str = "moto[server]==5.2.6";

/// The `moto_server` script, installed first when missing (lock-guarded, bounded in time).
pub fn moto_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| MOTO.install()).clone()
}

const MOTO: crate::venv::PipTool = crate::venv::PipTool {
    name: "moto",
    package: PACKAGE,
    what: "the test S3 server",
    find: installed,
};

fn installed(venv: &Path) -> Option<PathBuf> {
    let bin = venv.join("bin/moto_server");
    bin.is_file().then_some(bin)
}

/// A moto server on 127.0.0.1.
pub struct Moto {
    /// Its port.
    pub port: u16,
    child: Child,
}

impl Moto {
    /// The test binary's server, started on first use; it exits when the test binary does.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    /// A server of the caller's own (one it may stop), on a free port.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Moto::start_on(port)
    }

    /// A server on `port` (a restart of a stopped one: it starts empty).
    pub fn start_on(port: u16) -> Moto {
        let bin = moto_bin();
        // A watchdog shell ends the server when this test process is gone.
        let script = format!(
            "\"$0\" -H 127.0.0.1 -p {port} & m=$!; while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m",
            std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let moto = Moto { port, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.request("GET", "/", b"").is_err() {
            assert!(
                Instant::now() < deadline,
                "moto does not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Points `command`'s S3 client at this server (`AWS_*` variables).
    pub fn env(&self, command: &mut Command) {
        command
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
    }

    /// Makes bucket `name`.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{name}"), b"")
            .expect("moto answers");
        assert!(status == 200, "creating bucket {name}: {status} {body}");
    }

    /// The keys of `bucket` under `prefix` (up to 1000).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let path = format!("/{bucket}?list-type=2&prefix={prefix}");
        let (status, body) = self.request("GET", &path, b"").expect("moto answers");
        assert!(status == 200, "listing {bucket}/{prefix}: {status} {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }

    /// Completed checkpoints under `prefix` of `bucket`: its keys ending in `/MANIFEST`.
    pub fn manifests(&self, bucket: &str, prefix: &str) -> usize {
        self.keys(bucket, prefix)
            .iter()
            .filter(|k| k.ends_with("/MANIFEST"))
            .count()
    }

    /// One HTTP/1.1 request (unsigned: moto does not check signatures); status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Ok((status, body))
    }

    /// Stops the server (SIGKILL, like a crash: its state is gone).
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        // The watchdog shell's child is the server: end both.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill_now();
    }
}
