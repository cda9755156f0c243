//! The decision path of one client on one listener, as the gateway would walk it, from a
//! configuration alone: host access row and policy, TLS, the certificate and its checks,
//! the LDAP filters after substitution and escaping, and the reply at `MAIL`. What only
//! the directory can answer (does the filter find one entry, is the password right) is
//! said as such.

use std::net::IpAddr;

use crate::certificate_type;
use crate::filter::{FilterTemplate, Placeholder};
use crate::{AuthBackend, GatewayConfig, Listener, PolicyAction, TlsMode};

use super::certificate::{self, CertificateCheck};

/// What is explained.
#[derive(Debug)]
pub struct Question<'a> {
    /// The Listener's name.
    pub listener: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The client certificate (PEM text).
    pub cert_pem: Option<&'a str>,
    /// The AUTH user name.
    pub user: Option<&'a str>,
    /// The password, with `--password-stdin`.
    pub password: Option<&'a str>,
    /// What the gateway's own certificate verifier made of the certificate, with the
    /// CRLs fetched and the OCSP responder asked (`postern-gateway explain`); `None`:
    /// from the configuration alone.
    pub handshake: Option<&'a HandshakeCheck>,
}

/// The gateway's verifier run on the client certificate (`postern-gateway explain`):
/// chain, validity, key usage and revocation answered for real.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HandshakeCheck {
    /// What was asked and answered (step name, text), printed in place of the offline
    /// `revocation` step.
    pub steps: Vec<(&'static str, String)>,
    /// Why the verifier refuses the certificate; `None`: it accepts it.
    pub refusal: Option<String>,
}

/// The end of the path.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Mail would be accepted (possibly subject to the directory's answer, in `pending`).
    Accepted {
        /// The reply at `MAIL`.
        reply: String,
        /// What only the directory can answer.
        pending: Vec<String>,
    },
    /// The client would be refused with `reply`.
    Refused {
        /// The reply.
        reply: String,
    },
}

/// The steps (name, what happens) and the verdict.
#[derive(Debug)]
pub struct Explanation {
    /// Each step: its name and what happens there.
    pub steps: Vec<(&'static str, String)>,
    /// The end of the path.
    pub verdict: Verdict,
    /// What the directory is asked on this path (`postern-gateway explain` asks it).
    pub reach: Reach,
}

/// Where the path reaches the listener's authentication backends: the questions only
/// they can answer, for `postern-gateway explain`, which asks them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The MailFlowPolicy applied to the client.
    pub policy: String,
    /// The listener's SmtpAuthProfile.
    pub auth_profile: Option<String>,
    /// The certificate (DER) reaches the profile's certificate mapping: it would be
    /// presented, it verifies, and its type passes the profile's gate.
    pub certificate: Option<Vec<u8>>,
    /// The AUTH user name reaches the profile's SMTP AUTH (offered, TLS as required).
    pub user: Option<String>,
}

/// Why there is nothing to explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The listener is not in the configuration.
    #[error("no Listener {0:?} in the configuration (it has: {1})")]
    NoListener(String, String),
    /// A name the configuration refers to is missing (it does not validate).
    #[error("{0}")]
    Broken(String),
    /// The certificate file cannot be read.
    #[error("{0}")]
    Certificate(String),
}

/// Walk the path of `q` through `config`.
pub fn explain(config: &GatewayConfig, q: &Question<'_>) -> Result<Explanation, ExplainError> {
    let l = config.listeners.get(q.listener).ok_or_else(|| {
        ExplainError::NoListener(
            q.listener.to_owned(),
            config
                .listeners
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let mut steps = Vec::new();
    let refused = |steps, reach, reply: &str| {
        Ok(Explanation {
            steps,
            verdict: Verdict::Refused {
                reply: reply.to_owned(),
            },
            reach,
        })
    };

    let (group, policy_name) = access_row(l, q.client_ip);
    let policy = config
        .policies
        .get(policy_name)
        .ok_or_else(|| ExplainError::Broken(format!("MailFlowPolicy {policy_name:?} not found")))?;
    let mut reach = Reach {
        policy: policy_name.to_owned(),
        auth_profile: l.auth_profile.clone(),
        ..Reach::default()
    };
    steps.push((
        "host access",
        format!(
            "{} → sender group {group}, policy {policy_name}",
            q.client_ip
        ),
    ));
    steps.push((
        "policy",
        format!(
            "action {:?}, tls {:?}, verifyClientCertificate {}, requireSmtpAuth {}, requireTlsForSmtpAuth {}, senderBinding {}",
            policy.action, policy.tls, policy.verify_client_certificate, policy.require_smtp_auth,
            policy.require_tls_for_smtp_auth, policy.sender_binding.as_str()
        ),
    ));
    if policy.action == PolicyAction::Reject {
        return refused(steps, reach, "554 5.7.1 (at connect)");
    }
    let tls_possible = l.tls.is_some() && (l.implicit_tls || policy.tls != TlsMode::Disabled);
    steps.push((
        "tls",
        match (&l.tls, l.implicit_tls) {
            (None, _) => "the listener has no certificate: no TLS".to_owned(),
            (Some(_), true) => "implicit TLS (SMTPS)".to_owned(),
            (Some(_), false) if policy.tls == TlsMode::Disabled => {
                "STARTTLS not offered (tls: Disabled)".to_owned()
            }
            (Some(t), false) => format!(
                "STARTTLS offered{}; client certificates {}",
                if policy.tls == TlsMode::Required {
                    ", required before MAIL and AUTH"
                } else {
                    ""
                },
                if t.client_ca_pem.is_none() {
                    "not asked for"
                } else if policy.verify_client_certificate {
                    "asked for, an invalid one refused at the handshake"
                } else {
                    "asked for"
                }
            ),
        },
    ));
    if policy.tls == TlsMode::Required && !tls_possible {
        return refused(
            steps,
            reach,
            "530 5.7.0 Must issue a STARTTLS command first (the listener cannot do TLS)",
        );
    }
    let auth = l
        .auth_profile
        .as_deref()
        .map(|name| {
            config
                .auth_profiles
                .get(name)
                .map(|p| (name, p))
                .ok_or_else(|| ExplainError::Broken(format!("SmtpAuthProfile {name:?} not found")))
        })
        .transpose()?;
    let mut identity: Option<String> = None;
    let mut pending = Vec::new();
    // A certificate the session would hold as verified (presented over TLS and valid).
    let mut certificate_verified = false;

    if let Some(pem_text) = q.cert_pem {
        let c = certificate::check(pem_text, l.tls.as_ref()).map_err(ExplainError::Certificate)?;
        describe_certificate(&c, &mut steps);
        if let Some(t) = &l.tls {
            match q.handshake {
                Some(h) => steps.extend(h.steps.iter().cloned()),
                None => steps.push(("revocation", certificate::revocation(config, t))),
            }
        }
        // The gateway's verifier, when it was run, has the last word on validity.
        let valid = q.handshake.map_or(c.valid(), |h| h.refusal.is_none());
        certificate_verified = tls_possible && valid;
        if !tls_possible {
            steps.push((
                "certificate",
                "no TLS on this path: the certificate is never presented".into(),
            ));
        } else if !valid {
            if policy.verify_client_certificate {
                let why = q
                    .handshake
                    .and_then(|h| h.refusal.as_deref())
                    .unwrap_or("invalid client certificate");
                return refused(steps, reach, &format!("TLS handshake refused ({why})"));
            }
            steps.push((
                "certificate",
                "invalid: ignored, the session is not authenticated by it".into(),
            ));
        } else if let Some((name, p)) = auth.filter(|(_, p)| p.certificate.is_some()) {
            let ca = p.certificate.as_ref().expect("filtered");
            match c.usage.as_ref().map_err(Clone::clone).and_then(|u| {
                certificate_type::check(
                    &ca.required_policies,
                    &ca.required_ekus,
                    &u.policies,
                    u.ekus.as_deref(),
                )
                .map_err(|r| r.to_string())
            }) {
                Err(why) => steps.push((
                    "certificate type",
                    format!("profile {name}: {why}; not mapped"),
                )),
                Ok(()) => {
                    reach.certificate = Some(c.der.clone());
                    steps.push((
                        "certificate type",
                        format!(
                            "profile {name}: accepted (requiredPolicies {:?}, requiredEkus {:?})",
                            ca.required_policies, ca.required_ekus
                        ),
                    ));
                    match &ca.backend {
                        AuthBackend::Static { users } => {
                            let found = users.iter().find(|u| {
                                c.common_name.is_some() && u.certificate_cn == c.common_name
                            });
                            steps.push((
                                "mapping",
                                match found {
                                    Some(u) => format!(
                                        "static user {} (certificateCn {:?})",
                                        u.user_id,
                                        c.common_name.as_deref().unwrap_or("")
                                    ),
                                    None => "no static user has this certificate's CN: not mapped"
                                        .into(),
                                },
                            ));
                            identity = found.map(|u| u.user_id.clone());
                        }
                        AuthBackend::Ldap { ldap_profile } => {
                            let q = config
                                .ldap_profiles
                                .get(ldap_profile)
                                .and_then(|p| p.certificate_auth_query.as_ref())
                                .ok_or_else(|| {
                                    ExplainError::Broken(format!(
                                        "LdapProfile {ldap_profile:?} has no certificateAuthQuery"
                                    ))
                                })?;
                            let filter = certificate_filter(&q.filter, &c);
                            steps.push(("certificate query", format!("LdapProfile {ldap_profile}, query {}: {filter}; one entry maps the session to its {}", q.name, q.user_id_attribute)));
                            pending.push(format!(
                                "the directory finds exactly one entry for {filter}"
                            ));
                            identity =
                                Some(format!("<{} of the entry found>", q.user_id_attribute));
                        }
                    }
                }
            }
        }
    }

    if let Some(user) = q.user {
        let smtp = auth.and_then(|(_, p)| p.smtp_auth.as_ref());
        if smtp.is_some() && (tls_possible || !policy.require_tls_for_smtp_auth) {
            reach.user = Some(user.to_owned());
        }
        match smtp {
            None => steps.push((
                "auth",
                "AUTH is not offered on this listener (no SMTP AUTH in its profile)".into(),
            )),
            Some(_) if policy.require_tls_for_smtp_auth && !tls_possible => steps.push((
                "auth",
                "AUTH needs TLS, which this path lacks: 538 5.7.11".into(),
            )),
            Some(a) => match &a.backend {
                AuthBackend::Static { users } => {
                    let u = users.iter().find(|u| u.user_id == user);
                    let ok = match (u, q.password) {
                        (None, _) => {
                            steps.push((
                                "auth",
                                format!(
                                    "profile {}: unknown static user {user}: 535 5.7.8",
                                    a.profile
                                ),
                            ));
                            false
                        }
                        (Some(u), Some(pw)) => {
                            let right = u.password.as_deref() == Some(pw) && !pw.is_empty();
                            steps.push((
                                "auth",
                                format!(
                                    "profile {}: static user {user}, password {}",
                                    a.profile,
                                    if right { "right" } else { "wrong: 535 5.7.8" }
                                ),
                            ));
                            right
                        }
                        (Some(_), None) => {
                            pending.push("the password (give it with --password-stdin)".into());
                            true
                        }
                    };
                    if ok && identity.is_none() {
                        identity = Some(user.to_owned());
                    }
                }
                AuthBackend::Ldap { ldap_profile } => {
                    let sq = config
                        .ldap_profiles
                        .get(ldap_profile)
                        .and_then(|p| p.smtp_auth_query.as_ref())
                        .ok_or_else(|| {
                            ExplainError::Broken(format!(
                                "LdapProfile {ldap_profile:?} has no smtpAuthQuery"
                            ))
                        })?;
                    let render = |t: &str| {
                        FilterTemplate::parse(t, &Placeholder::SMTP_AUTH)
                            .map(|f| {
                                f.render_escaped(|p| match p {
                                    Placeholder::U => Some(user.to_owned()),
                                    Placeholder::T => Some("<now>".into()),
                                    _ => None,
                                })
                                .unwrap_or_else(|p| format!("<no value for {{{}}}>", p.name()))
                            })
                            .unwrap_or_else(|e| format!("<invalid filter: {e}>"))
                    };
                    let filter = render(&sq.filter);
                    steps.push(("auth", format!("profile {}, LdapProfile {ldap_profile}, query {}: search {filter}, then BIND as the entry found", a.profile, sq.name)));
                    if let (Some(allow), Some(text)) = (&a.allowance, &sq.allowance_filter) {
                        steps.push((
                            "allowance",
                            format!(
                                "{:?}: search {} ({}{})",
                                allow.action,
                                render(text),
                                allow.response.code,
                                if allow.response.enhanced_code.is_empty() {
                                    String::new()
                                } else {
                                    format!(" {}", allow.response.enhanced_code)
                                }
                            ),
                        ));
                    }
                    if q.password == Some("") {
                        steps.push((
                            "auth",
                            "empty password: 535 5.7.8 without asking the directory".into(),
                        ));
                    } else {
                        pending.push(format!(
                            "the directory finds one entry for {filter} and the password binds"
                        ));
                        if identity.is_none() {
                            identity = Some(user.to_owned());
                        }
                    }
                }
            },
        }
    }

    // The gateway's order at MAIL: TLS (above), then the certificate, then authentication.
    if policy.tls == TlsMode::Required && policy.verify_client_certificate && !certificate_verified
    {
        return refused(
            steps,
            reach,
            "530 5.7.0 A valid client certificate is required (at MAIL)",
        );
    }
    if policy.require_smtp_auth && identity.is_none() {
        return refused(steps, reach, "530 5.7.0 Authentication required (at MAIL)");
    }
    if !policy.sender_binding.is_off() && identity.is_some() {
        pending.push(format!(
            "senderBinding {}: MAIL FROM is one of the user's addresses ({})",
            policy.sender_binding.as_str(),
            mail_attributes(config, auth.map(|(_, p)| p))
        ));
    }
    let reply = "250 2.1.0 Sender ok (at MAIL; the message is relayed to the next hop)".to_owned();
    steps.push((
        "next hop",
        format!(
            "{}:{} (tls {:?})",
            l.next_hop.host, l.next_hop.port, l.next_hop.tls
        ),
    ));
    Ok(Explanation {
        steps,
        verdict: Verdict::Accepted { reply, pending },
        reach,
    })
}

/// The first host access row whose networks hold `ip` (IPv4-mapped IPv6 as IPv4), as the
/// gateway picks it; else the listener's default policy.
fn access_row(l: &Listener, ip: IpAddr) -> (&str, &str) {
    let ip = ip.to_canonical();
    l.host_access_table
        .iter()
        .find(|row| row.cidrs.iter().any(|net| net.contains(&ip)))
        .map(|row| (row.sender_group.as_str(), row.policy.as_str()))
        .unwrap_or(("DEFAULT", l.default_policy.as_str()))
}

fn describe_certificate(c: &CertificateCheck, steps: &mut Vec<(&'static str, String)>) {
    steps.push((
        "certificate",
        format!("subject {}, issuer {}", c.subject, c.issuer),
    ));
    steps.push((
        "validity",
        format!(
            "{} ({})",
            c.validity,
            if c.current { "current" } else { "NOT current" }
        ),
    ));
    steps.push((
        "chain",
        match &c.chain {
            Ok(ca) => format!("signed by client CA {ca}"),
            Err(e) => e.clone(),
        },
    ));
    steps.push((
        "type",
        match &c.usage {
            Ok(u) => format!(
                "policies [{}], extendedKeyUsage {}",
                u.policies.join(", "),
                u.ekus.as_ref().map_or("absent".to_owned(), |e| format!(
                    "[{}]",
                    e.iter()
                        .map(|o| certificate_type::eku_name(o))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            ),
            Err(e) => e.clone(),
        },
    ));
}

/// The certificate query with the values `explain` reads itself (`{cn}`, `{email}`,
/// `{t}`) escaped in place; the others are computed by the gateway from the DER (serial,
/// UPN, EDIPI, strong mappings) and shown as `{name}`.
fn certificate_filter(template: &str, c: &CertificateCheck) -> String {
    match FilterTemplate::parse(template, &Placeholder::CERTIFICATE) {
        Err(e) => format!("<invalid filter: {e}>"),
        Ok(f) => {
            let mut out = String::new();
            for p in f.parts() {
                match p {
                    crate::filter::Part::Literal(s) => out.push_str(s),
                    crate::filter::Part::Value(p) => {
                        let v = match p {
                            Placeholder::Cn => c.common_name.clone(),
                            Placeholder::Email => c.email.clone(),
                            _ => None,
                        };
                        match v {
                            Some(v) => out.push_str(&crate::filter::escape_value(&v)),
                            None => out.push_str(&format!("{{{}}}", p.name())),
                        }
                    }
                }
            }
            out
        }
    }
}

/// The `mailAttributes` that would answer for the profile's LDAP backends.
fn mail_attributes(config: &GatewayConfig, profile: Option<&crate::AuthProfile>) -> String {
    let backends = profile.into_iter().flat_map(|p| {
        p.certificate
            .as_ref()
            .map(|c| &c.backend)
            .into_iter()
            .chain(p.smtp_auth.as_ref().map(|a| &a.backend))
    });
    let mut out: Vec<String> = Vec::new();
    for b in backends {
        let text = match b {
            AuthBackend::Ldap { ldap_profile } => config
                .ldap_profiles
                .get(ldap_profile)
                .map_or_else(String::new, |p| {
                    format!(
                        "LdapProfile {ldap_profile} mailAttributes [{}]",
                        p.mail_attributes.join(", ")
                    )
                }),
            AuthBackend::Static { .. } => "static users' addresses".into(),
        };
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out.join("; ")
}
