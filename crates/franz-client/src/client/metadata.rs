//! The cluster metadata cache: its types, fetching, merging a partial
//! refresh into the cached view, and brokers learned on the way.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_protocol::ErrorCode;
use franz_protocol::messages::{
    FetchResponse, MetadataRequest, MetadataResponse, ProduceResponse, metadata_request,
};
use franz_protocol::primitives::Uuid;

use crate::error::ClientError;

use super::*;

/// A broker as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// One partition in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader node id (-1 when leaderless).
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline_replicas: Vec<i32>,
    /// Partition-level error.
    pub error: ErrorCode,
}

/// One topic in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Name.
    pub name: String,
    /// Topic id (zero before Metadata v10).
    pub id: Uuid,
    /// Internal topic (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Topic-level error.
    pub error: ErrorCode,
    /// Partitions, by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// A partition's new leader, as a broker named it in a Produce or Fetch
/// response's `CurrentLeader` (KIP-951).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderHint<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The new leader's node id.
    pub leader_id: i32,
    /// The new leader's epoch.
    pub leader_epoch: i32,
}

/// A broker's address, as a Produce or Fetch response's `NodeEndpoints`
/// gives it (KIP-951).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerEndpoint<'a> {
    /// Node id.
    pub node_id: i32,
    /// Host.
    pub host: &'a str,
    /// Port (anything outside 1..=65535 is ignored).
    pub port: i32,
    /// Rack.
    pub rack: Option<&'a str>,
}

/// Whether a partition error says the leader moved, so that a KIP-951
/// response names the new one.
fn leader_moved(code: i16) -> bool {
    code == ErrorCode::NotLeaderOrFollower.code() || code == ErrorCode::FencedLeaderEpoch.code()
}

/// A map keyed by topic name. Producers look a topic up for every record,
/// so it hashes with foldhash, several times faster than SipHash on short
/// strings; foldhash is still seeded per process.
pub type TopicMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// A snapshot of the cluster's metadata.
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Active controller (as brokers report it).
    pub controller_id: i32,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: TopicMap<TopicMetadata>,
    /// When this snapshot was fetched.
    pub fetched_at: Instant,
}

/// Whether sorted partitions are numbered exactly `0..len`.
pub(super) fn partitions_are_dense(sorted: &[PartitionMetadata]) -> bool {
    sorted
        .iter()
        .enumerate()
        .all(|(i, p)| usize::try_from(p.partition).is_ok_and(|n| n == i))
}

impl ClusterMetadata {
    pub(super) fn empty() -> Self {
        Self {
            cluster_id: None,
            controller_id: -1,
            brokers: BTreeMap::new(),
            topics: TopicMap::default(),
            fetched_at: Instant::now() - Duration::from_secs(3600 * 24),
        }
    }

    /// The leader of `topic`/`partition`, if known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&BrokerInfo> {
        let t = self.topics.get(topic)?;
        let p = t.partitions.iter().find(|p| p.partition == partition)?;
        self.brokers.get(&p.leader)
    }

    /// The topic's name for an id.
    pub fn topic_name(&self, id: &Uuid) -> Option<&str> {
        self.topics
            .values()
            .find(|t| t.id == *id)
            .map(|t| t.name.as_str())
    }
}

impl Client {
    /// Refreshes metadata for `topics` (plus every topic asked about
    /// before). An empty list refreshes brokers and known topics only.
    ///
    /// # Cancel safety
    /// The topics join the client's interest set before the first await and stay there, so
    /// later refreshes ask for them. Dropped before the answer, the cache is unchanged; the
    /// broker still executes the Metadata request (and may auto-create topics), and its
    /// answer is discarded.
    pub async fn refresh_metadata_for(
        &self,
        topics: &[String],
    ) -> Result<Arc<ClusterMetadata>, ClientError> {
        {
            let mut interest = lock(&self.inner.topics_of_interest);
            interest.extend(topics.iter().cloned());
        }
        let before = self.metadata().fetched_at;
        let _one_at_a_time = self.inner.refresh.lock().await;
        // Someone else refreshed while we waited, and covered our topics.
        let md = self.metadata();
        if md.fetched_at > before && topics.iter().all(|t| md.topics.contains_key(t)) {
            return Ok(md);
        }
        let wanted: Vec<String> = lock(&self.inner.topics_of_interest)
            .iter()
            .cloned()
            .collect();
        self.fetch_metadata(Some(wanted)).await
    }

    /// Refreshes metadata for every topic in the cluster.
    ///
    /// # Cancel safety
    /// Cancel safe: the cache is unchanged until the answer is applied.
    pub async fn refresh_all_metadata(&self) -> Result<Arc<ClusterMetadata>, ClientError> {
        let _one_at_a_time = self.inner.refresh.lock().await;
        self.fetch_metadata(None).await
    }

    pub(super) async fn fetch_metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<Arc<ClusterMetadata>, ClientError> {
        let req = MetadataRequest {
            topics: topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| metadata_request::MetadataRequestTopic {
                        name: Some(t.clone()),
                        ..Default::default()
                    })
                    .collect()
            }),
            // Only a request naming topics can create them.
            allow_auto_topic_creation: topics.is_some()
                && self.inner.config.allow_auto_topic_creation,
            ..Default::default()
        };
        let conn = self.any_connection(ConnectionKind::Other).await?;
        let resp = conn.send(&req).await?;
        // Merged under the write lock, so that a leader hint taken while
        // the request was out is weighed (KIP-320's epoch rule), not lost.
        let full = topics.is_none();
        let fresh = self.update_metadata(|old| Some(merge_metadata(old, resp, full)));
        tracing::debug!(
            brokers = fresh.brokers.len(),
            topics = fresh.topics.len(),
            "metadata refreshed"
        );
        Ok(fresh)
    }

    /// Metadata of `topic`, refreshing it if unknown or stale. A topic the
    /// cluster does not have is [`ClientError::UnknownTopic`].
    ///
    /// # Cancel safety
    /// As [`refresh_metadata_for`](Self::refresh_metadata_for).
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata, ClientError> {
        let md = self.metadata();
        let fresh_enough = md.fetched_at.elapsed() < self.inner.config.metadata_max_age;
        if let Some(t) = md
            .topics
            .get(topic)
            .filter(|t| t.error.is_ok() && fresh_enough)
        {
            return Ok(t.clone());
        }
        let md = self.refresh_metadata_for(&[topic.to_string()]).await?;
        match md.topics.get(topic) {
            Some(t) if t.error.is_ok() => Ok(t.clone()),
            Some(t) => Err(ClientError::Broker {
                context: format!("metadata for topic {topic}"),
                code: t.error,
                message: None,
            }),
            None => {
                lock(&self.inner.topics_of_interest).remove(topic);
                Err(ClientError::UnknownTopic(topic.to_string()))
            }
        }
    }

    /// Follows new-leader hints from Produce and Fetch responses (KIP-951):
    /// a partition whose leader moved is routed to the new one at once,
    /// before any metadata refresh. A hint is taken only for a partition
    /// the cache knows, with a valid leader and a leader epoch newer than
    /// the cached one (KIP-320: an older or equal epoch is stale news), and
    /// only when the new leader's address is known or given among
    /// `endpoints`. Returns how many hints were taken.
    pub fn apply_leader_hints(
        &self,
        hints: &[LeaderHint<'_>],
        endpoints: &[BrokerEndpoint<'_>],
    ) -> usize {
        let mut taken = 0;
        // Under the metadata write lock: a refresh finishing meanwhile is
        // neither overwritten nor overwrites the hint.
        self.update_metadata(|md| {
            let mut updated: Option<ClusterMetadata> = None;
            for hint in hints {
                if hint.leader_id < 0 || hint.leader_epoch < 0 {
                    continue;
                }
                let current = updated.as_ref().unwrap_or(md);
                let newer = current.topics.get(hint.topic).is_some_and(|t| {
                    t.partitions.iter().any(|p| {
                        p.partition == hint.partition && p.leader_epoch < hint.leader_epoch
                    })
                });
                if !newer {
                    continue;
                }
                let endpoint = endpoints
                    .iter()
                    .find(|e| e.node_id == hint.leader_id)
                    .and_then(|e| Some((e, u16::try_from(e.port).ok().filter(|p| *p > 0)?)));
                if endpoint.is_none() && !current.brokers.contains_key(&hint.leader_id) {
                    continue;
                }
                let next = updated.get_or_insert_with(|| md.clone());
                if let Some((e, port)) = endpoint {
                    next.brokers.insert(
                        e.node_id,
                        BrokerInfo {
                            node_id: e.node_id,
                            host: e.host.to_string(),
                            port,
                            rack: e.rack.map(str::to_string),
                        },
                    );
                }
                if let Some(p) = next.topics.get_mut(hint.topic).and_then(|t| {
                    t.partitions
                        .iter_mut()
                        .find(|p| p.partition == hint.partition)
                }) {
                    tracing::debug!(
                        topic = hint.topic,
                        partition = hint.partition,
                        from = p.leader,
                        to = hint.leader_id,
                        epoch = hint.leader_epoch,
                        "following a new-leader hint (KIP-951)"
                    );
                    p.leader = hint.leader_id;
                    p.leader_epoch = hint.leader_epoch;
                    p.error = ErrorCode::None;
                    taken += 1;
                }
            }
            updated
        });
        taken
    }

    /// Follows the new-leader hints of a Produce response (KIP-951,
    /// version 10+): partitions refused with NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH name their current leader. Returns how many
    /// were taken (see [`apply_leader_hints`](Self::apply_leader_hints)).
    pub fn follow_produce_hints(&self, resp: &ProduceResponse) -> usize {
        let hints: Vec<LeaderHint<'_>> = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .filter(|p| leader_moved(p.error_code))
                    .map(|p| LeaderHint {
                        topic: &t.name,
                        partition: p.index,
                        leader_id: p.current_leader.leader_id,
                        leader_epoch: p.current_leader.leader_epoch,
                    })
            })
            .collect();
        self.follow_hints(
            &hints,
            resp.node_endpoints
                .iter()
                .map(|e| (e.node_id, &e.host, e.port, &e.rack)),
        )
    }

    /// The same for a Fetch response (KIP-951, version 16+). Topics are
    /// named, or (version 13+) identified by id and looked up in the cache.
    pub fn follow_fetch_hints(&self, resp: &FetchResponse) -> usize {
        // Called for every Fetch response: take no snapshot unless some
        // partition's leader moved.
        let moved = resp
            .responses
            .iter()
            .any(|t| t.partitions.iter().any(|p| leader_moved(p.error_code)));
        if !moved {
            return 0;
        }
        let md = self.metadata();
        let hints: Vec<LeaderHint<'_>> = resp
            .responses
            .iter()
            .filter_map(|t| {
                let name = if t.topic.is_empty() {
                    md.topic_name(&t.topic_id)?
                } else {
                    t.topic.as_str()
                };
                Some((name, t))
            })
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .filter(|p| leader_moved(p.error_code))
                    .map(move |p| LeaderHint {
                        topic: name,
                        partition: p.partition_index,
                        leader_id: p.current_leader.leader_id,
                        leader_epoch: p.current_leader.leader_epoch,
                    })
            })
            .collect();
        self.follow_hints(
            &hints,
            resp.node_endpoints
                .iter()
                .map(|e| (e.node_id, &e.host, e.port, &e.rack)),
        )
    }

    fn follow_hints<'a>(
        &self,
        hints: &[LeaderHint<'_>],
        endpoints: impl Iterator<Item = (i32, &'a String, i32, &'a Option<String>)>,
    ) -> usize {
        if hints.is_empty() {
            return 0;
        }
        let endpoints: Vec<BrokerEndpoint<'_>> = endpoints
            .map(|(node_id, host, port, rack)| BrokerEndpoint {
                node_id,
                host,
                port,
                rack: rack.as_deref(),
            })
            .collect();
        let taken = self.apply_leader_hints(hints, &endpoints);
        if taken > 0 {
            metrics::counter!("franz_leader_hints_followed_total").increment(taken as u64);
        }
        taken
    }

    pub(super) fn learn_broker(&self, node_id: i32, host: &str, port: i32) {
        let Ok(port) = u16::try_from(port) else {
            return;
        };
        self.update_metadata(|md| {
            if md
                .brokers
                .get(&node_id)
                .is_some_and(|b| b.host == host && b.port == port)
            {
                return None;
            }
            let mut updated = md.clone();
            updated.brokers.insert(
                node_id,
                BrokerInfo {
                    node_id,
                    host: host.to_string(),
                    port,
                    rack: None,
                },
            );
            Some(updated)
        });
    }
}

/// The cache after a Metadata response: `old` with the response's brokers
/// and topics (all topics when `full`). A partition keeps its cached entry
/// when that has a newer leader epoch (KIP-320).
fn merge_metadata(old: &ClusterMetadata, resp: MetadataResponse, full: bool) -> ClusterMetadata {
    let mut topics = if full {
        TopicMap::default()
    } else {
        old.topics.clone()
    };
    for t in resp.topics {
        let Some(name) = t.name else { continue };
        let error = ErrorCode::from_code(t.error_code);
        if error == ErrorCode::UnknownTopicOrPartition {
            topics.remove(&name);
            continue;
        }
        let mut partitions: Vec<PartitionMetadata> = t
            .partitions
            .into_iter()
            .map(|p| PartitionMetadata {
                partition: p.partition_index,
                leader: p.leader_id,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes,
                isr: p.isr_nodes,
                offline_replicas: p.offline_replicas,
                error: ErrorCode::from_code(p.error_code),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        // Producers and consumers index partitions by number: a list
        // that is not exactly 0..n (a gap, a duplicate, a negative or
        // absurd index) is refused, and the cached entry kept.
        if !partitions_are_dense(&partitions) {
            tracing::warn!(topic = %name, count = partitions.len(), "metadata lists partitions that are not 0..n; ignored");
            continue;
        }
        // A broker that has not caught up with the controller can answer
        // with an older leader (KIP-320): for the same topic (same id; a
        // re-created topic starts over), a partition whose cached leader
        // epoch is newer keeps the cached entry.
        if let Some(cached) = old.topics.get(&name).filter(|c| c.id == t.topic_id) {
            for p in &mut partitions {
                if let Some(c) = cached
                    .partitions
                    .iter()
                    .find(|c| c.partition == p.partition)
                    .filter(|c| c.leader_epoch > p.leader_epoch && p.leader_epoch >= 0)
                {
                    tracing::debug!(topic = %name, partition = p.partition, cached = c.leader_epoch, got = p.leader_epoch, "ignoring stale partition metadata");
                    *p = c.clone();
                }
            }
        }
        topics.insert(
            name.clone(),
            TopicMetadata {
                name,
                id: t.topic_id,
                internal: t.is_internal,
                error,
                partitions,
            },
        );
    }
    ClusterMetadata {
        cluster_id: resp.cluster_id,
        controller_id: resp.controller_id,
        brokers: resp
            .brokers
            .into_iter()
            .filter_map(|b| {
                Some((
                    b.node_id,
                    BrokerInfo {
                        node_id: b.node_id,
                        host: b.host,
                        port: u16::try_from(b.port).ok()?,
                        rack: b.rack,
                    },
                ))
            })
            .collect(),
        topics,
        fetched_at: Instant::now(),
    }
}
