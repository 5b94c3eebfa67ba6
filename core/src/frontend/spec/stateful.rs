//! Decoding of the stateful parts of a pipeline file: source watermarks, windows, the
//! `aggregate` and `top` operators, and durations (`10s`, `500ms`).
//!
//! Like the rest of `spec`, this only checks shapes; [`crate::frontend::plan`] type-checks the
//! expressions. The contract is docs/adr/0003-event-time-windows-state.md.

use super::yaml::{Node, NodeKind};
use super::{expr_text, scalar, unknown_choice, Cx, ExprText, Fields, Named, SpecError};
use crate::time::watermark::WatermarkSpec;
use crate::time::window::{TimeDomain, WindowKind};

/// A window as written: its shape, clock, lateness and optional late side output.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Its shape.
    pub kind: WindowKind,
    /// Event or processing time.
    pub time: TimeDomain,
    /// How long a fired window still accepts late rows.
    pub allowed_lateness_ms: i64,
    /// The name of the side output for rows too late for every window.
    pub late_output: Option<Named>,
    /// Key path of the `window` mapping, for errors.
    pub path: String,
    /// Where the `window` mapping starts.
    pub pos: super::Pos,
}

/// One group-by key: an optional output name and its expression.
#[derive(Debug, Clone)]
pub struct GroupKey {
    /// The output field name when written as `name: expression`.
    pub name: Option<Named>,
    /// The key expression.
    pub expr: ExprText,
}

/// `aggregate:` with its `group_by` and `window`.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// Group keys (none: one global group).
    pub group_by: Vec<GroupKey>,
    /// The window, or none for an unbounded aggregate (a changelog).
    pub window: Option<WindowSpec>,
    /// `name: aggregate call` pairs, in order.
    pub aggregates: Vec<(Named, ExprText)>,
}

/// `top:`.
#[derive(Debug, Clone)]
pub struct TopSpec {
    /// Rows kept per group.
    pub n: u64,
    /// Order expressions and whether each is descending.
    pub order_by: Vec<(ExprText, bool)>,
    /// Group keys.
    pub group_by: Vec<GroupKey>,
    /// Keep rows tied with the n-th too.
    pub with_ties: bool,
    /// An own window, if any.
    pub window: Option<WindowSpec>,
}

/// `join:` of two inputs on equal keys.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// Key expressions over the left input.
    pub left_key: Vec<ExprText>,
    /// Key expressions over the right input, equal in number and types.
    pub right_key: Vec<ExprText>,
    /// Interval join: the right row's event time must lie within these two expressions of
    /// the left row (inclusive).
    pub between: Option<(ExprText, ExprText)>,
    /// Regular join: how long (event time) rows wait for a partner.
    pub retention_ms: Option<i64>,
    /// Prefix for right fields whose names the left input already uses.
    pub right_prefix: Option<String>,
}

/// `lookup:` — a join against a static table loaded from a file when the pipeline starts.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    /// The table's file.
    pub path: std::path::PathBuf,
    /// Where `path` was written.
    pub path_pos: super::Pos,
    /// Its text format.
    pub format: super::FileFormat,
    /// Its row schema.
    pub schema: crate::record::schema::Schema,
    /// CSV: whether the first line is a header.
    pub csv_header: bool,
    /// Key expressions over the input row.
    pub key: Vec<ExprText>,
    /// The table fields they must equal, in order.
    pub table_key: Vec<Named>,
    /// Prefix for table fields whose names the input already has.
    pub right_prefix: Option<String>,
}

/// `process:` — a user-written keyed operator registered by name.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The registered name.
    pub function: Named,
    /// Group keys.
    pub group_by: Vec<GroupKey>,
    /// `config:` entries, as written.
    pub config: Vec<(Named, String)>,
}

/// Parses `500ms`, `10s`, `2m`/`2min`, `1h`, `1d` or a bare integer of milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let clean: String = text
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ' ')
        .collect();
    let split = clean
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(clean.len());
    let (digits, unit) = clean.split_at(split);
    let value: i64 = digits.parse().ok()?;
    let multiplier: i64 = match unit {
        "" | "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    value.checked_mul(multiplier)
}

impl Fields<'_> {
    /// A duration value, if the key is present.
    pub(super) fn duration(&mut self, cx: &Cx<'_>, key: &str) -> Result<Option<i64>, SpecError> {
        let Some((node, path)) = self.get(key) else {
            return Ok(None);
        };
        let text = scalar(cx, node, &path)?;
        parse_duration(text).map(Some).ok_or_else(|| {
            cx.err(
                node,
                &path,
                format!("expected a duration like 500ms, 10s, 2m, 1h or 1d, found `{text}`"),
            )
        })
    }

    fn positive_duration(&mut self, cx: &Cx<'_>, key: &str) -> Result<i64, SpecError> {
        let value = self.duration(cx, key)?.ok_or_else(|| {
            cx.err(
                self.node,
                &self.path,
                format!("missing required key `{key}`"),
            )
        })?;
        if value <= 0 {
            let (node, path) = self.get(key).expect("just read");
            return Err(cx.err(node, &path, format!("`{key}` must be longer than 0ms")));
        }
        Ok(value)
    }
}

/// `watermark: {max_out_of_orderness, idle_timeout}` of a source.
pub(super) fn decode_watermark(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    default_out_of_orderness_ms: i64,
) -> Result<WatermarkSpec, SpecError> {
    let mut spec = WatermarkSpec {
        max_out_of_orderness_ms: default_out_of_orderness_ms,
        idle_timeout_ms: None,
    };
    let Some((node, path)) = fields.get("watermark") else {
        return Ok(spec);
    };
    let mut inner = Fields::new(cx, node, &path)?;
    if let Some(ms) = inner.duration(cx, "max_out_of_orderness")? {
        spec.max_out_of_orderness_ms = ms;
    }
    if let Some(ms) = inner.duration(cx, "idle_timeout")? {
        if ms <= 0 {
            let (node, path) = inner.get("idle_timeout").expect("just read");
            return Err(cx.err(node, &path, "idle_timeout must be longer than 0ms"));
        }
        spec.idle_timeout_ms = Some(ms);
    }
    inner.finish(cx, &["max_out_of_orderness", "idle_timeout"])?;
    Ok(spec)
}

const WINDOW_KEYS: &[&str] = &[
    "type",
    "size",
    "slide",
    "step",
    "gap",
    "time",
    "allowed_lateness",
    "late_output",
];

/// A `window:` mapping.
pub(super) fn decode_window(cx: &Cx<'_>, node: &Node, path: &str) -> Result<WindowSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let kind = decode_window_kind(cx, &mut fields)?;
    let time = match fields.get("time") {
        None => TimeDomain::Event,
        Some((node, key_path)) => match scalar(cx, node, &key_path)? {
            "event" | "event_time" => TimeDomain::Event,
            "processing" | "processing_time" => TimeDomain::Processing,
            other => {
                return Err(cx.err(
                    node,
                    &key_path,
                    unknown_choice("window time", other, &["event", "processing"]),
                ))
            }
        },
    };
    let allowed_lateness_ms = fields.duration(cx, "allowed_lateness")?.unwrap_or(0);
    let late_output = match fields.get("late_output") {
        None => None,
        Some((node, key_path)) => Some(Named {
            name: scalar(cx, node, &key_path)?.to_string(),
            pos: node.pos,
        }),
    };
    refuse_other_kinds_keys(cx, &mut fields, kind)?;
    fields.finish(cx, WINDOW_KEYS)?;
    Ok(WindowSpec {
        kind,
        time,
        allowed_lateness_ms,
        late_output,
        path: path.to_string(),
        pos: node.pos,
    })
}

/// The window's `type` and the sizes it takes.
fn decode_window_kind(cx: &Cx<'_>, fields: &mut Fields<'_>) -> Result<WindowKind, SpecError> {
    let (type_node, type_path) = fields.required(cx, "type")?;
    Ok(match scalar(cx, type_node, &type_path)? {
        "tumbling" | "tumble" => WindowKind::Tumbling {
            size_ms: fields.positive_duration(cx, "size")?,
        },
        "hop" | "hopping" | "sliding" | "slide" => {
            let size_ms = fields.positive_duration(cx, "size")?;
            let slide_ms = fields.positive_duration(cx, "slide")?;
            if slide_ms > size_ms {
                let (node, path) = fields.get("slide").expect("just read");
                return Err(cx.err(
                    node,
                    &path,
                    "slide must not be longer than size (rows would fall between windows)",
                ));
            }
            WindowKind::Hop { size_ms, slide_ms }
        }
        "cumulate" | "cumulative" => {
            let size_ms = fields.positive_duration(cx, "size")?;
            let step_ms = fields.positive_duration(cx, "step")?;
            if step_ms > size_ms || size_ms % step_ms != 0 {
                let (node, path) = fields.get("step").expect("just read");
                return Err(cx.err(
                    node,
                    &path,
                    "size must be a whole number of steps (a cumulate window grows by `step` up to `size`)",
                ));
            }
            WindowKind::Cumulate { step_ms, size_ms }
        }
        "session" => WindowKind::Session {
            gap_ms: fields.positive_duration(cx, "gap")?,
        },
        other => {
            return Err(cx.err(
                type_node,
                &type_path,
                unknown_choice(
                    "window type",
                    other,
                    &["tumbling", "hop", "cumulate", "session"],
                ),
            ))
        }
    })
}

/// Refuses the keys of the other window types (`gap` on a tumbling window).
fn refuse_other_kinds_keys(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    kind: WindowKind,
) -> Result<(), SpecError> {
    let unused: &[&str] = match kind {
        WindowKind::Tumbling { .. } => &["slide", "step", "gap"],
        WindowKind::Hop { .. } => &["step", "gap"],
        WindowKind::Cumulate { .. } => &["slide", "gap"],
        WindowKind::Session { .. } => &["size", "slide", "step"],
    };
    for key in unused {
        if let Some((node, key_path)) = fields.get(key) {
            return Err(cx.err(
                node,
                &key_path,
                format!("a {} window has no `{key}`", window_name(kind)),
            ));
        }
    }
    Ok(())
}

fn window_name(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::Tumbling { .. } => "tumbling",
        WindowKind::Hop { .. } => "hop",
        WindowKind::Cumulate { .. } => "cumulate",
        WindowKind::Session { .. } => "session",
    }
}

/// `group_by:` as a list (of field names or expressions) or a mapping of name to expression.
pub(super) fn decode_group_by(
    cx: &Cx<'_>,
    node: &Node,
    path: &str,
) -> Result<Vec<GroupKey>, SpecError> {
    match &node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok(GroupKey {
                    name: None,
                    expr: expr_text(cx, item, &format!("{path}[{i}]"))?,
                })
            })
            .collect(),
        NodeKind::Map(_) => super::named_entries(cx, node, path)?
            .into_iter()
            .map(|(named, value, value_path)| {
                Ok(GroupKey {
                    name: Some(named),
                    expr: expr_text(cx, value, &value_path)?,
                })
            })
            .collect(),
        _ => Ok(vec![GroupKey {
            name: None,
            expr: expr_text(cx, node, path)?,
        }]),
    }
}

/// The `aggregate` operator: `aggregate:` plus the operator-level `group_by` and `window`.
pub(super) fn decode_aggregate(
    cx: &Cx<'_>,
    fields: &mut Fields<'_>,
    node: &Node,
    path: &str,
) -> Result<AggregateSpec, SpecError> {
    let aggregates = super::assignments(cx, node, path)?;
    let group_by = match fields.get("group_by") {
        None => Vec::new(),
        Some((node, path)) => decode_group_by(cx, node, &path)?,
    };
    let window = match fields.get("window") {
        None => None,
        Some((node, path)) => Some(decode_window(cx, node, &path)?),
    };
    Ok(AggregateSpec {
        group_by,
        window,
        aggregates,
    })
}

/// The `top:` mapping.
pub(super) fn decode_top(cx: &Cx<'_>, node: &Node, path: &str) -> Result<TopSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let n = fields
        .u64(cx, "n")?
        .ok_or_else(|| cx.err(node, path, "missing required key `n`"))?;
    if !(1..=1_000_000).contains(&n) {
        let (node, path) = fields.get("n").expect("just read");
        return Err(cx.err(node, &path, "n must be in 1..=1000000"));
    }
    let (order_node, order_path) = fields.required(cx, "order_by")?;
    let order_by = decode_order_by(cx, order_node, &order_path)?;
    let group_by = match fields.get("group_by") {
        None => Vec::new(),
        Some((node, path)) => decode_group_by(cx, node, &path)?,
    };
    let with_ties = fields.bool(cx, "with_ties")?.unwrap_or(false);
    let window = match fields.get("window") {
        None => None,
        Some((node, path)) => Some(decode_window(cx, node, &path)?),
    };
    fields.finish(cx, &["n", "order_by", "group_by", "with_ties", "window"])?;
    Ok(TopSpec {
        n,
        order_by,
        group_by,
        with_ties,
        window,
    })
}

const LOOKUP_KEYS: &[&str] = &[
    "path",
    "format",
    "schema",
    "csv_header",
    "key",
    "table_key",
    "right_prefix",
];

/// The `lookup:` mapping.
pub(super) fn decode_lookup(cx: &Cx<'_>, node: &Node, path: &str) -> Result<LookupSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let (path_node, path_path) = fields.required(cx, "path")?;
    let file = std::path::PathBuf::from(scalar(cx, path_node, &path_path)?);
    super::check_path_lengths(cx, path_node, &path_path, &file)?;
    let format = super::decode_format(cx, &mut fields)?;
    let schema = super::decode_schema(cx, &mut fields)?;
    let csv_header = fields.bool(cx, "csv_header")?.unwrap_or(true);
    let (key_node, key_path) = fields.required(cx, "key")?;
    let key = super::key_list(cx, key_node, &key_path)?;
    let (table_node, table_path) = fields.required(cx, "table_key")?;
    let table_key = super::name_list(cx, table_node, &table_path)?;
    if table_key.len() != key.len() {
        return Err(cx.err(
            table_node,
            &table_path,
            format!(
                "table_key names {} fields but key has {} expressions; they pair up in order",
                table_key.len(),
                key.len()
            ),
        ));
    }
    let right_prefix = fields.string(cx, "right_prefix")?;
    fields.finish(cx, LOOKUP_KEYS)?;
    Ok(LookupSpec {
        path: file,
        path_pos: path_node.pos,
        format,
        schema,
        csv_header,
        key,
        table_key,
        right_prefix,
    })
}

/// The `process:` mapping.
pub(super) fn decode_process(
    cx: &Cx<'_>,
    node: &Node,
    path: &str,
) -> Result<ProcessSpec, SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let (function_node, function_path) = fields.required(cx, "function")?;
    let function = Named {
        name: scalar(cx, function_node, &function_path)?.to_string(),
        pos: function_node.pos,
    };
    let group_by = match fields.get("group_by") {
        None => Vec::new(),
        Some((node, key_path)) => decode_group_by(cx, node, &key_path)?,
    };
    let config = match fields.get("config") {
        None => Vec::new(),
        Some((node, key_path)) => super::named_entries(cx, node, &key_path)?
            .into_iter()
            .map(|(named, value, value_path)| {
                Ok((named, scalar(cx, value, &value_path)?.to_string()))
            })
            .collect::<Result<Vec<_>, SpecError>>()?,
    };
    fields.finish(cx, &["function", "group_by", "config"])?;
    Ok(ProcessSpec {
        function,
        group_by,
        config,
    })
}

const JOIN_KEYS: &[&str] = &[
    "left",
    "right",
    "left_key",
    "right_key",
    "between",
    "retention",
    "right_prefix",
];

/// The `join:` mapping and its two inputs.
pub(super) fn decode_join(
    cx: &Cx<'_>,
    node: &Node,
    path: &str,
) -> Result<(JoinSpec, Vec<Named>), SpecError> {
    let mut fields = Fields::new(cx, node, path)?;
    let input = |fields: &mut Fields<'_>, key: &str| -> Result<Named, SpecError> {
        let (node, key_path) = fields.required(cx, key)?;
        Ok(Named {
            name: scalar(cx, node, &key_path)?.to_string(),
            pos: node.pos,
        })
    };
    let inputs = vec![input(&mut fields, "left")?, input(&mut fields, "right")?];
    let (left_node, left_path) = fields.required(cx, "left_key")?;
    let left_key = super::key_list(cx, left_node, &left_path)?;
    let (right_node, right_path) = fields.required(cx, "right_key")?;
    let right_key = super::key_list(cx, right_node, &right_path)?;
    if left_key.len() != right_key.len() {
        return Err(cx.err(
            right_node,
            &right_path,
            format!(
                "right_key has {} expressions but left_key has {}; keys pair up in order",
                right_key.len(),
                left_key.len()
            ),
        ));
    }
    let between = match fields.get("between") {
        None => None,
        Some((node, key_path)) => match &node.kind {
            NodeKind::Seq(items) if items.len() == 2 => Some((
                expr_text(cx, &items[0], &format!("{key_path}[0]"))?,
                expr_text(cx, &items[1], &format!("{key_path}[1]"))?,
            )),
            _ => {
                return Err(cx.err(
                    node,
                    &key_path,
                    "between takes two expressions of the left row: [lower, upper]",
                ))
            }
        },
    };
    let retention_ms = fields.duration(cx, "retention")?;
    let right_prefix = fields.string(cx, "right_prefix")?;
    fields.finish(cx, JOIN_KEYS)?;
    let spec = JoinSpec {
        left_key,
        right_key,
        between,
        retention_ms,
        right_prefix,
    };
    Ok((spec, inputs))
}

fn decode_order_by(
    cx: &Cx<'_>,
    node: &Node,
    path: &str,
) -> Result<Vec<(ExprText, bool)>, SpecError> {
    let one = |node: &Node, path: &str| -> Result<(ExprText, bool), SpecError> {
        let mut text = expr_text(cx, node, path)?;
        let trimmed = text.text.trim_end();
        let lower = trimmed.to_ascii_lowercase();
        let (cut, descending) = if lower.ends_with(" desc") {
            (trimmed.len() - 5, true)
        } else if lower.ends_with(" asc") {
            (trimmed.len() - 4, false)
        } else {
            (trimmed.len(), false)
        };
        text.text.truncate(cut);
        if text.text.trim().is_empty() {
            return Err(cx.err(node, path, "order_by needs an expression before asc/desc"));
        }
        Ok((text, descending))
    };
    match &node.kind {
        NodeKind::Seq(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(item, &format!("{path}[{i}]")))
            .collect(),
        NodeKind::Seq(_) => Err(cx.err(node, path, "order_by needs at least one expression")),
        _ => Ok(vec![one(node, path)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_take_units_and_bare_milliseconds() {
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("10s"), Some(10_000));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration("2min"), Some(120_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("1d"), Some(86_400_000));
        assert_eq!(parse_duration("250"), Some(250));
        assert_eq!(parse_duration("1_000ms"), Some(1_000));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
