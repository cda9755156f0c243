//! A field-by-field diff of two gateway configurations, grouped by section and object,
//! for `postern plan`. Pure; secret values never appear in it (only that they changed),
//! and PEM material is summarised (count, first subject, fingerprint).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use postern_config::GatewayConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    /// New.
    Added,
    /// Gone.
    Removed,
    /// Some fields differ.
    Changed,
}

impl Change {
    /// The mark and note a plan prints before and after the object's name.
    pub(crate) fn mark(self) -> (char, &'static str) {
        match self {
            Change::Added => ('+', " (new)"),
            Change::Removed => ('-', " (removed)"),
            Change::Changed => ('~', ""),
        }
    }
}

/// One field that differs. Values are display strings, already redacted/summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldChange {
    /// Path inside the object, e.g. `tls.clientCaPem` or `hostAccessTable[0].policy`.
    pub path: String,
    /// Before (`None`: absent).
    pub old: Option<String>,
    /// After (`None`: absent).
    pub new: Option<String>,
    /// The value is secret: never print it.
    pub sensitive: bool,
}

/// One object that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectChange {
    /// Name in the section.
    pub name: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The fields (all of them for added/removed objects).
    pub fields: Vec<FieldChange>,
}

/// One section of the configuration with its changed objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SectionChange {
    /// Key in the document, e.g. `listeners`.
    pub key: &'static str,
    /// Heading for humans, e.g. `Listeners`.
    pub title: &'static str,
    /// Changed objects, by name.
    pub objects: Vec<ObjectChange>,
}

/// The whole diff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConfigDiff {
    /// Document-level fields that differ (`apiVersion`, `source.namespace`).
    pub document: Vec<FieldChange>,
    /// Sections with changes, in document order.
    pub sections: Vec<SectionChange>,
}

const SECTIONS: [(&str, &str); 5] = [
    ("listeners", "Listeners"),
    ("policies", "Mail flow policies"),
    ("authProfiles", "SMTP authentication profiles"),
    ("ldapProfiles", "LDAP profiles and queries"),
    ("crlSources", "CRL sources"),
];

impl ConfigDiff {
    /// Whether nothing differs.
    pub(crate) fn is_empty(&self) -> bool {
        self.document.is_empty() && self.sections.is_empty()
    }

    /// (added, changed, removed) object counts.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for o in self.sections.iter().flat_map(|s| &s.objects) {
            match o.change {
                Change::Added => c.0 += 1,
                Change::Changed => c.1 += 1,
                Change::Removed => c.2 += 1,
            }
        }
        c
    }

    /// A readable rendering, terraform style (`+` add, `~` change, `-` remove).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let (added, changed, removed) = self.counts();
        if self.is_empty() {
            out.push_str("No changes. The rendered gateway configuration is up to date.\n");
            return out;
        }
        let _ = writeln!(
            out,
            "Plan: {added} to add, {changed} to change, {removed} to remove."
        );
        if !self.document.is_empty() {
            out.push_str("\nDocument\n");
            for f in &self.document {
                write_field(&mut out, f, "    ");
            }
        }
        for section in &self.sections {
            let _ = writeln!(out, "\n{}", section.title);
            for o in &section.objects {
                let (mark, note) = o.change.mark();
                let _ = writeln!(out, "  {mark} {}{note}", o.name);
                if o.change != Change::Removed {
                    for f in &o.fields {
                        write_field(&mut out, f, "      ");
                    }
                }
            }
        }
        out
    }
}

fn write_field(out: &mut String, f: &FieldChange, indent: &str) {
    let _ = match (&f.old, &f.new) {
        (None, Some(_)) if f.sensitive => writeln!(out, "{indent}+ {}: (sensitive value)", f.path),
        (None, Some(new)) => writeln!(out, "{indent}+ {}: {new}", f.path),
        (Some(_), None) => writeln!(out, "{indent}- {}", f.path),
        (Some(_), Some(_)) if f.sensitive => {
            writeln!(out, "{indent}~ {}: (sensitive value changed)", f.path)
        }
        (Some(old), Some(new)) => writeln!(out, "{indent}~ {}: {old} -> {new}", f.path),
        (None, None) => Ok(()),
    };
}

/// Compare two configurations.
pub(crate) fn diff(old: &GatewayConfig, new: &GatewayConfig) -> ConfigDiff {
    let old_v = serde_json::to_value(old).expect("the configuration model always serialises");
    let new_v = serde_json::to_value(new).expect("the configuration model always serialises");
    let mut result = ConfigDiff::default();
    for key in ["apiVersion", "source"] {
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        if let Some(v) = old_v.get(key) {
            flatten(key, v, &mut a);
        }
        if let Some(v) = new_v.get(key) {
            flatten(key, v, &mut b);
        }
        result.document.extend(compare(&a, &b));
    }
    let empty = serde_json::Map::new();
    for (key, title) in SECTIONS {
        let a = old_v.get(key).and_then(Value::as_object).unwrap_or(&empty);
        let b = new_v.get(key).and_then(Value::as_object).unwrap_or(&empty);
        let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
        names.sort();
        names.dedup();
        let mut objects = Vec::new();
        for name in names {
            let mut fa = BTreeMap::new();
            let mut fb = BTreeMap::new();
            if let Some(v) = a.get(name) {
                flatten("", v, &mut fa);
            }
            if let Some(v) = b.get(name) {
                flatten("", v, &mut fb);
            }
            let change = match (a.contains_key(name), b.contains_key(name)) {
                (false, true) => Change::Added,
                (true, false) => Change::Removed,
                _ => Change::Changed,
            };
            let fields = compare(&fa, &fb);
            if change != Change::Changed || !fields.is_empty() {
                objects.push(ObjectChange {
                    name: name.clone(),
                    change,
                    fields,
                });
            }
        }
        if !objects.is_empty() {
            result.sections.push(SectionChange {
                key,
                title,
                objects,
            });
        }
    }
    result
}

/// A leaf: its display value and whether it is secret.
type Leaves = BTreeMap<String, (String, bool)>;

fn compare(a: &Leaves, b: &Leaves) -> Vec<FieldChange> {
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let old = a.get(p);
            let new = b.get(p);
            if old.map(|v| &v.0) == new.map(|v| &v.0) {
                return None;
            }
            Some(FieldChange {
                path: p.clone(),
                sensitive: old.is_some_and(|v| v.1) || new.is_some_and(|v| v.1),
                old: old.map(|v| v.0.clone()),
                new: new.map(|v| v.0.clone()),
            })
        })
        .collect()
}

fn is_sensitive(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(last, "privateKeyPem" | "password")
}

fn flatten(prefix: &str, v: &Value, out: &mut Leaves) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&join(k), v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let list: Vec<String> = items.iter().map(scalar).collect();
            out.insert(prefix.to_owned(), (format!("[{}]", list.join(", ")), false));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => {
            let sensitive = is_sensitive(prefix);
            let shown = if sensitive {
                // Kept only to detect a change; never printed.
                format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(scalar(other).as_bytes()))
                )
            } else if let Some(text) = other.as_str().filter(|t| t.contains("-----BEGIN")) {
                summarise_pem(text)
            } else {
                scalar(other)
            };
            out.insert(prefix.to_owned(), (shown, sensitive));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            if s.is_empty() || s.contains([' ', '"', ',', '[', ']']) || s.parse::<f64>().is_ok() {
                format!("{s:?}")
            } else {
                s.clone()
            }
        }
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// `2 certificates, first CN=Example CA, sha256:1a2b3c4d5e6f` — enough to see what changed.
fn summarise_pem(text: &str) -> String {
    let digest = hex::encode(&Sha256::digest(text.as_bytes())[..6]);
    match postern_config::pem::certificates(text) {
        Ok(certs) => {
            let subject = x509_parser::parse_x509_certificate(&certs[0])
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_default();
            let n = certs.len();
            let plural = if n == 1 { "" } else { "s" };
            format!("<{n} certificate{plural}, first {subject}, sha256:{digest}>")
        }
        Err(_) => format!("<PEM, sha256:{digest}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::{LdapBind, LdapCache, LdapProfile, LdapTimeouts};

    fn ldap(password: &str, filter: &str) -> LdapProfile {
        LdapProfile {
            servers: vec!["ldap://127.0.0.1:3389".into()],
            start_tls: false,
            ca_pem: None,
            bind: Some(LdapBind {
                dn: "cn=postern".into(),
                password: password.into(),
            }),
            base_dn: "dc=example,dc=org".into(),
            timeouts: LdapTimeouts::default(),
            max_connections: 8,
            cache: LdapCache::default(),
            certificate_auth_query: Some(postern_config::CertificateAuthQuery {
                name: "q".into(),
                filter: filter.into(),
                user_id_attribute: "uid".into(),
            }),
            smtp_auth_query: None,
            mail_attributes: postern_config::sender::default_mail_attributes(),
        }
    }

    #[test]
    fn secrets_are_never_printed() {
        let mut a = GatewayConfig::default();
        a.ldap_profiles
            .insert("corp".into(), ldap("hunter2", "(cn={cn})"));
        let mut b = a.clone();
        b.ldap_profiles
            .insert("corp".into(), ldap("s3cret!", "(uid={cn})"));
        let d = diff(&a, &b);
        let text = d.render();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret!"),
            "{text}"
        );
        assert!(
            text.contains("bind.password: (sensitive value changed)"),
            "{text}"
        );
        assert!(
            text.contains("certificateAuthQuery.filter: \"(cn={cn})\" -> \"(uid={cn})\"")
                || text.contains("certificateAuthQuery.filter: (cn={cn}) -> (uid={cn})"),
            "{text}"
        );
        assert_eq!(d.counts(), (0, 1, 0));
        let added = diff(&GatewayConfig::default(), &b).render();
        assert!(
            added.contains("+ corp (new)") && added.contains("bind.password: (sensitive value)"),
            "{added}"
        );
        assert!(!added.contains("s3cret!"));
    }

    #[test]
    fn no_change_is_empty() {
        let mut a = GatewayConfig::default();
        a.ldap_profiles
            .insert("corp".into(), ldap("x", "(cn={cn})"));
        assert!(diff(&a, &a.clone()).is_empty());
    }
}
