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

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use franz_client::admin::TopicPartition;
use franz_client::franz_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, consumer_group_heartbeat_request,
};
use franz_protocol::{ErrorCode, Uuid};

use super::{
    AppInput, Inbound, MemberEvent, MemberSettings, Outbound, Phase, Timer, TimerTable,
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
    settings: MemberSettings,
    phase: Phase,
    member_id: String,
    epoch: i32,
    /// Owned partitions, by topic id as acknowledged to the coordinator.
    owned_ids: IdAssignment,
    /// The same, by name, sorted.
    owned: Vec<TopicPartition>,
    /// The coordinator's latest target, until reconciled.
    target: Option<IdAssignment>,
    names: BTreeMap<Uuid, String>,
    names_asked: bool,
    revoking: Vec<TopicPartition>,
    heartbeat_interval: Duration,
    heartbeat_due: bool,
    in_flight: bool,
    leave_pending: Option<i32>,
    events: VecDeque<MemberEvent>,
    timers: TimerTable,
}

impl Kip848Member {
    /// A member that joins (epoch 0) on its first request.
    pub fn new(settings: MemberSettings) -> Self {
        let heartbeat_interval = clamp_heartbeat_interval(settings.heartbeat_interval);
        Self {
            settings,
            phase: Phase::Joining,
            member_id: String::new(),
            epoch: 0,
            owned_ids: IdAssignment::new(),
            owned: Vec::new(),
            target: None,
            names: BTreeMap::new(),
            names_asked: false,
            revoking: Vec::new(),
            heartbeat_interval,
            heartbeat_due: false,
            in_flight: false,
            leave_pending: None,
            events: VecDeque::new(),
            timers: TimerTable::default(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The member id (assigned by the coordinator on the first heartbeat).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The member epoch (0 while joining).
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The partitions the member owns, sorted.
    pub fn owned(&self) -> &[TopicPartition] {
        &self.owned
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
        matches!(self.phase, Phase::Left | Phase::Failed) && self.leave_pending.is_none()
    }

    /// The next application or driver event.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expire(now) {
            match timer {
                Timer::Heartbeat => self.heartbeat_due = true,
                Timer::Backoff => {}
                Timer::PollInterval => self.poll_interval_expired(),
                Timer::Revoke => {
                    if self.phase == Phase::Revoking {
                        tracing::warn!(
                            group = %self.settings.group_id,
                            partitions = ?self.revoking,
                            "the revoke deadline passed; releasing the partitions anyway (later results for them are not committed)"
                        );
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
                if matches!(self.phase, Phase::Left | Phase::Failed) {
                    return;
                }
                self.timers
                    .set(Timer::PollInterval, now + self.settings.max_poll_interval);
                if self.phase == Phase::PollTimedOut && self.leave_pending.is_none() {
                    self.phase = Phase::Joining;
                }
            }
            AppInput::RevokeDone(partitions) => {
                if self.phase == Phase::Revoking && partitions == self.revoking {
                    self.finish_revoke(now);
                }
            }
            AppInput::CommitRefused(code) => match code {
                ErrorCode::StaleMemberEpoch => self.heartbeat_due = true,
                ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => self.fenced(code),
                _ => {}
            },
            AppInput::Leave => {
                if matches!(self.phase, Phase::Left | Phase::Failed) {
                    return;
                }
                if !self.member_id.is_empty() && self.phase != Phase::PollTimedOut {
                    self.leave_pending = Some(if self.settings.instance_id.is_some() {
                        STATIC_LEAVE_EPOCH
                    } else {
                        LEAVE_EPOCH
                    });
                }
                self.phase = Phase::Left;
                self.timers = TimerTable::default();
                self.owned.clear();
                self.revoking.clear();
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
            let leave = ConsumerGroupHeartbeatRequest {
                group_id: self.settings.group_id.clone(),
                member_id: self.member_id.clone(),
                member_epoch: epoch,
                instance_id: self.settings.instance_id.clone(),
                ..Default::default()
            };
            if self.phase == Phase::PollTimedOut {
                self.member_id.clear();
                self.epoch = 0;
            }
            return Some(Outbound::ConsumerHeartbeat(leave));
        }
        if self.in_flight {
            return None;
        }
        let send = match self.phase {
            Phase::Joining => self.timers.get(Timer::Backoff).is_none(),
            Phase::Stable | Phase::Revoking => self.heartbeat_due,
            _ => false,
        };
        if !send {
            return None;
        }
        self.heartbeat_due = false;
        self.in_flight = true;
        self.timers.stop(Timer::Heartbeat);
        let _ = now;
        Some(Outbound::ConsumerHeartbeat(self.heartbeat_request()))
    }

    /// The full-state heartbeat (subscription and owned partitions), which
    /// the protocol allows and which makes a lost response harmless.
    pub fn heartbeat_request(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            group_id: self.settings.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            instance_id: self.settings.instance_id.clone(),
            rack_id: self.settings.rack.clone(),
            rebalance_timeout_ms: millis(self.settings.rebalance_timeout),
            subscribed_topic_names: Some(self.settings.topics.clone()),
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
            Inbound::ConsumerHeartbeat(resp) => {
                if !self.in_flight {
                    return; // the answer to a leave
                }
                self.in_flight = false;
                if matches!(
                    self.phase,
                    Phase::Left | Phase::Failed | Phase::PollTimedOut
                ) {
                    return;
                }
                self.answered(&resp, now);
            }
            Inbound::Failed => {
                if self.in_flight {
                    self.in_flight = false;
                    self.events.push_back(MemberEvent::CoordinatorLost);
                    self.retry_later(now);
                }
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
                self.events.push_back(MemberEvent::CoordinatorLost);
                self.retry_later(now);
                return;
            }
            c if c.is_retriable() => {
                self.retry_later(now);
                return;
            }
            c => {
                self.phase = Phase::Failed;
                self.timers = TimerTable::default();
                self.events.push_back(MemberEvent::Fatal {
                    api: "ConsumerGroupHeartbeat",
                    code: c,
                });
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
        if self.phase == Phase::Joining {
            self.phase = Phase::Stable;
        }
        self.timers
            .set(Timer::Heartbeat, now + self.heartbeat_interval);
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
        if self.phase != Phase::Stable {
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
                self.events.push_back(MemberEvent::NeedTopicNames(unknown));
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
        let revoked = minus(&self.owned, &named);
        if !revoked.is_empty() {
            self.revoking = revoked.clone();
            self.phase = Phase::Revoking;
            self.timers
                .set(Timer::Revoke, now + self.settings.revoke_timeout);
            self.events.push_back(MemberEvent::Revoke(revoked));
            return;
        }
        let added = minus(&named, &self.owned);
        self.owned = named;
        self.owned_ids = self.target.take().unwrap_or_default();
        if !added.is_empty() {
            self.events.push_back(MemberEvent::Assigned(added));
        }
        // Acknowledge the new set at once.
        self.heartbeat_due = true;
    }

    fn finish_revoke(&mut self, now: Instant) {
        self.timers.stop(Timer::Revoke);
        let revoked = std::mem::take(&mut self.revoking);
        self.owned.retain(|tp| !revoked.contains(tp));
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
        self.phase = Phase::Stable;
        self.heartbeat_due = true;
        self.reconcile(now);
    }

    /// Fenced or forgotten: what the member owned may be another's already.
    fn fenced(&mut self, code: ErrorCode) {
        tracing::info!(group = %self.settings.group_id, %code, "fenced; rejoining");
        self.epoch = 0;
        if code == ErrorCode::UnknownMemberId {
            self.member_id.clear();
        }
        self.lose_partitions();
        self.phase = Phase::Joining;
    }

    fn lose_partitions(&mut self) {
        self.revoking.clear();
        self.target = None;
        self.owned_ids.clear();
        self.timers.stop(Timer::Revoke);
        if !self.owned.is_empty() {
            self.events
                .push_back(MemberEvent::Lost(std::mem::take(&mut self.owned)));
        }
    }

    fn retry_later(&mut self, now: Instant) {
        if self.phase == Phase::Joining {
            self.timers
                .set(Timer::Backoff, now + self.settings.retry_backoff);
        } else {
            self.heartbeat_due = false;
            self.timers
                .set(Timer::Heartbeat, now + self.settings.retry_backoff);
        }
    }

    fn poll_interval_expired(&mut self) {
        if matches!(
            self.phase,
            Phase::Left | Phase::Failed | Phase::PollTimedOut
        ) {
            return;
        }
        tracing::warn!(group = %self.settings.group_id, after = ?self.settings.max_poll_interval, "the application did not poll within max_poll_interval; leaving the group");
        self.lose_partitions();
        // Java leaves with -1 on a poll timeout, static or not, so the
        // partitions move at once.
        if !self.member_id.is_empty() {
            self.leave_pending = Some(LEAVE_EPOCH);
        }
        self.phase = Phase::PollTimedOut;
        self.events.push_back(MemberEvent::PollIntervalExceeded);
    }
}
