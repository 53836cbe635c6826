//! The plan file as written: serde structs with spans, one per table. The loader
//! deserializes each table on its own, so that one mistake does not hide the others, and then
//! turns them into the [`super::model`].
//!
//! Every struct denies unknown fields. Fields that hold a reference or a path keep their span,
//! so problems found after parsing still point at the right place.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::duration::PlanDuration;

pub(crate) type Text = Spanned<String>;

/// The top-level keys of a plan, in the order they are documented.
pub(crate) const SECTIONS: &[&str] = &[
    "format",
    "name",
    "storage",
    "customers",
    "datacenters",
    "provisioners",
    "hosts",
    "stacks",
    "notifiers",
    "recovery",
    "scenarios",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    pub url: Text,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub signing_key: Option<Text>,
    pub signing_passphrase_env: Option<Text>,
    pub signing_passphrase_file: Option<Text>,
    #[serde(default)]
    pub trust: Vec<Text>,
    #[serde(default)]
    pub escrow: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomer {
    pub name: Option<String>,
    #[serde(default)]
    pub contacts: RawContacts,
    pub certificates: Spanned<Vec<Text>>,
    pub secret_key: Option<Text>,
    pub passphrase_env: Option<Text>,
    pub passphrase_file: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatacenter {
    pub description: Option<String>,
    pub provisioner: Option<Text>,
    pub ssh_key: Option<Text>,
    pub ssh_passphrase_env: Option<Text>,
    pub ssh_passphrase_file: Option<Text>,
    pub known_hosts: Option<Text>,
    pub host_key_checking: Option<Text>,
    pub connect_timeout: Option<PlanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub name: Text,
    pub datacenter: Text,
    pub address: Text,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub spare: bool,
    pub ssh_key: Option<Text>,
    pub ssh_passphrase_env: Option<Text>,
    pub ssh_passphrase_file: Option<Text>,
    pub known_hosts: Option<Text>,
    pub host_key_checking: Option<Text>,
    pub connect_timeout: Option<PlanDuration>,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    pub transport: Option<Text>,
    pub dir: Option<Text>,
}

/// The SSH fields datacenters (defaults) and hosts (overrides) share.
pub(crate) struct SshFields<'a> {
    pub key: Option<&'a Text>,
    pub passphrase_env: Option<&'a Text>,
    pub passphrase_file: Option<&'a Text>,
    pub known_hosts: Option<&'a Text>,
    pub checking: Option<&'a Text>,
    pub timeout: Option<std::time::Duration>,
}

impl RawDatacenter {
    pub(crate) fn ssh_fields(&self) -> SshFields<'_> {
        SshFields {
            key: self.ssh_key.as_ref(),
            passphrase_env: self.ssh_passphrase_env.as_ref(),
            passphrase_file: self.ssh_passphrase_file.as_ref(),
            known_hosts: self.known_hosts.as_ref(),
            checking: self.host_key_checking.as_ref(),
            timeout: self.connect_timeout.map(|t| t.0),
        }
    }
}

impl RawHost {
    pub(crate) fn ssh_fields(&self) -> SshFields<'_> {
        SshFields {
            key: self.ssh_key.as_ref(),
            passphrase_env: self.ssh_passphrase_env.as_ref(),
            passphrase_file: self.ssh_passphrase_file.as_ref(),
            known_hosts: self.known_hosts.as_ref(),
            checking: self.host_key_checking.as_ref(),
            timeout: self.connect_timeout.map(|t| t.0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvisioner {
    pub kind: Text,
    pub acquire: Option<String>,
    pub release: Option<String>,
    pub timeout: Option<PlanDuration>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A stack, without `sources` and `probes` (the loader reads those one by one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStack {
    pub customer: Text,
    pub description: Option<String>,
    pub host: Option<Text>,
    pub role: Text,
    #[serde(default)]
    pub depends_on: Vec<Text>,
    pub rto: Option<PlanDuration>,
    pub rpo: Option<PlanDuration>,
    pub playbook: Option<Text>,
    pub restore_to: Option<String>,
    #[serde(default)]
    pub restore_commands: Vec<String>,
    #[serde(default)]
    pub start_commands: Vec<String>,
    pub notify: Option<Vec<Text>>,
    pub approve_before_start: Option<bool>,
    pub step_timeout: Option<PlanDuration>,
    pub healthy_within: Option<PlanDuration>,
}

/// The stack keys the loader takes out before deserializing [`RawStack`].
pub(crate) const STACK_LISTS: &[&str] = &["sources", "probes"];

/// A customer's addresses: its own people, and its partners'.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContacts {
    #[serde(default)]
    pub customer: Vec<Text>,
    #[serde(default)]
    pub partner: Vec<Text>,
}

/// The table form of a source (the string form is `NAME=PATH` / `NAME=cmd:COMMAND`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    pub name: Text,
    pub path: Option<String>,
    pub command: Option<String>,
    pub restore_to: Option<String>,
    pub pipe_to: Option<String>,
}

/// Keys every probe takes (the probe itself is drp-monitor's `ProbeSpec`).
pub(crate) const PROBE_COMMON_KEYS: &[&str] = &[
    "kind",
    "conditions",
    "timeout",
    "interval",
    "failure_threshold",
    "success_threshold",
];

/// Probe kinds and their own keys (drp-monitor's, plus the plan's `on` for commands).
pub(crate) const PROBE_KEYS: &[(&str, &[&str])] = &[
    (
        "http",
        &["url", "method", "headers", "body", "insecure", "ca_file"],
    ),
    ("tcp", &["host", "port"]),
    ("command", &["command", "on"]),
    ("dns", &["name", "expect"]),
    (
        "tls",
        &["host", "port", "server_name", "insecure", "ca_file"],
    ),
];

/// Keys every notifier takes (the notifier itself is drp-monitor's `NotifierSpec`).
pub(crate) const NOTIFIER_COMMON_KEYS: &[&str] = &["name", "kind", "templates"];

/// Notifier kinds and their own keys.
pub(crate) const NOTIFIER_KEYS: &[(&str, &[&str])] = &[
    (
        "slack",
        &["url_env", "url_file", "audiences", "customers", "timeout"],
    ),
    (
        "webhook",
        &[
            "url_env",
            "url_file",
            "headers",
            "template",
            "audiences",
            "customers",
            "timeout",
        ],
    ),
    (
        "email",
        &[
            "server",
            "port",
            "security",
            "username",
            "password_env",
            "password_file",
            "from",
            "team",
            "contacts",
            "ca_file",
            "timeout",
        ],
    ),
    ("log", &["path", "audiences"]),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecovery {
    pub target_datacenter: Text,
    pub parallelism: Option<Spanned<i64>>,
    pub step_timeout: Option<PlanDuration>,
    pub retries: Option<u32>,
    pub backoff: Option<PlanDuration>,
    pub max_backoff: Option<PlanDuration>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub notify: Vec<Text>,
    #[serde(default)]
    pub approve_before_start: bool,
    pub healthy_within: Option<PlanDuration>,
}

/// A drill scenario, without `abort_probes` (the loader reads those one by one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub description: Option<String>,
    pub mode: Text,
    pub targets: Spanned<RawTargets>,
    pub blast_radius: Option<Spanned<RawBlastRadius>>,
    pub fault: Spanned<drp_provision::FaultSpec>,
    pub duration: Spanned<PlanDuration>,
    #[serde(default)]
    pub stacks: Vec<Text>,
    pub detect_within: Option<PlanDuration>,
    pub recover_within: Option<PlanDuration>,
    pub steady_state: Option<bool>,
    pub steady_state_within: Option<PlanDuration>,
    #[serde(default)]
    pub notify_customers: bool,
    pub test_route: Option<Text>,
    pub alert_receiver: Option<Text>,
}

/// `targets = { datacenter = "..." }`, `{ role = "..." }` or `{ hosts = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTargets {
    pub datacenter: Option<Text>,
    pub role: Option<Text>,
    pub hosts: Option<Vec<Text>>,
}

/// `blast_radius = "all"`, `2` or `"50%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawBlastRadius {
    Count(i64),
    Text(String),
}

/// The scenario keys the loader takes out before deserializing [`RawScenario`].
pub(crate) const SCENARIO_LISTS: &[&str] = &["abort_probes"];

/// Keys that would hold a secret, per table: writing the secret itself is refused, pointing
/// at `KEY_env` / `KEY_file` instead.
pub(crate) mod secret_keys {
    pub(crate) const STORAGE: &[&str] = &["signing_passphrase"];
    pub(crate) const STORAGE_OPTIONS: &[&str] = &[
        "aws_secret_access_key",
        "secret_access_key",
        "aws_session_token",
        "session_token",
        "aws_access_key_id",
        "access_key_id",
    ];
    pub(crate) const CUSTOMER: &[&str] = &["passphrase"];
    pub(crate) const SSH: &[&str] = &["ssh_passphrase"];
    pub(crate) const NOTIFIER: &[&str] = &["url", "password", "token"];
}
