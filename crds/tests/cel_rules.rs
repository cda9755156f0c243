//! The CEL rules generated into the CRDs (`crds/src/rules.rs`), evaluated with kube's
//! client-side CEL evaluator (kube-cel: CEL plus the Kubernetes libraries, schema defaults
//! applied first as the API server does) against valid and invalid objects: each rule
//! refuses its mistake with its message on its field, lets the boundary values through,
//! and the example manifests pass every rule.

use std::path::PathBuf;

use kube::core::cel::{ScopeContext, Validator, WarningKind, analyze_rule, compile_schema};
use postern_crds::generate::crds;
use serde_json::{Value, json};

/// The openAPIV3Schema of `kind`, as JSON.
fn schema(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// What the rules say about `spec` on an object of `kind` named `name`: `field: message`
/// for every failed rule (empty when all hold).
fn problems_named(kind: &str, name: &str, spec: Value) -> Vec<String> {
    let object = json!({
        "apiVersion": "postern.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    });
    match Validator::new().validate(&schema(kind), &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn problems(kind: &str, spec: Value) -> Vec<String> {
    problems_named(kind, "x", spec)
}

#[track_caller]
fn refused(kind: &str, spec: Value, field: &str, needle: &str) {
    let p = problems(kind, spec.clone());
    assert!(
        p.len() == 1 && p[0].starts_with(&format!("{field}: ")) && p[0].contains(needle),
        "{kind} {spec}: expected one problem on {field} with {needle:?}, got {p:?}"
    );
}

#[track_caller]
fn accepted(kind: &str, spec: Value) {
    let p = problems(kind, spec.clone());
    assert!(p.is_empty(), "{kind} {spec}: {p:?}");
}

/// `base` with `patch` merged in (objects merged key by key).
fn with(base: &Value, patch: Value) -> Value {
    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
    let mut out = base.clone();
    merge(&mut out, patch);
    out
}

fn ldap_profile() -> Value {
    json!({
        "servers": [{"url": "ldap://ldap.example.org:389"}],
        "baseDn": "dc=example,dc=org",
        "certificateAuthQuery": {"name": "cert", "filter": "(&(caccn={cn})(cacserial={sn}))"},
        "smtpAuthQuery": {"name": "auth", "filter": "(uid={u})",
            "allowanceFilter": "(&(uid={u})(|(!(caccn=*))(cacemergency>={t})))"},
    })
}

#[test]
fn every_rule_compiles_and_stays_within_the_cost_budget() {
    let mut rules = 0;
    for crd in crds() {
        let kind = crd.spec.names.kind.clone();
        let compiled = compile_schema(&schema(&kind));
        assert!(
            !compiled.has_errors(),
            "{kind}: {:?}",
            compiled.compilation_errors()
        );
        let text = serde_json::to_string(&schema(&kind)).unwrap();
        for rule in rule_texts(&schema(&kind)) {
            rules += 1;
            // Cost only: the scope check does not know comprehension variables (`all(s, ...)`).
            let warnings: Vec<_> = analyze_rule(&rule, &compiled, ScopeContext::CrdValidation)
                .into_iter()
                .filter(|w| w.kind == WarningKind::CostExceeded)
                .collect();
            assert!(warnings.is_empty(), "{kind}: {rule}: {warnings:?}");
            assert_only_standard_functions(&kind, &rule);
        }
        assert!(text.contains("x-kubernetes-validations") || kind == "GatewayReport");
    }
    assert!(rules >= 20, "{rules} rules");
}

/// Every rule of a schema, depth first.
fn rule_texts(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        rules
                            .iter()
                            .filter_map(|r| r.get("rule").and_then(Value::as_str))
                            .map(str::to_owned),
                    );
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(schema, &mut out);
    out
}

/// The rules call only functions of standard CEL, which every API server that enforces
/// rules (v1.25 on; v1.23 with the gate) has: no Kubernetes library function, whose
/// availability depends on the server's version.
fn assert_only_standard_functions(kind: &str, rule: &str) {
    const STANDARD: [&str; 8] = [
        "has",
        "matches",
        "startsWith",
        "contains",
        "all",
        "duration",
        "string",
        "int",
    ];
    // Calls are an identifier followed by '(' outside string literals.
    let mut code = String::new();
    let mut quote = None;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, c) => code.push(c),
        }
    }
    let bytes: Vec<char> = code.chars().collect();
    for (i, c) in bytes.iter().enumerate() {
        if *c != '(' {
            continue;
        }
        let start = (0..i)
            .rev()
            .take_while(|j| bytes[*j].is_alphanumeric() || bytes[*j] == '_')
            .last();
        if let Some(start) = start {
            let name: String = bytes[start..i].iter().collect();
            assert!(
                STANDARD.contains(&name.as_str()),
                "{kind}: rule {rule:?} calls {name}(), which is not standard CEL"
            );
        }
    }
}

#[test]
fn ldap_profile_filters_take_only_their_placeholders() {
    let base = ldap_profile();
    accepted("LdapProfile", base.clone());
    // Every certificate placeholder in a certificate query.
    accepted(
        "LdapProfile",
        with(
            &base,
            json!({"certificateAuthQuery": {"filter":
                "(&(a={cn})(b={sn})(c={dn})(d={issuer})(e={email})(f={upn})(g={fp})(h>={t})(i=\\7b\\7d)(j={edipi})(k={altSecIssuerSerial})(k={altSecSki})(k={altSecSha1PublicKey}))"}}),
        ),
    );
    for (query, field, filter, needle) in [
        (
            "certificateAuthQuery",
            "filter",
            "(caccn={cn})(x={bogus})",
            "allowed here: {cn} {sn} {dn} {issuer} {email} {upn} {fp} {t} {edipi} {altSecIssuerSerial} {altSecSki} {altSecSha1PublicKey}",
        ),
        (
            "certificateAuthQuery",
            "filter",
            "(uid={u})",
            "unknown placeholder, or one a certificate query cannot use",
        ),
        (
            "smtpAuthQuery",
            "filter",
            "(caccn={cn})",
            "allowed here: {u} {t}",
        ),
        (
            "smtpAuthQuery",
            "allowanceFilter",
            "(&(uid={u})(x={sn}))",
            "allowed here: {u} {t}",
        ),
    ] {
        refused(
            "LdapProfile",
            with(&base, json!({query: {field: filter}})),
            &format!("spec.{query}.{field}"),
            needle,
        );
    }
    // Braces the template grammar refuses: unclosed, lone closing, empty.
    for filter in ["(uid={u)", "(uid=u})", "(uid={})"] {
        refused(
            "LdapProfile",
            with(&base, json!({"smtpAuthQuery": {"filter": filter}})),
            "spec.smtpAuthQuery.filter",
            "literal braces",
        );
    }
}

#[test]
fn ldap_profile_start_tls_base_dn_and_timeouts() {
    let base = ldap_profile();
    refused(
        "LdapProfile",
        with(
            &base,
            json!({"startTls": true, "servers": [{"url": "ldap://a"}, {"url": "ldaps://b"}]}),
        ),
        "spec",
        "StartTLS cannot be used on an ldaps:// server",
    );
    accepted("LdapProfile", with(&base, json!({"startTls": true})));
    accepted(
        "LdapProfile",
        with(&base, json!({"servers": [{"url": "ldaps://b"}]})),
    );
    refused(
        "LdapProfile",
        with(&base, json!({"baseDn": "example.org"})),
        "spec.baseDn",
        "not a DN",
    );
    refused(
        "LdapProfile",
        with(&base, json!({"timeouts": {"connect": "0s"}})),
        "spec.timeouts.connect",
        "must be greater than 0",
    );
    refused(
        "LdapProfile",
        with(&base, json!({"timeouts": {"operation": "0.0m0s"}})),
        "spec.timeouts.operation",
        "must be greater than 0",
    );
    accepted(
        "LdapProfile",
        with(
            &base,
            json!({"timeouts": {"connect": "10ms", "operation": "0.5s"}, "cache": {"ttl": "0s"}}),
        ),
    );
}

fn listener() -> Value {
    json!({
        "port": 587,
        "hostname": "mail.example.org",
        "defaultMailFlowPolicyRef": {"name": "p"},
        "nextHop": {"host": "mx.internal"},
    })
}

#[test]
fn listener_rules() {
    accepted("Listener", listener());
    let base = listener();
    refused(
        "Listener",
        with(&base, json!({"implicitTls": true})),
        "spec",
        "implicitTls needs a server certificate",
    );
    accepted(
        "Listener",
        with(
            &base,
            json!({"implicitTls": true, "tls": {"certificateSecretRef": {"name": "t"}}}),
        ),
    );
    refused(
        "Listener",
        with(
            &base,
            json!({"maxConnections": 20, "maxConnectionsPerClient": 21}),
        ),
        "spec",
        "maxConnectionsPerClient must not exceed maxConnections",
    );
    accepted(
        "Listener",
        with(
            &base,
            json!({"maxConnections": 20, "maxConnectionsPerClient": 20}),
        ),
    );
    // Without maxConnections, its default (1000) is the limit; a per-client value left
    // out is never compared (its default may exceed a small maxConnections).
    accepted(
        "Listener",
        with(&base, json!({"maxConnectionsPerClient": 1000})),
    );
    refused(
        "Listener",
        with(&base, json!({"maxConnectionsPerClient": 1001})),
        "spec",
        "default 1000",
    );
    accepted("Listener", with(&base, json!({"maxConnections": 20})));
    refused(
        "Listener",
        with(&base, json!({"hostname": "mail example"})),
        "spec.hostname",
        "not a host name",
    );
    accepted("Listener", with(&base, json!({"hostname": "[::1]"})));
    refused(
        "Listener",
        with(&base, json!({"nextHop": {"host": "mx internal"}})),
        "spec.nextHop.host",
        "white space",
    );
    for field in ["tlsHandshake", "greeting", "command", "data", "dataTotal"] {
        refused(
            "Listener",
            with(&base, json!({"timeouts": {field: "0s"}})),
            &format!("spec.timeouts.{field}"),
            "must be greater than 0",
        );
        accepted("Listener", with(&base, json!({"timeouts": {field: "1d"}})));
    }
    for field in ["connect", "command"] {
        refused(
            "Listener",
            with(&base, json!({"nextHop": {"timeouts": {field: "0ms"}}})),
            &format!("spec.nextHop.timeouts.{field}"),
            "must be greater than 0",
        );
    }
}

#[test]
fn listener_revocation_ocsp_settings() {
    let tls = |ocsp: Value| {
        with(
            &listener(),
            json!({"tls": {"certificateSecretRef": {"name": "t"},
                           "revocation": {"mode": "OcspThenCrl", "onUnavailable": "Allow", "ocsp": ocsp}}}),
        )
    };
    accepted("Listener", tls(json!({})));
    accepted(
        "Listener",
        tls(
            json!({"responderUrl": "http://ocsp.example.mil/", "timeout": "500ms", "cacheMaxAge": "1h"}),
        ),
    );
    accepted("Listener", tls(json!({"responderUrl": ""})));
    for url in ["ldap://ocsp.example", "http://", "http://ocsp example/"] {
        refused(
            "Listener",
            tls(json!({"responderUrl": url})),
            "spec.tls.revocation.ocsp.responderUrl",
            "http:// or https:// URL",
        );
    }
    refused(
        "Listener",
        tls(json!({"timeout": "0s"})),
        "spec.tls.revocation.ocsp.timeout",
        "must be greater than 0",
    );
    refused(
        "Listener",
        tls(json!({"cacheMaxAge": "500ms"})),
        "spec.tls.revocation.ocsp.cacheMaxAge",
        "at least 1s",
    );
}

#[test]
fn mail_flow_policy_tls_combinations() {
    accepted("MailFlowPolicy", json!({"action": "Relay"}));
    accepted(
        "MailFlowPolicy",
        json!({"action": "Relay", "verifyClientCertificate": true, "requireTlsForSmtpAuth": true}),
    );
    refused(
        "MailFlowPolicy",
        json!({"action": "Relay", "tls": "Disabled", "verifyClientCertificate": true}),
        "spec",
        "verifyClientCertificate: a client certificate can only be verified over TLS",
    );
    refused(
        "MailFlowPolicy",
        json!({"action": "Relay", "tls": "Disabled", "requireTlsForSmtpAuth": true}),
        "spec",
        "requireTlsForSmtpAuth: AUTH would never be offered",
    );
    accepted(
        "MailFlowPolicy",
        json!({"action": "Reject", "tls": "Disabled", "requireSmtpAuth": true}),
    );
}

#[test]
fn smtp_auth_profile_sections_and_fallback() {
    let cert = json!({"type": "Certificate", "certificate": {"ldapProfileRef": {"name": "l"}}});
    let ldap = json!({"type": "Ldap", "ldap": {"ldapProfileRef": {"name": "l"}}});
    accepted("SmtpAuthProfile", cert.clone());
    accepted("SmtpAuthProfile", ldap.clone());
    refused(
        "SmtpAuthProfile",
        json!({"type": "Certificate"}),
        "spec",
        "type: Certificate needs spec.certificate",
    );
    refused(
        "SmtpAuthProfile",
        json!({"type": "Ldap", "certificate": {"ldapProfileRef": {"name": "l"}}}),
        "spec",
        "type: Ldap needs spec.ldap",
    );
    let p = problems(
        "SmtpAuthProfile",
        with(&cert, json!({"ldap": {"ldapProfileRef": {"name": "l"}}})),
    );
    assert!(
        p.len() == 1 && p[0].contains("set only the section of the profile's type"),
        "{p:?}"
    );
    // The fallback and its switch.
    refused(
        "SmtpAuthProfile",
        with(
            &cert,
            json!({"certificate": {"fallbackProfileRef": {"name": "ldap-auth"}}}),
        ),
        "spec.certificate",
        "fallbackProfileRef is used only with allowSmtpAuthFallback: true",
    );
    refused(
        "SmtpAuthProfile",
        with(
            &cert,
            json!({"certificate": {"allowSmtpAuthFallback": true}}),
        ),
        "spec.certificate",
        "allowSmtpAuthFallback: true needs fallbackProfileRef",
    );
    let fallback = with(
        &cert,
        json!({"certificate": {"allowSmtpAuthFallback": true, "fallbackProfileRef": {"name": "ldap-auth"}}}),
    );
    accepted("SmtpAuthProfile", fallback.clone());
    let own = problems_named("SmtpAuthProfile", "ldap-auth", fallback);
    assert!(
        own.len() == 1 && own[0].contains("a profile cannot be its own fallback"),
        "{own:?}"
    );
}

#[test]
fn smtp_auth_profile_reply_and_throttle() {
    let ldap = |ldap: Value| json!({"type": "Ldap", "ldap": with(&json!({"ldapProfileRef": {"name": "l"}}), ldap)});
    accepted(
        "SmtpAuthProfile",
        ldap(
            json!({"allowance": {"response": {"code": 525, "enhancedCode": "5.7.13", "text": "Dear user, please use your CAC to send email."}}}),
        ),
    );
    accepted(
        "SmtpAuthProfile",
        ldap(json!({"allowance": {"response": {"code": 454, "text": "later"}}})),
    );
    refused(
        "SmtpAuthProfile",
        ldap(
            json!({"allowance": {"response": {"code": 454, "enhancedCode": "5.7.1", "text": "x"}}}),
        ),
        "spec.ldap.allowance.response",
        "class of enhancedCode",
    );
    refused(
        "SmtpAuthProfile",
        ldap(json!({"allowance": {"response": {"code": 525, "text": "two\nlines"}}})),
        "spec.ldap.allowance.response.text",
        "one line",
    );
    refused(
        "SmtpAuthProfile",
        ldap(json!({"allowance": {"response": {"code": 525, "text": "   "}}})),
        "spec.ldap.allowance.response.text",
        "one line",
    );
    for (window, ok) in [
        ("1s", true),
        ("10m", true),
        ("1.5h", true),
        ("24h", true),
        ("1d", true), // days are left to the controller
        ("500ms", false),
        ("24h1s", false),
        ("25h", false),
    ] {
        let spec = ldap(json!({"throttle": {"perUser": {"window": window}}}));
        if ok {
            accepted("SmtpAuthProfile", spec);
        } else {
            refused(
                "SmtpAuthProfile",
                spec,
                "spec.ldap.throttle.perUser",
                "window must be between 1s and 24h",
            );
        }
    }
    // A throttle that is off needs no window.
    accepted(
        "SmtpAuthProfile",
        ldap(json!({"throttle": {"perClient": {"failures": 0, "window": "0s"}}})),
    );
}

#[test]
fn crl_source_interval() {
    let base = json!({"format": "Asn1", "primaryUrl": "http://crl.example/x.crl",
        "schedule": {"interval": "1h"}, "appliesTo": ["InboundSmtpTls"]});
    accepted("CrlSource", base.clone());
    for (interval, ok) in [
        ("1s", true),
        ("1000ms", true),
        ("500ms500ms", true),
        ("90000000000000ms", true), // too long for duration(): decided by the controller
        ("0s", false),
        ("999ms", false),
        ("0.5s", true), // not sub-second in ns/us/ms: left to the controller
    ] {
        let spec = with(&base, json!({"schedule": {"interval": interval}}));
        if ok {
            accepted("CrlSource", spec);
        } else {
            refused(
                "CrlSource",
                spec,
                "spec.schedule.interval",
                "must be at least 1s",
            );
        }
    }
}

#[test]
fn crl_source_discovery() {
    let base = json!({"format": "Asn1", "schedule": {"interval": "1h"},
        "appliesTo": ["InboundSmtpTls"],
        "discovery": {"fromPresentedCertificates": true,
                      "allowedUrlPrefixes": ["http://crl.disa.mil/"]}});
    accepted("CrlSource", base.clone());
    accepted(
        "CrlSource",
        with(
            &base,
            json!({"discovery": {"fromPresentedCertificates": false,
                "fromCaBundle": {"secretRef": {"name": "cac-roots", "key": "ca.crt"}}}}),
        ),
    );
    refused(
        "CrlSource",
        with(
            &base,
            json!({"discovery": {"allowedUrlPrefixes": ["ldap://crl.disa.mil/"]}}),
        ),
        "spec.discovery.allowedUrlPrefixes",
        "http:// or https:// URL prefix",
    );
    refused(
        "CrlSource",
        with(
            &base,
            json!({"discovery": {"allowedUrlPrefixes": ["http:///x"]}}),
        ),
        "spec.discovery.allowedUrlPrefixes",
        "naming a host",
    );
    refused(
        "CrlSource",
        with(
            &base,
            json!({"discovery": {"fromPresentedCertificates": false}}),
        ),
        "spec.discovery",
        "discovers nothing",
    );
    let mut none = base.clone();
    none.as_object_mut().unwrap().remove("discovery");
    refused(
        "CrlSource",
        none,
        "spec",
        "primaryUrl is required unless the source has discovery",
    );
}

/// The three example sets pass every rule as written.
#[test]
fn the_examples_pass_every_rule() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for scenario in ["certificate-only", "ldap-auth", "either"] {
        for entry in std::fs::read_dir(dir.join(scenario)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
            for doc in docs {
                if doc["apiVersion"] != "postern.dev/v1alpha1" {
                    continue;
                }
                let kind = doc["kind"].as_str().unwrap();
                let result = Validator::new().validate(&schema(kind), &doc, None);
                assert!(result.is_ok(), "{}: {result:?}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "{checked}");
}
