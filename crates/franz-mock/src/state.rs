//! The cluster's state: brokers, topics and their logs, groups, producer
//! ids, transactions and fetch sessions. One lock guards it all; handlers
//! take it for the time of one decision and never across an await.
//!
//! Nothing here reads the clock: every method that depends on time takes
//! `now`, which the connection driver passes in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use franz_protocol::{ErrorCode, Uuid};

use crate::MockConfig;
use crate::fetch_session::FetchSessions;
use crate::group::Groups;
use crate::log::PartitionLog;
use crate::txn::Transactions;

/// A broker as metadata describes it.
#[derive(Debug, Clone)]
pub(crate) struct BrokerInfo {
    pub(crate) id: i32,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) rack: Option<String>,
    pub(crate) alive: bool,
}

/// One partition.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
    /// `(epoch, start offset)` for every leader epoch, oldest first.
    pub(crate) epochs: Vec<(i32, i64)>,
    pub(crate) replicas: Vec<i32>,
    pub(crate) log: PartitionLog,
}

/// One topic.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) replication_factor: i16,
    pub(crate) configs: BTreeMap<String, String>,
}

/// The whole cluster.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: MockConfig,
    pub(crate) brokers: Vec<BrokerInfo>,
    pub(crate) topics: BTreeMap<String, Topic>,
    pub(crate) groups: Groups,
    pub(crate) txns: Transactions,
    pub(crate) sessions: FetchSessions,
    next_producer_id: i64,
}

/// Kafka's rule for topic names.
pub(crate) fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A random v4-style id (topic ids, member ids).
pub(crate) fn random_uuid() -> Uuid {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: ids need only be unique within this process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b[..8].copy_from_slice(&n.to_be_bytes());
        b[8..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid(b)
}

/// A stable hash for placing coordinators (FNV-1a).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl State {
    pub(crate) fn new(config: MockConfig, brokers: Vec<BrokerInfo>) -> Self {
        Self {
            config,
            brokers,
            topics: BTreeMap::new(),
            groups: Groups::default(),
            txns: Transactions::default(),
            sessions: FetchSessions::default(),
            next_producer_id: 1000,
        }
    }

    /// The brokers that are up.
    pub(crate) fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.iter().filter(|b| b.alive)
    }

    /// The broker with `id`.
    pub(crate) fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// The coordinator of a group or transactional id: a live broker chosen
    /// by hash, so it moves when that broker dies.
    pub(crate) fn coordinator_for(&self, key: &str) -> Option<&BrokerInfo> {
        let live: Vec<&BrokerInfo> = self.live_brokers().collect();
        if live.is_empty() {
            return None;
        }
        let i = (fnv1a(key) % live.len() as u64) as usize;
        live.get(i).copied()
    }

    /// Whether `broker` coordinates `key`.
    pub(crate) fn coordinates(&self, broker: i32, key: &str) -> bool {
        self.coordinator_for(key).is_some_and(|b| b.id == broker)
    }

    /// A fresh producer id.
    pub(crate) fn allocate_producer_id(&mut self) -> i64 {
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        id
    }

    /// A fresh member id, as Kafka writes them: `<client id>-<uuid>`.
    pub(crate) fn new_member_id(&mut self, client_id: &str) -> String {
        let id = random_uuid();
        format!("{client_id}-{id}")
    }

    /// Creates a topic. Errors as CreateTopics reports them.
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(i32, i16), (ErrorCode, String)> {
        if !valid_topic_name(name) {
            return Err((
                ErrorCode::InvalidTopicException,
                format!("Topic name \"{name}\" is illegal"),
            ));
        }
        if self.topics.contains_key(name) {
            return Err((
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if partitions <= 0 || partitions > self.config.max_partitions_per_topic {
            return Err((
                ErrorCode::InvalidPartitions,
                format!(
                    "Number of partitions must be between 1 and {}.",
                    self.config.max_partitions_per_topic
                ),
            ));
        }
        let brokers = self.brokers.len() as i16;
        let rf = if replication_factor == -1 {
            brokers.min(3)
        } else {
            replication_factor
        };
        if rf <= 0 || rf > brokers {
            return Err((
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers} broker(s) are registered."
                ),
            ));
        }
        if validate_only {
            return Ok((partitions, rf));
        }
        let mut topic = Topic {
            id: random_uuid(),
            partitions: Vec::new(),
            replication_factor: rf,
            configs,
        };
        self.add_partitions(&mut topic, partitions);
        self.topics.insert(name.to_string(), topic);
        Ok((partitions, rf))
    }

    /// Grows `topic` to `count` partitions, leaders spread round robin
    /// over live brokers.
    pub(crate) fn add_partitions(&self, topic: &mut Topic, count: i32) {
        let ids: Vec<i32> = self.brokers.iter().map(|b| b.id).collect();
        let live: Vec<i32> = self.live_brokers().map(|b| b.id).collect();
        let rf = usize::try_from(topic.replication_factor)
            .unwrap_or(1)
            .max(1);
        for index in topic.partitions.len()..usize::try_from(count).unwrap_or(0) {
            let replicas: Vec<i32> = (0..rf.min(ids.len()))
                .filter_map(|k| ids.get((index + k) % ids.len()).copied())
                .collect();
            let leader = replicas
                .iter()
                .copied()
                .find(|r| live.contains(r))
                .unwrap_or(-1);
            topic.partitions.push(Partition {
                leader,
                leader_epoch: 0,
                epochs: vec![(0, 0)],
                replicas,
                log: PartitionLog::default(),
            });
        }
    }

    /// Auto-creates `name` if the cluster allows it. Returns whether the
    /// topic exists afterwards.
    pub(crate) fn auto_create(&mut self, name: &str) -> bool {
        if self.topics.contains_key(name) {
            return true;
        }
        if !self.config.auto_create_topics || !valid_topic_name(name) {
            return false;
        }
        self.create_topic(name, -1, -1, BTreeMap::new(), false)
            .is_ok()
    }

    /// The topic name for a topic id.
    pub(crate) fn topic_name(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }

    /// The partition `topic`/`partition`, if it exists.
    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        let p = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(p)
    }

    /// The partition `topic`/`partition`, mutably.
    pub(crate) fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        let p = usize::try_from(partition).ok()?;
        self.topics.get_mut(topic)?.partitions.get_mut(p)
    }

    /// Checks that `broker` leads `topic`/`partition` and that the client's
    /// leader epoch (-1 = unknown) is current.
    pub(crate) fn check_leader(
        &self,
        broker: i32,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<&Partition, ErrorCode> {
        let p = self
            .partition(topic, partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if current_leader_epoch >= 0 {
            if current_leader_epoch > p.leader_epoch {
                return Err(ErrorCode::UnknownLeaderEpoch);
            }
            if current_leader_epoch < p.leader_epoch {
                return Err(ErrorCode::FencedLeaderEpoch);
            }
        }
        if p.leader != broker {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(p)
    }

    /// Makes `to` the leader of `topic`/`partition` with a new leader epoch.
    pub(crate) fn move_leader(&mut self, topic: &str, partition: i32, to: i32) -> bool {
        let Some(p) = self.partition_mut(topic, partition) else {
            return false;
        };
        p.leader = to;
        p.leader_epoch += 1;
        let start = p.log.high_watermark();
        let epoch = p.leader_epoch;
        p.epochs.push((epoch, start));
        true
    }

    /// Marks a broker dead or alive. Partitions it led move to another
    /// live replica (every replica is in sync), as the controller would
    /// elect; a revived broker leads nothing until a leader moves to it.
    pub(crate) fn set_alive(&mut self, broker: i32, alive: bool) {
        for b in &mut self.brokers {
            if b.id == broker {
                b.alive = alive;
            }
        }
        let live: Vec<i32> = self.live_brokers().map(|b| b.id).collect();
        let mut moves = Vec::new();
        for (name, topic) in &self.topics {
            for (i, p) in topic.partitions.iter().enumerate() {
                if p.leader == -1 || !live.contains(&p.leader) {
                    let to = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| live.contains(r))
                        .unwrap_or(-1);
                    if to != p.leader {
                        moves.push((name.clone(), i as i32, to));
                    }
                }
            }
        }
        for (topic, partition, to) in moves {
            self.move_leader(&topic, partition, to);
        }
    }

    /// A topic config, with the broker default.
    pub(crate) fn topic_config(&self, topic: &Topic, key: &str) -> Option<String> {
        topic.configs.get(key).cloned().or_else(|| {
            TOPIC_DEFAULTS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_string())
        })
    }

    /// The largest batch a topic accepts.
    pub(crate) fn max_message_bytes(&self, topic: &Topic) -> usize {
        self.topic_config(topic, "max.message.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_048_588)
    }

    /// Periodic work: group session and rebalance timeouts, transaction
    /// timeouts, idle fetch sessions.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        let mut changed = self.groups.tick(now);
        let expired = self.txns.expired(now);
        for txn_id in expired {
            changed |= self.abort_expired_transaction(&txn_id, now);
        }
        self.sessions.evict_idle(now, Duration::from_secs(120));
        changed
    }
}

/// Topic configs the mock reports, with Kafka's defaults.
pub(crate) const TOPIC_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
];

/// Wall-clock milliseconds for timestamps written into the log (markers).
/// The only clock read outside the driver; it stamps data, it decides nothing.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Map of committed offsets.
pub(crate) type OffsetMap = HashMap<(String, i32), Committed>;

/// A committed offset.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
}
