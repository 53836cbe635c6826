//! What a run measured: per stack RTO, RPO and every step's timing, compared with the plan's
//! objectives — computed from the journal's events alone, so that a report of any run (also
//! one resumed on another machine) says the same as the run did.
//!
//! Definitions:
//!
//! - **Incident start**: when the outage began — given by the operator (`--incident-start`),
//!   else the start of the run's first attempt.
//! - **RTO** of a stack: from the incident start to the moment its probes were healthy (the
//!   end of its `wait-healthy` step; a stack without probes: the end of its last step).
//!   Time a killed run spent dead counts: the customer was down all along.
//! - **RPO** of a stack: the age of the restored snapshot at the incident start (the data
//!   written after it is lost).
//! - The run's RTO and RPO are the largest of its stacks'.
//!
//! `drp recover` journals the result as the last event of each attempt
//! ([`EventKind::RunMeasured`](super::EventKind::RunMeasured)).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind, StackOutcome, StepOutcome};

/// The fact (of a restore step) naming the restored snapshot.
pub const SNAPSHOT_FACT: &str = "snapshot";
/// The fact holding the restored snapshot's time (RFC 3339).
pub const SNAPSHOT_TIME_FACT: &str = "snapshot_time";
/// The step whose end means "healthy".
pub const HEALTHY_STEP: &str = "wait-healthy";

/// A stack's objectives, from the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Objectives {
    /// Recovery time objective.
    pub rto: Option<Duration>,
    /// Recovery point objective.
    pub rpo: Option<Duration>,
}

/// A measurement against its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Within the objective.
    Pass,
    /// Beyond it, or not measured because the stack did not recover.
    Fail,
    /// No objective.
    None,
}

impl Verdict {
    fn of(measured: Option<u64>, objective: Option<Duration>) -> Verdict {
        match (measured, objective) {
            (_, None) => Verdict::None,
            (Some(ms), Some(limit)) if u128::from(ms) <= limit.as_millis() => Verdict::Pass,
            _ => Verdict::Fail,
        }
    }

    /// `PASS`, `FAIL`, `-`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::None => "-",
        }
    }
}

/// The last attempt of one step, as the journal has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The step.
    pub step: String,
    /// Its last attempt's start.
    pub started: jiff::Timestamp,
    /// Its last attempt's end (`None`: never ended, the run was killed in it).
    pub finished: Option<jiff::Timestamp>,
    /// Its last attempt's duration.
    pub duration_ms: Option<u64>,
    /// Attempts, across resumes.
    pub attempts: u32,
    /// `succeeded`, `failed`, or `unfinished`.
    pub status: String,
    /// Bytes moved, if any.
    pub bytes: Option<u64>,
}

/// One stack's measurements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackMeasurement {
    /// The stack.
    pub stack: String,
    /// `recovered`, `failed`, `skipped`, `interrupted`, or `unfinished`.
    pub outcome: String,
    /// Incident start → healthy (`None`: not recovered).
    pub rto_ms: Option<u64>,
    /// The RTO objective.
    pub rto_objective_ms: Option<u64>,
    /// RTO against its objective.
    pub rto_verdict: Verdict,
    /// Age of the restored snapshot at the incident start (`None`: nothing restored).
    pub rpo_ms: Option<u64>,
    /// The RPO objective.
    pub rpo_objective_ms: Option<u64>,
    /// RPO against its objective.
    pub rpo_verdict: Verdict,
    /// The restored snapshot.
    pub snapshot: Option<String>,
    /// Every step that ran, in order of start.
    pub steps: Vec<StepTiming>,
}

/// What a run measured (the payload of `run_measured` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeasurements {
    /// Where RTO and RPO are measured from.
    pub incident_start: jiff::Timestamp,
    /// Whether `incident_start` was given by the operator (else: the run's first start).
    pub incident_start_given: bool,
    /// The slowest stack's RTO, when every stack recovered.
    pub rto_ms: Option<u64>,
    /// The largest RPO.
    pub rpo_ms: Option<u64>,
    /// Whether every stack passed both objectives it has (and recovered).
    pub passed: bool,
    /// Per stack, by name.
    pub stacks: Vec<StackMeasurement>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn between(from: jiff::Timestamp, to: jiff::Timestamp) -> u64 {
    Duration::try_from(to.duration_since(from)).map_or(0, millis)
}

/// Measures a run from its events (every attempt's, any order). `incident_start`: the
/// operator's, else the first `run_started`. `objectives` by stack.
pub fn measure(
    events: &[Event],
    incident_start: Option<jiff::Timestamp>,
    objectives: &BTreeMap<String, Objectives>,
) -> RunMeasurements {
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| e.seq);
    let run_start = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::RunStarted { .. }))
        .map_or_else(jiff::Timestamp::now, |e| e.time);
    let start = incident_start.unwrap_or(run_start);

    let mut stacks: BTreeMap<String, StackMeasurement> = BTreeMap::new();
    let mut healthy_at: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    let mut last_step_end: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    let mut snapshot_time: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    let entry = |stacks: &mut BTreeMap<String, StackMeasurement>, name: &str| {
        stacks
            .entry(name.to_string())
            .or_insert_with(|| StackMeasurement {
                stack: name.to_string(),
                outcome: "unfinished".into(),
                rto_ms: None,
                rto_objective_ms: None,
                rto_verdict: Verdict::None,
                rpo_ms: None,
                rpo_objective_ms: None,
                rpo_verdict: Verdict::None,
                snapshot: None,
                steps: Vec::new(),
            });
    };
    for event in &events {
        match &event.kind {
            EventKind::RunStarted { stacks: names, .. } => {
                for name in names {
                    entry(&mut stacks, name);
                }
            }
            EventKind::StepStarted { stack, step, .. } => {
                entry(&mut stacks, stack);
                let m = stacks.get_mut(stack).expect("just inserted");
                match m.steps.iter_mut().find(|s| s.step == *step) {
                    Some(timing) => {
                        timing.started = event.time;
                        timing.finished = None;
                        timing.duration_ms = None;
                        timing.attempts += 1;
                        timing.status = "unfinished".into();
                    }
                    None => m.steps.push(StepTiming {
                        step: step.clone(),
                        started: event.time,
                        finished: None,
                        duration_ms: None,
                        attempts: 1,
                        status: "unfinished".into(),
                        bytes: None,
                    }),
                }
            }
            EventKind::StepFinished {
                stack,
                step,
                outcome,
                ..
            } => {
                entry(&mut stacks, stack);
                let m = stacks.get_mut(stack).expect("just inserted");
                let Some(timing) = m.steps.iter_mut().find(|s| s.step == *step) else {
                    continue;
                };
                timing.finished = Some(event.time);
                match outcome {
                    StepOutcome::Succeeded {
                        facts,
                        bytes,
                        duration_ms,
                        ..
                    } => {
                        timing.status = "succeeded".into();
                        timing.duration_ms = Some(*duration_ms);
                        timing.bytes = *bytes;
                        if step == HEALTHY_STEP {
                            healthy_at.insert(stack.clone(), event.time);
                        }
                        last_step_end.insert(stack.clone(), event.time);
                        if let Some(id) = facts.get(SNAPSHOT_FACT) {
                            m.snapshot = Some(id.clone());
                        }
                        if let Some(time) = facts
                            .get(SNAPSHOT_TIME_FACT)
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        {
                            snapshot_time.insert(stack.clone(), time);
                        }
                    }
                    StepOutcome::Failed { duration_ms, .. } => {
                        timing.status = "failed".into();
                        timing.duration_ms = Some(*duration_ms);
                    }
                }
            }
            EventKind::StackFinished { stack, outcome } => {
                entry(&mut stacks, stack);
                let m = stacks.get_mut(stack).expect("just inserted");
                m.outcome = outcome.name().to_string();
                if !matches!(outcome, StackOutcome::Recovered) {
                    healthy_at.remove(stack);
                }
            }
            _ => {}
        }
    }

    for (name, m) in &mut stacks {
        let objective = objectives.get(name).copied().unwrap_or_default();
        if m.outcome == "recovered" {
            let healthy = healthy_at.get(name).or_else(|| last_step_end.get(name));
            m.rto_ms = healthy.map(|t| between(start, *t));
        }
        m.rpo_ms = snapshot_time.get(name).map(|t| between(*t, start));
        m.rto_objective_ms = objective.rto.map(millis);
        m.rpo_objective_ms = objective.rpo.map(millis);
        m.rto_verdict = Verdict::of(m.rto_ms, objective.rto);
        m.rpo_verdict = Verdict::of(m.rpo_ms, objective.rpo);
        m.steps.sort_by_key(|s| s.started);
    }
    let stacks: Vec<StackMeasurement> = stacks.into_values().collect();
    let all_recovered = !stacks.is_empty() && stacks.iter().all(|s| s.outcome == "recovered");
    RunMeasurements {
        incident_start: start,
        incident_start_given: incident_start.is_some(),
        rto_ms: if all_recovered {
            stacks.iter().filter_map(|s| s.rto_ms).max()
        } else {
            None
        },
        rpo_ms: stacks.iter().filter_map(|s| s.rpo_ms).max(),
        passed: all_recovered
            && stacks
                .iter()
                .all(|s| s.rto_verdict != Verdict::Fail && s.rpo_verdict != Verdict::Fail),
        stacks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Facts;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn event(seq: u64, seconds: i64, kind: EventKind) -> Event {
        Event {
            run: "r".into(),
            seq,
            time: at(seconds),
            kind,
        }
    }

    fn finished(stack: &str, step: &str, facts: Facts) -> EventKind {
        EventKind::StepFinished {
            stack: stack.into(),
            step: step.into(),
            attempt: 1,
            outcome: StepOutcome::Succeeded {
                facts,
                bytes: None,
                summary: None,
                duration_ms: 1000,
            },
        }
    }

    fn started(stack: &str, step: &str) -> EventKind {
        EventKind::StepStarted {
            stack: stack.into(),
            step: step.into(),
            attempt: 1,
        }
    }

    /// Run starts at 0; the snapshot is from -600 s; healthy at 100 s. A second stack fails.
    fn run() -> Vec<Event> {
        let snapshot: Facts = [
            (SNAPSHOT_FACT.to_string(), "s1".to_string()),
            (SNAPSHOT_TIME_FACT.to_string(), at(-600).to_string()),
        ]
        .into();
        vec![
            event(
                1,
                0,
                EventKind::RunStarted {
                    plan: "p".into(),
                    plan_digest: "d".into(),
                    stacks: vec!["web".into(), "db".into()],
                    parallelism: 2,
                    fail_fast: false,
                    resumed: false,
                },
            ),
            event(2, 10, started("web", "restore:www")),
            event(3, 50, finished("web", "restore:www", snapshot)),
            event(4, 60, started("web", HEALTHY_STEP)),
            event(5, 100, finished("web", HEALTHY_STEP, Facts::new())),
            event(
                6,
                101,
                EventKind::StackFinished {
                    stack: "web".into(),
                    outcome: StackOutcome::Recovered,
                },
            ),
            event(
                7,
                102,
                EventKind::StackFinished {
                    stack: "db".into(),
                    outcome: StackOutcome::Failed {
                        step: "x".into(),
                        error: "y".into(),
                    },
                },
            ),
        ]
    }

    fn objectives(rto: u64, rpo: u64) -> BTreeMap<String, Objectives> {
        ["web", "db"]
            .into_iter()
            .map(|s| {
                (
                    s.to_string(),
                    Objectives {
                        rto: Some(Duration::from_secs(rto)),
                        rpo: Some(Duration::from_secs(rpo)),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rto_runs_to_healthy_and_rpo_is_the_snapshot_age_at_the_incident_start() {
        let m = measure(&run(), None, &objectives(120, 900));
        let web = m.stacks.iter().find(|s| s.stack == "web").unwrap();
        assert_eq!(web.rto_ms, Some(100_000));
        assert_eq!(web.rpo_ms, Some(600_000));
        assert_eq!(
            (web.rto_verdict, web.rpo_verdict),
            (Verdict::Pass, Verdict::Pass)
        );
        assert_eq!(web.snapshot.as_deref(), Some("s1"));
        assert_eq!(web.steps.len(), 2);
        assert_eq!(web.steps[1].duration_ms, Some(1000));
        let db = m.stacks.iter().find(|s| s.stack == "db").unwrap();
        assert_eq!((db.outcome.as_str(), db.rto_ms), ("failed", None));
        assert_eq!(db.rto_verdict, Verdict::Fail);
        // A failed stack: no overall RTO, and the run fails its objectives.
        assert_eq!(m.rto_ms, None);
        assert!(!m.passed);
    }

    #[test]
    fn an_earlier_incident_start_lengthens_rto_and_shortens_rpo() {
        let m = measure(&run(), Some(at(-60)), &objectives(120, 900));
        let web = m.stacks.iter().find(|s| s.stack == "web").unwrap();
        assert_eq!(web.rto_ms, Some(160_000));
        assert_eq!(web.rpo_ms, Some(540_000));
        assert_eq!(web.rto_verdict, Verdict::Fail);
        assert!(m.incident_start_given);
    }
}
