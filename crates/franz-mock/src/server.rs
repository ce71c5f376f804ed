//! The network side: one listener per broker, one task per connection.
//! A connection reads a size-prefixed frame, decodes the header and body
//! (closing on anything malformed, as a broker does), applies control
//! hooks, serves the request and writes the answer. Requests on one
//! connection are served one at a time, in order, like Kafka's muted
//! channels, so answers never overtake each other.
#![allow(clippy::disallowed_methods)] // the mock broker is a driver of its own cluster state: session expiry and delayed fetches read the clock

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use franz_protocol::frame::{RequestHeader, ResponseHeader, response_header_version};
use franz_protocol::messages::{AnyRequest, AnyResponse, ApiKey};
use franz_protocol::primitives::{DecodeLimits, Reader};
use franz_protocol::{ErrorCode, messages as m};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::control::{ControlAction, Controls};
use crate::handlers::{Caller, api_versions, handle, served_versions};
use crate::sasl::{SaslSession, SaslUser};
use crate::state::State;

/// Kafka's `socket.request.max.bytes` default: larger frames close the connection.
pub(crate) const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    change: Notify,
    pub(crate) controls: Mutex<Controls>,
    pub(crate) brokers: Mutex<BTreeMap<i32, watch::Sender<bool>>>,
    pub(crate) sasl_users: Vec<SaslUser>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Shared {
    pub(crate) fn new(
        state: State,
        sasl_users: Vec<SaslUser>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            state: Mutex::new(state),
            change: Notify::new(),
            controls: Mutex::new(Controls::default()),
            brokers: Mutex::new(BTreeMap::new()),
            sasl_users,
            runtime,
        }
    }

    /// The state. A handler that panicked leaves it usable: every change
    /// is made whole under the lock before anything can fail.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes every parked request to look again.
    pub(crate) fn changed(&self) {
        self.change.notify_waiters();
    }

    /// A future that completes at the next [`Shared::changed`].
    pub(crate) fn changed_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.change.notified()
    }

    /// Polls `poll` after every change (and at least every 50 ms, so
    /// timeouts progress) until it answers or `limit` passes.
    pub(crate) async fn wait_until<T>(
        &self,
        limit: Instant,
        mut poll: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        loop {
            let notified = self.changed_signal();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (answer, ticked) = {
                let mut st = self.lock();
                let ticked = st.tick(now);
                (poll(&mut st), ticked)
            };
            if ticked {
                self.changed();
            }
            if answer.is_some() {
                return answer;
            }
            if now >= limit {
                return None;
            }
            let wake = limit.min(now + Duration::from_millis(50));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts serving broker `id` on `listener`.
    pub(crate) fn serve_broker(
        self: &Arc<Self>,
        id: i32,
        listener: std::net::TcpListener,
    ) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let (tx, rx) = watch::channel(false);
        if let Some(old) = self
            .brokers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, tx)
        {
            let _ = old.send(true);
        }
        let shared = Arc::clone(self);
        let _guard = self.runtime.enter();
        let listener = TcpListener::from_std(listener)?;
        self.runtime.spawn(accept_loop(shared, id, listener, rx));
        Ok(())
    }

    /// Kills broker `id`: its listener and connections close, its
    /// partitions move to live replicas.
    pub(crate) fn kill_broker(&self, id: i32) {
        if let Some(tx) = self
            .brokers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id)
        {
            let _ = tx.send(true);
        }
        self.lock().set_alive(id, false);
        self.changed();
    }

    /// Brings broker `id` back on its port.
    pub(crate) fn revive_broker(self: &Arc<Self>, id: i32) -> std::io::Result<()> {
        let addr = {
            let st = self.lock();
            let b = st.broker(id).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no broker {id}"))
            })?;
            format!("{}:{}", b.host, b.port)
        };
        let listener = bind_reusable(&addr)?;
        self.serve_broker(id, listener)?;
        self.lock().set_alive(id, true);
        self.changed();
        Ok(())
    }
}

/// Binds with SO_REUSEADDR, so a revived broker gets its port back while
/// old connections linger in TIME_WAIT.
pub(crate) fn bind_reusable(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let addr: SocketAddr = addr.parse().or_else(|_| {
        std::net::ToSocketAddrs::to_socket_addrs(addr)?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn accept_loop(
    shared: Arc<Shared>,
    broker: i32,
    listener: TcpListener,
    mut killed: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let killed = killed.clone();
                    tokio::spawn(async move {
                        serve_connection(shared, broker, stream, peer, killed).await;
                    });
                }
                Err(e) => {
                    tracing::debug!(broker, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = killed.changed() => return,
        }
    }
}

/// What to do after one request.
enum Outcome {
    Respond(Bytes),
    Nothing,
    Close,
    Stall,
}

async fn serve_connection(
    shared: Arc<Shared>,
    broker: i32,
    stream: TcpStream,
    peer: SocketAddr,
    mut killed: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut sasl = SaslSession::default();
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd) => f,
            _ = killed.changed() => return,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(reason) => {
                tracing::debug!(broker, %peer, reason, "closing connection");
                return;
            }
        };
        let outcome = tokio::select! {
            o = process(&shared, broker, &peer, &mut sasl, frame) => o,
            _ = killed.changed() => return,
        };
        match outcome {
            Outcome::Respond(bytes) => {
                let written = tokio::select! {
                    w = wr.write_all(&bytes) => w,
                    _ = killed.changed() => return,
                };
                if written.is_err() {
                    return;
                }
            }
            Outcome::Nothing => {}
            Outcome::Close => return,
            Outcome::Stall => {
                // Read and drop whatever comes until the client gives up.
                let mut sink = [0u8; 4096];
                loop {
                    tokio::select! {
                        r = rd.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { return },
                        _ = killed.changed() => return,
                    }
                }
            }
        }
    }
}

/// One frame, without its size prefix. `Ok(None)` at a clean end of stream.
async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
) -> Result<Option<Bytes>, &'static str> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(_) => return Err("read failed"),
    }
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| "negative frame size")?;
    if len > MAX_REQUEST_BYTES {
        return Err("frame larger than socket.request.max.bytes");
    }
    if len < 8 {
        return Err("frame shorter than a request header");
    }
    let mut buf = BytesMut::zeroed(len);
    rd.read_exact(&mut buf)
        .await
        .map_err(|_| "truncated frame")?;
    Ok(Some(buf.freeze()))
}

/// Why a frame is refused before it is served.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Close the connection (malformed, unknown or unserved); the reason is logged.
    Close(String),
    /// An ApiVersions version we do not speak: answer in v0 (KIP-511).
    ApiVersionsFallback(i32),
}

/// The mock's request decoding: header, served API and version, body.
/// Every broker connection runs exactly this on every frame.
pub(crate) fn decode_frame(frame: Bytes) -> Result<(RequestHeader, ApiKey, AnyRequest), Refused> {
    let limits = DecodeLimits::default();
    let mut r = Reader::with_limits(frame, limits);
    let header = RequestHeader::decode(&mut r)
        .map_err(|e| Refused::Close(format!("malformed request header: {e}")))?;
    let api = ApiKey::from_i16(header.api_key)
        .ok_or_else(|| Refused::Close(format!("unknown API key {}", header.api_key)))?;
    let version = header.api_version;
    let (lo, hi) = served_versions(api).ok_or_else(|| {
        Refused::Close(format!(
            "{} is not served by franz-mock (real broker only)",
            api.name()
        ))
    })?;
    if version < lo || version > hi {
        if api == ApiKey::ApiVersions {
            return Err(Refused::ApiVersionsFallback(header.correlation_id));
        }
        return Err(Refused::Close(format!(
            "{} v{version} is not served",
            api.name()
        )));
    }
    let req = AnyRequest::decode(header.api_key, version, r.into_rest(), limits)
        .map_err(|e| Refused::Close(format!("malformed {} v{version}: {e}", api.name())))?;
    Ok((header, api, req))
}

async fn process(
    shared: &Arc<Shared>,
    broker: i32,
    peer: &SocketAddr,
    sasl: &mut SaslSession,
    frame: Bytes,
) -> Outcome {
    let (header, api, req) = match decode_frame(frame) {
        Ok(decoded) => decoded,
        Err(Refused::ApiVersionsFallback(correlation_id)) => {
            let body = AnyResponse::ApiVersions(api_versions(ErrorCode::UnsupportedVersion));
            return encode(correlation_id, ApiKey::ApiVersions, 0, &body)
                .map_or(Outcome::Close, Outcome::Respond);
        }
        Err(Refused::Close(reason)) => {
            tracing::debug!(broker, %peer, reason, "closing connection");
            return Outcome::Close;
        }
    };
    let version = header.api_version;
    if !shared.sasl_users.is_empty()
        && !sasl.authenticated()
        && !matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        tracing::debug!(broker, %peer, api = api.name(), "request before SASL authentication");
        return Outcome::Close;
    }
    let actions = {
        let names = |id| shared.lock().topic_name(id).map(str::to_string);
        shared
            .controls()
            .matching(api, broker, version, &req, &names)
    };
    let mut scram = None;
    for action in actions {
        match action {
            ControlAction::Error(code) => {
                return match crate::error_response::error_response(&req, version, code) {
                    Some(body) => encode(header.correlation_id, api, version, &body)
                        .map_or(Outcome::Close, Outcome::Respond),
                    None => Outcome::Close,
                };
            }
            ControlAction::Delay(d) => tokio::time::sleep(d).await,
            ControlAction::Drop => return Outcome::Stall,
            ControlAction::CloseConnection => return Outcome::Close,
            ControlAction::MoveLeader {
                topic,
                partition,
                to,
            } => {
                shared.lock().move_leader(&topic, partition, to);
                shared.changed();
            }
            ControlAction::KillBroker(id) => {
                shared.kill_broker(id);
                if id == broker {
                    return Outcome::Close;
                }
            }
            ControlAction::ReviveBroker(id) => {
                if let Err(e) = shared.revive_broker(id) {
                    tracing::warn!(broker = id, error = %e, "revive failed");
                }
            }
            ControlAction::Observe => {}
            ControlAction::Scram(script) => scram = Some(script),
        }
    }
    let client_id = header.client_id.clone().unwrap_or_default();
    let body = match req {
        AnyRequest::SaslHandshake(r) => {
            let code = sasl.handshake(&r.mechanism, &shared.sasl_users);
            let mut mechanisms: Vec<String> = shared
                .sasl_users
                .iter()
                .map(|u| u.mechanism.name().to_string())
                .collect();
            mechanisms.sort();
            mechanisms.dedup();
            AnyResponse::SaslHandshake(m::SaslHandshakeResponse {
                error_code: code.code(),
                mechanisms,
                ..Default::default()
            })
        }
        AnyRequest::SaslAuthenticate(r) => {
            match sasl.authenticate(&r.auth_bytes, &shared.sasl_users, scram) {
                Ok(bytes) => AnyResponse::SaslAuthenticate(m::SaslAuthenticateResponse {
                    auth_bytes: Bytes::from(bytes),
                    ..Default::default()
                }),
                Err((code, message)) => {
                    let body = AnyResponse::SaslAuthenticate(m::SaslAuthenticateResponse {
                        error_code: code.code(),
                        error_message: Some(message),
                        ..Default::default()
                    });
                    // Kafka answers, then closes: the client reads the reason.
                    return encode(header.correlation_id, api, version, &body)
                        .map_or(Outcome::Close, Outcome::Respond);
                }
            }
        }
        req => {
            let caller = Caller {
                broker,
                client_id,
                client_host: format!("/{}", peer.ip()),
                version,
            };
            match handle(shared, &caller, req).await {
                Some(body) => body,
                None => return Outcome::Nothing,
            }
        }
    };
    match encode(header.correlation_id, api, version, &body) {
        Some(bytes) => Outcome::Respond(bytes),
        None => Outcome::Close,
    }
}

/// Size prefix, response header and body.
fn encode(correlation_id: i32, api: ApiKey, version: i16, body: &AnyResponse) -> Option<Bytes> {
    let mut w = BytesMut::with_capacity(256);
    w.extend_from_slice(&[0; 4]);
    let header = ResponseHeader {
        correlation_id,
        unknown_tagged_fields: Vec::new(),
    };
    if let Err(e) = header.encode(&mut w, response_header_version(api, version)) {
        tracing::error!(api = api.name(), version, error = %e, "franz-mock could not encode a response header");
        return None;
    }
    if let Err(e) = body.encode(&mut w, version) {
        tracing::error!(api = api.name(), version, error = %e, "franz-mock could not encode a response");
        return None;
    }
    let len = u32::try_from(w.len() - 4).ok()?;
    w[..4].copy_from_slice(&len.to_be_bytes());
    Some(w.freeze())
}
