//! Rust errors → the exception classes of `drp.errors` (defined in Python, so that they can
//! carry documented attributes; see `python/drp/errors.py`).

use drp_core::backup::{self, KeyError, StoreError};
use drp_core::exit;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Map, Value};

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

/// The `drp.errors` class of a drp-backup error.
pub(crate) fn backup_class(error: &backup::Error) -> &'static str {
    use backup::Error as E;
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
