//! Durations as people write them in a plan: `500ms`, `30s`, `15m`, `24h`, `7d`, `1h30m`.
//!
//! The grammar is drp-monitor's (probe intervals, conditions), so a plan reads the same
//! everywhere; this module adds writing durations back, for the runbook.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Reads `500ms`, `30s`, `15m`, `24h`, `7d`, or a sum of them such as `1h30m` (drp-monitor's
/// parser: plans and probes read durations the same way).
pub use drp_monitor::{DurationError, parse_duration};

/// Writes a duration back in the plan's syntax, largest units first: `1h30m`, `45s`,
/// `250ms`, `0s`. Days only from two days on: people say "24h", not "1d".
pub fn format_duration(duration: Duration) -> String {
    FormattedDuration(duration).to_string()
}

struct FormattedDuration(Duration);

impl fmt::Display for FormattedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = millis;
        let day = if millis >= 2 * 86_400_000 {
            86_400_000
        } else {
            u128::MAX
        };
        for (unit, size) in [
            ("d", day),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

/// A duration in the plan file (deserialized from its text form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanDuration(pub Duration);

impl<'de> Deserialize<'de> for PlanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(PlanDuration)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (bad, reason) in [
            ("", "empty"),
            ("30", "needs a unit"),
            ("5x", "unknown unit"),
            ("-1s", "expected a number"),
        ] {
            let error = parse_duration(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
    }

    #[test]
    fn formats_back_into_the_same_syntax() {
        for text in ["0s", "250ms", "45s", "15m", "1h30m", "2d3h", "1m0s500ms"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(3 * 86400)), "3d");
    }
}
