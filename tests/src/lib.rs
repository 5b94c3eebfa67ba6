//! Helpers shared by Wire's black-box tests and the child programs they start and kill.
//!
//! The tests in `tests/tests/` run real processes (the binaries in `src/bin/`), kill them with
//! SIGKILL and check what survived. Nothing here is used by the engine itself.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use wire_core::{Batch, BatchBuilder, BatchView, PartitionId, StreamId, ValueRef};

pub mod certs;
pub mod cluster;
pub mod kafka;
pub mod metrics;
pub mod mongo;
pub mod moto;
pub mod nexmark;
pub mod osmem;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod rows;
pub mod venv;

/// The batch a crash-test writer appends as sequence number `seq` of task `task`: `rows` rows
/// of `(task, seq, row)` plus a padding string, so a reader can tell exactly which append a
/// recovered batch came from.
pub fn crash_batch(task: u32, seq: u64, rows: u32) -> Batch {
    let mut builder = BatchBuilder::new(StreamId(1), PartitionId(0));
    let pad = "w".repeat((seq % 211) as usize);
    for row in 0..rows {
        let values = [
            ValueRef::I64(i64::from(task)),
            ValueRef::I64(seq as i64),
            ValueRef::I64(i64::from(row)),
            ValueRef::Str(&pad),
        ];
        if builder.push(&values).is_err() {
            unreachable!("crash batches are far below the batch size limit");
        }
    }
    builder.finish()
}

/// Rows per crash batch for `seq`: 1 to 64, varied so batches straddle blocks and buffers.
pub fn crash_rows(seq: u64) -> u32 {
    1 + (seq.wrapping_mul(2654435761) % 64) as u32
}

/// Which `(task, seq)` a recovered crash batch holds, if it is one `crash_batch` made intact.
pub fn crash_identity(view: &BatchView<'_>) -> Option<(u32, u64)> {
    let first = view.row(0);
    let task = u32::try_from(first.get(0)?.as_i64()?).ok()?;
    let seq = u64::try_from(first.get(1)?.as_i64()?).ok()?;
    let expected = crash_batch(task, seq, crash_rows(seq));
    let same = view
        .rows()
        .zip(expected.view().rows())
        .all(|(a, b)| a.to_values() == b.to_values());
    (same && view.row_count() == expected.row_count()).then_some((task, seq))
}

/// Whether this process runs as root (which ignores file permissions and may mount).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The repository root (the workspace), where `examples/` lives.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// The `wire` binary of this build: `cargo test --workspace` builds it next to the tests;
/// otherwise (`cargo test -p wire-tests`, or a benchmark run by `cargo bench`) it is built here, once.
pub fn wire_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| built_bin("wire")).clone()
}

/// The `wire-loadgen` binary of this build, built here when missing (see [`wire_bin`]).
pub fn loadgen_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| built_bin("wire-loadgen")).clone()
}

pub(crate) fn built_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let bin = profile_dir.join(name);
    // `cargo test -p wire-tests` does not build other packages' binaries: build it when it is
    // missing or older than the sources it is made of, so a test never runs old code. Every
    // binary of the workspace, not `-p PACKAGE`: that resolves features as the workspace test
    // build does (see tests/Cargo.toml), where `-p` would rebuild the dependencies.
    if !bin.exists() || is_older_than_sources(&bin) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .current_dir(repo_root())
            .args(["build", "--workspace", "--bins"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building {name} failed");
    }
    bin
}

/// Whether a source file of the binaries' crates changed after `bin` was built.
fn is_older_than_sources(bin: &std::path::Path) -> bool {
    fn newest(dir: &std::path::Path) -> Option<std::time::SystemTime> {
        let mut latest = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let time = if path.is_dir() {
                newest(&path)
            } else {
                entry.metadata().and_then(|m| m.modified()).ok()
            };
            latest = latest.max(time);
        }
        latest
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = repo_root();
    let sources = [
        "core/src",
        "storage/src",
        "net/src",
        "actors/src",
        "control/src",
        "control/proto",
        "loadgen/src",
    ];
    sources
        .iter()
        .filter_map(|dir| newest(&root.join(dir)))
        .any(|changed| changed > built)
}

/// The JSON lines under `dir` (see [`read_jsonl_dir`]), each as compact JSON text, sorted: two
/// runs' outputs compare equal when they hold the same rows.
pub fn sorted_json_rows(dir: &std::path::Path) -> Vec<String> {
    let mut rows: Vec<String> = read_jsonl_dir(dir).iter().map(|v| v.to_string()).collect();
    rows.sort();
    rows
}

/// The rows of JSON-lines part files in `dir`, parsed (completed parts only; hidden files
/// skipped).
pub fn read_jsonl_dir(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Hidden files (the sink's `.wire-lock`) are not output.
        if name.starts_with('.') {
            continue;
        }
        // Partitioned sinks, and each node of a spread pipeline, write into subdirectories.
        if path.is_dir() {
            rows.extend(read_jsonl_dir(&path));
            continue;
        }
        assert!(
            !name.ends_with(".inprogress"),
            "a part file was left in progress: {name}"
        );
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{}: bad JSON line {line:?}: {err}", path.display()));
            rows.push(value);
        }
    }
    rows
}

/// A small ext4 filesystem in a loop-mounted image file (needs root), unmounted on drop.
pub struct LoopMount {
    /// Where it is mounted.
    pub point: PathBuf,
}

impl LoopMount {
    /// Makes and mounts a `size_mib` MiB filesystem under `dir`.
    pub fn new(dir: &Path, size_mib: u32) -> LoopMount {
        let image = dir.join("fs.img");
        let point = dir.join("mnt");
        std::fs::create_dir_all(&point).unwrap();
        run(
            "truncate",
            &["-s", &format!("{size_mib}M"), image.to_str().unwrap()],
        );
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                point.to_str().unwrap(),
            ],
        );
        LoopMount { point }
    }
}

impl LoopMount {
    /// Like [`LoopMount::new`], but with no journal and mounted `errors=continue`, so that once
    /// [`LoopMount::fail_io`] is called the filesystem stays mounted and writable, and every
    /// read, write and sync of file data reports `EIO` (as a failing disk does).
    pub fn failable(dir: &Path, size_mib: u32) -> LoopMount {
        let image = dir.join("fs.img");
        let point = dir.join("mnt");
        std::fs::create_dir_all(&point).unwrap();
        let size = format!("{size_mib}M");
        run("truncate", &["-s", &size, image.to_str().unwrap()]);
        let image_arg = image.to_str().unwrap();
        run(
            "mkfs.ext4",
            &["-q", "-F", "-b", "4096", "-O", "^has_journal", image_arg],
        );
        let point_arg = point.to_str().unwrap();
        run(
            "mount",
            &["-o", "loop,errors=continue", image_arg, point_arg],
        );
        LoopMount { point }
    }

    /// Shrinks the loop device under the filesystem to 1 MiB: from now on every block past it
    /// (all file data) fails with `EIO`.
    pub fn fail_io(&self) {
        let image = self.point.parent().unwrap().join("fs.img");
        let listed = Command::new("losetup")
            .arg("-j")
            .arg(&image)
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        let device = listed.split(':').next().unwrap_or_default().trim();
        assert!(
            device.starts_with("/dev/loop"),
            "no loop device for {image:?}: {listed}"
        );
        run("truncate", &["-s", "1M", image.to_str().unwrap()]);
        run("losetup", &["-c", device]);
    }

    /// Unmounts, which fails while any file on the filesystem is still open: this is also the
    /// check that a closed log leaves no file descriptor behind.
    pub fn unmount(self) {
        let status = Command::new("umount").arg(&self.point).status().unwrap();
        assert!(
            status.success(),
            "umount {} failed: a closed log left a file open",
            self.point.display()
        );
        std::mem::forget(self);
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // On a failed test, detach lazily so no mount outlives it.
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

/// A seed for a randomized test: `$var` when set (to replay a failure), else taken from the
/// clock. The test prints it, so a failing run's output says how to replay it.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
