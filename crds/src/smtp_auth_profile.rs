//! `SmtpAuthProfile`: how a listener's clients prove who they are.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ObjectRef, ObjectStatus};
use crate::rules;
use postern_config::duration::DURATION_PATTERN;

/// How clients authenticate: by client certificate (mapped to a user with an LDAP
/// certificate query), or by SMTP AUTH checked against LDAP.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "SmtpAuthProfile",
    namespaced,
    status = "SmtpAuthProfileStatus",
    shortname = "sap",
    shortname = "authprofile",
    category = "postern",
    validation = rules::smtp_auth_profile_object(),
    doc = "How a listener's clients authenticate: client certificate or SMTP AUTH against LDAP.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Fallback",
        type_ = "boolean",
        json_path = ".spec.certificate.allowSmtpAuthFallback"
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
#[schemars(transform = rules::smtp_auth_profile_spec())]
pub struct SmtpAuthProfileSpec {
    /// `Certificate` (client certificate, optionally falling back to SMTP AUTH) or
    /// `Ldap` (SMTP AUTH checked against LDAP). Set the section of the same name.
    #[serde(rename = "type")]
    pub type_: SmtpAuthProfileType,
    /// Settings for `type: Certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateAuthSpec>,
    /// Settings for `type: Ldap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapAuthSpec>,
}

/// The type of an SMTP authentication profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SmtpAuthProfileType {
    /// Client certificate, mapped to a user with the LdapProfile's certificateAuthQuery.
    Certificate,
    /// SMTP AUTH, checked with the LdapProfile's smtpAuthQuery.
    Ldap,
}

/// Certificate authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = rules::certificate_auth_spec())]
pub struct CertificateAuthSpec {
    /// The LdapProfile whose `certificateAuthQuery` maps certificates to users.
    pub ldap_profile_ref: ObjectRef,
    /// "Allow the SMTP AUTH command if a client certificate is not available". Needs
    /// `fallbackProfileRef`.
    #[serde(default)]
    pub allow_smtp_auth_fallback: bool,
    /// The `type: Ldap` SmtpAuthProfile used for SMTP AUTH when the client presents no
    /// certificate. Used only with `allowSmtpAuthFallback: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_profile_ref: Option<ObjectRef>,
    /// Certificate policy OIDs (dotted), any one of which a certificate must carry to be
    /// mapped, e.g. a card's PIV-authentication policy; a certificate without any of them
    /// (the card's email signing or encryption certificate) is refused before the
    /// directory is asked. Empty: no requirement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("default" = []))]
    pub required_policies: Vec<String>,
    /// Extended key usages a certificate must all carry to be mapped: dotted OIDs or the
    /// names `clientAuth`, `smartcardLogon`, `emailProtection`, `serverAuth`,
    /// `pkinitClientAuth`. A certificate without the extension does not satisfy them.
    /// Empty: no requirement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("default" = []))]
    pub required_ekus: Vec<String>,
}

/// SMTP AUTH checked against LDAP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapAuthSpec {
    /// The LdapProfile whose `smtpAuthQuery` finds and checks the user.
    pub ldap_profile_ref: ObjectRef,
    /// "Check with LDAP if user is allowed to use SMTP AUTH" (the allowance query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowance: Option<AllowanceSpec>,
    /// Failed-AUTH throttling across sessions: failed AUTH commands (`535`, and refusals
    /// by the allowance query) are counted per client address and per user name; over
    /// the limit, AUTH is answered `454 4.7.0` without asking the directory. Default
    /// `perClient: {failures: 10, window: 10m}`, `perUser: {failures: 5, window: 10m}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSpec>,
}

/// Failed-AUTH throttling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottleSpec {
    /// Per client address (IPv4 address or IPv6 /64). Default `{failures: 10, window: 10m}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"failures": 10, "window": "10m"}))]
    pub per_client: Option<ThrottleLimitSpec>,
    /// Per user name, from any address (names the directory treats as the same user
    /// count together). Default `{failures: 5, window: 10m}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"failures": 5, "window": "10m"}))]
    pub per_user: Option<ThrottleLimitSpec>,
}

/// One throttle: `failures` failed AUTH commands per `window`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = rules::throttle_limit())]
pub struct ThrottleLimitSpec {
    /// Failed AUTH commands allowed in a row; after that one more every
    /// `window / failures`. `0` turns this throttle off. Default 10 per client, 5 per user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// The period failures are counted over (1s to 24h). Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub window: Option<String>,
}

/// The allowance check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowanceSpec {
    /// Run the LdapProfile's `smtpAuthQuery.allowanceFilter` for the user found (with
    /// `Reject`, before the password is checked, so that the reply to a refused user is
    /// the same for any password; with `Monitor`, after a successful bind).
    /// Default `true`: writing an `allowance` block turns the check on unless it says
    /// `enabled: false`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// What happens to a user the allowance filter does not match: `Reject` answers
    /// with `response`; `Monitor` lets the session continue and logs every command.
    /// Default `Reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<AllowanceAction>,
    /// The reply for a rejected user. Default `525 5.7.13`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<SmtpReply>,
}

/// What happens to a user the allowance filter does not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AllowanceAction {
    /// Refuse the AUTH command with the configured response.
    Reject,
    /// Authenticate anyway and log every command of the session.
    Monitor,
}

/// A custom SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = rules::smtp_reply())]
pub struct SmtpReply {
    /// Three-digit reply code, 4xx or 5xx, e.g. 525.
    #[schemars(range(min = 400, max = 599))]
    pub code: u16,
    /// RFC 3463 enhanced status code whose class matches `code`, e.g. `5.7.13`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}$"))]
    pub enhanced_code: Option<String>,
    /// One line of text, e.g. `Dear user, please use your CAC to send email.`
    #[schemars(length(min = 1, max = 400), transform = rules::reply_text())]
    pub text: String,
}

fn default_enabled() -> bool {
    true
}

/// Status of an `SmtpAuthProfile`: its conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SmtpAuthProfileStatus {
    /// Conditions and the generation they are about.
    #[serde(flatten)]
    pub common: ObjectStatus,
}
