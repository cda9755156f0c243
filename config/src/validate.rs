//! Validation: everything the gateway needs to run a configuration, checked up front.
//!
//! Every problem is reported, not just the first, each naming the object and field it
//! concerns, so the controller can put it on the right object's status and `postern plan`
//! can print it next to the manifest.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::field::{Field, Mechanism, Path, Section};
use crate::filter::{FilterTemplate, Placeholder};
use crate::model::*;
use crate::pem;

/// The class of a validation problem; also used as the condition reason in status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The document's `apiVersion` is not supported.
    UnsupportedVersion,
    /// A value is out of range or malformed.
    InvalidValue,
    /// A reference names an object that does not exist.
    RefNotFound,
    /// A reference names an object that exists but cannot serve (wrong type, missing query).
    InvalidKind,
    /// A certificate or CA bundle does not parse.
    InvalidCertificate,
    /// A private key does not parse or does not match its certificate.
    KeyMismatch,
    /// An LDAP filter template is malformed or uses a placeholder it may not.
    InvalidFilter,
    /// Two listeners would bind the same port.
    PortConflict,
    /// Settings that cannot hold together (e.g. verify a client certificate without TLS).
    InvalidCombination,
    /// TLS material is needed but absent.
    MissingTls,
}

impl Reason {
    /// CamelCase name, as used in status conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedVersion => "UnsupportedVersion",
            Self::InvalidValue => "InvalidValue",
            Self::RefNotFound => "RefNotFound",
            Self::InvalidKind => "InvalidKind",
            Self::InvalidCertificate => "InvalidCertificate",
            Self::KeyMismatch => "KeyMismatch",
            Self::InvalidFilter => "InvalidFilter",
            Self::PortConflict => "PortConflict",
            Self::InvalidCombination => "InvalidCombination",
            Self::MissingTls => "MissingTls",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// The object concerned (`None` for document-level problems).
    pub object: Option<(Section, String)>,
    /// The field inside the object, e.g. `tls.certificateSecretRef`.
    pub field: Field,
    /// Class of problem.
    pub reason: Reason,
    /// What is wrong, for a human.
    pub message: String,
}

impl ValidationError {
    /// Full path in the document, e.g. `listeners.submission.tls.privateKeyPem`.
    pub fn path(&self) -> String {
        match &self.object {
            Some((section, name)) if self.field == Field::Object => {
                format!("{}.{name}", section.key())
            }
            Some((section, name)) => format!("{}.{name}.{}", section.key(), self.field),
            None => self.field.to_string(),
        }
    }

    /// The order problems are listed in: by object, then field path as written.
    fn sort_key(&self) -> (&Option<(Section, String)>, String, Reason, &str) {
        (
            &self.object,
            self.field.to_string(),
            self.reason,
            &self.message,
        )
    }
}

impl PartialOrd for ValidationError {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ValidationError {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path(), self.message, self.reason)
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Check that `config` can run. Returns every problem found.
pub fn validate(config: &GatewayConfig) -> Result<(), ValidationErrors> {
    let mut v = Validator { errors: Vec::new() };
    if config.api_version != API_VERSION {
        v.errors.push(ValidationError {
            object: None,
            field: Field::ApiVersion,
            reason: Reason::UnsupportedVersion,
            message: format!(
                "unsupported apiVersion {:?} (expected {API_VERSION:?})",
                config.api_version
            ),
        });
    }
    for (name, policy) in &config.policies {
        v.policy(name, policy);
    }
    for (name, profile) in &config.ldap_profiles {
        v.ldap_profile(name, profile);
        v.mail_attributes(name, profile);
    }
    for (name, profile) in &config.auth_profiles {
        v.auth_profile(config, name, profile);
    }
    for (name, listener) in &config.listeners {
        v.listener(config, name, listener);
    }
    v.port_conflicts(config);
    for (name, source) in &config.crl_sources {
        v.crl_source(name, source);
    }
    if v.errors.is_empty() {
        Ok(())
    } else {
        v.errors.sort();
        v.errors.dedup();
        Err(ValidationErrors(v.errors))
    }
}

struct Validator {
    errors: Vec<ValidationError>,
}

/// The longest throttle window (`smtpAuth.throttle.*.window`); the CRDs' CEL rule uses it too.
pub const MAX_THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether `text` can go into an SMTP reply or header line unchanged.
fn is_single_line(text: &str) -> bool {
    !text.chars().any(|c| c.is_control())
}

fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

fn is_attribute_name(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Validator {
    /// `mailAttributes` of an LDAP profile: at least one, each an attribute name.
    fn mail_attributes(&mut self, name: &str, p: &LdapProfile) {
        let s = Section::LdapProfiles;
        if p.mail_attributes.is_empty() {
            self.push(
                s,
                name,
                Field::same("mailAttributes"),
                Reason::InvalidValue,
                "at least one attribute is required (the default is [mail])",
            );
        }
        for (i, attribute) in p.mail_attributes.iter().enumerate() {
            if !is_attribute_name(attribute) {
                self.push(
                    s,
                    name,
                    Field::Same(Path::keys("mailAttributes").index(i)),
                    Reason::InvalidValue,
                    format!("{attribute:?} is not an attribute name"),
                );
            }
        }
    }
}

impl Validator {
    fn push(
        &mut self,
        section: Section,
        name: &str,
        field: Field,
        reason: Reason,
        message: impl Into<String>,
    ) {
        self.errors.push(ValidationError {
            object: Some((section, name.to_owned())),
            field,
            reason,
            message: message.into(),
        });
    }

    fn policy(&mut self, name: &str, p: &MailFlowPolicy) {
        let s = Section::Policies;
        for (field, limit) in [
            ("rateLimits.perUser.window", &p.rate_limits.per_user),
            ("rateLimits.perClient.window", &p.rate_limits.per_client),
        ] {
            if !limit.is_unlimited() && limit.window.is_zero() {
                self.push(
                    s,
                    name,
                    Field::same(field),
                    Reason::InvalidValue,
                    "must be greater than 0",
                );
            }
        }
        if p.tls == TlsMode::Disabled && p.verify_client_certificate {
            self.push(
                s,
                name,
                Field::same("verifyClientCertificate"),
                Reason::InvalidCombination,
                "a client certificate can only be verified over TLS, but tls is Disabled",
            );
        }
        if p.tls == TlsMode::Disabled && p.require_tls_for_smtp_auth {
            self.push(
                s,
                name,
                Field::same("requireTlsForSmtpAuth"),
                Reason::InvalidCombination,
                "AUTH would never be offered: it requires TLS, but tls is Disabled",
            );
        }
        if p.limits.max_message_size == 0 {
            self.push(
                s,
                name,
                Field::same("limits.maxMessageSize"),
                Reason::InvalidValue,
                "must be greater than 0",
            );
        }
        if p.limits.max_recipients == 0 {
            self.push(
                s,
                name,
                Field::same("limits.maxRecipients"),
                Reason::InvalidValue,
                "must be at least 1",
            );
        }
        if p.limits.max_messages_per_session == 0 {
            self.push(
                s,
                name,
                Field::same("limits.maxMessagesPerSession"),
                Reason::InvalidValue,
                "must be at least 1",
            );
        }
    }

    fn ldap_profile(&mut self, name: &str, p: &LdapProfile) {
        let s = Section::LdapProfiles;
        if p.servers.is_empty() {
            self.push(
                s,
                name,
                Field::same("servers"),
                Reason::InvalidValue,
                "at least one server is required",
            );
        }
        for (i, url) in p.servers.iter().enumerate() {
            let field = Field::Same(Path::keys("servers").index(i).key("url"));
            let rest = url
                .strip_prefix("ldaps://")
                .map(|r| (true, r))
                .or_else(|| url.strip_prefix("ldap://").map(|r| (false, r)));
            match rest {
                None => self.push(
                    s,
                    name,
                    field.clone(),
                    Reason::InvalidValue,
                    format!("{url:?} must start with ldap:// or ldaps://"),
                ),
                Some((secure, rest)) => {
                    let host = rest.split('/').next().unwrap_or_default();
                    if host.is_empty() || host.contains(char::is_whitespace) {
                        self.push(
                            s,
                            name,
                            field.clone(),
                            Reason::InvalidValue,
                            format!("{url:?} has no host"),
                        );
                    }
                    if secure && p.start_tls {
                        self.push(s, name, Field::same("startTls"), Reason::InvalidCombination,
                            format!("StartTLS cannot be used on {url:?}, which is already TLS (ldaps://)"));
                    }
                }
            }
        }
        if let Some(ca) = &p.ca_pem
            && let Err(e) = pem::certificates(ca)
        {
            self.push(
                s,
                name,
                Field::same("caBundle"),
                Reason::InvalidCertificate,
                format!("CA bundle: {e}"),
            );
        }
        if let Some(bind) = &p.bind {
            if bind.dn.trim().is_empty() {
                self.push(
                    s,
                    name,
                    Field::same("bind.dn"),
                    Reason::InvalidValue,
                    "must not be empty",
                );
            }
            if bind.password.is_empty() {
                self.push(
                    s,
                    name,
                    Field::same("bind.passwordSecretRef"),
                    Reason::InvalidValue,
                    "the bind password is empty (an empty password would be an anonymous bind)",
                );
            }
        }
        if !p.base_dn.contains('=') {
            self.push(
                s,
                name,
                Field::same("baseDn"),
                Reason::InvalidValue,
                format!("{:?} is not a DN", p.base_dn),
            );
        }
        if p.timeouts.connect.is_zero() {
            self.push(
                s,
                name,
                Field::same("timeouts.connect"),
                Reason::InvalidValue,
                "must be greater than 0",
            );
        }
        if p.timeouts.operation.is_zero() {
            self.push(
                s,
                name,
                Field::same("timeouts.operation"),
                Reason::InvalidValue,
                "must be greater than 0",
            );
        }
        if p.max_connections == 0 || p.max_connections > 1024 {
            self.push(
                s,
                name,
                Field::same("pool.maxConnections"),
                Reason::InvalidValue,
                "must be between 1 and 1024",
            );
        }
        if let Some(q) = &p.certificate_auth_query {
            if q.name.trim().is_empty() {
                self.push(
                    s,
                    name,
                    Field::same("certificateAuthQuery.name"),
                    Reason::InvalidValue,
                    "must not be empty",
                );
            }
            if let Err(e) = FilterTemplate::parse(&q.filter, &Placeholder::CERTIFICATE) {
                self.push(
                    s,
                    name,
                    Field::same("certificateAuthQuery.filter"),
                    Reason::InvalidFilter,
                    e.to_string(),
                );
            }
            if !is_attribute_name(&q.user_id_attribute) {
                self.push(
                    s,
                    name,
                    Field::same("certificateAuthQuery.userIdAttribute"),
                    Reason::InvalidValue,
                    format!("{:?} is not an attribute name", q.user_id_attribute),
                );
            }
        }
        if let Some(q) = &p.smtp_auth_query {
            if q.name.trim().is_empty() {
                self.push(
                    s,
                    name,
                    Field::same("smtpAuthQuery.name"),
                    Reason::InvalidValue,
                    "must not be empty",
                );
            }
            if let Err(e) = FilterTemplate::parse(&q.filter, &Placeholder::SMTP_AUTH) {
                self.push(
                    s,
                    name,
                    Field::same("smtpAuthQuery.filter"),
                    Reason::InvalidFilter,
                    e.to_string(),
                );
            }
            if let Some(f) = &q.allowance_filter
                && let Err(e) = FilterTemplate::parse(f, &Placeholder::SMTP_AUTH)
            {
                self.push(
                    s,
                    name,
                    Field::same("smtpAuthQuery.allowanceFilter"),
                    Reason::InvalidFilter,
                    e.to_string(),
                );
            }
        }
    }

    fn auth_backend(
        &mut self,
        config: &GatewayConfig,
        name: &str,
        mechanism: Mechanism,
        backend: &AuthBackend,
    ) {
        let s = Section::AuthProfiles;
        let certificate = mechanism == Mechanism::Certificate;
        let field = |path: Path| Field::AuthBackend(mechanism, path);
        match backend {
            AuthBackend::Ldap { ldap_profile } => match config.ldap_profiles.get(ldap_profile) {
                None => self.push(
                    s,
                    name,
                    field(Path::keys("ldapProfile")),
                    Reason::RefNotFound,
                    format!("LdapProfile {ldap_profile:?} not found"),
                ),
                Some(p) if certificate && p.certificate_auth_query.is_none() => self.push(
                    s,
                    name,
                    field(Path::keys("ldapProfile")),
                    Reason::InvalidKind,
                    format!("LdapProfile {ldap_profile:?} has no certificateAuthQuery"),
                ),
                Some(p) if !certificate && p.smtp_auth_query.is_none() => self.push(
                    s,
                    name,
                    field(Path::keys("ldapProfile")),
                    Reason::InvalidKind,
                    format!("LdapProfile {ldap_profile:?} has no smtpAuthQuery"),
                ),
                Some(_) => {}
            },
            AuthBackend::Static { users } => {
                if users.is_empty() {
                    self.push(
                        s,
                        name,
                        field(Path::keys("users")),
                        Reason::InvalidValue,
                        "at least one user is required",
                    );
                }
                let mut seen = BTreeSet::new();
                for (i, u) in users.iter().enumerate() {
                    if u.user_id.is_empty() || !is_single_line(&u.user_id) {
                        self.push(
                            s,
                            name,
                            field(Path::keys("users").index(i).key("userId")),
                            Reason::InvalidValue,
                            "must be a non-empty single line",
                        );
                    }
                    if !seen.insert(&u.user_id) {
                        self.push(
                            s,
                            name,
                            field(Path::keys("users").index(i).key("userId")),
                            Reason::InvalidValue,
                            format!("duplicate user {:?}", u.user_id),
                        );
                    }
                    if u.password.as_deref() == Some("") {
                        self.push(s, name, field(Path::keys("users").index(i).key("password")), Reason::InvalidValue,
                            "an empty password is never accepted; omit it to disable AUTH for this user");
                    }
                }
            }
        }
    }

    fn auth_profile(&mut self, config: &GatewayConfig, name: &str, p: &AuthProfile) {
        let s = Section::AuthProfiles;
        if p.certificate.is_none() && p.smtp_auth.is_none() {
            self.push(
                s,
                name,
                Field::Object,
                Reason::InvalidValue,
                "the profile enables neither certificates nor SMTP AUTH",
            );
        }
        if let Some(c) = &p.certificate {
            self.auth_backend(config, name, Mechanism::Certificate, &c.backend);
            self.certificate_type(name, c);
        }
        if let Some(a) = &p.smtp_auth {
            self.auth_backend(config, name, Mechanism::SmtpAuth, &a.backend);
            if let Some(allowance) = &a.allowance {
                if let AuthBackend::Ldap { ldap_profile } = &a.backend {
                    let has_filter = config
                        .ldap_profiles
                        .get(ldap_profile)
                        .and_then(|p| p.smtp_auth_query.as_ref())
                        .is_some_and(|q| q.allowance_filter.is_some());
                    if config.ldap_profiles.contains_key(ldap_profile) && !has_filter {
                        self.push(s, name, Field::Allowance, Reason::InvalidKind, format!(
                            "the allowance check is enabled but LdapProfile {ldap_profile:?}'s smtpAuthQuery has no allowanceFilter"));
                    }
                }
                self.reply(name, "allowance.response", &allowance.response);
            }
            self.throttle_limit(name, "throttle.perClient", &a.throttle.per_client);
            self.throttle_limit(name, "throttle.perUser", &a.throttle.per_user);
        }
    }

    /// `certificate.requiredPolicies` / `requiredEkus`: dotted OIDs (EKUs also by name).
    fn certificate_type(&mut self, name: &str, c: &crate::CertificateAuth) {
        use crate::certificate_type::{EKU_NAMES, eku_oid, is_oid};
        for (i, oid) in c.required_policies.iter().enumerate() {
            if !is_oid(oid) {
                self.push(
                    Section::AuthProfiles,
                    name,
                    Field::Same(Path::keys("certificate").key("requiredPolicies").index(i)),
                    Reason::InvalidValue,
                    format!("{oid:?} is not a dotted OID (e.g. 2.16.840.1.101.2.1.11.42)"),
                );
            }
        }
        for (i, eku) in c.required_ekus.iter().enumerate() {
            if eku_oid(eku).is_none() {
                self.push(
                    Section::AuthProfiles,
                    name,
                    Field::Same(Path::keys("certificate").key("requiredEkus").index(i)),
                    Reason::InvalidValue,
                    format!(
                        "{eku:?} is neither a dotted OID nor a known EKU name ({})",
                        EKU_NAMES.map(|(n, _)| n).join(", ")
                    ),
                );
            }
        }
    }

    /// `field`: the limit's path inside `smtpAuth`.
    fn throttle_limit(&mut self, name: &str, field: &'static str, t: &ThrottleLimit) {
        // Off (0 failures) needs no window; otherwise the window must be a real period
        // that an operator can reason about (a day at most: a failure older than that is
        // no evidence of guessing any more).
        if t.failures == 0 {
            return;
        }
        let w = t.window.get();
        if w < std::time::Duration::from_secs(1) || w > MAX_THROTTLE_WINDOW {
            self.push(
                Section::AuthProfiles,
                name,
                Field::SmtpAuth(Path::keys(field).key("window")),
                Reason::InvalidValue,
                format!(
                    "{} is not a window between 1s and 24h (set failures: 0 to turn this throttle off)",
                    t.window
                ),
            );
        }
    }

    /// `field`: the reply's path inside `smtpAuth`.
    fn reply(&mut self, name: &str, field: &'static str, r: &Reply) {
        let s = Section::AuthProfiles;
        if !(400..=599).contains(&r.code) {
            self.push(
                s,
                name,
                Field::SmtpAuth(Path::keys(field).key("code")),
                Reason::InvalidValue,
                format!("{} is not a 4xx or 5xx reply code", r.code),
            );
        }
        let parts: Vec<&str> = r.enhanced_code.split('.').collect();
        let well_formed = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
        if !well_formed {
            self.push(
                s,
                name,
                Field::SmtpAuth(Path::keys(field).key("enhancedCode")),
                Reason::InvalidValue,
                format!(
                    "{:?} is not an enhanced status code like 5.7.13",
                    r.enhanced_code
                ),
            );
        } else if parts[0] != (r.code / 100).to_string() {
            self.push(
                s,
                name,
                Field::SmtpAuth(Path::keys(field).key("enhancedCode")),
                Reason::InvalidValue,
                format!("class {} does not match reply code {}", parts[0], r.code),
            );
        }
        if r.text.trim().is_empty() || !is_single_line(&r.text) || r.text.len() > 400 {
            self.push(
                s,
                name,
                Field::SmtpAuth(Path::keys(field).key("text")),
                Reason::InvalidValue,
                "must be one line of at most 400 characters",
            );
        }
    }

    /// `proxyProtocol`: at least one trusted network, each without host bits (a typo for
    /// a network would trust a different set of peers than meant).
    fn proxy_protocol(&mut self, name: &str, pp: &crate::ProxyProtocol) {
        let s = Section::Listeners;
        if pp.trusted_cidrs.is_empty() {
            self.push(
                s,
                name,
                Field::same("proxyProtocol.trustedCidrs"),
                Reason::InvalidValue,
                "at least one CIDR is required (the load balancers' networks)",
            );
        }
        for (i, net) in pp.trusted_cidrs.iter().enumerate() {
            if net.trunc() != *net {
                self.push(
                    s,
                    name,
                    Field::Same(Path::keys("proxyProtocol.trustedCidrs").index(i)),
                    Reason::InvalidValue,
                    format!(
                        "{net} has host bits set; write the network, {}",
                        net.trunc()
                    ),
                );
            }
        }
    }

    fn listener(&mut self, config: &GatewayConfig, name: &str, l: &Listener) {
        let s = Section::Listeners;
        if l.port == 0 {
            self.push(
                s,
                name,
                Field::same("port"),
                Reason::InvalidValue,
                "must be between 1 and 65535",
            );
        }
        if !is_hostname(&l.hostname) {
            self.push(
                s,
                name,
                Field::same("hostname"),
                Reason::InvalidValue,
                format!(
                    "{:?} is not a host name (it goes into greetings and Received headers)",
                    l.hostname
                ),
            );
        }
        if l.max_connections == 0 {
            self.push(
                s,
                name,
                Field::same("maxConnections"),
                Reason::InvalidValue,
                "must be at least 1",
            );
        }
        if l.max_connections_per_client == Some(0) {
            self.push(
                s,
                name,
                Field::same("maxConnectionsPerClient"),
                Reason::InvalidValue,
                "must be at least 1",
            );
        } else if let Some(per_client) = l
            .max_connections_per_client
            .filter(|n| *n > l.max_connections)
        {
            // An explicit value is refused rather than silently capped: above the
            // listener's cap it says the operator expects something that cannot happen.
            self.push(
                s,
                name,
                Field::same("maxConnectionsPerClient"),
                Reason::InvalidValue,
                format!(
                    "{} exceeds maxConnections ({}); set it below maxConnections so that one \
                     client cannot take every connection slot",
                    per_client, l.max_connections
                ),
            );
        }
        if let Some(pp) = &l.proxy_protocol {
            self.proxy_protocol(name, pp);
        }
        for (field, value) in [
            ("timeouts.tlsHandshake", l.timeouts.tls_handshake),
            ("timeouts.greeting", l.timeouts.greeting),
        ] {
            if value.is_zero() {
                self.push(
                    s,
                    name,
                    Field::same(field),
                    Reason::InvalidValue,
                    "must be greater than 0",
                );
            }
        }
        if l.timeouts.command.is_zero() {
            self.push(
                s,
                name,
                Field::same("timeouts.command"),
                Reason::InvalidValue,
                "must be greater than 0",
            );
        }
        if l.timeouts.data.is_zero() {
            self.push(
                s,
                name,
                Field::same("timeouts.data"),
                Reason::InvalidValue,
                "must be greater than 0",
            );
        }
        if l.timeouts.data_total.is_zero() {
            self.push(
                s,
                name,
                Field::same("timeouts.dataTotal"),
                Reason::InvalidValue,
                "must be greater than 0",
            );
        }
        // Policies this listener can apply.
        let mut policies = Vec::new();
        let mut check_policy =
            |v: &mut Self, field: Field, policy: &str| match config.policies.get(policy) {
                Some(p) => policies.push(p.clone()),
                None => v.push(
                    s,
                    name,
                    field,
                    Reason::RefNotFound,
                    format!("MailFlowPolicy {policy:?} not found"),
                ),
            };
        check_policy(
            self,
            Field::same("defaultMailFlowPolicyRef"),
            &l.default_policy,
        );
        for (i, row) in l.host_access_table.iter().enumerate() {
            check_policy(
                self,
                Field::Same(
                    Path::keys("hostAccessTable")
                        .index(i)
                        .key("mailFlowPolicyRef"),
                ),
                &row.policy,
            );
            if row.cidrs.is_empty() {
                self.push(
                    s,
                    name,
                    Field::Same(Path::keys("hostAccessTable").index(i).key("cidrs")),
                    Reason::InvalidValue,
                    "at least one CIDR is required",
                );
            }
            if row.sender_group.is_empty() || !is_single_line(&row.sender_group) {
                self.push(
                    s,
                    name,
                    Field::Same(Path::keys("hostAccessTable").index(i).key("senderGroup")),
                    Reason::InvalidValue,
                    "must be a non-empty single line",
                );
            }
        }
        let profile = match &l.auth_profile {
            Some(p) => match config.auth_profiles.get(p) {
                Some(profile) => Some(profile),
                None => {
                    self.push(
                        s,
                        name,
                        Field::same("smtpAuthProfileRef"),
                        Reason::RefNotFound,
                        format!("SmtpAuthProfile {p:?} not found"),
                    );
                    None
                }
            },
            None => None,
        };
        let wants_tls = l.implicit_tls || policies.iter().any(|p| p.tls != TlsMode::Disabled);
        let wants_client_cert = profile.is_some_and(|p| p.certificate.is_some())
            || policies.iter().any(|p| p.verify_client_certificate);
        if l.auth_profile.is_none()
            && policies
                .iter()
                .any(|p| p.require_smtp_auth && p.action == PolicyAction::Relay)
        {
            self.push(s, name, Field::same("smtpAuthProfileRef"), Reason::InvalidCombination,
                "a mail flow policy of this listener requires SMTP authentication, but the listener has no smtpAuthProfileRef: no client could ever send");
        }
        match &l.tls {
            None if wants_tls => self.push(s, name, Field::same("tls.certificateSecretRef"), Reason::MissingTls,
                if l.implicit_tls { "implicitTls needs a server certificate" } else { "a mail flow policy of this listener offers TLS, which needs a server certificate" }),
            None => {}
            Some(tls) => {
                // ring accepts the key types every provider does; a gateway built with
                // another provider loads the key again with it and refuses the listener
                // if that provider cannot sign with it (FIPS mode).
                if let Err(e) = pem::certified_key(&tls.certificate_chain_pem, &tls.private_key_pem, &rustls::crypto::ring::default_provider()) {
                    let reason = match e {
                        pem::PemError::KeyMismatch | pem::PemError::NoKey | pem::PemError::UnusableKey(_) => Reason::KeyMismatch,
                        _ => Reason::InvalidCertificate,
                    };
                    self.push(s, name, Field::same("tls.certificateSecretRef"), reason, format!("server certificate: {e}"));
                }
                match &tls.client_ca_pem {
                    Some(ca) => {
                        if let Err(e) = pem::certificates(ca) {
                            self.push(s, name, Field::same("tls.clientCaSecretRef"), Reason::InvalidCertificate, format!("client CA bundle: {e}"));
                        }
                    }
                    None if wants_client_cert => self.push(s, name, Field::same("tls.clientCaSecretRef"), Reason::MissingTls,
                        "client certificates are asked for (certificate profile or verifyClientCertificate) but no client CA bundle is set"),
                    None => {}
                }
                for problem in tls.revocation.problems() {
                    self.push(s, name, Field::same(problem.field), Reason::InvalidValue, problem.message);
                }
            }
        }
        if wants_client_cert && l.tls.is_none() && !wants_tls {
            self.push(
                s,
                name,
                Field::same("tls"),
                Reason::MissingTls,
                "client certificates need TLS",
            );
        }
        let hop = &l.next_hop;
        if hop.host.is_empty() || hop.host.contains(char::is_whitespace) {
            self.push(
                s,
                name,
                Field::same("nextHop.host"),
                Reason::InvalidValue,
                format!("{:?} is not a host", hop.host),
            );
        } else if hop.host.starts_with('[') {
            // `[2001:db8::25]` is URL syntax; the port is a field of its own here.
            self.push(
                s,
                name,
                Field::same("nextHop.host"),
                Reason::InvalidValue,
                format!(
                    "{:?}: write an IPv6 address without brackets (e.g. 2001:db8::25)",
                    hop.host
                ),
            );
        }
        if hop.port == 0 {
            self.push(
                s,
                name,
                Field::same("nextHop.port"),
                Reason::InvalidValue,
                "must be between 1 and 65535",
            );
        }
        if let Some(ca) = &hop.ca_pem
            && let Err(e) = pem::certificates(ca)
        {
            self.push(
                s,
                name,
                Field::same("nextHop.caBundle"),
                Reason::InvalidCertificate,
                format!("CA bundle: {e}"),
            );
        }
        if hop.connect_timeout.is_zero() || hop.command_timeout.is_zero() {
            self.push(
                s,
                name,
                Field::NextHopTimeouts,
                Reason::InvalidValue,
                "timeouts must be greater than 0",
            );
        }
    }

    fn port_conflicts(&mut self, config: &GatewayConfig) {
        let listeners: Vec<(&String, &Listener)> = config.listeners.iter().collect();
        for (i, (a_name, a)) in listeners.iter().enumerate() {
            for (b_name, b) in &listeners[i + 1..] {
                let overlap =
                    |x: IpAddr, y: IpAddr| x == y || x.is_unspecified() || y.is_unspecified();
                if a.port == b.port && a.port != 0 && overlap(a.address, b.address) {
                    for (name, other) in [(a_name, b_name), (b_name, a_name)] {
                        self.push(
                            Section::Listeners,
                            name,
                            Field::same("port"),
                            Reason::PortConflict,
                            format!("port {} is also used by Listener {other:?}", a.port),
                        );
                    }
                }
            }
        }
    }

    fn crl_source(&mut self, name: &str, c: &CrlSource) {
        let s = Section::CrlSources;
        let url_ok = |u: &str| {
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"));
            rest.is_some_and(|r| {
                !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace)
            })
        };
        match &c.primary_url {
            Some(u) if !url_ok(u) => self.push(
                s,
                name,
                Field::same("primaryUrl"),
                Reason::InvalidValue,
                format!("{u:?} is not an http:// or https:// URL"),
            ),
            None if c.discovery.is_none() => self.push(
                s,
                name,
                Field::same("primaryUrl"),
                Reason::InvalidValue,
                "is required unless the source has `discovery`",
            ),
            _ => {}
        }
        if c.primary_url.is_none() && c.secondary_url.is_some() {
            self.push(
                s,
                name,
                Field::same("secondaryUrl"),
                Reason::InvalidValue,
                "is only used with primaryUrl",
            );
        }
        if let Some(d) = &c.discovery {
            self.crl_discovery(name, d);
        }
        if let Some(u) = &c.secondary_url
            && !url_ok(u)
        {
            self.push(
                s,
                name,
                Field::same("secondaryUrl"),
                Reason::InvalidValue,
                format!("{u:?} is not an http:// or https:// URL"),
            );
        }
        if c.interval.get() < std::time::Duration::from_secs(1) {
            self.push(
                s,
                name,
                Field::same("schedule.interval"),
                Reason::InvalidValue,
                "must be at least 1s",
            );
        }
        if c.applies_to.is_empty() {
            self.push(
                s,
                name,
                Field::same("appliesTo"),
                Reason::InvalidValue,
                "at least one of InboundSmtpTls, OutboundSmtpTls is required",
            );
        }
        if c.max_size == 0 {
            self.push(
                s,
                name,
                Field::same("maxSize"),
                Reason::InvalidValue,
                "must be more than 0 bytes",
            );
        }
    }

    fn crl_discovery(&mut self, name: &str, d: &CrlDiscovery) {
        let s = Section::CrlSources;
        if d.allowed_url_prefixes.is_empty() {
            self.push(
                s,
                name,
                Field::same("discovery.allowedUrlPrefixes"),
                Reason::InvalidValue,
                "at least one http:// or https:// URL prefix is required: only URLs under one are ever fetched",
            );
        }
        for (i, p) in d.allowed_url_prefixes.iter().enumerate() {
            if !crate::model::is_url_prefix(p) {
                self.push(
                    s,
                    name,
                    Field::Same(Path::keys("discovery.allowedUrlPrefixes").index(i)),
                    Reason::InvalidValue,
                    format!("{p:?} is not an http:// or https:// URL prefix naming a host"),
                );
            }
        }
        if d.from_ca_bundle_pem.is_none() && !d.from_presented_certificates {
            self.push(
                s,
                name,
                Field::same("discovery"),
                Reason::InvalidValue,
                "discovers nothing: set fromCaBundle and/or fromPresentedCertificates",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems `validate` finds in the listener `l` of a minimal configuration
    /// with `extra` added to it (YAML flow mapping entries).
    fn listener_problems(extra: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: postern.dev/gateway/v1\n\
             listeners:\n  l: {{address: 127.0.0.1, port: 2525, hostname: mx.example.org, \
             defaultPolicy: p, nextHop: {{host: 127.0.0.1, tls: Disabled}}{extra}}}\n\
             policies:\n  p: {{action: Relay, tls: Disabled}}\n"
        );
        let config = GatewayConfig::from_yaml(&text, "test").unwrap();
        match validate(&config) {
            Ok(()) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}: {}", e.path(), e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn certificate_type_requirements_name_the_bad_entry() {
        let text = "apiVersion: postern.dev/gateway/v1\n\
             authProfiles:\n  cac: {certificate: {backend: {type: Static, users: []}, \
             requiredPolicies: [2.16.840.1.101.2.1.11.42, piv], \
             requiredEkus: [clientAuth, smartcardLogon, 1.3.6.1.5.5.7.3.2, SmartCardLogon]}}\n";
        let config = GatewayConfig::from_yaml(text, "test").unwrap();
        let problems: Vec<String> = validate(&config)
            .unwrap_err()
            .0
            .iter()
            .map(|e| format!("{}: {}", e.path(), e.message))
            .filter(|p| p.contains(".required"))
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[1].starts_with(
                "authProfiles.cac.certificate.requiredPolicies[1]: \"piv\" is not a dotted OID"
            ),
            "{problems:?}"
        );
        assert!(
            problems[0].starts_with(
                "authProfiles.cac.certificate.requiredEkus[3]: \"SmartCardLogon\" is neither"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn connection_caps() {
        assert_eq!(listener_problems(""), Vec::<String>::new());
        assert_eq!(
            listener_problems(", maxConnections: 20, maxConnectionsPerClient: 5"),
            Vec::<String>::new()
        );
        assert_eq!(
            listener_problems(", maxConnections: 1, maxConnectionsPerClient: 1"),
            Vec::<String>::new()
        );
        // Left out on a listener capped below 50, only the listener's cap applies.
        assert_eq!(
            listener_problems(", maxConnections: 20"),
            Vec::<String>::new()
        );
        let p = listener_problems(", maxConnections: 20, maxConnectionsPerClient: 21");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("listeners.l.maxConnectionsPerClient: 21 exceeds maxConnections (20)"),
            "{p:?}"
        );
        let p = listener_problems(", maxConnectionsPerClient: 0");
        assert_eq!(
            p,
            ["listeners.l.maxConnectionsPerClient: must be at least 1"]
        );
    }

    #[test]
    fn proxy_protocol_networks() {
        assert_eq!(
            listener_problems(", proxyProtocol: {trustedCidrs: [10.0.0.0/8, 'fd00::/8']}"),
            Vec::<String>::new()
        );
        assert_eq!(
            listener_problems(", proxyProtocol: {trustedCidrs: []}"),
            [
                "listeners.l.proxyProtocol.trustedCidrs: at least one CIDR is required (the load balancers' networks)"
            ]
        );
        assert_eq!(
            listener_problems(", proxyProtocol: {trustedCidrs: [10.0.0.0/8, 10.1.2.3/8]}"),
            [
                "listeners.l.proxyProtocol.trustedCidrs[1]: 10.1.2.3/8 has host bits set; write the network, 10.0.0.0/8"
            ]
        );
    }

    #[test]
    fn rate_limit_windows() {
        let problems = |limits: &str| {
            let text = format!(
                "apiVersion: postern.dev/gateway/v1\n\
                 listeners:\n  l: {{address: 127.0.0.1, port: 2525, hostname: mx.example.org, \
                 defaultPolicy: p, nextHop: {{host: 127.0.0.1, tls: Disabled}}}}\n\
                 policies:\n  p: {{action: Relay, tls: Disabled, rateLimits: {limits}}}\n"
            );
            let config = GatewayConfig::from_yaml(&text, "test").unwrap();
            validate(&config)
                .err()
                .map(|e| {
                    e.0.iter()
                        .map(|e| format!("{}: {}", e.path(), e.message))
                        .collect::<Vec<String>>()
                })
                .unwrap_or_default()
        };
        assert!(problems("{perUser: {messages: 5, window: 1h}}").is_empty());
        // An unlimited part may have any window.
        assert!(problems("{perUser: {window: 0s}}").is_empty());
        assert_eq!(
            problems("{perClient: {recipients: 5, window: 0s}}"),
            ["policies.p.rateLimits.perClient.window: must be greater than 0"]
        );
    }

    #[test]
    fn session_deadlines() {
        let p = listener_problems(", timeouts: {tlsHandshake: 0s, greeting: 0s}");
        assert_eq!(
            p,
            [
                "listeners.l.timeouts.greeting: must be greater than 0",
                "listeners.l.timeouts.tlsHandshake: must be greater than 0"
            ]
        );
        // Longer than the command timeout is allowed: the command timeout cuts first.
        assert_eq!(
            listener_problems(", timeouts: {command: 5s, greeting: 30s, tlsHandshake: 1m}"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn crl_source_max_size() {
        let problems = |extra: &str| {
            let text = format!(
                "apiVersion: postern.dev/gateway/v1\n\
                 crlSources:\n  corp: {{format: Zip, primaryUrl: http://crl.example/all.zip, \
                 interval: 1h, appliesTo: [InboundSmtpTls]{extra}}}\n"
            );
            let config = GatewayConfig::from_yaml(&text, "test").unwrap();
            assert_eq!(
                config.crl_sources["corp"].max_size,
                if extra.is_empty() {
                    crate::DEFAULT_CRL_MAX_SIZE
                } else {
                    0
                }
            );
            match validate(&config) {
                Ok(()) => Vec::new(),
                Err(e) => {
                    e.0.iter()
                        .map(|e| format!("{}: {}", e.path(), e.message))
                        .collect()
                }
            }
        };
        assert_eq!(problems(""), Vec::<String>::new());
        let p = problems(", maxSize: 0");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("maxSize") && p[0].contains("more than 0"),
            "{p:?}"
        );
    }

    #[test]
    fn crl_discovery_problems_name_the_field() {
        let problems = |source: &str| {
            let text = format!(
                "apiVersion: postern.dev/gateway/v1\n\
                 crlSources:\n  dod: {{format: Asn1, interval: 1h, appliesTo: [InboundSmtpTls]{source}}}\n"
            );
            let config = GatewayConfig::from_yaml(&text, "test").unwrap();
            match validate(&config) {
                Ok(()) => Vec::new(),
                Err(e) => {
                    e.0.iter()
                        .map(|e| format!("{}: {}", e.path(), e.message))
                        .collect()
                }
            }
        };
        assert_eq!(
            problems(
                ", discovery: {fromPresentedCertificates: true, allowedUrlPrefixes: [http://crl.disa.mil/]}"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(""),
            ["crlSources.dod.primaryUrl: is required unless the source has `discovery`"]
        );
        assert_eq!(
            problems(", discovery: {fromPresentedCertificates: true, allowedUrlPrefixes: []}"),
            [
                "crlSources.dod.discovery.allowedUrlPrefixes: at least one http:// or https:// URL prefix is required: only URLs under one are ever fetched"
            ]
        );
        assert_eq!(
            problems(
                ", discovery: {fromPresentedCertificates: true, allowedUrlPrefixes: [http://crl.disa.mil/, 'ldap://x/']}"
            ),
            [
                "crlSources.dod.discovery.allowedUrlPrefixes[1]: \"ldap://x/\" is not an http:// or https:// URL prefix naming a host"
            ]
        );
        assert_eq!(
            problems(", discovery: {allowedUrlPrefixes: [http://crl.disa.mil/]}"),
            [
                "crlSources.dod.discovery: discovers nothing: set fromCaBundle and/or fromPresentedCertificates"
            ]
        );
    }

    #[test]
    fn revocation_settings_are_reported_on_their_fields() {
        let p = listener_problems(
            ", tls: {certificateChainPem: '', privateKeyPem: '', revocation: {mode: OcspOnly, \
             ocsp: {responderUrl: 'ftp://ocsp.example', timeout: 1m, cacheMaxAge: 0s}}}",
        );
        // Sorted by field.
        let p: Vec<&String> = p.iter().filter(|p| p.contains("revocation")).collect();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[1].starts_with("listeners.l.tls.revocation.ocsp.responderUrl: \"ftp://ocsp.example\" is not an http:// or https:// URL"), "{p:?}");
        assert!(
            p[2].starts_with("listeners.l.tls.revocation.ocsp.timeout: 1m is out of range"),
            "{p:?}"
        );
        assert!(
            p[0].starts_with("listeners.l.tls.revocation.ocsp.cacheMaxAge: 0s is out of range"),
            "{p:?}"
        );
    }

    #[test]
    fn mail_attributes_name_the_bad_entry() {
        let mut config = GatewayConfig::default();
        let mut profile: LdapProfile = ldap_profile_without_queries();
        profile.mail_attributes = vec!["mail".into(), "proxy addresses".into()];
        config.ldap_profiles.insert("corp".into(), profile.clone());
        let e = validate(&config).unwrap_err().to_string();
        assert!(e.contains("ldapProfiles.corp.mailAttributes[1]"), "{e}");
        assert!(
            e.contains("\"proxy addresses\" is not an attribute name"),
            "{e}"
        );
        profile.mail_attributes.clear();
        config.ldap_profiles.insert("corp".into(), profile);
        let e = validate(&config).unwrap_err().to_string();
        assert!(e.contains("mailAttributes: at least one attribute"), "{e}");
    }

    fn ldap_profile_without_queries() -> LdapProfile {
        LdapProfile {
            servers: vec!["ldap://127.0.0.1:389".into()],
            start_tls: false,
            ca_pem: None,
            bind: None,
            base_dn: "dc=example,dc=org".into(),
            timeouts: Default::default(),
            max_connections: 4,
            cache: Default::default(),
            certificate_auth_query: None,
            smtp_auth_query: None,
            mail_attributes: crate::sender::default_mail_attributes(),
        }
    }
}
