//! The session state and the pure decisions of the SMTP state machine: what EHLO
//! advertises and which command is allowed when (DESIGN.md section 3). The I/O driver
//! ([`super::conn`]) asks these functions and executes their answers.

use std::sync::Arc;

use crate::auth::CertificateFacts;
use postern_config::{MailFlowPolicy, TlsMode};

use crate::wire::params::MailParams;
use crate::wire::reply::{self, Reply};

/// TLS facts of the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsInfo {
    /// `TLSv1_3` etc.
    pub version: String,
    /// Cipher suite name.
    pub cipher: String,
}

/// How the session is authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Authenticated {
    /// The user id.
    pub user: String,
    /// `PLAIN`, `LOGIN` or `certificate`.
    pub method: &'static str,
}

impl Authenticated {
    /// Whether the identity comes from the client certificate (not from AUTH).
    pub(crate) fn by_certificate(&self) -> bool {
        self.method == "certificate"
    }
}

/// One mail transaction (MAIL .. end of DATA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transaction {
    /// Message id (also in `Received` and logs).
    pub id: String,
    /// Reverse path.
    pub from: String,
    /// MAIL parameters.
    pub params: MailParams,
    /// Recipients the next hop accepted.
    pub rcpts: Vec<String>,
    /// RCPT commands tried.
    pub attempted: u32,
}

/// What is known about the session so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionState {
    /// EHLO/HELO argument.
    pub helo: Option<String>,
    /// EHLO (not HELO) was used.
    pub esmtp: bool,
    /// TLS, once active.
    pub tls: Option<TlsInfo>,
    /// A verified client certificate (shared with the server's other sessions that
    /// presented it: [`crate::auth::CertificateFactsCache`]).
    pub cert: Option<Arc<CertificateFacts>>,
    /// Mapping the certificate failed for a temporary reason (directory down).
    pub cert_mapping_failed: bool,
    /// Authentication.
    pub auth: Option<Authenticated>,
    /// The open transaction.
    pub txn: Option<Transaction>,
    /// Messages relayed in this session.
    pub messages: u32,
    /// The allowance check failed with action Monitor: every command is logged.
    pub monitor: bool,
}

/// The rules in force for a session (policy and listener capabilities).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules<'a> {
    /// The mail flow policy.
    pub policy: &'a MailFlowPolicy,
    /// STARTTLS is possible (policy allows TLS and the listener has a certificate).
    pub starttls_available: bool,
    /// The listener's profile allows SMTP AUTH.
    pub auth_available: bool,
    /// Greeting / EHLO name.
    pub hostname: &'a str,
}

impl SessionState {
    /// Whether AUTH is advertised now.
    pub(crate) fn auth_offered(&self, r: &Rules<'_>) -> bool {
        r.auth_available
            && self.auth.as_ref().is_none_or(Authenticated::by_certificate)
            && (self.tls.is_some()
                || !(r.policy.tls == TlsMode::Required || r.policy.require_tls_for_smtp_auth))
    }

    /// Whether STARTTLS is advertised now.
    pub(crate) fn starttls_offered(&self, r: &Rules<'_>) -> bool {
        r.starttls_available && self.tls.is_none()
    }

    /// The EHLO reply.
    pub(crate) fn ehlo_reply(&self, r: &Rules<'_>) -> Reply {
        let mut lines: Vec<std::borrow::Cow<'static, str>> = vec![
            r.hostname.to_owned().into(),
            "PIPELINING".into(),
            format!("SIZE {}", r.policy.limits.max_message_size).into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if self.starttls_offered(r) {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered(r) {
            // EXTERNAL (smtp::conn::external) only to a session whose certificate is mapped.
            if self
                .auth
                .as_ref()
                .is_some_and(Authenticated::by_certificate)
            {
                lines.push("AUTH PLAIN LOGIN EXTERNAL".into());
            } else {
                lines.push("AUTH PLAIN LOGIN".into());
            }
        }
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }

    /// May the client start TLS now?
    pub(crate) fn check_starttls(&self, r: &Rules<'_>) -> Result<(), Reply> {
        if self.tls.is_some() {
            return Err(Reply::new(503, "5.5.1", "TLS already active"));
        }
        if !r.starttls_available {
            return Err(Reply::new(502, "5.5.1", "STARTTLS not available"));
        }
        Ok(())
    }

    /// May the client use AUTH now?
    pub(crate) fn check_auth(&self, r: &Rules<'_>) -> Result<(), Reply> {
        if self.helo.is_none() || !self.esmtp {
            return Err(Reply::new(503, "5.5.1", "Send EHLO first"));
        }
        if r.policy.tls == TlsMode::Required && self.tls.is_none() {
            return Err(reply::tls_required());
        }
        if !r.auth_available {
            return Err(Reply::new(503, "5.5.1", "Authentication not enabled"));
        }
        if r.policy.require_tls_for_smtp_auth && self.tls.is_none() {
            return Err(reply::encryption_required_for_auth());
        }
        // A session identified by its certificate may still authenticate with AUTH (a
        // client configured for both, as Postfix allows); AUTH twice may not.
        if self.auth.as_ref().is_some_and(|a| !a.by_certificate()) {
            return Err(Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.txn.is_some() {
            return Err(Reply::new(
                503,
                "5.5.1",
                "AUTH not permitted during a mail transaction",
            ));
        }
        Ok(())
    }

    /// May the client start a transaction now?
    pub(crate) fn check_mail(&self, r: &Rules<'_>, params: &MailParams) -> Result<(), Reply> {
        if self.helo.is_none() {
            return Err(Reply::new(503, "5.5.1", "Send HELO/EHLO first"));
        }
        if self.txn.is_some() {
            return Err(Reply::new(503, "5.5.1", "Nested MAIL command"));
        }
        let p = r.policy;
        if p.tls == TlsMode::Required && self.tls.is_none() {
            return Err(reply::tls_required());
        }
        if p.tls == TlsMode::Required && p.verify_client_certificate && self.cert.is_none() {
            return Err(Reply::new(
                530,
                "5.7.0",
                "A valid client certificate is required",
            ));
        }
        if p.require_smtp_auth && self.auth.is_none() {
            return Err(reply::auth_required());
        }
        if params.size.is_some_and(|s| s > p.limits.max_message_size) {
            return Err(reply::message_too_big());
        }
        if self.messages >= p.limits.max_messages_per_session {
            return Err(Reply::new(
                421,
                "4.7.0",
                "Too many messages in this session, reconnect to send more",
            ));
        }
        Ok(())
    }

    /// May the client add a recipient now?
    pub(crate) fn check_rcpt(&self, r: &Rules<'_>) -> Result<(), Reply> {
        match &self.txn {
            None => Err(Reply::new(503, "5.5.1", "Need MAIL command")),
            Some(t) if t.rcpts.len() as u64 >= u64::from(r.policy.limits.max_recipients) => {
                Err(reply::too_many_recipients())
            }
            Some(_) => Ok(()),
        }
    }

    /// May the client send the message now?
    pub(crate) fn check_data(&self) -> Result<(), Reply> {
        match &self.txn {
            None => Err(Reply::new(503, "5.5.1", "Need MAIL command")),
            Some(t) if t.rcpts.is_empty() && t.attempted == 0 => {
                Err(Reply::new(503, "5.5.1", "Need RCPT command"))
            }
            Some(t) if t.rcpts.is_empty() => Err(Reply::new(554, "5.5.1", "No valid recipients")),
            Some(_) => Ok(()),
        }
    }

    /// RFC 3207: after STARTTLS everything learnt from the client is forgotten.
    pub(crate) fn reset_for_tls(&mut self) {
        self.helo = None;
        self.esmtp = false;
        self.auth = None;
        self.txn = None;
        self.cert = None;
        self.cert_mapping_failed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::{Limits, PolicyAction};

    fn policy(
        tls: TlsMode,
        verify: bool,
        require_auth: bool,
        tls_for_auth: bool,
    ) -> MailFlowPolicy {
        MailFlowPolicy {
            action: PolicyAction::Relay,
            tls,
            verify_client_certificate: verify,
            require_smtp_auth: require_auth,
            require_tls_for_smtp_auth: tls_for_auth,
            limits: Limits {
                max_message_size: 1000,
                max_recipients: 2,
                max_messages_per_session: 1,
            },
            rate_limits: postern_config::RateLimits::default(),
            sender_binding: Default::default(),
        }
    }

    fn rules(p: &MailFlowPolicy, auth: bool) -> Rules<'_> {
        Rules {
            policy: p,
            starttls_available: p.tls != TlsMode::Disabled,
            auth_available: auth,
            hostname: "mx",
        }
    }

    fn greeted() -> SessionState {
        SessionState {
            helo: Some("c".into()),
            esmtp: true,
            ..Default::default()
        }
    }

    fn tls(mut s: SessionState) -> SessionState {
        s.tls = Some(TlsInfo {
            version: "TLSv1_3".into(),
            cipher: "x".into(),
        });
        s
    }

    fn ehlo_has(s: &SessionState, r: &Rules<'_>, kw: &str) -> bool {
        s.ehlo_reply(r).lines.iter().any(|l| l == kw)
    }

    #[test]
    fn ehlo_advertisement_by_state() {
        let pref = policy(TlsMode::Preferred, false, true, false);
        let req = policy(TlsMode::Required, false, true, false);
        let tfa = policy(TlsMode::Preferred, false, true, true);
        let off = policy(TlsMode::Disabled, false, true, false);
        let s = greeted();
        assert!(ehlo_has(&s, &rules(&pref, true), "STARTTLS"));
        assert!(ehlo_has(&s, &rules(&pref, true), "AUTH PLAIN LOGIN"));
        assert!(!ehlo_has(&s, &rules(&req, true), "AUTH PLAIN LOGIN"));
        assert!(!ehlo_has(&s, &rules(&tfa, true), "AUTH PLAIN LOGIN"));
        assert!(!ehlo_has(&s, &rules(&off, true), "STARTTLS"));
        assert!(ehlo_has(&s, &rules(&off, true), "AUTH PLAIN LOGIN"));
        assert!(!ehlo_has(&s, &rules(&pref, false), "AUTH PLAIN LOGIN"));
        let t = tls(greeted());
        assert!(!ehlo_has(&t, &rules(&req, true), "STARTTLS"));
        assert!(ehlo_has(&t, &rules(&req, true), "AUTH PLAIN LOGIN"));
        assert!(ehlo_has(&t, &rules(&tfa, true), "AUTH PLAIN LOGIN"));
        // Identified by certificate: AUTH still offered (with EXTERNAL) and allowed; after
        // AUTH, not.
        let mut c = tls(greeted());
        c.auth = Some(Authenticated {
            user: "alice".into(),
            method: "certificate",
        });
        assert!(ehlo_has(
            &c,
            &rules(&req, true),
            "AUTH PLAIN LOGIN EXTERNAL"
        ));
        assert!(!ehlo_has(
            &t,
            &rules(&req, true),
            "AUTH PLAIN LOGIN EXTERNAL"
        ));
        assert!(c.check_auth(&rules(&req, true)).is_ok());
        c.auth = Some(Authenticated {
            user: "frank".into(),
            method: "PLAIN",
        });
        assert!(!ehlo_has(&c, &rules(&req, true), "AUTH PLAIN LOGIN"));
        assert!(c.check_auth(&rules(&req, true)).is_err());
        for kw in [
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
        ] {
            assert!(ehlo_has(&s, &rules(&pref, true), kw), "{kw}");
        }
    }

    #[test]
    fn auth_replies() {
        let req = policy(TlsMode::Required, false, true, false);
        let tfa = policy(TlsMode::Preferred, false, true, true);
        let code = |s: &SessionState, r: &Rules<'_>| {
            s.check_auth(r)
                .err()
                .map(|e| (e.code, e.enhanced.unwrap().to_string()))
        };
        assert_eq!(
            code(&greeted(), &rules(&req, true)),
            Some((530, "5.7.0".into()))
        );
        assert_eq!(
            code(&greeted(), &rules(&tfa, true)),
            Some((538, "5.7.11".into()))
        );
        assert_eq!(code(&tls(greeted()), &rules(&tfa, true)), None);
        assert_eq!(code(&tls(greeted()), &rules(&tfa, false)).unwrap().0, 503);
        assert_eq!(
            code(&SessionState::default(), &rules(&tfa, true))
                .unwrap()
                .0,
            503
        );
    }

    #[test]
    fn mail_replies() {
        let p = MailParams::default();
        let req_verify = policy(TlsMode::Required, true, false, false);
        let r = rules(&req_verify, false);
        assert_eq!(
            greeted().check_mail(&r, &p).unwrap_err().summary(),
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        assert_eq!(tls(greeted()).check_mail(&r, &p).unwrap_err().code, 530);
        let auth = policy(TlsMode::Preferred, false, true, false);
        let r = rules(&auth, true);
        assert_eq!(
            greeted().check_mail(&r, &p).unwrap_err().summary(),
            "530 5.7.0 Authentication required"
        );
        let mut s = greeted();
        s.auth = Some(Authenticated {
            user: "u".into(),
            method: "PLAIN",
        });
        assert!(s.check_mail(&r, &p).is_ok());
        let big = MailParams {
            size: Some(1001),
            ..Default::default()
        };
        assert_eq!(s.check_mail(&r, &big).unwrap_err().code, 552);
        s.messages = 1;
        assert_eq!(s.check_mail(&r, &p).unwrap_err().code, 421);
        assert_eq!(
            SessionState::default().check_mail(&r, &p).unwrap_err().code,
            503
        );
    }

    #[test]
    fn rcpt_and_data() {
        let pol = policy(TlsMode::Preferred, false, false, false);
        let r = rules(&pol, false);
        let mut s = greeted();
        assert_eq!(s.check_rcpt(&r).unwrap_err().code, 503);
        assert_eq!(s.check_data().unwrap_err().code, 503);
        s.txn = Some(Transaction {
            id: "1".into(),
            from: String::new(),
            params: MailParams::default(),
            rcpts: vec![],
            attempted: 0,
        });
        assert!(s.check_rcpt(&r).is_ok());
        assert_eq!(
            s.check_data().unwrap_err().summary(),
            "503 5.5.1 Need RCPT command"
        );
        s.txn.as_mut().unwrap().attempted = 1;
        assert_eq!(s.check_data().unwrap_err().code, 554);
        s.txn.as_mut().unwrap().rcpts = vec!["a@b".into(), "c@d".into()];
        assert_eq!(
            s.check_rcpt(&r).unwrap_err().summary(),
            "452 4.5.3 Too many recipients"
        );
        assert!(s.check_data().is_ok());
    }
}
