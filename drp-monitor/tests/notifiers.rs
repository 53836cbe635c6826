//! Slack, webhook and log notifiers against a real HTTP server that records requests, with
//! Notifications' retries; secrets never shown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use drp_monitor::notify::{DeliveryStatus, NotifierSpec};
use drp_monitor::{Audience, Event, NotifiersConfig, RetryPolicy, StackRef};
use support::{Server, respond, write_file};

/// Quick retries, so a test that exhausts them does not wait.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(5),
    }
}

fn config(toml_text: &str) -> NotifiersConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

fn step_failed() -> Event {
    Event::StepFailed {
        run_id: "run-42".into(),
        stack: StackRef::new("acme-web", "acme"),
        step: "restore db".into(),
        error: "pg_restore: error: \"connection\" refused\n  on 10.0.0.5:5432".into(),
    }
}

#[tokio::test]
async fn slack_gets_text_and_blocks_and_retries_after_429() {
    let server = Server::start(Arc::new(|n, _| {
        if n == 0 {
            let mut response = respond(429, "rate_limited");
            response
                .headers_mut()
                .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
            response
        } else {
            respond(200, "ok")
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(
        dir.path(),
        "slack-url",
        &format!("{}\n", server.url("/services/T0/B0/SECRET")),
    );
    let notifications = config(&format!(
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl_file = {:?}\n",
        url_file
    ))
    .build(quick_retries(4))
    .unwrap();

    let report = notifications.send(&step_failed()).await;
    assert!(report.all_sent(), "{report:?}");
    assert_eq!(report.deliveries.len(), 1);
    let delivery = &report.deliveries[0];
    assert_eq!(delivery.notifier, "ops");
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(delivery.audience, Some(Audience::Team));
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.error, None);

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one refused with 429, one accepted");
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(requests[1].path, "/services/T0/B0/SECRET");
    assert_eq!(requests[1].headers["content-type"], "application/json");
    let json = requests[1].json();
    assert_eq!(json["blocks"][0]["type"], "header");
    assert_eq!(
        json["blocks"][0]["text"]["text"],
        "[drp] acme-web: step restore db failed"
    );
    assert_eq!(json["blocks"][1]["type"], "section");
    let section = json["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(
        section,
        "Run run-42, stack acme-web (customer acme): step restore db failed:\npg_restore: error: \
         \"connection\" refused\n  on 10.0.0.5:5432"
    );
    assert_eq!(
        json["blocks"][2]["elements"][0]["text"],
        "drp · step_failed · run `run-42`"
    );
    assert!(
        json["text"]
            .as_str()
            .unwrap()
            .starts_with("[drp] acme-web: step restore db failed\nRun run-42")
    );
}

#[tokio::test]
async fn a_notifier_that_keeps_failing_is_reported_and_others_still_deliver() {
    let failing = Server::start(Arc::new(|_, _| respond(500, "internal error"))).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(dir.path(), "hook-url", &failing.url("/hook?token=SECRET"));
    let log = dir.path().join("notifications.jsonl");
    let notifications = config(&format!(
        "[[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = {url_file:?}\n\n\
         [[notifiers]]\nname = \"journal\"\nkind = \"log\"\npath = {log:?}\n"
    ))
    .build(quick_retries(3))
    .unwrap();

    let report = notifications.send(&step_failed()).await;
    assert!(!report.all_sent());
    assert_eq!(
        failing.requests().len(),
        3,
        "bounded: three attempts, then it gives up"
    );
    let hook = report
        .deliveries
        .iter()
        .find(|d| d.notifier == "hook")
        .unwrap();
    assert_eq!(hook.status, DeliveryStatus::Failed);
    assert_eq!(hook.attempts, 3);
    assert_eq!(
        hook.error.as_deref(),
        Some(format!("HTTP 500 from {}: internal error", failing.addr).as_str())
    );
    let journal = report
        .deliveries
        .iter()
        .find(|d| d.notifier == "journal")
        .unwrap();
    assert_eq!(journal.status, DeliveryStatus::Sent);
    assert_eq!(report.failures().count(), 1);

    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["notifier"], "journal");
    assert_eq!(lines[0]["message"]["event"], "step_failed");
    assert_eq!(lines[0]["message"]["audience"], "team");
    assert_eq!(lines[0]["message"]["fields"]["step"], "restore db");

    // The report, as the executor would journal it, holds no secret.
    let journaled = serde_json::to_string(&report).unwrap();
    assert!(!journaled.contains("SECRET"), "{journaled}");
    assert!(!format!("{notifications:?}").contains("SECRET"));
}

#[tokio::test]
async fn errors_that_retrying_cannot_fix_are_not_retried() {
    let gone = Server::start(Arc::new(|_, _| respond(404, "no_service"))).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(dir.path(), "url", &gone.url("/services/SECRET"));
    let notifications = config(&format!(
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl_file = {url_file:?}\n"
    ))
    .build(quick_retries(5))
    .unwrap();
    let report = notifications.send(&Event::Test).await;
    assert_eq!(report.deliveries[0].attempts, 1);
    assert_eq!(gone.requests().len(), 1);
    assert_eq!(report.deliveries[0].status, DeliveryStatus::Failed);

    // Nobody listening: retried, reported, the URL's secret path never shown.
    let port = support::free_port();
    let url_file = write_file(
        dir.path(),
        "closed",
        &format!("http://127.0.0.1:{port}/services/SECRET"),
    );
    let notifications = config(&format!(
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl_file = {url_file:?}\n"
    ))
    .build(quick_retries(2))
    .unwrap();
    let report = notifications.send(&Event::Test).await;
    let delivery = &report.deliveries[0];
    assert_eq!(delivery.attempts, 2);
    let error = delivery.error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!("cannot reach 127.0.0.1:{port}: ")),
        "{error}"
    );
    assert!(!error.contains("SECRET"), "{error}");
}

#[tokio::test]
async fn webhook_fills_its_template_with_json_escaped_fields() {
    let server = Server::start(Arc::new(|_, _| respond(204, ""))).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(dir.path(), "url", &server.url("/alerts"));
    let notifications = config(&format!(
        r#"
        [[notifiers]]
        name = "pager"
        kind = "webhook"
        url_file = {url_file:?}
        headers = {{ X-Team = "ops" }}
        template = '{{"summary": "{{{{subject}}}}", "run": "{{{{run_id}}}}", "detail": "{{{{error}}}}", "stack": "{{{{stack}}}}"}}'

        [[notifiers]]
        name = "plain"
        kind = "webhook"
        url_file = {url_file:?}
        "#
    ))
    .build(quick_retries(1))
    .unwrap();
    let report = notifications.send(&step_failed()).await;
    assert!(report.all_sent(), "{report:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let templated = requests
        .iter()
        .find(|r| r.headers.contains_key("x-team"))
        .unwrap();
    assert_eq!(
        templated.json(),
        serde_json::json!({
            "summary": "[drp] acme-web: step restore db failed",
            "run": "run-42",
            "detail": "pg_restore: error: \"connection\" refused\n  on 10.0.0.5:5432",
            "stack": "acme-web",
        })
    );
    let plain = requests
        .iter()
        .find(|r| !r.headers.contains_key("x-team"))
        .unwrap()
        .json();
    assert_eq!(plain["event"], "step_failed");
    assert_eq!(plain["audience"], "team");
    assert_eq!(plain["run_id"], "run-42");
    assert_eq!(plain["stacks"], serde_json::json!(["acme-web"]));
    assert_eq!(
        plain["fields"]["error"],
        "pg_restore: error: \"connection\" refused\n  on 10.0.0.5:5432"
    );
}

#[tokio::test]
async fn channels_reach_customers_only_when_configured() {
    let server = Server::start(Arc::new(|_, _| respond(200, "ok"))).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(dir.path(), "url", &server.url("/"));
    let notifications = config(&format!(
        "[[notifiers]]\nname = \"acme-shared-channel\"\nkind = \"slack\"\nurl_file = {url_file:?}\n\
         audiences = [\"customer\"]\ncustomers = [\"acme\"]\n"
    ))
    .build(quick_retries(1))
    .unwrap();
    let event = Event::StackRecovered {
        run_id: "run-42".into(),
        stack: StackRef::new("acme-web", "acme"),
        elapsed: Duration::from_secs(19 * 60),
    };
    let report = notifications.send(&event).await;
    assert_eq!(report.deliveries.len(), 1);
    assert_eq!(report.deliveries[0].audience, Some(Audience::Customer));
    let json = server.requests()[0].json();
    assert_eq!(
        json["blocks"][0]["text"]["text"],
        "Your service acme-web is back"
    );

    // Another customer's recovery, or a technical event: nothing for this channel.
    let other = Event::StackRecovered {
        run_id: "run-42".into(),
        stack: StackRef::new("beta-web", "beta"),
        elapsed: Duration::from_secs(60),
    };
    for event in [other, step_failed()] {
        let report = notifications.send(&event).await;
        assert_eq!(report.deliveries.len(), 1);
        assert_eq!(report.deliveries[0].status, DeliveryStatus::Skipped);
    }
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn configs_are_checked_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(dir.path(), "url", "https://hooks.example/x");
    let build = |text: &str| {
        config(text)
            .build(RetryPolicy::default())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        build(
            "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl_env = \"DRP_TEST_UNSET_SLACK_URL\"\n"
        ),
        "notifier 'ops' (slack): environment variable DRP_TEST_UNSET_SLACK_URL is not set"
    );
    assert_eq!(
        build("[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\n"),
        "notifier 'ops' (slack): url is required: give url_env = \"VAR\" or url_file = \"/path\""
    );
    assert!(
        build(&format!(
            "[[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = {url_file:?}\n\
             template = '{{\"text\": {{{{subject}}}}}}'\n"
        ))
        .starts_with("notifier 'hook' (webhook): template: not JSON once filled in")
    );
    assert!(
        build(
            "[[notifiers]]\nname = \"mail\"\nkind = \"email\"\nserver = \"localhost\"\nfrom = \"drp\"\n"
        )
        .starts_with("notifier 'mail' (email): from: 'drp' is not an email address")
    );
    assert_eq!(
        build(
            "[[notifiers]]\nname = \"x\"\nkind = \"log\"\npath = \"/tmp/a\"\n\
             [[notifiers]]\nname = \"x\"\nkind = \"log\"\npath = \"/tmp/b\"\n"
        ),
        "notifier 'x' (log): another notifier has the same name"
    );
    // Secrets cannot be written inline.
    let error = toml::from_str::<NotifiersConfig>(
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"https://hooks.example/x\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("unknown field `url`"), "{error}");
    let error = toml::from_str::<NotifiersConfig>(
        "[[notifiers]]\nname = \"m\"\nkind = \"email\"\nserver = \"s\"\nfrom = \"a@b.c\"\npassword = \"hunter2\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("unknown field `password`"), "{error}");
}

#[test]
fn debug_output_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = write_file(
        dir.path(),
        "url",
        "https://hooks.example/services/T0/B0/SECRET",
    );
    let password_file = write_file(dir.path(), "password", "SECRET-PASSWORD");
    let notifications = config(&format!(
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl_file = {url_file:?}\n\
         [[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = {url_file:?}\n\
         [[notifiers]]\nname = \"mail\"\nkind = \"email\"\nserver = \"smtp.example\"\n\
         username = \"drp\"\npassword_file = {password_file:?}\nfrom = \"drp@example.com\"\n\
         team = [\"ops@example.com\"]\n"
    ))
    .build(RetryPolicy::default())
    .unwrap();
    let debug = format!("{notifications:?}");
    assert!(debug.contains("ops") && debug.contains("mail"), "{debug}");
    assert!(!debug.contains("SECRET"), "{debug}");
    let spec: NotifierSpec = toml::from_str(&format!(
        "name = \"ops\"\nkind = \"slack\"\nurl_file = {url_file:?}\n"
    ))
    .unwrap();
    assert!(!format!("{:?}", spec.build().unwrap()).contains("SECRET"));
}
