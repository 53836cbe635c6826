//! Reports of recovery runs, read back from their journal: what `drp report` and `drp runs
//! list` show.
//!
//! ```text
//! journal (store) ──read──▶ events ──build(plan)──▶ RunReport ──▶ Markdown | HTML | JSON
//! ```
//!
//! - RTO and RPO per stack against the plan's objectives: the run's own `run_measured`
//!   event when it is current, else recomputed by [`measure`](crate::executor::measure).
//! - [`RunReport::build`]: the summary, the per-step timeline, the failures and the
//!   notifications of one run.
//! - [`markdown`] and [`html`] render it (the HTML report is one self-contained file: inline
//!   CSS, an inline SVG Gantt chart, nothing fetched); JSON is its serde form.
//! - [`runs`]: every run of a plan's store, newest first.
//!
//! Reports show only what the journal holds, and the journal is redacted when written; a
//! report also hides the values of the plan's secrets that it can read (a second line of
//! defence: [`secret_values`]).

pub mod html;
pub mod markdown;
pub mod runs;

use std::collections::BTreeMap;

use drp_backup::BackupStore;
use serde::Serialize;

use crate::executor::journal::{JournalError, read_journal};
use crate::executor::lock::{self, LockError};
use crate::executor::measure::{self, Objectives, RunMeasurements, StackMeasurement, Verdict};
use crate::executor::{Event, EventKind, StackOutcome, StepOutcome};
use crate::plan::{Plan, SecretRef};

/// Steps whose names start with this tell people.
pub const NOTIFY_STEP_PREFIX: &str = "notify-";

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// It ended (whatever its stacks' outcomes).
    Finished,
    /// It holds the plan's lock and has not ended.
    Running,
    /// It did not end and no longer holds the lock: killed, or stopped; `drp recover
    /// --resume` continues it.
    Interrupted,
}

impl RunState {
    /// `finished`, `running`, `interrupted`.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Finished => "finished",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
        }
    }

    /// The state of a run from its events (by seq), knowing whether it holds the lock.
    pub fn of(events: &[Event], holds_lock: bool) -> RunState {
        let last_start = events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::RunStarted { .. }));
        let last_finish = events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::RunFinished { .. }));
        match (last_start, last_finish) {
            (Some(s), Some(f)) if f > s => RunState::Finished,
            (None, Some(_)) => RunState::Finished,
            _ if holds_lock => RunState::Running,
            _ => RunState::Interrupted,
        }
    }
}

/// How a step ended (its last attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It succeeded at the first attempt.
    Succeeded,
    /// It succeeded after failed attempts.
    Retried,
    /// Its last attempt failed.
    Failed,
    /// It started and has not ended (running, or the run was killed).
    Unfinished,
}

impl StepStatus {
    /// `succeeded`, `retried`, `failed`, `unfinished`.
    pub fn name(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Retried => "retried",
            StepStatus::Failed => "failed",
            StepStatus::Unfinished => "unfinished",
        }
    }
}

/// One step of a stack in the timeline: first start to last end, over every attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The stack.
    pub stack: String,
    /// The step (`restore:db`).
    pub step: String,
    /// When its first attempt started.
    pub started: jiff::Timestamp,
    /// When its last attempt ended (`None`: it did not).
    pub ended: Option<jiff::Timestamp>,
    /// Attempts made.
    pub attempts: u32,
    /// How it ended.
    pub status: StepStatus,
    /// Whether a resumed run reused it instead of running it again.
    pub reused: bool,
    /// Its one-line summary (success).
    pub summary: Option<String>,
    /// Bytes it moved.
    pub bytes: Option<u64>,
    /// Its last error.
    pub error: Option<String>,
    /// What it put on the record (probe results, notifications).
    pub notes: Vec<String>,
}

impl StepReport {
    /// From its first start to its last end, if it ended.
    pub fn duration_ms(&self) -> Option<u64> {
        self.ended.map(|end| millis_between(self.started, end))
    }
}

/// One measure (RTO or RPO) of a stack against its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Measure {
    /// What was measured, in milliseconds.
    pub actual_ms: Option<u64>,
    /// The objective, in milliseconds.
    pub objective_ms: Option<u64>,
    /// How they compare.
    pub verdict: Verdict,
}

/// One stack of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackReport {
    /// The stack.
    pub name: String,
    /// Its customer (from the plan; `None` if the plan no longer has the stack).
    pub customer: Option<String>,
    /// `recovered`, `failed`, `skipped`, `interrupted`, `unfinished`.
    pub outcome: String,
    /// Why it failed, was skipped or interrupted.
    pub reason: Option<String>,
    /// When its probes were healthy (incident start + RTO).
    pub healthy_at: Option<jiff::Timestamp>,
    /// Incident start to healthy, against the RTO objective.
    pub rto: Measure,
    /// Age of the restored snapshot at the incident start, against the RPO objective.
    pub rpo: Measure,
    /// The restored snapshot.
    pub snapshot: Option<String>,
}

impl StackReport {
    /// Whether it recovered within every objective it has.
    pub fn passed(&self) -> bool {
        self.outcome == "recovered"
            && self.rto.verdict != Verdict::Fail
            && self.rpo.verdict != Verdict::Fail
    }
}

/// Something that went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// When.
    pub time: jiff::Timestamp,
    /// The stack.
    pub stack: String,
    /// The step (`None`: the stack was skipped or interrupted).
    pub step: Option<String>,
    /// Which attempt.
    pub attempt: Option<u32>,
    /// The message.
    pub message: String,
    /// Whether the attempt ran out of time.
    pub timed_out: bool,
    /// Whether another attempt followed.
    pub retried: bool,
}

/// One notification: a delivery a notification step (`notify-recovered`, `notify-failed`)
/// put on the record, or the step itself when it recorded none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The stack.
    pub stack: String,
    /// The step.
    pub step: String,
    /// When it was recorded.
    pub time: jiff::Timestamp,
    /// `sent`, `failed`, `unfinished`.
    pub status: String,
    /// What the step recorded (through which notifier, to whom, or its error).
    pub detail: String,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The run.
    pub run: String,
    /// The plan's name, as the run recorded it.
    pub plan: String,
    /// Whether the plan changed since the run (its objectives are today's).
    pub plan_changed: bool,
    /// Where the run is.
    pub state: RunState,
    /// When it first started.
    pub started: jiff::Timestamp,
    /// When it ended.
    pub ended: Option<jiff::Timestamp>,
    /// How many times it was started (1 + resumes).
    pub attempts: u32,
    /// Every stack recovered within its objectives (and the run ended).
    pub passed: bool,
    /// Where RTOs and RPOs count from.
    pub incident_start: jiff::Timestamp,
    /// Whether the incident start was given (else: the run's first start).
    pub incident_start_given: bool,
    /// The slowest stack's RTO, when every stack recovered.
    pub rto_ms: Option<u64>,
    /// The largest RPO.
    pub rpo_ms: Option<u64>,
    /// Whether the measurements are the ones the run journaled (else recomputed from its
    /// events with the plan's objectives as they are now).
    pub measured_by_run: bool,
    /// Stacks, by name.
    pub stacks: Vec<StackReport>,
    /// Every step, by start time.
    pub timeline: Vec<StepReport>,
    /// Failed attempts, skipped and interrupted stacks, by time.
    pub failures: Vec<Failure>,
    /// Notifications sent or failed.
    pub notifications: Vec<Notification>,
}

/// Options of [`RunReport::build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// RTO/RPO count from here instead of the run's start.
    pub incident_start: Option<jiff::Timestamp>,
    /// Whether the run holds the plan's lock (running rather than interrupted).
    pub holds_lock: bool,
    /// Values never to show (see [`secret_values`]).
    pub secrets: Vec<String>,
}

/// Errors of reading a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// No such run in the store.
    #[error("no run {run} in {store} ({known} runs there; `drp runs list` shows them)")]
    UnknownRun {
        /// The run asked for.
        run: String,
        /// The store.
        store: String,
        /// How many runs it has.
        known: usize,
    },
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The lock could not be read.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The run's journal has no `run_started` event.
    #[error("the journal of run {0} has no start event")]
    NoStart(String),
}

/// The run id that means the newest run of the store.
pub const LATEST: &str = "latest";

/// Reads run `run_id` ([`LATEST`]: the newest) from `store` and builds its report against
/// `plan`.
pub async fn load(
    plan: &Plan,
    store: &dyn BackupStore,
    run_id: &str,
    incident_start: Option<jiff::Timestamp>,
) -> Result<RunReport, ReportError> {
    let latest;
    let run_id = if run_id == LATEST {
        // Run ids start with their UTC start time: the greatest is the newest.
        latest = crate::executor::journal::list_runs(store)
            .await?
            .pop()
            .ok_or_else(|| ReportError::UnknownRun {
                run: LATEST.to_string(),
                store: store.to_string(),
                known: 0,
            })?;
        latest.as_str()
    } else {
        run_id
    };
    let events = match read_journal(store, run_id).await {
        Ok(events) => events,
        Err(JournalError::NoSuchRun(_)) => {
            let known = crate::executor::journal::list_runs(store).await?.len();
            return Err(ReportError::UnknownRun {
                run: run_id.to_string(),
                store: store.to_string(),
                known,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let holds_lock = lock::current(store)
        .await?
        .is_some_and(|holder| holder.run_id == run_id);
    RunReport::build(
        plan,
        &events,
        BuildOptions {
            incident_start,
            holds_lock,
            secrets: secret_values(plan),
        },
    )
}

impl RunReport {
    /// Builds the report of a run from its events (any order) and the plan (objectives,
    /// customers).
    pub fn build(
        plan: &Plan,
        events: &[Event],
        options: BuildOptions,
    ) -> Result<RunReport, ReportError> {
        let mut events: Vec<Event> = events.to_vec();
        events.sort_by_key(|e| e.seq);
        hide_secrets(&mut events, &options.secrets);
        let run = events.first().map(|e| e.run.clone()).unwrap_or_default();
        let (plan_name, plan_digest, started) = events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::RunStarted {
                    plan, plan_digest, ..
                } => Some((plan.clone(), plan_digest.clone(), e.time)),
                _ => None,
            })
            .ok_or_else(|| ReportError::NoStart(run.clone()))?;
        let attempts = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RunStarted { .. }))
            .count();
        let state = RunState::of(&events, options.holds_lock);
        let ended = (state == RunState::Finished)
            .then(|| {
                events
                    .iter()
                    .rev()
                    .find(|e| matches!(e.kind, EventKind::RunFinished { .. }))
                    .map(|e| e.time)
            })
            .flatten();

        let measurements = match (options.incident_start, journaled_measurements(&events)) {
            (None, Some(journaled)) => journaled,
            (incident_start, _) => {
                let objectives: BTreeMap<String, Objectives> = plan
                    .stacks
                    .values()
                    .map(|s| {
                        (
                            s.name.clone(),
                            Objectives {
                                rto: s.rto,
                                rpo: s.rpo,
                            },
                        )
                    })
                    .collect();
                measure::measure(&events, incident_start, &objectives)
            }
        };
        let measured_by_run =
            options.incident_start.is_none() && journaled_measurements(&events).is_some();

        let mut reasons: BTreeMap<&str, String> = BTreeMap::new();
        for event in &events {
            if let EventKind::StackFinished { stack, outcome } = &event.kind {
                let reason = match outcome {
                    StackOutcome::Recovered => continue,
                    StackOutcome::Failed { step, error } => format!("{step}: {error}"),
                    StackOutcome::Skipped { reason } | StackOutcome::Interrupted { reason } => {
                        reason.clone()
                    }
                };
                reasons.insert(stack, reason);
            }
        }
        let incident_start = measurements.incident_start;
        let stacks: Vec<StackReport> = measurements
            .stacks
            .iter()
            .map(|m: &StackMeasurement| StackReport {
                name: m.stack.clone(),
                customer: plan.stacks.get(&m.stack).map(|s| s.customer.clone()),
                outcome: m.outcome.clone(),
                reason: reasons.get(m.stack.as_str()).cloned(),
                healthy_at: m.rto_ms.and_then(|ms| {
                    incident_start
                        .checked_add(jiff::SignedDuration::from_millis(
                            i64::try_from(ms).unwrap_or(i64::MAX),
                        ))
                        .ok()
                }),
                rto: Measure {
                    actual_ms: m.rto_ms,
                    objective_ms: m.rto_objective_ms,
                    verdict: m.rto_verdict,
                },
                rpo: Measure {
                    actual_ms: m.rpo_ms,
                    objective_ms: m.rpo_objective_ms,
                    verdict: m.rpo_verdict,
                },
                snapshot: m.snapshot.clone(),
            })
            .collect();
        let timeline = timeline(&events);
        let failures = failures(&events);
        let notifications = notifications(&events, &timeline);
        Ok(RunReport {
            run,
            plan: plan_name,
            plan_changed: plan_digest != plan.digest,
            state,
            started,
            ended,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            passed: measurements.passed && state == RunState::Finished,
            incident_start,
            incident_start_given: measurements.incident_start_given,
            rto_ms: measurements.rto_ms,
            rpo_ms: measurements.rpo_ms,
            measured_by_run,
            stacks,
            timeline,
            failures,
            notifications,
        })
    }

    /// The end of the timeline: the run's end, else its last event.
    pub fn last_time(&self) -> jiff::Timestamp {
        self.ended
            .into_iter()
            .chain(self.timeline.iter().filter_map(|s| s.ended))
            .chain(self.timeline.iter().map(|s| s.started))
            .chain([self.started])
            .max()
            .unwrap_or(self.started)
    }

    /// Where the timeline starts: the incident start or the run's start, whichever is first.
    pub fn origin(&self) -> jiff::Timestamp {
        self.incident_start.min(self.started)
    }

    /// The run's RTO for people: the slowest stack's, or why there is none.
    pub fn overall_rto(&self) -> String {
        match self.rto_ms {
            Some(ms) => short_duration(ms),
            None => "- (not every stack recovered)".to_string(),
        }
    }

    /// `PASS` or `FAIL` (a run that did not end cannot pass).
    pub fn verdict_label(&self) -> &'static str {
        if self.passed { "PASS" } else { "FAIL" }
    }
}

/// The measurements the run journaled last, if no attempt started after them (a killed
/// attempt journals none: then they are stale).
fn journaled_measurements(events: &[Event]) -> Option<RunMeasurements> {
    let last_start = events
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::RunStarted { .. }))?;
    events[last_start..]
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::RunMeasured { measurements } => Some(measurements.clone()),
            _ => None,
        })
}

/// Every step that started, by first start, attempts merged.
fn timeline(events: &[Event]) -> Vec<StepReport> {
    let mut steps: Vec<StepReport> = Vec::new();
    let find = |steps: &mut Vec<StepReport>, stack: &str, step: &str| {
        steps
            .iter()
            .position(|s| s.stack == stack && s.step == step)
    };
    for event in events {
        match &event.kind {
            EventKind::StepStarted {
                stack,
                step,
                attempt,
            } => match find(&mut steps, stack, step) {
                Some(i) => {
                    let s = &mut steps[i];
                    s.attempts = s.attempts.max(*attempt);
                    s.status = StepStatus::Unfinished;
                    s.ended = None;
                }
                None => steps.push(StepReport {
                    stack: stack.clone(),
                    step: step.clone(),
                    started: event.time,
                    ended: None,
                    attempts: *attempt,
                    status: StepStatus::Unfinished,
                    reused: false,
                    summary: None,
                    bytes: None,
                    error: None,
                    notes: Vec::new(),
                }),
            },
            EventKind::StepFinished {
                stack,
                step,
                attempt,
                outcome,
            } => {
                let Some(i) = find(&mut steps, stack, step) else {
                    continue;
                };
                let s = &mut steps[i];
                s.ended = Some(event.time);
                s.attempts = s.attempts.max(*attempt);
                match outcome {
                    StepOutcome::Succeeded { summary, bytes, .. } => {
                        s.status = if *attempt > 1 {
                            StepStatus::Retried
                        } else {
                            StepStatus::Succeeded
                        };
                        s.summary = summary.clone();
                        s.bytes = *bytes;
                    }
                    StepOutcome::Failed { error, .. } => {
                        s.status = StepStatus::Failed;
                        s.error = Some(error.clone());
                    }
                }
            }
            EventKind::StepReused { stack, step } => {
                if let Some(i) = find(&mut steps, stack, step) {
                    steps[i].reused = true;
                }
            }
            EventKind::StepNote {
                stack,
                step,
                message,
            } => {
                if let Some(i) = find(&mut steps, stack, step) {
                    steps[i].notes.push(message.clone());
                }
            }
            _ => {}
        }
    }
    steps.sort_by_key(|s| s.started);
    steps
}

/// Every delivery the notification steps recorded. A delivery that failed does not fail its
/// step (telling people must not stop a recovery), so each note is its own row: a note that
/// says it `failed` is a failed notification.
fn notifications(events: &[Event], timeline: &[StepReport]) -> Vec<Notification> {
    let mut rows = Vec::new();
    for event in events {
        if let EventKind::StepNote {
            stack,
            step,
            message,
        } = &event.kind
            && step.starts_with(NOTIFY_STEP_PREFIX)
        {
            rows.push(Notification {
                stack: stack.clone(),
                step: step.clone(),
                time: event.time,
                status: if message.contains(" failed") {
                    "failed"
                } else {
                    "sent"
                }
                .to_string(),
                detail: message.clone(),
            });
        }
    }
    // Steps that recorded nothing (or failed as a whole) still say how they ended.
    for step in timeline
        .iter()
        .filter(|s| s.step.starts_with(NOTIFY_STEP_PREFIX))
    {
        let noted = rows
            .iter()
            .any(|r| r.stack == step.stack && r.step == step.step);
        if noted && step.status != StepStatus::Failed {
            continue;
        }
        rows.push(Notification {
            stack: step.stack.clone(),
            step: step.step.clone(),
            time: step.ended.unwrap_or(step.started),
            status: match step.status {
                StepStatus::Succeeded | StepStatus::Retried => "sent",
                StepStatus::Failed => "failed",
                StepStatus::Unfinished => "unfinished",
            }
            .to_string(),
            detail: step
                .error
                .clone()
                .or_else(|| step.summary.clone())
                .unwrap_or_default(),
        });
    }
    rows.sort_by_key(|r| r.time);
    rows
}

fn failures(events: &[Event]) -> Vec<Failure> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StepFinished {
                stack,
                step,
                attempt,
                outcome:
                    StepOutcome::Failed {
                        error,
                        timed_out,
                        retry_in_ms,
                        ..
                    },
            } => Some(Failure {
                time: event.time,
                stack: stack.clone(),
                step: Some(step.clone()),
                attempt: Some(*attempt),
                message: error.clone(),
                timed_out: *timed_out,
                retried: retry_in_ms.is_some(),
            }),
            EventKind::StackFinished {
                stack,
                outcome: StackOutcome::Skipped { reason } | StackOutcome::Interrupted { reason },
            } => Some(Failure {
                time: event.time,
                stack: stack.clone(),
                step: None,
                attempt: None,
                message: reason.clone(),
                timed_out: false,
                retried: false,
            }),
            _ => None,
        })
        .collect()
}

/// The values of the plan's secrets that can be read here (passphrases, webhook URLs, SMTP
/// passwords, from their environment variables or files). Reports and journals hide them.
pub fn secret_values(plan: &Plan) -> Vec<String> {
    let mut refs: Vec<&SecretRef> = Vec::new();
    refs.extend(&plan.storage.signing_passphrase);
    for customer in plan.customers.values() {
        refs.extend(&customer.passphrase);
    }
    for datacenter in plan.datacenters.values() {
        refs.extend(&datacenter.ssh.key_passphrase);
    }
    for host in &plan.hosts {
        refs.extend(&host.ssh.key_passphrase);
    }
    for notifier in plan.notifiers.values() {
        refs.extend(&notifier.secret);
    }
    let mut values: Vec<String> = refs
        .into_iter()
        .filter_map(|r| r.read().ok())
        .filter_map(|bytes| String::from_utf8(bytes).ok())
        .filter(|v| !v.trim().is_empty())
        .collect();
    values.sort();
    values.dedup();
    values
}

/// Replaces secret values in every text of the events (longest first, as the journal's
/// redaction does).
fn hide_secrets(events: &mut [Event], secrets: &[String]) {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    if secrets.is_empty() {
        return;
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let clean = |text: &mut String| {
        for secret in &secrets {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), "***");
            }
        }
    };
    for event in events {
        match &mut event.kind {
            EventKind::StepNote { message, .. } => clean(message),
            EventKind::StepFinished { outcome, .. } => match outcome {
                StepOutcome::Failed { error, .. } => clean(error),
                StepOutcome::Succeeded { summary, facts, .. } => {
                    summary.iter_mut().for_each(clean);
                    facts.values_mut().for_each(clean);
                }
            },
            EventKind::StackFinished { outcome, .. } => match outcome {
                StackOutcome::Failed { error, .. } => clean(error),
                StackOutcome::Skipped { reason } | StackOutcome::Interrupted { reason } => {
                    clean(reason)
                }
                StackOutcome::Recovered => {}
            },
            _ => {}
        }
    }
}

fn millis_between(from: jiff::Timestamp, to: jiff::Timestamp) -> u64 {
    u64::try_from(to.duration_since(from).as_millis().max(0)).unwrap_or(u64::MAX)
}

/// `1h02m`, `45s`, `250ms`: a duration for a report cell.
pub fn short_duration(ms: u64) -> String {
    crate::plan::format_duration(std::time::Duration::from_millis(ms))
}
