//! Human-readable durations (`30s`, `5m`, `1h`, `250ms`) as used throughout the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way operators write it in manifests: `30s`, `5m`, `1h30m`.
///
/// Serialises back to a canonical string so that a rendered configuration is
/// byte-for-byte deterministic.
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

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. `30s`, `5m`, `1h`)")]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(ParseDurationError {
                input: s.to_owned(),
                reason: "empty".into(),
            });
        }
        // A bare number is ambiguous (seconds? milliseconds?); refuse it rather than guess.
        if trimmed.chars().all(|c| c.is_ascii_digit()) && trimmed != "0" {
            return Err(ParseDurationError {
                input: s.to_owned(),
                reason: "a unit is required".into(),
            });
        }
        humantime::parse_duration(trimmed)
            .map(Duration)
            .map_err(|e| ParseDurationError {
                input: s.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        // humantime writes "1h 30m"; manifests write "1h30m".
        let text = humantime::format_duration(self.0).to_string();
        f.write_str(&text.replace(' ', ""))
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
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("30s", "30s"),
            ("5m", "5m"),
            ("1h", "1h"),
            ("90m", "1h30m"),
            ("1h 30m", "1h30m"),
            ("250ms", "250ms"),
            ("0", "0s"),
        ] {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.to_string(), canonical, "{input}");
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }

    #[test]
    fn refuses_bare_numbers_and_garbage() {
        for input in ["", "30", "abc", "5 parsecs", "-1s"] {
            assert!(input.parse::<Duration>().is_err(), "{input:?} should fail");
        }
    }
}
