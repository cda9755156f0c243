//! Issuer binding of certificate queries.
//!
//! `(&(caccn={cn})(cacserial={sn}))` identifies a certificate by values that only mean
//! something *per issuer*: serial numbers are unique within one CA, not across CAs. When a
//! Listener trusts several CAs, a certificate from any of them that repeats a victim's CN
//! and serial maps to the victim. The filter must then also bind a value only the right
//! issuer (or the holder of the victim's key) can produce.
//!
//! The check works on the configuration that runs (after assembly), so it speaks about
//! what the gateways do, and it is a warning, not an error: a Listener that trusts a single
//! CA is safe with the CN/serial form, and existing setups keep compiling.

use std::collections::BTreeMap;

use postern_config::filter::{FilterTemplate, Placeholder};
use postern_config::{AuthBackend, GatewayConfig, pem};

use super::report::{Diagnostic, Kind, ObjectKey, Reason};

/// The resource field the warning is about (the object the operator has to fix).
pub(crate) const FILTER_FIELD: &str = "spec.certificateAuthQuery.filter";

/// Placeholders whose value a certificate from another CA cannot repeat: the issuer DN
/// (`{issuer}`), the whole certificate (`{fp}`), the issuer and serial together
/// (`{altSecIssuerSerial}`), and the public key (`{altSecSha1PublicKey}`: the TLS handshake
/// proves possession of the matching private key). `{dn}`, `{email}`, `{upn}` and
/// `{altSecSki}` (an extension value the issuing CA writes as it likes) are not.
///
/// By name, because some of these placeholders are added to the gateway's filter language
/// separately; a name the gateway does not know never appears in a parsed filter.
const ISSUER_BOUND: [&str; 4] = ["issuer", "fp", "altSecIssuerSerial", "altSecSha1PublicKey"];

/// Whether a placeholder's value is specific to one issuer (or key).
pub(crate) fn is_issuer_bound(p: Placeholder) -> bool {
    ISSUER_BOUND.contains(&p.name())
}

/// One Listener that maps certificates through an LdapProfile whose filter is not bound to
/// the issuer, while it trusts several CAs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Exposure {
    listener: String,
    cas: usize,
}

/// The LdapProfile's filter (its placeholders, in order, once each) and who is exposed.
type Exposed<'a> = BTreeMap<&'a str, (Vec<Placeholder>, Vec<Exposure>)>;

/// Warnings for every LdapProfile whose certificate query, as it runs, binds no
/// issuer-specific value while a Listener that uses it trusts more than one CA.
pub(crate) fn warnings(config: &GatewayConfig) -> Vec<(ObjectKey, Diagnostic)> {
    let mut exposed: Exposed<'_> = BTreeMap::new();
    for (listener_name, listener) in &config.listeners {
        let Some(ca_pem) = listener.tls.as_ref().and_then(|t| t.client_ca_pem.as_ref()) else {
            continue;
        };
        let cas = pem::certificates(ca_pem).map_or(0, |c| c.len());
        if cas < 2 {
            continue;
        }
        let Some(profile) = listener
            .auth_profile
            .as_ref()
            .and_then(|a| config.auth_profiles.get(a))
        else {
            continue;
        };
        let Some(AuthBackend::Ldap { ldap_profile }) =
            profile.certificate.as_ref().map(|c| &c.backend)
        else {
            continue;
        };
        let Some(query) = config
            .ldap_profiles
            .get(ldap_profile)
            .and_then(|p| p.certificate_auth_query.as_ref())
        else {
            continue;
        };
        // A filter that does not parse is not in a configuration that validated; if one
        // slipped through, the validator reports it, not this check.
        let Ok(template) = FilterTemplate::parse(&query.filter, &Placeholder::CERTIFICATE) else {
            continue;
        };
        if template.placeholders().any(is_issuer_bound) {
            continue;
        }
        let entry = exposed.entry(ldap_profile).or_insert_with(|| {
            let mut used: Vec<Placeholder> = Vec::new();
            for p in template.placeholders() {
                if !used.contains(&p) {
                    used.push(p);
                }
            }
            (used, Vec::new())
        });
        entry.1.push(Exposure {
            listener: listener_name.clone(),
            cas,
        });
    }
    exposed
        .into_iter()
        .map(|(profile, (used, listeners))| {
            let list = listeners
                .iter()
                .map(|e| format!("Listener {:?} trusts {} CA certificates (spec.tls.clientCaSecretRef)", e.listener, e.cas))
                .collect::<Vec<_>>()
                .join(", ");
            let values = if used.is_empty() {
                "no certificate value at all".to_owned()
            } else {
                used.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
            };
            (
                ObjectKey::new(Kind::LdapProfile, profile),
                Diagnostic::warning(
                    FILTER_FIELD,
                    Reason::IssuerNotBound,
                    format!(
                        "certificates are matched by {values} only, which are unique per issuing CA at best, while {list}: a certificate from any of those CAs that repeats a user's values maps to that user. Bind the issuer: add e.g. (cacissuer={{issuer}}) with each user's issuer DN stored in the directory, or match {{fp}}; or let each such Listener trust one CA"
                    ),
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_specific_placeholders() {
        let bound = |f: &str| {
            FilterTemplate::parse(f, &Placeholder::CERTIFICATE)
                .unwrap()
                .placeholders()
                .any(is_issuer_bound)
        };
        assert!(!bound("(&(caccn={cn})(cacserial={sn}))"));
        assert!(!bound("(certSubject={dn})"));
        assert!(!bound("(|(mail={email})(userPrincipalName={upn}))"));
        assert!(bound("(&(caccn={cn})(cacserial={sn})(cacissuer={issuer}))"));
        assert!(bound("(certFingerprint={fp})"));
    }

    #[test]
    fn every_known_issuer_bound_name_is_a_certificate_placeholder_or_not_yet_known() {
        // A typo in ISSUER_BOUND would silently never match; the names the gateway knows
        // today must be among its certificate placeholders.
        for name in ISSUER_BOUND {
            if let Some(p) = Placeholder::ALL.into_iter().find(|p| p.name() == name) {
                assert!(Placeholder::CERTIFICATE.contains(&p), "{name}");
            }
        }
        assert!(is_issuer_bound(Placeholder::Issuer));
        assert!(is_issuer_bound(Placeholder::Fp));
        assert!(!is_issuer_bound(Placeholder::Dn));
    }
}
