//! The embedded demo: `postern-gateway` with no arguments (or `--demo`).
//!
//! Generates a CA, a server certificate and a client certificate into a temporary
//! directory, starts the demo sink as the next hop, and runs procedure C of the design
//! (certificate, or SMTP AUTH over TLS as a fallback) on 127.0.0.1 with the Static
//! backend. Everything it prints can be pasted into a shell.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use postern_config::*;

/// The demo's SMTP ports on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoPorts {
    /// The STARTTLS listener (default 2525).
    pub starttls: u16,
    /// The implicit TLS (SMTPS) listener (default 2465).
    pub implicit_tls: u16,
}

impl Default for DemoPorts {
    fn default() -> Self {
        DemoPorts {
            starttls: 2525,
            implicit_tls: 2465,
        }
    }
}

/// A prepared demo.
#[derive(Debug)]
pub struct Demo {
    /// The configuration to run.
    pub config: GatewayConfig,
    /// Where the certificates and the sink's messages are.
    pub dir: PathBuf,
    /// The sink's address.
    pub sink: SocketAddr,
    /// The listeners' ports.
    pub ports: DemoPorts,
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), text)
        .with_context(|| format!("writing {}", dir.join(name).display()))
}

/// Generate the PKI, start the sink and build the configuration.
pub async fn prepare(ports: DemoPorts) -> anyhow::Result<Demo> {
    let dir = tempfile::Builder::new()
        .prefix("postern-demo-")
        .tempdir()
        .context("creating the demo directory")?
        .keep();

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Postern Demo CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;

    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "DOE.JOHN.1234567890");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client = client_params.signed_by(&client_key, &ca)?;

    write(&dir, "ca.crt", &ca.pem())?;
    write(&dir, "server.crt", &server.pem())?;
    write(&dir, "server.key", &server_key.serialize_pem())?;
    write(&dir, "client.crt", &client.pem())?;
    write(&dir, "client.key", &client_key.serialize_pem())?;

    let sink =
        crate::demo_sink::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), dir.join("sink"))
            .await
            .context("starting the demo sink")?;

    let users = vec![
        StaticUser {
            user_id: "jdoe".into(),
            password: None,
            certificate_cn: Some("DOE.JOHN.1234567890".into()),
            allowed: true,
            addresses: Vec::new(),
        },
        StaticUser {
            user_id: "frank".into(),
            password: Some("frankpw".into()),
            certificate_cn: None,
            allowed: true,
            addresses: Vec::new(),
        },
        StaticUser {
            user_id: "carol".into(),
            password: Some("carolpw".into()),
            certificate_cn: None,
            allowed: false,
            addresses: Vec::new(),
        },
    ];
    let tls = ListenerTls {
        certificate_chain_pem: server.pem(),
        private_key_pem: server_key.serialize_pem(),
        client_ca_pem: Some(ca.pem()),
        allow_version1_client_certificates: false,
        revocation: Default::default(),
    };
    let listener = |port: u16, implicit_tls: bool| Listener {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        hostname: "gateway.demo.postern.dev".into(),
        implicit_tls,
        tls: Some(tls.clone()),
        auth_profile: Some("cac-or-ldap".into()),
        host_access_table: vec![],
        default_policy: "relayed".into(),
        next_hop: NextHop {
            host: "127.0.0.1".into(),
            port: sink.port(),
            tls: TlsMode::Disabled,
            ca_pem: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            xclient: false,
        },
        timeouts: ListenerTimeouts::default(),
        max_connections: 1000,
        max_connections_per_client: None,
        proxy_protocol: None,
    };
    let config = GatewayConfig {
        listeners: BTreeMap::from([
            ("submission".to_owned(), listener(ports.starttls, false)),
            ("smtps".to_owned(), listener(ports.implicit_tls, true)),
        ]),
        policies: BTreeMap::from([(
            "relayed".to_owned(),
            MailFlowPolicy {
                action: PolicyAction::Relay,
                tls: TlsMode::Preferred,
                verify_client_certificate: false,
                require_smtp_auth: true,
                require_tls_for_smtp_auth: true,
                limits: Limits::default(),
                rate_limits: postern_config::RateLimits::default(),
                sender_binding: Default::default(),
            },
        )]),
        auth_profiles: BTreeMap::from([(
            "cac-or-ldap".to_owned(),
            AuthProfile {
                certificate: Some(CertificateAuth {
                    required_policies: Vec::new(),
                    required_ekus: Vec::new(),

                    backend: AuthBackend::Static {
                        users: users.clone(),
                    },
                }),
                smtp_auth: Some(SmtpAuth {
                    profile: "demo-users".into(),
                    backend: AuthBackend::Static { users },
                    allowance: Some(Allowance {
                        action: AllowanceAction::Reject,
                        response: Reply {
                            code: 525,
                            enhanced_code: "5.7.13".into(),
                            text: "Dear user, please use your CAC to send email.".into(),
                        },
                    }),
                    throttle: Default::default(),
                }),
            },
        )]),
        ..GatewayConfig::default()
    };
    write(&dir, "gateway.yaml", &config.to_yaml())?;
    Ok(Demo {
        config,
        dir,
        sink,
        ports,
    })
}

impl Demo {
    /// What to paste into a shell.
    pub fn instructions(&self, admin: SocketAddr) -> String {
        let d = self.dir.display();
        let (p, s) = (self.ports.starttls, self.ports.implicit_tls);
        let sink = self.sink;
        [
            String::new(),
            "Postern gateway demo (procedure C: client certificate, or SMTP AUTH over TLS as a fallback)".into(),
            format!("  STARTTLS listener  127.0.0.1:{p}    implicit TLS listener  127.0.0.1:{s}"),
            format!("  admin              http://{admin}/metrics  /readyz  /config"),
            format!("  files              {d}/  (ca.crt, client.crt, client.key, gateway.yaml)"),
            format!("  next hop           built-in DEMO SINK on {sink}: it only writes each message to {d}/sink/;"),
            "                     it is not a mail server. Run a real configuration with --config FILE.".into(),
            String::new(),
            "Send with the client certificate (user jdoe, no AUTH needed):".into(),
            format!("  swaks --server 127.0.0.1:{p} --tls --tls-cert {d}/client.crt --tls-key {d}/client.key \\"),
            format!("        --tls-ca-path {d}/ca.crt --from jdoe@example.org --to someone@example.net"),
            String::new(),
            "Send with SMTP AUTH (user frank; AUTH is offered only after STARTTLS):".into(),
            format!("  swaks --server 127.0.0.1:{p} --tls --tls-ca-path {d}/ca.crt --auth PLAIN \\"),
            "        --auth-user frank --auth-password frankpw --from frank@example.org --to someone@example.net".into(),
            String::new(),
            "A user the allowance check refuses (carol) gets 525 5.7.13:".into(),
            format!("  swaks --server 127.0.0.1:{p} --tls --auth LOGIN --auth-user carol --auth-password carolpw --to x@example.net"),
            String::new(),
            "Implicit TLS (SMTPS):".into(),
            format!("  swaks --server 127.0.0.1:{s} --tlsc --tls-cert {d}/client.crt --tls-key {d}/client.key --to someone@example.net"),
            String::new(),
            "By hand:".into(),
            format!("  openssl s_client -starttls smtp -connect 127.0.0.1:{p} -cert {d}/client.crt -key {d}/client.key -CAfile {d}/ca.crt"),
            String::new(),
        ]
        .join("\n")
    }
}
