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

mod fetch_round;
mod hand_out;
mod positions;

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
}
