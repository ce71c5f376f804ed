//! # franz-client
//!
//! Connections per broker and per kind of work, version negotiation, the
//! metadata cache, TLS, SASL and the admin client.
//!
//! Status: not written yet (issue #4). It exports nothing.
