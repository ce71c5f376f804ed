//! The connection pool: one slot per (broker, kind of work). A slot holds
//! at most one live connection; a failed attempt backs off exponentially
//! with jitter before the next, and concurrent callers share one attempt.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use franz_protocol::{ErrorCode, Request};

use crate::connection::{BrokerAddr, BrokerConnection};
use crate::error::ClientError;

use super::*;

#[derive(Default)]
pub(super) struct Slot {
    pub(super) conn: Option<BrokerConnection>,
    failures: u32,
    next_attempt: Option<Instant>,
}

/// One slot per (node id, kind); the async mutex makes concurrent callers
/// share one connection attempt.
pub(super) type Pool = HashMap<(i32, ConnectionKind), Arc<tokio::sync::Mutex<Slot>>>;

impl Client {
    /// Connections this client holds open.
    pub fn open_connections(&self) -> usize {
        lock(&self.inner.pool)
            .values()
            .filter(|s| {
                s.try_lock()
                    .map(|s| s.conn.as_ref().is_some_and(BrokerConnection::is_open))
                    .unwrap_or(true)
            })
            .count()
    }

    /// A connection of `kind` to `addr`, reusing a pooled one while it is
    /// open, else connecting (after the backoff earned by earlier failures).
    pub(super) async fn connection_to(
        &self,
        addr: &BrokerAddr,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        self.check_open()?;
        let slot = Arc::clone(
            lock(&self.inner.pool)
                .entry((addr.node_id, kind))
                .or_default(),
        );
        let mut s = slot.lock().await;
        if let Some(c) = &s.conn {
            let same_place = c.addr().host == addr.host && c.addr().port == addr.port;
            if c.is_open() && same_place {
                return Ok(c.clone());
            }
            s.conn = None;
        }
        if let Some(at) = s.next_attempt.filter(|t| *t > Instant::now()) {
            tokio::time::sleep_until(at.into()).await;
        }
        let metrics = self.metrics_for(addr.node_id);
        match BrokerConnection::connect(
            &self.inner.config,
            self.inner.tls.as_ref(),
            addr.clone(),
            metrics,
        )
        .await
        {
            Ok(c) => {
                s.failures = 0;
                s.next_attempt = None;
                s.conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                let wait = backoff(
                    self.inner.config.reconnect_backoff,
                    self.inner.config.reconnect_backoff_max,
                    s.failures,
                );
                tracing::debug!(broker = %addr, failures = s.failures, backoff_ms = wait.as_millis() as u64, error = %e, "connect failed");
                s.next_attempt = Some(Instant::now() + wait);
                Err(e)
            }
        }
    }

    /// A connection of `kind` to broker `node_id` (from the metadata).
    ///
    /// # Cancel safety
    /// Cancel safe. Dropped while connecting, the half-made connection closes and the pool
    /// slot stays empty, with no failure or backoff recorded.
    pub async fn connection(
        &self,
        node_id: i32,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        let broker = self.metadata().brokers.get(&node_id).cloned();
        let broker = match broker {
            Some(b) => b,
            None => {
                self.refresh_metadata_for(&[]).await?;
                self.metadata()
                    .brokers
                    .get(&node_id)
                    .cloned()
                    .ok_or(ClientError::UnknownBroker(node_id))?
            }
        };
        let addr = BrokerAddr {
            node_id,
            host: broker.host,
            port: broker.port,
        };
        self.connection_to(&addr, kind).await
    }

    /// A connection of `kind` to any reachable broker: known brokers first
    /// (in a rotating order), then the bootstrap list. Unreachable entries
    /// are skipped.
    ///
    /// # Cancel safety
    /// As [`connection`](Self::connection). A Metadata request in flight when it is dropped
    /// is answered into the void; no cache is updated.
    pub async fn any_connection(
        &self,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        let md = self.metadata();
        let mut candidates: Vec<BrokerAddr> = md
            .brokers
            .values()
            .map(|b| BrokerAddr {
                node_id: b.node_id,
                host: b.host.clone(),
                port: b.port,
            })
            .collect();
        if !candidates.is_empty() {
            // Spread load: start the walk at a random known broker.
            let mut seed = [0u8; 4];
            let _ = getrandom::fill(&mut seed);
            let start = u32::from_le_bytes(seed) as usize % candidates.len();
            candidates.rotate_left(start);
        }
        // The bootstrap servers come after every known broker, and are
        // resolved again on each connect: when no broker the metadata names
        // answers (the cluster moved, or was re-addressed), the client
        // rebootstraps through them (KIP-899), trying every address the
        // name resolves to.
        candidates.extend(self.inner.bootstrap.iter().cloned());
        // Prefer brokers we already hold a connection to, and leave those
        // still backing off from a failed connect for last, so that a dead
        // broker's backoff is not slept before a live one is tried.
        {
            let pool = lock(&self.inner.pool);
            let now = Instant::now();
            candidates.sort_by_key(|a| {
                let entry = pool.get(&(a.node_id, kind));
                let slot = entry.and_then(|s| s.try_lock().ok());
                let open = slot
                    .as_ref()
                    .is_some_and(|s| s.conn.as_ref().is_some_and(BrokerConnection::is_open));
                // A slot locked by another caller is being connected (or its
                // backoff slept out): waiting there comes last too.
                let waiting = (entry.is_some() && slot.is_none())
                    || slot
                        .as_ref()
                        .is_some_and(|s| s.next_attempt.is_some_and(|t| t > now));
                (!open, waiting)
            });
        }
        let mut errors = Vec::new();
        let mut transient = true;
        let mut refused = None;
        for addr in &candidates {
            match self.connection_to(addr, kind).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(broker = %addr, error = %e, "skipping unreachable broker");
                    transient &= e.is_retriable();
                    errors.push(format!("{addr}: {e}"));
                    if refused.is_none()
                        && matches!(
                            e,
                            ClientError::Authentication { .. } | ClientError::Tls { .. }
                        )
                    {
                        refused = Some(e);
                    }
                }
            }
        }
        // A broker that refused our credentials or certificates is the
        // cause to report, typed, rather than one string for all brokers.
        if let Some(e) = refused {
            return Err(e);
        }
        // A cluster that is down or restarting is worth waiting for; a TLS
        // or authentication failure everywhere is not.
        Err(if transient {
            ClientError::NoBrokerReachable(errors.join("; "))
        } else {
            ClientError::NoBootstrap(errors.join("; "))
        })
    }

    /// Sends `req` to broker `node_id` on a connection of `kind`.
    ///
    /// # Cancel safety
    /// As [`connection`](Self::connection) followed by
    /// [`BrokerConnection::send`](crate::BrokerConnection::send): once the frame is queued
    /// the broker executes the request; the answer is discarded and the connection stays
    /// pooled.
    pub async fn send_to<R: Request>(
        &self,
        node_id: i32,
        kind: ConnectionKind,
        req: &R,
    ) -> Result<R::Response, ClientError> {
        self.connection(node_id, kind).await?.send(req).await
    }

    /// Sends `req` to any broker.
    ///
    /// # Cancel safety
    /// As [`send_to`](Self::send_to).
    pub async fn send_any<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        self.any_connection(ConnectionKind::Other)
            .await?
            .send(req)
            .await
    }

    /// A connection of `kind` to the leader of `topic`/`partition`.
    ///
    /// # Cancel safety
    /// As [`connection`](Self::connection). A Metadata request in flight when it is dropped
    /// is answered into the void; no cache is updated.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
        kind: ConnectionKind,
    ) -> Result<BrokerConnection, ClientError> {
        let t = self.topic_metadata(topic).await?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ClientError::Broker {
                context: format!("{topic}-{partition}"),
                code: ErrorCode::UnknownTopicOrPartition,
                message: None,
            })?;
        if p.leader < 0 {
            return Err(ClientError::Broker {
                context: format!("{topic}-{partition}"),
                code: ErrorCode::LeaderNotAvailable,
                message: None,
            });
        }
        self.connection(p.leader, kind).await
    }

    /// Closes pooled connections idle longer than `connections.max.idle.ms`.
    pub fn close_idle_connections(&self) {
        let max_idle = self.inner.config.connections_max_idle;
        for slot in lock(&self.inner.pool).values() {
            if let Ok(mut s) = slot.try_lock()
                && let Some(c) = &s.conn
                && c.in_flight() == 0
                && c.idle_for() >= max_idle
            {
                c.close("idle");
                s.conn = None;
            }
        }
    }
}
