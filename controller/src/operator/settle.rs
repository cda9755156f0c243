//! Whether the gateways have taken a configuration just published (pure): every live
//! gateway runs it (or refused it), and has the outcome of the first fetch of each
//! of its CRL sources. Until then the objects' statuses would say something about to
//! change (`Pending`, `NotFetched`, a Listener without its revocation coverage), so the
//! status writes wait for it, a short while at most (`state::PUBLISH_GRACE`), and each
//! object is written once, in its settled state.

use k8s_openapi::jiff::Timestamp;
use postern_config::GatewayConfig;
use postern_config::protocol::{CrlFacts, GatewayReport};

use super::fleet::GatewayState;

/// Whether every live gateway has settled on the configuration `hash` (`config`). A
/// live gateway not ready yet (still starting) is expected to take it too. Without a
/// live gateway there is nothing to wait for.
pub(crate) fn settled(
    gateways: &[GatewayState],
    hash: &str,
    config: &GatewayConfig,
    now: Timestamp,
) -> bool {
    gateways
        .iter()
        .filter(|g| g.alive(now))
        .all(|g| gateway_settled(&g.report, hash, config))
}

fn gateway_settled(report: &GatewayReport, hash: &str, config: &GatewayConfig) -> bool {
    if report.refusal.as_ref().is_some_and(|r| r.hash == hash) {
        // It will not take this configuration: nothing more is coming.
        return true;
    }
    if report.applied_hash.as_deref() != Some(hash) {
        return false;
    }
    // The sources the gateway fetches at once (as its CRL store counts them): enabled,
    // with a URL of their own. Discovery-only sources wait for a certificate to name
    // their URLs, which may never come.
    config
        .crl_sources
        .iter()
        .filter(|(_, s)| s.enabled && s.primary_url.is_some())
        .all(|(name, _)| {
            report
                .crl_sources
                .iter()
                .any(|f| f.name == *name && first_outcome_known(f))
        })
}

/// Whether a source's first fetch has an outcome: a CRL in force, or a failure.
fn first_outcome_known(f: &CrlFacts) -> bool {
    f.this_update.is_some()
        || f.last_fetch_time.is_some()
        || f.last_error.is_some()
        || !f.crls.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;
    use postern_config::protocol::{CrlError, Refusal};

    const H1: &str = "sha256:1111";
    const H2: &str = "sha256:2222";

    fn now() -> Timestamp {
        "2025-01-01T00:00:00Z".parse().unwrap()
    }

    fn gw(name: &str, report: GatewayReport) -> GatewayState {
        GatewayState {
            name: name.into(),
            report,
            expires: Some(now() + SignedDuration::from_secs(30)),
        }
    }

    fn running(hash: &str, crl_sources: Vec<CrlFacts>) -> GatewayReport {
        GatewayReport {
            applied_hash: Some(hash.into()),
            ready: true,
            crl_sources,
            ..Default::default()
        }
    }

    fn config(sources: &[(&str, bool, Option<&str>)]) -> GatewayConfig {
        let mut c = GatewayConfig::default();
        for (name, enabled, url) in sources {
            let source: postern_config::CrlSource = serde_json::from_value(serde_json::json!({
                "enabled": true, "format": "Asn1", "interval": "1h", "appliesTo": ["InboundSmtpTls"],
            }))
            .unwrap();
            c.crl_sources.insert(
                (*name).into(),
                postern_config::CrlSource {
                    enabled: *enabled,
                    primary_url: url.map(Into::into),
                    ..source
                },
            );
        }
        c
    }

    fn facts(name: &str) -> CrlFacts {
        CrlFacts {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn settled_once_every_gateway_runs_the_hash() {
        let c = config(&[]);
        let a = gw("a", running(H1, vec![]));
        let b = gw("b", running(H2, vec![]));
        assert!(
            settled(&[], H1, &c, now()),
            "no gateway: nothing to wait for"
        );
        assert!(settled(std::slice::from_ref(&a), H1, &c, now()));
        assert!(!settled(&[a.clone(), b.clone()], H1, &c, now()));
        // A gateway that refused it is done too; an expired one does not count, one still
        // starting does.
        let refused = gw(
            "b",
            GatewayReport {
                refusal: Some(Refusal {
                    hash: H1.into(),
                    message: "bad".into(),
                }),
                ..running(H2, vec![])
            },
        );
        assert!(settled(&[a.clone(), refused], H1, &c, now()));
        let not_ready = gw(
            "b",
            GatewayReport {
                ready: false,
                ..running(H2, vec![])
            },
        );
        assert!(!settled(&[a.clone(), not_ready], H1, &c, now()));
        let expired = GatewayState {
            expires: Some(now() - SignedDuration::from_secs(1)),
            ..b
        };
        assert!(settled(&[a, expired], H1, &c, now()));
    }

    #[test]
    fn settled_once_each_fetched_source_has_a_first_outcome() {
        let c = config(&[
            ("fetched", true, Some("http://crl.test/a.crl")),
            ("disabled", false, Some("http://crl.test/b.crl")),
            ("discovery-only", true, None),
        ]);
        let pending = gw("a", running(H1, vec![facts("fetched")]));
        assert!(!settled(&[pending], H1, &c, now()));
        let unreported = gw("a", running(H1, vec![]));
        assert!(!settled(&[unreported], H1, &c, now()));
        let in_force = CrlFacts {
            this_update: Some("2025-01-01T00:00:00Z".into()),
            last_fetch_time: Some("2025-01-01T00:00:00Z".into()),
            ..facts("fetched")
        };
        // One gateway running H1 with these facts.
        let alone = |f: CrlFacts| settled(&[gw("a", running(H1, vec![f]))], H1, &c, now());
        assert!(alone(in_force));
        let failed = CrlFacts {
            last_error: Some(CrlError {
                time: "2025-01-01T00:00:00Z".into(),
                reason: "network".into(),
                message: "connection refused".into(),
            }),
            ..facts("fetched")
        };
        assert!(alone(failed));
    }
}
