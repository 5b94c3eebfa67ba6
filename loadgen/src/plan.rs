//! The arithmetic of a run: `--duration` parsing and its event count, the `--output` format,
//! and the `--timestamp-field` lookup.

use std::path::Path;
use std::time::Duration;

use wire_core::frontend::spec::FileFormat;
use wire_core::{DataType, Schema};

/// Parses a `--duration`: a number with a unit, `500ms`, `30s`, `1.5s`, `2m`/`2min`, `1h`.
///
/// A bare number is refused (seconds or milliseconds would be a guess).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(wire_loadgen::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(wire_loadgen::parse_duration("30").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let clean = text.trim();
    let split = clean
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(clean.len());
    let (number, unit) = clean.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (expected e.g. `30s`, `500ms`, `2m`)"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 1e-3,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "`{text}` has no unit: write e.g. `{number}s` or `{number}ms`"
            ))
        }
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What `--keys`, `--key-field`, `--event-time` and `--disorder` asked for, by field name.
#[derive(Debug, Clone, Default)]
pub struct ShapeArgs {
    /// `--keys N`.
    pub keys: Option<u64>,
    /// `--key-field NAME`, repeatable; every string field when empty.
    pub key_fields: Vec<String>,
    /// `--event-time`: `now` makes event time follow the wall clock; `spread` (the default)
    /// spreads timestamps over one day from 2023-11-14.
    pub event_time: Option<String>,
    /// `--disorder`, like `2s`: how much older than the clock a row may be.
    pub disorder: Option<String>,
}

/// Resolves `args` against `schema`: which fields are keys and which follow the clock (the
/// source's `event_time` field when it has one, else every timestamp field).
///
/// ```
/// use wire_core::{DataType, Field, Schema};
/// use wire_loadgen::{random_options, ShapeArgs};
/// let schema = Schema::new(vec![
///     Field::new("user", DataType::String),
///     Field::new("at", DataType::Timestamp),
/// ]);
/// let args = ShapeArgs {
///     keys: Some(100),
///     event_time: Some("now".into()),
///     disorder: Some("2s".into()),
///     ..ShapeArgs::default()
/// };
/// let options = random_options(&schema, None, &args).unwrap();
/// assert_eq!((options.key_fields, options.time_fields, options.disorder_ms), (0b01, 0b10, 2000));
/// ```
pub fn random_options(
    schema: &Schema,
    event_time_field: Option<&str>,
    args: &ShapeArgs,
) -> Result<crate::RandomOptions, String> {
    let mut options = crate::RandomOptions::default();
    if let Some(keys) = args.keys {
        if keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        options.keys = Some(keys);
        options.key_fields = key_fields(schema, &args.key_fields)?;
    }
    match args.event_time.as_deref() {
        None | Some("spread") if args.disorder.is_some() => {
            return Err("--disorder needs --event-time now".into());
        }
        None | Some("spread") => {}
        Some("now") => {
            options.time_fields = time_fields(schema, event_time_field)?;
            let disorder = args.disorder.as_deref().map(parse_duration).transpose();
            let disorder = disorder.map_err(|err| format!("--disorder: {err}"))?;
            options.disorder_ms = disorder.map_or(0, |d| d.as_millis() as u64);
        }
        Some(other) => {
            return Err(format!(
                "--event-time `{other}`: expected `now` or `spread`"
            ));
        }
    }
    Ok(options)
}

fn field_bit(schema: &Schema, name: &str, allowed: &[DataType], flag: &str) -> Result<u64, String> {
    let index = schema
        .fields()
        .iter()
        .position(|f| f.name == name)
        .ok_or_else(|| format!("{flag} `{name}`: the source has no such field"))?;
    if index >= 64 || !allowed.contains(&schema.fields()[index].data_type) {
        return Err(format!(
            "{flag} `{name}`: must be one of the first 64 fields, of type {allowed:?}"
        ));
    }
    Ok(1 << index)
}

fn key_fields(schema: &Schema, names: &[String]) -> Result<u64, String> {
    let allowed = [DataType::String, DataType::Bytes, DataType::I64];
    if names.is_empty() {
        let strings = schema.fields().iter().take(64).enumerate();
        let bits = strings
            .filter(|(_, f)| matches!(f.data_type, DataType::String | DataType::Bytes))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        if bits == 0 {
            return Err(
                "--keys: the source has no string field; name key fields with --key-field".into(),
            );
        }
        return Ok(bits);
    }
    names.iter().try_fold(0, |bits, name| {
        Ok(bits | field_bit(schema, name, &allowed, "--key-field")?)
    })
}

fn time_fields(schema: &Schema, event_time: Option<&str>) -> Result<u64, String> {
    if let Some(name) = event_time {
        let allowed = [DataType::Timestamp, DataType::I64];
        return field_bit(schema, name, &allowed, "the source's event_time");
    }
    let stamps = schema.fields().iter().take(64).enumerate();
    let bits = stamps
        .filter(|(_, f)| f.data_type == DataType::Timestamp)
        .fold(0, |bits, (i, _)| bits | 1 << i);
    if bits == 0 {
        return Err("--event-time now: the source has no event_time and no timestamp field".into());
    }
    Ok(bits)
}

/// Rows to send at `rate` rows per second for `duration`: `rate × duration`, rounded to the
/// nearest row. A rate of 0 (as fast as possible) has no count: the run is bounded by time.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(wire_loadgen::events_for(100_000, Duration::from_secs(30)), Some(3_000_000));
/// assert_eq!(wire_loadgen::events_for(0, Duration::from_secs(30)), None);
/// ```
pub fn events_for(rate: u64, duration: Duration) -> Option<u64> {
    (rate > 0).then(|| (rate as f64 * duration.as_secs_f64()).round() as u64)
}

/// The format of an `--output` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// JSON lines, as Wire's `jsonl` format writes and reads them.
    JsonLines,
    /// CSV with a header line, as Wire's `csv` format writes and reads it.
    Csv,
}

impl OutputFormat {
    /// Parses `--format`: `jsonl` (also `json`, `ndjson`) or `csv`.
    pub fn parse(text: &str) -> Result<OutputFormat, String> {
        match text.to_ascii_lowercase().as_str() {
            "jsonl" | "json" | "ndjson" => Ok(OutputFormat::JsonLines),
            "csv" => Ok(OutputFormat::Csv),
            _ => Err(format!("unknown format `{text}` (use jsonl or csv)")),
        }
    }

    /// The format named by `path`'s extension (`.jsonl`, `.json`, `.ndjson`, `.csv`).
    pub fn from_path(path: &Path) -> Result<OutputFormat, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        OutputFormat::parse(ext).map_err(|_| {
            format!(
                "{}: cannot tell the format from the extension; pass --format jsonl or --format csv",
                path.display()
            )
        })
    }

    /// Wire's text format of the same name.
    pub fn file_format(self) -> FileFormat {
        match self {
            OutputFormat::JsonLines => FileFormat::JsonLines,
            OutputFormat::Csv => FileFormat::Csv,
        }
    }
}

/// The index of `--timestamp-field NAME` in `schema`; it must be an `i64` field.
pub fn stamp_field(schema: &Schema, name: &str) -> Result<usize, String> {
    let fields = schema.fields();
    let Some(index) = fields.iter().position(|f| f.name == name) else {
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "--timestamp-field `{name}`: the ingest schema has no such field (fields: {}); add `{name}: i64` to the source's schema",
            names.join(", ")
        ));
    };
    let found = fields[index].data_type;
    if found != DataType::I64 {
        return Err(format!(
            "--timestamp-field `{name}`: the field is {found}, but it must be an i64 field (`{name}: i64`) to hold unix nanoseconds"
        ));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::Field;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn duration_times_rate_gives_the_event_count() {
        let d = |text| parse_duration(text).unwrap();
        assert_eq!(events_for(1000, d("30s")), Some(30_000));
        assert_eq!(events_for(250_000, d("10s")), Some(2_500_000));
        assert_eq!(events_for(3, d("500ms")), Some(2)); // 1.5 rounds to 2
        assert_eq!(events_for(7, d("100ms")), Some(1)); // 0.7 rounds to 1
        assert_eq!(events_for(1, d("1ms")), Some(0));
        assert_eq!(events_for(0, d("10s")), None);
    }

    #[test]
    fn output_format_from_flag_or_extension() {
        assert_eq!(OutputFormat::parse("JSONL"), Ok(OutputFormat::JsonLines));
        assert_eq!(OutputFormat::parse("csv"), Ok(OutputFormat::Csv));
        assert!(OutputFormat::parse("parquet").is_err());
        let from = |p: &str| OutputFormat::from_path(Path::new(p));
        assert_eq!(from("/tmp/a.jsonl"), Ok(OutputFormat::JsonLines));
        assert_eq!(from("a.ndjson"), Ok(OutputFormat::JsonLines));
        assert_eq!(from("in.csv"), Ok(OutputFormat::Csv));
        assert!(from("in.txt").unwrap_err().contains("--format"));
        assert!(from("noext").is_err());
    }

    #[test]
    fn the_timestamp_field_must_be_an_i64_field_of_the_schema() {
        let schema = Schema::new(vec![
            Field::new("sensor", DataType::String),
            Field::new("at", DataType::Timestamp),
            Field::new("sent_at", DataType::I64),
        ]);
        assert_eq!(stamp_field(&schema, "sent_at"), Ok(2));
        let missing = stamp_field(&schema, "sent").unwrap_err();
        assert!(missing.contains("no such field"), "{missing}");
        assert!(missing.contains("sensor, at, sent_at"), "{missing}");
        let wrong = stamp_field(&schema, "at").unwrap_err();
        assert!(wrong.contains("must be an i64"), "{wrong}");
    }

    #[test]
    fn shape_flags_resolve_to_fields_or_say_what_is_wrong() {
        let schema = Schema::new(vec![
            Field::new("user", DataType::String),
            Field::new("page", DataType::String),
            Field::new("n", DataType::I64),
            Field::new("at", DataType::Timestamp),
            Field::new("value", DataType::F64),
        ]);
        let args = |keys: Option<u64>,
                    fields: &[&str],
                    time: Option<&str>,
                    disorder: Option<&str>| ShapeArgs {
            keys,
            key_fields: fields.iter().map(|f| f.to_string()).collect(),
            event_time: time.map(String::from),
            disorder: disorder.map(String::from),
        };
        let all_strings = random_options(&schema, None, &args(Some(5), &[], None, None)).unwrap();
        assert_eq!((all_strings.keys, all_strings.key_fields), (Some(5), 0b011));
        let named = random_options(&schema, None, &args(Some(5), &["n", "page"], None, None));
        assert_eq!(named.unwrap().key_fields, 0b110);
        let now = random_options(
            &schema,
            Some("n"),
            &args(None, &[], Some("now"), Some("250ms")),
        );
        let now = now.unwrap();
        assert_eq!(
            (now.time_fields, now.disorder_ms, now.keys),
            (0b100, 250, None)
        );
        for (bad, says) in [
            (args(Some(0), &[], None, None), "at least 1"),
            (args(Some(3), &["value"], None, None), "--key-field `value`"),
            (args(Some(3), &["nope"], None, None), "no such field"),
            (args(None, &[], None, Some("2s")), "needs --event-time now"),
            (
                args(None, &[], Some("later"), None),
                "expected `now` or `spread`",
            ),
            (args(None, &[], Some("now"), Some("2")), "--disorder"),
        ] {
            let err = random_options(&schema, None, &bad).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
