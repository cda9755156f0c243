//! Which of serde's error constructors a failed read came from, so that the [`Reason`] of
//! an object that cannot be read is decided by type, never by the wording of a message.
//!
//! serde reports every data error through one constructor of [`de::Error`]
//! (`unknown_field`, `invalid_type`, ...). [`Classified`] is an error type that records
//! which one was called and hands the error itself to the format's own error type, so the
//! text stays the format's. The cluster path reads through it ([`from_json_value`]); the
//! manifest reader gets the same facts from serde-saphyr's typed errors.

use std::fmt;

use serde::de::{self, DeserializeOwned};

use crate::compile::Reason;

/// The constructor of [`de::Error`] an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// `custom`: a type's own message.
    Custom,
    /// `invalid_type`: a value of the wrong type (a list for a string, ...).
    InvalidType,
    /// `invalid_value`: a value of the right type that is out of range or malformed.
    InvalidValue,
    /// `invalid_length`: a list or tuple of the wrong length.
    InvalidLength,
    /// `unknown_variant`: an enum value the type does not have.
    UnknownVariant,
    /// `unknown_field`: a field the type does not have.
    UnknownField,
    /// `missing_field`: a required field is absent.
    MissingField,
    /// `duplicate_field`: a field given twice.
    DuplicateField,
    /// None of serde's: the format's own (syntax, a duplicate key, an I/O error, ...).
    Format,
}

impl ErrorKind {
    /// The reason an object that cannot be read this way is reported with.
    pub(crate) fn reason(self) -> Reason {
        match self {
            Self::UnknownField => Reason::UnknownField,
            Self::Custom
            | Self::InvalidType
            | Self::InvalidValue
            | Self::InvalidLength
            | Self::UnknownVariant
            | Self::MissingField
            | Self::DuplicateField
            | Self::Format => Reason::InvalidValue,
        }
    }
}

/// An error of the format's type `E`, and the constructor that made it.
#[derive(Debug)]
pub(crate) struct Classified<E> {
    /// Which constructor.
    pub kind: ErrorKind,
    /// The error as the format words it.
    pub error: E,
}

impl<E> Classified<E> {
    fn new(kind: ErrorKind, error: E) -> Self {
        Self { kind, error }
    }
}

impl<E: fmt::Display> fmt::Display for Classified<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Classified<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

// Each constructor defers to `E`'s own, which words the message as `E` always does.
impl<E: de::Error + 'static> de::Error for Classified<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(ErrorKind::Custom, E::custom(msg))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(ErrorKind::InvalidType, E::invalid_type(unexp, exp))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(ErrorKind::InvalidValue, E::invalid_value(unexp, exp))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::new(ErrorKind::InvalidLength, E::invalid_length(len, exp))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(
            ErrorKind::UnknownVariant,
            E::unknown_variant(variant, expected),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(ErrorKind::UnknownField, E::unknown_field(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(ErrorKind::MissingField, E::missing_field(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(ErrorKind::DuplicateField, E::duplicate_field(field))
    }
}

/// A `T` read from a JSON value, with serde_json's wording of an error.
///
/// `serde_json::Value` deserializes only with `serde_json::Error`, which does not keep
/// the constructor; serde-value's deserializer takes any error type, so the value is
/// read through it with [`Classified`] errors.
pub(crate) fn from_json_value<T: DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, Classified<serde_json::Error>> {
    let value = serde_value::to_value(value)
        .map_err(|e| Classified::new(ErrorKind::Format, de::Error::custom(e)))?;
    T::deserialize(serde_value::ValueDeserializer::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        tls: Tls,
        port: u16,
        #[serde(default)]
        hosts: Vec<String>,
        #[serde(default)]
        note: Option<String>,
    }

    #[derive(serde::Deserialize, Debug)]
    enum Tls {
        Disabled,
        Required,
    }

    /// The kind and the text, which must be serde_json's own.
    fn read(value: serde_json::Value) -> (ErrorKind, String) {
        let want = serde_json::from_value::<Spec>(value.clone())
            .unwrap_err()
            .to_string();
        let e = from_json_value::<Spec>(value).unwrap_err();
        assert_eq!(e.to_string(), want);
        (e.kind, want)
    }

    #[test]
    fn each_kind_is_recorded_with_serde_json_wording() {
        use serde_json::json;
        let cases = [
            (
                json!({"tls": "Required", "port": 25, "tlz": 1}),
                ErrorKind::UnknownField,
                "unknown field `tlz`, expected one of `tls`, `port`, `hosts`, `note`",
            ),
            (
                json!({"tls": "Off", "port": 25}),
                ErrorKind::UnknownVariant,
                "unknown variant `Off`, expected `Disabled` or `Required`",
            ),
            (
                json!({"tls": "Required", "port": "25"}),
                ErrorKind::InvalidType,
                "invalid type: string \"25\", expected u16",
            ),
            (
                json!({"tls": "Required", "port": 25, "note": [1]}),
                ErrorKind::InvalidType,
                "invalid type: sequence, expected a string",
            ),
            (
                json!({"tls": "Required", "port": 25, "hosts": null}),
                ErrorKind::InvalidType,
                "invalid type: null, expected a sequence",
            ),
            (
                json!({"tls": "Required", "port": 70000}),
                ErrorKind::InvalidValue,
                "invalid value: integer `70000`, expected u16",
            ),
            (
                json!({"tls": "Required"}),
                ErrorKind::MissingField,
                "missing field `port`",
            ),
            (
                json!({"tls": {"Required": 1, "Disabled": 2}, "port": 25}),
                ErrorKind::InvalidValue,
                "invalid value: map, expected map with a single key",
            ),
        ];
        for (value, kind, message) in cases {
            assert_eq!(read(value), (kind, message.to_owned()));
        }
    }

    #[test]
    fn readable_values_are_read_as_serde_json_reads_them() {
        let value =
            serde_json::json!({"tls": "Disabled", "port": 587, "hosts": ["a"], "note": null});
        let s: Spec = from_json_value(value).unwrap();
        assert_eq!((s.port, s.hosts, s.note), (587, vec!["a".to_owned()], None));
    }

    #[test]
    fn only_an_unknown_field_is_reported_as_one() {
        assert_eq!(ErrorKind::UnknownField.reason(), Reason::UnknownField);
        for kind in [
            ErrorKind::Custom,
            ErrorKind::InvalidType,
            ErrorKind::UnknownVariant,
            ErrorKind::MissingField,
            ErrorKind::Format,
        ] {
            assert_eq!(kind.reason(), Reason::InvalidValue);
        }
    }
}
