//! Durations as people write them in conditions, config files and flags: `500ms`, `5s`, `1m`,
//! `72h`, `7d`, `1h30m`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{text}': {reason} (write e.g. 500ms, 5s, 2m, 72h, 7d or 1h30m)")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

/// Reads `500ms`, `5s`, `2m`, `72h`, `7d`, or a sum of them such as `1h30m`. A unit is
/// required: a bare number is ambiguous in a config file.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |reason| DurationError {
        text: text.to_owned(),
        reason,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(error("it is empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| error("a number needs a unit"))?;
        if digits == 0 {
            return Err(error("expected a number"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| error("expected a number"))?;
        let unit_end = rest[digits..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .map_or(rest.len(), |i| digits + i);
        let seconds_per_unit = match &rest[digits..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(error("unknown unit")),
        };
        total += Duration::try_from_secs_f64(number * seconds_per_unit)
            .map_err(|_| error("out of range"))?;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// Formats a duration for messages: `120 ms`, `4.2 s`, `3m 12s`, `71h 59m`, `5d 3h`.
pub fn human_duration(duration: Duration) -> String {
    HumanDuration(duration).to_string()
}

/// [`human_duration`] as a `Display` value.
#[derive(Debug, Clone, Copy)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if secs == 0 {
            return write!(f, "{} ms", d.as_millis());
        }
        if secs < 60 {
            return write!(f, "{:.1} s", d.as_secs_f64());
        }
        let (days, hours, minutes, seconds) =
            (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
        match (days, hours, minutes, seconds) {
            (0, 0, m, 0) => write!(f, "{m}m"),
            (0, 0, m, s) => write!(f, "{m}m {s}s"),
            (0, h, 0, _) => write!(f, "{h}h"),
            (0, h, m, _) => write!(f, "{h}h {m}m"),
            (d, 0, _, _) => write!(f, "{d}d"),
            (d, h, _, _) => write!(f, "{d}d {h}h"),
        }
    }
}

/// serde: an optional duration written as text.
pub(crate) fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_duration(&text).map_err(serde::de::Error::custom))
        .transpose()
}

/// serde: a duration as whole milliseconds (for JSON output).
pub(crate) fn serialize_millis<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// serde: an optional duration as whole milliseconds.
pub(crate) fn serialize_option_millis<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(d) => serialize_millis(d, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["", "5", "5x", "s", "1h 30m", "-1s"] {
            let error = parse_duration(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("'{bad}'")), "{error}");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(human_duration(Duration::from_millis(120)), "120 ms");
        assert_eq!(human_duration(Duration::from_millis(4200)), "4.2 s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(
            human_duration(Duration::from_secs(71 * 3600 + 59 * 60)),
            "2d 23h"
        );
        assert_eq!(human_duration(Duration::from_secs(5 * 3600 + 60)), "5h 1m");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_secs(2 * 86400)), "2d");
        assert_eq!(
            human_duration(Duration::from_secs(5 * 86400 + 3 * 3600)),
            "5d 3h"
        );
    }
}
