//! Metadata and the admin APIs: topics, partitions, cluster and configs.

use super::*;

pub(super) fn metadata(
    st: &mut State,
    caller: &Caller,
    req: m::MetadataRequest,
) -> mr::MetadataResponse {
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

pub(super) fn topic_metadata(st: &State, name: &str, v: i16) -> mr::MetadataResponseTopic {
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

pub(super) fn create_topics(
    st: &mut State,
    req: m::CreateTopicsRequest,
) -> ctr::CreateTopicsResponse {
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

pub(super) fn delete_topics(
    st: &mut State,
    v: i16,
    req: m::DeleteTopicsRequest,
) -> dtr::DeleteTopicsResponse {
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

pub(super) fn create_partitions(
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

pub(super) fn describe_cluster(
    st: &State,
    req: m::DescribeClusterRequest,
) -> dcr::DescribeClusterResponse {
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
pub(super) const BROKER_CONFIGS: &[(&str, &str)] = &[
    ("auto.create.topics.enable", "true"),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("message.max.bytes", "1048588"),
    ("group.initial.rebalance.delay.ms", "0"),
];

pub(super) fn describe_configs(
    st: &State,
    req: m::DescribeConfigsRequest,
) -> dcfr::DescribeConfigsResponse {
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
