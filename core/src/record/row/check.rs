//! The check every row from outside the process passes before it is read in place.
//!
//! [`check_archived_row`] accepts exactly the layout [`encode_row`](super::encode_row) writes
//! (which is byte for byte rkyv's): the string and bytes payloads back to back in value order,
//! then the value array, then the root. That is a subset of what rkyv's bytecheck validator
//! accepts ([`rkyv_accepts_row`]; a property test and the `batch_verify` fuzz target hold the
//! two together), so rows that pass may be read with `rkyv::access_unchecked`. It costs a pass
//! over the value cells and one ASCII scan of the payloads, where bytecheck's generic walk
//! (subtree ranges, per-pointer claims, per-string UTF-8) cost several times more per row
//! and bounded the exchange between nodes (docs/benchmarks.md).

use rkyv::rancor;

use super::{
    ArchivedRow, ARCHIVED_ROOT_BYTES, ARCHIVED_VALUE_BYTES, TAG_BOOL, TAG_BYTES, TAG_F64, TAG_I64,
    TAG_NULL, TAG_STR, TAG_TIMESTAMP,
};

/// Where an archived row is malformed: a byte position inside the row, and what is wrong there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowFault {
    /// Byte position inside the row.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl std::fmt::Display for RowFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {} of the row", self.what, self.at)
    }
}

fn fault(at: usize, what: &'static str) -> RowFault {
    RowFault { at, what }
}

#[inline(always)]
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks that `row` is one archived row exactly as Wire writes it: in bounds, every tag
/// known, every bool 0 or 1, the payloads back to back where the cells point, every string
/// UTF-8. A row that passes is one rkyv's validator accepts too.
pub fn check_archived_row(row: &[u8]) -> Result<(), RowFault> {
    let root_pos = row
        .len()
        .checked_sub(ARCHIVED_ROOT_BYTES)
        .ok_or(fault(0, "row shorter than its root"))?;
    let offset = le_u32(row, root_pos) as i32 as i64;
    let count = le_u32(row, root_pos + 4) as usize;
    let cells_len = count
        .checked_mul(ARCHIVED_VALUE_BYTES)
        .filter(|&len| len <= root_pos)
        .ok_or(fault(root_pos + 4, "more values than the row has bytes"))?;
    let array_pos = root_pos - cells_len;
    if offset != array_pos as i64 - root_pos as i64 {
        return Err(fault(root_pos, "value array not right before the root"));
    }
    let cells = &row[array_pos..root_pos];
    let mut payload_end = 0usize;
    let mut strings = false;
    for (index, cell) in cells.chunks_exact(ARCHIVED_VALUE_BYTES).enumerate() {
        let cell_pos = array_pos + index * ARCHIVED_VALUE_BYTES;
        match cell[0] {
            TAG_NULL | TAG_I64 | TAG_F64 | TAG_TIMESTAMP => {}
            TAG_BOOL if cell[1] > 1 => return Err(fault(cell_pos + 1, "bool neither 0 nor 1")),
            TAG_BOOL => {}
            tag @ (TAG_STR | TAG_BYTES) => {
                let target = (cell_pos + 1) as i64 + le_u32(cell, 1) as i32 as i64;
                if target != payload_end as i64 {
                    return Err(fault(
                        cell_pos + 1,
                        "payload not where the previous one ends",
                    ));
                }
                payload_end = payload_end
                    .checked_add(le_u32(cell, 5) as usize)
                    .filter(|&end| end <= array_pos)
                    .ok_or(fault(cell_pos + 5, "payload runs into the value array"))?;
                strings |= tag == TAG_STR;
            }
            _ => return Err(fault(cell_pos, "unknown value tag")),
        }
    }
    if payload_end != array_pos {
        return Err(fault(
            payload_end,
            "bytes between the payloads and the values",
        ));
    }
    if strings && !all_ascii(&row[..array_pos]) {
        check_strings(row, cells, array_pos)?;
    }
    Ok(())
}

/// Whether every byte is below 0x80: an OR over all of them, which the compiler vectorises
/// (`<[u8]>::is_ascii` stops early; on the few dozen payload bytes a row carries, this made the
/// whole check about 8% cheaper in `micro_batch`).
#[inline]
fn all_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, &byte| acc | byte) < 0x80
}

/// The slow path for payloads with non-ASCII bytes: each string on its own.
fn check_strings(row: &[u8], cells: &[u8], array_pos: usize) -> Result<(), RowFault> {
    let mut start = 0usize;
    for cell in cells.chunks_exact(ARCHIVED_VALUE_BYTES) {
        if cell[0] != TAG_STR && cell[0] != TAG_BYTES {
            continue;
        }
        let end = start + le_u32(cell, 5) as usize;
        if cell[0] == TAG_STR && std::str::from_utf8(&row[start..end]).is_err() {
            return Err(fault(start, "string not UTF-8"));
        }
        start = end;
    }
    debug_assert_eq!(start, array_pos);
    Ok(())
}

/// Whether rkyv's own validator (bytecheck) accepts `row` as an [`ArchivedRow`]: the
/// reference [`check_archived_row`] must never be laxer than, for tests and fuzzing.
pub fn rkyv_accepts_row(row: &[u8]) -> bool {
    rkyv::api::low::access::<ArchivedRow, rancor::Error>(row).is_ok()
}

#[cfg(test)]
mod tests;
