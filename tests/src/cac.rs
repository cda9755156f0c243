//! Certificates shaped like a DoD Common Access Card's, made with the `openssl` command line:
//! a root and an issuing CA named like the DoD's (`C=US, O=U.S. Government, OU=DoD, OU=PKI`),
//! and one person's three card certificates — PIV authentication (UPN otherName SAN
//! `<EDIPI>@mil`, EKUs clientAuth + smartcardLogon + pkinit, the PIV-auth-like policy),
//! email signing (email and UPN SANs, emailProtection + clientAuth, the medium-hardware-like
//! policy) and email encryption (email SAN only, emailProtection + msEFS + clientAuth). The
//! policy OIDs are DoD-like (under the DoD's arc `2.16.840.1.101.2.1.11`), not a claim about
//! which DoD policy is which.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::openssl_ca::{Issued, openssl};

/// The PIV-authentication-like policy OID of the PIV authentication certificate.
pub const PIV_AUTH_POLICY: &str = "2.16.840.1.101.2.1.11.42";
/// The medium-hardware-like policy OID of the email certificates.
pub const EMAIL_POLICY: &str = "2.16.840.1.101.2.1.11.39";
/// Microsoft's smartcardLogon EKU.
pub const SMARTCARD_LOGON: &str = "1.3.6.1.4.1.311.20.2.2";
/// The issuing CA's subject, as `-subj`.
pub const ISSUING_SUBJECT: &str = "/C=US/O=U.S. Government/OU=DoD/OU=PKI/CN=DOD ID CA-70";

/// Which of a card's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardCert {
    /// PIV authentication.
    PivAuth,
    /// Email signing.
    EmailSigning,
    /// Email encryption.
    EmailEncryption,
}

impl CardCert {
    fn extensions(self, edipi: &str, email: &str) -> String {
        let base = "basicConstraints = critical, CA:FALSE\nsubjectKeyIdentifier = hash\n\
                    authorityKeyIdentifier = keyid\n";
        match self {
            Self::PivAuth => format!(
                "{base}keyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = clientAuth, {SMARTCARD_LOGON}, 1.3.6.1.5.2.3.4\n\
                 certificatePolicies = {PIV_AUTH_POLICY}\n\
                 subjectAltName = otherName:1.3.6.1.4.1.311.20.2.3;UTF8:{edipi}@mil\n"
            ),
            Self::EmailSigning => format!(
                "{base}keyUsage = critical, digitalSignature, nonRepudiation\n\
                 extendedKeyUsage = emailProtection, clientAuth\n\
                 certificatePolicies = {EMAIL_POLICY}\n\
                 subjectAltName = email:{email}, otherName:1.3.6.1.4.1.311.20.2.3;UTF8:{edipi}@mil\n"
            ),
            Self::EmailEncryption => format!(
                "{base}keyUsage = critical, keyEncipherment\n\
                 extendedKeyUsage = emailProtection, 1.3.6.1.4.1.311.10.3.4, clientAuth\n\
                 certificatePolicies = {EMAIL_POLICY}\n\
                 subjectAltName = email:{email}\n"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::PivAuth => "piv",
            Self::EmailSigning => "sign",
            Self::EmailEncryption => "encrypt",
        }
    }
}

/// A DoD-like root and issuing CA in a directory.
#[derive(Debug)]
pub struct CacPki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The root CA.
    pub root: Issued,
    /// The issuing CA (signed by the root).
    pub issuing: Issued,
}

/// A new P-256 key and a certificate request for `subj` (`req -new`), files in `dir`.
pub fn request(dir: &Path, subj: &str, key: &str, csr: &str) -> Result<()> {
    let mut args = vec!["req", "-new"];
    args.extend(EC_KEY);
    args.extend(["-subj", subj, "-keyout", key, "-out", csr]);
    openssl(dir, &args).map(drop)
}

/// A self-signed CA certificate with a new P-256 key (`req -x509`), files in `dir`.
pub fn self_signed_ca(dir: &Path, subj: &str, key: &str, cert: &str) -> Result<()> {
    let mut args = vec!["req", "-x509", "-days", "30"];
    args.extend(EC_KEY);
    args.extend(["-subj", subj, "-keyout", key, "-out", cert]);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &args).map(drop)
}

/// Sign `csr` with a CA (`x509 -req`), serial `serial` (openssl's `0x...` form), with the
/// extensions of `extfile` when given.
pub fn sign(
    dir: &Path,
    csr: &str,
    ca: &Issued,
    serial: &str,
    extfile: Option<&Path>,
    out: &str,
) -> Result<()> {
    let (ca_cert, ca_key) = (ca.cert.to_string_lossy(), ca.key.to_string_lossy());
    let mut args = vec![
        "x509", "-req", "-in", csr, "-CA", &ca_cert, "-CAkey", &ca_key,
    ];
    args.extend(["-set_serial", serial, "-days", "5", "-sha256", "-out", out]);
    let ext = extfile.map(|e| e.to_string_lossy().into_owned());
    if let Some(ext) = &ext {
        args.extend(["-extfile", ext.as_str()]);
    }
    openssl(dir, &args).map(drop)
}

/// The key options of every key made here.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

impl CacPki {
    /// Make the two CAs in `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        let issued = |name: &str| Issued {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        let (root, issuing) = (issued("root"), issued("issuing"));
        std::fs::write(
            dir.join("ca.ext"),
            "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )?;
        let root_subj = "/C=US/O=U.S. Government/OU=DoD/OU=PKI/CN=DoD Root CA 6";
        self_signed_ca(dir, root_subj, "root.key", "root.crt")?;
        request(dir, ISSUING_SUBJECT, "issuing.key", "issuing.csr")?;
        sign(
            dir,
            "issuing.csr",
            &root,
            "0x0100",
            Some(&dir.join("ca.ext")),
            "issuing.crt",
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            root,
            issuing,
        })
    }

    /// The root and issuing CA certificates, PEM (a Listener's `clientCaSecretRef`).
    pub fn ca_bundle_pem(&self) -> String {
        format!("{}{}", self.root.cert_pem(), self.issuing.cert_pem())
    }

    /// One of a person's card certificates: subject `CN=<LAST.FIRST.MI.EDIPI>` under the
    /// DoD OUs, serial `serial` (openssl's `0x...` form).
    pub fn card(
        &self,
        which: CardCert,
        cn: &str,
        edipi: &str,
        email: &str,
        serial: &str,
    ) -> Result<Issued> {
        let name = format!("{edipi}-{}", which.name());
        let issued = Issued {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, which.extensions(edipi, email))?;
        let subj = format!("/C=US/O=U.S. Government/OU=DoD/OU=PKI/OU=USA/CN={cn}");
        let csr = format!("{name}.csr");
        request(&self.dir, &subj, &format!("{name}.key"), &csr)?;
        sign(
            &self.dir,
            &csr,
            &self.issuing,
            serial,
            Some(&ext),
            &format!("{name}.crt"),
        )?;
        Ok(issued)
    }
}
