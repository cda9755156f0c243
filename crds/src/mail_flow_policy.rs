//! `MailFlowPolicy`: what a listener does with a connection (the appliance's RELAYED etc.).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ObjectStatus;
use crate::quantity::Quantity;
use crate::rules;

/// What the gateway does with the connections a listener's host access table assigns to
/// it: relay or reject, TLS, client certificates, and SMTP authentication.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "MailFlowPolicy",
    namespaced,
    status = "MailFlowPolicyStatus",
    shortname = "mfp",
    category = "postern",
    doc = "Relay or reject, TLS, client certificates and SMTP authentication for a class of clients.",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "TLS", type_ = "string", json_path = ".spec.tls"),
    printcolumn(name = "Auth", type_ = "boolean", json_path = ".spec.requireSmtpAuth"),
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
#[schemars(transform = rules::mail_flow_policy_spec())]
pub struct MailFlowPolicySpec {
    /// `Relay` accepts mail (subject to the settings below) and relays it to the
    /// listener's next hop; `Reject` answers `554 5.7.1` and closes the connection.
    pub action: PolicyAction,
    /// `Disabled` (no STARTTLS), `Preferred` (STARTTLS offered) or `Required` (MAIL and
    /// AUTH refused with `530 5.7.0` until TLS is active). Default `Preferred`.
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// "Verify Client Certificate": ask for a client certificate and refuse an invalid
    /// one at the TLS handshake; with `tls: Required`, a valid one is needed to send.
    #[serde(default)]
    pub verify_client_certificate: bool,
    /// MAIL needs an authenticated session (client certificate or SMTP AUTH).
    #[serde(default)]
    pub require_smtp_auth: bool,
    /// "Require TLS to Offer SMTP Authentication": AUTH is offered only once TLS is active.
    #[serde(default)]
    pub require_tls_for_smtp_auth: bool,
    /// Size and count limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// `MAIL FROM` of an authenticated session (certificate or SMTP AUTH) against the
    /// user's own addresses, read from the directory (the LdapProfile's
    /// `mailAttributes`): `Disabled` (default; the configuration's `Off`, named as
    /// `tls: Disabled` is because YAML 1.1 tools read a bare `Off` as `false`), `Monitor`
    /// (a foreign sender is logged and counted, and accepted) or `Enforce` (refused with
    /// `553 5.7.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_binding: Option<SenderBinding>,
}

/// What a policy does with `MAIL FROM` of an authenticated session. (`Disabled`, not
/// `Off`: YAML 1.1 reads `Off` as `false`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SenderBinding {
    /// No check.
    Disabled,
    /// A sender that is not one of the user's addresses is logged and counted, and accepted.
    Monitor,
    /// A sender that is not one of the user's addresses is refused with `553 5.7.1`.
    Enforce,
}

fn default_tls() -> TlsMode {
    TlsMode::Preferred
}

/// `Relay` or `Reject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PolicyAction {
    /// Accept mail and relay it to the next hop.
    Relay,
    /// Refuse the connection with `554 5.7.1`.
    Reject,
}

/// TLS requirement. (`Disabled`, not `Off`: YAML 1.1 reads `Off` as `false`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TlsMode {
    /// No STARTTLS.
    Disabled,
    /// STARTTLS offered; plaintext allowed.
    Preferred,
    /// TLS needed before MAIL and AUTH.
    Required,
}

/// Per-session limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest message, as a quantity such as `10Mi` (advertised with SIZE; `552 5.3.4`
    /// beyond it). Default `10Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<Quantity>,
    /// Most recipients per message (`452 4.5.3` beyond it). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_recipients: Option<u32>,
    /// Most messages per session. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages_per_session: Option<u32>,
}

/// Status of a `MailFlowPolicy`: its conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MailFlowPolicyStatus {
    /// Conditions and the generation they are about.
    #[serde(flatten)]
    pub common: ObjectStatus,
}
