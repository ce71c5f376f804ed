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

fn response(code: ErrorCode, epoch: i32, interval_ms: i32, assignment: Option<&[i32]>) -> Inbound {
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
