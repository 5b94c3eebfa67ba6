//! The expression language of `map`, `filter` and `project`.
//!
//! Temporary stand-in with the final API while the full language is built on its branch:
//! it accepts only a bare field name or `true`.

use std::borrow::Cow;

use crate::row::{ArchivedRow, ValueRef};
use crate::schema::{DataType, Schema};

/// A type-checked expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    field: Option<usize>,
    data_type: DataType,
    nullable: bool,
}

/// Why an expression does not compile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte offset into the source.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// The field involved.
    pub field: Option<String>,
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

/// Compiles `src` against `schema`.
pub fn compile(src: &str, schema: &Schema) -> Result<Expr, ExprError> {
    let name = src.trim().trim_matches('`');
    if name == "true" {
        return Ok(Expr {
            source: src.into(),
            field: None,
            data_type: DataType::Bool,
            nullable: false,
        });
    }
    let index = schema.index_of(name).ok_or_else(|| ExprError {
        offset: 0,
        message: format!("unknown field `{name}`"),
        field: Some(name.into()),
    })?;
    let field = &schema.fields()[index];
    Ok(Expr {
        source: src.into(),
        field: Some(index),
        data_type: field.data_type,
        nullable: field.nullable,
    })
}

impl Expr {
    /// Result type.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }
    /// Whether the result may be null.
    pub fn nullable(&self) -> bool {
        self.nullable
    }
    /// The field index when the expression is a bare field.
    pub fn field_index(&self) -> Option<usize> {
        self.field
    }
    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// Evaluates over `row`.
    pub fn eval<'r>(&self, row: &'r ArchivedRow) -> Datum<'r> {
        let Some(index) = self.field else {
            return Datum::Bool(true);
        };
        match row.get(index).map(|v| v.as_value_ref()) {
            Some(ValueRef::I64(v)) => Datum::I64(v),
            Some(ValueRef::F64(v)) => Datum::F64(v),
            Some(ValueRef::Bool(v)) => Datum::Bool(v),
            Some(ValueRef::Str(v)) => Datum::Str(Cow::Borrowed(v)),
            Some(ValueRef::Bytes(v)) => Datum::Bytes(Cow::Borrowed(v)),
            Some(ValueRef::Timestamp(v)) => Datum::Timestamp(v),
            _ => Datum::Null,
        }
    }
    /// True only when the result is `Bool(true)`.
    pub fn eval_predicate(&self, row: &ArchivedRow) -> bool {
        self.eval(row) == Datum::Bool(true)
    }
}
