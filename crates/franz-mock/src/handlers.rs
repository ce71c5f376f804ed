//! One function per served API: a decoded request in, a typed response out.
//! Each takes the state lock for one decision; the few that wait (Fetch's
//! long poll, JoinGroup, SyncGroup) park on the cluster's change signal
//! between decisions, never holding the lock.
#![allow(clippy::disallowed_methods)] // the mock broker is a driver of its own cluster state: session expiry and delayed fetches read the clock

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_protocol::messages::{
    self as m, AnyRequest, AnyResponse, ApiKey, add_offsets_to_txn_response,
    add_partitions_to_txn_response as aptr, consumer_group_heartbeat_response as cghr,
    create_partitions_response as cpr, create_topics_response as ctr,
    delete_groups_response as dgr, delete_topics_response as dtr, describe_cluster_response as dcr,
    describe_configs_response as dcfr, describe_groups_response as dgsr, fetch_response as fr,
    find_coordinator_response as fcr, join_group_response as jgr, leave_group_response as lgr,
    list_groups_response as lgsr, list_offsets_response as lor, metadata_response as mr,
    offset_commit_response as ocr, offset_fetch_response as ofr,
    offset_for_leader_epoch_response as oflr, produce_response as pr,
    txn_offset_commit_response as tocr,
};
use franz_protocol::{ErrorCode, Uuid};

use crate::consumer_group::{ConsumerGroup, Heartbeat, TopicView};
use crate::fetch_session::SessionPartition;
use crate::group::{Group, GroupKind, JoinRequest, JoinResult, Joined, Step};
use crate::server::Shared;
use crate::state::{Committed, State, TOPIC_DEFAULTS};

/// The APIs the mock serves, with the versions it announces. Produce stops
/// at 11 and EndTxn at 4: the mock speaks transaction version 1.
pub(crate) const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 2, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
];

/// The versions the mock serves for `api`, if it serves it.
pub(crate) fn served_versions(api: ApiKey) -> Option<(i16, i16)> {
    SERVED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// Longest Fetch long poll the mock honours.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) broker: i32,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) version: i16,
}

/// Serves one request. `None` means no response is sent (Produce with acks=0).
pub(crate) async fn handle(
    shared: &Shared,
    caller: &Caller,
    req: AnyRequest,
) -> Option<AnyResponse> {
    let v = caller.version;
    let resp = match req {
        AnyRequest::ApiVersions(_) => AnyResponse::ApiVersions(api_versions(ErrorCode::None)),
        AnyRequest::Metadata(r) => AnyResponse::Metadata(metadata(&mut shared.lock(), caller, r)),
        AnyRequest::Produce(r) => {
            let acks = r.acks;
            let resp = produce(&mut shared.lock(), caller, r);
            shared.changed();
            if acks == 0 {
                return None;
            }
            AnyResponse::Produce(resp)
        }
        AnyRequest::Fetch(r) => AnyResponse::Fetch(fetch(shared, caller, r).await),
        AnyRequest::ListOffsets(r) => {
            AnyResponse::ListOffsets(list_offsets(&shared.lock(), caller, r))
        }
        AnyRequest::OffsetForLeaderEpoch(r) => {
            AnyResponse::OffsetForLeaderEpoch(offset_for_leader_epoch(&shared.lock(), caller, r))
        }
        AnyRequest::FindCoordinator(r) => {
            AnyResponse::FindCoordinator(find_coordinator(&shared.lock(), v, r))
        }
        AnyRequest::JoinGroup(r) => AnyResponse::JoinGroup(join_group(shared, caller, r).await),
        AnyRequest::SyncGroup(r) => AnyResponse::SyncGroup(sync_group(shared, caller, r).await),
        AnyRequest::Heartbeat(r) => {
            let code = heartbeat(&mut shared.lock(), caller, &r);
            AnyResponse::Heartbeat(m::HeartbeatResponse {
                error_code: code.code(),
                ..Default::default()
            })
        }
        AnyRequest::LeaveGroup(r) => {
            let resp = leave_group(&mut shared.lock(), caller, r);
            shared.changed();
            AnyResponse::LeaveGroup(resp)
        }
        AnyRequest::OffsetCommit(r) => {
            AnyResponse::OffsetCommit(offset_commit(&mut shared.lock(), caller, r))
        }
        AnyRequest::OffsetFetch(r) => {
            AnyResponse::OffsetFetch(offset_fetch(&shared.lock(), caller, r))
        }
        AnyRequest::DescribeGroups(r) => {
            AnyResponse::DescribeGroups(describe_groups(&shared.lock(), caller, r))
        }
        AnyRequest::ListGroups(r) => {
            AnyResponse::ListGroups(list_groups(&shared.lock(), caller, r))
        }
        AnyRequest::DeleteGroups(r) => {
            AnyResponse::DeleteGroups(delete_groups(&mut shared.lock(), caller, r))
        }
        AnyRequest::ConsumerGroupHeartbeat(r) => {
            let resp = consumer_group_heartbeat(&mut shared.lock(), caller, r);
            shared.changed();
            AnyResponse::ConsumerGroupHeartbeat(resp)
        }
        AnyRequest::CreateTopics(r) => {
            let resp = create_topics(&mut shared.lock(), r);
            shared.changed();
            AnyResponse::CreateTopics(resp)
        }
        AnyRequest::DeleteTopics(r) => {
            let resp = delete_topics(&mut shared.lock(), v, r);
            shared.changed();
            AnyResponse::DeleteTopics(resp)
        }
        AnyRequest::CreatePartitions(r) => {
            let resp = create_partitions(&mut shared.lock(), r);
            shared.changed();
            AnyResponse::CreatePartitions(resp)
        }
        AnyRequest::DescribeCluster(r) => {
            AnyResponse::DescribeCluster(describe_cluster(&shared.lock(), r))
        }
        AnyRequest::DescribeConfigs(r) => {
            AnyResponse::DescribeConfigs(describe_configs(&shared.lock(), r))
        }
        AnyRequest::InitProducerId(r) => {
            let resp = init_producer_id(&mut shared.lock(), caller, r);
            shared.changed();
            AnyResponse::InitProducerId(resp)
        }
        AnyRequest::AddPartitionsToTxn(r) => {
            AnyResponse::AddPartitionsToTxn(add_partitions_to_txn(&mut shared.lock(), caller, r))
        }
        AnyRequest::AddOffsetsToTxn(r) => {
            let mut st = shared.lock();
            let code = if st.coordinates(caller.broker, &r.transactional_id) {
                st.add_offsets_to_txn(
                    &r.transactional_id,
                    r.producer_id,
                    r.producer_epoch,
                    &r.group_id,
                    Instant::now(),
                )
            } else {
                ErrorCode::NotCoordinator
            };
            AnyResponse::AddOffsetsToTxn(add_offsets_to_txn_response::AddOffsetsToTxnResponse {
                error_code: code.code(),
                ..Default::default()
            })
        }
        AnyRequest::EndTxn(r) => {
            let code = {
                let mut st = shared.lock();
                if st.coordinates(caller.broker, &r.transactional_id) {
                    st.end_txn(
                        &r.transactional_id,
                        r.producer_id,
                        r.producer_epoch,
                        r.committed,
                        Instant::now(),
                    )
                } else {
                    ErrorCode::NotCoordinator
                }
            };
            shared.changed();
            AnyResponse::EndTxn(m::EndTxnResponse {
                error_code: code.code(),
                ..Default::default()
            })
        }
        AnyRequest::TxnOffsetCommit(r) => {
            AnyResponse::TxnOffsetCommit(txn_offset_commit(&mut shared.lock(), caller, r))
        }
        other => {
            // The server loop refuses unserved APIs before dispatch.
            tracing::warn!(api = ?std::mem::discriminant(&other), "unserved API reached dispatch");
            return None;
        }
    };
    Some(resp)
}

/// The ApiVersions answer: exactly the served APIs.
pub(crate) fn api_versions(error: ErrorCode) -> m::ApiVersionsResponse {
    m::ApiVersionsResponse {
        error_code: error.code(),
        api_keys: SERVED
            .iter()
            .map(|(k, lo, hi)| m::api_versions_response::ApiVersion {
                api_key: k.key(),
                // KAFKA-18659: Kafka 4 announces Produce from v0 though it
                // serves v3+, because librdkafka (kcat) sends gzip, snappy,
                // lz4 and zstd only to brokers that list Produce v0 (its
                // feature check tests for that exact version). v0-v2
                // requests are still refused.
                min_version: if *k == ApiKey::Produce { 0 } else { *lo },
                max_version: *hi,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn metadata(st: &mut State, caller: &Caller, req: m::MetadataRequest) -> mr::MetadataResponse {
    let v = caller.version;
    let wanted: Vec<(Option<String>, Uuid)> = match req.topics {
        Some(ts) if !(v == 0 && ts.is_empty()) => {
            ts.into_iter().map(|t| (t.name, t.topic_id)).collect()
        }
        _ => st
            .topics
            .keys()
            .map(|n| (Some(n.clone()), Uuid::ZERO))
            .collect(),
    };
    let allow_auto = v < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    for (name, id) in wanted {
        let name = match name {
            Some(n) => n,
            None => match st.topic_name(id) {
                Some(n) => n.to_string(),
                None => {
                    topics.push(mr::MetadataResponseTopic {
                        error_code: ErrorCode::UnknownTopicId.code(),
                        name: None,
                        topic_id: id,
                        ..Default::default()
                    });
                    continue;
                }
            },
        };
        if allow_auto {
            st.auto_create(&name);
        }
        topics.push(topic_metadata(st, &name, v));
    }
    let live: Vec<&crate::state::BrokerInfo> = st.live_brokers().collect();
    mr::MetadataResponse {
        brokers: live
            .iter()
            .map(|b| mr::MetadataResponseBroker {
                node_id: b.id,
                host: b.host.clone(),
                port: i32::from(b.port),
                rack: b.rack.clone(),
                ..Default::default()
            })
            .collect(),
        cluster_id: Some(st.config.cluster_id.clone()),
        controller_id: live.first().map_or(-1, |b| b.id),
        topics,
        ..Default::default()
    }
}

fn topic_metadata(st: &State, name: &str, v: i16) -> mr::MetadataResponseTopic {
    let Some(topic) = st.topics.get(name) else {
        let code = if crate::state::valid_topic_name(name) {
            ErrorCode::UnknownTopicOrPartition
        } else {
            ErrorCode::InvalidTopicException
        };
        return mr::MetadataResponseTopic {
            error_code: code.code(),
            name: Some(name.to_string()),
            ..Default::default()
        };
    };
    let live: BTreeSet<i32> = st.live_brokers().map(|b| b.id).collect();
    mr::MetadataResponseTopic {
        error_code: 0,
        name: Some(name.to_string()),
        topic_id: if v >= 10 { topic.id } else { Uuid::ZERO },
        partitions: topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| mr::MetadataResponsePartition {
                error_code: if p.leader < 0 {
                    ErrorCode::LeaderNotAvailable.code()
                } else {
                    0
                },
                partition_index: i as i32,
                leader_id: p.leader,
                leader_epoch: p.leader_epoch,
                replica_nodes: p.replicas.clone(),
                isr_nodes: p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| live.contains(r))
                    .collect(),
                offline_replicas: p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !live.contains(r))
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn produce(st: &mut State, caller: &Caller, req: m::ProduceRequest) -> pr::ProduceResponse {
    let v = caller.version;
    let mut responses = Vec::new();
    for topic in req.topic_data {
        let max_message = st
            .topics
            .get(&topic.name)
            .map(|t| st.max_message_bytes(t))
            .unwrap_or(usize::MAX);
        let mut parts = Vec::new();
        for p in topic.partition_data {
            let mut out = pr::PartitionProduceResponse {
                index: p.index,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            let result = if !matches!(req.acks, -1..=1) {
                Err(ErrorCode::InvalidRequiredAcks)
            } else {
                st.check_leader(caller.broker, &topic.name, p.index, -1)
                    .map(|_| ())
            };
            let result = result.and_then(|()| {
                let records = p.records.clone().ok_or(ErrorCode::CorruptMessage)?;
                let tp = (topic.name.clone(), p.index);
                let State { topics, txns, .. } = &mut *st;
                let partition = topics
                    .get_mut(&topic.name)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(p.index).ok()?))
                    .ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let leader_epoch = partition.leader_epoch;
                let appended =
                    partition
                        .log
                        .append(records, leader_epoch, max_message, &|pid, epoch| {
                            txns.check_produce(pid, epoch, &tp)
                        })?;
                Ok((appended.base_offset, partition.log.log_start()))
            });
            match result {
                Ok((base, start)) => {
                    out.base_offset = base;
                    if v >= 5 {
                        out.log_start_offset = start;
                    }
                }
                Err(code) => out.error_code = code.code(),
            }
            parts.push(out);
        }
        responses.push(pr::TopicProduceResponse {
            name: topic.name,
            partition_responses: parts,
            ..Default::default()
        });
    }
    pr::ProduceResponse {
        responses,
        ..Default::default()
    }
}

/// A partition a Fetch asks for, resolved.
struct FetchItem {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    unknown: bool,
}

/// How a fetch relates to a session.
enum SessionMode {
    None,
    Full(i32),
    Incremental(i32),
}

async fn fetch(shared: &Shared, caller: &Caller, req: m::FetchRequest) -> fr::FetchResponse {
    let v = caller.version;
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0))
        .min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + wait;
    let read_committed = req.isolation_level == 1;
    let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = usize::try_from(req.max_bytes.max(0)).unwrap_or(0);
    let mode = {
        let mut st = shared.lock();
        match open_session(&mut st, v, &req, Instant::now()) {
            Ok(mode) => mode,
            Err(code) => {
                return fr::FetchResponse {
                    error_code: code.code(),
                    session_id: 0,
                    ..Default::default()
                };
            }
        }
    };
    loop {
        let notified = shared.changed_signal();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = shared.lock();
            let now = Instant::now();
            let items = fetch_items(&mut st, v, &req, &mode, now);
            let (resp, bytes, errors) =
                build_fetch(&mut st, caller, &items, &mode, read_committed, max_bytes);
            if bytes >= min_bytes.max(1) || errors || now >= deadline {
                if let SessionMode::Full(id) | SessionMode::Incremental(id) = mode
                    && let Some(s) = st.sessions.get_mut(id, now)
                {
                    s.epoch = s.epoch.wrapping_add(1).max(1);
                }
                return resp;
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

/// Opens, checks or closes the request's session.
fn open_session(
    st: &mut State,
    v: i16,
    req: &m::FetchRequest,
    now: Instant,
) -> Result<SessionMode, ErrorCode> {
    if v < 7 {
        return Ok(SessionMode::None);
    }
    let (id, epoch) = (req.session_id, req.session_epoch);
    if epoch == -1 {
        if id != 0 {
            st.sessions.remove(id);
        }
        return Ok(SessionMode::None);
    }
    if epoch == 0 {
        if id != 0 {
            st.sessions.remove(id);
        }
        let mut parts = BTreeMap::new();
        for (topic, topic_id, p) in request_partitions(st, v, req) {
            parts.insert((topic, p.partition), session_partition(topic_id, p));
        }
        return Ok(SessionMode::Full(st.sessions.create(parts, now)));
    }
    let forgotten: Vec<(String, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|f| {
            let name = if v >= 13 {
                st.topic_name(f.topic_id).unwrap_or_default().to_string()
            } else {
                f.topic.clone()
            };
            f.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect();
    let updates = request_partitions(st, v, req);
    let session = st
        .sessions
        .get_mut(id, now)
        .ok_or(ErrorCode::FetchSessionIdNotFound)?;
    if session.epoch != epoch {
        return Err(ErrorCode::InvalidFetchSessionEpoch);
    }
    for tp in forgotten {
        session.partitions.remove(&tp);
    }
    for (topic, topic_id, p) in updates {
        let key = (topic, p.partition);
        let last_sent = session.partitions.get(&key).and_then(|s| s.last_sent);
        let mut sp = session_partition(topic_id, p);
        sp.last_sent = last_sent;
        session.partitions.insert(key, sp);
    }
    Ok(SessionMode::Incremental(id))
}

fn session_partition(topic_id: Uuid, p: &m::fetch_request::FetchPartition) -> SessionPartition {
    SessionPartition {
        topic_id,
        fetch_offset: p.fetch_offset,
        max_bytes: p.partition_max_bytes,
        current_leader_epoch: p.current_leader_epoch,
        last_sent: None,
    }
}

/// The request's partitions with their topic names resolved.
fn request_partitions<'a>(
    st: &State,
    v: i16,
    req: &'a m::FetchRequest,
) -> Vec<(String, Uuid, &'a m::fetch_request::FetchPartition)> {
    let mut out = Vec::new();
    for t in &req.topics {
        let (name, id) = if v >= 13 {
            (
                st.topic_name(t.topic_id).unwrap_or_default().to_string(),
                t.topic_id,
            )
        } else {
            (
                t.topic.clone(),
                st.topics.get(&t.topic).map_or(Uuid::ZERO, |x| x.id),
            )
        };
        for p in &t.partitions {
            out.push((name.clone(), id, p));
        }
    }
    out
}

fn fetch_items(
    st: &mut State,
    v: i16,
    req: &m::FetchRequest,
    mode: &SessionMode,
    now: Instant,
) -> Vec<FetchItem> {
    match mode {
        SessionMode::Incremental(id) | SessionMode::Full(id) => st
            .sessions
            .get_mut(*id, now)
            .map(|s| {
                s.partitions
                    .iter()
                    .map(|((topic, partition), sp)| FetchItem {
                        topic: topic.clone(),
                        topic_id: sp.topic_id,
                        partition: *partition,
                        fetch_offset: sp.fetch_offset,
                        max_bytes: sp.max_bytes,
                        current_leader_epoch: sp.current_leader_epoch,
                        unknown: topic.is_empty(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        SessionMode::None => request_partitions(st, v, req)
            .into_iter()
            .map(|(topic, topic_id, p)| FetchItem {
                unknown: topic.is_empty(),
                topic,
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
            .collect(),
    }
}

/// Builds the answer; returns it with the record bytes it carries and
/// whether any partition has an error (which answers at once).
fn build_fetch(
    st: &mut State,
    caller: &Caller,
    items: &[FetchItem],
    mode: &SessionMode,
    read_committed: bool,
    max_bytes: usize,
) -> (fr::FetchResponse, usize, bool) {
    let v = caller.version;
    let mut total = 0usize;
    let mut errors = false;
    let mut by_topic: Vec<fr::FetchableTopicResponse> = Vec::new();
    let incremental = matches!(mode, SessionMode::Incremental(_));
    let session_id = match mode {
        SessionMode::Full(id) | SessionMode::Incremental(id) => *id,
        SessionMode::None => 0,
    };
    let now = Instant::now();
    for item in items {
        let mut data = fr::PartitionData {
            partition_index: item.partition,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            preferred_read_replica: -1,
            records: Some(Bytes::new()),
            ..Default::default()
        };
        let mut marks = None;
        let checked = if item.unknown {
            Err(if v >= 13 {
                ErrorCode::UnknownTopicId
            } else {
                ErrorCode::UnknownTopicOrPartition
            })
        } else {
            st.check_leader(
                caller.broker,
                &item.topic,
                item.partition,
                item.current_leader_epoch,
            )
        };
        match checked {
            Err(code) => {
                data.error_code = code.code();
                errors = true;
            }
            Ok(p) => {
                let log = &p.log;
                let (hw, lso, start) = (
                    log.high_watermark(),
                    log.last_stable_offset(),
                    log.log_start(),
                );
                data.high_watermark = hw;
                data.last_stable_offset = lso;
                data.log_start_offset = start;
                marks = Some((hw, lso, start));
                if item.fetch_offset < start || item.fetch_offset > hw {
                    data.error_code = ErrorCode::OffsetOutOfRange.code();
                    errors = true;
                } else {
                    let limit = if read_committed { lso } else { hw };
                    let room = usize::try_from(item.max_bytes.max(0))
                        .unwrap_or(0)
                        .min(max_bytes.saturating_sub(total));
                    let (records, last) = if room == 0 && total > 0 {
                        (Bytes::new(), item.fetch_offset)
                    } else {
                        log.read(item.fetch_offset, limit, room.max(1))
                    };
                    if read_committed {
                        data.aborted_transactions = Some(
                            log.aborted_between(item.fetch_offset, last)
                                .into_iter()
                                .map(|a| fr::AbortedTransaction {
                                    producer_id: a.producer_id,
                                    first_offset: a.first_offset,
                                    ..Default::default()
                                })
                                .collect(),
                        );
                    }
                    total += records.len();
                    data.records = Some(records);
                }
            }
        }
        if incremental
            && data.error_code == 0
            && data.records.as_ref().is_none_or(Bytes::is_empty)
            && let Some(s) = st.sessions.get_mut(session_id, now)
            && s.partitions
                .get(&(item.topic.clone(), item.partition))
                .is_some_and(|sp| sp.last_sent == marks)
        {
            continue;
        }
        if session_id != 0
            && let Some(s) = st.sessions.get_mut(session_id, now)
            && let Some(sp) = s.partitions.get_mut(&(item.topic.clone(), item.partition))
        {
            sp.last_sent = marks;
        }
        let same_topic = by_topic.last().is_some_and(|t| {
            if v >= 13 {
                t.topic_id == item.topic_id
            } else {
                t.topic == item.topic
            }
        });
        if !same_topic {
            by_topic.push(fr::FetchableTopicResponse {
                topic: if v >= 13 {
                    String::new()
                } else {
                    item.topic.clone()
                },
                topic_id: if v >= 13 { item.topic_id } else { Uuid::ZERO },
                ..Default::default()
            });
        }
        if let Some(t) = by_topic.last_mut() {
            t.partitions.push(data);
        }
    }
    let resp = fr::FetchResponse {
        error_code: 0,
        session_id,
        responses: by_topic,
        ..Default::default()
    };
    (resp, total, errors)
}

fn list_offsets(
    st: &State,
    caller: &Caller,
    req: m::ListOffsetsRequest,
) -> lor::ListOffsetsResponse {
    let v = caller.version;
    let read_committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| lor::ListOffsetsTopicResponse {
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut out = lor::ListOffsetsPartitionResponse {
                        partition_index: p.partition_index,
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                        ..Default::default()
                    };
                    match st.check_leader(
                        caller.broker,
                        &t.name,
                        p.partition_index,
                        p.current_leader_epoch,
                    ) {
                        Err(code) => out.error_code = code.code(),
                        Ok(part) => {
                            let log = &part.log;
                            let (offset, ts) = match p.timestamp {
                                -1 => (
                                    if read_committed {
                                        log.last_stable_offset()
                                    } else {
                                        log.high_watermark()
                                    },
                                    -1,
                                ),
                                -2 | -4 | -5 => (log.log_start(), -1),
                                -3 => log.max_timestamp().unwrap_or((-1, -1)),
                                ts => log.offset_for_timestamp(ts).unwrap_or((-1, -1)),
                            };
                            out.offset = offset;
                            out.timestamp = ts;
                            if v >= 4 {
                                out.leader_epoch = part.leader_epoch;
                            }
                        }
                    }
                    out
                })
                .collect(),
            name: t.name,
            ..Default::default()
        })
        .collect();
    lor::ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

fn offset_for_leader_epoch(
    st: &State,
    caller: &Caller,
    req: m::OffsetForLeaderEpochRequest,
) -> oflr::OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| oflr::OffsetForLeaderTopicResult {
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut out = oflr::EpochEndOffset {
                        partition: p.partition,
                        leader_epoch: -1,
                        end_offset: -1,
                        ..Default::default()
                    };
                    match st.check_leader(
                        caller.broker,
                        &t.topic,
                        p.partition,
                        p.current_leader_epoch,
                    ) {
                        Err(code) => out.error_code = code.code(),
                        Ok(part) => {
                            // The largest epoch at or below the one asked, and where the next began.
                            let at = part.epochs.iter().rposition(|(e, _)| *e <= p.leader_epoch);
                            if let Some(i) = at {
                                out.leader_epoch = part.epochs[i].0;
                                out.end_offset = part
                                    .epochs
                                    .get(i + 1)
                                    .map_or(part.log.high_watermark(), |(_, start)| *start);
                            }
                        }
                    }
                    out
                })
                .collect(),
            topic: t.topic,
            ..Default::default()
        })
        .collect();
    oflr::OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}

fn find_coordinator(
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
fn classic_group<'a>(
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

fn group_check(st: &State, caller: &Caller, group_id: &str) -> Result<(), ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    if !st.coordinates(caller.broker, group_id) {
        return Err(ErrorCode::NotCoordinator);
    }
    Ok(())
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v.max(0)).unwrap_or(0))
}

async fn join_group(
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

async fn sync_group(
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

fn heartbeat(st: &mut State, caller: &Caller, req: &m::HeartbeatRequest) -> ErrorCode {
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

fn leave_group(
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

fn offset_commit(
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
type FetchedOffsets = Vec<(String, Vec<(i32, i64, i32, Option<String>, ErrorCode)>)>;

fn fetch_group_offsets(
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

fn offset_fetch(
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

fn describe_groups(
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

fn list_groups(st: &State, caller: &Caller, req: m::ListGroupsRequest) -> lgsr::ListGroupsResponse {
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

fn delete_groups(
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

fn consumer_group_heartbeat(
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

fn create_topics(st: &mut State, req: m::CreateTopicsRequest) -> ctr::CreateTopicsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v)))
                .collect();
            let partitions = if t.assignments.is_empty() {
                t.num_partitions
            } else {
                t.assignments.len() as i32
            };
            match st.create_topic(
                &t.name,
                partitions,
                t.replication_factor,
                configs,
                req.validate_only,
            ) {
                Ok((n, rf)) => ctr::CreatableTopicResult {
                    topic_id: st.topics.get(&t.name).map_or(Uuid::ZERO, |x| x.id),
                    name: t.name,
                    num_partitions: n,
                    replication_factor: rf,
                    ..Default::default()
                },
                Err((code, message)) => ctr::CreatableTopicResult {
                    name: t.name,
                    error_code: code.code(),
                    error_message: Some(message),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                },
            }
        })
        .collect();
    ctr::CreateTopicsResponse {
        topics,
        ..Default::default()
    }
}

fn delete_topics(st: &mut State, v: i16, req: m::DeleteTopicsRequest) -> dtr::DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if v >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::ZERO))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| st.topic_name(id).map(str::to_string));
            let removed = name.as_ref().and_then(|n| st.topics.remove(n));
            let code = match &removed {
                Some(_) => ErrorCode::None,
                None if name.is_none() => ErrorCode::UnknownTopicId,
                None => ErrorCode::UnknownTopicOrPartition,
            };
            dtr::DeletableTopicResult {
                name: if v >= 6 || name.is_some() {
                    name
                } else {
                    Some(String::new())
                },
                topic_id: if v >= 6 {
                    removed.as_ref().map_or(id, |t| t.id)
                } else {
                    Uuid::ZERO
                },
                error_code: code.code(),
                ..Default::default()
            }
        })
        .collect();
    dtr::DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}

fn create_partitions(
    st: &mut State,
    req: m::CreatePartitionsRequest,
) -> cpr::CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let mut out = cpr::CreatePartitionsTopicResult {
                name: t.name.clone(),
                ..Default::default()
            };
            let Some(mut topic) = st.topics.remove(&t.name) else {
                out.error_code = ErrorCode::UnknownTopicOrPartition.code();
                out.error_message = Some(format!("The topic '{}' does not exist.", t.name));
                return out;
            };
            let current = topic.partitions.len() as i32;
            if t.count <= current || t.count > st.config.max_partitions_per_topic {
                out.error_code = ErrorCode::InvalidPartitions.code();
                out.error_message = Some(format!("Topic currently has {current} partitions, which is higher than or equal to the requested {}.", t.count));
            } else if !req.validate_only {
                st.add_partitions(&mut topic, t.count);
            }
            st.topics.insert(t.name, topic);
            out
        })
        .collect();
    cpr::CreatePartitionsResponse {
        results,
        ..Default::default()
    }
}

fn describe_cluster(st: &State, req: m::DescribeClusterRequest) -> dcr::DescribeClusterResponse {
    if req.endpoint_type > 1 {
        return dcr::DescribeClusterResponse {
            error_code: ErrorCode::UnsupportedEndpointType.code(),
            ..Default::default()
        };
    }
    let live: Vec<&crate::state::BrokerInfo> = st.live_brokers().collect();
    dcr::DescribeClusterResponse {
        cluster_id: st.config.cluster_id.clone(),
        controller_id: live.first().map_or(-1, |b| b.id),
        brokers: live
            .iter()
            .map(|b| dcr::DescribeClusterBroker {
                broker_id: b.id,
                host: b.host.clone(),
                port: i32::from(b.port),
                rack: b.rack.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Broker configs the mock reports.
const BROKER_CONFIGS: &[(&str, &str)] = &[
    ("auto.create.topics.enable", "true"),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("message.max.bytes", "1048588"),
    ("group.initial.rebalance.delay.ms", "0"),
];

fn describe_configs(st: &State, req: m::DescribeConfigsRequest) -> dcfr::DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let entries: Vec<(String, String)> = match r.resource_type {
                2 => match st.topics.get(&r.resource_name) {
                    None => {
                        return dcfr::DescribeConfigsResult {
                            error_code: ErrorCode::UnknownTopicOrPartition.code(),
                            error_message: Some(format!(
                                "Topic {} does not exist.",
                                r.resource_name
                            )),
                            resource_type: r.resource_type,
                            resource_name: r.resource_name,
                            ..Default::default()
                        };
                    }
                    Some(topic) => {
                        let mut keys: BTreeSet<String> = TOPIC_DEFAULTS
                            .iter()
                            .map(|(k, _)| (*k).to_string())
                            .collect();
                        keys.extend(topic.configs.keys().cloned());
                        keys.into_iter()
                            .filter_map(|k| st.topic_config(topic, &k).map(|v| (k, v)))
                            .collect()
                    }
                },
                4 => BROKER_CONFIGS
                    .iter()
                    .map(|(k, v)| {
                        let v = if *k == "auto.create.topics.enable" {
                            st.config.auto_create_topics.to_string()
                        } else if *k == "num.partitions" {
                            st.config.default_partitions.to_string()
                        } else {
                            (*v).to_string()
                        };
                        ((*k).to_string(), v)
                    })
                    .collect(),
                _ => {
                    return dcfr::DescribeConfigsResult {
                        error_code: ErrorCode::InvalidRequest.code(),
                        error_message: Some(
                            "The mock describes topic and broker configs only.".into(),
                        ),
                        resource_type: r.resource_type,
                        resource_name: r.resource_name,
                        ..Default::default()
                    };
                }
            };
            let configs = entries
                .into_iter()
                .filter(|(k, _)| {
                    r.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.contains(k))
                })
                .map(|(name, value)| dcfr::DescribeConfigsResourceResult {
                    name,
                    value: Some(value),
                    read_only: r.resource_type == 4,
                    config_source: 5,
                    ..Default::default()
                })
                .collect();
            dcfr::DescribeConfigsResult {
                resource_type: r.resource_type,
                resource_name: r.resource_name,
                configs,
                ..Default::default()
            }
        })
        .collect();
    dcfr::DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}

fn init_producer_id(
    st: &mut State,
    caller: &Caller,
    req: m::InitProducerIdRequest,
) -> m::InitProducerIdResponse {
    if let Some(txn) = &req.transactional_id
        && !st.coordinates(caller.broker, txn)
    {
        return m::InitProducerIdResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        };
    }
    match st.init_producer_id(
        req.transactional_id.as_deref(),
        req.transaction_timeout_ms,
        req.producer_id,
        req.producer_epoch,
        Instant::now(),
    ) {
        Ok((producer_id, producer_epoch)) => m::InitProducerIdResponse {
            producer_id,
            producer_epoch,
            ..Default::default()
        },
        Err(code) => m::InitProducerIdResponse {
            error_code: code.code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    }
}

fn add_partitions_to_txn(
    st: &mut State,
    caller: &Caller,
    req: m::AddPartitionsToTxnRequest,
) -> aptr::AddPartitionsToTxnResponse {
    let partitions: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), *p)))
        .collect();
    let results = if st.coordinates(caller.broker, &req.v3_and_below_transactional_id) {
        st.add_partitions_to_txn(
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            &partitions,
            Instant::now(),
        )
    } else {
        partitions
            .into_iter()
            .map(|tp| (tp, ErrorCode::NotCoordinator))
            .collect()
    };
    let mut by_topic: BTreeMap<String, Vec<aptr::AddPartitionsToTxnPartitionResult>> =
        BTreeMap::new();
    for ((topic, partition), code) in results {
        by_topic
            .entry(topic)
            .or_default()
            .push(aptr::AddPartitionsToTxnPartitionResult {
                partition_index: partition,
                partition_error_code: code.code(),
                ..Default::default()
            });
    }
    aptr::AddPartitionsToTxnResponse {
        results_by_topic_v3_and_below: by_topic
            .into_iter()
            .map(
                |(name, results_by_partition)| aptr::AddPartitionsToTxnTopicResult {
                    name,
                    results_by_partition,
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    }
}

fn txn_offset_commit(
    st: &mut State,
    caller: &Caller,
    req: m::TxnOffsetCommitRequest,
) -> tocr::TxnOffsetCommitResponse {
    let offsets: Vec<((String, i32), Committed)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.clone(), p.partition_index),
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.clone(),
                    },
                )
            })
        })
        .collect();
    let code = match group_check(st, caller, &req.group_id) {
        Err(code) => code,
        Ok(()) => st.txn_offset_commit(
            &req.transactional_id,
            &req.group_id,
            req.producer_id,
            req.producer_epoch,
            req.generation_id,
            &req.member_id,
            offsets,
            Instant::now(),
        ),
    };
    tocr::TxnOffsetCommitResponse {
        topics: req
            .topics
            .into_iter()
            .map(|t| tocr::TxnOffsetCommitResponseTopic {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| tocr::TxnOffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: code.code(),
                        ..Default::default()
                    })
                    .collect(),
                name: t.name,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
