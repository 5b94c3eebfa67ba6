//! The byte encoding of state snapshots, shared by [`crate::state::KeyedState`] and the
//! built-in operators' checkpoints: little-endian integers, `u32` lengths, values tagged as in
//! the row format, accumulators tagged by kind, and a CRC-32C trailer over a whole snapshot.
//!
//! Decoding never panics and never allocates more than the input's size: every failure is a
//! [`StateError`] naming the byte offset where it was found.
//! A [`Section`] is one key group's sealed snapshot, the unit checkpoints store.
//!
//! ```
//! use wire_core::state::snapshot::{self, Reader};
//! use wire_core::Value;
//!
//! let mut out = snapshot::begin();
//! snapshot::put_value(&mut out, &Value::Str("kept".into()));
//! snapshot::put_i64(&mut out, -7);
//! let sealed = snapshot::seal(out);
//!
//! let mut reader = Reader::new(snapshot::unseal(&sealed).unwrap());
//! assert_eq!(reader.value().unwrap(), Value::Str("kept".into()));
//! assert_eq!(reader.i64("n").unwrap(), -7);
//! reader.finish().unwrap();
//! ```

use std::collections::HashSet;

use bytes::Bytes;

use crate::operator::agg::{Acc, AggCall, DistinctBytes};
use crate::record::row::{AsValueRef, Value, ValueRef};
use crate::state::StateError;

/// The snapshot format this build writes and reads (first byte of a sealed snapshot).
pub const VERSION: u8 = 1;
const CRC_BYTES: usize = 4;

const ACC_COUNT: u8 = 0;
const ACC_VALUE: u8 = 1;
const ACC_AVG_I64: u8 = 2;
const ACC_AVG_F64: u8 = 3;
const ACC_DISTINCT_I64: u8 = 4;
const ACC_DISTINCT_BYTES: u8 = 5;

/// One key group's snapshot of one operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The key group.
    pub key_group: u32,
    /// The operator's sealed snapshot of it: its own buffer when taken, a slice of the
    /// memory-mapped state file when read back.
    pub bytes: Bytes,
}

/// A new snapshot buffer, starting with the format version.
pub fn begin() -> Vec<u8> {
    vec![VERSION]
}

/// Appends the CRC-32C of everything before it.
pub fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The body of a sealed snapshot (after the version byte, before the checksum), once the
/// version and checksum are right.
pub fn unseal(bytes: &[u8]) -> Result<&[u8], StateError> {
    checked(bytes).map(|body| &body[1..])
}

/// The sealed snapshot without its checksum (version byte included).
pub(crate) fn checked(bytes: &[u8]) -> Result<&[u8], StateError> {
    if bytes.len() < 1 + CRC_BYTES {
        let reason = format!("{} bytes are too short for a snapshot", bytes.len());
        return Err(corrupt(0, reason));
    }
    if bytes[0] != VERSION {
        let reason = format!(
            "version {} is not {VERSION}, the one this build reads",
            bytes[0]
        );
        return Err(corrupt(0, reason));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
    let mut stored = [0u8; CRC_BYTES];
    stored.copy_from_slice(crc);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        let reason = format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}");
        return Err(corrupt(body.len(), reason));
    }
    Ok(body)
}

/// A damaged or foreign snapshot.
pub fn corrupt(offset: usize, reason: String) -> StateError {
    StateError::Corrupt { offset, reason }
}

/// An intact snapshot of other state.
pub fn mismatch(offset: usize, reason: String) -> StateError {
    StateError::Mismatch { offset, reason }
}

pub(crate) fn put_tagged(out: &mut Vec<u8>, tag: u8, bytes: [u8; 8]) {
    out.push(tag);
    out.extend_from_slice(&bytes);
}

/// Appends a length or count.
///
/// # Panics
/// If `len` does not fit in 32 bits (no single state value is that large).
pub fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("state lengths fit in 32 bits");
    out.extend_from_slice(&len.to_le_bytes());
}

/// Appends a `u32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends an `i64`.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u64`.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends length-prefixed bytes.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a tagged value.
pub fn put_value(out: &mut Vec<u8>, value: &Value) {
    put_value_ref(out, value.as_value());
}

/// Appends a tagged value read in place (the encoding of [`put_value`]).
pub fn put_value_ref(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push(0),
        ValueRef::I64(v) => put_tagged(out, 1, v.to_le_bytes()),
        ValueRef::F64(v) => put_tagged(out, 2, v.to_le_bytes()),
        ValueRef::Bool(v) => out.extend_from_slice(&[3, u8::from(v)]),
        ValueRef::Str(v) => {
            out.push(4);
            put_bytes(out, v.as_bytes());
        }
        ValueRef::Bytes(v) => {
            out.push(5);
            put_bytes(out, v);
        }
        ValueRef::Timestamp(v) => put_tagged(out, 6, v.to_le_bytes()),
    }
}

/// Appends a count and the values.
pub fn put_row(out: &mut Vec<u8>, row: &[Value]) {
    put_len(out, row.len());
    row.iter().for_each(|value| put_value(out, value));
}

/// Appends an accumulator (sets in sorted order, so equal state encodes equally).
pub fn put_acc(out: &mut Vec<u8>, acc: &Acc) {
    match acc {
        Acc::Count(count) => put_tagged(out, ACC_COUNT, count.to_le_bytes()),
        Acc::Value(value) => {
            out.push(ACC_VALUE);
            put_value(out, value);
        }
        Acc::AvgI64 {
            sum_hi,
            sum_lo,
            count,
        } => {
            put_tagged(out, ACC_AVG_I64, sum_hi.to_le_bytes());
            put_u64(out, *sum_lo);
            put_i64(out, *count);
        }
        Acc::AvgF64 { sum, count } => {
            put_tagged(out, ACC_AVG_F64, sum.to_le_bytes());
            put_i64(out, *count);
        }
        Acc::DistinctI64(set) => {
            out.push(ACC_DISTINCT_I64);
            let mut values: Vec<i64> = set.iter().copied().collect();
            values.sort_unstable();
            put_len(out, values.len());
            values.iter().for_each(|v| put_i64(out, *v));
        }
        Acc::DistinctBytes(set) => put_distinct_bytes(out, set.members()),
    }
}

/// Appends a `count(distinct)` set of canonical value bytes.
pub(crate) fn put_distinct_bytes<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = &'a [u8]>) {
    out.push(ACC_DISTINCT_BYTES);
    let mut keys: Vec<&[u8]> = members.collect();
    keys.sort_unstable();
    put_len(out, keys.len());
    keys.iter().for_each(|key| put_bytes(out, key));
}

/// What an accumulator tag announced, for callers that store some kinds their own way.
pub(crate) enum AccRead {
    /// Any accumulator but a set of bytes.
    Acc(Acc),
    /// A `count(distinct)` set of canonical value bytes.
    DistinctBytes(HashSet<Box<[u8]>>),
}

/// A cursor over snapshot bytes that names the offset of whatever it fails to read.
pub struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'b [u8]) -> Reader<'b> {
        Reader { bytes, at: 0 }
    }

    /// The offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'b [u8], StateError> {
        let left = self.bytes.len() - self.at;
        if n > left {
            let reason = format!("{what} needs {n} bytes, {left} left");
            return Err(corrupt(self.at, reason));
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], StateError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    /// Reads a byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, StateError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, StateError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// Reads an `i64`.
    pub fn i64(&mut self, what: &str) -> Result<i64, StateError> {
        self.array(what).map(i64::from_le_bytes)
    }

    /// Reads a `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, StateError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads an `f64`.
    pub fn f64(&mut self, what: &str) -> Result<f64, StateError> {
        self.array(what).map(f64::from_le_bytes)
    }

    /// A count of items of at least one byte each: never more than the bytes left, so a
    /// damaged count cannot make the reader allocate more than the snapshot's size.
    pub fn count(&mut self, what: &str) -> Result<usize, StateError> {
        let at = self.at;
        let count = self.u32(what)? as usize;
        let left = self.bytes.len() - self.at;
        if count > left {
            let reason = format!("{count} {what}s cannot fit in the {left} bytes left");
            return Err(corrupt(at, reason));
        }
        Ok(count)
    }

    /// Reads length-prefixed bytes.
    pub fn bytes(&mut self, what: &str) -> Result<&'b [u8], StateError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// Reads a tagged value.
    pub fn value(&mut self) -> Result<Value, StateError> {
        let at = self.at;
        Ok(match self.u8("value tag")? {
            0 => Value::Null,
            1 => Value::I64(self.i64("i64")?),
            2 => Value::F64(self.f64("f64")?),
            3 => match self.u8("bool")? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(corrupt(at + 1, format!("bool byte {other} is not 0 or 1"))),
            },
            4 => {
                let text_at = self.at + 4;
                let bytes = self.bytes("string")?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| corrupt(text_at + e.valid_up_to(), "invalid UTF-8".into()))?;
                Value::Str(text.to_owned())
            }
            5 => Value::Bytes(self.bytes("bytes")?.to_vec()),
            6 => Value::Timestamp(self.i64("timestamp")?),
            tag => return Err(corrupt(at, format!("unknown value tag {tag}"))),
        })
    }

    /// Reads a count and that many values.
    pub fn row(&mut self) -> Result<Box<[Value]>, StateError> {
        let count = self.count("value")?;
        let mut row = Vec::with_capacity(count.min(self.bytes.len() - self.at));
        for _ in 0..count {
            row.push(self.value()?);
        }
        Ok(row.into_boxed_slice())
    }

    /// Reads a count and that many values into `row` (cleared first): no allocation once
    /// `row` has room.
    pub fn row_into(&mut self, row: &mut Vec<Value>) -> Result<(), StateError> {
        row.clear();
        let count = self.count("value")?;
        for _ in 0..count {
            row.push(self.value()?);
        }
        Ok(())
    }

    /// Reads one accumulator for each of `calls`.
    pub fn accs(&mut self, calls: &[AggCall]) -> Result<Box<[Acc]>, StateError> {
        let mut accs = Vec::with_capacity(calls.len());
        for call in calls {
            accs.push(self.acc(call)?);
        }
        Ok(accs.into_boxed_slice())
    }

    pub(crate) fn acc_any(&mut self) -> Result<AccRead, StateError> {
        let at = self.at;
        Ok(match self.u8("accumulator tag")? {
            ACC_COUNT => AccRead::Acc(Acc::Count(self.i64("count")?)),
            ACC_VALUE => AccRead::Acc(Acc::Value(self.value()?)),
            ACC_AVG_I64 => AccRead::Acc(Acc::AvgI64 {
                sum_hi: self.i64("sum")?,
                sum_lo: self.u64("sum")?,
                count: self.i64("count")?,
            }),
            ACC_AVG_F64 => AccRead::Acc(Acc::AvgF64 {
                sum: self.f64("sum")?,
                count: self.i64("count")?,
            }),
            ACC_DISTINCT_I64 => {
                let count = self.count("distinct value")?;
                let values = (0..count).map(|_| self.i64("distinct value"));
                AccRead::Acc(Acc::DistinctI64(Box::new(
                    values.collect::<Result<_, _>>()?,
                )))
            }
            ACC_DISTINCT_BYTES => {
                let mut set = HashSet::new();
                for _ in 0..self.count("distinct value")? {
                    set.insert(Box::from(self.bytes("distinct value")?));
                }
                AccRead::DistinctBytes(set)
            }
            tag => return Err(corrupt(at, format!("unknown accumulator tag {tag}"))),
        })
    }

    /// Reads an accumulator of `call`: an error if it is another kind.
    pub fn acc(&mut self, call: &AggCall) -> Result<Acc, StateError> {
        let at = self.at;
        let acc = match self.acc_any()? {
            AccRead::Acc(acc) => acc,
            AccRead::DistinctBytes(set) => {
                Acc::DistinctBytes(Box::new(DistinctBytes::from_members(set)))
            }
        };
        if std::mem::discriminant(&acc) != std::mem::discriminant(&call.new_acc()) {
            let reason = format!("the accumulator does not fit `{}`", call.source());
            return Err(mismatch(at, reason));
        }
        Ok(acc)
    }

    /// Succeeds when every byte was read.
    pub fn finish(&self) -> Result<(), StateError> {
        if self.at == self.bytes.len() {
            return Ok(());
        }
        let reason = format!("{} bytes follow the last item", self.bytes.len() - self.at);
        Err(corrupt(self.at, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_snapshots_are_refused_with_their_offset() {
        let mut out = begin();
        put_row(&mut out, &[Value::I64(1), Value::Str("x".into())]);
        let sealed = seal(out);
        let mut reader = Reader::new(unseal(&sealed).expect("intact"));
        assert_eq!(reader.row().expect("row").len(), 2);
        reader.finish().expect("all read");
        for i in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[i] ^= 0x10;
            assert!(unseal(&damaged).is_err(), "flip at {i}");
        }
        assert!(unseal(&sealed[..sealed.len() - 1]).is_err());
        let mut reader = Reader::new(&[4, 255, 255, 255, 255]);
        let err = reader.value().unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { offset: 5, .. }),
            "{err}"
        );
    }
}
