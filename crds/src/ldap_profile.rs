//! `LdapProfile`: an LDAP directory and the two queries the appliance manual describes.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CaBundle, ObjectStatus, SecretKeyRef};
use crate::rules;
use postern_config::duration::DURATION_PATTERN;

/// An LDAP directory: servers, credentials, timeouts, cache, and the "Certificate
/// Authentication Query" and "SMTP Authentication Query" run against it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "LdapProfile",
    namespaced,
    status = "LdapProfileStatus",
    shortname = "ldapprof",
    shortname = "lp",
    category = "postern",
    doc = "An LDAP directory and the certificate and SMTP AUTH queries run against it.",
    printcolumn(name = "Server", type_ = "string", json_path = ".spec.servers[0].url"),
    printcolumn(
        name = "Base DN",
        type_ = "string",
        json_path = ".spec.baseDn",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = rules::ldap_profile_spec())]
pub struct LdapProfileSpec {
    /// LDAP servers, tried in order: the next one is used when one cannot be reached.
    #[schemars(length(min = 1))]
    pub servers: Vec<LdapServer>,
    /// Upgrade `ldap://` connections with StartTLS before binding.
    #[serde(default)]
    pub start_tls: bool,
    /// Trust anchors for `ldaps://` and StartTLS. Omitted: the system's trusted roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// Service account for searches. Omitted: searches are anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<LdapBind>,
    /// Search base, e.g. `dc=example,dc=org`.
    #[schemars(length(min = 1), transform = rules::base_dn())]
    pub base_dn: String,
    /// Connect and per-operation timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<LdapTimeouts>,
    /// Connection pool for searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<LdapPool>,
    /// How long search results are reused (passwords are never cached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<LdapCache>,
    /// The "Certificate Authentication Query": maps a verified client certificate to a
    /// user. Needed by `type: Certificate` SMTP authentication profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_auth_query: Option<CertificateAuthQuery>,
    /// The "SMTP Authentication Query": finds and checks the user of an SMTP AUTH command.
    /// Needed by `type: Ldap` SMTP authentication profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_auth_query: Option<SmtpAuthQuery>,
    /// The entry attributes that hold the user's addresses, for a MailFlowPolicy's
    /// `senderBinding` (default `[mail]`). Values in Exchange's `proxyAddresses` form
    /// (`SMTP:primary@…`, `smtp:alias@…`) are read without the prefix; its other types
    /// (`X500:`, `SIP:`) are ignored. Addresses are compared without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["mail"]))]
    pub mail_attributes: Option<Vec<String>>,
}

/// One LDAP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapServer {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    #[schemars(pattern(r"^ldaps?://[^\s/]+/?$"))]
    pub url: String,
}

/// Credentials of the search account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapBind {
    /// Bind DN, e.g. `cn=postern,ou=services,dc=example,dc=org`.
    #[schemars(length(min = 1))]
    pub dn: String,
    /// The Secret key holding the bind password. An empty password is refused (it
    /// would be an anonymous bind).
    pub password_secret_ref: SecretKeyRef,
}

/// LDAP timeouts (durations such as `3s`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapTimeouts {
    /// TCP and TLS connect timeout. Default `3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub connect: Option<String>,
    /// Timeout of each search or bind. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub operation: Option<String>,
}

/// Search connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapPool {
    /// Most connections per gateway pod (1-1024). Default 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_connections: Option<u32>,
}

/// Search result cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapCache {
    /// How long a found entry is reused; `0s` disables caching. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub ttl: Option<String>,
    /// How long "no such entry" is reused. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub negative_ttl: Option<String>,
}

/// The "Certificate Authentication Query".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthQuery {
    /// Query name, used in logs and metrics.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// LDAP filter template, e.g. `(&(objectClass=posixAccount)(caccn={cn})(cacserial={sn}))`.
    /// Placeholders: `{cn}` subject common name, `{sn}` serial number (upper-case hex, no
    /// separators), `{dn}` subject DN and `{issuer}` issuer DN (RFC 4514 strings, as
    /// `openssl x509 -nameopt RFC2253` prints them), `{email}`, `{upn}`, `{fp}` SHA-256
    /// fingerprint, `{t}` now (GeneralizedTime). Values are escaped (RFC 4515).
    #[schemars(length(min = 1), transform = rules::certificate_filter())]
    pub filter: String,
    /// Attribute whose value becomes the session's user id. Default `uid`
    /// (`sAMAccountName` on Active Directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id_attribute: Option<String>,
}

/// The "SMTP Authentication Query".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpAuthQuery {
    /// Query name, used in logs and metrics.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// LDAP filter template finding the user's entry, e.g. `(uid={u})`. Placeholders:
    /// `{u}` the SMTP AUTH user name, `{t}` now (GeneralizedTime).
    #[schemars(length(min = 1), transform = rules::smtp_auth_filter())]
    pub filter: String,
    /// How the password is checked: `Bind` (an LDAP bind as the found entry). Default `Bind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<LdapAuthMethod>,
    /// "Allowance query": the user may use SMTP AUTH only if this filter matches, e.g.
    /// `(&(uid={u})(|(!(caccn=*))(cacexempt=*)(cacemergency>={t})))`. Placeholders as in
    /// `filter`. Needed when an SMTP authentication profile enables `allowance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = rules::smtp_auth_filter())]
    pub allowance_filter: Option<String>,
}

/// How an SMTP AUTH password is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum LdapAuthMethod {
    /// LDAP simple bind as the found entry with the given password.
    Bind,
}

/// Status of an `LdapProfile`: its conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LdapProfileStatus {
    /// Conditions and the generation they are about.
    #[serde(flatten)]
    pub common: ObjectStatus,
}
