//! `drp.report`: a recovery run's or a drill's report, as `drp report` renders it.

use std::path::Path;

use drp_core::drill::{self, DrillError};
use drp_core::report as run_report;
use pyo3::prelude::*;

use crate::errors::{drill_failure, report_failure};
use crate::recover::{load, open, timestamp};
use crate::{Failure, PathArg};

/// Writes `text` to `path` whole or not at all (a temporary file renamed into place),
/// creating its directory, as the CLI writes reports.
pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    drp_core::files::write_atomically(path, text).map_err(|e| {
        Failure::new("DrpIOError", format!("{}: {e}", path.display()))
            .with_detail("path", serde_json::json!(path))
    })
}

#[derive(Clone, Copy)]
enum Format {
    Md,
    Html,
    Json,
}

fn format(text: &str) -> Result<Format, Failure> {
    match text {
        "md" => Ok(Format::Md),
        "html" => Ok(Format::Html),
        "json" => Ok(Format::Json),
        other => Err(Failure::invalid(format!(
            "format: expected md, html or json, not {other:?}"
        ))),
    }
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|text| format!("{text}\n"))
        .map_err(|e| Failure::new("DrpError", e.to_string()))
}

/// The report of recovery run or drill `run_id` (`"latest"`: the newest recovery run),
/// like `drp report`: `format` `"md"`, `"html"` (one self-contained file with a Gantt chart)
/// or `"json"` (`json.loads` gives the report as data). With `out`, also written to that
/// file (whole or not at all). `incident_start` moves the start RTO and RPO count from
/// (recovery runs). Returns the text. Raises `RunNotFound` for an unknown id,
/// `JournalError` for a journal that does not parse, `InvalidArgument` for a bad format.
#[pyfunction]
#[pyo3(signature = (plan, run_id, *, format="md".to_string(), out=None, incident_start=None),
    text_signature = "(plan, run_id, *, format='md', out=None, incident_start=None)")]
pub fn report(
    py: Python<'_>,
    plan: PathArg,
    run_id: String,
    format: String,
    out: Option<PathArg>,
    incident_start: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let incident_start = timestamp("incident_start", incident_start)?;
    let format = self::format(&format).map_err(|f| f.into_pyerr(py))?;
    crate::run(py, move || async move {
        let loaded = load(&plan, false)?;
        let store = open(&loaded)?;
        // A drill's id names its record; anything else is a recovery run.
        let text = match drill::report::load(&loaded, store.as_ref(), &run_id).await {
            Ok(drill) => match format {
                Format::Md => drill::report::markdown(&drill),
                Format::Html => drill::report::html(&drill),
                Format::Json => pretty(&drill)?,
            },
            Err(DrillError::NotFound(_) | DrillError::InvalidId(_)) => {
                let run = run_report::load(&loaded, store.as_ref(), &run_id, incident_start)
                    .await
                    .map_err(report_failure)?;
                match format {
                    Format::Md => run_report::markdown::render(&run),
                    Format::Html => run_report::html::render(&run),
                    Format::Json => pretty(&run)?,
                }
            }
            Err(e) => return Err(drill_failure(&plan, e, None)),
        };
        if let Some(out) = &out {
            write_file(out, &text)?;
        }
        Ok(text)
    })
}
