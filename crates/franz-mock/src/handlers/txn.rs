//! Transactions version 1: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn.

use super::*;

pub(super) fn init_producer_id(
    st: &mut State,
    caller: &Caller,
    req: m::InitProducerIdRequest,
) -> m::InitProducerIdResponse {
    if let Some(txn) = &req.transactional_id
        && !st.coordinates(caller.broker, txn)
    {
        return m::InitProducerIdResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        };
    }
    match st.init_producer_id(
        req.transactional_id.as_deref(),
        req.transaction_timeout_ms,
        req.producer_id,
        req.producer_epoch,
        Instant::now(),
    ) {
        Ok((producer_id, producer_epoch)) => m::InitProducerIdResponse {
            producer_id,
            producer_epoch,
            ..Default::default()
        },
        Err(code) => m::InitProducerIdResponse {
            error_code: code.code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    }
}

pub(super) fn add_partitions_to_txn(
    st: &mut State,
    caller: &Caller,
    req: m::AddPartitionsToTxnRequest,
) -> aptr::AddPartitionsToTxnResponse {
    let partitions: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), *p)))
        .collect();
    let results = if st.coordinates(caller.broker, &req.v3_and_below_transactional_id) {
        st.add_partitions_to_txn(
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            &partitions,
            Instant::now(),
        )
    } else {
        partitions
            .into_iter()
            .map(|tp| (tp, ErrorCode::NotCoordinator))
            .collect()
    };
    let mut by_topic: BTreeMap<String, Vec<aptr::AddPartitionsToTxnPartitionResult>> =
        BTreeMap::new();
    for ((topic, partition), code) in results {
        by_topic
            .entry(topic)
            .or_default()
            .push(aptr::AddPartitionsToTxnPartitionResult {
                partition_index: partition,
                partition_error_code: code.code(),
                ..Default::default()
            });
    }
    aptr::AddPartitionsToTxnResponse {
        results_by_topic_v3_and_below: by_topic
            .into_iter()
            .map(
                |(name, results_by_partition)| aptr::AddPartitionsToTxnTopicResult {
                    name,
                    results_by_partition,
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    }
}

pub(super) fn txn_offset_commit(
    st: &mut State,
    caller: &Caller,
    req: m::TxnOffsetCommitRequest,
) -> tocr::TxnOffsetCommitResponse {
    let offsets: Vec<((String, i32), Committed)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.clone(), p.partition_index),
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.clone(),
                    },
                )
            })
        })
        .collect();
    let code = match group_check(st, caller, &req.group_id) {
        Err(code) => code,
        Ok(()) => st.txn_offset_commit(
            &req.transactional_id,
            &req.group_id,
            req.producer_id,
            req.producer_epoch,
            req.generation_id,
            &req.member_id,
            offsets,
            Instant::now(),
        ),
    };
    tocr::TxnOffsetCommitResponse {
        topics: req
            .topics
            .into_iter()
            .map(|t| tocr::TxnOffsetCommitResponseTopic {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| tocr::TxnOffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: code.code(),
                        ..Default::default()
                    })
                    .collect(),
                name: t.name,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
