//! The webhook's serving certificate, made by Postern itself (rcgen; no cert-manager): a
//! private CA and a leaf for the webhook's host names, and when to renew either. Pure:
//! the clock is an argument, the Secret they are kept in is `cert_store`'s business.
//!
//! The CA lives five years, the leaf one; a leaf is re-issued 30 days before it expires
//! (or when the host names change), and the CA is replaced while it still outlives the
//! next leaf. The CA bundle the API server trusts (`caBundle`) holds the new CA and the
//! previous one while that is still valid, so a replica still serving the old leaf is
//! trusted until it reloads.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// How long a CA is valid.
pub(crate) const CA_LIFETIME: Duration = Duration::from_secs(5 * 365 * 86_400);
/// How long a serving certificate is valid.
pub(crate) const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// A serving certificate is re-issued this long before it expires.
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The PEM texts kept in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Material {
    /// The CA bundle the API server trusts: the signing CA first, then a previous one.
    pub ca_bundle: String,
    /// The signing CA's private key (PKCS#8).
    pub ca_key: String,
    /// The serving certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// What to do with the material in store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// It serves as it is.
    Keep,
    /// Issue a new serving certificate with the same CA (why, for the log).
    NewLeaf(&'static str),
    /// Make a new CA and a serving certificate (why, for the log).
    NewCa(&'static str),
}

/// Why material could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    /// rcgen refused the parameters or the key.
    #[error("cannot make the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate's facts that the plan needs.
struct Facts {
    not_after: OffsetDateTime,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

fn facts(pem_text: &str) -> Option<Facts> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&block.contents).ok()?;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(Facts {
        not_after: cert.validity().not_after.to_datetime(),
        dns,
        ips,
    })
}

/// The host names (and IP addresses) the serving certificate must name.
fn covers(f: &Facts, hosts: &[String]) -> bool {
    hosts.iter().all(|h| match h.parse::<IpAddr>() {
        Ok(ip) => f.ips.contains(&ip),
        Err(_) => f.dns.iter().any(|d| d.eq_ignore_ascii_case(h)),
    })
}

/// What to do with `stored` at `now` for `hosts`.
pub(crate) fn plan(now: OffsetDateTime, stored: Option<&Material>, hosts: &[String]) -> Plan {
    let Some(m) = stored else {
        return Plan::NewCa("no certificate yet");
    };
    let (Some(ca), Some(leaf)) = (facts(&m.ca_bundle), facts(&m.cert)) else {
        return Plan::NewCa("the stored certificate does not parse");
    };
    if KeyPair::from_pem(&m.ca_key).is_err() || KeyPair::from_pem(&m.key).is_err() {
        return Plan::NewCa("a stored key does not parse");
    }
    if ca.not_after <= now + LEAF_LIFETIME + RENEW_BEFORE {
        return Plan::NewCa("the CA expires before a new certificate would");
    }
    if leaf.not_after <= now + RENEW_BEFORE {
        return Plan::NewLeaf("the certificate expires soon");
    }
    if !covers(&leaf, hosts) {
        return Plan::NewLeaf("the host names changed");
    }
    Plan::Keep
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("postern admission webhook CA {}", now.unix_timestamp()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + CA_LIFETIME;
    params
}

fn leaf(
    now: OffsetDateTime,
    hosts: &[String],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + LEAF_LIFETIME;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The first PEM certificate of a bundle.
fn first_certificate(bundle: &str) -> &str {
    const END: &str = "-----END CERTIFICATE-----";
    match bundle.find(END) {
        Some(i) => &bundle[..i + END.len()],
        None => bundle,
    }
}

/// Carries out `plan` (anything but [`Plan::Keep`]) at `now`.
pub(crate) fn renew(
    now: OffsetDateTime,
    stored: Option<&Material>,
    hosts: &[String],
    plan: &Plan,
) -> Result<Material, CertError> {
    if let (Plan::NewLeaf(_), Some(m)) = (plan, stored) {
        let ca_key = KeyPair::from_pem(&m.ca_key)?;
        let issuer = Issuer::from_ca_cert_pem(first_certificate(&m.ca_bundle), ca_key)?;
        let (cert, key) = leaf(now, hosts, &issuer)?;
        return Ok(Material {
            ca_bundle: m.ca_bundle.clone(),
            ca_key: m.ca_key.clone(),
            cert,
            key,
        });
    }
    let ca_key = KeyPair::generate()?;
    let params = ca_params(now);
    let ca = params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (cert, key) = leaf(now, hosts, &issuer)?;
    // The previous CA stays trusted while it is valid: replicas serving its leaf go on
    // being trusted until they load the new one.
    let mut ca_bundle = ca.pem();
    if let Some(m) = stored {
        let previous = first_certificate(&m.ca_bundle);
        if facts(previous).is_some_and(|f| f.not_after > now) {
            ca_bundle.push_str(previous.trim());
            ca_bundle.push('\n');
        }
    }
    Ok(Material {
        ca_bundle,
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec![
            "postern-controller.postern.svc".to_owned(),
            "127.0.0.1".to_owned(),
        ]
    }

    fn made(now: OffsetDateTime) -> Material {
        let plan = plan(now, None, &hosts());
        assert_eq!(plan, Plan::NewCa("no certificate yet"));
        renew(now, None, &hosts(), &plan).unwrap()
    }

    #[test]
    fn a_new_certificate_is_kept_until_it_nears_expiry() {
        let now = OffsetDateTime::now_utc();
        let m = made(now);
        assert_eq!(plan(now, Some(&m), &hosts()), Plan::Keep);
        let later = now + LEAF_LIFETIME - RENEW_BEFORE + Duration::from_secs(60);
        let p = plan(later, Some(&m), &hosts());
        assert_eq!(p, Plan::NewLeaf("the certificate expires soon"));
        let renewed = renew(later, Some(&m), &hosts(), &p).unwrap();
        assert_eq!(renewed.ca_bundle, m.ca_bundle, "same CA");
        assert_ne!(renewed.cert, m.cert);
        assert_eq!(plan(later, Some(&renewed), &hosts()), Plan::Keep);
    }

    #[test]
    fn new_host_names_get_a_new_leaf_and_an_old_ca_a_new_ca() {
        let now = OffsetDateTime::now_utc();
        let m = made(now);
        let mut more = hosts();
        more.push("postern-webhook.postern.svc.cluster.local".into());
        assert_eq!(
            plan(now, Some(&m), &more),
            Plan::NewLeaf("the host names changed")
        );
        let late = now + CA_LIFETIME - LEAF_LIFETIME;
        let p = plan(late, Some(&m), &hosts());
        assert_eq!(
            p,
            Plan::NewCa("the CA expires before a new certificate would")
        );
        let renewed = renew(late, Some(&m), &hosts(), &p).unwrap();
        assert_eq!(renewed.ca_bundle.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(
            renewed
                .ca_bundle
                .ends_with(&format!("{}\n", m.ca_bundle.trim()))
        );
    }

    #[test]
    fn garbage_is_replaced() {
        let now = OffsetDateTime::now_utc();
        let mut m = made(now);
        m.cert = "garbage".into();
        assert_eq!(
            plan(now, Some(&m), &hosts()),
            Plan::NewCa("the stored certificate does not parse")
        );
    }
}
