//! The compiler: one namespace's resources → one gateway configuration + a per-object
//! report. Pure: no I/O, no clock, deterministic for a given input.
//!
//! How a broken object is contained:
//! 1. Every object is rendered on its own; its spec problems and unresolvable references
//!    (missing objects, Secrets, keys; wrong kinds; bad certificates) are diagnostics
//!    on that object.
//! 2. An object is put into the configuration only if everything it refers to is in it.
//!    When its current version cannot be used and the last good configuration (passed
//!    as `previous`) has a rendering of it, that rendering stays in service — so a typo
//!    never takes mail down. Deleted objects are never kept.
//! 3. Listeners that would bind the same port are resolved before validation: the one
//!    already serving that port keeps it, then the oldest, then the first by name.
//! 4. The result is checked with the gateway's own `validate` (`postern_config`); each error is mapped back
//!    to its object, which is dropped (or falls back to its previous rendering), and the
//!    whole is rebuilt until the configuration validates. The published configuration
//!    therefore always passes `validate`.

mod crl_discovery;
mod crl_source;
mod fields;
mod inputs;
mod issuer_binding;
mod ldap_profile;
mod listener;
mod mail_flow_policy;
mod report;
mod revocation;
mod secret_use;
mod smtp_auth_profile;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use postern_config::{self as gw, AuthBackend, AuthProfile, GatewayConfig, Source, validate};
use postern_crds::{
    LdapProfileSpec, MailFlowPolicySpec, PolicyAction, SmtpAuthProfileSpec, TlsMode,
};

pub use report::{
    CompiledCondition, Diagnostic, Kind, ObjectKey, ObjectReport, Reason, Rendered, Report,
    Severity,
};
pub use secret_use::{SECRET_USE_LABEL, SecretUse};
pub use snapshot::{ConfigMapData, SecretData, Snapshot, Unreadable};

use inputs::{Diags, Inputs};
use smtp_auth_profile::AuthDraft;

/// The compiler's output.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The gateway configuration; always passes `postern_config::validate`.
    pub config: GatewayConfig,
    /// What the compiler found about each object.
    pub report: Report,
}

/// Compile `snapshot`. `previous` is the last configuration that was published (or
/// rendered); broken objects keep their rendering from it.
pub fn compile(snapshot: &Snapshot, previous: Option<&GatewayConfig>) -> Compiled {
    let index = Index::new(snapshot);
    let inputs = Inputs { snapshot };
    let mut entries = draft_all(snapshot, &index, &inputs);
    let Assembled {
        mut config,
        versions,
        mut late,
    } = assemble(&entries, &index, previous);
    config.source = snapshot.namespace.as_ref().map(|ns| Source {
        namespace: Some(ns.clone()),
    });
    for (key, warning) in issuer_binding::warnings(&config) {
        late.entry(key).or_default().push(warning);
    }
    let report = report(&mut entries, &versions, &mut late);
    Compiled { config, report }
}

/// The specs of the snapshot by name.
pub(crate) struct Index<'a> {
    pub(crate) ldap_profiles: BTreeMap<&'a str, &'a LdapProfileSpec>,
    pub(crate) smtp_auth_profiles: BTreeMap<&'a str, &'a SmtpAuthProfileSpec>,
    pub(crate) mail_flow_policies: BTreeMap<&'a str, &'a MailFlowPolicySpec>,
    /// Objects that exist but could not be read: references to them resolve to whatever
    /// rendering of them is in force.
    pub(crate) unreadable: BTreeSet<ObjectKey>,
}

impl Index<'_> {
    pub(crate) fn is_unreadable(&self, kind: Kind, name: &str) -> bool {
        self.unreadable.contains(&ObjectKey::new(kind, name))
    }
}

impl<'a> Index<'a> {
    fn new(s: &'a Snapshot) -> Self {
        fn by_name<'a, K: kube::Resource, S>(
            items: &'a [std::sync::Arc<K>],
            spec: impl Fn(&'a K) -> &'a S,
        ) -> BTreeMap<&'a str, &'a S> {
            items
                .iter()
                .filter_map(|o| Some((o.meta().name.as_deref()?, spec(o.as_ref()))))
                .collect()
        }
        Self {
            ldap_profiles: by_name(&s.ldap_profiles, |o| &o.spec),
            smtp_auth_profiles: by_name(&s.smtp_auth_profiles, |o| &o.spec),
            mail_flow_policies: by_name(&s.mail_flow_policies, |o| &o.spec),
            unreadable: s.unreadable.iter().map(|u| u.key.clone()).collect(),
        }
    }
}

/// One object's current version, rendered as far as it can be on its own.
#[derive(Clone, Debug)]
enum Draft {
    Ldap(gw::LdapProfile),
    Crl(gw::CrlSource),
    Policy(gw::MailFlowPolicy),
    Auth(AuthDraft),
    Listener(gw::Listener),
}

/// One object's entry in the gateway configuration.
#[derive(Clone, Debug)]
enum Rendering {
    Ldap(gw::LdapProfile),
    Crl(gw::CrlSource),
    Policy(gw::MailFlowPolicy),
    Auth(AuthProfile),
    Listener(gw::Listener),
}

/// Which version of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    Current,
    Previous,
}

/// Everything known about one object before assembly. Its previous rendering is not
/// copied here: it is looked up in the previous configuration only for an object whose
/// current version cannot be used (most objects never need it).
#[derive(Debug)]
struct Entry {
    key: ObjectKey,
    generation: Option<i64>,
    created: Option<String>,
    current: Option<Draft>,
    current_deps: Vec<(ObjectKey, String)>,
    diags: Vec<Diagnostic>,
}

/// Renders one object's current version: (name, dependencies out, diagnostics out).
type DraftFn<'a> = dyn FnMut(&str, &mut Vec<(ObjectKey, String)>, &mut Diags) -> Option<Draft> + 'a;

fn draft_all(s: &Snapshot, index: &Index<'_>, inputs: &Inputs<'_>) -> BTreeMap<ObjectKey, Entry> {
    let mut entries = BTreeMap::new();
    let mut add = |kind: Kind, meta: &kube::api::ObjectMeta, f: &mut DraftFn<'_>| {
        let Some(name) = meta.name.clone() else {
            return;
        };
        let mut deps = Vec::new();
        let mut d = Diags::default();
        let current = f(&name, &mut deps, &mut d);
        entries.insert(
            ObjectKey::new(kind, &name),
            Entry {
                key: ObjectKey::new(kind, &name),
                generation: meta.generation,
                created: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
                current,
                current_deps: deps,
                diags: d.0,
            },
        );
    };
    for o in &s.ldap_profiles {
        add(Kind::LdapProfile, &o.metadata, &mut |_, _, d| {
            ldap_profile::render(&o.spec, inputs, d).map(Draft::Ldap)
        });
    }
    for o in &s.crl_sources {
        add(Kind::CrlSource, &o.metadata, &mut |_, _, d| {
            crl_source::render(&o.spec, inputs, d).map(Draft::Crl)
        });
    }
    for o in &s.mail_flow_policies {
        add(Kind::MailFlowPolicy, &o.metadata, &mut |_, _, d| {
            mail_flow_policy::render(&o.spec, d).map(Draft::Policy)
        });
    }
    for o in &s.smtp_auth_profiles {
        add(Kind::SmtpAuthProfile, &o.metadata, &mut |name, deps, d| {
            smtp_auth_profile::render(name, &o.spec, index, deps, d).map(Draft::Auth)
        });
    }
    for o in &s.listeners {
        add(Kind::Listener, &o.metadata, &mut |_, deps, d| {
            listener::render(&o.spec, index, inputs, deps, d).map(Draft::Listener)
        });
    }
    for u in &s.unreadable {
        entries.entry(u.key.clone()).or_insert_with(|| Entry {
            key: u.key.clone(),
            generation: u.generation,
            created: None,
            current: None,
            current_deps: Vec::new(),
            diags: vec![Diagnostic::error(
                u.field.clone(),
                u.reason,
                u.message.clone(),
            )],
        });
    }
    entries
}

/// The rendering of `kind/name` in the previous configuration, and what it refers to.
fn previous_rendering(
    previous: Option<&GatewayConfig>,
    kind: Kind,
    name: &str,
) -> Option<(Rendering, Vec<ObjectKey>)> {
    let p = previous?;
    Some(match kind {
        Kind::LdapProfile => (
            Rendering::Ldap(p.ldap_profiles.get(name)?.clone()),
            Vec::new(),
        ),
        Kind::CrlSource => (Rendering::Crl(p.crl_sources.get(name)?.clone()), Vec::new()),
        Kind::MailFlowPolicy => (Rendering::Policy(p.policies.get(name)?.clone()), Vec::new()),
        Kind::SmtpAuthProfile => {
            let a = p.auth_profiles.get(name)?;
            let backends = a
                .certificate
                .iter()
                .map(|c| &c.backend)
                .chain(a.smtp_auth.iter().map(|s| &s.backend));
            let deps = backends
                .filter_map(|b| match b {
                    AuthBackend::Ldap { ldap_profile } => {
                        Some(ObjectKey::new(Kind::LdapProfile, ldap_profile))
                    }
                    AuthBackend::Static { .. } => None,
                })
                .collect();
            (Rendering::Auth(a.clone()), deps)
        }
        Kind::Listener => {
            let l = p.listeners.get(name)?;
            let mut deps: Vec<ObjectKey> = std::iter::once(&l.default_policy)
                .chain(l.host_access_table.iter().map(|r| &r.policy))
                .map(|p| ObjectKey::new(Kind::MailFlowPolicy, p))
                .collect();
            deps.extend(
                l.auth_profile
                    .iter()
                    .map(|a| ObjectKey::new(Kind::SmtpAuthProfile, a)),
            );
            (Rendering::Listener(l.clone()), deps)
        }
    })
}

/// The renderings in force, by object.
type Chosen = BTreeMap<ObjectKey, (Version, Rendering)>;

/// Which version of each object is in force.
type Versions = BTreeMap<ObjectKey, Version>;

/// What assembly settled on.
struct Assembled {
    /// The configuration (without its source), which validates.
    config: GatewayConfig,
    /// The version of each object in it.
    versions: Versions,
    /// Diagnostics found on the way.
    late: Late,
}

/// Diagnostics found while assembling (port conflicts, the gateway's validator).
type Late = BTreeMap<ObjectKey, Vec<Diagnostic>>;

fn assemble(
    entries: &BTreeMap<ObjectKey, Entry>,
    index: &Index<'_>,
    previous: Option<&GatewayConfig>,
) -> Assembled {
    let mut rejected: BTreeSet<(ObjectKey, Version)> = BTreeSet::new();
    let mut late: Late = BTreeMap::new();
    // Each round rejects at least one (object, version) pair, so this ends.
    loop {
        let chosen = choose(entries, &rejected, previous);
        let conflicts = port_conflicts(entries, &chosen, previous);
        if !conflicts.is_empty() {
            for (key, version, diag) in conflicts {
                rejected.insert((key.clone(), version));
                late.entry(key).or_default().push(diag);
            }
            continue;
        }
        // The chosen renderings move into the configuration: when it validates, it is
        // the one published (no second copy of every rendering).
        let (config, versions) = build_config(chosen);
        let Err(errors) = validate(&config) else {
            return Assembled {
                config,
                versions,
                late,
            };
        };
        drop(config);
        let mut progress = false;
        for e in errors.0 {
            let Some((section, name)) = &e.object else {
                continue;
            };
            let key = ObjectKey::new(Kind::of_section(*section), name);
            let Some(version) = versions.get(&key) else {
                continue;
            };
            let auth_type = index
                .smtp_auth_profiles
                .get(name.as_str())
                .map(|s| s.type_)
                .filter(|_| key.kind == Kind::SmtpAuthProfile);
            let field = fields::resource_field(&e.field, auth_type);
            let message = match version {
                Version::Current => e.message.clone(),
                Version::Previous => format!(
                    "the previous version cannot be kept in service either: {}",
                    e.message
                ),
            };
            late.entry(key.clone()).or_default().push(Diagnostic::error(
                field,
                e.reason.into(),
                message,
            ));
            progress |= rejected.insert((key, *version));
        }
        if !progress {
            // Unreachable with this validator (every error names an object in force);
            // publishing nothing is still better than publishing an invalid config.
            return Assembled {
                config: GatewayConfig::default(),
                versions: Versions::new(),
                late,
            };
        }
    }
}

/// Pick, in dependency order, the version of each object that can be in force.
fn choose(
    entries: &BTreeMap<ObjectKey, Entry>,
    rejected: &BTreeSet<(ObjectKey, Version)>,
    previous: Option<&GatewayConfig>,
) -> Chosen {
    let mut chosen = Chosen::new();
    // Type Ldap profiles first: Certificate profiles copy their fallback's rendering.
    let order = |e: &&Entry| {
        let certificate_last =
            matches!(e.current, Some(Draft::Auth(AuthDraft::Certificate { .. })));
        (e.key.kind, certificate_last, e.key.name.clone())
    };
    let mut ordered: Vec<&Entry> = entries.values().collect();
    ordered.sort_by_key(order);
    for e in ordered {
        let usable = |v: Version| !rejected.contains(&(e.key.clone(), v));
        let current = e
            .current
            .as_ref()
            .filter(|_| usable(Version::Current))
            .and_then(|draft| {
                if !e.current_deps.iter().all(|(k, _)| chosen.contains_key(k)) {
                    return None;
                }
                complete(draft, &chosen)
            });
        let pick = match current {
            Some(d) => Some((Version::Current, d)),
            None if usable(Version::Previous) => {
                previous_rendering(previous, e.key.kind, &e.key.name)
                    .filter(|(_, deps)| deps.iter().all(|k| chosen.contains_key(k)))
                    .map(|(d, _)| (Version::Previous, d))
            }
            None => None,
        };
        if let Some(p) = pick {
            chosen.insert(e.key.clone(), p);
        }
    }
    chosen
}

/// Fill in what a draft takes from other objects (a Certificate profile's fallback).
fn complete(draft: &Draft, chosen: &Chosen) -> Option<Rendering> {
    Some(match draft.clone() {
        Draft::Ldap(p) => Rendering::Ldap(p),
        Draft::Crl(c) => Rendering::Crl(c),
        Draft::Policy(p) => Rendering::Policy(p),
        Draft::Listener(l) => Rendering::Listener(l),
        Draft::Auth(AuthDraft::Complete(a)) => Rendering::Auth(a),
        Draft::Auth(AuthDraft::Certificate {
            mut profile,
            fallback,
        }) => {
            if let Some(f) = fallback {
                let key = ObjectKey::new(Kind::SmtpAuthProfile, f);
                let Some((_, Rendering::Auth(fp))) = chosen.get(&key) else {
                    return None;
                };
                profile.smtp_auth = Some(fp.smtp_auth.clone()?);
            }
            Rendering::Auth(profile)
        }
    })
}

/// Listeners in force that would bind the same port: every one but the winner loses.
fn port_conflicts(
    entries: &BTreeMap<ObjectKey, Entry>,
    chosen: &Chosen,
    previous: Option<&GatewayConfig>,
) -> Vec<(ObjectKey, Version, Diagnostic)> {
    let overlap = |a: IpAddr, b: IpAddr| a == b || a.is_unspecified() || b.is_unspecified();
    let mut listeners: Vec<(&ObjectKey, Version, &gw::Listener)> = chosen
        .iter()
        .filter_map(|(k, (v, d))| match d {
            Rendering::Listener(l) => Some((k, *v, l)),
            _ => None,
        })
        .collect();
    // Precedence: already serving this address and port; oldest; name.
    listeners.sort_by_key(|(k, _, l)| {
        let serving = previous
            .and_then(|p| p.listeners.get(&k.name))
            .is_some_and(|p| p.port == l.port && overlap(p.address, l.address));
        let created = entries.get(*k).and_then(|e| e.created.clone());
        (!serving, created.is_none(), created, k.name.clone())
    });
    let mut losers = Vec::new();
    let mut lost = BTreeSet::new();
    for (i, (winner, _, w)) in listeners.iter().enumerate() {
        if lost.contains(winner) {
            continue;
        }
        for (loser, version, l) in &listeners[i + 1..] {
            if !lost.contains(loser) && l.port == w.port && overlap(l.address, w.address) {
                lost.insert(*loser);
                let prefix = match version {
                    Version::Current => "",
                    Version::Previous => "the previous version cannot be kept in service either: ",
                };
                losers.push((
                    (*loser).clone(),
                    *version,
                    Diagnostic::error(
                        "spec.port",
                        Reason::PortConflict,
                        format!(
                            "{prefix}port {} on {} is already used by Listener {:?} on {}",
                            l.port, l.address, winner.name, w.address
                        ),
                    ),
                ));
            }
        }
    }
    losers
}

/// The configuration of the chosen renderings (moved, not copied), and which version
/// of each object is in it.
fn build_config(chosen: Chosen) -> (GatewayConfig, Versions) {
    let mut config = GatewayConfig::default();
    let mut versions = Versions::new();
    for (key, (version, draft)) in chosen {
        let name = key.name.clone();
        versions.insert(key, version);
        match draft {
            Rendering::Ldap(p) => {
                config.ldap_profiles.insert(name, p);
            }
            Rendering::Crl(c) => {
                config.crl_sources.insert(name, c);
            }
            Rendering::Policy(p) => {
                config.policies.insert(name, p);
            }
            Rendering::Auth(a) => {
                config.auth_profiles.insert(name, a);
            }
            Rendering::Listener(l) => {
                config.listeners.insert(name, l);
            }
        }
    }
    (config, versions)
}

fn report(
    entries: &mut BTreeMap<ObjectKey, Entry>,
    versions: &Versions,
    late: &mut Late,
) -> Report {
    let mut objects = Vec::new();
    for (key, e) in entries.iter_mut() {
        let mut diagnostics = std::mem::take(&mut e.diags);
        diagnostics.extend(late.remove(key).unwrap_or_default());
        for (dep, field) in &e.current_deps {
            if !versions.contains_key(dep) {
                diagnostics.push(Diagnostic::error(
                    field.clone(),
                    Reason::RefNotAccepted,
                    format!(
                        "{} {:?} is not accepted (see its status)",
                        dep.kind, dep.name
                    ),
                ));
            }
        }
        diagnostics.sort();
        diagnostics.dedup();
        let rendered = match versions.get(key) {
            Some(Version::Current) => Rendered::Current,
            Some(Version::Previous) => Rendered::Previous,
            None => Rendered::Absent,
        };
        objects.push(ObjectReport {
            key: key.clone(),
            generation: e.generation,
            rendered,
            diagnostics,
        });
    }
    Report { objects }
}

pub(crate) fn tls_mode(t: TlsMode) -> gw::TlsMode {
    match t {
        TlsMode::Disabled => gw::TlsMode::Disabled,
        TlsMode::Preferred => gw::TlsMode::Preferred,
        TlsMode::Required => gw::TlsMode::Required,
    }
}

pub(crate) fn policy_action(a: PolicyAction) -> gw::PolicyAction {
    match a {
        PolicyAction::Relay => gw::PolicyAction::Relay,
        PolicyAction::Reject => gw::PolicyAction::Reject,
    }
}
