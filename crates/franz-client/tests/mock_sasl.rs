//! SASL against franz-mock: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 accept
//! the right credentials only, a client without SASL is cut off, and a
//! server whose SCRAM signature is scripted to be wrong is refused by the
//! client (the hook the reliability suite's hostile-server tests build on).
//!
//! These need no broker, so they run in every mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure

use std::time::Duration;

use franz_client::{Client, ClientConfig, ClientError, SaslError, SaslMechanism, SecurityProtocol};
use franz_mock::{Control, MockCluster, SaslMechanism as Mech, SaslUser, ScramScript};

fn mock() -> MockCluster {
    MockCluster::builder()
        .sasl_users(vec![
            SaslUser::new(Mech::Plain, "alice", "alice-secret"),
            SaslUser::new(Mech::ScramSha256, "bob", "bob-secret"),
            SaslUser::new(Mech::ScramSha512, "carol", "carol-secret"),
        ])
        .start()
        .unwrap()
}

fn config(
    mock: &MockCluster,
    mechanism: SaslMechanism,
    user: &str,
    password: &str,
) -> ClientConfig {
    ClientConfig {
        security_protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: mechanism,
        sasl_username: Some(user.into()),
        sasl_password: Some(password.into()),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(&mock.bootstrap())
    }
}

/// bob's honest SCRAM-SHA-256 login.
fn bob(mock: &MockCluster) -> ClientConfig {
    config(mock, SaslMechanism::ScramSha256, "bob", "bob-secret")
}

async fn connects(config: ClientConfig) -> Result<(), ClientError> {
    let client = Client::connect(config).await?;
    client.refresh_metadata_for(&[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mechanism_accepts_the_right_password_only() {
    let mock = mock();
    for (mechanism, user) in [
        (SaslMechanism::Plain, "alice"),
        (SaslMechanism::ScramSha256, "bob"),
        (SaslMechanism::ScramSha512, "carol"),
    ] {
        connects(config(&mock, mechanism, user, &format!("{user}-secret")))
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?} {user}: {e}"));
        let wrong = connects(config(&mock, mechanism, user, "guess"))
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, ClientError::Authentication { .. }),
            "{mechanism:?} with a wrong password: {wrong:?}"
        );
    }
    let plaintext = connects(ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(&mock.bootstrap())
    })
    .await;
    assert!(
        plaintext.is_err(),
        "a client without SASL gets nothing: {plaintext:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_wrong_server_signature_is_refused_by_the_client() {
    let mock = mock();
    let hook = mock.control(
        Control::on(franz_protocol::ApiKey::SaslAuthenticate)
            .script_scram(ScramScript::server_signature(vec![0; 32])),
    );
    let err = connects(bob(&mock)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Authentication {
                reason: SaslError::ServerSignatureMismatch,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(hook.hits() >= 1);
    mock.remove_control(&hook);
    connects(bob(&mock)).await.unwrap();
}

/// A hostile SCRAM server: one demanding 2^32 - 1 PBKDF2 iterations (hours
/// of CPU on a worker thread) and one demanding 1 (a proof cheap to guess
/// offline). Each is refused, typed, before any derivation runs: the
/// refused connect takes at most 50 ms more than an honest one (which runs
/// the whole exchange, PBKDF2 at 4096 iterations included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_iteration_bombs_are_refused_at_once() {
    let mock = mock();
    let honest = {
        let started = std::time::Instant::now();
        connects(bob(&mock)).await.unwrap();
        started.elapsed()
    };
    for iterations in [u64::from(u32::MAX), 1] {
        let hook = mock.control(
            Control::on(franz_protocol::ApiKey::SaslAuthenticate)
                .script_scram(ScramScript::iterations(iterations)),
        );
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(10), connects(bob(&mock)))
            .await
            .unwrap_or_else(|_| panic!("i={iterations}: the client spent 10 s deriving the key"))
            .unwrap_err();
        let took = started.elapsed();
        eprintln!("i={iterations}: refused after {took:?}; an honest connect took {honest:?}");
        assert!(
            matches!(
                &err,
                ClientError::Authentication {
                    reason: SaslError::IterationCount { .. },
                    ..
                }
            ),
            "i={iterations}: {err:?}"
        );
        assert!(
            took <= honest + Duration::from_millis(50),
            "i={iterations}: took {took:?}, an honest connect {honest:?}"
        );
        mock.remove_control(&hook);
    }
}
