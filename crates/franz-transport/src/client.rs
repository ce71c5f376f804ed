//! The requesting side (NestJS's `ClientKafka`): `send` to message patterns
//! and wait for the reply, `emit` events.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use franz_consumer::assignor::RangeAssignor;
use franz_consumer::{ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::TransportError;
use crate::nest::{self, NestValue, OutgoingRecord, ReplyMessage};

/// Client settings.
#[derive(Debug, Clone)]
pub struct TransportClientConfig {
    /// Bootstrap servers, security and the rest of the client settings.
    pub consumer: ConsumerConfig,
    /// The producer for requests and events.
    pub producer: ProducerConfig,
    /// The group of this client's reply consumer. Every client instance in
    /// it gets its own reply partitions, so the reply topics need at least
    /// as many partitions as instances (as with NestJS).
    pub reply_group: String,
    /// How long `send` waits for a reply (NestJS has no default timeout).
    pub request_timeout: Duration,
}

impl TransportClientConfig {
    /// Defaults for `bootstrap_servers`, with reply group `group`.
    pub fn new(bootstrap_servers: &str, reply_group: &str) -> Self {
        Self {
            // Replies are written after the request; a new reply partition
            // is read from its end, so earlier instances' replies are skipped.
            consumer: consumer_config(bootstrap_servers),
            producer: transport_producer(bootstrap_servers),
            reply_group: reply_group.to_string(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

type Waiter = oneshot::Sender<Result<Vec<NestValue>, TransportError>>;

/// Requests waiting for replies, by correlation id, with the values that
/// have arrived so far (a NestJS handler may stream several).
#[derive(Debug, Default)]
struct ReplyRouter {
    pending: HashMap<String, (Waiter, Vec<NestValue>)>,
    /// Lowest assigned partition per reply topic (what NestJS sends as
    /// `kafka_replyPartition`).
    reply_partitions: BTreeMap<String, i32>,
}

impl ReplyRouter {
    /// Routes one reply message; unknown ids (replies for other instances
    /// sharing a partition, or for requests that timed out) are dropped.
    fn route(&mut self, id: &str, msg: Result<ReplyMessage, crate::nest::PayloadError>) {
        let Some((_, values)) = self.pending.get_mut(id) else {
            return;
        };
        let done = match msg {
            Err(e) => Some(Err(TransportError::Payload(e))),
            Ok(ReplyMessage::Error(e)) => Some(Err(TransportError::Remote(e))),
            Ok(ReplyMessage::Value { value, last }) => {
                // A stream that completes after its last value was flushed
                // ends with an extra null (§3); it is not a value.
                if !(last && value == NestValue::Null && !values.is_empty()) {
                    values.push(value);
                }
                last.then(|| Ok(std::mem::take(values)))
            }
        };
        if let Some(result) = done
            && let Some((waiter, _)) = self.pending.remove(id)
        {
            let _ = waiter.send(result);
        }
    }
}

/// A NestJS-compatible client: request-response over `<pattern>.reply`
/// matched by correlation id, and fire-and-forget events. Keys go through
/// the producer's Java-compatible murmur2 partitioner, as KafkaJS does.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use franz_transport::{TransportClient, TransportClientConfig};
/// let config = TransportClientConfig::new("127.0.0.1:9092", "gateway-replies");
/// let client = TransportClient::connect(config, &["billing.charge"]).await?;
/// let receipt: serde_json::Value =
///     client.send("billing.charge", &serde_json::json!({"order": 7, "cents": 1250})).await?;
/// client.emit("orders.created", &serde_json::json!({"order": 7})).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TransportClient {
    producer: Producer,
    router: Arc<Mutex<ReplyRouter>>,
    request_timeout: Duration,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<Result<(), TransportError>>>,
}

impl TransportClient {
    /// Connects and joins the reply group for the `<pattern>.reply` topics
    /// of `patterns`; returns once a reply partition of each is assigned.
    pub async fn connect(
        config: TransportClientConfig,
        patterns: &[&str],
    ) -> Result<Self, TransportError> {
        let producer = Producer::new(config.producer.clone()).await?;
        let router = Arc::new(Mutex::new(ReplyRouter::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = if patterns.is_empty() {
            None
        } else {
            let topics: Vec<String> = patterns.iter().map(|p| nest::reply_topic(p)).collect();
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let mut group = GroupConfig::new(config.reply_group.as_str());
            group.assignors = vec![Arc::new(RangeAssignor)];
            group.heartbeat_interval = Duration::from_secs(1);
            group.session_timeout = Duration::from_secs(10);
            let mut consumer = GroupConsumer::new(config.consumer.clone(), group, &refs).await?;
            // Join before the first request, so the reply partition is known.
            let deadline = tokio::time::Instant::now() + config.request_timeout;
            loop {
                consumer.poll(Duration::from_millis(100)).await?;
                let assigned = publish_partitions(&router, &consumer);
                if topics.iter().all(|t| assigned.contains_key(t)) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    let missing = topics
                        .iter()
                        .find(|t| !assigned.contains_key(*t))
                        .cloned()
                        .unwrap_or_default();
                    return Err(TransportError::NoReplyPartition(missing));
                }
            }
            Some(tokio::spawn(read_replies(
                consumer,
                Arc::clone(&router),
                Arc::clone(&stop),
            )))
        };
        Ok(Self {
            producer,
            router,
            request_timeout: config.request_timeout,
            stop,
            reader,
        })
    }

    /// Sends `payload` to message pattern `pattern` and returns the reply.
    /// For a handler that streams several values, this is the last one.
    pub async fn send<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        pattern: &str,
        payload: &T,
    ) -> Result<R, TransportError> {
        let values = self.request(pattern, None, payload).await?;
        let last = values.last().cloned().unwrap_or(NestValue::Null);
        Ok(last.parse()?)
    }

    /// [`send`](Self::send) with a key: the request lands on the partition
    /// murmur2 gives the key, so requests for one key are handled in order.
    pub async fn send_keyed<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        pattern: &str,
        key: impl Into<Bytes>,
        payload: &T,
    ) -> Result<R, TransportError> {
        let values = self.request(pattern, Some(key.into()), payload).await?;
        let last = values.last().cloned().unwrap_or(NestValue::Null);
        Ok(last.parse()?)
    }

    /// Every value a streaming handler sent, in order.
    pub async fn send_stream<T: Serialize + ?Sized>(
        &self,
        pattern: &str,
        payload: &T,
    ) -> Result<Vec<Value>, TransportError> {
        let values = self.request(pattern, None, payload).await?;
        values
            .iter()
            .map(|v| v.to_json().map_err(TransportError::from))
            .collect()
    }

    async fn request<T: Serialize + ?Sized>(
        &self,
        pattern: &str,
        key: Option<Bytes>,
        payload: &T,
    ) -> Result<Vec<NestValue>, TransportError> {
        let reply_topic = nest::reply_topic(pattern);
        let id = nest::correlation_id();
        let (tx, rx) = oneshot::channel();
        let partition = {
            let mut r = lock(&self.router);
            let partition = *r
                .reply_partitions
                .get(&reply_topic)
                .ok_or_else(|| TransportError::NoReplyPartition(reply_topic.clone()))?;
            r.pending.insert(id.clone(), (tx, Vec::new()));
            partition
        };
        let record = nest::request(pattern, key, nest::encode(payload)?, &id, partition);
        let sent = async { self.producer.send(to_producer(record)).await?.await }.await;
        if let Err(e) = sent {
            lock(&self.router).pending.remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                lock(&self.router).pending.remove(&id);
                Err(TransportError::Timeout {
                    pattern: pattern.to_string(),
                    after: self.request_timeout,
                })
            }
        }
    }

    /// Emits an event (no reply) and waits for the broker's acknowledgement.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        pattern: &str,
        payload: &T,
    ) -> Result<(), TransportError> {
        let record = nest::event(pattern, None, nest::encode(payload)?);
        self.producer.send(to_producer(record)).await?.await?;
        Ok(())
    }

    /// [`emit`](Self::emit) with a key (murmur2 partitioning, as KafkaJS).
    pub async fn emit_keyed<T: Serialize + ?Sized>(
        &self,
        pattern: &str,
        key: impl Into<Bytes>,
        payload: &T,
    ) -> Result<(), TransportError> {
        let record = nest::event(pattern, Some(key.into()), nest::encode(payload)?);
        self.producer.send(to_producer(record)).await?.await?;
        Ok(())
    }

    /// Stops reading replies (pending requests fail with `Closed`), leaves
    /// the reply group and flushes the producer.
    pub async fn close(mut self) -> Result<(), TransportError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            match reader.await {
                Ok(r) => r?,
                Err(_) => return Err(TransportError::Closed),
            }
        }
        for (_, (waiter, _)) in lock(&self.router).pending.drain() {
            let _ = waiter.send(Err(TransportError::Closed));
        }
        self.producer.close(Duration::from_secs(10)).await?;
        Ok(())
    }
}

impl Drop for TransportClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The consumer settings both ends use: a new group starts at the latest
/// offset (as NestJS, whose KafkaJS `fromBeginning` defaults to false), and
/// fetches return within 100 ms so replies are not held up.
pub(crate) fn consumer_config(bootstrap_servers: &str) -> ConsumerConfig {
    let mut consumer = ConsumerConfig::new(bootstrap_servers);
    consumer.auto_offset_reset = OffsetReset::Latest;
    consumer.fetch_max_wait = Duration::from_millis(100);
    consumer
}

/// The producer settings both ends use: no linger, as KafkaJS, because a
/// request or reply waiting to fill a batch is latency the caller sees
/// (records still batch while earlier requests are in flight).
pub(crate) fn transport_producer(bootstrap_servers: &str) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        ..ProducerConfig::new(bootstrap_servers)
    }
}

/// Records the lowest assigned partition of each reply topic.
fn publish_partitions(
    router: &Mutex<ReplyRouter>,
    consumer: &GroupConsumer,
) -> BTreeMap<String, i32> {
    let mut lowest: BTreeMap<String, i32> = BTreeMap::new();
    for tp in consumer.assignment() {
        let e = lowest.entry(tp.topic.clone()).or_insert(tp.partition);
        *e = (*e).min(tp.partition);
    }
    lock(router).reply_partitions.clone_from(&lowest);
    lowest
}

async fn read_replies(
    mut consumer: GroupConsumer,
    router: Arc<Mutex<ReplyRouter>>,
    stop: Arc<AtomicBool>,
) -> Result<(), TransportError> {
    // Reply offsets are committed only to show the group's lag: a restarted
    // client reads from the end anyway. So they are committed when the
    // reader goes idle or every few seconds, never between a reply and the
    // next fetch: an OffsetCommit took about 3 ms on a Kafka 4.1 broker
    // (whose group coordinator batches its writes), and every reply would
    // have waited for it.
    let mut uncommitted = false;
    let mut last_commit = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let records = match consumer.poll(Duration::from_millis(200)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reply consumer failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        publish_partitions(&router, &consumer);
        {
            let mut r = lock(&router);
            for rec in &records {
                let headers = rec.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
                if let Some((id, msg)) = nest::read_reply(headers, rec.value.as_ref()) {
                    r.route(&id, msg);
                }
            }
        }
        uncommitted |= !records.is_empty();
        if uncommitted && (records.is_empty() || last_commit.elapsed() >= REPLY_COMMIT_INTERVAL) {
            commit_replies(&mut consumer).await;
            (uncommitted, last_commit) = (false, std::time::Instant::now());
        }
    }
    if uncommitted {
        commit_replies(&mut consumer).await;
    }
    consumer.close().await?;
    Ok(())
}

/// How often a busy reply reader commits (Java's auto-commit interval).
const REPLY_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

async fn commit_replies(consumer: &mut GroupConsumer) {
    if let Err(e) = consumer.commit().await {
        tracing::debug!(error = %e, "reply offsets not committed");
    }
}

/// A transport record as a producer record.
pub(crate) fn to_producer(r: OutgoingRecord) -> ProducerRecord {
    let mut rec = ProducerRecord {
        topic: r.topic.into(),
        key: r.key,
        value: r.value,
        partition: r.partition,
        ..ProducerRecord::default()
    };
    for (k, v) in r.headers {
        rec = rec.with_header(k, v);
    }
    rec
}

fn lock(m: &Mutex<ReplyRouter>) -> MutexGuard<'_, ReplyRouter> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn the_router_collects_a_stream_until_disposed_and_drops_strangers() {
        let mut r = ReplyRouter::default();
        let (tx, mut rx) = oneshot::channel();
        r.pending.insert("a".into(), (tx, Vec::new()));
        r.route(
            "zzz",
            Ok(ReplyMessage::Value {
                value: NestValue::Text("x".into()),
                last: true,
            }),
        );
        r.route(
            "a",
            Ok(ReplyMessage::Value {
                value: NestValue::Text("1".into()),
                last: false,
            }),
        );
        assert!(rx.try_recv().is_err(), "not done before is-disposed");
        r.route(
            "a",
            Ok(ReplyMessage::Value {
                value: NestValue::Json(json!({"n": 2})),
                last: false,
            }),
        );
        r.route(
            "a",
            Ok(ReplyMessage::Value {
                value: NestValue::Null,
                last: true,
            }),
        );
        let values = rx.try_recv().unwrap().unwrap();
        assert_eq!(
            values,
            vec![
                NestValue::Text("1".into()),
                NestValue::Json(json!({"n": 2}))
            ],
            "the trailing null is not a value"
        );
        assert!(r.pending.is_empty());

        let (tx, mut rx) = oneshot::channel();
        r.pending.insert("b".into(), (tx, Vec::new()));
        r.route(
            "b",
            Ok(ReplyMessage::Error(
                json!({"status": "error", "message": "no"}),
            )),
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(TransportError::Remote(_))
        ));

        let (tx, mut rx) = oneshot::channel();
        r.pending.insert("c".into(), (tx, Vec::new()));
        r.route(
            "c",
            Ok(ReplyMessage::Value {
                value: NestValue::Null,
                last: true,
            }),
        );
        assert_eq!(
            rx.try_recv().unwrap().unwrap(),
            vec![NestValue::Null],
            "a void handler replies null"
        );
    }
}
