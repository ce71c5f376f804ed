//! # franz-client
//!
//! The client core under franz's producer, consumer, admin client and
//! transport: connections, version negotiation, metadata, TLS and SASL.
//!
//! ## Main types
//! - [`Client`]: bootstraps from [`ClientConfig::bootstrap_servers`] (skipping
//!   unreachable entries), caches [`ClusterMetadata`], routes requests to
//!   partition leaders and coordinators, retries retriable errors within a
//!   deadline ([`Client::retry`]), and pools one [`BrokerConnection`] per
//!   broker and [`ConnectionKind`].
//! - [`BrokerConnection`]: one socket to one broker. Requests are pipelined
//!   and matched by correlation id; a dropped request future does not break
//!   the connection; a failed connection fails every waiter at once with a
//!   typed [`ClientError`]. ApiVersions picks the highest common version of
//!   each API (falling back when the broker rejects a too-new ApiVersions);
//!   SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) runs after it. Broker
//!   throttling (KIP-219) holds back the next request.
//! - [`Admin`]: the admin client, returning per-item results.
//! - [`metrics`]: per-broker counters and latency histograms as snapshots.
//!
//! ## Data flow
//! caller → [`Client`] (route: metadata, coordinator cache) → pooled
//! [`BrokerConnection`] → writer task → socket → reader task → correlation
//! map → the caller's future, which decodes the typed response.
//!
//! ## Security
//! TLS is rustls (CA file or PEM, or the system trust store; client certificates;
//! SNI; hostname verification on unless `ssl.endpoint.identification.algorithm`
//! is empty). A failed SASL handshake is [`ClientError::Authentication`] and
//! never falls back to an unauthenticated connection. When the broker sets a
//! session lifetime (KIP-368), the connection re-authenticates in band at a
//! random 85–95 % of it, with requests in flight: no new frame is written
//! between its SaslHandshake and its last SaslAuthenticate. A connection
//! whose re-authentication fails closes, and the pool opens a new one.

pub mod admin;
mod client;
mod config;
mod connection;
mod error;
pub mod metrics;
mod sasl;
mod tls;
mod topic_partition;

pub use admin::{Admin, ConsumerGroupMetadata};
pub use client::{
    BrokerEndpoint, BrokerInfo, Client, ClusterMetadata, ConnectionKind, CoordinatorType,
    LeaderHint, PartitionMetadata, RefreshBackoff, TopicMap, TopicMetadata,
};
pub use config::{
    ClientConfig, JAVA_CONSUMER_KEYS, JAVA_IGNORED_KEYS, JAVA_PRODUCER_KEYS, SaslMechanism,
    SecurityProtocol, TokenProvider, parse_properties, split_host_port,
};
pub use connection::{
    ApiVersionTable, BrokerAddr, BrokerConnection, InFlight, open_connection_count,
};
pub use error::{ClientError, code_invalidates_metadata};
pub use franz_protocol;
pub use sasl::SaslError;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use sasl::fuzz_scram_exchange;
pub use topic_partition::TopicPartition;
