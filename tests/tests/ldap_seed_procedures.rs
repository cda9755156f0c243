//! The three procedures of the seed (DESIGN.md section 4), end to end:
//! `postern render -f examples/<scenario>` → `postern-gateway --config` → swaks and
//! Python smtplib with the example certificates → a real slapd holding
//! examples/ldap/users.ldif → smtp-sink. Only the loopback ports of the rendered
//! configuration are changed (slapd, listeners and next hop run on free ports here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postern_config::GatewayConfig;
use postern_testkit::gateway::Gateway;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_testkit::workspace::workspace_bin;
use postern_tests::clients::{Run, auth_plain_args, python, swaks, swaks_tls};
use postern_tests::gateway::start_gateway;
use postern_tests::slapd::{Slapd, SlapdOptions};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn pki(name: &str) -> String {
    examples().join("pki").join(name).display().to_string()
}

struct Procedure {
    slapd: Slapd,
    sink: Sink,
    gw: Gateway,
    /// Listener name → its port here.
    ports: BTreeMap<String, u16>,
    _dir: tempfile::TempDir,
}

/// Render `examples/<scenario>` with the `postern` binary and run it against a slapd
/// with the example directory.
fn procedure(scenario: &str) -> Procedure {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gateway.yaml");
    let status = Command::new(workspace_bin("postern").unwrap())
        .arg("render")
        .arg("-f")
        .arg(examples().join(scenario))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "postern render failed: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    let mut config = GatewayConfig::load(&out).unwrap();
    let ldif = std::fs::read_to_string(examples().join("ldap/users.ldif")).unwrap();
    let schema = std::fs::read_to_string(examples().join("ldap/cac.schema")).unwrap();
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(ldif),
        schema: Some(schema),
        ..Default::default()
    })
    .unwrap();
    let sink = Sink::start(&[]).unwrap();
    for p in config.ldap_profiles.values_mut() {
        p.servers = vec![slapd.url()];
    }
    let mut ports = BTreeMap::new();
    for (name, l) in config.listeners.iter_mut() {
        l.port = free_port();
        l.next_hop.port = sink.port;
        ports.insert(name.clone(), l.port);
    }
    let gw = start_gateway(&config).unwrap();
    Procedure {
        slapd,
        sink,
        gw,
        ports,
        _dir: dir,
    }
}

impl Procedure {
    fn port(&self, listener: &str) -> u16 {
        self.ports[listener]
    }

    fn swaks(&self, listener: &str, args: &[&str]) -> Run {
        swaks_tls(self.port(listener), Path::new(&pki("ca.crt")), args).unwrap()
    }

    fn with_cert(&self, listener: &str, who: &str) -> Run {
        let (crt, key) = (pki(&format!("{who}.crt")), pki(&format!("{who}.key")));
        self.swaks(listener, &["--tls-cert", &crt, "--tls-key", &key])
    }

    fn auth(&self, listener: &str, user: &str, password: &str) -> Run {
        self.swaks(listener, &auth_plain_args(user, password))
    }

    fn relayed_for(&self, n: usize) -> Vec<String> {
        self.sink
            .wait_for(n, Duration::from_secs(5))
            .into_iter()
            .map(|m| m.message)
            .collect()
    }
}

fn ok(r: &Run) {
    assert!(r.has("250 2.0.0 Ok"), "{}", r.output);
}

fn refused(r: &Run, code: &str) {
    assert!(r.has(code), "expected {code}: {}", r.output);
    assert!(!r.has("250 2.0.0 Ok"), "{}", r.output);
}

fn has_auth(r: &Run) -> bool {
    r.output
        .lines()
        .any(|l| l.contains("250-AUTH") || l.contains("250 AUTH"))
}

#[test]
fn procedure_a_certificate_only() {
    let p = procedure("certificate-only");
    // Alice's CAC: verified, mapped by CN and serial to uid alice, relayed.
    let r = p.with_cert("submission", "alice");
    ok(&r);
    assert!(!has_auth(&r), "AUTH must never be offered: {}", r.output);
    let m = p.relayed_for(1);
    assert!(m[0].contains("alice"), "{}", m[0]);
    // Mallory's certificate is valid but nobody's; Grace has no CAC entry: 530 at MAIL.
    refused(&p.with_cert("submission", "mallory"), "530 5.7.0");
    refused(&p.with_cert("submission", "grace"), "530 5.7.0");
    // No certificate at all: 530 too.
    refused(&p.swaks("submission", &[]), "530 5.7.0");
    // SMTP AUTH is not available here, even with a right password.
    let r = p.auth("submission", "bob", "bob-pw");
    assert!(!r.replied("235"), "{}", r.output);
    assert_eq!(p.sink.messages().len(), 1);
    let d = p.gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "authenticated"
            && v["user"] == "alice"),
        "{d:?}"
    );
}

#[test]
fn procedure_b_ldap_smtp_auth_reject_and_monitor() {
    let mut p = procedure("ldap-auth");
    // Reject listener: users the allowance query allows get through.
    for user in ["bob", "dave", "erin"] {
        let r = p.auth("submission", user, &format!("{user}-pw"));
        assert!(r.has("235 2.7.0"), "{user}: {}", r.output);
        ok(&r);
    }
    // CAC holders who are not exempt, and an emergency period that ended: the
    // profile's response.
    for user in ["alice", "carol", "frank"] {
        let r = p.auth("submission", user, &format!("{user}-pw"));
        refused(&r, "525 5.7.13 User account not allowed to use SMTP AUTH");
    }
    refused(&p.auth("submission", "bob", "not-bobs"), "535 5.7.8");
    refused(&p.auth("submission", "nobody", "x"), "535 5.7.8");
    // AUTH before STARTTLS under tls: Required.
    let r = swaks(
        p.port("submission"),
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "bob-pw",
            "--from",
            "a@example.org",
            "--to",
            "b@example.net",
        ],
    )
    .unwrap();
    assert!(!r.replied("235"), "{}", r.output);
    assert_eq!(p.relayed_for(3).len(), 3);

    // Monitor listener: alice is not allowed, but is let in and every command logged.
    let r = p.auth("submission-monitor", "alice", "alice-pw");
    assert!(r.has("235 2.7.0"), "{}", r.output);
    ok(&r);
    assert!(
        p.gw.wait_log_line(Duration::from_secs(5), |v| v["user"] == "alice"
            && v["command"]
                .as_str()
                .is_some_and(|c| c.to_ascii_uppercase().starts_with("DATA")))
            .is_some(),
        "{}",
        p.gw.log()
    );
    assert_eq!(p.relayed_for(4).len(), 4);

    // The directory goes away: 454 4.7.0, never an accept; it comes back: 235.
    p.slapd.stop();
    refused(&p.auth("submission", "bob", "bob-pw"), "454 4.7.0");
    p.slapd.start_again().unwrap();
    ok(&p.auth("submission", "bob", "bob-pw"));
}

#[test]
fn procedure_c_certificate_or_smtp_auth() {
    let p = procedure("either");
    // With her CAC, alice is authenticated by the certificate.
    ok(&p.with_cert("submission", "alice"));
    // Without a certificate, bob (no CAC issued) uses AUTH after STARTTLS.
    let r = p.auth("submission", "bob", "bob-pw");
    assert!(r.has("235 2.7.0"), "{}", r.output);
    ok(&r);
    // Alice without her card: the manual's custom response.
    refused(
        &p.auth("submission", "alice", "alice-pw"),
        "525 5.7.13 Dear user, please use your CAC to send email.",
    );
    // AUTH is only offered once TLS is active; plain sessions may not send mail.
    let plain = python(
        &r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", PORT, timeout=15)
code, msg = s.ehlo("py.client")
print("EHLO", code, "AUTH" in msg.decode().upper())
code, msg = s.docmd("AUTH", "PLAIN AGJvYgBib2ItcHc=")
print("AUTH", code, msg.decode())
code, msg = s.docmd("MAIL", "FROM:<a@example.org>")
print("MAIL", code, msg.decode())
s.quit()
"#
        .replace("PORT", &p.port("submission").to_string()),
    )
    .unwrap();
    assert!(plain.has("EHLO 250 False"), "{}", plain.output);
    assert!(plain.has("AUTH 538 5.7.11"), "{}", plain.output);
    assert!(plain.has("MAIL 530 5.7.0"), "{}", plain.output);
    // A valid certificate that maps to nobody, without AUTH: not authenticated.
    refused(&p.with_cert("submission", "mallory"), "530 5.7.0");
    assert_eq!(p.relayed_for(2).len(), 2);
}
