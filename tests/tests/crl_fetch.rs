//! CRL sources against a real HTTP(S) server: primary/secondary failover, last good copy
//! kept, refusals (wrong key, older), PEM and DER, conditional GET, size cap, timeouts,
//! stale CRLs failing closed, the disk cache, status and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::protocol::ServedBy;
use postern_config::{CrlScope, CrlSource};
use postern_gateway::crl::{CrlService, CrlStore};
use postern_gateway::tls::{MissingCrl, RevocationChecker, RevocationStatus};
use postern_testkit::crl::{RevokedSpec, crl_pem};
use postern_testkit::file_server::{HttpServer, dead_url};
use postern_testkit::pki::Ca;
use postern_tests::crl_service::{config, service, settings, wait_for};

const IN: CrlScope = CrlScope::InboundSmtpTls;

fn source(format: &str, primary: &str, secondary: Option<&str>) -> CrlSource {
    let mut v = serde_json::json!({
        "format": format, "primaryUrl": primary, "interval": "1s",
        "appliesTo": ["InboundSmtpTls"]
    });
    if let Some(s) = secondary {
        v["secondaryUrl"] = s.into();
    }
    serde_json::from_value(v).expect("source")
}

fn revoked(store: &CrlStore, ca: &Ca, serial: &[u8]) -> RevocationStatus {
    store.check(IN, &ca.subject_der(), Some(&ca.key_id()), serial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_down_uses_secondary_then_both_down_keeps_last_good() {
    let ca = Ca::root("Failover CA");
    let secondary = HttpServer::start();
    secondary.put("/ca.crl", ca.current_crl(1, &[&[0x0a, 0x01]]));
    let primary_url = dead_url("/ca.crl");
    let (store, svc) = service(None);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![(
            "corp",
            source("Asn1", &primary_url, Some(&secondary.url("/ca.crl"))),
        )],
    ))
    .await;
    let st = wait_for(&store, "corp", "a CRL from the secondary", |s| {
        s.entries == 1
    })
    .await;
    assert_eq!(st.served_by, Some(ServedBy::Secondary));
    assert_eq!(
        st.served_url.as_deref(),
        Some(secondary.url("/ca.crl").as_str())
    );
    assert_eq!(
        st.issuer.as_deref(),
        Some("CN=Failover CA, O=Postern Test PKI")
    );
    assert!(st.this_update.is_some() && st.next_update.is_some() && st.last_fetch_time.is_some());
    let err = st.last_error.expect("the primary's failure is recorded");
    assert_eq!(err.server, ServedBy::Primary);
    assert_eq!(err.reason, "network");
    assert!(err.message.contains("onnection refused"), "{}", err.message);
    assert!(
        matches!(revoked(&store, &ca, &[0x0a, 0x01]), RevocationStatus::Revoked { ref source, .. } if source == "corp")
    );

    // Both down: the last good copy stays in force, failures are counted.
    drop(secondary);
    let st = wait_for(&store, "corp", "two failed attempts", |s| {
        s.consecutive_failures >= 2
    })
    .await;
    assert_eq!(st.entries, 1);
    assert_eq!(
        st.last_error.as_ref().map(|e| e.server),
        Some(ServedBy::Secondary)
    );
    assert!(matches!(
        revoked(&store, &ca, &[0x0a, 0x01]),
        RevocationStatus::Revoked { .. }
    ));
    assert_eq!(revoked(&store, &ca, &[0x0a, 0x02]), RevocationStatus::Good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_and_older_crls_are_refused_and_the_last_good_stays() {
    let ca = Ca::root("Refusal CA");
    let server = HttpServer::start();
    server.put("/ca.crl", ca.current_crl(5, &[&[0x05]]));
    let (store, svc) = service(None);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![("corp", source("Asn1", &server.url("/ca.crl"), None))],
    ))
    .await;
    wait_for(&store, "corp", "CRL 5", |s| {
        s.crl_number.as_deref() == Some("5")
    })
    .await;

    // Same name, another key: refused.
    server.put("/ca.crl", ca.rekeyed().current_crl(6, &[]));
    let st = wait_for(&store, "corp", "a bad_signature refusal", |s| {
        s.last_error
            .as_ref()
            .is_some_and(|e| e.reason == "bad_signature")
    })
    .await;
    assert_eq!(st.crl_number.as_deref(), Some("5"));
    assert!(matches!(
        revoked(&store, &ca, &[0x05]),
        RevocationStatus::Revoked { .. }
    ));

    // An older CRL (replayed): refused.
    server.put("/ca.crl", ca.current_crl(4, &[]));
    let st = wait_for(&store, "corp", "an older_than_in_force refusal", |s| {
        s.last_error
            .as_ref()
            .is_some_and(|e| e.reason == "older_than_in_force")
    })
    .await;
    assert!(st.last_error.unwrap().message.contains("lower than 5"));
    assert!(matches!(
        revoked(&store, &ca, &[0x05]),
        RevocationStatus::Revoked { .. }
    ));

    // A CRL from a CA no listener trusts: refused.
    let stranger = Ca::root("Stranger CA");
    server.put("/ca.crl", stranger.current_crl(9, &[]));
    wait_for(&store, "corp", "an untrusted_issuer refusal", |s| {
        s.last_error
            .as_ref()
            .is_some_and(|e| e.reason == "untrusted_issuer")
    })
    .await;

    // A newer one from the right key: in force, while the service runs.
    server.put("/ca.crl", ca.current_crl(7, &[&[0x07]]));
    wait_for(&store, "corp", "CRL 7", |s| {
        s.crl_number.as_deref() == Some("7")
    })
    .await;
    assert_eq!(revoked(&store, &ca, &[0x05]), RevocationStatus::Good);
    assert!(matches!(
        revoked(&store, &ca, &[0x07]),
        RevocationStatus::Revoked { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pem_with_several_crls_and_intermediate_issuers() {
    let root = Ca::root("PEM Root");
    let inter = Ca::intermediate("PEM Issuing CA", &root, &[0x42, 0x01]);
    let server = HttpServer::start();
    let bundle = format!(
        "{}{}",
        crl_pem(&root.current_crl(1, &[&inter.serial])),
        crl_pem(&inter.current_crl(1, &[&[0x19, 0x01]]))
    );
    server.put("/bundle.pem", bundle.into_bytes());
    let (store, svc) = service(None);
    svc.apply(&config(
        &[root.cert_pem(), inter.cert_pem()],
        vec![("bundle", source("Pem", &server.url("/bundle.pem"), None))],
    ))
    .await;
    let st = wait_for(&store, "bundle", "two CRLs", |s| s.crls.len() == 2).await;
    assert_eq!(st.entries, 2);
    assert!(st.issuer.unwrap().contains("PEM Issuing CA"));
    // The intermediate itself is revoked by the root's CRL; the leaf by the intermediate's.
    assert!(matches!(
        revoked(&store, &root, &inter.serial),
        RevocationStatus::Revoked { .. }
    ));
    assert!(matches!(
        revoked(&store, &inter, &[0x19, 0x01]),
        RevocationStatus::Revoked { .. }
    ));
    assert_eq!(
        revoked(&store, &inter, &[0x19, 0x02]),
        RevocationStatus::Good
    );

    // The wrong format is refused with a hint.
    let der_server = HttpServer::start();
    der_server.put("/x.crl", root.current_crl(2, &[]));
    svc.apply(&config(
        &[root.cert_pem(), inter.cert_pem()],
        vec![
            ("bundle", source("Pem", &server.url("/bundle.pem"), None)),
            (
                "mislabelled",
                source("Pem", &der_server.url("/x.crl"), None),
            ),
        ],
    ))
    .await;
    let st = wait_for(&store, "mislabelled", "a parse refusal", |s| {
        s.last_error.is_some()
    })
    .await;
    let e = st.last_error.unwrap();
    assert_eq!(e.reason, "parse_error");
    assert!(e.message.contains("format: Asn1"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_get_size_cap_and_timeouts() {
    let ca = Ca::root("Conditional CA");
    let server = HttpServer::start();
    server.put("/ca.crl", ca.current_crl(1, &[&[1]]));
    let (store, svc) = service(None);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![("corp", source("Asn1", &server.url("/ca.crl"), None))],
    ))
    .await;
    wait_for(&store, "corp", "the CRL", |s| s.entries == 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.requests().iter().any(|r| r.status == 304) {
        assert!(
            Instant::now() < deadline,
            "no conditional GET: {:#?}",
            server.requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reqs = server.requests();
    let conditional = reqs.iter().find(|r| r.status == 304).unwrap();
    assert!(conditional.if_none_match.is_some() && conditional.if_modified_since.is_some());
    svc.shutdown();

    // Size cap.
    let store = Arc::new(CrlStore::new());
    let mut s = settings(None);
    s.fetch.max_bytes = 100;
    let svc = CrlService::new(Arc::clone(&store), s).unwrap();
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![("corp", source("Asn1", &server.url("/ca.crl"), None))],
    ))
    .await;
    let st = wait_for(&store, "corp", "too_large", |s| s.last_error.is_some()).await;
    assert_eq!(st.last_error.unwrap().reason, "too_large");
    assert_eq!(st.entries, 0);
    svc.shutdown();

    // Timeout, and an HTTP error status.
    let slow = HttpServer::start();
    slow.put("/ca.crl", ca.current_crl(1, &[]));
    slow.set_delay(Duration::from_secs(6));
    let failing = HttpServer::start();
    failing.fail_with(Some(503));
    let (store, svc) = service(None);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![
            ("slow", source("Asn1", &slow.url("/ca.crl"), None)),
            ("failing", source("Asn1", &failing.url("/ca.crl"), None)),
        ],
    ))
    .await;
    let st = wait_for(&store, "slow", "a timeout", |s| s.last_error.is_some()).await;
    assert_eq!(st.last_error.unwrap().reason, "timeout");
    let st = wait_for(&store, "failing", "an HTTP error", |s| {
        s.last_error.is_some()
    })
    .await;
    let e = st.last_error.unwrap();
    assert_eq!(e.reason, "http_status");
    assert!(e.message.contains("503"));
    svc.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sources_with_extra_trust_anchors() {
    let ca = Ca::root("HTTPS CRL CA");
    let web_ca = Ca::root("Web CA");
    let server = web_ca.server("127.0.0.1");
    let (cert_pem, key_pem) = (server.cert_pem, server.key_pem);
    let server = HttpServer::start_tls(&cert_pem, &key_pem);
    server.put("/ca.crl", ca.current_crl(1, &[&[3]]));

    // Without the web CA the TLS handshake is refused.
    let (store, svc) = service(None);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![("tls", source("Asn1", &server.url("/ca.crl"), None))],
    ))
    .await;
    let st = wait_for(&store, "tls", "a TLS failure", |s| s.last_error.is_some()).await;
    let e = st.last_error.unwrap();
    assert_eq!(e.reason, "network");
    assert!(
        e.message.to_lowercase().contains("certificate"),
        "{}",
        e.message
    );
    svc.shutdown();

    let store = Arc::new(CrlStore::new());
    let mut s = settings(None);
    s.fetch.extra_roots_pem = Some(web_ca.cert_pem());
    let svc = CrlService::new(Arc::clone(&store), s).unwrap();
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![("tls", source("Asn1", &server.url("/ca.crl"), None))],
    ))
    .await;
    wait_for(&store, "tls", "the CRL over HTTPS", |s| s.entries == 1).await;
    assert!(matches!(
        revoked(&store, &ca, &[3]),
        RevocationStatus::Revoked { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_crl_fails_closed_and_is_visible_in_status_and_metrics() {
    let ca = Ca::root("Stale CA");
    let server = HttpServer::start();
    server.put(
        "/ca.crl",
        ca.crl(1, &[RevokedSpec::key_compromise(&[0x01])], -3 * 3600, -3600)
            .der()
            .to_vec(),
    );
    let (store, svc) = service(None);
    let mut registry = prometheus_client::registry::Registry::default();
    postern_gateway::crl::metrics::register(&mut registry, &store);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![("corp", source("Asn1", &server.url("/ca.crl"), None))],
    ))
    .await;
    let st = wait_for(&store, "corp", "the stale CRL in force", |s| {
        s.crls.len() == 1
    })
    .await;
    assert!(st.stale);
    assert!(st.seconds_until_stale.unwrap() < -3000);
    assert!(matches!(
        revoked(&store, &ca, &[0x02]),
        RevocationStatus::Stale { ref source, .. } if source == "corp"
    ));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let gauge = text
        .lines()
        .find(|l| l.starts_with("postern_crl_seconds_until_stale{source=\"corp\"}"))
        .unwrap_or_else(|| panic!("no gauge in:\n{text}"));
    let v: i64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v < -3000, "{gauge}");
    assert!(
        text.contains("postern_crl_stale{source=\"corp\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "postern_crl_certificate_rejections_total{source=\"corp\",reason=\"stale\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("postern_crl_checks_total{scope=\"InboundSmtpTls\",result=\"stale\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "crl_fetches_total{source=\"corp\",server=\"primary\",outcome=\"updated\"} 1"
        ),
        "{text}"
    );

    // The CA publishes a current CRL: checks pass again.
    server.put("/ca.crl", ca.current_crl(2, &[&[0x01]]));
    wait_for(&store, "corp", "a current CRL", |s| {
        !s.stale && s.crl_number.as_deref() == Some("2")
    })
    .await;
    assert_eq!(revoked(&store, &ca, &[0x02]), RevocationStatus::Good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_restores_the_last_good_crl_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("Cache CA");
    let server = HttpServer::start();
    server.put("/ca.crl", ca.current_crl(3, &[&[0x33]]));
    let url = server.url("/ca.crl");
    let cfg = config(&[ca.cert_pem()], vec![("corp", source("Asn1", &url, None))]);
    {
        let (store, svc) = service(Some(dir.path()));
        svc.apply(&cfg).await;
        wait_for(&store, "corp", "the CRL", |s| s.entries == 1).await;
        // Written after being put in force.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dir.path().join("corp.json").exists() {
            assert!(Instant::now() < deadline, "cache not written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        svc.shutdown();
    }
    drop(server);

    // A restarted gateway: the network is gone, the CRL is in force as soon as apply returns.
    let (store, svc) = service(Some(dir.path()));
    svc.apply(&cfg).await;
    assert!(matches!(
        revoked(&store, &ca, &[0x33]),
        RevocationStatus::Revoked { .. }
    ));
    let st = store.source_status("corp").unwrap();
    assert!(st.restored_from_disk);
    assert_eq!(st.crl_number.as_deref(), Some("3"));
    assert_eq!(st.served_by, Some(ServedBy::Primary));

    // A cache from a CA that is no longer trusted is not restored.
    let other = Ca::root("Other CA");
    let (store, svc) = service(Some(dir.path()));
    svc.apply(&config(
        &[other.cert_pem()],
        vec![("corp", source("Asn1", &url, None))],
    ))
    .await;
    // Not restored, and the source has no CRL in force yet: its certificates (it may be
    // for any CA) are unverifiable rather than unchecked.
    assert!(
        matches!(
            revoked(&store, &ca, &[0x33]),
            RevocationStatus::Missing {
                why: MissingCrl::NotLoaded,
                ..
            }
        ),
        "{:?}",
        revoked(&store, &ca, &[0x33])
    );
    assert!(!store.source_status("corp").unwrap().restored_from_disk);
    svc.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_removed_sources_are_not_enforced() {
    let ca = Ca::root("Toggle CA");
    let server = HttpServer::start();
    server.put("/ca.crl", ca.current_crl(1, &[&[0x0d]]));
    let (store, svc) = service(None);
    let on = config(
        &[ca.cert_pem()],
        vec![("corp", source("Asn1", &server.url("/ca.crl"), None))],
    );
    svc.apply(&on).await;
    wait_for(&store, "corp", "the CRL", |s| s.entries == 1).await;
    assert!(matches!(
        revoked(&store, &ca, &[0x0d]),
        RevocationStatus::Revoked { .. }
    ));

    let mut off = on.clone();
    off.crl_sources.get_mut("corp").unwrap().enabled = false;
    svc.apply(&off).await;
    assert_eq!(revoked(&store, &ca, &[0x0d]), RevocationStatus::NoCrl);
    let before = server.requests().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        server.requests().len(),
        before,
        "a disabled source is not fetched"
    );

    // Re-enabled: the CRL kept in memory is in force again at once, and fetching resumes.
    svc.apply(&on).await;
    assert!(matches!(
        revoked(&store, &ca, &[0x0d]),
        RevocationStatus::Revoked { .. }
    ));

    let mut gone = on.clone();
    gone.crl_sources.clear();
    svc.apply(&gone).await;
    assert_eq!(revoked(&store, &ca, &[0x0d]), RevocationStatus::NoCrl);
    assert!(store.status().is_empty());
}
