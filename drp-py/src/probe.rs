//! `drp.probe`.

use std::time::Duration;

use drp_core::monitor::{ProbeRunner, ProbeSpec};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::{Failure, run};

/// Probes once, or with `wait`, until healthy, like `drp probe`. `spec` is a probe table of a
/// recovery plan as a dict: `{"kind": "http", "url": ..., "conditions": [...], "timeout":
/// "5s"}` (kinds `http`, `tcp`, `command`, `dns`, `tls`; unknown fields are errors).
/// `wait` (seconds, or a duration such as `"2m"`) probes every `interval` of the spec until
/// healthy (with the spec's `success_threshold`) or the time is up. Returns the result as
/// `drp probe --json` prints it (`healthy`, `message`, `observation`, `conditions`, ...);
/// an unhealthy result is not an exception. A spec that is invalid, or a condition that does
/// not parse or fit the kind, raises `drp.errors.ProbeSpecError`.
#[pyfunction]
#[pyo3(signature = (spec, *, wait=None))]
pub fn probe(
    py: Python<'_>,
    spec: &Bound<'_, PyAny>,
    wait: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let spec: ProbeSpec = pythonize::depythonize(spec).map_err(|e| {
        Failure::new("ProbeSpecError", format!("invalid probe: {e}"))
            .with_status(drp_core::exit::USAGE)
            .into_pyerr(py)
    })?;
    let wait = wait
        .map(|w| duration(w))
        .transpose()
        .map_err(|f| f.into_pyerr(py))?;
    let probe = spec.build().map_err(|e| {
        Failure::new("ProbeSpecError", e.to_string())
            .with_status(drp_core::exit::USAGE)
            .into_pyerr(py)
    })?;
    let options = spec.runner_options();
    run(py, move || async move {
        let Some(wait) = wait else {
            return Ok(probe.check().await);
        };
        let target = probe.target().to_string();
        let mut runner = ProbeRunner::new(probe, options);
        let outcome = runner
            .wait_until_healthy(tokio::time::Instant::now() + wait)
            .await;
        match outcome.last {
            Some(mut last) => {
                if last.healthy && !outcome.reached {
                    last.healthy = false;
                    last.message = format!(
                        "{}; but not {} healthy results in a row within {}",
                        last.message,
                        options.success_threshold,
                        drp_core::monitor::human_duration(wait)
                    );
                }
                Ok(last)
            }
            None => Err(Failure::new(
                "DrpError",
                format!(
                    "{target}: no result within {}",
                    drp_core::monitor::human_duration(wait)
                ),
            )),
        }
    })
}

/// Seconds (a number) or a duration text (`"90s"`, `"2m"`).
fn duration(value: &Bound<'_, PyAny>) -> Result<Duration, Failure> {
    if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_string();
        return drp_core::monitor::parse_duration(&text)
            .map_err(|e| Failure::invalid(e.to_string()));
    }
    let seconds: f64 = value
        .extract()
        .map_err(|_| Failure::invalid("wait: expected seconds or a duration such as \"2m\""))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| Failure::invalid(format!("wait: {seconds} is not a duration")))
}
