//! Rate limits and the per-peer connection cap of an ingest port (`max_batches_per_sec`,
//! `max_bytes_per_sec`, `max_connections_per_peer`; docs/protocol.md).
//!
//! Rates are token buckets holding one second of the rate: a connection may send a burst of
//! one second's worth, then the rate. Each connection has its own bucket, and the connections
//! of one producer token to the source share another (on this node, across its cores). A batch
//! over either limit is refused with a retryable `Overloaded` Error frame that says which limit
//! and when to retry; it is not appended, and the batches acked before it stay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wire_core::frontend::spec::IngestLimits;
use wire_net::ingest::{ErrorCode, ErrorFrame};

/// Batches and bytes a second, refilled continuously.
#[derive(Debug)]
pub(super) struct Bucket {
    batches_per_sec: u64,
    bytes_per_sec: u64,
    batches: f64,
    bytes: f64,
    at: Instant,
}

/// Which limit a batch is over, and how long until it fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Over {
    key: &'static str,
    limit: u64,
    retry_in: Duration,
}

impl Bucket {
    /// A full bucket for the limits' rates (`None` when neither rate is limited).
    pub(super) fn new(limits: &IngestLimits, now: Instant) -> Option<Bucket> {
        let (batches_per_sec, bytes_per_sec) =
            (limits.max_batches_per_sec, limits.max_bytes_per_sec);
        (batches_per_sec > 0 || bytes_per_sec > 0).then_some(Bucket {
            batches_per_sec,
            bytes_per_sec,
            batches: batches_per_sec as f64,
            bytes: bytes_per_sec as f64,
            at: now,
        })
    }

    /// Takes one batch of `bytes`, or says which limit it is over. A full bucket lets any one
    /// batch through (a batch larger than a second's bytes would otherwise never pass) and
    /// goes into debt.
    pub(super) fn take(&mut self, bytes: u64, now: Instant) -> Result<(), Over> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let refill = |level: f64, rate: u64| (level + elapsed * rate as f64).min(rate as f64);
        self.batches = refill(self.batches, self.batches_per_sec);
        self.bytes = refill(self.bytes, self.bytes_per_sec);
        let short = |level: f64, rate: u64, need: f64| {
            (rate > 0 && level < need && level < rate as f64).then(|| {
                Duration::from_secs_f64(((need.min(rate as f64) - level) / rate as f64).max(0.001))
            })
        };
        if let Some(retry_in) = short(self.batches, self.batches_per_sec, 1.0) {
            let (key, limit) = ("max_batches_per_sec", self.batches_per_sec);
            return Err(Over {
                key,
                limit,
                retry_in,
            });
        }
        if let Some(retry_in) = short(self.bytes, self.bytes_per_sec, bytes as f64) {
            let (key, limit) = ("max_bytes_per_sec", self.bytes_per_sec);
            return Err(Over {
                key,
                limit,
                retry_in,
            });
        }
        self.batches -= 1.0;
        self.bytes -= bytes as f64;
        Ok(())
    }
}

impl Over {
    /// The Error frame for batch `seq` of source `source`.
    pub(super) fn refusal(&self, source: &str, seq: u64, shared: bool) -> ErrorFrame {
        let whose = if shared {
            "per producer token"
        } else {
            "per connection"
        };
        let message = format!(
            "rate limit: source `{source}` takes at most {} {} a second {whose} ({}); batch {seq} was not appended: retry in {} ms",
            self.limit,
            if self.key == "max_batches_per_sec" { "batches" } else { "bytes" },
            self.key,
            self.retry_in.as_millis().max(1)
        );
        ErrorFrame::new(ErrorCode::Overloaded, seq, message)
    }
}

/// What a port shares between its connections for the limits: the buckets of producer tokens
/// and the connections open per peer address. Lives in the port; used from every core.
#[derive(Debug, Default)]
pub(super) struct Shared {
    tokens: Mutex<HashMap<String, TokenEntry>>,
    peers: Mutex<HashMap<IpAddr, u32>>,
}

/// The connections holding a token's bucket, and the bucket.
type TokenEntry = (usize, Arc<Mutex<Bucket>>);

/// A connection's share of a token's bucket; let go when dropped.
pub(super) struct TokenShare<'a> {
    shared: &'a Shared,
    token: String,
    pub(super) bucket: Arc<Mutex<Bucket>>,
}

impl Shared {
    /// Counts a connection from `ip`, unless `max` are open from it already (`max` 0: none).
    pub(super) fn admit_peer(&self, ip: IpAddr, max: u32) -> bool {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let open = peers.entry(ip).or_insert(0);
        if max > 0 && *open >= max {
            return false;
        }
        *open += 1;
        true
    }

    /// Uncounts a connection from `ip`.
    pub(super) fn release_peer(&self, ip: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = peers.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                peers.remove(&ip);
            }
        }
    }

    /// The bucket of `token`'s connections (made full for the first one).
    pub(super) fn token<'a>(
        &'a self,
        token: &str,
        limits: &IngestLimits,
    ) -> Option<TokenShare<'a>> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match tokens.get_mut(token) {
            Some(entry) => entry,
            None => {
                let bucket = Bucket::new(limits, Instant::now())?;
                let fresh = (0, Arc::new(Mutex::new(bucket)));
                tokens.entry(token.to_string()).or_insert(fresh)
            }
        };
        entry.0 += 1;
        Some(TokenShare {
            shared: self,
            token: token.to_string(),
            bucket: entry.1.clone(),
        })
    }
}

impl Drop for TokenShare<'_> {
    fn drop(&mut self) {
        let mut tokens = self.shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = tokens.get_mut(&self.token) {
            entry.0 -= 1;
            if entry.0 == 0 {
                tokens.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(batches: u64, bytes: u64) -> IngestLimits {
        IngestLimits {
            max_batches_per_sec: batches,
            max_bytes_per_sec: bytes,
            ..IngestLimits::default()
        }
    }

    /// A second's burst passes, the next batch waits for the refill, and the wait it is told
    /// is the time until one batch fits.
    #[test]
    fn a_bucket_passes_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(&limits(10, 0), t0).unwrap();
        for _ in 0..10 {
            bucket.take(100, t0).unwrap();
        }
        let over = bucket.take(100, t0).unwrap_err();
        assert_eq!(over.key, "max_batches_per_sec");
        assert_eq!(over.retry_in, Duration::from_millis(100));
        assert!(bucket.take(100, t0 + Duration::from_millis(50)).is_err());
        bucket.take(100, t0 + Duration::from_millis(160)).unwrap();
        assert!(Bucket::new(&limits(0, 0), t0).is_none());
    }

    /// Bytes are limited too; a batch larger than a second's bytes passes a full bucket only.
    #[test]
    fn a_large_batch_passes_a_full_bucket_and_leaves_a_debt() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(&limits(0, 1000), t0).unwrap();
        bucket.take(5000, t0).unwrap();
        let over = bucket.take(10, t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(over.key, "max_bytes_per_sec");
        bucket.take(10, t0 + Duration::from_secs(5)).unwrap();
        let frame = over.refusal("rows", 7, false);
        assert_eq!(frame.code, ErrorCode::Overloaded);
        assert!(
            frame.message.contains("max_bytes_per_sec"),
            "{}",
            frame.message
        );
    }

    /// Peers are counted up to the cap and uncounted on release; tokens share one bucket while
    /// a connection holds it.
    #[test]
    fn peers_are_capped_and_token_buckets_shared() {
        let shared = Shared::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(shared.admit_peer(ip, 2) && shared.admit_peer(ip, 2));
        assert!(!shared.admit_peer(ip, 2));
        shared.release_peer(ip);
        assert!(shared.admit_peer(ip, 2));
        let limits = limits(1, 0);
        let a = shared.token("t", &limits).unwrap();
        let b = shared.token("t", &limits).unwrap();
        assert!(Arc::ptr_eq(&a.bucket, &b.bucket));
        a.bucket.lock().unwrap().take(1, Instant::now()).unwrap();
        assert!(b.bucket.lock().unwrap().take(1, Instant::now()).is_err());
        drop((a, b));
        assert!(shared.tokens.lock().unwrap().is_empty());
    }
}
