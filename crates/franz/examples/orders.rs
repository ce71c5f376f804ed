//! The main demo: an orders gateway and two billing service instances
//! talking over Kafka with franz's NestJS-compatible transport.
//!
//! - `billing` (two instances in one consumer group) answers the message
//!   pattern `billing.charge` and listens to the event `orders.created`.
//! - The gateway takes orders, asks billing to charge each one (request and
//!   reply, keyed by customer so one customer's charges stay in order), then
//!   emits `orders.created` or `orders.rejected`.
//!
//! Uses the cluster in `KAFKA_BOOTSTRAP`, or starts a local Apache Kafka
//! broker (Java, resolved by Maven) when none is configured.
//!
//! Run: `cargo run -p franz --example orders`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use franz::client::admin::NewTopic;
use franz::client::{Admin, Client, ClientConfig};
use franz::transport::{
    RpcError, TransportClient, TransportClientConfig, TransportError, TransportServer,
    TransportServerConfig,
};
use serde::{Deserialize, Serialize};

/// A charge request, as the gateway sends it and billing reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    order_id: u32,
    customer: String,
    cents: u64,
}

/// Billing's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    order_id: u32,
    receipt: String,
    charged_cents: u64,
    billed_by: String,
}

/// The events the gateway emits.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderEvent {
    order_id: u32,
    customer: String,
    outcome: String,
}

const CHARGE: &str = "billing.charge";
const CREATED: &str = "orders.created";
const REJECTED: &str = "orders.rejected";
/// Billing declines single charges above this.
const LIMIT_CENTS: u64 = 50_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let from_env = std::env::var("KAFKA_BOOTSTRAP").is_ok();
    println!(
        "[demo] {}",
        if from_env {
            "using the cluster in KAFKA_BOOTSTRAP"
        } else {
            "no KAFKA_BOOTSTRAP: starting a local Apache Kafka broker (first run resolves the jars with Maven)"
        }
    );
    let kafka = franz_testkit::KafkaCluster::shared().await?;
    let bootstrap = kafka.bootstrap();
    println!("[demo] broker at {bootstrap}");

    // Topics: patterns with 3 partitions, the reply topic with 1 per gateway.
    let admin = Admin::new(Client::connect(ClientConfig::new(&bootstrap)).await?);
    let topics = [
        (CHARGE, 3),
        (CREATED, 3),
        (REJECTED, 1),
        ("billing.charge.reply", 1),
    ]
    .iter()
    .map(|(t, p)| NewTopic::new(*t, *p, 1))
    .collect();
    for (topic, r) in admin.create_topics(topics, false).await? {
        if let Err(e) = r
            && !e.to_string().contains("TOPIC_ALREADY_EXISTS")
        {
            return Err(format!("creating {topic}: {e}").into());
        }
    }

    // Two billing instances share the group "billing" (and its partitions).
    let ledger: Arc<Mutex<BTreeMap<u32, String>>> = Arc::default();
    let mut billing = Vec::new();
    for instance in ["billing-1", "billing-2"] {
        let ledger = Arc::clone(&ledger);
        let server = TransportServer::builder(TransportServerConfig::new(&bootstrap, "billing"))
            .message(CHARGE, move |c: Charge| async move {
                if c.cents > LIMIT_CENTS {
                    println!(
                        "[{instance}] declined order {} ({} cents)",
                        c.order_id, c.cents
                    );
                    return Err(RpcError::message(format!(
                        "card declined: {} cents is over the {LIMIT_CENTS} limit",
                        c.cents
                    )));
                }
                println!(
                    "[{instance}] charged order {} for {} ({} cents)",
                    c.order_id, c.customer, c.cents
                );
                Ok(Receipt {
                    order_id: c.order_id,
                    receipt: format!("rcpt-{:05}", c.order_id),
                    charged_cents: c.cents,
                    billed_by: instance.to_string(),
                })
            })
            .event(CREATED, move |e: OrderEvent| {
                let ledger = Arc::clone(&ledger);
                async move {
                    println!(
                        "[{instance}] recorded event: order {} {}",
                        e.order_id, e.outcome
                    );
                    ledger
                        .lock()
                        .map_err(|_| RpcError::message("ledger poisoned"))?
                        .insert(e.order_id, e.outcome);
                    Ok(())
                }
            })
            .start()
            .await?;
        println!("[demo] {instance} is up");
        billing.push(server);
    }

    // The gateway.
    let gateway = TransportClient::connect(
        TransportClientConfig::new(&bootstrap, "orders-gateway"),
        &[CHARGE],
    )
    .await?;
    println!("[demo] orders gateway is up");
    let orders = [
        (1, "ada", 1_250),
        (2, "grace", 9_900),
        (3, "ada", 75_000), // over the limit: declined
        (4, "linus", 420),
        (5, "grace", 3_100),
    ];
    let (mut accepted, mut rejected) = (0, 0);
    for (order_id, customer, cents) in orders {
        let charge = Charge {
            order_id,
            customer: customer.to_string(),
            cents,
        };
        println!("[gateway] order {order_id}: asking billing to charge {customer} {cents} cents");
        let result: Result<Receipt, TransportError> = gateway
            .send_keyed(CHARGE, customer.to_string(), &charge)
            .await;
        let (pattern, outcome) = match result {
            Ok(r) => {
                println!(
                    "[gateway] order {order_id}: paid, receipt {} from {}",
                    r.receipt, r.billed_by
                );
                accepted += 1;
                (CREATED, "paid".to_string())
            }
            Err(TransportError::Remote(body)) => {
                println!(
                    "[gateway] order {order_id}: rejected by billing: {}",
                    body["message"]
                );
                rejected += 1;
                (REJECTED, "rejected".to_string())
            }
            Err(e) => return Err(e.into()),
        };
        let event = OrderEvent {
            order_id,
            customer: customer.to_string(),
            outcome,
        };
        gateway
            .emit_keyed(pattern, customer.to_string(), &event)
            .await?;
    }

    // Wait for billing to record the created events.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ledger.lock().map_or(0, |l| l.len()) < accepted && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recorded = ledger.lock().map_or(0, |l| l.len());
    println!(
        "[demo] done: {accepted} orders paid, {rejected} rejected, {recorded} paid orders recorded by billing"
    );

    gateway.close().await?;
    for server in billing {
        server.shutdown().await?;
    }
    if recorded != accepted {
        return Err(format!("billing recorded {recorded} of {accepted} paid orders").into());
    }
    Ok(())
}
