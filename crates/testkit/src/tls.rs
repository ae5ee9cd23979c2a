//! Throwaway certificates for TLS test clusters (rcgen): a CA, and server certificates it signs.
//!
//! [`TestCa::cloud_sql_server`] issues what a Cloud SQL instance presents with its per-instance
//! CA: the instance named in the subject's common name (`PROJECT:INSTANCE`), no subject
//! alternative name for the IP clients dial (GoogleCloudPlatform/cloud-sql-go-connector,
//! `internal/cloudsql/tls_verify.go`: "Cloud SQL creates server certificates with the instance
//! name in the Subject.CN field in the format "my-project:my-instance""). Hostname verification
//! fails on it; chain verification passes.

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A server's certificate and key, PEM.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed CA.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA whose subject is `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = named(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().context("generating the CA key")?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA certificate, PEM (what clients trust).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate as a Cloud SQL instance has one: `CN = project:instance`, no SAN.
    pub fn cloud_sql_server(&self, project: &str, instance: &str) -> anyhow::Result<ServerTls> {
        self.server(&format!("{project}:{instance}"), &[])
    }

    /// A server certificate with common name `cn` and DNS or IP subject alternative names `sans`.
    pub fn server(&self, cn: &str, sans: &[&str]) -> anyhow::Result<ServerTls> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = named(cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("generating the server key")?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn named(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}
