//! Topics, partitions and the cluster: list, describe, create, delete,
//! add partitions.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::collections::HashMap;
use std::time::Instant;

use franz_protocol::messages::*;
use franz_protocol::primitives::Uuid;

use crate::error::ClientError;

use super::*;

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

impl Admin {
    /// Every topic (internal ones only when asked).
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
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
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
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
    ///
    /// # Cancel safety
    /// Dropped after CreateTopics was written, the topics may be created anyway; dropped
    /// while it waits for their leaders, they exist but were not waited for.
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
        let resp = self.send_routed("create topics", Route::Any, &req).await?;
        let mut by_name: HashMap<String, Result<(), ClientError>> = resp
            .topics
            .into_iter()
            .map(|t| {
                let r = ClientError::check(
                    t.error_code,
                    || format!("create topic {}", t.name),
                    t.error_message,
                );
                (t.name, r)
            })
            .collect();
        if !validate_only {
            // So a produce right after create finds them.
            let created: Vec<(String, i32)> = topics
                .iter()
                .filter(|t| matches!(by_name.get(&t.name), Some(Ok(()))))
                .map(|t| (t.name.clone(), t.partitions))
                .collect();
            // A count of -1 (the broker's default) waits for any partitions.
            self.await_metadata(&created, |t, count| {
                !t.partitions.is_empty()
                    && t.partitions.len() >= count
                    && t.partitions.iter().all(|p| p.leader >= 0)
            })
            .await;
        }
        Ok(topics
            .into_iter()
            .map(|t| {
                let r = by_name
                    .remove(&t.name)
                    .unwrap_or_else(|| Err(ClientError::missing(&t.name)));
                (t.name, r)
            })
            .collect())
    }

    /// Deletes topics.
    ///
    /// # Cancel safety
    /// Dropped after the request was written, it may or may not have been applied, and
    /// nothing reports which: describe the state again to find out.
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
        let resp = self.send_routed("delete topics", Route::Any, &req).await?;
        let mut by_name: HashMap<String, Result<(), ClientError>> = resp
            .responses
            .into_iter()
            .filter_map(|r| {
                let name = r.name?;
                let res = ClientError::check(
                    r.error_code,
                    || format!("delete topic {name}"),
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
                    by_name
                        .remove(*n)
                        .unwrap_or_else(|| Err(ClientError::missing(n))),
                )
            })
            .collect())
    }

    /// Raises each topic's partition count to the given total, and waits (within the
    /// request timeout) until metadata shows the new count.
    ///
    /// # Cancel safety
    /// Dropped after the request was written, it may or may not have been applied, and
    /// nothing reports which: describe the state again to find out. Dropped while it
    /// waits for the new count, the partitions exist but were not waited for.
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
            .send_routed("create partitions", Route::Any, &req)
            .await?;
        let mut by_name: HashMap<String, Result<(), ClientError>> = resp
            .results
            .into_iter()
            .map(|r| {
                let res = ClientError::check(
                    r.error_code,
                    || format!("create partitions for {}", r.name),
                    r.error_message,
                );
                (r.name, res)
            })
            .collect();
        if !validate_only {
            // The controller answers once the change is committed; brokers'
            // metadata learns it a moment later. Waiting here means a describe
            // right after sees the new partitions.
            let grown: Vec<(String, i32)> = totals
                .iter()
                .filter(|(t, _)| matches!(by_name.get(*t), Some(Ok(()))))
                .map(|(t, n)| (t.to_string(), *n))
                .collect();
            // Only the count: an old partition without a leader (its broker
            // down) is not this call's to wait for.
            self.await_metadata(&grown, |t, count| t.partitions.len() >= count)
                .await;
        }
        let names: Vec<String> = totals.iter().map(|(t, _)| t.to_string()).collect();
        Ok(names
            .into_iter()
            .map(|n| {
                let r = by_name
                    .remove(&n)
                    .unwrap_or_else(|| Err(ClientError::missing(&n)));
                (n, r)
            })
            .collect())
    }

    /// Waits, within the request timeout, until `ready(topic, count)` holds
    /// for each `(name, count)` in `topics` in fresh metadata. Past the
    /// timeout it returns anyway: the change was accepted, only not yet seen.
    async fn await_metadata(
        &self,
        topics: &[(String, i32)],
        ready: impl Fn(&TopicDescription, usize) -> bool,
    ) {
        if topics.is_empty() {
            return;
        }
        let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
        let until = Instant::now() + self.client.config().request_timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // Each refresh is bounded by what is left, so the whole wait is
            // one request timeout, not one per attempt.
            if let Ok(Ok(md)) =
                tokio::time::timeout(left, self.client.refresh_metadata_for(&names)).await
                && topics.iter().all(|(n, count)| {
                    md.topics
                        .get(n)
                        .is_some_and(|t| ready(t, usize::try_from(*count).unwrap_or(0)))
                })
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Cluster id, controller and brokers.
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        let req = DescribeClusterRequest::default();
        let resp = self
            .send_routed("describe cluster", Route::Any, &req)
            .await?;
        ClientError::check(
            resp.error_code,
            || "describe cluster".into(),
            resp.error_message,
        )?;
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
}
