//! Driving the processes a test starts: bounded waits, stderr collected on a thread (so a
//! child never blocks on a full pipe and a test waits for what it reports, not for a while).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running `wire` whose stderr is collected line by line on a thread, so a test can wait for
/// what the run reports instead of sleeping.
pub struct Watched {
    /// The running process.
    pub child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    /// Spawns `command` (its stderr must be piped) and starts collecting its stderr.
    pub fn spawn(mut command: Command) -> Watched {
        let mut child = command.spawn().expect("wire starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines").push(line);
            }
        });
        Watched {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The stderr lines so far.
    pub fn stderr(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Waits until `done` holds (polled every 5 ms), at most `within`; panics with the stderr
    /// so far when it does not, or when the run ends first.
    pub fn wait_until(
        &mut self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Watched) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            if done(self) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The last lines may still be on their way through the reader.
                self.join();
                assert!(
                    done(self),
                    "the run ended ({status}) before {what}:\n{}",
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the run as soon as `happened` holds (polled every 2 ms, at most 30 s): true
    /// then, false when the run ended first (successfully: a failed run panics with its
    /// stderr, as does `what` not happening in time).
    pub fn kill_when(&mut self, what: &str, mut happened: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.join();
                assert!(
                    status.success(),
                    "wire failed ({status}):\n{}",
                    self.stderr()
                );
                return false;
            }
            if happened() {
                self.child.kill().expect("SIGKILL");
                let _ = self.child.wait();
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        self.join();
        panic!("{what} did not happen within 30 s:\n{}", self.stderr());
    }

    /// SIGKILLs the run as soon as `count()` (of what it wrote to `store`) is above what it is
    /// now: true then, false when the run ended first (see [`Watched::kill_when`]).
    pub fn kill_when_it_grows(&mut self, store: &str, count: impl Fn() -> u64) -> bool {
        let before = count();
        self.kill_when(&format!("{store} growing"), || count() > before)
    }

    /// Waits for a stderr line containing `text`.
    pub fn wait_for_line(&mut self, text: &str, within: Duration) {
        self.wait_until(&format!("line `{text}`"), within, |w| {
            w.stderr().contains(text)
        });
    }

    /// Waits for the stderr reader to reach the end of the stream.
    pub fn join(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// SIGKILL; the run's whole stderr.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join();
        self.stderr()
    }

    /// Waits for the run to end by itself, which must succeed; its whole stderr.
    pub fn finish(mut self) -> String {
        let status = self.child.wait().expect("wire ends");
        self.join();
        assert!(status.success(), "wire failed: {status}\n{}", self.stderr());
        self.stderr()
    }
}

/// Reads `child`'s stderr until it prints source `source`'s bound address, then keeps draining
/// it on a thread so the child never blocks on a full pipe.
pub fn listening_addr(child: &mut Child, source: &str) -> std::net::SocketAddr {
    let prefix = format!("source `{source}` listening on ");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("wire prints its address")
            .expect("utf-8");
        if let Some(rest) = line.strip_prefix(&prefix) {
            break rest.trim().parse().expect("address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// Runs `command` (stderr piped) to its end and returns its exit code and stderr; SIGKILLs it
/// and fails after `limit`: a run that should have been refused may otherwise wait for
/// producers forever.
pub fn output_within(mut command: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = command.spawn().expect("wire starts");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!("still running after {limit:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), reader.join().unwrap_or_default())
}

/// Waits at most `limit` for `child` to exit; kills it and fails the test otherwise.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `text` to `path` and runs `wire check` on it: its exit code and stderr.
pub fn check_pipeline(path: &std::path::Path, text: &str) -> (Option<i32>, String) {
    std::fs::write(path, text).expect("pipeline file");
    let mut command = Command::new(crate::wire_bin());
    command
        .arg("check")
        .arg(path)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    output_within(command, Duration::from_secs(30))
}

/// SIGKILLs `run` after `after`, or returns early if it ended by itself (true), which it must
/// have done successfully (its stderr says why not).
pub fn kill_after(run: &mut Watched, after: Duration) -> bool {
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = run.child.try_wait() {
            run.join();
            assert!(
                status.success(),
                "wire failed ({status}) before it was killed:\n{}",
                run.stderr()
            );
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    run.child.kill().expect("SIGKILL");
    let _ = run.child.wait();
    run.join();
    false
}

/// Runs `command()` up to `kills` times, each SIGKILLed after `delay(run)` (calling
/// `after_kill(run, stderr)` then), and a last time to its end, which must succeed. Returns the
/// kills made and every run's stderr, the last one's last (which gets at most 180 s).
pub fn sigkill_restarts(
    command: impl FnMut() -> Command,
    kills: usize,
    mut delay: impl FnMut(usize) -> Duration,
    after_kill: impl FnMut(usize, &str),
) -> (usize, Vec<String>) {
    sigkill_restarts_when(
        command,
        kills,
        |killed, run| !kill_after(run, delay(killed)),
        after_kill,
    )
}

/// [`sigkill_restarts`] with the moment of each kill chosen by `kill(run_index, run)`, which
/// SIGKILLs the run and returns true, or returns false when the run ended by itself
/// (successfully); `kill` must bound its wait.
pub fn sigkill_restarts_when(
    mut command: impl FnMut() -> Command,
    kills: usize,
    mut kill: impl FnMut(usize, &mut Watched) -> bool,
    mut after_kill: impl FnMut(usize, &str),
) -> (usize, Vec<String>) {
    let mut stderrs = Vec::new();
    let mut killed = 0;
    while killed < kills {
        let mut run = Watched::spawn(command());
        let was_killed = kill(killed, &mut run);
        run.join();
        stderrs.push(run.stderr());
        if !was_killed {
            return (killed, stderrs);
        }
        after_kill(killed, stderrs.last().map_or("", String::as_str));
        killed += 1;
    }
    let mut last = Watched::spawn(command());
    // Bounded: a run that hangs fails the test instead of holding CI.
    let status = wait_bounded(&mut last.child, Duration::from_secs(180));
    last.join();
    assert!(status.success(), "wire failed: {status}\n{}", last.stderr());
    stderrs.push(last.stderr());
    (killed, stderrs)
}

/// Resident memory of process `pid` in bytes (VmRSS of /proc/PID/status); `None` once it
/// has gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `command()` through `kills` SIGKILLs and then to its end, as [`sigkill_restarts_when`]
/// does, for a sink that writes to `store`, which holds `count()` items. Even kills land right
/// after a write landed (`store` grew), before the checkpoint that covers its rows completes,
/// so the restored run writes those rows again; odd ones land 700 ms into a run. Returns the
/// kills made, at least one.
pub fn sigkill_restarts_after_writes(
    command: impl FnMut() -> Command,
    kills: usize,
    store: &str,
    count: impl Fn() -> u64,
    after_kill: impl FnMut(usize, &str),
) -> usize {
    let kill = |killed: usize, run: &mut Watched| match killed % 2 {
        0 => run.kill_when_it_grows(store, &count),
        _ => !kill_after(run, Duration::from_millis(700)),
    };
    let (killed, _) = sigkill_restarts_when(command, kills, kill, after_kill);
    assert!(killed >= 1, "the run ended before the first kill");
    killed
}

/// A server outage while `run` goes on: `stop()` takes the server away, the run must then
/// report a retry of each connector in `retried` (a `retrying` line naming it, or a change
/// stream `interrupted`; at most 30 s), and `start()` brings the server back.
pub fn outage<T>(
    run: &mut Watched,
    retried: &[&str],
    stop: impl FnOnce(),
    start: impl FnOnce() -> T,
) -> T {
    stop();
    run.wait_until("a retry", Duration::from_secs(30), |run| {
        let stderr = run.stderr();
        retried.iter().all(|connector| {
            stderr.lines().any(|line| {
                line.contains(connector)
                    && (line.contains("retrying") || line.contains("interrupted"))
            })
        })
    });
    start()
}
