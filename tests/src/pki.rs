//! Certificates made at test time with rcgen: a CA, a server certificate, and client
//! certificates that are valid, expired, not yet valid, from another CA, or without the
//! client-auth key usage. Each is also written as PEM files for swaks and openssl.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority that can issue more certificates.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA certificate, DER.
    pub cert_der: Vec<u8>,
}

/// A leaf certificate and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
    /// Serial, upper-case hex.
    pub serial_hex: String,
}

/// How a client certificate is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Valid now, client-auth EKU.
    Valid,
    /// Expired yesterday.
    Expired,
    /// Valid from tomorrow.
    NotYetValid,
    /// Only the server-auth EKU (wrong key usage for a client).
    WrongKeyUsage,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Postern Tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self {
            cert_pem: issuer.pem(),
            cert_der: issuer.der().to_vec(),
            issuer,
        })
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Result<Leaf> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, 1000)
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str, kind: ClientKind, serial: u64) -> Result<Leaf> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = OffsetDateTime::now_utc();
        let (nb, na) = match kind {
            ClientKind::Expired => (now - Duration::days(30), now - Duration::days(1)),
            ClientKind::NotYetValid => (now + Duration::days(1), now + Duration::days(30)),
            _ => (now - Duration::days(1), now + Duration::days(365)),
        };
        params.not_before = nb;
        params.not_after = na;
        params.extended_key_usages = match kind {
            ClientKind::WrongKeyUsage => vec![ExtendedKeyUsagePurpose::ServerAuth],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, serial)
    }

    fn sign(&self, mut params: CertificateParams, serial: u64) -> Result<Leaf> {
        let bytes = serial.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
        params.serial_number = Some(SerialNumber::from_slice(&bytes[first..]));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            serial_hex: hex_upper(&bytes[first..]),
        })
    }
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl Leaf {
    /// Write `<name>.crt` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let crt = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&crt, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((crt, key))
    }
}

impl Ca {
    /// Write `<name>.crt` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let p = dir.join(format!("{name}.crt"));
        std::fs::write(&p, &self.cert_pem)?;
        Ok(p)
    }
}
