//! One connection to one broker: pipelined requests matched by correlation
//! id, version negotiation, SASL, throttling and poisoning.
//!
//! The pieces, each in its own file:
//! - `codec`: the sans-io frame codec. It cuts size-prefixed response
//!   frames out of a byte buffer and refuses a length outside the limit
//!   before anything is allocated.
//! - `messenger`: the state the tasks share (the correlation map and
//!   whether the connection is open), poisoning, the reader and writer
//!   tasks, the broker's throttle, and [`InFlight`].
//! - `handshake`: TCP and TLS, ApiVersions negotiation, then SASL.
//! - this file: [`BrokerConnection`]'s public face, sending and decoding.
//!
//! A connection runs two tasks. The writer drains a queue of encoded frames
//! (so a caller's future can be dropped at any point without leaving half a
//! frame on the socket). The reader reads size-prefixed frames, takes the
//! correlation id and hands the bytes to the oldest request, which it must
//! answer (Kafka answers in order); a response whose caller gave up
//! (dropped its future) is discarded in its turn, and one for any other id
//! poisons the connection. Any I/O error,
//! bad frame length or request timeout *poisons* the connection: it is
//! closed, and every waiting request gets the same typed error at once, so
//! nothing hangs. A poisoned connection is never reused; the pool makes a
//! new one.
//!
//! # Cancel safety
//! Every `send*` future may be dropped at any await point. If the frame was
//! queued it is still written whole, and its response is discarded when it
//! arrives; the connection stays usable. A frame not yet queued is never
//! written.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

mod codec;
mod handshake;
mod messenger;

use std::collections::HashMap;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use franz_protocol::frame;
use franz_protocol::messages::ApiKey;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::{Message, Request};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::metrics::BrokerMetrics;
use tokio::sync::mpsc;

use messenger::{Core, Gate, Outgoing, State, Tasks};
pub use messenger::{InFlight, open_connection_count};

/// Which broker a connection talks to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddr {
    /// Node id (-1 for a bootstrap address not yet identified).
    pub node_id: i32,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node_id >= 0 {
            write!(f, "node {} ({}:{})", self.node_id, self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The API versions both sides speak, from the broker's ApiVersions answer.
#[derive(Debug, Clone, Default)]
pub struct ApiVersionTable {
    broker: HashMap<i16, (i16, i16)>,
    /// The cluster's finalized features (name, max version level), as this
    /// broker reported them (ApiVersions v3+).
    finalized: Vec<(String, i16)>,
}

impl ApiVersionTable {
    /// The highest version of `api` both sides speak.
    pub fn pick(&self, api: ApiKey, broker: &BrokerAddr) -> Result<i16, ClientError> {
        let (lo, hi) = api.versions();
        let (bmin, bmax) = self.broker.get(&api.key()).copied().unwrap_or((-1, -1));
        let v = hi.min(bmax);
        if bmax < 0 || v < lo.max(bmin) {
            return Err(ClientError::NoCommonVersion {
                api: api.name(),
                broker: broker.to_string(),
                client_min: lo,
                client_max: hi,
                broker_min: bmin,
                broker_max: bmax,
            });
        }
        Ok(v)
    }

    /// The broker's range for an API key, if it lists one.
    pub fn broker_range(&self, api_key: i16) -> Option<(i16, i16)> {
        self.broker.get(&api_key).copied()
    }

    /// The finalized max version level of a cluster feature (for example
    /// `transaction.version`, `group.version`), if the broker reports one.
    pub fn finalized_feature(&self, name: &str) -> Option<i16> {
        self.finalized
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, level)| *level)
    }
}

impl Handle {
    fn session_deadline(&self) -> MutexGuard<'_, Option<Instant>> {
        self.session_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

struct Handle {
    core: Arc<Core>,
    queue: mpsc::Sender<Outgoing>,
    next_id: AtomicI32,
    versions: ApiVersionTable,
    client_id: String,
    limits: DecodeLimits,
    request_timeout: Duration,
    /// When the SASL session ends (KIP-368), if the broker set a lifetime;
    /// a re-authentication moves it on.
    session_deadline: Mutex<Option<Instant>>,
    /// Shut (written) while a re-authentication runs; every other frame
    /// is queued under a read guard.
    write_gate: tokio::sync::RwLock<()>,
    created: Instant,
    _tasks: Tasks,
}

/// A connection to one broker. Clones share it; the last clone dropped
/// closes it.
#[derive(Clone)]
pub struct BrokerConnection {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("broker", &self.handle.core.addr)
            .field("open", &self.is_open())
            .finish()
    }
}

impl BrokerConnection {
    /// Connects, negotiates API versions and authenticates, all within
    /// `socket_connection_setup_timeout`.
    ///
    /// # Cancel safety
    /// Dropping it drops the half-built connection: the socket closes and its reader and
    /// writer tasks are aborted. Nothing is pooled or registered.
    pub async fn connect(
        config: &ClientConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
        addr: BrokerAddr,
        metrics: Arc<BrokerMetrics>,
    ) -> Result<Self, ClientError> {
        let setup = config.socket_connection_setup_timeout;
        let what = addr.to_string();
        match tokio::time::timeout(setup, Self::connect_inner(config, tls, addr, metrics)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                what: format!("connecting to {what}"),
                after: setup,
            }),
        }
    }

    /// The broker.
    pub fn addr(&self) -> &BrokerAddr {
        &self.handle.core.addr
    }

    /// The negotiated versions.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.handle.versions
    }

    /// The version of `R` this connection will use.
    pub fn version_of<R: Request>(&self) -> Result<i16, ClientError> {
        let api = ApiKey::from_i16(R::API_KEY).ok_or(ClientError::Config(format!(
            "{} is not an API franz speaks",
            R::NAME
        )))?;
        self.handle.versions.pick(api, &self.handle.core.addr)
    }

    /// Whether the connection can take requests (not poisoned, and its SASL
    /// session, if any, not about to expire).
    pub fn is_open(&self) -> bool {
        let open = matches!(*self.handle.core.state(), State::Open { .. });
        open && self
            .handle
            .session_deadline()
            .is_none_or(|d| Instant::now() < d)
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self) -> Option<ClientError> {
        match &*self.handle.core.state() {
            State::Closed(e) => Some(e.clone()),
            State::Open { .. } => None,
        }
    }

    /// How long since the last request.
    pub fn idle_for(&self) -> Duration {
        self.handle
            .core
            .last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// When the connection was made.
    pub fn created(&self) -> Instant {
        self.handle.created
    }

    /// Requests still waiting for a response.
    pub fn in_flight(&self) -> usize {
        match &*self.handle.core.state() {
            // Placeholders of cancelled requests do not count.
            State::Open { pending } => pending.iter().filter(|(_, w)| !w.is_closed()).count(),
            State::Closed(_) => 0,
        }
    }

    /// Requests written and not yet answered, the placeholders of
    /// cancelled ones included (the broker still works on those).
    fn unanswered(&self) -> usize {
        match &*self.handle.core.state() {
            State::Open { pending } => pending.len(),
            State::Closed(_) => 0,
        }
    }

    /// Closes the connection; waiting requests fail with `reason`.
    pub fn close(&self, reason: &str) {
        self.handle.core.poison(ClientError::ConnectionClosed {
            broker: self.handle.core.addr.to_string(),
            reason: reason.into(),
        });
    }

    /// Sends `req` at the negotiated version and waits (at most the request
    /// timeout) for its response.
    ///
    /// # Cancel safety
    /// Cancel safe. Dropped while waiting out a broker throttle or for room in the write
    /// queue, nothing is sent and nothing stays registered. Dropped after the frame is
    /// queued, the frame is still written whole and the broker executes it; the late
    /// response is discarded and the connection stays usable. Only a timeout that is
    /// awaited poisons the connection.
    pub async fn send<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version_of::<R>()?;
        self.send_versioned(req, version, self.handle.request_timeout)
            .await
    }

    /// Sends `req` at the negotiated version with an explicit timeout.
    ///
    /// # Cancel safety
    /// As [`send`](Self::send).
    pub async fn send_timeout<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let version = self.version_of::<R>()?;
        self.send_versioned(req, version, timeout).await
    }

    /// Sends `req` at `version` and waits at most `timeout`. A timeout closes
    /// the connection (its response may still come, and would be stale).
    ///
    /// # Cancel safety
    /// As [`send`](Self::send).
    pub async fn send_versioned<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        self.send_sized(req, version, timeout, 0).await
    }

    /// [`send_versioned`](Self::send_versioned) with the encoded size known
    /// in advance (e.g. a Produce request's batch bytes), so the frame is
    /// written into one allocation instead of a buffer grown by doubling.
    ///
    /// # Cancel safety
    /// As [`send`](Self::send).
    pub async fn send_sized<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<R::Response, ClientError> {
        let started = Instant::now();
        match self.enqueue_sized(req, version, timeout, size_hint).await {
            Ok(in_flight) => in_flight.response().await,
            Err(e) => {
                self.record::<R>(started.elapsed(), false);
                Err(e)
            }
        }
    }

    /// Sends a SASL frame past the write gate, which a re-authentication
    /// holds shut.
    async fn send_ungated<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version_of::<R>()?;
        let timeout = self.handle.request_timeout;
        self.enqueue(req, version, timeout, 0, Gate::Skip)
            .await?
            .response()
            .await
    }

    /// Writes `req` into the connection's queue and returns once it is
    /// there, without waiting for the answer: requests enqueued one after
    /// another reach the broker in that order, which a producer pipelining
    /// one partition's batches relies on. [`InFlight::response`] waits for
    /// the answer (at most `timeout` from now); dropping the [`InFlight`]
    /// forgets it.
    ///
    /// # Cancel safety
    /// Cancel safe. Dropped before it returns, the frame is not queued. After it returns,
    /// the frame is written in order, and dropping the [`InFlight`] only forgets the
    /// answer.
    pub async fn enqueue_sized<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<InFlight<R>, ClientError> {
        self.enqueue(req, version, timeout, size_hint, Gate::Wait)
            .await
    }

    /// Counts one request of `R` in the connection's and the `metrics`
    /// facade's figures.
    fn record<R: Request>(&self, took: Duration, ok: bool) {
        self.handle.core.metrics.record(R::API_KEY, took, ok);
        // The `metrics` facade too (a no-op until the application installs
        // a recorder): latency per API, and failures.
        metrics::histogram!("franz_request_seconds", "api" => R::NAME).record(took.as_secs_f64());
        if !ok {
            metrics::counter!("franz_request_errors_total", "api" => R::NAME).increment(1);
        }
    }

    /// Writes `req` without waiting for a response (Produce with acks=0).
    ///
    /// # Cancel safety
    /// Dropped while throttled or waiting for queue room, nothing is sent. Once queued, the
    /// frame is written whole (with acks=0 its records may be in the log).
    pub async fn send_no_response<R: Request>(
        &self,
        req: &R,
        version: i16,
        size_hint: usize,
    ) -> Result<(), ClientError> {
        self.wait_throttle().await;
        let id = self.next_correlation_id();
        let mut frame = BytesMut::with_capacity(size_hint);
        frame::encode_request(&mut frame, id, Some(&self.handle.client_id), version, req)?;
        self.touch();
        let outgoing = Outgoing {
            frame: frame.freeze(),
            answer: None,
        };
        let timeout = self.handle.request_timeout;
        self.queue_by(
            outgoing,
            Instant::now() + timeout,
            R::NAME,
            timeout,
            Gate::Wait,
        )
        .await
    }

    fn decode<M: Message>(&self, body: Bytes, version: i16) -> Result<M, ClientError> {
        frame::decode_response::<M>(body, version, self.handle.limits)
            .map(|(_, m)| m)
            .map_err(|source| ClientError::Decode {
                broker: self.handle.core.addr.to_string(),
                source,
            })
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::*;

    /// A connection over an arbitrary stream, skipping negotiation: every API
    /// is assumed at franz's highest version. For fake-broker tests.
    pub(crate) fn over_stream<S>(config: &ClientConfig, stream: S) -> BrokerConnection
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        let conn = BrokerConnection::start(
            config,
            BrokerAddr {
                node_id: 0,
                host: "fake".into(),
                port: 0,
            },
            r,
            w,
            Arc::new(BrokerMetrics::default()),
        );
        let mut handle = Arc::into_inner(conn.handle).unwrap_or_else(|| unreachable!());
        handle.versions = ApiVersionTable {
            broker: ApiKey::ALL
                .iter()
                .map(|a| (a.key(), a.versions()))
                .collect(),
            finalized: Vec::new(),
        };
        BrokerConnection {
            handle: Arc::new(handle),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use franz_protocol::DecodeError;
    use franz_protocol::messages::MetadataRequest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn config() -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_secs(5),
            max_response_size: 1 << 20,
            ..ClientConfig::new("fake:1")
        }
    }

    /// A fake broker that reads one request frame and answers with `reply`.
    async fn fake_broker(reply: Vec<u8>) -> BrokerConnection {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut len = [0u8; 4];
            if server.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut req = vec![0u8; i32::from_be_bytes(len) as usize];
            let _ = server.read_exact(&mut req).await;
            let _ = server.write_all(&reply).await;
            // Keep the stream open until the client hangs up.
            let mut sink = Vec::new();
            let _ = server.read_to_end(&mut sink).await;
        });
        test_support::over_stream(&config(), client)
    }

    #[tokio::test]
    async fn garbage_body_is_a_decode_error_naming_the_api() {
        // Correlation id 1 (the first request), then junk.
        let mut reply = vec![0, 0, 0, 9, 0, 0, 0, 1];
        reply.extend_from_slice(&[0xff; 5]);
        let conn = fake_broker(reply).await;
        let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::Decode {
                    source: DecodeError::InMessage {
                        api: "MetadataResponse",
                        ..
                    },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_without_allocating() {
        // Claims 2 GiB; the limit is 1 MiB, so nothing is allocated.
        let conn = fake_broker(vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]).await;
        let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
        let frame_length = |e: &ClientError| {
            matches!(
                e,
                ClientError::Decode {
                    source: DecodeError::LengthOutOfRange {
                        field: "response frame length",
                        ..
                    },
                    ..
                }
            )
        };
        assert!(frame_length(&err), "{err}");
        assert!(!conn.is_open(), "a bad frame poisons the connection");
        // Later requests fail at once with the same cause.
        let again = conn.send(&MetadataRequest::default()).await.unwrap_err();
        assert!(frame_length(&again), "{again}");
    }

    #[tokio::test]
    async fn a_truncated_frame_fails_every_waiter() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let _ = server.read(&mut buf).await;
            // Promise 100 bytes, send 6, hang up.
            let _ = server.write_all(&[0, 0, 0, 100, 0, 0, 0, 1, 0, 0]).await;
        });
        let conn = test_support::over_stream(&config(), client);
        let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Io { .. } | ClientError::ConnectionClosed { .. }
            ),
            "{err}"
        );
    }

    /// A fake broker that reads `n` Metadata requests and then answers
    /// them, in order, each with an empty MetadataResponse under the id
    /// `answer_id` gives for the request's own id.
    async fn answering_broker(n: usize, answer_id: fn(i32) -> i32) -> BrokerConnection {
        use franz_protocol::frame::{ResponseHeader, response_header_version};
        use franz_protocol::messages::MetadataResponse;
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut asked = Vec::new();
            for _ in 0..n {
                let mut len = [0u8; 4];
                if server.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut req = vec![0u8; i32::from_be_bytes(len) as usize];
                if server.read_exact(&mut req).await.is_err() {
                    return;
                }
                let version = i16::from_be_bytes([req[2], req[3]]);
                let id = i32::from_be_bytes([req[4], req[5], req[6], req[7]]);
                asked.push((version, id));
            }
            for (version, id) in asked {
                let mut body = BytesMut::new();
                ResponseHeader {
                    correlation_id: answer_id(id),
                    unknown_tagged_fields: Vec::new(),
                }
                .encode(
                    &mut body,
                    response_header_version(ApiKey::Metadata, version),
                )
                .unwrap();
                MetadataResponse::default()
                    .encode(&mut body, version)
                    .unwrap();
                let mut frame = (body.len() as i32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                if server.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let mut sink = Vec::new();
            let _ = server.read_to_end(&mut sink).await;
        });
        test_support::over_stream(&config(), client)
    }

    /// A response that does not answer the oldest request poisons the
    /// connection at once with a typed error, not at the request timeout
    /// (5 s here).
    #[tokio::test]
    async fn a_response_for_another_correlation_id_fails_at_once() {
        let conn = answering_broker(1, |id| id + 1000).await;
        let started = std::time::Instant::now();
        let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                err,
                ClientError::CorrelationMismatch {
                    expected: Some(1),
                    got: Some(1001),
                    ..
                }
            ),
            "{err}"
        );
        assert!(took < Duration::from_millis(100), "took {took:?}");
        assert!(!conn.is_open());
        assert!(err.is_retriable());
    }

    /// Requests whose callers gave up keep their turn: their answers are
    /// discarded in order, and the request behind them gets its own.
    #[tokio::test]
    async fn cancelled_requests_keep_their_turn() {
        let conn = answering_broker(3, |id| id).await;
        let version = conn.version_of::<MetadataRequest>().unwrap();
        for _ in 0..2 {
            let in_flight = conn
                .enqueue_sized(
                    &MetadataRequest::default(),
                    version,
                    Duration::from_secs(5),
                    64,
                )
                .await
                .unwrap();
            drop(in_flight);
        }
        assert_eq!(conn.in_flight(), 0, "cancelled requests are placeholders");
        conn.send(&MetadataRequest::default()).await.unwrap();
        assert!(conn.is_open());
    }

    #[tokio::test]
    async fn a_silent_broker_times_out_within_the_deadline() {
        let (client, _server) = tokio::io::duplex(1 << 16);
        let conn = test_support::over_stream(&config(), client);
        let started = std::time::Instant::now();
        let err = conn
            .send_timeout(&MetadataRequest::default(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
