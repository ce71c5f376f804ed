//! The server side of SASL (KIP-152 framing: SaslHandshake v1, then
//! SaslAuthenticate): PLAIN and SCRAM-SHA-256/512 (RFC 5802), with the
//! messages a [`ScramScript`] may replace.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use franz_protocol::ErrorCode;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::control::ScramScript;

/// A SASL mechanism the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Plain, Self::ScramSha256, Self::ScramSha512]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// A user the mock accepts.
#[derive(Debug, Clone)]
pub struct SaslUser {
    /// The mechanism the user is registered for.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl SaslUser {
    /// A user for `mechanism`.
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }
}

/// SCRAM iterations the mock's honest server uses (Kafka's minimum).
const ITERATIONS: u32 = 4096;

/// One connection's SASL progress.
#[derive(Debug, Default)]
pub(crate) struct SaslSession {
    mechanism: Option<SaslMechanism>,
    authenticated: bool,
    scram: Option<ScramPending>,
}

#[derive(Debug)]
struct ScramPending {
    user: SaslUser,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    salted: Vec<u8>,
    script: Option<ScramScript>,
}

/// A failed step: the code and message SaslAuthenticate carries. The
/// connection closes after it.
pub(crate) type SaslFailure = (ErrorCode, String);

impl SaslSession {
    pub(crate) fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// SaslHandshake: picks the mechanism if any user is registered for it.
    pub(crate) fn handshake(&mut self, mechanism: &str, users: &[SaslUser]) -> ErrorCode {
        match SaslMechanism::from_name(mechanism) {
            Some(m) if users.iter().any(|u| u.mechanism == m) => {
                self.mechanism = Some(m);
                ErrorCode::None
            }
            _ => ErrorCode::UnsupportedSaslMechanism,
        }
    }

    /// One SaslAuthenticate round: the server's bytes, or a failure.
    pub(crate) fn authenticate(
        &mut self,
        bytes: &[u8],
        users: &[SaslUser],
        script: Option<ScramScript>,
    ) -> Result<Vec<u8>, SaslFailure> {
        let failed = |msg: &str| (ErrorCode::SaslAuthenticationFailed, msg.to_string());
        let Some(mechanism) = self.mechanism else {
            return Err((
                ErrorCode::IllegalSaslState,
                "SaslAuthenticate before SaslHandshake".into(),
            ));
        };
        if self.authenticated {
            return Err((ErrorCode::IllegalSaslState, "already authenticated".into()));
        }
        match mechanism {
            SaslMechanism::Plain => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| failed("PLAIN message is not UTF-8"))?;
                let mut parts = text.split('\0');
                let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
                let ok = users.iter().any(|u| {
                    u.mechanism == SaslMechanism::Plain
                        && Some(u.username.as_str()) == user
                        && Some(u.password.as_str()) == pass
                });
                if !ok {
                    return Err(failed(
                        "Authentication failed: Invalid username or password",
                    ));
                }
                self.authenticated = true;
                Ok(Vec::new())
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => match self.scram.take() {
                None => self.scram_first(mechanism, bytes, users, script),
                Some(pending) => self.scram_final(mechanism, bytes, pending),
            },
        }
    }

    fn scram_first(
        &mut self,
        mechanism: SaslMechanism,
        bytes: &[u8],
        users: &[SaslUser],
        script: Option<ScramScript>,
    ) -> Result<Vec<u8>, SaslFailure> {
        let failed = |msg: &str| (ErrorCode::SaslAuthenticationFailed, msg.to_string());
        let text = std::str::from_utf8(bytes).map_err(|_| failed("client-first is not UTF-8"))?;
        // gs2 header "n,," (or "y,,", or with an authzid), then the bare message.
        let bare = text
            .splitn(3, ',')
            .nth(2)
            .ok_or_else(|| failed("client-first has no gs2 header"))?;
        let mut name = None;
        let mut client_nonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                name = Some(v.replace("=2C", ",").replace("=3D", "="));
            } else if let Some(v) = attr.strip_prefix("r=") {
                client_nonce = Some(v.to_string());
            }
        }
        let (Some(name), Some(client_nonce)) = (name, client_nonce) else {
            return Err(failed("client-first lacks n= or r="));
        };
        let user = users
            .iter()
            .find(|u| u.mechanism == mechanism && u.username == name)
            .cloned()
            .ok_or_else(|| failed("Authentication failed during authentication due to invalid credentials with SASL mechanism"))?;
        let salt = script
            .as_ref()
            .and_then(|s| s.salt.clone())
            .unwrap_or_else(|| salt_for(&user.username));
        let mut server_nonce = [0u8; 18];
        let _ = getrandom::fill(&mut server_nonce);
        let nonce = script
            .as_ref()
            .and_then(|s| s.nonce.clone())
            .unwrap_or_else(|| {
                format!(
                    "{client_nonce}{}",
                    B64.encode(server_nonce).replace(['+', '/', '='], "x")
                )
            });
        let iterations = script
            .as_ref()
            .and_then(|s| s.iterations)
            .unwrap_or(u64::from(ITERATIONS));
        let server_first = script
            .as_ref()
            .and_then(|s| s.server_first.clone())
            .unwrap_or_else(|| format!("r={nonce},s={},i={iterations}", B64.encode(&salt)));
        let salted = salted_password(mechanism, &user.password, &salt, ITERATIONS);
        self.scram = Some(ScramPending {
            user,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            salted,
            script,
        });
        Ok(server_first.into_bytes())
    }

    fn scram_final(
        &mut self,
        mechanism: SaslMechanism,
        bytes: &[u8],
        p: ScramPending,
    ) -> Result<Vec<u8>, SaslFailure> {
        let failed = |msg: &str| (ErrorCode::SaslAuthenticationFailed, msg.to_string());
        let text = std::str::from_utf8(bytes).map_err(|_| failed("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| failed("client-final has no proof"))?;
        let nonce = without_proof
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or_else(|| failed("client-final has no nonce"))?;
        if nonce != p.nonce {
            return Err(failed("Invalid nonce in client-final"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| failed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            p.client_first_bare, p.server_first, without_proof
        );
        let client_key = hmac(mechanism, &p.salted, b"Client Key");
        let stored_key = hash(mechanism, &client_key);
        let client_signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(failed("Invalid client proof"));
        }
        let recovered: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let candidate = hash(mechanism, &recovered);
        // Constant time: fold every byte's difference.
        let diff = candidate
            .iter()
            .zip(&stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 || candidate.len() != stored_key.len() {
            return Err(failed(&format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            )));
        }
        let server_key = hmac(mechanism, &p.salted, b"Server Key");
        let signature = p
            .script
            .as_ref()
            .and_then(|s| s.server_signature.clone())
            .unwrap_or_else(|| hmac(mechanism, &server_key, auth_message.as_bytes()));
        let server_final = p
            .script
            .as_ref()
            .and_then(|s| s.server_final.clone())
            .unwrap_or_else(|| format!("v={}", B64.encode(signature)));
        let _ = p.user;
        self.authenticated = true;
        Ok(server_final.into_bytes())
    }
}

/// A stable per-user salt, so a user's salted password is the same on every
/// connection (as a broker's stored credential is).
fn salt_for(user: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"franz-mock salt ");
    h.update(user.as_bytes());
    h.finalize()[..16].to_vec()
}

fn salted_password(m: SaslMechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    match m {
        SaslMechanism::ScramSha512 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
            out.to_vec()
        }
        _ => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            out.to_vec()
        }
    }
}

fn hmac(m: SaslMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        SaslMechanism::ScramSha512 => match Hmac::<Sha512>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
        _ => match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    }
}

fn hash(m: SaslMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        SaslMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}
