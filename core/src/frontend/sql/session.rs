//! The catalog of an interactive SQL session (`wire sql`): statements come one at a time,
//! `CREATE TABLE` and `CREATE VIEW` accumulate, and a `SELECT` or `INSERT` becomes a whole
//! pipeline (the statements so far, then the query) for the shell to run.
//!
//! Pure: running a pipeline, reading lines and printing rows are the binary's. Every error
//! names the line and column in the statement that caused it, or the earlier statement whose
//! table or view it is about.

use sqlparser::tokenizer::{Token, Tokenizer};

use super::prep;
use crate::frontend::plan::Plan;
use crate::frontend::spec::{PipelineSpec, Pos, SpecError};

/// The settings key of the row limit of a `SELECT`.
pub const ROW_LIMIT_KEY: &str = "sql-client.row-limit";

/// The sink a shell `SELECT` writes to (JSON lines on standard output).
pub const SHELL_SINK: &str = "__wire_shell_out";

/// What the shell should do for one statement.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// A table or view was added.
    Created {
        /// `table` or `view`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The tables and views, in the order they were created, with their kinds.
    Tables(Vec<(String, &'static str)>),
    /// The columns of a table or view: name, type, nullable.
    Columns(Vec<(String, String, bool)>),
    /// A setting was changed (`SET 'k' = 'v'`) or cleared (`RESET 'k'`).
    Set {
        /// The key.
        key: String,
        /// The new value; `None` when reset.
        value: Option<String>,
    },
    /// The settings (`SET` alone).
    Settings(Vec<(String, String)>),
    /// Run this pipeline: a `SELECT` (rows to print: `columns`, standard output as JSON
    /// lines) or an `INSERT` (`columns` empty).
    Run(Run),
    /// Leave the shell.
    Quit,
    /// Print the statements the shell knows.
    Help,
}

/// A pipeline to run for a `SELECT` or an `INSERT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The pipeline's SQL text (the session's statements, then the query).
    pub sql: String,
    /// A `SELECT`'s output columns; empty for an `INSERT`.
    pub columns: Vec<String>,
    /// Whether the rows are changes (a leading `op` field among `columns`).
    pub changelog: bool,
    /// The data cores the session's settings ask for (`SET 'parallelism.default'`), if any.
    pub cores: Option<u32>,
}

/// An error in a statement: where (1-based, in the statement, or in the earlier statement
/// `within` names) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionError {
    /// The earlier statement the error is in (`table bid`), when not in this one.
    pub within: Option<String>,
    /// Line and column, when known.
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(within) = &self.within {
            write!(f, "in {within}: ")?;
        }
        if let Some(pos) = self.pos {
            write!(f, "line {}, column {}: ", pos.line, pos.column)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SessionError {}

/// The statements of a session so far, and its settings.
#[derive(Debug, Default, Clone)]
pub struct Session {
    defined: Vec<Defined>,
    settings: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Defined {
    name: String,
    kind: &'static str,
    text: String,
}

impl Session {
    /// An empty session.
    pub fn new() -> Session {
        Session::default()
    }

    /// The value of setting `key`, if set.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The row limit of a `SELECT` (`SET 'sql-client.row-limit' = 'N'`), if set.
    pub fn row_limit(&self) -> Option<u64> {
        self.setting(ROW_LIMIT_KEY).and_then(|v| v.parse().ok())
    }

    /// Carries out one statement (without its `;`).
    pub fn execute(&mut self, statement: &str) -> Result<Action, SessionError> {
        let words: Vec<String> = statement
            .split_whitespace()
            .take(3)
            .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
            .collect();
        let first = words.first().map_or("", String::as_str);
        let second = words.get(1).map_or("", String::as_str);
        match (first, second) {
            ("", _) => Err(plain("empty statement")),
            ("QUIT" | "EXIT", _) => Ok(Action::Quit),
            ("HELP", _) => Ok(Action::Help),
            ("SHOW", "TABLES" | "VIEWS") => Ok(Action::Tables(
                self.defined
                    .iter()
                    .map(|d| (d.name.clone(), d.kind))
                    .collect(),
            )),
            ("DESCRIBE" | "DESC", _) => {
                let name = statement.split_whitespace().nth(1).unwrap_or_default();
                let name = name.trim_matches('`').trim_matches('"');
                self.describe(name).map(Action::Columns)
            }
            ("SET", _) => self.set(statement),
            ("RESET", _) => {
                let key = unquote(statement.trim()[5..].trim());
                if key.is_empty() {
                    self.settings.clear();
                } else {
                    self.settings.retain(|(k, _)| *k != key);
                }
                Ok(Action::Set { key, value: None })
            }
            ("CREATE", _) => self.create(statement),
            ("SELECT" | "WITH", _) => self.select(statement),
            ("INSERT", _) => self.insert(statement),
            _ => Err(SessionError {
                within: None,
                pos: Some(Pos { line: 1, column: 1 }),
                message: format!(
                    "`{first}` is not a statement of the shell (type HELP; for the list)"
                ),
            }),
        }
    }

    /// The columns of table or view `name`.
    pub fn describe(&self, name: &str) -> Result<Vec<(String, String, bool)>, SessionError> {
        let Some(defined) = self.defined.iter().find(|d| d.name == name) else {
            return Err(self.unknown(name));
        };
        let probe = format!(
            "CREATE TABLE {SHELL_SINK} WITH ('connector' = 'blackhole');\n\
             INSERT INTO {SHELL_SINK} SELECT * FROM `{name}`;"
        );
        let plan = self
            .lower(&probe)
            .map_err(|e| e.or_within(format!("{} `{}`", defined.kind, defined.name)))?
            .1;
        let schema = &plan.sinks[0].schema;
        Ok(schema
            .fields()
            .iter()
            .map(|f| (f.name.clone(), f.data_type.to_string(), f.nullable))
            .collect())
    }

    fn unknown(&self, name: &str) -> SessionError {
        let known: Vec<&str> = self.defined.iter().map(|d| d.name.as_str()).collect();
        let hint = crate::frontend::spec::closest(name, &known)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        plain(format!("unknown table or view `{name}`{hint}"))
    }

    fn set(&mut self, statement: &str) -> Result<Action, SessionError> {
        let rest = statement.trim()[3..].trim();
        if rest.is_empty() {
            return Ok(Action::Settings(self.settings.clone()));
        }
        let Some((key, value)) = rest.split_once('=') else {
            return Err(plain("expected `SET 'key' = 'value'`"));
        };
        let (key, value) = (unquote(key.trim()), unquote(value.trim()));
        if key == ROW_LIMIT_KEY && !value.parse::<u64>().is_ok_and(|n| n > 0) {
            return Err(plain(format!(
                "`{ROW_LIMIT_KEY}` takes a whole number of rows, 1 or more, not `{value}`"
            )));
        }
        if !key.starts_with("sql-client.") {
            super::settings::check(&key, &value).map_err(plain)?;
        }
        // One setting may have two names (Flink's and Wire's): the last one set wins.
        let same = super::settings::canonical(&key);
        self.settings.retain(|(k, _)| {
            *k != key && (same.is_none() || super::settings::canonical(k) != same)
        });
        self.settings.push((key.clone(), value.clone()));
        Ok(Action::Set {
            key,
            value: Some(value),
        })
    }

    fn create(&mut self, statement: &str) -> Result<Action, SessionError> {
        let (kind, name) = created_name(statement)?;
        if self.defined.iter().any(|d| d.name == name) {
            return Err(plain(format!("a table or view `{name}` already exists")));
        }
        // The statement alone must parse (with its place kept for errors).
        self.lower_alone(statement)?;
        self.defined.push(Defined {
            name: name.clone(),
            kind,
            text: statement.trim().to_string(),
        });
        let checked = if kind == "view" {
            self.describe(&name).map(|_| ())
        } else {
            self.check_table(&name, statement)
        };
        if let Err(e) = checked {
            self.defined.pop();
            return Err(e);
        }
        Ok(Action::Created { kind, name })
    }

    /// A table that reads (any connector but the sink-only ones) must decode as a source.
    fn check_table(&self, name: &str, statement: &str) -> Result<(), SessionError> {
        let lower = statement.to_ascii_lowercase();
        let sink_only = [
            "blackhole",
            "print",
            "stdout",
            "postgres",
            "jdbc",
            "elasticsearch",
            "upsert-kafka",
        ]
        .iter()
        .any(|c| lower.contains(&format!("'{c}'")));
        if sink_only {
            return Ok(());
        }
        let probe = format!(
            "CREATE TABLE {SHELL_SINK} WITH ('connector' = 'blackhole');\n\
             INSERT INTO {SHELL_SINK} SELECT * FROM `{name}`;"
        );
        self.lower(&probe).map_err(|e| e.here_if_last(self))?;
        Ok(())
    }

    fn select(&self, statement: &str) -> Result<Action, SessionError> {
        let sink =
            format!("CREATE TABLE {SHELL_SINK} WITH ('connector' = 'print', 'format' = 'json');\n");
        let tail = format!("{sink}INSERT INTO {SHELL_SINK}\n{}", statement.trim());
        let (sql, plan) = self.lower_query(&tail, 2)?;
        let schema = &plan.sinks[0].schema;
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name.clone()).collect();
        let changelog =
            columns.first().is_some_and(|c| c == "op") && plan.changelog_of(plan.sinks[0].input);
        Ok(Action::Run(Run {
            sql,
            columns,
            changelog,
            cores: plan.settings.cores,
        }))
    }

    fn insert(&self, statement: &str) -> Result<Action, SessionError> {
        let (sql, plan) = self.lower_query(statement.trim(), 0)?;
        Ok(Action::Run(Run {
            sql,
            columns: Vec::new(),
            changelog: false,
            cores: plan.settings.cores,
        }))
    }

    /// Lowers the session's statements followed by `tail`, whose first `skip` lines are the
    /// shell's own (errors there are reported at the statement's first line).
    fn lower_query(&self, tail: &str, skip: usize) -> Result<(String, Plan), SessionError> {
        let (sql, plan) = self.lower(tail).map_err(|mut e| {
            if e.within.is_none() {
                if let Some(pos) = e.pos.as_mut() {
                    pos.line = pos.line.saturating_sub(skip).max(1);
                }
            }
            e
        })?;
        Ok((sql, plan))
    }

    /// The session's statements, then `tail`, lowered and planned; errors in `tail` are at
    /// its own lines, errors in an earlier statement name it.
    fn lower(&self, tail: &str) -> Result<(String, Plan), SessionError> {
        let mut sql = String::new();
        for (key, value) in &self.settings {
            if !key.starts_with("sql-client.") {
                let quote = |s: &str| s.replace('\'', "''");
                sql.push_str(&format!("SET '{}' = '{}';\n", quote(key), quote(value)));
            }
        }
        let mut starts = Vec::new();
        for defined in &self.defined {
            starts.push(sql.lines().count() + 1);
            sql.push_str(&defined.text);
            sql.push_str(";\n");
        }
        let tail_start = sql.lines().count() + 1;
        sql.push_str(tail);
        sql.push_str(";\n");
        let place = |e: SpecError| {
            let line = e.pos.line;
            if line >= tail_start {
                return SessionError {
                    within: None,
                    pos: Some(Pos {
                        line: line - tail_start + 1,
                        column: e.pos.column,
                    }),
                    message: e.message,
                };
            }
            let index = starts.iter().rposition(|s| *s <= line).unwrap_or(0);
            let defined = &self.defined[index];
            SessionError {
                within: Some(format!("{} `{}`", defined.kind, defined.name)),
                pos: Some(Pos {
                    line: line - starts[index] + 1,
                    column: e.pos.column,
                }),
                message: e.message,
            }
        };
        let spec = PipelineSpec::parse("shell.sql", &sql).map_err(place)?;
        let plan = Plan::from_spec(&spec).map_err(place)?;
        Ok((sql, plan))
    }

    /// Parses one statement on its own (syntax and the constructs the token pass reads).
    fn lower_alone(&self, statement: &str) -> Result<(), SessionError> {
        let at = |pos: Pos, message: String| SessionError {
            within: None,
            pos: Some(pos),
            message,
        };
        let prepared = prep::prepare(statement).map_err(|e| at(e.pos, e.message))?;
        sqlparser::parser::Parser::parse_sql(
            &sqlparser::dialect::GenericDialect {},
            &prepared.text,
        )
        .map_err(|e| {
            let e = super::parser_error(&e.to_string());
            at(e.pos, e.message)
        })?;
        Ok(())
    }
}

impl SessionError {
    fn or_within(mut self, within: String) -> SessionError {
        if self.within.is_none() {
            self.within = Some(within);
            self.pos = None;
        }
        self
    }

    /// An error in the last statement (the one just added) is an error here.
    fn here_if_last(mut self, session: &Session) -> SessionError {
        let last = session
            .defined
            .last()
            .map(|d| format!("{} `{}`", d.kind, d.name));
        if self.within.is_some() && self.within == last {
            self.within = None;
        }
        self
    }
}

/// The byte offsets just after each `;` that ends a statement in `text` (not inside a string,
/// quoted name or comment); `None` while `text` ends inside a string or comment.
pub fn statement_ends(text: &str) -> Option<Vec<usize>> {
    let tokens = Tokenizer::new(&sqlparser::dialect::GenericDialect {}, text)
        .tokenize_with_location()
        .ok()?;
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut ends = Vec::new();
    for token in tokens {
        if token.token == Token::SemiColon {
            let line = usize::try_from(token.span.start.line).ok()?;
            let column = usize::try_from(token.span.start.column).ok()?;
            let line_start = *starts.get(line.checked_sub(1)?)?;
            let offset = text[line_start..]
                .char_indices()
                .nth(column.checked_sub(1)?)
                .map(|(i, _)| line_start + i)?;
            ends.push(offset + 1);
        }
    }
    Some(ends)
}

fn plain(message: impl Into<String>) -> SessionError {
    SessionError {
        within: None,
        pos: None,
        message: message.into(),
    }
}

/// `'x'`, `"x"` or `` `x` `` without the quotes.
fn unquote(text: &str) -> String {
    let t = text.trim().trim_end_matches(';').trim();
    for q in ['\'', '"', '`'] {
        if let Some(inner) = t.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    t.to_string()
}

/// The kind and name of a `CREATE TABLE` or `CREATE [TEMPORARY] VIEW` statement.
fn created_name(statement: &str) -> Result<(&'static str, String), SessionError> {
    let words: Vec<&str> = statement.split_whitespace().take(4).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let (kind, index) =
        match upper.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [_, "TABLE", ..] => ("table", 2),
            [_, "VIEW", ..] => ("view", 2),
            [_, "TEMPORARY", "VIEW", ..] => ("view", 3),
            _ => return Err(SessionError {
                within: None,
                pos: Some(Pos { line: 1, column: 1 }),
                message:
                    "the shell creates tables (CREATE TABLE) and views (CREATE [TEMPORARY] VIEW)"
                        .into(),
            }),
        };
    let Some(raw) = words.get(index) else {
        return Err(plain("expected a name after CREATE TABLE or CREATE VIEW"));
    };
    let name: String = raw
        .split(['(', ';'])
        .next()
        .unwrap_or_default()
        .trim_matches(['`', '"'])
        .to_string();
    if name.is_empty() {
        return Err(plain("expected a name after CREATE TABLE or CREATE VIEW"));
    }
    Ok((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BID: &str = "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) \
                       WITH ('connector' = 'nexmark', 'events' = '1000')";

    #[test]
    fn tables_and_views_accumulate_and_describe() {
        let mut session = Session::new();
        assert_eq!(
            session.execute(BID),
            Ok(Action::Created {
                kind: "table",
                name: "bid".into()
            })
        );
        let view = "CREATE TEMPORARY VIEW big AS\nSELECT auction, price * 2 AS doubled FROM bid WHERE price > 10";
        assert!(matches!(
            session.execute(view),
            Ok(Action::Created { kind: "view", .. })
        ));
        assert_eq!(
            session.execute("SHOW TABLES"),
            Ok(Action::Tables(vec![
                ("bid".into(), "table"),
                ("big".into(), "view")
            ]))
        );
        let Ok(Action::Columns(columns)) = session.execute("DESCRIBE big") else {
            panic!("describe");
        };
        let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["auction", "doubled"]);
        assert_eq!(columns[1].1, "i64");
    }

    #[test]
    fn errors_name_the_line_and_column_of_the_statement() {
        let mut session = Session::new();
        session.execute(BID).expect("bid");
        let e = session
            .execute("SELECT auction,\n  prise FROM bid")
            .expect_err("a typo");
        assert_eq!(e.pos, Some(Pos { line: 2, column: 3 }), "{e}");
        assert!(e.message.contains("`prise`"), "{e}");
        let e = session
            .execute("CREATE VIEW v AS SELECT * FROM bidz")
            .expect_err("unknown");
        assert_eq!(e.pos.map(|p| p.line), Some(1), "{e}");
        assert!(e.message.contains("did you mean `bid`"), "{e}");
        // The failed view was not kept.
        assert!(session.describe("v").is_err());
        let e = session.execute("CREATE TABLE bid (a BIGINT) WITH ('connector' = 'nexmark')");
        assert!(e.expect_err("twice").message.contains("already exists"));
        let e = session
            .execute("CREATE TABLE t (a BIGINT) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'evnts' = '1')")
            .expect_err("bad option");
        assert!(e.within.is_none() && e.pos.is_some(), "{e}");
        assert!(e.message.contains("did you mean `events`"), "{e}");
    }

    #[test]
    fn a_select_becomes_a_pipeline_printing_its_columns() {
        let mut session = Session::new();
        session.execute(BID).expect("bid");
        let Ok(Action::Run(run)) =
            session.execute("SELECT auction, price FROM bid WHERE price > 5")
        else {
            panic!("select");
        };
        assert_eq!(run.columns, ["auction", "price"]);
        assert!(!run.changelog);
        let spec = PipelineSpec::parse("shell.sql", &run.sql).expect("the pipeline parses");
        assert_eq!(spec.sinks[0].name.name, SHELL_SINK);
        let Ok(Action::Run(run)) =
            session.execute("SELECT auction, count(*) AS n FROM bid GROUP BY auction")
        else {
            panic!("select");
        };
        assert_eq!(run.columns, ["op", "auction", "n"]);
        assert!(run.changelog);
    }

    #[test]
    fn settings_and_the_row_limit() {
        let mut session = Session::new();
        assert_eq!(session.row_limit(), None);
        session
            .execute("SET 'sql-client.row-limit' = '5'")
            .expect("set");
        assert_eq!(session.row_limit(), Some(5));
        assert!(session.execute("SET 'sql-client.row-limit' = 'x'").is_err());
        session
            .execute("RESET 'sql-client.row-limit'")
            .expect("reset");
        assert_eq!(session.row_limit(), None);
        assert!(session.execute("DROP TABLE x").is_err());
    }

    #[test]
    fn pipeline_settings_go_at_the_top_of_each_run() {
        let mut session = Session::new();
        let e = session
            .execute("SET 'parallelism.defualt' = '2'")
            .expect_err("unknown");
        assert!(
            e.message.contains("did you mean `parallelism.default`?"),
            "{e:?}"
        );
        assert!(session.execute("SET 'cores' = 'many'").is_err());
        session.execute("SET 'cores' = '3'").expect("set");
        session
            .execute("SET 'parallelism.default' = '2'")
            .expect("set");
        assert_eq!(session.settings.len(), 1, "one setting under two names");
        session
            .execute(
                "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) \
                 WITH ('connector' = 'nexmark', 'events' = '10')",
            )
            .expect("create");
        let Ok(Action::Run(run)) = session.execute("SELECT auction FROM bid") else {
            panic!("select");
        };
        assert!(
            run.sql.starts_with("SET 'parallelism.default' = '2';\n"),
            "{}",
            run.sql
        );
        assert_eq!(run.cores, Some(2));
    }

    #[test]
    fn statement_ends_skip_strings_and_comments() {
        assert_eq!(
            statement_ends("SELECT 1; SELECT ';'; -- ;\n"),
            Some(vec![9, 21])
        );
        assert_eq!(statement_ends("SELECT 'x;"), None);
        assert_eq!(statement_ends("SELECT 1"), Some(vec![]));
    }
}
