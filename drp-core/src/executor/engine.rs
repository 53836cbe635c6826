//! The executor: stacks in dependency order, up to the parallelism limit; steps in order,
//! each with its timeout and retries; every event recorded before the run goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::event::{Event, EventKind, EventSink, Facts, SinkError, StackOutcome, StepOutcome};
use super::graph::DependencyGraph;
use super::runner::{Reporter, StepCall, StepError, StepOutput, StepRunner};
use super::spec::{RunSpec, StackSpec, StepSpec};
use crate::plan::format_duration;

/// The fact an `on_failure` step finds naming the step that failed.
pub const FAILED_STEP_FACT: &str = "failed_step";
/// The fact an `on_failure` step finds holding that step's error.
pub const FAILED_ERROR_FACT: &str = "failed_error";

/// How to run: a new run, or the continuation of one.
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    /// The run's id (see [`new_run_id`](super::journal::new_run_id)).
    pub run_id: String,
    /// What an earlier attempt of this run finished (see [`ResumeState::from_events`]).
    pub resume: Option<ResumeState>,
}

impl ExecuteOptions {
    /// A new run.
    pub fn new(run_id: impl Into<String>) -> ExecuteOptions {
        ExecuteOptions {
            run_id: run_id.into(),
            resume: None,
        }
    }

    /// Continues the run `state` was read from (same id).
    pub fn resume(state: ResumeState) -> ExecuteOptions {
        ExecuteOptions {
            run_id: state.run_id.clone(),
            resume: Some(state),
        }
    }
}

/// What the journal of an interrupted run says is done: steps that succeeded (with their
/// facts), so that resuming does not run them again.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    run_id: String,
    plan_digest: Option<String>,
    next_seq: u64,
    done: HashMap<String, HashMap<String, Facts>>,
}

/// The journal cannot be resumed from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// No events at all.
    #[error("the journal of run {0} is empty")]
    Empty(String),
    /// Events of several runs.
    #[error("the journal mixes runs {0} and {1}")]
    MixedRuns(String, String),
}

impl ResumeState {
    /// Reads what an earlier attempt finished from its events (any order).
    pub fn from_events(events: &[Event]) -> Result<ResumeState, ResumeError> {
        let Some(first) = events.first() else {
            return Err(ResumeError::Empty(String::new()));
        };
        let mut state = ResumeState {
            run_id: first.run.clone(),
            ..ResumeState::default()
        };
        for event in events {
            if event.run != state.run_id {
                return Err(ResumeError::MixedRuns(
                    state.run_id.clone(),
                    event.run.clone(),
                ));
            }
            state.next_seq = state.next_seq.max(event.seq + 1);
            match &event.kind {
                EventKind::RunStarted { plan_digest, .. } => {
                    state.plan_digest = Some(plan_digest.clone());
                }
                EventKind::StepFinished {
                    stack,
                    step,
                    outcome: StepOutcome::Succeeded { facts, .. },
                    ..
                } => {
                    state
                        .done
                        .entry(stack.clone())
                        .or_default()
                        .insert(step.clone(), facts.clone());
                }
                _ => {}
            }
        }
        Ok(state)
    }

    /// The run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The digest of the plan the run started with.
    pub fn plan_digest(&self) -> Option<&str> {
        self.plan_digest.as_deref()
    }

    /// Whether `step` of `stack` finished.
    pub fn is_done(&self, stack: &str, step: &str) -> bool {
        self.done.get(stack).is_some_and(|s| s.contains_key(step))
    }

    /// How many steps finished.
    pub fn steps_done(&self) -> usize {
        self.done.values().map(HashMap::len).sum()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Every stack's outcome.
    pub stacks: BTreeMap<String, StackOutcome>,
    /// Every stack's facts (from its successful steps).
    pub facts: BTreeMap<String, Facts>,
}

impl RunSummary {
    /// Whether every stack was recovered.
    pub fn all_recovered(&self) -> bool {
        self.stacks
            .values()
            .all(|o| matches!(o, StackOutcome::Recovered))
    }

    /// How many stacks ended with outcome `name` (`recovered`, `failed`, ...).
    pub fn count(&self, name: &str) -> usize {
        self.stacks.values().filter(|o| o.name() == name).count()
    }
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The run spec is not runnable (every problem listed).
    #[error("invalid run: {}", .0.join("; "))]
    InvalidSpec(Vec<String>),
    /// The resume state is of another run.
    #[error("cannot resume: the journal is of run {journal}, not {requested}")]
    WrongRun {
        /// The run asked for.
        requested: String,
        /// The run of the journal.
        journal: String,
    },
    /// Events could not be recorded, so the run stopped; resume it once the sink works.
    #[error(
        "run {}: events could not be recorded ({error}); the run stopped and can be resumed",
        summary.run_id
    )]
    Sink {
        /// The first error.
        error: SinkError,
        /// Where the run got to.
        summary: Box<RunSummary>,
    },
}

/// Runs `spec`: every stack in dependency order, at most `spec.parallelism` at once; each
/// stack's steps in order through `runner`; every event recorded by `sink` before the run
/// goes on.
///
/// - A step attempt that fails (or exceeds its timeout) is retried per its policy when the
///   error is retryable; then the stack fails, its `on_failure` steps run, and the stacks
///   that depend on it are skipped, saying which dependency failed. Other stacks go on,
///   unless `fail_fast`: then no stack starts any more and running ones stop between steps.
/// - Resuming (`options.resume`) runs again only the steps that did not succeed before;
///   succeeded steps are reported as reused and their facts restored.
///
/// Step failures are outcomes in the [`RunSummary`], not errors; errors are an invalid
/// spec and a failing sink.
pub async fn execute(
    spec: &RunSpec,
    runner: &dyn StepRunner,
    sink: &dyn EventSink,
    options: ExecuteOptions,
) -> Result<RunSummary, ExecutorError> {
    let graph = validate(spec)?;
    let ExecuteOptions { run_id, resume } = options;
    let resume = resume.unwrap_or_default();
    if !resume.run_id.is_empty() && resume.run_id != run_id {
        return Err(ExecutorError::WrongRun {
            requested: run_id,
            journal: resume.run_id,
        });
    }
    let resumed = !resume.run_id.is_empty();
    let engine = Engine {
        spec,
        runner,
        sink,
        run_id: &run_id,
        seq: AtomicU64::new(resume.next_seq.max(1)),
        stop: Mutex::new(None),
        sink_error: Mutex::new(None),
        done: resume.done,
    };
    engine
        .emit(EventKind::RunStarted {
            plan: spec.plan.clone(),
            plan_digest: spec.plan_digest.clone(),
            stacks: spec.stacks.iter().map(|s| s.name.clone()).collect(),
            parallelism: spec.parallelism,
            fail_fast: spec.fail_fast,
            resumed,
        })
        .await;

    let outcomes = engine.schedule(&graph).await;

    let summary = RunSummary {
        run_id: run_id.clone(),
        stacks: outcomes
            .0
            .into_iter()
            .enumerate()
            .map(|(i, o)| (graph.name(i).to_string(), o))
            .collect(),
        facts: outcomes.1,
    };
    engine
        .emit(EventKind::RunFinished {
            recovered: summary.count("recovered"),
            failed: summary.count("failed"),
            skipped: summary.count("skipped"),
            interrupted: summary.count("interrupted"),
        })
        .await;
    let sink_error = engine
        .sink_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    match sink_error {
        Some(error) => Err(ExecutorError::Sink {
            error,
            summary: Box::new(summary),
        }),
        None => Ok(summary),
    }
}

/// Everything that can be wrong with a spec, at once.
fn validate(spec: &RunSpec) -> Result<DependencyGraph, ExecutorError> {
    let mut problems = Vec::new();
    if spec.parallelism == 0 {
        problems.push("parallelism must be at least 1".to_string());
    }
    for stack in &spec.stacks {
        let mut names = BTreeSet::new();
        for step in stack.steps.iter().chain(&stack.on_failure) {
            if !names.insert(step.name.as_str()) {
                problems.push(format!(
                    "stack `{}` has two steps named `{}`",
                    stack.name, step.name
                ));
            }
        }
    }
    let graph = DependencyGraph::new(
        spec.stacks
            .iter()
            .map(|s| (s.name.as_str(), s.depends_on.iter().map(String::as_str))),
    );
    match graph {
        Ok(graph) if problems.is_empty() => Ok(graph),
        Ok(_) => Err(ExecutorError::InvalidSpec(problems)),
        Err(errors) => {
            problems.extend(errors.iter().map(ToString::to_string));
            Err(ExecutorError::InvalidSpec(problems))
        }
    }
}

struct Engine<'a> {
    spec: &'a RunSpec,
    runner: &'a dyn StepRunner,
    sink: &'a dyn EventSink,
    run_id: &'a str,
    seq: AtomicU64,
    /// Why no step may start any more (fail-fast, a failing sink).
    stop: Mutex<Option<String>>,
    sink_error: Mutex<Option<SinkError>>,
    /// Steps done in an earlier attempt: stack → step → facts.
    done: HashMap<String, HashMap<String, Facts>>,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// Why a step did not succeed.
enum StepFailure {
    Failed(StepError),
    Interrupted(String),
}

type StackFuture<'e> = Pin<Box<dyn Future<Output = (usize, StackOutcome, Facts)> + Send + 'e>>;

impl<'a> Engine<'a> {
    /// Records an event; false if the sink failed (the run is then stopping).
    async fn emit(&self, kind: EventKind) -> bool {
        let event = Event {
            run: self.run_id.to_string(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            time: jiff::Timestamp::now(),
            kind,
        };
        match self.sink.record(&event).await {
            Ok(()) => true,
            Err(error) => {
                self.stop_with(format!("events could not be recorded: {error}"));
                self.sink_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(error);
                false
            }
        }
    }

    fn stop_with(&self, reason: String) {
        self.stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }

    fn stop_reason(&self) -> Option<String> {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts stacks as their dependencies recover, up to the limit; returns every stack's
    /// outcome (by index) and facts (by name).
    async fn schedule(
        &self,
        graph: &DependencyGraph,
    ) -> (Vec<StackOutcome>, BTreeMap<String, Facts>) {
        let count = graph.len();
        let level = graph.level_of();
        let mut waiting_on: Vec<usize> = (0..count).map(|i| graph.dependencies(i).len()).collect();
        let mut outcomes: Vec<Option<StackOutcome>> = vec![None; count];
        let mut facts: BTreeMap<String, Facts> = BTreeMap::new();
        // Ready stacks, in recovery order: level, then name.
        let mut ready: BTreeSet<(usize, &str, usize)> = (0..count)
            .filter(|&i| waiting_on[i] == 0)
            .map(|i| (level[i], graph.name(i), i))
            .collect();
        let mut running: FuturesUnordered<StackFuture<'_>> = FuturesUnordered::new();

        loop {
            while running.len() < self.spec.parallelism {
                let Some((_, _, i)) = ready.pop_first() else {
                    break;
                };
                if let Some(reason) = self.stop_reason() {
                    let outcome = StackOutcome::Skipped {
                        reason: format!("not started: {reason}"),
                    };
                    self.finish_unstarted(i, outcome, graph, &mut outcomes)
                        .await;
                    continue;
                }
                let dependencies: BTreeMap<String, Facts> = graph
                    .dependencies(i)
                    .iter()
                    .map(|&d| {
                        let name = graph.name(d).to_string();
                        let f = facts.get(&name).cloned().unwrap_or_default();
                        (name, f)
                    })
                    .collect();
                running.push(Box::pin(async move {
                    let (outcome, facts) = self.run_stack(i, dependencies).await;
                    (i, outcome, facts)
                }));
            }
            let Some((i, outcome, stack_facts)) = running.next().await else {
                break;
            };
            facts.insert(graph.name(i).to_string(), stack_facts);
            let recovered = matches!(outcome, StackOutcome::Recovered);
            outcomes[i] = Some(outcome);
            if recovered {
                for &d in graph.dependants(i) {
                    waiting_on[d] -= 1;
                    if waiting_on[d] == 0 && outcomes[d].is_none() {
                        ready.insert((level[d], graph.name(d), d));
                    }
                }
            } else {
                self.skip_dependants(i, graph, &mut outcomes).await;
            }
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| {
                // Unreachable with a valid graph: every stack is started or skipped.
                o.unwrap_or_else(|| StackOutcome::Skipped {
                    reason: "not started".into(),
                })
            })
            .collect();
        (outcomes, facts)
    }

    /// Records the outcome of a stack that never started, and skips its dependants.
    async fn finish_unstarted(
        &self,
        i: usize,
        outcome: StackOutcome,
        graph: &DependencyGraph,
        outcomes: &mut [Option<StackOutcome>],
    ) {
        self.emit(EventKind::StackFinished {
            stack: graph.name(i).to_string(),
            outcome: outcome.clone(),
        })
        .await;
        outcomes[i] = Some(outcome);
        self.skip_dependants(i, graph, outcomes).await;
    }

    /// Skips every stack that depends, directly or not, on stack `i` (which did not recover),
    /// each naming the dependency that stopped it.
    async fn skip_dependants(
        &self,
        i: usize,
        graph: &DependencyGraph,
        outcomes: &mut [Option<StackOutcome>],
    ) {
        let mut queue = vec![i];
        while let Some(from) = queue.pop() {
            let what = match &outcomes[from] {
                Some(StackOutcome::Failed { .. }) => "failed",
                Some(StackOutcome::Interrupted { .. }) => "was interrupted",
                _ => "was skipped",
            };
            for &d in graph.dependants(from) {
                if outcomes[d].is_some() {
                    continue;
                }
                let outcome = StackOutcome::Skipped {
                    reason: format!("depends on {}, which {what}", graph.name(from)),
                };
                self.emit(EventKind::StackFinished {
                    stack: graph.name(d).to_string(),
                    outcome: outcome.clone(),
                })
                .await;
                outcomes[d] = Some(outcome);
                queue.push(d);
            }
        }
    }

    async fn run_stack(
        &self,
        index: usize,
        dependencies: BTreeMap<String, Facts>,
    ) -> (StackOutcome, Facts) {
        let stack = &self.spec.stacks[index];
        self.emit(EventKind::StackStarted {
            stack: stack.name.clone(),
        })
        .await;
        let mut facts = Facts::new();
        let mut outcome = StackOutcome::Recovered;
        let done = self.done.get(&stack.name);
        for step in &stack.steps {
            if let Some(done_facts) = done.and_then(|d| d.get(&step.name)) {
                facts.extend(done_facts.clone());
                self.emit(EventKind::StepReused {
                    stack: stack.name.clone(),
                    step: step.name.clone(),
                })
                .await;
                continue;
            }
            if let Some(reason) = self.stop_reason() {
                outcome = StackOutcome::Interrupted { reason };
                break;
            }
            match self.run_step(stack, step, &facts, &dependencies).await {
                Ok(output) => facts.extend(output.facts),
                Err(StepFailure::Interrupted(reason)) => {
                    outcome = StackOutcome::Interrupted { reason };
                    break;
                }
                Err(StepFailure::Failed(error)) => {
                    if self.spec.fail_fast {
                        // At once, before anything else can start a step.
                        self.stop_with(format!("fail-fast after stack {} failed", stack.name));
                    }
                    outcome = StackOutcome::Failed {
                        step: step.name.clone(),
                        error: error.message,
                    };
                    break;
                }
            }
        }
        if let StackOutcome::Failed { step, error } = &outcome {
            // `on_failure` steps see what failed (a notification says it).
            let mut failure_facts = facts.clone();
            failure_facts.insert(FAILED_STEP_FACT.into(), step.clone());
            failure_facts.insert(FAILED_ERROR_FACT.into(), error.clone());
            // Best effort: a failed notification must not hide the failure it reports.
            for step in &stack.on_failure {
                let _ = self
                    .run_step(stack, step, &failure_facts, &dependencies)
                    .await;
            }
        }
        self.emit(EventKind::StackFinished {
            stack: stack.name.clone(),
            outcome: outcome.clone(),
        })
        .await;
        (outcome, facts)
    }

    /// Every attempt of one step, with its timeout and retries.
    async fn run_step(
        &self,
        stack: &StackSpec,
        step: &StepSpec,
        facts: &Facts,
        dependencies: &BTreeMap<String, Facts>,
    ) -> Result<StepOutput, StepFailure> {
        let attempts = step.retry.attempts();
        let mut attempt = 1;
        loop {
            let recorded = self
                .emit(EventKind::StepStarted {
                    stack: stack.name.clone(),
                    step: step.name.clone(),
                    attempt,
                })
                .await;
            if !recorded {
                // A step whose start is not on record must not run: a resume could not
                // know it ran.
                let reason = self.stop_reason().unwrap_or_default();
                return Err(StepFailure::Interrupted(reason));
            }
            let started = Instant::now();
            let call = StepCall {
                run_id: self.run_id,
                stack,
                step,
                attempt,
                facts,
                dependencies,
                reporter: self,
            };
            let result = match step.timeout {
                None => self.runner.run(call).await.map_err(|e| (e, false)),
                Some(limit) => match tokio::time::timeout(limit, self.runner.run(call)).await {
                    Ok(result) => result.map_err(|e| (e, false)),
                    Err(_) => Err((
                        StepError::retryable(format!("timed out after {}", format_duration(limit))),
                        true,
                    )),
                },
            };
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match result {
                Ok(output) => {
                    self.emit(EventKind::StepFinished {
                        stack: stack.name.clone(),
                        step: step.name.clone(),
                        attempt,
                        outcome: StepOutcome::Succeeded {
                            facts: output.facts.clone(),
                            bytes: output.bytes,
                            summary: output.summary.clone(),
                            duration_ms,
                        },
                    })
                    .await;
                    return Ok(output);
                }
                Err((error, timed_out)) => {
                    let retry =
                        error.retryable && attempt < attempts && self.stop_reason().is_none();
                    let delay = retry.then(|| step.retry.delay_after(attempt));
                    self.emit(EventKind::StepFinished {
                        stack: stack.name.clone(),
                        step: step.name.clone(),
                        attempt,
                        outcome: StepOutcome::Failed {
                            error: error.message.clone(),
                            timed_out,
                            retry_in_ms: delay
                                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                            duration_ms,
                        },
                    })
                    .await;
                    let Some(delay) = delay else {
                        return Err(StepFailure::Failed(error));
                    };
                    tokio::time::sleep(delay).await;
                    if let Some(reason) = self.stop_reason() {
                        return Err(StepFailure::Interrupted(reason));
                    }
                    attempt += 1;
                }
            }
        }
    }
}

#[async_trait]
impl Reporter for Engine<'_> {
    fn progress(&self, stack: &str, step: &str, bytes: u64) {
        self.sink.progress(stack, step, bytes);
    }

    async fn emit(&self, kind: EventKind) {
        Engine::emit(self, kind).await;
    }
}
