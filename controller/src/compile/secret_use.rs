//! Which Secrets Postern may use, and for what.
//!
//! A reference to a Secret is written by whoever may edit the referring object, not by
//! whoever owns the Secret. Without a rule, an editor of an LdapProfile could point its
//! bind password at *any* Secret of the namespace and its servers at a host of their own,
//! and the gateway would send that Secret's value there in a BIND (a confused deputy);
//! an editor of a Listener could make the gateways serve with another service's private
//! key, which the rendered configuration would then also carry.
//!
//! So a Secret whose value leaves the cluster — an LDAP bind password, sent to servers the
//! profile's editor chooses — is used only when it says it is meant for that: the label
//! [`SECRET_USE_LABEL`] names one [`SecretUse`]. The owner of the Secret opts in; the
//! editor of a Postern object cannot. Certificates and keys are never sent anywhere (a
//! key only signs handshakes; CA bundles are public), so an unlabelled Secret may serve
//! as either, which keeps `kubectl create secret tls` working as operators expect; a
//! Secret labelled for another use is still refused for them. A Secret that may not be
//! used is reported on the referring object (`ResolvedRefs=False`, reason
//! `SecretUseNotAllowed`) and nothing of it reaches the configuration.

use std::fmt;

/// The label a Secret carries to let Postern use it: `postern.dev/secret-use: <use>`.
pub const SECRET_USE_LABEL: &str = "postern.dev/secret-use";

/// What a referenced Secret is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretUse {
    /// `ldap-bind`: an LdapProfile's service account password (`spec.bind.passwordSecretRef`),
    /// sent to the profile's servers.
    LdapBind,
    /// `tls`: a Listener's certificate and private key (`spec.tls.certificateSecretRef`).
    Tls,
    /// `ca`: CA certificates (`clientCaSecretRef`, `caBundle.secretRef`).
    Ca,
}

impl SecretUse {
    /// The label value.
    pub fn label_value(self) -> &'static str {
        match self {
            Self::LdapBind => "ldap-bind",
            Self::Tls => "tls",
            Self::Ca => "ca",
        }
    }

    /// What the use is, for messages.
    fn describe(self) -> &'static str {
        match self {
            Self::LdapBind => "an LDAP bind password, which is sent to this profile's LDAP servers",
            Self::Tls => "a Listener's certificate and private key",
            Self::Ca => "CA certificates",
        }
    }

    /// Whether a Secret labelled `label` (the label's value, if any) may serve this use.
    ///
    /// A `tls` Secret may also serve as a CA bundle (cert-manager puts the issuer in its
    /// `ca.crt`): its content is already in the configuration as a Listener's key pair,
    /// and a CA bundle reveals nothing beyond the certificates it parses as. Nothing else
    /// stands in for anything: above all, no Secret but an `ldap-bind` one is ever sent
    /// to an LDAP server.
    pub fn permitted_by(self, label: Option<&str>) -> bool {
        match label {
            Some(v) if v == self.label_value() => true,
            Some("tls") => self == Self::Ca,
            Some(_) => false,
            None => !self.needs_opt_in(),
        }
    }

    /// Whether an unlabelled Secret is refused for this use: only where the value is sent
    /// to a host that the referring object's editor names.
    pub fn needs_opt_in(self) -> bool {
        self == Self::LdapBind
    }

    /// Why Secret `name` (labelled `label`) may not be used here, and how to fix it. Says
    /// nothing about the Secret's keys or content.
    pub fn refusal(self, name: &str, label: Option<&str>) -> String {
        let want = self.label_value();
        let found = match label {
            None => format!("Secret {name:?} has no {SECRET_USE_LABEL} label"),
            Some(v) => format!("Secret {name:?} is labelled {SECRET_USE_LABEL}={v}, not {want}"),
        };
        format!(
            "{found}: Postern uses a Secret only for what its owner labelled it for, and this reference uses it as {}. If the Secret is meant for that, label it: kubectl label secret {name} {SECRET_USE_LABEL}={want} --overwrite",
            self.describe()
        )
    }
}

impl fmt::Display for SecretUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_use_needs_its_own_label() {
        use SecretUse::*;
        for u in [LdapBind, Tls, Ca] {
            assert!(u.permitted_by(Some(u.label_value())));
            assert_eq!(u.permitted_by(None), !u.needs_opt_in());
            assert!(!u.permitted_by(Some("")));
            assert!(!u.permitted_by(Some("true")));
        }
        // Only a bind password leaves the cluster: only it needs the owner's opt-in.
        assert!(!LdapBind.permitted_by(None));
        assert!(Tls.permitted_by(None));
        assert!(Ca.permitted_by(None));
        assert!(!LdapBind.permitted_by(Some("tls")));
        assert!(!LdapBind.permitted_by(Some("ca")));
        assert!(!Tls.permitted_by(Some("ca")));
        assert!(!Tls.permitted_by(Some("ldap-bind")));
        assert!(!Ca.permitted_by(Some("ldap-bind")));
        // A TLS Secret's ca.crt may be a CA bundle.
        assert!(Ca.permitted_by(Some("tls")));
    }

    #[test]
    fn refusals_say_how_to_fix_and_nothing_about_the_content() {
        let m = SecretUse::LdapBind.refusal("db-creds", None);
        assert!(
            m.contains("Secret \"db-creds\" has no postern.dev/secret-use label"),
            "{m}"
        );
        assert!(
            m.contains("kubectl label secret db-creds postern.dev/secret-use=ldap-bind"),
            "{m}"
        );
        let m = SecretUse::LdapBind.refusal("gw-tls", Some("tls"));
        assert!(
            m.contains("labelled postern.dev/secret-use=tls, not ldap-bind"),
            "{m}"
        );
    }
}
