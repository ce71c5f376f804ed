//! The worker: one task that polls the group, runs handlers partition by partition, replies, retries, parks failures and commits only what was handled.

use super::*;

pub(super) async fn ensure_dead_letter_topics(
    config: &TransportServerConfig,
    handlers: &BTreeMap<String, Pattern>,
) -> Result<(), TransportError> {
    if handlers.is_empty() {
        return Ok(());
    }
    let client = Client::connect(config.consumer.client.clone())
        .await
        .map_err(|e| TransportError::Consume(e.into()))?;
    // As Spring creates them: as many partitions as the source topic, so a
    // dead letter keeps its partition (and its key's order).
    let mut topics = Vec::new();
    for pattern in handlers.keys() {
        let partitions = match client.topic_metadata(pattern).await {
            Ok(t) => i32::try_from(t.partitions.len()).unwrap_or(1).max(1),
            Err(_) => 1,
        };
        topics.push(NewTopic::new(
            format!("{pattern}{}", config.dead_letter_suffix),
            partitions,
            -1,
        ));
    }
    let created = Admin::new(client.clone())
        .create_topics(topics, false)
        .await
        .map_err(|e| TransportError::Consume(e.into()))?;
    client.close();
    for (topic, r) in created {
        if let Err(e) = r
            && !topics::already_exists(&e)
        {
            tracing::warn!(%topic, error = %e, "could not create the dead-letter topic");
        }
    }
    Ok(())
}

/// A record whose handling failed.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) record: ConsumerRecord,
    pub(super) reason: String,
    /// Whether handling it again may help; if not it is parked now.
    pub(super) retriable: bool,
    /// For a request: the error reply to send once attempts run out
    /// (instead of a dead letter).
    pub(super) reply: Option<nest::OutgoingRecord>,
}

/// What handling one partition's records earned.
#[derive(Debug, Default)]
pub(super) struct PartitionOutcome {
    /// The offset to commit: past the last record handled (and replied to,
    /// or dead-lettered).
    pub(super) done: Option<i64>,
    /// The first record that failed: the partition resumes there.
    pub(super) failed: Option<Failure>,
}

/// What one record's handling came to.
pub(super) enum Handled {
    Done,
    /// Replies were queued; their acknowledgements decide.
    Replies(Vec<franz_producer::DeliveryFuture>),
    Failed {
        reason: String,
        retriable: bool,
        reply: Option<nest::OutgoingRecord>,
    },
}

/// A partition waiting to handle its head record again.
#[derive(Debug)]
pub(super) struct Retry {
    pub(super) offset: i64,
    /// Handler runs so far for the record at `offset`.
    pub(super) attempts: u32,
    pub(super) resume_at: Instant,
    /// Paused until `resume_at`.
    pub(super) paused: bool,
    /// Every attempt is used but parking the record failed: the next time
    /// round, park it again instead of handling.
    pub(super) park: Option<Park>,
}

/// How a record whose attempts are used is parked.
#[derive(Debug, Clone)]
pub(super) struct Park {
    pub(super) reason: String,
    /// A request's error reply; a dead letter if it cannot be written.
    pub(super) reply: Option<nest::OutgoingRecord>,
}

pub(super) struct Worker {
    pub(super) config: TransportServerConfig,
    pub(super) routes: BTreeMap<String, (Route, Arc<dyn Codec>)>,
    pub(super) state: Arc<StateMap>,
    pub(super) producer: Producer,
    pub(super) parker: Parker,
    /// Parks in progress (their partitions paused at the record), applied
    /// as they finish by [`Worker::finish_parks`]. In a mutex only so that
    /// `&Worker` is `Sync` for the concurrent partition handlers (which
    /// never touch it): the loop reaches it through `&mut self`, unlocked.
    pub(super) parking: std::sync::Mutex<stream::FuturesUnordered<handler::BoxFuture<Parked>>>,
    pub(super) consumer: GroupConsumer,
    /// What the consumer commits when partitions are revoked: the worker
    /// copies its earned offsets here before every poll.
    pub(super) marks: OffsetMarks,
    /// Partitions whose head record failed, by partition: only they wait.
    pub(super) retries: BTreeMap<TopicPartition, Retry>,
    /// Offsets earned (handler succeeded, reply acknowledged) and not yet
    /// committed; see [`Worker::commit_due`].
    pub(super) uncommitted: BTreeMap<TopicPartition, i64>,
    pub(super) last_commit: Instant,
    pub(super) status: Arc<watch::Sender<ServerStatus>>,
    /// Exactly-once: each poll's records are handled in a transaction.
    pub(super) eos: bool,
    pub(super) in_transaction: bool,
    /// Exactly-once: where each partition of the open transaction's poll
    /// started, to read it again if the transaction aborts.
    pub(super) batch_start: BTreeMap<TopicPartition, i64>,
    /// Exactly-once: a handler failed after writing outbox records into the
    /// open transaction, which must therefore abort.
    pub(super) transaction_poisoned: AtomicBool,
}

impl Worker {
    pub(super) async fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), TransportError> {
        let mut failing_since: Option<Instant> = None;
        let outcome = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            self.finish_parks();
            self.resume_due();
            // Parks in progress are looked at every 50 ms.
            let longest = if self.parking().is_empty() { 200 } else { 50 };
            let wait = self
                .retries
                .values()
                .filter(|r| r.paused)
                .map(|r| r.resume_at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::MAX)
                .clamp(Duration::from_millis(1), Duration::from_millis(longest));
            let records = match self.consumer.poll(wait).await {
                Ok(r) => r,
                Err(e) => match classify(&e) {
                    PollFailure::Fatal(state) => {
                        tracing::error!(error = %e, "transport server stopped: the group refused it");
                        set_state(&self.status, state);
                        break Err(TransportError::Consume(e));
                    }
                    PollFailure::Transient => {
                        tracing::warn!(error = %e, "transport server poll failed; retrying");
                        if failing_since.get_or_insert_with(Instant::now).elapsed()
                            >= Duration::from_secs(1)
                        {
                            set_state(&self.status, ServerState::Disconnected);
                        }
                        tokio::time::sleep(self.config.retry_backoff).await;
                        continue;
                    }
                },
            };
            if failing_since.take().is_some() {
                set_state(&self.status, ServerState::Connected);
            }
            // Offsets earned for partitions that moved are not ours to
            // commit (the revoke committed them, or they were lost).
            // Retries of partitions that moved are forgotten too: their
            // next owner starts over.
            let assigned = self.consumer.assignment();
            self.uncommitted.retain(|tp, _| assigned.contains(tp));
            self.retries.retain(|tp, _| assigned.contains(tp));
            let idle = records.is_empty();
            if self.eos && !records.is_empty() {
                if let Err(e) = self.producer.begin_transaction() {
                    tracing::error!(error = %e, "transport server stopped: no transaction");
                    break Err(TransportError::Produce(e));
                }
                self.in_transaction = true;
                for r in &records {
                    self.batch_start
                        .entry(TopicPartition::new(&*r.topic, r.partition))
                        .or_insert(r.offset);
                }
            }
            self.handle(records).await;
            if self.eos {
                if let Err(e) = self.commit_transaction().await {
                    tracing::error!(error = %e, "transport server stopped: transactions failed");
                    break Err(e);
                }
            } else {
                self.commit_due(idle).await;
            }
        };
        // Parks in progress finish (each write is bounded), so that what
        // they earned is committed.
        while let Some(done) = self.parking().next().await {
            self.parking().push(Box::pin(std::future::ready(done)));
            self.finish_parks();
        }
        if self.eos {
            if let Err(e) = self.commit_transaction().await {
                tracing::warn!(error = %e, "last transaction not committed");
            }
        } else {
            self.commit_due(true).await;
        }
        let flushed = self.producer.close(Duration::from_secs(10)).await;
        let left = self.consumer.close().await;
        if outcome.is_ok() {
            set_state(&self.status, ServerState::Stopped);
        }
        outcome?;
        flushed?;
        left?;
        Ok(())
    }

    /// Records that `tp` may be committed up to `next` (exclusive): for the
    /// next commit, and in the offset marks, which a revoke commits before
    /// the partition goes. Marks only grow, so they are set here, where an
    /// offset is earned, and never from an older value: a revoke that
    /// committed a stale mark would move the group's offset backwards and
    /// have records handled twice.
    pub(super) fn earn(&mut self, tp: &TopicPartition, next: i64) {
        let o = self.uncommitted.entry(tp.clone()).or_insert(next);
        *o = (*o).max(next);
        // Under exactly-once offsets are committed only inside transactions:
        // a revoke must not commit them on its own.
        if !self.eos {
            self.marks.mark(tp, next);
        }
    }

    /// Exactly-once: commits the open transaction with the offsets earned
    /// in it (or opens one for offsets earned by parks). If it cannot
    /// commit it is aborted, and its partitions read again from where its
    /// poll started: their records are handled again, and the aborted
    /// replies and outbox records are never seen by `read_committed`
    /// readers. Only a fatal error (fenced: another instance has the
    /// transactional id) stops the server.
    pub(super) async fn commit_transaction(&mut self) -> Result<(), TransportError> {
        if !self.in_transaction && self.uncommitted.is_empty() {
            return Ok(());
        }
        if !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        let offsets = std::mem::take(&mut self.uncommitted);
        let batch_start = std::mem::take(&mut self.batch_start);
        let poisoned = self.transaction_poisoned.swap(false, Ordering::Relaxed);
        let result = if poisoned {
            Err(franz_producer::ProduceError::TransactionAbortable {
                cause: Box::new(franz_producer::ProduceError::Fatal(
                    "a handler failed after writing outbox records".into(),
                )),
            })
        } else {
            async {
                if !offsets.is_empty() {
                    self.producer
                        .send_offsets_to_transaction(&offsets, &self.consumer.group_metadata())
                        .await?;
                }
                self.producer.commit_transaction().await
            }
            .await
        };
        self.in_transaction = false;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_fatal() => Err(TransportError::Produce(e)),
            Err(e) => {
                tracing::warn!(error = %e, "transaction aborted; its records will be handled again");
                metrics::counter!("franz_transport_transactions_aborted_total").increment(1);
                self.producer.abort_transaction().await?;
                let assigned = self.consumer.assignment();
                for (tp, next) in offsets {
                    // Earned by a park (its write is done): commit it with
                    // the next transaction.
                    if !batch_start.contains_key(&tp) {
                        self.uncommitted.insert(tp, next);
                    }
                }
                for (tp, start) in batch_start {
                    if assigned.contains(&tp)
                        && let Err(e) = self.consumer.consumer_mut().seek(&tp, start)
                    {
                        tracing::warn!(error = %e, partition = %tp, "could not rewind after an abort");
                    }
                }
                Ok(())
            }
        }
    }

    /// Resumes partitions whose backoff is over.
    pub(super) fn resume_due(&mut self) {
        let now = Instant::now();
        let due: Vec<TopicPartition> = self
            .retries
            .iter_mut()
            .filter(|(_, r)| r.paused && r.resume_at <= now)
            .map(|(tp, r)| {
                r.paused = false;
                tp.clone()
            })
            .collect();
        if !due.is_empty()
            && let Err(e) = self.consumer.resume(&due)
        {
            tracing::debug!(error = %e, "resuming after a backoff");
        }
    }

    /// Handles a poll's records: each partition's in order, stopping at its
    /// first failure, up to `partitions_concurrently` partitions at once;
    /// then applies the failure policy and records what each may commit.
    pub(super) async fn handle(&mut self, records: Vec<ConsumerRecord>) {
        // Keyed by the record's shared topic name: no allocation per record.
        let mut by_partition: BTreeMap<(Arc<str>, i32), Vec<ConsumerRecord>> = BTreeMap::new();
        for record in records {
            by_partition
                .entry((Arc::clone(&record.topic), record.partition))
                .or_default()
                .push(record);
        }
        let this = &*self;
        let outcomes: Vec<(TopicPartition, PartitionOutcome)> = stream::iter(by_partition)
            .map(|((topic, partition), records)| async move {
                let tp = TopicPartition::new(&*topic, partition);
                let outcome = this.handle_partition(&tp, &records).await;
                (tp, outcome)
            })
            .buffer_unordered(self.config.partitions_concurrently.max(1))
            .collect()
            .await;
        for (tp, outcome) in outcomes {
            if let Some(done) = outcome.done {
                self.earn(&tp, done);
                if self.retries.get(&tp).is_some_and(|r| r.offset < done) {
                    self.retries.remove(&tp);
                }
            }
            if let Some(failure) = outcome.failed {
                self.failed(tp, failure).await;
            }
        }
    }

    /// The failure policy for a partition's head record: another attempt
    /// after a backoff that pauses only this partition, or (every attempt
    /// used, or not retriable) parking it: a request's error reply, or the
    /// dead-letter topic. Nothing past the record is committed until it is
    /// handled or parked.
    pub(super) async fn failed(&mut self, tp: TopicPartition, failure: Failure) {
        let offset = failure.record.offset;
        let attempts = self
            .retries
            .get(&tp)
            .filter(|r| r.offset == offset)
            .map_or(1, |r| {
                r.attempts.saturating_add(u32::from(r.park.is_none()))
            });
        let exhausted =
            !failure.retriable || self.config.max_attempts.is_some_and(|max| attempts >= max);
        let mut park = None;
        let mut parking = false;
        if exhausted {
            let p = Park {
                reason: failure.reason.clone(),
                reply: failure.reply,
            };
            // The write runs beside the loop; the partition waits at the
            // record, paused, until it is known (see `finish_parks`).
            let (parker, record, tp2, p2) = (
                self.parker.clone(),
                failure.record.clone(),
                tp.clone(),
                p.clone(),
            );
            self.parking().push(Box::pin(async move {
                let result = parker.park(&record, &p2, attempts).await;
                Parked {
                    tp: tp2,
                    offset,
                    attempts,
                    park: p2,
                    result,
                }
            }));
            park = None;
            parking = true;
        } else {
            metrics::counter!("franz_transport_retried_total", "pattern" => tp.topic.clone())
                .increment(1);
            tracing::warn!(topic = %tp.topic, partition = tp.partition, offset, attempts, reason = %failure.reason, "handler failed; will retry");
        }
        // Resume at the failed record, after a backoff of this partition.
        if let Err(e) = self.consumer.consumer_mut().seek(&tp, offset) {
            tracing::warn!(error = %e, "could not rewind a failed partition");
        }
        // Never commit past a failure, even with an earlier poll's larger
        // offset pending.
        if let Some(o) = self.uncommitted.get_mut(&tp) {
            *o = (*o).min(offset);
        }
        // A partition being parked waits for its park, not a backoff.
        let resume_at = if parking {
            Instant::now() + Duration::from_secs(86_400)
        } else {
            Instant::now() + self.backoff(&tp, offset, attempts)
        };
        let paused = self.consumer.pause(std::slice::from_ref(&tp)).is_ok();
        self.retries.insert(
            tp,
            Retry {
                offset,
                attempts,
                resume_at,
                paused,
                park,
            },
        );
    }

    /// Applies the parks that finished: a written park earns its record and
    /// the partition goes on past it; a failed one stalls the partition,
    /// which parks the record again after a backoff. A park of a partition
    /// that moved meanwhile is dropped: its next owner handles the record
    /// again (a dead letter may then be written twice, never lost).
    pub(super) fn finish_parks(&mut self) {
        use futures_util::FutureExt as _;
        while let Some(Some(done)) = self.parking().next().now_or_never() {
            let Parked {
                tp,
                offset,
                attempts,
                park,
                result,
            } = done;
            if !self
                .retries
                .get(&tp)
                .is_some_and(|r| r.offset == offset && r.park.is_none())
            {
                continue;
            }
            match result {
                Ok(()) => {
                    self.retries.remove(&tp);
                    self.set_stalled(&tp, false);
                    self.earn(&tp, offset + 1);
                    if let Err(e) = self.consumer.consumer_mut().seek(&tp, offset + 1) {
                        tracing::warn!(error = %e, "could not move past a parked record");
                    }
                    if let Err(e) = self.consumer.resume(std::slice::from_ref(&tp)) {
                        tracing::debug!(error = %e, "resuming after a park");
                    }
                }
                Err(e) => {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, offset, error = %e, "parking a failed record failed; the partition stalls and tries again");
                    self.set_stalled(&tp, true);
                    let resume_at = Instant::now() + self.backoff(&tp, offset, attempts);
                    if let Some(r) = self.retries.get_mut(&tp) {
                        r.park = Some(park);
                        r.resume_at = resume_at;
                    }
                }
            }
        }
    }

    /// The parks in progress.
    pub(super) fn parking(&mut self) -> &mut stream::FuturesUnordered<handler::BoxFuture<Parked>> {
        self.parking
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reports a partition stalled on parking a record, or no longer.
    pub(super) fn set_stalled(&self, tp: &TopicPartition, stalled: bool) {
        self.status.send_if_modified(|s| {
            let at = s.stalled.iter().position(|t| t == tp);
            match (stalled, at) {
                (true, None) => s.stalled.push(tp.clone()),
                (false, Some(i)) => {
                    s.stalled.remove(i);
                }
                _ => return false,
            }
            true
        });
    }

    /// `retry_backoff` doubled per attempt, at most `retry_backoff_max`,
    /// with ±20% jitter so failing partitions do not retry in lockstep.
    pub(super) fn backoff(&self, tp: &TopicPartition, offset: i64, attempts: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let base = self
            .config
            .retry_backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
            .min(self.config.retry_backoff_max);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(tp.topic.as_bytes());
        h.write_i32(tp.partition);
        h.write_i64(offset);
        h.write_u32(attempts);
        let jitter = 0.8 + (h.finish() % 401) as f64 / 1000.0;
        base.mul_f64(jitter)
    }

    /// One partition's records, in order, up to the first failure. Replies
    /// are queued without waiting for each acknowledgement (the producer
    /// batches them) and awaited at the end. A reply that cannot be written
    /// at all (an out-of-range reply partition, a missing topic, a reply
    /// too large) dead-letters its request: the handler ran once, and never
    /// runs again for it.
    pub(super) async fn handle_partition(
        &self,
        tp: &TopicPartition,
        records: &[ConsumerRecord],
    ) -> PartitionOutcome {
        let mut outcome = PartitionOutcome::default();
        let mut replies = Vec::new();
        let pending = self.retries.get(tp);
        for record in records {
            if let Some(park) = pending
                .filter(|r| r.offset == record.offset)
                .and_then(|r| r.park.clone())
            {
                outcome.failed = Some(Failure {
                    record: record.clone(),
                    reason: park.reason,
                    retriable: false,
                    reply: park.reply,
                });
                break;
            }
            match self.handle_one(record).await {
                Handled::Done => outcome.done = Some(record.offset + 1),
                Handled::Replies(acks) => replies.push((record, acks)),
                Handled::Failed {
                    reason,
                    retriable,
                    reply,
                } => {
                    outcome.failed = Some(Failure {
                        record: record.clone(),
                        reason,
                        retriable,
                        reply,
                    });
                    break;
                }
            }
        }
        for (record, acks) in replies {
            let offset = record.offset;
            let mut failure = None;
            for ack in acks {
                let Err(e) = ack.await else { continue };
                let reason = format!("reply not delivered: {e}");
                failure = if e.is_retriable() {
                    Some((reason, true))
                } else {
                    match self.parker.dead_letter(record, &reason, 1).await {
                        Ok(()) => None,
                        Err(_) => Some((reason, false)),
                    }
                };
                break;
            }
            match failure {
                None => outcome.done = outcome.done.max(Some(offset + 1)),
                Some((reason, retriable)) => {
                    tracing::warn!(offset, %reason, "request not answered");
                    // The earliest failure decides where the partition resumes.
                    if outcome
                        .failed
                        .as_ref()
                        .is_none_or(|f| f.record.offset > offset)
                    {
                        outcome.failed = Some(Failure {
                            record: record.clone(),
                            reason,
                            retriable,
                            reply: None,
                        });
                    }
                    outcome.done = outcome.done.map(|d| d.min(offset));
                    break;
                }
            }
        }
        outcome
    }

    /// Commits what handlers have earned, at most every 100 ms while records
    /// flow and at once when the server goes idle or stops: a commit round
    /// trip per poll would sit in front of the next request.
    pub(super) async fn commit_due(&mut self, now: bool) {
        if self.uncommitted.is_empty()
            || (!now && self.last_commit.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        let commits: Vec<(TopicPartition, i64)> =
            std::mem::take(&mut self.uncommitted).into_iter().collect();
        self.last_commit = Instant::now();
        if let Err(e) = self.consumer.commit_offsets(&commits).await {
            // A rebalance: the next owner reads these again (at least once).
            tracing::info!(error = %e, "offsets not committed");
        }
    }

    /// Runs the handler for one record, in a span; a request's replies are
    /// queued and their acknowledgements handed back for the caller to
    /// await.
    pub(super) async fn handle_one(&self, record: &ConsumerRecord) -> Handled {
        let headers = record.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        let reply_to = nest::reply_to(headers);
        let Some((route, codec)) = self.routes.get(&*record.topic) else {
            let Some(to) = reply_to else {
                return Handled::Done;
            };
            let err = Value::String(
                "There is no matching message handler defined in the remote service.".into(),
            );
            return self.queue([nest::reply(&to, Err(err), false)]).await;
        };
        let outbox = Outbox::new(self.producer.clone());
        let incoming = Incoming {
            record: record.clone(),
            codec: Arc::clone(codec),
            state: Arc::clone(&self.state),
            outbox: outbox.clone(),
        };
        let kind = if route.message { "message" } else { "event" };
        let span = trace::handler_span(record, kind, reply_to.as_ref());
        let in_flight = metrics::gauge!("franz_transport_in_flight", "side" => "server");
        in_flight.increment(1.0);
        let started = Instant::now();
        let outcome = handler::run_service(&route.service, incoming, route.message)
            .instrument(span.clone())
            .await;
        let handled = match outcome {
            Outcome::Event(result) => match result {
                Ok(()) => Handled::Done,
                Err(e) => Handled::Failed {
                    reason: e.describe(),
                    retriable: e.is_retriable(),
                    reply: None,
                },
            },
            Outcome::Reply(body) => {
                match reply_to {
                    // Emitted to a message pattern: the result is ignored, as Nest.
                    None => {
                        if let ReplyBody::Stream(s) = body {
                            s.for_each(|_| async {}).instrument(span).await;
                        }
                        Handled::Done
                    }
                    Some(to) => self.answer(record, &to, body, span).await,
                }
            }
        };
        in_flight.decrement(1.0);
        // What the handler wrote through its outbox is part of handling
        // the record: awaited with the replies.
        let sent = outbox.take_sent();
        let handled = match handled {
            Handled::Done if !sent.is_empty() => Handled::Replies(sent),
            Handled::Replies(mut acks) => {
                acks.extend(sent);
                Handled::Replies(acks)
            }
            failed @ Handled::Failed { .. } => {
                if self.eos && !sent.is_empty() {
                    self.transaction_poisoned.store(true, Ordering::Relaxed);
                }
                failed
            }
            other => other,
        };
        let outcome = if matches!(handled, Handled::Failed { .. }) {
            "failed"
        } else {
            "handled"
        };
        metrics::counter!("franz_transport_records_total", "pattern" => Arc::clone(&record.topic), "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!("franz_transport_handler_seconds", "pattern" => Arc::clone(&record.topic), "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        handled
    }

    /// Sends a message handler's replies. A stream's values go out as they
    /// come, each held until the next arrives so that the last one carries
    /// `kafka_nest-is-disposed` (as a Nest server merges its completion
    /// into the last value: a Nest client would otherwise see an extra
    /// null); an empty stream sends the null disposal message alone.
    pub(super) async fn answer(
        &self,
        record: &ConsumerRecord,
        to: &nest::ReplyTo,
        body: ReplyBody,
        span: tracing::Span,
    ) -> Handled {
        let parent = record.header(trace::TRACEPARENT);
        let reply = |outcome: Result<ReplyParts, Value>, last: bool| {
            let traceparent = trace::child_of(parent.map(|b| b.as_ref()));
            reply_record(to, outcome, last, traceparent)
        };
        match body {
            ReplyBody::One(Ok(parts)) => self.queue([reply(Ok(parts), true)]).await,
            ReplyBody::One(Err(e)) if e.retries_request() => Handled::Failed {
                reason: e.describe(),
                retriable: true,
                reply: Some(reply(Err(e.into_body()), true)),
            },
            ReplyBody::One(Err(e)) => self.queue([reply(Err(e.into_body()), true)]).await,
            ReplyBody::Stream(mut values) => {
                let mut acks = Vec::new();
                let mut held: Option<ReplyParts> = None;
                let last = loop {
                    match values.next().instrument(span.clone()).await {
                        Some(Ok(parts)) => {
                            if let Some(prev) = held.replace(parts) {
                                match self.queue_one(reply(Ok(prev), false)).await {
                                    Ok(ack) => acks.push(ack),
                                    Err(failed) => return failed,
                                }
                            }
                        }
                        Some(Err(e)) => {
                            if let Some(prev) = held.take() {
                                match self.queue_one(reply(Ok(prev), false)).await {
                                    Ok(ack) => acks.push(ack),
                                    Err(failed) => return failed,
                                }
                            }
                            break reply(Err(e.into_body()), true);
                        }
                        None => break reply(Ok(held.take().unwrap_or_default()), true),
                    }
                };
                match self.queue_one(last).await {
                    Ok(ack) => acks.push(ack),
                    Err(failed) => return failed,
                }
                Handled::Replies(acks)
            }
        }
    }

    /// Queues reply records; their acknowledgements are awaited later.
    pub(super) async fn queue(
        &self,
        records: impl IntoIterator<Item = nest::OutgoingRecord>,
    ) -> Handled {
        let mut acks = Vec::new();
        for r in records {
            match self.queue_one(r).await {
                Ok(ack) => acks.push(ack),
                Err(failed) => return failed,
            }
        }
        Handled::Replies(acks)
    }

    pub(super) async fn queue_one(
        &self,
        record: nest::OutgoingRecord,
    ) -> Result<franz_producer::DeliveryFuture, Handled> {
        self.producer
            .send(to_producer(record))
            .await
            .map_err(|e| Handled::Failed {
                reason: format!("reply not sent: {e}"),
                retriable: e.is_retriable(),
                reply: None,
            })
    }
}

/// One reply message: Nest's layout, plus the handler's key and headers and
/// the trace context.
pub(super) fn reply_record(
    to: &nest::ReplyTo,
    outcome: Result<ReplyParts, Value>,
    last: bool,
    traceparent: String,
) -> nest::OutgoingRecord {
    let (parts, outcome) = match outcome {
        Ok(mut p) => {
            let value = p.value.take();
            (p, Ok(value))
        }
        Err(e) => (ReplyParts::default(), Err(e)),
    };
    let mut rec = nest::reply(to, outcome, last);
    rec.key = parts.key;
    rec.headers.extend(parts.headers);
    rec.headers
        .push((trace::TRACEPARENT.to_string(), traceparent.into()));
    rec
}

/// What a failed poll means for the server.
pub(super) enum PollFailure {
    /// The member stopped for good, in this state.
    Fatal(ServerState),
    /// Worth polling again.
    Transient,
}

pub(super) fn classify(e: &ConsumeError) -> PollFailure {
    match e {
        ConsumeError::Group {
            code: ErrorCode::FencedInstanceId,
            ..
        } => PollFailure::Fatal(ServerState::Fenced),
        ConsumeError::Group { .. } | ConsumeError::Closed | ConsumeError::InvalidGroupConfig(_) => {
            PollFailure::Fatal(ServerState::Crashed)
        }
        _ => PollFailure::Transient,
    }
}
