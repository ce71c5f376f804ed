//! Connection behaviour against the shared broker: pipelining under
//! cancellation, bootstrap with a dead address, a fake broker speaking
//! garbage, and a broker that stops answering.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::time::{Duration, Instant};

use franz_client::franz_protocol::DecodeError;
use franz_client::franz_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use franz_client::{BrokerAddr, Client, ClientConfig, ClientError, ConnectionKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use franz_test_support::bootstrap;

/// A port nothing listens on (bound, then released).
fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pipelined_requests_half_cancelled() {
    let client = Client::connect(ClientConfig::new(&bootstrap().await))
        .await
        .unwrap();
    let conn = client.any_connection(ConnectionKind::Other).await.unwrap();
    let mut tasks = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            conn.send(&MetadataRequest {
                topics: Some(Vec::new()),
                ..Default::default()
            })
            .await
        }));
    }
    // Cancel a pseudo-random half, some before sending, some mid-flight.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut cancelled = vec![false; tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(2) {
            t.abort();
            cancelled[i] = true;
        }
        if i.is_multiple_of(1000) {
            tokio::task::yield_now().await;
        }
    }
    let mut ok = 0;
    for (t, was_cancelled) in tasks.into_iter().zip(cancelled) {
        match t.await {
            Ok(Ok(resp)) => {
                assert!(!resp.brokers.is_empty());
                ok += 1;
            }
            Ok(Err(e)) => panic!("a request that was not cancelled failed: {e}"),
            Err(join) => assert!(join.is_cancelled() && was_cancelled),
        }
    }
    assert!(ok >= 4_000, "only {ok} completed");
    // The connection survived all of it.
    assert!(conn.is_open());
    assert_eq!(
        conn.in_flight(),
        0,
        "cancelled requests left no waiters behind"
    );
    conn.send(&ApiVersionsRequest {
        client_software_name: "franz".into(),
        client_software_version: "1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_bootstrap_address_is_skipped() {
    let real = bootstrap().await;
    let config = ClientConfig::new(&format!("{},{real}", dead_address()));
    let client = Client::connect(config).await.unwrap();
    assert!(!client.metadata().brokers.is_empty());

    let nobody = ClientConfig {
        socket_connection_setup_timeout: Duration::from_secs(2),
        ..ClientConfig::new(&dead_address())
    };
    let err = Client::connect(nobody).await.unwrap_err();
    assert!(matches!(err, ClientError::NoBootstrap(_)), "{err}");
}

/// A tiny server that answers the first request with `reply` and then
/// keeps the socket open.
async fn hostile_broker(reply: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut req = vec![0u8; i32::from_be_bytes(len) as usize];
                let _ = s.read_exact(&mut req).await;
                let _ = s.write_all(&reply).await;
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_broker_gets_typed_errors_and_no_huge_allocation() {
    let setup = Duration::from_secs(3);
    // Garbage where the ApiVersions response should be.
    let garbage = hostile_broker(vec![
        0, 0, 0, 12, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff,
    ])
    .await;
    // A length of 2 GiB: refused before anything is allocated.
    let oversized = hostile_broker(vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]).await;
    // A frame cut short, then silence.
    let truncated = hostile_broker(vec![0, 0, 1, 0, 0, 0, 0, 1, 0]).await;
    for (name, addr) in [
        ("garbage", garbage),
        ("oversized", oversized),
        ("truncated", truncated),
    ] {
        let started = Instant::now();
        let err = franz_client::BrokerConnection::connect(
            &ClientConfig {
                socket_connection_setup_timeout: setup,
                ..ClientConfig::new(&addr)
            },
            None,
            BrokerAddr {
                node_id: 0,
                host: "127.0.0.1".into(),
                port: addr.rsplit_once(':').unwrap().1.parse().unwrap(),
            },
            Default::default(),
        )
        .await
        .unwrap_err();
        assert!(
            started.elapsed() < setup + Duration::from_secs(1),
            "{name} hung"
        );
        match name {
            "garbage" => assert!(matches!(err, ClientError::Decode { .. }), "{name}: {err}"),
            "oversized" => assert!(
                matches!(
                    err,
                    ClientError::Decode {
                        source: DecodeError::LengthOutOfRange { .. },
                        ..
                    }
                ),
                "{name}: {err}"
            ),
            _ => assert!(err.is_timeout(), "{name}: {err}"),
        }
    }
}
