//! `drp.drill_run`, `drp.drill_preview`, `drp.drill_revert`, `drp.drill_history`: drills, as
//! `drp drill run|revert|history` does them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use drp_core::drill::{self, DrillObserver, DrillOptions, DrillRecord};
use drp_core::plan::{Plan, Scenario};
use drp_core::provision::Fault;
use pyo3::exceptions::PyRuntimeWarning;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::errors::drill_failure;
use crate::recover::{load, open};
use crate::report::write_file;
use crate::{Failure, PathArg, run, run_cancellable, to_python};

/// A record as plain data: the record as the store keeps it (`.drp/drills/ID.json`), plus
/// what is computed from it: `time_to_detect_ms` (T1 − T0), `downtime_ms` (T3 − T0),
/// `time_to_start_recovery_ms` (T2 − T0), `fault_duration_ms` (T4 − T0), `verdict` and
/// `passed`.
fn record_json(record: &DrillRecord) -> Result<Value, Failure> {
    let mut value =
        serde_json::to_value(record).map_err(|e| Failure::new("DrpError", e.to_string()))?;
    value["time_to_detect_ms"] = json!(record.time_to_detect_ms());
    value["downtime_ms"] = json!(record.downtime_ms());
    value["time_to_start_recovery_ms"] = json!(record.time_to_start_recovery_ms());
    value["fault_duration_ms"] = json!(record.fault_duration_ms());
    value["verdict"] = json!(record.verdict());
    value["passed"] = json!(record.passed());
    Ok(value)
}

/// The scenario, or the error `drp drill run` gives for a name the plan lacks.
fn scenario<'p>(path: &Path, plan: &'p Plan, name: &str) -> Result<&'p Scenario, Failure> {
    plan.scenarios.get(name).ok_or_else(|| {
        Failure::new(
            "PlanError",
            format!(
                "scenario {name} is not in {} (it has: {})",
                path.display(),
                plan.scenarios
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_detail("file", json!(path))
        .with_detail("scenario", json!(name))
    })
}

/// `PLAN_DIR/.drp/drills/DRILL_ID.html`, where `drp drill run` writes the report.
fn default_report_path(plan: &Plan, drill: &str) -> PathBuf {
    plan.dir
        .join(".drp")
        .join("drills")
        .join(format!("{drill}.html"))
}

/// Learns the drill's id as soon as it has one.
#[derive(Default)]
struct Watch {
    id: Mutex<Option<String>>,
}

impl Watch {
    fn id(&self) -> Option<String> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl DrillObserver for Watch {
    fn started(&self, drill: &str) {
        *self.id.lock().unwrap_or_else(|e| e.into_inner()) = Some(drill.to_string());
    }

    fn line(&self, _time: jiff::Timestamp, _what: &str) {}
}

/// Runs a drill of `scenario` against the real infrastructure, like `drp drill run --yes`:
/// checks the steady state, injects the fault on the targets (each armed first with a
/// dead-man timer that reverts it even if drp dies), measures detection, recovers
/// (`automatic`) or watches the team do it (`surprise`), reverts, records the drill in the
/// store and writes its HTML report to `report` (default `PLAN_DIR/.drp/drills/ID.html`).
/// Returns the record as the store keeps it (`drill`, `scenario`, `state`, `fault`,
/// `targets`, `marks` T0..T4, `recovery_runs`, `stack_results`, `timeline`, `deviations`,
/// `checks`, ...) plus `time_to_detect_ms`, `downtime_ms`, `time_to_start_recovery_ms`,
/// `fault_duration_ms`, `verdict`, `passed` and `report`; a drill that failed its
/// expectations is a result. Raises `DrillError` when it could not start (`stage`
/// `steady_state` or `inject`, `problems`, `drill`; `TransportError` with the same when
/// the hosts it could not inject on could not be reached), `LockedError` when another drill runs,
/// `PlanError` for an unknown scenario. Ctrl-C aborts the drill and reverts the fault
/// before the `KeyboardInterrupt` (with `drill`) is raised.
#[pyfunction]
#[pyo3(signature = (plan, scenario, *, report=None))]
pub fn drill_run(
    py: Python<'_>,
    plan: PathArg,
    scenario: String,
    report: Option<PathArg>,
) -> PyResult<Py<PyAny>> {
    let cancel = CancellationToken::new();
    let watch = Arc::new(Watch::default());
    let observer = watch.clone();
    let token = cancel.clone();
    let (outcome, interrupted) = run_cancellable(py, &cancel, move || async move {
        let loaded = load(&plan, true)?;
        self::scenario(&plan, &loaded, &scenario)?;
        let store = open(&loaded)?;
        let loaded = Arc::new(loaded);
        let record = drill::run_drill(
            loaded.clone(),
            store.clone(),
            DrillOptions::new(&scenario),
            observer.clone(),
            token,
        )
        .await
        .map_err(|e| drill_failure(&plan, e, observer.id()))?;
        let path = report.unwrap_or_else(|| default_report_path(&loaded, &record.drill));
        let rendered = drill::report::load(&loaded, store.as_ref(), &record.drill)
            .await
            .map_err(|e| drill_failure(&plan, e, Some(record.drill.clone())))?;
        write_file(&path, &drill::report::html(&rendered))?;
        let mut value = record_json(&record)?;
        value["report"] = json!(path);
        Ok(value)
    });
    if let Some(interrupt) = interrupted {
        // Ctrl-C aborted the drill and the fault was reverted (as in `drp drill run`); the
        // record says so. The interrupt goes on, naming the drill.
        if let Some(id) = watch.id() {
            let _ = interrupt.value(py).setattr("drill", id);
        }
        return Err(interrupt);
    }
    match outcome {
        Ok(value) => to_python(py, &value),
        Err(failure) => Err(failure.into_pyerr(py)),
    }
}

/// What `drill_run` would do, injecting nothing and touching no host (for check modes):
/// `scenario`, `description`, `mode`, `fault` (in words) and `fault_spec`, `targets`,
/// `blast_radius`, `candidates` (`host`, `address`, `datacenter`), `hosts_hit`, `stacks`
/// (those that count), `target_datacenter`, `duration_ms`, `detect_within_ms`,
/// `recover_within_ms`, `steady_state`, `steady_state_within_ms`, `abort_probes`,
/// `notify_customers`, `test_route`, `alert_receiver`. Raises `PlanError` as `drill_run`
/// does for an unknown scenario or one that hits no stack.
#[pyfunction]
pub fn drill_preview(py: Python<'_>, plan: PathArg, scenario: String) -> PyResult<Py<PyAny>> {
    crate::run_blocking(py, move || {
        let loaded = load(&plan, true)?;
        let found = self::scenario(&plan, &loaded, &scenario)?;
        let candidates = found.targets.hosts(&loaded);
        let stacks = found.stacks_hit(&loaded, &candidates);
        if stacks.is_empty() {
            return Err(drill_failure(
                &plan,
                drill::DrillError::NoStacks(found.name.clone()),
                None,
            ));
        }
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(json!({
            "plan": loaded.name,
            "scenario": found.name,
            "description": found.description,
            "mode": found.mode.as_str(),
            "fault": Fault::new(found.fault.clone(), "preview").describe(),
            "fault_spec": found.fault,
            "targets": found.targets.to_string(),
            "blast_radius": found.blast_radius.to_string(),
            "candidates": candidates.iter().map(|h| json!({
                "host": h.name,
                "address": h.address.to_string(),
                "datacenter": h.datacenter,
            })).collect::<Vec<_>>(),
            "hosts_hit": found.blast_radius.of(candidates.len()),
            "stacks": stacks,
            "target_datacenter": loaded.recovery.target_datacenter,
            "duration_ms": millis(found.duration),
            "detect_within_ms": found.detect_within.map(millis),
            "recover_within_ms": found.recover_within.map(millis),
            "steady_state": found.steady_state,
            "steady_state_within_ms": millis(found.steady_state_within),
            "abort_probes": found.abort_probes.iter().map(|p| &p.name).collect::<Vec<_>>(),
            "notify_customers": found.notify_customers,
            "test_route": found.test_route,
            "alert_receiver": found.alert_receiver.map(|a| a.to_string()),
        }))
    })
}

/// Reverts drill `drill_id`'s fault by hand on every host it hit, like `drp drill revert`
/// (e.g. after its process was killed), records it (a drill left running becomes
/// `aborted`) and frees the store for the next drill. Safe to repeat. Returns the record
/// as `drill_run` does. Raises `RunNotFound` for an unknown drill, `DrillError` (`stage`
/// `revert`) when some hosts could not be reverted (`TransportError` when none of those
/// could be reached).
#[pyfunction]
pub fn drill_revert(py: Python<'_>, plan: PathArg, drill_id: String) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let loaded = load(&plan, false)?;
        let store = open(&loaded)?;
        let record = drill::revert_drill(store, &loaded, &drill_id)
            .await
            .map_err(|e| drill_failure(&plan, e, Some(drill_id.clone())))?;
        record_json(&record)
    })
}

/// Every drill of the plan in its store, oldest first, like `drp drill history`: each
/// record as `drill_run` returns it. Unreadable records are skipped with a
/// `RuntimeWarning` each.
#[pyfunction]
pub fn drill_history(py: Python<'_>, plan: PathArg) -> PyResult<Py<PyAny>> {
    let found = run(py, move || async move {
        let loaded = load(&plan, false)?;
        let store = open(&loaded)?;
        let (records, problems) = drill::history(store.as_ref(), Some(&loaded.name))
            .await
            .map_err(|e| drill_failure(&plan, e, None))?;
        let records = records
            .iter()
            .map(record_json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({"records": records, "problems": problems}))
    })?;
    let found = found.bind(py).cast::<PyDict>()?;
    // Unreadable records are skipped, with a warning each (the CLI's `drp: warning:`).
    if let Some(problems) = found.get_item("problems")? {
        for problem in problems.try_iter()? {
            let text = format!("{}", problem?);
            let category = py.get_type::<PyRuntimeWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(text)?, 1)?;
        }
    }
    Ok(found
        .get_item("records")?
        .expect("records are there")
        .unbind())
}
