//! Added latency of LDAP authentication against a loopback slapd, cache cold and warm.
//!
//! `cargo bench -p postern-tests --bench ldap` (optionally `-- SECONDS CONCURRENCY`).
//! Prints a Markdown table for docs/benchmarks.md: per-operation p50/p99 measured one
//! at a time (so latency is not queueing), then throughput with CONCURRENCY tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern_config::Duration as D;
use postern_gateway::auth::ldap::{certificate_mapper, smtp_authenticator};
use postern_gateway::auth::{
    AllowanceCheck, AuthVerdict, CertificateFacts, CertificateMapper, CertificateMapping,
    SmtpAuthenticator,
};
use postern_gateway::ldap::{LdapDirectories, LdapMetrics};
use postern_tests::slapd::{self, Slapd, SlapdOptions};

const SAMPLES: usize = 2000;

struct Clients {
    mapper: Arc<dyn CertificateMapper>,
    auth: Arc<dyn SmtpAuthenticator>,
}

fn clients(slapd: &Slapd, cache: bool, tls: Option<&str>) -> Clients {
    let mut p = slapd::ldap_profile(&[slapd.url()]);
    p.max_connections = 8;
    if let Some(ca) = tls {
        p.start_tls = true;
        p.ca_pem = Some(ca.to_owned());
    }
    if !cache {
        p.cache.ttl = D::from_secs(0);
        p.cache.negative_ttl = D::from_secs(0);
    }
    let config = slapd::config_with(p);
    let dirs = LdapDirectories::new(LdapMetrics::new());
    Clients {
        mapper: certificate_mapper(&dirs, &config, "corp").unwrap(),
        auth: smtp_authenticator(&dirs, &config, "corp", AllowanceCheck::AfterPassword).unwrap(),
    }
}

fn alice() -> CertificateFacts {
    slapd::facts(slapd::ALICE.caccn.unwrap(), slapd::ALICE.cacserial.unwrap())
}

async fn map_once(c: &Clients, cert: &CertificateFacts) {
    let m = c.mapper.map(cert).await.expect("directory answers");
    assert!(matches!(m, CertificateMapping::Mapped { .. }), "{m:?}");
}

async fn auth_once(c: &Clients) {
    let v = c
        .auth
        .authenticate("frank", slapd::FRANK.password)
        .await
        .expect("directory answers");
    assert!(matches!(v, AuthVerdict::Authenticated { .. }), "{v:?}");
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[derive(Clone, Copy)]
enum Op {
    Map,
    Auth,
}

async fn run(c: &Arc<Clients>, op: Op) {
    match op {
        Op::Map => map_once(c, &alice()).await,
        Op::Auth => auth_once(c).await,
    }
}

async fn measure(name: &str, c: Arc<Clients>, op: Op, seconds: u64, concurrency: usize) {
    // Warm-up: connections open, cache filled (when on).
    for _ in 0..50 {
        run(&c, op).await;
    }
    let mut lat = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        run(&c, op).await;
        lat.push(t.elapsed());
    }
    lat.sort();
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let c = c.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                run(&c, op).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "| {name} | {:.3} | {:.3} | {:.3} | {:.0} |",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        rate
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tls = slapd::SlapdTls::generate().unwrap();
    let s = Slapd::start(SlapdOptions {
        tls: Some(tls.clone()),
        ..Default::default()
    })
    .unwrap();
    println!(
        "{SAMPLES} sequential samples per row for p50/p99/p99.9; throughput with {concurrency} concurrent tasks for {seconds}s.\n"
    );
    println!("| operation (loopback slapd) | p50 ms | p99 ms | p99.9 ms | ops/s |");
    println!("|---|---:|---:|---:|---:|");
    rt.block_on(async {
        let rows: [(&str, bool, Option<&str>, Op); 8] = [
            (
                "certificate mapping, cache cold (ttl 0)",
                false,
                None,
                Op::Map,
            ),
            ("certificate mapping, cache warm", true, None, Op::Map),
            (
                "SMTP AUTH (search + bind + allowance), cache cold",
                false,
                None,
                Op::Auth,
            ),
            (
                "SMTP AUTH, cache warm (bind always sent)",
                true,
                None,
                Op::Auth,
            ),
            (
                "certificate mapping, StartTLS, cache cold",
                false,
                Some(&tls.ca_pem),
                Op::Map,
            ),
            (
                "certificate mapping, StartTLS, cache warm",
                true,
                Some(&tls.ca_pem),
                Op::Map,
            ),
            (
                "SMTP AUTH, StartTLS, cache cold",
                false,
                Some(&tls.ca_pem),
                Op::Auth,
            ),
            (
                "SMTP AUTH, StartTLS, cache warm",
                true,
                Some(&tls.ca_pem),
                Op::Auth,
            ),
        ];
        for (name, cache, tls, op) in rows {
            let c = Arc::new(clients(&s, cache, tls));
            measure(name, c, op, seconds, concurrency).await;
        }
    });
}
