//! Rate limits on AdminService calls: a token bucket per connection (the caller's address and
//! port) and one per credential (a token or a role certificate), each refilled at `rate`
//! calls a second up to `burst`. A call over either gets RESOURCE_EXHAUSTED saying which and
//! when to retry; a caller's flood drains only its own buckets, so other tokens' calls go on.
//! Members (forwarded requests carry many callers' calls) are not limited.
//!
//! Failed authentications count too, per source address (any port, so reconnecting does not
//! help): each takes one from the address's failure bucket (same rate and burst), and while
//! that bucket is empty every call from the address is refused before its credentials are
//! checked, so a client guessing tokens is slowed to `rate` guesses a second.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Identity;

/// `admin-rate-limit` (calls a second; 0 turns the limits off) and `admin-rate-burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Calls a second each connection and each credential may make, sustained.
    pub rate: u32,
    /// Calls each may make at once after being idle.
    pub burst: u32,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            rate: 100,
            burst: 200,
        }
    }
}

/// Buckets kept at most; idle (full) ones are dropped first when there are more.
const BUCKETS_MAX: usize = 4096;

/// The buckets of one node.
#[derive(Debug)]
pub struct RateLimiter {
    limits: AdminLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Limits as `limits` says.
    pub fn new(limits: AdminLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call from `identity`'s buckets (over connection `peer`), or says which limit
    /// it is over and how long to wait.
    pub fn admit(&self, identity: &Identity, peer: Option<SocketAddr>) -> Result<(), String> {
        if self.limits.rate == 0 || matches!(identity, Identity::Node { .. }) {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(2);
        match identity {
            Identity::Token { .. } | Identity::Cert { .. } => {
                keys.push((identity.who(), "this credential"));
            }
            // Anonymous callers (no TLS) share no credential: only their connection counts.
            _ => {}
        }
        if let Some(peer) = peer {
            keys.push((format!("connection {peer}"), "this connection"));
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > BUCKETS_MAX {
            let full = f64::from(self.limits.burst);
            buckets.retain(|_, bucket| self.refill(*bucket, now).tokens < full);
        }
        let mut taken = Vec::with_capacity(keys.len());
        for (key, what) in &keys {
            let bucket = buckets.get(key).copied().unwrap_or(Bucket {
                tokens: f64::from(self.limits.burst),
                at: now,
            });
            let bucket = self.refill(bucket, now);
            if bucket.tokens < 1.0 {
                let wait = (1.0 - bucket.tokens) / f64::from(self.limits.rate);
                let wait = Duration::from_secs_f64(wait).as_millis().max(1);
                return Err(format!(
                    "rate limit: {what} is over {} admin calls a second (burst {}); retry in {wait} ms",
                    self.limits.rate, self.limits.burst
                ));
            }
            taken.push((key.clone(), bucket));
        }
        for (key, mut bucket) in taken {
            bucket.tokens -= 1.0;
            buckets.insert(key, bucket);
        }
        Ok(())
    }

    /// Refuses a caller from `peer`'s address while its failed authentications have used up
    /// their bucket, saying how long to wait.
    pub fn check_failures(&self, peer: Option<SocketAddr>) -> Result<(), String> {
        let Some(key) = self.failure_key(peer) else {
            return Ok(());
        };
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = buckets.get(&key) else {
            return Ok(());
        };
        let bucket = self.refill(*bucket, now);
        if bucket.tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / f64::from(self.limits.rate);
        let wait = Duration::from_secs_f64(wait).as_millis().max(1);
        Err(format!(
            "rate limit: too many failed authentications from this address (over {} a second, \
             burst {}); retry in {wait} ms",
            self.limits.rate, self.limits.burst
        ))
    }

    /// Counts one failed authentication from `peer`'s address.
    pub fn failed(&self, peer: Option<SocketAddr>) {
        let Some(key) = self.failure_key(peer) else {
            return;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.get(&key).copied().unwrap_or(Bucket {
            tokens: f64::from(self.limits.burst),
            at: now,
        });
        let mut bucket = self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        buckets.insert(key, bucket);
    }

    /// The failure bucket's key of `peer`'s address; none with the limits off.
    fn failure_key(&self, peer: Option<SocketAddr>) -> Option<String> {
        let peer = peer.filter(|_| self.limits.rate > 0)?;
        Some(format!("failures from {}", peer.ip()))
    }

    fn refill(&self, bucket: Bucket, now: Instant) -> Bucket {
        let earned = now.duration_since(bucket.at).as_secs_f64() * f64::from(self.limits.rate);
        Bucket {
            tokens: (bucket.tokens + earned).min(f64::from(self.limits.burst)),
            at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccessRole;

    fn token(id: &str) -> Identity {
        Identity::Token {
            id: id.to_string(),
            role: AccessRole::Viewer,
        }
    }

    #[test]
    fn a_flooding_token_is_limited_and_another_is_not() {
        let limiter = RateLimiter::new(AdminLimits { rate: 1, burst: 3 });
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        for _ in 0..3 {
            limiter.admit(&token("x"), Some(a)).unwrap();
        }
        let over = limiter.admit(&token("x"), Some(b)).unwrap_err();
        assert!(
            over.contains("this credential") && over.contains("retry in"),
            "{over}"
        );
        limiter.admit(&token("y"), Some(b)).unwrap();
        let node = Identity::Node { host: "n".into() };
        for _ in 0..10 {
            limiter.admit(&node, Some(a)).unwrap();
        }
        let off = RateLimiter::new(AdminLimits { rate: 0, burst: 0 });
        for _ in 0..10 {
            off.admit(&token("x"), Some(a)).unwrap();
        }
    }

    #[test]
    fn failed_authentications_slow_their_address_only() {
        let limiter = RateLimiter::new(AdminLimits { rate: 1, burst: 3 });
        let guesser: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        let reconnected: SocketAddr = "10.0.0.9:4001".parse().unwrap();
        let other: SocketAddr = "10.0.0.7:4000".parse().unwrap();
        for _ in 0..3 {
            limiter.check_failures(Some(guesser)).unwrap();
            limiter.failed(Some(guesser));
        }
        let over = limiter.check_failures(Some(reconnected)).unwrap_err();
        assert!(
            over.contains("failed authentications") && over.contains("retry in"),
            "{over}"
        );
        limiter.check_failures(Some(other)).unwrap();
        // Successful calls from elsewhere are not affected, nor counted as failures.
        limiter.admit(&token("y"), Some(other)).unwrap();
        let off = RateLimiter::new(AdminLimits { rate: 0, burst: 0 });
        for _ in 0..10 {
            off.failed(Some(guesser));
        }
        off.check_failures(Some(guesser)).unwrap();
    }
}
