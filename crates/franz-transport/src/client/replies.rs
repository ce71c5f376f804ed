//! Replies: the router that matches `<pattern>.reply` records to pending requests by correlation id, the reader task that feeds it, and the hooks that fail requests whose reply partition moved.

use super::*;

/// What the reply router hands a request's stream.
#[derive(Debug)]
pub(super) enum Routed {
    Value(Option<Bytes>),
    End,
    Failed(TransportError),
}

/// A request waiting for replies.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) tx: mpsc::UnboundedSender<Routed>,
    /// A value arrived, so a null-valued disposal message is the end.
    pub(super) seen_value: bool,
    /// The reply partition the request named.
    pub(super) reply_to: TopicPartition,
}

/// Requests waiting for replies, by correlation id.
#[derive(Debug, Default)]
pub(super) struct ReplyRouter {
    pub(super) pending: HashMap<String, Pending>,
    /// Lowest assigned partition per reply topic (what NestJS sends as
    /// `kafka_replyPartition`).
    pub(super) reply_partitions: BTreeMap<String, i32>,
    /// The servers send one reply and no end marker (Spring Kafka's
    /// dialect): the first reply ends a request.
    pub(super) single_reply: bool,
}

impl ReplyRouter {
    /// Routes one reply message; unknown ids (replies for other instances
    /// sharing a partition, duplicates, or requests given up) are dropped.
    pub(super) fn route(&mut self, meta: nest::ReplyMeta, value: Option<Bytes>) {
        let id = meta.correlation_id;
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let last = meta.last || self.single_reply;
        let done = if let Some(err) = meta.error {
            let _ = p.tx.send(Routed::Failed(TransportError::Remote(
                RemoteError::from_body(nest::remote_error(err.as_ref())),
            )));
            true
        } else {
            // A stream that completes after its last value was flushed
            // ends with an extra null (§3); it is not a value.
            if !(last && value.is_none() && p.seen_value) {
                p.seen_value = true;
                let _ = p.tx.send(Routed::Value(value));
            }
            if last {
                let _ = p.tx.send(Routed::End);
            }
            last
        };
        if done {
            self.pending.remove(&id);
        }
    }

    /// Fails the requests whose replies were to land on `partitions`.
    pub(super) fn fail_moved(&mut self, partitions: &[TopicPartition]) {
        self.pending.retain(|_, p| {
            if partitions.contains(&p.reply_to) {
                let _ =
                    p.tx.send(Routed::Failed(TransportError::ReplyPartitionMoved {
                        topic: p.reply_to.topic.clone(),
                        partition: p.reply_to.partition,
                    }));
                false
            } else {
                true
            }
        });
        for tp in partitions {
            if self.reply_partitions.get(&tp.topic) == Some(&tp.partition) {
                self.reply_partitions.remove(&tp.topic);
            }
        }
    }
}

/// Removes a request's router entry when dropped: a `send` cancelled at any
/// point leaves nothing behind.
#[derive(Debug)]
pub(super) struct PendingGuard {
    pub(super) router: Arc<Mutex<ReplyRouter>>,
    pub(super) id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.router).pending.remove(&self.id);
        metrics::gauge!("franz_transport_in_flight", "side" => "client").decrement(1.0);
    }
}

/// The replies to one request, as they arrive: a typed [`Stream`] that
/// ends after the last value (NestJS's `kafka_nest-is-disposed`), on the
/// remote error, or at the request's deadline (a `Timeout` item).
/// Dropping it gives the request up.
#[derive(Debug)]
pub struct Replies<R> {
    pub(super) rx: mpsc::UnboundedReceiver<Routed>,
    pub(super) codec: Arc<dyn Codec>,
    pub(super) deadline: Pin<Box<tokio::time::Sleep>>,
    pub(super) pattern: String,
    pub(super) timeout: Duration,
    pub(super) done: bool,
    pub(super) _guard: PendingGuard,
    pub(super) _type: std::marker::PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Stream for Replies<R> {
    type Item = Result<R, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Routed::Value(v))) => {
                let decoded = codec::decode::<R>(&*this.codec, v.as_ref()).map_err(|e| {
                    TransportError::Reply {
                        pattern: this.pattern.clone(),
                        source: e,
                    }
                });
                Poll::Ready(Some(decoded))
            }
            Poll::Ready(Some(Routed::End)) | Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Routed::Failed(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    metrics::counter!("franz_transport_timeouts_total", "pattern" => this.pattern.clone())
                        .increment(1);
                    Poll::Ready(Some(Err(TransportError::Timeout {
                        pattern: this.pattern.clone(),
                        after: this.timeout,
                    })))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A command to the reply reader.
pub(super) enum Command {
    /// Read these reply topics too; answer once a partition of each is
    /// assigned.
    Subscribe(Vec<String>, oneshot::Sender<Result<(), TransportError>>),
}

/// The reply reader task and its command channel.
#[derive(Debug)]
pub(super) struct Reader {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) task: JoinHandle<Result<(), TransportError>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subscribe(t, _) => f.debug_tuple("Subscribe").field(t).finish(),
        }
    }
}

pub(super) fn route_all(router: &Mutex<ReplyRouter>, records: &[franz_consumer::ConsumerRecord]) {
    if records.is_empty() {
        return;
    }
    let mut r = lock(router);
    for rec in records {
        let headers = rec.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        if let Some(meta) = nest::reply_meta(headers) {
            r.route(meta, rec.value.clone());
        }
    }
}

pub(super) async fn read_replies(
    mut consumer: GroupConsumer,
    router: Arc<Mutex<ReplyRouter>>,
    stop: Arc<AtomicBool>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    admin: Admin,
    group: String,
    request_timeout: Duration,
) -> Result<(), TransportError> {
    // Reply offsets are committed only to show the group's lag: a restarted
    // client reads from the end anyway. So they are committed when the
    // reader goes idle or every few seconds, never between a reply and the
    // next fetch: an OffsetCommit took about 3 ms on a Kafka 4.1 broker
    // (whose group coordinator batches its writes), and every reply would
    // have waited for it.
    let mut uncommitted = false;
    let mut last_commit = std::time::Instant::now();
    let mut topics: BTreeSet<String> = BTreeSet::new();
    for tp in consumer.assignment() {
        topics.insert(tp.topic);
    }
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Command::Subscribe(more, done)) = commands.try_recv() {
            topics.extend(more.iter().cloned());
            let all: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer.subscribe(&all);
            let deadline = Instant::now() + request_timeout;
            let r = await_reply_partitions(&mut consumer, &router, &more, &admin, &group, deadline)
                .await;
            let _ = done.send(r);
            continue;
        }
        let records = match consumer.poll(Duration::from_millis(200)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reply consumer failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        publish_partitions(&router, &consumer);
        route_all(&router, &records);
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

/// Fails requests whose reply partition moves. Under cooperative
/// rebalancing and KIP-848 a revoked partition really leaves, so its
/// requests fail at once; under an eager assignor every partition is
/// revoked on every rebalance, so they fail only if the new assignment
/// does not give the partition back. Lost partitions fail at once.
pub(super) struct ReplyHooks {
    pub(super) router: Arc<Mutex<ReplyRouter>>,
    pub(super) cooperative: bool,
    pub(super) moving: Mutex<Vec<TopicPartition>>,
}

impl ReplyHooks {
    pub(super) fn new(router: &Arc<Mutex<ReplyRouter>>, config: &TransportClientConfig) -> Self {
        Self {
            router: Arc::clone(router),
            cooperative: config.group_protocol == GroupProtocol::Consumer
                || config.assignors.iter().all(|a| a.cooperative()),
            moving: Mutex::new(Vec::new()),
        }
    }
}

impl RebalanceListener for ReplyHooks {
    fn on_revoked<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        if self.cooperative {
            lock(&self.router).fail_moved(partitions);
        } else {
            self.moving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(partitions);
        }
        Box::pin(async {})
    }

    fn on_assigned<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        let moved: Vec<TopicPartition> =
            std::mem::take(&mut *self.moving.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .filter(|tp| !partitions.contains(tp))
                .collect();
        if !moved.is_empty() {
            lock(&self.router).fail_moved(&moved);
        }
        Box::pin(async {})
    }

    fn on_lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        lock(&self.router).fail_moved(partitions);
        Box::pin(async {})
    }
}

/// How often a busy reply reader commits (Java's auto-commit interval).
pub(super) const REPLY_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

pub(super) async fn commit_replies(consumer: &mut GroupConsumer) {
    if let Err(e) = consumer.commit().await {
        tracing::debug!(error = %e, "reply offsets not committed");
    }
}

pub(super) fn lock(m: &Mutex<ReplyRouter>) -> MutexGuard<'_, ReplyRouter> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(super) fn meta(id: &str, last: bool, error: Option<&str>) -> nest::ReplyMeta {
        nest::ReplyMeta {
            correlation_id: id.into(),
            error: error.map(|e| Some(Bytes::from(e.to_string()))),
            last,
        }
    }

    pub(super) fn pending(r: &mut ReplyRouter, id: &str) -> mpsc::UnboundedReceiver<Routed> {
        let (tx, rx) = mpsc::unbounded_channel();
        r.pending.insert(
            id.into(),
            Pending {
                tx,
                seen_value: false,
                reply_to: TopicPartition::new("p.reply", 0),
            },
        );
        rx
    }

    #[test]
    pub(super) fn the_router_streams_until_disposed_and_drops_strangers() {
        let mut r = ReplyRouter::default();
        let mut rx = pending(&mut r, "a");
        r.route(meta("zzz", true, None), Some(Bytes::from("x")));
        r.route(meta("a", false, None), Some(Bytes::from("1")));
        r.route(meta("a", false, None), Some(Bytes::from(r#"{"n":2}"#)));
        r.route(meta("a", true, None), None);
        assert!(matches!(rx.try_recv().unwrap(), Routed::Value(Some(v)) if v == "1"));
        assert!(matches!(rx.try_recv().unwrap(), Routed::Value(Some(_))));
        assert!(
            matches!(rx.try_recv().unwrap(), Routed::End),
            "the trailing null is not a value"
        );
        assert!(r.pending.is_empty());

        let mut rx = pending(&mut r, "b");
        r.route(
            meta("b", true, Some(r#"{"status":"error","message":"no"}"#)),
            None,
        );
        match rx.try_recv().unwrap() {
            Routed::Failed(TransportError::Remote(e)) => {
                assert_eq!(e.status.as_deref(), Some("error"));
                assert_eq!(e.message.as_deref(), Some("no"));
            }
            other => panic!("{other:?}"),
        }

        let mut rx = pending(&mut r, "c");
        r.route(meta("c", true, None), None);
        assert!(
            matches!(rx.try_recv().unwrap(), Routed::Value(None)),
            "a void handler replies null"
        );
        assert!(matches!(rx.try_recv().unwrap(), Routed::End));
    }

    #[test]
    fn a_spring_reply_ends_its_request_without_an_end_marker() {
        let mut r = ReplyRouter {
            single_reply: true,
            ..ReplyRouter::default()
        };
        let mut rx = pending(&mut r, "s");
        r.route(meta("s", false, None), Some(Bytes::from("42")));
        assert!(matches!(rx.try_recv().unwrap(), Routed::Value(Some(v)) if v == "42"));
        assert!(matches!(rx.try_recv().unwrap(), Routed::End));
        assert!(r.pending.is_empty(), "a second reply would be a stranger");
    }

    #[test]
    pub(super) fn a_moved_reply_partition_fails_its_requests_only() {
        let mut r = ReplyRouter::default();
        let mut moved = pending(&mut r, "a");
        let (tx, mut kept) = mpsc::unbounded_channel();
        r.pending.insert(
            "b".into(),
            Pending {
                tx,
                seen_value: false,
                reply_to: TopicPartition::new("p.reply", 1),
            },
        );
        r.fail_moved(&[TopicPartition::new("p.reply", 0)]);
        assert!(matches!(
            moved.try_recv().unwrap(),
            Routed::Failed(TransportError::ReplyPartitionMoved { partition: 0, .. })
        ));
        assert!(kept.try_recv().is_err());
        assert_eq!(r.pending.len(), 1);
    }
}
