//! The classic group protocol's member, sans-io: JoinGroup, SyncGroup (the
//! leader assigns), Heartbeat, LeaveGroup, with eager or cooperative
//! (KIP-429) rebalancing.
//!
//! ## Rebalance sequences
//! - **Eager** (any offered assignor is not cooperative, as Java decides):
//!   a rebalance is noticed (a heartbeat answers REBALANCE_IN_PROGRESS, a
//!   commit is refused) → [`MemberEvent::Revoke`] of every owned partition →
//!   the application lets go ([`AppInput::RevokeDone`]) → JoinGroup →
//!   SyncGroup → [`MemberEvent::Assigned`]. Heartbeats go on while the
//!   application revokes, so a slow handler is not evicted before the
//!   rebalance timeout.
//! - **Cooperative**: JoinGroup at once, reporting the owned partitions →
//!   SyncGroup → [`MemberEvent::Assigned`] for the partitions added and
//!   [`MemberEvent::Revoke`] for those gone → after `RevokeDone`, a follow-up
//!   JoinGroup, in which the leader may give them to their new owner. The
//!   partitions kept are fetched throughout.
//!
//! The leader's assignment needs partition counts: the member asks for them
//! with [`MemberEvent::NeedPartitions`] and runs the assignor when they come
//! ([`ClassicMember::handle_topic_partitions`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use franz_client::TopicPartition;
use franz_client::franz_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
    join_group_request, sync_group_request,
};
use franz_protocol::ErrorCode;

use super::{
    AppInput, Core, Inbound, MemberEvent, MemberSettings, Outbound, Phase, Timer, flatten, millis,
    minus,
};
use crate::assignor::{Assignment, Assignor, Member, Subscription, TopicPartitions};

/// What to do after a JoinGroup, SyncGroup or Heartbeat error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStep {
    /// Join again as is (a rebalance is under way, or a transient error).
    Retry,
    /// Join again with the member id the broker just handed out (KIP-394).
    RetryWithAssignedId,
    /// The member's id or generation is gone: its partitions are lost, and
    /// it joins as a new member.
    RetryAsNewMember,
    /// Look the coordinator up again, then join.
    FindCoordinator,
    /// Give up: configuration, authorization, or a fenced static member.
    Fail,
}

/// The classic protocol's rules for JoinGroup, SyncGroup and Heartbeat
/// errors.
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

/// The leader's state between JoinGroup and its SyncGroup.
#[derive(Debug, Clone)]
struct Leading {
    protocol: String,
    members: Vec<Member>,
}

/// Which request is waiting for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    Join,
    Sync,
    Heartbeat,
}

/// A classic consumer-group member. See the module docs for the sequences.
#[derive(Debug)]
pub struct ClassicMember {
    core: Core,
    assignors: Vec<Arc<dyn Assignor>>,
    cooperative: bool,
    member_id: String,
    generation: i32,
    protocol: Option<String>,
    /// A rebalance is wanted once the current step ends.
    rejoin: bool,
    in_flight: Option<InFlight>,
    leading: Option<Leading>,
    pending_sync: Option<SyncGroupRequest>,
    heartbeat_due: bool,
    leave_pending: bool,
}

impl ClassicMember {
    /// A member that joins on its first [`poll_request`](Self::poll_request).
    /// It rebalances cooperatively when every assignor is cooperative.
    pub fn new(settings: MemberSettings, assignors: Vec<Arc<dyn Assignor>>) -> Self {
        let cooperative = !assignors.is_empty() && assignors.iter().all(|a| a.cooperative());
        Self {
            core: Core::new(settings),
            assignors,
            cooperative,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            rejoin: false,
            in_flight: None,
            leading: None,
            pending_sync: None,
            heartbeat_due: false,
            leave_pending: false,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.core.phase
    }

    /// The member id (empty before the first JoinGroup answer).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation (-1 outside a group).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether the member rebalances cooperatively.
    pub fn is_cooperative(&self) -> bool {
        self.cooperative
    }

    /// The assignor the group chose in the latest round.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The subscribed topics.
    pub fn topics(&self) -> &[String] {
        &self.core.settings.topics
    }

    /// The partitions the member owns, sorted.
    pub fn owned(&self) -> &[TopicPartition] {
        &self.core.owned
    }

    /// The member id and generation a commit carries, while the member has
    /// one.
    pub fn commit_identity(&self) -> Option<(String, i32)> {
        (!self.member_id.is_empty() && self.generation >= 0)
            .then(|| (self.member_id.clone(), self.generation))
    }

    /// Whether the member will send nothing more.
    pub fn is_finished(&self) -> bool {
        matches!(self.core.phase, Phase::Left | Phase::Failed) && !self.leave_pending
    }

    /// The next application or driver event.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.core.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.timers.next()
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.core.timers.expire(now) {
            match timer {
                Timer::Heartbeat => self.heartbeat_due = true,
                Timer::Backoff => {}
                Timer::Session => self.core.session_expired(),
                Timer::PollInterval => self.poll_interval_expired(),
                Timer::Revoke => {
                    if self.core.revoke_deadline_passed() {
                        self.finish_revoke();
                    }
                }
            }
        }
    }

    /// Takes an application input.
    pub fn handle_app(&mut self, input: AppInput, now: Instant) {
        match input {
            AppInput::Polled => {
                if self.core.polled(now) {
                    self.core.phase = Phase::Joining;
                }
            }
            AppInput::RevokeDone(partitions) => {
                if self.core.is_revoke_answer(&partitions) {
                    self.finish_revoke();
                }
            }
            AppInput::CommitRefused { code, generation } => {
                if generation == self.generation {
                    self.commit_refused(code, now);
                }
            }
            AppInput::Leave => self.leave(),
            AppInput::Subscribe { topics, .. } => {
                if topics != self.core.settings.topics {
                    self.core.settings.topics = topics;
                    self.request_rejoin(now);
                }
            }
            AppInput::MetadataChanged => self.request_rejoin(now),
        }
    }

    /// The subscription or its partitions changed: join again (Java's
    /// `requestRejoin`). A join already under way finishes first, then the
    /// member joins once more with what it now knows.
    fn request_rejoin(&mut self, now: Instant) {
        if self.core.is_over() {
            return;
        }
        match self.core.phase {
            Phase::Stable | Phase::Revoking | Phase::Rebalancing => {
                self.rejoin = true;
                self.maybe_rebalance(now);
            }
            _ => {}
        }
    }

    /// The partitions of the topics the leader asked for (missing topics
    /// have none), so it can assign.
    pub fn handle_topic_partitions(&mut self, partitions: &TopicPartitions, now: Instant) {
        let Some(leading) = self.leading.take() else {
            return;
        };
        if self.core.phase != Phase::Rebalancing {
            return;
        }
        let Some(assignor) = self
            .assignors
            .iter()
            .find(|a| a.name() == leading.protocol)
            .cloned()
        else {
            self.fail("SyncGroup", ErrorCode::InconsistentGroupProtocol);
            return;
        };
        let plan = assignor.assign(&leading.members, partitions);
        let mut assignments = Vec::with_capacity(leading.members.len());
        for (id, _) in &leading.members {
            let assignment = Assignment {
                version: assignor.version(),
                partitions: plan.get(id).cloned().unwrap_or_default(),
                user_data: Bytes::new(),
            };
            match assignment.encode() {
                Ok(bytes) => assignments.push(sync_group_request::SyncGroupRequestAssignment {
                    member_id: id.clone(),
                    assignment: bytes,
                    ..Default::default()
                }),
                Err(e) => {
                    tracing::warn!(member = %id, error = %e, "assignment does not encode; rejoining");
                    self.retry_join(now, true);
                    return;
                }
            }
        }
        self.pending_sync = Some(self.sync_request(assignments));
    }

    /// The leader could not read the partition counts (metadata failed):
    /// it joins again after a backoff rather than assign without them.
    pub fn leader_lookup_failed(&mut self, now: Instant) {
        if self.leading.take().is_some() && self.core.phase == Phase::Rebalancing {
            self.retry_join(now, true);
        }
    }

    /// The next request to send, if any. At most one JoinGroup, SyncGroup
    /// or Heartbeat is in flight; a LeaveGroup goes out regardless.
    pub fn poll_request(&mut self, now: Instant) -> Option<Outbound> {
        if self.leave_pending && !self.member_id.is_empty() {
            self.leave_pending = false;
            let leave = Outbound::Leave {
                member_id: self.member_id.clone(),
                instance_id: self.core.settings.instance_id.clone(),
            };
            if self.core.phase == Phase::PollTimedOut {
                // The coordinator forgets the member: rejoin as a new one.
                self.member_id.clear();
            }
            return Some(leave);
        }
        self.leave_pending = false;
        if self.in_flight.is_some() {
            return None;
        }
        match self.core.phase {
            Phase::Joining if self.core.timers.get(Timer::Backoff).is_none() => {
                self.core.phase = Phase::Rebalancing;
                self.in_flight = Some(InFlight::Join);
                Some(Outbound::Join(self.join_request()))
            }
            Phase::Rebalancing => {
                let sync = self.pending_sync.take()?;
                self.in_flight = Some(InFlight::Sync);
                Some(Outbound::Sync(sync))
            }
            Phase::Stable | Phase::Revoking if self.heartbeat_due => {
                self.heartbeat_due = false;
                self.in_flight = Some(InFlight::Heartbeat);
                self.core.timers.set(
                    Timer::Heartbeat,
                    now + self.core.settings.heartbeat_interval,
                );
                Some(Outbound::Heartbeat(HeartbeatRequest {
                    group_id: self.core.settings.group_id.clone(),
                    generation_id: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: self.core.settings.instance_id.clone(),
                    ..Default::default()
                }))
            }
            _ => None,
        }
    }

    /// Takes the coordinator's answer.
    pub fn handle_response(&mut self, inbound: Inbound, now: Instant) {
        match inbound {
            Inbound::Join(resp) => {
                if self.in_flight == Some(InFlight::Join) {
                    self.in_flight = None;
                    if self.core.phase == Phase::Rebalancing {
                        self.joined(resp, now);
                    }
                }
            }
            Inbound::Sync(resp) => {
                if self.in_flight == Some(InFlight::Sync) {
                    self.in_flight = None;
                    if self.core.phase == Phase::Rebalancing {
                        self.synced(resp, now);
                    }
                }
            }
            Inbound::Heartbeat(resp) => {
                if self.in_flight == Some(InFlight::Heartbeat) {
                    self.in_flight = None;
                    self.heartbeat_answered(ErrorCode::from_code(resp.error_code), now);
                }
            }
            Inbound::Failed => match self.in_flight.take() {
                Some(InFlight::Join | InFlight::Sync) => {
                    self.core.events.push_back(MemberEvent::CoordinatorLost);
                    if self.core.phase == Phase::Rebalancing {
                        self.retry_join(now, true);
                    }
                }
                Some(InFlight::Heartbeat) => {
                    self.core.events.push_back(MemberEvent::CoordinatorLost);
                    self.heartbeat_later(now);
                }
                None => {}
            },
            Inbound::Left | Inbound::ConsumerHeartbeat(_) => {}
        }
    }

    fn join_request(&self) -> JoinGroupRequest {
        let owned: TopicPartitions = by_topic(&self.core.owned);
        let protocols = self
            .assignors
            .iter()
            .filter_map(|a| {
                let version = a.version();
                let subscription = Subscription {
                    version,
                    topics: self.core.settings.topics.clone(),
                    user_data: a.user_data(self.generation),
                    owned_partitions: (version >= 1).then(|| owned.clone()),
                    generation: (version >= 2).then_some(self.generation),
                    rack_id: self.core.settings.rack.clone(),
                };
                match subscription.encode() {
                    Ok(metadata) => Some(join_group_request::JoinGroupRequestProtocol {
                        name: a.name().to_string(),
                        metadata,
                        ..Default::default()
                    }),
                    Err(e) => {
                        tracing::warn!(assignor = a.name(), error = %e, "subscription does not encode; not offered");
                        None
                    }
                }
            })
            .collect();
        JoinGroupRequest {
            group_id: self.core.settings.group_id.clone(),
            session_timeout_ms: millis(self.core.settings.session_timeout),
            rebalance_timeout_ms: millis(self.core.settings.rebalance_timeout),
            member_id: self.member_id.clone(),
            group_instance_id: self.core.settings.instance_id.clone(),
            protocol_type: "consumer".into(),
            protocols,
            ..Default::default()
        }
    }

    fn sync_request(
        &self,
        assignments: Vec<sync_group_request::SyncGroupRequestAssignment>,
    ) -> SyncGroupRequest {
        SyncGroupRequest {
            group_id: self.core.settings.group_id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.core.settings.instance_id.clone(),
            protocol_type: Some("consumer".into()),
            protocol_name: self.protocol.clone(),
            assignments,
            ..Default::default()
        }
    }

    fn joined(&mut self, resp: JoinGroupResponse, now: Instant) {
        let code = ErrorCode::from_code(resp.error_code);
        if code != ErrorCode::None {
            self.join_error(code, &resp.member_id, "JoinGroup", now);
            return;
        }
        self.member_id.clone_from(&resp.member_id);
        self.generation = resp.generation_id;
        self.protocol = resp.protocol_name.clone();
        // A static leader that rejoined a stable group is told to skip the
        // assignment (v9+): the group keeps the one it has.
        if resp.leader == resp.member_id && !resp.skip_assignment {
            let members: Vec<Member> = resp
                .members
                .iter()
                .map(|m| {
                    let subscription = Subscription::decode(m.metadata.clone()).unwrap_or_else(|e| {
                        // An undecodable member gets nothing rather than
                        // stopping the whole group.
                        tracing::warn!(member = %m.member_id, error = %e, "subscription does not decode; assigning it nothing");
                        Subscription::default()
                    });
                    (m.member_id.clone(), subscription)
                })
                .collect();
            let mut topics: Vec<String> = members
                .iter()
                .flat_map(|(_, s)| s.topics.iter().cloned())
                .collect();
            topics.sort();
            topics.dedup();
            self.leading = Some(Leading {
                protocol: resp.protocol_name.unwrap_or_default(),
                members,
            });
            self.core
                .events
                .push_back(MemberEvent::NeedPartitions(topics));
        } else {
            self.pending_sync = Some(self.sync_request(Vec::new()));
        }
    }

    fn synced(&mut self, resp: SyncGroupResponse, now: Instant) {
        let code = ErrorCode::from_code(resp.error_code);
        if code != ErrorCode::None {
            self.join_error(code, &self.member_id.clone(), "SyncGroup", now);
            return;
        }
        let assignment = match Assignment::decode(resp.assignment) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "assignment does not decode; rejoining");
                self.retry_join(now, true);
                return;
            }
        };
        let mut given = flatten(&assignment.partitions);
        given.retain(|tp| self.core.settings.topics.contains(&tp.topic));
        let revoked = minus(&self.core.owned, &given);
        let added = minus(&given, &self.core.owned);
        self.core.owned.extend(added.iter().cloned());
        self.core.owned.sort();
        self.core.phase = Phase::Stable;
        self.heartbeat_due = false;
        self.core.timers.set(
            Timer::Heartbeat,
            now + self.core.settings.heartbeat_interval,
        );
        self.core
            .timers
            .set(Timer::Session, now + self.core.settings.session_timeout);
        if !revoked.is_empty() {
            // Only cooperatively: an eager member revoked everything before
            // joining.
            self.core.begin_revoke(revoked, now);
        }
        if !added.is_empty() {
            self.core.events.push_back(MemberEvent::Assigned(added));
        }
        tracing::info!(group = %self.core.settings.group_id, generation = self.generation, partitions = self.core.owned.len(), "joined group");
        // A subscription or metadata change that came during the join.
        self.maybe_rebalance(now);
    }

    fn heartbeat_answered(&mut self, code: ErrorCode, now: Instant) {
        if !matches!(self.core.phase, Phase::Stable | Phase::Revoking) {
            return;
        }
        if matches!(code, ErrorCode::None | ErrorCode::RebalanceInProgress) {
            // The coordinator still counts the member in.
            self.core
                .timers
                .set(Timer::Session, now + self.core.settings.session_timeout);
        }
        match code {
            ErrorCode::None => {}
            ErrorCode::RebalanceInProgress => {
                self.rejoin = true;
                self.maybe_rebalance(now);
            }
            c => match join_step(c) {
                JoinStep::RetryAsNewMember => self.lose_membership(c),
                JoinStep::FindCoordinator => {
                    self.core.events.push_back(MemberEvent::CoordinatorLost);
                    self.heartbeat_later(now);
                }
                JoinStep::Fail => self.fail("Heartbeat", c),
                JoinStep::Retry | JoinStep::RetryWithAssignedId => self.heartbeat_later(now),
            },
        }
    }

    fn commit_refused(&mut self, code: ErrorCode, now: Instant) {
        match join_step(code) {
            JoinStep::Retry if code == ErrorCode::RebalanceInProgress => {
                self.rejoin = true;
                self.maybe_rebalance(now);
            }
            JoinStep::RetryAsNewMember
                if matches!(self.core.phase, Phase::Stable | Phase::Revoking) =>
            {
                self.lose_membership(code);
            }
            JoinStep::Fail if code == ErrorCode::FencedInstanceId => {
                self.fail("OffsetCommit", code)
            }
            _ => {}
        }
    }

    fn join_error(&mut self, code: ErrorCode, offered_id: &str, api: &'static str, now: Instant) {
        match join_step(code) {
            JoinStep::RetryWithAssignedId => {
                self.member_id = offered_id.to_string();
                self.retry_join(now, false);
            }
            JoinStep::RetryAsNewMember => {
                self.lose_membership(code);
            }
            JoinStep::FindCoordinator => {
                self.core.events.push_back(MemberEvent::CoordinatorLost);
                self.retry_join(now, true);
            }
            // A rebalance began while syncing: join the new round at once.
            JoinStep::Retry if code == ErrorCode::RebalanceInProgress => {
                self.retry_join(now, false)
            }
            JoinStep::Retry => self.retry_join(now, true),
            JoinStep::Fail => self.fail(api, code),
        }
    }

    /// The member id or generation is gone: whatever it owned may already
    /// be someone else's.
    fn lose_membership(&mut self, code: ErrorCode) {
        tracing::info!(group = %self.core.settings.group_id, %code, "membership lost; rejoining as a new member");
        if code == ErrorCode::UnknownMemberId || code == ErrorCode::IllegalGeneration {
            self.member_id.clear();
        }
        self.generation = -1;
        self.core.lose_partitions();
        self.core.phase = Phase::Joining;
        self.leading = None;
        self.pending_sync = None;
        self.rejoin = false;
    }

    fn retry_join(&mut self, now: Instant, backoff: bool) {
        self.core.phase = Phase::Joining;
        self.leading = None;
        self.pending_sync = None;
        if backoff {
            self.core
                .timers
                .set(Timer::Backoff, now + self.core.settings.retry_backoff);
        }
    }

    fn heartbeat_later(&mut self, now: Instant) {
        self.heartbeat_due = false;
        self.core
            .timers
            .set(Timer::Heartbeat, now + self.core.settings.retry_backoff);
    }

    /// Starts the rebalance a heartbeat or commit asked for, once the
    /// member is stable: an eager member first revokes everything.
    fn maybe_rebalance(&mut self, now: Instant) {
        if !self.rejoin || self.core.phase != Phase::Stable {
            return;
        }
        self.rejoin = false;
        if !self.cooperative && !self.core.owned.is_empty() {
            self.core.begin_revoke(self.core.owned.clone(), now);
        } else {
            self.core.phase = Phase::Joining;
        }
    }

    /// The application let go (or ran out of time): the partitions are
    /// released, and the member joins (again).
    fn finish_revoke(&mut self) {
        self.core.end_revoke();
        self.rejoin = false;
        self.core.phase = Phase::Joining;
    }

    fn poll_interval_expired(&mut self) {
        if !self.core.poll_timed_out() {
            return;
        }
        // Java: a static member does not send LeaveGroup; its session
        // timeout frees the partitions.
        let dynamic = self.core.settings.instance_id.is_none();
        self.leave_pending = dynamic;
        self.leading = None;
        self.pending_sync = None;
        self.rejoin = false;
        if dynamic {
            // The member id leaves with the member.
            self.generation = -1;
        }
    }

    fn leave(&mut self) {
        if self.core.is_over() {
            return;
        }
        // A static member does not leave (as Java): its next instance takes
        // its partitions back within the session timeout.
        self.leave_pending =
            self.core.settings.instance_id.is_none() && self.core.phase != Phase::PollTimedOut;
        self.core.leave();
    }

    fn fail(&mut self, api: &'static str, code: ErrorCode) {
        self.leave_pending = false;
        self.core.fail(api, code);
    }
}

fn by_topic(tps: &[TopicPartition]) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for tp in tps {
        out.entry(tp.topic.clone()).or_default().push(tp.partition);
    }
    out
}

#[cfg(test)]
mod tests;
