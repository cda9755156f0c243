//! The compiler's per-object report: diagnostics and the conditions they imply.

use std::fmt;

use postern_config::Reason as GatewayReason;
use postern_config::field::Section;
use postern_crds::{Condition, ConditionStatus, condition_type};

/// The five resource kinds, in dependency order (an object only refers to kinds before it,
/// except `SmtpAuthProfile` fallbacks, which refer to the same kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `LdapProfile`.
    LdapProfile,
    /// `CrlSource`.
    CrlSource,
    /// `MailFlowPolicy`.
    MailFlowPolicy,
    /// `SmtpAuthProfile`.
    SmtpAuthProfile,
    /// `Listener`.
    Listener,
}

impl Kind {
    /// Every kind, in dependency order.
    pub const ALL: [Kind; 5] = [
        Kind::LdapProfile,
        Kind::CrlSource,
        Kind::MailFlowPolicy,
        Kind::SmtpAuthProfile,
        Kind::Listener,
    ];

    /// The resource kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LdapProfile => "LdapProfile",
            Self::CrlSource => "CrlSource",
            Self::MailFlowPolicy => "MailFlowPolicy",
            Self::SmtpAuthProfile => "SmtpAuthProfile",
            Self::Listener => "Listener",
        }
    }

    /// Parse a manifest `kind`.
    pub fn from_name(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The section of the gateway configuration this kind compiles into.
    pub fn section(self) -> Section {
        match self {
            Self::LdapProfile => Section::LdapProfiles,
            Self::CrlSource => Section::CrlSources,
            Self::MailFlowPolicy => Section::Policies,
            Self::SmtpAuthProfile => Section::AuthProfiles,
            Self::Listener => Section::Listeners,
        }
    }

    /// The kind a section of the gateway configuration is compiled from.
    pub fn of_section(section: Section) -> Self {
        match section {
            Section::LdapProfiles => Self::LdapProfile,
            Section::CrlSources => Self::CrlSource,
            Section::Policies => Self::MailFlowPolicy,
            Section::AuthProfiles => Self::SmtpAuthProfile,
            Section::Listeners => Self::Listener,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object: kind and name (the namespace is the snapshot's).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// `kind/name`.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Why an object is not (fully) usable. Also the condition reason in status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A value is out of range, malformed, of the wrong type or missing.
    InvalidValue,
    /// A field the resource does not have (a typo, or a field of another version).
    UnknownField,
    /// An LDAP filter template is malformed or uses a placeholder it may not.
    InvalidFilter,
    /// Settings that cannot hold together.
    InvalidCombination,
    /// Another listener already binds the port.
    PortConflict,
    /// TLS material is needed but absent.
    MissingTls,
    /// The configuration version is not supported (never produced by this compiler).
    UnsupportedVersion,
    /// A referenced object does not exist.
    RefNotFound,
    /// A referenced object exists but cannot serve here (wrong type, missing query).
    InvalidKind,
    /// A referenced object exists but is not accepted itself (see its status).
    RefNotAccepted,
    /// A referenced Secret does not exist.
    SecretNotFound,
    /// A referenced Secret lacks the key.
    SecretKeyMissing,
    /// A referenced Secret is not labelled for the use the reference makes of it.
    SecretUseNotAllowed,
    /// A referenced ConfigMap does not exist.
    ConfigMapNotFound,
    /// A referenced ConfigMap lacks the key.
    ConfigMapKeyMissing,
    /// A certificate or CA bundle does not parse.
    InvalidCertificate,
    /// A private key does not parse or does not match its certificate.
    KeyMismatch,
    /// A setting has no effect (warnings only).
    Ignored,
    /// A certificate query identifies certificates by values that another trusted CA can
    /// repeat (warnings only).
    IssuerNotBound,
}

impl Reason {
    /// CamelCase name, as used in status conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidValue => "InvalidValue",
            Self::UnknownField => "UnknownField",
            Self::InvalidFilter => "InvalidFilter",
            Self::InvalidCombination => "InvalidCombination",
            Self::PortConflict => "PortConflict",
            Self::MissingTls => "MissingTls",
            Self::UnsupportedVersion => "UnsupportedVersion",
            Self::RefNotFound => "RefNotFound",
            Self::InvalidKind => "InvalidKind",
            Self::RefNotAccepted => "RefNotAccepted",
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretKeyMissing => "SecretKeyMissing",
            Self::SecretUseNotAllowed => "SecretUseNotAllowed",
            Self::ConfigMapNotFound => "ConfigMapNotFound",
            Self::ConfigMapKeyMissing => "ConfigMapKeyMissing",
            Self::InvalidCertificate => "InvalidCertificate",
            Self::KeyMismatch => "KeyMismatch",
            Self::Ignored => "Ignored",
            Self::IssuerNotBound => "IssuerNotBound",
        }
    }

    /// Whether the problem is with a reference (condition `ResolvedRefs`) rather than
    /// with the object's own spec (condition `Accepted`).
    pub fn is_reference(self) -> bool {
        matches!(
            self,
            Self::RefNotFound
                | Self::InvalidKind
                | Self::RefNotAccepted
                | Self::SecretNotFound
                | Self::SecretKeyMissing
                | Self::SecretUseNotAllowed
                | Self::ConfigMapNotFound
                | Self::ConfigMapKeyMissing
                | Self::InvalidCertificate
                | Self::KeyMismatch
        )
    }
}

impl From<GatewayReason> for Reason {
    fn from(r: GatewayReason) -> Self {
        match r {
            GatewayReason::UnsupportedVersion => Self::UnsupportedVersion,
            GatewayReason::InvalidValue => Self::InvalidValue,
            GatewayReason::RefNotFound => Self::RefNotFound,
            GatewayReason::InvalidKind => Self::InvalidKind,
            GatewayReason::InvalidCertificate => Self::InvalidCertificate,
            GatewayReason::KeyMismatch => Self::KeyMismatch,
            GatewayReason::InvalidFilter => Self::InvalidFilter,
            GatewayReason::PortConflict => Self::PortConflict,
            GatewayReason::InvalidCombination => Self::InvalidCombination,
            GatewayReason::MissingTls => Self::MissingTls,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The object (or the version of it in question) cannot be used.
    Error,
    /// The object is used; something in it probably does not do what was meant.
    Warning,
}

/// One finding about one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The field of the resource, e.g. `spec.tls.certificateSecretRef`.
    pub field: String,
    /// The class of problem.
    pub reason: Reason,
    /// What is wrong and what to do, for a human.
    pub message: String,
}

impl Diagnostic {
    /// An error.
    pub fn error(field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            field: field.into(),
            reason,
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
    /// The diagnostic on one line, as `postern plan` prints it after the file and line and
    /// the admission webhook answers it: `Kind/name: field: message (Reason)`.
    pub fn describe(&self, key: &ObjectKey) -> String {
        if self.field.is_empty() {
            format!("{key}: {} ({})", self.message, self.reason)
        } else {
            format!("{key}: {}: {} ({})", self.field, self.message, self.reason)
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.reason)
    }
}

/// Which rendering of an object the configuration carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rendered {
    /// The object as it is now.
    Current,
    /// The object is broken now; its last accepted rendering still serves.
    Previous,
    /// The object is not in the configuration.
    Absent,
}

/// A condition as the compiler sees it (the controller adds time and generation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCondition {
    /// `Accepted` or `ResolvedRefs`.
    pub type_: &'static str,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl CompiledCondition {
    /// The status condition, stamped with `now` (RFC 3339) and the object's generation.
    pub fn to_condition(&self, now: &str, observed_generation: Option<i64>) -> Condition {
        Condition {
            type_: self.type_.to_owned(),
            status: ConditionStatus::from_bool(self.status),
            reason: self.reason.clone(),
            message: self.message.clone(),
            last_transition_time: now.to_owned(),
            observed_generation,
        }
    }
}

/// What the compiler found about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectReport {
    /// The object.
    pub key: ObjectKey,
    /// Its `metadata.generation`, when known.
    pub generation: Option<i64>,
    /// Which rendering of it is in the configuration.
    pub rendered: Rendered,
    /// Errors and warnings, sorted.
    pub diagnostics: Vec<Diagnostic>,
}

impl ObjectReport {
    /// Errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// Warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// The `Accepted` and `ResolvedRefs` conditions the object should carry.
    pub fn conditions(&self) -> [CompiledCondition; 2] {
        let join = |list: Vec<&Diagnostic>| {
            list.iter()
                .map(|d| format!("{}: {}", d.field, d.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let own: Vec<&Diagnostic> = self.errors().filter(|d| !d.reason.is_reference()).collect();
        let refs: Vec<&Diagnostic> = self.errors().filter(|d| d.reason.is_reference()).collect();
        let tail = match self.rendered {
            Rendered::Current => "",
            Rendered::Previous => " The previously accepted version stays in service.",
            Rendered::Absent => " It is not in service.",
        };
        let accepted = match (self.rendered, own.first(), refs.first()) {
            (Rendered::Current, _, _) => CompiledCondition {
                type_: condition_type::ACCEPTED,
                status: true,
                reason: "Accepted".into(),
                message: match self.warnings().collect::<Vec<_>>() {
                    w if w.is_empty() => "compiled into the gateway configuration".into(),
                    // Warnings do not stop an object, but they belong where its operator
                    // looks: `kubectl describe` shows them with the accepted condition.
                    w => format!(
                        "compiled into the gateway configuration, with warnings: {}",
                        join(w)
                    ),
                },
            },
            (_, Some(first), _) => CompiledCondition {
                type_: condition_type::ACCEPTED,
                status: false,
                reason: first.reason.as_str().into(),
                message: format!("{}.{tail}", join(own.clone())),
            },
            (_, None, _) => CompiledCondition {
                type_: condition_type::ACCEPTED,
                status: false,
                reason: "UnresolvedRefs".into(),
                message: format!(
                    "not compiled because references do not resolve (see ResolvedRefs).{tail}"
                ),
            },
        };
        let resolved = match refs.first() {
            None => CompiledCondition {
                type_: condition_type::RESOLVED_REFS,
                status: true,
                reason: "ResolvedRefs".into(),
                message: "every reference resolves".into(),
            },
            Some(first) => CompiledCondition {
                type_: condition_type::RESOLVED_REFS,
                status: false,
                reason: first.reason.as_str().into(),
                message: format!("{}.", join(refs.clone())),
            },
        };
        [accepted, resolved]
    }
}

/// The compiler's findings for every object of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One entry per object, ordered by kind (dependency order) and name.
    pub objects: Vec<ObjectReport>,
}

impl Report {
    /// The report of one object.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&ObjectReport> {
        self.objects
            .iter()
            .find(|o| o.key.kind == kind && o.key.name == name)
    }

    /// Whether any object has an error.
    pub fn has_errors(&self) -> bool {
        self.objects.iter().any(|o| o.errors().next().is_some())
    }

    /// Every diagnostic with its object.
    pub fn diagnostics(&self) -> impl Iterator<Item = (&ObjectKey, &Diagnostic)> {
        self.objects
            .iter()
            .flat_map(|o| o.diagnostics.iter().map(move |d| (&o.key, d)))
    }
}
