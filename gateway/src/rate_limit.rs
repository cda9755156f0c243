//! Sending limits across sessions (`MailFlowPolicy.spec.rateLimits`): messages and
//! recipients per window, per authenticated user and per client address.
//!
//! Each message (`MAIL`) and each recipient (`RCPT`) is taken from the budgets of the
//! session's user (when it has one) and of its client address (the original client
//! behind PROXY protocol; an IPv6 client counts as its /64); when either budget is spent
//! the command is refused (`451 4.7.1` at MAIL, `452 4.5.3` at RCPT) and nothing is
//! taken. Budgets refill continuously: `messages` in a row, then one every
//! `window / messages` (the AUTH throttle's bounded [`Ledger`], whose eviction keeps the
//! keys that have used the most when an attacker floods it with fresh addresses).
//!
//! The counts are per gateway process (pod) and per policy, kept across reloads
//! ([`RateLimiters`], in [`runtime::Services`](crate::runtime::Services)).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_config::{RateLimit, RateLimits, ThrottleLimit};

use crate::auth::throttle::{ByName, LEDGER_CAPACITY, Ledger, client_key, lock, user_key};

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counted {
    /// Messages (MAIL).
    Messages,
    /// Recipients (RCPT).
    Recipients,
}

impl Counted {
    /// The metric label: `messages`, `recipients`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Recipients => "recipients",
        }
    }

    fn of(self, limit: &RateLimit) -> ThrottleLimit {
        ThrottleLimit {
            failures: match self {
                Self::Messages => limit.messages,
                Self::Recipients => limit.recipients,
            },
            window: limit.window,
        }
    }
}

/// Whose budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The authenticated user's (`rateLimits.perUser`).
    User,
    /// The client address's (`rateLimits.perClient`).
    Client,
}

impl Scope {
    /// The metric label: `user`, `client`.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Client => "client",
        }
    }

    /// The decision outcome: `rate_limited_user`, `rate_limited_client`.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::User => "rate_limited_user",
            Self::Client => "rate_limited_client",
        }
    }
}

/// A command refused by a rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Whose limit.
    pub scope: Scope,
    /// Of what.
    pub counted: Counted,
    /// That limit.
    pub limit: RateLimit,
    /// Until one more is allowed.
    pub retry_after: Duration,
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whose, field) = match self.scope {
            Scope::User => ("this user", "perUser"),
            Scope::Client => ("this client address", "perClient"),
        };
        let n = self.counted.of(&self.limit).failures;
        write!(
            f,
            "rate limit of {whose} reached (rateLimits.{field}: {n} {} per {}); next allowed in {}s",
            self.counted.as_str(),
            self.limit.window,
            self.retry_after.as_secs().max(1)
        )
    }
}

/// The counts of one policy.
#[derive(Debug)]
struct RateState {
    user_messages: Mutex<Ledger<u64>>,
    user_recipients: Mutex<Ledger<u64>>,
    client_messages: Mutex<Ledger<IpAddr>>,
    client_recipients: Mutex<Ledger<IpAddr>>,
    /// User ids are kept as keyed hashes of [`user_key`] (fixed size, no collisions to
    /// aim at).
    hasher: RandomState,
}

impl RateState {
    fn new(capacity: usize) -> Self {
        Self {
            user_messages: Mutex::new(Ledger::new(capacity)),
            user_recipients: Mutex::new(Ledger::new(capacity)),
            client_messages: Mutex::new(Ledger::new(capacity)),
            client_recipients: Mutex::new(Ledger::new(capacity)),
            hasher: RandomState::new(),
        }
    }
}

/// A policy's rate limits with the state they count in.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    state: std::sync::Arc<RateState>,
    limits: RateLimits,
}

impl RateLimiter {
    /// A limiter of its own (not shared through [`RateLimiters`]), e.g. for tests.
    pub fn standalone(limits: RateLimits) -> Self {
        Self {
            state: std::sync::Arc::new(RateState::new(LEDGER_CAPACITY)),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Take one message (MAIL) or recipient (RCPT) from the budgets of `user` (when authenticated) and of the
    /// client at `ip`; `Err` (and nothing taken) when either is spent.
    pub fn take(
        &self,
        counted: Counted,
        user: Option<&str>,
        ip: IpAddr,
    ) -> Result<(), RateLimited> {
        self.take_at(counted, user, ip, Instant::now())
    }

    fn take_at(
        &self,
        counted: Counted,
        user: Option<&str>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), RateLimited> {
        let (users, clients) = match counted {
            Counted::Messages => (&self.state.user_messages, &self.state.client_messages),
            Counted::Recipients => (&self.state.user_recipients, &self.state.client_recipients),
        };
        let user_limit = counted.of(&self.limits.per_user);
        let client_limit = counted.of(&self.limits.per_client);
        let user = user.map(|u| self.state.hasher.hash_one(user_key(u)));
        let client = client_key(ip);
        // Both locks at once (always users first), so that concurrent sessions cannot
        // both pass a check that only one of them fits in.
        let mut users = lock(users);
        let mut clients = lock(clients);
        let refused = |scope, limit: &RateLimit, wait: Option<Duration>| match wait {
            None => Ok(()),
            Some(retry_after) => Err(RateLimited {
                scope,
                counted,
                limit: *limit,
                retry_after,
            }),
        };
        if let Some(u) = &user {
            refused(
                Scope::User,
                &self.limits.per_user,
                users.throttled(u, &user_limit, now),
            )?;
        }
        refused(
            Scope::Client,
            &self.limits.per_client,
            clients.throttled(&client, &client_limit, now),
        )?;
        if let Some(u) = &user {
            users.record(u, &user_limit, now);
        }
        clients.record(&client, &client_limit, now);
        Ok(())
    }
}

/// The rate limit states of a gateway process, by policy name.
#[derive(Clone, Debug, Default)]
pub struct RateLimiters {
    states: ByName<RateState>,
}

impl RateLimiters {
    /// The limiter of policy `policy` with `limits`: the same counts as every earlier
    /// configuration's for that policy still in use (a reload keeps them).
    pub fn limiter(&self, policy: &str, limits: &RateLimits) -> RateLimiter {
        RateLimiter {
            state: self.states.get(policy, || RateState::new(LEDGER_CAPACITY)),
            limits: limits.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::Duration as D;

    fn limit(messages: u32, recipients: u32) -> RateLimit {
        RateLimit {
            messages,
            recipients,
            window: D::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_user_across_addresses_and_per_client_across_users() {
        let r = RateLimiter::standalone(RateLimits {
            per_user: limit(2, 0),
            per_client: limit(3, 0),
        });
        let now = Instant::now();
        let m = Counted::Messages;
        r.take_at(m, Some("bob"), ip("192.0.2.1"), now).unwrap();
        r.take_at(m, Some("BOB"), ip("192.0.2.2"), now).unwrap();
        let e = r.take_at(m, Some("bob"), ip("192.0.2.3"), now).unwrap_err();
        assert_eq!(e.scope, Scope::User);
        assert!(
            e.to_string().starts_with(
                "rate limit of this user reached (rateLimits.perUser: 2 messages per 1h)"
            ),
            "{e}"
        );
        // A refused command takes nothing: 192.0.2.3 still has its three.
        for user in ["a", "b", "c"] {
            r.take_at(m, Some(user), ip("192.0.2.3"), now).unwrap();
        }
        let e = r.take_at(m, None, ip("192.0.2.3"), now).unwrap_err();
        assert_eq!(e.scope, Scope::Client);
        assert_eq!(e.scope.outcome(), "rate_limited_client");
        // Recipients are not limited (0): unlimited.
        for _ in 0..100 {
            r.take_at(Counted::Recipients, Some("bob"), ip("192.0.2.3"), now)
                .unwrap();
        }
        // One budget back every window / limit.
        let later = now + Duration::from_secs(1801);
        r.take_at(m, Some("bob"), ip("192.0.2.9"), later).unwrap();
        assert!(r.take_at(m, Some("bob"), ip("192.0.2.9"), later).is_err());
    }

    #[test]
    fn an_ipv6_client_counts_as_its_slash_64() {
        let r = RateLimiter::standalone(RateLimits {
            per_user: limit(0, 0),
            per_client: limit(0, 2),
        });
        let now = Instant::now();
        let c = Counted::Recipients;
        r.take_at(c, None, ip("2001:db8::1"), now).unwrap();
        r.take_at(c, None, ip("2001:db8::2"), now).unwrap();
        assert!(r.take_at(c, None, ip("2001:db8::ffff"), now).is_err());
        r.take_at(c, None, ip("2001:db8:0:1::1"), now).unwrap();
    }

    #[test]
    fn shared_by_policy_and_kept_across_reloads() {
        let limiters = RateLimiters::default();
        let limits = RateLimits {
            per_user: limit(1, 0),
            per_client: limit(0, 0),
        };
        let first = limiters.limiter("relayed", &limits);
        first
            .take(Counted::Messages, Some("bob"), ip("192.0.2.1"))
            .unwrap();
        let second = limiters.limiter("relayed", &limits);
        assert!(
            second
                .take(Counted::Messages, Some("bob"), ip("192.0.2.1"))
                .is_err()
        );
        let other = limiters.limiter("other", &limits);
        other
            .take(Counted::Messages, Some("bob"), ip("192.0.2.1"))
            .unwrap();
    }
}
