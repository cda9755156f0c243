//! Issue 19, item 3: `senderBinding` end to end against slapd, for certificate sessions
//! (john's DoD-shaped PIV certificate, made with openssl) and SMTP AUTH sessions alike.
//! john's entry holds `mail` and Exchange-style `proxyAddresses` (`SMTP:` primary,
//! `smtp:` alias, an `X500:` value that is no address); the LDAP profile reads both.
//! Under `Enforce` his own addresses (in any case) are accepted and another's is refused
//! with `553 5.7.1`; under `Monitor` the foreign sender is accepted and logged; the
//! decision lines and `postern_sender_binding_total` say which.

use std::path::Path;
use std::time::Duration;

use postern_config::{SenderBinding, TlsMode};
use postern_tests::cac::{CacPki, CardCert};
use postern_tests::cac_gateway::{self, CacGateway, JOHN_CN, JOHN_EDIPI, JOHN_EMAIL};
use postern_tests::clients::{Run, swaks};
use postern_tests::gateway::policy;
use postern_tests::openssl_ca::Issued;
use postern_tests::slapd::{self, Slapd};

/// `proxyAddresses` as Active Directory has it (multi-valued, case-insensitive).
const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.40 NAME 'proxyAddresses' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.99999.2.40 NAME 'exchangeUser' SUP top AUXILIARY MAY ( proxyAddresses ) )
";

const PASSWORD: &str = "john-secret";
const ALIAS: &str = "j.doe@army.mil";
const FOREIGN: &str = "general.ripper@mail.mil";

fn ldif() -> String {
    format!(
        "{}dn: uid=jdoe,ou=people,{base}\nobjectClass: inetOrgPerson\nobjectClass: exchangeUser\n\
         cn: {JOHN_CN}\nsn: Doe\nuid: jdoe\nemployeeNumber: {JOHN_EDIPI}\nuserPassword: {PASSWORD}\n\
         mail: {JOHN_EMAIL}\nproxyAddresses: SMTP:{JOHN_EMAIL}\nproxyAddresses: smtp:{ALIAS}\n\
         proxyAddresses: X500:/o=DoD/ou=Exchange/cn=Recipients/cn=jdoe\n\n",
        slapd::directory_ldif(),
        base = slapd::BASE_DN,
    )
}

fn start(pki: &CacPki, slapd: &Slapd, dir: &Path, mode: SenderBinding) -> CacGateway {
    let profile = cac_gateway::certificate_with_auth_fallback();
    let mut p = policy(TlsMode::Required, false, true, false);
    p.sender_binding = mode;
    cac_gateway::start_with(pki, slapd, dir, profile, p, |ldap| {
        ldap.mail_attributes = vec!["mail".into(), "proxyAddresses".into()];
    })
}

/// One message from `from` over STARTTLS, with the card certificate or AUTH PLAIN.
fn send(gw: &CacGateway, from: &str, cert: Option<&Issued>) -> Run {
    let ca = gw.server_ca.display().to_string();
    let mut args: Vec<String> = [
        "--tls",
        "--tls-ca-path",
        &ca,
        "--from",
        from,
        "--to",
        "rcpt@example.net",
    ]
    .map(String::from)
    .to_vec();
    match cert {
        Some(c) => args.extend([
            "--tls-cert".into(),
            c.cert.display().to_string(),
            "--tls-key".into(),
            c.key.display().to_string(),
        ]),
        None => args.extend(
            [
                "--auth",
                "PLAIN",
                "--auth-user",
                "jdoe",
                "--auth-password",
                PASSWORD,
            ]
            .map(String::from),
        ),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    swaks(gw.port, &args).unwrap()
}

fn metric(gw: &CacGateway, mode: &str, outcome: &str) -> u64 {
    let (_, text) = gw.gw.http_get("/metrics").unwrap();
    let prefix = "postern_sender_binding_total{";
    text.lines()
        .filter(|l| {
            l.starts_with(prefix)
                && l.contains(&format!("mode=\"{mode}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn sender_decisions(gw: &CacGateway) -> Vec<serde_json::Value> {
    gw.gw
        .decisions()
        .into_iter()
        .filter(|v| v["decision"] == "sender_binding")
        .collect()
}

fn setup(dir: &Path) -> (CacPki, Issued, Slapd) {
    let pki = CacPki::new(dir).unwrap();
    let piv = pki
        .card(CardCert::PivAuth, JOHN_CN, JOHN_EDIPI, JOHN_EMAIL, "0x3B01")
        .unwrap();
    let slapd = slapd::start_with_schema(ldif(), SCHEMA);
    (pki, piv, slapd)
}

#[test]
fn enforce_accepts_the_users_own_addresses_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, piv, slapd) = setup(dir.path());
    let gw = start(&pki, &slapd, dir.path(), SenderBinding::Enforce);

    // Certificate session: `mail`, in another case; then a foreign sender.
    let r = send(&gw, &JOHN_EMAIL.to_uppercase(), Some(&piv));
    assert_eq!(r.code, 0, "{}", r.output);
    let r = send(&gw, FOREIGN, Some(&piv));
    assert!(r.replied("553 5.7.1"), "{}", r.output);

    // AUTH session: the `smtp:` alias of proxyAddresses; then a foreign sender.
    let r = send(&gw, ALIAS, None);
    assert_eq!(r.code, 0, "{}", r.output);
    let r = send(&gw, FOREIGN, None);
    assert!(r.replied("553 5.7.1"), "{}", r.output);
    // The X500 value is no address, and nothing else of the entry is one.
    let r = send(&gw, "/o=DoD/ou=Exchange/cn=Recipients/cn=jdoe@x", None);
    assert!(r.replied("553 5.7.1"), "{}", r.output);

    let m = gw.sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(m.len(), 2);
    let d = sender_decisions(&gw);
    let own = d.iter().filter(|v| v["outcome"] == "own").count();
    let foreign: Vec<_> = d.iter().filter(|v| v["outcome"] == "foreign").collect();
    assert_eq!(own, 2, "{d:?}");
    assert_eq!(foreign.len(), 3, "{d:?}");
    assert!(
        foreign.iter().all(|v| v["user"] == "jdoe"
            && v["reason"].as_str().unwrap().starts_with("Enforce: <")),
        "{foreign:?}"
    );
    assert!(
        foreign.iter().any(|v| v["auth_method"] == "certificate")
            && foreign.iter().any(|v| v["auth_method"] == "PLAIN"),
        "{foreign:?}"
    );
    assert_eq!(metric(&gw, "Enforce", "own"), 2);
    assert_eq!(metric(&gw, "Enforce", "foreign"), 3);
}

#[test]
fn monitor_accepts_a_foreign_sender_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, piv, slapd) = setup(dir.path());
    let gw = start(&pki, &slapd, dir.path(), SenderBinding::Monitor);

    let r = send(&gw, FOREIGN, Some(&piv));
    assert_eq!(r.code, 0, "{}", r.output);
    let r = send(&gw, FOREIGN, None);
    assert_eq!(r.code, 0, "{}", r.output);
    let m = gw.sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(m.len(), 2);

    let d = sender_decisions(&gw);
    assert_eq!(
        d.iter()
            .filter(|v| v["outcome"] == "foreign"
                && v["reason"].as_str().unwrap().starts_with("Monitor: <"))
            .count(),
        2,
        "{d:?}"
    );
    assert_eq!(metric(&gw, "Monitor", "foreign"), 2);
}

#[test]
fn off_checks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, piv, slapd) = setup(dir.path());
    let gw = start(&pki, &slapd, dir.path(), SenderBinding::Off);
    let r = send(&gw, FOREIGN, Some(&piv));
    assert_eq!(r.code, 0, "{}", r.output);
    gw.sink.wait_for(1, Duration::from_secs(5));
    assert!(sender_decisions(&gw).is_empty());
}
