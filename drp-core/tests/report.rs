//! Reports of runs: journals written by the executor (in-memory steps) into a real `file://`
//! store, read back and rendered as Markdown, HTML and JSON; the list of runs; secrets kept
//! out.

#[path = "support/runs.rs"]
mod runs;

use drp_core::executor::measure::Verdict;
use drp_core::report::{self, RunReport, RunState, StepStatus};
use runs::{BILLING_ERROR, Steps, parse_xml, run_plan, run_plan_killed, store_of, write_plan};

async fn finished_run() -> (tempfile::TempDir, drp_core::plan::Plan, RunReport) {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    run_plan(&plan, "run-1", &Steps::new(None), &[]).await;
    let report = report::load(&plan, store_of(&plan).as_ref(), "run-1", None)
        .await
        .unwrap();
    (dir, plan, report)
}

fn stack<'r>(report: &'r RunReport, name: &str) -> &'r report::StackReport {
    report.stacks.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test]
async fn the_report_measures_every_stack_against_its_objectives() {
    let (_dir, _plan, report) = finished_run().await;
    assert_eq!(report.run, "run-1");
    assert_eq!(report.state, RunState::Finished);
    assert!(
        !report.passed,
        "web missed its RTO, shop its RPO, billing failed"
    );
    assert_eq!(report.stacks.len(), 5);

    let db = stack(&report, "db");
    assert_eq!(db.outcome, "recovered");
    assert_eq!(db.customer.as_deref(), Some("acme"));
    assert_eq!(db.rto.verdict, Verdict::Pass);
    assert_eq!(db.rpo.verdict, Verdict::Pass, "1h old, objective 24h");
    assert!(db.rpo.actual_ms.unwrap() >= 3_600_000);
    assert!(db.snapshot.is_some());

    let web = stack(&report, "web");
    assert_eq!(web.outcome, "recovered");
    assert_eq!(web.rto.verdict, Verdict::Fail, "over 20ms, objective 1ms");
    assert!(web.rto.actual_ms.unwrap() >= 20);

    let shop = stack(&report, "shop");
    assert_eq!(shop.rpo.verdict, Verdict::Fail, "48h old, objective 24h");
    assert_eq!(shop.rto.verdict, Verdict::None);

    let billing = stack(&report, "billing");
    assert_eq!(billing.outcome, "failed");
    assert!(billing.reason.as_deref().unwrap().contains(BILLING_ERROR));
    let reports = stack(&report, "reports");
    assert_eq!(reports.outcome, "skipped");
    assert!(reports.reason.as_deref().unwrap().contains("billing"));

    assert!(
        report
            .failures
            .iter()
            .any(|f| f.stack == "billing" && f.message == BILLING_ERROR)
    );
    // Every stack that ran told the team; billing's failure too.
    let notified: Vec<(&str, &str, &str)> = report
        .notifications
        .iter()
        .map(|n| (n.stack.as_str(), n.step.as_str(), n.status.as_str()))
        .collect();
    assert!(
        notified.contains(&("db", "notify-recovered", "sent")),
        "{notified:?}"
    );
    assert!(
        notified.contains(&("billing", "notify-failed", "sent")),
        "{notified:?}"
    );
    assert!(
        notified.contains(&("shop", "notify-recovered", "failed")),
        "{notified:?}"
    );
    assert_eq!(
        notified.len(),
        4,
        "one delivery per notification step: {notified:?}"
    );
}

#[tokio::test]
async fn the_timeline_has_one_row_per_step_that_ran() {
    let (_dir, plan, report) = finished_run().await;
    let events = drp_core::executor::journal::read_journal(store_of(&plan).as_ref(), "run-1")
        .await
        .unwrap();
    let started: std::collections::BTreeSet<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            drp_core::executor::EventKind::StepStarted { stack, step, .. } => {
                Some((stack.clone(), step.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(report.timeline.len(), started.len());
    // db: acquire-host, restore:db, start:1, wait-healthy, notify-recovered.
    let db: Vec<&str> = report
        .timeline
        .iter()
        .filter(|s| s.stack == "db")
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(
        db,
        [
            "acquire-host",
            "restore:db",
            "start:1",
            "wait-healthy",
            "notify-recovered"
        ]
    );
    let failed = report
        .timeline
        .iter()
        .find(|s| s.stack == "billing" && s.step == "restore:ledger")
        .unwrap();
    assert_eq!(failed.status, StepStatus::Failed);
    assert!(report.timeline.iter().all(|s| s.stack != "reports"));
}

#[tokio::test]
async fn markdown_has_the_stacks_the_timeline_and_the_failures() {
    let (_dir, _plan, report) = finished_run().await;
    let md = report::markdown::render(&report);
    assert!(md.contains("**Result: FAIL**"), "{md}");
    let row = |name: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {name} | ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{md}"))
            .to_string()
    };
    let db = row("db");
    assert!(db.starts_with("| db | acme | recovered |"), "{db}");
    assert_eq!(db.matches("PASS").count(), 2, "{db}");
    let web = row("web");
    assert!(web.contains("| 1ms | FAIL |"), "{web}");
    let shop = row("shop");
    assert!(shop.contains("| 24h | FAIL |"), "{shop}");
    assert!(row("billing").contains("| failed |"));

    let timeline = md
        .split("## Timeline")
        .nth(1)
        .unwrap()
        .split("## Failures")
        .next()
        .unwrap();
    let rows = timeline.lines().filter(|l| l.starts_with("| ")).count();
    // Header and separator rows, then one per step.
    assert_eq!(rows, 2 + report.timeline.len(), "{timeline}");
    assert!(md.contains(BILLING_ERROR));
    assert!(md.contains("| billing | notify-failed |"));
}

#[tokio::test]
async fn html_is_one_well_formed_file_with_a_bar_per_step() {
    let (_dir, _plan, report) = finished_run().await;
    let html = report::html::render(&report);
    let elements = parse_xml(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
    let count = |name: &str| elements.iter().filter(|e| e.name == name).count();
    assert_eq!(count("svg"), 1);
    assert_eq!(count("style"), 1);
    let bars: Vec<_> = elements
        .iter()
        .filter(|e| e.name == "rect" && e.has_class("bar"))
        .collect();
    assert_eq!(bars.len(), report.timeline.len());
    for (bar, step) in bars.iter().zip(
        // Bars are grouped by stack, in the report's stack order.
        report
            .stacks
            .iter()
            .flat_map(|s| report.timeline.iter().filter(move |t| t.stack == s.name)),
    ) {
        assert_eq!(bar.attribute("data-stack"), Some(step.stack.as_str()));
        assert_eq!(bar.attribute("data-step"), Some(step.step.as_str()));
        assert!(bar.has_class(step.status.name()));
        let width: f64 = bar.attribute("width").unwrap().parse().unwrap();
        assert!(width >= 2.0);
    }
    assert!(bars.iter().any(|b| b.has_class("failed")));
    // Rows of the stacks table, with the verdicts.
    assert_eq!(
        elements
            .iter()
            .filter(|e| e.name == "tr" && e.has_class("stack"))
            .count(),
        report.stacks.len()
    );
    assert!(html.contains("<span class=\"verdict fail\">FAIL</span>"));
    assert!(html.contains(&BILLING_ERROR.replace('"', "&quot;")));
    // Self-contained: nothing to fetch.
    for element in &elements {
        for (name, value) in &element.attributes {
            assert!(
                !(matches!(name.as_str(), "src" | "href") || value.contains("url(")),
                "<{} {name}={value:?}> would fetch something",
                element.name
            );
        }
        assert!(!matches!(
            element.name.as_str(),
            "script" | "link" | "img" | "iframe"
        ));
    }
}

#[tokio::test]
async fn json_is_the_report() {
    let (_dir, _plan, report) = finished_run().await;
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["run"], "run-1");
    assert_eq!(json["state"], "finished");
    assert_eq!(json["passed"], false);
    let web = json["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap();
    assert_eq!(web["rto"]["verdict"], "FAIL");
    assert_eq!(web["rto"]["objective_ms"], 1);
    assert_eq!(
        json["timeline"].as_array().unwrap().len(),
        report.timeline.len()
    );
}

#[tokio::test]
async fn runs_are_listed_newest_first_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    run_plan(&plan, "20261129T100000Z-00000001", &Steps::new(None), &[]).await;
    // Killed as billing's first step starts (billing is the first stack to start).
    run_plan_killed(
        &plan,
        "20261129T110000Z-00000002",
        "billing",
        "acquire-host",
    )
    .await;
    let listed = report::runs::list(store_of(&plan).as_ref()).await.unwrap();
    let summary: Vec<(&str, RunState, usize, usize, usize)> = listed
        .iter()
        .map(|r| (r.run.as_str(), r.state, r.recovered, r.failed, r.stacks))
        .collect();
    assert_eq!(
        summary,
        [
            ("20261129T110000Z-00000002", RunState::Interrupted, 0, 0, 5),
            ("20261129T100000Z-00000001", RunState::Finished, 3, 1, 5),
        ]
    );
    assert!(listed[1].ended.is_some() && listed[0].ended.is_none());

    // The interrupted run's report says so, and cannot pass.
    let report = report::load(
        &plan,
        store_of(&plan).as_ref(),
        "20261129T110000Z-00000002",
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.state, RunState::Interrupted);
    assert!(!report.passed);
    assert!(report::markdown::render(&report).contains("interrupted"));
    assert!(
        report.timeline.iter().any(|s| s.stack == "billing"
            && s.step == "acquire-host"
            && s.status == StepStatus::Unfinished
            && s.ended.is_none()),
        "{:?}",
        report.timeline
    );
}

#[tokio::test]
async fn an_unknown_run_is_an_error_that_says_where_it_looked() {
    let (_dir, plan, _report) = finished_run().await;
    let error = report::load(&plan, store_of(&plan).as_ref(), "no-such-run", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no run no-such-run in file://"), "{error}");
    assert!(error.contains("1 runs there"), "{error}");
}

#[tokio::test]
async fn reports_hide_the_plans_secrets_even_when_the_journal_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    let secret = "s3cret-passphrase-of-acme";
    // Journaled without redaction: only the report stands between the secret and a reader.
    run_plan(&plan, "run-1", &Steps::new(Some(secret.to_string())), &[]).await;
    let events = drp_core::executor::journal::read_journal(store_of(&plan).as_ref(), "run-1")
        .await
        .unwrap();
    assert!(serde_json::to_string(&events).unwrap().contains(secret));
    let report = RunReport::build(
        &plan,
        &events,
        report::BuildOptions {
            secrets: vec![secret.to_string()],
            ..Default::default()
        },
    )
    .unwrap();
    for text in [
        report::markdown::render(&report),
        report::html::render(&report),
        serde_json::to_string(&report).unwrap(),
    ] {
        assert!(!text.contains(secret));
        assert!(text.contains("(password ***)"));
    }
}

#[tokio::test]
async fn the_runs_own_measurements_are_used_unless_an_incident_start_is_given() {
    use drp_core::executor::{Event, EventKind};
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    run_plan(&plan, "run-1", &Steps::new(None), &[]).await;
    let mut events = drp_core::executor::journal::read_journal(store_of(&plan).as_ref(), "run-1")
        .await
        .unwrap();
    // What the run journaled when it ended: db took 12m34s by its own clock.
    let objectives = plan
        .stacks
        .values()
        .map(|s| {
            (
                s.name.clone(),
                drp_core::executor::measure::Objectives {
                    rto: s.rto,
                    rpo: s.rpo,
                },
            )
        })
        .collect();
    let mut measured = drp_core::executor::measure::measure(&events, None, &objectives);
    let db = measured
        .stacks
        .iter_mut()
        .find(|s| s.stack == "db")
        .unwrap();
    db.rto_ms = Some(754_000);
    let last = events.last().unwrap().clone();
    events.push(Event {
        run: last.run.clone(),
        seq: last.seq + 1,
        time: last.time,
        kind: EventKind::RunMeasured {
            measurements: measured,
        },
    });
    let report = RunReport::build(&plan, &events, report::BuildOptions::default()).unwrap();
    assert!(report.measured_by_run);
    assert_eq!(stack(&report, "db").rto.actual_ms, Some(754_000));

    // An incident an hour before the run: recomputed, every RTO over an hour.
    let incident = report.started - jiff::SignedDuration::from_hours(1);
    let report = RunReport::build(
        &plan,
        &events,
        report::BuildOptions {
            incident_start: Some(incident),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!report.measured_by_run);
    assert_eq!(report.incident_start, incident);
    let db = stack(&report, "db");
    assert!(db.rto.actual_ms.unwrap() >= 3_600_000);
    assert_eq!(db.rto.verdict, Verdict::Fail, "objective 1h");
}
