//! Handlers between franz peers on the shared broker: extractors, reply
//! envelopes, streamed replies, retriable request errors, trace context,
//! and the MessagePack and raw codecs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{bootstrap, create_topics};
use franz_consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition};
use franz_testkit::{unique_group, unique_topic};
use franz_transport::codec::{MsgPack, Raw};
use franz_transport::{
    Ctx, Headers, Key, Message, Payload, Reply, RpcError, State, Streamed, TransportClient,
    TransportClientConfig, TransportError, TransportServer, TransportServerConfig, nest, trace,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Every record of `topic` partition 0, from the start.
async fn read_all(b: &str, topic: &str, want: usize) -> Vec<ConsumerRecord> {
    let mut config = ConsumerConfig::new(b);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(config).await.unwrap();
    c.assign(&[TopicPartition::new(topic, 0)]).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want && tokio::time::Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

fn is_reply_to(r: &ConsumerRecord, id: &[u8]) -> bool {
    r.header(nest::headers::CORRELATION_ID).map(|v| v.as_ref()) == Some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractors_envelopes_streams_and_trace_context() {
    let b = bootstrap().await;
    let greet = unique_topic("h.greet");
    let count = unique_topic("h.count");
    let flaky = unique_topic("h.flaky");
    let nostate = unique_topic("h.nostate");
    let mut topics = Vec::new();
    for p in [&greet, &count, &flaky, &nostate] {
        topics.push((p.clone(), 1));
        topics.push((format!("{p}.reply"), 1));
    }
    let refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    create_topics(&b, &refs).await;

    let flaky_runs = Arc::new(AtomicU32::new(0));
    let runs = Arc::clone(&flaky_runs);
    let mut config = TransportServerConfig::new(&b, &unique_group("h-srv"));
    config.retry_backoff = Duration::from_millis(50);
    let server = TransportServer::builder(config)
        .message(
            &greet,
            |Payload(name): Payload<String>,
             State(prefix): State<Arc<String>>,
             Key(key): Key,
             headers: Headers,
             ctx: Ctx| async move {
                let key = String::from_utf8(key.unwrap_or_default().to_vec()).unwrap();
                let from = headers
                    .get("x-in")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                let trace = ctx
                    .header(trace::TRACEPARENT)
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                Ok::<_, RpcError>(
                    Reply::new(json!({
                        "text": format!("{prefix} {name}"),
                        "key": key,
                        "from": from,
                        "trace": trace,
                        "at": ctx.offset(),
                    }))
                    .key("reply-key")
                    .header("x-out", "1"),
                )
            },
        )
        .message(&count, |Payload(n): Payload<u32>| async move {
            Ok::<_, RpcError>(Streamed(futures_util::stream::iter(
                (1..=n).map(Ok::<_, RpcError>),
            )))
        })
        .message(&flaky, move |Payload(mode): Payload<String>| {
            let runs = Arc::clone(&runs);
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                match mode.as_str() {
                    // KafkaRetriableException: handled again until it works.
                    "transient" if run < 3 => Err(RpcError::retriable("not yet")),
                    "transient" => Ok(format!("ok after {run}")),
                    // RpcException: answered at once.
                    _ => Err(RpcError::message("invalid order")),
                }
            }
        })
        .message(&nostate, |State(n): State<u64>| async move {
            Ok::<_, RpcError>(n)
        })
        .state(Arc::new("hello".to_string()))
        .start()
        .await
        .unwrap();
    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("h-cli")),
        &[&greet, &count, &flaky, &nostate],
    )
    .await
    .unwrap();

    // Extractors and the reply envelope.
    let parent = trace::child_of(None);
    let (trace_id, _) = trace::parse(parent.as_bytes()).unwrap();
    let trace_id = trace_id.to_string();
    let got: Value = client
        .send(
            &greet,
            Message::new("ada")
                .key("k-1")
                .header("x-in", "gateway")
                .header(trace::TRACEPARENT, parent.clone()),
        )
        .await
        .unwrap();
    assert_eq!(got["text"], "hello ada");
    assert_eq!(got["key"], "k-1");
    assert_eq!(got["from"], "gateway");
    assert_eq!(
        got["trace"],
        parent.as_str(),
        "the handler sees the caller's trace"
    );
    let replies = read_all(&b, &format!("{greet}.reply"), 1).await;
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert_eq!(reply.key.as_deref(), Some(&b"reply-key"[..]));
    assert_eq!(reply.header("x-out").map(|v| v.as_ref()), Some(&b"1"[..]));
    let reply_trace = reply.header(trace::TRACEPARENT).unwrap();
    let (reply_trace_id, reply_span) = trace::parse(reply_trace).unwrap();
    assert_eq!(reply_trace_id, trace_id, "the reply continues the trace");
    assert_ne!(reply_span, &parent[36..52], "with a span of its own");

    // A stream of three is three messages, the last one disposing.
    let values: Vec<u32> = client
        .send_stream::<_, u32>(&count, &3u32)
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(values, vec![1, 2, 3]);
    let stream_replies = read_all(&b, &format!("{count}.reply"), 3).await;
    assert_eq!(stream_replies.len(), 3, "no extra disposal message");
    let disposed: Vec<bool> = stream_replies
        .iter()
        .map(|r| r.header(nest::headers::NEST_IS_DISPOSED).is_some())
        .collect();
    assert_eq!(disposed, vec![false, false, true]);
    let id = stream_replies[0]
        .header(nest::headers::CORRELATION_ID)
        .unwrap()
        .clone();
    assert!(stream_replies.iter().all(|r| is_reply_to(r, &id)));
    // An empty stream is one null disposal message: `send` reads a null.
    let none: Option<u32> = client.send(&count, &0u32).await.unwrap();
    assert_eq!(none, None);

    // A retriable error is retried before the caller hears of it; a plain
    // RpcException is answered at once.
    let ok: String = client.send(&flaky, "transient").await.unwrap();
    assert_eq!(ok, "ok after 3");
    let before = flaky_runs.load(Ordering::SeqCst);
    match client.send::<_, Value>(&flaky, "invalid").await {
        Err(TransportError::Remote(e)) => assert_eq!(e.message.as_deref(), Some("invalid order")),
        other => panic!("{other:?}"),
    }
    assert_eq!(flaky_runs.load(Ordering::SeqCst), before + 1, "run once");

    // State never given is a clear remote error.
    match client.send::<_, Value>(&nostate, &()).await {
        Err(TransportError::Remote(e)) => {
            assert!(
                e.message.unwrap().contains("no State<u64>"),
                "names the type"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.pending_requests(), 0);
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(30)).await.unwrap();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Invoice {
    id: String,
    status: String,
    total: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messagepack_and_raw_codecs_between_franz_services() {
    let b = bootstrap().await;
    let created = unique_topic("mp.order.created");
    let echo = unique_topic("raw.echo");
    create_topics(
        &b,
        &[
            (&created, 1),
            (&format!("{created}.reply"), 1),
            (&echo, 1),
            (&format!("{echo}.reply"), 1),
        ],
    )
    .await;
    let server = TransportServer::builder(TransportServerConfig::new(&b, &unique_group("mp-srv")))
        .message(&created, |Payload(o): Payload<Order>| async move {
            Ok::<_, RpcError>(Invoice {
                id: o.id,
                status: "INVOICED".into(),
                total: o.total,
            })
        })
        .pattern_codec(&created, MsgPack)
        .message(&echo, |Payload(b): Payload<Bytes>| async move {
            let mut v = b.to_vec();
            v.reverse();
            Ok::<_, RpcError>(Bytes::from(v))
        })
        .pattern_codec(&echo, Raw)
        .start()
        .await
        .unwrap();

    let mut mp = TransportClientConfig::new(&b, &unique_group("mp-cli"));
    mp.codec = Arc::new(MsgPack);
    let client = TransportClient::connect(mp, &[&created]).await.unwrap();
    let order = Order {
        id: "0c3f9a12".into(),
        total: 4200,
    };
    let invoice: Invoice = client.send(&created, &order).await.unwrap();
    assert_eq!(
        invoice,
        Invoice {
            id: "0c3f9a12".into(),
            status: "INVOICED".into(),
            total: 4200
        }
    );
    // On the wire: MessagePack maps, readable by field name elsewhere.
    let request = &read_all(&b, &created, 1).await[0];
    let value = request.value.as_ref().unwrap();
    assert_eq!(value[0], 0x82, "a map of two fields");
    let back: Order = rmp_serde::from_slice(value).unwrap();
    assert_eq!(back, order);
    let reply = &read_all(&b, &format!("{created}.reply"), 1).await[0];
    assert_eq!(reply.value.as_ref().unwrap()[0], 0x83);

    let mut raw = TransportClientConfig::new(&b, &unique_group("raw-cli"));
    raw.codec = Arc::new(Raw);
    let raw_client = TransportClient::connect(raw, &[&echo]).await.unwrap();
    let out: Bytes = raw_client
        .send(&echo, &Bytes::from_static(&[0, 1, 2, 0xff]))
        .await
        .unwrap();
    assert_eq!(&out[..], &[0xff, 2, 1, 0], "binary passes untouched");

    // A JSON client talking to the MessagePack pattern: the payload does
    // not decode, and the caller gets a typed error naming where it was.
    let json_client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("json-cli")),
        &[&created],
    )
    .await
    .unwrap();
    match json_client.send::<_, Value>(&created, &order).await {
        Err(TransportError::Remote(e)) => {
            let m = e.message.unwrap();
            assert!(m.contains(&format!("{created}/0@")), "{m}");
            assert!(m.contains("msgpack"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    for c in [client, raw_client, json_client] {
        c.close().await.unwrap();
    }
    server.shutdown(Duration::from_secs(30)).await.unwrap();
}
