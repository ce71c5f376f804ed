//! The transport between franz peers on the shared broker: request and
//! reply, remote errors, events committed only after success, dead letters
//! for undeserializable events, and key-based partitioning.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use common::{admin, bootstrap, create_topics};
use franz_transport::Payload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use franz_consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use franz_producer::partition_for_key;
use franz_testkit::{unique_group, unique_topic};
use franz_transport::{
    RpcError, TransportClient, TransportClientConfig, TransportError, TransportServer,
    TransportServerConfig,
};
use serde_json::{Value, json};

#[derive(serde::Deserialize, serde::Serialize)]
struct Charge {
    order: u64,
    cents: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_replies_and_remote_errors_are_typed() {
    let b = bootstrap().await;
    let sum = unique_topic("math.sum");
    let charge = unique_topic("billing.charge");
    let reply_sum = format!("{sum}.reply");
    let reply_charge = format!("{charge}.reply");
    create_topics(
        &b,
        &[(&sum, 3), (&charge, 1), (&reply_sum, 2), (&reply_charge, 1)],
    )
    .await;

    let server = TransportServer::builder(TransportServerConfig::new(&b, &unique_group("srv")))
        .message(&sum, |Payload(xs): Payload<Vec<i64>>| async move {
            Ok::<_, RpcError>(xs.iter().sum::<i64>())
        })
        .message(&charge, |Payload(c): Payload<Charge>| async move {
            if c.cents == 0 {
                return Err(RpcError::message("nothing to charge"));
            }
            Ok(json!({"order": c.order, "charged": c.cents}))
        })
        .start()
        .await
        .unwrap();
    let reply_group = unique_group("cli");
    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &reply_group),
        &[&sum, &charge],
    )
    .await
    .unwrap();

    let total: i64 = client.send(&sum, &vec![1, 2, 3]).await.unwrap();
    assert_eq!(total, 6);
    // The reply reader commits once it goes idle (not per reply, which
    // would put an OffsetCommit in front of every next reply).
    let admin = admin(&b).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let committed = admin.list_group_offsets(&reply_group).await.unwrap();
        let total: i64 = committed.values().map(|o| o.committed).sum();
        if total == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reply offsets not committed: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several requests in flight at once, each matched by correlation id.
    let client = Arc::new(client);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20i64 {
        let (client, sum) = (Arc::clone(&client), sum.clone());
        tasks.spawn(async move { (i, client.send::<_, i64>(&sum, &[i, i]).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done.unwrap();
        assert_eq!(r.unwrap(), 2 * i);
    }
    let client = Arc::into_inner(client).unwrap();
    let receipt: Value = client
        .send(
            &charge,
            &Charge {
                order: 7,
                cents: 1250,
            },
        )
        .await
        .unwrap();
    assert_eq!(receipt, json!({"order": 7, "charged": 1250}));

    match client
        .send::<_, Value>(&charge, &Charge { order: 8, cents: 0 })
        .await
    {
        Err(TransportError::Remote(e)) => {
            assert_eq!(
                e.raw,
                json!({"status": "error", "message": "nothing to charge"})
            );
            assert_eq!(e.status.as_deref(), Some("error"));
            assert_eq!(e.message.as_deref(), Some("nothing to charge"));
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    // A payload the handler cannot take is a typed remote error, not a hang.
    match client
        .send::<_, Value>(&charge, &json!({"order": "x"}))
        .await
    {
        Err(TransportError::Remote(e)) => {
            let m = e.message.clone().unwrap_or_default();
            assert!(
                m.starts_with("payload at ") && m.contains(" does not decode as "),
                "{e:?}"
            );
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    // A pattern this client did not register replies for.
    assert!(matches!(
        client.send::<_, Value>("not.registered", &1).await,
        Err(TransportError::NoReplyPartition(_))
    ));

    client.close().await.unwrap();
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_committed_only_after_the_handler_succeeds() {
    let b = bootstrap().await;
    let created = unique_topic("orders.created");
    create_topics(&b, &[(&created, 1)]).await;
    let group = unique_group("events");

    let calls = Arc::new(AtomicU32::new(0));
    let handled = Arc::new(AtomicU32::new(0));
    let server = {
        let (calls, handled) = (Arc::clone(&calls), Arc::clone(&handled));
        TransportServer::builder(TransportServerConfig::new(&b, &group))
            .event(&created, move |Payload(c): Payload<Charge>| {
                let (calls, handled) = (Arc::clone(&calls), Arc::clone(&handled));
                async move {
                    // The first two attempts fail: the event must come back.
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err(RpcError::message("ledger unavailable"));
                    }
                    assert_eq!(c.order, 42);
                    handled.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap()
    };
    let client = TransportClient::connect(TransportClientConfig::new(&b, &unique_group("c")), &[])
        .await
        .unwrap();
    client
        .emit(
            &created,
            &Charge {
                order: 42,
                cents: 1,
            },
        )
        .await
        .unwrap();
    // Not deserializable as a Charge: parked, not lost, not retried forever.
    client.emit(&created, "not json at all").await.unwrap();

    let tp = TopicPartition::new(created.as_str(), 0);
    let admin = admin(&b).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = admin.list_group_offsets(&group).await.unwrap();
        if committed.get(&tp).map(|o| o.committed) == Some(2) {
            break;
        }
        if handled.load(Ordering::SeqCst) == 0 {
            assert_ne!(
                committed.get(&tp).map(|o| o.committed),
                Some(1),
                "committed past an event whose handler had not succeeded"
            );
        }
        assert!(
            Instant::now() < deadline,
            "offsets never committed: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1);

    // The bad event is in the dead-letter topic, unchanged, with the reason.
    let mut config = ConsumerConfig::new(&b);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut dl = Consumer::new(config).await.unwrap();
    dl.assign_topic(&format!("{created}.DLT")).await.unwrap();
    let mut parked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while parked.is_empty() && Instant::now() < deadline {
        parked = dl.poll(Duration::from_millis(300)).await.unwrap();
    }
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].value.as_deref(), Some(&b"not json at all"[..]));
    let why = parked[0].header("kafka_dlt-exception-message").unwrap();
    assert!(
        std::str::from_utf8(why).unwrap().contains("payload"),
        "{why:?}"
    );

    client.close().await.unwrap();
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_events_land_on_the_murmur2_partition() {
    let b = bootstrap().await;
    let topic = unique_topic("keyed");
    create_topics(&b, &[(&topic, 5)]).await;
    let client = TransportClient::connect(TransportClientConfig::new(&b, &unique_group("k")), &[])
        .await
        .unwrap();
    for key in ["order-1", "order-2", "customer-99"] {
        client
            .emit_keyed(&topic, key, &json!({"k": key}))
            .await
            .unwrap();
    }
    let mut config = ConsumerConfig::new(&b);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(config).await.unwrap();
    c.assign_topic(&topic).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 3 && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(300)).await.unwrap());
    }
    assert_eq!(got.len(), 3);
    for r in got {
        let key = r.key.unwrap();
        assert_eq!(r.partition, partition_for_key(&key, 5), "{key:?}");
    }
    client.close().await.unwrap();
}

/// `partitions_concurrently`: records of different partitions are handled
/// at the same time (up to the setting), records of one partition strictly
/// one after another, in order; every offset is committed. With the
/// default of 1 (as NestJS), handlers never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_handled_concurrently_and_each_in_order() {
    let b = bootstrap().await;
    for (concurrency, overlap) in [(4usize, true), (1, false)] {
        let topic = unique_topic("audit.concurrent");
        create_topics(&b, &[(&topic, 4)]).await;
        let group = unique_group("concurrent");
        // One key per partition.
        let mut keys: Vec<(i32, String)> = Vec::new();
        for i in 0.. {
            let key = format!("k{i}");
            let p = partition_for_key(key.as_bytes(), 4);
            if !keys.iter().any(|(q, _)| *q == p) {
                keys.push((p, key));
            }
            if keys.len() == 4 {
                break;
            }
        }
        let in_flight = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let seen: Arc<std::sync::Mutex<Vec<(String, u64)>>> = Arc::default();
        let mut config = TransportServerConfig::new(&b, &group);
        config.partitions_concurrently = concurrency;
        let server = {
            let (in_flight, most, seen) =
                (Arc::clone(&in_flight), Arc::clone(&most), Arc::clone(&seen));
            TransportServer::builder(config)
                .event(&topic, move |Payload(e): Payload<Value>| {
                    let (in_flight, most, seen) =
                        (Arc::clone(&in_flight), Arc::clone(&most), Arc::clone(&seen));
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        let key = e["key"].as_str().unwrap_or_default().to_string();
                        seen.lock()
                            .unwrap()
                            .push((key, e["seq"].as_u64().unwrap_or(0)));
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .start()
                .await
                .unwrap()
        };
        let client =
            TransportClient::connect(TransportClientConfig::new(&b, &unique_group("c")), &[])
                .await
                .unwrap();
        for seq in 0..3u64 {
            for (_, key) in &keys {
                client
                    .emit_keyed(&topic, key.clone(), &json!({"key": key, "seq": seq}))
                    .await
                    .unwrap();
            }
        }
        let admin = admin(&b).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let committed: i64 = admin
                .list_group_offsets(&group)
                .await
                .unwrap()
                .values()
                .map(|o| o.committed)
                .sum();
            if committed == 12 && seen.lock().unwrap().len() == 12 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "concurrency {concurrency}: {committed} of 12 committed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (_, key) in &keys {
            let order: Vec<u64> = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(order, vec![0, 1, 2], "concurrency {concurrency}, key {key}");
        }
        let most = most.load(Ordering::SeqCst);
        if overlap {
            assert!(most >= 2, "partitions were never handled at once ({most})");
        } else {
            assert_eq!(most, 1, "handlers overlapped with concurrency 1");
        }
        client.close().await.unwrap();
        server
            .shutdown(std::time::Duration::from_secs(30))
            .await
            .unwrap();
    }
}

/// Events as consume-transform-produce under exactly-once: what a handler
/// writes through its `Outbox` commits with the event's offset, and a
/// read_committed reader sees each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_records_commit_with_the_event_under_exactly_once() {
    let b = bootstrap().await;
    let events = unique_topic("eos.events");
    let derived = unique_topic("eos.derived");
    create_topics(&b, &[(&events, 2), (&derived, 1)]).await;
    let group = unique_group("eos-events");
    let mut config = TransportServerConfig::new(&b, &group);
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config.exactly_once = Some(franz_transport::ExactlyOnce::new(unique_topic(
        "eos-events-tx",
    )));
    let out = derived.clone();
    let server = TransportServer::builder(config)
        .event(
            &events,
            move |Payload(n): Payload<u64>, outbox: franz_transport::Outbox| {
                let out = out.clone();
                async move {
                    outbox
                        .send(franz_producer::ProducerRecord::new(
                            out.as_str(),
                            (n * 10).to_string(),
                        ))
                        .await?;
                    Ok::<_, RpcError>(())
                }
            },
        )
        .start()
        .await
        .unwrap();
    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("eos-ev-cli")),
        &[],
    )
    .await
    .unwrap();
    for n in 0..20u64 {
        client.emit(&events, &n).await.unwrap();
    }
    let mut c = ConsumerConfig::new(&b);
    c.auto_offset_reset = OffsetReset::Earliest;
    c.isolation_level = franz_consumer::IsolationLevel::ReadCommitted;
    let mut reader = Consumer::new(c).await.unwrap();
    reader.assign_topic(&derived).await.unwrap();
    let mut got: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 20 {
        assert!(Instant::now() < deadline, "read {} of 20", got.len());
        for r in reader.poll(Duration::from_millis(300)).await.unwrap() {
            got.push(
                std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
    }
    got.sort_unstable();
    assert_eq!(got, (0..20).map(|n| n * 10).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed: i64 = admin(&b)
            .await
            .list_group_offsets(&group)
            .await
            .unwrap()
            .values()
            .map(|o| o.committed)
            .sum();
        if committed == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed} of 20");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(10)).await.unwrap();
}
