//! Every admin call against the shared broker, with per-item errors checked
//! by mixing one bad item among good ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::time::Duration;

use bytes::BytesMut;
use franz_client::TopicPartition;
use franz_client::admin::{AclBinding, AlterConfigOp, ConfigResource, NewTopic, OffsetSpec};
use franz_client::franz_protocol::ErrorCode;
use franz_client::franz_protocol::messages::{ProduceRequest, produce_request};
use franz_client::franz_protocol::record::{BatchMeta, RecordBatchBuilder};
use franz_client::{Admin, Client, ClientConfig, ClientError, ConnectionKind};
use franz_testkit::{KafkaCluster, unique_group, unique_topic};

async fn admin() -> Admin {
    let bootstrap = franz_test_support::bootstrap().await;
    Admin::new(
        Client::connect(ClientConfig::new(&bootstrap))
            .await
            .unwrap(),
    )
}

async fn produce(client: &Client, topic: &str, partition: i32, n: usize) {
    let mut b = RecordBatchBuilder::new();
    for i in 0..n {
        b.push(
            1_700_000_000_000 + i as i64 * 1000,
            None,
            Some(format!("v{i}").as_bytes()),
            &[],
        );
    }
    let batch = b.finish(&BatchMeta::default()).unwrap();
    let conn = client
        .leader_connection(topic, partition, ConnectionKind::Produce)
        .await
        .unwrap();
    let resp = conn
        .send(&ProduceRequest {
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![produce_request::TopicProduceData {
                name: topic.into(),
                partition_data: vec![produce_request::PartitionProduceData {
                    index: partition,
                    records: Some(batch),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let _ = BytesMut::new();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_partitions_and_cluster() {
    if franz_testkit::real_broker_only(
        "internal topics and IncrementalAlterConfigs are not in franz-mock",
    ) {
        return;
    }
    let admin = admin().await;
    let good = unique_topic("admin-good");
    let compacted = unique_topic("admin-compacted");

    // validate_only creates nothing.
    let dry = admin
        .create_topics(vec![NewTopic::new(good.clone(), 2, 1)], true)
        .await
        .unwrap();
    assert!(dry[0].1.is_ok());
    assert!(
        admin
            .list_topics(false)
            .await
            .unwrap()
            .iter()
            .all(|t| t.name != good)
    );

    // One bad topic (replication factor 3 on one broker) among good ones.
    let results = admin
        .create_topics(
            vec![
                NewTopic::new(good.clone(), 2, 1),
                NewTopic::new(unique_topic("admin-bad"), 1, 3),
                NewTopic::new(compacted.clone(), 1, 1).config("cleanup.policy", "compact"),
            ],
            false,
        )
        .await
        .unwrap();
    assert!(results[0].1.is_ok(), "{:?}", results[0]);
    let bad = results[1].1.as_ref().unwrap_err();
    assert_eq!(
        bad.code(),
        Some(ErrorCode::InvalidReplicationFactor),
        "{bad}"
    );
    assert!(results[2].1.is_ok());
    // Creating it again is TOPIC_ALREADY_EXISTS for that item only.
    let again = admin
        .create_topics(vec![NewTopic::new(good.clone(), 2, 1)], false)
        .await
        .unwrap();
    assert_eq!(
        again[0].1.as_ref().unwrap_err().code(),
        Some(ErrorCode::TopicAlreadyExists)
    );

    let listed = admin.list_topics(false).await.unwrap();
    assert!(listed.iter().any(|t| t.name == good && !t.id.is_zero()));
    assert!(listed.iter().all(|t| !t.internal));
    assert!(
        admin
            .list_topics(true)
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "__consumer_offsets")
    );

    let missing = unique_topic("admin-missing");
    let described = admin.describe_topics(&[&good, &missing]).await.unwrap();
    let d = described[0].1.as_ref().unwrap();
    assert_eq!(d.partitions.len(), 2);
    assert!(
        d.partitions
            .iter()
            .all(|p| p.leader >= 0 && p.isr == vec![p.leader])
    );
    assert!(matches!(described[1].1, Err(ClientError::UnknownTopic(_))));

    // Partitions: grow one topic, fail to shrink another.
    let grown = admin
        .create_partitions(&[(&good, 4), (&compacted, 1), (&missing, 3)], false)
        .await
        .unwrap();
    assert!(grown[0].1.is_ok(), "{:?}", grown[0]);
    assert_eq!(
        grown[1].1.as_ref().unwrap_err().code(),
        Some(ErrorCode::InvalidPartitions)
    );
    assert_eq!(
        grown[2].1.as_ref().unwrap_err().code(),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
    let d = admin.describe_topics(&[&good]).await.unwrap();
    assert_eq!(d[0].1.as_ref().unwrap().partitions.len(), 4);

    let cluster = admin.describe_cluster().await.unwrap();
    assert!(!cluster.cluster_id.is_empty());
    assert_eq!(cluster.brokers.len(), 1);

    // Configs: describe, alter incrementally, and a bad one among good ones.
    let configs = admin
        .describe_configs(&[
            ConfigResource::Topic(compacted.clone()),
            ConfigResource::Topic(missing.clone()),
        ])
        .await
        .unwrap();
    let entries = configs[0].1.as_ref().unwrap();
    let policy = entries.iter().find(|e| e.name == "cleanup.policy").unwrap();
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert!(!policy.is_default());
    assert!(configs[1].1.is_err());
    let broker_configs = admin
        .describe_configs(&[ConfigResource::Broker(cluster.brokers[0].node_id)])
        .await
        .unwrap();
    assert!(
        broker_configs[0]
            .1
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "num.io.threads")
    );

    let altered = admin
        .incremental_alter_configs(
            &[
                (
                    ConfigResource::Topic(good.clone()),
                    vec![AlterConfigOp::Set("retention.ms".into(), "123456".into())],
                ),
                (
                    ConfigResource::Topic(good.clone()),
                    vec![AlterConfigOp::Set("no.such.config".into(), "1".into())],
                ),
            ],
            false,
        )
        .await
        .unwrap();
    assert!(altered[0].1.is_ok(), "{:?}", altered[0]);
    assert!(altered[1].1.is_err());
    let after = admin
        .describe_configs(&[ConfigResource::Topic(good.clone())])
        .await
        .unwrap();
    let retention = after[0]
        .1
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "retention.ms")
        .unwrap()
        .clone();
    assert_eq!(retention.value.as_deref(), Some("123456"));
    admin
        .incremental_alter_configs(
            &[(
                ConfigResource::Topic(good.clone()),
                vec![AlterConfigOp::Delete("retention.ms".into())],
            )],
            false,
        )
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();

    // Delete: one good, one missing.
    let deleted = admin.delete_topics(&[&compacted, &missing]).await.unwrap();
    assert!(deleted[0].1.is_ok());
    assert_eq!(
        deleted[1].1.as_ref().unwrap_err().code(),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_records_groups_and_producers() {
    if franz_testkit::real_broker_only(
        "DeleteRecords and DescribeProducers are not served by franz-mock",
    ) {
        return;
    }
    let admin = admin().await;
    let client = admin.client().clone();
    let topic = unique_topic("admin-offsets");
    admin
        .create_topics(vec![NewTopic::new(topic.clone(), 2, 1)], false)
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    produce(&client, &topic, 0, 10).await;
    produce(&client, &topic, 1, 4).await;

    let p0 = TopicPartition::new(topic.clone(), 0);
    let p1 = TopicPartition::new(topic.clone(), 1);
    let nowhere = TopicPartition::new(topic.clone(), 9);
    let listed = admin
        .list_offsets(&[
            (p0.clone(), OffsetSpec::Earliest),
            (p1.clone(), OffsetSpec::Latest),
            (nowhere.clone(), OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    assert_eq!(listed[0].1.as_ref().unwrap().offset, 0);
    assert_eq!(listed[1].1.as_ref().unwrap().offset, 4);
    assert!(listed[2].1.is_err());

    let by_ts = admin
        .list_offsets(&[(p0.clone(), OffsetSpec::Timestamp(1_700_000_005_000))])
        .await
        .unwrap();
    assert_eq!(by_ts[0].1.as_ref().unwrap().offset, 5);

    // Delete records before offset 3 on partition 0.
    let deleted = admin
        .delete_records(&[(p0.clone(), 3), (nowhere.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(*deleted[0].1.as_ref().unwrap(), 3);
    assert!(deleted[1].1.is_err());
    let earliest = admin
        .list_offsets(&[(p0.clone(), OffsetSpec::Earliest)])
        .await
        .unwrap();
    assert_eq!(earliest[0].1.as_ref().unwrap().offset, 3);

    // A group made by committing offsets; its lag; alter and reset.
    let group = unique_group("admin-group");
    let committed = admin
        .alter_group_offsets(&group, &[(p0.clone(), 7), (p1.clone(), 1)])
        .await
        .unwrap();
    assert!(committed.iter().all(|(_, r)| r.is_ok()), "{committed:?}");
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag[&p0].committed, 7);
    assert_eq!(lag[&p0].lag(), Some(3));
    assert_eq!(lag[&p1].lag(), Some(3));
    let reset = admin
        .reset_group_offsets(&group, &[p0.clone(), p1.clone()], OffsetSpec::Latest)
        .await
        .unwrap();
    assert!(reset.iter().all(|(_, r)| r.is_ok()));
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag[&p0].lag(), Some(0));
    let reset = admin
        .reset_group_offsets(&group, std::slice::from_ref(&p0), OffsetSpec::Earliest)
        .await
        .unwrap();
    assert!(reset[0].1.is_ok());
    assert_eq!(
        admin.list_group_offsets(&group).await.unwrap()[&p0].committed,
        3
    );

    let groups = admin.list_groups().await.unwrap();
    assert!(groups.iter().any(|g| g.group_id == group), "{groups:?}");
    let missing_group = unique_group("admin-nobody");
    let described = admin
        .describe_groups(&[&group, &missing_group])
        .await
        .unwrap();
    let d = described[0].1.as_ref().unwrap();
    assert_eq!(d.state, "Empty");
    assert!(d.members.is_empty());
    // An unknown group describes as Dead, like the Java admin shows it.
    assert_eq!(described[1].1.as_ref().unwrap().state, "Dead");

    let deleted = admin
        .delete_groups(&[&group, &missing_group])
        .await
        .unwrap();
    assert!(deleted[0].1.is_ok(), "{:?}", deleted[0]);
    assert_eq!(
        deleted[1].1.as_ref().unwrap_err().code(),
        Some(ErrorCode::GroupIdNotFound)
    );

    // Producers: a plain producer leaves no producer state; the call works
    // and reports the missing partition per item.
    let producers = admin
        .describe_producers(&[p0.clone(), nowhere.clone()])
        .await
        .unwrap();
    assert!(producers[0].1.as_ref().unwrap().is_empty());
    assert!(producers[1].1.is_err());
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_need_an_authorizer_and_work_with_one() {
    if franz_testkit::real_broker_only("ACL APIs and an authorizer on its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .broker_config(
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        )
        .broker_config("super.users", "User:ANONYMOUS")
        .start()
        .await
        .unwrap();
    let admin = Admin::new(
        Client::connect(ClientConfig::new(&cluster.bootstrap()))
            .await
            .unwrap(),
    );
    let topic = unique_topic("acl");
    let read = AclBinding {
        resource_type: 2,
        resource_name: Some(topic.clone()),
        pattern_type: 3,
        principal: Some("User:alice".into()),
        host: Some("*".into()),
        operation: 3,
        permission: 3,
    };
    let bad = AclBinding {
        operation: 0, // UNKNOWN operation: rejected
        ..read.clone()
    };
    let created = admin.create_acls(&[read.clone(), bad]).await.unwrap();
    assert!(created[0].1.is_ok(), "{:?}", created[0]);
    assert!(created[1].1.is_err());

    let filter = AclBinding {
        resource_type: 2,
        resource_name: Some(topic.clone()),
        pattern_type: 1,
        principal: None,
        host: None,
        operation: 1,
        permission: 1,
    };
    // ACL propagation through the metadata log is asynchronous.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = admin.describe_acls(&filter).await.unwrap();
        if found.contains(&read) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ACL never showed up: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deleted = admin
        .delete_acls(std::slice::from_ref(&filter))
        .await
        .unwrap();
    assert_eq!(deleted[0].1.as_ref().unwrap(), &vec![read]);
}
