//! Every default of the configuration format, defined once.
//!
//! The model's serde defaults (a field left out of a configuration document) and the
//! compiler (a field left out of a resource) both read these constants, so a rendered
//! configuration and a hand-written one with the field omitted run the same; the CRD
//! docs state the same values.

use std::net::{IpAddr, Ipv4Addr};

use super::TlsMode;
use crate::duration::Duration;

/// `Listener.spec.address`: every IPv4 address (the configuration itself requires one).
pub const LISTENER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// `listeners.*.maxConnections`.
pub const LISTENER_MAX_CONNECTIONS: u32 = 1000;
/// The per-client cap of a listener that sets no `maxConnectionsPerClient`.
pub const LISTENER_MAX_CONNECTIONS_PER_CLIENT: u32 = 50;
/// `listeners.*.timeouts.tlsHandshake`.
pub const LISTENER_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `listeners.*.timeouts.greeting`.
pub const LISTENER_GREETING_TIMEOUT: Duration = Duration::from_secs(30);
/// `listeners.*.timeouts.command`.
pub const LISTENER_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// `listeners.*.timeouts.data`.
pub const LISTENER_DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// `listeners.*.timeouts.dataTotal`.
pub const LISTENER_DATA_TOTAL_TIMEOUT: Duration = Duration::from_secs(1800);
/// `listeners.*.nextHop.port`.
pub const NEXT_HOP_PORT: u16 = 25;
/// `listeners.*.nextHop.tls`.
pub const NEXT_HOP_TLS: TlsMode = TlsMode::Preferred;
/// `listeners.*.nextHop.connectTimeout`.
pub const NEXT_HOP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `listeners.*.nextHop.commandTimeout`.
pub const NEXT_HOP_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `ldapProfiles.*.timeouts.connect`.
pub const LDAP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `ldapProfiles.*.timeouts.operation`.
pub const LDAP_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// `ldapProfiles.*.maxConnections` (`LdapProfile.spec.pool.maxConnections`).
pub const LDAP_POOL: u32 = 8;
/// `ldapProfiles.*.cache.ttl`.
pub const LDAP_CACHE_TTL: Duration = Duration::from_secs(60);
/// `ldapProfiles.*.cache.negativeTtl`.
pub const LDAP_CACHE_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// `ldapProfiles.*.certificateAuthQuery.userIdAttribute`.
pub const USER_ID_ATTRIBUTE: &str = "uid";
/// `authProfiles.*.smtpAuth.throttle.perClient.failures`.
pub const THROTTLE_PER_CLIENT_FAILURES: u32 = 10;
/// `authProfiles.*.smtpAuth.throttle.perUser.failures`.
pub const THROTTLE_PER_USER_FAILURES: u32 = 5;
/// `authProfiles.*.smtpAuth.throttle.*.window`.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(600);
/// `policies.*.rateLimits.perUser.window` and `.perClient.window`.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(3600);
/// `policies.*.limits.maxMessageSize` (10Mi).
pub const MAX_MESSAGE_SIZE: u64 = 10 * 1024 * 1024;
/// `policies.*.limits.maxRecipients`.
pub const MAX_RECIPIENTS: u32 = 100;
/// `policies.*.limits.maxMessagesPerSession`.
pub const MAX_MESSAGES_PER_SESSION: u32 = 100;
/// The allowance check's reply for a refused user: code.
pub const ALLOWANCE_REPLY_CODE: u16 = 525;
/// The allowance check's reply for a refused user: enhanced status code.
pub const ALLOWANCE_REPLY_ENHANCED_CODE: &str = "5.7.13";
/// The allowance check's reply for a refused user: text.
pub const ALLOWANCE_REPLY_TEXT: &str = "User account disabled for SMTP AUTH";

/// `listeners.*.tls.revocation.ocsp.timeout`.
pub const OCSP_TIMEOUT: Duration = Duration::from_secs(2);
/// `listeners.*.tls.revocation.ocsp.cacheMaxAge`.
pub const OCSP_CACHE_MAX_AGE: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use crate::model::{AuthThrottle, GatewayConfig, LdapCache, LdapTimeouts, Limits, Reply};

    use super::*;

    /// A minimal document, every defaulted field left out, reads as these constants.
    #[test]
    fn the_models_serde_defaults_are_these() {
        let config = GatewayConfig::from_yaml(
            r#"
apiVersion: postern.dev/gateway/v1
listeners:
  l: {address: 0.0.0.0, port: 25, hostname: h, defaultPolicy: p, nextHop: {host: x}}
ldapProfiles:
  p: {servers: ["ldap://x"], baseDn: "dc=x", certificateAuthQuery: {name: q, filter: "(cn={cn})"}}
"#,
            "test",
        )
        .unwrap();
        let l = &config.listeners["l"];
        assert_eq!(l.max_connections, LISTENER_MAX_CONNECTIONS);
        assert_eq!(l.max_connections_per_client, None);
        assert_eq!(
            l.connections_per_client(),
            LISTENER_MAX_CONNECTIONS_PER_CLIENT
        );
        assert_eq!(l.timeouts.tls_handshake, LISTENER_TLS_HANDSHAKE_TIMEOUT);
        assert_eq!(l.timeouts.greeting, LISTENER_GREETING_TIMEOUT);
        assert_eq!(l.timeouts.command, LISTENER_COMMAND_TIMEOUT);
        assert_eq!(l.timeouts.data, LISTENER_DATA_TIMEOUT);
        assert_eq!(l.timeouts.data_total, LISTENER_DATA_TOTAL_TIMEOUT);
        assert_eq!(l.next_hop.port, NEXT_HOP_PORT);
        assert_eq!(l.next_hop.tls, NEXT_HOP_TLS);
        assert_eq!(l.next_hop.connect_timeout, NEXT_HOP_CONNECT_TIMEOUT);
        assert_eq!(l.next_hop.command_timeout, NEXT_HOP_COMMAND_TIMEOUT);
        let p = &config.ldap_profiles["p"];
        assert_eq!(p.max_connections, LDAP_POOL);
        assert_eq!(p.timeouts, LdapTimeouts::default());
        assert_eq!(p.timeouts.connect, LDAP_CONNECT_TIMEOUT);
        assert_eq!(p.timeouts.operation, LDAP_OPERATION_TIMEOUT);
        assert_eq!(p.cache, LdapCache::default());
        assert_eq!(p.cache.ttl, LDAP_CACHE_TTL);
        assert_eq!(p.cache.negative_ttl, LDAP_CACHE_NEGATIVE_TTL);
        let q = p.certificate_auth_query.as_ref().unwrap();
        assert_eq!(q.user_id_attribute, USER_ID_ATTRIBUTE);
        let limits = Limits::default();
        assert_eq!(limits.max_message_size, MAX_MESSAGE_SIZE);
        assert_eq!(limits.max_recipients, MAX_RECIPIENTS);
        assert_eq!(limits.max_messages_per_session, MAX_MESSAGES_PER_SESSION);
        let throttle = AuthThrottle::default();
        assert_eq!(throttle.per_client.failures, THROTTLE_PER_CLIENT_FAILURES);
        assert_eq!(throttle.per_user.failures, THROTTLE_PER_USER_FAILURES);
        assert_eq!(throttle.per_client.window, THROTTLE_WINDOW);
        assert_eq!(throttle.per_user.window, THROTTLE_WINDOW);
        let reply = Reply::default();
        assert_eq!(
            (
                reply.code,
                reply.enhanced_code.as_str(),
                reply.text.as_str()
            ),
            (
                ALLOWANCE_REPLY_CODE,
                ALLOWANCE_REPLY_ENHANCED_CODE,
                ALLOWANCE_REPLY_TEXT
            )
        );
    }
}
