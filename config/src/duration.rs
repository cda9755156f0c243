//! Durations, one grammar for the API and the gateway: `30s`, `5m`, `1h30m`, `250ms`,
//! `1.5h`, `1d`.
//!
//! The grammar is Go's `time.ParseDuration` without signs, plus `d` for days. The CRDs
//! carry it as a schema pattern ([`DURATION_PATTERN`]), the compiler parses resource
//! fields with [`parse_duration`], and the gateway reads its configuration's
//! [`Duration`]s with the same function: the API server, `postern plan` and a gateway
//! refuse exactly the same strings.
//!
//! A [`Duration`] prints in one canonical form (largest unit first, no spaces: `1h30m`,
//! `1d2h`, `1s500ms`), so a rendered configuration is byte-for-byte deterministic and
//! always reads back to the same value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema pattern of a duration string.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h|d))+$";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write e.g. 30s, 5m, 1h30m, 250ms)")]
pub struct DurationError {
    /// The text as written.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Units from the largest down, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parse a duration string (see the module docs for the grammar).
pub fn parse_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err("expected a number"));
        }
        let whole: u128 = input[start..i]
            .parse()
            .map_err(|_| err("number too large"))?;
        let (mut frac, mut frac_scale) = (0u128, 1u128);
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let fstart = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                // Digits beyond nanosecond precision of an hour-or-less unit do not matter.
                if i - fstart < 18 {
                    frac = frac * 10 + u128::from(bytes[i] - b'0');
                    frac_scale *= 10;
                }
                i += 1;
            }
            if i == fstart {
                return Err(err("expected digits after '.'"));
            }
        }
        let rest = &input[i..];
        // Two-letter units first: `ms` is not `m` followed by `s`.
        let unit = ["ns", "us", "ms", "s", "m", "h", "d"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(unit) = unit else {
            return Err(err(if rest.is_empty() {
                "a unit is required (ns, us, ms, s, m, h, d)"
            } else {
                "unknown unit (use ns, us, ms, s, m, h, d)"
            }));
        };
        let nanos = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, n)| *n)
            .expect("every unit has a length");
        i += unit.len();
        let part = whole
            .checked_mul(nanos)
            .and_then(|w| w.checked_add(frac * nanos / frac_scale))
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| err("too large"))?;
    Ok(std::time::Duration::new(
        secs,
        (total % NANOS_PER_SEC) as u32,
    ))
}

/// Write `d` in the canonical form: each non-zero unit from days down to nanoseconds,
/// no spaces (`1h30m`, `1d2h`, `1s500ms`); zero is `0s`.
pub fn format_duration(d: std::time::Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut rest = d.as_nanos();
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let n = rest / nanos;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
        }
        rest %= nanos;
    }
    out
}

/// A duration in a configuration document: written and read in the API's grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The standard library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whether this is a zero duration (never valid for a timeout or interval).
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Duration)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as Std;

    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, expect) in [
            ("30s", Std::from_secs(30)),
            ("5m", Std::from_secs(300)),
            ("1h", Std::from_secs(3600)),
            ("1h30m", Std::from_secs(5400)),
            ("1.5h", Std::from_secs(5400)),
            ("250ms", Std::from_millis(250)),
            ("1d", Std::from_secs(86400)),
            ("0s", Std::ZERO),
            ("10us", Std::from_micros(10)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), expect, "{text}");
        }
    }

    #[test]
    fn refuses_what_the_schema_pattern_refuses() {
        // Among them what the gateway's former grammar took: spaces, words, a bare 0.
        for text in [
            "", "30", "0", "1h 30m", "-1s", "1.s", "abc", "5 m", "1y", "s", "2 days", "1day",
            "5min",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should fail");
            assert!(text.parse::<Duration>().is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn prints_canonically_and_reads_back() {
        for (input, canonical) in [
            ("30s", "30s"),
            ("5m", "5m"),
            ("1h", "1h"),
            ("90m", "1h30m"),
            ("1.5h", "1h30m"),
            ("250ms", "250ms"),
            ("1500ms", "1s500ms"),
            ("0s", "0s"),
            ("24h", "1d"),
            ("36h", "1d12h"),
            ("45d", "45d"),
            ("1m0.000000001s", "1m1ns"),
        ] {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.to_string(), canonical, "{input}");
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }

    /// Below a day the canonical form is the one configurations were always written in
    /// (the golden files of the controller hold it), unit by unit.
    #[test]
    fn the_canonical_form_below_a_day_is_unchanged() {
        for (secs, nanos, text) in [
            (3_599, 0, "59m59s"),
            (86_399, 999_999_999, "23h59m59s999ms999us999ns"),
            (61, 1_000, "1m1s1us"),
            (0, 5, "5ns"),
        ] {
            assert_eq!(format_duration(Std::new(secs, nanos)), text);
        }
    }

    #[test]
    fn serde_uses_the_canonical_form() {
        let d = Duration::from_secs(5400);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        assert_eq!(serde_json::from_str::<Duration>("\"1.5h\"").unwrap(), d);
        let e = serde_json::from_str::<Duration>("\"90\"").unwrap_err();
        assert!(e.to_string().contains("a unit is required"), "{e}");
    }
}
