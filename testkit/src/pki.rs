//! Certificates made at test time with rcgen: certificate authorities (root or
//! intermediate, ECDSA or RSA) and the leaves they issue (TLS servers, TLS clients that
//! are valid, expired, not yet valid or for the wrong purpose, or from caller-built
//! parameters). The CRLs a [`Ca`] signs are in [`crate::crl`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Key algorithm of a certificate's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (rcgen's default).
    #[default]
    Ecdsa,
    /// RSA 2048-bit, PKCS#1 v1.5 signatures with SHA-256.
    Rsa2048,
}

impl KeyKind {
    /// Short label for tables and names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ecdsa => "ECDSA P-256",
            Self::Rsa2048 => "RSA-2048",
        }
    }

    /// A new key of this kind.
    pub fn generate(self) -> Result<KeyPair> {
        match self {
            Self::Ecdsa => Ok(KeyPair::generate()?),
            Self::Rsa2048 => {
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
}

/// The serial number of a certificate as its DER INTEGER content (what a revocation
/// check is asked about).
pub fn raw_serial(der: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("certificate");
    c.raw_serial().to_vec()
}

/// Upper-case hex, as `{sn}`, the logs and `crl inspect --serial` write serials.
pub fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `now + days`, for validity windows.
pub fn days_from_now(days: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(days)
}

/// GeneralizedTime text (`YYYYMMDDHHMMSSZ`), as LDAP attributes and `openssl ca
/// -startdate` take it.
pub fn generalized_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A certificate authority with its key.
pub struct Ca {
    /// Parameters (kept to issue with, and to re-key).
    pub params: CertificateParams,
    /// The CA key.
    pub key: KeyPair,
    /// The CA certificate.
    pub cert: rcgen::Certificate,
    /// Serial number of the CA certificate (DER INTEGER content, as in the certificate).
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.params.distinguished_name)
            .field("serial", &hex_string(&self.serial))
            .finish_non_exhaustive()
    }
}

/// How a CA is made: start with [`Ca::builder`].
#[derive(Debug)]
pub struct CaBuilder {
    params: CertificateParams,
    key: KeyKind,
}

impl CaBuilder {
    /// Add `O=<o>` after the common name.
    pub fn organization(mut self, o: &str) -> Self {
        self.params
            .distinguished_name
            .push(DnType::OrganizationName, o);
        self
    }

    /// The certificate's serial (default: random).
    pub fn serial(mut self, serial: &[u8]) -> Self {
        self.params.serial_number = Some(SerialNumber::from_slice(serial));
        self
    }

    /// Valid from `not_before` to `not_after` (default: rcgen's, 1975 to 4096).
    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.params.not_before = not_before;
        self.params.not_after = not_after;
        self
    }

    /// Valid from `from` days to `to` days from now.
    pub fn valid_days(self, from: i64, to: i64) -> Self {
        self.validity(days_from_now(from), days_from_now(to))
    }

    /// Key usages (default: keyCertSign, cRLSign, digitalSignature).
    pub fn key_usages(mut self, usages: Vec<KeyUsagePurpose>) -> Self {
        self.params.key_usages = usages;
        self
    }

    /// Key algorithm (default ECDSA P-256).
    pub fn key(mut self, kind: KeyKind) -> Self {
        self.key = kind;
        self
    }

    /// A self-signed root.
    pub fn self_signed(self) -> Result<Ca> {
        let key = self.key.generate()?;
        let cert = self.params.self_signed(&key)?;
        Ok(Ca::from_parts(self.params, key, cert))
    }

    /// An intermediate signed by `parent`.
    pub fn signed_by(self, parent: &Ca) -> Result<Ca> {
        let key = self.key.generate()?;
        let cert = self.params.signed_by(&key, &parent.issuer())?;
        Ok(Ca::from_parts(self.params, key, cert))
    }
}

impl Ca {
    /// A CA named `CN=<cn>` (basicConstraints CA, keyCertSign + cRLSign +
    /// digitalSignature, SHA-256 key identifier), to adjust and sign.
    pub fn builder(cn: &str) -> CaBuilder {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CaBuilder {
            params,
            key: KeyKind::Ecdsa,
        }
    }

    /// A self-signed CA `CN=<cn>` with the builder's defaults.
    pub fn new(cn: &str) -> Self {
        Self::builder(cn).self_signed().expect("CA")
    }

    /// [`Ca::new`] with other key usages (a CA that may not sign CRLs, say).
    pub fn with_usages(cn: &str, usages: Vec<KeyUsagePurpose>) -> Self {
        Self::builder(cn)
            .key_usages(usages)
            .self_signed()
            .expect("CA")
    }

    /// The root the CRL tests use: `CN=<cn>, O=Postern Test PKI`, serial 1001, valid
    /// from yesterday for a year.
    pub fn root(cn: &str) -> Self {
        Self::test_pki(cn)
            .serial(&[0x10, 0x01])
            .self_signed()
            .expect("root")
    }

    /// A root for the TLS client tests: `CN=<cn>, O=Postern Tests`, valid from a month
    /// ago for ten years.
    pub fn long_lived(cn: &str) -> Self {
        Self::builder(cn)
            .organization("Postern Tests")
            .valid_days(-30, 3650)
            .self_signed()
            .expect("CA")
    }

    /// An intermediate like [`Ca::root`], issued by `parent` with `serial`.
    pub fn intermediate(cn: &str, parent: &Ca, serial: &[u8]) -> Self {
        Self::test_pki(cn)
            .serial(serial)
            .signed_by(parent)
            .expect("intermediate")
    }

    fn test_pki(cn: &str) -> CaBuilder {
        Self::builder(cn)
            .organization("Postern Test PKI")
            .valid_days(-1, 365)
    }

    fn from_parts(params: CertificateParams, key: KeyPair, cert: rcgen::Certificate) -> Self {
        let serial = raw_serial(cert.der());
        Self {
            params,
            key,
            cert,
            serial,
        }
    }

    /// The same name and serial with another key: a re-keyed CA, or an impostor (what it
    /// signs must be refused).
    pub fn rekeyed(&self) -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = self.params.self_signed(&key).expect("re-keyed CA");
        Self {
            params: self.params.clone(),
            key,
            cert,
            serial: self.serial.clone(),
        }
    }

    /// The issuer handle for rcgen.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// CA certificate PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// CA certificate DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// Write the CA certificate to `<dir>/<name>.crt`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let p = dir.join(format!("{name}.crt"));
        std::fs::write(&p, self.cert_pem())?;
        Ok(p)
    }

    /// Raw DER of the subject Name.
    pub fn subject_der(&self) -> Vec<u8> {
        let (_, c) = x509_parser::parse_x509_certificate(self.cert.der()).expect("own cert");
        c.subject().as_raw().to_vec()
    }

    /// The key id that certificates issued by this CA carry as Authority Key Identifier.
    pub fn key_id(&self) -> Vec<u8> {
        self.params.key_identifier(&self.key)
    }

    /// A leaf to describe and issue, with an empty subject.
    pub fn leaf(&self) -> LeafBuilder<'_> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        LeafBuilder {
            ca: self,
            params,
            key: KeyKind::Ecdsa,
        }
    }

    /// A certificate from caller-built parameters, with a new ECDSA key.
    pub fn issue(&self, params: CertificateParams) -> Leaf {
        LeafBuilder {
            ca: self,
            params,
            key: KeyKind::Ecdsa,
        }
        .issue()
        .expect("certificate")
    }

    /// A TLS server certificate for `name` (a DNS name or an IP address), valid from
    /// yesterday for 30 days.
    pub fn server(&self, name: &str) -> Leaf {
        self.leaf()
            .cn(name)
            .names(&[name])
            .server_auth()
            .valid_days(-1, 30)
            .issue()
            .expect("server certificate")
    }

    /// A TLS server certificate for `localhost` and 127.0.0.1.
    pub fn localhost_server(&self) -> Leaf {
        self.leaf()
            .cn("localhost")
            .names(&["localhost", "127.0.0.1"])
            .server_auth()
            .authority_key_id()
            .issue()
            .expect("server certificate")
    }

    /// A valid TLS client certificate for `cn` with `serial`.
    pub fn client(&self, cn: &str, serial: &[u8]) -> Leaf {
        self.client_of(cn, ClientKind::Valid, serial)
    }

    /// A TLS client certificate of `kind` for `cn` with `serial` (digitalSignature,
    /// Authority Key Identifier).
    pub fn client_of(&self, cn: &str, kind: ClientKind, serial: &[u8]) -> Leaf {
        let (from, to) = match kind {
            ClientKind::Expired => (-30, -1),
            ClientKind::NotYetValid => (1, 30),
            ClientKind::Valid | ClientKind::WrongKeyUsage => (-1, 30),
        };
        let leaf = self
            .leaf()
            .cn(cn)
            .serial(serial)
            .key_usages(vec![KeyUsagePurpose::DigitalSignature])
            .authority_key_id()
            .valid_days(from, to);
        match kind {
            ClientKind::WrongKeyUsage => leaf.server_auth(),
            _ => leaf.client_auth(),
        }
        .issue()
        .expect("client certificate")
    }
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

/// A leaf certificate being described: start with [`Ca::leaf`].
#[derive(Debug)]
pub struct LeafBuilder<'a> {
    ca: &'a Ca,
    params: CertificateParams,
    key: KeyKind,
}

impl LeafBuilder<'_> {
    /// Add `CN=<cn>` to the subject.
    pub fn cn(mut self, cn: &str) -> Self {
        self.params.distinguished_name.push(DnType::CommonName, cn);
        self
    }

    /// Subject alternative names: IP addresses, else DNS names.
    pub fn names(mut self, names: &[&str]) -> Self {
        for n in names {
            self.params.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("DNS name")),
            });
        }
        self
    }

    /// Extended key usage serverAuth.
    pub fn server_auth(mut self) -> Self {
        self.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self
    }

    /// Extended key usage clientAuth.
    pub fn client_auth(mut self) -> Self {
        self.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self
    }

    /// Key usages (default none).
    pub fn key_usages(mut self, usages: Vec<KeyUsagePurpose>) -> Self {
        self.params.key_usages = usages;
        self
    }

    /// The serial (DER INTEGER content; default random).
    pub fn serial(mut self, serial: &[u8]) -> Self {
        self.params.serial_number = Some(SerialNumber::from_slice(serial));
        self
    }

    /// Valid from `from` days to `to` days from now (default: rcgen's, 1975 to 4096).
    pub fn valid_days(mut self, from: i64, to: i64) -> Self {
        self.params.not_before = days_from_now(from);
        self.params.not_after = days_from_now(to);
        self
    }

    /// Carry the issuer's key id as Authority Key Identifier.
    pub fn authority_key_id(mut self) -> Self {
        self.params.use_authority_key_identifier_extension = true;
        self
    }

    /// Key algorithm (default ECDSA P-256).
    pub fn key(mut self, kind: KeyKind) -> Self {
        self.key = kind;
        self
    }

    /// Sign it with a new key.
    pub fn issue(self) -> Result<Leaf> {
        let key = self.key.generate()?;
        let cert = self.params.signed_by(&key, &self.ca.issuer())?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: raw_serial(cert.der()),
            cert_der: cert.der().to_vec(),
        })
    }
}

/// A leaf certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
    /// Serial number (DER INTEGER content, as in the certificate).
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("serial", &self.serial_hex())
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// The serial, upper-case hex.
    pub fn serial_hex(&self) -> String {
        hex_string(&self.serial)
    }

    /// Write `<name>.crt` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let crt = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&crt, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((crt, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).unwrap().1
    }

    #[test]
    fn root_and_intermediate() {
        let root = Ca::root("Kit Root");
        assert_eq!(root.serial, [0x10, 0x01]);
        let inter = Ca::intermediate("Kit Inter", &root, &[0x22]);
        assert_eq!(inter.serial, [0x22]);
        let c = parse(inter.cert.der());
        assert_eq!(c.issuer().to_string(), "CN=Kit Root, O=Postern Test PKI");
        assert!(c.is_ca());
        assert_eq!(root.rekeyed().subject_der(), root.subject_der());
        assert_ne!(root.rekeyed().key_id(), root.key_id());
    }

    #[test]
    fn clients_of_every_kind() {
        let ca = Ca::new("Kit CA");
        let now = OffsetDateTime::now_utc();
        let valid = ca.client_of("A", ClientKind::Valid, &[0x0d, 0xd0]);
        assert_eq!(valid.serial_hex(), "0DD0");
        let c = parse(&valid.cert_der);
        assert!(c.validity().is_valid());
        assert_eq!(c.subject().to_string(), "CN=A");
        let expired = ca.client_of("A", ClientKind::Expired, &[1]);
        assert!(parse(&expired.cert_der).validity().not_after.timestamp() < now.unix_timestamp());
        let future = ca.client_of("A", ClientKind::NotYetValid, &[2]);
        assert!(parse(&future.cert_der).validity().not_before.timestamp() > now.unix_timestamp());
        let wrong = ca.client_of("A", ClientKind::WrongKeyUsage, &[3]);
        let parsed = parse(&wrong.cert_der);
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
    }

    #[test]
    fn servers_name_what_they_serve() {
        let ca = Ca::new("Kit CA");
        let s = ca.localhost_server();
        let c = parse(&s.cert_der);
        let san = c.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names.len(), 2);
        let named = ca.server("mail.test");
        assert_eq!(parse(&named.cert_der).subject().to_string(), "CN=mail.test");
    }
}
