//! The gateway's status page (`GET /` on the admin port) in a real browser: headless
//! Chromium loads it from a running gateway (TLS Listener with a client CA, a CRL source,
//! an LDAP profile, refused AUTH attempts, a refused Listener), the screenshot is a real
//! picture, and the page's text names the Listeners, the CRL source and its CA, the LDAP
//! servers and the refusals, and no secret or user name.

use std::path::Path;
use std::process::Command;

use postern_testkit::process::system_tool;
use postern_tests::observability::ScrapedGateway;
use postern_tests::slapd::{FRANK, SERVICE_PASSWORD};

/// Runs headless Chromium with `args` on `url`; its stdout.
fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let bin = system_tool("chromium").expect("chromium installed (Debian package chromium)");
    let out = Command::new("timeout")
        .arg("120")
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_page_renders_in_chromium_with_listeners_crls_ldap_and_refusals() {
    let world = ScrapedGateway::start().unwrap();
    let url = format!("http://127.0.0.1:{}/", world.gateway.admin_port());
    let dir = tempfile::tempdir().unwrap();

    let shot = dir.path().join("status.png");
    chromium(
        &dir.path().join("profile-shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1400",
        ],
        &url,
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank page compresses to a few hundred bytes; tables and bars do not.
    assert!(png.len() > 20_000, "screenshot of {} bytes", png.len());

    let dom = chromium(&dir.path().join("profile-dom"), &["--dump-dom"], &url);
    for name in world.listeners.iter().chain(&world.crl_sources) {
        assert!(
            dom.contains(name.as_str()),
            "{name} not on the page:\n{dom}"
        );
    }
    for text in [
        "Postern Observability CA",
        "Configuration in force",
        "PortUnavailable",
        "ldap://127.0.0.1:",
        "invalid",
        "throttled_client",
        "href=\"/metrics\"",
        "href=\"/config\"",
        "href=\"/crl\"",
    ] {
        assert!(dom.contains(text), "{text:?} not on the page:\n{dom}");
    }
    // No secret, no user name: the bind password, the user's password and name, keys.
    for secret in [
        SERVICE_PASSWORD,
        FRANK.password,
        "PRIVATE KEY",
        "BEGIN CERTIFICATE",
    ] {
        assert!(!dom.contains(secret), "{secret:?} on the page");
    }
    assert!(
        !dom.contains(&format!(">{}<", FRANK.uid)),
        "a user name on the page"
    );
    // Readable without JavaScript: the served HTML has no script at all.
    let (code, html) = postern_testkit::http::http_get(
        format!("127.0.0.1:{}", world.gateway.admin_port())
            .parse()
            .unwrap(),
        "/",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(!html.contains("<script"), "{html}");
    // No external asset: nothing is loaded from anywhere (no src, no stylesheet link).
    assert!(!html.contains("src=") && !html.contains("<link"), "{html}");
}
