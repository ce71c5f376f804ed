//! The tokio layer: positions per assigned partition, one Fetch per broker
//! per round, offset resets through ListOffsets.
#![allow(clippy::disallowed_methods)] // a driver: the fetch loop and poll deadlines run here; the group members it feeds are clock-free

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_client::TopicPartition;
use franz_client::admin::OffsetSpec;
use franz_client::franz_protocol::messages::{FetchRequest, FetchResponse, fetch_request};
use franz_client::franz_protocol::record::BatchDecodeOptions;
use franz_client::{Admin, Client, ClientError, ConnectionKind};
use franz_protocol::ErrorCode;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::task::JoinSet;

use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::ConsumeError;
use crate::fetch::{Aborted, ConsumerRecord, PartitionDecoder};
use crate::session::{FetchSession, FetchState, SessionRequest};

/// How long a broker-chosen read replica (KIP-392) is used before the
/// leader is asked again, as Java's `metadata.max.age.ms` bounds it.
const PREFERRED_REPLICA_TTL: Duration = Duration::from_secs(300);

/// How long one pass of a stream's poll waits before looking again (the
/// stream itself waits as long as it takes).
const STREAM_POLL: Duration = Duration::from_secs(60);

/// Records as a stream (see [`Consumer::stream`]).
pub type RecordStream<'a> = BoxStream<'a, Result<ConsumerRecord, ConsumeError>>;

#[derive(Debug)]
struct PartitionState {
    /// The next offset to hand out; `None` until reset or sought.
    position: Option<i64>,
    /// The leader epoch of the record before `position` (-1 unknown): sent
    /// as Fetch's `last_fetched_epoch`, so the broker detects a truncated
    /// log (KIP-320), and committed with the offset.
    position_epoch: i32,
    /// A read replica the leader pointed us to, and until when to use it.
    preferred_replica: Option<(i32, Instant)>,
    /// Fetched data not handed out yet, decoded lazily.
    buffer: Option<Buffered>,
    /// An error met at `position`, reported once everything fetched before
    /// it has been handed out. The partition is not fetched meanwhile.
    error: Option<ConsumeError>,
    /// Not fetched until resumed (the position is kept).
    paused: bool,
    /// The partition's high watermark in the latest fetch answer.
    high_watermark: Option<i64>,
}

impl Default for PartitionState {
    fn default() -> Self {
        Self {
            position: None,
            position_epoch: -1,
            preferred_replica: None,
            buffer: None,
            error: None,
            paused: false,
            high_watermark: None,
        }
    }
}

impl PartitionState {
    /// Moves to `offset` (whose preceding record has `epoch`), dropping
    /// whatever was fetched or pending for the old position.
    fn seek(&mut self, offset: i64, epoch: i32) {
        self.position = Some(offset);
        self.position_epoch = epoch;
        self.buffer = None;
        self.error = None;
    }
}

impl PartitionState {
    /// The leader's log diverges from what this consumer read (KIP-320):
    /// the epoch of the record before `position` ends at `end_offset` in
    /// the leader's log. Below the position, the records between were lost
    /// (an unclean election truncated them): move to the divergence point,
    /// or without a reset policy hold a [`ConsumeError::LogTruncation`].
    fn diverged(
        &mut self,
        tp: &TopicPartition,
        position: i64,
        (epoch, end_offset): (i32, i64),
        reset: OffsetReset,
    ) {
        if end_offset >= position && epoch >= 0 {
            // Same history up to the position; only our epoch was older.
            self.position_epoch = epoch;
            return;
        }
        if reset == OffsetReset::None {
            self.error = Some(ConsumeError::LogTruncation {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: position,
                diverging_epoch: epoch,
                end_offset,
            });
        } else if end_offset < 0 || epoch < 0 {
            // The leader has no record of our epoch at all.
            tracing::warn!(topic = %tp.topic, partition = tp.partition, position, "log truncated below an unknown offset; resetting");
            self.position = None;
            self.position_epoch = -1;
        } else {
            tracing::warn!(
                topic = %tp.topic,
                partition = tp.partition,
                position,
                end_offset,
                epoch,
                "log truncated (unclean leader election): moving to the divergence point"
            );
            self.seek(end_offset, epoch);
        }
    }
}

/// One partition's fetched, not yet returned data: records of the batch
/// being handed out, and the batches after it, still compressed.
#[derive(Debug)]
struct Buffered {
    decoder: PartitionDecoder,
    ready: VecDeque<ConsumerRecord>,
    /// The position once `ready` is handed out (the batch's end).
    ready_end: i64,
    /// The leader epoch of the batch in `ready`.
    ready_epoch: i32,
}

/// What one poll may still hand out.
struct Budget {
    records: usize,
    bytes: usize,
    bytes_used: usize,
}

impl Budget {
    /// Whether another batch may be decoded: always the first one.
    fn admits_batch(&self) -> bool {
        self.bytes_used == 0 || self.bytes_used < self.bytes
    }
}

/// A consumer of explicitly assigned partitions.
///
/// Each [`poll`](Self::poll) sends one Fetch to every broker that leads (or
/// is the preferred read replica for) an assigned partition, decodes what
/// comes back without copying values, and advances the positions. Group
/// membership and committed offsets are not handled here yet: positions
/// start from [`seek`](Self::seek) or from `auto_offset_reset`.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_consumer::ConsumeError> {
/// use std::time::Duration;
/// use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};
/// let mut config = ConsumerConfig::new("127.0.0.1:9092");
/// config.auto_offset_reset = OffsetReset::Earliest;
/// let mut consumer = Consumer::new(config).await?;
/// consumer.assign_topic("orders").await?;
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    topics: HashMap<String, Arc<str>>,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// KIP-227 sessions by broker.
    sessions: BTreeMap<i32, FetchSession>,
    /// Failures of a whole broker's fetch that retrying cannot fix, reported
    /// when nothing fetched is left to return.
    failures: VecDeque<ConsumeError>,
    /// Where the next hand-out starts, so no partition starves the others.
    cursor: Option<TopicPartition>,
    /// The topic id each assigned topic had when its positions were taken:
    /// a new id means the topic was deleted and created again.
    topic_ids: HashMap<String, franz_protocol::Uuid>,
}

impl Consumer {
    /// Connects to the cluster.
    ///
    /// # Cancel safety
    /// Dropping it before it returns leaves nothing behind: the connections
    /// it opened close with its client.
    pub async fn new(config: ConsumerConfig) -> Result<Self, ConsumeError> {
        let client = Client::connect(config.client.clone()).await?;
        Ok(Self::with_client(config, client))
    }

    /// A consumer sharing an existing client's connections and metadata.
    pub fn with_client(config: ConsumerConfig, client: Client) -> Self {
        Self {
            client,
            config,
            topics: HashMap::new(),
            partitions: BTreeMap::new(),
            sessions: BTreeMap::new(),
            failures: VecDeque::new(),
            cursor: None,
            topic_ids: HashMap::new(),
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Replaces the assignment. Positions (and fetched data) of partitions
    /// kept are kept; an unknown topic or partition is an error and changes
    /// nothing.
    ///
    /// # Cancel safety
    /// Cancel safe: the assignment is replaced only in its last step, with
    /// no await after it, so a dropped call changes nothing. A Metadata
    /// request it was waiting for stays on the wire; its answer is
    /// discarded.
    pub async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        for tp in partitions {
            let t = self.topic_metadata(&tp.topic).await?;
            if !t.partitions.iter().any(|p| p.partition == tp.partition) {
                return Err(ConsumeError::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        }
        let mut next = BTreeMap::new();
        for tp in partitions {
            let state = self.partitions.remove(tp).unwrap_or_default();
            self.topics
                .entry(tp.topic.clone())
                .or_insert_with(|| Arc::from(tp.topic.as_str()));
            next.insert(tp.clone(), state);
        }
        self.partitions = next;
        Ok(())
    }

    /// Assigns every partition of `topic` (added to the current assignment).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`assign`](Self::assign): a dropped call leaves the
    /// assignment unchanged; a Metadata request it was waiting for stays on
    /// the wire, its answer discarded.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<(), ConsumeError> {
        let t = self.topic_metadata(topic).await?;
        let mut all: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for p in &t.partitions {
            let tp = TopicPartition::new(topic, p.partition);
            if !all.contains(&tp) {
                all.push(tp);
            }
        }
        self.assign(&all).await
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// The next offset `poll` will return for `tp`, if it has one yet.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|s| s.position)
    }

    /// The leader epoch of the record before `tp`'s position (-1 when
    /// unknown): what a commit of the position carries (KIP-320).
    pub fn position_epoch(&self, tp: &TopicPartition) -> i32 {
        self.partitions.get(tp).map_or(-1, |s| s.position_epoch)
    }

    /// Moves `tp` to `offset`; the next `poll` fetches from there. Data
    /// fetched for the old position is dropped.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        self.seek_with_epoch(tp, offset, -1)
    }

    /// Moves `tp` to `offset`, known to follow a record of leader epoch
    /// `epoch` (a committed offset's epoch): the first fetch then checks
    /// that the log was not truncated below it meanwhile (KIP-320).
    pub fn seek_with_epoch(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        epoch: i32,
    ) -> Result<(), ConsumeError> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| ConsumeError::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            })?;
        state.seek(offset, epoch);
        Ok(())
    }

    /// Stops fetching `partitions` until [`resume`](Self::resume); their
    /// positions are kept, and nothing already returned is affected. An
    /// unassigned partition is an error and changes nothing.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        self.set_paused(partitions, true)
    }

    /// Fetches `partitions` again, from where they were paused.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        self.set_paused(partitions, false)
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    fn set_paused(
        &mut self,
        partitions: &[TopicPartition],
        paused: bool,
    ) -> Result<(), ConsumeError> {
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(ConsumeError::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            });
        }
        for tp in partitions {
            if let Some(s) = self.partitions.get_mut(tp) {
                s.paused = paused;
            }
        }
        Ok(())
    }

    /// Drops `tp`'s position (and any fetched data or pending error), so
    /// the next `poll` starts it by `auto_offset_reset` unless it is sought
    /// first.
    pub(crate) fn forget_position(&mut self, tp: &TopicPartition) {
        if let Some(s) = self.partitions.get_mut(tp) {
            *s = PartitionState::default();
        }
    }

    /// How far `tp`'s position is behind its high watermark, as of the
    /// latest fetch answer for it (`None` before one, or without a
    /// position).
    pub fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        let s = self.partitions.get(tp)?;
        Some((s.high_watermark? - s.position?).max(0))
    }

    /// Moves every assigned partition to its log start offset.
    ///
    /// # Cancel safety
    /// Dropping it leaves its ListOffsets requests on the wire (answers
    /// discarded) and the positions unchanged, except those of partitions
    /// already moved by an earlier round (when some partitions had to be
    /// asked again after a retriable error).
    pub async fn seek_to_beginning(&mut self) -> Result<(), ConsumeError> {
        self.reset_all(OffsetSpec::Earliest).await
    }

    /// Moves every assigned partition to its log end offset (under
    /// read-committed, the last stable offset).
    ///
    /// # Cancel safety
    /// As [`seek_to_beginning`](Self::seek_to_beginning): positions stay
    /// unchanged except those already moved by an earlier round; ListOffsets
    /// requests on the wire have their answers discarded.
    pub async fn seek_to_end(&mut self) -> Result<(), ConsumeError> {
        self.reset_all(OffsetSpec::Latest).await
    }

    async fn reset_all(&mut self, spec: OffsetSpec) -> Result<(), ConsumeError> {
        let all: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        self.reset(&all, spec, false).await
    }

    /// For each partition, the earliest offset whose timestamp is at or
    /// after the given one (ms since the epoch), as Java's
    /// `offsetsForTimes`: `None` when no record is that recent. Positions
    /// are not moved; partitions need not be assigned.
    ///
    /// # Cancel safety
    /// Cancel safe: it changes no state. ListOffsets requests already
    /// written stay on the wire and their answers are discarded.
    pub async fn offsets_for_times(
        &self,
        times: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, Option<franz_client::admin::ListedOffset>>, ConsumeError>
    {
        let asks: Vec<(TopicPartition, OffsetSpec)> = times
            .iter()
            .map(|(tp, ts)| (tp.clone(), OffsetSpec::Timestamp(*ts)))
            .collect();
        let listed = Admin::new(self.client.clone())
            .list_offsets_isolated(&asks, self.config.isolation_level.wire())
            .await?;
        let mut out = BTreeMap::new();
        for (tp, r) in listed {
            let o = r?;
            out.insert(tp, (o.offset >= 0).then_some(o));
        }
        Ok(out)
    }

    /// Hands out what was fetched, else fetches once from every broker
    /// involved: an empty list when nothing came within `timeout`, at most
    /// `max_poll_records` records and about `max_poll_bytes` of decoded
    /// data (never less than one batch). Positions move past exactly the
    /// records returned.
    ///
    /// A partition's error (a broker code retrying cannot fix, an offset out
    /// of range without a reset policy, a truncated log, corrupt data) is
    /// held against that partition and returned, naming it, by a poll with
    /// nothing to hand out before it; a broker's failure touches only that
    /// broker's partitions.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses and repeats nothing. Its
    /// Fetches run as tasks the future owns, so dropping it aborts them: a
    /// Fetch already written stays on the wire, its answer is discarded,
    /// and the next Fetch to that broker is a full one that replaces the
    /// fetch session. Answers applied before the drop stay buffered for the
    /// next poll, positions set by a finished `auto_offset_reset` lookup
    /// are kept, and positions move only when records are returned.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        self.poll_up_to(timeout, self.config.max_poll_records).await
    }

    /// The records one at a time, as a [`futures_util::Stream`] that polls
    /// as needed (the batch [`poll`](Self::poll) stays available once the
    /// stream is dropped).
    ///
    /// ```no_run
    /// # async fn demo(consumer: &mut franz_consumer::Consumer) -> Result<(), franz_consumer::ConsumeError> {
    /// use futures_util::StreamExt;
    /// let mut records = consumer.stream();
    /// while let Some(record) = records.next().await {
    ///     let record = record?;
    ///     println!("{}@{}", record.partition, record.offset);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping a `next()` future, as `tokio::select!` does when another
    /// branch wins, loses and repeats nothing: the fetch it was running
    /// stays inside the stream and the next `next()` resumes it. Dropping
    /// the stream itself is as safe as dropping a [`poll`](Self::poll).
    pub fn stream(&mut self) -> RecordStream<'_> {
        futures_util::stream::unfold(self, |consumer| async move {
            loop {
                match consumer.poll_up_to(STREAM_POLL, 1).await {
                    Ok(mut records) => {
                        if let Some(r) = records.pop() {
                            return Some((Ok(r), consumer));
                        }
                    }
                    Err(e) => return Some((Err(e), consumer)),
                }
            }
        })
        .boxed()
    }

    /// [`poll`](Self::poll) returning at most `max_records` records.
    pub(crate) async fn poll_up_to(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(86_400));
        loop {
            let records = self.hand_out(max_records.max(1));
            if !records.is_empty() {
                return Ok(records);
            }
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            self.reset_missing_positions().await?;
            self.fetch_round(deadline).await;
            let records = self.hand_out(max_records.max(1));
            if !records.is_empty() {
                return Ok(records);
            }
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            if Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Records from the fetched data, round-robin over partitions, within
    /// the poll's budgets. Decodes batches only as the budget admits them.
    fn hand_out(&mut self, max_records: usize) -> Vec<ConsumerRecord> {
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
    fn hand_out_partition(
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
    fn take_error(&mut self) -> Option<ConsumeError> {
        for s in self.partitions.values_mut() {
            if s.buffer.is_none()
                && let Some(e) = s.error.take()
            {
                return Some(e);
            }
        }
        self.failures.pop_front()
    }

    async fn reset_missing_positions(&mut self) -> Result<(), ConsumeError> {
        let missing: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.position.is_none() && s.error.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => {
                for tp in &missing {
                    if let Some(s) = self.partitions.get_mut(tp) {
                        s.error = Some(ConsumeError::NoOffset {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                        });
                    }
                }
                return Ok(());
            }
        };
        self.reset(&missing, spec, true).await
    }

    /// Moves `tps` to `spec` via ListOffsets, at the consumer's isolation
    /// level (so a read-committed reset to latest stops at the last stable
    /// offset). Retriable per-partition errors (a new topic whose leader the
    /// broker does not know yet, a moved leader) are retried with fresh
    /// metadata until `default_api_timeout`. Other per-partition errors are
    /// returned, or with `hold_errors` held against the partition.
    async fn reset(
        &mut self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
        hold_errors: bool,
    ) -> Result<(), ConsumeError> {
        let deadline = Instant::now() + self.config.client.default_api_timeout;
        let mut todo: Vec<TopicPartition> = tps.to_vec();
        while !todo.is_empty() {
            let asks: Vec<(TopicPartition, OffsetSpec)> =
                todo.iter().map(|tp| (tp.clone(), spec)).collect();
            let listed = Admin::new(self.client.clone())
                .list_offsets_isolated(&asks, self.config.isolation_level.wire())
                .await?;
            todo.clear();
            let mut last_error = None;
            for (tp, r) in listed {
                match r {
                    Ok(o) => {
                        if let Some(s) = self.partitions.get_mut(&tp) {
                            // The epoch ListOffsets reports is the one of
                            // the record before the offset (Java's rule).
                            s.seek(o.offset, o.leader_epoch);
                        }
                    }
                    Err(e) if e.is_retriable() && Instant::now() < deadline => {
                        todo.push(tp);
                        last_error = Some(e);
                    }
                    Err(e) if hold_errors => {
                        if let Some(s) = self.partitions.get_mut(&tp) {
                            s.error = Some(e.into());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(e) = last_error {
                tracing::debug!(error = %e, "offset lookup will be retried");
                self.refresh_metadata().await;
                tokio::time::sleep(self.config.client.retry_backoff).await;
            }
        }
        Ok(())
    }

    async fn topic_metadata(
        &self,
        topic: &str,
    ) -> Result<franz_client::TopicMetadata, ConsumeError> {
        if let Some(t) = self.client.metadata().topics.get(topic)
            && !t.partitions.is_empty()
        {
            return Ok(t.clone());
        }
        let deadline = Instant::now() + self.config.client.default_api_timeout;
        let client = &self.client;
        client
            .retry("consumer metadata", deadline, || {
                client.topic_metadata(topic)
            })
            .await
            .map_err(|e| match e {
                ClientError::UnknownTopic(t) => ConsumeError::UnknownTopic(t),
                ClientError::Timeout { .. } => ConsumeError::UnknownTopic(topic.to_string()),
                other => ConsumeError::Client(other),
            })
    }

    /// One Fetch per broker, for the partitions with nothing buffered, sent
    /// concurrently; each answer is applied (buffered) as it arrives, so a
    /// cancelled round keeps what came.
    async fn fetch_round(&mut self, deadline: Instant) {
        let md = self.client.metadata();
        self.notice_recreated_topics(&md);
        let now = Instant::now();
        let mut by_node: BTreeMap<i32, BTreeMap<TopicPartition, FetchState>> = BTreeMap::new();
        let mut refresh = false;
        for (tp, s) in &mut self.partitions {
            let Some(position) = s
                .position
                .filter(|_| !s.paused && s.buffer.is_none() && s.error.is_none())
            else {
                continue;
            };
            if s.preferred_replica.is_some_and(|(_, until)| until <= now) {
                s.preferred_replica = None;
            }
            let leader = md
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.partition));
            let node = match s.preferred_replica {
                Some((node, _)) => Some(node),
                None => md.leader(&tp.topic, tp.partition).map(|b| b.node_id),
            };
            let state = FetchState {
                fetch_offset: position,
                last_fetched_epoch: s.position_epoch,
                current_leader_epoch: leader.map_or(-1, |p| p.leader_epoch),
                max_bytes: self.config.max_partition_fetch_bytes,
            };
            match node {
                Some(n) => {
                    by_node.entry(n).or_default().insert(tp.clone(), state);
                }
                None => refresh = true,
            }
        }
        if !refresh && by_node.is_empty() {
            // Everything is paused or buffered: nothing to fetch or look up
            // until the deadline (a caller racing a wake-up cancels this).
            if !self
                .partitions
                .values()
                .any(|s| s.buffer.is_some() && !s.paused)
            {
                tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
            }
            return;
        }
        if refresh || by_node.is_empty() {
            self.refresh_metadata().await;
            if by_node.is_empty() {
                // Nothing fetchable now: wait a little rather than spin.
                let pause = self
                    .config
                    .client
                    .retry_backoff
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                return;
            }
        }
        let max_wait = self
            .config
            .fetch_max_wait
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut requests = JoinSet::new();
        for (node, wanted) in by_node {
            let session = self
                .sessions
                .entry(node)
                .or_insert_with(|| FetchSession::new(self.config.fetch_sessions));
            let plan = session.next_request(&wanted);
            let req = self.fetch_request(&md, &plan, max_wait);
            let client = self.client.clone();
            let timeout = self.config.client.request_timeout + max_wait;
            requests.spawn(async move {
                let result = async {
                    let conn = client.connection(node, ConnectionKind::Fetch).await?;
                    conn.send_timeout(&req, timeout).await
                }
                .await;
                (node, wanted, result)
            });
        }
        let mut refresh = false;
        while let Some(joined) = requests.join_next().await {
            let Ok((node, wanted, result)) = joined else {
                continue;
            };
            match result {
                Ok(resp) => refresh |= self.apply(&md, node, &wanted, resp),
                Err(e) => {
                    tracing::debug!(node, error = %e, "fetch failed");
                    if let Some(s) = self.sessions.get_mut(&node) {
                        s.handle_failure();
                    }
                    for tp in wanted.keys() {
                        if let Some(s) = self.partitions.get_mut(tp) {
                            s.preferred_replica = None;
                        }
                    }
                    if e.is_retriable() {
                        refresh = true;
                    } else {
                        // Only this broker's partitions are affected; the
                        // error is reported when nothing else is left.
                        self.failures.push_back(e.into());
                    }
                }
            }
        }
        if refresh {
            self.refresh_metadata().await;
        }
    }

    fn fetch_request(
        &self,
        md: &franz_client::ClusterMetadata,
        plan: &SessionRequest,
        max_wait: Duration,
    ) -> FetchRequest {
        let mut topics: Vec<fetch_request::FetchTopic> = Vec::new();
        for (tp, state) in &plan.partitions {
            let partition = fetch_request::FetchPartition {
                partition: tp.partition,
                current_leader_epoch: state.current_leader_epoch,
                fetch_offset: state.fetch_offset,
                last_fetched_epoch: state.last_fetched_epoch,
                log_start_offset: -1,
                partition_max_bytes: state.max_bytes,
                ..Default::default()
            };
            match topics.iter_mut().find(|t| t.topic == tp.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(fetch_request::FetchTopic {
                    topic: tp.topic.clone(),
                    topic_id: md.topics.get(&tp.topic).map(|t| t.id).unwrap_or_default(),
                    partitions: vec![partition],
                    ..Default::default()
                }),
            }
        }
        let mut forgotten: Vec<fetch_request::ForgottenTopic> = Vec::new();
        for tp in &plan.forgotten {
            match forgotten.iter_mut().find(|t| t.topic == tp.topic) {
                Some(t) => t.partitions.push(tp.partition),
                None => forgotten.push(fetch_request::ForgottenTopic {
                    topic: tp.topic.clone(),
                    topic_id: md.topics.get(&tp.topic).map(|t| t.id).unwrap_or_default(),
                    partitions: vec![tp.partition],
                    ..Default::default()
                }),
            }
        }
        FetchRequest {
            replica_id: -1,
            max_wait_ms: i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            isolation_level: self.config.isolation_level.wire(),
            session_id: plan.session_id,
            session_epoch: plan.session_epoch,
            topics,
            forgotten_topics_data: forgotten,
            rack_id: self.config.client.client_rack.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// A topic whose id changed was deleted and created again: its log is a
    /// new one, so positions (and anything fetched) from the old one mean
    /// nothing there. Its partitions start over by `auto_offset_reset`.
    fn notice_recreated_topics(&mut self, md: &franz_client::ClusterMetadata) {
        for name in self.topics.keys() {
            let Some(id) = md.topics.get(name).map(|t| t.id).filter(|id| !id.is_zero()) else {
                continue;
            };
            let old = match self.topic_ids.get_mut(name) {
                Some(known) => std::mem::replace(known, id),
                None => {
                    self.topic_ids.insert(name.clone(), id);
                    continue;
                }
            };
            if !old.is_zero() && old != id {
                tracing::warn!(topic = %name, "topic re-created (new topic id): positions start over");
                for (tp, s) in self.partitions.iter_mut() {
                    if tp.topic == *name {
                        *s = PartitionState::default();
                    }
                }
            }
        }
    }

    /// Applies one broker's answer: data is buffered, errors are held per
    /// partition. True when metadata should be refreshed.
    fn apply(
        &mut self,
        md: &franz_client::ClusterMetadata,
        node: i32,
        wanted: &BTreeMap<TopicPartition, FetchState>,
        resp: FetchResponse,
    ) -> bool {
        let top = ErrorCode::from_code(resp.error_code);
        let trusted = self
            .sessions
            .get_mut(&node)
            .is_none_or(|s| s.handle_response(top, resp.session_id));
        if !trusted {
            tracing::debug!(node, code = %top, "fetch session reset; the next fetch is full");
            return matches!(
                top,
                ErrorCode::FetchSessionTopicIdError
                    | ErrorCode::UnknownTopicId
                    | ErrorCode::InconsistentTopicId
            );
        }
        let mut refresh = false;
        let opts = BatchDecodeOptions {
            verify_crc: self.config.check_crcs,
            ..BatchDecodeOptions::default()
        };
        let now = Instant::now();
        for t in resp.responses {
            // Fetch v13+ answers by topic id only.
            let name = if t.topic.is_empty() {
                md.topic_name(&t.topic_id)
                    .map(str::to_owned)
                    .unwrap_or_default()
            } else {
                t.topic
            };
            let Some(topic) = self.topics.get(&name).cloned() else {
                continue;
            };
            for p in t.partitions {
                let tp = TopicPartition::new(name.as_str(), p.partition_index);
                let Some(asked) = wanted.get(&tp) else {
                    continue;
                };
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                // Sought, reset or already filled since the request went out.
                if state.position != Some(asked.fetch_offset)
                    || state.buffer.is_some()
                    || state.error.is_some()
                {
                    continue;
                }
                let position = asked.fetch_offset;
                let code = ErrorCode::from_code(p.error_code);
                match code {
                    ErrorCode::None => {}
                    ErrorCode::OffsetOutOfRange if state.preferred_replica.is_some() => {
                        // The follower may lag the leader: ask the leader.
                        state.preferred_replica = None;
                        continue;
                    }
                    ErrorCode::OffsetOutOfRange => {
                        if self.config.auto_offset_reset == OffsetReset::None {
                            state.error = Some(ConsumeError::OffsetOutOfRange {
                                topic: name.clone(),
                                partition: p.partition_index,
                                offset: position,
                            });
                        } else {
                            tracing::info!(topic = %name, partition = p.partition_index, position, "offset out of range; resetting");
                            state.position = None;
                        }
                        continue;
                    }
                    c if c.is_retriable() || franz_client::code_invalidates_metadata(c) => {
                        state.preferred_replica = None;
                        refresh = true;
                        continue;
                    }
                    c => {
                        state.error = Some(ConsumeError::Broker {
                            topic: name.clone(),
                            partition: p.partition_index,
                            code: c,
                        });
                        continue;
                    }
                }
                state.high_watermark = Some(p.high_watermark);
                metrics::gauge!("franz_consumer_lag", "topic" => name.clone(), "partition" => p.partition_index.to_string())
                    .set((p.high_watermark - position).max(0) as f64);
                if p.preferred_read_replica >= 0 {
                    state.preferred_replica =
                        Some((p.preferred_read_replica, now + PREFERRED_REPLICA_TTL));
                }
                let diverging = &p.diverging_epoch;
                if diverging.epoch >= 0 || diverging.end_offset >= 0 {
                    state.diverged(
                        &tp,
                        position,
                        (diverging.epoch, diverging.end_offset),
                        self.config.auto_offset_reset,
                    );
                    continue;
                }
                let Some(data) = p.records.filter(|d| !d.is_empty()) else {
                    continue;
                };
                let aborted: Vec<Aborted> = p
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| Aborted {
                        first_offset: a.first_offset,
                        producer_id: a.producer_id,
                    })
                    .collect();
                let decoder = PartitionDecoder::new(
                    &topic,
                    p.partition_index,
                    data,
                    &aborted,
                    self.config.isolation_level,
                    &opts,
                );
                state.buffer = Some(Buffered {
                    decoder,
                    ready: VecDeque::new(),
                    ready_end: position,
                    ready_epoch: state.position_epoch,
                });
            }
        }
        refresh
    }

    /// Closes the fetch sessions (best effort: a broker also evicts idle
    /// sessions on its own). The consumer stays usable; the next fetch opens
    /// new sessions.
    ///
    /// # Cancel safety
    /// The sessions are forgotten locally before anything is sent, so the
    /// consumer stays usable and its next fetches open new sessions either
    /// way. Dropping it aborts the close requests it spawned: one already
    /// written still reaches its broker; one not yet written (its
    /// connection still being made) is never sent, and that broker keeps
    /// the session until it evicts it.
    pub async fn close(&mut self) {
        let md = self.client.metadata();
        let mut requests = JoinSet::new();
        let plans: Vec<(i32, SessionRequest)> = self
            .sessions
            .iter_mut()
            .filter_map(|(node, s)| s.close_request().map(|plan| (*node, plan)))
            .collect();
        for (node, plan) in plans {
            let req = self.fetch_request_for_close(&md, &plan);
            let client = self.client.clone();
            let timeout = self.config.client.request_timeout;
            requests.spawn(async move {
                let conn = client.connection(node, ConnectionKind::Fetch).await?;
                conn.send_timeout(&req, timeout).await.map(|_| ())
            });
        }
        while let Some(r) = requests.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::debug!(error = %e, "closing a fetch session failed");
            }
        }
    }

    fn fetch_request_for_close(
        &self,
        md: &franz_client::ClusterMetadata,
        plan: &SessionRequest,
    ) -> FetchRequest {
        let mut req = self.fetch_request(md, plan, Duration::ZERO);
        req.min_bytes = 0;
        req
    }

    async fn refresh_metadata(&self) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        if let Err(e) = self.client.refresh_metadata_for(&topics).await {
            tracing::debug!(error = %e, "consumer metadata refresh failed");
        }
    }
}
