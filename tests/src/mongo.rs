//! A MongoDB-compatible server for tests: SecantusDB (PyPI `secantusdb`, a Python server on
//! WiredTiger; see ../shared/notes/connectors.md §2), installed on first use into a cached
//! virtualenv and started on a free port of 127.0.0.1 with in-memory storage, with a client
//! (the `mongodb` crate's blocking API) to write and read collections.
//!
//! A failed install fails the test: there is no silent skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document};
use mongodb::sync::{Client, Collection};

/// The PyPI requirement that ships `secantusd-py`.
const PACKAGE: &str = "secantusdb==0.7.0b3";

const SECANTUS: crate::venv::PipTool = crate::venv::PipTool {
    name: "secantus",
    package: PACKAGE,
    what: "the test MongoDB server",
    find: installed,
};

fn installed(venv: &Path) -> Option<PathBuf> {
    let bin = venv.join("bin/secantusd-py");
    bin.is_file().then_some(bin)
}

/// The `secantusd-py` launcher, installed first when missing (lock-guarded, bounded in time).
pub fn secantus_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| SECANTUS.install()).clone()
}

/// A SecantusDB server on 127.0.0.1, and a client of it.
pub struct Mongo {
    /// Its port.
    pub port: u16,
    /// A client of it.
    pub client: Client,
    child: Child,
}

impl Mongo {
    /// The test binary's server, started on first use; it exits when the test binary does.
    pub fn shared() -> &'static Mongo {
        static SERVER: OnceLock<Mongo> = OnceLock::new();
        SERVER.get_or_init(Mongo::start)
    }

    /// A server of the caller's own, on a free port, empty.
    pub fn start() -> Mongo {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let bin = secantus_bin();
        // A watchdog shell ends the server when this test process is gone.
        let script = format!(
            "\"$0\" --host 127.0.0.1 --port {port} --storage-path :memory: --log-level WARNING </dev/null & m=$!; while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m",
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
            .expect("secantusd-py starts");
        let uri = format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=1000"
        );
        let client = Client::with_uri_str(uri).expect("a client");
        let server = Mongo {
            port,
            client,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server
            .client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .run()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "secantusd-py does not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The URI a pipeline names it by.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Collection `name` of database `db`.
    pub fn collection(&self, db: &str, name: &str) -> Collection<Document> {
        self.client.database(db).collection(name)
    }

    /// Every document of `db.name` as relaxed extended JSON, by `_id` (as JSON text).
    pub fn documents(&self, db: &str, name: &str) -> BTreeMap<String, serde_json::Value> {
        let cursor = self.collection(db, name).find(doc! {}).run().expect("find");
        cursor
            .map(|doc| {
                let doc = doc.expect("a document");
                let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
                (
                    id.into_relaxed_extjson().to_string(),
                    Bson::Document(doc).into_relaxed_extjson(),
                )
            })
            .collect()
    }

    /// The number of documents in `db.name`.
    pub fn count(&self, db: &str, name: &str) -> u64 {
        self.collection(db, name)
            .count_documents(doc! {})
            .run()
            .expect("count")
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        // The watchdog shell's child is the server: end both.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
