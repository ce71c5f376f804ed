//! FindCoordinator and the group APIs: classic (Join/Sync/Heartbeat/Leave), offsets, describe/list/delete, and KIP-848 heartbeats.

use super::*;

pub(super) fn find_coordinator(
    st: &State,
    v: i16,
    req: m::FindCoordinatorRequest,
) -> fcr::FindCoordinatorResponse {
    let lookup = |key: &str| -> (ErrorCode, i32, String, i32) {
        if req.key_type > 1 {
            return (ErrorCode::InvalidRequest, -1, String::new(), -1);
        }
        match st.coordinator_for(key) {
            Some(b) => (ErrorCode::None, b.id, b.host.clone(), i32::from(b.port)),
            None => (ErrorCode::CoordinatorNotAvailable, -1, String::new(), -1),
        }
    };
    if v < 4 {
        let (code, node, host, port) = lookup(&req.key);
        fcr::FindCoordinatorResponse {
            error_code: code.code(),
            node_id: node,
            host,
            port,
            ..Default::default()
        }
    } else {
        fcr::FindCoordinatorResponse {
            coordinators: req
                .coordinator_keys
                .iter()
                .map(|k| {
                    let (code, node, host, port) = lookup(k);
                    fcr::Coordinator {
                        key: k.clone(),
                        node_id: node,
                        host,
                        port,
                        error_code: code.code(),
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The group, created as a classic group if new; a KIP-848 group without
/// members turns classic (its offsets stay).
pub(super) fn classic_group<'a>(
    st: &'a mut State,
    group_id: &str,
    now: Instant,
) -> Result<&'a mut crate::group::ClassicGroup, ErrorCode> {
    let group = st
        .groups
        .map
        .entry(group_id.to_string())
        .or_insert_with(|| Group::classic(now));
    if let GroupKind::Consumer(c) = &group.kind {
        if !c.members.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        group.kind = Group::classic(now).kind;
    }
    match &mut group.kind {
        GroupKind::Classic(c) => Ok(c),
        GroupKind::Consumer(_) => Err(ErrorCode::InconsistentGroupProtocol),
    }
}

pub(super) fn group_check(st: &State, caller: &Caller, group_id: &str) -> Result<(), ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    if !st.coordinates(caller.broker, group_id) {
        return Err(ErrorCode::NotCoordinator);
    }
    Ok(())
}

pub(super) fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v.max(0)).unwrap_or(0))
}

pub(super) async fn join_group(
    shared: &Shared,
    caller: &Caller,
    req: m::JoinGroupRequest,
) -> jgr::JoinGroupResponse {
    let v = caller.version;
    let group_id = req.group_id.clone();
    let rebalance_timeout = if req.rebalance_timeout_ms < 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    let joined = {
        let mut st = shared.lock();
        let now = Instant::now();
        let generated = st.new_member_id(&caller.client_id);
        let timings = st.groups.timings;
        match group_check(&st, caller, &group_id)
            .and_then(|()| classic_group(&mut st, &group_id, now))
        {
            Err(code) => Joined::Done(JoinResult::error(code, &req.member_id)),
            Ok(group) => group.join(
                generated,
                JoinRequest {
                    member_id: req.member_id.clone(),
                    instance_id: req.group_instance_id.clone(),
                    client_id: caller.client_id.clone(),
                    client_host: caller.client_host.clone(),
                    session_timeout: ms(req.session_timeout_ms),
                    rebalance_timeout: ms(rebalance_timeout),
                    protocol_type: req.protocol_type.clone(),
                    protocols: req
                        .protocols
                        .iter()
                        .map(|p| (p.name.clone(), p.metadata.clone()))
                        .collect(),
                    require_known_member_id: v >= 4,
                },
                now,
                &timings,
            ),
        }
    };
    shared.changed();
    let result = match joined {
        Joined::Done(r) => r,
        Joined::Parked(member_id) => {
            let limit = Instant::now() + ms(rebalance_timeout) + Duration::from_secs(5);
            shared
                .wait_until(limit, |st| {
                    match st.groups.map.get_mut(&group_id).map(|g| &mut g.kind) {
                        Some(GroupKind::Classic(c)) => c.poll_join(&member_id),
                        _ => Some(JoinResult::error(ErrorCode::UnknownMemberId, &member_id)),
                    }
                })
                .await
                .unwrap_or_else(|| JoinResult::error(ErrorCode::RebalanceInProgress, &member_id))
        }
    };
    jgr::JoinGroupResponse {
        error_code: result.error.code(),
        generation_id: result.generation,
        protocol_type: if v >= 7 { result.protocol_type } else { None },
        protocol_name: if v >= 7 {
            result.protocol_name
        } else {
            Some(result.protocol_name.unwrap_or_default())
        },
        leader: result.leader,
        member_id: result.member_id,
        members: result
            .members
            .into_iter()
            .map(
                |(member_id, instance, metadata)| jgr::JoinGroupResponseMember {
                    member_id,
                    group_instance_id: if v >= 5 { instance } else { None },
                    metadata,
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    }
}

pub(super) async fn sync_group(
    shared: &Shared,
    caller: &Caller,
    req: m::SyncGroupRequest,
) -> m::SyncGroupResponse {
    let v = caller.version;
    let step = {
        let mut st = shared.lock();
        let now = Instant::now();
        match group_check(&st, caller, &req.group_id) {
            Err(code) => Step::Done(Err(code)),
            Ok(()) => match st.groups.map.get_mut(&req.group_id).map(|g| &mut g.kind) {
                Some(GroupKind::Classic(c)) => c.sync(
                    &req.member_id,
                    req.generation_id,
                    req.assignments
                        .iter()
                        .map(|a| (a.member_id.clone(), a.assignment.clone()))
                        .collect(),
                    now,
                ),
                _ => Step::Done(Err(ErrorCode::UnknownMemberId)),
            },
        }
    };
    shared.changed();
    let result = match step {
        Step::Done(r) => r,
        Step::Wait => {
            let (group_id, member_id, generation) = (
                req.group_id.clone(),
                req.member_id.clone(),
                req.generation_id,
            );
            let limit = Instant::now() + Duration::from_secs(300);
            shared
                .wait_until(limit, |st| {
                    match st.groups.map.get(&group_id).map(|g| &g.kind) {
                        Some(GroupKind::Classic(c)) => c.poll_sync(&member_id, generation),
                        _ => Some(Err(ErrorCode::UnknownMemberId)),
                    }
                })
                .await
                .unwrap_or(Err(ErrorCode::RebalanceInProgress))
        }
    };
    let (protocol_type, protocol_name) = {
        let st = shared.lock();
        match st.groups.map.get(&req.group_id).map(|g| &g.kind) {
            Some(GroupKind::Classic(c)) if v >= 5 => (c.protocol_type.clone(), c.protocol.clone()),
            _ => (None, None),
        }
    };
    match result {
        Ok(assignment) => m::SyncGroupResponse {
            protocol_type,
            protocol_name,
            assignment,
            ..Default::default()
        },
        Err(code) => m::SyncGroupResponse {
            error_code: code.code(),
            ..Default::default()
        },
    }
}

pub(super) fn heartbeat(st: &mut State, caller: &Caller, req: &m::HeartbeatRequest) -> ErrorCode {
    if let Err(code) = group_check(st, caller, &req.group_id) {
        return code;
    }
    match st.groups.map.get_mut(&req.group_id).map(|g| &mut g.kind) {
        Some(GroupKind::Classic(c)) => {
            c.heartbeat(&req.member_id, req.generation_id, Instant::now())
        }
        _ => ErrorCode::UnknownMemberId,
    }
}

pub(super) fn leave_group(
    st: &mut State,
    caller: &Caller,
    req: m::LeaveGroupRequest,
) -> lgr::LeaveGroupResponse {
    let v = caller.version;
    let leaving: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.clone(), None)]
    };
    if let Err(code) = group_check(st, caller, &req.group_id) {
        return lgr::LeaveGroupResponse {
            error_code: code.code(),
            ..Default::default()
        };
    }
    let timings = st.groups.timings;
    let now = Instant::now();
    let mut results = Vec::new();
    for (member_id, instance) in leaving {
        let (id, code) = match st.groups.map.get_mut(&req.group_id).map(|g| &mut g.kind) {
            Some(GroupKind::Classic(c)) => c.leave(&member_id, instance.as_deref(), now, &timings),
            _ => (member_id.clone(), ErrorCode::UnknownMemberId),
        };
        results.push(lgr::MemberResponse {
            member_id: id,
            group_instance_id: instance,
            error_code: code.code(),
            ..Default::default()
        });
    }
    if v < 3 {
        return lgr::LeaveGroupResponse {
            error_code: results.first().map_or(0, |r| r.error_code),
            ..Default::default()
        };
    }
    lgr::LeaveGroupResponse {
        members: results,
        ..Default::default()
    }
}

pub(super) fn offset_commit(
    st: &mut State,
    caller: &Caller,
    req: m::OffsetCommitRequest,
) -> ocr::OffsetCommitResponse {
    let now = Instant::now();
    let check = group_check(st, caller, &req.group_id).and_then(|()| {
        let group = st
            .groups
            .map
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::classic(now));
        let code = match &group.kind {
            GroupKind::Classic(c) => {
                c.validate_commit(&req.member_id, req.generation_id_or_member_epoch)
            }
            GroupKind::Consumer(c) => {
                c.validate_commit(&req.member_id, req.generation_id_or_member_epoch)
            }
        };
        if code == ErrorCode::None {
            Ok(())
        } else {
            Err(code)
        }
    });
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = match check {
                        Err(code) => code,
                        Ok(())
                            if p.committed_metadata
                                .as_ref()
                                .is_some_and(|m| m.len() > 4096) =>
                        {
                            ErrorCode::OffsetMetadataTooLarge
                        }
                        Ok(()) => {
                            if let Some(group) = st.groups.map.get_mut(&req.group_id) {
                                group.commit([(
                                    (t.name.clone(), p.partition_index),
                                    Committed {
                                        offset: p.committed_offset,
                                        leader_epoch: p.committed_leader_epoch,
                                        metadata: p.committed_metadata.clone(),
                                    },
                                )]);
                            }
                            ErrorCode::None
                        }
                    };
                    ocr::OffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: code.code(),
                        ..Default::default()
                    }
                })
                .collect();
            ocr::OffsetCommitResponseTopic {
                name: t.name,
                partitions,
                ..Default::default()
            }
        })
        .collect();
    ocr::OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}

/// One group's committed offsets: `(topic, [(partition, offset, epoch, metadata, error)])`.
pub(super) type FetchedOffsets = Vec<(String, Vec<(i32, i64, i32, Option<String>, ErrorCode)>)>;

pub(super) fn fetch_group_offsets(
    st: &State,
    caller: &Caller,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<FetchedOffsets, ErrorCode> {
    group_check(st, caller, group_id)?;
    let group = st.groups.map.get(group_id);
    let topics = match topics {
        Some(t) => t,
        None => {
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            if let Some(g) = group {
                for (t, p) in g.offsets.keys() {
                    all.entry(t.clone()).or_default().push(*p);
                }
            }
            all.into_iter()
                .map(|(t, mut ps)| {
                    ps.sort_unstable();
                    (t, ps)
                })
                .collect()
        }
    };
    Ok(topics
        .into_iter()
        .map(|(t, ps)| {
            let parts = ps
                .into_iter()
                .map(|p| {
                    if require_stable && group.is_some_and(|g| g.has_pending(&t, p)) {
                        return (
                            p,
                            -1,
                            -1,
                            Some(String::new()),
                            ErrorCode::UnstableOffsetCommit,
                        );
                    }
                    match group.and_then(|g| g.offsets.get(&(t.clone(), p))) {
                        Some(c) => (
                            p,
                            c.offset,
                            c.leader_epoch,
                            c.metadata.clone(),
                            ErrorCode::None,
                        ),
                        None => (p, -1, -1, Some(String::new()), ErrorCode::None),
                    }
                })
                .collect();
            (t, parts)
        })
        .collect())
}

pub(super) fn offset_fetch(
    st: &State,
    caller: &Caller,
    req: m::OffsetFetchRequest,
) -> ofr::OffsetFetchResponse {
    let v = caller.version;
    let stable = req.require_stable && v >= 7;
    if v < 8 {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        return match fetch_group_offsets(st, caller, &req.group_id, topics, stable) {
            Err(code) => ofr::OffsetFetchResponse {
                error_code: code.code(),
                ..Default::default()
            },
            Ok(found) => ofr::OffsetFetchResponse {
                topics: found
                    .into_iter()
                    .map(|(name, parts)| ofr::OffsetFetchResponseTopic {
                        name,
                        partitions: parts
                            .into_iter()
                            .map(|(p, offset, epoch, metadata, code)| {
                                ofr::OffsetFetchResponsePartition {
                                    partition_index: p,
                                    committed_offset: offset,
                                    committed_leader_epoch: if v >= 5 { epoch } else { -1 },
                                    metadata,
                                    error_code: code.code(),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        };
    }
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            match fetch_group_offsets(st, caller, &g.group_id, topics, stable) {
                Err(code) => ofr::OffsetFetchResponseGroup {
                    group_id: g.group_id,
                    error_code: code.code(),
                    ..Default::default()
                },
                Ok(found) => ofr::OffsetFetchResponseGroup {
                    group_id: g.group_id,
                    topics: found
                        .into_iter()
                        .map(|(name, parts)| ofr::OffsetFetchResponseTopics {
                            name,
                            partitions: parts
                                .into_iter()
                                .map(|(p, offset, epoch, metadata, code)| {
                                    ofr::OffsetFetchResponsePartitions {
                                        partition_index: p,
                                        committed_offset: offset,
                                        committed_leader_epoch: epoch,
                                        metadata,
                                        error_code: code.code(),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            }
        })
        .collect();
    ofr::OffsetFetchResponse {
        groups,
        ..Default::default()
    }
}

pub(super) fn describe_groups(
    st: &State,
    caller: &Caller,
    req: m::DescribeGroupsRequest,
) -> dgsr::DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            if let Err(code) = group_check(st, caller, &id) {
                return dgsr::DescribedGroup {
                    error_code: code.code(),
                    group_id: id,
                    ..Default::default()
                };
            }
            match st.groups.map.get(&id) {
                None => dgsr::DescribedGroup {
                    group_id: id,
                    group_state: "Dead".into(),
                    ..Default::default()
                },
                Some(g) => match &g.kind {
                    GroupKind::Classic(c) => dgsr::DescribedGroup {
                        group_id: id,
                        group_state: c.state.name().into(),
                        protocol_type: c.protocol_type.clone().unwrap_or_default(),
                        protocol_data: c.protocol.clone().unwrap_or_default(),
                        members: c
                            .members
                            .iter()
                            .map(|(mid, mm)| dgsr::DescribedGroupMember {
                                member_id: mid.clone(),
                                group_instance_id: mm.instance_id.clone(),
                                client_id: mm.client_id.clone(),
                                client_host: mm.client_host.clone(),
                                member_metadata: mm
                                    .protocols
                                    .iter()
                                    .find(|(n, _)| Some(n) == c.protocol.as_ref())
                                    .map(|(_, b)| b.clone())
                                    .unwrap_or_default(),
                                member_assignment: mm.assignment.clone(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                    GroupKind::Consumer(_) => dgsr::DescribedGroup {
                        error_code: ErrorCode::GroupIdNotFound.code(),
                        group_id: id,
                        ..Default::default()
                    },
                },
            }
        })
        .collect();
    dgsr::DescribeGroupsResponse {
        groups,
        ..Default::default()
    }
}

pub(super) fn list_groups(
    st: &State,
    caller: &Caller,
    req: m::ListGroupsRequest,
) -> lgsr::ListGroupsResponse {
    let mut groups: Vec<lgsr::ListedGroup> = st
        .groups
        .map
        .iter()
        .filter(|(id, _)| st.coordinates(caller.broker, id))
        .map(|(id, g)| {
            let (protocol_type, group_type) = match &g.kind {
                GroupKind::Classic(c) => (c.protocol_type.clone().unwrap_or_default(), "classic"),
                GroupKind::Consumer(_) => ("consumer".to_string(), "consumer"),
            };
            lgsr::ListedGroup {
                group_id: id.clone(),
                protocol_type,
                group_state: g.state_name().into(),
                group_type: group_type.into(),
                ..Default::default()
            }
        })
        .filter(|g| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&g.group_state))
        })
        .filter(|g| {
            req.types_filter.is_empty()
                || req
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&g.group_type))
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    if caller.version < 4 {
        for g in &mut groups {
            g.group_state.clear();
        }
    }
    if caller.version < 5 {
        for g in &mut groups {
            g.group_type.clear();
        }
    }
    lgsr::ListGroupsResponse {
        groups,
        ..Default::default()
    }
}

pub(super) fn delete_groups(
    st: &mut State,
    caller: &Caller,
    req: m::DeleteGroupsRequest,
) -> dgr::DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let code = match group_check(st, caller, &id) {
                Err(code) => code,
                Ok(()) => match st.groups.map.get(&id) {
                    None => ErrorCode::GroupIdNotFound,
                    Some(g) if !g.is_empty() => ErrorCode::NonEmptyGroup,
                    Some(_) => {
                        st.groups.map.remove(&id);
                        ErrorCode::None
                    }
                },
            };
            dgr::DeletableGroupResult {
                group_id: id,
                error_code: code.code(),
                ..Default::default()
            }
        })
        .collect();
    dgr::DeleteGroupsResponse {
        results,
        ..Default::default()
    }
}

pub(super) fn consumer_group_heartbeat(
    st: &mut State,
    caller: &Caller,
    req: m::ConsumerGroupHeartbeatRequest,
) -> cghr::ConsumerGroupHeartbeatResponse {
    let fail = |code: ErrorCode, message: &str| cghr::ConsumerGroupHeartbeatResponse {
        error_code: code.code(),
        error_message: Some(message.to_string()),
        member_epoch: -1,
        ..Default::default()
    };
    if let Err(code) = group_check(st, caller, &req.group_id) {
        return fail(code, "This is not the group's coordinator.");
    }
    if let Some(assignor) = &req.server_assignor
        && assignor != "uniform"
        && assignor != "range"
    {
        return fail(
            ErrorCode::UnsupportedAssignor,
            "The assignor is not supported (uniform, range).",
        );
    }
    let now = Instant::now();
    let view: TopicView = st
        .topics
        .iter()
        .map(|(n, t)| (n.clone(), (t.id, t.partitions.len() as i32)))
        .collect();
    let generated = crate::state::random_uuid().to_string();
    let timings = st.groups.timings;
    let group = st
        .groups
        .map
        .entry(req.group_id.clone())
        .or_insert_with(|| Group::classic(now));
    if let GroupKind::Classic(c) = &group.kind {
        if !c.members.is_empty() {
            return fail(
                ErrorCode::GroupIdNotFound,
                "The group is a classic group with members.",
            );
        }
        group.kind = GroupKind::Consumer(ConsumerGroup::default());
    }
    let GroupKind::Consumer(cg) = &mut group.kind else {
        return fail(ErrorCode::GroupIdNotFound, "Not a consumer group.");
    };
    let answer = cg.heartbeat(
        Heartbeat {
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            instance_id: req.instance_id,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed: req.subscribed_topic_names,
            regex: req.subscribed_topic_regex,
            owned: req.topic_partitions.map(|tps| {
                tps.into_iter()
                    .map(|tp| (tp.topic_id, tp.partitions))
                    .collect()
            }),
        },
        &view,
        generated,
        now,
        &timings,
    );
    cghr::ConsumerGroupHeartbeatResponse {
        error_code: answer.error.code(),
        error_message: answer.message,
        member_id: answer.member_id,
        member_epoch: answer.member_epoch,
        heartbeat_interval_ms: answer.heartbeat_interval_ms,
        assignment: answer.assignment.map(|tps| cghr::Assignment {
            topic_partitions: tps
                .into_iter()
                .map(|(topic_id, partitions)| cghr::TopicPartitions {
                    topic_id,
                    partitions,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
