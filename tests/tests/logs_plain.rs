//! Text logs written to a file (not a terminal) carry no colour escapes, for both
//! binaries: a log collector or `less` shows `INFO`, not `\x1b[32m INFO\x1b[0m`. The
//! processes run without `NO_COLOR`, as an operator's would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::gateway::{listener, policy, single};
use postern_tests::kube::KubeCluster;

/// Runs `cmd` with stdout and stderr into a file until its log says `needle`; the log.
fn log_of(mut cmd: Command, needle: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.log");
    let file = std::fs::File::create(&path).unwrap();
    let mut child: Child = cmd
        .env_remove("NO_COLOR")
        .env("POSTERN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains(needle) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains(needle), "never logged {needle:?}:\n{log}");
    log
}

#[test]
fn the_gateway_writes_plain_text_logs_to_a_file() {
    let config = single(
        listener(free_port(), 9, "relayed"),
        policy(postern_config::TlsMode::Disabled, false, false, false),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config.to_yaml()).unwrap();
    let mut cmd = Command::new(workspace_bin("postern-gateway").unwrap());
    cmd.arg("--config")
        .arg(&path)
        .args(["--log-format", "text"])
        .args(["--admin-address", &format!("127.0.0.1:{}", free_port())]);
    let log = log_of(cmd, "gateway ready");
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour escapes in a log file:\n{log:?}"
    );
}

#[test]
fn the_controller_writes_plain_text_logs_to_a_file() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("logs").unwrap();
    let mut cmd = Command::new(workspace_bin("postern").unwrap());
    cmd.arg("controller")
        .args(["--namespace", &ns, "--lease-namespace", &ns])
        .args(["--identity", "ctl-logs"])
        .args(["--metrics-address", &format!("127.0.0.1:{}", free_port())])
        .env("KUBECONFIG", cluster.kubeconfig());
    let log = log_of(cmd, "leading: reconciling every namespace");
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour escapes in a log file:\n{log:?}"
    );
}
