//! How the SMTP, TLS, LDAP and lifecycle tests run the built `postern-gateway`: from a
//! configuration file, JSON log (for the decision-line assertions), ready when `/readyz`
//! says so. Also small builders for those configurations.

use std::collections::BTreeMap;

use anyhow::Result;
use postern_config::{self as cfg, GatewayConfig};
use postern_testkit::gateway::{Gateway, GatewayBuilder};

/// How these tests run the gateway: `config`, JSON log, 1 s poll interval, 5 s shutdown
/// grace unless the arguments say otherwise.
pub fn launch(config: &GatewayConfig) -> GatewayBuilder {
    Gateway::with_config(config.to_yaml())
        .default_arg("--log-format", "json")
        .default_arg("--poll-interval", "1s")
        .default_arg("--shutdown-grace", "5s")
}

/// [`launch`], started.
pub fn start_gateway(config: &GatewayConfig) -> Result<Gateway> {
    launch(config).start()
}

// --- configuration builders -----------------------------------------------------------

/// A mail flow policy.
pub fn policy(
    tls: cfg::TlsMode,
    verify: bool,
    require_auth: bool,
    tls_for_auth: bool,
) -> cfg::MailFlowPolicy {
    cfg::MailFlowPolicy {
        action: cfg::PolicyAction::Relay,
        tls,
        verify_client_certificate: verify,
        require_smtp_auth: require_auth,
        require_tls_for_smtp_auth: tls_for_auth,
        limits: cfg::Limits::default(),
        rate_limits: cfg::RateLimits::default(),
        sender_binding: Default::default(),
    }
}

/// A listener on 127.0.0.1:`port` relaying to 127.0.0.1:`next_hop_port` (no TLS to it).
pub fn listener(port: u16, next_hop_port: u16, policy: &str) -> cfg::Listener {
    cfg::Listener {
        address: "127.0.0.1".parse().expect("ip"),
        port,
        hostname: "gw.test.postern.dev".into(),
        implicit_tls: false,
        tls: None,
        auth_profile: None,
        host_access_table: vec![],
        default_policy: policy.into(),
        next_hop: cfg::NextHop {
            host: "127.0.0.1".into(),
            port: next_hop_port,
            tls: cfg::TlsMode::Disabled,
            ca_pem: None,
            connect_timeout: cfg::Duration::from_secs(2),
            command_timeout: cfg::Duration::from_secs(3),
            xclient: false,
        },
        timeouts: cfg::ListenerTimeouts::default(),
        max_connections: 100,
        max_connections_per_client: None,
        proxy_protocol: None,
    }
}

/// A Listener's TLS: `server`'s certificate and key, and `client_ca` as its client CA
/// bundle (version 1 client certificates not allowed).
pub fn listener_tls(
    server: &postern_testkit::pki::Leaf,
    client_ca: Option<String>,
) -> cfg::ListenerTls {
    cfg::ListenerTls {
        certificate_chain_pem: server.cert_pem.clone(),
        private_key_pem: server.key_pem.clone(),
        client_ca_pem: client_ca,
        allow_version1_client_certificates: false,
        revocation: Default::default(),
    }
}

/// A static user.
pub fn user(id: &str, password: Option<&str>, cn: Option<&str>, allowed: bool) -> cfg::StaticUser {
    cfg::StaticUser {
        user_id: id.into(),
        password: password.map(Into::into),
        certificate_cn: cn.map(Into::into),
        allowed,
        addresses: Vec::new(),
    }
}

/// A configuration with one listener `smtp`, one policy `relayed` and optional profile `auth`.
pub fn single(
    listener: cfg::Listener,
    policy: cfg::MailFlowPolicy,
    profile: Option<cfg::AuthProfile>,
) -> GatewayConfig {
    let mut listener = listener;
    if profile.is_some() {
        listener.auth_profile = Some("auth".into());
    }
    GatewayConfig {
        listeners: BTreeMap::from([("smtp".to_owned(), listener)]),
        policies: BTreeMap::from([("relayed".to_owned(), policy)]),
        auth_profiles: profile
            .map(|p| BTreeMap::from([("auth".to_owned(), p)]))
            .unwrap_or_default(),
        ..GatewayConfig::default()
    }
}
