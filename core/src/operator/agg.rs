//! Aggregate functions of the `aggregate` operator: parsing, type checking and accumulators.
//!
//! [`compile`] turns text such as `count(distinct bidder) filter (where price < 100)` into an
//! [`AggCall`]; an [`Acc`] is the running state of one call for one group (and pane). Merging
//! accumulators in time order equals folding their rows in that order, so hop windows can fold
//! panes. Pure and single-threaded: state lives on the core that owns the group. The contract
//! is docs/adr/0003-event-time-windows-state.md.
//!
//! ```
//! use wire_core::operator::agg::{compile, AggKind};
//! use wire_core::frontend::expr::Datum;
//! use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
//!
//! let schema = Schema::new(vec![Field::new("price", DataType::I64)]);
//! let call = compile("COUNT(*) FILTER (WHERE price < 100)", &schema).unwrap();
//! assert_eq!(call.kind(), AggKind::CountStar);
//! let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
//! for price in [50, 150, 99] {
//!     builder.push(&[ValueRef::I64(price)]).unwrap();
//! }
//! let batch = builder.finish();
//! let mut acc = call.new_acc();
//! for row in batch.view().rows() {
//!     call.update(&mut acc, row);
//! }
//! assert_eq!(call.result(&acc), Datum::I64(2));
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::mem::size_of;

use crate::frontend::expr::{self, Datum, Expr, ExprError};
use crate::record::row::{ArchivedRow, Value};
use crate::record::schema::{DataType, Schema};

/// Which aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// `count(*)`: rows.
    CountStar,
    /// `count(x)`: rows where `x` is not NULL.
    Count,
    /// `count(distinct x)`: distinct non-NULL values of `x`.
    CountDistinct,
    /// `sum(x)`: wrapping for `i64`.
    Sum,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `avg(x)`: the mean as `f64`.
    Avg,
    /// `first(x)`: the first non-NULL value in arrival order.
    First,
    /// `last(x)`: the last non-NULL value in arrival order.
    Last,
}

/// A compiled aggregate call such as `count(distinct bidder) filter (where price < 100)`.
#[derive(Debug, Clone)]
pub struct AggCall {
    kind: AggKind,
    arg: Option<Expr>,
    filter: Option<Expr>,
    data_type: DataType,
    nullable: bool,
    source: String,
}

/// Running state of one aggregate for one group (and pane).
///
/// Counts, sums, averages and min/max/first/last of fixed-width values never allocate; only
/// strings, bytes and distinct sets use the heap.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Acc {
    /// `count(*)` and `count(x)`: how many rows (or non-NULL values) were counted.
    Count(i64),
    /// `sum`, `min`, `max`, `first` and `last`: the value so far, `Value::Null` until a
    /// non-NULL value arrives.
    Value(Value),
    /// `avg` of `i64`: the exact sum (as the two halves of an `i128`) and the count.
    AvgI64 {
        /// High 64 bits of the sum.
        sum_hi: i64,
        /// Low 64 bits of the sum.
        sum_lo: u64,
        /// Values summed.
        count: i64,
    },
    /// `avg` of `f64`.
    AvgF64 {
        /// Sum of the values.
        sum: f64,
        /// Values summed.
        count: i64,
    },
    /// `count(distinct x)` of `i64` or `timestamp`.
    DistinctI64(Box<HashSet<i64>>),
    /// `count(distinct x)` of any other type, by canonical bytes.
    DistinctBytes(Box<DistinctBytes>),
}

/// An exact set of values, each kept as its canonical bytes: a type tag (as in the row format)
/// and the value's bytes, with `-0.0` stored as `0.0` and every NaN as one NaN.
#[derive(Debug, Clone, Default)]
pub struct DistinctBytes {
    keys: HashSet<Box<[u8]>>,
    /// Sum of the keys' lengths, for [`AggCall::acc_bytes`].
    key_bytes: usize,
    /// Where a value's key is built before the lookup, so repeated values never allocate.
    scratch: Vec<u8>,
}

// The accumulator table holds one `Acc` per group, pane and call: keep it at four words.
const _: () = assert!(size_of::<Acc>() <= 32);

/// The aggregate function names, for hints and docs.
pub const FUNCTION_NAMES: &[&str] = &["count", "sum", "min", "max", "avg", "first", "last"];

/// Parses and type-checks `text` against `schema`. Error offsets (`ExprError.offset`) are byte
/// offsets into `text`.
///
/// ```
/// use wire_core::operator::agg::compile;
/// use wire_core::{DataType, Field, Schema};
///
/// let schema = Schema::new(vec![Field::new("channel", DataType::String)]);
/// let error = compile("sum(channel)", &schema).unwrap_err();
/// assert_eq!((error.offset, error.message.as_str()), (4, "sum needs a number, found string"));
/// ```
pub fn compile(text: &str, schema: &Schema) -> Result<AggCall, ExprError> {
    let mut cursor = Cursor { text, at: 0 };
    cursor.skip_ws();
    let Some((name_at, name)) = cursor.word() else {
        return Err(error(
            cursor.at,
            "expected an aggregate call such as count(*) or sum(price)".into(),
        ));
    };
    let kind = function(name, name_at)?;
    cursor.skip_ws();
    let open = cursor.at;
    if !cursor.eat(b'(') {
        let name = name.to_ascii_lowercase();
        return Err(error(open, format!("expected `(` after `{name}`")));
    }
    let close = closing_paren(text, open)?;
    let (kind, arg) = argument(kind, Span::trimmed(text, open + 1, close), schema)?;
    cursor.at = close + 1;
    let filter = filter_clause(&mut cursor, schema)?;
    cursor.skip_ws();
    if cursor.at < text.len() {
        return Err(trailing(&cursor, filter.is_some()));
    }
    let (data_type, nullable) = output_type(kind, arg.as_ref());
    Ok(AggCall {
        kind,
        arg,
        filter,
        data_type,
        nullable,
        source: text.to_string(),
    })
}

impl AggKind {
    /// The function name as written (lower case): `count` for all three counts.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::CountStar | AggKind::Count | AggKind::CountDistinct => "count",
            AggKind::Sum => "sum",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Avg => "avg",
            AggKind::First => "first",
            AggKind::Last => "last",
        }
    }
}

impl AggCall {
    /// Marks in `used` the input fields its argument and filter read.
    pub fn mark_fields(&self, used: &mut [bool]) {
        self.arg
            .iter()
            .chain(&self.filter)
            .for_each(|e| e.mark_fields(used));
    }

    /// Which function this is.
    pub fn kind(&self) -> AggKind {
        self.kind
    }

    /// The output type.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// Whether the output may be NULL (everything but the counts).
    pub fn nullable(&self) -> bool {
        self.nullable
    }

    /// The text the call was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The argument, absent for `count(*)`.
    pub fn arg(&self) -> Option<&Expr> {
        self.arg.as_ref()
    }

    /// The `filter (where ...)` condition, if any.
    pub fn filter(&self) -> Option<&Expr> {
        self.filter.as_ref()
    }

    /// A fresh accumulator: no rows seen.
    pub fn new_acc(&self) -> Acc {
        let arg_type = self.arg.as_ref().map(Expr::data_type);
        match self.kind {
            AggKind::CountStar | AggKind::Count => Acc::Count(0),
            AggKind::CountDistinct => match arg_type {
                Some(DataType::I64 | DataType::Timestamp) => Acc::DistinctI64(Box::default()),
                _ => Acc::DistinctBytes(Box::default()),
            },
            AggKind::Avg if arg_type == Some(DataType::I64) => Acc::AvgI64 {
                sum_hi: 0,
                sum_lo: 0,
                count: 0,
            },
            AggKind::Avg => Acc::AvgF64 { sum: 0.0, count: 0 },
            AggKind::Sum | AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => {
                Acc::Value(Value::Null)
            }
        }
    }

    /// Applies `row` (evaluates the filter first, then the argument).
    pub fn update(&self, acc: &mut Acc, row: &ArchivedRow) {
        debug_assert!(
            self.owns(acc),
            "{acc:?} is not an accumulator of `{}`",
            self.source
        );
        if let Some(filter) = &self.filter {
            if !filter.eval_predicate(row) {
                return;
            }
        }
        let Some(arg) = &self.arg else {
            if let Acc::Count(count) = acc {
                *count += 1;
            }
            return;
        };
        let value = arg.eval(row);
        if value != Datum::Null {
            self.fold(acc, value);
        }
    }

    /// Whether a row's contribution can be taken back ([`AggCall::retract`]): counts, sums and
    /// averages can; min, max, first, last and distinct counts cannot without keeping every
    /// value.
    pub fn is_retractable(&self) -> bool {
        matches!(
            self.kind,
            AggKind::CountStar | AggKind::Count | AggKind::Sum | AggKind::Avg
        )
    }

    /// Takes back what [`AggCall::update`] added for `row` (a retraction in a changelog).
    /// Does nothing for calls that are not [retractable](AggCall::is_retractable).
    pub fn retract(&self, acc: &mut Acc, row: &ArchivedRow) {
        if let Some(filter) = &self.filter {
            if !filter.eval_predicate(row) {
                return;
            }
        }
        let value = match &self.arg {
            Some(arg) => arg.eval(row),
            None => Datum::Bool(true),
        };
        if value == Datum::Null {
            return;
        }
        match acc {
            Acc::Count(count) => *count -= 1,
            Acc::Value(Value::I64(sum)) if self.kind == AggKind::Sum => {
                if let Datum::I64(v) = value {
                    *sum = sum.wrapping_sub(v);
                }
            }
            Acc::Value(Value::F64(sum)) if self.kind == AggKind::Sum => {
                if let Datum::F64(v) = value {
                    *sum -= v;
                }
            }
            Acc::AvgI64 {
                sum_hi,
                sum_lo,
                count,
            } => {
                if let Datum::I64(v) = value {
                    (*sum_hi, *sum_lo) = split(wide(*sum_hi, *sum_lo) - i128::from(v));
                    *count -= 1;
                }
            }
            Acc::AvgF64 { sum, count } => {
                if let Datum::F64(v) = value {
                    *sum -= v;
                    *count -= 1;
                }
            }
            _ => {}
        }
    }

    /// Whether [`AggCall::unmerge`] takes a merged accumulator back out exactly, so that a
    /// sliding window can subtract the panes that leave it instead of merging every pane again:
    /// counts, averages of integers, and sums of integers when every row adds a value (no
    /// filter, a non-NULL argument), since a sum of no values is NULL, not 0.
    pub fn unmerges_exactly(&self) -> bool {
        let integer = self
            .arg
            .as_ref()
            .is_some_and(|arg| arg.data_type() == DataType::I64);
        match self.kind {
            AggKind::CountStar | AggKind::Count => true,
            AggKind::Avg => integer,
            AggKind::Sum => {
                integer && self.filter.is_none() && !self.arg.as_ref().is_some_and(Expr::nullable)
            }
            _ => false,
        }
    }

    /// Takes `from` back out of `into` after [`AggCall::merge`] folded it in: the exact inverse
    /// for the calls that [unmerge exactly](AggCall::unmerges_exactly) (integer arithmetic,
    /// wrapping as the sums do); does nothing for other calls.
    pub fn unmerge(&self, into: &mut Acc, from: &Acc) {
        match (into, from) {
            (Acc::Count(into), Acc::Count(from)) => *into -= *from,
            (Acc::Value(Value::I64(into)), Acc::Value(Value::I64(from)))
                if self.kind == AggKind::Sum =>
            {
                *into = into.wrapping_sub(*from);
            }
            (
                Acc::AvgI64 {
                    sum_hi,
                    sum_lo,
                    count,
                },
                from,
            ) => {
                if let Acc::AvgI64 { count: n, .. } = from {
                    (*sum_hi, *sum_lo) = split(wide(*sum_hi, *sum_lo) - avg_sum(from));
                    *count -= *n;
                }
            }
            _ => {}
        }
    }

    /// Folds `from` (later rows) into `into` (earlier rows): used to merge panes of a hop window
    /// in time order.
    pub fn merge(&self, into: &mut Acc, from: &Acc) {
        debug_assert!(
            self.owns(into) && self.owns(from),
            "cannot merge {from:?} into {into:?} for `{}`",
            self.source
        );
        match (into, from) {
            (Acc::Count(into), Acc::Count(from)) => *into += *from,
            (Acc::Value(into), Acc::Value(from)) => {
                if *from != Value::Null {
                    fold_value(self.kind, into, datum_of(from));
                }
            }
            (
                Acc::AvgI64 {
                    sum_hi,
                    sum_lo,
                    count,
                },
                Acc::AvgI64 {
                    sum_hi: hi,
                    sum_lo: lo,
                    count: n,
                },
            ) => {
                (*sum_hi, *sum_lo) = split(wide(*sum_hi, *sum_lo) + wide(*hi, *lo));
                *count += *n;
            }
            (Acc::AvgF64 { sum, count }, Acc::AvgF64 { sum: s, count: n }) => {
                *sum += *s;
                *count += *n;
            }
            (Acc::DistinctI64(into), Acc::DistinctI64(from)) => into.extend(from.iter()),
            (Acc::DistinctBytes(into), Acc::DistinctBytes(from)) => into.merge(from),
            (into, from) => panic!("cannot merge {from:?} into {into:?} for `{}`", self.source),
        }
    }

    /// The current result as a datum borrowed from the accumulator (no allocation for numbers).
    pub fn result<'a>(&self, acc: &'a Acc) -> Datum<'a> {
        match acc {
            Acc::Count(count) => Datum::I64(*count),
            Acc::Value(value) => datum_of(value),
            Acc::AvgI64 { count: 0, .. } | Acc::AvgF64 { count: 0, .. } => Datum::Null,
            Acc::AvgI64 {
                sum_hi,
                sum_lo,
                count,
            } => Datum::F64(wide(*sum_hi, *sum_lo) as f64 / *count as f64),
            Acc::AvgF64 { sum, count } => Datum::F64(*sum / *count as f64),
            Acc::DistinctI64(set) => Datum::I64(set.len() as i64),
            Acc::DistinctBytes(set) => Datum::I64(set.keys.len() as i64),
        }
    }

    /// Approximate bytes this accumulator occupies (inline + heap), for state-size accounting.
    pub fn acc_bytes(&self, acc: &Acc) -> usize {
        let heap = match acc {
            Acc::Value(Value::Str(text)) => text.capacity(),
            Acc::Value(Value::Bytes(bytes)) => bytes.capacity(),
            Acc::DistinctI64(set) => {
                size_of::<HashSet<i64>>() + table_bytes(set.capacity(), size_of::<i64>())
            }
            Acc::DistinctBytes(set) => {
                size_of::<DistinctBytes>()
                    + table_bytes(set.keys.capacity(), size_of::<Box<[u8]>>())
                    + set.key_bytes
                    + set.scratch.capacity()
            }
            Acc::Count(_) | Acc::Value(_) | Acc::AvgI64 { .. } | Acc::AvgF64 { .. } => 0,
        };
        size_of::<Acc>() + heap
    }

    /// Folds one non-NULL argument value into `acc`.
    fn fold(&self, acc: &mut Acc, value: Datum<'_>) {
        match acc {
            Acc::Count(count) => *count += 1,
            Acc::Value(held) => fold_value(self.kind, held, value),
            Acc::AvgI64 {
                sum_hi,
                sum_lo,
                count,
            } => {
                if let Datum::I64(v) = value {
                    (*sum_hi, *sum_lo) = split(wide(*sum_hi, *sum_lo) + i128::from(v));
                    *count += 1;
                }
            }
            Acc::AvgF64 { sum, count } => {
                if let Datum::F64(v) = value {
                    *sum += v;
                    *count += 1;
                }
            }
            Acc::DistinctI64(set) => {
                if let Datum::I64(v) | Datum::Timestamp(v) = value {
                    set.insert(v);
                }
            }
            Acc::DistinctBytes(set) => set.insert(&value),
        }
    }

    /// Whether `acc` is the kind of accumulator [`AggCall::new_acc`] makes for this call.
    fn owns(&self, acc: &Acc) -> bool {
        match self.kind {
            AggKind::CountStar | AggKind::Count => matches!(acc, Acc::Count(_)),
            AggKind::CountDistinct => {
                matches!(acc, Acc::DistinctI64(_) | Acc::DistinctBytes(_))
            }
            AggKind::Avg => matches!(acc, Acc::AvgI64 { .. } | Acc::AvgF64 { .. }),
            AggKind::Sum | AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => {
                matches!(acc, Acc::Value(_))
            }
        }
    }
}

impl DistinctBytes {
    /// The canonical bytes of the values in the set, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.keys.iter().map(|key| &**key)
    }

    /// A set of the given canonical value bytes (as [`DistinctBytes::members`] lists them).
    pub fn from_members(keys: HashSet<Box<[u8]>>) -> DistinctBytes {
        let key_bytes = keys.iter().map(|key| key.len()).sum();
        DistinctBytes {
            keys,
            key_bytes,
            scratch: Vec::new(),
        }
    }

    fn insert(&mut self, value: &Datum<'_>) {
        self.scratch.clear();
        canonical(value, &mut self.scratch);
        if !self.keys.contains(self.scratch.as_slice()) {
            self.key_bytes += self.scratch.len();
            self.keys.insert(Box::from(self.scratch.as_slice()));
        }
    }

    fn merge(&mut self, from: &DistinctBytes) {
        for key in &from.keys {
            if !self.keys.contains(key) {
                self.key_bytes += key.len();
                self.keys.insert(key.clone());
            }
        }
    }
}

/// Folds a non-NULL value into the held value of `sum`, `min`, `max`, `first` or `last`.
fn fold_value(kind: AggKind, held: &mut Value, value: Datum<'_>) {
    let empty = *held == Value::Null;
    match kind {
        AggKind::Sum => add(held, &value),
        AggKind::Min if empty || compare(&value, held) == Ordering::Less => assign(held, value),
        AggKind::Max if empty || compare(&value, held) == Ordering::Greater => assign(held, value),
        AggKind::First if empty => assign(held, value),
        AggKind::Last => assign(held, value),
        _ => {}
    }
}

/// The exact sum an `avg` of `i64` holds (0 for any other accumulator).
fn avg_sum(acc: &Acc) -> i128 {
    match acc {
        Acc::AvgI64 { sum_hi, sum_lo, .. } => wide(*sum_hi, *sum_lo),
        _ => 0,
    }
}

/// `held + value`: wrapping for `i64`.
fn add(held: &mut Value, value: &Datum<'_>) {
    *held = match (&*held, value) {
        (Value::I64(a), Datum::I64(b)) => Value::I64(a.wrapping_add(*b)),
        (Value::F64(a), Datum::F64(b)) => Value::F64(a + b),
        (Value::Null, Datum::I64(b)) => Value::I64(*b),
        (Value::Null, Datum::F64(b)) => Value::F64(*b),
        _ => return,
    };
}

/// Orders two values of the same type; `f64` by `total_cmp`.
fn compare(value: &Datum<'_>, held: &Value) -> Ordering {
    match (value, held) {
        (Datum::I64(a), Value::I64(b)) | (Datum::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Datum::F64(a), Value::F64(b)) => a.total_cmp(b),
        (Datum::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Datum::Str(a), Value::Str(b)) => a.as_ref().cmp(b.as_str()),
        (Datum::Bytes(a), Value::Bytes(b)) => a.as_ref().cmp(b.as_slice()),
        _ => Ordering::Equal,
    }
}

/// Stores `value` in `held`, reusing the held string or bytes buffer when there is one.
fn assign(held: &mut Value, value: Datum<'_>) {
    match (held, value) {
        (Value::Str(text), Datum::Str(new)) => {
            text.clear();
            text.push_str(&new);
        }
        (Value::Bytes(bytes), Datum::Bytes(new)) => {
            bytes.clear();
            bytes.extend_from_slice(&new);
        }
        (held, value) => *held = owned(value),
    }
}

fn owned(value: Datum<'_>) -> Value {
    match value {
        Datum::Null => Value::Null,
        Datum::I64(v) => Value::I64(v),
        Datum::F64(v) => Value::F64(v),
        Datum::Bool(v) => Value::Bool(v),
        Datum::Str(v) => Value::Str(v.into_owned()),
        Datum::Bytes(v) => Value::Bytes(v.into_owned()),
        Datum::Timestamp(v) => Value::Timestamp(v),
    }
}

fn datum_of(value: &Value) -> Datum<'_> {
    match value {
        Value::Null => Datum::Null,
        Value::I64(v) => Datum::I64(*v),
        Value::F64(v) => Datum::F64(*v),
        Value::Bool(v) => Datum::Bool(*v),
        Value::Str(v) => Datum::Str(Cow::Borrowed(v)),
        Value::Bytes(v) => Datum::Bytes(Cow::Borrowed(v)),
        Value::Timestamp(v) => Datum::Timestamp(*v),
    }
}

fn wide(hi: i64, lo: u64) -> i128 {
    (i128::from(hi) << 64) | i128::from(lo)
}

fn split(sum: i128) -> (i64, u64) {
    ((sum >> 64) as i64, sum as u64)
}

/// Approximate bytes of a hash table holding `capacity` slots: the slots, one control byte each,
/// and the one-in-eight slack hashbrown keeps free.
fn table_bytes(capacity: usize, slot_bytes: usize) -> usize {
    (capacity + capacity / 7) * (slot_bytes + 1)
}

/// Appends the canonical bytes of `value`: the row format's type tag, then the value.
fn canonical(value: &Datum<'_>, out: &mut Vec<u8>) {
    match value {
        Datum::Null => out.push(0),
        Datum::I64(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Datum::F64(v) => {
            out.push(2);
            out.extend_from_slice(&crate::record::key::canonical_f64_bits(*v).to_le_bytes());
        }
        Datum::Bool(v) => out.extend_from_slice(&[3, u8::from(*v)]),
        Datum::Str(v) => {
            out.push(4);
            out.extend_from_slice(v.as_bytes());
        }
        Datum::Bytes(v) => {
            out.push(5);
            out.extend_from_slice(v);
        }
        Datum::Timestamp(v) => {
            out.push(6);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

// Parsing.

/// A position in the text being parsed.
struct Cursor<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Cursor<'t> {
    fn skip_ws(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    /// Reads an identifier at the cursor, returning where it starts.
    fn word(&mut self) -> Option<(usize, &'t str)> {
        let start = self.at;
        let len = word_len(&self.text[start..]);
        self.at += len;
        (len > 0).then(|| (start, &self.text[start..start + len]))
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.text.as_bytes().get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }
}

/// A trimmed slice of the text and where it starts.
#[derive(Clone, Copy)]
struct Span<'t> {
    at: usize,
    text: &'t str,
}

impl<'t> Span<'t> {
    /// `text[start..end]` without surrounding ASCII whitespace.
    fn trimmed(text: &'t str, start: usize, end: usize) -> Span<'t> {
        let raw = &text[start..end];
        let rest = raw.trim_ascii_start();
        Span {
            at: start + raw.len() - rest.len(),
            text: rest.trim_ascii_end(),
        }
    }

    /// The rest after a leading keyword `keyword` (any case, ending at a word boundary).
    fn after_keyword(self, keyword: &str) -> Option<Span<'t>> {
        let head = self.text.get(..keyword.len())?;
        let boundary = word_len(&self.text[keyword.len()..]) == 0;
        if !head.eq_ignore_ascii_case(keyword) || !boundary {
            return None;
        }
        let rest = &self.text[keyword.len()..];
        let body = rest.trim_ascii_start();
        Some(Span {
            at: self.at + keyword.len() + rest.len() - body.len(),
            text: body,
        })
    }
}

/// Length of the identifier (`[A-Za-z_][A-Za-z0-9_]*`) at the start of `text`, 0 if none.
fn word_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return 0;
    }
    bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(bytes.len())
}

fn error(offset: usize, message: String) -> ExprError {
    ExprError {
        offset,
        message,
        field: None,
    }
}

/// The function called `name` (any case); counts are refined once the argument is read.
fn function(name: &str, at: usize) -> Result<AggKind, ExprError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        "avg" => AggKind::Avg,
        "first" => AggKind::First,
        "last" => AggKind::Last,
        lower => {
            let hint = match crate::frontend::spec::closest(lower, FUNCTION_NAMES) {
                Some(close) => format!("; did you mean `{close}`?"),
                None => format!("; the functions are: {}", FUNCTION_NAMES.join(", ")),
            };
            return Err(error(
                at,
                format!("unknown aggregate function `{name}`{hint}"),
            ));
        }
    })
}

/// The byte offset of the `)` closing the `(` at `open`, skipping quoted strings and names.
fn closing_paren(text: &str, open: usize) -> Result<usize, ExprError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut at = open;
    while at < bytes.len() {
        match bytes[at] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(at);
                }
            }
            quote @ (b'\'' | b'`' | b'"') => at = closing_quote(bytes, at, quote)?,
            _ => {}
        }
        at += 1;
    }
    Err(error(open, "missing `)` to close this `(`".into()))
}

/// The offset of the quote closing the one at `open`; a doubled quote stands for itself.
fn closing_quote(bytes: &[u8], open: usize, quote: u8) -> Result<usize, ExprError> {
    let mut at = open + 1;
    loop {
        match bytes.get(at) {
            None => {
                let what = if quote == b'\'' {
                    "string"
                } else {
                    "field name"
                };
                return Err(error(
                    open,
                    format!("unterminated {what}: missing closing {}", quote as char),
                ));
            }
            Some(&b) if b == quote && bytes.get(at + 1) == Some(&quote) => at += 2,
            Some(&b) if b == quote => return Ok(at),
            Some(_) => at += 1,
        }
    }
}

/// Reads the argument between the call's parentheses: `*`, `distinct x` or `x`.
fn argument(
    kind: AggKind,
    inner: Span<'_>,
    schema: &Schema,
) -> Result<(AggKind, Option<Expr>), ExprError> {
    let name = kind.name();
    if inner.text == "*" {
        if kind != AggKind::Count {
            let message = format!("`*` is only allowed in count(*); write {name}(x)");
            return Err(error(inner.at, message));
        }
        return Ok((AggKind::CountStar, None));
    }
    let (kind, arg) = match inner.after_keyword("distinct") {
        Some(_) if kind != AggKind::Count => {
            let message = "`distinct` is only allowed in count(distinct x)".to_string();
            return Err(error(inner.at, message));
        }
        Some(rest) => (AggKind::CountDistinct, rest),
        None => (kind, inner),
    };
    if arg.text.is_empty() {
        let message = match kind {
            AggKind::Count => "count needs an argument: count(*) or count(x)".to_string(),
            AggKind::CountDistinct => "count(distinct) needs an argument: count(distinct x)".into(),
            _ => format!("{name} needs an argument: {name}(x)"),
        };
        return Err(error(arg.at, message));
    }
    let expr = compile_at(arg, schema)?;
    check_argument(kind, expr.data_type(), arg.at)?;
    Ok((kind, Some(expr)))
}

/// Compiles an expression found at `span`, with error offsets into the whole text.
fn compile_at(span: Span<'_>, schema: &Schema) -> Result<Expr, ExprError> {
    expr::compile(span.text, schema).map_err(|e| ExprError {
        offset: span.at + e.offset,
        ..e
    })
}

/// Refuses argument types the function cannot take.
fn check_argument(kind: AggKind, ty: DataType, at: usize) -> Result<(), ExprError> {
    let (ok, wanted) = match kind {
        AggKind::Sum | AggKind::Avg => (matches!(ty, DataType::I64 | DataType::F64), "a number"),
        AggKind::Min | AggKind::Max => (
            !matches!(ty, DataType::Bytes),
            "a number, timestamp, string or bool",
        ),
        AggKind::CountStar
        | AggKind::Count
        | AggKind::CountDistinct
        | AggKind::First
        | AggKind::Last => (true, ""),
    };
    if ok {
        return Ok(());
    }
    let name = kind.name();
    Err(error(at, format!("{name} needs {wanted}, found {ty}")))
}

/// Reads an optional `filter (where condition)` at the cursor.
fn filter_clause(cursor: &mut Cursor<'_>, schema: &Schema) -> Result<Option<Expr>, ExprError> {
    cursor.skip_ws();
    let start = cursor.at;
    match cursor.word() {
        Some((_, word)) if word.eq_ignore_ascii_case("filter") => {}
        _ => {
            cursor.at = start;
            return Ok(None);
        }
    }
    cursor.skip_ws();
    let open = cursor.at;
    if !cursor.eat(b'(') {
        let message = "expected `(` after `filter`; write filter (where condition)".to_string();
        return Err(error(open, message));
    }
    let close = closing_paren(cursor.text, open)?;
    let inner = Span::trimmed(cursor.text, open + 1, close);
    let Some(condition) = inner.after_keyword("where") else {
        let message = "expected `where` after `filter (`; write filter (where condition)";
        return Err(error(inner.at, message.to_string()));
    };
    if condition.text.is_empty() {
        let message = "filter (where ...) needs a condition".to_string();
        return Err(error(condition.at, message));
    }
    let expr = compile_at(condition, schema)?;
    if expr.data_type() != DataType::Bool {
        let message = format!("filter needs a bool condition, found {}", expr.data_type());
        return Err(error(condition.at, message));
    }
    cursor.at = close + 1;
    Ok(Some(expr))
}

/// The error for text after the call (and its filter, if `filtered`).
fn trailing(cursor: &Cursor<'_>, filtered: bool) -> ExprError {
    let rest = &cursor.text[cursor.at..];
    let word = &rest[..word_len(rest)];
    let shown = rest.split_ascii_whitespace().next().unwrap_or(rest);
    let message = match crate::frontend::spec::closest(&word.to_ascii_lowercase(), &["filter"]) {
        Some(close) if !filtered && !word.is_empty() => {
            format!("unexpected `{shown}` after the aggregate call; did you mean `{close}`?")
        }
        _ if filtered => format!("unexpected `{shown}` after the filter"),
        _ => format!(
            "unexpected `{shown}` after the aggregate call; only `filter (where condition)` \
             may follow"
        ),
    };
    error(cursor.at, message)
}

/// The output type and nullability of `kind` over `arg`.
fn output_type(kind: AggKind, arg: Option<&Expr>) -> (DataType, bool) {
    let arg_type = arg.map_or(DataType::I64, Expr::data_type);
    match kind {
        AggKind::CountStar | AggKind::Count | AggKind::CountDistinct => (DataType::I64, false),
        AggKind::Avg => (DataType::F64, true),
        AggKind::Sum | AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => {
            (arg_type, true)
        }
    }
}

#[cfg(test)]
mod tests;
