//! Certificates made per cluster for its SSL and SASL_SSL listeners.
//!
//! One throwaway CA signs a server certificate (SANs `localhost` and
//! `127.0.0.1`, so hostname verification passes against the advertised
//! address) and a client certificate for mTLS. A second, unrelated CA is made
//! too, so tests can show that a client trusting the wrong CA is refused.
//! Keys are unencrypted PKCS#8 PEM, which both rustls and Kafka's PEM key
//! store read.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{HarnessError, IoContext};

/// PEM material for one test cluster, also written to files.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA that signed the broker's and the client's certificates.
    pub ca_pem: String,
    /// The broker's certificate chain (leaf, then CA).
    pub server_chain_pem: String,
    /// The broker's private key (PKCS#8).
    pub server_key_pem: String,
    /// A client certificate signed by the same CA, for mTLS.
    pub client_cert_pem: String,
    /// The client's private key (PKCS#8).
    pub client_key_pem: String,
    /// A CA that signed nothing here: trusting only it must fail.
    pub other_ca_pem: String,
    dir: PathBuf,
}

impl TestCertificates {
    /// Generates the set and writes each PEM into `dir`.
    pub fn generate(dir: &Path) -> Result<Self, HarnessError> {
        let err = |e: rcgen::Error| HarnessError::Certificates(e.to_string());
        let (ca, ca_key) = make_ca("franz test CA").map_err(err)?;
        let (other_ca, _) = make_ca("franz unrelated CA").map_err(err)?;

        let server_key = KeyPair::generate().map_err(err)?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(err)?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca, &ca_key).map_err(err)?;

        let client_key = KeyPair::generate().map_err(err)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "franz-test-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &ca, &ca_key).map_err(err)?;

        let certs = Self {
            ca_pem: ca.pem(),
            server_chain_pem: format!("{}{}", server_cert.pem(), ca.pem()),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            other_ca_pem: other_ca.pem(),
            dir: dir.to_path_buf(),
        };
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        for (name, pem) in [
            ("ca.pem", &certs.ca_pem),
            ("server-chain.pem", &certs.server_chain_pem),
            ("server-key.pem", &certs.server_key_pem),
            ("client-cert.pem", &certs.client_cert_pem),
            ("client-key.pem", &certs.client_key_pem),
            ("other-ca.pem", &certs.other_ca_pem),
        ] {
            let path = dir.join(name);
            fs::write(&path, pem).ctx(|| format!("writing {}", path.display()))?;
        }
        Ok(certs)
    }

    /// `ca.pem`: the CA to trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `client-cert.pem`: the mTLS client certificate.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.join("client-cert.pem")
    }

    /// `client-key.pem`: the mTLS client key.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join("client-key.pem")
    }

    /// `other-ca.pem`: a CA the broker's certificate does not chain to.
    pub fn other_ca_path(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }
}

fn make_ca(name: &str) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}
