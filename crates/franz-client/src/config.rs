//! `ClientConfig`: one configuration whose fields mirror the Java client's
//! names in snake_case, buildable from a Java-style `key=value` map.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;

/// How connections to brokers are secured (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// Plain TCP.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether TLS is used.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether SASL is used.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// A SASL mechanism (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616).
    #[default]
    Plain,
    /// SCRAM-SHA-256 (RFC 5802/7677).
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
    /// OAUTHBEARER (RFC 7628), with a token from [`TokenProvider`].
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    fn parse(s: &str) -> Result<Self, ClientError> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            "OAUTHBEARER" => Ok(Self::OAuthBearer),
            other => Err(ClientError::Config(format!(
                "unknown sasl.mechanism {other}"
            ))),
        }
    }
}

/// Supplies OAUTHBEARER tokens; called for every authentication, so it may
/// refresh them.
pub trait TokenProvider: Send + Sync + 'static {
    /// A token (the compact JWS the broker validates).
    fn token(&self) -> Result<String, String>;
}

impl<F> TokenProvider for F
where
    F: Fn() -> Result<String, String> + Send + Sync + 'static,
{
    fn token(&self) -> Result<String, String> {
        self()
    }
}

/// Client configuration. Field names follow the Java client's settings in
/// snake_case; [`ClientConfig::from_properties`] accepts the Java names.
///
/// ```
/// use franz_client::ClientConfig;
/// let config = ClientConfig::new("127.0.0.1:9092").with_client_id("billing");
/// assert_eq!(config.bootstrap_servers, vec!["127.0.0.1:9092".to_string()]);
///
/// let from_java = ClientConfig::from_properties([
///     ("bootstrap.servers", "a:9092,b:9092"),
///     ("request.timeout.ms", "5000"),
/// ]).unwrap();
/// assert_eq!(from_java.bootstrap_servers.len(), 2);
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` entries; unreachable ones are skipped.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`.
    pub client_id: String,
    /// `client.rack`: sent where the protocol carries it (KIP-392).
    pub client_rack: Option<String>,
    /// `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// `sasl.mechanism`.
    pub sasl_mechanism: SaslMechanism,
    /// SASL user (PLAIN, SCRAM); from `sasl.jaas.config` or `sasl.username`.
    pub sasl_username: Option<String>,
    /// SASL password.
    pub sasl_password: Option<String>,
    /// OAUTHBEARER token source.
    pub sasl_oauthbearer_token_provider: Option<Arc<dyn TokenProvider>>,
    /// `franz.sasl.scram.max.iterations`: the most PBKDF2 iterations a SCRAM
    /// server may demand (default 1,000,000, librdkafka's cap). A hostile
    /// server asking 2^32 - 1 would cost minutes of CPU; below 4096 (Java's
    /// floor, always enforced) a captured proof is cheap to guess offline.
    pub sasl_scram_max_iterations: u32,
    /// `ssl.ca.location` / `ssl.truststore.location`: PEM CA bundle. `None`
    /// uses the system's trust store (the bundled web PKI roots if it is
    /// empty).
    pub ssl_ca_location: Option<PathBuf>,
    /// CA certificates as PEM text (instead of a file).
    pub ssl_ca_pem: Option<String>,
    /// `ssl.certificate.location`: client certificate chain (PEM) for mTLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: client private key (PEM) for mTLS.
    pub ssl_key_location: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm`: `true` (Java's `https`, the
    /// default) checks the broker's certificate against its host name.
    pub ssl_endpoint_identification: bool,
    /// Overrides the SNI / verification name for every broker.
    pub ssl_sni_host: Option<String>,
    /// `request.timeout.ms`: how long one request may wait for its response.
    pub request_timeout: Duration,
    /// `default.api.timeout.ms`: the deadline of operations that retry.
    pub default_api_timeout: Duration,
    /// `metadata.max.age.ms`: refresh metadata at least this often.
    pub metadata_max_age: Duration,
    /// `connections.max.idle.ms`: close connections idle this long.
    pub connections_max_idle: Duration,
    /// `reconnect.backoff.ms`: first wait before reconnecting to a broker.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the longest such wait.
    pub reconnect_backoff_max: Duration,
    /// `retry.backoff.ms`: first wait before retrying a failed request.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest such wait.
    pub retry_backoff_max: Duration,
    /// `socket.connection.setup.timeout.ms`: TCP + TLS + handshake deadline.
    pub socket_connection_setup_timeout: Duration,
    /// `allow.auto.create.topics` (default true, as Java's clients and
    /// KafkaJS ask): metadata requests for named topics let a broker with
    /// `auto.create.topics.enable` create them. A broker that refuses
    /// answers UNKNOWN_TOPIC_OR_PARTITION, which stays a typed
    /// `UnknownTopic`.
    pub allow_auto_topic_creation: bool,
    /// Largest response frame accepted (guards against hostile lengths).
    pub max_response_size: usize,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "franz".into(),
            client_rack: None,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::Plain,
            sasl_username: None,
            sasl_password: None,
            sasl_oauthbearer_token_provider: None,
            sasl_scram_max_iterations: crate::sasl::SCRAM_DEFAULT_MAX_ITERATIONS,
            ssl_ca_location: None,
            ssl_ca_pem: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_endpoint_identification: true,
            ssl_sni_host: None,
            request_timeout: Duration::from_secs(30),
            default_api_timeout: Duration::from_secs(60),
            metadata_max_age: Duration::from_secs(300),
            connections_max_idle: Duration::from_secs(540),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            socket_connection_setup_timeout: Duration::from_secs(10),
            allow_auto_topic_creation: true,
            max_response_size: 256 << 20,
        }
    }
}

impl ClientConfig {
    /// A configuration for `bootstrap` (comma-separated `host:port` list).
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap_servers: split_list(bootstrap),
            ..Self::default()
        }
    }

    /// Sets `client.id`.
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// SASL with a user name and password (PLAIN or SCRAM).
    pub fn with_sasl(mut self, mechanism: SaslMechanism, username: &str, password: &str) -> Self {
        self.sasl_mechanism = mechanism;
        self.sasl_username = Some(username.into());
        self.sasl_password = Some(password.into());
        if !self.security_protocol.uses_sasl() {
            self.security_protocol = if self.security_protocol.uses_tls() {
                SecurityProtocol::SaslSsl
            } else {
                SecurityProtocol::SaslPlaintext
            };
        }
        self
    }

    /// Builds a configuration from Java-style properties. Unknown keys are an
    /// error, so a typo does not silently fall back to a default.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        props: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ClientError> {
        let mut c = Self::default();
        for (k, v) in props {
            if !c.set(k.as_ref(), v.as_ref())? {
                return Err(ClientError::Config(format!(
                    "unknown client setting {}",
                    k.as_ref()
                )));
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Parses a `key=value` properties text (`#` comments allowed).
    pub fn from_properties_text(text: &str) -> Result<Self, ClientError> {
        Self::from_properties(parse_properties(text))
    }

    /// Applies one Java-named setting; `Ok(false)` if the key is not a client
    /// setting (callers such as the producer handle their own keys first).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ClientError> {
        let v = value.trim();
        match key {
            "bootstrap.servers" => self.bootstrap_servers = split_list(v),
            "client.id" => self.client_id = v.into(),
            "client.rack" => self.client_rack = (!v.is_empty()).then(|| v.into()),
            "security.protocol" => {
                self.security_protocol = match v.to_ascii_uppercase().as_str() {
                    "PLAINTEXT" => SecurityProtocol::Plaintext,
                    "SSL" => SecurityProtocol::Ssl,
                    "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
                    "SASL_SSL" => SecurityProtocol::SaslSsl,
                    other => {
                        return Err(ClientError::Config(format!(
                            "unknown security.protocol {other}"
                        )));
                    }
                }
            }
            "sasl.mechanism" => self.sasl_mechanism = SaslMechanism::parse(v)?,
            "sasl.username" => self.sasl_username = Some(v.into()),
            "sasl.password" => self.sasl_password = Some(v.into()),
            "franz.sasl.scram.max.iterations" => {
                self.sasl_scram_max_iterations = v.parse().map_err(|_| {
                    ClientError::Config(format!("{key} must be a whole number, not {v:?}"))
                })?
            }
            "sasl.jaas.config" => {
                self.sasl_username = jaas_option(v, "username");
                self.sasl_password = jaas_option(v, "password");
            }
            "ssl.ca.location" | "ssl.truststore.location" => self.ssl_ca_location = Some(v.into()),
            "ssl.certificate.location" => self.ssl_certificate_location = Some(v.into()),
            "ssl.key.location" => self.ssl_key_location = Some(v.into()),
            "ssl.endpoint.identification.algorithm" => {
                self.ssl_endpoint_identification = !v.is_empty()
            }
            "request.timeout.ms" => self.request_timeout = millis(key, v)?,
            "default.api.timeout.ms" => self.default_api_timeout = millis(key, v)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis(key, v)?,
            "connections.max.idle.ms" => self.connections_max_idle = millis(key, v)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = millis(key, v)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = millis(key, v)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, v)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(key, v)?,
            "allow.auto.create.topics" => {
                self.allow_auto_topic_creation = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ClientError::Config(format!(
                            "allow.auto.create.topics must be true or false, not {v:?}"
                        )));
                    }
                }
            }
            "socket.connection.setup.timeout.ms" => {
                self.socket_connection_setup_timeout = millis(key, v)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ClientError::Config("bootstrap.servers is empty".into()));
        }
        for s in &self.bootstrap_servers {
            if split_host_port(s).is_none() {
                return Err(ClientError::Config(format!(
                    "bootstrap server {s:?} is not host:port"
                )));
            }
        }
        if self.sasl_scram_max_iterations < crate::sasl::SCRAM_MIN_ITERATIONS {
            return Err(ClientError::Config(format!(
                "franz.sasl.scram.max.iterations is {}, below SCRAM's floor of {}",
                self.sasl_scram_max_iterations,
                crate::sasl::SCRAM_MIN_ITERATIONS
            )));
        }
        if self.security_protocol.uses_sasl() {
            match self.sasl_mechanism {
                SaslMechanism::OAuthBearer if self.sasl_oauthbearer_token_provider.is_none() => {
                    return Err(ClientError::Config(
                        "OAUTHBEARER needs a token provider".into(),
                    ));
                }
                SaslMechanism::OAuthBearer => {}
                _ if self.sasl_username.is_none() || self.sasl_password.is_none() => {
                    return Err(ClientError::Config(format!(
                        "{} needs a user name and password",
                        self.sasl_mechanism.name()
                    )));
                }
                _ => {}
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(ClientError::Config(
                "ssl.certificate.location and ssl.key.location go together".into(),
            ));
        }
        Ok(())
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn millis(key: &str, v: &str) -> Result<Duration, ClientError> {
    v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
        ClientError::Config(format!("{key} must be a number of milliseconds, not {v:?}"))
    })
}

/// `host:port` → (host, port); IPv6 hosts may be bracketed.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Reads `name="value"` out of a JAAS config line.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &jaas[start..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Java client keys that belong to a producer (not to the shared client
/// layer): accepted, with a warning, by the consumer's `from_properties`,
/// so one properties file can serve every role.
pub const JAVA_PRODUCER_KEYS: &[&str] = &[
    "acks",
    "batch.size",
    "buffer.memory",
    "compression.gzip.level",
    "compression.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delivery.timeout.ms",
    "enable.idempotence",
    "key.serializer",
    "linger.ms",
    "max.block.ms",
    "max.in.flight.requests.per.connection",
    "max.request.size",
    "metadata.max.idle.ms",
    "partitioner.adaptive.partitioning.enable",
    "partitioner.availability.timeout.ms",
    "partitioner.class",
    "partitioner.ignore.keys",
    "retries",
    "transaction.timeout.ms",
    "transactional.id",
    "value.serializer",
];

/// Java client keys that belong to a consumer (and franz's consumer-only
/// `franz.*` keys): accepted, with a warning, by the producer's
/// `from_properties`.
pub const JAVA_CONSUMER_KEYS: &[&str] = &[
    "franz.fetch.sessions",
    "franz.max.poll.bytes",
    "franz.rebalance.timeout.ms",
    "franz.revoke.timeout.ms",
    "allow.auto.create.topics",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "enable.auto.commit",
    "exclude.internal.topics",
    "fetch.max.bytes",
    "fetch.max.wait.ms",
    "fetch.min.bytes",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "key.deserializer",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "max.poll.records",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "value.deserializer",
];

/// Java client keys every role knows that have no meaning in franz (JVM
/// socket buffers, metrics reporters, interceptors): accepted with a
/// warning by every `from_properties`.
pub const JAVA_IGNORED_KEYS: &[&str] = &[
    "auto.include.jmx.reporter",
    "client.dns.lookup",
    "enable.metrics.push",
    "interceptor.classes",
    "metric.reporters",
    "metrics.num.samples",
    "metrics.recording.level",
    "metrics.sample.window.ms",
    "receive.buffer.bytes",
    "security.providers",
    "send.buffer.bytes",
];

/// Parses `key=value` lines (`#`/`!` comments, blank lines skipped).
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_map_onto_fields() {
        let c = ClientConfig::from_properties_text(
            "bootstrap.servers=a:1, b:2\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"s3cret\";\n\
             request.timeout.ms=1234\n# comment\n",
        )
        .unwrap();
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.sasl_mechanism, SaslMechanism::ScramSha512);
        assert_eq!(c.sasl_username.as_deref(), Some("alice"));
        assert_eq!(c.sasl_password.as_deref(), Some("s3cret"));
        assert_eq!(c.request_timeout, Duration::from_millis(1234));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password never appears in Debug"
        );
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert!(
            ClientConfig::from_properties([("bootstrap.servers", "a:1"), ("no.such", "x")])
                .is_err()
        );
        assert!(
            ClientConfig::from_properties([
                ("bootstrap.servers", "a:1"),
                ("request.timeout.ms", "soon")
            ])
            .is_err()
        );
        assert!(ClientConfig::from_properties([("bootstrap.servers", "nohost")]).is_err());
        assert!(
            ClientConfig::from_properties([
                ("bootstrap.servers", "a:1"),
                ("security.protocol", "SASL_PLAINTEXT")
            ])
            .is_err()
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("h:9"), Some(("h".into(), 9)));
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1".into(), 9092)));
        assert_eq!(split_host_port("h"), None);
    }
}
