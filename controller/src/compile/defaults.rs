//! Defaults the compiler fills in for omitted optional fields. They match the gateway
//! configuration's own serde defaults (a unit test holds them together) and the CRD docs.

use postern_gateway::config::{Duration, TlsMode};

/// `Listener.spec.address`.
pub const LISTENER_ADDRESS: &str = "0.0.0.0";
/// `Listener.spec.maxConnections`.
pub const LISTENER_MAX_CONNECTIONS: u32 = 1000;
/// `Listener.spec.timeouts.tlsHandshake`.
pub const LISTENER_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `Listener.spec.timeouts.greeting`.
pub const LISTENER_GREETING_TIMEOUT: Duration = Duration::from_secs(30);
/// `Listener.spec.timeouts.command`.
pub const LISTENER_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// `Listener.spec.timeouts.data`.
pub const LISTENER_DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// `Listener.spec.timeouts.dataTotal`.
pub const LISTENER_DATA_TOTAL_TIMEOUT: Duration = Duration::from_secs(1800);
/// `Listener.spec.nextHop.port`.
pub const NEXT_HOP_PORT: u16 = 25;
/// `Listener.spec.nextHop.tls`.
pub const NEXT_HOP_TLS: TlsMode = TlsMode::Preferred;
/// `Listener.spec.nextHop.timeouts.connect`.
pub const NEXT_HOP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `Listener.spec.nextHop.timeouts.command`.
pub const NEXT_HOP_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `LdapProfile.spec.timeouts.connect`.
pub const LDAP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `LdapProfile.spec.timeouts.operation`.
pub const LDAP_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// `LdapProfile.spec.pool.maxConnections`.
pub const LDAP_POOL: u32 = 8;
/// `LdapProfile.spec.cache.ttl`.
pub const LDAP_CACHE_TTL: Duration = Duration::from_secs(60);
/// `LdapProfile.spec.cache.negativeTtl`.
pub const LDAP_CACHE_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// `LdapProfile.spec.certificateAuthQuery.userIdAttribute`.
pub const USER_ID_ATTRIBUTE: &str = "uid";
/// `SmtpAuthProfile.spec.ldap.throttle.perClient.failures`.
pub const THROTTLE_PER_CLIENT_FAILURES: u32 = 10;
/// `SmtpAuthProfile.spec.ldap.throttle.perUser.failures`.
pub const THROTTLE_PER_USER_FAILURES: u32 = 5;
/// `SmtpAuthProfile.spec.ldap.throttle.*.window`.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(600);
/// `MailFlowPolicy.spec.limits.maxMessageSize` (10Mi).
pub const MAX_MESSAGE_SIZE: u64 = 10 * 1024 * 1024;
/// `MailFlowPolicy.spec.limits.maxRecipients`.
pub const MAX_RECIPIENTS: u32 = 100;
/// `MailFlowPolicy.spec.limits.maxMessagesPerSession`.
pub const MAX_MESSAGES_PER_SESSION: u32 = 100;

#[cfg(test)]
mod tests {
    use postern_gateway::config::{
        AuthThrottle, GatewayConfig, LdapCache, LdapTimeouts, Limits, ListenerTimeouts,
    };

    use super::*;

    /// The gateway's serde defaults, read from a minimal document, must equal ours.
    #[test]
    fn match_the_gateway_defaults() {
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
            postern_gateway::config::DEFAULT_MAX_CONNECTIONS_PER_CLIENT
        );
        assert_eq!(l.timeouts, ListenerTimeouts::default());
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
    }
}
