//! A history checker for fault tests, after Jepsen's Kafka checker, cut to
//! what franz promises.
//!
//! A test records what its producers and consumers saw while faults were
//! injected, then asks [`History::check`] what went wrong. Producers write
//! records that carry `(writer, seq)` (in the value, say) and record each
//! send's fate: acknowledged at an offset, failed for sure (never written),
//! or *indeterminate* (it timed out after it may have been sent: it may be
//! in the log once, and its absence is no loss). Consumers record every
//! record handed to the application and every offset commit.
//!
//! The [`Report`] lists, each with the offsets involved:
//! - **lost**: acknowledged records no consumer ever saw;
//! - **duplicated**: one `(writer, seq)` at two offsets of the log;
//! - **reordered**: two records of one writer and key whose log order is
//!   not their send order;
//! - **committed past unseen**: a commit of `next_offset` on a partition
//!   while a record below it, known to be in the log, was never handed to
//!   the application: what a consumer that commits before it processes
//!   loses.
//!
//! Re-deliveries of one offset (at-least-once consumption around a
//! rebalance or a restart) are counted, not reported: they are allowed.
//!
//! Nothing here knows franz's types: partitions are `(topic, partition)`
//! pairs of strings and integers, so a test of any crate can use it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// A topic-partition, as the checker sees it.
pub type Partition = (String, i32);

/// A record's identity: the writer that produced it and its sequence number
/// within that writer.
pub type RecordId = (u32, u64);

/// A record's place in the log, with its sequence: `(seq, partition, offset)`.
pub type Placed = (u64, Partition, i64);

/// What happened to one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged: the broker wrote it at this offset.
    Acked {
        /// Where.
        partition: Partition,
        /// At which offset.
        offset: i64,
    },
    /// Failed before it could have been written (refused, never sent).
    Failed,
    /// Timed out, or failed after it may have been sent: it may be in the
    /// log (once), or not.
    Indeterminate,
}

/// Everything a fault test saw, in the order it saw it.
#[derive(Debug, Clone, Default)]
pub struct History {
    sends: BTreeMap<RecordId, Send>,
    deliveries: Vec<Delivery>,
    commits: Vec<Commit>,
}

#[derive(Debug, Clone)]
struct Send {
    key: Option<String>,
    outcome: Option<SendOutcome>,
}

/// One record handed to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivery {
    consumer: String,
    partition: Partition,
    offset: i64,
    record: RecordId,
}

/// One successful offset commit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Commit {
    consumer: String,
    partition: Partition,
    next_offset: i64,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A producer sends `record` with `key` (its fate follows with
    /// [`sent`](Self::sent)).
    pub fn send(&mut self, record: RecordId, key: Option<&str>) {
        self.sends.insert(
            record,
            Send {
                key: key.map(str::to_string),
                outcome: None,
            },
        );
    }

    /// The fate of a send. A send never given a fate counts as
    /// indeterminate.
    pub fn sent(&mut self, record: RecordId, outcome: SendOutcome) {
        self.sends
            .entry(record)
            .or_insert(Send {
                key: None,
                outcome: None,
            })
            .outcome = Some(outcome);
    }

    /// A consumer handed `record`, read at `offset` of `partition`, to the
    /// application.
    pub fn delivered(
        &mut self,
        consumer: &str,
        partition: Partition,
        offset: i64,
        record: RecordId,
    ) {
        self.deliveries.push(Delivery {
            consumer: consumer.to_string(),
            partition,
            offset,
            record,
        });
    }

    /// A consumer's commit of `next_offset` for `partition` succeeded.
    pub fn committed(&mut self, consumer: &str, partition: Partition, next_offset: i64) {
        self.commits.push(Commit {
            consumer: consumer.to_string(),
            partition,
            next_offset,
        });
    }

    /// Checks the history.
    pub fn check(&self) -> Report {
        let mut report = Report {
            sent: self.sends.len(),
            ..Report::default()
        };
        // Where each record is in the log, as the consumers saw it.
        let mut seen_at: BTreeMap<RecordId, BTreeSet<(Partition, i64)>> = BTreeMap::new();
        let mut handed: HashMap<Partition, BTreeSet<i64>> = HashMap::new();
        let mut times: BTreeMap<(Partition, i64), usize> = BTreeMap::new();
        for d in &self.deliveries {
            seen_at
                .entry(d.record)
                .or_default()
                .insert((d.partition.clone(), d.offset));
            handed
                .entry(d.partition.clone())
                .or_default()
                .insert(d.offset);
            *times.entry((d.partition.clone(), d.offset)).or_default() += 1;
        }
        report.delivered = times.len();
        report.redelivered = times.values().map(|n| n - 1).sum();

        // The log as far as anyone knows it: what was read, and what was
        // acknowledged.
        let mut log: HashMap<Partition, BTreeMap<i64, RecordId>> = HashMap::new();
        for (record, places) in &seen_at {
            for (p, o) in places {
                log.entry(p.clone()).or_default().insert(*o, *record);
            }
        }
        for (record, send) in &self.sends {
            match &send.outcome {
                Some(SendOutcome::Acked { partition, offset }) => {
                    report.acked += 1;
                    log.entry(partition.clone())
                        .or_default()
                        .entry(*offset)
                        .or_insert(*record);
                    if !seen_at.contains_key(record) {
                        report.lost.push(Lost {
                            record: *record,
                            partition: partition.clone(),
                            offset: *offset,
                        });
                    }
                }
                Some(SendOutcome::Failed) => {
                    report.failed += 1;
                    if let Some(places) = seen_at.get(record) {
                        // A send reported failed that is in the log: the
                        // producer's answer was wrong.
                        report
                            .failed_but_written
                            .push((*record, places.iter().cloned().collect()));
                    }
                }
                Some(SendOutcome::Indeterminate) | None => report.indeterminate += 1,
            }
        }
        for (record, places) in &seen_at {
            if places.len() > 1 {
                report.duplicated.push(Duplicate {
                    record: *record,
                    at: places.iter().cloned().collect(),
                });
            }
        }

        // Within a writer and key, log order must be send order.
        let mut by_key: BTreeMap<(u32, String), Vec<Placed>> = BTreeMap::new();
        for (record, places) in &seen_at {
            let Some(key) = self.sends.get(record).and_then(|s| s.key.clone()) else {
                continue;
            };
            if let Some((p, o)) = places.iter().next() {
                by_key
                    .entry((record.0, key))
                    .or_default()
                    .push((record.1, p.clone(), *o));
            }
        }
        for ((writer, key), mut records) in by_key {
            records.sort_by_key(|(seq, _, _)| *seq);
            for pair in records.windows(2) {
                let ((s1, p1, o1), (s2, p2, o2)) = (&pair[0], &pair[1]);
                if p1 == p2 && o1 > o2 {
                    report.reordered.push(Reordered {
                        writer,
                        key: key.clone(),
                        earlier: (*s1, p1.clone(), *o1),
                        later: (*s2, p2.clone(), *o2),
                    });
                }
            }
        }

        // A commit must not pass a record in the log that nobody handled.
        for c in &self.commits {
            let Some(records) = log.get(&c.partition) else {
                continue;
            };
            let seen = handed.get(&c.partition);
            if let Some((offset, record)) = records
                .range(..c.next_offset)
                .find(|(o, _)| !seen.is_some_and(|s| s.contains(o)))
            {
                report.committed_past_unseen.push(CommittedPastUnseen {
                    consumer: c.consumer.clone(),
                    partition: c.partition.clone(),
                    next_offset: c.next_offset,
                    unseen_offset: *offset,
                    record: *record,
                });
            }
        }
        report
    }
}

/// An acknowledged record no consumer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The record.
    pub record: RecordId,
    /// Where it was acknowledged.
    pub partition: Partition,
    /// At which offset.
    pub offset: i64,
}

/// One record at more than one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The record.
    pub record: RecordId,
    /// Every place it was read from.
    pub at: Vec<(Partition, i64)>,
}

/// Two records of one writer and key in the wrong order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reordered {
    /// The writer.
    pub writer: u32,
    /// The key.
    pub key: String,
    /// The record sent first: `(seq, partition, offset)`.
    pub earlier: Placed,
    /// The record sent after it, found before it in the log.
    pub later: Placed,
}

/// A commit past a record in the log that no consumer handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedPastUnseen {
    /// Who committed.
    pub consumer: String,
    /// Where.
    pub partition: Partition,
    /// The committed offset.
    pub next_offset: i64,
    /// The first offset below it never handed out.
    pub unseen_offset: i64,
    /// The record there.
    pub record: RecordId,
}

/// What [`History::check`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sends recorded.
    pub sent: usize,
    /// Sends acknowledged.
    pub acked: usize,
    /// Sends that failed for sure.
    pub failed: usize,
    /// Sends of unknown fate (timed out after they may have been sent).
    pub indeterminate: usize,
    /// Distinct offsets handed to the application.
    pub delivered: usize,
    /// Extra hand-outs of an offset already handed out (allowed).
    pub redelivered: usize,
    /// Acknowledged records never seen.
    pub lost: Vec<Lost>,
    /// Records at more than one offset.
    pub duplicated: Vec<Duplicate>,
    /// Order violations within a writer and key.
    pub reordered: Vec<Reordered>,
    /// Commits past records never handed out.
    pub committed_past_unseen: Vec<CommittedPastUnseen>,
    /// Sends reported failed that are in the log anyway.
    pub failed_but_written: Vec<(RecordId, Vec<(Partition, i64)>)>,
}

impl Report {
    /// Whether nothing was lost, duplicated, reordered or committed past.
    pub fn is_ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.reordered.is_empty()
            && self.committed_past_unseen.is_empty()
            && self.failed_but_written.is_empty()
    }

    /// The chaos report's row for this run, one format for every scenario:
    /// `chaos | scenario | records | faults | lost N | duplicated N |
    /// reordered N | indeterminate N | redelivered N | T s`.
    pub fn chaos_row(
        &self,
        scenario: &str,
        records: &str,
        faults: &str,
        took: std::time::Duration,
    ) -> String {
        format!(
            "chaos | {scenario} | {records} | {faults} | lost {} | duplicated {} | reordered {} | indeterminate {} | redelivered {} | {:.0} s",
            self.lost.len(),
            self.duplicated.len(),
            self.reordered.len(),
            self.indeterminate,
            self.redelivered,
            took.as_secs_f64()
        )
    }
}

/// A summary line, then the first few findings of each kind with their
/// offsets: the text a fault test prints and fails with.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} (acked {}, failed {}, indeterminate {}); delivered {} offsets (+{} redelivered); lost {}, duplicated {}, reordered {}, committed past unseen {}, failed but written {}",
            self.sent,
            self.acked,
            self.failed,
            self.indeterminate,
            self.delivered,
            self.redelivered,
            self.lost.len(),
            self.duplicated.len(),
            self.reordered.len(),
            self.committed_past_unseen.len(),
            self.failed_but_written.len(),
        )?;
        const SHOWN: usize = 5;
        for l in self.lost.iter().take(SHOWN) {
            writeln!(
                f,
                "  lost {:?}: acked at {}-{}@{}",
                l.record, l.partition.0, l.partition.1, l.offset
            )?;
        }
        for d in self.duplicated.iter().take(SHOWN) {
            writeln!(f, "  duplicated {:?} at {:?}", d.record, d.at)?;
        }
        for r in self.reordered.iter().take(SHOWN) {
            writeln!(
                f,
                "  reordered writer {} key {}: seq {} at {:?} after seq {} at {:?}",
                r.writer,
                r.key,
                r.earlier.0,
                (&r.earlier.1, r.earlier.2),
                r.later.0,
                (&r.later.1, r.later.2)
            )?;
        }
        for c in self.committed_past_unseen.iter().take(SHOWN) {
            writeln!(
                f,
                "  {} committed {}-{} to {} past offset {} ({:?}), never handed out",
                c.consumer, c.partition.0, c.partition.1, c.next_offset, c.unseen_offset, c.record
            )?;
        }
        for (r, at) in self.failed_but_written.iter().take(SHOWN) {
            writeln!(f, "  {r:?} reported failed but read at {at:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    /// Writer 1 sends seq 0..n with key "k" to partition 0, all acked at
    /// offset = seq, and consumer "c" reads them all and commits n.
    fn clean(n: u64) -> History {
        let mut h = History::new();
        for seq in 0..n {
            h.send((1, seq), Some("k"));
            h.sent(
                (1, seq),
                SendOutcome::Acked {
                    partition: p(0),
                    offset: seq as i64,
                },
            );
            h.delivered("c", p(0), seq as i64, (1, seq));
        }
        h.committed("c", p(0), n as i64);
        h
    }

    #[test]
    fn a_clean_history_passes() {
        let r = clean(10).check();
        assert!(r.is_ok(), "{r}");
        assert_eq!(
            (r.sent, r.acked, r.delivered, r.redelivered),
            (10, 10, 10, 0)
        );
    }

    #[test]
    fn redelivery_of_one_offset_is_allowed_and_counted() {
        let mut h = clean(5);
        h.delivered("c2", p(0), 3, (1, 3));
        let r = h.check();
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.redelivered, 1);
    }

    #[test]
    fn an_acknowledged_record_never_read_is_lost() {
        let mut h = History::new();
        h.send((1, 0), Some("k"));
        h.sent(
            (1, 0),
            SendOutcome::Acked {
                partition: p(0),
                offset: 7,
            },
        );
        let r = h.check();
        assert_eq!(
            r.lost,
            vec![Lost {
                record: (1, 0),
                partition: p(0),
                offset: 7
            }]
        );
        assert!(!r.is_ok());
    }

    #[test]
    fn an_indeterminate_send_may_be_absent_or_present_once() {
        let mut h = clean(2);
        h.send((1, 2), Some("k"));
        h.sent((1, 2), SendOutcome::Indeterminate);
        h.send((1, 3), Some("k"));
        h.sent((1, 3), SendOutcome::Indeterminate);
        h.delivered("c", p(0), 2, (1, 3));
        let r = h.check();
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.indeterminate, 2);
    }

    #[test]
    fn one_record_at_two_offsets_is_a_duplicate() {
        let mut h = clean(3);
        // Written again (a retry without idempotence) at offset 3.
        h.delivered("c", p(0), 3, (1, 1));
        let r = h.check();
        assert_eq!(r.duplicated.len(), 1, "{r}");
        assert_eq!(r.duplicated[0].at, vec![(p(0), 1), (p(0), 3)]);
    }

    #[test]
    fn a_later_send_before_an_earlier_one_in_the_log_is_reordered() {
        let mut h = History::new();
        for (seq, offset) in [(0, 1), (1, 0)] {
            h.send((1, seq), Some("k"));
            h.sent(
                (1, seq),
                SendOutcome::Acked {
                    partition: p(0),
                    offset,
                },
            );
            h.delivered("c", p(0), offset, (1, seq));
        }
        let r = h.check();
        assert_eq!(r.reordered.len(), 1, "{r}");
        // Other keys and other writers are not ordered with each other.
        let mut h = History::new();
        for (w, seq, key, offset) in [(1, 0, "a", 1), (1, 1, "b", 0), (2, 0, "a", 2)] {
            h.send((w, seq), Some(key));
            h.sent(
                (w, seq),
                SendOutcome::Acked {
                    partition: p(0),
                    offset,
                },
            );
            h.delivered("c", p(0), offset, (w, seq));
        }
        assert!(h.check().is_ok());
    }

    /// The plant the reliability issue asks for: a commit of position + 1
    /// skips the record at the position, and the checker says so.
    #[test]
    fn a_commit_of_position_plus_one_is_caught() {
        let mut h = History::new();
        for seq in 0..4u64 {
            h.send((1, seq), Some("k"));
            h.sent(
                (1, seq),
                SendOutcome::Acked {
                    partition: p(0),
                    offset: seq as i64,
                },
            );
        }
        for seq in 0..2u64 {
            h.delivered("c", p(0), seq as i64, (1, seq));
        }
        // Position is 2; the planted commit says 3.
        h.committed("c", p(0), 3);
        let r = h.check();
        assert_eq!(
            r.committed_past_unseen,
            vec![CommittedPastUnseen {
                consumer: "c".into(),
                partition: p(0),
                next_offset: 3,
                unseen_offset: 2,
                record: (1, 2),
            }],
            "{r}"
        );
        // The acked record at 2 was never read either: lost as well.
        assert_eq!(r.lost.len(), 2, "{r}");
    }

    #[test]
    fn a_send_reported_failed_that_is_in_the_log_is_reported() {
        let mut h = clean(1);
        h.send((1, 1), None);
        h.sent((1, 1), SendOutcome::Failed);
        h.delivered("c", p(0), 1, (1, 1));
        let r = h.check();
        assert_eq!(r.failed_but_written.len(), 1, "{r}");
    }
}
