//! A MongoDB-compatible server for tests: SecantusDB (PyPI `secantusdb`, a Python server on
//! WiredTiger; see ../shared/notes/connectors.md §2), installed on first use into a cached
//! virtualenv and started on a free port of 127.0.0.1 with in-memory storage (or on disk, to be
//! killed and restarted), with a client (the `mongodb` crate's blocking API) to write and read
//! collections.
//!
//! A failed install fails the test: there is no silent skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::sync::{Client, Collection};

use crate::cluster::free_port;
use crate::venv::{PipTool, Server};

/// The PyPI requirement that ships `secantusd-py`.
const PACKAGE: &str = "secantusdb==0.7.0b3";

static SECANTUS: PipTool = PipTool {
    name: "secantus",
    package: PACKAGE,
    what: "the test MongoDB server",
    find: installed,
    path: OnceLock::new(),
};

fn installed(venv: &Path) -> Option<PathBuf> {
    let bin = venv.join("bin/secantusd-py");
    bin.is_file().then_some(bin)
}

/// The `secantusd-py` launcher, installed first when missing (lock-guarded, bounded in time).
pub fn secantus_bin() -> PathBuf {
    SECANTUS.path()
}

/// A SecantusDB server on 127.0.0.1, and a client of it.
pub struct Mongo {
    /// Its port.
    pub port: u16,
    /// A client of it.
    pub client: Client,
    /// `secantusd-py`'s arguments, to start it again after [`Mongo::kill`].
    args: String,
    /// The running server; none between [`Mongo::kill`] and [`Mongo::restart`].
    server: Mutex<Option<Server>>,
}

impl Mongo {
    /// The test binary's server, started on first use; it exits when the test binary does.
    pub fn shared() -> &'static Mongo {
        static SERVER: OnceLock<Mongo> = OnceLock::new();
        SERVER.get_or_init(Mongo::start)
    }

    /// A server of the caller's own, on a free port, empty.
    pub fn start() -> Mongo {
        Mongo::start_with(":memory:", "")
    }

    /// A server of the caller's own that keeps its data in `dir` and syncs every commit to its
    /// log, so what it acknowledged survives a [`Mongo::kill`] (as mongod's journal does).
    pub fn start_durable(dir: &Path) -> Mongo {
        Mongo::start_with(&dir.display().to_string(), "--sync-on-commit")
    }

    fn start_with(storage: &str, options: &str) -> Mongo {
        let port = free_port();
        let args = format!(
            "--host 127.0.0.1 --port {port} --storage-path '{storage}' --log-level WARNING {options}"
        );
        let uri = format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=1000"
        );
        let mongo = Mongo {
            port,
            client: Client::with_uri_str(uri).expect("a client"),
            args,
            server: Mutex::new(None),
        };
        mongo.restart();
        mongo
    }

    /// SIGKILLs the server (a crash).
    pub fn kill(&self) {
        drop(self.running().take());
    }

    /// Starts the server again (on the same port and storage) and waits until it answers.
    pub fn restart(&self) {
        assert!(self.running().is_none(), "the server is running");
        let server = SECANTUS.start("secantusd-py", self.port, &self.args);
        server.wait(Duration::from_secs(60), || self.ping());
        *self.running() = Some(server);
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<Server>> {
        self.server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ping(&self) -> bool {
        let admin = self.client.database("admin");
        admin.run_command(doc! {"ping": 1}).run().is_ok()
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
