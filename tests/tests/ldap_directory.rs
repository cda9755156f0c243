//! The LDAP certificate mapper and SMTP authenticator against a real slapd: the users of
//! the appliance manual's procedures, Active Directory-style ids, injection attempts,
//! the service account and the result cache.

use std::sync::Arc;
use std::time::Duration;

use postern_config::{Duration as D, GatewayConfig, LdapCache, LdapProfile};
use postern_gateway::auth::ldap::{certificate_mapper, smtp_authenticator};
use postern_gateway::auth::{
    Allowance, AllowanceCheck, AuthError, AuthVerdict, CertificateFacts, CertificateMapper,
    CertificateMapping, FoundUser, SmtpAuthenticator, UserLookup,
};
use postern_gateway::ldap::LdapDirectories;
use postern_gateway::ldap::LdapMetrics;
use postern_gateway::ldap::metrics::CacheLabels;
use postern_tests::gate::DelayProxy;
use postern_tests::slapd::{self, Slapd, SlapdOptions, User};

struct Env {
    slapd: Slapd,
    metrics: LdapMetrics,
    mapper: Arc<dyn CertificateMapper>,
    auth: Arc<dyn SmtpAuthenticator>,
    auth_unchecked: Arc<dyn SmtpAuthenticator>,
}

fn env_with(edit: impl FnOnce(&mut LdapProfile)) -> Env {
    let slapd = Slapd::start(SlapdOptions::default()).expect("slapd");
    let url = slapd.url();
    env_on(slapd, url, edit)
}

/// The mapper and authenticators of a profile whose one server is `url` (`slapd`, or
/// something in front of it).
fn env_on(slapd: Slapd, url: String, edit: impl FnOnce(&mut LdapProfile)) -> Env {
    let mut profile = slapd::ldap_profile(&[url]);
    edit(&mut profile);
    let config = slapd::config_with(profile);
    let metrics = LdapMetrics::new();
    let dirs = LdapDirectories::new(metrics.clone());
    Env {
        mapper: certificate_mapper(&dirs, &config, "corp").unwrap(),
        auth: smtp_authenticator(&dirs, &config, "corp", AllowanceCheck::AfterPassword).unwrap(),
        auth_unchecked: smtp_authenticator(&dirs, &config, "corp", AllowanceCheck::Off).unwrap(),
        slapd,
        metrics,
    }
}

fn env() -> Env {
    env_with(|_| {})
}

fn cert_of(u: &User) -> CertificateFacts {
    slapd::facts(u.caccn.unwrap(), u.cacserial.unwrap())
}

async fn verdict(auth: &Arc<dyn SmtpAuthenticator>, user: &str, pw: &str) -> AuthVerdict {
    auth.authenticate(user, pw)
        .await
        .expect("directory answers")
}

fn authenticated(user: &str, allowance: Allowance) -> AuthVerdict {
    AuthVerdict::Authenticated {
        user_id: user.into(),
        allowance,
    }
}

fn assert_invalid(v: AuthVerdict, needle: &str) {
    match v {
        AuthVerdict::InvalidCredentials { reason } => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            )
        }
        other => panic!("expected InvalidCredentials ({needle}), got {other:?}"),
    }
}

fn cache_count(m: &LdapMetrics, query: &str, hits: bool) -> u64 {
    let labels = CacheLabels {
        profile: "corp".into(),
        query: query.into(),
    };
    let family = if hits { &m.cache_hits } else { &m.cache_misses };
    family.get(&labels).map(|c| c.get()).unwrap_or(0)
}

#[tokio::test]
async fn certificate_query_maps_exactly_one_entry() {
    let e = env();
    // CAC holder whose CN and serial match.
    let m = e.mapper.map(&cert_of(&slapd::ALICE)).await.unwrap();
    assert_eq!(
        m,
        CertificateMapping::Mapped {
            user_id: "alice".into(),
            dn: Some(format!("cn=user0,ou=people,{}", slapd::BASE_DN)),
        }
    );
    // Right CN, wrong serial (a reissued or foreign card): not authenticated.
    let m = e
        .mapper
        .map(&slapd::facts(slapd::ALICE.caccn.unwrap(), "FFFF"))
        .await
        .unwrap();
    assert_eq!(m, CertificateMapping::NotFound);
    // Nobody with that CN.
    let m = e
        .mapper
        .map(&slapd::facts("DOE.NOBODY.1", "1A2B3C4D"))
        .await
        .unwrap();
    assert_eq!(m, CertificateMapping::NotFound);
    // Two entries carry the same CN and serial: refused as ambiguous.
    let m = e
        .mapper
        .map(&slapd::facts(slapd::TWIN_CN, slapd::TWIN_SERIAL))
        .await
        .unwrap();
    assert_eq!(m, CertificateMapping::Ambiguous { count: 2 });
    // The entry has no uid (the userIdAttribute): not authenticated.
    let m = e
        .mapper
        .map(&slapd::facts(slapd::NOUID_CN, slapd::NOUID_SERIAL))
        .await
        .unwrap();
    assert_eq!(m, CertificateMapping::NotFound);
    // A certificate with two CNs cannot fill {cn}: not authenticated.
    let mut two = cert_of(&slapd::ALICE);
    two.common_names.push("DOE.OTHER.2".into());
    assert_eq!(
        e.mapper.map(&two).await.unwrap(),
        CertificateMapping::NotFound
    );
    // Serial matching is case-insensitive in the schema, {sn} is upper-case hex anyway.
    let m = e
        .mapper
        .map(&slapd::facts(slapd::ERIN.caccn.unwrap(), "3E3E3E"))
        .await
        .unwrap();
    assert!(matches!(m, CertificateMapping::Mapped { user_id, .. } if user_id == "erin"));
}

#[tokio::test]
async fn certificate_query_from_a_real_certificate() {
    // The manual's posixAccount filter, with facts read from a DER certificate whose
    // serial has a leading zero byte (dropped in {sn}).
    let e = env_with(|p| {
        p.certificate_auth_query.as_mut().unwrap().filter =
            "(&(objectClass=posixAccount)(caccn={cn})(cacserial={sn}))".into();
    });
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, slapd::ALICE.caccn.unwrap());
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[
        0x00, 0x1A, 0x2B, 0x3C, 0x4D,
    ]));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let facts = CertificateFacts::from_der(cert.der()).unwrap();
    assert_eq!(facts.serial_hex, "1A2B3C4D");
    let m = e.mapper.map(&facts).await.unwrap();
    assert!(matches!(m, CertificateMapping::Mapped { user_id, .. } if user_id == "alice"));
}

#[tokio::test]
async fn smtp_auth_by_bind_and_the_allowance_query() {
    let e = env();
    // No CAC: allowed.
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
    // CAC holder, not exempt, no emergency: the password is right but AUTH is not allowed.
    assert_eq!(
        verdict(&e.auth, "alice", slapd::ALICE.password).await,
        authenticated("alice", Allowance::Denied)
    );
    // Exempt CAC holder: allowed.
    assert_eq!(
        verdict(&e.auth, "erin", slapd::ERIN.password).await,
        authenticated("erin", Allowance::Allowed)
    );
    // Emergency date in the future: allowed; in the past: refused.
    assert_eq!(
        verdict(&e.auth, "emma", slapd::EMMA.password).await,
        authenticated("emma", Allowance::Allowed)
    );
    assert_eq!(
        verdict(&e.auth, "paul", slapd::PAUL.password).await,
        authenticated("paul", Allowance::Denied)
    );
    // Without the allowance check, nobody is refused for it.
    assert_eq!(
        verdict(&e.auth_unchecked, "alice", slapd::ALICE.password).await,
        authenticated("alice", Allowance::NotChecked)
    );
    // Wrong password, unknown user: invalid credentials (535), never an allowance answer.
    assert_invalid(
        verdict(&e.auth, "frank", "not-franks-password").await,
        "invalid credentials",
    );
    assert_invalid(
        verdict(&e.auth, "alice", slapd::FRANK.password).await,
        "invalid credentials",
    );
    assert_invalid(
        verdict(&e.auth, "mallory", "whatever").await,
        "unknown user",
    );
    // A user name matching two entries is refused, whatever the password.
    let e2 = env_with(|p| p.smtp_auth_query.as_mut().unwrap().filter = "(cn={u})".into());
    e2.slapd
        .modify(&format!(
            "dn: uid=twin2,ou=people,{}\nchangetype: modify\nreplace: cn\ncn: twin1\n",
            slapd::BASE_DN
        ))
        .unwrap();
    assert_invalid(
        verdict(&e2.auth, "twin1", "twin1-secret").await,
        "2 entries",
    );
}

#[tokio::test]
async fn empty_password_never_reaches_the_directory() {
    let mut e = env();
    // With the directory gone, anything sent to it would fail as Unavailable: an
    // immediate "invalid credentials" proves nothing was sent.
    e.slapd.stop();
    for user in ["frank", "alice", "", "*"] {
        assert_invalid(verdict(&e.auth, user, "").await, "empty password");
    }
    assert_invalid(verdict(&e.auth, "", "x").await, "empty user name");
    let bind_attempts: u64 = ["success", "invalid_credentials"]
        .iter()
        .filter_map(|o| {
            e.metrics
                .queries
                .get(&postern_gateway::ldap::metrics::OutcomeLabels {
                    profile: "corp".into(),
                    query: "cac-auth".into(),
                    kind: "bind",
                    outcome: o,
                })
                .map(|c| c.get())
        })
        .sum();
    assert_eq!(bind_attempts, 0);
    // And with the directory up, a user whose password is empty in a bind would be an
    // anonymous bind: still refused.
    e.slapd.start_again().unwrap();
    assert_invalid(verdict(&e.auth, "frank", "").await, "empty password");
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
}

#[tokio::test]
async fn nul_never_reaches_the_directory() {
    let mut e = env();
    // With the directory gone, anything sent to it would fail as Unavailable: an
    // immediate "invalid credentials" naming the NUL proves nothing was sent.
    e.slapd.stop();
    for (user, pw) in [
        ("frank", "\0frank-secret"),
        ("frank", "frank-secret\0"),
        ("frank", "fr\0ank-secret"),
        ("frank", "\0"),
        ("frank\0", "frank-secret"),
        ("\0", "x"),
    ] {
        assert_invalid(verdict(&e.auth, user, pw).await, "NUL");
        assert_invalid(verdict(&e.auth_unchecked, user, pw).await, "NUL");
    }
    // The two steps on their own refuse it too.
    assert!(matches!(
        e.auth.find_user("frank\0").await,
        Ok(UserLookup::Unknown { reason }) if reason.contains("NUL")
    ));
    let frank = FoundUser {
        user_id: "frank".into(),
        dn: Some(format!("cn=user1,ou=people,{}", slapd::BASE_DN)),
    };
    assert_invalid(
        e.auth
            .check_password(&frank, "frank-secret\0x")
            .await
            .unwrap(),
        "NUL",
    );
    let mut sent = 0;
    for kind in ["user", "bind", "allowance"] {
        for outcome in [
            "found",
            "not_found",
            "allowed",
            "denied",
            "success",
            "invalid_credentials",
            "unreachable",
        ] {
            let labels = postern_gateway::ldap::metrics::OutcomeLabels {
                profile: "corp".into(),
                query: "cac-auth".into(),
                kind,
                outcome,
            };
            sent += e.metrics.queries.get(&labels).map(|c| c.get()).unwrap_or(0);
        }
    }
    assert_eq!(sent, 0, "nothing may have been sent to the directory");
    // The right password, without the NUL, works once the directory is back.
    e.slapd.start_again().unwrap();
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
}

#[tokio::test]
async fn the_session_identity_is_the_entry_user_id() {
    let e = env();
    // uid matches case-insensitively in the directory: `FRANK` and ` frank ` are frank's
    // entry, and the user id is the entry's uid, not the name as typed.
    for typed in ["FRANK", "Frank", " frank "] {
        assert_eq!(
            verdict(&e.auth, typed, slapd::FRANK.password).await,
            authenticated("frank", Allowance::Allowed),
            "{typed:?}"
        );
        assert_eq!(
            e.auth.find_user(typed).await.unwrap(),
            UserLookup::Found(FoundUser {
                user_id: "frank".into(),
                dn: Some(format!("cn=user1,ou=people,{}", slapd::BASE_DN)),
            })
        );
    }
    // An entry without the userIdAttribute cannot be anybody's identity: refused like an
    // unknown user, even with the right password, and before the password is tried.
    let e2 = env_with(|p| p.smtp_auth_query.as_mut().unwrap().filter = "(cn={u})".into());
    assert!(matches!(
        e2.auth.find_user("nouid").await.unwrap(),
        UserLookup::Unknown { reason } if reason.contains("no textual uid")
    ));
    // Found by cn, identified by uid.
    assert_eq!(
        verdict(&e2.auth, "USER1", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
}

#[tokio::test]
async fn allowance_before_the_password_hides_whether_it_was_right() {
    let e = env();
    let dirs = LdapDirectories::new(LdapMetrics::new());
    let config = slapd::config_with(slapd::ldap_profile(&[e.slapd.url()]));
    let reject =
        smtp_authenticator(&dirs, &config, "corp", AllowanceCheck::BeforePassword).unwrap();
    // Refused users (CAC holders, emergency over): the same answer for the right
    // password, a wrong one, and the right one typed in upper case.
    for (user, right) in [
        ("alice", slapd::ALICE.password),
        ("paul", slapd::PAUL.password),
        ("ALICE", slapd::ALICE.password),
    ] {
        let expected = AuthVerdict::NotAllowed {
            user_id: user.to_lowercase(),
        };
        assert_eq!(verdict(&reject, user, right).await, expected, "{user}");
        assert_eq!(verdict(&reject, user, "wrong").await, expected, "{user}");
    }
    // Allowed users: the password decides as before.
    assert_eq!(
        verdict(&reject, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
    assert_invalid(
        verdict(&reject, "frank", "wrong").await,
        "invalid credentials",
    );
    assert_invalid(verdict(&reject, "mallory", "wrong").await, "unknown user");
    // And an empty password is still refused before anything else.
    assert_invalid(verdict(&reject, "alice", "").await, "empty password");
}

#[tokio::test]
async fn injection_strings_match_nothing() {
    let e = env();
    for user in [
        "*",
        "*)(uid=*",
        "*)(|(uid=*",
        "frank)(uid=*",
        "fr*",
        "\\2a",
        "frank)(|(objectClass=*)",
    ] {
        assert_invalid(
            verdict(&e.auth, user, slapd::FRANK.password).await,
            "unknown user",
        );
    }
    // A NUL in the name is not even searched for (`nul_never_reaches_the_directory`).
    assert_invalid(
        verdict(&e.auth, "frank\0", slapd::FRANK.password).await,
        "NUL",
    );
    // Certificate values with filter metacharacters, backslashes and NUL.
    for (cn, sn) in [
        ("*", "*"),
        ("*)(caccn=*", "*"),
        ("DOE.ALICE.1000000001)(|(caccn=*", "1A2B3C4D"),
        ("DOE.ALICE.*", "1A2B3C4D"),
        ("DOE.ALICE.1000000001", "*"),
        ("DOE.ALICE.1000000001\\", "1A2B3C4D"),
        ("DOE.ALICE.1000000001\0", "1A2B3C4D"),
        ("(DOE.ALICE.1000000001", "1A2B3C4D"),
    ] {
        let m = e.mapper.map(&slapd::facts(cn, sn)).await.unwrap();
        assert_eq!(m, CertificateMapping::NotFound, "cn {cn:?} sn {sn:?}");
    }
    // Escaping is exact: an id made of metacharacters finds exactly its owner.
    assert_eq!(
        verdict(&e.auth, slapd::ODD.uid, slapd::ODD.password).await,
        authenticated(slapd::ODD.uid, Allowance::Denied)
    );
    assert_invalid(
        verdict(&e.auth, "o*", slapd::ODD.password).await,
        "unknown user",
    );
    let m = e.mapper.map(&cert_of(&slapd::ODD)).await.unwrap();
    assert!(
        matches!(&m, CertificateMapping::Mapped { user_id, .. } if user_id == slapd::ODD.uid),
        "{m:?}"
    );
}

#[tokio::test]
async fn active_directory_style_user_ids() {
    // The manual's Active Directory example: (&(objectClass=user)(cn={cn})) with
    // sAMAccountName as the user id, and AUTH by sAMAccountName.
    let e = env_with(|p| {
        let c = p.certificate_auth_query.as_mut().unwrap();
        c.filter = "(&(objectClass=user)(cn={cn}))".into();
        c.user_id_attribute = "sAMAccountName".into();
        let s = p.smtp_auth_query.as_mut().unwrap();
        s.filter = "(&(objectClass=user)(sAMAccountName={u}))".into();
        s.allowance_filter =
            Some("(&(sAMAccountName={u})(|(!(caccn=*))(cacexempt=*)(cacemergency>={t})))".into());
    });
    let m = e
        .mapper
        .map(&slapd::facts(slapd::JANE_CN, slapd::JANE_SERIAL))
        .await
        .unwrap();
    assert_eq!(
        m,
        CertificateMapping::Mapped {
            user_id: slapd::JANE_SAM.into(),
            dn: Some(format!(
                "cn={},ou=people,{}",
                slapd::JANE_CN,
                slapd::BASE_DN
            )),
        }
    );
    // Entries that are not AD-style users do not map, even with a matching cn.
    let m = e.mapper.map(&slapd::facts("user1", "00")).await.unwrap();
    assert_eq!(m, CertificateMapping::NotFound);
    // AUTH as the sAMAccountName; Jane holds a CAC, so the allowance query refuses her.
    assert_eq!(
        verdict(&e.auth, slapd::JANE_SAM, slapd::JANE_PASSWORD).await,
        authenticated(slapd::JANE_SAM, Allowance::Denied)
    );
    assert_invalid(
        verdict(&e.auth, slapd::JANE_SAM, "wrong").await,
        "invalid credentials",
    );
}

#[tokio::test]
async fn searches_use_the_service_account() {
    // Anonymous clients may not search this directory (insufficient access): without the
    // service account the search fails (so the gateway really binds for its searches),
    // and that is a directory error (454), never "not found" or "unknown user".
    let e = env_with(|p| p.bind = None);
    match e.mapper.map(&cert_of(&slapd::ALICE)).await {
        Err(AuthError::Directory(msg)) => assert!(msg.contains("rc=50"), "{msg}"),
        other => panic!("expected a directory error, got {other:?}"),
    }
    assert!(matches!(
        e.auth.authenticate("frank", slapd::FRANK.password).await,
        Err(AuthError::Directory(_))
    ));
    // A wrong service password is a directory error (454), not "unknown user" (535).
    let e = env_with(|p| p.bind.as_mut().unwrap().password = "wrong".into());
    match e.auth.authenticate("frank", slapd::FRANK.password).await {
        Err(AuthError::Directory(msg)) => assert!(msg.contains("service account"), "{msg}"),
        other => panic!("expected a directory error, got {other:?}"),
    }
    match e.mapper.map(&cert_of(&slapd::ALICE)).await {
        Err(AuthError::Directory(msg)) => assert!(msg.contains("rc=49"), "{msg}"),
        other => panic!("expected a directory error, got {other:?}"),
    }
}

#[tokio::test]
async fn search_results_are_cached_passwords_never() {
    let mut e = env_with(|p| {
        p.cache = LdapCache {
            ttl: D::from_secs(60),
            negative_ttl: D::from_secs(6),
        }
    });
    let alice = cert_of(&slapd::ALICE);
    e.mapper.map(&alice).await.unwrap();
    e.mapper.map(&alice).await.unwrap();
    assert_eq!(cache_count(&e.metrics, "cac-cert", true), 1);
    assert_eq!(cache_count(&e.metrics, "cac-cert", false), 1);
    // The user search and the allowance query are cached; {t} does not defeat the cache.
    verdict(&e.auth, "frank", slapd::FRANK.password).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
    assert_eq!(cache_count(&e.metrics, "cac-auth", true), 2);
    // A wrong password after a right one is still wrong: binds are never cached.
    assert_invalid(
        verdict(&e.auth, "frank", "nope").await,
        "invalid credentials",
    );

    // Negative results expire after negativeTtl: a user added meanwhile is found then.
    let newbie = slapd::facts("DOE.NEW.9", "9999");
    assert_eq!(
        e.mapper.map(&newbie).await.unwrap(),
        CertificateMapping::NotFound
    );
    let cached_at = std::time::Instant::now();
    e.slapd
        .modify(&format!(
            "dn: uid=newbie,ou=people,{}\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: cacUser\n\
             cn: newbie\nsn: New\nuid: newbie\ncaccn: DOE.NEW.9\ncacserial: 9999\n",
            slapd::BASE_DN
        ))
        .unwrap();
    assert_eq!(
        e.mapper.map(&newbie).await.unwrap(),
        CertificateMapping::NotFound,
        "negative result served from the cache"
    );
    // (6s leaves a busy machine plenty of time for ldapmodify above.)
    assert!(cached_at.elapsed() < Duration::from_secs(6));
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(cached_at.elapsed()) + Duration::from_millis(200),
    )
    .await;
    assert!(matches!(
        e.mapper.map(&newbie).await.unwrap(),
        CertificateMapping::Mapped { user_id, .. } if user_id == "newbie"
    ));

    // With the directory down, cached certificate mappings still answer; a password
    // check cannot (it is never cached) and says so: 454, not 535, not an accept.
    e.slapd.stop();
    assert!(matches!(
        e.mapper.map(&alice).await.unwrap(),
        CertificateMapping::Mapped { user_id, .. } if user_id == "alice"
    ));
    match e.auth.authenticate("frank", slapd::FRANK.password).await {
        Err(AuthError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn cache_can_be_disabled() {
    let e = env_with(|p| {
        p.cache = LdapCache {
            ttl: D::from_secs(0),
            negative_ttl: D::from_secs(0),
        }
    });
    let alice = cert_of(&slapd::ALICE);
    for _ in 0..3 {
        e.mapper.map(&alice).await.unwrap();
    }
    assert_eq!(cache_count(&e.metrics, "cac-cert", true), 0);
    assert_eq!(cache_count(&e.metrics, "cac-cert", false), 3);
}

#[tokio::test]
async fn profiles_share_one_directory() {
    let slapd = Slapd::start(SlapdOptions::default()).unwrap();
    let config: GatewayConfig = slapd::config_with(slapd::ldap_profile(&[slapd.url()]));
    let dirs = LdapDirectories::new(LdapMetrics::new());
    let a = dirs.directory(&config, "corp").unwrap();
    let _mapper = certificate_mapper(&dirs, &config, "corp").unwrap();
    let _auth = smtp_authenticator(&dirs, &config, "corp", AllowanceCheck::AfterPassword).unwrap();
    assert!(Arc::ptr_eq(&a, &dirs.directory(&config, "corp").unwrap()));
    assert_eq!(dirs.all().len(), 1);
    // A reload (the same directories, handed to the next configuration's build) with the
    // same profile keeps the directory (warm pool and cache); a changed profile gets a
    // new one.
    let next = dirs.clone();
    assert!(Arc::ptr_eq(&a, &next.directory(&config, "corp").unwrap()));
    let mut changed = config.clone();
    changed
        .ldap_profiles
        .get_mut("corp")
        .unwrap()
        .max_connections = 2;
    assert!(!Arc::ptr_eq(&a, &next.directory(&changed, "corp").unwrap()));
    assert!(next.directory(&changed, "nope").is_err());
}

#[tokio::test]
async fn every_query_is_counted_and_timed() {
    let e = env();
    let mut registry = prometheus_client::registry::Registry::default();
    e.metrics.register(&mut registry);
    e.mapper.map(&cert_of(&slapd::ALICE)).await.unwrap();
    e.mapper.map(&cert_of(&slapd::ALICE)).await.unwrap();
    verdict(&e.auth, "alice", slapd::ALICE.password).await;
    verdict(&e.auth, "frank", "wrong").await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"postern_ldap_queries_total{profile="corp",query="cac-cert",kind="certificate",outcome="found"} 2"#,
        r#"postern_ldap_queries_total{profile="corp",query="cac-auth",kind="user",outcome="found"} 2"#,
        r#"postern_ldap_queries_total{profile="corp",query="cac-auth",kind="bind",outcome="success"} 1"#,
        r#"postern_ldap_queries_total{profile="corp",query="cac-auth",kind="bind",outcome="invalid_credentials"} 1"#,
        r#"postern_ldap_queries_total{profile="corp",query="cac-auth",kind="allowance",outcome="denied"} 1"#,
        r#"postern_ldap_cache_hits_total{profile="corp",query="cac-cert"} 1"#,
        r#"postern_ldap_query_duration_seconds_count{profile="corp",query="cac-auth",kind="bind"} 2"#,
        r#"postern_ldap_server_up{profile="corp",server=""#,
        r#"postern_ldap_pool_connections{profile="corp"} "#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

#[tokio::test]
async fn password_checks_keep_their_connection_and_replace_a_dead_one() {
    let mut e = env();
    let open = |e: &Env| {
        e.metrics
            .bind_connections
            .get(&postern_gateway::ldap::metrics::ProfileLabels {
                profile: "corp".into(),
            })
            .map(|g| g.get())
    };
    // Right and wrong passwords of two users, one after the other: each BIND replaces
    // the identity the connection had, and one connection serves them all.
    for _ in 0..2 {
        assert_eq!(
            verdict(&e.auth, "frank", slapd::FRANK.password).await,
            authenticated("frank", Allowance::Allowed)
        );
        assert_invalid(
            verdict(&e.auth, "alice", "frank-secret").await,
            "invalid credentials",
        );
        assert!(matches!(
            verdict(&e.auth_unchecked, "alice", slapd::ALICE.password).await,
            AuthVerdict::Authenticated { user_id, .. } if user_id == "alice"
        ));
        assert_invalid(
            verdict(&e.auth, "frank", "nope").await,
            "invalid credentials",
        );
    }
    assert_eq!(open(&e), Some(1), "one connection kept for the checks");
    // The directory restarts: the kept connection is dead, the next check opens a new
    // one and answers as if nothing happened.
    e.slapd.stop();
    e.slapd.start_again().unwrap();
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
    assert_invalid(
        verdict(&e.auth, "frank", "nope").await,
        "invalid credentials",
    );
    assert_eq!(open(&e), Some(1));
}

/// A kept connection that the directory's side dropped without the client noticing (a
/// server's or firewall's silent idle timeout, seen only when the connection is next
/// used): the password check that finds it dead is answered on a new connection.
#[tokio::test]
async fn a_kept_connection_found_dead_when_used_is_replaced_within_the_check() {
    let slapd = Slapd::start(SlapdOptions::default()).expect("slapd");
    let proxy = DelayProxy::start(format!("127.0.0.1:{}", slapd.port()).parse().unwrap(), 0);
    let e = env_on(slapd, format!("ldap://{}", proxy.addr), |_| {});
    // The user's entry and allowance are cached from here on: only BINDs go out.
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
    proxy.cut_open_connections();
    assert_eq!(
        verdict(&e.auth, "frank", slapd::FRANK.password).await,
        authenticated("frank", Allowance::Allowed)
    );
    assert_eq!(
        proxy.cut(),
        1,
        "the kept BIND connection was used and found dead"
    );
    assert_invalid(
        verdict(&e.auth, "frank", "nope").await,
        "invalid credentials",
    );
    assert_eq!(proxy.cut(), 1, "the new connection is kept and works");
    let open = e
        .metrics
        .bind_connections
        .get(&postern_gateway::ldap::metrics::ProfileLabels {
            profile: "corp".into(),
        })
        .map(|g| g.get());
    assert_eq!(open, Some(1));
}
