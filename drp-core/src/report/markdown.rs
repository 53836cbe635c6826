//! The report in Markdown: summary, stacks against their objectives, the timeline as a
//! table, failures, notifications.

use std::fmt::Write as _;

use super::{Measure, RunReport, RunState, short_duration};

/// Renders `report` as Markdown.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Recovery report: run {} (plan {})\n",
        report.run,
        cell(&report.plan)
    );
    let _ = writeln!(
        out,
        "**Result: {}** — {}\n",
        report.verdict_label(),
        headline(report)
    );
    let _ = writeln!(out, "| | |\n| --- | --- |");
    let _ = writeln!(out, "| run | `{}` |", report.run);
    let _ = writeln!(out, "| state | {} |", report.state.name());
    let _ = writeln!(out, "| started | {} |", time(report.started));
    if let Some(ended) = report.ended {
        let _ = writeln!(
            out,
            "| ended | {} (after {}) |",
            time(ended),
            short_duration(super::millis_between(report.started, ended))
        );
    }
    let _ = writeln!(
        out,
        "| incident start | {}{} |",
        time(report.incident_start),
        if report.incident_start_given {
            ""
        } else {
            " (the run's start)"
        }
    );
    if report.attempts > 1 {
        let _ = writeln!(out, "| resumed | {} times |", report.attempts - 1);
    }
    let _ = writeln!(out, "| RTO (longest) | {} |", report.overall_rto());
    let _ = writeln!(
        out,
        "| RPO (largest) | {} |",
        report.rpo_ms.map_or("-".into(), short_duration)
    );
    if report.plan_changed {
        let _ = writeln!(
            out,
            "\nThe plan changed since this run: objectives are the plan's as it is now."
        );
    }

    let _ = writeln!(out, "\n## Stacks\n");
    let _ = writeln!(
        out,
        "| stack | customer | outcome | RTO | RTO objective | RTO | RPO | RPO objective | RPO | snapshot |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | --- | --- |"
    );
    for stack in &report.stacks {
        let m = stack;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&stack.name),
            cell(stack.customer.as_deref().unwrap_or("-")),
            stack.outcome,
            actual(&m.rto),
            objective(&m.rto),
            m.rto.verdict.as_str(),
            actual(&m.rpo),
            objective(&m.rpo),
            m.rpo.verdict.as_str(),
            m.snapshot
                .as_deref()
                .map_or("-".to_string(), |s| format!("`{s}`"))
        );
    }

    let _ = writeln!(out, "\n## Timeline\n");
    if report.timeline.is_empty() {
        let _ = writeln!(out, "No step started.");
    } else {
        let origin = report.origin();
        let _ = writeln!(
            out,
            "| stack | step | start | duration | attempts | outcome | detail |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | --- | --- |");
        for step in &report.timeline {
            let detail = step
                .error
                .as_deref()
                .or(step.summary.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                out,
                "| {} | {} | +{} | {} | {} | {}{} | {} |",
                cell(&step.stack),
                cell(&step.step),
                short_duration(super::millis_between(origin, step.started)),
                step.duration_ms().map_or("-".into(), short_duration),
                step.attempts,
                step.status.name(),
                if step.reused { " (reused)" } else { "" },
                cell(detail)
            );
        }
    }

    let _ = writeln!(out, "\n## Failures\n");
    if report.failures.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for failure in &report.failures {
        let what = match (&failure.step, failure.attempt) {
            (Some(step), Some(attempt)) => format!("{step}, attempt {attempt}"),
            (Some(step), None) => step.clone(),
            (None, _) => "stack".to_string(),
        };
        let _ = writeln!(
            out,
            "- {} **{}** ({what}{}{}): {}",
            time(failure.time),
            cell(&failure.stack),
            if failure.timed_out { ", timed out" } else { "" },
            if failure.retried { ", retried" } else { "" },
            one_line(&failure.message)
        );
    }

    let _ = writeln!(out, "\n## Notifications\n");
    if report.notifications.is_empty() {
        let _ = writeln!(out, "None sent.");
    } else {
        let _ = writeln!(out, "| stack | step | time | status | detail |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
        for n in &report.notifications {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&n.stack),
                cell(&n.step),
                time(n.time),
                n.status,
                cell(&n.detail)
            );
        }
    }
    out
}

/// One sentence: how many stacks recovered, and whether the objectives were met.
pub fn headline(report: &RunReport) -> String {
    let total = report.stacks.len();
    let recovered = report
        .stacks
        .iter()
        .filter(|s| s.outcome == "recovered")
        .count();
    let missed = report
        .stacks
        .iter()
        .filter(|s| !s.passed() && s.outcome == "recovered")
        .count();
    let state = match report.state {
        RunState::Finished => String::new(),
        RunState::Running => " The run is still running.".into(),
        RunState::Interrupted => {
            " The run was interrupted; drp recover --resume continues it.".into()
        }
    };
    let objectives = match missed {
        0 if recovered == 0 => String::new(),
        0 if recovered == total => "; every objective met".to_string(),
        0 => "; the recovered stacks met their objectives".to_string(),
        n => format!("; {n} missed an objective"),
    };
    format!("{recovered} of {total} stacks recovered{objectives}.{state}")
}

fn actual(m: &Measure) -> String {
    m.actual_ms.map_or("-".into(), short_duration)
}

fn objective(m: &Measure) -> String {
    m.objective_ms.map_or("-".into(), short_duration)
}

fn time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Text safe in a table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
