//! Maps a field of the gateway configuration (as the gateway's validator locates it)
//! back to the field of the resource it was compiled from, so status and `postern plan`
//! speak in the resource's terms.

use postern_config::field::{Field, Mechanism};
use postern_crds::SmtpAuthProfileType;

/// The resource field for `field` of an object. `auth_type` is the profile's type for
/// `SmtpAuthProfile` objects.
pub(crate) fn resource_field(field: &Field, auth_type: Option<SmtpAuthProfileType>) -> String {
    // A Certificate profile's smtpAuth is its fallback profile's rendering.
    let fallback = auth_type == Some(SmtpAuthProfileType::Certificate);
    match field {
        Field::ApiVersion | Field::Object => "spec".into(),
        Field::Same(path) => format!("spec.{path}"),
        Field::NextHopTimeouts => "spec.nextHop.timeouts".into(),
        Field::AuthBackend(Mechanism::Certificate, _) => "spec.certificate.ldapProfileRef".into(),
        Field::AuthBackend(Mechanism::SmtpAuth, _) | Field::Allowance | Field::SmtpAuth(_)
            if fallback =>
        {
            "spec.certificate.fallbackProfileRef".into()
        }
        Field::AuthBackend(Mechanism::SmtpAuth, _) => "spec.ldap.ldapProfileRef".into(),
        Field::Allowance => "spec.ldap.allowance.enabled".into(),
        Field::SmtpAuth(path) => format!("spec.ldap.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use postern_config::field::Path;

    use super::*;

    #[test]
    fn maps_gateway_fields_to_resource_fields() {
        use SmtpAuthProfileType::*;
        let cases = [
            (
                Field::same("tls.certificateSecretRef"),
                None,
                "spec.tls.certificateSecretRef",
            ),
            (Field::NextHopTimeouts, None, "spec.nextHop.timeouts"),
            (
                Field::Same(Path::keys("hostAccessTable").index(0).key("cidrs")),
                None,
                "spec.hostAccessTable[0].cidrs",
            ),
            (
                Field::same("certificateAuthQuery.filter"),
                None,
                "spec.certificateAuthQuery.filter",
            ),
            (
                Field::AuthBackend(Mechanism::Certificate, Path::keys("ldapProfile")),
                Some(Certificate),
                "spec.certificate.ldapProfileRef",
            ),
            (
                Field::AuthBackend(Mechanism::SmtpAuth, Path::keys("ldapProfile")),
                Some(Certificate),
                "spec.certificate.fallbackProfileRef",
            ),
            (
                Field::AuthBackend(Mechanism::SmtpAuth, Path::keys("ldapProfile")),
                Some(Ldap),
                "spec.ldap.ldapProfileRef",
            ),
            (Field::Allowance, Some(Ldap), "spec.ldap.allowance.enabled"),
            (
                Field::Allowance,
                Some(Certificate),
                "spec.certificate.fallbackProfileRef",
            ),
            (
                Field::SmtpAuth(Path::keys("allowance.response.code")),
                Some(Ldap),
                "spec.ldap.allowance.response.code",
            ),
            (
                Field::SmtpAuth(Path::keys("throttle.perUser.window")),
                Some(Ldap),
                "spec.ldap.throttle.perUser.window",
            ),
            (Field::Object, Some(Ldap), "spec"),
        ];
        for (field, t, want) in cases {
            assert_eq!(resource_field(&field, t), want, "{field}");
        }
    }
}
