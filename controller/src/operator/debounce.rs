//! Coalesces bursts of changes per key (a namespace) into one reconcile.
//!
//! A change makes the key due `delay` later; more changes push that back, but never past
//! `cap` after the first pending change, so a namespace that never stops changing is
//! still reconciled regularly. Pure: the caller supplies the clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Pending keys and when each is due.
#[derive(Debug)]
pub(crate) struct Debouncer<K> {
    delay: Duration,
    cap: Duration,
    pending: HashMap<K, Pending>,
}

/// A key is due at the earlier of its debounced changes and its timer.
#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    /// First change since the key was last taken.
    first_change: Option<Instant>,
    /// When the changes are due (pushed back by each change, capped).
    change_due: Option<Instant>,
    /// A timer (retry, report expiry, resync).
    timer: Option<Instant>,
}

impl Pending {
    fn due(&self) -> Instant {
        match (self.change_due, self.timer) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => unreachable!("a pending key has a change or a timer"),
        }
    }
}

impl<K: Clone + Eq + Hash> Debouncer<K> {
    /// `delay` after the last change, at most `cap` after the first.
    pub(crate) fn new(delay: Duration, cap: Duration) -> Self {
        Self {
            delay,
            cap: cap.max(delay),
            pending: HashMap::new(),
        }
    }

    /// Records a change of `key` at `now`.
    pub(crate) fn touch(&mut self, key: K, now: Instant) {
        let p = self.pending.entry(key).or_default();
        let first = *p.first_change.get_or_insert(now);
        p.change_due = Some((now + self.delay).min(first + self.cap));
    }

    /// Makes `key` due at `at` at the latest (a timer: retry, report expiry, resync).
    pub(crate) fn schedule(&mut self, key: K, at: Instant) {
        let p = self.pending.entry(key).or_default();
        p.timer = Some(p.timer.map_or(at, |t| t.min(at)));
    }

    /// The earliest due time, if anything is pending.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(Pending::due).min()
    }

    /// Removes and returns every key due at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due() <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            self.pending.remove(k);
        }
        due
    }

    #[cfg(test)]
    /// Number of pending keys.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    /// Whether nothing is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_becomes_one_due_key() {
        let t = Instant::now();
        let mut d = Debouncer::new(100 * MS, 1000 * MS);
        d.touch("ns", t);
        d.touch("ns", t + 50 * MS);
        assert!(
            d.take_due(t + 120 * MS).is_empty(),
            "pushed back by the second change"
        );
        assert_eq!(d.next_due(), Some(t + 150 * MS));
        assert_eq!(d.take_due(t + 150 * MS), vec!["ns"]);
        assert!(d.is_empty());
    }

    #[test]
    fn constant_changes_are_capped() {
        let t = Instant::now();
        let mut d = Debouncer::new(100 * MS, 300 * MS);
        for i in 0..10 {
            d.touch("ns", t + i * 50 * MS);
        }
        assert_eq!(d.next_due(), Some(t + 300 * MS));
    }

    #[test]
    fn keys_are_independent_and_timers_only_advance() {
        let t = Instant::now();
        let mut d = Debouncer::new(100 * MS, 1000 * MS);
        d.touch("a", t);
        d.schedule("b", t + 500 * MS);
        d.schedule("a", t + 20 * MS);
        assert_eq!(d.take_due(t + 20 * MS), vec!["a"]);
        d.schedule("b", t + 900 * MS);
        assert_eq!(
            d.next_due(),
            Some(t + 500 * MS),
            "a later timer keeps the earlier one"
        );
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_change_is_not_held_back_by_a_distant_timer() {
        let t = Instant::now();
        let mut d = Debouncer::new(100 * MS, 1000 * MS);
        d.schedule("ns", t + 5000 * MS);
        d.touch("ns", t + 10 * MS);
        assert_eq!(d.next_due(), Some(t + 110 * MS));
        assert_eq!(d.take_due(t + 110 * MS), vec!["ns"]);
    }
}
