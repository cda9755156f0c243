//! The gateway fleet as the controller sees it: several gateways rolling out a change,
//! a gateway that cannot bind one Listener, CRL facts reported by gateways into
//! CrlSource status, and `postern plan --live` against what the cluster runs.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use postern_testkit::file_server::{HttpServer, dead_url};
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::cluster::{
    ControllerProcess, ControllerSpec, start_gateway, start_gateway_with,
};
use postern_tests::kube::{Condition, KubeCluster, User, condition_of, wait_until};

fn policy(name: &str, action: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: {name}}}\n\
         spec: {{action: {action}, tls: Disabled}}\n"
    )
}

fn listener(name: &str, port: u16, policy: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: {name}}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 defaultMailFlowPolicyRef: {{name: {policy}}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n"
    )
}

fn wait_cond(
    cluster: &KubeCluster,
    ns: &str,
    kind: &str,
    name: &str,
    t: &str,
    accept: impl Fn(&Condition) -> bool,
) -> Condition {
    wait_until(
        Duration::from_secs(60),
        &format!("{kind}/{name} {t}"),
        || {
            let obj = cluster.get_json(ns, kind, name)?;
            let c = obj.as_ref().and_then(|o| condition_of(o, t));
            match c {
                Some(c) if accept(&c) => Ok(Some(c)),
                other => anyhow::bail!("now {other:?}"),
            }
        },
    )
    .unwrap()
}

#[test]
fn a_rolling_fleet_says_how_many_gateways_are_programmed() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("roll").unwrap();
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-roll")).unwrap();
    // Two gateways on one host: a configuration without listeners binds no port.
    let gw_a = start_gateway(cluster, User::Admin, &ns, "gw-a").unwrap();
    // gw-b's report outlives the pause below (a hung gateway counts until it expires).
    let gw_b =
        start_gateway_with(cluster, User::Admin, &ns, "gw-b", &["--report-ttl", "20s"]).unwrap();
    cluster.apply(&ns, &policy("p", "Relay")).unwrap();
    cluster.apply(&ns, &policy("other", "Relay")).unwrap();
    // Both run the configuration with both policies.
    for name in ["p", "other"] {
        wait_cond(cluster, &ns, "mailflowpolicy", name, "Programmed", |c| {
            c.status == "True" && c.message == "2/2 gateways programmed"
        });
    }

    // gw-b hangs; the change reaches gw-a only.
    gw_b.pause(true).unwrap();
    cluster.apply(&ns, &policy("p", "Reject")).unwrap();
    // (gw-a may take a moment: 0/2 first, then 1/2.)
    let c = wait_cond(cluster, &ns, "mailflowpolicy", "p", "Programmed", |c| {
        c.status == "False" && c.observed_generation == Some(2) && c.message.starts_with("1/2")
    });
    assert_eq!(c.reason, "Pending");
    assert!(
        c.message
            .starts_with("1/2 gateways programmed with sha256:"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("waiting for gw-b (runs sha256:"),
        "{}",
        c.message
    );
    let ready = wait_cond(cluster, &ns, "mailflowpolicy", "p", "Ready", |c| {
        c.status == "False"
    });
    assert_eq!(ready.reason, "Pending");
    // An object the change did not touch is programmed on both already.
    let other = wait_cond(
        cluster,
        &ns,
        "mailflowpolicy",
        "other",
        "Programmed",
        |_| true,
    );
    assert_eq!(other.status, "True", "{other:?}");

    // gw-b resumes and catches up.
    gw_b.pause(false).unwrap();
    wait_cond(cluster, &ns, "mailflowpolicy", "p", "Programmed", |c| {
        c.status == "True" && c.message == "2/2 gateways programmed"
    });
    wait_cond(cluster, &ns, "mailflowpolicy", "p", "Ready", |c| {
        c.status == "True"
    });
    drop(gw_a);
}

/// One Listener the gateway cannot bind (its port held by another process) is refused
/// alone: it says so in its own status, every other object of the namespace is programmed,
/// a later emergency `action: Reject` is enforced while it is still there, and freeing the
/// port lets it come up without any change to it.
#[test]
fn a_listener_a_gateway_cannot_bind_is_refused_alone() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("refuse").unwrap();
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-refuse")).unwrap();
    let _gw = start_gateway_with(
        cluster,
        User::Admin,
        &ns,
        "gw-r",
        &["--listener-retry-interval", "500ms"],
    )
    .unwrap();
    let good_port = free_port();
    cluster.apply(&ns, &policy("p", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("good", good_port, "p"))
        .unwrap();
    wait_cond(cluster, &ns, "listener", "good", "Ready", |c| {
        c.status == "True"
    });

    // Something else on the gateway's host holds the port: the gateway cannot bind it.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    cluster.apply(&ns, &listener("smtp", port, "p")).unwrap();
    let c = wait_cond(cluster, &ns, "listener", "smtp", "Programmed", |c| {
        c.reason == "PortUnavailable"
    });
    assert_eq!(c.status, "False");
    assert!(
        c.message
            .starts_with("0/1 gateways programmed; gw-r cannot listen on 127.0.0.1:"),
        "{}",
        c.message
    );
    assert!(c.message.contains(&port.to_string()), "{}", c.message);
    assert!(c.message.contains("in use"), "{}", c.message);
    assert!(c.message.ends_with("; not served"), "{}", c.message);
    let accepted = wait_cond(cluster, &ns, "listener", "smtp", "Accepted", |_| true);
    assert_eq!(accepted.status, "True", "{accepted:?}");
    let ready = wait_cond(cluster, &ns, "listener", "smtp", "Ready", |c| {
        c.status == "False"
    });
    assert_eq!(ready.reason, "PortUnavailable");
    // The other objects are not blamed: they run.
    for (kind, name) in [("listener", "good"), ("mailflowpolicy", "p")] {
        let c = wait_cond(cluster, &ns, kind, name, "Programmed", |_| true);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "Programmed"),
            "{kind}/{name}: {c:?}"
        );
    }
    // The report carries the refusal as a typed value.
    let report = cluster
        .get_json(&ns, "gatewayreport", "postern-gw-gw-r")
        .unwrap()
        .unwrap();
    let refused = &report["spec"]["refusedListeners"][0];
    assert_eq!(refused["listener"], "smtp", "{report}");
    assert_eq!(refused["reason"], "PortUnavailable", "{report}");
    assert_eq!(refused["serving"]["state"], "notServed", "{report}");
    assert!(c_events(cluster, &ns).contains("PortUnavailable"));

    // An emergency change in the same namespace, the bad Listener still there: enforced.
    cluster.apply(&ns, &policy("p", "Reject")).unwrap();
    wait_cond(cluster, &ns, "mailflowpolicy", "p", "Programmed", |c| {
        c.status == "True" && c.observed_generation == Some(2)
    });
    let mut c = postern_tests::clients::Raw::connect(good_port).unwrap();
    let greeting = c.reply().unwrap();
    assert!(greeting.starts_with("554 5.7.1"), "{greeting}");

    // The port is freed: the Listener comes up as it is.
    drop(busy);
    wait_cond(cluster, &ns, "listener", "smtp", "Ready", |c| {
        c.status == "True"
    });
    let mut c = postern_tests::clients::Raw::connect(port).unwrap();
    assert!(c.reply().unwrap().starts_with("554 5.7.1"));
}

/// Events of the namespace, as `kubectl get events` prints them.
fn c_events(cluster: &KubeCluster, ns: &str) -> String {
    wait_until(Duration::from_secs(30), "a PortUnavailable Event", || {
        let out = cluster.kubectl(&["get", "events.v1.events.k8s.io", "-n", ns])?;
        if out.contains("PortUnavailable") {
            Ok(Some(out))
        } else {
            anyhow::bail!("now {out}")
        }
    })
    .unwrap()
}

#[test]
fn crl_source_status_comes_from_the_gateways() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("crl").unwrap();
    let ca = Ca::root("Postern Test Root");
    let server = ca.server("mail.test");
    let (cert, key) = (server.cert_pem, server.key_pem);
    let http = HttpServer::start();
    http.put(
        "/root.crl",
        ca.current_crl(7, &[&[0x01, 0x02], &[0x03, 0x04]]),
    );
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let secrets = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: gw-tls, labels: {{postern.dev/secret-use: tls}}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: client-ca, labels: {{postern.dev/secret-use: ca}}}}\nstringData:\n  ca.crt: |\n{}",
        indent(&cert),
        indent(&key),
        indent(&ca.cert_pem())
    );
    cluster.apply(&ns, &secrets).unwrap();
    let port = free_port();
    let manifests = format!(
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: p}}\n\
         spec: {{action: Relay, tls: Preferred}}\n---\n\
         apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: smtp}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 tls: {{certificateSecretRef: {{name: gw-tls}}, clientCaSecretRef: {{name: client-ca, key: ca.crt}}}}\n\
         \x20 defaultMailFlowPolicyRef: {{name: p}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n---\n\
         apiVersion: postern.dev/v1alpha1\nkind: CrlSource\nmetadata: {{name: root}}\n\
         spec:\n  format: Asn1\n  primaryUrl: {primary}\n  secondaryUrl: {secondary}\n\
         \x20 schedule: {{interval: 1h}}\n  appliesTo: [InboundSmtpTls]\n",
        primary = dead_url("/root.crl"),
        secondary = http.url("/root.crl"),
    );
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-crl")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-crl").unwrap();
    cluster.apply(&ns, &manifests).unwrap();

    let ready = wait_cond(cluster, &ns, "crlsource", "root", "Ready", |c| {
        c.status == "True"
    });
    assert_eq!(ready.reason, "Ready");
    assert!(
        ready.message.contains("2 entries from secondary"),
        "{}",
        ready.message
    );
    let obj = cluster.get_json(&ns, "crlsource", "root").unwrap().unwrap();
    let st = &obj["status"];
    assert_eq!(st["entries"], 2, "{st}");
    assert_eq!(st["servedBy"], "secondary", "{st}");
    assert!(
        st["issuer"].as_str().unwrap().contains("Postern Test Root"),
        "{st}"
    );
    for field in ["lastFetchTime", "thisUpdate", "nextUpdate"] {
        assert!(
            st[field].as_str().is_some_and(|t| t.contains('T')),
            "{field}: {st}"
        );
    }
    // The printer columns read them too.
    let wide = cluster
        .kubectl(&["get", "crlsource", "root", "-n", &ns])
        .unwrap();
    assert!(wide.contains("True") && wide.contains(" 2 "), "{wide}");
}

#[test]
fn plan_live_compares_manifests_with_what_the_cluster_runs() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("live").unwrap();
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-live")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-live").unwrap();
    let port = free_port();
    let applied = format!(
        "{}---\n{}",
        policy("p", "Relay"),
        listener("smtp", port, "p")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("postern.yaml");
    let plan = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(workspace_bin("postern").unwrap())
            .args(["plan", "--live", "-n", &ns, "-f"])
            .arg(&file)
            .env("KUBECONFIG", cluster.kubeconfig())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Nothing published yet: everything is a change.
    let (code, stdout, stderr) = plan(&applied);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("nothing is published yet"), "{stderr}");

    cluster.apply(&ns, &applied).unwrap();
    wait_cond(cluster, &ns, "listener", "smtp", "Ready", |c| {
        c.status == "True"
    });

    // The same manifests: no change, and the live state is summarised.
    let (code, stdout, stderr) = plan(&applied);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("1/1 ready gateways run it"), "{stderr}");

    // A local edit: exit 2 and the diff names it.
    let edited = applied.replace("action: Relay", "action: Reject");
    let (code, stdout, stderr) = plan(&edited);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("Reject"), "{stdout}");

    // A broken local manifest: exit 1 with the diagnostic.
    let broken = applied.replace(
        "defaultMailFlowPolicyRef: {name: p}",
        "defaultMailFlowPolicyRef: {name: nope}",
    );
    let (code, stdout, stderr) = plan(&broken);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

/// A disabled CrlSource is Ready (nothing to fetch) but says so: reason `Disabled`,
/// revocation is not checked against it; `kubectl get` shows the reason beside READY.
#[test]
fn a_disabled_crl_source_says_revocation_from_it_is_off() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("crloff").unwrap();
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-crloff")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-crloff").unwrap();
    cluster
        .apply(
            &ns,
            &format!(
                "apiVersion: postern.dev/v1alpha1\nkind: CrlSource\nmetadata: {{name: disabled-root}}\n\
                 spec:\n  enabled: false\n  format: Asn1\n  primaryUrl: {}\n\
                 \x20 schedule: {{interval: 1h}}\n  appliesTo: [InboundSmtpTls]\n",
                dead_url("/off.crl")
            ),
        )
        .unwrap();
    let ready = wait_cond(cluster, &ns, "crlsource", "disabled-root", "Ready", |c| {
        c.reason == "Disabled"
    });
    assert_eq!(ready.status, "True");
    assert!(
        ready.message.contains("not checked for revocation"),
        "{}",
        ready.message
    );
    let table = cluster
        .kubectl(&["get", "crlsource", "disabled-root", "-n", &ns])
        .unwrap();
    let header = table.lines().next().unwrap();
    assert!(header.contains("READY   REASON"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().contains("True    Disabled"),
        "{table}"
    );
}
