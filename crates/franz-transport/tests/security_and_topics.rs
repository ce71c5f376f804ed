//! One `ClientConfig` (TLS and SASL) carried by the transport's consumer
//! and producer alike, on a broker of its own with only secured listeners
//! in use; and opt-in provisioning of request, reply and dead-letter topics
//! with the partition counts asked for (the testkit's brokers have
//! auto-creation off, so nothing exists unless the transport creates it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_client::{Client, ClientConfig, SaslMechanism, SecurityProtocol};
use franz_testkit::{KafkaCluster, SecurityProtocol as Listener, unique_group, unique_topic};
use franz_transport::{
    Payload, Provision, RpcError, TransportClient, TransportClientConfig, TransportServer,
    TransportServerConfig,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_secured_client_config_serves_both_ends_and_topics_are_provisioned() {
    if franz_testkit::real_broker_only("TLS and SASL listeners of its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .sasl_ssl_listener()
        .scram_user("gateway", "gateway-secret")
        .start()
        .await
        .unwrap();
    let tls = cluster.tls().unwrap().clone();
    let mut secured = ClientConfig::new(&cluster.bootstrap_for(Listener::SaslSsl).unwrap())
        .with_sasl(SaslMechanism::ScramSha512, "gateway", "gateway-secret");
    secured.security_protocol = SecurityProtocol::SaslSsl;
    secured.ssl_ca_location = Some(tls.ca_path());

    let charge = unique_topic("secure.charge");
    let created = unique_topic("secure.created");
    let provision = Provision {
        partitions: 3,
        reply_partitions: 2,
        replication_factor: 1,
    };
    let events = Arc::new(Mutex::new(Vec::<Value>::new()));
    let mut config =
        TransportServerConfig::from_client_config(secured.clone(), &unique_group("secure"));
    config.provision = Some(provision.clone());
    config.consumer.auto_offset_reset = franz_consumer::OffsetReset::Earliest;
    let server = {
        let events = Arc::clone(&events);
        TransportServer::builder(config)
            .message(&charge, |Payload(v): Payload<Value>| async move {
                Ok::<_, RpcError>(json!({"charged": v["cents"]}))
            })
            .event(&created, move |Payload(v): Payload<Value>| {
                let events = Arc::clone(&events);
                async move { events.lock().unwrap().push(v) }
            })
            .start()
            .await
            .unwrap()
    };
    let mut config =
        TransportClientConfig::from_client_config(secured.clone(), &unique_group("sr"));
    config.provision = Some(provision);
    let client = TransportClient::connect(config, &[&charge]).await.unwrap();
    let got: Value = client.send(&charge, &json!({"cents": 1250})).await.unwrap();
    assert_eq!(got, json!({"charged": 1250}));
    client.emit(&created, &json!({"order": 7})).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the event never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let meta = Client::connect(secured).await.unwrap();
    let mut counts = Vec::new();
    for t in [
        charge.clone(),
        created.clone(),
        format!("{charge}.reply"),
        format!("{created}.DLT"),
    ] {
        counts.push((
            t.clone(),
            meta.topic_metadata(&t).await.unwrap().partitions.len(),
        ));
    }
    let partitions = |t: &str| counts.iter().find(|(n, _)| n == t).map(|(_, c)| *c);
    assert_eq!(partitions(&charge), Some(3), "the request topic");
    assert_eq!(partitions(&created), Some(3), "the event topic");
    assert_eq!(
        partitions(&format!("{charge}.reply")),
        Some(2),
        "the reply topic"
    );
    assert_eq!(
        partitions(&format!("{created}.DLT")),
        Some(3),
        "the dead-letter topic, as many partitions as its source"
    );
    client.close().await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}
