//! LDAP-backed authentication through the real gateway binary and a real slapd: filter
//! injection through SMTP AUTH user names and certificate common names, empty and NUL
//! passwords, and directory user ids full of metacharacters reaching the `Received`
//! header. (The directory client's own tests cover the same strings one layer down.)

use postern_config::TlsMode;
use postern_tests::gate::{
    Client, ClientCert, Hop, HopMode, Pki, client_params, config, ldap_auth_profile, policy,
    start_gateway,
};
use postern_tests::slapd::{self, Slapd, SlapdOptions};
use rcgen::{DnType, SerialNumber};

fn cert(pki: &Pki, cn: &str, serial: &[u8]) -> ClientCert {
    let mut p = client_params();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from_slice(serial));
    pki.issue(p)
}

#[test]
fn ldap_injection_and_empty_passwords_through_the_gateway() {
    let slapd = Slapd::start(SlapdOptions::default()).unwrap();
    let pki = Pki::new("CAC CA");
    let hop = Hop::start(HopMode::Accept);
    let mut cfg = config(
        &pki,
        hop.addr,
        policy(TlsMode::Preferred, false, true, false),
        ldap_auth_profile(),
    );
    cfg.ldap_profiles
        .insert("corp".into(), slapd::ldap_profile(&[slapd.url()]));
    let gw = start_gateway(&cfg, &[]).unwrap();
    let session = |cert: Option<&ClientCert>| {
        let mut c = Client::connect(gw.addr()).unwrap();
        c.cmd("EHLO client.test").unwrap();
        c.starttls(&pki.ca_pem(), cert).unwrap();
        c.cmd("EHLO client.test").unwrap();
        c
    };
    let frank = slapd::FRANK.password.as_bytes();
    let nul_pw = [frank, b"\0"].concat();
    let attempts: [(&[u8], &[u8]); 9] = [
        (b"frank", b""),
        (b"frank", &nul_pw),
        (b"", b""),
        (b"*", frank),
        (b"*)(uid=*", frank),
        (b"frank)(uid=*", frank),
        (b"fr*", frank),
        (b"frank\0", frank),
        (b"frank)(|(objectClass=*)", frank),
    ];
    for (user, pw) in attempts {
        let mut c = session(None);
        let (code, text) = c.auth_plain(user, pw).unwrap();
        assert!(
            code == 535 || code == 501,
            "{user:?}/{pw:?}: {text}\n{}",
            gw.log()
        );
        let (_, text) = c.cmd("MAIL FROM:<x@example.org>").unwrap();
        assert!(text.starts_with("530 5.7.0"), "{user:?}: {text}");
    }
    // Escaping is exact: the user whose uid is made of metacharacters gets in as itself,
    // and its uid reaches the Received header defanged.
    let mut c = session(None);
    let (code, text) = c
        .auth_plain(slapd::ODD.uid.as_bytes(), slapd::ODD.password.as_bytes())
        .unwrap();
    assert_eq!(code, 235, "{text}\n{}", gw.log());
    let (code, text) = c
        .send_mail(
            "odd@example.org",
            "a@example.net",
            "Subject: odd\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert_eq!(code, 250, "{text}");
    let m = hop.messages().pop().unwrap();
    let head = m.split("\r\n\r\n").next().unwrap();
    let starts: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .collect();
    // Received, the gateway's identity header (defanged the same way), Subject.
    assert_eq!(starts.len(), 3, "{head}");
    assert!(
        starts[1].starts_with("X-Postern-Authenticated-User: user="),
        "{head}"
    );
    assert!(
        !head.contains("(dd)") && !head.contains('*') && !head.contains('\\'),
        "{head}"
    );

    // Certificates: the genuine one maps to alice; CNs made to widen the filter map nobody.
    let alice_serial = [0x1A, 0x2B, 0x3C, 0x4D];
    let mut c = session(Some(&cert(&pki, "DOE.ALICE.1000000001", &alice_serial)));
    let (code, text) = c.cmd("MAIL FROM:<alice@example.org>").unwrap();
    assert_eq!(code, 250, "{text}\n{}", gw.log());
    for cn in [
        "*",
        "DOE.ALICE.*",
        "DOE.ALICE.1000000001)(|(caccn=*",
        "*)(caccn=*",
        "DOE.ALICE.1000000001\\",
    ] {
        let mut c = session(Some(&cert(&pki, cn, &alice_serial)));
        let (_, text) = c.cmd("MAIL FROM:<alice@example.org>").unwrap();
        assert!(text.starts_with("530 5.7.0"), "CN {cn:?}: {text}");
    }
    // Alice's CN with another serial maps nobody either.
    let mut c = session(Some(&cert(&pki, "DOE.ALICE.1000000001", &[0x1A, 0x2B])));
    let (_, text) = c.cmd("MAIL FROM:<alice@example.org>").unwrap();
    assert!(text.starts_with("530 5.7.0"), "{text}");
}
