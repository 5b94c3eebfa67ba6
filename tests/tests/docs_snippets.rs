//! Every ```yaml snippet in README.md and docs/*.md is checked, so a documented example
//! cannot stop parsing unnoticed.
//!
//! A complete pipeline (with `name:` and `sources:`) must pass the real `wire check`, run from
//! the repository root as the docs' relative paths expect. A fragment is placed into a small
//! pipeline around three Nexmark sources (`bids`, `auctions`, `people`) in the contexts a
//! fragment of the docs can mean: top-level keys, a list of operators, one operator's body over
//! `bids`, or the fields of a `project`. It must decode in at least one of them, and type-check
//! there when every input it names exists. A snippet meant to fail is marked with the line
//! `<!-- not-checked -->` right before its fence, and is listed rather than skipped silently.
//! Inline code written as one YAML entry with a flow value (`` `group_by: {k: a + b}` ``) must
//! at least parse as YAML without a comma cutting an expression.

use std::path::{Path, PathBuf};
use std::process::Command;

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::PipelineSpec;
use wire_tests::{repo_root, wire_bin};

/// One fenced yaml block.
struct Snippet {
    file: String,
    line: usize,
    text: String,
    checked: bool,
}

/// How far a fragment got in its best context.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Decoded,
    TypeChecked,
}

const SOURCES: &str = "  bids: {type: nexmark, stream: bid, events: 1}
  auctions: {type: nexmark, stream: auction, events: 1}
  people: {type: nexmark, stream: person, events: 1}
";

/// The markdown files with snippets: README.md and docs/*.md.
fn doc_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn snippets(path: &Path) -> Vec<Snippet> {
    let text = std::fs::read_to_string(path).expect("doc file");
    let file = path
        .strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let fence = lines[index].trim_start();
        if fence.starts_with("```yaml") || fence.starts_with("```yml") {
            let checked = !previous_non_empty(&lines, index).contains("<!-- not-checked -->");
            let end = (index + 1..lines.len())
                .find(|&i| lines[i].trim_start().starts_with("```"))
                .unwrap_or(lines.len());
            found.push(Snippet {
                file: file.clone(),
                line: index + 1,
                text: lines[index + 1..end].join("\n") + "\n",
                checked,
            });
            index = end;
        }
        index += 1;
    }
    found
}

fn previous_non_empty<'a>(lines: &[&'a str], index: usize) -> &'a str {
    lines[..index]
        .iter()
        .rev()
        .find(|line| !line.trim().is_empty())
        .copied()
        .unwrap_or("")
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| {
            if line.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{line}\n")
            }
        })
        .collect()
}

/// Whether `text` has top-level keys `name:` and `sources:`.
fn is_complete(text: &str) -> bool {
    let top = |key: &str| text.lines().any(|line| line.starts_with(key));
    top("name:") && top("sources:")
}

/// `wire check` on a complete pipeline, from the repository root.
fn wire_check(snippet: &Snippet) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snippet.yaml");
    std::fs::write(&file, &snippet.text).expect("write snippet");
    let out = Command::new(wire_bin())
        .arg("check")
        .arg(&file)
        .current_dir(repo_root())
        .output()
        .expect("run wire check");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The pipelines a fragment may be part of.
fn contexts(fragment: &str) -> Vec<String> {
    let head = format!("name: snippet\nsources:\n{SOURCES}");
    let sink = "sinks:\n  snippet_out: {type: blackhole, from: snippet_op}\n";
    let ops = |body: &str| format!("{head}operators:\n{body}{sink}");
    let one_op = |body: &str| ops(&format!("  - name: snippet_op\n    from: bids\n{body}"));
    let mut found = Vec::new();
    let first = fragment
        .lines()
        .map(str::trim_start)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    // Top-level keys: settings, sources, sinks (reading `bids`), or a whole `operators:`.
    let own_sources = first.is_some_and(|line| line.starts_with("sources:"));
    let mut top = String::from("name: snippet\n");
    if !own_sources {
        top.push_str(&format!("sources:\n{SOURCES}"));
    }
    top.push_str(fragment);
    if !fragment.contains("sinks:") {
        top.push_str("sinks:\n  snippet_out: {type: blackhole, from: bids}\n");
    }
    found.push(top);
    // A list of operators; the sink reads the last one.
    if first.is_some_and(|line| line.starts_with('-')) {
        let last = fragment
            .lines()
            .rev()
            .find_map(|line| line.trim_start().strip_prefix("- name:"))
            .map(str::trim)
            .unwrap_or("snippet_op");
        let body = indent(fragment, 2);
        found.push(format!(
            "{head}operators:\n{body}sinks:\n  snippet_out: {{type: blackhole, from: {last}}}\n"
        ));
    }
    // One operator's body over `bids`, with an aggregate added when the fragment names none.
    found.push(one_op(&indent(fragment, 4)));
    found.push(one_op(&format!(
        "{}    aggregate: {{n: count(*)}}\n",
        indent(fragment, 4)
    )));
    // The fields of a `project`.
    found.push(one_op(&format!("    project:\n{}", indent(fragment, 6))));
    found
}

/// The best a fragment reaches in any context, or every context's error.
fn check_fragment(snippet: &Snippet) -> Result<Level, String> {
    let mut best = None;
    let mut errors = Vec::new();
    for pipeline in contexts(&snippet.text) {
        let spec = match PipelineSpec::parse("snippet.yaml", &pipeline) {
            Ok(spec) => spec,
            Err(err) => {
                errors.push(format!("{err}\n{pipeline}"));
                continue;
            }
        };
        let level = match Plan::from_spec(&spec) {
            Ok(_) => Level::TypeChecked,
            Err(err) => {
                errors.push(format!("{err}\n{pipeline}"));
                Level::Decoded
            }
        };
        best = best.max(Some(level));
    }
    best.ok_or_else(|| errors.join("\n---\n"))
}

#[test]
fn every_yaml_snippet_in_the_docs_checks() {
    let mut failures = Vec::new();
    let (mut complete, mut typed) = (0, 0);
    let (mut decoded, mut marked) = (Vec::new(), Vec::new());
    for path in doc_files() {
        for snippet in snippets(&path) {
            let place = format!("{}:{}", snippet.file, snippet.line);
            if !snippet.checked {
                marked.push(place);
                continue;
            }
            if is_complete(&snippet.text) {
                complete += 1;
                if let Err(err) = wire_check(&snippet) {
                    failures.push(format!("{place}: wire check failed:\n{err}"));
                }
                continue;
            }
            match check_fragment(&snippet) {
                Ok(Level::TypeChecked) => typed += 1,
                Ok(Level::Decoded) => decoded.push(place),
                Err(err) => failures.push(format!("{place}: fits no pipeline:\n{err}")),
            }
        }
    }
    eprintln!(
        "docs snippets: {complete} complete pipelines passed `wire check`, {typed} fragments \
         type-checked; only decoded (they read inputs the docs define elsewhere): {decoded:?}; \
         marked not-checked: {marked:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(complete >= 3 && typed >= 5, "too few snippets found");
}

/// Inline code written as one YAML entry with a flow value, like `` `group_by: {k: a + b}` ``,
/// with its line number.
fn inline_entries(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("doc file");
    let mut found = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        // Odd pieces of a line split at backticks are inside code spans.
        for span in line.split('`').skip(1).step_by(2) {
            let Some((key, value)) = span.split_once(": ") else {
                continue;
            };
            let key_like =
                !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            let flow = (value.starts_with('{') && value.ends_with('}'))
                || (value.starts_with('[') && value.ends_with(']'));
            if !fenced && key_like && flow {
                found.push((index + 1, span.to_string()));
            }
        }
    }
    found
}

/// A YAML-level problem of one inline entry: it does not parse, or a comma cut an expression.
/// (What the entry means is not checked: inline code may hold placeholders like `DURATION`.)
fn yaml_problem(entry: &str) -> Option<String> {
    let err = PipelineSpec::parse("inline", &format!("{entry}\n")).err()?;
    let yaml_level = err.message.starts_with("invalid YAML")
        || err
            .message
            .contains("quote the expression or use the block form");
    yaml_level.then(|| err.to_string())
}

#[test]
fn inline_yaml_entries_in_the_docs_parse() {
    let mut failures = Vec::new();
    let mut count = 0;
    for path in doc_files() {
        for (line, entry) in inline_entries(&path) {
            count += 1;
            if let Some(problem) = yaml_problem(&entry) {
                failures.push(format!("{}:{line}: `{entry}`: {problem}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count >= 3, "found {count} inline entries");
    // The example the docs had fails this check.
    let old = "group_by: {day: date_format(date_time, 'yyyy-MM-dd')}";
    assert!(yaml_problem(old).is_some());
}

#[test]
fn a_flow_mapping_that_cuts_an_expression_fails_the_snippet_check() {
    // The example the docs had: not YAML once the comma ends the entry.
    for text in [
        "- name: per_day\n  from: bids\n  group_by: {day: date_format(date_time, 'yyyy-MM-dd')}\n  aggregate: {n: count(*)}\n",
        "- name: per_bucket\n  from: bids\n  group_by: {bucket: substr(extra, 1, 1)}\n  aggregate: {n: count(*)}\n",
    ] {
        let snippet = Snippet {
            file: "inline".into(),
            line: 1,
            text: text.into(),
            checked: true,
        };
        let err = check_fragment(&snippet).unwrap_err();
        assert!(
            err.contains("quote the expression or use the block form"),
            "{err}"
        );
    }
}

/// The `.yaml` files under `dir` and its subdirectories, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_example_pipeline_checks() {
    let files = yaml_files(&repo_root().join("examples"));
    assert!(files.len() > 20, "{files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let out = Command::new(wire_bin())
                .arg("check")
                .arg(file)
                .current_dir(repo_root())
                .output()
                .expect("run wire check");
            let stderr = String::from_utf8_lossy(&out.stderr);
            (!out.status.success()).then(|| format!("{}: {stderr}", file.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
