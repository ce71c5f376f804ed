//! One fetch round: a Fetch per broker (sessions, preferred replicas), applied to positions and buffers; errors become per-partition state.

use super::*;

impl Consumer {
    /// One Fetch per broker, for the partitions with nothing buffered, sent
    /// concurrently; each answer is applied (buffered) as it arrives, so a
    /// cancelled round keeps what came.
    pub(super) async fn fetch_round(&mut self, deadline: Instant) {
        let md = self.client.metadata();
        self.notice_recreated_topics(&md);
        let now = Instant::now();
        let mut by_node: BTreeMap<i32, BTreeMap<TopicPartition, FetchState>> = BTreeMap::new();
        let mut refresh = false;
        for (tp, s) in &mut self.partitions {
            let Some(position) = s
                .position
                .filter(|_| !s.paused && s.buffer.is_none() && s.error.is_none())
            else {
                continue;
            };
            if s.preferred_replica.is_some_and(|(_, until)| until <= now) {
                s.preferred_replica = None;
            }
            let leader = md
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.partition));
            let node = match s.preferred_replica {
                Some((node, _)) => Some(node),
                None => md.leader(&tp.topic, tp.partition).map(|b| b.node_id),
            };
            let state = FetchState {
                fetch_offset: position,
                last_fetched_epoch: s.position_epoch,
                current_leader_epoch: leader.map_or(-1, |p| p.leader_epoch),
                max_bytes: self.config.max_partition_fetch_bytes,
            };
            match node {
                Some(n) => {
                    by_node.entry(n).or_default().insert(tp.clone(), state);
                }
                None => refresh = true,
            }
        }
        if !refresh && by_node.is_empty() {
            // Everything is paused or buffered: nothing to fetch or look up
            // until the deadline (a caller racing a wake-up cancels this).
            if !self
                .partitions
                .values()
                .any(|s| s.buffer.is_some() && !s.paused)
            {
                tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
            }
            return;
        }
        if refresh || by_node.is_empty() {
            self.refresh_metadata().await;
            if by_node.is_empty() {
                // Nothing fetchable now: wait a little rather than spin.
                let pause = self
                    .config
                    .client
                    .retry_backoff
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                return;
            }
        }
        let max_wait = self
            .config
            .fetch_max_wait
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut requests = JoinSet::new();
        for (node, wanted) in by_node {
            let session = self
                .sessions
                .entry(node)
                .or_insert_with(|| FetchSession::new(self.config.fetch_sessions));
            let plan = session.next_request(&wanted);
            let req = self.fetch_request(&md, &plan, max_wait);
            let client = self.client.clone();
            let timeout = self.config.client.request_timeout + max_wait;
            requests.spawn(async move {
                let result = async {
                    let conn = client.connection(node, ConnectionKind::Fetch).await?;
                    conn.send_timeout(&req, timeout).await
                }
                .await;
                (node, wanted, result)
            });
        }
        let mut refresh = false;
        while let Some(joined) = requests.join_next().await {
            let Ok((node, wanted, result)) = joined else {
                continue;
            };
            match result {
                Ok(resp) => {
                    // KIP-951: partitions whose leader moved name the new
                    // one; the next round fetches from it.
                    self.client.follow_fetch_hints(&resp);
                    refresh |= self.apply(&md, node, &wanted, resp);
                }
                Err(e) => {
                    tracing::debug!(node, error = %e, "fetch failed");
                    if let Some(s) = self.sessions.get_mut(&node) {
                        s.handle_failure();
                    }
                    for tp in wanted.keys() {
                        if let Some(s) = self.partitions.get_mut(tp) {
                            s.preferred_replica = None;
                        }
                    }
                    if e.is_retriable() {
                        refresh = true;
                    } else {
                        // Only this broker's partitions are affected; the
                        // error is reported when nothing else is left.
                        self.failures.push_back(e.into());
                    }
                }
            }
        }
        if refresh {
            self.refresh_metadata().await;
        }
    }

    pub(super) fn fetch_request(
        &self,
        md: &franz_client::ClusterMetadata,
        plan: &SessionRequest,
        max_wait: Duration,
    ) -> FetchRequest {
        let mut topics: Vec<fetch_request::FetchTopic> = Vec::new();
        for (tp, state) in &plan.partitions {
            let partition = fetch_request::FetchPartition {
                partition: tp.partition,
                current_leader_epoch: state.current_leader_epoch,
                fetch_offset: state.fetch_offset,
                last_fetched_epoch: state.last_fetched_epoch,
                log_start_offset: -1,
                partition_max_bytes: state.max_bytes,
                ..Default::default()
            };
            match topics.iter_mut().find(|t| t.topic == tp.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(fetch_request::FetchTopic {
                    topic: tp.topic.clone(),
                    topic_id: md.topics.get(&tp.topic).map(|t| t.id).unwrap_or_default(),
                    partitions: vec![partition],
                    ..Default::default()
                }),
            }
        }
        let mut forgotten: Vec<fetch_request::ForgottenTopic> = Vec::new();
        for tp in &plan.forgotten {
            match forgotten.iter_mut().find(|t| t.topic == tp.topic) {
                Some(t) => t.partitions.push(tp.partition),
                None => forgotten.push(fetch_request::ForgottenTopic {
                    topic: tp.topic.clone(),
                    topic_id: md.topics.get(&tp.topic).map(|t| t.id).unwrap_or_default(),
                    partitions: vec![tp.partition],
                    ..Default::default()
                }),
            }
        }
        FetchRequest {
            replica_id: -1,
            max_wait_ms: i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            isolation_level: self.config.isolation_level.wire(),
            session_id: plan.session_id,
            session_epoch: plan.session_epoch,
            topics,
            forgotten_topics_data: forgotten,
            rack_id: self.config.client.client_rack.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// A topic whose id changed was deleted and created again: its log is a
    /// new one, so positions (and anything fetched) from the old one mean
    /// nothing there. Its partitions start over by `auto_offset_reset`.
    pub(super) fn notice_recreated_topics(&mut self, md: &franz_client::ClusterMetadata) {
        for name in self.topics.keys() {
            let Some(id) = md.topics.get(name).map(|t| t.id).filter(|id| !id.is_zero()) else {
                continue;
            };
            let old = match self.topic_ids.get_mut(name) {
                Some(known) => std::mem::replace(known, id),
                None => {
                    self.topic_ids.insert(name.clone(), id);
                    continue;
                }
            };
            if !old.is_zero() && old != id {
                tracing::warn!(topic = %name, "topic re-created (new topic id): positions start over");
                for (tp, s) in self.partitions.iter_mut() {
                    if tp.topic == *name {
                        *s = PartitionState::default();
                    }
                }
            }
        }
    }

    /// Applies one broker's answer: data is buffered, errors are held per
    /// partition. True when metadata should be refreshed.
    pub(super) fn apply(
        &mut self,
        md: &franz_client::ClusterMetadata,
        node: i32,
        wanted: &BTreeMap<TopicPartition, FetchState>,
        resp: FetchResponse,
    ) -> bool {
        let top = ErrorCode::from_code(resp.error_code);
        let trusted = self
            .sessions
            .get_mut(&node)
            .is_none_or(|s| s.handle_response(top, resp.session_id));
        if !trusted {
            tracing::debug!(node, code = %top, "fetch session reset; the next fetch is full");
            return matches!(
                top,
                ErrorCode::FetchSessionTopicIdError
                    | ErrorCode::UnknownTopicId
                    | ErrorCode::InconsistentTopicId
            );
        }
        let mut refresh = false;
        let opts = BatchDecodeOptions {
            verify_crc: self.config.check_crcs,
            ..BatchDecodeOptions::default()
        };
        let now = Instant::now();
        for t in resp.responses {
            // Fetch v13+ answers by topic id only.
            let name = if t.topic.is_empty() {
                md.topic_name(&t.topic_id)
                    .map(str::to_owned)
                    .unwrap_or_default()
            } else {
                t.topic
            };
            let Some(topic) = self.topics.get(&name).cloned() else {
                continue;
            };
            for p in t.partitions {
                let tp = TopicPartition::new(name.as_str(), p.partition_index);
                let Some(asked) = wanted.get(&tp) else {
                    continue;
                };
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                // Sought, reset or already filled since the request went out.
                if state.position != Some(asked.fetch_offset)
                    || state.buffer.is_some()
                    || state.error.is_some()
                {
                    continue;
                }
                let position = asked.fetch_offset;
                let code = ErrorCode::from_code(p.error_code);
                match code {
                    ErrorCode::None => {}
                    ErrorCode::OffsetOutOfRange if state.preferred_replica.is_some() => {
                        // The follower may lag the leader: ask the leader.
                        state.preferred_replica = None;
                        continue;
                    }
                    ErrorCode::OffsetOutOfRange => {
                        if self.config.auto_offset_reset == OffsetReset::None {
                            state.error = Some(ConsumeError::OffsetOutOfRange {
                                topic: name.clone(),
                                partition: p.partition_index,
                                offset: position,
                            });
                        } else {
                            tracing::info!(topic = %name, partition = p.partition_index, position, "offset out of range; resetting");
                            state.position = None;
                        }
                        continue;
                    }
                    c if c.is_retriable() || franz_client::code_invalidates_metadata(c) => {
                        state.preferred_replica = None;
                        refresh = true;
                        continue;
                    }
                    c => {
                        state.error = Some(ConsumeError::Broker {
                            topic: name.clone(),
                            partition: p.partition_index,
                            code: c,
                        });
                        continue;
                    }
                }
                state.high_watermark = Some(p.high_watermark);
                metrics::gauge!("franz_consumer_lag", "topic" => name.clone(), "partition" => p.partition_index.to_string())
                    .set((p.high_watermark - position).max(0) as f64);
                if p.preferred_read_replica >= 0 {
                    state.preferred_replica =
                        Some((p.preferred_read_replica, now + PREFERRED_REPLICA_TTL));
                }
                let diverging = &p.diverging_epoch;
                if diverging.epoch >= 0 || diverging.end_offset >= 0 {
                    state.diverged(
                        &tp,
                        position,
                        (diverging.epoch, diverging.end_offset),
                        self.config.auto_offset_reset,
                    );
                    continue;
                }
                let Some(data) = p.records.filter(|d| !d.is_empty()) else {
                    continue;
                };
                let aborted: Vec<Aborted> = p
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| Aborted {
                        first_offset: a.first_offset,
                        producer_id: a.producer_id,
                    })
                    .collect();
                let decoder = PartitionDecoder::new(
                    &topic,
                    p.partition_index,
                    data,
                    &aborted,
                    self.config.isolation_level,
                    &opts,
                );
                state.buffer = Some(Buffered {
                    decoder,
                    ready: VecDeque::new(),
                    ready_end: position,
                    ready_epoch: state.position_epoch,
                });
            }
        }
        refresh
    }

    pub(super) fn fetch_request_for_close(
        &self,
        md: &franz_client::ClusterMetadata,
        plan: &SessionRequest,
    ) -> FetchRequest {
        let mut req = self.fetch_request(md, plan, Duration::ZERO);
        req.min_bytes = 0;
        req
    }

    pub(super) async fn refresh_metadata(&self) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        if let Err(e) = self.client.refresh_metadata_for(&topics).await {
            tracing::debug!(error = %e, "consumer metadata refresh failed");
        }
    }
}
