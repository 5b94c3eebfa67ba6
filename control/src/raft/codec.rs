//! A tiny little-endian binary codec for the metadata group's commands, snapshots and backups.
//!
//! Every read is bounds-checked and every length is checked against the bytes left, so a decoder
//! built on [`Reader`] never panics and never allocates more than its input's size on any input.

use super::MetaError;

/// Appends fixed-width little-endian values and length-prefixed byte strings.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
        }
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("encoded field over 4 GiB"));
        self.bytes.extend_from_slice(v);
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.str(v);
            }
        }
    }
}

/// Reads what [`Writer`] wrote; every error names the thing being decoded, the field and the
/// byte offset.
pub(crate) struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader {
            what,
            bytes,
            offset: 0,
        }
    }

    pub(crate) fn error(&self, field: &'static str, reason: &'static str) -> MetaError {
        MetaError::Decode {
            what: self.what,
            field,
            offset: self.offset as u64,
            reason,
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], MetaError> {
        if self.bytes.len() - self.offset < n {
            return Err(self.error(field, "truncated"));
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, MetaError> {
        Ok(self.take(field, 1)?[0])
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, MetaError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, MetaError> {
        let b = self.take(field, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, MetaError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error(field, "bad option flag")),
        }
    }

    pub(crate) fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, MetaError> {
        if self.flag(field)? {
            Ok(Some(self.u64(field)?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], MetaError> {
        let len = self.u32(field)? as usize;
        self.take(field, len)
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, MetaError> {
        let start = self.offset;
        let b = self.bytes(field)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => {
                self.offset = start;
                Err(self.error(field, "not utf-8"))
            }
        }
    }

    pub(crate) fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, MetaError> {
        if self.flag(field)? {
            Ok(Some(self.string(field)?))
        } else {
            Ok(None)
        }
    }

    /// A count of items that each take at least `min_item_size` bytes: refused when the input
    /// cannot hold that many, so a hostile count never drives a large allocation.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_item_size: usize,
    ) -> Result<usize, MetaError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_item_size.max(1)) > self.bytes.len() - self.offset {
            return Err(self.error(field, "count larger than the input"));
        }
        Ok(n)
    }

    pub(crate) fn finish(&self) -> Result<(), MetaError> {
        if self.offset != self.bytes.len() {
            return Err(self.error("end", "trailing bytes"));
        }
        Ok(())
    }
}
