//! Puts the git commit into `wire --version`: `WIRE_COMMIT` is the short hash, with `-dirty`
//! when tracked files had uncommitted changes, or `unknown` outside a git checkout (or without
//! git). It never fails the build.
//!
//! It also generates the gRPC code for `proto/wire/{admin,raft}/v1/*.proto` (tonic + prost,
//! with the vendored `protoc`, so no system protoc is needed) and the encoded file descriptor
//! set that server reflection serves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    commit_env();
    if let Err(err) = protos() {
        panic!("generating gRPC code from control/proto: {err}");
    }
}

fn protos() -> std::io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    // The build script is single-threaded here; tonic-prost-build reads PROTOC.
    std::env::set_var("PROTOC", protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(std::io::Error::other)?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("wire_descriptor.bin"))
        // `wirectl -o json` prints the answers as they are: field names are the proto's.
        .type_attribute(".wire.admin.v1", "#[derive(serde::Serialize)]")
        .compile_protos(
            &[
                "proto/wire/admin/v1/admin.proto",
                "proto/wire/raft/v1/raft.proto",
            ],
            &["proto"],
        )
}

fn commit_env() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let version = match commit {
        Some(commit) if dirty => format!("{commit}-dirty"),
        Some(commit) => commit,
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=WIRE_COMMIT={version}");
    // Run again when HEAD moves, the index changes, or a source of the binary changes
    // (a path that does not exist would make cargo run this script on every build).
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    let git_files = ["HEAD", "index"]
        .into_iter()
        .chain(head_ref.as_deref())
        .filter_map(|name| git(&["rev-parse", "--git-path", name]));
    let sources = [
        "src",
        "../core/src",
        "../storage/src",
        "../net/src",
        "../actors/src",
        "../Cargo.lock",
    ]
    .map(String::from);
    for path in git_files.chain(sources) {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
