//! Controller benchmarks against a real API server (etcd + kube-apiserver on loopback),
//! with the real `postern controller` and `postern-gateway --cluster` processes:
//!
//! 1. `kubectl apply` of a policy change → the gateway enforcing it: a MailFlowPolicy is
//!    flipped between Relay and Reject CHANGES times; after each apply the SMTP greeting
//!    is polled (every 2 ms) until it says the new policy (`220` / `554 5.7.1`).
//! 2. OBJECTS objects (a quarter Listeners, the rest MailFlowPolicies) settling: time
//!    until every object has `Ready=True` for its generation (so: compiled, published,
//!    applied by the gateway, status written), after one `kubectl apply` of all of them,
//!    and after a controller start with the objects already there.
//! 3. Realistic objects (`realistic`): REALISTIC objects, a fifth of each of the five
//!    kinds, wired as in production: each Listener has TLS (its own certificate Secret,
//!    a shared client CA bundle), its own MailFlowPolicy and certificate SmtpAuthProfile,
//!    whose LdapProfile binds with its own password Secret; each CrlSource is fetched by
//!    the gateway from a local HTTP server. Time to all `Ready` after one `kubectl apply`
//!    (from kubectl's return) and after a controller start, and the controller's RSS.
//!    Then RSS_OBJECTS such objects (no gateway): the controller's RSS once every
//!    object's status is current.
//!
//! ```sh
//! cargo build --release --bins -p postern-controller -p postern-gateway
//! cargo bench -p postern-tests --bench controller [-- CHANGES OBJECTS [REALISTIC [RSS_OBJECTS]]]
//! # POSTERN_BENCH_ONLY=realistic runs section 3 only.
//! ```
//! Prints Markdown rows for docs/benchmarks.md.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use postern_testkit::ports::free_port;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, smtp_greeting, start_gateway};
use postern_tests::kube::{KubeCluster, User};

#[path = "controller/realistic.rs"]
mod realistic;

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn wait_greeting(addr: SocketAddr, prefix: &str, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(g) = smtp_greeting(addr)
            && g.starts_with(prefix)
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("greeting {prefix} not seen within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn latency(cluster: &KubeCluster, changes: usize) -> Result<()> {
    let ns = cluster.create_namespace("bench-latency")?;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut spec = ControllerSpec::new(&ns, "ctl-bench");
    spec.extra = [
        "--lease-duration",
        "15s",
        "--renew-deadline",
        "10s",
        "--retry-period",
        "2s",
    ]
    .map(String::from)
    .to_vec();
    let mut ctl = ControllerProcess::start(cluster, &spec)?;
    ctl.wait_ready()?;
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-bench")?;
    cluster.apply(&ns, &policy("p", "Relay"))?;
    cluster.apply(&ns, &listener("smtp", port, "p"))?;
    wait_greeting(addr, "220", Duration::from_secs(60))?;

    let mut from_start = Vec::new();
    let mut from_return = Vec::new();
    for i in 0..changes {
        let (action, expect) = if i % 2 == 0 {
            ("Reject", "554 5.7.1")
        } else {
            ("Relay", "220")
        };
        let t0 = Instant::now();
        cluster.apply(&ns, &policy("p", action))?;
        let t1 = Instant::now();
        let t2 = wait_greeting(addr, expect, Duration::from_secs(30))
            .with_context(|| format!("change {i}:\n{}", ctl.logs()))?;
        from_start.push(t2 - t0);
        from_return.push(t2.saturating_duration_since(t1));
        // Let the change settle (status, report) before the next one.
        std::thread::sleep(Duration::from_millis(150));
    }
    from_start.sort();
    from_return.sort();
    println!(
        "| kubectl apply → gateway enforcing (from kubectl start), {changes} changes | p50 {} | p99 {} | max {} |",
        ms(percentile(&from_start, 0.5)),
        ms(percentile(&from_start, 0.99)),
        ms(*from_start.last().expect("samples"))
    );
    println!(
        "| same, from kubectl's return (the API write is done) | p50 {} | p99 {} | max {} |",
        ms(percentile(&from_return, 0.5)),
        ms(percentile(&from_return, 0.99)),
        ms(*from_return.last().expect("samples"))
    );
    ctl.stop()?;
    Ok(())
}

fn manifests(objects: usize) -> String {
    let listeners = objects / 4;
    let policies = objects - listeners;
    // Distinct free ports: hold them all while choosing.
    let held: Vec<std::net::TcpListener> = (0..listeners)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect();
    drop(held);
    let mut text = String::new();
    for i in 0..policies {
        text.push_str(&policy(&format!("p-{i:04}"), "Relay"));
        text.push_str("---\n");
    }
    for (i, port) in ports.into_iter().enumerate() {
        text.push_str(&listener(
            &format!("l-{i:04}"),
            port,
            &format!("p-{:04}", i % policies),
        ));
        text.push_str("---\n");
    }
    text
}

/// `Ready`'s status and reason for the current generation (`-` when not written yet).
fn ready_state(o: &DynamicObject) -> String {
    let generation = o.metadata.generation;
    o.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready" && c["observedGeneration"].as_i64() == generation)
        .map(|c| {
            format!(
                "{}/{}",
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "-".into())
}

/// The two kinds of sections 1 and 2.
const POLICIES_AND_LISTENERS: &[(&str, &str)] = &[
    ("MailFlowPolicy", "mailflowpolicies"),
    ("Listener", "listeners"),
];

/// The five kinds.
pub(crate) const ALL_KINDS: &[(&str, &str)] = &[
    ("LdapProfile", "ldapprofiles"),
    ("SmtpAuthProfile", "smtpauthprofiles"),
    ("MailFlowPolicy", "mailflowpolicies"),
    ("Listener", "listeners"),
    ("CrlSource", "crlsources"),
];

/// Whether an object's state (from [`ready_state`]) counts as settled: `Ready=True`, or
/// with `any_status`, any `Ready` written for the current generation.
fn settled(state: &str, any_status: bool) -> bool {
    if any_status {
        state != "-"
    } else {
        state == "True/Ready"
    }
}

/// Watches `kinds` (a watch, not polling: the API server is what is measured) until
/// `objects` objects are settled (see [`settled`]).
pub(crate) async fn all_ready(
    client: kube::Client,
    ns: String,
    objects: usize,
    kinds: &[(&'static str, &'static str)],
    any_status: bool,
    timeout: Duration,
) -> Result<Instant> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let mut streams = Vec::new();
    for &(kind, plural) in kinds {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("postern.dev", "v1alpha1", kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        streams.push(
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |e| (kind, e))
                .boxed(),
        );
    }
    let mut events = futures::stream::select_all(streams);
    let states: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        Default::default();
    let watch = async {
        while let Some((kind, ev)) = events.next().await {
            let mut st = states.lock().expect("not poisoned");
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    st.insert(
                        format!("{kind}/{}", o.metadata.name.clone().unwrap_or_default()),
                        ready_state(&o),
                    );
                }
                Ok(watcher::Event::Delete(o)) => {
                    st.remove(&format!("{kind}/{}", o.metadata.name.unwrap_or_default()));
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(e) => eprintln!("watch: {e} (retrying)"),
            }
            if st.len() == objects && st.values().all(|v| settled(v, any_status)) {
                return Some(Instant::now());
            }
        }
        None
    };
    let outcome = tokio::time::timeout(timeout, watch).await;
    match outcome {
        Ok(Some(t)) => Ok(t),
        _ => {
            let mut by_state: std::collections::BTreeMap<String, usize> = Default::default();
            for v in states.lock().expect("not poisoned").values() {
                *by_state.entry(v.clone()).or_default() += 1;
            }
            bail!("not all {objects} settled after {timeout:?}: {by_state:?}")
        }
    }
}

fn wait_all_ready(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    ns: &str,
    objects: usize,
) -> Result<Instant> {
    rt.block_on(all_ready(
        client.clone(),
        ns.to_owned(),
        objects,
        POLICIES_AND_LISTENERS,
        false,
        Duration::from_secs(300),
    ))
}

fn settle(cluster: &KubeCluster, objects: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client = rt.block_on(cluster.client())?;

    // a) One kubectl apply of every object, controller and gateway running.
    let ns = cluster.create_namespace("bench-settle")?;
    let mut spec = ControllerSpec::new(&ns, "ctl-settle");
    spec.extra = extra_args();
    let mut ctl = ControllerProcess::start(cluster, &spec)?;
    ctl.wait_ready()?;
    let mut gw = start_gateway(cluster, User::Admin, &ns, "gw-settle")?;
    let text = manifests(objects);
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &text)?;
    let t0 = Instant::now();
    cluster.apply_path(&ns, file.path())?;
    let t1 = Instant::now();
    let t2 = wait_all_ready(&rt, &client, &ns, objects)
        .with_context(|| format!("settling:\n{}", tail(&ctl.logs())))?;
    let writes = ctl.metric("postern_controller_status_writes_total")?;
    println!(
        "| {objects} objects, one kubectl apply → all Ready (from kubectl start) | {} | kubectl itself: {} | after kubectl returned: {} | status writes: {writes} |",
        ms(t2 - t0),
        ms(t1 - t0),
        ms(t2.saturating_duration_since(t1))
    );
    ctl.stop()?;
    // One host stands in for many pods: free the listeners' ports for the next gateway.
    gw.stop()?;

    // b) The objects are there (in a new namespace, no status yet); a controller starts.
    let ns = cluster.create_namespace("bench-cold")?;
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-cold")?;
    std::fs::write(file.path(), manifests(objects))?;
    cluster.apply_path(&ns, file.path())?;
    let t0 = Instant::now();
    let mut spec = ControllerSpec::new(&ns, "ctl-cold");
    spec.extra = extra_args();
    let mut ctl = ControllerProcess::start(cluster, &spec)?;
    let t2 = wait_all_ready(&rt, &client, &ns, objects)
        .with_context(|| format!("cold start:\n{}", tail(&ctl.logs())))?;
    let writes = ctl.metric("postern_controller_status_writes_total")?;
    println!(
        "| {objects} objects present, controller start → all Ready | {} | | | status writes: {writes} |",
        ms(t2 - t0)
    );
    print_timeline(&ctl);
    ctl.stop()?;
    Ok(())
}

/// With `$POSTERN_BENCH_LOGS`: the controller's log lines that make up the timeline of
/// a start (leadership, caches synced, reconciles, publishes).
pub(crate) fn print_timeline(ctl: &ControllerProcess) {
    if std::env::var_os("POSTERN_BENCH_LOGS").is_some() {
        for l in ctl.logs().lines().filter(|l| {
            l.contains("reconciled")
                || l.contains("synced")
                || l.contains("published")
                || l.contains("leader")
        }) {
            eprintln!("{l}");
        }
    }
}

/// Extra controller arguments from `$POSTERN_BENCH_CONTROLLER_ARGS` (space separated).
pub(crate) fn extra_args() -> Vec<String> {
    std::env::var("POSTERN_BENCH_CONTROLLER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: usize| -> Result<usize> {
        Ok(args
            .get(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (changes, objects) = (arg(0, 100)?, arg(1, 1000)?);
    let (realistic_objects, rss_objects) = (arg(2, 1000)?, arg(3, 5000)?);
    let only = std::env::var("POSTERN_BENCH_ONLY").ok();
    let cluster = KubeCluster::start()?;
    cluster.apply_crds()?;
    if only.is_none() {
        latency(&cluster, changes)?;
        settle(&cluster, objects)?;
    }
    if only.as_deref().is_none_or(|o| o == "realistic") {
        realistic::run(&cluster, realistic_objects, rss_objects)?;
    }
    Ok(())
}
