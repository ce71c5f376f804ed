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

mod admin;
mod fetch;
mod groups;
mod produce;
mod txn;

use admin::*;
use fetch::*;
use groups::*;
use produce::*;
use txn::*;

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
