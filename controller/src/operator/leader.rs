//! Leader election with a `coordination.k8s.io/v1` Lease, so one controller replica writes.
//!
//! The algorithm is client-go's: every `retry_period` each candidate reads the Lease; the
//! holder renews it, the others take it over once it has not changed for the holder's
//! `leaseDurationSeconds` *as measured on their own clock* (never by comparing timestamps
//! across machines). Every write is a replace carrying the observed `resourceVersion`,
//! so two candidates can never both win the same round.
//!
//! A leader that cannot renew stops acting as leader `renew_deadline` after its last
//! successful renewal — before any standby can take over (`renew_deadline <
//! lease_duration`) — so two writers never overlap. On graceful shutdown the leader
//! releases the Lease so a standby takes over at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where the Lease lives and how the election is timed.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease (the controller's own namespace).
    pub namespace: String,
    /// Name of the Lease, shared by all replicas of one controller deployment.
    pub name: String,
    /// This candidate's identity (its Pod name), unique among the replicas.
    pub identity: String,
    /// How long a holder's claim lasts without renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal; < `lease_duration`.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The part of a Lease the decision depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `holderIdentity`; `None` or empty means released.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// `renewTime` as written by the holder (only compared for change, never to our clock).
    pub renew_time: Option<String>,
}

/// What a candidate should do this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// It is free or its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it and renews it.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the observed record, when the record last changed on our clock
/// (`observed_at`), and now. Pure.
pub fn decide(record: Option<&Record>, me: &str, observed_at: Instant, now: Instant) -> Decision {
    let Some(r) = record else {
        return Decision::Create;
    };
    match r.holder.as_deref() {
        None | Some("") => Decision::TakeOver,
        Some(h) if h == me => Decision::Renew,
        Some(h) => {
            if now.saturating_duration_since(observed_at) >= r.duration {
                Decision::TakeOver
            } else {
                Decision::Follow { holder: h.into() }
            }
        }
    }
}

/// Tracks when the observed record last changed, on the local clock.
#[derive(Debug, Default)]
struct Observer {
    last: Option<Record>,
    at: Option<Instant>,
}

impl Observer {
    fn observe(&mut self, record: Option<&Record>, now: Instant) -> Instant {
        if self.last.as_ref() != record || self.at.is_none() {
            self.last = record.cloned();
            self.at = Some(now);
        }
        self.at.expect("set above")
    }
}

/// A view of the election for the rest of the controller.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// Holds the sender of [`Leadership::always`] so `changed` never ends.
    _always: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// Whether this replica may write now: it holds the Lease and its last renewal is
    /// recent enough that no standby can have taken over.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
            && self
                .valid_until
                .lock()
                .expect("not poisoned")
                .is_some_and(|t| Instant::now() < t)
    }

    /// Waits until leadership changes; returns the new state. Never returns once the
    /// election has ended (the last state stands).
    pub async fn changed(&mut self) -> bool {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.rx.borrow_and_update()
    }

    /// A leadership that is always held (for a single replica run without election).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Self {
            rx,
            valid_until: Arc::new(Mutex::new(Some(
                Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
            ))),
            _always: Some(Arc::new(tx)),
        }
    }
}

/// Errors of one election round.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused or could not be reached.
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The client error.
        source: kube::Error,
    },
}

/// Runs an election until `shutdown`; the returned [`Leadership`] follows it.
pub fn spawn(
    client: Client,
    settings: LeaseSettings,
    shutdown: CancellationToken,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let valid_until = Arc::new(Mutex::new(None));
    let leadership = Leadership {
        rx,
        valid_until: valid_until.clone(),
        _always: None,
    };
    let task = tokio::spawn(run(client, settings, tx, valid_until, shutdown));
    (leadership, task)
}

async fn run(
    client: Client,
    s: LeaseSettings,
    tx: watch::Sender<bool>,
    valid_until: Arc<Mutex<Option<Instant>>>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let mut observer = Observer::default();
    let mut last_renew: Option<Instant> = None;
    let mut last_holder: Option<String> = None;
    loop {
        let started = Instant::now();
        match round(&api, &s, &mut observer).await {
            Ok(Outcome::Leading) => {
                *valid_until.lock().expect("not poisoned") = Some(started + s.renew_deadline);
                last_renew = Some(started);
                if !*tx.borrow() {
                    tracing::info!(lease = %s.name, namespace = %s.namespace, identity = %s.identity,
                        "became leader");
                    tx.send_replace(true);
                }
            }
            Ok(Outcome::Following(holder)) => {
                if *tx.borrow() {
                    tracing::warn!(lease = %s.name, holder = %holder, "lost leadership");
                    tx.send_replace(false);
                }
                *valid_until.lock().expect("not poisoned") = None;
                last_renew = None;
                if last_holder.as_deref() != Some(holder.as_str()) {
                    tracing::info!(lease = %s.name, holder = %holder, identity = %s.identity,
                        "standing by; another replica leads");
                    last_holder = Some(holder);
                }
            }
            Err(e) => {
                tracing::warn!(lease = %s.name, error = %e, "leader election round failed");
                if *tx.borrow() && last_renew.is_none_or(|t| t.elapsed() >= s.renew_deadline) {
                    tracing::error!(lease = %s.name, "could not renew the lease in time; stepping down");
                    tx.send_replace(false);
                    *valid_until.lock().expect("not poisoned") = None;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(s.retry_period) => {}
        }
    }
    if *tx.borrow() {
        tx.send_replace(false);
        *valid_until.lock().expect("not poisoned") = None;
        match release(&api, &s).await {
            Ok(()) => tracing::info!(lease = %s.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %s.name, error = %e, "could not release the lease"),
        }
    }
}

enum Outcome {
    Leading,
    Following(String),
}

fn record_of(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64),
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
    }
}

async fn round(
    api: &Api<Lease>,
    s: &LeaseSettings,
    observer: &mut Observer,
) -> Result<Outcome, LeaderError> {
    let err = |source| LeaderError::Api {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        source,
    };
    let current = api.get_opt(&s.name).await.map_err(err)?;
    let record = current.as_ref().map(record_of);
    let now = Instant::now();
    let observed_at = observer.observe(record.as_ref(), now);
    let stamp = MicroTime(Timestamp::now());
    let duration_secs = s.lease_duration.as_secs().max(1) as i32;
    match decide(record.as_ref(), &s.identity, observed_at, now) {
        Decision::Follow { holder } => Ok(Outcome::Following(holder)),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                // Another candidate created it first.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Outcome::Following("(another candidate)".into()))
                }
                Err(e) => Err(err(e)),
            }
        }
        decision @ (Decision::Renew | Decision::TakeOver) => {
            let mut lease = current.expect("decide returns Create when absent");
            let spec = lease.spec.get_or_insert_with(Default::default);
            if decision == Decision::TakeOver {
                spec.holder_identity = Some(s.identity.clone());
                spec.acquire_time = Some(stamp.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(duration_secs);
            spec.renew_time = Some(stamp);
            // The replace carries the observed resourceVersion: a concurrent writer wins,
            // we lose (409) and follow.
            match api.replace(&s.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Outcome::Following("(another candidate)".into()))
                }
                Err(e) => Err(err(e)),
            }
        }
    }
}

async fn release(api: &Api<Lease>, s: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&s.name, &PostParams::default(), &lease).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, secs: u64, renew: &str) -> Record {
        Record {
            holder: holder.map(Into::into),
            duration: Duration::from_secs(secs),
            renew_time: Some(renew.into()),
        }
    }

    #[test]
    fn creates_when_absent_and_renews_own() {
        let t = Instant::now();
        assert_eq!(decide(None, "a", t, t), Decision::Create);
        assert_eq!(
            decide(Some(&rec(Some("a"), 15, "1")), "a", t, t),
            Decision::Renew
        );
    }

    #[test]
    fn follows_a_live_holder_and_takes_over_an_expired_one() {
        let t = Instant::now();
        let r = rec(Some("b"), 15, "1");
        assert_eq!(
            decide(Some(&r), "a", t, t + Duration::from_secs(14)),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&r), "a", t, t + Duration::from_secs(15)),
            Decision::TakeOver
        );
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let t = Instant::now();
        assert_eq!(
            decide(Some(&rec(None, 1, "1")), "a", t, t),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&rec(Some(""), 15, "1")), "a", t, t),
            Decision::TakeOver
        );
    }

    #[test]
    fn expiry_is_measured_from_the_last_observed_change() {
        let mut o = Observer::default();
        let t0 = Instant::now();
        let r1 = rec(Some("b"), 15, "1");
        assert_eq!(o.observe(Some(&r1), t0), t0);
        // Same record later: the observation time stays.
        assert_eq!(o.observe(Some(&r1), t0 + Duration::from_secs(10)), t0);
        // Holder renewed: the clock restarts.
        let r2 = rec(Some("b"), 15, "2");
        let t1 = t0 + Duration::from_secs(12);
        assert_eq!(o.observe(Some(&r2), t1), t1);
        assert_eq!(
            decide(Some(&r2), "a", t1, t0 + Duration::from_secs(20)),
            Decision::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn defaults_keep_renew_deadline_below_lease_duration() {
        let s = LeaseSettings::new("ns", "l", "me");
        assert!(s.renew_deadline < s.lease_duration);
        assert!(s.retry_period < s.renew_deadline);
    }
}
