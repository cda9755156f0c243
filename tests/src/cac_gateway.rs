//! A gateway for the DoD-shaped card of `cac`: one STARTTLS Listener trusting the card's
//! CAs, an LDAP profile on a slapd that holds john (`uid=jdoe`, his EDIPI in
//! `employeeNumber`), the certificate query `(employeeNumber={edipi})`, and smtp-sink as
//! the next hop.

use std::path::{Path, PathBuf};

use postern_config::{AuthBackend, AuthProfile, MailFlowPolicy};
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;

use crate::cac::{CacPki, CardCert};
use crate::gateway::{listener, listener_tls, single, start_gateway};
use crate::openssl_ca::Issued;
use crate::slapd::{self, Slapd};

/// john's common name.
pub const JOHN_CN: &str = "DOE.JOHN.Q.1234567890";
/// john's EDIPI.
pub const JOHN_EDIPI: &str = "1234567890";
/// john's email address.
pub const JOHN_EMAIL: &str = "john.q.doe.civ@mail.mil";

/// The test directory plus john's entry.
pub fn john_ldif() -> String {
    format!(
        "{}dn: uid=jdoe,ou=people,{base}\nobjectClass: inetOrgPerson\n\
         cn: {JOHN_CN}\nsn: Doe\nuid: jdoe\nemployeeNumber: {JOHN_EDIPI}\n\n",
        slapd::directory_ldif(),
        base = slapd::BASE_DN,
    )
}

/// john's three card certificates (PIV authentication, email signing, email
/// encryption), with the serials given.
pub fn john_cards(pki: &CacPki, serials: [&str; 3]) -> [Issued; 3] {
    let card = |which, serial| {
        pki.card(which, JOHN_CN, JOHN_EDIPI, JOHN_EMAIL, serial)
            .expect("card certificate")
    };
    [
        card(CardCert::PivAuth, serials[0]),
        card(CardCert::EmailSigning, serials[1]),
        card(CardCert::EmailEncryption, serials[2]),
    ]
}

/// The LDAP backend `corp`.
pub fn corp() -> AuthBackend {
    AuthBackend::Ldap {
        ldap_profile: "corp".into(),
    }
}

/// Procedure C's shape on `corp`: certificate, with SMTP AUTH (profile `ldap-auth`) as
/// the fallback, so AUTH is offered.
pub fn certificate_with_auth_fallback() -> AuthProfile {
    AuthProfile {
        certificate: Some(postern_config::CertificateAuth {
            backend: corp(),
            required_policies: Vec::new(),
            required_ekus: Vec::new(),
        }),
        smtp_auth: Some(postern_config::SmtpAuth {
            profile: "ldap-auth".into(),
            backend: corp(),
            allowance: None,
            throttle: Default::default(),
        }),
    }
}

/// A running gateway and what a client needs to reach it.
pub struct CacGateway {
    /// The gateway.
    pub gw: Gateway,
    /// Its SMTP port.
    pub port: u16,
    /// The CA of its server certificate (a client's trust file).
    pub server_ca: PathBuf,
    /// The next hop.
    pub sink: Sink,
}

impl std::fmt::Debug for CacGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacGateway")
            .field("port", &self.port)
            .field("server_ca", &self.server_ca)
            .finish_non_exhaustive()
    }
}

/// Start the gateway with `profile` and `policy`; files go to `dir`.
pub fn start(
    pki: &CacPki,
    slapd: &Slapd,
    dir: &Path,
    profile: AuthProfile,
    policy: MailFlowPolicy,
) -> CacGateway {
    start_with(pki, slapd, dir, profile, policy, |_| {})
}

/// [`start`], with the LDAP profile changed by `ldap` first (e.g. its `mailAttributes`).
pub fn start_with(
    pki: &CacPki,
    slapd: &Slapd,
    dir: &Path,
    profile: AuthProfile,
    policy: MailFlowPolicy,
    ldap_edit: impl FnOnce(&mut postern_config::LdapProfile),
) -> CacGateway {
    let sink = Sink::start(&[]).expect("smtp-sink");
    let server_ca = Ca::long_lived("Gateway CA");
    let server = server_ca.localhost_server();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(listener_tls(&server, Some(pki.ca_bundle_pem())));
    let mut config = single(l, policy, Some(profile));
    let mut ldap = slapd::ldap_profile(&[slapd.url()]);
    if let Some(q) = ldap.certificate_auth_query.as_mut() {
        q.filter = "(employeeNumber={edipi})".into();
    }
    ldap_edit(&mut ldap);
    config.ldap_profiles.insert("corp".into(), ldap);
    let gw = start_gateway(&config).expect("gateway");
    let server_ca = server_ca
        .write(dir, &format!("server-ca-{port}"))
        .expect("server CA file");
    CacGateway {
        gw,
        port,
        server_ca,
        sink,
    }
}
