//! Consumer groups: the classic protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) as a state machine over `now`, committed offsets, and the
//! transactional offsets waiting for their transaction's end.
//!
//! JoinGroup and SyncGroup calls that must wait for other members return
//! `Wait`; the driver parks them and polls `poll_join` / `poll_sync` after
//! every change, as a broker's purgatory would.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_protocol::ErrorCode;

use crate::consumer_group::ConsumerGroup;
use crate::state::{Committed, OffsetMap};

/// Every group the coordinator knows.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub(crate) map: HashMap<String, Group>,
    pub(crate) timings: GroupTimings,
}

/// One group, of either protocol, with its offsets.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) kind: GroupKind,
    pub(crate) offsets: OffsetMap,
    /// Offsets written in open transactions, by producer id.
    pub(crate) pending_txn: HashMap<i64, OffsetMap>,
}

/// The group's protocol.
#[derive(Debug)]
pub(crate) enum GroupKind {
    /// JoinGroup / SyncGroup (also what offsets-only groups are).
    Classic(ClassicGroup),
    /// KIP-848's ConsumerGroupHeartbeat.
    Consumer(ConsumerGroup),
}

/// Classic group states, named as DescribeGroups reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A classic group member.
#[derive(Debug, Clone)]
pub(crate) struct ClassicMember {
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// Joined the rebalance in progress.
    pub(crate) joined: bool,
    pub(crate) last_seen: Instant,
    /// The JoinGroup answer, once the round completes.
    pub(crate) join_result: Option<JoinResult>,
    /// Join order, for choosing a leader.
    pub(crate) order: u64,
}

/// A completed join, as JoinGroup answers it.
#[derive(Debug, Clone)]
pub(crate) struct JoinResult {
    pub(crate) error: ErrorCode,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// `(member id, instance id, metadata)`; only the leader gets them.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub(crate) fn error(code: ErrorCode, member_id: &str) -> Self {
        Self {
            error: code,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A classic group.
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    pub(crate) state: ClassicState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, ClassicMember>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they expire.
    pub(crate) pending: HashMap<String, Instant>,
    /// The round may not complete before this (initial rebalance delay).
    complete_not_before: Instant,
    /// The round completes at this time whoever has rejoined.
    deadline: Instant,
    next_order: u64,
}

/// A JoinGroup request's fields.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// v4+: a new member first gets MEMBER_ID_REQUIRED.
    pub(crate) require_known_member_id: bool,
}

/// The outcome of a JoinGroup call.
#[derive(Debug)]
pub(crate) enum Joined {
    Done(JoinResult),
    /// Waiting for the round, under this member id.
    Parked(String),
}

/// The outcome of a SyncGroup step.
#[derive(Debug)]
pub(crate) enum Step<T> {
    Done(T),
    Wait,
}

/// Settings that shape group behaviour.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupTimings {
    pub(crate) initial_rebalance_delay: Duration,
    pub(crate) min_session_timeout: Duration,
    pub(crate) max_session_timeout: Duration,
    /// KIP-848: the interval members are told to heartbeat at.
    pub(crate) consumer_heartbeat_interval: Duration,
    /// KIP-848: a member silent this long is removed.
    pub(crate) consumer_session_timeout: Duration,
}

impl Default for GroupTimings {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(1800),
            consumer_heartbeat_interval: Duration::from_millis(1000),
            consumer_session_timeout: Duration::from_secs(10),
        }
    }
}

impl ClassicGroup {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            complete_not_before: now,
            deadline: now,
            next_order: 0,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, timings: &GroupTimings) {
        let rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.complete_not_before = if self.state == ClassicState::Empty {
            now + timings.initial_rebalance_delay
        } else {
            now
        };
        self.deadline = now + rebalance.max(timings.initial_rebalance_delay);
        self.state = ClassicState::PreparingRebalance;
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
    }

    /// JoinGroup: the answer, or `Parked(member id)` until the round completes.
    pub(crate) fn join(
        &mut self,
        generated_id: String,
        req: JoinRequest,
        now: Instant,
        timings: &GroupTimings,
    ) -> Joined {
        if req.session_timeout < timings.min_session_timeout
            || req.session_timeout > timings.max_session_timeout
        {
            return Joined::Done(JoinResult::error(
                ErrorCode::InvalidSessionTimeout,
                &req.member_id,
            ));
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Joined::Done(JoinResult::error(
                ErrorCode::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if !self.members.is_empty() {
            let same_type = self.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            let shared = req.protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .filter(|m| m.instance_id.is_none() || m.instance_id != req.instance_id)
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !same_type || !shared {
                return Joined::Done(JoinResult::error(
                    ErrorCode::InconsistentGroupProtocol,
                    &req.member_id,
                ));
            }
        }
        let member_id = if req.member_id.is_empty() {
            if let Some(instance) = &req.instance_id {
                // A static member's new incarnation replaces the old one.
                let old: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone())
                    .collect();
                if let [old_id] = old.as_slice()
                    && let Some(done) = self.static_rejoin(old_id, &generated_id, &req, now)
                {
                    return Joined::Done(done);
                }
                for id in old {
                    self.members.remove(&id);
                }
                generated_id
            } else if req.require_known_member_id {
                self.pending
                    .insert(generated_id.clone(), now + req.session_timeout);
                return Joined::Done(JoinResult::error(
                    ErrorCode::MemberIdRequired,
                    &generated_id,
                ));
            } else {
                generated_id
            }
        } else {
            let known = self.members.contains_key(&req.member_id)
                || self.pending.remove(&req.member_id).is_some();
            if !known {
                return Joined::Done(JoinResult::error(
                    ErrorCode::UnknownMemberId,
                    &req.member_id,
                ));
            }
            if let Some(m) = self.members.get(&req.member_id)
                && m.instance_id.is_some()
                && m.instance_id != req.instance_id
            {
                return Joined::Done(JoinResult::error(
                    ErrorCode::FencedInstanceId,
                    &req.member_id,
                ));
            }
            req.member_id.clone()
        };
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let order = match self.members.get(&member_id) {
            Some(m) => m.order,
            None => {
                self.next_order += 1;
                self.next_order
            }
        };
        if self.state != ClassicState::PreparingRebalance {
            // Kafka's order: the member is added before the rebalance is
            // prepared, so its rebalance timeout counts.
            self.members.insert(
                member_id.clone(),
                member_from(&req, order, now, Bytes::new()),
            );
            self.prepare_rebalance(now, timings);
        }
        let member = member_from(&req, order, now, Bytes::new());
        self.members.insert(
            member_id.clone(),
            ClassicMember {
                joined: true,
                ..member
            },
        );
        self.complete_if_ready(now);
        match self
            .members
            .get_mut(&member_id)
            .and_then(|m| m.join_result.take())
        {
            Some(result) => Joined::Done(result),
            None => Joined::Parked(member_id),
        }
    }

    /// KIP-345: a static member restarting into a stable group with the
    /// same protocols takes over its predecessor's id and assignment
    /// without a rebalance (a leader's restart still rebalances, as Kafka
    /// does before JoinGroup v9).
    fn static_rejoin(
        &mut self,
        old_id: &str,
        new_id: &str,
        req: &JoinRequest,
        now: Instant,
    ) -> Option<JoinResult> {
        if self.state != ClassicState::Stable || self.leader.as_deref() == Some(old_id) {
            return None;
        }
        let old = self.members.get(old_id)?;
        if old.protocols != req.protocols {
            return None;
        }
        let mut member = self.members.remove(old_id)?;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_seen = now;
        self.members.insert(new_id.to_string(), member);
        Some(JoinResult {
            error: ErrorCode::None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: new_id.to_string(),
            members: Vec::new(),
        })
    }

    /// The member's JoinGroup answer, once its round is complete.
    pub(crate) fn poll_join(&mut self, member_id: &str) -> Option<JoinResult> {
        match self.members.get_mut(member_id) {
            Some(m) => m.join_result.take(),
            None => Some(JoinResult::error(ErrorCode::UnknownMemberId, member_id)),
        }
    }

    /// Completes the round if every member has rejoined or time is up.
    fn complete_if_ready(&mut self, now: Instant) -> bool {
        if self.state != ClassicState::PreparingRebalance {
            return false;
        }
        let all_joined = self.members.values().all(|m| m.joined);
        if !(all_joined && now >= self.complete_not_before) && now < self.deadline {
            return false;
        }
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return true;
        }
        let first = self.members.values().min_by_key(|m| m.order);
        let protocol = first.and_then(|f| {
            f.protocols.iter().map(|(n, _)| n.clone()).find(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
        });
        self.protocol = protocol.clone();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, m)| m.order)
                .map(|(id, _)| id.clone());
        }
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == protocol.as_ref())
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), meta)
            })
            .collect();
        let generation = self.generation;
        let protocol_type = self.protocol_type.clone();
        for (id, m) in &mut self.members {
            m.joined = false;
            m.last_seen = now;
            m.join_result = Some(JoinResult {
                error: ErrorCode::None,
                generation,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
            });
        }
        self.state = ClassicState::CompletingRebalance;
        true
    }

    /// SyncGroup.
    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Step<Result<Bytes, ErrorCode>> {
        let Some(member) = self.members.get_mut(member_id) else {
            return Step::Done(Err(ErrorCode::UnknownMemberId));
        };
        member.last_seen = now;
        if generation != self.generation {
            return Step::Done(Err(ErrorCode::IllegalGeneration));
        }
        match self.state {
            ClassicState::Empty => Step::Done(Err(ErrorCode::UnknownMemberId)),
            ClassicState::PreparingRebalance => Step::Done(Err(ErrorCode::RebalanceInProgress)),
            ClassicState::Stable => Step::Done(Ok(member.assignment.clone())),
            ClassicState::CompletingRebalance => {
                if self.leader.as_deref() == Some(member_id) {
                    for m in self.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, assignment) in assignments {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    self.state = ClassicState::Stable;
                }
                self.poll_sync(member_id, generation)
                    .map_or(Step::Wait, Step::Done)
            }
        }
    }

    /// The member's SyncGroup answer, once the leader has synced.
    pub(crate) fn poll_sync(
        &self,
        member_id: &str,
        generation: i32,
    ) -> Option<Result<Bytes, ErrorCode>> {
        let Some(member) = self.members.get(member_id) else {
            return Some(Err(ErrorCode::UnknownMemberId));
        };
        if generation != self.generation || self.state == ClassicState::PreparingRebalance {
            return Some(Err(ErrorCode::RebalanceInProgress));
        }
        (self.state == ClassicState::Stable).then(|| Ok(member.assignment.clone()))
    }

    /// Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> ErrorCode {
        let Some(member) = self.members.get_mut(member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        member.last_seen = now;
        if generation != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        match self.state {
            ClassicState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            ClassicState::Empty => ErrorCode::UnknownMemberId,
            ClassicState::CompletingRebalance | ClassicState::Stable => ErrorCode::None,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id when the id is empty).
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        timings: &GroupTimings,
    ) -> (String, ErrorCode) {
        let id = if member_id.is_empty() {
            self.members
                .iter()
                .find(|(_, m)| m.instance_id.as_deref() == instance_id && instance_id.is_some())
                .map(|(id, _)| id.clone())
        } else {
            self.members
                .contains_key(member_id)
                .then(|| member_id.to_string())
        };
        let Some(id) = id else {
            return (member_id.to_string(), ErrorCode::UnknownMemberId);
        };
        if let Some(m) = self.members.get(&id)
            && instance_id.is_some()
            && m.instance_id.as_deref() != instance_id
        {
            return (id, ErrorCode::FencedInstanceId);
        }
        self.remove_member(&id, now, timings);
        (id, ErrorCode::None)
    }

    fn remove_member(&mut self, id: &str, now: Instant, timings: &GroupTimings) {
        self.members.remove(id);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, timings);
                self.complete_if_ready(now);
            }
            ClassicState::PreparingRebalance => {
                self.complete_if_ready(now);
            }
            ClassicState::Empty => {}
        }
    }

    /// Session and rebalance timeouts. Returns whether anything changed.
    pub(crate) fn tick(&mut self, now: Instant, timings: &GroupTimings) -> bool {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                // A member parked in JoinGroup is kept alive by the rebalance.
                !(self.state == ClassicState::PreparingRebalance && m.joined)
                    && now.saturating_duration_since(m.last_seen) > m.session_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = !expired.is_empty();
        for id in expired {
            tracing::debug!(member = %id, "classic group member session expired");
            self.remove_member(&id, now, timings);
        }
        changed |= self.complete_if_ready(now);
        changed
    }

    /// OffsetCommit's membership check.
    pub(crate) fn validate_commit(&self, member_id: &str, generation: i32) -> ErrorCode {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            };
        }
        if !self.members.contains_key(member_id) {
            return ErrorCode::UnknownMemberId;
        }
        if generation != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        if self.state == ClassicState::CompletingRebalance {
            return ErrorCode::RebalanceInProgress;
        }
        ErrorCode::None
    }
}

fn member_from(req: &JoinRequest, order: u64, now: Instant, assignment: Bytes) -> ClassicMember {
    ClassicMember {
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout: req.session_timeout,
        rebalance_timeout: req.rebalance_timeout,
        protocols: req.protocols.clone(),
        assignment,
        joined: false,
        last_seen: now,
        join_result: None,
        order,
    }
}

impl Group {
    pub(crate) fn classic(now: Instant) -> Self {
        Self {
            kind: GroupKind::Classic(ClassicGroup::new(now)),
            offsets: OffsetMap::new(),
            pending_txn: HashMap::new(),
        }
    }

    /// Whether the group has no members.
    pub(crate) fn is_empty(&self) -> bool {
        match &self.kind {
            GroupKind::Classic(c) => c.members.is_empty(),
            GroupKind::Consumer(c) => c.members.is_empty(),
        }
    }

    /// The state name DescribeGroups and ListGroups report.
    pub(crate) fn state_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(c) => c.state.name(),
            GroupKind::Consumer(c) => c.state_name(),
        }
    }

    /// Stores committed offsets.
    pub(crate) fn commit(&mut self, offsets: impl IntoIterator<Item = ((String, i32), Committed)>) {
        self.offsets.extend(offsets);
    }

    /// Whether a transaction holds an uncommitted offset for this partition.
    pub(crate) fn has_pending(&self, topic: &str, partition: i32) -> bool {
        self.pending_txn
            .values()
            .any(|m| m.contains_key(&(topic.to_string(), partition)))
    }
}

impl Groups {
    /// Session and rebalance timeouts of every group.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        let timings = self.timings;
        let mut changed = false;
        for group in self.map.values_mut() {
            changed |= match &mut group.kind {
                GroupKind::Classic(c) => c.tick(now, &timings),
                GroupKind::Consumer(c) => c.tick(now, &timings),
            };
        }
        changed
    }
}
