//! CRL benchmark: load + verify + index a 1,000,000-entry CRL, the index's memory against
//! the DER size, and the cost of one revocation check.
//!
//! Run: `cargo bench -p postern-tests --bench crl` (add `-- --entries N` to change the size).
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use postern_config::protocol::ServedBy;
use postern_config::{CrlFormat, CrlScope, CrlSource, GatewayConfig, Listener};
use postern_gateway::crl::{CrlStore, Install, TrustStore, load, unix_now};
use postern_gateway::tls::RevocationChecker;
use postern_testkit::crl::{big_serial, crl_pem};
use postern_testkit::pki::Ca;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU time this thread has run, from the scheduler (nanoseconds). Unlike wall time it
/// does not count the time other processes on a busy machine take the CPU away.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

/// Best wall time and best thread CPU time of `runs` runs.
#[derive(Clone, Copy, Debug)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

impl Timing {
    fn ms(&self) -> String {
        format!(
            "{:.0} ms CPU ({:.0} ms wall)",
            self.cpu.as_secs_f64() * 1e3,
            self.wall.as_secs_f64() * 1e3
        )
    }
    fn ns_per(&self, n: usize) -> String {
        format!(
            "{:.0} ns CPU ({:.0} ns wall)",
            self.cpu.as_nanos() as f64 / n as f64,
            self.wall.as_nanos() as f64 / n as f64
        )
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut best = Timing {
        wall: Duration::MAX,
        cpu: Duration::MAX,
    };
    let mut last = None;
    for _ in 0..runs {
        let c = thread_cpu();
        let t = Instant::now();
        let v = f();
        best.wall = best.wall.min(t.elapsed());
        best.cpu = best.cpu.min(thread_cpu().saturating_sub(c));
        last = Some(v);
    }
    (best, last.expect("at least one run"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries: usize = args
        .iter()
        .position(|a| a == "--entries")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let serial_len = 20;
    let ca = Ca::root("Bench CA");
    let mut trust = TrustStore::default();
    trust.add_pem(&ca.cert_pem(), "bench").expect("CA");

    // Generation is not timed.
    let t = Instant::now();
    let der = ca.big_crl(1, entries, serial_len, 10);
    let pem = crl_pem(&der);
    println!(
        "CRL: {entries} entries, {serial_len}-byte serials, reasonCode on every 10th; DER {:.1} MiB, PEM {:.1} MiB (generated in {:.2?}, not timed)",
        mib(der.len() as u64),
        mib(pem.len() as u64),
        t.elapsed()
    );

    // Load + verify + index, DER and PEM (best of 3 each).
    let now = unix_now();
    let rss_before = status_kib("VmRSS:");
    let (der_time, loaded) = best_of(3, || {
        load(
            &der,
            CrlFormat::Asn1,
            &trust,
            &[],
            postern_gateway::crl::Missing::Retain,
            now,
        )
        .expect("load DER")
    });
    let rss_after = status_kib("VmRSS:");
    let index = std::sync::Arc::clone(&loaded.crls[0]);
    assert_eq!(index.meta.entries, entries);
    let (pem_time, _) = best_of(3, || {
        load(
            pem.as_bytes(),
            CrlFormat::Pem,
            &trust,
            &[],
            postern_gateway::crl::Missing::Retain,
            now,
        )
        .expect("load PEM")
    });
    // The phases on their own.
    let parts = postern_gateway::crl::parse::split(&der, CrlFormat::Asn1).expect("split");
    let (parse_time, parsed) = best_of(3, || {
        let p = postern_gateway::crl::ParsedCrl::parse(&parts[0], 0).expect("parse");
        let n = p.entries().count();
        (p, n)
    });
    let (verify_time, signer) = best_of(3, || trust.verify(&parsed.0).expect("verify"));
    let (index_time, _) = best_of(3, || {
        postern_gateway::crl::CrlIndex::build(&parsed.0, &signer).expect("index")
    });
    println!("load+verify+index, DER: {}", der_time.ms());
    println!("load+verify+index, PEM: {}", pem_time.ms());
    println!(
        "  phases (DER): header+entry walk {}, signature {}, index build {}",
        parse_time.ms(),
        verify_time.ms(),
        index_time.ms()
    );

    let heap = index.heap_bytes() as u64;
    println!(
        "index memory: {:.1} MiB allocated = {:.2}x the DER size ({:.1} bytes/entry); RSS after the first load grew by {:.1} MiB",
        mib(heap),
        heap as f64 / der.len() as f64,
        heap as f64 / entries as f64,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0,
    );
    drop(parsed);
    drop(parts);

    // Lookups through the gateway's RevocationChecker (snapshot lock, clock, hash lookup).
    let mut config = GatewayConfig::default();
    let listener: Listener = serde_json::from_value(serde_json::json!({
        "address": "127.0.0.1", "port": 2525, "hostname": "bench.test",
        "tls": {"certificateChainPem": "x", "privateKeyPem": "y", "clientCaPem": ca.cert_pem()},
        "defaultPolicy": "p", "nextHop": {"host": "127.0.0.1"}
    }))
    .expect("listener");
    config.listeners.insert("bench".into(), listener);
    let source: CrlSource = serde_json::from_value(serde_json::json!({
        "format": "Asn1", "primaryUrl": "http://127.0.0.1:1/bench.crl",
        "interval": "1h", "appliesTo": ["InboundSmtpTls"]
    }))
    .expect("source");
    config.crl_sources.insert("bench".into(), source);
    let store = CrlStore::new();
    store.configure(&config);
    let (_, generation) = store.spec("bench").expect("source");
    assert!(store.install(
        "bench",
        generation,
        Install {
            loaded,
            served_by: ServedBy::Primary,
            url: "http://127.0.0.1:1/bench.crl".into(),
            from_disk: false,
            at: now,
        },
    ));
    let issuer = ca.subject_der();
    let kid = ca.key_id();
    let probes: Vec<[u8; 20]> = (0..1_000_000u64)
        .map(|i| {
            // Half listed serials, half unlisted ones spread over the same space.
            let k = i.wrapping_mul(7_919) % entries as u64;
            let mut s = big_serial(k, serial_len);
            if i % 2 == 1 {
                s[serial_len - 5] ^= 0x5a;
            }
            s
        })
        .collect();
    let mut revoked = 0usize;
    let (check_time, _) = best_of(3, || {
        revoked = 0;
        for p in &probes {
            if let postern_gateway::tls::RevocationStatus::Revoked { .. } = store.check(
                CrlScope::InboundSmtpTls,
                black_box(&issuer),
                Some(&kid),
                black_box(&p[..serial_len]),
            ) {
                revoked += 1;
            }
        }
    });
    let (lookup_time, _) = best_of(3, || {
        probes
            .iter()
            .filter(|p| index.lookup(black_box(&p[..serial_len])).is_some())
            .count()
    });
    println!(
        "revocation check per certificate: {} through RevocationChecker::check; {} for the index lookup alone ({} of {} probes revoked)",
        check_time.ns_per(probes.len()),
        lookup_time.ns_per(probes.len()),
        revoked,
        probes.len()
    );
    println!(
        "targets: load < 1000 ms: {} (CPU time); memory < 1.5x DER: {}",
        if der_time.cpu.as_millis() < 1000 {
            "met"
        } else {
            "MISSED"
        },
        if (heap as f64) < 1.5 * der.len() as f64 {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        postern_tests::session_load::load_average()
    );
}
