//! Security issue 12, item 10: issuer binding of certificate queries, end to end.
//!
//! The attack: a Listener trusts two CAs (the example CA and a partner CA). The partner CA
//! issues a certificate that repeats alice's CN and serial number. With the appliance
//! manual's filter `(&(caccn={cn})(cacserial={sn}))` the real gateway maps it to alice and
//! relays as her; `postern plan` and `postern render` warn about exactly that. With the
//! issuer-bound filter the examples ship (`(cacissuer={issuer})` added; the example
//! directory stores each user's issuer DN), the forged certificate maps to nobody (`530`
//! at MAIL) while alice's own certificate still works — and nothing is warned.
//!
//! Real components: `postern render`/`plan` on a copy of examples/certificate-only,
//! `postern-gateway --config`, slapd with examples/ldap, certificates made with openssl,
//! swaks, smtp-sink.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postern_config::GatewayConfig;
use postern_testkit::gateway::Gateway;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_testkit::workspace::workspace_bin;
use postern_tests::clients::{Run, swaks};
use postern_tests::gateway::start_gateway;
use postern_tests::openssl_ca::openssl;
use postern_tests::slapd::{Slapd, SlapdOptions};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn pki(name: &str) -> String {
    examples().join("pki").join(name).display().to_string()
}

/// alice's CAC as the example directory knows it (examples/ldap/users.ldif).
const ALICE_CN: &str = "ANDERSON.ALICE.A.1000000001";
const ALICE_SERIAL: &str = "1A2B3C4D5E6F7081";

/// A partner CA and, from it, a certificate with alice's CN and serial number.
fn forge(dir: &Path) -> (String, String, String) {
    let ossl = |args: &[&str]| openssl(dir, args).unwrap();
    ossl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "partner.key",
    ]);
    ossl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "partner.key",
        "-out",
        "partner.crt",
        "-days",
        "3650",
        "-subj",
        "/O=Partner/CN=Partner Issuing CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    ossl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "forged.key",
    ]);
    ossl(&[
        "req",
        "-new",
        "-key",
        "forged.key",
        "-out",
        "forged.csr",
        "-subj",
        &format!("/O=Example/CN={ALICE_CN}"),
    ]);
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "forged.csr",
        "-CA",
        "partner.crt",
        "-CAkey",
        "partner.key",
        "-set_serial",
        &format!("0x{ALICE_SERIAL}"),
        "-days",
        "365",
        "-extfile",
        "client.ext",
        "-out",
        "forged.crt",
    ]);
    let serial = ossl(&["x509", "-in", "forged.crt", "-noout", "-serial"]);
    assert_eq!(serial.trim(), format!("serial={ALICE_SERIAL}"));
    let partner = std::fs::read_to_string(dir.join("partner.crt")).unwrap();
    (
        partner,
        dir.join("forged.crt").display().to_string(),
        dir.join("forged.key").display().to_string(),
    )
}

/// examples/certificate-only in `dir`, with the partner CA added to the Listener's client
/// CA bundle, and the certificate query's filter as given.
fn manifests(dir: &Path, partner_pem: &str, filter: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(examples().join("certificate-only")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let secrets = std::fs::read_to_string(dir.join("secrets.yaml")).unwrap();
    let ca = std::fs::read_to_string(examples().join("pki/ca.crt")).unwrap();
    let last = format!("    {}\n", ca.trim_end().lines().last().unwrap());
    let at = secrets.rfind(&last).expect("the CA in cac-roots") + last.len();
    let partner: String = partner_pem.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        dir.join("secrets.yaml"),
        format!("{}{partner}{}", &secrets[..at], &secrets[at..]),
    )
    .unwrap();
    let profile = std::fs::read_to_string(dir.join("ldap-profile.yaml")).unwrap();
    let shipped =
        "filter: (&(objectClass=posixAccount)(caccn={cn})(cacserial={sn})(cacissuer={issuer}))";
    assert!(profile.contains(shipped), "{profile}");
    std::fs::write(
        dir.join("ldap-profile.yaml"),
        profile.replace(shipped, &format!("filter: {filter}")),
    )
    .unwrap();
}

fn postern(args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(workspace_bin("postern").unwrap())
        .args(args)
        .arg("-f")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success() || out.status.code() == Some(2),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Running {
    _slapd: Slapd,
    sink: Sink,
    gw: Gateway,
    port: u16,
}

/// `postern render` of `dir`, run against slapd with the example directory.
fn run(dir: &Path) -> Running {
    let out = dir.join("rendered.yaml");
    let (ok, _, err) = postern(&["render", "-o", &out.display().to_string()], dir);
    assert!(ok, "postern render: {err}");
    let mut config = GatewayConfig::load(&out).unwrap();
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(std::fs::read_to_string(examples().join("ldap/users.ldif")).unwrap()),
        schema: Some(std::fs::read_to_string(examples().join("ldap/cac.schema")).unwrap()),
        ..Default::default()
    })
    .unwrap();
    let sink = Sink::start(&[]).unwrap();
    for p in config.ldap_profiles.values_mut() {
        p.servers = vec![slapd.url()];
    }
    let port = free_port();
    let l = config.listeners.get_mut("submission").unwrap();
    l.port = port;
    l.next_hop.port = sink.port;
    let gw = start_gateway(&config).unwrap();
    Running {
        _slapd: slapd,
        sink,
        gw,
        port,
    }
}

impl Running {
    fn send_with(&self, cert: &str, key: &str) -> Run {
        let ca = pki("ca.crt");
        swaks(
            self.port,
            &[
                "--tls",
                "--tls-ca-path",
                &ca,
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--from",
                "sender@example.org",
                "--to",
                "rcpt@example.net",
            ],
        )
        .unwrap()
    }
}

#[test]
fn a_certificate_from_another_trusted_ca_does_not_map_to_the_user_it_imitates() {
    let tmp = tempfile::tempdir().unwrap();
    let (partner, forged_crt, forged_key) = forge(tmp.path());

    // 1. The manual's filter: plan and render warn, and the attack works.
    let weak = tmp.path().join("weak");
    manifests(
        &weak,
        &partner,
        "(&(objectClass=posixAccount)(caccn={cn})(cacserial={sn}))",
    );
    let (ok, _, err) = postern(&["plan"], &weak);
    assert!(ok, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("IssuerNotBound"))
        .unwrap_or_else(|| panic!("no IssuerNotBound warning:\n{err}"));
    assert!(warning.starts_with("warning: "), "{warning}");
    assert!(
        warning.contains("LdapProfile/corp-ldap: spec.certificateAuthQuery.filter:")
            && warning.contains("Listener \"submission\" trusts 2 CA certificates"),
        "{warning}"
    );
    let r = run(&weak);
    let forged = r.send_with(&forged_crt, &forged_key);
    assert!(
        forged.has("250 2.0.0 Ok"),
        "the attack this guards against no longer reproduces: {}",
        forged.output
    );
    let d = r.gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "authenticated"
            && v["user"] == "alice"
            && v["cert_issuer"]
                .as_str()
                .is_some_and(|i| i.contains("Partner"))),
        "{d:?}"
    );
    drop(r);

    // 2. The issuer-bound filter of the examples: no warning, the forgery maps to nobody,
    //    alice's own certificate still works.
    let bound = tmp.path().join("bound");
    manifests(
        &bound,
        &partner,
        "(&(objectClass=posixAccount)(caccn={cn})(cacserial={sn})(cacissuer={issuer}))",
    );
    let (ok, _, err) = postern(&["plan"], &bound);
    assert!(ok, "{err}");
    assert!(!err.contains("IssuerNotBound"), "{err}");
    let r = run(&bound);
    let forged = r.send_with(&forged_crt, &forged_key);
    assert!(forged.has("530 5.7.0"), "{}", forged.output);
    assert!(!forged.has("250 2.0.0 Ok"), "{}", forged.output);
    let alice = r.send_with(&pki("alice.crt"), &pki("alice.key"));
    assert!(alice.has("250 2.0.0 Ok"), "{}", alice.output);
    let relayed = r.sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(relayed.len(), 1);
    assert!(
        relayed[0].message.contains("alice"),
        "{}",
        relayed[0].message
    );
    let d = r.gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "not_authenticated"
            && v["cert_issuer"]
                .as_str()
                .is_some_and(|i| i.contains("Partner"))),
        "{d:?}"
    );
}
