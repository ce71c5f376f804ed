//! The wall clock behind record timestamps.
//!
//! A record without a timestamp gets the time it was sent, in milliseconds
//! since the epoch. `SystemTime::now` costs about 34 ns on the benchmark VM
//! (a vDSO `clock_gettime`), which profiled at 13 % of the producer's CPU per
//! 100-byte record. [`RecordClock`] reads the CPU's time-stamp counter
//! through `quanta` instead (about 10 ns) and adds it to a wall-clock anchor.
//! The anchor is re-read from `SystemTime` once a second, and at once if the
//! counter reads below the anchor (a counter reset on resume or migration),
//! so the counter's error against NTP-disciplined wall time, and any step of
//! the wall clock, last at most a second. Within that second the error is
//! `quanta`'s calibration error over a second, far under the timestamp's
//! 1 ms unit; at a re-anchor a timestamp may step back by as much, which
//! Kafka's batch format allows (deltas may be negative).
//!
//! It is a driver's clock: the producer reads it under its state lock (so
//! the anchor needs no atomics), and the sans-io accumulator and sender
//! still get `now` passed in.
#![allow(clippy::disallowed_methods)] // the driver's clock: the one place timestamps are read

use std::time::{SystemTime, UNIX_EPOCH};

/// How long one wall-clock anchor is trusted.
const REANCHOR_NANOS: u64 = 1_000_000_000;

/// Record timestamps at a counter read each, anchored to the wall clock.
#[derive(Debug)]
pub(crate) struct RecordClock {
    counter: quanta::Clock,
    /// The counter's raw value when `anchor_wall_nanos` was read.
    anchor_raw: u64,
    /// Nanoseconds since the epoch at the anchor.
    anchor_wall_nanos: u64,
}

/// Reads the counter and the wall clock together: the counter on both sides
/// of the wall-clock read, retried (a few times) when a pause between them
/// (the thread descheduled) would otherwise put every timestamp until the
/// next anchor ahead by the pause. The anchor is the counter's midpoint.
fn read_anchor(counter: &quanta::Clock) -> (u64, u64) {
    /// A wall-clock read takes well under this; a longer gap was a pause.
    const TIGHT_NANOS: u64 = 50_000;
    let read = || {
        let before = counter.raw();
        let wall = wall_nanos();
        let after = counter.raw();
        let gap = counter.delta_as_nanos(before, after);
        (gap, (before + after.saturating_sub(before) / 2, wall))
    };
    // Up to three tries; the tightest one when none is tight enough.
    let mut best = read();
    for _ in 1..3 {
        if best.0 <= TIGHT_NANOS {
            break;
        }
        let next = read();
        if next.0 < best.0 {
            best = next;
        }
    }
    best.1
}

fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RecordClock {
    /// A clock anchored now.
    pub(crate) fn new() -> Self {
        Self::with_counter(quanta::Clock::new())
    }

    fn with_counter(counter: quanta::Clock) -> Self {
        let (anchor_raw, anchor_wall_nanos) = read_anchor(&counter);
        Self {
            counter,
            anchor_raw,
            anchor_wall_nanos,
        }
    }

    /// Milliseconds since the epoch.
    pub(crate) fn now_ms(&mut self) -> i64 {
        let raw = self.counter.raw();
        // `delta_as_nanos` is 0 for a counter below the anchor: without the
        // first test, a counter that went back would freeze timestamps at
        // the anchor until it climbed past it again.
        let elapsed = self.counter.delta_as_nanos(self.anchor_raw, raw);
        if raw < self.anchor_raw || elapsed >= REANCHOR_NANOS {
            (self.anchor_raw, self.anchor_wall_nanos) = read_anchor(&self.counter);
            return to_ms(self.anchor_wall_nanos);
        }
        to_ms(self.anchor_wall_nanos.saturating_add(elapsed))
    }
}

fn to_ms(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn wall_ms() -> i64 {
        to_ms(wall_nanos())
    }

    #[test]
    fn it_reads_the_wall_clock_to_the_millisecond() {
        let mut clock = RecordClock::new();
        for _ in 0..3 {
            let before = wall_ms();
            let t = clock.now_ms();
            let after = wall_ms();
            // One millisecond of slack either side: the counter and the wall
            // clock are two reads, each truncated to whole milliseconds.
            assert!(
                before - 1 <= t && t <= after + 1,
                "{before} <= {t} <= {after}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_counter_adds_to_the_anchor_and_a_second_re_anchors() {
        let (counter, mock) = quanta::Clock::mock();
        let mut clock = RecordClock::with_counter(counter);
        let anchor = clock.now_ms();
        mock.increment(Duration::from_millis(250));
        assert_eq!(clock.now_ms(), anchor + 250, "counter time past the anchor");
        // A whole mocked hour passes on the counter, but not on the wall
        // clock: the reading past a second is the wall clock's, not the
        // counter's, so a drifting or stopped counter cannot carry a
        // timestamp away.
        mock.increment(Duration::from_secs(3600));
        let t = clock.now_ms();
        assert!(
            (t - wall_ms()).abs() <= 1_000,
            "re-anchored: {t} vs {}",
            wall_ms()
        );
        mock.increment(Duration::from_millis(10));
        assert_eq!(clock.now_ms(), t + 10, "then counts from the new anchor");
    }

    #[test]
    fn a_counter_that_goes_back_re_anchors_instead_of_freezing() {
        let (counter, mock) = quanta::Clock::mock();
        mock.increment(Duration::from_secs(7200));
        let mut clock = RecordClock::with_counter(counter);
        // The counter resets (a resume, a migration) while the wall clock
        // goes on: the timestamp must follow the wall clock, and then count
        // from there, not stay at the old anchor for two hours.
        std::thread::sleep(Duration::from_millis(30));
        mock.decrement(Duration::from_secs(3600));
        let t = clock.now_ms();
        assert!(
            (t - wall_ms()).abs() <= 1,
            "re-anchored: {t} vs {}",
            wall_ms()
        );
        mock.increment(Duration::from_millis(40));
        assert_eq!(clock.now_ms(), t + 40, "counting from the new anchor");
    }
}
