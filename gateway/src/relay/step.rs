//! The steps of the relay dialogue with the next hop, each with the one positive reply
//! its protocol allows, and what any other reply means for the client.
//!
//! RFC 5321 section 4.3.2 (and RFC 3207 for STARTTLS) lists the replies each command may
//! get. Only the positive completion of a step moves the relay forward: `354` to DATA,
//! `250` to the end of data, and so on. A `250` to DATA is not "success" — the next hop
//! is not reading a message, and the client's body would reach it as commands; a `354`
//! or `252` to the final dot is not an acceptance of the message. Such replies are
//! outside the protocol: the next hop's state is unknown, so its connection is dropped
//! and the client gets `451 4.4.1`. A `4xx` is a temporary refusal (`451 4.4.1`), a `5xx`
//! a permanent one, passed through to the client.

use std::fmt;

use super::reply::UpstreamReply;
use crate::wire::reply::{self, Reply};

/// One command of the relay dialogue (or the greeting that opens it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The next hop's greeting: `220`.
    Greeting,
    /// `EHLO`: `250`.
    Ehlo,
    /// `HELO` (when EHLO is refused): `250`.
    Helo,
    /// `STARTTLS`: `220` (RFC 3207).
    StartTls,
    /// `MAIL FROM`: `250`.
    Mail,
    /// `RCPT TO`: `250`, or `251` ("user not local; will forward", RFC 5321 section 3.4).
    /// Not `252`: that is a VRFY reply, and says nothing about accepting the recipient.
    Rcpt,
    /// `DATA`: `354`, the only reply after which the next hop reads a message.
    Data,
    /// The final dot: `250`, the only reply that means the next hop took the message.
    EndOfData,
    /// `RSET`: `250`.
    Rset,
    /// `XCLIENT`: `220`, a new greeting (Postfix).
    Xclient,
}

impl Step {
    /// Every step, for tests and fuzzing.
    pub const ALL: [Step; 10] = [
        Step::Greeting,
        Step::Ehlo,
        Step::Helo,
        Step::StartTls,
        Step::Mail,
        Step::Rcpt,
        Step::Data,
        Step::EndOfData,
        Step::Rset,
        Step::Xclient,
    ];

    /// The step's name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::Ehlo => "EHLO",
            Step::Helo => "HELO",
            Step::StartTls => "STARTTLS",
            Step::Mail => "MAIL",
            Step::Rcpt => "RCPT",
            Step::Data => "DATA",
            Step::EndOfData => "end of data",
            Step::Rset => "RSET",
            Step::Xclient => "XCLIENT",
        }
    }

    /// The replies that complete the step.
    pub fn positive(self) -> &'static [u16] {
        match self {
            Step::Greeting | Step::StartTls | Step::Xclient => &[220],
            Step::Ehlo | Step::Helo | Step::Mail | Step::EndOfData | Step::Rset => &[250],
            Step::Rcpt => &[250, 251],
            Step::Data => &[354],
        }
    }

    /// Whether the step is part of a mail transaction (MAIL, RCPT, DATA, end of data),
    /// after whose refusal the protocol defines the next hop's state, rather than part
    /// of opening or resetting the session.
    pub fn in_transaction(self) -> bool {
        matches!(self, Step::Mail | Step::Rcpt | Step::Data | Step::EndOfData)
    }

    /// Judge the next hop's reply to this step.
    pub fn judge(self, reply: UpstreamReply) -> Result<UpstreamReply, StepFailure> {
        if self.positive().contains(&reply.code) {
            Ok(reply)
        } else if reply.code >= 400 {
            Err(StepFailure::Refused { step: self, reply })
        } else {
            Err(StepFailure::Unexpected { step: self, reply })
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A step that did not end with its positive reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    /// The next hop refused the step: `4xx` (temporary) or `5xx` (permanent).
    #[error("next hop refused {step}: {}", .reply.summary())]
    Refused {
        /// The step.
        step: Step,
        /// The refusal.
        reply: UpstreamReply,
    },
    /// A `2xx` or `3xx` reply the step does not allow (`250` to DATA, `354` or `252` to
    /// the end of data, `3xx` to MAIL): outside the protocol.
    #[error("next hop answered {step} with {}, which is outside the protocol (expected {})", .reply.summary(), expected(*.step))]
    Unexpected {
        /// The step.
        step: Step,
        /// The reply.
        reply: UpstreamReply,
    },
}

fn expected(step: Step) -> String {
    let codes: Vec<String> = step.positive().iter().map(u16::to_string).collect();
    codes.join(" or ")
}

impl StepFailure {
    /// The step that failed.
    pub fn step(&self) -> Step {
        match self {
            Self::Refused { step, .. } | Self::Unexpected { step, .. } => *step,
        }
    }

    /// The next hop's reply.
    pub fn reply(&self) -> &UpstreamReply {
        match self {
            Self::Refused { reply, .. } | Self::Unexpected { reply, .. } => reply,
        }
    }

    /// Whether the reply was outside the protocol (not a refusal).
    pub fn is_unexpected(&self) -> bool {
        matches!(self, Self::Unexpected { .. })
    }

    /// Whether this is a permanent refusal (`5xx`), which the client gets as is. Not a
    /// refusal of `XCLIENT`: that says the next hop does not trust the gateway (its
    /// configuration, not the client's mail), which is temporary for the client.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused { step, reply } if reply.code >= 500 && *step != Step::Xclient)
    }

    /// Whether the next hop connection may still be used: only after a refusal of a
    /// transaction step, which leaves the next hop in a state the protocol defines (no
    /// transaction after MAIL, the recipient not added after RCPT, ...), and not `421`
    /// (the next hop is closing). After a reply outside the protocol, or a refusal of the
    /// session itself, the connection is dropped.
    pub fn keeps_connection(&self) -> bool {
        match self {
            Self::Refused { step, reply } => step.in_transaction() && reply.code != 421,
            Self::Unexpected { .. } => false,
        }
    }

    /// What the client is told: a permanent refusal passed through (with the next hop's
    /// enhanced code, `5.0.0` without one), `451 4.4.1` for anything else. Never a
    /// positive reply.
    pub fn client_reply(&self) -> Reply {
        match self {
            Self::Refused { reply: up, .. } if self.is_permanent() => Reply::custom(
                up.code,
                Some(up.enhanced.clone().unwrap_or_else(|| "5.0.0".into())),
                &format!("Next hop: {}", up.text()),
            ),
            Self::Refused { reply: up, .. } => Reply::custom(
                451,
                Some("4.4.1".into()),
                &format!("Next hop temporarily refused: {} {}", up.code, up.text()),
            ),
            Self::Unexpected { .. } => reply::next_hop_unavailable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(code: u16, enhanced: Option<&str>, text: &str) -> UpstreamReply {
        UpstreamReply {
            code,
            enhanced: enhanced.map(str::to_owned),
            lines: vec![text.to_owned()],
        }
    }

    #[test]
    fn only_the_protocol_positive_reply_passes() {
        assert!(Step::Data.judge(up(354, None, "go")).is_ok());
        assert!(Step::EndOfData.judge(up(250, None, "queued")).is_ok());
        assert!(Step::Rcpt.judge(up(251, None, "will forward")).is_ok());
        for (step, code) in [
            (Step::Data, 250),
            (Step::EndOfData, 354),
            (Step::EndOfData, 252),
            (Step::EndOfData, 251),
            (Step::Mail, 354),
            (Step::Mail, 251),
            (Step::Rcpt, 252),
            (Step::Greeting, 250),
            (Step::StartTls, 250),
        ] {
            let f = step.judge(up(code, None, "x")).unwrap_err();
            assert!(matches!(f, StepFailure::Unexpected { .. }), "{step} {code}");
            assert!(!f.keeps_connection());
            let r = f.client_reply();
            assert_eq!(
                (r.code, r.enhanced.as_deref()),
                (451, Some("4.4.1")),
                "{step} {code}"
            );
        }
    }

    #[test]
    fn refusals() {
        let f = Step::Rcpt
            .judge(up(550, Some("5.1.1"), "no such user"))
            .unwrap_err();
        assert!(f.is_permanent() && f.keeps_connection());
        assert_eq!(
            f.client_reply().summary(),
            "550 5.1.1 Next hop: no such user"
        );
        let f = Step::EndOfData
            .judge(up(554, None, "rejected"))
            .unwrap_err();
        assert_eq!(f.client_reply().summary(), "554 5.0.0 Next hop: rejected");
        let f = Step::Mail
            .judge(up(450, Some("4.2.0"), "greylisted"))
            .unwrap_err();
        let r = f.client_reply();
        assert_eq!((r.code, r.enhanced.as_deref()), (451, Some("4.4.1")));
        assert!(f.keeps_connection());
        let f = Step::Mail.judge(up(421, None, "closing")).unwrap_err();
        assert!(!f.keeps_connection());
        let f = Step::Ehlo.judge(up(554, None, "go away")).unwrap_err();
        assert!(f.is_permanent() && !f.keeps_connection());
        // A next hop that does not trust the gateway with XCLIENT: temporary for the
        // client, whose mail is not at fault.
        let f = Step::Xclient
            .judge(up(550, Some("5.7.0"), "insufficient authorization"))
            .unwrap_err();
        assert!(!f.is_permanent() && !f.keeps_connection());
        assert_eq!(f.client_reply().code, 451);
    }

    #[test]
    fn client_never_sees_a_positive_reply_from_a_failure() {
        for step in Step::ALL {
            for code in (200..=599).filter(|c| super::super::reply::valid_code(*c)) {
                if let Err(f) = step.judge(up(code, None, "x")) {
                    let r = f.client_reply();
                    assert!(
                        r.code == 451 || (r.code == code && code >= 500),
                        "{step} {code}"
                    );
                } else {
                    assert!(step.positive().contains(&code));
                }
            }
        }
    }
}
