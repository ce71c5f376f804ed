//! The messenger: what the reader and writer tasks share with the
//! connection's handles, poisoning, the two tasks, the broker's throttle
//! (KIP-219) and [`InFlight`], a request whose answer is still to come.
//!
//! Each request registers a oneshot under its correlation id before its
//! frame enters the write queue; the reader hands each response to the
//! waiter registered under its id. The first error (I/O, a bad frame, a
//! timeout) closes the connection and fails every waiter with the same
//! typed error.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use franz_protocol::frame;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::{Message, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::codec::{FrameDecoder, Framed};
use super::{ApiVersionTable, BrokerAddr, BrokerConnection, Handle};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::metrics::BrokerMetrics;

pub(super) type Waiter = oneshot::Sender<Result<Bytes, ClientError>>;

pub(super) enum State {
    Open { pending: HashMap<i32, Waiter> },
    Closed(ClientError),
}

/// What the tasks and the handle share.
pub(super) struct Core {
    pub(super) addr: BrokerAddr,
    pub(super) state: Mutex<State>,
    pub(super) throttle_until: Mutex<Option<Instant>>,
    pub(super) last_used: Mutex<Instant>,
    pub(super) metrics: Arc<BrokerMetrics>,
}

impl Core {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection with `err` and fails every waiter with it.
    pub(super) fn poison(&self, err: ClientError) {
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

pub(super) struct Tasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
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
    /// Starts the reader and writer over an established stream (no
    /// negotiation yet). Also used by tests with hostile fake brokers.
    pub(super) fn start<R, W>(
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
        let reader = tokio::spawn(read_loop(Arc::clone(&core), read, max));
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

    /// KIP-219: the broker answered, then muted us; nothing more is sent
    /// until the time has passed.
    pub(super) fn note_throttle(&self, ms: i32) {
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

    pub(super) fn next_correlation_id(&self) -> i32 {
        // Stay positive across wrap-around so ids never collide with a
        // recently used negative one.
        self.handle.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    pub(super) fn touch(&self) {
        if let Ok(mut t) = self.handle.core.last_used.lock() {
            *t = Instant::now();
        }
    }

    pub(super) fn closed_error(&self) -> ClientError {
        self.close_reason()
            .unwrap_or_else(|| ClientError::ConnectionClosed {
                broker: self.handle.core.addr.to_string(),
                reason: "writer stopped".into(),
            })
    }

    /// Until when the broker's throttle mutes this connection, if it still does.
    pub(super) fn muted_until(&self) -> Option<Instant> {
        let until = *self
            .handle
            .core
            .throttle_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.filter(|u| *u > Instant::now())
    }

    pub(super) async fn wait_throttle(&self) {
        if let Some(until) = self.muted_until() {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Queues the frame and waits for the response frame body (header
    /// included).
    pub(super) async fn round_trip<R: Request>(
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
    pub(super) async fn enqueue<R: Request>(
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
    pub(super) async fn wait_answer<R: Request>(
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
}

/// How much the reader asks the socket for at least, so that small frames
/// share one read (as the 64 KiB `BufReader` before it did).
const READ_CHUNK: usize = 64 * 1024;

async fn read_loop<R: AsyncRead + Unpin>(core: Arc<Core>, mut read: R, max: usize) {
    let _open = OpenCount::new();
    let name = core.addr.to_string();
    let decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let err = loop {
        let body = match decoder.decode(&mut buf) {
            Ok(Framed::Frame(body)) => body,
            Ok(Framed::Need(total)) => {
                // Room for the whole frame at once: one allocation per
                // large frame, never a buffer grown by doubling.
                buf.reserve(total.saturating_sub(buf.len()).max(READ_CHUNK));
                match read.read_buf(&mut buf).await {
                    Ok(0) if buf.is_empty() => {
                        break ClientError::ConnectionClosed {
                            broker: name.clone(),
                            reason: "the broker closed the connection".into(),
                        };
                    }
                    Ok(0) => {
                        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                        break ClientError::io(&name, "read", &eof);
                    }
                    Ok(_) => continue,
                    Err(e) => break ClientError::io(&name, "read", &e),
                }
            }
            Err(source) => {
                break ClientError::Decode {
                    broker: name.clone(),
                    source,
                };
            }
        };
        core.metrics.received(body.len() + 4);
        metrics::counter!("franz_bytes_received_total").increment((body.len() + 4) as u64);
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
    pub(super) conn: BrokerConnection,
    pub(super) id: i32,
    pub(super) rx: oneshot::Receiver<Result<Bytes, ClientError>>,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    pub(super) version: i16,
    pub(super) started: Instant,
    pub(super) armed: bool,
    pub(super) _response: PhantomData<fn() -> R>,
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
    ///
    /// # Cancel safety
    /// Cancel safe. Dropping it forgets the answer, which is discarded on arrival; the
    /// connection is not poisoned.
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
