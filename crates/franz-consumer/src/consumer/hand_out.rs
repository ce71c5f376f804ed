//! Handing records out: the per-poll record and byte budget, control records and aborted transactions skipped, positions advanced past what was returned.

use super::*;

impl Consumer {
    /// Records from the fetched data, round-robin over partitions, within
    /// the poll's budgets. Decodes batches only as the budget admits them.
    pub(super) fn hand_out(&mut self, max_records: usize) -> Vec<ConsumerRecord> {
        let mut budget = Budget {
            records: max_records,
            bytes: self.config.max_poll_bytes,
            bytes_used: 0,
        };
        let mut out = Vec::new();
        let start = self.cursor.take();
        let (after, before) = match &start {
            Some(tp) => (
                (Bound::Included(tp.clone()), Bound::Unbounded),
                (Bound::Unbounded, Bound::Excluded(tp.clone())),
            ),
            None => (
                (Bound::Unbounded, Bound::Unbounded),
                (Bound::Unbounded, Bound::Unbounded),
            ),
        };
        let mut stopped_at = None;
        let passes = if start.is_some() { 2 } else { 1 };
        'passes: for pass in 0..passes {
            let range = if pass == 0 {
                after.clone()
            } else {
                before.clone()
            };
            for (tp, state) in self.partitions.range_mut(range) {
                if state.buffer.is_none() || state.paused {
                    continue;
                }
                let emptied = Self::hand_out_partition(tp, state, &mut budget, &mut out);
                if budget.records == 0 || !budget.admits_batch() {
                    // Resume here (or just after, if this one is used up).
                    stopped_at = Some((tp.clone(), emptied));
                    break 'passes;
                }
            }
        }
        self.cursor = match stopped_at {
            Some((tp, false)) => Some(tp),
            Some((tp, true)) => self
                .partitions
                .range((Bound::Excluded(tp), Bound::Unbounded))
                .next()
                .map(|(tp, _)| tp.clone()),
            None => None,
        };
        if !out.is_empty() {
            metrics::counter!("franz_consumer_records_total").increment(out.len() as u64);
        }
        out
    }

    /// Hands out one partition's records; true when its buffer is used up.
    pub(super) fn hand_out_partition(
        tp: &TopicPartition,
        state: &mut PartitionState,
        budget: &mut Budget,
        out: &mut Vec<ConsumerRecord>,
    ) -> bool {
        let Some(position) = state.position else {
            state.buffer = None;
            return true;
        };
        let mut position = position;
        let mut epoch = state.position_epoch;
        let mut emptied = false;
        if let Some(buf) = state.buffer.as_mut() {
            loop {
                if !buf.ready.is_empty() {
                    let take = buf.ready.len().min(budget.records);
                    for r in buf.ready.drain(..take) {
                        position = r.offset.saturating_add(1);
                        epoch = r.leader_epoch;
                        out.push(r);
                    }
                    budget.records -= take;
                    if !buf.ready.is_empty() {
                        break;
                    }
                    // The batch is done: past its end (compaction gaps).
                    position = position.max(buf.ready_end);
                    epoch = buf.ready_epoch;
                    if budget.records == 0 {
                        break;
                    }
                }
                if !budget.admits_batch() {
                    break;
                }
                match buf.decoder.next_batch(position) {
                    None => {
                        emptied = true;
                        break;
                    }
                    Some(Err(source)) => {
                        state.error = Some(ConsumeError::Corrupt {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            offset: position,
                            source,
                        });
                        emptied = true;
                        break;
                    }
                    Some(Ok(batch)) => {
                        budget.bytes_used = budget.bytes_used.saturating_add(batch.resident_bytes);
                        if batch.records.is_empty() {
                            // A control batch or an aborted transaction's.
                            position = position.max(batch.next_position);
                            epoch = batch.leader_epoch;
                            continue;
                        }
                        buf.ready = batch.records.into();
                        buf.ready_end = batch.next_position;
                        buf.ready_epoch = batch.leader_epoch;
                    }
                }
            }
        }
        state.position = Some(position);
        state.position_epoch = epoch;
        if emptied {
            state.buffer = None;
        }
        emptied
    }

    /// The first error held, once nothing fetched precedes it.
    pub(super) fn take_error(&mut self) -> Option<ConsumeError> {
        for s in self.partitions.values_mut() {
            if s.buffer.is_none()
                && let Some(e) = s.error.take()
            {
                return Some(e);
            }
        }
        self.failures.pop_front()
    }
}
