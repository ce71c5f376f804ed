//! The KIP-848 consumer group protocol, sans-io: one `ConsumerGroupHeartbeat`
//! request per interval carries the member's subscription and the
//! partitions it owns; the coordinator answers with the member's epoch and,
//! when it changes, the target assignment. No JoinGroup, no SyncGroup, no
//! client-side assignor.
//!
//! [`Kip848Member`] holds the member's state; `request` says what to send,
//! `on_response` what the answer means. The tokio layer in
//! [`crate::group`] sends, sleeps and applies assignments.

use std::collections::BTreeMap;

use franz_client::franz_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, consumer_group_heartbeat_request,
};
use franz_protocol::{ErrorCode, Uuid};

/// Partitions by topic id, as the protocol names them.
pub type IdAssignment = BTreeMap<Uuid, Vec<i32>>;

/// What a heartbeat response means for the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// Nothing changed.
    Steady,
    /// A new target assignment: own exactly these partitions now.
    Assign(IdAssignment),
    /// The coordinator fenced or forgot the member: it rejoins with epoch 0
    /// and owns nothing until the next assignment.
    Fenced(ErrorCode),
    /// A transient error (coordinator moving or loading): send again.
    Retry(ErrorCode),
    /// An error retrying will not fix (bad configuration, authorization).
    Fatal(ErrorCode),
}

/// One member's KIP-848 state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kip848Member {
    /// Assigned by the coordinator on the first heartbeat (v0).
    pub member_id: String,
    /// 0 to join, then the coordinator's epoch; -1 to leave.
    pub epoch: i32,
    /// Partitions the member owns (acknowledged in every heartbeat).
    pub owned: IdAssignment,
    /// The interval the coordinator asks for, in ms.
    pub heartbeat_interval_ms: i32,
    /// `group.instance.id` of a static member: a restarted instance takes
    /// back its predecessor's assignment instead of causing a rebalance.
    pub instance_id: Option<String>,
}

impl Default for Kip848Member {
    fn default() -> Self {
        Self {
            member_id: String::new(),
            epoch: 0,
            owned: IdAssignment::new(),
            heartbeat_interval_ms: 3000,
            instance_id: None,
        }
    }
}

impl Kip848Member {
    /// The next heartbeat. It always carries the full state (subscription
    /// and owned partitions), which the protocol allows and which makes a
    /// lost response harmless.
    pub fn request(
        &self,
        group_id: &str,
        topics: &[String],
        rebalance_timeout_ms: i32,
        rack: Option<&str>,
    ) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            group_id: group_id.to_string(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance_id.clone(),
            rack_id: rack.map(str::to_string),
            rebalance_timeout_ms,
            subscribed_topic_names: Some(topics.to_vec()),
            topic_partitions: Some(
                self.owned
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

    /// The leave request: epoch -1, or -2 for a static member, whose
    /// partitions then stay reserved for its next instance until the session
    /// times out.
    pub fn leave_request(&self, group_id: &str) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            group_id: group_id.to_string(),
            member_id: self.member_id.clone(),
            member_epoch: if self.instance_id.is_some() { -2 } else { -1 },
            instance_id: self.instance_id.clone(),
            ..Default::default()
        }
    }

    /// Applies a response. A new assignment becomes `owned` at once: the
    /// next heartbeat acknowledges it, which is what lets the coordinator
    /// hand revoked partitions to other members.
    pub fn on_response(&mut self, resp: &ConsumerGroupHeartbeatResponse) -> HeartbeatOutcome {
        let code = ErrorCode::from_code(resp.error_code);
        match code {
            ErrorCode::None => {}
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                self.epoch = 0;
                self.owned.clear();
                if code == ErrorCode::UnknownMemberId {
                    self.member_id.clear();
                }
                return HeartbeatOutcome::Fenced(code);
            }
            c if c.is_retriable()
                || matches!(
                    c,
                    ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
                ) =>
            {
                return HeartbeatOutcome::Retry(c);
            }
            c => return HeartbeatOutcome::Fatal(c),
        }
        if let Some(id) = &resp.member_id
            && !id.is_empty()
        {
            self.member_id.clone_from(id);
        }
        self.epoch = resp.member_epoch;
        if resp.heartbeat_interval_ms > 0 {
            self.heartbeat_interval_ms = resp.heartbeat_interval_ms;
        }
        match &resp.assignment {
            None => HeartbeatOutcome::Steady,
            Some(a) => {
                let target: IdAssignment = a
                    .topic_partitions
                    .iter()
                    .map(|tp| {
                        let mut ps = tp.partitions.clone();
                        ps.sort_unstable();
                        (tp.topic_id, ps)
                    })
                    .filter(|(_, ps)| !ps.is_empty())
                    .collect();
                if target == self.owned {
                    return HeartbeatOutcome::Steady;
                }
                self.owned.clone_from(&target);
                HeartbeatOutcome::Assign(target)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use franz_client::franz_protocol::messages::consumer_group_heartbeat_response;

    use super::*;

    fn response(
        code: ErrorCode,
        epoch: i32,
        assignment: Option<Vec<(Uuid, Vec<i32>)>>,
    ) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse {
            error_code: code.code(),
            member_id: Some("m-1".into()),
            member_epoch: epoch,
            heartbeat_interval_ms: 500,
            assignment: assignment.map(|tps| consumer_group_heartbeat_response::Assignment {
                topic_partitions: tps
                    .into_iter()
                    .map(
                        |(id, ps)| consumer_group_heartbeat_response::TopicPartitions {
                            topic_id: id,
                            partitions: ps,
                            ..Default::default()
                        },
                    )
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn id(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    #[test]
    fn join_assign_acknowledge_and_leave() {
        let mut m = Kip848Member::default();
        let topics = vec!["t".to_string()];
        let first = m.request("g", &topics, 30_000, Some("r1"));
        assert_eq!((first.member_id.as_str(), first.member_epoch), ("", 0));
        assert_eq!(first.subscribed_topic_names, Some(topics.clone()));
        assert_eq!(first.rack_id.as_deref(), Some("r1"));

        let out = m.on_response(&response(
            ErrorCode::None,
            3,
            Some(vec![(id(1), vec![2, 0])]),
        ));
        assert_eq!(out, HeartbeatOutcome::Assign([(id(1), vec![0, 2])].into()));
        assert_eq!(
            (m.member_id.as_str(), m.epoch, m.heartbeat_interval_ms),
            ("m-1", 3, 500)
        );
        let ack = m.request("g", &topics, 30_000, None);
        let owned = ack.topic_partitions.unwrap();
        assert_eq!(
            (owned[0].topic_id, owned[0].partitions.clone()),
            (id(1), vec![0, 2])
        );
        // The same target again, or no assignment field: nothing to do.
        assert_eq!(
            m.on_response(&response(
                ErrorCode::None,
                3,
                Some(vec![(id(1), vec![0, 2])])
            )),
            HeartbeatOutcome::Steady
        );
        assert_eq!(
            m.on_response(&response(ErrorCode::None, 4, None)),
            HeartbeatOutcome::Steady
        );
        assert_eq!(m.epoch, 4);
        // A revocation is an assignment too.
        assert_eq!(
            m.on_response(&response(ErrorCode::None, 5, Some(vec![(id(1), vec![0])]))),
            HeartbeatOutcome::Assign([(id(1), vec![0])].into())
        );
        assert_eq!(m.leave_request("g").member_epoch, -1);
    }

    #[test]
    fn a_static_member_names_its_instance_and_leaves_temporarily() {
        let m = Kip848Member {
            instance_id: Some("billing-1".into()),
            ..Kip848Member::default()
        };
        let join = m.request("g", &["t".to_string()], 30_000, None);
        assert_eq!(join.instance_id.as_deref(), Some("billing-1"));
        let leave = m.leave_request("g");
        assert_eq!(
            (leave.member_epoch, leave.instance_id.as_deref()),
            (-2, Some("billing-1"))
        );
        let mut m = m;
        // Another instance took the id over, or holds it still: fatal.
        for code in [ErrorCode::FencedInstanceId, ErrorCode::UnreleasedInstanceId] {
            assert_eq!(
                m.on_response(&response(code, 0, None)),
                HeartbeatOutcome::Fatal(code)
            );
        }
    }

    #[test]
    fn fencing_resets_to_a_fresh_join() {
        let mut m = Kip848Member::default();
        m.on_response(&response(ErrorCode::None, 7, Some(vec![(id(1), vec![0])])));
        assert_eq!(
            m.on_response(&response(ErrorCode::FencedMemberEpoch, 0, None)),
            HeartbeatOutcome::Fenced(ErrorCode::FencedMemberEpoch)
        );
        assert_eq!(
            (m.epoch, m.owned.is_empty(), m.member_id.as_str()),
            (0, true, "m-1")
        );
        assert_eq!(
            m.on_response(&response(ErrorCode::UnknownMemberId, 0, None)),
            HeartbeatOutcome::Fenced(ErrorCode::UnknownMemberId)
        );
        assert_eq!(m.member_id, "");
        assert_eq!(
            m.on_response(&response(ErrorCode::CoordinatorLoadInProgress, 0, None)),
            HeartbeatOutcome::Retry(ErrorCode::CoordinatorLoadInProgress)
        );
        assert_eq!(
            m.on_response(&response(ErrorCode::GroupAuthorizationFailed, 0, None)),
            HeartbeatOutcome::Fatal(ErrorCode::GroupAuthorizationFailed)
        );
    }
}
