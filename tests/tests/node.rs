//! How a `wire run` node behaves as a process: what it costs when idle, which core counts it
//! accepts, and how it ends when the disk under a sink fills up. The real binary, real files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wire_tests::{is_root, wire_bin, LoopMount};

const INGEST: &str = "name: idle
sources:
  rows:
    type: ingest
    listen: 127.0.0.1:0
    schema: {id: i64}
sinks:
  out: {type: file, path: ./out, format: jsonl, from: rows}
";

/// `wire run --no-progress --data-dir DIR/data DIR/p.yaml ARGS…` with `yaml` written to `p.yaml`.
fn wire(dir: &Path, yaml: &str, args: &[&str]) -> Command {
    std::fs::write(dir.join("p.yaml"), yaml).expect("pipeline");
    let mut command = Command::new(wire_bin());
    command
        .current_dir(dir)
        .args(["run", "--no-progress"])
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("p.yaml");
    command
}

/// User plus system CPU time of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command name may hold spaces; the fields after it start at the last ')'.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}

#[test]
fn an_idle_node_parks_its_cores() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut child = wire(tmp.path(), INGEST, &["--cores", "2", "--no-pin"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wire starts");
    // Listening means every core is up; from then on nothing arrives.
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = lines.any(|l| l.is_ok_and(|l| l.contains("listening on")));
    assert!(listening, "wire never listened");
    std::thread::spawn(move || for _ in lines {});
    std::thread::sleep(Duration::from_millis(500));
    let (ticks, started) = (cpu_ticks(child.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let used = (cpu_ticks(child.id()) - ticks) as f64 / clock_ticks_per_second() as f64;
    let share = used / started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    // Timers that wake every core each millisecond kept it at 35-60% of a CPU; parked cores
    // wake only for the few coarse timers left.
    assert!(
        share < 0.15,
        "an idle node with 2 cores used {:.0}% of a CPU",
        share * 100.0
    );
}

#[test]
fn more_pinned_cores_than_cpus_are_refused_and_unpinned_ones_warned_about() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let yaml = "name: few
sources:
  bids: {type: nexmark, stream: bid, events: 1000}
sinks:
  out: {type: blackhole, from: bids}
";
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let too_many = (cpus + 1).to_string();
    let output = wire(tmp.path(), yaml, &["--cores", &too_many])
        .output()
        .expect("wire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--cores {too_many}: this process may use {cpus} CPUs"
        )) && stderr.contains("--no-pin"),
        "{stderr}"
    );
    let output = wire(tmp.path(), yaml, &["--cores", "0"])
        .output()
        .expect("wire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at least one data core"), "{stderr}");
    let output = wire(tmp.path(), yaml, &["--cores", "999", "--no-pin"])
        .output()
        .expect("wire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("128 key groups"), "{stderr}");
    let output = wire(tmp.path(), yaml, &["--cores", &too_many, "--no-pin"])
        .output()
        .expect("wire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {too_many} data cores share {cpus} CPUs")),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(not(wire_root), ignore = "needs root to mount a loop device")]
fn a_file_sink_on_a_full_disk_fails_the_run_with_one_clear_error_and_no_panic() {
    assert!(is_root(), "built as root but run as another user: rebuild");
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mount = LoopMount::new(tmp.path(), 8);
    let out = mount.point.join("out");
    let yaml = format!(
        "name: full
sources:
  bids: {{type: nexmark, stream: bid, events: 2M}}
sinks:
  out: {{type: file, path: {}, format: jsonl, from: bids}}
",
        out.display()
    );
    let output = wire(tmp.path(), &yaml, &["--cores", "2", "--no-pin"])
        .output()
        .expect("wire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("No space left on device") || stderr.contains("disk full"),
        "{stderr}"
    );
    drop(mount);
}
