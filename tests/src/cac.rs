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

impl CacPki {
    /// Make the two CAs in `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        let root = Issued {
            cert: dir.join("root.crt"),
            key: dir.join("root.key"),
        };
        let issuing = Issued {
            cert: dir.join("issuing.crt"),
            key: dir.join("issuing.key"),
        };
        let ca_ext = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
                      subjectKeyIdentifier = hash\n";
        std::fs::write(
            dir.join("ca.ext"),
            format!("{ca_ext}authorityKeyIdentifier = keyid\n"),
        )?;
        let s = |p: &Path| p.to_string_lossy().into_owned();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/C=US/O=U.S. Government/OU=DoD/OU=PKI/CN=DoD Root CA 6",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &s(&root.key),
                "-out",
                &s(&root.cert),
            ],
        )?;
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                ISSUING_SUBJECT,
                "-keyout",
                &s(&issuing.key),
                "-out",
                "issuing.csr",
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "issuing.csr",
                "-CA",
                &s(&root.cert),
                "-CAkey",
                &s(&root.key),
                "-set_serial",
                "0x0100",
                "-days",
                "20",
                "-sha256",
                "-extfile",
                "ca.ext",
                "-out",
                &s(&issuing.cert),
            ],
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
    /// DoD OUs, serial `serial` (hex, `0x...` form accepted by openssl).
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
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let csr = format!("{name}.csr");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/C=US/O=U.S. Government/OU=DoD/OU=PKI/OU=USA/CN={cn}"),
                "-keyout",
                &s(&issued.key),
                "-out",
                &csr,
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &s(&self.issuing.cert),
                "-CAkey",
                &s(&self.issuing.key),
                "-set_serial",
                serial,
                "-days",
                "5",
                "-sha256",
                "-extfile",
                &s(&ext),
                "-out",
                &s(&issued.cert),
            ],
        )?;
        Ok(issued)
    }
}
