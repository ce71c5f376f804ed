//! KIP-227 incremental fetch sessions, one per broker, as a sans-io state
//! machine: [`FetchSession::next_request`] says what the next Fetch to that
//! broker must carry, and [`FetchSession::handle_response`] /
//! [`FetchSession::handle_failure`] feed back what came of it. No sockets and
//! no clocks.
//!
//! A session lets the broker remember the partitions a consumer fetches and
//! their fetch state. After a full request opens it (epoch 0), each request
//! names only partitions whose fetch state changed (the fetch offset after
//! consuming, a new leader epoch) and the ones to forget; partitions without
//! change are left out, and the broker answers only for partitions with
//! news. With many idle partitions, requests and answers shrink to almost
//! nothing.
//!
//! The broker's view is known only when an answer to the previous request
//! was applied. A failed request, or one whose answer was never read (the
//! poll that sent it was cancelled), makes the next request a full one that
//! replaces the session (Java's "close existing, attempt new").

use std::collections::BTreeMap;

use franz_client::TopicPartition;
use franz_protocol::ErrorCode;

/// The epoch of a request that opens (or replaces) a session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a sessionless request, or of one that closes a session.
pub(crate) const FINAL_EPOCH: i32 = -1;

/// What one partition's entry in a Fetch says; a session leaves a partition
/// out of an incremental request when this has not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchState {
    /// The offset to fetch from.
    pub(crate) fetch_offset: i64,
    /// The leader epoch of the record before `fetch_offset` (KIP-320).
    pub(crate) last_fetched_epoch: i32,
    /// The leader epoch the consumer believes current (KIP-320 fencing).
    pub(crate) current_leader_epoch: i32,
    /// `max.partition.fetch.bytes`.
    pub(crate) max_bytes: i32,
}

/// The session fields and partition lists of the next Fetch to one broker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SessionRequest {
    /// The request's `session_id`.
    pub(crate) session_id: i32,
    /// The request's `session_epoch`.
    pub(crate) session_epoch: i32,
    /// Partitions to list, with their state.
    pub(crate) partitions: Vec<(TopicPartition, FetchState)>,
    /// Partitions the session should drop (`forgotten_topics_data`).
    pub(crate) forgotten: Vec<TopicPartition>,
}

impl SessionRequest {
    /// Whether the request lists every partition wanted (a full fetch).
    #[cfg(test)]
    pub(crate) fn is_full(&self) -> bool {
        self.session_epoch == INITIAL_EPOCH || self.session_epoch == FINAL_EPOCH
    }
}

/// One broker's fetch session, as this consumer knows it.
#[derive(Debug, Default)]
pub(crate) struct FetchSession {
    /// Sessions disabled: every request is sessionless.
    disabled: bool,
    /// The broker's session id; 0 when there is none.
    id: i32,
    /// The epoch the next incremental request carries.
    epoch: i32,
    /// The partitions in the broker's session and the state last sent.
    sent: BTreeMap<TopicPartition, FetchState>,
    /// A request is out whose answer has not been applied: the broker's
    /// view is unknown until a full request replaces it.
    in_flight: bool,
}

impl FetchSession {
    /// A session for one broker; `enabled = false` serves it sessionless.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            disabled: !enabled,
            ..Self::default()
        }
    }

    /// The request that fetches `wanted` (every partition to fetch from this
    /// broker now, with its state). Marks a request in flight.
    pub(crate) fn next_request(
        &mut self,
        wanted: &BTreeMap<TopicPartition, FetchState>,
    ) -> SessionRequest {
        let unknown_view = std::mem::replace(&mut self.in_flight, true);
        if self.disabled {
            return SessionRequest {
                session_id: 0,
                session_epoch: FINAL_EPOCH,
                partitions: wanted.iter().map(|(tp, s)| (tp.clone(), *s)).collect(),
                forgotten: Vec::new(),
            };
        }
        if self.id == 0 || unknown_view {
            // Open a session, replacing the one we had (the broker drops the
            // id named in a full request).
            self.epoch = INITIAL_EPOCH;
            self.sent = wanted.clone();
            return SessionRequest {
                session_id: self.id,
                session_epoch: INITIAL_EPOCH,
                partitions: wanted.iter().map(|(tp, s)| (tp.clone(), *s)).collect(),
                forgotten: Vec::new(),
            };
        }
        let partitions: Vec<(TopicPartition, FetchState)> = wanted
            .iter()
            .filter(|(tp, s)| self.sent.get(*tp) != Some(*s))
            .map(|(tp, s)| (tp.clone(), *s))
            .collect();
        let forgotten: Vec<TopicPartition> = self
            .sent
            .keys()
            .filter(|tp| !wanted.contains_key(*tp))
            .cloned()
            .collect();
        self.sent = wanted.clone();
        SessionRequest {
            session_id: self.id,
            session_epoch: self.epoch,
            partitions,
            forgotten,
        }
    }

    /// Applies the answer's top-level error and session id. Returns false
    /// when the answer carries no partition data to trust (a session error:
    /// the next request is full).
    pub(crate) fn handle_response(&mut self, error: ErrorCode, session_id: i32) -> bool {
        self.in_flight = false;
        if self.disabled {
            return error == ErrorCode::None;
        }
        if error != ErrorCode::None {
            // FETCH_SESSION_ID_NOT_FOUND (a restarted or evicting broker),
            // INVALID_FETCH_SESSION_EPOCH, a topic-id mismatch: start over.
            // A broker that no longer knows the id is not asked to drop it.
            if error == ErrorCode::FetchSessionIdNotFound {
                self.id = 0;
            }
            self.epoch = INITIAL_EPOCH;
            self.sent.clear();
            self.in_flight = true; // forces a full request
            return false;
        }
        if self.epoch == INITIAL_EPOCH {
            // The answer to a full request: 0 means the broker keeps no
            // session for us (its cache is full or disabled); every request
            // stays full, and each asks again.
            self.id = session_id;
            if session_id == 0 {
                self.sent.clear();
                return true;
            }
        }
        self.epoch = if self.epoch == i32::MAX {
            1
        } else {
            self.epoch + 1
        };
        true
    }

    /// The request failed (connection lost, timeout): the next is full.
    pub(crate) fn handle_failure(&mut self) {
        self.in_flight = true;
    }

    /// The request that closes the session, if there is one (`close`).
    pub(crate) fn close_request(&mut self) -> Option<SessionRequest> {
        if self.id == 0 {
            return None;
        }
        let id = std::mem::take(&mut self.id);
        self.sent.clear();
        Some(SessionRequest {
            session_id: id,
            session_epoch: FINAL_EPOCH,
            partitions: Vec::new(),
            forgotten: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(offset: i64) -> FetchState {
        FetchState {
            fetch_offset: offset,
            last_fetched_epoch: 0,
            current_leader_epoch: 0,
            max_bytes: 1024,
        }
    }

    fn wanted(parts: &[(i32, i64)]) -> BTreeMap<TopicPartition, FetchState> {
        parts
            .iter()
            .map(|(p, o)| (TopicPartition::new("t", *p), state(*o)))
            .collect()
    }

    fn listed(r: &SessionRequest) -> Vec<i32> {
        r.partitions.iter().map(|(tp, _)| tp.partition).collect()
    }

    #[test]
    fn after_a_full_fetch_only_changed_partitions_are_listed_and_removed_ones_forgotten() {
        let mut s = FetchSession::new(true);
        let first = s.next_request(&wanted(&[(0, 10), (1, 20), (2, 30)]));
        assert_eq!((first.session_id, first.session_epoch), (0, 0));
        assert_eq!(listed(&first), vec![0, 1, 2]);
        assert!(s.handle_response(ErrorCode::None, 77));

        let second = s.next_request(&wanted(&[(0, 15), (1, 20)]));
        assert_eq!((second.session_id, second.session_epoch), (77, 1));
        assert_eq!(listed(&second), vec![0], "partition 1 did not change");
        assert_eq!(second.forgotten, vec![TopicPartition::new("t", 2)]);
        assert!(!second.is_full());
        assert!(s.handle_response(ErrorCode::None, 77));

        let third = s.next_request(&wanted(&[(0, 15), (1, 20), (2, 31)]));
        assert_eq!(third.session_epoch, 2);
        assert_eq!(listed(&third), vec![2], "a re-added partition is listed");
        assert!(third.forgotten.is_empty());
    }

    #[test]
    fn session_errors_force_a_full_fetch() {
        for (code, keeps_id) in [
            (ErrorCode::FetchSessionIdNotFound, false),
            (ErrorCode::InvalidFetchSessionEpoch, true),
        ] {
            let mut s = FetchSession::new(true);
            s.next_request(&wanted(&[(0, 1)]));
            s.handle_response(ErrorCode::None, 5);
            s.next_request(&wanted(&[(0, 2)]));
            assert!(!s.handle_response(code, 0), "{code:?}: no data to trust");
            let next = s.next_request(&wanted(&[(0, 2), (1, 0)]));
            assert!(next.is_full(), "{code:?}");
            assert_eq!(next.session_epoch, 0);
            assert_eq!(next.session_id, if keeps_id { 5 } else { 0 }, "{code:?}");
            assert_eq!(listed(&next), vec![0, 1]);
        }
    }

    #[test]
    fn an_unanswered_request_makes_the_next_full() {
        let mut s = FetchSession::new(true);
        s.next_request(&wanted(&[(0, 1)]));
        s.handle_response(ErrorCode::None, 9);
        // Sent, never answered (a cancelled poll).
        s.next_request(&wanted(&[(0, 2)]));
        let next = s.next_request(&wanted(&[(0, 2)]));
        assert_eq!((next.session_id, next.session_epoch), (9, 0));
        assert_eq!(listed(&next), vec![0]);
        // And a failed one.
        s.handle_response(ErrorCode::None, 10);
        s.next_request(&wanted(&[(0, 3)]));
        s.handle_failure();
        assert!(s.next_request(&wanted(&[(0, 3)])).is_full());
    }

    #[test]
    fn a_broker_without_sessions_is_served_full_fetches() {
        let mut s = FetchSession::new(true);
        for _ in 0..3 {
            let r = s.next_request(&wanted(&[(0, 1), (1, 1)]));
            assert_eq!((r.session_id, r.session_epoch), (0, 0));
            assert_eq!(listed(&r), vec![0, 1]);
            assert!(s.handle_response(ErrorCode::None, 0));
        }
        assert!(s.close_request().is_none());
    }

    #[test]
    fn disabled_sessions_are_sessionless_and_closing_names_the_session() {
        let mut off = FetchSession::new(false);
        let r = off.next_request(&wanted(&[(0, 1)]));
        assert_eq!((r.session_id, r.session_epoch), (0, FINAL_EPOCH));
        off.handle_response(ErrorCode::None, 0);

        let mut on = FetchSession::new(true);
        on.next_request(&wanted(&[(0, 1)]));
        on.handle_response(ErrorCode::None, 42);
        let close = on.close_request().expect("a session to close");
        assert_eq!((close.session_id, close.session_epoch), (42, FINAL_EPOCH));
        assert!(on.close_request().is_none());
    }

    #[test]
    fn the_epoch_wraps_to_one() {
        let mut s = FetchSession::new(true);
        s.next_request(&wanted(&[(0, 1)]));
        s.handle_response(ErrorCode::None, 3);
        s.epoch = i32::MAX;
        s.next_request(&wanted(&[(0, 2)]));
        s.handle_response(ErrorCode::None, 3);
        assert_eq!(s.next_request(&wanted(&[(0, 3)])).session_epoch, 1);
    }
}
