//! Client certificates built to get in without the right to: from another CA, through an
//! expired intermediate, expired, with an embedded NUL or two common names, with an
//! over-long serial. Against the real gateway binary, procedure A (certificate only,
//! `tls: Required`, `verifyClientCertificate`, `requireSmtpAuth`) and procedure C
//! (certificate or AUTH, no verification: an invalid certificate is ignored).

use std::time::Duration;

use postern_config::TlsMode;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, days_from_now as days};
use postern_tests::gate::{
    Client, ClientCert, Hop, HopMode, Pki, client_params, config, policy, start_gateway,
    static_profile,
};
use rcgen::{DnType, KeyPair, SerialNumber};

const CN: &str = "DOE.JOHN.1234567890";

/// STARTTLS with `cert`, EHLO, MAIL: the MAIL reply, or the error that ended the session.
fn try_mail(gw: &Gateway, pki: &Pki, cert: &ClientCert) -> Result<(u16, String), String> {
    let run = || -> anyhow::Result<(u16, String)> {
        let mut c = Client::connect(gw.addr())?;
        c.cmd("EHLO client.test")?;
        c.starttls(&pki.ca_pem(), Some(cert))?;
        // TLS 1.3: a refused client certificate surfaces at the first read.
        c.cmd("EHLO client.test")?;
        c.cmd("MAIL FROM:<jdoe@example.org>")
    };
    run().map_err(|e| format!("{e:#}"))
}

#[test]
fn certificates_that_must_not_map_or_verify() {
    let pki = Pki::new("Listener CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Required, true, true, false),
            static_profile(true, false),
        ),
        &[],
    )
    .unwrap();

    // Control: the genuine certificate maps to jdoe and may send.
    let good = pki.client(CN);
    let r = try_mail(&gw, &pki, &good).unwrap();
    assert_eq!(r.0, 250, "{r:?}\n{}", gw.log());

    // The same CN from a CA the listener does not trust: the handshake fails.
    let other = Pki::new("Listener CA").client(CN);
    let r = try_mail(&gw, &pki, &other);
    assert!(
        r.is_err(),
        "a certificate from another CA was accepted: {r:?}"
    );

    // Through an intermediate that has expired.
    let inter = Ca::builder("Expired Intermediate")
        .validity(days(-60), days(-1))
        .signed_by(&pki.ca)
        .unwrap();
    let mut p = client_params();
    p.distinguished_name.push(DnType::CommonName, CN);
    let key = KeyPair::generate().unwrap();
    let leaf = p.signed_by(&key, &inter.issuer()).unwrap();
    let chained = ClientCert {
        chain_pem: format!("{}{}", leaf.pem(), inter.cert_pem()),
        key_pem: key.serialize_pem(),
    };
    let r = try_mail(&gw, &pki, &chained);
    assert!(r.is_err(), "an expired intermediate was accepted: {r:?}");
    // ... while a valid intermediate works (the chain building itself is fine).
    let inter = Ca::builder("Valid Intermediate")
        .validity(days(-1), days(30))
        .signed_by(&pki.ca)
        .unwrap();
    let leaf = p.signed_by(&key, &inter.issuer()).unwrap();
    let chained = ClientCert {
        chain_pem: format!("{}{}", leaf.pem(), inter.cert_pem()),
        key_pem: key.serialize_pem(),
    };
    assert_eq!(try_mail(&gw, &pki, &chained).unwrap().0, 250);

    // An expired leaf, and one not yet valid.
    for (from, to) in [(days(-30), days(-1)), (days(1), days(30))] {
        let mut p = client_params();
        p.distinguished_name.push(DnType::CommonName, CN);
        p.not_before = from;
        p.not_after = to;
        let r = try_mail(&gw, &pki, &pki.issue(p));
        assert!(r.is_err(), "validity {from}..{to} accepted: {r:?}");
    }

    // Names built to look like jdoe's: embedded NUL, two CNs (either order). They verify
    // (same CA) but must not map: the session is not authenticated.
    let mut nul = client_params();
    nul.distinguished_name
        .push(DnType::CommonName, format!("{CN}\0.attacker"));
    let mut two = client_params();
    two.distinguished_name.push(DnType::CommonName, "attacker");
    two.distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 3]), CN);
    let mut two_rev = client_params();
    two_rev
        .distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 3]), CN);
    two_rev
        .distinguished_name
        .push(DnType::CommonName, "attacker");
    for (what, p) in [
        ("NUL", nul),
        ("two CNs", two),
        ("two CNs reversed", two_rev),
    ] {
        match try_mail(&gw, &pki, &pki.issue(p)) {
            Ok((code, text)) => {
                assert_eq!(code, 530, "{what}: {text}");
                assert!(text.starts_with("530 5.7.0"), "{what}: {text}");
            }
            Err(e) => panic!("{what}: the certificate should verify and then not map: {e}"),
        }
    }

    // Serials RFC 5280 forbids: over 20 octets, and negative (its two's-complement bytes
    // would read as another, positive serial). They verify, but nobody is mapped by them.
    let mut long = client_params();
    long.distinguished_name.push(DnType::CommonName, CN);
    long.serial_number = Some(SerialNumber::from_slice(&[0x7f; 40]));
    let negative = openssl_negative_serial(&pki, CN);
    for (what, cert) in [
        ("over-long serial", pki.issue(long)),
        ("negative serial", negative),
    ] {
        let r = try_mail(&gw, &pki, &cert);
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|r| r.1.starts_with("530 5.7.0")),
            "{what}: {r:?}"
        );
    }
    gw.wait_log("the serial number is negative", Duration::from_secs(5))
        .unwrap();

    gw.wait_log("certificate", Duration::from_secs(5)).unwrap();
    assert!(hop.messages().is_empty());
}

/// Without `verifyClientCertificate`, an invalid certificate is ignored as if none was
/// sent: the handshake succeeds, the session is not authenticated by it, AUTH still works.
#[test]
fn unverified_certificates_are_ignored_not_trusted() {
    let pki = Pki::new("Listener CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Preferred, false, true, true),
            static_profile(true, true),
        ),
        &[],
    )
    .unwrap();
    let other = Pki::new("Impostor CA").client(CN);
    let mut expired = client_params();
    expired.distinguished_name.push(DnType::CommonName, CN);
    expired.not_before = days(-30);
    expired.not_after = days(-1);
    for cert in [other, pki.issue(expired)] {
        let mut c = Client::connect(gw.addr()).unwrap();
        c.cmd("EHLO client.test").unwrap();
        c.starttls(&pki.ca_pem(), Some(&cert)).unwrap();
        c.cmd("EHLO client.test").unwrap();
        let (_, text) = c.cmd("MAIL FROM:<jdoe@example.org>").unwrap();
        assert!(text.starts_with("530 5.7.0"), "{text}");
        assert_eq!(c.auth_plain(b"frank", b"frankpw").unwrap().0, 235);
        assert_eq!(c.cmd("MAIL FROM:<frank@example.org>").unwrap().0, 250);
    }
    // The genuine certificate authenticates on its own.
    let mut c = Client::connect(gw.addr()).unwrap();
    c.cmd("EHLO client.test").unwrap();
    c.starttls(&pki.ca_pem(), Some(&pki.client(CN))).unwrap();
    c.cmd("EHLO client.test").unwrap();
    assert_eq!(c.cmd("MAIL FROM:<jdoe@example.org>").unwrap().0, 250);
}

/// What the gateway reports as `postern_certificate_facts_cached`.
fn facts_cached(gw: &Gateway) -> u64 {
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("postern_certificate_facts_cached "))
        .unwrap_or_else(|| panic!("no postern_certificate_facts_cached in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// The facts of verified certificates are remembered for later sessions; refused (enforcing
/// policy) and ignored (lenient policy) certificates never are, so a client presenting
/// certificates of its own making cannot fill that cache and push out other users' entries.
#[test]
fn only_verified_certificates_are_remembered() {
    let pki = Pki::new("Listener CA");
    let hop = Hop::start(HopMode::Accept);
    for (mode, verify) in [(TlsMode::Required, true), (TlsMode::Preferred, false)] {
        let gw = start_gateway(
            &config(
                &pki,
                hop.addr,
                policy(mode, verify, true, !verify),
                static_profile(true, !verify),
            ),
            &[],
        )
        .unwrap();
        assert_eq!(facts_cached(&gw), 0);
        let good = pki.client(CN);
        for _ in 0..2 {
            assert_eq!(try_mail(&gw, &pki, &good).unwrap().0, 250);
        }
        assert_eq!(facts_cached(&gw), 1, "verify {verify}");
        // Certificates of the client's own making: from its own CA, or expired.
        for i in 0..10 {
            let forged = if i % 2 == 0 {
                Pki::new("Listener CA").client(&format!("{CN}{i}"))
            } else {
                let mut p = client_params();
                p.distinguished_name
                    .push(DnType::CommonName, format!("{CN}{i}"));
                p.not_before = days(-30);
                p.not_after = days(-1);
                pki.issue(p)
            };
            let r = try_mail(&gw, &pki, &forged);
            assert!(
                r.is_err() || r.as_ref().is_ok_and(|r| r.0 == 530),
                "verify {verify}: {r:?}"
            );
        }
        assert_eq!(facts_cached(&gw), 1, "verify {verify}\n{}", gw.log());
        // Another genuine certificate is remembered beside the first.
        let _ = try_mail(&gw, &pki, &pki.client("ROE.JANE.2"));
        assert_eq!(facts_cached(&gw), 2, "verify {verify}");
    }
}

/// A client certificate for `cn` with serial -0x1234, issued by `pki`'s CA with OpenSSL
/// (rcgen always encodes serials as positive).
fn openssl_negative_serial(pki: &Pki, cn: &str) -> ClientCert {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), pki.ca_pem()).unwrap();
    std::fs::write(d.join("ca.key"), pki.ca.key.serialize_pem()).unwrap();
    std::fs::write(d.join("ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let openssl = |args: &[&str]| {
        postern_tests::openssl_ca::openssl(d, args).unwrap();
    };
    let subj = format!("/CN={cn}");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        &subj,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "-4660",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "client.pem",
    ]);
    ClientCert {
        chain_pem: std::fs::read_to_string(d.join("client.pem")).unwrap(),
        key_pem: std::fs::read_to_string(d.join("client.key")).unwrap(),
    }
}
