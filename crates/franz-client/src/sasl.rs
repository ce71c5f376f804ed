//! SASL mechanisms as sans-io state machines: each takes the server's bytes
//! and returns the next client message, or `None` when done. The connection
//! carries them in SaslAuthenticate frames after a SaslHandshake.
//!
//! SCRAM follows RFC 5802 (SHA-256 per RFC 7677, SHA-512 as Kafka uses it):
//! the state is a typed enum, and the server's final signature is verified
//! in constant time, so a broker that does not know the password cannot
//! pass as one that does. Nothing the server sends is taken unbounded: the
//! iteration count must lie in `4096..=sasl_scram_max_iterations` (Java's
//! floor, librdkafka's default cap), and an `m=` extension is refused. The
//! PBKDF2 itself is not run here: [`SaslStep::Derive`] hands it to the
//! connection, which runs it off the async workers. The password, the
//! salted password and the keys derived from it are wiped when dropped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

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

/// The least SCRAM iteration count accepted: Java's floor, and Kafka's
/// own default for its SCRAM credentials.
pub(crate) const SCRAM_MIN_ITERATIONS: u32 = 4096;

/// The default cap on a server's SCRAM iteration count (librdkafka's).
pub(crate) const SCRAM_DEFAULT_MAX_ITERATIONS: u32 = 1_000_000;

/// What the connection does next in an exchange.
pub(crate) enum SaslStep {
    /// Send these bytes in the next SaslAuthenticate.
    Send(Vec<u8>),
    /// Run this key derivation off the async workers (it is PBKDF2 with up
    /// to the capped iteration count), then give the result to
    /// [`SaslSession::derived`] for the bytes to send.
    Derive(KeyDerivation),
    /// The exchange is complete on the client's side.
    Done,
}

/// A SCRAM salted password still to be computed: `Hi(password, salt, i)`.
pub(crate) struct KeyDerivation {
    hash: ScramHash,
    password: Zeroizing<String>,
    salt: Vec<u8>,
    iterations: u32,
}

impl KeyDerivation {
    /// Runs PBKDF2: blocking work, bounded by the iteration cap.
    pub(crate) fn run(self) -> SaltedPassword {
        SaltedPassword(self.hash.salted_password(
            self.password.as_bytes(),
            &self.salt,
            self.iterations,
        ))
    }
}

/// The result of a [`KeyDerivation`]; wiped when dropped.
pub(crate) struct SaltedPassword(Zeroizing<Vec<u8>>);

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
                let (client, first) = ScramClient::new(
                    hash,
                    &user()?,
                    &pass()?,
                    &B64.encode(nonce),
                    config.sasl_scram_max_iterations,
                );
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

    /// Feeds the server's bytes and says what to do next.
    pub(crate) fn step(&mut self, server: &[u8]) -> Result<SaslStep, SaslError> {
        match self {
            Self::Plain { sent } | Self::OAuthBearer { sent } if *sent => {
                if !server.is_empty() && matches!(self, Self::OAuthBearer { .. }) {
                    return Err(SaslError::OAuthBearerChallenge(
                        String::from_utf8_lossy(server).into_owned(),
                    ));
                }
                Ok(SaslStep::Done)
            }
            Self::Plain { .. } | Self::OAuthBearer { .. } => Err(SaslError::UnexpectedMessage),
            Self::Scram(s) => s.step(server),
        }
    }

    /// The bytes to send once a [`SaslStep::Derive`] has run.
    pub(crate) fn derived(&mut self, salted: SaltedPassword) -> Result<Vec<u8>, SaslError> {
        match self {
            Self::Scram(s) => s.derived(salted),
            Self::Plain { .. } | Self::OAuthBearer { .. } => Err(SaslError::UnexpectedMessage),
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

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; self.len()]);
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// A SCRAM client, RFC 5802.
pub(crate) struct ScramClient {
    hash: ScramHash,
    password: Zeroizing<String>,
    max_iterations: u32,
    state: ScramState,
}

enum ScramState {
    /// client-first sent; waiting for server-first.
    SentFirst {
        nonce: String,
        client_first_bare: String,
    },
    /// server-first checked; waiting for the salted password.
    Deriving {
        /// `client-first-bare,server-first`: the auth message's head.
        head: String,
        /// The client-final message without its proof.
        without_proof: String,
    },
    /// client-final sent; waiting for server-final with this signature.
    SentFinal {
        server_signature: Zeroizing<Vec<u8>>,
    },
    /// Verified.
    Done,
}

fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// A client and its client-first message.
    pub(crate) fn new(
        hash: ScramHash,
        user: &str,
        password: &str,
        nonce: &str,
        max_iterations: u32,
    ) -> (Self, Vec<u8>) {
        let client_first_bare = format!("n={},r={nonce}", saslname(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        (
            Self {
                hash,
                password: Zeroizing::new(password.to_string()),
                max_iterations,
                state: ScramState::SentFirst {
                    nonce: nonce.to_string(),
                    client_first_bare,
                },
            },
            first,
        )
    }

    fn step(&mut self, server: &[u8]) -> Result<SaslStep, SaslError> {
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
                // RFC 5802 5.1: a mandatory extension the client does not
                // know must fail the exchange.
                if attr("m").is_some() {
                    return Err(malformed(
                        "a mandatory extension (m=) this client does not know",
                    ));
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
                let max = self.max_iterations.max(SCRAM_MIN_ITERATIONS);
                if !(SCRAM_MIN_ITERATIONS..=max).contains(&iterations) {
                    return Err(SaslError::IterationCount {
                        iterations,
                        min: SCRAM_MIN_ITERATIONS,
                        max,
                    });
                }
                self.state = ScramState::Deriving {
                    head: format!("{client_first_bare},{text}"),
                    without_proof: format!("c=biws,r={server_nonce}"),
                };
                Ok(SaslStep::Derive(KeyDerivation {
                    hash: self.hash,
                    password: self.password.clone(),
                    salt,
                    iterations,
                }))
            }
            ScramState::Deriving { .. } => Err(SaslError::UnexpectedMessage),
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
                // Constant time: how long the comparison takes must not say
                // how much of a forged signature was right.
                if !bool::from(got.as_slice().ct_eq(server_signature.as_slice())) {
                    return Err(SaslError::ServerSignatureMismatch);
                }
                Ok(SaslStep::Done)
            }
            ScramState::Done => Err(SaslError::UnexpectedMessage),
        }
    }

    /// client-final, from the salted password a [`KeyDerivation`] computed.
    fn derived(&mut self, salted: SaltedPassword) -> Result<Vec<u8>, SaslError> {
        let ScramState::Deriving {
            head,
            without_proof,
        } = std::mem::replace(&mut self.state, ScramState::Done)
        else {
            return Err(SaslError::UnexpectedMessage);
        };
        let h = self.hash;
        let salted = salted.0;
        let client_key = Zeroizing::new(h.hmac(&salted, b"Client Key")?);
        let stored_key = Zeroizing::new(h.hash(&client_key));
        let auth_message = format!("{head},{without_proof}");
        let client_signature = Zeroizing::new(h.hmac(&stored_key, auth_message.as_bytes())?);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = Zeroizing::new(h.hmac(&salted, b"Server Key")?);
        self.state = ScramState::SentFinal {
            server_signature: Zeroizing::new(h.hmac(&server_key, auth_message.as_bytes())?),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }
}

/// Runs a SCRAM exchange's client side against arbitrary server messages,
/// for `cargo fuzz` (feature `fuzzing`). The iteration cap is the floor, so
/// a derivation costs milliseconds.
#[cfg(feature = "fuzzing")]
pub fn fuzz_scram_exchange(sha512: bool, server_first: &[u8], server_final: &[u8]) {
    let hash = if sha512 {
        ScramHash::Sha512
    } else {
        ScramHash::Sha256
    };
    let (mut c, _) = ScramClient::new(
        hash,
        "user",
        "pencil",
        "fyko+d2lbbFgONRv9qkxdawL",
        SCRAM_MIN_ITERATIONS,
    );
    if let Ok(SaslStep::Derive(job)) = c.step(server_first)
        && c.derived(job.run()).is_ok()
    {
        let _ = c.step(server_final);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn client(hash: ScramHash, nonce: &str) -> ScramClient {
        ScramClient::new(hash, "user", "pencil", nonce, SCRAM_DEFAULT_MAX_ITERATIONS).0
    }

    /// Feeds server-first and runs the derivation inline, as the connection
    /// does on a blocking thread.
    fn answer_first(c: &mut ScramClient, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        match c.step(server_first)? {
            SaslStep::Derive(job) => c.derived(job.run()),
            SaslStep::Send(_) | SaslStep::Done => panic!("server-first must ask for a derivation"),
        }
    }

    /// RFC 7677 §3's SCRAM-SHA-256 example.
    #[test]
    fn scram_sha256_matches_rfc7677() {
        let (mut c, first) = ScramClient::new(
            ScramHash::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
            SCRAM_DEFAULT_MAX_ITERATIONS,
        );
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = answer_first(&mut c, RFC_SERVER_FIRST).unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(matches!(
            c.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(SaslStep::Done)
        ));
    }

    #[test]
    fn a_wrong_server_signature_fails() {
        let mut c = client(ScramHash::Sha256, "rOprNGfwEbeRWgbNEkqO");
        answer_first(&mut c, RFC_SERVER_FIRST).unwrap();
        assert!(matches!(
            c.step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(SaslError::ServerSignatureMismatch)
        ));
        // A signature of another length is refused the same way.
        let mut c = client(ScramHash::Sha256, "rOprNGfwEbeRWgbNEkqO");
        answer_first(&mut c, RFC_SERVER_FIRST).unwrap();
        assert!(matches!(
            c.step(b"v=AAAA"),
            Err(SaslError::ServerSignatureMismatch)
        ));
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_fails() {
        let mut c = client(ScramHash::Sha512, "abc");
        assert!(matches!(
            c.step(b"r=xyz123,s=AAAA,i=4096"),
            Err(SaslError::NonceMismatch)
        ));
    }

    /// Below Java's 4096 a captured proof is cheap to guess offline; above
    /// the cap a hostile server buys minutes of CPU. Both are refused
    /// before any PBKDF2 runs.
    #[test]
    fn iteration_counts_outside_the_bounds_are_refused_before_any_work() {
        for (i, cap) in [
            (0, SCRAM_DEFAULT_MAX_ITERATIONS),
            (1, SCRAM_DEFAULT_MAX_ITERATIONS),
            (4095, SCRAM_DEFAULT_MAX_ITERATIONS),
            (1_000_001, SCRAM_DEFAULT_MAX_ITERATIONS),
            (u32::MAX, SCRAM_DEFAULT_MAX_ITERATIONS),
            (20_000, 10_000),
        ] {
            let (mut c, _) = ScramClient::new(ScramHash::Sha256, "u", "p", "abc", cap);
            let server_first = format!("r=abcdef,s=AAAA,i={i}");
            assert!(
                matches!(
                    c.step(server_first.as_bytes()),
                    Err(SaslError::IterationCount { iterations, min: 4096, .. }) if iterations == i
                ),
                "i={i} under a cap of {cap}"
            );
        }
        for i in [4096, 1_000_000] {
            let mut c = client(ScramHash::Sha256, "abc");
            let server_first = format!("r=abcdef,s=AAAA,i={i}");
            assert!(matches!(
                c.step(server_first.as_bytes()),
                Ok(SaslStep::Derive(KeyDerivation { iterations, .. })) if iterations == i
            ));
        }
    }

    #[test]
    fn a_mandatory_extension_is_refused() {
        let mut c = client(ScramHash::Sha256, "abc");
        assert!(matches!(
            c.step(b"m=ext,r=abcdef,s=AAAA,i=4096"),
            Err(SaslError::MalformedServerMessage { .. })
        ));
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
    }
}
