//! The PostgreSQL sink (docs/pipeline.md, "PostgreSQL"; ADR 0007).
//!
//! `delivery: at_least_once` writes rows in multi-row statements of `batch_rows` rows as they
//! come, and everything before a checkpoint's barrier is written before the sink acks it.
//!
//! `delivery: exactly_once` stages each checkpoint's rows in a synced file at the barrier
//! (the staging files of the Kafka sink, `sink/stage.rs`) and, once the checkpoint is
//! complete, writes them in ONE transaction together with the progress row
//! `(pipeline, sink, instance) -> checkpoint`. The transaction first reads that row (locked):
//! a checkpoint it already holds is skipped, so a commit retried after a lost connection or
//! repeated after a crash ([`recover_postgres_sinks`]) never applies twice. A run that
//! restores no checkpoint starts its ids at 1 again, so its instances clear their progress
//! rows when they start.

mod sql;

pub(crate) use sql::substitute_env;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::{Client, Config};
use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{Plan, PlanSink, OP_FIELD};
use wire_core::frontend::spec::{KafkaDelivery, PostgresMode, SinkKind, SinkOnError};
use wire_core::{ArchivedRow, Batch};

use self::sql::{Failure, Row, Target};
use super::refusals::{Refusals, Tally};
use super::stage::{corrupt, frame, read_staged, staged_files, StageFiles};
use crate::pipeline::CoreCx;
use crate::retry::RetryState;
use crate::Error;

/// Bytes of staged rows kept in memory before they are appended to the staging file.
const STAGE_BUFFER: usize = 1 << 20;

/// The connection, shared with the blocking thread that uses it.
type Shared = Arc<Mutex<Option<Client>>>;

/// What every request of one instance needs: names for errors, where to connect, the
/// statements' target and the progress row's key.
struct Link {
    what: String,
    address: String,
    config: Config,
    deadline: Duration,
    target: Target,
    progress: String,
    /// `(pipeline, sink, instance)`.
    id: (String, String, i32),
    /// `on_error: skip | dead_letter`: where refused rows go; none with `fail`.
    refusals: Option<Mutex<Refusals>>,
    /// Where retried requests are counted; none while settling before the cores start.
    tally: Option<Tally>,
}

/// One core's instance of a PostgreSQL sink.
pub(super) struct PostgresOutput {
    link: Arc<Link>,
    columns: Vec<Expr>,
    /// Upsert mode over an update stream: the `op` field.
    op: Option<Expr>,
    client: Shared,
    /// At-least-once: rows not yet written.
    pending: Vec<Row>,
    /// Exactly-once: the staging files.
    stage: Option<StageFiles>,
}

impl PostgresOutput {
    /// The instance of `sink` on `cx`'s core; `epoch` is the checkpoint the first rows belong
    /// to (`None` without checkpoints).
    pub(super) fn open(cx: &CoreCx, sink: &PlanSink, epoch: Option<u64>) -> Result<Self, Error> {
        let index = cx.plan.sinks.iter().position(|s| s.name == sink.name);
        let node = cx.node(crate::graph::Head::Sink(index.unwrap_or(0)));
        let tally = Tally::new(cx.probe.clone(), node, cx.core);
        let link = Arc::new(link(&cx.plan.name, sink, cx.core, Some(tally))?);
        let SinkKind::Postgres(spec) = &sink.kind else {
            unreachable!("a postgres sink")
        };
        let exactly_once = spec.delivery == KafkaDelivery::ExactlyOnce;
        if exactly_once && epoch.is_none() {
            return Err(Error::Connector(format!(
                "{}: delivery: exactly_once commits a transaction per checkpoint: run with --checkpoint-interval",
                link.what
            )));
        }
        let stage = match epoch.filter(|_| exactly_once) {
            None => None,
            Some(epoch) => {
                let dir = stage_dir(&cx.data_dir, &cx.plan.name, &sink.name);
                Some(StageFiles::new(dir, cx.core, epoch)?)
            }
        };
        let upsert = spec.mode == PostgresMode::Upsert;
        let op = (upsert && sink.schema.fields().iter().any(|f| f.name == OP_FIELD))
            .then(|| wire_core::frontend::expr::compile(OP_FIELD, &sink.schema).ok())
            .flatten();
        Ok(PostgresOutput {
            link,
            columns: sink.columns.iter().map(|(_, expr)| expr.clone()).collect(),
            op,
            client: Arc::new(Mutex::new(None)),
            pending: Vec::new(),
            stage,
        })
    }

    /// Connects (with retries up to `connect_timeout_ms`), checks the table against the
    /// columns, and for exactly-once creates the progress table and, when no checkpoint was
    /// restored, clears this instance's progress row.
    pub(super) async fn start(&mut self) -> Result<(), Error> {
        let fresh = self.stage.as_ref().filter(|s| s.epoch == 1).is_some();
        let exactly_once = self.stage.is_some();
        let types: Vec<_> = self.columns.iter().map(Expr::data_type).collect();
        let (link, client) = (self.link.clone(), self.client.clone());
        glommio::executor()
            .spawn_blocking(move || {
                with_client(&link, &client, |client| {
                    check_table(&link, client, &types)?;
                    if exactly_once {
                        prepare_progress(&link, client, fresh)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    pub(super) async fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        let view = batch.view();
        for row in view.rows() {
            let Some(row) = self.encode(row) else {
                continue;
            };
            match &mut self.stage {
                Some(stage) => {
                    let op: &[u8] = if row.0 { b"-" } else { b"+" };
                    let mut fields: Vec<Option<&[u8]>> = vec![Some(op)];
                    fields.extend(row.1.iter().map(|v| v.as_deref().map(str::as_bytes)));
                    stage.append(&fields);
                }
                None => self.pending.push(row),
            }
        }
        match &mut self.stage {
            Some(stage) if stage.buffered() >= STAGE_BUFFER => stage.write_out(),
            Some(_) => Ok(()),
            None if self.pending.len() >= self.link.target.batch_rows => self.flush().await,
            None => Ok(()),
        }
    }

    /// `row` as a row to write; `None` for an update-before (`-U`) in upsert mode.
    fn encode(&self, row: &ArchivedRow) -> Option<Row> {
        let mut delete = false;
        if let Some(op) = &self.op {
            match op.eval(row) {
                Datum::Str(op) if op == "-U" => return None,
                Datum::Str(op) if op == "-D" => delete = true,
                _ => {}
            }
        }
        let values = self.columns.iter().map(|c| text(c.eval(row))).collect();
        Some((delete, values))
    }

    /// At-least-once: writes the pending rows (retrying transient errors).
    async fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let (link, client) = (self.link.clone(), self.client.clone());
        glommio::executor()
            .spawn_blocking(move || {
                with_client(&link, &client, |client| {
                    let mut tx = client.transaction()?;
                    write_rows(&mut tx, &link, &rows)?;
                    Ok(tx.commit()?)
                })
            })
            .await
    }

    /// Pre-commits at checkpoint `next_epoch - 1`: at-least-once writes what is pending;
    /// exactly-once syncs and stages the checkpoint's file.
    pub(super) async fn stage(&mut self, next_epoch: u64) -> Result<(), Error> {
        match &mut self.stage {
            None => self.flush().await,
            Some(stage) => {
                stage.seal(next_epoch - 1).await?;
                stage.epoch = next_epoch;
                Ok(())
            }
        }
    }

    /// Commits the staged checkpoints up to `completed`, each in one transaction.
    pub(super) async fn commit(&mut self, completed: u64) -> Result<(), Error> {
        let Some(stage) = &mut self.stage else {
            return Ok(());
        };
        while let Some((id, path)) = stage.staged.first().cloned() {
            if id > completed {
                break;
            }
            let (link, client) = (self.link.clone(), self.client.clone());
            glommio::executor()
                .spawn_blocking(move || commit_file(&link, &client, id, &path))
                .await?;
            stage.staged.remove(0);
        }
        Ok(())
    }

    pub(super) async fn close(mut self) -> Result<(), Error> {
        match &mut self.stage {
            // The run's last checkpoint is written after the cores stop; the caller commits
            // this file then (`recover_postgres_sinks`).
            Some(stage) => stage.seal(stage.epoch).await,
            None => self.flush().await,
        }
    }
}

/// The request context of `sink`'s instance on `core`.
fn link(pipeline: &str, sink: &PlanSink, core: usize, tally: Option<Tally>) -> Result<Link, Error> {
    let SinkKind::Postgres(spec) = &sink.kind else {
        unreachable!("a postgres sink")
    };
    let what = format!("postgres sink `{}`", sink.name);
    let (config, address) = sql::config(&spec.url, &what).map_err(Error::Connector)?;
    let columns = sink.columns.iter().map(|(c, _)| c.clone()).collect();
    let refusals = match spec.errors.on_error {
        SinkOnError::Fail => None,
        _ => Some(Mutex::new(Refusals::open(
            &spec.errors,
            &what,
            Duration::from_millis(spec.connect_timeout_ms),
            tally.clone(),
        )?)),
    };
    Ok(Link {
        refusals,
        tally,
        what,
        address,
        config,
        deadline: Duration::from_millis(spec.connect_timeout_ms),
        target: Target::new(spec, columns),
        progress: spec.progress_table.clone(),
        id: (pipeline.to_string(), sink.name.clone(), core as i32),
    })
}

/// A value as the text PostgreSQL reads for its column (`None`: NULL): bytes as `\x` hex,
/// timestamps in RFC 3339.
fn text(datum: Datum<'_>) -> Option<String> {
    match datum {
        Datum::Null => None,
        Datum::Str(text) => Some(text.to_string()),
        Datum::Bytes(bytes) => {
            let mut hex = String::from("\\x");
            for byte in bytes.iter() {
                hex.push_str(&format!("{byte:02x}"));
            }
            Some(hex)
        }
        other => {
            let mut text = String::new();
            other.write_text(&mut text);
            Some(text)
        }
    }
}

/// A request's failure, before it is sorted into retry or give up.
enum Attempt {
    Db(postgres::Error),
    Refused(Error),
}

impl From<postgres::Error> for Attempt {
    fn from(error: postgres::Error) -> Self {
        Attempt::Db(error)
    }
}

/// Runs `request` on the instance's connection (connecting first when there is none),
/// retrying transient failures on a new connection with backoff until the deadline; a
/// permanent failure ends it at once with an error naming the sink and table.
fn with_client<T>(
    link: &Link,
    shared: &Shared,
    mut request: impl FnMut(&mut Client) -> Result<T, Attempt>,
) -> Result<T, Error> {
    let place = format!("the server at {}", link.address);
    let mut state = RetryState::new(&link.what, &place, link.deadline);
    let mut guard = shared
        .lock()
        .map_err(|_| Error::Connector(format!("{}: connection lock poisoned", link.what)))?;
    loop {
        let timeout = state.attempt();
        let result = match guard.as_mut() {
            Some(client) => request(client),
            None => match sql::connect(&link.config, timeout) {
                Ok(client) => request(guard.insert(client)),
                Err(error) => Err(Attempt::Db(error)),
            },
        };
        let error = match result {
            Ok(value) => return Ok(value),
            Err(Attempt::Refused(error)) => return Err(error),
            Err(Attempt::Db(error)) => error,
        };
        match sql::classify(&error) {
            Failure::Permanent(cause) => {
                return Err(Error::Connector(format!(
                    "{}: table `{}` at {}: {cause}",
                    link.what, link.target.table, link.address
                )))
            }
            Failure::Transient(cause) => {
                *guard = None;
                let wait = state.failed(&error, cause)?;
                if let Some(tally) = &link.tally {
                    tally.retried(1);
                }
                std::thread::sleep(wait);
            }
        }
    }
}

/// Writes `rows` in `tx`; with `on_error: skip | dead_letter`, a statement the server refuses
/// for its data is rolled back to a savepoint and its rows written one by one, each in its
/// own savepoint, and the rows the server refuses go to the link's refusals.
fn write_rows(
    tx: &mut postgres::Transaction<'_>,
    link: &Link,
    rows: &[Row],
) -> Result<(), Attempt> {
    let Some(refusals) = &link.refusals else {
        return Ok(sql::write_rows(tx, &link.target, rows)?);
    };
    let target = &link.target;
    let (deletes, upserts) = sql::settle(target, rows);
    let chunks = deletes.chunks(target.batch_rows).map(|c| (c, true));
    for (chunk, delete) in chunks.chain(upserts.chunks(target.batch_rows).map(|c| (c, false))) {
        let statement = |rows: &[&Row]| match delete {
            true => sql::delete_sql(target, rows),
            false => sql::insert_sql(target, rows),
        };
        if try_in_savepoint(tx, &statement(chunk))?.is_none() {
            continue;
        }
        for row in chunk {
            if let Some(cause) = try_in_savepoint(tx, &statement(&[row]))? {
                let place = format!("table `{}` at {}", target.table, link.address);
                let json = row_json(target, row);
                let mut refusals = refusals.lock().map_err(|_| {
                    Attempt::Refused(Error::Connector(format!("{}: lock poisoned", link.what)))
                })?;
                refusals
                    .refuse(&link.what, &cause, &place, &json)
                    .map_err(Attempt::Refused)?;
            }
        }
    }
    // The letters are durable before the rows' transaction commits.
    let refusals = refusals
        .lock()
        .map_err(|_| Attempt::Refused(Error::Connector(format!("{}: lock poisoned", link.what))))?;
    refusals.sync().map_err(Attempt::Refused)
}

/// Runs `statement` in a savepoint of `tx`: `None` when it succeeded, the server's cause when
/// it refused the data (the savepoint is rolled back); a transient error is returned.
fn try_in_savepoint(
    tx: &mut postgres::Transaction<'_>,
    statement: &str,
) -> Result<Option<String>, Attempt> {
    let mut savepoint = tx.savepoint("wire_rows")?;
    match savepoint.batch_execute(statement) {
        Ok(()) => {
            savepoint.commit()?;
            Ok(None)
        }
        Err(error) => match sql::classify(&error) {
            Failure::Permanent(cause) => {
                savepoint.rollback()?;
                Ok(Some(cause))
            }
            Failure::Transient(_) => Err(Attempt::Db(error)),
        },
    }
}

/// A row as a JSON object of its columns' text (`op: "-D"` for a delete), for a dead letter.
fn row_json(target: &Target, row: &Row) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    for (column, value) in target.columns.iter().zip(&row.1) {
        let value = value.as_deref().map_or(serde_json::Value::Null, Into::into);
        object.insert(column.clone(), value);
    }
    if row.0 {
        object.insert("op".into(), "-D".into());
    }
    serde_json::Value::Object(object).to_string().into_bytes()
}

/// Refuses a table that is missing, lacks a column, or has a column whose type the mapped
/// value does not fit.
fn check_table(
    link: &Link,
    client: &mut Client,
    types: &[wire_core::record::schema::DataType],
) -> Result<(), Attempt> {
    let table = &link.target.table;
    let found = sql::table_columns(client, table)?;
    let refuse =
        |message: String| Attempt::Refused(Error::Connector(format!("{}: {message}", link.what)));
    if found.is_empty() {
        let at = &link.address;
        return Err(refuse(format!("table `{table}` does not exist at {at}")));
    }
    for (column, field) in link.target.columns.iter().zip(types) {
        let Some((_, kind)) = found.iter().find(|(name, _)| name == column) else {
            let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
            return Err(refuse(format!(
                "table `{table}` has no column `{column}` (its columns: {})",
                names.join(", ")
            )));
        };
        if !sql::fits(*field, kind) {
            return Err(refuse(format!(
                "table `{table}` column `{column}` is {kind}, which does not take the sink's {} values",
                field.name()
            )));
        }
    }
    Ok(())
}

/// Creates the progress table if missing; `fresh` (no restored checkpoint): deletes this
/// instance's row, whose ids belonged to an earlier run.
fn prepare_progress(link: &Link, client: &mut Client, fresh: bool) -> Result<(), Attempt> {
    let table = sql::quoted(&link.progress);
    // Instances that start together would race in CREATE TABLE IF NOT EXISTS (a unique
    // violation in the catalog): a transaction-scoped advisory lock lets one create it.
    client.batch_execute(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtext('wire progress table')); \
         CREATE TABLE IF NOT EXISTS {table} (pipeline text NOT NULL, sink text NOT NULL, \
         instance integer NOT NULL, checkpoint bigint NOT NULL, \
         PRIMARY KEY (pipeline, sink, instance)); COMMIT"
    ))?;
    if fresh {
        let (pipeline, sink, instance) = &link.id;
        client.execute(
            &format!("DELETE FROM {table} WHERE pipeline = $1 AND sink = $2 AND instance = $3"),
            &[pipeline, sink, instance],
        )?;
    }
    Ok(())
}

/// Writes the rows of staged file `path` (checkpoint `id`) and the progress row in one
/// transaction, unless the progress row shows checkpoint `id` is already in; then deletes the
/// file. Blocking.
fn commit_file(link: &Link, shared: &Shared, id: u64, path: &Path) -> Result<(), Error> {
    let rows = read_rows(path, link.target.columns.len())?;
    let table = sql::quoted(&link.progress);
    let (pipeline, sink, instance) = &link.id;
    let applied = with_client(link, shared, |client| {
        let mut tx = client.transaction()?;
        let done = tx.query_opt(
            &format!(
                "SELECT checkpoint FROM {table} WHERE pipeline = $1 AND sink = $2 \
                 AND instance = $3 FOR UPDATE"
            ),
            &[pipeline, sink, instance],
        )?;
        if done.is_some_and(|row| row.get::<_, i64>(0) >= id as i64) {
            return Ok(false);
        }
        write_rows(&mut tx, link, &rows)?;
        tx.execute(
            &format!(
                "INSERT INTO {table} (pipeline, sink, instance, checkpoint) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (pipeline, sink, instance) DO UPDATE SET checkpoint = EXCLUDED.checkpoint"
            ),
            &[pipeline, sink, instance, &(id as i64)],
        )?;
        tx.commit()?;
        Ok(true)
    })?;
    std::fs::remove_file(path).map_err(|err| Error::io(path, err))?;
    let sink = &link.what;
    tracing::debug!(
        sink,
        checkpoint = id,
        applied,
        rows = rows.len(),
        "postgres transaction"
    );
    Ok(())
}

/// The rows of a staged file: per row an op frame (`+` or `-`) and `columns` value frames.
fn read_rows(path: &Path, columns: usize) -> Result<Vec<Row>, Error> {
    let bytes = read_staged(path)?;
    let mut rows = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (op, next) = frame(&bytes, at).ok_or_else(|| corrupt(path))?;
        at = next;
        let mut values = Vec::with_capacity(columns);
        for _ in 0..columns {
            let (value, next) = frame(&bytes, at).ok_or_else(|| corrupt(path))?;
            at = next;
            let value = value.map(|v| String::from_utf8_lossy(v).into_owned());
            values.push(value);
        }
        rows.push((op == Some(b"-".as_slice()), values));
    }
    Ok(rows)
}

fn stage_dir(data_dir: &Path, pipeline: &str, sink: &str) -> PathBuf {
    data_dir.join(pipeline).join(sink).join("postgres-staged")
}

/// Settles the exactly-once PostgreSQL sinks of `plan` after a crash or a finished run: each
/// staged checkpoint up to `completed` is written in its transaction unless the progress row
/// shows it is in; later ones and unfinished files are deleted (their rows come again from
/// the restored sources). Runs on the caller's thread before the data cores start, or after
/// they stop. Returns how many checkpoints it wrote or found written.
pub fn recover_postgres_sinks(
    plan: &Plan,
    data_dir: &Path,
    completed: u64,
) -> Result<usize, Error> {
    let mut committed = 0;
    for sink in &plan.sinks {
        let SinkKind::Postgres(spec) = &sink.kind else {
            continue;
        };
        if spec.delivery != KafkaDelivery::ExactlyOnce {
            continue;
        }
        let dir = stage_dir(data_dir, &plan.name, &sink.name);
        let mut files = staged_files(&dir)?;
        files.sort();
        for (core, id, staged, path) in files {
            if !staged || id > completed {
                std::fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
                continue;
            }
            let link = link(&plan.name, sink, core, None)?;
            commit_file(&link, &Arc::new(Mutex::new(None)), id, &path)?;
            committed += 1;
            tracing::info!(sink = %sink.name, core, checkpoint = id, "settled a staged postgres transaction after a restart");
        }
    }
    Ok(committed)
}
