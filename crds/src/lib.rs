//! Postern's custom resources, group `postern.dev`, version `v1alpha1`.
//!
//! Five namespaced kinds describe a gateway fleet: [`LdapProfile`], [`SmtpAuthProfile`],
//! [`MailFlowPolicy`], [`Listener`] and [`CrlSource`]. Field names follow DESIGN.md
//! section 2 exactly; they are a contract with manifests, docs and tests.
//!
//! A sixth kind, [`GatewayReport`], is not for people: each gateway writes its own, so that
//! its credentials need no rights on anything else (docs/rbac.md).
//!
//! Every spec type refuses unknown fields, so a manifest with a typo fails to parse
//! offline (`postern plan`) instead of silently doing nothing. The generated CRDs carry
//! structural schemas that API servers from v1.20 on accept, plus CEL rules for the
//! mistakes one object can make on its own ([`rules`]), enforced from v1.25 and ignored
//! before; everything else is checked by the compiler and reported in status.
#![forbid(unsafe_code)]
// `#[kube(printcolumn(type_ = ...), printcolumn(type_ = ...))]` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

pub(crate) mod common;
pub(crate) mod crl_source;
pub(crate) mod gateway_report;
pub mod generate;
pub(crate) mod ldap_profile;
pub(crate) mod listener;
pub(crate) mod mail_flow_policy;
pub(crate) mod quantity;
pub mod reference;
pub(crate) mod revocation;
pub mod rules;
pub mod schema_defaults;
pub(crate) mod smtp_auth_profile;

pub use common::{
    CaBundle, Condition, ConditionStatus, ConfigMapKeyRef, ObjectRef, ObjectStatus, SecretKeyRef,
    condition_type, set_condition,
};
pub use crl_source::{
    CrlDiscovery, CrlDiscoveryBundle, CrlFailurePolicy, CrlFormat, CrlInForce, CrlSchedule,
    CrlScope, CrlSource, CrlSourceSpec, CrlSourceStatus,
};
pub use gateway_report::{
    GatewayReport, GatewayReportSpec, RefusedConfig, RefusedListener, RefusedListenerServing,
    report_api_resource,
};
pub use ldap_profile::{
    CertificateAuthQuery, LdapAuthMethod, LdapBind, LdapCache, LdapPool, LdapProfile,
    LdapProfileSpec, LdapProfileStatus, LdapServer, LdapTimeouts, SmtpAuthQuery,
};
pub use listener::{
    HostAccessEntry, Listener, ListenerSpec, ListenerStatus, ListenerTimeouts, ListenerTls,
    NextHop, NextHopTimeouts, ProxyProtocol,
};
pub use mail_flow_policy::{
    Limits, MailFlowPolicy, MailFlowPolicySpec, MailFlowPolicyStatus, PolicyAction, RateLimit,
    RateLimits, SenderBinding, TlsMode,
};
pub use quantity::{Quantity, QuantityError, parse_quantity};
pub use revocation::{ListenerRevocation, OcspSettings, OnUnavailable, RevocationMode};
pub use smtp_auth_profile::{
    AllowanceAction, AllowanceSpec, CertificateAuthSpec, LdapAuthSpec, SmtpAuthProfile,
    SmtpAuthProfileSpec, SmtpAuthProfileStatus, SmtpAuthProfileType, SmtpReply, ThrottleLimitSpec,
    ThrottleSpec,
};

/// The API group.
pub const GROUP: &str = "postern.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every resource.
pub const API_VERSION: &str = "postern.dev/v1alpha1";
/// The shared category: `kubectl get postern` lists every resource.
pub const CATEGORY: &str = "postern";

/// The five kinds.
pub const KINDS: [&str; 5] = [
    "LdapProfile",
    "SmtpAuthProfile",
    "MailFlowPolicy",
    "Listener",
    "CrlSource",
];
