//! Group consumers through situations scripted with franz-mock's control
//! hooks: the coordinator answering NOT_COORDINATOR to one heartbeat and
//! COORDINATOR_LOAD_IN_PROGRESS to a commit, a fetch connection closed under
//! the consumer, slow fetches, the coordinator's broker killed. Each member
//! reads every record once and the group's committed offsets end at the log
//! end, under both group protocols.
//!
//! These need no broker, so they run in every mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::member;
use franz_consumer::GroupProtocol;
use franz_mock::{Control, ErrorCode, MockCluster};
use franz_producer::ProducerRecord;
use franz_protocol::ApiKey;

async fn scripted(protocol: GroupProtocol) {
    let mock = MockCluster::builder().brokers(3).start().unwrap();
    let b = mock.bootstrap();
    mock.create_topic("scripted", 4).unwrap();
    common::produce(&b, 0..2_000, |i| {
        ProducerRecord::new("scripted", i.to_string()).with_key(format!("k{i}"))
    })
    .await;
    let heartbeat = match protocol {
        GroupProtocol::Classic => ApiKey::Heartbeat,
        _ => ApiKey::ConsumerGroupHeartbeat,
    };
    let hooks = [
        mock.control(
            Control::on(heartbeat)
                .once()
                .respond_error(ErrorCode::NotCoordinator),
        ),
        mock.control(
            Control::on(ApiKey::OffsetCommit)
                .once()
                .respond_error(ErrorCode::CoordinatorLoadInProgress),
        ),
        mock.control(Control::on(ApiKey::Fetch).once().close_connection()),
        mock.control(
            Control::on(ApiKey::Fetch)
                .times(3)
                .delay(Duration::from_millis(300)),
        ),
    ];
    let mut consumer = member(&b, "scripted-group", "scripted", protocol).await;
    let mut seen = BTreeSet::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 2_000 {
        assert!(Instant::now() < deadline, "read {} of 2000", seen.len());
        for r in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            let v: u32 = std::str::from_utf8(r.value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert!(seen.insert(v), "record {v} delivered twice");
        }
        // Commits may be refused while the group moves; the next one goes on.
        let _ = consumer.commit().await;
        if !killed && seen.len() >= 1_000 {
            // The group's coordinator dies: the member finds the new one.
            mock.kill_broker(mock.coordinator("scripted-group").unwrap());
            killed = true;
        }
    }
    for h in &hooks {
        assert!(h.hits() >= 1, "a hook never fired");
    }
    // Every offset committed up to the log end.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed: i64 = (0..4)
            .filter_map(|p| mock.committed_offset("scripted-group", "scripted", p))
            .sum();
        if committed == 2_000 {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed} of 2000");
        let _ = consumer.poll(Duration::from_millis(100)).await;
        let _ = consumer.commit().await;
    }
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_member_rides_out_scripted_coordinator_and_fetch_faults() {
    scripted(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kip848_member_rides_out_scripted_coordinator_and_fetch_faults() {
    scripted(GroupProtocol::Consumer).await;
}
