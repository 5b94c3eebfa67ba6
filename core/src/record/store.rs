//! Rows kept by an operator (a join's waiting rows), packed into shared chunks of bytes
//! instead of one allocation each.
//!
//! A [`RowStore`] names each row by a `u32` id (a removed row's id is reused) and appends its
//! bytes to the open chunk. A chunk is freed when its last row is removed, and the open chunk
//! starts again from its beginning when it empties, so rows that come and go in about the
//! order they arrived (a join's rows expiring by event time) reuse the same few chunks.
//!
//! # Safety contract
//! [`RowStore::row`] reads rows with `rkyv::access_unchecked`. That is sound because every
//! byte range a live id names was written by [`encode_row`] or copied whole from a row of a
//! [`BatchView`] (whose rows are valid: see the `batch` module), chunks are only ever appended
//! to while any row in them is live, and the range of a removed id is never read again (its
//! span is marked free). Rows are self-contained and the format is unaligned, so a row is
//! valid at any offset of a chunk.
#![allow(unsafe_code)]

use crate::record::batch::BatchView;
use crate::record::row::{archived_row_len, encode_row, ArchivedRow, AsValueRef};

/// Bytes of a full-size chunk. Smaller stores start with smaller chunks.
const CHUNK_BYTES: usize = 64 * 1024;

/// Bytes of a store's first chunk.
const FIRST_CHUNK_BYTES: usize = 1024;

/// The `len` of a free id's span.
const FREE: u32 = u32::MAX;

/// Rows by id, packed into chunks.
#[derive(Debug, Default)]
pub struct RowStore {
    chunks: Vec<Chunk>,
    /// By id: where the row's bytes are.
    spans: Vec<Span>,
    free_ids: Vec<u32>,
    /// Chunks with no memory, to reuse.
    free_chunks: Vec<u32>,
    /// The chunk rows are appended to.
    open: Option<u32>,
    live: usize,
}

#[derive(Debug, Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Live rows in the chunk.
    rows: u32,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    chunk: u32,
    start: u32,
    len: u32,
}

impl RowStore {
    /// Stores a copy of row `index` of `view`; its id.
    pub fn push_copy(&mut self, view: &BatchView<'_>, index: usize) -> u32 {
        let bytes = view.row_bytes(index);
        self.push_with(bytes.len(), |out| out.extend_from_slice(bytes))
    }

    /// Stores `values` encoded as one row; its id.
    pub fn push_encoded<V: AsValueRef>(&mut self, values: &[V]) -> u32 {
        self.push_with(archived_row_len(values), |out| encode_row(values, out))
    }

    /// Appends a row of `len` bytes that `write` appends to a chunk; its id.
    fn push_with(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> u32 {
        let chunk = self.chunk_with_room(len);
        let bytes = &mut self.chunks[chunk as usize].bytes;
        let start = bytes.len();
        write(bytes);
        let span = Span {
            chunk,
            start: u32::try_from(start).unwrap_or(FREE),
            len: u32::try_from(bytes.len() - start).unwrap_or(FREE),
        };
        assert!(
            span.start != FREE && span.len != FREE && span.len as usize == len,
            "a row of {len} bytes does not fit a row store's chunk"
        );
        self.chunks[chunk as usize].rows += 1;
        self.live += 1;
        match self.free_ids.pop() {
            Some(id) => {
                self.spans[id as usize] = span;
                id
            }
            None => {
                self.spans.push(span);
                (self.spans.len() - 1) as u32
            }
        }
    }

    /// The open chunk if `len` more bytes fit in it without growing it, else a new open chunk.
    fn chunk_with_room(&mut self, len: usize) -> u32 {
        if let Some(open) = self.open {
            let bytes = &self.chunks[open as usize].bytes;
            if bytes.capacity() - bytes.len() >= len {
                return open;
            }
        }
        // Chunks grow with the store (a join with a few rows stays small) up to full size; a
        // row larger than that gets a chunk of its own size.
        let size = (self.live * 64)
            .next_power_of_two()
            .clamp(FIRST_CHUNK_BYTES, CHUNK_BYTES)
            .max(len);
        if let Some(open) = self.open {
            let chunk = &mut self.chunks[open as usize];
            if chunk.rows == 0 {
                chunk.bytes = Vec::with_capacity(size);
                return open;
            }
        }
        let chunk = Chunk {
            bytes: Vec::with_capacity(size),
            rows: 0,
        };
        let id = match self.free_chunks.pop() {
            Some(id) => {
                self.chunks[id as usize] = chunk;
                id
            }
            None => {
                self.chunks.push(chunk);
                (self.chunks.len() - 1) as u32
            }
        };
        self.open = Some(id);
        id
    }

    /// Row `id`, read in place, if it is stored.
    pub fn row(&self, id: u32) -> Option<&ArchivedRow> {
        if !self.contains(id) {
            return None;
        }
        let span = &self.spans[id as usize];
        let start = span.start as usize;
        let bytes = &self.chunks[span.chunk as usize].bytes[start..start + span.len as usize];
        // SAFETY: a live span names exactly the bytes of one row that `push_copy` copied from
        // a `BatchView` or `push_encoded` wrote with `encode_row`, in a chunk that has only
        // been appended to since (see the module's safety contract).
        Some(unsafe { rkyv::access_unchecked::<ArchivedRow>(bytes) })
    }

    /// Whether row `id` is stored.
    pub fn contains(&self, id: u32) -> bool {
        self.spans
            .get(id as usize)
            .is_some_and(|span| span.len != FREE)
    }

    /// Removes row `id`; whether it was stored. A chunk whose last row this was is freed
    /// (the open chunk is emptied instead, to be filled again).
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(span) = self.spans.get_mut(id as usize) else {
            return false;
        };
        if span.len == FREE {
            return false;
        }
        let chunk_id = span.chunk;
        span.len = FREE;
        self.free_ids.push(id);
        self.live -= 1;
        let chunk = &mut self.chunks[chunk_id as usize];
        chunk.rows -= 1;
        if chunk.rows == 0 {
            if self.open == Some(chunk_id) {
                chunk.bytes.clear();
            } else {
                chunk.bytes = Vec::new();
                self.free_chunks.push(chunk_id);
            }
        }
        true
    }

    /// Rows stored.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no row is stored.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes the store takes at its capacity: the chunks and the id tables.
    pub fn footprint_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.bytes.capacity())
            .sum::<usize>()
            + self.chunks.capacity() * size_of::<Chunk>()
            + self.spans.capacity() * size_of::<Span>()
            + (self.free_ids.capacity() + self.free_chunks.capacity()) * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::row::ValueRef;
    use crate::{BatchBuilder, PartitionId, StreamId};

    fn first(store: &RowStore, id: u32) -> Option<i64> {
        store.row(id)?.get(0)?.as_i64()
    }

    fn chunk_bytes(store: &RowStore) -> usize {
        store.chunks.iter().map(|c| c.bytes.capacity()).sum()
    }

    #[test]
    fn rows_read_back_until_removed_and_ids_are_reused() {
        let mut store = RowStore::default();
        let a = store.push_encoded(&[ValueRef::I64(1), ValueRef::Str("one")]);
        let b = store.push_encoded(&[ValueRef::I64(2), ValueRef::Null]);
        assert_eq!((first(&store, a), first(&store, b)), (Some(1), Some(2)));
        assert_eq!(store.row(a).and_then(|r| r.get(1)?.as_str()), Some("one"));
        assert!(store.remove(a));
        assert!(!store.remove(a), "a removed row is gone");
        assert_eq!(first(&store, a), None);
        assert_eq!(store.row(99).map(|_| ()), None);
        let c = store.push_encoded(&[ValueRef::I64(3)]);
        assert_eq!(c, a, "the removed id is reused");
        assert_eq!((first(&store, b), first(&store, c)), (Some(2), Some(3)));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn copies_of_batch_rows_survive_the_batch() {
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        for i in 0..3 {
            builder
                .push(&[ValueRef::I64(i), ValueRef::Str("x")])
                .unwrap();
        }
        let batch = builder.finish();
        let mut store = RowStore::default();
        let ids: Vec<u32> = (0..3).map(|i| store.push_copy(&batch.view(), i)).collect();
        drop(batch);
        let firsts: Vec<Option<i64>> = ids.iter().map(|&id| first(&store, id)).collect();
        assert_eq!(firsts, [Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn chunks_are_freed_as_their_rows_go_and_big_rows_fit() {
        let mut store = RowStore::default();
        let text = "y".repeat(3 * CHUNK_BYTES);
        let big = store.push_encoded(&[ValueRef::Str(&text)]);
        assert_eq!(
            store
                .row(big)
                .and_then(|r| r.get(0)?.as_str().map(str::len)),
            Some(text.len())
        );
        let ids: Vec<u32> = (0..100_000)
            .map(|i| store.push_encoded(&[ValueRef::I64(i)]))
            .collect();
        let full = chunk_bytes(&store);
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(first(&store, id), Some(i as i64));
            assert!(store.remove(id));
        }
        assert!(store.remove(big));
        assert!(store.is_empty());
        // Only the open chunk keeps its memory.
        let left = chunk_bytes(&store);
        assert!(
            left <= CHUNK_BYTES && full > 10 * CHUNK_BYTES,
            "{left} bytes left of {full} after every row went"
        );
        // FIFO use recycles the open chunk.
        for i in 0..10_000 {
            let id = store.push_encoded(&[ValueRef::I64(i)]);
            assert_eq!(first(&store, id), Some(i));
            assert!(store.remove(id));
        }
        assert_eq!(chunk_bytes(&store), left);
    }
}
