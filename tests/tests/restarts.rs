//! What `wire run` does over what an earlier run left, with the real binary: checkpoints that
//! all fail to restore, a second process on the same file sink directory, and re-running a
//! pipeline that already finished (with and without checkpoints).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wire_tests::process::{listening_addr, output_within};
use wire_tests::{read_jsonl_dir, wire_bin};

/// A keyed count that runs about 3 s (rate-limited), so it can be frozen mid-run.
/// How long a run may take before a test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

const COUNT: &str = "name: counted
sources:
  bids: {type: nexmark, stream: bid, events: 90000, rate: 30000}
operators:
  - name: per_key
    from: bids
    group_by: {k: (auction * 31 + bidder) % 5000}
    aggregate: {num: count(*)}
sinks:
  counts: {type: file, path: ./out/counts, format: jsonl, from: per_key}
";

/// Bounded and fast: every bid of a few auctions to a file.
const BIDS: &str = "name: bids
sources:
  bids: {type: nexmark, stream: bid, events: 20000}
operators:
  - name: some
    from: bids
    filter: auction % 7 = 0
sinks:
  out: {type: file, path: ./out/bids, format: jsonl, from: some}
";

/// `wire run` of `p.yaml` in `dir` on one core, with `args`.
fn wire(dir: &Path, args: &[&str]) -> Command {
    wire_with_data(dir, &dir.join("data"), args)
}

/// [`wire`] with another data directory.
fn wire_with_data(dir: &Path, data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(dir)
        .args(["run", "--no-progress", "--no-pin", "--cores", "1"])
        .arg("--data-dir")
        .arg(data)
        .arg("p.yaml")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    output_within(wire(dir, args), RUN_LIMIT)
}

fn setup(yaml: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    std::fs::write(tmp.path().join("p.yaml"), yaml).expect("pipeline");
    tmp
}

/// The published part files of `dir`, sorted.
fn parts(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("sink directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("part-") && !n.contains(".pending-") && !n.ends_with(".inprogress")
        })
        .collect();
    names.sort();
    names
}

fn sorted_rows(dir: &Path) -> Vec<String> {
    let mut rows: Vec<String> = read_jsonl_dir(dir).iter().map(Json::to_string).collect();
    rows.sort();
    rows
}

/// A checkpoint's manifest, without its checksum line.
fn manifest(checkpoint: &Path) -> Json {
    let text = std::fs::read_to_string(checkpoint.join("MANIFEST")).expect("manifest");
    let body = text.trim_end().rsplit_once('\n').expect("crc line").0;
    serde_json::from_str(body).expect("manifest JSON")
}

/// The complete checkpoint directories in `dir`, oldest first.
fn complete(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("MANIFEST").exists());
    found.sort();
    found
}

/// The whole-state file that every complete checkpoint in `dir` reads, if they share one.
fn shared_whole_state(dir: &Path) -> Option<PathBuf> {
    let complete = complete(dir);
    let whole = |checkpoint: &Path| -> Vec<PathBuf> {
        let manifest = manifest(checkpoint);
        let mut files = Vec::new();
        for op in manifest["operators"].as_array().into_iter().flatten() {
            for file in op["files"].as_array().into_iter().flatten() {
                if file["delta"] == false {
                    let home = match file["checkpoint"].as_u64() {
                        Some(id) => dir.join(format!("chk-{id:08}")),
                        None => checkpoint.to_path_buf(),
                    };
                    files.push(home.join(file["file"].as_str().expect("file name")));
                }
            }
        }
        files
    };
    let first = whole(complete.first()?);
    let rest: Vec<Vec<PathBuf>> = complete[1..].iter().map(|c| whole(c)).collect();
    (complete.len() >= 2)
        .then(|| {
            first
                .into_iter()
                .find(|f| rest.iter().all(|r| r.contains(f)))
        })
        .flatten()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name}");
}

/// Runs COUNT with incremental checkpoints and SIGKILLs it at a moment when at least two
/// complete checkpoints exist and all of them read one whole-state file (it freezes the
/// process with SIGSTOP to look). Returns that file.
fn killed_with_a_shared_whole_state(dir: &Path) -> PathBuf {
    let checkpoints = dir.join("data/counted/checkpoints");
    let args = [
        "--checkpoint-interval",
        "100ms",
        "--checkpoints-retained",
        "2",
    ];
    let mut child = wire(dir, &args)
        .stderr(Stdio::null())
        .spawn()
        .expect("wire");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no two checkpoints shared a whole state"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended first"
        );
        if complete(&checkpoints).len() >= 2 {
            signal(&child, "STOP");
            if let Some(file) = shared_whole_state(&checkpoints) {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                return file;
            }
            signal(&child, "CONT");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn no_restorable_checkpoint_refuses_to_start_and_the_flag_starts_empty() {
    let tmp = setup(COUNT);
    let dir = tmp.path();
    let shared = killed_with_a_shared_whole_state(dir);
    let checkpoints = dir.join("data/counted/checkpoints");
    let published = parts(&dir.join("out/counts"));
    // (b) every manifest truncated, in a copy.
    let copy = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(copy.path())
        .status()
        .expect("cp");
    assert!(status.success());
    // (a) one byte flipped in the whole-state file every checkpoint reads.
    let mut data = std::fs::read(&shared).expect("state file");
    let at = data.len() / 2;
    data[at] ^= 0x01;
    std::fs::write(&shared, &data).expect("damage");
    let ids: Vec<PathBuf> = std::fs::read_dir(&checkpoints)
        .expect("checkpoints")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        })
        .collect();
    assert!(ids.len() >= 2, "{ids:?}");
    let args = ["--checkpoint-interval", "100ms"];
    let (code, stderr) = run(dir, &args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no checkpoint in"), "{stderr}");
    for path in &ids {
        let id: u64 = path
            .to_string_lossy()
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("id");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("  checkpoint {id}: ")))
            .unwrap_or_else(|| panic!("{} is not named:\n{stderr}", path.display()));
        let has_manifest = path.join("MANIFEST").exists();
        assert!(!has_manifest || line.contains("checksum"), "{line}");
    }
    for choice in ["--allow-empty-restore", "--from-savepoint", "--fresh"] {
        assert!(stderr.contains(choice), "{stderr}");
    }
    assert_eq!(
        parts(&dir.join("out/counts")),
        published,
        "the refusal changed the output"
    );
    // (b)
    let copied = copy.path().join("data/counted/checkpoints");
    for checkpoint in complete(&copied) {
        let manifest = checkpoint.join("MANIFEST");
        let len = std::fs::metadata(&manifest).expect("manifest").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&manifest)
            .expect("open");
        file.set_len(len / 2).expect("truncate");
    }
    let (code, stderr) = run(copy.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    let truncated = stderr.lines().filter(|l| l.contains("truncated")).count();
    assert_eq!(truncated, complete(&copied).len(), "{stderr}");
    assert!(stderr.contains("--allow-empty-restore"), "{stderr}");
    // (c) the flag: starts from empty state, says so, and keeps the published output.
    let (code, stderr) = run(
        dir,
        &["--checkpoint-interval", "100ms", "--allow-empty-restore"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: starting from empty state (--allow-empty-restore)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("90000 events"),
        "it did not start from the beginning:\n{stderr}"
    );
    let after = parts(&dir.join("out/counts"));
    assert!(
        published.iter().all(|p| after.contains(p)),
        "published output was deleted"
    );
}

#[test]
fn a_second_run_on_the_same_file_sink_directory_is_refused() {
    let yaml = "name: held
sources:
  rows: {type: ingest, listen: 127.0.0.1:0, schema: {id: i64}}
sinks:
  out: {type: file, path: ./out/rows, format: jsonl, from: rows}
";
    let tmp = setup(yaml);
    let dir = tmp.path();
    let mut first = wire(dir, &[]).spawn().expect("wire");
    let stderr = first.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("listening on"));
    assert!(listening, "the first run did not start");
    std::thread::spawn(move || for _ in lines {});
    // Another data directory, so the WAL's lock does not decide it: the sink's does.
    let (code, text) = output_within(wire_with_data(dir, &dir.join("data2"), &[]), RUN_LIMIT);
    signal(&first, "INT");
    let status = first.wait().expect("first run");
    assert!(status.success(), "the first run failed: {status}");
    assert_eq!(code, Some(1), "{text}");
    let expected = format!(
        "file sink directory ./out/rows is locked by another wire run (pid {})",
        first.id()
    );
    assert!(text.contains(&expected), "{text}");
    // Once the first run is gone, the directory is free.
    let mut third = wire(dir, &["--append-output"]).spawn().expect("wire");
    let stderr = third.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("listening on"));
    std::thread::spawn(move || for _ in lines {});
    signal(&third, "INT");
    let status = third.wait().expect("third run");
    assert!(listening && status.success(), "{status}");
}

#[test]
fn re_running_without_checkpoints_refuses_to_append_unless_told() {
    let tmp = setup(BIDS);
    let dir = tmp.path();
    let out = dir.join("out/bids");
    let (code, stderr) = run(dir, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let once = sorted_rows(&out);
    let first_parts = parts(&out);
    assert!(!once.is_empty());
    // Again: refused, naming the directory and the choices; nothing written.
    let (code, stderr) = run(dir, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("sink `out`: ./out/bids holds 1 part file(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--append-output") && stderr.contains("--fresh"),
        "{stderr}"
    );
    assert_eq!(parts(&out), first_parts);
    // Told to append: a second copy, next to the first.
    let (code, stderr) = run(dir, &["--append-output"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(read_jsonl_dir(&out).len(), 2 * once.len());
    // Fresh: the parts go, one copy is written.
    let (code, stderr) = run(dir, &["--fresh"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("--fresh: deleted"), "{stderr}");
    assert_eq!(sorted_rows(&out), once);
}

#[test]
fn re_running_a_finished_checkpointed_pipeline_says_so_and_fresh_starts_over() {
    let tmp = setup(BIDS);
    let dir = tmp.path();
    let out = dir.join("out/bids");
    let args = ["--checkpoint-interval", "1s"];
    let (code, stderr) = run(dir, &args);
    assert_eq!(code, Some(0), "{stderr}");
    let once = sorted_rows(&out);
    assert!(!once.is_empty());
    let (code, stderr) = run(dir, &args);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("restoring checkpoint"), "{stderr}");
    assert!(
        stderr.contains("note: the pipeline already finished at checkpoint")
            && stderr.contains("pass --fresh to start over"),
        "{stderr}"
    );
    assert_eq!(sorted_rows(&out), once, "the re-run changed the output");
    // --fresh deletes the checkpoints and the output, and runs it all again, once.
    let (code, stderr) = run(dir, &["--checkpoint-interval", "1s", "--fresh"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--fresh: deleted 2 checkpoint(s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("restoring checkpoint"), "{stderr}");
    assert!(stderr.contains("20000 events"), "{stderr}");
    assert_eq!(sorted_rows(&out), once);
}

#[test]
fn a_trimmed_ingest_wal_without_checkpoints_refuses_to_start_until_fresh() {
    let yaml = "name: walled
sources:
  rows: {type: ingest, listen: 127.0.0.1:0, segment_bytes: 1MiB, schema: {id: i64, pad: string}}
sinks:
  out: {type: file, path: ./out/rows, format: jsonl, from: rows}
";
    let tmp = setup(yaml);
    let dir = tmp.path();
    let wal = dir.join("data/walled/rows/p0");
    let first_segment = || -> u64 {
        std::fs::read_dir(&wal)
            .map(|d| {
                d.filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".wal")?
                        .parse()
                        .ok()
                })
                .min()
                .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let mut child = wire(
        dir,
        &[
            "--checkpoint-interval",
            "50ms",
            "--checkpoints-retained",
            "1",
        ],
    )
    .spawn()
    .expect("wire");
    let addr = listening_addr(&mut child, "rows");
    let schema = wire_core::Schema::new(vec![
        wire_core::Field::new("id", wire_core::DataType::I64),
        wire_core::Field::new("pad", wire_core::DataType::String),
    ]);
    let mut client =
        wire_net::ingest::IngestClient::connect(addr, "test", "rows", &schema).expect("connect");
    let pad = "x".repeat(1000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 0i64;
    // Send until a checkpoint has let the WAL drop its first segment.
    while first_segment() == 0 {
        assert!(Instant::now() < deadline, "the WAL was never trimmed");
        let mut builder =
            wire_core::BatchBuilder::new(wire_core::StreamId(0), wire_core::PartitionId(0));
        for _ in 0..500 {
            builder
                .push(&[wire_core::ValueRef::I64(id), wire_core::ValueRef::Str(&pad)])
                .expect("row");
            id += 1;
        }
        client.send(&builder.finish()).expect("send");
        client.wait_acks().expect("acks");
    }
    let _ = client.close();
    signal(&child, "INT");
    assert!(child.wait().expect("wire ends").success());
    // The checkpoints are lost; the WAL shows that state was committed.
    std::fs::remove_dir_all(dir.join("data/walled/checkpoints")).expect("remove checkpoints");
    let args = ["--checkpoint-interval", "10m"];
    let (code, stderr) = run(dir, &args);
    assert_eq!(code, Some(1), "{stderr}");
    let named = format!("source `rows`: the WAL {} starts at offset", wal.display());
    assert!(stderr.contains(&named), "{stderr}");
    // --fresh starts over from what the WAL still holds; killed before its first checkpoint,
    // the run after it starts again without a refusal.
    let mut fresh = wire(dir, &["--checkpoint-interval", "10m", "--fresh"])
        .spawn()
        .expect("wire");
    listening_addr(&mut fresh, "rows");
    fresh.kill().expect("SIGKILL");
    let _ = fresh.wait();
    let mut again = wire(dir, &args).spawn().expect("wire");
    listening_addr(&mut again, "rows");
    signal(&again, "INT");
    assert!(again.wait().expect("wire ends").success());
}
