//! A file sink's directory between runs: the lock that keeps a second process out, the part
//! files an earlier run published, and discarding them (`wire run --fresh`).
//!
//! These run on the caller's thread before the data cores start, with plain `std::fs`.

use std::fs::File;
use std::path::{Path, PathBuf};

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::SinkKind;

use crate::Error;

/// Name of the lock file in a file sink's directory (hidden, so `dir/*` globs and readers
/// that skip dot files never see it).
pub const LOCK_FILE: &str = ".wire-lock";

/// Exclusive locks on the directories of a pipeline's file sinks, held by the process that
/// writes them; dropping this releases them.
#[derive(Debug)]
pub struct SinkLocks {
    _files: Vec<File>,
}

/// The published part files an earlier run left in one file sink's directory.
#[derive(Debug, Clone)]
pub struct PublishedParts {
    /// The sink's name.
    pub sink: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Published part files in it (and in its partition subdirectories).
    pub parts: usize,
}

/// Creates each file sink's directory and takes its exclusive lock (`flock` on
/// [`LOCK_FILE`]), writing our pid into the lock file. Fails with [`Error::SinkLocked`] when
/// another process holds one: two runs writing one directory would overwrite each other's
/// part files and, with checkpoints, delete each other's unfinished ones.
pub fn lock_file_sinks(plan: &Plan) -> Result<SinkLocks, Error> {
    let mut files = Vec::new();
    let mut locked: Vec<PathBuf> = Vec::new();
    for (_, dir, _) in file_sinks(plan) {
        std::fs::create_dir_all(dir).map_err(|err| Error::io(dir, err))?;
        // Two sinks of one pipeline may share a directory: lock it once.
        let canonical = dir.canonicalize().map_err(|err| Error::io(dir, err))?;
        if locked.contains(&canonical) {
            continue;
        }
        files.push(lock_dir(dir)?);
        locked.push(canonical);
    }
    Ok(SinkLocks { _files: files })
}

/// The file sinks whose directories hold published part files, and how many each holds.
pub fn published_file_sink_parts(plan: &Plan) -> Result<Vec<PublishedParts>, Error> {
    let mut found = Vec::new();
    for (sink, dir, partitioned) in file_sinks(plan) {
        let mut parts = 0;
        visit_parts(dir, partitioned, &mut |path| {
            if is_published(path) {
                parts += 1;
            }
            Ok(())
        })?;
        if parts > 0 {
            found.push(PublishedParts {
                sink: sink.to_string(),
                dir: dir.to_path_buf(),
                parts,
            });
        }
    }
    Ok(found)
}

/// Deletes every part file of the pipeline's file sinks: published, staged for a checkpoint
/// (`.pending-<n>`) and unfinished (`.inprogress`), and partition subdirectories left empty.
/// Other files stay. Returns how many part files were deleted.
pub fn discard_file_sink_parts(plan: &Plan) -> Result<usize, Error> {
    let mut deleted = 0;
    for (_, dir, partitioned) in file_sinks(plan) {
        visit_parts(dir, partitioned, &mut |path| {
            std::fs::remove_file(path).map_err(|err| Error::io(path, err))?;
            deleted += 1;
            Ok(())
        })?;
        if partitioned && dir.exists() {
            remove_empty_subdirs(dir)?;
        }
        if dir.exists() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|err| Error::io(dir, err))?;
        }
    }
    Ok(deleted)
}

/// `(name, directory, partitioned)` of every file sink.
fn file_sinks(plan: &Plan) -> impl Iterator<Item = (&str, &Path, bool)> {
    plan.sinks.iter().filter_map(|sink| match &sink.kind {
        SinkKind::File(spec) => Some((
            sink.name.as_str(),
            spec.path.as_path(),
            sink.partition_by.is_some(),
        )),
        _ => None,
    })
}

/// Calls `each` with every part file (`part-…`) in `dir`, and in its subdirectories when
/// `partitioned`. A directory that does not exist has none.
fn visit_parts(
    dir: &Path,
    partitioned: bool,
    each: &mut dyn FnMut(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(dir, err)),
    };
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        let path = entry.path();
        if partitioned && entry.file_type().is_ok_and(|t| t.is_dir()) {
            visit_parts(&path, false, each)?;
        } else if entry.file_name().to_string_lossy().starts_with("part-") {
            each(&path)?;
        }
    }
    Ok(())
}

/// Whether a part file is published: neither unfinished nor staged for a checkpoint.
fn is_published(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    !name.ends_with(".inprogress") && !name.contains(".pending-")
}

fn remove_empty_subdirs(dir: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::io(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // Fails, and is left alone, when it holds anything but part files.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    Ok(())
}

/// Takes `dir`'s lock, as the WAL takes its directory's.
fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    wire_storage::lock::lock_exclusive(&path).map_err(|err| match err {
        wire_storage::lock::LockError::Held { holder } => Error::SinkLocked {
            path: dir.to_path_buf(),
            holder,
        },
        wire_storage::lock::LockError::Io(e) => Error::io(&path, e),
        _ => Error::io(&path, std::io::Error::other("cannot lock")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::frontend::spec::PipelineSpec;

    fn plan(dir: &Path, partitioned: bool) -> Plan {
        let by = if partitioned { ", partition_by: k" } else { "" };
        let yaml = format!(
            "sources: {{s: {{type: file, path: in.jsonl, schema: {{k: string}}}}}}
sinks: {{out: {{type: file, from: s, path: '{}'{by}}}}}",
            dir.display()
        );
        Plan::from_spec(&PipelineSpec::parse("t.yaml", &yaml).expect("spec")).expect("plan")
    }

    #[test]
    fn published_parts_are_counted_and_fresh_deletes_every_part() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let plan = plan(&out, true);
        let _locks = lock_file_sinks(&plan).expect("lock");
        // The lock is exclusive even within one process (another open file description).
        let err = lock_file_sinks(&plan).expect_err("locked twice");
        let text = err.to_string();
        assert!(text.contains(&out.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        assert!(published_file_sink_parts(&plan).expect("parts").is_empty());
        for (sub, name) in [
            ("a", "part-0-00000.jsonl"),
            ("a", "part-0-00001.jsonl.pending-3"),
            ("b", "part-1-00000.jsonl"),
            ("b", "part-1-00001.jsonl.inprogress"),
            ("b", "notes.txt"),
        ] {
            std::fs::create_dir_all(out.join(sub)).expect("dir");
            std::fs::write(out.join(sub).join(name), "{}\n").expect("file");
        }
        let found = published_file_sink_parts(&plan).expect("parts");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].sink.as_str(), found[0].parts), ("out", 2));
        assert_eq!(discard_file_sink_parts(&plan).expect("discard"), 4);
        assert!(
            !out.join("a").exists(),
            "an emptied partition directory stays"
        );
        assert!(
            out.join("b/notes.txt").exists(),
            "a file that is not a part went"
        );
        assert!(out.join(LOCK_FILE).exists());
    }
}
