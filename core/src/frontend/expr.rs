//! The expression language of `map`, `filter`, `project` and `key_by`.
//!
//! A small SQL-like language over the fields of the input row: arithmetic, comparisons, three-
//! valued boolean logic, `%`, `||`, `CASE`/`IF`, `CAST`, `LIKE`/`IN`/`BETWEEN`/`IS NULL` and
//! built-in string, number and time functions. [`compile`] parses and type-checks against the
//! input schema before anything runs; [`Expr::eval`] reads the archived row in place and never
//! fails (errors such as division by zero give NULL). The reference is docs/pipeline.md.

mod check;
mod eval;
mod func;
mod lex;
mod parse;

use std::borrow::Cow;

use crate::record::row::{ArchivedRow, ValueRef};
use crate::record::schema::{DataType, Schema};

/// A type-checked expression, ready to evaluate over rows of the schema it was compiled for.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    node: eval::Node,
    data_type: DataType,
    nullable: bool,
}

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte offset into the source where the problem starts.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// The field involved, when the problem is a field name.
    pub field: Option<String>,
}

impl ExprError {
    fn at(offset: usize, message: String) -> ExprError {
        ExprError {
            offset,
            message,
            field: None,
        }
    }
}

/// A value computed by an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum<'r> {
    /// Null.
    Null,
    /// Integer.
    I64(i64),
    /// Float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(Cow<'r, str>),
    /// Bytes.
    Bytes(Cow<'r, [u8]>),
    /// Timestamp.
    Timestamp(i64),
}

impl Datum<'_> {
    /// The datum as a value to archive.
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            Datum::Null => ValueRef::Null,
            Datum::I64(v) => ValueRef::I64(*v),
            Datum::F64(v) => ValueRef::F64(*v),
            Datum::Bool(v) => ValueRef::Bool(*v),
            Datum::Str(v) => ValueRef::Str(v),
            Datum::Bytes(v) => ValueRef::Bytes(v),
            Datum::Timestamp(v) => ValueRef::Timestamp(*v),
        }
    }
}

/// Parses `src` and type-checks it against `schema`.
pub fn compile(src: &str, schema: &Schema) -> Result<Expr, ExprError> {
    let tokens = lex::tokenize(src)?;
    let ast = parse::parse(&tokens)?;
    let typed = check::Checker { schema }.check(&ast)?;
    let Some(data_type) = typed.ty else {
        return Err(ExprError::at(
            0,
            "the type of a bare NULL is unknown; write e.g. CAST(NULL AS string)".into(),
        ));
    };
    Ok(Expr {
        source: src.to_string(),
        node: typed.node,
        data_type,
        nullable: typed.nullable,
    })
}

impl Expr {
    /// The result type.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// Whether the result may be NULL.
    pub fn nullable(&self) -> bool {
        self.nullable
    }

    /// The field index when the expression is a bare field reference.
    pub fn field_index(&self) -> Option<usize> {
        match self.node {
            eval::Node::Field(index) => Some(index),
            _ => None,
        }
    }

    /// Marks in `used` every field the expression reads (indices past its end are ignored).
    pub fn mark_fields(&self, used: &mut [bool]) {
        self.node.fields(&mut |index| {
            if let Some(slot) = used.get_mut(index) {
                *slot = true;
            }
        });
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates over `row`; strings and bytes borrow from the row or the expression where
    /// they can.
    pub fn eval<'a>(&'a self, row: &'a ArchivedRow) -> Datum<'a> {
        self.node.eval(row)
    }

    /// True only when the result is `true` (NULL and `false` reject, as SQL's WHERE does).
    pub fn eval_predicate(&self, row: &ArchivedRow) -> bool {
        self.node.eval(row) == Datum::Bool(true)
    }
}

/// The names of the built-in functions (for docs and hints).
pub fn function_names() -> Vec<&'static str> {
    func::names()
}

#[cfg(test)]
mod tests;
