//! How a message's DATA phase ends, as one typed value: each ending names its metric
//! label, its decision line, its reply and whether the session closes, so the code that
//! finishes a transaction ([`super::Connection::finish`]) does it the same way for all.
//!
//! Also the decision line of a failed relay step, which MAIL, RCPT and DATA share.

use std::time::Duration;

use crate::metrics::MessageOutcome;
use crate::relay::{RelayError, Step, UpstreamReply};
use crate::wire::reply::{self, Reply};

/// The next hop's host and port, as decision lines name it.
pub(super) type HopAddress<'a> = (&'a str, u16);

/// One `postern::decision` line's own fields (the session's context is added to them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DecisionLine {
    /// What was decided on: `data`, `relay`, ...
    pub decision: &'static str,
    /// The decision: `relayed`, `refused`, `aborted`, ...
    pub outcome: &'static str,
    /// Why, for people.
    pub reason: String,
}

impl DecisionLine {
    fn new(decision: &'static str, outcome: &'static str, reason: String) -> Self {
        Self {
            decision,
            outcome,
            reason,
        }
    }

    /// A relay step failed. `what` names the message or recipient concerned (`id …: `,
    /// `<rcpt>: ` or nothing).
    pub(super) fn relay_failure(e: &RelayError, what: &str, next_hop: HopAddress<'_>) -> Self {
        let (decision, outcome) = match e.step_failure() {
            // A refusal of a transaction step belongs to that step's decision; a
            // permanent refusal of the session itself (greeting, EHLO, STARTTLS) is
            // passed through like any other permanent refusal: retrying would not help.
            Some(f) if f.step().in_transaction() && !f.is_unexpected() => {
                (decision_of(f.step()), "refused_by_next_hop")
            }
            Some(f) if f.is_permanent() => ("relay", "refused_by_next_hop"),
            _ => ("relay", "temp_fail"),
        };
        let (host, port) = next_hop;
        Self::new(
            decision,
            outcome,
            format!("{what}next hop {host}:{port}: {e}"),
        )
    }
}

/// The decision a transaction step's outcome is logged under.
fn decision_of(step: Step) -> &'static str {
    match step {
        Step::Mail => "mail",
        Step::Rcpt => "rcpt",
        Step::Data | Step::EndOfData => "data",
        _ => "relay",
    }
}

/// How a message ended, once the client had its `354`.
///
/// No variant holds the next hop connection: one that ends before the final dot has
/// dropped it (see [`crate::relay::NextHopMessage`]).
#[derive(Debug)]
pub(super) enum TransactionOutcome {
    /// The next hop said `250` to the final dot.
    Relayed {
        /// Content bytes.
        bytes: u64,
        /// Recipients the next hop accepted.
        recipients: usize,
        /// The next hop's `250`.
        next_hop: UpstreamReply,
    },
    /// A bare CR or LF in the message data: refused, and the session closed (where the
    /// message ends is in doubt).
    BareNewline,
    /// The shutdown grace period ended during DATA.
    Shutdown,
    /// DATA took longer than `timeouts.dataTotal`.
    DataDeadline {
        /// `timeouts.dataTotal`.
        total: Duration,
    },
    /// No data for `timeouts.data`.
    DataTimeout {
        /// `timeouts.data`.
        idle: Duration,
    },
    /// The client disconnected during DATA.
    ClientGone,
    /// Over the size limit.
    TooBig {
        /// Content bytes the client sent.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A NUL byte in the message.
    Nul,
    /// The next hop failed during the message, or did not say `250` to the final dot.
    NextHopFailed(RelayError),
}

impl TransactionOutcome {
    /// The `outcome` label of `postern_messages_total`.
    pub(super) fn metric(&self) -> MessageOutcome {
        match self {
            Self::Relayed { .. } => MessageOutcome::Relayed,
            Self::BareNewline => MessageOutcome::RefusedBareNewline,
            Self::Shutdown => MessageOutcome::AbortedShutdown,
            Self::DataDeadline { .. } => MessageOutcome::AbortedDeadline,
            Self::DataTimeout { .. } => MessageOutcome::AbortedTimeout,
            Self::ClientGone => MessageOutcome::AbortedClientGone,
            Self::TooBig { .. } => MessageOutcome::TooBig,
            Self::Nul => MessageOutcome::RefusedNul,
            Self::NextHopFailed(e) if e.step_failure().is_some_and(|f| f.is_permanent()) => {
                MessageOutcome::RefusedNextHop
            }
            Self::NextHopFailed(_) => MessageOutcome::TempFailed,
        }
    }

    /// The decision line of message `id`.
    pub(super) fn decision(&self, id: &str, next_hop: HopAddress<'_>) -> DecisionLine {
        let (outcome, why) = match self {
            Self::Relayed {
                bytes,
                recipients,
                next_hop,
            } => (
                "relayed",
                format!(
                    "{bytes} bytes, {recipients} recipient(s), next hop: {}",
                    next_hop.summary()
                ),
            ),
            Self::BareNewline => ("refused", "bare CR or LF in message data".to_owned()),
            Self::Shutdown => (
                "aborted",
                "shutdown during DATA, nothing relayed".to_owned(),
            ),
            Self::DataDeadline { total } => (
                "aborted",
                format!(
                    "DATA took longer than timeouts.dataTotal ({}s), nothing relayed",
                    total.as_secs()
                ),
            ),
            Self::DataTimeout { idle } => (
                "aborted",
                format!(
                    "no data for timeouts.data ({}s), nothing relayed",
                    idle.as_secs()
                ),
            ),
            Self::ClientGone => (
                "aborted",
                "client disconnected during DATA, nothing relayed".to_owned(),
            ),
            Self::TooBig { size, limit } => {
                ("refused", format!("{size} bytes over the limit of {limit}"))
            }
            Self::Nul => ("refused", "NUL byte in message data".to_owned()),
            Self::NextHopFailed(e) => {
                return DecisionLine::relay_failure(e, &format!("id {id}: "), next_hop);
            }
        };
        DecisionLine::new("data", outcome, format!("id {id}: {why}"))
    }

    /// The client's reply for message `id`; none when the client is gone.
    pub(super) fn reply(&self, id: &str) -> Option<Reply> {
        Some(match self {
            Self::Relayed { .. } => Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
            Self::BareNewline => Reply::new(
                521,
                "5.5.2",
                "Bare CR or LF in message data is not allowed; lines must end with CRLF",
            ),
            Self::Shutdown => reply::shutting_down(),
            Self::DataDeadline { .. } | Self::DataTimeout { .. } => reply::idle_timeout(),
            Self::ClientGone => return None,
            Self::TooBig { .. } => reply::message_too_big(),
            Self::Nul => Reply::new(554, "5.6.0", "Message contains NUL characters"),
            Self::NextHopFailed(e) => e.client_reply(),
        })
    }

    /// Whether the session ends with this outcome (otherwise the client may go on, or
    /// is closed only after too many errors).
    pub(super) fn closes_session(&self) -> bool {
        match self {
            Self::BareNewline
            | Self::Shutdown
            | Self::DataDeadline { .. }
            | Self::DataTimeout { .. }
            | Self::ClientGone => true,
            Self::Relayed { .. } | Self::TooBig { .. } | Self::Nul => false,
            // A next hop's `521` passed through closes it too.
            Self::NextHopFailed(e) => e.client_reply().closes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::StepFailure;

    const HOP: HopAddress<'static> = ("mx.test", 25);

    fn up(code: u16, enhanced: Option<&str>, text: &str) -> UpstreamReply {
        UpstreamReply {
            code,
            enhanced: enhanced.map(str::to_owned),
            lines: vec![text.to_owned()],
        }
    }

    fn refused(step: Step, code: u16, enhanced: Option<&str>, text: &str) -> RelayError {
        RelayError::Step(step.judge(up(code, enhanced, text)).unwrap_err())
    }

    /// One ending and what it must give: (label, decision, decision outcome, reason,
    /// reply, closes).
    type Case = (
        TransactionOutcome,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        bool,
    );

    fn table() -> Vec<Case> {
        use TransactionOutcome as T;
        vec![
            (
                T::Relayed {
                    bytes: 263,
                    recipients: 2,
                    next_hop: up(250, Some("2.0.0"), "queued as 4XyZ"),
                },
                "relayed",
                "data",
                "relayed",
                "id S.1: 263 bytes, 2 recipient(s), next hop: 250 2.0.0 queued as 4XyZ",
                Some("250 2.0.0 Ok: queued as S.1"),
                false,
            ),
            (
                T::BareNewline,
                "refused_bare_newline",
                "data",
                "refused",
                "id S.1: bare CR or LF in message data",
                Some(
                    "521 5.5.2 Bare CR or LF in message data is not allowed; lines must end with CRLF",
                ),
                true,
            ),
            (
                T::Shutdown,
                "aborted_shutdown",
                "data",
                "aborted",
                "id S.1: shutdown during DATA, nothing relayed",
                Some("421 4.3.2 Service shutting down, closing connection"),
                true,
            ),
            (
                T::DataDeadline {
                    total: Duration::from_secs(1800),
                },
                "aborted_deadline",
                "data",
                "aborted",
                "id S.1: DATA took longer than timeouts.dataTotal (1800s), nothing relayed",
                Some("421 4.4.2 Idle timeout, closing connection"),
                true,
            ),
            (
                T::DataTimeout {
                    idle: Duration::from_secs(300),
                },
                "aborted_timeout",
                "data",
                "aborted",
                "id S.1: no data for timeouts.data (300s), nothing relayed",
                Some("421 4.4.2 Idle timeout, closing connection"),
                true,
            ),
            (
                T::ClientGone,
                "aborted_client_gone",
                "data",
                "aborted",
                "id S.1: client disconnected during DATA, nothing relayed",
                None,
                true,
            ),
            (
                T::TooBig {
                    size: 2000,
                    limit: 1000,
                },
                "too_big",
                "data",
                "refused",
                "id S.1: 2000 bytes over the limit of 1000",
                Some("552 5.3.4 Message size exceeds fixed maximum message size"),
                false,
            ),
            (
                T::Nul,
                "refused_nul",
                "data",
                "refused",
                "id S.1: NUL byte in message data",
                Some("554 5.6.0 Message contains NUL characters"),
                false,
            ),
            (
                T::NextHopFailed(refused(Step::EndOfData, 554, Some("5.7.1"), "spam")),
                "refused_next_hop",
                "data",
                "refused_by_next_hop",
                "id S.1: next hop mx.test:25: next hop refused end of data: 554 5.7.1 spam",
                Some("554 5.7.1 Next hop: spam"),
                false,
            ),
            (
                T::NextHopFailed(refused(Step::EndOfData, 521, None, "closing")),
                "refused_next_hop",
                "data",
                "refused_by_next_hop",
                "id S.1: next hop mx.test:25: next hop refused end of data: 521 closing",
                Some("521 5.0.0 Next hop: closing"),
                true,
            ),
            (
                T::NextHopFailed(refused(Step::EndOfData, 452, None, "full")),
                "temp_failed",
                "data",
                "refused_by_next_hop",
                "id S.1: next hop mx.test:25: next hop refused end of data: 452 full",
                Some("451 4.4.1 Next hop temporarily refused: 452 full"),
                false,
            ),
            (
                T::NextHopFailed(RelayError::Timeout(
                    Duration::from_secs(30),
                    "DATA transfer",
                )),
                "temp_failed",
                "relay",
                "temp_fail",
                "id S.1: next hop mx.test:25: next hop timed out (30s) during DATA transfer",
                Some("451 4.4.1 Next hop temporarily unavailable, try again later"),
                false,
            ),
            (
                T::NextHopFailed(refused(Step::EndOfData, 354, None, "go on")),
                "temp_failed",
                "relay",
                "temp_fail",
                "id S.1: next hop mx.test:25: next hop answered end of data with 354 go on, \
                 which is outside the protocol (expected 250)",
                Some("451 4.4.1 Next hop temporarily unavailable, try again later"),
                false,
            ),
        ]
    }

    #[test]
    fn each_ending_has_its_label_line_reply_and_close() {
        for (outcome, label, decision, decided, reason, reply, closes) in table() {
            assert_eq!(outcome.metric().as_str(), label, "{outcome:?}");
            assert_eq!(
                outcome.decision("S.1", HOP),
                DecisionLine::new(decision, decided, reason.to_owned()),
                "{outcome:?}"
            );
            assert_eq!(
                outcome.reply("S.1").map(|r| r.summary()).as_deref(),
                reply,
                "{outcome:?}"
            );
            assert_eq!(outcome.closes_session(), closes, "{outcome:?}");
            // The session closes exactly when its last reply says so (or there is none).
            assert_eq!(
                closes,
                outcome.reply("S.1").is_none_or(|r| r.closes()),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn only_the_next_hops_250_is_acknowledged() {
        for (outcome, ..) in table() {
            let positive = outcome.reply("S.1").is_some_and(|r| r.is_positive());
            assert_eq!(
                positive,
                matches!(outcome, TransactionOutcome::Relayed { .. }),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn relay_failures_of_each_step() {
        let line = |e: &RelayError| {
            let l = DecisionLine::relay_failure(e, "", HOP);
            (l.decision, l.outcome)
        };
        let mail = refused(Step::Mail, 450, None, "later");
        assert_eq!(line(&mail), ("mail", "refused_by_next_hop"));
        let rcpt = refused(Step::Rcpt, 550, Some("5.1.1"), "no such user");
        assert_eq!(line(&rcpt), ("rcpt", "refused_by_next_hop"));
        let data = refused(Step::Data, 451, None, "later");
        assert_eq!(line(&data), ("data", "refused_by_next_hop"));
        let ehlo = RelayError::Step(StepFailure::Refused {
            step: Step::Ehlo,
            reply: up(554, None, "go away"),
        });
        assert_eq!(line(&ehlo), ("relay", "refused_by_next_hop"));
        let greeting = refused(Step::Greeting, 421, None, "busy");
        assert_eq!(line(&greeting), ("relay", "temp_fail"));
        let l = DecisionLine::relay_failure(&rcpt, "<a@b>: ", HOP);
        assert_eq!(
            l.reason,
            "<a@b>: next hop mx.test:25: next hop refused RCPT: 550 5.1.1 no such user"
        );
    }
}
