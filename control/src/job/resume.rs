//! How `wire run` starts over what earlier runs left: the checkpoint it restores, the refusals
//! (state was committed and none of it can be restored; output of an earlier run would get a
//! second copy), and `--fresh`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::SourceKind;
use wire_storage::checkpoint::{Checkpoint, CheckpointStore, Skipped};
use wire_storage::wal::segment::parse_segment_file_name;

use super::{CheckpointArgs, RunArgs, Say};

/// Left in the checkpoint directory by `--fresh`: the ingest WALs' trimmed starts date from
/// before it, so they do not show that state was committed. Removed once a checkpoint of the
/// new run is restored.
const FRESH_MARKER: &str = "STARTED-FRESH";

/// The checkpoint a run starts from.
pub struct Restore {
    pub checkpoint: Checkpoint,
    pub path: PathBuf,
    /// Whether it is a checkpoint of the store (not a savepoint): the next checkpoints may
    /// then build on it.
    pub from_store: bool,
}

/// The checkpoint directory of the run: `--checkpoint-dir`, or the pipeline's default.
pub fn checkpoint_dir(args: &RunArgs, plan: &Plan) -> PathBuf {
    args.checkpoint_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join(&plan.name).join("checkpoints"))
}

/// Opens the run's checkpoint store, keeping `retained` checkpoints: the checkpoint
/// directory, or an S3 store staging in it.
pub fn open_store(args: &RunArgs, plan: &Plan, retained: usize) -> Result<CheckpointStore, String> {
    let dir = checkpoint_dir(args, plan);
    match &args.checkpoint_store {
        Some(url) => CheckpointStore::open_url(url, dir, retained),
        None => CheckpointStore::open(&dir, retained),
    }
    .map_err(|e| e.to_string())
}

/// `--fresh`: deletes the pipeline's checkpoints and its file sinks' part files (not the
/// ingest WALs, which hold accepted input), and says what went.
pub fn start_fresh(args: &RunArgs, plan: &Plan, say: Say) -> Result<(), String> {
    let dir = checkpoint_dir(args, plan);
    let mut checkpoints = 0;
    let mut location = dir.display().to_string();
    if dir.exists() || args.checkpoints.is_some() || args.checkpoint_store.is_some() {
        let store = open_store(args, plan, 1)?;
        location = store.location();
        checkpoints = store.discard_all().map_err(|e| e.to_string())?;
        let marker = dir.join(FRESH_MARKER);
        let note = "The checkpoints here were deleted by `wire run --fresh`; the ingest WALs' \
                    older input was dropped before that.\n";
        std::fs::write(&marker, note).map_err(|e| format!("{}: {e}", marker.display()))?;
    }
    let parts = wire_actors::discard_file_sink_parts(plan).map_err(|e| e.to_string())?;
    say(&format!(
        "--fresh: deleted {checkpoints} checkpoint(s) in {location} and {parts} part file(s) of the file sinks; ingest WALs are kept"
    ));
    Ok(())
}

/// Picks what a checkpointed run restores: the newest intact checkpoint, else the savepoint,
/// else nothing. Refuses to start from nothing when earlier runs committed state (a
/// checkpoint completed, or an ingest WAL dropped input a checkpoint covered) unless
/// `--allow-empty-restore` says to.
pub fn choose_restore(
    args: &RunArgs,
    checkpoint_args: &CheckpointArgs,
    store: &CheckpointStore,
    plan: &Plan,
    say: Say,
) -> Result<Option<Restore>, String> {
    let latest = store.latest().map_err(|e| e.to_string())?;
    let marker = store.dir().join(FRESH_MARKER);
    match (latest.loaded, &checkpoint_args.from_savepoint) {
        (Some((checkpoint, path)), savepoint) => {
            warn_skipped(&latest.skipped, say);
            if savepoint.is_some() {
                say(&format!(
                    "note: {} holds checkpoint {}, which is newer than any savepoint: restoring it, not --from-savepoint",
                    store.location(),
                    checkpoint.id
                ));
            }
            if marker.exists() {
                let _ = std::fs::remove_file(&marker);
            }
            Ok(Some(Restore {
                checkpoint,
                path,
                from_store: true,
            }))
        }
        (None, Some(path)) => {
            warn_skipped(&latest.skipped, say);
            let checkpoint = wire_storage::checkpoint::read_dir(path)
                .map_err(|e| format!("--from-savepoint: {e}"))?;
            Ok(Some(Restore {
                checkpoint,
                path: path.clone(),
                from_store: false,
            }))
        }
        (None, None) => start_empty(args, store, plan, (&latest.skipped, say)),
    }
}

/// With nothing to restore: starts from empty state when no earlier run committed any, or
/// when `--allow-empty-restore` accepts losing it; refuses otherwise.
fn start_empty(
    args: &RunArgs,
    store: &CheckpointStore,
    plan: &Plan,
    (skipped, say): (&[Skipped], Say),
) -> Result<Option<Restore>, String> {
    let wals = if store.dir().join(FRESH_MARKER).exists() {
        Vec::new()
    } else {
        trimmed_wals(&args.data_dir, plan)
    };
    if !skipped.iter().any(|s| s.committed) && wals.is_empty() {
        warn_skipped(skipped, say);
        return Ok(None);
    }
    let what = unrestorable(&store.location(), skipped, &wals);
    if !args.allow_empty_restore {
        return Err(refusal(what));
    }
    say(&format!(
        "warning: starting from empty state (--allow-empty-restore): {what}\
         the state they held is lost: sources start again from the oldest input they still have, and the file sinks keep what they published, so rows may appear in them twice"
    ));
    Ok(None)
}

/// Refuses a run that starts from empty state into file sink directories holding published
/// part files (a second copy of the output would be appended), unless `--append-output` or
/// `--allow-empty-restore` accepts that.
pub fn refuse_earlier_output(args: &RunArgs, plan: &Plan) -> Result<(), String> {
    if args.append_output || args.allow_empty_restore {
        return Ok(());
    }
    let found = wire_actors::published_file_sink_parts(plan).map_err(|e| e.to_string())?;
    if found.is_empty() {
        return Ok(());
    }
    let mut text = String::from(
        "the output directories of file sinks already hold part files an earlier run published:\n",
    );
    for parts in &found {
        let _ = writeln!(
            text,
            "  sink `{}`: {} holds {} part file(s)",
            parts.sink,
            parts.dir.display(),
            parts.parts
        );
    }
    text.push_str(
        "this run starts from the beginning of its input (no checkpoint to resume from), so it would write its output a second time next to them; choose one:\n\
         \x20 --append-output   keep them and add this run's part files\n\
         \x20 --fresh           delete them (and the pipeline's checkpoints) first\n\
         \x20 or give the sinks other paths",
    );
    Err(text)
}

fn warn_skipped(skipped: &[Skipped], say: Say) {
    for skipped in skipped {
        say(&format!(
            "warning: skipping checkpoint {}: {}",
            skipped.path.display(),
            skipped.reason
        ));
    }
}

/// Every checkpoint and why it failed, and every WAL that shows committed state; ends in a
/// newline.
fn unrestorable(location: &str, skipped: &[Skipped], wals: &[String]) -> String {
    let mut text = format!("no checkpoint in {location} can be restored:\n");
    if skipped.is_empty() {
        text.push_str("  (the directory holds no checkpoint)\n");
    }
    for skipped in skipped {
        // The reason starts with the damaged file's (or the directory's) path.
        let _ = writeln!(text, "  checkpoint {}: {}", skipped.id, skipped.reason);
    }
    for wal in wals {
        let _ = writeln!(text, "  {wal}");
    }
    text
}

fn refusal(what: String) -> String {
    format!(
        "{what}earlier runs committed state there; starting from empty state would lose it and write again output the file sinks already published; choose one:\n\
         \x20 --from-savepoint DIR     start from a savepoint instead\n\
         \x20 --allow-empty-restore    start from empty state anyway and accept the consequences\n\
         \x20 --fresh                  delete the checkpoints and the file sinks' part files, then start from empty state"
    )
}

/// A line per ingest WAL partition whose first segment no longer starts at offset 0: its
/// input up to there was dropped because a checkpoint covered it.
fn trimmed_wals(data_dir: &Path, plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for source in &plan.sources {
        if !matches!(source.kind, SourceKind::Ingest(_)) {
            continue;
        }
        let dir = data_dir.join(&plan.name).join(&source.name);
        let Ok(partitions) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut partitions: Vec<PathBuf> =
            partitions.filter_map(|e| Some(e.ok()?.path())).collect();
        partitions.sort();
        for partition in partitions {
            if let Some(start) = first_segment(&partition).filter(|start| *start > 0) {
                lines.push(format!(
                    "source `{}`: the WAL {} starts at offset {start}: the input before it was dropped once a checkpoint covered it",
                    source.name,
                    partition.display()
                ));
            }
        }
    }
    lines
}

/// The base offset of the oldest segment in WAL directory `dir`.
fn first_segment(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| parse_segment_file_name(e.ok()?.file_name().to_str()?))
        .min()
}
