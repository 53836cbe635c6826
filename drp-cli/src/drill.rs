//! `drp drill run|revert|history`: parses, asks, calls drp-core's
//! [`run_drill`](drp_core::drill::run_drill), prints the drill's story as it happens and its
//! summary at the end, and writes its HTML report next to the plan.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use drp_core::drill::{self, DrillObserver, DrillOptions, DrillRecord};
use drp_core::exit;
use drp_core::plan::{self, CheckOptions, Plan, format_duration};
use tokio_util::sync::CancellationToken;

use crate::output::CommandError;
use crate::plan::write_stdout;

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run a drill: check the steady state, inject the scenario's fault (armed to revert
    /// itself on every target after the scenario's duration, even if drp dies), measure
    /// time to detect and recovery (automatic: drp recovers; surprise: the team does),
    /// revert, and report. Ctrl-C aborts and reverts. Exit 0 when the drill passed.
    Run(RunArgs),
    /// Revert a drill's fault by hand, on every host it hit (e.g. after its process was
    /// killed; the dead-man timers revert it anyway when they fire). Safe to repeat.
    Revert {
        /// The drill (see `drp drill history`).
        #[arg(value_name = "DRILL_ID")]
        drill: String,
        /// The recovery plan (its store holds the drill's record; its hosts are reached).
        #[arg(long, value_name = "FILE", default_value = "drp.toml")]
        plan: PathBuf,
    },
    /// Every drill of the plan, oldest first: date, scenario, time to detect, downtime,
    /// result.
    History {
        /// The recovery plan.
        #[arg(long, value_name = "FILE", default_value = "drp.toml")]
        plan: PathBuf,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recovery plan with the scenario.
    #[arg(long, value_name = "FILE", default_value = "drp.toml")]
    pub plan: PathBuf,
    /// The scenario (`[scenarios.NAME]` of the plan).
    #[arg(long, value_name = "NAME")]
    pub scenario: String,
    /// Do not ask for confirmation (required when there is no terminal to ask on).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the drill's record as JSON at the end instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Where to write the HTML report (default: PLAN_DIR/.drp/drills/DRILL_ID.html).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

pub async fn run(command: DrillCommand) -> Result<u8, CommandError> {
    match command {
        DrillCommand::Run(args) => run_drill(args).await,
        DrillCommand::Revert { drill, plan } => revert(&plan, &drill).await,
        DrillCommand::History { plan, json } => history(&plan, json).await,
    }
}

fn open(plan: &Plan) -> Result<Arc<dyn drp_core::backup::BackupStore>, CommandError> {
    Ok(drp_core::backup::open_store_with(
        &plan.storage.url,
        plan.storage.options.clone(),
    )?)
}

/// Prints the story as it happens.
struct Story;

impl DrillObserver for Story {
    fn started(&self, drill: &str) {
        let _ = write_stdout(&format!("drill {drill}\n"));
    }

    fn line(&self, time: jiff::Timestamp, what: &str) {
        let _ = write_stdout(&format!("{} {what}\n", time.strftime("%H:%M:%S")));
    }
}

async fn run_drill(args: RunArgs) -> Result<u8, CommandError> {
    let plan = plan::load(&args.plan, CheckOptions::default())
        .map_err(|e| CommandError::message(e.to_string()))?;
    let scenario = plan.scenarios.get(&args.scenario).ok_or_else(|| {
        CommandError::message(format!(
            "scenario {} is not in {} (it has: {})",
            args.scenario,
            args.plan.display(),
            plan.scenarios
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if !args.yes {
        confirm(&format!(
            "Drill {}: {} on {} (blast radius {}) for up to {}, {} recovery. Go on?",
            scenario.name,
            drp_core::provision::Fault::new(scenario.fault.clone(), "preview").describe(),
            scenario.targets,
            scenario.blast_radius,
            format_duration(scenario.duration),
            scenario.mode.as_str()
        ))?;
    }
    let store = open(&plan)?;
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("drp: interrupted: reverting the fault");
            on_interrupt.cancel();
        }
    });
    let observer: Arc<dyn DrillObserver> = if args.json {
        Arc::new(drill::NoObserver)
    } else {
        Arc::new(Story)
    };
    let plan = Arc::new(plan);
    let record = drill::run_drill(
        plan.clone(),
        store.clone(),
        DrillOptions::new(&args.scenario),
        observer,
        cancel,
    )
    .await
    .map_err(|e| CommandError::message(e.to_string()))?;
    let path = args
        .report
        .clone()
        .unwrap_or_else(|| default_report_path(&plan, &record.drill));
    let report = drill::report::load(&plan, store.as_ref(), &record.drill)
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    crate::output::write_file(&path, &drill::report::html(&report))?;
    if args.json {
        let text = serde_json::to_string_pretty(&record)
            .map_err(|e| CommandError::message(e.to_string()))?;
        write_stdout(&format!("{text}\n"))?;
    } else {
        let mut out = String::from("\n");
        for line in drill::report::summary_lines(&record) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&format!("report: {}\n", path.display()));
        write_stdout(&out)?;
    }
    Ok(if record.passed() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

/// `PLAN_DIR/.drp/drills/DRILL_ID.html`.
pub fn default_report_path(plan: &Plan, drill: &str) -> PathBuf {
    plan.dir
        .join(".drp")
        .join("drills")
        .join(format!("{drill}.html"))
}

/// Asks on the terminal; with no terminal, refuses and says how to go on.
fn confirm(question: &str) -> Result<(), CommandError> {
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::message(format!(
            "{question}\nthere is no terminal to confirm on: run with --yes to start the drill"
        )));
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CommandError::message(format!("reading the answer: {e}")))?;
    if matches!(line.trim(), "y" | "Y" | "yes" | "YES") {
        Ok(())
    } else {
        Err(CommandError::message("not confirmed: nothing was done"))
    }
}

async fn revert(plan_path: &Path, id: &str) -> Result<u8, CommandError> {
    let plan = plan::load(plan_path, CheckOptions { files: false })
        .map_err(|e| CommandError::message(e.to_string()))?;
    let store = open(&plan)?;
    let record = drill::revert_drill(store, &plan, id)
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    let hosts: Vec<&str> = record.targets.iter().map(|t| t.host.as_str()).collect();
    write_stdout(&format!(
        "drill {id}: {} reverted on {}\n",
        record.fault,
        hosts.join(", ")
    ))?;
    Ok(exit::SUCCESS)
}

async fn history(plan_path: &Path, json: bool) -> Result<u8, CommandError> {
    let plan = plan::load(plan_path, CheckOptions { files: false })
        .map_err(|e| CommandError::message(e.to_string()))?;
    let store = open(&plan)?;
    let (records, problems) = drill::history(store.as_ref(), Some(&plan.name))
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    for problem in &problems {
        eprintln!("drp: warning: {problem}");
    }
    let rows: Vec<drill::report::HistoryRow> =
        records.iter().map(drill::report::HistoryRow::of).collect();
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| CommandError::message(e.to_string()))?;
        write_stdout(&format!("{text}\n"))?;
        return Ok(exit::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no drills in {}", plan.storage.url);
        return Ok(exit::SUCCESS);
    }
    write_stdout(&history_table(&records))?;
    Ok(exit::SUCCESS)
}

fn history_table(records: &[DrillRecord]) -> String {
    let ms = |v: Option<u64>| v.map_or("-".to_string(), drp_core::report::short_duration);
    let mut out = format!(
        "{:<20} {:<28} {:<20} {:>14} {:>10} {:<11}\n",
        "DATE (UTC)", "DRILL", "SCENARIO", "TIME TO DETECT", "DOWNTIME", "RESULT"
    );
    for r in records {
        out.push_str(&format!(
            "{:<20} {:<28} {:<20} {:>14} {:>10} {:<11}\n",
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.drill,
            r.scenario,
            ms(r.time_to_detect_ms()),
            ms(r.downtime_ms()),
            r.verdict()
        ));
    }
    out
}
