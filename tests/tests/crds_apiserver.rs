//! The generated CRDs in a real kube-apiserver: the example manifests are accepted as
//! written, values the schema forbids are refused by the server itself, objects read
//! back (with the server's defaults filled in) parse into the strict Rust types, status
//! with conditions can be written, and the printer columns show.

use std::path::PathBuf;

use kube::Api;
use kube::api::{Patch, PatchParams};
use postern_crds::{
    ConditionStatus, CrlSource, LdapProfile, Listener, MailFlowPolicy, SenderBinding,
    SmtpAuthProfile, TlsMode,
};
use postern_tests::kube::KubeCluster;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_accept_the_examples_and_refuse_bad_values() {
    let cluster = KubeCluster::shared();
    let client = cluster.client().await.unwrap();
    for scenario in ["certificate-only", "ldap-auth", "either"] {
        let ns = cluster.create_namespace(scenario).unwrap();
        cluster
            .apply_path(&ns, &examples().join(scenario))
            .unwrap_or_else(|e| panic!("{scenario}: {e:#}"));
        // Read back through the typed API: the strict spec types accept what the server
        // stores, defaults included.
        let policies: Api<MailFlowPolicy> = Api::namespaced(client.clone(), &ns);
        let blocked = policies.get("blocked").await.unwrap();
        assert_eq!(blocked.spec.tls, TlsMode::Disabled);
        assert!(!blocked.spec.require_smtp_auth, "server default");
        let listeners: Api<Listener> = Api::namespaced(client.clone(), &ns);
        assert!(
            !listeners
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let profiles: Api<SmtpAuthProfile> = Api::namespaced(client.clone(), &ns);
        assert!(
            !profiles
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let ldap: Api<LdapProfile> = Api::namespaced(client.clone(), &ns);
        let corp = ldap.get("corp-ldap").await.unwrap();
        assert!(!corp.spec.start_tls, "server default");
        if scenario == "certificate-only" {
            let crls: Api<CrlSource> = Api::namespaced(client.clone(), &ns);
            assert!(!crls.get("example-ca").await.unwrap().spec.enabled);
        }
        // Printer columns.
        let table = cluster
            .kubectl(&["get", "listeners,mailflowpolicies", "-n", &ns])
            .unwrap();
        assert!(
            table.contains("PORT") && table.contains("READY") && table.contains("ACTION"),
            "{table}"
        );
        // READY has its reason beside it, for every kind.
        let header = cluster.kubectl(&["get", "postern", "-n", &ns]).unwrap();
        for line in header.lines().filter(|l| l.starts_with("NAME")) {
            assert!(line.contains("READY   REASON"), "{header}");
        }
        let all = cluster
            .kubectl(&["get", "postern", "-n", &ns, "-o", "name"])
            .unwrap();
        assert!(
            all.contains("listener.postern.dev/") && all.contains("ldapprofile.postern.dev/"),
            "{all}"
        );
    }

    // The server's own schema checks.
    let ns = cluster.create_namespace("bad").unwrap();
    for (what, doc, needle) in [
        (
            "YAML 1.1 boolean for an enum",
            "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: p}\nspec: {action: Relay, tls: Off}\n",
            "spec.tls",
        ),
        (
            "YAML 1.1 true for senderBinding",
            "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: p}\nspec: {action: Relay, senderBinding: On}\n",
            "spec.senderBinding",
        ),
        (
            "unknown senderBinding",
            "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: p}\nspec: {action: Relay, senderBinding: Strict}\n",
            "spec.senderBinding",
        ),
        (
            "unknown enum value",
            "apiVersion: postern.dev/v1alpha1\nkind: SmtpAuthProfile\nmetadata: {name: p}\nspec: {type: LDAP}\n",
            "spec.type",
        ),
        (
            "duration without a unit",
            "apiVersion: postern.dev/v1alpha1\nkind: CrlSource\nmetadata: {name: c}\nspec: {format: Asn1, primaryUrl: 'http://x/c.crl', schedule: {interval: '60'}, appliesTo: [InboundSmtpTls]}\n",
            "spec.schedule.interval",
        ),
        (
            "size that is not a quantity",
            "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: p}\nspec: {action: Relay, limits: {maxMessageSize: 10MB}}\n",
            "spec.limits.maxMessageSize",
        ),
        (
            "port out of range",
            "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {name: l}\nspec: {port: 70000, hostname: h, defaultMailFlowPolicyRef: {name: p}, nextHop: {host: x}}\n",
            "spec.port",
        ),
        (
            "missing required field",
            "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {name: l}\nspec: {port: 25, hostname: h, nextHop: {host: x}}\n",
            "defaultMailFlowPolicyRef",
        ),
    ] {
        let err = cluster
            .apply(&ns, doc)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(format!("{err:#}").contains(needle), "{what}: {err:#}");
    }

    // `senderBinding: Off` is the API's name (DESIGN): bare, YAML 1.1 makes it `false`, which
    // the schema admits and the typed client reads as Off; quoted, it is the string.
    for (name, value) in [
        ("bare", "Off"),
        ("quoted", "\"Off\""),
        ("monitor", "Monitor"),
    ] {
        cluster
            .apply(&ns, &format!("apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: {name}}}\nspec: {{action: Relay, senderBinding: {value}}}\n"))
            .unwrap_or_else(|e| panic!("senderBinding: {value}: {e:#}"));
    }
    // `format` may be left out: it defaults to Asn1 (DESIGN.md §7, "Defaults in brackets");
    // so may `schedule` and `appliesTo` (1h, inbound). The API server stores the defaults.
    cluster
        .apply(&ns, "apiVersion: postern.dev/v1alpha1\nkind: CrlSource\nmetadata: {name: no-format}\nspec: {primaryUrl: 'http://x/c.crl'}\n")
        .unwrap_or_else(|e| panic!("CrlSource with only a URL: {e:#}"));
    let stored = cluster
        .kubectl(&[
            "get",
            "crlsource",
            "no-format",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.format} {.spec.schedule.interval} {.spec.appliesTo} {.spec.failurePolicy} {.spec.maxSize}",
        ])
        .unwrap();
    assert_eq!(stored, r#"Asn1 1h ["InboundSmtpTls"] Closed 512Mi"#);
    // DESIGN.md §7's other defaults in brackets are stored too (nested ones where their
    // parent object is given, as the API server applies them).
    cluster
        .apply(&ns, "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: defaults}\nspec: {action: Relay, rateLimits: {perUser: {messages: 5}}}\n")
        .unwrap();
    let stored = cluster
        .kubectl(&[
            "get",
            "mailflowpolicy",
            "defaults",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.senderBinding} {.spec.rateLimits.perUser.messages} {.spec.rateLimits.perUser.recipients} {.spec.rateLimits.perUser.window}",
        ])
        .unwrap();
    assert_eq!(stored, "Off 5 0 1h");
    let policies: Api<MailFlowPolicy> = Api::namespaced(client.clone(), &ns);
    for (name, want) in [
        ("bare", SenderBinding::Off),
        ("quoted", SenderBinding::Off),
        ("monitor", SenderBinding::Monitor),
    ] {
        let p = policies.get(name).await.unwrap();
        assert_eq!(p.spec.sender_binding, Some(want), "{name}");
    }

    // Optional objects of a spec: `kubectl explain` shows their fields (no `nullable`
    // under spec, which pre-1.27 servers' OpenAPI v2 would erase), and removing one works
    // with client-side apply (merge patch), an explicit null and a JSON patch. (Removing one
    // by server-side apply fails on 1.20 itself, nullable or not: that server writes null
    // into the removed object's required fields; docs/resources.md says so.)
    let explain = cluster.kubectl(&["explain", "listener.spec.tls"]).unwrap();
    for field in ["certificateSecretRef", "clientCaSecretRef", "revocation"] {
        assert!(
            explain.contains(field),
            "explain listener.spec.tls: {explain}"
        );
    }
    let explain = cluster
        .kubectl(&["explain", "listener.spec.tls.revocation"])
        .unwrap();
    assert!(explain.contains("onUnavailable"), "{explain}");
    let listener = |tls: &str| {
        format!(
            "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: opt}}\n\
             spec: {{port: 2525, hostname: h, defaultMailFlowPolicyRef: {{name: p}}, nextHop: {{host: x}}{tls}}}\n"
        )
    };
    let with_tls =
        listener(", tls: {certificateSecretRef: {name: cert}, revocation: {mode: CrlOnly}}");
    let client_side = |yaml: &str| {
        cluster.kubectl_stdin(
            &["apply", "--server-side=false", "-n", &ns, "-f", "-"],
            yaml,
        )
    };
    let listeners: Api<Listener> = Api::namespaced(client.clone(), &ns);
    for how in ["client-side apply", "explicit null", "JSON patch"] {
        client_side(&with_tls).unwrap_or_else(|e| panic!("{how}: adding tls: {e:#}"));
        assert!(listeners.get("opt").await.unwrap().spec.tls.is_some());
        match how {
            "client-side apply" => client_side(&listener("")),
            "explicit null" => client_side(&listener(", tls: null")),
            _ => cluster.kubectl(&[
                "patch",
                "listener",
                "opt",
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op": "remove", "path": "/spec/tls"}]"#,
            ]),
        }
        .unwrap_or_else(|e| panic!("{how}: removing tls: {e:#}"));
        let l = listeners.get("opt").await.unwrap();
        assert!(
            l.spec.tls.is_none(),
            "{how}: tls still there: {:?}",
            l.spec.tls
        );
    }

    // Server-side apply removes optional fields by omission: a scalar, an object whose
    // fields are all optional, a list.
    let policy = |limits: &str| {
        format!(
            "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: lim}}\n\
             spec: {{action: Relay{limits}}}\n"
        )
    };
    for (what, with, without) in [
        ("address", listener(", address: 127.0.0.1"), listener("")),
        (
            "limits",
            policy(", limits: {maxRecipients: 100}"),
            policy(""),
        ),
        (
            "hostAccessTable",
            listener(
                ", hostAccessTable: [{senderGroup: A, cidrs: [10.0.0.0/8], mailFlowPolicyRef: {name: p}}]",
            ),
            listener(""),
        ),
    ] {
        cluster
            .apply(&ns, &with)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        cluster
            .apply(&ns, &without)
            .unwrap_or_else(|e| panic!("server-side removal of {what}: {e:#}"));
    }
    let l = listeners.get("opt").await.unwrap();
    assert!(
        l.spec.address.is_none() && l.spec.host_access_table.is_empty(),
        "{:?}",
        l.spec
    );
    assert!(policies.get("lim").await.unwrap().spec.limits.is_none());

    // Status: conditions (an empty message included) and observedGeneration.
    cluster
        .apply(&ns, "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: ok}\nspec: {action: Reject}\n")
        .unwrap();
    let status = serde_json::json!({"status": {
    "observedGeneration": 1,
    "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
         "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1},
        {"type": "Ready", "status": "False", "reason": "Pending", "message": "0/1 gateways",
         "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1},
    ]}});
    policies
        .patch_status("ok", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let ok = policies.get("ok").await.unwrap();
    let st = ok.status.unwrap().common;
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.conditions.len(), 2);
    assert_eq!(st.conditions[0].message, "");
    assert_eq!(st.conditions[1].status, ConditionStatus::False);
    let table = cluster.kubectl(&["get", "mfp", "ok", "-n", &ns]).unwrap();
    assert!(
        table.lines().nth(1).unwrap_or_default().contains("False"),
        "{table}"
    );
}
