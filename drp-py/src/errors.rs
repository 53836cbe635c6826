//! Rust errors → the exception classes of `drp.errors` (defined in Python, so that they can
//! carry documented attributes; see `python/drp/errors.py`).

use std::path::Path;

use drp_core::backup::{self, KeyError, StoreError};
use drp_core::drill::DrillError;
use drp_core::executor::ExecutorError;
use drp_core::executor::journal::JournalError;
use drp_core::executor::lock::LockError;
use drp_core::exit;
use drp_core::recover::RecoverError;
use drp_core::remote::transport_cause;
use drp_core::report::ReportError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Map, Value, json};

/// An error on its way to Python: the `drp.errors` class, the message (exactly what the CLI
/// prints after `drp: error: `), the CLI's exit status for it, and structured details that
/// become attributes of the exception.
#[derive(Debug)]
pub(crate) struct Failure {
    pub class: &'static str,
    pub message: String,
    pub exit_status: u8,
    pub details: Map<String, Value>,
}

impl Failure {
    pub(crate) fn new(class: &'static str, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
            exit_status: exit::FAILURE,
            details: Map::new(),
        }
    }

    /// A bad argument (`drp.errors.InvalidArgument`, also a `ValueError`).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new("InvalidArgument", message)
    }

    pub(crate) fn with_status(mut self, status: u8) -> Self {
        self.exit_status = status;
        self
    }

    /// The same class and details with another message (the CLI's, when a wrapping error
    /// says more than the one that gives the class).
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub(crate) fn with_detail(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }

    /// The Python exception: `drp.errors.<class>(message, exit_status=..., **details)`.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let build = || -> PyResult<PyErr> {
            let class = py.import("drp.errors")?.getattr(self.class)?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("exit_status", self.exit_status)?;
            for (key, value) in &self.details {
                kwargs.set_item(key, pythonize::pythonize(py, value)?)?;
            }
            Ok(PyErr::from_value(
                class.call((self.message.as_str(),), Some(&kwargs))?,
            ))
        };
        build().unwrap_or_else(|e| e)
    }
}

/// The `drp.errors` class of a drp-backup error: `TransportError` whenever a host could not
/// be reached or used (whatever the error reading or restoring says around it), else the
/// error's kind.
pub(crate) fn backup_class(error: &backup::Error) -> &'static str {
    use backup::Error as E;
    if transport_cause(error).is_some() {
        return "TransportError";
    }
    match error {
        E::Store(_) => "StoreError",
        E::Key(_) | E::WrongKey { .. } => "DrpKeyError",
        E::InvalidName { .. }
        | E::InvalidSourceSpec { .. }
        | E::OneSourceForCommand { .. }
        | E::EmptyRetentionPolicy => "InvalidArgument",
        E::SourceFailed { .. } => "SourceError",
        E::SnapshotNotFound { .. } => "SnapshotNotFound",
        E::SourceNotFound { .. } => "SourceNotFound",
        E::ManifestRefused { .. } | E::DataRefused { .. } => "IntegrityError",
        E::Target { .. } => "TargetError",
        E::Io { .. } => "DrpIOError",
        _ => "DrpError",
    }
}

impl From<backup::Error> for Failure {
    fn from(error: backup::Error) -> Self {
        Failure::new(backup_class(&error), error.to_string())
            .with_status(drp_core::exit_status_for(&error))
    }
}

impl From<KeyError> for Failure {
    fn from(error: KeyError) -> Self {
        backup::Error::from(error).into()
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        backup::Error::from(error).into()
    }
}

/// `drp.errors.LockedError` for the plan's recovery lock (held by a run, or unusable), with
/// who holds it; `StoreError` when the store failed reading or writing it.
pub(crate) fn lock_failure(error: LockError) -> Failure {
    let message = error.to_string();
    match error {
        LockError::Held(held) => Failure::new("LockedError", message)
            .with_detail("run_id", json!(held.run_id))
            .with_detail("holder", json!(held.holder))
            .with_detail("pid", json!(held.pid))
            .with_detail("since", json!(held.acquired_at)),
        LockError::Store(e) => Failure::from(e).with_message(message),
        _ => Failure::new("LockedError", message),
    }
}

/// A run's journal could not be read: `RunNotFound` for a run the store does not have,
/// `JournalError` for an event that does not parse, else the kind of the underlying error.
pub(crate) fn journal_failure(error: JournalError) -> Failure {
    let message = error.to_string();
    match error {
        JournalError::NoSuchRun(run) => {
            Failure::new("RunNotFound", message).with_detail("run_id", json!(run))
        }
        JournalError::Store(e) => Failure::from(e).with_message(message),
        JournalError::Local { .. } => Failure::new("DrpIOError", message),
        JournalError::InvalidRunId(_) => Failure::invalid(message),
        _ => Failure::new("JournalError", message),
    }
}

/// Why a recovery could not run (a stack that fails is an outcome, not an error).
pub(crate) fn recover_failure(plan: &Path, error: RecoverError) -> Failure {
    // The message is the CLI's, whatever the class: `drp: error: {error}`.
    let message = error.to_string();
    let failure = match error {
        RecoverError::Plan(e) => crate::plan::plan_failure(plan, e),
        RecoverError::Store(e) => Failure::from(e),
        RecoverError::Lock(e) => lock_failure(e),
        RecoverError::Journal(e) => journal_failure(e),
        RecoverError::Resume(_) => Failure::new("ResumeError", ""),
        RecoverError::PlanChanged { run, then, now } => Failure::new("ResumeError", "")
            .with_detail("run_id", json!(run))
            .with_detail("plan_digest_then", json!(then))
            .with_detail("plan_digest_now", json!(now)),
        RecoverError::InvalidRunId(_) => Failure::invalid(""),
        RecoverError::Key(e) => Failure::from(e),
        RecoverError::LocalJournal { path, .. } => {
            Failure::new("DrpIOError", "").with_detail("path", json!(path))
        }
        RecoverError::Executor(ExecutorError::Sink { summary, .. }) => {
            Failure::new("JournalError", "")
                .with_detail("run_id", json!(summary.run_id))
                .with_detail("stacks", crate::recover::outcomes_json(&summary))
        }
        RecoverError::Executor(ExecutorError::WrongRun { .. }) => Failure::new("ResumeError", ""),
        RecoverError::Executor(ExecutorError::InvalidSpec(_)) => {
            Failure::new("PlanError", "").with_detail("file", json!(plan))
        }
        _ => Failure::new("DrpError", ""),
    };
    failure.with_message(message)
}

/// Why a run's report could not be made.
pub(crate) fn report_failure(error: ReportError) -> Failure {
    let message = error.to_string();
    let failure = match error {
        ReportError::UnknownRun { run, .. } => {
            Failure::new("RunNotFound", "").with_detail("run_id", json!(run))
        }
        ReportError::Journal(e) => journal_failure(e),
        ReportError::Lock(e) => lock_failure(e),
        ReportError::NoStart(run) => {
            Failure::new("JournalError", "").with_detail("run_id", json!(run))
        }
        _ => Failure::new("DrpError", ""),
    };
    failure.with_message(message)
}

/// Why a drill could not run, or a drill operation failed. `drill` is the drill's id when
/// it got one (a drill whose steady state did not hold has a record).
pub(crate) fn drill_failure(plan: &Path, error: DrillError, drill: Option<String>) -> Failure {
    let message = error.to_string();
    let failure = match error {
        DrillError::UnknownScenario { name, .. } => Failure::new("PlanError", "")
            .with_detail("file", json!(plan))
            .with_detail("scenario", json!(name)),
        DrillError::NoStacks(scenario) => Failure::new("PlanError", "")
            .with_detail("file", json!(plan))
            .with_detail("scenario", json!(scenario)),
        DrillError::Busy {
            drill: other,
            scenario,
            holder,
            since,
        } => Failure::new("LockedError", "")
            .with_detail("drill", json!(other))
            .with_detail("scenario", json!(scenario))
            .with_detail("holder", json!(holder))
            .with_detail("since", json!(since)),
        DrillError::SteadyState(problems) => Failure::new("DrillError", "")
            .with_detail("stage", json!("steady_state"))
            .with_detail("problems", json!(problems)),
        DrillError::Inject {
            problems,
            unreachable,
        } => Failure::new(drill_class(unreachable), "")
            .with_detail("stage", json!("inject"))
            .with_detail("problems", json!([problems])),
        DrillError::AlertReceiver { .. } => {
            Failure::new("DrillError", "").with_detail("stage", json!("alert_receiver"))
        }
        DrillError::Revert {
            problems,
            unreachable,
            ..
        } => Failure::new(drill_class(unreachable), "")
            .with_detail("stage", json!("revert"))
            .with_detail("problems", json!(problems)),
        DrillError::NotFound(id) => {
            Failure::new("RunNotFound", "").with_detail("run_id", json!(id))
        }
        DrillError::InvalidId(_) => Failure::invalid(""),
        DrillError::Store(e) => Failure::from(e),
        DrillError::Record { .. } => Failure::new("StoreError", ""),
        DrillError::Local { path, .. } => {
            Failure::new("DrpIOError", "").with_detail("path", json!(path))
        }
        _ => Failure::new("DrpError", ""),
    };
    let failure = failure.with_message(message);
    match drill {
        Some(id) if matches!(failure.class, "DrillError" | "TransportError") => {
            failure.with_detail("drill", json!(id))
        }
        _ => failure,
    }
}

/// A drill that failed on hosts: `TransportError` when drp could not reach any of them (the
/// transport failed every time), else `DrillError`.
fn drill_class(unreachable: bool) -> &'static str {
    if unreachable {
        "TransportError"
    } else {
        "DrillError"
    }
}
