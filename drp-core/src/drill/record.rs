//! [`DrillRecord`]: everything a drill did and measured, as kept in the store.

use bytes::Bytes;
use drp_backup::{BackupStore, BackupStoreExt, StoreError};
use serde::{Deserialize, Serialize};

use super::{DRILLS_PREFIX, DrillError};
use crate::plan::DrillMode;

/// The key of drill `id`'s record.
pub fn record_key(id: &str) -> String {
    format!("{DRILLS_PREFIX}/{id}.json")
}

/// Where a drill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    /// Checking the steady state, or the fault is in place.
    Running,
    /// It ran to its end (passed or not).
    Finished,
    /// Stopped early (an abort probe failed, or the operator interrupted it); the fault
    /// was reverted.
    Aborted,
    /// The steady state did not hold or the fault could not be injected: nothing stayed
    /// injected.
    NotStarted,
}

impl DrillState {
    /// `running`, `finished`, `aborted`, `not_started`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillState::Running => "running",
            DrillState::Finished => "finished",
            DrillState::Aborted => "aborted",
            DrillState::NotStarted => "not_started",
        }
    }
}

/// A host the fault hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHost {
    /// Its name in the plan.
    pub host: String,
    /// Its address.
    pub address: String,
    /// Its datacenter.
    pub datacenter: String,
    /// When the fault was in place there.
    pub injected_at: Option<jiff::Timestamp>,
    /// When it was reverted there.
    pub reverted_at: Option<jiff::Timestamp>,
    /// How it was reverted: `by drp`, `by its dead-man timer`, `by hand`.
    pub reverted_by: Option<String>,
    /// The id the fault has on this host, which names its traces there (dead-man pid and
    /// status files, nftables table, iptables chain): `DRILL_ID.HOST`, see
    /// [`fault_id`](super::fault_id). Absent in records of drills that used the drill's
    /// id on every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_id: Option<String>,
}

/// A probe checked before the fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCheck {
    /// The stack, or `abort` for an abort probe.
    pub of: String,
    /// The probe's name.
    pub probe: String,
    /// Whether it passed.
    pub healthy: bool,
    /// Its result.
    pub message: String,
}

/// Something noticed the fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// When.
    pub time: jiff::Timestamp,
    /// Who: `probe acme/http` or `alert from prometheus`.
    pub source: String,
    /// What it said.
    pub detail: String,
}

/// The moments a drill measures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// T0: the fault is in place on every target.
    pub injected: Option<jiff::Timestamp>,
    /// T1: the first of drp's probes failed.
    pub detected_by_probe: Option<Detection>,
    /// T1: the first alert of the team's own monitoring arrived.
    pub detected_by_alert: Option<Detection>,
    /// T2: recovery started (drp's, or the first `drp recover` run the team started).
    pub recovery_started: Option<jiff::Timestamp>,
    /// T3: every hit stack is healthy again.
    pub healthy: Option<jiff::Timestamp>,
    /// T4: the fault is reverted everywhere.
    pub reverted: Option<jiff::Timestamp>,
}

/// What the scenario expects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    /// Time to detect at most this.
    pub detect_within_ms: Option<u64>,
    /// Downtime at most this.
    pub recover_within_ms: Option<u64>,
}

/// One hit stack's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillStack {
    /// The stack.
    pub stack: String,
    /// When it was healthy again.
    pub healthy_at: Option<jiff::Timestamp>,
    /// Where it was healthy (host address).
    pub healthy_on: Option<String>,
    /// T0 → healthy.
    pub rto_ms: Option<u64>,
    /// Age of the restored snapshot at T0 (when drp restored it).
    pub rpo_ms: Option<u64>,
    /// The restored snapshot.
    pub snapshot: Option<String>,
}

/// A notification the drill sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentNotification {
    /// When.
    pub time: jiff::Timestamp,
    /// The event (`drill_started`...).
    pub event: String,
    /// Through which notifier.
    pub notifier: String,
    /// To whom (`team`, `customer`...).
    pub audience: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// A line of the drill's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When.
    pub time: jiff::Timestamp,
    /// What happened.
    pub what: String,
}

/// One expectation checked at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// Whether it held.
    pub passed: bool,
}

/// A drill, as kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// Its id (the same form as run ids).
    pub drill: String,
    /// The plan's name.
    pub plan: String,
    /// The plan's digest.
    pub plan_digest: String,
    /// The scenario.
    pub scenario: String,
    /// What the scenario rehearses.
    pub description: Option<String>,
    /// Who recovers.
    pub mode: DrillMode,
    /// Where it is.
    pub state: DrillState,
    /// Who ran it (user@host, pid).
    pub holder: String,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    pub finished_at: Option<jiff::Timestamp>,
    /// The fault, in words.
    pub fault: String,
    /// The fault, as the scenario gives it (what `drp drill revert` rebuilds it from).
    pub fault_spec: drp_provision::FaultSpec,
    /// The dead-man timer armed on each target.
    pub dead_man_ms: u64,
    /// The targets as the scenario names them.
    pub targets_rule: String,
    /// The blast radius as written.
    pub blast_radius: String,
    /// How many hosts the targets matched.
    pub candidates: usize,
    /// The hosts hit, chosen at the start.
    pub targets: Vec<TargetHost>,
    /// The stacks that count.
    pub stacks: Vec<String>,
    /// The scenario's expectations.
    pub expectations: Expectations,
    /// The steady-state checks before the fault.
    pub steady_state: Vec<ProbeCheck>,
    /// T0..T4.
    pub marks: Marks,
    /// Every alert the receiver took during the drill: (time, source).
    pub alerts: Vec<Detection>,
    /// The recovery runs that count (drp's own in automatic mode; in surprise mode the
    /// `drp recover` runs the team started after T0).
    pub recovery_runs: Vec<String>,
    /// Per hit stack.
    pub stack_results: Vec<DrillStack>,
    /// Notifications sent.
    pub notifications: Vec<SentNotification>,
    /// What happened, in order.
    pub timeline: Vec<TimelineEntry>,
    /// What did not go to plan (failed steps, retries, manual actions, reverts by timer).
    pub deviations: Vec<String>,
    /// Why it was aborted.
    pub abort_reason: Option<String>,
    /// The expectations checked at the end.
    pub checks: Vec<Check>,
}

fn millis_between(from: jiff::Timestamp, to: jiff::Timestamp) -> u64 {
    std::time::Duration::try_from(to.duration_since(from))
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DrillRecord {
    /// The first detection, by a probe or an alert.
    pub fn first_detection(&self) -> Option<&Detection> {
        [
            self.marks.detected_by_probe.as_ref(),
            self.marks.detected_by_alert.as_ref(),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|d| d.time)
    }

    /// T1 − T0.
    pub fn time_to_detect_ms(&self) -> Option<u64> {
        Some(millis_between(
            self.marks.injected?,
            self.first_detection()?.time,
        ))
    }

    /// T3 − T0.
    pub fn downtime_ms(&self) -> Option<u64> {
        Some(millis_between(self.marks.injected?, self.marks.healthy?))
    }

    /// T2 − T0.
    pub fn time_to_start_recovery_ms(&self) -> Option<u64> {
        Some(millis_between(
            self.marks.injected?,
            self.marks.recovery_started?,
        ))
    }

    /// T4 − T0: how long the fault stayed.
    pub fn fault_duration_ms(&self) -> Option<u64> {
        Some(millis_between(self.marks.injected?, self.marks.reverted?))
    }

    /// Whether it finished and every check held.
    pub fn passed(&self) -> bool {
        self.state == DrillState::Finished
            && !self.checks.is_empty()
            && self.checks.iter().all(|c| c.passed)
    }

    /// `PASS`, `FAIL`, or the state when it did not finish.
    pub fn verdict(&self) -> &'static str {
        match self.state {
            DrillState::Finished if self.passed() => "PASS",
            DrillState::Finished => "FAIL",
            DrillState::Aborted => "ABORTED",
            DrillState::Running => "RUNNING",
            DrillState::NotStarted => "NOT STARTED",
        }
    }

    /// Adds a line to the story.
    pub(crate) fn log(&mut self, what: impl Into<String>) {
        self.timeline.push(TimelineEntry {
            time: jiff::Timestamp::now(),
            what: what.into(),
        });
    }

    /// Writes it to the store (atomically: object stores replace whole objects).
    /// This record with every value of `secrets` hidden.
    pub(crate) fn redacted(&self, secrets: &[String]) -> DrillRecord {
        let mut value = serde_json::to_value(self).expect("a drill record serializes");
        redact_strings(&mut value, secrets);
        serde_json::from_value(value).expect("a redacted record is a record")
    }

    /// Writes it to the store with every value of `secrets` hidden: a fault's or a
    /// probe's error output may echo one.
    pub(crate) async fn save(
        &self,
        store: &dyn BackupStore,
        secrets: &[String],
    ) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(&self.redacted(secrets)).expect("JSON serializes");
        store.put(&record_key(&self.drill), Bytes::from(data)).await
    }
}

/// `***` for every secret (of 4 characters or more) in every string of `value`.
fn redact_strings(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(text) => *text = redact(text, secrets),
        serde_json::Value::Array(items) => {
            for item in items {
                redact_strings(item, secrets);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                redact_strings(item, secrets);
            }
        }
        _ => {}
    }
}

/// `text` with every secret (of 4 characters or more) replaced by `***`.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// Drill `id`'s record.
pub async fn load_record(store: &dyn BackupStore, id: &str) -> Result<DrillRecord, DrillError> {
    if !crate::executor::journal::valid_run_id(id) {
        return Err(DrillError::InvalidId(id.to_string()));
    }
    let key = record_key(id);
    let bytes = match store.get_bytes(&key).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => return Err(DrillError::NotFound(id.to_string())),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map_err(|e| DrillError::Record {
        key,
        reason: e.to_string(),
    })
}

/// Every drill of the store, oldest first (optionally of one plan only). Unreadable
/// records are skipped and returned as problems.
pub async fn history(
    store: &dyn BackupStore,
    plan: Option<&str>,
) -> Result<(Vec<DrillRecord>, Vec<String>), DrillError> {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for object in store.list(DRILLS_PREFIX).await? {
        if !object.key.ends_with(".json") {
            continue;
        }
        match store.get_bytes(&object.key).await {
            Ok(bytes) => match serde_json::from_slice::<DrillRecord>(&bytes) {
                Ok(record) if plan.is_none_or(|p| p == record.plan) => records.push(record),
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", object.key)),
            },
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    records.sort_by_key(|r| r.started_at);
    Ok((records, problems))
}
