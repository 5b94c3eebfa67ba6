//! An OpenSearch-compatible server for tests: osmem-server (PyPI `osmem-server`, a static Go
//! binary; see ../shared/notes/connectors.md §3), installed on first use into a cached
//! virtualenv and started on a free port of 127.0.0.1, with a small HTTP client to make
//! indexes and read documents back.
//!
//! osmem keeps everything in memory (about 40 KB per small document): keep corpora small.
//! A failed install fails the test: there is no silent skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cluster::free_port;
use crate::venv::{PipTool, Server};

/// The PyPI requirement that ships `osmem-server`.
const PACKAGE: &str = "osmem-server==0.1.6";

static OSMEM: PipTool = PipTool {
    name: "osmem",
    package: PACKAGE,
    what: "the test OpenSearch server",
    find: installed,
    path: OnceLock::new(),
};

fn installed(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(Result::ok)
        .map(|python| {
            python
                .path()
                .join("site-packages/osmem_server/bin/osmem-server")
        })
        .find(|bin| bin.is_file())
}

/// The `osmem-server` binary, installed first when missing (lock-guarded, bounded in time).
pub fn osmem_bin() -> PathBuf {
    OSMEM.path()
}

/// An osmem server on 127.0.0.1.
pub struct Osmem {
    /// Its port.
    pub port: u16,
    server: Server,
}

impl Osmem {
    /// The test binary's server, started on first use; it exits when the test binary does.
    pub fn shared() -> &'static Osmem {
        static SERVER: OnceLock<Osmem> = OnceLock::new();
        SERVER.get_or_init(Osmem::start)
    }

    /// A server of the caller's own, on a free port.
    pub fn start() -> Osmem {
        Osmem::start_on(free_port())
    }

    /// A server on `port` (a restart of a stopped one: it starts empty).
    pub fn start_on(port: u16) -> Osmem {
        let args = format!("-addr 127.0.0.1:{port} -no-stdin-watch");
        let server = OSMEM.start("osmem", port, &args);
        let osmem = Osmem { port, server };
        let answers = || osmem.request("GET", "/", "").is_ok();
        osmem.server.wait(Duration::from_secs(30), answers);
        osmem
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates index `name` with `mappings` (a JSON object of field properties).
    pub fn create_index(&self, name: &str, properties: &str) {
        let body = format!("{{\"mappings\":{{\"properties\":{properties}}}}}");
        let (status, text) = self
            .request("PUT", &format!("/{name}"), &body)
            .expect("osmem answers");
        assert!(status == 200, "creating index {name}: {status} {text}");
    }

    /// Every document of `index` (at most 10000), by id; none when there is no such index.
    pub fn documents(&self, index: &str) -> BTreeMap<String, serde_json::Value> {
        let (status, text) = self
            .request("POST", &format!("/{index}/_refresh"), "")
            .expect("osmem answers");
        if status == 404 {
            return BTreeMap::new();
        }
        assert!(status == 200, "refreshing {index}: {status} {text}");
        let query = r#"{"size":10000,"query":{"match_all":{}}}"#;
        let (status, text) = self
            .request("POST", &format!("/{index}/_search"), query)
            .expect("osmem answers");
        assert!(status == 200, "searching {index}: {status} {text}");
        let value: serde_json::Value = serde_json::from_str(&text).expect("a JSON search result");
        let hits = value["hits"]["hits"].as_array().expect("hits");
        hits.iter()
            .map(|hit| {
                let id = hit["_id"].as_str().expect("an id").to_string();
                (id, hit["_source"].clone())
            })
            .collect()
    }

    /// The number of documents in `index` (0 when there is no such index).
    pub fn count(&self, index: &str) -> u64 {
        let (status, text) = self
            .request("GET", &format!("/{index}/_count"), "")
            .expect("osmem answers");
        if status == 404 {
            return 0;
        }
        let value: serde_json::Value = serde_json::from_str(&text).expect("a JSON count");
        value["count"].as_u64().expect("a count")
    }

    /// One HTTP/1.0 request (so the answer is never chunked); status and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        self.server
            .http(&head, body.as_bytes(), Duration::from_secs(20))
    }
}
