//! The benchmark's PKI: one CA, a server certificate for 127.0.0.1/localhost and a client
//! certificate, all ECDSA P-256 or all RSA-2048 (made with the test kit's builder), written
//! as PEM files both servers read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use postern_testkit::pki::{Ca, KeyKind, days_from_now, generalized_time, hex_string};
use rcgen::KeyUsagePurpose;

/// The client certificate's subject common name (the Static backend maps it to a user).
pub(crate) const CLIENT_CN: &str = "BENCH.CLIENT.1000000001";
/// The client certificate's serial number; the big CRL never lists it (its serials start
/// with an odd byte, see `postern_testkit::crl::big_serial`).
pub(crate) const CLIENT_SERIAL: [u8; 16] = [
    0x7a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x00, 0x00, 0x00, 0x01,
];

/// One complete PKI, in memory and on disk.
pub(crate) struct Pki {
    /// Key algorithm.
    pub kind: KeyKind,
    /// The CA (kept to sign CRLs).
    pub ca: Ca,
    /// CA certificate PEM.
    pub ca_pem: String,
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

fn dir_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Ecdsa => "ecdsa",
        KeyKind::Rsa2048 => "rsa",
    }
}

impl Pki {
    /// Generate a PKI of `kind` and write it under `base/<kind>/`.
    pub(crate) fn generate(kind: KeyKind, base: &Path) -> Result<Self> {
        let ca = Ca::builder(&format!("Postern Bench CA {}", kind.label()))
            .organization("Postern Bench")
            .serial(&[0x10, 0x01])
            .valid_days(-1, 365)
            .key(kind)
            .self_signed()?;
        let server = ca
            .leaf()
            .cn("localhost")
            .names(&["localhost", "127.0.0.1"])
            .server_auth()
            .key_usages(vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ])
            .authority_key_id()
            .valid_days(-1, 30)
            .key(kind)
            .issue()?;
        let client = ca
            .leaf()
            .cn(CLIENT_CN)
            .serial(&CLIENT_SERIAL)
            .client_auth()
            .key_usages(vec![KeyUsagePurpose::DigitalSignature])
            .authority_key_id()
            .valid_days(-1, 30)
            .key(kind)
            .issue()?;
        let dir = base.join(dir_name(kind));
        std::fs::create_dir_all(&dir)?;
        let pki = Self {
            kind,
            ca_pem: ca.cert_pem(),
            server_pem: server.cert_pem,
            server_key_pem: server.key_pem,
            client_pem: client.cert_pem,
            client_key_pem: client.key_pem,
            ca,
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
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What `openssl ocsp` needs to answer for this CA as the CA itself: the CA key
    /// (`ca.key`, beside `ca.crt`) and an OpenSSL CA database (`index.txt`) listing the
    /// client certificate as valid, so its status is `good`. Returns the database's name.
    pub(crate) fn ocsp_database(&self) -> Result<&'static str> {
        const INDEX: &str = "index.txt";
        // index.txt takes UTCTime (YYMMDDHHMMSSZ) for the expiry.
        let expiry = generalized_time(days_from_now(30));
        let index = format!(
            "V\t{}\t\t{}\tunknown\t/CN={CLIENT_CN}\n",
            &expiry[2..],
            hex_string(&CLIENT_SERIAL)
        );
        for (name, text) in [("ca.key", self.ca.key.serialize_pem()), (INDEX, index)] {
            std::fs::write(self.file(name), text)
                .with_context(|| format!("writing {}", self.file(name).display()))?;
        }
        Ok(INDEX)
    }

    /// A CRL (DER) of the CA with `count` entries (16-byte serials, every tenth with a
    /// reason code, as in real CRLs), CRL number 1, valid for a day: a million entries in
    /// well under a second, none of them the bench client's serial.
    pub(crate) fn big_crl(&self, count: usize) -> Vec<u8> {
        self.ca.big_crl(1, count, CLIENT_SERIAL.len(), 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_crl_never_lists_the_client() {
        for i in 0..100_000 {
            let s = postern_testkit::crl::big_serial(i, CLIENT_SERIAL.len());
            assert_ne!(s[..CLIENT_SERIAL.len()], CLIENT_SERIAL);
        }
    }
}
