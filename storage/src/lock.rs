//! Exclusive directory locks: a lock file held with `flock` for as long as its handle lives,
//! with the holder's pid written in it so a refusal can say who holds it.
//!
//! A process killed with SIGKILL may keep its locks for a moment after it is gone: io_uring
//! tears a dead process's ring down asynchronously, and the ring holds the process's files
//! until then. A lock whose recorded holder no longer runs is therefore waited for (at most
//! [`RELEASE_WAIT`]) before it is reported as held.

use std::fs::{File, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a lock left by a process that no longer runs is waited for.
pub const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Why a lock was not taken.
#[derive(Debug)]
#[non_exhaustive]
pub enum LockError {
    /// A running process holds it; what the lock file says about it (`pid N`), if readable.
    Held {
        /// The lock file's text.
        holder: Option<String>,
    },
    /// The lock file could not be opened, locked or written.
    Io(io::Error),
}

/// Takes the lock on `path` (created if missing), waiting while its recorded holder is a
/// process that has already ended, and writes this process's pid into it.
pub fn lock_exclusive(path: &Path) -> Result<File, LockError> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LockError::Io)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::Error(err)) => return Err(LockError::Io(err)),
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                let gone = holder.as_deref().is_some_and(holder_has_ended);
                if !gone || started.elapsed() >= RELEASE_WAIT {
                    return Err(LockError::Held { holder });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let stamp = format!("pid {}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(stamp.as_bytes()))
        .map_err(LockError::Io)?;
    Ok(file)
}

/// The lock file's text, trimmed, if readable and not empty.
fn holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Whether `pid N` names a process that no longer runs (gone, or a zombie not yet reaped).
fn holder_has_ended(holder: &str) -> bool {
    let Some(pid) = holder
        .strip_prefix("pid ")
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which ends at the last ')'.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_holder_and_a_released_one_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let first = lock_exclusive(&path).expect("first lock");
        // A second handle in this process conflicts too (flock is per open file).
        match lock_exclusive(&path) {
            Err(LockError::Held { holder }) => {
                assert_eq!(holder, Some(format!("pid {}", std::process::id())));
            }
            other => panic!("expected a held lock, got {other:?}"),
        }
        drop(first);
        lock_exclusive(&path).expect("lock after release");
    }

    #[test]
    fn a_lock_recorded_for_an_ended_process_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let held = lock_exclusive(&path).expect("lock");
        // Pretend the holder is a process that has ended: a pid above the kernel's largest
        // (no child is forked, which would hold the other test's lock until it execs).
        let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .expect("pid_max")
            .trim()
            .parse()
            .expect("a number");
        std::fs::write(&path, format!("pid {}\n", pid_max + 1)).expect("stamp");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let started = Instant::now();
        lock_exclusive(&path).expect("the lock of an ended holder is waited for");
        assert!(started.elapsed() >= Duration::from_millis(150));
        releaser.join().expect("releaser");
    }
}
