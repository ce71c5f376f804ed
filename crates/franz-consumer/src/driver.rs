//! The one tokio driver that runs either group member: it sends what the
//! member asks for, feeds back answers and timer expiries, looks up what
//! the member needs (partition counts for a leader, topic names for
//! KIP-848 ids), and hands application events to the [`GroupConsumer`]
//! side.
//!
//! The member lives in a mutex shared with the consumer; neither side holds
//! it across an await. Requests run as tasks of their own, so a JoinGroup
//! the coordinator holds for the rebalance timeout never stops the timers.
//!
//! [`GroupConsumer`]: crate::GroupConsumer
#![allow(clippy::disallowed_methods)] // the group driver: it reads the clock and hands `now` to the clock-free member machines

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use franz_client::TopicPartition;
use franz_client::franz_protocol::messages::{LeaveGroupRequest, leave_group_request};
use franz_client::{Client, ClientError, CoordinatorType};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::assignor::TopicPartitions;
use crate::error::ConsumeError;
use crate::member::classic::ClassicMember;
use crate::member::kip848::Kip848Member;
use crate::member::{AppInput, Inbound, MemberEvent, Outbound, Phase};

/// Either member, behind one surface.
#[derive(Debug)]
pub(crate) enum Machine {
    Classic(ClassicMember),
    Kip848(Kip848Member),
}

macro_rules! each {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Machine::Classic($m) => $body,
            Machine::Kip848($m) => $body,
        }
    };
}

impl Machine {
    pub(crate) fn handle_app(&mut self, input: AppInput, now: Instant) {
        each!(self, m => m.handle_app(input, now));
    }
    fn handle_response(&mut self, inbound: Inbound, now: Instant) {
        each!(self, m => m.handle_response(inbound, now));
    }
    fn handle_timeout(&mut self, now: Instant) {
        each!(self, m => m.handle_timeout(now));
    }
    fn poll_request(&mut self, now: Instant) -> Option<Outbound> {
        each!(self, m => m.poll_request(now))
    }
    fn poll_event(&mut self) -> Option<MemberEvent> {
        each!(self, m => m.poll_event())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        each!(self, m => m.poll_timeout())
    }
    fn is_finished(&self) -> bool {
        each!(self, m => m.is_finished())
    }
    pub(crate) fn phase(&self) -> Phase {
        each!(self, m => m.phase())
    }
    pub(crate) fn owned(&self) -> &[TopicPartition] {
        each!(self, m => m.owned())
    }
    /// The subscribed topics (a classic pattern's current matches).
    pub(crate) fn topics(&self) -> &[String] {
        each!(self, m => m.topics())
    }
    pub(crate) fn commit_identity(&self) -> Option<(String, i32)> {
        each!(self, m => m.commit_identity())
    }
    pub(crate) fn member_id(&self) -> &str {
        each!(self, m => m.member_id())
    }
    /// The classic generation or the KIP-848 epoch.
    pub(crate) fn generation(&self) -> i32 {
        match self {
            Self::Classic(m) => m.generation(),
            Self::Kip848(m) => m.epoch(),
        }
    }
    fn fail(&mut self) {
        // Stop sending: a Leave is as final as it gets without a request.
        self.handle_app(AppInput::Leave, Instant::now());
    }
}

/// What the driver and the consumer share.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// The consumer gave the member an input.
    pub(crate) wake_driver: Notify,
    /// The driver queued an application event.
    pub(crate) wake_app: Notify,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) machine: Machine,
    /// Events for the consumer side, in order.
    pub(crate) app_events: VecDeque<MemberEvent>,
    /// A failure of the driver itself (TLS, authentication), reported once.
    pub(crate) failure: Option<ConsumeError>,
    /// Classic regex subscription, matched by the driver against the
    /// cluster's topics (KIP-848 patterns go to the coordinator instead).
    pub(crate) pattern: Option<regex::Regex>,
    /// Look at the metadata at once (the subscription just changed).
    pub(crate) check_metadata: bool,
}

impl Shared {
    pub(crate) fn new(machine: Machine) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                machine,
                app_events: VecDeque::new(),
                failure: None,
                pattern: None,
                check_metadata: false,
            }),
            wake_driver: Notify::new(),
            wake_app: Notify::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the member an application input and wakes the driver.
    pub(crate) fn input(&self, input: AppInput) {
        self.lock().machine.handle_app(input, Instant::now());
        self.wake_driver.notify_one();
    }
}

/// Settings the driver needs beyond the member's.
#[derive(Debug, Clone)]
pub(crate) struct DriverSettings {
    pub(crate) group_id: String,
    pub(crate) rebalance_timeout: Duration,
    /// How often a classic member looks for new partitions and, with a
    /// pattern, new topics (`metadata.max.age.ms`, as Java).
    pub(crate) metadata_interval: Duration,
}

/// What a classic member's subscription looked like at the last check.
#[derive(Debug, Default)]
struct MetadataWatch {
    /// Partition counts (and topic ids) of the subscribed topics.
    snapshot: Option<BTreeMap<String, (usize, franz_protocol::Uuid)>>,
    next_at: Option<Instant>,
}

/// Runs the member until it is finished (left or failed).
pub(crate) async fn drive(client: Client, shared: Arc<Shared>, settings: DriverSettings) {
    let mut in_flight: JoinSet<Result<Inbound, ClientError>> = JoinSet::new();
    let mut watch = MetadataWatch::default();
    loop {
        let now = Instant::now();
        if matches!(shared.lock().machine, Machine::Classic(_)) {
            let due = watch.next_at.is_none_or(|at| at <= now)
                || std::mem::take(&mut shared.lock().check_metadata);
            if due {
                let complete = check_metadata(&client, &shared, &mut watch).await;
                // A subscribed topic not there yet (being auto-created, say)
                // is looked for again soon, as Java's consumer does.
                let interval = if complete {
                    settings.metadata_interval
                } else {
                    settings.metadata_interval.min(Duration::from_secs(1))
                };
                watch.next_at = Some(Instant::now() + interval);
            }
        }
        let now = Instant::now();
        let mut driver_events = Vec::new();
        let (requests, deadline, finished) = {
            let mut g = shared.lock();
            let inner = &mut *g;
            inner.machine.handle_timeout(now);
            let mut requests = Vec::new();
            while let Some(r) = inner.machine.poll_request(now) {
                requests.push(r);
            }
            let mut woke_app = false;
            while let Some(ev) = inner.machine.poll_event() {
                match ev {
                    MemberEvent::CoordinatorLost
                    | MemberEvent::NeedPartitions(_)
                    | MemberEvent::NeedTopicNames(_) => driver_events.push(ev),
                    app => {
                        inner.app_events.push_back(app);
                        woke_app = true;
                    }
                }
            }
            if woke_app {
                shared.wake_app.notify_one();
            }
            (
                requests,
                inner.machine.poll_timeout(),
                inner.machine.is_finished(),
            )
        };
        for request in requests {
            let (client, group_id, rebalance_timeout) = (
                client.clone(),
                settings.group_id.clone(),
                settings.rebalance_timeout,
            );
            in_flight
                .spawn(async move { send(&client, &group_id, request, rebalance_timeout).await });
        }
        if !driver_events.is_empty() {
            for ev in driver_events {
                serve(&client, &shared, &settings, ev).await;
            }
            continue;
        }
        if finished && in_flight.is_empty() {
            // Wake a consumer waiting for the end.
            shared.wake_app.notify_one();
            return;
        }
        let deadline = match (deadline, watch.next_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                let inbound = match joined {
                    Ok(Ok(inbound)) => inbound,
                    Ok(Err(e)) if e.is_retriable() => {
                        tracing::debug!(group = %settings.group_id, error = %e, "group request failed; retrying");
                        Inbound::Failed
                    }
                    Ok(Err(e)) => {
                        tracing::error!(group = %settings.group_id, error = %e, "group request failed for good");
                        let mut g = shared.lock();
                        g.failure = Some(e.into());
                        g.machine.fail();
                        drop(g);
                        shared.wake_app.notify_one();
                        continue;
                    }
                    Err(_) => Inbound::Failed, // the task panicked or was cancelled
                };
                shared.lock().machine.handle_response(inbound, Instant::now());
            }
            () = async {
                match sleep {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            () = shared.wake_driver.notified() => {}
        }
    }
}

/// A classic member's subscription against fresh metadata: a pattern is
/// matched against every topic (internal ones excepted), and a change in
/// the matched set, in a subscribed topic's partition count, or in its
/// topic id (re-created) makes the member rejoin, so the leader assigns
/// what is there now. Returns false while a subscribed topic is missing or
/// has partitions without a leader.
async fn check_metadata(client: &Client, shared: &Shared, watch: &mut MetadataWatch) -> bool {
    let (pattern, mut topics) = {
        let g = shared.lock();
        (g.pattern.clone(), g.machine.topics().to_vec())
    };
    let md = match &pattern {
        Some(_) => client.refresh_all_metadata().await,
        None => client.refresh_metadata_for(&topics).await,
    };
    let md = match md {
        Ok(md) => md,
        Err(e) => {
            tracing::debug!(error = %e, "subscription metadata check failed");
            return false;
        }
    };
    let mut resubscribed = false;
    if let Some(re) = &pattern {
        let mut matched: Vec<String> = md
            .topics
            .values()
            .filter(|t| !t.internal && re.is_match(&t.name))
            .map(|t| t.name.clone())
            .collect();
        matched.sort();
        if matched != topics {
            tracing::info!(topics = ?matched, "pattern subscription matches a new set of topics");
            shared.input(AppInput::Subscribe {
                topics: matched.clone(),
                regex: None,
            });
            topics = matched;
            resubscribed = true;
        }
    }
    let snapshot: BTreeMap<String, (usize, franz_protocol::Uuid)> = topics
        .iter()
        .filter_map(|t| {
            md.topics
                .get(t)
                .map(|m| (t.clone(), (m.partitions.len(), m.id)))
        })
        .collect();
    if !resubscribed && watch.snapshot.as_ref().is_some_and(|old| *old != snapshot) {
        tracing::info!(before = ?watch.snapshot, now = ?snapshot, "subscribed topics changed; rejoining");
        shared.input(AppInput::MetadataChanged);
    }
    let complete = topics.iter().all(|t| {
        md.topics
            .get(t)
            .is_some_and(|m| !m.partitions.is_empty() && m.partitions.iter().all(|p| p.leader >= 0))
    });
    watch.snapshot = Some(snapshot);
    complete
}

/// Does the lookups the member asked for.
async fn serve(client: &Client, shared: &Shared, settings: &DriverSettings, event: MemberEvent) {
    match event {
        MemberEvent::CoordinatorLost => {
            client.invalidate_coordinator(CoordinatorType::Group, &settings.group_id);
        }
        MemberEvent::NeedPartitions(topics) => {
            let mut partitions = TopicPartitions::new();
            let mut failed = None;
            for t in topics {
                match client.topic_metadata(&t).await {
                    Ok(md) => {
                        let mut ps: Vec<i32> = md.partitions.iter().map(|p| p.partition).collect();
                        ps.sort_unstable();
                        partitions.insert(t, ps);
                    }
                    // A member may subscribe to a topic that does not exist
                    // (yet): it simply gets none of it.
                    Err(ClientError::UnknownTopic(_)) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Machine::Classic(m) = &mut shared.lock().machine {
                match failed {
                    // Assigning without the partitions would leave them
                    // unowned until some later rebalance: join again.
                    Some(e) => {
                        tracing::warn!(group = %settings.group_id, error = %e, "the leader could not read partition counts; rejoining");
                        m.leader_lookup_failed(Instant::now());
                    }
                    None => m.handle_topic_partitions(&partitions, Instant::now()),
                }
            }
        }
        MemberEvent::NeedTopicNames(ids) => {
            let mut md = client.metadata();
            if ids.iter().any(|id| md.topic_name(id).is_none()) {
                let topics = shared.lock().machine.topics().to_vec();
                match client.refresh_metadata_for(&topics).await {
                    Ok(fresh) => md = fresh,
                    Err(e) => tracing::debug!(error = %e, "metadata refresh for topic ids failed"),
                }
            }
            if ids.iter().any(|id| md.topic_name(id).is_none()) {
                // Topics a pattern matched, which the member cannot name.
                match client.refresh_all_metadata().await {
                    Ok(fresh) => md = fresh,
                    Err(e) => tracing::debug!(error = %e, "metadata refresh for topic ids failed"),
                }
            }
            let names: BTreeMap<franz_protocol::Uuid, String> = ids
                .iter()
                .filter_map(|id| md.topic_name(id).map(|n| (*id, n.to_string())))
                .collect();
            if let Machine::Kip848(m) = &mut shared.lock().machine {
                m.handle_topic_names(&names, Instant::now());
            }
        }
        _ => {}
    }
}

/// Sends one request on the group coordinator's connection. A leave is
/// answered as `Left` whatever happens: the member is gone either way.
async fn send(
    client: &Client,
    group_id: &str,
    request: Outbound,
    rebalance_timeout: Duration,
) -> Result<Inbound, ClientError> {
    let leaving = match &request {
        Outbound::Leave { .. } => true,
        Outbound::ConsumerHeartbeat(r) => r.member_epoch < 0,
        _ => false,
    };
    match send_to_coordinator(client, group_id, request, rebalance_timeout).await {
        Err(e) if leaving => {
            tracing::debug!(error = %e, "leaving the group failed");
            Ok(Inbound::Left)
        }
        Ok(_) if leaving => Ok(Inbound::Left),
        other => other,
    }
}

async fn send_to_coordinator(
    client: &Client,
    group_id: &str,
    request: Outbound,
    rebalance_timeout: Duration,
) -> Result<Inbound, ClientError> {
    let conn = client
        .coordinator_connection(CoordinatorType::Group, group_id)
        .await?;
    // The coordinator holds JoinGroup (and a follower's SyncGroup) until
    // the round completes, up to the rebalance timeout.
    let held = rebalance_timeout + client.config().request_timeout;
    Ok(match request {
        Outbound::Join(r) => Inbound::Join(conn.send_timeout(&r, held).await?),
        Outbound::Sync(r) => Inbound::Sync(conn.send_timeout(&r, held).await?),
        Outbound::Heartbeat(r) => Inbound::Heartbeat(conn.send(&r).await?),
        Outbound::ConsumerHeartbeat(r) => Inbound::ConsumerHeartbeat(conn.send(&r).await?),
        Outbound::Leave {
            member_id,
            instance_id,
        } => {
            // v0-2 name the member at the top level, v3+ in a batch.
            let batched = conn.version_of::<LeaveGroupRequest>()? >= 3;
            let req = if batched {
                LeaveGroupRequest {
                    group_id: group_id.to_string(),
                    members: vec![leave_group_request::MemberIdentity {
                        member_id,
                        group_instance_id: instance_id,
                        reason: Some("the consumer is leaving".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            } else {
                LeaveGroupRequest {
                    group_id: group_id.to_string(),
                    member_id,
                    ..Default::default()
                }
            };
            conn.send(&req).await?;
            Inbound::Left
        }
    })
}
