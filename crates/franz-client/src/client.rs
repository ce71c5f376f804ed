//! `Client`: the shared core every producer, consumer and admin uses.
//!
//! It bootstraps from a list (skipping unreachable entries), keeps a metadata
//! cache (refreshed on a schedule and when a request reports stale routing),
//! routes to partition leaders and to group and transaction coordinators,
//! and pools connections per (broker, kind of work): a long-polling Fetch or
//! a slow JoinGroup on its own connection never holds up heartbeats or
//! produces, because a broker answers one connection's requests in order.
//! Broken connections are replaced with exponential backoff and jitter;
//! idle ones are closed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use franz_protocol::messages::{
    FindCoordinatorRequest, MetadataRequest, MetadataResponse, metadata_request,
};
use franz_protocol::primitives::Uuid;
use franz_protocol::{ErrorCode, Request};

use crate::config::{ClientConfig, split_host_port};
use crate::connection::{BrokerAddr, BrokerConnection};
use crate::error::ClientError;
use crate::metrics::{BrokerMetrics, ClientMetrics};

/// The kind of work a connection carries; each kind gets its own connection
/// per broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionKind {
    /// Produce requests.
    Produce,
    /// Fetch requests (long polls).
    Fetch,
    /// Group coordination (JoinGroup, SyncGroup, heartbeats, commits).
    Group,
    /// Everything else: metadata, admin, coordinator lookups.
    Other,
}

/// Which coordinator FindCoordinator should locate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinatorType {
    /// A consumer group's coordinator.
    Group,
    /// A transactional id's coordinator.
    Transaction,
}

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
fn partitions_are_dense(sorted: &[PartitionMetadata]) -> bool {
    sorted
        .iter()
        .enumerate()
        .all(|(i, p)| usize::try_from(p.partition).is_ok_and(|n| n == i))
}

impl ClusterMetadata {
    fn empty() -> Self {
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

#[derive(Default)]
struct Slot {
    conn: Option<BrokerConnection>,
    failures: u32,
    next_attempt: Option<Instant>,
}

/// One slot per (node id, kind); the async mutex makes concurrent callers
/// share one connection attempt.
type Pool = HashMap<(i32, ConnectionKind), Arc<tokio::sync::Mutex<Slot>>>;

struct Inner {
    config: ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    metadata: RwLock<Arc<ClusterMetadata>>,
    refresh: tokio::sync::Mutex<()>,
    topics_of_interest: Mutex<HashSet<String>>,
    pool: Mutex<Pool>,
    coordinators: Mutex<HashMap<(CoordinatorType, String), i32>>,
    metrics: Mutex<HashMap<i32, Arc<BrokerMetrics>>>,
    bootstrap: Vec<BrokerAddr>,
    closed: AtomicBool,
}

/// The client core. Cheap to clone; clones share connections and metadata.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_client::ClientError> {
/// use franz_client::{Client, ClientConfig, ConnectionKind};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let topic = client.topic_metadata("orders").await?;
/// let leader = client.leader_connection("orders", 0, ConnectionKind::Produce).await?;
/// println!("{} partitions, partition 0 led by {}", topic.partitions.len(), leader.addr());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap_servers)
            .field("brokers", &self.metadata().brokers.len())
            .finish()
    }
}

impl Client {
    /// Validates `config`, reaches a bootstrap server and loads metadata.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let tls = if config.security_protocol.uses_tls() {
            Some(crate::tls::rustls_config(&config)?)
        } else {
            None
        };
        let bootstrap = config
            .bootstrap_servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                split_host_port(s).map(|(host, port)| BrokerAddr {
                    node_id: -1 - i as i32,
                    host,
                    port,
                })
            })
            .collect();
        let client = Self {
            inner: Arc::new(Inner {
                config,
                tls,
                metadata: RwLock::new(Arc::new(ClusterMetadata::empty())),
                refresh: tokio::sync::Mutex::new(()),
                topics_of_interest: Mutex::new(HashSet::new()),
                pool: Mutex::new(HashMap::new()),
                coordinators: Mutex::new(HashMap::new()),
                metrics: Mutex::new(HashMap::new()),
                bootstrap,
                closed: AtomicBool::new(false),
            }),
        };
        // At start-up, nothing reachable is a bootstrap failure.
        client
            .refresh_metadata_for(&[])
            .await
            .map_err(|e| match e {
                ClientError::NoBrokerReachable(m) => ClientError::NoBootstrap(m),
                other => other,
            })?;
        tokio::spawn(background(Arc::downgrade(&client.inner)));
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current metadata snapshot (possibly stale).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(
            &self
                .inner
                .metadata
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Closes every connection; later calls fail with [`ClientError::Closed`].
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let slots: Vec<_> = lock(&self.inner.pool).drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Ok(s) = slot.try_lock()
                && let Some(c) = &s.conn
            {
                c.close("client closed");
            }
        }
    }

    /// Per-broker metrics.
    pub fn metrics(&self) -> ClientMetrics {
        lock(&self.inner.metrics)
            .iter()
            .map(|(id, m)| (*id, m.snapshot()))
            .collect()
    }

    /// Connections this client holds open.
    pub fn open_connections(&self) -> usize {
        lock(&self.inner.pool)
            .values()
            .filter(|s| {
                s.try_lock()
                    .map(|s| s.conn.as_ref().is_some_and(BrokerConnection::is_open))
                    .unwrap_or(true)
            })
            .count()
    }

    fn metrics_for(&self, node: i32) -> Arc<BrokerMetrics> {
        Arc::clone(lock(&self.inner.metrics).entry(node).or_default())
    }

    fn check_open(&self) -> Result<(), ClientError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    /// A connection of `kind` to `addr`, reusing a pooled one while it is
    /// open, else connecting (after the backoff earned by earlier failures).
    async fn connection_to(
        &self,
        addr: &BrokerAddr,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        self.check_open()?;
        let slot = Arc::clone(
            lock(&self.inner.pool)
                .entry((addr.node_id, kind))
                .or_default(),
        );
        let mut s = slot.lock().await;
        if let Some(c) = &s.conn {
            let same_place = c.addr().host == addr.host && c.addr().port == addr.port;
            if c.is_open() && same_place {
                return Ok(c.clone());
            }
            s.conn = None;
        }
        if let Some(at) = s.next_attempt.filter(|t| *t > Instant::now()) {
            tokio::time::sleep_until(at.into()).await;
        }
        let metrics = self.metrics_for(addr.node_id);
        match BrokerConnection::connect(
            &self.inner.config,
            self.inner.tls.as_ref(),
            addr.clone(),
            metrics,
        )
        .await
        {
            Ok(c) => {
                s.failures = 0;
                s.next_attempt = None;
                s.conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                let wait = backoff(
                    self.inner.config.reconnect_backoff,
                    self.inner.config.reconnect_backoff_max,
                    s.failures,
                );
                tracing::debug!(broker = %addr, failures = s.failures, backoff_ms = wait.as_millis() as u64, error = %e, "connect failed");
                s.next_attempt = Some(Instant::now() + wait);
                Err(e)
            }
        }
    }

    /// A connection of `kind` to broker `node_id` (from the metadata).
    pub async fn connection(
        &self,
        node_id: i32,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        let broker = self.metadata().brokers.get(&node_id).cloned();
        let broker = match broker {
            Some(b) => b,
            None => {
                self.refresh_metadata_for(&[]).await?;
                self.metadata()
                    .brokers
                    .get(&node_id)
                    .cloned()
                    .ok_or(ClientError::UnknownBroker(node_id))?
            }
        };
        let addr = BrokerAddr {
            node_id,
            host: broker.host,
            port: broker.port,
        };
        self.connection_to(&addr, kind).await
    }

    /// A connection of `kind` to any reachable broker: known brokers first
    /// (in a rotating order), then the bootstrap list. Unreachable entries
    /// are skipped.
    pub async fn any_connection(
        &self,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        let md = self.metadata();
        let mut candidates: Vec<BrokerAddr> = md
            .brokers
            .values()
            .map(|b| BrokerAddr {
                node_id: b.node_id,
                host: b.host.clone(),
                port: b.port,
            })
            .collect();
        if !candidates.is_empty() {
            // Spread load: start the walk at a random known broker.
            let mut seed = [0u8; 4];
            let _ = getrandom::fill(&mut seed);
            let start = u32::from_le_bytes(seed) as usize % candidates.len();
            candidates.rotate_left(start);
        }
        // Prefer brokers we already hold a connection to.
        {
            let pool = lock(&self.inner.pool);
            candidates.sort_by_key(|a| {
                let open = pool
                    .get(&(a.node_id, kind))
                    .and_then(|s| {
                        s.try_lock()
                            .ok()
                            .map(|s| s.conn.as_ref().is_some_and(BrokerConnection::is_open))
                    })
                    .unwrap_or(false);
                !open
            });
        }
        candidates.extend(self.inner.bootstrap.iter().cloned());
        let mut errors = Vec::new();
        let mut transient = true;
        let mut refused = None;
        for addr in &candidates {
            match self.connection_to(addr, kind).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(broker = %addr, error = %e, "skipping unreachable broker");
                    transient &= e.is_retriable();
                    errors.push(format!("{addr}: {e}"));
                    if refused.is_none()
                        && matches!(
                            e,
                            ClientError::Authentication { .. } | ClientError::Tls { .. }
                        )
                    {
                        refused = Some(e);
                    }
                }
            }
        }
        // A broker that refused our credentials or certificates is the
        // cause to report, typed, rather than one string for all brokers.
        if let Some(e) = refused {
            return Err(e);
        }
        // A cluster that is down or restarting is worth waiting for; a TLS
        // or authentication failure everywhere is not.
        Err(if transient {
            ClientError::NoBrokerReachable(errors.join("; "))
        } else {
            ClientError::NoBootstrap(errors.join("; "))
        })
    }

    /// Sends `req` to broker `node_id` on a connection of `kind`.
    pub async fn send_to<R: Request>(
        &self,
        node_id: i32,
        kind: ConnectionKind,
        req: &R,
    ) -> Result<R::Response, ClientError> {
        self.connection(node_id, kind).await?.send(req).await
    }

    /// Sends `req` to any broker.
    pub async fn send_any<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        self.any_connection(ConnectionKind::Other)
            .await?
            .send(req)
            .await
    }

    /// Refreshes metadata for `topics` (plus every topic asked about
    /// before). An empty list refreshes brokers and known topics only.
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
    pub async fn refresh_all_metadata(&self) -> Result<Arc<ClusterMetadata>, ClientError> {
        let _one_at_a_time = self.inner.refresh.lock().await;
        self.fetch_metadata(None).await
    }

    async fn fetch_metadata(
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
        let fresh = Arc::new(self.merge_metadata(resp, topics.is_none()));
        tracing::debug!(
            brokers = fresh.brokers.len(),
            topics = fresh.topics.len(),
            "metadata refreshed"
        );
        *self
            .inner
            .metadata
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::clone(&fresh);
        Ok(fresh)
    }

    fn merge_metadata(&self, resp: MetadataResponse, full: bool) -> ClusterMetadata {
        let old = self.metadata();
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

    /// Metadata of `topic`, refreshing it if unknown or stale. A topic the
    /// cluster does not have is [`ClientError::UnknownTopic`].
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

    /// A connection of `kind` to the leader of `topic`/`partition`.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        let t = self.topic_metadata(topic).await?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ClientError::Broker {
                context: format!("{topic}-{partition}"),
                code: ErrorCode::UnknownTopicOrPartition,
                message: None,
            })?;
        if p.leader < 0 {
            return Err(ClientError::Broker {
                context: format!("{topic}-{partition}"),
                code: ErrorCode::LeaderNotAvailable,
                message: None,
            });
        }
        self.connection(p.leader, kind).await
    }

    /// The node id of the coordinator for `key`, cached until invalidated.
    pub async fn coordinator(&self, kind: CoordinatorType, key: &str) -> Result<i32, ClientError> {
        if let Some(id) = lock(&self.inner.coordinators).get(&(kind, key.to_string())) {
            return Ok(*id);
        }
        let key_type = match kind {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        };
        let conn = self.any_connection(ConnectionKind::Other).await?;
        let version = conn.version_of::<FindCoordinatorRequest>()?;
        let node = if version >= 4 {
            let resp = conn
                .send(&FindCoordinatorRequest {
                    key_type,
                    coordinator_keys: vec![key.to_string()],
                    ..Default::default()
                })
                .await?;
            let c = resp
                .coordinators
                .into_iter()
                .next()
                .ok_or_else(|| ClientError::Broker {
                    context: format!("FindCoordinator {key}"),
                    code: ErrorCode::CoordinatorNotAvailable,
                    message: None,
                })?;
            ClientError::check(
                c.error_code,
                || format!("FindCoordinator {key}"),
                c.error_message.as_ref(),
            )?;
            self.learn_broker(c.node_id, &c.host, c.port);
            c.node_id
        } else {
            let resp = conn
                .send(&FindCoordinatorRequest {
                    key: key.to_string(),
                    key_type,
                    ..Default::default()
                })
                .await?;
            ClientError::check(
                resp.error_code,
                || format!("FindCoordinator {key}"),
                resp.error_message.as_ref(),
            )?;
            self.learn_broker(resp.node_id, &resp.host, resp.port);
            resp.node_id
        };
        lock(&self.inner.coordinators).insert((kind, key.to_string()), node);
        Ok(node)
    }

    /// Forgets a cached coordinator (after NOT_COORDINATOR and its kin).
    pub fn invalidate_coordinator(&self, kind: CoordinatorType, key: &str) {
        lock(&self.inner.coordinators).remove(&(kind, key.to_string()));
    }

    /// A connection to the coordinator for `key`.
    ///
    /// If the cached coordinator cannot be reached (its broker died, or left
    /// the metadata), the cache entry is dropped and the coordinator looked
    /// up once more at once: a dead coordinator's groups move to another
    /// broker, and the caller should not have to learn that from an error.
    /// A failure that persists is returned, and is retriable.
    pub async fn coordinator_connection(
        &self,
        kind: CoordinatorType,
        key: &str,
    ) -> Result<BrokerConnection, ClientError> {
        let cached = lock(&self.inner.coordinators).contains_key(&(kind, key.to_string()));
        let node = self.coordinator(kind, key).await?;
        match self.connection(node, ConnectionKind::Group).await {
            Ok(conn) => Ok(conn),
            Err(e) if e.is_retriable() => {
                self.invalidate_coordinator(kind, key);
                if !cached {
                    return Err(e);
                }
                tracing::debug!(node, key, error = %e, "coordinator unreachable; finding it again");
                let node = self.coordinator(kind, key).await?;
                let r = self.connection(node, ConnectionKind::Group).await;
                if r.is_err() {
                    self.invalidate_coordinator(kind, key);
                }
                r
            }
            Err(e) => Err(e),
        }
    }

    fn learn_broker(&self, node_id: i32, host: &str, port: i32) {
        let Ok(port) = u16::try_from(port) else {
            return;
        };
        let md = self.metadata();
        if md
            .brokers
            .get(&node_id)
            .is_some_and(|b| b.host == host && b.port == port)
        {
            return;
        }
        let mut updated = (*md).clone();
        updated.brokers.insert(
            node_id,
            BrokerInfo {
                node_id,
                host: host.to_string(),
                port,
                rack: None,
            },
        );
        *self
            .inner
            .metadata
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(updated);
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or
    /// `deadline` passes. Between attempts it backs off (exponentially, with
    /// jitter) and refreshes metadata when the error says routing is stale.
    pub async fn retry<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        mut op: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(remaining, op()).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Timeout {
                    what: what.to_string(),
                    after: remaining,
                }),
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retriable() => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            let wait = backoff(
                self.inner.config.retry_backoff,
                self.inner.config.retry_backoff_max,
                attempt,
            );
            if Instant::now() + wait >= deadline {
                tracing::debug!(what, attempt, error = %err, "giving up: deadline");
                return Err(err);
            }
            tracing::debug!(what, attempt, error = %err, backoff_ms = wait.as_millis() as u64, "retrying");
            if err.invalidates_metadata() {
                // Best effort: a failed refresh is retried on the next turn.
                let _ = self.refresh_metadata_for(&[]).await;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Closes pooled connections idle longer than `connections.max.idle.ms`.
    pub fn close_idle_connections(&self) {
        let max_idle = self.inner.config.connections_max_idle;
        for slot in lock(&self.inner.pool).values() {
            if let Ok(mut s) = slot.try_lock()
                && let Some(c) = &s.conn
                && c.in_flight() == 0
                && c.idle_for() >= max_idle
            {
                c.close("idle");
                s.conn = None;
            }
        }
    }
}

/// `base * 2^(attempt-1)`, capped at `max`, with ±20% jitter.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let mut seed = [0u8; 2];
    let _ = getrandom::fill(&mut seed);
    let jitter = f64::from(u16::from_le_bytes(seed)) / f64::from(u16::MAX); // 0..1
    exp.mul_f64(0.8 + 0.4 * jitter).min(max.max(base))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Periodic work: metadata refresh at `metadata.max.age.ms`, idle
/// connections closed. Stops when the client is dropped.
async fn background(inner: Weak<Inner>) {
    let tick = {
        let Some(i) = inner.upgrade() else { return };
        i.config
            .metadata_max_age
            .min(i.config.connections_max_idle)
            .min(Duration::from_secs(30))
            .max(Duration::from_millis(100))
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let client = Client { inner };
        client.close_idle_connections();
        if client.metadata().fetched_at.elapsed() >= client.inner.config.metadata_max_age
            && let Err(e) = client.refresh_metadata_for(&[]).await
        {
            tracing::debug!(error = %e, "scheduled metadata refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let first = backoff(base, max, 1);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        let third = backoff(base, max, 3);
        assert!(third >= Duration::from_millis(320) && third <= Duration::from_millis(480));
        for n in 5..40 {
            assert!(backoff(base, max, n) <= max);
        }
    }

    #[test]
    fn only_partitions_numbered_0_to_n_are_taken() {
        let p = |partition| PartitionMetadata {
            partition,
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            offline_replicas: vec![],
            error: ErrorCode::None,
        };
        assert!(partitions_are_dense(&[]));
        assert!(partitions_are_dense(&[p(0), p(1), p(2)]));
        assert!(!partitions_are_dense(&[p(0), p(2)]), "a gap");
        assert!(!partitions_are_dense(&[p(0), p(0)]), "a duplicate");
        assert!(!partitions_are_dense(&[p(-1), p(0)]), "negative");
        assert!(!partitions_are_dense(&[p(i32::MAX)]), "absurd");
    }
}
