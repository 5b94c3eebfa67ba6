//! Tokens of the expression language, each with the byte offset where it starts.

use super::ExprError;

/// One token and where it starts in the source.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: Tok,
    pub offset: usize,
}

/// Token kinds. Keywords are identifiers matched case-insensitively by the parser.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    /// A bare identifier (field, function or keyword).
    Ident(String),
    /// A quoted identifier: `` `name` `` or `"name"`; never a keyword.
    Quoted(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    End,
}

const OPERATORS: [&str; 16] = [
    "==", "!=", "<>", "<=", ">=", "||", "=", "<", ">", "+", "-", "*", "/", "%", "!", "&&",
];

/// Splits `src` into tokens, ending with [`Tok::End`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        if c.is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        let kind = match c {
            b'(' => single(&mut at, Tok::LParen),
            b')' => single(&mut at, Tok::RParen),
            b',' => single(&mut at, Tok::Comma),
            b'\'' => Tok::Str(quoted(src, &mut at, b'\'', "string")?),
            b'`' => Tok::Quoted(quoted(src, &mut at, b'`', "field name")?),
            b'"' => Tok::Quoted(quoted(src, &mut at, b'"', "field name")?),
            b'0'..=b'9' => number(src, &mut at)?,
            b'.' if bytes.get(at + 1).is_some_and(u8::is_ascii_digit) => number(src, &mut at)?,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                    at += 1;
                }
                Tok::Ident(src[start..at].to_string())
            }
            _ => operator(src, &mut at)?,
        };
        tokens.push(Token {
            kind,
            offset: start,
        });
    }
    tokens.push(Token {
        kind: Tok::End,
        offset: src.len(),
    });
    Ok(tokens)
}

fn single(at: &mut usize, tok: Tok) -> Tok {
    *at += 1;
    tok
}

/// Reads a quoted run starting at the opening quote; a doubled quote stands for itself.
fn quoted(src: &str, at: &mut usize, quote: u8, what: &str) -> Result<String, ExprError> {
    let start = *at;
    let bytes = src.as_bytes();
    let mut out = String::new();
    let mut run = start + 1;
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            None => {
                return Err(ExprError::at(
                    start,
                    format!("unterminated {what}: missing closing {}", quote as char),
                ))
            }
            Some(&b) if b == quote => {
                out.push_str(&src[run..i]);
                if bytes.get(i + 1) == Some(&quote) {
                    out.push(quote as char);
                    i += 2;
                    run = i;
                } else {
                    *at = i + 1;
                    return Ok(out);
                }
            }
            Some(_) => i += 1,
        }
    }
}

fn number(src: &str, at: &mut usize) -> Result<Tok, ExprError> {
    let bytes = src.as_bytes();
    let start = *at;
    let digits = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'_') {
            *i += 1;
        }
    };
    let mut i = start;
    digits(&mut i);
    let mut float = false;
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_none_or(u8::is_ascii_digit) {
        float = true;
        i += 1;
        digits(&mut i);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            float = true;
            i = j;
            digits(&mut i);
        }
    }
    if bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return Err(ExprError::at(
            i,
            format!(
                "unexpected `{}` after a number",
                src[i..].chars().next().unwrap_or(' ')
            ),
        ));
    }
    *at = i;
    let text: String = src[start..i].chars().filter(|c| *c != '_').collect();
    if float {
        text.parse()
            .map(Tok::Float)
            .map_err(|_| ExprError::at(start, format!("invalid number `{text}`")))
    } else {
        text.parse().map(Tok::Int).map_err(|_| {
            ExprError::at(
                start,
                format!("integer `{text}` does not fit in i64; write it as a float (`{text}.0`)"),
            )
        })
    }
}

fn operator(src: &str, at: &mut usize) -> Result<Tok, ExprError> {
    let rest = &src[*at..];
    for op in OPERATORS {
        if rest.starts_with(op) {
            *at += op.len();
            return Ok(Tok::Op(op));
        }
    }
    let c = rest.chars().next().unwrap_or(' ');
    Err(ExprError::at(*at, format!("unexpected character `{c}`")))
}
