//! Drills end to end with real hosts: two "datacenters" of network namespaces, each
//! namespace a host running a real sshd (reached over SSH from the root namespace at its
//! own address); on the primary hosts, one HTTP service per customer stack serving that
//! stack's data; real encrypted backups of the primary hosts (read over SSH) in a real S3
//! server (moto); then `drp drill run` with a real `network-blackhole` (nftables inside the
//! primary namespaces), and `kill -9` of drp mid-blackhole with the dead-man timer left to
//! revert it.
//!
//! Needs root (namespaces, firewall rules), iproute2, nftables, openssh-server and
//! moto_server (`.ci/install-deps`). A test fails, never skips, when it cannot create its
//! namespaces. Every namespace, veth, process and temporary file a test makes is removed
//! by Drop guards, also when it fails; at the end of each test body it checks so.
//!
//! Hosts share this machine's filesystem, as several hosts on one machine (containers,
//! `transport = "local"` hosts) do: each has a directory of its own (`hosts/NAME`), and
//! they share one temporary directory, the world's `tmp/` (their sshd gives sessions
//! `TMPDIR` there, so nothing lands in the machine's `/tmp`), where every host's dead-man
//! keeps its pid and status files. That two primaries sharing it can both be blackholed in
//! one drill is part of what the first test checks.

#[path = "../../drp-provision/tests/support/sshd.rs"]
mod sshd;

// netns.rs reaches its sibling as `super::sshd`: here, the crate root's `sshd`.
#[path = "../../drp-provision/tests/support/netns.rs"]
mod netns;

#[path = "../../drp-backup/tests/support/mod.rs"]
mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netns::NetNs;
use serde_json::Value;
use sshd::Sshd;
use support::s3::S3Server;

const DRP: &str = env!("CARGO_BIN_EXE_drp");
/// The hosts' sshd port (each namespace is fresh, so 22 is free in it).
const SSH_PORT: u16 = 22;
/// Generous: a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(150);

/// A customer stack of the test: where it runs, its port, and what its page says.
struct StackDef {
    name: &'static str,
    host: &'static str,
    port: u16,
    marker: &'static str,
}

const ACME: StackDef = StackDef {
    name: "acme",
    host: "primary-1",
    port: 8081,
    marker: "acme-storefront-42-open-orders",
};
const GLOBEX: StackDef = StackDef {
    name: "globex",
    host: "primary-2",
    port: 8082,
    marker: "globex-partner-portal-7-shipments",
};

/// One "host": a network namespace running sshd, with a directory of its own.
struct Host {
    name: String,
    datacenter: &'static str,
    spare: bool,
    dir: PathBuf,
    // Dropped in this order: sshd, then the namespace with whatever still runs in it.
    sshd: Sshd,
    ns: NetNs,
}

impl Host {
    fn new(root: &Path, name: &str, datacenter: &'static str, spare: bool) -> Host {
        let dir = root.join("hosts").join(name);
        fs::create_dir_all(&dir).unwrap();
        // Fails loudly (panics) when namespaces cannot be made: no silent skip.
        let ns = NetNs::new();
        let sshd = Sshd::start_on(
            ns.addr(),
            SSH_PORT,
            &["ip", "netns", "exec", ns.name()],
            &format!("SetEnv TMPDIR={}", root.join("tmp").display()),
        );
        Host {
            name: name.to_string(),
            datacenter,
            spare,
            dir,
            sshd,
            ns,
        }
    }

    fn addr(&self) -> Ipv4Addr {
        self.ns.addr()
    }

    /// The root namespace's end of its veth pair, `drpf<index>h` (see netns.rs).
    fn veth(&self) -> String {
        let index = (u32::from(self.addr()) - u32::from(Ipv4Addr::new(10, 231, 0, 0)) - 2) / 4;
        format!("drpf{index}h")
    }

    /// The fault's traces in its own firewall: nftables tables and iptables chains of drp.
    fn firewall_traces(&self) -> Vec<String> {
        let mut traces: Vec<String> = self
            .ns
            .run(&["nft", "list", "tables"])
            .lines()
            .filter(|l| l.contains("drp"))
            .map(str::to_string)
            .collect();
        let iptables = self.ns.output(&["iptables", "-S"]);
        traces.extend(
            String::from_utf8_lossy(&iptables.stdout)
                .lines()
                .filter(|l| l.contains("DRP"))
                .map(str::to_string),
        );
        traces
    }

    /// Live dead-man processes in the namespace.
    fn dead_men(&self) -> Vec<i32> {
        self.ns
            .pids()
            .into_iter()
            .filter(|pid| cmdline(*pid).contains("drp-fault-dead-man:"))
            .collect()
    }

    /// A file's bytes, read inside the host's namespace.
    fn read(&self, path: &Path) -> Vec<u8> {
        let out = self.ns.output(&["cat", &path.display().to_string()]);
        assert!(
            out.status.success(),
            "cat {} on {}: {}",
            path.display(),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A test's world: a directory (plan, keys, host directories), the hosts, optionally
/// moto, and the drp processes started in the background. Drop kills the processes, then
/// every host's namespace (with everything in it, e.g. services started over SSH by the
/// recovery and dead-man timers), then moto, then removes the directory.
struct World {
    children: Vec<Child>,
    hosts: Vec<Host>,
    s3: Option<S3Server>,
    dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // What the drp commands printed, to see why.
            if let Ok(entries) = fs::read_dir(self.path("logs")) {
                for entry in entries.flatten() {
                    let text = fs::read_to_string(entry.path()).unwrap_or_default();
                    eprintln!("---- {}\n{text}", entry.path().display());
                }
            }
        }
    }
}

impl World {
    /// `hosts`: (name, datacenter, spare).
    fn new(hosts: &[(&str, &'static str, bool)], s3: bool) -> World {
        let dir = tempfile::Builder::new()
            .prefix("drp-drill-netns-")
            .tempdir()
            .unwrap();
        let mut world = World {
            children: Vec::new(),
            hosts: Vec::new(),
            s3: None,
            dir,
        };
        fs::create_dir_all(world.path("logs")).unwrap();
        fs::create_dir_all(world.path("tmp")).unwrap();
        // Pushed one by one: if one fails, those made so far are cleaned up by Drop.
        for (name, datacenter, spare) in hosts {
            let host = Host::new(world.dir.path(), name, datacenter, *spare);
            world.hosts.push(host);
        }
        if s3 {
            world.s3 = Some(S3Server::start());
        }
        world
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Files faults left in the hosts' temporary directory (dead-man pid and status).
    fn dead_man_files(&self) -> Vec<String> {
        let mut files: Vec<String> = fs::read_dir(self.path("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("drp-fault-"))
            .collect();
        files.sort();
        files
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
            .stdin(Stdio::null());
        if let Some(s3) = &self.s3 {
            command.envs(s3.env());
        }
        command
    }

    /// Runs drp to completion (killed, and the test failed, after [`DEADLINE`]); its
    /// output also goes to `logs/` (printed if the test fails).
    fn run(&mut self, log: &str, args: &[&str]) -> Output {
        let out_path = self.path(&format!("logs/{log}.out"));
        let err_path = self.path(&format!("logs/{log}.err"));
        let child = self
            .drp(args)
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        self.children.push(child);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.children.last_mut().unwrap().try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "drp {args:?} did not finish within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.children.pop();
        Output {
            status,
            stdout: fs::read(&out_path).unwrap(),
            stderr: fs::read(&err_path).unwrap(),
        }
    }

    fn ok(&mut self, log: &str, args: &[&str]) -> String {
        let out = self.run(log, args);
        assert!(out.status.success(), "drp {args:?} failed: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Keys for every customer and the ops signing key; the data of each stack on its
    /// primary host (a page with its marker, a binary file, a database dump) served by an
    /// HTTP service in the host's namespace.
    fn set_up_stacks(&mut self, stacks: &[&StackDef]) {
        let mut names: Vec<&str> = stacks.iter().map(|s| s.name).collect();
        names.push("ops");
        for name in names {
            self.ok(
                &format!("keys-{name}"),
                &["keys", "generate", "--name", name, "--dir", "keys"],
            );
        }
        for (i, stack) in stacks.iter().enumerate() {
            let host = self.host(stack.host);
            let srv = host.dir.join("srv").join(stack.name);
            fs::create_dir_all(srv.join("www/data")).unwrap();
            fs::write(
                srv.join("www/index.html"),
                format!("<html><body><h1>{}</h1></body></html>\n", stack.marker),
            )
            .unwrap();
            fs::write(
                srv.join("www/data/blob.bin"),
                pseudo_random(100_000 + i, 0x9e37_79b9 + i as u64),
            )
            .unwrap();
            fs::write(
                srv.join("orders.sql"),
                format!(
                    "CREATE TABLE orders (id int, customer text);\nINSERT INTO orders VALUES (1, '{}');\n",
                    stack.name
                ),
            )
            .unwrap();
            let address_file = host.dir.join("address");
            fs::write(&address_file, format!("{}\n", host.addr())).unwrap();
            let log =
                fs::File::create(self.path(&format!("logs/serve-{}.log", stack.name))).unwrap();
            let mut serve = host.ns.command(DRP);
            serve
                .args(["demo", "serve", "--root"])
                .arg(srv.join("www"))
                .arg("--address-file")
                .arg(&address_file)
                .args(["--port", &stack.port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            host.ns.spawn(serve);
        }
        for stack in stacks {
            let host = self.host(stack.host);
            assert!(
                host.ns
                    .wait_reachable(stack.port, true, Duration::from_secs(20)),
                "the service of {} on {} did not start",
                stack.name,
                stack.host
            );
        }
        // Spares serve whatever address they have (0.0.0.0 inside their namespace).
        fs::write(self.path("any-address"), "0.0.0.0\n").unwrap();
    }

    fn original(&self, stack: &StackDef) -> PathBuf {
        self.host(stack.host).dir.join("srv").join(stack.name)
    }

    fn restored(&self, stack: &StackDef) -> PathBuf {
        self.path(&format!("restored/{}", stack.name))
    }

    /// The plan: customers, both datacenters' hosts, the stacks (restored into
    /// `restored/STACK` on a spare and started there by `drp demo serve`), `scenario`.
    fn write_plan(&self, stacks: &[&StackDef], scenario: &str) {
        let mut plan = format!(
            r#"format = 1
name = "netns-drill"

[storage]
url = "{store}"
signing_key = "keys/ops.sec.asc"
trust = ["keys/ops.pub.asc"]

[datacenters.primary]
description = "where the stacks run (network namespaces)"

[datacenters.spare]
description = "the spare servers (network namespaces)"
"#,
            store = self.store_url()
        );
        for stack in stacks {
            plan.push_str(&format!(
                "\n[customers.{0}]\ncertificates = [\"keys/{0}.pub.asc\"]\n\
                 secret_key = \"keys/{0}.sec.asc\"\n",
                stack.name
            ));
        }
        for host in &self.hosts {
            plan.push_str(&format!(
                r#"
[[hosts]]
name = "{name}"
datacenter = "{dc}"
address = "{target}"
roles = ["web"]
spare = {spare}
ssh_key = "{key}"
known_hosts = "{known_hosts}"
connect_timeout = "5s"
"#,
                name = host.name,
                dc = host.datacenter,
                target = host.sshd.target(),
                spare = host.spare,
                key = host.sshd.client_key().display(),
                known_hosts = host.sshd.known_hosts().display(),
            ));
        }
        for stack in stacks {
            let original = self.original(stack);
            let restored = self.restored(stack);
            let start = format!(
                "nohup {drp} demo serve --root {root} --address-file {address} --port {port} \
                 </dev/null >{log} 2>&1 &",
                drp = sh_quote(DRP),
                root = sh_quote(&restored.join("www").display().to_string()),
                address = sh_quote(&self.path("any-address").display().to_string()),
                port = stack.port,
                log = sh_quote(
                    &self
                        .path(&format!("logs/serve-{}-spare.log", stack.name))
                        .display()
                        .to_string()
                ),
            );
            plan.push_str(&format!(
                r#"
[stacks.{name}]
customer = "{name}"
host = "{host}"
role = "web"
rto = "2m"
rpo = "1h"
sources = [
  {{ name = "www", path = "{www}", restore_to = "{restored}" }},
  {{ name = "db", command = "cat {dump}", restore_to = "{restored}" }},
]
start_commands = [{start:?}]
healthy_within = "40s"

[stacks.{name}.probes.http]
kind = "http"
url = "http://{{host}}:{port}/"
conditions = ["[STATUS] == 200", "[BODY] == pat(*{marker}*)"]
interval = "500ms"
timeout = "1s"
failure_threshold = 2
"#,
                name = stack.name,
                host = stack.host,
                www = original.join("www").display(),
                dump = original.join("orders.sql").display(),
                restored = restored.display(),
                port = stack.port,
                marker = stack.marker,
            ));
        }
        plan.push_str(
            "\n[recovery]\ntarget_datacenter = \"spare\"\nparallelism = 2\nretries = 2\n\
             backoff = \"1s\"\n",
        );
        plan.push_str(scenario);
        fs::write(self.path("drp.toml"), plan).unwrap();
    }

    /// Checks that nothing of the world is left once it is dropped: no namespace or veth
    /// of its hosts, no process that ran in them, no moto, no process naming its directory.
    fn tear_down_and_check(self) {
        let namespaces: Vec<String> = self.hosts.iter().map(|h| h.ns.name().to_string()).collect();
        let veths: Vec<String> = self.hosts.iter().map(Host::veth).collect();
        let dir = self.dir.path().to_path_buf();
        let mut pids: Vec<i32> = self.hosts.iter().flat_map(|h| h.ns.pids()).collect();
        assert!(!pids.is_empty(), "the hosts' sshd run in their namespaces");
        if let Some(s3) = &self.s3 {
            let port = s3.endpoint.rsplit(':').next().unwrap().to_string();
            let moto: Vec<i32> = processes()
                .into_iter()
                .filter(|(_, cmd)| cmd.contains("moto_server") && cmd.contains(&port))
                .map(|(pid, _)| pid)
                .collect();
            assert!(!moto.is_empty(), "moto runs until the world is dropped");
            pids.extend(moto);
        }
        pids.extend(mentioning(&dir));
        drop(self);

        let listed = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        for ns in &namespaces {
            assert!(
                !listed.split_whitespace().any(|n| n == ns),
                "namespace {ns} is left: {listed}"
            );
        }
        for veth in &veths {
            let out = Command::new("ip")
                .args(["link", "show", veth])
                .output()
                .unwrap();
            assert!(!out.status.success(), "veth {veth} is left");
        }
        for pid in &pids {
            assert!(!alive(*pid), "process {pid} is left: {}", cmdline(*pid));
        }
        let named = mentioning(&dir);
        assert!(named.is_empty(), "processes left: {named:?}");
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

/// `s` as one word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `n` reproducible pseudo-random bytes (xorshift64).
fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
}

/// Every process: (pid, command line).
fn processes() -> Vec<(i32, String)> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| alive(*pid))
        .map(|pid| (pid, cmdline(pid)))
        .collect()
}

/// Live processes whose command line names `dir` (services, sshd configs, ...), but not
/// this test process.
fn mentioning(dir: &Path) -> Vec<i32> {
    let dir = dir.display().to_string();
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|(pid, cmd)| *pid != me && cmd.contains(&dir))
        .map(|(pid, _)| pid)
        .collect()
}

/// `GET path` over HTTP/1.0 from this (the root) namespace: (status line, body), or
/// `None` when nothing answers within `timeout`.
fn http_get(addr: Ipv4Addr, port: u16, path: &str, timeout: Duration) -> Option<(String, Vec<u8>)> {
    let mut conn = TcpStream::connect_timeout(&SocketAddr::from((addr, port)), timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    conn.set_write_timeout(Some(timeout)).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.lines().next()?.to_string();
    Some((status, response[split + 4..].to_vec()))
}

/// Waits until `GET /` on `addr:port` gives 200 (`want`) or nothing at all (`!want`).
fn wait_serving(addr: Ipv4Addr, port: u16, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let serving = http_get(addr, port, "/", Duration::from_millis(500))
            .is_some_and(|(status, _)| status.contains(" 200 "));
        if serving == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The drill id from `drp drill run`'s first line (`drill ID`).
fn drill_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("drill "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no drill id in:\n{stdout}"))
        .to_string()
}

fn ms(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a duration: {value}"))
}

#[test]
fn an_automatic_drill_blackholes_the_primary_datacenter_and_recovers_onto_the_spares() {
    let started = Instant::now();
    let mut world = World::new(
        &[
            ("primary-1", "primary", false),
            ("primary-2", "primary", false),
            ("spare-1", "spare", true),
            ("spare-2", "spare", true),
        ],
        true,
    );
    let stacks = [&ACME, &GLOBEX];
    world.set_up_stacks(&stacks);
    world.write_plan(
        &stacks,
        r#"
[scenarios.primary-blackout]
description = "the primary datacenter drops off the network"
mode = "automatic"
targets = { datacenter = "primary" }
fault = { kind = "network-blackhole", keep_ports = [22] }
duration = "100s"
detect_within = "20s"
recover_within = "80s"
steady_state_within = "20s"
"#,
    );
    world.ok("plan-check", &["plan", "check", "drp.toml"]);

    // Real backups: each stack's sources read on its primary host over SSH, encrypted to
    // its customer's key, signed, into moto.
    let backups: Value = serde_json::from_str(&world.ok(
        "backup",
        &["backup", "create", "--plan", "drp.toml", "--all", "--json"],
    ))
    .unwrap();
    for stack in stacks {
        let entry = backups
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["stack"] == stack.name)
            .unwrap_or_else(|| panic!("no backup of {}: {backups:#}", stack.name));
        assert_eq!(entry["host"], stack.host, "{backups:#}");
        assert!(entry["snapshot"].is_object(), "{backups:#}");
    }
    // Encrypted to each customer's own key: acme's key cannot open globex's backup.
    let url = world.store_url();
    let wrong_key = world.run(
        "verify-wrong-key",
        &[
            "backup",
            "verify",
            "--store",
            &url,
            "--stack",
            "globex",
            "--key",
            "keys/acme.sec.asc",
        ],
    );
    assert_eq!(wrong_key.status.code(), Some(1), "{}", text(&wrong_key));
    let backed_up = started.elapsed();

    // The drill.
    let out = world.run(
        "drill",
        &[
            "drill",
            "run",
            "--plan",
            "drp.toml",
            "--scenario",
            "primary-blackout",
            "--yes",
        ],
    );
    let story = text(&out);
    assert_eq!(out.status.code(), Some(0), "the drill failed:\n{story}");
    assert!(
        story.contains("of scenario primary-blackout: PASS"),
        "{story}"
    );
    let drilled = started.elapsed();
    eprintln!("{story}");
    let id = drill_id(&String::from_utf8_lossy(&out.stdout));

    let report: Value = serde_json::from_str(&world.ok(
        "report-json",
        &["report", &id, "--plan", "drp.toml", "--format", "json"],
    ))
    .unwrap();
    let record = &report["drill"];
    assert_eq!(record["state"], "finished", "{record:#}");
    assert_eq!(report["verdict"], "PASS", "{record:#}");
    for check in record["checks"].as_array().unwrap() {
        assert_eq!(check["passed"], true, "{check}: {record:#}");
    }

    // Both primary hosts were hit, and reverted by drp (keep_ports kept its SSH).
    let targets = record["targets"].as_array().unwrap();
    let mut hit: Vec<&str> = targets
        .iter()
        .map(|t| t["host"].as_str().unwrap())
        .collect();
    hit.sort_unstable();
    assert_eq!(hit, ["primary-1", "primary-2"], "{record:#}");
    for target in targets {
        assert!(target["injected_at"].is_string(), "{target}");
        assert!(target["reverted_at"].is_string(), "{target}");
        assert_eq!(target["reverted_by"], "drp", "{target}");
        // Per host: the primaries share a temporary directory, their dead-men must not
        // be taken for each other.
        assert_eq!(
            target["fault_id"],
            format!("{id}.{}", target["host"].as_str().unwrap()),
            "{target}"
        );
    }

    // Detected by drp's probes, within the expectation.
    let detection = &record["marks"]["detected_by_probe"];
    assert!(
        detection["source"].as_str().unwrap().starts_with("probe "),
        "{record:#}"
    );
    let ttd = ms(&report["time_to_detect_ms"]);
    assert!(
        ttd <= ms(&record["expectations"]["detect_within_ms"]),
        "detected after {ttd} ms: {record:#}"
    );
    for mark in ["injected", "recovery_started", "healthy", "reverted"] {
        assert!(record["marks"][mark].is_string(), "no {mark}: {record:#}");
    }
    assert_eq!(
        record["recovery_runs"],
        serde_json::json!([format!("{id}-recovery")])
    );

    // Each stack recovered onto its own spare, healthy there, serving the original bytes;
    // the restored files on the spare are byte-identical to the primary's.
    let results = record["stack_results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{record:#}");
    let mut spares_used = Vec::new();
    for stack in stacks {
        let result = results
            .iter()
            .find(|r| r["stack"] == stack.name)
            .unwrap_or_else(|| panic!("no result for {}: {record:#}", stack.name));
        assert!(result["healthy_at"].is_string(), "{result}");
        assert!(result["snapshot"].is_string(), "{result}");
        let on = result["healthy_on"].as_str().unwrap();
        let spare = world
            .hosts
            .iter()
            .filter(|h| h.spare)
            .find(|h| on == format!("{} ({})", h.addr(), h.name))
            .unwrap_or_else(|| panic!("{} healthy on {on}, not a spare", stack.name));
        spares_used.push(spare.name.clone());

        let original = world.original(stack);
        let restored = world.restored(stack);
        for (from, to) in [
            (
                original.join("www/index.html"),
                restored.join("www/index.html"),
            ),
            (
                original.join("www/data/blob.bin"),
                restored.join("www/data/blob.bin"),
            ),
            (original.join("orders.sql"), restored.join("db")),
        ] {
            assert!(
                fs::read(&from).unwrap() == spare.read(&to),
                "{} on {} differs from {}",
                to.display(),
                spare.name,
                from.display()
            );
        }
        for (path, file) in [
            ("/", "www/index.html"),
            ("/data/blob.bin", "www/data/blob.bin"),
        ] {
            let (status, body) = http_get(spare.addr(), stack.port, path, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("{} on {} does not answer", stack.name, spare.name));
            assert!(status.contains(" 200 "), "{status}");
            assert!(
                body == fs::read(original.join(file)).unwrap(),
                "GET {path} of {} on {} is not the original {file}",
                stack.name,
                spare.name
            );
        }
    }
    spares_used.sort();
    assert_eq!(spares_used, ["spare-1", "spare-2"]);

    // The fault is gone from the primaries: no drp table or chain, no dead-man process or
    // file left, and their services answer again from here.
    assert_eq!(world.dead_man_files(), Vec::<String>::new());
    for stack in stacks {
        let host = world.host(stack.host);
        assert_eq!(
            host.firewall_traces(),
            Vec::<String>::new(),
            "{}",
            host.name
        );
        assert_eq!(host.dead_men(), Vec::<i32>::new(), "{}", host.name);
        let (status, body) = http_get(host.addr(), stack.port, "/", Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{} on {} does not answer", stack.name, host.name));
        assert!(status.contains(" 200 "), "{status}");
        assert!(String::from_utf8_lossy(&body).contains(stack.marker));
    }

    // The report: HTML next to the plan, and the drill in the history.
    let html = fs::read_to_string(world.path(&format!(".drp/drills/{id}.html")))
        .expect("the HTML report is written next to the plan");
    assert!(html.contains("<svg") && html.contains("PASS"), "{html}");
    let history: Value = serde_json::from_str(&world.ok(
        "history",
        &["drill", "history", "--plan", "drp.toml", "--json"],
    ))
    .unwrap();
    assert_eq!(history[0]["drill"], id.as_str(), "{history:#}");
    assert_eq!(history[0]["verdict"], "PASS", "{history:#}");

    eprintln!(
        "set-up and backups {backed_up:.1?}, drill {:.1?} (time to detect {ttd} ms, downtime \
         {} ms)",
        drilled - backed_up,
        ms(&report["downtime_ms"])
    );
    world.tear_down_and_check();
    eprintln!("total {:.1?}", started.elapsed());
}

#[test]
fn a_drill_killed_mid_blackhole_is_reverted_by_the_dead_man_timer() {
    const DURATION: Duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut world = World::new(
        &[("primary-1", "primary", false), ("spare-1", "spare", true)],
        false,
    );
    let stacks = [&ACME];
    world.set_up_stacks(&stacks);
    // No port kept: drp cuts its own SSH connection too, so only the dead-man can revert.
    // Surprise mode: drp injects, then waits for a team that never comes.
    world.write_plan(
        &stacks,
        &format!(
            r#"
[scenarios.cut-off]
mode = "surprise"
targets = {{ datacenter = "primary" }}
fault = {{ kind = "network-blackhole", keep_ports = [] }}
duration = "{}s"
steady_state_within = "20s"
"#,
            DURATION.as_secs()
        ),
    );
    world.ok("plan-check", &["plan", "check", "drp.toml"]);
    let primary = world.host("primary-1");
    let addr = primary.addr();

    let log = world.path("logs/drill.out");
    let drill = world
        .drp(&[
            "drill",
            "run",
            "--plan",
            "drp.toml",
            "--scenario",
            "cut-off",
            "--yes",
        ])
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(world.path("logs/drill.err")).unwrap())
        .spawn()
        .unwrap();
    let drp_pid = drill.id() as i32;
    world.children.push(drill);

    // Until the record in the store says the fault holds.
    let drills = world.path("store/.drp/drills");
    let deadline = Instant::now() + DEADLINE;
    let record: Value = loop {
        let found = fs::read_dir(&drills)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .find_map(|e| serde_json::from_str::<Value>(&fs::read_to_string(e.path()).ok()?).ok())
            .filter(|r| r["marks"]["injected"].is_string());
        if let Some(record) = found {
            break record;
        }
        assert!(
            world.children[0].try_wait().unwrap().is_none(),
            "drp ended before injecting"
        );
        assert!(Instant::now() < deadline, "the fault was never injected");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut drill = world.children.pop().unwrap();
    drill.kill().unwrap(); // SIGKILL: no chance to revert
    drill.wait().unwrap();
    let killed = Instant::now();
    assert!(!alive(drp_pid));
    let id = record["drill"].as_str().unwrap().to_string();
    assert_eq!(record["state"], "running");

    // The blackhole holds: neither the service nor sshd answers from here.
    let primary = world.host("primary-1");
    assert!(
        http_get(addr, ACME.port, "/", Duration::from_millis(700)).is_none(),
        "the primary's service still answers: {record:#}"
    );
    assert!(
        !primary.ns.reachable(SSH_PORT, Duration::from_millis(700)),
        "keep_ports = [] cuts SSH too"
    );
    assert!(
        !primary.dead_men().is_empty(),
        "the dead-man is pending in the primary's namespace"
    );
    let pid_file = format!("drp-fault-{id}.primary-1.pid");
    assert!(
        world.dead_man_files().contains(&pid_file),
        "no {pid_file}: {:?}",
        world.dead_man_files()
    );

    // The dead-man reverts it by itself, within the duration (counted from the rules).
    assert!(
        wait_serving(addr, ACME.port, true, DURATION + Duration::from_secs(10)),
        "the dead-man did not revert the blackhole within {:?} of the kill",
        DURATION + Duration::from_secs(10)
    );
    let back_after = killed.elapsed();
    assert!(
        primary
            .ns
            .wait_reachable(SSH_PORT, true, Duration::from_secs(5)),
        "sshd answers again"
    );
    // It cleaned up after itself: no table, no timer process, no pid file (the status
    // file stays until a revert, which removes it).
    let pid_files = || -> Vec<String> {
        world
            .dead_man_files()
            .into_iter()
            .filter(|f| f.ends_with(".pid"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(primary.dead_men().is_empty() && pid_files().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the dead-man did not end: {:?} {:?}",
            primary.dead_men(),
            pid_files()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(primary.firewall_traces(), Vec::<String>::new());

    // drp died holding the drill lock; `drp drill revert` closes the drill and frees it.
    assert!(world.path("store/.drp/drill-lock.json").exists());
    let out = world.ok("revert", &["drill", "revert", &id, "--plan", "drp.toml"]);
    assert!(out.contains("reverted on primary-1"), "{out}");
    assert!(
        !world.path("store/.drp/drill-lock.json").exists(),
        "the drill lock is still there"
    );
    let closed: Value =
        serde_json::from_str(&fs::read_to_string(drills.join(format!("{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(closed["state"], "aborted", "{closed:#}");
    assert_eq!(world.dead_man_files(), Vec::<String>::new());
    assert!(closed["marks"]["reverted"].is_string(), "{closed:#}");
    // Safe to repeat.
    world.ok(
        "revert-again",
        &["drill", "revert", &id, "--plan", "drp.toml"],
    );
    assert!(wait_serving(addr, ACME.port, true, Duration::from_secs(2)));

    eprintln!(
        "service back {back_after:.1?} after the kill (dead-man {DURATION:?}); total {:.1?}",
        started.elapsed()
    );
    world.tear_down_and_check();
}
