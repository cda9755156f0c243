//! How much work verifying one presented client certificate chain may cost.
//!
//! Path building is a search: each presented intermediate whose subject is the issuer
//! named by the certificate below it is a candidate, and a client controls how many
//! candidates it sends and how they are named. webpki bounds its search with a `Budget`
//! (not public) of path-building calls and signature checks per verification and refuses
//! with `MaximumPathBuildCallsExceeded` / `MaximumSignatureChecksExceeded` once it is
//! spent; [`super::v1_path`] builds version 1 paths itself and spends the same budget the
//! same way, so whatever a client sends, one verification costs at most that much.

use webpki::Error;

/// webpki's limit on path-building calls per verification (mozilla::pkix's).
pub const BUILD_CHAIN_CALLS: usize = 200_000;
/// webpki's limit on signature checks per verification (Go's remedy for CVE-2018-16875).
pub const SIGNATURES: usize = 100;

/// What one path build may still spend. [`Budget::default`] is webpki's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Candidate issuers that may still be tried.
    pub build_chain_calls: usize,
    /// Signatures that may still be checked.
    pub signatures: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            build_chain_calls: BUILD_CHAIN_CALLS,
            signatures: SIGNATURES,
        }
    }
}

impl Budget {
    /// Spend one path-building call; webpki's error when none is left.
    pub fn consume_build_chain_call(&mut self) -> Result<(), Error> {
        self.build_chain_calls = self
            .build_chain_calls
            .checked_sub(1)
            .ok_or(Error::MaximumPathBuildCallsExceeded)?;
        Ok(())
    }

    /// Spend one signature check; webpki's error when none is left.
    pub fn consume_signature(&mut self) -> Result<(), Error> {
        self.signatures = self
            .signatures
            .checked_sub(1)
            .ok_or(Error::MaximumSignatureChecksExceeded)?;
        Ok(())
    }
}

/// Whether `e` is one of webpki's budget errors, which end the search at once (webpki
/// treats them as fatal: no other candidate is tried).
pub fn is_exhausted(e: &Error) -> bool {
    matches!(
        e,
        Error::MaximumSignatureChecksExceeded
            | Error::MaximumPathBuildCallsExceeded
            | Error::MaximumNameConstraintComparisonsExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_down_to_zero_then_refuses_with_webpkis_errors() {
        let mut b = Budget {
            build_chain_calls: 2,
            signatures: 1,
        };
        assert_eq!(b.consume_build_chain_call(), Ok(()));
        assert_eq!(b.consume_build_chain_call(), Ok(()));
        assert_eq!(
            b.consume_build_chain_call(),
            Err(Error::MaximumPathBuildCallsExceeded)
        );
        assert_eq!(b.consume_signature(), Ok(()));
        assert_eq!(
            b.consume_signature(),
            Err(Error::MaximumSignatureChecksExceeded)
        );
        assert!(is_exhausted(&Error::MaximumPathBuildCallsExceeded));
        assert!(!is_exhausted(&Error::UnknownIssuer));
        assert_eq!(
            Budget::default(),
            Budget {
                build_chain_calls: 200_000,
                signatures: 100
            }
        );
    }
}
