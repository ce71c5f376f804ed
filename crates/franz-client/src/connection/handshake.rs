//! The handshake: TCP (and TLS), then ApiVersions negotiation, then SASL
//! when the security protocol asks for it. Each step either yields a
//! connection ready for the next or fails with a typed error; a failed SASL
//! exchange closes the connection and never falls back to plaintext.
#![allow(clippy::disallowed_methods)] // the client's I/O layer drives requests: deadlines, retries and cache ages are read here, and nothing below it reads the clock

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_protocol::frame::ResponseHeader;
use franz_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use franz_protocol::primitives::Reader;
use franz_protocol::{ErrorCode, Message};
use tokio::net::TcpStream;

use super::{ApiVersionTable, BrokerAddr, BrokerConnection};
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
    /// fallback.
    pub(super) async fn authenticate(self, config: &ClientConfig) -> Result<Self, ClientError> {
        let broker = self.addr().to_string();
        let auth_err = |reason: SaslError| ClientError::Authentication {
            broker: broker.clone(),
            reason,
        };
        let mechanism = config.sasl_mechanism.name();
        let hs = self
            .send(&SaslHandshakeRequest {
                mechanism: mechanism.into(),
                ..Default::default()
            })
            .await?;
        if hs.error_code != 0 {
            self.close("SASL handshake failed");
            return Err(auth_err(SaslError::MechanismRefused {
                mechanism,
                code: ErrorCode::from_code(hs.error_code),
                offered: hs.mechanisms,
            }));
        }
        let (mut session, mut msg) = SaslSession::start(config).map_err(&auth_err)?;
        let mut lifetime_ms;
        loop {
            let resp = self
                .send(&SaslAuthenticateRequest {
                    auth_bytes: Bytes::from(msg),
                    ..Default::default()
                })
                .await?;
            if resp.error_code != 0 {
                self.close("SASL authentication failed");
                return Err(auth_err(SaslError::Rejected {
                    code: ErrorCode::from_code(resp.error_code),
                    message: resp.error_message,
                }));
            }
            lifetime_ms = resp.session_lifetime_ms;
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
                Ok(SaslStep::Done) => break,
                Ok(SaslStep::Derive(_)) => {
                    self.close("SASL mechanism failed");
                    return Err(auth_err(SaslError::UnexpectedMessage));
                }
                Err(e) => {
                    self.close("SASL mechanism failed");
                    return Err(auth_err(e));
                }
            }
        }
        let mut handle = Arc::into_inner(self.handle).ok_or(ClientError::Config(
            "connection shared during set-up".into(),
        ))?;
        if lifetime_ms > 0 {
            // KIP-368: retire the connection before the broker's session
            // ends; the pool replaces it with a freshly authenticated one.
            handle.session_deadline = Some(Instant::now() + session_margin(lifetime_ms));
            tracing::debug!(broker = %handle.core.addr, lifetime_ms, "SASL session lifetime");
        }
        Ok(Self {
            handle: Arc::new(handle),
        })
    }
}

/// The least time a connection is kept, whatever session lifetime the
/// broker sends: a lifetime of 1 ms would otherwise mean a new connection
/// (and a SASL exchange) for every request. A broker that really expires
/// the session sooner closes the connection, and the pool reconnects.
const MIN_SESSION_MARGIN: Duration = Duration::from_secs(1);

/// The longest: a lifetime of years is no lifetime, and `Instant`
/// arithmetic must not overflow on a hostile value.
const MAX_SESSION_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long to keep a connection whose SASL session lasts `lifetime_ms`:
/// 85 % of it, clamped to [`MIN_SESSION_MARGIN`]..=[`MAX_SESSION_MARGIN`].
pub(super) fn session_margin(lifetime_ms: i64) -> Duration {
    let ms = u64::try_from(lifetime_ms).unwrap_or(0).saturating_mul(85) / 100;
    Duration::from_millis(ms).clamp(MIN_SESSION_MARGIN, MAX_SESSION_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_sent_session_lifetimes_are_clamped() {
        assert_eq!(session_margin(1), MIN_SESSION_MARGIN);
        assert_eq!(session_margin(1_000), MIN_SESSION_MARGIN);
        assert_eq!(session_margin(10_000), Duration::from_millis(8_500));
        assert_eq!(session_margin(i64::MAX), MAX_SESSION_MARGIN);
        assert_eq!(session_margin(-5), MIN_SESSION_MARGIN);
    }
}
