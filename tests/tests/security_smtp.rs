//! Hostile SMTP clients against the real `postern-gateway` binary (Static backend: the
//! SMTP engine is the point here, not the directory): STARTTLS command injection, AUTH
//! before TLS, empty and NUL passwords, open-relay attempts, and header injection into
//! the `Received` header.

use postern_config::TlsMode;
use postern_tests::gate::{
    Client, Hop, HopMode, Pki, config, policy, start_gateway, static_profile,
};

/// Plaintext pipelined after STARTTLS (an AUTH and a MAIL an attacker on the path slipped
/// in) is discarded: after the handshake the session is fresh and unauthenticated.
#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let pki = Pki::new("Injection CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Preferred, false, true, false),
            static_profile(false, true),
        ),
        &[],
    )
    .unwrap();
    let mut c = Client::connect(gw.addr()).unwrap();
    assert_eq!(c.cmd("EHLO client.test").unwrap().0, 250);
    // One write: STARTTLS plus commands in the clear (AUTH as frank, MAIL, RCPT).
    c.send(
        b"STARTTLS\r\nAUTH PLAIN AGZyYW5rAGZyYW5rcHc=\r\nMAIL FROM:<evil@attacker.test>\r\n\
          RCPT TO:<victim@outside.test>\r\n",
    )
    .unwrap();
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 220, "{text}");
    c.tls(&pki.ca_pem(), None).unwrap();
    // Had the injected commands run, their replies (235, 250, 250) would come first.
    let (code, text) = c.cmd("EHLO client.test").unwrap();
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("AUTH"), "{text}");
    let (code, text) = c.cmd("RCPT TO:<victim@outside.test>").unwrap();
    assert_eq!(code, 503, "no transaction may survive STARTTLS: {text}");
    let (code, text) = c.cmd("MAIL FROM:<evil@attacker.test>").unwrap();
    assert_eq!(code, 530, "the injected AUTH must not count: {text}");
    assert!(text.starts_with("530 5.7.0"), "{text}");
    gw.wait_log(
        "plaintext pipelined after STARTTLS",
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert!(hop.messages().is_empty());
}

/// "Require TLS to offer SMTP AUTH": AUTH is not advertised and is refused with
/// `538 5.7.11` before STARTTLS; with `tls: Required`, AUTH and MAIL get `530 5.7.0`.
#[test]
fn auth_before_tls_is_refused() {
    let pki = Pki::new("Auth CA");
    let hop = Hop::start(HopMode::Accept);

    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Preferred, false, true, true),
            static_profile(false, true),
        ),
        &[],
    )
    .unwrap();
    let mut c = Client::connect(gw.addr()).unwrap();
    let (_, ehlo) = c.cmd("EHLO client.test").unwrap();
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let (code, text) = c.auth_plain(b"frank", b"frankpw").unwrap();
    assert!(text.starts_with("538 5.7.11"), "{code} {text}");
    let (_, text) = c.cmd("AUTH LOGIN").unwrap();
    assert!(text.starts_with("538 5.7.11"), "{text}");
    let (_, text) = c.cmd("MAIL FROM:<frank@example.org>").unwrap();
    assert!(text.starts_with("530 5.7.0"), "{text}");
    // The same credentials are fine once TLS is up (the setup is right).
    c.starttls(&pki.ca_pem(), None).unwrap();
    let (_, ehlo) = c.cmd("EHLO client.test").unwrap();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert_eq!(c.auth_plain(b"frank", b"frankpw").unwrap().0, 235);
    drop(gw);

    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Required, false, true, false),
            static_profile(false, true),
        ),
        &[],
    )
    .unwrap();
    let mut c = Client::connect(gw.addr()).unwrap();
    let (_, ehlo) = c.cmd("EHLO client.test").unwrap();
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let (_, text) = c.auth_plain(b"frank", b"frankpw").unwrap();
    assert!(text.starts_with("530 5.7.0"), "{text}");
    let (_, text) = c.cmd("MAIL FROM:<frank@example.org>").unwrap();
    assert!(text.starts_with("530 5.7.0"), "{text}");
    assert!(hop.messages().is_empty());
}

/// Empty passwords, NUL inside the password or user name, an empty SASL response and a
/// cancelled exchange never authenticate; the session stays unauthenticated.
#[test]
fn empty_and_nul_passwords_never_authenticate() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let plain = |u: &[u8], p: &[u8]| [&[0u8][..], u, &[0], p].concat();
    let pki = Pki::new("Password CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Required, false, true, false),
            static_profile(false, true),
        ),
        &[],
    )
    .unwrap();
    let session = || {
        let mut c = Client::connect(gw.addr()).unwrap();
        c.cmd("EHLO client.test").unwrap();
        c.starttls(&pki.ca_pem(), None).unwrap();
        c.cmd("EHLO client.test").unwrap();
        c
    };
    let refused = |r: (u16, String), what: &str| {
        assert!(
            r.0 == 535 || r.0 == 501,
            "{what} must be refused with 535 or 501, got {r:?}"
        );
    };
    // A fresh session per attempt: the third failure in one session ends it (below).
    let attempts: [(&str, Vec<u8>); 9] = [
        ("empty password", plain(b"frank", b"")),
        (
            "password with a trailing NUL",
            plain(b"frank", b"frankpw\0"),
        ),
        ("password with a leading NUL", plain(b"frank", b"\0frankpw")),
        ("user with a NUL", plain(b"frank\0", b"frankpw")),
        ("empty user and password", plain(b"", b"")),
        ("someone else's password", plain(b"frank", b"carolpw")),
        ("two NULs only", b"\0\0".to_vec()),
        ("authzid of another user", b"carol\0frank\0frankpw".to_vec()),
        ("three NULs", b"\0frank\0frankpw\0".to_vec()),
    ];
    for (what, raw) in attempts {
        let mut c = session();
        refused(c.cmd(&format!("AUTH PLAIN {}", b64(&raw))).unwrap(), what);
        let (_, text) = c.cmd("MAIL FROM:<frank@example.org>").unwrap();
        assert!(
            text.starts_with("530 5.7.0"),
            "{what}: still unauthenticated: {text}"
        );
    }
    // carol may not use AUTH (allowance Reject): the same 525 for her own password and for
    // someone else's, so the reply never says whether a password was right.
    for pw in [&b"carolpw"[..], b"frankpw"] {
        let mut c = session();
        let (code, text) = c
            .cmd(&format!("AUTH PLAIN {}", b64(&plain(b"carol", pw))))
            .unwrap();
        assert_eq!(
            (code, text.as_str()),
            (
                525,
                "525 5.7.13 Dear user, please use your CAC to send email."
            ),
            "carol with {pw:?}"
        );
        let (_, text) = c.cmd("MAIL FROM:<carol@example.org>").unwrap();
        assert!(text.starts_with("530 5.7.0"), "{text}");
    }
    let mut c = session();
    refused(c.cmd("AUTH PLAIN =").unwrap(), "empty initial response");
    refused(c.cmd("AUTH PLAIN !!notbase64!!").unwrap(), "invalid base64");
    let mut c = session();
    // AUTH LOGIN with an empty password line.
    assert_eq!(c.cmd("AUTH LOGIN").unwrap().0, 334);
    assert_eq!(c.cmd(&b64(b"frank")).unwrap().0, 334);
    refused(c.cmd("").unwrap(), "LOGIN with an empty password");
    // A cancelled exchange.
    assert_eq!(c.cmd("AUTH PLAIN").unwrap().0, 334);
    let (code, text) = c.cmd("*").unwrap();
    assert_eq!(code, 501, "{text}");
    // Guessing is bounded: the third failure (535) is followed by 421 and the close.
    let mut c = session();
    for _ in 0..3 {
        assert_eq!(c.auth_plain(b"frank", b"guess").unwrap().0, 535);
    }
    let (_, text) = c.reply().unwrap();
    assert!(text.starts_with("421 4.7.0"), "{text}");
    assert!(c.cmd("NOOP").is_err(), "the session must be closed");

    // The right password works (the refusals above were about the password).
    let mut c = session();
    let (code, text) = c.auth_plain(b"frank", b"frankpw").unwrap();
    assert_eq!(code, 235, "{text}");
    assert!(hop.messages().is_empty());
}

/// With `requireSmtpAuth`, an unauthenticated client relays nothing: MAIL is refused with
/// `530 5.7.0` (also with a forged `AUTH=` parameter), RCPT and DATA find no transaction.
#[test]
fn no_open_relay_without_authentication() {
    let pki = Pki::new("Relay CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Preferred, false, true, false),
            static_profile(false, true),
        ),
        &[],
    )
    .unwrap();
    for tls in [false, true] {
        let mut c = Client::connect(gw.addr()).unwrap();
        c.cmd("EHLO relay.attacker.test").unwrap();
        if tls {
            c.starttls(&pki.ca_pem(), None).unwrap();
            c.cmd("EHLO relay.attacker.test").unwrap();
        }
        for mail in [
            "MAIL FROM:<spam@attacker.test>",
            "MAIL FROM:<spam@attacker.test> AUTH=<frank@example.org>",
            "MAIL FROM:<>",
        ] {
            let (_, text) = c.cmd(mail).unwrap();
            assert!(text.starts_with("530 5.7.0"), "tls={tls} {mail}: {text}");
        }
        let (code, text) = c.cmd("RCPT TO:<victim@outside.test>").unwrap();
        assert!(code == 503 || code == 530, "tls={tls} RCPT: {text}");
        let (code, text) = c.cmd("DATA").unwrap();
        assert!(code == 503 || code == 530, "tls={tls} DATA: {text}");
        // A wrong password does not open the relay either.
        if tls {
            assert_eq!(c.auth_plain(b"frank", b"guess").unwrap().0, 535);
            let (_, text) = c.cmd("MAIL FROM:<spam@attacker.test>").unwrap();
            assert!(text.starts_with("530 5.7.0"), "{text}");
        }
    }
    assert!(hop.messages().is_empty(), "{:?}", hop.messages());
}

/// Nothing the client says can add a header line or break out of the `Received` header:
/// EHLO names with bare CR/LF, parentheses, semicolons and header-like text.
#[test]
fn received_header_cannot_be_injected() {
    let pki = Pki::new("Header CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(
        &config(
            &pki,
            hop.addr,
            policy(TlsMode::Preferred, false, true, false),
            static_profile(false, true),
        ),
        &[],
    )
    .unwrap();
    let helos: [&[u8]; 4] = [
        b"EHLO evil\rX-Injected: bare-cr\r\n",
        b"EHLO evil\nX-Injected: bare-lf\r\n",
        b"EHLO a) by forged.test (x; X-Injected: paren\r\n",
        b"EHLO evil\x00X-Injected:nul\r\n",
    ];
    let mut delivered = 0;
    for helo in helos {
        let mut c = Client::connect(gw.addr()).unwrap();
        greet(&mut c, helo);
        c.starttls(&pki.ca_pem(), None).unwrap();
        greet(&mut c, helo);
        assert_eq!(c.auth_plain(b"frank", b"frankpw").unwrap().0, 235);
        let (code, text) = c
            .send_mail(
                "frank@example.org",
                "someone@example.net",
                "Subject: hi\r\n\r\nbody\r\n",
            )
            .unwrap();
        assert_eq!(code, 250, "{text}");
        delivered += 1;
        c.cmd("QUIT").unwrap();
    }
    let msgs = hop.messages();
    assert_eq!(msgs.len(), delivered);
    for m in msgs {
        let head = m.split("\r\n\r\n").next().unwrap();
        // Header lines: Received (with continuation lines), the gateway's identity
        // header (the session authenticated), then Subject only.
        let starts: Vec<&str> = head
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .collect();
        assert_eq!(starts.len(), 3, "{head:?}");
        assert!(starts[0].starts_with("Received: "), "{head:?}");
        assert_eq!(
            starts[1], "X-Postern-Authenticated-User: user=frank; method=PLAIN",
            "{head:?}"
        );
        assert_eq!(starts[2], "Subject: hi", "{head:?}");
        assert!(!head.contains("X-Injected:"), "{head:?}");
        assert!(!head.contains("by forged.test"), "{head:?}");
        assert!(!head.contains('\0') && !head.replace("\r\n", "").contains(['\r', '\n']));
    }
}

/// Send a hostile EHLO followed by NOOP; read every reply up to the NOOP's. When no EHLO
/// was accepted (the hostile one refused, or split into two lines by a bare LF and the
/// second refused), greet normally. A bare LF ends a command line here like in Postfix,
/// so `EHLO evil\nX-Injected: ...` is two commands; what matters is what reaches headers.
fn greet(c: &mut Client, helo: &[u8]) {
    c.send(&[helo, b"NOOP\r\n"].concat()).unwrap();
    let mut greeted = false;
    loop {
        let (code, text) = c.reply().unwrap();
        if code == 250 && !text.contains('\n') {
            break; // the NOOP
        }
        assert!(
            code == 250 || (500..=501).contains(&code),
            "{helo:?} -> {text}"
        );
        greeted |= code == 250;
    }
    if !greeted {
        assert_eq!(c.cmd("EHLO fallback.test").unwrap().0, 250);
    }
}
