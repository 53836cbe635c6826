//! `drp.recover`, `drp.recover_dry_run`, `drp.recover_break_lock`: a plan's stacks brought
//! back, as `drp recover` (and `--dry-run`, `--break-lock`) does it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use drp_core::backup::BackupStore;
use drp_core::executor::{MemorySink, RunSummary};
use drp_core::plan::dry_run::{DryRunError, dry_run};
use drp_core::plan::{self, CheckOptions, Plan};
use drp_core::recover::{ApproveAll, Approver, RecoverOptions, plan_secrets};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::PyString;
use serde_json::{Map, Value, json};

use crate::errors::{lock_failure, recover_failure};
use crate::plan::plan_failure;
use crate::{Failure, PathArg, run};

/// The plan at `path`; `files` opens the key files it names (a recovery needs them, a dry
/// run, a report or breaking the lock do not), as the CLI does.
pub(crate) fn load(path: &Path, files: bool) -> Result<Plan, Failure> {
    plan::load(path, CheckOptions { files }).map_err(|e| plan_failure(path, e))
}

/// The plan's store.
pub(crate) fn open(plan: &Plan) -> Result<Arc<dyn BackupStore>, Failure> {
    Ok(drp_core::backup::open_store_with(
        &plan.storage.url,
        plan.storage.options.clone(),
    )?)
}

/// A time given as an RFC 3339 string (`"2026-11-29T10:00:00Z"`) or a timezone-aware
/// `datetime`, as `drp recover --at`/`--incident-start` take it.
pub(crate) fn timestamp(
    what: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<jiff::Timestamp>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let py = value.py();
    let text: String = if value.is_instance_of::<PyString>() {
        value.extract()?
    } else if value.hasattr("isoformat")? && value.hasattr("tzinfo")? {
        if value.getattr("tzinfo")?.is_none() {
            return Err(Failure::invalid(format!(
                "{what}: a datetime without a timezone is ambiguous; give one with tzinfo \
                 (e.g. datetime.timezone.utc)"
            ))
            .into_pyerr(py));
        }
        value.call_method0("isoformat")?.extract()?
    } else {
        return Err(Failure::invalid(format!(
            "{what}: expected a time such as \"2026-11-29T10:00:00Z\" or an aware datetime"
        ))
        .into_pyerr(py));
    };
    text.parse::<jiff::Timestamp>().map(Some).map_err(|e| {
        Failure::invalid(format!(
            "{what}: invalid time {text:?} (e.g. 2026-11-29T10:00:00Z): {e}"
        ))
        .into_pyerr(py)
    })
}

fn dry_run_failure(path: &Path, error: DryRunError) -> Failure {
    match error {
        DryRunError::Plan(e) => plan_failure(path, e),
        DryRunError::Backup(e) => Failure::from(e),
        other => Failure::new("DrpError", other.to_string()),
    }
}

/// What a recovery of `plan` would do, changing nothing anywhere, like `drp recover
/// --dry-run --json`: `plan`, `store`, `target_datacenter`, `parallelism`, `at`, and
/// `waves` (stacks recovered in parallel, wave after wave), each stack with `name`,
/// `customer`, `hosts` (the spares it would take, in order), `provisioner`, `snapshot`
/// (`id`, `time`, `age_ms`, `exceeds_rpo`, `sources` as `[name, bytes]`, `signed`) or
/// `no_snapshot` (why none is usable), `passed_over` and `steps` (`name`, `runs`,
/// `timeout`, `retries`); plus `ready`: whether every stack has a snapshot to restore (the
/// CLI exits 1 when not; here it is a result). `stacks` picks stacks (default all); `at`
/// takes the newest snapshots at or before that time. Reads the store and the trusted
/// signers, not the secret keys.
#[pyfunction]
#[pyo3(signature = (plan, *, stacks=Vec::new(), at=None),
    text_signature = "(plan, *, stacks=(), at=None)")]
pub fn recover_dry_run(
    py: Python<'_>,
    plan: PathArg,
    stacks: Vec<String>,
    at: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let at = timestamp("at", at)?;
    run(py, move || async move {
        let loaded = load(&plan, false)?;
        let store = open(&loaded)?;
        let preview = dry_run(&loaded, store, &stacks, at)
            .await
            .map_err(|e| dry_run_failure(&plan, e))?;
        let mut value =
            serde_json::to_value(&preview).map_err(|e| Failure::new("DrpError", e.to_string()))?;
        value["ready"] = json!(preview.ready());
        Ok(value)
    })
}

/// Approval gates without a person to ask: refused, saying how to approve.
struct Refuse;

#[async_trait]
impl Approver for Refuse {
    async fn approve(&self, stack: &str, question: &str) -> Result<(), String> {
        Err(format!(
            "stack {stack} needs an operator's approval ({question}) and there is no one to \
             ask: call drp.recover with approve=True to approve in advance"
        ))
    }
}

/// Hides the plan's secrets in every string of `value`, as the journal does (the summary
/// is not journaled: a failed step's error may echo a password).
fn redact(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(text) => {
            for secret in secrets {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "***");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
}

/// Per stack: its outcome (`status`: `recovered`, `failed` with `step` and `error`,
/// `skipped` or `interrupted` with `reason`) and `facts` (what its steps established:
/// host, address, snapshot...).
pub(crate) fn outcomes_json(summary: &RunSummary) -> Value {
    let mut stacks = Map::new();
    for (name, outcome) in &summary.stacks {
        let mut entry = serde_json::to_value(outcome).unwrap_or_else(|_| json!({}));
        entry["facts"] = json!(summary.facts.get(name).cloned().unwrap_or_default());
        stacks.insert(name.clone(), entry);
    }
    Value::Object(stacks)
}

/// Recovers the plan's stacks for real, like `drp recover`: takes the plan's lock in the
/// store, then per stack, in dependency order and up to the plan's parallelism, a spare
/// host (leased in the store), its sources restored from the encrypted backups, its
/// commands, its probes until healthy, the notifications; every event journaled (store and
/// local copy) before the next step. `stacks` picks stacks (default all; on resume, the
/// run's); `at` (RFC 3339 text or an aware `datetime`) takes the newest snapshots at or
/// before that time; `incident_start` is when the outage began (RTO and RPO count from it;
/// default the run's start); `approve=True` approves approval gates in advance (otherwise
/// a gate fails its stack); `resume=RUN_ID` continues that run, running only the steps
/// that did not succeed; `local_journal` moves the local journal copy (default
/// `PLAN_DIR/.drp/runs/RUN_ID.jsonl`). Returns `run_id`, `plan`, `resumed`,
/// `all_recovered`, `passed`, `rto_ms`, `rpo_ms`, `stacks` (per name: `status`
/// (`recovered`, `failed` with `step` and `error`, `skipped`/`interrupted` with `reason`)
/// and `facts` (`host`, `address`, `snapshot`...)), `measurements` (per stack RTO and RPO
/// against the objectives, every step's timing) and `local_journal`; a stack not
/// recovered is a result. Raises `LockedError` (another run holds the lock), `RunNotFound`,
/// `ResumeError`, `PlanError`, `DrpKeyError`, `JournalError`, `StoreError`. Ctrl-C stops
/// the run where it is, keeping its lock: the `KeyboardInterrupt`'s `run_id` resumes it.
#[pyfunction]
#[pyo3(signature = (plan, *, stacks=Vec::new(), at=None, resume=None, incident_start=None,
    approve=false, local_journal=None),
    text_signature = "(plan, *, stacks=(), at=None, resume=None, incident_start=None, \
    approve=False, local_journal=None)")]
#[allow(clippy::too_many_arguments)]
pub fn recover(
    py: Python<'_>,
    plan: PathArg,
    stacks: Vec<String>,
    at: Option<&Bound<'_, PyAny>>,
    resume: Option<String>,
    incident_start: Option<&Bound<'_, PyAny>>,
    approve: bool,
    local_journal: Option<PathArg>,
) -> PyResult<Py<PyAny>> {
    let at = timestamp("at", at)?;
    let incident_start = timestamp("incident_start", incident_start)?;
    // The id is chosen here, so that an interrupted call can say which run to resume.
    let run_id = resume
        .clone()
        .unwrap_or_else(drp_core::executor::journal::new_run_id);
    let id = run_id.clone();
    let outcome = run(py, move || async move {
        let loaded = Arc::new(load(&plan, true)?);
        let store = open(&loaded)?;
        let approver: Arc<dyn Approver> = if approve {
            Arc::new(ApproveAll)
        } else {
            Arc::new(Refuse)
        };
        let resumed = resume.is_some();
        let options = RecoverOptions {
            stacks,
            resume,
            at,
            incident_start,
            local_journal,
            run_id: Some(id),
        };
        let recovery = drp_core::recover::recover(
            loaded.clone(),
            store,
            options,
            approver,
            Arc::new(MemorySink::new()),
        )
        .await
        .map_err(|e| recover_failure(&plan, e))?;
        let m = &recovery.measurements;
        let mut stacks = outcomes_json(&recovery.summary);
        redact(&mut stacks, &plan_secrets(&loaded));
        Ok(json!({
            "run_id": recovery.summary.run_id,
            "plan": loaded.name,
            "resumed": resumed,
            "all_recovered": recovery.all_recovered(),
            "passed": m.passed,
            "rto_ms": m.rto_ms,
            "rpo_ms": m.rpo_ms,
            "stacks": stacks,
            "measurements": m,
            "local_journal": recovery.local_journal,
        }))
    });
    outcome.inspect_err(|e| {
        // Ctrl-C dropped the run where it was, as killing `drp recover` does: it keeps the
        // plan's lock and is resumed with `resume=RUN_ID`.
        if e.is_instance_of::<PyKeyboardInterrupt>(py) {
            let _ = e.value(py).setattr("run_id", &run_id);
        }
    })
}

/// Breaks the plan's recovery lock, like `drp recover --break-lock` (only once you know the
/// run holding it is dead). Returns who held it (`run_id`, `holder`, `pid`, `acquired_at`),
/// or None if the plan was not locked.
#[pyfunction]
pub fn recover_break_lock(py: Python<'_>, plan: PathArg) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let loaded = load(&plan, false)?;
        let store = open(&loaded)?;
        drp_core::recover::break_lock(store.as_ref(), None)
            .await
            .map_err(lock_failure)
    })
}
