//! Kafka protocol error codes.
//!
//! Every response in the Kafka protocol carries one or more `int16` error
//! codes. [`ErrorCode`] names each code that Apache Kafka 4.x defines (its
//! `org.apache.kafka.common.protocol.Errors`, codes -1 through 133), together
//! with Kafka's own name for it, whether Kafka treats it as retriable (the
//! matching Java exception extends `RetriableException`), and a short
//! description.
//!
//! Codes this version of franz does not know are kept as
//! [`ErrorCode::Unknown`] with the raw value, rather than being folded into
//! [`ErrorCode::UnknownServerError`] as the Java client does. A broker newer
//! than franz may send codes that did not exist when franz was written; keeping
//! the number lets callers log it, compare it, and send it back unchanged, and
//! it means [`ErrorCode::from_code`] and [`ErrorCode::code`] round-trip for
//! every `i16`. Unknown codes are never reported as retriable.
//!
//! The table below is the only place the data is written: the
//! `error_codes!` macro turns each `(Variant, code, "NAME", retriable,
//! "description")` row into an enum variant and into one arm of every lookup
//! method.

use std::fmt;

/// Generates [`ErrorCode`] and its lookup methods from one table of rows.
macro_rules! error_codes {
    ($(($variant:ident, $code:literal, $name:literal, $retriable:literal, $desc:literal)),+ $(,)?) => {
        /// A Kafka protocol error code. Unknown codes are kept as `Unknown(code)`, never mapped to a catch-all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $name, "` (", stringify!($code), "): ", $desc)]
                $variant,
            )+
            /// A code this version of franz does not know.
            Unknown(i16),
        }

        impl ErrorCode {
            /// Every error code franz knows, in ascending order of code.
            #[cfg(test)]
            const KNOWN: &'static [Self] = &[$(Self::$variant),+];

            /// Maps a wire value to its error code; values franz does not know
            /// become [`ErrorCode::Unknown`]. Never fails.
            pub const fn from_code(code: i16) -> Self {
                match code {
                    $($code => Self::$variant,)+
                    other => Self::Unknown(other),
                }
            }

            /// The wire value of this error code.
            pub const fn code(self) -> i16 {
                match self {
                    $(Self::$variant => $code,)+
                    Self::Unknown(code) => code,
                }
            }

            /// Kafka's name for this error, e.g. `"NOT_LEADER_OR_FOLLOWER"`;
            /// `"UNKNOWN"` for a code franz does not know.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                    Self::Unknown(_) => "UNKNOWN",
                }
            }

            /// Whether Kafka considers the error transient, so that the same
            /// request may succeed if retried. Always `false` for unknown codes.
            pub const fn is_retriable(self) -> bool {
                match self {
                    $(Self::$variant => $retriable,)+
                    Self::Unknown(_) => false,
                }
            }

            /// A one-line description of what the error means.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $desc,)+
                    Self::Unknown(_) => "An error code this version of franz does not know.",
                }
            }
        }
    };
}

error_codes! {
    (UnknownServerError, -1, "UNKNOWN_SERVER_ERROR", false, "The server hit an unexpected error while handling the request."),
    (None, 0, "NONE", false, "No error."),
    (OffsetOutOfRange, 1, "OFFSET_OUT_OF_RANGE", false, "The requested offset is outside the range the server holds for the partition."),
    (CorruptMessage, 2, "CORRUPT_MESSAGE", true, "A message failed its CRC check, has an invalid size, or is otherwise corrupt."),
    (UnknownTopicOrPartition, 3, "UNKNOWN_TOPIC_OR_PARTITION", true, "The broker does not host this topic-partition."),
    (InvalidFetchSize, 4, "INVALID_FETCH_SIZE", false, "The requested fetch size is not valid."),
    (LeaderNotAvailable, 5, "LEADER_NOT_AVAILABLE", true, "The partition has no leader right now, typically during a leader election."),
    (NotLeaderOrFollower, 6, "NOT_LEADER_OR_FOLLOWER", true, "The broker is not the leader, or not a replica, for this partition."),
    (RequestTimedOut, 7, "REQUEST_TIMED_OUT", true, "The request timed out on the broker."),
    (BrokerNotAvailable, 8, "BROKER_NOT_AVAILABLE", false, "The broker is not available."),
    (ReplicaNotAvailable, 9, "REPLICA_NOT_AVAILABLE", true, "The replica for the requested partition is not available."),
    (MessageTooLarge, 10, "MESSAGE_TOO_LARGE", false, "A message is larger than the maximum size the broker accepts."),
    (StaleControllerEpoch, 11, "STALE_CONTROLLER_EPOCH", false, "The controller has moved to another broker."),
    (OffsetMetadataTooLarge, 12, "OFFSET_METADATA_TOO_LARGE", false, "The metadata attached to an offset commit is too large."),
    (NetworkException, 13, "NETWORK_EXCEPTION", true, "The connection closed before a response was received."),
    (CoordinatorLoadInProgress, 14, "COORDINATOR_LOAD_IN_PROGRESS", true, "The coordinator is still loading its state and cannot serve requests yet."),
    (CoordinatorNotAvailable, 15, "COORDINATOR_NOT_AVAILABLE", true, "The coordinator is not available."),
    (NotCoordinator, 16, "NOT_COORDINATOR", true, "The broker is not the coordinator for this group or transactional id."),
    (InvalidTopicException, 17, "INVALID_TOPIC_EXCEPTION", false, "The request named a topic that is not valid, e.g. an illegal name."),
    (RecordListTooLarge, 18, "RECORD_LIST_TOO_LARGE", false, "A record batch is larger than the broker's configured segment size."),
    (NotEnoughReplicas, 19, "NOT_ENOUGH_REPLICAS", true, "The write was rejected because fewer replicas are in sync than required."),
    (NotEnoughReplicasAfterAppend, 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true, "The write reached the log, but fewer replicas are in sync than required."),
    (InvalidRequiredAcks, 21, "INVALID_REQUIRED_ACKS", false, "The produce request used an invalid acks value."),
    (IllegalGeneration, 22, "ILLEGAL_GENERATION", false, "The group generation id in the request is not valid."),
    (InconsistentGroupProtocol, 23, "INCONSISTENT_GROUP_PROTOCOL", false, "The member's protocols do not match the group's, or its protocol type or list is empty."),
    (InvalidGroupId, 24, "INVALID_GROUP_ID", false, "The group id is not valid."),
    (UnknownMemberId, 25, "UNKNOWN_MEMBER_ID", false, "The coordinator does not know this member id."),
    (InvalidSessionTimeout, 26, "INVALID_SESSION_TIMEOUT", false, "The session timeout is outside the range the broker allows."),
    (RebalanceInProgress, 27, "REBALANCE_IN_PROGRESS", false, "The group is rebalancing, so the member must rejoin."),
    (InvalidCommitOffsetSize, 28, "INVALID_COMMIT_OFFSET_SIZE", false, "The offset commit data has an invalid size."),
    (TopicAuthorizationFailed, 29, "TOPIC_AUTHORIZATION_FAILED", false, "Not authorized to access the topic."),
    (GroupAuthorizationFailed, 30, "GROUP_AUTHORIZATION_FAILED", false, "Not authorized to access the group."),
    (ClusterAuthorizationFailed, 31, "CLUSTER_AUTHORIZATION_FAILED", false, "Not authorized to perform the cluster operation."),
    (InvalidTimestamp, 32, "INVALID_TIMESTAMP", false, "A message timestamp is outside the accepted range."),
    (UnsupportedSaslMechanism, 33, "UNSUPPORTED_SASL_MECHANISM", false, "The broker does not support the requested SASL mechanism."),
    (IllegalSaslState, 34, "ILLEGAL_SASL_STATE", false, "The request is not valid in the current SASL state."),
    (UnsupportedVersion, 35, "UNSUPPORTED_VERSION", false, "The broker does not support this version of the API."),
    (TopicAlreadyExists, 36, "TOPIC_ALREADY_EXISTS", false, "A topic with this name already exists."),
    (InvalidPartitions, 37, "INVALID_PARTITIONS", false, "The requested number of partitions is not valid."),
    (InvalidReplicationFactor, 38, "INVALID_REPLICATION_FACTOR", false, "The replication factor is below 1 or above the number of available brokers."),
    (InvalidReplicaAssignment, 39, "INVALID_REPLICA_ASSIGNMENT", false, "The replica assignment is not valid."),
    (InvalidConfig, 40, "INVALID_CONFIG", false, "The configuration is not valid."),
    (NotController, 41, "NOT_CONTROLLER", true, "The broker is not the active controller of the cluster."),
    (InvalidRequest, 42, "INVALID_REQUEST", false, "The request is malformed or went to an incompatible broker; the broker log has details."),
    (UnsupportedForMessageFormat, 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false, "The broker's message format version does not support the request."),
    (PolicyViolation, 44, "POLICY_VIOLATION", false, "The request parameters violate a configured policy."),
    (OutOfOrderSequenceNumber, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER", false, "The broker received a producer sequence number out of order."),
    (DuplicateSequenceNumber, 46, "DUPLICATE_SEQUENCE_NUMBER", false, "The broker received a duplicate producer sequence number."),
    (InvalidProducerEpoch, 47, "INVALID_PRODUCER_EPOCH", false, "The producer used an epoch older than the current one."),
    (InvalidTxnState, 48, "INVALID_TXN_STATE", false, "The transactional operation is not valid in the producer's current state."),
    (InvalidProducerIdMapping, 49, "INVALID_PRODUCER_ID_MAPPING", false, "The producer id is not the one currently assigned to this transactional id."),
    (InvalidTransactionTimeout, 50, "INVALID_TRANSACTION_TIMEOUT", false, "The transaction timeout is above the broker's transaction.max.timeout.ms."),
    (ConcurrentTransactions, 51, "CONCURRENT_TRANSACTIONS", true, "Another operation on the same transaction is still in progress."),
    (TransactionCoordinatorFenced, 52, "TRANSACTION_COORDINATOR_FENCED", false, "The coordinator that sent the transaction marker is no longer the current one."),
    (TransactionalIdAuthorizationFailed, 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false, "Not authorized to use the transactional id."),
    (SecurityDisabled, 54, "SECURITY_DISABLED", false, "Security features are disabled on the broker."),
    (OperationNotAttempted, 55, "OPERATION_NOT_ATTEMPTED", false, "The broker skipped this operation because another one in the same batch failed."),
    (KafkaStorageError, 56, "KAFKA_STORAGE_ERROR", true, "The broker hit a disk error while accessing the log."),
    (LogDirNotFound, 57, "LOG_DIR_NOT_FOUND", false, "The requested log directory is not in the broker's configuration."),
    (SaslAuthenticationFailed, 58, "SASL_AUTHENTICATION_FAILED", false, "SASL authentication failed."),
    (UnknownProducerId, 59, "UNKNOWN_PRODUCER_ID", false, "The broker has no state for this producer id, e.g. because its records expired."),
    (ReassignmentInProgress, 60, "REASSIGNMENT_IN_PROGRESS", false, "A partition reassignment is in progress."),
    (DelegationTokenAuthDisabled, 61, "DELEGATION_TOKEN_AUTH_DISABLED", false, "Delegation tokens are not enabled."),
    (DelegationTokenNotFound, 62, "DELEGATION_TOKEN_NOT_FOUND", false, "The delegation token was not found on the server."),
    (DelegationTokenOwnerMismatch, 63, "DELEGATION_TOKEN_OWNER_MISMATCH", false, "The principal is not a valid owner or renewer of the delegation token."),
    (DelegationTokenRequestNotAllowed, 64, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", false, "Delegation token requests are not allowed on this kind of channel."),
    (DelegationTokenAuthorizationFailed, 65, "DELEGATION_TOKEN_AUTHORIZATION_FAILED", false, "Not authorized to use the delegation token."),
    (DelegationTokenExpired, 66, "DELEGATION_TOKEN_EXPIRED", false, "The delegation token has expired."),
    (InvalidPrincipalType, 67, "INVALID_PRINCIPAL_TYPE", false, "The principal type is not supported."),
    (NonEmptyGroup, 68, "NON_EMPTY_GROUP", false, "The group still has members."),
    (GroupIdNotFound, 69, "GROUP_ID_NOT_FOUND", false, "The group id does not exist."),
    (FetchSessionIdNotFound, 70, "FETCH_SESSION_ID_NOT_FOUND", true, "The fetch session id was not found."),
    (InvalidFetchSessionEpoch, 71, "INVALID_FETCH_SESSION_EPOCH", true, "The fetch session epoch is not valid."),
    (ListenerNotFound, 72, "LISTENER_NOT_FOUND", true, "The leader has no endpoint for the listener the metadata request arrived on."),
    (TopicDeletionDisabled, 73, "TOPIC_DELETION_DISABLED", false, "Topic deletion is disabled on the broker."),
    (FencedLeaderEpoch, 74, "FENCED_LEADER_EPOCH", true, "The leader epoch in the request is older than the broker's."),
    (UnknownLeaderEpoch, 75, "UNKNOWN_LEADER_EPOCH", true, "The leader epoch in the request is newer than the broker's."),
    (UnsupportedCompressionType, 76, "UNSUPPORTED_COMPRESSION_TYPE", false, "The client does not support the partition's compression type."),
    (StaleBrokerEpoch, 77, "STALE_BROKER_EPOCH", false, "The broker epoch has changed."),
    (OffsetNotAvailable, 78, "OFFSET_NOT_AVAILABLE", true, "The new leader's high watermark has not caught up, so offsets are not yet reliable."),
    (MemberIdRequired, 79, "MEMBER_ID_REQUIRED", false, "The member needs a member id before it can join the group."),
    (PreferredLeaderNotAvailable, 80, "PREFERRED_LEADER_NOT_AVAILABLE", true, "The preferred leader is not available."),
    (GroupMaxSizeReached, 81, "GROUP_MAX_SIZE_REACHED", false, "The group has reached its maximum size."),
    (FencedInstanceId, 82, "FENCED_INSTANCE_ID", false, "Another member with the same group.instance.id has fenced this static member."),
    (EligibleLeadersNotAvailable, 83, "ELIGIBLE_LEADERS_NOT_AVAILABLE", true, "No eligible leader is available for the partition."),
    (ElectionNotNeeded, 84, "ELECTION_NOT_NEEDED", true, "The partition does not need a leader election."),
    (NoReassignmentInProgress, 85, "NO_REASSIGNMENT_IN_PROGRESS", false, "No partition reassignment is in progress."),
    (GroupSubscribedToTopic, 86, "GROUP_SUBSCRIBED_TO_TOPIC", false, "Offsets cannot be deleted for a topic the group is actively subscribed to."),
    (InvalidRecord, 87, "INVALID_RECORD", false, "The broker rejected a record that failed validation."),
    (UnstableOffsetCommit, 88, "UNSTABLE_OFFSET_COMMIT", true, "Pending transactional offsets must be resolved first."),
    (ThrottlingQuotaExceeded, 89, "THROTTLING_QUOTA_EXCEEDED", true, "The throttling quota was exceeded."),
    (ProducerFenced, 90, "PRODUCER_FENCED", false, "A newer producer with the same transactional id has fenced this one."),
    (ResourceNotFound, 91, "RESOURCE_NOT_FOUND", false, "The request referred to a resource that does not exist."),
    (DuplicateResource, 92, "DUPLICATE_RESOURCE", false, "The request referred to the same resource more than once."),
    (UnacceptableCredential, 93, "UNACCEPTABLE_CREDENTIAL", false, "The requested credential does not meet the acceptability criteria."),
    (InconsistentVoterSet, 94, "INCONSISTENT_VOTER_SET", false, "The sender or receiver of a voter-only request is not an expected voter."),
    (InvalidUpdateVersion, 95, "INVALID_UPDATE_VERSION", false, "The update version is not valid."),
    (FeatureUpdateFailed, 96, "FEATURE_UPDATE_FAILED", false, "Finalized features could not be updated because of an unexpected server error."),
    (PrincipalDeserializationFailure, 97, "PRINCIPAL_DESERIALIZATION_FAILURE", false, "The principal of a forwarded request could not be deserialized."),
    (SnapshotNotFound, 98, "SNAPSHOT_NOT_FOUND", false, "The requested snapshot was not found."),
    (PositionOutOfRange, 99, "POSITION_OUT_OF_RANGE", false, "The requested position is negative or beyond the end of the snapshot."),
    (UnknownTopicId, 100, "UNKNOWN_TOPIC_ID", true, "The broker does not host a topic with this id."),
    (DuplicateBrokerRegistration, 101, "DUPLICATE_BROKER_REGISTRATION", false, "The broker id is already registered."),
    (BrokerIdNotRegistered, 102, "BROKER_ID_NOT_REGISTERED", false, "The broker id is not registered."),
    (InconsistentTopicId, 103, "INCONSISTENT_TOPIC_ID", true, "The topic id in the request does not match the log's topic id."),
    (InconsistentClusterId, 104, "INCONSISTENT_CLUSTER_ID", false, "The cluster id in the request does not match the server's."),
    (TransactionalIdNotFound, 105, "TRANSACTIONAL_ID_NOT_FOUND", false, "The transactional id was not found."),
    (FetchSessionTopicIdError, 106, "FETCH_SESSION_TOPIC_ID_ERROR", true, "The fetch session used topic ids inconsistently."),
    (IneligibleReplica, 107, "INELIGIBLE_REPLICA", false, "The proposed ISR contains an ineligible replica."),
    (NewLeaderElected, 108, "NEW_LEADER_ELECTED", false, "The partition state was updated, but the leader has since changed."),
    (OffsetMovedToTieredStorage, 109, "OFFSET_MOVED_TO_TIERED_STORAGE", false, "The requested offset has moved to tiered storage."),
    (FencedMemberEpoch, 110, "FENCED_MEMBER_EPOCH", false, "The member epoch was fenced; the member must give up its partitions and rejoin."),
    (UnreleasedInstanceId, 111, "UNRELEASED_INSTANCE_ID", false, "The instance id is still held by another member, which must leave first."),
    (UnsupportedAssignor, 112, "UNSUPPORTED_ASSIGNOR", false, "The group does not support the assignor or its version range."),
    (StaleMemberEpoch, 113, "STALE_MEMBER_EPOCH", false, "The member epoch is stale; retry once a heartbeat has delivered the current one."),
    (MismatchedEndpointType, 114, "MISMATCHED_ENDPOINT_TYPE", false, "The request was sent to the wrong kind of endpoint."),
    (UnsupportedEndpointType, 115, "UNSUPPORTED_ENDPOINT_TYPE", false, "This endpoint type is not supported yet."),
    (UnknownControllerId, 116, "UNKNOWN_CONTROLLER_ID", false, "The controller id is not known."),
    (UnknownSubscriptionId, 117, "UNKNOWN_SUBSCRIPTION_ID", false, "The telemetry subscription id is unknown or outdated."),
    (TelemetryTooLarge, 118, "TELEMETRY_TOO_LARGE", false, "The telemetry push is larger than the broker accepts."),
    (InvalidRegistration, 119, "INVALID_REGISTRATION", false, "The controller considers the broker registration invalid."),
    (TransactionAbortable, 120, "TRANSACTION_ABORTABLE", false, "The transaction hit an error; abort it to keep using the transactional id."),
    (InvalidRecordState, 121, "INVALID_RECORD_STATE", false, "The record's state does not allow the delivery acknowledgement."),
    (ShareSessionNotFound, 122, "SHARE_SESSION_NOT_FOUND", true, "The share session was not found."),
    (InvalidShareSessionEpoch, 123, "INVALID_SHARE_SESSION_EPOCH", true, "The share session epoch is not valid."),
    (FencedStateEpoch, 124, "FENCED_STATE_EPOCH", false, "The share coordinator rejected the request because the share-group state epoch did not match."),
    (InvalidVoterKey, 125, "INVALID_VOTER_KEY", false, "The voter key does not match the receiving replica's key."),
    (DuplicateVoter, 126, "DUPLICATE_VOTER", false, "The voter is already in the voter set."),
    (VoterNotFound, 127, "VOTER_NOT_FOUND", false, "The voter is not in the voter set."),
    (InvalidRegularExpression, 128, "INVALID_REGULAR_EXPRESSION", false, "The regular expression is not valid."),
    (RebootstrapRequired, 129, "REBOOTSTRAP_REQUIRED", false, "The client's metadata is stale and it must bootstrap again."),
    (StreamsInvalidTopology, 130, "STREAMS_INVALID_TOPOLOGY", false, "The Streams topology is not valid."),
    (StreamsInvalidTopologyEpoch, 131, "STREAMS_INVALID_TOPOLOGY_EPOCH", false, "The Streams topology epoch is not valid."),
    (StreamsTopologyFenced, 132, "STREAMS_TOPOLOGY_FENCED", false, "The Streams topology epoch is outdated."),
    (ShareSessionLimitReached, 133, "SHARE_SESSION_LIMIT_REACHED", true, "The maximum number of share sessions has been reached."),
}

impl ErrorCode {
    /// Whether this is `NONE` (code 0), i.e. no error.
    pub const fn is_ok(self) -> bool {
        self.code() == 0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unknown(code) => write!(f, "unknown error code {code}"),
            known => write!(
                f,
                "{} ({}): {}",
                known.name(),
                known.code(),
                known.description()
            ),
        }
    }
}

impl std::error::Error for ErrorCode {}

impl From<i16> for ErrorCode {
    fn from(code: i16) -> Self {
        Self::from_code(code)
    }
}

impl From<ErrorCode> for i16 {
    fn from(error: ErrorCode) -> Self {
        error.code()
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use std::collections::HashSet;

    #[test]
    fn every_i16_round_trips() {
        for c in i16::MIN..=i16::MAX {
            assert_eq!(ErrorCode::from_code(c).code(), c, "code {c}");
            assert_eq!(i16::from(ErrorCode::from(c)), c, "code {c}");
        }
    }

    #[test]
    fn known_table_is_complete_and_ordered() {
        let codes: Vec<i16> = ErrorCode::KNOWN.iter().map(|e| e.code()).collect();
        let expected: Vec<i16> = (-1..=133).collect();
        assert_eq!(codes, expected);
        for &e in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::from_code(e.code()), e);
            assert!(!matches!(e, ErrorCode::Unknown(_)));
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = HashSet::new();
        for e in ErrorCode::KNOWN {
            assert!(seen.insert(e.code()), "duplicate code {}", e.code());
        }
    }

    #[test]
    fn names_are_unique_and_shaped_like_kafka_names() {
        let mut seen = HashSet::new();
        for e in ErrorCode::KNOWN {
            let name = e.name();
            assert!(seen.insert(name), "duplicate name {name}");
            assert_ne!(name, "UNKNOWN");
            assert!(
                name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "odd name {name}"
            );
        }
    }

    #[test]
    fn descriptions_are_one_line_and_non_empty() {
        for e in ErrorCode::KNOWN {
            let d = e.description();
            assert!(!d.is_empty(), "{}", e.name());
            assert!(!d.contains('\n'), "{}", e.name());
        }
    }

    #[test]
    fn variant_names_match_kafka_names() {
        // `Debug` prints the variant name, which must be the UpperCamelCase
        // form of Kafka's SCREAMING_SNAKE_CASE name.
        for e in ErrorCode::KNOWN {
            let camel: String = e
                .name()
                .split('_')
                .map(|word| {
                    let lower = word.to_ascii_lowercase();
                    let mut chars = lower.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect();
            assert_eq!(format!("{e:?}"), camel);
        }
    }

    #[test]
    fn spot_checks() {
        let e = ErrorCode::from_code(6);
        assert_eq!(e, ErrorCode::NotLeaderOrFollower);
        assert!(e.is_retriable());
        assert_eq!(e.name(), "NOT_LEADER_OR_FOLLOWER");

        assert_eq!(ErrorCode::from_code(35), ErrorCode::UnsupportedVersion);
        assert!(!ErrorCode::UnsupportedVersion.is_retriable());

        assert_eq!(
            ErrorCode::from_code(45),
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert!(!ErrorCode::OutOfOrderSequenceNumber.is_retriable());

        assert_eq!(ErrorCode::from_code(59), ErrorCode::UnknownProducerId);
        assert!(!ErrorCode::UnknownProducerId.is_retriable());

        assert_eq!(ErrorCode::from_code(3), ErrorCode::UnknownTopicOrPartition);
        assert!(ErrorCode::from_code(3).is_retriable());

        assert!(ErrorCode::from_code(0).is_ok());
        assert_eq!(ErrorCode::from_code(0), ErrorCode::None);
        assert!(!ErrorCode::from_code(-1).is_ok());
        assert_eq!(ErrorCode::from_code(-1), ErrorCode::UnknownServerError);

        assert_eq!(ErrorCode::from_code(9999), ErrorCode::Unknown(9999));
        assert_eq!(ErrorCode::from_code(-2), ErrorCode::Unknown(-2));
        assert_eq!(ErrorCode::from_code(134), ErrorCode::Unknown(134));
    }

    #[test]
    fn retriable_set() {
        let retriable: Vec<i16> = ErrorCode::KNOWN
            .iter()
            .filter(|e| e.is_retriable())
            .map(|e| e.code())
            .collect();
        assert_eq!(
            retriable,
            [
                2, 3, 5, 6, 7, 9, 13, 14, 15, 16, 19, 20, 41, 51, 56, 70, 71, 72, 74, 75, 78, 80,
                83, 84, 88, 89, 100, 103, 106, 122, 123, 133
            ]
        );
        assert!(!ErrorCode::Unknown(9999).is_retriable());
        assert!(!ErrorCode::None.is_retriable());
    }

    #[test]
    fn unknown_accessors() {
        let e = ErrorCode::Unknown(9999);
        assert_eq!(e.code(), 9999);
        assert_eq!(e.name(), "UNKNOWN");
        assert!(!e.is_ok());
        assert!(!e.description().is_empty());
    }

    #[test]
    fn display() {
        let shown = ErrorCode::NotLeaderOrFollower.to_string();
        assert!(shown.starts_with("NOT_LEADER_OR_FOLLOWER (6): "), "{shown}");
        assert!(shown.ends_with(ErrorCode::NotLeaderOrFollower.description()));
        assert_eq!(
            ErrorCode::UnknownServerError.to_string(),
            format!(
                "UNKNOWN_SERVER_ERROR (-1): {}",
                ErrorCode::UnknownServerError.description()
            )
        );
        assert_eq!(
            ErrorCode::Unknown(9999).to_string(),
            "unknown error code 9999"
        );
    }

    #[test]
    fn is_a_std_error() {
        fn takes_error(_: &dyn std::error::Error) {}
        takes_error(&ErrorCode::RequestTimedOut);
    }

    #[test]
    fn usable_in_const_context() {
        const E: ErrorCode = ErrorCode::from_code(16);
        const NAME: &str = E.name();
        const { assert!(E.is_retriable()) };
        assert_eq!(NAME, "NOT_COORDINATOR");
    }
}
