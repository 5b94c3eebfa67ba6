//! The parser: tokens to an untyped syntax tree, by precedence climbing.
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, comparisons and `IS`/`LIKE`/`IN`/`BETWEEN`,
//! `+ - ||`, `* / %`, unary minus.

use super::lex::{Tok, Token};
use super::ExprError;
use crate::record::schema::DataType;

/// A syntax-tree node and the byte offset it starts at.
#[derive(Debug, Clone)]
pub(super) struct Ast {
    pub kind: AstKind,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub(super) enum AstKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Field {
        name: String,
        quoted: bool,
    },
    Neg(Box<Ast>),
    Not(Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    IsNull {
        expr: Box<Ast>,
        negated: bool,
    },
    Like {
        expr: Box<Ast>,
        pattern: Box<Ast>,
        negated: bool,
    },
    In {
        expr: Box<Ast>,
        list: Vec<Ast>,
        negated: bool,
    },
    Between {
        expr: Box<Ast>,
        low: Box<Ast>,
        high: Box<Ast>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Ast>>,
        branches: Vec<(Ast, Ast)>,
        otherwise: Option<Box<Ast>>,
    },
    Cast {
        expr: Box<Ast>,
        to: DataType,
    },
    Call {
        name: String,
        args: Vec<Ast>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Concat,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Concat => "||",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
        }
    }
}

/// Parses a whole expression.
pub(super) fn parse(tokens: &[Token]) -> Result<Ast, ExprError> {
    let mut parser = Parser { tokens, at: 0 };
    if matches!(parser.peek(), Tok::End) {
        return Err(ExprError::at(0, "empty expression".into()));
    }
    let ast = parser.or()?;
    match parser.peek() {
        Tok::End => Ok(ast),
        _ => Err(parser.unexpected("an operator or the end of the expression")),
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
}

impl Parser<'_> {
    fn token(&self) -> &Token {
        // The token list always ends with `End`, and `bump` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn peek(&self) -> &Tok {
        &self.token().kind
    }

    fn offset(&self) -> usize {
        self.token().offset
    }

    fn bump(&mut self) {
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(name) if name.eq_ignore_ascii_case(word))
    }

    fn keyword_ahead(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at + 1), Some(Token { kind: Tok::Ident(name), .. }) if name.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let found = self.is_keyword(word);
        if found {
            self.bump();
        }
        found
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), ExprError> {
        if self.eat_keyword(word) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{word}`")))
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ExprError> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn eat_op(&mut self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Tok::Op(op) if ops.contains(op) => {
                let op = *op;
                self.bump();
                Some(op)
            }
            _ => None,
        }
    }

    fn unexpected(&self, expected: &str) -> ExprError {
        let found = match self.peek() {
            Tok::End => "the end of the expression".to_string(),
            Tok::Int(v) => format!("`{v}`"),
            Tok::Float(v) => format!("`{v}`"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Quoted(s) => format!("`{s}`"),
            Tok::Op(op) => format!("`{op}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
        };
        ExprError::at(self.offset(), format!("expected {expected}, found {found}"))
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.and()?;
        loop {
            if !self.eat_keyword("or") {
                return Ok(left);
            }
            let right = self.and()?;
            left = binary(BinOp::Or, left, right);
        }
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.not()?;
        loop {
            if !(self.eat_keyword("and") || self.eat_op(&["&&"]).is_some()) {
                return Ok(left);
            }
            let right = self.not()?;
            left = binary(BinOp::And, left, right);
        }
    }

    fn not(&mut self) -> Result<Ast, ExprError> {
        let offset = self.offset();
        if self.eat_keyword("not") || self.eat_op(&["!"]).is_some() {
            let inner = self.not()?;
            return Ok(Ast {
                kind: AstKind::Not(Box::new(inner)),
                offset,
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Ast, ExprError> {
        let left = self.additive()?;
        let offset = left.offset;
        if let Some(op) = self.eat_op(&["=", "==", "!=", "<>", "<", "<=", ">", ">="]) {
            let op = match op {
                "=" | "==" => BinOp::Eq,
                "!=" | "<>" => BinOp::Ne,
                "<" => BinOp::Lt,
                "<=" => BinOp::Le,
                ">" => BinOp::Gt,
                _ => BinOp::Ge,
            };
            let right = self.additive()?;
            return Ok(binary(op, left, right));
        }
        if self.eat_keyword("is") {
            let negated = self.eat_keyword("not");
            self.expect_keyword("null")?;
            let kind = AstKind::IsNull {
                expr: Box::new(left),
                negated,
            };
            return Ok(Ast { kind, offset });
        }
        let negated = self.is_keyword("not")
            && (self.keyword_ahead("like")
                || self.keyword_ahead("in")
                || self.keyword_ahead("between"));
        if negated {
            self.bump();
        }
        let expr = Box::new(left);
        let kind = if self.eat_keyword("like") {
            let pattern = Box::new(self.additive()?);
            AstKind::Like {
                expr,
                pattern,
                negated,
            }
        } else if self.eat_keyword("in") {
            self.expect(Tok::LParen, "`(` after IN")?;
            let list = self.list()?;
            AstKind::In {
                expr,
                list,
                negated,
            }
        } else if self.eat_keyword("between") {
            let low = Box::new(self.additive()?);
            self.expect_keyword("and")?;
            let high = Box::new(self.additive()?);
            AstKind::Between {
                expr,
                low,
                high,
                negated,
            }
        } else {
            return Ok(*expr);
        };
        Ok(Ast { kind, offset })
    }

    fn additive(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.eat_op(&["+", "-", "||"]) {
                Some("+") => BinOp::Add,
                Some("-") => BinOp::Sub,
                Some(_) => BinOp::Concat,
                None => return Ok(left),
            };
            let right = self.multiplicative()?;
            left = binary(op, left, right);
        }
    }

    fn multiplicative(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.eat_op(&["*", "/", "%"]) {
                Some("*") => BinOp::Mul,
                Some("/") => BinOp::Div,
                Some(_) => BinOp::Rem,
                None => return Ok(left),
            };
            let right = self.unary()?;
            left = binary(op, left, right);
        }
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        let offset = self.offset();
        if self.eat_op(&["-"]).is_some() {
            let inner = self.unary()?;
            let kind = match inner.kind {
                AstKind::Int(v) => AstKind::Int(v.wrapping_neg()),
                AstKind::Float(v) => AstKind::Float(-v),
                _ => AstKind::Neg(Box::new(inner)),
            };
            return Ok(Ast { kind, offset });
        }
        if self.eat_op(&["+"]).is_some() {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let offset = self.offset();
        let kind = match self.peek().clone() {
            Tok::Int(v) => {
                self.bump();
                AstKind::Int(v)
            }
            Tok::Float(v) => {
                self.bump();
                AstKind::Float(v)
            }
            Tok::Str(s) => {
                self.bump();
                AstKind::Str(s)
            }
            Tok::Quoted(name) => {
                self.bump();
                AstKind::Field { name, quoted: true }
            }
            Tok::LParen => {
                self.bump();
                let inner = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                return Ok(inner);
            }
            Tok::Ident(name) => return self.word(name, offset),
            _ => return Err(self.unexpected("a value, a field name or `(`")),
        };
        Ok(Ast { kind, offset })
    }

    /// An identifier: a keyword-led form, a function call or a field.
    fn word(&mut self, name: String, offset: usize) -> Result<Ast, ExprError> {
        self.bump();
        let lower = name.to_ascii_lowercase();
        let kind = match lower.as_str() {
            "true" => AstKind::Bool(true),
            "false" => AstKind::Bool(false),
            "null" => AstKind::Null,
            "case" => self.case()?,
            "cast" if *self.peek() == Tok::LParen => self.cast()?,
            _ if *self.peek() == Tok::LParen => {
                self.bump();
                let args = if *self.peek() == Tok::RParen {
                    self.bump();
                    Vec::new()
                } else {
                    self.list()?
                };
                AstKind::Call { name: lower, args }
            }
            _ => AstKind::Field {
                name,
                quoted: false,
            },
        };
        Ok(Ast { kind, offset })
    }

    /// Comma-separated expressions up to and including the closing parenthesis.
    fn list(&mut self) -> Result<Vec<Ast>, ExprError> {
        let mut items = vec![self.or()?];
        while *self.peek() == Tok::Comma {
            self.bump();
            items.push(self.or()?);
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        Ok(items)
    }

    fn case(&mut self) -> Result<AstKind, ExprError> {
        let operand = if self.is_keyword("when") {
            None
        } else {
            Some(Box::new(self.or()?))
        };
        let mut branches = Vec::new();
        while self.eat_keyword("when") {
            let condition = self.or()?;
            self.expect_keyword("then")?;
            let value = self.or()?;
            branches.push((condition, value));
        }
        if branches.is_empty() {
            return Err(self.unexpected("`WHEN`"));
        }
        let otherwise = if self.eat_keyword("else") {
            Some(Box::new(self.or()?))
        } else {
            None
        };
        if !self.eat_keyword("end") {
            return Err(self.unexpected("`WHEN`, `ELSE` or `END`"));
        }
        Ok(AstKind::Case {
            operand,
            branches,
            otherwise,
        })
    }

    fn cast(&mut self) -> Result<AstKind, ExprError> {
        self.bump();
        let expr = Box::new(self.or()?);
        self.expect_keyword("as")?;
        let offset = self.offset();
        let to = match self.peek() {
            Tok::Ident(name) => DataType::parse(&name.to_ascii_lowercase()).ok_or_else(|| {
                ExprError::at(
                    offset,
                    format!(
                        "unknown type `{name}`; the types are i64, f64, bool, string, bytes and timestamp"
                    ),
                )
            })?,
            _ => return Err(self.unexpected("a type name")),
        };
        self.bump();
        self.expect(Tok::RParen, "`)`")?;
        Ok(AstKind::Cast { expr, to })
    }
}

fn binary(op: BinOp, left: Ast, right: Ast) -> Ast {
    let start = left.offset;
    Ast {
        kind: AstKind::Binary(op, Box::new(left), Box::new(right)),
        offset: start,
    }
}
