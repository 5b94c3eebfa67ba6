//! `wire sql`: an interactive SQL shell in the spirit of Flink's SQL client.
//!
//! Statements end with `;`. `CREATE TABLE` and `CREATE VIEW` accumulate in the session
//! (`wire_core::frontend::sql::session`); a `SELECT` runs as a pipeline of its own (`wire run`
//! in a child process, on the session's statements plus the query) whose rows are printed as
//! they come, up to the row limit; an `INSERT` runs to its end. Ctrl-C stops the running query,
//! not the shell. On a terminal, lines are edited with rustyline and kept in a history file;
//! otherwise statements are read from standard input, and the first error ends the script
//! (exit 1).

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire_core::frontend::sql::session::{statement_ends, Action, Run, Session};

mod table;
use table::Table;

/// `wire sql`'s flags.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// Data cores each query runs on.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Run the statements of this file first (a script of CREATE TABLE and CREATE VIEW, say).
    #[arg(long, short = 'i')]
    init: Option<PathBuf>,
    /// The history file (terminal only); default: ~/.wire_sql_history.
    #[arg(long)]
    history: Option<PathBuf>,
}

const HELP: &str = "\
Statements (each ends with `;`):
  CREATE TABLE t (...) WITH ('connector' = ...)   declare a table (see docs/sql.md)
  CREATE [TEMPORARY] VIEW v AS SELECT ...          name a query
  SHOW TABLES                                      list the tables and views
  DESCRIBE t                                       the columns of a table or view
  SELECT ...                                       run a query and print its rows as they come
  INSERT INTO t SELECT ...                         run a pipeline into a table, to its end
  SET 'sql-client.row-limit' = 'N'                 stop a SELECT after N rows (RESET to clear)
  SET                                              show the settings
  HELP, QUIT (or EXIT, or Ctrl-D)
Ctrl-C stops the running query; at the prompt it clears the line.";

/// A query that ended: how many rows it printed and why it stopped.
struct Ended {
    rows: u64,
    why: Stop,
}

#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Its sources ran out.
    Done,
    /// It reached the row limit.
    Limit(u64),
    /// Ctrl-C.
    Interrupted,
}

/// Runs the shell; the exit code is 1 when a script (not a terminal) hit an error.
pub fn shell(args: SqlArgs) -> ExitCode {
    let interrupted = Arc::new(AtomicBool::new(false));
    if let Err(err) = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())
    {
        eprintln!("error: cannot handle Ctrl-C: {err}");
        return ExitCode::from(1);
    }
    let mut shell = Shell {
        session: Session::new(),
        cores: args.cores.max(1),
        interrupted,
        queries: 0,
    };
    if let Some(init) = &args.init {
        let text = match std::fs::read_to_string(init) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("error: cannot read {}: {err}", init.display());
                return ExitCode::from(1);
            }
        };
        if let Err(Failed) = shell.script(&text) {
            return ExitCode::from(1);
        }
    }
    if std::io::stdin().is_terminal() {
        shell.terminal(args.history);
        ExitCode::SUCCESS
    } else {
        let mut text = String::new();
        let mut failed = false;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            match shell.complete(&mut text) {
                Ok(true) => return ExitCode::SUCCESS,
                Ok(false) => {}
                Err(Failed) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed && !text.trim().is_empty() && shell.run_statement(text.trim()).is_err() {
            failed = true;
        }
        if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// A statement failed (its error is printed).
struct Failed;

struct Shell {
    session: Session,
    cores: usize,
    interrupted: Arc<AtomicBool>,
    queries: u64,
}

impl Shell {
    /// Runs every statement of `text`; the last may lack its `;`.
    fn script(&mut self, text: &str) -> Result<(), Failed> {
        let mut text = text.to_string();
        self.complete(&mut text)?;
        if !text.trim().is_empty() {
            self.run_statement(text.trim())?;
        }
        Ok(())
    }

    /// Runs the complete statements at the start of `text` and leaves the rest in it; `true`
    /// when one of them was QUIT.
    fn complete(&mut self, text: &mut String) -> Result<bool, Failed> {
        let Some(ends) = statement_ends(text) else {
            return Ok(false);
        };
        let mut start = 0;
        for end in ends {
            let statement = text[start..end - 1].trim().to_string();
            start = end;
            if statement.is_empty() {
                continue;
            }
            if self.run_statement(&statement)? {
                return Ok(true);
            }
        }
        text.replace_range(..start, "");
        Ok(false)
    }

    /// Carries out one statement; `true` for QUIT.
    fn run_statement(&mut self, statement: &str) -> Result<bool, Failed> {
        let action = match self.session.execute(statement) {
            Ok(action) => action,
            Err(err) => {
                eprintln!("[ERROR] {err}");
                return Err(Failed);
            }
        };
        match action {
            Action::Quit => return Ok(true),
            Action::Help => println!("{HELP}"),
            Action::Created { kind, name } => println!("[INFO] {kind} `{name}` created"),
            Action::Tables(tables) => {
                let rows: Vec<Vec<String>> = tables
                    .into_iter()
                    .map(|(name, kind)| vec![name, kind.to_string()])
                    .collect();
                print_table(&["name", "kind"], &rows);
            }
            Action::Columns(columns) => {
                let rows: Vec<Vec<String>> = columns
                    .into_iter()
                    .map(|(name, ty, nullable)| vec![name, ty, nullable.to_string()])
                    .collect();
                print_table(&["name", "type", "null"], &rows);
            }
            Action::Set {
                key,
                value: Some(value),
            } => println!("[INFO] set '{key}' = '{value}'"),
            Action::Set { key, value: None } if key.is_empty() => {
                println!("[INFO] every setting reset")
            }
            Action::Set { key, value: None } => println!("[INFO] reset '{key}'"),
            Action::Settings(settings) => {
                let rows: Vec<Vec<String>> =
                    settings.into_iter().map(|(k, v)| vec![k, v]).collect();
                print_table(&["key", "value"], &rows);
            }
            Action::Run(run) => return self.run_query(&run).map(|()| false),
            _ => println!("[INFO] done"),
        }
        let _ = std::io::stdout().flush();
        Ok(false)
    }

    /// Reads statements from the terminal until QUIT or Ctrl-D.
    fn terminal(&mut self, history: Option<PathBuf>) {
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(editor) => editor,
            Err(err) => {
                eprintln!("error: cannot edit lines on this terminal: {err}");
                return;
            }
        };
        let history = history.or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".wire_sql_history"))
        });
        if let Some(path) = &history {
            // No history yet is fine.
            let _ = editor.load_history(path);
        }
        println!("Wire SQL shell. Statements end with `;`. Type HELP; for help, QUIT; to leave.");
        let mut text = String::new();
        loop {
            let prompt = if text.trim().is_empty() {
                "wire> "
            } else {
                "   -> "
            };
            match editor.readline(prompt) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                    if statement_ends(&text).is_some_and(|e| !e.is_empty()) {
                        let _ = editor.add_history_entry(text.trim());
                    }
                    self.interrupted.store(false, Ordering::Relaxed);
                    match self.complete(&mut text) {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(Failed) => text.clear(),
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => text.clear(),
                Err(rustyline::error::ReadlineError::Eof) => break,
                Err(err) => {
                    eprintln!("error: {err}");
                    break;
                }
            }
        }
        if let Some(path) = &history {
            if let Err(err) = editor.save_history(path) {
                eprintln!(
                    "warning: cannot save the history to {}: {err}",
                    path.display()
                );
            }
        }
    }

    /// Runs a `SELECT` (printing its rows) or an `INSERT` (to its end) as `wire run`.
    fn run_query(&mut self, run: &Run) -> Result<(), Failed> {
        self.queries += 1;
        let dir =
            std::env::temp_dir().join(format!("wire-sql-{}-{}", std::process::id(), self.queries));
        let result = self.run_in(&dir, run);
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(ended) => {
                let rows = if ended.rows == 1 { "row" } else { "rows" };
                let why = match ended.why {
                    Stop::Done => String::new(),
                    Stop::Limit(n) => format!(" (the row limit {n} is reached; query stopped)"),
                    Stop::Interrupted => " (query stopped by Ctrl-C)".to_string(),
                };
                if run.columns.is_empty() {
                    println!("[INFO] INSERT finished{why}");
                } else {
                    println!("{} {rows}{why}", ended.rows);
                }
                let _ = std::io::stdout().flush();
                Ok(())
            }
            Err(err) => {
                eprintln!("[ERROR] {err}");
                Err(Failed)
            }
        }
    }

    fn run_in(&self, dir: &Path, run: &Run) -> Result<Ended, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("query.sql");
        std::fs::write(&file, &run.sql).map_err(|e| format!("{}: {e}", file.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find `wire`: {e}"))?;
        let select = !run.columns.is_empty();
        let mut child = Command::new(exe)
            .args(["run", "--no-progress", "--no-pin", "--cores"])
            .arg(run.cores.map_or(self.cores, |c| c as usize).to_string())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(if select {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the query: {e}"))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        self.interrupted.store(false, Ordering::Relaxed);
        let ended = if select {
            self.print_rows(&mut child, run)
        } else {
            self.wait(&mut child)
        };
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the query: {e}"))?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        if ended.why == Stop::Done && !status.success() {
            let why = stderr
                .lines()
                .filter(|l| l.starts_with("error"))
                .collect::<Vec<_>>()
                .join("\n");
            let why = if why.is_empty() {
                stderr.trim().to_string()
            } else {
                why
            };
            return Err(format!("the query failed ({status}): {why}"));
        }
        Ok(ended)
    }

    /// Prints the child's JSON-lines rows until it ends, the row limit, or Ctrl-C.
    fn print_rows(&self, child: &mut Child, run: &Run) -> Ended {
        let (rows_tx, rows_rx) = crossbeam_channel::bounded::<String>(1024);
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if rows_tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        // The first rows are held back (at most `FIRST_WAIT` after the first) to size the
        // columns; see `table`.
        let mut table = Table::new(&run.columns);
        let mut first_at: Option<Instant> = None;
        let limit = self.session.row_limit();
        let mut rows = 0;
        let why = loop {
            if self.interrupted.load(Ordering::Relaxed) {
                stop(child);
                break Stop::Interrupted;
            }
            if let Some(n) = limit.filter(|n| rows >= *n) {
                stop(child);
                break Stop::Limit(n);
            }
            let wait = match first_at.filter(|_| !table.drawn()) {
                Some(at) => table::FIRST_WAIT.saturating_sub(at.elapsed()),
                None => Duration::from_millis(100),
            };
            match rows_rx.recv_timeout(wait) {
                Ok(line) => {
                    first_at.get_or_insert_with(Instant::now);
                    print_lines(table.push(row_values(&line, &run.columns)));
                    rows += 1;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break Stop::Done,
            }
            if first_at.is_some_and(|at| at.elapsed() >= table::FIRST_WAIT) {
                print_lines(table.draw());
            }
        };
        print_lines(table.close());
        Ended { rows, why }
    }

    /// Waits for an `INSERT`'s child to end, or stops it on Ctrl-C.
    fn wait(&self, child: &mut Child) -> Ended {
        loop {
            if self.interrupted.load(Ordering::Relaxed) {
                stop(child);
                return Ended {
                    rows: 0,
                    why: Stop::Interrupted,
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                return Ended {
                    rows: 0,
                    why: Stop::Done,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Asks a query's `wire run` to stop (SIGINT: it drains and exits), and kills it when it
/// has not ended after 5 s.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // Our own child, not yet waited for, so the pid cannot have been reused.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
}

/// The values of a JSON-lines row in `columns` order, as text (`NULL` for null).
fn row_values(line: &str, columns: &[String]) -> Vec<String> {
    let Ok(serde_json::Value::Object(row)) = serde_json::from_str::<serde_json::Value>(line) else {
        return vec![line.to_string()];
    };
    columns
        .iter()
        .map(|c| match row.get(c) {
            None | Some(serde_json::Value::Null) => "NULL".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect()
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    print_lines(table::whole(&header, rows));
    let n = rows.len();
    println!("{n} {}", if n == 1 { "row" } else { "rows" });
}

/// Prints lines of a table to standard output, at once.
fn print_lines(lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}
