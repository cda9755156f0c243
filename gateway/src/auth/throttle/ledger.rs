//! A bounded map from keys to recent failures, forgetting at a steady rate.
//!
//! Each key holds a *debt*: the number of its recent failures, draining continuously at
//! `failures / window` per second (a leaky bucket, or GCRA). A key whose debt would go
//! over `failures` with one more failure is throttled. So `failures` failures in quick
//! succession throttle a key; after that it gets one attempt back every
//! `window / failures`; in the long run no key fails more than `failures` times per
//! `window`; and a key that stops failing is forgotten once its debt has drained, at
//! most `window` after its last failure. One number and one instant per key, whatever
//! `failures` is.
//!
//! The map is capped. When a new key finds it full, keys whose debt has drained are
//! dropped first, then the quarter with the *least* debt: an attacker who floods it with
//! fresh names or addresses (one failure each) evicts his own entries before the keys he
//! has been guessing at, which hold more debt.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use postern_config::ThrottleLimit;

/// Debt of one key at one instant.
#[derive(Clone, Copy, Debug)]
struct Debt {
    failures: f64,
    at: Instant,
}

impl Debt {
    fn at(&self, now: Instant, rate: f64) -> f64 {
        let drained = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        (self.failures - drained).max(0.0)
    }
}

/// Failures per second that drain from a key's debt; `None` when the limit is off.
fn rate(limit: &ThrottleLimit) -> Option<f64> {
    let window = limit.window.get().as_secs_f64();
    (limit.failures > 0 && window > 0.0).then(|| f64::from(limit.failures) / window)
}

/// Recent failures by key, at most `capacity` keys.
#[derive(Debug)]
pub(crate) struct Ledger<K> {
    entries: HashMap<K, Debt>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> Ledger<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(4),
        }
    }

    /// `Some(wait)` when `key` is throttled under `limit` at `now`: the time until it may
    /// try again.
    pub(crate) fn throttled(
        &self,
        key: &K,
        limit: &ThrottleLimit,
        now: Instant,
    ) -> Option<Duration> {
        let rate = rate(limit)?;
        let debt = self.entries.get(key)?.at(now, rate);
        let allowed = f64::from(limit.failures - 1);
        (debt > allowed).then(|| Duration::from_secs_f64((debt - allowed) / rate))
    }

    /// Count one failure of `key` at `now`.
    pub(crate) fn record(&mut self, key: &K, limit: &ThrottleLimit, now: Instant) {
        let Some(rate) = rate(limit) else {
            return;
        };
        if let Some(d) = self.entries.get_mut(key) {
            *d = Debt {
                failures: d.at(now, rate) + 1.0,
                at: now,
            };
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(rate, now);
        }
        self.entries.insert(
            key.clone(),
            Debt {
                failures: 1.0,
                at: now,
            },
        );
    }

    /// Drop the drained keys; if that is not enough, the quarter with the least debt.
    fn make_room(&mut self, rate: f64, now: Instant) {
        self.entries.retain(|_, d| d.at(now, rate) > 0.0);
        let keep = self.capacity * 3 / 4;
        if self.entries.len() <= keep {
            return;
        }
        let mut by_debt: Vec<(f64, K)> = self
            .entries
            .iter()
            .map(|(k, d)| (d.at(now, rate), k.clone()))
            .collect();
        let drop = by_debt.len() - keep;
        by_debt.select_nth_unstable_by(drop - 1, |a, b| a.0.total_cmp(&b.0));
        for (_, k) in &by_debt[..drop] {
            self.entries.remove(k);
        }
    }

    /// Number of keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::Duration as D;

    fn limit(failures: u32, secs: u64) -> ThrottleLimit {
        ThrottleLimit {
            failures,
            window: D::from_secs(secs),
        }
    }

    #[test]
    fn failures_in_a_row_then_one_per_interval() {
        let l = limit(5, 600);
        let mut ledger = Ledger::new(100);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(ledger.throttled(&"bob", &l, t0), None, "failure {i}");
            ledger.record(&"bob", &l, t0);
        }
        // Five failures: throttled for window / failures = 2 minutes.
        let wait = ledger.throttled(&"bob", &l, t0).expect("throttled");
        assert!((wait.as_secs_f64() - 120.0).abs() < 0.01, "{wait:?}");
        assert!(
            ledger
                .throttled(&"bob", &l, t0 + Duration::from_secs(119))
                .is_some()
        );
        let t1 = t0 + Duration::from_secs(121);
        assert_eq!(ledger.throttled(&"bob", &l, t1), None);
        // One attempt back; failing it throttles again at once.
        ledger.record(&"bob", &l, t1);
        assert!(ledger.throttled(&"bob", &l, t1).is_some());
        // Others are not affected.
        assert_eq!(ledger.throttled(&"alice", &l, t1), None);
        // After a whole window without failures, the key is clean.
        let t2 = t1 + Duration::from_secs(600);
        assert_eq!(ledger.throttled(&"bob", &l, t2), None);
        for _ in 0..4 {
            ledger.record(&"bob", &l, t2);
        }
        assert_eq!(ledger.throttled(&"bob", &l, t2), None);
    }

    #[test]
    fn long_run_rate_is_failures_per_window() {
        // A guesser retrying as soon as allowed, for ten windows: 10 + 10 × 10 failures.
        let l = limit(10, 600);
        let mut ledger = Ledger::new(100);
        let start = Instant::now();
        let mut now = start;
        let mut failures = 0;
        while now < start + Duration::from_secs(6000) {
            match ledger.throttled(&1u8, &l, now) {
                None => {
                    ledger.record(&1u8, &l, now);
                    failures += 1;
                }
                Some(wait) => now += wait + Duration::from_millis(1),
            }
        }
        assert!((105..=111).contains(&failures), "{failures}");
    }

    #[test]
    fn zero_failures_is_off() {
        let l = limit(0, 600);
        let mut ledger = Ledger::new(100);
        let now = Instant::now();
        for _ in 0..100 {
            ledger.record(&"bob", &l, now);
        }
        assert_eq!(ledger.throttled(&"bob", &l, now), None);
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn one_failure_throttles_for_the_whole_window() {
        let l = limit(1, 60);
        let mut ledger = Ledger::new(100);
        let now = Instant::now();
        ledger.record(&"bob", &l, now);
        let wait = ledger.throttled(&"bob", &l, now).unwrap();
        assert!((wait.as_secs_f64() - 60.0).abs() < 0.01, "{wait:?}");
    }

    #[test]
    fn bounded_and_the_guessed_key_survives_a_flood() {
        let l = limit(5, 600);
        let cap = 1000;
        let mut ledger = Ledger::new(cap);
        let now = Instant::now();
        for _ in 0..5 {
            ledger.record(&u32::MAX, &l, now);
        }
        // A hundred thousand fresh keys, one failure each.
        for i in 0..100_000u32 {
            ledger.record(&i, &l, now + Duration::from_millis(u64::from(i) / 100));
            assert!(ledger.len() <= cap);
        }
        assert!(
            ledger
                .throttled(&u32::MAX, &l, now + Duration::from_secs(1))
                .is_some()
        );
    }

    #[test]
    fn drained_keys_are_dropped_first() {
        let l = limit(5, 10);
        let cap = 100;
        let mut ledger = Ledger::new(cap);
        let t0 = Instant::now();
        for i in 0..cap as u32 {
            ledger.record(&i, &l, t0);
        }
        // Ten seconds later every one of them has drained: a new key empties the map.
        ledger.record(&u32::MAX, &l, t0 + Duration::from_secs(11));
        assert_eq!(ledger.len(), 1);
    }
}
