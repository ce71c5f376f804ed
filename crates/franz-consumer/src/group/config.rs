//! Group settings: `GroupConfig` (Java's keys, `from_properties`, `validate`) and `GroupProtocol`.

use super::*;

/// Group settings, named after the Java consumer's keys.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `session.timeout.ms` (default 45 s): no heartbeat for this long and
    /// the coordinator drops the member.
    pub session_timeout: Duration,
    /// The rebalance timeout sent in JoinGroup (Java sends
    /// `max.poll.interval.ms`; default 300 s): how long the group waits for
    /// members to rejoin, and so how long a member may take to revoke.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3 s; classic only, KIP-848's
    /// coordinator sets its own, clamped to 50 ms..30 s).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (default 300 s, KIP-62): a member whose
    /// application has not called `poll` for this long leaves the group, so
    /// its partitions move to members that make progress. Its next `poll`
    /// returns [`ConsumeError::PollIntervalExceeded`]; the one after rejoins.
    pub max_poll_interval: Duration,
    /// How long the application has to let revoked partitions go (default
    /// 60 s; must be shorter than `rebalance_timeout`). The revoke step runs
    /// in `poll`: [`RebalanceListener::on_revoked`], then a commit of the
    /// offsets marked processed. When the deadline passes first, the
    /// partitions are released anyway, and offsets for them that arrive
    /// later are never committed.
    pub revoke_timeout: Duration,
    /// Assignors offered, in preference order (classic protocol). Default,
    /// as Java 4.x: `range`, then `cooperative-sticky`, then KafkaJS's
    /// `RoundRobinAssigner` (so franz can join NestJS groups). The member
    /// rebalances cooperatively only when every assignor offered is
    /// cooperative (`vec![Arc::new(CooperativeStickyAssignor)]`), as Java
    /// decides; groups shared with KafkaJS/NestJS members stay eager.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// `group.protocol`: the classic JoinGroup/SyncGroup protocol (default)
    /// or KIP-848's `consumer` protocol, where the coordinator assigns.
    pub protocol: GroupProtocol,
    /// `group.instance.id` (default none): makes this a static member
    /// (KIP-345). An instance that restarts within the session timeout with
    /// the same id gets its partitions back without a rebalance of the
    /// group; closing does not leave the group, so set the session timeout
    /// to cover a restart. Two live members must never share an id: the
    /// older one is fenced with `FENCED_INSTANCE_ID`.
    pub group_instance_id: Option<String>,
}

/// A KIP-1082 member id: a random UUID in Kafka's text form. Random per
/// process and call (std's hasher keys are seeded from the OS).
pub(super) fn random_member_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    franz_protocol::Uuid(bytes).to_string()
}

/// An assignor by its Java class name or protocol name.
pub(super) fn assignor_named(name: &str) -> Option<Arc<dyn Assignor>> {
    let short = name.rsplit('.').next().unwrap_or(name);
    match short {
        "range" | "RangeAssignor" => Some(Arc::new(RangeAssignor)),
        "cooperative-sticky" | "CooperativeStickyAssignor" => {
            Some(Arc::new(CooperativeStickyAssignor))
        }
        "RoundRobinAssigner" => Some(Arc::new(RoundRobinAssignor)),
        _ => None,
    }
}

/// Which group protocol a member speaks (Java's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup, SyncGroup and Heartbeat; the leader member assigns.
    #[default]
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat; the coordinator assigns.
    Consumer,
}

impl GroupConfig {
    /// Java's defaults for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            revoke_timeout: Duration::from_secs(60),
            assignors: vec![
                Arc::new(RangeAssignor),
                Arc::new(CooperativeStickyAssignor),
                Arc::new(RoundRobinAssignor),
            ],
            protocol: GroupProtocol::Classic,
            group_instance_id: None,
        }
    }

    /// Builds from Java-style properties: `group.id` (required),
    /// `session.timeout.ms`, `heartbeat.interval.ms`, `max.poll.interval.ms`
    /// (also the rebalance timeout, as Java sends it), `group.instance.id`,
    /// `group.protocol` (`classic` or `consumer`) and
    /// `partition.assignment.strategy` (Java class or short names: range,
    /// cooperative-sticky, and KafkaJS's `RoundRobinAssigner`).
    /// `franz.rebalance.timeout.ms` and `franz.revoke.timeout.ms` set what
    /// Java has no key for. `enable.auto.commit=true` is refused: franz
    /// commits only what the application says it processed. Consumer and
    /// client keys are left to [`ConsumerConfig::from_properties`]; producer
    /// and JVM-only keys are accepted with a warning; others are an error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use franz_consumer::{GroupConfig, GroupProtocol};
    /// let g = GroupConfig::from_properties([
    ///     ("bootstrap.servers", "127.0.0.1:9092"), // the client's
    ///     ("group.id", "billing"),
    ///     ("group.protocol", "consumer"),
    ///     ("max.poll.interval.ms", "60000"),
    /// ])?;
    /// assert_eq!(g.protocol, GroupProtocol::Consumer);
    /// assert_eq!(g.rebalance_timeout, Duration::from_secs(60));
    /// assert!(g.revoke_timeout < g.rebalance_timeout);
    /// # Ok::<(), franz_consumer::ConsumeError>(())
    /// ```
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        props: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConsumeError> {
        let mut g = Self::new("");
        let mut rebalance = None;
        let mut revoke = None;
        let mut scratch = ConsumerConfig::new("scratch:1");
        for (k, v) in props {
            let (k, v) = (k.as_ref(), v.as_ref().trim());
            let bad = |what: &str| ConsumeError::Config(format!("{k} must be {what}, not {v:?}"));
            let ms = |v: &str| {
                v.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| bad("a number of milliseconds"))
            };
            match k {
                "group.id" => g.group_id = v.to_string(),
                "group.instance.id" => g.group_instance_id = (!v.is_empty()).then(|| v.to_string()),
                "session.timeout.ms" => g.session_timeout = ms(v)?,
                "heartbeat.interval.ms" => g.heartbeat_interval = ms(v)?,
                "max.poll.interval.ms" => g.max_poll_interval = ms(v)?,
                "franz.rebalance.timeout.ms" => rebalance = Some(ms(v)?),
                "franz.revoke.timeout.ms" => revoke = Some(ms(v)?),
                "group.protocol" => {
                    g.protocol = match v.to_ascii_lowercase().as_str() {
                        "classic" => GroupProtocol::Classic,
                        "consumer" => GroupProtocol::Consumer,
                        _ => return Err(bad("classic or consumer")),
                    }
                }
                "partition.assignment.strategy" => {
                    g.assignors = v
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(|a| {
                            assignor_named(a).ok_or_else(|| {
                                bad("range, cooperative-sticky or RoundRobinAssigner")
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                "enable.auto.commit" => {
                    if crate::config::parse_bool(v) != Some(false) {
                        return Err(ConsumeError::Config(
                            "enable.auto.commit must be false: franz commits what the application marks or commits, never on a timer".into(),
                        ));
                    }
                }
                "auto.commit.interval.ms" => {
                    tracing::warn!(key = k, "no auto-commit in franz; ignored");
                }
                _ => {
                    if scratch.set(k, v)? || scratch.client.set(k, v)? {
                        continue;
                    }
                    crate::config::foreign_key(k, "group")?;
                }
            }
        }
        // Java sends max.poll.interval.ms as the rebalance timeout.
        g.rebalance_timeout = rebalance.unwrap_or(g.max_poll_interval);
        g.revoke_timeout = match revoke {
            Some(r) => r,
            None if g.revoke_timeout >= g.rebalance_timeout => g.rebalance_timeout / 2,
            None => g.revoke_timeout,
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks the settings against each other.
    ///
    /// ```
    /// use std::time::Duration;
    /// use franz_consumer::GroupConfig;
    /// let mut g = GroupConfig::new("billing");
    /// assert!(g.validate().is_ok());
    /// g.revoke_timeout = g.rebalance_timeout;
    /// assert!(g.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), GroupConfigError> {
        if self.group_id.is_empty() {
            return Err(GroupConfigError::EmptyGroupId);
        }
        if self.protocol == GroupProtocol::Classic {
            if self.assignors.is_empty() {
                return Err(GroupConfigError::NoAssignors);
            }
            for (i, a) in self.assignors.iter().enumerate() {
                if self.assignors[..i].iter().any(|b| b.name() == a.name()) {
                    return Err(GroupConfigError::DuplicateAssignor(a.name().to_string()));
                }
            }
        }
        for (name, d) in [
            ("session_timeout", self.session_timeout),
            ("rebalance_timeout", self.rebalance_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("max_poll_interval", self.max_poll_interval),
            ("revoke_timeout", self.revoke_timeout),
        ] {
            if d.is_zero() {
                return Err(GroupConfigError::Zero(name));
            }
            if d.as_millis() > i32::MAX as u128 {
                return Err(GroupConfigError::TooLong(name));
            }
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(GroupConfigError::HeartbeatNotBelowSession {
                heartbeat: self.heartbeat_interval,
                session: self.session_timeout,
            });
        }
        if self.revoke_timeout >= self.rebalance_timeout {
            return Err(GroupConfigError::RevokeNotBelowRebalance {
                revoke: self.revoke_timeout,
                rebalance: self.rebalance_timeout,
            });
        }
        Ok(())
    }
}
