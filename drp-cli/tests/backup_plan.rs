//! `drp backup ... --plan FILE --stack NAME` and `drp backup create --plan FILE --all` on the
//! real binary: the store, keys, sources and hosts come from the plan; flags that the plan
//! replaces are refused beside it; a stack on an SSH host is backed up over SSH (real sshd).

#[path = "../../drp-provision/tests/support/sshd.rs"]
mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DRP: &str = env!("CARGO_BIN_EXE_drp");
const GLOBEX_PASSPHRASE: &str = "globex passphrase";

/// A directory with keys (acme, globex with a passphrase, ops), the data of two stacks, and
/// a plan (`plan.toml`): `acme` runs on host `app-1` (address `localhost`: this machine),
/// `globex` names no host (this machine too). `extra` is appended to the plan.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(extra: &str) -> Workspace {
        let ws = Workspace {
            dir: tempfile::tempdir().unwrap(),
        };
        for name in ["acme", "ops"] {
            ws.ok(&["keys", "generate", "--name", name, "--dir", "keys"]);
        }
        ws.ok(&[
            "keys",
            "generate",
            "--name",
            "globex",
            "--dir",
            "keys",
            "--passphrase-env",
            "GLOBEX_PASSPHRASE",
        ]);
        fs::create_dir_all(ws.path("data/acme-www")).unwrap();
        fs::write(ws.path("data/acme-www/index.html"), "<h1>acme</h1>\n").unwrap();
        fs::create_dir_all(ws.path("data/globex")).unwrap();
        fs::write(ws.path("data/globex/ledger.csv"), "id,amount\n1,100\n").unwrap();
        let plan = PLAN
            .replace(
                "STORE_URL",
                &format!("file://{}", ws.path("store").display()),
            )
            .replace("DATA", &ws.path("data").display().to_string())
            + extra;
        fs::write(ws.path("plan.toml"), plan).unwrap();
        ws
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn drp(&self, args: &[&str]) -> Output {
        Command::new(DRP)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DRP_STORE")
            .env("GLOBEX_PASSPHRASE", GLOBEX_PASSPHRASE)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.drp(args);
        assert_eq!(out.status.code(), Some(0), "drp {args:?}: {}", stderr(&out));
        stdout(&out)
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const PLAN: &str = r#"format = 1

[storage]
url = "STORE_URL"
signing_key = "keys/ops.sec.asc"
trust = ["keys/ops.pub.asc"]

[customers.acme]
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"

[customers.globex]
certificates = ["keys/globex.pub.asc"]
secret_key = "keys/globex.sec.asc"
passphrase_env = "GLOBEX_PASSPHRASE"

[datacenters.dc1]
[datacenters.dc2]

[[hosts]]
name = "app-1"
datacenter = "dc1"
address = "localhost"
roles = ["app"]

[[hosts]]
name = "spare-1"
datacenter = "dc2"
address = "root@10.0.2.11"
roles = ["app"]
spare = true

[stacks.acme]
customer = "acme"
host = "app-1"
role = "app"
sources = ["www=DATA/acme-www", "db=cmd:echo 'CREATE TABLE acme (id int);'"]
restore_to = "/srv/acme"

[stacks.globex]
customer = "globex"
role = "app"
sources = ["ledger=DATA/globex"]
restore_to = "/srv/globex"

[recovery]
target_datacenter = "dc2"
"#;

fn diff(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_stack_is_backed_up_restored_and_verified_as_its_plan_says() {
    let ws = Workspace::new("");
    let snapshot = ws.ok(&["backup", "create", "--plan", "plan.toml", "--stack", "acme"]);
    let snapshot = snapshot.trim();
    assert_eq!(snapshot.len(), 29, "{snapshot}");

    let listed: Value = serde_json::from_str(&ws.ok(&[
        "backup",
        "list",
        "--plan",
        "plan.toml",
        "--stack",
        "acme",
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed[0]["snapshot"], snapshot);
    assert_eq!(
        listed[0]["signed"], true,
        "signed with the plan's signing key"
    );

    // Restored with the customer's key and checked against the plan's trusted signers.
    ws.ok(&[
        "backup",
        "restore",
        "--plan",
        "plan.toml",
        "--stack",
        "acme",
        "--to",
        "restored",
    ]);
    diff(&ws.path("data/acme-www"), &ws.path("restored/www"));
    assert_eq!(
        fs::read_to_string(ws.path("restored/db")).unwrap(),
        "CREATE TABLE acme (id int);\n"
    );
    let verified = ws.ok(&["backup", "verify", "--plan", "plan.toml", "--stack", "acme"]);
    assert!(
        verified.contains(&format!("ok      {snapshot}")),
        "{verified}"
    );
    assert!(verified.contains("manifest signed by"), "{verified}");

    // Encrypted to acme's certificate only: globex's key cannot open it.
    let out = ws.drp(&[
        "backup",
        "restore",
        "--store",
        &format!("file://{}", ws.path("store").display()),
        "--stack",
        "acme",
        "--key",
        "keys/globex.sec.asc",
        "--passphrase-env",
        "GLOBEX_PASSPHRASE",
        "--to",
        "wrong-key",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("none of the given secret keys"),
        "{}",
        stderr(&out)
    );

    ws.ok(&[
        "backup",
        "prune",
        "--plan",
        "plan.toml",
        "--stack",
        "acme",
        "--keep-last",
        "1",
    ]);
}

#[test]
fn all_backs_up_every_stack_of_the_plan() {
    let ws = Workspace::new("");
    let created: Value = serde_json::from_str(&ws.ok(&[
        "backup",
        "create",
        "--plan",
        "plan.toml",
        "--all",
        "--json",
    ]))
    .unwrap();
    let stacks: Vec<(&str, &str)> = created
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["stack"].as_str().unwrap(), c["host"].as_str().unwrap()))
        .collect();
    assert_eq!(stacks, [("acme", "local"), ("globex", "local")]);
    assert!(
        created
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["error"].is_null())
    );

    // globex's secret key is unlocked with the passphrase the plan points to.
    ws.ok(&[
        "backup",
        "restore",
        "--plan",
        "plan.toml",
        "--stack",
        "globex",
        "--to",
        "globex",
    ]);
    diff(&ws.path("data/globex"), &ws.path("globex/ledger"));
    let out = Command::new(DRP)
        .args([
            "backup",
            "restore",
            "--plan",
            "plan.toml",
            "--stack",
            "globex",
            "--to",
            "again",
        ])
        .current_dir(ws.dir.path())
        .env_remove("GLOBEX_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("GLOBEX_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.path("again/ledger").exists());
}

#[test]
fn with_all_a_failing_stack_does_not_stop_the_others() {
    let ws = Workspace::new("");
    fs::remove_dir_all(ws.path("data/acme-www")).unwrap();
    let out = ws.drp(&["backup", "create", "--plan", "plan.toml", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stack acme: backup failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("1 of 2 stacks failed"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("globex "), "{lines:?}");
}

#[test]
fn flags_the_plan_replaces_are_refused_beside_it() {
    let ws = Workspace::new("");
    for (args, flag) in [
        (
            vec![
                "create",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--store",
                "file:///x",
            ],
            "--store",
        ),
        (
            vec![
                "create",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--recipient",
                "k.asc",
            ],
            "--recipient",
        ),
        (
            vec![
                "create",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--sign-with",
                "k.asc",
            ],
            "--sign-with",
        ),
        (
            vec![
                "create",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "www=/tmp",
            ],
            "SOURCE",
        ),
        (
            vec![
                "create",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--host",
                "root@db1",
            ],
            "--host",
        ),
        (
            vec![
                "restore",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--key",
                "k.asc",
                "--to",
                "x",
            ],
            "--key",
        ),
        (
            vec![
                "verify",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--trust",
                "k.asc",
            ],
            "--trust",
        ),
        (
            vec![
                "verify",
                "--plan",
                "plan.toml",
                "--stack",
                "acme",
                "--passphrase-env",
                "X",
            ],
            "--passphrase-env",
        ),
        (
            vec!["create", "--plan", "plan.toml", "--all", "--stack", "acme"],
            "--stack",
        ),
    ] {
        let mut full = vec!["backup"];
        full.extend(&args);
        let out = ws.drp(&full);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains(flag) && message.contains("--plan"),
            "{full:?}: {message}"
        );
    }
    // --all needs a plan; without --plan, the flags are required as before.
    let out = ws.drp(&["backup", "create", "--all", "--stack", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = ws.drp(&["backup", "list", "--stack", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--store"), "{}", stderr(&out));
    // A stack the plan lacks.
    let out = ws.drp(&["backup", "list", "--plan", "plan.toml", "--stack", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stack `nope` is not in the plan"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn drp_store_in_the_environment_does_not_clash_with_a_plan() {
    let ws = Workspace::new("");
    let out = Command::new(DRP)
        .args([
            "backup",
            "create",
            "--plan",
            "plan.toml",
            "--stack",
            "globex",
        ])
        .current_dir(ws.dir.path())
        .env("DRP_STORE", "file:///nonexistent/elsewhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ws.path("store/globex/snapshots").is_dir());
}

#[test]
fn a_stack_on_an_ssh_host_is_backed_up_there() {
    let server = sshd::Sshd::start();
    // The data exists on the "remote" host only under its own name (same machine, but read
    // through sshd: the test checks the bytes arrive).
    let remote_data = server.dir().join("remote-www");
    fs::create_dir_all(&remote_data).unwrap();
    fs::write(remote_data.join("index.html"), "served over ssh\n").unwrap();
    let extra = format!(
        r#"
[[hosts]]
name = "remote-1"
datacenter = "dc1"
address = "{}"
roles = ["app"]
ssh_key = "{}"
known_hosts = "{}"

[stacks.remote]
customer = "acme"
host = "remote-1"
role = "app"
sources = ["www={}", "who=cmd:echo $SSH_CONNECTION | wc -w"]
restore_to = "/srv/remote"
"#,
        server.target(),
        server.client_key().display(),
        server.known_hosts().display(),
        remote_data.display()
    );
    let ws = Workspace::new(&extra);
    let created: Value = serde_json::from_str(&ws.ok(&[
        "backup",
        "create",
        "--plan",
        "plan.toml",
        "--all",
        "--json",
    ]))
    .unwrap();
    let remote = created
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stack"] == "remote")
        .unwrap();
    assert_eq!(remote["host"], "remote-1", "{created}");
    assert!(remote["error"].is_null(), "{created}");
    ws.ok(&[
        "backup",
        "restore",
        "--plan",
        "plan.toml",
        "--stack",
        "remote",
        "--to",
        "out",
    ]);
    diff(&remote_data, &ws.path("out/www"));
    // The command ran in an SSH session: SSH_CONNECTION has its 4 fields.
    assert_eq!(fs::read_to_string(ws.path("out/who")).unwrap().trim(), "4");
}

#[test]
fn backups_are_also_encrypted_to_the_plans_escrow_certificates() {
    let ws = Workspace::new("");
    let plan = fs::read_to_string(ws.path("plan.toml")).unwrap().replace(
        "trust = [\"keys/ops.pub.asc\"]\n",
        "trust = [\"keys/ops.pub.asc\"]\nescrow = [\"keys/ops.pub.asc\"]\n",
    );
    fs::write(ws.path("plan.toml"), plan).unwrap();
    ws.ok(&[
        "backup",
        "create",
        "--plan",
        "plan.toml",
        "--stack",
        "globex",
    ]);
    // The ops key opens globex's backup: it was an escrow recipient.
    ws.ok(&[
        "backup",
        "restore",
        "--store",
        &format!("file://{}", ws.path("store").display()),
        "--stack",
        "globex",
        "--key",
        "keys/ops.sec.asc",
        "--to",
        "escrowed",
    ]);
    diff(&ws.path("data/globex"), &ws.path("escrowed/ledger"));
}
