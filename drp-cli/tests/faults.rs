//! Faults survived by the real binary: the S3 store (moto behind a TCP fault proxy) going
//! away while `drp recover` writes its journal, and the SSH connection (a real sshd on
//! loopback) dropping mid-stream — its per-connection sshd processes killed — during a
//! remote backup, a remote restore and a recovery's restore step. Nothing here is a mock.

#[path = "../../drp-backup/tests/support/mod.rs"]
mod support;

#[path = "../../drp-provision/tests/support/sshd.rs"]
mod sshd;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sshd::Sshd;
use support::fault_proxy::{Fault, FaultProxy};
use support::s3::S3Server;

const DRP: &str = env!("CARGO_BIN_EXE_drp");
const DEADLINE: Duration = Duration::from_secs(120);

struct World {
    dir: tempfile::TempDir,
    host: Sshd,
    children: Vec<Child>,
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl World {
    fn new() -> World {
        let world = World {
            dir: tempfile::tempdir().unwrap(),
            host: Sshd::start(),
            children: Vec::new(),
        };
        world.ok(&["keys", "generate", "--name", "acme", "--dir", "keys"]);
        world
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn store(&self) -> String {
        format!("file://{}", self.path("store").display())
    }

    fn drp(&self, args: &[&str]) -> Command {
        let mut command = Command::new(DRP);
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.drp(args).output().unwrap();
        assert!(out.status.success(), "drp {args:?} failed: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn ssh_flags(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.host.target(),
            "--ssh-key".into(),
            self.host.client_key().display().to_string(),
            "--known-hosts".into(),
            self.host.known_hosts().display().to_string(),
        ]
    }

    /// `drp backup create` of `source` as acme's source `www` into `store`.
    fn back_up_acme(&self, store: &str, source: &Path) {
        self.ok(&[
            "backup",
            "create",
            "--store",
            store,
            "--stack",
            "acme",
            "--recipient",
            "keys/acme.pub.asc",
            &format!("www={}", source.display()),
        ]);
    }

    /// `drp backup restore` of acme's latest snapshot in `store` to `target` on the sshd host.
    fn remote_restore(&self, store: &str, target: &Path) -> Command {
        let target = target.display().to_string();
        let mut args: Vec<String> = [
            "backup",
            "restore",
            "--store",
            store,
            "--stack",
            "acme",
            "--key",
            "keys/acme.sec.asc",
            "--to",
            &target,
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.ssh_flags());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.drp(&args)
    }

    /// A directory holding one sparse file of `bytes` (read as zeros by tar: a long stream
    /// that costs no disk).
    fn big_source(&self, bytes: u64) -> PathBuf {
        let dir = self.path("big");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("small.txt"), "the small file\n").unwrap();
        fs::File::create(dir.join("disk.img"))
            .unwrap()
            .set_len(bytes)
            .unwrap();
        dir
    }

    fn snapshots(&self) -> Vec<Value> {
        let out = self.ok(&[
            "backup",
            "list",
            "--store",
            &self.store(),
            "--stack",
            "acme",
            "--json",
        ]);
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    }

    /// Kills (SIGKILL) every process the sshd forked for its connections — the
    /// per-connection sshd processes — the way a dropped connection looks to drp: what they
    /// ran loses its input and output. (Not what those run: killing a login shell's start-up
    /// files half-way, e.g. `pyenv rehash` from `.bashrc`, can leave their locks behind.)
    /// Returns how many were killed.
    fn kill_ssh_connections(&self) -> usize {
        let pid = fs::read_to_string(self.host.dir().join("sshd.pid")).unwrap();
        let mut killed = 0;
        for child in children(pid.trim()) {
            if Command::new("kill")
                .args(["-KILL", &child])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
            {
                killed += 1;
            }
        }
        killed
    }
}

/// The children of `pid`, from `pgrep -P`.
fn children(pid: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-P", pid]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every entry under `root` whose name does not start with `.`: path → content or `<dir>`.
fn visible_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(root, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Bytes written so far under the hidden (staging) entries of `target`.
fn staged_bytes(target: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(target) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .flat_map(|e| {
            let mut all = walkdir(&e.path());
            all.push(e.path());
            all
        })
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Waits until `ready` (the stream is under way), then kills the SSH sessions; returns the
/// child's output.
fn cut_ssh_when(world: &World, child: Child, ready: impl Fn() -> bool) -> (Output, usize) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < DEADLINE, "the stream never got going");
        std::thread::sleep(Duration::from_millis(2));
    }
    cut_ssh_mid_stream(world, child, Duration::ZERO)
}

/// Waits until the child has been running `after`, with SSH sessions open, then kills them;
/// returns the child's output.
fn cut_ssh_mid_stream(world: &World, mut child: Child, after: Duration) -> (Output, usize) {
    std::thread::sleep(after);
    let start = Instant::now();
    assert!(
        child.try_wait().unwrap().is_none(),
        "drp finished before the connection was cut: make the stream longer"
    );
    let killed = world.kill_ssh_connections();
    eprintln!("killed {killed} sshd session processes after {after:?}");
    assert!(killed > 0, "no SSH session to cut");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "drp hangs after the cut");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("drp ended {:?} after the cut", start.elapsed());
    (child.wait_with_output().unwrap(), killed)
}

#[test]
fn a_remote_backup_whose_ssh_connection_drops_fails_cleanly_and_commits_nothing() {
    let world = World::new();
    let source = world.big_source(4 << 30);
    let www = format!("www={}", source.display());
    let store = world.store();
    let mut args: Vec<String> = [
        "backup",
        "create",
        "--store",
        &store,
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
    ]
    .map(String::from)
    .to_vec();
    args.extend(world.ssh_flags());
    args.push(www);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = world
        .drp(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _) = cut_ssh_mid_stream(&world, child, Duration::from_secs(3));
    let shown = text(&out);
    eprintln!("{shown}");
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("www"), "{shown}");
    // No snapshot, and no data object of it either.
    assert_eq!(world.snapshots(), Vec::<Value>::new());
    let mut stored = Vec::new();
    for entry in walkdir(&world.path("store")) {
        stored.push(entry);
    }
    assert!(
        stored.iter().all(|p| !p.to_string_lossy().contains(".pgp")),
        "{stored:?}"
    );

    // The host is reachable again (sshd itself lives): the next backup succeeds.
    fs::write(source.join("disk.img"), "small now\n").unwrap();
    let out = world.drp(&args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(world.snapshots().len(), 1);
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walkdir(&path));
            }
            out.push(path);
        }
    }
    out
}

#[test]
fn a_remote_restore_whose_ssh_connection_drops_leaves_the_target_as_it_was() {
    let world = World::new();
    let source = world.big_source(1 << 30);
    let store = world.store();
    world.back_up_acme(&store, &source);
    // The "remote" target already holds the previous site.
    let target = world.path("remote/srv");
    fs::create_dir_all(target.join("old")).unwrap();
    fs::write(target.join("old/index.html"), "<h1>before</h1>\n").unwrap();
    let before = visible_tree(&target);

    let target_arg = target.display().to_string();
    let child = world
        .remote_restore(&store, &target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _) = cut_ssh_when(&world, child, || staged_bytes(&target) > 64 << 20);
    let shown = text(&out);
    eprintln!("{shown}");
    assert_ne!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains(&target_arg), "{shown}");
    assert!(shown.contains("connection lost"), "{shown}");
    // What is visible in the target is what was there; `www` never appeared.
    assert_eq!(visible_tree(&target), before);
    let left = stagings(&target);
    eprintln!("staging directories left in the target after the cut: {left:?}");

    // The host answers again: the next restore removes what the cut one left (its lease died
    // with the session: nobody holds its lock), and restores the whole source.
    let out = world.remote_restore(&store, &target).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for dir in &left {
        assert!(
            shown.contains(&format!("removed {}", target.join(dir).display())),
            "{shown}"
        );
    }
    assert_eq!(stagings(&target), Vec::<String>::new());
    assert_eq!(
        fs::metadata(target.join("www/disk.img")).unwrap().len(),
        1 << 30
    );
    assert_eq!(
        fs::read_to_string(target.join("www/small.txt")).unwrap(),
        "the small file\n"
    );
    assert_eq!(
        fs::read_to_string(target.join("old/index.html")).unwrap(),
        "<h1>before</h1>\n"
    );
}

/// The names of the staging directories (`.drp-restore-*`) in `target`, sorted.
fn stagings(target: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".drp-restore-"))
        .collect();
    names.sort();
    names
}

/// Sets the modification time of `path` to an hour ago.
fn age(path: &Path) {
    let status = Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_remote_restore_removes_abandoned_staging_directories_and_keeps_live_ones() {
    let world = World::new();
    let source = world.path("site");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("index.html"), "<h1>new</h1>\n").unwrap();
    let store = world.store();
    world.back_up_acme(&store, &source);
    let target = world.path("remote/srv");
    // A restore killed mid-stream: data, nobody holds the lock.
    fs::create_dir_all(target.join(".drp-restore-killed/www")).unwrap();
    fs::write(target.join(".drp-restore-killed/www/part"), "partial").unwrap();
    // One that died before it wrote anything, an hour ago.
    fs::create_dir_all(target.join(".drp-restore-empty")).unwrap();
    age(&target.join(".drp-restore-empty"));
    // One that was created a moment ago and is not locked yet: it may be a restore's in the
    // instant between creating and locking it.
    fs::create_dir_all(target.join(".drp-restore-young")).unwrap();
    // A live restore of another process, running for an hour: it holds the lock.
    let live = target.join(".drp-restore-live");
    fs::create_dir_all(live.join("db")).unwrap();
    fs::write(live.join("db/dump.sql"), "half a dump").unwrap();
    let mut holder = Command::new("flock")
        .arg(&live)
        .arg("cat")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while Command::new("flock")
        .arg("-n")
        .arg(&live)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(start.elapsed() < DEADLINE, "the lock was never taken");
        std::thread::sleep(Duration::from_millis(10));
    }
    age(&live);
    // Data a restore kept for the operator (its name was taken meanwhile).
    fs::create_dir_all(target.join(".drp-kept-abc123/www")).unwrap();

    let out = world.remote_restore(&store, &target).output().unwrap();
    let shown = text(&out);
    eprintln!("{shown}");
    assert!(out.status.success(), "{shown}");
    for removed in [".drp-restore-killed", ".drp-restore-empty"] {
        let line = format!("removed {}", target.join(removed).display());
        assert!(shown.contains(&line), "{shown}");
    }
    assert_eq!(
        stagings(&target),
        [".drp-restore-live", ".drp-restore-young"]
    );
    assert_eq!(
        fs::read_to_string(live.join("db/dump.sql")).unwrap(),
        "half a dump"
    );
    assert!(target.join(".drp-kept-abc123/www").is_dir());
    assert_eq!(
        fs::read_to_string(target.join("www/index.html")).unwrap(),
        "<h1>new</h1>\n"
    );

    // The live restore ends without cleaning up (killed): the next restore removes it.
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    fs::remove_dir_all(target.join("www")).unwrap();
    let out = world.remote_restore(&store, &target).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("removed {}", live.display())),
        "{shown}"
    );
    assert_eq!(stagings(&target), [".drp-restore-young"]);
    assert!(target.join(".drp-kept-abc123/www").is_dir());
}

/// A plan whose stack's only source is the big one, on the world's sshd host.
fn plan(world: &World, storage: &str, stack: &str, retries: u32) -> String {
    format!(
        r#"format = 1
{storage}

[customers.acme]
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"

[datacenters.dc2]

[[hosts]]
name = "spare-0"
datacenter = "dc2"
address = "{address}"
roles = ["app"]
spare = true
ssh_key = "{key}"
known_hosts = "{known}"

{stack}
[recovery]
target_datacenter = "dc2"
retries = {retries}
backoff = "200ms"
"#,
        address = world.host.target(),
        key = world.host.client_key().display(),
        known = world.host.known_hosts().display(),
    )
}

fn events(world: &World) -> Vec<Value> {
    let Some(path) = fs::read_dir(world.path(".drp/runs")).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
    }) else {
        return Vec::new();
    };
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_for(world: &World, what: &str, done: impl Fn(&[Value]) -> bool) {
    let start = Instant::now();
    while !done(&events(world)) {
        assert!(start.elapsed() < DEADLINE, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finished(events: &[Value], step: &str, status: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["event"] == "step_finished" && e["step"] == step && e["outcome"]["status"] == status
        })
        .count()
}

#[test]
fn a_recovery_whose_restore_loses_its_ssh_connection_retries_and_succeeds() {
    let world = World::new();
    let source = world.big_source(1 << 30);
    let store = world.store();
    world.back_up_acme(&store, &source);
    let target = world.path("hosts/shop");
    let stack = format!(
        "[stacks.acme]\ncustomer = \"acme\"\nrole = \"app\"\nsources = [\"www=/unused\"]\n\
         restore_to = \"{}\"\n",
        target.display()
    );
    let storage = format!("[storage]\nurl = \"{store}\"");
    fs::write(world.path("drp.toml"), plan(&world, &storage, &stack, 1)).unwrap();

    let child = world
        .drp(&["recover"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fs::create_dir_all(&target).unwrap();
    let (out, _) = cut_ssh_when(&world, child, || staged_bytes(&target) > 64 << 20);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let events = events(&world);
    assert_eq!(finished(&events, "restore:www", "failed"), 1, "{events:#?}");
    assert_eq!(finished(&events, "restore:www", "succeeded"), 1);
    let failed = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["outcome"]["status"] == "failed")
        .unwrap();
    eprintln!("failed attempt: {}", failed["outcome"]);
    assert_eq!(
        fs::metadata(target.join("www/disk.img")).unwrap().len(),
        1 << 30
    );
    assert_eq!(
        fs::read_to_string(target.join("www/small.txt")).unwrap(),
        "the small file\n"
    );
    // The cut attempt's staging directory went with the retry.
    assert_eq!(stagings(&target), Vec::<String>::new());
}

#[test]
fn a_journal_write_failure_stops_the_run_and_resume_finishes_it_without_redoing_steps() {
    let mut world = World::new();
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.addr());
    // Backups go straight to moto; the recovery reaches the store through the proxy.
    let site = world.path("site/www");
    fs::create_dir_all(&site).unwrap();
    fs::write(site.join("index.html"), "<h1>restored</h1>\n").unwrap();
    let out = world
        .drp(&[
            "backup",
            "create",
            "--store",
            &s3.url("drp"),
            "--stack",
            "acme",
            "--recipient",
            "keys/acme.pub.asc",
            &format!("www={}", site.display()),
        ])
        .envs(s3.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let gate = world.path("gate");
    let log = world.path("steps.log");
    let stack = format!(
        "[stacks.acme]\ncustomer = \"acme\"\nrole = \"app\"\nsources = [\"www=/unused\"]\n\
         restore_to = \"{target}\"\n\
         start_commands = [\"while [ ! -f {gate} ]; do sleep 0.05; done; echo start-1 >> {log}\", \
         \"echo start-2 >> {log}\"]\n",
        target = world.path("hosts/acme").display(),
        gate = gate.display(),
        log = log.display(),
    );
    let storage = format!(
        "[storage]\nurl = \"{}\"\noptions = {{ drp_max_retries = \"2\", drp_retry_timeout = \"1s\" }}",
        s3.url("drp")
    );
    fs::write(world.path("drp.toml"), plan(&world, &storage, &stack, 0)).unwrap();
    let through_proxy = |command: &mut Command| {
        command.envs(s3.env()).env("AWS_ENDPOINT", proxy.endpoint());
    };

    let mut recover = world.drp(&["recover"]);
    through_proxy(&mut recover);
    let child = recover
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    world.children.push(child);
    wait_for(&world, "the first start command", |events| {
        events
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"] == "start:1")
    });
    // The store dies; then the step finishes and its end cannot be journaled there.
    proxy.set(Fault::Refuse);
    proxy.reset_all();
    fs::write(&gate, "").unwrap();
    let start = Instant::now();
    let child = world.children.pop().unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = text(&out);
    eprintln!(
        "stopped {:?} after the store died:\n{shown}",
        start.elapsed()
    );
    assert_ne!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("events could not be recorded"), "{shown}");
    assert!(shown.contains("can be resumed"), "{shown}");
    let run = events(&world)[0]["run"].as_str().unwrap().to_string();
    let marks = fs::read_to_string(&log).unwrap_or_default();
    assert!(!marks.contains("start-2"), "the run went on: {marks}");

    // The store is back: the run resumes where the store's journal ends.
    proxy.set(Fault::None);
    let mut resume = world.drp(&["recover", "--resume", &run]);
    through_proxy(&mut resume);
    let out = resume.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = events(&world);
    for step in ["acquire-host", "restore:www"] {
        assert_eq!(finished(&events, step, "succeeded"), 1, "{step} ran again");
    }
    assert_eq!(finished(&events, "start:2", "succeeded"), 1);
    let marks = fs::read_to_string(&log).unwrap();
    assert!(marks.ends_with("start-2\n"), "{marks}");
    assert!(
        fs::read_to_string(world.path("hosts/acme/www/index.html"))
            .unwrap()
            .contains("restored")
    );
}
