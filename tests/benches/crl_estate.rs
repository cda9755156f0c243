//! Revocation for a DoD-sized estate: 49 CAs in one Listener's client CA bundle, their 49
//! CRLs (about 243 MB of DER, a few of tens of MB and many small ones, serials of 3–16
//! bytes, reason codes on most entries, invalidity dates on some) served over loopback
//! HTTP to the real release `postern-gateway`. Measures, against the targets of the
//! revocation work: time until all 49 are in force, steady and peak RSS, handshake p99
//! during a refresh of the largest CRL against idle, and the session rate with every CRL
//! loaded against none.
//!
//! Run: `cargo build --release -p postern-gateway && cargo bench -p postern-tests --bench crl_estate`
//! Options after `--`: `--format der` (49 sources, `format: Asn1`) or `--format zip` (one
//! source, `format: Zip`, the 49 CRLs in one archive as DISA ships them); `--seconds S` per
//! round (5), `--rounds R` (4), `--concurrency C` (8), `--regenerate`. The generated files
//! (not timed) are kept in `<target>/release/crl-estate/` and reused for 20 days.
//! `POSTERN_BENCH_GATEWAY=<path>` runs another `postern-gateway` build.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postern_config::GatewayConfig;
use postern_testkit::crl_estate::EstateShape;
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::http::http_get;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_tests::crl;
use postern_tests::session_load::{
    Round, arg, connector, load_average, measure, quantile_ms, run_until,
};
use serde::{Deserialize, Serialize};

/// Number of CAs (DISA's DoD and ECA CAs).
const CAS: usize = 49;
/// Total DER wanted, bytes (DISA: more than 231 MB).
const TOTAL: f64 = 232.0 * 1024.0 * 1024.0;
/// Each CRL is this share of the one before (a few large CRLs, many small ones).
const RATIO: f64 = 0.77;
/// Smallest CRL, bytes.
const SMALLEST: usize = 2_000;
/// Usual serial length of the CAs, in turn.
const SERIAL_LENS: [usize; 10] = [16, 3, 8, 10, 4, 16, 9, 3, 12, 7];
/// Bump when the generated files change shape.
const VERSION: u32 = 1;
/// CRLs are valid this long; regenerated when older than two thirds of it.
const VALID_DAYS: i64 = 30;

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// One CA of the estate and its CRL file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EstateCa {
    cert_pem: String,
    file: String,
    bytes: u64,
    entries: u64,
}

/// What was generated (the CA keys are not kept: everything that needs them is made at
/// generation time).
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    created: i64,
    cas: Vec<EstateCa>,
    /// A client certificate of CA 0 (the largest CRL's CA), not listed.
    client_cert_pem: String,
    client_key_pem: String,
    /// CRL number 2 of CA 0, for the refresh.
    refresh_file: String,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn estate_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    // <target>/release/deps/crl_estate-* → <target>/release/crl-estate
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("crl-estate")
}

fn sizes() -> Vec<usize> {
    (0..CAS)
        .map(|i| ((TOTAL * (1.0 - RATIO) * RATIO.powi(i as i32)) as usize).max(SMALLEST))
        .collect()
}

fn generate(dir: &Path) -> Manifest {
    let started = Instant::now();
    std::fs::create_dir_all(dir).expect("estate dir");
    let mut cas = Vec::new();
    let (mut client_cert_pem, mut client_key_pem) = (String::new(), String::new());
    for (i, target) in sizes().into_iter().enumerate() {
        let ca = Ca::root(&format!("Estate CA-{i:02}"));
        let shape = EstateShape {
            target_bytes: target,
            main_serial_len: SERIAL_LENS[i % SERIAL_LENS.len()],
            seed: 1000 + i as u64,
            valid_days: VALID_DAYS,
        };
        let (der, entries) = ca.estate_crl(1, shape);
        let file = format!("ca-{i:02}.crl");
        std::fs::write(dir.join(&file), &der).expect("write CRL");
        if i == 0 {
            let client = ca.client("estate user", &[0x7e, 0x57, 0x01]);
            (client_cert_pem, client_key_pem) = (client.cert_pem, client.key_pem);
            let (refresh, _) = ca.estate_crl(2, EstateShape { seed: 999, ..shape });
            std::fs::write(dir.join("refresh.crl"), refresh).expect("write CRL");
        }
        cas.push(EstateCa {
            cert_pem: ca.cert_pem(),
            file,
            bytes: der.len() as u64,
            entries: entries as u64,
        });
    }
    let m = Manifest {
        version: VERSION,
        created: unix_now(),
        cas,
        client_cert_pem,
        client_key_pem,
        refresh_file: "refresh.crl".into(),
    };
    for zip in ["estate.zip", "estate-refresh.zip"] {
        let _ = std::fs::remove_file(dir.join(zip));
    }
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&m).expect("json"),
    )
    .expect("write manifest");
    println!(
        "generated the estate in {:.1} s (not part of any measurement)",
        started.elapsed().as_secs_f64()
    );
    m
}

fn estate(dir: &Path, regenerate: bool) -> Manifest {
    let fresh = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .filter(|m| m.version == VERSION && unix_now() - m.created < VALID_DAYS * 86_400 * 2 / 3);
    match fresh {
        Some(m) if !regenerate => m,
        _ => generate(dir),
    }
}

/// The 49 CRLs in one ZIP archive (deflated, as DISA ships them), CA 0's replaced by
/// `first` when given. Cached next to the CRLs.
fn zip_of(dir: &Path, m: &Manifest, name: &str, first: Option<&str>) -> Vec<u8> {
    let path = dir.join(name);
    if let Ok(b) = std::fs::read(&path) {
        return b;
    }
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    for (i, ca) in m.cas.iter().enumerate() {
        let file = if i == 0 {
            first.unwrap_or(&ca.file)
        } else {
            &ca.file
        };
        w.start_file(format!("crls/{}", ca.file), opts)
            .expect("zip");
        w.write_all(&std::fs::read(dir.join(file)).expect("CRL"))
            .expect("zip");
    }
    let bytes = w.finish().expect("zip").into_inner();
    std::fs::write(&path, &bytes).expect("write zip");
    bytes
}

/// `VmRSS` and `VmHWM` of a process, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Start counting the peak RSS of `pid` again from its current RSS.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Der,
    Zip,
}

struct Target {
    process: Gateway,
    smtp: SocketAddr,
}

fn config(server_ca: &Ca, m: &Manifest, sources: serde_json::Value, port: u16) -> GatewayConfig {
    let server = server_ca.server("127.0.0.1");
    let bundle: String = m.cas.iter().map(|c| c.cert_pem.as_str()).collect();
    let mut v = serde_json::json!({
        "apiVersion": "postern.dev/gateway/v1",
        "listeners": {"bench": {
            "address": "127.0.0.1", "port": port, "hostname": "bench.test",
            "tls": {"certificateChainPem": server.cert_pem, "privateKeyPem": server.key_pem, "clientCaPem": bundle},
            "defaultPolicy": "certs", "nextHop": {"host": "127.0.0.1", "port": free_port()},
            "maxConnections": 10000
        }},
        "policies": {"certs": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}}
    });
    if !sources.is_null() {
        v["crlSources"] = sources;
    }
    serde_json::from_value(v).expect("config")
}

/// Start a gateway with `config`: the release `postern-gateway` next to this benchmark,
/// or the binary named by `POSTERN_BENCH_GATEWAY` (to compare two builds).
fn launch(config: &GatewayConfig) -> anyhow::Result<Gateway> {
    let mut b = crl::launch(config, "warn");
    if let Some(bin) = std::env::var_os("POSTERN_BENCH_GATEWAY") {
        b = b.bin(Path::new(&bin));
    }
    b.start()
}

/// How many of the estate's CRLs the gateway has in force (from `GET /crl`).
fn in_force(gw: &Gateway) -> Vec<String> {
    let Ok((200, body)) = gw.http_get("/crl") else {
        return Vec::new();
    };
    let all: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut issuers = Vec::new();
    for source in all.as_array().into_iter().flatten() {
        for c in source["crls"].as_array().into_iter().flatten() {
            issuers.push(c["issuer"].as_str().unwrap_or("").to_owned());
        }
    }
    issuers
}

/// The crlNumber in force for CA 0.
/// The CRL number of CA 0's CRL in force, from the status of `source` alone (a small
/// answer: the observer must not load the gateway it measures).
fn first_crl_number(admin: SocketAddr, source: &str) -> Option<String> {
    let (_, body) = http_get(admin, &format!("/crl/{source}")).ok()?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    status["crls"]
        .as_array()?
        .iter()
        .find(|c| c["issuer"].as_str().is_some_and(|i| i.contains("CA-00")))
        .and_then(|c| c["crlNumber"].as_str().map(str::to_owned))
}

/// Watch, on a thread of its own (not the load client's runtime, whose latencies are
/// being measured), for CA 0's CRL number 2 to be in force; returns when it was seen.
fn watch_for_refresh(admin: SocketAddr, source: &'static str) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        loop {
            if first_crl_number(admin, source).as_deref() == Some("2") {
                return Instant::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let format = match arg::<String>("--format", "der".into()).as_str() {
        "zip" => Format::Zip,
        _ => Format::Der,
    };
    let seconds: u64 = arg("--seconds", 5);
    let rounds: usize = arg("--rounds", 4);
    let concurrency: usize = arg("--concurrency", 8);
    let regenerate = std::env::args().any(|a| a == "--regenerate");
    println!(
        "machine: {} CPUs, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    let dir = estate_dir();
    let m = estate(&dir, regenerate);
    let total: u64 = m.cas.iter().map(|c| c.bytes).sum();
    let entries: u64 = m.cas.iter().map(|c| c.entries).sum();
    let largest = m.cas.iter().map(|c| c.bytes).max().unwrap_or(0);
    let small = m.cas.iter().filter(|c| c.bytes < 1 << 20).count();
    println!(
        "estate: {} CAs, {} CRLs, {:.1} MiB DER ({:.0} MB), {entries} entries; largest {:.1} MiB, \
         {small} under 1 MiB; files in {}",
        m.cas.len(),
        m.cas.len(),
        mib(total as f64),
        total as f64 / 1e6,
        mib(largest as f64),
        dir.display()
    );

    let http = HttpServer::start();
    let sources = match format {
        Format::Der => {
            let mut s = serde_json::Map::new();
            for (i, ca) in m.cas.iter().enumerate() {
                let path = format!("/{}", ca.file);
                http.put(&path, std::fs::read(dir.join(&ca.file)).expect("CRL"));
                // CA 0's source is asked every 10 s so the refresh below is picked up
                // quickly (conditional GET: 304 until then).
                let interval = if i == 0 { "10s" } else { "1h" };
                s.insert(
                    format!("ca-{i:02}"),
                    serde_json::json!({"format": "Asn1", "primaryUrl": http.url(&path),
                        "interval": interval, "appliesTo": ["InboundSmtpTls"]}),
                );
            }
            serde_json::Value::Object(s)
        }
        Format::Zip => {
            let z = zip_of(&dir, &m, "estate.zip", None);
            println!("archive: {:.1} MiB deflated", mib(z.len() as f64));
            http.put("/estate.zip", z);
            serde_json::json!({"estate": {"format": "Zip", "primaryUrl": http.url("/estate.zip"),
                "interval": "10s", "appliesTo": ["InboundSmtpTls"]}})
        }
    };

    // 1. Start with every CRL to load: time until all are in force, peak RSS.
    let server_ca = Ca::root("Bench Server CA");
    let port = free_port();
    let started = Instant::now();
    let with = launch(&config(&server_ca, &m, sources, port))
        .expect("postern-gateway (build the release binary first)");
    let ready = started.elapsed();
    let pid = with.pid();
    let mut sampled_peak = 0;
    let mut first_seen = None;
    let all_in = loop {
        let n = in_force(&with).len();
        sampled_peak = sampled_peak.max(memory_kib(pid).0);
        if n > 0 && first_seen.is_none() {
            first_seen = Some(started.elapsed());
        }
        if n >= m.cas.len() {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {n} CRLs in force after 5 minutes:\n{}",
            with.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (rss_loaded, peak_load) = memory_kib(pid);
    let index_bytes: u64 = {
        let (_, body) = with.http_get("/crl").expect("GET /crl");
        let all: serde_json::Value = serde_json::from_str(&body).expect("json");
        all.as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["crls"].as_array().cloned().unwrap_or_default())
            .map(|c| c["indexBytes"].as_u64().unwrap_or(0))
            .sum()
    };
    println!(
        "in force: gateway ready {:.2} s after start, first CRL {:.2} s, all {} {:.2} s \
         (target <= 10 s: {})",
        ready.as_secs_f64(),
        first_seen.unwrap_or_default().as_secs_f64(),
        m.cas.len(),
        all_in.as_secs_f64(),
        met(all_in <= Duration::from_secs(10))
    );
    println!(
        "indexes: {:.1} MiB ({:.2}x the DER); RSS once all in force {:.1} MiB, peak while \
         loading (VmHWM) {:.1} MiB",
        mib(index_bytes as f64),
        index_bytes as f64 / total as f64,
        kib_mib(rss_loaded),
        kib_mib(peak_load)
    );

    // 2. Session rate, everything loaded against nothing loaded.
    let bare_port = free_port();
    let without = Target {
        process: launch(&config(&server_ca, &m, serde_json::Value::Null, bare_port))
            .expect("gateway without CRLs"),
        smtp: SocketAddr::from(([127, 0, 0, 1], bare_port)),
    };
    let with = Target {
        process: with,
        smtp: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let tls = connector(&server_ca, &m.client_cert_pem, &m.client_key_pem);
    let warm = measure(&with.process, with.smtp, &tls, 2, concurrency).await;
    assert!(
        warm.rate > 0.0 && warm.failed == 0,
        "sessions fail on the gateway with CRLs: {} failed\n{}",
        warm.failed,
        with.process.log_tail(20)
    );
    let _ = measure(&without.process, without.smtp, &tls, 2, concurrency).await;
    let (mut sum_with, mut sum_without, mut ratios) = (0.0, 0.0, Vec::new());
    for round in 1..=rounds {
        let (a, b): (Round, Round) = if round % 2 == 1 {
            let b = measure(&without.process, without.smtp, &tls, seconds, concurrency).await;
            (
                measure(&with.process, with.smtp, &tls, seconds, concurrency).await,
                b,
            )
        } else {
            let a = measure(&with.process, with.smtp, &tls, seconds, concurrency).await;
            (
                a,
                measure(&without.process, without.smtp, &tls, seconds, concurrency).await,
            )
        };
        println!(
            "round {round}: without CRLs {}, with {} CRLs {}, ratio {:.3}",
            b.summary(),
            m.cas.len(),
            a.summary(),
            a.rate / b.rate
        );
        sum_with += a.rate;
        sum_without += b.rate;
        ratios.push(a.rate / b.rate);
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = sum_with / sum_without;
    println!(
        "session rate: without {:.0}/s, with {:.0}/s, ratio of means {ratio:.3} (rounds {:.3}–{:.3}; \
         target >= 0.98: {})",
        sum_without / rounds as f64,
        sum_with / rounds as f64,
        ratios[0],
        ratios[ratios.len() - 1],
        met(ratio >= 0.98)
    );
    drop(without);

    // 3. Steady RSS: after the loads and the session runs.
    std::thread::sleep(Duration::from_secs(2));
    let (steady, _) = memory_kib(pid);
    let steady_target = 0.4 * total as f64 / 1024.0 + 30.0 * 1024.0;
    println!(
        "steady RSS {:.1} MiB (target <= 0.4 x {:.1} + 30 = {:.1} MiB: {}); peak while loading \
         {:.1} MiB (target <= steady + largest CRL = {:.1} MiB: {})",
        kib_mib(steady),
        mib(total as f64),
        steady_target / 1024.0,
        met(steady as f64 <= steady_target),
        kib_mib(peak_load),
        kib_mib(steady) + mib(largest as f64),
        met(peak_load as f64 <= steady as f64 + largest as f64 / 1024.0)
    );

    // 4. Handshake latency idle, then during a refresh of the largest CRL.
    let idle = measure(&with.process, with.smtp, &tls, seconds, concurrency).await;
    let mut idle_lat: Vec<Duration> = idle.handshakes.iter().map(|h| h.1).collect();
    let idle_p50 = quantile_ms(&mut idle_lat, 0.5);
    let idle_p99 = quantile_ms(&mut idle_lat, 0.99);
    reset_peak(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let tls = tls.clone();
        let smtp = with.smtp;
        let process = &with.process;
        let driver = run_until(process, smtp, &tls, concurrency, stop.clone());
        // Put the new CRL up once the clients are running; the gateway asks every 10 s.
        let watched = match format {
            Format::Der => "ca-00",
            Format::Zip => "estate",
        };
        let admin = SocketAddr::from(([127, 0, 0, 1], process.admin_port()));
        let watcher = watch_for_refresh(admin, watched);
        let refresh = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let seen = http.requests().len();
            let path = match format {
                Format::Der => {
                    let path = format!("/{}", m.cas[0].file);
                    let crl = std::fs::read(dir.join(&m.refresh_file)).expect("refresh CRL");
                    http.put(&path, crl);
                    path
                }
                Format::Zip => {
                    let z = zip_of(&dir, &m, "estate-refresh.zip", Some(&m.refresh_file));
                    http.put("/estate.zip", z);
                    "/estate.zip".to_owned()
                }
            };
            // The fetch starts when the server sees the request for the new file.
            let fetch_at = loop {
                let reqs = http.requests();
                if reqs[seen..]
                    .iter()
                    .any(|r| r.path == path && r.status == 200)
                {
                    break Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let in_force_at = tokio::task::spawn_blocking(move || watcher.join())
                .await
                .expect("watcher task")
                .expect("watcher thread");
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::Relaxed);
            (fetch_at, in_force_at)
        };
        tokio::join!(driver, refresh)
    };
    let (during, (fetch_at, in_force_at)) = load;
    let (_, peak_refresh) = memory_kib(pid);
    let window_start = fetch_at - Duration::from_millis(100);
    let window_end = in_force_at + Duration::from_millis(100);
    let mut during_lat: Vec<Duration> = during
        .handshakes
        .iter()
        .filter(|(end, took)| *end >= window_start && *end - *took <= window_end)
        .map(|h| h.1)
        .collect();
    let n_window = during_lat.len();
    let p50 = quantile_ms(&mut during_lat, 0.5);
    let p99 = quantile_ms(&mut during_lat, 0.99);
    println!(
        "refresh of the largest CRL ({:.1} MiB): in force {:.2} s after its fetch started; \
         {n_window} handshakes overlapped it ({} failed in the run)",
        mib(largest as f64),
        in_force_at.duration_since(fetch_at).as_secs_f64(),
        during.failed
    );
    println!(
        "handshake latency idle p50 {idle_p50:.2} ms p99 {idle_p99:.2} ms ({} handshakes); during \
         the refresh p50 {p50:.2} ms p99 {p99:.2} ms: ratio {:.2} (target <= 1.2: {})",
        idle.handshakes.len(),
        p99 / idle_p99,
        met(p99 <= 1.2 * idle_p99)
    );
    let (rss_after, _) = memory_kib(pid);
    println!(
        "peak RSS during the refresh (VmHWM since steady) {:.1} MiB (target <= steady + largest \
         CRL = {:.1} MiB: {}); RSS after {:.1} MiB",
        kib_mib(peak_refresh),
        kib_mib(steady) + mib(largest as f64),
        met(peak_refresh as f64 <= steady as f64 + largest as f64 / 1024.0),
        kib_mib(rss_after)
    );
    println!("load average at the end {}", load_average());
}
