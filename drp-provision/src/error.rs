//! The error type of every transport, and exit statuses.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How a command ended: with an exit code, or killed by a signal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The command exited with this code.
    Code(i32),
    /// The command was killed by this signal, named as SSH names it: without the `SIG`
    /// prefix (`"KILL"`, `"TERM"`, `"PIPE"`, ...).
    Signal(String),
}

impl ExitStatus {
    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code, if the command exited (rather than being killed).
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Code(code) => Some(*code),
            ExitStatus::Signal(_) => None,
        }
    }

    /// The signal name (without `SIG`), if the command was killed by a signal.
    pub fn signal(&self) -> Option<&str> {
        match self {
            ExitStatus::Code(_) => None,
            ExitStatus::Signal(name) => Some(name),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(name) => write!(f, "signal SIG{name}"),
        }
    }
}

/// Errors of a [`Transport`](crate::Transport). Every message names the host (the
/// transport's `Display`, e.g. `ssh://root@10.0.0.5:22` or `local`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The host answered, but nothing listens on the port (TCP RST).
    #[error("{host}: connection refused (is sshd running and listening on that port?)")]
    ConnectionRefused {
        /// The host, as the transport displays it.
        host: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The host name does not resolve, or there is no route to the host.
    #[error("{host}: unreachable: {reason}")]
    Unreachable {
        /// The host, as the transport displays it.
        host: String,
        /// What failed (DNS resolution, no route, network down, ...).
        reason: String,
    },

    /// Connecting, the SSH handshake or authentication took longer than the configured
    /// timeout.
    #[error("{host}: timed out after {}s while {stage}", timeout.as_secs_f64())]
    TimedOut {
        /// The host, as the transport displays it.
        host: String,
        /// What was going on ("connecting", "the SSH handshake", ...).
        stage: String,
        /// The configured timeout.
        timeout: Duration,
    },

    /// The server refused every credential that was tried, or the key could not be loaded.
    #[error("{host}: authentication failed for user {user:?} with {method}: {reason}")]
    AuthenticationFailed {
        /// The host, as the transport displays it.
        host: String,
        /// The remote user.
        user: String,
        /// What was tried, e.g. `public key /root/.ssh/id_ed25519` or `ssh-agent`.
        method: String,
        /// Why it failed (never contains a passphrase).
        reason: String,
    },

    /// The server's host key is not in the known_hosts file (strict host-key checking).
    #[error(
        "{host}: host key verification failed: the {key_type} host key {fingerprint} of \
         {known_hosts_name} is not in {known_hosts}. Check the fingerprint out of band; if it \
         is right, add the key with `{}` (or opt in to accept-new host-key checking)",
        keyscan_hint(known_hosts_name, key_type, known_hosts),
        known_hosts = known_hosts.display()
    )]
    HostKeyUnknown {
        /// The host, as the transport displays it.
        host: String,
        /// The server's key fingerprint, OpenSSH style: `SHA256:` + base64 without padding.
        fingerprint: String,
        /// The key type as OpenSSH names it (`ssh-ed25519`, ...).
        key_type: String,
        /// The host as it would appear in known_hosts (`[127.0.0.1]:2222`).
        known_hosts_name: String,
        /// The known_hosts file that was searched.
        known_hosts: PathBuf,
    },

    /// The server presented a key other than the one in known_hosts: possibly a
    /// man-in-the-middle attack, or the host was reinstalled.
    #[error(
        "{host}: REMOTE HOST KEY CHANGED: the server presented the {key_type} key {fingerprint}, \
         but {known_hosts} has a different key for {known_hosts_name}. Someone could be \
         intercepting the connection, or the host was reinstalled; refusing to connect. If the \
         change is expected, remove the old key with `ssh-keygen -R '{known_hosts_name}' -f {known_hosts}` \
         and add the new one after checking its fingerprint",
        known_hosts = known_hosts.display()
    )]
    HostKeyMismatch {
        /// The host, as the transport displays it.
        host: String,
        /// The fingerprint of the key the server presented (`SHA256:...`).
        fingerprint: String,
        /// The key type as OpenSSH names it.
        key_type: String,
        /// The host as it appears in known_hosts.
        known_hosts_name: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
    },

    /// A command run with [`Transport::run`](crate::Transport::run) (or an upload/download
    /// helper command) did not exit with code 0.
    #[error(
        "{host}: command {command:?} failed with {status}{}",
        stderr_suffix(stderr_tail)
    )]
    CommandFailed {
        /// The host, as the transport displays it.
        host: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its stderr (bounded).
        stderr_tail: String,
    },

    /// Bad options (e.g. the passphrase environment variable is not set).
    #[error("{host}: invalid configuration: {message}")]
    Config {
        /// The host, as the transport displays it.
        host: String,
        /// What is wrong.
        message: String,
    },

    /// An I/O error (local files, reading an upload source, a lost connection, ...).
    #[error("{host}: {context}: {source}")]
    Io {
        /// The host, as the transport displays it.
        host: String,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An SSH protocol error reported by libssh2 (other than the cases above).
    #[error("{host}: SSH error while {context}: {message}")]
    Protocol {
        /// The host, as the transport displays it.
        host: String,
        /// What was being done.
        context: String,
        /// libssh2's message and code.
        message: String,
    },
}

/// `ssh-keyscan [-p PORT] -t TYPE HOST >> FILE` for a known_hosts name.
fn keyscan_hint(name: &str, key_type: &str, file: &std::path::Path) -> String {
    let (host, port) = match name.strip_prefix('[').and_then(|r| r.split_once("]:")) {
        Some((host, port)) => (host, format!(" -p {port}")),
        None => (name, String::new()),
    };
    let key_type = key_type.trim_start_matches("ssh-");
    format!(
        "ssh-keyscan{port} -t {key_type} {host} >> {}",
        file.display()
    )
}

pub(crate) fn stderr_suffix(tail: &str) -> String {
    let tail = tail.trim_end();
    if tail.is_empty() {
        " (no stderr output)".to_string()
    } else {
        format!("; stderr:\n{tail}")
    }
}

impl TransportError {
    /// The exit code, for [`TransportError::CommandFailed`] with an exit code.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            TransportError::CommandFailed { status, .. } => status.code(),
            _ => None,
        }
    }

    pub(crate) fn io(
        host: impl fmt::Display,
        context: impl Into<String>,
        source: io::Error,
    ) -> Self {
        TransportError::Io {
            host: host.to_string(),
            context: context.into(),
            source,
        }
    }
}
