//! The last refusals of the decision log, kept in memory for the status page.
//!
//! A tracing layer that watches `postern::decision` events and keeps the last
//! [`KEPT`] whose outcome is not a success. Only a fixed set of fields is kept (never the
//! user name, certificate subject or a command: the status page is readable by whoever
//! reaches the admin port), and an `AUTH` argument that reaches a kept text is masked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// How many refusals are kept.
pub const KEPT: usize = 50;

/// The decision-line fields a kept refusal holds.
const FIELDS: [&str; 6] = [
    "decision",
    "outcome",
    "listener",
    "client_ip",
    "reason",
    "policy",
];

/// Outcomes that are not refusals.
const SUCCESSES: [&str; 12] = [
    "accepted",
    "established",
    "valid",
    "mapped",
    "authenticated",
    "authenticated_monitored",
    "relayed",
    "applied",
    "serving",
    "removed",
    "ok",
    "discarded",
];

/// One kept refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// When it was logged (RFC 3339, UTC).
    pub time: String,
    /// The kept fields, by name (see [`FIELDS`]).
    pub fields: BTreeMap<&'static str, String>,
}

/// The layer and the store it fills; clones share the store.
#[derive(Clone, Debug, Default)]
pub struct RecentDecisions {
    kept: Arc<Mutex<VecDeque<Refusal>>>,
}

impl RecentDecisions {
    /// The kept refusals, newest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().rev().cloned().collect()
    }

    fn keep(&self, refusal: Refusal) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(refusal);
    }
}

/// Masks what follows `AUTH <mechanism>` (the credentials of an initial response).
pub fn mask_auth(text: &str) -> String {
    let upper = text.to_ascii_uppercase();
    let Some(at) = upper.find("AUTH ") else {
        return text.to_owned();
    };
    let rest = &text[at + 5..];
    let mechanism_end = rest.find(' ').unwrap_or(rest.len());
    if mechanism_end == rest.len() {
        return text.to_owned();
    }
    format!("{}{} ***", &text[..at + 5], &rest[..mechanism_end])
}

#[derive(Default)]
struct Fields(BTreeMap<&'static str, String>);

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        if let Some(name) = FIELDS.iter().find(|n| **n == field.name()) {
            self.0.insert(name, mask_auth(&value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}").trim_matches('"').to_owned());
    }
}

/// Whether a decision line is a refusal, read from its `outcome` alone: most lines are
/// successes, and those cost no more than this look.
#[derive(Default)]
struct Refused(bool);

impl Visit for Refused {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "outcome" {
            self.0 = !SUCCESSES.contains(&value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "outcome" {
            let value = format!("{value:?}");
            self.0 = !SUCCESSES.contains(&value.trim_matches('"'));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for RecentDecisions {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "postern::decision" {
            return;
        }
        let mut refused = Refused::default();
        event.record(&mut refused);
        if !refused.0 {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.keep(Refusal {
            time: humantime_now(),
            fields: fields.0,
        });
    }
}

fn humantime_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn keeps_refusals_only_with_the_safe_fields() {
        let recent = RecentDecisions::default();
        let subscriber = tracing_subscriber::registry().with(recent.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "postern::decision", decision = "auth", outcome = "authenticated", listener = "smtp", user = "bob");
            tracing::info!(target: "postern::decision", decision = "auth", outcome = "invalid", listener = "smtp", user = "bob", client_ip = "10.0.0.1", reason = "AUTH PLAIN AGJvYgBzZWNyZXQ=");
            tracing::info!(target: "postern::monitor", outcome = "invalid", command = "AUTH PLAIN x");
        });
        let kept = recent.refusals();
        assert_eq!(kept.len(), 1);
        let f = &kept[0].fields;
        assert_eq!(f["outcome"], "invalid");
        assert_eq!(f["client_ip"], "10.0.0.1");
        assert!(!f.contains_key("user"));
        assert_eq!(f["reason"], "AUTH PLAIN ***");
    }

    #[test]
    fn keeps_the_last_ones() {
        let recent = RecentDecisions::default();
        for i in 0..KEPT + 5 {
            recent.keep(Refusal {
                time: i.to_string(),
                fields: BTreeMap::new(),
            });
        }
        let kept = recent.refusals();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].time, (KEPT + 4).to_string());
    }
}
