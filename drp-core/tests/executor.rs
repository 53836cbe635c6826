//! The executor against in-memory steps: ordering, the parallelism limit, retries,
//! timeouts, skipping dependants, fail-fast, resume from the journal, the lock, and secrets
//! kept out of the journal. Time is tokio's paused clock: timeouts and backoffs elapse
//! instantly and deterministically, and nothing asserts on wall-clock time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use drp_core::backup::{BackupStore, open_store};
use drp_core::executor::journal::{Journal, read_journal, read_local_journal};
use drp_core::executor::lock::{self, LockError, LockRecord};
use drp_core::executor::{
    Event, EventKind, EventSink, ExecuteOptions, ExecutorError, MemorySink, Redact, ResumeState,
    RetryPolicy, RunSpec, SinkError, StackOutcome, StackSpec, StepCall, StepError, StepKind,
    StepOutcome, StepOutput, StepRunner, StepSpec, execute,
};
use tokio::sync::Notify;

// --- Building specs ----------------------------------------------------------------------

fn step(name: &str) -> StepSpec {
    StepSpec::new(
        name,
        StepKind::Custom {
            label: name.into(),
            detail: String::new(),
        },
    )
}

fn stack(name: &str, depends_on: &[&str], steps: &[&str]) -> StackSpec {
    StackSpec {
        name: name.into(),
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        steps: steps.iter().map(|s| step(s)).collect(),
        on_failure: Vec::new(),
    }
}

fn spec(stacks: Vec<StackSpec>, parallelism: usize, fail_fast: bool) -> RunSpec {
    RunSpec {
        plan: "test".into(),
        plan_digest: "digest".into(),
        parallelism,
        fail_fast,
        stacks,
    }
}

// --- An in-memory runner -----------------------------------------------------------------

/// What a step does when run.
#[derive(Clone)]
enum Behaviour {
    /// Succeeds at once, with these facts.
    Succeed(Vec<(&'static str, &'static str)>),
    /// Sleeps (paused time) then succeeds.
    Sleep(Duration),
    /// Fails (retryably) this many attempts, then succeeds.
    FailFirst(u32),
    /// Fails every attempt, retryably, with this message.
    AlwaysFail(&'static str),
    /// Fails without retry.
    Permanent(&'static str),
    /// Never finishes (only a timeout or a dropped run ends it).
    Hang,
    /// Signals, then never finishes: the test drops the run (a crash).
    Crash(Arc<Notify>),
    /// Signals the first, waits for the second, then succeeds.
    SignalThenWait(Arc<Notify>, Arc<Notify>),
    /// Waits for the first, signals the second, then fails (permanently).
    WaitThenFail(Arc<Notify>, Arc<Notify>),
}

/// What an attempt saw: its stack's facts, and the stacks it got facts of.
type Seen = (BTreeMap<String, String>, Vec<String>);

#[derive(Default)]
struct Memory {
    behaviours: Mutex<HashMap<(String, String), Behaviour>>,
    /// Every attempt: "stack/step#attempt".
    attempts: Mutex<Vec<String>>,
    /// Order of starts and ends: ("start"|"end", stack, step).
    order: Mutex<Vec<(&'static str, String, String)>>,
    /// Successful completions per (stack, step).
    completed: Mutex<BTreeMap<(String, String), u32>>,
    /// What each attempt saw as its stack's facts and dependencies' facts.
    seen_facts: Mutex<HashMap<(String, String), Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Memory {
    fn with(self, stack: &str, step: &str, behaviour: Behaviour) -> Self {
        self.behaviours
            .lock()
            .unwrap()
            .insert((stack.into(), step.into()), behaviour);
        self
    }

    fn attempts(&self) -> Vec<String> {
        self.attempts.lock().unwrap().clone()
    }

    fn completions(&self, stack: &str, step: &str) -> u32 {
        self.completed
            .lock()
            .unwrap()
            .get(&(stack.to_string(), step.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Index in `order` of the first start of `stack` and the last end of `stack`.
    fn span_of(&self, stack: &str) -> (usize, usize) {
        let order = self.order.lock().unwrap();
        let first = order
            .iter()
            .position(|(what, s, _)| *what == "start" && s == stack)
            .unwrap();
        let last = order
            .iter()
            .rposition(|(what, s, _)| *what == "end" && s == stack)
            .unwrap();
        (first, last)
    }
}

/// Decrements the in-flight count even when the attempt is cut off (timeout, crash).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl StepRunner for Memory {
    async fn run(&self, call: StepCall<'_>) -> Result<StepOutput, StepError> {
        let key = (call.stack.name.clone(), call.step.name.clone());
        self.attempts.lock().unwrap().push(format!(
            "{}/{}#{}",
            call.stack.name, call.step.name, call.attempt
        ));
        self.seen_facts.lock().unwrap().insert(
            key.clone(),
            (
                call.facts.clone(),
                call.dependencies.keys().cloned().collect(),
            ),
        );
        self.order
            .lock()
            .unwrap()
            .push(("start", key.0.clone(), key.1.clone()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);

        let behaviour = self
            .behaviours
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .unwrap_or(Behaviour::Succeed(Vec::new()));
        let mut output = StepOutput::done();
        match behaviour {
            Behaviour::Succeed(facts) => {
                for (k, v) in facts {
                    output = output.with_fact(k, v);
                }
            }
            Behaviour::Sleep(d) => tokio::time::sleep(d).await,
            Behaviour::FailFirst(n) if call.attempt <= n => {
                return Err(StepError::retryable(format!(
                    "attempt {} failed",
                    call.attempt
                )));
            }
            Behaviour::FailFirst(_) => {}
            Behaviour::AlwaysFail(message) => return Err(StepError::retryable(message)),
            Behaviour::Permanent(message) => return Err(StepError::permanent(message)),
            Behaviour::Hang => std::future::pending::<()>().await,
            Behaviour::Crash(signal) => {
                signal.notify_one();
                std::future::pending::<()>().await;
            }
            Behaviour::SignalThenWait(signal, wait) => {
                signal.notify_one();
                wait.notified().await;
            }
            Behaviour::WaitThenFail(wait, signal) => {
                wait.notified().await;
                signal.notify_one();
                return Err(StepError::permanent("failed on purpose"));
            }
        }
        self.order
            .lock()
            .unwrap()
            .push(("end", key.0.clone(), key.1.clone()));
        *self.completed.lock().unwrap().entry(key).or_default() += 1;
        Ok(output)
    }
}

fn events_of(sink: &MemorySink) -> Vec<EventKind> {
    sink.events().into_iter().map(|e| e.kind).collect()
}

fn stack_outcome(summary_stacks: &BTreeMap<String, StackOutcome>, name: &str) -> StackOutcome {
    summary_stacks[name].clone()
}

// --- Ordering and parallelism ------------------------------------------------------------

#[tokio::test]
async fn stacks_start_only_after_their_dependencies_recovered() {
    let run = spec(
        vec![
            stack("web", &["db", "cache"], &["restore", "start"]),
            stack("report", &["web"], &["start"]),
            stack("db", &[], &["restore", "start"]),
            stack("cache", &["db"], &["start"]),
            stack("other", &[], &["start"]),
        ],
        4,
        false,
    );
    let runner =
        Memory::default().with("db", "start", Behaviour::Succeed(vec![("host", "spare-1")]));
    let sink = MemorySink::new();
    let summary = execute(&run, &runner, &sink, ExecuteOptions::new("r1"))
        .await
        .unwrap();
    assert!(summary.all_recovered(), "{summary:?}");
    for (dependant, dependency) in [
        ("web", "db"),
        ("web", "cache"),
        ("cache", "db"),
        ("report", "web"),
    ] {
        let (dependant_start, _) = runner.span_of(dependant);
        let (_, dependency_end) = runner.span_of(dependency);
        assert!(
            dependency_end < dependant_start,
            "{dependant} started before {dependency} ended: {:?}",
            runner.order.lock().unwrap()
        );
    }
    // Steps of a stack run in order; facts flow to later steps and to dependants.
    let attempts = runner.attempts();
    let pos = |s: &str| attempts.iter().position(|a| a == s).unwrap();
    assert!(pos("db/restore#1") < pos("db/start#1"));
    let seen = runner.seen_facts.lock().unwrap();
    let (cache_facts, cache_deps) = &seen[&("cache".to_string(), "start".to_string())];
    assert!(cache_facts.is_empty());
    assert_eq!(cache_deps, &vec!["db".to_string()]);
    assert_eq!(summary.facts["db"]["host"], "spare-1");
}

#[tokio::test(start_paused = true)]
async fn no_more_stacks_run_at_once_than_the_limit_allows() {
    for limit in [1, 3, 10] {
        // Ten independent stacks whose one step takes a (virtual) second: with the limit
        // respected, exactly `limit` are ever in flight together.
        let stacks = (0..10)
            .map(|i| stack(&format!("s{i}"), &[], &["work"]))
            .collect();
        let run = spec(stacks, limit, false);
        let mut runner = Memory::default();
        for i in 0..10 {
            runner = runner.with(
                &format!("s{i}"),
                "work",
                Behaviour::Sleep(Duration::from_secs(1)),
            );
        }
        let summary = execute(&run, &runner, &MemorySink::new(), ExecuteOptions::new("r"))
            .await
            .unwrap();
        assert!(summary.all_recovered());
        assert_eq!(
            runner.max_in_flight.load(Ordering::SeqCst),
            limit.min(10),
            "limit {limit}"
        );
    }
}

// --- Retries and timeouts ----------------------------------------------------------------

fn retrying(mut s: StackSpec, retries: u32) -> StackSpec {
    for step in &mut s.steps {
        step.retry =
            RetryPolicy::exponential(retries, Duration::from_secs(10), Duration::from_secs(15));
    }
    s
}

fn retry_delays(sink: &MemorySink, stack: &str, step: &str) -> Vec<Option<u64>> {
    events_of(sink)
        .into_iter()
        .filter_map(|e| match e {
            EventKind::StepFinished {
                stack: s,
                step: t,
                outcome: StepOutcome::Failed { retry_in_ms, .. },
                ..
            } if s == stack && t == step => Some(retry_in_ms),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_are_retried_with_growing_backoff() {
    let run = spec(vec![retrying(stack("a", &[], &["flaky"]), 3)], 1, false);
    let runner = Memory::default().with("a", "flaky", Behaviour::FailFirst(2));
    let sink = MemorySink::new();
    let summary = execute(&run, &runner, &sink, ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert!(summary.all_recovered());
    assert_eq!(
        runner.attempts(),
        vec!["a/flaky#1", "a/flaky#2", "a/flaky#3"]
    );
    // 10 s, then doubled but capped at 15 s.
    assert_eq!(
        retry_delays(&sink, "a", "flaky"),
        vec![Some(10_000), Some(15_000)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_that_keeps_failing_fails_its_stack_after_its_retries() {
    let run = spec(
        vec![retrying(stack("a", &[], &["bad", "never"]), 2)],
        1,
        false,
    );
    let runner = Memory::default().with("a", "bad", Behaviour::AlwaysFail("disk full"));
    let sink = MemorySink::new();
    let summary = execute(&run, &runner, &sink, ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert_eq!(
        stack_outcome(&summary.stacks, "a"),
        StackOutcome::Failed {
            step: "bad".into(),
            error: "disk full".into()
        }
    );
    assert_eq!(runner.attempts(), vec!["a/bad#1", "a/bad#2", "a/bad#3"]);
    assert_eq!(
        retry_delays(&sink, "a", "bad"),
        vec![Some(10_000), Some(15_000), None]
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let run = spec(vec![retrying(stack("a", &[], &["decrypt"]), 5)], 1, false);
    let runner = Memory::default().with("a", "decrypt", Behaviour::Permanent("wrong key"));
    let summary = execute(&run, &runner, &MemorySink::new(), ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert_eq!(runner.attempts(), vec!["a/decrypt#1"]);
    assert!(
        matches!(&summary.stacks["a"], StackOutcome::Failed { error, .. } if error == "wrong key")
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_exceeds_its_timeout_is_cut_off_and_retried() {
    let mut a = stack("a", &[], &["hangs"]);
    a.steps[0] = a.steps[0]
        .clone()
        .with_timeout(Duration::from_secs(300))
        .with_retry(RetryPolicy::exponential(
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
        ));
    let run = spec(vec![a], 1, false);
    let runner = Memory::default().with("a", "hangs", Behaviour::Hang);
    let sink = MemorySink::new();
    let started = tokio::time::Instant::now();
    let summary = execute(&run, &runner, &sink, ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert_eq!(runner.attempts(), vec!["a/hangs#1", "a/hangs#2"]);
    assert_eq!(
        runner.in_flight.load(Ordering::SeqCst),
        0,
        "attempts were dropped"
    );
    assert_eq!(
        summary.stacks["a"],
        StackOutcome::Failed {
            step: "hangs".into(),
            error: "timed out after 5m".into()
        }
    );
    let timed_out: Vec<bool> = events_of(&sink)
        .into_iter()
        .filter_map(|e| match e {
            EventKind::StepFinished {
                outcome: StepOutcome::Failed { timed_out, .. },
                ..
            } => Some(timed_out),
            _ => None,
        })
        .collect();
    assert_eq!(timed_out, vec![true, true]);
    // On the paused clock, exactly two timeouts and one backoff elapsed.
    assert_eq!(started.elapsed(), Duration::from_secs(601));
}

// --- Failures: dependants, fail-fast, on_failure -----------------------------------------

#[tokio::test]
async fn dependants_of_a_failed_stack_are_skipped_and_say_why() {
    let mut db = stack("db", &[], &["restore"]);
    db.on_failure = vec![step("notify-failed")];
    let run = spec(
        vec![
            db,
            stack("web", &["db"], &["start"]),
            stack("report", &["web"], &["start"]),
            stack("other", &[], &["start"]),
        ],
        2,
        false,
    );
    let runner = Memory::default().with("db", "restore", Behaviour::Permanent("no snapshot"));
    let summary = execute(&run, &runner, &MemorySink::new(), ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert_eq!(summary.stacks["other"], StackOutcome::Recovered);
    assert_eq!(
        summary.stacks["web"],
        StackOutcome::Skipped {
            reason: "depends on db, which failed".into()
        }
    );
    assert_eq!(
        summary.stacks["report"],
        StackOutcome::Skipped {
            reason: "depends on web, which was skipped".into()
        }
    );
    let attempts = runner.attempts();
    assert!(
        attempts.contains(&"db/notify-failed#1".to_string()),
        "{attempts:?}"
    );
    assert!(
        !attempts
            .iter()
            .any(|a| a.starts_with("web/") || a.starts_with("report/"))
    );
    assert!(!summary.all_recovered());
}

#[tokio::test]
async fn fail_fast_starts_nothing_more_and_stops_running_stacks_between_steps() {
    let (b_started, a_failed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let run = spec(
        vec![
            stack("a", &[], &["boom"]),
            stack("b", &[], &["first", "second"]),
            stack("c", &[], &["start"]),
            stack("d", &["c"], &["start"]),
        ],
        2,
        true,
    );
    // a and b start together; a fails while b's first step runs, which ends afterwards.
    let runner = Memory::default()
        .with(
            "a",
            "boom",
            Behaviour::WaitThenFail(b_started.clone(), a_failed.clone()),
        )
        .with("b", "first", Behaviour::SignalThenWait(b_started, a_failed));
    let summary = execute(&run, &runner, &MemorySink::new(), ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert!(matches!(summary.stacks["a"], StackOutcome::Failed { .. }));
    assert_eq!(
        summary.stacks["b"],
        StackOutcome::Interrupted {
            reason: "fail-fast after stack a failed".into()
        }
    );
    assert_eq!(
        summary.stacks["c"],
        StackOutcome::Skipped {
            reason: "not started: fail-fast after stack a failed".into()
        }
    );
    assert_eq!(
        summary.stacks["d"],
        StackOutcome::Skipped {
            reason: "depends on c, which was skipped".into()
        }
    );
    assert_eq!(runner.completions("b", "first"), 1);
    assert_eq!(runner.completions("b", "second"), 0);
}

#[tokio::test]
async fn without_fail_fast_independent_stacks_go_on() {
    let run = spec(
        vec![stack("a", &[], &["boom"]), stack("b", &[], &["one", "two"])],
        1,
        false,
    );
    let runner = Memory::default().with("a", "boom", Behaviour::Permanent("x"));
    let summary = execute(&run, &runner, &MemorySink::new(), ExecuteOptions::new("r"))
        .await
        .unwrap();
    assert_eq!(summary.stacks["b"], StackOutcome::Recovered);
    assert_eq!(summary.count("failed"), 1);
}

#[tokio::test]
async fn specs_that_cannot_run_are_refused_with_every_reason() {
    let mut dup = stack("a", &["b"], &["x", "x"]);
    dup.on_failure = vec![];
    let run = spec(
        vec![
            dup,
            stack("b", &["a"], &["y"]),
            stack("c", &["nope"], &["z"]),
        ],
        0,
        false,
    );
    let error = execute(
        &run,
        &Memory::default(),
        &MemorySink::new(),
        ExecuteOptions::new("r"),
    )
    .await
    .unwrap_err()
    .to_string();
    for expected in [
        "parallelism must be at least 1",
        "stack `a` has two steps named `x`",
        "dependency cycle: a -> b -> a",
        "stack `c` depends on unknown stack `nope`",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
}

// --- Journal and resume ------------------------------------------------------------------

/// A runner that checks, at each step start, that the journal in the store already holds
/// the success of the stack's previous step (events are recorded before the next step).
struct JournalChecking<'a> {
    inner: &'a Memory,
    store: Arc<dyn BackupStore>,
}

#[async_trait]
impl StepRunner for JournalChecking<'_> {
    async fn run(&self, call: StepCall<'_>) -> Result<StepOutput, StepError> {
        let index = call
            .stack
            .steps
            .iter()
            .position(|s| s.name == call.step.name)
            .unwrap();
        if index > 0 && call.attempt == 1 {
            let previous = &call.stack.steps[index - 1].name;
            let events = read_journal(self.store.as_ref(), call.run_id)
                .await
                .unwrap();
            let journaled = events.iter().any(|e| {
                matches!(&e.kind, EventKind::StepFinished { stack, step, outcome: StepOutcome::Succeeded { .. }, .. }
                    if *stack == call.stack.name && step == previous)
                    || matches!(&e.kind, EventKind::StepReused { stack, step } if *stack == call.stack.name && step == previous)
            });
            assert!(
                journaled,
                "{}/{} started before {previous} was journaled",
                call.stack.name, call.step.name
            );
        }
        self.inner.run(call).await
    }
}

fn three_stacks() -> RunSpec {
    spec(
        vec![
            stack("db", &[], &["acquire", "restore", "start", "probe"]),
            stack("web", &["db"], &["acquire", "restore", "start", "probe"]),
            stack("mail", &[], &["acquire", "restore", "start", "probe"]),
        ],
        2,
        false,
    )
}

#[tokio::test]
async fn a_run_killed_mid_step_resumes_from_its_journal_without_redoing_finished_steps() {
    let run = three_stacks();
    let all_steps: Vec<(String, String)> = run
        .stacks
        .iter()
        .flat_map(|s| s.steps.iter().map(|t| (s.name.clone(), t.name.clone())))
        .collect();
    // Kill the run at every step boundary in turn: the step where the "process dies" never
    // completes in the first attempt.
    for crash_at in &all_steps {
        let store = open_store("memory://").unwrap();
        let local = tempfile::tempdir().unwrap();
        let local_copy = local.path().join("run.jsonl");
        let run_id = "20261129T101500Z-00000001";
        let crashed = Arc::new(Notify::new());
        let memory = Memory::default()
            .with(
                "db",
                "acquire",
                Behaviour::Succeed(vec![("host", "spare-1")]),
            )
            .with(&crash_at.0, &crash_at.1, Behaviour::Crash(crashed.clone()));
        {
            let journal = Journal::new(store.clone())
                .with_local_copy(&local_copy)
                .unwrap();
            let runner = JournalChecking {
                inner: &memory,
                store: store.clone(),
            };
            let first = execute(&run, &runner, &journal, ExecuteOptions::new(run_id));
            tokio::select! {
                _ = first => panic!("the run ended although a step hung"),
                _ = crashed.notified() => {} // the run future is dropped here: a crash
            }
        }
        assert_eq!(memory.completions(&crash_at.0, &crash_at.1), 0);

        // Resume, as another machine would: from the store's journal only.
        let events = read_journal(store.as_ref(), run_id).await.unwrap();
        let state = ResumeState::from_events(&events).unwrap();
        assert_eq!(state.plan_digest(), Some("digest"));
        let healthy = Memory::default().with(
            "db",
            "acquire",
            Behaviour::Succeed(vec![("host", "spare-1")]),
        );
        *healthy.completed.lock().unwrap() = memory.completed.lock().unwrap().clone();
        let journal = Journal::new(store.clone())
            .with_local_copy(&local_copy)
            .unwrap();
        let runner = JournalChecking {
            inner: &healthy,
            store: store.clone(),
        };
        let summary = execute(&run, &runner, &journal, ExecuteOptions::resume(state))
            .await
            .unwrap();
        assert!(
            summary.all_recovered(),
            "crash at {crash_at:?}: {summary:?}"
        );
        for (stack, step) in &all_steps {
            assert_eq!(
                healthy.completions(stack, step),
                1,
                "crash at {crash_at:?}: {stack}/{step} did not run exactly once"
            );
        }
        // Facts of steps done before the crash reach the steps after it.
        assert_eq!(summary.facts["db"]["host"], "spare-1");
        if *crash_at != ("db".to_string(), "acquire".to_string()) && crash_at.0 == "db" {
            let seen = healthy.seen_facts.lock().unwrap();
            let (facts, _) = &seen[&crash_at.clone()];
            assert_eq!(facts.get("host").map(String::as_str), Some("spare-1"));
        }
        // The journal (store and local copy) tells the whole story, in order, once resumed.
        let events = read_journal(store.as_ref(), run_id).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let mut sorted = seqs.clone();
        sorted.dedup();
        assert_eq!(seqs, sorted, "sequence numbers are never reused");
        assert!(matches!(
            events.last().unwrap().kind,
            EventKind::RunFinished { recovered: 3, .. }
        ));
        let local_events = read_local_journal(&local_copy).unwrap();
        assert_eq!(local_events, events);
    }
}

#[tokio::test]
async fn resuming_with_a_journal_of_another_run_is_refused() {
    let sink = MemorySink::new();
    execute(
        &three_stacks(),
        &Memory::default(),
        &sink,
        ExecuteOptions::new("run-a"),
    )
    .await
    .unwrap();
    let state = ResumeState::from_events(&sink.events()).unwrap();
    let mut options = ExecuteOptions::resume(state);
    options.run_id = "run-b".into();
    let error = execute(
        &three_stacks(),
        &Memory::default(),
        &MemorySink::new(),
        options,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ExecutorError::WrongRun { .. }), "{error}");
}

/// A sink that fails from the `n`th event on (a store that stopped answering).
struct FailingAfter {
    n: usize,
    seen: AtomicUsize,
    inner: MemorySink,
}

#[async_trait]
impl EventSink for FailingAfter {
    async fn record(&self, event: &Event) -> Result<(), SinkError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) >= self.n {
            return Err(SinkError("store unreachable".into()));
        }
        self.inner.record(event).await
    }
}

#[tokio::test]
async fn when_events_cannot_be_recorded_the_run_stops_starting_steps() {
    let run = spec(vec![stack("a", &[], &["one", "two", "three"])], 1, false);
    // RunStarted, StackStarted, StepStarted(one), StepFinished(one) are recorded; then the
    // sink breaks.
    let sink = FailingAfter {
        n: 4,
        seen: AtomicUsize::new(0),
        inner: MemorySink::new(),
    };
    let runner = Memory::default();
    let error = execute(&run, &runner, &sink, ExecuteOptions::new("r"))
        .await
        .unwrap_err();
    let ExecutorError::Sink { error, summary } = error else {
        panic!("expected a sink error");
    };
    assert_eq!(error.0, "store unreachable");
    assert!(matches!(
        summary.stacks["a"],
        StackOutcome::Interrupted { .. }
    ));
    assert_eq!(runner.attempts(), vec!["a/one#1"]);
}

#[tokio::test]
async fn known_secrets_never_reach_the_journal() {
    let store = open_store("memory://").unwrap();
    let local = tempfile::tempdir().unwrap();
    let local_copy = local.path().join("run.jsonl");
    let secret = "hunter2-correct-horse";
    let journal = Journal::new(store.clone())
        .with_local_copy(&local_copy)
        .unwrap();
    let sink = Redact::new(journal, [secret.to_string()]);
    let run = spec(vec![stack("a", &[], &["login"])], 1, false);
    let runner = Memory::default().with(
        "a",
        "login",
        Behaviour::Permanent("psql: password hunter2-correct-horse rejected"),
    );
    execute(&run, &runner, &sink, ExecuteOptions::new("r1"))
        .await
        .unwrap();
    let stored = read_journal(store.as_ref(), "r1").await.unwrap();
    let text =
        serde_json::to_string(&stored).unwrap() + &std::fs::read_to_string(&local_copy).unwrap();
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("psql: password *** rejected"), "{text}");
}

// --- The lock ----------------------------------------------------------------------------

#[tokio::test]
async fn only_one_of_many_concurrent_runs_gets_the_lock() {
    let store = open_store("memory://").unwrap();
    let attempts = (0..8).map(|i| {
        let record = LockRecord::for_this_process(format!("run-{i}"));
        let store = store.clone();
        async move { lock::acquire(store.as_ref(), &record).await.map(|()| i) }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<usize> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = format!("run-{}", winners[0]);
    for result in &results {
        if let Err(LockError::Held(holder)) = result {
            assert_eq!(holder.run_id, winner);
        } else {
            assert!(result.is_ok(), "{result:?}");
        }
    }
    let message = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .unwrap()
        .to_string();
    assert!(
        message.contains(&winner) && message.contains("break the lock"),
        "{message}"
    );

    // Only the holder releases it; then anyone can take it.
    assert!(matches!(
        lock::release(store.as_ref(), "run-x").await,
        Err(LockError::NotHolder { .. })
    ));
    lock::release(store.as_ref(), &winner).await.unwrap();
    assert_eq!(lock::current(store.as_ref()).await.unwrap(), None);
    lock::acquire(store.as_ref(), &LockRecord::for_this_process("run-y"))
        .await
        .unwrap();

    // A resume takes over the lock of its own run only.
    assert!(matches!(
        lock::acquire_for_resume(store.as_ref(), &LockRecord::for_this_process("run-q")).await,
        Err(LockError::Held(_))
    ));
    let taken = lock::acquire_for_resume(store.as_ref(), &LockRecord::for_this_process("run-y"))
        .await
        .unwrap();
    assert_eq!(taken.unwrap().run_id, "run-y");

    // A stale lock is broken explicitly, naming the run it belonged to.
    assert!(matches!(
        lock::break_lock(store.as_ref(), Some("run-z")).await,
        Err(LockError::NotHolder { .. })
    ));
    let broken = lock::break_lock(store.as_ref(), Some("run-y"))
        .await
        .unwrap();
    assert_eq!(broken.unwrap().run_id, "run-y");
    assert_eq!(lock::current(store.as_ref()).await.unwrap(), None);
}

// --- Scale -------------------------------------------------------------------------------

struct NoOp;

#[async_trait]
impl StepRunner for NoOp {
    async fn run(&self, _call: StepCall<'_>) -> Result<StepOutput, StepError> {
        Ok(StepOutput::done())
    }
}

/// Counts events without keeping them.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl EventSink for Counting {
    async fn record(&self, _event: &Event) -> Result<(), SinkError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::test]
async fn a_thousand_stacks_of_five_steps_all_run() {
    // Chains of ten stacks (each depends on the previous one), a hundred chains.
    let stacks: Vec<StackSpec> = (0..1000)
        .map(|i| {
            let name = format!("s{i:04}");
            let deps: Vec<String> = if i % 10 == 0 {
                Vec::new()
            } else {
                vec![format!("s{:04}", i - 1)]
            };
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            stack(
                &name,
                &deps,
                &["acquire", "restore", "start", "probe", "notify"],
            )
        })
        .collect();
    let run = spec(stacks, 16, false);
    let sink = Counting::default();
    let started = std::time::Instant::now();
    let summary = execute(&run, &NoOp, &sink, ExecuteOptions::new("big"))
        .await
        .unwrap();
    eprintln!(
        "1000 stacks x 5 steps: {:?} of executor overhead",
        started.elapsed()
    );
    assert_eq!(summary.count("recovered"), 1000);
    // RunStarted + RunFinished + per stack (start, finish) + per step (start, finish).
    assert_eq!(sink.0.load(Ordering::Relaxed), 2 + 1000 * 2 + 5000 * 2);
}
