//! Committing: `OffsetMarks` (what the application processed) and `GroupConsumer`'s commit calls, sent with the partitions' leader epochs and retried while the coordinator moves.

use super::*;

/// Offsets the application has processed (the next offset to read, per
/// partition), shared with the tasks that do the processing. The revoke
/// step, [`GroupConsumer::commit_marked`] and `close` commit them; a mark
/// for a partition the member no longer owns is dropped, never sent.
#[derive(Debug, Clone, Default)]
pub struct OffsetMarks {
    marks: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
}

impl OffsetMarks {
    /// Marks `tp` processed up to `next_offset` (exclusive). Marks never go
    /// backwards.
    pub fn mark(&self, tp: &TopicPartition, next_offset: i64) {
        let mut m = self.lock();
        let e = m.entry(tp.clone()).or_insert(next_offset);
        *e = (*e).max(next_offset);
    }

    /// Marks `record` processed.
    pub fn mark_record(&self, record: &ConsumerRecord) {
        self.mark(
            &TopicPartition::new(&*record.topic, record.partition),
            record.offset.saturating_add(1),
        );
    }

    /// The current marks.
    pub fn snapshot(&self) -> BTreeMap<TopicPartition, i64> {
        self.lock().clone()
    }

    pub(super) fn take(&self, tps: &[TopicPartition]) -> Vec<(TopicPartition, i64)> {
        let mut m = self.lock();
        tps.iter()
            .filter_map(|tp| m.remove(tp).map(|o| (tp.clone(), o)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, i64>> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GroupConsumer {
    /// The group's committed offsets for the partitions this member owns.
    ///
    /// # Cancel safety
    /// Cancel safe: it changes nothing. An OffsetFetch already written
    /// stays on the wire and its answer is discarded.
    pub async fn committed(&self) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        let owned = self.consumer.assignment();
        let all = Admin::new(self.consumer.client().clone())
            .list_group_offsets(&self.group.group_id)
            .await?;
        Ok(all
            .into_iter()
            .filter(|(tp, o)| owned.contains(tp) && o.committed >= 0)
            .map(|(tp, o)| (tp, o.committed))
            .collect())
    }

    /// Commits `record` as processed: the offset after it, the +1 that
    /// Kafka's committed offsets mean ("the next record to read").
    ///
    /// # Cancel safety
    /// As [`commit_offsets`](Self::commit_offsets): dropped after the
    /// OffsetCommit was written, the commit may or may not have happened;
    /// committing again is harmless.
    pub async fn commit_record(&mut self, record: &ConsumerRecord) -> Result<(), ConsumeError> {
        let tp = TopicPartition::new(&*record.topic, record.partition);
        self.commit_with_epochs(vec![(
            tp,
            record.offset.saturating_add(1),
            record.leader_epoch,
        )])
        .await
    }

    /// Commits the current position of every partition the member owns.
    ///
    /// # Cancel safety
    /// As [`commit_offsets`](Self::commit_offsets): dropped after the
    /// OffsetCommit was written, the commit may or may not have happened;
    /// committing again is harmless.
    pub async fn commit(&mut self) -> Result<(), ConsumeError> {
        let offsets: Vec<(TopicPartition, i64)> = self
            .consumer
            .assignment()
            .into_iter()
            .filter_map(|tp| self.consumer.position(&tp).map(|o| (tp, o)))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits the offsets marked in [`offset_marks`](Self::offset_marks).
    ///
    /// # Cancel safety
    /// As [`commit_offsets`](Self::commit_offsets): dropped after the
    /// OffsetCommit was written, the commit may or may not have happened.
    /// The marks are read, not taken, so the next `commit_marked` sends
    /// them again.
    pub async fn commit_marked(&mut self) -> Result<(), ConsumeError> {
        let offsets: Vec<(TopicPartition, i64)> = self.marks.snapshot().into_iter().collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` (the next offset to read, per partition) under this
    /// member's generation (KIP-848: member epoch). Offsets for partitions
    /// the member does not own are never sent: they fail the call with
    /// [`ConsumeError::NotAssigned`] after the owned ones are committed. A
    /// rebalance in the meantime fails the commit with
    /// [`ConsumeError::CommitFailed`], and the member rejoins.
    ///
    /// Each offset is committed with the leader epoch of the record before
    /// it when that is known (the offset is the partition's position), so a
    /// member restoring it detects a log truncated meanwhile (KIP-320).
    ///
    /// # Cancel safety
    /// Dropped before the OffsetCommit is written (while the coordinator is
    /// looked up or connected to), nothing is committed. Dropped after, the
    /// commit may or may not have happened; the member does not record the
    /// offsets as committed, so committing them again sends them again,
    /// which is harmless.
    pub async fn commit_offsets(
        &mut self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), ConsumeError> {
        let with_epochs = offsets
            .iter()
            .map(|(tp, o)| {
                let epoch = if self.consumer.position(tp) == Some(*o) {
                    self.consumer.position_epoch(tp)
                } else {
                    -1
                };
                (tp.clone(), *o, epoch)
            })
            .collect();
        self.commit_with_epochs(with_epochs).await
    }

    pub(super) async fn commit_with_epochs(
        &mut self,
        offsets: Vec<(TopicPartition, i64, i32)>,
    ) -> Result<(), ConsumeError> {
        let (identity, owned, not_owned) = {
            let g = self.shared.lock();
            let owned_now = g.machine.owned();
            let (owned, not_owned): (Vec<_>, Vec<_>) = offsets
                .iter()
                .cloned()
                .partition(|(tp, _, _)| owned_now.contains(tp));
            (g.machine.commit_identity(), owned, not_owned)
        };
        let not_owned_error = not_owned
            .first()
            .map(|(tp, _, _)| ConsumeError::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            });
        let owned: Vec<(TopicPartition, i64, i32)> = owned
            .into_iter()
            .filter(|(tp, o, _)| self.committed.get(tp) != Some(o))
            .collect();
        if owned.is_empty() {
            return not_owned_error.map_or(Ok(()), Err);
        }
        let Some((member_id, generation)) = identity else {
            let (tp, _, _) = &owned[0];
            return Err(ConsumeError::CommitFailed {
                topic: tp.topic.clone(),
                partition: tp.partition,
                code: ErrorCode::RebalanceInProgress,
            });
        };
        let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for (tp, offset, epoch) in &owned {
            topics.entry(tp.topic.as_str()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: *offset,
                    committed_leader_epoch: *epoch,
                    committed_metadata: Some(String::new()),
                    ..Default::default()
                },
            );
        }
        let req = OffsetCommitRequest {
            group_id: self.group.group_id.clone(),
            generation_id_or_member_epoch: generation,
            member_id,
            group_instance_id: self.group.group_instance_id.clone(),
            retention_time_ms: -1,
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| offset_commit_request::OffsetCommitRequestTopic {
                        name: name.to_string(),
                        partitions,
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let client = self.consumer.client().clone();
        let group_id = self.group.group_id.clone();
        let deadline = Instant::now() + client.config().default_api_timeout;
        let resp = client
            .retry("offset commit", deadline, || async {
                let conn = client
                    .coordinator_connection(CoordinatorType::Group, &group_id)
                    .await?;
                let resp = conn.send(&req).await?;
                // A moved coordinator is retried here; per-partition codes
                // are judged below.
                for t in &resp.topics {
                    for p in &t.partitions {
                        let code = ErrorCode::from_code(p.error_code);
                        if matches!(
                            code,
                            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
                        ) {
                            client.invalidate_coordinator(CoordinatorType::Group, &group_id);
                            return Err(ClientError::Group {
                                group: group_id.clone(),
                                api: "OffsetCommit",
                                code,
                                message: None,
                            });
                        }
                    }
                }
                Ok(resp)
            })
            .await?;
        for t in resp.topics {
            for p in t.partitions {
                let code = ErrorCode::from_code(p.error_code);
                if code == ErrorCode::None {
                    if let Some((tp, o, _)) = owned
                        .iter()
                        .find(|(tp, _, _)| tp.partition == p.partition_index && tp.topic == t.name)
                    {
                        self.committed.insert(tp.clone(), *o);
                    }
                    continue;
                }
                self.shared
                    .input(AppInput::CommitRefused { code, generation });
                return Err(ConsumeError::CommitFailed {
                    topic: t.name,
                    partition: p.partition_index,
                    code,
                });
            }
        }
        not_owned_error.map_or(Ok(()), Err)
    }
}
