//! Reading one YAML document of a manifest: YAML 1.2 booleans only, so `tls: Off` stays
//! the string `Off` and an enum field written that way gets a clear error; errors carry
//! the field path, serde's usual wording and the line, without a position suffix (the
//! caller prints file and line its own way), and which of serde's error constructors made
//! them ([`ErrorKind`]), taken from serde-saphyr's typed errors.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_saphyr::localizer::Localizer;
use serde_saphyr::{Error, Location, MessageFormatter, UserMessageFormatter};

use crate::serde_kind::ErrorKind;

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct YamlError {
    /// The field, as `spec.tls` (empty when the error is not about one).
    pub path: String,
    /// What is wrong, without a position.
    pub message: String,
    /// 1-based line within the document, when known.
    pub line: Option<usize>,
    /// Which of serde's constructors made the error, or the reader's own.
    pub kind: ErrorKind,
}

impl YamlError {
    fn new(path: String, e: &Error) -> Self {
        Self {
            path,
            message: e.render_with_formatter(&Wording),
            line: e.location().map(|l| l.line() as usize),
            kind: kind_of(e),
        }
    }
}

/// The constructor behind `e`: serde-saphyr keeps one variant per constructor it
/// overrides (the rest, `custom` included, become its own message variants).
fn kind_of(mut e: &Error) -> ErrorKind {
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = e {
        e = error;
    }
    match e {
        Error::SerdeInvalidType { .. } => ErrorKind::InvalidType,
        Error::SerdeInvalidValue { .. } => ErrorKind::InvalidValue,
        Error::SerdeInvalidLength { .. } => ErrorKind::InvalidLength,
        Error::SerdeUnknownVariant { .. } => ErrorKind::UnknownVariant,
        Error::SerdeUnknownField { .. } => ErrorKind::UnknownField,
        Error::SerdeMissingField { .. } => ErrorKind::MissingField,
        _ => ErrorKind::Format,
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true, with_snippet: false }
}

/// The document as a value (to look at `apiVersion`, `kind` and `metadata`).
pub(super) fn value(doc: &str) -> Result<serde_json::Value, YamlError> {
    serde_saphyr::from_str_with_options(doc, options())
        .map_err(|e| YamlError::new(String::new(), &e))
}

/// The document as a `T`, naming the field of an error.
pub(super) fn typed<T: DeserializeOwned>(doc: &str) -> Result<T, YamlError> {
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(doc, options(), |de| {
        let mut track = serde_path_to_error::Track::new();
        T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track)).inspect_err(|_| {
            path = track.path().to_string();
        })
    })
    .map_err(|e| YamlError::new(path, &e))
}

/// serde's wording for unknown fields and variants (`expected one of `A`, `B``), the
/// library's for the rest; no position.
struct Wording;

impl Localizer for Wording {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _: Location) -> Cow<'a, str> {
        base
    }
}

impl MessageFormatter for Wording {
    fn localizer(&self) -> &dyn Localizer {
        self
    }

    fn format_message<'a>(&self, err: &'a Error) -> Cow<'a, str> {
        match err {
            Error::SerdeUnknownVariant {
                variant, expected, ..
            } => Cow::Owned(unknown("variant", variant, expected)),
            Error::SerdeUnknownField {
                field, expected, ..
            } => Cow::Owned(unknown("field", field, expected)),
            other => UserMessageFormatter.format_message(other),
        }
    }
}

/// `unknown variant `Off`, expected one of `Disabled`, `Preferred`, `Required``, as serde
/// words it.
fn unknown(what: &str, name: &str, expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    let expected = match quoted.as_slice() {
        [] => return format!("unknown {what} `{name}`, there are no {what}s"),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        all => format!("one of {}", all.join(", ")),
    };
    format!("unknown {what} `{name}`, expected {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        spec: Spec,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        tls: Tls,
        #[serde(default)]
        on: bool,
    }

    #[derive(serde::Deserialize, Debug)]
    enum Tls {
        Disabled,
        Preferred,
        Required,
    }

    #[test]
    fn yaml_1_1_booleans_are_not_enum_values() {
        for (word, line) in [("Off", 3), ("false", 3), ("no", 3)] {
            let doc = format!("# policy\nspec:\n  tls: {word}\n");
            let e = typed::<Doc>(&doc).unwrap_err();
            assert_eq!(
                e,
                YamlError {
                    path: "spec.tls".into(),
                    message: format!(
                        "unknown variant `{word}`, expected one of `Disabled`, `Preferred`, `Required`"
                    ),
                    line: Some(line),
                    kind: ErrorKind::UnknownVariant,
                }
            );
        }
        // And a boolean field takes only YAML 1.2's.
        let e = typed::<Doc>("spec:\n  tls: Required\n  on: yes\n").unwrap_err();
        assert_eq!((e.path.as_str(), e.line), ("spec.on", Some(3)));
        // serde-saphyr refuses a YAML 1.1 boolean itself, not through serde.
        assert_eq!(e.kind, ErrorKind::Format);
        assert!(typed::<Doc>("spec:\n  tls: Required\n  on: True\n").is_ok());
    }

    #[test]
    fn unknown_fields_and_syntax() {
        let e = typed::<Doc>("spec:\n  tls: Required\n  tlz: x\n").unwrap_err();
        assert_eq!(e.path, "spec.tlz");
        assert_eq!(e.message, "unknown field `tlz`, expected `tls` or `on`");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.kind, ErrorKind::UnknownField);
        let e = value("a: [b\n").unwrap_err();
        assert!(e.line.is_some() && !e.message.contains(" at line"), "{e:?}");
        assert_eq!(e.kind, ErrorKind::Format);
        assert_eq!(
            unknown("field", "x", &["a"]),
            "unknown field `x`, expected `a`"
        );
        assert_eq!(
            unknown("variant", "x", &[]),
            "unknown variant `x`, there are no variants"
        );
    }

    #[test]
    fn missing_fields_and_wrong_types_are_told_apart() {
        let e = typed::<Doc>("spec:\n  on: true\n").unwrap_err();
        assert_eq!((e.path.as_str(), e.kind), ("spec", ErrorKind::MissingField));
        assert_eq!(e.message, "missing field `tls`");
        // A value of the wrong shape is serde-saphyr's own error, not serde's.
        let e = typed::<Doc>("spec: [1]\n").unwrap_err();
        assert_eq!((e.path.as_str(), e.kind), ("spec", ErrorKind::Format));
    }

    #[test]
    fn values_keep_yaml_1_2_types() {
        let v = value("name: off\nport: 25\nok: true\nnothing:\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "off", "port": 25, "ok": true, "nothing": null})
        );
        assert!(value("# only a comment\n").unwrap().is_null());
    }
}
