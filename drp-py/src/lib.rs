//! `drp._drp`: the native half of the `drp` Python package (the pure-Python half, with the
//! exception classes, the stubs and the docs, is `drp-py/python/drp/`).
//!
//! Thin by design: every call parses its arguments, calls drp-core, and turns the result into
//! plain Python data (dicts, lists, strings, numbers) through serde. Work runs on one shared
//! tokio runtime with the GIL released, so other Python threads run meanwhile. Errors become
//! the exception class of their kind (`drp.errors`), with the message the CLI prints.

mod backup;
mod drill;
mod errors;
mod keys;
mod plan;
mod probe;
mod recover;
mod report;

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use serde::Serialize;

pub(crate) use errors::Failure;

/// The one tokio runtime every call of the process shares (worker threads start on the
/// first call).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("drp-py")
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// How often a call that waits checks for signals (Ctrl-C) sent to Python.
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

/// Runs the future `work` makes to completion on the shared runtime with the GIL released,
/// then turns its outcome into Python data or the exception of its kind. (The future is made
/// on the releasing thread, so it need not be `Send` itself: only what it is made from.)
///
/// Every [`SIGNAL_CHECK`] it takes the GIL for a moment to let Python handle signals: on
/// the main thread, Ctrl-C raises `KeyboardInterrupt` and the work is dropped, as the `drp`
/// command is stopped by it (a backup then leaves no snapshot: the manifest is written last).
pub(crate) fn run<T, F, W>(py: Python<'_>, work: W) -> PyResult<Py<PyAny>>
where
    T: Serialize + Send,
    F: Future<Output = Result<T, Failure>>,
    W: FnOnce() -> F + Send,
{
    let outcome = py.detach(|| {
        runtime().block_on(async {
            let work = work();
            tokio::pin!(work);
            loop {
                tokio::select! {
                    outcome = &mut work => return Ok::<_, PyErr>(outcome),
                    () = tokio::time::sleep(SIGNAL_CHECK) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })?;
    match outcome {
        Ok(value) => to_python(py, &value),
        Err(failure) => Err(failure.into_pyerr(py)),
    }
}

/// Like [`run`] for work that must not be dropped half-way (a drill, whose fault must be
/// reverted): on a signal, `cancel` is cancelled (the work stops as soon as it safely can)
/// and the work still runs to its end. Returns its outcome, and the signal's exception
/// (`KeyboardInterrupt`) if one came; later signals wait until the work ends.
pub(crate) fn run_cancellable<T, F, W>(
    py: Python<'_>,
    cancel: &tokio_util::sync::CancellationToken,
    work: W,
) -> (Result<T, Failure>, Option<PyErr>)
where
    T: Send,
    F: Future<Output = Result<T, Failure>>,
    W: FnOnce() -> F + Send,
{
    let cancel = cancel.clone();
    py.detach(|| {
        runtime().block_on(async {
            let work = work();
            tokio::pin!(work);
            let mut interrupted = None;
            loop {
                tokio::select! {
                    outcome = &mut work => return (outcome, interrupted),
                    () = tokio::time::sleep(SIGNAL_CHECK), if interrupted.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            cancel.cancel();
                            interrupted = Some(e);
                        }
                    }
                }
            }
        })
    })
}

/// Like [`run`] for work that blocks (no future).
pub(crate) fn run_blocking<T, F>(py: Python<'_>, work: F) -> PyResult<Py<PyAny>>
where
    T: Serialize + Send,
    F: FnOnce() -> Result<T, Failure> + Send,
{
    match py.detach(work) {
        Ok(value) => to_python(py, &value),
        Err(failure) => Err(failure.into_pyerr(py)),
    }
}

/// Any serializable value as plain Python data.
pub(crate) fn to_python<T: Serialize + ?Sized>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    Ok(pythonize::pythonize(py, value)?.unbind())
}

/// Paths as the user gave them (`str` or `os.PathLike`).
pub(crate) type PathArg = PathBuf;

/// The native module. Its functions are re-exported, documented, by the `drp` package.
#[pymodule]
fn _drp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(plan::load_plan, m)?)?;
    m.add_function(wrap_pyfunction!(plan::check_plan, m)?)?;
    m.add_function(wrap_pyfunction!(keys::keys_generate, m)?)?;
    m.add_function(wrap_pyfunction!(keys::keys_list, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup_create, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup_preview, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup_list, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup_verify, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup_restore, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup_prune, m)?)?;
    m.add_function(wrap_pyfunction!(probe::probe, m)?)?;
    m.add_function(wrap_pyfunction!(recover::recover, m)?)?;
    m.add_function(wrap_pyfunction!(recover::recover_dry_run, m)?)?;
    m.add_function(wrap_pyfunction!(recover::recover_break_lock, m)?)?;
    m.add_function(wrap_pyfunction!(drill::drill_run, m)?)?;
    m.add_function(wrap_pyfunction!(drill::drill_preview, m)?)?;
    m.add_function(wrap_pyfunction!(drill::drill_revert, m)?)?;
    m.add_function(wrap_pyfunction!(drill::drill_history, m)?)?;
    m.add_function(wrap_pyfunction!(report::report, m)?)?;
    Ok(())
}
