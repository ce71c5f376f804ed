//! Interop with real NestJS beyond one request and one event, on NestJS 11
//! and 12 (each test runs once per major):
//! - streams both ways (`of(1, 2, 3)`, `interval(..).pipe(take(3))`, a
//!   franz stream of 3): each side sees exactly 3 values;
//! - void message handlers both ways;
//! - `Ctx` reports what Nest's `KafkaContext` reports for the same record;
//! - keyed emits (string, number, object keys) land on the same partitions
//!   whichever side produces them;
//! - MessagePack both ways with a Nest app using `keepBinary` and its own
//!   msgpack serializer and deserializer;
//! - one server group shared by a franz and a NestJS server, once with
//!   each side leading: every request is answered exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{NestPeer, bootstrap, create_topics, output_line, wait_for_group_members};
use franz_consumer::OffsetReset;
use franz_testkit::node::NestVersion;
use franz_testkit::{unique_group, unique_topic};
use franz_transport::codec::MsgPack;
use franz_transport::{
    Ctx, Message, Payload, RpcError, Streamed, TransportClient, TransportClientConfig,
    TransportServer, TransportServerConfig,
};
use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};

per_nest_version! {
    a_franz_client_gets_nest_streams_void_replies_and_the_same_context =>
        franz_client_and_nest_server;
    a_nest_client_gets_franz_streams_void_replies_and_keys_land_alike =>
        nest_client_and_franz_server;
    messagepack_both_ways_with_a_keep_binary_nest_app => messagepack_with_nest;
    one_group_with_the_nest_server_leading => shared_group_nest_leading;
    one_group_with_the_franz_server_leading => shared_group_franz_leading;
}

/// Waits until `cell` holds `n` items.
async fn wait_for_len<T>(cell: &Mutex<Vec<T>>, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cell.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "{what}: fewer than {n} arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn server_config(b: &str, group: &str) -> TransportServerConfig {
    let mut config = TransportServerConfig::new(b, group);
    // The topics are new: read them from the start whoever produces first.
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn franz_client_and_nest_server(nest: NestVersion) {
    let b = bootstrap().await;
    let p = unique_topic("nf");
    let (of, interval, void, ctx) = (
        format!("{p}.of"),
        format!("{p}.interval"),
        format!("{p}.void"),
        format!("{p}.ctx"),
    );
    let replies: Vec<String> = [&of, &interval, &void]
        .iter()
        .map(|t| format!("{t}.reply"))
        .collect();
    let mut topics: Vec<(&str, i32)> = vec![(&of, 1), (&interval, 1), (&void, 1), (&ctx, 3)];
    topics.extend(replies.iter().map(|r| (r.as_str(), 1)));
    create_topics(&b, &topics).await;

    let group = unique_group("nest-features");
    let peer = NestPeer::start(nest, "nest-features-server.mjs", &[&b, &group, &p], &[]);
    wait_for_group_members(&b, &format!("{group}-server"), 1).await;

    // A franz server in a group of its own reads the same context records.
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let server = {
        let seen = Arc::clone(&seen);
        TransportServer::builder(server_config(&b, &unique_group("franz-ctx")))
            .event(&ctx, move |Payload(data): Payload<Value>, ctx: Ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    let headers: BTreeMap<String, String> = ctx
                        .headers()
                        .iter()
                        .map(|(k, v)| (text(k), v.as_ref().map(text).unwrap_or_default()))
                        .collect();
                    seen.lock().unwrap().push(json!({
                        "data": data,
                        "topic": ctx.topic(),
                        "partition": ctx.partition(),
                        "offset": ctx.offset().to_string(),
                        "key": ctx.key().map(text),
                        "headers": headers,
                        "timestamp": ctx.timestamp().to_string(),
                    }));
                }
            })
            .start()
            .await
            .unwrap()
    };

    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("franz-nf-replies")),
        &[&of, &interval, &void],
    )
    .await
    .unwrap();
    let collect = |pattern: String| {
        let client = &client;
        async move {
            client
                .send_stream::<_, Value>(&pattern, &json!({"n": 3}))
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect::<Vec<_>>()
                .await
        }
    };
    // Nest writes a number as its text and reads text that is not an
    // object or array as a string: a Nest client sees "1", "2", "3", and so
    // does a franz client asking for JSON values. Typed, they are numbers.
    assert_eq!(
        collect(of.clone()).await,
        vec![json!("1"), json!("2"), json!("3")]
    );
    assert_eq!(
        collect(interval.clone()).await,
        vec![json!("0"), json!("1"), json!("2")]
    );
    let typed: Vec<u32> = client
        .send_stream::<_, u32>(&of, &json!({"n": 3}))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(typed, vec![1, 2, 3]);
    // A void Nest handler answers null (its disposal message), once.
    assert_eq!(collect(void.clone()).await, vec![Value::Null]);
    let got: Value = client.send(&void, &json!({"n": 0})).await.unwrap();
    assert_eq!(got, Value::Null);

    client
        .emit(
            &ctx,
            Message::new(json!({"order": 1}))
                .nest_key("customer-9")
                .unwrap()
                .header("x-request", Bytes::from_static(b"abc")),
        )
        .await
        .unwrap();
    wait_for_len(&seen, 1, "the franz context").await;
    // Nest's server, stable and reading since before the emit, has the
    // record within moments; it prints its contexts when stopped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = peer.stop().await;
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();

    let nest_ctx = output_line(&out, "ctx ");
    assert_eq!(output_line(&out, "voids "), json!(2), "{out}");
    let franz_ctx = seen.lock().unwrap().clone();
    assert_eq!(
        nest_ctx,
        json!(franz_ctx),
        "KafkaContext against Ctx:\n{out}"
    );
    assert_eq!(franz_ctx[0]["key"], json!("customer-9"));
    assert_eq!(franz_ctx[0]["headers"]["x-request"], json!("abc"));
    assert!(
        franz_ctx[0]["headers"]["traceparent"].is_string(),
        "franz's trace context rides along, and Nest sees it too"
    );
}

async fn nest_client_and_franz_server(nest: NestVersion) {
    let b = bootstrap().await;
    let p = unique_topic("nfc");
    let (streamed, void, keys) = (
        format!("{p}.stream"),
        format!("{p}.void"),
        format!("{p}.keys"),
    );
    let (streamed_reply, void_reply) = (format!("{streamed}.reply"), format!("{void}.reply"));
    create_topics(
        &b,
        &[
            (&streamed, 1),
            (&void, 1),
            (&keys, 6),
            (&streamed_reply, 1),
            (&void_reply, 1),
        ],
    )
    .await;

    // (from, kind, key, partition) of every keyed event.
    let placed = Arc::new(Mutex::new(Vec::<(String, String, String, i32)>::new()));
    let voids = Arc::new(Mutex::new(Vec::<Value>::new()));
    let server = {
        let (placed, voids) = (Arc::clone(&placed), Arc::clone(&voids));
        TransportServer::builder(server_config(&b, &unique_group("franz-nfc")))
            .message(&streamed, |Payload(v): Payload<Value>| async move {
                let n = v["n"].as_u64().unwrap_or(0);
                Ok(Streamed(stream::iter((1..=n).map(Ok::<_, RpcError>))))
            })
            .message(&void, move |Payload(v): Payload<Value>| {
                let voids = Arc::clone(&voids);
                async move {
                    voids.lock().unwrap().push(v);
                    Ok::<_, RpcError>(())
                }
            })
            .event(&keys, move |Payload(v): Payload<Value>, ctx: Ctx| {
                let placed = Arc::clone(&placed);
                async move {
                    placed.lock().unwrap().push((
                        v["from"].as_str().unwrap_or("?").to_string(),
                        v["k"].as_str().unwrap_or("?").to_string(),
                        ctx.key().map(text).unwrap_or_default(),
                        ctx.partition(),
                    ));
                }
            })
            .start()
            .await
            .unwrap()
    };

    let out = common::run_nest(
        nest,
        "nest-features-client.mjs",
        &[&b, &unique_group("nest-nfc-client"), &p],
    )
    .await;
    assert_eq!(
        output_line(&out, "stream "),
        json!(["1", "2", "3"]),
        "a franz stream of 3 is 3 values to Nest, as a Nest server's would be (numbers as text)"
    );
    assert_eq!(
        output_line(&out, "void "),
        json!([null]),
        "a void franz handler looks like a void Nest handler"
    );

    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("franz-nfc-replies")),
        &[],
    )
    .await
    .unwrap();
    let franz_keys: [(&str, Value); 3] = [
        ("string", json!("customer-42")),
        ("number", json!(7)),
        ("object", json!({"id": 1})),
    ];
    for (k, key) in &franz_keys {
        client
            .emit(
                &keys,
                Message::new(json!({"from": "franz", "k": k}))
                    .nest_key(key)
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    wait_for_len(&placed, 6, "keyed events").await;
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();

    let placed = placed.lock().unwrap().clone();
    for (k, _) in &franz_keys {
        let of_kind: Vec<_> = placed.iter().filter(|p| p.1 == *k).collect();
        assert_eq!(of_kind.len(), 2, "{k}: {placed:?}");
        let (a, b) = (of_kind[0], of_kind[1]);
        assert_ne!(a.0, b.0, "one from each side: {placed:?}");
        assert_eq!(a.2, b.2, "{k}: the same key bytes from both sides");
        assert_eq!(a.3, b.3, "{k}: the same partition from both sides");
    }
    assert_eq!(*voids.lock().unwrap(), vec![json!({"n": 0})]);
}

async fn messagepack_with_nest(nest: NestVersion) {
    let b = bootstrap().await;
    let p = unique_topic("nmp");
    let (mp, mpf) = (format!("{p}.mp"), format!("{p}.mpf"));
    let (mp_reply, mpf_reply) = (format!("{mp}.reply"), format!("{mpf}.reply"));
    create_topics(&b, &[(&mp, 1), (&mpf, 1), (&mp_reply, 1), (&mpf_reply, 1)]).await;
    let group = unique_group("nest-mp");
    let peer = NestPeer::start(
        nest,
        "nest-features-server.mjs",
        &[&b, &group, &p],
        &["msgpack"],
    );
    let mut config = server_config(&b, &unique_group("franz-mp"));
    config.codec = Arc::new(MsgPack);
    let server = TransportServer::builder(config)
        .message(&mpf, |Payload(v): Payload<Value>| async move {
            Ok::<_, RpcError>(json!({"by": "franz", "got": v}))
        })
        .start()
        .await
        .unwrap();
    wait_for_group_members(&b, &format!("{group}-server"), 1).await;

    let mut config = TransportClientConfig::new(&b, &unique_group("franz-mp-replies"));
    config.codec = Arc::new(MsgPack);
    let client = TransportClient::connect(config, &[&mp]).await.unwrap();
    let payload = json!({"n": 7, "tags": ["a", "b"], "nested": {"ok": true}});
    let got: Value = client.send(&mp, &payload).await.unwrap();
    assert_eq!(got, json!({"by": "nest", "got": payload}));

    let out = common::run_nest(
        nest,
        "nest-features-client.mjs",
        &[&b, &unique_group("nest-mp-client"), &p, "msgpack"],
    )
    .await;
    assert_eq!(
        output_line(&out, "mp "),
        json!([{"by": "franz", "got": payload}])
    );
    peer.stop().await;
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}

async fn shared_group_nest_leading(nest: NestVersion) {
    shared_group(nest, true).await
}

async fn shared_group_franz_leading(nest: NestVersion) {
    shared_group(nest, false).await
}

async fn shared_group(nest: NestVersion, nest_first: bool) {
    const REQUESTS: usize = 40;
    let b = bootstrap().await;
    let pattern = unique_topic("shared.orders");
    let reply = format!("{pattern}.reply");
    create_topics(&b, &[(&pattern, 4), (&reply, 1)]).await;
    let group = unique_group("shared");
    // Nest appends `-server` to a server's group id.
    let server_group = format!("{group}-server");

    let handled = Arc::new(Mutex::new(Vec::<u64>::new()));
    let start_franz = || {
        let handled = Arc::clone(&handled);
        TransportServer::builder(TransportServerConfig::new(&b, &server_group))
            .message(&pattern, move |Payload(v): Payload<Value>| {
                let handled = Arc::clone(&handled);
                async move {
                    let id = v["id"].as_u64().unwrap_or(u64::MAX);
                    handled.lock().unwrap().push(id);
                    Ok::<_, RpcError>(json!({"by": "franz", "id": id}))
                }
            })
            .start()
    };
    // The first member to join leads; the broker keeps the leader through
    // the rebalance the second member's join starts.
    let (peer, server) = if nest_first {
        let peer = NestPeer::start(nest, "nest-group-server.mjs", &[&b, &group, &pattern], &[]);
        wait_for_group_members(&b, &server_group, 1).await;
        (peer, start_franz().await.unwrap())
    } else {
        let server = start_franz().await.unwrap();
        wait_for_group_members(&b, &server_group, 1).await;
        let peer = NestPeer::start(nest, "nest-group-server.mjs", &[&b, &group, &pattern], &[]);
        (peer, server)
    };
    wait_for_group_members(&b, &server_group, 2).await;

    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("shared-replies")),
        &[&pattern],
    )
    .await
    .unwrap();
    let sends = (0..REQUESTS as u64).map(|id| {
        let client = &client;
        let pattern = &pattern;
        async move {
            let reply: Value = client
                .send_keyed(pattern, format!("order-{id}"), &json!({"id": id}))
                .await
                .unwrap_or_else(|e| panic!("request {id}: {e}"));
            assert_eq!(reply["id"], json!(id));
            reply["by"].as_str().unwrap().to_string()
        }
    });
    let by: Vec<String> = futures_util::future::join_all(sends).await;
    client.close().await.unwrap();
    let out = peer.stop().await;
    server.shutdown(Duration::from_secs(20)).await.unwrap();

    let nest_handled: Vec<u64> = serde_json::from_value(output_line(&out, "handled ")).unwrap();
    let franz_handled = handled.lock().unwrap().clone();
    let mut all: Vec<u64> = nest_handled.iter().chain(&franz_handled).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..REQUESTS as u64).collect::<Vec<_>>(),
        "every request handled exactly once (nest {nest_handled:?}, franz {franz_handled:?})"
    );
    assert!(
        !nest_handled.is_empty() && !franz_handled.is_empty(),
        "both members serve their share: nest {nest_handled:?}, franz {franz_handled:?}"
    );
    assert_eq!(
        by.iter().filter(|b| *b == "nest").count(),
        nest_handled.len()
    );
}
