//! The revocation modes of a listener (`tls.revocation`): which mechanism answers for
//! the client's own certificate, in which order, and what happens when none does.
//!
//! The decision ([`decide`]) is pure: it is given each mechanism as a closure, so a
//! mechanism that is not needed is never asked (`CrlThenOcsp` does not call the
//! responder when a current CRL answers). The CA certificates of the path are checked
//! by CRL in every mode (the verifier's [`super::RevocationChecker`]).

use std::fmt;

use postern_config::{OnUnavailable, RevocationMode};

/// Which mechanism gave the verdict (`revocation=` of the decision line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// A CRL of a CrlSource.
    Crl,
    /// An OCSP responder.
    Ocsp,
}

impl Mechanism {
    /// `crl` or `ocsp`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Crl => "crl",
            Self::Ocsp => "ocsp",
        }
    }
}

/// What one mechanism says of the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A current answer: not revoked.
    Good,
    /// A current answer: revoked (the text says by whom and why).
    Revoked(String),
    /// No current answer (the text says why: responder down, `unknown`, no CRL in force,
    /// stale CRL ...).
    Unavailable(String),
}

/// Where the verdict came from, for the decision line: `revocation=ocsp
/// responder=http://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictSource {
    /// The mechanism; `None` when no mechanism answered and `onUnavailable: Allow`
    /// accepted the certificate.
    pub mechanism: Option<Mechanism>,
    /// The OCSP responder asked, if one was.
    pub responder: Option<String>,
}

impl fmt::Display for VerdictSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mechanism {
            Some(m) => write!(f, "revocation={}", m.label())?,
            None => f.write_str("revocation=unavailable_allowed")?,
        }
        if let Some(r) = &self.responder {
            write!(f, " responder={r}")?;
        }
        Ok(())
    }
}

/// The verdict on the client's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Accepted: a mechanism said good, or none answered and `onUnavailable: Allow`
    /// (then `unavailable` says why none answered).
    Accept {
        /// Which mechanism answered.
        by: Option<Mechanism>,
        /// Why no mechanism answered, when accepted without an answer.
        unavailable: Option<String>,
    },
    /// Refused as revoked.
    Revoked {
        /// Which mechanism said so.
        by: Mechanism,
        /// By whom and why.
        detail: String,
    },
    /// Refused: no mechanism gave a current answer and `onUnavailable: Refuse`.
    Unavailable {
        /// Why each mechanism asked gave none.
        detail: String,
    },
}

/// Why the client's certificate is refused, as the verifier turns it into a TLS alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Revoked (alert `certificate_revoked`, reason `revoked`).
    Revoked(String),
    /// No current answer and `onUnavailable: Refuse` (alert `unknown_ca`, reason
    /// `revocation_unavailable`).
    Unavailable(String),
    /// The certificate does not parse (reason `bad_encoding`).
    BadEncoding(String),
}

/// The verdict of `mode` from the mechanisms' answers, asking each only when needed.
pub fn decide(
    mode: RevocationMode,
    on_unavailable: OnUnavailable,
    crl: impl FnOnce() -> Answer,
    ocsp: impl FnOnce() -> Answer,
) -> Decision {
    let mut why = Vec::new();
    let mut ask = |by: Mechanism, answer: Answer| match answer {
        Answer::Good => Some(Decision::Accept {
            by: Some(by),
            unavailable: None,
        }),
        Answer::Revoked(detail) => Some(Decision::Revoked { by, detail }),
        Answer::Unavailable(w) => {
            why.push(format!("{}: {w}", by.label()));
            None
        }
    };
    let decided = match mode {
        RevocationMode::CrlOnly => ask(Mechanism::Crl, crl()),
        RevocationMode::OcspOnly => ask(Mechanism::Ocsp, ocsp()),
        RevocationMode::CrlThenOcsp => {
            ask(Mechanism::Crl, crl()).or_else(|| ask(Mechanism::Ocsp, ocsp()))
        }
        RevocationMode::OcspThenCrl => {
            ask(Mechanism::Ocsp, ocsp()).or_else(|| ask(Mechanism::Crl, crl()))
        }
    };
    decided.unwrap_or_else(|| {
        let detail = why.join("; ");
        match on_unavailable {
            OnUnavailable::Refuse => Decision::Unavailable { detail },
            OnUnavailable::Allow => Decision::Accept {
                by: None,
                unavailable: Some(detail),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnUnavailable::*;
    use RevocationMode::*;

    fn down() -> Answer {
        Answer::Unavailable("responder unreachable".into())
    }

    #[test]
    fn each_mode_asks_in_its_order_and_only_as_needed() {
        let never = || -> Answer { panic!("must not be asked") };
        assert_eq!(
            decide(CrlThenOcsp, Refuse, || Answer::Good, never),
            Decision::Accept {
                by: Some(Mechanism::Crl),
                unavailable: None
            }
        );
        assert_eq!(
            decide(
                OcspThenCrl,
                Refuse,
                || Answer::Good,
                || Answer::Revoked("r".into())
            ),
            Decision::Revoked {
                by: Mechanism::Ocsp,
                detail: "r".into()
            }
        );
        assert_eq!(
            decide(OcspThenCrl, Refuse, || Answer::Revoked("c".into()), down),
            Decision::Revoked {
                by: Mechanism::Crl,
                detail: "c".into()
            }
        );
        assert_eq!(
            decide(
                CrlThenOcsp,
                Refuse,
                || Answer::Unavailable("no CRL".into()),
                || Answer::Good
            ),
            Decision::Accept {
                by: Some(Mechanism::Ocsp),
                unavailable: None
            }
        );
        assert_eq!(
            decide(OcspOnly, Refuse, never, || Answer::Good),
            Decision::Accept {
                by: Some(Mechanism::Ocsp),
                unavailable: None
            }
        );
        assert_eq!(
            decide(CrlOnly, Refuse, || Answer::Good, never),
            Decision::Accept {
                by: Some(Mechanism::Crl),
                unavailable: None
            }
        );
    }

    #[test]
    fn no_current_answer_follows_on_unavailable_and_says_why() {
        let refused = decide(
            OcspThenCrl,
            Refuse,
            || Answer::Unavailable("no CRL".into()),
            down,
        );
        assert_eq!(
            refused,
            Decision::Unavailable {
                detail: "ocsp: responder unreachable; crl: no CRL".into()
            }
        );
        assert_eq!(
            decide(OcspOnly, Allow, || Answer::Good, down),
            Decision::Accept {
                by: None,
                unavailable: Some("ocsp: responder unreachable".into())
            }
        );
    }

    #[test]
    fn the_source_prints_as_decision_fields() {
        let s = VerdictSource {
            mechanism: Some(Mechanism::Ocsp),
            responder: Some("http://r/".into()),
        };
        assert_eq!(s.to_string(), "revocation=ocsp responder=http://r/");
        let s = VerdictSource {
            mechanism: Some(Mechanism::Crl),
            responder: None,
        };
        assert_eq!(s.to_string(), "revocation=crl");
    }
}
