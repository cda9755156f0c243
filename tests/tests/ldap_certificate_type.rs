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

use postern_config::{AuthProfile, CertificateAuth, TlsMode};
use postern_tests::cac::{CacPki, EMAIL_POLICY, PIV_AUTH_POLICY};
use postern_tests::cac_gateway::{self, CacGateway, corp, john_cards, john_ldif};
use postern_tests::clients::{Run, swaks};
use postern_tests::gateway::policy;
use postern_tests::openssl_ca::Issued;
use postern_tests::slapd::{Slapd, SlapdOptions};

struct World(CacGateway);

fn world(pki: &CacPki, slapd: &Slapd, dir: &Path, policies: &[&str], ekus: &[&str]) -> World {
    let profile = AuthProfile {
        certificate: Some(CertificateAuth {
            backend: corp(),
            required_policies: policies.iter().map(|s| (*s).to_owned()).collect(),
            required_ekus: ekus.iter().map(|s| (*s).to_owned()).collect(),
        }),
        smtp_auth: None,
    };
    World(cac_gateway::start(
        pki,
        slapd,
        dir,
        profile,
        policy(TlsMode::Required, true, true, false),
    ))
}

impl World {
    fn send(&self, cert: &Issued) -> Run {
        swaks(
            self.0.port,
            &[
                "--tls",
                "--tls-ca-path",
                self.0.server_ca.to_str().unwrap(),
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
        self.0
            .gw
            .decisions()
            .into_iter()
            .filter(|d| d["decision"] == "certificate_auth" && d["outcome"] == "type_refused")
            .map(|d| d["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn metric(&self, reason: &str) -> bool {
        let (_, text) = self.0.gw.http_get("/metrics").unwrap();
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
    let [piv, sign, enc] = john_cards(&pki, ["0x1A2B3C01", "0x1A2B3C02", "0x1A2B3C03"]);
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(john_ldif()),
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
    w.0.sink.wait_for(1, Duration::from_secs(5));
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
    let d = w.0.gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "authenticated"
            && v["user"] == "jdoe"),
        "{d:?}"
    );
}
