//! `Admin`: topics, partitions, configs, offsets, records, groups, producers
//! and ACLs.
//!
//! Every call that acts on several items returns one result per item
//! ([`PerItem`]), because one topic can fail while the others succeed; only
//! a failure of the whole request (no broker reachable, a timeout) is the
//! outer error. Partition-level calls are split by leader and sent to each
//! leader; group calls go to each group's coordinator.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use franz_protocol::ErrorCode;
use franz_protocol::messages::*;
use franz_protocol::primitives::Uuid;

use crate::client::{Client, ConnectionKind, CoordinatorType};
use crate::error::ClientError;

/// One result per item, in request order.
pub type PerItem<K, T> = Vec<(K, Result<T, ClientError>)>;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A consumer group member as a transaction sees it (KIP-447): the
/// producer sends it with the offsets it commits in a transaction, and the
/// group coordinator refuses the commit if the member is no longer part of
/// that generation (a zombie after a rebalance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation (member epoch under KIP-848); -1 for a group used
    /// only to store offsets.
    pub generation_id: i32,
    /// The member id; empty for a group used only to store offsets.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// A group with no members, used only to store offsets (the broker
    /// checks nothing about generations).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions (-1: the broker default).
    pub partitions: i32,
    /// Replication factor (-1: the broker default).
    pub replication_factor: i16,
    /// Topic configs, e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` and `replication_factor` and no configs.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// A topic in [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Internal topic.
    pub internal: bool,
}

/// A topic in [`Admin::describe_topics`].
pub type TopicDescription = crate::client::TopicMetadata;

/// The cluster in [`Admin::describe_cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: String,
    /// Active controller.
    pub controller_id: i32,
    /// Brokers.
    pub brokers: Vec<crate::client::BrokerInfo>,
}

/// What a config applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigResource {
    /// A topic.
    Topic(String),
    /// A broker, by node id.
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            Self::Topic(t) => (2, t.clone()),
            Self::Broker(b) => (4, b.to_string()),
        }
    }
}

/// One config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Name.
    pub name: String,
    /// Value (`None` for sensitive values and unset ones).
    pub value: Option<String>,
    /// Read-only.
    pub read_only: bool,
    /// Where the value comes from (Kafka's ConfigSource: 1 topic, 4 static
    /// broker, 5 default, ...).
    pub source: i8,
    /// Sensitive (the value is hidden).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the default.
    pub fn is_default(&self) -> bool {
        self.source == 5
    }
}

/// An incremental config change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set a value.
    Set(String, String),
    /// Revert to the default.
    Delete(String),
    /// Append to a list value.
    Append(String, String),
    /// Remove from a list value.
    Subtract(String, String),
}

/// Which offset [`Admin::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the next offset to be written).
    Latest,
    /// The first offset whose timestamp is at or after this (ms).
    Timestamp(i64),
    /// The offset of the record with the largest timestamp.
    MaxTimestamp,
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::MaxTimestamp => -3,
            Self::Timestamp(t) => t,
        }
    }
}

/// An offset found by [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// Offset (-1 when no record matches a timestamp).
    pub offset: i64,
    /// Timestamp of that record (-1 for earliest/latest).
    pub timestamp: i64,
    /// Leader epoch.
    pub leader_epoch: i32,
}

/// A group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...).
    pub state: String,
    /// Type (`classic` or `consumer`).
    pub group_type: String,
}

/// A member in [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub host: String,
    /// Assignment bytes (ConsumerProtocolAssignment for consumer groups).
    pub assignment: bytes::Bytes,
}

/// A group in [`Admin::describe_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (assignor).
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

/// A committed offset and its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    /// Committed offset (-1 when none).
    pub committed: i64,
    /// Commit metadata.
    pub metadata: Option<String>,
    /// The leader epoch of the record before the committed offset, as the
    /// committer sent it (-1 when unknown), for KIP-320 validation.
    pub leader_epoch: i32,
    /// Log end offset (filled by [`Admin::group_lag`]).
    pub end_offset: Option<i64>,
}

impl GroupOffset {
    /// Records the group has yet to consume, when both offsets are known.
    pub fn lag(&self) -> Option<i64> {
        let end = self.end_offset?;
        (self.committed >= 0).then(|| (end - self.committed).max(0))
    }
}

/// A producer in [`Admin::describe_producers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// Producer id.
    pub producer_id: i64,
    /// Epoch.
    pub producer_epoch: i32,
    /// Last sequence written.
    pub last_sequence: i32,
    /// Timestamp of its last write.
    pub last_timestamp: i64,
    /// Start offset of its open transaction (-1 when none).
    pub current_txn_start_offset: i64,
}

/// An ACL binding. Numeric fields use Kafka's codes: resource type (2 topic,
/// 3 group, 4 cluster, 5 transactional id), pattern (3 literal, 4 prefixed,
/// 1 any, 2 match), operation (2 all, 3 read, 4 write, 5 create, 6 delete,
/// 7 alter, 8 describe, ...), permission (3 allow, 2 deny, 1 any).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclBinding {
    /// Resource type.
    pub resource_type: i8,
    /// Resource name (`None` in a filter matches any).
    pub resource_name: Option<String>,
    /// Pattern type.
    pub pattern_type: i8,
    /// Principal, e.g. `User:alice` (`None` in a filter matches any).
    pub principal: Option<String>,
    /// Host (`*` for any; `None` in a filter matches any).
    pub host: Option<String>,
    /// Operation.
    pub operation: i8,
    /// Permission.
    pub permission: i8,
}

/// The admin client; cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_client::ClientError> {
/// use franz_client::{Admin, Client, ClientConfig};
/// use franz_client::admin::NewTopic;
/// let admin = Admin::new(Client::connect(ClientConfig::new("127.0.0.1:9092")).await?);
/// for (name, result) in admin.create_topics(vec![NewTopic::new("orders", 6, 1)], false).await? {
///     println!("{name}: {result:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

fn broker_err(
    context: impl Into<String>,
    code: i16,
    message: Option<String>,
) -> Result<(), ClientError> {
    let code = ErrorCode::from_code(code);
    if code.is_ok() {
        Ok(())
    } else {
        Err(ClientError::Broker {
            context: context.into(),
            code,
            message,
        })
    }
}

impl Admin {
    /// An admin client over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.client.config().default_api_timeout
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.client.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// Every topic (internal ones only when asked).
    pub async fn list_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TopicListing>, ClientError> {
        let md = self
            .client
            .retry("list topics", self.deadline(), || {
                self.client.refresh_all_metadata()
            })
            .await?;
        let mut out: Vec<TopicListing> = md
            .topics
            .values()
            .filter(|t| include_internal || !t.internal)
            .map(|t| TopicListing {
                name: t.name.clone(),
                id: t.id,
                internal: t.internal,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Partitions, leaders, ISRs and ids of each topic.
    pub async fn describe_topics(
        &self,
        names: &[&str],
    ) -> Result<PerItem<String, TopicDescription>, ClientError> {
        let wanted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let md = self
            .client
            .retry("describe topics", self.deadline(), || {
                self.client.refresh_metadata_for(&wanted)
            })
            .await?;
        Ok(wanted
            .into_iter()
            .map(|n| {
                let r = match md.topics.get(&n) {
                    Some(t) if t.error.is_ok() => Ok(t.clone()),
                    Some(t) => Err(ClientError::Broker {
                        context: format!("topic {n}"),
                        code: t.error,
                        message: None,
                    }),
                    None => Err(ClientError::UnknownTopic(n.clone())),
                };
                (n, r)
            })
            .collect())
    }

    /// Creates topics; with `validate_only` the broker only checks them.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<PerItem<String, ()>, ClientError> {
        let req = CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|t| create_topics_request::CreatableTopic {
                    name: t.name.clone(),
                    num_partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    configs: t
                        .configs
                        .iter()
                        .map(|(k, v)| create_topics_request::CreatableTopicConfig {
                            name: k.clone(),
                            value: Some(v.clone()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only,
            ..Default::default()
        };
        let resp = self
            .client
            .retry("create topics", self.deadline(), || {
                self.client.send_any(&req)
            })
            .await?;
        let mut by_name: HashMap<String, Result<(), ClientError>> = resp
            .topics
            .into_iter()
            .map(|t| {
                let r = broker_err(
                    format!("create topic {}", t.name),
                    t.error_code,
                    t.error_message,
                );
                (t.name, r)
            })
            .collect();
        if !validate_only {
            // Wait (within the request timeout) until the new topics show up
            // with leaders, so a produce right after create finds them.
            let names: Vec<String> = topics
                .iter()
                .filter(|t| matches!(by_name.get(&t.name), Some(Ok(()))))
                .map(|t| t.name.clone())
                .collect();
            let until = Instant::now() + self.client.config().request_timeout;
            while !names.is_empty() && Instant::now() < until {
                match self.client.refresh_metadata_for(&names).await {
                    Ok(md)
                        if names.iter().all(|n| {
                            md.topics.get(n).is_some_and(|t| {
                                !t.partitions.is_empty()
                                    && t.partitions.iter().all(|p| p.leader >= 0)
                            })
                        }) =>
                    {
                        break;
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        }
        Ok(topics
            .into_iter()
            .map(|t| {
                let r = by_name
                    .remove(&t.name)
                    .unwrap_or_else(|| Err(missing(&t.name)));
                (t.name, r)
            })
            .collect())
    }

    /// Deletes topics.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<PerItem<String, ()>, ClientError> {
        let req = DeleteTopicsRequest {
            topics: names
                .iter()
                .map(|n| delete_topics_request::DeleteTopicState {
                    name: Some(n.to_string()),
                    ..Default::default()
                })
                .collect(),
            topic_names: names.iter().map(|n| n.to_string()).collect(),
            timeout_ms: self.timeout_ms(),
            ..Default::default()
        };
        let resp = self
            .client
            .retry("delete topics", self.deadline(), || {
                self.client.send_any(&req)
            })
            .await?;
        let mut by_name: HashMap<String, Result<(), ClientError>> = resp
            .responses
            .into_iter()
            .filter_map(|r| {
                let name = r.name?;
                let res = broker_err(
                    format!("delete topic {name}"),
                    r.error_code,
                    r.error_message,
                );
                Some((name, res))
            })
            .collect();
        Ok(names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    by_name.remove(*n).unwrap_or_else(|| Err(missing(n))),
                )
            })
            .collect())
    }

    /// Raises each topic's partition count to the given total.
    pub async fn create_partitions(
        &self,
        totals: &[(&str, i32)],
        validate_only: bool,
    ) -> Result<PerItem<String, ()>, ClientError> {
        let req = CreatePartitionsRequest {
            topics: totals
                .iter()
                .map(|(t, n)| create_partitions_request::CreatePartitionsTopic {
                    name: t.to_string(),
                    count: *n,
                    assignments: None,
                    ..Default::default()
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only,
            ..Default::default()
        };
        let resp = self
            .client
            .retry("create partitions", self.deadline(), || {
                self.client.send_any(&req)
            })
            .await?;
        let mut by_name: HashMap<String, Result<(), ClientError>> = resp
            .results
            .into_iter()
            .map(|r| {
                let res = broker_err(
                    format!("create partitions for {}", r.name),
                    r.error_code,
                    r.error_message,
                );
                (r.name, res)
            })
            .collect();
        let names: Vec<String> = totals.iter().map(|(t, _)| t.to_string()).collect();
        if !validate_only {
            let _ = self.client.refresh_metadata_for(&names).await;
        }
        Ok(names
            .into_iter()
            .map(|n| {
                let r = by_name.remove(&n).unwrap_or_else(|| Err(missing(&n)));
                (n, r)
            })
            .collect())
    }

    /// Cluster id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        let req = DescribeClusterRequest::default();
        let resp = self
            .client
            .retry("describe cluster", self.deadline(), || {
                self.client.send_any(&req)
            })
            .await?;
        broker_err("describe cluster", resp.error_code, resp.error_message)?;
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id,
            controller_id: resp.controller_id,
            brokers: resp
                .brokers
                .into_iter()
                .map(|b| crate::client::BrokerInfo {
                    node_id: b.broker_id,
                    host: b.host,
                    port: u16::try_from(b.port).unwrap_or(0),
                    rack: b.rack,
                })
                .collect(),
        })
    }

    /// Every config of each resource. Broker configs are asked of that
    /// broker, topic configs of any broker.
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<PerItem<ConfigResource, Vec<ConfigEntry>>, ClientError> {
        let mut out = Vec::new();
        for res in resources {
            let (resource_type, resource_name) = res.wire();
            let req = DescribeConfigsRequest {
                resources: vec![describe_configs_request::DescribeConfigsResource {
                    resource_type,
                    resource_name,
                    configuration_keys: None,
                    ..Default::default()
                }],
                ..Default::default()
            };
            let sent = self
                .client
                .retry("describe configs", self.deadline(), || async {
                    match res {
                        ConfigResource::Broker(id) => {
                            self.client.send_to(*id, ConnectionKind::Other, &req).await
                        }
                        ConfigResource::Topic(_) => self.client.send_any(&req).await,
                    }
                })
                .await;
            let r = sent.and_then(|resp| {
                let r = resp
                    .results
                    .into_iter()
                    .next()
                    .ok_or_else(|| missing("config resource"))?;
                broker_err(
                    format!("describe configs {res:?}"),
                    r.error_code,
                    r.error_message,
                )?;
                Ok(r.configs
                    .into_iter()
                    .map(|c| ConfigEntry {
                        name: c.name,
                        value: c.value,
                        read_only: c.read_only,
                        source: c.config_source,
                        sensitive: c.is_sensitive,
                    })
                    .collect())
            });
            out.push((res.clone(), r));
        }
        Ok(out)
    }

    /// Applies incremental config changes per resource.
    pub async fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
        validate_only: bool,
    ) -> Result<PerItem<ConfigResource, ()>, ClientError> {
        let mut out = Vec::new();
        for (res, ops) in changes {
            let (resource_type, resource_name) = res.wire();
            let req = IncrementalAlterConfigsRequest {
                resources: vec![incremental_alter_configs_request::AlterConfigsResource {
                    resource_type,
                    resource_name,
                    configs: ops
                        .iter()
                        .map(|op| {
                            let (name, operation, value) = match op {
                                AlterConfigOp::Set(k, v) => (k, 0, Some(v.clone())),
                                AlterConfigOp::Delete(k) => (k, 1, None),
                                AlterConfigOp::Append(k, v) => (k, 2, Some(v.clone())),
                                AlterConfigOp::Subtract(k, v) => (k, 3, Some(v.clone())),
                            };
                            incremental_alter_configs_request::AlterableConfig {
                                name: name.clone(),
                                config_operation: operation,
                                value,
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }],
                validate_only,
                ..Default::default()
            };
            let sent = self
                .client
                .retry("alter configs", self.deadline(), || async {
                    match res {
                        ConfigResource::Broker(id) => {
                            self.client.send_to(*id, ConnectionKind::Other, &req).await
                        }
                        ConfigResource::Topic(_) => self.client.send_any(&req).await,
                    }
                })
                .await;
            let r = sent.and_then(|resp| {
                let r = resp
                    .responses
                    .into_iter()
                    .next()
                    .ok_or_else(|| missing("config resource"))?;
                broker_err(
                    format!("alter configs {res:?}"),
                    r.error_code,
                    r.error_message,
                )
            });
            out.push((res.clone(), r));
        }
        Ok(out)
    }

    /// Groups partitions by their leader (refreshing metadata as needed);
    /// partitions without one fail.
    async fn by_leader<V: Clone>(
        &self,
        items: &[(TopicPartition, V)],
    ) -> (
        BTreeMap<i32, Vec<(TopicPartition, V)>>,
        Vec<(TopicPartition, ClientError)>,
    ) {
        let mut groups: BTreeMap<i32, Vec<(TopicPartition, V)>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (tp, v) in items {
            match self.client.topic_metadata(&tp.topic).await {
                Ok(t) => match t.partitions.iter().find(|p| p.partition == tp.partition) {
                    Some(p) if p.leader >= 0 => groups
                        .entry(p.leader)
                        .or_default()
                        .push((tp.clone(), v.clone())),
                    Some(_) => {
                        failed.push((tp.clone(), broker_code(tp, ErrorCode::LeaderNotAvailable)));
                    }
                    None => failed.push((
                        tp.clone(),
                        broker_code(tp, ErrorCode::UnknownTopicOrPartition),
                    )),
                },
                Err(e) => failed.push((tp.clone(), e)),
            }
        }
        (groups, failed)
    }

    /// Sends one request per partition leader and gathers one result per
    /// partition, in the order asked. `request` builds a leader's request
    /// from its partitions, grouped by topic; `read` turns the response into
    /// per-partition results. A request that fails fails its partitions.
    async fn per_leader<V: Clone, R: franz_protocol::Request, T>(
        &self,
        items: &[(TopicPartition, V)],
        request: impl Fn(Vec<(String, Vec<(i32, V)>)>) -> R,
        read: impl Fn(R::Response) -> Vec<(TopicPartition, Result<T, ClientError>)>,
    ) -> PerItem<TopicPartition, T> {
        let (groups, failed) = self.by_leader(items).await;
        let mut results: HashMap<TopicPartition, Result<T, ClientError>> =
            failed.into_iter().map(|(tp, e)| (tp, Err(e))).collect();
        for (leader, items) in groups {
            let mut topics: BTreeMap<String, Vec<(i32, V)>> = BTreeMap::new();
            for (tp, v) in &items {
                topics
                    .entry(tp.topic.clone())
                    .or_default()
                    .push((tp.partition, v.clone()));
            }
            let req = request(topics.into_iter().collect());
            match self
                .client
                .send_to(leader, ConnectionKind::Other, &req)
                .await
            {
                Ok(resp) => results.extend(read(resp)),
                Err(e) => {
                    for (tp, _) in items {
                        results.insert(tp, Err(e.clone()));
                    }
                }
            }
        }
        collect_in_order(items.iter().map(|(tp, _)| tp), results)
    }

    /// Earliest, latest or by-timestamp offsets, asked of each leader
    /// (read-uncommitted: latest is the high watermark).
    pub async fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
    ) -> Result<PerItem<TopicPartition, ListedOffset>, ClientError> {
        self.list_offsets_isolated(partitions, 0).await
    }

    /// [`list_offsets`](Self::list_offsets) at an isolation level (0
    /// read-uncommitted, 1 read-committed: latest is the last stable
    /// offset, before any open transaction).
    pub async fn list_offsets_isolated(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
        isolation_level: i8,
    ) -> Result<PerItem<TopicPartition, ListedOffset>, ClientError> {
        let timeout_ms = self.timeout_ms();
        let request = |topics: Vec<(String, Vec<(i32, OffsetSpec)>)>| ListOffsetsRequest {
            replica_id: -1,
            isolation_level,
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| list_offsets_request::ListOffsetsTopic {
                        name,
                        partitions: partitions
                            .into_iter()
                            .map(|(partition_index, spec)| {
                                list_offsets_request::ListOffsetsPartition {
                                    partition_index,
                                    timestamp: spec.wire(),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
                .collect(),
            timeout_ms,
            ..Default::default()
        };
        let read = |resp: ListOffsetsResponse| {
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r =
                        broker_err(format!("list offsets {tp}"), p.error_code, None).map(|()| {
                            ListedOffset {
                                offset: p.offset,
                                timestamp: p.timestamp,
                                leader_epoch: p.leader_epoch,
                            }
                        });
                    out.push((tp, r));
                }
            }
            out
        };
        Ok(self.per_leader(partitions, request, read).await)
    }

    /// Deletes records before the given offsets; returns the new low
    /// watermarks.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<PerItem<TopicPartition, i64>, ClientError> {
        let timeout_ms = self.timeout_ms();
        let request = |topics: Vec<(String, Vec<(i32, i64)>)>| DeleteRecordsRequest {
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| delete_records_request::DeleteRecordsTopic {
                        name,
                        partitions: partitions
                            .into_iter()
                            .map(|(partition_index, offset)| {
                                delete_records_request::DeleteRecordsPartition {
                                    partition_index,
                                    offset,
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
                .collect(),
            timeout_ms,
            ..Default::default()
        };
        let read = |resp: DeleteRecordsResponse| {
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r = broker_err(format!("delete records {tp}"), p.error_code, None)
                        .map(|()| p.low_watermark);
                    out.push((tp, r));
                }
            }
            out
        };
        Ok(self.per_leader(before, request, read).await)
    }

    /// Every group on every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let md = self.client.refresh_metadata_for(&[]).await?;
        let mut out = Vec::new();
        let req = ListGroupsRequest::default();
        for id in md.brokers.keys() {
            let resp = self
                .client
                .retry("list groups", self.deadline(), || {
                    self.client.send_to(*id, ConnectionKind::Other, &req)
                })
                .await?;
            broker_err(format!("list groups on broker {id}"), resp.error_code, None)?;
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                state: g.group_state,
                group_type: g.group_type,
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Describes groups (each asked of its coordinator).
    pub async fn describe_groups(
        &self,
        ids: &[&str],
    ) -> Result<PerItem<String, GroupDescription>, ClientError> {
        let mut out = Vec::new();
        for id in ids {
            let r = self
                .with_coordinator(id, |conn| async move {
                    let resp = conn
                        .send(&DescribeGroupsRequest {
                            groups: vec![id.to_string()],
                            ..Default::default()
                        })
                        .await?;
                    let g = resp.groups.into_iter().next().ok_or_else(|| missing(id))?;
                    broker_err(format!("describe group {id}"), g.error_code, None)?;
                    Ok(GroupDescription {
                        group_id: g.group_id,
                        state: g.group_state,
                        protocol_type: g.protocol_type,
                        protocol: g.protocol_data,
                        members: g
                            .members
                            .into_iter()
                            .map(|m| GroupMember {
                                member_id: m.member_id,
                                instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                host: m.client_host,
                                assignment: m.member_assignment,
                            })
                            .collect(),
                    })
                })
                .await;
            out.push((id.to_string(), r));
        }
        Ok(out)
    }

    /// Deletes (empty) groups.
    pub async fn delete_groups(&self, ids: &[&str]) -> Result<PerItem<String, ()>, ClientError> {
        let mut out = Vec::new();
        for id in ids {
            let r = self
                .with_coordinator(id, |conn| async move {
                    let resp = conn
                        .send(&DeleteGroupsRequest {
                            groups_names: vec![id.to_string()],
                            ..Default::default()
                        })
                        .await?;
                    let g = resp.results.into_iter().next().ok_or_else(|| missing(id))?;
                    broker_err(format!("delete group {id}"), g.error_code, None)
                })
                .await;
            out.push((id.to_string(), r));
        }
        Ok(out)
    }

    /// Runs `op` against the group's coordinator, re-finding it when the
    /// broker says it moved.
    async fn with_coordinator<T, F, Fut>(&self, group: &str, op: F) -> Result<T, ClientError>
    where
        F: Fn(crate::connection::BrokerConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.client
            .retry("group coordinator request", self.deadline(), || async {
                let conn = self
                    .client
                    .coordinator_connection(CoordinatorType::Group, group)
                    .await?;
                let r = op(conn).await;
                if let Err(e) = &r
                    && (e.invalidates_metadata()
                        || e.code() == Some(ErrorCode::CoordinatorLoadInProgress))
                {
                    self.client
                        .invalidate_coordinator(CoordinatorType::Group, group);
                }
                r
            })
            .await
    }

    /// A group's committed offsets (all partitions it has committed).
    ///
    /// Asks for stable offsets only (`require_stable`, as Java's consumer
    /// always does): while a transaction that commits offsets for the group
    /// is open, the broker answers UNSTABLE_OFFSET_COMMIT, which is
    /// retriable and retried here until the transaction ends, so a
    /// consumer never starts from an offset that is about to be aborted.
    pub async fn list_group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, GroupOffset>, ClientError> {
        self.with_coordinator(group, |conn| async move {
            let version = conn.version_of::<OffsetFetchRequest>()?;
            let req = if version >= 8 {
                OffsetFetchRequest {
                    groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
                        group_id: group.to_string(),
                        topics: None,
                        ..Default::default()
                    }],
                    require_stable: true,
                    ..Default::default()
                }
            } else {
                OffsetFetchRequest {
                    group_id: group.to_string(),
                    topics: None,
                    require_stable: version >= 7,
                    ..Default::default()
                }
            };
            let resp = conn.send(&req).await?;
            let mut out = BTreeMap::new();
            if version >= 8 {
                let g = resp
                    .groups
                    .into_iter()
                    .next()
                    .ok_or_else(|| missing(group))?;
                broker_err(format!("offsets of group {group}"), g.error_code, None)?;
                for t in g.topics {
                    for p in t.partitions {
                        broker_err(
                            format!("offset of {}-{}", t.name, p.partition_index),
                            p.error_code,
                            None,
                        )?;
                        out.insert(
                            TopicPartition::new(t.name.clone(), p.partition_index),
                            GroupOffset {
                                committed: p.committed_offset,
                                metadata: p.metadata,
                                leader_epoch: p.committed_leader_epoch,
                                end_offset: None,
                            },
                        );
                    }
                }
            } else {
                broker_err(format!("offsets of group {group}"), resp.error_code, None)?;
                for t in resp.topics {
                    for p in t.partitions {
                        out.insert(
                            TopicPartition::new(t.name.clone(), p.partition_index),
                            GroupOffset {
                                committed: p.committed_offset,
                                metadata: p.metadata,
                                leader_epoch: p.committed_leader_epoch,
                                end_offset: None,
                            },
                        );
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// A group's committed offsets with the log end offsets, so
    /// [`GroupOffset::lag`] is known.
    pub async fn group_lag(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, GroupOffset>, ClientError> {
        let mut offsets = self.list_group_offsets(group).await?;
        let specs: Vec<(TopicPartition, OffsetSpec)> = offsets
            .keys()
            .map(|tp| (tp.clone(), OffsetSpec::Latest))
            .collect();
        for (tp, r) in self.list_offsets(&specs).await? {
            if let (Ok(listed), Some(o)) = (r, offsets.get_mut(&tp)) {
                o.end_offset = Some(listed.offset);
            }
        }
        Ok(offsets)
    }

    /// Sets a group's committed offsets (the group must have no active
    /// members, as with the Java admin client).
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<PerItem<TopicPartition, ()>, ClientError> {
        let mut topics: BTreeMap<String, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(tp.topic.clone()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: *offset,
                    committed_metadata: Some(String::new()),
                    ..Default::default()
                },
            );
        }
        let req = OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id_or_member_epoch: -1,
            member_id: String::new(),
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| offset_commit_request::OffsetCommitRequestTopic {
                        name,
                        partitions,
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let resp = self
            .with_coordinator(group, |conn| {
                let req = req.clone();
                async move { conn.send(&req).await }
            })
            .await?;
        let mut results = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                let r = broker_err(format!("commit {tp} for {group}"), p.error_code, None);
                results.insert(tp, r);
            }
        }
        Ok(collect_in_order(offsets.iter().map(|(tp, _)| tp), results))
    }

    /// Resets a group's offsets on these partitions to earliest, latest or a
    /// timestamp.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        to: OffsetSpec,
    ) -> Result<PerItem<TopicPartition, ()>, ClientError> {
        let specs: Vec<(TopicPartition, OffsetSpec)> =
            partitions.iter().map(|tp| (tp.clone(), to)).collect();
        let mut targets = Vec::new();
        let mut out = Vec::new();
        for (tp, r) in self.list_offsets(&specs).await? {
            match r {
                Ok(listed) => {
                    // No record at/after the timestamp: go to the end.
                    let offset = if listed.offset < 0 {
                        self.list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
                            .await?
                            .into_iter()
                            .next()
                            .and_then(|(_, r)| r.ok())
                            .map_or(0, |l| l.offset)
                    } else {
                        listed.offset
                    };
                    targets.push((tp, offset));
                }
                Err(e) => out.push((tp, Err(e))),
            }
        }
        out.extend(self.alter_group_offsets(group, &targets).await?);
        Ok(out)
    }

    /// Active idempotent and transactional producers per partition.
    pub async fn describe_producers(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<PerItem<TopicPartition, Vec<ProducerState>>, ClientError> {
        let items: Vec<(TopicPartition, ())> =
            partitions.iter().map(|tp| (tp.clone(), ())).collect();
        let request = |topics: Vec<(String, Vec<(i32, ())>)>| DescribeProducersRequest {
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| describe_producers_request::TopicRequest {
                        name,
                        partition_indexes: partitions.into_iter().map(|(p, ())| p).collect(),
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let read = |resp: DescribeProducersResponse| {
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r = broker_err(
                        format!("describe producers {tp}"),
                        p.error_code,
                        p.error_message,
                    )
                    .map(|()| {
                        p.active_producers
                            .into_iter()
                            .map(|s| ProducerState {
                                producer_id: s.producer_id,
                                producer_epoch: s.producer_epoch,
                                last_sequence: s.last_sequence,
                                last_timestamp: s.last_timestamp,
                                current_txn_start_offset: s.current_txn_start_offset,
                            })
                            .collect()
                    });
                    out.push((tp, r));
                }
            }
            out
        };
        Ok(self.per_leader(&items, request, read).await)
    }

    /// ACLs matching `filter` (`None` fields match anything).
    pub async fn describe_acls(&self, filter: &AclBinding) -> Result<Vec<AclBinding>, ClientError> {
        let req = DescribeAclsRequest {
            resource_type_filter: filter.resource_type,
            resource_name_filter: filter.resource_name.clone(),
            pattern_type_filter: filter.pattern_type,
            principal_filter: filter.principal.clone(),
            host_filter: filter.host.clone(),
            operation: filter.operation,
            permission_type: filter.permission,
            ..Default::default()
        };
        let resp = self
            .client
            .retry("describe ACLs", self.deadline(), || {
                self.client.send_any(&req)
            })
            .await?;
        broker_err("describe ACLs", resp.error_code, resp.error_message)?;
        Ok(resp
            .resources
            .into_iter()
            .flat_map(|r| {
                let (rt, name, pt) = (r.resource_type, r.resource_name, r.pattern_type);
                r.acls.into_iter().map(move |a| AclBinding {
                    resource_type: rt,
                    resource_name: Some(name.clone()),
                    pattern_type: pt,
                    principal: Some(a.principal),
                    host: Some(a.host),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Creates ACL bindings. Bindings that cannot be created (a filter-only
    /// value such as ANY, or UNKNOWN) are rejected per item before sending:
    /// the broker would refuse the whole request and close the connection.
    pub async fn create_acls(
        &self,
        bindings: &[AclBinding],
    ) -> Result<PerItem<AclBinding, ()>, ClientError> {
        let invalid = |b: &AclBinding| -> Option<&'static str> {
            if b.resource_type < 2 {
                Some("resource type must be concrete (not UNKNOWN or ANY)")
            } else if !matches!(b.pattern_type, 3 | 4) {
                Some("pattern type must be LITERAL (3) or PREFIXED (4)")
            } else if b.operation < 2 {
                Some("operation must be concrete (not UNKNOWN or ANY)")
            } else if !matches!(b.permission, 2 | 3) {
                Some("permission must be DENY (2) or ALLOW (3)")
            } else if b.resource_name.as_deref().is_none_or(str::is_empty)
                || b.principal.as_deref().is_none_or(str::is_empty)
            {
                Some("resource name and principal are required")
            } else {
                None
            }
        };
        let valid: Vec<&AclBinding> = bindings.iter().filter(|b| invalid(b).is_none()).collect();
        let mut sent_results = Vec::new();
        if !valid.is_empty() {
            let req = CreateAclsRequest {
                creations: valid
                    .iter()
                    .map(|b| create_acls_request::AclCreation {
                        resource_type: b.resource_type,
                        resource_name: b.resource_name.clone().unwrap_or_default(),
                        resource_pattern_type: b.pattern_type,
                        principal: b.principal.clone().unwrap_or_default(),
                        host: b.host.clone().unwrap_or_else(|| "*".into()),
                        operation: b.operation,
                        permission_type: b.permission,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let resp = self
                .client
                .retry("create ACLs", self.deadline(), || {
                    self.client.send_any(&req)
                })
                .await?;
            sent_results = resp.results;
        }
        let mut sent = sent_results.into_iter();
        Ok(bindings
            .iter()
            .map(|b| {
                let res = match invalid(b) {
                    Some(why) => Err(ClientError::Config(format!("invalid ACL binding: {why}"))),
                    None => match sent.next() {
                        Some(r) => broker_err("create ACL", r.error_code, r.error_message),
                        None => Err(missing("ACL creation result")),
                    },
                };
                (b.clone(), res)
            })
            .collect())
    }

    /// Deletes the ACLs matching each filter; returns what each deleted.
    pub async fn delete_acls(
        &self,
        filters: &[AclBinding],
    ) -> Result<PerItem<AclBinding, Vec<AclBinding>>, ClientError> {
        let req = DeleteAclsRequest {
            filters: filters
                .iter()
                .map(|f| delete_acls_request::DeleteAclsFilter {
                    resource_type_filter: f.resource_type,
                    resource_name_filter: f.resource_name.clone(),
                    pattern_type_filter: f.pattern_type,
                    principal_filter: f.principal.clone(),
                    host_filter: f.host.clone(),
                    operation: f.operation,
                    permission_type: f.permission,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let resp = self
            .client
            .retry("delete ACLs", self.deadline(), || {
                self.client.send_any(&req)
            })
            .await?;
        let mut results = resp.filter_results.into_iter();
        Ok(filters
            .iter()
            .map(|f| {
                let res = match results.next() {
                    None => Err(missing("ACL deletion result")),
                    Some(r) => broker_err("delete ACLs", r.error_code, r.error_message).map(|()| {
                        r.matching_acls
                            .into_iter()
                            .map(|m| AclBinding {
                                resource_type: m.resource_type,
                                resource_name: Some(m.resource_name),
                                pattern_type: m.pattern_type,
                                principal: Some(m.principal),
                                host: Some(m.host),
                                operation: m.operation,
                                permission: m.permission_type,
                            })
                            .collect()
                    }),
                };
                (f.clone(), res)
            })
            .collect())
    }
}

fn missing(what: &str) -> ClientError {
    ClientError::Broker {
        context: format!("{what}: not in the broker's response"),
        code: ErrorCode::UnknownServerError,
        message: None,
    }
}

fn broker_code(tp: &TopicPartition, code: ErrorCode) -> ClientError {
    ClientError::Broker {
        context: tp.to_string(),
        code,
        message: None,
    }
}

fn collect_in_order<'a, T>(
    keys: impl Iterator<Item = &'a TopicPartition>,
    mut results: HashMap<TopicPartition, Result<T, ClientError>>,
) -> PerItem<TopicPartition, T> {
    keys.map(|tp| {
        let r = results
            .remove(tp)
            .unwrap_or_else(|| Err(missing(&tp.to_string())));
        (tp.clone(), r)
    })
    .collect()
}
