//! Topic names and opt-in topic provisioning.
//!
//! NestJS names things by convention: a server's client id and group id
//! get `-server` appended, a client's `-client` ([`NestNames`]). Reply
//! topics are `<pattern>.reply`, dead-letter topics `<topic>.DLT` by
//! default. [`Provision`] creates the request, reply and dead-letter topics
//! a transport needs when it starts, with chosen partition counts, for
//! clusters where auto-creation is off (or gives one partition, too few for
//! several client instances).

use franz_client::admin::NewTopic;
use franz_client::franz_protocol::ErrorCode;
use franz_client::{Admin, Client, ClientConfig, ClientError};

use crate::TransportError;

pub use crate::nest::reply_topic;

/// Client and group ids as NestJS derives them from its options.
///
/// ```
/// use franz_transport::topics::NestNames;
/// let server = NestNames::server("billing", "billing-group");
/// assert_eq!(server.client_id, "billing-server");
/// assert_eq!(server.group_id, "billing-group-server");
/// // A franz server joining the group of Nest servers configured with
/// // `groupId: "billing-group"` uses `server.group_id`.
/// let client = NestNames::client("gateway", "gateway-group");
/// assert_eq!(client.group_id, "gateway-group-client");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestNames {
    /// `client.clientId` with the postfix.
    pub client_id: String,
    /// `consumer.groupId` with the postfix.
    pub group_id: String,
}

impl NestNames {
    /// NestJS's default client id (`KAFKA_DEFAULT_CLIENT`).
    pub const DEFAULT_CLIENT: &'static str = "nestjs-consumer";
    /// NestJS's default group id (`KAFKA_DEFAULT_GROUP`).
    pub const DEFAULT_GROUP: &'static str = "nestjs-group";

    /// A `ServerKafka`'s names (`postfixId` `-server`).
    pub fn server(client_id: &str, group_id: &str) -> Self {
        Self::with_postfix(client_id, group_id, "-server")
    }

    /// A `ClientKafka`'s names (`postfixId` `-client`).
    pub fn client(client_id: &str, group_id: &str) -> Self {
        Self::with_postfix(client_id, group_id, "-client")
    }

    /// Names with a `postfixId` of one's own (Nest allows `""`).
    pub fn with_postfix(client_id: &str, group_id: &str, postfix: &str) -> Self {
        Self {
            client_id: format!("{client_id}{postfix}"),
            group_id: format!("{group_id}{postfix}"),
        }
    }
}

/// Opt-in creation of the transport's topics when it starts: a server
/// creates its patterns' topics, a client its patterns' topics and their
/// reply topics. Topics that exist are left as they are (their partition
/// counts are not changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    /// Partitions of each request and event topic (default 3).
    pub partitions: i32,
    /// Partitions of each reply topic: at least as many as client
    /// instances share a reply group (default 3).
    pub reply_partitions: i32,
    /// Replication factor (default -1, the broker's
    /// `default.replication.factor`).
    pub replication_factor: i16,
}

impl Default for Provision {
    fn default() -> Self {
        Self {
            partitions: 3,
            reply_partitions: 3,
            replication_factor: -1,
        }
    }
}

/// Creates `topics` that do not exist yet. An existing topic is not an
/// error; any other refusal is [`TransportError::Provision`].
pub(crate) async fn create_missing(
    client: &ClientConfig,
    topics: Vec<NewTopic>,
) -> Result<(), TransportError> {
    if topics.is_empty() {
        return Ok(());
    }
    let client = Client::connect(client.clone())
        .await
        .map_err(|e| TransportError::Provision {
            topic: topics[0].name.clone(),
            source: e,
        })?;
    let created = Admin::new(client.clone())
        .create_topics(topics, false)
        .await;
    client.close();
    let created = created.map_err(|e| TransportError::Provision {
        topic: String::new(),
        source: e,
    })?;
    for (topic, result) in created {
        match result {
            Ok(()) => tracing::info!(%topic, "created"),
            Err(e) if already_exists(&e) => {}
            Err(source) => return Err(TransportError::Provision { topic, source }),
        }
    }
    Ok(())
}

/// Whether a create-topic error says the topic is there already.
pub(crate) fn already_exists(e: &ClientError) -> bool {
    e.code() == Some(ErrorCode::TopicAlreadyExists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nest_postfixes() {
        assert_eq!(
            NestNames::server(NestNames::DEFAULT_CLIENT, NestNames::DEFAULT_GROUP),
            NestNames {
                client_id: "nestjs-consumer-server".into(),
                group_id: "nestjs-group-server".into()
            }
        );
        assert_eq!(NestNames::client("a", "g").client_id, "a-client");
        assert_eq!(NestNames::with_postfix("a", "g", "").group_id, "g");
        assert_eq!(reply_topic("order.created"), "order.created.reply");
    }
}
