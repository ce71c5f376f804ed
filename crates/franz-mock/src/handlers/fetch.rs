//! Fetch (sessions, long poll, read_committed), ListOffsets and OffsetForLeaderEpoch.

use super::*;

/// Longest Fetch long poll the mock honours.
pub(super) const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// A partition a Fetch asks for, resolved.
pub(super) struct FetchItem {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    unknown: bool,
}

/// How a fetch relates to a session.
pub(super) enum SessionMode {
    None,
    Full(i32),
    Incremental(i32),
}

pub(super) async fn fetch(
    shared: &Shared,
    caller: &Caller,
    req: m::FetchRequest,
) -> fr::FetchResponse {
    let v = caller.version;
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0))
        .min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + wait;
    let read_committed = req.isolation_level == 1;
    let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = usize::try_from(req.max_bytes.max(0)).unwrap_or(0);
    let mode = {
        let mut st = shared.lock();
        match open_session(&mut st, v, &req, Instant::now()) {
            Ok(mode) => mode,
            Err(code) => {
                return fr::FetchResponse {
                    error_code: code.code(),
                    session_id: 0,
                    ..Default::default()
                };
            }
        }
    };
    loop {
        let notified = shared.changed_signal();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = shared.lock();
            let now = Instant::now();
            let items = fetch_items(&mut st, v, &req, &mode, now);
            let (resp, bytes, errors) =
                build_fetch(&mut st, caller, &items, &mode, read_committed, max_bytes);
            if bytes >= min_bytes.max(1) || errors || now >= deadline {
                if let SessionMode::Full(id) | SessionMode::Incremental(id) = mode
                    && let Some(s) = st.sessions.get_mut(id, now)
                {
                    s.epoch = s.epoch.wrapping_add(1).max(1);
                }
                return resp;
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

/// Opens, checks or closes the request's session.
pub(super) fn open_session(
    st: &mut State,
    v: i16,
    req: &m::FetchRequest,
    now: Instant,
) -> Result<SessionMode, ErrorCode> {
    if v < 7 {
        return Ok(SessionMode::None);
    }
    let (id, epoch) = (req.session_id, req.session_epoch);
    if epoch == -1 {
        if id != 0 {
            st.sessions.remove(id);
        }
        return Ok(SessionMode::None);
    }
    if epoch == 0 {
        if id != 0 {
            st.sessions.remove(id);
        }
        let mut parts = BTreeMap::new();
        for (topic, topic_id, p) in request_partitions(st, v, req) {
            parts.insert((topic, p.partition), session_partition(topic_id, p));
        }
        return Ok(SessionMode::Full(st.sessions.create(parts, now)));
    }
    let forgotten: Vec<(String, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|f| {
            let name = if v >= 13 {
                st.topic_name(f.topic_id).unwrap_or_default().to_string()
            } else {
                f.topic.clone()
            };
            f.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect();
    let updates = request_partitions(st, v, req);
    let session = st
        .sessions
        .get_mut(id, now)
        .ok_or(ErrorCode::FetchSessionIdNotFound)?;
    if session.epoch != epoch {
        return Err(ErrorCode::InvalidFetchSessionEpoch);
    }
    for tp in forgotten {
        session.partitions.remove(&tp);
    }
    for (topic, topic_id, p) in updates {
        let key = (topic, p.partition);
        let last_sent = session.partitions.get(&key).and_then(|s| s.last_sent);
        let mut sp = session_partition(topic_id, p);
        sp.last_sent = last_sent;
        session.partitions.insert(key, sp);
    }
    Ok(SessionMode::Incremental(id))
}

pub(super) fn session_partition(
    topic_id: Uuid,
    p: &m::fetch_request::FetchPartition,
) -> SessionPartition {
    SessionPartition {
        topic_id,
        fetch_offset: p.fetch_offset,
        max_bytes: p.partition_max_bytes,
        current_leader_epoch: p.current_leader_epoch,
        last_sent: None,
    }
}

/// The request's partitions with their topic names resolved.
pub(super) fn request_partitions<'a>(
    st: &State,
    v: i16,
    req: &'a m::FetchRequest,
) -> Vec<(String, Uuid, &'a m::fetch_request::FetchPartition)> {
    let mut out = Vec::new();
    for t in &req.topics {
        let (name, id) = if v >= 13 {
            (
                st.topic_name(t.topic_id).unwrap_or_default().to_string(),
                t.topic_id,
            )
        } else {
            (
                t.topic.clone(),
                st.topics.get(&t.topic).map_or(Uuid::ZERO, |x| x.id),
            )
        };
        for p in &t.partitions {
            out.push((name.clone(), id, p));
        }
    }
    out
}

pub(super) fn fetch_items(
    st: &mut State,
    v: i16,
    req: &m::FetchRequest,
    mode: &SessionMode,
    now: Instant,
) -> Vec<FetchItem> {
    match mode {
        SessionMode::Incremental(id) | SessionMode::Full(id) => st
            .sessions
            .get_mut(*id, now)
            .map(|s| {
                s.partitions
                    .iter()
                    .map(|((topic, partition), sp)| FetchItem {
                        topic: topic.clone(),
                        topic_id: sp.topic_id,
                        partition: *partition,
                        fetch_offset: sp.fetch_offset,
                        max_bytes: sp.max_bytes,
                        current_leader_epoch: sp.current_leader_epoch,
                        unknown: topic.is_empty(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        SessionMode::None => request_partitions(st, v, req)
            .into_iter()
            .map(|(topic, topic_id, p)| FetchItem {
                unknown: topic.is_empty(),
                topic,
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
            .collect(),
    }
}

/// Builds the answer; returns it with the record bytes it carries and
/// whether any partition has an error (which answers at once).
pub(super) fn build_fetch(
    st: &mut State,
    caller: &Caller,
    items: &[FetchItem],
    mode: &SessionMode,
    read_committed: bool,
    max_bytes: usize,
) -> (fr::FetchResponse, usize, bool) {
    let v = caller.version;
    let mut total = 0usize;
    let mut errors = false;
    let mut by_topic: Vec<fr::FetchableTopicResponse> = Vec::new();
    let incremental = matches!(mode, SessionMode::Incremental(_));
    let session_id = match mode {
        SessionMode::Full(id) | SessionMode::Incremental(id) => *id,
        SessionMode::None => 0,
    };
    let now = Instant::now();
    for item in items {
        let mut data = fr::PartitionData {
            partition_index: item.partition,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            preferred_read_replica: -1,
            records: Some(Bytes::new()),
            ..Default::default()
        };
        let mut marks = None;
        let checked = if item.unknown {
            Err(if v >= 13 {
                ErrorCode::UnknownTopicId
            } else {
                ErrorCode::UnknownTopicOrPartition
            })
        } else {
            st.check_leader(
                caller.broker,
                &item.topic,
                item.partition,
                item.current_leader_epoch,
            )
        };
        match checked {
            Err(code) => {
                data.error_code = code.code();
                errors = true;
            }
            Ok(p) => {
                let log = &p.log;
                let (hw, lso, start) = (
                    log.high_watermark(),
                    log.last_stable_offset(),
                    log.log_start(),
                );
                data.high_watermark = hw;
                data.last_stable_offset = lso;
                data.log_start_offset = start;
                marks = Some((hw, lso, start));
                if item.fetch_offset < start || item.fetch_offset > hw {
                    data.error_code = ErrorCode::OffsetOutOfRange.code();
                    errors = true;
                } else {
                    let limit = if read_committed { lso } else { hw };
                    let room = usize::try_from(item.max_bytes.max(0))
                        .unwrap_or(0)
                        .min(max_bytes.saturating_sub(total));
                    let (records, last) = if room == 0 && total > 0 {
                        (Bytes::new(), item.fetch_offset)
                    } else {
                        log.read(item.fetch_offset, limit, room.max(1))
                    };
                    if read_committed {
                        data.aborted_transactions = Some(
                            log.aborted_between(item.fetch_offset, last)
                                .into_iter()
                                .map(|a| fr::AbortedTransaction {
                                    producer_id: a.producer_id,
                                    first_offset: a.first_offset,
                                    ..Default::default()
                                })
                                .collect(),
                        );
                    }
                    total += records.len();
                    data.records = Some(records);
                }
            }
        }
        if incremental
            && data.error_code == 0
            && data.records.as_ref().is_none_or(Bytes::is_empty)
            && let Some(s) = st.sessions.get_mut(session_id, now)
            && s.partitions
                .get(&(item.topic.clone(), item.partition))
                .is_some_and(|sp| sp.last_sent == marks)
        {
            continue;
        }
        if session_id != 0
            && let Some(s) = st.sessions.get_mut(session_id, now)
            && let Some(sp) = s.partitions.get_mut(&(item.topic.clone(), item.partition))
        {
            sp.last_sent = marks;
        }
        let same_topic = by_topic.last().is_some_and(|t| {
            if v >= 13 {
                t.topic_id == item.topic_id
            } else {
                t.topic == item.topic
            }
        });
        if !same_topic {
            by_topic.push(fr::FetchableTopicResponse {
                topic: if v >= 13 {
                    String::new()
                } else {
                    item.topic.clone()
                },
                topic_id: if v >= 13 { item.topic_id } else { Uuid::ZERO },
                ..Default::default()
            });
        }
        if let Some(t) = by_topic.last_mut() {
            t.partitions.push(data);
        }
    }
    let resp = fr::FetchResponse {
        error_code: 0,
        session_id,
        responses: by_topic,
        ..Default::default()
    };
    (resp, total, errors)
}

pub(super) fn list_offsets(
    st: &State,
    caller: &Caller,
    req: m::ListOffsetsRequest,
) -> lor::ListOffsetsResponse {
    let v = caller.version;
    let read_committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| lor::ListOffsetsTopicResponse {
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut out = lor::ListOffsetsPartitionResponse {
                        partition_index: p.partition_index,
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                        ..Default::default()
                    };
                    match st.check_leader(
                        caller.broker,
                        &t.name,
                        p.partition_index,
                        p.current_leader_epoch,
                    ) {
                        Err(code) => out.error_code = code.code(),
                        Ok(part) => {
                            let log = &part.log;
                            let (offset, ts) = match p.timestamp {
                                -1 => (
                                    if read_committed {
                                        log.last_stable_offset()
                                    } else {
                                        log.high_watermark()
                                    },
                                    -1,
                                ),
                                -2 | -4 | -5 => (log.log_start(), -1),
                                -3 => log.max_timestamp().unwrap_or((-1, -1)),
                                ts => log.offset_for_timestamp(ts).unwrap_or((-1, -1)),
                            };
                            out.offset = offset;
                            out.timestamp = ts;
                            if v >= 4 {
                                out.leader_epoch = part.leader_epoch;
                            }
                        }
                    }
                    out
                })
                .collect(),
            name: t.name,
            ..Default::default()
        })
        .collect();
    lor::ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

pub(super) fn offset_for_leader_epoch(
    st: &State,
    caller: &Caller,
    req: m::OffsetForLeaderEpochRequest,
) -> oflr::OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| oflr::OffsetForLeaderTopicResult {
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut out = oflr::EpochEndOffset {
                        partition: p.partition,
                        leader_epoch: -1,
                        end_offset: -1,
                        ..Default::default()
                    };
                    match st.check_leader(
                        caller.broker,
                        &t.topic,
                        p.partition,
                        p.current_leader_epoch,
                    ) {
                        Err(code) => out.error_code = code.code(),
                        Ok(part) => {
                            // The largest epoch at or below the one asked, and where the next began.
                            let at = part.epochs.iter().rposition(|(e, _)| *e <= p.leader_epoch);
                            if let Some(i) = at {
                                out.leader_epoch = part.epochs[i].0;
                                out.end_offset = part
                                    .epochs
                                    .get(i + 1)
                                    .map_or(part.log.high_watermark(), |(_, start)| *start);
                            }
                        }
                    }
                    out
                })
                .collect(),
            topic: t.topic,
            ..Default::default()
        })
        .collect();
    oflr::OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}
