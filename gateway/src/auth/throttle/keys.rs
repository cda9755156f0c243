//! What the throttle counts failures against: client addresses and user names, each
//! reduced to what makes two of them "the same" for an attacker's purposes.

use std::net::{IpAddr, Ipv6Addr};

/// The throttle key of a client address: the IPv4 address (an IPv4-mapped IPv6 address
/// counts as its IPv4 address), or the IPv6 /64 — one host usually holds a whole /64,
/// so per-address counting would give it 2^64 budgets.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        v4 => v4,
    }
}

/// The throttle key of a user name, so that spellings a directory treats as the same
/// name share one budget: LDAP matches user ids with `caseIgnoreMatch` after RFC 4518
/// string preparation, under which `BOB`, ` bob ` and `b\u{AD}ob` are all `bob`.
///
/// - characters RFC 4518 section 2.2 maps to nothing (soft hyphen, zero-width and other
///   format characters, variation selectors, control characters) are removed;
/// - white space of any kind becomes one space; leading and trailing space is dropped
///   (RFC 4518 section 2.6.1, insignificant space handling);
/// - letters are lower-cased (Unicode).
///
/// This is an approximation made before the directory is asked (it does not apply NFKC,
/// for instance); the session also counts failures against the user id of the entry
/// the directory found, which catches every spelling the directory itself equates.
pub(crate) fn user_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.chars() {
        if maps_to_nothing(c) {
            continue;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// RFC 4518 section 2.2: code points mapped to nothing (the tab, line breaks and other
/// white space among the controls are mapped to a space instead, by the caller).
fn maps_to_nothing(c: char) -> bool {
    if c.is_whitespace() {
        return false;
    }
    matches!(
        u32::from(c),
        0x0000..=0x0008
            | 0x000E..=0x001F
            | 0x007F..=0x0084
            | 0x0086..=0x009F
            | 0x00AD
            | 0x034F
            | 0x06DD
            | 0x070F
            | 0x1806
            | 0x180B..=0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2063
            | 0x206A..=0x206F
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFF9..=0xFFFC
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_a_directory_equates_share_a_key() {
        for spelling in [
            "bob",
            "BOB",
            "Bob",
            " bob",
            "bob  ",
            "\tbob\r\n",
            "b\u{AD}ob",
            "b\u{200B}o\u{200D}b",
            "\u{FEFF}bob",
            "bo\u{FE0F}b",
        ] {
            assert_eq!(user_key(spelling), "bob", "{spelling:?}");
        }
        assert_eq!(user_key("Jane  \u{3000} Doe"), "jane doe");
        assert_eq!(user_key("ÉMILE"), "émile");
        assert_ne!(user_key("bob"), user_key("bobby"));
        assert_ne!(user_key("b ob"), user_key("bob"));
        assert_eq!(user_key(""), "");
        assert_eq!(user_key("   "), "");
    }

    #[test]
    fn client_addresses() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_eq!(client_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(client_key(a), client_key(other));
    }
}
