//! End to end: real SMTP clients (swaks, Python smtplib) → postern-gateway → smtp-sink,
//! with the gateway's LDAP backend against a real slapd: SMTP AUTH by bind with the
//! allowance query (Reject and Monitor), certificate mapping, fallback, and a directory
//! that goes away (454) and comes back.

use std::path::PathBuf;
use std::time::Duration;

use postern_config::{
    self as cfg, AllowanceAction, AuthBackend, AuthProfile, CertificateAuth, LdapProfile, Reply,
    SmtpAuth, TlsMode,
};
use postern_testkit::der::int_bytes;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::{Run, python, swaks, swaks_auth_plain};
use postern_tests::gateway::{listener, listener_tls, policy, single, start_gateway};
use postern_tests::slapd::{self, Slapd, SlapdOptions, User};

struct World {
    config: cfg::GatewayConfig,
    slapd: Slapd,
    sink: Sink,
    gw: Gateway,
    port: u16,
    ca: Ca,
    dir: tempfile::TempDir,
    ca_path: PathBuf,
}

fn ldap_backend() -> AuthBackend {
    AuthBackend::Ldap {
        ldap_profile: "corp".into(),
    }
}

fn smtp_auth(action: Option<AllowanceAction>, response: Option<Reply>) -> SmtpAuth {
    SmtpAuth {
        profile: "ldap-auth".into(),
        backend: ldap_backend(),
        allowance: action.map(|action| cfg::Allowance {
            action,
            response: response.unwrap_or_default(),
        }),
        throttle: Default::default(),
    }
}

fn world(
    profile: AuthProfile,
    policy: cfg::MailFlowPolicy,
    edit: impl FnOnce(&mut LdapProfile),
) -> World {
    world_with(SlapdOptions::default(), profile, policy, |_, p| edit(p))
}

fn world_with(
    options: SlapdOptions,
    profile: AuthProfile,
    policy: cfg::MailFlowPolicy,
    edit: impl FnOnce(&Slapd, &mut LdapProfile),
) -> World {
    let slapd = Slapd::start(options).unwrap();
    let sink = Sink::start(&[]).unwrap();
    let ca = Ca::long_lived("Postern Test CAC CA");
    let server = ca.localhost_server();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(listener_tls(&server, Some(ca.cert_pem())));
    let mut config = single(l, policy, Some(profile));
    let mut ldap = slapd::ldap_profile(&[slapd.url()]);
    ldap.timeouts.connect = cfg::Duration::from_secs(1);
    ldap.timeouts.operation = cfg::Duration::from_secs(1);
    edit(&slapd, &mut ldap);
    config.ldap_profiles.insert("corp".into(), ldap);
    let gw = start_gateway(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path(), "ca").unwrap();
    World {
        config,
        slapd,
        sink,
        gw,
        port,
        ca,
        dir,
        ca_path,
    }
}

impl World {
    /// swaks with STARTTLS and AUTH PLAIN as `user`.
    fn auth(&self, user: &str, password: &str) -> Run {
        swaks_auth_plain(
            self.port,
            &self.ca_path,
            user,
            password,
            &["--body", "via LDAP"],
        )
        .unwrap()
    }

    /// swaks with STARTTLS and the client certificate of `u` (CN = caccn, serial = cacserial).
    fn with_cert(&self, cn: &str, serial_hex: &str, extra: &[&str]) -> Run {
        let serial = u64::from_str_radix(serial_hex, 16).unwrap();
        let leaf = self.ca.client(cn, &int_bytes(serial));
        assert_eq!(leaf.serial_hex(), serial_hex);
        let (crt, key) = leaf.write(self.dir.path(), &format!("c{serial}")).unwrap();
        let mut args = vec![
            "--tls",
            "--tls-ca-path",
            self.ca_path.to_str().unwrap(),
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--from",
            "sender@example.org",
            "--to",
            "rcpt@example.net",
        ];
        args.extend_from_slice(extra);
        swaks(self.port, &args).unwrap()
    }

    fn cert_of(&self, u: &User, extra: &[&str]) -> Run {
        self.with_cert(u.caccn.unwrap(), u.cacserial.unwrap(), extra)
    }

    /// AUTH PLAIN with an empty password, through Python smtplib after STARTTLS.
    fn empty_password(&self, user: &str) -> Run {
        python(
            &r#"
import base64, smtplib, ssl
ctx = ssl.create_default_context(cafile="CA")
s = smtplib.SMTP("127.0.0.1", PORT, timeout=15)
s.ehlo("py.client")
s.starttls(context=ctx)
s.ehlo("py.client")
token = base64.b64encode(b"\0USER\0").decode()
code, msg = s.docmd("AUTH", "PLAIN " + token)
print("REPLY", code, msg.decode())
s.quit()
"#
            .replace("PORT", &self.port.to_string())
            .replace("CA", self.ca_path.to_str().unwrap())
            .replace("USER", user),
        )
        .unwrap()
    }
}

fn accepted(r: &Run) {
    assert!(r.has("250 2.0.0 Ok"), "{}", r.output);
}

fn ldap_only(action: AllowanceAction, response: Option<Reply>) -> AuthProfile {
    AuthProfile {
        certificate: None,
        smtp_auth: Some(smtp_auth(Some(action), response)),
    }
}

#[test]
fn smtp_auth_with_allowance_reject() {
    // Procedure B: TLS required, SMTP AUTH required, allowance action Reject.
    let w = world(
        ldap_only(AllowanceAction::Reject, None),
        policy(TlsMode::Required, false, true, false),
        |_| {},
    );
    // No CAC: allowed; the message goes through with the user in the Received header.
    let r = w.auth("frank", slapd::FRANK.password);
    assert!(r.has("235 2.7.0"), "{}", r.output);
    accepted(&r);
    let m = w.sink.wait_for(1, Duration::from_secs(5));
    assert!(
        m[0].message.contains("ESMTPSA") && m[0].message.contains("frank"),
        "{}",
        m[0].message
    );
    // Exempt and emergency-in-the-future CAC holders: allowed.
    accepted(&w.auth("erin", slapd::ERIN.password));
    accepted(&w.auth("emma", slapd::EMMA.password));
    // CAC holder not exempt, and an emergency date in the past: 525 5.7.13.
    for (user, pw) in [
        ("alice", slapd::ALICE.password),
        ("paul", slapd::PAUL.password),
    ] {
        let r = w.auth(user, pw);
        assert!(r.has("525 5.7.13"), "{user}: {}", r.output);
        assert!(!r.has("250 2.0.0 Ok"), "{}", r.output);
    }
    // Wrong password, unknown user, injection: 535 5.7.8.
    for (user, pw) in [
        ("frank", "wrong"),
        ("mallory", "whatever"),
        ("*)(uid=*", slapd::FRANK.password),
        ("*", slapd::FRANK.password),
    ] {
        let r = w.auth(user, pw);
        assert!(r.has("535 5.7.8"), "{user}: {}", r.output);
    }
    // An empty password never becomes an (anonymous) bind: 535.
    let r = w.empty_password("frank");
    assert!(r.has("REPLY 535 5.7.8"), "{}", r.output);
    assert_eq!(w.sink.messages().len(), 3);
    // The decision log names the outcome and the reason.
    let d = w.gw.decisions();
    assert!(
        d.iter()
            .any(|v| v["decision"] == "auth" && v["outcome"] == "not_allowed"),
        "{d:?}"
    );
    // The LDAP client logged its queries with the escaped filter.
    assert!(
        w.gw.log().contains("(uid=\\\\2a\\\\29\\\\28uid=\\\\2a)"),
        "{}",
        w.gw.log()
    );
}

#[test]
fn smtp_auth_with_allowance_monitor() {
    let w = world(
        ldap_only(AllowanceAction::Monitor, None),
        policy(TlsMode::Required, false, true, false),
        |_| {},
    );
    // Not allowed, but Monitor: the session proceeds and every command is logged.
    let r = w.auth("alice", slapd::ALICE.password);
    assert!(r.has("235 2.7.0"), "{}", r.output);
    accepted(&r);
    assert_eq!(w.sink.wait_for(1, Duration::from_secs(5)).len(), 1);
    let d = w.gw.decisions();
    assert!(
        d.iter()
            .any(|v| v["outcome"] == "authenticated_monitored" && v["user"] == "alice"),
        "{d:?}"
    );
    let monitored =
        w.gw.wait_log_line(Duration::from_secs(5), |v| {
            v["user"] == "alice"
                && v["command"]
                    .as_str()
                    .is_some_and(|c| c.to_ascii_uppercase().starts_with("RCPT"))
        })
        .is_some();
    assert!(monitored, "{}", w.gw.log());
    // An allowed user is not monitored.
    accepted(&w.auth("frank", slapd::FRANK.password));
    assert!(
        !w.gw
            .log()
            .lines()
            .any(|l| l.contains("monitored session command") && l.contains("\"frank\"")),
        "{}",
        w.gw.log()
    );
}

#[test]
fn directory_down_is_454_and_recovers() {
    let mut w = world(
        ldap_only(AllowanceAction::Reject, None),
        policy(TlsMode::Required, false, true, false),
        |p| {
            p.cache.ttl = cfg::Duration::from_secs(0);
            p.cache.negative_ttl = cfg::Duration::from_secs(0);
        },
    );
    accepted(&w.auth("frank", slapd::FRANK.password));
    w.slapd.stop();
    let r = w.auth("frank", slapd::FRANK.password);
    assert!(r.has("454 4.7.0"), "{}", r.output);
    assert!(!r.replied("235"), "{}", r.output);
    // Frozen (accepts connections, never answers): 454 after the operation timeout.
    w.slapd.start_again().unwrap();
    w.slapd.pause();
    let t = std::time::Instant::now();
    let r = w.auth("frank", slapd::FRANK.password);
    assert!(r.has("454 4.7.0"), "{}", r.output);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    w.slapd.resume();
    accepted(&w.auth("frank", slapd::FRANK.password));
    let d = w.gw.decisions();
    assert!(
        d.iter()
            .any(|v| v["decision"] == "auth" && v["outcome"] == "temp_fail"),
        "{d:?}"
    );
}

fn certificate_profile(fallback: bool) -> AuthProfile {
    AuthProfile {
        certificate: Some(CertificateAuth {
            required_policies: Vec::new(),
            required_ekus: Vec::new(),

            backend: ldap_backend(),
        }),
        smtp_auth: fallback.then(|| {
            smtp_auth(
                Some(AllowanceAction::Reject),
                Some(Reply {
                    code: 525,
                    enhanced_code: "5.7.13".into(),
                    text: "Dear user, please use your CAC to send email.".into(),
                }),
            )
        }),
    }
}

#[test]
fn certificate_only() {
    // Procedure A: Certificate profile without fallback; TLS required, client
    // certificate verified, SMTP AUTH required (satisfied by the certificate).
    let mut w = world(
        certificate_profile(false),
        policy(TlsMode::Required, true, true, false),
        |_| {},
    );
    let r = w.cert_of(&slapd::ALICE, &[]);
    accepted(&r);
    // AUTH is never offered on this listener.
    assert!(!r.has("250-AUTH") && !r.has("250 AUTH"), "{}", r.output);
    let m = w.sink.wait_for(1, Duration::from_secs(5));
    assert!(m[0].message.contains("alice"), "{}", m[0].message);
    // A valid certificate that maps to nobody, or to two entries: MAIL refused.
    for (cn, sn) in [
        ("DOE.MALLORY.9", "0999"),
        (slapd::TWIN_CN, slapd::TWIN_SERIAL),
    ] {
        let r = w.with_cert(cn, sn, &[]);
        assert!(r.has("530 5.7.0"), "{cn}: {}", r.output);
    }
    // The directory is down: temporary failure, not a refusal and not an accept.
    w.slapd.stop();
    let r = w.cert_of(&slapd::ERIN, &[]);
    assert!(r.has("454 4.7.0"), "{}", r.output);
    w.slapd.start_again().unwrap();
    accepted(&w.cert_of(&slapd::ERIN, &[]));
    let d = w.gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "authenticated"
            && v["user"] == "alice"),
        "{d:?}"
    );
}

#[test]
fn certificate_with_smtp_auth_fallback() {
    // Procedure C: certificate, or SMTP AUTH for users without one; TLS preferred, SMTP
    // AUTH required, TLS required for AUTH; the fallback's allowance rejects CAC holders.
    let w = world(
        certificate_profile(true),
        policy(TlsMode::Preferred, true, true, true),
        |_| {},
    );
    // With a CAC: mapped, no AUTH needed.
    accepted(&w.cert_of(&slapd::ALICE, &[]));
    // Without a certificate: AUTH after STARTTLS.
    accepted(&w.auth("frank", slapd::FRANK.password));
    // A CAC holder trying AUTH instead of the card: the custom 525.
    let r = w.auth("alice", slapd::ALICE.password);
    assert!(
        r.has("525 5.7.13 Dear user, please use your CAC to send email."),
        "{}",
        r.output
    );
    // AUTH is not offered before STARTTLS.
    let r = swaks(
        w.port,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "frank",
            "--auth-password",
            slapd::FRANK.password,
            "--from",
            "sender@example.org",
            "--to",
            "rcpt@example.net",
        ],
    )
    .unwrap();
    assert!(!r.replied("235"), "{}", r.output);
    assert_eq!(w.sink.messages().len(), 2);
}

#[test]
fn active_directory_style_certificate_mapping() {
    let w = world(
        certificate_profile(false),
        policy(TlsMode::Required, true, true, false),
        |p| {
            let q = p.certificate_auth_query.as_mut().unwrap();
            q.filter = "(&(objectClass=user)(cn={cn}))".into();
            q.user_id_attribute = "sAMAccountName".into();
        },
    );
    accepted(&w.with_cert(slapd::JANE_CN, slapd::JANE_SERIAL, &[]));
    let m = w.sink.wait_for(1, Duration::from_secs(5));
    assert!(m[0].message.contains(slapd::JANE_SAM), "{}", m[0].message);
}

#[test]
fn the_gateway_talks_tls_to_the_directory() {
    // StartTLS, then ldaps, with the profile's CA bundle: passwords never cross the
    // network in clear.
    let tls = slapd::SlapdTls::generate().unwrap();
    for ldaps in [false, true] {
        let options = SlapdOptions {
            tls: Some(tls.clone()),
            ..Default::default()
        };
        let w = world_with(
            options,
            ldap_only(AllowanceAction::Reject, None),
            policy(TlsMode::Required, false, true, false),
            |s, p| {
                p.ca_pem = Some(tls.ca_pem.clone());
                if ldaps {
                    p.servers = vec![s.ldaps_url().unwrap()];
                } else {
                    p.start_tls = true;
                }
            },
        );
        accepted(&w.auth("frank", slapd::FRANK.password));
        let r = w.auth("alice", slapd::ALICE.password);
        assert!(r.has("525 5.7.13"), "{}", r.output);
        assert!(w.auth("frank", "wrong").has("535 5.7.8"));
    }
}

#[test]
fn a_reload_moves_to_another_directory() {
    let mut w = world(
        ldap_only(AllowanceAction::Reject, None),
        policy(TlsMode::Required, false, true, false),
        |_| {},
    );
    accepted(&w.auth("frank", slapd::FRANK.password));
    // The LdapProfile now points at another slapd; the old one goes away.
    let other = Slapd::start(SlapdOptions::default()).unwrap();
    let mut config = w.config.clone();
    config.ldap_profiles.get_mut("corp").unwrap().servers = vec![other.url()];
    w.gw.write_config_text(&config.to_yaml()).unwrap();
    w.gw.wait_hash(&config.hash(), Duration::from_secs(10))
        .unwrap();
    w.slapd.stop();
    accepted(&w.auth("frank", slapd::FRANK.password));
    let r = w.auth("alice", slapd::ALICE.password);
    assert!(r.has("525 5.7.13"), "{}", r.output);
}
