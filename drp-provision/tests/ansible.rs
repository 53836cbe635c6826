//! AnsibleRunner: a real `ansible-playbook` (PyPI ansible-core) over SSH to real sshd
//! hosts on loopback, with strict host-key checking. `.ci/install-deps` installs it.

mod support {
    pub mod fleet;
    pub mod sshd;
}

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use drp_provision::{
    AnsibleError, AnsibleOptions, AnsibleRunner, HostRequest, HostSpec, Inventory, Prepared,
    ProvisionError, Provisioner, SparePool, Stream,
};
use support::fleet::Fleet;
use support::sshd::Sshd;

fn require_ansible() {
    let ok = std::process::Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "ansible-playbook is not on PATH: run .ci/install-deps (PyPI ansible-core)"
    );
}

fn host(name: &str, target: &str, role: &str) -> HostSpec {
    let mut host = HostSpec::new(name, target.parse().unwrap());
    host.roles = vec![role.to_string()];
    host.datacenter = Some("dc2".into());
    // The "remote" is this machine: use its system python, no interpreter discovery.
    host.vars.insert(
        "ansible_python_interpreter".into(),
        "/usr/bin/python3".into(),
    );
    host
}

/// Options for `playbook` reaching `fleet` strictly, remote temp files in `dir`.
fn options(playbook: &Path, key: &Path, known_hosts: &Path, dir: &Path) -> AnsibleOptions {
    AnsibleOptions::new(playbook)
        .with_private_key(key)
        .with_known_hosts(known_hosts)
        .with_env(
            "ANSIBLE_REMOTE_TEMP",
            dir.join("remote-tmp").display().to_string(),
        )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

fn collecting(runner: AnsibleRunner) -> (AnsibleRunner, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let runner = runner.with_output(move |stream, line| {
        sink.lock().unwrap().push((stream, line.to_string()));
    });
    (runner, lines)
}

/// The README's example playbook, run for real.
const WRITE_PLAYBOOK: &str = include_str!("../../examples/ansible/prepare-spare.yml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playbook_prepares_real_hosts_over_ssh() {
    require_ansible();
    let fleet = Fleet::start(2);
    let dir = tempfile::tempdir().unwrap();
    let target_dir = dir.path().join("remote");
    std::fs::create_dir(&target_dir).unwrap();
    let playbook = write(dir.path(), "site.yml", WRITE_PLAYBOOK);
    // A wrapper that records the command line: the extra vars must not be on it.
    let argv_log = dir.path().join("argv");
    let wrapper = write(
        dir.path(),
        "ansible-wrapper",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexec ansible-playbook \"$@\"\n",
            argv_log.display()
        ),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut options = options(
        &playbook,
        &fleet.client_key(),
        &fleet.known_hosts(),
        dir.path(),
    )
    .with_extra_var("greeting", "hello s3cret-token")
    .with_extra_var("target_dir", target_dir.display().to_string());
    options.program = wrapper;
    let (runner, lines) = collecting(AnsibleRunner::new(options));
    let hosts = [
        host("spare-1", &fleet.target(0), "app"),
        host("spare-2", &fleet.target(1), "app"),
    ];
    let started = Instant::now();
    runner.run(&hosts).await.unwrap();
    eprintln!("ansible-playbook on 2 hosts: {:?}", started.elapsed());

    for name in ["spare-1", "spare-2"] {
        let text = std::fs::read_to_string(target_dir.join(format!("{name}.txt"))).unwrap();
        assert_eq!(
            text,
            format!("hello s3cret-token from {name} in app,dc_dc2,drp\n")
        );
    }
    // Output was streamed, line by line, with the default callback's format.
    let lines = lines.lock().unwrap();
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect();
    assert!(
        stdout
            .iter()
            .any(|l| l.starts_with("TASK [Leave a note of who prepared the host")),
        "{stdout:#?}"
    );
    assert!(stdout.contains(&"changed: [spare-1]"), "{stdout:#?}");
    assert!(stdout.contains(&"changed: [spare-2]"), "{stdout:#?}");
    assert!(
        stdout.iter().any(|l| l.starts_with("PLAY RECAP")),
        "{stdout:#?}"
    );
    // The secret went through a private file, never the command line; the file is gone.
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(!argv.contains("s3cret"), "{argv}");
    let vars_file = argv
        .lines()
        .find_map(|a| a.strip_prefix('@'))
        .expect("-e @FILE");
    assert!(vars_file.ends_with("extra-vars.json"), "{argv}");
    assert!(
        !Path::new(vars_file).exists(),
        "the extra-vars file is removed"
    );
}

const FAILING_PLAYBOOK: &str = r#"
- name: Prepare
  hosts: all
  gather_facts: false
  tasks:
    - name: Harmless step
      ansible.builtin.command: "true"
    - name: Ignored failure
      ansible.builtin.command: "false"
      ignore_errors: true
    - name: Break on purpose
      ansible.builtin.shell: "echo 'disk full' >&2; exit 7"
      when: inventory_hostname == "spare-2"
    - name: After the failure
      ansible.builtin.command: "true"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_task_is_reported_with_its_host() {
    require_ansible();
    let fleet = Fleet::start(2);
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "fail.yml", FAILING_PLAYBOOK);
    let runner = AnsibleRunner::new(options(
        &playbook,
        &fleet.client_key(),
        &fleet.known_hosts(),
        dir.path(),
    ));
    let hosts = [
        host("spare-1", &fleet.target(0), "app"),
        host("spare-2", &fleet.target(1), "db"),
    ];
    let started = Instant::now();
    let err = runner.run(&hosts).await.unwrap_err();
    eprintln!("failing run: {:?}\n{err}", started.elapsed());
    let AnsibleError::TaskFailed {
        host,
        task,
        message,
        failures,
        ..
    } = &err
    else {
        panic!("not a task failure: {err}");
    };
    assert_eq!(host, "spare-2");
    assert_eq!(task, "Break on purpose");
    assert!(message.contains("non-zero return code"), "{message}");
    assert!(message.contains("stderr: disk full"), "{message}");
    assert_eq!(
        failures.len(),
        1,
        "the ignored failure is not reported: {failures:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "playbook {}: task \"Break on purpose\" failed on host spare-2: ",
            playbook.display()
        )),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused() {
    require_ansible();
    let server = Sshd::start();
    let other = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    // known_hosts lists another server's key for this server's address.
    let known_hosts = write(
        dir.path(),
        "known_hosts",
        &format!(
            "[127.0.0.1]:{} {}\n",
            server.port(),
            other.host_public_key()
        ),
    );
    let playbook = write(dir.path(), "site.yml", WRITE_PLAYBOOK);
    let runner = AnsibleRunner::new(
        options(&playbook, &server.client_key(), &known_hosts, dir.path())
            .with_extra_var("greeting", "x")
            .with_extra_var("target_dir", dir.path().display().to_string()),
    );
    let err = runner
        .run(&[host("spare-1", &server.target(), "app")])
        .await
        .unwrap_err();
    let AnsibleError::TaskFailed { failures, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(failures.len(), 1, "{err}");
    assert!(failures[0].unreachable, "{err}");
    assert_eq!(failures[0].host, "spare-1");
    assert!(
        failures[0]
            .message
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || failures[0].message.contains("Host key verification failed"),
        "{err}"
    );
    assert!(!dir.path().join("spare-1.txt").exists());
}

#[tokio::test]
async fn playbook_errors_without_a_task_carry_the_output() {
    require_ansible();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "broken.yml", "- hosts: all\n  tasks: [oops\n");
    let err = AnsibleRunner::new(AnsibleOptions::new(&playbook))
        .run(&[HostSpec::new("h", "127.0.0.1:1".parse().unwrap())])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AnsibleError::Failed { .. }), "{msg}");
    assert!(
        msg.contains("ansible-playbook failed with exit code "),
        "{msg}"
    );
    assert!(msg.contains("broken.yml"), "{msg}");

    let err = AnsibleRunner::new(AnsibleOptions {
        program: "/nonexistent/ansible-playbook".into(),
        ..AnsibleOptions::new(&playbook)
    })
    .run(&[])
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("starting /nonexistent/ansible-playbook: "),
        "{err}"
    );
}

/// `Prepared<SparePool>`: a host whose preparation fails is released again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_spares_are_released_when_the_playbook_fails() {
    require_ansible();
    let fleet = Fleet::start(2);
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for i in 0..2 {
        toml.push_str(&format!(
            "[[host]]\nname = \"spare-{}\"\naddress = \"{}\"\ndatacenter = \"dc2\"\nroles = [\"db\"]\n[host.vars]\nansible_python_interpreter = \"/usr/bin/python3\"\n\n",
            i + 1,
            fleet.target(i)
        ));
    }
    let inventory = Inventory::parse(&toml, "spares.toml").unwrap();
    let state = dir.path().join("state");
    let spares = || {
        SparePool::new(inventory.clone(), &state).with_transport_factory(fleet.transport_factory())
    };
    let failing = Prepared::new(
        spares(),
        AnsibleRunner::new(options(
            &write(dir.path(), "fail.yml", FAILING_PLAYBOOK),
            &fleet.client_key(),
            &fleet.known_hosts(),
            dir.path(),
        )),
    );
    // spare-1 passes the failing playbook (its failing task is for spare-2 only).
    let lease1 = failing
        .acquire(&HostRequest::new("db", "run-1"))
        .await
        .unwrap();
    assert_eq!(lease1.host.name, "spare-1");
    let err = failing
        .acquire(&HostRequest::new("db", "run-2"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProvisionError::Prepare { .. }), "{msg}");
    assert!(
        msg.starts_with("preparing host spare-2 failed: playbook ")
            && msg.contains("task \"Break on purpose\" failed on host spare-2"),
        "{msg}"
    );
    assert!(
        !state.join("spare-2.lease").exists(),
        "spare-2 was released"
    );
    let target_dir = dir.path().join("remote");
    std::fs::create_dir(&target_dir).unwrap();
    let good = Prepared::new(
        spares(),
        AnsibleRunner::new(
            options(
                &write(
                    dir.path(),
                    "site.yml",
                    &WRITE_PLAYBOOK.replace("hosts: app", "hosts: db"),
                ),
                &fleet.client_key(),
                &fleet.known_hosts(),
                dir.path(),
            )
            .with_extra_var("greeting", "hi")
            .with_extra_var("target_dir", target_dir.display().to_string()),
        ),
    );
    let lease2 = good
        .acquire(&HostRequest::new("db", "run-2"))
        .await
        .unwrap();
    assert_eq!(lease2.host.name, "spare-2");
    assert!(target_dir.join("spare-2.txt").exists());
    good.release(&lease2).await.unwrap();
    failing.release(&lease1).await.unwrap();
}
