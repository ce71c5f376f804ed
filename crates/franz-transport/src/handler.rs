//! Handlers, in the style of axum: an async fn whose arguments are
//! extractors ([`Payload`], [`Ctx`], [`Headers`], [`Key`], [`State`]) and
//! whose result is a reply ([`IntoReply`]) or an event outcome
//! ([`IntoEventOutcome`]).
//!
//! Extraction happens before the handler runs; an extractor that fails (a
//! payload that does not decode, state never given) is the handler's
//! failure, with the record's coordinates in the message. A panic in an
//! extractor, while starting the handler or while polling it (or its reply
//! stream) is caught and is a failure like any other.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use franz_consumer::ConsumerRecord;
use futures_util::FutureExt;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::codec::{self, Codec};
use crate::nest;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a failure wants to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// As NestJS: an event is handled again, a request answered with the
    /// error at once (`RpcException`).
    Default,
    /// Handled again, events and requests alike
    /// (`KafkaRetriableException`).
    Always,
    /// Never handled again: an event is dead-lettered, a request answered.
    Never,
}

/// A handler's failure: the error body sent back (for message patterns) or
/// logged and dead-lettered (for events), and whether trying again may
/// help.
///
/// - [`RpcError::message`] is NestJS's `RpcException`: an event is handled
///   again after a backoff (up to `max_attempts`, then dead-lettered), a
///   request gets the error reply at once.
/// - [`RpcError::retriable`] is NestJS's `KafkaRetriableException`: a
///   request is handled again too, and answered with the error only after
///   the last attempt.
/// - [`RpcError::fatal`] is never retried: an event goes to the dead-letter
///   topic at once.
///
/// `?` works in handlers: any `std::error::Error` converts into
/// [`RpcError::message`].
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    body: Value,
    retry: Retry,
}

impl RpcError {
    /// NestJS's `RpcException("message")` body: events are retried,
    /// requests answered at once.
    pub fn message(message: impl AsRef<str>) -> Self {
        Self {
            body: nest::rpc_error(message.as_ref()),
            retry: Retry::Default,
        }
    }

    /// A transient failure (a dependency down, say): requests are handled
    /// again too, like events, before the error is sent.
    pub fn retriable(message: impl AsRef<str>) -> Self {
        Self {
            body: nest::rpc_error(message.as_ref()),
            retry: Retry::Always,
        }
    }

    /// A failure that trying again cannot fix (a malformed order, say): an
    /// event goes to the dead-letter topic at once.
    pub fn fatal(message: impl AsRef<str>) -> Self {
        Self {
            body: nest::rpc_error(message.as_ref()),
            retry: Retry::Never,
        }
    }

    /// An error with an arbitrary body (what a NestJS exception filter may
    /// send); `retriable` as for events.
    pub fn with_body(body: Value, retriable: bool) -> Self {
        Self {
            body,
            retry: if retriable {
                Retry::Default
            } else {
                Retry::Never
            },
        }
    }

    /// The error body.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Whether an event that failed with this is handled again.
    pub fn is_retriable(&self) -> bool {
        self.retry != Retry::Never
    }

    /// Whether a request that failed with this is handled again before the
    /// error is sent.
    pub(crate) fn retries_request(&self) -> bool {
        self.retry == Retry::Always
    }

    /// The body, for the error reply.
    pub(crate) fn into_body(self) -> Value {
        self.body
    }

    /// The message, for logs and the dead-letter header.
    pub(crate) fn describe(&self) -> String {
        match self.body.get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => self.body.to_string(),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for RpcError {
    fn from(e: E) -> Self {
        Self::message(e.to_string())
    }
}

/// A record on its way to a handler: the record, the pattern's codec and
/// the server's state. Extractors read from it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub(crate) record: ConsumerRecord,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) state: Arc<StateMap>,
    pub(crate) outbox: Outbox,
}

impl Incoming {
    /// The record.
    pub fn record(&self) -> &ConsumerRecord {
        &self.record
    }

    /// The pattern's codec.
    pub fn codec(&self) -> &dyn Codec {
        &*self.codec
    }

    /// Where the record is, for messages: `topic/partition@offset`.
    pub fn coordinates(&self) -> String {
        format!(
            "{}/{}@{}",
            self.record.topic, self.record.partition, self.record.offset
        )
    }
}

/// Something a handler takes as an argument, read from the [`Incoming`]
/// record.
pub trait FromIncoming: Sized + Send + 'static {
    /// Reads it; an error is the handler's failure.
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError>;
}

/// The record's value, decoded with the pattern's codec (JSON with
/// NestJS's rules unless the server, or the pattern, says otherwise). A
/// value that does not decode is a non-retriable failure naming the
/// record's coordinates: an event is dead-lettered, a request answered
/// with the error.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromIncoming for Payload<T> {
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError> {
        codec::decode::<T>(&*incoming.codec, incoming.record.value.as_ref())
            .map(Payload)
            .map_err(|e| {
                RpcError::fatal(format!(
                    "payload at {} does not decode as {}: {}",
                    incoming.coordinates(),
                    std::any::type_name::<T>(),
                    e
                ))
            })
    }
}

/// The record's headers, in order, duplicates kept (NestJS's own among
/// them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers(pub Vec<(Bytes, Option<Bytes>)>);

impl Headers {
    /// The last value of header `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .and_then(|(_, v)| v.as_ref())
    }
}

impl FromIncoming for Headers {
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError> {
        Ok(Self(incoming.record.headers.clone()))
    }
}

/// The record's key (`None` for a null key).
#[derive(Debug, Clone, PartialEq)]
pub struct Key(pub Option<Bytes>);

impl FromIncoming for Key {
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError> {
        Ok(Self(incoming.record.key.clone()))
    }
}

/// Application state given to the server with
/// [`state`](crate::TransportServerBuilder::state), cloned for each call
/// (wrap it in an `Arc`). State of a type never given is a non-retriable
/// failure that names the type.
#[derive(Debug, Clone)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromIncoming for State<S> {
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError> {
        incoming
            .state
            .get::<S>()
            .map(|s| Self(s.clone()))
            .ok_or_else(|| {
                RpcError::fatal(format!(
                    "no State<{}> was given to the server",
                    std::any::type_name::<S>()
                ))
            })
    }
}

/// State values by type.
#[derive(Debug, Default)]
pub(crate) struct StateMap(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl StateMap {
    pub(crate) fn insert<S: Send + Sync + 'static>(&mut self, value: S) {
        self.0.insert(TypeId::of::<S>(), Box::new(value));
    }

    fn get<S: 'static>(&self) -> Option<&S> {
        self.0.get(&TypeId::of::<S>())?.downcast_ref()
    }
}

/// Records a handler writes besides its reply (consume-transform-produce),
/// through the server's own producer. They are part of handling the record:
/// its offset is committed only once they are acknowledged, and under
/// [`exactly_once`](crate::TransportServerConfig::exactly_once) they go in
/// the same transaction as the reply and the offset commit, so that a
/// `read_committed` reader sees them once, or (after a crash) not at all.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use franz_producer::ProducerRecord;
/// use franz_transport::{Outbox, Payload, TransportServer, TransportServerConfig};
/// let server = TransportServer::builder(TransportServerConfig::new("127.0.0.1:9092", "billing"))
///     .event("order.created", |Payload(id): Payload<String>, outbox: Outbox| async move {
///         outbox.send(ProducerRecord::new("invoice.due", id)).await?;
///         Ok(())
///     })
///     .start()
///     .await?;
/// # server.shutdown(std::time::Duration::from_secs(5)).await }
/// ```
#[derive(Clone)]
pub struct Outbox {
    producer: franz_producer::Producer,
    sent: Arc<std::sync::Mutex<Vec<franz_producer::DeliveryFuture>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub(crate) fn new(producer: franz_producer::Producer) -> Self {
        Self {
            producer,
            sent: Arc::default(),
        }
    }

    /// Queues `record`; the handled record waits for its acknowledgement.
    /// A record that cannot be queued is the handler's failure (retriable
    /// when the producer says so).
    ///
    /// # Cancel safety
    /// Dropping it before it returns queues nothing (the record is dropped
    /// with it; at most a Metadata request for its topic stays on the wire,
    /// its answer discarded). Once it has returned, the record is queued
    /// and the handled record waits for its acknowledgement.
    pub async fn send(&self, record: franz_producer::ProducerRecord) -> Result<(), RpcError> {
        let ack = self.producer.send(record).await.map_err(|e| {
            let text = format!("outbox record not sent: {e}");
            if e.is_retriable() {
                RpcError::retriable(text)
            } else {
                RpcError::message(text)
            }
        })?;
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ack);
        Ok(())
    }

    /// The acknowledgements of what was sent, taken.
    pub(crate) fn take_sent(&self) -> Vec<franz_producer::DeliveryFuture> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl FromIncoming for Outbox {
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError> {
        Ok(incoming.outbox.clone())
    }
}

/// Where a record came from, as NestJS's `KafkaContext` tells a handler
/// (`@Ctx()`): topic, partition, offset, key, headers, timestamp, and the
/// whole record.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use franz_transport::{Ctx, Payload, TransportServer, TransportServerConfig};
/// let server = TransportServer::builder(TransportServerConfig::new("127.0.0.1:9092", "billing"))
///     .event("order.shipped", |Payload(id): Payload<String>, ctx: Ctx| async move {
///         println!("[{}/{}@{}] shipped {id}", ctx.topic(), ctx.partition(), ctx.offset());
///         Ok(())
///     })
///     .start()
///     .await?;
/// # server.shutdown(std::time::Duration::from_secs(5)).await }
/// ```
#[derive(Debug, Clone)]
pub struct Ctx {
    record: ConsumerRecord,
}

impl FromIncoming for Ctx {
    fn from_incoming(incoming: &Incoming) -> Result<Self, RpcError> {
        Ok(Self {
            record: incoming.record.clone(),
        })
    }
}

impl Ctx {
    /// The topic (the pattern).
    pub fn topic(&self) -> &str {
        &self.record.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.record.partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    /// The key (`None` for a null key).
    pub fn key(&self) -> Option<&Bytes> {
        self.record.key.as_ref()
    }

    /// The headers, in order, duplicates kept (NestJS's own among them).
    pub fn headers(&self) -> &[(Bytes, Option<Bytes>)] {
        &self.record.headers
    }

    /// The last value of header `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.record.header(name)
    }

    /// The timestamp, in ms since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp
    }

    /// The whole record.
    pub fn record(&self) -> &ConsumerRecord {
        &self.record
    }
}

/// An async fn whose arguments are all [`FromIncoming`] extractors. `Args`
/// only tells the arities apart.
pub trait Handler<Args>: Send + Sync + 'static {
    /// What the handler's future returns.
    type Output: Send + 'static;

    /// Extracts the arguments and starts the handler.
    fn call(&self, incoming: &Incoming) -> Result<BoxFuture<Self::Output>, RpcError>;
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<F, Fut, $($arg,)*> Handler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: Send + 'static,
            $($arg: FromIncoming,)*
        {
            type Output = Fut::Output;

            fn call(&self, incoming: &Incoming) -> Result<BoxFuture<Self::Output>, RpcError> {
                $(let $arg = $arg::from_incoming(incoming)?;)*
                Ok(Box::pin(self($($arg),*)))
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
impl_handler!(A1, A2, A3, A4);
impl_handler!(A1, A2, A3, A4, A5);
impl_handler!(A1, A2, A3, A4, A5, A6);

/// One reply message's parts, encoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplyParts {
    pub(crate) value: Option<Bytes>,
    pub(crate) key: Option<Bytes>,
    pub(crate) headers: Vec<(String, Bytes)>,
}

/// What a message handler came to: one reply, or a stream of them.
pub(crate) enum ReplyBody {
    One(Result<ReplyParts, RpcError>),
    Stream(BoxStream<'static, Result<ReplyParts, RpcError>>),
}

/// A reply with its own key and headers (NestJS's `{key, value, headers}`
/// envelope). Request headers are not copied onto replies, as in NestJS.
///
/// ```
/// use franz_transport::Reply;
/// let reply = Reply::new(serde_json::json!({"status": "INVOICED"}))
///     .key("customer-7")
///     .header("x-region", "eu");
/// # let _ = reply;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The value, encoded with the pattern's codec.
    pub value: T,
    /// The reply record's key.
    pub key: Option<Bytes>,
    /// Extra headers, after the transport's own.
    pub headers: Vec<(String, Bytes)>,
}

impl<T> Reply<T> {
    /// A reply of `value`, with no key and no extra headers.
    pub fn new(value: T) -> Self {
        Self {
            value,
            key: None,
            headers: Vec::new(),
        }
    }

    /// With key `key`.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With header `name` = `value` too.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A multi-value reply: each item is a reply message as it comes (NestJS's
/// Observable). An `Err` item ends the stream with an error reply.
///
/// ```
/// use franz_transport::{RpcError, Streamed};
/// use futures_util::stream;
/// let replies = Streamed(stream::iter([1, 2, 3].map(Ok::<_, RpcError>)));
/// # let _ = replies;
/// ```
#[derive(Debug)]
pub struct Streamed<S>(pub S);

/// What a message handler may return: `Result<T, RpcError>`,
/// `Result<Reply<T>, RpcError>`, or `Result<Streamed<S>, RpcError>` for
/// any `T: Serialize`.
pub trait IntoReply: Send + 'static {
    /// Encodes the reply (lazily, for a stream).
    #[doc(hidden)]
    fn into_reply(self, codec: Arc<dyn Codec>) -> ReplyBodyHandle;
}

/// An opaque reply (see [`IntoReply`]).
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct ReplyBodyHandle(pub(crate) ReplyBody);

fn encode_parts<T: Serialize>(codec: &dyn Codec, reply: Reply<T>) -> Result<ReplyParts, RpcError> {
    let value = codec::encode(codec, &reply.value)
        .map_err(|e| RpcError::fatal(format!("reply does not encode: {e}")))?;
    Ok(ReplyParts {
        value,
        key: reply.key,
        headers: reply.headers,
    })
}

impl<T: Serialize + Send + 'static> IntoReply for Result<T, RpcError> {
    fn into_reply(self, codec: Arc<dyn Codec>) -> ReplyBodyHandle {
        ReplyBodyHandle(ReplyBody::One(
            self.and_then(|v| encode_parts(&*codec, Reply::new(v))),
        ))
    }
}

impl<T: Serialize + Send + 'static> IntoReply for Result<Reply<T>, RpcError> {
    fn into_reply(self, codec: Arc<dyn Codec>) -> ReplyBodyHandle {
        ReplyBodyHandle(ReplyBody::One(self.and_then(|r| encode_parts(&*codec, r))))
    }
}

impl<S, T> IntoReply for Result<Streamed<S>, RpcError>
where
    S: Stream<Item = Result<T, RpcError>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    fn into_reply(self, codec: Arc<dyn Codec>) -> ReplyBodyHandle {
        match self {
            Err(e) => ReplyBodyHandle(ReplyBody::One(Err(e))),
            Ok(Streamed(s)) => {
                let items = AssertUnwindSafe(s)
                    .catch_unwind()
                    .map(move |item| match item {
                        Ok(Ok(v)) => encode_parts(&*codec, Reply::new(v)),
                        Ok(Err(e)) => Err(e),
                        Err(p) => Err(panicked(&*p)),
                    });
                ReplyBodyHandle(ReplyBody::Stream(items.boxed()))
            }
        }
    }
}

/// What an event handler may return: `Result<(), RpcError>` or `()`.
pub trait IntoEventOutcome: Send + 'static {
    /// The outcome.
    fn into_outcome(self) -> Result<(), RpcError>;
}

impl IntoEventOutcome for Result<(), RpcError> {
    fn into_outcome(self) -> Result<(), RpcError> {
        self
    }
}

impl IntoEventOutcome for () {
    fn into_outcome(self) -> Result<(), RpcError> {
        Ok(())
    }
}

/// What a handler came to, as its tower [`Service`](tower::Service)
/// returns it: a message's reply (one value or a stream) or an event's
/// outcome. Opaque: layers pass it on (or answer with their own error).
pub struct HandlerOutcome(pub(crate) Outcome);

impl std::fmt::Debug for HandlerOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.0 {
            Outcome::Reply(_) => "HandlerOutcome::Reply",
            Outcome::Event(_) => "HandlerOutcome::Event",
        })
    }
}

pub(crate) enum Outcome {
    Reply(ReplyBody),
    Event(Result<(), RpcError>),
}

/// A handler as a tower [`Service`](tower::Service) of [`Incoming`]
/// records, which [`TransportServerBuilder::layer`] wraps in tower layers
/// (`tower::timeout::TimeoutLayer`, `ConcurrencyLimitLayer`, users' own).
/// It is always ready and never fails: a handler's failure is inside its
/// [`HandlerOutcome`]; only layers add errors, which the server turns into
/// [`RpcError::message`]s.
///
/// [`TransportServerBuilder::layer`]: crate::TransportServerBuilder::layer
#[derive(Clone)]
pub struct HandlerService {
    call: Arc<dyn Fn(Incoming) -> BoxFuture<HandlerOutcome> + Send + Sync>,
}

impl std::fmt::Debug for HandlerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerService")
    }
}

impl tower::Service<Incoming> for HandlerService {
    type Response = HandlerOutcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<HandlerOutcome, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: Incoming) -> Self::Future {
        let fut = (self.call)(incoming);
        Box::pin(async move { Ok(fut.await) })
    }
}

/// A message handler as a service: extraction, the call and the polling
/// each catch panics.
pub(crate) fn message_service<A, H>(handler: H) -> HandlerService
where
    H: Handler<A>,
    H::Output: IntoReply,
{
    HandlerService {
        call: Arc::new(move |incoming: Incoming| {
            let codec = Arc::clone(&incoming.codec);
            let started = start(|| handler.call(&incoming));
            Box::pin(async move {
                HandlerOutcome(Outcome::Reply(match finish(started).await {
                    Ok(out) => out.into_reply(codec).0,
                    Err(e) => ReplyBody::One(Err(e)),
                }))
            })
        }),
    }
}

/// An event handler as a service, as [`message_service`].
pub(crate) fn event_service<A, H>(handler: H) -> HandlerService
where
    H: Handler<A>,
    H::Output: IntoEventOutcome,
{
    HandlerService {
        call: Arc::new(move |incoming: Incoming| {
            let started = start(|| handler.call(&incoming));
            Box::pin(async move {
                HandlerOutcome(Outcome::Event(
                    finish(started)
                        .await
                        .and_then(IntoEventOutcome::into_outcome),
                ))
            })
        }),
    }
}

/// A layer's error as the handler's failure: a timeout layer's `Elapsed`
/// or a user layer's refusal is retried as any `RpcException` is (events
/// again, requests answered with it).
pub(crate) fn layer_error(e: &(dyn std::error::Error + Send + Sync)) -> RpcError {
    RpcError::message(format!("handler layer: {e}"))
}

/// Runs a (layered) handler service for one record; a panic in a layer is
/// a failure like a panic in the handler.
pub(crate) async fn run_service(
    service: &tower::util::BoxCloneSyncService<Incoming, HandlerOutcome, tower::BoxError>,
    incoming: Incoming,
    message: bool,
) -> Outcome {
    use tower::ServiceExt as _;
    let failed = |e: RpcError| {
        if message {
            Outcome::Reply(ReplyBody::One(Err(e)))
        } else {
            Outcome::Event(Err(e))
        }
    };
    match AssertUnwindSafe(service.clone().oneshot(incoming))
        .catch_unwind()
        .await
    {
        Ok(Ok(HandlerOutcome(outcome))) => outcome,
        Ok(Err(e)) => failed(layer_error(&*e)),
        Err(p) => failed(panicked(&*p)),
    }
}

/// Starts a handler, a panic turned into a failure.
fn start<T>(
    make: impl FnOnce() -> Result<BoxFuture<T>, RpcError>,
) -> Result<BoxFuture<T>, RpcError> {
    std::panic::catch_unwind(AssertUnwindSafe(make)).unwrap_or_else(|p| Err(panicked(&*p)))
}

/// Runs a started handler's future, a panic while polling it turned into a
/// failure.
async fn finish<T>(started: Result<BoxFuture<T>, RpcError>) -> Result<T, RpcError> {
    match AssertUnwindSafe(started?).catch_unwind().await {
        Ok(r) => Ok(r),
        Err(p) => Err(panicked(&*p)),
    }
}

/// A handler that panicked: a retriable failure like any other (the panic
/// may come from a bad record, which the attempts then dead-letter).
fn panicked(payload: &(dyn Any + Send)) -> RpcError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    RpcError::message(format!("handler panicked: {what}"))
}
