//! CEL validation rules (`x-kubernetes-validations`) generated into the CRDs, so that the
//! API server refuses single-object mistakes at `kubectl apply` and `--dry-run=server`.
//!
//! Each rule is the schema form of a check the compiler or `postern_config::validate`
//! makes, built from the same constants (placeholder lists, defaults, limits), and refuses
//! only what they refuse: where a rule cannot decide exactly with what every enforcing API
//! server offers (durations in days, say), it lets the value through and the controller
//! reports it in status as before. Only standard CEL is used (`has`, `matches`,
//! `startsWith`, `contains`, `all`, `duration`, `string`, `int`): no Kubernetes library
//! function, so API servers from v1.25 (v1.23 behind the CustomResourceValidationExpressions
//! gate) enforce every rule. Older servers ignore them.
//!
//! The rules are attached with schemars transforms (`#[schemars(transform = ...)]`) and
//! unit-tested with kube's client-side CEL evaluator (`crds/tests/cel_rules.rs`).

use kube::core::Rule;
use postern_config::defaults;
use postern_config::filter::Placeholder;
use schemars::Schema;
use schemars::transform::Transform;

/// One CEL rule with its message, added to the schema it transforms.
#[derive(Clone, Debug)]
pub struct CelRule {
    /// The CEL expression; `self` is the value of the schema it is attached to.
    pub rule: String,
    /// What the API server says when the rule does not hold.
    pub message: String,
}

impl CelRule {
    fn new(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            message: message.into(),
        }
    }
}

impl Transform for CelRule {
    fn transform(&mut self, schema: &mut Schema) {
        kube::core::validate(
            schema,
            Rule::new(self.rule.clone()).message(self.message.as_str()),
        )
        .expect("a rule always serialises");
    }
}

impl From<CelRule> for Rule {
    fn from(r: CelRule) -> Self {
        Rule::new(r.rule).message(r.message.as_str())
    }
}

/// Several rules on one schema.
#[derive(Clone, Debug)]
pub struct CelRules(pub Vec<CelRule>);

impl Transform for CelRules {
    fn transform(&mut self, schema: &mut Schema) {
        for rule in &mut self.0 {
            rule.transform(schema);
        }
    }
}

/// `text` as a CEL single-quoted string literal.
fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A regular expression (RE2, which Kubernetes' `matches` uses, and which Rust's `regex`
/// agrees with for everything here) matching a filter template whose every `{...}` is one
/// of `allowed`. A lone `}` does not match either: the template grammar refuses it too.
fn placeholder_regex(allowed: &[Placeholder]) -> String {
    let names: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
    format!(r"^(?:[^{{}}]|\{{(?:{})\}})*$", names.join("|"))
}

fn placeholder_list(allowed: &[Placeholder]) -> String {
    allowed
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `certificateAuthQuery.filter`: only the certificate placeholders.
pub fn certificate_filter() -> CelRule {
    filter_rule(&Placeholder::CERTIFICATE, "a certificate query")
}

/// `smtpAuthQuery.filter` and `allowanceFilter`: only `{u}` and `{t}`.
pub fn smtp_auth_filter() -> CelRule {
    filter_rule(&Placeholder::SMTP_AUTH, "an SMTP AUTH query")
}

fn filter_rule(allowed: &[Placeholder], what: &str) -> CelRule {
    CelRule::new(
        format!("self.matches({})", cel_string(&placeholder_regex(allowed))),
        format!(
            "unknown placeholder, or one {what} cannot use (allowed here: {}; write \\7b and \\7d for literal braces)",
            placeholder_list(allowed)
        ),
    )
}

/// A duration string whose every number is zero (`0s`, `0.0m`, `0h0s`).
const ZERO_DURATION: &str = r"^(?:[0.]+(?:ns|us|ms|s|m|h|d))+$";

/// A duration that must be greater than zero (timeouts).
pub fn positive_duration() -> CelRule {
    CelRule::new(
        format!("!self.matches({})", cel_string(ZERO_DURATION)),
        "must be greater than 0",
    )
}

/// A duration of at least one second (`CrlSource.spec.schedule.interval`). Sub-second
/// values are recognised when written in `ns`/`us`/`ms` only, with few and short enough
/// numbers that `duration()` cannot overflow; anything else at least `1s` long is either
/// decided here or left to the controller, which applies the same limit.
pub fn at_least_one_second() -> CelRule {
    let sub_second = r"^(?:[0-9]{1,4}(?:\.[0-9]+)?(?:ns|us|ms)){1,8}$";
    CelRule::new(
        format!(
            "!self.matches({}) && (!self.matches({}) || duration(self) >= duration('1s'))",
            cel_string(ZERO_DURATION),
            cel_string(sub_second)
        ),
        "must be at least 1s",
    )
}

/// `Listener.spec.tls.revocation.ocsp.responderUrl`: empty, or an `http://` or
/// `https://` URL with a host and no white space (what the compiler checks).
pub fn ocsp_responder_url() -> CelRule {
    CelRule::new(
        r"self == '' || self.matches('^https?://[^/?#\\s]+[^\\s]*$')",
        "must be empty (the certificate's Authority Information Access) or an http:// or https:// URL",
    )
}

/// `CrlSource.spec.discovery.allowedUrlPrefixes`: each entry an `http://` or `https://`
/// prefix naming a host (what `postern_config::is_url_prefix` checks).
pub fn url_prefixes() -> CelRule {
    CelRule::new(
        r"self.all(p, p.matches('^https?://[^/\\s]+[^\\s]*$'))",
        "every entry must be an http:// or https:// URL prefix naming a host, e.g. http://crl.example.mil/",
    )
}

/// `CrlSource.spec.discovery`: something to discover from.
pub fn crl_discovery() -> CelRule {
    CelRule::new(
        "has(self.fromCaBundle) || (has(self.fromPresentedCertificates) && self.fromPresentedCertificates)",
        "discovers nothing: set fromCaBundle and/or fromPresentedCertificates",
    )
}

/// `CrlSourceSpec`: a URL to fetch or a way to discover them.
pub fn crl_source_spec() -> CelRule {
    CelRule::new(
        "has(self.primaryUrl) || has(self.discovery)",
        "primaryUrl is required unless the source has discovery",
    )
}

/// `ListenerSpec`: rules between its fields.
pub fn listener_spec() -> CelRules {
    CelRules(vec![
        CelRule::new(
            "!has(self.implicitTls) || !self.implicitTls || has(self.tls)",
            "implicitTls needs a server certificate: set tls.certificateSecretRef",
        ),
        CelRule::new(
            format!(
                "!has(self.maxConnectionsPerClient) || self.maxConnectionsPerClient <= \
                 (has(self.maxConnections) ? self.maxConnections : {})",
                defaults::LISTENER_MAX_CONNECTIONS
            ),
            format!(
                "maxConnectionsPerClient must not exceed maxConnections (default {}): set it \
                 below maxConnections so that one client cannot take every connection slot",
                defaults::LISTENER_MAX_CONNECTIONS
            ),
        ),
    ])
}

/// `Listener.spec.hostname`: what the gateway's validator calls a host name.
pub fn hostname() -> CelRule {
    CelRule::new(
        r"self.matches('^[A-Za-z0-9._:\\[\\]-]+$')",
        "not a host name (letters, digits, '.', '-', '_', ':', '[', ']'; it goes into greetings and Received headers)",
    )
}

/// `Listener.spec.nextHop.host`: no white space.
pub fn next_hop_host() -> CelRule {
    CelRule::new(r"!self.matches('\\s')", "not a host: contains white space")
}

/// `MailFlowPolicySpec`: TLS settings that cannot hold together.
pub fn mail_flow_policy_spec() -> CelRules {
    let disabled = "has(self.tls) && self.tls == 'Disabled'";
    CelRules(vec![
        CelRule::new(
            format!(
                "!({disabled} && has(self.verifyClientCertificate) && self.verifyClientCertificate)"
            ),
            "verifyClientCertificate: a client certificate can only be verified over TLS, but tls is Disabled",
        ),
        CelRule::new(
            format!(
                "!({disabled} && has(self.requireTlsForSmtpAuth) && self.requireTlsForSmtpAuth)"
            ),
            "requireTlsForSmtpAuth: AUTH would never be offered: it requires TLS, but tls is Disabled",
        ),
    ])
}

/// `LdapProfileSpec`: StartTLS on a server that is already TLS.
pub fn ldap_profile_spec() -> CelRules {
    CelRules(vec![CelRule::new(
        "!has(self.startTls) || !self.startTls || self.servers.all(s, !s.url.startsWith('ldaps://'))",
        "startTls: StartTLS cannot be used on an ldaps:// server, which is already TLS",
    )])
}

/// `LdapProfile.spec.baseDn`: a DN has at least one `attribute=value`.
pub fn base_dn() -> CelRule {
    CelRule::new("self.contains('=')", "not a DN (e.g. dc=example,dc=org)")
}

/// `SmtpAuthProfileSpec`: the section of its type, and only that one.
pub fn smtp_auth_profile_spec() -> CelRules {
    CelRules(vec![
        CelRule::new(
            "self.type == 'Certificate' ? has(self.certificate) : has(self.ldap)",
            "type: Certificate needs spec.certificate; type: Ldap needs spec.ldap",
        ),
        CelRule::new(
            "!(has(self.certificate) && has(self.ldap))",
            "set only the section of the profile's type: spec.certificate (type: Certificate) or spec.ldap (type: Ldap); a Certificate profile reaches an Ldap one through allowSmtpAuthFallback and fallbackProfileRef",
        ),
    ])
}

/// `SmtpAuthProfile.spec.certificate`: the fallback and its switch go together.
pub fn certificate_auth_spec() -> CelRules {
    let allowed = "has(self.allowSmtpAuthFallback) && self.allowSmtpAuthFallback";
    CelRules(vec![
        CelRule::new(
            format!("!has(self.fallbackProfileRef) || ({allowed})"),
            "fallbackProfileRef is used only with allowSmtpAuthFallback: true",
        ),
        CelRule::new(
            format!("!({allowed}) || has(self.fallbackProfileRef)"),
            "allowSmtpAuthFallback: true needs fallbackProfileRef: name the type: Ldap SmtpAuthProfile that checks SMTP AUTH",
        ),
    ])
}

/// The whole `SmtpAuthProfile`: a profile cannot be its own fallback (needs the name).
pub fn smtp_auth_profile_object() -> CelRule {
    CelRule::new(
        "!has(self.spec.certificate) || !has(self.spec.certificate.fallbackProfileRef) || \
         self.spec.certificate.fallbackProfileRef.name != self.metadata.name",
        "spec.certificate.fallbackProfileRef: a profile cannot be its own fallback",
    )
}

/// `SmtpReply`: the enhanced code's class is the reply code's.
pub fn smtp_reply() -> CelRules {
    CelRules(vec![CelRule::new(
        "!has(self.enhancedCode) || self.enhancedCode.startsWith(string(self.code / 100) + '.')",
        "the class of enhancedCode (its first digit) must match code, e.g. 5.7.13 with 525",
    )])
}

/// `SmtpReply.text`: one line of text, not blank.
pub fn reply_text() -> CelRule {
    CelRule::new(
        r"!self.matches('[\\x{0}-\\x{1f}\\x{7f}-\\x{9f}]') && !self.matches('^\\s*$')",
        "must be one line of text",
    )
}

/// `ThrottleLimitSpec`: the window is a period between 1s and 24h unless the throttle
/// is off (`failures: 0`). A window written in days is left to the controller.
pub fn throttle_limit() -> CelRules {
    let max = postern_config::validate::MAX_THROTTLE_WINDOW.as_secs();
    CelRules(vec![CelRule::new(
        format!(
            "(has(self.failures) && self.failures == 0) || !has(self.window) || \
             self.window.contains('d') || \
             (duration(self.window) >= duration('1s') && duration(self.window) <= duration('{max}s'))"
        ),
        "window must be between 1s and 24h (set failures: 0 to turn this throttle off)",
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_regex_is_built_from_the_grammar_constants() {
        assert_eq!(
            placeholder_regex(&Placeholder::SMTP_AUTH),
            r"^(?:[^{}]|\{(?:u|t)\})*$"
        );
        assert_eq!(cel_string(r"a\b'c"), r"'a\\b\'c'");
    }
}
