//! `drp demo`: the whole job on one machine, without root and without servers.
//!
//! Three "hosts" are directories with their own loopback address (Linux routes all of
//! 127.0.0.0/8 to `lo`, so 127.0.0.2 and 127.0.0.3 are distinct addresses to bind without
//! root), reached with the local transport: `primary-1` runs two customer stacks, each an
//! HTTP service serving its data; `spare-1` and `spare-2` are the spare datacenter. The demo
//! generates keys, writes a plan, backs both stacks up (encrypted to each customer's key,
//! signed), then drills: the fault freezes the primary's services (SIGSTOP), drp's probes
//! notice, drp recovers both stacks onto the spares from the encrypted backups, their probes
//! pass there, the fault is reverted, and the report is written. Every process the demo
//! started is stopped at the end, also when it fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use drp_core::backup_plan::StackBackup;
use drp_core::drill::{self, DrillOptions};
use drp_core::exit;
use drp_core::plan::{self, CheckOptions};
use drp_core::provision::shell_quote;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::output::CommandError;
use crate::plan::write_stdout;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    /// The demo's workspace (created; must not exist). Default: a new directory under the
    /// system's temporary directory. It is kept, with the plan and the report.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub serve: Option<DemoServe>,
}

#[derive(Debug, Subcommand)]
pub enum DemoServe {
    /// The demo's HTTP service: serves the files of a directory (what the demo's stacks
    /// run; used by its plan's start commands).
    #[command(hide = true)]
    Serve {
        /// The directory served.
        #[arg(long)]
        root: PathBuf,
        /// A file holding the address to listen on (each demo host has its own).
        #[arg(long)]
        address_file: PathBuf,
        /// The port.
        #[arg(long)]
        port: u16,
    },
}

/// The demo's customers: (stack, customer display name, what its service shows).
const STACKS: [(&str, &str, &str); 2] = [
    ("acme", "ACME Corp", "acme storefront: 42 open orders"),
    (
        "globex",
        "Globex",
        "globex partner portal: 7 shipments in transit",
    ),
];

/// The demo's hosts: (name, datacenter, address, spare).
const HOSTS: [(&str, &str, Ipv4Addr, bool); 3] = [
    ("primary-1", "primary", Ipv4Addr::new(127, 0, 0, 2), false),
    ("spare-1", "spare", Ipv4Addr::new(127, 0, 0, 3), true),
    ("spare-2", "spare", Ipv4Addr::new(127, 0, 0, 4), true),
];

pub async fn run(args: DemoArgs) -> Result<u8, CommandError> {
    if let Some(DemoServe::Serve {
        root,
        address_file,
        port,
    }) = args.serve
    {
        return serve(&root, &address_file, port).await;
    }
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "drp-demo-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S")
        )),
    };
    if dir.exists() {
        return Err(CommandError::message(format!(
            "{} exists: the demo wants a new directory (--dir)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    let dir = dir.canonicalize().map_err(|e| io_error(&dir, e))?;
    say(&format!("drp demo in {}", dir.display()));
    let mut services = Services::default();
    let result = demo(&dir, &mut services).await;
    services.stop(&dir);
    say("stopped every service the demo started");
    result
}

async fn demo(dir: &Path, services: &mut Services) -> Result<u8, CommandError> {
    let drp = std::env::current_exe()
        .map_err(|e| CommandError::message(format!("where is drp itself: {e}")))?;

    say("1. keys: one key pair per customer, and the ops key that signs manifests");
    let keys = dir.join("keys");
    for name in ["acme", "globex", "ops"] {
        drp_core::backup::keys::generate_key(name, &keys, None)
            .map_err(|e| CommandError::message(e.to_string()))?;
    }

    say("2. hosts: primary-1 runs the stacks; spare-1 and spare-2 wait in the spare datacenter");
    for (name, _, address, _) in HOSTS {
        let host = dir.join("hosts").join(name);
        std::fs::create_dir_all(host.join("run")).map_err(|e| io_error(&host, e))?;
        write(&host.join("address"), &address.to_string())?;
    }
    let ports = free_ports()?;
    let primary = dir.join("hosts/primary-1");
    for ((stack, _, content), port) in STACKS.iter().zip(&ports) {
        let www = primary.join("srv").join(stack).join("www");
        std::fs::create_dir_all(&www).map_err(|e| io_error(&www, e))?;
        write(&www.join("index.html"), &format!("<h1>{content}</h1>\n"))?;
        write(
            &primary.join("srv").join(stack).join("orders.sql"),
            &format!("-- {stack} database dump\nCREATE TABLE orders (id int);\n"),
        )?;
        services.start(&drp, &primary, stack, *port)?;
        say(&format!(
            "   {stack}: http://{}:{port}/ on primary-1",
            HOSTS[0].2
        ));
    }

    let plan_path = dir.join("drp.toml");
    write(&plan_path, &plan_text(dir, &drp, &ports))?;
    say(&format!("3. plan: {}", plan_path.display()));
    let plan = plan::load(&plan_path, CheckOptions::default())
        .map_err(|e| CommandError::message(e.to_string()))?;

    say("4. backups: each stack encrypted to its own customer's key, signed by ops");
    for (stack, _, _) in STACKS {
        let target = StackBackup::resolve(&plan, stack)?;
        let manifest = target
            .repository()?
            .create(target.create_options()?)
            .await?;
        let bytes: u64 = manifest.sources.iter().map(|s| s.stored_bytes).sum();
        say(&format!(
            "   {stack}: snapshot {} ({} sources, {bytes} bytes stored)",
            manifest.snapshot,
            manifest.sources.len()
        ));
    }

    say("5. drill: freeze primary-1's services; drp detects, recovers onto the spares, reverts");
    let store = drp_core::backup::open_store_with(&plan.storage.url, plan.storage.options.clone())?;
    let plan = Arc::new(plan);
    let options = DrillOptions::new("primary-outage");
    let record = drill::run_drill(
        plan.clone(),
        store.clone(),
        options,
        Arc::new(Indented),
        CancellationToken::new(),
    )
    .await
    .map_err(|e| CommandError::message(e.to_string()))?;

    let report = drill::report::load(&plan, store.as_ref(), &record.drill)
        .await
        .map_err(|e| CommandError::message(e.to_string()))?;
    let html = dir.join("report.html");
    crate::output::write_file(&html, &drill::report::html(&report))?;
    write(&dir.join("report.md"), &drill::report::markdown(&report))?;
    let mut out = String::from("\n");
    for line in drill::report::summary_lines(&record) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("HTML report: {}\n", html.display()));
    write_stdout(&out)?;
    Ok(if record.passed() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

/// The demo's plan.
fn plan_text(dir: &Path, drp: &Path, ports: &[u16]) -> String {
    let mut text = format!(
        r#"# The plan `drp demo` wrote: two customer stacks on primary-1, two spare hosts.
format = 1
name = "demo"

[storage]
url = "file://{store}"
signing_key = "keys/ops.sec.asc"
trust = ["keys/ops.pub.asc"]

[customers.acme]
name = "ACME Corp"
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"

[customers.globex]
name = "Globex"
certificates = ["keys/globex.pub.asc"]
secret_key = "keys/globex.sec.asc"

[datacenters.primary]
description = "where the stacks run"

[datacenters.spare]
description = "the spare servers"
"#,
        store = dir.join("store").display()
    );
    for (name, dc, address, spare) in HOSTS {
        text.push_str(&format!(
            "\n[[hosts]]\nname = \"{name}\"\ndatacenter = \"{dc}\"\naddress = \"{address}\"\n\
             transport = \"local\"\ndir = \"hosts/{name}\"\nroles = [\"web\"]\nspare = {spare}\n"
        ));
    }
    for ((stack, _, _), port) in STACKS.iter().zip(ports) {
        let start = format!(
            "nohup {} demo serve --root srv/{stack}/www --address-file address --port {port} \
             </dev/null >run/{stack}.log 2>&1 & echo $! > run/{stack}.pid",
            shell_quote(&drp.to_string_lossy())
        );
        text.push_str(&format!(
            r#"
[stacks.{stack}]
customer = "{stack}"
host = "primary-1"
role = "web"
rto = "30s"
rpo = "1h"
sources = [
  {{ name = "www", path = "srv/{stack}/www", restore_to = "srv/{stack}" }},
  {{ name = "db", command = "cat srv/{stack}/orders.sql", restore_to = "srv/{stack}" }},
]
start_commands = [{start:?}]
healthy_within = "20s"

[stacks.{stack}.probes.http]
kind = "http"
url = "http://{{host}}:{port}/"
conditions = ["[STATUS] == 200", "[BODY] == pat(*{stack}*)"]
interval = "500ms"
timeout = "1s"
failure_threshold = 2
"#
        ));
    }
    text.push_str(
        r#"
[[notifiers]]
name = "team-log"
kind = "log"
path = "notifications.jsonl"
audiences = ["team", "customer"]

[recovery]
target_datacenter = "spare"
parallelism = 2
retries = 1
backoff = "1s"
notify = ["team-log"]

[scenarios.primary-outage]
description = "primary-1's services stop answering (frozen with SIGSTOP)"
mode = "automatic"
targets = { hosts = ["primary-1"] }
fault = { kind = "command", inject = "kill -STOP $(cat run/*.pid)", revert = "kill -CONT $(cat run/*.pid)" }
duration = "2m"
steady_state_within = "15s"
detect_within = "10s"
recover_within = "45s"
"#,
    );
    text
}

/// Ports free on every demo address, one per stack.
fn free_ports() -> Result<Vec<u16>, CommandError> {
    let mut ports = Vec::new();
    for _ in 0..50 {
        if ports.len() == STACKS.len() {
            break;
        }
        let probe = std::net::TcpListener::bind((HOSTS[0].2, 0)).map_err(|e| {
            CommandError::message(format!(
                "cannot listen on {}: {e} (the demo needs Linux, where all of 127.0.0.0/8 is \
                 this machine)",
                HOSTS[0].2
            ))
        })?;
        let port = probe
            .local_addr()
            .map_err(|e| CommandError::message(e.to_string()))?
            .port();
        drop(probe);
        let free_everywhere = HOSTS
            .iter()
            .all(|(_, _, address, _)| std::net::TcpListener::bind((*address, port)).is_ok());
        if free_everywhere && !ports.contains(&port) {
            ports.push(port);
        }
    }
    if ports.len() < STACKS.len() {
        return Err(CommandError::message("no free ports on the demo addresses"));
    }
    Ok(ports)
}

/// The services the demo started (and those its plan started on the spares, found by
/// their pid files).
#[derive(Default)]
struct Services {
    children: Vec<std::process::Child>,
}

impl Services {
    fn start(
        &mut self,
        drp: &Path,
        host: &Path,
        stack: &str,
        port: u16,
    ) -> Result<(), CommandError> {
        let log = std::fs::File::create(host.join("run").join(format!("{stack}.log")))
            .map_err(|e| io_error(host, e))?;
        let child = std::process::Command::new(drp)
            .current_dir(host)
            .args(["demo", "serve", "--root"])
            .arg(format!("srv/{stack}/www"))
            .args(["--address-file", "address", "--port"])
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| io_error(host, e))?)
            .stderr(log)
            .spawn()
            .map_err(|e| CommandError::message(format!("starting the {stack} service: {e}")))?;
        write(
            &host.join("run").join(format!("{stack}.pid")),
            &format!("{}\n", child.id()),
        )?;
        self.children.push(child);
        Ok(())
    }

    /// Stops everything: a frozen process is woken first, so it can die.
    fn stop(&mut self, dir: &Path) {
        let mut pids: Vec<String> = Vec::new();
        for (name, ..) in HOSTS {
            let run = dir.join("hosts").join(name).join("run");
            for entry in std::fs::read_dir(&run).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "pid")
                    && let Ok(pid) = std::fs::read_to_string(entry.path())
                    && pid.trim().chars().all(|c| c.is_ascii_digit())
                    && !pid.trim().is_empty()
                {
                    pids.push(pid.trim().to_string());
                }
            }
        }
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-CONT")
                .args(&pids)
                .stderr(std::process::Stdio::null())
                .status();
            let _ = std::process::Command::new("kill")
                .args(&pids)
                .stderr(std::process::Stdio::null())
                .status();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Prints the drill's story indented under the demo's steps.
struct Indented;

impl drill::DrillObserver for Indented {
    fn line(&self, time: jiff::Timestamp, what: &str) {
        say(&format!("   {} {what}", time.strftime("%H:%M:%S")));
    }
}

fn say(line: &str) {
    let _ = write_stdout(&format!("{line}\n"));
}

fn write(path: &Path, text: &str) -> Result<(), CommandError> {
    std::fs::write(path, text).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, e: std::io::Error) -> CommandError {
    CommandError::message(format!("{}: {e}", path.display()))
}

/// A small static file server: GET of a file under `root` (`/` is `index.html`), nothing
/// else. Enough for the demo's stacks; not a web server.
async fn serve(root: &Path, address_file: &Path, port: u16) -> Result<u8, CommandError> {
    let address: IpAddr = std::fs::read_to_string(address_file)
        .map_err(|e| io_error(address_file, e))?
        .trim()
        .parse()
        .map_err(|e| CommandError::message(format!("{}: {e}", address_file.display())))?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(address, port))
        .await
        .map_err(|e| CommandError::message(format!("listening on {address}:{port}: {e}")))?;
    let root = Arc::new(root.to_path_buf());
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let root = root.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let path = if path.is_empty() { "index.html" } else { path };
            let body = if path.split('/').any(|c| c == ".." || c.is_empty()) {
                None
            } else {
                tokio::fs::read(root.join(path)).await.ok()
            };
            let (status, body) = match body {
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", b"not found\n".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
        });
    }
}
