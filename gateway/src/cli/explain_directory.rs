//! The directory's part of `postern-gateway explain`: the questions of
//! [`Reach`] asked of the listener's SmtpAuthProfile as `auth::build_auth_profile` builds
//! it for sessions (certificate mapping, AUTH user search, allowance, password BIND,
//! sender binding's addresses), each printed as a step with the query as sent and the
//! entries found; then the reply a client would get, decided as the session decides it
//! (the session's own replies, `wire::reply`).

use std::io::Write;
use std::sync::Arc;

use postern_config::explain::{Reach, Verdict, print_step};
use postern_config::sender::sender_is_own;
use postern_config::{AllowanceAction, GatewayConfig, SenderBinding};

use crate::auth::{
    AddressBook, Allowance, AuthBuildError, AuthThrottles, AuthVerdict, CertificateFacts,
    CertificateMapping, SmtpAuthRuntime, UserLookup, build_auth_profile,
};
use crate::ldap::{LdapDirectories, LdapMetrics};
use crate::smtp::conn::sender::{foreign_sender, sender_check_unavailable};
use crate::wire::reply::{Reply, auth_required, invalid_credentials, temporary_auth_failure};

/// What the directory's answers make of the path.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Accepted or refused, as a client would be.
    Decided(Verdict),
    /// The directory did not answer (down, slow, refusing the service account): the
    /// gateway would reply `reply` now (`454 4.7.0`); the answer itself is unknown.
    NoAnswer {
        /// The session's reply meanwhile.
        reply: String,
        /// What went wrong.
        error: String,
    },
}

/// Why the directory could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectoryExplainError {
    /// The listener's profile cannot be built (as the gateway would refuse the listener).
    #[error("the listener's SmtpAuthProfile cannot be built: {0}")]
    Build(#[from] AuthBuildError),
    /// A name the path found is missing from the configuration.
    #[error("{0} not found in the configuration")]
    Missing(String),
}

/// The identity established so far and where its addresses are.
struct Identity {
    user: String,
    addresses: Option<Arc<dyn AddressBook>>,
}

/// Ask the directory what `reach` leaves open; print each step to `out`. `accepted` is
/// the reply at `MAIL` when nothing refuses.
pub(crate) async fn ask(
    config: &GatewayConfig,
    reach: &Reach,
    accepted: &str,
    password: Option<&str>,
    mail_from: Option<&str>,
    out: &mut dyn Write,
) -> Result<Outcome, DirectoryExplainError> {
    let policy = config.policies.get(&reach.policy).ok_or_else(|| {
        DirectoryExplainError::Missing(format!("MailFlowPolicy {}", reach.policy))
    })?;
    let runtime = match &reach.auth_profile {
        None => None,
        Some(name) => {
            let profile = config
                .auth_profiles
                .get(name)
                .ok_or_else(|| DirectoryExplainError::Missing(format!("SmtpAuthProfile {name}")))?;
            let directories = LdapDirectories::new(LdapMetrics::new());
            Some(build_auth_profile(
                config,
                name,
                profile,
                &AuthThrottles::default(),
                &directories,
            )?)
        }
    };
    let mut identity: Option<Identity> = None;
    let mut pending = Vec::new();
    let mut no_answer: Option<String> = None;
    let mut auth_refusal: Option<Reply> = None;

    if let (Some(der), Some(rt)) = (&reach.certificate, &runtime)
        && let Some(mapper) = &rt.certificate
    {
        match CertificateFacts::from_der(der) {
            Err(e) => print_step(out, "certificate entry", &format!("{e}: not mapped")),
            Ok(facts) => {
                print_step(
                    out,
                    "certificate search",
                    &format!("query {}: {}", rt.certificate_query, mapper.query(&facts)),
                );
                match mapper.map(&facts).await {
                    Ok(CertificateMapping::Mapped { user_id, dn }) => {
                        print_step(
                            out,
                            "certificate entry",
                            &format!(
                                "{} → user {user_id}",
                                dn.as_deref().unwrap_or("static user")
                            ),
                        );
                        identity = Some(Identity {
                            user: user_id,
                            addresses: rt.certificate_addresses.clone(),
                        });
                    }
                    Ok(CertificateMapping::NotFound) => print_step(
                        out,
                        "certificate entry",
                        "no entry found: the certificate authenticates nobody",
                    ),
                    Ok(CertificateMapping::Ambiguous { count }) => print_step(
                        out,
                        "certificate entry",
                        &format!(
                            "{count} entries found: a certificate must name one person; not authenticated"
                        ),
                    ),
                    Err(e) => {
                        print_step(out, "certificate entry", &format!("no answer: {e}"));
                        no_answer = Some(e.to_string());
                    }
                }
            }
        }
    }

    if let (Some(user), Some(smtp)) = (
        &reach.user,
        runtime.as_ref().and_then(|r| r.smtp_auth.as_ref()),
    ) {
        match authenticate(smtp, user, password, &mut pending, out).await {
            AuthOutcome::Authenticated(user_id) => {
                if identity.is_none() {
                    identity = Some(Identity {
                        user: user_id,
                        addresses: Some(smtp.addresses.clone()),
                    });
                }
            }
            AuthOutcome::Refused(r) => auth_refusal = Some(r),
            AuthOutcome::NoAnswer(e) => no_answer = no_answer.or(Some(e)),
        }
    }

    let refused = |r: Reply, at: &str| {
        Ok(Outcome::Decided(Verdict::Refused {
            reply: format!("{} ({at})", r.summary()),
        }))
    };
    if identity.is_none() {
        if let Some(error) = no_answer {
            return Ok(Outcome::NoAnswer {
                reply: temporary_auth_failure().summary(),
                error,
            });
        }
        if let Some(r) = auth_refusal {
            return refused(r, "at AUTH");
        }
        if policy.require_smtp_auth {
            return refused(auth_required(), "at MAIL");
        }
    }

    if policy.sender_binding.is_off() && mail_from.is_some() {
        print_step(
            out,
            "sender binding",
            "Off: MAIL FROM is not checked against the user's addresses",
        );
    }
    if let Some(id) = &identity
        && !policy.sender_binding.is_off()
        && let Some(book) = &id.addresses
    {
        match mail_from {
            None => pending.push(format!(
                "senderBinding {}: MAIL FROM is one of {}'s addresses (give --mail-from to check)",
                policy.sender_binding.as_str(),
                id.user
            )),
            Some("") => print_step(out, "sender binding", "the null sender <> is not checked"),
            Some(from) => {
                let refusal = match book.addresses(&id.user).await {
                    Ok(addresses) => {
                        let own = sender_is_own(from, &addresses);
                        print_step(
                            out,
                            "sender binding",
                            &format!(
                                "{}: {}'s addresses [{}]: <{from}> is {}",
                                policy.sender_binding.as_str(),
                                id.user,
                                addresses.join(", "),
                                if own {
                                    "one of them"
                                } else {
                                    "NOT one of them"
                                }
                            ),
                        );
                        (!own).then(foreign_sender)
                    }
                    Err(e) => {
                        print_step(
                            out,
                            "sender binding",
                            &format!(
                                "{}: the addresses of {} could not be read: {e}",
                                policy.sender_binding.as_str(),
                                id.user
                            ),
                        );
                        Some(sender_check_unavailable())
                    }
                };
                match refusal {
                    Some(r) if policy.sender_binding == SenderBinding::Enforce => {
                        return refused(r, "at MAIL");
                    }
                    Some(r) => print_step(
                        out,
                        "sender binding",
                        &format!(
                            "Monitor: logged, not refused (Enforce would reply {})",
                            r.summary()
                        ),
                    ),
                    None => {}
                }
            }
        }
    }
    if let Some(id) = &identity {
        print_step(
            out,
            "identity",
            &format!("the session is authenticated as {}", id.user),
        );
    }
    Ok(Outcome::Decided(Verdict::Accepted {
        reply: accepted.to_owned(),
        pending,
    }))
}

/// The end of the AUTH steps.
enum AuthOutcome {
    /// Authenticated (or would be, with the right password) as this user id.
    Authenticated(String),
    /// The reply at AUTH.
    Refused(Reply),
    /// The directory did not answer.
    NoAnswer(String),
}

/// The AUTH steps of `user`: the search, the entry found, the allowance, the BIND.
async fn authenticate(
    smtp: &SmtpAuthRuntime,
    user: &str,
    password: Option<&str>,
    pending: &mut Vec<String>,
    out: &mut dyn Write,
) -> AuthOutcome {
    let a = &smtp.authenticator;
    print_step(
        out,
        "auth search",
        &format!(
            "profile {}, query {}: {}",
            smtp.profile,
            smtp.query,
            a.query(user)
        ),
    );
    let not_allowed = || {
        let r = smtp
            .allowance
            .as_ref()
            .map(|a| a.response.clone())
            .unwrap_or_default();
        Reply::custom(r.code, Some(r.enhanced_code), &r.text)
    };
    let action = smtp.allowance.as_ref().map(|a| a.action);
    let found = match a.find_user(user).await {
        Err(e) => {
            print_step(out, "auth entry", &format!("no answer: {e}"));
            return AuthOutcome::NoAnswer(e.to_string());
        }
        Ok(UserLookup::Unknown { reason }) => {
            print_step(out, "auth entry", &reason);
            return AuthOutcome::Refused(invalid_credentials());
        }
        Ok(UserLookup::Found(found)) => found,
    };
    print_step(
        out,
        "auth entry",
        &format!(
            "{} → user {}",
            found.dn.as_deref().unwrap_or("static user"),
            found.user_id
        ),
    );
    if let Some(q) = a.allowance_query(&found.user_id) {
        print_step(out, "allowance search", &q);
    }
    let allowance = match password {
        Some(pw) => match a.check_password(&found, pw).await {
            Err(e) => {
                print_step(out, "password", &format!("no answer: {e}"));
                return AuthOutcome::NoAnswer(e.to_string());
            }
            Ok(AuthVerdict::InvalidCredentials { reason }) => {
                print_step(out, "password", &format!("refused: {reason}"));
                return AuthOutcome::Refused(invalid_credentials());
            }
            Ok(AuthVerdict::NotAllowed { .. }) => {
                print_step(
                    out,
                    "allowance",
                    "no entry found: not allowed (the password was not sent)",
                );
                return AuthOutcome::Refused(not_allowed());
            }
            Ok(AuthVerdict::Authenticated { allowance, .. }) => {
                print_step(out, "password", "right (the BIND as the entry succeeded)");
                allowance
            }
        },
        None => {
            pending.push(format!(
                "the password of {} binds (give it with --password-stdin)",
                found.dn.as_deref().unwrap_or(&found.user_id)
            ));
            match a.allowance(&found).await {
                Ok(allowance) => allowance,
                Err(e) => {
                    print_step(out, "allowance", &format!("no answer: {e}"));
                    return AuthOutcome::NoAnswer(e.to_string());
                }
            }
        }
    };
    match allowance {
        Allowance::NotChecked => {}
        Allowance::Allowed => print_step(out, "allowance", "an entry found: allowed"),
        Allowance::Denied if action == Some(AllowanceAction::Monitor) => print_step(
            out,
            "allowance",
            "no entry found: not allowed, action Monitor: authenticated, every command logged",
        ),
        Allowance::Denied => {
            let r = not_allowed();
            print_step(
                out,
                "allowance",
                &format!("no entry found: not allowed ({})", r.summary()),
            );
            return AuthOutcome::Refused(r);
        }
    }
    AuthOutcome::Authenticated(found.user_id)
}
