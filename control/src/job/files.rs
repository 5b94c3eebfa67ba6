//! What `wire` does on the disk around a run: the removal of the sink directories a failed run
//! created and left empty (the input-file check is `wire_control::check`).

use std::path::{Path, PathBuf};

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::SinkKind;

/// The directories a run's file sinks would create, so a failed run can take them away again
/// when they stayed empty (a run that failed before its first row leaves no trace).
pub struct NewDirs {
    /// For each file sink: its directory and the topmost of its ancestors that did not exist.
    created: Vec<(PathBuf, PathBuf)>,
}

impl NewDirs {
    /// Notes, before the run, which file-sink directories (and parents) do not exist yet.
    pub fn of(plan: &Plan) -> NewDirs {
        let created = plan
            .sinks
            .iter()
            .filter_map(|sink| match &sink.kind {
                SinkKind::File(spec) => {
                    let top = first_missing(&spec.path)?;
                    Some((spec.path.clone(), top))
                }
                _ => None,
            })
            .collect();
        NewDirs { created }
    }

    /// Removes each noted directory that is empty (but for the run's sink lock file, which
    /// goes too; call this after the locks are released), and its noted parents while they
    /// are empty.
    pub fn remove_empty(&self) {
        for (dir, top) in &self.created {
            let only_lock = std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<Vec<_>, _>>()
                    .is_ok_and(|names| names == [wire_actors::SINK_LOCK_FILE])
            });
            if only_lock {
                let _ = std::fs::remove_file(dir.join(wire_actors::SINK_LOCK_FILE));
            }
            let mut at = Some(dir.as_path());
            while let Some(path) = at {
                // remove_dir refuses a directory with anything in it: that one stays.
                if std::fs::remove_dir(path).is_err() || path == top {
                    break;
                }
                at = path.parent();
            }
        }
    }
}

/// The topmost ancestor of `path` (or `path` itself) that does not exist, if any.
fn first_missing(path: &Path) -> Option<PathBuf> {
    let mut missing = None;
    for ancestor in path.ancestors() {
        if ancestor.as_os_str().is_empty() || ancestor.exists() {
            break;
        }
        missing = Some(ancestor.to_path_buf());
    }
    missing
}
