//! Recovery runs for report tests: a plan (TOML) whose stacks the executor runs through an
//! in-memory step runner, journaled into a real `file://` store; and a strict XML
//! well-formedness check for the HTML report. Shared by drp-core's and drp-cli's report
//! tests (`#[path]`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drp_core::backup::{BackupStore, open_store};
use drp_core::executor::journal::Journal;
use drp_core::executor::{
    EventSink, ExecuteOptions, Redact, RunSummary, StepCall, StepError, StepOutput, StepRunner,
    execute,
};
use drp_core::plan::{self, CheckOptions, Plan};

/// A plan of four stacks (keys are not opened): `db` (RTO 1h, RPO 24h), `web` on `db` (RTO
/// 1ms: it cannot be met), `shop` (RPO 24h), `billing` and `reports` on `billing`. STORE_URL is
/// replaced.
pub const PLAN: &str = r#"format = 1
name = "report-test"

[storage]
url = "STORE_URL"

[customers.acme]
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"
passphrase_env = "DRP_REPORT_TEST_PASSPHRASE"

[customers.globex]
certificates = ["keys/globex.pub.asc"]

[datacenters.dc2]

[[hosts]]
name = "spare-1"
datacenter = "dc2"
address = "root@10.0.2.11"
roles = ["app"]
spare = true

[stacks.db]
customer = "acme"
role = "app"
rto = "1h"
rpo = "24h"
sources = ["db=cmd:pg_dump acme"]
restore_to = "/srv/db"
start_commands = ["systemctl start postgresql"]

[stacks.db.probes.port]
kind = "tcp"
host = "{host}"
port = 5432

[stacks.web]
customer = "acme"
role = "app"
depends_on = ["db"]
rto = "1ms"
sources = ["www=/srv/www"]
restore_to = "/srv/acme"
start_commands = ["systemctl start acme-web"]

[stacks.shop]
customer = "globex"
role = "app"
rpo = "24h"
sources = ["files=/srv/shop"]
restore_to = "/srv/shop"

[stacks.billing]
customer = "globex"
role = "app"
sources = ["ledger=/srv/ledger"]
restore_to = "/srv/billing"

[stacks.reports]
customer = "globex"
role = "app"
depends_on = ["billing"]
sources = ["out=/srv/reports"]
restore_to = "/srv/reports"

[[notifiers]]
name = "team-slack"
kind = "slack"
url_env = "DRP_REPORT_TEST_SLACK_URL"

[recovery]
target_datacenter = "dc2"
parallelism = 2
notify = ["team-slack"]
"#;

/// What the failing step of `billing` says.
pub const BILLING_ERROR: &str = "pg_restore: could not connect to 10.0.2.11: connection refused";

/// The plan with its store at `dir/store`, written to `dir/plan.toml` and loaded.
pub fn write_plan(dir: &Path) -> Plan {
    let url = format!("file://{}", dir.join("store").display());
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let path = dir.join("plan.toml");
    std::fs::write(&path, PLAN.replace("STORE_URL", &url)).unwrap();
    plan::load(&path, CheckOptions { files: false }).unwrap()
}

/// The store of the plan.
pub fn store_of(plan: &Plan) -> Arc<dyn BackupStore> {
    open_store(&plan.storage.url).unwrap()
}

/// Steps in memory: restores report the snapshot they restored (`shop`'s is two days old),
/// `web` starts slowly, `billing` fails to restore, notifications note what they sent (shop's
/// delivery fails).
/// `leak` is put in `billing`'s error, as a careless command would echo a password.
pub struct Steps {
    pub leak: Option<String>,
    /// Restore facts per stack: (snapshot id, snapshot time).
    snapshots: HashMap<&'static str, (String, jiff::Timestamp)>,
}

impl Steps {
    pub fn new(leak: Option<String>) -> Steps {
        let now = jiff::Timestamp::now();
        let hour = jiff::SignedDuration::from_hours(1);
        let snapshot = |age: jiff::SignedDuration| {
            let time = now.checked_sub(age).unwrap();
            (
                format!("{}-0a0b0c0d", time.strftime("%Y%m%dT%H%M%S%.3fZ")),
                time,
            )
        };
        Steps {
            leak,
            snapshots: HashMap::from([
                ("db", snapshot(hour)),
                ("web", snapshot(hour * 2)),
                ("shop", snapshot(hour * 48)),
            ]),
        }
    }
}

#[async_trait]
impl StepRunner for Steps {
    async fn run(&self, call: StepCall<'_>) -> Result<StepOutput, StepError> {
        let stack = call.stack.name.as_str();
        let step = call.step.name.as_str();
        if stack == "billing" && step.starts_with("restore:") {
            let message = match &self.leak {
                Some(secret) => format!("{BILLING_ERROR} (password {secret})"),
                None => BILLING_ERROR.to_string(),
            };
            return Err(StepError::permanent(message));
        }
        if step.starts_with("restore:")
            && let Some((id, time)) = self.snapshots.get(stack)
        {
            return Ok(StepOutput::done()
                .with_fact("snapshot", id.clone())
                .with_fact("snapshot_time", time.to_string())
                .with_bytes(4096)
                .with_summary(format!("snapshot {id}")));
        }
        if stack == "web" && step.starts_with("start:") {
            // Real time, so that web's RTO is surely over its 1ms objective.
            std::thread::sleep(Duration::from_millis(20));
        }
        if step.starts_with("notify-") {
            // Telling people never fails a step: a failed delivery is a note.
            if stack == "shop" {
                call.note("notification through team-slack failed: HTTP 500")
                    .await;
            } else {
                call.note("team-slack: sent").await;
            }
        }
        Ok(StepOutput::done())
    }
}

/// Runs every stack of `plan` as run `run_id`, journaled in the plan's store (redacting
/// `secrets`).
pub async fn run_plan(plan: &Plan, run_id: &str, steps: &Steps, secrets: &[String]) -> RunSummary {
    let spec = plan::compile::compile(plan, &[]).unwrap();
    let journal = Journal::new(store_of(plan));
    let sink = Redact::new(journal, secrets.iter().cloned());
    execute(&spec, steps, &sink, ExecuteOptions::new(run_id))
        .await
        .unwrap()
}

/// Starts run `run_id` of `plan` and drops it (a crash) as soon as the start of `step` of
/// `stack` is journaled: the run's journal has no end, and that step never finishes.
pub async fn run_plan_killed(plan: &Plan, run_id: &str, stack: &str, step: &str) {
    struct KillAt<'a> {
        inner: Journal,
        stack: &'a str,
        step: &'a str,
        reached: tokio::sync::Notify,
    }
    #[async_trait]
    impl EventSink for KillAt<'_> {
        async fn record(
            &self,
            event: &drp_core::executor::Event,
        ) -> Result<(), drp_core::executor::SinkError> {
            self.inner.record(event).await?;
            if let drp_core::executor::EventKind::StepStarted { stack, step, .. } = &event.kind
                && stack == self.stack
                && step == self.step
            {
                self.reached.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }
    let spec = plan::compile::compile(plan, &[]).unwrap();
    let sink = KillAt {
        inner: Journal::new(store_of(plan)),
        stack,
        step,
        reached: tokio::sync::Notify::new(),
    };
    let steps = Steps::new(None);
    tokio::select! {
        biased;
        () = sink.reached.notified() => {}
        _ = execute(&spec, &steps, &sink, ExecuteOptions::new(run_id)) => {
            panic!("the run ended before it was killed")
        }
    }
}

/// An element of a parsed document: its name and attributes.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

impl Element {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.attribute("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }
}

/// Parses `text` as XML (after an optional `<!DOCTYPE html>`), strictly: every element
/// closed in order, every attribute quoted, `<` and `&` in text only as markup or entities.
/// Returns every element, in document order, or what is wrong and where.
pub fn parse_xml(text: &str) -> Result<Vec<Element>, String> {
    let text = text
        .strip_prefix("<!DOCTYPE html>")
        .ok_or("no <!DOCTYPE html>")?;
    let bytes = text.as_bytes();
    let mut elements = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    let err = |i: usize, what: &str| {
        let line = text[..i].matches('\n').count() + 1;
        format!("line {line}: {what}")
    };
    while i < bytes.len() {
        match bytes[i] {
            b'<' if text[i..].starts_with("</") => {
                let end = text[i..]
                    .find('>')
                    .ok_or_else(|| err(i, "unclosed end tag"))?
                    + i;
                let name = text[i + 2..end].trim();
                match open.pop() {
                    Some(expected) if expected == name => {}
                    other => {
                        return Err(err(i, &format!("</{name}> closes {other:?}")));
                    }
                }
                i = end + 1;
            }
            b'<' => {
                let end = text[i..].find('>').ok_or_else(|| err(i, "unclosed tag"))? + i;
                let inner = &text[i + 1..end];
                let (inner, self_closing) = match inner.strip_suffix('/') {
                    Some(inner) => (inner, true),
                    None => (inner, false),
                };
                let name_end = inner
                    .find(|c: char| c.is_whitespace())
                    .unwrap_or(inner.len());
                let name = &inner[..name_end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(err(i, &format!("bad element name {name:?}")));
                }
                let attributes = parse_attributes(&inner[name_end..]).map_err(|e| err(i, &e))?;
                elements.push(Element {
                    name: name.to_string(),
                    attributes,
                });
                if !self_closing {
                    open.push(name.to_string());
                }
                i = end + 1;
            }
            b'&' => {
                let end = text[i..].find(';').ok_or_else(|| err(i, "bare &"))? + i;
                let entity = &text[i + 1..end];
                let known = ["amp", "lt", "gt", "quot", "#39"].contains(&entity);
                if !known {
                    return Err(err(i, &format!("unknown entity &{entity};")));
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    match open.last() {
        Some(name) => Err(format!("<{name}> is never closed")),
        None => Ok(elements),
    }
}

fn parse_attributes(mut text: &str) -> Result<Vec<(String, String)>, String> {
    let mut attributes = Vec::new();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(attributes);
        }
        let eq = text
            .find('=')
            .ok_or(format!("attribute without value: {text:?}"))?;
        let name = text[..eq].trim();
        let rest = &text[eq + 1..];
        let rest = rest
            .strip_prefix('"')
            .ok_or(format!("attribute {name} is not quoted"))?;
        let close = rest
            .find('"')
            .ok_or(format!("attribute {name} never ends"))?;
        let value = &rest[..close];
        if value.contains('<') {
            return Err(format!("attribute {name} holds a raw <"));
        }
        attributes.push((name.to_string(), value.to_string()));
        text = &rest[close + 1..];
    }
}
