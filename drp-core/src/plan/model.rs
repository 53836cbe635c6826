//! The validated plan: what [`super::check`] builds once every problem is gone. Plain data,
//! with relative paths resolved against the plan's directory and defaults applied, so that
//! the runbook, the dry run and the executor never re-interpret the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drp_backup::SourceSpec;
use drp_provision::{HostKeyChecking, PassphraseSource, SshOptions, SshTarget};
use serde::Serialize;

use super::problem::Location;

/// A recovery plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file, as it was named (messages use it).
    pub file: PathBuf,
    /// The directory relative paths of the plan are resolved against.
    pub dir: PathBuf,
    /// The plan's name (`name = ...`, else the file's stem).
    pub name: String,
    /// SHA-256 of the plan file (hex): a run records it, so a resume notices a changed plan.
    pub digest: String,
    /// Where backups (and run journals) live, and the keys around them.
    pub storage: Storage,
    /// Customers by name: their keys.
    pub customers: BTreeMap<String, Customer>,
    /// Datacenters by name.
    pub datacenters: BTreeMap<String, Datacenter>,
    /// Provisioners by name.
    pub provisioners: BTreeMap<String, Provisioner>,
    /// Hosts, in file order (spares are tried in this order).
    pub hosts: Vec<Host>,
    /// Stacks by name.
    pub stacks: BTreeMap<String, Stack>,
    /// Notifiers by name.
    pub notifiers: BTreeMap<String, Notifier>,
    /// How recovery runs.
    pub recovery: Recovery,
    /// Drill scenarios by name.
    pub scenarios: BTreeMap<String, Scenario>,
}

impl Plan {
    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The notifier called `name`, ready to build: relative paths resolved against the
    /// plan's directory, and an e-mail notifier given the contacts of the plan's customers
    /// (its own contacts, if any, come first).
    pub fn notifier_spec(&self, name: &str) -> Option<drp_monitor::NotifierSpec> {
        use drp_monitor::NotifierSpec;
        let mut spec = self.notifiers.get(name)?.spec.clone();
        let resolve = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                *path = self.dir.join(&*path);
            }
        };
        match &mut spec {
            NotifierSpec::Slack(s) => resolve(&mut s.url_file),
            NotifierSpec::Webhook(s) => resolve(&mut s.url_file),
            NotifierSpec::Email(s) => {
                resolve(&mut s.password_file);
                resolve(&mut s.ca_file);
                for customer in self.customers.values() {
                    let contacts = s.contacts.entry(customer.name.clone()).or_default();
                    for (list, extra) in [
                        (&mut contacts.customer, &customer.contacts.customer),
                        (&mut contacts.partner, &customer.contacts.partner),
                    ] {
                        for address in extra {
                            if !list.contains(address) {
                                list.push(address.clone());
                            }
                        }
                    }
                }
            }
            NotifierSpec::Log(s) => s.path = self.dir.join(&s.path),
            _ => {}
        }
        Some(spec)
    }

    /// The spare hosts of `datacenter` that can take `role`, in file order.
    pub fn spares_for<'p>(
        &'p self,
        datacenter: &'p str,
        role: &'p str,
    ) -> impl Iterator<Item = &'p Host> + 'p {
        self.hosts.iter().filter(move |h| {
            h.spare && h.datacenter == datacenter && h.roles.iter().any(|r| r == role)
        })
    }
}

/// A file the plan refers to: as written in the plan (for people) and resolved (for use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// As written in the plan.
    pub written: String,
    /// Resolved against the plan's directory.
    pub path: PathBuf,
    /// Where it is written.
    pub at: Location,
}

impl FileRef {
    pub(crate) fn new(written: String, dir: &Path, at: Location) -> FileRef {
        let path = dir.join(&written);
        FileRef { written, path, at }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// Where a secret comes from. The plan never holds a secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The content of this file (one trailing newline ignored).
    File(FileRef),
}

impl SecretRef {
    /// For drp-provision (SSH key passphrases) and drp-backup (key passphrases).
    pub fn to_passphrase_source(&self) -> PassphraseSource {
        match self {
            SecretRef::Env(var) => PassphraseSource::Env(var.clone()),
            SecretRef::File(file) => PassphraseSource::File(file.path.clone()),
        }
    }

    /// Reads the secret's bytes now. Errors name the variable or file, never the value.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            SecretRef::Env(var) => std::env::var_os(var)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| format!("environment variable {var} is not set")),
            SecretRef::File(file) => {
                let mut bytes = std::fs::read(&file.path)
                    .map_err(|e| format!("cannot read {}: {e}", file.path.display()))?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                Ok(bytes)
            }
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => write!(f, "environment variable {var}"),
            SecretRef::File(file) => write!(f, "file {file}"),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The store URL (`file:///...`, `s3://bucket/prefix`).
    pub url: String,
    /// Where the URL is written.
    pub url_at: Location,
    /// Backend options (non-secret, e.g. `aws_endpoint`); credentials come from the
    /// environment.
    pub options: BTreeMap<String, String>,
    /// The ops secret key that signs manifests at backup time.
    pub signing_key: Option<FileRef>,
    /// Its passphrase.
    pub signing_passphrase: Option<SecretRef>,
    /// Certificates a restore trusts as manifest signers (empty: signatures not required).
    pub trust: Vec<FileRef>,
    /// Certificates every backup is also encrypted to (e.g. an ops escrow key).
    pub escrow: Vec<FileRef>,
}

/// `[customers.NAME]`: one customer and its keys.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The key in the plan.
    pub name: String,
    /// A display name (`ACME Corp`).
    pub display_name: Option<String>,
    /// Certificates its stacks' backups are encrypted to.
    pub certificates: Vec<FileRef>,
    /// The secret key that restores them (needed on the machine that recovers).
    pub secret_key: Option<FileRef>,
    /// The secret key's passphrase.
    pub passphrase: Option<SecretRef>,
    /// Its people and its partners' (told by e-mail notifiers).
    pub contacts: Contacts,
    /// Where it is defined.
    pub at: Location,
}

/// SSH settings shared by a datacenter's hosts, or a host's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshSettings {
    /// Private key file (`None`: ssh-agent).
    pub key: Option<FileRef>,
    /// Its passphrase.
    pub key_passphrase: Option<SecretRef>,
    /// known_hosts file (`None`: `~/.ssh/known_hosts`).
    pub known_hosts: Option<FileRef>,
    /// Host-key checking (`None`: strict).
    pub host_key_checking: Option<HostKeyChecking>,
    /// Connect timeout (`None`: 10 s).
    pub connect_timeout: Option<Duration>,
}

impl SshSettings {
    /// These settings, with `defaults` where these have none.
    pub(crate) fn or(&self, defaults: &SshSettings) -> SshSettings {
        SshSettings {
            key: self.key.clone().or_else(|| defaults.key.clone()),
            key_passphrase: self
                .key_passphrase
                .clone()
                .or_else(|| defaults.key_passphrase.clone()),
            known_hosts: self
                .known_hosts
                .clone()
                .or_else(|| defaults.known_hosts.clone()),
            host_key_checking: self.host_key_checking.or(defaults.host_key_checking),
            connect_timeout: self.connect_timeout.or(defaults.connect_timeout),
        }
    }
}

/// `[datacenters.NAME]`.
#[derive(Debug, Clone)]
pub struct Datacenter {
    /// The key in the plan.
    pub name: String,
    /// What and where it is.
    pub description: Option<String>,
    /// SSH defaults of its hosts.
    pub ssh: SshSettings,
    /// Creates hosts there when no spare host fits.
    pub provisioner: Option<String>,
    /// Where it is defined.
    pub at: Location,
}

/// `[[hosts]]`: one server.
#[derive(Debug, Clone)]
pub struct Host {
    /// Unique name.
    pub name: String,
    /// The datacenter it is in.
    pub datacenter: String,
    /// `[USER@]HOST[:PORT]`.
    pub address: SshTarget,
    /// Roles it can take.
    pub roles: Vec<String>,
    /// A spare: recovery may take it. Otherwise it runs stacks today.
    pub spare: bool,
    /// SSH settings, the datacenter's defaults applied.
    pub ssh: SshSettings,
    /// Ansible host variables.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// How drp reaches it.
    pub reach: Reach,
    /// Where it is defined.
    pub at: Location,
}

/// How drp reaches a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reach {
    /// Over SSH, at its address.
    #[default]
    Ssh,
    /// This machine, commands run in `dir` (the plan's directory when not given): several
    /// "hosts" on one machine, each in its own directory, for demos and tests without root
    /// or sshd. The address is still what `{host}` becomes (e.g. `127.0.0.2`).
    Local {
        /// The host's working directory.
        dir: Option<FileRef>,
    },
}

impl Host {
    /// A transport to it (not connected yet: SSH connects on first use).
    pub fn transport(&self) -> std::sync::Arc<dyn drp_provision::Transport> {
        match &self.reach {
            Reach::Ssh => std::sync::Arc::new(drp_provision::SshTransport::new(self.ssh_options())),
            Reach::Local { dir: Some(dir) } => {
                std::sync::Arc::new(drp_provision::LocalTransport::in_dir(&dir.path))
            }
            Reach::Local { dir: None } => std::sync::Arc::new(drp_provision::LocalTransport::new()),
        }
    }

    /// How drp-provision reaches it.
    pub fn ssh_options(&self) -> SshOptions {
        let mut options = SshOptions::from_target(&self.address);
        if let Some(key) = &self.ssh.key {
            options = options.with_identity_file(&key.path);
        }
        if let Some(passphrase) = &self.ssh.key_passphrase {
            options = options.with_passphrase(passphrase.to_passphrase_source());
        }
        if let Some(known_hosts) = &self.ssh.known_hosts {
            options = options.with_known_hosts(&known_hosts.path);
        }
        if let Some(checking) = self.ssh.host_key_checking {
            options = options.with_host_key_checking(checking);
        }
        if let Some(timeout) = self.ssh.connect_timeout {
            options = options.with_connect_timeout(timeout);
        }
        options
    }
}

/// `[provisioners.NAME]`: creates hosts on demand.
#[derive(Debug, Clone)]
pub struct Provisioner {
    /// The key in the plan.
    pub name: String,
    /// How.
    pub kind: ProvisionerKind,
    /// Where it is defined.
    pub at: Location,
}

/// The kinds of provisioner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProvisionerKind {
    /// drp-provision's `ScriptProvisioner`: a command that creates a host and prints JSON.
    Script {
        /// Creates a host.
        acquire: String,
        /// Destroys it.
        release: Option<String>,
        /// Each command's time limit.
        timeout: Duration,
        /// Extra (non-secret) environment variables.
        env: BTreeMap<String, String>,
    },
}

/// Where a restored source goes on the recovered host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreTarget {
    /// Into this directory: a directory source as `DIR/NAME/`, others as the file `DIR/NAME`.
    Directory(String),
    /// Streamed into the standard input of this command (`sh -c`).
    PipeTo(String),
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreTarget::Directory(dir) => write!(f, "into {dir}"),
            RestoreTarget::PipeTo(command) => write!(f, "piped to `{command}`"),
        }
    }
}

/// One source of a stack: how it is backed up and how it is restored.
#[derive(Debug, Clone)]
pub struct Source {
    /// What is backed up (`NAME=PATH` or `NAME=cmd:COMMAND`).
    pub spec: SourceSpec,
    /// Where it is restored.
    pub restore: RestoreTarget,
    /// Where it is defined.
    pub at: Location,
}

impl Source {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

pub use drp_monitor::Audience;
pub use drp_monitor::notify::Contacts;

/// Every audience, in the order the runbook lists them.
pub const AUDIENCES: [Audience; 3] = [Audience::Team, Audience::Customer, Audience::Partner];

/// Where a command probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOn {
    /// On the recovered host, over its transport.
    Host,
    /// On the machine running drp.
    Local,
}

/// `[stacks.NAME.probes.PROBE]`: says whether a stack is healthy. Text fields (`url`,
/// `host`, `command`, `name`) may contain `{host}` (the recovered host's address) and
/// `{stack}`, filled in when the stack is recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Its key, unique within the stack.
    pub name: String,
    /// What it checks: drp-monitor's probe, conditions already checked.
    pub spec: drp_monitor::ProbeSpec,
    /// Where a command probe runs (other kinds run where drp runs).
    pub on: RunOn,
    /// Where it is defined.
    pub at: Location,
}

impl Probe {
    /// One line for people: `http GET http://{host}:8080/`.
    pub fn describe(&self) -> String {
        use drp_monitor::ProbeSpec;
        match &self.spec {
            ProbeSpec::Http(s) => {
                format!("http {} {}", s.method.as_deref().unwrap_or("GET"), s.url)
            }
            ProbeSpec::Tcp(s) => format!("tcp {}:{}", s.host, s.port),
            ProbeSpec::Command(s) => match self.on {
                RunOn::Host => format!("command on the host: {}", s.command),
                RunOn::Local => format!("command where drp runs: {}", s.command),
            },
            ProbeSpec::Dns(s) if s.expect.is_empty() => format!("dns {}", s.name),
            ProbeSpec::Dns(s) => {
                let expect: Vec<String> = s.expect.iter().map(ToString::to_string).collect();
                format!("dns {} = {}", s.name, expect.join(", "))
            }
            ProbeSpec::Tls(s) => format!("tls {}:{}", s.host, s.port.unwrap_or(443)),
            other => format!("{other:?}"),
        }
    }

    /// The conditions that decide, as written, or the kind's default when none are.
    pub fn effective_conditions(&self) -> Vec<String> {
        use drp_monitor::ProbeSpec;
        use drp_monitor::probe::{CommandProbeSpec, HttpProbeSpec, TcpProbeSpec, TlsProbeSpec};
        if !self.spec.conditions().is_empty() {
            return self.spec.conditions().to_vec();
        }
        let default = match &self.spec {
            ProbeSpec::Http(_) => HttpProbeSpec::DEFAULT_CONDITION,
            ProbeSpec::Tcp(_) => TcpProbeSpec::DEFAULT_CONDITION,
            ProbeSpec::Command(_) => CommandProbeSpec::DEFAULT_CONDITION,
            ProbeSpec::Tls(_) => TlsProbeSpec::DEFAULT_CONDITION,
            _ => return Vec::new(),
        };
        vec![default.to_string()]
    }

    /// Time limit of one try.
    pub fn timeout(&self) -> Duration {
        self.spec.timeout()
    }
}

/// `[stacks.NAME]`: one customer service stack.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The key in the plan (also its name in the store).
    pub name: String,
    /// Its customer.
    pub customer: String,
    /// What it is.
    pub description: Option<String>,
    /// The host it runs on today (backups read its sources there).
    pub host: Option<String>,
    /// The role a recovery host must have.
    pub role: String,
    /// Stacks that must be recovered first.
    pub depends_on: Vec<String>,
    /// Recovery time objective.
    pub rto: Option<Duration>,
    /// Recovery point objective.
    pub rpo: Option<Duration>,
    /// Ansible playbook run on the acquired host before anything is restored.
    pub playbook: Option<FileRef>,
    /// What is backed up and restored.
    pub sources: Vec<Source>,
    /// Commands run on the host once the data is in place.
    pub restore_commands: Vec<String>,
    /// Commands that start the stack.
    pub start_commands: Vec<String>,
    /// Probes that must all be healthy.
    pub probes: Vec<Probe>,
    /// Notifiers that tell people (the stack's, else the recovery default).
    pub notify: Vec<String>,
    /// An operator approves before the start commands run.
    pub approve_before_start: bool,
    /// Time limit of each step.
    pub step_timeout: Duration,
    /// How long its probes may take to become healthy.
    pub healthy_within: Duration,
    /// Where it is defined.
    pub at: Location,
}

/// `[[notifiers]]`: drp-monitor's notifier, as in `drp notify test --config` files.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// Its name.
    pub name: String,
    /// The notifier, with relative paths resolved against the plan's directory.
    pub spec: drp_monitor::NotifierSpec,
    /// Where its secret (webhook URL, SMTP password) comes from.
    pub secret: Option<SecretRef>,
    /// Where it is defined.
    pub at: Location,
}

impl Notifier {
    /// `slack`, `webhook`, `email`, `log`.
    pub fn kind(&self) -> &'static str {
        self.spec.kind()
    }

    /// Who it tells about a stack of `customer` in `audience`: `Some(addresses)` for e-mail
    /// (empty if it knows none), `Some([])` for a channel that speaks to that audience,
    /// `None` if it does not speak to it. `contacts` are the customer's, from the plan.
    pub fn reaches(
        &self,
        audience: Audience,
        customer: &str,
        contacts: Option<&Contacts>,
    ) -> Option<Vec<String>> {
        use drp_monitor::NotifierSpec;
        let channel = |audiences: &[Audience], customers: &[String]| {
            let audiences = if audiences.is_empty() {
                &[Audience::Team][..]
            } else {
                audiences
            };
            (audiences.contains(&audience)
                && (audience == Audience::Team
                    || customers.is_empty()
                    || customers.iter().any(|c| c == customer)))
            .then(Vec::new)
        };
        match &self.spec {
            NotifierSpec::Slack(s) => channel(&s.audiences, &s.customers),
            NotifierSpec::Webhook(s) => channel(&s.audiences, &s.customers),
            NotifierSpec::Log(s) => channel(&s.audiences, &[]),
            NotifierSpec::Email(s) => {
                let own = s.contacts.get(customer);
                let addresses: Vec<String> = match audience {
                    Audience::Team => s.team.clone(),
                    Audience::Customer => own
                        .into_iter()
                        .chain(contacts)
                        .flat_map(|c| c.customer.iter().cloned())
                        .collect(),
                    Audience::Partner => own
                        .into_iter()
                        .chain(contacts)
                        .flat_map(|c| c.partner.iter().cloned())
                        .collect(),
                };
                Some(addresses)
            }
            _ => None,
        }
    }
}

/// `[recovery]`.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Where stacks are recovered to.
    pub target_datacenter: String,
    /// Stacks recovered at once.
    pub parallelism: usize,
    /// Default time limit of each step.
    pub step_timeout: Duration,
    /// Retries of a failed step (0: none).
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Stop starting stacks once one failed.
    pub fail_fast: bool,
    /// Default notifiers of stacks.
    pub notify: Vec<String>,
    /// Default of stacks' `approve_before_start`.
    pub approve_before_start: bool,
    /// Default of stacks' `healthy_within`.
    pub healthy_within: Duration,
}

/// `[scenarios.NAME]`: a drill — a real fault on part of the infrastructure, and what must
/// happen then.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The key in the plan.
    pub name: String,
    /// What it rehearses.
    pub description: Option<String>,
    /// Who recovers.
    pub mode: DrillMode,
    /// The hosts it may hit.
    pub targets: Targets,
    /// How many of them it hits, chosen at the start of each drill.
    pub blast_radius: BlastRadius,
    /// The fault.
    pub fault: drp_provision::FaultSpec,
    /// The longest the fault stays: the dead-man timer on every target reverts it by then,
    /// whatever happens to drp.
    pub duration: Duration,
    /// Only these stacks count (empty: every stack whose host is hit).
    pub stacks: Vec<String>,
    /// Monitoring must notice within this (time to detect).
    pub detect_within: Option<Duration>,
    /// Every stack must be healthy again within this, from the fault (downtime).
    pub recover_within: Option<Duration>,
    /// The stacks' probes must pass before anything is injected.
    pub steady_state: bool,
    /// How long the steady state may take to show before the drill gives up.
    pub steady_state_within: Duration,
    /// Probes of things outside the blast radius: one failing aborts the drill and reverts
    /// the fault at once. They must pass before the fault, too.
    pub abort_probes: Vec<Probe>,
    /// Customers and partners are told for real (otherwise their messages go to
    /// `test_route`, or nowhere).
    pub notify_customers: bool,
    /// The notifier that receives customers' and partners' messages during the drill.
    pub test_route: Option<String>,
    /// Where the team's external monitoring posts its alerts during the drill.
    pub alert_receiver: Option<std::net::SocketAddr>,
    /// Where it is defined.
    pub at: Location,
}

impl Scenario {
    /// The stacks that count when `hosts` are hit: the scenario's `stacks`, else every
    /// stack running on one of them.
    pub fn stacks_hit(&self, plan: &Plan, hosts: &[&Host]) -> Vec<String> {
        if !self.stacks.is_empty() {
            return self.stacks.clone();
        }
        plan.stacks
            .values()
            .filter(|s| {
                s.host
                    .as_ref()
                    .is_some_and(|h| hosts.iter().any(|c| &c.name == h))
            })
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Who recovers in a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillMode {
    /// drp runs the recovery plan onto the recovery datacenter as soon as it detects the
    /// fault.
    Automatic,
    /// drp injects and watches; the team recovers with its procedures, and drp measures
    /// until the stacks are healthy again wherever they run.
    Surprise,
}

impl DrillMode {
    /// `automatic` or `surprise`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillMode::Automatic => "automatic",
            DrillMode::Surprise => "surprise",
        }
    }
}

/// The hosts a scenario may hit (never spares).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// Every non-spare host of a datacenter.
    Datacenter(String),
    /// Every non-spare host with this role (a group).
    Role(String),
    /// These hosts.
    Hosts(Vec<String>),
}

impl Targets {
    /// The hosts of `plan` it names, in file order.
    pub fn hosts<'p>(&self, plan: &'p Plan) -> Vec<&'p Host> {
        plan.hosts
            .iter()
            .filter(|h| !h.spare)
            .filter(|h| match self {
                Targets::Datacenter(dc) => &h.datacenter == dc,
                Targets::Role(role) => h.roles.contains(role),
                Targets::Hosts(names) => names.contains(&h.name),
            })
            .collect()
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Targets::Datacenter(dc) => write!(f, "datacenter {dc}"),
            Targets::Role(role) => write!(f, "hosts with role {role}"),
            Targets::Hosts(hosts) => write!(f, "hosts {}", hosts.join(", ")),
        }
    }
}

/// How many of the targets a drill hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlastRadius {
    /// Every target.
    All,
    /// This many (at most all).
    Count(usize),
    /// This percentage, rounded up (at least one).
    Percent(u8),
}

impl BlastRadius {
    /// How many of `n` targets.
    pub fn of(self, n: usize) -> usize {
        match self {
            BlastRadius::All => n,
            BlastRadius::Count(c) => c.min(n),
            BlastRadius::Percent(p) => (n * usize::from(p)).div_ceil(100).clamp(1, n.max(1)).min(n),
        }
    }
}

impl fmt::Display for BlastRadius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlastRadius::All => f.write_str("all"),
            BlastRadius::Count(c) => write!(f, "{c}"),
            BlastRadius::Percent(p) => write!(f, "{p}%"),
        }
    }
}
