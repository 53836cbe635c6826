//! `drp report` and `drp runs list` on the real binary, over journals the executor wrote into
//! a real `file://` store (steps in memory): every format, `--out`, exit statuses, and the
//! plan's secrets kept out of every report.

#[path = "../../drp-core/tests/support/runs.rs"]
mod runs;

use std::path::Path;
use std::process::{Command, Output};

use runs::{BILLING_ERROR, Steps, parse_xml, run_plan, run_plan_killed, write_plan};
use serde_json::Value;

const DRP: &str = env!("CARGO_BIN_EXE_drp");

/// The values the plan's `*_env` references hold when the report is made.
const PASSPHRASE: &str = "acme-key-passphrase-do-not-show";
const SLACK_URL: &str = "https://hooks.slack.example/services/T0/B0/do-not-show";

fn drp(dir: &Path, args: &[&str]) -> Output {
    Command::new(DRP)
        .args(args)
        .current_dir(dir)
        .env_remove("DRP_STORE")
        .env("DRP_REPORT_TEST_PASSPHRASE", PASSPHRASE)
        .env("DRP_REPORT_TEST_SLACK_URL", SLACK_URL)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A plan (`plan.toml`, also copied to `drp.toml`) and a finished run `run-1` in its store.
async fn finished_run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    std::fs::copy(dir.path().join("plan.toml"), dir.path().join("drp.toml")).unwrap();
    run_plan(&plan, "run-1", &Steps::new(None), &[]).await;
    dir
}

#[tokio::test]
async fn report_renders_markdown_by_default_from_drp_toml() {
    let dir = finished_run().await;
    let out = drp(dir.path(), &["report", "run-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.starts_with("# Recovery report: run run-1 (plan report-test)"),
        "{md}"
    );
    assert!(
        md.contains("**Result: FAIL** — 3 of 5 stacks recovered"),
        "{md}"
    );
    assert!(md.contains("| db | acme | recovered |"), "{md}");
    assert!(md.contains("| web | acme | recovered |"), "{md}");
    assert!(md.contains(BILLING_ERROR), "{md}");
    assert!(md.contains("## Timeline"), "{md}");
    // `latest` is the newest run.
    let out = drp(dir.path(), &["report", "latest"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), md);
}

#[tokio::test]
async fn report_writes_html_and_json_to_files() {
    let dir = finished_run().await;
    let out = drp(
        dir.path(),
        &[
            "report",
            "run-1",
            "--plan",
            "plan.toml",
            "--format",
            "html",
            "--out",
            "report.html",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("HTML report written to report.html (FAIL)"),
        "{}",
        stderr(&out)
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let elements = parse_xml(&html).unwrap_or_else(|e| panic!("{e}"));
    let bars = elements
        .iter()
        .filter(|e| e.name == "rect" && e.has_class("bar"))
        .count();

    let out = drp(
        dir.path(),
        &["report", "run-1", "--plan", "plan.toml", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["run"], "run-1");
    assert_eq!(json["passed"], false);
    assert_eq!(json["timeline"].as_array().unwrap().len(), bars);
    let verdicts: Vec<(String, String, String)> = json["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["rto"]["verdict"].as_str().unwrap().to_string(),
                s["rpo"]["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let get = |name: &str| verdicts.iter().find(|v| v.0 == name).unwrap().clone();
    assert_eq!(get("db"), ("db".into(), "PASS".into(), "PASS".into()));
    assert_eq!(get("web").1, "FAIL");
    assert_eq!(get("shop").2, "FAIL");
}

#[tokio::test]
async fn an_unknown_run_exits_1_and_says_so() {
    let dir = finished_run().await;
    let out = drp(dir.path(), &["report", "20990101T000000Z-deadbeef"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("drp: error: no run 20990101T000000Z-deadbeef in file://"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("`drp runs list` shows them"),
        "{}",
        stderr(&out)
    );
    let empty = tempfile::tempdir().unwrap();
    write_plan(empty.path());
    let out = drp(empty.path(), &["report", "latest", "--plan", "plan.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no run latest in file://"),
        "{}",
        stderr(&out)
    );
    let out = drp(dir.path(), &["report", "../etc"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = drp(dir.path(), &["report", "run-1", "--format", "pdf"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test]
async fn runs_list_shows_every_run_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    let out = drp(dir.path(), &["runs", "list", "--plan", "plan.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no runs in file://"),
        "{}",
        stderr(&out)
    );

    run_plan(&plan, "20261129T100000Z-00000001", &Steps::new(None), &[]).await;
    run_plan_killed(
        &plan,
        "20261129T110000Z-00000002",
        "billing",
        "acquire-host",
    )
    .await;
    let out = drp(dir.path(), &["runs", "list", "--plan", "plan.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0][0], "20261129T110000Z-00000002");
    assert_eq!(lines[0][3], "interrupted");
    assert_eq!(lines[1][0], "20261129T100000Z-00000001");
    assert_eq!(&lines[1][3..6], ["finished", "3/5", "1"], "{text}");

    let out = drp(
        dir.path(),
        &["runs", "list", "--plan", "plan.toml", "--json"],
    );
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json[0]["state"], "interrupted");
    assert_eq!(json[1]["state"], "finished");
    assert_eq!(json[1]["recovered"], 3);
    assert_eq!(json[1]["failed"], 1);
    assert_eq!(json[1]["skipped"], 1);
}

#[tokio::test]
async fn no_report_shows_the_values_of_the_plans_env_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    // A step echoes the key's passphrase in its error, and the journal was written without
    // knowing it: the report, which reads the plan's secret references, hides it.
    run_plan(
        &plan,
        "run-1",
        &Steps::new(Some(PASSPHRASE.to_string())),
        &[],
    )
    .await;
    for format in ["md", "html", "json"] {
        let out = drp(
            dir.path(),
            &["report", "run-1", "--plan", "plan.toml", "--format", format],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out) + &stderr(&out);
        assert!(!text.contains(PASSPHRASE), "{format}: {text}");
        assert!(!text.contains(SLACK_URL), "{format}: {text}");
        assert!(text.contains("(password ***)"), "{format}: {text}");
    }
}
