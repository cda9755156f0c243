//! The CRD YAML committed in the chart must be exactly what `crdgen` generates now.
//! Regenerate with `POSTERN_BLESS=1 cargo test -p postern-crds` (or run `crdgen`).

use std::path::PathBuf;

use postern_crds::generate::{CHART_CRD_DIR, crd_files, crds};

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRD_DIR)
}

#[test]
fn committed_crds_are_up_to_date() {
    let dir = chart_dir();
    let bless = std::env::var_os("POSTERN_BLESS").is_some_and(|v| v == "1");
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut stale = Vec::new();
    for (name, text) in crd_files() {
        let path = dir.join(&name);
        if bless {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == text => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(e) => stale.push(format!("{name}: {e}")),
        }
    }
    // No leftover CRD files of kinds that no longer exist.
    let expected: Vec<String> = crd_files().into_iter().map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !expected.contains(&name) {
            stale.push(format!("{name} is not generated any more"));
        }
    }
    assert!(
        stale.is_empty(),
        "the CRDs in {} are stale: {}\nregenerate with: POSTERN_BLESS=1 cargo test -p postern-crds --test crd_yaml",
        dir.display(),
        stale.join(", ")
    );
}

#[test]
fn every_crd_has_the_contracted_names_and_columns() {
    for crd in crds() {
        let spec = &crd.spec;
        assert_eq!(spec.group, "postern.dev");
        assert_eq!(spec.scope, "Namespaced");
        assert_eq!(
            spec.names.categories.as_deref(),
            Some(&["postern".to_owned()][..])
        );
        assert!(
            spec.names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{}",
            spec.names.kind
        );
        let version = &spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Ready") && columns.contains(&"Age"),
            "{columns:?}"
        );
        assert!(columns.len() >= 3, "{}: {columns:?}", spec.names.kind);
        let json = serde_json::to_string(&crd).unwrap();
        // CEL rules for single-object mistakes (crds/src/rules.rs): enforced by API
        // servers from v1.25, ignored by older ones (the v1.20 test server drops them).
        assert!(
            json.contains("x-kubernetes-validations"),
            "{}",
            spec.names.kind
        );
        assert!(json.contains("observedGeneration"));
    }
}

/// Enum values must never be YAML 1.1 booleans (`Off` would read as `false`), unless the
/// same enum also admits that boolean (`senderBinding: Off`, named so by the API, accepts
/// the `false` an unquoted `Off` becomes).
#[test]
fn no_enum_value_is_a_yaml_boolean() {
    fn walk(v: &serde_json::Value, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(values)) = map.get("enum") {
                    for value in values {
                        if let Some(s) = value.as_str() {
                            let lower = s.to_ascii_lowercase();
                            let as_bool = match lower.as_str() {
                                "y" | "yes" | "on" => Some(true),
                                "n" | "no" | "off" => Some(false),
                                _ => None,
                            };
                            if as_bool
                                .is_some_and(|b| !values.contains(&serde_json::Value::Bool(b)))
                            {
                                found.push(s.to_owned());
                            }
                        }
                    }
                }
                map.values().for_each(|v| walk(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for crd in crds() {
        walk(
            &serde_json::to_value(&crd.spec.versions[0].schema).unwrap(),
            &mut found,
        );
    }
    assert!(found.is_empty(), "{found:?}");
}
