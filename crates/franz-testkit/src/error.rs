//! The harness's one error type. Every variant names what is missing or what
//! went wrong in words a person can act on, because in CI this text is the
//! whole failure report.

use std::fmt;
use std::path::PathBuf;

/// Why the harness could not give a test what it asked for.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// No `java` on `PATH` (or in `JAVA_HOME`).
    #[error(
        "no Java runtime found: the Kafka broker harness needs a Java 17+ JDK (`java` on PATH or JAVA_HOME set); install one, e.g. `apt-get install openjdk-17-jdk-headless`, or point KAFKA_BOOTSTRAP at a running cluster"
    )]
    JavaMissing,
    /// `java` exists but is older than 17, which Kafka 4.x brokers require.
    #[error("Java {found} found at {path}, but Kafka 4.x brokers need Java 17 or newer")]
    JavaTooOld {
        /// The major version reported by `java -version`.
        found: u32,
        /// The `java` binary that was asked.
        path: String,
    },
    /// No `mvn` on `PATH`, so the broker jars cannot be resolved.
    #[error(
        "no Maven found: the Kafka broker harness resolves the broker jars with `mvn` (install Maven, e.g. `apt-get install maven`), or point KAFKA_BOOTSTRAP at a running cluster"
    )]
    MavenMissing,
    /// Maven ran but could not resolve the artifacts of a pom (the Kafka
    /// release, or Spring Kafka for the Spring peers).
    #[error("Maven could not resolve {version} from {pom}:\n{output}")]
    ResolutionFailed {
        /// What was resolved (`Apache Kafka 4.1.1`, `Spring Kafka`).
        version: String,
        /// The pom that was resolved.
        pom: PathBuf,
        /// The tail of Maven's output.
        output: String,
    },
    /// No free block of loopback ports below 32768 could be reserved.
    #[error("port clash: {0}")]
    PortClash(String),
    /// A broker process exited (or never became ready) during start-up.
    #[error("Kafka broker node {node} {what}; last lines of {log}:\n{tail}")]
    BrokerExited {
        /// The node id.
        node: i32,
        /// What happened, e.g. "exited with status 1".
        what: String,
        /// The node's log file.
        log: PathBuf,
        /// The last 40 lines of that log.
        tail: String,
    },
    /// The cluster did not reach the awaited state in time.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        secs: u64,
    },
    /// A node index that the cluster does not have.
    #[error("the cluster has no node {0}")]
    NoSuchNode(i32),
    /// A Java tool (TopicCommand, ProducerPerformance, ...) failed.
    #[error("{tool} failed ({status}):\n{output}")]
    ToolFailed {
        /// The main class that ran.
        tool: String,
        /// Its exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// A Node.js peer (npm install or a script) failed or is missing.
    #[error("Node.js peer: {0}")]
    Node(String),
    /// The readiness probe got an answer it could not parse.
    #[error("readiness probe: {0}")]
    Probe(String),
    /// Certificate generation failed.
    #[error("generating test certificates: {0}")]
    Certificates(String),
    /// The configuration asked for is contradictory.
    #[error("invalid harness configuration: {0}")]
    Config(String),
    /// The Docker path (feature `docker`, `FRANZ_TEST_BROKER=docker`) failed.
    #[error("docker broker: {0}")]
    Docker(String),
    /// The process-wide shared cluster failed to start (earlier, in this
    /// process); every test that asks for it gets this same cause.
    #[error("the shared Kafka cluster is unavailable: {0}")]
    SharedUnavailable(String),
    /// An I/O error, with what the harness was doing.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl HarnessError {
    /// Whether trying again may succeed: a port clash (other ports may be
    /// free next time) or a timeout on a slow machine. A missing tool, a
    /// failed resolution or a broker that exits does not fix itself.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::PortClash(_) | Self::Timeout { .. })
    }
}

/// Debug prints the same text as Display: a test that returns this error, or
/// `unwrap`s it, shows the actionable message instead of a struct dump.
impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Attaches a context line to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error into [`HarnessError::Io`] with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, HarnessError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, HarnessError> {
        self.map_err(|source| HarnessError::Io {
            context: context(),
            source,
        })
    }
}
