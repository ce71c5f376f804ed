//! Classic consumer-group assignment: the ConsumerProtocol byte layout that
//! Java, librdkafka and KafkaJS all put in JoinGroup and SyncGroup, and the
//! assignors that run on the group leader.
//!
//! Layout (version free-form, as KafkaJS writes it):
//! - subscription: `int16 version | int32 n | (string topic)* | bytes user_data`
//! - assignment: `int16 version | int32 n | (string topic, int32 m, int32*)* | bytes user_data`

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use franz_protocol::primitives::{Reader, Writer};
use franz_protocol::{DecodeError, EncodeError};

/// What one member subscribes to, as sent in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The assignor's protocol version.
    pub version: i16,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignor-specific data (empty, never null, as KafkaJS writes it).
    pub user_data: Bytes,
}

/// What one member is given, as sent in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The assignor's protocol version.
    pub version: i16,
    /// Partitions by topic.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Assignor-specific data.
    pub user_data: Bytes,
}

impl Subscription {
    /// The JoinGroup metadata bytes.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        b.put_i16(self.version);
        b.put_array_len(Some(self.topics.len()), false, "topics")?;
        for t in &self.topics {
            b.put_nullable_string(Some(t), false, "topic")?;
        }
        b.put_nullable_byte_array(Some(&self.user_data), false, "user_data")?;
        Ok(b.freeze())
    }

    /// Reads JoinGroup metadata bytes. A missing user-data field (older
    /// writers end after the topics) reads as empty.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.i16("version")?;
        let n = r.array_len("topics", false)?;
        let mut topics = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            topics.push(r.string("topic", false)?);
        }
        let user_data = read_user_data(&mut r)?;
        Ok(Self {
            version,
            topics,
            user_data,
        })
    }
}

impl Assignment {
    /// The SyncGroup assignment bytes.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        b.put_i16(self.version);
        b.put_array_len(Some(self.partitions.len()), false, "topics")?;
        for (topic, parts) in &self.partitions {
            b.put_nullable_string(Some(topic), false, "topic")?;
            b.put_array_len(Some(parts.len()), false, "partitions")?;
            for p in parts {
                b.put_i32(*p);
            }
        }
        b.put_nullable_byte_array(Some(&self.user_data), false, "user_data")?;
        Ok(b.freeze())
    }

    /// Reads SyncGroup assignment bytes; empty bytes (a member the leader
    /// gave nothing, as KafkaJS leaders do) are an empty assignment.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let mut r = Reader::new(bytes);
        let version = r.i16("version")?;
        let n = r.array_len("topics", false)?;
        let mut partitions = BTreeMap::new();
        for _ in 0..n {
            let topic = r.string("topic", false)?;
            let m = r.array_len("partitions", false)?;
            let mut parts = Vec::with_capacity(m.min(4096));
            for _ in 0..m {
                parts.push(r.i32("partition")?);
            }
            partitions.insert(topic, parts);
        }
        let user_data = read_user_data(&mut r)?;
        Ok(Self {
            version,
            partitions,
            user_data,
        })
    }
}

/// The trailing user data: absent (older writers stop before it), null
/// and empty all read as empty.
fn read_user_data(r: &mut Reader) -> Result<Bytes, DecodeError> {
    if r.remaining() == 0 {
        return Ok(Bytes::new());
    }
    Ok(r.nullable_byte_array("user_data", false)?
        .unwrap_or_default())
}

/// A member id with its subscription, as the leader sees it in JoinGroup.
pub type Member = (String, Subscription);

/// Partitions per topic, from metadata.
pub type TopicPartitions = BTreeMap<String, Vec<i32>>;

/// A group assignment strategy. The group agrees on the first name every
/// member offers; the leader then runs that assignor.
pub trait Assignor: Debug + Send + Sync {
    /// The protocol name in JoinGroup (must match the other members').
    fn name(&self) -> &str;
    /// The version written into subscriptions and assignments.
    fn version(&self) -> i16 {
        0
    }
    /// Partitions for each member id. Topics a member did not subscribe to
    /// must not be given to it.
    fn assign(
        &self,
        members: &[Member],
        partitions: &TopicPartitions,
    ) -> BTreeMap<String, TopicPartitions>;
}

/// KafkaJS's default, so franz members can join NestJS server groups:
/// sort member ids, walk topics and partitions in order, partition *i* to
/// the *i*-th subscribed member in turn. Name `RoundRobinAssigner`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "RoundRobinAssigner"
    }

    fn assign(
        &self,
        members: &[Member],
        partitions: &TopicPartitions,
    ) -> BTreeMap<String, TopicPartitions> {
        let mut ids: Vec<&Member> = members.iter().collect();
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: BTreeMap<String, TopicPartitions> = ids
            .iter()
            .map(|m| (m.0.clone(), TopicPartitions::new()))
            .collect();
        let mut turn = 0usize;
        for (topic, parts) in partitions {
            let subscribed: Vec<&&Member> =
                ids.iter().filter(|m| m.1.topics.contains(topic)).collect();
            if subscribed.is_empty() {
                continue;
            }
            for p in parts {
                let member = subscribed[turn % subscribed.len()];
                turn += 1;
                out.entry(member.0.clone())
                    .or_default()
                    .entry(topic.clone())
                    .or_default()
                    .push(*p);
            }
        }
        out
    }
}

/// Java's `range`: per topic, sorted subscribed members get contiguous
/// ranges, the first `partitions % members` one partition more.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(
        &self,
        members: &[Member],
        partitions: &TopicPartitions,
    ) -> BTreeMap<String, TopicPartitions> {
        let mut out: BTreeMap<String, TopicPartitions> = members
            .iter()
            .map(|m| (m.0.clone(), TopicPartitions::new()))
            .collect();
        for (topic, parts) in partitions {
            let mut subscribed: Vec<&String> = members
                .iter()
                .filter(|m| m.1.topics.contains(topic))
                .map(|m| &m.0)
                .collect();
            subscribed.sort();
            if subscribed.is_empty() {
                continue;
            }
            let per = parts.len() / subscribed.len();
            let extra = parts.len() % subscribed.len();
            let mut at = 0;
            for (i, id) in subscribed.iter().enumerate() {
                let n = per + usize::from(i < extra);
                let slice = parts.get(at..at + n).unwrap_or_default().to_vec();
                at += n;
                if !slice.is_empty() {
                    out.entry((*id).clone())
                        .or_default()
                        .insert(topic.clone(), slice);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    /// `../shared/nestjs-kafka-interop.md` §8, generated with KafkaJS's
    /// `AssignerProtocol`.
    #[test]
    fn byte_layouts_match_kafkajs() {
        let rr_meta = Subscription {
            version: 0,
            topics: vec!["a".into()],
            user_data: Bytes::new(),
        };
        assert_eq!(
            rr_meta.encode().unwrap(),
            hex("0000 00000001 0001 61 00000000")
        );
        assert_eq!(
            Subscription::decode(hex("0000 00000001 0001 61 00000000")).unwrap(),
            rr_meta
        );

        let rr_assign = Assignment {
            version: 0,
            partitions: [("a".to_string(), vec![0, 2])].into(),
            user_data: Bytes::new(),
        };
        let wire = hex("0000 00000001 0001 61 00000002 00000000 00000002 00000000");
        assert_eq!(rr_assign.encode().unwrap(), wire);
        assert_eq!(Assignment::decode(wire).unwrap(), rr_assign);

        let nest_meta = hex(
            "0001 00000001 0007 612e7265706c79 00000019 7b2270726576696f757341737369676e6d656e74223a7b7d7d",
        );
        let decoded = Subscription::decode(nest_meta.clone()).unwrap();
        assert_eq!(decoded.version, 1);
        assert_eq!(decoded.topics, vec!["a.reply".to_string()]);
        assert_eq!(&decoded.user_data[..], br#"{"previousAssignment":{}}"#);
        assert_eq!(decoded.encode().unwrap(), nest_meta);

        let nest_assign = hex("0001 00000001 0007 612e7265706c79 00000001 00000000 00000000");
        let decoded = Assignment::decode(nest_assign.clone()).unwrap();
        assert_eq!(decoded.partitions["a.reply"], vec![0]);
        assert_eq!(decoded.encode().unwrap(), nest_assign);

        assert_eq!(
            Assignment::decode(Bytes::new()).unwrap(),
            Assignment::default()
        );
        assert!(
            Subscription::decode(hex("0000 7fffffff")).is_err(),
            "hostile count"
        );
    }

    fn members(specs: &[(&str, &[&str])]) -> Vec<Member> {
        specs
            .iter()
            .map(|(id, topics)| {
                (
                    (*id).to_string(),
                    Subscription {
                        topics: topics.iter().map(|t| (*t).to_string()).collect(),
                        ..Subscription::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn round_robin_deals_partitions_over_sorted_members() {
        let m = members(&[("b", &["t", "u"]), ("a", &["t", "u"])]);
        let parts: TopicPartitions =
            [("t".to_string(), vec![0, 1, 2]), ("u".to_string(), vec![0])].into();
        let out = RoundRobinAssignor.assign(&m, &parts);
        assert_eq!(out["a"]["t"], vec![0, 2]);
        assert_eq!(out["b"]["t"], vec![1]);
        assert_eq!(out["b"]["u"], vec![0]);
        assert!(!out["a"].contains_key("u"));
    }

    #[test]
    fn assignors_never_give_unsubscribed_topics() {
        let m = members(&[("a", &["t"]), ("b", &["u"])]);
        let parts: TopicPartitions =
            [("t".to_string(), vec![0, 1]), ("u".to_string(), vec![0, 1])].into();
        for assignor in [&RoundRobinAssignor as &dyn Assignor, &RangeAssignor] {
            let out = assignor.assign(&m, &parts);
            assert_eq!(
                out["a"].keys().collect::<Vec<_>>(),
                vec!["t"],
                "{}",
                assignor.name()
            );
            assert_eq!(
                out["b"].keys().collect::<Vec<_>>(),
                vec!["u"],
                "{}",
                assignor.name()
            );
            assert_eq!(out["a"]["t"], vec![0, 1]);
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_first() {
        let m = members(&[("c", &["t"]), ("a", &["t"]), ("b", &["t"])]);
        let parts: TopicPartitions = [("t".to_string(), (0..7).collect())].into();
        let out = RangeAssignor.assign(&m, &parts);
        assert_eq!(out["a"]["t"], vec![0, 1, 2]);
        assert_eq!(out["b"]["t"], vec![3, 4]);
        assert_eq!(out["c"]["t"], vec![5, 6]);
    }
}
