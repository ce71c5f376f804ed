//! [`GroupConsumer`]: a consumer whose partitions a consumer group decides,
//! under the classic protocol (eager or cooperative) or KIP-848's, with
//! async rebalance hooks ([`RebalanceListener`]) that the group waits for.
//!
//! The membership itself is a sans-io machine ([`crate::member`]) run by
//! one driver task (the private `driver` module); this module is the application's
//! side: it applies assignments to the fetcher, runs the hooks, commits.
#![allow(clippy::disallowed_methods)] // a driver: poll deadlines and revoke timeouts; the member machines get `now` from here

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_client::TopicPartition;
use franz_client::franz_protocol::messages::{OffsetCommitRequest, offset_commit_request};
use franz_client::{Admin, Client, ClientError, CoordinatorType};
use franz_protocol::ErrorCode;
use tokio::task::JoinHandle;

use crate::assignor::{Assignor, CooperativeStickyAssignor, RangeAssignor, RoundRobinAssignor};
use crate::config::ConsumerConfig;
use crate::consumer::Consumer;
use crate::driver::{DriverSettings, Machine, Shared, drive};
use crate::error::{ConsumeError, GroupConfigError};
use crate::fetch::ConsumerRecord;
use crate::member::classic::ClassicMember;
use crate::member::kip848::Kip848Member;
use crate::member::{AppInput, MemberEvent, MemberSettings, Phase};

pub use crate::member::classic::{JoinStep, join_step};

mod commit;
mod config;

pub use commit::OffsetMarks;
use config::random_member_id;
pub use config::{GroupConfig, GroupProtocol};

/// The future a [`RebalanceListener`] hook returns.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Async rebalance hooks, the same under every protocol. They run inside
/// [`GroupConsumer::poll`] (and `close`), on the application's task, and
/// the group waits for them:
///
/// - `on_revoked` is awaited before the partitions are released: under
///   eager rebalancing before the JoinGroup, under cooperative after the
///   SyncGroup that shows them gone and before the follow-up JoinGroup,
///   under KIP-848 before the revocation is acknowledged. After it returns,
///   the offsets marked processed ([`OffsetMarks`]) for those partitions are
///   committed, and they are fetched no more.
/// - `on_assigned` runs after new partitions are positioned at their
///   committed offsets, before records from them are returned.
/// - `on_lost` runs when partitions were taken without a revoke (the member
///   was fenced or evicted, or missed `max_poll_interval`): someone else may
///   own them already, so nothing is committed for them.
///
/// Under cooperative rebalancing and KIP-848 a hook gets only the
/// partitions that change; the ones kept are fetched throughout.
///
/// ```
/// use franz_consumer::{HookFuture, RebalanceListener, TopicPartition};
/// struct Log;
/// impl RebalanceListener for Log {
///     fn on_revoked<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
///         Box::pin(async move { println!("revoked {partitions:?}") })
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync + 'static {
    /// New partitions, positioned and about to be fetched.
    fn on_assigned<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        let _ = partitions;
        Box::pin(async {})
    }
    /// Partitions about to be released: finish (or abandon) their work and
    /// mark what was processed; the group waits up to `revoke_timeout`.
    fn on_revoked<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        let _ = partitions;
        Box::pin(async {})
    }
    /// Partitions already taken away; their results must not be committed.
    fn on_lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        let _ = partitions;
        Box::pin(async {})
    }
}

/// A consumer in a consumer group: it subscribes to topics, and the group
/// decides which partitions it reads.
///
/// Offsets are committed only when asked ([`commit`](Self::commit),
/// [`commit_offsets`](Self::commit_offsets), marks), so a caller can commit
/// after its handler succeeds. Partitions start from the group's committed
/// offsets, or by `auto_offset_reset` when none exist. Heartbeats run in a
/// background task, so a slow handler stays in the group up to
/// `max_poll_interval`; rebalances are applied, and hooks run, in `poll`.
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
pub struct GroupConsumer {
    consumer: Consumer,
    group: GroupConfig,
    topics: Vec<String>,
    shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
    listener: Option<Arc<dyn RebalanceListener>>,
    marks: OffsetMarks,
    /// What this member committed last, per partition.
    committed: BTreeMap<TopicPartition, i64>,
    /// Set once the member stopped for good: every later call says so.
    stopped: Option<StopCause>,
}

/// Why a member stopped for good.
#[derive(Debug, Clone, Copy)]
enum StopCause {
    /// The coordinator refused it (`api`, `code`).
    Refused(&'static str, ErrorCode),
    /// The driver failed (reported once as the client error; `Closed` after).
    Driver,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.group.group_id)
            .field("topics", &self.topics)
            .field("assignment", &self.consumer.assignment())
            .finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Connects; the group is joined on the first `poll`.
    ///
    /// # Cancel safety
    /// Dropping it before it returns leaves nothing behind: no group is
    /// joined yet, and the connections it opened close with its client.
    pub async fn new(
        config: ConsumerConfig,
        group: GroupConfig,
        topics: &[&str],
    ) -> Result<Self, ConsumeError> {
        group.validate()?;
        let client = Client::connect(config.client.clone()).await?;
        Self::with_client(config, group, topics, client)
    }

    /// A group consumer on an existing client's connections and metadata.
    pub fn with_client(
        config: ConsumerConfig,
        group: GroupConfig,
        topics: &[&str],
        client: Client,
    ) -> Result<Self, ConsumeError> {
        group.validate()?;
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_string()).collect();
        let settings = MemberSettings {
            group_id: group.group_id.clone(),
            instance_id: group.group_instance_id.clone(),
            topics: topics.clone(),
            topic_regex: None,
            session_timeout: group.session_timeout,
            rebalance_timeout: group.rebalance_timeout,
            heartbeat_interval: group.heartbeat_interval,
            max_poll_interval: group.max_poll_interval,
            revoke_timeout: group.revoke_timeout,
            retry_backoff: client.config().retry_backoff,
            rack: client.config().client_rack.clone(),
        };
        let machine = match group.protocol {
            GroupProtocol::Classic => {
                Machine::Classic(ClassicMember::new(settings, group.assignors.clone()))
            }
            GroupProtocol::Consumer => {
                Machine::Kip848(Kip848Member::with_member_id(settings, random_member_id()))
            }
        };
        Ok(Self {
            consumer: Consumer::with_client(config, client),
            group,
            topics,
            shared: Shared::new(machine),
            driver: None,
            listener: None,
            marks: OffsetMarks::default(),
            committed: BTreeMap::new(),
            stopped: None,
        })
    }

    /// Installs the rebalance hooks (before the first `poll`, or they miss
    /// the first assignment).
    pub fn set_listener(&mut self, listener: impl RebalanceListener) {
        self.listener = Some(Arc::new(listener));
    }

    /// The offset marks the revoke step and [`commit_marked`](Self::commit_marked)
    /// commit; clone it into the tasks that process records.
    pub fn offset_marks(&self) -> OffsetMarks {
        self.marks.clone()
    }

    /// The partitions this member fetches.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// This member's id and generation (KIP-848: member epoch); empty and
    /// -1 before joining.
    pub fn member(&self) -> (String, i32) {
        let g = self.shared.lock();
        let joined = matches!(g.machine.phase(), Phase::Stable | Phase::Revoking);
        (
            g.machine.member_id().to_string(),
            if joined { g.machine.generation() } else { -1 },
        )
    }

    /// This member as a transaction sees it, for
    /// `Producer::send_offsets_to_transaction` (KIP-447): group id, member
    /// id, generation and static instance id. The coordinator refuses a
    /// transactional commit from a member that has been rebalanced away.
    pub fn group_metadata(&self) -> franz_client::ConsumerGroupMetadata {
        let (member_id, generation_id) = self.member();
        franz_client::ConsumerGroupMetadata {
            group_id: self.group.group_id.clone(),
            generation_id,
            member_id,
            group_instance_id: self.group.group_instance_id.clone(),
        }
    }

    /// Replaces the subscription with `topics`, at any time. Under the
    /// classic protocol the member rejoins (an eager member revokes
    /// everything first, as Java); under KIP-848 the next heartbeat, sent at
    /// once, carries it, and the coordinator moves partitions as usual.
    /// Partitions of topics no longer subscribed are revoked through the
    /// hooks like any others.
    pub fn subscribe(&mut self, topics: &[&str]) {
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_string()).collect();
        self.topics.clone_from(&topics);
        self.shared.lock().pattern = None;
        self.shared.input(AppInput::Subscribe {
            topics,
            regex: None,
        });
    }

    /// Subscribes to every topic whose whole name matches `pattern`,
    /// including topics created later.
    ///
    /// - **Classic:** matched here against the cluster's topic names
    ///   (internal topics excepted) whenever metadata is refreshed, every
    ///   `metadata_max_age` (Java's `metadata.max.age.ms`, default 5 min).
    ///   The dialect is the Rust `regex` crate's, anchored at both ends like
    ///   Java's `Pattern.matches`. A pattern that does not compile is a
    ///   [`ConsumeError::Config`].
    /// - **KIP-848:** sent to the coordinator (`SubscribedTopicRegex`,
    ///   ConsumerGroupHeartbeat v1+), which resolves it asynchronously
    ///   against its own metadata. The dialect is the broker's RE2J; a
    ///   pattern it rejects fails the member with INVALID_REGULAR_EXPRESSION.
    pub fn subscribe_regex(&mut self, pattern: &str) -> Result<(), ConsumeError> {
        match self.group.protocol {
            GroupProtocol::Classic => {
                let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| ConsumeError::Config(format!("topic pattern {pattern:?}: {e}")))?;
                let mut g = self.shared.lock();
                g.pattern = Some(re);
                g.check_metadata = true;
                drop(g);
                self.shared.wake_driver.notify_one();
            }
            GroupProtocol::Consumer => {
                self.topics.clear();
                self.shared.input(AppInput::Subscribe {
                    topics: Vec::new(),
                    regex: Some(pattern.to_string()),
                });
            }
        }
        Ok(())
    }

    /// The fetcher underneath (positions, seeks).
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    fn start(&mut self) {
        if self.driver.is_some() {
            return;
        }
        let settings = DriverSettings {
            group_id: self.group.group_id.clone(),
            rebalance_timeout: self.group.rebalance_timeout,
            metadata_interval: self.consumer.client().config().metadata_max_age,
        };
        self.driver = Some(tokio::spawn(drive(
            self.consumer.client().clone(),
            Arc::clone(&self.shared),
            settings,
        )));
    }

    /// Applies what the group decided (running the hooks), then fetches as
    /// [`Consumer::poll`] from the partitions the member owns. Returns an
    /// empty list when nothing came within `timeout`, also while the member
    /// is still joining.
    ///
    /// # Cancel safety
    /// Cancel safe while it fetches, not while it applies a rebalance step.
    /// Heartbeats run in the consumer's own task, so a dropped poll never
    /// stops the membership. Dropped while fetching, it loses and repeats no
    /// records (as [`Consumer::poll`]). But a rebalance step is taken off
    /// the queue before it is applied, and neither the dropped poll nor the
    /// next one finishes it:
    /// - a revoke cut short (in `on_revoked`, in the commit of the marked
    ///   offsets, whose marks are already taken, or in removing the
    ///   partitions from the fetcher) is never acknowledged: the member
    ///   keeps the partitions, and later polls keep returning their
    ///   records, until `revoke_timeout` releases them; marks taken but not
    ///   committed are lost, so the next owner handles those records again;
    /// - an assignment cut short leaves the new partitions owned but not
    ///   fetched until they are revoked and assigned again, or, if dropped
    ///   while their committed offsets were being read, fetched from
    ///   `auto_offset_reset` instead of the committed offsets; `on_assigned`
    ///   does not run for them;
    /// - an `on_lost` cut short is not run again (the next poll stops
    ///   fetching those partitions anyway).
    ///
    /// Records taken from the fetcher are lost only if the drop lands while
    /// partitions the member lost meanwhile are being removed, which waits
    /// only when the metadata of a topic it keeps is not cached. To race
    /// polling against something else in `tokio::select!`, use
    /// [`stream`](Self::stream), whose `next()` may be dropped freely.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let max = self.consumer.config().max_poll_records;
        self.poll_up_to(timeout, max).await
    }

    /// The owned partitions' records one at a time, as a
    /// [`futures_util::Stream`]; rebalances are applied (and hooks run) as
    /// in [`poll`](Self::poll).
    ///
    /// # Cancel safety
    /// Dropping a `next()` future (a `tokio::select!` branch that lost)
    /// loses and repeats nothing, rebalance steps and hooks included: the
    /// work stays inside the stream and the next `next()` resumes it.
    /// Dropping the stream itself is dropping a [`poll`](Self::poll), with
    /// its caveats for a rebalance step under way.
    pub fn stream(&mut self) -> crate::RecordStream<'_> {
        use futures_util::StreamExt;
        futures_util::stream::unfold(self, |group| async move {
            loop {
                match group.poll_up_to(Duration::from_secs(60), 1).await {
                    Ok(mut records) => {
                        if let Some(r) = records.pop() {
                            return Some((Ok(r), group));
                        }
                    }
                    Err(e) => return Some((Err(e), group)),
                }
            }
        })
        .boxed()
    }

    async fn poll_up_to(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        self.start();
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(86_400));
        let shared = Arc::clone(&self.shared);
        // A long poll is still polling: the KIP-62 timer restarts on every
        // pass, and no pass waits longer than half the interval.
        let pass = self.group.max_poll_interval / 2;
        loop {
            self.shared.input(AppInput::Polled);
            self.apply_events().await?;
            let remaining = deadline.saturating_duration_since(Instant::now()).min(pass);
            if self.consumer.assignment().is_empty() {
                if remaining.is_zero() {
                    return Ok(Vec::new());
                }
                tokio::select! {
                    () = shared.wake_app.notified() => {}
                    () = tokio::time::sleep(remaining) => {}
                }
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                continue;
            }
            let mut records = tokio::select! {
                r = self.consumer.poll_up_to(remaining, max_records) => r?,
                // A rebalance step is waiting: take it before fetching on.
                () = shared.wake_app.notified() => continue,
            };
            // Partitions the member lost meanwhile (fenced, poll timeout,
            // revoke deadline) are someone else's: hand out nothing of them.
            // Checked per partition, not per record: records are dropped
            // only when some fetched partition is no longer owned.
            let stale: Vec<TopicPartition> = {
                let g = self.shared.lock();
                let owned = g.machine.owned();
                self.consumer
                    .assignment()
                    .into_iter()
                    .filter(|tp| owned.binary_search(tp).is_err())
                    .collect()
            };
            if !stale.is_empty() {
                records.retain(|r| {
                    !stale
                        .iter()
                        .any(|tp| tp.partition == r.partition && *tp.topic == *r.topic)
                });
                // Fetched past what was handed out: never fetch (or commit)
                // them from here again.
                self.drop_partitions(&stale).await;
            }
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Waits until the member has joined and its assignment is applied
    /// (`poll` would fetch), up to `timeout`.
    ///
    /// # Cancel safety
    /// Dropping it never stops the membership: the join it started goes on
    /// in the consumer's own task, and the next `poll` carries on from
    /// wherever the group is. A rebalance step it was applying when dropped
    /// is cut short as for [`poll`](Self::poll) (an assignment cut short is
    /// not fetched, or fetched from `auto_offset_reset`).
    pub async fn wait_for_assignment(&mut self, timeout: Duration) -> Result<(), ConsumeError> {
        self.start();
        let deadline = Instant::now() + timeout;
        self.shared.input(AppInput::Polled);
        let shared = Arc::clone(&self.shared);
        loop {
            self.apply_events().await?;
            let stable = {
                let g = self.shared.lock();
                g.machine.phase() == Phase::Stable && g.app_events.is_empty()
            };
            if stable {
                return Ok(());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ConsumeError::Client(ClientError::Timeout {
                    what: format!("joining group {}", self.group.group_id),
                    after: timeout,
                }));
            }
            tokio::select! {
                () = shared.wake_app.notified() => {}
                () = tokio::time::sleep(remaining.min(Duration::from_millis(20))) => {}
            }
        }
    }

    /// Runs the hooks and fetcher changes the member queued, in order.
    async fn apply_events(&mut self) -> Result<(), ConsumeError> {
        match self.stopped {
            Some(StopCause::Refused(api, code)) => return Err(self.refused(api, code)),
            Some(StopCause::Driver) => return Err(ConsumeError::Closed),
            None => {}
        }
        loop {
            let event = {
                let mut g = self.shared.lock();
                if let Some(failure) = g.failure.take() {
                    self.stopped = Some(StopCause::Driver);
                    return Err(failure);
                }
                g.app_events.pop_front()
            };
            let Some(event) = event else { return Ok(()) };
            match event {
                MemberEvent::Assigned(partitions) => {
                    if let Err(e) = self.take_partitions(&partitions).await {
                        // Keep the event: the next poll tries again.
                        self.shared
                            .lock()
                            .app_events
                            .push_front(MemberEvent::Assigned(partitions));
                        return Err(e);
                    }
                    tracing::info!(group = %self.group.group_id, added = ?partitions, "partitions assigned");
                    if let Some(l) = &self.listener {
                        l.on_assigned(&partitions).await;
                    }
                }
                MemberEvent::Revoke(partitions) => {
                    if let Some(l) = &self.listener {
                        l.on_revoked(&partitions).await;
                    }
                    let marked = self.marks.take(&partitions);
                    if let Err(e) = self.commit_offsets(&marked).await {
                        tracing::warn!(group = %self.group.group_id, error = %e, "commit while revoking failed");
                    }
                    self.drop_partitions(&partitions).await;
                    tracing::info!(group = %self.group.group_id, revoked = ?partitions, "partitions revoked");
                    self.shared.input(AppInput::RevokeDone(partitions));
                }
                MemberEvent::Lost(partitions) => {
                    if let Some(l) = &self.listener {
                        l.on_lost(&partitions).await;
                    }
                    self.marks.take(&partitions);
                    self.drop_partitions(&partitions).await;
                    tracing::info!(group = %self.group.group_id, lost = ?partitions, "partitions lost");
                }
                MemberEvent::PollIntervalExceeded => {
                    return Err(ConsumeError::PollIntervalExceeded {
                        group: self.group.group_id.clone(),
                        after: self.group.max_poll_interval,
                    });
                }
                MemberEvent::Fatal { api, code } => {
                    // Its partitions were lost (the Lost event came first).
                    self.stopped = Some(StopCause::Refused(api, code));
                    return Err(self.refused(api, code));
                }
                MemberEvent::CoordinatorLost
                | MemberEvent::NeedPartitions(_)
                | MemberEvent::NeedTopicNames(_) => {}
            }
        }
    }

    fn refused(&self, api: &'static str, code: ErrorCode) -> ConsumeError {
        ConsumeError::Group {
            group: self.group.group_id.clone(),
            api,
            code,
        }
    }

    /// Adds `partitions` to the fetcher, positioned at the committed offsets
    /// (or, without one, by `auto_offset_reset`: a position left from an
    /// earlier ownership is never reused).
    async fn take_partitions(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        let mut all = self.consumer.assignment();
        all.extend(
            partitions
                .iter()
                .filter(|tp| !all.contains(tp))
                .cloned()
                .collect::<Vec<_>>(),
        );
        if let Err(ConsumeError::UnknownPartition { .. }) = self.consumer.assign(&all).await {
            // A partition added since the metadata was cached.
            let mut topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
            topics.dedup();
            self.consumer.client().refresh_metadata_for(&topics).await?;
            self.consumer.assign(&all).await?;
        }
        for tp in partitions {
            self.consumer.forget_position(tp);
        }
        let committed = Admin::new(self.consumer.client().clone())
            .list_group_offsets(&self.group.group_id)
            .await?;
        for tp in partitions {
            match committed.get(tp).filter(|o| o.committed >= 0) {
                Some(o) => {
                    // With the committed epoch, the first fetch checks the
                    // log was not truncated below the offset (KIP-320).
                    self.consumer
                        .seek_with_epoch(tp, o.committed, o.leader_epoch)?;
                    self.committed.insert(tp.clone(), o.committed);
                }
                None => {
                    self.committed.remove(tp);
                }
            }
        }
        Ok(())
    }

    async fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        let keep: Vec<TopicPartition> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| !partitions.contains(tp))
            .collect();
        if let Err(e) = self.consumer.assign(&keep).await {
            tracing::warn!(error = %e, "dropping partitions from the fetcher failed");
        }
        for tp in partitions {
            self.committed.remove(tp);
        }
    }

    /// Stops fetching `partitions` (owned by this member) until
    /// [`resume`](Self::resume). The member stays in the group, heartbeats
    /// go on, and `poll` keeps applying rebalances; a partition revoked
    /// while paused comes back unpaused if it is assigned again (as Java).
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        self.consumer.pause(partitions)
    }

    /// Fetches `partitions` again, from where they were paused.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        self.consumer.resume(partitions)
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.consumer.paused()
    }

    /// How far `tp` is behind its high watermark (see [`Consumer::lag`]).
    pub fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        self.consumer.lag(tp)
    }

    /// Revokes the member's partitions (running `on_revoked` and committing
    /// the marked offsets), then leaves the group, so its partitions move to
    /// the other members at once rather than after the session timeout.
    ///
    /// A static member (`group_instance_id`) does not leave: under the
    /// classic protocol it sends nothing (as Java), under KIP-848 it leaves
    /// with epoch -2, which keeps its partitions for its next instance. Either
    /// way they move only if no instance returns within the session timeout.
    ///
    /// # Cancel safety
    /// Not cancel safe during the revoke step (`on_revoked`, then the
    /// commit of the marked offsets, whose marks are already taken).
    /// `close` has taken the driver task from the consumer by then, so a
    /// drop detaches that task instead of aborting it: the member neither
    /// leaves nor stops, keeps heartbeating and holding its partitions
    /// (fetched by no one) until `max_poll_interval` passes, then leaves as
    /// a member that stopped polling does, and the task lingers, holding
    /// the client, until the process ends. Once the revoke step is over the
    /// leave is handed to the driver task, which still sends it (LeaveGroup,
    /// or KIP-848's leaving heartbeat; nothing for a classic static member)
    /// and ends; a drop then loses only the closing of fetch sessions and
    /// the error report. A consumer that never polled has nothing to close.
    pub async fn close(mut self) -> Result<(), ConsumeError> {
        let Some(driver) = self.driver.take() else {
            return Ok(());
        };
        let owned: Vec<TopicPartition> = self.shared.lock().machine.owned().to_vec();
        if !owned.is_empty() {
            if let Some(l) = &self.listener {
                l.on_revoked(&owned).await;
            }
            let marked = self.marks.take(&owned);
            if let Err(e) = self.commit_offsets(&marked).await {
                tracing::warn!(group = %self.group.group_id, error = %e, "commit on close failed");
            }
        }
        self.shared.input(AppInput::Leave);
        self.consumer.close().await;
        let wait = self.consumer.client().config().request_timeout;
        let abort = driver.abort_handle();
        if tokio::time::timeout(wait, driver).await.is_err() {
            abort.abort();
        }
        let failure = self.shared.lock().failure.take();
        failure.map_or(Ok(()), Err)
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }
}
