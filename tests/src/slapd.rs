//! The test directory of `postern_testkit::slapd` (re-exported here, where the LDAP tests
//! look for it) and the gateway-side pieces that go with it: the seed's queries, an
//! `LdapProfile` for the directory, certificate facts for its CAC holders.

pub use postern_testkit::slapd::{
    ADMIN_DN, ADMIN_PASSWORD, ALICE, BASE_DN, CAC_SCHEMA, EMMA, ERIN, FRANK, JANE_CN,
    JANE_PASSWORD, JANE_SAM, JANE_SERIAL, NOUID_CN, NOUID_SERIAL, ODD, PAUL, SERVICE_DN,
    SERVICE_PASSWORD, Slapd, SlapdOptions, SlapdTls, TWIN_CN, TWIN_SERIAL, USERS, User,
    directory_ldif, generalized_time_in_days,
};

/// The seed's certificate query.
pub const CERT_FILTER: &str = "(&(caccn={cn})(cacserial={sn}))";
/// The seed's SMTP authentication query.
pub const AUTH_FILTER: &str = "(uid={u})";
/// The seed's allowance query (no CAC, exempt, or emergency date in the future).
pub const ALLOWANCE_FILTER: &str = "(&(uid={u})(|(!(caccn=*))(cacexempt=*)(cacemergency>={t})))";

/// An LdapProfile for `servers` with the seed's queries, the service account, short
/// timeouts (2s) and the default cache.
pub fn ldap_profile(servers: &[String]) -> postern_config::LdapProfile {
    use postern_config::{
        CertificateAuthQuery, Duration as D, LdapAuthMethod, LdapBind, LdapCache, LdapProfile,
        LdapTimeouts, SmtpAuthQuery,
    };
    LdapProfile {
        servers: servers.to_vec(),
        start_tls: false,
        ca_pem: None,
        bind: Some(LdapBind {
            dn: SERVICE_DN.into(),
            password: SERVICE_PASSWORD.into(),
        }),
        base_dn: BASE_DN.into(),
        timeouts: LdapTimeouts {
            connect: D::from_secs(2),
            operation: D::from_secs(2),
        },
        max_connections: 4,
        cache: LdapCache::default(),
        certificate_auth_query: Some(CertificateAuthQuery {
            name: "cac-cert".into(),
            filter: CERT_FILTER.into(),
            user_id_attribute: "uid".into(),
        }),
        smtp_auth_query: Some(SmtpAuthQuery {
            name: "cac-auth".into(),
            filter: AUTH_FILTER.into(),
            method: LdapAuthMethod::Bind,
            allowance_filter: Some(ALLOWANCE_FILTER.into()),
        }),
        mail_attributes: postern_config::sender::default_mail_attributes(),
    }
}

/// A gateway configuration holding just `profile` under the name `corp`.
pub fn config_with(profile: postern_config::LdapProfile) -> postern_config::GatewayConfig {
    let mut config = postern_config::GatewayConfig::default();
    config.ldap_profiles.insert("corp".into(), profile);
    config
}

/// Certificate facts with one CN and a serial (other fields filled plausibly).
pub fn facts(cn: &str, serial_hex: &str) -> postern_gateway::auth::CertificateFacts {
    postern_gateway::auth::CertificateFacts {
        subject: format!("C=US, O=U.S. Government, OU=PKI, CN={cn}"),
        subject_dn: format!("CN={cn},OU=PKI,O=U.S. Government,C=US"),
        common_names: vec![cn.to_owned()],
        serial_hex: serial_hex.to_owned(),
        issuer: "C=US, O=U.S. Government, CN=Test CAC CA".into(),
        issuer_dn: "CN=Test CAC CA,O=U.S. Government,C=US".into(),
        email: None,
        upn: None,
        fingerprint_sha256: "00".repeat(32),
        ..Default::default()
    }
}

/// The certificate mapper of [`ldap_profile`] on `slapd`, with the certificate query
/// `filter` (named `query`, user id `uid`), as the gateway builds it.
pub fn certificate_mapper_with(
    slapd: &Slapd,
    query: &str,
    filter: &str,
) -> std::sync::Arc<dyn postern_gateway::auth::CertificateMapper> {
    let mut profile = ldap_profile(&[slapd.url()]);
    profile.certificate_auth_query = Some(postern_config::CertificateAuthQuery {
        name: query.into(),
        filter: filter.into(),
        user_id_attribute: "uid".into(),
    });
    postern_gateway::auth::ldap::certificate_mapper(
        &postern_gateway::ldap::LdapDirectories::new(postern_gateway::ldap::LdapMetrics::new()),
        &config_with(profile),
        "corp",
    )
    .expect("certificate mapper")
}

/// slapd with `ldif` and the CAC schema extended by `schema`.
pub fn start_with_schema(ldif: String, schema: &str) -> Slapd {
    Slapd::start(SlapdOptions {
        ldif: Some(ldif),
        schema: Some(format!("{CAC_SCHEMA}{schema}")),
        ..SlapdOptions::default()
    })
    .expect("slapd")
}

/// The mapping to the entry `uid=<uid>,ou=people` of the test directory.
pub fn mapped_to(uid: &str) -> postern_gateway::auth::CertificateMapping {
    postern_gateway::auth::CertificateMapping::Mapped {
        user_id: uid.into(),
        dn: Some(format!("uid={uid},ou=people,{BASE_DN}")),
    }
}

/// An authentication profile whose SMTP AUTH (profile name `ldap-auth`) goes to the LDAP
/// profile `corp`, with `allowance` and `throttle`.
pub fn ldap_smtp_auth_profile(
    allowance: Option<postern_config::Allowance>,
    throttle: postern_config::AuthThrottle,
) -> postern_config::AuthProfile {
    postern_config::AuthProfile {
        certificate: None,
        smtp_auth: Some(postern_config::SmtpAuth {
            profile: "ldap-auth".into(),
            backend: postern_config::AuthBackend::Ldap {
                ldap_profile: "corp".into(),
            },
            allowance,
            throttle,
        }),
    }
}
