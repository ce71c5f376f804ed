//! Choosing a partition for a record.
//!
//! Keyed records go to `toPositive(murmur2(key)) % partitions` over *all*
//! partitions, exactly as the Java client, KafkaJS and NestJS place them
//! (`toPositive` clears the sign bit; it is not `abs`). Records without a
//! key use the [`DefaultPartitioner`]'s uniform sticky choice (KIP-480/794:
//! stay on one partition for about a batch, then move on) or the
//! [`RoundRobinPartitioner`]'s per-record rotation, as KafkaJS does.

use std::sync::Mutex;

use franz_client::{TopicMap, TopicMetadata};

/// Java's `Utils.murmur2` (seed `0x9747b28c`), as a signed value.
pub fn murmur2(key: &[u8]) -> i32 {
    murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32
}

/// The partition Java's default partitioner gives `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Chooses partitions; implement it for a custom placement.
pub trait Partitioner: Send + Sync + 'static {
    /// The partition for a record of `topic` (`key` as serialized bytes,
    /// `size` its encoded size) given the topic's metadata.
    fn partition(&self, topic: &TopicMetadata, key: Option<&[u8]>, size: usize) -> i32;
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

/// The `n`th (modulo their number) partition with a leader, or of all
/// partitions when none has one. Counts in place: partitioners run for every
/// record and must not allocate.
fn nth_available(topic: &TopicMetadata, n: usize) -> i32 {
    let has_leader = |p: &&franz_client::PartitionMetadata| p.leader >= 0;
    let live = topic.partitions.iter().filter(has_leader).count();
    let pick = if live == 0 {
        topic.partitions.get(n % topic.partitions.len().max(1))
    } else {
        topic.partitions.iter().filter(has_leader).nth(n % live)
    };
    pick.map_or(0, |p| p.partition)
}

/// Java's default: murmur2 for keys, uniform sticky for null keys.
#[derive(Debug)]
pub struct DefaultPartitioner {
    batch_size: usize,
    sticky: Mutex<TopicMap<(i32, usize)>>,
}

impl DefaultPartitioner {
    /// A partitioner that moves on after about `batch_size` bytes.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            sticky: Mutex::new(TopicMap::default()),
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &TopicMetadata, key: Option<&[u8]>, size: usize) -> i32 {
        let count = topic.partitions.len() as i32;
        if let Some(k) = key {
            return partition_for_key(k, count);
        }
        let mut sticky = self.sticky.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by `&str`: `entry` would copy the name on every record.
        let mut entry = sticky.get(&topic.name).copied().unwrap_or((-1, 0));
        if entry.0 < 0 || entry.0 >= count || entry.1 >= self.batch_size {
            // A new random partition, never the one just left when there
            // is another (the next available one differs whenever any does).
            let r = random_u32() as usize;
            let mut next = nth_available(topic, r);
            if next == entry.0 {
                next = nth_available(topic, r + 1);
            }
            entry = (next, 0);
        }
        entry.1 += size;
        store(&mut sticky, &topic.name, entry);
        entry.0
    }
}

/// KafkaJS's default: murmur2 for keys, round-robin over partitions with a
/// leader for null keys (the counter starts at a random value per topic).
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    counters: Mutex<TopicMap<u32>>,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&self, topic: &TopicMetadata, key: Option<&[u8]>, _size: usize) -> i32 {
        if let Some(k) = key {
            return partition_for_key(k, topic.partitions.len() as i32);
        }
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let c = counters
            .get(&topic.name)
            .copied()
            .unwrap_or_else(random_u32);
        store(&mut counters, &topic.name, c.wrapping_add(1));
        nth_available(topic, c as usize)
    }
}

/// Sets `map[topic] = value`, copying the name only the first time.
fn store<V>(map: &mut TopicMap<V>, topic: &str, value: V) {
    match map.get_mut(topic) {
        Some(slot) => *slot = value,
        None => {
            map.insert(topic.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/test-vectors.md` §1: Java's UtilsTest and the
    /// cross-checked partition table.
    #[test]
    fn murmur2_matches_java() {
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
            ("", 275_646_681),
            ("a", -1_563_381_124),
            ("key", -1_079_937_367),
            ("hello", 2_132_663_229),
            ("kafka", -798_503_068),
            ("0", 971_027_396),
            ("1", -1_993_445_489),
            ("100:48069", 1_009_543_857),
            ("{\"id\":1}", -56_768_732),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key:?}");
        }
        assert_eq!(murmur2(&[0xff; 4]), 644_171_429);
        assert_eq!(murmur2(&[0x00, 0x20]), 1_121_897_742);
    }

    #[test]
    fn partitions_match_the_table() {
        // key, p(3), p(6), p(10), p(12), p(16), p(100), p(1000)
        for (key, want) in [
            ("", [0, 3, 1, 9, 9, 81, 681]),
            ("a", [1, 4, 4, 4, 12, 24, 524]),
            ("ab", [2, 2, 4, 2, 10, 34, 434]),
            ("abcd", [2, 2, 0, 8, 4, 0, 100]),
            ("test", [2, 5, 9, 11, 15, 79, 879]),
            ("kafka", [1, 4, 0, 4, 4, 80, 580]),
            ("123456789", [0, 0, 6, 6, 6, 66, 566]),
        ] {
            for (n, w) in [3, 6, 10, 12, 16, 100, 1000].into_iter().zip(want) {
                assert_eq!(partition_for_key(key.as_bytes(), n), w, "{key:?} over {n}");
            }
        }
    }

    fn topic(n: i32) -> TopicMetadata {
        TopicMetadata {
            name: "t".into(),
            id: Default::default(),
            internal: false,
            error: franz_protocol::ErrorCode::None,
            partitions: (0..n)
                .map(|p| franz_client::PartitionMetadata {
                    partition: p,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1],
                    isr: vec![1],
                    offline_replicas: vec![],
                    error: franz_protocol::ErrorCode::None,
                })
                .collect(),
        }
    }

    #[test]
    fn sticky_stays_for_a_batch_then_moves() {
        let p = DefaultPartitioner::new(1000);
        let t = topic(6);
        let first = p.partition(&t, None, 100);
        for _ in 0..9 {
            assert_eq!(p.partition(&t, None, 100), first);
        }
        assert_ne!(
            p.partition(&t, None, 100),
            first,
            "moves on after batch.size bytes"
        );
    }

    #[test]
    fn round_robin_visits_every_partition() {
        let p = RoundRobinPartitioner::default();
        let t = topic(6);
        let mut seen: Vec<i32> = (0..6).map(|_| p.partition(&t, None, 1)).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
    }

    /// Null-key records avoid partitions without a leader (Java's
    /// availability rule), and use all of them when none has one.
    #[test]
    fn null_keys_skip_leaderless_partitions() {
        let mut t = topic(6);
        for p in [0, 2, 3] {
            t.partitions[p].leader = -1;
        }
        let rr = RoundRobinPartitioner::default();
        let mut seen: Vec<i32> = (0..30).map(|_| rr.partition(&t, None, 1)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![1, 4, 5]);
        let sticky = DefaultPartitioner::new(10);
        let mut seen: Vec<i32> = (0..300).map(|_| sticky.partition(&t, None, 10)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![1, 4, 5]);
        for p in &mut t.partitions {
            p.leader = -1;
        }
        let mut seen: Vec<i32> = (0..30).map(|_| rr.partition(&t, None, 1)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
    }
}
