//! Faults against the real thing: network blackholes (nftables and iptables) inside
//! network namespaces reached over SSH with a real sshd, frozen local processes, user
//! commands; and the dead-man timer that reverts a fault when drp does not.
//!
//! Needs root (namespaces, firewall rules), iproute2, nftables, iptables, openssh-server
//! and python3. Every namespace, process and dead-man a test starts is removed by a Drop
//! guard, also when the test fails.

mod support {
    pub mod netns;
    pub mod sshd;
}

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drp_provision::{
    Backend, Fault, FaultError, FaultSpec, FaultStep, LocalTransport, RemoteChild, SshOptions,
    SshTarget, SshTransport, Transport, TransportError, shell_quote,
};
use support::netns::NetNs;
use support::sshd::Sshd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The port of the test service inside a namespace.
const SERVICE_PORT: u16 = 8080;

/// A fault id unique to this process and test.
fn unique_id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn ssh_options(server: &Sshd) -> SshOptions {
    let target: SshTarget = server.target().parse().unwrap();
    SshOptions::from_target(&target)
        .with_identity_file(server.client_key())
        .with_known_hosts(server.known_hosts())
        .with_connect_timeout(Duration::from_secs(5))
}

/// A namespace with sshd on port 22 and an HTTP server on [`SERVICE_PORT`], both on the
/// namespace's address, reachable from here.
fn host_with_service() -> (NetNs, Sshd) {
    let ns = NetNs::new();
    let sshd = ns.start_sshd();
    let mut http = ns.command("python3");
    http.args(["-m", "http.server", &SERVICE_PORT.to_string(), "--bind"])
        .arg(ns.addr().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    ns.spawn(http);
    assert!(
        ns.wait_reachable(SERVICE_PORT, true, Duration::from_secs(10)),
        "the HTTP server in {} did not start",
        ns.name()
    );
    (ns, sshd)
}

/// Whether a TCP connection to `addr:port` succeeds within `timeout`.
async fn reachable(addr: std::net::Ipv4Addr, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((addr, port))).await,
        Ok(Ok(_))
    )
}

/// Waits up to `timeout` until [`reachable`] says `want`.
async fn wait_reachable(
    addr: std::net::Ipv4Addr,
    port: u16,
    want: bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if reachable(addr, port, Duration::from_millis(300)).await == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `path` exists on `host` (`${TMPDIR:-/tmp}` as the host's shell sees it).
async fn host_has(host: &dyn Transport, path: &str) -> bool {
    host.run(&format!("test -e {path}")).await.is_ok()
}

fn pid_file(id: &str) -> String {
    format!("\"${{TMPDIR:-/tmp}}\"/drp-fault-{id}.pid")
}

fn status_file(id: &str) -> String {
    format!("\"${{TMPDIR:-/tmp}}\"/drp-fault-{id}.status")
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Removes what a fault may leave in this machine's temporary directory when a test fails
/// (namespaces share it): kills its dead-man, if still alive here, and removes its pid
/// and status files, so a failed test leaves no timer behind to fire later.
struct DeadManGuard(String);

impl Drop for DeadManGuard {
    fn drop(&mut self) {
        let tmp = std::env::temp_dir();
        let pid_path = tmp.join(format!("drp-fault-{}.pid", self.0));
        if let Ok(pg) = std::fs::read_to_string(&pid_path) {
            let pg = pg.trim();
            // Only the dead-man itself: the pid may have been reused since.
            let cmdline = std::fs::read(format!("/proc/{pg}/cmdline")).unwrap_or_default();
            let marker = format!("drp-fault-dead-man:{}", self.0);
            if pg.bytes().all(|b| b.is_ascii_digit())
                && String::from_utf8_lossy(&cmdline).contains(&marker)
            {
                let _ = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("kill -KILL -{pg}"))
                    .status();
            }
        }
        let _ = std::fs::remove_file(pid_path);
        let _ = std::fs::remove_file(tmp.join(format!("drp-fault-{}.status", self.0)));
    }
}

/// A local child killed (frozen or not) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Network blackhole over SSH into a namespace
// ---------------------------------------------------------------------------------------

async fn blackhole_keeps_ssh(backend: Backend) {
    let (ns, sshd) = host_with_service();
    let t = SshTransport::connect(ssh_options(&sshd)).await.unwrap();
    let id = unique_id("keep");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::NetworkBlackhole {
            keep_ports: vec![22],
        },
        &id,
    )
    .with_backend(backend);
    // The root namespace's end of the veth: the namespace's way out.
    let outside = std::net::TcpListener::bind((ns.host_addr(), 0)).unwrap();
    assert!(connects_out(&ns, &outside), "no way out before the fault");
    assert_eq!(fault.describe(), "network blackhole (keeping TCP port 22)");

    fault.inject(&t, Duration::from_secs(120)).await.unwrap();
    assert!(
        !reachable(ns.addr(), SERVICE_PORT, Duration::from_secs(1)).await,
        "the service is still reachable through the blackhole"
    );
    let out = t.run("echo still here").await.unwrap();
    assert_eq!(out.stdout_str(), "still here\n", "the kept SSH port works");
    assert!(fault.is_armed(&t).await.unwrap());
    // The backend asked for, and only it.
    let tables = ns.run(&["nft", "list", "tables"]);
    let chains = ns.run(&["iptables", "-S"]) + &ns.run(&["ip6tables", "-S"]);
    match backend {
        Backend::Iptables => {
            assert!(!tables.contains("drp_fault_"), "{tables}");
            for tool in ["iptables", "ip6tables"] {
                let chains = ns.run(&[tool, "-S"]);
                assert!(chains.starts_with("-P INPUT ACCEPT"), "{chains}");
                assert!(chains.contains("-A INPUT -j DRP-"), "{tool}: {chains}");
                assert!(chains.contains("-A OUTPUT -j DRP-"), "{tool}: {chains}");
            }
        }
        _ => {
            assert!(tables.contains("table inet drp_fault_"), "{tables}");
            assert!(!chains.contains("DRP-"), "{chains}");
        }
    }
    assert!(
        !connects_out(&ns, &outside),
        "the namespace still reaches out through the blackhole"
    );
    fault.revert(&t).await.unwrap();
    assert!(
        wait_reachable(ns.addr(), SERVICE_PORT, true, Duration::from_secs(5)).await,
        "the service did not come back after the revert"
    );
    assert!(!fault.is_armed(&t).await.unwrap());
    assert!(!host_has(&t, &pid_file(&id)).await);
    assert!(!host_has(&t, &status_file(&id)).await);
    let tables = ns.run(&["nft", "list", "tables"]);
    assert!(!tables.contains("drp_fault"), "{tables}");
    let chains = ns.run(&["iptables", "-S"]) + &ns.run(&["ip6tables", "-S"]);
    assert!(!chains.contains("DRP-"), "{chains}");
    // Idempotent.
    fault.revert(&t).await.unwrap();
}

/// Whether a process inside `ns` connects to `listener` (in the root namespace, on the
/// veth address) within a second.
fn connects_out(ns: &NetNs, listener: &std::net::TcpListener) -> bool {
    let addr = listener.local_addr().unwrap();
    ns.output(&[
        "python3",
        "-c",
        &format!(
            "import socket; socket.create_connection(('{}', {}), 1)",
            addr.ip(),
            addr.port()
        ),
    ])
    .status
    .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_with_nftables_keeps_the_ssh_port() {
    blackhole_keeps_ssh(Backend::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_with_iptables_keeps_the_ssh_port() {
    blackhole_keeps_ssh(Backend::Iptables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_man_reverts_the_blackhole_when_drp_is_gone() {
    let (ns, sshd) = host_with_service();
    let t = SshTransport::connect(ssh_options(&sshd)).await.unwrap();
    let id = unique_id("deadman");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::NetworkBlackhole {
            keep_ports: vec![22],
        },
        &id,
    );
    fault.inject(&t, Duration::from_secs(3)).await.unwrap();
    let injected = Instant::now();
    // drp "dies": its connection goes away and nobody reverts.
    drop(t);
    assert!(!reachable(ns.addr(), SERVICE_PORT, Duration::from_secs(1)).await);
    assert!(
        wait_reachable(ns.addr(), SERVICE_PORT, true, Duration::from_secs(10)).await,
        "the dead-man did not restore the network"
    );
    let restored = injected.elapsed();
    assert!(
        restored >= Duration::from_secs(2),
        "restored after {restored:?}"
    );

    let t = SshTransport::connect(ssh_options(&sshd)).await.unwrap();
    assert!(!fault.is_armed(&t).await.unwrap());
    assert!(
        !host_has(&t, &pid_file(&id)).await,
        "the dead-man left its pid file"
    );
    let tables = ns.run(&["nft", "list", "tables"]);
    assert!(!tables.contains("drp_fault"), "{tables}");
    fault.revert(&t).await.unwrap();
}

/// keep_ports = []: the blackhole cuts the very connection that injects it. That is not a
/// failed injection: the dead-man applies the rules, and restores the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_that_cuts_its_own_connection() {
    let (ns, sshd) = host_with_service();
    let t = SshTransport::connect(ssh_options(&sshd)).await.unwrap();
    let id = unique_id("cut");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(FaultSpec::NetworkBlackhole { keep_ports: vec![] }, &id);
    let dead_man = Duration::from_secs(10);
    let start = Instant::now();
    fault.inject(&t, dead_man).await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(9), "inject took {took:?}");
    assert!(
        !reachable(ns.addr(), SERVICE_PORT, Duration::from_secs(1)).await,
        "the service is reachable: the rules were not applied"
    );
    assert!(
        !reachable(ns.addr(), 22, Duration::from_secs(1)).await,
        "SSH is reachable although not kept"
    );
    drop(t);
    assert!(
        wait_reachable(ns.addr(), SERVICE_PORT, true, Duration::from_secs(15)).await,
        "the dead-man did not restore the network"
    );
    let t = SshTransport::connect(ssh_options(&sshd)).await.unwrap();
    assert!(!fault.is_armed(&t).await.unwrap());
    assert!(!host_has(&t, &pid_file(&id)).await);
    // The explicit revert afterwards succeeds and tidies up.
    fault.revert(&t).await.unwrap();
    assert!(!host_has(&t, &status_file(&id)).await);
}

/// A host reached by a local shell inside a namespace, started through `wrapper` (e.g.
/// `env PATH=DIR` for a host without tools, `setpriv` for a host where drp is not root):
/// real shells and tools, in a namespace as insurance — nothing may touch this machine's
/// own firewall.
#[derive(Debug)]
struct NsShell {
    ns: String,
    wrapper: String,
}

impl std::fmt::Display for NsShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ns-shell:{}", self.ns)
    }
}

#[async_trait]
impl Transport for NsShell {
    async fn spawn(&self, command: &str) -> Result<RemoteChild, TransportError> {
        LocalTransport::new()
            .spawn(&format!(
                "exec ip netns exec {} {} /bin/sh -c {}",
                self.ns,
                self.wrapper,
                shell_quote(command)
            ))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_without_a_firewall_tool_is_unsupported() {
    let ns = NetNs::new();
    let bin = tempfile::tempdir().unwrap();
    let setsid = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v setsid"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(setsid.trim(), bin.path().join("setsid")).unwrap();
    // Only `setsid` on the PATH: no nft, no iptables.
    let host = NsShell {
        ns: ns.name().to_string(),
        wrapper: format!(
            "env PATH={}",
            shell_quote(&bin.path().display().to_string())
        ),
    };
    let id = unique_id("bare");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::NetworkBlackhole {
            keep_ports: vec![22],
        },
        &id,
    );
    let err = fault
        .inject(&host, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, FaultError::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{host}: "))
            && message.contains("neither nft nor iptables")
            && message.contains(&id),
        "{message}"
    );
    let err = fault
        .clone()
        .with_backend(Backend::Iptables)
        .inject(&host, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("iptables is not installed"),
        "{err}"
    );
    assert!(!host_has(&LocalTransport::new(), &pid_file(&id)).await);
}

/// Rules the host refuses (here: drp is not root there) are a failed injection, with
/// nft's own words, and leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_the_host_refuses_is_a_failed_injection() {
    let ns = NetNs::new();
    let host = NsShell {
        ns: ns.name().to_string(),
        wrapper: "setpriv --reuid=nobody --regid=nogroup --clear-groups".to_string(),
    };
    let id = unique_id("refused");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::NetworkBlackhole {
            keep_ports: vec![22],
        },
        &id,
    );
    let err = fault
        .inject(&host, Duration::from_secs(60))
        .await
        .unwrap_err();
    match &err {
        FaultError::Failed {
            step, revert_error, ..
        } => {
            assert_eq!(*step, FaultStep::Inject);
            assert!(revert_error.is_none(), "{revert_error:?}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("injecting failed: applying the rules: exit code 1")
            && message.contains("Operation not permitted"),
        "{message}"
    );
    assert!(!fault.is_armed(&host).await.unwrap());
    assert!(!host_has(&host, &pid_file(&id)).await);
    assert!(!host_has(&host, &status_file(&id)).await);
    assert!(!ns.run(&["nft", "list", "tables"]).contains("drp_fault"));
}

// ---------------------------------------------------------------------------------------
// Dead-man and failures, with command faults on a LocalTransport
// ---------------------------------------------------------------------------------------

fn command_fault(id: &str, inject: &str) -> Fault {
    Fault::new(
        FaultSpec::Command {
            inject: inject.to_string(),
            revert: "echo reverted >> revert.log".to_string(),
        },
        id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_revert_disarms_the_dead_man() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalTransport::in_dir(dir.path());
    let id = unique_id("disarm");
    let _guard = DeadManGuard(id.clone());
    let fault = command_fault(&id, "echo injected >> inject.log");

    fault.inject(&host, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        lines(&dir.path().join("inject.log")),
        1,
        "relative to the host's dir"
    );
    assert!(fault.is_armed(&host).await.unwrap());
    fault.revert(&host).await.unwrap();
    assert!(!fault.is_armed(&host).await.unwrap());
    assert_eq!(lines(&dir.path().join("revert.log")), 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        lines(&dir.path().join("revert.log")),
        1,
        "the disarmed dead-man reverted again"
    );
    assert!(!host_has(&host, &pid_file(&id)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_man_reverts_a_command_fault() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalTransport::in_dir(dir.path());
    let id = unique_id("fire");
    let _guard = DeadManGuard(id.clone());
    let fault = command_fault(&id, "true");
    fault.inject(&host, Duration::from_secs(1)).await.unwrap();
    assert!(fault.is_armed(&host).await.unwrap());
    assert_eq!(lines(&dir.path().join("revert.log")), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fault.is_armed(&host).await.unwrap() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !fault.is_armed(&host).await.unwrap(),
        "the dead-man never fired"
    );
    assert_eq!(lines(&dir.path().join("revert.log")), 1);
    assert!(!host_has(&host, &pid_file(&id)).await);
}

/// An injection that outlasts the dead-man's time: the revert must come after it, or it
/// would leave the fault in place for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_man_waits_for_a_slow_injection() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalTransport::in_dir(dir.path());
    let id = unique_id("slow");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::Command {
            inject: "sleep 3; echo injected >> fault.log".to_string(),
            revert: "echo reverted >> fault.log".to_string(),
        },
        &id,
    );
    fault.inject(&host, Duration::from_secs(1)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fault.is_armed(&host).await.unwrap() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fault.log")).unwrap(),
        "injected\nreverted\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_inject_is_reverted_once_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalTransport::in_dir(dir.path());
    let id = unique_id("fail");
    let _guard = DeadManGuard(id.clone());
    let fault = command_fault(
        &id,
        "echo half-done >> inject.log; echo 'boom: disk full' >&2; exit 3",
    );
    let err = fault
        .inject(&host, Duration::from_secs(2))
        .await
        .unwrap_err();
    match &err {
        FaultError::Failed {
            step,
            stderr_tail,
            revert_error,
            ..
        } => {
            assert_eq!(*step, FaultStep::Inject);
            assert!(stderr_tail.contains("boom: disk full"), "{stderr_tail:?}");
            assert!(revert_error.is_none(), "{revert_error:?}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("local:{}: ", dir.path().display()))
            && message.contains("injecting failed: exit code 3")
            && message.contains("boom: disk full")
            && message.contains(&format!("[fault {id}]")),
        "{message}"
    );
    assert_eq!(lines(&dir.path().join("revert.log")), 1, "reverted at once");
    assert!(!fault.is_armed(&host).await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lines(&dir.path().join("revert.log")),
        1,
        "reverted once only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injecting_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = LocalTransport::in_dir(dir.path());
    let id = unique_id("twice");
    let _guard = DeadManGuard(id.clone());
    let fault = command_fault(&id, "echo injected >> inject.log");
    fault.inject(&host, Duration::from_secs(60)).await.unwrap();
    let err = fault
        .inject(&host, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, FaultError::AlreadyInjected { .. }), "{err:?}");
    assert!(err.to_string().contains("revert it first"), "{err}");
    assert_eq!(
        lines(&dir.path().join("inject.log")),
        1,
        "not injected again"
    );
    fault.revert(&host).await.unwrap();
    assert_eq!(lines(&dir.path().join("revert.log")), 1);
    fault.revert(&host).await.unwrap();
    assert_eq!(
        lines(&dir.path().join("revert.log")),
        2,
        "the user's revert runs each time"
    );
    assert!(!fault.is_armed(&host).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_faults_are_refused_before_running_anything() {
    let host = LocalTransport::new();
    let fault = command_fault("bad id", "true");
    let err = fault
        .inject(&host, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, FaultError::Invalid { .. }), "{err:?}");
    let fault = command_fault(&unique_id("short"), "true");
    let err = fault
        .inject(&host, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("dead-man must be at least"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Freezing a process
// ---------------------------------------------------------------------------------------

/// Sends a GET and says whether an HTTP answer starts within `timeout`.
async fn http_answers(port: u16, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut buf = [0u8; 16];
        let n = stream.read(&mut buf).await?;
        Ok::<bool, std::io::Error>(buf[..n].starts_with(b"HTTP/"))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // `PID (COMM) STATE ...`: COMM may hold spaces, the state follows the last ')'.
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_service_freezes_and_resumes_a_process() {
    // The pattern is a directory unique to this test, so that nothing else matches.
    let served = tempfile::Builder::new()
        .prefix("drp-freeze-")
        .tempdir()
        .unwrap();
    let pattern = served.path().display().to_string();
    let port = free_port();
    let server = KillOnDrop(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(&pattern)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_answers(port, Duration::from_millis(500)).await {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let host = LocalTransport::new();
    let id = unique_id("freeze");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::StopService {
            unit: None,
            process: Some(pattern.clone()),
        },
        &id,
    );
    fault.inject(&host, Duration::from_secs(120)).await.unwrap();
    assert_eq!(process_state(pid), 'T', "the process is not stopped");
    assert!(
        !http_answers(port, Duration::from_secs(1)).await,
        "a frozen server answered"
    );
    assert!(
        fault.is_armed(&host).await.unwrap(),
        "the dead-man was frozen too"
    );

    fault.revert(&host).await.unwrap();
    assert!(
        http_answers(port, Duration::from_secs(5)).await,
        "the server did not resume"
    );
    assert_ne!(process_state(pid), 'T');
    assert_eq!(server.0.id(), pid, "same process");
    assert!(!fault.is_armed(&host).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_nothing_is_a_failed_injection() {
    let host = LocalTransport::new();
    let id = unique_id("nomatch");
    let _guard = DeadManGuard(id.clone());
    let fault = Fault::new(
        FaultSpec::StopService {
            unit: None,
            process: Some(format!("no-such-process-{id}")),
        },
        &id,
    );
    let err = fault
        .inject(&host, Duration::from_secs(60))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no process matches") && message.contains("exit code 1"),
        "{message}"
    );
    assert!(!fault.is_armed(&host).await.unwrap());
}
