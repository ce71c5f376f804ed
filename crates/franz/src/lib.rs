//! # franz
//!
//! A pure-Rust Apache Kafka client and application transport. This facade
//! re-exports the layer crates (`franz-protocol`, `franz-client`,
//! `franz-producer`, `franz-consumer`, `franz-transport`) as they are written.
//!
//! Status: the layers are not written yet, so the facade exports nothing.
