//! `Client`: the shared core every producer, consumer and admin uses.
//!
//! It bootstraps from a list (skipping unreachable entries), keeps a metadata
//! cache (refreshed on a schedule and when a request reports stale routing),
//! routes to partition leaders and to group and transaction coordinators,
//! and pools connections per (broker, kind of work): a long-polling Fetch or
//! a slow JoinGroup on its own connection never holds up heartbeats or
//! produces, because a broker answers one connection's requests in order.
//! Broken connections are replaced with exponential backoff and jitter;
//! idle ones are closed. When no broker the metadata names answers (the
//! cluster moved), the bootstrap list, resolved again, is where the client
//! finds it (KIP-899's rebootstrap).
//!
//! The pieces: this file holds [`Client`] itself (set-up, close, the
//! background refresh task); `pool` the connection slots, `metadata` the
//! cluster metadata cache and its types, `coordinator` group and
//! transaction coordinator lookup, `retry` retries within a deadline.

mod coordinator;
mod metadata;
mod pool;
mod retry;

pub use retry::RefreshBackoff;

pub use coordinator::CoordinatorType;
pub use metadata::{
    BrokerEndpoint, BrokerInfo, ClusterMetadata, LeaderHint, PartitionMetadata, TopicMap,
    TopicMetadata,
};
use pool::Pool;
pub(crate) use retry::backoff;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use crate::config::{ClientConfig, split_host_port};
use crate::connection::BrokerAddr;
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
    ///
    /// # Cancel safety
    /// Cancel safe. The background refresh task is spawned only after the first metadata
    /// load, so a drop before that leaves nothing running and closes the bootstrap
    /// connections.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let client = Self::unconnected(config)?;
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

    /// A client with an empty metadata cache that has not reached any
    /// broker yet: `config` validated, TLS loaded, the bootstrap list parsed.
    fn unconnected(config: ClientConfig) -> Result<Self, ClientError> {
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
        Ok(Self {
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
        })
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

    /// Replaces the metadata snapshot with what `update` makes of the
    /// current one, if anything, all under the write lock: concurrent
    /// updates (a refresh, a leader hint, a coordinator's address) each
    /// start from the other's result, and none is lost. Returns the
    /// snapshot in place afterwards.
    pub(super) fn update_metadata(
        &self,
        update: impl FnOnce(&ClusterMetadata) -> Option<ClusterMetadata>,
    ) -> Arc<ClusterMetadata> {
        let mut current = self
            .inner
            .metadata
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(next) = update(&current) {
            *current = Arc::new(next);
        }
        Arc::clone(&current)
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

    pub(super) fn metrics_for(&self, node: i32) -> Arc<BrokerMetrics> {
        Arc::clone(lock(&self.inner.metrics).entry(node).or_default())
    }

    pub(super) fn check_open(&self) -> Result<(), ClientError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }
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
        use super::metadata::partitions_are_dense;
        use franz_protocol::ErrorCode;
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

    /// KIP-951: a new-leader hint is taken only when it is news (a newer
    /// epoch) about a partition the cache knows, and its leader's address
    /// is known or given.
    #[test]
    fn leader_hints_are_taken_only_when_newer_and_reachable() {
        use franz_protocol::ErrorCode;
        let client = Client::unconnected(ClientConfig::new("h:1")).unwrap();
        let broker = |node_id: i32| BrokerInfo {
            node_id,
            host: format!("b{node_id}"),
            port: 9092,
            rack: None,
        };
        let mut md = ClusterMetadata::empty();
        md.brokers = [(1, broker(1)), (2, broker(2))].into_iter().collect();
        md.topics.insert(
            "t".into(),
            TopicMetadata {
                name: "t".into(),
                id: Default::default(),
                internal: false,
                error: ErrorCode::None,
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 5,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    offline_replicas: vec![],
                    error: ErrorCode::None,
                }],
            },
        );
        *client.inner.metadata.write().unwrap() = Arc::new(md);
        let hint = |partition, leader_id, leader_epoch| LeaderHint {
            topic: "t",
            partition,
            leader_id,
            leader_epoch,
        };
        let leader = || {
            let p = &client.metadata().topics["t"].partitions[0];
            (p.leader, p.leader_epoch)
        };
        // Stale (older or equal epoch), leaderless, unknown partition or
        // topic: ignored.
        for h in [hint(0, 2, 4), hint(0, 2, 5), hint(0, -1, 6), hint(7, 2, 6)] {
            assert_eq!(client.apply_leader_hints(&[h], &[]), 0, "{h:?}");
        }
        let other = LeaderHint {
            topic: "u",
            ..hint(0, 2, 6)
        };
        assert_eq!(client.apply_leader_hints(&[other], &[]), 0);
        // A leader nobody knows the address of, or with a bad port: ignored.
        assert_eq!(client.apply_leader_hints(&[hint(0, 3, 6)], &[]), 0);
        let bad_port = BrokerEndpoint {
            node_id: 3,
            host: "b3",
            port: 70_000,
            rack: None,
        };
        assert_eq!(client.apply_leader_hints(&[hint(0, 3, 6)], &[bad_port]), 0);
        assert_eq!(leader(), (1, 5));
        // A known broker under a newer epoch: taken.
        assert_eq!(client.apply_leader_hints(&[hint(0, 2, 6)], &[]), 1);
        assert_eq!(leader(), (2, 6));
        // A new broker with its endpoint: taken, and the broker learnt.
        let b3 = BrokerEndpoint {
            node_id: 3,
            host: "b3",
            port: 9093,
            rack: Some("r"),
        };
        assert_eq!(client.apply_leader_hints(&[hint(0, 3, 7)], &[b3]), 1);
        assert_eq!(leader(), (3, 7));
        assert_eq!(client.metadata().brokers[&3].port, 9093);
    }
}
