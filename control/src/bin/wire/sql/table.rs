//! The shell's result tables, drawn as text: `+---+` borders, `| value |` rows, every column
//! as wide as the widest value drawn in it (its name included), values right-aligned.
//!
//! A `SELECT`'s rows come while the query runs, so its table ([`Table`]) holds the first rows
//! back until enough of them are in to size the columns (a timestamp is 24 characters, far
//! wider than its column's name), then draws the header with them; a later, wider value
//! widens its column from its row on.

use std::time::Duration;

/// A `SELECT`'s table holds back at most this many rows before it draws its header.
pub const FIRST_ROWS: usize = 100;
/// ... and holds them at most this long after the first one came.
pub const FIRST_WAIT: Duration = Duration::from_millis(300);

/// A table drawn row by row (see the module's text); each call returns the lines to print.
pub struct Table {
    header: Vec<String>,
    widths: Vec<usize>,
    held: Vec<Vec<String>>,
    drawn: bool,
}

impl Table {
    /// A table with these column names; nothing drawn yet.
    pub fn new(header: &[String]) -> Table {
        Table {
            header: header.to_vec(),
            widths: header.iter().map(|h| h.chars().count()).collect(),
            held: Vec::new(),
            drawn: false,
        }
    }

    /// Whether the header is drawn (the first rows are in).
    pub fn drawn(&self) -> bool {
        self.drawn
    }

    /// Adds a row: held back until the header is drawn ([`FIRST_ROWS`] rows held draw it),
    /// drawn at once after.
    pub fn push(&mut self, row: Vec<String>) -> Vec<String> {
        widen(&mut self.widths, &row);
        if self.drawn {
            return vec![line(&self.widths, &row)];
        }
        self.held.push(row);
        if self.held.len() >= FIRST_ROWS {
            return self.draw();
        }
        Vec::new()
    }

    /// Draws the header and the rows held back, if not done yet.
    pub fn draw(&mut self) -> Vec<String> {
        if self.drawn {
            return Vec::new();
        }
        self.drawn = true;
        let mut lines = vec![
            border(&self.widths),
            line(&self.widths, &self.header),
            border(&self.widths),
        ];
        lines.extend(self.held.drain(..).map(|row| line(&self.widths, &row)));
        lines
    }

    /// Ends the table: what is still held back, and the bottom border.
    pub fn close(&mut self) -> Vec<String> {
        let mut lines = self.draw();
        lines.push(border(&self.widths));
        lines
    }
}

/// The lines of a table whose rows are all known (`SHOW TABLES`, `DESCRIBE`).
pub fn whole(header: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let mut table = Table::new(header);
    for row in rows {
        widen(&mut table.widths, row);
    }
    let mut lines = table.draw();
    lines.extend(rows.iter().map(|row| line(&table.widths, row)));
    lines.extend(table.close());
    lines
}

/// Makes each column at least as wide as the row's value in it.
fn widen(widths: &mut Vec<usize>, row: &[String]) {
    if widths.len() < row.len() {
        widths.resize(row.len(), 0);
    }
    for (w, v) in widths.iter_mut().zip(row) {
        *w = (*w).max(v.chars().count());
    }
}

fn border(widths: &[usize]) -> String {
    let mut line = String::from("+");
    for w in widths {
        line.push_str(&"-".repeat(w + 2));
        line.push('+');
    }
    line
}

fn line(widths: &[usize], values: &[String]) -> String {
    let mut line = String::from("|");
    for (w, v) in widths.iter().zip(values) {
        line.push_str(&format!(" {v:>w$} |"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    /// Every line of a drawn table is as wide as its borders, and each `|` sits where the
    /// border has its `+`.
    fn assert_aligned(lines: &[String]) {
        let border = &lines[0];
        for l in lines {
            assert_eq!(l.chars().count(), border.chars().count(), "{lines:#?}");
            for (b, c) in border.chars().zip(l.chars()) {
                assert_eq!(b == '+', c == '+' || c == '|', "{lines:#?}");
            }
        }
    }

    #[test]
    fn a_timestamp_column_is_as_wide_as_its_values() {
        let mut table = Table::new(&strings(&["auction", "window_start", "n"]));
        let rows = [
            ["1000", "2026-12-05T23:59:58.000Z", "3"],
            ["1001", "2026-12-05T23:59:58.000Z", "12345"],
        ];
        for row in rows {
            assert!(table.push(strings(&row)).is_empty(), "held back");
        }
        let mut lines = table.close();
        assert_eq!(
            lines,
            [
                "+---------+--------------------------+-------+",
                "| auction |             window_start |     n |",
                "+---------+--------------------------+-------+",
                "|    1000 | 2026-12-05T23:59:58.000Z |     3 |",
                "|    1001 | 2026-12-05T23:59:58.000Z | 12345 |",
                "+---------+--------------------------+-------+",
            ]
        );
        lines.truncate(5);
        assert_aligned(&lines);
    }

    #[test]
    fn the_first_rows_size_the_columns_then_rows_draw_at_once() {
        let mut table = Table::new(&strings(&["k", "ts"]));
        let mut lines = Vec::new();
        for i in 0..FIRST_ROWS - 1 {
            let row = strings(&[&i.to_string(), "2026-12-05T00:00:00.000Z"]);
            assert!(table.push(row).is_empty());
        }
        assert!(!table.drawn());
        lines.extend(table.push(strings(&["x", "2026-12-05T00:00:01.000Z"])));
        assert!(table.drawn());
        assert_eq!(lines.len(), 3 + FIRST_ROWS, "header and the rows held back");
        let next = table.push(strings(&["y", "2026-12-05T00:00:02.000Z"]));
        assert_eq!(next, ["|  y | 2026-12-05T00:00:02.000Z |"]);
        lines.extend(next);
        lines.extend(table.close());
        assert_aligned(&lines);
        // A later, wider value widens its column from its row on.
        assert_eq!(
            table.push(strings(&["12345", "t"])),
            ["| 12345 |                        t |"]
        );
    }

    #[test]
    fn an_empty_result_draws_its_header() {
        let lines = Table::new(&strings(&["a", "bb"])).close();
        assert_eq!(
            lines,
            ["+---+----+", "| a | bb |", "+---+----+", "+---+----+"]
        );
    }

    #[test]
    fn a_whole_table_is_sized_by_every_row_and_counts_characters_not_bytes() {
        let lines = whole(
            &strings(&["name", "kind"]),
            &[strings(&["bid", "table"]), strings(&["prix_né", "view"])],
        );
        assert_eq!(
            lines,
            [
                "+---------+-------+",
                "|    name |  kind |",
                "+---------+-------+",
                "|     bid | table |",
                "| prix_né |  view |",
                "+---------+-------+",
            ]
        );
        assert_aligned(&lines);
    }
}
