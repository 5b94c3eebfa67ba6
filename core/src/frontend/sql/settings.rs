//! `SET 'key' = 'value'` statements: the pipeline's settings, by Wire's names or Flink's.
//!
//! Settings are pipeline-wide, as the YAML `settings:` block is: each key may be set once,
//! anywhere in the file, and applies to every statement. Keys are matched as written (Flink's
//! names) or with `.` and `-` read as `_` (Wire's YAML names); an unknown key is an error at
//! its place. The reference is the `SET` table of docs/sql.md.

use super::prep::SetStmt;
use super::{err, SqlError};
use crate::frontend::spec::{
    closest, parse_duration, OperatorKind, PipelineSpec, Settings, WindowSpec,
};
use crate::time::window::TimeDomain;

/// What the `SET` statements of a file ask for.
#[derive(Debug, Clone, Default)]
pub(super) struct SqlSettings {
    /// The YAML `settings:` block.
    pub pipeline: Settings,
    /// The watermark idle timeout of every source that does not set its own.
    pub idle_timeout_ms: Option<i64>,
    /// The allowed lateness of every event-time window that does not set its own.
    pub allowed_lateness_ms: Option<i64>,
}

/// A setting: Wire's (YAML) name, Flink's name if Flink has one, and what it sets.
struct Key {
    wire: &'static str,
    flink: Option<&'static str>,
    apply: fn(&mut SqlSettings, &str) -> Result<(), String>,
}

const KEYS: &[Key] = &[
    Key {
        wire: "max_parallelism",
        flink: Some("pipeline.max-parallelism"),
        apply: |s, v| {
            s.pipeline.max_parallelism = count(v, 32_768)?;
            Ok(())
        },
    },
    Key {
        wire: "batch_rows",
        flink: None,
        apply: |s, v| {
            s.pipeline.batch_rows = count(v, 1 << 20)? as usize;
            Ok(())
        },
    },
    Key {
        wire: "checkpoint_interval",
        flink: Some("execution.checkpointing.interval"),
        apply: |s, v| {
            s.pipeline.checkpoint_interval_ms = Some(positive_duration(v)? as u64);
            Ok(())
        },
    },
    Key {
        wire: "watermark_alignment",
        flink: None,
        apply: |s, v| {
            s.pipeline.watermark_alignment_ms = Some(positive_duration(v)? as u64);
            Ok(())
        },
    },
    Key {
        wire: "cores",
        flink: Some("parallelism.default"),
        apply: |s, v| {
            s.pipeline.cores = Some(count(v, 32_768)?);
            Ok(())
        },
    },
    Key {
        wire: "idle_timeout",
        flink: Some("table.exec.source.idle-timeout"),
        apply: |s, v| {
            // Flink reads 0 as "no idle detection".
            let ms = duration(v)?;
            s.idle_timeout_ms = (ms > 0).then_some(ms);
            Ok(())
        },
    },
    Key {
        wire: "allowed_lateness",
        flink: Some("table.exec.emit.allow-lateness"),
        apply: |s, v| {
            s.allowed_lateness_ms = Some(duration(v)?);
            Ok(())
        },
    },
    Key {
        wire: "runtime_mode",
        flink: Some("execution.runtime-mode"),
        apply: |_, v| match v {
            "streaming" | "STREAMING" => Ok(()),
            other => Err(format!(
                "Wire runs pipelines in streaming mode only, not `{other}`"
            )),
        },
    },
];

/// Reads the `SET` statements of a file.
pub(super) fn read(sets: &[SetStmt]) -> Result<SqlSettings, SqlError> {
    let mut out = SqlSettings::default();
    let mut seen: Vec<(&str, &SetStmt)> = Vec::new();
    for set in sets {
        // The SQL client's own options (`sql-client.execution.result-mode`, ...) say how a
        // client shows results; a pipeline file has no client, so they change nothing.
        if set.key.starts_with("sql-client.") {
            continue;
        }
        let Some(key) = find(&set.key) else {
            return err(set.key_pos, unknown(&set.key));
        };
        if let Some((_, earlier)) = seen.iter().find(|(wire, _)| *wire == key.wire) {
            return err(
                set.key_pos,
                format!(
                    "`{}` is already set at line {}, column {}; a setting is set once per pipeline",
                    set.key, earlier.key_pos.line, earlier.key_pos.column
                ),
            );
        }
        (key.apply)(&mut out, set.value.trim()).map_err(|message| SqlError {
            pos: set.value_pos,
            message: format!("SET '{}': {message}", set.key),
        })?;
        if key.wire == "cores" {
            out.pipeline.cores_written = Some(format!(
                "SET '{}' = '{}' (line {})",
                set.key,
                set.value.trim(),
                set.key_pos.line
            ));
        }
        seen.push((key.wire, set));
    }
    Ok(out)
}

/// Whether `SET 'key' = 'value'` is a valid setting (for the `wire sql` shell, which keeps
/// its settings and writes them at the top of each pipeline it runs).
pub(super) fn check(key: &str, value: &str) -> Result<(), String> {
    let found = find(key).ok_or_else(|| unknown(key))?;
    (found.apply)(&mut SqlSettings::default(), value.trim())
        .map_err(|message| format!("SET '{key}': {message}"))
}

/// Wire's name of setting `key` (which may be Flink's name), if it is one.
pub(super) fn canonical(key: &str) -> Option<&'static str> {
    find(key).map(|k| k.wire)
}

impl SqlSettings {
    /// Puts the settings into a lowered pipeline: its `settings`, and the defaults of its
    /// sources' idle timeouts and its event-time windows' allowed lateness.
    pub(super) fn apply(&self, spec: &mut PipelineSpec) {
        spec.settings = self.pipeline.clone();
        if let Some(ms) = self.idle_timeout_ms {
            for source in &mut spec.sources {
                if source.watermark.idle_timeout_ms.is_none() {
                    source.watermark.idle_timeout_ms = Some(ms);
                }
            }
        }
        if let Some(ms) = self.allowed_lateness_ms {
            for operator in &mut spec.operators {
                if let Some(window) = window_of(&mut operator.kind) {
                    if window.time == TimeDomain::Event && window.allowed_lateness_ms == 0 {
                        window.allowed_lateness_ms = ms;
                    }
                }
            }
        }
    }
}

fn window_of(kind: &mut OperatorKind) -> Option<&mut WindowSpec> {
    match kind {
        OperatorKind::Aggregate(a) => a.window.as_mut(),
        OperatorKind::Top(t) => t.window.as_mut(),
        _ => None,
    }
}

fn find(key: &str) -> Option<&'static Key> {
    let wire = key.replace(['.', '-'], "_");
    KEYS.iter().find(|k| k.flink == Some(key) || k.wire == wire)
}

fn unknown(key: &str) -> String {
    let names: Vec<&str> = KEYS
        .iter()
        .flat_map(|k| std::iter::once(k.wire).chain(k.flink))
        .collect();
    let hint = closest(key, &names)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    format!(
        "unknown setting `{key}`{hint} (known: {})",
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn count(value: &str, max: u32) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("expected a whole number from 1 to {max}, not `{value}`"))
}

/// A duration as Flink writes them (`5 s`, `500 ms`, `1 min`, `10 seconds`, a bare number of
/// milliseconds) or as Wire does (`5s`, `2m`).
pub(super) fn duration(value: &str) -> Result<i64, String> {
    let bad =
        || format!("expected a duration such as `500 ms`, `10 s`, `1 min` or `2 h`, not `{value}`");
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        _ => return Err(bad()),
    };
    if number.is_empty() {
        return Err(bad());
    }
    parse_duration(&format!("{number}{unit}")).ok_or_else(bad)
}

fn positive_duration(value: &str) -> Result<i64, String> {
    match duration(value)? {
        0 => Err("expected a duration longer than 0 ms".into()),
        ms => Ok(ms),
    }
}

#[cfg(test)]
mod tests;
