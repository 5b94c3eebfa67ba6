//! The built-in `over_rows`: SQL's `AGG(x) OVER (PARTITION BY k ORDER BY t ROWS BETWEEN n
//! PRECEDING AND CURRENT ROW)` (Nexmark q6 in SQL). Per key, every row is emitted once, in
//! `order` order, with aggregates over itself and the `preceding` rows before it.
//!
//! Rows wait until the watermark reaches their `order` time, so the result does not depend on
//! the order rows arrive in; a row whose `order` time the watermark has already reached is late
//! and dropped (as in Flink). The input may be an update stream: while a row waits, a `-U` or
//! `-D` equal to it takes it back, so an aggregate per group whose changes all come before the
//! watermark passes the row's time (such as the maximum bid of an auction, ordered by the
//! auction's close) settles to its last value before it is read.
//!
//! Config: `order` (a timestamp or i64 field, required), `preceding` (rows before the current
//! one in the frame, default 0), `aggregates` (required: `name = func(field)` items separated
//! by commas, `func` one of `avg`, `sum`, `count`, `min`, `max`, and `count(*)`). Output: the
//! input fields (without an update stream's `op`), then the aggregates. State per key: the
//! waiting rows and the aggregated values of the last `preceding` rows.

use super::timers::KeyTimers;
use super::{config_error, Collector, KeyedProcess, ProcessContext, ProcessError};
use crate::frontend::expr::Datum;
use crate::frontend::plan::OP_FIELD;
use crate::record::row::{ArchivedRow, Value};
use crate::record::schema::{DataType, Field, Schema};
use crate::state::{KeyState, KeyedState, StateDescriptor};
use crate::time::watermark::WATERMARK_MIN;

/// Index of the list state of waiting rows: `[order, fields...]`, sorted by `order`.
const PENDING: usize = 0;
/// Index of the list state of the frame: per row, the aggregates' argument values.
const FRAME: usize = 1;

/// An aggregate function over the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Avg,
    Sum,
    Count,
    Min,
    Max,
}

/// One output aggregate: its function and the input field it reads (none for `count(*)`).
#[derive(Debug, Clone)]
struct Call {
    func: Func,
    field: Option<usize>,
}

#[derive(Debug)]
struct OverRows {
    /// Whether input rows lead with an update stream's `op`.
    changelog: bool,
    order_index: usize,
    preceding: usize,
    calls: Vec<Call>,
    output: Schema,
    watermark: i64,
    /// Earliest waiting time → keys with rows waiting then (rebuilt from state on restore).
    timers: KeyTimers,
}

pub(super) fn over_rows(cx: &ProcessContext<'_>) -> Result<Box<dyn KeyedProcess>, ProcessError> {
    let config = cx.config;
    config.check_keys(&["order", "preceding", "aggregates"])?;
    let fields = cx.input.fields();
    let changelog = cx.changelog;
    let first = usize::from(changelog);
    if changelog && fields.first().is_none_or(|f| f.name != OP_FIELD) {
        return Err(ProcessError::Input {
            message: format!("an update stream's rows lead with `{OP_FIELD}`"),
        });
    }
    let order = config.required_str("order")?;
    let order_index = field_index(cx.input, first, order, "order")?;
    let order_type = fields[order_index].data_type;
    if !matches!(order_type, DataType::Timestamp | DataType::I64) {
        let reason = format!("must name a timestamp or i64 field, but `{order}` is {order_type}");
        return Err(config_error("order", reason));
    }
    let preceding = config.int("preceding")?.unwrap_or(0);
    let preceding = usize::try_from(preceding)
        .map_err(|_| config_error("preceding", format!("must be 0 or more, found {preceding}")))?;
    let mut output: Vec<Field> = fields[first..].to_vec();
    let calls = parse_calls(cx, first, &mut output)?;
    Ok(Box::new(OverRows {
        changelog,
        order_index,
        preceding,
        calls,
        output: Schema::new(output),
        watermark: WATERMARK_MIN,
        timers: KeyTimers::default(),
    }))
}

/// The `aggregates` of the config, each's output field added to `output` (the input fields
/// from `first`).
fn parse_calls(
    cx: &ProcessContext<'_>,
    first: usize,
    output: &mut Vec<Field>,
) -> Result<Vec<Call>, ProcessError> {
    let fields = cx.input.fields();
    let mut calls = Vec::new();
    let text = cx.config.required_str("aggregates")?;
    for item in text.split(',') {
        let (name, call) = parse_call(item).ok_or_else(|| {
            config_error(
                "aggregates",
                format!(
                    "`{}` is not `name = func(field)` with func one of avg, sum, count, min, max",
                    item.trim()
                ),
            )
        })?;
        if output.iter().any(|f| f.name == name) {
            let reason = format!(
                "names `{name}` twice (the output holds the input fields, then the aggregates)"
            );
            return Err(config_error("aggregates", reason));
        }
        let field = match call.1 {
            None if call.0 == Func::Count => None,
            None => {
                return Err(config_error(
                    "aggregates",
                    format!("`{name}`: only count takes `*`"),
                ))
            }
            Some(arg) => Some(field_index(cx.input, first, arg, "aggregates")?),
        };
        let arg_type = field.map(|i| fields[i].data_type);
        let data_type = match (call.0, arg_type) {
            (Func::Count, _) => DataType::I64,
            (Func::Avg, Some(DataType::I64 | DataType::F64)) => DataType::F64,
            (Func::Sum, Some(t @ (DataType::I64 | DataType::F64))) => t,
            (Func::Min | Func::Max, Some(t)) => t,
            (_, t) => {
                let reason = format!(
                    "`{name}`: avg and sum take an i64 or f64 field, not {}",
                    t.map_or("nothing".to_string(), |t| t.to_string())
                );
                return Err(config_error("aggregates", reason));
            }
        };
        let nullable = call.0 != Func::Count;
        output.push(Field {
            name: name.to_string(),
            data_type,
            nullable,
        });
        calls.push(Call {
            func: call.0,
            field,
        });
    }
    Ok(calls)
}

/// `name = func(arg)` or `name = count(*)`: the name, the function and the argument.
fn parse_call(item: &str) -> Option<(&str, (Func, Option<&str>))> {
    let (name, call) = item.split_once('=')?;
    let name = name.trim();
    let (func, rest) = call.trim().split_once('(')?;
    let arg = rest.strip_suffix(')')?.trim();
    let func = match func.trim().to_ascii_lowercase().as_str() {
        "avg" => Func::Avg,
        "sum" => Func::Sum,
        "count" => Func::Count,
        "min" => Func::Min,
        "max" => Func::Max,
        _ => return None,
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    };
    if !valid(name) || !(arg == "*" || valid(arg)) {
        return None;
    }
    Some((name, (func, (arg != "*").then_some(arg))))
}

/// The index of input field `name` (not the `op` of an update stream), or an error for `key`.
fn field_index(input: &Schema, first: usize, name: &str, key: &str) -> Result<usize, ProcessError> {
    let names: Vec<&str> = input.fields()[first..]
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    if let Some(at) = names.iter().position(|n| *n == name) {
        return Ok(first + at);
    }
    let hint = match crate::frontend::spec::closest(name, &names) {
        Some(close) => format!("; did you mean `{close}`?"),
        None => format!("; the input fields are: {}", names.join(", ")),
    };
    Err(config_error(
        key,
        format!("names no input field `{name}`{hint}"),
    ))
}

impl OverRows {
    /// Emits the waiting rows of `key` up to the watermark, in order.
    fn settle(&self, key: &mut KeyState<'_>, out: &mut dyn Collector) {
        let first = usize::from(self.changelog);
        loop {
            let next = key
                .list(PENDING)
                .get(0)
                .and_then(|row| row.first()?.as_i64_time());
            if next.is_none_or(|t| t > self.watermark) {
                return;
            }
            let Some(row) = key.list(PENDING).pop_front() else {
                return;
            };
            let fields = &row[1..];
            let args: Vec<Value> = self
                .calls
                .iter()
                .map(|call| match call.field {
                    Some(i) => fields[i - first].clone(),
                    None => Value::Bool(true),
                })
                .collect();
            let mut frame = key.list(FRAME);
            frame.push(args);
            let mut output: Vec<Value> = fields.to_vec();
            for (index, call) in self.calls.iter().enumerate() {
                output.push(aggregate(call.func, frame.iter().map(|r| &r[index])));
            }
            frame.retain_last(self.preceding);
            out.emit(output);
        }
    }
}

/// The time of a key's earliest waiting row.
fn next_time(key: &mut KeyState<'_>) -> Option<i64> {
    key.list(PENDING)
        .get(0)
        .and_then(|r| r.first()?.as_i64_time())
}

/// The aggregate of `values`, NULLs left out (`count(*)` passes `true` for every row).
fn aggregate<'a>(func: Func, values: impl Iterator<Item = &'a Value>) -> Value {
    let values = values.filter(|v| !matches!(v, Value::Null));
    match func {
        Func::Count => Value::I64(values.count() as i64),
        Func::Min | Func::Max => values
            .fold(None::<&Value>, |best, v| match best {
                Some(b) => {
                    let order = crate::state::total_cmp(v.as_ref(), b.as_ref());
                    let better = if func == Func::Min {
                        order.is_lt()
                    } else {
                        order.is_gt()
                    };
                    Some(if better { v } else { b })
                }
                None => Some(v),
            })
            .cloned()
            .unwrap_or(Value::Null),
        Func::Sum | Func::Avg => {
            let (mut ints, mut floats, mut count, mut float) = (0i128, 0f64, 0i64, false);
            for value in values {
                match value {
                    Value::I64(v) => ints += i128::from(*v),
                    Value::F64(v) => {
                        floats += v;
                        float = true;
                    }
                    _ => continue,
                }
                count += 1;
            }
            match (func, count) {
                (_, 0) => Value::Null,
                (Func::Avg, _) => Value::F64((ints as f64 + floats) / count as f64),
                _ if float => Value::F64(ints as f64 + floats),
                // A sum of i64 past the i64 range wraps, as `sum` does in `aggregate`.
                _ => Value::I64(ints as i64),
            }
        }
    }
}

/// The time of an `order` value held in state (timestamp or i64).
trait AsTime {
    fn as_i64_time(&self) -> Option<i64>;
}

impl AsTime for Value {
    fn as_i64_time(&self) -> Option<i64> {
        match self {
            Value::Timestamp(ms) | Value::I64(ms) => Some(*ms),
            _ => None,
        }
    }
}

impl KeyedProcess for OverRows {
    fn state_descriptors(&self) -> Vec<StateDescriptor> {
        vec![
            StateDescriptor::list("pending"),
            StateDescriptor::list("frame"),
        ]
    }

    fn output_schema(&self) -> Schema {
        self.output.clone()
    }

    fn reads_changelog(&self) -> bool {
        true
    }

    fn process_row(
        &mut self,
        _key: &[Datum<'_>],
        row: &ArchivedRow,
        _row_time: Option<i64>,
        state: &mut KeyState<'_>,
        _out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        let Some(order) = row
            .get(self.order_index)
            .and_then(|v| v.as_timestamp().or_else(|| v.as_i64()))
        else {
            return Ok(()); // No order time: no place in the frame.
        };
        if order <= self.watermark {
            return Ok(()); // Late.
        }
        let retract = self.changelog
            && matches!(row.get(0).and_then(|v| v.as_str()), Some("-U") | Some("-D"));
        let first = usize::from(self.changelog);
        let mut held = Vec::with_capacity(row.len() + 1 - first);
        held.push(Value::Timestamp(order));
        held.extend(
            (first..row.len())
                .filter_map(|i| row.get(i))
                .map(|v| v.to_value()),
        );
        let mut pending = state.list(PENDING);
        if retract {
            let found = pending.iter().position(|r| *r == held[..]);
            if let Some(at) = found {
                pending.remove(at);
            }
            return Ok(());
        }
        let at = pending
            .iter()
            .take_while(|r| r.first().and_then(|v| v.as_i64_time()) <= Some(order))
            .count();
        let earliest = at == 0;
        pending.insert(at, held);
        if earliest {
            let key = state.key().to_vec();
            self.timers.add(order, &key);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        state: &mut KeyedState,
        out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        self.watermark = self.watermark.max(watermark);
        while let Some((_, keys)) = self.timers.pop_due(self.watermark) {
            for key in keys {
                let mut held = state.key(&key, self.watermark);
                self.settle(&mut held, out);
                let next = next_time(&mut held);
                drop(held);
                if let Some(next) = next {
                    self.timers.add(next, &key);
                }
            }
        }
        Ok(())
    }

    fn on_restore(&mut self, state: &mut KeyedState, key_group: u32) {
        self.timers
            .restore(state, key_group, self.watermark, next_time);
    }
}
