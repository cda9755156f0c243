//! SMTP AUTH (PLAIN, LOGIN): the exchange, the authenticator's verdict and the
//! allowance action.

use crate::auth::{Allowance, AuthVerdict};
use crate::config::AllowanceAction;
use crate::metrics::AuthLabels;
use crate::smtp::command::MAX_COMMAND_LINE;
use crate::smtp::received;
use crate::smtp::reply::{self, Reply};
use crate::smtp::sasl::{self, Credentials};
use crate::smtp::session::Authenticated;

use super::{Connection, Flow, Input, MAX_AUTH_FAILURES};

impl Connection {
    pub(super) async fn auth(&mut self, mechanism: String, initial: Option<String>) -> Flow {
        if let Err(r) = self.st.check_auth(&self.rules()) {
            self.decision("auth", "refused", &r.summary());
            return self.refuse(&r);
        }
        let Some(smtp) = self
            .listener
            .auth
            .as_ref()
            .and_then(|a| a.smtp_auth.clone())
        else {
            return self.refuse(&Reply::new(503, "5.5.1", "Authentication not enabled"));
        };
        let method: &'static str = match mechanism.as_str() {
            "PLAIN" => "PLAIN",
            "LOGIN" => "LOGIN",
            _ => {
                return self.refuse(&Reply::new(
                    504,
                    "5.5.4",
                    "Unrecognized authentication type",
                ));
            }
        };
        self.query = smtp.query.clone();
        let creds = if method == "PLAIN" {
            self.sasl_plain(initial).await
        } else {
            self.sasl_login(initial).await
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(Some(r)) => return self.refuse(&r),
            Err(None) => return Flow::Close,
        };
        let labels = |outcome: &str| AuthLabels {
            listener: self.listener.name.clone(),
            profile: smtp.profile.clone(),
            method: method.into(),
            outcome: outcome.into(),
        };
        let verdict = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => {
                self.reply(&reply::shutting_down());
                return Flow::Close;
            }
            v = smtp.authenticator.authenticate(&user, &password) => v,
        };
        let shown_user = received::sanitize(&user, 128);
        match verdict {
            Err(e) => {
                self.ctx
                    .metrics
                    .auth
                    .get_or_create(&labels("temp_fail"))
                    .inc();
                self.decision(
                    "auth",
                    "temp_fail",
                    &format!(
                        "user {shown_user} via {method} (profile {}): {e}",
                        smtp.profile
                    ),
                );
                self.reply(&reply::temporary_auth_failure());
                Flow::Continue
            }
            Ok(AuthVerdict::InvalidCredentials { reason }) => {
                self.ctx
                    .metrics
                    .auth
                    .get_or_create(&labels("invalid"))
                    .inc();
                self.decision(
                    "auth",
                    "invalid",
                    &format!(
                        "user {shown_user} via {method} (profile {}): {reason}",
                        smtp.profile
                    ),
                );
                self.auth_failures += 1;
                self.reply(&reply::invalid_credentials());
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.reply(&Reply::new(
                        421,
                        "4.7.0",
                        "Too many failed authentication attempts",
                    ));
                    return Flow::Close;
                }
                Flow::Continue
            }
            Ok(AuthVerdict::Authenticated { user_id, allowance }) => {
                let action = smtp.allowance.as_ref().map(|a| a.action);
                match (allowance, action) {
                    (Allowance::Denied, Some(AllowanceAction::Reject)) => {
                        let resp = smtp
                            .allowance
                            .as_ref()
                            .map(|a| a.response.clone())
                            .unwrap_or_default();
                        self.ctx
                            .metrics
                            .auth
                            .get_or_create(&labels("not_allowed"))
                            .inc();
                        self.decision("auth", "not_allowed", &format!("user {shown_user} via {method} (profile {}): allowance query did not match, action Reject", smtp.profile));
                        let r = Reply::custom(resp.code, Some(resp.enhanced_code), &resp.text);
                        self.reply(&r);
                        Flow::Continue
                    }
                    (Allowance::Denied, _) => {
                        self.st.auth = Some(Authenticated {
                            user: user_id,
                            method,
                        });
                        self.st.monitor = true;
                        self.ctx
                            .metrics
                            .auth
                            .get_or_create(&labels("monitored"))
                            .inc();
                        self.decision("auth", "authenticated_monitored", &format!("via {method} (profile {}): allowance query did not match, action Monitor: every command of this session is logged", smtp.profile));
                        self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                        Flow::Continue
                    }
                    (Allowance::Allowed | Allowance::NotChecked, _) => {
                        self.st.auth = Some(Authenticated {
                            user: user_id,
                            method,
                        });
                        self.ctx
                            .metrics
                            .auth
                            .get_or_create(&labels("success"))
                            .inc();
                        self.decision(
                            "auth",
                            "authenticated",
                            &format!("via {method} (profile {})", smtp.profile),
                        );
                        self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                        Flow::Continue
                    }
                }
            }
        }
    }

    /// Read one SASL response line. `Err(None)`: the connection is gone.
    pub(super) async fn sasl_line(
        &mut self,
        challenge: &'static str,
    ) -> Result<Vec<u8>, Option<Reply>> {
        self.reply(&Reply::plain(334, challenge));
        match self.next_line(MAX_COMMAND_LINE, false).await {
            Input::Line(l) => sasl::decode_response(&l).map_err(|e| Some(e.reply())),
            Input::TooLong => Err(Some(Reply::new(
                500,
                "5.5.6",
                "Authentication exchange line is too long",
            ))),
            Input::Timeout => {
                self.reply(&reply::idle_timeout());
                Err(None)
            }
            Input::Stopped => {
                self.reply(&reply::shutting_down());
                Err(None)
            }
            Input::Closed | Input::Failed(_) => Err(None),
        }
    }

    pub(super) async fn sasl_plain(
        &mut self,
        initial: Option<String>,
    ) -> Result<(String, String), Option<Reply>> {
        let raw = match initial {
            Some(i) => sasl::decode_response(i.as_bytes()).map_err(|e| Some(e.reply()))?,
            None => self.sasl_line("").await?,
        };
        let Credentials { user, password } =
            sasl::parse_plain(&raw).map_err(|e| Some(e.reply()))?;
        Ok((user, password))
    }

    pub(super) async fn sasl_login(
        &mut self,
        initial: Option<String>,
    ) -> Result<(String, String), Option<Reply>> {
        let user = match initial {
            Some(i) => sasl::decode_response(i.as_bytes()).map_err(|e| Some(e.reply()))?,
            None => self.sasl_line("VXNlcm5hbWU6").await?,
        };
        let password = self.sasl_line("UGFzc3dvcmQ6").await?;
        let user = sasl::credential(&user).map_err(|e| Some(e.reply()))?;
        let password = sasl::credential(&password).map_err(|e| Some(e.reply()))?;
        Ok((user, password))
    }

    // --- Transactions --------------------------------------------------------------------
}
