//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Built from yaml-rust2's event parser so that every later error — an unknown field, a bad
//! value, a type error inside an expression — can name the line and column it came from.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, counting from 1.
    pub line: usize,
    /// Column in characters, counting from 1.
    pub column: usize,
}

/// One YAML node and its position.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Scalar(String, ScalarStyle),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// How a scalar was written; it decides how a column inside its text maps to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarStyle {
    Plain,
    Quoted,
    Block,
}

impl Node {
    /// A short name of the node's kind for error messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(..) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    pub(crate) fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(text, _) => Some(text),
            _ => None,
        }
    }
}

/// The advice given when a flow collection (`{...}`, `[...]`) cut an expression at its commas.
const SPLIT_HINT: &str = "quote the expression or use the block form";

/// Parses `text` into its single document's root node; `Err` carries the position and reason.
pub(crate) fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let mut builder = TreeBuilder::new(text);
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, false) {
        let reason = format!("invalid YAML: {}", err.info());
        // A comma inside `{day: f(a, 'b')}` ends the entry, and what follows may not parse.
        return Err(match builder.open_split_scalar() {
            Some((pos, cut)) => (pos, split_message(&cut, &reason)),
            None => (pos_of(err.marker()), reason),
        });
    }
    if let Some(message) = builder.error {
        return Err(message);
    }
    builder.root.ok_or_else(|| {
        (
            Pos { line: 1, column: 1 },
            "the file is empty: expected a pipeline mapping".to_string(),
        )
    })
}

fn pos_of(marker: &Marker) -> Pos {
    Pos {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

/// Open containers while events arrive; a finished node attaches to the one below it.
struct TreeBuilder<'t> {
    text: &'t str,
    /// Byte offset of each line's start in `text`, to tell `{`/`[` from a block collection.
    line_starts: Vec<usize>,
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<(Pos, String)>,
}

/// An open collection; `flow` is true for `{...}` and `[...]`.
enum Open {
    Seq {
        pos: Pos,
        items: Vec<Node>,
        flow: bool,
    },
    Map {
        pos: Pos,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        flow: bool,
    },
}

impl Open {
    /// The first plain scalar of a flow collection of at least `entries_min` entries whose
    /// brackets or quotes do not balance: the telltale of an expression cut at its commas.
    fn split_scalar(&self, entries_min: usize) -> Option<(Pos, String)> {
        let scalars: Vec<&Node> = match self {
            Open::Seq {
                items, flow: true, ..
            } => items.iter().collect(),
            Open::Map {
                entries,
                key,
                flow: true,
                ..
            } => entries
                .iter()
                .flat_map(|(k, v)| [k, v])
                .chain(key.as_ref())
                .collect(),
            _ => return None,
        };
        let cut = scalars.iter().find(|node| match &node.kind {
            NodeKind::Scalar(text, ScalarStyle::Plain) => !balanced(text),
            _ => false,
        })?;
        let entries = match self {
            Open::Seq { items, .. } => items.len(),
            Open::Map { entries, key, .. } => entries.len() + usize::from(key.is_some()),
        };
        let text = cut.as_scalar().unwrap_or_default().to_string();
        (entries >= entries_min).then_some((cut.pos, text))
    }
}

/// Whether `text`'s parentheses and brackets close, not counting those inside quotes. An
/// unclosed quote alone does not count (`O'Brien` is a fine value), but the parentheses of an
/// expression cut inside a string literal, like `concat('a`, still do not balance.
fn balanced(text: &str) -> bool {
    let mut depth = 0i64;
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

fn split_message(cut: &str, detail: &str) -> String {
    format!(
        "a comma inside `{{...}}` or `[...]` ends an entry, so the expression starting `{cut}` \
         was cut there: {SPLIT_HINT} ({detail})"
    )
}

impl<'t> TreeBuilder<'t> {
    fn new(text: &'t str) -> TreeBuilder<'t> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        TreeBuilder {
            text,
            line_starts,
            stack: Vec::new(),
            root: None,
            error: None,
        }
    }

    /// Whether the collection starting at `marker` is written in flow style.
    fn is_flow(&self, marker: &Marker) -> bool {
        let start = marker
            .line()
            .checked_sub(1)
            .and_then(|line| self.line_starts.get(line));
        start
            .and_then(|&start| self.text[start..].chars().nth(marker.col()))
            .is_some_and(|c| c == '{' || c == '[')
    }

    /// A cut expression in any open flow collection (for a parse error inside one, which
    /// may come before the entry after the comma is seen).
    fn open_split_scalar(&self) -> Option<(Pos, String)> {
        self.stack
            .iter()
            .rev()
            .find_map(|open| open.split_scalar(1))
    }

    fn finish(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl TreeBuilder<'_> {
    /// Closes the innermost collection; a flow collection that cut an expression is an error.
    fn close(&mut self) {
        let Some(open) = self.stack.pop() else {
            return;
        };
        if let Some((pos, cut)) = open.split_scalar(2) {
            let detail = "the YAML parses, but not as one expression";
            self.error = Some((pos, split_message(&cut, detail)));
            return;
        }
        let node = match open {
            Open::Seq { pos, items, .. } => Node {
                kind: NodeKind::Seq(items),
                pos,
            },
            Open::Map { pos, entries, .. } => Node {
                kind: NodeKind::Map(entries),
                pos,
            },
        };
        self.finish(node);
    }
}

impl MarkedEventReceiver for TreeBuilder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_of(&marker);
        match event {
            Event::Scalar(text, style, _, _) => {
                let style = match style {
                    TScalarStyle::Plain => ScalarStyle::Plain,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => ScalarStyle::Quoted,
                    TScalarStyle::Literal | TScalarStyle::Folded => ScalarStyle::Block,
                };
                self.finish(Node {
                    kind: NodeKind::Scalar(text, style),
                    pos,
                });
            }
            Event::SequenceStart(..) => {
                let flow = self.is_flow(&marker);
                self.stack.push(Open::Seq {
                    pos,
                    items: Vec::new(),
                    flow,
                });
            }
            Event::MappingStart(..) => {
                let flow = self.is_flow(&marker);
                self.stack.push(Open::Map {
                    pos,
                    entries: Vec::new(),
                    key: None,
                    flow,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(_) => {
                let message = "invalid YAML: aliases are not supported";
                self.error = Some((pos, message.to_string()));
            }
            Event::DocumentStart if self.root.is_some() => {
                let message = "invalid YAML: expected one YAML document, found several";
                self.error = Some((pos, message.into()));
            }
            _ => {}
        }
    }
}

/// The file position of byte `offset` inside scalar `node`'s text, given the file's `source`.
///
/// Plain and quoted scalars on one line map by column arithmetic. For multi-line scalars the
/// line of the text holding `offset` is looked up in the file below the node's first line.
pub(crate) fn position_in_scalar(source: &str, node: &Node, offset: usize) -> Pos {
    let NodeKind::Scalar(text, style) = &node.kind else {
        return node.pos;
    };
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line_index = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column_in_line = before[line_start..].chars().count();
    if line_index == 0 && *style != ScalarStyle::Block {
        let quote = usize::from(*style == ScalarStyle::Quoted);
        return Pos {
            line: node.pos.line,
            column: node.pos.column + quote + column_in_line,
        };
    }
    let wanted = text.split('\n').nth(line_index).unwrap_or("").trim();
    let first_line = node.pos.line + usize::from(*style == ScalarStyle::Block);
    for (index, file_line) in source
        .lines()
        .enumerate()
        .skip(first_line.saturating_sub(1))
    {
        if let Some(at) = file_line.find(wanted).filter(|_| !wanted.is_empty()) {
            let lead = text.split('\n').nth(line_index).unwrap_or("");
            let trimmed = lead.len() - lead.trim_start().len();
            return Pos {
                line: index + 1,
                column: file_line[..at].chars().count() + 1 + column_in_line
                    - trimmed.min(column_in_line),
            };
        }
    }
    node.pos
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_entry<'a>(node: &'a Node, key: &str) -> &'a Node {
        let NodeKind::Map(entries) = &node.kind else {
            panic!("not a map")
        };
        &entries
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .expect("key")
            .1
    }

    #[test]
    fn nodes_carry_one_based_positions() {
        let root = parse("a: 1\nb:\n  c: 'x y'\n").unwrap();
        assert_eq!(root.pos.line, 1);
        let c = map_entry(map_entry(&root, "b"), "c");
        assert_eq!(c.pos, Pos { line: 3, column: 6 });
        assert_eq!(c.as_scalar(), Some("x y"));
        // Offset 2 of 'x y' is the `y`, one past the quote.
        assert_eq!(position_in_scalar("", c, 2), Pos { line: 3, column: 9 });
    }

    #[test]
    fn block_scalars_map_offsets_to_their_lines() {
        let source = "f: |\n  price > 1\n  AND bad\n";
        let root = parse(source).unwrap();
        let f = map_entry(&root, "f");
        let text = f.as_scalar().unwrap();
        let offset = text.find("bad").unwrap();
        assert_eq!(
            position_in_scalar(source, f, offset),
            Pos { line: 3, column: 7 }
        );
    }

    #[test]
    fn syntax_errors_and_aliases_name_their_place() {
        let (pos, message) = parse("a: [1, 2\n").unwrap_err();
        assert!(pos.line >= 1, "{message}");
        let (pos, message) = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert_eq!(pos.line, 2);
        assert!(message.contains("aliases"));
        assert!(parse("").unwrap_err().1.contains("empty"));
    }

    #[test]
    fn an_expression_cut_at_a_comma_by_a_flow_collection_says_to_quote_it() {
        // Valid YAML: the mapping gets three entries, the first `substr(user`.
        let (pos, message) = parse("g: {bucket: substr(user, 1, 1)}\n").unwrap_err();
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 13
            }
        );
        assert!(
            message.contains("quote the expression or use the block form"),
            "{message}"
        );
        assert!(message.contains("`substr(user`"), "{message}");
        // Not YAML at all: a quoted scalar followed by `)`.
        let source = "a: 1\ng: {day: date_format(date_time, 'yyyy-MM-dd')}\n";
        let (pos, message) = parse(source).unwrap_err();
        assert_eq!(
            pos,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert!(
            message.contains("quote the expression or use the block form"),
            "{message}"
        );
        assert!(message.contains("invalid YAML"), "{message}");
        let (_, message) = parse("k: [substr(a, 1), b]\n").unwrap_err();
        assert!(message.contains("`substr(a`"), "{message}");
    }

    #[test]
    fn balanced_flow_collections_and_block_scalars_are_left_alone() {
        for ok in [
            "g: {day: \"date_format(date_time, 'yyyy-MM-dd')\"}\n",
            "g:\n  day: date_format(date_time, 'yyyy-MM-dd')\n",
            "s: {key: i64, value: string}\nb: [f(x), g(y)]\n",
            "o: [price desc, date_time asc]\n",
            "c: {who: O'Brien, n: 1}\n",
            // A lone unbalanced entry is the expression parser's to report.
            "f: [f(x]\n",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }
}
