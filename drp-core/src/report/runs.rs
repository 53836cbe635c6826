//! Every run of a plan's store (`drp runs list`): id, times, state, stack counts.

use drp_backup::BackupStore;
use serde::Serialize;

use super::{ReportError, RunState};
use crate::executor::journal::{JournalError, list_runs, read_journal};
use crate::executor::lock;
use crate::executor::{Event, EventKind, StackOutcome};

/// One run, as `drp runs list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunListing {
    /// The run's id.
    pub run: String,
    /// The plan's name, as the run recorded it.
    pub plan: String,
    /// When it first started.
    pub started: Option<jiff::Timestamp>,
    /// When it ended.
    pub ended: Option<jiff::Timestamp>,
    /// Where it is.
    pub state: RunState,
    /// How many times it was started (1 + resumes).
    pub attempts: usize,
    /// Stacks in the run.
    pub stacks: usize,
    /// Stacks recovered so far.
    pub recovered: usize,
    /// Stacks failed.
    pub failed: usize,
    /// Stacks skipped.
    pub skipped: usize,
    /// Stacks interrupted.
    pub interrupted: usize,
}

impl RunListing {
    /// Summarises one run's events.
    pub fn from_events(run: &str, events: &[Event], holds_lock: bool) -> RunListing {
        let mut listing = RunListing {
            run: run.to_string(),
            plan: String::new(),
            started: None,
            ended: None,
            state: RunState::of(events, holds_lock),
            attempts: 0,
            stacks: 0,
            recovered: 0,
            failed: 0,
            skipped: 0,
            interrupted: 0,
        };
        let mut outcomes: std::collections::BTreeMap<&str, &StackOutcome> = Default::default();
        for event in events {
            match &event.kind {
                EventKind::RunStarted { plan, stacks, .. } => {
                    listing.attempts += 1;
                    listing.started.get_or_insert(event.time);
                    listing.plan.clone_from(plan);
                    listing.stacks = listing.stacks.max(stacks.len());
                }
                EventKind::RunFinished { .. } => listing.ended = Some(event.time),
                // A resume may finish a stack that an earlier attempt interrupted: the last
                // outcome counts.
                EventKind::StackFinished { stack, outcome } => {
                    outcomes.insert(stack, outcome);
                }
                _ => {}
            }
        }
        if listing.state != RunState::Finished {
            listing.ended = None;
        }
        for outcome in outcomes.values() {
            match outcome {
                StackOutcome::Recovered => listing.recovered += 1,
                StackOutcome::Failed { .. } => listing.failed += 1,
                StackOutcome::Skipped { .. } => listing.skipped += 1,
                StackOutcome::Interrupted { .. } => listing.interrupted += 1,
            }
        }
        listing
    }
}

/// Every run in `store`, newest first.
pub async fn list(store: &dyn BackupStore) -> Result<Vec<RunListing>, ReportError> {
    let holder = lock::current(store).await?.map(|l| l.run_id);
    let mut listings = Vec::new();
    for run in list_runs(store).await?.into_iter().rev() {
        let events = match read_journal(store, &run).await {
            Ok(events) => events,
            // A run directory with no event (yet) is not a run to list.
            Err(JournalError::NoSuchRun(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        listings.push(RunListing::from_events(
            &run,
            &events,
            holder.as_deref() == Some(run.as_str()),
        ));
    }
    // Ids start with the start time, but sort by the recorded start to be sure.
    listings.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.run.cmp(&a.run)));
    Ok(listings)
}
