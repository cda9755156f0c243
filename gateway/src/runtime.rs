//! Everything a configuration needs at run time, prebuilt: TLS server configurations per
//! listener and policy, host access tables, authentication backends and next hops.
//!
//! A [`Runtime`] is built completely before it replaces the one in force, and sessions
//! hold an `Arc` of their listener's runtime, so a reload never changes the rules under a
//! session in progress. A configuration that does not validate is refused as a whole; a
//! Listener whose parts cannot be built is left out and listed in [`Runtime::refused`],
//! so one broken Listener never holds back the rest of the configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rustls::ServerConfig;

use crate::auth::{AuthBuildError, AuthRuntime, AuthThrottles, build_auth_profile};
use crate::ldap::LdapDirectories;
use crate::metrics::Metrics;
use crate::relay::{NextHopRuntime, build_next_hop};
use crate::tls::verifier::VerifierBuildError;
use crate::tls::{ClientVerifier, RevocationChecker, server_config};
use postern_config::protocol::{ListenerRefusal, ListenerRefusalReason, ListenerServing};
use postern_config::{GatewayConfig, MailFlowPolicy, ValidationErrors};

/// Shared services the runtime is built with.
#[derive(Debug, Clone)]
pub struct Services {
    /// Metric families.
    pub metrics: Metrics,
    /// Revocation answers for client certificates (the CRL index, or none).
    pub revocation: Arc<dyn RevocationChecker>,
    /// Failed-AUTH counts per authentication profile, kept from one configuration to
    /// the next.
    pub auth_throttles: AuthThrottles,
    /// The LDAP directories (pools, caches, server health), kept from one configuration
    /// to the next while their LDAP profile is unchanged.
    pub ldap: LdapDirectories,
    /// The OCSP client (cache and metrics), for listeners whose `tls.revocation` asks
    /// OCSP; kept from one configuration to the next.
    pub ocsp: Arc<crate::ocsp::OcspClient>,
    /// Messages and recipients counted per policy (`rateLimits`), kept from one
    /// configuration to the next.
    pub rate_limits: crate::rate_limit::RateLimiters,
}

/// A configuration, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    /// Increments with every applied configuration.
    pub generation: u64,
    /// The configuration's content hash.
    pub hash: String,
    /// Listeners by name: those of the configuration that run, and the previous version
    /// of a refused one where that keeps serving.
    pub listeners: BTreeMap<String, Arc<ListenerRuntime>>,
    /// Listeners of the configuration that do not run as configured, by name (built:
    /// those that could not be built; installed: also those whose address could not be
    /// bound, with what serves instead).
    pub refused: Vec<ListenerRefusal>,
}

/// One listener, ready to serve.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// Listener name.
    pub name: String,
    /// Bound address.
    pub address: SocketAddr,
    /// Greeting and `Received` name.
    pub hostname: String,
    /// SMTPS.
    pub implicit_tls: bool,
    /// Host access table, in order.
    pub access: Vec<AccessRow>,
    /// Policy for clients no row matches.
    pub default_policy: Arc<PolicyRuntime>,
    /// Authentication, when the listener has a profile.
    pub auth: Option<Arc<AuthRuntime>>,
    /// Where mail goes.
    pub next_hop: Arc<NextHopRuntime>,
    /// Deadline of a TLS handshake (implicit TLS or STARTTLS), at most `command_timeout`.
    pub tls_handshake_timeout: Duration,
    /// Deadline for `EHLO`/`HELO` after the greeting (or after a STARTTLS handshake), at
    /// most `command_timeout`.
    pub greeting_timeout: Duration,
    /// Idle timeout between commands.
    pub command_timeout: Duration,
    /// Idle timeout during DATA.
    pub data_timeout: Duration,
    /// Deadline of the whole DATA phase.
    pub data_total_timeout: Duration,
    /// Connection cap.
    pub max_connections: u32,
    /// Connection cap per client (IPv4 address or IPv6 /64).
    pub max_connections_per_client: u32,
    /// PROXY protocol: the peers that must send a header (and only they may).
    pub proxy_protocol: Option<postern_config::ProxyProtocol>,
}

/// One row of a host access table.
#[derive(Debug)]
pub struct AccessRow {
    /// Sender group (logs, metrics).
    pub sender_group: String,
    /// Networks.
    pub cidrs: Vec<IpNet>,
    /// The policy applied.
    pub policy: Arc<PolicyRuntime>,
}

/// A mail flow policy as applied on one listener.
#[derive(Debug)]
pub struct PolicyRuntime {
    /// Policy name.
    pub name: String,
    /// The settings.
    pub policy: MailFlowPolicy,
    /// TLS server configuration (absent when this listener cannot do TLS under it).
    pub tls: Option<Arc<ServerConfig>>,
    /// The client certificate verifier, when client certificates are asked for.
    pub verifier: Option<Arc<ClientVerifier>>,
    /// `rateLimits`, counting in the process-wide state of this policy.
    pub rate: crate::rate_limit::RateLimiter,
}

impl ListenerRuntime {
    /// The sender group and policy for a client address (first matching row wins).
    pub fn policy_for(&self, ip: IpAddr) -> (&str, &Arc<PolicyRuntime>) {
        let ip = ip.to_canonical();
        self.access
            .iter()
            .find(|row| row.cidrs.iter().any(|net| net.contains(&ip)))
            .map(|row| (row.sender_group.as_str(), &row.policy))
            .unwrap_or(("DEFAULT", &self.default_policy))
    }
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration does not validate.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// TLS material could not be loaded.
    #[error("listeners.{listener}: {detail}")]
    Tls {
        /// Listener.
        listener: String,
        /// What failed.
        detail: String,
    },
    /// The next hop settings could not be built.
    #[error("listeners.{listener}: {detail}")]
    NextHop {
        /// Listener.
        listener: String,
        /// What failed.
        detail: String,
    },
}

/// Validate and build `config`: `Err` when it does not validate; otherwise every
/// Listener that can be built, and the others in [`Runtime::refused`] (not served until
/// the server decides whether a previous version keeps serving).
pub fn build(
    config: &GatewayConfig,
    generation: u64,
    services: &Services,
) -> Result<Runtime, BuildError> {
    postern_config::validate(config)?;
    // A profile that cannot be built refuses the Listeners using it, not the rest.
    let mut auth_profiles = BTreeMap::new();
    let mut auth_failures: BTreeMap<&str, AuthBuildError> = BTreeMap::new();
    for (name, profile) in &config.auth_profiles {
        match build_auth_profile(
            config,
            name,
            profile,
            &services.auth_throttles,
            &services.ldap,
        ) {
            Ok(rt) => {
                auth_profiles.insert(name.clone(), Arc::new(rt));
            }
            Err(e) => {
                auth_failures.insert(name.as_str(), e);
            }
        }
    }
    let mut listeners = BTreeMap::new();
    let mut refused = Vec::new();
    for (name, l) in &config.listeners {
        let failed_profile = l.auth_profile.as_deref().and_then(|p| auth_failures.get(p));
        let built = match failed_profile {
            Some(e) => Err(e.to_string()),
            None => {
                build_listener(config, name, l, &auth_profiles, services).map_err(|e| e.to_string())
            }
        };
        match built {
            Ok(rt) => {
                listeners.insert(name.clone(), Arc::new(rt));
            }
            Err(e) => refused.push(ListenerRefusal {
                listener: name.clone(),
                address: SocketAddr::new(l.address, l.port).to_string(),
                reason: ListenerRefusalReason::BuildFailed,
                message: e,
                serving: ListenerServing::NotServed,
            }),
        }
    }
    Ok(Runtime {
        generation,
        hash: config.hash(),
        listeners,
        refused,
    })
}

fn build_listener(
    config: &GatewayConfig,
    name: &str,
    l: &postern_config::Listener,
    auth_profiles: &BTreeMap<String, Arc<AuthRuntime>>,
    services: &Services,
) -> Result<ListenerRuntime, BuildError> {
    let tls_err = |detail: String| BuildError::Tls {
        listener: name.to_owned(),
        detail,
    };
    let key = match &l.tls {
        Some(tls) => Some(Arc::new(
            postern_config::pem::certified_key(
                &tls.certificate_chain_pem,
                &tls.private_key_pem,
                &crate::crypto::provider(),
            )
            .map_err(|e| tls_err(format!("server certificate: {e}")))?,
        )),
        None => None,
    };
    let auth = l
        .auth_profile
        .as_ref()
        .and_then(|p| auth_profiles.get(p))
        .cloned();
    let profile_wants_cert = auth.as_ref().is_some_and(|a| a.certificate.is_some());
    // One PolicyRuntime per policy this listener uses.
    let mut built: BTreeMap<&str, Arc<PolicyRuntime>> = BTreeMap::new();
    let mut policy = |pname: &str| -> Result<Arc<PolicyRuntime>, BuildError> {
        if let Some(p) = built.get(pname) {
            return Ok(p.clone());
        }
        let p = config
            .policies
            .get(pname)
            .expect("validated: policy exists");
        let wants_cert = profile_wants_cert || p.verify_client_certificate;
        let tls_possible = l.implicit_tls || p.tls != postern_config::TlsMode::Disabled;
        let verifier = match (&l.tls, wants_cert && tls_possible) {
            (Some(tls), true) => {
                let ca = tls.client_ca_pem.as_deref().ok_or_else(|| {
                    tls_err(
                        "client certificates are asked for but no client CA bundle is set".into(),
                    )
                })?;
                Some(Arc::new(
                    ClientVerifier::new(
                        ca,
                        services.revocation.clone(),
                        p.verify_client_certificate,
                    )
                    .map_err(|e: VerifierBuildError| tls_err(e.to_string()))?
                    .allow_version1(tls.allow_version1_client_certificates)
                    .revocation_policy(Some(crate::tls::RevocationPolicy {
                        settings: tls.revocation.clone(),
                        client: services.ocsp.clone(),
                    })),
                ))
            }
            _ => None,
        };
        let tls = match (&key, tls_possible) {
            (Some(key), true) => Some(
                server_config(key.clone(), verifier.clone())
                    .map_err(|e| tls_err(format!("TLS configuration: {e}")))?,
            ),
            _ => None,
        };
        let rt = Arc::new(PolicyRuntime {
            name: pname.to_owned(),
            policy: p.clone(),
            tls,
            verifier,
            rate: services.rate_limits.limiter(pname, &p.rate_limits),
        });
        built.insert(p_name_static(config, pname), rt.clone());
        Ok(rt)
    };
    let default_policy = policy(&l.default_policy)?;
    let mut access = Vec::new();
    for row in &l.host_access_table {
        access.push(AccessRow {
            sender_group: row.sender_group.clone(),
            cidrs: row.cidrs.clone(),
            policy: policy(&row.policy)?,
        });
    }
    let next_hop =
        build_next_hop(&l.next_hop, &l.hostname, services.revocation.clone()).map_err(|e| {
            BuildError::NextHop {
                listener: name.to_owned(),
                detail: e.to_string(),
            }
        })?;
    Ok(ListenerRuntime {
        name: name.to_owned(),
        address: SocketAddr::new(l.address, l.port),
        hostname: l.hostname.clone(),
        implicit_tls: l.implicit_tls,
        access,
        default_policy,
        auth,
        next_hop: Arc::new(next_hop),
        // Both are meant as shorter deadlines than the command timeout; a longer value
        // could only ever be cut by it, so the shorter one is what applies.
        tls_handshake_timeout: l.timeouts.tls_handshake.get().min(l.timeouts.command.get()),
        greeting_timeout: l.timeouts.greeting.get().min(l.timeouts.command.get()),
        command_timeout: l.timeouts.command.get(),
        data_timeout: l.timeouts.data.get(),
        data_total_timeout: l.timeouts.data_total.get(),
        max_connections: l.max_connections,
        max_connections_per_client: l.connections_per_client(),
        proxy_protocol: l.proxy_protocol.clone(),
    })
}

/// The policy name borrowed from the config (so the memo map can key on `&str`).
fn p_name_static<'a>(config: &'a GatewayConfig, name: &str) -> &'a str {
    config
        .policies
        .get_key_value(name)
        .map(|(k, _)| k.as_str())
        .expect("validated: policy exists")
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::ldap::LdapMetrics;
    use crate::tls::NoRevocation;

    fn config(hostname: &str, ldap_port: u16) -> GatewayConfig {
        let yaml = format!(
            r#"apiVersion: postern.dev/gateway/v1
listeners:
  smtp:
    address: 127.0.0.1
    port: 2525
    hostname: {hostname}
    authProfile: ldap-auth
    defaultPolicy: open
    nextHop: {{host: 127.0.0.1, port: 2526}}
policies:
  open: {{action: Relay, tls: Disabled}}
authProfiles:
  ldap-auth:
    smtpAuth:
      profile: ldap-auth
      backend: {{type: Ldap, ldapProfile: corp}}
ldapProfiles:
  corp:
    servers: ["ldap://127.0.0.1:{ldap_port}"]
    baseDn: dc=example,dc=org
    smtpAuthQuery: {{name: auth, filter: "(uid={{u}})"}}
"#
        );
        GatewayConfig::from_yaml(&yaml, "test").unwrap()
    }

    /// A reload builds the next configuration with the same services: an unchanged
    /// LdapProfile keeps its directory (pool, cache, which server is down) while the
    /// configuration in force uses it; a changed one gets a new directory.
    #[test]
    fn a_reload_keeps_the_directory_of_an_unchanged_ldap_profile() {
        let services = Services {
            metrics: Metrics::register(&mut Registry::default()),
            revocation: Arc::new(NoRevocation),
            auth_throttles: AuthThrottles::default(),
            ldap: LdapDirectories::new(LdapMetrics::new()),
            ocsp: crate::ocsp::OcspClient::new(Default::default()).unwrap(),
            rate_limits: Default::default(),
        };
        let first = build(&config("mx.test", 1), 1, &services).unwrap();
        let directory = services.ldap.all()["corp"].clone();
        let second = build(&config("reloaded.test", 1), 2, &services).unwrap();
        assert!(Arc::ptr_eq(&directory, &services.ldap.all()["corp"]));
        drop(first);
        let third = build(&config("reloaded.test", 2), 3, &services).unwrap();
        assert!(!Arc::ptr_eq(&directory, &services.ldap.all()["corp"]));
        drop((second, directory));
        assert_eq!(
            services.ldap.all().len(),
            1,
            "the old directory went with its users"
        );
        drop(third);
        assert!(services.ldap.all().is_empty());
    }
}
