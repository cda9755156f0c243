//! Every process the harness starts is stopped when it ends: by the owners' `Drop` on a
//! normal end or a panic, and when the harness is interrupted (SIGINT, SIGTERM) by this
//! registry of Postfix instances (Postfix's master daemonises and would outlive it) and
//! the test kit's registry of the processes it started.

use std::path::PathBuf;
use std::sync::Mutex;

static POSTFIX: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remember a Postfix configuration directory to `postfix stop` on interruption.
pub(crate) fn track_postfix(etc: PathBuf) {
    POSTFIX.lock().expect("cleanup lock").push(etc);
}

/// Forget a stopped Postfix instance.
pub(crate) fn untrack_postfix(etc: &PathBuf) {
    POSTFIX.lock().expect("cleanup lock").retain(|p| p != etc);
}

fn emergency_stop() {
    let etcs = POSTFIX.lock().map(|v| v.clone()).unwrap_or_default();
    for etc in etcs {
        let _ = std::process::Command::new("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("stop")
            .status();
    }
    // The gateways, slapd and smtp-sink the test kit started.
    postern_testkit::process::stop_tracked();
}

/// On SIGINT or SIGTERM: stop everything started, then exit with 130.
pub(crate) fn on_interrupt(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        eprintln!("postern-bench: interrupted; stopping every process it started");
        tokio::task::spawn_blocking(emergency_stop).await.ok();
        std::process::exit(130);
    });
}
