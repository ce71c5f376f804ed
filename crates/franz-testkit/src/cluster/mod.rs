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

mod builder;
mod nodes;

pub use builder::ClusterBuilder;
pub(crate) use builder::shared_builder;

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

    /// Moves every node's PLAINTEXT listener to another port, all at once:
    /// every node is SIGKILLed, its client port is swapped with its spare
    /// one and advertised, and all start again together. Node ids, data and
    /// the controller and inter-broker ports stay. Afterwards no broker
    /// address a client learnt from metadata answers: only a client that
    /// goes back to its bootstrap servers (KIP-899) finds the cluster.
    /// Refused on a cluster with fault proxies, which pin the advertised
    /// ports.
    ///
    /// # Cancel safety
    /// Dropping it does not stop the move: it runs on the blocking pool
    /// until every node is listed again (or the wait times out).
    pub async fn move_client_ports(&self) -> Result<(), HarnessError> {
        if !self.inner.proxies.is_empty() {
            return Err(HarnessError::Config(
                "a cluster with fault proxies advertises the proxies' ports; it cannot move them"
                    .into(),
            ));
        }
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            for node in &inner.nodes {
                let mut n = lock(node);
                if let Some(mut p) = n.process.take() {
                    p.kill_now();
                }
                n.paused = false;
                let ports = &mut n.ports;
                std::mem::swap(&mut ports.plaintext, &mut ports.spare);
            }
            inner.write_configs()?;
            for id in 1..=inner.nodes.len() as i32 {
                inner.spawn(id)?;
            }
            let timeout = start_timeout(inner.nodes.len());
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
