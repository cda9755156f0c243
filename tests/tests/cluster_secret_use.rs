//! Security issue 12, item 12: Secrets as a confused deputy, end to end.
//!
//! The attack: someone who may edit an LdapProfile (but not read Secrets) points its bind
//! password at another Secret of the namespace and its server at a host of their own; the
//! gateway would send that Secret's value there in an LDAP BIND. The rule: a Secret is
//! used only for what its label `postern.dev/secret-use` says.
//!
//! Replayed against a real kube-apiserver with the real `postern controller` and
//! `postern-gateway` processes. Two capture-only TCP listeners stand in for the
//! directory and for the attacker's host (they record every byte and never answer, so
//! each AUTH ends in `454`): what they receive is exactly what the gateway sent.
//!
//! 1. A working profile (bind Secret labelled `ldap-bind`): the directory receives its
//!    service bind — the capture works.
//! 2. The edit: server → the attacker, password → a Secret without the label. The
//!    profile reports `ResolvedRefs=False` (`SecretUseNotAllowed`, naming field, Secret and
//!    the fix), the rendered configuration never contains the value, the previous version
//!    keeps serving, and the attacker receives nothing — not even a connection.
//! 3. The Secret's owner labels it `ldap-bind`: now it is used (and, since the editor
//!    chose the server, sent there — the trust boundary docs/rbac.md describes).

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use postern_testkit::ports::free_port;
use postern_tests::clients::Raw;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, start_gateway};
use postern_tests::kube::{KubeCluster, User, condition_of, wait_until};

const LEGIT: &str = "legit-service-account-pw";
const VICTIM: &str = "db-root-password-never-to-leave";

/// A TCP listener that records everything sent to it and never answers.
struct Capture {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Capture {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (b, c) = (bytes.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                *c.lock().unwrap() += 1;
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        b.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Self {
            port,
            bytes,
            connections,
        }
    }

    fn received(&self, needle: &str) -> bool {
        let b = self.bytes.lock().unwrap();
        b.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn secrets() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ldap-bind, labels: {{postern.dev/secret-use: ldap-bind}}}}\n\
         stringData: {{password: {LEGIT}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: db-creds}}\n\
         stringData: {{root-pw: {VICTIM}, replica-pw: other}}\n"
    )
}

fn ldap_profile(server: u16, secret: &str, key: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: LdapProfile\nmetadata: {{name: corp}}\n\
         spec:\n  servers: [{{url: \"ldap://127.0.0.1:{server}\"}}]\n  baseDn: dc=example,dc=org\n\
         \x20 bind: {{dn: \"cn=postern,dc=example,dc=org\", passwordSecretRef: {{name: {secret}, key: {key}}}}}\n\
         \x20 timeouts: {{connect: 1s, operation: 1s}}\n\
         \x20 smtpAuthQuery: {{name: auth, filter: \"(uid={{u}})\"}}\n"
    )
}

fn mail_objects(port: u16) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: SmtpAuthProfile\nmetadata: {{name: auth}}\n\
         spec: {{type: Ldap, ldap: {{ldapProfileRef: {{name: corp}}}}}}\n---\n\
         apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: p}}\n\
         spec: {{action: Relay, tls: Disabled, requireSmtpAuth: true}}\n---\n\
         apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: smtp}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 smtpAuthProfileRef: {{name: auth}}\n\
         \x20 defaultMailFlowPolicyRef: {{name: p}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n"
    )
}

/// One SMTP AUTH: the gateway's service account searches the directory (binding first).
fn auth(port: u16) -> String {
    let mut c = Raw::connect(port).unwrap();
    c.reply().unwrap();
    c.cmd("EHLO client.test").unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode("\0bob\0bob-pw");
    let reply = c.cmd(&format!("AUTH PLAIN {token}")).unwrap();
    let _ = c.cmd("QUIT");
    reply
}

fn rendered_config(cluster: &KubeCluster, ns: &str) -> String {
    postern_tests::rendered::published(cluster, ns)
        .unwrap()
        .unwrap()
        .0
        .to_yaml()
}

fn condition(
    cluster: &KubeCluster,
    ns: &str,
    name: &str,
    t: &str,
) -> Option<(String, String, String)> {
    let o = cluster.get_json(ns, "ldapprofile", name).ok()??;
    let c = condition_of(&o, t)?;
    Some((c.status, c.reason, c.message))
}

#[test]
fn a_secret_not_labelled_for_ldap_bind_is_never_sent_to_a_server_an_editor_chose() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("secretuse").unwrap();
    let directory = Capture::start();
    let attacker = Capture::start();
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl")).unwrap();
    let gw = start_gateway(cluster, User::Admin, &ns, "gw-1").unwrap();
    let port = free_port();
    let smtp: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // 1. The working profile: its labelled Secret goes to its directory.
    cluster.apply(&ns, &secrets()).unwrap();
    cluster
        .apply(&ns, &ldap_profile(directory.port, "ldap-bind", "password"))
        .unwrap();
    cluster.apply(&ns, &mail_objects(port)).unwrap();
    wait_until(Duration::from_secs(90), "the listener serving", || {
        Ok(postern_tests::cluster::smtp_greeting(smtp)
            .ok()
            .filter(|g| g.starts_with("220"))
            .map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    let reply = auth(port);
    assert!(reply.starts_with("454"), "{reply}");
    wait_until(
        Duration::from_secs(20),
        "the service bind at the directory",
        || Ok(directory.received(LEGIT).then_some(())),
    )
    .unwrap();

    // 2. The edit: another Secret, the attacker's server.
    cluster
        .apply(&ns, &ldap_profile(attacker.port, "db-creds", "root-pw"))
        .unwrap();
    let (_, reason, message) = wait_until(Duration::from_secs(60), "SecretUseNotAllowed", || {
        Ok(condition(cluster, &ns, "corp", "ResolvedRefs")
            .filter(|(s, r, _)| s == "False" && r == "SecretUseNotAllowed"))
    })
    .unwrap();
    assert_eq!(reason, "SecretUseNotAllowed");
    for part in [
        "spec.bind.passwordSecretRef",
        "Secret \"db-creds\" has no postern.dev/secret-use label",
        "kubectl label secret db-creds postern.dev/secret-use=ldap-bind",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(
        !message.contains("replica-pw"),
        "the Secret's keys leaked: {message}"
    );
    let (status, reason, _) = condition(cluster, &ns, "corp", "Programmed").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PreviousVersionServing")
    );
    let config = rendered_config(cluster, &ns);
    assert!(!config.contains(VICTIM), "the Secret's value was published");
    assert!(!config.contains(&format!(":{}", attacker.port)), "{config}");
    assert!(config.contains(&format!(":{}", directory.port)), "{config}");
    // The gateway keeps the previous version: AUTH goes to the directory, with the
    // legitimate password; the attacker hears nothing.
    let reply = auth(port);
    assert!(reply.starts_with("454"), "{reply}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        attacker.connections(),
        0,
        "the gateway connected to the attacker"
    );
    assert!(!attacker.received(VICTIM));
    assert!(!directory.received(VICTIM));
    assert!(!gw.log().contains(VICTIM));

    // 3. The owner labels the Secret for the use: it is used now (sent where the
    //    profile's editor says — editing an LdapProfile is a trusted right).
    cluster
        .kubectl(&[
            "label",
            "secret",
            "db-creds",
            "-n",
            &ns,
            "postern.dev/secret-use=ldap-bind",
        ])
        .unwrap();
    wait_until(Duration::from_secs(60), "the profile accepted", || {
        Ok(condition(cluster, &ns, "corp", "ResolvedRefs").filter(|(s, _, _)| s == "True"))
    })
    .unwrap();
    wait_until(Duration::from_secs(60), "the new version in force", || {
        let _ = auth(port);
        Ok(attacker.received(VICTIM).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
}
