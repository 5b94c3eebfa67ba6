//! A PostgreSQL server for tests: PostgreSQL 15 from Debian's `postgresql` package
//! (../shared/notes/connectors.md §4), installed with apt on first use when missing (under a
//! lock directory, so test binaries running at once install once), and started once per test
//! binary in a temp directory on a free port of 127.0.0.1 (as user `postgres` when the tests
//! run as root). A watchdog stops the server when the test process is gone.
//! A failed install fails the test: there is no silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding `initdb` and `pg_ctl`, installed first when missing.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(install).clone()
}

fn installed() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn install() -> PathBuf {
    if let Some(dir) = installed() {
        return dir;
    }
    let lock = std::env::temp_dir().join("wire-postgres-install.lock");
    let deadline = Instant::now() + Duration::from_secs(600);
    // mkdir is atomic: whoever creates the lock directory installs, the others wait.
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            Instant::now() < deadline,
            "waited 10 min for {} (remove it if no install runs)",
            lock.display()
        );
        if let Some(dir) = installed() {
            return dir;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let result = run(Command::new("sh").arg("-c").arg(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql",
    ));
    let _ = std::fs::remove_dir(&lock);
    if let Err(err) = result {
        panic!("cannot install PostgreSQL (apt-get install postgresql): {err}");
    }
    installed().expect("postgresql is installed")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Whether this process runs as root (then the server runs as `postgres`).
fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Runs the shell `script` as the server's user.
fn as_server_user(script: &str) -> Command {
    let mut command = if root() {
        let mut su = Command::new("su");
        su.args(["postgres", "-s", "/bin/sh", "-c", script]);
        su
    } else {
        let mut sh = Command::new("sh");
        sh.args(["-c", script]);
        sh
    };
    command.stdin(Stdio::null());
    command
}

/// A PostgreSQL server on 127.0.0.1 with trust authentication for user `postgres`.
pub struct Server {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    /// Stops the server once the test process is gone (it outlives a dropped `Server`).
    watchdog: Option<std::process::Child>,
}

impl Server {
    /// The test binary's server, started on first use; it stops when the test binary ends.
    pub fn shared() -> &'static Server {
        static SERVER: OnceLock<Server> = OnceLock::new();
        SERVER.get_or_init(Server::start)
    }

    /// A server of the caller's own (one it may stop and start), started now.
    pub fn start() -> Server {
        let bin = bin_dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("wire-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("server directory");
        if root() {
            run(Command::new("chown").arg("postgres").arg(&dir)).expect("chown");
        }
        let initdb = format!(
            "{}/initdb -D {}/data -U postgres --auth=trust >{}/initdb.log 2>&1",
            bin.display(),
            dir.display(),
            dir.display()
        );
        run(&mut as_server_user(&initdb)).expect("initdb");
        let mut server = Server {
            port,
            dir,
            watchdog: None,
        };
        server.resume();
        server.watchdog = Some(server.watchdog());
        server
    }

    /// Starts the (stopped) server again and waits until it takes connections.
    pub fn resume(&self) {
        let (bin, dir, port) = (bin_dir(), self.dir.display(), self.port);
        let script = format!(
            "{}/pg_ctl -D {dir}/data -l {dir}/log -w -t 60 start -o '-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200'",
            bin.display()
        );
        run(&mut as_server_user(&script)).expect("pg_ctl start");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_client().is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres does not take connections on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&self) {
        let script = format!(
            "{}/pg_ctl -D {}/data -m fast -w -t 60 stop",
            bin_dir().display(),
            self.dir.display()
        );
        run(&mut as_server_user(&script)).expect("pg_ctl stop");
    }

    /// A shell that stops the server and removes its directory once this process is gone.
    fn watchdog(&self) -> std::process::Child {
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; su postgres -s /bin/sh -c '{}/pg_ctl -D {}/data -m immediate stop' >/dev/null 2>&1 || {}/pg_ctl -D {}/data -m immediate stop >/dev/null 2>&1; rm -rf {}",
            std::process::id(),
            bin_dir().display(),
            self.dir.display(),
            bin_dir().display(),
            self.dir.display(),
            self.dir.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog starts")
    }

    /// The URL of database `postgres` (the password, unused with trust, comes from
    /// `PGPASSWORD` to show the substitution).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:${{PGPASSWORD}}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn try_client(&self) -> Result<postgres::Client, postgres::Error> {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(Duration::from_secs(5));
        config.connect(postgres::NoTls)
    }

    /// A client of database `postgres`.
    pub fn client(&self) -> postgres::Client {
        self.try_client().expect("connects to postgres")
    }

    /// Runs `sql` (statements separated by `;`).
    pub fn execute(&self, sql: &str) {
        self.client().batch_execute(sql).expect(sql);
    }

    /// The rows of `query`, every column as text (`None`: NULL).
    pub fn rows(&self, query: &str) -> Vec<Vec<Option<String>>> {
        self.try_rows(query).expect(query)
    }

    /// The rows of `query`, or the error (no such table yet, the server down).
    pub fn try_rows(&self, query: &str) -> Result<Vec<Vec<Option<String>>>, postgres::Error> {
        let messages = self.try_client()?.simple_query(query)?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the watchdog still watches (it ends only after this process).
    pub fn watched(&mut self) -> bool {
        self.watchdog
            .as_mut()
            .is_some_and(|child| child.try_wait().is_ok_and(|status| status.is_none()))
    }
}
