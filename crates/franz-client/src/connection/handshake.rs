//! The handshake: TCP (and TLS), then ApiVersions negotiation, then SASL
//! when the security protocol asks for it. Each step either yields a
//! connection ready for the next or fails with a typed error; a failed SASL
//! exchange closes the connection and never falls back to plaintext.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_protocol::frame::ResponseHeader;
use franz_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use franz_protocol::primitives::Reader;
use franz_protocol::{ErrorCode, Message};
use tokio::net::TcpStream;

use super::{ApiVersionTable, BrokerAddr, BrokerConnection, Handle};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::metrics::BrokerMetrics;
use crate::sasl::{SaslError, SaslSession, SaslStep};

impl BrokerConnection {
    /// TCP, TLS when configured, ApiVersions, then SASL when configured.
    pub(super) async fn connect_inner(
        config: &ClientConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
        addr: BrokerAddr,
        metrics: Arc<BrokerMetrics>,
    ) -> Result<Self, ClientError> {
        let span = tracing::debug_span!("connect", broker = %addr);
        let _enter = span.enter();
        let name = addr.to_string();
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| ClientError::io(&name, "connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let conn = match tls {
            None => {
                let (r, w) = tcp.into_split();
                Self::start(config, addr, r, w, metrics)
            }
            Some(tls) => {
                let server_name = crate::tls::server_name(config, &addr.host)?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| ClientError::Tls {
                        broker: name.clone(),
                        message: e.to_string(),
                    })?;
                let (r, w) = tokio::io::split(stream);
                Self::start(config, addr, r, w, metrics)
            }
        };
        let conn = conn.negotiate().await?;
        let conn = if config.security_protocol.uses_sasl() {
            conn.authenticate(config).await?
        } else {
            conn
        };
        conn.handle.core.metrics.connected();
        tracing::debug!(broker = %conn.handle.core.addr, "connected");
        Ok(conn)
    }

    /// ApiVersions at our highest version, falling back to the broker's
    /// when it answers UNSUPPORTED_VERSION (in v0 format, KIP-511).
    pub(super) async fn negotiate(self) -> Result<Self, ClientError> {
        let req = ApiVersionsRequest {
            client_software_name: "franz".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let mut version = ApiVersionsRequest::MAX_VERSION;
        let timeout = self.handle.request_timeout;
        let resp = loop {
            let body = self.round_trip(&req, version, timeout, 0).await?;
            // The response header is v0 for every ApiVersions version, and
            // error_code is the first body field in every version.
            let mut r = Reader::new(body.clone());
            ResponseHeader::decode(&mut r, 0).map_err(|source| ClientError::Decode {
                broker: self.addr().to_string(),
                source,
            })?;
            let rest = r.into_rest();
            let code = rest
                .get(..2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .unwrap_or(0);
            if code == ErrorCode::UnsupportedVersion.code() && version > 0 {
                let v0 =
                    ApiVersionsResponse::decode(rest, 0).map_err(|source| ClientError::Decode {
                        broker: self.addr().to_string(),
                        source,
                    })?;
                let theirs = v0
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions.key())
                    .map(|k| k.max_version);
                let next = theirs.unwrap_or(0).min(version - 1);
                tracing::debug!(broker = %self.addr(), from = version, to = next, "ApiVersions fallback");
                version = next;
                continue;
            }
            break self.decode::<ApiVersionsResponse>(body, version)?;
        };
        ClientError::check(
            resp.error_code,
            || format!("ApiVersions from {}", self.addr()),
            None,
        )?;
        let mut handle = Arc::into_inner(self.handle).ok_or(ClientError::Config(
            "connection shared during set-up".into(),
        ))?;
        handle.versions = ApiVersionTable {
            broker: resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
            finalized: resp
                .finalized_features
                .iter()
                .map(|f| (f.name.clone(), f.max_version_level))
                .collect(),
        };
        Ok(Self {
            handle: Arc::new(handle),
        })
    }

    /// SaslHandshake, then SaslAuthenticate rounds. A failure is an
    /// authentication error and the connection is closed: never a silent
    /// fallback. When the broker gives the session a lifetime (KIP-368), a
    /// task re-authenticates on this same connection before it ends.
    pub(super) async fn authenticate(self, config: &ClientConfig) -> Result<Self, ClientError> {
        let session = self.sasl_exchange(config).await?;
        if let Some(reauth_at) = self.start_session(session) {
            let task = tokio::spawn(reauthenticate_loop(
                Arc::downgrade(&self.handle),
                Arc::new(config.clone()),
                reauth_at,
            ));
            self.handle._tasks.set_reauth(task);
        }
        Ok(self)
    }

    /// One in-band re-authentication (KIP-368). The write gate is shut
    /// first, so no new request is queued, and the requests already written
    /// are let finish: the broker then reads nothing but SASL frames
    /// between the SaslHandshake and the last SaslAuthenticate, and the
    /// exchange's own timeout is not spent waiting behind a long request (a
    /// JoinGroup held for a rebalance, a Fetch long poll). When they do not
    /// finish within [`REAUTH_DRAIN`], the gate opens again and the attempt
    /// is put off. A failure or a timeout closes the connection before the
    /// gate opens, so no other frame follows a half-done exchange.
    async fn reauthenticate(&self, config: &ClientConfig) -> Result<Reauth, ClientError> {
        let _exclusive = self.handle.write_gate.write().await;
        let drained_by = Instant::now() + REAUTH_DRAIN;
        while self.unanswered() > 0 {
            if Instant::now() >= drained_by {
                return Ok(Reauth::Deferred);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let timeout = self.handle.request_timeout;
        let session = match tokio::time::timeout(timeout, self.sasl_exchange(config)).await {
            Ok(session) => session?,
            Err(_) => {
                let err = ClientError::Timeout {
                    what: format!("re-authenticating with {}", self.addr()),
                    after: timeout,
                };
                self.handle.core.poison(err.clone());
                return Err(err);
            }
        };
        self.handle.core.metrics.reauthenticated();
        metrics::counter!("franz_reauthentications_total").increment(1);
        tracing::debug!(broker = %self.addr(), lifetime_ms = session.lifetime_ms, "re-authenticated");
        Ok(Reauth::Renewed(self.start_session(session)))
    }

    /// Records a new session's expiry and returns when to re-authenticate,
    /// at a random 85–95 % of its lifetime (so that a client's connections,
    /// made together, do not all re-authenticate at once).
    fn start_session(&self, session: Session) -> Option<Instant> {
        if session.lifetime_ms <= 0 {
            *self.handle.session_deadline() = None;
            return None;
        }
        let expires_in = session_lifetime(session.lifetime_ms);
        let spread = getrandom::u32().unwrap_or(u32::MAX / 2);
        *self.handle.session_deadline() = Some(session.began + expires_in);
        Some(session.began + reauth_after(expires_in, spread))
    }

    /// The SASL exchange itself, from SaslHandshake to the last
    /// SaslAuthenticate answer. Its frames skip the write gate (a
    /// re-authentication holds it). On failure the connection is closed
    /// with the error.
    async fn sasl_exchange(&self, config: &ClientConfig) -> Result<Session, ClientError> {
        let result = self.sasl_rounds(config).await;
        if let Err(e) = &result {
            self.handle.core.poison(e.clone());
        }
        result
    }

    async fn sasl_rounds(&self, config: &ClientConfig) -> Result<Session, ClientError> {
        let broker = self.addr().to_string();
        let auth_err = |reason: SaslError| ClientError::Authentication {
            broker: broker.clone(),
            reason,
        };
        // The broker's session clock starts when it checks our last
        // message; ours starts before we send the first, so ours ends first.
        let began = Instant::now();
        let mechanism = config.sasl_mechanism.name();
        let hs = self
            .send_ungated(&SaslHandshakeRequest {
                mechanism: mechanism.into(),
                ..Default::default()
            })
            .await?;
        if hs.error_code != 0 {
            return Err(auth_err(SaslError::MechanismRefused {
                mechanism,
                code: ErrorCode::from_code(hs.error_code),
                offered: hs.mechanisms,
            }));
        }
        let (mut session, mut msg) = SaslSession::start(config).map_err(&auth_err)?;
        loop {
            let resp = self
                .send_ungated(&SaslAuthenticateRequest {
                    auth_bytes: Bytes::from(msg),
                    ..Default::default()
                })
                .await?;
            if resp.error_code != 0 {
                return Err(auth_err(SaslError::Rejected {
                    code: ErrorCode::from_code(resp.error_code),
                    message: resp.error_message,
                }));
            }
            let mut step = session.step(&resp.auth_bytes);
            if let Ok(SaslStep::Derive(job)) = step {
                // PBKDF2 at up to the capped iteration count is blocking
                // work; it must not stall the runtime's workers. Dropped
                // meanwhile, the blocking task finishes and is discarded.
                step = match tokio::task::spawn_blocking(move || job.run()).await {
                    Ok(salted) => session.derived(salted).map(SaslStep::Send),
                    Err(_) => Err(SaslError::Crypto("the SCRAM key derivation task failed")),
                };
            }
            match step {
                Ok(SaslStep::Send(next)) => msg = next,
                Ok(SaslStep::Done) => {
                    return Ok(Session {
                        lifetime_ms: resp.session_lifetime_ms,
                        began,
                    });
                }
                Ok(SaslStep::Derive(_)) => return Err(auth_err(SaslError::UnexpectedMessage)),
                Err(e) => return Err(auth_err(e)),
            }
        }
    }
}

/// An authenticated SASL session: the lifetime the broker gave it (0 for
/// none) and when, at the latest, it began.
struct Session {
    lifetime_ms: i64,
    began: Instant,
}

/// How one re-authentication attempt ended, short of failing.
enum Reauth {
    /// Done; the next one is due then (none if the broker set no lifetime).
    Renewed(Option<Instant>),
    /// Requests in flight did not finish within [`REAUTH_DRAIN`]: try again
    /// after [`REAUTH_RETRY`].
    Deferred,
}

/// How long a re-authentication waits, with the write gate shut, for the
/// requests already written to be answered.
const REAUTH_DRAIN: Duration = Duration::from_secs(2);

/// How long after a deferred attempt the next one starts.
const REAUTH_RETRY: Duration = Duration::from_secs(1);

/// Re-authenticates the connection each time its session is due, for as
/// long as the connection lives. It holds only a weak reference while it
/// sleeps, so it never keeps a dropped connection open; the connection's
/// tasks abort it when the connection goes. A failed or timed-out
/// re-authentication closes the connection (the pool replaces it). A
/// connection never idle long enough to re-authenticate before its session
/// ends is retired at the end instead ([`BrokerConnection::is_open`]).
async fn reauthenticate_loop(conn: Weak<Handle>, config: Arc<ClientConfig>, mut due: Instant) {
    loop {
        tokio::time::sleep_until(due.into()).await;
        let Some(handle) = conn.upgrade() else {
            return;
        };
        let conn = BrokerConnection { handle };
        if conn.close_reason().is_some() {
            return;
        }
        match conn.reauthenticate(&config).await {
            Ok(Reauth::Renewed(Some(at))) => due = at,
            Ok(Reauth::Renewed(None)) => return,
            Ok(Reauth::Deferred) => {
                let next = Instant::now() + REAUTH_RETRY;
                let ends = *conn.handle.session_deadline();
                if ends.is_some_and(|end| next >= end) {
                    tracing::debug!(broker = %conn.addr(), "never idle enough to re-authenticate; the connection retires when its session ends");
                    return;
                }
                due = next;
            }
            Err(e) => {
                tracing::warn!(broker = %conn.addr(), error = %e, "re-authentication failed; the connection is closed");
                return;
            }
        }
    }
}

/// The least session lifetime honoured, whatever the broker sends: a
/// lifetime of 1 ms would otherwise mean a SASL exchange for every
/// request. A broker that really expires the session sooner closes the
/// connection, and the pool reconnects.
const MIN_SESSION_LIFETIME: Duration = Duration::from_secs(1);

/// The longest: a lifetime of years is no lifetime, and `Instant`
/// arithmetic must not overflow on a hostile value.
const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The session lifetime the broker sent, clamped to
/// [`MIN_SESSION_LIFETIME`]..=[`MAX_SESSION_LIFETIME`].
pub(super) fn session_lifetime(lifetime_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(lifetime_ms).unwrap_or(0))
        .clamp(MIN_SESSION_LIFETIME, MAX_SESSION_LIFETIME)
}

/// When to re-authenticate a session that lasts `lifetime`: at 85 % of it
/// plus up to 10 % more, by `spread` (a random draw over the whole `u32`
/// range), as Java's client does.
pub(super) fn reauth_after(lifetime: Duration, spread: u32) -> Duration {
    let extra = f64::from(spread) / f64::from(u32::MAX) * 0.10;
    lifetime.mul_f64(0.85 + extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_sent_session_lifetimes_are_clamped() {
        assert_eq!(session_lifetime(1), MIN_SESSION_LIFETIME);
        assert_eq!(session_lifetime(1_000), MIN_SESSION_LIFETIME);
        assert_eq!(session_lifetime(10_000), Duration::from_secs(10));
        assert_eq!(session_lifetime(i64::MAX), MAX_SESSION_LIFETIME);
        assert_eq!(session_lifetime(-5), MIN_SESSION_LIFETIME);
    }

    #[test]
    fn reauthentication_falls_between_85_and_95_percent() {
        let lifetime = Duration::from_secs(100);
        assert_eq!(reauth_after(lifetime, 0), Duration::from_secs(85));
        assert_eq!(reauth_after(lifetime, u32::MAX), Duration::from_secs(95));
        let mid = reauth_after(lifetime, u32::MAX / 2);
        assert!(mid > Duration::from_secs(89) && mid < Duration::from_secs(91));
        // Even the shortest lifetime honoured is re-authenticated inside it.
        assert!(reauth_after(session_lifetime(1), u32::MAX) < MIN_SESSION_LIFETIME);
    }
}
