//! Answers that carry one error code everywhere, for control hooks: the
//! request is not served, every partition or group in the answer gets the
//! code. Mirrors Java's `AbstractRequest.getErrorResponse`.

use franz_protocol::ErrorCode;
use franz_protocol::messages::{
    self as m, AnyRequest, AnyResponse, add_partitions_to_txn_response as aptr,
    fetch_response as fr, list_offsets_response as lor, metadata_response as mr,
    offset_commit_response as ocr, offset_fetch_response as ofr,
    offset_for_leader_epoch_response as oflr, produce_response as pr,
    txn_offset_commit_response as tocr,
};

/// The error answer to `req`, or `None` for APIs without an error field.
pub(crate) fn error_response(
    req: &AnyRequest,
    version: i16,
    code: ErrorCode,
) -> Option<AnyResponse> {
    let e = code.code();
    let resp = match req {
        AnyRequest::Produce(r) => AnyResponse::Produce(pr::ProduceResponse {
            responses: r
                .topic_data
                .iter()
                .map(|t| pr::TopicProduceResponse {
                    name: t.name.clone(),
                    partition_responses: t
                        .partition_data
                        .iter()
                        .map(|p| pr::PartitionProduceResponse {
                            index: p.index,
                            error_code: e,
                            base_offset: -1,
                            log_append_time_ms: -1,
                            log_start_offset: -1,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::Fetch(r) => AnyResponse::Fetch(fr::FetchResponse {
            responses: r
                .topics
                .iter()
                .map(|t| fr::FetchableTopicResponse {
                    topic: t.topic.clone(),
                    topic_id: t.topic_id,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| fr::PartitionData {
                            partition_index: p.partition,
                            error_code: e,
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                            preferred_read_replica: -1,
                            records: Some(bytes::Bytes::new()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::ListOffsets(r) => AnyResponse::ListOffsets(lor::ListOffsetsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| lor::ListOffsetsTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| lor::ListOffsetsPartitionResponse {
                            partition_index: p.partition_index,
                            error_code: e,
                            timestamp: -1,
                            offset: -1,
                            leader_epoch: -1,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::Metadata(r) => AnyResponse::Metadata(mr::MetadataResponse {
            topics: r
                .topics
                .iter()
                .flatten()
                .map(|t| mr::MetadataResponseTopic {
                    error_code: e,
                    name: t.name.clone(),
                    topic_id: if version >= 10 {
                        t.topic_id
                    } else {
                        Default::default()
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::OffsetCommit(r) => AnyResponse::OffsetCommit(ocr::OffsetCommitResponse {
            topics: r
                .topics
                .iter()
                .map(|t| ocr::OffsetCommitResponseTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| ocr::OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: e,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::OffsetFetch(r) => AnyResponse::OffsetFetch(if version >= 8 {
            ofr::OffsetFetchResponse {
                groups: r
                    .groups
                    .iter()
                    .map(|g| ofr::OffsetFetchResponseGroup {
                        group_id: g.group_id.clone(),
                        error_code: e,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        } else {
            ofr::OffsetFetchResponse {
                error_code: e,
                ..Default::default()
            }
        }),
        AnyRequest::TxnOffsetCommit(r) => {
            AnyResponse::TxnOffsetCommit(tocr::TxnOffsetCommitResponse {
                topics: r
                    .topics
                    .iter()
                    .map(|t| tocr::TxnOffsetCommitResponseTopic {
                        name: t.name.clone(),
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| tocr::TxnOffsetCommitResponsePartition {
                                partition_index: p.partition_index,
                                error_code: e,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
        AnyRequest::AddPartitionsToTxn(r) => {
            AnyResponse::AddPartitionsToTxn(aptr::AddPartitionsToTxnResponse {
                results_by_topic_v3_and_below: r
                    .v3_and_below_topics
                    .iter()
                    .map(|t| aptr::AddPartitionsToTxnTopicResult {
                        name: t.name.clone(),
                        results_by_partition: t
                            .partitions
                            .iter()
                            .map(|p| aptr::AddPartitionsToTxnPartitionResult {
                                partition_index: *p,
                                partition_error_code: e,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
        AnyRequest::OffsetForLeaderEpoch(r) => {
            AnyResponse::OffsetForLeaderEpoch(oflr::OffsetForLeaderEpochResponse {
                topics: r
                    .topics
                    .iter()
                    .map(|t| oflr::OffsetForLeaderTopicResult {
                        topic: t.topic.clone(),
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| oflr::EpochEndOffset {
                                partition: p.partition,
                                error_code: e,
                                leader_epoch: -1,
                                end_offset: -1,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
        AnyRequest::FindCoordinator(r) => AnyResponse::FindCoordinator(if version >= 4 {
            m::FindCoordinatorResponse {
                coordinators: r
                    .coordinator_keys
                    .iter()
                    .map(|k| m::find_coordinator_response::Coordinator {
                        key: k.clone(),
                        node_id: -1,
                        port: -1,
                        error_code: e,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        } else {
            m::FindCoordinatorResponse {
                error_code: e,
                node_id: -1,
                port: -1,
                ..Default::default()
            }
        }),
        AnyRequest::JoinGroup(r) => AnyResponse::JoinGroup(m::JoinGroupResponse {
            error_code: e,
            generation_id: -1,
            protocol_name: if version >= 7 {
                None
            } else {
                Some(String::new())
            },
            member_id: r.member_id.clone(),
            ..Default::default()
        }),
        AnyRequest::SyncGroup(_) => AnyResponse::SyncGroup(m::SyncGroupResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::Heartbeat(_) => AnyResponse::Heartbeat(m::HeartbeatResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::LeaveGroup(_) => AnyResponse::LeaveGroup(m::LeaveGroupResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::ConsumerGroupHeartbeat(_) => {
            AnyResponse::ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatResponse {
                error_code: e,
                member_epoch: -1,
                ..Default::default()
            })
        }
        AnyRequest::InitProducerId(_) => AnyResponse::InitProducerId(m::InitProducerIdResponse {
            error_code: e,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        }),
        AnyRequest::AddOffsetsToTxn(_) => {
            AnyResponse::AddOffsetsToTxn(m::AddOffsetsToTxnResponse {
                error_code: e,
                ..Default::default()
            })
        }
        AnyRequest::EndTxn(_) => AnyResponse::EndTxn(m::EndTxnResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::CreateTopics(r) => AnyResponse::CreateTopics(m::CreateTopicsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| m::create_topics_response::CreatableTopicResult {
                    name: t.name.clone(),
                    error_code: e,
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::DeleteGroups(r) => AnyResponse::DeleteGroups(m::DeleteGroupsResponse {
            results: r
                .groups_names
                .iter()
                .map(|g| m::delete_groups_response::DeletableGroupResult {
                    group_id: g.clone(),
                    error_code: e,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::ListGroups(_) => AnyResponse::ListGroups(m::ListGroupsResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::DescribeCluster(_) => {
            AnyResponse::DescribeCluster(m::DescribeClusterResponse {
                error_code: e,
                ..Default::default()
            })
        }
        AnyRequest::ApiVersions(_) => AnyResponse::ApiVersions(m::ApiVersionsResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::SaslHandshake(_) => AnyResponse::SaslHandshake(m::SaslHandshakeResponse {
            error_code: e,
            ..Default::default()
        }),
        AnyRequest::SaslAuthenticate(_) => {
            AnyResponse::SaslAuthenticate(m::SaslAuthenticateResponse {
                error_code: e,
                ..Default::default()
            })
        }
        _ => return None,
    };
    Some(resp)
}
