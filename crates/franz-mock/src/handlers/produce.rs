//! Produce: idempotence and transactions are checked by the partition log.

use super::*;

pub(super) fn produce(
    st: &mut State,
    caller: &Caller,
    req: m::ProduceRequest,
) -> pr::ProduceResponse {
    let v = caller.version;
    let mut responses = Vec::new();
    for topic in req.topic_data {
        let max_message = st
            .topics
            .get(&topic.name)
            .map(|t| st.max_message_bytes(t))
            .unwrap_or(usize::MAX);
        let mut parts = Vec::new();
        for p in topic.partition_data {
            let mut out = pr::PartitionProduceResponse {
                index: p.index,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            let result = if !matches!(req.acks, -1..=1) {
                Err(ErrorCode::InvalidRequiredAcks)
            } else {
                st.check_leader(caller.broker, &topic.name, p.index, -1)
                    .map(|_| ())
            };
            let result = result.and_then(|()| {
                let records = p.records.clone().ok_or(ErrorCode::CorruptMessage)?;
                let tp = (topic.name.clone(), p.index);
                let State { topics, txns, .. } = &mut *st;
                let partition = topics
                    .get_mut(&topic.name)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(p.index).ok()?))
                    .ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let leader_epoch = partition.leader_epoch;
                let appended =
                    partition
                        .log
                        .append(records, leader_epoch, max_message, &|pid, epoch| {
                            txns.check_produce(pid, epoch, &tp)
                        })?;
                Ok((appended.base_offset, partition.log.log_start()))
            });
            match result {
                Ok((base, start)) => {
                    out.base_offset = base;
                    if v >= 5 {
                        out.log_start_offset = start;
                    }
                }
                Err(code) => out.error_code = code.code(),
            }
            parts.push(out);
        }
        responses.push(pr::TopicProduceResponse {
            name: topic.name,
            partition_responses: parts,
            ..Default::default()
        });
    }
    pr::ProduceResponse {
        responses,
        ..Default::default()
    }
}
