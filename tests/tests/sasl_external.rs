//! Issue 19, item 3: `AUTH EXTERNAL` (RFC 4422 appendix A, RFC 4954) end to end. A session
//! whose DoD-shaped PIV certificate (made with openssl) is mapped by slapd sees `EXTERNAL`
//! in EHLO's AUTH list and authenticates with it: msmtp (`auth external` with
//! `tls_cert_file`/`tls_key_file`), and Python smtplib with a custom mechanism for the
//! authorization-identity cases (its own user id: `235`; another user's: `535 5.7.8`). A
//! session without a certificate is offered no EXTERNAL and is refused it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_config::{AuthBackend, AuthProfile, CertificateAuth, ListenerTls, SmtpAuth, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::cac::{CacPki, CardCert};
use postern_tests::clients::{Run, python};
use postern_tests::gateway::{listener, policy, single, start_gateway};
use postern_tests::openssl_ca::Issued;
use postern_tests::slapd::{self, Slapd, SlapdOptions};

const CN: &str = "DOE.JOHN.Q.1234567890";
const EDIPI: &str = "1234567890";

fn ldap() -> AuthBackend {
    AuthBackend::Ldap {
        ldap_profile: "corp".into(),
    }
}

fn start(pki: &CacPki, slapd: &Slapd, dir: &Path) -> (Gateway, u16, PathBuf, Sink) {
    let sink = Sink::start(&[]).unwrap();
    let server_ca = Ca::long_lived("Gateway CA");
    let server = server_ca.localhost_server();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(ListenerTls {
        certificate_chain_pem: server.cert_pem.clone(),
        private_key_pem: server.key_pem.clone(),
        client_ca_pem: Some(pki.ca_bundle_pem()),
        allow_version1_client_certificates: false,
    });
    // Procedure C's shape: certificate, with SMTP AUTH as the fallback (so AUTH is offered).
    let profile = AuthProfile {
        certificate: Some(CertificateAuth {
            backend: ldap(),
            required_policies: Vec::new(),
            required_ekus: Vec::new(),
        }),
        smtp_auth: Some(SmtpAuth {
            profile: "ldap-auth".into(),
            backend: ldap(),
            allowance: None,
            throttle: Default::default(),
        }),
    };
    let mut config = single(
        l,
        policy(TlsMode::Required, false, true, false),
        Some(profile),
    );
    let mut p = slapd::ldap_profile(&[slapd.url()]);
    if let Some(q) = p.certificate_auth_query.as_mut() {
        q.filter = "(employeeNumber={edipi})".into();
    }
    config.ldap_profiles.insert("corp".into(), p);
    let gw = start_gateway(&config).unwrap();
    let ca = server_ca.write(dir, "server-ca").unwrap();
    (gw, port, ca, sink)
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
    use std::io::Write;
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
    let dir = tempfile::tempdir().unwrap();
    let pki = CacPki::new(dir.path()).unwrap();
    let piv = pki
        .card(
            CardCert::PivAuth,
            CN,
            EDIPI,
            "john.q.doe.civ@mail.mil",
            "0x2A01",
        )
        .unwrap();
    let ldif = format!(
        "{}dn: uid=jdoe,ou=people,{base}\nobjectClass: inetOrgPerson\n\
         cn: {CN}\nsn: Doe\nuid: jdoe\nemployeeNumber: {EDIPI}\n\n",
        slapd::directory_ldif(),
        base = slapd::BASE_DN,
    );
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(ldif),
        ..SlapdOptions::default()
    })
    .unwrap();
    let (gw, port, ca, sink) = start(&pki, &slapd, dir.path());

    // msmtp: `auth external` with the card's PIV certificate; `user` is the authorization
    // identity msmtp sends after the `334` (without it, msmtp sends no response at all).
    let r = msmtp(dir.path(), port, &ca, &piv);
    assert_eq!(r.code, 0, "{}", r.output);
    assert!(r.has("AUTH EXTERNAL") && r.has("235 2.7.0"), "{}", r.output);
    let m = sink.wait_for(1, Duration::from_secs(5));
    assert!(m[0].message.contains("jdoe"), "{}", m[0].message);

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
