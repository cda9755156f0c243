//! The gateway's Prometheus metrics.
//!
//! One [`Registry`] is built in `main` and passed as `&mut` to each subsystem's `register`
//! function (this one, the LDAP client's, the CRL fetcher's), so everything is served on
//! one `/metrics` endpoint.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `listener`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// Listener name.
    pub listener: String,
}

/// `listener`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Listener name.
    pub listener: String,
    /// What happened.
    pub outcome: String,
}

/// `listener`, `policy`, `mode`, `outcome`: one sender-binding check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SenderBindingLabels {
    /// Listener name.
    pub listener: String,
    /// The mail flow policy that asked for the check.
    pub policy: String,
    /// `Monitor` or `Enforce`.
    pub mode: String,
    /// `own`, `foreign` or `unavailable` (the directory could not say).
    pub outcome: String,
}

/// What became of a message (the `outcome` label of `postern_messages_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum MessageOutcome {
    /// The next hop said `250` to the final dot.
    Relayed,
    /// The next hop refused the message permanently.
    RefusedNextHop,
    /// The next hop could not be reached, failed, or refused temporarily.
    TempFailed,
    /// Over the size limit.
    TooBig,
    /// A NUL byte in the message.
    RefusedNul,
    /// A bare CR or LF in the message data.
    RefusedBareNewline,
    /// The shutdown grace period ended during DATA.
    AbortedShutdown,
    /// DATA took longer than `timeouts.dataTotal`.
    AbortedDeadline,
    /// No data for `timeouts.data`.
    AbortedTimeout,
    /// The client disconnected during DATA.
    AbortedClientGone,
}

impl MessageOutcome {
    /// Every outcome, for tests.
    pub const ALL: [Self; 10] = [
        Self::Relayed,
        Self::RefusedNextHop,
        Self::TempFailed,
        Self::TooBig,
        Self::RefusedNul,
        Self::RefusedBareNewline,
        Self::AbortedShutdown,
        Self::AbortedDeadline,
        Self::AbortedTimeout,
        Self::AbortedClientGone,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relayed => "relayed",
            Self::RefusedNextHop => "refused_next_hop",
            Self::TempFailed => "temp_failed",
            Self::TooBig => "too_big",
            Self::RefusedNul => "refused_nul",
            Self::RefusedBareNewline => "refused_bare_newline",
            Self::AbortedShutdown => "aborted_shutdown",
            Self::AbortedDeadline => "aborted_deadline",
            Self::AbortedTimeout => "aborted_timeout",
            Self::AbortedClientGone => "aborted_client_gone",
        }
    }
}

impl EncodeLabelValue for MessageOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// `listener`, `outcome` of a message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// Listener name.
    pub listener: String,
    /// What became of the message.
    pub outcome: MessageOutcome,
}

/// `listener`, `outcome`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Listener name.
    pub listener: String,
    /// What happened.
    pub outcome: String,
    /// Why.
    pub reason: String,
}

/// `listener`, `profile`, `method`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// Listener name.
    pub listener: String,
    /// Auth profile name.
    pub profile: String,
    /// `PLAIN`, `LOGIN` or `certificate`.
    pub method: String,
    /// What happened.
    pub outcome: String,
}

/// `listener`, `policy`, `scope` (`user`, `client`), `counted` (`messages`,
/// `recipients`): commands refused by a rate limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitedLabels {
    /// Listener name.
    pub listener: String,
    /// Mail flow policy name.
    pub policy: String,
    /// Whose limit: `user` or `client`.
    pub scope: &'static str,
    /// Of what: `messages` or `recipients`.
    pub counted: &'static str,
}

/// `outcome` (config reloads).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied`, `unchanged` or `refused`.
    pub outcome: String,
}

/// `hash` (the applied configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabels {
    /// `sha256:...`.
    pub hash: String,
}

/// `listener`, `reason`, `serving` (a refused Listener).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerRefusedLabels {
    /// Listener name.
    pub listener: String,
    /// `PortUnavailable` or `BuildFailed`.
    pub reason: String,
    /// `not_served` or `previous_version`.
    pub serving: String,
}

impl ListenerRefusedLabels {
    /// The labels of a refusal.
    pub fn of(r: &postern_config::protocol::ListenerRefusal) -> Self {
        use postern_config::protocol::ListenerServing;
        Self {
            listener: r.listener.clone(),
            reason: r.reason.as_str().into(),
            serving: match r.serving {
                ListenerServing::NotServed => "not_served",
                ListenerServing::PreviousVersion { .. } => "previous_version",
            }
            .into(),
        }
    }
}

/// The gateway engine's metric families.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Connections by outcome (`accepted`, `policy_reject`, `over_capacity`,
    /// `over_client_limit`).
    pub connections: Family<OutcomeLabels, Counter>,
    /// Open connections.
    pub connections_active: Family<ListenerLabels, Gauge>,
    /// TLS handshakes by outcome and failure reason.
    pub tls_handshakes: Family<ReasonLabels, Counter>,
    /// Client certificates by outcome (`mapped`, `not_found`, `ambiguous`, `invalid_ignored`, `error`).
    pub client_certificates: Family<ReasonLabels, Counter>,
    /// Authentication attempts.
    pub auth: Family<AuthLabels, Counter>,
    /// Messages by outcome (`relayed`, `refused_next_hop`, `temp_failed`, `too_big`, ...).
    pub messages: Family<MessageLabels, Counter>,
    /// Message bytes relayed.
    pub relayed_bytes: Family<ListenerLabels, Counter>,
    /// Time from end of data to the next hop's reply.
    pub relay_seconds: Family<ListenerLabels, Histogram>,
    /// Refused commands by reply code.
    pub refusals: Family<ReasonLabels, Counter>,
    /// Configuration generation (increments on every applied reload).
    pub config_generation: Gauge,
    /// 1 for the applied configuration hash.
    pub config_info: Family<HashLabels, Gauge>,
    /// Reload attempts.
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// 1 for each Listener of the configuration in force that does not run as configured.
    pub listener_refused: Family<ListenerRefusedLabels, Gauge>,
    /// Certificate expiry and connection caps of the configuration in force (set on reload,
    /// read at scrape time).
    pub in_force: crate::config_gauges::ConfigGauges,
    /// MAIL and RCPT commands refused by `rateLimits`.
    pub rate_limited: Family<RateLimitedLabels, Counter>,
    /// Sender-binding checks (`MAIL FROM` of authenticated sessions) by outcome.
    pub sender_binding: Family<SenderBindingLabels, Counter>,
    /// Verified client certificates whose facts are remembered
    /// ([`crate::auth::CertificateFactsCache`]).
    pub certificate_facts_cached: Gauge,
}

impl Metrics {
    /// Create the families and register them under `postern_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            connections: Family::default(),
            connections_active: Family::default(),
            tls_handshakes: Family::default(),
            client_certificates: Family::default(),
            auth: Family::default(),
            messages: Family::default(),
            relayed_bytes: Family::default(),
            relay_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            refusals: Family::default(),
            config_generation: Gauge::default(),
            config_info: Family::default(),
            config_reloads: Family::default(),
            listener_refused: Family::default(),
            rate_limited: Family::default(),
            in_force: Default::default(),
            sender_binding: Family::default(),
            certificate_facts_cached: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("postern");
        r.register(
            "connections",
            "SMTP connections by listener and outcome",
            m.connections.clone(),
        );
        r.register(
            "connections_active",
            "Open SMTP connections",
            m.connections_active.clone(),
        );
        r.register(
            "tls_handshakes",
            "Inbound TLS handshakes by outcome and reason",
            m.tls_handshakes.clone(),
        );
        r.register(
            "client_certificates",
            "Client certificates by outcome",
            m.client_certificates.clone(),
        );
        r.register(
            "auth",
            "Authentication attempts (SMTP AUTH and certificates)",
            m.auth.clone(),
        );
        r.register("messages", "Messages by outcome", m.messages.clone());
        r.register(
            "relayed_bytes",
            "Message bytes accepted by the next hop",
            m.relayed_bytes.clone(),
        );
        r.register(
            "relay_seconds",
            "Time from the end of DATA to the next hop's final reply",
            m.relay_seconds.clone(),
        );
        r.register(
            "refusals",
            "Refused SMTP commands by reply code",
            m.refusals.clone(),
        );
        r.register(
            "config_generation",
            "Generation of the applied configuration",
            m.config_generation.clone(),
        );
        r.register(
            "config_info",
            "The applied configuration hash (value 1)",
            m.config_info.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reload attempts by outcome",
            m.config_reloads.clone(),
        );
        r.register(
            "listener_refused",
            "Listeners of the applied configuration not running as configured (value 1), by reason and what serves instead",
            m.listener_refused.clone(),
        );
        r.register(
            "rate_limited",
            "MAIL and RCPT commands refused by a rate limit, by policy, scope and what is counted",
            m.rate_limited.clone(),
        );
        r.register(
            "sender_binding",
            "MAIL FROM of authenticated sessions checked against the user's addresses, by outcome",
            m.sender_binding.clone(),
        );
        r.register(
            "certificate_facts_cached",
            "Verified client certificates whose facts (names, fingerprint, mapping strings) are remembered for later sessions",
            m.certificate_facts_cached.clone(),
        );
        registry.register_collector(m.in_force.collector());
        // Every outcome exists from the start at 0: `increase()` (the ConfigRefused alert,
        // the dashboard) cannot see a series' first sample, so a counter that appeared at 1
        // would hide the first refused configuration.
        for outcome in ["applied", "unchanged", "refused"] {
            let _created = m.config_reloads.get_or_create(&ReloadLabels {
                outcome: outcome.into(),
            });
        }
        m
    }

    /// Metrics registered into a throw-away registry (unit tests).
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reload_outcome_is_exported_before_the_first_reload() {
        let mut registry = Registry::default();
        let _m = Metrics::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for outcome in ["applied", "unchanged", "refused"] {
            assert!(
                text.contains(&format!(
                    "postern_config_reloads_total{{outcome=\"{outcome}\"}} 0"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn message_outcomes_are_encoded_as_their_label_values() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        for outcome in MessageOutcome::ALL {
            m.messages
                .get_or_create(&MessageLabels {
                    listener: "smtp".into(),
                    outcome,
                })
                .inc();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for label in [
            "relayed",
            "refused_next_hop",
            "temp_failed",
            "too_big",
            "refused_nul",
            "refused_bare_newline",
            "aborted_shutdown",
            "aborted_deadline",
            "aborted_timeout",
            "aborted_client_gone",
        ] {
            let line = format!("postern_messages_total{{listener=\"smtp\",outcome=\"{label}\"}} 1");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
