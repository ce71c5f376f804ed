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
