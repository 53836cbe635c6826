//! `drp plan`: check a recovery plan, render its runbook.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use drp_core::exit;
use drp_core::plan::{self, CheckOptions, Problem, Severity, online};
use serde::Serialize;

use crate::output::CommandError;

/// The file `drp plan` commands read when none is given.
const DEFAULT_PLAN: &str = "drp.toml";

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan and report every problem as FILE:LINE:COLUMN: syntax, unknown keys,
    /// undefined references, dependency cycles, duplicate names, literal secrets, missing or
    /// unreadable key files. Exit status 0 when valid (warnings allowed), 1 otherwise.
    Check {
        /// The plan file.
        #[arg(value_name = "FILE", default_value = DEFAULT_PLAN)]
        file: PathBuf,
        /// Also check that the store answers, every host answers over SSH, and every
        /// notifier delivers (a test message to the team, as `drp notify test` sends).
        #[arg(long)]
        online: bool,
        /// Time limit of each online check, in seconds.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 30,
            requires = "online"
        )]
        timeout: u64,
        /// One JSON object (valid, errors, warnings, problems) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Render the plan's runbook (Markdown): stacks in recovery order, hosts, what each
    /// step runs, who is told what. Key files need not be present.
    Doc {
        /// The plan file.
        #[arg(value_name = "FILE", default_value = DEFAULT_PLAN)]
        file: PathBuf,
        /// Write the runbook to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs a `drp plan` command; `Ok` holds the exit status (`check` exits 1 on an invalid
/// plan, after listing its problems).
pub async fn run(command: PlanCommand) -> Result<u8, CommandError> {
    match command {
        PlanCommand::Check {
            file,
            online,
            timeout,
            json,
        } => {
            let online = online.then(|| online::OnlineOptions {
                timeout: std::time::Duration::from_secs(timeout),
                ..online::OnlineOptions::default()
            });
            check(&file, online, json).await
        }
        PlanCommand::Doc { file, out } => {
            let plan = plan::load(&file, CheckOptions { files: false })
                .map_err(|e| CommandError::message(e.to_string()))?;
            let runbook = plan::doc::render(&plan);
            match out {
                None => write_stdout(&runbook)?,
                Some(path) => crate::output::write_file(&path, &runbook)?,
            }
            Ok(exit::SUCCESS)
        }
    }
}

#[derive(Serialize)]
struct CheckJson<'a> {
    file: &'a Path,
    valid: bool,
    errors: usize,
    warnings: usize,
    problems: &'a [Problem],
}

async fn check(
    file: &Path,
    online: Option<online::OnlineOptions>,
    json: bool,
) -> Result<u8, CommandError> {
    let checked = plan::check_file(file, CheckOptions::default());
    let mut problems = checked.problems;
    if let (Some(options), Some(plan)) = (online, &checked.plan) {
        problems.extend(online::check_online(plan, options).await);
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count();
    if json {
        let report = CheckJson {
            file,
            valid: errors == 0,
            errors,
            warnings,
            problems: &problems,
        };
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CommandError::message(e.to_string()))?;
        write_stdout(&format!("{text}\n"))?;
    } else {
        let lines: String = problems.iter().map(|p| format!("{p}\n")).collect();
        write_stdout(&lines)?;
    }
    if errors > 0 {
        if !json {
            eprintln!(
                "{}: invalid: {errors} error{}{}",
                file.display(),
                plural(errors),
                warning_note(warnings)
            );
        }
        return Ok(exit::FAILURE);
    }
    if !json && let Some(plan) = &checked.plan {
        eprintln!(
            "{}: valid: {} stack{}, {} host{}, {} notifier{}{}{}",
            file.display(),
            plan.stacks.len(),
            plural(plan.stacks.len()),
            plan.hosts.len(),
            plural(plan.hosts.len()),
            plan.notifiers.len(),
            plural(plan.notifiers.len()),
            if online.is_some() {
                "; store, hosts and notifiers answer"
            } else {
                ""
            },
            warning_note(warnings)
        );
    }
    Ok(exit::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn warning_note(warnings: usize) -> String {
    match warnings {
        0 => String::new(),
        n => format!(" ({n} warning{})", plural(n)),
    }
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<(), CommandError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CommandError::message(format!("standard output: {e}")))
        }
        _ => Ok(()),
    }
}
