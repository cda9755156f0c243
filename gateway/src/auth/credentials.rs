//! Credentials that are refused before anybody is asked, whatever the mechanism that
//! produced them (AUTH PLAIN, AUTH LOGIN, or any future one) and whatever the backend.
//!
//! - An empty password: an LDAP simple BIND with an empty password is an *anonymous*
//!   bind (RFC 4513 section 5.1.2) that many servers answer with success.
//! - An empty user name.
//! - A NUL byte in the user name or password: directories and the libraries in front of
//!   them treat NUL as the end of a C string, so `"secret\0anything"` could be checked as
//!   `"secret"`, and a NUL has no place in a name or password typed by a person.
//!
//! The SMTP session checks this before it consults its throttle or the directory; the
//! authenticators check it again, so a caller that skips the session cannot send such
//! credentials either.

use std::fmt;

/// Why credentials were refused without asking anybody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalRefusal {
    /// The password is empty (it would be an anonymous bind).
    EmptyPassword,
    /// The user name is empty.
    EmptyUser,
    /// The user name contains a NUL byte.
    NulInUser,
    /// The password contains a NUL byte.
    NulInPassword,
}

impl LocalRefusal {
    /// A short label for metrics and tests.
    pub fn label(self) -> &'static str {
        match self {
            Self::EmptyPassword => "empty_password",
            Self::EmptyUser => "empty_user",
            Self::NulInUser | Self::NulInPassword => "nul",
        }
    }
}

impl fmt::Display for LocalRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyPassword => "empty password (never sent: it would be an anonymous bind)",
            Self::EmptyUser => "empty user name",
            Self::NulInUser => "the user name contains a NUL byte (never sent)",
            Self::NulInPassword => "the password contains a NUL byte (never sent)",
        })
    }
}

/// Whether `user`/`password` must be refused before anybody is asked.
pub fn local_refusal(user: &str, password: &str) -> Option<LocalRefusal> {
    password_refusal(password).or_else(|| user_refusal(user))
}

/// Whether a password must be refused before anybody is asked.
pub fn password_refusal(password: &str) -> Option<LocalRefusal> {
    if password.is_empty() {
        Some(LocalRefusal::EmptyPassword)
    } else if password.contains('\0') {
        Some(LocalRefusal::NulInPassword)
    } else {
        None
    }
}

/// Whether a user name must be refused before anybody is asked.
pub fn user_refusal(user: &str) -> Option<LocalRefusal> {
    if user.is_empty() {
        Some(LocalRefusal::EmptyUser)
    } else if user.contains('\0') {
        Some(LocalRefusal::NulInUser)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_and_nul() {
        assert_eq!(local_refusal("bob", ""), Some(LocalRefusal::EmptyPassword));
        assert_eq!(local_refusal("", ""), Some(LocalRefusal::EmptyPassword));
        assert_eq!(local_refusal("", "pw"), Some(LocalRefusal::EmptyUser));
        assert_eq!(local_refusal("bob\0", "pw"), Some(LocalRefusal::NulInUser));
        assert_eq!(
            local_refusal("bob\0", "pw\0"),
            Some(LocalRefusal::NulInPassword)
        );
        for pw in ["\0", "\0secret", "secret\0", "se\0cret"] {
            assert_eq!(
                local_refusal("bob", pw),
                Some(LocalRefusal::NulInPassword),
                "{pw:?}"
            );
        }
        assert_eq!(local_refusal("bob", "secret"), None);
        // Spaces and other control characters are the directory's business.
        assert_eq!(local_refusal(" bob ", "\tsecret\u{7f}"), None);
    }
}
