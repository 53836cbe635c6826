//! `drp recover`: for now `--dry-run` only — what a recovery would run, on which hosts, from
//! which snapshots, changing nothing.

use std::path::PathBuf;

use clap::Args;
use drp_core::exit;
use drp_core::monitor::human_duration;
use drp_core::plan::dry_run::{DryRun, dry_run};
use drp_core::plan::{self, CheckOptions};

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
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RecoverArgs) -> Result<u8, CommandError> {
    if !args.dry_run {
        return Err(CommandError::message(
            "drp recover runs with --dry-run only, for now: running recoveries on real hosts \
             is being wired",
        ));
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
