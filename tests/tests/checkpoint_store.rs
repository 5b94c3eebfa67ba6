//! The checkpoint store behind a URL (`--checkpoint-store`), with real processes: an S3 store
//! on moto (an S3-compatible server, started once per test binary) and a `file://` store, each
//! SIGKILLed mid-run and restarted with exactly-once output; an S3 store that goes away and
//! comes back; bad URLs refused at start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wire_tests::moto::Moto;
use wire_tests::process::{output_within, sigkill_restarts, Watched};
use wire_tests::wire_bin;

const WINDOWED: &str = "name: windowed
sources:
  bids: {type: nexmark, stream: bid, events: 1200000, rate: 500000}
operators:
  - name: per_auction
    from: bids
    group_by: [auction]
    window: {type: tumbling, size: 10s}
    aggregate: {num: count(*), top_price: max(price)}
  - name: per_bidder
    from: bids
    group_by: [bidder]
    window: {type: hop, size: 10s, slide: 2s}
    aggregate: {num: count(*)}
sinks:
  counts: {type: file, path: ./out/counts, format: jsonl, from: per_auction}
  bidders: {type: file, path: ./out/bidders, format: jsonl, from: per_bidder}
";

fn wire(dir: &Path, checkpoints: bool) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(dir)
        .args(["run", "--no-progress", "--no-pin", "--cores", "2"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("p.yaml")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Tests read warnings (an aborted checkpoint) from stderr, whatever the caller's filter.
        .env("RUST_LOG", "warn")
        .env_remove("WIRE_LOG");
    if checkpoints {
        command.args(["--checkpoint-interval", "150ms"]);
    }
    command
}

/// A temporary directory with `reference/` and `crashed/`, each holding `yaml` as `p.yaml`.
fn dirs(yaml: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let reference = tmp.path().join("reference");
    let crashed = tmp.path().join("crashed");
    for dir in [&reference, &crashed] {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join("p.yaml"), yaml).expect("pipeline");
    }
    (tmp, reference, crashed)
}

/// The published lines of a sink directory, sorted (staged and unfinished parts ignored).
fn published_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("sink directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).expect("part file");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

fn assert_same_output(reference: &Path, crashed: &Path) {
    for sink in ["counts", "bidders"] {
        let want = published_lines(&reference.join("out").join(sink));
        let got = published_lines(&crashed.join("out").join(sink));
        assert!(!want.is_empty(), "{sink}: the reference produced nothing");
        assert_eq!(got.len(), want.len(), "{sink}: row count differs");
        assert!(got == want, "{sink}: rows differ");
    }
}

/// Waits (bounded) until `count()` exceeds `before`.
fn wait_for_more(what: &str, before: usize, within: Duration, count: impl Fn() -> usize) {
    let deadline = Instant::now() + within;
    while count() <= before {
        assert!(Instant::now() < deadline, "no new {what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the reference, then the crashed run with `store` killed `kills` times, each after a
/// new checkpoint completed (`completed()` counts them) and a seeded extra delay; between runs
/// `after_kill(crashed directory)` runs. The stderr of every run.
fn crash_with_store(
    store: &str,
    configure: impl Fn(&mut Command),
    completed: impl Fn() -> usize,
    mut after_kill: impl FnMut(&Path),
) -> (tempfile::TempDir, PathBuf, PathBuf, Vec<String>) {
    let (tmp, reference, crashed) = dirs(WINDOWED);
    let output = wire(&reference, false).output().expect("wire starts");
    assert!(output.status.success(), "{output:?}");
    let mut seed: u64 = std::env::var("WIRE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    eprintln!("WIRE_CRASH_SEED={seed}");
    let command = || {
        let mut command = wire(&crashed, true);
        command.args(["--checkpoint-store", store]);
        configure(&mut command);
        command
    };
    let delay = |_: usize| {
        let before = completed();
        wait_for_more(
            "completed checkpoint",
            before,
            Duration::from_secs(60),
            &completed,
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(seed % 300)
    };
    let (killed, stderrs) = sigkill_restarts(command, 3, delay, |_, _| after_kill(&crashed));
    eprintln!(
        "{killed} kills; last run:\n{}",
        stderrs.last().expect("a run")
    );
    (tmp, reference, crashed, stderrs)
}

#[test]
fn an_s3_store_restores_sigkilled_runs_from_the_bucket_with_exactly_once_output() {
    let moto = Moto::shared();
    let bucket = "wire-chk-crash";
    moto.create_bucket(bucket);
    let url = format!("s3://{bucket}/runs/windowed");
    let (_tmp, reference, crashed, stderrs) = crash_with_store(
        &url,
        |command| moto.env(command),
        || moto.manifests(bucket, "runs/windowed/"),
        // The local staging directory is gone after each kill, as on a new node: every
        // restore comes from the bucket.
        |crashed| {
            let _ = std::fs::remove_dir_all(crashed.join("data/windowed/checkpoints"));
        },
    );
    let restored = stderrs
        .iter()
        .filter(|s| s.contains(&format!("from {url}/chk-")))
        .count();
    assert!(
        restored >= 1,
        "no run restored from the bucket:\n{stderrs:#?}"
    );
    assert_same_output(&reference, &crashed);
    let manifests = moto.manifests(bucket, "runs/windowed/");
    assert!(
        (1..=3).contains(&manifests),
        "{manifests} complete checkpoints kept in the bucket (3 retained)"
    );
}

#[test]
fn a_file_store_url_restores_sigkilled_runs_with_exactly_once_output() {
    let store_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = store_dir.path().join("store");
    let url = format!("file://{}", store.display());
    let complete = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().join("MANIFEST").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    // Each completed checkpoint is a new directory; retention removes old ones, so count ids.
    let newest = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().join("MANIFEST").exists())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_prefix("chk-"))
                            .and_then(|n| n.parse::<usize>().ok())
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let (_tmp, reference, crashed, stderrs) =
        crash_with_store(&url, |_| {}, || newest(&store), |_| {});
    let restored = stderrs
        .iter()
        .filter(|s| s.contains(&format!("from {}/chk-", store.display())))
        .count();
    assert!(
        restored >= 1,
        "no run restored from the store:\n{stderrs:#?}"
    );
    assert_same_output(&reference, &crashed);
    assert!((1..=3).contains(&complete(&store)));
    assert!(
        !crashed.join("data/windowed/checkpoints").exists(),
        "a file store takes the place of the default directory"
    );
}

#[test]
fn an_unreachable_s3_store_aborts_checkpoints_naming_it_and_they_complete_once_it_is_back() {
    let moto = Moto::start();
    let port = moto.port;
    let bucket = "wire-chk-down";
    moto.create_bucket(bucket);
    let url = format!("s3://{bucket}/down");
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let yaml = WINDOWED.replace(
        "events: 1200000, rate: 500000",
        "events: 400000000, rate: 100000",
    );
    std::fs::write(tmp.path().join("p.yaml"), yaml).expect("pipeline");
    let mut command = wire(tmp.path(), true);
    command.args(["--checkpoint-store", &url, "--checkpoint-deltas", "0"]);
    moto.env(&mut command);
    let mut run = Watched::spawn(command);
    wait_for_more(
        "checkpoint in the bucket",
        0,
        Duration::from_secs(60),
        || moto.manifests(bucket, "down/"),
    );
    moto.kill();
    run.wait_until(
        "an aborted checkpoint naming the store",
        Duration::from_secs(90),
        |w| {
            w.stderr().lines().any(|l| {
                l.contains("checkpoint aborted") && l.contains(&format!("checkpoint store {url}"))
            })
        },
    );
    assert!(
        run.child.try_wait().expect("wait").is_none(),
        "the pipeline stopped with its store:\n{}",
        run.stderr()
    );
    // The store comes back (empty: moto keeps nothing) and checkpoints complete again.
    let moto = Moto::start_on(port);
    moto.create_bucket(bucket);
    wait_for_more(
        "checkpoint in the bucket",
        0,
        Duration::from_secs(90),
        || moto.manifests(bucket, "down/"),
    );
    let status = Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let stderr = run.finish();
    let line = stderr
        .lines()
        .find(|l| l.contains("checkpoints:"))
        .expect("the summary's checkpoint line");
    assert!(!line.contains(" 0 aborted"), "{line}");
    assert!(
        stderr.contains("first aborted checkpoint: ")
            && stderr.contains(&format!("checkpoint store {url}: ")),
        "{stderr}"
    );
}

#[test]
fn bad_store_urls_are_refused_at_start() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    std::fs::write(tmp.path().join("p.yaml"), WINDOWED).expect("pipeline");
    for (url, why) in [
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://Not_A_Bucket/x", "is not a bucket name"),
        ("gs://bucket/x", "unknown scheme `gs`"),
        ("file://relative/dir", "absolute path"),
    ] {
        let mut command = wire(tmp.path(), true);
        command.args(["--checkpoint-store", url]);
        let (code, stderr) = output_within(command, Duration::from_secs(30));
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert!(
            stderr.contains(&format!("checkpoint store `{url}`")),
            "{url}: {stderr}"
        );
        let mut command = Command::new(wire_bin());
        command
            .args(["start", "--node-id", "1", "--checkpoint-store", url])
            .arg("--data-dir")
            .arg(tmp.path().join("node"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (code, stderr) = output_within(command, Duration::from_secs(30));
        assert_eq!(code, Some(2), "wire start {url}: {stderr}");
        assert!(
            stderr.contains("checkpoint-store: ") && stderr.contains(why),
            "{stderr}"
        );
    }
    // A bucket that does not exist: refused when the run looks for a checkpoint to restore.
    let moto = Moto::shared();
    let url = "s3://wire-no-such-bucket/x";
    let mut command = wire(tmp.path(), true);
    command.args(["--checkpoint-store", url]);
    moto.env(&mut command);
    let (code, stderr) = output_within(command, Duration::from_secs(60));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("checkpoint store {url}: ")),
        "{stderr}"
    );
    assert!(!tmp.path().join("out").exists(), "{stderr}");
}
