//! The server's failure policy on the shared broker:
//!
//! - an event that always fails is handled `max_attempts` times and lands
//!   in `<topic>.DLT` with Spring's `kafka_dlt-*` headers and the attempt
//!   count, while another partition's events go on during its backoff;
//! - a non-retriable error dead-letters at once;
//! - a panicking handler is a failure like any other, and the server keeps
//!   serving;
//! - a request whose `kafka_replyPartition` is out of range is handled once
//!   and dead-lettered with the reason;
//! - with the dead-letter topic gone (auto-creation is off in the testkit),
//!   the partition stalls and nothing is committed past the failing record,
//!   while another partition's events go on without waiting for it;
//! - an event for a topic the broker will not create is a typed
//!   `UnknownTopic`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use common::{admin, bootstrap, create_topic, produce, read};
use franz_transport::Payload;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_client::{Client, ClientConfig};
use franz_consumer::{ConsumerRecord, TopicPartition};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{unique_group, unique_topic};
use franz_transport::{
    RpcError, TransportClient, TransportClientConfig, TransportServer, TransportServerConfig,
};

fn config(b: &str, group: &str) -> TransportServerConfig {
    let mut c = TransportServerConfig::new(b, group);
    c.max_attempts = Some(3);
    c.retry_backoff = Duration::from_millis(400);
    c.retry_backoff_max = Duration::from_secs(2);
    c.partitions_concurrently = 2;
    c
}

async fn committed(b: &str, group: &str, tp: &TopicPartition) -> Option<i64> {
    admin(b)
        .await
        .list_group_offsets(group)
        .await
        .unwrap()
        .get(tp)
        .map(|o| o.committed)
        .filter(|o| *o >= 0)
}

async fn wait_committed(b: &str, group: &str, tp: &TopicPartition, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(b, group, tp).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{tp:?} committed at {:?}, want {want}",
            committed(b, group, tp).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn header<'a>(r: &'a ConsumerRecord, name: &str) -> &'a [u8] {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .as_ref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_is_dead_lettered_while_other_partitions_go_on() {
    let b = bootstrap().await;
    let topic = unique_topic("orders.shipped");
    create_topic(&b, &topic, 2).await;
    let group = unique_group("failures");
    // partition -> (value, when handled)
    let seen: Arc<Mutex<Vec<(i32, String, Instant)>>> = Arc::default();
    let server = {
        let seen = Arc::clone(&seen);
        TransportServer::builder(config(&b, &group))
            .event(&topic, move |Payload(v): Payload<serde_json::Value>| {
                let seen = Arc::clone(&seen);
                async move {
                    let s = v.as_str().unwrap_or_default().to_string();
                    let p = if s.starts_with("p0") { 0 } else { 1 };
                    seen.lock().unwrap().push((p, s.clone(), Instant::now()));
                    match s.as_str() {
                        "p0-poison" => Err(RpcError::message("ledger says no")),
                        "p0-fatal" => Err(RpcError::fatal("malformed order")),
                        "p0-panic" => panic!("handler bug"),
                        _ => Ok(()),
                    }
                }
            })
            .start()
            .await
            .unwrap()
    };
    let client = TransportClient::connect(TransportClientConfig::new(&b, &unique_group("c")), &[])
        .await
        .unwrap();
    let emit = |p: i32, v: &str| {
        // Nest writes strings raw, unquoted.
        let (b, topic, v) = (b.clone(), topic.clone(), v.to_string());
        async move { produce(&b, &topic, p, &v, &[]).await }
    };
    emit(0, "p0-poison").await;
    emit(0, "p0-fatal").await;
    emit(0, "p0-panic").await;
    emit(0, "p0-after").await;
    for i in 0..5 {
        emit(1, &format!("p1-{i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let p0 = TopicPartition::new(&topic, 0);
    wait_committed(&b, &group, &p0, 4).await;
    wait_committed(&b, &group, &TopicPartition::new(&topic, 1), 5).await;
    let seen = seen.lock().unwrap().clone();
    let runs = |v: &str| seen.iter().filter(|(_, s, _)| s == v).count();
    assert_eq!(runs("p0-poison"), 3, "max_attempts runs, then the DLT");
    assert_eq!(runs("p0-fatal"), 1, "not retriable: dead-lettered at once");
    assert_eq!(runs("p0-panic"), 3, "a panic is a retriable failure");
    assert_eq!(runs("p0-after"), 1);
    // Partition 1 went on while partition 0 backed off: all of it was
    // handled before the poison event's last attempt.
    let last_poison = seen
        .iter()
        .filter(|(_, s, _)| s == "p0-poison")
        .map(|(_, _, t)| *t)
        .max()
        .unwrap();
    let last_p1 = seen
        .iter()
        .filter(|(p, _, _)| *p == 1)
        .map(|(_, _, t)| *t)
        .max()
        .unwrap();
    assert!(
        last_p1 < last_poison,
        "partition 1 waited for partition 0's backoff"
    );

    let dlt = read(&b, &format!("{topic}.DLT"), 3).await;
    let values: Vec<&[u8]> = dlt.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, vec![&b"p0-poison"[..], b"p0-fatal", b"p0-panic"]);
    let poison = &dlt[0];
    assert_eq!(poison.partition, 0, "on the record's own partition");
    assert_eq!(header(poison, "kafka_dlt-original-topic"), topic.as_bytes());
    assert_eq!(
        header(poison, "kafka_dlt-original-partition"),
        0i32.to_be_bytes()
    );
    assert_eq!(
        header(poison, "kafka_dlt-original-offset"),
        0i64.to_be_bytes()
    );
    assert_eq!(header(poison, "kafka_dlt-original-timestamp").len(), 8);
    assert_eq!(
        header(poison, "kafka_dlt-exception-message"),
        b"ledger says no"
    );
    assert_eq!(header(poison, "kafka_dlt-attempts"), b"3");
    assert_eq!(header(&dlt[1], "kafka_dlt-attempts"), b"1");
    assert!(
        std::str::from_utf8(header(&dlt[2], "kafka_dlt-exception-message"))
            .unwrap()
            .contains("handler bug")
    );
    client.close().await.unwrap();
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_an_invalid_reply_partition_is_handled_once_and_dead_lettered() {
    let b = bootstrap().await;
    let pattern = unique_topic("order.created");
    let reply = format!("{pattern}.reply");
    create_topic(&b, &pattern, 1).await;
    create_topic(&b, &reply, 1).await;
    let group = unique_group("badreply");
    let runs = Arc::new(Mutex::new(0u32));
    let server = {
        let runs = Arc::clone(&runs);
        TransportServer::builder(config(&b, &group))
            .message(&pattern, move |Payload(v): Payload<serde_json::Value>| {
                let runs = Arc::clone(&runs);
                async move {
                    *runs.lock().unwrap() += 1;
                    Ok(v)
                }
            })
            .start()
            .await
            .unwrap()
    };
    produce(
        &b,
        &pattern,
        0,
        "{\"id\":1}",
        &[
            ("kafka_correlationId", "c-1"),
            ("kafka_replyTopic", &reply),
            ("kafka_replyPartition", "9999"),
        ],
    )
    .await;
    produce(
        &b,
        &pattern,
        0,
        "{\"id\":2}",
        &[
            ("kafka_correlationId", "c-2"),
            ("kafka_replyTopic", &reply),
            ("kafka_replyPartition", "0"),
        ],
    )
    .await;
    wait_committed(&b, &group, &TopicPartition::new(&pattern, 0), 2).await;
    assert_eq!(*runs.lock().unwrap(), 2, "each request handled once");
    let dlt = read(&b, &format!("{pattern}.DLT"), 1).await;
    assert_eq!(dlt[0].value.as_deref(), Some(&b"{\"id\":1}"[..]));
    let why = std::str::from_utf8(header(&dlt[0], "kafka_dlt-exception-message")).unwrap();
    assert!(why.contains("reply"), "{why}");
    let replies = read(&b, &reply, 1).await;
    assert_eq!(
        replies[0].header("kafka_correlationId").map(|v| v.as_ref()),
        Some(&b"c-2"[..])
    );
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_dead_letter_topic_gone_nothing_is_committed_past_the_failure() {
    let b = bootstrap().await;
    let topic = unique_topic("orders.paid");
    create_topic(&b, &topic, 2).await;
    let group = unique_group("nodlt");
    // Events of partition 1 handled, with when.
    let other: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let server = {
        let other = Arc::clone(&other);
        TransportServer::builder(config(&b, &group))
            .event(
                &topic,
                move |Payload(v): Payload<serde_json::Value>, ctx: franz_transport::Ctx| {
                    let other = Arc::clone(&other);
                    async move {
                        if v == "bad" {
                            return Err(RpcError::fatal("always"));
                        }
                        if ctx.partition() == 1 {
                            let v = v.as_str().unwrap_or_default().to_string();
                            other.lock().unwrap().push((v, Instant::now()));
                        }
                        Ok(())
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    // The server created the DLT topic at start; take it away (the testkit
    // broker does not auto-create topics).
    let dlt = format!("{topic}.DLT");
    admin(&b).await.delete_topics(&[&dlt]).await.unwrap();
    // Deletion is asynchronous: wait until the name is gone.
    let probe = Client::connect(ClientConfig::new(&b)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe
        .refresh_metadata_for(std::slice::from_ref(&dlt))
        .await
        .is_ok_and(|md| md.topics.contains_key(&dlt))
    {
        assert!(Instant::now() < deadline, "{dlt} never went away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce(&b, &topic, 0, "ok", &[]).await;
    produce(&b, &topic, 0, "bad", &[]).await;
    produce(&b, &topic, 0, "ok", &[]).await;
    let tp = TopicPartition::new(&topic, 0);
    wait_committed(&b, &group, &tp, 1).await;
    // It stalls at the bad record: never past it, however long it tries.
    // Partition 1 goes on meanwhile, each event handled within moments of
    // its write, though every dead-letter write waits out its bound.
    let until = Instant::now() + Duration::from_secs(8);
    let mut written = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let c = committed(&b, &group, &tp).await;
        assert!(
            c <= Some(1),
            "committed {c:?} past the record that was neither handled nor dead-lettered"
        );
        let value = format!("other-{n}");
        produce(&b, &topic, 1, &value, &[]).await;
        written.push((value, Instant::now()));
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handled = other.lock().unwrap().clone();
    for (value, at) in &written {
        let (_, when) = handled
            .iter()
            .find(|(v, _)| v == value)
            .unwrap_or_else(|| panic!("{value} on partition 1 never handled: {handled:?}"));
        let waited = when.saturating_duration_since(*at);
        assert!(
            waited < Duration::from_secs(4),
            "{value} on partition 1 waited {waited:?} behind partition 0's dead-letter write"
        );
    }
    // The topic comes back: the dead letter is written and the rest follows.
    create_topic(&b, &format!("{topic}.DLT"), 2).await;
    wait_committed(&b, &group, &tp, 3).await;
    assert_eq!(read(&b, &format!("{topic}.DLT"), 1).await.len(), 1);
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_its_record_through_ctx() {
    let b = bootstrap().await;
    let topic = unique_topic("order.shipped");
    create_topic(&b, &topic, 2).await;
    let seen: Arc<Mutex<Option<franz_transport::Ctx>>> = Arc::default();
    let server = {
        let seen = Arc::clone(&seen);
        TransportServer::builder(config(&b, &unique_group("ctx")))
            .event(
                &topic,
                move |Payload(_id): Payload<String>, ctx: franz_transport::Ctx| {
                    let seen = Arc::clone(&seen);
                    async move {
                        *seen.lock().unwrap() = Some(ctx);
                        Ok(())
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    let producer = Producer::new(ProducerConfig::new(&b)).await.unwrap();
    let meta = producer
        .send(
            ProducerRecord::new(topic.as_str(), "0c3f9a12")
                .with_key("ada")
                .with_partition(1)
                .with_timestamp(1_700_000_000_123)
                .with_header("trace", "t-1"),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    producer.close(Duration::from_secs(5)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ctx = loop {
        if let Some(c) = seen.lock().unwrap().clone() {
            break c;
        }
        assert!(Instant::now() < deadline, "the handler never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (ctx.topic(), ctx.partition(), ctx.offset()),
        (topic.as_str(), 1, meta.offset)
    );
    assert_eq!(ctx.key().map(|k| k.as_ref()), Some(&b"ada"[..]));
    assert_eq!(ctx.timestamp(), 1_700_000_000_123);
    assert_eq!(ctx.header("trace").map(|v| v.as_ref()), Some(&b"t-1"[..]));
    assert_eq!(ctx.record().value.as_deref(), Some(&b"0c3f9a12"[..]));
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_broker_will_not_create_is_a_typed_unknown_topic() {
    // The shared broker has auto-creation off: the producer asks for it
    // (`allow_auto_topic_creation`, default true) and is refused.
    let b = bootstrap().await;
    let mut config = TransportClientConfig::new(&b, &unique_group("unknown-replies"));
    // How long the producer looks for the topic (Java's `max.block.ms`,
    // default 60 s, which rides out a broker restart).
    config.producer.max_block = Duration::from_secs(5);
    let client = TransportClient::connect(config, &[]).await.unwrap();
    let nowhere = unique_topic("nowhere");
    let started = Instant::now();
    match client.emit(&nowhere, &serde_json::json!({"n": 1})).await {
        Err(franz_transport::TransportError::Produce(
            franz_producer::ProduceError::UnknownTopic(t),
        )) => assert_eq!(t, nowhere),
        other => panic!("expected a typed UnknownTopic, got {other:?}"),
    }
    // Within the transport producer's 10 s to find a topic, well inside a
    // request's 30 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    client.close().await.unwrap();
}
