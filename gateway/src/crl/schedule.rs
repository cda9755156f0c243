//! The fetch loop of one source: primary URL, then secondary; on success wait for the
//! interval, or less when the CRL in force expires sooner (refreshing ahead of its
//! `nextUpdate`); on failure retry with exponential backoff. Every wait is shortened by a
//! random jitter so a fleet of gateways does not fetch in lockstep. Every decision is one
//! log line, a metric and the source's status.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::accept::{Ctx, Failure, accept};
use super::fetch::{FetchError, FetchSettings, Fetched, Validators};
use super::status::LastError;
use super::store::CrlStore;
use super::{rfc3339, unix_now};
use postern_config::CrlSource;
use postern_config::protocol::ServedBy;

/// The validators of the file in force and the URL they belong to.
#[derive(Clone, Debug, Default)]
pub(crate) struct InForce {
    pub url: Option<String>,
    pub validators: Validators,
    /// SHA-256 (hex) of the file in force: a server that ignores conditional requests
    /// and sends the same bytes again does not get them parsed again.
    pub sha256: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Success,
    Failed { failures: u32 },
}

/// Run until cancelled.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    name: String,
    generation: u64,
    mut in_force: InForce,
    cancel: CancellationToken,
) {
    loop {
        let Some((spec, current)) = ctx.store.spec(&name) else {
            return;
        };
        if current != generation {
            return;
        }
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            o = attempt(&ctx, &name, generation, &spec, &mut in_force) => o,
        };
        let now = unix_now();
        let delay = jitter(
            next_delay(
                &ctx.settings,
                &spec,
                &outcome,
                ctx.store.earliest_expiry(&name),
                now,
            ),
            RandomState::new().hash_one((&name, now)),
        );
        warn_if_stale(&ctx.store, &name, now);
        ctx.store
            .next_fetch(&name, generation, now + delay.as_secs() as i64);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Share of a wait taken off at random, at most (10%).
const JITTER_PER_MILLE: u64 = 100;

/// `delay` shortened by up to [`JITTER_PER_MILLE`] per mille, picked by `random`: only
/// ever earlier, so a refresh planned ahead of `nextUpdate` stays ahead of it.
fn jitter(delay: Duration, random: u64) -> Duration {
    let per_mille = random % (JITTER_PER_MILLE + 1);
    delay.saturating_sub(delay.mul_f64(per_mille as f64 / 1000.0))
}

/// When to try again. `expiry` is `thisUpdate` and `nextUpdate` of the CRL in force
/// that expires first.
fn next_delay(
    settings: &FetchSettings,
    spec: &CrlSource,
    outcome: &Attempt,
    expiry: Option<(i64, i64)>,
    now: i64,
) -> Duration {
    let interval = spec.interval.get();
    let backoff = |failures: u32| {
        let exp = failures.saturating_sub(1).min(16);
        settings
            .retry_initial
            .saturating_mul(1 << exp)
            .min(settings.retry_max)
            .min(interval)
    };
    match outcome {
        Attempt::Failed { failures } => backoff(*failures),
        Attempt::Success => match expiry {
            // Already stale even after a successful fetch (the server has nothing newer):
            // keep asking at the retry pace.
            Some((_, next)) if next <= now => backoff(1),
            // CAs publish the next CRL ahead of the current one's nextUpdate: start asking
            // a tenth of its validity (at most an hour) before it expires, then every
            // quarter of that lead, so it never goes stale while the CA is on time.
            Some((this, next)) => {
                let lead = ((next - this) / 10).clamp(0, 3600);
                let refresh_at = next - lead;
                let wait = if now < refresh_at {
                    refresh_at - now
                } else {
                    (lead / 4).min(next - now)
                };
                interval.min(Duration::from_secs(wait as u64).max(settings.retry_initial))
            }
            None => interval,
        },
    }
}

fn warn_if_stale(store: &CrlStore, name: &str, now: i64) {
    let Some(status) = store.source_status(name) else {
        return;
    };
    for crl in status.crls.iter().filter(|c| c.stale) {
        tracing::error!(
            source = name,
            issuer = %crl.issuer,
            next_update = crl.next_update.as_deref().unwrap_or(""),
            outcome = "stale",
            "CRL is past nextUpdate: certificates of this issuer are refused until a newer CRL is fetched"
        );
    }
    if !status.stale
        && status.consecutive_failures > 0
        && let Some(secs) = status.seconds_until_stale
    {
        tracing::warn!(
            source = name,
            seconds_until_stale = secs,
            stale_at = %rfc3339(now + secs),
            failures = status.consecutive_failures,
            "CRL source failing: the CRL in force goes stale (and its issuer's certificates are refused) unless a fetch succeeds before then"
        );
    }
}

async fn attempt(
    ctx: &Arc<Ctx>,
    name: &str,
    generation: u64,
    spec: &CrlSource,
    in_force: &mut InForce,
) -> Attempt {
    ctx.store.attempt(name, generation, unix_now());
    let mut urls: Vec<(ServedBy, String)> = spec
        .primary_url
        .iter()
        .map(|u| (ServedBy::Primary, u.clone()))
        .collect();
    if let Some(s) = &spec.secondary_url {
        urls.push((ServedBy::Secondary, s.clone()));
    }
    for (server, url) in urls {
        let validators = (in_force.url.as_deref() == Some(url.as_str())
            && !in_force.validators.is_empty())
        .then_some(&in_force.validators);
        let fetched = ctx
            .fetcher
            .get(&url, validators, spec.max_size, &ctx.budget)
            .await;
        let now = unix_now();
        match fetched {
            Ok(Fetched::NotModified) => {
                ctx.store.metrics.fetched(name, server, "not_modified");
                ctx.store.not_modified(name, generation, server, now);
                tracing::info!(source = name, url = %url, server = server.as_str(), outcome = "not_modified", "CRL unchanged on the server (304)");
                return Attempt::Success;
            }
            Ok(Fetched::Body {
                body,
                validators,
                share,
            }) => {
                let known = in_force
                    .sha256
                    .clone()
                    .filter(|_| in_force.url.as_deref() == Some(url.as_str()));
                let (now, accepted) = accept(
                    ctx,
                    name,
                    generation,
                    spec,
                    server,
                    &url,
                    body,
                    validators.clone(),
                    known,
                    share,
                )
                .await;
                match accepted {
                    Ok(sha256) => {
                        *in_force = InForce {
                            url: Some(url),
                            validators,
                            sha256: Some(sha256),
                        };
                        return Attempt::Success;
                    }
                    Err(Failure::Refused(refusal)) => {
                        ctx.store.metrics.fetched(name, server, refusal.code());
                        tracing::warn!(source = name, url = %url, server = server.as_str(), outcome = "refused", reason = refusal.code(), error = %refusal, "CRL refused; the last good copy stays in force");
                        ctx.store.failed(
                            name,
                            generation,
                            last_error(now, &url, server, refusal.code(), &refusal.to_string()),
                        );
                    }
                    Err(Failure::Fetch(e)) => {
                        fetch_failed(ctx, name, generation, &url, server, &e, now)
                    }
                }
            }
            Err(e) => fetch_failed(ctx, name, generation, &url, server, &e, now),
        }
    }
    let failures = ctx.store.attempt_failed(name, generation);
    let status = ctx.store.source_status(name);
    tracing::error!(
        source = name,
        failures,
        in_force = status.as_ref().map_or(0, |s| s.crls.len()),
        next_update = status
            .as_ref()
            .and_then(|s| s.next_update.as_deref())
            .unwrap_or(""),
        "every URL of the CRL source failed; the CRLs in force (if any) stay in force"
    );
    Attempt::Failed { failures }
}

/// A URL gave no file: log, metric and status.
fn fetch_failed(
    ctx: &Ctx,
    name: &str,
    generation: u64,
    url: &str,
    server: ServedBy,
    e: &FetchError,
    now: i64,
) {
    ctx.store.metrics.fetched(name, server, e.code());
    tracing::warn!(source = name, url = %url, server = server.as_str(), outcome = "fetch_failed", reason = e.code(), error = %e, "CRL fetch failed");
    ctx.store.failed(
        name,
        generation,
        last_error(now, url, server, e.code(), &e.to_string()),
    );
}

fn last_error(now: i64, url: &str, server: ServedBy, reason: &str, message: &str) -> LastError {
    LastError {
        time: rfc3339(now),
        url: url.to_owned(),
        server,
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::{CrlFormat, Duration as CfgDuration};

    fn spec(interval: u64) -> CrlSource {
        CrlSource {
            enabled: true,
            format: CrlFormat::Asn1,
            primary_url: Some("http://a/".into()),
            secondary_url: None,
            discovery: None,
            interval: CfgDuration::from_secs(interval),
            applies_to: vec![],
            failure_policy: Default::default(),
            max_size: postern_config::DEFAULT_CRL_MAX_SIZE,
        }
    }

    #[test]
    fn delays() {
        let s = FetchSettings {
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(300),
            ..FetchSettings::default()
        };
        let sp = spec(3600);
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(next_delay(&s, &sp, &Attempt::Success, None, 0)), 3600);
        assert_eq!(
            secs(next_delay(
                &s,
                &sp,
                &Attempt::Success,
                Some((-86_400, 600)),
                0
            )),
            600
        );
        assert_eq!(
            secs(next_delay(
                &s,
                &sp,
                &Attempt::Success,
                Some((-86_400, 2)),
                0
            )),
            10
        );
        assert_eq!(
            secs(next_delay(
                &s,
                &sp,
                &Attempt::Success,
                Some((-86_400, -5)),
                0
            )),
            10
        );
        assert_eq!(
            secs(next_delay(
                &s,
                &sp,
                &Attempt::Failed { failures: 1 },
                None,
                0
            )),
            10
        );
        assert_eq!(
            secs(next_delay(
                &s,
                &sp,
                &Attempt::Failed { failures: 3 },
                None,
                0
            )),
            40
        );
        assert_eq!(
            secs(next_delay(
                &s,
                &sp,
                &Attempt::Failed { failures: 30 },
                None,
                0
            )),
            300
        );
        assert_eq!(
            secs(next_delay(
                &s,
                &spec(60),
                &Attempt::Failed { failures: 30 },
                None,
                0
            )),
            60
        );
    }

    #[test]
    fn refreshes_ahead_of_next_update() {
        let s = FetchSettings {
            retry_initial: Duration::from_secs(30),
            ..FetchSettings::default()
        };
        let day = spec(86_400 * 7);
        let at = |now: i64, this: i64, next: i64| {
            next_delay(&s, &day, &Attempt::Success, Some((this, next)), now).as_secs()
        };
        // A week-long CRL: first asked an hour (the lead's cap) before it expires.
        assert_eq!(at(0, 0, 7 * 86_400), 7 * 86_400 - 3600);
        // Inside the lead: every quarter of it, and at nextUpdate at the latest.
        assert_eq!(at(7 * 86_400 - 3600, 0, 7 * 86_400), 900);
        assert_eq!(at(7 * 86_400 - 600, 0, 7 * 86_400), 600);
        assert_eq!(at(7 * 86_400 - 40, 0, 7 * 86_400), 40);
        // A one-hour CRL: a tenth of its validity ahead (6 min).
        assert_eq!(at(0, 0, 3600), 3240);
        // Never below the retry floor.
        assert_eq!(at(3599, 0, 3600), 30);
        // The interval still bounds it.
        assert_eq!(
            next_delay(&s, &spec(600), &Attempt::Success, Some((0, 86_400)), 0).as_secs(),
            600
        );
    }

    #[test]
    fn jitter_only_shortens_by_at_most_a_tenth() {
        let d = Duration::from_secs(3600);
        let mut seen = std::collections::BTreeSet::new();
        for r in 0..5000u64 {
            let j = jitter(d, RandomState::new().hash_one(r));
            assert!(j <= d && j >= Duration::from_secs(3240), "{j:?}");
            seen.insert(j.as_secs());
        }
        assert!(seen.len() > 50, "jitter spreads the fetches: {seen:?}");
        assert_eq!(jitter(d, 0), d);
        assert_eq!(jitter(d, 100), Duration::from_secs(3240));
    }
}
