//! `AUTH EXTERNAL` (RFC 4422 appendix A, RFC 4954): the client asks to be authenticated
//! as the identity its TLS client certificate was mapped to. It succeeds only when the
//! session's certificate was verified and mapped to a user; the authorization identity,
//! when the client sends one, must be exactly that user id (anything else is a request
//! to act as somebody else: `535 5.7.8`). No password is involved, so the failed-AUTH
//! throttle does not count it; a failure still counts towards the session's limit. When
//! the directory could not map the certificate (down at the handshake), EXTERNAL asks it
//! again and answers `454 4.7.0` while it still cannot, as MAIL does.

use crate::auth::SmtpAuthRuntime;
use crate::smtp::received;
use crate::smtp::sasl;
use crate::smtp::session::Authenticated;
use crate::wire::reply::{self, Reply};

use super::auth::Exchange;
use super::tls::Remap;
use super::{Connection, Flow};

const METHOD: &str = "EXTERNAL";

impl Connection {
    pub(super) async fn external(
        &mut self,
        smtp: &SmtpAuthRuntime,
        initial: Option<String>,
    ) -> Flow {
        // Mapping failed for a temporary reason (the directory was down at the
        // handshake): ask again, as MAIL does, and answer `454 4.7.0` if it still cannot.
        if matches!(self.remap_after_outage().await, Remap::Unreachable) {
            self.auth_decision(
                &smtp.profile,
                METHOD,
                "temp_fail",
                "via EXTERNAL: the client certificate could not be mapped (the directory did not answer)",
            );
            self.reply(&reply::temporary_auth_failure());
            return Flow::Continue;
        }
        let mapped = self
            .st
            .auth
            .as_ref()
            .filter(|a| a.by_certificate())
            .map(|a| a.user.clone());
        let Some(user) = mapped else {
            self.auth_decision(
                &smtp.profile,
                METHOD,
                "invalid",
                "via EXTERNAL: the session has no valid client certificate mapped to a user",
            );
            return self.auth_failed(&reply::invalid_credentials());
        };
        let raw = match initial {
            Some(i) => sasl::decode_response(i.as_bytes()).map_err(Exchange::from),
            None => self.sasl_line("").await,
        };
        let authzid = match raw.and_then(|r| sasl::credential(&r).map_err(Exchange::from)) {
            Ok(a) => a,
            Err(e) => return self.exchange_failed(&smtp.profile, METHOD, e),
        };
        if !authzid.is_empty() && authzid != user {
            let reason = format!(
                "via EXTERNAL: authorization identity {} is not the certificate's user {}",
                received::sanitize(&authzid, 128),
                received::sanitize(&user, 128)
            );
            self.auth_decision(&smtp.profile, METHOD, "foreign_authzid", &reason);
            return self.auth_failed(&reply::invalid_credentials());
        }
        self.st.auth = Some(Authenticated {
            user,
            method: METHOD,
        });
        self.count_auth(&smtp.profile, METHOD, "success");
        self.decision(
            "auth",
            "authenticated",
            &format!(
                "via EXTERNAL (client certificate, profile {})",
                smtp.profile
            ),
        );
        self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
        Flow::Continue
    }
}
