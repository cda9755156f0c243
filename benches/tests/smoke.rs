//! The benchmark harness still works: `postern-bench --quick` sets up Postfix, nginx's
//! mail proxy, Postern and smtp-sink, drives every kind of load once (PROXY headers v1 and
//! v2, a cached OCSP answer from a real `openssl ocsp` included), and prints complete
//! tables without errors. Needs root, postfix, nginx with its mail module, openssl and
//! slapd (tests/support/install-deps.sh), and the
//! postern-gateway binary built beside postern-bench (`cargo build --workspace --bins`,
//! which tests/run does).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn table_rows(report: &str) -> Vec<Vec<String>> {
    report
        .lines()
        .filter(|l| {
            l.starts_with("| ") && !l.starts_with("| workload") && !l.starts_with("| state")
        })
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn quick_run_prints_complete_tables() {
    let bin = env!("CARGO_BIN_EXE_postern-bench");
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("report.md");
    let mut child = Command::new(bin)
        .arg("--quick")
        .arg("--markdown")
        .arg(&md)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postern-bench starts");
    // The harness bounds itself; this only keeps a broken one from hanging the suite.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(300) {
            // SIGTERM lets the harness stop Postfix and the gateways it started.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
            panic!("postern-bench --quick did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "postern-bench --quick failed ({status}):\n{stderr}"
    );
    let report = std::fs::read_to_string(&md).expect("the report file is written");

    for heading in [
        "## Postern and Postfix side by side",
        "## Postern and nginx's mail proxy side by side",
        "## Postern with a 10000-entry CRL",
        "## Postern behind a PROXY protocol header",
        "## Postern with a cached OCSP answer",
        "## Postern memory: idle, and per idle connection",
        "## Postern with LDAP: result cache cold vs warm",
        "## The decision log's cost",
        "Machine: ",
        "Command: ",
    ] {
        assert!(
            report.contains(heading),
            "missing {heading:?} in:\n{report}"
        );
    }
    let rows = table_rows(&report);
    let comparisons: Vec<_> = rows.iter().filter(|r| r.len() == 14).collect();
    assert_eq!(
        comparisons.len(),
        18,
        "3 Postfix side-by-side rows + 3 nginx rows + 1 CRL row + 2 PROXY rows + 1 OCSP row + 4 LDAP rows + 4 log rows:\n{report}"
    );
    for what in [
        "PROXY v1, IPv4 client vs direct",
        "PROXY v2, IPv6 client vs direct",
    ] {
        assert!(
            comparisons.iter().any(|r| r[0].ends_with(what)),
            "no row for {what}:\n{report}"
        );
    }
    for r in &comparisons {
        for (i, what) in [(2, "baseline rate"), (3, "Postern rate")] {
            let v: f64 = r[i].parse().unwrap_or(0.0);
            assert!(v > 0.0, "{what} of {:?} is {:?}:\n{report}", r[0], r[i]);
        }
        assert_eq!(r[13], "0", "errors in {:?}:\n{report}\n{stderr}", r[0]);
    }
    // The OCSP section's latency table: session and handshake, p50 and p99.
    let latency: Vec<_> = rows
        .iter()
        .filter(|r| r.len() == 5 && r[1].starts_with(['s', 'h']))
        .collect();
    assert_eq!(latency.len(), 4, "OCSP latency rows:\n{report}");
    for r in &latency {
        for cell in &r[2..4] {
            let v: f64 = cell.parse().unwrap_or(0.0);
            assert!(v > 0.0, "{} of {:?} is {cell:?}:\n{report}", r[1], r[0]);
        }
    }
    assert!(
        report.contains("time(s) during the measured rounds"),
        "{report}"
    );
    let idle: Vec<_> = rows
        .iter()
        .filter(|r| r.len() == 5 && r[1].parse::<usize>().is_ok())
        .collect();
    assert_eq!(
        idle.len(),
        3,
        "fresh + plaintext + TLS idle rows:\n{report}"
    );
    for r in &idle {
        let rss: f64 = r[2].parse().unwrap_or(0.0);
        assert!(rss > 1.0, "RSS of {:?} is {:?}", r[0], r[2]);
    }
    assert!(
        report.contains("Postfix for comparison: 20 idle plaintext sessions"),
        "{report}"
    );
}
