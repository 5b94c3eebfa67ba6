//! Authentication and authorization of the AdminService on a `wire start` node with TLS (from
//! `wire certs init`): the founding admin token, tokens made with `wirectl token create`, the
//! authorization matrix, and the audit log. Real processes, real handshakes on 127.0.0.1.
//! Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use wire_control::proto::admin::admin_service_client::AdminServiceClient;
use wire_control::proto::admin::{
    AddNodeRequest, ClusterStatusRequest, CompactRequest, CreateBackupRequest,
    CreatePipelineRequest, CreateSavepointRequest, CreateTokenRequest, ListPipelinesRequest,
    ListTokensRequest, PipelineRef, RemoveNodeRequest, RevokeTokenRequest, ScalePipelineRequest,
};
use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
use wire_net::ingest::{
    encode, ClientOptions, ClientTls, ErrorCode, Frame, FrameBuffer, Hello, IngestClient,
};
use wire_net::ClientError;
use wire_tests::cluster::{free_port, start_cluster_with, wait_for, WireNode};
use wire_tests::wire_bin;

const A: &str = "admin";
const O: &str = "operator";
const V: &str = "viewer";
const P: &str = "producer";
const ROLES: [&str; 4] = [A, O, V, P];

/// The authorization matrix: every AdminService RPC, the roles that may call it, and what an
/// allowed call answers (each call is made harmless: it names nothing that exists, or asks
/// for something invalid, so it fails after the check, or only reads).
const MATRIX: &[(&str, &[&str], Code)] = &[
    ("ClusterStatus", &[A, O, V], Code::Ok),
    ("AddNode", &[A], Code::InvalidArgument),
    ("RemoveNode", &[A], Code::NotFound),
    ("CreatePipeline", &[A, O], Code::InvalidArgument),
    ("ListPipelines", &[A, O, V], Code::Ok),
    ("GetPipeline", &[A, O, V], Code::NotFound),
    ("PausePipeline", &[A, O], Code::NotFound),
    ("ResumePipeline", &[A, O], Code::NotFound),
    ("StopPipeline", &[A, O], Code::NotFound),
    ("DeletePipeline", &[A, O], Code::NotFound),
    ("ScalePipeline", &[A, O], Code::NotFound),
    ("TriggerCheckpoint", &[A, O], Code::NotFound),
    ("ListCheckpoints", &[A, O, V], Code::NotFound),
    ("CreateSavepoint", &[A, O], Code::InvalidArgument),
    ("CreateBackup", &[A], Code::Ok),
    ("Compact", &[A], Code::Ok),
    ("CreateToken", &[A], Code::InvalidArgument),
    ("ListTokens", &[A], Code::Ok),
    ("RevokeToken", &[A], Code::NotFound),
];

/// How long an election and the founding token may take on a busy machine.
const FOUNDING: Duration = Duration::from_secs(30);

/// `wire certs init --dir DIR`, which must succeed.
fn certs(dir: &Path) -> PathBuf {
    let out = std::process::Command::new(wire_bin())
        .args(["certs", "init", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.to_path_buf()
}

/// `wire start` flags for TLS (client certificates optional: token holders need none).
fn node_flags(certs: &Path) -> Vec<String> {
    let file = |name: &str| certs.join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        file("node.pem"),
        "--tls-key".into(),
        file("node-key.pem"),
        "--tls-client-ca".into(),
        file("ca.pem"),
    ]
}

/// `wirectl --ca CA ARGS` with `WIRE_TOKEN=token` (no client certificate).
fn ctl(node: &WireNode, certs: &Path, token: &str, args: &[&str]) -> Output {
    let ca = certs.join("ca.pem").display().to_string();
    let mut all = vec!["--ca", &ca];
    all.extend_from_slice(args);
    std::process::Command::new(wire_tests::cluster::wirectl_bin())
        .args(["--endpoint", &node.addr])
        .args(&all)
        .env("WIRE_TOKEN", token)
        .env_remove("WIRE_ENDPOINT")
        .output()
        .unwrap()
}

fn ctl_json(node: &WireNode, certs: &Path, token: &str, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = ctl(node, certs, token, &all);
    assert!(out.status.success(), "wirectl {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A founded one-node TLS cluster, and the founding admin token once it is written. Its rate
/// limits are off: the matrix makes hundreds of failed authentications from one address in a
/// second, which the limits would slow (they have tests of their own below).
fn founded(dir: &Path) -> (Vec<WireNode>, PathBuf, String) {
    let certs = certs(&dir.join("certs"));
    let mut flags = node_flags(&certs);
    flags.extend(["--admin-rate-limit".to_string(), "0".to_string()]);
    let nodes = start_cluster_with(dir, 1, &flags);
    let file = nodes[0].data_dir.join("admin-token");
    let token = wait_for("the founding admin token", FOUNDING, || {
        std::fs::read_to_string(&file).map_err(|err| err.to_string())
    });
    (nodes, certs, token.trim().to_string())
}

/// `token create` as `admin`: the token (stdout, once) and its id.
fn create_token(
    node: &WireNode,
    certs: &Path,
    admin: &str,
    role: &str,
    expires: &str,
) -> (String, String) {
    let out = ctl(
        node,
        certs,
        admin,
        &["token", "create", "--role", role, "--expires", expires],
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let id = token.split('_').nth(1).unwrap().to_string();
    (token, id)
}

async fn client(node: &WireNode, certs: &Path) -> AdminServiceClient<Channel> {
    let tls = wire_control::tls::client_config(&certs.join("ca.pem"), None)
        .unwrap()
        .domain_name("127.0.0.1");
    let channel = Endpoint::from_shared(format!("https://{}", node.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .unwrap();
    AdminServiceClient::new(channel)
}

/// Calls `rpc` with `authorization: <header>` (none when `None`); the answer's code.
async fn call(client: &mut AdminServiceClient<Channel>, rpc: &str, header: Option<&str>) -> Code {
    fn req<T>(message: T, header: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(header) = header {
            request
                .metadata_mut()
                .insert("authorization", header.parse().unwrap());
        }
        request
    }
    let none = || PipelineRef {
        name: "no-such-pipeline".into(),
    };
    let c = client;
    let h = header;
    let answer: Result<(), Status> = match rpc {
        "ClusterStatus" => c
            .cluster_status(req(ClusterStatusRequest {}, h))
            .await
            .map(drop),
        "AddNode" => {
            let bad = AddNodeRequest {
                id: 9,
                address: "no port".into(),
            };
            c.add_node(req(bad, h)).await.map(drop)
        }
        "RemoveNode" => c
            .remove_node(req(RemoveNodeRequest { id: 99 }, h))
            .await
            .map(drop),
        "CreatePipeline" => {
            let bad = CreatePipelineRequest {
                file: "bad.yaml".into(),
                spec: "not: a pipeline".into(),
                options: None,
            };
            c.create_pipeline(req(bad, h)).await.map(drop)
        }
        "ListPipelines" => c
            .list_pipelines(req(ListPipelinesRequest {}, h))
            .await
            .map(drop),
        "GetPipeline" => c.get_pipeline(req(none(), h)).await.map(drop),
        "PausePipeline" => c.pause_pipeline(req(none(), h)).await.map(drop),
        "ResumePipeline" => c.resume_pipeline(req(none(), h)).await.map(drop),
        "StopPipeline" => c.stop_pipeline(req(none(), h)).await.map(drop),
        "DeletePipeline" => c.delete_pipeline(req(none(), h)).await.map(drop),
        "ScalePipeline" => {
            let scale = ScalePipelineRequest {
                name: "no-such-pipeline".into(),
                cores: 1,
            };
            c.scale_pipeline(req(scale, h)).await.map(drop)
        }
        "TriggerCheckpoint" => c.trigger_checkpoint(req(none(), h)).await.map(drop),
        "ListCheckpoints" => c.list_checkpoints(req(none(), h)).await.map(drop),
        "CreateSavepoint" => {
            let relative = CreateSavepointRequest {
                name: "no-such-pipeline".into(),
                dir: "rel".into(),
            };
            c.create_savepoint(req(relative, h)).await.map(drop)
        }
        "CreateBackup" => c
            .create_backup(req(CreateBackupRequest {}, h))
            .await
            .map(drop),
        "Compact" => c.compact(req(CompactRequest {}, h)).await.map(drop),
        "CreateToken" => {
            let bad = CreateTokenRequest {
                role: "nobody".into(),
                ..CreateTokenRequest::default()
            };
            c.create_token(req(bad, h)).await.map(drop)
        }
        "ListTokens" => c.list_tokens(req(ListTokensRequest {}, h)).await.map(drop),
        "RevokeToken" => {
            let unknown = RevokeTokenRequest {
                id: "0000000000000000".into(),
            };
            c.revoke_token(req(unknown, h)).await.map(drop)
        }
        other => panic!("no call for {other}"),
    };
    answer.map_or_else(|status| status.code(), |()| Code::Ok)
}

/// Every RPC × every role × {valid, expired, revoked, forged, missing, malformed token}: a
/// valid token of a role in the RPC's row passes the check (and gets the call's own answer), of
/// any other role PERMISSION_DENIED; every other credential UNAUTHENTICATED. The table must
/// name every RPC the node's own table does. The audit log records allowed and refused calls
/// with who, what and the outcome, and no token secret.
#[test]
fn the_authorization_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, certs, admin) = founded(dir.path());
    let node = &nodes[0];
    let mut served: Vec<&str> = wire_control::auth::RPC_ROLES
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut tested: Vec<&str> = MATRIX.iter().map(|(n, _, _)| *n).collect();
    served.sort_unstable();
    tested.sort_unstable();
    assert_eq!(served, tested, "the matrix must cover every RPC");

    let mut kinds: Vec<(String, &str, String)> = Vec::new(); // (credential, role, header)
    let mut secrets = vec![admin.clone()];
    let mut expiring = Vec::new();
    let mut valid_ids = Vec::new();
    for role in ROLES {
        let (valid, valid_id) = create_token(node, &certs, &admin, role, "1h");
        valid_ids.push((role, valid_id));
        let (expired, id) = create_token(node, &certs, &admin, role, "1s");
        expiring.push(id);
        let (revoked, id) = create_token(node, &certs, &admin, role, "1h");
        let out = ctl(node, &certs, &admin, &["token", "revoke", &id]);
        assert!(out.status.success(), "{out:?}");
        let forged = forge(&valid);
        for (kind, token) in [
            ("valid", &valid),
            ("expired", &expired),
            ("revoked", &revoked),
            ("forged", &forged),
        ] {
            kinds.push((kind.into(), role, format!("Bearer {token}")));
        }
        kinds.push(("missing".into(), role, String::new()));
        kinds.push(("malformed".into(), role, format!("Bearer {}", &valid[..20])));
        secrets.extend([valid, expired, revoked]);
    }
    // The expiring tokens expire 1 s after creation, by the node's clock (the same as ours).
    let listed = ctl_json(node, &certs, &admin, &["token", "list"]);
    let latest_expiry = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| expiring.contains(&t["id"].as_str().unwrap().to_string()))
        .map(|t| t["expires_at_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    wait_for(
        "the short tokens to expire",
        Duration::from_secs(10),
        || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (now.as_millis() as u64 > latest_expiry)
                .then_some(())
                .ok_or_else(|| "not yet".into())
        },
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let mut cells = 0;
    runtime.block_on(async {
        let mut client = client(node, &certs).await;
        for (rpc, allowed, answer) in MATRIX {
            for (kind, role, header) in &kinds {
                let header = (!header.is_empty()).then_some(header.as_str());
                let got = call(&mut client, rpc, header).await;
                let want = match kind.as_str() {
                    "valid" if allowed.contains(role) => *answer,
                    "valid" => Code::PermissionDenied,
                    _ => Code::Unauthenticated,
                };
                cells += 1;
                if got != want {
                    failures.push(format!(
                        "{rpc} × {role} × {kind}: got {got:?}, want {want:?}"
                    ));
                }
            }
        }
    });
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cells, MATRIX.len() * ROLES.len() * 6);

    let audit = std::fs::read_to_string(node.data_dir.join("audit.log")).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let founder = admin.split('_').nth(1).unwrap();
    let admin_id = &valid_ids.iter().find(|(role, _)| *role == A).unwrap().1;
    let viewer_id = &valid_ids.iter().find(|(role, _)| *role == V).unwrap().1;
    let has = |want: &dyn Fn(&Value) -> bool| records.iter().any(want);
    assert!(has(&|r| r["who"] == format!("token:{founder}")
        && r["rpc"] == "CreateToken"
        && r["outcome"] == "Ok"));
    assert!(has(&|r| r["who"] == format!("token:{admin_id}")
        && r["rpc"] == "GetPipeline"
        && r["pipeline"] == "no-such-pipeline"
        && r["outcome"] == "NotFound"
        && r["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))));
    assert!(has(&|r| r["rpc"] == "CreateToken"
        && r["who"] == format!("token:{viewer_id}")
        && r["outcome"] == "PermissionDenied"
        && r["who"].as_str().is_some_and(|w| w.starts_with("token:"))));
    assert!(has(
        &|r| r["outcome"] == "Unauthenticated" && r["reason"] == "expired token"
    ));
    assert!(has(
        &|r| r["outcome"] == "Unauthenticated" && r["reason"] == "unknown or revoked token"
    ));
    assert!(has(&|r| r["outcome"] == "Unauthenticated"
        && r["reason"] == "no token and no client certificate"));
    assert!(records.iter().all(|r| r["ts_ms"].as_u64().is_some()));
    let log = node.log_text();
    for secret in &secrets {
        let secret_part = secret.rsplit('_').next().unwrap();
        assert!(
            !audit.contains(secret_part),
            "a token secret is in the audit log"
        );
        assert!(
            !log.contains(secret_part),
            "a token secret is in the node's log"
        );
    }
}

/// `token` with its last secret digit changed: well-formed, known id, wrong secret.
fn forge(token: &str) -> String {
    let last = if token.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &token[..token.len() - 1])
}

/// The founding node writes an admin token to `<data-dir>/admin-token` with mode 0600 and
/// logs the path, not the token. `token create` shows a token once; the metadata (a backup,
/// and every file in the data directory) holds its SHA-256 and never the secret; `token list`
/// shows ids and roles only. A client certificate carrying the admin role needs no token.
#[test]
fn tokens_are_shown_once_and_stored_hashed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (nodes, certs, admin) = founded(dir.path());
    let node = &nodes[0];
    let file = node.data_dir.join("admin-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The node logs the path right after it wrote the file.
    let path = file.display().to_string();
    wire_tests::cluster::wait_for(
        "the token's path in the log",
        Duration::from_secs(10),
        || {
            let log = node.log_text();
            log.contains(&path).then_some(()).ok_or(log)
        },
    );
    let log = node.log_text();
    assert!(!log.contains(&admin), "the founding token is in the log");

    let (viewer, id) = create_token(node, &certs, &admin, "viewer", "90d");
    let secret_hex = viewer.rsplit('_').next().unwrap().to_string();
    let listed = ctl_json(node, &certs, &admin, &["token", "list"]);
    assert!(listed.to_string().contains(&id), "{listed}");
    assert!(!listed.to_string().contains(&secret_hex), "{listed}");
    let denied = ctl(node, &certs, &viewer, &["token", "list"]);
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("permission denied"),
        "{denied:?}"
    );
    let status = ctl(node, &certs, &viewer, &["cluster", "status"]);
    assert!(status.status.success(), "{status:?}");

    let backup = dir.path().join("meta.backup");
    let out = ctl(
        node,
        &certs,
        &admin,
        &["backup", "create", "--out", &backup.display().to_string()],
    );
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&backup).unwrap();
    let (_, secret) = wire_control::auth::parse(&viewer).unwrap();
    let hash = wire_control::auth::hash_secret(&secret);
    let holds = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        holds(&bytes, &hash),
        "the backup does not hold the token's hash"
    );
    assert!(!holds(&bytes, &secret) && !holds(&bytes, secret_hex.as_bytes()));
    for entry in walk(&node.data_dir) {
        if entry.ends_with("admin-token") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !holds(&bytes, &secret) && !holds(&bytes, secret_hex.as_bytes()),
            "{entry:?}"
        );
    }

    let no_token = ctl(node, &certs, "", &["cluster", "status"]);
    assert_eq!(no_token.status.code(), Some(1), "{no_token:?}");
    assert!(
        String::from_utf8_lossy(&no_token.stderr).contains("--token"),
        "{no_token:?}"
    );
    let file = |name: &str| certs.join(name).display().to_string();
    let (cert, key) = (file("client.pem"), file("client-key.pem"));
    let with_cert = ctl(
        node,
        &certs,
        "",
        &["--cert", &cert, "--key", &key, "token", "list"],
    );
    assert!(with_cert.status.success(), "{with_cert:?}");
}

/// Connector secrets written into a pipeline's YAML (a sink's `password`, the password of a
/// connection URL) are redacted in `pipeline get`, for a viewer as for an admin, and appear
/// neither in the failure the run ends with nor in the node's log; a `${NAME}` reference
/// stays as written.
#[test]
fn connector_passwords_are_redacted_in_pipeline_get() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, certs, admin) = founded(dir.path());
    let node = &nodes[0];
    let spec = dir.path().join("secrets.yaml");
    std::fs::write(
        &spec,
        "name: secrets
sources:
  bids: {type: nexmark, stream: bid, events: 10}
sinks:
  pg:
    type: postgres
    url: postgres://wire:pg-hunter2@127.0.0.1:1/app
    table: bids
    connect_timeout_ms: 100
    from: bids
  es:
    type: elasticsearch
    url: http://127.0.0.1:1
    index: bids
    username: wire
    password: es-hunter2
    connect_timeout_ms: 100
    from: bids
  es2: {type: elasticsearch, url: 'http://127.0.0.1:1', index: b, username: w, password: '${ES_PASSWORD}', from: bids}
",
    )
    .unwrap();
    let spec = spec.display().to_string();
    ctl_json(node, &certs, &admin, &["pipeline", "create", "-f", &spec]);
    let failed = wait_for("the run fails (no servers)", FOUNDING, || {
        let got = ctl_json(node, &certs, &admin, &["pipeline", "get", "secrets"]);
        (got["state"] == "failed")
            .then_some(got.clone())
            .ok_or_else(|| got.to_string())
    });
    let (viewer, _) = create_token(node, &certs, &admin, "viewer", "1d");
    let seen = ctl_json(node, &certs, &viewer, &["pipeline", "get", "secrets"]);
    for got in [&failed, &seen] {
        let text = got.to_string();
        assert!(!text.contains("hunter2"), "a password is shown: {text}");
        let shown = got["spec"].as_str().unwrap_or_default();
        assert!(
            shown.contains("postgres://wire:<redacted>@127.0.0.1:1/app"),
            "{shown}"
        );
        assert!(shown.contains("password: <redacted>"), "{shown}");
        assert!(shown.contains("password: '${ES_PASSWORD}'"), "{shown}");
    }
    assert!(!node.log_text().contains("hunter2"), "a password is logged");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// With authentication on, a node joins with its certificate, and a token's call to the new
/// member (a follower) is forwarded to the leader under the node's identity.
#[test]
fn a_node_joins_and_forwards_under_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, certs, admin) = founded(dir.path());
    let mut joiner = WireNode::new(dir.path(), 2, &node_flags(&certs));
    joiner
        .args
        .extend(["--join".to_string(), nodes[0].addr.clone()]);
    joiner.start();
    let (operator, _) = create_token(&nodes[0], &certs, &admin, "operator", "1h");
    let spec = dir.path().join("x.yaml");
    std::fs::write(
        &spec,
        "name: x\nsources:\n  rows:\n    type: ingest\n    listen: 127.0.0.1:0\n    \
         schema: {id: i64}\nsinks:\n  out: {type: stdout, format: jsonl, from: rows}\n",
    )
    .unwrap();
    let spec = spec.display().to_string();
    wait_for(
        "a pipeline created through the new member",
        FOUNDING,
        || {
            let out = ctl(
                &joiner,
                &certs,
                &operator,
                &["pipeline", "create", "-f", &spec],
            );
            match out.status.success() {
                true => Ok(()),
                false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            }
        },
    );
    let listed = ctl_json(&nodes[0], &certs, &operator, &["pipeline", "list"]);
    assert!(listed.to_string().contains("\"x\""), "{listed}");
    let audit = std::fs::read_to_string(nodes[0].data_dir.join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"who\":\"node:127.0.0.1\"")
                && l.contains("\"rpc\":\"CreatePipeline\"")
                && l.contains("\"outcome\":\"Ok\"")),
        "{audit}"
    );
}

/// Ingest pipeline `name` on 127.0.0.1:`port` (source `rows`, one core), into a file sink.
fn ingest_pipeline(node: &WireNode, certs: &Path, admin: &str, name: &str, port: u16) {
    let dir = node.data_dir.parent().unwrap().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "name: {name}\nsources:\n  rows:\n    type: ingest\n    listen: 127.0.0.1:{port}\n    \
         schema: {{id: i64}}\nsinks:\n  out: {{type: file, path: {}, format: jsonl, from: rows}}\n",
        dir.join("out").display()
    );
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.display().to_string();
    let args = ["pipeline", "create", "-f", &file, "--cores", "1"];
    let out = ctl(node, certs, admin, &args);
    assert!(out.status.success(), "{out:?}");
}

fn rows_schema() -> Schema {
    Schema::new(vec![Field::new("id", DataType::I64)])
}

/// TLS to a node's ingest port on 127.0.0.1, trusting the CA of `certs`.
fn ingest_tls(certs: &Path) -> ClientTls {
    ClientTls {
        config: wire_net::tls::client_config(&certs.join("ca.pem"), None).unwrap(),
        server_name: wire_net::tls::server_name("127.0.0.1:0").unwrap(),
    }
}

/// A Hello (over TLS) to the ingest port `port` with `token` (`None`: protocol version 2, no
/// token); retried while the port is not listening yet.
fn produce(certs: &Path, port: u16, token: Option<&str>) -> Result<IngestClient, ClientError> {
    let addr = format!("127.0.0.1:{port}");
    let options = ClientOptions {
        token: token.map(str::to_string),
        tls: Some(ingest_tls(certs)),
        ..ClientOptions::default()
    };
    let deadline = std::time::Instant::now() + FOUNDING;
    loop {
        let connected =
            IngestClient::connect_with(addr.as_str(), "t", "rows", &rows_schema(), options.clone());
        match connected {
            Err(ClientError::Io(err)) if std::time::Instant::now() < deadline => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The server's error code for a refused Hello.
fn refused(certs: &Path, port: u16, token: Option<&str>) -> ErrorCode {
    match produce(certs, port, token) {
        Err(ClientError::Server { code, .. }) => code,
        Err(other) => panic!("expected an error frame, got {other}"),
        Ok(_) => panic!("a Hello with token {token:?} was accepted"),
    }
}

/// Sends one batch of `ids` and returns the offset its first row was appended at.
fn append(client: &mut IngestClient, ids: std::ops::Range<i64>) -> u64 {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(client.partition()));
    for id in ids {
        builder.push(&[ValueRef::I64(id)]).unwrap();
    }
    client.send(&builder.finish()).unwrap();
    let acks = client.wait_acks().unwrap();
    assert_eq!(acks.len(), 1);
    acks[0].base_offset
}

/// A Hello without a token and a Produce right behind it, in one write: the Error frame the
/// node answers (it must not append the batch).
fn hello_and_batch_at_once(certs: &Path, port: u16) -> Frame {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let tls = ingest_tls(certs);
    let conn = rustls::ClientConnection::new(tls.config, tls.server_name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let hello = Hello {
        version: 2,
        client: "raw".into(),
        source: "rows".into(),
        schema: rows_schema(),
        idempotent: false,
        producer_id: 0,
        producer_epoch: 0,
        token: String::new(),
    };
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    builder.push(&[ValueRef::I64(-1)]).unwrap();
    let mut out = Vec::new();
    encode(&Frame::<Vec<u8>>::Hello(hello), &mut out);
    let batch = builder.finish();
    encode(
        &Frame::Produce {
            seq: 1,
            batch: batch.as_bytes(),
        },
        &mut out,
    );
    std::io::Write::write_all(&mut stream, &out).unwrap();
    let mut buffer = FrameBuffer::new();
    loop {
        if let Some(frame) = buffer.next_frame().unwrap() {
            return frame;
        }
        assert!(buffer.read_from(&mut stream).unwrap() > 0, "closed early");
    }
}

/// With TLS on, an ingest Hello needs a token: none (protocol 1 or 2, or a Hello with a batch
/// right behind it), a malformed, forged or revoked one is UNAUTHENTICATED; a viewer token, or
/// a producer token scoped to another pipeline or source, PERMISSION_DENIED; nothing is
/// appended on refusal (the first accepted batch lands at offset 0). A producer token in scope
/// and an admin token are accepted, `wire-loadgen --token` works, and the audit log records
/// every Hello without the secret.
#[test]
fn ingest_needs_a_producer_token_in_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, certs, admin) = founded(dir.path());
    let node = &nodes[0];
    let (orders, other) = (free_port(), free_port());
    ingest_pipeline(node, &certs, &admin, "orders", orders);
    ingest_pipeline(node, &certs, &admin, "other", other);
    let scoped = |pipeline: &str, source: &str| {
        let mut args = vec!["token", "create", "--role", "producer", "--expires", "1h"];
        args.extend(["--pipeline", pipeline]);
        if !source.is_empty() {
            args.extend(["--source", source]);
        }
        let out = ctl(node, &certs, &admin, &args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let orders_rows = scoped("orders", "rows");
    let orders_any = scoped("orders", "");
    let other_rows = scoped("other", "rows");
    let orders_audit = scoped("orders", "audit");
    let (viewer, _) = create_token(node, &certs, &admin, V, "1h");
    let (revoked, revoked_id) = create_token(node, &certs, &admin, P, "1h");
    let out = ctl(node, &certs, &admin, &["token", "revoke", &revoked_id]);
    assert!(out.status.success(), "{out:?}");
    let listed = ctl_json(node, &certs, &admin, &["token", "list"]);
    assert!(
        listed.to_string().contains(r#""pipeline":"orders""#),
        "{listed}"
    );

    use ErrorCode::{PermissionDenied as Denied, Unauthenticated as Unauth};
    assert_eq!(refused(&certs, orders, None), Unauth);
    let v1 = ClientOptions {
        idempotent: false,
        tls: Some(ingest_tls(&certs)),
        ..ClientOptions::default()
    };
    let addr = format!("127.0.0.1:{orders}");
    let v1 = IngestClient::connect_with(addr.as_str(), "t", "rows", &rows_schema(), v1);
    assert!(matches!(v1, Err(ClientError::Server { code: Unauth, .. })));
    match hello_and_batch_at_once(&certs, orders) {
        Frame::Error(error) => assert_eq!(error.code, Unauth, "{error:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
    for bad in ["nope", &forge(&orders_rows), &revoked] {
        assert_eq!(refused(&certs, orders, Some(bad)), Unauth, "token {bad}");
    }
    for (port, token) in [
        (orders, &viewer),
        (orders, &other_rows),
        (orders, &orders_audit),
        (other, &orders_rows),
        (other, &orders_any),
    ] {
        assert_eq!(refused(&certs, port, Some(token)), Denied, "port {port}");
    }

    let mut producer = produce(&certs, orders, Some(&orders_rows)).unwrap();
    assert_eq!(
        append(&mut producer, 0..3),
        0,
        "a refused producer's batch was appended"
    );
    producer.close().unwrap();
    let mut any = produce(&certs, orders, Some(&orders_any)).unwrap();
    assert_eq!(append(&mut any, 3..5), 3);
    any.close().unwrap();
    let mut as_admin = produce(&certs, other, Some(&admin)).unwrap();
    assert_eq!(append(&mut as_admin, 0..1), 0);
    as_admin.close().unwrap();
    loadgen_with_token(&certs, orders, &orders_rows, dir.path());

    let audit = std::fs::read_to_string(node.data_dir.join("audit.log")).unwrap();
    let hellos: Vec<Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|r: &Value| r["rpc"] == "IngestHello")
        .collect();
    let outcome = |o: &str| hellos.iter().filter(|r| r["outcome"] == o).count();
    assert!(outcome("Unauthenticated") >= 6, "{hellos:?}");
    assert!(
        hellos.iter().any(|r| r["reason"] == "no token"),
        "{hellos:?}"
    );
    assert_eq!(outcome("PermissionDenied"), 5, "{hellos:?}");
    assert!(outcome("Ok") >= 4, "{hellos:?}");
    assert!(hellos.iter().all(|r| r["source"] == "rows"), "{hellos:?}");
    for token in [&orders_rows, &admin, &viewer] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(
            !audit.contains(secret),
            "a token secret is in the audit log"
        );
    }
}

/// `wire-loadgen --token` produces into the source; without it, it fails and says why.
fn loadgen_with_token(certs: &Path, port: u16, token: &str, dir: &Path) {
    let spec = dir.join("loadgen.yaml");
    let yaml = format!(
        "name: orders\nsources:\n  rows:\n    type: ingest\n    listen: 127.0.0.1:{port}\n    \
         schema: {{id: i64}}\nsinks:\n  out: {{type: file, path: out, format: jsonl, from: rows}}\n"
    );
    std::fs::write(&spec, yaml).unwrap();
    let run = |token: Option<&str>| {
        let mut command = std::process::Command::new(wire_tests::loadgen_bin());
        command
            .arg(&spec)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--events", "1000", "--connections", "1", "--json"])
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .env_remove("WIRE_TOKEN");
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command.output().unwrap()
    };
    let ok = run(Some(token));
    assert!(ok.status.success(), "{ok:?}");
    let summary: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(summary["rows_acked"], 1000, "{summary}");
    let refused = run(None);
    assert!(!refused.status.success(), "{refused:?}");
    // The summary (stdout) lists the connection's error.
    let said = String::from_utf8_lossy(&refused.stdout) + String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("requires a producer token"), "{said}");
}

/// A producer's open ingest connection stops once its token is revoked: the next batch after
/// the node's re-check (every second; the bound stated here is `RECHECK_BOUND`, which leaves
/// room for raft to apply the revocation on a busy machine) gets Error `Unauthenticated` that
/// says the token is no longer valid, and every batch acked before stays appended (the next
/// producer's first batch lands right after them).
#[test]
fn a_revoked_token_stops_its_open_ingest_connection() {
    const RECHECK_BOUND: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let (nodes, certs, admin) = founded(dir.path());
    let node = &nodes[0];
    let port = free_port();
    ingest_pipeline(node, &certs, &admin, "orders", port);
    let (token, id) = create_token(node, &certs, &admin, P, "1h");
    let mut client = produce(&certs, port, Some(&token)).unwrap();
    let mut next = 0;
    for _ in 0..5 {
        assert_eq!(append(&mut client, next..next + 2), next as u64);
        next += 2;
    }
    let out = ctl(node, &certs, &admin, &["token", "revoke", &id]);
    assert!(out.status.success(), "{out:?}");
    let revoked = std::time::Instant::now();
    let refusal = loop {
        assert!(
            revoked.elapsed() < RECHECK_BOUND,
            "the revoked token still produces after {RECHECK_BOUND:?}"
        );
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(client.partition()));
        builder.push(&[ValueRef::I64(next)]).unwrap();
        match client
            .send(&builder.finish())
            .and_then(|_| client.wait_acks())
        {
            Ok(acks) => next += acks.len() as i64,
            Err(err) => break err,
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match refusal {
        ClientError::Server { code, message, .. } => {
            assert_eq!(code, ErrorCode::Unauthenticated);
            assert!(message.contains("no longer valid"), "{message}");
        }
        other => panic!("expected an Unauthenticated error frame, got {other}"),
    }
    let mut after = produce(&certs, port, Some(&admin)).unwrap();
    assert_eq!(
        append(&mut after, 1000..1001),
        next as u64,
        "acked batches lost or a refused batch appended"
    );
    let audit = std::fs::read_to_string(node.data_dir.join("audit.log")).unwrap();
    assert!(audit.contains("\"rpc\":\"IngestRecheck\""), "{audit}");
}

/// `curl -s` over HTTPS trusting `certs`' CA, with `extra` arguments: the status code and the
/// body (a failed handshake gives code `000` and curl's exit status in the body).
fn curl(certs: &Path, url: &str, extra: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(certs.join("ca.pem"))
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs (it is on every machine of the project)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let stderr = String::from_utf8_lossy(&out.stderr);
    (code.to_string(), format!("{body}{stderr}"))
}

/// `wirectl top --once -o json --metrics ADDR` with `--ca` (when `ca`) and `WIRE_TOKEN`.
fn top(certs: &Path, addr: &str, ca: bool, token: Option<&str>) -> Output {
    let mut command = wire_tests::cluster::wirectl_top(addr);
    if ca {
        command.arg("--ca").arg(certs.join("ca.pem"));
    }
    if let Some(token) = token {
        command.env("WIRE_TOKEN", token);
    }
    command.output().unwrap()
}

/// With TLS on, `--metrics-addr` serves HTTPS only; `/metrics` and the dashboard need a
/// viewer, operator or admin token (bearer, or the password of Basic authentication) or a
/// client certificate with such a role; `/healthz` and `/readyz` stay open. Refusals are in
/// the audit log. `wirectl top` reads it with `--ca` and a viewer token, and is refused
/// (saying what to give) without.
#[test]
fn the_metrics_endpoint_is_https_and_needs_a_viewer_token() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(&dir.path().join("certs"));
    let http = format!("127.0.0.1:{}", free_port());
    let mut flags = node_flags(&certs);
    flags.extend(["--metrics-addr".to_string(), http.clone()]);
    let nodes = start_cluster_with(dir.path(), 1, &flags);
    let file = nodes[0].data_dir.join("admin-token");
    let admin = wait_for("the founding admin token", FOUNDING, || {
        std::fs::read_to_string(&file).map_err(|err| err.to_string())
    });
    let admin = admin.trim();
    let (viewer, _) = create_token(&nodes[0], &certs, admin, V, "1h");
    let (producer, producer_id) = create_token(&nodes[0], &certs, admin, P, "1h");
    let url = |path: &str| format!("https://{http}{path}");
    let bearer = |token: &str| format!("authorization: Bearer {token}");

    let (code, body) = curl(&certs, &url("/healthz"), &[]);
    assert_eq!(code, "200", "{body}");
    let (code, body) = curl(&certs, &url("/readyz"), &[]);
    assert!(code == "200" || code == "503", "{code}: {body}");

    for path in ["/metrics", "/", "/api/dashboard"] {
        let (code, body) = curl(&certs, &url(path), &[]);
        assert_eq!(code, "401", "{path}: {body}");
        assert!(body.contains("authentication required"), "{body}");
        let (code, body) = curl(&certs, &url(path), &["-H", &bearer("wire_x_y")]);
        assert_eq!(code, "401", "{path} with a malformed token: {body}");
        let (code, body) = curl(&certs, &url(path), &["-H", &bearer(&producer)]);
        assert_eq!(code, "403", "{path} as a producer: {body}");
        assert!(body.contains("role producer"), "{body}");
    }
    let (code, body) = curl(&certs, &url("/metrics"), &["-H", &bearer(&viewer)]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("wire_raft_"), "{body}");
    // What a browser sends after asking for a user name and password.
    let basic = format!("me:{viewer}");
    let (code, body) = curl(&certs, &url("/api/dashboard"), &["-u", &basic]);
    assert_eq!(code, "200", "{body}");
    // The admin client certificate carries the admin role (rustls as the client: curl's
    // OpenSSL does not read rcgen's PKCS#8 key files).
    let tls = wire_net::tls::client_config(
        &certs.join("ca.pem"),
        Some((&certs.join("client.pem"), &certs.join("client-key.pem"))),
    )
    .unwrap();
    let name = wire_net::tls::server_name(&http).unwrap();
    let conn = rustls::ClientConnection::new(tls, name).unwrap();
    let tcp = std::net::TcpStream::connect(&http).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let request = "GET /metrics HTTP/1.1\r\nhost: wire\r\nconnection: close\r\n\r\n";
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Refusals are audited: who (as far as known), what, the outcome and why.
    let audit = std::fs::read_to_string(nodes[0].data_dir.join("audit.log")).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|r: &Value| r["rpc"].as_str().unwrap().starts_with("HTTP "))
        .collect();
    let found = |rpc: &str, who: &str, outcome: &str| {
        records
            .iter()
            .any(|r| r["rpc"] == rpc && r["who"] == who && r["outcome"] == outcome)
    };
    assert!(
        found("HTTP /metrics", "anonymous", "Unauthenticated"),
        "{audit}"
    );
    assert!(
        found("HTTP /api/dashboard", "anonymous", "Unauthenticated"),
        "{audit}"
    );
    let producer_who = format!("token:{producer_id}");
    assert!(
        found("HTTP /metrics", &producer_who, "PermissionDenied"),
        "{audit}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "no token and no client certificate"),
        "{audit}"
    );
    assert!(
        !audit.contains(&producer) && !audit.contains(&viewer),
        "a secret in {audit}"
    );

    // `wirectl top` over HTTPS with a viewer token reads the node's figures.
    let out = top(&certs, &http, true, Some(&viewer));
    assert!(out.status.success(), "{out:?}");
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(view["pipelines"].is_array(), "{view}");
    // Refused without a token, as a producer, and without --ca; each says what to give.
    let said = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let out = top(&certs, &http, true, None);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("401") && said(&out).contains("--token or WIRE_TOKEN"),
        "{out:?}"
    );
    let out = top(&certs, &http, true, Some(&producer));
    assert!(!out.status.success());
    assert!(
        said(&out).contains("403") && said(&out).contains("role producer"),
        "{out:?}"
    );
    let out = top(&certs, &http, false, Some(&viewer));
    assert!(!out.status.success());
    assert!(said(&out).contains("give --ca"), "{out:?}");
    let out = top(&certs, &format!("https://{http}"), false, None);
    assert!(said(&out).contains("https needs --ca"), "{out:?}");

    // Plain HTTP gets no answer; a client that does not trust the CA fails the handshake.
    let (code, _) = curl(&certs, &format!("http://{http}/healthz"), &[]);
    assert_eq!(code, "000");
    let other = self::certs(&dir.path().join("other-certs"));
    let (code, body) = curl(&other, &url("/healthz"), &[]);
    assert_eq!(code, "000", "{body}");
    // 35: the handshake failed (OpenSSL cannot verify the node's certificate with a CA of
    // the same name and another key), 60: the certificate is not trusted.
    assert!(
        body.contains("curl: (35)") || body.contains("curl: (60)"),
        "{body}"
    );
}

/// With `--admin-rate-limit 5 --admin-rate-burst 10`, a token flooding ClusterStatus is
/// refused RESOURCE_EXHAUSTED (saying when to retry) once over its bucket, while another
/// token's calls on another connection all go through meanwhile.
#[test]
fn one_token_flooding_admin_calls_does_not_stop_another() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(&dir.path().join("certs"));
    let mut flags = node_flags(&certs);
    flags.extend(["--admin-rate-limit", "5", "--admin-rate-burst", "10"].map(String::from));
    let nodes = start_cluster_with(dir.path(), 1, &flags);
    let file = nodes[0].data_dir.join("admin-token");
    let admin = wait_for("the founding admin token", FOUNDING, || {
        std::fs::read_to_string(&file).map_err(|err| err.to_string())
    });
    let (flooder, _) = create_token(&nodes[0], &certs, admin.trim(), V, "1h");
    let (other, _) = create_token(&nodes[0], &certs, admin.trim(), V, "1h");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut flooding = client(&nodes[0], &certs).await;
        let mut calm = client(&nodes[0], &certs).await;
        let flood = format!("Bearer {flooder}");
        let calm_header = format!("Bearer {other}");
        let mut refused = 0;
        let mut message = String::new();
        for round in 0..60 {
            let mut request = Request::new(ClusterStatusRequest {});
            request
                .metadata_mut()
                .insert("authorization", flood.parse().unwrap());
            match flooding.cluster_status(request).await {
                Ok(_) => {}
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    refused += 1;
                    message = status.message().to_string();
                }
            }
            if round % 10 == 0 {
                let code = call(&mut calm, "ClusterStatus", Some(&calm_header)).await;
                assert_eq!(
                    code,
                    Code::Ok,
                    "the other token was refused in round {round}"
                );
            }
        }
        assert!(
            refused > 0,
            "60 calls at once never hit 5 a second, burst 10"
        );
        assert!(
            message.contains("this credential") && message.contains("retry in"),
            "{message}"
        );
    });
}

/// With `--admin-rate-limit 1 --admin-rate-burst 10`, an address that keeps failing to
/// authenticate (guessing tokens, reconnecting each time) is refused RESOURCE_EXHAUSTED before
/// its credentials are checked once its failures use up the burst, on gRPC and on the metrics
/// endpoint alike (429), and the refusals are audited; after a pause it is served again.
/// (One failure a second refills the bucket slower than a loaded machine makes the calls.)
#[test]
fn failed_authentications_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(&dir.path().join("certs"));
    let http = format!("127.0.0.1:{}", free_port());
    let mut flags = node_flags(&certs);
    flags.extend(["--admin-rate-limit", "1", "--admin-rate-burst", "10"].map(String::from));
    flags.extend(["--metrics-addr".to_string(), http.clone()]);
    let nodes = start_cluster_with(dir.path(), 1, &flags);
    let file = nodes[0].data_dir.join("admin-token");
    let admin = wait_for("the founding admin token", FOUNDING, || {
        std::fs::read_to_string(&file).map_err(|err| err.to_string())
    });
    let valid = format!("Bearer {}", admin.trim());
    let guess = format!("Bearer {}", forge(admin.trim()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut codes = Vec::new();
        for _ in 0..30 {
            // A new connection for every guess: the address counts, not the connection.
            let mut guesser = client(&nodes[0], &certs).await;
            codes.push(call(&mut guesser, "ClusterStatus", Some(&guess)).await);
        }
        let refused = codes
            .iter()
            .filter(|c| **c == Code::ResourceExhausted)
            .count();
        assert!(
            codes[..10].iter().all(|c| *c == Code::Unauthenticated),
            "the burst is 10: {codes:?}"
        );
        assert!(
            refused >= 10,
            "30 guesses at once never hit 1 a second: {codes:?}"
        );
        // While the address is over, a valid token from it waits too (nothing is checked).
        let mut valid_client = client(&nodes[0], &certs).await;
        let code = call(&mut valid_client, "ClusterStatus", Some(&valid)).await;
        assert_eq!(code, Code::ResourceExhausted);
    });
    // The metrics endpoint counts on the same bucket: a guess there is refused 429 once the
    // bucket is empty (each guess that gets a 401 first takes what refilled meanwhile).
    let mut answers = Vec::new();
    let (code, body) = loop {
        let (code, body) = curl(
            &certs,
            &format!("https://{http}/metrics"),
            &["-H", &format!("authorization: {guess}")],
        );
        if code != "401" || answers.len() == 10 {
            break (code, body);
        }
        answers.push(code);
    };
    assert_eq!(code, "429", "after {answers:?}: {body}");
    assert!(body.contains("too many failed authentications"), "{body}");
    let audit = std::fs::read_to_string(nodes[0].data_dir.join("audit.log")).unwrap();
    assert!(
        audit.contains(
            "\"outcome\":\"ResourceExhausted\",\"reason\":\"too many failed authentications\""
        ),
        "{audit}"
    );
    // Refilled at 1 a second: served again after a pause.
    std::thread::sleep(Duration::from_millis(2000));
    runtime.block_on(async {
        let mut client = client(&nodes[0], &certs).await;
        assert_eq!(
            call(&mut client, "ClusterStatus", Some(&valid)).await,
            Code::Ok
        );
    });
}
