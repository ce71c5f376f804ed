//! Positions: resets by `auto_offset_reset` through ListOffsets, and topic metadata for assignment.

use super::*;

impl Consumer {
    pub(super) async fn reset_missing_positions(&mut self) -> Result<(), ConsumeError> {
        let missing: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.position.is_none() && s.error.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => {
                for tp in &missing {
                    if let Some(s) = self.partitions.get_mut(tp) {
                        s.error = Some(ConsumeError::NoOffset {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                        });
                    }
                }
                return Ok(());
            }
        };
        self.reset(&missing, spec, true).await
    }

    /// Moves `tps` to `spec` via ListOffsets, at the consumer's isolation
    /// level (so a read-committed reset to latest stops at the last stable
    /// offset). Retriable per-partition errors (a new topic whose leader the
    /// broker does not know yet, a moved leader) are retried with fresh
    /// metadata until `default_api_timeout`. Other per-partition errors are
    /// returned, or with `hold_errors` held against the partition.
    pub(super) async fn reset(
        &mut self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
        hold_errors: bool,
    ) -> Result<(), ConsumeError> {
        let deadline = Instant::now() + self.config.client.default_api_timeout;
        let mut todo: Vec<TopicPartition> = tps.to_vec();
        while !todo.is_empty() {
            let asks: Vec<(TopicPartition, OffsetSpec)> =
                todo.iter().map(|tp| (tp.clone(), spec)).collect();
            let listed = Admin::new(self.client.clone())
                .list_offsets_isolated(&asks, self.config.isolation_level.wire())
                .await?;
            todo.clear();
            let mut last_error = None;
            for (tp, r) in listed {
                match r {
                    Ok(o) => {
                        if let Some(s) = self.partitions.get_mut(&tp) {
                            // The epoch ListOffsets reports is the one of
                            // the record before the offset (Java's rule).
                            s.seek(o.offset, o.leader_epoch);
                        }
                    }
                    Err(e) if e.is_retriable() && Instant::now() < deadline => {
                        todo.push(tp);
                        last_error = Some(e);
                    }
                    Err(e) if hold_errors => {
                        if let Some(s) = self.partitions.get_mut(&tp) {
                            s.error = Some(e.into());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(e) = last_error {
                tracing::debug!(error = %e, "offset lookup will be retried");
                self.refresh_metadata().await;
                tokio::time::sleep(self.config.client.retry_backoff).await;
            }
        }
        Ok(())
    }

    pub(super) async fn topic_metadata(
        &self,
        topic: &str,
    ) -> Result<franz_client::TopicMetadata, ConsumeError> {
        if let Some(t) = self.client.metadata().topics.get(topic)
            && !t.partitions.is_empty()
        {
            return Ok(t.clone());
        }
        let deadline = Instant::now() + self.config.client.default_api_timeout;
        let client = &self.client;
        client
            .retry("consumer metadata", deadline, || {
                client.topic_metadata(topic)
            })
            .await
            .map_err(|e| match e {
                ClientError::UnknownTopic(t) => ConsumeError::UnknownTopic(t),
                ClientError::Timeout { .. } => ConsumeError::UnknownTopic(topic.to_string()),
                other => ConsumeError::Client(other),
            })
    }
}
