//! Operating errors a user meets, checked with real processes: a data directory locked by
//! another running process, and a directory the process may not write.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use std::time::Duration;

use wire_tests::is_root;
use wire_tests::process::output_within;

fn writer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
}

#[test]
fn a_second_process_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let mut holder = writer()
        .args([path, "always", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acks = BufReader::new(holder.stdout.take().unwrap());
    let mut first_line = String::new();
    acks.read_line(&mut first_line).unwrap();
    assert!(
        first_line.starts_with("open "),
        "holder did not open the log: {first_line:?}"
    );
    // Keep reading the holder's acks: with its stdout closed it would fail its next write,
    // exit and free the lock, and the second writer would then append forever.
    let draining = std::thread::spawn(move || std::io::copy(&mut acks, &mut std::io::sink()));

    let mut second = writer();
    second
        .args([path, "always", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (code, stderr) = output_within(second, Duration::from_secs(60));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let _ = draining.join();
    assert_ne!(code, Some(0), "a second writer opened a locked log");
    let expected = format!("is locked by another process (pid {})", holder.id());
    assert!(
        stderr.contains(&expected),
        "stderr does not name the holder: {stderr}"
    );
}

#[test]
fn an_unwritable_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("p0");
    std::fs::create_dir(&log_dir).unwrap();
    // Owned by this user with mode 0555: nobody but root may create files in it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = writer();
    if is_root() {
        // Root ignores permissions; run the writer as `nobody` so the check is real.
        command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_wal-crash-child"),
        ]);
    }
    let output = command
        .args([log_dir.to_str().unwrap(), "always", "1"])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "the writer opened a log in a read-only directory"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("permission denied on") && stderr.contains("p0"),
        "stderr: {stderr}"
    );
}
