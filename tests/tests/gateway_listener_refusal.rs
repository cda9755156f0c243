//! End-to-end, a gateway on a configuration file: one Listener it cannot bind (its port
//! held by another process) is refused on its own. The rest of the configuration runs and
//! keeps following the file (an emergency `action: Reject` is enforced); a changed
//! Listener whose new port is taken keeps its previous version serving; freeing a port
//! lets its Listener come up without any change to the file.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use postern_config::{self as cfg, GatewayConfig, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::Raw;
use postern_tests::gateway::{launch, listener, policy, single};

/// The first reply on a new connection to `port`, or why there is none.
fn greeting(port: u16) -> Result<String, String> {
    let mut c = Raw::connect(port).map_err(|e| e.to_string())?;
    c.reply().map_err(|e| e.to_string())
}

/// Wait (20 s at most) until `/config` satisfies `pred`.
fn wait_status(
    gw: &Gateway,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = gw.config_status().unwrap();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /config {s}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["refusedListeners"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn metric_line(gw: &Gateway, prefix: &str) -> Option<String> {
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[test]
fn a_listener_on_a_port_in_use_is_refused_alone_and_comes_up_once_the_port_is_free() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    // Another process on the host holds this port (here: the test itself).
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let mut config: GatewayConfig = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    );
    config.listeners.insert(
        "submission".into(),
        listener(busy_port, sink.port, "relayed"),
    );
    let gw = launch(&config)
        .args(&["--listener-retry-interval", "500ms"])
        .start()
        .expect("the gateway starts and serves what it can");

    // In force, except `submission`, which says why.
    let status = gw.config_status().unwrap();
    assert_eq!(status["hash"], config.hash());
    let r = refused(&status);
    assert_eq!(r.len(), 1, "{status}");
    assert_eq!(r[0]["listener"], "submission");
    assert_eq!(r[0]["reason"], "PortUnavailable");
    assert_eq!(r[0]["address"], format!("127.0.0.1:{busy_port}"));
    assert!(
        r[0]["message"].as_str().unwrap().contains("in use"),
        "{status}"
    );
    assert_eq!(r[0]["serving"]["state"], "notServed");
    let line = gw
        .wait_log_line(Duration::from_secs(5), |v| {
            v["decision"] == "listener" && v["outcome"] == "refused"
        })
        .expect("a decision line for the refused listener");
    assert_eq!(line["listener"], "submission");
    assert_eq!(line["reason"], "PortUnavailable");
    assert_eq!(line["serving"], "not_served");
    assert!(line["error"].as_str().unwrap().contains("in use"), "{line}");
    assert_eq!(
        metric_line(&gw, "postern_listener_refused{").as_deref(),
        Some(
            "postern_listener_refused{listener=\"submission\",reason=\"PortUnavailable\",serving=\"not_served\"} 1"
        )
    );
    assert!(greeting(port).unwrap().starts_with("220 "));

    // An emergency change while `submission` is still refused: enforced.
    let mut closed = config.clone();
    closed.policies.get_mut("relayed").unwrap().action = cfg::PolicyAction::Reject;
    gw.write_config_text(&closed.to_yaml()).unwrap();
    gw.wait_hash(&closed.hash(), Duration::from_secs(10))
        .unwrap();
    assert!(greeting(port).unwrap().starts_with("554 5.7.1"));
    assert_eq!(
        refused(&gw.config_status().unwrap())[0]["listener"],
        "submission"
    );

    // `smtp` moves to a port that is taken too: its previous version keeps serving.
    let busy2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy2_port = busy2.local_addr().unwrap().port();
    let mut moved = closed.clone();
    moved.listeners.get_mut("smtp").unwrap().port = busy2_port;
    gw.write_config_text(&moved.to_yaml()).unwrap();
    gw.wait_hash(&moved.hash(), Duration::from_secs(10))
        .unwrap();
    let status = gw.config_status().unwrap();
    let r = refused(&status);
    assert_eq!(r.len(), 2, "{status}");
    assert_eq!(r[0]["listener"], "smtp");
    assert_eq!(r[0]["serving"]["state"], "previousVersion");
    assert_eq!(r[0]["serving"]["address"], format!("127.0.0.1:{port}"));
    assert!(
        greeting(port).unwrap().starts_with("554 5.7.1"),
        "the previous version serves"
    );
    assert!(
        metric_line(&gw, "postern_listener_refused{listener=\"smtp\"")
            .is_some_and(|l| l.contains("serving=\"previous_version\"")),
        "{:?}",
        metric_line(&gw, "postern_listener_refused{")
    );

    // The other process lets go of the ports: both Listeners come up, nothing changed in
    // the file; the previous version's port closes.
    drop(busy);
    let status = wait_status(&gw, "submission up", |s| {
        refused(s).iter().all(|r| r["listener"] != "submission")
    });
    assert_eq!(status["hash"], moved.hash());
    assert!(greeting(busy_port).unwrap().starts_with("554 5.7.1"));
    assert!(
        gw.wait_log_line(Duration::from_secs(5), |v| v["decision"] == "listener"
            && v["outcome"] == "serving"
            && v["listener"] == "submission")
            .is_some(),
        "{}",
        gw.log()
    );
    drop(busy2);
    wait_status(&gw, "smtp up on its new port", |s| refused(s).is_empty());
    assert!(greeting(busy2_port).unwrap().starts_with("554 5.7.1"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        greeting(port).is_err(),
        "the previous version's port is closed"
    );
    assert_eq!(metric_line(&gw, "postern_listener_refused{"), None);
}
