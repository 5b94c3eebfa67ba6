//! An S3-compatible server for tests: moto in server mode (PyPI `moto[server]`, see
//! ../shared/notes/connectors.md §5), installed on first use into a cached virtualenv and
//! started on a free port of 127.0.0.1, with a small HTTP client to make buckets and list keys.
//!
//! The install is guarded by a lock directory, so test binaries running at once install once.
//! A failed install fails the test: there is no silent skip. moto keeps its state in memory:
//! a restarted server is empty.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cluster::free_port;
use crate::venv::{PipTool, Server};

/// The PyPI requirement that ships `moto_server`.
const PACKAGE: &str = "moto[server]==5.2.6";

/// The `moto_server` script, installed first when missing (lock-guarded, bounded in time).
pub fn moto_bin() -> PathBuf {
    MOTO.path()
}

static MOTO: PipTool = PipTool {
    name: "moto",
    package: PACKAGE,
    what: "the test S3 server",
    find: installed,
    path: OnceLock::new(),
};

fn installed(venv: &Path) -> Option<PathBuf> {
    let bin = venv.join("bin/moto_server");
    bin.is_file().then_some(bin)
}

/// A moto server on 127.0.0.1.
pub struct Moto {
    /// Its port.
    pub port: u16,
    server: Server,
}

impl Moto {
    /// The test binary's server, started on first use; it exits when the test binary does.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    /// A server of the caller's own (one it may stop), on a free port.
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// A server on `port` (a restart of a stopped one: it starts empty).
    pub fn start_on(port: u16) -> Moto {
        let server = MOTO.start("moto", port, &format!("-H 127.0.0.1 -p {port}"));
        let moto = Moto { port, server };
        let answers = || moto.request("GET", "/", b"").is_ok();
        moto.server.wait(Duration::from_secs(60), answers);
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
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        self.server.http(&head, body, Duration::from_secs(10))
    }

    /// Stops the server (SIGKILL, like a crash: its state is gone).
    pub fn kill(self) {
        drop(self);
    }
}
