//! What the `metrics` facade carries, read through an in-memory recorder
//! (its own test binary: a recorder is global to the process): after a
//! request, its reply and an event, the transport's, producer's,
//! consumer's and connections' figures are all there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::time::{Duration, Instant};

use common::{bootstrap, create_topics};
use franz_consumer::OffsetReset;
use franz_testkit::{unique_group, unique_topic};
use franz_transport::{
    Payload, RpcError, TransportClient, TransportClientConfig, TransportServer,
    TransportServerConfig,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Value, json};

/// A metric: name, labels, value.
type Entry = (String, Vec<(String, String)>, DebugValue);

/// One snapshot's entries. The debugging recorder hands counter increments
/// and histogram samples out once (a snapshot drains them), so the test
/// keeps every snapshot's entries and sums over them.
fn read(snapshotter: &Snapshotter) -> Vec<Entry> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            (key.name().to_string(), labels, value)
        })
        .collect()
}

fn counter(all: &[Entry], name: &str) -> u64 {
    all.iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| match v {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_consumer_connection_and_transport_figures_reach_the_facade() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let b = bootstrap().await;
    let charge = unique_topic("metrics.charge");
    let shipped = unique_topic("metrics.shipped");
    let reply = format!("{charge}.reply");
    create_topics(&b, &[(&charge, 1), (&reply, 1), (&shipped, 1)]).await;
    let mut config = TransportServerConfig::new(&b, &unique_group("metrics"));
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    let server = TransportServer::builder(config)
        .message(&charge, |Payload(v): Payload<Value>| async move {
            Ok::<_, RpcError>(v)
        })
        .event(&shipped, |Payload(_): Payload<Value>| async {})
        .start()
        .await
        .unwrap();
    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("metrics-replies")),
        &[&charge],
    )
    .await
    .unwrap();
    let _: Value = client.send(&charge, &json!({"n": 1})).await.unwrap();
    client.emit(&shipped, &json!({"n": 2})).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut all = Vec::new();
    let all = loop {
        all.extend(read(&snapshotter));
        if counter(&all, "franz_transport_records_total") >= 2 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the event was never handled: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Request, event and reply: three records produced and consumed.
    assert!(
        counter(&all, "franz_producer_records_total") >= 3,
        "{all:?}"
    );
    assert!(counter(&all, "franz_producer_batches_total") >= 3);
    assert!(counter(&all, "franz_consumer_records_total") >= 3);
    assert!(counter(&all, "franz_bytes_sent_total") > 0);
    assert!(counter(&all, "franz_bytes_received_total") > 0);
    let produce_latency = all.iter().any(|(n, labels, v)| {
        n == "franz_request_seconds"
            && labels.contains(&("api".into(), "ProduceRequest".into()))
            && matches!(v, DebugValue::Histogram(h) if !h.is_empty())
    });
    assert!(produce_latency, "request latency per API: {all:?}");
    let lag = all.iter().any(|(n, labels, _)| {
        n == "franz_consumer_lag" && labels.contains(&("topic".into(), shipped.clone()))
    });
    assert!(lag, "consumer lag per partition");
    assert!(
        all.iter()
            .any(|(n, _, _)| n == "franz_transport_handler_seconds"),
        "handler latency"
    );
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}
