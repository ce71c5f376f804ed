//! Local Kafka clusters of real broker JVMs: configuration, formatting,
//! start-up, readiness and the fault controls (kill, stop, restart, pause).
#![allow(clippy::disallowed_methods)] // the testkit drives processes and waits on them

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::dist::KafkaDistribution;
use crate::error::{HarnessError, IoContext};
use crate::ports::{NodePorts, PortBlock};
use crate::probe::{self, ClusterView};
use crate::process::{BrokerProcess, tail_file};
use crate::proxy::FaultProxy;
use crate::tls::TestCertificates;

/// How a client-facing listener is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for it (also the listener name the harness uses).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    fn port(self, ports: &NodePorts) -> u16 {
        match self {
            Self::Plaintext => ports.plaintext,
            Self::Ssl => ports.ssl,
            Self::SaslPlaintext => ports.sasl_plaintext,
            Self::SaslSsl => ports.sasl_ssl,
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// Whether TLS listeners ask for a client certificate (`ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate is asked for but optional.
    Requested,
    /// A client certificate is required (mTLS).
    Required,
}

/// A SASL user the brokers accept: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

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
    nodes: usize,
    overrides: Vec<(String, String)>,
    node_overrides: Vec<(i32, String, String)>,
    features: Vec<String>,
    users: Vec<SaslUser>,
    listeners: Vec<SecurityProtocol>,
    client_auth: ClientAuth,
    fault_proxy: bool,
    heap_mb: Option<u32>,
    exclusive: bool,
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

/// A local cluster of broker JVMs owned by one test. Dropping the last clone
/// kills every broker and deletes the cluster's files.
///
/// Owned clusters are exclusive: while one exists, another test process (or
/// thread) asking for one waits, so fault tests never overlap and three JVMs
/// never compete with three more for two cores.
///
/// ```no_run
/// use franz_testkit::KafkaCluster;
/// # async fn demo() -> Result<(), franz_testkit::HarnessError> {
/// let cluster = KafkaCluster::three_nodes().await?;
/// cluster.kill(2)?;
/// // ... the remaining two nodes keep serving ...
/// cluster.restart(2).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KafkaCluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dist: Arc<KafkaDistribution>,
    dir: PathBuf,
    _ports: PortBlock,
    nodes: Vec<Mutex<Node>>,
    proxies: Vec<FaultProxy>,
    tls: Option<TestCertificates>,
    heap_mb: u32,
    settings: ClusterBuilder,
    _fault_lock: Option<fs::File>,
}

#[derive(Debug)]
struct Node {
    id: i32,
    ports: NodePorts,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    process: Option<BrokerProcess>,
    starts: u32,
    paused: bool,
}

impl KafkaCluster {
    /// A builder for a local cluster (one node unless told otherwise).
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// A single local node owned by the calling test.
    ///
    /// # Cancel safety
    /// As [`ClusterBuilder::start`]: a dropped call still starts the node,
    /// then kills it.
    pub async fn single_owned() -> Result<Self, HarnessError> {
        Self::builder().nodes(1).start().await
    }

    /// Three local nodes (replication factor 3, `min.insync.replicas=2`)
    /// owned by the calling test.
    ///
    /// # Cancel safety
    /// As [`ClusterBuilder::start`]: a dropped call still starts the nodes,
    /// then kills them.
    pub async fn three_nodes() -> Result<Self, HarnessError> {
        Self::builder().nodes(3).start().await
    }

    /// Bootstrap servers of the PLAINTEXT listeners (through the fault
    /// proxies when the cluster has them), e.g. `127.0.0.1:20000,...`.
    pub fn bootstrap(&self) -> String {
        self.join_addrs(|n| {
            if self.inner.proxies.is_empty() {
                n.ports.plaintext
            } else {
                n.ports.proxy
            }
        })
    }

    /// Bootstrap servers of the PLAINTEXT listeners, bypassing any proxy.
    pub fn direct_bootstrap(&self) -> String {
        self.join_addrs(|n| n.ports.plaintext)
    }

    /// Bootstrap servers of the listener secured by `protocol`.
    pub fn bootstrap_for(&self, protocol: SecurityProtocol) -> Result<String, HarnessError> {
        if protocol == SecurityProtocol::Plaintext {
            return Ok(self.bootstrap());
        }
        if !self.inner.settings.listeners.contains(&protocol) {
            return Err(HarnessError::Config(format!(
                "the cluster has no {} listener; add it on the builder",
                protocol.as_str()
            )));
        }
        Ok(self.join_addrs(|n| protocol.port(&n.ports)))
    }

    fn join_addrs(&self, port: impl Fn(&Node) -> u16) -> String {
        let mut out = String::new();
        for n in &self.inner.nodes {
            let n = lock(n);
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "127.0.0.1:{}", port(&n));
        }
        out
    }

    /// Node ids, `1..=n`.
    pub fn node_ids(&self) -> Vec<i32> {
        (1..=self.inner.nodes.len() as i32).collect()
    }

    /// The certificates of the TLS listeners, if the cluster has any.
    pub fn tls(&self) -> Option<&TestCertificates> {
        self.inner.tls.as_ref()
    }

    /// The SASL users the brokers accept.
    pub fn sasl_users(&self) -> &[SaslUser] {
        &self.inner.settings.users
    }

    /// The fault proxy in front of `node`'s PLAINTEXT listener.
    pub fn proxy(&self, node: i32) -> Result<&FaultProxy, HarnessError> {
        if self.inner.proxies.is_empty() {
            return Err(HarnessError::Config(
                "this cluster was built without .fault_proxy()".into(),
            ));
        }
        self.inner
            .proxies
            .get(index(node, self.inner.nodes.len())?)
            .ok_or(HarnessError::NoSuchNode(node))
    }

    /// The Kafka installation the brokers run from (for Java tools).
    pub fn distribution(&self) -> &Arc<KafkaDistribution> {
        &self.inner.dist
    }

    /// The cluster's working folder (configs, data, logs, certificates).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `node`'s data folder (`log.dirs`), e.g. for `DumpLogSegments`.
    pub fn data_dir(&self, node: i32) -> Result<PathBuf, HarnessError> {
        Ok(self.inner.node(node)?.dir.join("data"))
    }

    /// SIGKILL: the broker dies at once, with no controlled shutdown.
    pub fn kill(&self, node: i32) -> Result<(), HarnessError> {
        let mut n = self.inner.node(node)?;
        if let Some(mut p) = n.process.take() {
            p.kill_now();
        }
        n.paused = false;
        Ok(())
    }

    /// Clean shutdown (SIGTERM, controlled shutdown), SIGKILL after 60 s.
    /// Returns once the process has exited.
    ///
    /// # Cancel safety
    /// Dropping it does not stop the shutdown: it runs on the blocking pool
    /// until the process has exited.
    pub async fn stop(&self, node: i32) -> Result<(), HarnessError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut n = inner.node(node)?;
            if let Some(mut p) = n.process.take()
                && !p.terminate(Duration::from_secs(60))
            {
                tracing::warn!(node, "broker ignored SIGTERM for 60s and was killed");
            }
            n.paused = false;
            Ok(())
        })
        .await
    }

    /// Starts `node` again on the same ports and data (stopping it first if
    /// it runs) and waits until the cluster's metadata lists it.
    ///
    /// # Cancel safety
    /// Dropping it does not stop the restart: it runs on the blocking pool
    /// until the node is listed (or the wait times out).
    pub async fn restart(&self, node: i32) -> Result<(), HarnessError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            {
                let mut n = inner.node(node)?;
                if let Some(mut p) = n.process.take() {
                    p.terminate(Duration::from_secs(60));
                }
                n.paused = false;
            }
            inner.spawn(node)?;
            let timeout = start_timeout(1);
            inner.wait_ready(Instant::now() + timeout, timeout)
        })
        .await
    }

    /// SIGSTOP: the broker keeps its sockets open and answers nothing.
    pub fn pause(&self, node: i32) -> Result<(), HarnessError> {
        let mut n = self.inner.node(node)?;
        let p = n.process.as_ref().ok_or_else(|| not_running(node))?;
        p.signal(Signal::SIGSTOP);
        if !p.wait_stopped(Duration::from_secs(5)) {
            return Err(HarnessError::Timeout {
                what: format!("node {node} to stop after SIGSTOP"),
                secs: 5,
            });
        }
        n.paused = true;
        Ok(())
    }

    /// SIGCONT: a paused broker runs again.
    pub fn resume(&self, node: i32) -> Result<(), HarnessError> {
        let mut n = self.inner.node(node)?;
        let p = n.process.as_ref().ok_or_else(|| not_running(node))?;
        p.signal(Signal::SIGCONT);
        n.paused = false;
        Ok(())
    }

    /// Whether `node`'s JVM is alive (paused counts as alive).
    pub fn is_running(&self, node: i32) -> Result<bool, HarnessError> {
        let mut n = self.inner.node(node)?;
        Ok(match n.process.as_mut() {
            Some(p) => p.exit_status().is_none(),
            None => false,
        })
    }

    /// The JVM's pid, while it runs.
    pub fn pid(&self, node: i32) -> Result<Option<i32>, HarnessError> {
        Ok(self
            .inner
            .node(node)?
            .process
            .as_ref()
            .map(BrokerProcess::pid))
    }

    /// Everything `node` has logged, across restarts.
    pub fn logs(&self, node: i32) -> Result<String, HarnessError> {
        let path = self.inner.node(node)?.log.clone();
        let bytes = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Path of `node`'s log file.
    pub fn log_path(&self, node: i32) -> Result<PathBuf, HarnessError> {
        Ok(self.inner.node(node)?.log.clone())
    }

    /// Metadata (v1) as seen by the first live node.
    ///
    /// # Cancel safety
    /// Dropping it only discards the answer: the request runs to its end on
    /// the blocking pool.
    pub async fn describe(&self) -> Result<ClusterView, HarnessError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.metadata_from_any(Duration::from_secs(5))).await
    }

    /// Waits until every partition of every topic has a leader and a full ISR.
    ///
    /// # Cancel safety
    /// Dropping it only stops the caller's wait: the metadata polling goes
    /// on, on the blocking pool, until it succeeds or `timeout` passes.
    pub async fn wait_for_full_isr(&self, timeout: Duration) -> Result<(), HarnessError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.poll_until(
                Instant::now() + timeout,
                timeout,
                "every partition to have a full ISR",
                |v| v.topics.iter().all(|t| full_isr(t, None)),
            )
        })
        .await
    }

    /// Waits until the metadata lists exactly the brokers in `ids`.
    ///
    /// # Cancel safety
    /// Dropping it only stops the caller's wait: the metadata polling goes
    /// on, on the blocking pool, until it succeeds or `timeout` passes.
    pub async fn wait_for_brokers(
        &self,
        ids: Vec<i32>,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let what = format!("the metadata to list brokers {ids:?}");
            inner.poll_until(Instant::now() + timeout, timeout, &what, |v| {
                v.brokers == ids
            })
        })
        .await
    }
}

impl Inner {
    fn node(&self, id: i32) -> Result<MutexGuard<'_, Node>, HarnessError> {
        Ok(lock(&self.nodes[index(id, self.nodes.len())?]))
    }

    fn write_configs(&self) -> Result<(), HarnessError> {
        let voters = self
            .nodes
            .iter()
            .map(|n| {
                let n = lock(n);
                format!("{}@127.0.0.1:{}", n.id, n.ports.controller)
            })
            .collect::<Vec<_>>()
            .join(",");
        for node in &self.nodes {
            let n = lock(node);
            fs::create_dir_all(n.dir.join("data"))
                .ctx(|| format!("creating {}", n.dir.display()))?;
            let props = self.properties(&n, &voters);
            fs::write(&n.config, render_properties(&props))
                .ctx(|| format!("writing {}", n.config.display()))?;
        }
        Ok(())
    }

    /// The broker properties for one node: harness defaults, listeners, then
    /// the builder's overrides (which win).
    fn properties(&self, n: &Node, voters: &str) -> Vec<(String, String)> {
        let s = &self.settings;
        let three = self.nodes.len() == 3;
        let rf = if three { "3" } else { "1" };
        let min_isr = if three { "2" } else { "1" };
        let mut listeners = vec![
            format!("CONTROLLER://127.0.0.1:{}", n.ports.controller),
            format!("INTERNAL://127.0.0.1:{}", n.ports.internal),
        ];
        let mut advertised = vec![format!("INTERNAL://127.0.0.1:{}", n.ports.internal)];
        for l in &s.listeners {
            let port = l.port(&n.ports);
            listeners.push(format!("{}://127.0.0.1:{port}", l.as_str()));
            let adv = if *l == SecurityProtocol::Plaintext && !self.proxies.is_empty() {
                n.ports.proxy
            } else {
                port
            };
            advertised.push(format!("{}://127.0.0.1:{adv}", l.as_str()));
        }
        let mut p: Vec<(String, String)> = [
            ("process.roles", "broker,controller".to_string()),
            ("node.id", n.id.to_string()),
            ("controller.quorum.voters", voters.to_string()),
            ("listeners", listeners.join(",")),
            ("advertised.listeners", advertised.join(",")),
            ("inter.broker.listener.name", "INTERNAL".into()),
            ("controller.listener.names", "CONTROLLER".into()),
            (
                "listener.security.protocol.map",
                "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL".into(),
            ),
            ("log.dirs", n.dir.join("data").display().to_string()),
            ("num.partitions", "1".into()),
            ("default.replication.factor", rf.into()),
            ("min.insync.replicas", min_isr.into()),
            ("offsets.topic.replication.factor", rf.into()),
            ("offsets.topic.num.partitions", "3".into()),
            ("transaction.state.log.replication.factor", rf.into()),
            ("transaction.state.log.min.isr", min_isr.into()),
            ("transaction.state.log.num.partitions", "3".into()),
            ("share.coordinator.state.topic.replication.factor", rf.into()),
            ("share.coordinator.state.topic.min.isr", min_isr.into()),
            ("auto.create.topics.enable", "false".into()),
            ("group.initial.rebalance.delay.ms", "0".into()),
            // Classic groups: allow short session timeouts in tests.
            ("group.min.session.timeout.ms", "1000".into()),
            // KIP-848 groups: seconds, not the 5 s / 45 s production defaults.
            ("group.consumer.heartbeat.interval.ms", "1000".into()),
            ("group.consumer.min.heartbeat.interval.ms", "100".into()),
            ("group.consumer.session.timeout.ms", "10000".into()),
            ("group.consumer.min.session.timeout.ms", "1000".into()),
            // Two cores: few threads, small buffers.
            ("num.network.threads", "2".into()),
            ("num.io.threads", if three { "2" } else { "4" }.into()),
            ("num.replica.fetchers", "1".into()),
            ("background.threads", "2".into()),
            ("log.cleaner.threads", "1".into()),
            ("log.cleaner.dedupe.buffer.size", "16777216".into()),
            // Three JVMs on two cores stall now and then; do not let a GC
            // pause start a controller election or fence a broker.
            ("controller.quorum.election.timeout.ms", if three { "3000" } else { "1000" }.into()),
            ("controller.quorum.fetch.timeout.ms", if three { "6000" } else { "2000" }.into()),
            ("broker.session.timeout.ms", "6000".into()),
            ("broker.heartbeat.interval.ms", "1000".into()),
            ("replica.lag.time.max.ms", "10000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

        if let Some(tls) = &self.tls {
            let auth = match s.client_auth {
                ClientAuth::None => "none",
                ClientAuth::Requested => "requested",
                ClientAuth::Required => "required",
            };
            for l in s.listeners.iter().filter(|l| l.uses_tls()) {
                let prefix = format!("listener.name.{}.", l.as_str().to_ascii_lowercase());
                for (k, v) in [
                    ("ssl.keystore.type", "PEM"),
                    (
                        "ssl.keystore.certificate.chain",
                        tls.server_chain_pem.as_str(),
                    ),
                    ("ssl.keystore.key", tls.server_key_pem.as_str()),
                    ("ssl.truststore.type", "PEM"),
                    ("ssl.truststore.certificates", tls.ca_pem.as_str()),
                    ("ssl.client.auth", auth),
                ] {
                    p.push((format!("{prefix}{k}"), v.to_string()));
                }
            }
        }
        if s.listeners.iter().any(|l| l.uses_sasl()) {
            p.push((
                "sasl.enabled.mechanisms".into(),
                "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER".into(),
            ));
            let plain_users: String = s
                .users
                .iter()
                .map(|u| format!(" user_{}=\"{}\"", u.name, u.password))
                .collect();
            for l in s.listeners.iter().filter(|l| l.uses_sasl()) {
                let prefix = format!("listener.name.{}.", l.as_str().to_ascii_lowercase());
                p.push((
                    format!("{prefix}plain.sasl.jaas.config"),
                    format!("org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};"),
                ));
                for mech in ["scram-sha-256", "scram-sha-512"] {
                    p.push((
                        format!("{prefix}{mech}.sasl.jaas.config"),
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
                    ));
                }
                // The broker's built-in unsecured JWS validator: tests sign
                // nothing, the token's `sub` claim is the principal.
                p.push((
                    format!("{prefix}oauthbearer.sasl.jaas.config"),
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\";".into(),
                ));
            }
        }
        let node_overrides = s
            .node_overrides
            .iter()
            .filter(|(id, _, _)| *id == n.id)
            .map(|(_, k, v)| (k, v));
        for (k, v) in s
            .overrides
            .iter()
            .map(|(k, v)| (k, v))
            .chain(node_overrides)
        {
            match p.iter_mut().find(|(pk, _)| pk == k) {
                Some(entry) => entry.1.clone_from(v),
                None => p.push((k.clone(), v.clone())),
            }
        }
        p
    }

    /// Formats every node's storage with one cluster id, in parallel.
    fn format_all(&self, cluster_id: &str) -> Result<(), HarnessError> {
        let mut extra: Vec<String> = Vec::new();
        for f in &self.settings.features {
            extra.push("--feature".into());
            extra.push(f.clone());
        }
        for u in &self.settings.users {
            for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                extra.push("--add-scram".into());
                extra.push(format!("{mech}=[name={},password={}]", u.name, u.password));
            }
        }
        let configs: Vec<PathBuf> = self.nodes.iter().map(|n| lock(n).config.clone()).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = configs
                .iter()
                .map(|config| {
                    let extra = &extra;
                    scope.spawn(move || {
                        let mut args = vec![
                            "format".to_string(),
                            "--config".into(),
                            config.display().to_string(),
                            // `=` form: a random id may start with '-', which
                            // argparse would take for an option.
                            format!("--cluster-id={cluster_id}"),
                            "--ignore-formatted".into(),
                        ];
                        args.extend(extra.iter().cloned());
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        self.dist
                            .run_tool("kafka.tools.StorageTool", &args, Duration::from_secs(120))
                            .map(|_| ())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(HarnessError::Config(
                        "storage format thread panicked".into(),
                    ))
                })
            })
        })
    }

    fn spawn(&self, id: i32) -> Result<(), HarnessError> {
        let mut n = self.node(id)?;
        n.starts += 1;
        let heap = format!("{}m", self.heap_mb);
        let args = vec![
            format!("-Xms{heap}"),
            format!("-Xmx{heap}"),
            "-XX:+UseG1GC".into(),
            "-XX:MaxGCPauseMillis=20".into(),
            "-XX:ParallelGCThreads=1".into(),
            "-XX:ConcGCThreads=1".into(),
            "-XX:CICompilerCount=2".into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
            "-Djava.awt.headless=true".into(),
            format!(
                "-Dlog4j2.configurationFile={}",
                self.dist.broker_log4j().display()
            ),
            format!("-Dkafka.logs.dir={}", n.dir.join("logs").display()),
            "-cp".into(),
            self.dist.classpath().to_string(),
            "kafka.Kafka".into(),
            n.config.display().to_string(),
        ];
        let banner = format!("starting node {} (start #{})", n.id, n.starts);
        let process = BrokerProcess::spawn(
            &self.dist.watchdog(),
            &n.log,
            self.dist.java(),
            &args,
            &banner,
        )?;
        n.process = Some(process);
        n.paused = false;
        Ok(())
    }

    /// Waits for: each running node's port, the metadata listing every
    /// running node, the group coordinator, and full ISRs on internal topics.
    fn wait_ready(&self, deadline: Instant, timeout: Duration) -> Result<(), HarnessError> {
        let running: Vec<i32> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let n = lock(n);
                n.process.is_some().then_some(n.id)
            })
            .collect();
        for &id in &running {
            self.wait_port(id, deadline, timeout)?;
        }
        self.poll_until(
            deadline,
            timeout,
            "the metadata to list every running broker",
            |v| running.iter().all(|id| v.brokers.contains(id)),
        )?;
        let addr = self.any_live_addr()?;
        // FindCoordinator makes the broker create __consumer_offsets, so the
        // first group test does not pay for it (or time out on it).
        loop {
            self.check_alive()?;
            match probe::find_group_coordinator(
                addr,
                "franz-testkit-warmup",
                Duration::from_secs(5),
            ) {
                Ok(0) => break,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(code) => {
                    return Err(HarnessError::Timeout {
                        what: format!("the group coordinator (last error code {code})"),
                        secs: timeout.as_secs(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let replicas = running.len();
        self.poll_until(
            deadline,
            timeout,
            "internal topics to have full ISRs",
            |v| {
                v.topics
                    .iter()
                    .filter(|t| t.internal)
                    .all(|t| full_isr(t, Some(replicas)))
            },
        )
    }

    fn wait_port(&self, id: i32, deadline: Instant, timeout: Duration) -> Result<(), HarnessError> {
        let port = self.node(id)?.ports.plaintext;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            self.check_alive()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let n = self.node(id)?;
                return Err(HarnessError::BrokerExited {
                    node: id,
                    what: format!(
                        "did not open its listener 127.0.0.1:{port} within {}s",
                        timeout.as_secs()
                    ),
                    log: n.log.clone(),
                    tail: tail_file(&n.log, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails with the log tail if a node that should run has exited.
    fn check_alive(&self) -> Result<(), HarnessError> {
        for node in &self.nodes {
            let mut n = lock(node);
            let Some(p) = n.process.as_mut() else {
                continue;
            };
            if let Some(status) = p.exit_status() {
                let what = format!("exited during start-up ({status})");
                n.process = None;
                let log = n.log.clone();
                let tail = tail_file(&log, 40);
                let what = if tail.contains("Address already in use") {
                    format!("{what}: port clash, another program holds one of its ports")
                } else {
                    what
                };
                return Err(HarnessError::BrokerExited {
                    node: n.id,
                    what,
                    log,
                    tail,
                });
            }
        }
        Ok(())
    }

    fn any_live_addr(&self) -> Result<SocketAddr, HarnessError> {
        self.nodes
            .iter()
            .find_map(|n| {
                let n = lock(n);
                (n.process.is_some() && !n.paused)
                    .then(|| SocketAddr::from(([127, 0, 0, 1], n.ports.plaintext)))
            })
            .ok_or_else(|| HarnessError::Config("no broker is running".into()))
    }

    fn metadata_from_any(&self, timeout: Duration) -> Result<ClusterView, HarnessError> {
        let mut last = None;
        for node in &self.nodes {
            let (live, port) = {
                let n = lock(node);
                (n.process.is_some() && !n.paused, n.ports.plaintext)
            };
            if !live {
                continue;
            }
            match probe::metadata(SocketAddr::from(([127, 0, 0, 1], port)), timeout) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Config("no broker is running".into())))
    }

    fn poll_until(
        &self,
        deadline: Instant,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&ClusterView) -> bool,
    ) -> Result<(), HarnessError> {
        loop {
            self.check_alive()?;
            let last = match self.metadata_from_any(Duration::from_secs(5)) {
                Ok(view) if done(&view) => return Ok(()),
                Ok(view) => format!("brokers {:?}", view.brokers),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{what} (last seen: {last})"),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(mut p) = lock(node).process.take() {
                p.kill_now();
            }
        }
        if std::env::var_os("FRANZ_TESTKIT_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every partition led, and its ISR as large as its replica set (or `want`).
fn full_isr(t: &crate::probe::TopicView, want: Option<usize>) -> bool {
    t.error_code == 0
        && t.partitions.iter().all(|p| {
            p.leader >= 0 && p.isr.len() == want.unwrap_or(p.replicas.len()).min(p.replicas.len())
        })
}

fn start_timeout(nodes: usize) -> Duration {
    let secs = std::env::var("FRANZ_TESTKIT_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if nodes == 1 { 90 } else { 180 });
    Duration::from_secs(secs)
}

fn index(node: i32, len: usize) -> Result<usize, HarnessError> {
    usize::try_from(node - 1)
        .ok()
        .filter(|i| *i < len)
        .ok_or(HarnessError::NoSuchNode(node))
}

fn not_running(node: i32) -> HarnessError {
    HarnessError::Config(format!("node {node} is not running"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HarnessError> + Send + 'static,
) -> Result<T, HarnessError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HarnessError::Config(format!("harness task failed: {e}")))?
}

/// Renders `key=value` lines, escaping as `java.util.Properties` reads them
/// (PEM values become one line with `\n` escapes).
fn render_properties(props: &[(String, String)]) -> String {
    let mut out = String::from("# Written by franz-testkit.\n");
    for (k, v) in props {
        let v = v
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "");
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_escape_newlines_and_backslashes() {
        let out = render_properties(&[("a".into(), "x\ny\\z".into())]);
        assert!(out.contains("a=x\\ny\\\\z\n"));
    }

    #[test]
    fn node_ids_map_to_indices() {
        assert_eq!(index(1, 3).unwrap(), 0);
        assert_eq!(index(3, 3).unwrap(), 2);
        assert!(index(0, 3).is_err());
        assert!(index(4, 3).is_err());
    }
}
