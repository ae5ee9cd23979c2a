//! Throwaway certificates for TLS test clusters (rcgen): a CA, and server certificates it signs.
//!
//! [`TestCa::cloud_sql_server`] issues what a Cloud SQL instance presents with its per-instance
//! CA: the instance named in the subject's common name (`PROJECT:INSTANCE`), no subject
//! alternative name for the IP clients dial (GoogleCloudPlatform/cloud-sql-go-connector,
//! `internal/cloudsql/tls_verify.go`: "Cloud SQL creates server certificates with the instance
//! name in the Subject.CN field in the format "my-project:my-instance""). Hostname verification
//! fails on it; chain verification passes.

use anyhow::Context as _;

use crate::{ClusterOptions, PgCluster};
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

/// A TLS-only cluster of its own ([`ClusterOptions::tls`]) whose certificate a fresh CA signed
/// as Cloud SQL's per-instance CA signs an instance's, with one login role (SCRAM password)
/// owning one database, `items`.
#[derive(Debug)]
pub struct TlsDatabase {
    pub cluster: PgCluster,
    pub ca: TestCa,
    pub user: String,
}

impl TlsDatabase {
    /// Starts the cluster (blocking work off the async threads) and creates `user` with
    /// `password`.
    pub async fn start(user: &str, password: &str) -> anyhow::Result<Self> {
        let ca = TestCa::new("items test server CA")?;
        let certificate = ca.cloud_sql_server("test-project", "items-test")?;
        let cluster = tokio::task::spawn_blocking(move || {
            PgCluster::start(&ClusterOptions {
                fast_unsafe: true,
                max_connections: 40,
                tls: Some(certificate),
                ..ClusterOptions::default()
            })
        })
        .await??;
        let database = Self {
            cluster,
            ca,
            user: user.to_owned(),
        };
        let admin = database.admin().await?;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quoted(user, '"'),
                quoted(password, '\'')
            ))
            .await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE items OWNER {}",
                quoted(user, '"')
            ))
            .await?;
        Ok(database)
    }

    /// The superuser, over the unix socket.
    pub async fn admin(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.cluster.socket_url("postgres"), tokio_postgres::NoTls)
                .await
                .context("connecting as the superuser over the unix socket")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Sets the role's password.
    pub async fn set_password(&self, password: &str) -> anyhow::Result<()> {
        self.admin()
            .await?
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                quoted(&self.user, '"'),
                quoted(password, '\'')
            ))
            .await?;
        Ok(())
    }

    /// Ends every session of the role, so that its clients need new connections; returns once
    /// they had a moment to notice.
    pub async fn disconnect_user(&self) -> anyhow::Result<()> {
        self.admin()
            .await?
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&self.user],
            )
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Ok(())
    }

    /// How many sessions of the role are encrypted.
    pub async fn encrypted_sessions(&self) -> anyhow::Result<i64> {
        Ok(self
            .admin()
            .await?
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE usename = $1 AND ssl",
                &[&self.user],
            )
            .await?
            .get(0))
    }
}

/// `text` between `quote`s, inner quotes doubled (an SQL identifier or literal).
fn quoted(text: &str, quote: char) -> String {
    let doubled = text.replace(quote, &format!("{quote}{quote}"));
    format!("{quote}{doubled}{quote}")
}
