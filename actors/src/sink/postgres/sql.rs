//! The SQL a PostgreSQL sink sends, its connection, and how it tells a transient error
//! (retried) from a permanent one (fails the pipeline).

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, NoTls};
use wire_core::frontend::spec::{PostgresMode, PostgresSink};
use wire_core::record::schema::DataType;

/// A row to write: whether it deletes its key, and its columns' text (`None`: NULL).
pub(super) type Row = (bool, Vec<Option<String>>);

/// What a failed request was.
pub(super) enum Failure {
    /// Worth retrying: the server is unreachable, restarting, or the transaction conflicted.
    Transient(String),
    /// Retrying cannot help (no such table or column, a value the column refuses).
    Permanent(String),
}

/// The sink's table, columns and mode, for building statements.
pub(super) struct Target {
    pub(super) table: String,
    pub(super) columns: Vec<String>,
    pub(super) mode: PostgresMode,
    pub(super) key: Vec<String>,
    pub(super) batch_rows: usize,
}

impl Target {
    pub(super) fn new(spec: &PostgresSink, columns: Vec<String>) -> Self {
        Target {
            table: spec.table.clone(),
            columns,
            mode: spec.mode,
            key: spec.key.clone(),
            batch_rows: spec.batch_rows,
        }
    }
}

/// `url` with every `${NAME}` replaced by the environment variable `NAME`.
pub(crate) fn substitute_env(url: &str, what: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = url;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{what}: url: `${{` is not closed"))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| format!("{what}: url: the environment variable `{name}` is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The connection settings of `url` (after substitution) and the address errors name:
/// `host:port/database`, never the password.
pub(super) fn config(url: &str, what: &str) -> Result<(Config, String), String> {
    let url = substitute_env(url, what)?;
    let config: Config = url
        .parse()
        .map_err(|err| format!("{what}: url is not a PostgreSQL URL: {err}"))?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let address = format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    );
    Ok((config, address))
}

/// Connects, giving the attempt at most `timeout`.
pub(super) fn connect(config: &Config, timeout: Duration) -> Result<Client, postgres::Error> {
    let mut config = config.clone();
    config.connect_timeout(timeout);
    let mut client = config.connect(NoTls)?;
    client.batch_execute("SET standard_conforming_strings = on")?;
    Ok(client)
}

/// Sorts a failure into transient and permanent, with the server's message.
pub(super) fn classify(error: &postgres::Error) -> Failure {
    let Some(db) = error.as_db_error() else {
        return Failure::Transient(error.to_string());
    };
    let code = db.code().code();
    let mut text = db.message().to_string();
    if let Some(column) = db.column() {
        text.push_str(&format!(" (column `{column}`)"));
    }
    if let Some(detail) = db.detail() {
        text.push_str(&format!(": {detail}"));
    }
    let transient = code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || *db.code() == SqlState::T_R_SERIALIZATION_FAILURE
        || *db.code() == SqlState::T_R_DEADLOCK_DETECTED;
    if transient {
        Failure::Transient(text)
    } else {
        Failure::Permanent(format!("{text} [SQLSTATE {code}]"))
    }
}

/// `name` or `schema.name` as quoted identifiers.
pub(super) fn quoted(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A value as an SQL literal the server casts to the column's type.
fn literal(value: &Option<String>, out: &mut String) {
    match value {
        None => out.push_str("NULL"),
        Some(text) => {
            out.push('\'');
            out.push_str(&text.replace('\'', "''"));
            out.push('\'');
        }
    }
}

/// `INSERT INTO t (…) VALUES (…), …` for `rows`, with `ON CONFLICT (key) DO UPDATE` when
/// upserting.
pub(super) fn insert_sql(target: &Target, rows: &[&Row]) -> String {
    let columns: Vec<String> = target.columns.iter().map(|c| quoted(c)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quoted(&target.table),
        columns.join(", ")
    );
    for (i, (_, values)) in rows.iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for (j, value) in values.iter().enumerate() {
            if j > 0 {
                sql.push_str(", ");
            }
            literal(value, &mut sql);
        }
        sql.push(')');
    }
    if target.mode == PostgresMode::Upsert {
        let key: Vec<String> = target.key.iter().map(|c| quoted(c)).collect();
        let set: Vec<String> = target
            .columns
            .iter()
            .filter(|c| !target.key.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", quoted(c)))
            .collect();
        sql.push_str(&format!(" ON CONFLICT ({}) DO ", key.join(", ")));
        if set.is_empty() {
            sql.push_str("NOTHING");
        } else {
            sql.push_str(&format!("UPDATE SET {}", set.join(", ")));
        }
    }
    sql
}

/// `DELETE FROM t WHERE (k = …) OR …` for the keys of `rows`.
pub(super) fn delete_sql(target: &Target, rows: &[&Row]) -> String {
    let at: Vec<usize> = target
        .key
        .iter()
        .filter_map(|k| target.columns.iter().position(|c| c == k))
        .collect();
    let mut sql = format!("DELETE FROM {} WHERE ", quoted(&target.table));
    for (i, (_, values)) in rows.iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { " OR (" });
        for (n, &column) in at.iter().enumerate() {
            if n > 0 {
                sql.push_str(" AND ");
            }
            sql.push_str(&quoted(&target.columns[column]));
            match &values[column] {
                None => sql.push_str(" IS NULL"),
                value => {
                    sql.push_str(" = ");
                    literal(value, &mut sql);
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// What `rows` come to: appended as they are; upserted, the last row of each key (a delete
/// or an upsert), deletes first.
pub(super) fn settle<'r>(target: &Target, rows: &'r [Row]) -> (Vec<&'r Row>, Vec<&'r Row>) {
    if target.mode == PostgresMode::Append {
        return (Vec::new(), rows.iter().collect());
    }
    let at: Vec<usize> = target
        .key
        .iter()
        .filter_map(|k| target.columns.iter().position(|c| c == k))
        .collect();
    let mut last: HashMap<Vec<&Option<String>>, usize> = HashMap::new();
    for (i, (_, values)) in rows.iter().enumerate() {
        last.insert(at.iter().map(|&c| &values[c]).collect(), i);
    }
    let mut latest: Vec<usize> = last.into_values().collect();
    latest.sort_unstable();
    let (deletes, upserts) = latest.into_iter().map(|i| &rows[i]).partition(|r| r.0);
    (deletes, upserts)
}

/// Writes `rows` in statements of at most `batch_rows` rows.
pub(super) fn write_rows(
    client: &mut impl GenericClient,
    target: &Target,
    rows: &[Row],
) -> Result<(), postgres::Error> {
    let (deletes, upserts) = settle(target, rows);
    for chunk in deletes.chunks(target.batch_rows) {
        client.batch_execute(&delete_sql(target, chunk))?;
    }
    for chunk in upserts.chunks(target.batch_rows) {
        client.batch_execute(&insert_sql(target, chunk))?;
    }
    Ok(())
}

/// The columns of `table` and their types (`information_schema.columns.data_type`); empty
/// when there is no such table.
pub(super) fn table_columns(
    client: &mut Client,
    table: &str,
) -> Result<Vec<(String, String)>, postgres::Error> {
    let (schema, name) = match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    };
    let rows = client.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema()) \
         ORDER BY ordinal_position",
        &[&name, &schema],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Whether a column of PostgreSQL type `column` takes values of type `field` (as text).
pub(super) fn fits(field: DataType, column: &str) -> bool {
    let text = matches!(column, "text" | "character varying" | "character");
    let number = matches!(
        column,
        "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision"
    );
    match field {
        DataType::I64 | DataType::F64 => number || text,
        DataType::Bool => column == "boolean" || text,
        DataType::Bytes => column == "bytea",
        DataType::Timestamp => column.starts_with("timestamp") || column == "date" || text,
        DataType::String => {
            !number && column != "boolean" && column != "bytea" && !column.starts_with("timestamp")
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(mode: PostgresMode) -> Target {
        Target {
            table: "app.counts".into(),
            columns: vec!["k".into(), "n".into()],
            mode,
            key: vec!["k".into()],
            batch_rows: 2,
        }
    }

    #[test]
    fn statements_quote_names_and_values() {
        let rows: Vec<Row> = vec![
            (false, vec![Some("o'k".into()), Some("1".into())]),
            (false, vec![Some("b".into()), None]),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let sql = insert_sql(&target(PostgresMode::Upsert), &refs);
        assert_eq!(
            sql,
            "INSERT INTO \"app\".\"counts\" (\"k\", \"n\") VALUES ('o''k', '1'), ('b', NULL) \
             ON CONFLICT (\"k\") DO UPDATE SET \"n\" = EXCLUDED.\"n\""
        );
        let sql = delete_sql(&target(PostgresMode::Upsert), &refs);
        assert_eq!(
            sql,
            "DELETE FROM \"app\".\"counts\" WHERE (\"k\" = 'o''k') OR (\"k\" = 'b')"
        );
    }

    #[test]
    fn upserts_keep_the_last_row_of_each_key() {
        let row =
            |delete, k: &str, n: &str| (delete, vec![Some(k.to_string()), Some(n.to_string())]);
        let rows = vec![
            row(false, "a", "1"),
            row(false, "b", "1"),
            row(true, "a", "1"),
            row(false, "b", "2"),
        ];
        let (deletes, upserts) = settle(&target(PostgresMode::Upsert), &rows);
        assert_eq!(deletes, vec![&rows[2]]);
        assert_eq!(upserts, vec![&rows[3]]);
        let (deletes, upserts) = settle(&target(PostgresMode::Append), &rows);
        assert!(deletes.is_empty());
        assert_eq!(upserts.len(), 4);
    }
}
