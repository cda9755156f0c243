//! A small TTL cache of search results.
//!
//! Only search results are cached: which entries a filter found (positive, kept `ttl`)
//! or that it found none (negative, kept `negativeTtl`). Passwords and BIND outcomes are
//! never stored here — every password is checked by the directory, every time.
//!
//! The cache is bounded; when full, the oldest insertions go first (both lifetimes are
//! fixed per profile, so insertion order is close to expiry order).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default bound on the number of cached results per profile.
pub(crate) const DEFAULT_CAPACITY: usize = 50_000;

/// A cache of `V` by string key.
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<String, Slot<V>>,
    order: VecDeque<(String, u64)>,
    next_generation: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    expires: Instant,
    generation: u64,
}

impl<V: Clone> TtlCache<V> {
    /// A cache keeping positive results `ttl` and negative ones `negative_ttl` (zero:
    /// not cached), at most `capacity` of them.
    pub(crate) fn new(ttl: Duration, negative_ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            negative_ttl,
            capacity,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_generation: 0,
            }),
        }
    }

    /// Whether anything can be cached at all.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0 && !(self.ttl.is_zero() && self.negative_ttl.is_zero())
    }

    /// The unexpired value under `key`, if any.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<V> {
        let mut inner = self.inner.lock().expect("ldap cache");
        match inner.map.get(key) {
            Some(slot) if now < slot.expires => Some(slot.value.clone()),
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Store `value` under `key`; `negative` selects the negative lifetime.
    pub(crate) fn insert(&self, key: String, value: V, negative: bool, now: Instant) {
        let ttl = if negative {
            self.negative_ttl
        } else {
            self.ttl
        };
        if ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("ldap cache");
        while inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            let Some((old, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .map
                .get(&old)
                .is_some_and(|s| s.generation == generation)
            {
                inner.map.remove(&old);
            }
        }
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.order.push_back((key.clone(), generation));
        inner.map.insert(
            key,
            Slot {
                value,
                expires: now + ttl,
                generation,
            },
        );
        // Stale order records (replaced or expired keys) must not pile up.
        if inner.order.len() > 2 * self.capacity.max(16) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, g)| map.get(k).is_some_and(|s| s.generation == *g));
        }
    }

    /// Number of stored results (expired ones included until they are looked at).
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().expect("ldap cache").map.len()
    }

    #[cfg(test)]
    /// Whether nothing is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn positive_and_negative_lifetimes() {
        let c = TtlCache::new(10 * S, 2 * S, 100);
        let t0 = Instant::now();
        c.insert("found".into(), 1, false, t0);
        c.insert("missing".into(), 0, true, t0);
        assert_eq!(c.get("found", t0 + S), Some(1));
        assert_eq!(c.get("missing", t0 + S), Some(0));
        assert_eq!(c.get("missing", t0 + 2 * S), None);
        assert_eq!(c.get("found", t0 + 9 * S), Some(1));
        assert_eq!(c.get("found", t0 + 10 * S), None);
        assert!(c.is_empty());
    }

    #[test]
    fn zero_lifetimes_disable() {
        let c = TtlCache::new(Duration::ZERO, Duration::ZERO, 100);
        assert!(!c.enabled());
        let t0 = Instant::now();
        c.insert("k".into(), 1, false, t0);
        assert_eq!(c.get("k", t0), None);
        let c = TtlCache::new(S, Duration::ZERO, 100);
        c.insert("neg".into(), 1, true, t0);
        assert_eq!(c.get("neg", t0), None);
    }

    #[test]
    fn bounded_oldest_first() {
        let c = TtlCache::new(100 * S, 100 * S, 3);
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            c.insert(k.into(), i, false, t0);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("a", t0), None);
        assert_eq!(c.get("d", t0), Some(3));
        // Replacing a key does not evict anything and the new value wins.
        c.insert("b".into(), 10, false, t0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("b", t0), Some(10));
        // The replaced record of "b" is stale: the next eviction skips past it to "c".
        c.insert("e".into(), 4, false, t0);
        assert_eq!(c.get("c", t0), None);
        assert_eq!(c.get("b", t0), Some(10));
        for i in 0..1000 {
            c.insert(format!("k{}", i % 5), i, false, t0);
        }
        assert!(c.len() <= 3);
        assert!(c.inner.lock().unwrap().order.len() <= 2 * 16 + 1);
    }
}
