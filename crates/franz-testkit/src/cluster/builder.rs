//! `ClusterBuilder`: nodes, listeners, SCRAM users, features, the fault proxy; `start` formats and launches the nodes.

use super::*;

/// Builds a local cluster. Obtain one from [`KafkaCluster::builder`].
///
/// ```no_run
/// use franz_testkit::{ClientAuth, KafkaCluster};
/// # async fn demo() -> Result<(), franz_testkit::HarnessError> {
/// let cluster = KafkaCluster::builder()
///     .nodes(1)
///     .broker_config("connections.max.reauth.ms", "5000")
///     .scram_user("alice", "alice-secret")
///     .ssl_listener()
///     .sasl_plaintext_listener()
///     .client_auth(ClientAuth::Required)
///     .fault_proxy()
///     .start()
///     .await?;
/// println!("{}", cluster.bootstrap());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    pub(super) nodes: usize,
    pub(super) overrides: Vec<(String, String)>,
    pub(super) node_overrides: Vec<(i32, String, String)>,
    pub(super) features: Vec<String>,
    pub(super) users: Vec<SaslUser>,
    pub(super) listeners: Vec<SecurityProtocol>,
    pub(super) client_auth: ClientAuth,
    pub(super) fault_proxy: bool,
    pub(super) heap_mb: Option<u32>,
    pub(super) exclusive: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            nodes: 1,
            overrides: Vec::new(),
            node_overrides: Vec::new(),
            features: Vec::new(),
            users: Vec::new(),
            listeners: vec![SecurityProtocol::Plaintext],
            client_auth: ClientAuth::None,
            fault_proxy: false,
            heap_mb: None,
            exclusive: true,
        }
    }
}

impl ClusterBuilder {
    /// Number of combined broker+controller nodes: 1 or 3.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Sets a broker property on every node, over the harness defaults.
    pub fn broker_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Sets a broker property on node `node` only (e.g. `broker.rack`),
    /// over the harness defaults and [`broker_config`](Self::broker_config).
    pub fn node_config(
        mut self,
        node: i32,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.node_overrides.push((node, key.into(), value.into()));
        self
    }

    /// A feature level given at storage format (`--feature name=level`),
    /// e.g. `feature("group.version", 1)`.
    pub fn feature(mut self, name: &str, level: u16) -> Self {
        self.features.push(format!("{name}={level}"));
        self
    }

    /// A SASL user: a PLAIN login on SASL listeners, and SCRAM-SHA-256 and
    /// SCRAM-SHA-512 credentials written at format time (`--add-scram`).
    pub fn scram_user(mut self, name: &str, password: &str) -> Self {
        self.users.push(SaslUser {
            name: name.into(),
            password: password.into(),
        });
        self
    }

    /// Adds an SSL listener (PEM certificates made for this cluster).
    pub fn ssl_listener(self) -> Self {
        self.listener(SecurityProtocol::Ssl)
    }

    /// Adds a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER).
    pub fn sasl_plaintext_listener(self) -> Self {
        self.listener(SecurityProtocol::SaslPlaintext)
    }

    /// Adds a SASL_SSL listener.
    pub fn sasl_ssl_listener(self) -> Self {
        self.listener(SecurityProtocol::SaslSsl)
    }

    fn listener(mut self, p: SecurityProtocol) -> Self {
        if !self.listeners.contains(&p) {
            self.listeners.push(p);
        }
        self
    }

    /// Client-certificate policy of the TLS listeners.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Puts a [`FaultProxy`] in front of each node's PLAINTEXT listener and
    /// has the broker advertise the proxy, so all client traffic crosses it.
    pub fn fault_proxy(mut self) -> Self {
        self.fault_proxy = true;
        self
    }

    /// Broker heap in MiB (default 512 for one node, 384 each for three).
    pub fn heap_mb(mut self, mb: u32) -> Self {
        self.heap_mb = Some(mb);
        self
    }

    /// Whether the cluster holds the cross-process owned-cluster lock for its
    /// lifetime (default `true`). Fault tests must keep it; a long-lived
    /// cluster for manual use (`franz-kafka up`) turns it off.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Starts the cluster and waits until it is ready. Blocking work runs on
    /// tokio's blocking pool.
    ///
    /// # Cancel safety
    /// Dropping it does not stop the start-up, which runs to its end on the
    /// blocking pool; the cluster is then dropped (brokers killed, directory
    /// removed).
    pub async fn start(self) -> Result<KafkaCluster, HarnessError> {
        tokio::task::spawn_blocking(move || self.start_blocking())
            .await
            .map_err(|e| HarnessError::Config(format!("cluster start-up task failed: {e}")))?
    }

    /// [`start`](Self::start) for code without a runtime (benchmarks, CLIs).
    pub fn start_blocking(self) -> Result<KafkaCluster, HarnessError> {
        if crate::on_mock() {
            // A mock run must not start JVMs behind the suite's back: a test
            // that needs its own brokers says so with `real_broker_only`.
            return Err(HarnessError::Config(
                "FRANZ_TEST_BROKER=mock: this test starts its own real brokers; mark it with franz_testkit::real_broker_only(\"why\")".into(),
            ));
        }
        if self.nodes != 1 && self.nodes != 3 {
            return Err(HarnessError::Config(format!(
                "clusters have 1 or 3 nodes, not {}",
                self.nodes
            )));
        }
        let began = Instant::now();
        let dist = KafkaDistribution::resolve()?;
        let fault_lock = if self.exclusive {
            Some(crate::fault_lock_blocking()?)
        } else {
            None
        };
        let ports = PortBlock::reserve()?;
        let dir = crate::run_dir()?;
        let needs_tls = self.listeners.iter().any(|l| l.uses_tls());
        let tls = needs_tls
            .then(|| TestCertificates::generate(&dir.join("tls")))
            .transpose()?;
        let cluster_id = crate::names::kafka_uuid();
        let nodes = (0..self.nodes)
            .map(|i| {
                let id = i as i32 + 1;
                let node_dir = dir.join(format!("node-{id}"));
                Node {
                    id,
                    ports: ports.node(i as u16),
                    config: node_dir.join("server.properties"),
                    log: node_dir.join("broker.log"),
                    dir: node_dir,
                    process: None,
                    starts: 0,
                    paused: false,
                }
            })
            .collect::<Vec<_>>();
        let proxies = if self.fault_proxy {
            nodes
                .iter()
                .map(|n| {
                    FaultProxy::start(
                        SocketAddr::from(([127, 0, 0, 1], n.ports.proxy)),
                        SocketAddr::from(([127, 0, 0, 1], n.ports.plaintext)),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let heap_mb = self
            .heap_mb
            .unwrap_or(if self.nodes == 1 { 512 } else { 384 });
        let inner = Arc::new(Inner {
            dist,
            dir,
            _ports: ports,
            nodes: nodes.into_iter().map(Mutex::new).collect(),
            proxies,
            tls,
            heap_mb,
            settings: self,
            _fault_lock: fault_lock,
        });
        let cluster = KafkaCluster { inner };
        cluster.inner.write_configs()?;
        cluster.inner.format_all(&cluster_id)?;
        for id in cluster.node_ids() {
            cluster.inner.spawn(id)?;
        }
        let timeout = start_timeout(cluster.inner.nodes.len());
        cluster
            .inner
            .wait_ready(Instant::now() + timeout, timeout)?;
        tracing::info!(
            nodes = cluster.inner.nodes.len(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            bootstrap = %cluster.bootstrap(),
            "kafka cluster ready"
        );
        Ok(cluster)
    }
}

/// The builder of the process-wide shared node: not exclusive, since
/// ordinary tests share it and never break it.
pub(crate) fn shared_builder() -> ClusterBuilder {
    ClusterBuilder::default().exclusive(false)
}
