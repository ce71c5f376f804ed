//! # franz-transport
//!
//! The NestJS-compatible application transport: message patterns with
//! replies matched by correlation id, event patterns, key-based
//! partitioning, and offsets committed only after a handler succeeds. It
//! speaks the `@nestjs/microservices` Kafka transporter's wire format both
//! ways (`../shared/nestjs-kafka-interop.md`).
//!
//! ## Main types
//! - [`TransportClient`] (Nest's `ClientKafka`): `send` to a message pattern
//!   and await the reply on `<pattern>.reply`, `emit` events.
//! - [`TransportServer`] (Nest's `ServerKafka`): typed handlers per pattern.
//! - [`nest`]: the sans-io wire layer: headers, value encoding and parsing
//!   ([`nest::NestValue`]), request, event and reply layouts.
//! - [`TransportError`]: typed failures, including the remote handler's
//!   error body.
//!
//! ## How data flows
//! Request: `send` → a 21-hex correlation id registered in the reply router
//! → record on topic `<pattern>` with `kafka_correlationId`,
//! `kafka_replyTopic` and `kafka_replyPartition` (the lowest reply partition
//! the client's group gave it) → the server's group consumer → the handler
//! → a reply on exactly that topic and partition with the id echoed and
//! `kafka_nest-is-disposed` → the client's reply reader routes it by id.
//! Events skip the reply. The server commits a request's offset only after
//! its reply is acknowledged, and an event's only after its handler
//! returned `Ok`; a failed event is rewound and retried with backoff, and
//! an event that does not deserialize goes to `<pattern>.dead-letter`.
//!
//! Records of one partition are handled one at a time, in order; with
//! `partitions_concurrently` above 1 (KafkaJS's
//! `partitionsConsumedConcurrently`), handlers of different partitions run
//! at the same time, so different keys do not queue behind each other.
//! `group_instance_id` makes a server instance a static group member, so a
//! restart within the session timeout moves no partitions.

mod client;
pub mod codec;
mod error;
mod handler;
pub mod nest;
mod server;
pub mod topics;
pub mod trace;

pub use client::{IntoMessage, Message, Replies, TransportClient, TransportClientConfig};
pub use codec::{Codec, CodecError};
pub use error::{RemoteError, TransportError};
pub use handler::{
    BoxFuture, Ctx, FromIncoming, Handler, HandlerOutcome, HandlerService, Headers, Incoming,
    IntoEventOutcome, IntoReply, Key, Payload, Reply, ReplyBodyHandle, RpcError, State, Streamed,
};
pub use server::{
    BoxHandlerService, ServerState, ServerStatus, TransportServer, TransportServerBuilder,
    TransportServerConfig,
};
pub use topics::{NestNames, Provision};
