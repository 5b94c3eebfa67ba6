//! Built-in functions: their names, argument checks and evaluation.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::check::{unify, Typed};
use super::eval::{compare, Node};
use super::{Datum, ExprError};
use crate::row::ArchivedRow;
use crate::schema::DataType;
use crate::time::DateTime;

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Lower,
    Upper,
    Trim,
    Ltrim,
    Rtrim,
    Length,
    Substr,
    Concat,
    Replace,
    StartsWith,
    EndsWith,
    Contains,
    CountChar,
    Abs,
    Floor,
    Ceil,
    Round,
    Sqrt,
    Greatest,
    Least,
    Coalesce,
    Nullif,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    DayOfWeek,
    EpochMs,
    ToTimestamp,
}

/// What an argument position accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Str,
    Int,
    Num,
    Time,
    Text,
    Any,
}

/// The result type of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returns {
    Type(DataType),
    First,
    Unified,
}

struct Signature {
    name: &'static str,
    func: Func,
    params: &'static [Param],
    required: usize,
    variadic: bool,
    returns: Returns,
}

const fn sig(
    name: &'static str,
    func: Func,
    params: &'static [Param],
    required: usize,
    returns: Returns,
) -> Signature {
    Signature {
        name,
        func,
        params,
        required,
        variadic: false,
        returns,
    }
}

const fn variadic(
    name: &'static str,
    func: Func,
    param: &'static [Param],
    returns: Returns,
) -> Signature {
    Signature {
        name,
        func,
        params: param,
        required: 1,
        variadic: true,
        returns,
    }
}

use DataType as T;
use Param as P;
use Returns as R;

const FUNCTIONS: &[Signature] = &[
    sig("lower", Func::Lower, &[P::Str], 1, R::Type(T::String)),
    sig("upper", Func::Upper, &[P::Str], 1, R::Type(T::String)),
    sig("trim", Func::Trim, &[P::Str], 1, R::Type(T::String)),
    sig("ltrim", Func::Ltrim, &[P::Str], 1, R::Type(T::String)),
    sig("rtrim", Func::Rtrim, &[P::Str], 1, R::Type(T::String)),
    sig("length", Func::Length, &[P::Text], 1, R::Type(T::I64)),
    sig("char_length", Func::Length, &[P::Text], 1, R::Type(T::I64)),
    sig(
        "substr",
        Func::Substr,
        &[P::Str, P::Int, P::Int],
        2,
        R::Type(T::String),
    ),
    sig(
        "substring",
        Func::Substr,
        &[P::Str, P::Int, P::Int],
        2,
        R::Type(T::String),
    ),
    variadic("concat", Func::Concat, &[P::Any], R::Type(T::String)),
    sig(
        "replace",
        Func::Replace,
        &[P::Str, P::Str, P::Str],
        3,
        R::Type(T::String),
    ),
    sig(
        "starts_with",
        Func::StartsWith,
        &[P::Str, P::Str],
        2,
        R::Type(T::Bool),
    ),
    sig(
        "ends_with",
        Func::EndsWith,
        &[P::Str, P::Str],
        2,
        R::Type(T::Bool),
    ),
    sig(
        "contains",
        Func::Contains,
        &[P::Str, P::Str],
        2,
        R::Type(T::Bool),
    ),
    sig(
        "count_char",
        Func::CountChar,
        &[P::Str, P::Str],
        2,
        R::Type(T::I64),
    ),
    sig("abs", Func::Abs, &[P::Num], 1, R::First),
    sig("floor", Func::Floor, &[P::Num], 1, R::First),
    sig("ceil", Func::Ceil, &[P::Num], 1, R::First),
    sig("round", Func::Round, &[P::Num, P::Int], 1, R::First),
    sig("sqrt", Func::Sqrt, &[P::Num], 1, R::Type(T::F64)),
    variadic("greatest", Func::Greatest, &[P::Any], R::Unified),
    variadic("least", Func::Least, &[P::Any], R::Unified),
    variadic("coalesce", Func::Coalesce, &[P::Any], R::Unified),
    sig("nullif", Func::Nullif, &[P::Any, P::Any], 2, R::First),
    sig("year", Func::Year, &[P::Time], 1, R::Type(T::I64)),
    sig("month", Func::Month, &[P::Time], 1, R::Type(T::I64)),
    sig("day", Func::Day, &[P::Time], 1, R::Type(T::I64)),
    sig("hour", Func::Hour, &[P::Time], 1, R::Type(T::I64)),
    sig("minute", Func::Minute, &[P::Time], 1, R::Type(T::I64)),
    sig("second", Func::Second, &[P::Time], 1, R::Type(T::I64)),
    sig(
        "day_of_week",
        Func::DayOfWeek,
        &[P::Time],
        1,
        R::Type(T::I64),
    ),
    sig("epoch_ms", Func::EpochMs, &[P::Time], 1, R::Type(T::I64)),
    sig(
        "to_timestamp",
        Func::ToTimestamp,
        &[P::Any],
        1,
        R::Type(T::Timestamp),
    ),
];

/// All function names, for "did you mean" hints and the docs.
pub(super) fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|s| s.name).collect();
    names.push("if");
    names.push("cast");
    names
}

/// Type-checks a call of `name`, returning the node, its type and nullability.
pub(super) fn check(
    name: &str,
    offset: usize,
    mut args: Vec<Typed>,
) -> Result<(Node, Option<DataType>, bool), ExprError> {
    let Some(signature) = FUNCTIONS.iter().find(|s| s.name == name) else {
        let hint = crate::spec::closest(name, &names())
            .map(|close| format!("; did you mean `{close}`?"))
            .unwrap_or_default();
        return Err(ExprError::at(
            offset,
            format!("unknown function `{name}`{hint}"),
        ));
    };
    let max = if signature.variadic {
        usize::MAX
    } else {
        signature.params.len()
    };
    if args.len() < signature.required || args.len() > max {
        let expected = match (
            signature.variadic,
            signature.required,
            signature.params.len(),
        ) {
            (true, _, _) => "at least 1 argument".to_string(),
            (false, r, p) if r == p => format!("{r} argument{}", if r == 1 { "" } else { "s" }),
            (false, r, p) => format!("{r} to {p} arguments"),
        };
        return Err(ExprError::at(
            offset,
            format!("`{name}` takes {expected}, found {}", args.len()),
        ));
    }
    for (position, arg) in args.iter().enumerate() {
        let param = signature.params[position.min(signature.params.len() - 1)];
        check_param(name, position, param, arg)?;
    }
    let func = signature.func;
    let (ty, nullable) = match signature.returns {
        R::Type(ty) => (Some(ty), result_nullable(func, &args)),
        R::First => (args[0].ty, result_nullable(func, &args)),
        R::Unified => {
            let ty = unify(&mut args, name)?;
            (ty, result_nullable(func, &args))
        }
    };
    let nodes = args.into_iter().map(|arg| arg.node).collect();
    Ok((Node::Call(func, nodes), ty, nullable))
}

fn check_param(name: &str, position: usize, param: Param, arg: &Typed) -> Result<(), ExprError> {
    let Some(ty) = arg.ty else {
        return Ok(());
    };
    let ok = match param {
        P::Str => ty == T::String,
        P::Int => ty == T::I64,
        P::Num => matches!(ty, T::I64 | T::F64),
        P::Time => ty == T::Timestamp,
        P::Text => matches!(ty, T::String | T::Bytes),
        P::Any => true,
    };
    if ok {
        return Ok(());
    }
    let wanted = match param {
        P::Str => "string",
        P::Int => "i64",
        P::Num => "a number (i64 or f64)",
        P::Time => "timestamp",
        P::Text => "string or bytes",
        P::Any => "any",
    };
    Err(ExprError::at(
        arg.offset,
        format!(
            "argument {} of `{name}` must be {wanted}, found {ty}",
            position + 1
        ),
    ))
}

fn result_nullable(func: Func, args: &[Typed]) -> bool {
    let any = args.iter().any(|a| a.nullable);
    match func {
        Func::Concat => false,
        Func::Greatest | Func::Least | Func::Coalesce => args.iter().all(|a| a.nullable),
        Func::Nullif => true,
        Func::Sqrt => true,
        Func::ToTimestamp => any || args[0].ty != Some(T::I64) && args[0].ty != Some(T::Timestamp),
        Func::CountChar => any,
        _ => any,
    }
}

impl Func {
    pub(super) fn call<'a>(self, args: &'a [Node], row: &'a ArchivedRow) -> Datum<'a> {
        let arg = |i: usize| args.get(i).map_or(Datum::Null, |node| node.eval(row));
        match self {
            Func::Lower => map_owned(arg(0), |s| s.to_lowercase()),
            Func::Upper => map_owned(arg(0), |s| s.to_uppercase()),
            Func::Trim => map_borrowed(arg(0), str::trim),
            Func::Ltrim => map_borrowed(arg(0), str::trim_start),
            Func::Rtrim => map_borrowed(arg(0), str::trim_end),
            Func::Length => match arg(0) {
                Datum::Str(s) => Datum::I64(s.chars().count() as i64),
                Datum::Bytes(b) => Datum::I64(b.len() as i64),
                _ => Datum::Null,
            },
            Func::Substr => substr(arg(0), arg(1), args.get(2).map(|n| n.eval(row))),
            Func::Concat => {
                let mut out = String::new();
                for node in args {
                    node.eval(row).write_text(&mut out);
                }
                Datum::Str(Cow::Owned(out))
            }
            Func::Replace => match (arg(0), arg(1), arg(2)) {
                (Datum::Str(s), Datum::Str(from), Datum::Str(to)) if !from.is_empty() => {
                    Datum::Str(Cow::Owned(s.replace(from.as_ref(), &to)))
                }
                (s @ Datum::Str(_), Datum::Str(_), Datum::Str(_)) => s,
                _ => Datum::Null,
            },
            Func::StartsWith => str_test(arg(0), arg(1), |s, p| s.starts_with(p)),
            Func::EndsWith => str_test(arg(0), arg(1), |s, p| s.ends_with(p)),
            Func::Contains => str_test(arg(0), arg(1), |s, p| s.contains(p)),
            Func::CountChar => count_char(arg(0), arg(1)),
            Func::Abs => numeric(arg(0), i64::wrapping_abs, f64::abs),
            Func::Floor => numeric(arg(0), |v| v, f64::floor),
            Func::Ceil => numeric(arg(0), |v| v, f64::ceil),
            Func::Round => round(arg(0), args.get(1).map(|n| n.eval(row))),
            Func::Sqrt => match arg(0).to_f64() {
                Some(v) if v >= 0.0 => Datum::F64(v.sqrt()),
                _ => Datum::Null,
            },
            Func::Greatest => extreme(args, row, Ordering::Greater),
            Func::Least => extreme(args, row, Ordering::Less),
            Func::Coalesce => args
                .iter()
                .map(|node| node.eval(row))
                .find(|value| *value != Datum::Null)
                .unwrap_or(Datum::Null),
            Func::Nullif => {
                let value = arg(0);
                match compare(&value, &arg(1)) {
                    Some(Ordering::Equal) => Datum::Null,
                    _ => value,
                }
            }
            Func::Year => time_part(arg(0), |t| t.year),
            Func::Month => time_part(arg(0), |t| t.month),
            Func::Day => time_part(arg(0), |t| t.day),
            Func::Hour => time_of_day(arg(0), 3_600_000, 24),
            Func::Minute => time_of_day(arg(0), 60_000, 60),
            Func::Second => time_of_day(arg(0), 1000, 60),
            Func::DayOfWeek => match arg(0) {
                // 1970-01-01 was a Thursday; ISO numbering, Monday = 1 … Sunday = 7.
                Datum::Timestamp(ms) => {
                    Datum::I64((ms.div_euclid(crate::time::DAY_MS) + 3).rem_euclid(7) + 1)
                }
                _ => Datum::Null,
            },
            Func::EpochMs => match arg(0) {
                Datum::Timestamp(ms) => Datum::I64(ms),
                _ => Datum::Null,
            },
            Func::ToTimestamp => super::eval::cast(arg(0), T::Timestamp),
        }
    }
}

fn map_owned<'a>(value: Datum<'a>, f: impl Fn(&str) -> String) -> Datum<'a> {
    match value {
        Datum::Str(s) => Datum::Str(Cow::Owned(f(&s))),
        _ => Datum::Null,
    }
}

fn map_borrowed<'a>(value: Datum<'a>, f: impl Fn(&str) -> &str) -> Datum<'a> {
    match value {
        Datum::Str(Cow::Borrowed(s)) => Datum::Str(Cow::Borrowed(f(s))),
        Datum::Str(Cow::Owned(s)) => Datum::Str(Cow::Owned(f(&s).to_string())),
        _ => Datum::Null,
    }
}

fn str_test<'a>(value: Datum<'_>, probe: Datum<'_>, f: impl Fn(&str, &str) -> bool) -> Datum<'a> {
    match (value, probe) {
        (Datum::Str(s), Datum::Str(p)) => Datum::Bool(f(&s, &p)),
        _ => Datum::Null,
    }
}

/// Occurrences of the single character `needle` in `value` (Nexmark q14's `countChar`).
fn count_char<'a>(value: Datum<'_>, needle: Datum<'_>) -> Datum<'a> {
    let (Datum::Str(s), Datum::Str(needle)) = (value, needle) else {
        return Datum::Null;
    };
    let mut chars = needle.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return Datum::Null;
    };
    let count = if c.is_ascii() {
        let byte = c as u8;
        s.as_bytes().iter().filter(|b| **b == byte).count()
    } else {
        s.chars().filter(|x| *x == c).count()
    };
    Datum::I64(count as i64)
}

/// SQL SUBSTRING: 1-based start (positions before 1 count but yield nothing), in characters.
fn substr<'a>(value: Datum<'a>, start: Datum<'_>, len: Option<Datum<'_>>) -> Datum<'a> {
    let (Datum::Str(s), Datum::I64(start)) = (value, start) else {
        return Datum::Null;
    };
    let end = match len {
        None => i64::MAX,
        Some(Datum::I64(len)) if len >= 0 => start.saturating_add(len),
        Some(_) => return Datum::Null,
    };
    let from = start.max(1) as usize - 1;
    let to = if end == i64::MAX {
        usize::MAX
    } else {
        end.max(1) as usize - 1
    };
    let byte_at = |chars: usize| s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i);
    let (lo, hi) = (
        byte_at(from),
        if to == usize::MAX {
            s.len()
        } else {
            byte_at(to)
        },
    );
    if lo >= hi {
        return Datum::Str(Cow::Borrowed(""));
    }
    match s {
        Cow::Borrowed(s) => Datum::Str(Cow::Borrowed(&s[lo..hi])),
        Cow::Owned(s) => Datum::Str(Cow::Owned(s[lo..hi].to_string())),
    }
}

fn numeric<'a>(
    value: Datum<'_>,
    int: impl Fn(i64) -> i64,
    float: impl Fn(f64) -> f64,
) -> Datum<'a> {
    match value {
        Datum::I64(v) => Datum::I64(int(v)),
        Datum::F64(v) => Datum::F64(float(v)),
        _ => Datum::Null,
    }
}

/// Rounds half away from zero to `digits` decimal places (negative: tens, hundreds, …).
fn round<'a>(value: Datum<'_>, digits: Option<Datum<'_>>) -> Datum<'a> {
    let digits = match digits {
        None => 0,
        Some(Datum::I64(d)) => d.clamp(-18, 18) as i32,
        Some(_) => return Datum::Null,
    };
    match value {
        Datum::F64(v) if digits == 0 => Datum::F64(v.round()),
        Datum::F64(v) => {
            let scale = 10f64.powi(digits);
            Datum::F64((v * scale).round() / scale)
        }
        Datum::I64(v) if digits < 0 => {
            let scale = 10i64.pow(digits.unsigned_abs());
            let rounded = (v as f64 / scale as f64).round() as i64;
            Datum::I64(rounded.wrapping_mul(scale))
        }
        Datum::I64(v) => Datum::I64(v),
        _ => Datum::Null,
    }
}

/// GREATEST / LEAST, ignoring NULLs.
fn extreme<'a>(args: &'a [Node], row: &'a ArchivedRow, want: Ordering) -> Datum<'a> {
    let mut best = Datum::Null;
    for node in args {
        let value = node.eval(row);
        if value == Datum::Null {
            continue;
        }
        if best == Datum::Null || compare(&value, &best) == Some(want) {
            best = value;
        }
    }
    best
}

/// A field of the time of day (`ms / unit % modulus` within the UTC day), without the
/// calendar arithmetic a date field needs: q14 calls `hour` on every bid.
fn time_of_day<'a>(value: Datum<'_>, unit_ms: i64, modulus: i64) -> Datum<'a> {
    match value {
        Datum::Timestamp(ms) => Datum::I64(ms.rem_euclid(crate::time::DAY_MS) / unit_ms % modulus),
        _ => Datum::Null,
    }
}

fn time_part<'a>(value: Datum<'_>, part: impl Fn(&DateTime) -> i64) -> Datum<'a> {
    match value {
        Datum::Timestamp(ms) => Datum::I64(part(&DateTime::from_millis(ms))),
        _ => Datum::Null,
    }
}
