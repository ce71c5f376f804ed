//! Offsets and records: list offsets by spec, delete records before an
//! offset. Both go to each partition's leader.

use franz_protocol::messages::*;

use crate::TopicPartition;
use crate::error::ClientError;

use super::*;

/// Which offset [`Admin::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the next offset to be written).
    Latest,
    /// The first offset whose timestamp is at or after this (ms).
    Timestamp(i64),
    /// The offset of the record with the largest timestamp.
    MaxTimestamp,
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::MaxTimestamp => -3,
            Self::Timestamp(t) => t,
        }
    }
}

/// An offset found by [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// Offset (-1 when no record matches a timestamp).
    pub offset: i64,
    /// Timestamp of that record (-1 for earliest/latest).
    pub timestamp: i64,
    /// Leader epoch.
    pub leader_epoch: i32,
}

impl Admin {
    /// Earliest, latest or by-timestamp offsets, asked of each leader
    /// (read-uncommitted: latest is the high watermark).
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
    ) -> Result<PerItem<TopicPartition, ListedOffset>, ClientError> {
        self.list_offsets_isolated(partitions, 0).await
    }

    /// [`list_offsets`](Self::list_offsets) at an isolation level (0
    /// read-uncommitted, 1 read-committed: latest is the last stable
    /// offset, before any open transaction).
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn list_offsets_isolated(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
        isolation_level: i8,
    ) -> Result<PerItem<TopicPartition, ListedOffset>, ClientError> {
        let timeout_ms = self.timeout_ms();
        let request = |topics: Vec<(String, Vec<(i32, OffsetSpec)>)>| ListOffsetsRequest {
            replica_id: -1,
            isolation_level,
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| list_offsets_request::ListOffsetsTopic {
                        name,
                        partitions: partitions
                            .into_iter()
                            .map(|(partition_index, spec)| {
                                list_offsets_request::ListOffsetsPartition {
                                    partition_index,
                                    timestamp: spec.wire(),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
                .collect(),
            timeout_ms,
            ..Default::default()
        };
        let read = |resp: ListOffsetsResponse| {
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r = ClientError::check(p.error_code, || format!("list offsets {tp}"), None)
                        .map(|()| ListedOffset {
                            offset: p.offset,
                            timestamp: p.timestamp,
                            leader_epoch: p.leader_epoch,
                        });
                    out.push((tp, r));
                }
            }
            out
        };
        Ok(self.per_leader(partitions, request, read).await)
    }

    /// Deletes records before the given offsets; returns the new low
    /// watermarks.
    ///
    /// # Cancel safety
    /// One request per item, awaited in turn: dropped part-way, earlier items are done, the
    /// current one may or may not be, and later ones are never sent.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<PerItem<TopicPartition, i64>, ClientError> {
        let timeout_ms = self.timeout_ms();
        let request = |topics: Vec<(String, Vec<(i32, i64)>)>| DeleteRecordsRequest {
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| delete_records_request::DeleteRecordsTopic {
                        name,
                        partitions: partitions
                            .into_iter()
                            .map(|(partition_index, offset)| {
                                delete_records_request::DeleteRecordsPartition {
                                    partition_index,
                                    offset,
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
                .collect(),
            timeout_ms,
            ..Default::default()
        };
        let read = |resp: DeleteRecordsResponse| {
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r =
                        ClientError::check(p.error_code, || format!("delete records {tp}"), None)
                            .map(|()| p.low_watermark);
                    out.push((tp, r));
                }
            }
            out
        };
        Ok(self.per_leader(before, request, read).await)
    }
}
