//! `wire-loadgen`'s refusals of bad arguments: each names the flag or the file at fault and
//! exits 1 before it connects. (Being an integration test of the binary, this also makes
//! `cargo test --workspace` build `wire-loadgen` with the tests' features, which the
//! end-to-end tests in `wire-tests` then run as is.)

use std::process::{Command, Output};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wire-loadgen"))
        .args(args)
        .output()
        .expect("wire-loadgen runs")
}

fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is reported as sent");
    stderr
}

#[test]
fn a_duration_it_cannot_read_is_refused_naming_the_flag() {
    let stderr = refused(&loadgen(&["p.yaml", "--duration", "5parsecs"]));
    assert!(stderr.contains("--duration"), "{stderr}");
}

#[test]
fn zero_connections_are_refused() {
    let stderr = refused(&loadgen(&["p.yaml", "--connections", "0"]));
    assert!(stderr.contains("--connections"), "{stderr}");
}

#[test]
fn a_pipeline_file_that_is_missing_is_named() {
    let missing = std::env::temp_dir().join("wire-loadgen-cli-test/none.yaml");
    let stderr = refused(&loadgen(&[missing.to_str().expect("utf-8 path")]));
    assert!(stderr.contains("none.yaml"), "{stderr}");
}
