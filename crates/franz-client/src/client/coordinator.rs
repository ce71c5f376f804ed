//! Group and transaction coordinators: FindCoordinator, a cache keyed by
//! (kind, key), and invalidation when a coordinator moves.

use franz_protocol::ErrorCode;
use franz_protocol::messages::FindCoordinatorRequest;

use crate::connection::BrokerConnection;
use crate::error::ClientError;

use super::*;

/// Which coordinator FindCoordinator should locate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinatorType {
    /// A consumer group's coordinator.
    Group,
    /// A transactional id's coordinator.
    Transaction,
}

impl Client {
    /// The node id of the coordinator for `key`, cached until invalidated.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is cached until the FindCoordinator answer is applied.
    pub async fn coordinator(&self, kind: CoordinatorType, key: &str) -> Result<i32, ClientError> {
        if let Some(id) = lock(&self.inner.coordinators).get(&(kind, key.to_string())) {
            return Ok(*id);
        }
        let key_type = match kind {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        };
        let conn = self.any_connection(ConnectionKind::Other).await?;
        let version = conn.version_of::<FindCoordinatorRequest>()?;
        let node = if version >= 4 {
            let resp = conn
                .send(&FindCoordinatorRequest {
                    key_type,
                    coordinator_keys: vec![key.to_string()],
                    ..Default::default()
                })
                .await?;
            let c = resp
                .coordinators
                .into_iter()
                .next()
                .ok_or_else(|| ClientError::Broker {
                    context: format!("FindCoordinator {key}"),
                    code: ErrorCode::CoordinatorNotAvailable,
                    message: None,
                })?;
            ClientError::check(
                c.error_code,
                || format!("FindCoordinator {key}"),
                c.error_message,
            )?;
            self.learn_broker(c.node_id, &c.host, c.port);
            c.node_id
        } else {
            let resp = conn
                .send(&FindCoordinatorRequest {
                    key: key.to_string(),
                    key_type,
                    ..Default::default()
                })
                .await?;
            ClientError::check(
                resp.error_code,
                || format!("FindCoordinator {key}"),
                resp.error_message,
            )?;
            self.learn_broker(resp.node_id, &resp.host, resp.port);
            resp.node_id
        };
        lock(&self.inner.coordinators).insert((kind, key.to_string()), node);
        Ok(node)
    }

    /// Forgets a cached coordinator (after NOT_COORDINATOR and its kin).
    pub fn invalidate_coordinator(&self, kind: CoordinatorType, key: &str) {
        lock(&self.inner.coordinators).remove(&(kind, key.to_string()));
    }

    /// A connection to the coordinator for `key`.
    ///
    /// If the cached coordinator cannot be reached (its broker died, or left
    /// the metadata), the cache entry is dropped and the coordinator looked
    /// up once more at once: a dead coordinator's groups move to another
    /// broker, and the caller should not have to learn that from an error.
    /// A failure that persists is returned, and is retriable.
    ///
    /// # Cancel safety
    /// Cancel safe: as [`coordinator`](Self::coordinator), then
    /// [`connection`](Self::connection).
    pub async fn coordinator_connection(
        &self,
        kind: CoordinatorType,
        key: &str,
    ) -> Result<BrokerConnection, ClientError> {
        let cached = lock(&self.inner.coordinators).contains_key(&(kind, key.to_string()));
        let node = self.coordinator(kind, key).await?;
        match self.connection(node, ConnectionKind::Group).await {
            Ok(conn) => Ok(conn),
            Err(e) if e.is_retriable() => {
                self.invalidate_coordinator(kind, key);
                if !cached {
                    return Err(e);
                }
                tracing::debug!(node, key, error = %e, "coordinator unreachable; finding it again");
                let node = self.coordinator(kind, key).await?;
                let r = self.connection(node, ConnectionKind::Group).await;
                if r.is_err() {
                    self.invalidate_coordinator(kind, key);
                }
                r
            }
            Err(e) => Err(e),
        }
    }
}
