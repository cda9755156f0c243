//! `LdapProfile` → `ldapProfiles.<name>`.

use postern_config::defaults;
use postern_config::{
    CertificateAuthQuery, LdapAuthMethod as GwMethod, LdapBind, LdapCache, LdapProfile,
    LdapTimeouts, SmtpAuthQuery,
};
use postern_crds::{LdapAuthMethod, LdapProfileSpec};

use super::inputs::{Diags, Inputs, duration};
use super::report::Reason;
use super::secret_use::SecretUse;

/// Render one LdapProfile. `None` when it has errors (they are in `d`).
pub(crate) fn render(
    spec: &LdapProfileSpec,
    inputs: &Inputs<'_>,
    d: &mut Diags,
) -> Option<LdapProfile> {
    if spec.servers.is_empty() {
        d.error(
            "spec.servers",
            Reason::InvalidValue,
            "at least one server is required",
        );
    }
    let ca_pem = spec
        .ca_bundle
        .as_ref()
        .and_then(|ca| inputs.ca_bundle("spec.caBundle", ca, d));
    let bind = spec.bind.as_ref().and_then(|b| {
        let field = "spec.bind.passwordSecretRef";
        let bytes = inputs.secret_key(field, &b.password_secret_ref, SecretUse::LdapBind, d)?;
        let password = match String::from_utf8(bytes) {
            Ok(p) => p,
            Err(_) => {
                d.error(field, Reason::InvalidValue, "the bind password is not UTF-8 text");
                return None;
            }
        };
        if password.ends_with('\n') {
            d.warning(
                field,
                Reason::Ignored,
                format!(
                    "the password in Secret {:?} key {:?} ends with a newline, which is sent as part of it (create the Secret with --from-literal or `echo -n`)",
                    b.password_secret_ref.name, b.password_secret_ref.key
                ),
            );
        }
        Some(LdapBind {
            dn: b.dn.clone(),
            password,
        })
    });
    let timeouts = spec.timeouts.as_ref();
    let timeouts = LdapTimeouts {
        connect: duration(
            "spec.timeouts.connect",
            timeouts.and_then(|t| t.connect.as_ref()),
            defaults::LDAP_CONNECT_TIMEOUT,
            d,
        ),
        operation: duration(
            "spec.timeouts.operation",
            timeouts.and_then(|t| t.operation.as_ref()),
            defaults::LDAP_OPERATION_TIMEOUT,
            d,
        ),
    };
    let cache = spec.cache.as_ref();
    let cache = LdapCache {
        ttl: duration(
            "spec.cache.ttl",
            cache.and_then(|c| c.ttl.as_ref()),
            defaults::LDAP_CACHE_TTL,
            d,
        ),
        negative_ttl: duration(
            "spec.cache.negativeTtl",
            cache.and_then(|c| c.negative_ttl.as_ref()),
            defaults::LDAP_CACHE_NEGATIVE_TTL,
            d,
        ),
    };
    let certificate_auth_query =
        spec.certificate_auth_query
            .as_ref()
            .map(|q| CertificateAuthQuery {
                name: q.name.clone(),
                filter: q.filter.clone(),
                user_id_attribute: q
                    .user_id_attribute
                    .clone()
                    .unwrap_or_else(|| defaults::USER_ID_ATTRIBUTE.to_owned()),
            });
    let smtp_auth_query = spec.smtp_auth_query.as_ref().map(|q| SmtpAuthQuery {
        name: q.name.clone(),
        filter: q.filter.clone(),
        method: match q.method.unwrap_or(LdapAuthMethod::Bind) {
            LdapAuthMethod::Bind => GwMethod::Bind,
        },
        allowance_filter: q.allowance_filter.clone(),
    });
    if d.has_errors() {
        return None;
    }
    Some(LdapProfile {
        servers: spec.servers.iter().map(|s| s.url.clone()).collect(),
        start_tls: spec.start_tls,
        ca_pem,
        bind,
        base_dn: spec.base_dn.clone(),
        timeouts,
        max_connections: spec
            .pool
            .as_ref()
            .and_then(|p| p.max_connections)
            .unwrap_or(defaults::LDAP_POOL),
        cache,
        certificate_auth_query,
        smtp_auth_query,
        mail_attributes: spec
            .mail_attributes
            .clone()
            .unwrap_or_else(postern_config::sender::default_mail_attributes),
    })
}
