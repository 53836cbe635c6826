//! Recovery plans: one TOML file that says how every customer stack is backed up, where it
//! comes back, in what order, how to tell it is healthy, and who is told.
//!
//! - [`check_file`] reads and validates a plan and returns every [`Problem`] at once, each
//!   with its `FILE:LINE:COLUMN`; [`load`] is the same for callers that only want a valid
//!   [`Plan`].
//! - [`compile`] turns a plan into the executor's [`RunSpec`](crate::executor::RunSpec): the
//!   exact steps of every stack. The runbook ([`doc`]) and the dry run render those same
//!   steps, so documentation and execution never drift.
//! - [`online`] checks that the store and the hosts answer.
//!
//! The format is documented in the README ("Recovery plans") and in `examples/plan.toml`.
//! Rules: unknown keys are errors; secrets are never written in the plan, only referenced
//! (`*_env` names an environment variable, `*_file` a file); relative paths are relative to
//! the plan file's directory.

pub mod compile;
pub mod doc;
pub mod dry_run;
mod duration;
mod load;
mod model;
pub mod online;
mod problem;
mod raw;

use std::path::{Path, PathBuf};

pub use duration::{DurationError, format_duration, parse_duration};
pub use model::*;
pub use problem::{Location, Problem, ProblemKind, Severity};

/// What checking a plan found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The plan, when it has no error.
    pub plan: Option<Plan>,
    /// Every error and warning, by position.
    pub problems: Vec<Problem>,
}

impl Checked {
    /// Whether the plan has no error (warnings allowed).
    pub fn is_valid(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }
}

/// How much [`check_file`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Open every key, certificate, SSH key, known_hosts and passphrase file the plan names
    /// (the runbook can be made without them; recovery cannot).
    pub files: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { files: true }
    }
}

/// Reads and validates the plan at `path` (as the user named it: problems print it so).
pub fn check_file(path: &Path, options: CheckOptions) -> Checked {
    match std::fs::read_to_string(path) {
        Ok(text) => check_str(&text, path, &plan_dir(path), options),
        Err(e) => Checked {
            plan: None,
            problems: vec![Problem::error(
                path,
                ProblemKind::MissingFile,
                None,
                format!("cannot read the plan: {e}"),
            )],
        },
    }
}

/// Validates a plan given as text. `file` names it in problems; relative paths are
/// resolved against `dir`.
pub fn check_str(text: &str, file: &Path, dir: &Path, options: CheckOptions) -> Checked {
    let (plan, problems) = load::load(text, file, dir, options.files);
    Checked { plan, problems }
}

/// Reads a plan that must be valid.
pub fn load(path: &Path, options: CheckOptions) -> Result<Plan, PlanError> {
    let checked = check_file(path, options);
    match checked.plan {
        Some(plan) => Ok(plan),
        None => Err(PlanError::Invalid {
            file: path.to_path_buf(),
            problems: checked
                .problems
                .into_iter()
                .filter(Problem::is_error)
                .collect(),
        }),
    }
}

/// The directory relative paths of the plan at `path` are resolved against.
fn plan_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Errors of using a plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The plan has errors (every one listed, one per line).
    #[error(
        "{} is not a valid plan ({} error{}):\n{}",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    Invalid {
        /// The plan file.
        file: PathBuf,
        /// Its errors.
        problems: Vec<Problem>,
    },
    /// The plan names something it does not define (for callers that pick stacks).
    #[error("{what} `{name}` is not in the plan")]
    Unknown {
        /// `stack`, ...
        what: &'static str,
        /// The name.
        name: String,
    },
}
