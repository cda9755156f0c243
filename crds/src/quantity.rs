//! Kubernetes quantities (`10Mi`, `25M`, `1048576`) for byte sizes.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema pattern Kubernetes uses for quantities.
pub(crate) const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A Kubernetes quantity as written (`10Mi`); a plain integer is accepted too.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quantity(pub String);

impl Quantity {
    /// The quantity as a whole number of units (bytes, for sizes).
    pub fn to_u64(&self) -> Result<u64, QuantityError> {
        parse_quantity(&self.0)
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 10Mi, or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "pattern": QUANTITY_PATTERN,
        })
    }
}

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason} (write e.g. 10Mi, 25M or 1048576)")]
pub struct QuantityError {
    /// The text as written.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Parse a quantity into a whole non-negative number.
pub fn parse_quantity(input: &str) -> Result<u64, QuantityError> {
    let err = |reason| QuantityError {
        input: input.to_owned(),
        reason,
    };
    let s = input.strip_prefix('+').unwrap_or(input);
    if s.starts_with('-') {
        return Err(err("must not be negative"));
    }
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(err("expected a number"));
    }
    let digits = format!("{whole}{frac}");
    let mantissa: u128 = digits.parse().map_err(|_| err("number too large"))?;
    let mut exp10: i32 = -(frac.len() as i32);
    let mut mult: u128 = 1;
    match suffix {
        "" => {}
        "Ki" => mult = 1 << 10,
        "Mi" => mult = 1 << 20,
        "Gi" => mult = 1 << 30,
        "Ti" => mult = 1 << 40,
        "Pi" => mult = 1 << 50,
        "Ei" => mult = 1 << 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        other if other.starts_with(['e', 'E']) => {
            let e: i32 = other[1..]
                .strip_prefix('+')
                .unwrap_or(&other[1..])
                .parse()
                .map_err(|_| err("bad exponent"))?;
            if e.abs() > 30 {
                return Err(err("exponent out of range"));
            }
            exp10 += e;
        }
        _ => return Err(err("unknown suffix (use Ki, Mi, Gi, k, M, G, ...)")),
    }
    let too_large = || err("too large");
    let mut value = mantissa.checked_mul(mult).ok_or_else(too_large)?;
    if exp10 >= 0 {
        let scale = 10u128.checked_pow(exp10 as u32).ok_or_else(too_large)?;
        value = value.checked_mul(scale).ok_or_else(too_large)?;
    } else {
        let scale = 10u128
            .checked_pow((-exp10) as u32)
            .ok_or_else(|| err("must be a whole number"))?;
        if value % scale != 0 {
            return Err(err("must be a whole number"));
        }
        value /= scale;
    }
    u64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_exponent_forms() {
        for (text, expect) in [
            ("10Mi", 10 * 1024 * 1024),
            ("1Ki", 1024),
            ("1.5Ki", 1536),
            ("25M", 25_000_000),
            ("1048576", 1_048_576),
            ("1e3", 1000),
            ("2000m", 2),
            ("+5k", 5000),
            ("0", 0),
        ] {
            assert_eq!(parse_quantity(text).unwrap(), expect, "{text}");
        }
    }

    #[test]
    fn refuses_fractions_negatives_and_garbage() {
        for text in [
            "",
            "-1Mi",
            "0.5",
            "10MB",
            "Mi",
            "1..2",
            "1500m",
            "99999999999Ei",
        ] {
            assert!(parse_quantity(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn accepts_integers_in_manifests() {
        let q: Quantity = serde_json::from_str("1024").unwrap();
        assert_eq!(q.to_u64().unwrap(), 1024);
        let q: Quantity = serde_json::from_str("\"10Mi\"").unwrap();
        assert_eq!(q.0, "10Mi");
    }
}
