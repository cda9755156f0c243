//! The chart's alert rules (templates/monitoring/prometheusrule.yaml), tested rather than
//! only linted: `promtool check rules`, `promtool test rules` over
//! tests/support/prometheus/rules.test.yaml (every alert fires under the series it is
//! for and stays quiet otherwise), and every expression's metrics and labels against a
//! real gateway's `/metrics` scraped by a real Prometheus.

use std::collections::BTreeSet;
use std::process::Command;

use postern_testkit::prometheus::promtool;
use postern_testkit::workspace::workspace_root;
use postern_tests::helm::{find, render_with};
use postern_tests::observability::{NOT_YET_EXPORTED, ScrapedGateway, alerts};
use serde_json::Value;

/// The PrometheusRule's `spec` (its `groups`) as the chart renders it with `sets`.
fn rules(sets: &[&str]) -> Option<Value> {
    let objects = render_with(sets).unwrap();
    find(&objects, "PrometheusRule", None)
        .first()
        .map(|o| o["spec"].clone())
}

fn enabled_rules() -> Value {
    rules(&["metrics.prometheusRule.enabled=true"]).expect("a PrometheusRule")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

#[test]
fn off_by_default() {
    assert!(rules(&[]).is_none());
}

#[test]
fn promtool_checks_the_rules_and_every_alert_fires_and_stays_quiet_in_unit_tests() {
    let spec = enabled_rules();
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: the rule file is the rendered spec as it is.
    std::fs::write(
        dir.path().join("postern-rules.yaml"),
        serde_json::to_string_pretty(&spec).unwrap(),
    )
    .unwrap();
    let tests = workspace_root().join("tests/support/prometheus/rules.test.yaml");
    let test_text = std::fs::read_to_string(&tests).unwrap();
    std::fs::write(dir.path().join("rules.test.yaml"), &test_text).unwrap();
    let promtool = promtool().unwrap();
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.path().join("postern-rules.yaml")));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(dir.path().join("rules.test.yaml")));
    assert!(out.contains("SUCCESS"), "{out}");

    // Every alert has a unit test where it fires and one where it stays quiet.
    let unit: Value = serde_saphyr::from_str(&test_text).unwrap();
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in unit["tests"].as_array().unwrap() {
        for a in t["alert_rule_test"].as_array().unwrap() {
            let name = a["alertname"].as_str().unwrap().to_owned();
            if a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()) {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for (alert, _) in alerts(&spec) {
        assert!(
            fires.contains(&alert),
            "{alert}: no unit test where it fires"
        );
        assert!(
            quiet.contains(&alert),
            "{alert}: no unit test where it stays quiet"
        );
    }
}

#[test]
fn thresholds_come_from_values() {
    let spec = rules(&[
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.crlStaleLeadSeconds=600",
        "metrics.prometheusRule.certificateWarningDays=45",
        "metrics.prometheusRule.notProgrammedFor=3m",
    ])
    .unwrap();
    let text = spec.to_string();
    assert!(
        text.contains("postern_crl_seconds_until_stale < 600"),
        "{text}"
    );
    assert!(
        text.contains("postern_certificate_expiry_seconds < 45 * 86400"),
        "{text}"
    );
    assert!(text.contains("\"for\":\"3m\""), "{text}");
}

#[test]
fn every_expression_reads_metrics_and_labels_a_running_gateway_exports() {
    let spec = enabled_rules();
    let world = ScrapedGateway::start().unwrap();
    let skipped = world.assert_all_exported(&alerts(&spec));
    // The expiry the certificate alerts read is the server certificate's notAfter.
    let data = world
        .prometheus
        .api(&format!(
            "query?query={}",
            postern_testkit::prometheus::url_encode(
                "postern_certificate_expiry_seconds{listener=\"submission\",kind=\"server\"}"
            )
        ))
        .unwrap();
    let value: f64 = data["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let expected = world.server_not_after as f64 - now;
    assert!((value - expected).abs() < 120.0, "{value} vs {expected}");
    // What was skipped is exactly the listed exemptions and the controller's metrics.
    for s in &skipped {
        assert!(
            NOT_YET_EXPORTED.iter().any(|(m, _)| m == s) || s.starts_with("postern_controller_"),
            "{s}"
        );
    }
    // The controller's metrics the rules read are ones it registers.
    let controller_metrics =
        std::fs::read_to_string(workspace_root().join("controller/src/operator/metrics.rs"))
            .unwrap();
    for s in skipped
        .iter()
        .filter(|s| s.starts_with("postern_controller_"))
    {
        let short = s.trim_start_matches("postern_controller_");
        assert!(
            controller_metrics.contains(&format!("\"{short}\"")),
            "{s} is not registered by the controller"
        );
    }
}

#[test]
fn every_runbook_url_has_its_section_in_troubleshooting_md() {
    let spec = enabled_rules();
    let doc = std::fs::read_to_string(workspace_root().join("docs/troubleshooting.md")).unwrap();
    let anchors: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for r in spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
    {
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let (base, anchor) = url.split_once('#').unwrap();
        assert!(base.ends_with("docs/troubleshooting.md"), "{url}");
        assert!(
            anchors.contains(anchor),
            "{}: no section {anchor}",
            r["alert"]
        );
    }
}
