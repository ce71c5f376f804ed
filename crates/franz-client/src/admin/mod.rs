//! `Admin`: topics, partitions, configs, offsets, records, groups, producers
//! and ACLs.
//!
//! Every call that acts on several items returns one result per item
//! ([`PerItem`]), because one topic can fail while the others succeed; only
//! a failure of the whole request (no broker reachable, a timeout) is the
//! outer error. Partition-level calls are split by leader and sent to each
//! leader; group calls go to each group's coordinator.
//!
//! One file per resource: `topics` (topics, partitions, the cluster),
//! `configs`, `records` (offsets and record deletion), `groups`,
//! `producers` and `acls`. This file holds [`Admin`] and the routing every
//! call shares: by partition leader (`Admin::per_leader`), by group
//! coordinator, or to one named broker or any broker.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

mod acls;
mod configs;
mod groups;
mod producers;
mod records;
mod topics;

pub use acls::AclBinding;
pub use configs::{AlterConfigOp, ConfigEntry, ConfigResource};
pub use groups::{ConsumerGroupMetadata, GroupDescription, GroupListing, GroupMember, GroupOffset};
pub use producers::ProducerState;
pub use records::{ListedOffset, OffsetSpec};
pub use topics::{ClusterDescription, NewTopic, TopicDescription, TopicListing};

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use franz_protocol::ErrorCode;

use crate::TopicPartition;
use crate::client::{Client, ConnectionKind, CoordinatorType};
use crate::error::ClientError;

/// One result per item, in request order.
pub type PerItem<K, T> = Vec<(K, Result<T, ClientError>)>;

/// The admin client; cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_client::ClientError> {
/// use franz_client::{Admin, Client, ClientConfig};
/// use franz_client::admin::NewTopic;
/// let admin = Admin::new(Client::connect(ClientConfig::new("127.0.0.1:9092")).await?);
/// for (name, result) in admin.create_topics(vec![NewTopic::new("orders", 6, 1)], false).await? {
///     println!("{name}: {result:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin client over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.client.config().default_api_timeout
    }

    pub(super) fn timeout_ms(&self) -> i32 {
        i32::try_from(self.client.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// Sends `req` along `route`, retried within the admin deadline: the
    /// one path for every admin request that is not per-leader
    /// ([`per_leader`](Self::per_leader)) or per-coordinator
    /// ([`with_coordinator`](Self::with_coordinator)).
    pub(super) async fn send_routed<R: franz_protocol::Request>(
        &self,
        what: &str,
        route: Route,
        req: &R,
    ) -> Result<R::Response, ClientError> {
        self.client
            .retry(what, self.deadline(), || async {
                match route {
                    Route::Any => self.client.send_any(req).await,
                    Route::Broker(id) => self.client.send_to(id, ConnectionKind::Other, req).await,
                }
            })
            .await
    }

    /// Groups partitions by their leader (refreshing metadata as needed);
    /// partitions without one fail.
    pub(super) async fn by_leader<V: Clone>(
        &self,
        items: &[(TopicPartition, V)],
    ) -> (
        BTreeMap<i32, Vec<(TopicPartition, V)>>,
        Vec<(TopicPartition, ClientError)>,
    ) {
        let mut groups: BTreeMap<i32, Vec<(TopicPartition, V)>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (tp, v) in items {
            match self.client.topic_metadata(&tp.topic).await {
                Ok(t) => match t.partitions.iter().find(|p| p.partition == tp.partition) {
                    Some(p) if p.leader >= 0 => groups
                        .entry(p.leader)
                        .or_default()
                        .push((tp.clone(), v.clone())),
                    Some(_) => {
                        failed.push((tp.clone(), broker_code(tp, ErrorCode::LeaderNotAvailable)));
                    }
                    None => failed.push((
                        tp.clone(),
                        broker_code(tp, ErrorCode::UnknownTopicOrPartition),
                    )),
                },
                Err(e) => failed.push((tp.clone(), e)),
            }
        }
        (groups, failed)
    }

    /// Sends one request per partition leader and gathers one result per
    /// partition, in the order asked. `request` builds a leader's request
    /// from its partitions, grouped by topic; `read` turns the response into
    /// per-partition results. A request that fails fails its partitions.
    pub(super) async fn per_leader<V: Clone, R: franz_protocol::Request, T>(
        &self,
        items: &[(TopicPartition, V)],
        request: impl Fn(Vec<(String, Vec<(i32, V)>)>) -> R,
        read: impl Fn(R::Response) -> Vec<(TopicPartition, Result<T, ClientError>)>,
    ) -> PerItem<TopicPartition, T> {
        let (groups, failed) = self.by_leader(items).await;
        let mut results: HashMap<TopicPartition, Result<T, ClientError>> =
            failed.into_iter().map(|(tp, e)| (tp, Err(e))).collect();
        for (leader, items) in groups {
            let mut topics: BTreeMap<String, Vec<(i32, V)>> = BTreeMap::new();
            for (tp, v) in &items {
                topics
                    .entry(tp.topic.clone())
                    .or_default()
                    .push((tp.partition, v.clone()));
            }
            let req = request(topics.into_iter().collect());
            match self
                .client
                .send_to(leader, ConnectionKind::Other, &req)
                .await
            {
                Ok(resp) => results.extend(read(resp)),
                Err(e) => {
                    for (tp, _) in items {
                        results.insert(tp, Err(e.clone()));
                    }
                }
            }
        }
        collect_in_order(items.iter().map(|(tp, _)| tp), results)
    }

    /// Runs `op` against the group's coordinator, re-finding it when the
    /// broker says it moved.
    pub(super) async fn with_coordinator<T, F, Fut>(
        &self,
        group: &str,
        op: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(crate::connection::BrokerConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.client
            .retry("group coordinator request", self.deadline(), || async {
                let conn = self
                    .client
                    .coordinator_connection(CoordinatorType::Group, group)
                    .await?;
                let r = op(conn).await;
                if let Err(e) = &r
                    && (e.invalidates_metadata()
                        || e.code() == Some(ErrorCode::CoordinatorLoadInProgress))
                {
                    self.client
                        .invalidate_coordinator(CoordinatorType::Group, group);
                }
                r
            })
            .await
    }
}

fn broker_code(tp: &TopicPartition, code: ErrorCode) -> ClientError {
    ClientError::Broker {
        context: tp.to_string(),
        code,
        message: None,
    }
}

/// Which broker an admin request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Any broker: cluster-wide state (topics, ACLs, topic configs).
    Any,
    /// This broker: its own state (its configs, the groups it coordinates).
    Broker(i32),
}

fn collect_in_order<'a, T>(
    keys: impl Iterator<Item = &'a TopicPartition>,
    mut results: HashMap<TopicPartition, Result<T, ClientError>>,
) -> PerItem<TopicPartition, T> {
    keys.map(|tp| {
        let r = results
            .remove(tp)
            .unwrap_or_else(|| Err(ClientError::missing(tp)));
        (tp.clone(), r)
    })
    .collect()
}
