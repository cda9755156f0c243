//! Sender binding (`MailFlowPolicy.senderBinding`, `LdapProfile.mailAttributes`,
//! DESIGN.md section 7): whether an authenticated session may use only its user's own
//! addresses in `MAIL FROM`, and the one reading of a directory attribute value as an
//! address and of two addresses as the same, shared by the gateway and `postern explain`.

use serde::{Deserialize, Serialize};

/// What a policy does with `MAIL FROM` of an authenticated session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SenderBinding {
    /// No check (the default).
    #[default]
    Off,
    /// Check, and log a mismatch (decision line, metric), but accept the sender.
    Monitor,
    /// Check, and refuse a mismatch with `553 5.7.1`.
    Enforce,
}

impl SenderBinding {
    /// Whether this is `Off`: written only when not, so configurations without the
    /// field keep their hash.
    pub fn is_off(&self) -> bool {
        *self == Self::Off
    }

    /// The setting's name as written in configurations and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "Off",
            Self::Monitor => "Monitor",
            Self::Enforce => "Enforce",
        }
    }
}

/// The default `LdapProfile.mailAttributes`: `[mail]`.
pub fn default_mail_attributes() -> Vec<String> {
    vec![DEFAULT_MAIL_ATTRIBUTE.to_owned()]
}

/// The attribute `mailAttributes` names by default.
pub const DEFAULT_MAIL_ATTRIBUTE: &str = "mail";

/// Whether `attributes` is the default (`[mail]`): written only when not.
pub fn is_default_mail_attributes(attributes: &[String]) -> bool {
    attributes.len() == 1 && attributes[0] == DEFAULT_MAIL_ATTRIBUTE
}

/// One directory attribute value read as an address: surrounding blanks dropped, and the
/// `smtp:`/`SMTP:` prefix of Exchange's `proxyAddresses` removed (its other types —
/// `X500:`, `SIP:`, `x400:` — are not mail addresses: `None`). A value with no `@` is
/// not an address either.
pub fn directory_address(value: &str) -> Option<&str> {
    let value = value.trim();
    let address = match value.split_once(':') {
        Some((kind, rest)) if kind.eq_ignore_ascii_case("smtp") => rest.trim(),
        // A colon before the `@` is a proxyAddresses type other than SMTP.
        Some((kind, _)) if !kind.contains('@') => return None,
        _ => value,
    };
    (address.contains('@') && !address.starts_with('@') && !address.ends_with('@'))
        .then_some(address)
}

/// Whether reverse path `from` (without angle brackets) is one of `addresses`: compared
/// case-insensitively as a whole (a local part is case-sensitive in theory, never in the
/// directories this reads). The null reverse path `<>` is nobody's address.
pub fn sender_is_own(from: &str, addresses: &[String]) -> bool {
    !from.is_empty() && addresses.iter().any(|a| a.eq_ignore_ascii_case(from))
}

/// Every address among `values` (see [`directory_address`]), in order, without repeats
/// (case-insensitively).
pub fn addresses_from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for address in values.into_iter().filter_map(directory_address) {
        if !out.iter().any(|a| a.eq_ignore_ascii_case(address)) {
            out.push(address.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses_are_read_as_addresses() {
        assert_eq!(
            directory_address("SMTP:Bob@Example.org"),
            Some("Bob@Example.org")
        );
        assert_eq!(
            directory_address("smtp:bob.alias@example.org"),
            Some("bob.alias@example.org")
        );
        assert_eq!(
            directory_address(" bob@example.org "),
            Some("bob@example.org")
        );
        assert_eq!(directory_address("X500:/o=Org/cn=bob"), None);
        assert_eq!(directory_address("SIP:bob@example.org"), None);
        assert_eq!(directory_address("bob"), None);
        assert_eq!(directory_address("smtp:@example.org"), None);
        assert_eq!(directory_address("bob@"), None);
    }

    #[test]
    fn addresses_are_deduplicated_and_compared_without_case() {
        let found = addresses_from_values([
            "bob@example.org",
            "SMTP:BOB@example.org",
            "smtp:b.smith@example.org",
            "X500:/o=x",
        ]);
        assert_eq!(found, ["bob@example.org", "b.smith@example.org"]);
        assert!(sender_is_own("Bob@Example.ORG", &found));
        assert!(sender_is_own("B.Smith@example.org", &found));
        assert!(!sender_is_own("alice@example.org", &found));
        assert!(!sender_is_own("", &found));
        assert!(!sender_is_own("bob@example.org", &[]));
    }

    #[test]
    fn defaults_are_off_and_mail() {
        assert!(SenderBinding::default().is_off());
        assert!(is_default_mail_attributes(&default_mail_attributes()));
        assert!(!is_default_mail_attributes(&["proxyAddresses".to_owned()]));
    }
}
