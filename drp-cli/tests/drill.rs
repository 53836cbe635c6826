//! `drp demo` and `drp drill` on the real binary, with local-transport hosts: real HTTP
//! services (the demo's), real encrypted backups, real processes frozen by real signals,
//! `kill -9` of drp mid-drill. The same drills over SSH in network namespaces with a
//! network blackhole are in drill_netns.rs.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DRP: &str = env!("CARGO_BIN_EXE_drp");
/// Generous: a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn alive(pid: &str) -> bool {
    // A zombie is dead for our purpose: it serves nothing.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
}

/// A workspace made by `drp demo` (keys, plan, store with backups and one drill), with the
/// primary's services running again; every service is stopped on drop, also on panic.
struct Workspace {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    /// Drill records there before the test's own (the demo's).
    earlier: Vec<String>,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
}

impl Workspace {
    /// Runs the demo into a new directory and returns its output.
    fn demo() -> (Workspace, Output) {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(DRP)
            .args(["demo", "--dir"])
            .arg(dir.path().join("ws"))
            .output()
            .unwrap();
        (
            Workspace {
                dir,
                children: Vec::new(),
                earlier: Vec::new(),
            },
            out,
        )
    }

    /// A demo workspace ready for more drills: the primary's services started again, the
    /// spares free again (the demo's recovery leased them; a test frees them as an
    /// operator would once the drill is over) and empty.
    fn ready() -> Workspace {
        let (mut ws, out) = Workspace::demo();
        assert!(
            out.status.success(),
            "demo: {}{}",
            stdout(&out),
            stderr(&out)
        );
        for lease in fs::read_dir(ws.path("store/.drp/leases")).unwrap() {
            fs::remove_file(lease.unwrap().path()).unwrap();
        }
        for spare in ["spare-1", "spare-2"] {
            let _ = fs::remove_dir_all(ws.path(&format!("hosts/{spare}/srv")));
            for pid in fs::read_dir(ws.path(&format!("hosts/{spare}/run"))).unwrap() {
                fs::remove_file(pid.unwrap().path()).unwrap();
            }
        }
        ws.start_primary();
        ws.earlier = fs::read_dir(ws.path("store/.drp/drills"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ws
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("ws").join(rel)
    }

    fn plan(&self) -> String {
        fs::read_to_string(self.path("drp.toml")).unwrap()
    }

    /// The port of `stack`'s service, from the plan's probe URL.
    fn port(&self, stack: &str) -> u16 {
        let plan = self.plan();
        let section = plan
            .split(&format!("[stacks.{stack}.probes.http]"))
            .nth(1)
            .unwrap();
        let url = section.split("url = \"http://{host}:").nth(1).unwrap();
        url.split('/').next().unwrap().parse().unwrap()
    }

    fn start_primary(&mut self) {
        let host = self.path("hosts/primary-1");
        for stack in ["acme", "globex"] {
            let port = self.port(stack);
            let child = Command::new(DRP)
                .current_dir(&host)
                .args(["demo", "serve", "--root"])
                .arg(format!("srv/{stack}/www"))
                .args(["--address-file", "address", "--port"])
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            fs::write(
                host.join(format!("run/{stack}.pid")),
                format!("{}\n", child.id()),
            )
            .unwrap();
            self.children.push(child);
        }
        for stack in ["acme", "globex"] {
            let port = self.port(stack);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !answers("127.0.0.2", port) {
                assert!(Instant::now() < deadline, "{stack} did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Every pid of the demo's pid files (primary and spares).
    fn pids(&self) -> Vec<String> {
        let mut pids = Vec::new();
        for host in ["primary-1", "spare-1", "spare-2"] {
            if let Ok(entries) = fs::read_dir(self.path(&format!("hosts/{host}/run"))) {
                for entry in entries.flatten() {
                    if entry.path().extension().is_some_and(|e| e == "pid") {
                        pids.push(fs::read_to_string(entry.path()).unwrap().trim().to_string());
                    }
                }
            }
        }
        pids
    }

    fn add_scenario(&self, toml: &str) {
        let mut plan = self.plan();
        plan.push_str(toml);
        fs::write(self.path("drp.toml"), plan).unwrap();
    }

    fn drp(&self, args: &[&str]) -> Output {
        Command::new(DRP)
            .args(args)
            .current_dir(self.path(""))
            .output()
            .unwrap()
    }

    fn spawn_drill(&self, scenario: &str) -> Child {
        Command::new(DRP)
            .args([
                "drill",
                "run",
                "--plan",
                "drp.toml",
                "--yes",
                "--scenario",
                scenario,
            ])
            .current_dir(self.path(""))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The test's drill record (the newest not there before), once `ready` says so.
    fn wait_for_record(&self, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut records: Vec<(String, Value)> = fs::read_dir(self.path("store/.drp/drills"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    !self
                        .earlier
                        .contains(&e.file_name().to_string_lossy().into_owned())
                })
                .filter_map(|e| {
                    let text = fs::read_to_string(e.path()).ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        serde_json::from_str(&text).ok()?,
                    ))
                })
                .collect();
            records.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some((_, record)) = records.last()
                && ready(record)
            {
                return record.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no drill record got there: {records:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether an HTTP GET of `/` answers within a second.
fn answers(address: &str, port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect_timeout(
        &format!("{address}:{port}").parse().unwrap(),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    if conn.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(conn.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
}

fn wait_output(child: Child) -> Output {
    let deadline = Instant::now() + DEADLINE;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("drp did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_demo_runs_the_whole_job_and_stops_what_it_started() {
    let (ws, out) = Workspace::demo();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for expected in [
        "4. backups",
        "steady state holds",
        "detected by probe",
        "every stack is healthy again",
        "fault reverted on primary-1 by drp",
        ": PASS",
        "stack acme: RTO",
        "stack globex: RTO",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    // Recovered onto the spares, from the encrypted backups: the data came back.
    for stack in ["acme", "globex"] {
        let original =
            fs::read(ws.path(&format!("hosts/primary-1/srv/{stack}/www/index.html"))).unwrap();
        let restored: Vec<Vec<u8>> = ["spare-1", "spare-2"]
            .iter()
            .filter_map(|spare| {
                fs::read(ws.path(&format!("hosts/{spare}/srv/{stack}/www/index.html"))).ok()
            })
            .collect();
        assert_eq!(
            restored,
            vec![original],
            "{stack} restored onto exactly one spare"
        );
    }
    // Every service it started is gone.
    let pids = ws.pids();
    assert_eq!(pids.len(), 4, "two primaries and two recovered: {pids:?}");
    for pid in &pids {
        assert!(!alive(pid), "process {pid} still runs");
    }
    let html = fs::read_to_string(ws.path("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("PASS"), "{html}");
    assert!(text.contains(&format!(
        "HTML report: {}",
        ws.path("report.html").display()
    )));

    // The drill is in the history, and `drp report` renders it.
    let history = ws.drp(&["drill", "history", "--plan", "drp.toml", "--json"]);
    assert!(history.status.success(), "{}", stderr(&history));
    let rows: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["scenario"], "primary-outage");
    assert_eq!(rows[0]["verdict"], "PASS");
    assert!(rows[0]["downtime_ms"].as_u64().unwrap() > 0);
    let id = rows[0]["drill"].as_str().unwrap();
    let report = ws.drp(&["report", id, "--plan", "drp.toml"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let md = stdout(&report);
    assert!(md.starts_with(&format!("# Drill report: {id}")), "{md}");
    assert!(md.contains("| T3 every stack healthy | T0+"), "{md}");
    assert!(md.contains("## Recovery run"), "{md}");
}

#[test]
fn a_drill_killed_with_sigkill_is_reverted_by_its_dead_man_timer() {
    let ws = Workspace::ready();
    // Surprise mode: drp injects and waits for the team, which never comes; the fault's
    // revert leaves a line in a file so that we can count how often it ran.
    ws.add_scenario(
        r#"
[scenarios.killed]
mode = "surprise"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "kill -STOP $(cat run/*.pid)", revert = "kill -CONT $(cat run/*.pid); echo reverted >> reverts.log" }
duration = "5s"
"#,
    );
    let port = ws.port("acme");
    let mut drill = ws.spawn_drill("killed");
    let record = ws.wait_for_record(|r| r["marks"]["injected"].is_string());
    drill.kill().unwrap(); // SIGKILL: no chance to revert
    let out = drill.wait_with_output().unwrap();
    assert!(
        !answers("127.0.0.2", port),
        "the fault is in place: {record:#}\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let reverts = ws.path("hosts/primary-1/reverts.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reverts.exists() {
        assert!(
            Instant::now() < deadline,
            "the dead-man timer did not revert"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answers("127.0.0.2", port), "the service answers again");
    assert_eq!(fs::read_to_string(&reverts).unwrap(), "reverted\n");

    // The record still says running; `drp drill revert` closes it (and is safe to repeat).
    let id = record["drill"].as_str().unwrap();
    assert_eq!(record["state"], "running");
    let out = ws.drp(&["drill", "revert", id, "--plan", "drp.toml"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("reverted on primary-1"),
        "{}",
        stdout(&out)
    );
    let closed = ws.wait_for_record(|r| r["state"] != "running");
    assert_eq!(closed["state"], "aborted");
    assert!(closed["marks"]["reverted"].is_string());
    // The store is free for the next drill.
    assert!(!ws.path("store/.drp/drill-lock.json").exists());
}

#[test]
fn a_surprise_drill_measures_the_teams_recovery() {
    let ws = Workspace::ready();
    ws.add_scenario(
        r#"
[scenarios.surprise]
mode = "surprise"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "kill -STOP $(cat run/*.pid)", revert = "kill -CONT $(cat run/*.pid)" }
duration = "90s"
detect_within = "20s"
recover_within = "80s"
"#,
    );
    let drill = ws.spawn_drill("surprise");
    ws.wait_for_record(|r| r["marks"]["detected_by_probe"].is_object());
    // The team recovers with its procedure: drp recover.
    let out = ws.drp(&["recover", "--plan", "drp.toml", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = wait_output(drill);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("the team started recovery run"), "{text}");
    let record = ws.wait_for_record(|r| r["state"] == "finished");
    let marks = &record["marks"];
    for mark in ["injected", "recovery_started", "healthy", "reverted"] {
        assert!(marks[mark].is_string(), "{mark} missing: {record:#}");
    }
    assert_eq!(record["recovery_runs"].as_array().unwrap().len(), 1);
    for stack in record["stack_results"].as_array().unwrap() {
        let on = stack["healthy_on"].as_str().unwrap();
        assert!(on == "127.0.0.3" || on == "127.0.0.4", "{record:#}");
    }
}

#[test]
fn a_drill_injects_nothing_when_the_steady_state_does_not_hold() {
    let mut ws = Workspace::ready();
    ws.add_scenario(
        r#"
[scenarios.marked]
mode = "automatic"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "touch injected", revert = "rm -f injected" }
duration = "1m"
steady_state_within = "3s"
"#,
    );
    for child in &mut ws.children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let out = ws.drp(&[
        "drill",
        "run",
        "--plan",
        "drp.toml",
        "--yes",
        "--scenario",
        "marked",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("the steady state does not hold, nothing was injected: acme probe http"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.path("hosts/primary-1/injected").exists());
    let record = ws.wait_for_record(|r| r["state"] != "running");
    assert_eq!(record["state"], "not_started");
    assert!(record["marks"]["injected"].is_null());
}

#[test]
fn an_abort_probe_failing_stops_the_drill_and_reverts_at_once() {
    let ws = Workspace::ready();
    // The abort probe watches something outside the blast radius; the fault (by design of
    // this test) also breaks it.
    let outside = ws.path("outside-ok");
    fs::write(&outside, "").unwrap();
    ws.add_scenario(&format!(
        r#"
[scenarios.abort]
mode = "surprise"
targets = {{ hosts = ["primary-1"] }}
fault = {{ kind = "command", inject = "kill -STOP $(cat run/*.pid) && rm {outside}", revert = "kill -CONT $(cat run/*.pid); touch {outside}" }}
duration = "2m"

[scenarios.abort.abort_probes.outside]
kind = "command"
command = "test -e {outside}"
on = "local"
interval = "300ms"
failure_threshold = 1
"#,
        outside = outside.display()
    ));
    let started = Instant::now();
    let out = ws.drp(&[
        "drill",
        "run",
        "--plan",
        "drp.toml",
        "--yes",
        "--scenario",
        "abort",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "aborted, not timed out"
    );
    let text = stdout(&out);
    assert!(
        text.contains("aborting: abort probe outside failed"),
        "{text}"
    );
    assert!(text.contains("ABORTED"), "{text}");
    assert!(outside.exists(), "reverted");
    assert!(answers("127.0.0.2", ws.port("acme")));
}

#[test]
fn secrets_stay_out_of_drill_output_and_records() {
    const TOKEN: &str = "hook-token-SEKRIT-5d2e";
    let ws = Workspace::ready();
    // A plan secret (a webhook URL from the environment) that the fault's error output
    // echoes: it must be hidden from drp's output and from the record in the store.
    ws.add_scenario(
        r#"
[[notifiers]]
name = "hook"
kind = "webhook"
url_env = "DRILL_HOOK_URL"

[scenarios.leaky]
mode = "automatic"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "echo \"cannot reach $DRILL_HOOK_URL\" >&2; exit 4", revert = "true" }
duration = "1m"
"#,
    );
    let out = Command::new(DRP)
        .args([
            "drill",
            "run",
            "--plan",
            "drp.toml",
            "--yes",
            "--scenario",
            "leaky",
        ])
        .current_dir(ws.path(""))
        .env("DRILL_HOOK_URL", format!("http://127.0.0.1:9/{TOKEN}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(shown.contains("cannot reach ***"), "{shown}");
    let record = ws.wait_for_record(|r| r["state"] == "not_started");
    let everything = format!("{shown}{record}");
    assert!(
        !everything.contains(TOKEN),
        "the token leaked: {everything}"
    );
}

#[test]
fn ctrl_c_aborts_a_drill_and_reverts_at_once() {
    let ws = Workspace::ready();
    ws.add_scenario(
        r#"
[scenarios.interrupted]
mode = "surprise"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "kill -STOP $(cat run/*.pid)", revert = "kill -CONT $(cat run/*.pid); echo reverted >> reverts.log" }
duration = "5m"
"#,
    );
    let drill = ws.spawn_drill("interrupted");
    ws.wait_for_record(|r| r["marks"]["injected"].is_string());
    assert!(
        !answers("127.0.0.2", ws.port("acme")),
        "the fault is in place"
    );
    let status = Command::new("kill")
        .args(["-INT", &drill.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait_output(drill);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("interrupted: reverting the fault"),
        "{}",
        stderr(&out)
    );
    assert!(
        answers("127.0.0.2", ws.port("acme")),
        "reverted at once, not after 5m"
    );
    assert_eq!(
        fs::read_to_string(ws.path("hosts/primary-1/reverts.log")).unwrap(),
        "reverted\n",
        "reverted once: by drp, and its dead-man disarmed"
    );
    let record = ws.wait_for_record(|r| r["state"] != "running");
    assert_eq!(record["state"], "aborted");
    assert_eq!(record["abort_reason"], "interrupted by the operator");
}

#[test]
fn a_drill_asks_first_and_without_a_terminal_needs_yes() {
    let (ws, out) = Workspace::demo();
    assert!(out.status.success());
    let out = ws.drp(&[
        "drill",
        "run",
        "--plan",
        "drp.toml",
        "--scenario",
        "primary-outage",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Drill primary-outage: command `kill -STOP")
            && err.contains("run with --yes to start the drill"),
        "{err}"
    );
    // Nothing was recorded: the demo's own drill is the only one.
    assert_eq!(
        fs::read_dir(ws.path("store/.drp/drills")).unwrap().count(),
        1
    );
    let unknown = ws.drp(&[
        "drill",
        "run",
        "--plan",
        "drp.toml",
        "--scenario",
        "nope",
        "--yes",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("scenario nope is not in drp.toml (it has: primary-outage)"),
        "{}",
        stderr(&unknown)
    );
}

/// POSTs an Alertmanager webhook body to `port`'s `/alertmanager`.
fn post_alert(port: u16) {
    use std::io::{Read, Write};
    let body = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"ShopDown","severity":"page"},"startsAt":"2026-11-29T10:00:00Z"}]}"#;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /alertmanager?source=prometheus HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 2"), "{answer}");
}

#[test]
fn the_teams_monitoring_detects_through_the_alert_receiver_and_customers_hear_only_the_test_route()
{
    let ws = Workspace::ready();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // drp's own probes would notice only after a minute (a long interval): the team's
    // monitoring, posting to the alert receiver, is first.
    let plan = ws
        .plan()
        .replace("interval = \"500ms\"", "interval = \"60s\"");
    fs::write(ws.path("drp.toml"), plan).unwrap();
    ws.add_scenario(&format!(
        r#"
[scenarios.alerted]
mode = "automatic"
targets = {{ hosts = ["primary-1"] }}
fault = {{ kind = "command", inject = "kill -STOP $(cat run/*.pid)", revert = "kill -CONT $(cat run/*.pid)" }}
duration = "2m"
detect_within = "30s"
alert_receiver = "127.0.0.1:{port}"
test_route = "team-log"
"#
    ));
    let before = fs::read_to_string(ws.path("notifications.jsonl")).unwrap();
    // The demo's own drill had no test route: no message for a customer went anywhere.
    assert!(!before.contains("\"audience\":\"customer\""), "{before}");

    let drill = ws.spawn_drill("alerted");
    ws.wait_for_record(|r| r["marks"]["injected"].is_string());
    post_alert(port);
    let out = wait_output(drill);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let record = ws.wait_for_record(|r| r["state"] == "finished");
    let by_alert = &record["marks"]["detected_by_alert"];
    assert_eq!(by_alert["source"], "alert from prometheus", "{record:#}");
    assert_eq!(by_alert["detail"], "alert ShopDown");
    assert!(record["marks"]["detected_by_probe"].is_null(), "{record:#}");
    assert_eq!(record["alerts"].as_array().unwrap().len(), 1);
    assert!(record["time_to_detect_ms"].is_null(), "not a record field");
    // The recovered stacks' customers were told — through the test route only.
    let after = fs::read_to_string(ws.path("notifications.jsonl")).unwrap();
    let new = &after[before.len()..];
    assert!(new.contains("\"audience\":\"customer\""), "{new}");
}
