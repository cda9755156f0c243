//! The benchmark's PKI: one CA, a server certificate for 127.0.0.1/localhost and a client
//! certificate, all ECDSA P-256 or all RSA-2048, written as PEM files both servers read.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Key algorithm of every key of a [`Pki`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256.
    Ecdsa,
    /// RSA 2048-bit, PKCS#1 v1.5 signatures with SHA-256 for certificates.
    Rsa2048,
}

impl KeyKind {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ecdsa => "ECDSA P-256",
            Self::Rsa2048 => "RSA-2048",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Self::Ecdsa => "ecdsa",
            Self::Rsa2048 => "rsa",
        }
    }
}

/// The client certificate's subject common name (the Static backend maps it to a user).
pub const CLIENT_CN: &str = "BENCH.CLIENT.1000000001";
/// The client certificate's serial number; the big CRL never lists it.
pub const CLIENT_SERIAL: [u8; 16] = [
    0x7a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x00, 0x00, 0x00, 0x01,
];

/// One complete PKI, in memory and on disk.
pub struct Pki {
    /// Key algorithm.
    pub kind: KeyKind,
    /// CA parameters and key (kept to sign CRLs).
    pub ca_params: CertificateParams,
    /// CA key.
    pub ca_key: KeyPair,
    /// CA certificate PEM.
    pub ca_pem: String,
    /// CA certificate DER.
    pub ca_der: Vec<u8>,
    /// Server certificate PEM (leaf only; the CA is the trust anchor).
    pub server_pem: String,
    /// Server key PEM (PKCS#8).
    pub server_key_pem: String,
    /// Client certificate PEM.
    pub client_pem: String,
    /// Client key PEM (PKCS#8).
    pub client_key_pem: String,
    /// Directory holding ca.crt, server.crt, server.key, client.crt, client.key.
    pub dir: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("kind", &self.kind)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn new_key(kind: KeyKind) -> Result<KeyPair> {
    match kind {
        KeyKind::Ecdsa => Ok(KeyPair::generate()?),
        KeyKind::Rsa2048 => {
            // ring (rcgen's backend) signs with RSA but does not generate RSA keys.
            let out = Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .context("running openssl genpkey (is openssl installed?)")?;
            if !out.status.success() {
                bail!(
                    "openssl genpkey failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let pem = String::from_utf8(out.stdout)?;
            Ok(KeyPair::from_pem_and_sign_algo(
                &pem,
                &rcgen::PKCS_RSA_SHA256,
            )?)
        }
    }
}

impl Pki {
    /// Generate a PKI of `kind` and write it under `base/<kind>/`.
    pub fn generate(kind: KeyKind, base: &Path) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let ca_key = new_key(kind)?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("Postern Bench CA {}", kind.label()),
        );
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "Postern Bench");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.key_identifier_method = KeyIdMethod::Sha256;
        ca_params.serial_number = Some(SerialNumber::from_slice(&[0x10, 0x01]));
        ca_params.not_before = now - Duration::days(1);
        ca_params.not_after = now + Duration::days(365);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let server_key = new_key(kind)?;
        let mut sp = CertificateParams::new(vec!["localhost".to_owned()])?;
        sp.subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V4(
                std::net::Ipv4Addr::LOCALHOST,
            )));
        sp.distinguished_name.push(DnType::CommonName, "localhost");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        sp.use_authority_key_identifier_extension = true;
        sp.not_before = now - Duration::days(1);
        sp.not_after = now + Duration::days(30);
        let server = sp.signed_by(&server_key, &issuer)?;

        let client_key = new_key(kind)?;
        let mut cp = CertificateParams::default();
        cp.distinguished_name.push(DnType::CommonName, CLIENT_CN);
        cp.serial_number = Some(SerialNumber::from_slice(&CLIENT_SERIAL));
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        cp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        cp.use_authority_key_identifier_extension = true;
        cp.not_before = now - Duration::days(1);
        cp.not_after = now + Duration::days(30);
        let client = cp.signed_by(&client_key, &issuer)?;

        let dir = base.join(kind.dir_name());
        std::fs::create_dir_all(&dir)?;
        let pki = Self {
            kind,
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            ca_params,
            ca_key,
            dir,
        };
        for (name, text) in [
            ("ca.crt", &pki.ca_pem),
            ("server.crt", &pki.server_pem),
            ("server.key", &pki.server_key_pem),
            ("client.crt", &pki.client_pem),
            ("client.key", &pki.client_key_pem),
        ] {
            std::fs::write(pki.dir.join(name), text)
                .with_context(|| format!("writing {}", pki.dir.join(name).display()))?;
        }
        Ok(pki)
    }

    /// Path of one of the PEM files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The key id certificates of this CA carry as Authority Key Identifier.
    pub fn ca_key_id(&self) -> Vec<u8> {
        self.ca_params.key_identifier(&self.ca_key)
    }
}
