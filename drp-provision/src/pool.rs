//! [`SparePool`]: a static inventory of spare hosts, leased one holder at a time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::provisioner::{
    HostRequest, HostSpec, Lease, ProvisionError, Provisioner, SkipReason, SkippedHost,
};
use crate::ssh::{SshOptions, SshTarget, SshTransport};
use crate::transport::Transport;

/// Makes the transport that reaches a host (for the default health check).
pub type TransportFactory = Arc<dyn Fn(&HostSpec) -> Arc<dyn Transport> + Send + Sync>;

/// The future of a [`HealthCheck`]: `Err` says why the host does not answer.
pub type HealthFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Checks that a host answers before it is handed out.
pub type HealthCheck = Arc<dyn Fn(&HostSpec) -> HealthFuture + Send + Sync>;

/// The default health check: `true` through the transport `factory` makes for the host.
pub fn transport_health_check(factory: TransportFactory) -> HealthCheck {
    Arc::new(move |host: &HostSpec| {
        let transport = factory(host);
        Box::pin(async move {
            transport
                .run("true")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
}

/// The default transport factory: [`SshTransport`] with [`SshOptions::from_target`]
/// (ssh-agent, `~/.ssh/known_hosts`, strict host-key checking).
pub fn default_transport_factory() -> TransportFactory {
    Arc::new(|host: &HostSpec| {
        Arc::new(SshTransport::new(SshOptions::from_target(&host.address))) as Arc<dyn Transport>
    })
}

/// The spare hosts of a pool, as loaded from its TOML inventory file.
///
/// # Format
///
/// One `[[host]]` table per host; unknown fields are errors (so is a duplicate name), and
/// every error names the file, line and column.
///
/// ```toml
/// [[host]]
/// name = "spare-1"                 # unique; letters, digits, '.', '_', '-'
/// address = "root@10.0.2.11:22"    # [USER@]HOST[:PORT], IPv6 as [ADDR]
/// datacenter = "dc2"
/// roles = ["app", "db"]            # the roles it can take (at least one)
///
/// [[host]]
/// name = "spare-2"
/// address = "10.0.2.12"
/// datacenter = "dc2"
/// roles = ["app"]
/// [host.vars]                      # optional: Ansible host variables
/// ansible_python_interpreter = "/usr/bin/python3"
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// Where it was loaded from (for messages), or a name when built in memory.
    pub source: PathBuf,
    /// The hosts, in file order (acquisition tries them in this order).
    pub hosts: Vec<HostSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    host: Vec<InventoryHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryHost {
    name: toml::Spanned<String>,
    #[serde(with = "crate::provisioner::target_serde")]
    address: SshTarget,
    datacenter: String,
    roles: toml::Spanned<Vec<String>>,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Whether `name` can be a lease file name and an Ansible inventory hostname.
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Inventory {
    /// Parses an inventory; `source` names it in errors.
    pub fn parse(text: &str, source: impl Into<PathBuf>) -> Result<Self, ProvisionError> {
        let source = source.into();
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ProvisionError::Inventory {
                path: source.clone(),
                line,
                column,
                message,
            }
        };
        let file: InventoryFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim_end().to_string())
        })?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut hosts = Vec::with_capacity(file.host.len());
        for h in file.host {
            let span = h.name.span();
            let name = h.name.into_inner();
            if !valid_host_name(&name) {
                return Err(at(
                    span.start,
                    format!(
                        "invalid host name {name:?}: use letters, digits, '.', '_' and '-' \
                         (not first '.')"
                    ),
                ));
            }
            if let Some(first) = seen.insert(name.clone(), span.start) {
                let (line, _) = line_col(text, first);
                return Err(at(
                    span.start,
                    format!("duplicate host name {name:?} (first defined on line {line})"),
                ));
            }
            let roles_span = h.roles.span();
            let roles = h.roles.into_inner();
            if roles.is_empty() {
                return Err(at(roles_span.start, format!("host {name:?} has no roles")));
            }
            hosts.push(HostSpec {
                name,
                address: h.address,
                datacenter: Some(h.datacenter),
                roles,
                vars: h.vars,
            });
        }
        Ok(Inventory { source, hosts })
    }

    /// Reads and parses the inventory file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ProvisionError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ProvisionError::Io {
            context: format!("reading the spare pool inventory {}", path.display()),
            source,
        })?;
        Inventory::parse(&text, path)
    }
}

/// What a lease file holds (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The host name.
    pub host: String,
    /// Who holds it.
    pub holder: String,
    /// When it was acquired.
    pub acquired_at: jiff::Timestamp,
    /// The process that acquired it (for operators cleaning up after a crash).
    pub pid: u32,
}

/// A [`Provisioner`] that leases hosts from a static [`Inventory`] of spares.
///
/// **Leases live in a state directory**, one file per held host (`STATE_DIR/NAME.lease`,
/// JSON [`LeaseRecord`]), created with `O_CREAT|O_EXCL`: whoever creates the file holds the
/// host, so a host is never handed out twice — not by concurrent tasks, nor by several
/// processes (or `SparePool`s) sharing the state directory on one machine (or on a shared
/// file system with atomic exclusive create). `release` deletes the file. A process that
/// died holding a lease leaves its file behind: the host stays held until an operator
/// removes the file (see [`SparePool::leases`] and [`SparePool::force_release`]).
///
/// **Acquisition** tries the hosts with the wanted role (and datacenter, if asked) in
/// inventory order: it skips those whose lease file exists, takes the lease of the first
/// free one, runs the health check (by default `true` over SSH) and keeps that host if it
/// answers; otherwise it deletes the lease again and tries the next. When no host is left,
/// the error lists every candidate and why it was skipped. While a host's health check
/// runs, other acquirers see it as held.
pub struct SparePool {
    inventory: Inventory,
    state_dir: PathBuf,
    health_check: HealthCheck,
    health_timeout: Duration,
}

impl fmt::Debug for SparePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparePool")
            .field("inventory", &self.inventory)
            .field("state_dir", &self.state_dir)
            .field("health_timeout", &self.health_timeout)
            .finish_non_exhaustive()
    }
}

impl SparePool {
    /// A pool over `inventory` keeping its leases in `state_dir` (created if missing, on
    /// first acquisition). Health check: `true` over [`SshTransport`] with default options;
    /// timeout 30 s.
    pub fn new(inventory: Inventory, state_dir: impl Into<PathBuf>) -> Self {
        SparePool {
            inventory,
            state_dir: state_dir.into(),
            health_check: transport_health_check(default_transport_factory()),
            health_timeout: Duration::from_secs(30),
        }
    }

    /// Loads the inventory at `path`; see [`SparePool::new`].
    pub fn load(
        path: impl AsRef<Path>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Self, ProvisionError> {
        Ok(SparePool::new(Inventory::load(path)?, state_dir))
    }

    /// Health-checks hosts with `true` through the transports that `factory` makes.
    pub fn with_transport_factory(
        self,
        factory: impl Fn(&HostSpec) -> Arc<dyn Transport> + Send + Sync + 'static,
    ) -> Self {
        self.with_health_check(transport_health_check(Arc::new(factory)))
    }

    /// Replaces the health check.
    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = check;
        self
    }

    /// Sets how long a health check may take before the host counts as not answering.
    pub fn with_health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn lease_path(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.lease"))
    }

    fn lease_error(&self, name: &str, message: impl fmt::Display) -> ProvisionError {
        ProvisionError::LeaseState {
            host: name.to_string(),
            path: self.lease_path(name),
            message: message.to_string(),
        }
    }

    /// Reads a lease file: `Ok(None)` if it does not exist; a record with an empty holder
    /// while its creator is still writing it.
    fn read_lease(&self, name: &str) -> Result<Option<LeaseRecord>, ProvisionError> {
        match std::fs::read(self.lease_path(name)) {
            Ok(bytes) if bytes.is_empty() => Ok(Some(LeaseRecord {
                host: name.to_string(),
                holder: String::new(),
                acquired_at: jiff::Timestamp::UNIX_EPOCH,
                pid: 0,
            })),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.lease_error(name, format!("not a valid lease: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.lease_error(name, format!("cannot read it: {e}"))),
        }
    }

    /// Creates the lease file of `name` exclusively: `Ok(false)` if it exists.
    fn try_lease(&self, name: &str, record: &LeaseRecord) -> Result<bool, ProvisionError> {
        let path = self.lease_path(name);
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.lease_error(name, format!("cannot create it: {e}"))),
        };
        let json = serde_json::to_vec(record).expect("a lease record serializes");
        if let Err(e) = file.write_all(&json).and_then(|()| file.sync_all()) {
            let _ = std::fs::remove_file(&path);
            return Err(self.lease_error(name, format!("cannot write it: {e}")));
        }
        Ok(true)
    }

    fn remove_lease(&self, name: &str) -> Result<(), ProvisionError> {
        match std::fs::remove_file(self.lease_path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.lease_error(name, format!("cannot remove it: {e}"))),
        }
    }

    /// Every host of the inventory with its current lease, if held.
    pub fn leases(&self) -> Result<Vec<(HostSpec, Option<LeaseRecord>)>, ProvisionError> {
        self.inventory
            .hosts
            .iter()
            .map(|h| Ok((h.clone(), self.read_lease(&h.name)?)))
            .collect()
    }

    /// Deletes the lease of host `name` whoever holds it (an operator's cleanup after a
    /// crashed run). Returns the record that was removed.
    pub fn force_release(&self, name: &str) -> Result<Option<LeaseRecord>, ProvisionError> {
        let record = self.read_lease(name)?;
        self.remove_lease(name)?;
        if let Some(record) = &record {
            tracing::warn!(host = name, holder = %record.holder, "lease force-released");
        }
        Ok(record)
    }

    async fn check(&self, host: &HostSpec) -> Result<(), String> {
        match tokio::time::timeout(self.health_timeout, (self.health_check)(host)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "health check timed out after {}s",
                self.health_timeout.as_secs_f64()
            )),
        }
    }
}

#[async_trait]
impl Provisioner for SparePool {
    async fn acquire(&self, request: &HostRequest) -> Result<Lease, ProvisionError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|source| ProvisionError::Io {
            context: format!(
                "creating the spare pool state directory {}",
                self.state_dir.display()
            ),
            source,
        })?;
        let candidates = self.inventory.hosts.iter().filter(|h| {
            h.roles.contains(&request.role)
                && request
                    .datacenter
                    .as_ref()
                    .is_none_or(|dc| h.datacenter.as_ref() == Some(dc))
        });
        let mut skipped = Vec::new();
        for host in candidates {
            let acquired_at = jiff::Timestamp::now();
            let record = LeaseRecord {
                host: host.name.clone(),
                holder: request.holder.clone(),
                acquired_at,
                pid: std::process::id(),
            };
            let mut leased = self.try_lease(&host.name, &record)?;
            let mut holder = None;
            if !leased {
                match self.read_lease(&host.name) {
                    Ok(Some(record)) => holder = Some(record.holder).filter(|h| !h.is_empty()),
                    // Released in between: try once more.
                    Ok(None) => leased = self.try_lease(&host.name, &record)?,
                    // Still held: whoever made the file holds the host.
                    Err(e) => holder = Some(format!("an unknown holder ({e})")),
                }
            }
            if !leased {
                skipped.push(SkippedHost {
                    name: host.name.clone(),
                    reason: SkipReason::Held { holder },
                });
                continue;
            }
            match self.check(host).await {
                Ok(()) => {
                    tracing::info!(host = %host.name, holder = %request.holder, "spare acquired");
                    return Ok(Lease {
                        host: host.clone(),
                        holder: request.holder.clone(),
                        acquired_at,
                    });
                }
                Err(reason) => {
                    tracing::warn!(host = %host.name, %reason, "spare did not answer, skipped");
                    self.remove_lease(&host.name)?;
                    skipped.push(SkippedHost {
                        name: host.name.clone(),
                        reason: SkipReason::NoAnswer { reason },
                    });
                }
            }
        }
        Err(ProvisionError::NoFreeSpare {
            pool: self.inventory.source.clone(),
            wanted: request.describe(),
            skipped,
        })
    }

    /// Deletes the host's lease file. Releasing a lease that is already gone is not an
    /// error (a retried release); a lease file of another holder (or a later acquisition)
    /// is left alone and is [`ProvisionError::NotHolder`].
    async fn release(&self, lease: &Lease) -> Result<(), ProvisionError> {
        let name = &lease.host.name;
        match self.read_lease(name)? {
            None => {
                tracing::warn!(host = %name, holder = %lease.holder, "released a lease that was not held");
                Ok(())
            }
            Some(record)
                if record.holder == lease.holder && record.acquired_at == lease.acquired_at =>
            {
                self.remove_lease(name)?;
                tracing::info!(host = %name, holder = %lease.holder, "spare released");
                Ok(())
            }
            Some(record) => Err(ProvisionError::NotHolder {
                host: name.clone(),
                holder: lease.holder.clone(),
                actual: if record.holder.is_empty() {
                    "someone acquiring it now".to_string()
                } else {
                    format!("{} (since {})", record.holder, record.acquired_at)
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd\n", 0), (1, 1));
        assert_eq!(line_col("ab\ncd\n", 4), (2, 2));
    }

    #[test]
    fn host_names() {
        assert!(valid_host_name("spare-1.dc2_a"));
        for bad in ["", ".x", "a/b", "a b", "../x"] {
            assert!(!valid_host_name(bad), "{bad:?}");
        }
    }
}
