//! What a run reports: [`Event`]s, recorded by an [`EventSink`] — the journal, a terminal
//! renderer, a JSON stream, a test's memory — before the run goes on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What steps hand to later steps: host names, addresses, snapshot ids. Never secrets: facts
/// are journaled.
pub type Facts = BTreeMap<String, String>;

/// One thing that happened in a run. `seq` orders the events of a run (across resumes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run.
    pub run: String,
    /// Position in the run, from 1; never reused, also across resumes.
    pub seq: u64,
    /// When it happened.
    pub time: jiff::Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`]. In JSON: `{"run": .., "seq": .., "time": .., "event":
/// "step_finished", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run starts (or resumes).
    RunStarted {
        /// The plan's name.
        plan: String,
        /// The plan's digest.
        plan_digest: String,
        /// Every stack of the run.
        stacks: Vec<String>,
        /// Stacks recovered at once.
        parallelism: usize,
        /// Whether a failure stops the run.
        fail_fast: bool,
        /// Whether this continues an earlier attempt of the run.
        resumed: bool,
    },
    /// A stack starts: its dependencies are recovered.
    StackStarted {
        /// The stack.
        stack: String,
    },
    /// An attempt of a step starts.
    StepStarted {
        /// The stack.
        stack: String,
        /// The step.
        step: String,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Something a step wants on the record (a probe result, a notification sent).
    StepNote {
        /// The stack.
        stack: String,
        /// The step.
        step: String,
        /// What happened.
        message: String,
    },
    /// An attempt of a step ended.
    StepFinished {
        /// The stack.
        stack: String,
        /// The step.
        step: String,
        /// Which attempt.
        attempt: u32,
        /// How it went.
        outcome: StepOutcome,
    },
    /// A step is not run: it finished in an earlier attempt of this run.
    StepReused {
        /// The stack.
        stack: String,
        /// The step.
        step: String,
    },
    /// A stack ended.
    StackFinished {
        /// The stack.
        stack: String,
        /// How it went.
        outcome: StackOutcome,
    },
    /// What the run measured (RTO, RPO, step timings against the plan's objectives), over
    /// every attempt so far: the last event of each attempt of a `drp recover` run. A report
    /// reads the last one; [`measure`](super::measure::measure) recomputes it from the
    /// other events.
    RunMeasured {
        /// The measurements.
        measurements: super::measure::RunMeasurements,
    },
    /// The run ended.
    RunFinished {
        /// Stacks recovered.
        recovered: usize,
        /// Stacks failed.
        failed: usize,
        /// Stacks skipped.
        skipped: usize,
        /// Stacks interrupted.
        interrupted: usize,
    },
}

impl EventKind {
    /// The stack the event is about, if any.
    pub fn stack(&self) -> Option<&str> {
        match self {
            EventKind::StackStarted { stack }
            | EventKind::StepStarted { stack, .. }
            | EventKind::StepNote { stack, .. }
            | EventKind::StepFinished { stack, .. }
            | EventKind::StepReused { stack, .. }
            | EventKind::StackFinished { stack, .. } => Some(stack),
            EventKind::RunStarted { .. }
            | EventKind::RunFinished { .. }
            | EventKind::RunMeasured { .. } => None,
        }
    }
}

/// How an attempt of a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    /// It did its job.
    Succeeded {
        /// Facts for later steps (and the report).
        facts: Facts,
        /// Bytes moved, if it moved data.
        bytes: Option<u64>,
        /// One line for people.
        summary: Option<String>,
        /// How long the attempt took.
        duration_ms: u64,
    },
    /// It failed, or ran out of time.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether it ran out of time.
        timed_out: bool,
        /// When it is retried (`None`: it is not).
        retry_in_ms: Option<u64>,
        /// How long the attempt took.
        duration_ms: u64,
    },
}

/// How a stack ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StackOutcome {
    /// Every step succeeded.
    Recovered,
    /// A step failed after its retries.
    Failed {
        /// The step.
        step: String,
        /// Its last error.
        error: String,
    },
    /// Never started.
    Skipped {
        /// Why (the dependency that failed, or fail-fast).
        reason: String,
    },
    /// Started, then stopped between two steps (fail-fast, or the journal failed).
    Interrupted {
        /// Why.
        reason: String,
    },
}

impl StackOutcome {
    /// `recovered`, `failed`, `skipped`, `interrupted`.
    pub fn name(&self) -> &'static str {
        match self {
            StackOutcome::Recovered => "recovered",
            StackOutcome::Failed { .. } => "failed",
            StackOutcome::Skipped { .. } => "skipped",
            StackOutcome::Interrupted { .. } => "interrupted",
        }
    }
}

/// An event could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Receives a run's events.
///
/// The executor awaits [`EventSink::record`] before it goes on, so a sink that persists
/// (the journal) has every event stored before the next step starts. If `record` fails, the
/// run stops starting steps (running ones end first): a run whose journal is incomplete
/// could not be resumed faithfully.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Records one event.
    async fn record(&self, event: &Event) -> Result<(), SinkError>;

    /// Live progress of a running step (bytes so far). Not durable, may be called often;
    /// ignored by default.
    fn progress(&self, _stack: &str, _step: &str, _bytes: u64) {}
}

/// Records into several sinks, in order. A failing sink fails the record, after every sink
/// was tried.
#[derive(Clone, Default)]
pub struct Fanout {
    sinks: Vec<Arc<dyn EventSink>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Fanout {
    /// No sinks yet.
    pub fn new() -> Fanout {
        Fanout::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: Arc<dyn EventSink>) -> Fanout {
        self.sinks.push(sink);
        self
    }
}

#[async_trait]
impl EventSink for Fanout {
    async fn record(&self, event: &Event) -> Result<(), SinkError> {
        let mut first_error = None;
        for sink in &self.sinks {
            if let Err(e) = sink.record(event).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn progress(&self, stack: &str, step: &str, bytes: u64) {
        for sink in &self.sinks {
            sink.progress(stack, step, bytes);
        }
    }
}

/// Keeps events in memory (tests, and the report of a run that just ended).
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
}

impl MemorySink {
    /// Empty.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl EventSink for MemorySink {
    async fn record(&self, event: &Event) -> Result<(), SinkError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
        Ok(())
    }
}

/// Replaces known secret values in every text of an event before it reaches the inner sink:
/// a command's error output may echo a password that the step used. The secrets (read from
/// the environment or files at run time) are given to [`Redact::new`].
pub struct Redact<S> {
    inner: S,
    secrets: Vec<String>,
}

impl<S> std::fmt::Debug for Redact<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redact")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl<S: EventSink> Redact<S> {
    /// Hides `secrets` (empty strings and very short ones, which would mangle everything,
    /// are ignored) from `inner`.
    pub fn new(inner: S, secrets: impl IntoIterator<Item = String>) -> Redact<S> {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redact { inner, secrets }
    }

    fn clean(&self, text: &mut String) {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), "***");
            }
        }
    }
}

#[async_trait]
impl<S: EventSink> EventSink for Redact<S> {
    async fn record(&self, event: &Event) -> Result<(), SinkError> {
        let mut event = event.clone();
        match &mut event.kind {
            EventKind::StepNote { message, .. } => self.clean(message),
            EventKind::StepFinished { outcome, .. } => match outcome {
                StepOutcome::Failed { error, .. } => self.clean(error),
                StepOutcome::Succeeded { summary, facts, .. } => {
                    if let Some(summary) = summary {
                        self.clean(summary);
                    }
                    for value in facts.values_mut() {
                        self.clean(value);
                    }
                }
            },
            EventKind::StackFinished { outcome, .. } => match outcome {
                StackOutcome::Failed { error, .. } => self.clean(error),
                StackOutcome::Skipped { reason } | StackOutcome::Interrupted { reason } => {
                    self.clean(reason)
                }
                StackOutcome::Recovered => {}
            },
            _ => {}
        }
        self.inner.record(&event).await
    }

    fn progress(&self, stack: &str, step: &str, bytes: u64) {
        self.inner.progress(stack, step, bytes);
    }
}
