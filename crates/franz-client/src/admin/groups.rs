//! Consumer groups: list, describe, delete, their committed offsets and
//! lag, and altering or resetting those offsets. Each goes to the group's
//! coordinator.

use std::collections::{BTreeMap, HashMap};

use franz_protocol::messages::*;

use crate::TopicPartition;
use crate::error::ClientError;

use super::*;

/// A consumer group member as a transaction sees it (KIP-447): the
/// producer sends it with the offsets it commits in a transaction, and the
/// group coordinator refuses the commit if the member is no longer part of
/// that generation (a zombie after a rebalance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation (member epoch under KIP-848); -1 for a group used
    /// only to store offsets.
    pub generation_id: i32,
    /// The member id; empty for a group used only to store offsets.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// A group with no members, used only to store offsets (the broker
    /// checks nothing about generations).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// A group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...).
    pub state: String,
    /// Type (`classic` or `consumer`).
    pub group_type: String,
}

/// A member in [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub host: String,
    /// Assignment bytes (ConsumerProtocolAssignment for consumer groups).
    pub assignment: bytes::Bytes,
}

/// A group in [`Admin::describe_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (assignor).
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

/// A committed offset and its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    /// Committed offset (-1 when none).
    pub committed: i64,
    /// Commit metadata.
    pub metadata: Option<String>,
    /// The leader epoch of the record before the committed offset, as the
    /// committer sent it (-1 when unknown), for KIP-320 validation.
    pub leader_epoch: i32,
    /// Log end offset (filled by [`Admin::group_lag`]).
    pub end_offset: Option<i64>,
}

impl GroupOffset {
    /// Records the group has yet to consume, when both offsets are known.
    pub fn lag(&self) -> Option<i64> {
        let end = self.end_offset?;
        (self.committed >= 0).then(|| (end - self.committed).max(0))
    }
}

impl Admin {
    /// Every group on every broker.
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let md = self.client.refresh_metadata_for(&[]).await?;
        let mut out = Vec::new();
        let req = ListGroupsRequest::default();
        for id in md.brokers.keys() {
            let resp = self
                .send_routed("list groups", Route::Broker(*id), &req)
                .await?;
            ClientError::check(
                resp.error_code,
                || format!("list groups on broker {id}"),
                None,
            )?;
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                state: g.group_state,
                group_type: g.group_type,
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Describes groups (each asked of its coordinator).
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn describe_groups(
        &self,
        ids: &[&str],
    ) -> Result<PerItem<String, GroupDescription>, ClientError> {
        let mut out = Vec::new();
        for id in ids {
            let r = self
                .with_coordinator(id, |conn| async move {
                    let resp = conn
                        .send(&DescribeGroupsRequest {
                            groups: vec![id.to_string()],
                            ..Default::default()
                        })
                        .await?;
                    let g = resp
                        .groups
                        .into_iter()
                        .next()
                        .ok_or_else(|| ClientError::missing(id))?;
                    ClientError::check_group(g.error_code, id, "DescribeGroups", None)?;
                    Ok(GroupDescription {
                        group_id: g.group_id,
                        state: g.group_state,
                        protocol_type: g.protocol_type,
                        protocol: g.protocol_data,
                        members: g
                            .members
                            .into_iter()
                            .map(|m| GroupMember {
                                member_id: m.member_id,
                                instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                host: m.client_host,
                                assignment: m.member_assignment,
                            })
                            .collect(),
                    })
                })
                .await;
            out.push((id.to_string(), r));
        }
        Ok(out)
    }

    /// Deletes (empty) groups.
    ///
    /// # Cancel safety
    /// One request per item, awaited in turn: dropped part-way, earlier items are done, the
    /// current one may or may not be, and later ones are never sent.
    pub async fn delete_groups(&self, ids: &[&str]) -> Result<PerItem<String, ()>, ClientError> {
        let mut out = Vec::new();
        for id in ids {
            let r = self
                .with_coordinator(id, |conn| async move {
                    let resp = conn
                        .send(&DeleteGroupsRequest {
                            groups_names: vec![id.to_string()],
                            ..Default::default()
                        })
                        .await?;
                    let g = resp
                        .results
                        .into_iter()
                        .next()
                        .ok_or_else(|| ClientError::missing(id))?;
                    ClientError::check_group(g.error_code, id, "DeleteGroups", None)
                })
                .await;
            out.push((id.to_string(), r));
        }
        Ok(out)
    }

    /// A group's committed offsets (all partitions it has committed).
    ///
    /// Asks for stable offsets only (`require_stable`, as Java's consumer
    /// always does): while a transaction that commits offsets for the group
    /// is open, the broker answers UNSTABLE_OFFSET_COMMIT, which is
    /// retriable and retried here until the transaction ends, so a
    /// consumer never starts from an offset that is about to be aborted.
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn list_group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, GroupOffset>, ClientError> {
        self.with_coordinator(group, |conn| async move {
            let version = conn.version_of::<OffsetFetchRequest>()?;
            let req = if version >= 8 {
                OffsetFetchRequest {
                    groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
                        group_id: group.to_string(),
                        topics: None,
                        ..Default::default()
                    }],
                    require_stable: true,
                    ..Default::default()
                }
            } else {
                OffsetFetchRequest {
                    group_id: group.to_string(),
                    topics: None,
                    require_stable: version >= 7,
                    ..Default::default()
                }
            };
            let resp = conn.send(&req).await?;
            let mut out = BTreeMap::new();
            if version >= 8 {
                let g = resp
                    .groups
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::missing(group))?;
                ClientError::check_group(g.error_code, group, "OffsetFetch", None)?;
                for t in g.topics {
                    for p in t.partitions {
                        ClientError::check(
                            p.error_code,
                            || format!("offset of {}-{}", t.name, p.partition_index),
                            None,
                        )?;
                        out.insert(
                            TopicPartition::new(t.name.clone(), p.partition_index),
                            GroupOffset {
                                committed: p.committed_offset,
                                metadata: p.metadata,
                                leader_epoch: p.committed_leader_epoch,
                                end_offset: None,
                            },
                        );
                    }
                }
            } else {
                ClientError::check_group(resp.error_code, group, "OffsetFetch", None)?;
                for t in resp.topics {
                    for p in t.partitions {
                        out.insert(
                            TopicPartition::new(t.name.clone(), p.partition_index),
                            GroupOffset {
                                committed: p.committed_offset,
                                metadata: p.metadata,
                                leader_epoch: p.committed_leader_epoch,
                                end_offset: None,
                            },
                        );
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// A group's committed offsets with the log end offsets, so
    /// [`GroupOffset::lag`] is known.
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn group_lag(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, GroupOffset>, ClientError> {
        let mut offsets = self.list_group_offsets(group).await?;
        let specs: Vec<(TopicPartition, OffsetSpec)> = offsets
            .keys()
            .map(|tp| (tp.clone(), OffsetSpec::Latest))
            .collect();
        for (tp, r) in self.list_offsets(&specs).await? {
            if let (Ok(listed), Some(o)) = (r, offsets.get_mut(&tp)) {
                o.end_offset = Some(listed.offset);
            }
        }
        Ok(offsets)
    }

    /// Sets a group's committed offsets (the group must have no active
    /// members, as with the Java admin client).
    ///
    /// # Cancel safety
    /// Dropped after the request was written, it may or may not have been applied, and
    /// nothing reports which: describe the state again to find out.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<PerItem<TopicPartition, ()>, ClientError> {
        let mut topics: BTreeMap<String, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(tp.topic.clone()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: *offset,
                    committed_metadata: Some(String::new()),
                    ..Default::default()
                },
            );
        }
        let req = OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id_or_member_epoch: -1,
            member_id: String::new(),
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| offset_commit_request::OffsetCommitRequestTopic {
                        name,
                        partitions,
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let resp = self
            .with_coordinator(group, |conn| {
                let req = req.clone();
                async move { conn.send(&req).await }
            })
            .await?;
        let mut results = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                let r =
                    ClientError::check(p.error_code, || format!("commit {tp} for {group}"), None);
                results.insert(tp, r);
            }
        }
        Ok(collect_in_order(offsets.iter().map(|(tp, _)| tp), results))
    }

    /// Resets a group's offsets on these partitions to earliest, latest or a
    /// timestamp.
    ///
    /// # Cancel safety
    /// Dropped during the ListOffsets lookups, nothing changes; dropped after the
    /// OffsetCommit was written, the reset may or may not have happened.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        to: OffsetSpec,
    ) -> Result<PerItem<TopicPartition, ()>, ClientError> {
        let specs: Vec<(TopicPartition, OffsetSpec)> =
            partitions.iter().map(|tp| (tp.clone(), to)).collect();
        let mut targets = Vec::new();
        let mut out = Vec::new();
        for (tp, r) in self.list_offsets(&specs).await? {
            match r {
                Ok(listed) => {
                    // No record at/after the timestamp: go to the end.
                    let offset = if listed.offset < 0 {
                        self.list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
                            .await?
                            .into_iter()
                            .next()
                            .and_then(|(_, r)| r.ok())
                            .map_or(0, |l| l.offset)
                    } else {
                        listed.offset
                    };
                    targets.push((tp, offset));
                }
                Err(e) => out.push((tp, Err(e))),
            }
        }
        out.extend(self.alter_group_offsets(group, &targets).await?);
        Ok(out)
    }
}
