//! Which snapshots to keep: restic-style retention rules.
//!
//! Snapshots are walked newest first. `keep_last` keeps the newest N. `keep_daily` keeps the
//! newest snapshot of each of the N most recent days that have snapshots; likewise weekly (ISO
//! weeks) and monthly. Days, weeks and months are UTC. A snapshot is kept if any rule keeps it,
//! and the decision lists every rule that did.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Retention rules; an absent rule keeps nothing by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep the newest N snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
}

/// What retention decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionDecision {
    /// Snapshot id.
    pub snapshot: String,
    /// Snapshot time.
    pub time: Timestamp,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that keep it, e.g. `["last", "daily"]`; empty when removed.
    pub reasons: Vec<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Period {
    Last,
    Day,
    Week,
    Month,
}

impl Period {
    fn reason(self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
        }
    }

    /// The bucket a snapshot falls into; `Last` puts every snapshot in a bucket of its own.
    fn bucket(self, index: usize, date: Date) -> (i64, i64) {
        match self {
            Period::Last => (index as i64, 0),
            Period::Day => (i64::from(date.year()), i64::from(date.day_of_year())),
            Period::Week => {
                let week = date.iso_week_date();
                (i64::from(week.year()), i64::from(week.week()))
            }
            Period::Month => (i64::from(date.year()), i64::from(date.month())),
        }
    }
}

impl RetentionPolicy {
    /// True when no rule keeps anything (none given, or all zero).
    pub fn is_empty(&self) -> bool {
        [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
        .iter()
        .all(|n| n.unwrap_or(0) == 0)
    }

    /// Decides for every `(id, time)`; returns decisions newest first. Refuses an empty policy,
    /// which would remove every snapshot.
    pub fn apply(&self, snapshots: &[(String, Timestamp)]) -> Result<Vec<RetentionDecision>> {
        if self.is_empty() {
            return Err(Error::EmptyRetentionPolicy);
        }
        let mut sorted: Vec<&(String, Timestamp)> = snapshots.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));

        let rules = [
            (Period::Last, self.keep_last),
            (Period::Day, self.keep_daily),
            (Period::Week, self.keep_weekly),
            (Period::Month, self.keep_monthly),
        ];
        let mut remaining: Vec<u32> = rules.iter().map(|(_, n)| n.unwrap_or(0)).collect();
        let mut last_bucket: Vec<Option<(i64, i64)>> = vec![None; rules.len()];

        let decisions = sorted
            .into_iter()
            .enumerate()
            .map(|(index, (id, time))| {
                let date = time.to_zoned(jiff::tz::TimeZone::UTC).date();
                let mut reasons = Vec::new();
                for (rule, (period, _)) in rules.iter().enumerate() {
                    let bucket = period.bucket(index, date);
                    if remaining[rule] > 0 && last_bucket[rule] != Some(bucket) {
                        remaining[rule] -= 1;
                        last_bucket[rule] = Some(bucket);
                        reasons.push(period.reason());
                    }
                }
                RetentionDecision {
                    snapshot: id.clone(),
                    time: *time,
                    keep: !reasons.is_empty(),
                    reasons,
                }
            })
            .collect();
        Ok(decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snaps(times: &[&str]) -> Vec<(String, Timestamp)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("s{i}"), t.parse().unwrap()))
            .collect()
    }

    fn kept(decisions: &[RetentionDecision]) -> Vec<(&str, Vec<&str>)> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.snapshot.as_str(), d.reasons.clone()))
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_regardless_of_input_order() {
        let s = snaps(&[
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-02T00:00:00Z",
        ]);
        let policy = RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        };
        let d = policy.apply(&s).unwrap();
        assert_eq!(kept(&d), [("s1", vec!["last"]), ("s2", vec!["last"])]);
        assert_eq!(d[2].snapshot, "s0");
        assert!(!d[2].keep && d[2].reasons.is_empty());
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_counts_days_that_have_snapshots() {
        let s = snaps(&[
            "2026-03-01T08:00:00Z",
            "2026-03-01T20:00:00Z", // newest of Mar 1
            "2026-03-03T09:00:00Z", // Mar 2 has none
            "2026-03-04T01:00:00Z",
            "2026-03-04T23:59:59Z", // newest of Mar 4
        ]);
        let policy = RetentionPolicy {
            keep_daily: Some(3),
            ..Default::default()
        };
        let d = policy.apply(&s).unwrap();
        assert_eq!(
            kept(&d),
            [
                ("s4", vec!["daily"]),
                ("s2", vec!["daily"]),
                ("s1", vec!["daily"])
            ]
        );
    }

    #[test]
    fn weekly_uses_iso_weeks_and_monthly_calendar_months() {
        let s = snaps(&[
            "2026-01-04T12:00:00Z", // Sunday: ISO week 1 of 2026
            "2026-01-05T12:00:00Z", // Monday: ISO week 2
            "2026-01-31T12:00:00Z", // Saturday of ISO week 5, January's newest
            "2026-02-01T12:00:00Z", // Sunday of ISO week 5, February
        ]);
        let weekly = RetentionPolicy {
            keep_weekly: Some(10),
            ..Default::default()
        };
        let d = weekly.apply(&s).unwrap();
        assert_eq!(
            kept(&d),
            [
                ("s3", vec!["weekly"]),
                ("s1", vec!["weekly"]),
                ("s0", vec!["weekly"])
            ]
        );
        let monthly = RetentionPolicy {
            keep_monthly: Some(10),
            ..Default::default()
        };
        let d = monthly.apply(&s).unwrap();
        assert_eq!(kept(&d), [("s3", vec!["monthly"]), ("s2", vec!["monthly"])]);
    }

    #[test]
    fn rules_combine_and_every_reason_is_listed() {
        let s = snaps(&[
            "2026-05-01T00:00:00Z",
            "2026-05-02T00:00:00Z",
            "2026-05-02T06:00:00Z",
        ]);
        let policy = RetentionPolicy {
            keep_last: Some(1),
            keep_daily: Some(2),
            keep_monthly: Some(1),
            ..Default::default()
        };
        let d = policy.apply(&s).unwrap();
        assert_eq!(
            kept(&d),
            [
                ("s2", vec!["last", "daily", "monthly"]),
                ("s0", vec!["daily"])
            ]
        );
    }

    #[test]
    fn an_empty_policy_is_refused_instead_of_removing_everything() {
        let err = RetentionPolicy::default()
            .apply(&snaps(&["2026-05-01T00:00:00Z"]))
            .unwrap_err();
        assert!(matches!(err, Error::EmptyRetentionPolicy));
        let zero = RetentionPolicy {
            keep_last: Some(0),
            ..Default::default()
        };
        assert!(matches!(zero.apply(&[]), Err(Error::EmptyRetentionPolicy)));
    }
}
