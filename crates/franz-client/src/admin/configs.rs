//! Configs of brokers and topics: describe, and alter incrementally.

use franz_protocol::messages::*;

use crate::error::ClientError;

use super::*;

/// What a config applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigResource {
    /// A topic.
    Topic(String),
    /// A broker, by node id.
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            Self::Topic(t) => (2, t.clone()),
            Self::Broker(b) => (4, b.to_string()),
        }
    }

    /// A broker's configs are its own; a topic's are the cluster's.
    fn route(&self) -> Route {
        match self {
            Self::Topic(_) => Route::Any,
            Self::Broker(id) => Route::Broker(*id),
        }
    }
}

/// One config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Name.
    pub name: String,
    /// Value (`None` for sensitive values and unset ones).
    pub value: Option<String>,
    /// Read-only.
    pub read_only: bool,
    /// Where the value comes from (Kafka's ConfigSource: 1 topic, 4 static
    /// broker, 5 default, ...).
    pub source: i8,
    /// Sensitive (the value is hidden).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the default.
    pub fn is_default(&self) -> bool {
        self.source == 5
    }
}

/// An incremental config change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set a value.
    Set(String, String),
    /// Revert to the default.
    Delete(String),
    /// Append to a list value.
    Append(String, String),
    /// Remove from a list value.
    Subtract(String, String),
}

impl Admin {
    /// Every config of each resource. Broker configs are asked of that
    /// broker, topic configs of any broker.
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<PerItem<ConfigResource, Vec<ConfigEntry>>, ClientError> {
        let mut out = Vec::new();
        for res in resources {
            let (resource_type, resource_name) = res.wire();
            let req = DescribeConfigsRequest {
                resources: vec![describe_configs_request::DescribeConfigsResource {
                    resource_type,
                    resource_name,
                    configuration_keys: None,
                    ..Default::default()
                }],
                ..Default::default()
            };
            let sent = self
                .send_routed("describe configs", res.route(), &req)
                .await;
            let r = sent.and_then(|resp| {
                let r = resp
                    .results
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::missing("config resource"))?;
                ClientError::check(
                    r.error_code,
                    || format!("describe configs {res:?}"),
                    r.error_message,
                )?;
                Ok(r.configs
                    .into_iter()
                    .map(|c| ConfigEntry {
                        name: c.name,
                        value: c.value,
                        read_only: c.read_only,
                        source: c.config_source,
                        sensitive: c.is_sensitive,
                    })
                    .collect())
            });
            out.push((res.clone(), r));
        }
        Ok(out)
    }

    /// Applies incremental config changes per resource.
    ///
    /// # Cancel safety
    /// One request per item, awaited in turn: dropped part-way, earlier items are done, the
    /// current one may or may not be, and later ones are never sent.
    pub async fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
        validate_only: bool,
    ) -> Result<PerItem<ConfigResource, ()>, ClientError> {
        let mut out = Vec::new();
        for (res, ops) in changes {
            let (resource_type, resource_name) = res.wire();
            let req = IncrementalAlterConfigsRequest {
                resources: vec![incremental_alter_configs_request::AlterConfigsResource {
                    resource_type,
                    resource_name,
                    configs: ops
                        .iter()
                        .map(|op| {
                            let (name, operation, value) = match op {
                                AlterConfigOp::Set(k, v) => (k, 0, Some(v.clone())),
                                AlterConfigOp::Delete(k) => (k, 1, None),
                                AlterConfigOp::Append(k, v) => (k, 2, Some(v.clone())),
                                AlterConfigOp::Subtract(k, v) => (k, 3, Some(v.clone())),
                            };
                            incremental_alter_configs_request::AlterableConfig {
                                name: name.clone(),
                                config_operation: operation,
                                value,
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }],
                validate_only,
                ..Default::default()
            };
            let sent = self.send_routed("alter configs", res.route(), &req).await;
            let r = sent.and_then(|resp| {
                let r = resp
                    .responses
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::missing("config resource"))?;
                ClientError::check(
                    r.error_code,
                    || format!("alter configs {res:?}"),
                    r.error_message,
                )
            });
            out.push((res.clone(), r));
        }
        Ok(out)
    }
}
