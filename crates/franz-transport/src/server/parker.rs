//! Parked records (error replies, dead letters), written beside the worker so that one stuck partition stalls only itself.

use super::*;

/// Writes parked records (error replies, dead letters) for the worker,
/// away from it: a clone goes into each park, which runs beside the
/// worker's loop, so that a dead-letter topic that cannot be written
/// stalls only its partition while every other partition goes on.
#[derive(Clone)]
pub(super) struct Parker {
    pub(super) producer: Producer,
    pub(super) dead_letter_suffix: String,
    /// How long one write may take before it counts as failed.
    pub(super) write_bound: Duration,
}

/// A park that finished, for the worker to apply.
pub(super) struct Parked {
    pub(super) tp: TopicPartition,
    pub(super) offset: i64,
    pub(super) attempts: u32,
    pub(super) park: Park,
    pub(super) result: Result<(), TransportError>,
}

impl Parker {
    /// Parks a record whose attempts are used: a request's error reply if
    /// it has one and it can be written, else a dead letter.
    pub(super) async fn park(
        &self,
        record: &ConsumerRecord,
        park: &Park,
        attempts: u32,
    ) -> Result<(), TransportError> {
        if let Some(reply) = &park.reply {
            match self.write_bounded(reply.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "the error reply cannot be written; dead-lettering the request");
                }
            }
        }
        self.dead_letter(record, &park.reason, attempts).await
    }

    /// Writes a record and waits for its acknowledgement, bounded, so that
    /// a target that is gone stalls only this partition's progress (it is
    /// retried after a backoff), not the server: other partitions' commits
    /// and handlers go on.
    pub(super) async fn write_bounded(
        &self,
        record: nest::OutgoingRecord,
    ) -> Result<(), TransportError> {
        let bound = self.write_bound;
        let topic = record.topic.clone();
        let write = async { self.producer.send(to_producer(record)).await?.await };
        match tokio::time::timeout(bound, write).await {
            Ok(r) => r.map(|_| ()).map_err(TransportError::from),
            Err(_) => Err(TransportError::Timeout {
                pattern: topic,
                after: bound,
            }),
        }
    }

    /// Parks a record for good in `<topic><dead_letter_suffix>`: unchanged,
    /// on its own partition when the dead-letter topic has it, with Spring
    /// Kafka's `kafka_dlt-*` headers (partition, offset and timestamp as
    /// big-endian integers, as Spring writes them) and the attempt count.
    /// Returns once the write is acknowledged.
    pub(super) async fn dead_letter(
        &self,
        record: &ConsumerRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<(), TransportError> {
        tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, attempts, %reason, "sending a record to the dead-letter topic");
        let topic = format!("{}{}", record.topic, self.dead_letter_suffix);
        let partition = match self.producer.client().topic_metadata(&topic).await {
            Ok(t) if t.partitions.iter().any(|p| p.partition == record.partition) => {
                Some(record.partition)
            }
            _ => None,
        };
        let mut headers: Vec<(String, bytes::Bytes)> = record
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    String::from_utf8(k.to_vec()).ok()?,
                    v.clone().unwrap_or_default(),
                ))
            })
            .collect();
        let b = |v: &[u8]| bytes::Bytes::copy_from_slice(v);
        headers.extend([
            (
                "kafka_dlt-original-topic".to_string(),
                b(record.topic.as_bytes()),
            ),
            (
                "kafka_dlt-original-partition".to_string(),
                b(&record.partition.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-offset".to_string(),
                b(&record.offset.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-timestamp".to_string(),
                b(&record.timestamp.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-timestamp-type".to_string(),
                b(match record.timestamp_type {
                    franz_client::franz_protocol::record::TimestampType::LogAppendTime => {
                        b"LogAppendTime"
                    }
                    _ => b"CreateTime",
                }),
            ),
            (
                "kafka_dlt-exception-message".to_string(),
                b(reason.as_bytes()),
            ),
            (
                "kafka_dlt-exception-fqcn".to_string(),
                b(b"franz_transport::RpcError"),
            ),
            (
                "kafka_dlt-attempts".to_string(),
                b(attempts.to_string().as_bytes()),
            ),
        ]);
        let out = nest::OutgoingRecord {
            topic,
            partition,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
            timestamp: None,
        };
        self.write_bounded(out).await?;
        metrics::counter!("franz_transport_dead_lettered_total", "pattern" => record.topic.to_string())
            .increment(1);
        Ok(())
    }
}
