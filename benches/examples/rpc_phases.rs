//! Request-reply time, send -> handler -> reply: why the transport reply reader commits when idle.
//! It found each per-reply OffsetCommit waiting out the coordinator's ~3 ms append linger, so the
//! reply reader (franz-transport's `client/replies.rs`) commits when idle or every 5 s: request-reply p50
//! on one broker 3.9 -> 1.1 ms (1ca166f).
//! Run: `rpc_phases <bootstrap> <topic>` (the topic and `<topic>.reply` must exist; one process
//! holds both ends).
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure
use franz_transport::Payload;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use franz_transport::{
    RpcError, TransportClient, TransportClientConfig, TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

static START: OnceLock<Instant> = OnceLock::new();
fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_default();
    let topic = args.next().unwrap_or_default();
    now_us();
    let group = format!("phases-{}", std::process::id());
    let server = TransportServer::builder(TransportServerConfig::new(&bootstrap, &group))
        .message(&topic, |Payload(v): Payload<Value>| async move {
            Ok::<_, RpcError>(json!({"sent": v["sent"], "handled": now_us()}))
        })
        .start()
        .await?;
    let client = TransportClient::connect(
        TransportClientConfig::new(&bootstrap, &format!("{group}-client")),
        &[&topic],
    )
    .await?;
    let (mut to_handler, mut to_reply) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let sent = now_us();
        let r: Value = client.send(&topic, &json!({"sent": sent})).await?;
        let back = now_us();
        let handled = r["handled"].as_u64().unwrap_or(0);
        if i >= 100 {
            to_handler.push(handled - sent);
            to_reply.push(back - handled);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for (label, v) in [
        ("send -> handler", &mut to_handler),
        ("handler -> reply", &mut to_reply),
    ] {
        v.sort_unstable();
        println!(
            "{label}: p50 {} µs, p90 {} µs",
            v[v.len() / 2],
            v[v.len() * 9 / 10]
        );
    }
    client.close().await?;
    server.shutdown(std::time::Duration::from_secs(30)).await?;
    Ok(())
}
