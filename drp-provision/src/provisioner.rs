//! The [`Provisioner`] trait: acquire a host for a role, release it; the types it
//! exchanges ([`HostRequest`], [`HostSpec`], [`Lease`]) and its error, [`ProvisionError`].
//!
//! Implementations: [`SparePool`](crate::SparePool) (a static inventory of spare hosts) and
//! [`ScriptProvisioner`](crate::ScriptProvisioner) (a user command creates the host).
//! [`Prepared`](crate::Prepared) wraps any provisioner and prepares each acquired host with
//! an Ansible playbook.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ansible::AnsibleError;
use crate::ssh::SshTarget;

/// What a caller asks a [`Provisioner`] for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRequest {
    /// The role the host must have (`app`, `db`, ...).
    pub role: String,
    /// The datacenter the host must be in; `None`: any.
    pub datacenter: Option<String>,
    /// Who will hold the host: a run id, an operator name. Recorded with the lease.
    pub holder: String,
}

impl HostRequest {
    /// A request for `role` in any datacenter, held by `holder`.
    pub fn new(role: impl Into<String>, holder: impl Into<String>) -> Self {
        HostRequest {
            role: role.into(),
            datacenter: None,
            holder: holder.into(),
        }
    }

    /// Restricts the request to `datacenter`.
    pub fn in_datacenter(mut self, datacenter: impl Into<String>) -> Self {
        self.datacenter = Some(datacenter.into());
        self
    }

    /// `role db in dc2` / `role db` (for messages).
    pub(crate) fn describe(&self) -> String {
        match &self.datacenter {
            Some(dc) => format!("role {} in {dc}", self.role),
            None => format!("role {}", self.role),
        }
    }
}

/// A host: how to reach it and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// A short unique name (`spare-1`); also the Ansible inventory hostname.
    pub name: String,
    /// How to reach it over SSH: `[USER@]HOST[:PORT]`.
    #[serde(with = "target_serde")]
    pub address: SshTarget,
    /// The datacenter it is in, if known.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// The roles it can take.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Free-form variables (become Ansible host variables).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
}

impl HostSpec {
    /// A host named `name` at `address`, with no datacenter, roles or vars.
    pub fn new(name: impl Into<String>, address: SshTarget) -> Self {
        HostSpec {
            name: name.into(),
            address,
            datacenter: None,
            roles: Vec::new(),
            vars: BTreeMap::new(),
        }
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.address)
    }
}

/// (De)serializes an [`SshTarget`] as its `[USER@]HOST[:PORT]` string.
pub(crate) mod target_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ssh::SshTarget;

    pub(crate) fn serialize<S: Serializer>(t: &SshTarget, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SshTarget, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A host handed out by a [`Provisioner`], until it is released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The host.
    pub host: HostSpec,
    /// Who holds it ([`HostRequest::holder`]).
    pub holder: String,
    /// When it was acquired.
    pub acquired_at: jiff::Timestamp,
}

/// Acquires hosts for roles and releases them.
///
/// `acquire` never hands out a host that is already held; `release` gives it back (for a
/// spare pool) or destroys it (for a script that created it).
#[async_trait]
pub trait Provisioner: Send + Sync + fmt::Debug {
    /// Acquires a host for `request`.
    async fn acquire(&self, request: &HostRequest) -> Result<Lease, ProvisionError>;

    /// Releases a host acquired with `acquire`.
    async fn release(&self, lease: &Lease) -> Result<(), ProvisionError>;
}

/// Why one host of a pool was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Another holder has it.
    Held {
        /// The holder recorded in its lease file (`None` while it is being written).
        holder: Option<String>,
    },
    /// The health check failed or timed out.
    NoAnswer {
        /// Why.
        reason: String,
    },
}

/// One host that [`SparePool`](crate::SparePool) tried and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedHost {
    /// The host name.
    pub name: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl fmt::Display for SkippedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            SkipReason::Held {
                holder: Some(holder),
            } => write!(f, "{} held by {holder}", self.name),
            SkipReason::Held { holder: None } => {
                write!(f, "{} being acquired by someone else", self.name)
            }
            SkipReason::NoAnswer { reason } => write!(f, "{} did not answer: {reason}", self.name),
        }
    }
}

fn list_skipped(skipped: &[SkippedHost]) -> String {
    if skipped.is_empty() {
        return "no host in the inventory has it".to_string();
    }
    skipped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn stderr_suffix(tail: &str) -> String {
    let tail = tail.trim_end();
    if tail.is_empty() {
        " (no stderr output)".to_string()
    } else {
        format!("; stderr:\n{tail}")
    }
}

fn or_empty(text: &str) -> &str {
    match text.trim_end() {
        "" => "(empty)",
        text => text,
    }
}

/// Errors of the [`Provisioner`]s. Each names the pool file, host or command involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The inventory file is not valid (syntax, unknown field, bad address, duplicate
    /// name). `line`/`column` are 1-based.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Inventory {
        /// The inventory file.
        path: PathBuf,
        /// The line of the error.
        line: usize,
        /// The column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },

    /// No host of the pool could be acquired.
    #[error("no free spare for {wanted} (pool {}): {}", pool.display(), list_skipped(skipped))]
    NoFreeSpare {
        /// The pool's inventory file (or its name when built in memory).
        pool: PathBuf,
        /// `role db in dc2`.
        wanted: String,
        /// Every host with the wanted role (and datacenter) and why it was skipped; empty
        /// when the inventory has none.
        skipped: Vec<SkippedHost>,
    },

    /// A lease file could not be created, read or removed, or is not valid.
    #[error("host {host}: lease file {}: {message}", path.display())]
    LeaseState {
        /// The host name.
        host: String,
        /// The lease file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// `release` of a lease that someone else now holds.
    #[error("host {host}: cannot release the lease of {holder}: the host is held by {actual}")]
    NotHolder {
        /// The host name.
        host: String,
        /// The holder of the lease being released.
        holder: String,
        /// The holder in the lease file.
        actual: String,
    },

    /// A provisioning command could not be started, failed or timed out.
    #[error(
        "{what} command {command:?} failed: {status}{}",
        stderr_suffix(stderr_tail)
    )]
    CommandFailed {
        /// `acquire` or `release`.
        what: &'static str,
        /// The command line.
        command: String,
        /// How it ended (`exit code 3`, `timed out after 60s`, ...).
        status: String,
        /// The end of its stderr.
        stderr_tail: String,
    },

    /// The acquire command succeeded but its stdout is not the expected JSON.
    #[error(
        "acquire command {command:?} printed invalid host JSON: {message}\nstdout:\n{}\nstderr:\n{}",
        or_empty(stdout_tail),
        or_empty(stderr_tail)
    )]
    InvalidScriptOutput {
        /// The command line.
        command: String,
        /// What is wrong with the JSON.
        message: String,
        /// The end of its stdout.
        stdout_tail: String,
        /// The end of its stderr.
        stderr_tail: String,
    },

    /// The host was acquired but preparing it failed (it has been released again).
    #[error("preparing host {host} failed: {source}")]
    Prepare {
        /// The host name.
        host: String,
        /// The Ansible failure.
        #[source]
        source: Box<AnsibleError>,
    },

    /// Other I/O errors.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The last `max` bytes of `bytes` as (lossy) text, cut at a character boundary.
pub(crate) fn text_tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
