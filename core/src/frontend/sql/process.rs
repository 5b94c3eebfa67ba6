//! Process table functions: `TABLE(f(TABLE t PARTITION BY k, name => value, ...))` in `FROM`
//! is a `process` operator running the registered function `f` (Flink's process table
//! function call), keyed by the `PARTITION BY` columns, with the named arguments as its config.

use sqlparser::ast::{Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Value};

use super::expr::{self, Scope};
use super::query::{relation, Lower, Relation};
use super::{err, pos_of, SqlError};
use crate::frontend::spec::{GroupKey, Named, OperatorKind, Pos, ProcessSpec};

/// Lowers the call of a function that is not a windowing function, written at `pos`.
pub(super) fn process_function(
    lower: &mut Lower,
    function: &Function,
    pos: Pos,
) -> Result<Relation, SqlError> {
    let name = function.name.to_string().to_ascii_lowercase();
    let usage = format!(
        "expected {name}(TABLE t [PARTITION BY k | PARTITION BY (k1, k2)], name => value, ...)"
    );
    let FunctionArguments::List(list) = &function.args else {
        return err(pos, usage);
    };
    let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(table)))) =
        list.args.first()
    else {
        return err(pos, usage);
    };
    let table_pos = pos_of(table.span.start);
    let scope = Scope::of(&table.value);
    let group_by = partition_keys(lower, table_pos, &scope)?;
    let config = config(&list.args[1..], &usage, pos)?;
    let input = lower.relation(&table.value, table_pos)?;
    let process = ProcessSpec {
        function: Named { name, pos },
        group_by,
        config,
    };
    let base = process.function.name.clone();
    let out = lower.push_operator(&base, &input, OperatorKind::Process(process), pos);
    Ok(relation(out.clone(), Scope::of(&out), None))
}

/// The `PARTITION BY` columns written after the table argument at `table_pos`, as keys.
fn partition_keys(lower: &Lower, table_pos: Pos, scope: &Scope) -> Result<Vec<GroupKey>, SqlError> {
    let Some(partition) = lower.partition_at(table_pos) else {
        return Ok(Vec::new());
    };
    partition
        .keys
        .iter()
        .map(|(key, key_pos)| {
            let column = Expr::Identifier(sqlparser::ast::Ident::new(key));
            Ok(GroupKey {
                name: None,
                expr: expr::lower(&column, scope, "PARTITION BY", *key_pos)?,
            })
        })
        .collect()
}

/// The named arguments after the table, as config entries.
fn config(args: &[FunctionArg], usage: &str, pos: Pos) -> Result<Vec<(Named, String)>, SqlError> {
    let mut config = Vec::new();
    for arg in args {
        let FunctionArg::Named { name: key, arg, .. } = arg else {
            return err(
                pos,
                format!("{usage}: the arguments after the table are named"),
            );
        };
        let key_pos = if key.span.start.line > 0 {
            pos_of(key.span.start)
        } else {
            pos
        };
        let FunctionArgExpr::Expr(value) = arg else {
            return err(key_pos, format!("`{}` needs a value", key.value));
        };
        let Some(text) = config_value(value) else {
            return err(
                key_pos,
                format!(
                    "`{}`: a value is a string, a number, a column name or an INTERVAL",
                    key.value
                ),
            );
        };
        config.push((
            Named {
                name: key.value.to_ascii_lowercase(),
                pos: key_pos,
            },
            text,
        ));
    }
    Ok(config)
}

/// A config value as the function reads it: text, a number, a column's name, or an interval
/// as milliseconds (`5000ms`).
fn config_value(value: &Expr) -> Option<String> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => Some(s.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::Identifier(id) => Some(id.value.clone()),
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => config_value(expr).map(|v| format!("-{v}")),
        other => expr::interval_ms(other).map(|ms| format!("{ms}ms")),
    }
}

#[cfg(test)]
mod tests;
