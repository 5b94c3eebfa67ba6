//! Retries of connector requests: exponential backoff with jitter, bounded by a deadline
//! (ADR 0005). [`RetryState`] decides after each failed attempt whether to wait and try
//! again or to give up with an error naming the connector, the address and the cause.

use std::time::{Duration, Instant};

use crate::Error;

/// First wait between two attempts; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bounds of the time one attempt is given.
const ATTEMPT_MIN: Duration = Duration::from_millis(100);
const ATTEMPT_MAX: Duration = Duration::from_secs(5);

/// The retries of one request: since when it is tried, how often, and the next wait.
pub(crate) struct RetryState<'a> {
    /// The connector, as errors name it (``kafka sink `out` ``).
    what: &'a str,
    /// What could not be reached (`the brokers at 127.0.0.1:9092`).
    place: &'a str,
    deadline: Duration,
    started: Instant,
    backoff: Duration,
    tries: u32,
}

impl<'a> RetryState<'a> {
    pub(crate) fn new(what: &'a str, place: &'a str, deadline: Duration) -> Self {
        RetryState {
            what,
            place,
            deadline,
            started: Instant::now(),
            backoff: BACKOFF_FIRST,
            tries: 0,
        }
    }

    /// Counts an attempt and returns how long it may take (what is left of the deadline,
    /// between 100 ms and 5 s).
    pub(crate) fn attempt(&mut self) -> Duration {
        self.tries += 1;
        let left = self.deadline.saturating_sub(self.started.elapsed());
        left.clamp(ATTEMPT_MIN, ATTEMPT_MAX)
    }

    /// After a failed attempt: `Ok(wait)` to retry after `wait`, or the error to give up
    /// with once the deadline would pass. `error` is logged; `cause` ends the error.
    pub(crate) fn failed(
        &mut self,
        error: &dyn std::fmt::Display,
        cause: String,
    ) -> Result<Duration, Error> {
        let elapsed = self.started.elapsed();
        if elapsed + self.backoff >= self.deadline {
            return Err(Error::Connector(format!(
                "{}: cannot reach {} ({} attempt(s) in {:.1} s): {cause}",
                self.what,
                self.place,
                self.tries,
                elapsed.as_secs_f64()
            )));
        }
        tracing::warn!(connector = self.what, place = self.place, %error, "request failed; retrying");
        let wait = jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Ok(wait)
    }
}

/// `wait` scaled by a pseudo-random factor in [0.5, 1.5), so clients that failed together do
/// not retry together.
pub(crate) fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let factor = 0.5 + (x % 1000) as f64 / 1000.0;
    wait.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_until_the_deadline_then_names_the_place_and_cause() {
        let mut state = RetryState::new(
            "postgres sink `out`",
            "the server at h:1",
            Duration::from_millis(400),
        );
        let mut waits = 0;
        let error = loop {
            state.attempt();
            match state.failed(&"refused", "connection refused".into()) {
                Ok(wait) => {
                    assert!(wait <= BACKOFF_MAX.mul_f64(1.5));
                    std::thread::sleep(wait);
                    waits += 1;
                }
                Err(error) => break error.to_string(),
            }
        };
        assert!(waits >= 1, "{waits}");
        assert!(
            error.starts_with("postgres sink `out`: cannot reach the server at h:1 ("),
            "{error}"
        );
        assert!(error.ends_with("): connection refused"), "{error}");
    }
}
