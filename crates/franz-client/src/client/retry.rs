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
