//! Process-wide figures of the ingest sources for `/metrics`: connections open, accepted and
//! refused, batches acknowledged, credits granted and batch bytes accepted. Each thread (a
//! data core) counts into its own cache-line-aligned slot with relaxed atomic adds, never a
//! lock; [`snapshot`] sums the slots when a scrape asks.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots; threads beyond this many share slots (still correct, only contended).
const SLOTS: usize = 64;

#[repr(align(128))]
struct Slot {
    opened: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
    acks: AtomicU64,
    credits: AtomicU64,
    bytes: AtomicU64,
}

static SLOT_TABLE: [Slot; SLOTS] = [const {
    Slot {
        opened: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        credits: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    }
}; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MINE: Cell<Option<usize>> = const { Cell::new(None) };
}

fn add(field: fn(&Slot) -> &AtomicU64, n: u64) {
    let at = MINE.with(|mine| match mine.get() {
        Some(at) => at,
        None => {
            let at = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            mine.set(Some(at));
            at
        }
    });
    field(&SLOT_TABLE[at]).fetch_add(n, Ordering::Relaxed);
}

/// A connection was admitted.
pub(crate) fn opened() {
    add(|s| &s.opened, 1);
}

/// An admitted connection ended.
pub(crate) fn closed() {
    add(|s| &s.closed, 1);
}

/// A connection was refused (too many at once).
pub(crate) fn refused() {
    add(|s| &s.refused, 1);
}

/// A batch of `bytes` was appended and acknowledged.
pub(crate) fn acked(bytes: u64) {
    add(|s| &s.acks, 1);
    add(|s| &s.bytes, bytes);
}

/// `n` credits were granted to a producer.
pub(crate) fn granted(n: u64) {
    add(|s| &s.credits, n);
}

/// The ingest sources' figures, summed over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Connections admitted since the process started.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections refused (`max_connections`).
    pub refused: u64,
    /// Batches acknowledged.
    pub acks: u64,
    /// Credits granted.
    pub credits: u64,
    /// Batch bytes accepted.
    pub bytes: u64,
}

/// The figures now.
pub fn snapshot() -> IngestStats {
    let total = |field: fn(&Slot) -> &AtomicU64| -> u64 {
        SLOT_TABLE
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    };
    let accepted = total(|s| &s.opened);
    IngestStats {
        accepted,
        open: accepted.saturating_sub(total(|s| &s.closed)),
        refused: total(|s| &s.refused),
        acks: total(|s| &s.acks),
        credits: total(|s| &s.credits),
        bytes: total(|s| &s.bytes),
    }
}
