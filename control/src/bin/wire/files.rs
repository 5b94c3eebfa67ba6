//! The checks of a pipeline that look at the disk: the files its sources and lookups read.
//!
//! `wire check` and `wire run` make them after the pipeline type-checks, so a missing input is
//! reported at the `path` that names it, before anything runs.

use std::path::Path;

use wire_core::spec::{Named, OperatorKind, PipelineSpec, Pos, SourceKind, SpecError};

/// Every file source's and lookup's `path` exists (a file, or a directory for a source).
pub fn check_inputs(spec: &PipelineSpec) -> Result<(), SpecError> {
    for source in &spec.sources {
        if let SourceKind::File(file) = &source.kind {
            let key = format!("sources.{}.path", source.name.name);
            check_exists(spec, &file.path, file.path_pos, &key)?;
        }
    }
    for (index, operator) in spec.operators.iter().enumerate() {
        if let OperatorKind::Lookup(lookup) = &operator.kind {
            let key = format!("operators[{index}].lookup.path");
            check_exists(spec, &lookup.path, lookup.path_pos, &key)?;
        }
    }
    Ok(())
}

fn check_exists(
    spec: &PipelineSpec,
    path: &Path,
    pos: Pos,
    key: &str,
) -> Result<(), SpecError> {
    let err = match std::fs::metadata(path) {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    let at = Named {
        name: String::new(),
        pos,
    };
    let relative = if path.is_relative() {
        let cwd = std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
        format!(" (relative to the working directory {cwd})")
    } else {
        String::new()
    };
    let reason = match err.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => format!("cannot be read: {err}"),
    };
    Err(spec.error_at(
        &at,
        key,
        format!("`{}` {reason}{relative}", path.display()),
    ))
}
