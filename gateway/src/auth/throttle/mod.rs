//! Failed-AUTH throttling across sessions (`SmtpAuthProfile.spec.ldap.throttle`).
//!
//! A per-session limit alone lets a client reconnect and go on guessing. Here every
//! failed AUTH — `535` (unknown user, wrong password) and a refusal by the allowance
//! query — is counted against the client's address and against the user name, in state
//! that every session of the gateway process shares, per authentication profile. While
//! either is over its limit, AUTH is refused with `454 4.7.0` before anything is sent
//! to the directory.
//!
//! - [`AuthThrottles`] is the registry: one [`ThrottleState`] per profile name, handed
//!   to every configuration the process builds (it travels in
//!   [`runtime::Services`](crate::runtime::Services)), so a reload keeps the failures
//!   counted so far and applies the new limits to them. It holds weak references: the
//!   state of a profile that no running configuration uses any more goes away.
//! - [`Throttle`] is what a session uses: the state plus the limits in force.
//! - [`ledger`] does the counting in bounded memory; [`keys`] says which addresses and
//!   names count as the same.

mod by_name;
mod keys;
mod ledger;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) use by_name::ByName;
pub(crate) use keys::{client_key, user_key};
pub(crate) use ledger::Ledger;

use postern_config::{AuthThrottle, ThrottleLimit};

/// Most client addresses, and most user names, one profile keeps count of (about 40
/// bytes each). Beyond that the keys with the least recent failures are forgotten first.
pub(crate) const LEDGER_CAPACITY: usize = 65_536;

/// The failures counted for one authentication profile.
#[derive(Debug)]
pub(crate) struct ThrottleState {
    clients: Mutex<Ledger<IpAddr>>,
    /// User names are kept as keyed hashes of [`user_key`]: fixed size whatever a client
    /// sends, and (random keys) no collisions an attacker could aim at.
    users: Mutex<Ledger<u64>>,
    hasher: RandomState,
}

impl ThrottleState {
    fn new(capacity: usize) -> Self {
        Self {
            clients: Mutex::new(Ledger::new(capacity)),
            users: Mutex::new(Ledger::new(capacity)),
            hasher: RandomState::new(),
        }
    }

    fn user_hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(user_key(name))
    }
}

/// What a throttle refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleScope {
    /// The client address has failed too often.
    Client,
    /// The user name has failed too often (from any address).
    User,
}

impl ThrottleScope {
    /// The decision log outcome and metric label: `throttled_client`, `throttled_user`.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Client => "throttled_client",
            Self::User => "throttled_user",
        }
    }
}

/// AUTH refused because of recent failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// Which limit.
    pub scope: ThrottleScope,
    /// That limit.
    pub limit: ThrottleLimit,
    /// How long until one more attempt is allowed.
    pub retry_after: Duration,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whose = match self.scope {
            ThrottleScope::Client => "this client address",
            ThrottleScope::User => "this user name",
        };
        write!(
            f,
            "too many failed AUTH for {whose} (limit {} per {}); next attempt allowed in {}s",
            self.limit.failures,
            self.limit.window,
            self.retry_after.as_secs().max(1)
        )
    }
}

/// A profile's throttle with the limits of the configuration in force.
#[derive(Clone, Debug)]
pub struct Throttle {
    state: Arc<ThrottleState>,
    limits: AuthThrottle,
}

impl Throttle {
    /// A throttle of its own (not shared through [`AuthThrottles`]), e.g. for tests.
    pub fn standalone(limits: AuthThrottle) -> Self {
        Self {
            state: Arc::new(ThrottleState::new(LEDGER_CAPACITY)),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &AuthThrottle {
        &self.limits
    }

    /// Whether the client at `ip` may try AUTH now.
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Throttled> {
        self.check_client_at(ip, Instant::now())
    }

    /// Whether user name `name` (as typed, or a user id) may be tried now.
    pub fn check_user(&self, name: &str) -> Result<(), Throttled> {
        self.check_user_at(name, Instant::now())
    }

    /// Count one failed AUTH from `ip` for the user names `names` (the name as typed and,
    /// when the directory found an entry, its user id; spellings that share a
    /// [`user_key`] are counted once).
    pub fn record_failure(&self, ip: IpAddr, names: &[&str]) {
        self.record_failure_at(ip, names, Instant::now());
    }

    fn check_client_at(&self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let limit = self.limits.per_client;
        let wait = lock(&self.state.clients).throttled(&client_key(ip), &limit, now);
        refusal(ThrottleScope::Client, limit, wait)
    }

    fn check_user_at(&self, name: &str, now: Instant) -> Result<(), Throttled> {
        let limit = self.limits.per_user;
        let key = self.state.user_hash(name);
        let wait = lock(&self.state.users).throttled(&key, &limit, now);
        refusal(ThrottleScope::User, limit, wait)
    }

    fn record_failure_at(&self, ip: IpAddr, names: &[&str], now: Instant) {
        lock(&self.state.clients).record(&client_key(ip), &self.limits.per_client, now);
        let mut keys: Vec<u64> = names.iter().map(|n| self.state.user_hash(n)).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut users = lock(&self.state.users);
        for key in &keys {
            users.record(key, &self.limits.per_user, now);
        }
    }
}

fn refusal(
    scope: ThrottleScope,
    limit: ThrottleLimit,
    wait: Option<Duration>,
) -> Result<(), Throttled> {
    match wait {
        None => Ok(()),
        Some(retry_after) => Err(Throttled {
            scope,
            limit,
            retry_after,
        }),
    }
}

/// The ledgers hold counters only, so one left behind by a panicking thread is still
/// usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The throttle states of a gateway process, by authentication profile name.
#[derive(Clone, Debug, Default)]
pub struct AuthThrottles {
    states: ByName<ThrottleState>,
}

impl AuthThrottles {
    /// The throttle of profile `profile` with `limits`: the same state as every earlier
    /// configuration's for that profile still in use (a reload keeps the count).
    pub fn throttle(&self, profile: &str, limits: &AuthThrottle) -> Throttle {
        Throttle {
            state: self
                .states
                .get(profile, || ThrottleState::new(LEDGER_CAPACITY)),
            limits: limits.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::Duration as D;

    fn limits(client: u32, user: u32) -> AuthThrottle {
        AuthThrottle {
            per_client: ThrottleLimit {
                failures: client,
                window: D::from_secs(600),
            },
            per_user: ThrottleLimit {
                failures: user,
                window: D::from_secs(600),
            },
        }
    }

    #[test]
    fn per_client_and_per_user() {
        let t = Throttle::standalone(limits(4, 2));
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // Two failures for bob, from two addresses, spelt two ways: bob is throttled
        // everywhere, the addresses are not.
        t.record_failure_at(a, &["bob"], now);
        t.record_failure_at(b, &["BOB", "bob"], now);
        let e = t.check_user_at(" Bob", now).unwrap_err();
        assert_eq!(e.scope, ThrottleScope::User);
        assert_eq!(e.scope.outcome(), "throttled_user");
        assert!(t.check_user_at("alice", now).is_ok());
        assert!(t.check_client_at(a, now).is_ok());
        // Four failures from one address, whatever the names: the address is throttled.
        for name in ["x1", "x2", "x3"] {
            t.record_failure_at(a, &[name], now);
        }
        let e = t.check_client_at(a, now).unwrap_err();
        assert_eq!(e.scope, ThrottleScope::Client);
        assert!(e.to_string().contains("limit 4 per 10m"), "{e}");
        assert!(t.check_client_at(b, now).is_ok());
        // Ten minutes later, all clean.
        let later = now + Duration::from_secs(600);
        assert!(t.check_client_at(a, later).is_ok());
        assert!(t.check_user_at("bob", later).is_ok());
    }

    #[test]
    fn shared_by_profile_and_kept_across_reloads() {
        let throttles = AuthThrottles::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = throttles.throttle("ldap-auth", &limits(10, 3));
        for _ in 0..2 {
            first.record_failure(ip, &["bob"]);
        }
        assert!(first.check_user("bob").is_ok());
        // A reload with a lower limit: the two failures still count.
        let second = throttles.throttle("ldap-auth", &limits(10, 2));
        assert!(second.check_user("bob").is_err());
        assert!(
            first.check_user("bob").is_ok(),
            "old limits for old sessions"
        );
        // Another profile has its own count.
        let other = throttles.throttle("other", &limits(10, 2));
        assert!(other.check_user("bob").is_ok());
        // Once nothing uses a profile's state, it is gone.
        drop((first, second));
        let again = throttles.throttle("ldap-auth", &limits(10, 2));
        assert!(again.check_user("bob").is_ok());
    }
}
