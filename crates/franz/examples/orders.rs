//! The main demo: the NestJS Kafka page's orders scenario, in Rust.
//!
//! - `billing` (two instances sharing the consumer group `billing-consumer`)
//!   answers the message pattern `order.created` with
//!   `{id, status: "INVOICED", total}`, as the page's `OrdersController`
//!   does, and logs each `order.shipped` event from its context:
//!   `[order.shipped/<partition>@<offset>] shipped <id>`.
//! - The gateway sends `order.created` (`{id, total}`, keyed by customer id,
//!   so one customer's orders stay in order) and waits for the reply on
//!   `order.created.reply`, then emits `order.shipped`.
//! - One shipment's handler keeps failing (its carrier is down): after its
//!   attempts it lands in `order.shipped.DLT`, and the demo reads it there.
//!
//! Uses the cluster in `KAFKA_BOOTSTRAP`; otherwise an in-process
//! franz-mock cluster (no Java, no download), or with `--real` (or
//! `FRANZ_DEMO_BROKER=real`) a local Apache Kafka broker that the testkit
//! starts from Maven-resolved jars.
//!
//! Run: `cargo run -p franz --example orders` (`-- --real` for a real broker)
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use franz::consumer::{Consumer, ConsumerConfig, OffsetReset};
use franz::transport::{
    Ctx, Payload, Provision, RpcError, TransportClient, TransportClientConfig, TransportServer,
    TransportServerConfig,
};
use serde::{Deserialize, Serialize};

/// `order.created`'s payload, as the page's gateway sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    total: u64,
}

/// The controller's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    id: String,
    status: String,
    total: u64,
}

/// `order.shipped`'s payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipped {
    id: String,
}

const CREATED: &str = "order.created";
const SHIPPED: &str = "order.shipped";
/// The shipment whose carrier is down: its handler always fails.
const STUCK: &str = "deadbeef";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // KAFKA_BOOTSTRAP wins; `--real` (or FRANZ_DEMO_BROKER=real) starts a
    // local Apache Kafka broker; otherwise an in-process franz-mock cluster
    // serves the demo: no Java, no download.
    let real = std::env::args().any(|a| a == "--real")
        || std::env::var("FRANZ_DEMO_BROKER").as_deref() == Ok("real");
    let from_env = std::env::var("KAFKA_BOOTSTRAP").is_ok_and(|b| !b.trim().is_empty());
    let mut _mock = None;
    let bootstrap = if from_env || real {
        println!(
            "[demo] {}",
            if from_env {
                "using the cluster in KAFKA_BOOTSTRAP"
            } else {
                "--real: starting a local Apache Kafka broker (first run resolves the jars with Maven)"
            }
        );
        franz_testkit::KafkaCluster::shared().await?.bootstrap()
    } else {
        println!(
            "[demo] no KAFKA_BOOTSTRAP: serving the demo from an in-process franz-mock cluster (pass --real for a local Apache Kafka broker)"
        );
        let mock = franz_mock::MockCluster::start()?;
        let bootstrap = mock.bootstrap();
        _mock = Some(mock);
        bootstrap
    };
    println!("[demo] broker at {bootstrap}");

    // Topics are provisioned by the transport: the patterns with 3
    // partitions (by the billing servers), the reply topic with 1 per
    // gateway instance (by the gateway). Existing topics are left alone.
    let provision = Provision {
        partitions: 3,
        reply_partitions: 1,
        replication_factor: 1,
    };

    // Two billing instances share the group (and its partitions).
    let shipped: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut billing = Vec::new();
    for instance in ["billing-1", "billing-2"] {
        let shipped = Arc::clone(&shipped);
        let mut config = TransportServerConfig::new(&bootstrap, "billing-consumer");
        config.provision = Some(provision.clone());
        // The stuck shipment: three attempts, 200 ms apart and doubling,
        // then the dead-letter topic. Other partitions go on meanwhile.
        config.max_attempts = Some(3);
        config.retry_backoff = Duration::from_millis(200);
        let server = TransportServer::builder(config)
            .message(CREATED, move |Payload(order): Payload<Order>| async move {
                println!(
                    "[{instance}] invoicing order {} ({})",
                    order.id, order.total
                );
                Ok(Invoice {
                    id: order.id,
                    status: "INVOICED".into(),
                    total: order.total,
                })
            })
            .event(
                SHIPPED,
                move |Payload(event): Payload<Shipped>, ctx: Ctx| {
                    let shipped = Arc::clone(&shipped);
                    async move {
                        if event.id == STUCK {
                            return Err(RpcError::message("carrier API unavailable"));
                        }
                        println!(
                            "[{}/{}@{}] shipped {}",
                            ctx.topic(),
                            ctx.partition(),
                            ctx.offset(),
                            event.id
                        );
                        shipped
                            .lock()
                            .map_err(|_| RpcError::fatal("ledger poisoned"))?
                            .insert(event.id);
                        Ok(())
                    }
                },
            )
            .start()
            .await?;
        println!("[demo] {instance} is up");
        billing.push(server);
    }

    // A reader of the dead-letter topic (the servers created it), from its
    // current end: this run's dead letters only.
    let mut dlt_config = ConsumerConfig::new(&bootstrap);
    dlt_config.auto_offset_reset = OffsetReset::Earliest;
    let mut dlt = Consumer::new(dlt_config).await?;
    dlt.assign_topic("order.shipped.DLT").await?;
    dlt.seek_to_end().await?;

    // The gateway.
    let mut config = TransportClientConfig::new(&bootstrap, "gateway-consumer");
    config.provision = Some(provision);
    let gateway = TransportClient::connect(config, &[CREATED]).await?;
    println!("[demo] gateway is up");
    let orders = [
        ("0c3f9a12", "ada", 4_200),
        ("1b7e2d40", "grace", 9_900),
        (STUCK, "ada", 1_250),
        ("2a9c11f3", "linus", 420),
    ];
    for (id, customer, total) in orders {
        let order = Order {
            id: id.to_string(),
            total,
        };
        let invoice: Invoice = gateway
            .send_keyed(CREATED, customer.to_string(), &order)
            .await?;
        println!(
            "[gateway] {} {} for {} (customer {customer})",
            invoice.id, invoice.status, invoice.total
        );
        gateway
            .emit_keyed(SHIPPED, customer.to_string(), &Shipped { id: id.into() })
            .await?;
    }

    // The good shipments are logged by billing; the stuck one is parked.
    let good = orders.len() - 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while shipped.lock().map_or(0, |s| s.len()) < good && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut parked = Vec::new();
    while parked.is_empty() && tokio::time::Instant::now() < deadline {
        parked = dlt.poll(Duration::from_millis(500)).await?;
    }
    for r in &parked {
        let text = |name: &str| {
            r.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        println!(
            "[demo] dead letter on {}/{}: {} after {} attempts: {}",
            r.topic,
            r.partition,
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()),
            text("kafka_dlt-attempts"),
            text("kafka_dlt-exception-message"),
        );
    }
    let logged = shipped.lock().map_or(0, |s| s.len());
    println!(
        "[demo] done: {} orders invoiced, {logged} shipments logged, {} dead-lettered",
        orders.len(),
        parked.len()
    );

    gateway.close().await?;
    for server in billing {
        server.shutdown(std::time::Duration::from_secs(30)).await?;
    }
    if logged != good || parked.len() != 1 {
        return Err(format!(
            "expected {good} shipments logged and 1 dead letter, got {logged} and {}",
            parked.len()
        )
        .into());
    }
    Ok(())
}
