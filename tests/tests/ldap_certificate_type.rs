//! Issue 19, item 2: certificate-type gating end to end. A DoD-shaped card made with
//! openssl carries three certificates of one person; with the EDIPI mapping
//! `(employeeNumber={edipi})` the PIV authentication and the email signing certificate
//! both name the same user. `requiredPolicies` / `requiredEkus` let only the PIV
//! authentication certificate in: the others get `530 5.7.0` at MAIL, a decision line
//! naming the missing policy or EKU, and the metric
//! `postern_client_certificates_total{outcome="type_refused"}` — and the directory is never
//! asked for them. Real components: postern-gateway, slapd, swaks, smtp-sink.

use std::path::Path;
use std::time::Duration;

use postern_config::{AuthBackend, AuthProfile, CertificateAuth, ListenerTls, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::cac::{CacPki, CardCert, EMAIL_POLICY, PIV_AUTH_POLICY};
use postern_tests::clients::{Run, swaks};
use postern_tests::gateway::{listener, policy, single, start_gateway};
use postern_tests::openssl_ca::Issued;
use postern_tests::slapd::{self, Slapd, SlapdOptions};

const CN: &str = "DOE.JOHN.Q.1234567890";
const EDIPI: &str = "1234567890";

struct World {
    gw: Gateway,
    port: u16,
    server_ca: std::path::PathBuf,
    sink: Sink,
}

fn world(pki: &CacPki, slapd: &Slapd, dir: &Path, policies: &[&str], ekus: &[&str]) -> World {
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
    let profile = AuthProfile {
        certificate: Some(CertificateAuth {
            backend: AuthBackend::Ldap {
                ldap_profile: "corp".into(),
            },
            required_policies: policies.iter().map(|s| (*s).to_owned()).collect(),
            required_ekus: ekus.iter().map(|s| (*s).to_owned()).collect(),
        }),
        smtp_auth: None,
    };
    let mut config = single(
        l,
        policy(TlsMode::Required, true, true, false),
        Some(profile),
    );
    let mut ldap = slapd::ldap_profile(&[slapd.url()]);
    if let Some(q) = ldap.certificate_auth_query.as_mut() {
        q.filter = "(employeeNumber={edipi})".into();
    }
    config.ldap_profiles.insert("corp".into(), ldap);
    let gw = start_gateway(&config).unwrap();
    let server_ca = server_ca.write(dir, &format!("server-ca-{port}")).unwrap();
    World {
        gw,
        port,
        server_ca,
        sink,
    }
}

impl World {
    fn send(&self, cert: &Issued) -> Run {
        swaks(
            self.port,
            &[
                "--tls",
                "--tls-ca-path",
                self.server_ca.to_str().unwrap(),
                "--tls-cert",
                cert.cert.to_str().unwrap(),
                "--tls-key",
                cert.key.to_str().unwrap(),
                "--from",
                "john.q.doe.civ@mail.mil",
                "--to",
                "rcpt@example.net",
            ],
        )
        .unwrap()
    }

    fn refusals(&self) -> Vec<String> {
        self.gw
            .decisions()
            .into_iter()
            .filter(|d| d["decision"] == "certificate_auth" && d["outcome"] == "type_refused")
            .map(|d| d["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn metric(&self, reason: &str) -> bool {
        let (_, text) = self.gw.http_get("/metrics").unwrap();
        text.lines().any(|l| {
            l.starts_with("postern_client_certificates_total{")
                && l.contains("outcome=\"type_refused\"")
                && l.contains(&format!("reason=\"{reason}\""))
                && !l.ends_with(" 0")
        })
    }
}

#[test]
fn only_the_piv_authentication_certificate_of_a_card_is_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = CacPki::new(dir.path()).unwrap();
    let email = "john.q.doe.civ@mail.mil";
    let piv = pki
        .card(CardCert::PivAuth, CN, EDIPI, email, "0x1A2B3C01")
        .unwrap();
    let sign = pki
        .card(CardCert::EmailSigning, CN, EDIPI, email, "0x1A2B3C02")
        .unwrap();
    let enc = pki
        .card(CardCert::EmailEncryption, CN, EDIPI, email, "0x1A2B3C03")
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

    // Without requirements, the EDIPI maps the signing certificate too: the problem.
    let open = world(&pki, &slapd, dir.path(), &[], &[]);
    let r = open.send(&sign);
    assert!(r.has("250 2.0.0 Ok"), "{}", r.output);
    drop(open);

    // requiredPolicies: the PIV-auth policy (any of the list).
    let w = world(
        &pki,
        &slapd,
        dir.path(),
        &[PIV_AUTH_POLICY, "2.16.840.1.101.2.1.11.20"],
        &[],
    );
    let r = w.send(&piv);
    assert!(r.has("250 2.0.0 Ok"), "{}", r.output);
    w.sink.wait_for(1, Duration::from_secs(5));
    for cert in [&sign, &enc] {
        let r = w.send(cert);
        assert!(r.has("530 5.7.0"), "{}", r.output);
    }
    let refusals = w.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for reason in &refusals {
        assert!(
            reason.contains(PIV_AUTH_POLICY) && reason.contains(EMAIL_POLICY),
            "the reason names the policy required and the one present: {reason}"
        );
    }
    assert!(w.metric("policy"));
    drop(w);

    // requiredEkus by name: smartcardLogon is on the PIV certificate only.
    let w = world(
        &pki,
        &slapd,
        dir.path(),
        &[],
        &["clientAuth", "smartcardLogon"],
    );
    assert!(w.send(&piv).has("250 2.0.0 Ok"));
    let r = w.send(&sign);
    assert!(r.has("530 5.7.0"), "{}", r.output);
    let refusals = w.refusals();
    assert!(
        refusals.len() == 1 && refusals[0].contains("smartcardLogon (1.3.6.1.4.1.311.20.2.2)"),
        "{refusals:?}"
    );
    assert!(w.metric("eku"));
    // The authenticated session is the PIV certificate's.
    let d = w.gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "authenticated"
            && v["user"] == "jdoe"),
        "{d:?}"
    );
}
