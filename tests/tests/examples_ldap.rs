//! The example directory (examples/ldap/users.ldif + cac.schema) against a real slapd,
//! queried by the gateway's own LDAP code with the LdapProfile compiled from
//! examples/either: every user of the seed's cases gets the expected decision.

use std::path::PathBuf;
use std::sync::Arc;

use postern_config::{CertificateAuthQuery, GatewayConfig};
use postern_controller::cli::manifests::{load, read_inputs};
use postern_controller::compile::compile;
use postern_gateway::auth::ldap::{certificate_mapper, smtp_authenticator};
use postern_gateway::auth::{
    Allowance, AllowanceCheck, AuthVerdict, CertificateFacts, CertificateMapping, SmtpAuthenticator,
};
use postern_gateway::ldap::{LdapDirectories, LdapMetrics};
use postern_tests::slapd::{Slapd, SlapdOptions};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// examples/either compiled, pointed at `url`.
fn either_config(url: &str) -> GatewayConfig {
    let texts = read_inputs(&[examples().join("either").display().to_string()]).unwrap();
    let compiled = compile(&load(&texts, None).snapshot, None);
    assert!(!compiled.report.has_errors());
    let mut config = compiled.config;
    config.ldap_profiles.get_mut("corp-ldap").unwrap().servers = vec![url.to_owned()];
    config
}

fn facts(cert: &str) -> CertificateFacts {
    let pem = std::fs::read_to_string(examples().join("pki").join(cert)).unwrap();
    let der = postern_config::pem::certificates(&pem).unwrap();
    CertificateFacts::from_der(&der[0]).unwrap()
}

async fn auth(a: &Arc<dyn SmtpAuthenticator>, user: &str, password: &str) -> AuthVerdict {
    a.authenticate(user, password)
        .await
        .expect("the directory answers")
}

#[tokio::test]
async fn example_directory_answers_the_seed_cases() {
    let ldif = std::fs::read_to_string(examples().join("ldap/users.ldif")).unwrap();
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(ldif),
        ..SlapdOptions::default()
    })
    .expect("slapd with the example directory");
    let mut config = either_config(&slapd.url());
    // The manual's Active Directory query, on a copy of the profile.
    let mut ad = config.ldap_profiles["corp-ldap"].clone();
    ad.certificate_auth_query = Some(CertificateAuthQuery {
        name: "ad-cert".into(),
        filter: "(&(objectClass=user)(cn={cn}))".into(),
        user_id_attribute: "sAMAccountName".into(),
    });
    config.ldap_profiles.insert("ad".into(), ad);

    let dirs = LdapDirectories::new(LdapMetrics::new());
    let mapper = certificate_mapper(&dirs, &config, "corp-ldap").unwrap();
    let ad_mapper = certificate_mapper(&dirs, &config, "ad").unwrap();
    let authenticator =
        smtp_authenticator(&dirs, &config, "corp-ldap", AllowanceCheck::AfterPassword).unwrap();

    // Certificates: alice's CAC maps to her uid (CN and serial), grace's to her AD
    // account, mallory's valid certificate to nobody.
    let mapped = |user: &str| CertificateMapping::Mapped {
        user_id: user.into(),
        dn: None,
    };
    let strip_dn = |m: CertificateMapping| match m {
        CertificateMapping::Mapped { user_id, .. } => mapped(&user_id),
        other => other,
    };
    assert_eq!(
        strip_dn(mapper.map(&facts("alice.crt")).await.unwrap()),
        mapped("alice")
    );
    assert_eq!(
        mapper.map(&facts("mallory.crt")).await.unwrap(),
        CertificateMapping::NotFound
    );
    assert_eq!(
        mapper.map(&facts("grace.crt")).await.unwrap(),
        CertificateMapping::NotFound
    );
    assert_eq!(
        strip_dn(ad_mapper.map(&facts("grace.crt")).await.unwrap()),
        mapped("ghopper")
    );

    // SMTP AUTH with the seed's allowance filter.
    let allowed = |user: &str, a: Allowance| AuthVerdict::Authenticated {
        user_id: user.into(),
        allowance: a,
    };
    for (user, expect) in [
        ("bob", Allowance::Allowed),  // no CAC issued
        ("dave", Allowance::Allowed), // CAC exempt
        ("erin", Allowance::Allowed), // emergency period until 2099
        ("alice", Allowance::Denied), // CAC holder
        ("carol", Allowance::Denied), // CAC holder, not exempt
        ("frank", Allowance::Denied), // emergency period over
    ] {
        let password = format!("{user}-pw");
        assert_eq!(
            auth(&authenticator, user, &password).await,
            allowed(user, expect),
            "{user}"
        );
    }
    assert!(matches!(
        auth(&authenticator, "bob", "wrong").await,
        AuthVerdict::InvalidCredentials { .. }
    ));
    assert!(matches!(
        auth(&authenticator, "nobody", "x").await,
        AuthVerdict::InvalidCredentials { .. }
    ));
}
