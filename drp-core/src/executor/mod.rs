//! The executor: runs a [`RunSpec`] — stacks in dependency order, up to a parallelism
//! limit, each an ordered list of steps with timeouts and retries — through a
//! [`StepRunner`], reporting every [`Event`] to an [`EventSink`] before it goes on.
//!
//! It works on plain data and trait objects only, so the same executor serves `drp
//! recover` (a runner over the real store, hosts, probes and notifiers), drills (a runner
//! that adds fault steps), and tests (runners in memory).
//!
//! ```text
//! plan ──compile──▶ RunSpec ──execute(runner, sink)──▶ RunSummary
//!                                 │
//!                                 └─▶ events ─▶ Journal (store + local file), terminal, JSON
//! ```
//!
//! - [`journal`]: events kept in the plan's store and a local file; [`ResumeState`] reads
//!   them back so a resumed run skips every step that finished.
//! - [`lock`]: one run of a plan at a time, across machines.

mod engine;
mod event;
pub mod graph;
pub mod journal;
pub mod lock;
pub mod measure;
mod runner;
mod spec;

pub use engine::{
    ExecuteOptions, ExecutorError, FAILED_ERROR_FACT, FAILED_STEP_FACT, ResumeError, ResumeState,
    RunSummary, execute,
};
pub use event::{
    Event, EventKind, EventSink, Facts, Fanout, MemorySink, Redact, SinkError, StackOutcome,
    StepOutcome,
};
pub use runner::{StepCall, StepError, StepOutput, StepRunner};
pub use spec::{CommandPhase, NotifyEvent, RetryPolicy, RunSpec, StackSpec, StepKind, StepSpec};
