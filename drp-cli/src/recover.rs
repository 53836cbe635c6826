//! `drp recover`: parses, calls drp-core's [`recover`](drp_core::recover::recover) (or its
//! dry run), renders the events as they come — plain lines (above a live board on a
//! terminal), or one JSON object per line with `--json` — and the measurements at the end.
//! Exit 0 when every stack recovered.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use clap::Args;
use drp_core::executor::measure::RunMeasurements;
use drp_core::executor::{Event, EventKind, EventSink, SinkError, StackOutcome, StepOutcome};
use drp_core::exit;
use drp_core::monitor::human_duration;
use drp_core::plan::dry_run::{DryRun, dry_run};
use drp_core::plan::{self, CheckOptions};
use drp_core::recover::{ApproveAll, Approver, RecoverOptions, Recovery, recover};

use crate::output::{CommandError, human_bytes};
use crate::plan::write_stdout;

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The recovery plan.
    #[arg(long, value_name = "FILE", default_value = "drp.toml")]
    pub plan: PathBuf,
    /// Recover only this stack (repeatable; default: every stack). Stacks it depends on that
    /// are not selected are taken to be up.
    #[arg(long = "stack", value_name = "NAME")]
    pub stacks: Vec<String>,
    /// Show what would run, on which hosts, from which snapshots; change nothing. Exit
    /// status 1 if a stack has no usable snapshot.
    #[arg(long)]
    pub dry_run: bool,
    /// Use the newest snapshots taken at or before this time (e.g. 2026-11-29T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub at: Option<jiff::Timestamp>,
    /// JSON: with --dry-run one object; otherwise the event stream, one object per line
    /// (the journal's events, then the measurements).
    #[arg(long)]
    pub json: bool,
    /// Continue run RUN_ID (killed, or stopped): finished steps are not run again. Takes
    /// over the plan's lock only if that same run holds it.
    #[arg(long, value_name = "RUN_ID", conflicts_with = "dry_run")]
    pub resume: Option<String>,
    /// When the outage began (RTO and RPO are measured from it; default: the run's start).
    #[arg(long, value_name = "TIME", conflicts_with = "dry_run")]
    pub incident_start: Option<jiff::Timestamp>,
    /// Approve every approval gate in advance (without it, gates ask on the terminal; with
    /// no terminal, a gate fails its stack).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Break the plan's lock (only once you know the run holding it is dead), say whose it
    /// was, and exit. Recovers nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "resume"])]
    pub break_lock: bool,
}

pub async fn run(args: RecoverArgs) -> Result<u8, CommandError> {
    if args.break_lock {
        return break_lock(&args).await;
    }
    if !args.dry_run {
        return run_recovery(args).await;
    }
    // The preview needs the store and the trusted signers, not the secret keys.
    let plan = plan::load(&args.plan, CheckOptions { files: false })
        .map_err(|e| CommandError::message(e.to_string()))?;
    let store = drp_core::backup::open_store_with(&plan.storage.url, plan.storage.options.clone())?;
    let preview = dry_run(&plan, store, &args.stacks, args.at)
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&preview)
            .map_err(|e| CommandError::message(e.to_string()))?;
        write_stdout(&format!("{text}\n"))?;
    } else {
        write_stdout(&render(&preview))?;
    }
    Ok(if preview.ready() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

fn render(preview: &DryRun) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let stacks: usize = preview.waves.iter().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "Dry run of plan {}: nothing is changed. {stacks} stack{} from {} into datacenter {}, \
         up to {} at once{}.",
        preview.plan,
        if stacks == 1 { "" } else { "s" },
        preview.store,
        preview.target_datacenter,
        preview.parallelism,
        preview
            .at
            .map(|at| format!(", snapshots at or before {at}"))
            .unwrap_or_default()
    );
    for (i, wave) in preview.waves.iter().enumerate() {
        let _ = writeln!(out, "\nwave {}", i + 1);
        for stack in wave {
            let _ = writeln!(out, "  {} (customer {})", stack.name, stack.customer);
            match (&stack.snapshot, &stack.no_snapshot) {
                (Some(s), _) => {
                    let sources: Vec<String> = s
                        .sources
                        .iter()
                        .map(|(name, bytes)| format!("{name} {}", human_bytes(*bytes)))
                        .collect();
                    let _ = writeln!(
                        out,
                        "    snapshot {} of {}, {} old{}{}: {}",
                        s.id,
                        s.time.strftime("%Y-%m-%d %H:%M:%S UTC"),
                        human_duration(std::time::Duration::from_millis(s.age_ms)),
                        if s.exceeds_rpo {
                            ", OLDER THAN THE RPO"
                        } else {
                            ""
                        },
                        if s.signed { ", signed" } else { "" },
                        sources.join(", ")
                    );
                }
                (None, reason) => {
                    let _ = writeln!(
                        out,
                        "    NO SNAPSHOT: {}",
                        reason.as_deref().unwrap_or("none usable")
                    );
                }
            }
            for passed in &stack.passed_over {
                let _ = writeln!(out, "    passed over {}: {}", passed.id, passed.reason);
            }
            for (n, step) in stack.steps.iter().enumerate() {
                let mut limits = Vec::new();
                if let Some(t) = &step.timeout {
                    limits.push(format!("timeout {t}"));
                }
                if step.retries > 0 {
                    limits.push(format!("{} retries", step.retries));
                }
                let limits = if limits.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", limits.join(", "))
                };
                let _ = writeln!(out, "    {}. {}: {}{limits}", n + 1, step.name, step.runs);
            }
        }
    }
    out
}

async fn break_lock(args: &RecoverArgs) -> Result<u8, CommandError> {
    let plan = plan::load(&args.plan, CheckOptions { files: false })
        .map_err(|e| CommandError::message(e.to_string()))?;
    let store = drp_core::backup::open_store_with(&plan.storage.url, plan.storage.options.clone())?;
    let broken = drp_core::recover::break_lock(store.as_ref(), None)
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    match broken {
        Some(held) => write_stdout(&format!(
            "broke the lock of run {} ({}, pid {}, since {})\n",
            held.run_id, held.holder, held.pid, held.acquired_at
        ))?,
        None => write_stdout("the plan was not locked\n")?,
    }
    Ok(exit::SUCCESS)
}

async fn run_recovery(args: RecoverArgs) -> Result<u8, CommandError> {
    let plan = plan::load(&args.plan, CheckOptions::default())
        .map_err(|e| CommandError::message(e.to_string()))?;
    let store = drp_core::backup::open_store_with(&plan.storage.url, plan.storage.options.clone())?;
    let approver: Arc<dyn Approver> = if args.yes {
        Arc::new(ApproveAll)
    } else {
        Arc::new(TerminalApprover)
    };
    // A live board only for a person at a terminal; pipes and --json get plain records.
    let board =
        (!args.json && std::io::stdout().is_terminal()).then(|| Mutex::new(Board::default()));
    let printer: Arc<Printer> = Arc::new(Printer {
        json: args.json,
        board,
    });
    let options = RecoverOptions {
        stacks: args.stacks,
        resume: args.resume,
        at: args.at,
        incident_start: args.incident_start,
        ..RecoverOptions::default()
    };
    let recovery = recover(Arc::new(plan), store, options, approver, printer.clone())
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    if let Some(board) = &printer.board {
        let mut board = board.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write_stdout(&board.erase());
    }
    if !args.json {
        write_stdout(&render_measurements(&recovery))?;
    }
    Ok(if recovery.all_recovered() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

/// Asks on the terminal; with no terminal, refuses with a message saying how to approve.
struct TerminalApprover;

#[async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, stack: &str, question: &str) -> Result<(), String> {
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "stack {stack} needs an operator's approval ({question}) and there is no \
                 terminal to ask on: run drp recover --yes to approve in advance"
            ));
        }
        let prompt = format!("{question} [y/N] ");
        let answer = tokio::task::spawn_blocking(move || {
            let mut err = std::io::stderr();
            let _ = err.write_all(prompt.as_bytes());
            let _ = err.flush();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading the answer: {e}"))?;
        if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            Ok(())
        } else {
            Err(format!("the operator did not approve: {question}"))
        }
    }
}

/// Renders events as they are journaled: one line each, or one JSON object each; on a
/// terminal the lines scroll above a live [`Board`].
struct Printer {
    json: bool,
    board: Option<Mutex<Board>>,
}

#[async_trait]
impl EventSink for Printer {
    async fn record(&self, event: &Event) -> Result<(), SinkError> {
        let line = if self.json {
            Some(serde_json::to_string(event).map_err(|e| SinkError(e.to_string()))?)
        } else {
            describe(event).map(|line| format!("{} {line}", event.time.strftime("%H:%M:%S")))
        };
        let mut out = String::new();
        // The board's lock is held until the text is written, so that a progress redraw
        // cannot land between this erase-and-draw and the screen.
        let mut board = self
            .board
            .as_ref()
            .map(|board| board.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(board) = &mut board {
            out.push_str(&board.erase());
        }
        if let Some(line) = &line {
            out.push_str(line);
            out.push('\n');
        }
        if let Some(board) = &mut board {
            board.apply(event);
            out.push_str(&board.draw());
        }
        // The terminal is not the record: a closed stdout must not stop the run.
        let _ = write_stdout(&out);
        drop(board);
        Ok(())
    }

    fn progress(&self, stack: &str, _step: &str, bytes: u64) {
        let Some(board) = &self.board else { return };
        let mut board = board.lock().unwrap_or_else(|e| e.into_inner());
        board.set_bytes(stack, bytes);
        // Bytes arrive often: redraw at most every 100 ms.
        if board
            .last_draw
            .is_none_or(|at| at.elapsed() >= BOARD_REDRAW)
        {
            let text = format!("{}{}", board.erase(), board.draw());
            let _ = write_stdout(&text);
        }
    }
}

/// How often byte progress may redraw the board.
const BOARD_REDRAW: std::time::Duration = std::time::Duration::from_millis(100);
/// Width of the board's bar, in characters.
const BAR_WIDTH: usize = 30;

/// The live part of the terminal display, below the scrolling event lines: a bar of the
/// stacks that finished out of all, then one line per stack in progress with its step,
/// attempt and bytes so far. Redrawn in place (cursor up, clear to the end of the screen).
#[derive(Debug, Default)]
struct Board {
    total: usize,
    finished: usize,
    failed: usize,
    /// Stack → (step, attempt, bytes so far), for the stacks in progress.
    running: BTreeMap<String, (String, u32, u64)>,
    /// Lines the last draw left on the screen.
    drawn: usize,
    last_draw: Option<std::time::Instant>,
}

impl Board {
    fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { stacks, .. } => self.total = stacks.len(),
            EventKind::StackStarted { stack } => {
                self.running
                    .insert(stack.clone(), ("starting".to_string(), 1, 0));
            }
            EventKind::StepStarted {
                stack,
                step,
                attempt,
            } => {
                self.running
                    .insert(stack.clone(), (step.clone(), *attempt, 0));
            }
            EventKind::StackFinished { stack, outcome } => {
                self.running.remove(stack);
                self.finished += 1;
                if !matches!(outcome, StackOutcome::Recovered) {
                    self.failed += 1;
                }
            }
            EventKind::RunFinished { .. } => self.running.clear(),
            _ => {}
        }
    }

    fn set_bytes(&mut self, stack: &str, bytes: u64) {
        if let Some(entry) = self.running.get_mut(stack) {
            entry.2 = bytes;
        }
    }

    /// The escape sequence that removes the last draw (nothing if nothing is drawn).
    fn erase(&mut self) -> String {
        let lines = std::mem::take(&mut self.drawn);
        if lines == 0 {
            String::new()
        } else {
            format!("\x1b[{lines}F\x1b[J")
        }
    }

    /// The board's text; remembers how many lines it takes.
    fn draw(&mut self) -> String {
        self.last_draw = Some(std::time::Instant::now());
        if self.total == 0 {
            return String::new();
        }
        let filled = BAR_WIDTH * self.finished.min(self.total) / self.total;
        let mut text = format!(
            "[{}{}] {}/{} stacks finished",
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            self.finished,
            self.total
        );
        if self.failed > 0 {
            text.push_str(&format!(" ({} not recovered)", self.failed));
        }
        text.push('\n');
        for (stack, (step, attempt, bytes)) in &self.running {
            text.push_str(&format!("  {stack}: {step}"));
            if *attempt > 1 {
                text.push_str(&format!(" (attempt {attempt})"));
            }
            if *bytes > 0 {
                text.push_str(&format!(", {}", human_bytes(*bytes)));
            }
            text.push('\n');
        }
        self.drawn = 1 + self.running.len();
        text
    }
}

fn describe(event: &Event) -> Option<String> {
    Some(match &event.kind {
        EventKind::RunStarted {
            plan,
            stacks,
            parallelism,
            resumed,
            ..
        } => format!(
            "{} run {} of plan {plan}: {} stack{}, up to {parallelism} at once",
            if *resumed { "resuming" } else { "starting" },
            event.run,
            stacks.len(),
            if stacks.len() == 1 { "" } else { "s" }
        ),
        EventKind::StackStarted { stack } => format!("{stack}: started"),
        EventKind::StepStarted {
            stack,
            step,
            attempt,
        } => {
            if *attempt == 1 {
                format!("{stack}: {step} ...")
            } else {
                format!("{stack}: {step} ... (attempt {attempt})")
            }
        }
        EventKind::StepNote {
            stack,
            step,
            message,
        } => format!("{stack}: {step}: {message}"),
        EventKind::StepFinished {
            stack,
            step,
            outcome,
            ..
        } => match outcome {
            StepOutcome::Succeeded {
                summary,
                duration_ms,
                bytes,
                ..
            } => {
                let mut line = format!(
                    "{stack}: {step} done in {}",
                    human_duration(std::time::Duration::from_millis(*duration_ms))
                );
                if let Some(bytes) = bytes {
                    line.push_str(&format!(", {}", human_bytes(*bytes)));
                }
                if let Some(summary) = summary {
                    line.push_str(&format!(": {summary}"));
                }
                line
            }
            StepOutcome::Failed {
                error, retry_in_ms, ..
            } => match retry_in_ms {
                Some(ms) => format!(
                    "{stack}: {step} FAILED: {error} (retry in {})",
                    human_duration(std::time::Duration::from_millis(*ms))
                ),
                None => format!("{stack}: {step} FAILED: {error}"),
            },
        },
        EventKind::StepReused { stack, step } => {
            format!("{stack}: {step} already done (earlier attempt)")
        }
        EventKind::StackFinished { stack, outcome } => match outcome {
            StackOutcome::Recovered => format!("{stack}: RECOVERED"),
            StackOutcome::Failed { step, error } => {
                format!("{stack}: FAILED at {step}: {error}")
            }
            StackOutcome::Skipped { reason } => format!("{stack}: skipped: {reason}"),
            StackOutcome::Interrupted { reason } => format!("{stack}: interrupted: {reason}"),
        },
        EventKind::RunFinished {
            recovered,
            failed,
            skipped,
            interrupted,
        } => format!(
            "run {} finished: {recovered} recovered, {failed} failed, {skipped} skipped, \
             {interrupted} interrupted",
            event.run
        ),
        _ => return None,
    })
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(
        || "-".to_string(),
        |ms| human_duration(std::time::Duration::from_millis(ms)).to_string(),
    )
}

fn render_measurements(recovery: &Recovery) -> String {
    use std::fmt::Write as _;
    let m: &RunMeasurements = &recovery.measurements;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nrun {}: measured from the incident start {}{}",
        recovery.summary.run_id,
        m.incident_start,
        if m.incident_start_given {
            ""
        } else {
            " (the run's start)"
        }
    );
    let _ = writeln!(
        out,
        "{:<20} {:<12} {:>10} {:>10} {:<5} {:>10} {:>10} {:<5}",
        "stack", "outcome", "RTO", "objective", "", "RPO", "objective", ""
    );
    for s in &m.stacks {
        let _ = writeln!(
            out,
            "{:<20} {:<12} {:>10} {:>10} {:<5} {:>10} {:>10} {:<5}",
            s.stack,
            s.outcome,
            ms(s.rto_ms),
            ms(s.rto_objective_ms),
            s.rto_verdict.as_str(),
            ms(s.rpo_ms),
            ms(s.rpo_objective_ms),
            s.rpo_verdict.as_str()
        );
    }
    let _ = writeln!(
        out,
        "overall: RTO {}, RPO {}: {}\njournal: {}",
        ms(m.rto_ms),
        ms(m.rpo_ms),
        if m.passed { "PASS" } else { "FAIL" },
        recovery.local_journal.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            run: "r1".into(),
            seq: 1,
            time: jiff::Timestamp::UNIX_EPOCH,
            kind,
        }
    }

    fn started(stacks: &[&str]) -> EventKind {
        EventKind::RunStarted {
            plan: "p".into(),
            plan_digest: "d".into(),
            stacks: stacks.iter().map(|s| s.to_string()).collect(),
            parallelism: 2,
            fail_fast: false,
            resumed: false,
        }
    }

    #[test]
    fn the_board_shows_finished_stacks_and_each_running_step_with_its_bytes() {
        let mut board = Board::default();
        board.apply(&event(started(&["db", "web", "crm"])));
        board.apply(&event(EventKind::StackStarted { stack: "db".into() }));
        board.apply(&event(EventKind::StepStarted {
            stack: "db".into(),
            step: "restore:dump".into(),
            attempt: 2,
        }));
        board.set_bytes("db", 3 * 1024 * 1024);
        board.apply(&event(EventKind::StackStarted {
            stack: "crm".into(),
        }));
        board.apply(&event(EventKind::StackFinished {
            stack: "crm".into(),
            outcome: StackOutcome::Failed {
                step: "start".into(),
                error: "exit 1".into(),
            },
        }));
        let text = board.draw();
        assert_eq!(
            text,
            format!(
                "[{}{}] 1/3 stacks finished (1 not recovered)\n  db: restore:dump (attempt 2), {}\n",
                "#".repeat(10),
                "-".repeat(20),
                human_bytes(3 * 1024 * 1024)
            )
        );
        // The next draw first removes exactly the two lines this one printed.
        assert_eq!(board.erase(), "\x1b[2F\x1b[J");
        assert_eq!(board.erase(), "", "nothing is drawn any more");
    }

    #[test]
    fn a_finished_run_leaves_a_full_bar_and_no_running_lines() {
        let mut board = Board::default();
        board.apply(&event(started(&["db"])));
        board.apply(&event(EventKind::StackStarted { stack: "db".into() }));
        board.apply(&event(EventKind::StackFinished {
            stack: "db".into(),
            outcome: StackOutcome::Recovered,
        }));
        assert_eq!(
            board.draw(),
            format!("[{}] 1/1 stacks finished\n", "#".repeat(BAR_WIDTH))
        );
    }
}
