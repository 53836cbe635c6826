//! `drp recover --dry-run`: exactly what a recovery would run, on which hosts, from which
//! snapshots — read from the store, changing nothing anywhere.
//!
//! A snapshot is chosen as a recovery would: the newest (at or before `--at`) whose manifest
//! is accepted — signed by a trusted signer when the plan names some, and holding every
//! source the plan restores. Newer snapshots passed over are listed with the reason. The
//! data itself is verified only by the recovery (that means reading all of it).

use std::sync::Arc;
use std::time::Duration;

use drp_backup::{BackupStore, Repository, TrustedSigners};
use serde::Serialize;

use super::compile::compile;
use super::doc::{describe, waves};
use super::{Plan, Stack, format_duration};
use crate::executor::StepSpec;

/// What a recovery of the plan would do.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// The plan's name.
    pub plan: String,
    /// The store read.
    pub store: String,
    /// Where stacks would be recovered.
    pub target_datacenter: String,
    /// Stacks at once.
    pub parallelism: usize,
    /// Snapshots are taken at or before this time (`None`: the newest).
    pub at: Option<jiff::Timestamp>,
    /// The stacks, wave by wave (a wave's stacks run in parallel).
    pub waves: Vec<Vec<StackPreview>>,
}

impl DryRun {
    /// Whether every stack has a snapshot to restore.
    pub fn ready(&self) -> bool {
        self.waves.iter().flatten().all(|s| s.snapshot.is_some())
    }
}

/// One stack of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct StackPreview {
    /// The stack.
    pub name: String,
    /// Its customer.
    pub customer: String,
    /// Spares it would take, the first free one (`NAME (ADDRESS)`, in order).
    pub hosts: Vec<String>,
    /// The provisioner asked when none is free.
    pub provisioner: Option<String>,
    /// The snapshot it would be restored from.
    pub snapshot: Option<ChosenSnapshot>,
    /// Why there is none, when there is none.
    pub no_snapshot: Option<String>,
    /// Newer snapshots passed over, with the reason.
    pub passed_over: Vec<PassedOver>,
    /// The steps, in order.
    pub steps: Vec<StepPreview>,
}

/// A snapshot a stack would be restored from.
#[derive(Debug, Clone, Serialize)]
pub struct ChosenSnapshot {
    /// Its id.
    pub id: String,
    /// When the backup started.
    pub time: jiff::Timestamp,
    /// Its age at `at` (or now): the data a recovery would lose.
    pub age_ms: u64,
    /// Whether that age exceeds the stack's RPO.
    pub exceeds_rpo: bool,
    /// Its sources: name and size before compression.
    pub sources: Vec<(String, u64)>,
    /// Whether its manifest is signed.
    pub signed: bool,
}

/// A snapshot not chosen.
#[derive(Debug, Clone, Serialize)]
pub struct PassedOver {
    /// Its id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// One step of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct StepPreview {
    /// The step's name (as in the journal).
    pub name: String,
    /// What it runs.
    pub runs: String,
    /// Its time limit.
    pub timeout: Option<String>,
    /// Its retries.
    pub retries: u32,
}

/// Errors of a dry run: the plan names unknown stacks, the store or the trusted signers
/// cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DryRunError {
    /// The selection names a stack the plan lacks.
    #[error(transparent)]
    Plan(#[from] super::PlanError),
    /// The store or a key failed.
    #[error(transparent)]
    Backup(#[from] drp_backup::Error),
}

/// Previews a recovery of `only` those stacks (empty: all) from `store`, snapshots at or
/// before `at`.
pub async fn dry_run(
    plan: &Plan,
    store: Arc<dyn BackupStore>,
    only: &[String],
    at: Option<jiff::Timestamp>,
) -> Result<DryRun, DryRunError> {
    let run = compile(plan, only)?;
    let trust = if plan.storage.trust.is_empty() {
        None
    } else {
        let paths: Vec<_> = plan.storage.trust.iter().map(|c| c.path.clone()).collect();
        Some(TrustedSigners::from_files(&paths).map_err(drp_backup::Error::from)?)
    };
    let now = at.unwrap_or_else(jiff::Timestamp::now);
    let mut out = Vec::new();
    for wave in waves(plan) {
        let mut previews = Vec::new();
        for stack in wave {
            let Some(spec) = run.stacks.iter().find(|s| s.name == stack.name) else {
                continue;
            };
            let mut preview =
                preview_snapshot(plan, stack, store.clone(), trust.as_ref(), at, now).await?;
            preview.steps = spec.steps.iter().map(|s| step(plan, stack, s)).collect();
            previews.push(preview);
        }
        if !previews.is_empty() {
            out.push(previews);
        }
    }
    Ok(DryRun {
        plan: plan.name.clone(),
        store: plan.storage.url.clone(),
        target_datacenter: plan.recovery.target_datacenter.clone(),
        parallelism: plan.recovery.parallelism,
        at,
        waves: out,
    })
}

fn step(plan: &Plan, stack: &Stack, step: &StepSpec) -> StepPreview {
    StepPreview {
        name: step.name.clone(),
        runs: describe(plan, stack, step),
        timeout: step.timeout.map(format_duration),
        retries: step.retry.retries,
    }
}

async fn preview_snapshot(
    plan: &Plan,
    stack: &Stack,
    store: Arc<dyn BackupStore>,
    trust: Option<&TrustedSigners>,
    at: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<StackPreview, DryRunError> {
    let target = &plan.recovery.target_datacenter;
    let mut preview = StackPreview {
        name: stack.name.clone(),
        customer: stack.customer.clone(),
        hosts: plan
            .spares_for(target, &stack.role)
            .map(|h| format!("{} ({})", h.name, h.address))
            .collect(),
        provisioner: plan
            .datacenters
            .get(target)
            .and_then(|d| d.provisioner.clone()),
        snapshot: None,
        no_snapshot: None,
        passed_over: Vec::new(),
        steps: Vec::new(),
    };
    let choice = choose_snapshot(stack, store, trust, at, now).await?;
    preview.snapshot = choice.snapshot;
    preview.passed_over = choice.passed_over;
    preview.no_snapshot = choice.no_snapshot;
    Ok(preview)
}

/// Which snapshot a recovery of a stack restores, and why newer ones are not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotChoice {
    /// The one restored.
    pub snapshot: Option<ChosenSnapshot>,
    /// Why there is none, when there is none.
    pub no_snapshot: Option<String>,
    /// Newer snapshots passed over, with the reason.
    pub passed_over: Vec<PassedOver>,
}

/// Chooses the snapshot `stack` is recovered from — the one rule the dry run and the
/// recovery share: the newest (at or before `at`) whose manifest is accepted (signed by one
/// of `trust` when given) and that holds every source the plan restores. `now` is when its
/// age (the RPO) is measured.
pub async fn choose_snapshot(
    stack: &Stack,
    store: Arc<dyn BackupStore>,
    trust: Option<&TrustedSigners>,
    at: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<SnapshotChoice, drp_backup::Error> {
    let mut choice = SnapshotChoice::default();
    let repo = Repository::new(store, &stack.name)?;
    let snapshots = repo.snapshots().await?;
    for entry in snapshots {
        let manifest = &entry.manifest;
        if at.is_some_and(|at| manifest.time > at) {
            continue;
        }
        if let Some(trust) = trust
            && let Err(e) = repo.load_manifest(&manifest.snapshot, Some(trust)).await
        {
            choice.passed_over.push(PassedOver {
                id: manifest.snapshot.clone(),
                reason: e.to_string(),
            });
            continue;
        }
        let missing: Vec<&str> = stack
            .sources
            .iter()
            .map(|s| s.name())
            .filter(|name| !manifest.sources.iter().any(|r| r.name == *name))
            .collect();
        if !missing.is_empty() {
            choice.passed_over.push(PassedOver {
                id: manifest.snapshot.clone(),
                reason: format!("it lacks source(s) {}", missing.join(", ")),
            });
            continue;
        }
        let age = Duration::try_from(now.duration_since(manifest.time)).unwrap_or_default();
        choice.snapshot = Some(ChosenSnapshot {
            id: manifest.snapshot.clone(),
            time: manifest.time,
            age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            exceeds_rpo: stack.rpo.is_some_and(|rpo| age > rpo),
            sources: manifest
                .sources
                .iter()
                .filter(|r| stack.sources.iter().any(|s| s.name() == r.name))
                .map(|r| (r.name.clone(), r.plain_bytes))
                .collect(),
            signed: entry.signed,
        });
        return Ok(choice);
    }
    choice.no_snapshot = Some(match (at, choice.passed_over.is_empty()) {
        (Some(at), true) => format!("no snapshot at or before {at}"),
        (None, true) => "no snapshot in the store".to_string(),
        (_, false) => "no snapshot is usable".to_string(),
    });
    Ok(choice)
}
