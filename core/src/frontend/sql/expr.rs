//! SQL expressions written in Wire's expression language, with anchors back to the SQL.
//!
//! Wire's language is close to SQL already (`CASE`, `CAST`, `IN`, `LIKE`, `BETWEEN`, `||`), so
//! most of this is a walk that writes the same thing; Flink's names that differ are mapped
//! (`EXTRACT(HOUR FROM t)` is `hour(t)`, `CHARACTER_LENGTH` is `char_length`, an `INTERVAL` is
//! its milliseconds). Everything else is an error naming what is not supported.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType as SqlType, DateTimeField, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, Interval, UnaryOperator, Value,
};
use sqlparser::ast::{DuplicateTreatment, Spanned};

use super::{pos_of, SqlError};
use crate::frontend::spec::{ExprText, Pos};

/// Aggregate functions and the names Wire's `aggregate` knows them by.
const AGGREGATES: [(&str, &str); 8] = [
    ("count", "count"),
    ("sum", "sum"),
    ("min", "min"),
    ("max", "max"),
    ("avg", "avg"),
    ("first_value", "first"),
    ("last_value", "last"),
    ("first", "first"),
];

/// How names resolve while writing an expression.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    /// Table names and aliases that may qualify a column.
    pub qualifiers: Vec<String>,
    /// `(qualifier, column, field)`: a qualified column that is the field `field` here.
    pub renames: Vec<(String, String, String)>,
    /// Whole expressions (by their SQL text) that are a field here: group keys and aggregate
    /// calls after an aggregation.
    pub replace: Vec<(String, String)>,
}

impl Scope {
    /// A scope of one relation known as `name`.
    pub fn of(name: &str) -> Scope {
        Scope {
            qualifiers: vec![name.to_string()],
            ..Scope::default()
        }
    }
}

/// Whether `name` is an aggregate function.
pub(super) fn aggregate_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    AGGREGATES
        .iter()
        .find(|(sql, _)| *sql == lower)
        .map(|(_, wire)| *wire)
}

/// Whether `expr` calls an aggregate function anywhere.
pub(super) fn has_aggregate(expr: &Expr) -> bool {
    let mut found = false;
    walk(expr, &mut |e| {
        if let Expr::Function(f) = e {
            if f.over.is_none() && aggregate_name(&f.name.to_string()).is_some() {
                found = true;
            }
        }
    });
    found
}

/// Whether [`walk`] visits every expression inside a call of `f`: its arguments are plain
/// expressions, and it has no `OVER` or `WITHIN GROUP`.
pub(super) fn walks_all_args(f: &Function) -> bool {
    let plain = match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list
            .args
            .iter()
            .all(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(_)))),
        FunctionArguments::Subquery(_) => false,
    };
    plain && f.over.is_none() && f.within_group.is_empty()
}

/// Calls `visit` on `expr` and every expression inside it.
pub(super) fn walk(expr: &Expr, visit: &mut dyn FnMut(&Expr)) {
    visit(expr);
    match expr {
        Expr::BinaryOp { left, right, .. } => {
            walk(left, visit);
            walk(right, visit);
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::Cast { expr, .. }
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::Extract { expr, .. } => walk(expr, visit),
        Expr::InList { expr, list, .. } => {
            walk(expr, visit);
            list.iter().for_each(|e| walk(e, visit));
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            walk(expr, visit);
            walk(low, visit);
            walk(high, visit);
        }
        Expr::Like { expr, pattern, .. } => {
            walk(expr, visit);
            walk(pattern, visit);
        }
        Expr::Function(f) => {
            if let FunctionArguments::List(list) = &f.args {
                for arg in &list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(a)) = arg {
                        walk(a, visit);
                    }
                }
            }
            if let Some(filter) = &f.filter {
                walk(filter, visit);
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.iter().for_each(|o| walk(o, visit));
            for c in conditions {
                walk(&c.condition, visit);
                walk(&c.result, visit);
            }
            else_result.iter().for_each(|o| walk(o, visit));
        }
        _ => {}
    }
}

/// Writes `expr` as an [`ExprText`] for the key path `path`.
pub(super) fn lower(expr: &Expr, scope: &Scope, path: &str, at: Pos) -> Result<ExprText, SqlError> {
    let mut writer = Writer {
        out: String::new(),
        anchors: Vec::new(),
        scope,
        fallback: at,
    };
    writer.expr(expr)?;
    let start = start_of(expr).unwrap_or(at);
    Ok(ExprText::from_text(
        writer.out,
        path.to_string(),
        start,
        writer.anchors,
    ))
}

/// Where `expr` starts in the SQL text, if the parser kept it.
pub(super) fn start_of(expr: &Expr) -> Option<Pos> {
    let span = expr.span();
    (span.start.line > 0).then(|| pos_of(span.start))
}

/// The milliseconds of an `INTERVAL 'n' UNIT` (or a plain integer of milliseconds).
pub(super) fn interval_ms(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Interval(interval) => interval_value(interval),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) => interval_ms(inner),
        _ => None,
    }
}

fn interval_value(interval: &Interval) -> Option<i64> {
    if interval.last_field.is_some() {
        return None;
    }
    let text = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.trim().to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let (number, unit_word) = match text.split_once(' ') {
        Some((n, u)) => (n.to_string(), Some(u.trim().to_ascii_uppercase())),
        None => (text, None),
    };
    let value: i64 = number.parse().ok()?;
    let unit = match (&interval.leading_field, unit_word.as_deref()) {
        (Some(field), None) => field_ms(field)?,
        (None, Some(word)) => word_ms(word)?,
        _ => return None,
    };
    value.checked_mul(unit)
}

fn field_ms(field: &DateTimeField) -> Option<i64> {
    match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => Some(1),
        DateTimeField::Second | DateTimeField::Seconds => Some(1_000),
        DateTimeField::Minute | DateTimeField::Minutes => Some(60_000),
        DateTimeField::Hour | DateTimeField::Hours => Some(3_600_000),
        DateTimeField::Day | DateTimeField::Days => Some(86_400_000),
        _ => None,
    }
}

fn word_ms(word: &str) -> Option<i64> {
    match word.trim_end_matches('S') {
        "MILLISECOND" => Some(1),
        "SECOND" => Some(1_000),
        "MINUTE" => Some(60_000),
        "HOUR" => Some(3_600_000),
        "DAY" => Some(86_400_000),
        _ => None,
    }
}

/// A SQL type as Wire names it.
pub(super) fn type_name(data_type: &SqlType) -> Option<&'static str> {
    use SqlType as T;
    Some(match data_type {
        T::BigInt(_) | T::Int(_) | T::Integer(_) | T::SmallInt(_) | T::TinyInt(_) => "i64",
        T::Int64 | T::Int32 => "i64",
        T::Double(_) | T::DoublePrecision | T::Float(_) | T::Real | T::Float64 => "f64",
        T::Decimal(_) | T::Numeric(_) | T::Dec(_) => "f64",
        T::Boolean | T::Bool => "bool",
        T::Varchar(_) | T::String(_) | T::Text | T::Char(_) | T::CharVarying(_) => "string",
        T::Bytes(_) | T::Varbinary(_) | T::Binary(_) | T::Bytea | T::Blob(_) => "bytes",
        T::Timestamp(_, _) | T::Datetime(_) | T::TimestampNtz => "timestamp",
        T::Custom(name, _) => match name.to_string().to_ascii_uppercase().as_str() {
            "TIMESTAMP_LTZ" => "timestamp",
            "STRING" => "string",
            _ => return None,
        },
        _ => return None,
    })
}

const INTERVAL_FORMS: &str =
    "this `INTERVAL` (write `INTERVAL 'n' SECOND`, MINUTE, HOUR, DAY or MILLISECOND)";

struct Writer<'s> {
    out: String,
    anchors: Vec<(usize, Pos)>,
    scope: &'s Scope,
    fallback: Pos,
}

impl Writer<'_> {
    fn unsupported(&self, expr: &Expr, what: &str) -> SqlError {
        SqlError {
            pos: start_of(expr).unwrap_or(self.fallback),
            message: format!("{what} is not supported in expressions"),
        }
    }

    fn anchor(&mut self, expr: &Expr) {
        if let Some(pos) = start_of(expr) {
            self.anchors.push((self.out.len(), pos));
        }
    }

    fn push(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn expr(&mut self, expr: &Expr) -> Result<(), SqlError> {
        let sql = expr.to_string();
        if let Some((_, field)) = self.scope.replace.iter().find(|(s, _)| *s == sql) {
            self.anchor(expr);
            let field = quote(field);
            self.push(&field);
            return Ok(());
        }
        self.anchor(expr);
        match expr {
            Expr::Identifier(id) => self.push(&quote(&id.value)),
            Expr::CompoundIdentifier(parts) => self.column(expr, parts)?,
            Expr::Value(v) => self.value(expr, &v.value)?,
            Expr::Nested(inner) => {
                self.push("(");
                self.expr(inner)?;
                self.push(")");
            }
            Expr::BinaryOp { left, op, right } => self.binary(expr, left, op, right)?,
            Expr::UnaryOp { op, expr: inner } => {
                let text = match op {
                    UnaryOperator::Not => "NOT ",
                    UnaryOperator::Minus => "-",
                    UnaryOperator::Plus => "",
                    _ => return Err(self.unsupported(expr, &format!("the operator `{op}`"))),
                };
                self.push("(");
                self.push(text);
                self.expr(inner)?;
                self.push(")");
            }
            Expr::IsNull(inner) => self.postfix(inner, " IS NULL")?,
            Expr::IsNotNull(inner) => self.postfix(inner, " IS NOT NULL")?,
            _ => self.predicate(expr)?,
        }
        Ok(())
    }

    fn other(&mut self, expr: &Expr) -> Result<(), SqlError> {
        match expr {
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.push("CASE");
                if let Some(operand) = operand {
                    self.push(" ");
                    self.expr(operand)?;
                }
                for when in conditions {
                    self.push(" WHEN ");
                    self.expr(&when.condition)?;
                    self.push(" THEN ");
                    self.expr(&when.result)?;
                }
                if let Some(other) = else_result {
                    self.push(" ELSE ");
                    self.expr(other)?;
                }
                self.push(" END");
            }
            Expr::Cast { .. } | Expr::Extract { .. } => self.conversion(expr)?,
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => {
                self.push("substr(");
                self.expr(inner)?;
                self.push(", ");
                match substring_from {
                    Some(from) => self.expr(from)?,
                    None => self.push("1"),
                }
                if let Some(len) = substring_for {
                    self.push(", ");
                    self.expr(len)?;
                }
                self.push(")");
            }
            Expr::Interval(_) => match interval_ms(expr) {
                Some(ms) => self.push(&ms.to_string()),
                None => return Err(self.unsupported(expr, INTERVAL_FORMS)),
            },
            Expr::TypedString(typed) => {
                let (data_type, value) = (&typed.data_type, &typed.value);
                let Some(to) = type_name(data_type) else {
                    return Err(self.unsupported(expr, &format!("a `{data_type}` literal")));
                };
                self.push("CAST(");
                let text = value.value.to_string();
                self.push(&literal(&text.trim_matches('\'').replace("''", "'")));
                self.push(&format!(" AS {to})"));
            }
            Expr::Function(function) => self.function(expr, function)?,
            _ => return Err(self.unsupported(expr, &format!("`{expr}`"))),
        }
        Ok(())
    }

    /// `IN`, `BETWEEN` and `LIKE`; anything else goes on to [`Writer::other`].
    fn predicate(&mut self, expr: &Expr) -> Result<(), SqlError> {
        match expr {
            Expr::InList {
                expr: inner,
                list,
                negated,
            } => {
                self.push("(");
                self.expr(inner)?;
                self.push(if *negated { " NOT IN (" } else { " IN (" });
                self.list(list)?;
                self.push("))");
            }
            Expr::Between {
                expr: inner,
                negated,
                low,
                high,
            } => {
                self.push("(");
                self.expr(inner)?;
                self.push(if *negated {
                    " NOT BETWEEN "
                } else {
                    " BETWEEN "
                });
                self.expr(low)?;
                self.push(" AND ");
                self.expr(high)?;
                self.push(")");
            }
            Expr::Like {
                negated,
                expr: inner,
                pattern,
                escape_char,
                any,
            } => {
                if escape_char.is_some() || *any {
                    return Err(self.unsupported(expr, "`LIKE ... ESCAPE`"));
                }
                self.push("(");
                self.expr(inner)?;
                self.push(if *negated { " NOT LIKE " } else { " LIKE " });
                self.expr(pattern)?;
                self.push(")");
            }
            _ => self.other(expr)?,
        }
        Ok(())
    }

    /// `CAST` and `EXTRACT`.
    fn conversion(&mut self, expr: &Expr) -> Result<(), SqlError> {
        match expr {
            Expr::Cast {
                kind,
                expr: inner,
                data_type,
                ..
            } => {
                let Some(to) = type_name(data_type) else {
                    return Err(self.unsupported(expr, &format!("the type `{data_type}`")));
                };
                if !matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
                    return Err(self.unsupported(expr, "`TRY_CAST`"));
                }
                self.push("CAST(");
                self.expr(inner)?;
                self.push(&format!(" AS {to})"));
            }
            Expr::Extract {
                field, expr: inner, ..
            } => {
                let name = match field {
                    DateTimeField::Year => "year",
                    DateTimeField::Month => "month",
                    DateTimeField::Day => "day",
                    DateTimeField::Hour => "hour",
                    DateTimeField::Minute => "minute",
                    DateTimeField::Second => "second",
                    DateTimeField::DayOfWeek | DateTimeField::Dow | DateTimeField::Isodow => {
                        "day_of_week"
                    }
                    _ => return Err(self.unsupported(expr, &format!("`EXTRACT({field} ...)`"))),
                };
                self.push(name);
                self.push("(");
                self.expr(inner)?;
                self.push(")");
            }
            _ => return Err(self.unsupported(expr, &format!("`{expr}`"))),
        }
        Ok(())
    }

    fn postfix(&mut self, inner: &Expr, text: &str) -> Result<(), SqlError> {
        self.push("(");
        self.expr(inner)?;
        self.push(text);
        self.push(")");
        Ok(())
    }

    fn list(&mut self, list: &[Expr]) -> Result<(), SqlError> {
        for (i, item) in list.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.expr(item)?;
        }
        Ok(())
    }

    fn column(&mut self, expr: &Expr, parts: &[sqlparser::ast::Ident]) -> Result<(), SqlError> {
        let [qualifier, column] = parts else {
            return Err(self.unsupported(expr, &format!("the name `{expr}`")));
        };
        let known = self.scope.qualifiers.contains(&qualifier.value);
        if !known {
            return Err(SqlError {
                pos: start_of(expr).unwrap_or(self.fallback),
                message: format!(
                    "unknown table or alias `{}` (known here: {})",
                    qualifier.value,
                    self.scope.qualifiers.join(", ")
                ),
            });
        }
        let field = self
            .scope
            .renames
            .iter()
            .find(|(q, c, _)| *q == qualifier.value && *c == column.value)
            .map_or(column.value.as_str(), |(_, _, f)| f.as_str())
            .to_string();
        self.push(&quote(&field));
        Ok(())
    }

    fn value(&mut self, expr: &Expr, value: &Value) -> Result<(), SqlError> {
        match value {
            Value::Number(n, _) => self.push(n),
            Value::SingleQuotedString(s) => self.push(&literal(s)),
            Value::Boolean(b) => self.push(if *b { "true" } else { "false" }),
            Value::Null => self.push("NULL"),
            _ => return Err(self.unsupported(expr, &format!("the literal `{value}`"))),
        }
        Ok(())
    }

    fn binary(
        &mut self,
        expr: &Expr,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
    ) -> Result<(), SqlError> {
        use BinaryOperator as B;
        let text = match op {
            B::Plus => "+",
            B::Minus => "-",
            B::Multiply => "*",
            B::Divide => "/",
            B::Modulo => "%",
            B::StringConcat => "||",
            B::Gt => ">",
            B::Lt => "<",
            B::GtEq => ">=",
            B::LtEq => "<=",
            B::Eq => "=",
            B::NotEq => "<>",
            B::And => "AND",
            B::Or => "OR",
            _ => return Err(self.unsupported(expr, &format!("the operator `{op}`"))),
        };
        self.push("(");
        self.expr(left)?;
        self.push(&format!(" {text} "));
        self.expr(right)?;
        self.push(")");
        Ok(())
    }

    fn function(&mut self, expr: &Expr, function: &Function) -> Result<(), SqlError> {
        let name = function.name.to_string();
        if function.over.is_some() {
            return Err(SqlError {
                pos: start_of(expr).unwrap_or(self.fallback),
                message: format!("`{name}(...) OVER (...)` is supported only as a select item `AVG/SUM/COUNT/MIN/MAX(col) OVER (PARTITION BY ... ORDER BY t ROWS BETWEEN n PRECEDING AND CURRENT ROW)`, or as `ROW_NUMBER()` or `RANK()` in a subquery filtered by `WHERE rn <= N` (top-N)"),
            });
        }
        let aggregate = aggregate_name(&name);
        let lower = name.to_ascii_lowercase();
        let wire_name = match (aggregate, lower.as_str()) {
            (Some(wire), _) => wire.to_string(),
            (None, "character_length") => "char_length".into(),
            (None, "substring") => "substr".into(),
            (None, "to_timestamp_ltz") => "to_timestamp".into(),
            (None, _) => lower.clone(),
        };
        if function.filter.is_some() && aggregate.is_none() {
            return Err(self.unsupported(
                expr,
                "`FILTER (WHERE ...)` on a function that is not an aggregate",
            ));
        }
        if wire_name == "mod" {
            return self.modulo(expr, function);
        }
        self.push(&wire_name);
        self.push("(");
        if let FunctionArguments::List(list) = &function.args {
            if let Some(DuplicateTreatment::Distinct) = list.duplicate_treatment {
                self.push("distinct ");
            }
            if !list.clauses.is_empty() {
                return Err(self.unsupported(expr, &format!("the arguments of `{name}`")));
            }
            for (i, arg) in list.args.iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => self.expr(e)?,
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => self.push("*"),
                    _ => return Err(self.unsupported(expr, &format!("the argument `{arg}`"))),
                }
            }
        } else if !matches!(function.args, FunctionArguments::None) {
            return Err(self.unsupported(expr, &format!("the arguments of `{name}`")));
        }
        self.push(")");
        if let Some(filter) = &function.filter {
            self.push(" filter (where ");
            self.expr(filter)?;
            self.push(")");
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// `MOD(a, b)` as `(a % b)`.
    fn modulo(&mut self, expr: &Expr, function: &Function) -> Result<(), SqlError> {
        let args: Vec<&Expr> = match &function.args {
            FunctionArguments::List(list) => list
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let [a, b] = args.as_slice() else {
            return Err(self.unsupported(expr, "`MOD` with other than two arguments"));
        };
        self.push("(");
        self.expr(a)?;
        self.push(" % ");
        self.expr(b)?;
        self.push(")");
        Ok(())
    }
}

/// A string literal in Wire's language (quotes doubled, no backslash escapes).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A field name, in backquotes unless it is a plain name.
pub(super) fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name.to_ascii_lowercase().as_str());
    if plain {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

const KEYWORDS: [&str; 20] = [
    "and", "or", "not", "is", "null", "true", "false", "in", "like", "between", "case", "when",
    "then", "else", "end", "cast", "as", "distinct", "filter", "where",
];
