//! `drp.load_plan`, `drp.check_plan`.

use drp_core::plan::{self, CheckOptions, PlanError, Problem, Severity};
use pyo3::prelude::*;
use serde_json::{Value, json};

use crate::{Failure, PathArg, run_blocking};

/// A problem as a dict: `severity`, `kind`, `file`, `line`, `column` (None when the problem
/// has no position, e.g. an unreadable file), `message`, and `text`, the line `drp plan
/// check` prints (`FILE:LINE:COLUMN: error: MESSAGE`).
fn problem_json(problem: &Problem) -> Value {
    json!({
        "severity": problem.severity,
        "kind": problem.kind.name(),
        "file": problem.file,
        "line": problem.location.map(|l| l.line),
        "column": problem.location.map(|l| l.column),
        "message": problem.message,
        "text": problem.to_string(),
    })
}

/// `drp.errors.PlanError` with the plan's `file` and its `problems` (if invalid).
pub(crate) fn plan_failure(path: &std::path::Path, error: PlanError) -> Failure {
    let problems: Vec<Value> = match &error {
        PlanError::Invalid { problems, .. } => problems.iter().map(problem_json).collect(),
        _ => Vec::new(),
    };
    Failure::new("PlanError", error.to_string())
        .with_detail("file", json!(path))
        .with_detail("problems", Value::Array(problems))
}

fn options(files: bool) -> CheckOptions {
    CheckOptions { files }
}

/// Checks the recovery plan at `path`, like `drp plan check --json`: returns `{"file",
/// "valid", "errors", "warnings", "problems"}` with every problem (see `drp.Problem`).
/// An invalid plan is a result here, not an exception. `files=False` skips opening the key,
/// certificate and passphrase files the plan names.
#[pyfunction]
#[pyo3(signature = (path, *, files=true))]
pub fn check_plan(py: Python<'_>, path: PathArg, files: bool) -> PyResult<Py<PyAny>> {
    run_blocking(py, move || {
        let checked = plan::check_file(&path, options(files));
        let count = |severity| {
            checked
                .problems
                .iter()
                .filter(|p| p.severity == severity)
                .count()
        };
        Ok(json!({
            "file": path,
            "valid": checked.is_valid(),
            "errors": count(Severity::Error),
            "warnings": count(Severity::Warning),
            "problems": checked.problems.iter().map(problem_json).collect::<Vec<_>>(),
        }))
    })
}

/// Loads the recovery plan at `path` and returns a summary of it: `name`, `file`, `digest`
/// (SHA-256 of the file), `store`, `stacks` (each with `name`, `customer`, `role`, `host`,
/// `depends_on`, `sources`, `rto_ms`, `rpo_ms`), `hosts`, `datacenters`, `notifiers`, and
/// `warnings` (problems that do not make it invalid). Raises `drp.errors.PlanError`, whose
/// `problems` hold every error with its line and column, if the plan is invalid.
#[pyfunction]
#[pyo3(signature = (path, *, files=true))]
pub fn load_plan(py: Python<'_>, path: PathArg, files: bool) -> PyResult<Py<PyAny>> {
    run_blocking(py, move || {
        let checked = plan::check_file(&path, options(files));
        let Some(plan) = checked.plan else {
            let problems: Vec<Problem> = checked
                .problems
                .into_iter()
                .filter(Problem::is_error)
                .collect();
            let error = PlanError::Invalid {
                file: path.clone(),
                problems,
            };
            return Err(plan_failure(&path, error));
        };
        let millis = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
        Ok(json!({
            "name": plan.name,
            "file": plan.file,
            "digest": plan.digest,
            "store": plan.storage.url,
            "stacks": plan.stacks.values().map(|s| json!({
                "name": s.name,
                "customer": s.customer,
                "role": s.role,
                "host": s.host,
                "depends_on": s.depends_on,
                "sources": s.sources.iter().map(|src| src.name()).collect::<Vec<_>>(),
                "rto_ms": millis(s.rto),
                "rpo_ms": millis(s.rpo),
            })).collect::<Vec<_>>(),
            "hosts": plan.hosts.iter().map(|h| json!({
                "name": h.name,
                "datacenter": h.datacenter,
                "roles": h.roles,
                "spare": h.spare,
            })).collect::<Vec<_>>(),
            "datacenters": plan.datacenters.keys().collect::<Vec<_>>(),
            "notifiers": plan.notifiers.keys().collect::<Vec<_>>(),
            "warnings": checked.problems.iter().map(problem_json).collect::<Vec<_>>(),
        }))
    })
}
