//! # franz-transport
//!
//! The NestJS-compatible application transport: message patterns with
//! replies matched by correlation id, event patterns, key-based
//! partitioning, and offsets committed only after a handler succeeds. It
//! speaks the `@nestjs/microservices` Kafka transporter's wire format both
//! ways (tested against NestJS 11.2 and 12.1 on KafkaJS 2.2.4), and shares
//! server groups with Nest servers.
//!
//! ## Main types
//! - [`TransportServer`] (Nest's `ServerKafka`): handlers per pattern, axum
//!   style: async fns of extractors ([`Payload`], [`Ctx`], [`Headers`],
//!   [`Key`], [`State`], [`Outbox`] for records written besides the reply)
//!   returning `Result<T, RpcError>`, a [`Reply`]
//!   envelope or a [`Streamed`] stream; tower layers around them
//!   ([`TransportServerBuilder::layer`]).
//! - [`TransportClient`] (Nest's `ClientKafka`): `send` to a message pattern
//!   and await the reply on `<pattern>.reply`, `send_stream` for several,
//!   `emit`/`emit_batch` events; [`Message`] envelopes.
//! - [`Codec`]: JSON with NestJS's rules (default), MessagePack, raw bytes,
//!   text, or one's own; per server, client or pattern.
//! - [`nest`]: the sans-io wire layer: headers, value encoding and parsing,
//!   request, event and reply layouts.
//! - [`topics`]: NestJS's `-server`/`-client` names and opt-in
//!   [`Provision`]ing of topics.
//! - [`TransportError`] and [`RpcError`]: typed failures on each side.
//!
//! ## How data flows
//! Request: `send` → a correlation id registered in the reply router → a
//! record on topic `<pattern>` with `kafka_correlationId`,
//! `kafka_replyTopic` and `kafka_replyPartition` (a reply partition the
//! client's cooperative-sticky reply group gave it) → the server's group
//! consumer → the handler (through its layers) → a reply on exactly that
//! topic and partition with the id echoed, `kafka_nest-is-disposed` on the
//! last → the client's reply reader routes it by id. Events skip the reply.
//!
//! ## Delivery guarantees
//! The server commits a request's offset only after its reply is
//! acknowledged, and an event's only after its handler returned `Ok` (or
//! the event was dead-lettered): at least once, across crashes and
//! rebalances. A failed event is retried with exponential backoff that
//! pauses only its partition, up to `max_attempts`, then goes to
//! `<topic>.DLT` with Spring's `kafka_dlt-*` headers; a request gets an
//! error reply. On revoke, handlers in hand finish (bounded by the
//! rebalance timeout) and their offsets are committed before the
//! partitions go.
//!
//! **Exactly once, as an option** ([`TransportServerConfig::exactly_once`],
//! off by default so that NestJS's semantics stay the default): each poll's
//! records are handled in one transaction of the server's producer holding
//! their replies, their handlers' [`Outbox`] records and the group's
//! offsets (KIP-447, fenced by the group's generation). A crash before the
//! commit aborts all of it and the next owner handles the records again,
//! so a `read_committed` client sees one reply per request and a
//! `read_committed` reader one outbox record per event
//! (consume-transform-produce). It costs a commit round trip per poll and
//! delays replies to the commit; see [`ExactlyOnce`] for what it does not
//! cover (handlers' effects outside Kafka, error replies and dead letters
//! stay at least once).
//!
//! ## Cancel safety
//! Dropping a `send` future at any point frees its router entry; a reply
//! that arrives later is dropped (a request already queued is still
//! delivered and handled). Dropping a server stops it in the background:
//! its task finishes the records in hand, commits and leaves the group, with
//! no deadline; `shutdown(deadline)` does the same, waits, and aborts the
//! task at the deadline (what was not committed is then handled again by
//! the next owner).
//!
//! ## Observability
//! A [`ServerStatus`] watch; a `tracing` span per record (pattern,
//! correlation id, topic, partition, offset) with W3C `traceparent`
//! carried in Kafka headers ([`trace`]); and, through the `metrics`
//! facade: `franz_transport_records_total`, `_requests_total`,
//! `_retried_total`, `_dead_lettered_total`, `_timeouts_total`,
//! `_in_flight`, `_handler_seconds`, `_request_seconds` here, with the producer's
//! (`franz_producer_records_total`, `_batches_total`, `_retries_total`),
//! consumer's (`franz_consumer_records_total`, `franz_consumer_lag`) and
//! connections' (`franz_request_seconds` per API,
//! `franz_request_errors_total`, `franz_bytes_sent_total`,
//! `franz_bytes_received_total`) figures.

mod client;
pub mod codec;
mod error;
mod handler;
pub mod nest;
mod server;
pub mod topics;
pub mod trace;

pub use client::{
    IntoMessage, Message, Replies, ServerDialect, TransportClient, TransportClientConfig,
};
pub use codec::{Codec, CodecError};
pub use error::{RemoteError, TransportError};
pub use handler::{
    BoxFuture, Ctx, FromIncoming, Handler, HandlerOutcome, HandlerService, Headers, Incoming,
    IntoEventOutcome, IntoReply, Key, Outbox, Payload, Reply, ReplyBodyHandle, RpcError, State,
    Streamed,
};
pub use server::{
    BoxHandlerService, ExactlyOnce, ServerState, ServerStatus, TransportServer,
    TransportServerBuilder, TransportServerConfig,
};
pub use topics::{NestNames, Provision};
