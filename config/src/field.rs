//! Typed locations in a configuration: which object ([`Section`] + name) and which field
//! of it ([`Field`]) a validation problem concerns.
//!
//! Most fields are spelt the same in the configuration and in the resource they are
//! compiled from (`tls.certificateSecretRef`, `servers[0].url`): those are
//! [`Field::Same`]. The variants name the places where the two differ (an auth profile's
//! flattened mechanisms, the next hop's timeouts), so the controller maps every
//! location to its resource field with a `match`, never by reading the text.

use std::fmt;

/// Which part of the configuration an error concerns; maps to a resource kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// `listeners` (Listener resources).
    Listeners,
    /// `policies` (MailFlowPolicy resources).
    Policies,
    /// `authProfiles` (SmtpAuthProfile resources).
    AuthProfiles,
    /// `ldapProfiles` (LdapProfile resources).
    LdapProfiles,
    /// `crlSources` (CrlSource resources).
    CrlSources,
}

impl Section {
    /// The key in the configuration document.
    pub fn key(self) -> &'static str {
        match self {
            Self::Listeners => "listeners",
            Self::Policies => "policies",
            Self::AuthProfiles => "authProfiles",
            Self::LdapProfiles => "ldapProfiles",
            Self::CrlSources => "crlSources",
        }
    }

    /// The custom resource kind the section is compiled from.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Listeners => "Listener",
            Self::Policies => "MailFlowPolicy",
            Self::AuthProfiles => "SmtpAuthProfile",
            Self::LdapProfiles => "LdapProfile",
            Self::CrlSources => "CrlSource",
        }
    }
}

/// One step of a [`Path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A field name.
    Key(&'static str),
    /// A position in a list.
    Index(usize),
}

/// A field path such as `hostAccessTable[0].cidrs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(Vec<Segment>);

impl Path {
    /// The path of dot-separated field names, e.g. `Path::keys("limits.maxRecipients")`.
    pub fn keys(dotted: &'static str) -> Self {
        Self(
            dotted
                .split('.')
                .filter(|k| !k.is_empty())
                .map(Segment::Key)
                .collect(),
        )
    }

    /// This path, then field `key`.
    pub fn key(mut self, key: &'static str) -> Self {
        self.0.push(Segment::Key(key));
        self
    }

    /// This path, then position `index` of the list it names.
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    /// The steps.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether the path has no step.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The mechanisms of an authentication profile (`certificate`, `smtpAuth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `certificate`: client certificates mapped to users.
    Certificate,
    /// `smtpAuth`: the AUTH command.
    SmtpAuth,
}

impl Mechanism {
    /// The key in the configuration.
    pub fn key(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::SmtpAuth => "smtpAuth",
        }
    }
}

/// A field of an object, as the validator reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The document's `apiVersion` (a document-level problem).
    ApiVersion,
    /// The object as a whole.
    Object,
    /// A field spelt the same way in the configuration and in the resource.
    Same(Path),
    /// The backend of an auth profile's mechanism; the path is inside the backend
    /// (`ldapProfile`, `users[0].userId`).
    AuthBackend(Mechanism, Path),
    /// The allowance check of an auth profile's SMTP AUTH, as a whole (it is enabled, but
    /// cannot work).
    Allowance,
    /// Another field of an auth profile's SMTP AUTH (`allowance.response.code`,
    /// `throttle.perClient.window`).
    SmtpAuth(Path),
    /// The next hop's timeouts (connect and command, checked together).
    NextHopTimeouts,
}

impl Field {
    /// A field spelt the same way in the configuration and the resource.
    pub fn same(dotted: &'static str) -> Self {
        Self::Same(Path::keys(dotted))
    }
}

impl fmt::Display for Field {
    /// The path in the configuration document, relative to the object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiVersion => f.write_str("apiVersion"),
            Self::Object => Ok(()),
            Self::Same(p) => write!(f, "{p}"),
            Self::AuthBackend(m, p) if p.is_empty() => write!(f, "{}.backend", m.key()),
            Self::AuthBackend(m, p) => write!(f, "{}.backend.{p}", m.key()),
            Self::Allowance => f.write_str("smtpAuth.allowance"),
            Self::SmtpAuth(p) => write!(f, "smtpAuth.{p}"),
            Self::NextHopTimeouts => f.write_str("nextHop"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_print_as_configuration_paths() {
        for (field, text) in [
            (Field::ApiVersion, "apiVersion"),
            (Field::Object, ""),
            (
                Field::same("tls.certificateSecretRef"),
                "tls.certificateSecretRef",
            ),
            (
                Field::Same(Path::keys("hostAccessTable").index(2).key("cidrs")),
                "hostAccessTable[2].cidrs",
            ),
            (
                Field::AuthBackend(Mechanism::Certificate, Path::keys("ldapProfile")),
                "certificate.backend.ldapProfile",
            ),
            (
                Field::AuthBackend(
                    Mechanism::SmtpAuth,
                    Path::keys("users").index(0).key("userId"),
                ),
                "smtpAuth.backend.users[0].userId",
            ),
            (Field::Allowance, "smtpAuth.allowance"),
            (
                Field::SmtpAuth(Path::keys("allowance.response.code")),
                "smtpAuth.allowance.response.code",
            ),
            (Field::NextHopTimeouts, "nextHop"),
        ] {
            assert_eq!(field.to_string(), text);
        }
    }
}
