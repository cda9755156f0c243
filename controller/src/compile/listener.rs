//! `Listener` → `listeners.<name>`.

use std::net::IpAddr;

use ipnet::IpNet;
use postern_config::defaults;
use postern_config::{HostAccessEntry, Listener, ListenerTimeouts, ListenerTls, NextHop, pem};
use postern_crds::ListenerSpec;

use super::inputs::{Diags, Inputs, duration, pem_text};
use super::report::{Kind, ObjectKey, Reason};
use super::secret_use::SecretUse;
use super::{Index, tls_mode};

/// Render one Listener. `None` when it has errors (they are in `d`). `deps` gets the
/// objects it needs in force, with the field that refers to them.
pub(crate) fn render(
    spec: &ListenerSpec,
    index: &Index<'_>,
    inputs: &Inputs<'_>,
    deps: &mut Vec<(ObjectKey, String)>,
    d: &mut Diags,
) -> Option<Listener> {
    let address = match spec.address.as_deref().map(str::parse::<IpAddr>) {
        None => Some(defaults::LISTENER_ADDRESS),
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            let address_text = spec.address.as_deref().unwrap_or_default();
            d.error(
                "spec.address",
                Reason::InvalidValue,
                format!("{address_text:?} is not an IP address (use 0.0.0.0 for every IPv4 address, :: for IPv6)"),
            );
            None
        }
    };
    let mut policy_ref = |field: String, name: &str, d: &mut Diags| {
        if index.mail_flow_policies.contains_key(name)
            || index.is_unreadable(Kind::MailFlowPolicy, name)
        {
            deps.push((ObjectKey::new(Kind::MailFlowPolicy, name), field));
        } else {
            d.error(
                field,
                Reason::RefNotFound,
                format!("MailFlowPolicy {name:?} not found"),
            );
        }
    };
    policy_ref(
        "spec.defaultMailFlowPolicyRef".into(),
        &spec.default_mail_flow_policy_ref.name,
        d,
    );
    let mut host_access_table = Vec::new();
    for (i, row) in spec.host_access_table.iter().enumerate() {
        policy_ref(
            format!("spec.hostAccessTable[{i}].mailFlowPolicyRef"),
            &row.mail_flow_policy_ref.name,
            d,
        );
        let cidrs = parse_cidrs(&format!("spec.hostAccessTable[{i}].cidrs"), &row.cidrs, d);
        if row.cidrs.is_empty() {
            d.error(
                format!("spec.hostAccessTable[{i}].cidrs"),
                Reason::InvalidValue,
                "at least one CIDR is required",
            );
        }
        host_access_table.push(HostAccessEntry {
            sender_group: row.sender_group.clone(),
            cidrs,
            policy: row.mail_flow_policy_ref.name.clone(),
        });
    }
    if let Some(p) = &spec.smtp_auth_profile_ref {
        if index.smtp_auth_profiles.contains_key(p.name.as_str())
            || index.is_unreadable(Kind::SmtpAuthProfile, &p.name)
        {
            deps.push((
                ObjectKey::new(Kind::SmtpAuthProfile, &p.name),
                "spec.smtpAuthProfileRef".into(),
            ));
        } else {
            d.error(
                "spec.smtpAuthProfileRef",
                Reason::RefNotFound,
                format!("SmtpAuthProfile {:?} not found", p.name),
            );
        }
    }
    let tls = spec.tls.as_ref().and_then(|tls| {
        let field = "spec.tls.certificateSecretRef";
        let secret_name = &tls.certificate_secret_ref.name;
        let chain_and_key = match inputs.secret(field, secret_name, SecretUse::Tls, d) {
            None => None,
            Some(secret) => {
                if let Some(t) = secret.type_.as_deref()
                    && t != "kubernetes.io/tls"
                {
                    d.warning(
                        field,
                        Reason::Ignored,
                        format!("Secret {secret_name:?} has type {t:?}; a kubernetes.io/tls Secret is expected (its tls.crt and tls.key are used)"),
                    );
                }
                let mut get = |key: &str| match secret.data.get(key) {
                    Some(v) => pem_text(field, &format!("Secret {secret_name:?} key {key:?}"), v.clone(), d),
                    None => {
                        d.error(
                            field,
                            Reason::SecretKeyMissing,
                            format!("Secret {secret_name:?} has no key {key:?} (a kubernetes.io/tls Secret holds tls.crt and tls.key)"),
                        );
                        None
                    }
                };
                let chain = get("tls.crt");
                let key = get("tls.key");
                chain.zip(key)
            }
        };
        if let Some((chain, key)) = &chain_and_key
            && let Err(e) = pem::certified_key(chain, key, &rustls::crypto::ring::default_provider())
        {
            let reason = match e {
                pem::PemError::KeyMismatch | pem::PemError::NoKey | pem::PemError::UnusableKey(_) => Reason::KeyMismatch,
                _ => Reason::InvalidCertificate,
            };
            let which = if reason == Reason::KeyMismatch { "tls.key" } else { "tls.crt" };
            d.error(field, reason, format!("Secret {secret_name:?} {which}: {e}"));
        }
        let client_ca = tls
            .client_ca_secret_ref
            .as_ref()
            .and_then(|r| inputs.secret_ca_certificates("spec.tls.clientCaSecretRef", r, d));
        if tls.allow_version1_client_certificates && tls.client_ca_secret_ref.is_none() {
            d.warning(
                "spec.tls.allowVersion1ClientCertificates",
                Reason::Ignored,
                "has no effect without clientCaSecretRef: no client certificate is verified on this listener",
            );
        }
        let (chain, key) = chain_and_key?;
        Some(ListenerTls {
            certificate_chain_pem: chain,
            private_key_pem: key,
            client_ca_pem: client_ca,
            allow_version1_client_certificates: tls.allow_version1_client_certificates,
            revocation: super::revocation::render(tls.revocation.as_ref(), d),
        })
    });
    let hop = &spec.next_hop;
    let hop_timeouts = hop.timeouts.as_ref();
    let next_hop = NextHop {
        host: hop.host.clone(),
        port: hop.port.unwrap_or(defaults::NEXT_HOP_PORT),
        tls: hop.tls.map(tls_mode).unwrap_or(defaults::NEXT_HOP_TLS),
        ca_pem: hop
            .ca_bundle
            .as_ref()
            .and_then(|ca| inputs.ca_bundle("spec.nextHop.caBundle", ca, d)),
        connect_timeout: duration(
            "spec.nextHop.timeouts.connect",
            hop_timeouts.and_then(|t| t.connect.as_ref()),
            defaults::NEXT_HOP_CONNECT_TIMEOUT,
            d,
        ),
        command_timeout: duration(
            "spec.nextHop.timeouts.command",
            hop_timeouts.and_then(|t| t.command.as_ref()),
            defaults::NEXT_HOP_COMMAND_TIMEOUT,
            d,
        ),
        xclient: hop.xclient.unwrap_or(false),
    };
    let timeouts = spec.timeouts.as_ref();
    let timeouts = ListenerTimeouts {
        tls_handshake: duration(
            "spec.timeouts.tlsHandshake",
            timeouts.and_then(|t| t.tls_handshake.as_ref()),
            defaults::LISTENER_TLS_HANDSHAKE_TIMEOUT,
            d,
        ),
        greeting: duration(
            "spec.timeouts.greeting",
            timeouts.and_then(|t| t.greeting.as_ref()),
            defaults::LISTENER_GREETING_TIMEOUT,
            d,
        ),
        command: duration(
            "spec.timeouts.command",
            timeouts.and_then(|t| t.command.as_ref()),
            defaults::LISTENER_COMMAND_TIMEOUT,
            d,
        ),
        data: duration(
            "spec.timeouts.data",
            timeouts.and_then(|t| t.data.as_ref()),
            defaults::LISTENER_DATA_TIMEOUT,
            d,
        ),
        data_total: duration(
            "spec.timeouts.dataTotal",
            timeouts.and_then(|t| t.data_total.as_ref()),
            defaults::LISTENER_DATA_TOTAL_TIMEOUT,
            d,
        ),
    };
    let proxy_protocol = spec.proxy_protocol.as_ref().map(|pp| {
        let trusted_cidrs = parse_cidrs("spec.proxyProtocol.trustedCidrs", &pp.trusted_cidrs, d);
        if pp.trusted_cidrs.is_empty() {
            d.error(
                "spec.proxyProtocol.trustedCidrs",
                Reason::InvalidValue,
                "at least one CIDR is required (the load balancers' networks)",
            );
        }
        postern_config::ProxyProtocol { trusted_cidrs }
    });
    if d.has_errors() {
        return None;
    }
    Some(Listener {
        address: address?,
        port: spec.port,
        hostname: spec.hostname.clone(),
        implicit_tls: spec.implicit_tls,
        tls,
        auth_profile: spec.smtp_auth_profile_ref.as_ref().map(|p| p.name.clone()),
        host_access_table,
        default_policy: spec.default_mail_flow_policy_ref.name.clone(),
        next_hop,
        timeouts,
        max_connections: spec
            .max_connections
            .unwrap_or(defaults::LISTENER_MAX_CONNECTIONS),
        max_connections_per_client: spec.max_connections_per_client,
        proxy_protocol,
    })
}

/// Each of `texts` as a network; one error per bad entry, at `field[j]`.
fn parse_cidrs(field: &str, texts: &[String], d: &mut Diags) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (j, text) in texts.iter().enumerate() {
        match parse_cidr(text) {
            Some(net) => nets.push(net),
            None => d.error(
                format!("{field}[{j}]"),
                Reason::InvalidValue,
                format!("{text:?} is not a network (write e.g. 10.0.0.0/8, 2001:db8::/32 or a single address)"),
            ),
        }
    }
    nets
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host).
fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        // `10.1.2.3/8` is almost certainly a typo for a network; refuse host bits.
        return (net.trunc() == net).then_some(net);
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_cidr("10.1.2.3/8").is_none());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("mail.example.org").is_none());
    }
}
