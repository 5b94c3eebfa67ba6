//! The built-in `max_until` (Nexmark q6's "closed auctions"): per key, the maximum of a value
//! field, emitted once when the watermark passes a deadline read from the key's first row.
//!
//! Config: `value` (an i64 or f64 field, required), `until` (a timestamp or i64 field,
//! required), `output` (the result field's name, default `max`). Output: the key fields, the
//! maximum, and the deadline (named and typed as the `until` field). Rows arriving after their key's deadline has passed are ignored, as are NULLs.

use super::timers::KeyTimers;
use super::{config_error, input_field, Collector, KeyedProcess, ProcessContext, ProcessError};
use crate::frontend::expr::Datum;
use crate::record::row::{ArchivedRow, Value, ValueRef};
use crate::record::schema::{DataType, Field, Schema};
use crate::state::{KeyState, KeyedState, StateDescriptor};
use crate::time::watermark::WATERMARK_MIN;

/// Index of the value state holding the running maximum.
const MAX: usize = 0;
/// Index of the value state holding the key's deadline.
const DEADLINE: usize = 1;

#[derive(Debug)]
struct MaxUntil {
    value_index: usize,
    until_index: usize,
    until_type: DataType,
    output: Schema,
    watermark: i64,
    /// Deadline → keys closing then (the state's timers; rebuilt from state on restore).
    timers: KeyTimers,
}

pub(super) fn max_until(cx: &ProcessContext<'_>) -> Result<Box<dyn KeyedProcess>, ProcessError> {
    let config = cx.config;
    config.check_keys(&["value", "until", "output"])?;
    let value_index = input_field(cx.input, config.required_str("value")?)?;
    let until_name = config.required_str("until")?;
    let until_index = cx
        .input
        .index_of(until_name)
        .ok_or_else(|| config_error("until", format!("names no input field `{until_name}`")))?;
    let value_field = &cx.input.fields()[value_index];
    if !matches!(value_field.data_type, DataType::I64 | DataType::F64) {
        let reason = format!(
            "must name an i64 or f64 field, found {}",
            value_field.data_type
        );
        return Err(config_error("value", reason));
    }
    let until_type = cx.input.fields()[until_index].data_type;
    if !matches!(until_type, DataType::Timestamp | DataType::I64) {
        let reason = format!("must name a timestamp or i64 field, found {until_type}");
        return Err(config_error("until", reason));
    }
    let name = config.get("output").unwrap_or("max");
    if cx
        .keys
        .iter()
        .any(|k| k.name == name || k.name == until_name)
        || name == until_name
    {
        let reason = format!(
            "`{name}` and `{until_name}` follow the keys in the output, so neither may be a key field or equal the other"
        );
        return Err(config_error("output", reason));
    }
    let mut fields = cx.keys.to_vec();
    fields.push(Field::new(name, value_field.data_type));
    fields.push(Field::new(until_name, until_type));
    Ok(Box::new(MaxUntil {
        value_index,
        until_index,
        until_type,
        output: Schema::new(fields),
        watermark: WATERMARK_MIN,
        timers: KeyTimers::default(),
    }))
}

impl KeyedProcess for MaxUntil {
    fn state_descriptors(&self) -> Vec<StateDescriptor> {
        vec![
            StateDescriptor::value("max"),
            StateDescriptor::value("deadline"),
        ]
    }

    fn output_schema(&self) -> Schema {
        self.output.clone()
    }

    fn process_row(
        &mut self,
        _key: &[Datum<'_>],
        row: &ArchivedRow,
        _row_time: Option<i64>,
        state: &mut KeyState<'_>,
        _out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        let deadline = match state.value(DEADLINE).get() {
            Some(Value::Timestamp(ms) | Value::I64(ms)) => *ms,
            _ => {
                let Some(ms) = row
                    .get(self.until_index)
                    .and_then(|v| v.as_timestamp().or_else(|| v.as_i64()))
                else {
                    return Ok(());
                };
                state.value(DEADLINE).set(Value::Timestamp(ms));
                let key: Vec<Value> = state.key().to_vec();
                self.timers.add(ms, &key);
                ms
            }
        };
        if deadline <= self.watermark {
            return Ok(()); // The key has closed: too late.
        }
        let candidate = match row.get(self.value_index).map(|v| v.as_value_ref()) {
            Some(ValueRef::I64(v)) => Value::I64(v),
            Some(ValueRef::F64(v)) => Value::F64(v),
            _ => return Ok(()),
        };
        let mut max = state.value(MAX);
        let higher = match (max.get(), &candidate) {
            (Some(Value::I64(held)), Value::I64(v)) => v > held,
            (Some(Value::F64(held)), Value::F64(v)) => v.total_cmp(held).is_gt(),
            _ => true,
        };
        if higher {
            max.set(candidate);
        }
        Ok(())
    }

    fn on_restore(&mut self, state: &mut KeyedState, key_group: u32) {
        self.timers
            .restore(state, key_group, self.watermark, |key| {
                match key.value(DEADLINE).get() {
                    Some(Value::Timestamp(ms) | Value::I64(ms)) => Some(*ms),
                    _ => None,
                }
            });
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        state: &mut KeyedState,
        out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        self.watermark = self.watermark.max(watermark);
        while let Some((deadline, keys)) = self.timers.pop_due(watermark) {
            for key in keys {
                let mut held = state.key(&key, watermark);
                if let Some(max) = held.value(MAX).get().cloned() {
                    let mut row = key.clone();
                    row.push(max);
                    row.push(match self.until_type {
                        DataType::I64 => Value::I64(deadline),
                        _ => Value::Timestamp(deadline),
                    });
                    out.emit(row);
                }
                held.clear();
            }
        }
        Ok(())
    }
}
