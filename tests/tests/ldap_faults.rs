//! The LDAP client when things go wrong: slapd stopped, killed or frozen mid-run,
//! failover to a second slapd, StartTLS and ldaps (and bad trust), referrals and size
//! limits. A broken directory is always `AuthError` (454), never an accept, never a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::{Duration as D, LdapProfile};
use postern_gateway::auth::ldap::{certificate_mapper, smtp_authenticator};
use postern_gateway::auth::{
    Allowance, AllowanceCheck, AuthError, AuthVerdict, CertificateMapper, CertificateMapping,
    SmtpAuthenticator,
};
use postern_gateway::ldap::LdapDirectories;
use postern_gateway::ldap::LdapMetrics;
use postern_gateway::ldap::metrics::ServerLabels;
use postern_tests::slapd::{self, Slapd, SlapdOptions, SlapdTls};

struct Client {
    metrics: LdapMetrics,
    mapper: Arc<dyn CertificateMapper>,
    auth: Arc<dyn SmtpAuthenticator>,
}

fn client(profile: LdapProfile) -> Client {
    let config = slapd::config_with(profile);
    let metrics = LdapMetrics::new();
    let dirs = LdapDirectories::new(metrics.clone());
    Client {
        mapper: certificate_mapper(&dirs, &config, "corp").unwrap(),
        auth: smtp_authenticator(&dirs, &config, "corp", AllowanceCheck::AfterPassword).unwrap(),
        metrics,
    }
}

fn no_cache(p: &mut LdapProfile) {
    p.cache.ttl = D::from_secs(0);
    p.cache.negative_ttl = D::from_secs(0);
}

async fn frank_ok(c: &Client) {
    assert_eq!(
        c.auth
            .authenticate("frank", slapd::FRANK.password)
            .await
            .expect("directory answers"),
        AuthVerdict::Authenticated {
            user_id: "frank".into(),
            allowance: Allowance::Allowed
        }
    );
}

async fn alice_mapped(c: &Client) {
    let m = c
        .mapper
        .map(&slapd::facts(
            slapd::ALICE.caccn.unwrap(),
            slapd::ALICE.cacserial.unwrap(),
        ))
        .await
        .expect("directory answers");
    assert!(
        matches!(&m, CertificateMapping::Mapped { user_id, .. } if user_id == "alice"),
        "{m:?}"
    );
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, AuthError>, needle: &str) {
    match r {
        Err(AuthError::Unavailable(msg)) => {
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
        }
        other => panic!("expected Unavailable ({needle}), got {other:?}"),
    }
}

fn server_up(m: &LdapMetrics, url: &str) -> i64 {
    m.server_up
        .get(&ServerLabels {
            profile: "corp".into(),
            server: url.into(),
        })
        .map(|g| g.get())
        .unwrap_or(-1)
}

fn failovers(m: &LdapMetrics, url: &str) -> u64 {
    m.failovers
        .get(&ServerLabels {
            profile: "corp".into(),
            server: url.into(),
        })
        .map(|c| c.get())
        .unwrap_or(0)
}

#[tokio::test]
async fn slapd_stopped_mid_run_then_back() {
    let mut s = Slapd::start(SlapdOptions::default()).unwrap();
    let mut p = slapd::ldap_profile(&[s.url()]);
    no_cache(&mut p);
    let c = client(p);
    frank_ok(&c).await;
    alice_mapped(&c).await;
    assert_eq!(server_up(&c.metrics, &s.url()), 1);

    s.stop();
    let t = Instant::now();
    assert_unavailable(
        c.auth.authenticate("frank", slapd::FRANK.password).await,
        "no LDAP server reachable",
    );
    assert_unavailable(
        c.mapper
            .map(&slapd::facts(
                slapd::ALICE.caccn.unwrap(),
                slapd::ALICE.cacserial.unwrap(),
            ))
            .await,
        &s.url(),
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(server_up(&c.metrics, &s.url()), 0);

    s.start_again().unwrap();
    frank_ok(&c).await;
    alice_mapped(&c).await;
    assert_eq!(server_up(&c.metrics, &s.url()), 1);
}

#[tokio::test]
async fn pooled_connections_survive_a_killed_slapd() {
    let mut s = Slapd::start(SlapdOptions::default()).unwrap();
    let mut p = slapd::ldap_profile(&[s.url()]);
    no_cache(&mut p);
    let c = client(p);
    // Fill the pool with a few connections.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mapper = c.mapper.clone();
        tasks.push(tokio::spawn(async move {
            mapper
                .map(&slapd::facts(
                    slapd::ALICE.caccn.unwrap(),
                    slapd::ALICE.cacserial.unwrap(),
                ))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    s.kill();
    s.start_again().unwrap();
    // The pooled connections are dead; the next searches replace them transparently.
    for _ in 0..6 {
        alice_mapped(&c).await;
    }
    frank_ok(&c).await;
}

#[tokio::test]
async fn a_frozen_slapd_times_out_never_hangs() {
    let s = Slapd::start(SlapdOptions::default()).unwrap();
    let mut p = slapd::ldap_profile(&[s.url()]);
    no_cache(&mut p);
    p.timeouts.connect = D::from_millis(500);
    p.timeouts.operation = D::from_millis(500);
    p.max_connections = 2;
    let c = client(p);
    frank_ok(&c).await;
    alice_mapped(&c).await;

    // SIGSTOP: the kernel still accepts connections, nothing answers.
    s.pause();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let auth = c.auth.clone();
        let mapper = c.mapper.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                auth.authenticate("frank", slapd::FRANK.password)
                    .await
                    .map(|v| format!("{v:?}"))
            } else {
                mapper
                    .map(&slapd::facts(
                        slapd::ALICE.caccn.unwrap(),
                        slapd::ALICE.cacserial.unwrap(),
                    ))
                    .await
                    .map(|m| format!("{m:?}"))
            }
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            Err(AuthError::Unavailable(msg)) => {
                assert!(msg.contains("timed out") || msg.contains("busy"), "{msg}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    // 8 requests over 2 connections, each bounded by connect + operation timeouts.
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    s.resume();
    frank_ok(&c).await;
    alice_mapped(&c).await;
}

#[tokio::test]
async fn fails_over_to_the_second_server() {
    let mut a = Slapd::start(SlapdOptions::default()).unwrap();
    let b = Slapd::start(SlapdOptions::default()).unwrap();
    let mut p = slapd::ldap_profile(&[a.url(), b.url()]);
    no_cache(&mut p);
    let c = client(p);
    frank_ok(&c).await;
    alice_mapped(&c).await;
    assert_eq!(failovers(&c.metrics, &a.url()), 0);

    // The primary goes away: searches and binds continue on the secondary.
    a.stop();
    alice_mapped(&c).await;
    frank_ok(&c).await;
    alice_mapped(&c).await;
    assert!(failovers(&c.metrics, &a.url()) >= 1);
    assert_eq!(server_up(&c.metrics, &a.url()), 0);
    assert_eq!(server_up(&c.metrics, &b.url()), 1);

    // Both gone: unavailable, naming both servers.
    drop(b);
    let r = c.auth.authenticate("frank", slapd::FRANK.password).await;
    match r {
        Err(AuthError::Unavailable(msg)) => {
            assert!(msg.contains(&a.url()), "{msg}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // The primary returns: it is used again.
    a.start_again().unwrap();
    frank_ok(&c).await;
    alice_mapped(&c).await;
    assert_eq!(server_up(&c.metrics, &a.url()), 1);
}

#[tokio::test]
async fn a_dead_first_server_is_skipped() {
    let b = Slapd::start(SlapdOptions::default()).unwrap();
    // Nothing listens on the first URL.
    let dead = format!(
        "ldap://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let mut p = slapd::ldap_profile(&[dead.clone(), b.url()]);
    no_cache(&mut p);
    let c = client(p);
    for _ in 0..3 {
        frank_ok(&c).await;
        alice_mapped(&c).await;
    }
    // Marked down after the first failure: later connections go straight to the second.
    assert_eq!(failovers(&c.metrics, &dead), 1);
}

#[tokio::test]
async fn start_tls_and_ldaps_with_the_profiles_ca() {
    let tls = SlapdTls::generate().unwrap();
    let s = Slapd::start(SlapdOptions {
        tls: Some(tls.clone()),
        ..Default::default()
    })
    .unwrap();
    // StartTLS on ldap://.
    let mut p = slapd::ldap_profile(&[s.url()]);
    no_cache(&mut p);
    p.start_tls = true;
    p.ca_pem = Some(tls.ca_pem.clone());
    let c = client(p.clone());
    frank_ok(&c).await;
    alice_mapped(&c).await;
    // ldaps://.
    let mut q = p.clone();
    q.start_tls = false;
    q.servers = vec![s.ldaps_url().unwrap()];
    let c = client(q.clone());
    frank_ok(&c).await;
    alice_mapped(&c).await;

    // A server certificate from another CA is refused: unavailable, never a silent
    // downgrade to plaintext.
    let other = SlapdTls::generate().unwrap();
    for mut bad in [p.clone(), q.clone()] {
        bad.ca_pem = Some(other.ca_pem.clone());
        let c = client(bad);
        assert_unavailable(
            c.auth.authenticate("frank", slapd::FRANK.password).await,
            "certificate",
        );
    }

    // StartTLS against a server that has no TLS: refused, unavailable.
    let plain = Slapd::start(SlapdOptions::default()).unwrap();
    let mut r = slapd::ldap_profile(&[plain.url()]);
    r.start_tls = true;
    r.ca_pem = Some(tls.ca_pem.clone());
    let c = client(r);
    assert_unavailable(c.mapper.map(&slapd::facts("X", "01")).await, "StartTLS");
}

#[tokio::test]
async fn referrals_and_size_limits_are_directory_errors() {
    let s = Slapd::start(SlapdOptions {
        size_limit: Some(2),
        referral: Some("ldap://ldap.elsewhere.example:389/".into()),
        ..Default::default()
    })
    .unwrap();
    // A base DN this server does not hold: referral, not followed.
    let mut p = slapd::ldap_profile(&[s.url()]);
    p.base_dn = "dc=elsewhere,dc=example".into();
    let c = client(p);
    match c.mapper.map(&slapd::facts("X", "01")).await {
        Err(AuthError::Directory(msg)) => {
            assert!(
                msg.contains("referral to ldap://ldap.elsewhere.example"),
                "{msg}"
            )
        }
        other => panic!("expected a directory error, got {other:?}"),
    }
    // A filter matching more entries than the server returns: size limit.
    let mut p = slapd::ldap_profile(&[s.url()]);
    p.certificate_auth_query.as_mut().unwrap().filter =
        "(|(caccn={cn})(objectClass=cacUser))".into();
    let c = client(p);
    match c.mapper.map(&slapd::facts("X", "01")).await {
        Err(AuthError::Directory(msg)) => assert!(msg.contains("size limit"), "{msg}"),
        other => panic!("expected a directory error, got {other:?}"),
    }
    // The seed's queries are unaffected by the limit.
    let c = client(slapd::ldap_profile(&[s.url()]));
    alice_mapped(&c).await;
    frank_ok(&c).await;
}
