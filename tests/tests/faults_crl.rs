//! A CRL server turning hostile after serving a good CRL: random bytes, a truncated CRL,
//! an HTML error page with status 200, PEM armour around garbage, a certificate instead
//! of a CRL. Each is refused with a reason in status, and the last good CRL stays in
//! force. (Wrong key, older CRLs, size cap, timeouts and outages: `crl_fetch`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::{CrlScope, CrlSource, GatewayConfig, Listener};
use postern_gateway::crl::{CrlService, CrlStore, FetchSettings, ServiceSettings, SourceStatus};
use postern_gateway::tls::{RevocationChecker, RevocationStatus};
use postern_testkit::file_server::HttpServer;
use postern_testkit::pki::Ca;

fn config(ca: &Ca, url: &str, format: &str) -> GatewayConfig {
    let listener: Listener = serde_json::from_value(serde_json::json!({
        "address": "127.0.0.1", "port": 2525, "hostname": "mx.test",
        "tls": {"certificateChainPem": "unused", "privateKeyPem": "unused", "clientCaPem": ca.cert_pem()},
        "defaultPolicy": "p", "nextHop": {"host": "127.0.0.1"}
    }))
    .unwrap();
    let source: CrlSource = serde_json::from_value(serde_json::json!({
        "format": format, "primaryUrl": url, "interval": "1s", "appliesTo": ["InboundSmtpTls"]
    }))
    .unwrap();
    let mut c = GatewayConfig::default();
    c.listeners.insert("submission".into(), listener);
    c.crl_sources.insert("corp".into(), source);
    c
}

async fn wait_for(store: &CrlStore, what: &str, f: impl Fn(&SourceStatus) -> bool) -> SourceStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = store.source_status("corp")
            && f(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            store.source_status("corp")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_crls_are_refused_and_the_last_good_stays() {
    let ca = Ca::root("Garbage CA");
    let good = ca.current_crl(5, &[&[0x05]]);
    let mut noise = vec![0u8; 4096];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("random bytes", "Asn1", noise),
        ("truncated CRL", "Asn1", good[..good.len() / 2].to_vec()),
        (
            "HTML error page",
            "Asn1",
            b"<html><body>502 Bad Gateway</body></html>".to_vec(),
        ),
        (
            "PEM armour around garbage",
            "Pem",
            b"-----BEGIN X509 CRL-----\nnot base64 at all!!\n-----END X509 CRL-----\n".to_vec(),
        ),
        ("a certificate instead", "Pem", ca.cert_pem().into_bytes()),
        ("empty", "Asn1", Vec::new()),
    ];
    for (what, format, bytes) in cases {
        let server = HttpServer::start();
        let served = if format == "Pem" {
            let b64 = postern_testkit::crl::crl_pem(&good);
            b64.into_bytes()
        } else {
            good.clone()
        };
        server.put("/ca.crl", served);
        let store = Arc::new(CrlStore::new());
        let svc = CrlService::new(
            Arc::clone(&store),
            ServiceSettings {
                fetch: FetchSettings {
                    connect_timeout: Duration::from_secs(2),
                    timeout: Duration::from_secs(3),
                    retry_initial: Duration::from_millis(200),
                    retry_max: Duration::from_millis(500),
                    ..FetchSettings::default()
                },
                cache_dir: None,
            },
        )
        .unwrap();
        svc.apply(&config(&ca, &server.url("/ca.crl"), format))
            .await;
        wait_for(&store, "the good CRL", |s| {
            s.crl_number.as_deref() == Some("5")
        })
        .await;

        server.put("/ca.crl", bytes);
        let st = wait_for(&store, what, |s| s.last_error.is_some()).await;
        let e = st.last_error.as_ref().unwrap();
        assert!(!e.message.is_empty(), "{what}: {e:?}");
        assert_eq!(st.crl_number.as_deref(), Some("5"), "{what}");
        let status = store.check(
            CrlScope::InboundSmtpTls,
            &ca.subject_der(),
            Some(&ca.key_id()),
            &[0x05],
        );
        assert!(
            matches!(status, RevocationStatus::Revoked { .. }),
            "{what}: the last good CRL must stay in force, got {status:?}"
        );
        drop(svc);
    }
}
