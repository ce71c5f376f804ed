//! ACLs: describe, create and delete bindings.

use franz_protocol::messages::*;

use crate::error::ClientError;

use super::*;

/// An ACL binding. Numeric fields use Kafka's codes: resource type (2 topic,
/// 3 group, 4 cluster, 5 transactional id), pattern (3 literal, 4 prefixed,
/// 1 any, 2 match), operation (2 all, 3 read, 4 write, 5 create, 6 delete,
/// 7 alter, 8 describe, ...), permission (3 allow, 2 deny, 1 any).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclBinding {
    /// Resource type.
    pub resource_type: i8,
    /// Resource name (`None` in a filter matches any).
    pub resource_name: Option<String>,
    /// Pattern type.
    pub pattern_type: i8,
    /// Principal, e.g. `User:alice` (`None` in a filter matches any).
    pub principal: Option<String>,
    /// Host (`*` for any; `None` in a filter matches any).
    pub host: Option<String>,
    /// Operation.
    pub operation: i8,
    /// Permission.
    pub permission: i8,
}

impl Admin {
    /// ACLs matching `filter` (`None` fields match anything).
    ///
    /// # Cancel safety
    /// Cancel safe, with no effect: the request in flight is still answered, and the answer
    /// is discarded.
    pub async fn describe_acls(&self, filter: &AclBinding) -> Result<Vec<AclBinding>, ClientError> {
        let req = DescribeAclsRequest {
            resource_type_filter: filter.resource_type,
            resource_name_filter: filter.resource_name.clone(),
            pattern_type_filter: filter.pattern_type,
            principal_filter: filter.principal.clone(),
            host_filter: filter.host.clone(),
            operation: filter.operation,
            permission_type: filter.permission,
            ..Default::default()
        };
        let resp = self.send_routed("describe ACLs", Route::Any, &req).await?;
        ClientError::check(
            resp.error_code,
            || "describe ACLs".into(),
            resp.error_message,
        )?;
        Ok(resp
            .resources
            .into_iter()
            .flat_map(|r| {
                let (rt, name, pt) = (r.resource_type, r.resource_name, r.pattern_type);
                r.acls.into_iter().map(move |a| AclBinding {
                    resource_type: rt,
                    resource_name: Some(name.clone()),
                    pattern_type: pt,
                    principal: Some(a.principal),
                    host: Some(a.host),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Creates ACL bindings. Bindings that cannot be created (a filter-only
    /// value such as ANY, or UNKNOWN) are rejected per item before sending:
    /// the broker would refuse the whole request and close the connection.
    ///
    /// # Cancel safety
    /// Dropped after the request was written, it may or may not have been applied, and
    /// nothing reports which: describe the state again to find out.
    pub async fn create_acls(
        &self,
        bindings: &[AclBinding],
    ) -> Result<PerItem<AclBinding, ()>, ClientError> {
        let invalid = |b: &AclBinding| -> Option<&'static str> {
            if b.resource_type < 2 {
                Some("resource type must be concrete (not UNKNOWN or ANY)")
            } else if !matches!(b.pattern_type, 3 | 4) {
                Some("pattern type must be LITERAL (3) or PREFIXED (4)")
            } else if b.operation < 2 {
                Some("operation must be concrete (not UNKNOWN or ANY)")
            } else if !matches!(b.permission, 2 | 3) {
                Some("permission must be DENY (2) or ALLOW (3)")
            } else if b.resource_name.as_deref().is_none_or(str::is_empty)
                || b.principal.as_deref().is_none_or(str::is_empty)
            {
                Some("resource name and principal are required")
            } else {
                None
            }
        };
        let valid: Vec<&AclBinding> = bindings.iter().filter(|b| invalid(b).is_none()).collect();
        let mut sent_results = Vec::new();
        if !valid.is_empty() {
            let req = CreateAclsRequest {
                creations: valid
                    .iter()
                    .map(|b| create_acls_request::AclCreation {
                        resource_type: b.resource_type,
                        resource_name: b.resource_name.clone().unwrap_or_default(),
                        resource_pattern_type: b.pattern_type,
                        principal: b.principal.clone().unwrap_or_default(),
                        host: b.host.clone().unwrap_or_else(|| "*".into()),
                        operation: b.operation,
                        permission_type: b.permission,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let resp = self.send_routed("create ACLs", Route::Any, &req).await?;
            sent_results = resp.results;
        }
        let mut sent = sent_results.into_iter();
        Ok(bindings
            .iter()
            .map(|b| {
                let res = match invalid(b) {
                    Some(why) => Err(ClientError::Config(format!("invalid ACL binding: {why}"))),
                    None => match sent.next() {
                        Some(r) => ClientError::check(
                            r.error_code,
                            || "create ACL".into(),
                            r.error_message,
                        ),
                        None => Err(ClientError::missing("ACL creation result")),
                    },
                };
                (b.clone(), res)
            })
            .collect())
    }

    /// Deletes the ACLs matching each filter; returns what each deleted.
    ///
    /// # Cancel safety
    /// Dropped after the request was written, it may or may not have been applied, and
    /// nothing reports which: describe the state again to find out.
    pub async fn delete_acls(
        &self,
        filters: &[AclBinding],
    ) -> Result<PerItem<AclBinding, Vec<AclBinding>>, ClientError> {
        let req = DeleteAclsRequest {
            filters: filters
                .iter()
                .map(|f| delete_acls_request::DeleteAclsFilter {
                    resource_type_filter: f.resource_type,
                    resource_name_filter: f.resource_name.clone(),
                    pattern_type_filter: f.pattern_type,
                    principal_filter: f.principal.clone(),
                    host_filter: f.host.clone(),
                    operation: f.operation,
                    permission_type: f.permission,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let resp = self.send_routed("delete ACLs", Route::Any, &req).await?;
        let mut results = resp.filter_results.into_iter();
        Ok(filters
            .iter()
            .map(|f| {
                let res = match results.next() {
                    None => Err(ClientError::missing("ACL deletion result")),
                    Some(r) => {
                        ClientError::check(r.error_code, || "delete ACLs".into(), r.error_message)
                            .map(|()| {
                                r.matching_acls
                                    .into_iter()
                                    .map(|m| AclBinding {
                                        resource_type: m.resource_type,
                                        resource_name: Some(m.resource_name),
                                        pattern_type: m.pattern_type,
                                        principal: Some(m.principal),
                                        host: Some(m.host),
                                        operation: m.operation,
                                        permission: m.permission_type,
                                    })
                                    .collect()
                            })
                    }
                };
                (f.clone(), res)
            })
            .collect())
    }
}
