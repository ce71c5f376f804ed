//! The client under load and change: concurrent sends with no cross-talk
//! while a pattern is added, cancelled sends that leave nothing behind,
//! reply partitions that stay put while instances come and go, and a clear
//! error for an instance left without a reply partition.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{bootstrap, create_topics};
use franz_testkit::{unique_group, unique_topic};
use franz_transport::{
    Payload, RpcError, TransportClient, TransportClientConfig, TransportError, TransportServer,
    TransportServerConfig,
};
use futures_util::future::join_all;
use serde_json::Value;

async fn echo_server(b: &str, patterns: &[&str]) -> TransportServer {
    let mut builder =
        TransportServer::builder(TransportServerConfig::new(b, &unique_group("echo")));
    for p in patterns {
        builder = builder.message(p, |Payload(v): Payload<Value>| async move {
            Ok::<_, RpcError>(v)
        });
    }
    builder.start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sends_get_their_own_replies_while_a_pattern_is_added() {
    let b = bootstrap().await;
    let first = unique_topic("load.a");
    let second = unique_topic("load.b");
    create_topics(
        &b,
        &[
            (&first, 4),
            (&second, 1),
            (&format!("{first}.reply"), 1),
            (&format!("{second}.reply"), 1),
        ],
    )
    .await;
    let server = echo_server(&b, &[&first, &second]).await;
    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("load-cli")),
        &[&first],
    )
    .await
    .unwrap();

    let sends = join_all((0..1_000u64).map(|i| {
        let client = &client;
        let first = &first;
        async move {
            let got: u64 = client.send(first, &i).await.unwrap();
            assert_eq!(got, i, "a reply for another request");
        }
    }));
    let add = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.add_patterns(&[&second]).await.unwrap();
        let got: String = client.send(&second, "late").await.unwrap();
        assert_eq!(got, "late");
    };
    tokio::join!(sends, add);
    assert_eq!(client.pending_requests(), 0);
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(30)).await.unwrap();
}

/// Polls `fut` `n` times, then drops it.
async fn poll_then_drop<F: Future>(fut: F, n: usize) {
    let mut fut: Pin<Box<F>> = Box::pin(fut);
    for _ in 0..n {
        std::future::poll_fn(|cx| {
            let _ = fut.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sends_leave_the_router_empty() {
    let b = bootstrap().await;
    let silent = unique_topic("cancel.silent");
    let echo = unique_topic("cancel.echo");
    create_topics(
        &b,
        &[
            (&silent, 1),
            (&echo, 1),
            (&format!("{silent}.reply"), 1),
            (&format!("{echo}.reply"), 1),
        ],
    )
    .await;
    let server = echo_server(&b, &[&echo]).await;
    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("cancel-cli")),
        &[&silent, &echo],
    )
    .await
    .unwrap();

    // Dropped before the first poll, after it (entry made, produce queued)
    // and after a second one.
    for i in 0..99_000u64 {
        poll_then_drop(client.send::<_, Value>(&silent, &i), (i % 3) as usize).await;
    }
    // Dropped after the produce was acknowledged, before the reply came.
    for i in 0..1_000u64 {
        let replies = client.send_stream::<_, u64>(&echo, &i).await.unwrap();
        drop(replies);
    }
    assert_eq!(client.pending_requests(), 0, "entries left behind");
    // The late replies are dropped, and the client still answers.
    let got: String = client.send(&echo, "after").await.unwrap();
    assert_eq!(got, "after");
    assert_eq!(client.pending_requests(), 0);
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(30)).await.unwrap();
}

fn reply_client_config(b: &str, group: &str) -> TransportClientConfig {
    let mut c = TransportClientConfig::new(b, group);
    c.request_timeout = Duration::from_secs(60);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_partitions_stay_put_while_a_fourth_instance_joins_and_leaves() {
    let b = bootstrap().await;
    let pattern = unique_topic("sticky.echo");
    create_topics(&b, &[(&pattern, 3), (&format!("{pattern}.reply"), 3)]).await;
    let server = echo_server(&b, &[&pattern]).await;
    let group = unique_group("sticky-cli");
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Arc::new(
            TransportClient::connect(reply_client_config(&b, &group), &[&pattern])
                .await
                .unwrap(),
        ));
    }
    // Once all three are in, each owns one partition: wait for the
    // cooperative rounds to settle, as each send must succeed from here on.
    let settle = Instant::now() + Duration::from_secs(20);
    loop {
        let results = join_all(
            clients
                .iter()
                .map(|c| c.send::<_, String>(&pattern, "ping")),
        )
        .await;
        if results.iter().all(Result::is_ok) {
            break;
        }
        assert!(Instant::now() < settle, "never settled: {results:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (n, c) in clients.iter().enumerate() {
        let (c, stop, answered, pattern) = (
            Arc::clone(c),
            Arc::clone(&stop),
            Arc::clone(&answered),
            pattern.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("{n}-{i}");
                let got: String = c.send(&pattern, &body).await.unwrap_or_else(|e| {
                    panic!("client {n} lost a reply while the group changed: {e}")
                });
                assert_eq!(got, body);
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let before: Vec<Option<i32>> = clients
        .iter()
        .map(|c| c.reply_partition(&pattern))
        .collect();
    // A fourth instance, three times: three partitions cannot serve four,
    // and the three keep theirs each time.
    for _ in 0..3 {
        let started = Instant::now();
        match TransportClient::connect(reply_client_config(&b, &group), &[&pattern]).await {
            Err(TransportError::TooFewReplyPartitions {
                partitions,
                instances,
                ..
            }) => {
                assert_eq!((partitions, instances), (3, 4));
            }
            other => panic!("expected TooFewReplyPartitions, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the error took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now: Vec<Option<i32>> = clients
            .iter()
            .map(|c| c.reply_partition(&pattern))
            .collect();
        assert_eq!(now, before, "a reply partition moved");
    }
    // It left; the three go on through that rebalance too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(answered.load(Ordering::Relaxed) > 30);
    for c in clients {
        Arc::into_inner(c).unwrap().close().await.unwrap();
    }
    server.shutdown(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_reply_partitions_is_a_clear_error_within_one_rebalance() {
    let b = bootstrap().await;
    let pattern = unique_topic("few.echo");
    create_topics(&b, &[(&pattern, 1), (&format!("{pattern}.reply"), 2)]).await;
    let group = unique_group("few-cli");
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(
            TransportClient::connect(reply_client_config(&b, &group), &[&pattern])
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let third = TransportClient::connect(reply_client_config(&b, &group), &[&pattern]).await;
    let took = started.elapsed();
    match third {
        Err(e @ TransportError::TooFewReplyPartitions { .. }) => {
            assert!(e.to_string().contains("2 partitions for 3"), "{e}");
        }
        other => panic!("expected TooFewReplyPartitions, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(15),
        "{took:?}, with a 60 s request timeout"
    );
    for c in clients {
        c.close().await.unwrap();
    }
}
