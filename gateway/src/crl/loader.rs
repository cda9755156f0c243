//! Where fetched CRL files are parsed, verified and indexed: a thread of their own per
//! load, at a lower CPU priority (niceness +10 over the gateway's). Indexing a 50 MB CRL
//! takes about a second of CPU; on a busy gateway that second would otherwise be taken
//! from the threads serving SMTP sessions and show up in their handshake latency. At a
//! lower priority the load takes what the sessions leave (all of it on an idle gateway,
//! so loading at start is as fast as before) while the CRL in force keeps answering. A
//! fresh thread per load, because a thread's priority can be lowered but not raised
//! again without privileges, and loads are rare (a few per source per refresh interval).

/// Niceness of the loading threads.
const NICE: i32 = 10;

/// Run `job` on a new low-priority thread and wait for its result (an error if the thread
/// could not start or panicked).
pub(crate) async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crl-load".to_owned())
        .spawn(move || {
            // Best effort: where the system refuses, the load runs at the gateway's priority.
            let me = Some(rustix::thread::gettid());
            if let Ok(nice) = rustix::process::getpriority_process(me) {
                let _ = rustix::process::setpriority_process(me, (nice + NICE).min(19));
            }
            let _ = tx.send(job());
        })
        .map_err(|e| format!("cannot start a loading thread: {e}"))?;
    rx.await
        .map_err(|_| "the loading thread panicked".to_owned())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_the_job_at_a_lower_priority() {
        let nice = super::run(|| {
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .await
        .unwrap();
        let ours = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice, (ours + super::NICE).min(19));
        let panicked = super::run(|| -> u8 { panic!("boom") }).await;
        assert!(panicked.unwrap_err().contains("panicked"));
    }
}
