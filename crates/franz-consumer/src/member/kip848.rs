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
mod tests {
    //! The KIP-848 member against a scripted coordinator, on virtual time.
    #![allow(clippy::disallowed_methods)] // virtual time starts at one real Instant
    #![allow(clippy::unwrap_used, clippy::panic)]

    use franz_client::franz_protocol::messages::consumer_group_heartbeat_response;

    use super::*;

    fn settings(instance: Option<&str>) -> MemberSettings {
        MemberSettings {
            group_id: "g".into(),
            instance_id: instance.map(str::to_string),
            topics: vec!["t".into()],
            topic_regex: None,
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(60),
            revoke_timeout: Duration::from_secs(20),
            retry_backoff: Duration::from_millis(100),
            rack: Some("r1".into()),
        }
    }

    fn id(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    fn tps(ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new("t", *p)).collect()
    }

    fn response(
        code: ErrorCode,
        epoch: i32,
        interval_ms: i32,
        assignment: Option<&[i32]>,
    ) -> Inbound {
        Inbound::ConsumerHeartbeat(ConsumerGroupHeartbeatResponse {
            error_code: code.code(),
            member_id: Some("m-1".into()),
            member_epoch: epoch,
            heartbeat_interval_ms: interval_ms,
            assignment: assignment.map(|ps| consumer_group_heartbeat_response::Assignment {
                topic_partitions: vec![consumer_group_heartbeat_response::TopicPartitions {
                    topic_id: id(1),
                    partitions: ps.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn expect_heartbeat(m: &mut Kip848Member, now: Instant) -> ConsumerGroupHeartbeatRequest {
        match m.poll_request(now) {
            Some(Outbound::ConsumerHeartbeat(h)) => h,
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    fn owned_in(req: &ConsumerGroupHeartbeatRequest) -> Vec<i32> {
        req.topic_partitions
            .iter()
            .flatten()
            .flat_map(|t| t.partitions.clone())
            .collect()
    }

    fn events(m: &mut Kip848Member) -> Vec<MemberEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    /// Joins and takes `ps` of topic `t` (id 1).
    fn joined(ps: &[i32], t0: Instant) -> Kip848Member {
        let mut m = Kip848Member::new(settings(None));
        expect_heartbeat(&mut m, t0);
        m.handle_response(response(ErrorCode::None, 1, 500, Some(ps)), t0);
        assert_eq!(
            events(&mut m),
            vec![MemberEvent::NeedTopicNames(vec![id(1)])]
        );
        m.handle_topic_names(&[(id(1), "t".to_string())].into(), t0);
        let mut sorted = ps.to_vec();
        sorted.sort_unstable();
        assert_eq!(events(&mut m), vec![MemberEvent::Assigned(tps(&sorted))]);
        let ack = expect_heartbeat(&mut m, t0);
        assert_eq!(
            owned_in(&ack),
            sorted,
            "the new set is acknowledged at once"
        );
        m.handle_response(response(ErrorCode::None, 1, 500, None), t0);
        m
    }

    #[test]
    fn a_new_subscription_goes_out_at_once_and_a_dropped_pattern_is_cleared() {
        let t0 = Instant::now();
        let mut m = joined(&[0], t0);
        m.handle_app(
            AppInput::Subscribe {
                topics: Vec::new(),
                regex: Some("orders-.*".into()),
            },
            t0,
        );
        let hb = expect_heartbeat(&mut m, t0);
        assert_eq!(hb.subscribed_topic_regex.as_deref(), Some("orders-.*"));
        assert_eq!(hb.subscribed_topic_names, Some(Vec::new()));
        m.handle_response(response(ErrorCode::None, 1, 500, None), t0);
        m.handle_app(
            AppInput::Subscribe {
                topics: vec!["t".into()],
                regex: None,
            },
            t0,
        );
        let hb = expect_heartbeat(&mut m, t0);
        assert_eq!(hb.subscribed_topic_regex.as_deref(), Some(""), "cleared");
        assert_eq!(hb.subscribed_topic_names, Some(vec!["t".to_string()]));
        m.handle_response(response(ErrorCode::None, 1, 500, None), t0);
        let later = t0 + Duration::from_secs(1);
        m.handle_timeout(later);
        let hb = expect_heartbeat(&mut m, later);
        assert_eq!(hb.subscribed_topic_regex, None, "said once");
    }

    #[test]
    fn a_member_with_its_own_id_keeps_it_across_fencing() {
        let t0 = Instant::now();
        let mut m = Kip848Member::with_member_id(settings(None), "own-id".into());
        assert_eq!(expect_heartbeat(&mut m, t0).member_id, "own-id");
        m.handle_response(response(ErrorCode::UnknownMemberId, 0, 500, None), t0);
        let later = t0 + Duration::from_secs(1);
        m.handle_timeout(later);
        let rejoin = expect_heartbeat(&mut m, later);
        assert_eq!(
            (rejoin.member_id.as_str(), rejoin.member_epoch),
            ("own-id", 0)
        );
    }

    #[test]
    fn join_resolve_assign_and_acknowledge() {
        let t0 = Instant::now();
        let mut m = Kip848Member::new(settings(None));
        let first = expect_heartbeat(&mut m, t0);
        assert_eq!((first.member_id.as_str(), first.member_epoch), ("", 0));
        assert_eq!(first.subscribed_topic_names, Some(vec!["t".to_string()]));
        assert_eq!(first.rack_id.as_deref(), Some("r1"));
        assert_eq!(m.poll_request(t0), None, "one heartbeat in flight");
        let mut m = joined(&[2, 0], t0);
        assert_eq!(m.owned(), &tps(&[0, 2])[..]);
        assert_eq!(m.commit_identity(), Some(("m-1".into(), 1)));
        assert_eq!(m.heartbeat_interval(), Duration::from_millis(500));
        assert_eq!(m.poll_request(t0), None);
        let t1 = t0 + Duration::from_millis(500);
        m.handle_timeout(t1);
        assert_eq!(owned_in(&expect_heartbeat(&mut m, t1)), vec![0, 2]);
        // The same target again: nothing to do, no hook.
        m.handle_response(response(ErrorCode::None, 2, 500, Some(&[0, 2])), t1);
        assert!(events(&mut m).is_empty());
        assert_eq!(m.epoch(), 2);
    }

    #[test]
    fn a_revocation_is_acknowledged_only_after_the_application_let_go() {
        let t0 = Instant::now();
        let mut m = joined(&[0, 1, 2], t0);
        let t1 = t0 + Duration::from_millis(500);
        m.handle_timeout(t1);
        expect_heartbeat(&mut m, t1);
        m.handle_response(response(ErrorCode::None, 2, 500, Some(&[0, 3])), t1);
        assert_eq!(events(&mut m), vec![MemberEvent::Revoke(tps(&[1, 2]))]);
        assert_eq!(m.phase(), Phase::Revoking);
        // Heartbeats go on, still reporting the revoking partitions owned.
        for i in 2..6 {
            let t = t0 + Duration::from_millis(500 * i);
            m.handle_timeout(t);
            assert_eq!(owned_in(&expect_heartbeat(&mut m, t)), vec![0, 1, 2]);
            m.handle_response(response(ErrorCode::None, 2, 500, Some(&[0, 3])), t);
            assert!(events(&mut m).is_empty(), "one revoke at a time");
        }
        let t = t0 + Duration::from_secs(3);
        m.handle_app(AppInput::RevokeDone(tps(&[1, 2])), t);
        assert_eq!(events(&mut m), vec![MemberEvent::Assigned(tps(&[3]))]);
        let ack = expect_heartbeat(&mut m, t);
        assert_eq!(owned_in(&ack), vec![0, 3], "acknowledged at once");
        assert_eq!(m.owned(), &tps(&[0, 3])[..]);
    }

    #[test]
    fn the_revoke_deadline_releases_the_partitions_anyway() {
        let t0 = Instant::now();
        let mut m = joined(&[0, 1], t0);
        m.handle_timeout(t0 + Duration::from_millis(500));
        expect_heartbeat(&mut m, t0);
        m.handle_response(response(ErrorCode::None, 2, 500, Some(&[0])), t0);
        assert_eq!(events(&mut m), vec![MemberEvent::Revoke(tps(&[1]))]);
        let late = t0 + Duration::from_secs(20);
        m.handle_timeout(late);
        assert_eq!(owned_in(&expect_heartbeat(&mut m, late)), vec![0]);
        m.handle_app(AppInput::RevokeDone(tps(&[1])), late);
        assert!(events(&mut m).is_empty(), "a late answer is ignored");
    }

    #[test]
    fn fencing_loses_the_partitions_and_rejoins_at_epoch_zero() {
        let t0 = Instant::now();
        for (code, member_id) in [
            (ErrorCode::FencedMemberEpoch, "m-1"),
            (ErrorCode::UnknownMemberId, ""),
        ] {
            let mut m = joined(&[0], t0);
            m.handle_timeout(t0 + Duration::from_millis(500));
            expect_heartbeat(&mut m, t0);
            m.handle_response(response(code, 0, 0, None), t0);
            assert_eq!(events(&mut m), vec![MemberEvent::Lost(tps(&[0]))]);
            let rejoin = expect_heartbeat(&mut m, t0);
            assert_eq!(
                (rejoin.member_epoch, rejoin.member_id.as_str()),
                (0, member_id)
            );
            assert!(owned_in(&rejoin).is_empty());
        }
        // A commit refused as fenced is the same.
        let mut m = joined(&[0], t0);
        m.handle_app(
            AppInput::CommitRefused {
                code: ErrorCode::FencedMemberEpoch,
                generation: 0,
            },
            t0,
        );
        assert!(events(&mut m).is_empty(), "about another epoch: ignored");
        m.handle_app(
            AppInput::CommitRefused {
                code: ErrorCode::FencedMemberEpoch,
                generation: m.epoch(),
            },
            t0,
        );
        assert_eq!(events(&mut m), vec![MemberEvent::Lost(tps(&[0]))]);
    }

    #[test]
    fn errors_retry_find_the_coordinator_or_stop() {
        let t0 = Instant::now();
        let mut m = joined(&[0], t0);
        m.handle_timeout(t0 + Duration::from_millis(500));
        expect_heartbeat(&mut m, t0);
        m.handle_response(response(ErrorCode::NotCoordinator, 0, 0, None), t0);
        assert_eq!(events(&mut m), vec![MemberEvent::CoordinatorLost]);
        assert_eq!(m.poll_request(t0), None, "after the backoff");
        let t1 = t0 + Duration::from_millis(100);
        m.handle_timeout(t1);
        expect_heartbeat(&mut m, t1);
        m.handle_response(Inbound::Failed, t1);
        assert_eq!(events(&mut m), vec![MemberEvent::CoordinatorLost]);
        for code in [
            ErrorCode::GroupAuthorizationFailed,
            ErrorCode::FencedInstanceId,
            ErrorCode::UnreleasedInstanceId,
        ] {
            let mut m = Kip848Member::new(settings(None));
            expect_heartbeat(&mut m, t0);
            m.handle_response(response(code, 0, 0, None), t0);
            assert_eq!(
                events(&mut m),
                vec![MemberEvent::Fatal {
                    api: "ConsumerGroupHeartbeat",
                    code
                }]
            );
            assert!(m.is_finished());
        }
    }

    #[test]
    fn broker_sent_intervals_are_clamped() {
        let t0 = Instant::now();
        for (sent, used) in [
            (1, Duration::from_millis(50)),
            (i32::MAX, Duration::from_secs(30)),
            (2000, Duration::from_secs(2)),
        ] {
            let mut m = Kip848Member::new(settings(None));
            expect_heartbeat(&mut m, t0);
            m.handle_response(response(ErrorCode::None, 1, sent, None), t0);
            assert_eq!(m.heartbeat_interval(), used, "{sent} ms");
            assert_eq!(m.poll_timeout(), Some(t0 + used));
        }
    }

    #[test]
    fn leaving_and_poll_timeouts() {
        let t0 = Instant::now();
        let mut m = joined(&[0], t0);
        m.handle_app(AppInput::Leave, t0);
        let leave = expect_heartbeat(&mut m, t0);
        assert_eq!((leave.member_epoch, leave.member_id.as_str()), (-1, "m-1"));
        assert!(m.is_finished());

        let mut s = Kip848Member::new(settings(Some("billing-1")));
        assert_eq!(
            expect_heartbeat(&mut s, t0).instance_id.as_deref(),
            Some("billing-1")
        );
        s.handle_response(response(ErrorCode::None, 1, 500, None), t0);
        s.handle_app(AppInput::Leave, t0);
        assert_eq!(expect_heartbeat(&mut s, t0).member_epoch, -2, "static");

        let mut p = joined(&[0], t0);
        p.handle_app(AppInput::Polled, t0);
        // Heartbeats are answered, but the application never polls.
        let mut t = t0;
        while t < t0 + Duration::from_millis(59_500) {
            t += Duration::from_millis(500);
            p.handle_timeout(t);
            if p.poll_request(t).is_some() {
                p.handle_response(response(ErrorCode::None, 1, 500, None), t);
            }
        }
        let expiry = t0 + Duration::from_secs(60);
        p.handle_timeout(expiry);
        assert_eq!(
            events(&mut p),
            vec![
                MemberEvent::Lost(tps(&[0])),
                MemberEvent::PollIntervalExceeded
            ]
        );
        assert_eq!(expect_heartbeat(&mut p, expiry).member_epoch, -1);
        assert_eq!(p.poll_request(expiry), None, "no rejoin before a poll");
        p.handle_app(AppInput::Polled, expiry);
        let rejoin = expect_heartbeat(&mut p, expiry);
        assert_eq!((rejoin.member_epoch, rejoin.member_id.as_str()), (0, ""));
    }
    #[test]
    fn a_silent_coordinator_is_looked_up_again_and_the_partitions_kept() {
        let t0 = Instant::now();
        let mut m = joined(&[0], t0);
        let mut t = t0;
        while t < t0 + Duration::from_secs(31) {
            t += Duration::from_millis(500);
            m.handle_timeout(t);
            if m.poll_request(t).is_some() {
                m.handle_response(Inbound::Failed, t);
            }
        }
        let ev = events(&mut m);
        assert!(
            ev.iter().all(|e| *e == MemberEvent::CoordinatorLost),
            "{ev:?}"
        );
        assert_eq!(m.owned(), &tps(&[0])[..]);
        assert_eq!(m.commit_identity(), Some(("m-1".into(), 1)));
    }

    #[test]
    fn the_answer_to_a_heartbeat_sent_before_a_leave_is_dropped() {
        let t0 = Instant::now();
        let mut m = joined(&[0], t0);
        m.handle_app(AppInput::Polled, t0);
        // A heartbeat is in flight when the poll timer fires.
        let t1 = t0 + Duration::from_secs(59);
        let mut t = t0;
        while t < t1 {
            t += Duration::from_millis(500);
            m.handle_timeout(t);
            if m.poll_request(t).is_some() {
                m.handle_response(response(ErrorCode::None, 1, 500, None), t);
            }
        }
        m.handle_timeout(t1 + Duration::from_millis(500));
        expect_heartbeat(&mut m, t1);
        let expiry = t0 + Duration::from_secs(60);
        m.handle_timeout(expiry);
        assert_eq!(
            expect_heartbeat(&mut m, expiry).member_epoch,
            -1,
            "the leave"
        );
        m.handle_app(AppInput::Polled, expiry);
        events(&mut m);
        // The old answer (the membership that was left) arrives late.
        m.handle_response(response(ErrorCode::None, 1, 500, Some(&[0])), expiry);
        assert!(
            events(&mut m).is_empty(),
            "nothing assigned from a stale answer"
        );
        let rejoin = expect_heartbeat(&mut m, expiry);
        assert_eq!((rejoin.member_epoch, rejoin.member_id.as_str()), (0, ""));
    }
}
