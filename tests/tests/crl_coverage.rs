//! The real `postern-gateway` with a `format: Zip` CRL source (an archive made by the
//! `zip` tool) covering two of the three CAs a listener trusts, and a source whose file is
//! over its `maxSize`: the per-CA coverage view (`GET /revocation`, the gauge
//! `postern_revocation_ca_covered{listener,ca}`) names the uncovered CA, and the oversize
//! source says `too_large` in its status and its decision line. `postern-gateway crl
//! coverage` prints the same view with a verdict and exits 1 for it.

use std::process::Command;
use std::time::{Duration, Instant};

use postern_config::GatewayConfig;
use postern_testkit::file_server::HttpServer;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::crl::start_gateway;

#[test]
fn zip_source_coverage_per_ca_and_max_size_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::root("Coverage Server CA");
    let server = server_ca.server("127.0.0.1");
    let root = Ca::root("Coverage Root CA");
    let covered = Ca::intermediate("Coverage Issuing CA 1", &root, &[0x61]);
    let uncovered = Ca::intermediate("Coverage Issuing CA 2", &root, &[0x62]);

    let content = dir.path().join("crls");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("root.crl"), root.current_crl(1, &[])).unwrap();
    std::fs::write(
        content.join("issuing-1.crl"),
        covered.current_crl(4, &[&[0x0a, 0x01], &[0x0a, 0x02]]),
    )
    .unwrap();
    let zip = dir.path().join("all.zip");
    assert!(
        Command::new("zip")
            .args(["-q", "-r"])
            .arg(&zip)
            .arg(".")
            .current_dir(&content)
            .status()
            .unwrap()
            .success()
    );
    let http = HttpServer::start();
    http.put("/all.zip", std::fs::read(&zip).unwrap());
    http.put("/big.crl", uncovered.current_crl(1, &[&[0x0b, 0x01]]));

    let bundle = format!(
        "{}{}{}",
        root.cert_pem(),
        covered.cert_pem(),
        uncovered.cert_pem()
    );
    let config: GatewayConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "postern.dev/gateway/v1",
        "listeners": {"submission": {
            "address": "127.0.0.1", "port": free_port(), "hostname": "mx.coverage.test",
            "tls": {"certificateChainPem": server.cert_pem, "privateKeyPem": server.key_pem,
                    "clientCaPem": bundle},
            "defaultPolicy": "verify", "nextHop": {"host": "127.0.0.1", "port": free_port()}
        }},
        "policies": {"verify": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}},
        "crlSources": {
            "dod": {"format": "Zip", "primaryUrl": http.url("/all.zip"), "interval": "1h",
                    "appliesTo": ["InboundSmtpTls"]},
            "small": {"format": "Asn1", "primaryUrl": http.url("/big.crl"), "interval": "1h",
                      "appliesTo": ["InboundSmtpTls"], "failurePolicy": "Open", "maxSize": 100}
        }
    }))
    .unwrap();
    let gw = start_gateway(&config, &[], "info").unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let view = loop {
        let (code, body) = gw.http_get("/revocation").unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["covered"] == true)
            .count()
            == 2
        {
            break v;
        }
        assert!(Instant::now() < deadline, "coverage never complete: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let by_ca = |cn: &str| {
        view.as_array()
            .unwrap()
            .iter()
            .find(|c| c["ca"].as_str().unwrap().contains(cn))
            .unwrap_or_else(|| panic!("{cn} not in {view}"))
            .clone()
    };
    let one = by_ca("Coverage Issuing CA 1");
    assert_eq!(one["listener"], "submission");
    assert_eq!(one["mechanism"], "crl");
    assert_eq!(one["sources"], serde_json::json!(["dod"]));
    assert_eq!(one["entries"], 2);
    assert!(one["derBytes"].as_u64().unwrap() > 0);
    assert!(one["secondsUntilStale"].as_i64().unwrap() > 0);
    assert!(one["lastFetchTime"].is_string());
    let two = by_ca("Coverage Issuing CA 2");
    assert_eq!(two["covered"], false);
    assert_eq!(two["mechanism"], "none");
    assert_eq!(by_ca("Coverage Root CA")["covered"], true);

    let (_, metrics) = gw.http_get("/metrics").unwrap();
    let gauge = |cn: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("postern_revocation_ca_covered{") && l.contains(cn))
            .unwrap_or_else(|| panic!("no gauge for {cn}:\n{metrics}"))
            .to_owned()
    };
    assert!(gauge("Coverage Issuing CA 1").contains("listener=\"submission\""));
    assert!(
        gauge("Coverage Issuing CA 1").ends_with(" 1"),
        "{}",
        gauge("Coverage Issuing CA 1")
    );
    assert!(
        gauge("Coverage Issuing CA 2").ends_with(" 0"),
        "{}",
        gauge("Coverage Issuing CA 2")
    );

    // The same view in one command, with a verdict an operator (or a script) can act on.
    let out = Command::new(workspace_bin("postern-gateway").unwrap())
        .args([
            "crl",
            "coverage",
            "--admin",
            &format!("http://{}", gw.admin),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("LISTENER"), "{text}");
    let line = |cn: &str| {
        text.lines()
            .find(|l| l.contains(cn))
            .unwrap_or_else(|| panic!("{cn} not in {text}"))
    };
    assert!(line("Coverage Issuing CA 1").contains(" crl "), "{text}");
    assert!(line("Coverage Issuing CA 1").contains(" dod "), "{text}");
    assert!(line("Coverage Issuing CA 2").contains(" none "), "{text}");
    let verdict = text.lines().last().unwrap();
    assert!(
        verdict.starts_with("2 of 3 trusted CAs covered; NOT covered (no revocation check): ")
            && verdict.contains("Coverage Issuing CA 2"),
        "{text}"
    );
    let json = Command::new(workspace_bin("postern-gateway").unwrap())
        .args([
            "crl",
            "coverage",
            "--json",
            "--admin",
            &format!("http://{}", gw.admin),
        ])
        .output()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().map(Vec::len), Some(3), "{parsed}");
    // A gateway that cannot be asked: exit 2, and why.
    let down = Command::new(workspace_bin("postern-gateway").unwrap())
        .args([
            "crl",
            "coverage",
            "--admin",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&down.stderr).contains("/revocation"));

    // The source over its maxSize: status and decision line say so.
    let (_, small) = gw.http_get("/crl/small").unwrap();
    let small: serde_json::Value = serde_json::from_str(&small).unwrap();
    assert_eq!(small["lastError"]["reason"], "too_large", "{small}");
    assert!(
        small["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 100 bytes (maxSize"),
        "{small}"
    );
    assert!(
        gw.log_lines().iter().any(|l| l["source"] == "small"
            && l["reason"] == "too_large"
            && l["outcome"] == "fetch_failed"),
        "no decision line:\n{}",
        gw.log_tail(40)
    );
}
