//! Per-broker request counters and latency histograms, read as snapshots.
//! Recording is a few relaxed atomic adds: no locks, no formatting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency bucket upper bounds in microseconds (the last bucket is open).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    30_000_000,
    u64::MAX,
];

/// Live counters for one broker.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    requests: AtomicU64,
    errors: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    throttled: AtomicU64,
    throttle_ms: AtomicU64,
    latency: [AtomicU64; 16],
    latency_sum_us: AtomicU64,
    connections_opened: AtomicU64,
    reauthentications: AtomicU64,
}

impl BrokerMetrics {
    pub(crate) fn record(&self, _api_key: i16, took: Duration, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(15);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn connected(&self) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reauthenticated(&self) {
        self.reauthentications.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn throttled(&self, ms: i32) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.throttle_ms
            .fetch_add(ms.max(0) as u64, Ordering::Relaxed);
    }

    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> BrokerMetricsSnapshot {
        let mut latency = [0u64; 16];
        for (out, b) in latency.iter_mut().zip(&self.latency) {
            *out = b.load(Ordering::Relaxed);
        }
        BrokerMetricsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            throttled_responses: self.throttled.load(Ordering::Relaxed),
            throttle_time: Duration::from_millis(self.throttle_ms.load(Ordering::Relaxed)),
            latency_histogram: latency,
            latency_sum: Duration::from_micros(self.latency_sum_us.load(Ordering::Relaxed)),
            connections_opened: self.connections_opened.load(Ordering::Relaxed),
            reauthentications: self.reauthentications.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one broker at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerMetricsSnapshot {
    /// Requests that got a response or failed.
    pub requests: u64,
    /// Of those, failed ones.
    pub errors: u64,
    /// Request bytes written.
    pub bytes_sent: u64,
    /// Response bytes read.
    pub bytes_received: u64,
    /// Responses that asked the client to back off (KIP-219).
    pub throttled_responses: u64,
    /// Total throttle time asked for.
    pub throttle_time: Duration,
    /// Request counts per [`LATENCY_BUCKETS_US`] bucket.
    pub latency_histogram: [u64; 16],
    /// Sum of all latencies.
    pub latency_sum: Duration,
    /// Connections made to this broker (after their handshake).
    pub connections_opened: u64,
    /// In-band re-authentications of live connections (KIP-368).
    pub reauthentications: u64,
}

impl BrokerMetricsSnapshot {
    /// Mean latency.
    pub fn mean_latency(&self) -> Duration {
        if self.requests == 0 {
            Duration::ZERO
        } else {
            self.latency_sum / self.requests as u32
        }
    }
}

/// Snapshots of every broker the client has talked to, by node id (-1 for
/// bootstrap addresses).
pub type ClientMetrics = BTreeMap<i32, BrokerMetricsSnapshot>;
