//! Classic consumer-group assignment: the ConsumerProtocol byte layout that
//! Java, librdkafka and KafkaJS all put in JoinGroup and SyncGroup, and the
//! assignors that run on the group leader.
//!
//! Layout (Java's `ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment`; KafkaJS writes version 0 or 1 but only the
//! version-0 fields):
//! - subscription: `int16 version | int32 n | (string topic)* | bytes user_data`,
//!   then from v1 `owned partitions` (KIP-429), from v2 `int32 generation`,
//!   from v3 `nullable string rack`. Fields a writer left out read as absent.
//! - assignment: `int16 version | int32 n | (string topic, int32 m, int32*)* | bytes user_data`
//!   (the same in every version).
//!
//! Assignors: [`RangeAssignor`] (Java's `range`), [`CooperativeStickyAssignor`]
//! (Java's `cooperative-sticky`, KIP-429: incremental, never moving a
//! partition in the round its owner gives it up) and [`RoundRobinAssignor`]
//! (KafkaJS's `RoundRobinAssigner`, for groups shared with NestJS).

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
    /// v1+: the partitions the member owns now (cooperative rebalancing
    /// keeps them); `None` when the writer left the field out.
    pub owned_partitions: Option<TopicPartitions>,
    /// v2+: the generation in which the member got `owned_partitions`.
    pub generation: Option<i32>,
    /// v3+: the member's rack.
    pub rack_id: Option<String>,
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
        if let Some(owned) = self.owned_partitions.as_ref().filter(|_| self.version >= 1) {
            put_topic_partitions(&mut b, owned)?;
            if let Some(generation) = self.generation.filter(|_| self.version >= 2) {
                b.put_i32(generation);
                if self.version >= 3 {
                    b.put_nullable_string(self.rack_id.as_deref(), false, "rack_id")?;
                }
            }
        }
        Ok(b.freeze())
    }

    /// Reads JoinGroup metadata bytes. Fields a writer left out (older
    /// writers end after the topics, KafkaJS after the user data) read as
    /// absent.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.i16("version")?;
        let n = r.array_len("topics", false)?;
        let mut topics = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            topics.push(r.string("topic", false)?);
        }
        let user_data = read_user_data(&mut r)?;
        let mut s = Self {
            version,
            topics,
            user_data,
            ..Self::default()
        };
        if version >= 1 && r.remaining() > 0 {
            s.owned_partitions = Some(read_topic_partitions(&mut r)?);
        }
        if version >= 2 && r.remaining() > 0 {
            s.generation = Some(r.i32("generation_id")?);
        }
        if version >= 3 && r.remaining() > 0 {
            s.rack_id = r.nullable_string("rack_id", false)?;
        }
        Ok(s)
    }

    /// The generation the member's owned partitions are from: the v2 field,
    /// else the 4-byte user data Java's `CooperativeStickyAssignor` writes
    /// for older readers, else -1.
    pub fn effective_generation(&self) -> i32 {
        if let Some(g) = self.generation {
            return g;
        }
        match <[u8; 4]>::try_from(&self.user_data[..]) {
            Ok(b) => i32::from_be_bytes(b),
            Err(_) => -1,
        }
    }
}

fn put_topic_partitions(b: &mut BytesMut, by_topic: &TopicPartitions) -> Result<(), EncodeError> {
    b.put_array_len(Some(by_topic.len()), false, "topics")?;
    for (topic, parts) in by_topic {
        b.put_nullable_string(Some(topic), false, "topic")?;
        b.put_array_len(Some(parts.len()), false, "partitions")?;
        for p in parts {
            b.put_i32(*p);
        }
    }
    Ok(())
}

fn read_topic_partitions(r: &mut Reader) -> Result<TopicPartitions, DecodeError> {
    let n = r.array_len("topics", false)?;
    let mut out = TopicPartitions::new();
    for _ in 0..n {
        let topic = r.string("topic", false)?;
        let m = r.array_len("partitions", false)?;
        let mut parts = Vec::with_capacity(m.min(4096));
        for _ in 0..m {
            parts.push(r.i32("partition")?);
        }
        out.entry(topic).or_default().extend(parts);
    }
    Ok(out)
}

impl Assignment {
    /// The SyncGroup assignment bytes.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        b.put_i16(self.version);
        put_topic_partitions(&mut b, &self.partitions)?;
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
        let partitions = read_topic_partitions(&mut r)?;
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
    /// Whether the assignor supports cooperative rebalancing (KIP-429): it
    /// leaves a partition unassigned for the round in which its previous
    /// owner gives it up. A member rebalances cooperatively only when every
    /// assignor it offers is cooperative, as Java decides.
    fn cooperative(&self) -> bool {
        false
    }
    /// The subscription's user data for a member in `generation`.
    fn user_data(&self, _generation: i32) -> Bytes {
        Bytes::new()
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

    /// Java writes ConsumerProtocol v3 for every assignor.
    fn version(&self) -> i16 {
        3
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

/// Java's `cooperative-sticky` (KIP-429): a balanced assignment that keeps
/// each member's owned partitions where it can, and never hands a partition
/// to a new owner in the round its current owner still holds it. Such a
/// partition stays unassigned; its owner sees it gone after SyncGroup,
/// revokes it and rejoins, and the follow-up round gives it to the new
/// owner.
///
/// This is Java's wire contract (name, ConsumerProtocol v3 with owned
/// partitions and generation, the 4-byte generation in user data for older
/// readers), not its exact algorithm: owned partitions of the members with
/// the newest generation are kept up to the balanced quota, the rest are
/// dealt to the members with the fewest partitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &str {
        "cooperative-sticky"
    }

    fn version(&self) -> i16 {
        3
    }

    fn cooperative(&self) -> bool {
        true
    }

    /// Java's `CooperativeStickyAssignor` user data: the generation as an
    /// int32, for leaders that read subscriptions older than v2.
    fn user_data(&self, generation: i32) -> Bytes {
        Bytes::copy_from_slice(&generation.to_be_bytes())
    }

    fn assign(
        &self,
        members: &[Member],
        partitions: &TopicPartitions,
    ) -> BTreeMap<String, TopicPartitions> {
        sticky_assign(members, partitions, true)
    }
}

/// The sticky assignment; with `cooperative`, partitions moving between
/// owners are withheld for this round.
fn sticky_assign(
    members: &[Member],
    partitions: &TopicPartitions,
    cooperative: bool,
) -> BTreeMap<String, TopicPartitions> {
    type Tp = (String, i32);
    let mut ids: Vec<&Member> = members.iter().collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    let exists = |tp: &Tp| partitions.get(&tp.0).is_some_and(|ps| ps.contains(&tp.1));
    let subscribed = |m: &Member, topic: &str| m.1.topics.iter().any(|t| t == topic);

    // Every owned partition as its members report it: the current owner of
    // a partition is its claimant with the newest generation.
    let mut owner: BTreeMap<Tp, (i32, &str)> = BTreeMap::new();
    let mut claimed_by_anyone: BTreeMap<Tp, Vec<&str>> = BTreeMap::new();
    for m in &ids {
        let generation = m.1.effective_generation();
        for (topic, ps) in m.1.owned_partitions.iter().flatten() {
            for p in ps {
                let tp = (topic.clone(), *p);
                // Only partitions that exist are tracked: a member's claims
                // cannot make the leader allocate beyond the real partitions.
                if !exists(&tp) {
                    continue;
                }
                claimed_by_anyone.entry(tp.clone()).or_default().push(&m.0);
                if !subscribed(m, topic) {
                    continue;
                }
                let newer = owner.get(&tp).is_none_or(|(g, _)| generation > *g);
                if newer {
                    owner.insert(tp, (generation, &m.0));
                }
            }
        }
    }

    let all: Vec<Tp> = partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .filter(|(t, _)| ids.iter().any(|m| subscribed(m, t)))
        .collect();
    let n_members = ids.len().max(1);
    let min_quota = all.len() / n_members;
    let mut with_extra = all.len() % n_members;

    // Keep owned partitions up to the quota, the members owning most first.
    let mut kept: BTreeMap<&str, Vec<Tp>> =
        ids.iter().map(|m| (m.0.as_str(), Vec::new())).collect();
    for (tp, (_, id)) in &owner {
        if let Some(v) = kept.get_mut(id) {
            v.push(tp.clone());
        }
    }
    let mut order: Vec<&str> = kept.keys().copied().collect();
    order.sort_by_key(|id| std::cmp::Reverse(kept.get(id).map_or(0, Vec::len)));
    let mut assigned: BTreeMap<&str, Vec<Tp>> = BTreeMap::new();
    let mut taken: std::collections::BTreeSet<Tp> = std::collections::BTreeSet::new();
    for id in order {
        let mine = kept.remove(id).unwrap_or_default();
        let quota = if mine.len() > min_quota && with_extra > 0 {
            with_extra -= 1;
            min_quota + 1
        } else {
            min_quota
        };
        let keep: Vec<Tp> = mine.into_iter().take(quota).collect();
        taken.extend(keep.iter().cloned());
        assigned.insert(id, keep);
    }
    // Deal the rest to the subscribed member with the fewest partitions.
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let best = ids
            .iter()
            .filter(|m| subscribed(m, &tp.0))
            .min_by_key(|m| (assigned.get(m.0.as_str()).map_or(0, Vec::len), m.0.as_str()));
        if let Some(m) = best {
            assigned.entry(m.0.as_str()).or_default().push(tp.clone());
        }
    }

    let mut out: BTreeMap<String, TopicPartitions> = ids
        .iter()
        .map(|m| (m.0.clone(), TopicPartitions::new()))
        .collect();
    for (id, tps) in assigned {
        for tp in tps {
            // KIP-429: a partition some other member still reports owning is
            // left out this round; it moves in the follow-up rebalance.
            if cooperative
                && claimed_by_anyone
                    .get(&tp)
                    .is_some_and(|claimants| claimants.iter().any(|c| *c != id))
            {
                continue;
            }
            out.entry(id.to_string())
                .or_default()
                .entry(tp.0)
                .or_default()
                .push(tp.1);
        }
    }
    for by_topic in out.values_mut() {
        for ps in by_topic.values_mut() {
            ps.sort_unstable();
        }
    }
    out
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

    /// `docs/nestjs-wire.md` §8, generated with KafkaJS's
    /// `AssignerProtocol`.
    #[test]
    fn byte_layouts_match_kafkajs() {
        let rr_meta = Subscription {
            version: 0,
            topics: vec!["a".into()],
            ..Subscription::default()
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

    /// Bytes from Java 4.1's `ConsumerProtocol.serializeSubscription` and
    /// `serializeAssignment` (topic `t`, owned 1 and 0, generation 7, rack
    /// `r1`, the cooperative-sticky user data for generation 7).
    #[test]
    fn subscriptions_v1_to_v3_match_java() {
        let v3 = hex(
            "0003 00000001 0001 74 00000004 00000007 00000001 0001 74 00000002 00000000 00000001 00000007 0002 7231",
        );
        let s = Subscription::decode(v3.clone()).unwrap();
        assert_eq!(s.version, 3);
        assert_eq!(
            s.owned_partitions,
            Some([("t".to_string(), vec![0, 1])].into())
        );
        assert_eq!((s.generation, s.rack_id.as_deref()), (Some(7), Some("r1")));
        assert_eq!(s.effective_generation(), 7);
        assert_eq!(s.encode().unwrap(), v3, "franz writes what Java writes");
        assert_eq!(
            Subscription {
                version: 3,
                topics: vec!["t".into()],
                user_data: CooperativeStickyAssignor.user_data(7),
                owned_partitions: Some([("t".to_string(), vec![0, 1])].into()),
                generation: Some(7),
                rack_id: Some("r1".into()),
            }
            .encode()
            .unwrap(),
            v3
        );
        // v1: owned partitions, no generation; the generation is read from
        // the cooperative-sticky user data, as Java's assignor does.
        let v1 = hex(
            "0001 00000001 0001 74 00000004 00000007 00000001 0001 74 00000002 00000000 00000001",
        );
        let s = Subscription::decode(v1.clone()).unwrap();
        assert_eq!((s.generation, s.effective_generation()), (None, 7));
        assert_eq!(s.owned_partitions.as_ref().unwrap()["t"], vec![0, 1]);
        assert_eq!(s.encode().unwrap(), v1);
        // Nulls: user data, rack; generation -1.
        let nulls = hex("0003 00000001 0001 74 ffffffff 00000000 ffffffff ffff");
        let s = Subscription::decode(nulls).unwrap();
        assert!(s.user_data.is_empty());
        assert_eq!((s.generation, s.rack_id.clone()), (Some(-1), None));
        assert_eq!(s.owned_partitions, Some(TopicPartitions::new()));
        let a =
            Assignment::decode(hex("0003 00000001 0001 74 00000001 00000002 ffffffff")).unwrap();
        assert_eq!((a.version, a.partitions["t"].clone()), (3, vec![2]));
        // A hostile owned-partition count is an error, not an allocation.
        assert!(Subscription::decode(hex("0001 00000000 00000000 7fffffff")).is_err());
    }

    fn owning(id: &str, generation: i32, owned: &[i32]) -> Member {
        (
            id.to_string(),
            Subscription {
                version: 3,
                topics: vec!["t".into()],
                owned_partitions: Some([("t".to_string(), owned.to_vec())].into()),
                generation: Some(generation),
                ..Subscription::default()
            },
        )
    }

    fn given(out: &BTreeMap<String, TopicPartitions>, id: &str) -> Vec<i32> {
        out.get(id)
            .and_then(|t| t.get("t"))
            .cloned()
            .unwrap_or_default()
    }

    /// The KIP-429 invariant: nothing is given to one member while another
    /// still reports owning it.
    fn assert_no_transfer_in_round(members: &[Member], out: &BTreeMap<String, TopicPartitions>) {
        for (id, by_topic) in out {
            for p in by_topic.get("t").into_iter().flatten() {
                for (other, s) in members {
                    let claims = s
                        .owned_partitions
                        .as_ref()
                        .and_then(|o| o.get("t"))
                        .is_some_and(|ps| ps.contains(p));
                    assert!(
                        !(claims && other != id),
                        "t-{p} given to {id} while {other} owns it"
                    );
                }
            }
        }
    }

    #[test]
    fn cooperative_sticky_keeps_owners_and_moves_partitions_in_two_rounds() {
        let parts: TopicPartitions = [("t".to_string(), (0..6).collect())].into();
        let a = CooperativeStickyAssignor;
        // A fresh group: balanced.
        let fresh = a.assign(
            &members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &parts,
        );
        assert!(fresh.values().all(|t| t["t"].len() == 2), "{fresh:?}");
        // A fourth member joins: in this round it gets nothing that is
        // owned, and nobody loses what it keeps.
        let round1 = vec![
            owning("a", 1, &[0, 1]),
            owning("b", 1, &[2, 3]),
            owning("c", 1, &[4, 5]),
            owning("d", -1, &[]),
        ];
        let out1 = a.assign(&round1, &parts);
        assert_no_transfer_in_round(&round1, &out1);
        assert!(given(&out1, "d").is_empty());
        let total1: usize = out1.values().map(|t| t.get("t").map_or(0, Vec::len)).sum();
        assert_eq!(total1, 5, "one partition is being revoked: {out1:?}");
        // The follow-up round: the freed partitions go to the new member.
        let round2: Vec<Member> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| owning(id, 2, &given(&out1, id)))
            .collect();
        let out2 = a.assign(&round2, &parts);
        assert_no_transfer_in_round(&round2, &out2);
        let mut sizes: Vec<usize> = out2.values().map(|t| t["t"].len()).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![1, 1, 2, 2]);
        for id in ["a", "b", "c"] {
            assert!(
                given(&out1, id)
                    .iter()
                    .all(|p| given(&out2, id).contains(p)),
                "{id} keeps what it kept"
            );
        }
        assert_eq!(given(&out2, "d").len(), 1);
    }

    #[test]
    fn cooperative_sticky_trusts_the_newest_generation_and_withholds_double_claims() {
        let parts: TopicPartitions = [("t".to_string(), vec![0, 1])].into();
        // b's claim on 0 is stale (generation 3 < 5): a stays its owner,
        // but while b still reports it, nobody is given it this round.
        let round = vec![owning("a", 5, &[0]), owning("b", 3, &[0, 1])];
        let out = CooperativeStickyAssignor.assign(&round, &parts);
        assert_no_transfer_in_round(&round, &out);
        assert_eq!(given(&out, "b"), vec![1]);
        assert!(given(&out, "a").is_empty());
        // A partition that no longer exists, or of a topic no longer
        // subscribed, is not kept.
        let gone = vec![owning("a", 1, &[0, 7])];
        let out = CooperativeStickyAssignor.assign(&gone, &parts);
        assert_eq!(given(&out, "a"), vec![0, 1]);
    }
}
