//! The public handles and the futures of their async methods are `Send`
//! (a user spawns them on a multi-threaded runtime), and the handles meant
//! to be shared are `Sync` too. These are compile-time checks: if a change
//! puts an `Rc`, a `RefCell` or a non-`Send` guard across an `.await`, this
//! file stops compiling, naming the method.
//!
//! Nothing here runs against a broker: the futures are built and dropped
//! unpolled, which sends nothing.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use franz::client::admin::NewTopic;
use franz::client::{Admin, Client, ClientConfig, ClientError, ConsumerGroupMetadata};
use franz::consumer::{ConsumeError, Consumer, ConsumerConfig, GroupConfig, GroupConsumer};
use franz::producer::{DeliveryFuture, ProduceError, Producer, ProducerConfig, ProducerRecord};
use franz::transport::{
    TransportClient, TransportClientConfig, TransportError, TransportServer, TransportServerConfig,
};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}
fn error<E: std::error::Error + Send + Sync + 'static>() {}

/// Handles shared between tasks by reference or clone: `Send + Sync`.
#[test]
fn shared_handles_are_send_and_sync() {
    send_sync::<Client>();
    send_sync::<Admin>();
    send_sync::<Producer>();
    send_sync::<DeliveryFuture>();
    send_sync::<TransportClient>();
    send_sync::<TransportServer>();
    send_sync::<ClientConfig>();
    send_sync::<ProducerConfig>();
    send_sync::<ConsumerConfig>();
    send_sync::<TransportClientConfig>();
    send_sync::<TransportServerConfig>();
}

/// Consumers are driven by one task at a time (`&mut self`), but move
/// between tasks and threads: `Send`. They are also `Sync`, so a `&`
/// to one (for `assignment()`, say) can cross threads.
#[test]
fn consumers_are_send_and_sync() {
    send_sync::<Consumer>();
    send_sync::<GroupConsumer>();
}

/// Every error crosses threads and boxes into `dyn Error + Send + Sync`.
#[test]
fn errors_are_send_sync_and_static() {
    error::<ClientError>();
    error::<ProduceError>();
    error::<ConsumeError>();
    error::<TransportError>();
    error::<franz::producer::SendError>();
    error::<franz::client::SaslError>();
    error::<franz::protocol::DecodeError>();
}

// The futures: each function builds them and drops them unpolled. They
// are never called; compiling them is the test.

async fn client_futures(config: ClientConfig) {
    send(&Client::connect(config.clone()));
    let client = Client::connect(config).await.unwrap();
    send(&client.refresh_all_metadata());
    send(&client.topic_metadata("t"));
    send(&client.send_any(&franz::protocol::messages::MetadataRequest::default()));
    let admin = Admin::new(client);
    send(&admin.create_topics(vec![NewTopic::new("t", 1, 1)], false));
    send(&admin.describe_groups(&["g"]));
    send(&admin.list_topics(false));
}

async fn producer_futures(config: ProducerConfig, group: ConsumerGroupMetadata) {
    send(&Producer::new(config.clone()));
    let producer = Producer::new(config).await.unwrap();
    send(&producer.send(ProducerRecord::new("t", "v")));
    send(&producer.send_and_wait(ProducerRecord::new("t", "v")));
    send(&producer.flush());
    send(&producer.close(Duration::from_secs(1)));
    send(&producer.init_transactions());
    send(&producer.send_offsets_to_transaction(&BTreeMap::new(), &group));
    send(&producer.commit_transaction());
    send(&producer.abort_transaction());
}

async fn consumer_futures(config: ConsumerConfig, group: GroupConfig) {
    send(&Consumer::new(config.clone()));
    let mut consumer = Consumer::new(config.clone()).await.unwrap();
    send(&consumer.poll(Duration::from_secs(1)));
    send(&consumer.seek_to_end());
    send(&consumer.close());
    send(&GroupConsumer::new(config.clone(), group.clone(), &["t"]));
    let mut member = GroupConsumer::new(config, group, &["t"]).await.unwrap();
    send(&member.poll(Duration::from_secs(1)));
    send(&member.wait_for_assignment(Duration::from_secs(1)));
    send(&member.commit());
    send(&member.committed());
    send(&member.close());
}

async fn transport_futures(client: TransportClientConfig, server: TransportServerConfig) {
    send(&TransportClient::connect(client.clone(), &["p"]));
    let c = TransportClient::connect(client, &["p"]).await.unwrap();
    let body = serde_json::json!({"a": 1});
    send(&c.send::<_, serde_json::Value>("p", &body));
    send(&c.emit("e", &body));
    send(&c.close());
    send(&TransportServer::builder(server).start());
    let s = TransportServer::builder(TransportServerConfig::new("b", "g"))
        .start()
        .await
        .unwrap();
    send(&s.shutdown(Duration::from_secs(1)));
}

/// Names the future-building functions, so that they are type-checked
/// and cannot rot unreferenced.
#[test]
fn public_futures_are_send() {
    let _ = (
        client_futures,
        producer_futures,
        consumer_futures,
        transport_futures,
    );
}
