//! The SMTP Authentication Query with `method: Bind`, and its allowance filter.
//!
//! 1. Search `filter` with `{u}` = the AUTH user name (service account, cached): exactly
//!    one entry is the user; none is "unknown user", several are refused as ambiguous.
//! 2. BIND as that entry's DN with the given password, on a connection of its own
//!    (never cached; an empty password is refused before anything is sent).
//! 3. When the authentication profile checks allowance: search `allowanceFilter` with
//!    `{u}` and `{t}` = now as GeneralizedTime (service account, cached). Any entry
//!    found means allowed. What happens to a user who is not allowed (Reject with the
//!    profile's reply, or Monitor) is the session's business.

use std::sync::Arc;

use time::OffsetDateTime;

use super::bind::BindOutcome;
use super::directory::{Directory, QueryKind};
use super::error::LdapSetupError;
use super::values;
use super::{FilterTemplate, Placeholder};
use crate::auth::{Allowance, AuthError, AuthVerdict, BoxFuture, SmtpAuthenticator};
use crate::config::LdapAuthMethod;

/// Checks SMTP AUTH with an LDAP profile's `smtpAuthQuery`.
#[derive(Debug)]
pub struct LdapAuthenticator {
    directory: Arc<Directory>,
    query: String,
    filter: FilterTemplate,
    allowance: Option<FilterTemplate>,
}

impl LdapAuthenticator {
    /// The authenticator of `directory`'s SMTP authentication query; with
    /// `check_allowance`, the query's `allowanceFilter` is applied too (and must exist).
    pub fn new(directory: Arc<Directory>, check_allowance: bool) -> Result<Self, LdapSetupError> {
        let name = directory.name().to_owned();
        let q = directory
            .profile()
            .smtp_auth_query
            .as_ref()
            .ok_or_else(|| LdapSetupError::MissingQuery {
                profile: name.clone(),
                query: "smtpAuthQuery",
            })?;
        match q.method {
            LdapAuthMethod::Bind => {}
        }
        let filter =
            FilterTemplate::parse(&q.filter, &Placeholder::SMTP_AUTH).map_err(|source| {
                LdapSetupError::Filter {
                    profile: name.clone(),
                    field: "smtpAuthQuery.filter",
                    source,
                }
            })?;
        let allowance = if check_allowance {
            let text =
                q.allowance_filter
                    .as_deref()
                    .ok_or_else(|| LdapSetupError::MissingQuery {
                        profile: name.clone(),
                        query: "smtpAuthQuery.allowanceFilter",
                    })?;
            Some(
                FilterTemplate::parse(text, &Placeholder::SMTP_AUTH).map_err(|source| {
                    LdapSetupError::Filter {
                        profile: name.clone(),
                        field: "smtpAuthQuery.allowanceFilter",
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            query: q.name.clone(),
            filter,
            allowance,
            directory,
        })
    }

    async fn check(&self, user: &str, password: &str) -> Result<AuthVerdict, AuthError> {
        let invalid = |reason: String| Ok(AuthVerdict::InvalidCredentials { reason });
        // Checked before anything else, so neither an empty password nor an empty user
        // name ever reaches the directory.
        if password.is_empty() {
            return invalid("empty password (never sent: it would be an anonymous bind)".into());
        }
        if user.is_empty() {
            return invalid("empty user name".into());
        }
        let now = values::generalized_time(OffsetDateTime::now_utc());
        let filter = self
            .filter
            .render(|p| values::auth_value(user, p, &now))
            .map_err(|p| AuthError::Directory(format!("no value for {p}")))?;
        let key = self
            .filter
            .render(|p| values::auth_key_value(user, p))
            .map_err(|p| AuthError::Directory(format!("no value for {p}")))?;
        let found = self
            .directory
            .search(QueryKind::User, &self.query, &filter, &key, &["1.1"])
            .await?;
        let dn = match &*found.entries {
            [] => return invalid(format!("unknown user (no entry matches {filter})")),
            [entry] => entry.dn.clone(),
            many => {
                return invalid(format!(
                    "{} entries match {filter}; a user name must identify one entry",
                    many.len()
                ));
            }
        };
        match self
            .directory
            .check_password(&self.query, &dn, password)
            .await?
        {
            BindOutcome::Success => {}
            BindOutcome::Invalid { reason } => return invalid(format!("{dn}: {reason}")),
        }
        let allowance = match &self.allowance {
            None => Allowance::NotChecked,
            Some(template) => {
                let filter = template
                    .render(|p| values::auth_value(user, p, &now))
                    .map_err(|p| AuthError::Directory(format!("no value for {p}")))?;
                let key = template
                    .render(|p| values::auth_key_value(user, p))
                    .map_err(|p| AuthError::Directory(format!("no value for {p}")))?;
                let found = self
                    .directory
                    .search(QueryKind::Allowance, &self.query, &filter, &key, &["1.1"])
                    .await?;
                if found.entries.is_empty() {
                    Allowance::Denied
                } else {
                    Allowance::Allowed
                }
            }
        };
        Ok(AuthVerdict::Authenticated {
            user_id: user.to_owned(),
            allowance,
        })
    }
}

impl SmtpAuthenticator for LdapAuthenticator {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>> {
        Box::pin(self.check(username, password))
    }
}
