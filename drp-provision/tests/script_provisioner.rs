//! ScriptProvisioner: real shell scripts, one of which "creates" a host that is a real sshd.

mod support {
    pub mod sshd;
}

use std::time::{Duration, Instant};

use drp_provision::{
    HostRequest, ProvisionError, Provisioner, ScriptOptions, ScriptProvisioner, SshOptions,
    SshTransport, Transport,
};
use support::sshd::Sshd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_creates_a_reachable_host_and_destroys_it() {
    let server = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let create = dir.path().join("create.sh");
    std::fs::write(
        &create,
        format!(
            r#"#!/bin/sh
set -eu
echo "creating a $DRP_ROLE server in $DRP_DATACENTER for $DRP_HOLDER" >&2
echo "progress: 50%"   # noise on stdout: the last line is the JSON
printf '{{"name": "%s-%s", "address": "{target}", "vars": {{"instance_id": "i-123", "token": "%s"}}}}\n' \
    "$DRP_ROLE" "$DRP_HOLDER" "$API_TOKEN"
"#,
            target = server.target()
        ),
    )
    .unwrap();
    let log = dir.path().join("released");
    let options = ScriptOptions::new(format!("sh {}", create.display()))
        .with_release_command(format!(
            "printf '%s|%s|%s|%s\\n' \"$DRP_HOST_NAME\" \"$DRP_HOST_ADDRESS\" \"$DRP_HOLDER\" \"$DRP_HOST_JSON\" >> {}",
            log.display()
        ))
        .with_env("API_TOKEN", "s3cret");
    let provisioner = ScriptProvisioner::new(options);
    let lease = provisioner
        .acquire(&HostRequest::new("db", "run-7").in_datacenter("dc2"))
        .await
        .unwrap();
    assert_eq!(lease.holder, "run-7");
    assert_eq!(lease.host.name, "db-run-7");
    assert_eq!(lease.host.address.to_string(), server.target());
    assert_eq!(lease.host.datacenter.as_deref(), Some("dc2"));
    assert_eq!(lease.host.roles, ["db"]);
    assert_eq!(lease.host.vars["instance_id"], "i-123");
    assert_eq!(lease.host.vars["token"], "s3cret");

    // The address it printed reaches the real host.
    let transport = SshTransport::connect(
        SshOptions::from_target(&lease.host.address)
            .with_identity_file(server.client_key())
            .with_known_hosts(server.known_hosts()),
    )
    .await
    .unwrap();
    let out = transport.run("echo hello from $(hostname)").await.unwrap();
    assert!(out.stdout_str().starts_with("hello from "));

    provisioner.release(&lease).await.unwrap();
    let released = std::fs::read_to_string(&log).unwrap();
    let fields: Vec<&str> = released.trim_end().splitn(4, '|').collect();
    assert_eq!(fields[..3], ["db-run-7", server.target().as_str(), "run-7"]);
    let json: serde_json::Value = serde_json::from_str(fields[3]).unwrap();
    assert_eq!(json["vars"]["instance_id"], "i-123");
    assert_eq!(json["address"], server.target());
}

#[tokio::test]
async fn failing_script_reports_exit_code_and_stderr_tail() {
    let provisioner = ScriptProvisioner::new(ScriptOptions::new(
        "for i in $(seq 1 2000); do echo \"noise line $i\" >&2; done; \
         echo 'ERROR: quota exceeded in dc2' >&2; exit 3",
    ));
    let err = provisioner
        .acquire(&HostRequest::new("app", "run-1").in_datacenter("dc2"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, ProvisionError::CommandFailed { what: "acquire", status, .. } if status == "exit code 3"),
        "{msg}"
    );
    assert!(msg.starts_with("acquire command \"for i in"), "{msg}");
    assert!(msg.contains("failed: exit code 3; stderr:\n"), "{msg}");
    assert!(msg.ends_with("ERROR: quota exceeded in dc2"), "{msg}");
    assert!(
        msg.len() < 6000,
        "the stderr is a bounded tail: {} bytes",
        msg.len()
    );
    assert!(!msg.contains("noise line 1\n"), "{msg}");

    // A failing release command too.
    let provisioner = ScriptProvisioner::new(
        ScriptOptions::new("echo '{\"name\": \"h\", \"address\": \"10.9.9.9\"}'")
            .with_release_command("echo \"cannot delete $DRP_HOST_NAME\" >&2; exit 1"),
    );
    let lease = provisioner
        .acquire(&HostRequest::new("app", "r"))
        .await
        .unwrap();
    assert_eq!(lease.host.datacenter, None);
    let msg = provisioner.release(&lease).await.unwrap_err().to_string();
    assert!(
        msg.starts_with("release command ")
            && msg.ends_with("exit code 1; stderr:\ncannot delete h"),
        "{msg}"
    );
}

#[tokio::test]
async fn invalid_output_is_a_clear_error() {
    let cases = [
        (
            "echo 'Instance created!'",
            "expected value",
            "Instance created!",
        ),
        ("true", "stdout is empty", "(empty)"),
        (
            r#"echo '{"name": "a"}'"#,
            "missing field `address`",
            r#"{"name": "a"}"#,
        ),
        (
            r#"echo '{"name": "a", "address": "h", "adress": "x"}'"#,
            "unknown field `adress`",
            r#"{"name": "a", "address": "h", "adress": "x"}"#,
        ),
        (
            r#"echo '{"name": "a", "address": "root@h:0"}'"#,
            "port must be a number",
            r#"{"name": "a", "address": "root@h:0"}"#,
        ),
    ];
    for (command, message, stdout) in cases {
        let provisioner =
            ScriptProvisioner::new(ScriptOptions::new(format!("echo working >&2; {command}")));
        let err = provisioner
            .acquire(&HostRequest::new("app", "r"))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ProvisionError::InvalidScriptOutput { .. }),
            "{command}: {msg}"
        );
        assert!(msg.starts_with("acquire command \"echo working"), "{msg}");
        assert!(msg.contains("printed invalid host JSON: "), "{msg}");
        assert!(msg.contains(message), "{command}: {msg}");
        assert!(
            msg.contains(&format!("\nstdout:\n{stdout}\nstderr:\n")),
            "{msg}"
        );
        assert!(msg.ends_with("stderr:\nworking"), "{msg}");
    }
}

#[tokio::test]
async fn a_hanging_script_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let provisioner = ScriptProvisioner::new(
        ScriptOptions::new(format!("(sleep 2; touch {}) & sleep 30", marker.display()))
            .with_timeout(Duration::from_millis(500)),
    );
    let started = Instant::now();
    let msg = provisioner
        .acquire(&HostRequest::new("app", "r"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        msg.contains("failed: timed out after 0.5s (killed)"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "the script's background child survived the timeout"
    );
}
