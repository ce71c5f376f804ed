//! Control hooks, after franz-go kfake's `ControlKey`: a test intercepts
//! requests by API key (optionally by topic, partition and broker), once,
//! a number of times or always, and makes the cluster do something a real
//! broker does only by chance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use franz_protocol::messages::{AnyRequest, ApiKey};
use franz_protocol::{ErrorCode, Uuid};

/// What a matching request makes the cluster do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ControlAction {
    /// Answer with this error code, without serving the request (every
    /// partition or group in the answer carries it). APIs whose answer has
    /// no error field get their connection closed instead.
    Error(ErrorCode),
    /// Serve the request after this delay.
    Delay(Duration),
    /// Never answer. The connection stays open and answers nothing more,
    /// as a broker whose request queue is stuck.
    Drop,
    /// Close the connection instead of answering.
    CloseConnection,
    /// Move the partition's leadership to `to` (a new leader epoch), then
    /// serve the request.
    MoveLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The new leader's broker id.
        to: i32,
    },
    /// Kill this broker (its port refuses connections, its partitions move
    /// to live replicas); the request dies with its connection if it was
    /// sent to that broker.
    KillBroker(i32),
    /// Bring a killed broker back on its port, then serve the request.
    ReviveBroker(i32),
    /// Only record the request (see [`ControlHandle::requests`]).
    Observe,
    /// Replace parts of the server's SCRAM messages on this exchange.
    Scram(ScramScript),
}

/// Overrides for the server side of a SCRAM exchange, for hostile-server
/// tests: each `Some` replaces what an honest server would send.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ScramScript {
    /// The iteration count in server-first (`i=`).
    pub iterations: Option<u64>,
    /// The whole nonce in server-first (`r=`), normally the client's nonce
    /// plus the server's.
    pub nonce: Option<String>,
    /// The salt in server-first (`s=`, raw bytes, base64-encoded on the wire).
    pub salt: Option<Vec<u8>>,
    /// The server signature in server-final (`v=`, raw bytes).
    pub server_signature: Option<Vec<u8>>,
    /// The whole server-first message, verbatim.
    pub server_first: Option<String>,
    /// The whole server-final message, verbatim.
    pub server_final: Option<String>,
}

impl ScramScript {
    /// An honest exchange except for the iteration count.
    pub fn iterations(n: u64) -> Self {
        Self {
            iterations: Some(n),
            ..Self::default()
        }
    }

    /// An honest exchange except for the server signature.
    pub fn server_signature(sig: Vec<u8>) -> Self {
        Self {
            server_signature: Some(sig),
            ..Self::default()
        }
    }

    /// An honest exchange except for the nonce.
    pub fn nonce(nonce: impl Into<String>) -> Self {
        Self {
            nonce: Some(nonce.into()),
            ..Self::default()
        }
    }
}

/// A hook: which requests it matches, how often, and what it does.
///
/// ```
/// use franz_mock::{Control, ErrorCode};
/// use franz_protocol::ApiKey;
/// // The next Produce to orders/0 is refused as if the leader had moved.
/// let c = Control::on(ApiKey::Produce)
///     .topic("orders")
///     .partition(0)
///     .once()
///     .respond_error(ErrorCode::NotLeaderOrFollower);
/// # let _ = c;
/// ```
#[derive(Debug, Clone)]
pub struct Control {
    pub(crate) api: ApiKey,
    pub(crate) topic: Option<String>,
    pub(crate) partition: Option<i32>,
    pub(crate) broker: Option<i32>,
    pub(crate) times: Option<usize>,
    pub(crate) action: ControlAction,
}

impl Control {
    /// A persistent hook on `api` that only observes; narrow it and pick an
    /// action with the builder methods.
    pub fn on(api: ApiKey) -> Self {
        Self {
            api,
            topic: None,
            partition: None,
            broker: None,
            times: None,
            action: ControlAction::Observe,
        }
    }

    /// Only requests that name this topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Only requests that name this partition (of the topic, if one is set).
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Only requests sent to this broker.
    pub fn broker(mut self, broker: i32) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Fire once, then retire.
    pub fn once(self) -> Self {
        self.times(1)
    }

    /// Fire `n` times, then retire.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    /// Fire on every match (the default).
    pub fn always(mut self) -> Self {
        self.times = None;
        self
    }

    /// Answer with `code`.
    pub fn respond_error(self, code: ErrorCode) -> Self {
        self.action(ControlAction::Error(code))
    }

    /// Serve after `delay`.
    pub fn delay(self, delay: Duration) -> Self {
        self.action(ControlAction::Delay(delay))
    }

    /// Never answer (the connection stalls).
    pub fn drop_request(self) -> Self {
        self.action(ControlAction::Drop)
    }

    /// Close the connection.
    pub fn close_connection(self) -> Self {
        self.action(ControlAction::CloseConnection)
    }

    /// Move a leader, then serve.
    pub fn move_leader(self, topic: impl Into<String>, partition: i32, to: i32) -> Self {
        self.action(ControlAction::MoveLeader {
            topic: topic.into(),
            partition,
            to,
        })
    }

    /// Kill a broker.
    pub fn kill_broker(self, broker: i32) -> Self {
        self.action(ControlAction::KillBroker(broker))
    }

    /// Revive a broker, then serve.
    pub fn revive_broker(self, broker: i32) -> Self {
        self.action(ControlAction::ReviveBroker(broker))
    }

    /// Script the server's SCRAM messages (matches SaslAuthenticate).
    pub fn script_scram(mut self, script: ScramScript) -> Self {
        self.api = ApiKey::SaslAuthenticate;
        self.action(ControlAction::Scram(script))
    }

    /// Any action.
    pub fn action(mut self, action: ControlAction) -> Self {
        self.action = action;
        self
    }
}

/// A request a hook saw.
#[derive(Debug, Clone)]
pub struct ObservedRequest {
    /// The broker it was sent to.
    pub broker: i32,
    /// Its API version.
    pub version: i16,
    /// The decoded request.
    pub request: AnyRequest,
}

/// A registered hook: how often it fired and what it saw.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    pub(crate) id: u64,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<ObservedRequest>>>,
}

impl ControlHandle {
    /// How many requests it matched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The requests it matched, oldest first.
    pub fn requests(&self) -> Vec<ObservedRequest> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A hook in the cluster's table.
#[derive(Debug)]
pub(crate) struct ControlEntry {
    pub(crate) control: Control,
    pub(crate) handle: ControlHandle,
}

/// The cluster's hooks.
#[derive(Debug, Default)]
pub(crate) struct Controls {
    entries: Vec<ControlEntry>,
    next_id: u64,
}

impl Controls {
    pub(crate) fn add(&mut self, control: Control) -> ControlHandle {
        self.next_id += 1;
        let handle = ControlHandle {
            id: self.next_id,
            hits: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        self.entries.push(ControlEntry {
            control,
            handle: handle.clone(),
        });
        handle
    }

    pub(crate) fn remove(&mut self, id: u64) {
        self.entries.retain(|e| e.handle.id != id);
    }

    /// The actions of every hook this request matches, in registration
    /// order; hooks that ran out retire.
    pub(crate) fn matching(
        &mut self,
        api: ApiKey,
        broker: i32,
        version: i16,
        req: &AnyRequest,
        names: &dyn Fn(Uuid) -> Option<String>,
    ) -> Vec<ControlAction> {
        let mut out = Vec::new();
        let mut partitions: Option<Vec<(String, Option<i32>)>> = None;
        for e in &mut self.entries {
            let c = &e.control;
            if c.api != api || c.broker.is_some_and(|b| b != broker) || c.times == Some(0) {
                continue;
            }
            if c.topic.is_some() || c.partition.is_some() {
                let tps = partitions.get_or_insert_with(|| request_partitions(req, names));
                let hit = tps.iter().any(|(t, p)| {
                    c.topic.as_ref().is_none_or(|want| want == t)
                        && c.partition.is_none_or(|want| p.is_none_or(|p| p == want))
                });
                if !hit {
                    continue;
                }
            }
            if let Some(n) = &mut e.control.times {
                *n -= 1;
            }
            e.handle.hits.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut seen) = e.handle.seen.lock() {
                seen.push(ObservedRequest {
                    broker,
                    version,
                    request: req.clone(),
                });
            }
            out.push(e.control.action.clone());
        }
        self.entries.retain(|e| e.control.times != Some(0));
        out
    }
}

/// The topics and partitions a request names (`None` partition: the whole topic).
fn request_partitions(
    req: &AnyRequest,
    names: &dyn Fn(Uuid) -> Option<String>,
) -> Vec<(String, Option<i32>)> {
    let mut out = Vec::new();
    match req {
        AnyRequest::Produce(r) => {
            for t in &r.topic_data {
                out.extend(
                    t.partition_data
                        .iter()
                        .map(|p| (t.name.clone(), Some(p.index))),
                );
            }
        }
        AnyRequest::Fetch(r) => {
            for t in &r.topics {
                let name = if t.topic.is_empty() {
                    names(t.topic_id).unwrap_or_default()
                } else {
                    t.topic.clone()
                };
                out.extend(
                    t.partitions
                        .iter()
                        .map(|p| (name.clone(), Some(p.partition))),
                );
            }
        }
        AnyRequest::ListOffsets(r) => {
            for t in &r.topics {
                out.extend(
                    t.partitions
                        .iter()
                        .map(|p| (t.name.clone(), Some(p.partition_index))),
                );
            }
        }
        AnyRequest::Metadata(r) => {
            for t in r.topics.iter().flatten() {
                if let Some(n) = t.name.clone().or_else(|| names(t.topic_id)) {
                    out.push((n, None));
                }
            }
        }
        AnyRequest::OffsetCommit(r) => {
            for t in &r.topics {
                out.extend(
                    t.partitions
                        .iter()
                        .map(|p| (t.name.clone(), Some(p.partition_index))),
                );
            }
        }
        AnyRequest::TxnOffsetCommit(r) => {
            for t in &r.topics {
                out.extend(
                    t.partitions
                        .iter()
                        .map(|p| (t.name.clone(), Some(p.partition_index))),
                );
            }
        }
        AnyRequest::AddPartitionsToTxn(r) => {
            for t in &r.v3_and_below_topics {
                out.extend(t.partitions.iter().map(|p| (t.name.clone(), Some(*p))));
            }
        }
        AnyRequest::OffsetForLeaderEpoch(r) => {
            for t in &r.topics {
                out.extend(
                    t.partitions
                        .iter()
                        .map(|p| (t.topic.clone(), Some(p.partition))),
                );
            }
        }
        AnyRequest::CreateTopics(r) => out.extend(r.topics.iter().map(|t| (t.name.clone(), None))),
        AnyRequest::DeleteTopics(r) => {
            out.extend(r.topic_names.iter().map(|t| (t.clone(), None)));
            out.extend(r.topics.iter().filter_map(|t| {
                t.name
                    .clone()
                    .or_else(|| names(t.topic_id))
                    .map(|n| (n, None))
            }));
        }
        AnyRequest::CreatePartitions(r) => {
            out.extend(r.topics.iter().map(|t| (t.name.clone(), None)))
        }
        _ => {}
    }
    out
}
