//! What comes back: a producer id, a Produce response (judged per partition: done, retry, re-sequence, bump the epoch, or fail), and failing what cannot be sent.

use super::*;

impl Sender {
    /// The broker's answer to InitProducerId (asked for when the epoch
    /// would overflow).
    pub(crate) fn on_producer_id(
        &mut self,
        acc: &mut Accumulator,
        result: Result<(i64, i16), ProduceError>,
        now: Instant,
    ) {
        self.asking_for_id = false;
        match result {
            Ok((pid, epoch)) => {
                self.adopt_epoch(acc, pid, epoch);
                self.bumps += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "InitProducerId failed; will ask again");
                self.id_retry_at = Some(now + self.config.retry_backoff);
            }
        }
    }

    /// A request's outcome: completes, retries or parks each of its batches.
    pub(crate) fn on_produce_result(
        &mut self,
        acc: &mut Accumulator,
        id: u64,
        outcome: &RequestOutcome,
        now: Instant,
    ) -> Vec<Completion> {
        // Unknown ids belong to requests already failed by `fail_all`.
        let Some(req) = self.requests.remove(&id) else {
            return Vec::new();
        };
        if let Some(n) = self.per_leader.get_mut(&req.leader) {
            *n = n.saturating_sub(1);
        }
        let mut done = Vec::new();
        for (topic, partition, mut batch) in req.batches {
            batch.sent_once = true;
            let Some(q) = acc
                .topics
                .get_mut(&topic)
                .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
            else {
                continue;
            };
            q.send.in_flight = q.send.in_flight.saturating_sub(1);
            let verdict = self.judge(q, &topic, partition, &batch, outcome);
            match verdict {
                Verdict::Done(ack) => {
                    if let Some(seq) = &self.seq
                        && seq.is_current(batch.producer_id, batch.epoch)
                    {
                        q.send.acked_next = wrap_sequence(batch.base_sequence, batch.records);
                        q.send.acked_any = true;
                    }
                    done.push(Completion {
                        batch,
                        result: Ok(ack),
                    });
                }
                Verdict::Retry(e) | Verdict::RetryAfterBump(e)
                    if now.duration_since(batch.created) >= self.config.delivery_timeout =>
                {
                    batch.last_error = Some(e);
                    let err = self.timeout_error(&batch);
                    done.push(self.fail(q, batch, err));
                }
                Verdict::Retry(e) => {
                    metrics::counter!("franz_producer_retries_total").increment(1);
                    batch.last_error = Some(e);
                    q.send.draining = true;
                    q.send.retry_at = Some(now + self.config.retry_backoff);
                    q.requeue(batch);
                }
                Verdict::RetryAfterBump(e) if self.txn.is_some() => {
                    // Not written; a transactional producer does not bump
                    // mid-transaction: the batch fails, the transaction
                    // becomes abortable, and the abort bumps the epoch.
                    q.send.needs_bump = true;
                    if let Some(seq) = self.seq.as_mut() {
                        seq.on_sequence_broken();
                    }
                    batch.sent_once = false;
                    done.push(Completion {
                        batch,
                        result: Err(e),
                    });
                }
                Verdict::RetryAfterBump(e) => {
                    metrics::counter!("franz_producer_retries_total").increment(1);
                    batch.last_error = Some(e);
                    q.send.needs_bump = true;
                    if let Some(seq) = self.seq.as_mut() {
                        seq.on_sequence_broken();
                    }
                    q.requeue(batch);
                }
                Verdict::Refused(e) => {
                    // Not in the log: its sequences are free. If it was the
                    // partition's latest numbered batch the next one reuses
                    // them; if later batches already carry sequences behind
                    // it, those cannot land and the epoch must be bumped.
                    if let Some(seq) = self.seq.as_mut()
                        && seq.is_current(batch.producer_id, batch.epoch)
                    {
                        let followers = q.send.in_flight > 0
                            || q.queued.front().is_some_and(|b| {
                                b.payload.is_some() && seq.is_current(b.producer_id, b.epoch)
                            });
                        if followers {
                            q.send.needs_bump = true;
                            seq.on_sequence_broken();
                        } else {
                            seq.rollback(&topic, partition, batch.base_sequence);
                        }
                    }
                    batch.sent_once = false;
                    done.push(Completion {
                        batch,
                        result: Err(e),
                    });
                }
                Verdict::Failed(e) => done.push(self.fail(q, batch, e)),
            }
        }
        done
    }

    /// What the outcome means for one batch.
    pub(super) fn judge(
        &mut self,
        q: &PartitionQueue,
        topic: &str,
        partition: i32,
        batch: &Batch,
        outcome: &RequestOutcome,
    ) -> Verdict {
        let resp = match outcome {
            RequestOutcome::Unanswered => return Verdict::Done(BatchAck::UNACKNOWLEDGED),
            RequestOutcome::Failed(e) => {
                self.refresh_wanted |= e.invalidates_metadata();
                // An unreadable answer leaves the batch's fate unknown too:
                // resend the same bytes and sequence.
                return if e.is_retriable() || matches!(e, ClientError::Decode { .. }) {
                    Verdict::Retry(ProduceError::Client(e.clone()))
                } else {
                    Verdict::Failed(ProduceError::Client(e.clone()))
                };
            }
            RequestOutcome::Answered(resp) => resp,
        };
        let Some(p) = resp
            .responses
            .iter()
            .filter(|t| *t.name == *topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
        else {
            return Verdict::Retry(ProduceError::Fatal(format!(
                "{topic}-{partition} missing from the produce response"
            )));
        };
        let code = ErrorCode::from_code(p.error_code);
        let error = || ProduceError::Broker {
            topic: topic.to_string(),
            partition,
            code,
            message: p.error_message.clone(),
        };
        let outcome = match &self.seq {
            Some(seq) => seq.classify(code),
            None if code.is_ok() => BatchOutcome::Done,
            None if code.is_retriable() => BatchOutcome::Retry,
            None => BatchOutcome::Fail,
        };
        match outcome {
            BatchOutcome::Done => Verdict::Done(BatchAck {
                base_offset: p.base_offset,
                log_append_time: p.log_append_time_ms,
            }),
            // Out of order *ahead* of the last acknowledged batch is
            // expected after an earlier batch of the partition failed:
            // that one goes again first, then this one. At the expected
            // sequence, or behind it, the broker's state and ours differ.
            BatchOutcome::RetryAfterBump
                if code == ErrorCode::OutOfOrderSequenceNumber
                    && sequence_ahead(batch.base_sequence, q.send.acked_next) =>
            {
                Verdict::Retry(error())
            }
            BatchOutcome::RetryAfterBump => Verdict::RetryAfterBump(error()),
            BatchOutcome::Retry => {
                self.refresh_wanted |= franz_client::code_invalidates_metadata(code);
                Verdict::Retry(error())
            }
            BatchOutcome::Fail if code == ErrorCode::ProducerFenced => {
                let (producer_id, epoch) = self.producer_id_and_epoch().unwrap_or((-1, -1));
                let fenced = ProduceError::ProducerFenced { producer_id, epoch };
                self.fatal = Some(fenced.clone());
                Verdict::Refused(fenced)
            }
            BatchOutcome::Fail => Verdict::Refused(error()),
        }
    }

    /// Fails every batch that is not in flight (open, queued, or waiting to
    /// be resent) with `err`: the transaction they belong to is being
    /// aborted. In-flight batches answer first.
    pub(crate) fn fail_unsent(
        &mut self,
        acc: &mut Accumulator,
        err: &ProduceError,
    ) -> Vec<Completion> {
        let mut done = Vec::new();
        for tq in acc.topics.values_mut() {
            for q in &mut tq.partitions {
                let mut batches: Vec<Batch> =
                    q.open.take().map(OpenBatch::seal).into_iter().collect();
                batches.extend(q.queued.drain(..));
                for b in batches {
                    done.push(self.fail(q, b, err.clone()));
                }
            }
        }
        done
    }

    /// Fails every batch: open and queued ones with `Closed` (never
    /// written), in-flight ones with `ClosedInFlight` (fate unknown). Their
    /// answers, if they come, are ignored.
    pub(crate) fn fail_all(&mut self, acc: &mut Accumulator) -> Vec<Completion> {
        let mut done: Vec<Completion> = acc
            .take_all()
            .into_iter()
            .map(|batch| {
                let result = Err(if batch.sent_once {
                    ProduceError::ClosedInFlight
                } else {
                    ProduceError::Closed
                });
                Completion { batch, result }
            })
            .collect();
        for (_, req) in self.requests.drain() {
            for (_, _, batch) in req.batches {
                done.push(Completion {
                    batch,
                    result: Err(ProduceError::ClosedInFlight),
                });
            }
        }
        self.per_leader.clear();
        for tq in acc.topics.values_mut() {
            for q in &mut tq.partitions {
                q.send.in_flight = 0;
            }
        }
        done
    }
}
