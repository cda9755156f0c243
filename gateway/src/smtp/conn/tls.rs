//! STARTTLS and implicit TLS: the handshake, the client certificate check and its
//! mapping to a user.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::auth::{CertificateFacts, CertificateMapping};
use crate::metrics::{AuthLabels, ReasonLabels};
use crate::net::Stream;
use crate::smtp::session::{Authenticated, TlsInfo};
use crate::tls::verifier::{capture_refusal, handshake_failure_reason};
use crate::wire::reply::Reply;

use super::{Connection, Flow};

/// What [`Connection::remap_after_outage`] did.
pub(super) enum Remap {
    /// Nothing to ask again: the handshake's mapping did not fail for a temporary reason.
    NotAsked,
    /// The directory answered (the session may now be authenticated, or not found).
    Answered,
    /// The directory still cannot be asked: the caller answers `454 4.7.0`.
    Unreachable,
}

impl Connection {
    pub(super) async fn starttls(&mut self) -> Flow {
        if let Err(r) = self.st.check_starttls(&self.rules()) {
            self.decision("starttls", "refused", &r.summary());
            return self.refuse(&r);
        }
        self.reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }
        let discarded = self.io.discard_input();
        if discarded > 0 {
            self.decision(
                "starttls",
                "discarded",
                &format!("{discarded} bytes of plaintext pipelined after STARTTLS"),
            );
        }
        self.abort_transaction().await;
        self.st.reset_for_tls();
        if self.handshake().await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    /// Run the server handshake on the plain stream; false closes the session.
    pub(super) async fn handshake(&mut self) -> bool {
        let Some(config) = self.policy.tls.clone() else {
            self.decision(
                "tls",
                "failed",
                "no TLS configuration for this listener and policy",
            );
            return false;
        };
        let Some(tcp) = self.io.stream.take_plain() else {
            return false;
        };
        let acceptor = TlsAcceptor::from(config);
        let t = self.listener.tls_handshake_timeout;
        let handshake = capture_refusal(timeout(t, acceptor.accept(tcp)));
        let (result, refusal, verdict) = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => return false,
            r = handshake => r,
        };
        let labels = |outcome: &str, reason: &str| ReasonLabels {
            listener: self.listener.name.clone(),
            outcome: outcome.into(),
            reason: reason.into(),
        };
        let tls = match result {
            Err(_) => {
                self.ctx
                    .metrics
                    .tls_handshakes
                    .get_or_create(&labels("failed", "timeout"))
                    .inc();
                self.decision(
                    "tls",
                    "failed",
                    &format!("handshake timeout (timeouts.tlsHandshake {t:?})"),
                );
                return false;
            }
            Ok(Err(e)) => {
                // The verifier's reason is more precise than the alert's (several refusals
                // share `certificate_unknown`, e.g. `version1_not_allowed`).
                let reason = refusal
                    .as_ref()
                    .map_or_else(|| handshake_failure_reason(&e), |r| r.failure.reason);
                self.ctx
                    .metrics
                    .tls_handshakes
                    .get_or_create(&labels("failed", reason))
                    .inc();
                // Name the refused certificate and why (the error only carries the alert).
                let detail = match refusal {
                    Some(r) => {
                        // Not through the cache, which holds verified certificates only: a
                        // client presenting ever new refused ones cannot evict them.
                        self.st.cert = CertificateFacts::from_der(&r.end_entity).ok().map(Arc::new);
                        r.failure.detail
                    }
                    None => e.to_string(),
                };
                self.decision("tls", "failed", &format!("{reason}: {detail}"));
                return false;
            }
            Ok(Ok(tls)) => tls,
        };
        let (_, conn) = tls.get_ref();
        let info = TlsInfo {
            version: conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .replace('_', "."),
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown")
                .to_owned(),
        };
        let chain: Option<Vec<CertificateDer<'static>>> = conn
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .map(|c| c.to_vec());
        self.io.stream = Stream::ServerTls(Box::new(tls));
        self.st.tls = Some(info);
        self.ctx
            .metrics
            .tls_handshakes
            .get_or_create(&labels(
                "ok",
                if chain.is_some() {
                    "client_certificate"
                } else {
                    "no_client_certificate"
                },
            ))
            .inc();
        self.decision(
            "tls",
            "established",
            &format!(
                "cipher {}{}",
                self.st
                    .tls
                    .as_ref()
                    .map(|t| t.cipher.as_str())
                    .unwrap_or(""),
                verdict.map(|v| format!(" {v}")).unwrap_or_default()
            ),
        );
        if let Some(chain) = chain {
            self.client_certificate(&chain).await;
        }
        true
    }

    pub(super) fn cert_metric(&self, outcome: &str, reason: &str) {
        self.ctx
            .metrics
            .client_certificates
            .get_or_create(&ReasonLabels {
                listener: self.listener.name.clone(),
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A client certificate was presented: check it (lenient mode) and map it to a user.
    pub(super) async fn client_certificate(&mut self, chain: &[CertificateDer<'static>]) {
        let Some(verifier) = self.policy.verifier.clone() else {
            return;
        };
        if !verifier.enforcing()
            && let Err(f) = verifier.verify_chain(&chain[0], &chain[1..], UnixTime::now())
        {
            self.cert_metric("invalid_ignored", f.reason);
            self.decision(
                "certificate",
                "ignored",
                &format!("invalid certificate ignored ({}): {}", f.reason, f.detail),
            );
            return;
        }
        match self.ctx.cert_facts.facts(&chain[0]) {
            Ok(facts) => self.st.cert = Some(facts),
            Err(e) => {
                self.cert_metric("invalid_ignored", "unreadable");
                self.decision("certificate", "ignored", &e.to_string());
                return;
            }
        }
        self.decision(
            "certificate",
            "valid",
            "chain, validity and revocation verified",
        );
        self.map_certificate().await;
    }

    /// Asks the directory again when mapping the session's certificate failed for a
    /// temporary reason (the directory did not answer at the handshake), for MAIL and AUTH
    /// EXTERNAL.
    pub(super) async fn remap_after_outage(&mut self) -> Remap {
        if self.st.auth.is_some() || !self.st.cert_mapping_failed || self.st.cert.is_none() {
            return Remap::NotAsked;
        }
        self.map_certificate().await;
        if self.st.cert_mapping_failed {
            Remap::Unreachable
        } else {
            Remap::Answered
        }
    }

    pub(super) async fn map_certificate(&mut self) {
        let Some(mapper) = self
            .listener
            .auth
            .as_ref()
            .and_then(|a| a.certificate.clone())
        else {
            // Verified because the policy asks for certificates, but the listener's profile
            // maps none to users (no profile, or SMTP AUTH only): the session is not
            // authenticated by it.
            self.cert_metric("valid_unmapped", "no_certificate_profile");
            self.decision(
                "certificate_auth",
                "not_mapped",
                "the listener's authentication profile maps no certificates to users",
            );
            return;
        };
        let Some(facts) = self.st.cert.clone() else {
            return;
        };
        // Certificate-type gating (auth::gate): a card's other certificates are refused
        // here, before the directory is asked.
        if let Some(refusal) = self
            .listener
            .auth
            .as_ref()
            .and_then(|a| a.certificate_gate.check(&facts).err())
        {
            self.cert_metric("type_refused", refusal.label());
            self.decision("certificate_auth", "type_refused", &refusal.to_string());
            return;
        }
        let auth_metric = |s: &Self, outcome: &str| {
            s.ctx
                .metrics
                .auth
                .get_or_create(&AuthLabels {
                    listener: s.listener.name.clone(),
                    profile: s.profile_name().to_owned(),
                    method: "certificate".into(),
                    outcome: outcome.into(),
                })
                .inc();
        };
        self.st.cert_mapping_failed = false;
        self.query = self
            .listener
            .auth
            .as_ref()
            .map(|a| a.certificate_query.clone())
            .unwrap_or_default();
        match mapper.map(&facts).await {
            Ok(CertificateMapping::Mapped { user_id, dn }) => {
                self.st.auth = Some(Authenticated {
                    user: user_id,
                    method: "certificate",
                });
                self.cert_metric("mapped", "found");
                auth_metric(self, "success");
                self.decision(
                    "certificate_auth",
                    "authenticated",
                    &format!(
                        "certificate mapped to one entry{}",
                        dn.map(|d| format!(" ({d})")).unwrap_or_default()
                    ),
                );
            }
            Ok(CertificateMapping::NotFound) => {
                self.cert_metric("not_found", "no_entry");
                auth_metric(self, "not_found");
                self.decision(
                    "certificate_auth",
                    "not_authenticated",
                    "no user found for the certificate",
                );
            }
            Ok(CertificateMapping::Ambiguous { count }) => {
                self.cert_metric("ambiguous", "several_entries");
                auth_metric(self, "ambiguous");
                self.decision(
                    "certificate_auth",
                    "not_authenticated",
                    &format!("{count} users match the certificate"),
                );
            }
            Err(e) => {
                self.st.cert_mapping_failed = true;
                self.cert_metric("error", "directory");
                auth_metric(self, "temp_fail");
                self.decision("certificate_auth", "temp_fail", &e.to_string());
            }
        }
    }

    // --- AUTH --------------------------------------------------------------------------
}
