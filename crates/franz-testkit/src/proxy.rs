//! `FaultProxy`: a Kafka-aware TCP proxy that a broker advertises as its own
//! address, so every client connection to that broker passes through it.
//!
//! It reads whole frames in both directions. Requests are forwarded untouched
//! and their correlation id and API key remembered; each response is matched
//! back to its API key, so a test can say "drop the next Produce response":
//! the broker has processed and logged the request, and the client never
//! hears back. That makes "written, but the response was lost" reproducible,
//! which killing a leader rarely is.
//!
//! Controls (all take effect at once, for open and future connections):
//! drop the next N responses to an API key, delay responses, cut every open
//! connection with a TCP RST, and black-hole traffic (bytes are accepted and
//! never answered). Like franz-go's kfake `ControlKey`, a test can also hand
//! every response to one API key to a function that rewrites it (an error
//! code for one partition, a session error), do the same with requests
//! before the broker sees them, and record the requests to an API key to
//! assert on their bytes. The proxy itself knows no message
//! layout: the hook decodes and re-encodes with whatever codec the test uses.
//!
//! The proxy runs on plain threads, not on a tokio runtime, so it keeps
//! working across `#[tokio::test]` runtimes and never competes with the code
//! under test for an executor.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{HarnessError, IoContext};

/// Kafka API keys, for the proxy's per-API rules.
pub mod api_key {
    /// Produce.
    pub const PRODUCE: i16 = 0;
    /// Fetch.
    pub const FETCH: i16 = 1;
    /// ListOffsets.
    pub const LIST_OFFSETS: i16 = 2;
    /// Metadata.
    pub const METADATA: i16 = 3;
    /// OffsetCommit.
    pub const OFFSET_COMMIT: i16 = 8;
    /// OffsetFetch.
    pub const OFFSET_FETCH: i16 = 9;
    /// FindCoordinator.
    pub const FIND_COORDINATOR: i16 = 10;
    /// JoinGroup.
    pub const JOIN_GROUP: i16 = 11;
    /// Heartbeat.
    pub const HEARTBEAT: i16 = 12;
    /// SyncGroup.
    pub const SYNC_GROUP: i16 = 14;
    /// ApiVersions.
    pub const API_VERSIONS: i16 = 18;
    /// InitProducerId.
    pub const INIT_PRODUCER_ID: i16 = 22;
    /// ConsumerGroupHeartbeat (KIP-848).
    pub const CONSUMER_GROUP_HEARTBEAT: i16 = 68;
}

/// Frames larger than this are treated as a protocol error by the proxy.
const MAX_FRAME: usize = 256 << 20;
/// How often blocked reads wake up to look at the control flags.
const POLL: Duration = Duration::from_millis(25);

/// A fault-injecting proxy in front of one broker listener.
///
/// ```no_run
/// use franz_testkit::{FaultProxy, proxy::api_key};
/// # fn main() -> Result<(), franz_testkit::HarnessError> {
/// let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), "127.0.0.1:19092".parse().unwrap())?;
/// proxy.drop_next_response(api_key::PRODUCE);
/// // ... produce through proxy.addr(); the broker writes the batch, the client
/// // never sees the response and must retry.
/// assert_eq!(proxy.dropped_responses(api_key::PRODUCE), 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    upstream: Mutex<SocketAddr>,
    rules: Mutex<Rules>,
    connections: Mutex<Vec<Arc<ConnFlags>>>,
    closing: AtomicBool,
    accepted: AtomicU64,
}

/// A response rewrite hook: given the request's API version and the
/// response frame (after the size prefix: correlation id, header, body),
/// returns a replacement frame, or `None` to pass the response on as it is.
pub type ResponseRewrite = Box<dyn FnMut(i16, &[u8]) -> Option<Vec<u8>> + Send>;

/// A request rewrite hook: given the request's API version and the request
/// frame (after the size prefix: header, then body), returns a replacement
/// frame, or `None` to forward the request as it is. The broker sees only
/// the replacement: a test can make the broker refuse a batch for real (a
/// sequence gap, say) rather than only rewrite the answer.
pub type RequestRewrite = Box<dyn FnMut(i16, &[u8]) -> Option<Vec<u8>> + Send>;

/// A request the proxy recorded (see [`FaultProxy::record_requests`]).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request's API version.
    pub api_version: i16,
    /// The frame after the size prefix: request header, then body.
    pub frame: Vec<u8>,
}

#[derive(Default)]
struct Rules {
    drop_next: HashMap<i16, u32>,
    dropped: HashMap<i16, u64>,
    delay_all: Option<Duration>,
    delay_api: HashMap<i16, Duration>,
    black_hole: bool,
    stop_reading: bool,
    cut_next: HashMap<i16, u32>,
    rewrite: HashMap<i16, ResponseRewrite>,
    rewritten: HashMap<i16, u64>,
    rewrite_requests: HashMap<i16, RequestRewrite>,
    rewritten_requests: HashMap<i16, u64>,
    record: HashSet<i16>,
    recorded: HashMap<i16, Vec<RecordedRequest>>,
    swallow: HashSet<(i16, String)>,
    swallowed: HashMap<i16, u64>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("drop_next", &self.drop_next)
            .field("delay_all", &self.delay_all)
            .field("black_hole", &self.black_hole)
            .field("rewrite", &self.rewrite.keys().collect::<Vec<_>>())
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct ConnFlags {
    cut: AtomicBool,
    closed: AtomicBool,
}

impl ConnFlags {
    fn stop(&self) -> bool {
        self.cut.load(Ordering::Relaxed) || self.closed.load(Ordering::Relaxed)
    }
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `upstream`.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind(listen).map_err(|e| {
            HarnessError::PortClash(format!("fault proxy cannot bind {listen}: {e}"))
        })?;
        let addr = listener.local_addr().ctx(|| "fault proxy address".into())?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            rules: Mutex::new(Rules::default()),
            connections: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("fault-proxy-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &shared))
                .ctx(|| "spawning the fault proxy".into())?
        };
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker address behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards new connections to `upstream` from now on (connections
    /// already open keep theirs): a load balancer or DNS name in front of
    /// a cluster that moved.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = upstream;
    }

    /// Drops the next response to `api_key` (after the broker processed the request).
    pub fn drop_next_response(&self, api_key: i16) {
        self.drop_responses(api_key, 1);
    }

    /// Drops the next `count` responses to `api_key`.
    pub fn drop_responses(&self, api_key: i16, count: u32) {
        *self.rules().drop_next.entry(api_key).or_default() += count;
    }

    /// How many responses to `api_key` have been dropped so far.
    pub fn dropped_responses(&self, api_key: i16) -> u64 {
        self.rules().dropped.get(&api_key).copied().unwrap_or(0)
    }

    /// How many drops of `api_key` are still armed.
    pub fn pending_drops(&self, api_key: i16) -> u32 {
        self.rules().drop_next.get(&api_key).copied().unwrap_or(0)
    }

    /// Delays every response by `delay` (`None` removes the delay).
    pub fn delay_responses(&self, delay: Option<Duration>) {
        self.rules().delay_all = delay;
    }

    /// Delays responses to one API key (`None` removes that delay).
    pub fn delay_responses_to(&self, api_key: i16, delay: Option<Duration>) {
        let mut rules = self.rules();
        match delay {
            Some(d) => rules.delay_api.insert(api_key, d),
            None => rules.delay_api.remove(&api_key),
        };
    }

    /// Accepts and swallows all traffic while `on`: clients see a live socket
    /// that never answers. Bytes swallowed meanwhile are gone for good.
    pub fn set_black_hole(&self, on: bool) {
        self.rules().black_hole = on;
    }

    /// Resets every open connection with a TCP RST; returns how many it cut.
    /// New connections are accepted as usual.
    pub fn cut_connections(&self) -> usize {
        let conns = self.connections();
        let live: Vec<_> = conns
            .iter()
            .filter(|c| !c.closed.load(Ordering::Relaxed))
            .collect();
        for c in &live {
            c.cut.store(true, Ordering::Relaxed);
        }
        live.len()
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        let mut conns = self.connections();
        conns.retain(|c| !c.closed.load(Ordering::Relaxed));
        conns.len()
    }

    /// Connections accepted since the proxy started.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Cuts the connection (TCP RST) carrying the next response to
    /// `api_key`, instead of forwarding it: the client's request is lost
    /// mid-flight, as when a broker dies while answering.
    pub fn cut_next_response(&self, api_key: i16) {
        *self.rules().cut_next.entry(api_key).or_default() += 1;
    }

    /// Hands every response to `api_key` to `rewrite`, which may replace
    /// it (see [`ResponseRewrite`]). Replaces an earlier hook for the key.
    pub fn rewrite_responses(
        &self,
        api_key: i16,
        rewrite: impl FnMut(i16, &[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) {
        self.rules().rewrite.insert(api_key, Box::new(rewrite));
    }

    /// Removes the rewrite hooks (responses and requests) for `api_key`.
    pub fn stop_rewriting(&self, api_key: i16) {
        let mut rules = self.rules();
        rules.rewrite.remove(&api_key);
        rules.rewrite_requests.remove(&api_key);
    }

    /// Hands every request to `api_key` to `rewrite` before it is forwarded
    /// (see [`RequestRewrite`]). Replaces an earlier request hook for the key.
    pub fn rewrite_requests(
        &self,
        api_key: i16,
        rewrite: impl FnMut(i16, &[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) {
        self.rules()
            .rewrite_requests
            .insert(api_key, Box::new(rewrite));
    }

    /// How many requests to `api_key` a hook has replaced so far.
    pub fn rewritten_requests(&self, api_key: i16) -> u64 {
        self.rules()
            .rewritten_requests
            .get(&api_key)
            .copied()
            .unwrap_or(0)
    }

    /// How many responses to `api_key` a hook has replaced so far.
    pub fn rewritten_responses(&self, api_key: i16) -> u64 {
        self.rules().rewritten.get(&api_key).copied().unwrap_or(0)
    }

    /// Starts recording the requests to `api_key` (kept until taken).
    pub fn record_requests(&self, api_key: i16) {
        self.rules().record.insert(api_key);
    }

    /// The requests to `api_key` recorded since the last call, in order.
    pub fn take_recorded_requests(&self, api_key: i16) -> Vec<RecordedRequest> {
        self.rules().recorded.remove(&api_key).unwrap_or_default()
    }

    /// Stops forwarding requests to `api_key` from clients whose header
    /// names `client_id`: the broker never sees them (nothing reaches the
    /// log) and the client waits for a response that never comes, while
    /// every other client and API goes on. One client's path cut, the rest
    /// of the cluster healthy.
    pub fn swallow_requests_from(&self, api_key: i16, client_id: &str) {
        self.rules()
            .swallow
            .insert((api_key, client_id.to_string()));
    }

    /// How many requests to `api_key` were swallowed.
    pub fn swallowed_requests(&self, api_key: i16) -> u64 {
        self.rules().swallowed.get(&api_key).copied().unwrap_or(0)
    }

    /// Stops (or resumes) reading what clients send: the proxy's receive
    /// buffer fills, TCP's window closes, and a client's writes block, as
    /// against a broker that stopped reading (a zero window).
    pub fn stop_reading(&self, on: bool) {
        self.rules().stop_reading = on;
    }

    /// Removes every rule (drops, delays, black hole, rewrites, recording,
    /// swallowing); counters stay.
    pub fn clear_faults(&self) {
        let mut rules = self.rules();
        rules.swallow.clear();
        rules.rewrite.clear();
        rules.rewrite_requests.clear();
        rules.record.clear();
        rules.cut_next.clear();
        rules.drop_next.clear();
        rules.delay_all = None;
        rules.delay_api.clear();
        rules.black_hole = false;
        rules.stop_reading = false;
    }

    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.shared.rules()
    }

    fn connections(&self) -> MutexGuard<'_, Vec<Arc<ConnFlags>>> {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        for c in self.connections().iter() {
            c.closed.store(true, Ordering::Relaxed);
        }
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.closing.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let target = *shared.upstream.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            // The broker is down: the client sees its connection closed, as it
            // would connecting to the broker itself.
            continue;
        };
        let flags = Arc::new(ConnFlags::default());
        {
            let mut conns = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            conns.retain(|c| !c.closed.load(Ordering::Relaxed));
            conns.push(Arc::clone(&flags));
        }
        if let Err(e) = spawn_pumps(client, upstream, shared, flags) {
            tracing::warn!(error = %e, "fault proxy could not start a connection");
        }
    }
}

fn spawn_pumps(
    client: TcpStream,
    upstream: TcpStream,
    shared: &Arc<Shared>,
    flags: Arc<ConnFlags>,
) -> io::Result<()> {
    for s in [&client, &upstream] {
        s.set_read_timeout(Some(POLL))?;
        s.set_nodelay(true)?;
    }
    let in_flight: Arc<Mutex<HashMap<i32, (i16, i16)>>> = Arc::default();
    let (c_read, c_write) = (client.try_clone()?, client);
    let (u_read, u_write) = (upstream.try_clone()?, upstream);
    {
        let (shared, flags, in_flight) = (
            Arc::clone(shared),
            Arc::clone(&flags),
            Arc::clone(&in_flight),
        );
        std::thread::Builder::new()
            .name("fault-proxy-req".into())
            .spawn(move || pump_requests(c_read, u_write, &shared, &flags, &in_flight))?;
    }
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("fault-proxy-resp".into())
        .spawn(move || pump_responses(u_read, c_write, &shared, &flags, &in_flight))?;
    Ok(())
}

/// Client to broker: remember (correlation id → API key), then forward.
fn pump_requests(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: &Shared,
    flags: &ConnFlags,
    in_flight: &Mutex<HashMap<i32, (i16, i16)>>,
) {
    let mut reader = FrameReader::default();
    loop {
        while shared.rules().stop_reading && !flags.stop() {
            std::thread::sleep(POLL);
        }
        let Ok(Some(mut frame)) = reader.next(&mut from, flags) else {
            break;
        };
        let mut api = None;
        if frame.len() >= 12 {
            let api_key = i16::from_be_bytes([frame[4], frame[5]]);
            let api_version = i16::from_be_bytes([frame[6], frame[7]]);
            let correlation = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(correlation, (api_key, api_version));
            api = Some((api_key, api_version));
        }
        {
            let mut rules = shared.rules();
            if let Some((key, version)) = api
                && rules.record.contains(&key)
            {
                rules
                    .recorded
                    .entry(key)
                    .or_default()
                    .push(RecordedRequest {
                        api_version: version,
                        frame: frame[4..].to_vec(),
                    });
            }
            if rules.black_hole {
                continue;
            }
            if let Some((key, version)) = api
                && let Some(rewrite) = rules.rewrite_requests.get_mut(&key)
                && let Some(body) = rewrite(version, &frame[4..])
                && let Ok(len) = i32::try_from(body.len())
            {
                frame = len.to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                *rules.rewritten_requests.entry(key).or_default() += 1;
            }
            if let Some((key, _)) = api
                && !rules.swallow.is_empty()
                && request_client_id(&frame)
                    .is_some_and(|id| rules.swallow.contains(&(key, id.to_string())))
            {
                *rules.swallowed.entry(key).or_default() += 1;
                continue;
            }
        }
        if to.write_all(&frame).is_err() {
            break;
        }
    }
    finish(&from, &to, flags);
}

/// The client id of a request frame (size prefix included): the nullable
/// string after the correlation id, in every request header version.
fn request_client_id(frame: &[u8]) -> Option<&str> {
    let len = i16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let len = usize::try_from(len).ok()?;
    std::str::from_utf8(frame.get(14..14 + len)?).ok()
}

/// Broker to client: apply drop, delay and black-hole rules per response.
fn pump_responses(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: &Shared,
    flags: &ConnFlags,
    in_flight: &Mutex<HashMap<i32, (i16, i16)>>,
) {
    let mut reader = FrameReader::default();
    while let Ok(Some(mut frame)) = reader.next(&mut from, flags) {
        let api = (frame.len() >= 8)
            .then(|| i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]))
            .and_then(|corr| {
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&corr)
            });
        let api_key = api.map(|(key, _)| key);
        let delay = {
            let mut rules = shared.rules();
            if rules.black_hole {
                continue;
            }
            if let Some(key) = api_key
                && let Some(left) = rules.cut_next.get_mut(&key).filter(|n| **n > 0)
            {
                *left -= 1;
                tracing::info!(api_key = key, "fault proxy cut a connection at a response");
                flags.cut.store(true, Ordering::Relaxed);
                break;
            }
            if let Some((key, version)) = api
                && let Some(rewrite) = rules.rewrite.get_mut(&key)
                && let Some(body) = rewrite(version, &frame[4..])
                && let Ok(len) = i32::try_from(body.len())
            {
                frame = len.to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                *rules.rewritten.entry(key).or_default() += 1;
            }
            if let Some(key) = api_key
                && let Some(left) = rules.drop_next.get_mut(&key).filter(|n| **n > 0)
            {
                *left -= 1;
                *rules.dropped.entry(key).or_default() += 1;
                tracing::info!(api_key = key, "fault proxy dropped a response");
                continue;
            }
            api_key
                .and_then(|k| rules.delay_api.get(&k).copied())
                .or(rules.delay_all)
        };
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        if to.write_all(&frame).is_err() {
            break;
        }
    }
    // `to` is the client socket here.
    finish(&to, &from, flags);
}

/// Closes a proxied connection. After `cut_connections` the client socket is
/// closed with SO_LINGER 0, which makes the kernel send RST instead of FIN.
fn finish(client_side: &TcpStream, upstream_side: &TcpStream, flags: &ConnFlags) {
    if flags.cut.load(Ordering::Relaxed) {
        let _ = socket2::SockRef::from(client_side).set_linger(Some(Duration::ZERO));
        // Both pump threads drop their handles; the last close sends the RST.
        // No shutdown() here: it would send a FIN first.
    } else {
        let _ = client_side.shutdown(Shutdown::Both);
    }
    let _ = upstream_side.shutdown(Shutdown::Both);
    flags.closed.store(true, Ordering::Relaxed);
}

/// Reassembles size-prefixed Kafka frames from a socket with a read timeout.
#[derive(Default)]
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next whole frame (size prefix included), or `None` at EOF or when
    /// the connection has been told to stop.
    fn next(&mut self, stream: &mut TcpStream, flags: &ConnFlags) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= MAX_FRAME)
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "bad frame length")
                    })?;
                if self.buf.len() >= 4 + len {
                    let rest = self.buf.split_off(4 + len);
                    return Ok(Some(std::mem::replace(&mut self.buf, rest)));
                }
            }
            if flags.stop() {
                return Ok(None);
            }
            // A plain read is right here: any amount is welcome and the frame
            // boundary is tracked above.
            #[allow(clippy::disallowed_methods)]
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
