//! Group membership as sans-io state machines, in the style of quinn-proto:
//! inputs go in through `handle_*` with the current time, outputs come out
//! of `poll_request` (what to send the coordinator), `poll_event` (what the
//! application or the driver must do) and `poll_timeout` (when to call
//! `handle_timeout` next). The machines never read the clock and never do
//! I/O, so they are tested on virtual time against a scripted coordinator.
//!
//! - [`classic::ClassicMember`]: JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup; eager or cooperative (KIP-429) rebalancing; the leader runs
//!   the chosen [`crate::assignor::Assignor`].
//! - [`kip848::Kip848Member`]: KIP-848's ConsumerGroupHeartbeat; the
//!   coordinator assigns.
//!
//! Both wait for the application before letting partitions go: a
//! [`MemberEvent::Revoke`] is followed by nothing that releases those
//! partitions (JoinGroup, or KIP-848's acknowledgement) until
//! `AppInput::RevokeDone` arrives or the revoke deadline passes.

pub mod classic;
pub mod kip848;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use franz_client::TopicPartition;
use franz_client::franz_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use franz_protocol::ErrorCode;

use crate::assignor::TopicPartitions;

/// The timers a member keeps, one deadline each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The next heartbeat is due.
    Heartbeat,
    /// The application has not polled for `max_poll_interval` (KIP-62).
    PollInterval,
    /// The application has had `revoke_timeout` to let revoked partitions go.
    Revoke,
    /// A retry after an error waits until then.
    Backoff,
    /// No heartbeat answer for the session timeout: the coordinator has
    /// most likely dropped the member and handed its partitions on.
    Session,
}

impl Timer {
    const ALL: [Self; 5] = [
        Self::Heartbeat,
        Self::PollInterval,
        Self::Revoke,
        Self::Backoff,
        Self::Session,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`], as quinn-proto's `TimerTable`.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 5],
}

impl TimerTable {
    /// Arms `timer` for `at`, replacing any earlier setting.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the timers due at `now`, earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = Timer::ALL
            .iter()
            .filter_map(|t| self.get(*t).filter(|d| *d <= now).map(|d| (d, *t)))
            .collect();
        due.sort_by_key(|(d, _)| *d);
        for (_, t) in &due {
            self.stop(*t);
        }
        due.into_iter().map(|(_, t)| t).collect()
    }
}

/// The member's settings, as the machines need them.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// KIP-848 only: a subscription pattern the coordinator resolves (RE2J
    /// syntax, matched against whole topic names), besides `topics`.
    pub topic_regex: Option<String>,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// The rebalance timeout sent in JoinGroup and ConsumerGroupHeartbeat.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (classic; KIP-848's comes from the broker).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`.
    pub max_poll_interval: Duration,
    /// How long the application may take to let revoked partitions go.
    pub revoke_timeout: Duration,
    /// Pause after a retriable error.
    pub retry_backoff: Duration,
    /// `client.rack`.
    pub rack: Option<String>,
}

/// Something the application tells a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppInput {
    /// The application called `poll` (resets the poll-interval timer; a
    /// member that left for a poll timeout rejoins).
    Polled,
    /// The application has let go of the partitions of the
    /// [`MemberEvent::Revoke`] it names (its hook ran, its offsets are
    /// committed). An answer to an older revoke is ignored.
    RevokeDone(Vec<TopicPartition>),
    /// A commit sent under `generation` (KIP-848: member epoch) was refused
    /// with `code` (a rebalance, or fencing). An answer about an older
    /// generation than the member's is ignored.
    CommitRefused {
        /// The coordinator's code.
        code: ErrorCode,
        /// The generation or epoch the commit carried.
        generation: i32,
    },
    /// Leave the group (the consumer is closing).
    Leave,
    /// The subscription changed: a classic member rejoins with it (an eager
    /// one revoking everything first); a KIP-848 member sends it with its
    /// next heartbeat, at once.
    Subscribe {
        /// The topics.
        topics: Vec<String>,
        /// KIP-848's broker-resolved pattern, if any.
        regex: Option<String>,
    },
    /// The partitions of a subscribed topic changed (a topic grew, or was
    /// re-created): a classic member rejoins so the leader assigns them.
    /// KIP-848's coordinator notices on its own.
    MetadataChanged,
}

/// What a member asks of its driver or its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// New partitions: start fetching them from the committed offsets, then
    /// run `on_assigned`.
    Assigned(Vec<TopicPartition>),
    /// Let these partitions go: run `on_revoked`, commit what was processed,
    /// stop fetching them, then send [`AppInput::RevokeDone`].
    Revoke(Vec<TopicPartition>),
    /// These partitions were taken away without a revoke (fenced, evicted,
    /// poll timeout): run `on_lost`, commit nothing for them.
    Lost(Vec<TopicPartition>),
    /// The member left the group because the application did not poll for
    /// `max_poll_interval`; the next `poll` reports it, the one after rejoins.
    PollIntervalExceeded,
    /// An error retrying will not fix; the member has stopped.
    Fatal {
        /// The request that got it.
        api: &'static str,
        /// The coordinator's code.
        code: ErrorCode,
    },
    /// Driver: the coordinator is unknown or moved; look it up again.
    CoordinatorLost,
    /// Driver (classic leader): send the partitions of these topics with
    /// [`classic::ClassicMember::handle_topic_partitions`].
    NeedPartitions(Vec<String>),
    /// Driver (KIP-848): resolve these topic ids with
    /// [`kip848::Kip848Member::handle_topic_names`].
    NeedTopicNames(Vec<franz_protocol::Uuid>),
}

/// A request for the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// JoinGroup (held by the coordinator up to the rebalance timeout).
    Join(JoinGroupRequest),
    /// SyncGroup.
    Sync(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup for one member (the driver picks the version's layout).
    Leave {
        /// The member leaving.
        member_id: String,
        /// Its `group.instance.id`.
        instance_id: Option<String>,
    },
    /// KIP-848's ConsumerGroupHeartbeat (also its leave, with epoch -1/-2).
    ConsumerHeartbeat(ConsumerGroupHeartbeatRequest),
}

impl Outbound {
    /// Whether the coordinator may hold this request up to the rebalance
    /// timeout (the driver's request timeout must cover it).
    pub fn is_rebalance_call(&self) -> bool {
        matches!(self, Self::Join(_) | Self::Sync(_))
    }
}

/// The coordinator's answer to an [`Outbound`], or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// JoinGroup's response.
    Join(JoinGroupResponse),
    /// SyncGroup's response.
    Sync(SyncGroupResponse),
    /// Heartbeat's response.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup was answered (its code does not change what happens).
    Left,
    /// ConsumerGroupHeartbeat's response.
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    /// No answer: the connection failed or timed out. (Failures retrying
    /// cannot fix, such as TLS or authentication, stop the driver instead.)
    Failed,
}

/// The phases shared by both machines, for observers and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not in the group; joining next (after a backoff, if one is armed).
    Joining,
    /// A rebalance round is under way (classic JoinGroup/SyncGroup, or the
    /// leader computing the assignment).
    Rebalancing,
    /// Waiting for the application to let revoked partitions go.
    Revoking,
    /// In the group with a settled assignment.
    Stable,
    /// Left for a poll timeout; rejoins on the next poll.
    PollTimedOut,
    /// Leaving or left; the member sends nothing more.
    Left,
    /// Stopped by an error retrying cannot fix.
    Failed,
}

/// What both members keep alike: the settings, the phase, the owned
/// partitions and a pending revoke, the timers and the event queue, with
/// the steps that treat them the same under either protocol.
#[derive(Debug)]
struct Core {
    settings: MemberSettings,
    phase: Phase,
    /// Partitions the member owns, sorted (those being revoked included).
    owned: Vec<TopicPartition>,
    /// The partitions of the pending [`MemberEvent::Revoke`].
    revoking: Vec<TopicPartition>,
    events: VecDeque<MemberEvent>,
    timers: TimerTable,
}

impl Core {
    fn new(settings: MemberSettings) -> Self {
        Self {
            settings,
            phase: Phase::Joining,
            owned: Vec::new(),
            revoking: Vec::new(),
            events: VecDeque::new(),
            timers: TimerTable::default(),
        }
    }

    /// Whether the member is in the group with an assignment.
    fn in_group(&self) -> bool {
        matches!(self.phase, Phase::Stable | Phase::Revoking)
    }

    /// Whether the member has stopped for good.
    fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Left | Phase::Failed)
    }

    /// The application polled: the poll-interval timer starts again. True
    /// when the member had left for a poll timeout and may rejoin now.
    fn polled(&mut self, now: Instant) -> bool {
        if self.is_over() {
            return false;
        }
        self.timers
            .set(Timer::PollInterval, now + self.settings.max_poll_interval);
        self.phase == Phase::PollTimedOut
    }

    /// Asks the application to let `partitions` go, by the revoke deadline.
    fn begin_revoke(&mut self, partitions: Vec<TopicPartition>, now: Instant) {
        self.revoking.clone_from(&partitions);
        self.phase = Phase::Revoking;
        self.timers
            .set(Timer::Revoke, now + self.settings.revoke_timeout);
        self.events.push_back(MemberEvent::Revoke(partitions));
    }

    /// Whether `partitions` answer the pending revoke (an answer to an
    /// older one does not).
    fn is_revoke_answer(&self, partitions: &[TopicPartition]) -> bool {
        self.phase == Phase::Revoking && partitions == self.revoking
    }

    /// The revoke deadline fired: true (and logged) when a revoke is still
    /// pending, which is then released anyway.
    fn revoke_deadline_passed(&self) -> bool {
        if self.phase != Phase::Revoking {
            return false;
        }
        tracing::warn!(
            group = %self.settings.group_id,
            partitions = ?self.revoking,
            "the revoke deadline passed; releasing the partitions anyway (later results for them are not committed)"
        );
        true
    }

    /// Ends the pending revoke: its partitions leave `owned` and are
    /// returned.
    fn end_revoke(&mut self) -> Vec<TopicPartition> {
        self.timers.stop(Timer::Revoke);
        let revoked = std::mem::take(&mut self.revoking);
        self.owned.retain(|tp| !revoked.contains(tp));
        revoked
    }

    /// Everything owned is gone without a revoke.
    fn lose_partitions(&mut self) {
        self.revoking.clear();
        self.timers.stop(Timer::Revoke);
        if !self.owned.is_empty() {
            self.events
                .push_back(MemberEvent::Lost(std::mem::take(&mut self.owned)));
        }
    }

    /// The session timer fired: no heartbeat was answered for a whole
    /// session timeout. As Java does, the coordinator is looked up again and
    /// the partitions are kept: with no coordinator there is no rebalance,
    /// so nobody else can have been given them; a coordinator that dropped
    /// the member says so on the next heartbeat (UNKNOWN_MEMBER_ID,
    /// ILLEGAL_GENERATION), and they are lost then, while commits are
    /// refused meanwhile. (Losing them here, as librdkafka does, made a
    /// reader that resets to the latest offset skip what arrived while its
    /// broker restarted.)
    fn session_expired(&mut self) {
        if !self.in_group() {
            return;
        }
        tracing::warn!(group = %self.settings.group_id, after = ?self.settings.session_timeout, "no heartbeat answered for the session timeout; looking up the coordinator again");
        self.events.push_back(MemberEvent::CoordinatorLost);
    }

    /// The poll-interval timer fired (KIP-62). True when that applied: the
    /// partitions are lost, the application is told, and the member waits
    /// for a poll to rejoin.
    fn poll_timed_out(&mut self) -> bool {
        if self.is_over() || self.phase == Phase::PollTimedOut {
            return false;
        }
        tracing::warn!(group = %self.settings.group_id, after = ?self.settings.max_poll_interval, "the application did not poll within max_poll_interval; leaving the group");
        self.lose_partitions();
        self.phase = Phase::PollTimedOut;
        self.events.push_back(MemberEvent::PollIntervalExceeded);
        true
    }

    /// The consumer is closing: nothing is owned or timed any more.
    fn leave(&mut self) {
        self.phase = Phase::Left;
        self.timers = TimerTable::default();
        self.owned.clear();
        self.revoking.clear();
    }

    /// An error retrying will not fix: the member stops.
    fn fail(&mut self, api: &'static str, code: ErrorCode) {
        tracing::error!(group = %self.settings.group_id, api, %code, "group membership failed");
        // Whoever replaced the member owns its partitions now.
        self.lose_partitions();
        self.phase = Phase::Failed;
        self.timers = TimerTable::default();
        self.events.push_back(MemberEvent::Fatal { api, code });
    }
}

/// Heartbeat intervals a broker may ask for are kept within this range, so
/// a hostile or broken coordinator cannot make a member spin or go silent.
pub const HEARTBEAT_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(30));

/// `d` kept within [`HEARTBEAT_INTERVAL_RANGE`].
pub fn clamp_heartbeat_interval(d: Duration) -> Duration {
    d.clamp(HEARTBEAT_INTERVAL_RANGE.0, HEARTBEAT_INTERVAL_RANGE.1)
}

/// Milliseconds as the protocol's int32, saturating.
pub(crate) fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// `a - b` as sorted partitions.
pub(crate) fn minus(a: &[TopicPartition], b: &[TopicPartition]) -> Vec<TopicPartition> {
    a.iter().filter(|tp| !b.contains(tp)).cloned().collect()
}

/// Partitions by topic, flattened and sorted.
pub(crate) fn flatten(by_topic: &TopicPartitions) -> Vec<TopicPartition> {
    let mut out: Vec<TopicPartition> = by_topic
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| TopicPartition::new(t.as_str(), *p)))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // virtual time starts at one real Instant
mod tests {
    use super::*;

    #[test]
    fn the_timer_table_expires_due_timers_earliest_first() {
        let t0 = Instant::now();
        let mut timers = TimerTable::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::Heartbeat, t0 + Duration::from_secs(3));
        timers.set(Timer::Backoff, t0 + Duration::from_secs(1));
        timers.set(Timer::PollInterval, t0 + Duration::from_secs(9));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert!(timers.expire(t0).is_empty());
        assert_eq!(
            timers.expire(t0 + Duration::from_secs(5)),
            vec![Timer::Backoff, Timer::Heartbeat]
        );
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(9)));
        timers.stop(Timer::PollInterval);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn broker_sent_heartbeat_intervals_are_clamped() {
        assert_eq!(
            clamp_heartbeat_interval(Duration::ZERO),
            Duration::from_millis(50)
        );
        assert_eq!(
            clamp_heartbeat_interval(Duration::from_secs(86_400)),
            Duration::from_secs(30)
        );
        assert_eq!(
            clamp_heartbeat_interval(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }
}
