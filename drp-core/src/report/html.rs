//! The report as one self-contained HTML file: inline CSS, an inline SVG Gantt chart of
//! every step per stack (one bar per step, coloured by how it ended, on a time axis from
//! the incident start), the stacks against their objectives, failures, notifications.
//! Nothing is fetched: it opens from a mail attachment or an air-gapped laptop.
//!
//! The markup is well-formed XML (void elements self-closed, every attribute quoted, all
//! text escaped), so tools can parse it as well as browsers.

use std::fmt::Write as _;

use super::{Measure, RunReport, StepStatus, millis_between, short_duration};
use crate::executor::measure::Verdict;

/// Width of the chart (SVG user units = CSS pixels).
const CHART_WIDTH: u64 = 1000;
/// Width of the labels column.
const LABEL_WIDTH: u64 = 250;
/// Right margin, so the last tick label fits.
const RIGHT_MARGIN: u64 = 30;
const ROW_HEIGHT: u64 = 22;
const BAR_HEIGHT: u64 = 14;
/// Height of the time axis above the rows.
const AXIS_HEIGHT: u64 = 28;

pub(crate) const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em; color: #1f2328; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-weight: bold; padding: 0.1em 0.5em; border-radius: 0.3em; color: #fff; }
.verdict.pass { background: #1a7f37; }
.verdict.fail { background: #cf222e; }
.result { font-size: 1.1em; margin: 0.6em 0 1em; }
code { font-size: 0.95em; }
.failures li { margin-bottom: 0.3em; }
svg.gantt { max-width: 100%; height: auto; font-size: 11px; }
svg .axis line { stroke: #d0d7de; }
svg .axis text { fill: #57606a; }
svg .stack-label { font-weight: bold; fill: #1f2328; }
svg .step-label { fill: #24292f; }
svg .bar.succeeded { fill: #2da44e; }
svg .bar.retried { fill: #d4a72c; }
svg .bar.failed { fill: #cf222e; }
svg .bar.unfinished { fill: #8c959f; }
svg .healthy { fill: #0969da; }
.legend span { display: inline-block; margin-right: 1.2em; font-size: 0.85em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: -0.1em; }
";

/// Renders `report` as one HTML document.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let title = format!("Recovery report: run {} (plan {})", report.run, report.plan);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(
        out,
        "<p class=\"result\">{} {}</p>",
        badge(if report.passed {
            Verdict::Pass
        } else {
            Verdict::Fail
        }),
        esc(&super::markdown::headline(report))
    );
    summary(&mut out, report);
    stacks(&mut out, report);
    let _ = writeln!(out, "<h2>Timeline</h2>");
    gantt(&mut out, report);
    failures(&mut out, report);
    notifications(&mut out, report);
    let _ = writeln!(out, "</body>\n</html>");
    out
}

fn summary(out: &mut String, report: &RunReport) {
    let _ = writeln!(out, "<table class=\"summary\">");
    let mut row = |key: &str, value: String| {
        let _ = writeln!(out, "<tr><th>{}</th><td>{value}</td></tr>", esc(key));
    };
    row("run", format!("<code>{}</code>", esc(&report.run)));
    row("state", esc(report.state.name()));
    row("started", esc(&time(report.started)));
    if let Some(ended) = report.ended {
        row(
            "ended",
            esc(&format!(
                "{} (after {})",
                time(ended),
                short_duration(millis_between(report.started, ended))
            )),
        );
    }
    row(
        "incident start",
        esc(&format!(
            "{}{}",
            time(report.incident_start),
            if report.incident_start_given {
                ""
            } else {
                " (the run's start)"
            }
        )),
    );
    if report.attempts > 1 {
        row("resumed", format!("{} times", report.attempts - 1));
    }
    row("RTO (longest)", esc(&report.overall_rto()));
    row(
        "RPO (largest)",
        esc(&report.rpo_ms.map_or("-".into(), short_duration)),
    );
    let _ = writeln!(out, "</table>");
    if report.plan_changed {
        let _ = writeln!(
            out,
            "<p>The plan changed since this run: objectives are the plan's as it is now.</p>"
        );
    }
}

fn stacks(out: &mut String, report: &RunReport) {
    let _ = writeln!(out, "<h2>Stacks</h2>\n<table class=\"stacks\">");
    let _ = writeln!(
        out,
        "<tr><th>stack</th><th>customer</th><th>outcome</th><th>RTO</th><th>objective</th>\
         <th></th><th>RPO</th><th>objective</th><th></th><th>snapshot</th></tr>"
    );
    for stack in &report.stacks {
        let m = stack;
        let outcome = match &stack.reason {
            Some(reason) => format!("{}: {}", stack.outcome, reason),
            None => stack.outcome.clone(),
        };
        let _ = writeln!(
            out,
            "<tr class=\"stack\" data-stack=\"{}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&stack.name),
            esc(&stack.name),
            esc(stack.customer.as_deref().unwrap_or("-")),
            esc(&outcome),
            esc(&actual(&m.rto)),
            esc(&objective(&m.rto)),
            badge(m.rto.verdict),
            esc(&actual(&m.rpo)),
            esc(&objective(&m.rpo)),
            badge(m.rpo.verdict),
            m.snapshot
                .as_deref()
                .map_or("-".to_string(), |s| format!("<code>{}</code>", esc(s)))
        );
    }
    let _ = writeln!(out, "</table>");
}

/// The Gantt chart: a header row per stack, a row per step, bars on a time axis from the
/// report's origin (incident start or run start).
pub(crate) fn gantt(out: &mut String, report: &RunReport) {
    if report.timeline.is_empty() {
        let _ = writeln!(out, "<p>No step started.</p>");
        return;
    }
    let origin = report.origin();
    let span_ms = millis_between(origin, report.last_time()).max(1);
    let tick_ms = tick_step(span_ms);
    // The axis ends on a whole tick, so the last bar never touches the edge.
    let axis_ms = span_ms.div_ceil(tick_ms) * tick_ms;
    let plot_width = CHART_WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x_of = |ms: u64| LABEL_WIDTH as f64 + (ms as f64 / axis_ms as f64) * plot_width as f64;

    // Rows: the stacks in the report's order (then any other stack of the timeline).
    let mut order: Vec<&str> = report.stacks.iter().map(|s| s.name.as_str()).collect();
    for step in &report.timeline {
        if !order.contains(&step.stack.as_str()) {
            order.push(&step.stack);
        }
    }
    let order: Vec<&str> = order
        .into_iter()
        .filter(|s| report.timeline.iter().any(|t| t.stack == *s))
        .collect();
    let rows = order.len() + report.timeline.len();
    let height = AXIS_HEIGHT + rows as u64 * ROW_HEIGHT + 8;

    let _ = writeln!(
        out,
        "<svg class=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {CHART_WIDTH} {height}\" role=\"img\" \
         aria-label=\"Timeline of the run's steps\">"
    );
    let _ = writeln!(out, "<g class=\"axis\">");
    let mut tick = 0;
    while tick <= axis_ms {
        let x = x_of(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">+{}</text>",
            AXIS_HEIGHT - 6,
            height - 4,
            AXIS_HEIGHT - 10,
            esc(&short_duration(tick))
        );
        tick += tick_ms;
    }
    let _ = writeln!(out, "</g>");

    let mut y = AXIS_HEIGHT;
    for stack in order {
        let _ = writeln!(
            out,
            "<text class=\"stack-label\" x=\"4\" y=\"{}\">{}</text>",
            y + BAR_HEIGHT,
            esc(stack)
        );
        if let Some(healthy) = report
            .stacks
            .iter()
            .find(|s| s.name == stack)
            .and_then(|s| s.healthy_at)
        {
            let x = x_of(millis_between(origin, healthy));
            let mid = y + ROW_HEIGHT / 2;
            let _ = writeln!(
                out,
                "<path class=\"healthy\" d=\"M {x:.1} {} L {:.1} {mid} L {x:.1} {} L {:.1} {mid} Z\">\
                 <title>{} healthy at +{}</title></path>",
                mid - 6,
                x + 6.0,
                mid + 6,
                x - 6.0,
                esc(stack),
                esc(&short_duration(millis_between(origin, healthy)))
            );
        }
        y += ROW_HEIGHT;
        for step in report.timeline.iter().filter(|t| t.stack == stack) {
            let start_ms = millis_between(origin, step.started);
            let end_ms = millis_between(origin, step.ended.unwrap_or_else(|| report.last_time()));
            let x = x_of(start_ms);
            // A step of a few milliseconds still gets a visible bar.
            let width = (x_of(end_ms) - x).max(2.0);
            let mut tooltip = format!(
                "{} {}: {}, {} attempt{}, {}",
                step.stack,
                step.step,
                step.status.name(),
                step.attempts,
                if step.attempts == 1 { "" } else { "s" },
                step.duration_ms()
                    .map_or("not ended".into(), short_duration)
            );
            if let Some(error) = &step.error {
                let _ = write!(tooltip, ": {error}");
            }
            let _ = writeln!(
                out,
                "<text class=\"step-label\" x=\"16\" y=\"{}\">{}</text>\
                 <rect class=\"bar {}\" data-stack=\"{}\" data-step=\"{}\" x=\"{x:.1}\" \
                 y=\"{}\" width=\"{width:.1}\" height=\"{BAR_HEIGHT}\" rx=\"2\">\
                 <title>{}</title></rect>",
                y + BAR_HEIGHT,
                esc(&step.step),
                step.status.name(),
                esc(&step.stack),
                esc(&step.step),
                y + (ROW_HEIGHT - BAR_HEIGHT) / 2,
                esc(&tooltip)
            );
            y += ROW_HEIGHT;
        }
    }
    let _ = writeln!(out, "</svg>");
    let _ = writeln!(out, "<p class=\"legend\">");
    for (status, color) in [
        (StepStatus::Succeeded, "#2da44e"),
        (StepStatus::Retried, "#d4a72c"),
        (StepStatus::Failed, "#cf222e"),
        (StepStatus::Unfinished, "#8c959f"),
    ] {
        let _ = writeln!(
            out,
            "<span><i style=\"background: {color}\"></i>{}</span>",
            match status {
                StepStatus::Retried => "succeeded after retries",
                other => other.name(),
            }
        );
    }
    let _ = writeln!(
        out,
        "<span><i style=\"background: #0969da\"></i>stack healthy (RTO)</span>\n</p>"
    );
}

fn failures(out: &mut String, report: &RunReport) {
    let _ = writeln!(out, "<h2>Failures</h2>");
    if report.failures.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
        return;
    }
    let _ = writeln!(out, "<ul class=\"failures\">");
    for failure in &report.failures {
        let what = match (&failure.step, failure.attempt) {
            (Some(step), Some(attempt)) => format!("{step}, attempt {attempt}"),
            (Some(step), None) => step.clone(),
            (None, _) => "stack".to_string(),
        };
        let _ = writeln!(
            out,
            "<li class=\"failure\">{} <strong>{}</strong> ({}{}{}): <code>{}</code></li>",
            esc(&time(failure.time)),
            esc(&failure.stack),
            esc(&what),
            if failure.timed_out { ", timed out" } else { "" },
            if failure.retried { ", retried" } else { "" },
            esc(&failure.message)
        );
    }
    let _ = writeln!(out, "</ul>");
}

fn notifications(out: &mut String, report: &RunReport) {
    let _ = writeln!(out, "<h2>Notifications</h2>");
    if report.notifications.is_empty() {
        let _ = writeln!(out, "<p>None sent.</p>");
        return;
    }
    let _ = writeln!(
        out,
        "<table class=\"notifications\">\n<tr><th>stack</th><th>step</th><th>time</th>\
         <th>status</th><th>detail</th></tr>"
    );
    for n in &report.notifications {
        let _ = writeln!(
            out,
            "<tr class=\"notification\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.stack),
            esc(&n.step),
            esc(&time(n.time)),
            esc(&n.status),
            esc(&n.detail)
        );
    }
    let _ = writeln!(out, "</table>");
}

/// A tick interval that puts at most about 8 ticks on an axis of `span_ms`.
fn tick_step(span_ms: u64) -> u64 {
    const STEPS: [u64; 22] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|step| span_ms / step <= 8)
        .unwrap_or_else(|| span_ms.div_ceil(8).div_ceil(3_600_000) * 3_600_000)
}

fn badge(verdict: Verdict) -> String {
    let class = match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        // No objective: nothing to judge, no badge.
        Verdict::None => return "-".to_string(),
    };
    format!(
        "<span class=\"verdict {class}\">{}</span>",
        esc(verdict.as_str())
    )
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

/// Escapes text for element content and quoted attributes.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_few_and_round() {
        assert_eq!(tick_step(7), 1);
        assert_eq!(tick_step(95), 20);
        assert_eq!(tick_step(19 * 60_000), 300_000);
        assert_eq!(tick_step(30 * 3_600_000), 4 * 3_600_000);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
