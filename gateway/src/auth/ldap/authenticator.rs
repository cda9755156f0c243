//! The SMTP Authentication Query with `method: Bind`, and its allowance filter.
//!
//! 1. Search `filter` with `{u}` = the AUTH user name (service account, cached): exactly
//!    one entry is the user; none is "unknown user", several are refused as ambiguous.
//!    The user's id is the entry's `userIdAttribute` value (the LDAP profile's
//!    `certificateAuthQuery.userIdAttribute`, `uid` without one), exactly as for
//!    certificate sessions; an entry without it is refused like an unknown user.
//! 2. With allowance action `Reject` ([`AllowanceCheck::BeforePassword`]): search
//!    `allowanceFilter` with `{u}` = that user id and `{t}` = now (service account,
//!    cached); nothing found means not allowed, whatever the password, and the password
//!    is never sent.
//! 3. BIND as the entry's DN with the given password, on a connection of its own (never
//!    cached; an empty password or a NUL is refused before anything is sent).
//! 4. With allowance action `Monitor` ([`AllowanceCheck::AfterPassword`]): the allowance
//!    search, after the right password. What happens to a user who is not allowed is the
//!    session's business.

use std::sync::Arc;

use time::OffsetDateTime;

use super::values;
use crate::auth::{
    Allowance, AllowanceCheck, AuthError, AuthVerdict, BoxFuture, FoundUser, SmtpAuthenticator,
    UserLookup, password_refusal, user_refusal,
};
use crate::ldap::bind::BindOutcome;
use crate::ldap::filter::RenderFilter;
use crate::ldap::{Directory, LdapSetupError, QueryKind};
use postern_config::LdapAuthMethod;
use postern_config::filter::{FilterTemplate, Placeholder};

/// The user id attribute when the LDAP profile has no certificate query to name one.
const DEFAULT_USER_ID_ATTRIBUTE: &str = "uid";

/// The entry attribute whose value is a user's id in LDAP profile `profile`: its
/// certificate query's `userIdAttribute`, `uid` without one — the same for certificate
/// and AUTH sessions.
pub(crate) fn user_id_attribute(profile: &postern_config::LdapProfile) -> &str {
    profile
        .certificate_auth_query
        .as_ref()
        .map_or(DEFAULT_USER_ID_ATTRIBUTE, |c| c.user_id_attribute.as_str())
}

/// Checks SMTP AUTH with an LDAP profile's `smtpAuthQuery`.
#[derive(Debug)]
pub struct LdapAuthenticator {
    directory: Arc<Directory>,
    query: String,
    filter: FilterTemplate,
    /// The entry attribute whose value is the user's id.
    user_id_attribute: String,
    allowance: Option<(FilterTemplate, AllowanceCheck)>,
}

impl LdapAuthenticator {
    /// The authenticator of `directory`'s SMTP authentication query; unless `allowance`
    /// is [`AllowanceCheck::Off`], the query's `allowanceFilter` is applied too (and must
    /// exist), before or after the password as `allowance` says.
    pub fn new(
        directory: Arc<Directory>,
        allowance: AllowanceCheck,
    ) -> Result<Self, LdapSetupError> {
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
        let allowance = if allowance == AllowanceCheck::Off {
            None
        } else {
            let text =
                q.allowance_filter
                    .as_deref()
                    .ok_or_else(|| LdapSetupError::MissingQuery {
                        profile: name.clone(),
                        query: "smtpAuthQuery.allowanceFilter",
                    })?;
            let template =
                FilterTemplate::parse(text, &Placeholder::SMTP_AUTH).map_err(|source| {
                    LdapSetupError::Filter {
                        profile: name.clone(),
                        field: "smtpAuthQuery.allowanceFilter",
                        source,
                    }
                })?;
            Some((template, allowance))
        };
        let user_id_attribute = user_id_attribute(directory.profile()).to_owned();
        Ok(Self {
            query: q.name.clone(),
            filter,
            user_id_attribute,
            allowance,
            directory,
        })
    }

    /// Step 1: the entry of `user` and its user id.
    async fn lookup(&self, user: &str) -> Result<UserLookup, AuthError> {
        let unknown = |reason: String| Ok(UserLookup::Unknown { reason });
        // Checked before anything else, so that neither an empty name nor a NUL ever
        // reaches the directory.
        if let Some(refusal) = user_refusal(user) {
            return unknown(refusal.to_string());
        }
        let filter = render_now(&self.filter, user)?;
        let key = self
            .filter
            .render(|p| values::auth_key_value(user, p))
            .map_err(|p| AuthError::Directory(format!("no value for {p}")))?;
        let found = self
            .directory
            .search(
                QueryKind::User,
                &self.query,
                &filter,
                &key,
                &[self.user_id_attribute.as_str()],
            )
            .await?;
        let entry = match &*found.entries {
            [] => return unknown(format!("unknown user (no entry matches {filter})")),
            [entry] => entry,
            many => {
                return unknown(format!(
                    "{} entries match {filter}; a user name must identify one entry",
                    many.len()
                ));
            }
        };
        match entry.values(&self.user_id_attribute).first() {
            Some(user_id) if !user_id.is_empty() => Ok(UserLookup::Found(FoundUser {
                user_id: user_id.clone(),
                dn: Some(entry.dn.clone()),
            })),
            _ => {
                let reason = format!(
                    "the entry {} has no textual {} value (userIdAttribute), so it cannot be a session's identity",
                    entry.dn, self.user_id_attribute
                );
                tracing::warn!(
                    target: "postern::ldap",
                    profile = %self.directory.name(), query = %self.query, kind = "user",
                    dn = %entry.dn, outcome = "not_found", reason = %reason,
                    "AUTH user not usable"
                );
                unknown(reason)
            }
        }
    }

    /// Steps 2 to 4 for a user [`lookup`](Self::lookup) found.
    async fn check(&self, user: &FoundUser, password: &str) -> Result<AuthVerdict, AuthError> {
        let invalid = |reason: String| Ok(AuthVerdict::InvalidCredentials { reason });
        if let Some(refusal) = password_refusal(password) {
            return invalid(refusal.to_string());
        }
        let Some(dn) = user.dn.as_deref() else {
            return invalid("no directory entry to check the password against".into());
        };
        let before = match &self.allowance {
            Some((template, AllowanceCheck::BeforePassword)) => {
                if !self.allowed(template, &user.user_id).await? {
                    return Ok(AuthVerdict::NotAllowed {
                        user_id: user.user_id.clone(),
                    });
                }
                Some(Allowance::Allowed)
            }
            _ => None,
        };
        match self
            .directory
            .check_password(&self.query, dn, password)
            .await?
        {
            BindOutcome::Success => {}
            BindOutcome::Invalid { reason } => return invalid(format!("{dn}: {reason}")),
        }
        let allowance = match (&self.allowance, before) {
            (_, Some(answer)) => answer,
            (None, None) => Allowance::NotChecked,
            (Some((template, _)), None) => {
                if self.allowed(template, &user.user_id).await? {
                    Allowance::Allowed
                } else {
                    Allowance::Denied
                }
            }
        };
        Ok(AuthVerdict::Authenticated {
            user_id: user.user_id.clone(),
            allowance,
        })
    }

    /// The allowance search, with `{u}` = the user's id (the entry's `userIdAttribute`
    /// value, not the name as typed: the question is about the user that was found).
    async fn allowed(&self, template: &FilterTemplate, user_id: &str) -> Result<bool, AuthError> {
        let filter = render_now(template, user_id)?;
        let key = template
            .render(|p| values::auth_key_value(user_id, p))
            .map_err(|p| AuthError::Directory(format!("no value for {p}")))?;
        let found = self
            .directory
            .search(QueryKind::Allowance, &self.query, &filter, &key, &["1.1"])
            .await?;
        Ok(!found.entries.is_empty())
    }
}

/// `template` with `{u}` = `user` and `{t}` = now, escaped.
fn render_now(template: &FilterTemplate, user: &str) -> Result<String, AuthError> {
    let now = values::generalized_time(OffsetDateTime::now_utc());
    template
        .render(|p| values::auth_value(user, p, &now))
        .map_err(|p| AuthError::Directory(format!("no value for {p}")))
}

impl SmtpAuthenticator for LdapAuthenticator {
    fn query(&self, username: &str) -> String {
        match render_now(&self.filter, username) {
            Ok(filter) => format!(
                "search {filter} under {} (returning {}), then BIND as the entry found",
                self.directory.profile().base_dn,
                self.user_id_attribute
            ),
            Err(e) => e.to_string(),
        }
    }

    fn allowance_query(&self, user_id: &str) -> Option<String> {
        let (template, when) = self.allowance.as_ref()?;
        let when = match when {
            AllowanceCheck::BeforePassword => "before the password",
            _ => "after the password",
        };
        Some(match render_now(template, user_id) {
            Ok(filter) => format!("search {filter} ({when})"),
            Err(e) => e.to_string(),
        })
    }

    fn allowance<'a>(&'a self, user: &'a FoundUser) -> BoxFuture<'a, Result<Allowance, AuthError>> {
        Box::pin(async move {
            match &self.allowance {
                None => Ok(Allowance::NotChecked),
                Some((template, _)) => Ok(if self.allowed(template, &user.user_id).await? {
                    Allowance::Allowed
                } else {
                    Allowance::Denied
                }),
            }
        })
    }

    fn find_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<UserLookup, AuthError>> {
        Box::pin(self.lookup(username))
    }

    fn check_password<'a>(
        &'a self,
        user: &'a FoundUser,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>> {
        Box::pin(self.check(user, password))
    }
}
