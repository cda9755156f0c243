//! Client certificate verification off the async runtime's workers.
//!
//! rustls calls a [`rustls::server::danger::ClientCertVerifier`] synchronously from inside
//! `ServerConnection::process_new_packets`, which tokio-rustls calls from the poll of the
//! handshake future: the verification runs on whichever runtime worker polls that session,
//! and nothing else queued on that worker (other sessions, the admin server's `/healthz`)
//! runs until it returns. Path building is bounded ([`super::budget`],
//! [`super::presented`]), but a verification that is not a remembered path can still
//! take milliseconds of CPU, and many clients can ask for one at once.
//!
//! Choices considered:
//! - drive the handshake with rustls' own API and move each `process_new_packets` into
//!   `spawn_blocking`: the verification would never touch a worker, but the finished
//!   connection could not become a tokio-rustls stream again (it has no constructor from
//!   parts), so the session's whole TLS stream would have to be reimplemented;
//! - a dedicated verification thread pool the verifier hands work to and waits on: the
//!   verifier is synchronous, so the worker would still be blocked while it waits;
//! - [`tokio::task::block_in_place`] (chosen): the worker that runs into a verification
//!   hands its queue of tasks to another thread before verifying, so other sessions and
//!   `/healthz` keep running while this thread verifies; the session itself waits, as it
//!   must. It needs the multi-threaded runtime (the gateway's); on a current-thread
//!   runtime, or outside any runtime, the verification simply runs in place.
//!
//! On top of that, at most [`max_concurrent`] such verifications run at once in the
//! process (half the CPUs, at least one); the others wait (sleeping, on their own
//! threads, not on a worker) for a turn. So however many clients present expensive
//! chains at the same time, the other half of the CPUs is left to the runtime's workers.
//! Only verifications that can be expensive come here: a chain whose path is remembered
//! ([`super::verified`]) and a refusal decided before any path building stay in place.

use std::sync::{Condvar, LazyLock, Mutex};

use tokio::runtime::{Handle, RuntimeFlavor};

#[cfg(test)]
/// Most verifications running at once in the process.
pub(crate) fn max_concurrent() -> usize {
    GATE.limit
}

static GATE: LazyLock<Gate> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Gate::new(cpus.div_ceil(2))
});

/// Run `verify` where it cannot hold up an async worker, once a turn is free.
pub(crate) fn off_worker<R>(verify: impl FnOnce() -> R) -> R {
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| GATE.run(verify))
    } else {
        GATE.run(verify)
    }
}

/// A counting gate: at most `limit` closures run inside it at once.
#[derive(Debug)]
struct Gate {
    limit: usize,
    running: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            running: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _turn = self.enter();
        f()
    }

    fn enter(&self) -> Turn<'_> {
        // A panic inside a verification must not wedge every later one: the count is
        // restored by `Turn::drop` even then, so a poisoned lock still holds a true count.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= self.limit {
            running = self.freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Turn(self)
    }
}

/// One verification's turn; gives it back when dropped.
struct Turn<'g>(&'g Gate);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn other_tasks_keep_running_on_the_only_worker_while_one_verifies() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let verifying = tokio::spawn(async {
                off_worker(|| std::thread::sleep(Duration::from_millis(600)));
                Instant::now()
            });
            // Let the verification start, then ask the single worker for something else.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let other = tokio::spawn(async { Instant::now() }).await.unwrap();
            let verified = verifying.await.unwrap();
            assert!(
                other < verified,
                "the other task ran only after the verification"
            );
            assert!(
                other.duration_since(started) < Duration::from_millis(500),
                "{:?}",
                other.duration_since(started)
            );
        });
    }

    #[test]
    fn in_place_without_a_multi_threaded_runtime() {
        assert_eq!(off_worker(|| 7), 7);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(async { off_worker(|| 8) }), 8);
    }

    #[test]
    fn at_most_limit_at_once_and_a_panic_gives_its_turn_back() {
        let gate = Arc::new(Gate::new(2));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
                std::thread::spawn(move || {
                    gate.run(|| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);

        let g = gate.clone();
        assert!(
            std::thread::spawn(move || g.run(|| panic!("verification bug")))
                .join()
                .is_err()
        );
        // Both turns are free again.
        let g = gate.clone();
        let held =
            std::thread::spawn(move || g.run(|| std::thread::sleep(Duration::from_millis(50))));
        assert_eq!(gate.run(|| 1) + gate.run(|| 1), 2);
        held.join().unwrap();
        assert_eq!(*gate.running.lock().unwrap_or_else(|e| e.into_inner()), 0);
        assert!(max_concurrent() >= 1);
    }
}
