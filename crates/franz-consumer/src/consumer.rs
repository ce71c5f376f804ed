//! The tokio layer: positions per assigned partition, one Fetch per broker
//! per round, offset resets through ListOffsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_client::admin::{OffsetSpec, TopicPartition};
use franz_client::franz_protocol::messages::{FetchRequest, FetchResponse, fetch_request};
use franz_client::franz_protocol::record::BatchDecodeOptions;
use franz_client::{Admin, Client, ClientError, ConnectionKind};
use franz_protocol::ErrorCode;
use tokio::task::JoinSet;

use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::ConsumeError;
use crate::fetch::{Aborted, ConsumerRecord, decode_partition};

/// How long a broker-chosen read replica (KIP-392) is used before the
/// leader is asked again, as Java's `metadata.max.age.ms` bounds it.
const PREFERRED_REPLICA_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct PartitionState {
    /// The next offset to fetch; `None` until reset or sought.
    position: Option<i64>,
    /// A read replica the leader pointed us to, and until when to use it.
    preferred_replica: Option<(i32, Instant)>,
    /// A decode error met at `position`, reported by the next `poll`.
    corrupt: Option<franz_protocol::DecodeError>,
    /// Not fetched until resumed (the position is kept).
    paused: bool,
    /// The partition's high watermark in the latest fetch answer.
    high_watermark: Option<i64>,
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
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn new(config: ConsumerConfig) -> Result<Self, ConsumeError> {
        let client = Client::connect(config.client.clone()).await?;
        Ok(Self::with_client(client, config))
    }

    /// A consumer sharing an existing client's connections and metadata.
    pub fn with_client(client: Client, config: ConsumerConfig) -> Self {
        Self {
            client,
            config,
            topics: HashMap::new(),
            partitions: BTreeMap::new(),
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Replaces the assignment. Positions of partitions kept are kept; an
    /// unknown topic or partition is an error and changes nothing.
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

    /// Moves `tp` to `offset`; the next `poll` fetches from there.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| ConsumeError::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            })?;
        state.position = Some(offset);
        state.corrupt = None;
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

    /// Drops `tp`'s position (and any pending error), so the next `poll`
    /// starts it by `auto_offset_reset` unless it is sought first.
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
    pub async fn seek_to_beginning(&mut self) -> Result<(), ConsumeError> {
        self.reset_all(OffsetSpec::Earliest).await
    }

    /// Moves every assigned partition to its log end offset.
    pub async fn seek_to_end(&mut self) -> Result<(), ConsumeError> {
        self.reset_all(OffsetSpec::Latest).await
    }

    async fn reset_all(&mut self, spec: OffsetSpec) -> Result<(), ConsumeError> {
        let all: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        self.reset(&all, spec).await
    }

    /// Fetches once from every broker involved and returns what arrived:
    /// an empty list when nothing came within `timeout`.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.report_corruption()?;
            self.reset_missing_positions().await?;
            let records = self.fetch_round(deadline).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// A decode error is reported once nothing before it is left to return.
    fn report_corruption(&mut self) -> Result<(), ConsumeError> {
        for (tp, s) in &mut self.partitions {
            if let Some(source) = s.corrupt.take() {
                return Err(ConsumeError::Corrupt {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: s.position.unwrap_or(-1),
                    source,
                });
            }
        }
        Ok(())
    }

    async fn reset_missing_positions(&mut self) -> Result<(), ConsumeError> {
        let missing: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => {
                let tp = &missing[0];
                return Err(ConsumeError::NoOffset {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        };
        self.reset(&missing, spec).await
    }

    /// Moves `tps` to `spec` via ListOffsets. Retriable per-partition errors
    /// (a new topic whose leader the broker does not know yet, a moved
    /// leader) are retried with fresh metadata until `default_api_timeout`.
    async fn reset(
        &mut self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<(), ConsumeError> {
        let deadline = Instant::now() + self.config.client.default_api_timeout;
        let mut todo: Vec<TopicPartition> = tps.to_vec();
        while !todo.is_empty() {
            let asks: Vec<(TopicPartition, OffsetSpec)> =
                todo.iter().map(|tp| (tp.clone(), spec)).collect();
            let listed = Admin::new(self.client.clone()).list_offsets(&asks).await?;
            todo.clear();
            let mut last_error = None;
            for (tp, r) in listed {
                match r {
                    Ok(o) => {
                        if let Some(s) = self.partitions.get_mut(&tp) {
                            s.position = Some(o.offset);
                            s.corrupt = None;
                        }
                    }
                    Err(e) if e.is_retriable() && Instant::now() < deadline => {
                        todo.push(tp);
                        last_error = Some(e);
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

    /// One Fetch per broker, sent concurrently; responses applied in turn.
    async fn fetch_round(
        &mut self,
        deadline: Instant,
    ) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let md = self.client.metadata();
        let now = Instant::now();
        let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        let mut refresh = false;
        for (tp, s) in &mut self.partitions {
            let Some(position) = s.position.filter(|_| !s.paused) else {
                continue;
            };
            if s.preferred_replica.is_some_and(|(_, until)| until <= now) {
                s.preferred_replica = None;
            }
            let node = match s.preferred_replica {
                Some((node, _)) => Some(node),
                None => md.leader(&tp.topic, tp.partition).map(|b| b.node_id),
            };
            match node {
                Some(n) => by_node.entry(n).or_default().push((tp.clone(), position)),
                None => refresh = true,
            }
        }
        if !refresh && by_node.is_empty() {
            // Everything is paused: nothing to fetch or look up until the
            // deadline (a caller racing a wake-up cancels this sleep).
            tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
            return Ok(Vec::new());
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
                return Ok(Vec::new());
            }
        }
        let max_wait = self
            .config
            .fetch_max_wait
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut requests = JoinSet::new();
        for (node, parts) in by_node {
            let req = self.fetch_request(&md, &parts, max_wait);
            let client = self.client.clone();
            let timeout = self.config.client.request_timeout + max_wait;
            requests.spawn(async move {
                let result = async {
                    let conn = client.connection(node, ConnectionKind::Fetch).await?;
                    conn.send_timeout(&req, timeout).await
                }
                .await;
                (node, parts, result)
            });
        }
        let mut records = Vec::new();
        let mut refresh = false;
        while let Some(joined) = requests.join_next().await {
            let Ok((node, parts, result)) = joined else {
                continue;
            };
            match result {
                Ok(resp) => refresh |= self.apply(&md, resp, &mut records)?,
                Err(e) => {
                    tracing::debug!(node, error = %e, "fetch failed; refreshing metadata");
                    for (tp, _) in &parts {
                        if let Some(s) = self.partitions.get_mut(tp) {
                            s.preferred_replica = None;
                        }
                    }
                    if !e.is_retriable() {
                        return Err(e.into());
                    }
                    refresh = true;
                }
            }
        }
        if refresh {
            self.refresh_metadata().await;
        }
        Ok(records)
    }

    fn fetch_request(
        &self,
        md: &franz_client::ClusterMetadata,
        parts: &[(TopicPartition, i64)],
        max_wait: Duration,
    ) -> FetchRequest {
        let mut topics: Vec<fetch_request::FetchTopic> = Vec::new();
        for (tp, position) in parts {
            let meta = md.topics.get(&tp.topic);
            let leader_epoch = meta
                .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.partition))
                .map_or(-1, |p| p.leader_epoch);
            let partition = fetch_request::FetchPartition {
                partition: tp.partition,
                current_leader_epoch: leader_epoch,
                fetch_offset: *position,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                partition_max_bytes: self.config.max_partition_fetch_bytes,
                ..Default::default()
            };
            match topics.iter_mut().find(|t| t.topic == tp.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(fetch_request::FetchTopic {
                    topic: tp.topic.clone(),
                    topic_id: meta.map(|t| t.id).unwrap_or_default(),
                    partitions: vec![partition],
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
            // Sessionless full fetches (KIP-227's id 0, epoch -1).
            session_id: 0,
            session_epoch: -1,
            topics,
            rack_id: self.config.client.client_rack.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Applies one response; true when metadata should be refreshed.
    fn apply(
        &mut self,
        md: &franz_client::ClusterMetadata,
        resp: FetchResponse,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<bool, ConsumeError> {
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
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                let Some(position) = state.position else {
                    continue;
                };
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
                            return Err(ConsumeError::OffsetOutOfRange {
                                topic: name,
                                partition: p.partition_index,
                                offset: position,
                            });
                        }
                        tracing::info!(topic = %name, partition = p.partition_index, position, "offset out of range; resetting");
                        state.position = None;
                        continue;
                    }
                    c if c.is_retriable() || franz_client::code_invalidates_metadata(c) => {
                        state.preferred_replica = None;
                        refresh = true;
                        continue;
                    }
                    c => {
                        return Err(ConsumeError::Broker {
                            topic: name,
                            partition: p.partition_index,
                            code: c,
                        });
                    }
                }
                state.high_watermark = Some(p.high_watermark);
                if p.preferred_read_replica >= 0 {
                    state.preferred_replica =
                        Some((p.preferred_read_replica, now + PREFERRED_REPLICA_TTL));
                }
                let Some(data) = p.records else { continue };
                let aborted: Vec<Aborted> = p
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| Aborted {
                        first_offset: a.first_offset,
                        producer_id: a.producer_id,
                    })
                    .collect();
                let decoded = decode_partition(
                    &topic,
                    p.partition_index,
                    position,
                    data,
                    &aborted,
                    self.config.isolation_level,
                    &opts,
                );
                state.position = Some(decoded.next_position);
                state.corrupt = decoded.error;
                out.extend(decoded.records);
            }
        }
        Ok(refresh)
    }

    async fn refresh_metadata(&self) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        if let Err(e) = self.client.refresh_metadata_for(&topics).await {
            tracing::debug!(error = %e, "consumer metadata refresh failed");
        }
    }
}
