//! [`SshTransport`]: commands and files on a host reached over SSH (libssh2 via `ssh2`).

mod connect;
mod pump;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::TransportError;
use crate::transport::{RemoteChild, Transport};

pub use connect::fingerprint_sha256;

/// `[USER@]HOST[:PORT]`, as given on a command line (`--host`). IPv6 addresses go in
/// brackets when a port follows: `root@[2001:db8::5]:2222`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    /// The remote user, if given.
    pub user: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

/// A `[USER@]HOST[:PORT]` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SSH target {input:?}: {reason} (expected [USER@]HOST[:PORT], IPv6 as [ADDR])")]
pub struct ParseTargetError {
    input: String,
    reason: &'static str,
}

impl FromStr for SshTarget {
    type Err = ParseTargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseTargetError {
            input: input.to_string(),
            reason,
        };
        let (user, rest) = match input.rsplit_once('@') {
            Some((user, rest)) => {
                if user.is_empty() {
                    return Err(err("empty user"));
                }
                (Some(user.to_string()), rest)
            }
            None => (None, input),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| err("missing ']' after an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("expected ':PORT' after ']'"))?,
                ),
            };
            (host, port)
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address, without a port.
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(err("invalid character in host"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(err("port must be a number from 1 to 65535")),
                Ok(p) => Some(p),
            },
        };
        Ok(SshTarget {
            user,
            host: host.to_string(),
            port,
        })
    }
}

fn fmt_host_port(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match self.port {
            Some(port) => fmt_host_port(f, &self.host, port),
            None if self.host.contains(':') => write!(f, "[{}]", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Where the passphrase of a key file comes from. Never a literal: it must not show up in
/// command lines, process listings or config files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The value of this environment variable.
    Env(String),
    /// The first line of this file.
    File(PathBuf),
}

/// How the server's host key is checked against the known_hosts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyChecking {
    /// Unknown and changed keys are refused (the default, like OpenSSH's
    /// `StrictHostKeyChecking yes`).
    #[default]
    Strict,
    /// Unknown keys are appended to the known_hosts file; changed keys are refused
    /// (`StrictHostKeyChecking accept-new`).
    AcceptNew,
    /// No checking at all (an explicit opt-out; logs a warning on every connection).
    Off,
}

impl FromStr for HostKeyChecking {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" | "yes" => Ok(HostKeyChecking::Strict),
            "accept-new" => Ok(HostKeyChecking::AcceptNew),
            "off" | "no" => Ok(HostKeyChecking::Off),
            other => Err(format!(
                "unknown host-key checking {other:?} (expected strict, accept-new or off)"
            )),
        }
    }
}

/// How to reach and authenticate to one SSH host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 22).
    pub port: u16,
    /// Remote user (default: `$USER`, else `root`).
    pub user: String,
    /// Private key file. `None`: authenticate with the keys of the ssh-agent
    /// (`SSH_AUTH_SOCK`).
    pub identity_file: Option<PathBuf>,
    /// Where the key file's passphrase comes from, if it has one.
    pub passphrase: Option<PassphraseSource>,
    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// Host-key checking (default strict).
    pub host_key_checking: HostKeyChecking,
    /// Timeout of the TCP connection, and separately of the SSH handshake plus
    /// authentication (default 10 s).
    pub connect_timeout: Duration,
    /// Interval of SSH keepalive messages on an idle connection; zero disables them
    /// (default 15 s).
    pub keepalive_interval: Duration,
}

impl SshOptions {
    /// Options for `host` with every default.
    pub fn new(host: impl Into<String>) -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        SshOptions {
            host: host.into(),
            port: 22,
            user: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "root".to_string()),
            identity_file: None,
            passphrase: None,
            known_hosts: home.join(".ssh").join("known_hosts"),
            host_key_checking: HostKeyChecking::Strict,
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
        }
    }

    /// Options for a parsed `[USER@]HOST[:PORT]`, defaults for the rest.
    pub fn from_target(target: &SshTarget) -> Self {
        let mut options = SshOptions::new(target.host.clone());
        if let Some(user) = &target.user {
            options.user = user.clone();
        }
        if let Some(port) = target.port {
            options.port = port;
        }
        options
    }

    /// Sets the remote user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Authenticates with this private key file instead of the ssh-agent.
    pub fn with_identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// Sets where the key file's passphrase comes from.
    pub fn with_passphrase(mut self, source: PassphraseSource) -> Self {
        self.passphrase = Some(source);
        self
    }

    /// Sets the known_hosts file.
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = path.into();
        self
    }

    /// Sets host-key checking.
    pub fn with_host_key_checking(mut self, checking: HostKeyChecking) -> Self {
        self.host_key_checking = checking;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the keepalive interval (zero disables keepalives).
    pub fn with_keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }
}

impl fmt::Display for SshOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh://{}@", self.user)?;
        fmt_host_port(f, &self.host, self.port)
    }
}

/// A host reached over SSH.
///
/// One SSH connection is shared by all commands of the transport (each command is a
/// channel on it). The connection is opened by [`SshTransport::connect`], or on first use
/// when made with [`SshTransport::new`], and opened again on the next use when it broke.
/// Commands already running when a connection breaks fail (their streams end with an
/// error, never a clean end of file).
///
/// libssh2 is blocking and its session is not meant to be used from several threads at
/// once: each connection is driven by one dedicated thread (see the `pump` module), never
/// by the async runtime.
pub struct SshTransport {
    options: Arc<SshOptions>,
    name: Arc<str>,
    connection: tokio::sync::Mutex<Option<Arc<pump::Connection>>>,
}

impl fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTransport")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SshTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl SshTransport {
    /// A transport that connects on first use.
    pub fn new(options: SshOptions) -> Self {
        SshTransport {
            name: options.to_string().into(),
            options: Arc::new(options),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Connects (TCP, handshake, host-key check, authentication) now, so that errors show
    /// up here.
    pub async fn connect(options: SshOptions) -> Result<Self, TransportError> {
        let transport = SshTransport::new(options);
        transport.connection().await?;
        Ok(transport)
    }

    /// The options.
    pub fn options(&self) -> &SshOptions {
        &self.options
    }

    async fn connection(&self) -> Result<Arc<pump::Connection>, TransportError> {
        let mut guard = self.connection.lock().await;
        if let Some(connection) = guard.as_ref()
            && connection.is_alive()
        {
            return Ok(connection.clone());
        }
        let options = self.options.clone();
        let name = self.name.clone();
        let session = tokio::task::spawn_blocking(move || connect::connect(&options, &name))
            .await
            .map_err(|e| TransportError::Protocol {
                host: self.name.to_string(),
                context: "connecting".into(),
                message: e.to_string(),
            })??;
        let connection = Arc::new(pump::Connection::start(
            session,
            self.name.clone(),
            self.options.keepalive_interval,
        )?);
        *guard = Some(connection.clone());
        Ok(connection)
    }
}

#[async_trait]
impl Transport for SshTransport {
    async fn spawn(&self, command: &str) -> Result<RemoteChild, TransportError> {
        let connection = self.connection().await?;
        connection.spawn(command).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SshTarget {
        s.parse().unwrap()
    }

    #[test]
    fn parse_targets() {
        assert_eq!(
            t("root@10.0.0.5:2222"),
            SshTarget {
                user: Some("root".into()),
                host: "10.0.0.5".into(),
                port: Some(2222)
            }
        );
        assert_eq!(t("db1").host, "db1");
        assert_eq!(t("db1").port, None);
        assert_eq!(t("db1:22").port, Some(22));
        assert_eq!(t("[::1]:2222").host, "::1");
        assert_eq!(t("[::1]:2222").port, Some(2222));
        assert_eq!(t("ops@[2001:db8::5]").host, "2001:db8::5");
        assert_eq!(t("2001:db8::5").host, "2001:db8::5");
        assert_eq!(t("2001:db8::5").port, None);
        for bad in [
            "", "@h", "h:", "h:0", "h:99999", "[::1", "[::1]x", "u@", "a b",
        ] {
            assert!(bad.parse::<SshTarget>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "root@10.0.0.5:2222",
            "db1",
            "[::1]:22",
            "u@[2001:db8::5]",
            "u@h",
        ] {
            assert_eq!(t(s).to_string(), s);
        }
        let options = SshOptions::from_target(&t("ops@[::1]:2200"));
        assert_eq!(options.to_string(), "ssh://ops@[::1]:2200");
        assert_eq!(
            SshTransport::new(options).to_string(),
            "ssh://ops@[::1]:2200"
        );
    }

    #[test]
    fn defaults() {
        let o = SshOptions::new("h");
        assert_eq!(o.port, 22);
        assert_eq!(o.host_key_checking, HostKeyChecking::Strict);
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.keepalive_interval, Duration::from_secs(15));
        assert!(o.known_hosts.ends_with(".ssh/known_hosts"));
        assert_eq!("accept-new".parse(), Ok(HostKeyChecking::AcceptNew));
    }
}
