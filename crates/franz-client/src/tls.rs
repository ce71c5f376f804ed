//! TLS with rustls: a CA file, PEM text or the system roots; optional
//! client certificates (mTLS); SNI; hostname verification on by default.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig as RustlsConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::ClientConfig;
use crate::error::ClientError;

fn config_err(msg: String) -> ClientError {
    ClientError::Config(format!("TLS: {msg}"))
}

/// Builds the rustls configuration for `config` (called once per client).
pub(crate) fn rustls_config(config: &ClientConfig) -> Result<Arc<RustlsConfig>, ClientError> {
    // ring, chosen over rustls's aws-lc-rs provider, which builds a C
    // library with cmake. rustls 0.23.48 deprecates ring's provider because
    // it lacks post-quantum key exchange: franz does not offer that yet, and
    // the warning is silenced here on purpose, not by accident.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let ca_pem = match (&config.ssl_ca_pem, &config.ssl_ca_location) {
        (Some(pem), _) => Some(pem.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| config_err(format!("reading {}: {e}", path.display())))?,
        ),
        (None, None) => None,
    };
    match ca_pem {
        Some(pem) => {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| config_err(format!("CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| config_err(format!("CA certificate: {e}")))?;
                n += 1;
            }
            if n == 0 {
                return Err(config_err("the CA PEM holds no certificate".into()));
            }
        }
        None => {
            // The operating system's trust store; the bundled Mozilla roots
            // only when it has none (e.g. a bare container).
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    let builder = RustlsConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?;
    let builder = if config.ssl_endpoint_identification {
        builder.with_root_certificates(roots)
    } else {
        // Chain still verified, host name not (Java's empty
        // ssl.endpoint.identification.algorithm).
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| config_err(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoHostnameVerifier { inner }))
    };
    let tls = match (&config.ssl_certificate_location, &config.ssl_key_location) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| config_err(format!("{}: {e}", cert.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| config_err(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| config_err(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_err(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(tls))
}

/// The name to send as SNI and to verify: the override, else the host.
pub(crate) fn server_name(
    config: &ClientConfig,
    host: &str,
) -> Result<ServerName<'static>, ClientError> {
    let name = config.ssl_sni_host.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string())
        .map_err(|e| config_err(format!("server name {name:?}: {e}")))
}

/// Verifies the chain but not the host name.
#[derive(Debug)]
struct NoHostnameVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(ok) => Ok(ok),
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
