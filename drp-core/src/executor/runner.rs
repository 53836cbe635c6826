//! How steps get done: the [`StepRunner`] trait. `drp recover` plugs in a runner over the
//! real store, provisioners, transports, probes and notifiers; drills wrap it with their own
//! step kinds; tests plug in memory.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::event::{EventKind, Facts};
use super::spec::{StackSpec, StepSpec};

/// Does one attempt of one step.
///
/// Contract:
/// - An attempt may be cut off at any `.await` (timeout, or the process dies): on resume, a
///   step that had not finished runs again, so a step must be safe to run again after a
///   partial attempt (restores stage and then move; commands should be idempotent).
/// - `Ok` facts are merged into the stack's facts and seen by its later steps and by the
///   stacks that depend on it. They are journaled: no secrets.
/// - Error messages are journaled and shown: no secrets (the executor's
///   [`Redact`](super::Redact) sink is a second line of defence, not the first).
#[async_trait]
pub trait StepRunner: Send + Sync {
    /// Runs one attempt.
    async fn run(&self, call: StepCall<'_>) -> Result<StepOutput, StepError>;
}

/// Everything a [`StepRunner`] gets for one attempt.
#[derive(Debug)]
pub struct StepCall<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The stack.
    pub stack: &'a StackSpec,
    /// The step.
    pub step: &'a StepSpec,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Facts of this stack's earlier steps (also those of an earlier attempt of the run).
    pub facts: &'a Facts,
    /// Facts of the stacks this one depends on, by stack.
    pub dependencies: &'a BTreeMap<String, Facts>,
    pub(crate) reporter: &'a dyn Reporter,
}

impl StepCall<'_> {
    /// Live progress: `bytes` moved so far by this step (not journaled).
    pub fn progress(&self, bytes: u64) {
        self.reporter
            .progress(&self.stack.name, &self.step.name, bytes);
    }

    /// Puts a line on the record (journaled before this returns): a probe result, a
    /// notification sent. No secrets.
    ///
    /// A plain function returning the reporter's boxed future rather than an `async fn`:
    /// the future of an `async fn` here trips the compiler's "`Send` is not general
    /// enough" check when runners await it inside loops.
    pub fn note(
        &self,
        message: impl Into<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.reporter.emit(EventKind::StepNote {
            stack: self.stack.name.clone(),
            step: self.step.name.clone(),
            message: message.into(),
        })
    }
}

/// What the executor lends a [`StepCall`] to report through.
#[async_trait]
pub(crate) trait Reporter: Send + Sync + std::fmt::Debug {
    fn progress(&self, stack: &str, step: &str, bytes: u64);
    async fn emit(&self, kind: EventKind);
}

/// What a successful attempt returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// Facts for later steps.
    pub facts: Facts,
    /// Bytes moved, if the step moved data.
    pub bytes: Option<u64>,
    /// One line for people (`spare-2 (root@10.0.2.12)`).
    pub summary: Option<String>,
}

impl StepOutput {
    /// Nothing to report.
    pub fn done() -> StepOutput {
        StepOutput::default()
    }

    /// Adds a fact.
    pub fn with_fact(mut self, key: impl Into<String>, value: impl Into<String>) -> StepOutput {
        self.facts.insert(key.into(), value.into());
        self
    }

    /// Sets the bytes moved.
    pub fn with_bytes(mut self, bytes: u64) -> StepOutput {
        self.bytes = Some(bytes);
        self
    }

    /// Sets the summary.
    pub fn with_summary(mut self, summary: impl Into<String>) -> StepOutput {
        self.summary = Some(summary.into());
        self
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// What went wrong (journaled: no secrets).
    pub message: String,
    /// Whether another attempt could succeed. Corrupt backups, wrong keys, a refused
    /// approval: no.
    pub retryable: bool,
}

impl StepError {
    /// A failure worth retrying (network, a service not up yet, ...).
    pub fn retryable(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that another attempt would repeat.
    pub fn permanent(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retryable: false,
        }
    }
}
