//! Temporal (lookup) joins: `JOIN t FOR SYSTEM_TIME AS OF l.time [AS s] ON l.k = s.k`, lowered
//! to a `lookup` against a `filesystem` table.
//!
//! The table is static (read from its file when the pipeline starts), so every version of it
//! is the same and the `AS OF` time does not change what a row finds.

use sqlparser::ast::{BinaryOperator, Expr, Join, TableFactor};

use super::expr::{self, Scope};
use super::query::{join_condition, refers_to, relation, split_and, Lower, Relation};
use super::{err, name_pos, object_name, SqlError};
use crate::frontend::spec::{ExprText, LookupSpec, Named, Pos, SourceKind};

/// Whether the join's table is followed by `FOR SYSTEM_TIME AS OF` (a temporal join).
pub(super) fn is_temporal(lower: &Lower, join: &Join) -> bool {
    match &join.relation {
        TableFactor::Table { name, alias, .. } => {
            // `t FOR SYSTEM_TIME AS OF x [AS s]`, or `t AS s FOR SYSTEM_TIME AS OF x`.
            let pos = name_pos(name, Pos { line: 0, column: 0 });
            let alias_pos = alias.as_ref().map(|a| super::pos_of(a.name.span.start));
            lower
                .temporals
                .iter()
                .any(|t| t.table_pos == pos || Some(t.table_pos) == alias_pos)
        }
        _ => false,
    }
}

/// Lowers `left JOIN table FOR SYSTEM_TIME AS OF ... ON ...` to a `lookup`.
pub(super) fn lookup_join(
    lower: &mut Lower,
    left: Relation,
    join: &Join,
    at: Pos,
) -> Result<Relation, SqlError> {
    let TableFactor::Table { name, alias, .. } = &join.relation else {
        return err(at, "`FOR SYSTEM_TIME AS OF` follows a table name");
    };
    let table_name = object_name(name);
    let pos = name_pos(name, at);
    let on = join_condition(join, at)?;
    let Some(table) = lower.table(&table_name) else {
        return err(
            pos,
            format!(
                "a temporal join looks up a table made by CREATE TABLE; `{table_name}` is not one"
            ),
        );
    };
    let source = table.source(lower.file())?;
    let SourceKind::File(file) = source.kind else {
        return err(pos, format!("a temporal join looks up a `filesystem` table (read from its file when the pipeline starts); `{table_name}` is not one"));
    };
    let mut scope = Scope::of(&table_name);
    if let Some(alias) = alias {
        scope.qualifiers.push(alias.name.value.clone());
    }
    let (_, left_scope, _) = super::query::parts(&left);
    let (key, table_key) = lookup_keys(on, left_scope, &scope, at)?;
    let shown = scope.qualifiers.last().cloned().unwrap_or(table_name);
    let prefix = format!("{shown}_");
    let table_fields: Vec<String> = file
        .schema
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let spec = LookupSpec {
        path: file.path,
        path_pos: file.path_pos,
        format: file.format,
        schema: file.schema,
        csv_header: file.csv_header,
        key,
        table_key,
        right_prefix: Some(prefix.clone()),
    };
    let (input, left_scope, _) = super::query::parts(&left);
    let input = input.to_string();
    let mut out = left_scope.clone();
    let left_fields = lower.fields(&input, at)?;
    for qualifier in &scope.qualifiers {
        out.qualifiers.push(qualifier.clone());
        for field in &table_fields {
            if left_fields.contains(field) {
                out.renames
                    .push((qualifier.clone(), field.clone(), format!("{prefix}{field}")));
            }
        }
    }
    let name = lower.push_lookup(&input, spec, at);
    Ok(relation(name, out, None))
}

/// The keys of `ON l.x = s.k AND ...`: expressions over the left row, and the table columns
/// they must equal.
fn lookup_keys(
    on: &Expr,
    left: &Scope,
    table: &Scope,
    at: Pos,
) -> Result<(Vec<ExprText>, Vec<Named>), SqlError> {
    let mut conjuncts = Vec::new();
    split_and(on, &mut conjuncts);
    let (mut key, mut table_key) = (Vec::new(), Vec::new());
    for condition in conjuncts {
        let pos = expr::start_of(condition).unwrap_or(at);
        let Expr::BinaryOp {
            left: l,
            op: BinaryOperator::Eq,
            right: r,
        } = condition
        else {
            return err(pos, format!("a temporal join's conditions must be equalities of a left expression and a table column; `{condition}` is not supported (filter after the join)"));
        };
        let (outer, column) = if refers_to(r, table) { (l, r) } else { (r, l) };
        let Expr::CompoundIdentifier(parts) = column.as_ref() else {
            return err(pos, format!("`{condition}`: one side must be a column of the looked-up table, qualified by its name or alias"));
        };
        let Some(field) = parts.last().filter(|_| refers_to(column, table)) else {
            return err(pos, format!("`{condition}`: one side must be a column of the looked-up table, qualified by its name or alias"));
        };
        if refers_to(outer, table) {
            return err(
                pos,
                format!("`{condition}`: the other side must be over the left input only"),
            );
        }
        key.push(expr::lower(outer, left, "JOIN ON", at)?);
        table_key.push(Named {
            name: field.value.clone(),
            pos: super::pos_of(field.span.start),
        });
    }
    Ok((key, table_key))
}
