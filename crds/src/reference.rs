//! The configuration reference (`docs/reference.md`), generated from the CRD schemas so it
//! can never disagree with what the API server enforces: every field of every kind with
//! its type, constraints, default and description. `crdgen --reference` writes it; a test
//! fails when the committed file is stale.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::generate::crds;

/// Where the reference lives, relative to the workspace root.
pub const REFERENCE_PATH: &str = "docs/reference.md";

/// One row of a field table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRow {
    /// Dotted path below `spec`/`status`, `[]` for list items, e.g. `servers[].url`.
    pub path: String,
    /// Type with constraints, e.g. `string, one of Asn1, Pem`.
    pub type_: String,
    /// Whether the field must be set (where its parent is set).
    pub required: bool,
    /// The schema default, as JSON.
    pub default: Option<String>,
    /// The description, on one line.
    pub description: String,
}

/// The rows of a schema (the `spec` or `status` object), depth first in field order.
pub fn rows(schema: &Value) -> Vec<FieldRow> {
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

fn walk(schema: &Value, prefix: &str, out: &mut Vec<FieldRow>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.push(FieldRow {
            path: path.clone(),
            type_: type_of(prop),
            required: required.contains(&name.as_str()),
            default: prop.get("default").map(Value::to_string),
            description: one_line(prop.get("description").and_then(Value::as_str)),
        });
        walk(prop, &path, out);
        if let Some(items) = prop.get("items") {
            walk(items, &format!("{path}[]"), out);
        }
    }
}

/// The type of a property with its constraints, readable.
fn type_of(p: &Value) -> String {
    let base = if p.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        "integer or string".to_owned()
    } else {
        match p.get("type").and_then(Value::as_str) {
            Some("array") => {
                let item = p.get("items").map(type_name).unwrap_or_default();
                format!("list of {item}")
            }
            Some(t) => t.to_owned(),
            None => "any".to_owned(),
        }
    };
    let mut parts = vec![base];
    let s = |k: &str| p.get(k).map(|v| v.to_string());
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        let v: Vec<String> = values
            .iter()
            .map(|v| match v.as_str() {
                Some(s) => format!("`{s}`"),
                None => format!("`{v}`"),
            })
            .collect();
        parts.push(format!("one of {}", v.join(", ")));
    }
    if let Some(items) = p.get("items")
        && let Some(values) = items.get("enum").and_then(Value::as_array)
    {
        let v: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|s| format!("`{s}`"))
            .collect();
        parts.push(format!("items one of {}", v.join(", ")));
    }
    if let Some(f) = p.get("format").and_then(Value::as_str) {
        parts.push(format!("format {f}"));
    }
    if let Some(pat) = p.get("pattern").and_then(Value::as_str) {
        parts.push(format!("pattern `{}`", pat.replace('|', "\\|")));
    }
    for (key, label) in [
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ] {
        if let Some(v) = s(key) {
            parts.push(format!("{label} {}", v.trim_end_matches(".0")));
        }
    }
    if p.get("nullable") == Some(&Value::Bool(true)) {
        parts.push("nullable".into());
    }
    parts.join(", ")
}

fn type_name(p: &Value) -> String {
    if p.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return "integer or string".into();
    }
    p.get("type")
        .and_then(Value::as_str)
        .unwrap_or("any")
        .to_owned()
}

fn one_line(text: Option<&str>) -> String {
    text.unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn table(out: &mut String, rows: &[FieldRow]) {
    out.push_str("| Field | Type | Required | Default | Description |\n");
    out.push_str("|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            r.path,
            r.type_,
            if r.required { "yes" } else { "" },
            r.default
                .as_deref()
                .map(|d| format!("`{d}`"))
                .unwrap_or_default(),
            r.description
        );
    }
}

fn kind_section(out: &mut String, crd: &CustomResourceDefinition) {
    let spec = &crd.spec;
    let version = &spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).expect("a schema always serialises"))
        .unwrap_or(Value::Null);
    let kind = &spec.names.kind;
    let _ = writeln!(out, "## {kind}\n");
    let short = spec.names.short_names.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "`{}/{}`, namespaced. `kubectl get {}`{}.\n",
        spec.group,
        version.name,
        spec.names.plural,
        if short.is_empty() {
            String::new()
        } else {
            format!(
                " (short names: {})",
                short
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_line(Some(d)).replace("\\|", "|"));
    }
    for part in ["spec", "status"] {
        let Some(s) = schema.pointer(&format!("/properties/{part}")) else {
            continue;
        };
        let _ = writeln!(out, "### {kind} `{part}`\n");
        table(out, &rows(s));
        out.push('\n');
    }
}

/// The whole reference page.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated by `cargo run -p postern-crds --bin crdgen -- --reference` from the CRD \
         schemas; do not edit. -->\n\
         # Configuration reference\n\n\
         Every field of the five resources, generated from the CRDs the API server enforces \
         (`charts/postern/crds/`). Field names are relative to `spec` (or `status`); `[]` marks \
         list items. \"Required\" applies where the parent object is set. Durations are strings \
         such as `30s`, `5m`, `1h`; sizes are Kubernetes quantities such as `10Mi`. Defaults not \
         shown in the Default column are applied by the controller and named in the \
         description. Which fields go together is also checked by CEL validation rules in the \
         CRDs, enforced by Kubernetes 1.25 and later (listed in \
         [resources](resources.md#refused-at-kubectl-apply)); what a reference must point at is \
         checked by the controller and reported in `status` (see \
         [troubleshooting](troubleshooting.md)), and by the optional admission webhook. \
         `kubectl explain <kind>.spec` shows the same descriptions.\n\n",
    );
    let crds = crds();
    out.push_str("| Kind | Short names | What it is |\n|---|---|---|\n");
    for crd in &crds {
        let kind = &crd.spec.names.kind;
        let desc = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.description.clone());
        let _ = writeln!(
            out,
            "| [{kind}](#{}) | {} | {} |",
            kind.to_lowercase(),
            crd.spec
                .names
                .short_names
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            one_line(desc.as_deref())
        );
    }
    out.push('\n');
    for crd in &crds {
        kind_section(&mut out, crd);
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_walk_objects_and_lists_with_constraints() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["servers"],
            "properties": {
                "servers": {"type": "array", "minItems": 1, "description": "Tried\n in order.",
                    "items": {"type": "object", "required": ["url"],
                        "properties": {"url": {"type": "string", "pattern": "^ldaps?://"}}}},
                "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                "size": {"x-kubernetes-int-or-string": true, "nullable": true},
                "count": {"type": "integer", "format": "uint32", "minimum": 0.0}
            }
        });
        let r = rows(&schema);
        let paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["count", "mode", "servers", "servers[].url", "size"]);
        assert_eq!(r[0].type_, "integer, format uint32, min 0");
        assert_eq!(r[1].type_, "string, one of `A`, `B`");
        assert_eq!(r[1].default.as_deref(), Some("\"A\""));
        assert_eq!(r[2].type_, "list of object, min items 1");
        assert!(r[2].required);
        assert_eq!(r[2].description, "Tried in order.");
        assert_eq!(r[3].type_, "string, pattern `^ldaps?://`");
        assert!(r[3].required);
        assert_eq!(r[4].type_, "integer or string, nullable");
    }

    #[test]
    fn the_page_covers_every_kind_and_field() {
        let page = reference_markdown();
        for kind in crate::KINDS {
            assert!(page.contains(&format!("## {kind}\n")), "{kind}");
            assert!(page.contains(&format!("### {kind} `spec`")), "{kind}");
        }
        for field in [
            "`certificateAuthQuery.filter`",
            "`smtpAuthQuery.allowanceFilter`",
            "`certificate.allowSmtpAuthFallback`",
            "`ldap.allowance.response.enhancedCode`",
            "`hostAccessTable[].cidrs`",
            "`tls.clientCaSecretRef.key`",
            "`limits.maxMessageSize`",
            "`requireTlsForSmtpAuth`",
            "`schedule.interval`",
            "`conditions[].reason`",
            "`nextUpdate`",
        ] {
            assert!(page.contains(field), "{field}");
        }
        // Every table row has five cells: no description broke the table.
        for line in page.lines().filter(|l| l.starts_with("| `")) {
            let cells = line.replace("\\|", "").matches('|').count();
            assert_eq!(cells, 6, "{line}");
        }
    }
}
