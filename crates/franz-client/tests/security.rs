//! TLS and SASL against real listeners: mTLS given and missing, a wrong CA,
//! PLAIN and SCRAM-SHA-512 over SASL_PLAINTEXT, SCRAM-SHA-256 over SASL_SSL,
//! OAUTHBEARER with the broker's unsecured JWS validator, a wrong password,
//! and in-band re-authentication with a short `connections.max.reauth.ms`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use franz_client::franz_protocol::messages::MetadataRequest;
use franz_client::{
    Client, ClientConfig, ClientError, ConnectionKind, SaslMechanism, SecurityProtocol,
};
use franz_testkit::{ClientAuth, KafkaCluster, SecurityProtocol as Listener};

fn unsecured_jws(sub: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = b64.encode(br#"{"alg":"none"}"#);
    let payload = b64.encode(format!(
        r#"{{"sub":"{sub}","iat":{now},"exp":{}}}"#,
        now + 3600
    ));
    format!("{header}.{payload}.")
}

async fn metadata_works(config: ClientConfig) -> Result<(), ClientError> {
    let client = Client::connect(config).await?;
    let conn = client.any_connection(ConnectionKind::Other).await?;
    conn.send(&MetadataRequest::default()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_sasl_accept_the_right_credentials_only() {
    if franz_testkit::real_broker_only("TLS and SASL listeners of its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .ssl_listener()
        .sasl_plaintext_listener()
        .sasl_ssl_listener()
        .client_auth(ClientAuth::Required)
        .scram_user("alice", "alice-secret")
        .broker_config("connections.max.reauth.ms", "3000")
        .start()
        .await
        .unwrap();
    let tls = cluster.tls().unwrap().clone();
    let ssl = cluster.bootstrap_for(Listener::Ssl).unwrap();
    let sasl = cluster.bootstrap_for(Listener::SaslPlaintext).unwrap();
    let sasl_ssl = cluster.bootstrap_for(Listener::SaslSsl).unwrap();
    let quick = |bootstrap: &str| ClientConfig {
        socket_connection_setup_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::new(bootstrap)
    };
    let with_tls = |mut c: ClientConfig, ca: std::path::PathBuf, cert: bool| {
        c.security_protocol = SecurityProtocol::Ssl;
        c.ssl_ca_location = Some(ca);
        if cert {
            c.ssl_certificate_location = Some(tls.client_cert_path());
            c.ssl_key_location = Some(tls.client_key_path());
        }
        c
    };

    // mTLS required and given (hostname verification on: the certificate
    // names 127.0.0.1).
    metadata_works(with_tls(quick(&ssl), tls.ca_path(), true))
        .await
        .unwrap();
    // Required and missing: refused.
    assert!(
        metadata_works(with_tls(quick(&ssl), tls.ca_path(), false))
            .await
            .is_err()
    );
    // A CA that did not sign the broker's certificate: a TLS error.
    let err = metadata_works(with_tls(quick(&ssl), tls.other_ca_path(), true))
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Tls { .. }), "{err:?}");

    // SASL_PLAINTEXT: PLAIN and SCRAM-SHA-512.
    metadata_works(quick(&sasl).with_sasl(SaslMechanism::Plain, "alice", "alice-secret"))
        .await
        .unwrap();
    metadata_works(quick(&sasl).with_sasl(SaslMechanism::ScramSha512, "alice", "alice-secret"))
        .await
        .unwrap();
    // A wrong password: an authentication error, never a silent fallback.
    let err = Client::connect(quick(&sasl).with_sasl(SaslMechanism::ScramSha512, "alice", "wrong"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Authentication { .. }),
        "{err:?}"
    );

    // SASL_SSL with SCRAM-SHA-256 (plus the client certificate mTLS wants).
    let mut c = with_tls(quick(&sasl_ssl), tls.ca_path(), true).with_sasl(
        SaslMechanism::ScramSha256,
        "alice",
        "alice-secret",
    );
    assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
    c.request_timeout = Duration::from_secs(10);
    metadata_works(c).await.unwrap();

    // OAUTHBEARER against the unsecured JWS validator.
    let mut oauth = quick(&sasl);
    oauth.security_protocol = SecurityProtocol::SaslPlaintext;
    oauth.sasl_mechanism = SaslMechanism::OAuthBearer;
    oauth.sasl_oauthbearer_token_provider = Some(Arc::new(|| Ok(unsecured_jws("alice"))));
    metadata_works(oauth).await.unwrap();

    // Re-authentication: the broker's session lifetime is 3 s; requests keep
    // working for longer, on the same connection, re-authenticated in place
    // (KIP-368).
    let client = Client::connect(quick(&sasl).with_sasl(
        SaslMechanism::ScramSha512,
        "alice",
        "alice-secret",
    ))
    .await
    .unwrap();
    let first = client.any_connection(ConnectionKind::Other).await.unwrap();
    let reauths = |c: &Client| {
        c.metrics()
            .values()
            .map(|m| m.reauthentications)
            .sum::<u64>()
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let conn = client.any_connection(ConnectionKind::Other).await.unwrap();
        conn.send(&MetadataRequest::default()).await.unwrap();
        assert_eq!(
            conn.created(),
            first.created(),
            "the session lifetime should not have retired the connection"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(first.is_open());
    assert!(
        reauths(&client) >= 2,
        "{} re-authentications",
        reauths(&client)
    );
}
