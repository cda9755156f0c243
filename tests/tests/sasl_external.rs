//! Issue 19, item 3: `AUTH EXTERNAL` (RFC 4422 appendix A, RFC 4954) end to end. A session
//! whose DoD-shaped PIV certificate (made with openssl) is mapped by slapd sees `EXTERNAL`
//! in EHLO's AUTH list and authenticates with it: msmtp (`auth external` with
//! `tls_cert_file`/`tls_key_file`), and Python smtplib with a custom mechanism for the
//! authorization-identity cases (its own user id: `235`; another user's: `535 5.7.8`). A
//! session without a certificate is offered no EXTERNAL and is refused it. While the
//! directory is down EXTERNAL answers `454 4.7.0` (temporary), and the same session
//! authenticates once it is back.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_config::TlsMode;
use postern_tests::cac::{CacPki, CardCert};
use postern_tests::cac_gateway::{self, CacGateway, JOHN_CN, JOHN_EDIPI, JOHN_EMAIL, john_ldif};
use postern_tests::clients::{Run, python};
use postern_tests::gateway::policy;
use postern_tests::openssl_ca::Issued;
use postern_tests::slapd::{Slapd, SlapdOptions};

/// John Doe's PIV authentication certificate, and slapd with his entry.
fn john() -> (tempfile::TempDir, CacPki, Issued, Slapd) {
    let dir = tempfile::tempdir().unwrap();
    let pki = CacPki::new(dir.path()).unwrap();
    let piv = pki
        .card(CardCert::PivAuth, JOHN_CN, JOHN_EDIPI, JOHN_EMAIL, "0x2A01")
        .unwrap();
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(john_ldif()),
        ..SlapdOptions::default()
    })
    .unwrap();
    (dir, pki, piv, slapd)
}

fn start(pki: &CacPki, slapd: &Slapd, dir: &Path) -> CacGateway {
    // Procedure C's shape: certificate, with SMTP AUTH as the fallback (so AUTH is offered).
    let profile = cac_gateway::certificate_with_auth_fallback();
    cac_gateway::start(
        pki,
        slapd,
        dir,
        profile,
        policy(TlsMode::Required, false, true, false),
    )
}

fn msmtp(dir: &Path, port: u16, ca: &Path, cert: &Issued) -> Run {
    let rc = dir.join("msmtprc");
    std::fs::write(
        &rc,
        format!(
            "account gw\nhost 127.0.0.1\nport {port}\nfrom john.q.doe.civ@mail.mil\n\
             tls on\ntls_starttls on\ntls_trust_file {}\ntls_cert_file {}\ntls_key_file {}\n\
             auth external\nuser jdoe\n",
            ca.display(),
            cert.cert.display(),
            cert.key.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&rc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&rc, perms).unwrap();
    let mut child = Command::new("msmtp")
        .args([
            "-v",
            "-C",
            rc.to_str().unwrap(),
            "-a",
            "gw",
            "rcpt@example.net",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("msmtp is installed (Debian msmtp)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: external\r\n\r\nvia AUTH EXTERNAL\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// smtplib: STARTTLS (with `cert`, if any), EHLO, AUTH EXTERNAL with `authzid` (the empty
/// one as `AUTH EXTERNAL =`, RFC 4954's empty initial response).
fn smtplib(port: u16, ca: &Path, cert: Option<&Issued>, authzid: &str) -> Run {
    let load = cert
        .map(|c| {
            format!(
                "ctx.load_cert_chain({:?}, {:?})",
                c.cert.display().to_string(),
                c.key.display().to_string()
            )
        })
        .unwrap_or_default();
    python(&format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
{load}
s = smtplib.SMTP("127.0.0.1", {port}, timeout=15)
s.starttls(context=ctx)
s.ehlo("py.client")
print("EHLO-AUTH", s.esmtp_features.get("auth", "").strip())
try:
    if {authzid:?} == "":
        code, msg = s.docmd("AUTH", "EXTERNAL =")
    else:
        code, msg = s.auth("EXTERNAL", lambda challenge=None: {authzid:?})
    print("REPLY", code, msg.decode())
except smtplib.SMTPAuthenticationError as e:
    print("REPLY", e.smtp_code, e.smtp_error.decode())
s.quit()
"#,
        ca = ca.display().to_string(),
    ))
    .unwrap()
}

#[test]
fn external_authenticates_as_the_certificates_user() {
    let (dir, pki, piv, slapd) = john();
    let CacGateway {
        gw,
        port,
        server_ca: ca,
        sink,
    } = start(&pki, &slapd, dir.path());

    // msmtp: `auth external` with the card's PIV certificate; `user` is the authorization
    // identity msmtp sends after the `334` (without it, msmtp sends no response at all).
    let r = msmtp(dir.path(), port, &ca, &piv);
    assert_eq!(r.code, 0, "{}", r.output);
    assert!(r.has("AUTH EXTERNAL") && r.has("235 2.7.0"), "{}", r.output);
    let m = sink.wait_for(1, Duration::from_secs(5));
    assert!(
        m[0].message.contains("authenticated as jdoe by EXTERNAL"),
        "{}",
        m[0].message
    );

    // smtplib: EXTERNAL offered; the user's own authzid works, another's does not.
    let r = smtplib(port, &ca, Some(&piv), "jdoe");
    assert!(r.has("EHLO-AUTH PLAIN LOGIN EXTERNAL"), "{}", r.output);
    assert!(r.has("REPLY 235"), "{}", r.output);
    let r = smtplib(port, &ca, Some(&piv), "");
    assert!(r.has("REPLY 235"), "{}", r.output);
    let r = smtplib(port, &ca, Some(&piv), "alice");
    assert!(r.has("REPLY 535"), "{}", r.output);
    // No certificate: not offered, and refused when asked for anyway.
    let r = smtplib(port, &ca, None, "jdoe");
    assert!(r.has("EHLO-AUTH PLAIN LOGIN\n"), "{}", r.output);
    assert!(r.has("REPLY 535"), "{}", r.output);

    let d = gw.decisions();
    let auth: Vec<_> = d.iter().filter(|v| v["decision"] == "auth").collect();
    assert_eq!(
        auth.iter()
            .filter(|v| v["outcome"] == "authenticated" && v["user"] == "jdoe")
            .count(),
        3,
        "{auth:?}"
    );
    assert!(
        auth.iter().any(|v| v["outcome"] == "foreign_authzid"),
        "{auth:?}"
    );
    assert!(
        auth.iter().any(|v| v["outcome"] == "invalid"
            && v["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("no valid client certificate")),
        "{auth:?}"
    );
}

#[test]
fn external_while_the_directory_is_down_is_454_and_the_session_recovers() {
    let (dir, pki, piv, mut slapd) = john();
    let CacGateway {
        gw,
        port,
        server_ca: ca,
        sink: _sink,
    } = start(&pki, &slapd, dir.path());
    slapd.stop();

    // One session: the handshake's mapping finds no directory; EXTERNAL asks again (454
    // while it is down), and succeeds in the same session once it is back.
    let mut client = Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile={ca:?})
ctx.load_cert_chain({cert:?}, {key:?})
s = smtplib.SMTP("127.0.0.1", {port}, timeout=15)
s.starttls(context=ctx)
s.ehlo("py.client")
for _ in range(2):
    code, msg = s.docmd("AUTH", "EXTERNAL =")
    print("REPLY", code, msg.decode(), flush=True)
    sys.stdin.readline()
s.quit()
"#,
            ca = ca.display().to_string(),
            cert = piv.cert.display().to_string(),
            key = piv.key.display().to_string(),
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut stdin = client.stdin.take().unwrap();
    let mut replies = BufReader::new(client.stdout.take().unwrap()).lines();
    let first = replies.next().unwrap().unwrap();
    assert!(first.starts_with("REPLY 454 4.7.0"), "{first}");
    slapd.start_again().unwrap();
    stdin.write_all(b"\n").unwrap();
    let second = replies.next().unwrap().unwrap();
    assert!(second.starts_with("REPLY 235 2.7.0"), "{second}");
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    assert!(client.wait().unwrap().success());

    let d = gw.decisions();
    let external: Vec<_> = d
        .iter()
        .filter(|v| {
            v["decision"] == "auth" && v["reason"].as_str().unwrap_or("").contains("EXTERNAL")
        })
        .collect();
    assert!(
        external.iter().any(|v| v["outcome"] == "temp_fail"),
        "{external:?}"
    );
    assert!(
        external
            .iter()
            .any(|v| v["outcome"] == "authenticated" && v["user"] == "jdoe"),
        "{external:?}"
    );
}
