//! Reading one object's inputs: Secrets, ConfigMaps, durations, quantities. Every
//! problem becomes a diagnostic naming the field, never a panic or a silent default.

use postern_config::{Duration, pem};
use postern_crds::{CaBundle, SecretKeyRef};

use super::report::{Diagnostic, Reason};
use super::secret_use::SecretUse;
use super::snapshot::{SecretData, Snapshot};

/// Diagnostics of one object as they are collected.
#[derive(Debug, Default)]
pub(crate) struct Diags(pub(crate) Vec<Diagnostic>);

impl Diags {
    pub(crate) fn error(
        &mut self,
        field: impl Into<String>,
        reason: Reason,
        msg: impl Into<String>,
    ) {
        self.0.push(Diagnostic::error(field, reason, msg));
    }

    pub(crate) fn warning(
        &mut self,
        field: impl Into<String>,
        reason: Reason,
        msg: impl Into<String>,
    ) {
        self.0.push(Diagnostic::warning(field, reason, msg));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.0
            .iter()
            .any(|d| d.severity == super::report::Severity::Error)
    }
}

/// Read-only access to the snapshot's Secrets and ConfigMaps.
pub(crate) struct Inputs<'a> {
    pub(crate) snapshot: &'a Snapshot,
}

impl Inputs<'_> {
    /// Secret `name`, when it exists and its owner labelled it for `use_`. Nothing of a
    /// Secret that is not labelled for the use is read, not even its keys.
    pub(crate) fn secret(
        &self,
        field: &str,
        name: &str,
        use_: SecretUse,
        d: &mut Diags,
    ) -> Option<&SecretData> {
        let Some(secret) = self.snapshot.secrets.get(name) else {
            d.error(
                field,
                Reason::SecretNotFound,
                format!("Secret {name:?} not found"),
            );
            return None;
        };
        if !use_.permitted_by(secret.use_label.as_deref()) {
            d.error(
                field,
                Reason::SecretUseNotAllowed,
                use_.refusal(name, secret.use_label.as_deref()),
            );
            return None;
        }
        Some(secret)
    }

    /// The bytes of `r.key` in Secret `r.name`, which must be labelled for `use_`.
    pub(crate) fn secret_key(
        &self,
        field: &str,
        r: &SecretKeyRef,
        use_: SecretUse,
        d: &mut Diags,
    ) -> Option<Vec<u8>> {
        let secret = self.secret(field, &r.name, use_, d)?;
        match secret.data.get(&r.key) {
            Some(v) => Some(v.clone()),
            None => {
                d.error(
                    field,
                    Reason::SecretKeyMissing,
                    format!(
                        "Secret {:?} has no key {:?} (it has: {})",
                        r.name,
                        r.key,
                        keys(secret.data.keys())
                    ),
                );
                None
            }
        }
    }

    /// The bytes of `key` in ConfigMap `name`.
    pub(crate) fn config_map_key(
        &self,
        field: &str,
        name: &str,
        key: &str,
        d: &mut Diags,
    ) -> Option<Vec<u8>> {
        let Some(cm) = self.snapshot.config_maps.get(name) else {
            d.error(
                field,
                Reason::ConfigMapNotFound,
                format!("ConfigMap {name:?} not found"),
            );
            return None;
        };
        match cm.data.get(key) {
            Some(v) => Some(v.clone()),
            None => {
                d.error(
                    field,
                    Reason::ConfigMapKeyMissing,
                    format!(
                        "ConfigMap {name:?} has no key {key:?} (it has: {})",
                        keys(cm.data.keys())
                    ),
                );
                None
            }
        }
    }

    /// PEM CA certificates from a `caBundle` (exactly one of `secretRef`, `configMapRef`).
    pub(crate) fn ca_bundle(&self, field: &str, ca: &CaBundle, d: &mut Diags) -> Option<String> {
        match (&ca.secret_ref, &ca.config_map_ref) {
            (Some(r), None) => self.secret_ca_certificates(&format!("{field}.secretRef"), r, d),
            (None, Some(r)) => {
                let sub = format!("{field}.configMapRef");
                let bytes = self.config_map_key(&sub, &r.name, &r.key, d)?;
                let origin = format!("ConfigMap {:?} key {:?}", r.name, r.key);
                pem_certificates(&sub, &origin, bytes, d)
            }
            _ => {
                d.error(
                    field,
                    Reason::InvalidValue,
                    "set exactly one of secretRef and configMapRef",
                );
                None
            }
        }
    }

    /// PEM CA certificates from a Secret key (`field` names the `secretRef`).
    pub(crate) fn secret_ca_certificates(
        &self,
        field: &str,
        r: &SecretKeyRef,
        d: &mut Diags,
    ) -> Option<String> {
        let bytes = self.secret_key(field, r, SecretUse::Ca, d)?;
        let origin = format!("Secret {:?} key {:?}", r.name, r.key);
        pem_certificates(field, &origin, bytes, d)
    }
}

/// `bytes` as PEM text holding at least one certificate.
fn pem_certificates(field: &str, origin: &str, bytes: Vec<u8>, d: &mut Diags) -> Option<String> {
    let text = pem_text(field, origin, bytes, d)?;
    match pem::certificates(&text) {
        Ok(_) => Some(text),
        Err(e) => {
            d.error(field, Reason::InvalidCertificate, format!("{origin}: {e}"));
            None
        }
    }
}

fn keys<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "no keys".into()
    } else {
        list.join(", ")
    }
}

/// PEM must be UTF-8 text.
pub(crate) fn pem_text(field: &str, origin: &str, bytes: Vec<u8>, d: &mut Diags) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(_) => {
            d.error(
                field,
                Reason::InvalidCertificate,
                format!("{origin} is not PEM text (DER is not accepted; convert it with `openssl x509 -inform der`)"),
            );
            None
        }
    }
}

/// A duration field, or its default when omitted.
pub(crate) fn duration(
    field: &str,
    value: Option<&String>,
    default: Duration,
    d: &mut Diags,
) -> Duration {
    match value {
        None => default,
        Some(text) => match postern_config::duration::parse_duration(text) {
            Ok(v) => Duration(v),
            Err(e) => {
                d.error(field, Reason::InvalidValue, e.to_string());
                default
            }
        },
    }
}
