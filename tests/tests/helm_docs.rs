//! The operator docs keep up with the code: every status reason and Event reason the
//! controller can write is explained in docs/troubleshooting.md, and every value of the
//! chart is named in docs/install.md.

use std::collections::BTreeSet;
use std::path::Path;

use postern_testkit::workspace::workspace_root;
use postern_tests::helm::{chart_dir, parse_yaml};
use serde_json::Value;

/// The source of `path` up to its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn is_reason(s: &str) -> bool {
    s.len() > 2
        && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The first string literal after each occurrence of `marker` (within `window` bytes)
/// that looks like a CamelCase reason.
fn literals_after(text: &str, marker: &str, window: usize, out: &mut BTreeSet<String>) {
    let mut from = 0;
    while let Some(i) = text[from..].find(marker) {
        let start = from + i + marker.len();
        let end = (start + window).min(text.len());
        let chunk = &text[start..end];
        let mut parts = chunk.split('"');
        parts.next();
        // Odd pieces are inside quotes.
        if let Some(lit) = parts.step_by(2).find(|l| is_reason(l)) {
            out.insert(lit.to_owned());
        }
        from = start;
    }
}

/// Every reason the controller writes into a condition or an Event.
fn controller_reasons() -> BTreeSet<String> {
    let src = workspace_root().join("controller/src");
    let mut out = BTreeSet::new();
    // The compiler's reasons: `Self::X => "X"`.
    let report = code(&src.join("compile/report.rs"));
    for line in report.lines() {
        if let Some((_, rest)) = line.split_once("=> \"")
            && let Some(lit) = rest.split('"').next()
            && is_reason(lit)
        {
            out.insert(lit.to_owned());
        }
    }
    // The operator's: Programmed verdicts, conditions, Events.
    for file in [
        "operator/fleet.rs",
        "operator/publisher.rs",
        "operator/status/conditions.rs",
        "operator/status/crl.rs",
        "operator/status/desired.rs",
    ] {
        let text = code(&src.join(file));
        literals_after(&text, "reason: ", 120, &mut out);
        literals_after(&text, "Cond::new(", 80, &mut out);
        literals_after(&text, "EventType::Normal,", 60, &mut out);
        literals_after(&text, "EventType::Warning,", 60, &mut out);
    }
    // Kind names sit near some of those calls; they are not reasons.
    for kind in postern_crds::KINDS {
        out.remove(kind);
    }
    out
}

#[test]
fn every_controller_reason_is_explained_in_troubleshooting() {
    let reasons = controller_reasons();
    // The extraction finds the reasons we know of (so it does not silently find none).
    for known in [
        "RefNotFound",
        "SecretNotFound",
        "InvalidFilter",
        "NoGateways",
        "GatewayRefused",
        "Pending",
        "CrlStale",
        "ConfigPublished",
        "DriftRepaired",
    ] {
        assert!(
            reasons.contains(known),
            "{known} not found in the code: {reasons:?}"
        );
    }
    let doc = std::fs::read_to_string(workspace_root().join("docs/troubleshooting.md")).unwrap();
    let missing: Vec<&String> = reasons
        .iter()
        .filter(|r| !doc.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md does not explain: {missing:?}"
    );
}

fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn every_chart_value_is_named_in_install() {
    let values =
        parse_yaml(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap()).unwrap();
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    assert!(paths.len() > 50, "{}", paths.len());
    let doc = std::fs::read_to_string(workspace_root().join("docs/install.md")).unwrap();
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| {
            let segments: Vec<&str> = p.split('.').collect();
            let last = segments[segments.len() - 1];
            // Probes and security contexts are documented as whole objects.
            let named = |s: &str| doc.contains(&format!("`{s}`"));
            !(named(p)
                || named(last)
                || named(&format!("*.{last}"))
                || (1..segments.len()).any(|i| {
                    let parent = segments[..i].join(".");
                    named(&format!("{parent}.*"))
                        || named(&format!("*.{}", segments[i..].join(".")))
                        || named(&format!("*.{}", segments[i]))
                }))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/install.md does not name: {missing:?}"
    );
}
