//! What the observability tests share: the metric selectors and grouping labels of a PromQL
//! expression, and a running gateway whose `/metrics` holds a series of every family the
//! chart's alerts and dashboard read (TLS with a client CA, a CRL source, an LDAP profile
//! with a dead first server, AUTH that succeeds, fails and is throttled, a relayed message,
//! a Listener refused for its port), scraped by a real Prometheus.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use postern_config::{self as cfg, ThrottleLimit, TlsMode};
use postern_testkit::crl::crl_pem;
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::prometheus::{Prometheus, Target};
use postern_testkit::sink::Sink;

use serde_json::Value;

use crate::clients::swaks_auth_plain;
use crate::gateway::{listener, listener_tls, policy, single, start_gateway};
use crate::slapd::{self, FRANK, Slapd, SlapdOptions};

/// Metrics that no running component of this test exports yet, with why. Each one must
/// still be a name the alert or dashboard is meant to read.
pub const NOT_YET_EXPORTED: &[(&str, &str)] = &[];

/// The controller's metrics: not on the gateway's `/metrics`; checked against a running
/// controller's metric families instead.
pub fn is_controller_metric(name: &str) -> bool {
    name.starts_with("postern_controller_")
}

/// One vector selector of an expression: the metric and the label names it matches on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The metric name as written (`postern_auth_total`).
    pub metric: String,
    /// Label names of its matchers.
    pub labels: BTreeSet<String>,
}

/// What an expression reads: its selectors and every label named in `by`, `without`,
/// `on` and `ignoring` clauses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// The vector selectors.
    pub selectors: Vec<Selector>,
    /// Grouping and matching labels.
    pub grouping: BTreeSet<String>,
}

/// Reads the selectors and grouping labels of `expr` (the subset of PromQL the chart
/// writes: metric names start with `postern_`; Grafana's `$__rate_interval` and `$var`
/// appear only inside brackets and matcher values).
pub fn reads(expr: &str) -> Reads {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Reads::default();
    let mut i = 0;
    let ident = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // A string: skip it whole.
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let word = ident(&mut i);
            let mut j = i;
            skip_ws(&mut j);
            let next = chars.get(j).copied();
            if word.starts_with("postern_") {
                let mut labels = BTreeSet::new();
                if next == Some('{') {
                    i = j + 1;
                    labels = matcher_labels(&chars, &mut i);
                }
                out.selectors.push(Selector {
                    metric: word,
                    labels,
                });
            } else if ["by", "without", "on", "ignoring"].contains(&word.as_str())
                && next == Some('(')
            {
                i = j + 1;
                while i < chars.len() && chars[i] != ')' {
                    skip_ws(&mut i);
                    let l = ident(&mut i);
                    if !l.is_empty() {
                        out.grouping.insert(l);
                    }
                    skip_ws(&mut i);
                    if chars.get(i).is_some_and(|&c| c != ')') {
                        // A comma, or anything else: move on (never loop in place).
                        i += 1;
                    }
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The label names of the matchers from `i` (just past `{`) to the closing `}`.
fn matcher_labels(chars: &[char], i: &mut usize) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut name = String::new();
    while *i < chars.len() && chars[*i] != '}' {
        let c = chars[*i];
        if c == '"' || c == '\'' {
            *i += 1;
            while *i < chars.len() && chars[*i] != c {
                *i += if chars[*i] == '\\' { 2 } else { 1 };
            }
        } else if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
        } else if c == '=' || c == '!' {
            if !name.is_empty() {
                labels.insert(std::mem::take(&mut name));
            }
        } else if c == ',' {
            name.clear();
        }
        *i += 1;
    }
    *i += 1;
    labels
}

/// Target labels every scraped series carries (what the chart's ServiceMonitor adds).
pub const TARGET_LABELS: [(&str, &str); 2] = [("namespace", "mail"), ("pod", "gw-0")];

/// A gateway with a series in every family, and a Prometheus scraping it.
#[derive(Debug)]
pub struct ScrapedGateway {
    /// The gateway.
    pub gateway: Gateway,
    /// Prometheus, having scraped it after the traffic.
    pub prometheus: Prometheus,
    /// The Listener names of its configuration.
    pub listeners: Vec<String>,
    /// The CRL source names.
    pub crl_sources: Vec<String>,
    /// `notAfter` (Unix time) of the `submission` Listener's server certificate.
    pub server_not_after: i64,
    _slapd: Slapd,
    _sink: Sink,
    _crl_server: HttpServer,
    _occupied: TcpListener,
    _dir: tempfile::TempDir,
}

impl ScrapedGateway {
    /// Starts everything, drives the traffic, waits for a scrape after it.
    pub fn start() -> Result<Self> {
        let slapd = Slapd::start(SlapdOptions::default())?;
        let sink = Sink::start(&[])?;
        let ca = Ca::long_lived("Postern Observability CA");
        let server = ca.localhost_server();
        let dir = tempfile::tempdir()?;
        let ca_path: PathBuf = ca.write(dir.path(), "ca")?;
        let crl_server = HttpServer::start();
        crl_server.put("/ca.crl", crl_pem(&ca.current_crl(1, &[])).into_bytes());

        let port = free_port();
        let mut submission = listener(port, sink.port, "relayed");
        submission.tls = Some(listener_tls(&server, Some(ca.cert_pem())));
        // One failure per client, so the second wrong password is throttled.
        let throttle = cfg::AuthThrottle {
            per_client: ThrottleLimit {
                failures: 1,
                window: cfg::Duration::from_secs(600),
            },
            ..Default::default()
        };
        let profile = slapd::ldap_smtp_auth_profile(None, throttle);
        let mut config = single(
            submission,
            policy(TlsMode::Required, false, true, true),
            Some(profile),
        );
        let submission = config.listeners.remove("smtp").expect("the listener");
        config.listeners.insert("submission".into(), submission);
        // A Listener whose port another socket holds: refused (PortUnavailable).
        let occupied = TcpListener::bind("127.0.0.1:0")?;
        let busy = listener(occupied.local_addr()?.port(), sink.port, "open");
        config.listeners.insert("busy".into(), busy);
        config.policies.insert(
            "open".into(),
            policy(TlsMode::Disabled, false, false, false),
        );
        // The first LDAP server is a closed port: every query fails over to slapd.
        let dead = format!("ldap://127.0.0.1:{}", free_port());
        let mut ldap = slapd::ldap_profile(&[dead, slapd.url()]);
        ldap.timeouts.connect = cfg::Duration::from_secs(1);
        config.ldap_profiles.insert("corp".into(), ldap);
        config.crl_sources.insert(
            "corp-ca".into(),
            serde_json::from_value(serde_json::json!({
                "format": "Pem", "primaryUrl": crl_server.url("/ca.crl"), "interval": "1m",
                "appliesTo": ["InboundSmtpTls"]
            }))?,
        );
        let gateway = start_gateway(&config)?;

        let auth = |password: &str| swaks_auth_plain(port, &ca_path, FRANK.uid, password, &[]);
        let ok = auth(FRANK.password)?;
        if !ok.replied("235") || ok.code != 0 {
            bail!("the relayed message: {}", ok.output);
        }
        let wrong = auth("wrong")?;
        if !wrong.replied("535") {
            bail!("the wrong password: {}", wrong.output);
        }
        let throttled = auth("wrong")?;
        if !throttled.replied("454") {
            bail!("the throttled AUTH: {}", throttled.output);
        }

        let admin: SocketAddr = format!("127.0.0.1:{}", gateway.admin_port()).parse()?;
        let prometheus = Prometheus::start(&[Target {
            address: admin,
            labels: TARGET_LABELS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }])?;
        prometheus.wait_scraped(1, Duration::from_secs(60))?;
        // The CRL is fetched at start; wait until its gauges are scraped.
        let deadline = Instant::now() + Duration::from_secs(30);
        while prometheus
            .series("postern_crl_seconds_until_stale")?
            .is_empty()
        {
            if Instant::now() > deadline {
                bail!("no CRL series scraped");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let listeners = config.listeners.keys().cloned().collect();
        let der = postern_config::pem::certificates(&server.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der[0])?;
        let server_not_after = cert.validity().not_after.timestamp();
        let crl_sources = config.crl_sources.keys().cloned().collect();
        Ok(Self {
            gateway,
            prometheus,
            listeners,
            crl_sources,
            server_not_after,
            _slapd: slapd,
            _sink: sink,
            _crl_server: crl_server,
            _occupied: occupied,
            _dir: dir,
        })
    }

    /// The problems of `reads` against what Prometheus scraped: a metric with no series, a
    /// matcher or grouping label none of the expression's metrics carries. Metrics of
    /// [`NOT_YET_EXPORTED`] and the controller's are skipped (`skipped` gets them).
    pub fn check(&self, what: &str, reads: &Reads, skipped: &mut BTreeSet<String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names_on_metrics: BTreeSet<String> = BTreeSet::new();
        let mut checked_any = false;
        for s in &reads.selectors {
            if NOT_YET_EXPORTED.iter().any(|(m, _)| *m == s.metric)
                || is_controller_metric(&s.metric)
            {
                skipped.insert(s.metric.clone());
                continue;
            }
            let series = match self.prometheus.series(&s.metric) {
                Ok(series) => series,
                Err(e) => {
                    problems.push(format!("{what}: {}: {e}", s.metric));
                    continue;
                }
            };
            if series.is_empty() {
                problems.push(format!("{what}: no series of {}", s.metric));
                continue;
            }
            checked_any = true;
            let labels: BTreeSet<String> = series
                .iter()
                .flat_map(|v| v.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                .collect();
            for l in &s.labels {
                if !labels.contains(l) {
                    problems.push(format!("{what}: {} has no label {l}", s.metric));
                }
            }
            names_on_metrics.extend(labels);
        }
        if checked_any {
            for l in &reads.grouping {
                if !names_on_metrics.contains(l) {
                    problems.push(format!("{what}: no metric of it has the label {l}"));
                }
            }
        }
        problems
    }
}

impl ScrapedGateway {
    /// Checks every `(what, expression)` with [`check`](Self::check) and panics listing
    /// every problem (with the gateway's log); returns the metrics skipped.
    pub fn assert_all_exported(&self, expressions: &[(String, String)]) -> BTreeSet<String> {
        let mut problems = Vec::new();
        let mut skipped = BTreeSet::new();
        for (what, expr) in expressions {
            let r = reads(expr);
            assert!(!r.selectors.is_empty(), "{what}: no metric in {expr}");
            problems.extend(self.check(what, &r, &mut skipped));
        }
        assert!(
            problems.is_empty(),
            "{}\n\ngateway log:\n{}",
            problems.join("\n"),
            self.gateway.log()
        );
        skipped
    }
}

/// (alert name, expression) of every rule.
pub fn alerts(spec: &Value) -> Vec<(String, String)> {
    spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (panel title, expression) of every query, variables' queries included.
pub fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push((format!("variable {}", v["name"]), q.to_owned()));
        }
    }
    out
}

/// The problems of the controller's metrics that `expressions` read against a running
/// controller's `/metrics` text: a `postern_controller_*` metric with no sample, or a
/// matcher label none of its samples carries (`namespace` and `pod` are target labels the
/// ServiceMonitor adds, so they need not be on the samples).
pub fn controller_metrics_missing(text: &str, expressions: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, expr) in expressions {
        for s in reads(expr).selectors {
            if !is_controller_metric(&s.metric) {
                continue;
            }
            let samples: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.strip_prefix(s.metric.as_str())
                        .is_some_and(|rest| rest.starts_with(['{', ' ']))
                })
                .collect();
            if samples.is_empty() {
                problems.push(format!("{what}: no sample of {}", s.metric));
                continue;
            }
            for l in &s.labels {
                let target = TARGET_LABELS.iter().any(|(t, _)| t == l) || l == "exported_namespace";
                if !target && !samples.iter().any(|x| x.contains(&format!("{l}=\""))) {
                    problems.push(format!("{what}: {} has no label {l}", s.metric));
                }
            }
        }
    }
    problems
}

/// Every expression the chart's alert rules and dashboard hold, both switched on:
/// `(alert or panel, expression)`.
pub fn chart_expressions() -> Result<Vec<(String, String)>> {
    let objects = crate::helm::render_with(&[
        "metrics.prometheusRule.enabled=true",
        "metrics.grafanaDashboard.enabled=true",
    ])?;
    let mut out = Vec::new();
    for rule in crate::helm::find(&objects, "PrometheusRule", None) {
        out.extend(alerts(&rule["spec"]));
    }
    for map in crate::helm::find(&objects, "ConfigMap", None) {
        if map["metadata"]["labels"]["grafana_dashboard"] == "1" {
            for text in map["data"].as_object().into_iter().flat_map(|d| d.values()) {
                out.extend(queries(&serde_json::from_str(text.as_str().unwrap_or(""))?));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_selectors_and_grouping() {
        let r = reads(
            "sum by (namespace, pod, listener) (rate(postern_messages_total{outcome=\"temp_failed\"}[5m])) / ignoring(state) postern_x",
        );
        assert_eq!(r.selectors.len(), 2);
        assert_eq!(r.selectors[0].metric, "postern_messages_total");
        assert_eq!(
            r.selectors[0].labels,
            BTreeSet::from(["outcome".to_owned()])
        );
        assert_eq!(
            r.grouping,
            BTreeSet::from(["namespace", "pod", "listener", "state"].map(String::from))
        );
    }
}
