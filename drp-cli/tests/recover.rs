//! `drp recover` on the real binary: real encrypted backups (in moto S3 or a directory
//! store), real sshd hosts on loopback, real HTTP services and probes, `kill -9` and resume,
//! two operators racing for one plan. Nothing here is a mock.

#[path = "../../drp-backup/tests/support/mod.rs"]
mod support;

#[path = "../../drp-provision/tests/support/sshd.rs"]
mod sshd;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sshd::Sshd;
use support::s3::S3Server;

const DRP: &str = env!("CARGO_BIN_EXE_drp");
/// Generous: a loaded 2-core machine, sshd and moto starting.
const DEADLINE: Duration = Duration::from_secs(180);
const PASSPHRASE: &str = "correct-horse-battery-staple-4711";
const HOOK_SECRET: &str = "hook-token-SEKRIT-93b1c7";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test's world: a directory, sshd "spare hosts", optionally moto; services the
/// recovery starts (their pid files under `pids/`) are killed on drop, also on panic.
struct World {
    dir: tempfile::TempDir,
    hosts: Vec<Sshd>,
    s3: Option<S3Server>,
    children: Vec<Child>,
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(entries) = fs::read_dir(self.path("pids")) {
            for entry in entries.flatten() {
                if let Ok(pid) = fs::read_to_string(entry.path()) {
                    let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
                }
            }
        }
    }
}

impl World {
    fn new(hosts: usize, s3: bool) -> World {
        let world = World {
            dir: tempfile::tempdir().unwrap(),
            hosts: (0..hosts).map(|_| Sshd::start()).collect(),
            s3: s3.then(S3Server::start),
            children: Vec::new(),
        };
        fs::create_dir_all(world.path("pids")).unwrap();
        world
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn store_url(&self) -> String {
        match &self.s3 {
            Some(s3) => s3.url("drp"),
            None => format!("file://{}", self.path("store").display()),
        }
    }

    fn drp(&self, args: &[&str]) -> Command {
        let mut command = Command::new(DRP);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("ACME_PASS", PASSPHRASE)
            .env(
                "HOOK_URL",
                format!("http://127.0.0.1:{}/{HOOK_SECRET}", free_port()),
            )
            .stdin(Stdio::null());
        if let Some(s3) = &self.s3 {
            command.envs(s3.env());
        }
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.drp(args).output().unwrap();
        assert!(
            out.status.success(),
            "drp {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Keys (the customer's passphrase-protected) and the plan's header, hosts and notifier.
    fn plan_head(&self) -> String {
        self.ok(&[
            "keys",
            "generate",
            "--name",
            "acme",
            "--dir",
            "keys",
            "--passphrase-env",
            "ACME_PASS",
        ]);
        let mut plan = format!(
            r#"format = 1
[storage]
url = "{}"

[customers.acme]
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"
passphrase_env = "ACME_PASS"

[datacenters.dc2]

[[notifiers]]
name = "hook"
kind = "webhook"
url_env = "HOOK_URL"

"#,
            self.store_url()
        );
        for (i, host) in self.hosts.iter().enumerate() {
            plan.push_str(&format!(
                r#"[[hosts]]
name = "spare-{i}"
datacenter = "dc2"
address = "{}"
roles = ["app"]
spare = true
ssh_key = "{}"
known_hosts = "{}"

"#,
                host.target(),
                host.client_key().display(),
                host.known_hosts().display()
            ));
        }
        plan
    }

    /// A site directory whose index holds `marker`, backed up for `stack`.
    fn back_up_site(&self, stack: &str, marker: &str, extra: &[&str]) {
        let site = self.path(&format!("site/{stack}/www"));
        fs::create_dir_all(&site).unwrap();
        fs::write(site.join("index.html"), format!("<h1>{marker}</h1>\n")).unwrap();
        let www = format!("www={}", site.display());
        let url = self.store_url();
        let mut args = vec![
            "backup",
            "create",
            "--store",
            &url,
            "--stack",
            stack,
            "--recipient",
            "keys/acme.pub.asc",
            &www,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// The local journal copy of the only run so far, once it exists.
    fn journal_path(&self) -> Option<PathBuf> {
        fs::read_dir(self.path(".drp/runs"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
    }

    fn events(&self) -> Vec<Value> {
        let Some(path) = self.journal_path() else {
            return Vec::new();
        };
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut(&[Value]) -> bool) {
        let start = Instant::now();
        loop {
            if done(&self.events()) {
                return;
            }
            assert!(start.elapsed() < DEADLINE, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn succeeded(events: &[Value], stack: &str, step: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["event"] == "step_finished"
                && e["stack"] == stack
                && e["step"] == step
                && e["outcome"]["status"] == "succeeded"
        })
        .count()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A start command that serves `dir` over HTTP on `port` in the background (pid kept for
/// the world to kill).
fn serve(world: &World, stack: &str, dir: &Path, port: u16) -> String {
    // The server alone goes to the background, its output away from the SSH channel, so
    // the command ends (a backgrounded `cd && ...` subshell would keep the channel open).
    format!(
        "nohup python3 -m http.server {port} --bind 127.0.0.1 --directory {} </dev/null \
         >/dev/null 2>&1 & echo $! > {}",
        dir.display(),
        world.path(&format!("pids/{stack}.pid")).display()
    )
}

#[test]
fn three_stacks_come_back_from_encrypted_s3_backups_onto_ssh_hosts() {
    let world = World::new(3, true);
    let mut plan = world.plan_head();
    // db first; web depends on it; api on its own.
    for (stack, depends) in [("db", ""), ("web", "db"), ("api", "")] {
        let marker = format!("restored-{stack}-content");
        world.back_up_site(stack, &marker, &[]);
        let port = free_port();
        let target = world.path(&format!("hosts/{stack}"));
        let depends = if depends.is_empty() {
            String::new()
        } else {
            format!("depends_on = [\"{depends}\"]\n")
        };
        plan.push_str(&format!(
            r#"[stacks.{stack}]
customer = "acme"
role = "app"
{depends}sources = ["www=/unused/{stack}"]
restore_to = "{target}"
start_commands = ["{start}"]
rto = "10m"
rpo = "1h"
notify = ["hook"]
healthy_within = "60s"

[stacks.{stack}.probes.home]
kind = "http"
url = "http://{{host}}:{port}/index.html"
conditions = ["[STATUS] == 200", "[BODY] == pat(*{marker}*)"]
interval = "200ms"

"#,
            target = target.display(),
            start = serve(&world, stack, &target.join("www"), port).replace('"', "\\\""),
        ));
    }
    plan.push_str("[recovery]\ntarget_datacenter = \"dc2\"\nparallelism = 2\n");
    fs::write(world.path("drp.toml"), plan).unwrap();
    world.ok(&["plan", "check", "drp.toml"]);

    let out = world.drp(&["recover", "--yes"]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");

    // The data is on the hosts, the services serve it (the probes said so; check again).
    for stack in ["db", "web", "api"] {
        let index =
            fs::read_to_string(world.path(&format!("hosts/{stack}/www/index.html"))).unwrap();
        assert!(index.contains(&format!("restored-{stack}-content")));
    }
    let events = world.events();
    // web started only after db recovered.
    let position = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let db_done = position(&|e| e["event"] == "stack_finished" && e["stack"] == "db");
    let web_start = position(&|e| e["event"] == "stack_started" && e["stack"] == "web");
    assert!(db_done < web_start, "web started before db recovered");
    // Three different spares.
    let mut hosts: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["step"] == "acquire-host")
        .map(|e| e["outcome"]["facts"]["host"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    // Measurements: journaled last, RTO and RPO within the objectives.
    let measured = events.last().unwrap();
    assert_eq!(measured["event"], "run_measured", "{measured}");
    let m = &measured["measurements"];
    assert_eq!(m["passed"], true, "{m}");
    for s in m["stacks"].as_array().unwrap() {
        assert_eq!(s["outcome"], "recovered");
        assert_eq!(s["rto_verdict"], "PASS");
        assert_eq!(s["rpo_verdict"], "PASS");
        assert!(s["rto_ms"].as_u64().unwrap() > 0);
        assert!(s["snapshot"].is_string());
    }
    assert!(shown.contains("overall: RTO"), "{shown}");
    eprintln!("{shown}");

    // The webhook is down: its failure is on the record, the run still succeeded, and no
    // secret (key passphrase, webhook URL token) is in the journal (both copies) or output.
    let journal = fs::read_to_string(world.journal_path().unwrap()).unwrap();
    assert!(journal.contains("notification through hook"), "{journal}");
    let run = measured["run"].as_str().unwrap();
    let store_copy = world.ok(&["recover", "--dry-run", "--json"]); // reads the store
    let mut everything = format!("{shown}{journal}{store_copy}");
    // Every other output of the run, at the most verbose log level too.
    for format in ["md", "html", "json"] {
        let out = world
            .drp(&["-vv", "report", run, "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        everything.push_str(&text(&out));
    }
    for args in [
        &["-vv", "runs", "list", "--json"][..],
        &["-vv", "plan", "doc"][..],
    ] {
        let out = world.drp(args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        everything.push_str(&text(&out));
    }
    let s3 = world.s3.as_ref().unwrap();
    let listing = s3_listing(s3, run);
    everything.push_str(&listing);
    for secret in [PASSPHRASE, HOOK_SECRET] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    assert!(listing.contains("notification through hook"), "{listing}");
}

/// The store's copy of a run's journal, read back with `aws`-free means: drp's own library
/// would do, but the test reads the objects through the S3 API to see what is really there.
fn s3_listing(s3: &S3Server, run: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let env: Vec<(String, String)> = s3
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let store = drp_core::backup::open_store_with(&s3.url("drp"), env).unwrap();
        let events = drp_core::executor::journal::read_journal(store.as_ref(), run)
            .await
            .unwrap();
        serde_json::to_string(&events).unwrap()
    })
}

/// One stack whose every command step leaves a line in a log on the host; `drp recover` is
/// killed with SIGKILL right after each step boundary and resumed; every step ran once.
#[test]
fn a_run_killed_at_every_step_boundary_resumes_and_runs_each_step_once() {
    let world = World::new(1, false);
    let mut plan = world.plan_head();
    world.back_up_site("shop", "restored-shop", &[]);
    let log = world.path("steps.log");
    // The sleep holds each command before its mark: a kill lands before the mark is made,
    // and the orphaned command dies writing to the closed channel (`echo alive`).
    let step = |name: &str| format!("sleep 1; echo alive; echo {name} >> {}", log.display());
    plan.push_str(&format!(
        r#"[stacks.shop]
customer = "acme"
role = "app"
sources = ["www=/unused"]
restore_to = "{}"
restore_commands = ["{}"]
start_commands = ["{}", "{}"]

[recovery]
target_datacenter = "dc2"
"#,
        world.path("hosts/shop").display(),
        step("restore-command"),
        step("start-1"),
        step("start-2"),
    ));
    fs::write(world.path("drp.toml"), plan).unwrap();
    let steps = [
        "acquire-host",
        "restore:www",
        "restore-command:1",
        "start:1",
        "start:2",
    ];

    let mut run_id: Option<String> = None;
    for boundary in 1..steps.len() {
        let mut args = vec!["recover".to_string()];
        if let Some(id) = &run_id {
            args.extend(["--resume".to_string(), id.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = world.drp(&args).stdout(Stdio::null()).spawn().unwrap();
        let finished = steps[boundary - 1];
        world.wait_for(&format!("{finished} to finish"), |events| {
            succeeded(events, "shop", finished) == 1
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        run_id = world
            .events()
            .first()
            .map(|e| e["run"].as_str().unwrap().to_string());
    }
    let run_id = run_id.unwrap();
    let out = world
        .drp(&["recover", "--resume", &run_id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let events = world.events();
    for step in steps {
        assert_eq!(
            succeeded(&events, "shop", step),
            1,
            "{step} did not run exactly once"
        );
    }
    let marks = fs::read_to_string(&log).unwrap();
    assert_eq!(
        marks.lines().collect::<Vec<_>>(),
        ["restore-command", "start-1", "start-2"],
        "{marks}"
    );
    let resumed = events
        .iter()
        .filter(|e| e["event"] == "run_started" && e["resumed"] == true)
        .count();
    assert_eq!(resumed, steps.len() - 1);
    assert!(
        fs::read_to_string(world.path("hosts/shop/www/index.html"))
            .unwrap()
            .contains("restored-shop")
    );
}

/// Two operators start the same plan: one runs, the other is told who holds the lock and
/// since when; once the first is done, the lock is free.
#[test]
fn a_second_concurrent_run_of_a_plan_is_refused_naming_the_holder() {
    let mut world = World::new(1, false);
    let mut plan = world.plan_head();
    world.back_up_site("shop", "restored-shop", &[]);
    let gate = world.path("gate");
    plan.push_str(&format!(
        r#"[stacks.shop]
customer = "acme"
role = "app"
sources = ["www=/unused"]
restore_to = "{}"
start_commands = ["while [ ! -f {} ]; do sleep 0.05; done"]

[recovery]
target_datacenter = "dc2"
"#,
        world.path("hosts/shop").display(),
        gate.display()
    ));
    fs::write(world.path("drp.toml"), plan).unwrap();

    let first = world
        .drp(&["recover"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    world.children.push(first);
    world.wait_for("the first run to start its service", |events| {
        events
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"] == "start:1")
    });
    let run = world.events()[0]["run"].as_str().unwrap().to_string();

    let second = world.drp(&["recover"]).output().unwrap();
    let message = text(&second);
    assert_eq!(second.status.code(), Some(1), "{message}");
    let pid = world.children[0].id().to_string();
    for expected in [run.as_str(), "pid", pid.as_str(), "since", "--break-lock"] {
        assert!(message.contains(expected), "{expected} missing: {message}");
    }

    fs::write(&gate, "").unwrap();
    let status = world.children[0].wait().unwrap();
    assert!(status.success());
    // Free again: a dry run does not need it, a break finds nothing to break.
    assert!(
        world
            .ok(&["recover", "--break-lock"])
            .contains("not locked")
    );
}

/// An approval gate with nobody to ask (no terminal, no `--yes`) fails its stack, saying how
/// to approve; the start command never runs. With `--yes`, the run resumes past it.
#[test]
fn an_approval_gate_without_a_terminal_fails_the_stack_until_approved_with_yes() {
    let world = World::new(1, false);
    let mut plan = world.plan_head();
    world.back_up_site("shop", "restored-shop", &[]);
    let started = world.path("started");
    plan.push_str(&format!(
        r#"[stacks.shop]
customer = "acme"
role = "app"
sources = ["www=/unused"]
restore_to = "{}"
approve_before_start = true
start_commands = ["touch {}"]

[recovery]
target_datacenter = "dc2"
"#,
        world.path("hosts/shop").display(),
        started.display()
    ));
    fs::write(world.path("drp.toml"), plan).unwrap();

    let refused = world.drp(&["recover"]).output().unwrap();
    let message = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(message.contains("approve-start"), "{message}");
    assert!(message.contains("--yes"), "{message}");
    assert!(!started.exists(), "the start command ran without approval");

    let run = world.events()[0]["run"].as_str().unwrap().to_string();
    let out = world
        .drp(&["recover", "--resume", &run, "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(started.exists());
    let events = world.events();
    assert_eq!(succeeded(&events, "shop", "restore:www"), 1);
    assert_eq!(succeeded(&events, "shop", "approve-start"), 1);
}

/// No spare in the target datacenter: its script provisioner creates the hosts (here, names
/// for one sshd). A stack that fails tells the team which step failed and why.
#[test]
fn hosts_come_from_the_provisioner_when_no_spare_exists_and_failures_are_notified() {
    let mut world = World::new(0, false);
    let server = Sshd::start();
    let mut plan = world.plan_head();
    world.back_up_site("shop", "restored-shop", &[]);
    world.back_up_site("broken", "restored-broken", &[]);
    fs::write(
        world.path("create-host.sh"),
        format!(
            "echo '{{\"name\": \"cloud-'$$'\", \"address\": \"{}\"}}'\n",
            server.target()
        ),
    )
    .unwrap();
    plan = plan.replace(
        "[datacenters.dc2]\n",
        &format!(
            "[datacenters.dc2]\nprovisioner = \"cloud\"\nssh_key = \"{}\"\nknown_hosts = \"{}\"\n\n\
             [provisioners.cloud]\nkind = \"script\"\nacquire = \"sh create-host.sh\"\n\n\
             [[notifiers]]\nname = \"journal\"\nkind = \"log\"\npath = \"notifications.jsonl\"\n",
            server.client_key().display(),
            server.known_hosts().display()
        ),
    );
    // The broken service's error output echoes the key passphrase: it must be hidden from
    // the journal, the output and the notification.
    let broken = format!("echo no disk, passphrase {PASSPHRASE} >&2; exit 3");
    for (stack, start) in [("shop", "true"), ("broken", broken.as_str())] {
        plan.push_str(&format!(
            r#"[stacks.{stack}]
customer = "acme"
role = "app"
sources = ["www=/unused"]
restore_to = "{}"
start_commands = ["{start}"]
notify = ["journal"]

"#,
            world.path(&format!("hosts/{stack}")).display(),
        ));
    }
    // One attempt: the broken stack fails the same way every time.
    plan.push_str("[recovery]\ntarget_datacenter = \"dc2\"\nretries = 0\n");
    fs::write(world.path("drp.toml"), plan).unwrap();

    let out = world.drp(&["recover"]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("created by provisioner cloud"), "{shown}");
    assert!(world.path("hosts/shop/www/index.html").exists());
    let events = world.events();
    assert_eq!(succeeded(&events, "shop", "notify-recovered"), 1);
    let failed = events
        .iter()
        .find(|e| e["event"] == "stack_finished" && e["stack"] == "broken")
        .unwrap();
    assert_eq!(failed["outcome"]["status"], "failed", "{failed}");
    assert_eq!(failed["outcome"]["step"], "start:1", "{failed}");
    let told = fs::read_to_string(world.path("notifications.jsonl")).unwrap();
    assert!(
        told.contains("start:1") && told.contains("no disk"),
        "{told}"
    );
    let journal = fs::read_to_string(world.journal_path().unwrap()).unwrap();
    assert!(journal.contains("passphrase ***"), "{journal}");
    for place in [&shown, &journal, &told] {
        assert!(
            !place.contains(PASSPHRASE),
            "the passphrase leaked: {place}"
        );
    }
    world.hosts.push(server); // stopped with the world
}
