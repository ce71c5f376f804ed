//! Tower layers around handlers, on the shared broker:
//! - a `TimeoutLayer` turns a slow request into a prompt error reply while
//!   quick ones are answered;
//! - a `ConcurrencyLimitLayer(1)` holds handlers of four partitions, run
//!   concurrently otherwise, to one at a time;
//! - a layer of one's own (`layer_fn`) sees every record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bootstrap, create_topics};
use franz_consumer::OffsetReset;
use franz_testkit::{unique_group, unique_topic};
use franz_transport::{
    Incoming, Payload, RpcError, TransportClient, TransportClientConfig, TransportError,
    TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};
use tower::limit::ConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_bound_time_and_concurrency_and_see_every_record() {
    let b = bootstrap().await;
    let charge = unique_topic("layers.charge");
    let shipped = unique_topic("layers.shipped");
    let reply = format!("{charge}.reply");
    create_topics(&b, &[(&charge, 1), (&reply, 1), (&shipped, 4)]).await;

    let seen_by_layer = Arc::new(AtomicUsize::new(0));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let done = Arc::new(AtomicUsize::new(0));
    let mut config = TransportServerConfig::new(&b, &unique_group("layers"));
    config.partitions_concurrently = 4;
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    let server = {
        let (running, most, done) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
        let seen = Arc::clone(&seen_by_layer);
        TransportServer::builder(config)
            .message(&charge, |Payload(v): Payload<Value>| async move {
                if v["slow"] == true {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<_, RpcError>(json!({"charged": v["cents"]}))
            })
            .event(&shipped, move |Payload(_): Payload<Value>| {
                let (running, most, done) =
                    (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
            .layer(TimeoutLayer::new(Duration::from_millis(500)))
            .layer(ConcurrencyLimitLayer::new(1))
            .layer(tower::layer::layer_fn(move |inner| {
                let seen = Arc::clone(&seen);
                tower::util::MapRequest::new(inner, move |incoming: Incoming| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    incoming
                })
            }))
            .start()
            .await
            .unwrap()
    };

    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("layers-replies")),
        &[&charge],
    )
    .await
    .unwrap();
    let quick: Value = client.send(&charge, &json!({"cents": 5})).await.unwrap();
    assert_eq!(quick, json!({"charged": 5}));
    let started = Instant::now();
    match client
        .send::<_, Value>(&charge, &json!({"cents": 6, "slow": true}))
        .await
    {
        Err(TransportError::Remote(e)) => {
            let message = e.message.unwrap_or_default();
            assert!(message.contains("timed out"), "{message}");
        }
        other => panic!("expected the timeout layer's error reply, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered at the layer's deadline, not the handler's: {:?}",
        started.elapsed()
    );

    // Twenty events over four partitions, handled concurrently by the
    // server, one at a time through the limit.
    for i in 0..20 {
        client
            .emit_keyed(&shipped, format!("order-{i}"), &json!({"i": i}))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "events not all handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "one handler at a time");
    assert_eq!(seen_by_layer.load(Ordering::SeqCst), 22, "every record");
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}
