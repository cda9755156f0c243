//! Decoding of SASL responses for AUTH PLAIN and LOGIN (RFC 4954, RFC 4616): pure
//! functions over client bytes, kept apart from the session driver so they can be
//! tested and fuzzed on their own.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::wire::reply::{self, Reply};

/// Why a SASL response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client answered `*`: it gave up the exchange (RFC 4954 section 4).
    #[error("authentication cancelled by the client")]
    Cancelled,
    /// The response is not valid base64.
    #[error("response is not valid base64")]
    Base64,
    /// A PLAIN message without exactly three NUL-separated fields.
    #[error("AUTH PLAIN message is not authzid NUL authcid NUL passwd")]
    MalformedPlain,
    /// A user name or password is not UTF-8.
    #[error("credentials are not valid UTF-8")]
    NotUtf8,
    /// A LOGIN user name or password holds a NUL byte (a NUL would end it early in a
    /// directory written in C; in PLAIN it is the field separator, so PLAIN cannot carry
    /// one). Refused before the directory is asked.
    #[error("a user name or password contains a NUL byte")]
    Nul,
    /// A PLAIN authorization identity other than the authenticated one: acting on
    /// behalf of someone else is not supported.
    #[error("authorization identity differs from the authentication identity")]
    ForeignAuthzid,
}

impl SaslError {
    /// The decision log outcome (and `postern_auth_total` outcome) of this refusal:
    /// `cancelled`, `foreign_authzid`, or `malformed` for everything that is not a
    /// well-formed exchange.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::ForeignAuthzid => "foreign_authzid",
            Self::Base64 | Self::MalformedPlain | Self::NotUtf8 | Self::Nul => "malformed",
        }
    }

    /// The reply the client gets for this error.
    pub fn reply(&self) -> Reply {
        match self {
            Self::Cancelled => Reply::new(501, "5.7.0", "Authentication cancelled"),
            Self::Base64 => Reply::new(501, "5.5.2", "Cannot decode base64 response"),
            Self::MalformedPlain => Reply::new(501, "5.5.2", "Malformed AUTH PLAIN response"),
            Self::NotUtf8 => Reply::new(501, "5.5.2", "Credentials are not valid UTF-8"),
            Self::Nul => Reply::new(501, "5.5.2", "Credentials must not contain NUL bytes"),
            Self::ForeignAuthzid => reply::invalid_credentials(),
        }
    }
}

/// A user name and password taken from a SASL exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity.
    pub user: String,
    /// The password, as sent.
    pub password: String,
}

/// Decode one SASL response: an initial response or a line answering a `334`
/// challenge. `=` is the empty response, `*` cancels.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    match line {
        b"*" => Err(SaslError::Cancelled),
        b"=" => Ok(Vec::new()),
        _ => B64.decode(line).map_err(|_| SaslError::Base64),
    }
}

/// Split a decoded PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616). No field
/// can hold a NUL, so a NUL never reaches the directory.
pub fn parse_plain(raw: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MalformedPlain);
    };
    let user = credential(authcid)?;
    let password = credential(password)?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(SaslError::ForeignAuthzid);
    }
    Ok(Credentials { user, password })
}

/// A decoded LOGIN user name or password as text. A NUL is refused here, so that no
/// mechanism hands one on.
pub fn credential(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.contains(&0) {
        return Err(SaslError::Nul);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(raw: &[u8]) -> Vec<u8> {
        B64.encode(raw).into_bytes()
    }

    #[test]
    fn plain_with_and_without_authzid() {
        let c = parse_plain(&decode_response(&b64(b"\0alice\0s3cret")).unwrap()).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
        let c = parse_plain(b"alice\0alice\0pw").unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(
            parse_plain(b"bob\0alice\0pw"),
            Err(SaslError::ForeignAuthzid)
        );
    }

    #[test]
    fn plain_field_count_is_exact() {
        for raw in [&b""[..], b"alice", b"\0alice", b"\0a\0b\0c", b"\0\0\0"] {
            assert_eq!(parse_plain(raw), Err(SaslError::MalformedPlain), "{raw:?}");
        }
        // Empty user and password are well formed; the authenticator refuses them.
        assert_eq!(
            parse_plain(b"\0\0"),
            Ok(Credentials {
                user: String::new(),
                password: String::new()
            })
        );
    }

    #[test]
    fn special_responses_and_bad_input() {
        assert_eq!(decode_response(b"*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response(b"="), Ok(Vec::new()));
        assert_eq!(decode_response(b"not base64!"), Err(SaslError::Base64));
        assert_eq!(decode_response(b"YWJj="), Err(SaslError::Base64));
        assert_eq!(parse_plain(b"\0\xff\0pw"), Err(SaslError::NotUtf8));
        assert_eq!(credential(b"\xc3"), Err(SaslError::NotUtf8));
        for nul in [&b"\0"[..], b"\0frank-secret", b"frank-secret\0", b"fr\0ank"] {
            assert_eq!(credential(nul), Err(SaslError::Nul), "{nul:?}");
        }
        assert_eq!(credential(b"frank"), Ok("frank".into()));
        for e in [
            SaslError::Cancelled,
            SaslError::Base64,
            SaslError::MalformedPlain,
            SaslError::NotUtf8,
            SaslError::Nul,
            SaslError::ForeignAuthzid,
        ] {
            assert!((500..600).contains(&e.reply().code), "{e}");
            assert!(!e.outcome().is_empty());
        }
    }
}
