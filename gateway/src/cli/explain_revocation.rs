//! `postern-gateway explain --cert`: the client certificate through the gateway's own
//! verifier, revocation answered for real. The listener's CrlSources are fetched once by
//! the gateway's CRL service (the same fetch, size cap, parse, signature check and store
//! the gateway uses; the wait is the gateway's startup gate: every source has a CRL in
//! force or its first fetch failed), the listener is built by `runtime::build` (so the
//! verifier, its `tls.revocation` mode and OCSP client are the session's), and the
//! verifier's `verify_chain` decides — `tls::revocation_mode` and `tls::ocsp_check` as
//! for a handshake. What answered is read back from the CRL store and the verdict's
//! source.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::explain::HandshakeCheck;
use postern_config::{CrlFailurePolicy, CrlScope, GatewayConfig, RevocationMode, pem};
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::crl::{
    self, CrlService, CrlStatus, CrlStore, FetchSettings, ServiceSettings, SourceState,
};
use crate::ldap::{LdapDirectories, LdapMetrics};
use crate::metrics::Metrics;
use crate::ocsp::{OcspClient, OcspMetrics};
use crate::runtime::{self, Services};
use crate::tls::revocation_mode::Mechanism;
use crate::tls::verifier::capture_refusal;
use crate::tls::{CheckedCertificate, RevocationStatus, check_certificate};

/// Why the certificate could not be put through the verifier.
#[derive(Debug, thiserror::Error)]
pub(super) enum RevocationCheckError {
    /// The CRL service could not start (HTTP client).
    #[error("CRL service: {0}")]
    Service(#[from] crl::service::ServiceError),
    /// The OCSP client could not be built.
    #[error("OCSP client: {0}")]
    Ocsp(#[from] crate::ocsp::OcspError),
    /// The configuration does not build (as `postern-gateway --check` would say).
    #[error("the configuration does not build: {0}")]
    Build(String),
    /// The gateway would not serve the listener.
    #[error("the gateway would not serve listener {listener}: {message}")]
    ListenerRefused {
        /// The listener.
        listener: String,
        /// Why.
        message: String,
    },
}

/// Put the certificates of `cert_pem` (the first is the client's, the others the chain
/// it presents) through the verifier the gateway would use for `client_ip` on
/// `listener`; `None` when there is nothing to run (no such listener, no certificate,
/// or no client certificate is asked for on this path).
pub(super) async fn check(
    config: &GatewayConfig,
    listener: &str,
    client_ip: IpAddr,
    cert_pem: &str,
) -> Result<Option<HandshakeCheck>, RevocationCheckError> {
    let Some(l) = config.listeners.get(listener) else {
        return Ok(None);
    };
    let Some(tls) = &l.tls else {
        return Ok(None);
    };
    let Ok(ders) = pem::certificates(cert_pem) else {
        return Ok(None);
    };
    let Some(end_entity) = ders.first() else {
        return Ok(None);
    };

    let settings = FetchSettings::default();
    let store = Arc::new(CrlStore::new());
    let sources = load_crls(config, &store, &settings).await?;
    let services = Services {
        metrics: Metrics::register(&mut Registry::default()),
        revocation: store.clone(),
        auth_throttles: Default::default(),
        ldap: LdapDirectories::new(LdapMetrics::new()),
        ocsp: OcspClient::new(OcspMetrics::default())?,
        rate_limits: Default::default(),
    };
    let built = runtime::build(config, 0, &services)
        .map_err(|e| RevocationCheckError::Build(e.to_string()))?;
    if let Some(r) = built.refused.iter().find(|r| r.listener == listener) {
        return Err(RevocationCheckError::ListenerRefused {
            listener: listener.to_owned(),
            message: r.message.clone(),
        });
    }
    let Some(rt) = built.listeners.get(listener) else {
        return Ok(None);
    };
    let (_, policy) = rt.policy_for(client_ip);
    let Some(verifier) = policy.verifier.clone() else {
        return Ok(None);
    };

    let mut steps = sources;
    let r = &tls.revocation;
    steps.push((
        "revocation mode",
        format!(
            "{} for the client's certificate, onUnavailable {:?}; the CA certificates of its path by CRL",
            r.mode.as_str(),
            r.on_unavailable
        ),
    ));
    let bundle = tls
        .client_ca_pem
        .as_deref()
        .and_then(|b| pem::certificates(b).ok())
        .unwrap_or_default();
    for (i, der) in path(&ders, &bundle).iter().enumerate() {
        if i == 0 && r.mode == RevocationMode::OcspOnly {
            continue;
        }
        let line = crl_line(&store, der);
        steps.push((
            "crl",
            if i == 0 && r.mode == RevocationMode::OcspThenCrl {
                format!("(asked only when OCSP gives no answer) {line}")
            } else {
                line
            },
        ));
    }

    let ee = end_entity.clone();
    let intermediates = ders[1..].to_vec();
    let (result, _, verdict) =
        capture_refusal(async { verifier.verify_chain(&ee, &intermediates, UnixTime::now()) })
            .await;
    let refusal = match result {
        Ok(()) => {
            steps.push((
                "verifier",
                match verdict {
                    Some(v) => match (v.mechanism, &v.responder) {
                        (Some(Mechanism::Ocsp), Some(url)) => format!(
                            "accepted: OCSP responder {url} answered good ({v})"
                        ),
                        (Some(m), _) => format!(
                            "accepted: the {} answered not revoked ({v})",
                            if m == Mechanism::Crl { "CRL" } else { "OCSP responder" }
                        ),
                        (None, _) => format!(
                            "accepted without a current revocation answer (onUnavailable Allow; {v})"
                        ),
                    },
                    None => "accepted: chain, validity, key usage, and no CRL in force lists a certificate of the path"
                        .to_owned(),
                },
            ));
            None
        }
        Err(f) => {
            let why = format!("{}: {}", f.reason, f.detail);
            steps.push((
                "verifier",
                format!(
                    "REFUSED ({why}){}",
                    if verifier.enforcing() {
                        "; verifyClientCertificate: the handshake fails"
                    } else {
                        "; the session ignores the certificate"
                    }
                ),
            ));
            Some(why)
        }
    };
    Ok(Some(HandshakeCheck { steps, refusal }))
}

/// Fetch the CrlSources that apply to inbound TLS once, as the gateway does at start,
/// into `store`; what each source has in force afterwards, as steps.
async fn load_crls(
    config: &GatewayConfig,
    store: &Arc<CrlStore>,
    settings: &FetchSettings,
) -> Result<Vec<(&'static str, String)>, RevocationCheckError> {
    let mut inbound = config.clone();
    inbound
        .crl_sources
        .retain(|_, s| s.applies_to.contains(&CrlScope::InboundSmtpTls));
    if inbound.crl_sources.is_empty() {
        return Ok(vec![(
            "crl source",
            "no CrlSource applies to inbound TLS".to_owned(),
        )]);
    }
    let service = CrlService::new(
        store.clone(),
        ServiceSettings {
            fetch: settings.clone(),
            cache_dir: None,
        },
    )?;
    service.apply(&inbound).await;
    // Each URL is tried once (primary, then secondary), within the fetch timeouts.
    let deadline = Instant::now() + 2 * (settings.connect_timeout + settings.timeout);
    while !store.startup_pending().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.shutdown();
    Ok(inbound
        .crl_sources
        .keys()
        .filter_map(|name| store.source_status(name))
        .map(|s| ("crl source", source_line(&s)))
        .collect())
}

/// What a source has in force, or why it has nothing and what that means.
fn source_line(s: &crl::SourceStatus) -> String {
    let closed = match s.failure_policy {
        CrlFailurePolicy::Open => {
            "failurePolicy Open: the certificates it would answer for are not checked by it"
        }
        _ => "failurePolicy Closed: the certificates it would answer for are refused (crl_missing)",
    };
    match s.state {
        SourceState::InForce => format!(
            "{}: {} CRL(s) in force from {}",
            s.name,
            s.crls.len(),
            s.served_url.as_deref().unwrap_or("the disk cache")
        ),
        SourceState::Disabled => format!("{}: disabled: neither fetched nor enforced", s.name),
        SourceState::FetchFailed => format!(
            "{}: fetch FAILED: {}; {closed}",
            s.name,
            s.last_error
                .as_ref()
                .map(|e| format!("{} ({}, {})", e.message, e.url, e.reason))
                .unwrap_or_default()
        ),
        SourceState::NotFetched => format!(
            "{}: no CRL yet ({}); {closed}",
            s.name,
            if s.primary_url.is_none() {
                "no URL: discovered from certificates"
            } else {
                "the first fetch did not end in time"
            }
        ),
    }
}

/// The client's certificate, then its issuers up the presented chain and the client CA
/// bundle, by name (as far as they go; a self-signed certificate ends the walk).
fn path(
    presented: &[CertificateDer<'static>],
    bundle: &[CertificateDer<'static>],
) -> Vec<CertificateDer<'static>> {
    let mut out = vec![presented[0].clone()];
    while out.len() <= presented.len() + bundle.len() {
        let Ok((_, last)) = X509Certificate::from_der(out.last().expect("not empty")) else {
            break;
        };
        if last.subject() == last.issuer() {
            break;
        }
        let issuer = presented[1..].iter().chain(bundle).find(|d| {
            X509Certificate::from_der(d).is_ok_and(|(_, c)| c.subject() == last.issuer())
        });
        match issuer {
            Some(d) if !out.contains(d) => out.push(d.clone()),
            _ => break,
        }
    }
    out
}

/// The CRL store's answer for one certificate, with the CRL that gave it.
fn crl_line(store: &CrlStore, der: &[u8]) -> String {
    let Ok((cert, status)) = check_certificate(store, CrlScope::InboundSmtpTls, der) else {
        return "the certificate does not parse".to_owned();
    };
    let who = format!(
        "{} (serial {})",
        cert.subject(),
        crate::auth::certificate::serial_hex(cert.raw_serial())
    );
    let facts = CheckedCertificate::of(&cert);
    let crl_of = |source: &str| -> String {
        let (crls, _) = store.in_force(source);
        crls.iter()
            .find(|ix| *ix.meta.issuer_der == *facts.issuer_der && ix.meta.covers(&facts))
            .map(|ix| {
                let s = CrlStatus::of(ix, crl::unix_now());
                format!(
                    "CRL of {} of source {source} (CRL number {}, nextUpdate {})",
                    s.issuer,
                    s.crl_number.as_deref().unwrap_or("none"),
                    s.next_update.as_deref().unwrap_or("none")
                )
            })
            .unwrap_or_else(|| format!("source {source}"))
    };
    match status {
        RevocationStatus::Good => {
            let by =
                store.status().iter().map(|s| s.name.clone()).find(|name| {
                    store.in_force(name).0.iter().any(|ix| {
                        *ix.meta.issuer_der == *facts.issuer_der && ix.meta.covers(&facts)
                    })
                });
            format!(
                "{who}: not revoked ({})",
                by.map(|s| crl_of(&s))
                    .unwrap_or_else(|| "a current CRL of its issuer".into())
            )
        }
        RevocationStatus::NoCrl => format!("{who}: no CRL of its issuer is in force"),
        RevocationStatus::Revoked { source, reason } => format!(
            "{who}: REVOKED{} ({})",
            reason.map(|r| format!(", reason {r}")).unwrap_or_default(),
            crl_of(&source)
        ),
        RevocationStatus::Stale {
            source,
            next_update,
        } => format!(
            "{who}: cannot be checked: the CRL of source {source} is past its nextUpdate {next_update}"
        ),
        RevocationStatus::Missing { source, why } => {
            format!("{who}: cannot be checked: CRL source {source}: {why}")
        }
    }
}
