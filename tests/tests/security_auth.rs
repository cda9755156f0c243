//! SMTP AUTH attacks replayed against the real `postern-gateway` binary and a real slapd
//! (logging every operation, so the tests see what reached the directory):
//!
//! - a guesser that reconnects after every failure is throttled across sessions, per
//!   client address and per user name (`SmtpAuthProfile.spec.ldap.throttle`), with
//!   `454 4.7.0`, a decision line and a metric, and without any LDAP traffic;
//! - the allowance refusal (`525`) is counted like a failure, and gives the same answer
//!   for a right and a wrong password (the password of a refused user is never sent);
//! - NUL bytes in AUTH LOGIN (and PLAIN) credentials never reach slapd;
//! - `BOB` authenticates as the directory's `bob`, in the `Received` header and the log;
//! - a PLAIN authorization identity of somebody else is a decision with a metric.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_config::{self as cfg, AllowanceAction, AuthThrottle, ThrottleLimit, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::{Raw, python, swaks};
use postern_tests::gateway::{listener, policy, single, start_gateway};
use postern_tests::slapd::{self, Slapd, SlapdOptions};

/// A second user named like the issue's example, added to the test directory.
const BOB_PASSWORD: &str = "bob-secret";

fn bob_dn() -> String {
    format!("cn=bob,ou=people,{}", slapd::BASE_DN)
}

/// The DN of a test user (`cn=userN` by position in [`slapd::USERS`]).
fn dn_of(uid: &str) -> String {
    let i = slapd::USERS
        .iter()
        .position(|u| u.uid == uid)
        .expect("a test user");
    format!("cn=user{i},ou=people,{}", slapd::BASE_DN)
}

fn limit(failures: u32, secs: u64) -> ThrottleLimit {
    ThrottleLimit {
        failures,
        window: cfg::Duration::from_secs(secs),
    }
}

struct World {
    slapd: Slapd,
    sink: Sink,
    gw: Gateway,
    port: u16,
    config: cfg::GatewayConfig,
}

/// slapd (logging every operation, with bob added), smtp-sink, and the gateway with an
/// Ldap profile (allowance `action`, `throttle`) on a plaintext listener that requires
/// AUTH (TLS is beside the point here, and keeps the guesser fast).
fn world(action: AllowanceAction, throttle: AuthThrottle) -> World {
    let slapd = Slapd::start(SlapdOptions {
        stats_log: true,
        ..Default::default()
    })
    .unwrap();
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
             cn: bob\nsn: Bob\nuid: bob\nuidNumber: 2000\ngidNumber: 1000\nhomeDirectory: /home/bob\n\
             userPassword: {BOB_PASSWORD}\n",
            bob_dn()
        ))
        .unwrap();
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let profile = slapd::ldap_smtp_auth_profile(
        Some(cfg::Allowance {
            action,
            response: cfg::Reply {
                code: 525,
                enhanced_code: "5.7.13".into(),
                text: "Dear user, please use your CAC to send email.".into(),
            },
        }),
        throttle,
    );
    let mut config = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, true, false),
        Some(profile),
    );
    config
        .ldap_profiles
        .insert("corp".into(), slapd::ldap_profile(&[slapd.url()]));
    let gw = start_gateway(&config).unwrap();
    World {
        slapd,
        sink,
        gw,
        port,
        config,
    }
}

fn plain(user: &[u8], password: &[u8]) -> String {
    B64.encode([&[0u8][..], user, &[0], password].concat())
}

/// The first line of a reply.
fn first(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

impl World {
    /// A new connection (the guesser reconnects every time), EHLO, AUTH PLAIN with an
    /// initial response; the AUTH reply's first line.
    fn plain(&self, user: &[u8], password: &[u8]) -> String {
        let mut c = Raw::connect(self.port).unwrap();
        c.reply().unwrap();
        c.cmd("EHLO guesser.test").unwrap();
        let r = c
            .cmd(&format!("AUTH PLAIN {}", plain(user, password)))
            .unwrap();
        let _ = c.cmd("QUIT");
        first(&r).to_owned()
    }

    /// A new connection and AUTH LOGIN (user and password as separate lines).
    fn login(&self, user: &[u8], password: &[u8]) -> String {
        let mut c = Raw::connect(self.port).unwrap();
        c.reply().unwrap();
        c.cmd("EHLO guesser.test").unwrap();
        let r = c.cmd("AUTH LOGIN").unwrap();
        assert!(r.starts_with("334 VXNlcm5hbWU6"), "{r}");
        let r = c.cmd(&B64.encode(user)).unwrap();
        assert!(r.starts_with("334 UGFzc3dvcmQ6"), "{r}");
        let r = c.cmd(&B64.encode(password)).unwrap();
        let _ = c.cmd("QUIT");
        first(&r).to_owned()
    }

    /// AUTH PLAIN from the loopback address `source` (127.0.0.0/8 is all local), through
    /// Python's smtplib; the reply's first line.
    fn plain_from(&self, source: &str, user: &str, password: &str) -> String {
        let r = python(
            &r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", PORT, timeout=15, source_address=("SOURCE", 0))
s.ehlo("py.client")
code, msg = s.docmd("AUTH", "PLAIN TOKEN")
print("REPLY", code, msg.decode())
s.quit()
"#
            .replace("PORT", &self.port.to_string())
            .replace("SOURCE", source)
            .replace("TOKEN", &plain(user.as_bytes(), password.as_bytes())),
        )
        .unwrap();
        r.output
            .lines()
            .find_map(|l| l.strip_prefix("REPLY "))
            .unwrap_or_else(|| panic!("no reply from {source}: {}", r.output))
            .to_owned()
    }

    /// Operations slapd received: BIND requests and searches.
    fn directory_ops(&self) -> usize {
        self.slapd
            .log()
            .lines()
            .filter(|l| {
                (l.contains(" BIND dn=") && l.contains(" method=")) || l.contains(" SRCH base=")
            })
            .count()
    }

    /// Sum of the `postern_auth_total` samples whose labels include `outcome`.
    fn auth_metric(&self, outcome: &str) -> u64 {
        let (_, text) = self.gw.http_get("/metrics").unwrap();
        let label = format!("outcome=\"{outcome}\"");
        text.lines()
            .filter(|l| l.starts_with("postern_auth_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The decision lines of AUTH with `outcome`.
    fn auth_decisions(&self, outcome: &str) -> Vec<serde_json::Value> {
        self.gw
            .decisions()
            .into_iter()
            .filter(|v| v["decision"] == "auth" && v["outcome"] == outcome)
            .collect()
    }

    /// Wait (bounded) for `n` AUTH decision lines with `outcome`.
    fn wait_auth_decisions(&self, outcome: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = self.auth_decisions(outcome);
            if d.len() >= n || Instant::now() > deadline {
                return d;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

#[test]
fn reconnecting_guesser_is_throttled_per_client_address() {
    // The defaults: 10 failures per client address, 5 per user name, per 10 minutes.
    let w = world(AllowanceAction::Reject, AuthThrottle::default());
    // A guesser rotating user names (so the per-user limit never applies) and
    // reconnecting after every failure, as fast as it can for a few seconds.
    let started = Instant::now();
    let (mut checked, mut throttled) = (0, 0);
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let users = ["frank", "erin", "emma", "mallory", "bob", "root", "admin"];
        let r = w.plain(
            users[i % users.len()].as_bytes(),
            format!("guess{i}").as_bytes(),
        );
        i += 1;
        if r.starts_with("535 5.7.8") {
            checked += 1;
        } else {
            assert_eq!(
                r, "454 4.7.0 Too many failed authentication attempts, try again later",
                "attempt {i}"
            );
            throttled += 1;
        }
    }
    eprintln!(
        "guesser: {i} attempts in {:?}: {checked} password checks, {throttled} throttled",
        started.elapsed()
    );
    assert_eq!(checked, 10, "the first 10 failures are checked, no more");
    assert!(throttled >= 1);
    // While throttled, nothing reaches the directory — not even the right password.
    let ops = w.directory_ops();
    for _ in 0..5 {
        assert!(
            w.plain(b"frank", slapd::FRANK.password.as_bytes())
                .starts_with("454 4.7.0")
        );
    }
    // AUTH LOGIN: refused at the command, before any credentials are sent.
    let mut c = Raw::connect(w.port).unwrap();
    c.reply().unwrap();
    c.cmd("EHLO guesser.test").unwrap();
    let r = c.cmd("AUTH LOGIN").unwrap();
    assert!(r.starts_with("454 4.7.0"), "{r}");
    assert_eq!(w.directory_ops(), ops, "slapd saw traffic while throttled");
    // Every throttled attempt is a decision with the limit in its reason, and a metric.
    let d = w.wait_auth_decisions("throttled_client", throttled + 6);
    assert_eq!(d.len(), throttled + 6, "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap()
            .contains("too many failed AUTH for this client address (limit 10 per 10m)"),
        "{}",
        d[0]
    );
    assert_eq!(d[0]["client_ip"], "127.0.0.1");
    assert_eq!(w.auth_metric("throttled_client"), (throttled + 6) as u64);
    assert_eq!(w.auth_metric("invalid"), 10);
    // Another address is not affected: frank gets in from 127.0.0.2.
    let r = w.plain_from("127.0.0.2", "frank", slapd::FRANK.password);
    assert!(r.starts_with("235 "), "{r}");
}

#[test]
fn throttle_survives_a_reload_and_forgets_at_its_rate() {
    // 3 failures per client address per 10 minutes (one attempt back every 200 s).
    let w = world(
        AllowanceAction::Reject,
        AuthThrottle {
            per_client: limit(3, 600),
            per_user: limit(0, 600),
        },
    );
    for i in 0..3 {
        let r = w.plain(b"frank", format!("wrong{i}").as_bytes());
        assert!(r.starts_with("535 5.7.8"), "{r}");
    }
    assert!(w.plain(b"frank", b"x").starts_with("454 4.7.0"));
    // A configuration reload (another listener host name) keeps the count.
    let mut config = w.config.clone();
    config.listeners.get_mut("smtp").unwrap().hostname = "reloaded.test".into();
    w.gw.write_config_text(&config.to_yaml()).unwrap();
    w.gw.wait_hash(&config.hash(), Duration::from_secs(10))
        .unwrap();
    let r = w.plain(b"frank", slapd::FRANK.password.as_bytes());
    assert!(
        r.starts_with("454 4.7.0"),
        "still throttled after the reload: {r}"
    );
    // A reload with a shorter window applies to the failures counted so far: 3 per 3 s
    // drains one a second, so within a few seconds the right password works again.
    let throttle = &mut config
        .auth_profiles
        .get_mut("auth")
        .unwrap()
        .smtp_auth
        .as_mut()
        .unwrap()
        .throttle;
    throttle.per_client = limit(3, 3);
    w.gw.write_config_text(&config.to_yaml()).unwrap();
    w.gw.wait_hash(&config.hash(), Duration::from_secs(10))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = w.plain(b"frank", slapd::FRANK.password.as_bytes());
        if !r.starts_with("454") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(r.starts_with("235 "), "{r}");
}

#[test]
fn per_user_throttle_counts_every_address_spelling_and_525() {
    let w = world(AllowanceAction::Reject, AuthThrottle::default());
    // Five failures for bob from five addresses, spelt as the directory equates them
    // (case, spaces, and full-width letters, which slapd folds to `bob` too).
    let spellings = ["bob", "BOB", " Bob", "bob ", "ＢＯＢ"];
    for (i, name) in spellings.iter().enumerate() {
        let r = w.plain_from(&format!("127.0.0.{}", i + 2), name, "guess");
        assert!(r.starts_with("535 5.7.8"), "{name:?}: {r}");
    }
    let binds = w.slapd.binds_as(&bob_dn());
    assert_eq!(binds, 5, "{:?}", w.slapd.binds());
    // The sixth, from yet another address and with the right password: throttled, and
    // bob's password is not sent to the directory.
    for (i, name) in ["bob", "ｂｏｂ"].iter().enumerate() {
        let r = w.plain_from(&format!("127.0.0.{}", 10 + i), name, BOB_PASSWORD);
        assert!(r.starts_with("454 4.7.0"), "{name:?}: {r}");
    }
    assert_eq!(w.slapd.binds_as(&bob_dn()), binds);
    let d = w.wait_auth_decisions("throttled_user", 2);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d.iter().all(|v| v["reason"]
            .as_str()
            .unwrap()
            .contains("too many failed AUTH for this user name (limit 5 per 10m)")),
        "{d:?}"
    );
    assert_eq!(w.auth_metric("throttled_user"), 2);

    // `525` counts like a failure: alice (a CAC holder the allowance query refuses) gets
    // the profile's response five times, right password or not, then 454.
    for (i, pw) in [
        "guess",
        slapd::ALICE.password,
        "guess2",
        slapd::ALICE.password,
        "x",
    ]
    .iter()
    .enumerate()
    {
        let r = w.plain_from(&format!("127.0.1.{}", i + 2), "alice", pw);
        assert_eq!(
            r, "525 5.7.13 Dear user, please use your CAC to send email.",
            "{pw}"
        );
    }
    let r = w.plain_from("127.0.1.20", "alice", slapd::ALICE.password);
    assert!(r.starts_with("454 4.7.0"), "{r}");
    assert_eq!(w.auth_metric("not_allowed"), 5);
    // Other users are not affected.
    let r = w.plain_from("127.0.2.2", "frank", slapd::FRANK.password);
    assert!(r.starts_with("235 "), "{r}");
}

#[test]
fn refused_users_get_the_same_answer_for_any_password() {
    let w = world(AllowanceAction::Reject, AuthThrottle::default());
    let alice = dn_of("alice");
    let paul = dn_of("paul");
    // Right and wrong passwords of users the allowance query refuses: identical replies,
    // and the password never reaches the directory (no BIND as them at all).
    for (user, right) in [
        ("alice", slapd::ALICE.password),
        ("paul", slapd::PAUL.password),
    ] {
        let right = w.login(user.as_bytes(), right.as_bytes());
        let wrong = w.login(user.as_bytes(), b"not-the-password");
        assert_eq!(right, wrong, "{user}");
        assert_eq!(
            right,
            "525 5.7.13 Dear user, please use your CAC to send email."
        );
    }
    assert_eq!(w.slapd.binds_as(&alice), 0, "{:?}", w.slapd.binds());
    assert_eq!(w.slapd.binds_as(&paul), 0, "{:?}", w.slapd.binds());
    let d = w.wait_auth_decisions("not_allowed", 4);
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(
        d.iter().all(|v| v["reason"]
            .as_str()
            .unwrap()
            .contains("before the password was checked")),
        "{d:?}"
    );
    // Allowed users still have their password checked by the directory.
    assert!(w.login(b"frank", b"wrong").starts_with("535 5.7.8"));
    assert!(
        w.login(b"frank", slapd::FRANK.password.as_bytes())
            .starts_with("235 ")
    );
    assert_eq!(w.slapd.binds_as(&dn_of("frank")), 2);
}

#[test]
fn monitor_still_checks_the_password_of_refused_users() {
    // With Monitor the refused user is let in, so the password must be right.
    let w = world(AllowanceAction::Monitor, AuthThrottle::default());
    assert!(w.login(b"alice", b"wrong").starts_with("535 5.7.8"));
    assert!(
        w.login(b"alice", slapd::ALICE.password.as_bytes())
            .starts_with("235 ")
    );
    assert_eq!(w.slapd.binds_as(&dn_of("alice")), 2);
    assert_eq!(w.wait_auth_decisions("authenticated_monitored", 1).len(), 1);
}

#[test]
fn nul_in_credentials_never_reaches_slapd() {
    let w = world(AllowanceAction::Reject, AuthThrottle::default());
    let frank = dn_of("frank");
    let pw = slapd::FRANK.password.as_bytes();
    let ops = w.directory_ops();
    let with_nul = |before: &[u8], after: &[u8]| [before, b"\0", after].concat();
    // AUTH LOGIN: a NUL before, inside or after the password, or in the user name.
    for (user, password) in [
        (b"frank".to_vec(), with_nul(b"", pw)),
        (b"frank".to_vec(), with_nul(pw, b"")),
        (b"frank".to_vec(), with_nul(b"frank", b"-secret")),
        (b"frank".to_vec(), b"\0".to_vec()),
        (with_nul(b"frank", b""), pw.to_vec()),
    ] {
        let r = w.login(&user, &password);
        assert_eq!(
            r, "501 5.5.2 Credentials must not contain NUL bytes",
            "{user:?}/{password:?}"
        );
    }
    // AUTH PLAIN cannot carry one (it is the field separator): malformed.
    let r = w.plain(b"frank", &with_nul(pw, b""));
    assert!(r.starts_with("501 5.5.2"), "{r}");
    assert_eq!(
        w.slapd.binds_as(&frank),
        0,
        "a NUL credential reached slapd: {:?}",
        w.slapd.binds()
    );
    // Nothing at all reached slapd: no search, no bind.
    assert_eq!(w.directory_ops(), ops, "{}", w.slapd.log());
    // Each is a decision and a metric (`malformed`), and none counts as a guess.
    assert_eq!(w.wait_auth_decisions("malformed", 6).len(), 6);
    assert_eq!(w.auth_metric("malformed"), 6);
    assert_eq!(w.auth_metric("invalid"), 0);
    // The method of detection works: the right password is one BIND as frank.
    assert!(w.login(b"frank", pw).starts_with("235 "));
    assert_eq!(w.slapd.binds_as(&frank), 1, "{:?}", w.slapd.binds());
}

#[test]
fn the_auth_identity_is_the_directory_user_id() {
    let w = world(AllowanceAction::Reject, AuthThrottle::default());
    // `BOB` finds bob's entry (uid matches case-insensitively) and is recorded as `bob`.
    let r = swaks(
        w.port,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "BOB",
            "--auth-password",
            BOB_PASSWORD,
            "--from",
            "bob@example.org",
            "--to",
            "rcpt@example.net",
            "--body",
            "who am I",
        ],
    )
    .unwrap();
    assert!(r.replied("235"), "{}", r.output);
    assert!(r.has("250 2.0.0 Ok"), "{}", r.output);
    let m = w.sink.wait_for(1, Duration::from_secs(10));
    let head = m[0].message.split("\r\n\r\n").next().unwrap().to_owned();
    assert!(
        head.contains("(authenticated as bob by PLAIN)"),
        "Received header:\n{head}"
    );
    assert!(!head.contains("BOB"), "{head}");
    let d = w.wait_auth_decisions("authenticated", 1);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["user"], "bob");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("AUTH name BOB"),
        "{}",
        d[0]
    );
    // The transaction's decisions carry the same identity.
    let mail =
        w.gw.wait_log_line(Duration::from_secs(10), |v| {
            v["decision"] == "mail" && v["outcome"] == "accepted"
        })
        .expect("mail decision");
    assert_eq!(mail["user"], "bob");
}

#[test]
fn foreign_authorization_identity_is_a_decision() {
    let w = world(AllowanceAction::Reject, AuthThrottle::default());
    // AUTH PLAIN as frank (with frank's password) acting for carol: refused.
    let mut c = Raw::connect(w.port).unwrap();
    c.reply().unwrap();
    c.cmd("EHLO client.test").unwrap();
    let token = B64.encode(format!("carol\0frank\0{}", slapd::FRANK.password));
    let r = c.cmd(&format!("AUTH PLAIN {token}")).unwrap();
    assert!(r.starts_with("535 5.7.8"), "{r}");
    let r = c.cmd("MAIL FROM:<frank@example.org>").unwrap();
    assert!(r.starts_with("530 5.7.0"), "{r}");
    let d = w.wait_auth_decisions("foreign_authzid", 1);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap()
            .contains("authorization identity differs"),
        "{}",
        d[0]
    );
    assert_eq!(w.auth_metric("foreign_authzid"), 1);
    // Nothing was asked of the directory for it.
    assert_eq!(w.slapd.binds_as(&dn_of("frank")), 0);
    // Unknown mechanisms and AUTH where it is not possible are decisions too.
    let r = c.cmd("AUTH CRAM-MD5").unwrap();
    assert!(r.starts_with("504 5.5.4"), "{r}");
    let mut c = Raw::connect(w.port).unwrap();
    c.reply().unwrap();
    let r = c.cmd("AUTH PLAIN").unwrap();
    assert!(r.starts_with("503 5.5.1"), "{r}");
    assert_eq!(w.wait_auth_decisions("refused", 2).len(), 2);
    assert_eq!(w.auth_metric("refused"), 2);
}
