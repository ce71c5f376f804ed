//! Classic consumer-group membership (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit), eager rebalancing, on top of [`Consumer`].
//!
//! The decisions (what a JoinGroup or SyncGroup error means, which protocol
//! the group chose, what the leader assigns) are plain functions, tested
//! without a broker; the tokio layer sends the requests and runs the
//! heartbeat task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use franz_client::admin::TopicPartition;
use franz_client::franz_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, SyncGroupRequest,
    join_group_request, leave_group_request, offset_commit_request, sync_group_request,
};
use franz_client::{Admin, Client, ClientError, CoordinatorType};
use franz_protocol::ErrorCode;
use tokio::task::JoinHandle;

use crate::assignor::{
    Assignment, Assignor, Member, RangeAssignor, RoundRobinAssignor, Subscription,
};
use crate::config::ConsumerConfig;
use crate::consumer::Consumer;
use crate::error::ConsumeError;
use crate::fetch::ConsumerRecord;
use crate::kip848::{HeartbeatOutcome, IdAssignment, Kip848Member};

/// Group settings, named after the Java consumer's keys.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `session.timeout.ms` (default 45 s): no heartbeat for this long and
    /// the coordinator drops the member.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` (default 300 s), sent as the rebalance timeout:
    /// how long the group waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3 s).
    pub heartbeat_interval: Duration,
    /// Assignors offered, in preference order (default range, then
    /// KafkaJS's RoundRobinAssigner). Every member of a group must share one.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// `group.protocol`: the classic JoinGroup/SyncGroup protocol (default)
    /// or KIP-848's `consumer` protocol, where the coordinator assigns.
    pub protocol: GroupProtocol,
    /// `group.instance.id` (default none): makes this a static member
    /// (KIP-345). An instance that restarts within the session timeout with
    /// the same id gets its partitions back without a rebalance of the
    /// group; closing does not leave the group, so set the session timeout
    /// to cover a restart. Two live members must never share an id: the
    /// older one is fenced with `FENCED_INSTANCE_ID`.
    pub group_instance_id: Option<String>,
}

/// Which group protocol a member speaks (Java's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup, SyncGroup and Heartbeat; the leader member assigns.
    #[default]
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat; the coordinator assigns.
    Consumer,
}

impl GroupConfig {
    /// Java's defaults for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Arc::new(RangeAssignor), Arc::new(RoundRobinAssignor)],
            protocol: GroupProtocol::Classic,
            group_instance_id: None,
        }
    }
}

/// What to do after a JoinGroup or SyncGroup error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStep {
    /// Join again as is (a rebalance is under way, or the coordinator moved).
    Retry,
    /// Join again with the member id the broker just handed out (KIP-394).
    RetryWithAssignedId,
    /// Forget the member id and join as a new member.
    RetryAsNewMember,
    /// Look the coordinator up again, then join.
    FindCoordinator,
    /// Give up: configuration or authorization is wrong.
    Fail,
}

/// The classic protocol's rules for JoinGroup and SyncGroup errors.
pub fn join_step(code: ErrorCode) -> JoinStep {
    match code {
        ErrorCode::MemberIdRequired => JoinStep::RetryWithAssignedId,
        ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration => JoinStep::RetryAsNewMember,
        // Another instance with this group.instance.id took over: two live
        // members must not share one (as Java, fatal).
        ErrorCode::FencedInstanceId => JoinStep::Fail,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => JoinStep::FindCoordinator,
        ErrorCode::RebalanceInProgress | ErrorCode::CoordinatorLoadInProgress => JoinStep::Retry,
        c if c.is_retriable() => JoinStep::Retry,
        _ => JoinStep::Fail,
    }
}

/// The leader's first step: every member's subscription, decoded once (a
/// member whose metadata does not decode fails the assignment).
pub fn decode_members(members: &[(String, bytes::Bytes)]) -> Result<Vec<Member>, ConsumeError> {
    members
        .iter()
        .map(|(id, meta)| {
            Subscription::decode(meta.clone())
                .map(|s| (id.clone(), s))
                .map_err(|e| ConsumeError::Protocol(format!("member {id}'s subscription: {e}")))
        })
        .collect()
}

/// The leader's work: run the chosen assignor over the partitions of the
/// subscribed topics, and encode one assignment per member.
pub fn leader_assignments(
    assignor: &dyn Assignor,
    members: &[Member],
    partitions: &BTreeMap<String, Vec<i32>>,
) -> Result<Vec<(String, bytes::Bytes)>, ConsumeError> {
    let plan = assignor.assign(members, partitions);
    let mut out = Vec::with_capacity(members.len());
    for (id, _) in members {
        let assignment = Assignment {
            version: assignor.version(),
            partitions: plan.get(id).cloned().unwrap_or_default(),
            user_data: bytes::Bytes::new(),
        };
        let bytes = assignment
            .encode()
            .map_err(|e| ConsumeError::Protocol(format!("assignment for {id}: {e}")))?;
        out.push((id.clone(), bytes));
    }
    Ok(out)
}

/// Membership shared with the heartbeat task.
#[derive(Debug, Default)]
struct Membership {
    member_id: String,
    generation: i32,
    /// Set when the coordinator asks for a rejoin (or forgot us).
    rejoin: bool,
    /// KIP-848 state, shared with its heartbeat task.
    kip848: Kip848Member,
    /// A KIP-848 assignment the next `poll` applies.
    pending: Option<IdAssignment>,
    /// A KIP-848 error retrying cannot fix, reported by the next `poll`.
    fatal: Option<ErrorCode>,
}

/// A consumer in a classic consumer group: it subscribes to topics, and
/// the group decides which partitions it reads.
///
/// Offsets are committed only when asked ([`commit`](Self::commit)), so a
/// caller can commit after its handler succeeds. Partitions start from the
/// group's committed offsets, or by `auto_offset_reset` when none exist.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_consumer::ConsumeError> {
/// use std::time::Duration;
/// use franz_consumer::{ConsumerConfig, GroupConfig, GroupConsumer};
/// let mut consumer = GroupConsumer::new(
///     ConsumerConfig::new("127.0.0.1:9092"),
///     GroupConfig::new("billing"),
///     &["orders"],
/// )
/// .await?;
/// loop {
///     let records = consumer.poll(Duration::from_secs(1)).await?;
///     for r in &records { /* handle */ }
///     consumer.commit().await?; // only after the handlers succeeded
/// #   break;
/// }
/// consumer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GroupConsumer {
    consumer: Consumer,
    group: GroupConfig,
    topics: Vec<String>,
    membership: Arc<Mutex<Membership>>,
    heartbeat: Option<JoinHandle<()>>,
    joined: bool,
}

impl GroupConsumer {
    /// Connects; the group is joined on the first `poll`.
    pub async fn new(
        config: ConsumerConfig,
        group: GroupConfig,
        topics: &[&str],
    ) -> Result<Self, ConsumeError> {
        if group.assignors.is_empty() {
            return Err(ConsumeError::Client(ClientError::Config(
                "a group consumer needs at least one assignor".into(),
            )));
        }
        let consumer = Consumer::new(config).await?;
        let membership = Membership {
            kip848: Kip848Member {
                instance_id: group.group_instance_id.clone(),
                ..Kip848Member::default()
            },
            ..Membership::default()
        };
        Ok(Self {
            consumer,
            group,
            topics: topics.iter().map(|t| (*t).to_string()).collect(),
            membership: Arc::new(Mutex::new(membership)),
            heartbeat: None,
            joined: false,
        })
    }

    /// The partitions the group gave this member.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// This member's id and generation (empty and -1 before joining).
    pub fn member(&self) -> (String, i32) {
        let m = lock(&self.membership);
        (
            m.member_id.clone(),
            if self.joined { m.generation } else { -1 },
        )
    }

    /// The fetcher underneath (positions, seeks).
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Joins or rejoins when needed, then fetches as [`Consumer::poll`].
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        match self.group.protocol {
            GroupProtocol::Classic => {
                if !self.joined || lock(&self.membership).rejoin {
                    self.join().await?;
                }
            }
            GroupProtocol::Consumer => {
                if !self.joined {
                    self.join_kip848().await?;
                }
                self.apply_kip848_assignment().await?;
            }
        }
        self.consumer.poll(timeout).await
    }

    /// Commits the current position of every assigned partition.
    pub async fn commit(&mut self) -> Result<(), ConsumeError> {
        let offsets: Vec<(TopicPartition, i64)> = self
            .consumer
            .assignment()
            .into_iter()
            .filter_map(|tp| self.consumer.position(&tp).map(|o| (tp, o)))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` (the next offset to read, per partition) under this
    /// member's generation. A rebalance in the meantime fails the commit
    /// with [`ConsumeError::CommitFailed`] and schedules a rejoin.
    pub async fn commit_offsets(
        &mut self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), ConsumeError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (member_id, generation) = {
            let m = lock(&self.membership);
            (m.member_id.clone(), m.generation)
        };
        let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(tp.topic.as_str()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: *offset,
                    committed_leader_epoch: -1,
                    committed_metadata: Some(String::new()),
                    ..Default::default()
                },
            );
        }
        let req = OffsetCommitRequest {
            group_id: self.group.group_id.clone(),
            generation_id_or_member_epoch: generation,
            member_id,
            group_instance_id: self.group.group_instance_id.clone(),
            retention_time_ms: -1,
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| offset_commit_request::OffsetCommitRequestTopic {
                        name: name.to_string(),
                        partitions,
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let client = self.consumer.client().clone();
        let group_id = self.group.group_id.clone();
        let deadline = Instant::now() + client.config().default_api_timeout;
        let resp = client
            .retry("offset commit", deadline, || async {
                let conn = client
                    .coordinator_connection(CoordinatorType::Group, &group_id)
                    .await?;
                let resp = conn.send(&req).await?;
                // A moved coordinator is retried here; per-partition codes
                // are judged below.
                for t in &resp.topics {
                    for p in &t.partitions {
                        let code = ErrorCode::from_code(p.error_code);
                        if matches!(
                            code,
                            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
                        ) {
                            client.invalidate_coordinator(CoordinatorType::Group, &group_id);
                            return Err(ClientError::Broker {
                                context: format!("OffsetCommit {group_id}"),
                                code,
                                message: None,
                            });
                        }
                    }
                }
                Ok(resp)
            })
            .await?;
        for t in resp.topics {
            for p in t.partitions {
                let code = ErrorCode::from_code(p.error_code);
                if code == ErrorCode::None {
                    continue;
                }
                if join_step(code) != JoinStep::Fail {
                    lock(&self.membership).rejoin = true;
                }
                return Err(ConsumeError::CommitFailed {
                    topic: t.name,
                    partition: p.partition_index,
                    code,
                });
            }
        }
        Ok(())
    }

    /// Stops heartbeating and leaves the group, so its partitions move to
    /// the other members at once rather than after the session timeout.
    ///
    /// A static member (`group_instance_id`) does not leave: under the
    /// classic protocol it sends nothing (as Java), under KIP-848 it leaves
    /// with epoch -2, which keeps its partitions for its next instance. Either
    /// way they move only if no instance returns within the session timeout.
    pub async fn close(mut self) -> Result<(), ConsumeError> {
        self.stop_heartbeat();
        if !self.joined {
            return Ok(());
        }
        if self.group.group_instance_id.is_some() && self.group.protocol == GroupProtocol::Classic {
            return Ok(());
        }
        if self.group.protocol == GroupProtocol::Consumer {
            let req = lock(&self.membership)
                .kip848
                .leave_request(&self.group.group_id);
            let conn = self
                .consumer
                .client()
                .coordinator_connection(CoordinatorType::Group, &self.group.group_id)
                .await?;
            conn.send(&req).await?;
            return Ok(());
        }
        let member_id = lock(&self.membership).member_id.clone();
        let client = self.consumer.client();
        let conn = client
            .coordinator_connection(CoordinatorType::Group, &self.group.group_id)
            .await?;
        // v0-2 name the member at the top level, v3+ in a batch of members.
        let batched = conn.version_of::<LeaveGroupRequest>()? >= 3;
        let req = LeaveGroupRequest {
            group_id: self.group.group_id.clone(),
            member_id: if batched {
                String::new()
            } else {
                member_id.clone()
            },
            members: if batched {
                vec![leave_group_request::MemberIdentity {
                    member_id,
                    group_instance_id: self.group.group_instance_id.clone(),
                    reason: Some("the consumer is closing".into()),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        conn.send(&req).await?;
        Ok(())
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// The eager rebalance: JoinGroup, SyncGroup (the leader assigns), then
    /// assign the fetcher and start from the committed offsets.
    async fn join(&mut self) -> Result<(), ConsumeError> {
        self.stop_heartbeat();
        self.joined = false;
        let client = self.consumer.client().clone();
        let group_id = self.group.group_id.clone();
        let deadline =
            Instant::now() + self.group.rebalance_timeout + client.config().request_timeout;
        let protocols = self
            .group
            .assignors
            .iter()
            .map(|a| {
                let subscription = Subscription {
                    version: a.version(),
                    topics: self.topics.clone(),
                    user_data: bytes::Bytes::new(),
                };
                subscription
                    .encode()
                    .map(|metadata| join_group_request::JoinGroupRequestProtocol {
                        name: a.name().to_string(),
                        metadata,
                        ..Default::default()
                    })
                    .map_err(|e| ConsumeError::Protocol(format!("subscription: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            if Instant::now() >= deadline {
                return Err(ConsumeError::Client(ClientError::Timeout {
                    what: format!("joining group {group_id}"),
                    after: self.group.rebalance_timeout,
                }));
            }
            let member_id = lock(&self.membership).member_id.clone();
            let join = JoinGroupRequest {
                group_id: group_id.clone(),
                session_timeout_ms: millis(self.group.session_timeout),
                rebalance_timeout_ms: millis(self.group.rebalance_timeout),
                member_id: member_id.clone(),
                group_instance_id: self.group.group_instance_id.clone(),
                protocol_type: "consumer".into(),
                protocols: protocols.clone(),
                ..Default::default()
            };
            // The coordinator holds JoinGroup until every member rejoins.
            let Some(resp) = self
                .rebalance_call(&client, &join, "JoinGroup", |r| {
                    (r.error_code, r.member_id.clone())
                })
                .await?
            else {
                continue;
            };
            {
                let mut m = lock(&self.membership);
                m.member_id.clone_from(&resp.member_id);
                m.generation = resp.generation_id;
                m.rejoin = false;
            }
            let protocol = resp.protocol_name.clone().unwrap_or_default();
            // A static leader that rejoined a stable group is told to skip
            // the assignment (v9+): the group keeps the one it has.
            let assignments = if resp.leader == resp.member_id && !resp.skip_assignment {
                let assignor = self
                    .group
                    .assignors
                    .iter()
                    .find(|a| a.name() == protocol)
                    .ok_or_else(|| {
                        ConsumeError::Protocol(format!(
                            "the group chose assignor {protocol}, which this member does not have"
                        ))
                    })?;
                let raw: Vec<(String, bytes::Bytes)> = resp
                    .members
                    .iter()
                    .map(|m| (m.member_id.clone(), m.metadata.clone()))
                    .collect();
                let members = decode_members(&raw)?;
                let mut topics: Vec<String> = members
                    .iter()
                    .flat_map(|(_, s)| s.topics.iter().cloned())
                    .collect();
                topics.sort();
                topics.dedup();
                let mut partitions = BTreeMap::new();
                for t in topics {
                    // A member may subscribe to a topic that does not exist
                    // (yet): it simply gets none of it.
                    if let Ok(md) = client.topic_metadata(&t).await {
                        let mut ps: Vec<i32> = md.partitions.iter().map(|p| p.partition).collect();
                        ps.sort_unstable();
                        partitions.insert(t, ps);
                    }
                }
                leader_assignments(assignor.as_ref(), &members, &partitions)?
                    .into_iter()
                    .map(
                        |(member_id, assignment)| sync_group_request::SyncGroupRequestAssignment {
                            member_id,
                            assignment,
                            ..Default::default()
                        },
                    )
                    .collect()
            } else {
                Vec::new()
            };
            let sync = SyncGroupRequest {
                group_id: group_id.clone(),
                generation_id: resp.generation_id,
                member_id: resp.member_id.clone(),
                group_instance_id: self.group.group_instance_id.clone(),
                protocol_type: Some("consumer".into()),
                protocol_name: Some(protocol),
                assignments,
                ..Default::default()
            };
            let Some(sync_resp) = self
                .rebalance_call(&client, &sync, "SyncGroup", |r| {
                    (r.error_code, resp.member_id.clone())
                })
                .await?
            else {
                continue;
            };
            let assignment = Assignment::decode(sync_resp.assignment)
                .map_err(|e| ConsumeError::Protocol(format!("assignment: {e}")))?;
            let tps: Vec<TopicPartition> = assignment
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| TopicPartition::new(t.as_str(), *p)))
                .collect();
            self.consumer.assign(&tps).await?;
            self.start_from_committed(&tps).await?;
            self.joined = true;
            self.start_heartbeat();
            tracing::info!(group = %group_id, generation = resp.generation_id, partitions = tps.len(), "joined group");
            return Ok(());
        }
    }

    /// A group error retrying will not fix, naming the request and group.
    fn group_error(&self, what: &str, code: ErrorCode) -> ConsumeError {
        ConsumeError::Client(ClientError::Broker {
            context: format!("{what} {}", self.group.group_id),
            code,
            message: None,
        })
    }

    /// KIP-848 join: heartbeat with epoch 0 until the coordinator accepts the
    /// member, then keep heartbeating from a task.
    async fn join_kip848(&mut self) -> Result<(), ConsumeError> {
        let client = self.consumer.client().clone();
        let deadline = Instant::now() + self.group.rebalance_timeout;
        loop {
            let outcome =
                kip848_heartbeat(&client, &self.group, &self.topics, &self.membership).await;
            match outcome {
                Ok(HeartbeatOutcome::Steady | HeartbeatOutcome::Assign(_)) => break,
                Ok(HeartbeatOutcome::Fatal(code)) => {
                    return Err(self.group_error("ConsumerGroupHeartbeat", code));
                }
                Ok(HeartbeatOutcome::Fenced(_) | HeartbeatOutcome::Retry(_)) => {}
                Err(e) if e.is_retriable() => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= deadline {
                return Err(ConsumeError::Client(ClientError::Timeout {
                    what: format!("joining group {}", self.group.group_id),
                    after: self.group.rebalance_timeout,
                }));
            }
            tokio::time::sleep(client.config().retry_backoff).await;
        }
        self.joined = true;
        let (client, group, topics, membership) = (
            client,
            self.group.clone(),
            self.topics.clone(),
            Arc::clone(&self.membership),
        );
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                let interval = lock(&membership).kip848.heartbeat_interval_ms;
                tokio::time::sleep(Duration::from_millis(
                    u64::try_from(interval).unwrap_or(3000),
                ))
                .await;
                match kip848_heartbeat(&client, &group, &topics, &membership).await {
                    Ok(HeartbeatOutcome::Fatal(code)) => {
                        lock(&membership).fatal = Some(code);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "heartbeat failed; retrying"),
                }
            }
        }));
        Ok(())
    }

    /// Applies the coordinator's latest assignment to the fetcher: kept
    /// partitions keep their positions, new ones start from the committed
    /// offsets.
    async fn apply_kip848_assignment(&mut self) -> Result<(), ConsumeError> {
        let (pending, fatal) = {
            let mut m = lock(&self.membership);
            (m.pending.take(), m.fatal.take())
        };
        if let Some(code) = fatal {
            return Err(self.group_error("ConsumerGroupHeartbeat", code));
        }
        let Some(target) = pending else {
            return Ok(());
        };
        let client = self.consumer.client().clone();
        let mut md = client.metadata();
        if target.keys().any(|id| md.topic_name(id).is_none()) {
            md = client.refresh_metadata_for(&self.topics).await?;
        }
        let mut tps = Vec::new();
        for (id, parts) in &target {
            let Some(name) = md.topic_name(id) else {
                tracing::warn!(?id, "assigned a topic id the metadata does not know");
                continue;
            };
            tps.extend(parts.iter().map(|p| TopicPartition::new(name, *p)));
        }
        let before: Vec<TopicPartition> = self.consumer.assignment();
        self.consumer.assign(&tps).await?;
        let fresh: Vec<TopicPartition> =
            tps.into_iter().filter(|tp| !before.contains(tp)).collect();
        self.start_from_committed(&fresh).await?;
        tracing::info!(group = %self.group.group_id, partitions = self.consumer.assignment().len(), "assignment applied");
        Ok(())
    }

    /// Sends a JoinGroup or SyncGroup to the coordinator, which may hold it
    /// for up to the rebalance timeout. `None` means go round again: after a
    /// retriable failure (the coordinator is looked up again, after a
    /// backoff) or an error code `after_error` dealt with. `error_of` gives
    /// the response's code and the member id it offers.
    async fn rebalance_call<R: franz_protocol::Request>(
        &self,
        client: &Client,
        req: &R,
        what: &str,
        error_of: impl Fn(&R::Response) -> (i16, String),
    ) -> Result<Option<R::Response>, ConsumeError> {
        let group_id = &self.group.group_id;
        let sent = async {
            let conn = client
                .coordinator_connection(CoordinatorType::Group, group_id)
                .await?;
            conn.send_timeout(
                req,
                self.group.rebalance_timeout + client.config().request_timeout,
            )
            .await
        }
        .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                client.invalidate_coordinator(CoordinatorType::Group, group_id);
                tokio::time::sleep(client.config().retry_backoff).await;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let (code, offered_id) = error_of(&resp);
        let code = ErrorCode::from_code(code);
        if code != ErrorCode::None {
            self.after_error(client, code, &offered_id, what).await?;
            return Ok(None);
        }
        Ok(Some(resp))
    }

    async fn after_error(
        &self,
        client: &Client,
        code: ErrorCode,
        offered_id: &str,
        what: &str,
    ) -> Result<(), ConsumeError> {
        match join_step(code) {
            JoinStep::RetryWithAssignedId => {
                lock(&self.membership).member_id = offered_id.to_string()
            }
            JoinStep::RetryAsNewMember => lock(&self.membership).member_id.clear(),
            JoinStep::FindCoordinator => {
                client.invalidate_coordinator(CoordinatorType::Group, &self.group.group_id);
                tokio::time::sleep(client.config().retry_backoff).await;
            }
            JoinStep::Retry => tokio::time::sleep(client.config().retry_backoff).await,
            JoinStep::Fail => return Err(self.group_error(what, code)),
        }
        Ok(())
    }

    /// Seeks every assigned partition to the group's committed offset; the
    /// rest keep no position, so `auto_offset_reset` decides.
    async fn start_from_committed(&mut self, tps: &[TopicPartition]) -> Result<(), ConsumeError> {
        if tps.is_empty() {
            return Ok(());
        }
        let committed = Admin::new(self.consumer.client().clone())
            .list_group_offsets(&self.group.group_id)
            .await?;
        for tp in tps {
            if let Some(o) = committed.get(tp).filter(|o| o.committed >= 0) {
                self.consumer.seek(tp, o.committed)?;
            }
        }
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        let client = self.consumer.client().clone();
        let group_id = self.group.group_id.clone();
        let interval = self.group.heartbeat_interval;
        let instance_id = self.group.group_instance_id.clone();
        let membership = Arc::clone(&self.membership);
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let (member_id, generation) = {
                    let m = lock(&membership);
                    (m.member_id.clone(), m.generation)
                };
                let req = HeartbeatRequest {
                    group_id: group_id.clone(),
                    generation_id: generation,
                    member_id,
                    group_instance_id: instance_id.clone(),
                    ..Default::default()
                };
                let sent = async {
                    let conn = client
                        .coordinator_connection(CoordinatorType::Group, &group_id)
                        .await?;
                    conn.send(&req).await
                }
                .await;
                let code = match sent {
                    Ok(r) => ErrorCode::from_code(r.error_code),
                    Err(e) => {
                        tracing::debug!(error = %e, "heartbeat failed; finding the coordinator again");
                        client.invalidate_coordinator(CoordinatorType::Group, &group_id);
                        continue;
                    }
                };
                match join_step(code) {
                    _ if code == ErrorCode::None => {}
                    JoinStep::FindCoordinator => {
                        client.invalidate_coordinator(CoordinatorType::Group, &group_id)
                    }
                    step => {
                        let mut m = lock(&membership);
                        if step == JoinStep::RetryAsNewMember {
                            m.member_id.clear();
                        }
                        m.rejoin = true;
                        tracing::info!(group = %group_id, %code, "rejoin needed");
                        return;
                    }
                }
            }
        }));
    }
}

/// One KIP-848 heartbeat round trip against the shared state.
async fn kip848_heartbeat(
    client: &Client,
    group: &GroupConfig,
    topics: &[String],
    membership: &Mutex<Membership>,
) -> Result<HeartbeatOutcome, ClientError> {
    let req = lock(membership).kip848.request(
        &group.group_id,
        topics,
        millis(group.rebalance_timeout),
        client.config().client_rack.as_deref(),
    );
    let conn = client
        .coordinator_connection(CoordinatorType::Group, &group.group_id)
        .await;
    let resp = match conn {
        Ok(c) => c.send(&req).await,
        Err(e) => Err(e),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            client.invalidate_coordinator(CoordinatorType::Group, &group.group_id);
            return Err(e);
        }
    };
    let mut guard = lock(membership);
    let m = &mut *guard;
    let outcome = m.kip848.on_response(&resp);
    m.member_id.clone_from(&m.kip848.member_id);
    m.generation = m.kip848.epoch;
    match &outcome {
        HeartbeatOutcome::Assign(target) => m.pending = Some(target.clone()),
        HeartbeatOutcome::Fenced(code) => {
            tracing::info!(group = %group.group_id, %code, "fenced; rejoining");
            m.pending = Some(IdAssignment::new());
        }
        HeartbeatOutcome::Retry(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable) => {
            client.invalidate_coordinator(CoordinatorType::Group, &group.group_id);
        }
        _ => {}
    }
    Ok(outcome)
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn lock(m: &Mutex<Membership>) -> MutexGuard<'_, Membership> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn join_errors_map_to_the_classic_protocol_steps() {
        assert_eq!(
            join_step(ErrorCode::MemberIdRequired),
            JoinStep::RetryWithAssignedId
        );
        assert_eq!(
            join_step(ErrorCode::UnknownMemberId),
            JoinStep::RetryAsNewMember
        );
        assert_eq!(
            join_step(ErrorCode::IllegalGeneration),
            JoinStep::RetryAsNewMember
        );
        assert_eq!(join_step(ErrorCode::RebalanceInProgress), JoinStep::Retry);
        assert_eq!(
            join_step(ErrorCode::NotCoordinator),
            JoinStep::FindCoordinator
        );
        assert_eq!(
            join_step(ErrorCode::InconsistentGroupProtocol),
            JoinStep::Fail
        );
        assert_eq!(
            join_step(ErrorCode::GroupAuthorizationFailed),
            JoinStep::Fail
        );
        assert_eq!(join_step(ErrorCode::FencedInstanceId), JoinStep::Fail);
    }

    #[test]
    fn the_leader_encodes_one_assignment_per_member() {
        let sub = |topics: &[&str]| {
            Subscription {
                topics: topics.iter().map(|t| (*t).to_string()).collect(),
                ..Subscription::default()
            }
            .encode()
            .unwrap()
        };
        let members = vec![
            ("m2".to_string(), sub(&["t"])),
            ("m1".to_string(), sub(&["t"])),
        ];
        let partitions: BTreeMap<String, Vec<i32>> = [("t".to_string(), vec![0, 1, 2, 3])].into();
        let out = leader_assignments(
            &RoundRobinAssignor,
            &decode_members(&members).unwrap(),
            &partitions,
        )
        .unwrap();
        let decoded: BTreeMap<String, Assignment> = out
            .into_iter()
            .map(|(id, b)| (id, Assignment::decode(b).unwrap()))
            .collect();
        assert_eq!(decoded["m1"].partitions["t"], vec![0, 2]);
        assert_eq!(decoded["m2"].partitions["t"], vec![1, 3]);
        let bad = vec![("m1".to_string(), bytes::Bytes::from_static(b"\x00"))];
        assert!(matches!(
            decode_members(&bad),
            Err(ConsumeError::Protocol(_))
        ));
    }
}
