//! `drp report RUN_ID` and `drp runs list`: a run's report (Markdown, HTML, JSON) and the
//! runs of a plan's store, read back from the journal.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use drp_core::exit;
use drp_core::plan::{self, CheckOptions, Plan};
use drp_core::report::{self, RunReport, RunState, runs};

use crate::output::CommandError;
use crate::plan::write_stdout;

/// The file commands that use a plan read when none is given.
const DEFAULT_PLAN: &str = "drp.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Markdown: tables of stacks, steps, failures, notifications.
    Md,
    /// One self-contained HTML file with an SVG Gantt chart of the steps.
    Html,
    /// The report as one JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run (see `drp runs list`), or `latest` for the newest.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// The recovery plan (its store holds the journal; its stacks the objectives).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PLAN)]
    pub plan: PathBuf,
    /// md, html or json.
    #[arg(long, value_name = "FORMAT", default_value = "md")]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// When the outage began, if before the run started: RTO and RPO count from it (e.g.
    /// 2026-11-29T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub incident_start: Option<jiff::Timestamp>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Every run in the plan's store, newest first: id, started, state (finished,
    /// interrupted, running), stacks recovered and failed.
    List {
        /// The recovery plan.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_PLAN)]
        plan: PathBuf,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `drp report`: exit 0 when the report was written, whatever the run's result (the report
/// says PASS or FAIL); 1 when it could not be (unknown run, unreadable store).
pub async fn run(args: ReportArgs) -> Result<u8, CommandError> {
    let plan = load_plan(&args.plan)?;
    let store = open(&plan)?;
    // A drill's id names its record; anything else is a recovery run.
    match drp_core::drill::report::load(&plan, store.as_ref(), &args.run).await {
        Ok(report) => return write_drill_report(&report, &args),
        Err(
            drp_core::drill::DrillError::NotFound(_) | drp_core::drill::DrillError::InvalidId(_),
        ) => {}
        Err(e) => return Err(CommandError::message(e.to_string())),
    }
    let report = report::load(&plan, store.as_ref(), &args.run, args.incident_start)
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    let text = render(&report, args.format)?;
    match &args.out {
        None => write_stdout(&text)?,
        Some(path) => {
            crate::output::write_file(path, &text)?;
            eprintln!(
                "run {}: {} report written to {} ({})",
                report.run,
                match args.format {
                    Format::Md => "Markdown",
                    Format::Html => "HTML",
                    Format::Json => "JSON",
                },
                path.display(),
                report.verdict_label()
            );
        }
    }
    Ok(exit::SUCCESS)
}

fn write_drill_report(
    report: &drp_core::drill::report::DrillReport,
    args: &ReportArgs,
) -> Result<u8, CommandError> {
    use drp_core::drill::report as drill_report;
    let text = match args.format {
        Format::Md => drill_report::markdown(report),
        Format::Html => drill_report::html(report),
        Format::Json => {
            let text = serde_json::to_string_pretty(report)
                .map_err(|e| CommandError::message(e.to_string()))?;
            format!("{text}\n")
        }
    };
    match &args.out {
        None => write_stdout(&text)?,
        Some(path) => {
            crate::output::write_file(path, &text)?;
            eprintln!(
                "drill {}: report written to {} ({})",
                report.drill.drill,
                path.display(),
                report.verdict
            );
        }
    }
    Ok(exit::SUCCESS)
}

fn render(report: &RunReport, format: Format) -> Result<String, CommandError> {
    Ok(match format {
        Format::Md => report::markdown::render(report),
        Format::Html => report::html::render(report),
        Format::Json => {
            let text = serde_json::to_string_pretty(report)
                .map_err(|e| CommandError::message(e.to_string()))?;
            format!("{text}\n")
        }
    })
}

pub async fn run_runs(command: RunsCommand) -> Result<u8, CommandError> {
    match command {
        RunsCommand::List { plan, json } => {
            let plan = load_plan(&plan)?;
            let store = open(&plan)?;
            let listed = runs::list(store.as_ref())
                .await
                .map_err(|e| CommandError::message(e.to_string()))?;
            if json {
                let text = serde_json::to_string_pretty(&listed)
                    .map_err(|e| CommandError::message(e.to_string()))?;
                write_stdout(&format!("{text}\n"))?;
                return Ok(exit::SUCCESS);
            }
            if listed.is_empty() {
                eprintln!("no runs in {}", plan.storage.url);
                return Ok(exit::SUCCESS);
            }
            let mut out = format!(
                "{:<28} {:<20} {:<12} {:>9} {:>6} {:>7} {:>11}\n",
                "RUN", "STARTED (UTC)", "STATE", "RECOVERED", "FAILED", "SKIPPED", "INTERRUPTED"
            );
            for run in &listed {
                let state = match run.state {
                    RunState::Finished => "finished",
                    RunState::Running => "running",
                    RunState::Interrupted => "interrupted",
                };
                out.push_str(&format!(
                    "{:<28} {:<20} {:<12} {:>9} {:>6} {:>7} {:>11}\n",
                    run.run,
                    run.started
                        .map_or("-".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string()),
                    state,
                    format!("{}/{}", run.recovered, run.stacks),
                    run.failed,
                    run.skipped,
                    run.interrupted
                ));
            }
            write_stdout(&out)?;
            Ok(exit::SUCCESS)
        }
    }
}

/// Reports need the plan's store and objectives, not its key files.
fn load_plan(path: &std::path::Path) -> Result<Plan, CommandError> {
    plan::load(path, CheckOptions { files: false })
        .map_err(|e| CommandError::message(e.to_string()))
}

fn open(plan: &Plan) -> Result<std::sync::Arc<dyn drp_core::backup::BackupStore>, CommandError> {
    Ok(drp_core::backup::open_store_with(
        &plan.storage.url,
        plan.storage.options.clone(),
    )?)
}
