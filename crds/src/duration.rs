//! Durations as written in manifests: `30s`, `5m`, `1h30m`, `250ms`, `1.5h`, `1d`.
//!
//! The grammar is Go's `time.ParseDuration` without signs, plus `d` for days; the CRD
//! schema carries the same grammar as a pattern, so the API server and the offline
//! compiler refuse exactly the same strings.

use std::time::Duration;

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

/// Parse a duration string (see the module docs for the grammar).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
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
        let (unit_len, nanos): (usize, u128) = if rest.starts_with("ns") {
            (2, 1)
        } else if rest.starts_with("us") {
            (2, 1_000)
        } else if rest.starts_with("ms") {
            (2, 1_000_000)
        } else if rest.starts_with('s') {
            (1, 1_000_000_000)
        } else if rest.starts_with('m') {
            (1, 60 * 1_000_000_000)
        } else if rest.starts_with('h') {
            (1, 3_600 * 1_000_000_000)
        } else if rest.starts_with('d') {
            (1, 86_400 * 1_000_000_000)
        } else if rest.is_empty() {
            return Err(err("a unit is required (ns, us, ms, s, m, h, d)"));
        } else {
            return Err(err("unknown unit (use ns, us, ms, s, m, h, d)"));
        };
        i += unit_len;
        let part = whole
            .checked_mul(nanos)
            .and_then(|w| w.checked_add(frac * nanos / frac_scale))
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, expect) in [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("1d", Duration::from_secs(86400)),
            ("0s", Duration::ZERO),
            ("10us", Duration::from_micros(10)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), expect, "{text}");
        }
    }

    #[test]
    fn refuses_what_the_schema_pattern_refuses() {
        for text in ["", "30", "1h 30m", "-1s", "1.s", "abc", "5 m", "1y", "s"] {
            assert!(parse_duration(text).is_err(), "{text:?} should fail");
        }
    }
}
