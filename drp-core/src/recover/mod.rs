//! `drp recover`: a plan's stacks brought back for real, journaled, measured.
//!
//! [`recover`] ties it together: it takes the plan's lock in the store, compiles the plan
//! into steps, runs them through the [`executor`](crate::executor) with a [`PlanRunner`]
//! (spare hosts leased in the store and reached over SSH, Ansible, restores from the
//! encrypted backups, commands, probes, notifiers), records every event in the journal
//! (store and local copy) and in the caller's progress sink — secrets redacted from both —
//! then journals the run's [`RunMeasurements`] and gives the lock back.
//!
//! Resuming (`RecoverOptions::resume`) reads the journal back from the store, checks the
//! plan did not change, takes over the lock if that same run holds it, and runs only the
//! steps that did not finish.
//!
//! A spare host is leased in the store (`.drp/leases/HOST.json`, created atomically) for the
//! run and stack that took it; the recovered stack runs on it afterwards, so recovery never
//! gives it back.

pub(crate) mod probe;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use drp_backup::BackupStore;

pub use runner::{
    ADDRESS_FACT, HOST_ADDRESS_FACT, HOST_FACT, HostLease, LEASES_PREFIX, PlanRunner, lease_key,
};

use crate::executor::journal::{self, Journal, JournalError, new_run_id, valid_run_id};
use crate::executor::lock::{self, LockError, LockRecord};
use crate::executor::measure::{Objectives, RunMeasurements, measure};
use crate::executor::{
    Event, EventKind, EventSink, ExecuteOptions, ExecutorError, Fanout, MemorySink, Redact,
    ResumeState, RunSummary, execute,
};
use crate::plan::{Plan, SecretRef, compile::compile};

/// Asks an operator to approve a step (`approve_before_start`).
#[async_trait]
pub trait Approver: Send + Sync {
    /// `Ok(())`: approved. `Err(why)`: refused, or nobody could be asked (the step fails
    /// with that message).
    async fn approve(&self, stack: &str, question: &str) -> Result<(), String>;
}

/// Approves everything (`--yes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproveAll;

#[async_trait]
impl Approver for ApproveAll {
    async fn approve(&self, _stack: &str, _question: &str) -> Result<(), String> {
        Ok(())
    }
}

/// How to recover.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Only these stacks (empty: every stack, or on resume the stacks of the run).
    pub stacks: Vec<String>,
    /// Continue this run instead of starting one.
    pub resume: Option<String>,
    /// Restore the newest snapshots at or before this time.
    pub at: Option<jiff::Timestamp>,
    /// When the outage began (default: the start of the run's first attempt).
    pub incident_start: Option<jiff::Timestamp>,
    /// The local journal copy (default: [`local_journal_path`]).
    pub local_journal: Option<PathBuf>,
    /// Called with the run id as soon as it is known (before anything runs).
    pub run_id: Option<String>,
}

/// Where the local copy of a run's journal goes by default:
/// `PLAN_DIR/.drp/runs/RUN_ID.jsonl`.
pub fn local_journal_path(plan: &Plan, run_id: &str) -> PathBuf {
    plan.dir
        .join(".drp")
        .join("runs")
        .join(format!("{run_id}.jsonl"))
}

/// How a recovery ended.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Every stack's outcome.
    pub summary: RunSummary,
    /// What it measured (also journaled, as the last event).
    pub measurements: RunMeasurements,
    /// The local journal copy.
    pub local_journal: PathBuf,
}

impl Recovery {
    /// Whether every stack recovered.
    pub fn all_recovered(&self) -> bool {
        self.summary.all_recovered()
    }
}

/// Why a recovery could not run (a stack that fails is an outcome, not this).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// A stack named is not in the plan.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] drp_backup::StoreError),
    /// The lock is held, or cannot be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The journal of the run to resume cannot be read.
    #[error("cannot resume: {0}")]
    Journal(#[from] JournalError),
    /// The journal is not resumable.
    #[error("cannot resume: {0}")]
    Resume(#[from] crate::executor::ResumeError),
    /// The plan changed since the run started.
    #[error(
        "cannot resume run {run}: the plan changed since it started (digest {then}, now {now}); \
         resume it with the plan it started with"
    )]
    PlanChanged {
        /// The run.
        run: String,
        /// The digest the run started with.
        then: String,
        /// The plan's digest now.
        now: String,
    },
    /// Not a run id.
    #[error("invalid run id {0:?}")]
    InvalidRunId(String),
    /// The trusted signers cannot be read.
    #[error(transparent)]
    Key(#[from] drp_backup::KeyError),
    /// The local journal copy cannot be created.
    #[error("local journal {}: {source}", path.display())]
    LocalJournal {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The executor stopped (a spec problem, or events could not be recorded).
    #[error(transparent)]
    Executor(#[from] ExecutorError),
}

/// Every secret value the plan references and that is readable now: they are redacted
/// from events (a command's error output may echo one).
pub fn plan_secrets(plan: &Plan) -> Vec<String> {
    let mut refs: Vec<&SecretRef> = Vec::new();
    refs.extend(plan.storage.signing_passphrase.iter());
    refs.extend(
        plan.customers
            .values()
            .filter_map(|c| c.passphrase.as_ref()),
    );
    refs.extend(plan.notifiers.values().filter_map(|n| n.secret.as_ref()));
    refs.extend(
        plan.hosts
            .iter()
            .filter_map(|h| h.ssh.key_passphrase.as_ref()),
    );
    refs.extend(
        plan.datacenters
            .values()
            .filter_map(|d| d.ssh.key_passphrase.as_ref()),
    );
    refs.into_iter()
        .filter_map(|r| r.read().ok())
        .filter_map(|bytes| String::from_utf8(bytes).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Breaks the plan's lock (an operator's decision that the run holding it is dead).
/// Returns who held it.
pub async fn break_lock(
    store: &dyn BackupStore,
    expected_run: Option<&str>,
) -> Result<Option<LockRecord>, LockError> {
    lock::break_lock(store, expected_run).await
}

/// Recovers `plan`'s stacks (see the module docs). `progress` sees every event as it is
/// journaled (secrets redacted) and live byte counts; `run_started` is told the run id
/// before anything runs.
pub async fn recover(
    plan: Arc<Plan>,
    store: Arc<dyn BackupStore>,
    options: RecoverOptions,
    approver: Arc<dyn Approver>,
    progress: Arc<dyn EventSink>,
) -> Result<Recovery, RecoverError> {
    let run_id = match &options.resume {
        Some(id) if !valid_run_id(id) => return Err(RecoverError::InvalidRunId(id.clone())),
        Some(id) => id.clone(),
        None => options.run_id.clone().unwrap_or_else(new_run_id),
    };

    let record = LockRecord::for_this_process(&run_id);
    let earlier: Vec<Event> = if options.resume.is_some() {
        // Read first: resuming a run that does not exist must not take the lock over.
        let events = journal::read_journal(store.as_ref(), &run_id).await?;
        lock::acquire_for_resume(store.as_ref(), &record).await?;
        events
    } else {
        lock::acquire(store.as_ref(), &record).await?;
        Vec::new()
    };
    let result = run_locked(
        &plan,
        store.clone(),
        &options,
        &run_id,
        earlier,
        approver,
        progress,
    )
    .await;
    // A run that could not finish recording keeps its lock, so that nobody else starts
    // while it is resumed.
    if !matches!(
        result,
        Err(RecoverError::Executor(ExecutorError::Sink { .. }))
    ) {
        lock::release(store.as_ref(), &run_id).await?;
    }
    result
}

async fn run_locked(
    plan: &Arc<Plan>,
    store: Arc<dyn BackupStore>,
    options: &RecoverOptions,
    run_id: &str,
    earlier: Vec<Event>,
    approver: Arc<dyn Approver>,
    progress: Arc<dyn EventSink>,
) -> Result<Recovery, RecoverError> {
    let resume = if earlier.is_empty() {
        None
    } else {
        let state = ResumeState::from_events(&earlier)?;
        if let Some(then) = state.plan_digest()
            && then != plan.digest
        {
            return Err(RecoverError::PlanChanged {
                run: run_id.to_string(),
                then: then.to_string(),
                now: plan.digest.clone(),
            });
        }
        Some(state)
    };

    // A resumed run recovers the stacks it started with, unless told otherwise.
    let mut stacks = options.stacks.clone();
    if stacks.is_empty()
        && let Some(EventKind::RunStarted { stacks: first, .. }) = earlier
            .iter()
            .find(|e| matches!(e.kind, EventKind::RunStarted { .. }))
            .map(|e| &e.kind)
    {
        stacks = first.clone();
    }
    let spec = compile(plan, &stacks)?;

    // The incident start: the operator's, else what an earlier attempt was given, else the
    // first attempt's start.
    let earlier_given = earlier.iter().rev().find_map(|e| match &e.kind {
        EventKind::RunMeasured { measurements } if measurements.incident_start_given => {
            Some(measurements.incident_start)
        }
        _ => None,
    });
    let first_start = earlier
        .iter()
        .find(|e| matches!(e.kind, EventKind::RunStarted { .. }))
        .map(|e| e.time);
    let incident_given = options.incident_start.or(earlier_given);
    let incident_start = incident_given
        .or(first_start)
        .unwrap_or_else(jiff::Timestamp::now);

    let local = options
        .local_journal
        .clone()
        .unwrap_or_else(|| local_journal_path(plan, run_id));
    let journal = Journal::new(store.clone())
        .with_local_copy(&local)
        .map_err(|source| RecoverError::LocalJournal {
            path: local.clone(),
            source,
        })?;
    let memory = Arc::new(MemorySink::new());
    let sink = Redact::new(
        Fanout::new()
            .with(Arc::new(journal))
            .with(memory.clone())
            .with(progress),
        plan_secrets(plan),
    );

    let runner = PlanRunner::new(plan.clone(), store, approver, options.at, incident_start)?;
    let execute_options = match resume {
        Some(state) => ExecuteOptions::resume(state),
        None => ExecuteOptions::new(run_id),
    };
    let summary = execute(&spec, &runner, &sink, execute_options).await?;

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
    let mut all = earlier;
    all.extend(memory.events());
    let mut measurements = measure(&all, incident_given, &objectives);
    // Only the stacks of this run.
    measurements
        .stacks
        .retain(|m| spec.stacks.iter().any(|s| s.name == m.stack));
    let next_seq = all.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
    sink.record(&Event {
        run: run_id.to_string(),
        seq: next_seq,
        time: jiff::Timestamp::now(),
        kind: EventKind::RunMeasured {
            measurements: measurements.clone(),
        },
    })
    .await
    .map_err(|error| ExecutorError::Sink {
        error,
        summary: Box::new(summary.clone()),
    })?;
    Ok(Recovery {
        summary,
        measurements,
        local_journal: local,
    })
}

/// Reads the local journal copy of a run (what the CLI's tests poll).
pub fn read_local_journal(path: &Path) -> Result<Vec<Event>, JournalError> {
    journal::read_local_journal(path)
}
