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

/// Parses `text` into its single document's root node; `Err` carries the position and reason.
pub(crate) fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, false) {
        return Err((pos_of(err.marker()), err.info().to_string()));
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
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<(Pos, String)>,
}

enum Open {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>),
}

impl TreeBuilder {
    fn finish(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
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
            Event::SequenceStart(..) => self.stack.push(Open::Seq(pos, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Open::Map(pos, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Seq(pos, items)) => Node {
                        kind: NodeKind::Seq(items),
                        pos,
                    },
                    Some(Open::Map(pos, entries, _)) => Node {
                        kind: NodeKind::Map(entries),
                        pos,
                    },
                    None => return,
                };
                self.finish(node);
            }
            Event::Alias(_) => {
                self.error = Some((pos, "YAML aliases are not supported".to_string()));
            }
            Event::DocumentStart if self.root.is_some() => {
                self.error = Some((pos, "expected one YAML document, found several".into()));
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
}
