//! A throwaway network namespace ("a host in another datacenter") for tests that need real
//! networking faults: created by the test, reachable from the root namespace over a veth
//! pair, and deleted with every process in it when dropped (also when the test panics).
//! Needs root and `iproute2`.
//!
//! Reusable from other crates' tests; it uses nothing of this crate, only the sibling
//! `sshd` module (for [`NetNs::start_sshd`]), so include both under one parent module:
//!
//! ```ignore
//! mod support {
//!     #[path = "../../../drp-provision/tests/support/sshd.rs"]
//!     pub mod sshd;
//!     #[path = "../../../drp-provision/tests/support/netns.rs"]
//!     pub mod netns;
//! }
//! let ns = support::netns::NetNs::new();
//! let server = ns.start_sshd(); // ssh://USER@<ns.addr()>:22
//! ```
//!
//! Addressing (as shared/SETUP.md asks): each namespace gets its own /30 out of
//! 10.231.0.0/16 on its veth pair, with no route beyond it, so test traffic never leaves
//! the machine. Index `i` owns 10.231.0.0 + 4i: `.1` in the root namespace
//! ([`NetNs::host_addr`]), `.2` inside ([`NetNs::addr`]). The veth's name (`drpf<i>h`)
//! doubles as a lock on the index: creating a link whose name exists fails, so two test
//! processes can never take the same subnet.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How many /30 subnets 10.231.0.0/16 holds.
const SUBNETS: u32 = 1 << 14;

/// A network namespace with a veth link to the root namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    veth: String,
    index: u32,
    children: Mutex<Vec<Child>>,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?} (is iproute2 installed?): {e}"))
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Creates a namespace with `lo` up and a veth pair to the root namespace, addressed
    /// as described in the module documentation.
    pub fn new() -> NetNs {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let start = std::process::id().wrapping_mul(7919).wrapping_add(
            COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(104_729),
        );
        for attempt in 0..64 {
            let index = start.wrapping_add(attempt) % SUBNETS;
            if let Some(ns) = NetNs::try_create(index) {
                return ns;
            }
        }
        panic!(
            "no free namespace index after 64 attempts (leftover drpf* links or drp-t-* namespaces?)"
        );
    }

    fn try_create(index: u32) -> Option<NetNs> {
        let name = format!("drp-t-{index}");
        let veth = format!("drpf{index}h");
        // Taking the index: `ip netns add` and `ip link add` both fail if the name exists.
        if !ip(&["netns", "add", &name]).status.success() {
            return None;
        }
        let peer = format!("drpf{index}n");
        if !ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &name,
        ])
        .status
        .success()
        {
            let _ = ip(&["netns", "del", &name]);
            return None;
        }
        // From here on, Drop cleans up whatever fails.
        let ns = NetNs {
            name,
            veth,
            index,
            children: Mutex::new(Vec::new()),
        };
        let host_cidr = format!("{}/30", ns.host_addr());
        let ns_cidr = format!("{}/30", ns.addr());
        ip_ok(&["addr", "add", &host_cidr, "dev", &ns.veth]);
        ip_ok(&["link", "set", &ns.veth, "up"]);
        ip_ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip_ok(&["-n", &ns.name, "addr", "add", &ns_cidr, "dev", &peer]);
        ip_ok(&["-n", &ns.name, "link", "set", &peer, "up"]);
        Some(ns)
    }

    /// The namespace's name (`drp-t-N`), for `ip netns exec` / `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address inside the namespace (reachable from the root namespace).
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 231, 0, 0)) + 4 * self.index + 2)
    }

    /// The root namespace's end of the veth pair.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 231, 0, 0)) + 4 * self.index + 1)
    }

    /// `ip netns exec NAME PROGRAM`: configure its arguments and stdio, then [`NetNs::spawn`]
    /// it, or run it to completion.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Starts `command` (from [`NetNs::command`]; stdio as configured, stdin null unless
    /// set) and keeps it: it is killed when the namespace is dropped. Returns its pid
    /// (`ip netns exec` execs the program, so this is the program's own pid).
    pub fn spawn(&self, mut command: Command) -> u32 {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        pid
    }

    /// Runs `argv` inside the namespace to completion, whatever its exit status.
    pub fn output(&self, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("a program");
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", self.name))
    }

    /// Runs `argv` inside the namespace; panics unless it succeeds; returns its stdout.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self.output(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts OpenSSH's sshd inside the namespace on port 22 of [`NetNs::addr`] (the
    /// namespace is fresh, so the port is free). The server is stopped when dropped, and
    /// in any case when the namespace is.
    pub fn start_sshd(&self) -> super::sshd::Sshd {
        super::sshd::Sshd::start_on(self.addr(), 22, &["ip", "netns", "exec", &self.name], "")
    }

    /// Whether a TCP connection from the root namespace to `ADDR:port` succeeds within
    /// `timeout` (a blackholed port times out rather than being refused).
    pub fn reachable(&self, port: u16, timeout: Duration) -> bool {
        TcpStream::connect_timeout(&SocketAddr::from((self.addr(), port)), timeout).is_ok()
    }

    /// Waits up to `timeout` until [`NetNs::reachable`] says `want`.
    pub fn wait_reachable(&self, port: u16, want: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.reachable(port, Duration::from_millis(300)) == want {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pids of every process inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        String::from_utf8_lossy(&ip(&["netns", "pids", &self.name]).stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Default for NetNs {
    fn default() -> Self {
        NetNs::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // And whatever else runs in there (sshd sessions, detached processes).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            let list: Vec<String> = pids.iter().map(i32::to_string).collect();
            // The shell's own `kill`: no dependency on procps.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -KILL {} 2>/dev/null", list.join(" ")))
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
        // Deleting one end of the pair deletes both.
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
