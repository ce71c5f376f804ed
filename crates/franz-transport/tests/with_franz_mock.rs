//! The example franz-mock's docs show: a transport handler tested in a
//! `#[tokio::test]`, with no Java, no Docker and no broker, in about a
//! second. It runs in every mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use std::time::Duration;

use franz_mock::MockCluster;
use franz_transport::{
    Payload, RpcError, TransportClient, TransportClientConfig, TransportError, TransportServer,
    TransportServerConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: String,
    total: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Invoice {
    id: String,
    status: String,
}

/// The handler under test.
async fn invoice(Payload(order): Payload<Order>) -> Result<Invoice, RpcError> {
    if order.total == 0 {
        return Err(RpcError::message("nothing to invoice"));
    }
    Ok(Invoice {
        id: order.id,
        status: "INVOICED".into(),
    })
}

#[tokio::test]
async fn the_invoice_handler_answers_and_refuses_empty_orders() {
    // Topics are auto-created, as on a default broker.
    let kafka = MockCluster::start().unwrap();
    let server =
        TransportServer::builder(TransportServerConfig::new(&kafka.bootstrap(), "billing"))
            .message("order.created", invoice)
            .start()
            .await
            .unwrap();
    let client = TransportClient::connect(
        TransportClientConfig::new(&kafka.bootstrap(), "gateway"),
        &["order.created"],
    )
    .await
    .unwrap();

    let reply: Invoice = client
        .send(
            "order.created",
            &Order {
                id: "o-1".into(),
                total: 42,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        Invoice {
            id: "o-1".into(),
            status: "INVOICED".into()
        }
    );

    let refused = client
        .send::<_, Invoice>(
            "order.created",
            &Order {
                id: "o-2".into(),
                total: 0,
            },
        )
        .await;
    match refused {
        Err(TransportError::Remote(e)) => {
            assert_eq!(e.message.as_deref(), Some("nothing to invoice"))
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }

    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
