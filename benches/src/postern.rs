//! The Postern gateway under test: the configuration equivalent to the Postfix instance,
//! and how the built `postern-gateway` binary is run with it (optionally under valgrind).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use postern_config::{
    Allowance, AllowanceAction, AuthBackend, AuthProfile, CertificateAuth, CertificateAuthQuery,
    CrlFormat, CrlScope, CrlSource, Duration as D, GatewayConfig, HostAccessEntry, LdapAuthMethod,
    LdapBind, LdapCache, LdapProfile, LdapTimeouts, Limits, Listener, ListenerTimeouts,
    ListenerTls, MailFlowPolicy, NextHop, PolicyAction, ProxyProtocol, Reply, Revocation,
    RevocationMode, SmtpAuth, SmtpAuthQuery, StaticUser, TlsMode,
};
use postern_testkit::gateway::{Gateway, GatewayBuilder};
use postern_testkit::ports::free_port;
use postern_testkit::slapd;

use crate::pki::{CLIENT_CN, Pki};

/// The ports of a Postern instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PosternPorts {
    /// STARTTLS + client certificate, ECDSA PKI.
    pub tls_ecdsa: u16,
    /// STARTTLS + client certificate, RSA PKI.
    pub tls_rsa: u16,
    /// Plaintext relay for 127.0.0.0/8.
    pub plain: u16,
}

impl PosternPorts {
    /// Fresh free ports.
    pub(crate) fn free() -> Self {
        Self {
            tls_ecdsa: free_port(),
            tls_rsa: free_port(),
            plain: free_port(),
        }
    }
}

/// The configuration equivalent to [`crate::postfix`]'s: on the TLS listeners a
/// Certificate profile (Static backend: the bench client's CN is user `bench`), policy
/// `tls: Required`, `verifyClientCertificate`, `requireSmtpAuth` (procedure A of the
/// design); on the plaintext listener relaying for 127.0.0.0/8. All relay to the sink.
/// With `crl_url`, a CRL source for the ECDSA CA's CRL is added.
pub(crate) fn config(
    ecdsa: &Pki,
    rsa: &Pki,
    ports: PosternPorts,
    sink: SocketAddr,
    crl_url: Option<String>,
) -> GatewayConfig {
    let next_hop = NextHop {
        host: sink.ip().to_string(),
        port: sink.port(),
        tls: TlsMode::Disabled,
        ca_pem: None,
        connect_timeout: D::from_secs(5),
        command_timeout: D::from_secs(60),
        xclient: false,
    };
    let limits = Limits {
        max_messages_per_session: 1000,
        ..Limits::default()
    };
    let listener = |port: u16, pki: Option<&Pki>| Listener {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        hostname: "postern.bench.postern.test".into(),
        implicit_tls: false,
        tls: pki.map(|p| ListenerTls {
            certificate_chain_pem: p.server_pem.clone(),
            private_key_pem: p.server_key_pem.clone(),
            client_ca_pem: Some(p.ca_pem.clone()),
            allow_version1_client_certificates: false,
            revocation: Default::default(),
        }),
        auth_profile: pki.map(|_| "bench-certificate".to_owned()),
        host_access_table: if pki.is_some() {
            vec![]
        } else {
            vec![HostAccessEntry {
                sender_group: "RELAYLIST".into(),
                cidrs: vec!["127.0.0.0/8".parse().expect("CIDR")],
                policy: "open-relay".into(),
            }]
        },
        default_policy: if pki.is_some() {
            "certificate".into()
        } else {
            "blocked".into()
        },
        next_hop: next_hop.clone(),
        timeouts: ListenerTimeouts::default(),
        // The idle-connection test holds 10,000 sessions on one listener.
        max_connections: 30_000,
        // All load comes from a few loopback addresses: no per-client cap below the total.
        max_connections_per_client: Some(30_000),
        proxy_protocol: None,
    };
    let mut config = GatewayConfig {
        listeners: BTreeMap::from([
            (
                "tls-ecdsa".to_owned(),
                listener(ports.tls_ecdsa, Some(ecdsa)),
            ),
            ("tls-rsa".to_owned(), listener(ports.tls_rsa, Some(rsa))),
            ("plain".to_owned(), listener(ports.plain, None)),
        ]),
        policies: BTreeMap::from([
            (
                "certificate".to_owned(),
                MailFlowPolicy {
                    action: PolicyAction::Relay,
                    tls: TlsMode::Required,
                    verify_client_certificate: true,
                    require_smtp_auth: true,
                    require_tls_for_smtp_auth: false,
                    limits: limits.clone(),
                    rate_limits: Default::default(),
                    sender_binding: Default::default(),
                },
            ),
            (
                "open-relay".to_owned(),
                MailFlowPolicy {
                    action: PolicyAction::Relay,
                    tls: TlsMode::Disabled,
                    verify_client_certificate: false,
                    require_smtp_auth: false,
                    require_tls_for_smtp_auth: false,
                    limits: limits.clone(),
                    rate_limits: Default::default(),
                    sender_binding: Default::default(),
                },
            ),
            (
                "blocked".to_owned(),
                MailFlowPolicy {
                    action: PolicyAction::Reject,
                    tls: TlsMode::Disabled,
                    verify_client_certificate: false,
                    require_smtp_auth: false,
                    require_tls_for_smtp_auth: false,
                    limits,
                    rate_limits: Default::default(),
                    sender_binding: Default::default(),
                },
            ),
        ]),
        auth_profiles: BTreeMap::from([(
            "bench-certificate".to_owned(),
            AuthProfile {
                certificate: Some(CertificateAuth {
                    required_policies: Vec::new(),
                    required_ekus: Vec::new(),

                    backend: AuthBackend::Static {
                        users: vec![StaticUser {
                            user_id: "bench".into(),
                            password: None,
                            certificate_cn: Some(CLIENT_CN.into()),
                            allowed: true,
                            addresses: Vec::new(),
                        }],
                    },
                }),
                smtp_auth: None,
            },
        )]),
        ..GatewayConfig::default()
    };
    if let Some(url) = crl_url {
        config.crl_sources.insert(
            "bench-ca".into(),
            CrlSource {
                enabled: true,
                format: CrlFormat::Asn1,
                primary_url: Some(url),
                secondary_url: None,
                discovery: None,
                interval: D::from_secs(3600),
                applies_to: vec![CrlScope::InboundSmtpTls],
                failure_policy: Default::default(),
                max_size: postern_config::DEFAULT_CRL_MAX_SIZE,
            },
        );
    }
    config
}

/// The PROXY protocol section's gateways: [`config`] where every listener admits only
/// the clients of `clients` by its host access table (a `CLIENTS` row giving the TLS
/// listeners the certificate policy, the plaintext listener's relay row) and refuses
/// everyone else (`blocked`), so a session gets through only when the gateway sees the
/// address the table names. With `behind_proxy`, every listener takes a PROXY header
/// from 127.0.0.0/8 (the load client playing the load balancer).
pub(crate) fn proxy_config(
    ecdsa: &Pki,
    rsa: &Pki,
    ports: PosternPorts,
    sink: SocketAddr,
    clients: &[&str],
    behind_proxy: bool,
) -> GatewayConfig {
    let mut config = config(ecdsa, rsa, ports, sink, None);
    let cidrs: Vec<_> = clients.iter().map(|c| c.parse().expect("CIDR")).collect();
    for listener in config.listeners.values_mut() {
        if listener.tls.is_some() {
            listener.host_access_table = vec![HostAccessEntry {
                sender_group: "CLIENTS".into(),
                cidrs: cidrs.clone(),
                policy: listener.default_policy.clone(),
            }];
            listener.default_policy = "blocked".into();
        } else {
            for row in &mut listener.host_access_table {
                row.cidrs = cidrs.clone();
            }
        }
        if behind_proxy {
            listener.proxy_protocol = Some(ProxyProtocol {
                trusted_cidrs: vec!["127.0.0.0/8".parse().expect("CIDR")],
            });
        }
    }
    config
}

/// The OCSP section's gateway: [`config`] with the ECDSA listener checking the client
/// certificate's revocation with OCSP only (`mode: OcspOnly`, fail closed), asking
/// `responder_url`.
pub(crate) fn ocsp_config(
    ecdsa: &Pki,
    rsa: &Pki,
    ports: PosternPorts,
    sink: SocketAddr,
    responder_url: String,
) -> GatewayConfig {
    let mut config = config(ecdsa, rsa, ports, sink, None);
    let tls = config
        .listeners
        .get_mut("tls-ecdsa")
        .and_then(|l| l.tls.as_mut())
        .expect("the ECDSA TLS listener");
    let mut revocation = Revocation {
        mode: RevocationMode::OcspOnly,
        ..Revocation::default()
    };
    revocation.ocsp.responder_url = responder_url;
    tls.revocation = revocation;
    config
}

/// How the benchmark runs the gateway: `bin` with `config`, its files in `dir` under
/// `name` (configuration in `<name>-config/`, log `<name>.log`, CRL cache
/// `<name>-crl-cache/`), text log, 1 s shutdown grace; stopped gracefully on drop (a
/// profiling wrapper writes its results on exit).
pub(crate) fn launch(bin: &Path, dir: &Path, name: &str, config: &GatewayConfig) -> GatewayBuilder {
    Gateway::with_config(config.to_yaml())
        .bin(bin)
        .files_in(dir, name)
        .default_arg("--shutdown-grace", "1s")
        .default_arg("--log-format", "text")
        .default_arg(
            "--crl-cache-dir",
            &dir.join(format!("{name}-crl-cache")).display().to_string(),
        )
        .stop_within(Duration::from_secs(10))
        .stop_on_drop()
}

/// Wait until the CRL source `source` of `gw` has `entries` entries in force; returns
/// how long that took and the source's status (`GET /crl/<source>`).
pub(crate) fn wait_crl(
    gw: &Gateway,
    source: &str,
    entries: u64,
    timeout: Duration,
) -> Result<(Duration, serde_json::Value)> {
    gw.wait_crl_within(source, timeout, |v| v["entries"].as_u64() == Some(entries))
}

/// What the OCSP client of a gateway has done for one responder (its `/metrics`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OcspCounts {
    /// Requests sent, whatever their result (`postern_ocsp_requests_total`).
    pub requests: u64,
    /// Lookups answered from the cache (`postern_ocsp_cache_hits_total`).
    pub cache_hits: u64,
}

/// The OCSP counters of `gw` for `responder`.
pub(crate) fn ocsp_counts(gw: &Gateway, responder: &str) -> Result<OcspCounts> {
    let (status, text) = gw.http_get("/metrics")?;
    if status != 200 {
        anyhow::bail!("GET /metrics answered {status}");
    }
    let sum = |family: &str| -> u64 {
        let prefix = format!("{family}{{responder=\"{responder}\"");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Ok(OcspCounts {
        requests: sum("postern_ocsp_requests_total"),
        cache_hits: sum("postern_ocsp_cache_hits_total"),
    })
}

/// The LDAP section's gateway: [`config`] with the certificate profile's backend moved
/// to `slapd` (the certificate's CN finds the entry, its `uid` is the user), and one
/// more listener on `auth_port` where the client authenticates with SMTP AUTH against
/// the same directory (user search, BIND as the user, allowance search), after
/// STARTTLS without a client certificate. `warm`: the default result cache; otherwise
/// `cache: {ttl: 0s, negativeTtl: 0s}` (every decision goes to the directory).
pub(crate) fn ldap_config(
    ecdsa: &Pki,
    rsa: &Pki,
    ports: PosternPorts,
    auth_port: u16,
    sink: SocketAddr,
    ldap_url: String,
    warm: bool,
) -> GatewayConfig {
    let mut config = config(ecdsa, rsa, ports, sink, None);
    config.ldap_profiles.insert(
        "bench-ldap".into(),
        LdapProfile {
            servers: vec![ldap_url],
            start_tls: false,
            ca_pem: None,
            bind: Some(LdapBind {
                dn: slapd::SERVICE_DN.into(),
                password: slapd::SERVICE_PASSWORD.into(),
            }),
            base_dn: slapd::BASE_DN.into(),
            timeouts: LdapTimeouts::default(),
            max_connections: 8,
            cache: if warm {
                LdapCache::default()
            } else {
                LdapCache {
                    ttl: D::from_secs(0),
                    negative_ttl: D::from_secs(0),
                }
            },
            certificate_auth_query: Some(CertificateAuthQuery {
                name: "bench-cert".into(),
                filter: "(&(objectClass=inetOrgPerson)(cn={cn}))".into(),
                user_id_attribute: "uid".into(),
            }),
            smtp_auth_query: Some(SmtpAuthQuery {
                name: "bench-auth".into(),
                filter: "(&(objectClass=inetOrgPerson)(uid={u}))".into(),
                method: LdapAuthMethod::Bind,
                allowance_filter: Some("(&(objectClass=inetOrgPerson)(uid={u}))".into()),
            }),
            mail_attributes: postern_config::sender::default_mail_attributes(),
        },
    );
    let ldap = || AuthBackend::Ldap {
        ldap_profile: "bench-ldap".into(),
    };
    config.auth_profiles.insert(
        "bench-certificate".into(),
        AuthProfile {
            certificate: Some(CertificateAuth {
                required_policies: Vec::new(),
                required_ekus: Vec::new(),
                backend: ldap(),
            }),
            smtp_auth: None,
        },
    );
    config.auth_profiles.insert(
        "bench-smtp-auth".into(),
        AuthProfile {
            certificate: None,
            smtp_auth: Some(SmtpAuth {
                profile: "bench-smtp-auth".into(),
                backend: ldap(),
                allowance: Some(Allowance {
                    action: AllowanceAction::Reject,
                    response: Reply::default(),
                }),
                throttle: Default::default(),
            }),
        },
    );
    let mut policy = config.policies["certificate"].clone();
    policy.verify_client_certificate = false;
    policy.require_tls_for_smtp_auth = true;
    config.policies.insert("smtp-auth".into(), policy);
    let mut listener = config.listeners["tls-ecdsa"].clone();
    listener.port = auth_port;
    listener.auth_profile = Some("bench-smtp-auth".into());
    listener.default_policy = "smtp-auth".into();
    if let Some(tls) = &mut listener.tls {
        tls.client_ca_pem = None;
    }
    config.listeners.insert("ldap-auth".into(), listener);
    config
}

/// [`ldap_config`] with both profiles on the Static backend (the client certificate's CN
/// and the directory's user and password as static users): the same sessions without a
/// directory, the baseline of the latency LDAP adds.
pub(crate) fn without_directory(
    mut config: GatewayConfig,
    user: &str,
    password: &str,
) -> GatewayConfig {
    let users = vec![StaticUser {
        user_id: user.into(),
        password: Some(password.into()),
        certificate_cn: Some(CLIENT_CN.into()),
        allowed: true,
        addresses: Vec::new(),
    }];
    for profile in config.auth_profiles.values_mut() {
        if let Some(c) = &mut profile.certificate {
            c.backend = AuthBackend::Static {
                users: users.clone(),
            };
        }
        if let Some(a) = &mut profile.smtp_auth {
            a.backend = AuthBackend::Static {
                users: users.clone(),
            };
        }
    }
    config.ldap_profiles.clear();
    config
}
