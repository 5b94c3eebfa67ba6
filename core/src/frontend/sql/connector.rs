//! What a `CREATE TABLE` says beyond its `WITH` options, as connector keys: `PRIMARY KEY`
//! (the upsert key of a sink), `METADATA` columns (record metadata of a Kafka source), and
//! options that stand for YAML lists and mappings (`'key' = 'a, b'`, `'document.f' = 'expr'`).

use sqlparser::ast::{ColumnOption, CreateTable, Expr, TableConstraint};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::prep::Metadata;
use super::{err, expr, pos_of, SqlError, Table};
use crate::frontend::spec::Pos;

/// Sink keys that take a mapping of field to expression, written in SQL as one option per
/// entry: `'document.price' = 'price * 100'`.
const MAP_OPTIONS: [&str; 2] = ["document", "columns"];

/// The Kafka record metadata a source can append, by the key Flink's Kafka connector uses
/// (or Wire's own name), with Wire's key and the field's type.
const KAFKA_METADATA: [(&str, &str, &str); 5] = [
    ("timestamp", "timestamp", "timestamp"),
    ("topic", "topic", "string"),
    ("partition", "partition", "i64"),
    ("offset", "offset", "i64"),
    ("key", "key", "bytes"),
];

/// The table's `PRIMARY KEY` (a constraint, or one column's `PRIMARY KEY` option): its
/// columns and where it is written. Other constraints are refused.
pub(super) fn primary_key(
    create: &CreateTable,
    at: Pos,
) -> Result<Option<(Vec<String>, Pos)>, SqlError> {
    let mut keys = None;
    for constraint in &create.constraints {
        let TableConstraint::PrimaryKey { columns, .. } = constraint else {
            return err(
                at,
                format!("table `{}`: only a `PRIMARY KEY (...) NOT ENFORCED` constraint is supported, not `{constraint}`", create.name),
            );
        };
        let mut names = Vec::new();
        let mut pos = at;
        for column in columns {
            let Expr::Identifier(id) = &column.column.expr else {
                return err(
                    at,
                    format!(
                        "table `{}`: a primary key lists columns, not `{}`",
                        create.name, column.column.expr
                    ),
                );
            };
            if names.is_empty() && id.span.start.line > 0 {
                pos = pos_of(id.span.start);
            }
            names.push(id.value.clone());
        }
        keys = Some((names, pos));
    }
    for column in &create.columns {
        let primary = column.options.iter().any(|o| {
            matches!(
                o.option,
                ColumnOption::Unique {
                    is_primary: true,
                    ..
                }
            )
        });
        if primary {
            if keys.is_some() {
                return err(
                    pos_of(column.name.span.start),
                    format!("table `{}` has a second primary key", create.name),
                );
            }
            keys = Some((
                vec![column.name.value.clone()],
                pos_of(column.name.span.start),
            ));
        }
    }
    Ok(keys)
}

/// Whether option `key` of a `kind` table holds a YAML list written as comma-separated
/// names (`'key' = 'region, minute'`).
pub(super) fn is_list_option(kind: &str, key: &str) -> bool {
    key == "key" && matches!(kind, "postgres" | "mongodb")
}

/// The mapping and entry an option such as `'document.price'` writes, when it is one.
pub(super) fn map_option(key: &str) -> Option<(&'static str, &str)> {
    MAP_OPTIONS.iter().find_map(|map| {
        key.strip_prefix(map)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|field| !field.is_empty())
            .map(|field| (*map, field))
    })
}

impl Table {
    /// The keys a sink's `PRIMARY KEY` stands for, as YAML lines, unless the options give
    /// them: the upsert key of `postgres` and `mongodb` sinks, the document id of
    /// `elasticsearch`, the record key of `kafka`.
    pub(super) fn primary_key_yaml(&self, kind: &str, out: &mut String) -> Result<(), SqlError> {
        let Some((columns, pos)) = &self.primary_key else {
            return Ok(());
        };
        let json = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let has = |key: &str| self.options.iter().any(|(k, _, _)| k == key);
        match kind {
            "postgres" | "mongodb" => {
                let mode = self.options.iter().find(|(k, _, _)| k == "mode");
                if let Some((_, mode, _)) = mode.filter(|(_, m, _)| m != "upsert") {
                    return err(
                        *pos,
                        format!("table `{}`: a PRIMARY KEY makes the sink upsert by it, but 'mode' is '{mode}'; drop one of them", self.name.name),
                    );
                }
                if !has("key") {
                    let list: Vec<String> = columns.iter().map(|c| json(c)).collect();
                    out.push_str(&format!("key: [{}]\n", list.join(", ")));
                }
                if !has("mode") {
                    out.push_str("mode: upsert\n");
                }
            }
            "elasticsearch" if !has("id") => {
                // Flink's Elasticsearch connector: the key's values joined by `_`.
                let parts: Vec<String> = columns
                    .iter()
                    .map(|c| format!("CAST(`{c}` AS string)"))
                    .collect();
                out.push_str(&format!("id: {}\n", json(&parts.join(" || '_' || "))));
            }
            "kafka" if !has("key") => match columns.as_slice() {
                [column] => out.push_str(&format!("key: {}\n", json(&format!("`{column}`")))),
                _ => {
                    return err(
                        *pos,
                        format!("table `{}`: a kafka sink's PRIMARY KEY is its record key, one column; for more, write the key as an expression: `'key' = 'a || ''_'' || b'`", self.name.name),
                    )
                }
            },
            "elasticsearch" | "kafka" => {}
            other => {
                return err(
                    *pos,
                    format!("table `{}`: a `{other}` sink has no key; PRIMARY KEY is for postgres, mongodb, elasticsearch and kafka sinks", self.name.name),
                )
            }
        }
        Ok(())
    }

    /// The `metadata:` mapping of a Kafka source's `METADATA` columns, as YAML lines.
    pub(super) fn metadata_yaml(&self, kind: &str, out: &mut String) -> Result<(), SqlError> {
        if self.metadata.is_empty() {
            return Ok(());
        }
        let json = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut lines = String::new();
        for column in &self.metadata {
            if kind != "kafka" {
                return err(
                    column.pos,
                    format!(
                        "table `{}`: METADATA columns are for kafka tables, not `{kind}`",
                        self.name.name
                    ),
                );
            }
            let key = column.key.to_ascii_lowercase();
            let Some((_, wire, ty)) = KAFKA_METADATA.iter().find(|(k, _, _)| *k == key) else {
                let known: Vec<&str> = KAFKA_METADATA.iter().map(|(k, _, _)| *k).collect();
                return err(
                    column.pos,
                    format!(
                        "table `{}`: column `{}`: unknown metadata key `{}` (known: {})",
                        self.name.name,
                        column.column,
                        column.key,
                        known.join(", ")
                    ),
                );
            };
            let declared = declared_type(column);
            if declared != Some(*ty) {
                return err(
                    column.pos,
                    format!(
                        "table `{}`: column `{}`: metadata `{key}` is of type {ty}, not `{}`",
                        self.name.name, column.column, column.ty
                    ),
                );
            }
            lines.push_str(&format!("  {}: {}\n", json(&column.column), json(wire)));
        }
        out.push_str("metadata:\n");
        out.push_str(&lines);
        Ok(())
    }
}

/// Wire's type for the first word of a metadata column's SQL type.
fn declared_type(column: &Metadata) -> Option<&'static str> {
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(&column.ty)
        .ok()?;
    let ty = parser.parse_data_type().ok()?;
    expr::type_name(&ty)
}
