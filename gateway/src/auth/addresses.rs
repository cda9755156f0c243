//! The user's own addresses, for a policy's `senderBinding`: the question the session
//! asks of the backend that authenticated it (the certificate's mapper's or the AUTH
//! profile's), with the user id it was authenticated as.
//!
//! [`ldap::LdapAddressBook`](super::ldap::LdapAddressBook) reads the LDAP profile's
//! `mailAttributes` of the user's entry; [`StaticUsers`](super::StaticUsers) answers
//! with a static user's `addresses`.

use std::fmt::Debug;

use super::{AuthError, BoxFuture};

/// Where a user's addresses are looked up.
pub trait AddressBook: Send + Sync + Debug {
    /// The addresses of user `user_id` (the id the session is authenticated as), read
    /// with [`postern_config::sender::addresses_from_values`]. No entry: none.
    fn addresses<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, AuthError>>;
}
