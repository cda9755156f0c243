//! Session rate with and without a 1,000,000-entry CRL in force: STARTTLS + client
//! certificate + EHLO + QUIT against the real `postern-gateway`, two gateways side by side
//! (one with the CRL source, one without), measured in alternating rounds.
//!
//! Run: `cargo build --release -p postern-gateway && cargo bench -p postern-tests --bench crl_sessions`
//! Options after `--`: `--entries N` (1000000), `--seconds S` per round (5), `--rounds R` (6),
//! `--concurrency C` (8).
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use postern_config::GatewayConfig;
use postern_testkit::file_server::HttpServer;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_tests::crl;
use postern_tests::session_load::{Round, arg, connector, load_average};

/// A gateway under measurement and its SMTP listener.
struct Target {
    process: postern_testkit::gateway::Gateway,
    smtp: SocketAddr,
}

fn start_target(server_ca: &Ca, client_ca: &Ca, crl_url: Option<&str>) -> Target {
    let port = free_port();
    let server = server_ca.server("127.0.0.1");
    let (chain, key) = (server.cert_pem, server.key_pem);
    let mut v = serde_json::json!({
        "apiVersion": "postern.dev/gateway/v1",
        "listeners": {"bench": {
            "address": "127.0.0.1", "port": port, "hostname": "bench.test",
            "tls": {"certificateChainPem": chain, "privateKeyPem": key, "clientCaPem": client_ca.cert_pem()},
            "defaultPolicy": "certs", "nextHop": {"host": "127.0.0.1", "port": free_port()},
            "maxConnections": 10000
        }},
        "policies": {"certs": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}}
    });
    if let Some(url) = crl_url {
        v["crlSources"] = serde_json::json!({"big": {
            "format": "Asn1", "primaryUrl": url, "interval": "1h", "appliesTo": ["InboundSmtpTls"]
        }});
    }
    let config: GatewayConfig = serde_json::from_value(v).expect("config");
    let process = crl::start_gateway(&config, &[], "warn").expect(
        "postern-gateway (build the release binary first: cargo build --release -p postern-gateway)",
    );
    if crl_url.is_some() {
        process.wait_crl("big", "the big CRL in force", |s| s["crlNumber"] == "1");
    }
    Target {
        process,
        smtp: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// A round against `gw`.
async fn measure(
    gw: &Target,
    tls: &tokio_rustls::TlsConnector,
    seconds: u64,
    concurrency: usize,
) -> Round {
    postern_tests::session_load::measure(&gw.process, gw.smtp, tls, seconds, concurrency).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let entries: usize = arg("--entries", 1_000_000);
    let seconds: u64 = arg("--seconds", 5);
    let rounds: usize = arg("--rounds", 6);
    let concurrency: usize = arg("--concurrency", 8);

    let server_ca = Ca::root("Bench Server CA");
    let client_ca = Ca::root("Bench Client CA");
    let client = client_ca.client("bench user", &[0x7e, 0x57]);
    let crl = client_ca.big_crl(1, entries, 20, 10);
    println!(
        "CRL: {entries} entries, {:.1} MiB DER; client certificate not listed",
        crl.len() as f64 / (1024.0 * 1024.0)
    );
    let http = HttpServer::start();
    http.put("/big.crl", crl);
    let url = http.url("/big.crl");

    let with = start_target(&server_ca, &client_ca, Some(&url));
    let without = start_target(&server_ca, &client_ca, None);
    let v = with.process.crl_status("big").unwrap_or_default();
    println!(
        "gateway with CRL: entries {}, index {:.1} MiB",
        v["entries"],
        v["indexBytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
    );
    let tls = connector(&server_ca, &client.cert_pem, &client.key_pem);
    // Warm up both.
    let _ = measure(&with, &tls, 2, concurrency).await;
    let _ = measure(&without, &tls, 2, concurrency).await;
    let (mut sum_with, mut sum_without) = (0.0, 0.0);
    let (mut cpu_with, mut cpu_without) = (0.0, 0.0);
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        // Alternate which goes first, so neither always runs after the other.
        let (a, b) = if round % 2 == 1 {
            let b = measure(&without, &tls, seconds, concurrency).await;
            (measure(&with, &tls, seconds, concurrency).await, b)
        } else {
            let a = measure(&with, &tls, seconds, concurrency).await;
            (a, measure(&without, &tls, seconds, concurrency).await)
        };
        println!(
            "round {round}: without CRL {}, with CRL {}, rate ratio {:.3}",
            b.summary(),
            a.summary(),
            a.rate / b.rate
        );
        sum_with += a.rate;
        sum_without += b.rate;
        cpu_with += a.cpu_us;
        cpu_without += b.cpu_us;
        ratios.push(a.rate / b.rate);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let ratio = sum_with / sum_without;
    let cpu_ratio = cpu_without / cpu_with;
    println!(
        "mean: without {:.0}/s, with {:.0}/s; rate ratio of means {ratio:.3}, median round ratio {median:.3}",
        sum_without / rounds as f64,
        sum_with / rounds as f64,
    );
    println!(
        "gateway CPU per session: without {:.0} us, with {:.0} us; CPU-bound rate ratio {cpu_ratio:.3} (target >= 0.95: {})",
        cpu_without / rounds as f64,
        cpu_with / rounds as f64,
        if cpu_ratio >= 0.95 { "met" } else { "MISSED" }
    );
    let checks = with
        .process
        .http_get("/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    for line in checks
        .lines()
        .filter(|l| l.starts_with("postern_crl_checks_total") && !l.ends_with(" 0"))
    {
        println!("  {line}");
    }
    println!(
        "machine: {} CPUs, load average {} (client and both gateways share them)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
}
