//! Section 3 of the controller benchmark: objects of all five kinds wired as in
//! production (TLS, Secrets, references between kinds, CRL sources fetched), settling
//! after one `kubectl apply` and after a controller start, and the controller's memory.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postern_testkit::file_server::HttpServer;
use postern_testkit::pki::Ca;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, start_gateway};
use postern_tests::kube::{KubeCluster, User};

use crate::{ALL_KINDS, all_ready, extra_args, ms, tail};

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// The PEM material every unit shares or gets its own copy of.
struct Pki {
    ca: Ca,
    http: HttpServer,
}

impl Pki {
    fn new() -> Self {
        let ca = Ca::root("Postern Bench Root");
        let http = HttpServer::start();
        http.put("/root.crl", ca.current_crl(1, &[&[0x01, 0x02]]));
        Self { ca, http }
    }
}

/// One unit of each kind per port (Listener `u` on `ports[u]`) and their Secrets.
fn manifests(pki: &Pki, ports: &[u16]) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: client-ca, labels: {{postern.dev/secret-use: ca}}}}\n\
         stringData:\n  ca.crt: |\n{}---\n",
        indent(&pki.ca.cert_pem())
    );
    let crl = pki.http.url("/root.crl");
    for (u, port) in ports.iter().enumerate() {
        let leaf = pki.ca.server(&format!("mail-{u}.bench.test"));
        text.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls-{u}, labels: {{postern.dev/secret-use: tls}}}}\n\
             type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: bind-{u}, labels: {{postern.dev/secret-use: ldap-bind}}}}\n\
             stringData: {{password: bench-pw-{u}}}\n---\n\
             apiVersion: postern.dev/v1alpha1\nkind: LdapProfile\nmetadata: {{name: ldap-{u}}}\n\
             spec:\n  servers: [{{url: \"ldap://127.0.0.1:9\"}}]\n  baseDn: dc=example,dc=org\n\
             \x20 bind: {{dn: \"cn=postern,dc=example,dc=org\", passwordSecretRef: {{name: bind-{u}, key: password}}}}\n\
             \x20 certificateAuthQuery: {{name: cac-cert, filter: \"(&(objectClass=posixAccount)(caccn={{cn}})(cacserial={{sn}}))\"}}\n---\n\
             apiVersion: postern.dev/v1alpha1\nkind: SmtpAuthProfile\nmetadata: {{name: auth-{u}}}\n\
             spec:\n  type: Certificate\n  certificate: {{ldapProfileRef: {{name: ldap-{u}}}}}\n---\n\
             apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: p-{u}}}\n\
             spec: {{action: Relay, tls: Preferred, verifyClientCertificate: true, limits: {{maxRecipients: 100}}}}\n---\n\
             apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: l-{u}}}\n\
             spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail-{u}.bench.test\n\
             \x20 tls: {{certificateSecretRef: {{name: tls-{u}}}, clientCaSecretRef: {{name: client-ca, key: ca.crt}}}}\n\
             \x20 smtpAuthProfileRef: {{name: auth-{u}}}\n\
             \x20 hostAccessTable: [{{senderGroup: RELAYLIST, cidrs: [127.0.0.0/8], mailFlowPolicyRef: {{name: p-{u}}}}}]\n\
             \x20 defaultMailFlowPolicyRef: {{name: p-{u}}}\n\
             \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n---\n\
             apiVersion: postern.dev/v1alpha1\nkind: CrlSource\nmetadata: {{name: crl-{u}}}\n\
             spec:\n  format: Asn1\n  primaryUrl: {crl}\n  schedule: {{interval: 1h}}\n  appliesTo: [InboundSmtpTls]\n---\n",
            indent(&leaf.cert_pem),
            indent(&leaf.key_pem),
        ));
    }
    text
}

/// `n` distinct free ports (held together while choosing).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// Resident and peak resident memory of a process, in MiB (from /proc).
fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/{pid}/status"))?;
        let kib: f64 = line.split_whitespace().nth(1).context("a value")?.parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn controller(cluster: &KubeCluster, ns: &str, name: &str) -> Result<ControllerProcess> {
    let mut spec = ControllerSpec::new(ns, name);
    spec.extra = extra_args();
    ControllerProcess::start(cluster, &spec)
}

fn rss_note(ctl: &ControllerProcess) -> String {
    let Some(pid) = ctl.pid() else {
        return "controller not running".into();
    };
    // Open descriptors: mostly its connections to the API server (one per watch).
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    match rss_mib(pid) {
        Ok((rss, peak)) => {
            format!("controller RSS {rss:.0} MiB (peak {peak:.0} MiB), {fds} open descriptors")
        }
        Err(e) => format!("controller RSS unknown: {e:#}"),
    }
}

/// Runs section 3 with `objects` objects (and `rss_objects` for the memory figure).
pub(crate) fn run(cluster: &KubeCluster, objects: usize, rss_objects: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client = rt.block_on(cluster.client())?;
    let pki = Pki::new();
    let units = objects / 5;
    let objects = units * 5;
    let wait = |ns: &str, n: usize, any_status: bool| {
        rt.block_on(all_ready(
            client.clone(),
            ns.to_owned(),
            n,
            ALL_KINDS,
            any_status,
            // The memory run may never settle (see below): do not wait long for it.
            Duration::from_secs(if any_status { 90 } else { 300 }),
        ))
    };
    let file = tempfile::NamedTempFile::new()?;

    // a) One kubectl apply of everything, controller and gateway running.
    let ns = cluster.create_namespace("bench-real")?;
    let mut ctl = controller(cluster, &ns, "ctl-real")?;
    ctl.wait_ready()?;
    let mut gw = start_gateway(cluster, User::Admin, &ns, "gw-real")?;
    std::fs::write(file.path(), manifests(&pki, &free_ports(units)))?;
    let t0 = Instant::now();
    cluster.apply_path(&ns, file.path())?;
    let t1 = Instant::now();
    let t2 = wait(&ns, objects, false)
        .with_context(|| format!("realistic apply:\n{}", tail(&ctl.logs())))?;
    let writes = ctl.metric("postern_controller_status_writes_total")?;
    println!(
        "| {objects} realistic objects, one kubectl apply → all Ready, from kubectl's return | {} | kubectl itself: {} | status writes: {writes} | {} |",
        ms(t2.saturating_duration_since(t1)),
        ms(t1 - t0),
        rss_note(&ctl)
    );
    ctl.stop()?;
    gw.stop()?;

    // b) The objects are there (new namespace, no status yet); a controller starts.
    let ns = cluster.create_namespace("bench-real-cold")?;
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-real-cold")?;
    std::fs::write(file.path(), manifests(&pki, &free_ports(units)))?;
    cluster.apply_path(&ns, file.path())?;
    let t0 = Instant::now();
    let mut ctl = controller(cluster, &ns, "ctl-real-cold")?;
    let t2 = wait(&ns, objects, false)
        .with_context(|| format!("realistic cold start:\n{}", tail(&ctl.logs())))?;
    let writes = ctl.metric("postern_controller_status_writes_total")?;
    println!(
        "| {objects} realistic objects present, controller start → all Ready | {} | | status writes: {writes} | {} |",
        ms(t2 - t0),
        rss_note(&ctl)
    );
    super::print_timeline(&ctl);
    ctl.stop()?;

    // c) Memory: many objects, no gateway; every status current, then RSS.
    let units = rss_objects / 5;
    let rss_objects = units * 5;
    let ns = cluster.create_namespace("bench-real-rss")?;
    // No gateway binds them: any distinct ports do.
    let ports: Vec<u16> = (0..units).map(|u| 20_000 + u as u16).collect();
    std::fs::write(file.path(), manifests(&pki, &ports))?;
    cluster.apply_path(&ns, file.path())?;
    let t0 = Instant::now();
    let mut ctl = controller(cluster, &ns, "ctl-real-rss")?;
    // Until the rendered configuration can exceed one Secret's 1 MiB, this many TLS
    // Listeners may not publish and some statuses may never come: the memory is
    // measured either way, and the outcome said.
    let outcome = match wait(&ns, rss_objects, true) {
        Ok(t2) => format!("all statuses current after {}", ms(t2 - t0)),
        Err(e) => format!("{e:#}"),
    };
    // Let allocations from the burst of status writes settle.
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "| {rss_objects} realistic objects present (no gateway), controller start | {outcome} | | | {} |",
        rss_note(&ctl)
    );
    ctl.stop()?;
    Ok(())
}
