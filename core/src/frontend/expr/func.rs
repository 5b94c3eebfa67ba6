//! Built-in functions: their names, argument checks and evaluation.
//!
//! Functions with a pattern argument (`regexp_extract`, `date_format`) take it as a literal,
//! compiled once here when the expression is checked into a [`Prepared`] node, so evaluation
//! never parses a pattern.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use super::check::{unify, Typed};
use super::eval::{compare, Node};
use super::{Datum, ExprError};
use crate::record::row::ArchivedRow;
use crate::record::schema::DataType;
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
    RegexpExtract,
    SplitIndex,
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
    DateFormat,
}

/// A call whose literal pattern was compiled when the expression was checked.
#[derive(Debug, Clone)]
pub(super) enum Prepared {
    /// `regexp_extract(text, pattern[, group])`.
    RegexpExtract {
        text: Node,
        regex: regex::Regex,
        group: usize,
    },
    /// `date_format(time, pattern)`.
    DateFormat { time: Node, pattern: Vec<DatePiece> },
}

/// One piece of a compiled `date_format` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DatePiece {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Milli,
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
    sig(
        "regexp_extract",
        Func::RegexpExtract,
        &[P::Str, P::Str, P::Int],
        2,
        R::Type(T::String),
    ),
    sig(
        "split_index",
        Func::SplitIndex,
        &[P::Str, P::Str, P::Int],
        3,
        R::Type(T::String),
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
    sig(
        "date_format",
        Func::DateFormat,
        &[P::Time, P::Str],
        2,
        R::Type(T::String),
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
        let hint = crate::frontend::spec::closest(name, &names())
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
    let node = match func {
        Func::RegexpExtract => regexp_node(args)?,
        Func::DateFormat => date_format_node(args)?,
        _ => Node::Call(func, args.into_iter().map(|arg| arg.node).collect()),
    };
    Ok((node, ty, nullable))
}

/// Compiles `regexp_extract`'s literal pattern and checks its literal group number.
fn regexp_node(mut args: Vec<Typed>) -> Result<Node, ExprError> {
    let pattern = &args[1];
    let text = string_literal(pattern, "the pattern of `regexp_extract`")?;
    let regex = regex::Regex::new(text).map_err(|err| {
        ExprError::at(
            pattern.offset,
            format!("invalid regular expression: {}", regex_reason(&err)),
        )
    })?;
    let group = match args.get(2) {
        None => 0,
        Some(arg) => {
            let group = match arg.node {
                Node::Const(Datum::I64(g)) => usize::try_from(g).ok(),
                _ => None,
            };
            let Some(group) = group else {
                return Err(ExprError::at(
                    arg.offset,
                    "the group of `regexp_extract` must be a non-negative integer literal".into(),
                ));
            };
            let groups = regex.captures_len() - 1;
            if group > groups {
                return Err(ExprError::at(
                    arg.offset,
                    format!(
                        "group {group} does not exist: the pattern has {groups} capture group{}",
                        if groups == 1 { "" } else { "s" }
                    ),
                ));
            }
            group
        }
    };
    let text = args.swap_remove(0).node;
    Ok(Node::Prepared(Box::new(Prepared::RegexpExtract {
        text,
        regex,
        group,
    })))
}

/// Compiles `date_format`'s literal pattern.
fn date_format_node(mut args: Vec<Typed>) -> Result<Node, ExprError> {
    let pattern = &args[1];
    let text = string_literal(pattern, "the pattern of `date_format`")?;
    let pattern =
        parse_date_pattern(text).map_err(|reason| ExprError::at(pattern.offset, reason))?;
    let time = args.swap_remove(0).node;
    Ok(Node::Prepared(Box::new(Prepared::DateFormat {
        time,
        pattern,
    })))
}

fn string_literal<'t>(arg: &'t Typed, what: &str) -> Result<&'t str, ExprError> {
    match &arg.node {
        Node::Const(Datum::Str(text)) => Ok(text),
        _ => Err(ExprError::at(
            arg.offset,
            format!("{what} must be a string literal ('…')"),
        )),
    }
}

/// The one-line reason of a regex error (its `Display` draws the pattern with a caret).
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    match text
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
    {
        Some(reason) => reason.to_string(),
        None => text.lines().map(str::trim).collect::<Vec<_>>().join(" "),
    }
}

/// Parses a `date_format` pattern: `yyyy`, `MM`, `dd`, `HH`, `mm`, `ss` and `SSS` are fields,
/// text in single quotes is literal (`''` is a quote), other letters are an error and every
/// other character stands for itself, as in Java's `SimpleDateFormat`.
fn parse_date_pattern(pattern: &str) -> Result<Vec<DatePiece>, String> {
    let mut pieces: Vec<DatePiece> = Vec::new();
    let mut literal = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.next_if_eq(&'\'').is_some() {
                literal.push('\'');
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err("unterminated quote in the date_format pattern".into()),
                    Some('\'') if chars.next_if_eq(&'\'').is_some() => literal.push('\''),
                    Some('\'') => break,
                    Some(other) => literal.push(other),
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            literal.push(c);
            continue;
        }
        let mut run = 1;
        while chars.next_if_eq(&c).is_some() {
            run += 1;
        }
        let Some(piece) = date_field(c, run) else {
            return Err(format!(
                "`{}` is not a date_format field; use yyyy, MM, dd, HH, mm, ss or SSS, and quote other letters: 'yyyy-MM-dd''T''HH'",
                c.to_string().repeat(run)
            ));
        };
        if !literal.is_empty() {
            pieces.push(DatePiece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(DatePiece::Literal(literal));
    }
    Ok(pieces)
}

fn date_field(letter: char, run: usize) -> Option<DatePiece> {
    Some(match (letter, run) {
        ('y', 4) => DatePiece::Year,
        ('M', 2) => DatePiece::Month,
        ('d', 2) => DatePiece::Day,
        ('H', 2) => DatePiece::Hour,
        ('m', 2) => DatePiece::Minute,
        ('s', 2) => DatePiece::Second,
        ('S', 3) => DatePiece::Milli,
        _ => return None,
    })
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
        Func::RegexpExtract | Func::SplitIndex => true,
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
            Func::Length => length(arg(0)),
            Func::Substr => substr(arg(0), arg(1), args.get(2).map(|n| n.eval(row))),
            Func::Concat => concat(args, row),
            Func::Replace => replace(arg(0), arg(1), arg(2)),
            Func::StartsWith => str_test(arg(0), arg(1), |s, p| s.starts_with(p)),
            Func::EndsWith => str_test(arg(0), arg(1), |s, p| s.ends_with(p)),
            Func::Contains => str_test(arg(0), arg(1), |s, p| s.contains(p)),
            Func::CountChar => count_char(arg(0), arg(1)),
            Func::SplitIndex => split_index(arg(0), arg(1), arg(2)),
            Func::RegexpExtract | Func::DateFormat => {
                unreachable!("pattern functions are lowered to Node::Prepared when checked")
            }
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
            Func::DayOfWeek => day_of_week(arg(0)),
            Func::EpochMs => match arg(0) {
                Datum::Timestamp(ms) => Datum::I64(ms),
                _ => Datum::Null,
            },
            Func::ToTimestamp => super::eval::cast(arg(0), T::Timestamp),
        }
    }
}

/// Characters of a string, bytes of a byte string.
fn length(value: Datum<'_>) -> Datum<'static> {
    match value {
        Datum::Str(s) => Datum::I64(s.chars().count() as i64),
        Datum::Bytes(b) => Datum::I64(b.len() as i64),
        _ => Datum::Null,
    }
}

/// The text of every argument, one after another.
fn concat<'a>(args: &[Node], row: &ArchivedRow) -> Datum<'a> {
    let mut out = String::new();
    for node in args {
        node.eval(row).write_text(&mut out);
    }
    Datum::Str(Cow::Owned(out))
}

/// `s` with every `from` replaced by `to` (`s` as it is for an empty `from`).
fn replace<'a>(s: Datum<'a>, from: Datum<'a>, to: Datum<'a>) -> Datum<'a> {
    match (s, from, to) {
        (Datum::Str(s), Datum::Str(from), Datum::Str(to)) if !from.is_empty() => {
            Datum::Str(Cow::Owned(s.replace(from.as_ref(), &to)))
        }
        (s @ Datum::Str(_), Datum::Str(_), Datum::Str(_)) => s,
        _ => Datum::Null,
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

impl Prepared {
    pub(super) fn eval<'a>(&'a self, row: &'a ArchivedRow) -> Datum<'a> {
        match self {
            Prepared::RegexpExtract { text, regex, group } => match text.eval(row) {
                Datum::Str(text) => {
                    let range = if *group == 0 {
                        regex.find(&text).map(|m| m.range())
                    } else {
                        let captures = regex.captures(&text);
                        captures.and_then(|c| c.get(*group)).map(|m| m.range())
                    };
                    range.map_or(Datum::Null, |range| slice(text, range))
                }
                _ => Datum::Null,
            },
            Prepared::DateFormat { time, pattern } => match time.eval(row) {
                Datum::Timestamp(ms) => Datum::Str(Cow::Owned(format_date(ms, pattern))),
                _ => Datum::Null,
            },
        }
    }
}

/// `text[range]`, borrowing when `text` does.
fn slice(text: Cow<'_, str>, range: Range<usize>) -> Datum<'_> {
    match text {
        Cow::Borrowed(s) => Datum::Str(Cow::Borrowed(&s[range])),
        Cow::Owned(s) => Datum::Str(Cow::Owned(s[range].to_string())),
    }
}

/// Flink's SPLIT_INDEX: part `index` (from 0) of `value` split at every `delimiter`. NULL for
/// a negative or too large index, an empty `value` (Flink splits it into no parts) and an
/// empty delimiter (which Flink reads as "split at whitespace").
fn split_index<'a>(value: Datum<'a>, delimiter: Datum<'_>, index: Datum<'_>) -> Datum<'a> {
    let (Datum::Str(text), Datum::Str(delimiter), Datum::I64(index)) = (value, delimiter, index)
    else {
        return Datum::Null;
    };
    let Ok(index) = usize::try_from(index) else {
        return Datum::Null;
    };
    if text.is_empty() || delimiter.is_empty() {
        return Datum::Null;
    }
    match nth_part(&text, &delimiter, index) {
        Some(range) => slice(text, range),
        None => Datum::Null,
    }
}

/// The byte range of part `index` of `text` split at non-overlapping `delimiter`s, left to
/// right; empty parts count.
fn nth_part(text: &str, delimiter: &str, index: usize) -> Option<Range<usize>> {
    let ends = text
        .match_indices(delimiter)
        .map(|(at, _)| at)
        .chain(std::iter::once(text.len()));
    let mut start = 0;
    for (part, end) in ends.enumerate() {
        if part == index {
            return Some(start..end);
        }
        start = end + delimiter.len();
    }
    None
}

fn format_date(ms: i64, pattern: &[DatePiece]) -> String {
    let t = DateTime::from_millis(ms);
    let mut out = String::with_capacity(32);
    for piece in pattern {
        let (value, width) = match piece {
            DatePiece::Literal(text) => {
                out.push_str(text);
                continue;
            }
            DatePiece::Year => (t.year, 4),
            DatePiece::Month => (t.month, 2),
            DatePiece::Day => (t.day, 2),
            DatePiece::Hour => (t.hour, 2),
            DatePiece::Minute => (t.minute, 2),
            DatePiece::Second => (t.second, 2),
            DatePiece::Milli => (t.milli, 3),
        };
        push_padded(&mut out, value, width);
    }
    out
}

/// Appends `value` in decimal with at least `width` digits, and a sign when negative.
fn push_padded(out: &mut String, value: i64, width: usize) {
    use std::fmt::Write;
    if value < 0 {
        out.push('-');
    }
    let _ = write!(out, "{:0width$}", value.unsigned_abs());
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

/// ISO day of the week, Monday = 1 … Sunday = 7; 1970-01-01 was a Thursday.
fn day_of_week<'a>(value: Datum<'_>) -> Datum<'a> {
    match value {
        Datum::Timestamp(ms) => {
            Datum::I64((ms.div_euclid(crate::time::DAY_MS) + 3).rem_euclid(7) + 1)
        }
        _ => Datum::Null,
    }
}

fn time_part<'a>(value: Datum<'_>, part: impl Fn(&DateTime) -> i64) -> Datum<'a> {
    match value {
        Datum::Timestamp(ms) => Datum::I64(part(&DateTime::from_millis(ms))),
        _ => Datum::Null,
    }
}
