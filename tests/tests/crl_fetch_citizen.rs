//! Fetching like a good citizen, against a real HTTP server: `format: Zip` (an archive
//! made by the `zip` tool holding DER and PEM CRLs of several CAs, read from a temporary
//! file or the disk cache, refreshed when one member changes), a zip bomb refused,
//! the per-source `maxSize` refused with a clear status and metric, and the same bytes
//! served again (a server that ignores conditional requests) not parsed again.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::{CrlScope, CrlSource};
use postern_gateway::crl::CrlStore;
use postern_gateway::tls::{RevocationChecker, RevocationStatus};
use postern_testkit::crl::crl_pem;
use postern_testkit::file_server::HttpServer;
use postern_testkit::pki::Ca;
use postern_tests::crl_service::{config, service, wait_for};

const IN: CrlScope = CrlScope::InboundSmtpTls;

fn source(format: &str, url: &str, max_size: Option<u64>) -> CrlSource {
    let mut v = serde_json::json!({
        "format": format, "primaryUrl": url, "interval": "1s", "appliesTo": ["InboundSmtpTls"]
    });
    if let Some(m) = max_size {
        v["maxSize"] = m.into();
    }
    serde_json::from_value(v).expect("source")
}

/// A ZIP archive of `files` (name, content) made by the `zip` tool.
fn zip_tool(dir: &Path, files: &[(&str, &[u8])]) -> Vec<u8> {
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    for (name, bytes) in files {
        std::fs::write(content.join(name), bytes).unwrap();
    }
    let out = dir.join("bundle.zip");
    let _ = std::fs::remove_file(&out);
    let st = Command::new("zip")
        .arg("-q")
        .arg("-r")
        .arg(&out)
        .arg(".")
        .current_dir(&content)
        .status()
        .expect("zip");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

fn metrics(store: &Arc<CrlStore>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    postern_gateway::crl::metrics::register(&mut registry, store);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_archives_of_der_and_pem_crls_and_zip_bombs() {
    // Without a disk cache the archive is read from a temporary file; with one, from the
    // cache's spool, which becomes the cached file.
    zip_archive_round(false).await;
    zip_archive_round(true).await;
}

async fn zip_archive_round(disk_cache: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let root = Ca::root("Zip Root");
    let a = Ca::intermediate("Zip Issuing CA 1", &root, &[0x51]);
    let b = Ca::intermediate("Zip Issuing CA 2", &root, &[0x52]);
    let archive = zip_tool(
        dir.path(),
        &[
            ("root.crl", &root.current_crl(1, &[])),
            ("issuing-1.crl", &a.current_crl(7, &[&[0x0a, 0x01]])),
            (
                "issuing-2.pem",
                crl_pem(&b.current_crl(9, &[&[0x0b, 0x01], &[0x0b, 0x02]])).as_bytes(),
            ),
        ],
    );
    let server = HttpServer::start();
    server.put("/dod.zip", archive);
    let cas = [root.cert_pem(), a.cert_pem(), b.cert_pem()];
    let (store, svc) = service(disk_cache.then_some(cache.as_path()));
    svc.apply(&config(
        &cas,
        vec![("dod", source("Zip", &server.url("/dod.zip"), None))],
    ))
    .await;
    let st = wait_for(&store, "dod", "three CRLs from the archive", |s| {
        s.crls.len() == 3
    })
    .await;
    assert_eq!(st.entries, 3);
    let check =
        |ca: &Ca, serial: &[u8]| store.check(IN, &ca.subject_der(), Some(&ca.key_id()), serial);
    assert!(matches!(
        check(&a, &[0x0a, 0x01]),
        RevocationStatus::Revoked { .. }
    ));
    assert!(matches!(
        check(&b, &[0x0b, 0x02]),
        RevocationStatus::Revoked { .. }
    ));
    assert_eq!(check(&b, &[0x0b, 0x03]), RevocationStatus::Good);

    // The CA publishes a new CRL: the archive changes in one member only, the others are
    // the same bytes. The new CRL goes in force; the others stay as they were.
    let refreshed = zip_tool(
        dir.path(),
        &[
            ("root.crl", &root.current_crl(1, &[])),
            (
                "issuing-1.crl",
                &a.current_crl(8, &[&[0x0a, 0x01], &[0x0a, 0x02]]),
            ),
            (
                "issuing-2.pem",
                crl_pem(&b.current_crl(9, &[&[0x0b, 0x01], &[0x0b, 0x02]])).as_bytes(),
            ),
        ],
    );
    server.put("/dod.zip", refreshed.clone());
    wait_for(&store, "dod", "the refreshed archive", |s| s.entries == 4).await;
    assert!(matches!(
        check(&a, &[0x0a, 0x02]),
        RevocationStatus::Revoked { .. }
    ));
    assert!(matches!(
        check(&b, &[0x0b, 0x02]),
        RevocationStatus::Revoked { .. }
    ));
    if disk_cache {
        // The cache holds the archive in force, whole (written just after it went in
        // force), and no spool is left behind.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(cache.join("dod.crl")).ok().as_ref() != Some(&refreshed) {
            assert!(
                Instant::now() < deadline,
                "the cache never held the new archive"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let files: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(files.iter().all(|f| !f.ends_with(".tmp")), "{files:?}");
    }

    // A member that inflates like a bomb refuses the archive; the CRLs in force stay.
    let bomb = zip_tool(dir.path(), &[("bomb.crl", &vec![0u8; 16 << 20])]);
    server.put("/dod.zip", bomb);
    let st = wait_for(&store, "dod", "the zip bomb refused", |s| {
        s.last_error.is_some()
    })
    .await;
    let e = st.last_error.unwrap();
    assert_eq!(e.reason, "parse_error");
    assert!(e.message.contains("zip bomb"), "{}", e.message);
    assert_eq!(st.crls.len(), 3);
    assert!(matches!(
        check(&a, &[0x0a, 0x01]),
        RevocationStatus::Revoked { .. }
    ));
    svc.shutdown();

    if disk_cache {
        // A restart reads the cached archive back (from its file, member by member) and
        // enforces it at once; the server still has the bomb, which is refused again.
        let (store, svc) = service(Some(cache.as_path()));
        svc.apply(&config(
            &cas,
            vec![("dod", source("Zip", &server.url("/dod.zip"), None))],
        ))
        .await;
        let st = wait_for(&store, "dod", "the archive restored from the cache", |s| {
            s.entries == 4
        })
        .await;
        assert!(st.restored_from_disk);
        assert!(matches!(
            store.check(IN, &a.subject_der(), Some(&a.key_id()), &[0x0a, 0x02]),
            RevocationStatus::Revoked { .. }
        ));
        svc.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_per_source_and_the_same_bytes_are_not_parsed_again() {
    let ca = Ca::root("Citizen CA");
    let crl = ca.current_crl(3, &[&[0x01], &[0x02]]);
    let server = HttpServer::start();
    server.put("/ca.crl", crl.clone());
    let (store, svc) = service(None);
    svc.apply(&config(
        &[ca.cert_pem()],
        vec![
            ("small", source("Asn1", &server.url("/ca.crl"), Some(64))),
            ("fits", source("Asn1", &server.url("/ca.crl"), None)),
        ],
    ))
    .await;
    let st = wait_for(&store, "small", "too_large", |s| s.last_error.is_some()).await;
    let e = st.last_error.unwrap();
    assert_eq!(e.reason, "too_large");
    assert!(
        e.message
            .contains(&format!("response of {} bytes", crl.len()))
            && e.message.contains("limit of 64 bytes (maxSize"),
        "{}",
        e.message
    );
    assert_eq!(st.entries, 0);
    let first = wait_for(&store, "fits", "the CRL", |s| s.entries == 2).await;

    // The same bytes under a new ETag (a server that cannot answer 304): fetched, but
    // recognised by their hash and not parsed again.
    server.put("/ca.crl", crl.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics(&store);
        if text.contains("outcome=\"identical\"") && text.contains("source=\"fits\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no identical fetch:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = store.source_status("fits").unwrap();
    assert_eq!(now.last_change_time, first.last_change_time);
    assert!(now.last_error.is_none());
    let text = metrics(&store);
    assert!(
        text.lines()
            .any(|l| l.starts_with("postern_crl_fetches_total{")
                && l.contains("source=\"small\"")
                && l.contains("outcome=\"too_large\"")),
        "{text}"
    );
    svc.shutdown();
}
