//! SMTP AUTH (PLAIN, LOGIN; EXTERNAL in `external`): the exchange, the throttle, the authenticator's verdict and
//! the allowance action. Every way an AUTH command can end is a decision: one
//! `postern::decision` line and one `postern_auth_total` count.
//!
//! The order, and why:
//! 1. the session's rules (TLS, EHLO, already authenticated) and the mechanism;
//! 2. the client address's throttle — a throttled client is answered before it even
//!    sends credentials;
//! 3. the SASL exchange; credentials that can never be right (empty password or user,
//!    NUL, foreign authorization identity) are refused here, before anybody is asked;
//! 4. the user name's throttle (the name as typed, reduced as the directory compares
//!    names) — still before any directory traffic;
//! 5. the directory finds the user; the throttle is asked again with the entry's user id,
//!    which catches spellings of the name that only the directory knows are the same;
//! 6. the password (and, with allowance action `Reject`, first the allowance query: a
//!    user it refuses gets the profile's response whatever the password, so that reply
//!    never tells a right password from a wrong one).
//!
//! Failures the directory (or the Static list) decided — `535` and the allowance refusal —
//! count against the client address and the user name across sessions, and in the
//! session (three end it).

use crate::auth::{
    Allowance, AuthError, AuthVerdict, FoundUser, SmtpAuthRuntime, Throttled, UserLookup,
    local_refusal,
};
use crate::metrics::AuthLabels;
use crate::smtp::command::MAX_COMMAND_LINE;
use crate::smtp::received;
use crate::smtp::sasl::{self, Credentials, SaslError};
use crate::smtp::session::Authenticated;
use crate::wire::reply::{self, Reply};
use postern_config::AllowanceAction;

use super::{Connection, Flow, Input, MAX_AUTH_FAILURES};

/// How a SASL exchange ended without credentials.
pub(super) enum Exchange {
    /// Refused with `reply`; `outcome` and `reason` for the decision log.
    Refused {
        reply: Reply,
        outcome: &'static str,
        reason: String,
    },
    /// The connection is gone or must close (the reply, if any, is written).
    Closed,
}

impl From<SaslError> for Exchange {
    fn from(e: SaslError) -> Self {
        Self::Refused {
            reply: e.reply(),
            outcome: e.outcome(),
            reason: e.to_string(),
        }
    }
}

/// The supported mechanism a command names, if any.
fn mechanism_of(mechanism: &str) -> Option<&'static str> {
    match mechanism {
        "PLAIN" => Some("PLAIN"),
        "LOGIN" => Some("LOGIN"),
        "EXTERNAL" => Some("EXTERNAL"),
        _ => None,
    }
}

/// The `method` label of an unsupported mechanism (`postern_auth_total{method}` takes no
/// client text).
const UNSUPPORTED: &str = "unsupported";

impl Connection {
    pub(super) async fn auth(&mut self, mechanism: String, initial: Option<String>) -> Flow {
        let supported = mechanism_of(&mechanism);
        let label = supported.unwrap_or(UNSUPPORTED);
        let profile = self.smtp_auth_profile();
        if let Err(r) = self.st.check_auth(&self.rules()) {
            self.auth_decision(&profile, label, "refused", &r.summary());
            return self.refuse(&r);
        }
        let Some(smtp) = self
            .listener
            .auth
            .as_ref()
            .and_then(|a| a.smtp_auth.clone())
        else {
            let r = Reply::new(503, "5.5.1", "Authentication not enabled");
            self.auth_decision(&profile, label, "refused", &r.summary());
            return self.refuse(&r);
        };
        self.query = smtp.query.clone();
        let Some(method) = supported else {
            let r = Reply::new(504, "5.5.4", "Unrecognized authentication type");
            self.auth_decision(
                &smtp.profile,
                UNSUPPORTED,
                "refused",
                &format!(
                    "unsupported mechanism {:?}",
                    received::sanitize(&mechanism, 32)
                ),
            );
            return self.refuse(&r);
        };
        if method == "EXTERNAL" {
            // The client certificate, not a password: nothing to guess, no throttle.
            return self.external(&smtp, initial).await;
        }
        if let Err(t) = smtp.throttle.check_client(self.peer.ip()) {
            return self.throttled(&smtp, method, "", t);
        }
        let creds = if method == "PLAIN" {
            self.sasl_plain(initial).await
        } else {
            self.sasl_login(initial).await
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(e) => return self.exchange_failed(&smtp.profile, method, e),
        };
        let shown = received::sanitize(&user, 128);
        if let Some(refusal) = local_refusal(&user, &password) {
            // Not a guess (it can never be right and reaches nobody): counted in the
            // session only, not by the throttle.
            let reason = format!(
                "user {shown} via {method} (profile {}): {refusal}",
                smtp.profile
            );
            self.auth_decision(&smtp.profile, method, "invalid", &reason);
            return self.auth_failed(&reply::invalid_credentials());
        }
        if let Err(t) = smtp.throttle.check_user(&user) {
            return self.throttled(&smtp, method, &shown, t);
        }
        let lookup = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => return self.stopped(),
            l = smtp.authenticator.find_user(&user) => l,
        };
        let found = match lookup {
            Err(e) => return self.auth_temp_fail(&smtp, method, &shown, &e),
            Ok(UserLookup::Unknown { reason }) => {
                smtp.throttle.record_failure(self.peer.ip(), &[&user]);
                let reason = format!(
                    "user {shown} via {method} (profile {}): {reason}",
                    smtp.profile
                );
                self.auth_decision(&smtp.profile, method, "invalid", &reason);
                return self.auth_failed(&reply::invalid_credentials());
            }
            Ok(UserLookup::Found(found)) => found,
        };
        if let Err(t) = smtp.throttle.check_user(&found.user_id) {
            let who = format!("{shown} ({})", received::sanitize(&found.user_id, 128));
            return self.throttled(&smtp, method, &who, t);
        }
        let verdict = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => return self.stopped(),
            v = smtp.authenticator.check_password(&found, &password) => v,
        };
        let action = smtp.allowance.as_ref().map(|a| a.action);
        match verdict {
            Err(e) => self.auth_temp_fail(&smtp, method, &shown, &e),
            Ok(AuthVerdict::InvalidCredentials { reason }) => {
                smtp.throttle
                    .record_failure(self.peer.ip(), &[&user, &found.user_id]);
                let reason = format!(
                    "user {shown} via {method} (profile {}): {reason}",
                    smtp.profile
                );
                self.auth_decision(&smtp.profile, method, "invalid", &reason);
                self.auth_failed(&reply::invalid_credentials())
            }
            Ok(AuthVerdict::NotAllowed { .. }) => self.not_allowed(
                &smtp,
                method,
                &user,
                &found,
                "before the password was checked",
            ),
            Ok(AuthVerdict::Authenticated {
                allowance: Allowance::Denied,
                ..
            }) if action == Some(AllowanceAction::Reject) => {
                self.not_allowed(&smtp, method, &user, &found, "after the password")
            }
            Ok(AuthVerdict::Authenticated { user_id, allowance }) => {
                let typed = if user == user_id {
                    String::new()
                } else {
                    format!(", AUTH name {shown}")
                };
                self.st.auth = Some(Authenticated {
                    user: user_id,
                    method,
                });
                if allowance == Allowance::Denied {
                    self.st.monitor = true;
                    self.count_auth(&smtp.profile, method, "monitored");
                    self.decision("auth", "authenticated_monitored", &format!("via {method} (profile {}{typed}): allowance query did not match, action Monitor: every command of this session is logged", smtp.profile));
                } else {
                    self.count_auth(&smtp.profile, method, "success");
                    self.decision(
                        "auth",
                        "authenticated",
                        &format!("via {method} (profile {}{typed})", smtp.profile),
                    );
                }
                self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                Flow::Continue
            }
        }
    }

    /// A SASL exchange that ended without credentials: the decision and the reply.
    pub(super) fn exchange_failed(&mut self, profile: &str, method: &str, e: Exchange) -> Flow {
        match e {
            Exchange::Closed => Flow::Close,
            Exchange::Refused {
                reply,
                outcome,
                reason,
            } => {
                self.auth_decision(
                    profile,
                    method,
                    outcome,
                    &format!("via {method} (profile {profile}): {reason}"),
                );
                self.refuse(&reply)
            }
        }
    }

    /// The profile name for AUTH decisions before the SMTP AUTH runtime is known.
    fn smtp_auth_profile(&self) -> String {
        self.listener
            .auth
            .as_ref()
            .and_then(|a| a.smtp_auth.as_ref())
            .map(|s| s.profile.clone())
            .unwrap_or_else(|| self.profile_name().to_owned())
    }

    pub(super) fn count_auth(&self, profile: &str, method: &str, outcome: &str) {
        self.ctx
            .metrics
            .auth
            .get_or_create(&AuthLabels {
                listener: self.listener.name.clone(),
                profile: profile.to_owned(),
                method: method.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A decision about an AUTH command whose metric outcome is its log outcome.
    pub(super) fn auth_decision(&self, profile: &str, method: &str, outcome: &str, reason: &str) {
        self.count_auth(profile, method, outcome);
        self.decision("auth", outcome, reason);
    }

    /// A failed AUTH (`535`, or the allowance refusal): counted in the session, whose
    /// third failure ends it.
    pub(super) fn auth_failed(&mut self, r: &Reply) -> Flow {
        self.auth_failures += 1;
        self.reply(r);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.decision(
                "session",
                "closed",
                "too many failed AUTH commands in this session",
            );
            self.reply(&Reply::new(
                421,
                "4.7.0",
                "Too many failed authentication attempts",
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    /// The allowance query refused the user, action Reject: the profile's response.
    fn not_allowed(
        &mut self,
        smtp: &SmtpAuthRuntime,
        method: &'static str,
        user: &str,
        found: &FoundUser,
        when: &str,
    ) -> Flow {
        smtp.throttle
            .record_failure(self.peer.ip(), &[user, &found.user_id]);
        let resp = smtp
            .allowance
            .as_ref()
            .map(|a| a.response.clone())
            .unwrap_or_default();
        self.auth_decision(
            &smtp.profile,
            method,
            "not_allowed",
            &format!(
                "user {} ({}) via {method} (profile {}): allowance query did not match ({when}), action Reject",
                received::sanitize(user, 128),
                received::sanitize(&found.user_id, 128),
                smtp.profile
            ),
        );
        self.auth_failed(&Reply::custom(
            resp.code,
            Some(resp.enhanced_code),
            &resp.text,
        ))
    }

    /// The directory could not answer: `454 4.7.0`, not a failure of the client's.
    fn auth_temp_fail(
        &mut self,
        smtp: &SmtpAuthRuntime,
        method: &'static str,
        shown: &str,
        e: &AuthError,
    ) -> Flow {
        self.auth_decision(
            &smtp.profile,
            method,
            "temp_fail",
            &format!("user {shown} via {method} (profile {}): {e}", smtp.profile),
        );
        self.reply(&reply::temporary_auth_failure());
        Flow::Continue
    }

    /// Too many recent failures for the client address or the user name: `454 4.7.0`
    /// before anything is asked. The session stays open (a certificate-identified
    /// session may still send mail); the refusal counts as an error of the session.
    fn throttled(
        &mut self,
        smtp: &SmtpAuthRuntime,
        method: &'static str,
        who: &str,
        t: Throttled,
    ) -> Flow {
        let user = if who.is_empty() {
            String::new()
        } else {
            format!("user {who} ")
        };
        self.auth_decision(
            &smtp.profile,
            method,
            t.scope.outcome(),
            &format!("{user}via {method} (profile {}): {t}", smtp.profile),
        );
        self.refuse(&Reply::new(
            454,
            "4.7.0",
            "Too many failed authentication attempts, try again later",
        ))
    }

    /// The shutdown grace period ended while the directory was being asked.
    fn stopped(&mut self) -> Flow {
        self.decision(
            "session",
            "closed",
            "shutdown grace period over during AUTH",
        );
        self.reply(&reply::shutting_down());
        Flow::Close
    }

    /// Read one SASL response line.
    pub(super) async fn sasl_line(&mut self, challenge: &'static str) -> Result<Vec<u8>, Exchange> {
        self.reply(&Reply::plain(334, challenge));
        match self.next_line(MAX_COMMAND_LINE, false).await {
            Input::Line(l) => Ok(sasl::decode_response(&l)?),
            Input::TooLong => Err(Exchange::Refused {
                reply: Reply::new(500, "5.5.6", "Authentication exchange line is too long"),
                outcome: "malformed",
                reason: "authentication exchange line is too long".into(),
            }),
            Input::Timeout => {
                self.decision("session", "closed", "idle timeout during AUTH");
                self.reply(&reply::idle_timeout());
                Err(Exchange::Closed)
            }
            Input::Stopped => {
                self.decision("session", "closed", "shutting down during AUTH");
                self.reply(&reply::shutting_down());
                Err(Exchange::Closed)
            }
            Input::Closed | Input::Failed(_) => Err(Exchange::Closed),
        }
    }

    async fn sasl_plain(&mut self, initial: Option<String>) -> Result<(String, String), Exchange> {
        let raw = match initial {
            Some(i) => sasl::decode_response(i.as_bytes())?,
            None => self.sasl_line("").await?,
        };
        let Credentials { user, password } = sasl::parse_plain(&raw)?;
        Ok((user, password))
    }

    async fn sasl_login(&mut self, initial: Option<String>) -> Result<(String, String), Exchange> {
        let user = match initial {
            Some(i) => sasl::decode_response(i.as_bytes())?,
            None => self.sasl_line("VXNlcm5hbWU6").await?,
        };
        // Both lines are read before either is judged, as a client expects.
        let password = self.sasl_line("UGFzc3dvcmQ6").await?;
        let user = sasl::credential(&user)?;
        let password = sasl::credential(&password)?;
        Ok((user, password))
    }
}
