//! The admission decision, pure: the incoming object is compiled with the live objects of
//! its namespace (the same `compile`, and through it the gateway's `validate`, as the
//! controller and `postern plan`), and only what the compiler says about that object
//! counts.
//!
//! An error in the object's own spec, or a reference to something that exists but cannot
//! serve (a fallback that is not `type: Ldap`, a Secret that holds no certificate), is
//! refused with the plan's lines. A reference to an object, Secret or ConfigMap that does
//! not exist yet, or is not accepted yet, is allowed with a warning: GitOps tools apply in
//! any order, and the status (`ResolvedRefs`) reports it until it resolves. Warnings of
//! the compiler (`Ignored`, `IssuerNotBound`) are passed on as admission warnings.

use crate::compile::{self, Diagnostic, ObjectKey, Reason, Severity, Snapshot};

/// What the webhook answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The lines of the problems that refuse the object; empty: allowed.
    pub refusals: Vec<String>,
    /// Admission warnings (shown by kubectl as `Warning: ...`).
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Whether the object is allowed.
    pub(crate) fn allowed(&self) -> bool {
        self.refusals.is_empty()
    }

    /// The refusal message: every problem, one per line after a summary.
    pub(crate) fn message(&self) -> String {
        let mut out = format!(
            "postern: {} error(s), as `postern plan` reports them:",
            self.refusals.len()
        );
        for line in &self.refusals {
            out.push_str("\n  ");
            out.push_str(line);
        }
        out
    }
}

/// A reference whose target may simply not be applied yet.
fn awaits_another_object(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::RefNotFound
            | Reason::RefNotAccepted
            | Reason::SecretNotFound
            | Reason::ConfigMapNotFound
    )
}

/// Compiles `snapshot` (which holds the incoming object `key` in place of any stored
/// version of it) and judges `key` by what the compiler reports on it.
pub(crate) fn review(snapshot: &Snapshot, key: &ObjectKey) -> Verdict {
    let compiled = compile::compile(snapshot, None);
    let mut verdict = Verdict {
        refusals: Vec::new(),
        warnings: Vec::new(),
    };
    let Some(report) = compiled.report.get(key.kind, &key.name) else {
        return verdict;
    };
    for d in &report.diagnostics {
        judge(key, d, &mut verdict);
    }
    verdict
}

fn judge(key: &ObjectKey, d: &Diagnostic, verdict: &mut Verdict) {
    let line = d.describe(key);
    match d.severity {
        Severity::Error if awaits_another_object(d.reason) => verdict.warnings.push(format!(
            "{line}; allowed now, its status says so until it resolves"
        )),
        Severity::Error => verdict.refusals.push(line),
        Severity::Warning => verdict.warnings.push(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Kind;
    use crate::operator::objects::StoredObject;
    use kube::api::DynamicObject;

    fn object(kind: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": "ns"}, "spec": spec,
        }))
        .unwrap()
    }

    fn snapshot(objects: &[(Kind, DynamicObject)]) -> Snapshot {
        let mut s = Snapshot {
            namespace: Some("ns".into()),
            ..Default::default()
        };
        for (kind, o) in objects {
            StoredObject::read(*kind, o.clone()).add_to_snapshot(&mut s);
        }
        s
    }

    fn policy(name: &str) -> (Kind, DynamicObject) {
        (
            Kind::MailFlowPolicy,
            object(
                "MailFlowPolicy",
                name,
                serde_json::json!({"action": "Relay", "tls": "Disabled"}),
            ),
        )
    }

    fn listener(name: &str, port: u16, policy: &str) -> (Kind, DynamicObject) {
        (
            Kind::Listener,
            object(
                "Listener",
                name,
                serde_json::json!({"port": port, "hostname": "mx.example.org",
                    "defaultMailFlowPolicyRef": {"name": policy},
                    "nextHop": {"host": "127.0.0.1", "tls": "Disabled"}}),
            ),
        )
    }

    #[test]
    fn a_valid_object_passes() {
        let s = snapshot(&[policy("p"), listener("a", 2525, "p")]);
        let v = review(&s, &ObjectKey::new(Kind::Listener, "a"));
        assert!(v.allowed(), "{v:?}");
        assert!(v.warnings.is_empty(), "{v:?}");
    }

    #[test]
    fn a_missing_reference_passes_with_a_warning() {
        let s = snapshot(&[listener("a", 2525, "later")]);
        let v = review(&s, &ObjectKey::new(Kind::Listener, "a"));
        assert!(v.allowed(), "{v:?}");
        assert_eq!(v.warnings.len(), 1, "{v:?}");
        assert!(
            v.warnings[0].starts_with(
                "Listener/a: spec.defaultMailFlowPolicyRef: MailFlowPolicy \"later\" not found (RefNotFound)"
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_port_taken_by_a_live_listener_is_refused() {
        let s = snapshot(&[
            policy("p"),
            listener("a", 2525, "p"),
            listener("b", 2525, "p"),
        ]);
        let v = review(&s, &ObjectKey::new(Kind::Listener, "b"));
        assert!(!v.allowed());
        assert!(
            v.message().contains("Listener/b: spec.port:")
                && v.message().contains("(PortConflict)"),
            "{}",
            v.message()
        );
    }

    #[test]
    fn a_fallback_to_a_certificate_profile_is_refused() {
        let profile =
            |name: &str, spec| (Kind::SmtpAuthProfile, object("SmtpAuthProfile", name, spec));
        let s = snapshot(&[
            (
                Kind::LdapProfile,
                object(
                    "LdapProfile",
                    "l",
                    serde_json::json!({"servers": [{"url": "ldap://127.0.0.1"}], "baseDn": "dc=x",
                        "certificateAuthQuery": {"name": "c", "filter": "(cn={cn})"}}),
                ),
            ),
            profile(
                "other",
                serde_json::json!({"type": "Certificate", "certificate": {"ldapProfileRef": {"name": "l"}}}),
            ),
            profile(
                "cert",
                serde_json::json!({"type": "Certificate", "certificate": {"ldapProfileRef": {"name": "l"},
                    "allowSmtpAuthFallback": true, "fallbackProfileRef": {"name": "other"}}}),
            ),
        ]);
        let v = review(&s, &ObjectKey::new(Kind::SmtpAuthProfile, "cert"));
        assert!(!v.allowed());
        assert!(v.message().contains("(InvalidKind)"), "{}", v.message());
    }
}
