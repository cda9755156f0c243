//! A load client for disruption tests: worker threads open SMTP sessions back to back (EHLO,
//! STARTTLS, AUTH PLAIN, one message with a unique Subject, QUIT) and classify each one, so a
//! test can assert that no session the gateway accepted failed, and that every message it
//! acknowledged reached the next hop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::gate::Client;

/// How one session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No greeting: the connection was refused or closed before `220` (never accepted).
    NotAccepted(String),
    /// The message was acknowledged with `250` (its Subject id).
    Delivered(String),
    /// The gateway refused with a 4xx (e.g. `421 4.3.2` while draining): the client retries.
    Deferred(String),
    /// An accepted session that broke (connection lost, 5xx, timeout): a failure.
    Failed(String),
}

/// The credentials and addresses of the sessions.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Where to connect (a forwarder to the Service).
    pub addr: SocketAddr,
    /// CA of the gateway's certificate.
    pub ca_pem: String,
    /// AUTH PLAIN user and password.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Concurrent sessions.
    pub workers: usize,
    /// Pause between a worker's sessions.
    pub pause: Duration,
    /// Prefix of the Subject ids.
    pub tag: String,
}

/// A running load; [`Load::stop`] returns every session's outcome.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<(Instant, Outcome)>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `spec.workers` workers.
    pub fn start(spec: &LoadSpec) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..spec.workers)
            .map(|w| {
                let (stop, outcomes, spec) = (stop.clone(), outcomes.clone(), spec.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let id = format!("{}-{w}-{n}", spec.tag);
                        let o = session(&spec, &id);
                        outcomes.lock().unwrap().push((Instant::now(), o));
                        std::thread::sleep(spec.pause);
                    }
                })
            })
            .collect();
        Self {
            stop,
            outcomes,
            workers,
        }
    }

    /// Outcomes so far.
    pub fn count(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    /// Stops the workers (each finishes its session) and returns all outcomes.
    pub fn stop(self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.join();
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

/// One session; see [`Outcome`].
pub fn session(spec: &LoadSpec, id: &str) -> Outcome {
    let mut c = match Client::connect(spec.addr) {
        Ok(c) if c.greeting.starts_with("220") => c,
        Ok(c) if c.greeting.starts_with('4') => return Outcome::Deferred(c.greeting),
        Ok(c) => return Outcome::NotAccepted(c.greeting),
        Err(e) => return Outcome::NotAccepted(e.to_string()),
    };
    let step = |what: &str, r: anyhow::Result<(u16, String)>, want: u16| -> Result<(), Outcome> {
        match r {
            Ok((code, _)) if code == want => Ok(()),
            Ok((code, text)) if (400..500).contains(&code) => {
                Err(Outcome::Deferred(format!("{what}: {text}")))
            }
            Ok((_, text)) => Err(Outcome::Failed(format!("{what}: {text}"))),
            Err(e) => Err(Outcome::Failed(format!("{what}: {e}"))),
        }
    };
    let mut run = || -> Result<Outcome, Outcome> {
        step("EHLO", c.cmd("EHLO load.test"), 250)?;
        c.starttls(&spec.ca_pem, None)
            .map_err(|e| Outcome::Failed(format!("STARTTLS: {e}")))?;
        step("EHLO", c.cmd("EHLO load.test"), 250)?;
        step(
            "AUTH",
            c.auth_plain(spec.user.as_bytes(), spec.password.as_bytes()),
            235,
        )?;
        let body = format!(
            "Subject: {id}\r\nFrom: <{0}@example.org>\r\n\r\nload {id}\r\n",
            spec.user
        );
        step(
            "message",
            c.send_mail(
                &format!("{}@example.org", spec.user),
                "someone@example.net",
                &body,
            ),
            250,
        )?;
        let _ = c.cmd("QUIT");
        Ok(Outcome::Delivered(id.to_owned()))
    };
    match run() {
        Ok(o) | Err(o) => o,
    }
}

/// Counts of each outcome kind: (not accepted, delivered, deferred, failed).
pub fn tally(outcomes: &[(Instant, Outcome)]) -> (usize, usize, usize, usize) {
    let mut t = (0, 0, 0, 0);
    for (_, o) in outcomes {
        match o {
            Outcome::NotAccepted(_) => t.0 += 1,
            Outcome::Delivered(_) => t.1 += 1,
            Outcome::Deferred(_) => t.2 += 1,
            Outcome::Failed(_) => t.3 += 1,
        }
    }
    t
}
