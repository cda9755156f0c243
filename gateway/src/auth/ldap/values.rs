//! The values that fill a filter template's placeholders.
//!
//! Values are returned raw; [`RenderFilter::render`](crate::ldap::filter::RenderFilter::render)
//! escapes each one (RFC 4515). Cache keys are rendered the same way except that `{t}`
//! (now) is left out, so a time-dependent filter still hits the cache within its TTL.

use time::OffsetDateTime;
use time::macros::format_description;

use crate::auth::CertificateFacts;
use postern_config::filter::Placeholder;

/// `{t}`: LDAP GeneralizedTime `YYYYMMDDHHMMSSZ` (UTC).
pub(crate) fn generalized_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.format(format_description!(
        "[year][month][day][hour][minute][second]Z"
    ))
    .expect("GeneralizedTime formatting cannot fail for years 0-9999")
}

/// What is substituted for `{t}` in a cache key.
const TIME_IN_KEY: &str = "";

/// The placeholder values of a client certificate. `None` means "this certificate has
/// no such value" (and the query then matches nothing).
pub(crate) fn certificate_value(
    facts: &CertificateFacts,
    p: Placeholder,
    now: &str,
) -> Option<String> {
    match p {
        Placeholder::Cn => facts.common_name().map(str::to_owned),
        Placeholder::Sn => Some(facts.serial_hex.clone()),
        Placeholder::Dn => Some(facts.subject_dn.clone()),
        Placeholder::Issuer => Some(facts.issuer_dn.clone()),
        Placeholder::Email => facts.email.clone(),
        Placeholder::Upn => facts.upn.clone(),
        Placeholder::Fp => Some(facts.fingerprint_sha256.clone()),
        Placeholder::T => Some(now.to_owned()),
        Placeholder::Edipi => facts.edipi.clone(),
        Placeholder::AltSecIssuerSerial => Some(facts.alt_sec_issuer_serial.clone()),
        Placeholder::AltSecSki => facts.alt_sec_ski.clone(),
        Placeholder::AltSecSha1PublicKey => Some(facts.alt_sec_sha1_public_key.clone()),
        Placeholder::U => None,
    }
}

/// Same as [`certificate_value`], for a cache key.
pub(crate) fn certificate_key_value(facts: &CertificateFacts, p: Placeholder) -> Option<String> {
    certificate_value(facts, p, TIME_IN_KEY)
}

/// The placeholder values of an SMTP AUTH attempt.
pub(crate) fn auth_value(user: &str, p: Placeholder, now: &str) -> Option<String> {
    match p {
        Placeholder::U => Some(user.to_owned()),
        Placeholder::T => Some(now.to_owned()),
        _ => None,
    }
}

/// Same as [`auth_value`], for a cache key.
pub(crate) fn auth_key_value(user: &str, p: Placeholder) -> Option<String> {
    auth_value(user, p, TIME_IN_KEY)
}

/// Why a certificate has no value for `p` (for the decision log).
pub(crate) fn missing_reason(facts: &CertificateFacts, p: Placeholder) -> String {
    match p {
        Placeholder::Cn => format!(
            "the certificate subject has {} common names (the query needs exactly one {{cn}})",
            facts.common_names.len()
        ),
        Placeholder::Email => {
            "the certificate has no rfc822Name SAN or emailAddress ({email})".into()
        }
        Placeholder::Upn => "the certificate has no Microsoft UPN SAN ({upn})".into(),
        Placeholder::Edipi => match &facts.upn {
            None => {
                "the certificate has no Microsoft UPN SAN ({edipi} is its digits before '@')".into()
            }
            Some(upn) => {
                format!("the UPN {upn:?} does not start with digits before '@' (no {{edipi}})")
            }
        },
        Placeholder::AltSecSki => {
            "the certificate has no subjectKeyIdentifier extension ({altSecSki})".into()
        }
        other => format!("no value for {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn generalized_time_is_utc_seconds() {
        assert_eq!(
            generalized_time(datetime!(2026-03-04 05:06:07.89 UTC)),
            "20260304050607Z"
        );
        assert_eq!(
            generalized_time(datetime!(2026-03-04 01:00:00 -5)),
            "20260304060000Z"
        );
    }

    fn facts() -> CertificateFacts {
        CertificateFacts {
            subject: "O=U.S. Government, CN=DOE.JOHN.1".into(),
            subject_dn: "CN=DOE.JOHN.1,O=U.S. Government".into(),
            common_names: vec!["DOE.JOHN.1".into()],
            serial_hex: "0A1B".into(),
            issuer: "CN=Test CA".into(),
            issuer_dn: "CN=Test CA".into(),
            email: None,
            upn: Some("1@mil".into()),
            fingerprint_sha256: "ab".repeat(32),
            ..Default::default()
        }
    }

    #[test]
    fn certificate_values() {
        let f = facts();
        let now = "20260101000000Z";
        assert_eq!(
            certificate_value(&f, Placeholder::Cn, now).as_deref(),
            Some("DOE.JOHN.1")
        );
        assert_eq!(
            certificate_value(&f, Placeholder::Sn, now).as_deref(),
            Some("0A1B")
        );
        assert_eq!(certificate_value(&f, Placeholder::Email, now), None);
        assert_eq!(
            certificate_value(&f, Placeholder::T, now).as_deref(),
            Some(now)
        );
        assert_eq!(
            certificate_key_value(&f, Placeholder::T).as_deref(),
            Some("")
        );
        let mut two = f.clone();
        two.common_names.push("OTHER".into());
        assert_eq!(certificate_value(&two, Placeholder::Cn, now), None);
        assert!(missing_reason(&two, Placeholder::Cn).contains("2 common names"));
    }
}
