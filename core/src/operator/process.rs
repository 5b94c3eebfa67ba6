//! User-written keyed operators: the [`KeyedProcess`] trait, their registry, and built-ins.
//!
//! A process is Rust code registered under a name, so a pipeline file can use it by that
//! name with a small config of string values. The data plane builds one instance per core
//! through its [`ProcessFactory`] and hands it each row with the state of the row's key
//! (see [`crate::state`]); the instance emits output rows. Pure: no IO, no clock.
//!
//! ```
//! use wire_core::frontend::expr::Datum;
//! use wire_core::operator::process::{self, ProcessConfig, ProcessContext};
//! use wire_core::state::KeyedState;
//! use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, Value, ValueRef};
//!
//! let input = Schema::new(vec![
//!     Field::new("seller", DataType::I64),
//!     Field::new("price", DataType::I64),
//! ]);
//! let keys = [Field::new("seller", DataType::I64)];
//! let config: ProcessConfig = [("n", "2"), ("value", "price")].into_iter().collect();
//! let factory = process::lookup("last_n_average").unwrap();
//! let cx = ProcessContext { input: &input, keys: &keys, config: &config, changelog: false };
//! let mut op = factory(&cx).unwrap();
//! assert_eq!(op.output_schema().fields()[1].name, "avg");
//!
//! let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
//! for price in [10, 20, 60] {
//!     builder.push(&[ValueRef::I64(7), ValueRef::I64(price)]).unwrap();
//! }
//! let batch = builder.finish();
//! let mut state = KeyedState::new(op.state_descriptors(), 128);
//! let mut out: Vec<Vec<Value>> = Vec::new();
//! for row in batch.view().rows() {
//!     let key = [Datum::I64(7)];
//!     op.process_row(&key, row, None, &mut state.key(&key, 0), &mut out).unwrap();
//! }
//! assert_eq!(out[2], [Value::I64(7), Value::F64(40.0), Value::I64(2)]);
//! ```

mod max_until;
mod over_rows;
mod timers;

use std::collections::BTreeMap;
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::frontend::expr::Datum;
use crate::record::row::{ArchivedRow, AsValueRef, Value, ValueRef};
use crate::record::schema::{DataType, Field, Schema};
use crate::state::{KeyState, KeyedState, StateDescriptor};

/// A keyed operator written in Rust: per key, it reads and writes its declared state and
/// emits rows.
///
/// Rows emitted by [`KeyedProcess::process_row`] carry the input row's event time; rows
/// emitted by [`KeyedProcess::on_watermark`] carry the watermark. Before calling
/// `on_watermark` the data plane expires state with [`KeyedState::expire`] at the watermark,
/// and it passes the watermark as the time of [`KeyedState::key`].
///
/// ```
/// use wire_core::frontend::expr::Datum;
/// use wire_core::operator::process::{Collector, KeyedProcess, ProcessError};
/// use wire_core::state::{KeyState, StateDescriptor};
/// use wire_core::{ArchivedRow, DataType, Field, Schema, Value};
///
/// /// Emits each key the first time it is seen.
/// struct FirstSeen;
///
/// impl KeyedProcess for FirstSeen {
///     fn state_descriptors(&self) -> Vec<StateDescriptor> {
///         vec![StateDescriptor::value("seen")]
///     }
///     fn output_schema(&self) -> Schema {
///         Schema::new(vec![Field::new("key", DataType::I64)])
///     }
///     fn process_row(
///         &mut self,
///         key: &[Datum<'_>],
///         _row: &ArchivedRow,
///         _row_time: Option<i64>,
///         state: &mut KeyState<'_>,
///         out: &mut dyn Collector,
///     ) -> Result<(), ProcessError> {
///         let mut seen = state.value(0);
///         if seen.get().is_none() {
///             seen.set(Value::Bool(true));
///             if let Some(Datum::I64(k)) = key.first() {
///                 out.emit(vec![Value::I64(*k)]);
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait KeyedProcess {
    /// The states it keeps per key; [`KeyState`]'s accessors take their indexes.
    fn state_descriptors(&self) -> Vec<StateDescriptor>;

    /// The schema of the rows it emits.
    fn output_schema(&self) -> Schema;

    /// Handles one input row of `key` (the group-by values, in key order), whose event time
    /// is `row_time` if the input has one, with that key's `state`; emits into `out`.
    fn process_row(
        &mut self,
        key: &[Datum<'_>],
        row: &ArchivedRow,
        row_time: Option<i64>,
        state: &mut KeyState<'_>,
        out: &mut dyn Collector,
    ) -> Result<(), ProcessError>;

    /// Whether it takes an update stream (rows led by `op`: `+I`, `-U`, `+U`, `-D`); the
    /// default is no, and the planner refuses a changelog input.
    fn reads_changelog(&self) -> bool {
        false
    }

    /// The state of `key_group` was restored from a checkpoint: rebuild what the instance
    /// keeps outside its state (timers). The default does nothing.
    fn on_restore(&mut self, state: &mut KeyedState, key_group: u32) {
        let _ = (state, key_group);
    }

    /// The input watermark advanced to `watermark`; the default does nothing.
    fn on_watermark(
        &mut self,
        watermark: i64,
        state: &mut KeyedState,
        out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        let _ = (watermark, state, out);
        Ok(())
    }
}

/// Where a [`KeyedProcess`] puts its output rows, values in [`KeyedProcess::output_schema`]
/// order.
///
/// ```
/// use wire_core::operator::process::Collector;
/// use wire_core::Value;
///
/// let mut out: Vec<Vec<Value>> = Vec::new();
/// out.emit(vec![Value::I64(1)]);
/// assert_eq!(out, [[Value::I64(1)]]);
/// ```
pub trait Collector {
    /// Emits one row.
    fn emit(&mut self, row: Vec<Value>);
}

/// What a factory gets to build a process: the input schema, the group-by key fields (names
/// and types, in key order) and the config written in the pipeline file.
#[derive(Debug, Clone, Copy)]
pub struct ProcessContext<'a> {
    /// The input rows' schema.
    pub input: &'a Schema,
    /// The group-by keys as output fields: their names and types.
    pub keys: &'a [Field],
    /// The process's config.
    pub config: &'a ProcessConfig,
    /// Whether the input is an update stream, its rows led by `op` (see
    /// [`KeyedProcess::reads_changelog`]).
    pub changelog: bool,
}

/// Builds a process from its context, or says what is wrong with the config or input: the
/// planner calls it once to check the pipeline and learn the output schema, and the data
/// plane once per core instance.
pub type ProcessFactory = fn(&ProcessContext<'_>) -> Result<Box<dyn KeyedProcess>, ProcessError>;

/// A process's config: keys mapped to scalar strings as written in the pipeline file, read
/// through typed getters whose errors name the key.
///
/// ```
/// use wire_core::operator::process::ProcessConfig;
///
/// let config: ProcessConfig = [("n", "0"), ("ttl", "10s")].into_iter().collect();
/// assert_eq!(config.duration_ms("ttl").unwrap(), Some(10_000));
/// assert_eq!(config.positive_int("missing").unwrap(), None);
/// let error = config.positive_int("n").unwrap_err();
/// assert_eq!(error.to_string(), "config `n` must be a positive integer, found `0`");
/// let error = config.check_keys(&["m", "ttl"]).unwrap_err();
/// assert_eq!(error.to_string(), "config `n` is not a setting of this process; did you mean `m`?");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessConfig {
    entries: BTreeMap<String, String>,
}

/// Names mapped to process factories.
///
/// ```
/// use wire_core::operator::process::{ProcessError, ProcessRegistry};
///
/// let mut registry = ProcessRegistry::with_builtins();
/// let factory = registry.lookup("last_n_average").unwrap();
/// assert!(registry.register("my_average", factory).is_ok());
/// assert_eq!(registry.names(), ["last_n_average", "max_until", "my_average", "over_rows"]);
/// let error = registry.lookup("my_averag").err().unwrap();
/// assert!(error.to_string().starts_with("unknown process `my_averag`; did you mean `my_average`?"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessRegistry {
    factories: BTreeMap<String, ProcessFactory>,
}

/// Why a process cannot be found, registered, built or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// A config value is missing, malformed or does not fit the input.
    #[error("config `{key}` {reason}")]
    Config {
        /// The config key.
        key: String,
        /// What is wrong, as the rest of the sentence after the key.
        reason: String,
    },
    /// No process is registered under the name.
    #[error(
        "unknown process `{name}`{}; the registered processes are: {}",
        suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default(),
        registered.join(", ")
    )]
    Unknown {
        /// The name asked for.
        name: String,
        /// The closest registered name, if one is close.
        suggestion: Option<String>,
        /// Every registered name, sorted.
        registered: Vec<String>,
    },
    /// The name is taken.
    #[error("a process named `{name}` is already registered")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The name cannot be written in a pipeline file.
    #[error(
        "`{name}` cannot name a process: use lower-case letters, digits and `_`, starting \
         with a letter"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The input schema or the group-by keys do not suit the process.
    #[error("{message}")]
    Input {
        /// What does not fit.
        message: String,
    },
    /// The process failed on a row or watermark.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// The built-in processes, registered in every registry made by
/// [`ProcessRegistry::with_builtins`] and in the global one.
///
/// ```
/// let names: Vec<&str> = wire_core::operator::process::builtins().iter().map(|(name, _)| *name).collect();
/// assert_eq!(names, ["last_n_average", "max_until", "over_rows"]);
/// ```
pub fn builtins() -> &'static [(&'static str, ProcessFactory)] {
    &[
        ("last_n_average", last_n_average),
        ("max_until", max_until::max_until),
        ("over_rows", over_rows::over_rows),
    ]
}

/// Registers `factory` as `name` in the process-wide registry (which starts with the
/// built-ins), for pipelines to use from then on.
///
/// ```
/// use wire_core::operator::process;
///
/// let factory = process::lookup("last_n_average").unwrap();
/// process::register("average_of_last", factory).unwrap();
/// assert!(process::lookup("average_of_last").is_ok());
/// assert!(process::register("average_of_last", factory).is_err());
/// ```
pub fn register(name: &str, factory: ProcessFactory) -> Result<(), ProcessError> {
    let mut registry = global().write().unwrap_or_else(PoisonError::into_inner);
    registry.register(name, factory)
}

/// The factory registered as `name` in the process-wide registry.
///
/// ```
/// let error = wire_core::operator::process::lookup("last_n_averge").err().unwrap();
/// assert!(error.to_string().contains("did you mean `last_n_average`?"));
/// ```
pub fn lookup(name: &str) -> Result<ProcessFactory, ProcessError> {
    let registry = global().read().unwrap_or_else(PoisonError::into_inner);
    registry.lookup(name)
}

/// The names in the process-wide registry, sorted.
///
/// ```
/// assert!(wire_core::operator::process::registered_names().contains(&"last_n_average".to_string()));
/// ```
pub fn registered_names() -> Vec<String> {
    let registry = global().read().unwrap_or_else(PoisonError::into_inner);
    registry.names().into_iter().map(str::to_owned).collect()
}

impl Collector for Vec<Vec<Value>> {
    fn emit(&mut self, row: Vec<Value>) {
        self.push(row);
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ProcessConfig {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ProcessConfig {
        ProcessConfig {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl ProcessConfig {
    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.entries.insert(key.into(), value.into())
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    /// Fails on the first key not in `allowed`, suggesting the closest allowed one.
    pub fn check_keys(&self, allowed: &[&str]) -> Result<(), ProcessError> {
        let Some(unknown) = self.keys().find(|key| !allowed.contains(key)) else {
            return Ok(());
        };
        let hint = match crate::frontend::spec::closest(unknown, allowed) {
            Some(close) => format!("; did you mean `{close}`?"),
            None if allowed.is_empty() => "; this process takes no settings".to_string(),
            None => format!("; the settings are: {}", allowed.join(", ")),
        };
        Err(config_error(
            unknown,
            format!("is not a setting of this process{hint}"),
        ))
    }

    /// The value of `key`, which must be set.
    pub fn required_str(&self, key: &str) -> Result<&str, ProcessError> {
        self.get(key)
            .ok_or_else(|| config_error(key, "is required".into()))
    }

    /// `key` as an integer above zero, if set.
    pub fn positive_int(&self, key: &str) -> Result<Option<u64>, ProcessError> {
        self.parsed(key, "a positive integer", |text| {
            text.parse::<u64>().ok().filter(|n| *n > 0)
        })
    }

    /// `key` as an integer, if set.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ProcessError> {
        self.parsed(key, "an integer", |text| text.parse().ok())
    }

    /// `key` as a finite number, if set.
    pub fn float(&self, key: &str) -> Result<Option<f64>, ProcessError> {
        self.parsed(key, "a number", |text| {
            text.parse::<f64>().ok().filter(|v| v.is_finite())
        })
    }

    /// `key` as `true` or `false`, if set.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ProcessError> {
        self.parsed(key, "`true` or `false`", |text| text.parse().ok())
    }

    /// `key` as a positive duration such as `500ms`, `10s`, `2m`, `1h`, `1d` or bare
    /// milliseconds, in milliseconds, if set.
    pub fn duration_ms(&self, key: &str) -> Result<Option<i64>, ProcessError> {
        self.parsed(key, "a positive duration such as `10s`", |text| {
            crate::frontend::spec::parse_duration(text).filter(|ms| *ms > 0)
        })
    }

    fn parsed<T>(
        &self,
        key: &str,
        wanted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ProcessError> {
        let Some(text) = self.get(key) else {
            return Ok(None);
        };
        match parse(text.trim()) {
            Some(value) => Ok(Some(value)),
            None => Err(config_error(
                key,
                format!("must be {wanted}, found `{text}`"),
            )),
        }
    }
}

impl ProcessRegistry {
    /// A registry with no processes.
    pub fn new() -> ProcessRegistry {
        ProcessRegistry::default()
    }

    /// A registry holding the [`builtins`].
    pub fn with_builtins() -> ProcessRegistry {
        let factories = builtins()
            .iter()
            .map(|(name, factory)| (name.to_string(), *factory))
            .collect();
        ProcessRegistry { factories }
    }

    /// Registers `factory` as `name`: lower-case letters, digits and `_`, starting with a
    /// letter, and not taken yet.
    pub fn register(&mut self, name: &str, factory: ProcessFactory) -> Result<(), ProcessError> {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(ProcessError::InvalidName { name: name.into() });
        }
        if self.factories.contains_key(name) {
            return Err(ProcessError::Duplicate { name: name.into() });
        }
        self.factories.insert(name.to_string(), factory);
        Ok(())
    }

    /// The factory registered as `name`; the error lists the registered names and suggests
    /// the closest.
    pub fn lookup(&self, name: &str) -> Result<ProcessFactory, ProcessError> {
        if let Some(factory) = self.factories.get(name) {
            return Ok(*factory);
        }
        let registered = self.names();
        Err(ProcessError::Unknown {
            name: name.to_string(),
            suggestion: crate::frontend::spec::closest(name, &registered).map(str::to_owned),
            registered: registered.into_iter().map(str::to_owned).collect(),
        })
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }
}

/// The keys holding state in `key_group` (for [`KeyedProcess::on_restore`]).
fn keys_in_group(state: &KeyedState, key_group: u32) -> Vec<Vec<Value>> {
    state
        .keys()
        .filter(|k| state.key_group_of(k) == key_group)
        .map(<[Value]>::to_vec)
        .collect()
}

fn global() -> &'static RwLock<ProcessRegistry> {
    static GLOBAL: OnceLock<RwLock<ProcessRegistry>> = OnceLock::new();
    GLOBAL.get_or_init(|| RwLock::new(ProcessRegistry::with_builtins()))
}

fn config_error(key: &str, reason: String) -> ProcessError {
    ProcessError::Config {
        key: key.to_string(),
        reason,
    }
}

// The built-in `last_n_average` (Nexmark q6).

/// `last_n_average`: per key, the average of the last `n` values of a numeric field, in
/// arrival order or by an `order` field, emitted for every row. Config: `value` (the field,
/// required), `n` (default 10), `order` (optional: "last" means greatest by this field, so
/// the result does not depend on the order rows arrive in), `ttl` (optional: forget a key
/// this long after its last value).
/// Output: the key fields, `avg: f64` (NULL before the first value) and `count: i64`
/// (how many values `avg` covers). NULL values are not counted.
#[derive(Debug)]
struct LastNAverage {
    n: usize,
    value_index: usize,
    /// The field the values are ordered by, if not arrival.
    order_index: Option<usize>,
    ttl_ms: Option<i64>,
    output: Schema,
}

/// The index of the list state holding the last values, one single-value row each.
const LAST_VALUES: usize = 0;
const DEFAULT_N: u64 = 10;
const AVG_FIELD: &str = "avg";
const COUNT_FIELD: &str = "count";

fn last_n_average(cx: &ProcessContext<'_>) -> Result<Box<dyn KeyedProcess>, ProcessError> {
    let config = cx.config;
    config.check_keys(&["n", "value", "order", "ttl"])?;
    let n = config.positive_int("n")?.unwrap_or(DEFAULT_N);
    let n = usize::try_from(n)
        .map_err(|_| config_error("n", format!("must be at most {}, found `{n}`", usize::MAX)))?;
    let value = config.required_str("value")?;
    let value_index = input_field(cx.input, value)?;
    let value_field = &cx.input.fields()[value_index];
    if !matches!(value_field.data_type, DataType::I64 | DataType::F64) {
        let reason = format!(
            "must name a number field (i64 or f64), but `{value}` is {}",
            value_field.data_type
        );
        return Err(config_error("value", reason));
    }
    let mut fields = cx.keys.to_vec();
    if let Some(clash) = fields
        .iter()
        .find(|f| f.name == AVG_FIELD || f.name == COUNT_FIELD)
    {
        return Err(ProcessError::Input {
            message: format!(
                "last_n_average outputs `{AVG_FIELD}` and `{COUNT_FIELD}` after the keys, so \
                 no key may be named `{}`; rename the key",
                clash.name
            ),
        });
    }
    fields.push(Field {
        name: AVG_FIELD.into(),
        data_type: DataType::F64,
        nullable: value_field.nullable,
    });
    fields.push(Field::new(COUNT_FIELD, DataType::I64));
    let order_index = match config.get("order") {
        Some(name) => Some(
            cx.input
                .index_of(name)
                .ok_or_else(|| config_error("order", format!("names no input field `{name}`")))?,
        ),
        None => None,
    };
    Ok(Box::new(LastNAverage {
        n,
        value_index,
        order_index,
        ttl_ms: config.duration_ms("ttl")?,
        output: Schema::new(fields),
    }))
}

/// The index of input field `name`, or an error for config `value` that suggests a name.
fn input_field(input: &Schema, name: &str) -> Result<usize, ProcessError> {
    if let Some(index) = input.index_of(name) {
        return Ok(index);
    }
    let names: Vec<&str> = input.fields().iter().map(|f| f.name.as_str()).collect();
    let hint = match crate::frontend::spec::closest(name, &names) {
        Some(close) => format!("; did you mean `{close}`?"),
        None => format!("; the input fields are: {}", names.join(", ")),
    };
    Err(config_error(
        "value",
        format!("names no input field `{name}`{hint}"),
    ))
}

impl KeyedProcess for LastNAverage {
    fn state_descriptors(&self) -> Vec<StateDescriptor> {
        let list = StateDescriptor::list("last_values");
        vec![match self.ttl_ms {
            Some(ttl) => list.with_ttl(ttl),
            None => list,
        }]
    }

    fn output_schema(&self) -> Schema {
        self.output.clone()
    }

    fn process_row(
        &mut self,
        key: &[Datum<'_>],
        row: &ArchivedRow,
        _row_time: Option<i64>,
        state: &mut KeyState<'_>,
        out: &mut dyn Collector,
    ) -> Result<(), ProcessError> {
        let mut values = state.list(LAST_VALUES);
        let value = match row.get(self.value_index).map(|v| v.as_value_ref()) {
            Some(ValueRef::I64(v)) => Some(Value::I64(v)),
            Some(ValueRef::F64(v)) => Some(Value::F64(v)),
            _ => None,
        };
        if let Some(value) = value {
            // Rows are [value] in arrival order, or [value, order] sorted by order.
            match self.order_index.and_then(|i| row.get(i)) {
                Some(order) => {
                    let order = order.to_value();
                    let at = values
                        .iter()
                        .take_while(|held| {
                            held.get(1).is_some_and(|o| {
                                crate::state::total_cmp(o.as_ref(), order.as_ref()).is_le()
                            })
                        })
                        .count();
                    values.insert(at, vec![value, order]);
                }
                None => values.push(vec![value]),
            }
        }
        values.retain_last(self.n);
        let (avg, count) = average(values.iter().filter_map(|row| row.first()));
        let mut output: Vec<Value> = key
            .iter()
            .map(|part| crate::state::to_value(part.as_value()))
            .collect();
        output.push(avg.map_or(Value::Null, Value::F64));
        output.push(Value::I64(count));
        out.emit(output);
        Ok(())
    }
}

/// The mean of `values` and how many there are; integers are summed exactly.
fn average<'a>(values: impl Iterator<Item = &'a Value>) -> (Option<f64>, i64) {
    let (mut ints, mut floats, mut count) = (0i128, 0f64, 0i64);
    for value in values {
        match value {
            Value::I64(v) => ints += i128::from(*v),
            Value::F64(v) => floats += v,
            _ => continue,
        }
        count += 1;
    }
    let avg = (count > 0).then(|| (ints as f64 + floats) / count as f64);
    (avg, count)
}

#[cfg(test)]
mod tests;
