//! A real OpenSSH `sshd` on 127.0.0.1, started by a test and killed when dropped (also
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
//! host key as `[127.0.0.1]:PORT ssh-ed25519 ...`. Needs `openssh-server` and
//! `openssh-client` (`ssh-keygen`); logs go to `DIR/sshd.log`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
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

impl Sshd {
    /// Starts a server on a free port of 127.0.0.1 and waits until it accepts connections.
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// [`Sshd::start`] with `extra_config` (sshd_config lines, e.g. `Ciphers aes128-ctr`)
    /// appended to the configuration.
    pub fn start_with(extra_config: &str) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("drp-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let _ = fs::create_dir_all("/run/sshd"); // privilege-separation directory
        keygen(&d.join("hostkey"), "");
        keygen(&d.join("id"), "");
        fs::copy(d.join("id.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let user = current_user();

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = d.join("sshd_config");
            fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
                     AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                     Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 50\nLogLevel VERBOSE\n\
                     {extra_config}\n",
                    d = d.display()
                ),
            )
            .expect("sshd_config");
            let log = fs::File::create(d.join("sshd.log")).expect("sshd.log");
            let mut child = Command::new("/usr/sbin/sshd")
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
            loop {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    let server = Sshd {
                        dir,
                        port,
                        user,
                        child,
                    };
                    server.write_known_hosts();
                    return server;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // e.g. the port was taken meanwhile: try another one
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    fn write_known_hosts(&self) {
        fs::write(
            self.known_hosts(),
            format!("[127.0.0.1]:{} {}\n", self.port, self.host_public_key()),
        )
        .expect("known_hosts");
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as (the user running the tests, normally root).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `USER@127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.port)
    }

    /// The server's temporary directory (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client private key (no passphrase), listed in authorized_keys.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// A known_hosts file that lists this server's host key for `[127.0.0.1]:PORT`.
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
            format!("{}@127.0.0.1", self.user),
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
