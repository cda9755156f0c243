//! `MailFlowPolicy`: what a listener does with a connection (the appliance's RELAYED etc.).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ObjectStatus;
use crate::quantity::Quantity;
use crate::rules;
use postern_config::duration::DURATION_PATTERN;

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
    /// Messages and recipients per window across sessions, per authenticated user and per
    /// client address, to contain a compromised account or a runaway client. Counted per
    /// gateway pod: the fleet-wide figure is the limit times the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// `MAIL FROM` of an authenticated session (certificate or SMTP AUTH) against the
    /// user's own addresses, read from the directory (the LdapProfile's
    /// `mailAttributes`): `Off` (default), `Monitor` (a foreign sender is logged and
    /// counted, and accepted) or `Enforce` (refused with `553 5.7.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "sender_binding_schema")]
    #[schemars(extend("default" = "Off"))]
    pub sender_binding: Option<SenderBinding>,
}

/// Sending limits over time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    /// Per authenticated user id (by certificate or AUTH); unauthenticated sessions are
    /// not counted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<RateLimit>,
    /// Per client: an IPv4 address, or an IPv6 /64 (the original client behind PROXY
    /// protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_client: Option<RateLimit>,
}

/// Messages and recipients per window; 0 = unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Most messages per window; beyond it `MAIL` gets `451 4.7.1`. Default 0
    /// (unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub messages: Option<u32>,
    /// Most recipients per window; beyond it `RCPT` gets `452 4.5.3`. Default 0
    /// (unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub recipients: Option<u32>,
    /// The window, e.g. `1h`. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    #[schemars(extend("default" = "1h"))]
    pub window: Option<String>,
}

/// What a policy does with `MAIL FROM` of an authenticated session.
///
/// `Off` is the one enum value of the API that YAML 1.1 (kubectl, Helm) reads as the
/// boolean `false` when unquoted; the schema and this type accept that `false` as `Off`,
/// so `senderBinding: Off` works whether or not it is quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SenderBinding {
    /// No check.
    Off,
    /// A sender that is not one of the user's addresses is logged and counted, and accepted.
    Monitor,
    /// A sender that is not one of the user's addresses is refused with `553 5.7.1`.
    Enforce,
}

impl<'de> Deserialize<'de> for SenderBinding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SenderBinding;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Off, Monitor or Enforce")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<SenderBinding, E> {
                // YAML 1.1's reading of a bare `Off`; a bare `On` (true) names nothing.
                if v {
                    Err(E::invalid_value(serde::de::Unexpected::Bool(v), &self))
                } else {
                    Ok(SenderBinding::Off)
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SenderBinding, E> {
                match v {
                    "Off" => Ok(SenderBinding::Off),
                    "Monitor" => Ok(SenderBinding::Monitor),
                    "Enforce" => Ok(SenderBinding::Enforce),
                    _ => Err(E::unknown_variant(v, &["Off", "Monitor", "Enforce"])),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for SenderBinding {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SenderBinding".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        sender_binding_schema(generator)
    }
}

/// No `type`: a structural schema allows an untyped value only with
/// preserve-unknown-fields; the enum still admits exactly these four values. Used for the
/// optional field as is: the `null` schemars adds to an optional enum makes Kubernetes
/// 1.20 refuse the whole CRD.
fn sender_binding_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
        "enum": ["Off", "Monitor", "Enforce", false],
    })
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
