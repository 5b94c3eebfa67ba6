//! The pipeline check `wire check`, `wire run` and the AdminService's `CreatePipeline` share:
//! decode the YAML, resolve names and types, and check that the files sources and lookups read
//! exist. Errors carry `file:line:column`.
//!
//! Pure but for the input-file check, which looks at the local disk (relative paths resolve
//! against the working directory of the process that checks).

use std::path::Path;

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::{Named, OperatorKind, PipelineSpec, Pos, SourceKind, SpecError};

/// A pipeline that passed the check.
#[derive(Debug)]
pub struct Checked {
    /// The decoded file.
    pub spec: PipelineSpec,
    /// Its resolved, type-checked plan.
    pub plan: Plan,
}

/// Reads the pipeline file at `path` and checks it.
pub fn check_file(path: &Path) -> Result<Checked, SpecError> {
    let spec = PipelineSpec::from_file(path)?;
    check_spec(spec)
}

/// Checks pipeline text; `file` names it in error positions.
pub fn check_text(file: &str, text: &str) -> Result<Checked, SpecError> {
    let spec = PipelineSpec::parse(file, text)?;
    check_spec(spec)
}

fn check_spec(spec: PipelineSpec) -> Result<Checked, SpecError> {
    let plan = Plan::from_spec(&spec)?;
    check_inputs(&spec)?;
    Ok(Checked { spec, plan })
}

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

fn check_exists(spec: &PipelineSpec, path: &Path, pos: Pos, key: &str) -> Result<(), SpecError> {
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
    Err(spec.error_at(&at, key, format!("`{}` {reason}{relative}", path.display())))
}
