//! Active producers per partition (DescribeProducers), asked of leaders.

use franz_protocol::messages::*;

use crate::TopicPartition;
use crate::error::ClientError;

use super::*;

/// A producer in [`Admin::describe_producers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// Producer id.
    pub producer_id: i64,
    /// Epoch.
    pub producer_epoch: i32,
    /// Last sequence written.
    pub last_sequence: i32,
    /// Timestamp of its last write.
    pub last_timestamp: i64,
    /// Start offset of its open transaction (-1 when none).
    pub current_txn_start_offset: i64,
}

impl Admin {
    /// Active idempotent and transactional producers per partition.
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn describe_producers(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<PerItem<TopicPartition, Vec<ProducerState>>, ClientError> {
        let items: Vec<(TopicPartition, ())> =
            partitions.iter().map(|tp| (tp.clone(), ())).collect();
        let request = |topics: Vec<(String, Vec<(i32, ())>)>| DescribeProducersRequest {
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| describe_producers_request::TopicRequest {
                        name,
                        partition_indexes: partitions.into_iter().map(|(p, ())| p).collect(),
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let read = |resp: DescribeProducersResponse| {
            let mut out = Vec::new();
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r = ClientError::check(
                        p.error_code,
                        || format!("describe producers {tp}"),
                        p.error_message,
                    )
                    .map(|()| {
                        p.active_producers
                            .into_iter()
                            .map(|s| ProducerState {
                                producer_id: s.producer_id,
                                producer_epoch: s.producer_epoch,
                                last_sequence: s.last_sequence,
                                last_timestamp: s.last_timestamp,
                                current_txn_start_offset: s.current_txn_start_offset,
                            })
                            .collect()
                    });
                    out.push((tp, r));
                }
            }
            out
        };
        Ok(self.per_leader(&items, request, read).await)
    }
}
