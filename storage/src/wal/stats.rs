//! Process-wide WAL figures for `/metrics`: append and `fdatasync` latency histograms, bytes
//! and appends. Each thread (a data core) counts into its own cache-line-aligned slot with
//! relaxed atomic adds, never a lock; [`snapshot`] sums the slots when a scrape asks.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, microseconds (`+Inf` follows).
pub const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];
const BUCKETS: usize = BUCKETS_US.len() + 1;
/// Slots; threads beyond this many share slots (still correct, only contended).
const SLOTS: usize = 64;

struct Hist {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Hist {
    const fn new() -> Hist {
        Hist {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let at = BUCKETS_US.partition_point(|bound| *bound < us);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

#[repr(align(128))]
struct Slot {
    append: Hist,
    sync: Hist,
    bytes: AtomicU64,
}

static SLOT_TABLE: [Slot; SLOTS] = [const {
    Slot {
        append: Hist::new(),
        sync: Hist::new(),
        bytes: AtomicU64::new(0),
    }
}; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MINE: Cell<Option<usize>> = const { Cell::new(None) };
}

fn slot() -> &'static Slot {
    let at = MINE.with(|mine| match mine.get() {
        Some(at) => at,
        None => {
            let at = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            mine.set(Some(at));
            at
        }
    });
    &SLOT_TABLE[at]
}

/// Counts one append of `bytes` that took `took` (until its durability policy was met).
pub(crate) fn appended(bytes: u64, took: Duration) {
    let slot = slot();
    slot.append.observe(took);
    slot.bytes.fetch_add(bytes, Ordering::Relaxed);
}

/// Counts one `fdatasync` that took `took`.
pub(crate) fn synced(took: Duration) {
    slot().sync.observe(took);
}

/// One latency histogram, summed over the slots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative): one per [`BUCKETS_US`] bound, then `+Inf`.
    pub buckets: Vec<u64>,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The process's WAL figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalStats {
    /// Append latency (until the policy is met: written, or synced).
    pub append: Histogram,
    /// `fdatasync` latency.
    pub sync: Histogram,
    /// Batch bytes appended.
    pub bytes: u64,
}

/// The figures now, summed over every thread's slot.
pub fn snapshot() -> WalStats {
    let sum = |hist: fn(&Slot) -> &Hist| {
        let mut out = Histogram {
            buckets: vec![0; BUCKETS],
            sum_seconds: 0.0,
        };
        for slot in &SLOT_TABLE {
            let h = hist(slot);
            for (total, bucket) in out.buckets.iter_mut().zip(&h.buckets) {
                *total += bucket.load(Ordering::Relaxed);
            }
            out.sum_seconds += h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        }
        out
    };
    WalStats {
        append: sum(|s| &s.append),
        sync: sum(|s| &s.sync),
        bytes: SLOT_TABLE
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_sum_over_threads() {
        let before = snapshot();
        appended(100, Duration::from_micros(40));
        std::thread::spawn(|| appended(50, Duration::from_millis(3)))
            .join()
            .unwrap();
        synced(Duration::from_secs(5));
        let now = snapshot();
        assert!(now.bytes >= before.bytes + 150);
        assert!(now.append.buckets[0] > before.append.buckets[0]);
        assert!(now.append.buckets[6] > before.append.buckets[6]);
        assert!(now.sync.buckets[BUCKETS - 1] > before.sync.buckets[BUCKETS - 1]);
        assert!(now.sync.sum_seconds >= before.sync.sum_seconds + 5.0);
    }
}
