//! The CRLs in force and the [`RevocationChecker`] the TLS verifiers ask.
//!
//! Readers see an immutable snapshot (issuer name → indexes, plus the sources still
//! waiting for a CRL) behind a lock held only for the lookup itself; a new CRL is indexed
//! elsewhere and swapped in whole, so a handshake never waits for a load and never sees
//! half of one.
//!
//! The answer for one certificate (RFC 5280 section 6.3.3, direct CRLs):
//! 1. the CRLs in force of its issuer in the asking scope, narrowed to those of its
//!    issuer's key when the certificate names one that has CRLs;
//! 2. listed by any of them → revoked (serial numbers are unique per CA);
//! 3. otherwise the CRLs that *cover* it (user or CA certificate scope, and partition:
//!    the certificate's CRL distribution points against the Issuing Distribution Point)
//!    decide: one current → good; all stale → stale;
//! 4. the issuer has CRLs but none covers the certificate → missing (fail closed);
//! 5. the issuer has no CRL in force: missing when a fail-closed source that applies to
//!    the scope once had a CRL of that issuer, or has never had any CRL (it may be this
//!    CA's); else no CRL (revocation is not configured for that CA).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::coverage::{CaCoverage, ListenerCas, SourceView, coverage};
use super::discovery::{self, Child, Presented};
use super::index::CrlIndex;
use super::load::{Loaded, Missing};
use super::metrics::{CrlMetrics, CrlMetricsSource, Gauges};
use super::status::{LastError, SourceState, SourceStatus};
use super::verify::TrustStore;
use super::{rfc3339, unix_now};
use crate::tls::revocation::{CheckedCertificate, MissingCrl, RevocationChecker, RevocationStatus};
use postern_config::protocol::{DiscoveredFrom, DiscoveredUrl, ServedBy};
use postern_config::{CrlFailurePolicy, CrlScope, CrlSource, GatewayConfig};

fn scope_bit(scope: CrlScope) -> u8 {
    match scope {
        CrlScope::InboundSmtpTls => 1,
        CrlScope::OutboundSmtpTls => 2,
    }
}

/// One CRL in force, as the checker sees it.
#[derive(Debug)]
struct Covering {
    index: Arc<CrlIndex>,
    source: Arc<str>,
    scopes: u8,
}

/// A fail-closed source without a CRL of some issuer in force.
#[derive(Debug)]
struct Waiting {
    source: Arc<str>,
    scopes: u8,
}

/// Issuer name DER → the CRLs in force for it; and the fail-closed sources that lack CRLs.
#[derive(Debug, Default)]
struct Snapshot {
    by_issuer: HashMap<Box<[u8]>, Vec<Covering>>,
    /// Issuer → fail-closed sources that had a CRL of it in force and no longer have.
    dropped: HashMap<Box<[u8]>, Vec<Waiting>>,
    /// Fail-closed sources that have never had a CRL in force (their issuer is unknown).
    not_loaded: Vec<Waiting>,
    /// Issuer → fail-closed discovered URLs found for it that have no CRL in force yet.
    pending: HashMap<Box<[u8]>, Vec<Waiting>>,
    /// Sources discovering from presented certificates.
    presented: Vec<Presented>,
}

/// Everything the store knows about a source.
#[derive(Debug)]
struct SourceRecord {
    spec: CrlSource,
    /// Bumped whenever the spec changes; results of fetches for an older generation are dropped.
    generation: u64,
    /// The next successful load replaces everything (the spec changed).
    replace_all: bool,
    crls: Vec<Arc<CrlIndex>>,
    /// Issuers (name DER) the source has had CRLs of in force since its URLs last
    /// changed: a fail-closed source keeps answering "missing" for them if they go.
    known_issuers: Vec<Box<[u8]>>,
    /// The first fetch attempt has ended (a CRL in force, `304`, or every URL failed), or
    /// a CRL was restored from the disk cache: the readiness gate waits for this.
    first_attempt_done: bool,
    last_attempt: Option<i64>,
    last_fetch: Option<i64>,
    last_change: Option<i64>,
    next_fetch: Option<i64>,
    served_by: Option<ServedBy>,
    served_url: Option<String>,
    restored_from_disk: bool,
    failures: u32,
    last_error: Option<LastError>,
    /// Set when this record is a URL discovered by another source.
    child: Option<Child>,
}

impl SourceRecord {
    fn new(spec: CrlSource) -> Self {
        Self {
            child: None,
            spec,
            generation: 1,
            replace_all: false,
            crls: Vec::new(),
            known_issuers: Vec::new(),
            first_attempt_done: false,
            last_attempt: None,
            last_fetch: None,
            last_change: None,
            next_fetch: None,
            served_by: None,
            served_url: None,
            restored_from_disk: false,
            failures: 0,
            last_error: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    trust: Arc<TrustStore>,
    sources: BTreeMap<String, SourceRecord>,
    /// A configuration has been taken in.
    configured: bool,
    /// Every source of the first configurations reported its first fetch: readiness no
    /// longer waits for CRL sources (see [`CrlStore::startup_pending`]).
    started: bool,
    /// The CAs of each listener's client CA bundle, for the coverage view.
    listener_cas: Vec<ListenerCas>,
    /// Per source, the discovered URLs refused (not allowed, or over the cap) and logged.
    refused_urls: HashMap<String, HashSet<String>>,
}

/// How many refused discovered URLs are remembered per source (each logged once).
const REFUSED_URLS_REMEMBERED: usize = 1024;

/// What [`CrlStore::configure`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Sources to (re)start fetching, with their generation.
    pub start: Vec<(String, u64)>,
    /// Sources to stop fetching (removed, disabled or changed).
    pub stop: Vec<String>,
    /// CRLs dropped because their CA is no longer trusted: (source, issuer).
    pub untrusted: Vec<(String, String)>,
}

/// A successful load, to put in force.
#[derive(Debug)]
pub struct Install {
    /// The loaded CRLs.
    pub loaded: Loaded,
    /// Which URL served them.
    pub served_by: ServedBy,
    /// That URL.
    pub url: String,
    /// Read from the disk cache rather than fetched.
    pub from_disk: bool,
    /// When it was fetched (Unix seconds).
    pub at: i64,
}

/// The CRLs in force, per source; the gateway's [`RevocationChecker`].
#[derive(Debug)]
pub struct CrlStore {
    snapshot: RwLock<Arc<Snapshot>>,
    state: Mutex<State>,
    pub(crate) metrics: CrlMetrics,
    /// Where discovered URLs to start fetching are sent (the service's fetch tasks).
    discovered: Mutex<Option<tokio::sync::mpsc::UnboundedSender<(String, u64)>>>,
}

impl Default for CrlStore {
    fn default() -> Self {
        Self::new()
    }
}

impl CrlStore {
    /// An empty store (every check answers `NoCrl`).
    pub fn new() -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            state: Mutex::new(State::default()),
            metrics: CrlMetrics::default(),
            discovered: Mutex::new(None),
        }
    }

    /// Where to send the URLs discovered in presented certificates, to be fetched.
    pub(crate) fn on_discovery(&self, tx: tokio::sync::mpsc::UnboundedSender<(String, u64)>) {
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is a
        // whole-value assignment), so poisoning is not a reason to stop checking.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take in a (new) configuration: trusted CAs and sources.
    pub fn configure(&self, config: &GatewayConfig) -> Reconfigured {
        let trust = Arc::new(TrustStore::from_config(config));
        let mut out = Reconfigured::default();
        let mut st = self.state();
        st.trust = Arc::clone(&trust);
        st.configured = true;
        st.listener_cas = ListenerCas::from_config(config);
        let removed: Vec<String> = st
            .sources
            .iter()
            .filter(|(k, r)| r.child.is_none() && !config.crl_sources.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for name in removed {
            st.sources.remove(&name);
            out.stop.push(name);
        }
        for (name, spec) in &config.crl_sources {
            match st.sources.get_mut(name) {
                None => {
                    st.sources
                        .insert(name.clone(), SourceRecord::new(spec.clone()));
                    if spec.enabled && spec.primary_url.is_some() {
                        out.start.push((name.clone(), 1));
                    }
                }
                Some(rec) if rec.spec != *spec => {
                    let fetch_changed = rec.spec.primary_url != spec.primary_url
                        || rec.spec.secondary_url != spec.secondary_url
                        || rec.spec.format != spec.format;
                    rec.generation += 1;
                    rec.replace_all |= fetch_changed;
                    rec.spec = spec.clone();
                    out.stop.push(name.clone());
                    if spec.enabled && spec.primary_url.is_some() {
                        out.start.push((name.clone(), rec.generation));
                    }
                }
                Some(_) => {}
            }
        }
        discovered_from_config(&mut st, config, &mut out);
        for (name, rec) in st.sources.iter_mut() {
            rec.crls.retain(|ix| {
                let ok = trust.still_trusts(&ix.meta.issuer_der, &ix.meta.signer_fingerprint);
                if !ok {
                    out.untrusted.push((name.clone(), ix.meta.issuer.clone()));
                }
                ok
            });
        }
        self.publish(&st);
        out
    }

    /// Take in the CRL distribution points of a certificate a client presented (and that
    /// verified) for the sources discovering from presented certificates: a URL seen for
    /// the first time becomes a fetched child of its source, when allowed. Returns a new
    /// fail-closed child when the certificate's issuer had no CRL in force: the
    /// certificate is unverifiable now, however fast that child loads.
    fn discover_presented(&self, scope: CrlScope, cert: &CheckedCertificate<'_>) -> Option<String> {
        let bit = scope_bit(scope);
        let (todo, had_crl): (Vec<(Arc<str>, String)>, bool) = {
            let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            if snap.presented.is_empty() {
                return None;
            }
            let had_crl = snap
                .by_issuer
                .get(cert.issuer_der)
                .is_some_and(|all| all.iter().any(|c| c.scopes & bit != 0));
            let todo = snap
                .presented
                .iter()
                .filter(|p| p.scopes & bit != 0)
                .flat_map(|p| {
                    discovery::uris(cert)
                        .filter(|u| !p.known.contains(*u))
                        .map(|u| (Arc::clone(&p.source), u.to_owned()))
                })
                .collect();
            (todo, had_crl)
        };
        if todo.is_empty() {
            return None;
        }
        let mut st = self.state();
        let mut start = Vec::new();
        let mut unverifiable = None;
        for (source, url) in todo {
            if let Some(key) = add_child(
                &mut st,
                &source,
                &url,
                DiscoveredFrom::PresentedCertificate,
                cert.issuer_der,
            ) {
                let closed = st
                    .sources
                    .get(&key)
                    .is_some_and(|r| r.spec.failure_policy == CrlFailurePolicy::Closed);
                if closed && !had_crl {
                    unverifiable.get_or_insert_with(|| key.clone());
                }
                start.push(key);
            }
        }
        self.publish(&st);
        drop(st);
        if let Some(tx) = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            for key in start {
                let _ = tx.send((key, 1));
            }
        }
        unverifiable
    }

    /// The trusted CAs of the current configuration.
    pub fn trust(&self) -> Arc<TrustStore> {
        Arc::clone(&self.state().trust)
    }

    /// The spec and generation of an enabled source.
    pub fn spec(&self, source: &str) -> Option<(CrlSource, u64)> {
        let st = self.state();
        st.sources
            .get(source)
            .filter(|r| r.spec.enabled)
            .map(|r| (r.spec.clone(), r.generation))
    }

    /// The CRLs in force for a source, and what to do with those a new file lacks.
    pub fn in_force(&self, source: &str) -> (Vec<Arc<CrlIndex>>, Missing) {
        let st = self.state();
        match st.sources.get(source) {
            Some(r) => (
                r.crls.clone(),
                if r.replace_all {
                    Missing::Drop
                } else {
                    Missing::Retain
                },
            ),
            None => (Vec::new(), Missing::Retain),
        }
    }

    /// Put a load in force. Returns false (and changes nothing) if the source changed
    /// generation or disappeared meanwhile.
    pub fn install(&self, source: &str, generation: u64, install: Install) -> bool {
        let mut st = self.state();
        let Some(rec) = st.sources.get_mut(source) else {
            return false;
        };
        if rec.generation != generation {
            return false;
        }
        if install.loaded.changed || rec.crls.is_empty() {
            rec.last_change = Some(install.at);
        }
        rec.crls = install.loaded.crls;
        if rec.replace_all {
            rec.known_issuers.clear();
        }
        for ix in &rec.crls {
            if !rec.known_issuers.contains(&ix.meta.issuer_der) {
                rec.known_issuers.push(ix.meta.issuer_der.clone());
            }
        }
        rec.first_attempt_done = true;
        rec.replace_all = false;
        rec.served_by = Some(install.served_by);
        rec.served_url = Some(install.url);
        rec.restored_from_disk = install.from_disk;
        if !install.from_disk {
            rec.last_fetch = Some(install.at);
            rec.failures = 0;
        }
        self.publish(&st);
        true
    }

    /// A `304 Not Modified` from the URL whose CRL is in force.
    pub fn not_modified(&self, source: &str, generation: u64, served_by: ServedBy, at: i64) {
        let mut st = self.state();
        if let Some(rec) = st
            .sources
            .get_mut(source)
            .filter(|r| r.generation == generation)
        {
            rec.last_fetch = Some(at);
            rec.served_by = Some(served_by);
            rec.restored_from_disk = false;
            rec.failures = 0;
            rec.first_attempt_done = true;
        }
    }

    /// A fetch attempt started.
    pub fn attempt(&self, source: &str, generation: u64, at: i64) {
        let mut st = self.state();
        if let Some(rec) = st
            .sources
            .get_mut(source)
            .filter(|r| r.generation == generation)
        {
            rec.last_attempt = Some(at);
        }
    }

    /// A URL failed (the attempt goes on with the next URL, if any).
    pub fn failed(&self, source: &str, generation: u64, error: LastError) {
        let mut st = self.state();
        if let Some(rec) = st
            .sources
            .get_mut(source)
            .filter(|r| r.generation == generation)
        {
            rec.last_error = Some(error);
        }
    }

    /// Every URL of an attempt failed.
    pub fn attempt_failed(&self, source: &str, generation: u64) -> u32 {
        let mut st = self.state();
        match st
            .sources
            .get_mut(source)
            .filter(|r| r.generation == generation)
        {
            Some(rec) => {
                rec.failures += 1;
                rec.first_attempt_done = true;
                rec.failures
            }
            None => 0,
        }
    }

    /// The enabled sources that the readiness gate still waits for: those with no CRL in
    /// force whose first fetch has not ended yet. Only the gateway's start is gated: once
    /// every source of the configuration in force has reported (a CRL in force or a failed
    /// first fetch) this returns nothing for good, so a source added later to a gateway
    /// that serves does not take it (and, with it, every pod at once) out of service; that
    /// source's `NotFetched` status and the `crl_missing` refusals say what is going on.
    pub fn startup_pending(&self) -> Vec<String> {
        let mut st = self.state();
        if st.started {
            return Vec::new();
        }
        let pending: Vec<String> = st
            .sources
            .iter()
            .filter(|(_, r)| {
                r.spec.enabled
                    && r.spec.primary_url.is_some()
                    && r.crls.is_empty()
                    && !r.first_attempt_done
            })
            .map(|(name, _)| name.clone())
            .collect();
        if pending.is_empty() && st.configured {
            st.started = true;
        }
        pending
    }

    /// Whether an enabled source with no CRL in force has not finished its first fetch
    /// yet (at start or since a configuration added it): the coverage view is then a
    /// partial one that the next seconds will change.
    pub fn first_fetches_pending(&self) -> bool {
        self.state().sources.values().any(|r| {
            r.spec.enabled
                && r.spec.primary_url.is_some()
                && r.crls.is_empty()
                && !r.first_attempt_done
        })
    }

    /// When the next fetch is due.
    pub fn next_fetch(&self, source: &str, generation: u64, at: i64) {
        let mut st = self.state();
        if let Some(rec) = st
            .sources
            .get_mut(source)
            .filter(|r| r.generation == generation)
        {
            rec.next_fetch = Some(at);
        }
    }

    /// `thisUpdate` and `nextUpdate` of the source's CRL that expires first: the
    /// scheduler refreshes ahead of it by a share of its validity period.
    pub fn earliest_expiry(&self, source: &str) -> Option<(i64, i64)> {
        let st = self.state();
        st.sources
            .get(source)?
            .crls
            .iter()
            .filter_map(|ix| Some((ix.meta.this_update, ix.meta.next_update?)))
            .min_by_key(|(_, next)| *next)
    }

    /// Revocation coverage of every CA of every listener's client CA bundle.
    pub fn coverage(&self) -> Vec<CaCoverage> {
        let st = self.state();
        let views: Vec<SourceView<'_>> = st
            .sources
            .iter()
            .map(|(name, rec)| SourceView {
                name,
                spec: &rec.spec,
                crls: &rec.crls,
                last_fetch: rec.last_fetch,
            })
            .collect();
        coverage(&st.listener_cas, &views)
    }

    /// Status of every source, by name.
    pub fn status(&self) -> Vec<SourceStatus> {
        let now = unix_now();
        let st = self.state();
        st.sources
            .iter()
            .filter(|(_, rec)| rec.child.is_none())
            .map(|(name, rec)| render_with_children(&st, name, rec, now))
            .collect()
    }

    /// Numbers for the metrics collector (enabled sources only).
    pub(crate) fn gauges(&self) -> Vec<Gauges> {
        let now = unix_now();
        let st = self.state();
        st.sources
            .iter()
            .filter(|(_, r)| r.spec.enabled)
            .map(|(name, r)| Gauges {
                name: name.clone(),
                entries: r.crls.iter().map(|ix| ix.meta.entries as i64).sum(),
                until_stale: r
                    .crls
                    .iter()
                    .filter_map(|ix| ix.meta.next_update)
                    .min()
                    .map(|n| n - now),
                stale: (!r.crls.is_empty()).then(|| r.crls.iter().any(|ix| ix.meta.is_stale(now))),
                index_bytes: r.crls.iter().map(|ix| ix.heap_bytes() as i64).sum(),
                failures: i64::from(r.failures),
                last_fetch: r.last_fetch,
                in_force: !r.crls.is_empty(),
                fail_open: r.crls.is_empty() && r.spec.failure_policy == CrlFailurePolicy::Open,
            })
            .collect()
    }

    /// Status of one source.
    pub fn source_status(&self, name: &str) -> Option<SourceStatus> {
        let now = unix_now();
        let st = self.state();
        st.sources
            .get(name)
            .map(|rec| render_with_children(&st, name, rec, now))
    }

    /// Rebuild the reader snapshot from the enabled sources and swap it in.
    fn publish(&self, st: &State) {
        let mut snap = Snapshot::default();
        for (name, rec) in &st.sources {
            if !rec.spec.enabled {
                continue;
            }
            let source: Arc<str> = Arc::from(name.as_str());
            let scopes = rec.spec.applies_to.iter().fold(0, |b, s| b | scope_bit(*s));
            if rec
                .spec
                .discovery
                .as_ref()
                .is_some_and(|d| d.from_presented_certificates)
            {
                let mut known: HashSet<String> = st
                    .sources
                    .values()
                    .filter_map(|r| r.child.as_ref())
                    .filter(|c| c.parent == *name)
                    .map(|c| c.url.clone())
                    .collect();
                known.extend(st.refused_urls.get(name).into_iter().flatten().cloned());
                snap.presented.push(Presented {
                    source: Arc::clone(&source),
                    scopes,
                    known,
                });
            }
            if rec.spec.failure_policy == CrlFailurePolicy::Closed {
                match &rec.child {
                    // A discovered URL is for the issuers it was found for.
                    Some(child) if rec.known_issuers.is_empty() => {
                        for issuer in &child.issuers {
                            snap.pending
                                .entry(issuer.clone())
                                .or_default()
                                .push(Waiting {
                                    source: Arc::clone(&source),
                                    scopes,
                                });
                        }
                    }
                    // A source without a URL of its own (discovery only) loads nothing itself.
                    None if rec.known_issuers.is_empty() && rec.spec.primary_url.is_some() => {
                        snap.not_loaded.push(Waiting {
                            source: Arc::clone(&source),
                            scopes,
                        });
                    }
                    _ => {}
                }
                for issuer in &rec.known_issuers {
                    if !rec.crls.iter().any(|ix| ix.meta.issuer_der == *issuer) {
                        snap.dropped
                            .entry(issuer.clone())
                            .or_default()
                            .push(Waiting {
                                source: Arc::clone(&source),
                                scopes,
                            });
                    }
                }
            }
            for ix in &rec.crls {
                snap.by_issuer
                    .entry(ix.meta.issuer_der.clone())
                    .or_default()
                    .push(Covering {
                        index: Arc::clone(ix),
                        source: Arc::clone(&source),
                        scopes,
                    });
            }
        }
        let snap = Arc::new(snap);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
    }

    fn lookup(&self, scope: CrlScope, cert: &CheckedCertificate<'_>, now: i64) -> RevocationStatus {
        if scope == CrlScope::InboundSmtpTls
            && let Some(source) = self.discover_presented(scope, cert)
        {
            return RevocationStatus::Missing {
                source,
                why: MissingCrl::NotLoaded,
            };
        }
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let bit = scope_bit(scope);
        let all: &[Covering] = snap
            .by_issuer
            .get(cert.issuer_der)
            .map_or(&[], Vec::as_slice);
        let in_scope = || all.iter().filter(move |c| c.scopes & bit != 0);
        if in_scope().next().is_none() {
            let waiting = |w: &&Waiting| w.scopes & bit != 0;
            if let Some(w) = snap
                .dropped
                .get(cert.issuer_der)
                .and_then(|d| d.iter().find(waiting))
            {
                return RevocationStatus::Missing {
                    source: w.source.to_string(),
                    why: MissingCrl::NoLongerInForce,
                };
            }
            // A discovered URL for this issuer has no CRL in force yet.
            if let Some(w) = snap
                .pending
                .get(cert.issuer_der)
                .and_then(|d| d.iter().find(waiting))
            {
                return RevocationStatus::Missing {
                    source: w.source.to_string(),
                    why: MissingCrl::NotLoaded,
                };
            }
            // A source that has never loaded may be this CA's: until it has, the issuer
            // cannot be told apart from one without revocation, so refuse.
            if let Some(w) = snap.not_loaded.iter().find(waiting) {
                return RevocationStatus::Missing {
                    source: w.source.to_string(),
                    why: MissingCrl::NotLoaded,
                };
            }
            return RevocationStatus::NoCrl;
        }
        // A certificate names its issuer's key: CRLs of that key answer for it. Without a
        // key id, or when no CRL has that key, every CRL of the issuer name is consulted.
        let keyed = cert
            .authority_key_id
            .filter(|aki| in_scope().any(|c| c.index.meta.key_id.as_deref() == Some(*aki)));
        let candidates = || {
            in_scope().filter(move |c| {
                keyed.is_none_or(|aki| c.index.meta.key_id.as_deref() == Some(aki))
            })
        };
        // Listed anywhere (serial numbers are unique per CA): revoked, even by a stale CRL
        // or one whose scope does not cover the certificate.
        for c in candidates() {
            if let Some(hit) = c.index.lookup(cert.serial) {
                return RevocationStatus::Revoked {
                    source: c.source.to_string(),
                    reason: hit.reason.map(|r| super::parse::reason_name(r).to_owned()),
                };
            }
        }
        // Staleness is decided among the CRLs that cover the certificate only.
        let mut stale: Option<&Covering> = None;
        for c in candidates().filter(|c| c.index.meta.covers(cert)) {
            if !c.index.meta.is_stale(now) {
                return RevocationStatus::Good;
            }
            stale.get_or_insert(c);
        }
        match stale {
            Some(c) => RevocationStatus::Stale {
                source: c.source.to_string(),
                next_update: c.index.meta.next_update.map(rfc3339).unwrap_or_default(),
            },
            // The issuer's CRLs are scoped or partitioned and none is for this certificate.
            None => RevocationStatus::Missing {
                source: candidates()
                    .next()
                    .map(|c| c.source.to_string())
                    .unwrap_or_default(),
                why: MissingCrl::NotCovered,
            },
        }
    }
}

/// A source's status, with its discovered URLs: the CRLs of the URLs it discovered count
/// as its own in the summary (what is in force for it, how fresh).
fn render_with_children(st: &State, name: &str, rec: &SourceRecord, now: i64) -> SourceStatus {
    let children: Vec<(&String, &SourceRecord, &Child)> = st
        .sources
        .iter()
        .filter_map(|(k, r)| r.child.as_ref().map(|c| (k, r, c)))
        .filter(|(_, _, c)| c.parent == name)
        .collect();
    let mut s = render(name, rec, now);
    if children.is_empty() {
        return s;
    }
    let mut all: Vec<Arc<CrlIndex>> = rec.crls.clone();
    for (key, r, c) in &children {
        all.extend(r.crls.iter().cloned());
        let one = render(key, r, now);
        s.discovered.push(DiscoveredUrl {
            url: c.url.clone(),
            from: c.from,
            state: format!("{:?}", one.state),
            first_seen_time: Some(rfc3339(c.first_seen)),
            last_fetch_time: one.last_fetch_time,
            issuer: one.issuer,
            entries: one.entries,
            next_update: one.next_update,
            last_error: one.last_error.map(|e| postern_config::protocol::CrlError {
                time: e.time,
                reason: e.reason,
                message: e.message,
            }),
        });
        // RFC 3339 times in UTC of one format order as text.
        let latest = r.last_fetch.map(rfc3339);
        if latest > s.last_fetch_time {
            s.last_fetch_time = latest;
        }
    }
    s.summarize(&all, now);
    if s.state != SourceState::Disabled && !all.is_empty() {
        s.state = SourceState::InForce;
        s.failing_open = false;
    }
    s
}

/// Add the URL `url`, found in a certificate issued by `issuer`, to the children of
/// `source`. Returns the key of a new child to start fetching. A URL outside the source's
/// `allowedUrlPrefixes`, or beyond its cap, is refused and logged once.
fn add_child(
    st: &mut State,
    source: &str,
    url: &str,
    from: DiscoveredFrom,
    issuer: &[u8],
) -> Option<String> {
    let parent = st.sources.get(source).filter(|r| r.child.is_none())?;
    let spec = parent.spec.clone();
    let d = spec.discovery.as_ref()?;
    let key = discovery::child_key(source, url);
    if let Some(child) = st.sources.get_mut(&key).and_then(|r| r.child.as_mut()) {
        if !child.issuers.iter().any(|i| **i == *issuer) {
            child.issuers.push(issuer.into());
        }
        return None;
    }
    let held = st
        .sources
        .values()
        .filter(|r| r.child.as_ref().is_some_and(|c| c.parent == source))
        .count();
    let refusal = if !d.allows(url) {
        Some((
            "not_allowed",
            "CRL distribution point not fetched: it is not under the source's discovery.allowedUrlPrefixes",
        ))
    } else if !discovery::has_room(held) {
        Some((
            "too_many_urls",
            "CRL distribution point not fetched: the source holds the most discovered URLs it may",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = refusal {
        let refused = st.refused_urls.entry(source.to_owned()).or_default();
        if refused.len() < REFUSED_URLS_REMEMBERED && refused.insert(url.to_owned()) {
            tracing::warn!(target: "postern::decision", decision = "crl_discovery", outcome = "refused", source, url, from = ?from, reason, "{message}");
        }
        return None;
    }
    let mut rec = SourceRecord::new(discovery::child_spec(&spec, url));
    rec.child = Some(Child {
        parent: source.to_owned(),
        url: url.to_owned(),
        from,
        issuers: vec![issuer.into()],
        first_seen: unix_now(),
    });
    tracing::info!(target: "postern::decision", decision = "crl_discovery", outcome = "discovered", source, url, from = ?from, "CRL distribution point discovered: fetched and kept on schedule from now on");
    st.sources.insert(key.clone(), rec);
    spec.enabled.then_some(key)
}

/// Bring the children of every source in line with a new configuration: children of
/// removed sources, or no longer wanted (URL no longer allowed or in the bundle), go;
/// those of changed sources take the new spec (and restart); the CA bundles' distribution
/// points are added.
fn discovered_from_config(st: &mut State, config: &GatewayConfig, out: &mut Reconfigured) {
    let children: Vec<(String, Child)> = st
        .sources
        .iter()
        .filter_map(|(k, r)| r.child.clone().map(|c| (k.clone(), c)))
        .collect();
    let bundles: HashMap<&str, Vec<discovery::Point>> = config
        .crl_sources
        .iter()
        .filter_map(|(n, s)| {
            let pem = s.discovery.as_ref()?.from_ca_bundle_pem.as_deref()?;
            Some((n.as_str(), discovery::bundle_points(pem)))
        })
        .collect();
    for (key, child) in children {
        let parent = config.crl_sources.get(&child.parent);
        let wanted = parent.and_then(|p| p.discovery.as_ref()).is_some_and(|d| {
            d.allows(&child.url)
                && match child.from {
                    DiscoveredFrom::CaBundle => bundles
                        .get(child.parent.as_str())
                        .is_some_and(|b| b.iter().any(|(u, _)| *u == child.url)),
                    DiscoveredFrom::PresentedCertificate => d.from_presented_certificates,
                }
        });
        let (Some(parent), true) = (parent, wanted) else {
            st.sources.remove(&key);
            out.stop.push(key);
            continue;
        };
        let spec = discovery::child_spec(parent, &child.url);
        if let Some(rec) = st.sources.get_mut(&key)
            && rec.spec != spec
        {
            rec.replace_all |= rec.spec.format != spec.format;
            rec.generation += 1;
            rec.spec = spec;
            out.stop.push(key.clone());
            if rec.spec.enabled {
                out.start.push((key, rec.generation));
            }
        }
    }
    for (source, points) in bundles {
        for (url, issuer) in points {
            if let Some(key) = add_child(st, source, &url, DiscoveredFrom::CaBundle, &issuer) {
                out.start.push((key, 1));
            }
        }
    }
    st.refused_urls
        .retain(|k, _| config.crl_sources.contains_key(k));
}

fn render(name: &str, rec: &SourceRecord, now: i64) -> SourceStatus {
    let spec = &rec.spec;
    let mut s = SourceStatus {
        name: name.to_owned(),
        enabled: spec.enabled,
        format: spec.format,
        applies_to: spec.applies_to.clone(),
        failure_policy: spec.failure_policy,
        state: match (spec.enabled, rec.crls.is_empty(), rec.failures) {
            (false, _, _) => SourceState::Disabled,
            (true, false, _) => SourceState::InForce,
            (true, true, 0) => SourceState::NotFetched,
            (true, true, _) => SourceState::FetchFailed,
        },
        failing_open: spec.enabled
            && rec.crls.is_empty()
            && spec.failure_policy == CrlFailurePolicy::Open,
        primary_url: spec.primary_url.clone(),
        secondary_url: spec.secondary_url.clone(),
        discovered: Vec::new(),
        last_attempt_time: rec.last_attempt.map(rfc3339),
        last_fetch_time: rec.last_fetch.map(rfc3339),
        last_change_time: rec.last_change.map(rfc3339),
        next_fetch_time: rec.next_fetch.filter(|_| spec.enabled).map(rfc3339),
        served_by: rec.served_by,
        served_url: rec.served_url.clone(),
        restored_from_disk: rec.restored_from_disk,
        issuer: None,
        this_update: None,
        next_update: None,
        entries: 0,
        crl_number: None,
        stale: false,
        seconds_until_stale: None,
        index_bytes: 0,
        crls: Vec::new(),
        consecutive_failures: rec.failures,
        last_error: rec.last_error.clone(),
    };
    s.summarize(&rec.crls, now);
    s
}

impl CrlMetricsSource for CrlStore {
    fn counters(&self) -> &CrlMetrics {
        &self.metrics
    }

    fn gauges(&self) -> Vec<Gauges> {
        CrlStore::gauges(self)
    }

    fn coverage(&self) -> Vec<CaCoverage> {
        CrlStore::coverage(self)
    }
}

impl RevocationChecker for CrlStore {
    fn check(
        &self,
        scope: CrlScope,
        issuer_der: &[u8],
        authority_key_id: Option<&[u8]>,
        serial: &[u8],
    ) -> RevocationStatus {
        self.check_certificate(
            scope,
            &CheckedCertificate::end_entity(issuer_der, authority_key_id, serial),
        )
    }

    fn check_certificate(
        &self,
        scope: CrlScope,
        cert: &CheckedCertificate<'_>,
    ) -> RevocationStatus {
        let status = self.lookup(scope, cert, unix_now());
        self.metrics.checked(scope, &status);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::load::load;
    use crate::tls::DpName;
    use postern_config::{CrlFormat, Duration};
    use postern_testkit::crl::{Only, RevokedSpec, idp};
    use postern_testkit::pki::Ca;

    fn config(cas: &[&Ca], sources: &[(&str, bool, Vec<CrlScope>)]) -> GatewayConfig {
        let mut c = GatewayConfig::default();
        let pem: String = cas.iter().map(|ca| ca.cert_pem()).collect();
        let listener: postern_config::Listener = serde_json::from_value(serde_json::json!({
            "address": "127.0.0.1", "port": 2525, "hostname": "mx.test",
            "tls": {"certificateChainPem": "x", "privateKeyPem": "y", "clientCaPem": pem},
            "defaultPolicy": "p", "nextHop": {"host": "127.0.0.1"}
        }))
        .unwrap();
        c.listeners.insert("l".into(), listener);
        for (name, enabled, scopes) in sources {
            c.crl_sources.insert(
                (*name).into(),
                CrlSource {
                    enabled: *enabled,
                    format: CrlFormat::Asn1,
                    primary_url: Some(format!("http://127.0.0.1:1/{name}.crl")),
                    secondary_url: None,
                    discovery: None,
                    interval: Duration::from_secs(3600),
                    applies_to: scopes.clone(),
                    failure_policy: Default::default(),
                    max_size: postern_config::DEFAULT_CRL_MAX_SIZE,
                },
            );
        }
        c
    }

    fn put(store: &CrlStore, source: &str, der: &[u8]) -> Result<(), String> {
        put_raw(store, source, CrlFormat::Asn1, der)
    }

    const IN: CrlScope = CrlScope::InboundSmtpTls;
    const OUT: CrlScope = CrlScope::OutboundSmtpTls;

    #[test]
    fn answers_revoked_good_and_no_crl() {
        let ca = Ca::new("Store CA");
        let other = Ca::new("Unlisted CA");
        let store = CrlStore::new();
        store.configure(&config(&[&ca], &[("s1", true, vec![IN])]));
        let subject = ca.subject_der();
        // Before its first CRL, the source may be for any CA: fail closed.
        assert_eq!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::Missing {
                source: "s1".into(),
                why: MissingCrl::NotLoaded
            }
        );
        assert_eq!(
            store.check(OUT, &subject, None, &[1]),
            RevocationStatus::NoCrl
        );
        let der = ca
            .crl(
                1,
                &[RevokedSpec::new(&[0x11, 0x22]).reason(rcgen::RevocationReason::KeyCompromise)],
                -60,
                3600,
            )
            .der()
            .to_vec();
        put(&store, "s1", &der).unwrap();
        assert_eq!(
            store.check(IN, &subject, Some(&ca.key_id()), &[0x11, 0x22]),
            RevocationStatus::Revoked {
                source: "s1".into(),
                reason: Some("keyCompromise".into())
            }
        );
        assert_eq!(
            store.check(IN, &subject, None, &[0x11, 0x23]),
            RevocationStatus::Good
        );
        assert_eq!(
            store.check(OUT, &subject, None, &[0x11, 0x22]),
            RevocationStatus::NoCrl
        );
        assert_eq!(
            store.check(IN, &other.subject_der(), None, &[0x11, 0x22]),
            RevocationStatus::NoCrl
        );
        let st = store.source_status("s1").unwrap();
        assert_eq!(st.entries, 1);
        assert_eq!(st.issuer.as_deref(), Some("CN=Store CA"));
        assert_eq!(st.served_by, Some(ServedBy::Primary));
        assert!(!st.stale);
        assert!(st.seconds_until_stale.unwrap() > 3000);
    }

    #[test]
    fn presented_distribution_points_are_discovered_fail_closed_and_allowed_only() {
        let ca = Ca::new("Discovering CA");
        let other = Ca::new("Other CA");
        let mut c = config(&[&ca, &other], &[("d", true, vec![IN])]);
        let d = c.crl_sources.get_mut("d").unwrap();
        d.primary_url = None;
        d.discovery = Some(postern_config::CrlDiscovery {
            from_ca_bundle_pem: None,
            from_presented_certificates: true,
            allowed_url_prefixes: vec!["http://crl.test/".into()],
        });
        let store = CrlStore::new();
        let r = store.configure(&c);
        assert!(r.start.is_empty(), "{r:?}");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        store.on_discovery(tx);
        let subject = ca.subject_der();
        let cert = |url: &str| CheckedCertificate {
            distribution_points: vec![DpName::new(format!("URI:{url}"))],
            ..CheckedCertificate::end_entity(&subject, None, &[7])
        };
        // Nothing discovered yet and no URL of its own: no CA is refused for it.
        assert_eq!(
            store.check(IN, &other.subject_der(), None, &[1]),
            RevocationStatus::NoCrl
        );
        let key = "d[http://crl.test/ca.crl]";
        assert_eq!(
            store.check_certificate(IN, &cert("http://crl.test/ca.crl")),
            RevocationStatus::Missing {
                source: key.into(),
                why: MissingCrl::NotLoaded
            }
        );
        assert_eq!(rx.try_recv().unwrap(), (key.to_owned(), 1));
        // Only the issuer it was found for waits for it.
        assert_eq!(
            store.check(IN, &other.subject_der(), None, &[1]),
            RevocationStatus::NoCrl
        );
        // Outside the allowed prefixes: never a child, never sent.
        store.check_certificate(IN, &cert("http://evil.test/ca.crl"));
        assert!(rx.try_recv().is_err());
        let der = ca
            .crl(1, &[RevokedSpec::new(&[7])], -60, 3600)
            .der()
            .to_vec();
        put(&store, key, &der).unwrap();
        assert!(matches!(
            store.check_certificate(IN, &cert("http://crl.test/ca.crl")),
            RevocationStatus::Revoked { .. }
        ));
        let st = store.source_status("d").unwrap();
        assert_eq!(st.state, SourceState::InForce);
        assert_eq!(st.discovered.len(), 1);
        assert_eq!(st.discovered[0].state, "InForce");
        assert_eq!(st.entries, 1);
        assert_eq!(store.status().len(), 1);
    }

    #[test]
    fn stale_fails_closed_and_fresh_key_wins() {
        let ca = Ca::new("Stale CA");
        let store = CrlStore::new();
        store.configure(&config(&[&ca], &[("s", true, vec![IN, OUT])]));
        let der = ca
            .crl(1, &[RevokedSpec::new(&[9])], -7200, -60)
            .der()
            .to_vec();
        put(&store, "s", &der).unwrap();
        let subject = ca.subject_der();
        assert!(matches!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::Stale { ref source, .. } if source == "s"
        ));
        // Revoked beats stale: the listing is a fact even if the list is old.
        assert!(matches!(
            store.check(OUT, &subject, None, &[9]),
            RevocationStatus::Revoked { .. }
        ));
        let st = store.source_status("s").unwrap();
        assert!(st.stale);
        assert!(st.seconds_until_stale.unwrap() < 0);

        // A newer, current CRL replaces it.
        let der = ca.crl(2, &[], -30, 3600).der().to_vec();
        put(&store, "s", &der).unwrap();
        assert_eq!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::Good
        );
        assert_eq!(
            store.check(IN, &subject, None, &[9]),
            RevocationStatus::Good
        );
    }

    #[test]
    fn disabled_sources_and_key_ids() {
        let ca = Ca::new("Keyed CA");
        let rekeyed = ca.rekeyed();
        let store = CrlStore::new();
        store.configure(&config(
            &[&ca, &rekeyed],
            &[("old", true, vec![IN]), ("new", true, vec![IN])],
        ));
        put(
            &store,
            "old",
            ca.crl(1, &[RevokedSpec::new(&[1])], -60, 3600).der(),
        )
        .unwrap();
        put(
            &store,
            "new",
            rekeyed.crl(1, &[RevokedSpec::new(&[2])], -60, 3600).der(),
        )
        .unwrap();
        let subject = ca.subject_der();
        // Key ids pick the CRL of the certificate's issuing key.
        assert_eq!(
            store.check(IN, &subject, Some(&ca.key_id()), &[2]),
            RevocationStatus::Good
        );
        assert!(matches!(
            store.check(IN, &subject, Some(&rekeyed.key_id()), &[2]),
            RevocationStatus::Revoked { ref source, .. } if source == "new"
        ));
        // Without one, every CRL of the name is consulted.
        assert!(matches!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::Revoked { ref source, .. } if source == "old"
        ));
        // An unknown key id falls back to every CRL of the name.
        assert!(matches!(
            store.check(IN, &subject, Some(&[0xde, 0xad]), &[2]),
            RevocationStatus::Revoked { .. }
        ));

        // Disabling a source takes its CRLs out of force at once.
        let r = store.configure(&config(
            &[&ca, &rekeyed],
            &[("old", false, vec![IN]), ("new", true, vec![IN])],
        ));
        assert_eq!(r.stop, vec!["old".to_string()]);
        assert!(r.start.is_empty());
        assert_eq!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::Good
        );
        assert!(!store.source_status("old").unwrap().enabled);

        // A CA that is no longer trusted takes its CRLs with it.
        let r = store.configure(&config(
            &[&ca],
            &[("old", false, vec![IN]), ("new", true, vec![IN])],
        ));
        assert_eq!(
            r.untrusted,
            vec![("new".to_string(), "CN=Keyed CA".to_string())]
        );
        // The source still applies to that issuer: its certificates cannot be checked.
        assert_eq!(
            store.check(IN, &subject, None, &[2]),
            RevocationStatus::Missing {
                source: "new".into(),
                why: MissingCrl::NoLongerInForce
            }
        );
    }

    #[test]
    fn stale_generation_installs_are_dropped() {
        let ca = Ca::new("Gen CA");
        let store = CrlStore::new();
        let mut cfg = config(&[&ca], &[("s", true, vec![IN])]);
        store.configure(&cfg);
        let (_, g1) = store.spec("s").unwrap();
        cfg.crl_sources.get_mut("s").unwrap().primary_url = Some("http://127.0.0.1:2/x.crl".into());
        let r = store.configure(&cfg);
        assert_eq!(r.start, vec![("s".to_string(), g1 + 1)]);
        let loaded = load(
            ca.crl(1, &[], -60, 3600).der(),
            CrlFormat::Asn1,
            &store.trust(),
            &[],
            Missing::Retain,
            unix_now(),
        )
        .unwrap();
        let install = Install {
            loaded,
            served_by: ServedBy::Primary,
            url: "http://x".into(),
            from_disk: false,
            at: unix_now(),
        };
        assert!(!store.install("s", g1, install));
        assert_eq!(
            store.check(IN, &ca.subject_der(), None, &[1]),
            RevocationStatus::Missing {
                source: "s".into(),
                why: MissingCrl::NotLoaded
            }
        );
    }

    fn put_raw(
        store: &CrlStore,
        source: &str,
        format: CrlFormat,
        bytes: &[u8],
    ) -> Result<(), String> {
        let (in_force, missing) = store.in_force(source);
        let (_, generation) = store.spec(source).ok_or("no such source")?;
        let loaded = load(
            bytes,
            format,
            &store.trust(),
            &in_force,
            missing,
            unix_now(),
        )
        .map_err(|e| e.to_string())?;
        assert!(store.install(
            source,
            generation,
            Install {
                loaded,
                served_by: ServedBy::Primary,
                url: "http://x".into(),
                from_disk: false,
                at: unix_now(),
            }
        ));
        Ok(())
    }

    fn pem(ders: &[&[u8]]) -> Vec<u8> {
        use base64::Engine as _;
        let mut out = String::new();
        for der in ders {
            out.push_str("-----BEGIN X509 CRL-----\n");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(der));
            out.push_str("\n-----END X509 CRL-----\n");
        }
        out.into_bytes()
    }

    fn cert<'a>(
        ca: &'a [u8],
        key: &'a [u8],
        serial: &'a [u8],
        is_ca: bool,
        dps: &[&str],
    ) -> CheckedCertificate<'a> {
        CheckedCertificate {
            issuer_der: ca,
            authority_key_id: Some(key),
            serial,
            is_ca,
            distribution_points: dps
                .iter()
                .map(|u| DpName::new(format!("URI:{u}")))
                .collect(),
        }
    }

    fn pem_config(cas: &[&Ca], name: &str) -> GatewayConfig {
        let mut c = config(cas, &[(name, true, vec![IN])]);
        c.crl_sources.get_mut(name).unwrap().format = CrlFormat::Pem;
        c
    }

    #[test]
    fn a_user_crl_and_an_empty_arl_in_one_file_both_count() {
        let ca = Ca::new("Scoped CA");
        let store = CrlStore::new();
        store.configure(&pem_config(&[&ca], "s"));
        let user = ca.idp_crl(5, &[&[0x51]], -60, 3600, Some(idp(Only::Users, &[])));
        let arl = ca.idp_crl(9, &[], -60, 3600, Some(idp(Only::Cas, &[])));
        put_raw(&store, "s", CrlFormat::Pem, &pem(&[&user, &arl])).unwrap();
        let st = store.source_status("s").unwrap();
        assert_eq!(st.crls.len(), 2, "{st:?}");
        assert_eq!(st.crls[0].scope, "userCertificates");
        assert_eq!(st.crls[1].scope, "caCertificates");
        let (subject, key) = (ca.subject_der(), ca.key_id());
        assert!(matches!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x51], false, &[])),
            RevocationStatus::Revoked { .. }
        ));
        assert_eq!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x52], false, &[])),
            RevocationStatus::Good
        );
        assert_eq!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x52], true, &[])),
            RevocationStatus::Good
        );
        // In the other order too.
        let store = CrlStore::new();
        store.configure(&pem_config(&[&ca], "s"));
        put_raw(&store, "s", CrlFormat::Pem, &pem(&[&arl, &user])).unwrap();
        assert!(matches!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x51], false, &[])),
            RevocationStatus::Revoked { .. }
        ));
        // Only the ARL: user certificates are not covered, so they are unverifiable.
        let store = CrlStore::new();
        store.configure(&pem_config(&[&ca], "s"));
        put_raw(&store, "s", CrlFormat::Pem, &pem(&[&arl])).unwrap();
        assert_eq!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x52], false, &[])),
            RevocationStatus::Missing {
                source: "s".into(),
                why: MissingCrl::NotCovered
            }
        );
        assert_eq!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x52], true, &[])),
            RevocationStatus::Good
        );
    }

    #[test]
    fn partitions_cover_the_certificates_that_name_them() {
        let ca = Ca::new("Partitioned CA");
        let store = CrlStore::new();
        store.configure(&pem_config(&[&ca], "s"));
        let (p1, p2) = ("http://crl.test/p1.crl", "http://crl.test/p2.crl");
        let one = ca.idp_crl(3, &[&[0x01]], -60, 3600, Some(idp(Only::All, &[p1])));
        let two = ca.idp_crl(3, &[&[0x02]], -60, 3600, Some(idp(Only::All, &[p2])));
        put_raw(&store, "s", CrlFormat::Pem, &pem(&[&one, &two])).unwrap();
        let st = store.source_status("s").unwrap();
        assert_eq!(
            st.crls[1].distribution_points,
            Some(vec![DpName::new(format!("URI:{p2}"))])
        );
        let (subject, key) = (ca.subject_der(), ca.key_id());
        assert!(matches!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x02], false, &[p2])),
            RevocationStatus::Revoked { .. }
        ));
        assert_eq!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x03], false, &[p2])),
            RevocationStatus::Good
        );
        // A certificate of no partition in force is unverifiable.
        assert_eq!(
            store.check_certificate(
                IN,
                &cert(&subject, &key, &[0x03], false, &["http://crl.test/p3.crl"])
            ),
            RevocationStatus::Missing {
                source: "s".into(),
                why: MissingCrl::NotCovered
            }
        );
        assert!(matches!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x03], false, &[])),
            RevocationStatus::Missing { .. }
        ));
        // A newer partition 1 replaces partition 1 only; an older one is a replay.
        let newer_one = ca.idp_crl(4, &[], -30, 3600, Some(idp(Only::All, &[p1])));
        put_raw(&store, "s", CrlFormat::Pem, &pem(&[&newer_one])).unwrap();
        assert_eq!(store.source_status("s").unwrap().crls.len(), 2);
        assert!(matches!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x02], false, &[p2])),
            RevocationStatus::Revoked { .. }
        ));
        let e = put_raw(&store, "s", CrlFormat::Pem, &pem(&[&one])).unwrap_err();
        assert!(e.contains("older"), "{e}");
    }

    #[test]
    fn staleness_is_decided_among_the_covering_crls() {
        let ca = Ca::new("Stale Scope CA");
        let store = CrlStore::new();
        store.configure(&pem_config(&[&ca], "s"));
        let stale_user = ca.idp_crl(5, &[], -7200, -60, Some(idp(Only::Users, &[])));
        let arl = ca.idp_crl(9, &[], -60, 3600, Some(idp(Only::Cas, &[])));
        put_raw(&store, "s", CrlFormat::Pem, &pem(&[&stale_user, &arl])).unwrap();
        let (subject, key) = (ca.subject_der(), ca.key_id());
        assert!(matches!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x52], false, &[])),
            RevocationStatus::Stale { .. }
        ));
        assert_eq!(
            store.check_certificate(IN, &cert(&subject, &key, &[0x52], true, &[])),
            RevocationStatus::Good
        );
    }

    #[test]
    fn fail_open_sources_refuse_nothing_until_they_load() {
        let ca = Ca::new("Open CA");
        let store = CrlStore::new();
        let mut cfg = config(&[&ca], &[("open", true, vec![IN])]);
        cfg.crl_sources.get_mut("open").unwrap().failure_policy = CrlFailurePolicy::Open;
        store.configure(&cfg);
        let subject = ca.subject_der();
        assert_eq!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::NoCrl
        );
        let st = store.source_status("open").unwrap();
        assert!(st.failing_open);
        assert_eq!(st.state, SourceState::NotFetched);
        assert!(store.gauges()[0].fail_open);
        // Once loaded, it is enforced like any other.
        put(
            &store,
            "open",
            ca.crl(1, &[RevokedSpec::new(&[1])], -60, 3600).der(),
        )
        .unwrap();
        assert!(matches!(
            store.check(IN, &subject, None, &[1]),
            RevocationStatus::Revoked { .. }
        ));
        assert!(!store.source_status("open").unwrap().failing_open);
        // Stale fails closed even so.
        put(&store, "open", ca.crl(2, &[], -7200, -60).der()).unwrap();
        assert!(matches!(
            store.check(IN, &subject, None, &[2]),
            RevocationStatus::Stale { .. }
        ));
    }

    #[test]
    fn readiness_waits_for_every_first_fetch_once() {
        let ca = Ca::new("Ready CA");
        let store = CrlStore::new();
        assert!(store.startup_pending().is_empty());
        store.configure(&config(
            &[&ca],
            &[
                ("a", true, vec![IN]),
                ("b", true, vec![IN]),
                ("off", false, vec![IN]),
            ],
        ));
        assert_eq!(
            store.startup_pending(),
            vec!["a".to_string(), "b".to_string()]
        );
        let (_, ga) = store.spec("a").unwrap();
        put(&store, "a", ca.crl(1, &[], -60, 3600).der()).unwrap();
        assert_eq!(store.startup_pending(), vec!["b".to_string()]);
        let (_, gb) = store.spec("b").unwrap();
        assert_eq!(store.attempt_failed("b", gb), 1);
        assert_eq!(
            store.source_status("b").unwrap().state,
            SourceState::FetchFailed
        );
        assert!(store.startup_pending().is_empty());
        // Later sources do not take a serving gateway out of service.
        store.configure(&config(
            &[&ca],
            &[
                ("a", true, vec![IN]),
                ("b", true, vec![IN]),
                ("c", true, vec![IN]),
            ],
        ));
        assert!(store.startup_pending().is_empty());
        let _ = ga;
    }
}
