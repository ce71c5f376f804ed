//! One connection to one broker: pipelined requests matched by correlation
//! id, version negotiation, SASL, throttling and poisoning.
//!
//! A connection runs two tasks. The writer drains a queue of encoded frames
//! (so a caller's future can be dropped at any point without leaving half a
//! frame on the socket). The reader reads size-prefixed frames, takes the
//! correlation id and hands the bytes to whoever waits for it; a response
//! whose caller gave up (dropped its future) is discarded. Any I/O error,
//! bad frame length or request timeout *poisons* the connection: it is
//! closed, and every waiting request gets the same typed error at once, so
//! nothing hangs. A poisoned connection is never reused; the pool makes a
//! new one.
//!
//! # Cancel safety
//! [`BrokerConnection::send`] may be dropped at any await point. If the
//! frame was queued it is still written whole, and its response is
//! discarded when it arrives.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use franz_protocol::frame::{self, ResponseHeader};
use franz_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use franz_protocol::primitives::{DecodeLimits, Reader};
use franz_protocol::{ErrorCode, Message, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::metrics::BrokerMetrics;
use crate::sasl::SaslSession;

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

type Waiter = oneshot::Sender<Result<Bytes, ClientError>>;

enum State {
    Open { pending: HashMap<i32, Waiter> },
    Closed(ClientError),
}

/// What the tasks and the handle share.
struct Core {
    addr: BrokerAddr,
    state: Mutex<State>,
    throttle_until: Mutex<Option<Instant>>,
    last_used: Mutex<Instant>,
    metrics: Arc<BrokerMetrics>,
}

impl Core {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection with `err` and fails every waiter with it.
    fn poison(&self, err: ClientError) {
        let pending = {
            let mut st = self.state();
            match std::mem::replace(&mut *st, State::Closed(err.clone())) {
                State::Open { pending } => pending,
                State::Closed(first) => {
                    // Keep the first cause.
                    *st = State::Closed(first);
                    return;
                }
            }
        };
        if !pending.is_empty() {
            tracing::debug!(broker = %self.addr, waiting = pending.len(), error = %err, "connection closed");
        }
        for (_, waiter) in pending {
            let _ = waiter.send(Err(err.clone()));
        }
    }
}

/// Removes a pending entry if the caller's future is dropped before the
/// response arrives.
struct PendingGuard<'a> {
    core: &'a Core,
    correlation_id: i32,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let State::Open { pending } = &mut *self.core.state()
        {
            pending.remove(&self.correlation_id);
        }
    }
}

struct Tasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

struct Handle {
    core: Arc<Core>,
    queue: mpsc::Sender<Bytes>,
    next_id: AtomicI32,
    versions: ApiVersionTable,
    client_id: String,
    limits: DecodeLimits,
    request_timeout: Duration,
    session_deadline: Option<Instant>,
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

/// Counts live connections, for leak tests and metrics.
static OPEN_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Connections currently open in this process (all clients).
pub fn open_connection_count() -> u64 {
    OPEN_CONNECTIONS.load(Ordering::Relaxed)
}

struct OpenCount;

impl OpenCount {
    fn new() -> Self {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BrokerConnection {
    /// Connects, negotiates API versions and authenticates, all within
    /// `socket_connection_setup_timeout`.
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

    async fn connect_inner(
        config: &ClientConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
        addr: BrokerAddr,
        metrics: Arc<BrokerMetrics>,
    ) -> Result<Self, ClientError> {
        let span = tracing::debug_span!("connect", broker = %addr);
        let _enter = span.enter();
        let name = addr.to_string();
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| ClientError::io(&name, "connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let conn = match tls {
            None => {
                let (r, w) = tcp.into_split();
                Self::start(config, addr, r, w, metrics)
            }
            Some(tls) => {
                let server_name = crate::tls::server_name(config, &addr.host)?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| ClientError::Tls {
                        broker: name.clone(),
                        message: e.to_string(),
                    })?;
                let (r, w) = tokio::io::split(stream);
                Self::start(config, addr, r, w, metrics)
            }
        };
        let conn = conn.negotiate().await?;
        let conn = if config.security_protocol.uses_sasl() {
            conn.authenticate(config).await?
        } else {
            conn
        };
        tracing::debug!(broker = %conn.handle.core.addr, "connected");
        Ok(conn)
    }

    /// Starts the reader and writer over an established stream (no
    /// negotiation yet). Also used by tests with hostile fake brokers.
    fn start<R, W>(
        config: &ClientConfig,
        addr: BrokerAddr,
        read: R,
        write: W,
        metrics: Arc<BrokerMetrics>,
    ) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let core = Arc::new(Core {
            addr,
            state: Mutex::new(State::Open {
                pending: HashMap::new(),
            }),
            throttle_until: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            metrics,
        });
        let (queue, rx) = mpsc::channel::<Bytes>(1024);
        let max = config.max_response_size;
        let reader = tokio::spawn(read_loop(
            Arc::clone(&core),
            BufReader::with_capacity(64 * 1024, read),
            max,
        ));
        let writer = tokio::spawn(write_loop(
            Arc::clone(&core),
            BufWriter::with_capacity(64 * 1024, write),
            rx,
        ));
        Self {
            handle: Arc::new(Handle {
                core,
                queue,
                next_id: AtomicI32::new(1),
                versions: ApiVersionTable::default(),
                client_id: config.client_id.clone(),
                limits: DecodeLimits {
                    max_decompressed_len: max,
                    ..DecodeLimits::default()
                },
                request_timeout: config.request_timeout,
                session_deadline: None,
                created: Instant::now(),
                _tasks: Tasks { reader, writer },
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
            .session_deadline
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
    pub async fn send<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version_of::<R>()?;
        self.send_versioned(req, version, self.handle.request_timeout)
            .await
    }

    /// Sends `req` at the negotiated version with an explicit timeout.
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

    /// Writes `req` into the connection's queue and returns once it is
    /// there, without waiting for the answer: requests enqueued one after
    /// another reach the broker in that order, which a producer pipelining
    /// one partition's batches relies on. [`InFlight::response`] waits for
    /// the answer (at most `timeout` from now); dropping the [`InFlight`]
    /// forgets it.
    pub async fn enqueue_sized<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<InFlight<R>, ClientError> {
        let started = Instant::now();
        let (id, rx, deadline) = self.enqueue(req, version, timeout, size_hint).await?;
        Ok(InFlight {
            conn: self.clone(),
            id,
            rx,
            deadline,
            timeout,
            version,
            started,
            armed: true,
            _response: PhantomData,
        })
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

    /// KIP-219: the broker answered, then muted us; nothing more is sent
    /// until the time has passed.
    fn note_throttle(&self, ms: i32) {
        let core = &self.handle.core;
        // Capped at the request timeout: a broker (or a man in the
        // middle) asking for i32::MAX ms would otherwise mute the
        // connection for 24 days before any timeout could start.
        let until = Instant::now()
            + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                .min(self.handle.request_timeout);
        tracing::debug!(broker = %core.addr, throttle_ms = ms, "throttled by broker");
        core.metrics.throttled(ms);
        let mut t = core
            .throttle_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if t.is_none_or(|old| old < until) {
            *t = Some(until);
        }
    }

    /// Writes `req` without waiting for a response (Produce with acks=0).
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
        self.handle
            .queue
            .send(frame.freeze())
            .await
            .map_err(|_| self.closed_error())
    }

    fn next_correlation_id(&self) -> i32 {
        // Stay positive across wrap-around so ids never collide with a
        // recently used negative one.
        self.handle.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    fn touch(&self) {
        if let Ok(mut t) = self.handle.core.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn closed_error(&self) -> ClientError {
        self.close_reason()
            .unwrap_or_else(|| ClientError::ConnectionClosed {
                broker: self.handle.core.addr.to_string(),
                reason: "writer stopped".into(),
            })
    }

    /// Until when the broker's throttle mutes this connection, if it still does.
    fn muted_until(&self) -> Option<Instant> {
        let until = *self
            .handle
            .core
            .throttle_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.filter(|u| *u > Instant::now())
    }

    async fn wait_throttle(&self) {
        if let Some(until) = self.muted_until() {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Queues the frame and waits for the response frame body (header
    /// included).
    async fn round_trip<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<Bytes, ClientError> {
        let mut in_flight = self.enqueue_sized(req, version, timeout, size_hint).await?;
        in_flight.answer().await
    }

    /// Encodes `req`, registers its correlation id and puts the frame in
    /// the write queue. Returns the id, the answer's receiver and the
    /// deadline. On error nothing stays registered.
    async fn enqueue<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<(i32, oneshot::Receiver<Result<Bytes, ClientError>>, Instant), ClientError> {
        // The broker's throttle counts inside the request's time: a request
        // that could only be sent after its deadline fails now, unsent,
        // without poisoning a connection that is merely muted.
        let deadline = Instant::now() + timeout;
        if let Some(until) = self.muted_until() {
            if until >= deadline {
                return Err(ClientError::Timeout {
                    what: format!(
                        "{} request to {} (the broker throttles this connection past the deadline)",
                        R::NAME,
                        self.handle.core.addr
                    ),
                    after: timeout,
                });
            }
            tokio::time::sleep_until(until.into()).await;
        }
        let core = &*self.handle.core;
        let id = self.next_correlation_id();
        let mut frame = BytesMut::with_capacity(size_hint);
        frame::encode_request(&mut frame, id, Some(&self.handle.client_id), version, req)?;
        let (tx, rx) = oneshot::channel();
        match &mut *core.state() {
            State::Open { pending } => {
                pending.insert(id, tx);
            }
            State::Closed(e) => return Err(e.clone()),
        }
        let mut guard = PendingGuard {
            core,
            correlation_id: id,
            armed: true,
        };
        self.touch();
        core.metrics.sent(frame.len());
        metrics::counter!("franz_bytes_sent_total").increment(frame.len() as u64);
        if self.handle.queue.send(frame.freeze()).await.is_err() {
            return Err(self.closed_error());
        }
        guard.armed = false;
        Ok((id, rx, deadline))
    }

    /// Waits for the answer to request `id` until `deadline`; a timeout
    /// poisons the connection.
    async fn wait_answer<R: Request>(
        &self,
        id: i32,
        rx: &mut oneshot::Receiver<Result<Bytes, ClientError>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let core = &*self.handle.core;
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                if let State::Open { pending } = &mut *core.state() {
                    pending.remove(&id);
                }
                let err = ClientError::Timeout {
                    what: format!("{} request to {}", R::NAME, core.addr),
                    after: timeout,
                };
                // The stream cannot be trusted to answer anything else in
                // time either (a paused broker, a black hole): close it.
                core.poison(err.clone());
                Err(err)
            }
        }
    }

    fn decode<M: Message>(&self, body: Bytes, version: i16) -> Result<M, ClientError> {
        frame::decode_response::<M>(body, version, self.handle.limits)
            .map(|(_, m)| m)
            .map_err(|source| ClientError::Decode {
                broker: self.handle.core.addr.to_string(),
                source,
            })
    }

    /// ApiVersions at our highest version, falling back to the broker's
    /// when it answers UNSUPPORTED_VERSION (in v0 format, KIP-511).
    async fn negotiate(self) -> Result<Self, ClientError> {
        let req = ApiVersionsRequest {
            client_software_name: "franz".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let mut version = ApiVersionsRequest::MAX_VERSION;
        let timeout = self.handle.request_timeout;
        let resp = loop {
            let body = self.round_trip(&req, version, timeout, 0).await?;
            // The response header is v0 for every ApiVersions version, and
            // error_code is the first body field in every version.
            let mut r = Reader::new(body.clone());
            ResponseHeader::decode(&mut r, 0).map_err(|source| ClientError::Decode {
                broker: self.addr().to_string(),
                source,
            })?;
            let rest = r.into_rest();
            let code = rest
                .get(..2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .unwrap_or(0);
            if code == ErrorCode::UnsupportedVersion.code() && version > 0 {
                let v0 =
                    ApiVersionsResponse::decode(rest, 0).map_err(|source| ClientError::Decode {
                        broker: self.addr().to_string(),
                        source,
                    })?;
                let theirs = v0
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions.key())
                    .map(|k| k.max_version);
                let next = theirs.unwrap_or(0).min(version - 1);
                tracing::debug!(broker = %self.addr(), from = version, to = next, "ApiVersions fallback");
                version = next;
                continue;
            }
            break self.decode::<ApiVersionsResponse>(body, version)?;
        };
        ClientError::check(
            resp.error_code,
            || format!("ApiVersions from {}", self.addr()),
            None,
        )?;
        let mut handle = Arc::into_inner(self.handle).ok_or(ClientError::Config(
            "connection shared during set-up".into(),
        ))?;
        handle.versions = ApiVersionTable {
            broker: resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
            finalized: resp
                .finalized_features
                .iter()
                .map(|f| (f.name.clone(), f.max_version_level))
                .collect(),
        };
        Ok(Self {
            handle: Arc::new(handle),
        })
    }

    /// SaslHandshake, then SaslAuthenticate rounds. A failure is an
    /// authentication error and the connection is closed: never a silent
    /// fallback.
    async fn authenticate(self, config: &ClientConfig) -> Result<Self, ClientError> {
        let broker = self.addr().to_string();
        let auth_err = |message: String| ClientError::Authentication {
            broker: broker.clone(),
            message,
        };
        let mechanism = config.sasl_mechanism.name();
        let hs = self
            .send(&SaslHandshakeRequest {
                mechanism: mechanism.into(),
                ..Default::default()
            })
            .await?;
        if hs.error_code != 0 {
            self.close("SASL handshake failed");
            return Err(auth_err(format!(
                "{} (the broker offers {:?})",
                ErrorCode::from_code(hs.error_code),
                hs.mechanisms
            )));
        }
        let (mut session, mut msg) = SaslSession::start(config).map_err(&auth_err)?;
        let mut lifetime_ms;
        loop {
            let resp = self
                .send(&SaslAuthenticateRequest {
                    auth_bytes: Bytes::from(msg),
                    ..Default::default()
                })
                .await?;
            if resp.error_code != 0 {
                self.close("SASL authentication failed");
                return Err(auth_err(format!(
                    "{}{}",
                    ErrorCode::from_code(resp.error_code),
                    resp.error_message
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                )));
            }
            lifetime_ms = resp.session_lifetime_ms;
            match session.step(&resp.auth_bytes) {
                Ok(Some(next)) => msg = next,
                Ok(None) => break,
                Err(e) => {
                    self.close("SASL mechanism failed");
                    return Err(auth_err(e));
                }
            }
        }
        let mut handle = Arc::into_inner(self.handle).ok_or(ClientError::Config(
            "connection shared during set-up".into(),
        ))?;
        if lifetime_ms > 0 {
            // KIP-368: retire the connection before the broker's session
            // ends; the pool replaces it with a freshly authenticated one.
            let margin = (lifetime_ms as f64 * 0.85) as u64;
            handle.session_deadline = Some(Instant::now() + Duration::from_millis(margin));
            tracing::debug!(broker = %handle.core.addr, lifetime_ms, "SASL session lifetime");
        }
        Ok(Self {
            handle: Arc::new(handle),
        })
    }
}

async fn read_loop<R: AsyncRead + Unpin>(core: Arc<Core>, mut read: BufReader<R>, max: usize) {
    let _open = OpenCount::new();
    let name = core.addr.to_string();
    let err = loop {
        let mut len = [0u8; 4];
        if let Err(e) = read.read_exact(&mut len).await {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ClientError::ConnectionClosed {
                    broker: name.clone(),
                    reason: "the broker closed the connection".into(),
                }
            } else {
                ClientError::io(&name, "read", &e)
            };
        }
        let len = i32::from_be_bytes(len);
        // Checked before allocating: a hostile length costs nothing.
        let Some(len) = usize::try_from(len).ok().filter(|l| (4..=max).contains(l)) else {
            break ClientError::Decode {
                broker: name.clone(),
                source: franz_protocol::DecodeError::LengthOutOfRange {
                    field: "response frame length",
                    length: i64::from(len),
                    limit: max,
                },
            };
        };
        let mut body = BytesMut::zeroed(len);
        if let Err(e) = read.read_exact(&mut body).await {
            break ClientError::io(&name, "read", &e);
        }
        core.metrics.received(len + 4);
        metrics::counter!("franz_bytes_received_total").increment((len + 4) as u64);
        let body = body.freeze();
        let Some(id) = frame::peek_correlation_id(&body) else {
            continue;
        };
        let waiter = match &mut *core.state() {
            State::Open { pending } => pending.remove(&id),
            State::Closed(_) => return,
        };
        match waiter {
            Some(w) => {
                let _ = w.send(Ok(body));
            }
            None => {
                tracing::trace!(broker = %core.addr, correlation_id = id, "response to a cancelled request discarded")
            }
        }
    };
    core.poison(err);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    core: Arc<Core>,
    mut write: BufWriter<W>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let name = core.addr.to_string();
    while let Some(frame) = rx.recv().await {
        let mut result = write.write_all(&frame).await;
        // Coalesce whatever else is queued into the same flush.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(more) => result = write.write_all(&more).await,
                Err(_) => break,
            }
        }
        if let Err(e) = result {
            core.poison(ClientError::io(&name, "write", &e));
            return;
        }
        if let Err(e) = write.flush().await {
            core.poison(ClientError::io(&name, "write", &e));
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// A request written to a connection's queue, its answer still to come
/// (see [`BrokerConnection::enqueue_sized`]). Dropping it forgets the answer.
pub struct InFlight<R: Request> {
    conn: BrokerConnection,
    id: i32,
    rx: oneshot::Receiver<Result<Bytes, ClientError>>,
    deadline: Instant,
    timeout: Duration,
    version: i16,
    started: Instant,
    armed: bool,
    _response: PhantomData<fn() -> R>,
}

impl<R: Request> std::fmt::Debug for InFlight<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("api", &R::NAME)
            .field("correlation_id", &self.id)
            .finish()
    }
}

impl<R: Request> InFlight<R> {
    /// Waits for the answer (until the deadline set when it was enqueued)
    /// and decodes it. Cancel safe: dropping the future forgets the answer.
    pub async fn response(mut self) -> Result<R::Response, ClientError> {
        let raw = self.answer().await;
        let result = raw.and_then(|body| self.conn.decode::<R::Response>(body, self.version));
        self.conn
            .record::<R>(self.started.elapsed(), result.is_ok());
        let resp = result?;
        if let Some(ms) = resp.throttle_time_ms().filter(|ms| *ms > 0) {
            self.conn.note_throttle(ms);
        }
        Ok(resp)
    }
}

impl<R: Request> InFlight<R> {
    /// The answer's frame body (header included), undecoded; afterwards
    /// nothing is left registered.
    async fn answer(&mut self) -> Result<Bytes, ClientError> {
        let raw = self
            .conn
            .wait_answer::<R>(self.id, &mut self.rx, self.deadline, self.timeout)
            .await;
        self.armed = false;
        raw
    }
}

impl<R: Request> Drop for InFlight<R> {
    fn drop(&mut self) {
        if self.armed
            && let State::Open { pending } = &mut *self.conn.handle.core.state()
        {
            pending.remove(&self.id);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
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
        assert!(matches!(err, ClientError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("MetadataResponse"), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_without_allocating() {
        // Claims 2 GiB; the limit is 1 MiB, so nothing is allocated.
        let conn = fake_broker(vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]).await;
        let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
        assert!(err.to_string().contains("response frame length"), "{err}");
        assert!(!conn.is_open(), "a bad frame poisons the connection");
        // Later requests fail at once with the same cause.
        let again = conn.send(&MetadataRequest::default()).await.unwrap_err();
        assert!(
            again.to_string().contains("response frame length"),
            "{again}"
        );
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
