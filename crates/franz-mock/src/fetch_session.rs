//! KIP-227 fetch sessions: the broker remembers a client's partitions so
//! incremental fetches name only what changed, and answers only with
//! partitions that have news.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use franz_protocol::Uuid;

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
const MAX_SESSIONS: usize = 1000;

/// A partition in a session, with what the last answer told the client.
#[derive(Debug, Clone)]
pub(crate) struct SessionPartition {
    pub(crate) topic_id: Uuid,
    pub(crate) fetch_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) current_leader_epoch: i32,
    /// `(high watermark, last stable offset, log start)` last sent; `None`
    /// until the partition was first answered.
    pub(crate) last_sent: Option<(i64, i64, i64)>,
}

/// One session.
#[derive(Debug)]
pub(crate) struct FetchSession {
    /// The epoch the next request must carry.
    pub(crate) epoch: i32,
    pub(crate) partitions: BTreeMap<(String, i32), SessionPartition>,
    last_used: Instant,
}

/// Every session.
#[derive(Debug, Default)]
pub(crate) struct FetchSessions {
    map: HashMap<i32, FetchSession>,
    next_id: i32,
}

impl FetchSessions {
    /// Opens a session; evicts the least recently used one when full.
    pub(crate) fn create(
        &mut self,
        partitions: BTreeMap<(String, i32), SessionPartition>,
        now: Instant,
    ) -> i32 {
        if self.map.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)
        {
            self.map.remove(&oldest);
        }
        self.next_id = self.next_id.checked_add(1).filter(|n| *n > 0).unwrap_or(1);
        let id = self.next_id;
        self.map.insert(
            id,
            FetchSession {
                epoch: 1,
                partitions,
                last_used: now,
            },
        );
        id
    }

    /// The session `id`, marked used at `now`.
    pub(crate) fn get_mut(&mut self, id: i32, now: Instant) -> Option<&mut FetchSession> {
        let s = self.map.get_mut(&id)?;
        s.last_used = now;
        Some(s)
    }

    /// Closes a session.
    pub(crate) fn remove(&mut self, id: i32) {
        self.map.remove(&id);
    }

    /// Drops sessions unused for `idle`.
    pub(crate) fn evict_idle(&mut self, now: Instant, idle: Duration) {
        self.map
            .retain(|_, s| now.saturating_duration_since(s.last_used) < idle);
    }
}
