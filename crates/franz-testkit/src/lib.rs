//! # franz-testkit
//!
//! The test harness every franz test stands on: real Apache Kafka brokers
//! (KRaft, pinned to [`KAFKA_VERSION`]) started as Java processes from the
//! jars Maven resolves, plus the means to break them.
//!
//! ## Main types
//! - [`KafkaCluster::shared`] gives one single-node cluster per test process,
//!   started on first use and kept until the process exits. It honours
//!   `KAFKA_BOOTSTRAP` (use that cluster instead) and, with the `docker`
//!   feature, `FRANZ_TEST_BROKER=docker` (a testcontainers broker).
//! - [`KafkaCluster::single_owned`], [`KafkaCluster::three_nodes`] and
//!   [`KafkaCluster::builder`] give local clusters owned by one test, with
//!   [`kill`](KafkaCluster::kill), [`stop`](KafkaCluster::stop),
//!   [`restart`](KafkaCluster::restart), [`pause`](KafkaCluster::pause),
//!   [`resume`](KafkaCluster::resume) and [`logs`](KafkaCluster::logs);
//!   the builder adds broker overrides, format-time features, SCRAM users,
//!   SSL / SASL_PLAINTEXT / SASL_SSL listeners and fault proxies.
//! - [`FaultProxy`] sits between clients and a broker and drops, delays,
//!   cuts (RST) or black-holes traffic per API key.
//! - [`KafkaDistribution`] runs Java tools (`TopicCommand`, perf tools,
//!   `DumpLogSegments`) on the broker classpath.
//! - [`spring::SpringPeer`] runs Spring Kafka (a `ReplyingKafkaTemplate`
//!   and a `@KafkaListener` with `@SendTo`, `java/SpringEcho.java`) on the
//!   classpath Maven resolves from `spring/pom.xml`.
//! - [`unique_topic`] / [`unique_group`] keep tests on one cluster apart.
//!
//! ## How a local broker runs
//! 1. [`KafkaDistribution::resolve`] checks for Java 17+ and Maven, then
//!    resolves `broker/pom.xml` into `~/.m2` once; the classpath is cached
//!    under `~/.cache/franz-testkit` (or `$FRANZ_TESTKIT_CACHE`).
//! 2. A block of fixed loopback ports below 32768 is reserved under a
//!    cross-process file lock, so a restarted node can bind its ports again.
//! 3. Each node gets its own folder and `server.properties` (static KRaft
//!    quorum, combined broker+controller), is formatted with one cluster id,
//!    and starts as `kafka.Kafka` under `watchdog.sh`: the watchdog kills the
//!    JVM when the test process's pipe to it closes, even after SIGKILL.
//! 4. Ready means: every node's port is open, Metadata lists every node,
//!    the group coordinator answers (which creates `__consumer_offsets`), and
//!    internal topics have full ISRs.
//!
//! Owned clusters are exclusive across processes (a lock file), so fault
//! tests run one at a time. Every start-up failure names its cause: no Java,
//! no Maven, resolution failed, port clash, or the broker exited (with the
//! last 40 lines of its log).
//!
//! ## Environment
//! | variable | effect |
//! | --- | --- |
//! | `KAFKA_BOOTSTRAP` | [`KafkaCluster::shared`] uses this cluster |
//! | `FRANZ_TEST_BROKER=mock` | shared cluster is an in-process franz-mock; [`real_broker_only`] tests return at once |
//! | `FRANZ_SKIP_LOG` | file where [`real_broker_only`] records each skip |
//! | `FRANZ_TEST_BROKER=docker` | shared cluster in a container (feature `docker`) |
//! | `FRANZ_TESTKIT_CACHE` | where the resolved classpath is cached |
//! | `FRANZ_TESTKIT_KEEP` | keep cluster folders after the test |
//! | `FRANZ_TESTKIT_START_TIMEOUT_SECS` | start-up deadline (90 s / 180 s) |

mod cluster;
mod dist;
#[cfg(feature = "docker")]
mod docker;
mod error;
pub mod history;
mod names;
pub mod node;
mod ports;
pub mod probe;
mod process;
pub mod proxy;
pub mod spring;
pub mod subprocess;
mod tls;

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

pub use cluster::{ClientAuth, ClusterBuilder, KafkaCluster, SaslUser, SecurityProtocol};
pub use dist::{JavaRecord, KAFKA_VERSION, KAFKA_VERSION_ENV, KafkaDistribution, kafka_version};
pub use error::HarnessError;
pub use names::{unique_group, unique_topic};
pub use proxy::FaultProxy;
pub use tls::TestCertificates;

use error::IoContext;

/// [`KafkaDistribution::read_committed`] from async code: all of `topic`
/// as Java's `read_committed` consumer reads it, on tokio's blocking pool.
///
/// # Cancel safety
/// Dropping it does not stop the Java reader: it runs to its end on the
/// blocking pool, and only the records are discarded.
pub async fn java_read_committed(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<JavaRecord>, HarnessError> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        KafkaDistribution::resolve()?.read_committed(&b, &t, std::time::Duration::from_secs(300))
    })
    .await
    .map_err(|e| HarnessError::Config(format!("the Java reader's task failed: {e}")))?
}

/// The process-wide cluster for ordinary tests; see [`KafkaCluster::shared`].
#[derive(Debug)]
pub struct SharedCluster {
    backend: SharedBackend,
}

#[derive(Debug)]
enum SharedBackend {
    External(String),
    Local(KafkaCluster),
    Mock(franz_mock::MockCluster),
    #[cfg(feature = "docker")]
    Docker(docker::DockerKafka),
}

impl SharedCluster {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub fn bootstrap(&self) -> String {
        match &self.backend {
            SharedBackend::External(b) => b.clone(),
            SharedBackend::Local(c) => c.bootstrap(),
            SharedBackend::Mock(m) => m.bootstrap(),
            #[cfg(feature = "docker")]
            SharedBackend::Docker(d) => d.bootstrap(),
        }
    }

    /// Where the cluster comes from: `"KAFKA_BOOTSTRAP"`, `"local"`,
    /// `"mock"` or `"docker"`.
    pub fn origin(&self) -> &'static str {
        match &self.backend {
            SharedBackend::External(_) => "KAFKA_BOOTSTRAP",
            SharedBackend::Local(_) => "local",
            SharedBackend::Mock(_) => "mock",
            #[cfg(feature = "docker")]
            SharedBackend::Docker(_) => "docker",
        }
    }

    /// The in-process mock behind it (`FRANZ_TEST_BROKER=mock`).
    pub fn mock(&self) -> Option<&franz_mock::MockCluster> {
        match &self.backend {
            SharedBackend::Mock(m) => Some(m),
            _ => None,
        }
    }

    /// The local cluster behind it, when the harness started one.
    pub fn local(&self) -> Option<&KafkaCluster> {
        match &self.backend {
            SharedBackend::Local(c) => Some(c),
            _ => None,
        }
    }
}

static SHARED: OnceLock<Result<SharedCluster, String>> = OnceLock::new();

impl KafkaCluster {
    /// One single-node cluster per test process, started on first use and
    /// alive until the process exits (it survives the test that started it).
    ///
    /// With `KAFKA_BOOTSTRAP` set, that cluster is used instead. With
    /// `FRANZ_TEST_BROKER=docker` (and the `docker` feature) a container is
    /// started. Otherwise a local broker JVM is. If start-up fails, every
    /// test in the process gets the same error; none is skipped.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), franz_testkit::HarnessError> {
    /// let kafka = franz_testkit::KafkaCluster::shared().await?;
    /// let topic = franz_testkit::unique_topic("my-test");
    /// println!("{} on {}", topic, kafka.bootstrap());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping it does not stop the start-up: the shared cluster is
    /// started on the blocking pool anyway and kept for the process.
    pub async fn shared() -> Result<&'static SharedCluster, HarnessError> {
        let result = match SHARED.get() {
            Some(r) => r,
            None => tokio::task::spawn_blocking(|| SHARED.get_or_init(start_shared))
                .await
                .map_err(|e| HarnessError::Config(format!("shared cluster task failed: {e}")))?,
        };
        result
            .as_ref()
            .map_err(|msg| HarnessError::SharedUnavailable(msg.clone()))
    }
}

fn start_shared() -> Result<SharedCluster, String> {
    if let Some(bootstrap) = std::env::var("KAFKA_BOOTSTRAP")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        return Ok(SharedCluster {
            backend: SharedBackend::External(bootstrap.trim().to_string()),
        });
    }
    if on_mock() {
        // The same shape as the local shared broker: auto-creation off,
        // one partition by default.
        return franz_mock::MockCluster::builder()
            .auto_create_topics(false)
            .start()
            .map(|m| SharedCluster {
                backend: SharedBackend::Mock(m),
            })
            .map_err(|e| e.to_string());
    }
    if std::env::var("FRANZ_TEST_BROKER").as_deref() == Ok("docker") {
        #[cfg(feature = "docker")]
        return docker::DockerKafka::start()
            .map(|d| SharedCluster {
                backend: SharedBackend::Docker(d),
            })
            .map_err(|e| e.to_string());
        #[cfg(not(feature = "docker"))]
        return Err(
            "FRANZ_TEST_BROKER=docker needs franz-testkit's `docker` cargo feature (e.g. `cargo test --features franz-testkit/docker`)"
                .into(),
        );
    }
    cluster::shared_builder()
        .start_blocking()
        .map(|c| SharedCluster {
            backend: SharedBackend::Local(c),
        })
        .map_err(|e| e.to_string())
}

/// The number after `key` (such as `secs=`) on the `RESULT` line that the
/// peer programs print (the benchmark clients, `SpringEcho`): `RESULT
/// records=N secs=S failed=F ...`. `None` when there is no such line or
/// field.
pub fn result_field(out: &str, key: &str) -> Option<f64> {
    out.lines()
        .find(|l| l.starts_with("RESULT"))?
        .split_whitespace()
        .find_map(|p| p.strip_prefix(key))?
        .parse()
        .ok()
}

/// Whether the suite runs against franz-mock (`FRANZ_TEST_BROKER=mock`).
pub fn on_mock() -> bool {
    std::env::var("FRANZ_TEST_BROKER").as_deref() == Ok("mock")
}

/// The marker of a test that needs a real broker (owned clusters, broker
/// kills, Java tools, or an API franz-mock does not serve). Under
/// `FRANZ_TEST_BROKER=mock` it returns `true` and the test returns at
/// once; the skip is printed and, with `FRANZ_SKIP_LOG` set, appended to
/// that file so the run can say how many it skipped. Anywhere else it
/// returns `false` and the test runs.
///
/// ```
/// # fn t() {
/// if franz_testkit::real_broker_only("kills a broker") {
///     return;
/// }
/// # }
/// ```
#[track_caller]
pub fn real_broker_only(why: &str) -> bool {
    if !on_mock() {
        return false;
    }
    skip("real broker only", why, std::panic::Location::caller());
    true
}

/// Whether a test needs a newer Kafka release than the harness runs
/// (`FRANZ_KAFKA_VERSION`, under `just compat`): on an older release it
/// prints why, logs it as [`real_broker_only`] does, and returns `true`
/// so the test returns at once. Only for a feature the release lacks, whose
/// absence `tests/compat.rs` checks franz reports typed; never for a broker
/// that is missing.
///
/// ```
/// # fn t() {
/// if franz_testkit::needs_kafka((4, 0), "transaction.version at format time") {
///     return;
/// }
/// # }
/// ```
#[track_caller]
pub fn needs_kafka(at_least: (u32, u32), why: &str) -> bool {
    if kafka_at_least(at_least) {
        return false;
    }
    let why = format!(
        "needs Kafka {}.{}+, runs {}: {why}",
        at_least.0,
        at_least.1,
        kafka_version()
    );
    skip("newer Kafka only", &why, std::panic::Location::caller());
    true
}

/// Whether the harness runs Kafka `(major, minor)` or newer (see
/// [`kafka_version`]).
pub fn kafka_at_least(at_least: (u32, u32)) -> bool {
    let version = kafka_version();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= at_least
}

fn skip(kind: &str, why: &str, at: &std::panic::Location<'_>) {
    let test = std::thread::current().name().unwrap_or("main").to_string();
    let line = format!("{kind}: {test} ({}:{}): {why}", at.file(), at.line());
    eprintln!("{line}");
    if let Ok(path) = std::env::var("FRANZ_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            // One write per line: tests skipping at once must not interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Takes the cross-process lock that owned clusters hold for their lifetime.
pub(crate) fn fault_lock_blocking() -> Result<fs::File, HarnessError> {
    let dir = std::env::temp_dir().join("franz-testkit-locks");
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let path = dir.join("owned-cluster.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    file.lock().ctx(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// A fresh folder for one cluster. Folders left by dead test processes
/// (SIGKILLed, so no destructor ran) are removed on the way.
pub(crate) fn run_dir() -> Result<PathBuf, HarnessError> {
    let root = std::env::temp_dir().join("franz-testkit-run");
    fs::create_dir_all(&root).ctx(|| format!("creating {}", root.display()))?;
    if let Ok(entries) = fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix('p')
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(format!(
        "p{}-{:08x}",
        std::process::id(),
        names::random_u64() as u32
    ));
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
