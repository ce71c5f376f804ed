//! The KIP-848 consumer group protocol's member, sans-io: one
//! `ConsumerGroupHeartbeat` per interval carries the member's subscription
//! and the partitions it owns; the coordinator answers with the member's
//! epoch and, when it changes, the target assignment. No JoinGroup, no
//! SyncGroup, no client-side assignor.
//!
//! ## Rebalance sequence
//! A new target arrives → partitions by topic id are resolved to names
//! ([`MemberEvent::NeedTopicNames`] when some are unknown) → the partitions
//! gone from the target are revoked first ([`MemberEvent::Revoke`]); the
//! heartbeats meanwhile still report them as owned → once the application
//! lets go ([`AppInput::RevokeDone`], or the revoke deadline) the added
//! partitions are [`MemberEvent::Assigned`] and the next heartbeat, sent at
//! once, acknowledges the new set. Only that acknowledgement lets the
//! coordinator give the revoked partitions to another member, so no two
//! members handle one partition at once (Java's order: commit, revoke
//! callback, then acknowledge).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use franz_client::TopicPartition;
use franz_client::franz_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, consumer_group_heartbeat_request,
};
use franz_protocol::{ErrorCode, Uuid};

use super::{
    AppInput, Core, Inbound, MemberEvent, MemberSettings, Outbound, Phase, Timer,
    clamp_heartbeat_interval, millis, minus,
};

/// Partitions by topic id, as the protocol names them.
pub type IdAssignment = BTreeMap<Uuid, Vec<i32>>;

/// Epoch a dynamic member leaves with.
const LEAVE_EPOCH: i32 = -1;
/// Epoch a static member leaves with: its partitions wait for its next
/// instance until the session times out.
const STATIC_LEAVE_EPOCH: i32 = -2;

/// One KIP-848 member. See the module docs for the sequence.
#[derive(Debug)]
pub struct Kip848Member {
    core: Core,
    member_id: String,
    /// The id this member generated for itself (KIP-1082: required from
    /// ConsumerGroupHeartbeat v1, kept for the member's lifetime); empty
    /// lets the coordinator choose (v0).
    own_member_id: String,
    /// A pattern was sent once: dropping it must be said (an empty one).
    regex_sent: bool,
    epoch: i32,
    /// Owned partitions, by topic id as acknowledged to the coordinator.
    owned_ids: IdAssignment,
    /// The coordinator's latest target, until reconciled.
    target: Option<IdAssignment>,
    names: BTreeMap<Uuid, String>,
    names_asked: bool,
    heartbeat_interval: Duration,
    heartbeat_due: bool,
    in_flight: bool,
    /// A heartbeat was in flight when the member left: its answer describes
    /// the membership that was left, and is dropped.
    discard_in_flight: bool,
    leave_pending: Option<i32>,
}

impl Kip848Member {
    /// A member that joins (epoch 0) on its first request, with a member id
    /// the coordinator chooses (ConsumerGroupHeartbeat v0 only).
    pub fn new(settings: MemberSettings) -> Self {
        Self::with_member_id(settings, String::new())
    }

    /// A member that names itself `member_id` (a random UUID, as Java's
    /// KIP-1082 members do), which v1+ coordinators require.
    pub fn with_member_id(settings: MemberSettings, member_id: String) -> Self {
        let heartbeat_interval = clamp_heartbeat_interval(settings.heartbeat_interval);
        Self {
            core: Core::new(settings),
            own_member_id: member_id.clone(),
            regex_sent: false,
            member_id,
            epoch: 0,
            owned_ids: IdAssignment::new(),
            target: None,
            names: BTreeMap::new(),
            names_asked: false,
            heartbeat_interval,
            heartbeat_due: false,
            in_flight: false,
            discard_in_flight: false,
            leave_pending: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.core.phase
    }

    /// The member id (assigned by the coordinator on the first heartbeat).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The member epoch (0 while joining).
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The subscribed topics.
    pub fn topics(&self) -> &[String] {
        &self.core.settings.topics
    }

    /// The partitions the member owns, sorted.
    pub fn owned(&self) -> &[TopicPartition] {
        &self.core.owned
    }

    /// The heartbeat interval in use (the coordinator's, clamped).
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The member id and epoch a commit carries, while the member has one.
    pub fn commit_identity(&self) -> Option<(String, i32)> {
        (!self.member_id.is_empty() && self.epoch > 0).then(|| (self.member_id.clone(), self.epoch))
    }

    /// Whether the member will send nothing more.
    pub fn is_finished(&self) -> bool {
        matches!(self.core.phase, Phase::Left | Phase::Failed) && self.leave_pending.is_none()
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
                        self.finish_revoke(now);
                    }
                }
            }
        }
    }

    /// Takes an application input.
    pub fn handle_app(&mut self, input: AppInput, now: Instant) {
        match input {
            AppInput::Polled => {
                if self.core.polled(now) && self.leave_pending.is_none() {
                    self.core.phase = Phase::Joining;
                }
            }
            AppInput::RevokeDone(partitions) => {
                if self.core.is_revoke_answer(&partitions) {
                    self.finish_revoke(now);
                }
            }
            AppInput::CommitRefused { generation, .. } if generation != self.epoch => {}
            AppInput::CommitRefused { code, .. } => match code {
                ErrorCode::StaleMemberEpoch => self.heartbeat_due = true,
                ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => self.fenced(code),
                _ => {}
            },
            AppInput::Subscribe { topics, regex } => {
                self.core.settings.topics = topics;
                self.core.settings.topic_regex = regex;
                // Sent with the next heartbeat, which is due at once.
                self.heartbeat_due = true;
            }
            AppInput::MetadataChanged => {}
            AppInput::Leave => {
                if self.core.is_over() {
                    return;
                }
                if !self.member_id.is_empty() && self.core.phase != Phase::PollTimedOut {
                    self.leave_pending = Some(if self.core.settings.instance_id.is_some() {
                        STATIC_LEAVE_EPOCH
                    } else {
                        LEAVE_EPOCH
                    });
                }
                self.core.leave();
            }
        }
    }

    /// Topic names for ids the member asked about; ids still unknown are
    /// dropped from the target (a deleted topic).
    pub fn handle_topic_names(&mut self, names: &BTreeMap<Uuid, String>, now: Instant) {
        self.names
            .extend(names.iter().map(|(id, n)| (*id, n.clone())));
        if let Some(target) = &mut self.target {
            target.retain(|id, _| {
                let known = self.names.contains_key(id);
                if !known {
                    tracing::warn!(
                        ?id,
                        "assigned a topic id the metadata does not know; ignoring it"
                    );
                }
                known
            });
        }
        self.names_asked = false;
        self.reconcile(now);
    }

    /// The next request, if any: the heartbeat when due, at once when an
    /// acknowledgement or a leave is waiting.
    pub fn poll_request(&mut self, now: Instant) -> Option<Outbound> {
        if let Some(epoch) = self.leave_pending.take() {
            self.discard_in_flight = self.in_flight;
            let leave = ConsumerGroupHeartbeatRequest {
                group_id: self.core.settings.group_id.clone(),
                member_id: self.member_id.clone(),
                member_epoch: epoch,
                instance_id: self.core.settings.instance_id.clone(),
                ..Default::default()
            };
            if self.core.phase == Phase::PollTimedOut {
                self.member_id.clone_from(&self.own_member_id);
                self.epoch = 0;
            }
            return Some(Outbound::ConsumerHeartbeat(leave));
        }
        if self.in_flight {
            return None;
        }
        let send = match self.core.phase {
            Phase::Joining => self.core.timers.get(Timer::Backoff).is_none(),
            Phase::Stable | Phase::Revoking => self.heartbeat_due,
            _ => false,
        };
        if !send {
            return None;
        }
        self.heartbeat_due = false;
        self.in_flight = true;
        self.core.timers.stop(Timer::Heartbeat);
        let _ = now;
        Some(Outbound::ConsumerHeartbeat(self.heartbeat_request()))
    }

    /// The full-state heartbeat (subscription and owned partitions), which
    /// the protocol allows and which makes a lost response harmless.
    pub fn heartbeat_request(&mut self) -> ConsumerGroupHeartbeatRequest {
        let regex = match &self.core.settings.topic_regex {
            Some(r) => Some(r.clone()),
            // Dropping a pattern is said with an empty one.
            None if self.regex_sent => Some(String::new()),
            None => None,
        };
        self.regex_sent = self.core.settings.topic_regex.is_some();
        ConsumerGroupHeartbeatRequest {
            subscribed_topic_regex: regex,
            group_id: self.core.settings.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            instance_id: self.core.settings.instance_id.clone(),
            rack_id: self.core.settings.rack.clone(),
            rebalance_timeout_ms: millis(self.core.settings.rebalance_timeout),
            subscribed_topic_names: Some(self.core.settings.topics.clone()),
            topic_partitions: Some(
                self.owned_ids
                    .iter()
                    .map(
                        |(id, ps)| consumer_group_heartbeat_request::TopicPartitions {
                            topic_id: *id,
                            partitions: ps.clone(),
                            ..Default::default()
                        },
                    )
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// Takes the coordinator's answer.
    pub fn handle_response(&mut self, inbound: Inbound, now: Instant) {
        match inbound {
            Inbound::ConsumerHeartbeat(_) | Inbound::Failed if self.discard_in_flight => {
                self.discard_in_flight = false;
                self.in_flight = false;
            }
            Inbound::ConsumerHeartbeat(resp) => {
                if !self.in_flight {
                    return;
                }
                self.in_flight = false;
                if matches!(
                    self.core.phase,
                    Phase::Left | Phase::Failed | Phase::PollTimedOut
                ) {
                    return;
                }
                self.answered(&resp, now);
            }
            Inbound::Failed if self.in_flight => {
                self.in_flight = false;
                self.core.events.push_back(MemberEvent::CoordinatorLost);
                self.retry_later(now);
            }
            _ => {}
        }
    }

    fn answered(&mut self, resp: &ConsumerGroupHeartbeatResponse, now: Instant) {
        let code = ErrorCode::from_code(resp.error_code);
        match code {
            ErrorCode::None => {}
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                self.fenced(code);
                return;
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.core.events.push_back(MemberEvent::CoordinatorLost);
                self.retry_later(now);
                return;
            }
            c if c.is_retriable() => {
                self.retry_later(now);
                return;
            }
            c => {
                self.core.fail("ConsumerGroupHeartbeat", c);
                return;
            }
        }
        if let Some(id) = resp.member_id.as_deref().filter(|id| !id.is_empty()) {
            self.member_id = id.to_string();
        }
        self.epoch = resp.member_epoch;
        if resp.heartbeat_interval_ms > 0 {
            self.heartbeat_interval = clamp_heartbeat_interval(Duration::from_millis(
                u64::try_from(resp.heartbeat_interval_ms).unwrap_or(0),
            ));
        }
        if self.core.phase == Phase::Joining {
            self.core.phase = Phase::Stable;
        }
        self.core
            .timers
            .set(Timer::Heartbeat, now + self.heartbeat_interval);
        self.core
            .timers
            .set(Timer::Session, now + self.core.settings.session_timeout);
        if let Some(a) = &resp.assignment {
            let target: IdAssignment = a
                .topic_partitions
                .iter()
                .map(|tp| {
                    let mut ps = tp.partitions.clone();
                    ps.sort_unstable();
                    ps.dedup();
                    (tp.topic_id, ps)
                })
                .filter(|(_, ps)| !ps.is_empty())
                .collect();
            self.target = Some(target);
            self.reconcile(now);
        }
    }

    /// Moves towards the target: revoke first, then assign and acknowledge.
    fn reconcile(&mut self, now: Instant) {
        if self.core.phase != Phase::Stable {
            return;
        }
        let Some(target) = &self.target else {
            return;
        };
        if *target == self.owned_ids {
            self.target = None;
            return;
        }
        let unknown: Vec<Uuid> = target
            .keys()
            .filter(|id| !self.names.contains_key(id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            if !self.names_asked {
                self.names_asked = true;
                self.core
                    .events
                    .push_back(MemberEvent::NeedTopicNames(unknown));
            }
            return;
        }
        let mut named: Vec<TopicPartition> = target
            .iter()
            .flat_map(|(id, ps)| {
                let name = self.names.get(id).cloned().unwrap_or_default();
                ps.iter()
                    .map(move |p| TopicPartition::new(name.as_str(), *p))
            })
            .collect();
        named.sort();
        let revoked = minus(&self.core.owned, &named);
        if !revoked.is_empty() {
            self.core.begin_revoke(revoked, now);
            return;
        }
        let added = minus(&named, &self.core.owned);
        self.core.owned = named;
        self.owned_ids = self.target.take().unwrap_or_default();
        if !added.is_empty() {
            self.core.events.push_back(MemberEvent::Assigned(added));
        }
        // Acknowledge the new set at once.
        self.heartbeat_due = true;
    }

    fn finish_revoke(&mut self, now: Instant) {
        let revoked = self.core.end_revoke();
        let ids: BTreeMap<&str, Uuid> =
            self.names.iter().map(|(id, n)| (n.as_str(), *id)).collect();
        for tp in &revoked {
            if let Some(id) = ids.get(tp.topic.as_str())
                && let Some(ps) = self.owned_ids.get_mut(id)
            {
                ps.retain(|p| *p != tp.partition);
            }
        }
        self.owned_ids.retain(|_, ps| !ps.is_empty());
        self.core.phase = Phase::Stable;
        self.heartbeat_due = true;
        self.reconcile(now);
    }

    /// Fenced or forgotten: what the member owned may be another's already.
    fn fenced(&mut self, code: ErrorCode) {
        tracing::info!(group = %self.core.settings.group_id, %code, "fenced; rejoining");
        self.epoch = 0;
        if code == ErrorCode::UnknownMemberId {
            self.member_id.clone_from(&self.own_member_id);
        }
        self.lose_partitions();
        self.core.phase = Phase::Joining;
    }

    fn lose_partitions(&mut self) {
        self.forget_assignment();
        self.core.lose_partitions();
    }

    /// The target and the acknowledged set go with lost partitions.
    fn forget_assignment(&mut self) {
        self.target = None;
        self.owned_ids.clear();
    }

    fn retry_later(&mut self, now: Instant) {
        if self.core.phase == Phase::Joining {
            self.core
                .timers
                .set(Timer::Backoff, now + self.core.settings.retry_backoff);
        } else {
            self.heartbeat_due = false;
            self.core
                .timers
                .set(Timer::Heartbeat, now + self.core.settings.retry_backoff);
        }
    }

    fn poll_interval_expired(&mut self) {
        if !self.core.poll_timed_out() {
            return;
        }
        self.forget_assignment();
        // Java leaves with -1 on a poll timeout, static or not, so the
        // partitions move at once.
        if !self.member_id.is_empty() {
            self.leave_pending = Some(LEAVE_EPOCH);
        }
    }
}

#[cfg(test)]
mod tests;
