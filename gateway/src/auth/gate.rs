//! Certificate-type gating in the session: a verified certificate that is not of a type
//! the profile maps (`requiredPolicies`, `requiredEkus`) is refused before the directory is
//! asked. The rule itself is `postern_config::certificate_type::check`, shared with
//! validation and `postern explain`.

use postern_config::CertificateAuth;
use postern_config::certificate_type::{TypeRefusal, check};

use super::CertificateFacts;

/// A profile's certificate-type requirements (empty: every certificate may be mapped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateGate {
    required_policies: Vec<String>,
    required_ekus: Vec<String>,
}

impl CertificateGate {
    /// The requirements of a profile's `certificate` mechanism.
    pub fn new(c: &CertificateAuth) -> Self {
        Self {
            required_policies: c.required_policies.clone(),
            required_ekus: c.required_ekus.clone(),
        }
    }

    /// Whether the certificate may be mapped; the refusal names what it lacks.
    pub fn check(&self, facts: &CertificateFacts) -> Result<(), TypeRefusal> {
        check(
            &self.required_policies,
            &self.required_ekus,
            &facts.policies,
            facts.ekus.as_deref(),
        )
    }
}
