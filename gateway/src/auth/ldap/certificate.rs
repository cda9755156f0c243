//! The Certificate Authentication Query: which user a verified client certificate is.
//!
//! The filter is filled from the certificate (`{cn}`, `{sn}`, ...), searched under
//! `baseDn`, and exactly one entry authenticates the session as that entry's
//! `userIdAttribute` value. No entry, an entry without that attribute, or a certificate
//! lacking a value the filter needs: not authenticated. Several entries: refused as
//! ambiguous — a certificate must name one person.

use std::sync::Arc;

use time::OffsetDateTime;

use super::values;
use crate::auth::{AuthError, BoxFuture, CertificateFacts, CertificateMapper, CertificateMapping};
use crate::ldap::filter::RenderFilter;
use crate::ldap::{Directory, LdapSetupError, QueryKind};
use postern_config::filter::{FilterTemplate, Placeholder};

/// Maps client certificates with an LDAP profile's `certificateAuthQuery`.
#[derive(Debug)]
pub struct LdapCertificateMapper {
    directory: Arc<Directory>,
    query: String,
    filter: FilterTemplate,
    user_id_attribute: String,
}

impl LdapCertificateMapper {
    /// The mapper of `directory`'s certificate query.
    pub fn new(directory: Arc<Directory>) -> Result<Self, LdapSetupError> {
        let profile = directory.profile();
        let q = profile.certificate_auth_query.as_ref().ok_or_else(|| {
            LdapSetupError::MissingQuery {
                profile: directory.name().to_owned(),
                query: "certificateAuthQuery",
            }
        })?;
        let filter =
            FilterTemplate::parse(&q.filter, &Placeholder::CERTIFICATE).map_err(|source| {
                LdapSetupError::Filter {
                    profile: directory.name().to_owned(),
                    field: "certificateAuthQuery.filter",
                    source,
                }
            })?;
        Ok(Self {
            query: q.name.clone(),
            user_id_attribute: q.user_id_attribute.clone(),
            filter,
            directory,
        })
    }

    /// The filter for `cert` (escaped), or the placeholder it has no value for.
    fn filter_for(&self, cert: &CertificateFacts) -> Result<String, Placeholder> {
        let now = values::generalized_time(OffsetDateTime::now_utc());
        self.filter
            .render(|p| values::certificate_value(cert, p, &now))
    }

    async fn lookup(&self, cert: &CertificateFacts) -> Result<CertificateMapping, AuthError> {
        let filter = match self.filter_for(cert) {
            Ok(f) => f,
            Err(missing) => {
                tracing::info!(
                    target: "postern::ldap",
                    profile = %self.directory.name(), query = %self.query, kind = "certificate",
                    subject = %cert.subject, serial = %cert.serial_hex, outcome = "not_found",
                    reason = %values::missing_reason(cert, missing),
                    "certificate not mapped"
                );
                return Ok(CertificateMapping::NotFound);
            }
        };
        let key = self
            .filter
            .render(|p| values::certificate_key_value(cert, p))
            .unwrap_or_else(|_| filter.clone());
        let found = self
            .directory
            .search(
                QueryKind::Certificate,
                &self.query,
                &filter,
                &key,
                &[self.user_id_attribute.as_str()],
            )
            .await?;
        Ok(match &*found.entries {
            [] => CertificateMapping::NotFound,
            [entry] => match entry.values(&self.user_id_attribute).first() {
                Some(user_id) if !user_id.is_empty() => CertificateMapping::Mapped {
                    user_id: user_id.clone(),
                    dn: Some(entry.dn.clone()),
                },
                _ => {
                    tracing::warn!(
                        target: "postern::ldap",
                        profile = %self.directory.name(), query = %self.query, kind = "certificate",
                        subject = %cert.subject, serial = %cert.serial_hex, dn = %entry.dn,
                        outcome = "not_found",
                        reason = %format!("the entry has no textual {} value (userIdAttribute)", self.user_id_attribute),
                        "certificate not mapped"
                    );
                    CertificateMapping::NotFound
                }
            },
            many => {
                tracing::warn!(
                    target: "postern::ldap",
                    profile = %self.directory.name(), query = %self.query, kind = "certificate",
                    subject = %cert.subject, serial = %cert.serial_hex, outcome = "ambiguous",
                    entries = many.len(),
                    dns = %many.iter().map(|e| e.dn.as_str()).collect::<Vec<_>>().join(" | "),
                    "certificate matches several entries; refused"
                );
                CertificateMapping::Ambiguous { count: many.len() }
            }
        })
    }
}

impl CertificateMapper for LdapCertificateMapper {
    fn map<'a>(
        &'a self,
        cert: &'a CertificateFacts,
    ) -> BoxFuture<'a, Result<CertificateMapping, AuthError>> {
        Box::pin(self.lookup(cert))
    }

    fn query(&self, cert: &CertificateFacts) -> String {
        match self.filter_for(cert) {
            Ok(filter) => format!(
                "search {filter} under {} (returning {})",
                self.directory.profile().base_dn,
                self.user_id_attribute
            ),
            Err(missing) => format!(
                "nothing: {} (not mapped)",
                values::missing_reason(cert, missing)
            ),
        }
    }
}
