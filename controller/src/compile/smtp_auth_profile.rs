//! `SmtpAuthProfile` → `authProfiles.<name>`.
//!
//! The gateway's profiles are flattened: a `type: Certificate` profile with a fallback
//! becomes `certificate` + `smtpAuth`, where `smtpAuth` is the fallback profile's own
//! rendering (so `smtpAuth.profile` names the fallback). `type: Ldap` becomes `smtpAuth`.

use postern_config::defaults;
use postern_config::{
    Allowance, AllowanceAction as GwAction, AuthBackend, AuthProfile, AuthThrottle,
    CertificateAuth, Reply, SmtpAuth, ThrottleLimit,
};
use postern_crds::{
    AllowanceAction, SmtpAuthProfileSpec, SmtpAuthProfileType, ThrottleLimitSpec, ThrottleSpec,
};

use super::Index;
use super::inputs::{Diags, duration};
use super::report::{Kind, ObjectKey, Reason};

/// A profile rendered as far as it can be without knowing which objects are in force.
#[derive(Clone, Debug)]
pub(crate) enum AuthDraft {
    /// Complete: a `type: Ldap` profile, or any previous rendering.
    Complete(AuthProfile),
    /// `type: Certificate`: the fallback's `smtpAuth` is filled in at assembly.
    Certificate {
        /// The rendering without `smtpAuth`.
        profile: AuthProfile,
        /// The fallback profile, when SMTP AUTH fallback is allowed.
        fallback: Option<String>,
    },
}

/// Render one SmtpAuthProfile. `None` when it has errors (they are in `d`). `deps` gets
/// the objects it needs in force, with the field that refers to them.
pub(crate) fn render(
    name: &str,
    spec: &SmtpAuthProfileSpec,
    index: &Index<'_>,
    deps: &mut Vec<(ObjectKey, String)>,
    d: &mut Diags,
) -> Option<AuthDraft> {
    match spec.type_ {
        SmtpAuthProfileType::Certificate => {
            if spec.ldap.is_some() {
                // A warning, not an error: the section is unused, not wrong for the
                // profile (API servers with CEL refuse it at apply; see crds::rules).
                d.warning("spec.ldap", Reason::Ignored,
                    "spec.ldap is for type: Ldap and is ignored on a Certificate profile, which is configured under spec.certificate (to check SMTP AUTH too, use allowSmtpAuthFallback with fallbackProfileRef)");
            }
            let Some(c) = &spec.certificate else {
                d.error(
                    "spec.certificate",
                    Reason::InvalidValue,
                    "required when type is Certificate",
                );
                return None;
            };
            let field = "spec.certificate.ldapProfileRef";
            let ldap = &c.ldap_profile_ref.name;
            match index.ldap_profiles.get(ldap.as_str()) {
                None if index.is_unreadable(Kind::LdapProfile, ldap) => {
                    deps.push((ObjectKey::new(Kind::LdapProfile, ldap), field.into()))
                }
                None => d.error(field, Reason::RefNotFound, format!("LdapProfile {ldap:?} not found")),
                Some(p) if p.certificate_auth_query.is_none() => d.error(
                    field,
                    Reason::InvalidKind,
                    format!("LdapProfile {ldap:?} has no certificateAuthQuery, which a Certificate profile needs to map certificates to users"),
                ),
                Some(_) => deps.push((ObjectKey::new(Kind::LdapProfile, ldap), field.into())),
            }
            let fallback = match (c.allow_smtp_auth_fallback, &c.fallback_profile_ref) {
                (false, None) => None,
                (false, Some(f)) => {
                    d.warning(
                        "spec.certificate.fallbackProfileRef",
                        Reason::Ignored,
                        format!("fallback profile {:?} is not used because allowSmtpAuthFallback is false", f.name),
                    );
                    None
                }
                (true, None) => {
                    d.error(
                        "spec.certificate.fallbackProfileRef",
                        Reason::InvalidValue,
                        "required when allowSmtpAuthFallback is true: name the type: Ldap SmtpAuthProfile that checks SMTP AUTH",
                    );
                    None
                }
                (true, Some(f)) => {
                    let field = "spec.certificate.fallbackProfileRef";
                    match index.smtp_auth_profiles.get(f.name.as_str()) {
                        None if index.is_unreadable(Kind::SmtpAuthProfile, &f.name) => deps
                            .push((ObjectKey::new(Kind::SmtpAuthProfile, &f.name), field.into())),
                        None => d.error(
                            field,
                            Reason::RefNotFound,
                            format!("SmtpAuthProfile {:?} not found", f.name),
                        ),
                        Some(_) if f.name == name => d.error(
                            field,
                            Reason::InvalidKind,
                            "a profile cannot be its own fallback",
                        ),
                        Some(p) if p.type_ != SmtpAuthProfileType::Ldap => d.error(
                            field,
                            Reason::InvalidKind,
                            format!(
                                "SmtpAuthProfile {:?} is type {:?}; a fallback must be type Ldap",
                                f.name, p.type_
                            ),
                        ),
                        Some(_) => deps
                            .push((ObjectKey::new(Kind::SmtpAuthProfile, &f.name), field.into())),
                    }
                    Some(f.name.clone())
                }
            };
            if d.has_errors() {
                return None;
            }
            Some(AuthDraft::Certificate {
                profile: AuthProfile {
                    certificate: Some(CertificateAuth {
                        backend: AuthBackend::Ldap {
                            ldap_profile: ldap.clone(),
                        },
                        required_policies: c.required_policies.clone(),
                        required_ekus: c.required_ekus.clone(),
                    }),
                    smtp_auth: None,
                },
                fallback,
            })
        }
        SmtpAuthProfileType::Ldap => {
            if spec.certificate.is_some() {
                d.warning("spec.certificate", Reason::Ignored,
                    "spec.certificate is for type: Certificate and is ignored on an Ldap profile, which is configured under spec.ldap");
            }
            let Some(l) = &spec.ldap else {
                d.error(
                    "spec.ldap",
                    Reason::InvalidValue,
                    "required when type is Ldap",
                );
                return None;
            };
            let field = "spec.ldap.ldapProfileRef";
            let ldap = &l.ldap_profile_ref.name;
            let query = match index.ldap_profiles.get(ldap.as_str()) {
                None if index.is_unreadable(Kind::LdapProfile, ldap) => {
                    deps.push((ObjectKey::new(Kind::LdapProfile, ldap), field.into()));
                    None
                }
                None => {
                    d.error(
                        field,
                        Reason::RefNotFound,
                        format!("LdapProfile {ldap:?} not found"),
                    );
                    None
                }
                Some(p) => match &p.smtp_auth_query {
                    None => {
                        d.error(
                            field,
                            Reason::InvalidKind,
                            format!("LdapProfile {ldap:?} has no smtpAuthQuery, which an Ldap profile needs to check SMTP AUTH"),
                        );
                        None
                    }
                    Some(q) => {
                        deps.push((ObjectKey::new(Kind::LdapProfile, ldap), field.into()));
                        Some(q)
                    }
                },
            };
            let allowance = match &l.allowance {
                Some(a) if a.enabled => {
                    if let Some(q) = query
                        && q.allowance_filter.is_none()
                    {
                        d.error(
                            "spec.ldap.allowance.enabled",
                            Reason::InvalidKind,
                            format!("the allowance check is enabled but LdapProfile {ldap:?} has no smtpAuthQuery.allowanceFilter"),
                        );
                    }
                    let response = match &a.response {
                        None => Reply::default(),
                        Some(r) => Reply {
                            code: r.code,
                            enhanced_code: r.enhanced_code.clone().unwrap_or_else(|| {
                                if r.code >= 500 {
                                    defaults::ALLOWANCE_REPLY_ENHANCED_CODE.into()
                                } else {
                                    "4.7.0".into()
                                }
                            }),
                            text: r.text.clone(),
                        },
                    };
                    Some(Allowance {
                        action: match a.action.unwrap_or(AllowanceAction::Reject) {
                            AllowanceAction::Reject => GwAction::Reject,
                            AllowanceAction::Monitor => GwAction::Monitor,
                        },
                        response,
                    })
                }
                Some(a) => {
                    if a.action.is_some() || a.response.is_some() {
                        d.warning(
                            "spec.ldap.allowance.enabled",
                            Reason::Ignored,
                            "the allowance check is disabled (enabled: false), so its action and response are not used",
                        );
                    }
                    None
                }
                None => None,
            };
            let throttle = throttle(l.throttle.as_ref(), d);
            if d.has_errors() {
                return None;
            }
            Some(AuthDraft::Complete(AuthProfile {
                certificate: None,
                smtp_auth: Some(SmtpAuth {
                    profile: name.to_owned(),
                    backend: AuthBackend::Ldap {
                        ldap_profile: ldap.clone(),
                    },
                    allowance,
                    throttle,
                }),
            }))
        }
    }
}

/// `spec.ldap.throttle` with its defaults.
fn throttle(spec: Option<&ThrottleSpec>, d: &mut Diags) -> AuthThrottle {
    let limit =
        |field: &str, l: Option<&ThrottleLimitSpec>, failures: u32, d: &mut Diags| ThrottleLimit {
            failures: l.and_then(|l| l.failures).unwrap_or(failures),
            window: duration(
                &format!("spec.ldap.throttle.{field}.window"),
                l.and_then(|l| l.window.as_ref()),
                defaults::THROTTLE_WINDOW,
                d,
            ),
        };
    AuthThrottle {
        per_client: limit(
            "perClient",
            spec.and_then(|t| t.per_client.as_ref()),
            defaults::THROTTLE_PER_CLIENT_FAILURES,
            d,
        ),
        per_user: limit(
            "perUser",
            spec.and_then(|t| t.per_user.as_ref()),
            defaults::THROTTLE_PER_USER_FAILURES,
            d,
        ),
    }
}
