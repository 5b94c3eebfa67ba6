//! Checking a pipeline's JSON-lines output: rows as canonical text and multisets, part files,
//! field order, and changelog replay.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// A row as text with its keys sorted, whatever map type `serde_json` was built with.
pub fn canon(row: &Json) -> String {
    let sorted: BTreeMap<&String, &Json> = row.as_object().expect("object").iter().collect();
    serde_json::to_string(&sorted).expect("JSON")
}

/// The values of `fields` in `row`, as the key of a changelog group.
pub fn key_of(row: &Json, fields: &[&str]) -> String {
    let values: Vec<String> = fields.iter().map(|f| row[*f].to_string()).collect();
    values.join(",")
}

/// The start of the tumbling window of `size` that holds `ts`.
pub fn tumble(ts: i64, size: i64) -> i64 {
    ts.div_euclid(size) * size
}

/// Fails with the sizes and the first differing keys when the maps differ.
pub fn assert_maps_eq<K: Ord + Debug, V: PartialEq + Debug>(
    got: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
    what: &str,
) {
    let mut keys: Vec<&K> = got.keys().chain(expected.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<&K> = keys
        .into_iter()
        .filter(|k| got.get(k) != expected.get(k))
        .collect();
    let diffs: Vec<String> = differing
        .iter()
        .take(6)
        .map(|k| {
            format!(
                "  {k:?}:\n    got      {:?}\n    expected {:?}",
                got.get(k),
                expected.get(k)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: {} entries, expected {}; {} differ, the first:\n{}",
        got.len(),
        expected.len(),
        differing.len(),
        diffs.join("\n")
    );
}

/// Rows as a multiset of their canonical text.
pub fn multiset<'a>(rows: impl IntoIterator<Item = &'a Json>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(canon(row)).or_insert(0) += 1;
    }
    counts
}

/// The output's part files, sorted by name, with no part left in progress.
pub fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for file in &files {
        assert!(
            !file.to_string_lossy().ends_with(".inprogress"),
            "{}",
            file.display()
        );
    }
    files
}

/// Checks that the output's first row has exactly `fields`, in this order.
pub fn assert_fields(dir: &Path, fields: &[&str]) {
    let text: String = part_files(dir)
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("part file"))
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("{}: no output rows", dir.display()));
    let line = text.lines().next().unwrap_or_default();
    let parsed: Json = serde_json::from_str(line).expect("JSON line");
    assert_eq!(
        parsed.as_object().map(|o| o.len()),
        Some(fields.len()),
        "fields {fields:?}: {line}"
    );
    let mut at = 0;
    for field in fields {
        let found = line.find(&format!("\"{field}\":"));
        let pos = found.unwrap_or_else(|| panic!("no field `{field}` in {line}"));
        assert!(pos >= at, "fields not in the order {fields:?}: {line}");
        at = pos;
    }
}

/// Each core's changelog rows in output order, with their `file:line`.
pub fn parts_by_core(dir: &Path) -> BTreeMap<String, Vec<(String, Json)>> {
    let mut cores: BTreeMap<String, Vec<(String, Json)>> = BTreeMap::new();
    for file in part_files(dir) {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let core = name.split('-').nth(1).unwrap_or(&name).to_string();
        let rows = cores.entry(core).or_default();
        let text = std::fs::read_to_string(&file).expect("part file");
        for (n, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", n + 1);
            let row = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            rows.push((at, row));
        }
    }
    cores
}

/// Replays a changelog per core in file order and returns the number of changes and the final
/// rows of each key (the `key` fields), without `op`. Checks every change on the way: `+I`/`+U`
/// insert, `-U`/`-D` remove a row equal to one present, `-U` is answered by `+U`, a key lives on
/// one core.
pub fn replay(dir: &Path, key: &[&str]) -> (usize, BTreeMap<String, Vec<Json>>) {
    let mut state: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut count = 0;
    for (core, changes) in parts_by_core(dir) {
        let mut awaiting_update: HashMap<String, String> = HashMap::new();
        for (at, mut change) in changes {
            count += 1;
            let op = change.as_object_mut().and_then(|o| o.remove("op"));
            let op = op
                .and_then(|o| o.as_str().map(str::to_string))
                .unwrap_or_default();
            let k = key_of(&change, key);
            let first_core = owner.entry(k.clone()).or_insert_with(|| core.clone());
            assert_eq!(
                *first_core, core,
                "{at}: key {k} changes on cores {first_core} and {core}"
            );
            let pending = awaiting_update.remove(&k);
            assert_eq!(
                pending.is_some(),
                op == "+U",
                "{at}: `{op}` of {k} after {pending:?}"
            );
            let rows = state.entry(k.clone()).or_default();
            match op.as_str() {
                "+I" | "+U" => rows.push(change),
                "-U" | "-D" => {
                    let found = rows.iter().position(|r| *r == change);
                    let index = found.unwrap_or_else(|| {
                        panic!("{at}: {op} of a row not present: {change}; present: {rows:?}")
                    });
                    rows.swap_remove(index);
                    if op == "-U" {
                        awaiting_update.insert(k, at);
                    }
                }
                _ => panic!("{at}: bad op `{op}`"),
            }
        }
        assert!(
            awaiting_update.is_empty(),
            "-U without a +U: {awaiting_update:?}"
        );
    }
    state.retain(|_, rows| !rows.is_empty());
    (count, state)
}
