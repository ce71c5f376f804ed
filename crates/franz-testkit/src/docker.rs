//! Opt-in single-node broker in a container (feature `docker`,
//! `FRANZ_TEST_BROKER=docker`), for machines with a Docker engine and no JDK.
//!
//! It runs the official `apache/kafka` image at [`kafka_version`](crate::kafka_version) in KRaft
//! combined mode, with the same test-friendly settings as the local broker,
//! on a host port reserved like a local node's and advertised as such.

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::dist::kafka_version;
use crate::error::HarnessError;
use crate::ports::PortBlock;

/// A running Kafka container; stopped and removed when dropped.
pub(crate) struct DockerKafka {
    _container: Container<GenericImage>,
    _ports: PortBlock,
    bootstrap: String,
}

impl std::fmt::Debug for DockerKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl DockerKafka {
    /// Starts the container and waits for "Kafka Server started".
    pub(crate) fn start() -> Result<Self, HarnessError> {
        let ports = PortBlock::reserve()?;
        let host_port = ports.node(0).plaintext;
        let bootstrap = format!("127.0.0.1:{host_port}");
        let env = [
            ("KAFKA_NODE_ID", "1".to_string()),
            ("KAFKA_PROCESS_ROLES", "broker,controller".into()),
            (
                "KAFKA_LISTENERS",
                "PLAINTEXT://:9092,CONTROLLER://:9093,INTERNAL://:9094".into(),
            ),
            (
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://{bootstrap},INTERNAL://localhost:9094"),
            ),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL".into()),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT".into(),
            ),
            ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093".into()),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
            ("KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS", "3".into()),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
            (
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
                "1".into(),
            ),
            ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1".into()),
            ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
            ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".into()),
            ("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000".into()),
            ("KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", "1000".into()),
            (
                "KAFKA_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS",
                "100".into(),
            ),
            ("KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS", "10000".into()),
            ("KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS", "1000".into()),
        ];
        let mut image = GenericImage::new("apache/kafka", &kafka_version())
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_mapped_port(host_port, 9092.tcp());
        for (k, v) in env {
            image = image.with_env_var(k, v);
        }
        let container = image.start().map_err(|e| {
            HarnessError::Docker(format!(
                "starting apache/kafka:{} failed (is a Docker engine running?): {e}",
                kafka_version()
            ))
        })?;
        Ok(Self {
            _container: container,
            _ports: ports,
            bootstrap,
        })
    }

    /// `127.0.0.1:<host port>`.
    pub(crate) fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }
}
