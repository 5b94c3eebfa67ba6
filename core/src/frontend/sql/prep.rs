//! The token pass before parsing: Flink syntax the `sqlparser` crate does not read, taken out
//! of the text with its place kept.
//!
//! Six constructs: `SET 'key' = 'value'` statements, recorded and blanked (the parser's own
//! `SET` forms do not keep Flink's quoted keys); `WATERMARK FOR col AS expr`, `col AS PROCTIME()`
//! and `col TYPE METADATA [FROM 'key'] [VIRTUAL]` inside `CREATE TABLE (...)`, which are recorded
//! and blanked; `FOR SYSTEM_TIME AS OF col` after a table in `FROM` (a temporal join), recorded
//! and blanked; and the `TABLE` keyword before the table argument of a windowing function
//! (`TUMBLE(TABLE bid, ...)`), which is blanked. Blanking writes one space per character, so
//! every line and column the parser reports is still right in the user's text.

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::{pos_of, SqlError};
use crate::frontend::spec::Pos;

/// A `WATERMARK FOR` clause of a table.
#[derive(Debug, Clone)]
pub(super) struct Watermark {
    /// The table it was written in.
    pub table: String,
    /// The time column.
    pub column: String,
    /// The expression's text.
    pub expr: String,
    /// Where the clause starts.
    pub pos: Pos,
}

/// A `col AS PROCTIME()` computed column of a table: windows over `DESCRIPTOR(col)` follow
/// the wall clock.
#[derive(Debug, Clone)]
pub(super) struct ProcTime {
    /// The table it was written in.
    pub table: String,
    /// The column's name.
    pub column: String,
}

/// A `col TYPE METADATA [FROM 'key'] [VIRTUAL]` column of a table: a field the connector
/// fills from the record's metadata rather than from its payload.
#[derive(Debug, Clone)]
pub(super) struct Metadata {
    /// The table it was written in.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// The first word of its type, upper case (`TIMESTAMP`, `BIGINT`, ...).
    pub ty: String,
    /// The metadata key: the `FROM` string, or the column's name.
    pub key: String,
    /// Where the column starts.
    pub pos: Pos,
}

/// A `FOR SYSTEM_TIME AS OF col` clause: the table it follows is joined as a lookup table.
#[derive(Debug, Clone)]
pub(super) struct Temporal {
    /// Where the table's name (the token before `FOR`) starts.
    pub table_pos: Pos,
}

/// A `SET 'key' = 'value'` statement: a pipeline setting.
#[derive(Debug, Clone)]
pub(super) struct SetStmt {
    /// The key, unquoted.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The value, unquoted.
    pub value: String,
    /// Where the value starts.
    pub value_pos: Pos,
}

/// `TABLE t PARTITION BY k` or `PARTITION BY (k1, k2)`: the table argument of a function and
/// its partition keys (column names).
#[derive(Debug, Clone)]
pub(super) struct Partition {
    /// Where the table's name starts.
    pub table_pos: Pos,
    /// The key columns and where each is written.
    pub keys: Vec<(String, Pos)>,
    /// Where `PARTITION` is.
    pub pos: Pos,
}

/// The text to parse (with the clauses blanked) and the clauses taken out.
pub(super) struct Prepared {
    pub text: String,
    pub sets: Vec<SetStmt>,
    pub partitions: Vec<Partition>,
    pub watermarks: Vec<Watermark>,
    pub proctimes: Vec<ProcTime>,
    pub metadata: Vec<Metadata>,
    pub temporals: Vec<Temporal>,
}

pub(super) const WINDOW_FUNCTIONS: [&str; 4] = ["TUMBLE", "HOP", "SESSION", "CUMULATE"];

/// Runs the pass over `text`.
pub(super) fn prepare(text: &str) -> Result<Prepared, SqlError> {
    let tokens = tokenize(text)?;
    let mut chars: Vec<char> = text.chars().collect();
    let starts = line_starts(&chars);
    let mut out = Prepared {
        text: String::new(),
        sets: Vec::new(),
        partitions: Vec::new(),
        watermarks: Vec::new(),
        proctimes: Vec::new(),
        metadata: Vec::new(),
        temporals: Vec::new(),
    };
    let mut table = String::new();
    let mut i = 0;
    while i < tokens.len() {
        let statement_start = i == 0 || tokens[i - 1].token == Token::SemiColon;
        if statement_start && is_word(&tokens[i], "SET") {
            let set = set_statement(&tokens, i)?;
            blank(&mut chars, &starts, &tokens[i], &tokens[i + 3]);
            out.sets.push(set);
            i += 4;
            continue;
        }
        if is_word(&tokens[i], "TABLE") {
            if let Some(name) = tokens.get(i + 1).and_then(word) {
                table = name;
            }
            i = table_argument(&tokens, i, &mut chars, &starts, &mut out.partitions)?;
        }
        i = column_clause(&tokens, i, (&mut chars, &starts), &table, &mut out)?;
        if i > 0 && is_system_time(&tokens, i) {
            let end = temporal_end(&tokens, i)?;
            blank(&mut chars, &starts, &tokens[i], &tokens[end]);
            out.temporals.push(Temporal {
                table_pos: pos_of(tokens[i - 1].span.start),
            });
            i = end;
        }
        i += 1;
    }
    out.text = chars.into_iter().collect();
    Ok(out)
}

/// At token `i`, a clause of a `CREATE TABLE` column list the parser does not read
/// (`WATERMARK FOR`, `col AS PROCTIME()`, a `METADATA` column): recorded into `out` and
/// blanked; returns the index of its last token (`i` when there is none).
fn column_clause(
    tokens: &[TokenWithSpan],
    mut i: usize,
    (chars, starts): (&mut [char], &[usize]),
    table: &str,
    out: &mut Prepared,
) -> Result<usize, SqlError> {
    if is_word(&tokens[i], "WATERMARK") && tokens.get(i + 1).is_some_and(|t| is_word(t, "FOR")) {
        let (mark, end) = watermark(tokens, chars, starts, i, table)?;
        let (first, last) = with_comma(tokens, i, end);
        blank(chars, starts, &tokens[first], &tokens[last]);
        out.watermarks.push(mark);
        i = end;
    }
    if i > 0 && is_proctime(tokens, i) {
        if let Some(column) = word(&tokens[i]) {
            let (first, last) = with_comma(tokens, i, i + 4);
            blank(chars, starts, &tokens[first], &tokens[last]);
            out.proctimes.push(ProcTime {
                table: table.to_string(),
                column,
            });
            i += 4;
        }
    }
    if i > 1 && is_word(&tokens[i], "METADATA") {
        if let Some((column, first, end)) = metadata_column(tokens, i, table)? {
            let (first, last) = with_comma(tokens, first, end);
            blank(chars, starts, &tokens[first], &tokens[last]);
            out.metadata.push(column);
            i = end;
        }
    }
    Ok(i)
}

/// At a `METADATA` token `at` after a column's type: the column, the index of its name and
/// of its last token (`METADATA`, the `FROM` string or `VIRTUAL`). `None` when `METADATA` is
/// not in a column list (a column named so, say).
fn metadata_column(
    tokens: &[TokenWithSpan],
    at: usize,
    table: &str,
) -> Result<Option<(Metadata, usize, usize)>, SqlError> {
    // Back over the type (`TIMESTAMP(3)`, `DECIMAL(10, 2)`) to the `(` or `,` before the name.
    let mut depth = 0i32;
    let mut first = at;
    while first > 0 {
        match tokens[first - 1].token {
            Token::RParen => depth += 1,
            Token::LParen if depth > 0 => depth -= 1,
            Token::LParen | Token::Comma if depth == 0 => break,
            Token::SemiColon => return Ok(None),
            _ => {}
        }
        first -= 1;
    }
    let (Some(column), Some(ty)) = (
        tokens.get(first).and_then(word),
        tokens.get(first + 1).and_then(word),
    ) else {
        return Ok(None);
    };
    if first == 0 || first + 2 > at || table.is_empty() || !in_create_table(tokens, first - 1) {
        return Ok(None);
    }
    let mut end = at;
    let mut key = column.clone();
    if tokens.get(end + 1).is_some_and(|t| is_word(t, "FROM")) {
        match tokens.get(end + 2).map(|t| &t.token) {
            Some(Token::SingleQuotedString(k)) => key = k.clone(),
            _ => {
                return Err(SqlError {
                    pos: pos_of(tokens[end + 1].span.start),
                    message: "expected a quoted metadata key after `METADATA FROM` ('timestamp', 'partition', 'offset', 'topic', 'key')".into(),
                })
            }
        }
        end += 2;
    }
    if tokens.get(end + 1).is_some_and(|t| is_word(t, "VIRTUAL")) {
        end += 1;
    }
    let column = Metadata {
        table: table.to_string(),
        column,
        ty: ty.to_ascii_uppercase(),
        key,
        pos: pos_of(tokens[first].span.start),
    };
    Ok(Some((column, first, end)))
}

/// The words of `text`, without whitespace.
fn tokenize(text: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| SqlError {
            pos: Pos {
                line: e.location.line as usize,
                column: e.location.column as usize,
            },
            message: e.message,
        })?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect())
}

/// At a `TABLE` token `i`: blanks it when it starts the table argument of a function call
/// (`TUMBLE(TABLE t, ...)`, `f(TABLE t PARTITION BY k, ...)`), and records and blanks the
/// `PARTITION BY` after it; returns the index of the last token read.
fn table_argument(
    tokens: &[TokenWithSpan],
    i: usize,
    chars: &mut [char],
    starts: &[usize],
    partitions: &mut Vec<Partition>,
) -> Result<usize, SqlError> {
    let after_window = i >= 2
        && tokens[i - 1].token == Token::LParen
        && WINDOW_FUNCTIONS.iter().any(|f| is_word(&tokens[i - 2], f));
    // A table argument of another function (`f(TABLE t PARTITION BY k, ...)`, a Flink
    // process table function): `TABLE` and its `PARTITION BY` are taken out.
    let table_argument = i >= 2
        && tokens[i - 1].token == Token::LParen
        && word(&tokens[i - 2]).is_some()
        && tokens.get(i + 1).and_then(word).is_some();
    if after_window || table_argument {
        blank(chars, starts, &tokens[i], &tokens[i]);
    }
    if table_argument && tokens.get(i + 2).is_some_and(|t| is_word(t, "PARTITION")) {
        let (keys, end) = partition_keys(tokens, i + 2)?;
        blank(chars, starts, &tokens[i + 2], &tokens[end]);
        partitions.push(Partition {
            table_pos: pos_of(tokens[i + 1].span.start),
            keys,
            pos: pos_of(tokens[i + 2].span.start),
        });
        return Ok(end);
    }
    Ok(i)
}

/// Reads `PARTITION BY k` or `PARTITION BY (k1, k2, ...)` starting at token `at`; returns the
/// keys and the index of the last token.
fn partition_keys(
    tokens: &[TokenWithSpan],
    at: usize,
) -> Result<(Vec<(String, Pos)>, usize), SqlError> {
    let bad = || SqlError {
        pos: pos_of(tokens[at].span.start),
        message: "expected `PARTITION BY column` or `PARTITION BY (column, ...)`".into(),
    };
    if !tokens.get(at + 1).is_some_and(|t| is_word(t, "BY")) {
        return Err(bad());
    }
    let key = |t: &TokenWithSpan| word(t).map(|w| (w, pos_of(t.span.start)));
    let first = tokens.get(at + 2).ok_or_else(bad)?;
    if first.token != Token::LParen {
        return Ok((vec![key(first).ok_or_else(bad)?], at + 2));
    }
    let mut keys = Vec::new();
    let mut i = at + 3;
    loop {
        keys.push(tokens.get(i).and_then(key).ok_or_else(bad)?);
        match tokens.get(i + 1).map(|t| &t.token) {
            Some(Token::Comma) => i += 2,
            Some(Token::RParen) => return Ok((keys, i + 1)),
            _ => return Err(bad()),
        }
    }
}

/// Reads `SET 'key' = 'value'` starting at token `at` (keys and values may also be bare
/// words or numbers); the statement must end there.
fn set_statement(tokens: &[TokenWithSpan], at: usize) -> Result<SetStmt, SqlError> {
    let bad = |pos: Pos| SqlError {
        pos,
        message: "expected `SET 'key' = 'value'` (a setting of the pipeline, see docs/sql.md)"
            .into(),
    };
    let text = |t: Option<&TokenWithSpan>| match t.map(|t| &t.token) {
        Some(Token::SingleQuotedString(s)) => Some(s.clone()),
        Some(Token::Number(n, _)) => Some(n.clone()),
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    };
    let start = pos_of(tokens[at].span.start);
    let key = text(tokens.get(at + 1)).ok_or_else(|| bad(start))?;
    if tokens.get(at + 2).map(|t| &t.token) != Some(&Token::Eq) {
        return Err(bad(start));
    }
    let value = text(tokens.get(at + 3)).ok_or_else(|| bad(start))?;
    if let Some(next) = tokens.get(at + 4) {
        if next.token != Token::SemiColon {
            return Err(bad(pos_of(next.span.start)));
        }
    }
    Ok(SetStmt {
        key,
        key_pos: pos_of(tokens[at + 1].span.start),
        value,
        value_pos: pos_of(tokens[at + 3].span.start),
    })
}

/// Reads `WATERMARK FOR col AS expr` starting at token `at`; returns it and the index of the
/// expression's last token.
fn watermark(
    tokens: &[TokenWithSpan],
    chars: &[char],
    starts: &[usize],
    at: usize,
    table: &str,
) -> Result<(Watermark, usize), SqlError> {
    let pos = pos_of(tokens[at].span.start);
    let bad = || SqlError {
        pos,
        message: "expected `WATERMARK FOR column AS expression`".into(),
    };
    let column = tokens.get(at + 2).and_then(word).ok_or_else(bad)?;
    if !tokens.get(at + 3).is_some_and(|t| is_word(t, "AS")) {
        return Err(bad());
    }
    let first = at + 4;
    let mut depth = 0i32;
    let mut end = first;
    while end < tokens.len() {
        match tokens[end].token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => break,
            _ => {}
        }
        end += 1;
    }
    if end == first {
        return Err(bad());
    }
    let from = offset(starts, chars, &tokens[first].span.start);
    let to = offset(starts, chars, &tokens[end - 1].span.end);
    let mark = Watermark {
        table: table.to_string(),
        column,
        expr: chars[from..to].iter().collect(),
        pos,
    };
    Ok((mark, end - 1))
}

/// Whether tokens `at..` read `col AS PROCTIME()` in a column list (after `(` or `,`).
fn is_proctime(tokens: &[TokenWithSpan], at: usize) -> bool {
    matches!(tokens[at - 1].token, Token::LParen | Token::Comma)
        && word(&tokens[at]).is_some()
        && tokens.get(at + 1).is_some_and(|t| is_word(t, "AS"))
        && tokens.get(at + 2).is_some_and(|t| is_word(t, "PROCTIME"))
        && tokens.get(at + 3).is_some_and(|t| t.token == Token::LParen)
        && tokens.get(at + 4).is_some_and(|t| t.token == Token::RParen)
}

/// Whether token `at` (a `(` or `,`) is in the column list of a `CREATE TABLE name (...)`.
fn in_create_table(tokens: &[TokenWithSpan], mut at: usize) -> bool {
    let mut depth = 0i32;
    loop {
        match tokens[at].token {
            Token::RParen => depth += 1,
            Token::LParen if depth > 0 => depth -= 1,
            Token::LParen => break,
            Token::SemiColon => return false,
            _ => {}
        }
        if at == 0 {
            return false;
        }
        at -= 1;
    }
    // `CREATE [TEMPORARY] TABLE [IF NOT EXISTS] name (`: the name, possibly dotted, then TABLE.
    let mut name = at;
    while name > 0 && matches!(tokens[name - 1].token, Token::Word(_) | Token::Period) {
        name -= 1;
        if is_word(&tokens[name], "TABLE") {
            return true;
        }
    }
    false
}

/// Whether tokens `at..` read `FOR SYSTEM_TIME AS OF`.
fn is_system_time(tokens: &[TokenWithSpan], at: usize) -> bool {
    ["FOR", "SYSTEM_TIME", "AS", "OF"]
        .iter()
        .enumerate()
        .all(|(k, w)| tokens.get(at + k).is_some_and(|t| is_word(t, w)))
}

/// The index of the last token of `FOR SYSTEM_TIME AS OF col` (`col` may be qualified).
fn temporal_end(tokens: &[TokenWithSpan], at: usize) -> Result<usize, SqlError> {
    const AFTER: [&str; 10] = [
        "ON", "AS", "WHERE", "JOIN", "INNER", "LEFT", "GROUP", "UNION", "USING", "CROSS",
    ];
    let mut end = at + 4;
    let column = tokens
        .get(end)
        .filter(|t| !AFTER.iter().any(|k| is_word(t, k)));
    if column.and_then(word).is_none() {
        return Err(SqlError {
            pos: pos_of(tokens[at].span.start),
            message: "expected a time column after `FOR SYSTEM_TIME AS OF`".into(),
        });
    }
    while tokens
        .get(end + 1)
        .is_some_and(|t| t.token == Token::Period)
        && tokens.get(end + 2).and_then(word).is_some()
    {
        end += 2;
    }
    Ok(end)
}

/// The token range to blank for a clause at `first..=last`: with the comma before it, or the
/// one after it when it comes first in the list.
fn with_comma(tokens: &[TokenWithSpan], first: usize, last: usize) -> (usize, usize) {
    if first > 0 && tokens[first - 1].token == Token::Comma {
        (first - 1, last)
    } else if tokens
        .get(last + 1)
        .is_some_and(|t| t.token == Token::Comma)
    {
        (first, last + 1)
    } else {
        (first, last)
    }
}

fn word(token: &TokenWithSpan) -> Option<String> {
    match &token.token {
        Token::Word(w) => Some(w.value.clone()),
        _ => None,
    }
}

fn is_word(token: &TokenWithSpan, keyword: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
}

fn line_starts(chars: &[char]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, c) in chars.iter().enumerate() {
        if *c == '\n' {
            starts.push(i + 1);
        }
    }
    starts
}

/// The char index of a 1-based line and column.
fn offset(starts: &[usize], chars: &[char], at: &sqlparser::tokenizer::Location) -> usize {
    let line = (at.line as usize).saturating_sub(1).min(starts.len() - 1);
    (starts[line] + (at.column as usize).saturating_sub(1)).min(chars.len())
}

/// Writes spaces over the characters from `first`'s start to `last`'s end, newlines kept.
fn blank(chars: &mut [char], starts: &[usize], first: &TokenWithSpan, last: &TokenWithSpan) {
    let from = offset(starts, chars, &first.span.start);
    let to = offset(starts, chars, &last.span.end);
    for c in &mut chars[from..to] {
        if *c != '\n' {
            *c = ' ';
        }
    }
}
