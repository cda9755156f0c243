//! The gateway configuration model.
//!
//! This is the gateway's own format: the controller compiles the custom resources of one
//! namespace into one `GatewayConfig`, and an operator can also write or render one by
//! hand and run `postern-gateway --config FILE` with no Kubernetes at all.
//!
//! Rules that keep it reviewable and reproducible:
//! - every collection is a `BTreeMap` keyed by object name, so serialisation is stable;
//! - secrets (keys, bind passwords) are inline, because the whole document is published
//!   as a Kubernetes Secret;
//! - unknown fields are refused, so a typo never silently does nothing.

mod crl_discovery;
pub mod defaults;
mod edge;
mod revocation;
pub mod sender;

pub use crl_discovery::{CRL_DISCOVERED_URLS_MAX, CrlDiscovery, is_url_prefix};
pub use edge::{ProxyProtocol, RateLimit, RateLimits};
pub use revocation::{
    OCSP_CACHE_MAX_AGE_MAX, OCSP_CACHE_MAX_AGE_MIN, OCSP_TIMEOUT_MAX, OCSP_TIMEOUT_MIN, Ocsp,
    OnUnavailable, Revocation, RevocationMode, RevocationProblem,
};
pub use sender::SenderBinding;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// The only `apiVersion` this gateway understands.
pub const API_VERSION: &str = "postern.dev/gateway/v1";

/// A complete, self-contained gateway configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Where this configuration came from (informational; part of the hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// SMTP listeners by name.
    #[serde(default)]
    pub listeners: BTreeMap<String, Listener>,
    /// Mail flow policies by name.
    #[serde(default)]
    pub policies: BTreeMap<String, MailFlowPolicy>,
    /// SMTP authentication profiles by name, already flattened (see [`AuthProfile`]).
    #[serde(default)]
    pub auth_profiles: BTreeMap<String, AuthProfile>,
    /// LDAP server profiles by name.
    #[serde(default)]
    pub ldap_profiles: BTreeMap<String, LdapProfile>,
    /// CRL sources by name.
    #[serde(default)]
    pub crl_sources: BTreeMap<String, CrlSource>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            source: None,
            listeners: BTreeMap::new(),
            policies: BTreeMap::new(),
            auth_profiles: BTreeMap::new(),
            ldap_profiles: BTreeMap::new(),
            crl_sources: BTreeMap::new(),
        }
    }
}

/// Provenance of a rendered configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The Kubernetes namespace the resources came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------------------

/// One SMTP listener (a bound address and port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Address to bind, e.g. `0.0.0.0` or `127.0.0.1`.
    pub address: IpAddr,
    /// TCP port.
    pub port: u16,
    /// Name used in the greeting, EHLO reply and `Received` headers.
    pub hostname: String,
    /// `true` for SMTPS (TLS from the first byte, usually port 465).
    #[serde(default)]
    pub implicit_tls: bool,
    /// Server certificate and client trust anchors; required when TLS can be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Name of the [`AuthProfile`] in force on this listener, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_profile: Option<String>,
    /// Ordered host access table: the first entry whose CIDRs contain the client wins.
    #[serde(default)]
    pub host_access_table: Vec<HostAccessEntry>,
    /// Policy for clients that match no entry of the host access table.
    pub default_policy: String,
    /// Where accepted mail is relayed.
    pub next_hop: NextHop,
    /// Session timeouts.
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
    /// Cap on concurrent connections; further clients get `421 4.7.0` and are closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Cap on concurrent connections from one client (an IPv4 address, or an IPv6 /64);
    /// further connections from it get `421 4.7.0` and are closed, so one client cannot
    /// take every slot of `max_connections`. At most `max_connections`. Omitted: see
    /// [`Listener::connections_per_client`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<u32>,
    /// PROXY protocol from trusted load balancers; `None`: every peer is the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl Listener {
    /// The per-client cap in force: `max_connections_per_client`, or
    /// [`defaults::LISTENER_MAX_CONNECTIONS_PER_CLIENT`] (50) when it is left out. Left out on a listener with fewer connections than that, the listener's own
    /// cap is the only one that applies (the configuration stays valid, as before the
    /// per-client cap existed; the docs tell operators to set it there).
    pub fn connections_per_client(&self) -> u32 {
        self.max_connections_per_client
            .unwrap_or(defaults::LISTENER_MAX_CONNECTIONS_PER_CLIENT)
    }
}

fn default_max_connections() -> u32 {
    defaults::LISTENER_MAX_CONNECTIONS
}

/// TLS material of a listener (PEM, inline).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// Server certificate chain, leaf first.
    pub certificate_chain_pem: String,
    /// Private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: String,
    /// Trust anchors for client certificates; required when client certificates are asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_pem: Option<String>,
    /// Accept X.509 version 1 client certificates (what `openssl x509 -req` makes without
    /// `-extfile`), as OpenSSL does; refused by default. Written only when set, so
    /// configurations without it keep their hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_version1_client_certificates: bool,
    /// How client certificates' revocation is checked (CRL, OCSP, or both). Written only
    /// when not the default (`CrlOnly`), so configurations without it keep their hash.
    #[serde(default, skip_serializing_if = "Revocation::is_default")]
    pub revocation: Revocation,
}

impl std::fmt::Debug for ListenerTls {
    // Never print key material into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field(
                "certificate_chain_pem",
                &format_args!("<{} bytes>", self.certificate_chain_pem.len()),
            )
            .field("private_key_pem", &"<redacted>")
            .field(
                "client_ca_pem",
                &self.client_ca_pem.as_ref().map(|p| p.len()),
            )
            .field(
                "allow_version1_client_certificates",
                &self.allow_version1_client_certificates,
            )
            .field("revocation", &self.revocation)
            .finish()
    }
}

/// One row of a host access table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostAccessEntry {
    /// Sender group name (for logs and metrics), e.g. `RELAYLIST`.
    pub sender_group: String,
    /// Client networks this row matches.
    pub cidrs: Vec<IpNet>,
    /// Name of the [`MailFlowPolicy`] applied to matching clients.
    pub policy: String,
}

/// The SMTP server mail is relayed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NextHop {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_next_hop_port")]
    pub port: u16,
    /// Whether to use STARTTLS towards the next hop.
    #[serde(default = "default_next_hop_tls")]
    pub tls: TlsMode,
    /// Trust anchors for the next hop's certificate; without them the next hop's
    /// certificate is not verified (opportunistic encryption, as Postfix `encrypt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Connect timeout.
    #[serde(default = "default_next_hop_connect_timeout")]
    pub connect_timeout: Duration,
    /// Timeout for each command and for the whole DATA transfer's replies.
    #[serde(default = "default_next_hop_command_timeout")]
    pub command_timeout: Duration,
    /// Tell the next hop who the client is with Postfix's `XCLIENT` (address, port, HELO,
    /// protocol, login), when it offers the command.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub xclient: bool,
}

fn default_next_hop_port() -> u16 {
    defaults::NEXT_HOP_PORT
}
fn default_next_hop_tls() -> TlsMode {
    defaults::NEXT_HOP_TLS
}
fn default_next_hop_connect_timeout() -> Duration {
    defaults::NEXT_HOP_CONNECT_TIMEOUT
}
fn default_next_hop_command_timeout() -> Duration {
    defaults::NEXT_HOP_COMMAND_TIMEOUT
}

/// Timeouts of a listener's sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// Longest a TLS handshake (implicit TLS or after `STARTTLS`) may take; a client that
    /// stalls in it is disconnected. Capped at `command`.
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake: Duration,
    /// Longest wait for `EHLO`/`HELO`, from the greeting and again from the end of a
    /// `STARTTLS` handshake (`421 4.4.2` after it): a client that connects and says
    /// nothing gives its slot back long before `command` would. Capped at `command`.
    #[serde(default = "default_greeting_timeout")]
    pub greeting: Duration,
    /// Longest wait for the next command line (`421 4.4.2` after it).
    #[serde(default = "default_command_timeout")]
    pub command: Duration,
    /// Longest wait for the next chunk of message data.
    #[serde(default = "default_data_timeout")]
    pub data: Duration,
    /// Longest the whole message data phase may take, from `354` to the final dot, however
    /// steadily the client sends (`421 4.4.2` after it): a client trickling a byte now
    /// and then cannot hold its session and connection slot forever.
    #[serde(default = "default_data_total_timeout")]
    pub data_total: Duration,
}

fn default_tls_handshake_timeout() -> Duration {
    defaults::LISTENER_TLS_HANDSHAKE_TIMEOUT
}
fn default_greeting_timeout() -> Duration {
    defaults::LISTENER_GREETING_TIMEOUT
}
fn default_command_timeout() -> Duration {
    defaults::LISTENER_COMMAND_TIMEOUT
}
fn default_data_timeout() -> Duration {
    defaults::LISTENER_DATA_TIMEOUT
}
fn default_data_total_timeout() -> Duration {
    defaults::LISTENER_DATA_TOTAL_TIMEOUT
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        Self {
            tls_handshake: default_tls_handshake_timeout(),
            greeting: default_greeting_timeout(),
            command: default_command_timeout(),
            data: default_data_timeout(),
            data_total: default_data_total_timeout(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mail flow policy
// ---------------------------------------------------------------------------------------

/// What the gateway does with a connection, chosen by the host access table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailFlowPolicy {
    /// `Relay` accepts mail subject to the rest; `Reject` answers `554 5.7.1` and closes.
    pub action: PolicyAction,
    /// TLS for the session.
    pub tls: TlsMode,
    /// Ask for a client certificate and refuse an invalid one at the handshake.
    #[serde(default)]
    pub verify_client_certificate: bool,
    /// MAIL needs an authenticated session (by certificate or AUTH).
    #[serde(default)]
    pub require_smtp_auth: bool,
    /// AUTH is offered only once TLS is active.
    #[serde(default)]
    pub require_tls_for_smtp_auth: bool,
    /// Size and count limits.
    #[serde(default)]
    pub limits: Limits,
    /// Messages and recipients per window, per user and per client, across sessions.
    #[serde(default, skip_serializing_if = "RateLimits::is_unlimited")]
    pub rate_limits: RateLimits,
    /// `MAIL FROM` of an authenticated session against its user's addresses.
    #[serde(default, skip_serializing_if = "SenderBinding::is_off")]
    pub sender_binding: SenderBinding,
}

/// `Relay` or `Reject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyAction {
    /// Accept mail (subject to TLS and authentication requirements) and relay it.
    Relay,
    /// Refuse the connection with `554 5.7.1`.
    Reject,
}

/// TLS requirement. `Disabled`, not `Off`: YAML 1.1 reads `Off` as `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TlsMode {
    /// No STARTTLS is offered.
    Disabled,
    /// STARTTLS is offered; plaintext is allowed.
    Preferred,
    /// MAIL and AUTH are refused (`530 5.7.0`) until TLS is active.
    Required,
}

/// Per-session limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest message in bytes (advertised with SIZE; `552 5.3.4` beyond it).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Most recipients per message (`452 4.5.3` beyond it).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: u32,
    /// Most messages per session.
    #[serde(default = "default_max_messages_per_session")]
    pub max_messages_per_session: u32,
}

fn default_max_message_size() -> u64 {
    defaults::MAX_MESSAGE_SIZE
}
fn default_max_recipients() -> u32 {
    defaults::MAX_RECIPIENTS
}
fn default_max_messages_per_session() -> u32 {
    defaults::MAX_MESSAGES_PER_SESSION
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_messages_per_session: default_max_messages_per_session(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Authentication profiles
// ---------------------------------------------------------------------------------------

/// An SMTP authentication profile, flattened by the compiler.
///
/// The custom resources say "a Certificate profile, optionally falling back to an Ldap
/// profile"; here that is simply which of the two mechanisms are on:
/// - Certificate without fallback: `certificate` set, `smtpAuth` absent (AUTH never offered);
/// - Certificate with fallback: both set (AUTH offered for clients without a usable certificate);
/// - Ldap: only `smtpAuth` set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthProfile {
    /// Map a verified client certificate to a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateAuth>,
    /// Check the SMTP AUTH command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_auth: Option<SmtpAuth>,
}

/// How a verified client certificate becomes a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuth {
    /// The backend that does the mapping.
    pub backend: AuthBackend,
    /// Certificate policy OIDs, any one of which a certificate must carry to be mapped
    /// (empty: no requirement). See [`crate::certificate_type`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_policies: Vec<String>,
    /// Extended key usages (OIDs or the names of [`crate::certificate_type::EKU_NAMES`]),
    /// all of which a certificate must carry to be mapped (empty: no requirement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_ekus: Vec<String>,
}

/// How SMTP AUTH is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpAuth {
    /// Name of the profile this came from (the fallback profile's name when it was
    /// reached through `fallbackProfileRef`), for logs and metrics.
    pub profile: String,
    /// The backend that checks the credentials.
    pub backend: AuthBackend,
    /// "Check with LDAP if user is allowed to use SMTP AUTH".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowance: Option<Allowance>,
    /// Failed-AUTH throttling across sessions (per client address and per user name).
    #[serde(default)]
    pub throttle: AuthThrottle,
}

/// How many failed AUTH commands (`535`, and refusals by the allowance query) a client
/// address and a user name may accumulate, across sessions, before AUTH is refused with
/// `454 4.7.0` without asking the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthThrottle {
    /// Per client address (IPv4 address, or IPv6 /64).
    #[serde(default = "default_throttle_per_client")]
    pub per_client: ThrottleLimit,
    /// Per user name (as the directory compares names: case-insensitively, and the
    /// entry's user id as well as the name typed).
    #[serde(default = "default_throttle_per_user")]
    pub per_user: ThrottleLimit,
}

/// One throttle: `failures` failed AUTHs per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottleLimit {
    /// Failures allowed in a row; after that, one more every `window / failures`.
    /// `0` turns this throttle off.
    pub failures: u32,
    /// The period the failures are counted over.
    pub window: Duration,
}

fn default_throttle_per_client() -> ThrottleLimit {
    ThrottleLimit {
        failures: defaults::THROTTLE_PER_CLIENT_FAILURES,
        window: defaults::THROTTLE_WINDOW,
    }
}
fn default_throttle_per_user() -> ThrottleLimit {
    ThrottleLimit {
        failures: defaults::THROTTLE_PER_USER_FAILURES,
        window: defaults::THROTTLE_WINDOW,
    }
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self {
            per_client: default_throttle_per_client(),
            per_user: default_throttle_per_user(),
        }
    }
}

/// Where identities are looked up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum AuthBackend {
    /// An [`LdapProfile`] by name: its `certificateAuthQuery` for certificates, its
    /// `smtpAuthQuery` for SMTP AUTH.
    Ldap {
        /// Name of the LDAP profile.
        #[serde(rename = "ldapProfile")]
        ldap_profile: String,
    },
    /// A fixed user list inside the configuration. For the embedded demo and for tests
    /// without a directory; never produced by the controller.
    Static {
        /// The users.
        users: Vec<StaticUser>,
    },
}

/// A user of the [`AuthBackend::Static`] backend.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticUser {
    /// The user id the session is authenticated as.
    pub user_id: String,
    /// Password for SMTP AUTH (plaintext: demo only). Absent: the user cannot use AUTH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Certificate subject common name that maps to this user. Absent: no certificate maps to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_cn: Option<String>,
    /// Whether the allowance check lets this user use AUTH.
    #[serde(default = "default_true")]
    pub allowed: bool,
    /// The user's addresses, for `senderBinding` (none: every sender is foreign).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

fn default_true() -> bool {
    true
}

impl std::fmt::Debug for StaticUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticUser")
            .field("user_id", &self.user_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("certificate_cn", &self.certificate_cn)
            .field("allowed", &self.allowed)
            .field("addresses", &self.addresses)
            .finish()
    }
}

/// The allowance check and what happens when a user fails it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Allowance {
    /// `Reject` answers with `response`; `Monitor` lets the session go on and logs every command.
    pub action: AllowanceAction,
    /// The reply for a refused user (default `525 5.7.13`).
    #[serde(default)]
    pub response: Reply,
}

/// What happens to a user the allowance query does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllowanceAction {
    /// Refuse the AUTH with the configured response.
    Reject,
    /// Authenticate anyway and log every command of the session.
    Monitor,
}

/// A custom SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reply {
    /// Three-digit reply code, 4xx or 5xx.
    pub code: u16,
    /// RFC 3463 enhanced status code whose class matches `code`, e.g. `5.7.13`.
    pub enhanced_code: String,
    /// Human-readable text (one line).
    pub text: String,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            code: defaults::ALLOWANCE_REPLY_CODE,
            enhanced_code: defaults::ALLOWANCE_REPLY_ENHANCED_CODE.into(),
            text: defaults::ALLOWANCE_REPLY_TEXT.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// LDAP
// ---------------------------------------------------------------------------------------

/// An LDAP server profile and its queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapProfile {
    /// Server URLs (`ldap://` or `ldaps://`), tried in order.
    pub servers: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// Trust anchors for `ldaps://` and StartTLS (PEM); absent: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Service account for searches; absent: anonymous searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<LdapBind>,
    /// Search base.
    pub base_dn: String,
    /// Connect and per-operation timeouts.
    #[serde(default)]
    pub timeouts: LdapTimeouts,
    /// Size of the search connection pool.
    #[serde(default = "default_ldap_pool")]
    pub max_connections: u32,
    /// Result cache (search results only; passwords are never cached).
    #[serde(default)]
    pub cache: LdapCache,
    /// The "Certificate Authentication Query".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_auth_query: Option<CertificateAuthQuery>,
    /// The "SMTP Authentication Query".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_auth_query: Option<SmtpAuthQuery>,
    /// The entry attributes holding the user's addresses (`senderBinding`); values of
    /// Exchange's `proxyAddresses` form (`smtp:`/`SMTP:`) are read without the prefix.
    #[serde(
        default = "sender::default_mail_attributes",
        skip_serializing_if = "sender::is_default_mail_attributes"
    )]
    pub mail_attributes: Vec<String>,
}

fn default_ldap_pool() -> u32 {
    defaults::LDAP_POOL
}

/// Credentials of the search account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapBind {
    /// Bind DN.
    pub dn: String,
    /// Bind password (inline: the rendered config is a Secret).
    pub password: String,
}

impl std::fmt::Debug for LdapBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapBind")
            .field("dn", &self.dn)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// LDAP timeouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapTimeouts {
    /// TCP + TLS connect.
    #[serde(default = "default_ldap_connect")]
    pub connect: Duration,
    /// Each search or bind.
    #[serde(default = "default_ldap_operation")]
    pub operation: Duration,
}

fn default_ldap_connect() -> Duration {
    defaults::LDAP_CONNECT_TIMEOUT
}
fn default_ldap_operation() -> Duration {
    defaults::LDAP_OPERATION_TIMEOUT
}

impl Default for LdapTimeouts {
    fn default() -> Self {
        Self {
            connect: default_ldap_connect(),
            operation: default_ldap_operation(),
        }
    }
}

/// Search result cache lifetimes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapCache {
    /// How long a found entry is reused; `0s` disables caching.
    #[serde(default = "default_cache_ttl")]
    pub ttl: Duration,
    /// How long "no such entry" is reused.
    #[serde(default = "default_cache_negative_ttl")]
    pub negative_ttl: Duration,
}

fn default_cache_ttl() -> Duration {
    defaults::LDAP_CACHE_TTL
}
fn default_cache_negative_ttl() -> Duration {
    defaults::LDAP_CACHE_NEGATIVE_TTL
}

impl Default for LdapCache {
    fn default() -> Self {
        Self {
            ttl: default_cache_ttl(),
            negative_ttl: default_cache_negative_ttl(),
        }
    }
}

/// Maps a client certificate to a directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthQuery {
    /// Query name (logs, metrics).
    pub name: String,
    /// Filter template with certificate placeholders (`{cn}`, `{sn}`, ...).
    pub filter: String,
    /// Attribute whose value becomes the session's user id (`uid`, `sAMAccountName`).
    #[serde(default = "default_user_id_attribute")]
    pub user_id_attribute: String,
}

fn default_user_id_attribute() -> String {
    defaults::USER_ID_ATTRIBUTE.into()
}

/// Finds and checks an SMTP AUTH user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpAuthQuery {
    /// Query name (logs, metrics).
    pub name: String,
    /// Filter template finding the user's entry (`{u}`).
    pub filter: String,
    /// How the password is checked.
    #[serde(default = "default_auth_method")]
    pub method: LdapAuthMethod,
    /// Filter template that must match for the user to be allowed AUTH (`{u}`, `{t}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowance_filter: Option<String>,
}

fn default_auth_method() -> LdapAuthMethod {
    LdapAuthMethod::Bind
}

/// How an SMTP AUTH password is checked against the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LdapAuthMethod {
    /// LDAP simple BIND as the found entry with the given password.
    Bind,
}

// ---------------------------------------------------------------------------------------
// CRL sources
// ---------------------------------------------------------------------------------------

/// A certificate revocation list that is fetched on a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrlSource {
    /// Disabled sources are not fetched and not enforced.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Encoding of the file.
    pub format: CrlFormat,
    /// Where to fetch it; absent when the source only discovers its URLs (`discovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_url: Option<String>,
    /// Used when the primary fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_url: Option<String>,
    /// Fetch interval.
    pub interval: Duration,
    /// Which TLS checks use it.
    pub applies_to: Vec<CrlScope>,
    /// What the checks it applies to do while the source has no CRL in force (before its
    /// first successful fetch, or while every fetch fails): `Closed` (the default)
    /// refuses the certificates it may be for as unverifiable; `Open` does not.
    #[serde(default, skip_serializing_if = "CrlFailurePolicy::is_closed")]
    pub failure_policy: CrlFailurePolicy,
    /// Largest accepted download in bytes (`too_large` beyond it). Default 512 MiB; only
    /// written when not.
    #[serde(
        default = "default_crl_max_size",
        skip_serializing_if = "is_default_crl_max_size"
    )]
    pub max_size: u64,
    /// URLs discovered from CRL distribution points, besides (or instead of) the
    /// configured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<CrlDiscovery>,
}

/// The default `maxSize` of a CRL source: 512 MiB.
pub const DEFAULT_CRL_MAX_SIZE: u64 = 512 * 1024 * 1024;

fn default_crl_max_size() -> u64 {
    DEFAULT_CRL_MAX_SIZE
}

fn is_default_crl_max_size(v: &u64) -> bool {
    *v == DEFAULT_CRL_MAX_SIZE
}

/// What a CRL source's checks do while it has no CRL in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CrlFailurePolicy {
    /// Certificates the source may be for are unverifiable (`crl_missing`): refused.
    #[default]
    Closed,
    /// Certificates are not refused for want of this source's CRL (revocation is off for
    /// them until it loads); status carries a warning meanwhile.
    Open,
}

impl CrlFailurePolicy {
    /// The default, which is left out of a rendered configuration.
    pub fn is_closed(&self) -> bool {
        *self == CrlFailurePolicy::Closed
    }
}

/// CRL file encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CrlFormat {
    /// DER (`application/pkix-crl`).
    Asn1,
    /// One or more PEM `X509 CRL` blocks.
    Pem,
    /// A ZIP archive of DER and/or PEM CRL files (as DISA distributes them).
    Zip,
}

/// Which TLS connections a CRL is enforced on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CrlScope {
    /// Client certificates presented to the listeners.
    InboundSmtpTls,
    /// The next hop's server certificate.
    OutboundSmtpTls,
}
