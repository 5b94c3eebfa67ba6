//! Positional rows and their archived (rkyv) form.
//!
//! A row is written as a [`RowRef`] of borrowed [`ValueRef`]s, so building a batch never
//! allocates per row, and read back in place as an [`ArchivedRow`] of [`ArchivedValue`]s.
//! The archived layout is fixed little-endian and unaligned, so rows can be read at any byte
//! position of a batch, a memory-mapped segment or a network buffer.

use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};

use crate::schema::DataType;

/// A borrowed field value, the unit a batch builder archives.
#[derive(Debug, Clone, Copy, PartialEq, Archive, Serialize)]
#[rkyv(archived = ArchivedValueRef)]
pub enum ValueRef<'a> {
    /// SQL null.
    Null,
    /// 64-bit signed integer.
    I64(i64),
    /// 64-bit float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(#[rkyv(with = InlineAsBox)] &'a str),
    /// Raw bytes.
    Bytes(#[rkyv(with = InlineAsBox)] &'a [u8]),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

/// A field value read in place from an archived row.
///
/// The lifetime parameter of the derived type is phantom (it only mirrors [`ValueRef`]'s), so
/// readers use it at `'static`; the borrow that matters is that of the enclosing batch.
pub type ArchivedValue = ArchivedValueRef<'static>;

/// A row read in place from a batch.
pub type ArchivedRow = ArchivedRowRef<'static>;

/// A borrowed row: the root object of each archived row.
#[derive(Debug, Clone, Copy, Archive, Serialize)]
#[rkyv(archived = ArchivedRowRef)]
pub struct RowRef<'a> {
    /// The row's values, positionally matching the schema.
    #[rkyv(with = InlineAsBox)]
    pub values: &'a [ValueRef<'a>],
}

/// An owned field value, for tests, reference models and slow paths.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL null.
    Null,
    /// 64-bit signed integer.
    I64(i64),
    /// 64-bit float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl Value {
    /// Borrows this value for archiving.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::I64(v) => ValueRef::I64(*v),
            Value::F64(v) => ValueRef::F64(*v),
            Value::Bool(v) => ValueRef::Bool(*v),
            Value::Str(v) => ValueRef::Str(v),
            Value::Bytes(v) => ValueRef::Bytes(v),
            Value::Timestamp(v) => ValueRef::Timestamp(*v),
        }
    }
}

impl ArchivedValue {
    /// The value's type, or `None` for null.
    pub fn data_type(&self) -> Option<DataType> {
        Some(match self {
            ArchivedValue::Null => return None,
            ArchivedValue::I64(_) => DataType::I64,
            ArchivedValue::F64(_) => DataType::F64,
            ArchivedValue::Bool(_) => DataType::Bool,
            ArchivedValue::Str(_) => DataType::String,
            ArchivedValue::Bytes(_) => DataType::Bytes,
            ArchivedValue::Timestamp(_) => DataType::Timestamp,
        })
    }

    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        matches!(self, ArchivedValue::Null)
    }

    /// The integer, if this is an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ArchivedValue::I64(v) => Some(v.to_native()),
            _ => None,
        }
    }

    /// The float, if this is an `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ArchivedValue::F64(v) => Some(v.to_native()),
            _ => None,
        }
    }

    /// The boolean, if this is a `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ArchivedValue::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is a `string`, borrowed from the archive.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ArchivedValue::Str(v) => Some(v.get()),
            _ => None,
        }
    }

    /// The bytes, if this is `bytes`, borrowed from the archive.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ArchivedValue::Bytes(v) => Some(v.get()),
            _ => None,
        }
    }

    /// The milliseconds, if this is a `timestamp`.
    pub fn as_timestamp(&self) -> Option<i64> {
        match self {
            ArchivedValue::Timestamp(v) => Some(v.to_native()),
            _ => None,
        }
    }

    /// Borrows the archived value as a [`ValueRef`], e.g. to copy it into another batch.
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            ArchivedValue::Null => ValueRef::Null,
            ArchivedValue::I64(v) => ValueRef::I64(v.to_native()),
            ArchivedValue::F64(v) => ValueRef::F64(v.to_native()),
            ArchivedValue::Bool(v) => ValueRef::Bool(*v),
            ArchivedValue::Str(v) => ValueRef::Str(v.get()),
            ArchivedValue::Bytes(v) => ValueRef::Bytes(v.get()),
            ArchivedValue::Timestamp(v) => ValueRef::Timestamp(v.to_native()),
        }
    }

    /// Copies the archived value out into an owned [`Value`].
    pub fn to_value(&self) -> Value {
        match self.as_value_ref() {
            ValueRef::Null => Value::Null,
            ValueRef::I64(v) => Value::I64(v),
            ValueRef::F64(v) => Value::F64(v),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::Str(v) => Value::Str(v.to_owned()),
            ValueRef::Bytes(v) => Value::Bytes(v.to_vec()),
            ValueRef::Timestamp(v) => Value::Timestamp(v),
        }
    }
}

impl ArchivedRow {
    /// The row's values in place.
    pub fn values(&self) -> &[ArchivedValue] {
        self.values.get()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.get().len()
    }

    /// Whether the row has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `index`, if the row has that many.
    pub fn get(&self, index: usize) -> Option<&ArchivedValue> {
        self.values.get().get(index)
    }

    /// Copies the row out into owned values.
    pub fn to_values(&self) -> Vec<Value> {
        self.values().iter().map(ArchivedValue::to_value).collect()
    }
}
