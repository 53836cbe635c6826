//! SparePool against real sshd hosts: concurrent acquisition (tasks, pool instances and
//! processes sharing one state directory), health checks, release, inventory errors.

mod support {
    pub mod fleet;
    pub mod sshd;
}

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drp_provision::{
    HealthCheck, HostRequest, Inventory, Lease, ProvisionError, Provisioner, SkipReason, SparePool,
};
use support::fleet::Fleet;

/// An inventory of the fleet's servers as spare-1.. (role app, dc2), plus `extra` TOML.
fn write_inventory(dir: &Path, fleet: &Fleet, n: usize, extra: &str) -> PathBuf {
    let mut toml = String::from("# spare servers in dc2\n");
    for i in 0..n {
        toml.push_str(&format!(
            "[[host]]\nname = \"spare-{}\"\naddress = \"{}\"\ndatacenter = \"dc2\"\nroles = [\"app\", \"db\"]\n\n",
            i + 1,
            fleet.target(i)
        ));
    }
    toml.push_str(extra);
    let path = dir.join("spares.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn pool(inventory: &Path, state: &Path, fleet: &Fleet) -> SparePool {
    SparePool::load(inventory, state)
        .unwrap()
        .with_transport_factory(fleet.transport_factory())
        .with_health_timeout(Duration::from_secs(10))
}

fn names(leases: &[Lease]) -> Vec<String> {
    let mut names: Vec<String> = leases.iter().map(|l| l.host.name.clone()).collect();
    names.sort();
    names
}

/// 16 tasks over two SparePool instances (two "processes") sharing the state directory,
/// for 3 hosts: exactly 3 leases, on distinct hosts; 13 clear "no free spare" errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acquisition_never_hands_out_a_host_twice() {
    let fleet = Fleet::start(3);
    let dir = tempfile::tempdir().unwrap();
    // A host in another datacenter and one with another role: never candidates.
    let extra = format!(
        "[[host]]\nname = \"far-away\"\naddress = \"{}\"\ndatacenter = \"dc1\"\nroles = [\"app\"]\n\n\
         [[host]]\nname = \"mail\"\naddress = \"{}\"\ndatacenter = \"dc2\"\nroles = [\"mail\"]\n",
        fleet.target(0),
        fleet.target(1)
    );
    let inventory = write_inventory(dir.path(), &fleet, 3, &extra);
    let state = dir.path().join("state");
    let pools = [
        Arc::new(pool(&inventory, &state, &fleet)),
        Arc::new(pool(&inventory, &state, &fleet)),
    ];
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let pool = pools[i % 2].clone();
        tasks.spawn(async move {
            pool.acquire(&HostRequest::new("app", format!("run-{i}")).in_datacenter("dc2"))
                .await
        });
    }
    let mut leases = Vec::new();
    let mut errors = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(lease) => leases.push(lease),
            Err(e) => errors.push(e),
        }
    }
    eprintln!("16 acquisitions in {:?}", started.elapsed());
    assert_eq!(
        names(&leases),
        ["spare-1", "spare-2", "spare-3"],
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 13);
    for e in &errors {
        let ProvisionError::NoFreeSpare { skipped, .. } = e else {
            panic!("unexpected error: {e}");
        };
        assert_eq!(skipped.len(), 3, "{e}");
        assert!(
            skipped
                .iter()
                .all(|s| matches!(s.reason, SkipReason::Held { .. })),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("no free spare for role app in dc2 (pool "),
            "{msg}"
        );
        assert!(msg.contains("spare-1 "), "{msg}");
        assert!(!msg.contains("far-away") && !msg.contains("mail"), "{msg}");
    }
    // The lease files say who holds what; the message names them.
    for lease in &leases {
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(state.join(format!("{}.lease", lease.host.name))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["holder"], lease.holder.as_str());
        assert_eq!(record["host"], lease.host.name.as_str());
    }
    let e = pools[0]
        .acquire(&HostRequest::new("db", "run-x"))
        .await
        .unwrap_err()
        .to_string();
    for lease in &leases {
        assert!(
            e.contains(&format!("{} held by {}", lease.host.name, lease.holder)),
            "{e}"
        );
    }

    // Releasing one (through the other pool instance) makes it available again, once.
    let freed = leases.pop().unwrap();
    pools[1].release(&freed).await.unwrap();
    assert!(!state.join(format!("{}.lease", freed.host.name)).exists());
    let again = pools[0]
        .acquire(&HostRequest::new("db", "run-again"))
        .await
        .unwrap();
    assert_eq!(again.host.name, freed.host.name);
    assert_eq!(again.host.datacenter.as_deref(), Some("dc2"));
    assert_eq!(again.host.roles, ["app", "db"]);
    assert!(
        pools[1]
            .acquire(&HostRequest::new("app", "late").in_datacenter("dc2"))
            .await
            .is_err()
    );

    // A stale lease (the released one) is not ours any more: releasing it again is a no-op
    // while free, and refused once someone else holds the host.
    let err = pools[0].release(&freed).await.unwrap_err();
    assert!(matches!(err, ProvisionError::NotHolder { .. }), "{err}");
    assert!(err.to_string().contains("held by run-again"), "{err}");
    pools[0].release(&again).await.unwrap();
    pools[0].release(&again).await.unwrap(); // already released: fine

    // Unknown role: the message says so.
    let e = pools[0]
        .acquire(&HostRequest::new("web", "run-1"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().ends_with(": no host in the inventory has it"),
        "{e}"
    );
}

/// The child half of `acquisition_across_processes`: does nothing unless started by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_acquires() {
    let Ok(spec) = std::env::var("DRP_TEST_POOL_CHILD") else {
        return;
    };
    let [inventory, state, key, known_hosts, tag]: [&str; 5] =
        spec.split('\n').collect::<Vec<_>>().try_into().unwrap();
    let (key, known_hosts) = (PathBuf::from(key), PathBuf::from(known_hosts));
    let pool = Arc::new(
        SparePool::load(inventory, state)
            .unwrap()
            .with_transport_factory(move |host| {
                Arc::new(drp_provision::SshTransport::new(
                    drp_provision::SshOptions::from_target(&host.address)
                        .with_identity_file(&key)
                        .with_known_hosts(&known_hosts),
                )) as Arc<dyn drp_provision::Transport>
            }),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let pool = pool.clone();
        let holder = format!("{tag}-{i}");
        tasks.spawn(async move { pool.acquire(&HostRequest::new("app", holder)).await });
    }
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(lease) => println!("LEASE {} {}", lease.host.name, lease.holder),
            Err(ProvisionError::NoFreeSpare { .. }) => println!("NOFREE"),
            Err(e) => println!("ERROR {e}"),
        }
    }
}

/// Two real processes, 8 concurrent acquisitions each, one state directory, 3 hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisition_across_processes() {
    let fleet = Fleet::start(3);
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), &fleet, 3, "");
    let state = dir.path().join("state");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["proc-a", "proc-b"]
        .iter()
        .map(|tag| {
            let spec = [
                inventory.display().to_string(),
                state.display().to_string(),
                fleet.client_key().display().to_string(),
                fleet.known_hosts().display().to_string(),
                tag.to_string(),
            ]
            .join("\n");
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_acquires",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("DRP_TEST_POOL_CHILD", spec)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut held = Vec::new();
    let mut no_free = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest prints "test child_process_acquires ... " without a line end before our
        // lines: look for the markers anywhere in a line.
        for line in stdout.lines() {
            if let Some((_, rest)) = line.split_once("LEASE ") {
                held.push(rest.split(' ').next().unwrap().to_string());
            } else if line.contains("NOFREE") {
                no_free += 1;
            } else {
                assert!(!line.contains("ERROR"), "{line}");
            }
        }
    }
    held.sort();
    assert_eq!(held, ["spare-1", "spare-2", "spare-3"]);
    assert_eq!(no_free, 13);
}

/// A host whose sshd is down is skipped; when none is usable, the error says why for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_do_not_answer_are_skipped() {
    let mut fleet = Fleet::start(2);
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), &fleet, 2, "");
    let state = dir.path().join("state");
    fleet.stop(0); // spare-1 is down
    let pool = pool(&inventory, &state, &fleet);
    let lease = pool
        .acquire(&HostRequest::new("db", "run-42").in_datacenter("dc2"))
        .await
        .unwrap();
    assert_eq!(lease.host.name, "spare-2");
    assert!(
        !state.join("spare-1.lease").exists(),
        "a dead host keeps no lease"
    );

    let err = pool
        .acquire(&HostRequest::new("db", "run-43").in_datacenter("dc2"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        msg.starts_with("no free spare for role db in dc2 (pool "),
        "{msg}"
    );
    assert!(msg.contains("spare-1 did not answer: "), "{msg}");
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(msg.contains("spare-2 held by run-42"), "{msg}");

    // A host that hangs counts as not answering after the health timeout.
    let hanging: HealthCheck = Arc::new(|_| Box::pin(std::future::pending()));
    let pool = SparePool::load(&inventory, dir.path().join("state2"))
        .unwrap()
        .with_health_check(hanging)
        .with_health_timeout(Duration::from_millis(200));
    let msg = pool
        .acquire(&HostRequest::new("app", "run-44"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spare-1 did not answer: health check timed out after 0.2s")
            && msg.contains("spare-2 did not answer: health check timed out"),
        "{msg}"
    );
    assert_eq!(
        pool.leases()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.is_some())
            .count(),
        0
    );
}

/// A lease left behind by a crashed process keeps the host held until force-released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_leases_and_force_release() {
    let fleet = Fleet::start(1);
    let dir = tempfile::tempdir().unwrap();
    let inventory = write_inventory(dir.path(), &fleet, 1, "");
    let state = dir.path().join("state");
    let pool = pool(&inventory, &state, &fleet);
    let lease = pool
        .acquire(&HostRequest::new("app", "crashed-run"))
        .await
        .unwrap();
    drop(pool); // the "process" dies without releasing
    let pool = self::pool(&inventory, &state, &fleet);
    let msg = pool
        .acquire(&HostRequest::new("app", "next-run"))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("spare-1 held by crashed-run"), "{msg}");
    let leases = pool.leases().unwrap();
    assert_eq!(leases[0].1.as_ref().unwrap().holder, "crashed-run");
    assert_eq!(leases[0].1.as_ref().unwrap().acquired_at, lease.acquired_at);
    let removed = pool.force_release("spare-1").unwrap().unwrap();
    assert_eq!(removed.holder, "crashed-run");
    let lease = pool
        .acquire(&HostRequest::new("app", "next-run"))
        .await
        .unwrap();
    pool.release(&lease).await.unwrap();

    // A damaged lease file still means "held": the host is skipped, the message says why.
    std::fs::write(state.join("spare-1.lease"), "garbage").unwrap();
    let msg = pool
        .acquire(&HostRequest::new("app", "run-3"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spare-1 held by an unknown holder (host spare-1: lease file ")
            && msg.contains("not a valid lease"),
        "{msg}"
    );
}

fn inventory_error(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spares.toml");
    std::fs::write(&path, toml).unwrap();
    let err = Inventory::load(&path).unwrap_err();
    assert!(matches!(err, ProvisionError::Inventory { .. }), "{err}");
    let msg = err.to_string();
    let prefix = format!("{}:", path.display());
    msg.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{msg:?} does not start with {prefix:?}"))
        .to_string()
}

#[test]
fn inventory_errors_name_file_and_line() {
    let host = "[[host]]\nname = \"spare-1\"\naddress = \"root@10.0.2.11:22\"\ndatacenter = \"dc2\"\nroles = [\"app\"]\n";
    // Syntax error on line 3.
    let e = inventory_error("[[host]]\nname = \"a\"\naddress = \n");
    assert!(e.starts_with("3:"), "{e}");
    // Unknown field on line 6 (a typo).
    let e = inventory_error(&format!("{host}role = \"db\"\n"));
    assert!(e.starts_with("6:1: unknown field `role`"), "{e}");
    // Bad address on line 3.
    let e = inventory_error(
        "[[host]]\nname = \"a\"\naddress = \"root@h:99999\"\ndatacenter = \"dc2\"\nroles = [\"app\"]\n",
    );
    assert!(
        e.starts_with("3:") && e.contains("port must be a number"),
        "{e}"
    );
    // Duplicate name: line 8, pointing back to line 2.
    let e = inventory_error(&format!("{host}\n{host}"));
    assert!(
        e.starts_with("8:8: duplicate host name \"spare-1\" (first defined on line 2)"),
        "{e}"
    );
    // Missing field, empty roles, a name that cannot be a file name.
    let e = inventory_error("[[host]]\nname = \"a\"\naddress = \"h\"\nroles = [\"app\"]\n");
    assert!(
        e.starts_with("1:") && e.contains("missing field `datacenter`"),
        "{e}"
    );
    let e = inventory_error(
        "[[host]]\nname = \"a\"\naddress = \"h\"\ndatacenter = \"x\"\nroles = []\n",
    );
    assert!(e.starts_with("5:9: host \"a\" has no roles"), "{e}");
    let e = inventory_error(
        "[[host]]\nname = \"../a\"\naddress = \"h\"\ndatacenter = \"x\"\nroles = [\"a\"]\n",
    );
    assert!(e.starts_with("2:8: invalid host name"), "{e}");
    // Unknown top-level table.
    let e = inventory_error(&format!("{host}[hosts]\n"));
    assert!(
        e.starts_with("6:") && e.contains("unknown field `hosts`"),
        "{e}"
    );

    // The documented example parses.
    let inv = Inventory::parse(
        &format!("{host}\n[[host]]\nname = \"spare-2\"\naddress = \"10.0.2.12\"\ndatacenter = \"dc2\"\nroles = [\"app\"]\n[host.vars]\nansible_python_interpreter = \"/usr/bin/python3\"\nweight = 3\n"),
        "spares.toml",
    )
    .unwrap();
    assert_eq!(inv.hosts.len(), 2);
    assert_eq!(inv.hosts[0].address.to_string(), "root@10.0.2.11:22");
    assert_eq!(inv.hosts[1].address.port, None);
    assert_eq!(inv.hosts[1].vars["weight"], 3);
    assert!(
        Inventory::load("/nonexistent/spares.toml")
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/spares.toml")
    );
}
