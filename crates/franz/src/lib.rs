//! # franz
//!
//! A pure-Rust Apache Kafka client and application transport: no C, async
//! from the ground up. This facade re-exports the layers:
//!
//! - [`protocol`] (`franz-protocol`): the wire codec, record batches,
//!   compression and error codes;
//! - [`client`] (`franz-client`): connections, negotiation, metadata, TLS,
//!   SASL and the admin client;
//! - [`producer`] (`franz-producer`): the idempotent, batching producer;
//! - [`consumer`] (`franz-consumer`): fetching with offset resets,
//!   read-committed and rack-aware replica reads, and classic consumer
//!   groups;
//! - [`transport`] (`franz-transport`): the NestJS-compatible transport
//!   (message and event patterns, replies by correlation id, commits after
//!   success).
//!
//! The main demo is `cargo run -p franz --example orders`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), franz::producer::ProduceError> {
//! use franz::producer::{Producer, ProducerConfig, ProducerRecord};
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! producer.send_and_wait(ProducerRecord::new("orders", "created").with_key("order-7")).await?;
//! # Ok(()) }
//! ```

pub use franz_client as client;
pub use franz_consumer as consumer;
pub use franz_producer as producer;
pub use franz_protocol as protocol;
pub use franz_transport as transport;
