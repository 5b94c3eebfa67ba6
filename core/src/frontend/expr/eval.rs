//! The typed expression tree and its evaluation over an archived row.
//!
//! Evaluation never fails: a division by zero, a failed cast or an out-of-range argument
//! yields NULL (the type checker marks such expressions nullable). Numbers, booleans, bare
//! fields and literals evaluate without allocating; only string-building functions allocate.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::func::{Func, Prepared};
use super::Datum;
use crate::record::row::{ArchivedRow, ValueRef};
use crate::record::schema::DataType;

/// A type-checked expression node.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Field(usize),
    Const(Datum<'static>),
    Neg(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    /// Arithmetic over two `i64` operands, evaluated without building datums.
    ArithI64(Arith, Box<Node>, Box<Node>),
    Concat(Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    /// A comparison of two `i64` operands, evaluated without building datums.
    CmpI64(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>, bool),
    Like(Box<Node>, Box<Node>),
    In(Box<Node>, Vec<Node>),
    Case(Vec<(Node, Node)>, Box<Node>),
    Cast(Box<Node>, DataType),
    Call(Func, Vec<Node>),
    /// A function call with a literal pattern compiled when checked.
    Prepared(Box<Prepared>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Node {
    pub(super) fn eval<'a>(&'a self, row: &'a ArchivedRow) -> Datum<'a> {
        match self {
            Node::Field(index) => field(row, *index),
            Node::Const(value) => borrow(value),
            Node::Neg(inner) => match inner.eval(row) {
                Datum::I64(v) => Datum::I64(v.wrapping_neg()),
                Datum::F64(v) => Datum::F64(-v),
                _ => Datum::Null,
            },
            Node::Arith(op, left, right) => arith(*op, left.eval(row), right.eval(row)),
            Node::ArithI64(..) => self.eval_i64(row).map_or(Datum::Null, Datum::I64),
            Node::CmpI64(op, left, right) => match (left.eval_i64(row), right.eval_i64(row)) {
                (Some(a), Some(b)) => Datum::Bool(op.holds(a.cmp(&b))),
                _ => Datum::Null,
            },
            Node::Concat(left, right) => concat(left.eval(row), right.eval(row)),
            Node::Cmp(op, left, right) => match compare(&left.eval(row), &right.eval(row)) {
                Some(ordering) => Datum::Bool(op.holds(ordering)),
                None => Datum::Null,
            },
            Node::And(left, right) => match left.eval(row) {
                Datum::Bool(false) => Datum::Bool(false),
                l => match (l, right.eval(row)) {
                    (_, Datum::Bool(false)) => Datum::Bool(false),
                    (Datum::Bool(true), Datum::Bool(true)) => Datum::Bool(true),
                    _ => Datum::Null,
                },
            },
            Node::Or(left, right) => match left.eval(row) {
                Datum::Bool(true) => Datum::Bool(true),
                l => match (l, right.eval(row)) {
                    (_, Datum::Bool(true)) => Datum::Bool(true),
                    (Datum::Bool(false), Datum::Bool(false)) => Datum::Bool(false),
                    _ => Datum::Null,
                },
            },
            Node::Not(inner) => match inner.eval(row) {
                Datum::Bool(v) => Datum::Bool(!v),
                _ => Datum::Null,
            },
            Node::IsNull(inner, negated) => {
                Datum::Bool((inner.eval(row) == Datum::Null) != *negated)
            }
            Node::Like(text, pattern) => match (text.eval(row), pattern.eval(row)) {
                (Datum::Str(text), Datum::Str(pattern)) => Datum::Bool(like(&text, &pattern)),
                _ => Datum::Null,
            },
            Node::In(needle, list) => in_list(needle.eval(row), list, row),
            Node::Case(branches, otherwise) => {
                for (condition, value) in branches {
                    if condition.eval(row) == Datum::Bool(true) {
                        return value.eval(row);
                    }
                }
                otherwise.eval(row)
            }
            Node::Cast(inner, to) => cast(inner.eval(row), *to),
            Node::Call(func, args) => func.call(args, row),
            Node::Prepared(call) => call.eval(row),
        }
    }
}

impl Node {
    /// Calls `visit` with the index of every field the node reads.
    pub(super) fn fields(&self, visit: &mut dyn FnMut(usize)) {
        match self {
            Node::Field(index) => visit(*index),
            Node::Const(_) => {}
            Node::Neg(inner) | Node::Not(inner) | Node::IsNull(inner, _) | Node::Cast(inner, _) => {
                inner.fields(visit);
            }
            Node::Arith(_, left, right)
            | Node::ArithI64(_, left, right)
            | Node::Concat(left, right)
            | Node::Cmp(_, left, right)
            | Node::CmpI64(_, left, right)
            | Node::And(left, right)
            | Node::Or(left, right)
            | Node::Like(left, right) => {
                left.fields(visit);
                right.fields(visit);
            }
            Node::In(needle, list) => {
                needle.fields(visit);
                list.iter().for_each(|node| node.fields(visit));
            }
            Node::Case(branches, otherwise) => {
                for (condition, value) in branches {
                    condition.fields(visit);
                    value.fields(visit);
                }
                otherwise.fields(visit);
            }
            Node::Call(_, args) => args.iter().for_each(|node| node.fields(visit)),
            Node::Prepared(call) => match &**call {
                Prepared::RegexpExtract { text, .. } => text.fields(visit),
                Prepared::DateFormat { time, .. } => time.fields(visit),
            },
        }
    }
}

impl Node {
    /// Evaluates a node whose type is `i64`; `None` for NULL. Integer-only subtrees (fields,
    /// literals, arithmetic) run on plain integers; anything else goes through [`Node::eval`].
    fn eval_i64(&self, row: &ArchivedRow) -> Option<i64> {
        match self {
            Node::Field(index) => row.get(*index)?.as_i64(),
            Node::Const(Datum::I64(v)) => Some(*v),
            Node::ArithI64(op, left, right) => {
                int_arith(*op, left.eval_i64(row)?, right.eval_i64(row)?)
            }
            other => match other.eval(row) {
                Datum::I64(v) => Some(v),
                _ => None,
            },
        }
    }
}

impl Cmp {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Cmp::Eq => ordering == Ordering::Equal,
            Cmp::Ne => ordering != Ordering::Equal,
            Cmp::Lt => ordering == Ordering::Less,
            Cmp::Le => ordering != Ordering::Greater,
            Cmp::Gt => ordering == Ordering::Greater,
            Cmp::Ge => ordering != Ordering::Less,
        }
    }
}

/// Reads field `index` of `row` in place.
fn field(row: &ArchivedRow, index: usize) -> Datum<'_> {
    match row.get(index).map(|v| v.as_value_ref()) {
        Some(ValueRef::I64(v)) => Datum::I64(v),
        Some(ValueRef::F64(v)) => Datum::F64(v),
        Some(ValueRef::Bool(v)) => Datum::Bool(v),
        Some(ValueRef::Str(v)) => Datum::Str(Cow::Borrowed(v)),
        Some(ValueRef::Bytes(v)) => Datum::Bytes(Cow::Borrowed(v)),
        Some(ValueRef::Timestamp(v)) => Datum::Timestamp(v),
        Some(ValueRef::Null) | None => Datum::Null,
    }
}

/// A constant as a datum borrowing its text.
pub(super) fn borrow<'a>(value: &'a Datum<'static>) -> Datum<'a> {
    match value {
        Datum::Str(s) => Datum::Str(Cow::Borrowed(s)),
        Datum::Bytes(b) => Datum::Bytes(Cow::Borrowed(b)),
        Datum::Null => Datum::Null,
        Datum::I64(v) => Datum::I64(*v),
        Datum::F64(v) => Datum::F64(*v),
        Datum::Bool(v) => Datum::Bool(*v),
        Datum::Timestamp(v) => Datum::Timestamp(*v),
    }
}

/// Integer arithmetic wraps on overflow (as Java and Flink do); division or remainder by zero
/// is NULL.
fn arith<'a>(op: Arith, left: Datum<'_>, right: Datum<'_>) -> Datum<'a> {
    match (left, right) {
        (Datum::I64(a), Datum::I64(b)) => int_arith(op, a, b).map_or(Datum::Null, Datum::I64),
        (Datum::Timestamp(a), Datum::I64(b)) => match op {
            Arith::Add => Datum::Timestamp(a.wrapping_add(b)),
            Arith::Sub => Datum::Timestamp(a.wrapping_sub(b)),
            _ => Datum::Null,
        },
        (Datum::I64(a), Datum::Timestamp(b)) if op == Arith::Add => {
            Datum::Timestamp(a.wrapping_add(b))
        }
        (Datum::Timestamp(a), Datum::Timestamp(b)) if op == Arith::Sub => {
            Datum::I64(a.wrapping_sub(b))
        }
        (a, b) => match (a.to_f64(), b.to_f64()) {
            (Some(a), Some(b)) => float_arith(op, a, b).map_or(Datum::Null, Datum::F64),
            _ => Datum::Null,
        },
    }
}

fn int_arith(op: Arith, a: i64, b: i64) -> Option<i64> {
    match op {
        Arith::Add => Some(a.wrapping_add(b)),
        Arith::Sub => Some(a.wrapping_sub(b)),
        Arith::Mul => Some(a.wrapping_mul(b)),
        Arith::Div => (b != 0).then(|| a.wrapping_div(b)),
        Arith::Rem => (b != 0).then(|| a.wrapping_rem(b)),
    }
}

fn float_arith(op: Arith, a: f64, b: f64) -> Option<f64> {
    match op {
        Arith::Add => Some(a + b),
        Arith::Sub => Some(a - b),
        Arith::Mul => Some(a * b),
        Arith::Div => (b != 0.0).then(|| a / b),
        Arith::Rem => (b != 0.0).then(|| a % b),
    }
}

fn concat<'a>(left: Datum<'_>, right: Datum<'_>) -> Datum<'a> {
    if left == Datum::Null || right == Datum::Null {
        return Datum::Null;
    }
    let mut out = String::new();
    left.write_text(&mut out);
    right.write_text(&mut out);
    Datum::Str(Cow::Owned(out))
}

/// SQL comparison: `None` when either side is NULL or the kinds do not compare.
pub(super) fn compare(left: &Datum<'_>, right: &Datum<'_>) -> Option<Ordering> {
    match (left, right) {
        (Datum::I64(a), Datum::I64(b)) => Some(a.cmp(b)),
        (Datum::Timestamp(a), Datum::Timestamp(b)) => Some(a.cmp(b)),
        (Datum::Str(a), Datum::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Datum::Bytes(a), Datum::Bytes(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Datum::Bool(a), Datum::Bool(b)) => Some(a.cmp(b)),
        (a, b) => a.to_f64()?.partial_cmp(&b.to_f64()?),
    }
}

fn in_list<'a>(needle: Datum<'_>, list: &'a [Node], row: &'a ArchivedRow) -> Datum<'a> {
    if needle == Datum::Null {
        return Datum::Null;
    }
    let mut saw_null = false;
    for item in list {
        match compare(&needle, &item.eval(row)) {
            Some(Ordering::Equal) => return Datum::Bool(true),
            Some(_) => {}
            None => saw_null = true,
        }
    }
    if saw_null {
        Datum::Null
    } else {
        Datum::Bool(false)
    }
}

/// SQL LIKE: `%` matches any run of characters, `_` exactly one; `\` escapes the next one.
pub(super) fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('_') => {
                t += 1;
                p += 1;
                continue;
            }
            Some('\\') if pattern.get(p + 1) == Some(&text[t]) => {
                t += 1;
                p += 2;
                continue;
            }
            Some(c) if *c != '\\' && *c == text[t] => {
                t += 1;
                p += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '%')
}

/// Converts `value` to `to`; NULL when the value does not convert.
pub(super) fn cast(value: Datum<'_>, to: DataType) -> Datum<'_> {
    match (value, to) {
        (Datum::Null, _) => Datum::Null,
        (v @ Datum::I64(_), DataType::I64)
        | (v @ Datum::F64(_), DataType::F64)
        | (v @ Datum::Bool(_), DataType::Bool)
        | (v @ Datum::Str(_), DataType::String)
        | (v @ Datum::Bytes(_), DataType::Bytes)
        | (v @ Datum::Timestamp(_), DataType::Timestamp) => v,
        (Datum::I64(v) | Datum::Timestamp(v), DataType::F64) => Datum::F64(v as f64),
        (Datum::Timestamp(v), DataType::I64) | (Datum::I64(v), DataType::Timestamp) => {
            if to == DataType::I64 {
                Datum::I64(v)
            } else {
                Datum::Timestamp(v)
            }
        }
        (Datum::F64(v), DataType::I64 | DataType::Timestamp) => {
            if v.is_finite() && v >= i64::MIN as f64 && v < i64::MAX as f64 {
                if to == DataType::I64 {
                    Datum::I64(v as i64)
                } else {
                    Datum::Timestamp(v as i64)
                }
            } else {
                Datum::Null
            }
        }
        (Datum::Bool(v), DataType::I64) => Datum::I64(i64::from(v)),
        (Datum::Bool(v), DataType::F64) => Datum::F64(if v { 1.0 } else { 0.0 }),
        (Datum::I64(v), DataType::Bool) => Datum::Bool(v != 0),
        (Datum::Str(s), to) => parse_text(s.trim(), to),
        (Datum::Bytes(b), DataType::String) => match b {
            Cow::Borrowed(b) => {
                std::str::from_utf8(b).map_or(Datum::Null, |s| Datum::Str(Cow::Borrowed(s)))
            }
            Cow::Owned(b) => {
                String::from_utf8(b).map_or(Datum::Null, |s| Datum::Str(Cow::Owned(s)))
            }
        },
        (v, DataType::String) => {
            let mut out = String::new();
            v.write_text(&mut out);
            Datum::Str(Cow::Owned(out))
        }
        _ => Datum::Null,
    }
}

fn parse_text(text: &str, to: DataType) -> Datum<'static> {
    match to {
        DataType::I64 => text.parse().map_or(Datum::Null, Datum::I64),
        DataType::F64 => text.parse().map_or(Datum::Null, Datum::F64),
        DataType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Datum::Bool(true),
            "false" | "f" | "0" | "no" => Datum::Bool(false),
            _ => Datum::Null,
        },
        DataType::Timestamp => match text.parse::<i64>() {
            Ok(ms) => Datum::Timestamp(ms),
            Err(_) => crate::time::parse_rfc3339(text).map_or(Datum::Null, Datum::Timestamp),
        },
        DataType::Bytes => Datum::Bytes(Cow::Owned(text.as_bytes().to_vec())),
        _ => Datum::Null,
    }
}

impl Datum<'_> {
    /// The value as a float when it is a number.
    pub(super) fn to_f64(&self) -> Option<f64> {
        match self {
            Datum::I64(v) => Some(*v as f64),
            Datum::F64(v) => Some(*v),
            _ => None,
        }
    }

    /// Appends the value's text form (as `CAST(… AS string)` gives it); NULL appends nothing.
    ///
    /// ```
    /// use wire_core::frontend::expr::Datum;
    /// let mut text = String::from("id-");
    /// Datum::I64(42).write_text(&mut text);
    /// Datum::Null.write_text(&mut text);
    /// assert_eq!(text, "id-42");
    /// ```
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            Datum::Null => Ok(()),
            Datum::I64(v) => write!(out, "{v}"),
            Datum::F64(v) => write!(out, "{v}"),
            Datum::Bool(v) => write!(out, "{v}"),
            Datum::Str(s) => write!(out, "{s}"),
            Datum::Bytes(b) => write!(out, "{}", String::from_utf8_lossy(b)),
            Datum::Timestamp(ms) => write!(out, "{}", crate::time::to_rfc3339(*ms)),
        };
    }
}
