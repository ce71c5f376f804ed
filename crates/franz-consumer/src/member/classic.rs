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
mod tests {
    //! The classic member against a scripted coordinator, on virtual time.
    #![allow(clippy::disallowed_methods)] // virtual time starts at one real Instant
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;
    use std::time::Duration;

    use franz_client::franz_protocol::messages::{HeartbeatResponse, join_group_response};

    use super::*;
    use crate::assignor::{CooperativeStickyAssignor, RangeAssignor, RoundRobinAssignor};

    fn settings(instance: Option<&str>) -> MemberSettings {
        MemberSettings {
            group_id: "g".into(),
            instance_id: instance.map(str::to_string),
            topics: vec!["t".into()],
            topic_regex: None,
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(60),
            revoke_timeout: Duration::from_secs(20),
            retry_backoff: Duration::from_millis(100),
            rack: None,
        }
    }

    fn eager() -> ClassicMember {
        ClassicMember::new(settings(None), vec![Arc::new(RangeAssignor)])
    }

    fn cooperative() -> ClassicMember {
        ClassicMember::new(settings(None), vec![Arc::new(CooperativeStickyAssignor)])
    }

    fn tps(ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new("t", *p)).collect()
    }

    fn join_ok(member: &str, generation: i32, leader: &str) -> Inbound {
        Inbound::Join(JoinGroupResponse {
            member_id: member.into(),
            generation_id: generation,
            leader: leader.into(),
            protocol_name: Some("range".into()),
            ..Default::default()
        })
    }

    fn join_err(code: ErrorCode, member: &str) -> Inbound {
        Inbound::Join(JoinGroupResponse {
            error_code: code.code(),
            member_id: member.into(),
            ..Default::default()
        })
    }

    fn sync_ok(ps: &[i32]) -> Inbound {
        let a = Assignment {
            version: 3,
            partitions: [("t".to_string(), ps.to_vec())].into(),
            user_data: Bytes::new(),
        };
        Inbound::Sync(SyncGroupResponse {
            assignment: a.encode().unwrap(),
            ..Default::default()
        })
    }

    fn sync_err(code: ErrorCode) -> Inbound {
        Inbound::Sync(SyncGroupResponse {
            error_code: code.code(),
            ..Default::default()
        })
    }

    fn heartbeat(code: ErrorCode) -> Inbound {
        Inbound::Heartbeat(HeartbeatResponse {
            error_code: code.code(),
            ..Default::default()
        })
    }

    fn expect_join(m: &mut ClassicMember, now: Instant) -> JoinGroupRequest {
        match m.poll_request(now) {
            Some(Outbound::Join(j)) => j,
            other => panic!("expected a JoinGroup, got {other:?}"),
        }
    }

    fn expect_sync(m: &mut ClassicMember, now: Instant) -> SyncGroupRequest {
        match m.poll_request(now) {
            Some(Outbound::Sync(s)) => s,
            other => panic!("expected a SyncGroup, got {other:?}"),
        }
    }

    fn expect_heartbeat(m: &mut ClassicMember, now: Instant) -> HeartbeatRequest {
        match m.poll_request(now) {
            Some(Outbound::Heartbeat(h)) => h,
            other => panic!("expected a Heartbeat, got {other:?}"),
        }
    }

    fn events(m: &mut ClassicMember) -> Vec<MemberEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    /// Joins `m` as a follower of generation `generation` owning `ps`.
    fn join_as_follower(m: &mut ClassicMember, now: Instant, generation: i32, ps: &[i32]) {
        expect_join(m, now);
        m.handle_response(join_ok("m1", generation, "other"), now);
        expect_sync(m, now);
        m.handle_response(sync_ok(ps), now);
        assert_eq!(m.phase(), Phase::Stable);
    }

    fn owned_in(join: &JoinGroupRequest) -> Option<TopicPartitions> {
        Subscription::decode(join.protocols[0].metadata.clone())
            .unwrap()
            .owned_partitions
    }

    #[test]
    fn join_sync_and_heartbeat_as_a_follower() {
        let t0 = Instant::now();
        let mut m = eager();
        assert_eq!(m.poll_timeout(), None, "nothing armed before joining");
        let join = expect_join(&mut m, t0);
        assert_eq!(
            (join.member_id.as_str(), join.protocols[0].name.as_str()),
            ("", "range")
        );
        assert_eq!(m.poll_request(t0), None, "one request in flight at a time");
        // KIP-394: the broker hands out an id and asks for a second join.
        m.handle_response(join_err(ErrorCode::MemberIdRequired, "m1"), t0);
        assert_eq!(expect_join(&mut m, t0).member_id, "m1");
        m.handle_response(join_ok("m1", 4, "other"), t0);
        let sync = expect_sync(&mut m, t0);
        assert!(sync.assignments.is_empty(), "a follower assigns nothing");
        assert_eq!((sync.generation_id, sync.member_id.as_str()), (4, "m1"));
        m.handle_response(sync_ok(&[0, 1]), t0);
        assert_eq!(events(&mut m), vec![MemberEvent::Assigned(tps(&[0, 1]))]);
        assert_eq!(m.commit_identity(), Some(("m1".into(), 4)));
        assert_eq!(m.poll_request(t0), None);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        m.handle_timeout(t1);
        let hb = expect_heartbeat(&mut m, t1);
        assert_eq!((hb.generation_id, hb.member_id.as_str()), (4, "m1"));
        m.handle_response(heartbeat(ErrorCode::None), t1);
        assert_eq!(m.phase(), Phase::Stable);
    }

    #[test]
    fn the_leader_assigns_with_the_chosen_assignor() {
        let t0 = Instant::now();
        let mut m = ClassicMember::new(settings(None), vec![Arc::new(RoundRobinAssignor)]);
        expect_join(&mut m, t0);
        let sub = |topics: &[&str]| {
            Subscription {
                topics: topics.iter().map(|t| (*t).to_string()).collect(),
                ..Subscription::default()
            }
            .encode()
            .unwrap()
        };
        let members = vec![
            join_group_response::JoinGroupResponseMember {
                member_id: "m2".into(),
                metadata: sub(&["t"]),
                ..Default::default()
            },
            join_group_response::JoinGroupResponseMember {
                member_id: "m1".into(),
                metadata: sub(&["t"]),
                ..Default::default()
            },
            // An undecodable member is given nothing, not a failed group.
            join_group_response::JoinGroupResponseMember {
                member_id: "m3".into(),
                metadata: Bytes::from_static(b"\x00"),
                ..Default::default()
            },
        ];
        m.handle_response(
            Inbound::Join(JoinGroupResponse {
                member_id: "m1".into(),
                leader: "m1".into(),
                generation_id: 1,
                protocol_name: Some("RoundRobinAssigner".into()),
                members,
                ..Default::default()
            }),
            t0,
        );
        assert_eq!(
            events(&mut m),
            vec![MemberEvent::NeedPartitions(vec!["t".into()])]
        );
        assert_eq!(
            m.poll_request(t0),
            None,
            "no SyncGroup before the partitions"
        );
        m.handle_topic_partitions(&[("t".to_string(), vec![0, 1, 2, 3])].into(), t0);
        let sync = expect_sync(&mut m, t0);
        let decoded: BTreeMap<String, Assignment> = sync
            .assignments
            .into_iter()
            .map(|a| (a.member_id, Assignment::decode(a.assignment).unwrap()))
            .collect();
        assert_eq!(decoded["m1"].partitions["t"], vec![0, 2]);
        assert_eq!(decoded["m2"].partitions["t"], vec![1, 3]);
        assert!(decoded["m3"].partitions.is_empty());
    }

    #[test]
    fn eager_rebalances_revoke_everything_before_joining_and_keep_heartbeating() {
        let t0 = Instant::now();
        let mut m = eager();
        join_as_follower(&mut m, t0, 1, &[0, 1]);
        events(&mut m);
        let t1 = t0 + Duration::from_secs(1);
        m.handle_timeout(t1);
        expect_heartbeat(&mut m, t1);
        m.handle_response(heartbeat(ErrorCode::RebalanceInProgress), t1);
        assert_eq!(events(&mut m), vec![MemberEvent::Revoke(tps(&[0, 1]))]);
        assert_eq!(m.phase(), Phase::Revoking);
        // The application is still busy: no JoinGroup, but heartbeats go on
        // (each one extends the session while the coordinator waits).
        for s in 2..8 {
            let t = t0 + Duration::from_secs(s);
            m.handle_timeout(t);
            expect_heartbeat(&mut m, t);
            m.handle_response(heartbeat(ErrorCode::RebalanceInProgress), t);
        }
        assert_eq!(m.owned(), &tps(&[0, 1])[..], "still owned while revoking");
        // A stale answer changes nothing; the right one releases.
        m.handle_app(AppInput::RevokeDone(tps(&[0])), t0);
        assert_eq!(m.phase(), Phase::Revoking);
        m.handle_app(AppInput::RevokeDone(tps(&[0, 1])), t0);
        assert!(m.owned().is_empty());
        let join = expect_join(&mut m, t0);
        assert_eq!(join.member_id, "m1");
        assert_eq!(owned_in(&join), Some(TopicPartitions::new()));
    }

    #[test]
    fn a_new_subscription_or_grown_topic_makes_the_member_rejoin() {
        let t0 = Instant::now();
        let mut m = eager();
        join_as_follower(&mut m, t0, 1, &[0]);
        events(&mut m);
        m.handle_app(
            AppInput::Subscribe {
                topics: vec!["t".into(), "u".into()],
                regex: None,
            },
            t0,
        );
        // Eager: everything is revoked first, then the join carries the
        // new subscription.
        assert_eq!(events(&mut m), vec![MemberEvent::Revoke(tps(&[0]))]);
        m.handle_app(AppInput::RevokeDone(tps(&[0])), t0);
        let join = expect_join(&mut m, t0);
        let sub = Subscription::decode(join.protocols[0].metadata.clone()).unwrap();
        assert_eq!(sub.topics, vec!["t".to_string(), "u".to_string()]);
        // The same subscription again changes nothing.
        let mut n = eager();
        join_as_follower(&mut n, t0, 1, &[0]);
        events(&mut n);
        n.handle_app(
            AppInput::Subscribe {
                topics: vec!["t".into()],
                regex: None,
            },
            t0,
        );
        assert!(events(&mut n).is_empty());
        // Grown partitions: rejoin as well.
        n.handle_app(AppInput::MetadataChanged, t0);
        assert_eq!(events(&mut n), vec![MemberEvent::Revoke(tps(&[0]))]);
    }

    #[test]
    fn a_change_during_a_join_rejoins_once_it_is_done() {
        let t0 = Instant::now();
        let mut m = cooperative();
        expect_join(&mut m, t0);
        m.handle_response(join_ok("m1", 1, "other"), t0);
        expect_sync(&mut m, t0);
        m.handle_app(AppInput::MetadataChanged, t0);
        m.handle_response(sync_ok(&[0]), t0);
        let join = expect_join(&mut m, t0);
        assert_eq!(
            owned_in(&join).map(|o| o.get("t").cloned()),
            Some(Some(vec![0])),
            "a cooperative member joins again at once, keeping what it owns"
        );
    }

    #[test]
    fn the_revoke_deadline_releases_the_partitions_anyway() {
        let t0 = Instant::now();
        let mut m = eager();
        join_as_follower(&mut m, t0, 1, &[0]);
        m.handle_app(
            AppInput::CommitRefused {
                code: ErrorCode::RebalanceInProgress,
                generation: m.generation(),
            },
            t0,
        );
        assert_eq!(
            events(&mut m),
            vec![
                MemberEvent::Assigned(tps(&[0])),
                MemberEvent::Revoke(tps(&[0]))
            ]
        );
        let late = t0 + Duration::from_secs(20);
        m.handle_timeout(late);
        assert!(m.owned().is_empty(), "released at the deadline");
        expect_join(&mut m, late);
        // The application's answer, arriving after, is ignored.
        m.handle_app(AppInput::RevokeDone(tps(&[0])), late);
        assert_eq!(m.phase(), Phase::Rebalancing);
    }

    #[test]
    fn cooperative_members_keep_what_stays_and_revoke_only_what_moves() {
        let t0 = Instant::now();
        let mut m = cooperative();
        assert!(m.is_cooperative());
        join_as_follower(&mut m, t0, 1, &[0, 1, 2]);
        assert_eq!(events(&mut m), vec![MemberEvent::Assigned(tps(&[0, 1, 2]))]);
        let t1 = t0 + Duration::from_secs(1);
        m.handle_timeout(t1);
        expect_heartbeat(&mut m, t1);
        m.handle_response(heartbeat(ErrorCode::RebalanceInProgress), t1);
        assert!(events(&mut m).is_empty(), "nothing revoked up front");
        let join = expect_join(&mut m, t1);
        let owned = owned_in(&join).unwrap();
        assert_eq!(owned["t"], vec![0, 1, 2], "the subscription reports owned");
        let sub = Subscription::decode(join.protocols[0].metadata.clone()).unwrap();
        assert_eq!((sub.version, sub.generation), (3, Some(1)));
        assert_eq!(&sub.user_data[..], &1i32.to_be_bytes());
        m.handle_response(join_ok("m1", 2, "other"), t1);
        expect_sync(&mut m, t1);
        m.handle_response(sync_ok(&[0, 1, 5]), t1);
        assert_eq!(
            events(&mut m),
            vec![
                MemberEvent::Revoke(tps(&[2])),
                MemberEvent::Assigned(tps(&[5]))
            ]
        );
        assert_eq!(m.phase(), Phase::Revoking);
        assert_eq!(
            m.poll_request(t1),
            None,
            "no follow-up join before the revoke"
        );
        m.handle_app(AppInput::RevokeDone(tps(&[2])), t1);
        assert_eq!(m.owned(), &tps(&[0, 1, 5])[..]);
        let again = expect_join(&mut m, t1);
        assert_eq!(owned_in(&again).unwrap()["t"], vec![0, 1, 5]);
        m.handle_response(join_ok("m1", 3, "other"), t1);
        expect_sync(&mut m, t1);
        m.handle_response(sync_ok(&[0, 1, 5]), t1);
        assert!(events(&mut m).is_empty(), "nothing changes: no hook fires");
        assert_eq!(m.phase(), Phase::Stable);
    }

    #[test]
    fn heartbeat_errors_lose_fail_or_retry() {
        let t0 = Instant::now();
        let hb_at = t0 + Duration::from_secs(1);
        let answer = |code: ErrorCode| {
            let mut m = eager();
            join_as_follower(&mut m, t0, 1, &[0]);
            events(&mut m);
            m.handle_timeout(hb_at);
            expect_heartbeat(&mut m, hb_at);
            m.handle_response(heartbeat(code), hb_at);
            (events(&mut m), m)
        };
        for code in [ErrorCode::UnknownMemberId, ErrorCode::IllegalGeneration] {
            let (ev, mut m) = answer(code);
            assert_eq!(ev, vec![MemberEvent::Lost(tps(&[0]))], "{code}");
            assert_eq!(expect_join(&mut m, hb_at).member_id, "", "{code}");
        }
        // Fatal: another instance took over, so the partitions are its now.
        let (ev, m) = answer(ErrorCode::FencedInstanceId);
        assert_eq!(
            ev,
            vec![
                MemberEvent::Lost(tps(&[0])),
                MemberEvent::Fatal {
                    api: "Heartbeat",
                    code: ErrorCode::FencedInstanceId
                }
            ]
        );
        assert!(m.is_finished());
        assert!(m.owned().is_empty());
        let (ev, mut m) = answer(ErrorCode::NotCoordinator);
        assert_eq!(ev, vec![MemberEvent::CoordinatorLost]);
        assert_eq!(m.poll_request(hb_at), None);
        let retry = hb_at + Duration::from_millis(100);
        m.handle_timeout(retry);
        expect_heartbeat(&mut m, retry);
        let (ev, _) = answer(ErrorCode::GroupAuthorizationFailed);
        assert!(matches!(
            ev[..],
            [MemberEvent::Lost(_), MemberEvent::Fatal { .. }]
        ));
    }

    #[test]
    fn join_and_sync_errors() {
        let t0 = Instant::now();
        let mut m = eager();
        expect_join(&mut m, t0);
        m.handle_response(join_err(ErrorCode::CoordinatorLoadInProgress, ""), t0);
        assert_eq!(m.poll_request(t0), None, "a retriable error backs off");
        let t1 = t0 + Duration::from_millis(100);
        m.handle_timeout(t1);
        expect_join(&mut m, t1);
        // The coordinator moved, or the connection failed: find it again.
        m.handle_response(Inbound::Failed, t1);
        assert_eq!(events(&mut m), vec![MemberEvent::CoordinatorLost]);
        let t2 = t1 + Duration::from_millis(100);
        m.handle_timeout(t2);
        expect_join(&mut m, t2);
        m.handle_response(join_ok("m1", 1, "other"), t2);
        expect_sync(&mut m, t2);
        // A new round began while syncing: join it at once.
        m.handle_response(sync_err(ErrorCode::RebalanceInProgress), t2);
        expect_join(&mut m, t2);
        m.handle_response(join_err(ErrorCode::InconsistentGroupProtocol, ""), t2);
        assert_eq!(
            events(&mut m),
            vec![MemberEvent::Fatal {
                api: "JoinGroup",
                code: ErrorCode::InconsistentGroupProtocol
            }]
        );
        assert_eq!(m.poll_request(t2), None);
    }

    #[test]
    fn a_rebalance_during_a_commit_starts_the_revoke() {
        let t0 = Instant::now();
        let mut m = eager();
        join_as_follower(&mut m, t0, 3, &[0, 1]);
        events(&mut m);
        m.handle_app(
            AppInput::CommitRefused {
                code: ErrorCode::RebalanceInProgress,
                generation: m.generation(),
            },
            t0,
        );
        assert_eq!(events(&mut m), vec![MemberEvent::Revoke(tps(&[0, 1]))]);
        // A commit refused for a generation the group moved past: lost.
        let mut m = eager();
        join_as_follower(&mut m, t0, 3, &[0, 1]);
        events(&mut m);
        // An answer about an older generation changes nothing.
        m.handle_app(
            AppInput::CommitRefused {
                code: ErrorCode::IllegalGeneration,
                generation: 2,
            },
            t0,
        );
        assert!(events(&mut m).is_empty());
        m.handle_app(
            AppInput::CommitRefused {
                code: ErrorCode::IllegalGeneration,
                generation: 3,
            },
            t0,
        );
        assert_eq!(events(&mut m), vec![MemberEvent::Lost(tps(&[0, 1]))]);
        assert_eq!(m.commit_identity(), None);
    }

    #[test]
    fn a_member_that_stops_polling_leaves_and_rejoins_on_its_next_poll() {
        let t0 = Instant::now();
        let mut m = eager();
        m.handle_app(AppInput::Polled, t0);
        join_as_follower(&mut m, t0, 1, &[0]);
        events(&mut m);
        // Heartbeats alone do not keep a wedged application in the group.
        let mut t = t0;
        while t < t0 + Duration::from_secs(59) {
            t += Duration::from_secs(1);
            m.handle_timeout(t);
            expect_heartbeat(&mut m, t);
            m.handle_response(heartbeat(ErrorCode::None), t);
        }
        let expiry = t0 + Duration::from_secs(60);
        m.handle_timeout(expiry);
        assert_eq!(
            events(&mut m),
            vec![
                MemberEvent::Lost(tps(&[0])),
                MemberEvent::PollIntervalExceeded
            ]
        );
        assert_eq!(
            m.poll_request(expiry),
            Some(Outbound::Leave {
                member_id: "m1".into(),
                instance_id: None
            })
        );
        assert_eq!(m.poll_request(expiry), None, "no rejoin before a poll");
        m.handle_app(AppInput::Polled, expiry);
        assert_eq!(expect_join(&mut m, expiry).member_id, "", "a new member");
    }

    #[test]
    fn static_members_rejoin_with_their_instance_id_and_do_not_leave() {
        let t0 = Instant::now();
        let mut m = ClassicMember::new(settings(Some("billing-1")), vec![Arc::new(RangeAssignor)]);
        let join = expect_join(&mut m, t0);
        assert_eq!(join.group_instance_id.as_deref(), Some("billing-1"));
        m.handle_response(join_ok("m1", 1, "other"), t0);
        assert_eq!(
            expect_sync(&mut m, t0).group_instance_id.as_deref(),
            Some("billing-1")
        );
        m.handle_response(sync_ok(&[0]), t0);
        m.handle_app(AppInput::Leave, t0);
        assert_eq!(
            m.poll_request(t0),
            None,
            "a static member sends no LeaveGroup"
        );
        assert!(m.is_finished());

        let mut d = eager();
        join_as_follower(&mut d, t0, 1, &[0]);
        d.handle_app(AppInput::Leave, t0);
        assert_eq!(
            d.poll_request(t0),
            Some(Outbound::Leave {
                member_id: "m1".into(),
                instance_id: None
            })
        );
        assert!(d.is_finished());
    }
    #[test]
    fn a_silent_coordinator_is_looked_up_again_and_the_partitions_kept() {
        let t0 = Instant::now();
        let mut m = eager();
        join_as_follower(&mut m, t0, 1, &[0, 1]);
        events(&mut m);
        // Every heartbeat times out (the coordinator is down or silent).
        let mut t = t0;
        while t < t0 + Duration::from_secs(30) {
            t += Duration::from_secs(1);
            m.handle_timeout(t);
            if let Some(Outbound::Heartbeat(_)) = m.poll_request(t) {
                m.handle_response(Inbound::Failed, t);
            }
        }
        let ev = events(&mut m);
        assert!(
            ev.iter().all(|e| *e == MemberEvent::CoordinatorLost),
            "{ev:?}"
        );
        assert_eq!(
            m.owned(),
            &tps(&[0, 1])[..],
            "no rebalance without a coordinator"
        );
        // The coordinator is back and forgot the member: lost then.
        let back = t + Duration::from_secs(1);
        m.handle_timeout(back);
        expect_heartbeat(&mut m, back);
        m.handle_response(heartbeat(ErrorCode::UnknownMemberId), back);
        assert_eq!(events(&mut m), vec![MemberEvent::Lost(tps(&[0, 1]))]);
    }

    #[test]
    fn a_static_leader_told_to_skip_the_assignment_keeps_the_groups() {
        let t0 = Instant::now();
        let mut m = ClassicMember::new(settings(Some("billing-1")), vec![Arc::new(RangeAssignor)]);
        expect_join(&mut m, t0);
        m.handle_response(
            Inbound::Join(JoinGroupResponse {
                member_id: "m1".into(),
                leader: "m1".into(),
                generation_id: 5,
                skip_assignment: true,
                protocol_name: Some("range".into()),
                ..Default::default()
            }),
            t0,
        );
        assert!(events(&mut m).is_empty(), "no partition lookup");
        let sync = expect_sync(&mut m, t0);
        assert!(sync.assignments.is_empty());
        m.handle_response(sync_ok(&[0, 1]), t0);
        assert_eq!(events(&mut m), vec![MemberEvent::Assigned(tps(&[0, 1]))]);
    }
}
