//! Positional rows and their archived (rkyv) form.
//!
//! A row is written as a [`RowRef`] of borrowed [`ValueRef`]s, so building a batch never
//! allocates per row, and read back in place as an [`ArchivedRow`] of [`ArchivedValue`]s.
//! The archived layout is fixed little-endian and unaligned, so rows can be read at any byte
//! position of a batch, a memory-mapped segment or a network buffer.

use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};

use crate::record::schema::DataType;

mod check;

pub use check::{check_archived_row, rkyv_accepts_row, RowFault};

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

/// Bytes one archived value takes in the row's value array: a one-byte tag and eight payload
/// bytes (i64/f64/timestamp little-endian; bool in the first byte; string and bytes as a 32-bit
/// relative offset plus a 32-bit length), unused bytes zero.
pub const ARCHIVED_VALUE_BYTES: usize = 9;
/// Bytes of an archived row's root: a relative offset to the value array and its length.
pub const ARCHIVED_ROOT_BYTES: usize = 8;

const _: () = assert!(std::mem::size_of::<ArchivedValue>() == ARCHIVED_VALUE_BYTES);
const _: () = assert!(std::mem::size_of::<ArchivedRow>() == ARCHIVED_ROOT_BYTES);

/// Anything that reads as a [`ValueRef`]: the builder's generic input, so operators can
/// archive computed values, owned values or values read in place without collecting them.
pub trait AsValueRef {
    /// The value as a borrowed [`ValueRef`].
    fn as_value(&self) -> ValueRef<'_>;
}

impl AsValueRef for ValueRef<'_> {
    fn as_value(&self) -> ValueRef<'_> {
        *self
    }
}

impl AsValueRef for Value {
    fn as_value(&self) -> ValueRef<'_> {
        self.as_ref()
    }
}

impl AsValueRef for ArchivedValue {
    fn as_value(&self) -> ValueRef<'_> {
        self.as_value_ref()
    }
}

impl AsValueRef for crate::frontend::expr::Datum<'_> {
    fn as_value(&self) -> ValueRef<'_> {
        self.as_value_ref()
    }
}

impl<T: AsValueRef + ?Sized> AsValueRef for &T {
    fn as_value(&self) -> ValueRef<'_> {
        (**self).as_value()
    }
}

/// Size in bytes of `values` archived as one row.
pub fn archived_row_len<V: AsValueRef>(values: &[V]) -> usize {
    let payload: usize = values
        .iter()
        .map(|v| out_of_line(&v.as_value()).map_or(0, <[u8]>::len))
        .sum();
    payload + values.len() * ARCHIVED_VALUE_BYTES + ARCHIVED_ROOT_BYTES
}

/// Appends `values` to `out` as one archived [`RowRef`], byte for byte what rkyv's serializer
/// writes for it (checked by a property test), without rkyv's serializer machinery: string and
/// bytes payloads first, then the value array, then the root. Relative offsets count from the
/// offset field itself, as rkyv's `RelPtr` does; an empty payload points where it would start.
pub fn encode_row<V: AsValueRef>(values: &[V], out: &mut Vec<u8>) {
    out.reserve(archived_row_len(values));
    // Positions are row-local: every offset is relative, so the row's place in `out` is moot.
    let start = out.len();
    for value in values {
        if let Some(bytes) = out_of_line(&value.as_value()) {
            out.extend_from_slice(bytes);
        }
    }
    let array_pos = out.len() - start;
    let mut payload_pos = 0;
    for (index, value) in values.iter().enumerate() {
        let value_pos = array_pos + index * ARCHIVED_VALUE_BYTES;
        out.extend_from_slice(&encode_value(
            &value.as_value(),
            value_pos,
            &mut payload_pos,
        ));
    }
    let root_pos = array_pos + values.len() * ARCHIVED_VALUE_BYTES;
    out.extend_from_slice(&relative(array_pos, root_pos).to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
}

/// Cell tag of a null value.
pub(crate) const TAG_NULL: u8 = 0;
/// Cell tag of an `i64` value.
pub(crate) const TAG_I64: u8 = 1;
/// Cell tag of an `f64` value.
pub(crate) const TAG_F64: u8 = 2;
/// Cell tag of a bool value.
pub(crate) const TAG_BOOL: u8 = 3;
/// Cell tag of a string value.
pub(crate) const TAG_STR: u8 = 4;
/// Cell tag of a bytes value.
pub(crate) const TAG_BYTES: u8 = 5;
/// Cell tag of a timestamp value.
pub(crate) const TAG_TIMESTAMP: u8 = 6;

/// The archived cell of a value stored wholly inside its cell (anything but strings and bytes).
pub(crate) fn fixed_width_cell(value: &ValueRef<'_>) -> Option<[u8; ARCHIVED_VALUE_BYTES]> {
    match value {
        ValueRef::Str(_) | ValueRef::Bytes(_) => None,
        value => Some(encode_value(value, 0, &mut 0)),
    }
}

fn encode_value(
    value: &ValueRef<'_>,
    value_pos: usize,
    payload_pos: &mut usize,
) -> [u8; ARCHIVED_VALUE_BYTES] {
    let mut cell = [0u8; ARCHIVED_VALUE_BYTES];
    let (tag, payload): (u8, [u8; 8]) = match *value {
        ValueRef::Null => (TAG_NULL, [0; 8]),
        ValueRef::I64(v) => (TAG_I64, v.to_le_bytes()),
        ValueRef::F64(v) => (TAG_F64, v.to_le_bytes()),
        ValueRef::Bool(v) => (TAG_BOOL, [u8::from(v), 0, 0, 0, 0, 0, 0, 0]),
        ValueRef::Str(v) => (TAG_STR, boxed(*payload_pos, value_pos + 1, v.len())),
        ValueRef::Bytes(v) => (TAG_BYTES, boxed(*payload_pos, value_pos + 1, v.len())),
        ValueRef::Timestamp(v) => (TAG_TIMESTAMP, v.to_le_bytes()),
    };
    *payload_pos += out_of_line(value).map_or(0, <[u8]>::len);
    cell[0] = tag;
    cell[1..].copy_from_slice(&payload);
    cell
}

pub(crate) fn boxed(target: usize, field_pos: usize, len: usize) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&relative(target, field_pos).to_le_bytes());
    bytes[4..].copy_from_slice(&(len as u32).to_le_bytes());
    bytes
}

/// The 32-bit offset from `from` to `target`; rows are far smaller than 2 GiB.
pub(crate) fn relative(target: usize, from: usize) -> i32 {
    (target as i64 - from as i64) as i32
}

fn out_of_line<'a>(value: &ValueRef<'a>) -> Option<&'a [u8]> {
    match *value {
        ValueRef::Str(v) => Some(v.as_bytes()),
        ValueRef::Bytes(v) => Some(v),
        _ => None,
    }
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
