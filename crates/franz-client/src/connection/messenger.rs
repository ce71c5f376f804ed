//! The messenger: what the reader and writer tasks share with the
//! connection's handles, poisoning, the two tasks, the broker's throttle
//! (KIP-219) and [`InFlight`], a request whose answer is still to come.
//!
//! Kafka answers the requests of one connection in the order they were
//! written. So the writer, as it takes each frame off the queue, appends its
//! correlation id and oneshot to `pending` in write order, and the reader
//! expects each response to answer the oldest entry. A caller that gives up
//! drops its receiver and leaves the entry as a placeholder: its response
//! still arrives in its turn and is discarded. A response for any other id
//! (a broker bug, a desynchronised stream, a man in the middle) poisons the
//! connection at once with [`ClientError::CorrelationMismatch`] instead of
//! leaving its caller to wait for the timeout. The first error (I/O, a bad
//! frame, a timeout, a mismatch) closes the connection and fails every
//! waiter with the same typed error.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::collections::VecDeque;
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
    /// Requests written and not yet answered, oldest first; an entry whose
    /// receiver was dropped is a placeholder for a cancelled request.
    Open {
        pending: VecDeque<(i32, Waiter)>,
    },
    Closed(ClientError),
}

/// A frame for the writer, with who waits for its answer (none for
/// Produce with acks=0).
pub(super) struct Outgoing {
    pub(super) frame: Bytes,
    pub(super) answer: Option<(i32, Waiter)>,
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

pub(super) struct Tasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// The re-authentication task, when the SASL session has a lifetime.
    reauth: Mutex<Option<JoinHandle<()>>>,
}

impl Tasks {
    pub(super) fn set_reauth(&self, task: JoinHandle<()>) {
        let old = self
            .reauth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        if let Some(reauth) = self.reauth.get_mut().ok().and_then(Option::take) {
            reauth.abort();
        }
    }
}

/// Whether a frame waits its turn at the write gate. Every request does,
/// except the SASL frames of a re-authentication, which holds the gate
/// shut so that nothing else is written between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    Wait,
    Skip,
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
                pending: VecDeque::new(),
            }),
            throttle_until: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            metrics,
        });
        let (queue, rx) = mpsc::channel::<Outgoing>(1024);
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
                session_deadline: Mutex::new(None),
                write_gate: tokio::sync::RwLock::new(()),
                created: Instant::now(),
                _tasks: Tasks {
                    reader,
                    writer,
                    reauth: Mutex::new(None),
                },
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

    /// Encodes `req` and puts the frame, with the sender of its answer, in
    /// the write queue (the writer registers it as it writes), through
    /// `gate`. Returns the request in flight.
    pub(super) async fn enqueue<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
        size_hint: usize,
        gate: Gate,
    ) -> Result<InFlight<R>, ClientError> {
        let started = Instant::now();
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
        if let State::Closed(e) = &*core.state() {
            return Err(e.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.touch();
        core.metrics.sent(frame.len());
        metrics::counter!("franz_bytes_sent_total").increment(frame.len() as u64);
        let outgoing = Outgoing {
            frame: frame.freeze(),
            answer: Some((id, tx)),
        };
        self.queue_by(outgoing, deadline, R::NAME, timeout, gate)
            .await?;
        Ok(InFlight {
            conn: self.clone(),
            id,
            rx,
            deadline,
            timeout,
            version,
            started,
            _response: PhantomData,
        })
    }

    /// Puts `outgoing` in the write queue, waiting for room at most until
    /// `deadline` (the request's, which started when it was asked for). A
    /// queue still full then means a writer stuck on a socket that takes
    /// nothing (a zero window): the connection is poisoned, so that every
    /// request behind it fails now rather than wait for room that will not
    /// come. Through `Gate::Wait`, it first waits (within the same
    /// deadline) for a re-authentication in progress to end.
    pub(super) async fn queue_by(
        &self,
        outgoing: Outgoing,
        deadline: Instant,
        api: &str,
        timeout: Duration,
        gate: Gate,
    ) -> Result<(), ClientError> {
        // A re-authentication in progress holds the gate for a round trip
        // or two (and for draining the requests ahead of it, a bounded
        // wait): a request that cannot pass it by its deadline times out,
        // without closing a connection that is merely busy.
        let _admitted = match gate {
            Gate::Wait => {
                match tokio::time::timeout_at(deadline.into(), self.handle.write_gate.read()).await
                {
                    Ok(admitted) => Some(admitted),
                    Err(_) => {
                        return Err(ClientError::Timeout {
                            what: format!(
                                "{api} request to {} (waiting for a re-authentication to finish)",
                                self.handle.core.addr
                            ),
                            after: timeout,
                        });
                    }
                }
            }
            Gate::Skip => None,
        };
        match tokio::time::timeout_at(deadline.into(), self.handle.queue.send(outgoing)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                let core = &*self.handle.core;
                let err = ClientError::Timeout {
                    what: format!(
                        "{api} request to {} (the connection's writer is stuck: no room to queue it)",
                        core.addr
                    ),
                    after: timeout,
                };
                core.poison(err.clone());
                Err(err)
            }
        }
    }

    /// Waits for the answer until `deadline`; a timeout
    /// poisons the connection.
    pub(super) async fn wait_answer<R: Request>(
        &self,
        rx: &mut oneshot::Receiver<Result<Bytes, ClientError>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let core = &*self.handle.core;
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
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
        let got = frame::peek_correlation_id(&body);
        let oldest = match &mut *core.state() {
            State::Open { pending } => pending.pop_front(),
            State::Closed(_) => return,
        };
        match (oldest, got) {
            (Some((expected, waiter)), Some(got)) if got == expected => {
                if waiter.send(Ok(body)).is_err() {
                    tracing::trace!(broker = %core.addr, correlation_id = got, "response to a cancelled request discarded");
                }
            }
            (oldest, got) => {
                // Not the answer to the oldest request: the stream can no
                // longer be trusted to pair answers with requests. The
                // oldest waiter is failed with the rest.
                let err = ClientError::CorrelationMismatch {
                    broker: name.clone(),
                    expected: oldest.as_ref().map(|(id, _)| *id),
                    got,
                };
                if let Some((_, waiter)) = oldest {
                    let _ = waiter.send(Err(err.clone()));
                }
                break err;
            }
        }
    };
    core.poison(err);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    core: Arc<Core>,
    mut write: BufWriter<W>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let name = core.addr.to_string();
    while let Some(first) = rx.recv().await {
        let mut result = write_one(&core, &mut write, first).await;
        // Coalesce whatever else is queued into the same flush.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(more) => result = write_one(&core, &mut write, more).await,
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

/// Registers `out`'s waiter, in write order, then writes its frame. The
/// registration comes first: the answer cannot arrive before the request
/// is written, and must find its entry when it does.
async fn write_one<W: AsyncWrite + Unpin>(
    core: &Core,
    write: &mut BufWriter<W>,
    out: Outgoing,
) -> std::io::Result<()> {
    if let Some((id, waiter)) = out.answer {
        match &mut *core.state() {
            State::Open { pending } => pending.push_back((id, waiter)),
            State::Closed(e) => {
                let _ = waiter.send(Err(e.clone()));
                return Ok(());
            }
        }
    }
    write.write_all(&out.frame).await
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
        self.conn
            .wait_answer::<R>(&mut self.rx, self.deadline, self.timeout)
            .await
    }
}
