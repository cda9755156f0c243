//! `Listener`: an SMTP port of the gateway fleet.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CaBundle, ObjectRef, ObjectStatus, SecretKeyRef};
use crate::mail_flow_policy::TlsMode;
use crate::rules;
use postern_config::duration::DURATION_PATTERN;

/// An SMTP listener: address and port, TLS material, the authentication profile in
/// force, the host access table choosing a mail flow policy per client, and the next hop.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "Listener",
    namespaced,
    status = "ListenerStatus",
    shortname = "lsn",
    shortname = "smtplistener",
    category = "postern",
    doc = "An SMTP listener of the gateway fleet.",
    printcolumn(name = "Port", type_ = "integer", json_path = ".spec.port"),
    printcolumn(
        name = "Hostname",
        type_ = "string",
        json_path = ".spec.hostname",
        priority = 1
    ),
    printcolumn(
        name = "Profile",
        type_ = "string",
        json_path = ".spec.smtpAuthProfileRef.name"
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
#[schemars(transform = rules::listener_spec())]
pub struct ListenerSpec {
    /// TCP port, e.g. 587 (submission), 465 (SMTPS, with `implicitTls`) or 25.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Address to bind. Default `0.0.0.0` (every IPv4 address); `::` for IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Host name used in the greeting, the EHLO reply and `Received` headers.
    #[schemars(length(min = 1, max = 253), transform = rules::hostname())]
    pub hostname: String,
    /// `true` for SMTPS: TLS from the first byte (usually port 465).
    #[serde(default)]
    pub implicit_tls: bool,
    /// Server certificate and the trust anchors for client certificates. Required when
    /// any mail flow policy of the listener offers TLS, or `implicitTls` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// The SmtpAuthProfile in force on this listener. Required when a policy of the
    /// listener has `requireSmtpAuth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_auth_profile_ref: Option<ObjectRef>,
    /// Ordered host access table: the first row whose CIDRs contain the client's address
    /// picks the mail flow policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_access_table: Vec<HostAccessEntry>,
    /// The MailFlowPolicy for clients no row of the host access table matches.
    pub default_mail_flow_policy_ref: ObjectRef,
    /// Where accepted mail is relayed.
    pub next_hop: NextHop,
    /// Timeouts of client sessions: TLS handshake, greeting, commands and message data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ListenerTimeouts>,
    /// Most concurrent connections per gateway pod; more get `421 4.7.0`. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
    /// Most concurrent connections per gateway pod from one client: one IPv4 address, or
    /// one IPv6 /64 (a single host can use every address of its /64). More get
    /// `421 4.7.0` at once, so one client cannot take every slot of `maxConnections`.
    /// Must not exceed `maxConnections`, and should be well below it. Default 50 (on a
    /// listener with fewer connections, set it: otherwise only `maxConnections` applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections_per_client: Option<u32>,
    /// PROXY protocol (v1 and v2) from the load balancers in front: a peer in
    /// `trustedCidrs` must open each connection with a PROXY header, and the client it
    /// names is the one the host access table, per-client limits, throttles, logs and
    /// `Received` see. A peer outside `trustedCidrs` is served as itself and may not send
    /// a header. Omitted: every peer is the client (or use `externalTrafficPolicy: Local`
    /// on the Service, see docs/install.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// PROXY protocol on a listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// The proxies' networks (e.g. the load balancer's subnet, `10.0.0.0/8`); a bare
    /// address means that one host. PROXY headers are accepted only from these peers, and
    /// required of them.
    #[schemars(length(min = 1))]
    pub trusted_cidrs: Vec<String>,
}

/// TLS material of a listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// A `kubernetes.io/tls` Secret: `tls.crt` (certificate chain, leaf first) and
    /// `tls.key` (its private key).
    pub certificate_secret_ref: ObjectRef,
    /// The Secret key holding the PEM CA certificates client certificates must chain to
    /// (e.g. the CAC roots). Required when client certificates are asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_secret_ref: Option<SecretKeyRef>,
    /// Accept X.509 version 1 client certificates (what `openssl x509 -req` makes without
    /// `-extfile`; they have no extensions, so no key usage to check), with the same
    /// chain, validity and revocation checks as version 3 ones. When `false`, such a
    /// certificate is refused (alert `certificate_unknown`, reason
    /// `version1_not_allowed`), or ignored where the certificate is not verified at the
    /// handshake.
    #[serde(default)]
    pub allow_version1_client_certificates: bool,
    /// How the revocation of client certificates is checked: CRL (default), OCSP, or
    /// one with the other as fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<crate::ListenerRevocation>,
}

/// One row of the host access table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostAccessEntry {
    /// Sender group name for logs and metrics, e.g. `RELAYLIST`.
    #[schemars(length(min = 1, max = 63))]
    pub sender_group: String,
    /// Client networks, e.g. `10.0.0.0/8`; a bare address means that one host.
    #[schemars(length(min = 1))]
    pub cidrs: Vec<String>,
    /// The MailFlowPolicy applied to these clients.
    pub mail_flow_policy_ref: ObjectRef,
}

/// The SMTP server accepted mail is relayed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NextHop {
    /// Host name or IP address.
    #[schemars(length(min = 1, max = 253), transform = rules::next_hop_host())]
    pub host: String,
    /// TCP port. Default 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// STARTTLS towards the next hop: `Disabled`, `Preferred` or `Required`. Default
    /// `Preferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// Trust anchors for the next hop's certificate. Omitted: the next hop's certificate
    /// is not verified (opportunistic encryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// Connect and command timeouts towards the next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<NextHopTimeouts>,
    /// Tell the next hop who the client is with Postfix's `XCLIENT` command (the original
    /// client's address and port, its HELO name, the protocol and the authenticated
    /// login), when the next hop offers it in its EHLO reply; Postfix does to hosts in
    /// its `smtpd_authorized_xclient_hosts`. Its logs, `Received` header and policies then
    /// see the client rather than the gateway. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub xclient: Option<bool>,
}

/// Timeouts towards the next hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NextHopTimeouts {
    /// Connect timeout. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub connect: Option<String>,
    /// Timeout for each reply of the next hop. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub command: Option<String>,
}

/// Timeouts of client sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// Longest a TLS handshake may take, implicit TLS or after `STARTTLS`; a client that
    /// stalls in it is disconnected. At most `command` applies. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    #[schemars(extend("default" = "10s"))]
    pub tls_handshake: Option<String>,
    /// Longest wait, from the greeting (or from the end of a `STARTTLS` handshake), for
    /// the client's `EHLO` or `HELO` (`421 4.4.2` after it): a client that connects and
    /// says nothing gives its slot back early. At most `command` applies. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    #[schemars(extend("default" = "30s"))]
    pub greeting: Option<String>,
    /// Longest wait for the next command (`421 4.4.2` after it). Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub command: Option<String>,
    /// Longest wait for the next chunk of message data. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub data: Option<String>,
    /// Longest the whole message data phase may take, however steadily the client sends
    /// (`421 4.4.2` after it). Default `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    pub data_total: Option<String>,
}

/// Status of a `Listener`: its conditions, and how the revocation of each CA it trusts
/// is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerStatus {
    /// Conditions and the generation they are about.
    #[serde(flatten)]
    pub common: ObjectStatus,
    /// Each CA of the client CA bundle, as the gateways check it: `mechanism` (`crl`,
    /// `ocsp`, `crl+ocsp` or `none`), whether it is `covered`, the CrlSources with a CRL
    /// of it in force (their last fetch is in each one's status), their entries, size,
    /// earliest `nextUpdate` and staleness. Where gateways differ, the view that should
    /// worry an operator more is shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation: Vec<postern_config::protocol::CaRevocation>,
}
