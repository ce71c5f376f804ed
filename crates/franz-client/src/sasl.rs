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

use crate::config::{ClientConfig, SaslMechanism};

/// What a mechanism step can fail with (turned into an authentication error).
pub(crate) type SaslError = String;

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
                .ok_or("no SASL user name configured")
        };
        let pass = || {
            config
                .sasl_password
                .clone()
                .ok_or("no SASL password configured")
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
                getrandom::fill(&mut nonce)
                    .map_err(|e| format!("no randomness for the SCRAM nonce: {e}"))?;
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
                    .ok_or("no OAUTHBEARER token provider configured")?;
                let token = provider
                    .token()
                    .map_err(|e| format!("token provider failed: {e}"))?;
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
                    return Err(format!(
                        "OAUTHBEARER rejected: {}",
                        String::from_utf8_lossy(server)
                    ));
                }
                Ok(None)
            }
            Self::Plain { .. } | Self::OAuthBearer { .. } => Err("unexpected SASL state".into()),
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
        // HMAC accepts keys of any length; the error arm is for form's sake.
        let bad_key = |_| SaslError::from("HMAC key rejected");
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
        let text = std::str::from_utf8(server).map_err(|_| "SCRAM server message is not UTF-8")?;
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::SentFirst {
                nonce,
                client_first_bare,
            } => {
                let attr = |k: &str| {
                    text.split(',')
                        .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                        .ok_or_else(|| format!("SCRAM server-first lacks {k}: {text}"))
                };
                if let Ok(e) = attr("e") {
                    return Err(format!("SCRAM error from server: {e}"));
                }
                let server_nonce = attr("r")?;
                if !server_nonce.starts_with(&nonce) || server_nonce.len() <= nonce.len() {
                    return Err("SCRAM server nonce does not extend the client nonce".into());
                }
                let salt = B64
                    .decode(attr("s")?)
                    .map_err(|_| "SCRAM salt is not base64")?;
                let iterations: u32 = attr("i")?
                    .parse()
                    .map_err(|_| "SCRAM iteration count is not a number")?;
                if iterations == 0 {
                    return Err("SCRAM iteration count is zero".into());
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
                    return Err(format!("SCRAM error from server: {e}"));
                }
                let v = text
                    .strip_prefix("v=")
                    .ok_or_else(|| format!("unexpected SCRAM server-final: {text}"))?;
                let got = B64
                    .decode(v)
                    .map_err(|_| "SCRAM server signature is not base64")?;
                if got != server_signature {
                    return Err("SCRAM server signature does not verify: the broker does not know the password".into());
                }
                Ok(None)
            }
            ScramState::Done => Err("SCRAM exchange already complete".into()),
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
        assert!(
            c.step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_err()
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_fails() {
        let (mut c, _) = ScramClient::new(ScramHash::Sha512, "u", "p", "abc");
        assert!(c.step(b"r=xyz123,s=AAAA,i=4096").is_err());
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
    }
}
