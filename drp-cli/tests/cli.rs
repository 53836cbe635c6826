//! The real `drp` binary, driven as a user would: exit statuses, output shapes, GnuPG interop,
//! S3 through the AWS_* environment, passphrases, bounded memory.

#[path = "../../drp-backup/tests/support/mod.rs"]
mod support;

#[path = "../../drp-provision/tests/support/sshd.rs"]
mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const DRP: &str = env!("CARGO_BIN_EXE_drp");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
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
            .env_remove("DRP_STORE");
        command
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.drp(args).output().unwrap();
        assert!(
            out.status.success(),
            "drp {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn keys(&self, names: &[&str]) {
        for name in names {
            self.ok(&["keys", "generate", "--name", name, "--dir", "keys"]);
        }
    }

    fn sample(&self) -> PathBuf {
        let root = self.path("src");
        fs::create_dir_all(root.join("etc/nginx")).unwrap();
        fs::write(root.join("etc/nginx/site.conf"), "server { listen 80; }\n").unwrap();
        fs::write(
            root.join("data.bin"),
            (0..200_000u32)
                .flat_map(|i| i.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        std::os::unix::fs::symlink("etc/nginx/site.conf", root.join("current.conf")).unwrap();
        root
    }
}

fn status(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn diff_trees(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn keys_are_generated_and_listed() {
    let env = Env::new();
    let fingerprint = env.ok(&["keys", "generate", "--name", "acme", "--dir", "keys"]);
    assert_eq!(fingerprint.trim().len(), 40);
    assert!(env.path("keys/acme.pub.asc").exists() && env.path("keys/acme.sec.asc").exists());

    let listed: Value =
        serde_json::from_str(&env.ok(&["keys", "list", "--dir", "keys", "--json"])).unwrap();
    let key = &listed[0];
    assert_eq!(key["name"], "acme");
    assert_eq!(key["fingerprint"], fingerprint.trim());
    assert_eq!(key["has_secret"], true);
    assert!(key["created"].is_string());
    assert!(key["expires"].is_null());

    let again = env
        .drp(&["keys", "generate", "--name", "acme", "--dir", "keys"])
        .output()
        .unwrap();
    assert_eq!(status(&again), 1);
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn create_prints_the_snapshot_and_its_sources_as_json() {
    let env = Env::new();
    env.keys(&["acme"]);
    let src = env.sample();
    let out = env.ok(&[
        "backup",
        "create",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
        "--json",
        &format!("files={}", src.display()),
        "db=cmd:echo dump",
    ]);
    let json: Value = serde_json::from_str(&out).unwrap();
    let id = json["snapshot"].as_str().unwrap();
    assert!(json["time"].is_string());
    let sources = json["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    for (source, (name, kind)) in sources
        .iter()
        .zip([("files", "directory"), ("db", "command")])
    {
        assert_eq!(source["name"], name);
        assert_eq!(source["kind"], kind);
        let object = source["object"].as_str().unwrap();
        assert!(object.starts_with(&format!("acme/data/{id}/")), "{object}");
        // `object` is relative to the store URL.
        let stored = fs::read(env.path("store").join(object)).unwrap();
        assert_eq!(source["stored_bytes"], stored.len() as u64);
        assert_eq!(source["sha256"].as_str().unwrap().len(), 64);
    }
    assert_eq!(sources[1]["plain_bytes"], 5);

    let plain_id = env.ok(&[
        "backup",
        "create",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
        "db=cmd:echo again",
    ]);
    let listed: Value = serde_json::from_str(&env.ok(&[
        "backup",
        "list",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed[0]["snapshot"], plain_id.trim());
    assert_eq!(listed[1]["snapshot"], id);
    assert_eq!(listed[1]["signed"], false);
    assert_eq!(listed[1]["sources"][0]["name"], "files");
    let table = env.ok(&["backup", "list", "--store", &env.store(), "--stack", "acme"]);
    assert!(table.lines().next().unwrap().starts_with("SNAPSHOT"));
    assert!(table.contains(id) && table.contains("files,db"), "{table}");
}

#[test]
fn gpg_zstd_and_tar_restore_a_directory_without_drp() {
    let env = Env::new();
    env.keys(&["acme"]);
    let src = env.sample();
    let json: Value = serde_json::from_str(&env.ok(&[
        "backup",
        "create",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
        "--json",
        &format!("files={}", src.display()),
    ]))
    .unwrap();
    let object = env
        .path("store")
        .join(json["sources"][0]["object"].as_str().unwrap());

    let gnupg = env.path("gnupg");
    fs::create_dir_all(&gnupg).unwrap();
    fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let _agent = support::gpg::AgentGuard(gnupg.clone());
    let import = Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args(["--batch", "--import"])
        .arg(env.path("keys/acme.sec.asc"))
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", stderr(&import));

    fs::create_dir_all(env.path("by-hand")).unwrap();
    let script = format!(
        "set -o pipefail; gpg --batch --decrypt '{}' | zstd -d | tar -x -C '{}'",
        object.display(),
        env.path("by-hand").display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("GNUPGHOME", &gnupg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    diff_trees(&src, &env.path("by-hand"));
}

#[test]
fn missing_or_wrong_arguments_are_usage_errors_that_name_the_problem() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "backup",
                "create",
                "--store",
                "file:///tmp/x",
                "--stack",
                "a",
                "db=cmd:true",
            ],
            "--recipient <CERT>",
        ),
        (
            &[
                "backup",
                "create",
                "--stack",
                "a",
                "--recipient",
                "c",
                "db=cmd:true",
            ],
            "--store <URL>",
        ),
        (
            &[
                "backup",
                "restore",
                "--store",
                "file:///tmp/x",
                "--stack",
                "a",
                "--key",
                "k",
            ],
            "--to <DIR>",
        ),
        (
            &[
                "backup",
                "restore",
                "--store",
                "file:///tmp/x",
                "--stack",
                "a",
                "--to",
                "d",
                "--passphrase",
                "x",
            ],
            "--passphrase",
        ),
        (&["keys", "generate", "--dir", "k"], "--name <NAME>"),
    ];
    for (args, expected) in cases {
        let out = env.drp(args).output().unwrap();
        assert_eq!(status(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = env
        .drp(&[
            "backup",
            "create",
            "--store",
            &env.store(),
            "--stack",
            "a",
            "--recipient",
            "c",
            "bad spec",
        ])
        .output()
        .unwrap();
    assert_eq!(status(&out), 2);
    assert!(
        stderr(&out)
            .contains("invalid source \"bad spec\": expected NAME=PATH or NAME=cmd:COMMAND"),
        "{}",
        stderr(&out)
    );
    let out = env
        .drp(&[
            "backup",
            "create",
            "--store",
            &env.store(),
            "--stack",
            "a",
            "--recipient",
            "nope.asc",
            "db=cmd:true",
        ])
        .output()
        .unwrap();
    assert_eq!(status(&out), 1);
    assert!(stderr(&out).contains("nope.asc"), "{}", stderr(&out));
}

#[test]
fn corrupt_data_exits_3_and_names_stack_snapshot_and_source() {
    let env = Env::new();
    env.keys(&["acme"]);
    let id = env.ok(&[
        "backup",
        "create",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
        "db=cmd:seq 1 100000",
    ]);
    let id = id.trim();
    let object = env.path(&format!("store/acme/data/{id}/db.zst.pgp"));
    let mut bytes = fs::read(&object).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    fs::write(&object, bytes).unwrap();

    let store = env.store();
    for command in ["restore", "verify"] {
        let mut args = vec![
            "backup",
            command,
            "--store",
            &store,
            "--stack",
            "acme",
            "--key",
            "keys/acme.sec.asc",
        ];
        if command == "restore" {
            args.extend(["--to", "out"]);
        }
        let out = env.drp(&args).output().unwrap();
        assert_eq!(status(&out), 3, "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("stack acme, snapshot {id}, source db")),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.path("out").exists());
}

#[test]
fn passphrases_come_from_the_environment_and_never_show() {
    let env = Env::new();
    let secret = "correct horse battery staple";
    let out = env
        .drp(&[
            "keys",
            "generate",
            "--name",
            "acme",
            "--dir",
            "keys",
            "--passphrase-env",
            "ACME_PASS",
        ])
        .env("ACME_PASS", secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&[
        "backup",
        "create",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
        "db=cmd:echo data",
    ]);

    let restore = |pass: Option<&str>, to: &str| {
        let mut command = env.drp(&[
            "backup",
            "restore",
            "--store",
            &env.store(),
            "--stack",
            "acme",
            "--key",
            "keys/acme.sec.asc",
            "--passphrase-env",
            "ACME_PASS",
            "--to",
            to,
        ]);
        match pass {
            Some(pass) => command.env("ACME_PASS", pass),
            None => command.env_remove("ACME_PASS"),
        };
        command.output().unwrap()
    };
    let wrong = restore(Some("guess"), "a");
    assert_eq!(status(&wrong), 1);
    assert!(
        stderr(&wrong).contains("wrong passphrase"),
        "{}",
        stderr(&wrong)
    );
    assert!(!stderr(&wrong).contains("guess"));
    let unset = restore(None, "b");
    assert_eq!(status(&unset), 1);
    assert!(stderr(&unset).contains("ACME_PASS"), "{}", stderr(&unset));

    let good = restore(Some(secret), "c");
    assert!(good.status.success(), "{}", stderr(&good));
    assert_eq!(fs::read(env.path("c/db")).unwrap(), b"data\n");
    for out in [&wrong, &unset, &good] {
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(secret) && !stderr(out).contains(secret)
        );
    }
    let key_file = fs::read_to_string(env.path("keys/acme.sec.asc")).unwrap();
    assert!(!key_file.contains(secret));
}

#[test]
fn prune_keeps_by_rule_and_explains_itself() {
    let env = Env::new();
    env.keys(&["acme"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            env.ok(&[
                "backup",
                "create",
                "--store",
                &env.store(),
                "--stack",
                "acme",
                "--recipient",
                "keys/acme.pub.asc",
                &format!("v=cmd:echo {i}"),
            ])
            .trim()
            .to_string(),
        );
    }
    let store = env.store();
    let prune = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "prune",
            "--store",
            &store,
            "--stack",
            "acme",
            "--keep-last",
            "2",
        ];
        args.extend(extra);
        env.ok(&args)
    };
    let dry = prune(&["--dry-run"]);
    assert!(dry.contains(&format!("keep    {} (last)", ids[2])), "{dry}");
    assert!(
        dry.contains(&format!("would remove {} (no rule keeps it)", ids[0])),
        "{dry}"
    );
    let json: Value = serde_json::from_str(&prune(&["--dry-run", "--json"])).unwrap();
    assert_eq!(json["dry_run"], true, "{json}");
    // A local store has no unfinished uploads here: the field is there, empty.
    assert_eq!(json["aborted_uploads"], serde_json::json!([]), "{json}");
    let real = prune(&[]);
    assert!(
        real.contains(&format!("removed {} (no rule keeps it)", ids[0])),
        "{real}"
    );
    let listed: Value = serde_json::from_str(&env.ok(&[
        "backup",
        "list",
        "--store",
        &env.store(),
        "--stack",
        "acme",
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let none = env
        .drp(&[
            "backup",
            "prune",
            "--store",
            &env.store(),
            "--stack",
            "acme",
        ])
        .output()
        .unwrap();
    assert_eq!(status(&none), 1);
    assert!(
        stderr(&none).contains("give at least one --keep-* option"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn backups_go_to_s3_from_the_aws_environment_in_several_parts() {
    let server = support::s3::S3Server::start();
    let env = Env::new();
    env.keys(&["acme"]);
    // 12 MiB of incompressible data: the object needs more than one 5 MiB part.
    let data: Vec<u8> = {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..12 * 1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    fs::write(env.path("big.bin"), &data).unwrap();
    let url = server.url("backups");
    let run = |args: &[&str]| {
        let out = env.drp(args).envs(server.env()).output().unwrap();
        assert!(
            out.status.success(),
            "drp {args:?}: {}\nS3 log: {}",
            stderr(&out),
            server.log_path().display()
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let created: Value = serde_json::from_str(&run(&[
        "backup",
        "create",
        "--store",
        &url,
        "--stack",
        "acme",
        "--recipient",
        "keys/acme.pub.asc",
        "--json",
        &format!("big={}", env.path("big.bin").display()),
    ]))
    .unwrap();
    assert!(created["sources"][0]["stored_bytes"].as_u64().unwrap() > 10 * 1024 * 1024);
    let listed: Value = serde_json::from_str(&run(&[
        "backup", "list", "--store", &url, "--stack", "acme", "--json",
    ]))
    .unwrap();
    assert_eq!(listed[0]["snapshot"], created["snapshot"]);
    run(&[
        "backup",
        "verify",
        "--store",
        &url,
        "--stack",
        "acme",
        "--key",
        "keys/acme.sec.asc",
    ]);
    run(&[
        "backup",
        "restore",
        "--store",
        &url,
        "--stack",
        "acme",
        "--key",
        "keys/acme.sec.asc",
        "--to",
        "out",
    ]);
    assert!(fs::read(env.path("out/big")).unwrap() == data);
}

#[test]
fn memory_stays_bounded_for_a_large_source() {
    let env = Env::new();
    env.keys(&["acme"]);
    // 256 MiB, a quarter of it random: several upload parts and all pipeline stages busy.
    let script = format!(
        "head -c 64M /dev/urandom > '{0}' && head -c 192M /dev/zero >> '{0}'",
        env.path("big.bin").display()
    );
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(DRP)
        .args([
            "backup",
            "create",
            "--store",
            &env.store(),
            "--stack",
            "acme",
            "--recipient",
            "keys/acme.pub.asc",
        ])
        .arg(format!("big={}", env.path("big.bin").display()))
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let max_rss_kib: u64 = stderr(&out).lines().last().unwrap().trim().parse().unwrap();
    eprintln!("peak RSS of drp backup create, 256 MiB source: {max_rss_kib} KiB");
    assert!(
        max_rss_kib < 64 * 1024,
        "peak RSS {max_rss_kib} KiB for a 256 MiB source"
    );
}

#[test]
fn host_flags_back_up_over_ssh_and_restore_onto_another_host() {
    let (a, b) = (sshd::Sshd::start(), sshd::Sshd::start());
    let env = Env::new();
    env.keys(&["acme"]);
    let src = env.sample();
    let ssh = |server: &sshd::Sshd| -> Vec<String> {
        vec![
            "--host".into(),
            format!("{}@127.0.0.1:{}", server.user(), server.port()),
            "--ssh-key".into(),
            server.client_key().display().to_string(),
            "--known-hosts".into(),
            server.known_hosts().display().to_string(),
        ]
    };
    let store = env.store();
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
    args.extend(ssh(&a));
    args.push(format!("files={}", src.display()));
    args.push("db=cmd:printf 'remote dump\\n'".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&argv);

    let target = env.path("on-host-b");
    let mut args: Vec<String> = [
        "backup",
        "restore",
        "--store",
        &store,
        "--stack",
        "acme",
        "--key",
        "keys/acme.sec.asc",
        "--to",
    ]
    .map(String::from)
    .to_vec();
    args.push(target.display().to_string());
    args.extend(ssh(&b));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&argv);
    diff_trees(&src, &target.join("files"));
    assert_eq!(fs::read(target.join("db")).unwrap(), b"remote dump\n");

    // An unknown host key is refused, with its fingerprint.
    let empty = env.path("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let mut args: Vec<String> = [
        "backup",
        "restore",
        "--store",
        &store,
        "--stack",
        "acme",
        "--key",
        "keys/acme.sec.asc",
        "--source",
        "db",
        "--pipe-to",
        "cat",
    ]
    .map(String::from)
    .to_vec();
    args.extend(ssh(&b));
    let at = args.len() - 1;
    args[at] = empty.display().to_string();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.drp(&argv).output().unwrap();
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&b.host_key_fingerprint()),
        "{}",
        stderr(&out)
    );
}
