//! The drill report: the record, the recovery run's own report (automatic mode), and the
//! trend of the scenario's drills — as Markdown, one self-contained HTML file, or JSON.

use std::fmt::Write as _;

use drp_backup::BackupStore;
use serde::Serialize;

use super::{DrillError, DrillRecord, history, load_record};
use crate::plan::Plan;
use crate::report::html::{STYLE, esc, gantt};
use crate::report::{ReportError, RunReport, short_duration};

/// One drill of the history, as the table and the trend show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    /// The drill.
    pub drill: String,
    /// When it started.
    pub date: jiff::Timestamp,
    /// Its scenario.
    pub scenario: String,
    /// T1 − T0.
    pub time_to_detect_ms: Option<u64>,
    /// T3 − T0.
    pub downtime_ms: Option<u64>,
    /// `PASS`, `FAIL`, `ABORTED`...
    pub verdict: String,
}

impl HistoryRow {
    /// The row of `record`.
    pub fn of(record: &DrillRecord) -> HistoryRow {
        HistoryRow {
            drill: record.drill.clone(),
            date: record.started_at,
            scenario: record.scenario.clone(),
            time_to_detect_ms: record.time_to_detect_ms(),
            downtime_ms: record.downtime_ms(),
            verdict: record.verdict().to_string(),
        }
    }
}

/// A drill's report.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// What the drill recorded.
    pub drill: DrillRecord,
    /// T1 − T0.
    pub time_to_detect_ms: Option<u64>,
    /// T3 − T0.
    pub downtime_ms: Option<u64>,
    /// `PASS`, `FAIL`...
    pub verdict: String,
    /// The reports of its recovery runs (drp's own, or the team's `drp recover` runs).
    pub recovery: Vec<RunReport>,
    /// Every drill of the same scenario, oldest first (this one included).
    pub history: Vec<HistoryRow>,
}

/// Reads drill `id` and what goes with it from `store`.
pub async fn load(
    plan: &Plan,
    store: &dyn BackupStore,
    id: &str,
) -> Result<DrillReport, DrillError> {
    let drill = load_record(store, id).await?;
    let mut recovery = Vec::new();
    for run in &drill.recovery_runs {
        match crate::report::load(plan, store, run, drill.marks.injected).await {
            Ok(report) => recovery.push(report),
            Err(ReportError::UnknownRun { .. }) => {}
            Err(e) => {
                return Err(DrillError::Record {
                    key: format!("recovery run {run}"),
                    reason: e.to_string(),
                });
            }
        }
    }
    let (records, _) = history(store, Some(&drill.plan)).await?;
    let history = records
        .iter()
        .filter(|r| r.scenario == drill.scenario)
        .map(HistoryRow::of)
        .collect();
    Ok(DrillReport {
        time_to_detect_ms: drill.time_to_detect_ms(),
        downtime_ms: drill.downtime_ms(),
        verdict: drill.verdict().to_string(),
        drill,
        recovery,
        history,
    })
}

fn ms(value: Option<u64>, none: &str) -> String {
    value.map_or_else(|| none.to_string(), short_duration)
}

fn time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn offset(record: &DrillRecord, t: jiff::Timestamp) -> String {
    match record.marks.injected {
        Some(t0) if t >= t0 => format!(
            "T0+{}",
            short_duration(
                std::time::Duration::try_from(t.duration_since(t0))
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            )
        ),
        _ => time(t),
    }
}

/// The moments, in order: (label, time, detail).
fn marks(record: &DrillRecord) -> Vec<(&'static str, Option<jiff::Timestamp>, String)> {
    let m = &record.marks;
    vec![
        ("T0 fault injected", m.injected, record.fault.clone()),
        (
            "T1 detected by drp's probes",
            m.detected_by_probe.as_ref().map(|d| d.time),
            m.detected_by_probe
                .as_ref()
                .map_or_else(String::new, |d| format!("{}: {}", d.source, d.detail)),
        ),
        (
            "T1 alert from the team's monitoring",
            m.detected_by_alert.as_ref().map(|d| d.time),
            m.detected_by_alert
                .as_ref()
                .map_or_else(String::new, |d| format!("{}: {}", d.source, d.detail)),
        ),
        (
            "T2 recovery started",
            m.recovery_started,
            record.recovery_runs.join(", "),
        ),
        ("T3 every stack healthy", m.healthy, String::new()),
        ("T4 fault reverted", m.reverted, String::new()),
    ]
}

/// The summary lines `drp drill run` prints at the end (and the Markdown report's top).
pub fn summary_lines(record: &DrillRecord) -> Vec<String> {
    let mut lines = vec![
        format!(
            "drill {} of scenario {}: {}",
            record.drill,
            record.scenario,
            record.verdict()
        ),
        format!(
            "  time to detect {}, downtime {}, fault in place {}",
            ms(record.time_to_detect_ms(), "(not detected)"),
            ms(record.downtime_ms(), "(not recovered)"),
            ms(record.fault_duration_ms(), "(not reverted)")
        ),
    ];
    for s in &record.stack_results {
        lines.push(format!(
            "  stack {}: RTO {}, RPO {}{}",
            s.stack,
            ms(s.rto_ms, "-"),
            ms(s.rpo_ms, "-"),
            s.healthy_on
                .as_ref()
                .map_or_else(String::new, |h| format!(", healthy on {h}"))
        ));
    }
    for c in record.checks.iter().filter(|c| !c.passed) {
        lines.push(format!(
            "  FAILED {}: expected {}, got {}",
            c.name, c.expected, c.actual
        ));
    }
    lines
}

/// The report as Markdown.
pub fn markdown(report: &DrillReport) -> String {
    let r = &report.drill;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Drill report: {} (scenario {}, plan {})\n",
        r.drill, r.scenario, r.plan
    );
    let _ = writeln!(out, "**{}**\n", report.verdict);
    if let Some(d) = &r.description {
        let _ = writeln!(out, "{d}\n");
    }
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| mode | {} |", r.mode.as_str());
    let _ = writeln!(out, "| fault | {} |", r.fault);
    let _ = writeln!(
        out,
        "| targets | {} of {} ({}, blast radius {}) |",
        r.targets
            .iter()
            .map(|t| t.host.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        r.candidates,
        r.targets_rule,
        r.blast_radius
    );
    let _ = writeln!(out, "| stacks | {} |", r.stacks.join(", "));
    let _ = writeln!(out, "| started | {} |", time(r.started_at));
    let _ = writeln!(
        out,
        "| time to detect | {} |",
        ms(report.time_to_detect_ms, "not detected")
    );
    let _ = writeln!(
        out,
        "| downtime | {} |",
        ms(report.downtime_ms, "not recovered")
    );
    if let Some(reason) = &r.abort_reason {
        let _ = writeln!(out, "| aborted | {reason} |");
    }
    let _ = writeln!(
        out,
        "\n## Expectations\n\n| check | expected | actual | |\n|---|---|---|---|"
    );
    for c in &r.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.name,
            c.expected,
            c.actual,
            if c.passed { "PASS" } else { "FAIL" }
        );
    }
    let _ = writeln!(
        out,
        "\n## Moments\n\n| moment | when | detail |\n|---|---|---|"
    );
    for (label, t, detail) in marks(r) {
        let _ = writeln!(
            out,
            "| {label} | {} | {} |",
            t.map_or("-".into(), |t| offset(r, t)),
            detail.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        out,
        "\n## Stacks\n\n| stack | RTO | RPO | healthy on | snapshot |\n|---|---|---|---|---|"
    );
    for s in &r.stack_results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            s.stack,
            ms(s.rto_ms, "-"),
            ms(s.rpo_ms, "-"),
            s.healthy_on.as_deref().unwrap_or("-"),
            s.snapshot.as_deref().unwrap_or("-")
        );
    }
    for run in &report.recovery {
        let _ = writeln!(out, "\n## Recovery run {}\n", run.run);
        let _ = writeln!(
            out,
            "| stack | step | attempts | started | took | status |\n|---|---|---|---|---|---|"
        );
        for step in &run.timeline {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                step.stack,
                step.step,
                step.attempts,
                offset(r, step.started),
                step.duration_ms().map_or("-".into(), short_duration),
                step.status.name()
            );
        }
    }
    let _ = writeln!(out, "\n## Notifications\n");
    if r.notifications.is_empty() {
        let _ = writeln!(out, "None sent.");
    }
    for n in &r.notifications {
        let _ = writeln!(
            out,
            "- {} {} through {} ({}){}",
            offset(r, n.time),
            n.event,
            n.notifier,
            n.audience.as_deref().unwrap_or("-"),
            n.error
                .as_ref()
                .map_or_else(String::new, |e| format!(": FAILED {e}"))
        );
    }
    let _ = writeln!(out, "\n## Deviations\n");
    if r.deviations.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for d in &r.deviations {
        let _ = writeln!(out, "- {d}");
    }
    let _ = writeln!(out, "\n## Story\n");
    for e in &r.timeline {
        let _ = writeln!(out, "- {} {}", time(e.time), e.what);
    }
    let _ = writeln!(out, "\n## History of scenario {}\n", r.scenario);
    let _ = writeln!(out, "{}", history_table(&report.history));
    out
}

/// The history as a Markdown table.
pub fn history_table(rows: &[HistoryRow]) -> String {
    let mut out = String::from(
        "| date | drill | scenario | time to detect | downtime | result |\n|---|---|---|---|---|---|\n",
    );
    for h in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            time(h.date),
            h.drill,
            h.scenario,
            ms(h.time_to_detect_ms, "-"),
            ms(h.downtime_ms, "-"),
            h.verdict
        );
    }
    out
}

/// The report as one self-contained HTML document.
pub fn html(report: &DrillReport) -> String {
    let r = &report.drill;
    let mut out = String::new();
    let title = format!("Drill report: {} (scenario {})", r.drill, r.scenario);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", esc(&title));
    let class = if r.passed() { "pass" } else { "fail" };
    let _ = writeln!(
        out,
        "<p class=\"result\"><span class=\"verdict {class}\">{}</span> time to detect {}, \
         downtime {}</p>",
        esc(&report.verdict),
        esc(&ms(report.time_to_detect_ms, "(not detected)")),
        esc(&ms(report.downtime_ms, "(not recovered)"))
    );
    let _ = writeln!(out, "<table class=\"summary\">");
    let rows = [
        ("plan", r.plan.clone()),
        ("mode", r.mode.as_str().to_string()),
        ("fault", r.fault.clone()),
        (
            "targets",
            format!(
                "{} of {} ({}, blast radius {})",
                r.targets
                    .iter()
                    .map(|t| t.host.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.candidates,
                r.targets_rule,
                r.blast_radius
            ),
        ),
        ("stacks", r.stacks.join(", ")),
        ("started", time(r.started_at)),
        ("aborted", r.abort_reason.clone().unwrap_or_default()),
    ];
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    let _ = writeln!(out, "</table>");

    let _ = writeln!(
        out,
        "<h2>Expectations</h2>\n<table><tr><th>check</th><th>expected</th><th>actual</th><th></th></tr>"
    );
    for c in &r.checks {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"verdict {}\">{}</span></td></tr>",
            esc(&c.name),
            esc(&c.expected),
            esc(&c.actual),
            if c.passed { "pass" } else { "fail" },
            if c.passed { "PASS" } else { "FAIL" }
        );
    }
    let _ = writeln!(out, "</table>");

    let _ = writeln!(
        out,
        "<h2>Moments</h2>\n<table><tr><th>moment</th><th>when</th><th>detail</th></tr>"
    );
    for (label, t, detail) in marks(r) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(label),
            esc(&t.map_or("-".into(), |t| offset(r, t))),
            esc(&detail)
        );
    }
    let _ = writeln!(out, "</table>");

    let _ = writeln!(
        out,
        "<h2>Stacks</h2>\n<table><tr><th>stack</th><th>RTO</th><th>RPO</th><th>healthy on</th><th>snapshot</th></tr>"
    );
    for s in &r.stack_results {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&s.stack),
            esc(&ms(s.rto_ms, "-")),
            esc(&ms(s.rpo_ms, "-")),
            esc(s.healthy_on.as_deref().unwrap_or("-")),
            esc(s.snapshot.as_deref().unwrap_or("-"))
        );
    }
    let _ = writeln!(out, "</table>");

    for run in &report.recovery {
        let _ = writeln!(
            out,
            "<h2>Recovery run <code>{}</code>: step timeline</h2>",
            esc(&run.run)
        );
        gantt(&mut out, run);
    }

    let _ = writeln!(out, "<h2>Notifications</h2>");
    if r.notifications.is_empty() {
        let _ = writeln!(out, "<p>None sent.</p>");
    } else {
        let _ = writeln!(out, "<ul>");
        for n in &r.notifications {
            let _ = writeln!(
                out,
                "<li>{} {} through {} ({}){}</li>",
                esc(&offset(r, n.time)),
                esc(&n.event),
                esc(&n.notifier),
                esc(n.audience.as_deref().unwrap_or("-")),
                esc(&n
                    .error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(": FAILED {e}")))
            );
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(out, "<h2>Deviations</h2>");
    if r.deviations.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
    } else {
        let _ = writeln!(out, "<ul class=\"failures\">");
        for d in &r.deviations {
            let _ = writeln!(out, "<li>{}</li>", esc(d));
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(
        out,
        "<h2>Downtime across drills of scenario {}</h2>",
        esc(&r.scenario)
    );
    trend(&mut out, &report.history, &r.drill);
    let _ = writeln!(
        out,
        "<table><tr><th>date</th><th>drill</th><th>time to detect</th><th>downtime</th><th>result</th></tr>"
    );
    for h in &report.history {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&time(h.date)),
            esc(&h.drill),
            esc(&ms(h.time_to_detect_ms, "-")),
            esc(&ms(h.downtime_ms, "-")),
            esc(&h.verdict)
        );
    }
    let _ = writeln!(out, "</table>");
    let _ = writeln!(out, "<h2>Story</h2>\n<ul>");
    for e in &r.timeline {
        let _ = writeln!(out, "<li>{} {}</li>", esc(&time(e.time)), esc(&e.what));
    }
    let _ = writeln!(out, "</ul>\n</body>\n</html>");
    out
}

/// A bar per drill, its height the downtime (hatched when it did not recover); the current
/// drill outlined.
fn trend(out: &mut String, rows: &[HistoryRow], current: &str) {
    const WIDTH: u64 = 600;
    const HEIGHT: u64 = 160;
    const TOP: u64 = 16;
    const BOTTOM: u64 = 30;
    if rows.is_empty() {
        return;
    }
    let max = rows
        .iter()
        .filter_map(|r| r.downtime_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    let slot = WIDTH / rows.len().max(8) as u64;
    let bar = (slot * 6 / 10).clamp(4, 60);
    let plot = HEIGHT - TOP - BOTTOM;
    let _ = writeln!(
        out,
        "<svg class=\"trend\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-size=\"11\">"
    );
    let _ = writeln!(
        out,
        "<line x1=\"0\" y1=\"{y}\" x2=\"{WIDTH}\" y2=\"{y}\" stroke=\"#d0d7de\"/>",
        y = HEIGHT - BOTTOM
    );
    for (i, row) in rows.iter().enumerate() {
        let x = i as u64 * slot + (slot - bar) / 2;
        let (h, fill) = match row.downtime_ms {
            Some(d) => ((d * plot / max).max(1), "#0969da"),
            None => (plot, "#cf222e"),
        };
        let y = HEIGHT - BOTTOM - h;
        let stroke = if row.drill == current {
            " stroke=\"#1f2328\" stroke-width=\"2\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\" fill=\"{fill}\"{stroke}>\
             <title>{}: {}</title></rect>",
            esc(&row.drill),
            esc(&ms(row.downtime_ms, "not recovered"))
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + bar / 2,
            y.saturating_sub(3).max(10),
            esc(&ms(row.downtime_ms, "-"))
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
            x + bar / 2,
            HEIGHT - BOTTOM + 14,
            esc(&row.date.strftime("%m-%d %H:%M").to_string())
        );
    }
    let _ = writeln!(out, "</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(drill: &str, downtime: Option<u64>) -> HistoryRow {
        HistoryRow {
            drill: drill.into(),
            date: "2026-11-29T10:00:00Z".parse().unwrap(),
            scenario: "s".into(),
            time_to_detect_ms: Some(1000),
            downtime_ms: downtime,
            verdict: "PASS".into(),
        }
    }

    #[test]
    fn the_trend_draws_one_bar_per_drill_scaled_to_the_longest_downtime() {
        let mut out = String::new();
        trend(
            &mut out,
            &[
                row("a", Some(60_000)),
                row("b", Some(30_000)),
                row("c", None),
            ],
            "b",
        );
        assert_eq!(out.matches("<rect").count(), 3);
        // 60 s is the full plot height (160 - 16 - 30 = 114), 30 s half of it.
        assert!(out.contains("height=\"114\" fill=\"#0969da\""), "{out}");
        assert!(
            out.contains("height=\"57\" fill=\"#0969da\" stroke"),
            "{out}"
        );
        // Not recovered: a full red bar.
        assert!(out.contains("height=\"114\" fill=\"#cf222e\""), "{out}");
    }
}
