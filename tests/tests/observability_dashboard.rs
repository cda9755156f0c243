//! The chart's Grafana dashboard (dashboards/postern.json, a ConfigMap for Grafana's
//! sidecar): valid JSON as rendered, and every query's metrics and labels exist on a real
//! gateway's `/metrics` scraped by a real Prometheus.

use std::collections::BTreeSet;

use postern_tests::helm::{find, render_with};
use postern_tests::observability::{NOT_YET_EXPORTED, ScrapedGateway, queries};
use serde_json::Value;

fn config_maps(sets: &[&str]) -> Vec<Value> {
    let objects = render_with(sets).unwrap();
    find(&objects, "ConfigMap", None)
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .cloned()
        .collect()
}

/// The dashboard as the chart renders it.
fn dashboard() -> Value {
    let maps = config_maps(&["metrics.grafanaDashboard.enabled=true"]);
    assert_eq!(maps.len(), 1, "one dashboard ConfigMap");
    let text = maps[0]["data"]["postern.json"].as_str().unwrap();
    serde_json::from_str(text).expect("the dashboard is valid JSON")
}

#[test]
fn off_by_default_and_labelled_for_the_sidecar_when_on() {
    assert!(config_maps(&[]).is_empty());
    let d = dashboard();
    assert_eq!(d["uid"], "postern-overview");
    // Panel ids are unique (Grafana keys panels by them).
    let ids: Vec<u64> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len());
}

#[test]
fn the_dashboard_shows_what_operators_look_for() {
    let d = dashboard();
    let all: String = queries(&d)
        .into_iter()
        .map(|(_, q)| q)
        .collect::<Vec<_>>()
        .join("\n");
    for metric in [
        "postern_connections_total",
        "postern_messages_total",
        "postern_refusals_total",
        "postern_auth_total",
        "postern_crl_seconds_until_stale",
        "postern_crl_fetches_total",
        "postern_crl_entries",
        "postern_crl_index_bytes",
        "postern_ldap_query_duration_seconds_bucket",
        "postern_ldap_failovers_total",
        "postern_relay_seconds_bucket",
        "postern_config_generation",
        "postern_certificate_expiry_seconds",
    ] {
        assert!(all.contains(metric), "no panel shows {metric}");
    }
}

#[test]
fn every_query_reads_metrics_and_labels_a_running_gateway_exports() {
    let d = dashboard();
    let world = ScrapedGateway::start().unwrap();
    let skipped = world.assert_all_exported(&queries(&d));
    for s in &skipped {
        assert!(NOT_YET_EXPORTED.iter().any(|(m, _)| m == s), "{s} skipped");
    }
}
