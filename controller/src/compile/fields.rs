//! Maps a field of the gateway configuration (as the gateway's validator names it) back
//! to the field of the resource it was compiled from, so status and `postern plan` speak
//! in the resource's terms.

use postern_crds::SmtpAuthProfileType;

use super::report::Kind;

/// The resource field for `gateway_field` of an object of `kind`. `auth_type` is the
/// profile's type for `SmtpAuthProfile` objects.
pub(crate) fn resource_field(
    kind: Kind,
    gateway_field: &str,
    auth_type: Option<SmtpAuthProfileType>,
) -> String {
    match kind {
        Kind::SmtpAuthProfile => auth_profile_field(gateway_field, auth_type),
        Kind::Listener if gateway_field == "nextHop" => "spec.nextHop.timeouts".into(),
        _ if gateway_field.is_empty() => "spec".into(),
        _ => format!("spec.{gateway_field}"),
    }
}

fn auth_profile_field(f: &str, auth_type: Option<SmtpAuthProfileType>) -> String {
    if f.is_empty() {
        return "spec".into();
    }
    if f.starts_with("certificate") {
        return "spec.certificate.ldapProfileRef".into();
    }
    if let Some(rest) = f.strip_prefix("smtpAuth") {
        // In a Certificate profile, smtpAuth is the fallback profile's rendering.
        if auth_type == Some(SmtpAuthProfileType::Certificate) {
            return "spec.certificate.fallbackProfileRef".into();
        }
        if rest.starts_with(".backend") {
            return "spec.ldap.ldapProfileRef".into();
        }
        if rest == ".allowance" {
            return "spec.ldap.allowance.enabled".into();
        }
        return format!("spec.ldap{rest}");
    }
    format!("spec.{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_gateway_fields_to_resource_fields() {
        use SmtpAuthProfileType::*;
        let cases = [
            (
                Kind::Listener,
                "tls.certificateSecretRef",
                None,
                "spec.tls.certificateSecretRef",
            ),
            (Kind::Listener, "nextHop", None, "spec.nextHop.timeouts"),
            (
                Kind::Listener,
                "hostAccessTable[0].cidrs",
                None,
                "spec.hostAccessTable[0].cidrs",
            ),
            (
                Kind::LdapProfile,
                "certificateAuthQuery.filter",
                None,
                "spec.certificateAuthQuery.filter",
            ),
            (
                Kind::SmtpAuthProfile,
                "certificate.backend.ldapProfile",
                Some(Certificate),
                "spec.certificate.ldapProfileRef",
            ),
            (
                Kind::SmtpAuthProfile,
                "smtpAuth.backend.ldapProfile",
                Some(Certificate),
                "spec.certificate.fallbackProfileRef",
            ),
            (
                Kind::SmtpAuthProfile,
                "smtpAuth.backend.ldapProfile",
                Some(Ldap),
                "spec.ldap.ldapProfileRef",
            ),
            (
                Kind::SmtpAuthProfile,
                "smtpAuth.allowance",
                Some(Ldap),
                "spec.ldap.allowance.enabled",
            ),
            (
                Kind::SmtpAuthProfile,
                "smtpAuth.allowance.response.code",
                Some(Ldap),
                "spec.ldap.allowance.response.code",
            ),
            (Kind::SmtpAuthProfile, "", Some(Ldap), "spec"),
        ];
        for (kind, field, t, want) in cases {
            assert_eq!(resource_field(kind, field, t), want, "{kind} {field}");
        }
    }
}
