//! Repository hygiene that lints cannot express (STYLE.md section 6): `unsafe` only in the
//! allowlisted modules and always under a `// SAFETY:` comment, and no `println!` in library
//! code (libraries log with tracing; only binaries, benches and tests print).

use std::path::{Path, PathBuf};

/// Modules allowed to contain `unsafe` (each opens with a "Safety contract" section).
const UNSAFE_ALLOWED: &[&str] = &[
    "core/src/record/batch.rs",
    "storage/src/wal/segment.rs",
    // Memory-maps checkpoint state files for restore.
    "storage/src/checkpoint.rs",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            // `vendor` holds third-party crates (ADR 0004), checked by their own authors.
            if !matches!(
                name.as_str(),
                "target" | ".git" | "corpus" | "artifacts" | "vendor"
            ) && !name.starts_with('.')
            {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                text,
            )
        })
        .collect()
}

fn code_part(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn unsafe_is_confined_and_justified() {
    let mut problems = Vec::new();
    for (path, text) in sources() {
        if path.ends_with("tests/tidy.rs") {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let code = code_part(line);
            if !(code.contains("unsafe {")
                || code.contains("unsafe fn")
                || code.contains("unsafe impl"))
            {
                continue;
            }
            if !UNSAFE_ALLOWED.contains(&path.as_str()) {
                problems.push(format!(
                    "{path}:{}: unsafe outside the allowlist",
                    index + 1
                ));
            }
            let above = |count: usize, needle: &str| {
                lines[index.saturating_sub(count)..index]
                    .iter()
                    .any(|l| l.contains(needle))
            };
            if code.contains("unsafe {") && !above(4, "SAFETY:") {
                problems.push(format!(
                    "{path}:{}: unsafe block without a `// SAFETY:` comment above it",
                    index + 1
                ));
            }
            if code.contains("unsafe fn") && !above(12, "# Safety") {
                problems.push(format!(
                    "{path}:{}: unsafe fn without a `# Safety` doc section",
                    index + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn libraries_do_not_print() {
    let mut problems = Vec::new();
    for (path, text) in sources() {
        let binary = path.contains("/src/bin/") || path.ends_with("/src/main.rs");
        let library = path.contains("/src/") && !binary && !path.starts_with("fuzz/");
        if !library || path.starts_with("bench/") {
            continue;
        }
        // Unit-test modules kept in their own `tests.rs` file are test code from the top.
        let in_tests = if path.ends_with("/tests.rs") {
            0
        } else {
            text.find("#[cfg(test)]").unwrap_or(usize::MAX)
        };
        let mut offset = 0;
        for (index, line) in text.lines().enumerate() {
            let code = code_part(line);
            if offset < in_tests
                && (code.contains("println!(")
                    || code.contains("eprintln!(")
                    || code.contains("dbg!("))
            {
                problems.push(format!(
                    "{path}:{}: printing from library code; use tracing",
                    index + 1
                ));
            }
            offset += line.len() + 1;
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
