//! `postern-gateway crl inspect FILE [--serial HEX]... [--ca CAFILE] [--json]`: what a CRL
//! file says, for the operator looking at a refused certificate or a refused CRL.
//!
//! Exit status: 0 when the file reads (and verifies, with `--ca`) and no given serial is
//! revoked; 2 when a given serial is revoked; 1 when the file cannot be read, parsed or
//! verified.

use std::path::PathBuf;

use serde::Serialize;

use super::index::canonical_serial;
use super::parse::{ParseError, ParsedCrl, reason_name, split};
use super::verify::TrustStore;
use super::{rfc3339, unix_now};
use crate::tls::DpName;
use postern_config::CrlFormat;

/// Arguments of `crl inspect`.
#[derive(Clone, Debug, clap::Args)]
pub struct InspectArgs {
    /// The CRL file: DER, PEM with one or more `X509 CRL` blocks, or a ZIP archive of
    /// those (detected).
    pub file: PathBuf,
    /// A certificate serial number in hex (`0A1B2C`, `0a:1b:2c`, `0x0a1b2c`); may repeat.
    #[arg(long = "serial", value_name = "HEX")]
    pub serials: Vec<String>,
    /// CA certificate(s) (PEM) to check the CRL's signature with.
    #[arg(long, value_name = "CAFILE")]
    pub ca: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why `crl inspect` could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file has no usable certificate.
    #[error("{path}: {reason}")]
    BadCa {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A `--serial` value is not hex.
    #[error("--serial {0:?} is not a hexadecimal serial number")]
    BadSerial(String),
    /// The CRL does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The file.
    pub file: String,
    /// `DER`, `PEM` or `ZIP`.
    pub encoding: &'static str,
    /// Size in bytes.
    pub bytes: u64,
    /// Each CRL of the file.
    pub crls: Vec<CrlReport>,
}

/// One CRL of the file.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlReport {
    /// Issuer name.
    pub issuer: String,
    /// Authority Key Identifier, hex.
    pub authority_key_id: Option<String>,
    /// CRL number.
    pub crl_number: Option<String>,
    /// `thisUpdate`.
    pub this_update: String,
    /// `nextUpdate`.
    pub next_update: Option<String>,
    /// Past `nextUpdate` now: the gateway would refuse this issuer's certificates.
    pub stale: bool,
    /// Revoked entries.
    pub entries: u64,
    /// Which certificates of the issuer the CRL covers (Issuing Distribution Point):
    /// `all`, `userCertificates` or `caCertificates`.
    pub scope: &'static str,
    /// The partition (Issuing Distribution Point `distributionPoint`): the CRL covers only
    /// certificates whose CRL Distribution Points name one of these. Absent: all.
    pub distribution_points: Option<Vec<DpName>>,
    /// The same in words.
    pub covers: String,
    /// Signature algorithm (short name, or OID).
    pub signature_algorithm: String,
    /// Signature check: `not checked`, `verified by ...`, or why it failed.
    pub signature: String,
    /// Whether the signature verified (`None`: not checked).
    pub signature_ok: Option<bool>,
    /// The asked serials.
    pub serials: Vec<SerialReport>,
}

/// A serial looked up.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SerialReport {
    /// As given, normalised to upper-case hex.
    pub serial: String,
    /// Listed as revoked.
    pub revoked: bool,
    /// Revocation reason.
    pub reason: Option<String>,
    /// Revocation date.
    pub revocation_date: Option<String>,
}

impl Report {
    /// 2 when an asked serial is revoked, 1 when a signature check failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self
            .crls
            .iter()
            .any(|c| c.serials.iter().any(|s| s.revoked))
        {
            2
        } else if self.crls.iter().any(|c| c.signature_ok == Some(false)) {
            1
        } else {
            0
        }
    }

    /// Human-readable text.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} bytes, {}, {} CRL{}",
            self.file,
            self.bytes,
            self.encoding,
            self.crls.len(),
            if self.crls.len() == 1 { "" } else { "s" }
        );
        let now = unix_now();
        for (i, c) in self.crls.iter().enumerate() {
            let _ = writeln!(out, "CRL #{i}");
            let _ = writeln!(out, "  issuer:           {}", c.issuer);
            if let Some(k) = &c.authority_key_id {
                let _ = writeln!(out, "  authority key id: {k}");
            }
            let _ = writeln!(
                out,
                "  CRL number:       {}",
                c.crl_number.as_deref().unwrap_or("(none)")
            );
            let _ = writeln!(out, "  thisUpdate:       {}", c.this_update);
            match &c.next_update {
                Some(n) => {
                    let when = time::OffsetDateTime::parse(
                        n,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map(|t| t.unix_timestamp() - now)
                    .unwrap_or(0);
                    let rel = if c.stale {
                        format!(
                            "STALE for {}: the gateway refuses this issuer's certificates",
                            human(-when)
                        )
                    } else {
                        format!("in {}", human(when))
                    };
                    let _ = writeln!(out, "  nextUpdate:       {n} ({rel})");
                }
                None => {
                    let _ = writeln!(out, "  nextUpdate:       (none: never stale)");
                }
            }
            let _ = writeln!(out, "  entries:          {}", c.entries);
            let _ = writeln!(out, "  covers:           {}", c.covers);
            let _ = writeln!(
                out,
                "  signature:        {} ({})",
                c.signature, c.signature_algorithm
            );
            for s in &c.serials {
                if s.revoked {
                    let _ = writeln!(
                        out,
                        "  serial {}: REVOKED{}{}",
                        s.serial,
                        s.reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default(),
                        s.revocation_date
                            .as_ref()
                            .map(|d| format!(" on {d}"))
                            .unwrap_or_default()
                    );
                } else {
                    let _ = writeln!(out, "  serial {}: not listed", s.serial);
                }
            }
        }
        out
    }
}

/// Which certificates a CRL covers, in words.
fn covers_text(crl: &ParsedCrl<'_>) -> String {
    let who = match crl.scope.name() {
        "userCertificates" => "end-entity (user) certificates of the issuer only",
        "caCertificates" => "CA certificates of the issuer only",
        _ => "all certificates of the issuer",
    };
    match &crl.partition {
        None => who.to_owned(),
        Some(names) => format!(
            "{who}, in partition {} (those whose CRL Distribution Points name it)",
            names
                .iter()
                .map(DpName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Parse a hex serial as a positive integer (a leading zero byte is added when the top
/// bit is set, as in the certificate's DER).
pub fn parse_serial(text: &str) -> Result<Vec<u8>, InspectError> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(InspectError::BadSerial(text.to_owned()));
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let mut bytes = hex::decode(&padded).map_err(|_| InspectError::BadSerial(text.to_owned()))?;
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    Ok(canonical_serial(&bytes).to_vec())
}

fn serial_text(bytes: &[u8]) -> String {
    let b = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        b => b,
    };
    hex::encode_upper(b)
}

/// Inspect a file.
pub fn inspect(args: &InspectArgs) -> Result<Report, InspectError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| InspectError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let bytes = read(&args.file)?;
    let serials = args
        .serials
        .iter()
        .map(|s| parse_serial(s))
        .collect::<Result<Vec<_>, _>>()?;
    let trust = match &args.ca {
        Some(path) => {
            let text = String::from_utf8(read(path)?).map_err(|_| InspectError::BadCa {
                path: path.display().to_string(),
                reason: "not PEM text".into(),
            })?;
            let mut t = TrustStore::default();
            t.add_pem(&text, &path.display().to_string())
                .map_err(|e| InspectError::BadCa {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            Some(t)
        }
        None => None,
    };
    let (format, encoding) = if bytes.starts_with(b"PK\x03\x04") {
        (CrlFormat::Zip, "ZIP")
    } else if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        (CrlFormat::Pem, "PEM")
    } else {
        (CrlFormat::Asn1, "DER")
    };
    let ders = split(&bytes, format)?;
    let now = unix_now();
    let mut crls = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        let crl = ParsedCrl::parse(der, i)?;
        let mut found: Vec<SerialReport> = serials
            .iter()
            .map(|s| SerialReport {
                serial: serial_text(s),
                revoked: false,
                reason: None,
                revocation_date: None,
            })
            .collect();
        let mut entries = 0u64;
        for e in crl.entries() {
            let e = e?;
            entries += 1;
            if serials.is_empty() {
                continue;
            }
            let s = canonical_serial(e.serial);
            for (q, rep) in serials.iter().zip(found.iter_mut()) {
                if q.as_slice() == s && e.reason != Some(super::parse::REASON_REMOVE_FROM_CRL) {
                    rep.revoked = true;
                    rep.reason = e.reason.map(|r| reason_name(r).to_owned());
                    rep.revocation_date = e.revocation_time().map(rfc3339);
                }
            }
        }
        let (signature, signature_ok) = match &trust {
            None => ("not checked (give --ca)".to_owned(), None),
            Some(t) => match t.verify(&crl) {
                Ok(signer) => (
                    format!("verified by a CA from {}", signer.origin),
                    Some(true),
                ),
                Err(e) => (format!("NOT VERIFIED: {e}"), Some(false)),
            },
        };
        crls.push(CrlReport {
            issuer: crl.issuer.clone(),
            authority_key_id: crl.authority_key_id.map(hex::encode),
            crl_number: crl.crl_number.as_ref().map(ToString::to_string),
            this_update: rfc3339(crl.this_update),
            next_update: crl.next_update.map(rfc3339),
            stale: crl.next_update.is_some_and(|n| now > n),
            entries,
            scope: crl.scope.name(),
            distribution_points: crl.partition.clone(),
            covers: covers_text(&crl),
            signature_algorithm: {
                let oid = &crl.signature_algorithm.algorithm;
                x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
                    .map(str::to_owned)
                    .unwrap_or_else(|_| oid.to_id_string())
            },
            signature,
            signature_ok,
            serials: found,
        });
    }
    Ok(Report {
        file: args.file.display().to_string(),
        encoding,
        bytes: bytes.len() as u64,
        crls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_testkit::crl::RevokedSpec;
    use postern_testkit::pki::Ca;

    fn args(file: PathBuf, serials: &[&str], ca: Option<PathBuf>) -> InspectArgs {
        InspectArgs {
            file,
            serials: serials.iter().map(|s| (*s).to_owned()).collect(),
            ca,
            json: false,
        }
    }

    #[test]
    fn serials_parse_like_operators_write_them() {
        assert_eq!(parse_serial("0A1B").unwrap(), vec![0x0a, 0x1b]);
        assert_eq!(parse_serial("0a:1b").unwrap(), vec![0x0a, 0x1b]);
        assert_eq!(parse_serial("0x8A01").unwrap(), vec![0x00, 0x8a, 0x01]);
        assert_eq!(parse_serial("A1B").unwrap(), vec![0x0a, 0x1b]);
        assert_eq!(parse_serial("00000a").unwrap(), vec![0x0a]);
        assert!(parse_serial("xyz").is_err());
        assert!(parse_serial("").is_err());
        assert_eq!(serial_text(&[0x00, 0x8a, 0x01]), "8A01");
    }

    #[test]
    fn reports_issuer_dates_entries_signature_and_serials() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Inspect CA");
        let crl = ca.crl(
            42,
            &[
                RevokedSpec::new(&[0x00, 0x8a, 0x01])
                    .reason(rcgen::RevocationReason::KeyCompromise),
                RevokedSpec::new(&[0x05]),
            ],
            -60,
            3600,
        );
        let file = dir.path().join("x.pem");
        std::fs::write(&file, crl.pem().unwrap()).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();

        let r = inspect(&args(file.clone(), &["8A01", "06"], Some(ca_file))).unwrap();
        assert_eq!(r.encoding, "PEM");
        let c = &r.crls[0];
        assert_eq!(c.issuer, "CN=Inspect CA");
        assert_eq!(c.crl_number.as_deref(), Some("42"));
        assert_eq!(c.entries, 2);
        assert_eq!(c.signature_ok, Some(true));
        assert!(c.serials[0].revoked);
        assert_eq!(c.serials[0].reason.as_deref(), Some("keyCompromise"));
        assert!(!c.serials[1].revoked);
        assert_eq!(r.exit_code(), 2);
        let text = r.text();
        assert!(
            text.contains("serial 8A01: REVOKED (keyCompromise)"),
            "{text}"
        );
        assert!(text.contains("serial 06: not listed"), "{text}");
        assert!(text.contains("CRL number:       42"), "{text}");

        // Another key: the signature check says so.
        let other = dir.path().join("other.pem");
        std::fs::write(&other, ca.rekeyed().cert_pem()).unwrap();
        let r = inspect(&args(file, &["06"], Some(other))).unwrap();
        assert_eq!(r.crls[0].signature_ok, Some(false));
        assert!(r.crls[0].signature.contains("NOT VERIFIED"));
        assert_eq!(r.exit_code(), 1);

        // DER, stale, no CA.
        let stale = dir.path().join("stale.crl");
        std::fs::write(&stale, ca.crl(1, &[], -7200, -3600).der()).unwrap();
        let r = inspect(&args(stale, &[], None)).unwrap();
        assert_eq!(r.encoding, "DER");
        assert!(r.crls[0].stale);
        assert_eq!(r.exit_code(), 0);
        assert!(r.text().contains("STALE for 1h"), "{}", r.text());

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, b"not a crl").unwrap();
        assert!(inspect(&args(garbage, &[], None)).is_err());
    }
}
