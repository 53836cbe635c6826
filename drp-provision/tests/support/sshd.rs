//! A real OpenSSH `sshd` on 127.0.0.1 (or on a network namespace's address, see
//! [`Sshd::start_on`] and `netns.rs`), started by a test and killed when dropped (also
//! when the test panics). Reusable from other crates' tests:
//!
//! ```ignore
//! #[path = "../../drp-provision/tests/support/sshd.rs"]
//! mod sshd;
//! let server = sshd::Sshd::start();
//! ```
//!
//! Each server has its own temporary directory with an ed25519 host key, a client key
//! (`id`, no passphrase) listed in `authorized_keys`, and a `known_hosts` file that lists the
//! host key as `[127.0.0.1]:PORT ssh-ed25519 ...` (bare `ADDR` for port 22). Needs `openssh-server` and
//! `openssh-client` (`ssh-keygen`); logs go to `DIR/sshd.log`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    addr: Ipv4Addr,
    port: u16,
    user: String,
    child: Child,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates an ed25519 key pair at `path` (and `path.pub`) with `passphrase` ("" for none).
pub fn keygen(path: &Path, passphrase: &str) {
    run(Command::new("ssh-keygen")
        .args([
            "-q", "-t", "ed25519", "-C", "drp-test", "-N", passphrase, "-f",
        ])
        .arg(path));
}

/// The `SHA256:...` fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn fingerprint(pub_key: &Path) -> String {
    let out = run(Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(pub_key));
    out.split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l prints a fingerprint")
        .to_string()
}

/// The user running the tests (`id -un`), as which the servers are logged in to.
pub fn current_user() -> String {
    run(Command::new("id").arg("-un")).trim().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A temporary directory with a host key, a client key and its authorized_keys.
fn new_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("drp-sshd-")
        .tempdir()
        .expect("temp dir");
    let d = dir.path();
    let _ = fs::create_dir_all("/run/sshd"); // privilege-separation directory
    keygen(&d.join("hostkey"), "");
    keygen(&d.join("id"), "");
    fs::copy(d.join("id.pub"), d.join("authorized_keys")).expect("authorized_keys");
    dir
}

/// Writes the configuration, starts sshd and waits up to 10 s until `addr:port` accepts
/// connections. On failure, gives the directory back with the server's log.
fn launch(
    dir: tempfile::TempDir,
    addr: Ipv4Addr,
    port: u16,
    wrapper: &[&str],
    extra_config: &str,
) -> Result<Sshd, (tempfile::TempDir, String)> {
    let d = dir.path();
    let config = d.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress {addr}\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 50\nLogLevel VERBOSE\n\
             {extra_config}\n",
            d = d.display()
        ),
    )
    .expect("sshd_config");
    let log = fs::File::create(d.join("sshd.log")).expect("sshd.log");
    let (program, args) = match wrapper.split_first() {
        Some((program, args)) => (*program, args),
        None => ("/usr/sbin/sshd", &[][..]),
    };
    let mut command = Command::new(program);
    command.args(args);
    if !wrapper.is_empty() {
        command.arg("/usr/sbin/sshd");
    }
    let mut child = command
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start /usr/sbin/sshd (is openssh-server installed?)");
    let deadline = Instant::now() + Duration::from_secs(10);
    let socket = SocketAddr::from((addr, port));
    loop {
        if TcpStream::connect_timeout(&socket, Duration::from_millis(500)).is_ok() {
            let server = Sshd {
                dir,
                addr,
                port,
                user: current_user(),
                child,
            };
            server.write_known_hosts();
            return Ok(server);
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
    Err((dir, log))
}

impl Sshd {
    /// Starts a server on a free port of 127.0.0.1 and waits until it accepts connections.
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// [`Sshd::start`] with `extra_config` (sshd_config lines, e.g. `Ciphers aes128-ctr`)
    /// appended to the configuration.
    pub fn start_with(extra_config: &str) -> Sshd {
        let mut dir = new_dir();
        let mut last_log = String::new();
        for _attempt in 0..5 {
            // The port may be taken between probing and sshd's bind: then try another one.
            match launch(dir, Ipv4Addr::LOCALHOST, free_port(), &[], extra_config) {
                Ok(server) => return server,
                Err((returned, log)) => {
                    dir = returned;
                    last_log = log;
                }
            }
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// Starts a server listening on `addr:port`, launched as `WRAPPER... /usr/sbin/sshd ...`
    /// (e.g. `["ip", "netns", "exec", NAME]` to run it inside a network namespace; the
    /// address must be reachable from here), and waits until it accepts connections.
    pub fn start_on(addr: Ipv4Addr, port: u16, wrapper: &[&str], extra_config: &str) -> Sshd {
        match launch(new_dir(), addr, port, wrapper, extra_config) {
            Ok(server) => server,
            Err((_, log)) => panic!("sshd on {addr}:{port} did not start; its log:\n{log}"),
        }
    }

    fn write_known_hosts(&self) {
        // As OpenSSH (and drp) name a host in known_hosts: bare for port 22.
        let name = if self.port == 22 {
            self.addr.to_string()
        } else {
            format!("[{}]:{}", self.addr, self.port)
        };
        fs::write(
            self.known_hosts(),
            format!("{name} {}\n", self.host_public_key()),
        )
        .expect("known_hosts");
    }

    /// The address the server listens on (127.0.0.1 unless started with
    /// [`Sshd::start_on`]).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as (the user running the tests, normally root).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `USER@ADDR:PORT` (`ADDR` is 127.0.0.1 unless started with [`Sshd::start_on`]).
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.addr, self.port)
    }

    /// The server's temporary directory (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client private key (no passphrase), listed in authorized_keys.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// A known_hosts file that lists this server's host key for `[ADDR]:PORT`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The host public key line: `ssh-ed25519 AAAA... drp-test`.
    pub fn host_public_key(&self) -> String {
        fs::read_to_string(self.dir.path().join("hostkey.pub"))
            .expect("hostkey.pub")
            .trim()
            .to_string()
    }

    /// The host key's `SHA256:...` fingerprint (from `ssh-keygen -l`).
    pub fn host_key_fingerprint(&self) -> String {
        fingerprint(&self.dir.path().join("hostkey.pub"))
    }

    /// Lets the key whose public half is `pub_key` log in.
    pub fn authorize(&self, pub_key: &Path) {
        let key = fs::read_to_string(pub_key).expect("public key");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        file.write_all(key.as_bytes())
            .expect("append to authorized_keys");
    }

    /// Arguments for OpenSSH's `ssh` client to reach this server strictly:
    /// `ssh <args> COMMAND`.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.client_key().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            format!("{}@{}", self.user, self.addr),
        ]
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
