//! CrlSource status in a real cluster (kube-apiserver, controller, gateway) while a
//! source has no CRL in force: `failurePolicy: Closed` says the certificates it may be
//! for are refused (`FetchFailed`), `failurePolicy: Open` carries the `FailOpen` warning
//! (Ready False, a Warning Event); once in force, `status.crls` says what each CRL
//! covers. The Listener's `status.revocation` says per trusted CA what checks it: nothing
//! before the CRL is in force, the CRL (source, entries, size, nextUpdate) after.

use std::time::Duration;

use postern_testkit::file_server::HttpServer;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, start_gateway};
use postern_tests::kube::{Condition, KubeCluster, User, condition_of, wait_until};

fn wait_ready(
    cluster: &KubeCluster,
    ns: &str,
    name: &str,
    accept: impl Fn(&Condition) -> bool,
) -> Condition {
    wait_until(
        Duration::from_secs(60),
        &format!("crlsource/{name} Ready"),
        || {
            let obj = cluster.get_json(ns, "crlsource", name)?;
            match obj.as_ref().and_then(|o| condition_of(o, "Ready")) {
                Some(c) if accept(&c) => Ok(Some(c)),
                other => anyhow::bail!("now {other:?}"),
            }
        },
    )
    .unwrap()
}

fn warning_events(cluster: &KubeCluster, ns: &str, reason: &str) -> Vec<serde_json::Value> {
    let out = cluster
        .kubectl(&["get", "events.v1.events.k8s.io", "-n", ns, "-o", "json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["reason"] == reason && e["type"] == "Warning")
        .collect()
}

#[test]
fn crl_sources_without_a_crl_say_whether_they_refuse_or_fail_open() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("crlpolicy").unwrap();
    let ca = Ca::root("Policy Root");
    let server = ca.server("mail.test");
    let (cert, key) = (server.cert_pem, server.key_pem);
    let http = HttpServer::start();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let secrets = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: gw-tls}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: client-ca}}\nstringData:\n  ca.crt: |\n{}",
        indent(&cert),
        indent(&key),
        indent(&ca.cert_pem())
    );
    cluster.apply(&ns, &secrets).unwrap();
    let port = free_port();
    let source = |name: &str, policy: &str| {
        format!(
            "---\napiVersion: postern.dev/v1alpha1\nkind: CrlSource\nmetadata: {{name: {name}}}\n\
             spec:\n  format: Asn1\n  primaryUrl: {url}\n  schedule: {{interval: 1s}}\n\
             \x20 appliesTo: [InboundSmtpTls]\n  failurePolicy: {policy}\n",
            url = http.url(&format!("/{name}.crl")),
        )
    };
    let manifests = format!(
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: p}}\n\
         spec: {{action: Relay, tls: Preferred}}\n---\n\
         apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: smtp}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 tls: {{certificateSecretRef: {{name: gw-tls}}, clientCaSecretRef: {{name: client-ca, key: ca.crt}}}}\n\
         \x20 defaultMailFlowPolicyRef: {{name: p}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n{}{}",
        source("closed", "Closed"),
        source("record", "Open"),
    );
    let _ctl =
        ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-crlpolicy")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-crlpolicy").unwrap();
    cluster.apply(&ns, &manifests).unwrap();

    // Nothing served yet (404): both have failed first fetches.
    let closed = wait_ready(cluster, &ns, "closed", |c| c.reason == "FetchFailed");
    assert_eq!(closed.status, "False");
    assert!(
        closed
            .message
            .contains("refused as unverifiable (crl_missing)"),
        "{}",
        closed.message
    );
    let open = wait_ready(cluster, &ns, "record", |c| c.reason == "FailOpen");
    assert_eq!(open.status, "False");
    assert!(
        open.message.contains("accepted without a revocation check"),
        "{}",
        open.message
    );
    wait_until(Duration::from_secs(30), "a FailOpen Warning event", || {
        Ok((!warning_events(cluster, &ns, "FailOpen").is_empty()).then_some(()))
    })
    .unwrap();

    // The Listener's one CA: nothing checks its revocation yet.
    let revocation = |want: &str| {
        wait_until(
            Duration::from_secs(30),
            &format!("listener/smtp status.revocation {want}"),
            || {
                let obj = cluster.get_json(&ns, "listener", "smtp")?;
                let r = obj.map(|o| o["status"]["revocation"].clone());
                match r {
                    Some(r) if r[0]["mechanism"] == want => Ok(Some(r)),
                    other => anyhow::bail!("now {other:?}"),
                }
            },
        )
        .unwrap()
    };
    let none = revocation("none");
    assert_eq!(none.as_array().map(Vec::len), Some(1), "{none}");
    assert!(
        none[0]["ca"].as_str().unwrap().contains("Policy Root"),
        "{none}"
    );
    assert_eq!(none[0]["covered"], false, "{none}");

    // The CRL arrives: in force, and its scope is in the status.
    http.put("/record.crl", ca.current_crl(1, &[&[0x01]]));
    let ready = wait_ready(cluster, &ns, "record", |c| c.status == "True");
    assert_eq!(ready.reason, "Ready");
    let obj = cluster
        .get_json(&ns, "crlsource", "record")
        .unwrap()
        .unwrap();
    let crls = &obj["status"]["crls"];
    assert_eq!(crls[0]["scope"], "all", "{obj}");
    assert_eq!(crls[0]["entries"], 1, "{obj}");
    assert!(crls[0]["derBytes"].as_u64().unwrap() > 0, "{obj}");
    assert!(
        crls[0]["issuer"].as_str().unwrap().contains("Policy Root"),
        "{obj}"
    );
    // And the Listener says the CA is covered by it.
    let crl = revocation("crl");
    assert_eq!(crl[0]["covered"], true, "{crl}");
    assert_eq!(crl[0]["sources"], serde_json::json!(["record"]), "{crl}");
    assert_eq!(crl[0]["entries"], 1, "{crl}");
    assert!(crl[0]["derBytes"].as_u64().unwrap() > 0, "{crl}");
    assert!(crl[0]["nextUpdate"].is_string(), "{crl}");
    assert_eq!(crl[0]["stale"], false, "{crl}");
}
