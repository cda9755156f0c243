//! The user's addresses from the directory: the entry whose user id attribute (the one
//! certificate and AUTH sessions are identified by) is the session's user, its
//! `mailAttributes` values read as addresses (`proxyAddresses`' `smtp:` prefix removed).
//! Searched with the service account and cached like every search.

use std::sync::Arc;

use super::authenticator::user_id_attribute;
use crate::auth::{AddressBook, AuthError, BoxFuture};
use crate::ldap::filter::equality_filter;
use crate::ldap::{Directory, QueryKind};
use postern_config::sender::addresses_from_values;

/// The query name of the address lookup in logs and metrics.
pub(crate) const ADDRESSES_QUERY: &str = "mailAttributes";

/// Reads users' addresses from an LDAP profile's directory.
#[derive(Debug)]
pub struct LdapAddressBook {
    directory: Arc<Directory>,
    user_id_attribute: String,
    attributes: Vec<String>,
}

impl LdapAddressBook {
    /// The address book of `directory`'s profile (`mailAttributes`).
    pub fn new(directory: Arc<Directory>) -> Self {
        Self {
            user_id_attribute: user_id_attribute(directory.profile()).to_owned(),
            attributes: directory.profile().mail_attributes.clone(),
            directory,
        }
    }

    async fn lookup(&self, user_id: &str) -> Result<Vec<String>, AuthError> {
        let filter = equality_filter(&self.user_id_attribute, user_id);
        let attrs: Vec<&str> = self.attributes.iter().map(String::as_str).collect();
        let found = self
            .directory
            .search(
                QueryKind::Addresses,
                ADDRESSES_QUERY,
                &filter,
                user_id,
                &attrs,
            )
            .await?;
        // Several entries with one user id: the user is ambiguous, so none of their
        // addresses is certainly theirs.
        let [entry] = &*found.entries else {
            return Ok(Vec::new());
        };
        Ok(addresses_from_values(
            self.attributes
                .iter()
                .flat_map(|a| entry.values(a))
                .map(String::as_str),
        ))
    }
}

impl AddressBook for LdapAddressBook {
    fn addresses<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, AuthError>> {
        Box::pin(self.lookup(user_id))
    }
}
