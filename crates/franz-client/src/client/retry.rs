//! Retrying a retriable failure within a deadline, with exponential
//! backoff, refreshing routing in between.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::ClientError;

use super::*;

/// `base * 2^(attempt-1)`, capped at `max`, with ±20% jitter.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let mut seed = [0u8; 2];
    let _ = getrandom::fill(&mut seed);
    let jitter = f64::from(u16::from_le_bytes(seed)) / f64::from(u16::MAX); // 0..1
    exp.mul_f64(0.8 + 0.4 * jitter).min(max.max(base))
}

impl Client {
    /// Runs `op` until it succeeds, fails with a non-retriable error, or
    /// `deadline` passes. Between attempts it backs off (exponentially, with
    /// jitter) and refreshes metadata when the error says routing is stale.
    ///
    /// # Cancel safety
    /// Dropping it drops the attempt in progress, with that attempt's own cancel behaviour,
    /// and stops retrying. `retry` itself drops an attempt at its deadline, so the
    /// operations it runs must be cancel safe.
    pub async fn retry<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        mut op: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(remaining, op()).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Timeout {
                    what: what.to_string(),
                    after: remaining,
                }),
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retriable() => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            let wait = backoff(
                self.inner.config.retry_backoff,
                self.inner.config.retry_backoff_max,
                attempt,
            );
            if Instant::now() + wait >= deadline {
                tracing::debug!(what, attempt, error = %err, "giving up: deadline");
                return Err(err);
            }
            tracing::debug!(what, attempt, error = %err, backoff_ms = wait.as_millis() as u64, "retrying");
            if err.invalidates_metadata() {
                // Best effort: a failed refresh is retried on the next turn.
                let _ = self.refresh_metadata_for(&[]).await;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// KIP-580 for metadata refreshes a caller keeps asking for (a partition
/// without a leader, say): the first goes at once, each next one only after
/// an exponentially growing, jittered backoff (`retry_backoff` doubling up
/// to `retry_backoff_max`), and [`reset`](Self::reset) starts over once
/// routing is fine. Sans-io: the caller passes `now`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use franz_client::RefreshBackoff;
/// let mut b = RefreshBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let t0 = Instant::now();
/// assert!(b.try_refresh(t0));
/// assert!(!b.try_refresh(t0 + Duration::from_millis(10)));
/// assert!(b.try_refresh(t0 + Duration::from_millis(200)));
/// ```
#[derive(Debug, Clone)]
pub struct RefreshBackoff {
    base: Duration,
    max: Duration,
    attempts: u32,
    next: Option<Instant>,
}

impl RefreshBackoff {
    /// Backoff from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: 0,
            next: None,
        }
    }

    /// Whether a refresh may be sent at `now`; if so it counts, and the
    /// next is allowed only after the backoff.
    pub fn try_refresh(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        self.attempts = self.attempts.saturating_add(1);
        self.next = Some(now + backoff(self.base, self.max, self.attempts));
        true
    }

    /// When the next refresh is allowed, once one has been sent.
    pub fn next_allowed(&self) -> Option<Instant> {
        self.next
    }

    /// Routing is fine again: the next refresh may go at once.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_back_off_exponentially_up_to_the_max_and_reset() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut b = RefreshBackoff::new(base, max);
        let mut now = Instant::now();
        assert!(b.try_refresh(now));
        let mut gaps = Vec::new();
        for _ in 0..8 {
            let next = b.next_allowed().unwrap();
            assert!(!b.try_refresh(next - Duration::from_millis(1)));
            gaps.push(next - now);
            now = next;
            assert!(b.try_refresh(now));
        }
        // 100, 200, 400, 800 ms (±20%), then capped at 1 s.
        for (gap, nominal) in gaps.iter().zip([100u64, 200, 400, 800, 1000, 1000]) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *gap >= nominal.mul_f64(0.79) && *gap <= nominal.mul_f64(1.21).min(max),
                "{gaps:?}"
            );
        }
        b.reset();
        assert!(b.try_refresh(now));
    }
}
