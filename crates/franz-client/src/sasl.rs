//! SASL mechanisms as sans-io state machines: each takes the server's bytes
//! and returns the next client message, or `None` when done. The connection
//! carries them in SaslAuthenticate frames after a SaslHandshake.
//!
//! SCRAM follows RFC 5802 (SHA-256 per RFC 7677, SHA-512 as Kafka uses it):
//! the state is a typed enum, and the server's final signature is verified,
//! so a broker that does not know the password cannot pass as one that does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use franz_protocol::ErrorCode;

use crate::config::{ClientConfig, SaslMechanism};

/// Why a SASL exchange failed, by cause. It reaches the caller inside
/// [`ClientError::Authentication`](crate::ClientError::Authentication);
/// authentication is never retried silently, so nothing here is retriable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The configuration lacks what the mechanism needs.
    #[error("no SASL {0} configured")]
    MissingCredential(&'static str),
    /// The operating system gave no randomness for the SCRAM nonce.
    #[error("no randomness for the SCRAM nonce: {0}")]
    NoRandomness(String),
    /// The OAUTHBEARER token provider failed.
    #[error("the OAUTHBEARER token provider failed: {0}")]
    TokenProvider(String),
    /// The broker refused the mechanism in SaslHandshake.
    #[error("the broker refused mechanism {mechanism} ({code}); it offers {offered:?}")]
    MechanismRefused {
        /// The mechanism asked for.
        mechanism: &'static str,
        /// The handshake's error code.
        code: ErrorCode,
        /// The mechanisms the broker offers.
        offered: Vec<String>,
    },
    /// The broker failed a SaslAuthenticate round (wrong credentials, an
    /// expired token, a rejected OAUTHBEARER challenge...).
    #[error("{code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rejected {
        /// The SaslAuthenticate error code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// The broker answered an OAUTHBEARER message with an error challenge.
    #[error("OAUTHBEARER rejected: {0}")]
    OAuthBearerChallenge(String),
    /// The server sent an error attribute (`e=`) in a SCRAM message.
    #[error("SCRAM error from the server: {0}")]
    ScramServerError(String),
    /// A SCRAM server message is not UTF-8, lacks an attribute, or has one
    /// that does not parse.
    #[error("malformed SCRAM server message: {what}")]
    MalformedServerMessage {
        /// What is wrong, naming the attribute.
        what: &'static str,
    },
    /// The server nonce does not extend the client nonce (a replay or a
    /// server in the middle).
    #[error("the SCRAM server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The SCRAM iteration count is outside what this client accepts.
    #[error("the SCRAM iteration count {iterations} is outside {min}..={max}")]
    IterationCount {
        /// What the server asked for.
        iterations: u32,
        /// The least this client accepts.
        min: u32,
        /// The most this client accepts.
        max: u32,
    },
    /// The server's final signature does not verify: the broker does not
    /// know the password.
    #[error("the SCRAM server signature does not verify: the broker does not know the password")]
    ServerSignatureMismatch,
    /// A cryptographic primitive refused its input.
    #[error("SCRAM: {0}")]
    Crypto(&'static str),
    /// A server message arrived when the exchange expected none.
    #[error("a SASL server message arrived after the exchange was complete")]
    UnexpectedMessage,
}

/// The least SCRAM iteration count accepted today; #15 raises it to 4096.
const SCRAM_MIN_ITERATIONS: u32 = 1;

/// One SASL exchange in progress.
pub(crate) enum SaslSession {
    /// PLAIN: one message, then done.
    Plain { sent: bool },
    /// SCRAM, in one of its states.
    Scram(ScramClient),
    /// OAUTHBEARER: one message; an error challenge is acknowledged and fails.
    OAuthBearer { sent: bool },
}

impl SaslSession {
    /// Starts an exchange; returns the session and the first client message.
    pub(crate) fn start(config: &ClientConfig) -> Result<(Self, Vec<u8>), SaslError> {
        let user = || {
            config
                .sasl_username
                .clone()
                .ok_or(SaslError::MissingCredential("user name"))
        };
        let pass = || {
            config
                .sasl_password
                .clone()
                .ok_or(SaslError::MissingCredential("password"))
        };
        match config.sasl_mechanism {
            SaslMechanism::Plain => {
                let mut msg = vec![0u8];
                msg.extend_from_slice(user()?.as_bytes());
                msg.push(0);
                msg.extend_from_slice(pass()?.as_bytes());
                Ok((Self::Plain { sent: true }, msg))
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let mut nonce = [0u8; 24];
                getrandom::fill(&mut nonce).map_err(|e| SaslError::NoRandomness(e.to_string()))?;
                let hash = if config.sasl_mechanism == SaslMechanism::ScramSha256 {
                    ScramHash::Sha256
                } else {
                    ScramHash::Sha512
                };
                let (client, first) =
                    ScramClient::new(hash, &user()?, &pass()?, &B64.encode(nonce));
                Ok((Self::Scram(client), first))
            }
            SaslMechanism::OAuthBearer => {
                let provider = config
                    .sasl_oauthbearer_token_provider
                    .as_ref()
                    .ok_or(SaslError::MissingCredential("OAUTHBEARER token provider"))?;
                let token = provider
                    .token()
                    .map_err(|e| SaslError::TokenProvider(e.to_string()))?;
                let msg = format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes();
                Ok((Self::OAuthBearer { sent: true }, msg))
            }
        }
    }

    /// Feeds the server's bytes; `Ok(Some(msg))` sends `msg` next,
    /// `Ok(None)` means the exchange is complete on the client's side.
    pub(crate) fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match self {
            Self::Plain { sent } | Self::OAuthBearer { sent } if *sent => {
                if !server.is_empty() && matches!(self, Self::OAuthBearer { .. }) {
                    return Err(SaslError::OAuthBearerChallenge(
                        String::from_utf8_lossy(server).into_owned(),
                    ));
                }
                Ok(None)
            }
            Self::Plain { .. } | Self::OAuthBearer { .. } => Err(SaslError::UnexpectedMessage),
            Self::Scram(s) => s.step(server),
        }
    }
}

/// The hash behind a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, SaslError> {
        // HMAC takes a key of any length (a long one is hashed first), so
        // this error arm never runs; it is typed rather than a panic.
        let bad_key = |_| SaslError::Crypto("HMAC refused its key");
        Ok(match self {
            Self::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(bad_key)?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).map_err(bad_key)?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        })
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Self::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// A SCRAM client, RFC 5802.
pub(crate) struct ScramClient {
    hash: ScramHash,
    password: String,
    state: ScramState,
}

enum ScramState {
    /// client-first sent; waiting for server-first.
    SentFirst {
        nonce: String,
        client_first_bare: String,
    },
    /// client-final sent; waiting for server-final with this signature.
    SentFinal { server_signature: Vec<u8> },
    /// Verified.
    Done,
}

fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// A client and its client-first message.
    pub(crate) fn new(hash: ScramHash, user: &str, password: &str, nonce: &str) -> (Self, Vec<u8>) {
        let client_first_bare = format!("n={},r={nonce}", saslname(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        (
            Self {
                hash,
                password: password.to_string(),
                state: ScramState::SentFirst {
                    nonce: nonce.to_string(),
                    client_first_bare,
                },
            },
            first,
        )
    }

    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        let malformed = |what| SaslError::MalformedServerMessage { what };
        let text = std::str::from_utf8(server).map_err(|_| malformed("not UTF-8"))?;
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::SentFirst {
                nonce,
                client_first_bare,
            } => {
                let attr = |k: &str| {
                    text.split(',')
                        .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                };
                if let Some(e) = attr("e") {
                    return Err(SaslError::ScramServerError(e.to_string()));
                }
                let server_nonce = attr("r").ok_or(malformed("server-first lacks r="))?;
                if !server_nonce.starts_with(&nonce) || server_nonce.len() <= nonce.len() {
                    return Err(SaslError::NonceMismatch);
                }
                let salt = attr("s").ok_or(malformed("server-first lacks s="))?;
                let salt = B64
                    .decode(salt)
                    .map_err(|_| malformed("the salt (s=) is not base64"))?;
                let iterations: u32 = attr("i")
                    .ok_or(malformed("server-first lacks i="))?
                    .parse()
                    .map_err(|_| malformed("the iteration count (i=) is not a number"))?;
                if iterations < SCRAM_MIN_ITERATIONS {
                    return Err(SaslError::IterationCount {
                        iterations,
                        min: SCRAM_MIN_ITERATIONS,
                        max: u32::MAX,
                    });
                }
                let h = self.hash;
                let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
                let client_key = h.hmac(&salted, b"Client Key")?;
                let stored_key = h.hash(&client_key);
                let without_proof = format!("c=biws,r={server_nonce}");
                let auth_message = format!("{client_first_bare},{text},{without_proof}");
                let client_signature = h.hmac(&stored_key, auth_message.as_bytes())?;
                let proof: Vec<u8> = client_key
                    .iter()
                    .zip(&client_signature)
                    .map(|(a, b)| a ^ b)
                    .collect();
                let server_key = h.hmac(&salted, b"Server Key")?;
                self.state = ScramState::SentFinal {
                    server_signature: h.hmac(&server_key, auth_message.as_bytes())?,
                };
                Ok(Some(
                    format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
                ))
            }
            ScramState::SentFinal { server_signature } => {
                if let Some(e) = text.strip_prefix("e=") {
                    return Err(SaslError::ScramServerError(e.to_string()));
                }
                let v = text
                    .strip_prefix("v=")
                    .ok_or(malformed("server-final is neither v= nor e="))?;
                let got = B64
                    .decode(v)
                    .map_err(|_| malformed("the server signature (v=) is not base64"))?;
                if got != server_signature {
                    return Err(SaslError::ServerSignatureMismatch);
                }
                Ok(None)
            }
            ScramState::Done => Err(SaslError::UnexpectedMessage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's SCRAM-SHA-256 example.
    #[test]
    fn scram_sha256_matches_rfc7677() {
        let (mut c, first) =
            ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = c.step(server_first).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            c.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_wrong_server_signature_fails() {
        let (mut c, _) =
            ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        c.step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            c.step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(SaslError::ServerSignatureMismatch)
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_fails() {
        let (mut c, _) = ScramClient::new(ScramHash::Sha512, "u", "p", "abc");
        assert_eq!(
            c.step(b"r=xyz123,s=AAAA,i=4096"),
            Err(SaslError::NonceMismatch)
        );
    }

    #[test]
    fn a_zero_iteration_count_is_refused_typed() {
        let (mut c, _) = ScramClient::new(ScramHash::Sha256, "u", "p", "abc");
        assert!(matches!(
            c.step(b"r=abcdef,s=AAAA,i=0"),
            Err(SaslError::IterationCount { iterations: 0, .. })
        ));
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
    }
}
