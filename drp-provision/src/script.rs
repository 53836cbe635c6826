//! [`ScriptProvisioner`]: a user command (a cloud provider's CLI, a script) creates hosts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::provisioner::{HostRequest, HostSpec, Lease, ProvisionError, Provisioner, text_tail};
use crate::ssh::SshTarget;

/// How much of a command's stdout and stderr errors quote.
const TAIL: usize = 4096;

/// Options of a [`ScriptProvisioner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Run by `sh -c` to create a host. Environment: `DRP_ROLE`, `DRP_DATACENTER` (empty
    /// for any), `DRP_HOLDER`. It must exit 0 and print on stdout one JSON object:
    ///
    /// ```json
    /// {"name": "db-7f3a", "address": "root@203.0.113.7:22", "vars": {"instance_id": "i-7f3a"}}
    /// ```
    ///
    /// `name` and `address` (`[USER@]HOST[:PORT]`) are required; `vars` (Ansible host
    /// variables), `datacenter` (default: the requested one) and `roles` (default: the
    /// requested role) are optional; other fields are errors. Progress messages belong on
    /// stderr; if stdout is not one JSON object, its last non-empty line is tried.
    pub acquire_command: String,
    /// Run by `sh -c` to destroy a host, if any. Environment: `DRP_HOST_NAME`,
    /// `DRP_HOST_ADDRESS`, `DRP_HOLDER`, `DRP_DATACENTER`, and `DRP_HOST_JSON` (the whole
    /// host, with its vars, as JSON).
    pub release_command: Option<String>,
    /// Extra environment variables for both commands.
    pub env: BTreeMap<String, String>,
    /// The working directory of both commands (default: the current one).
    pub current_dir: Option<PathBuf>,
    /// Each command is killed (with its whole process group) after this long (default
    /// 10 minutes: creating a cloud server takes a while).
    pub timeout: Duration,
}

impl ScriptOptions {
    /// Options with `acquire_command` and no release command.
    pub fn new(acquire_command: impl Into<String>) -> Self {
        ScriptOptions {
            acquire_command: acquire_command.into(),
            release_command: None,
            env: BTreeMap::new(),
            current_dir: None,
            timeout: Duration::from_secs(600),
        }
    }

    /// Sets the release command.
    pub fn with_release_command(mut self, command: impl Into<String>) -> Self {
        self.release_command = Some(command.into());
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout of each command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A [`Provisioner`] that runs user commands to create and destroy hosts, so that any
/// cloud plugs in without drp knowing its API. See [`ScriptOptions`] for the contract.
#[derive(Debug, Clone)]
pub struct ScriptProvisioner {
    options: ScriptOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptHost {
    name: String,
    #[serde(with = "crate::provisioner::target_serde")]
    address: SshTarget,
    #[serde(default)]
    datacenter: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
}

struct CommandOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl ScriptProvisioner {
    /// A provisioner with these options.
    pub fn new(options: ScriptOptions) -> Self {
        ScriptProvisioner { options }
    }

    /// The options.
    pub fn options(&self) -> &ScriptOptions {
        &self.options
    }

    async fn run(
        &self,
        what: &'static str,
        command: &str,
        env: &[(&str, String)],
    ) -> Result<CommandOutput, ProvisionError> {
        let failed = |status: String, stderr: &[u8]| ProvisionError::CommandFailed {
            what,
            command: command.to_string(),
            status,
            stderr_tail: text_tail(stderr, TAIL),
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .envs(&self.options.env)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.options.current_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot start sh: {e}"), b""))?;
        let pid = child.id();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (o, e) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            let status = child.wait().await;
            (o.and(e).and(status), out, err)
        };
        let (result, out, err) = match tokio::time::timeout(self.options.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return Err(failed(
                    format!(
                        "timed out after {}s (killed)",
                        self.options.timeout.as_secs_f64()
                    ),
                    b"",
                ));
            }
        };
        let status = result.map_err(|e| failed(format!("I/O error: {e}"), &err))?;
        if !status.success() {
            let status = match status.code() {
                Some(code) => format!("exit code {code}"),
                None => format!("{status}"),
            };
            return Err(failed(status, &err));
        }
        Ok(CommandOutput {
            stdout: out,
            stderr: err,
        })
    }
}

fn parse_host(stdout: &[u8]) -> Result<ScriptHost, String> {
    let text = String::from_utf8_lossy(stdout);
    match serde_json::from_str::<ScriptHost>(text.trim()) {
        Ok(host) => Ok(host),
        Err(whole) => {
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            match last.map(|l| serde_json::from_str::<ScriptHost>(l.trim())) {
                Some(Ok(host)) => Ok(host),
                _ if text.trim().is_empty() => Err("stdout is empty".to_string()),
                _ => Err(whole.to_string()),
            }
        }
    }
}

#[async_trait]
impl Provisioner for ScriptProvisioner {
    async fn acquire(&self, request: &HostRequest) -> Result<Lease, ProvisionError> {
        let command = &self.options.acquire_command;
        let env = [
            ("DRP_ROLE", request.role.clone()),
            (
                "DRP_DATACENTER",
                request.datacenter.clone().unwrap_or_default(),
            ),
            ("DRP_HOLDER", request.holder.clone()),
        ];
        tracing::info!(%command, wanted = %request.describe(), "running the acquire command");
        let output = self.run("acquire", command, &env).await?;
        let host =
            parse_host(&output.stdout).map_err(|message| ProvisionError::InvalidScriptOutput {
                command: command.clone(),
                message,
                stdout_tail: text_tail(&output.stdout, TAIL).trim_end().to_string(),
                stderr_tail: text_tail(&output.stderr, TAIL),
            })?;
        let host = HostSpec {
            name: host.name,
            address: host.address,
            datacenter: host.datacenter.or_else(|| request.datacenter.clone()),
            roles: host.roles.unwrap_or_else(|| vec![request.role.clone()]),
            vars: host.vars,
        };
        tracing::info!(host = %host, holder = %request.holder, "host created");
        Ok(Lease {
            host,
            holder: request.holder.clone(),
            acquired_at: jiff::Timestamp::now(),
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), ProvisionError> {
        let Some(command) = &self.options.release_command else {
            return Ok(());
        };
        let host = &lease.host;
        let env = [
            ("DRP_HOST_NAME", host.name.clone()),
            ("DRP_HOST_ADDRESS", host.address.to_string()),
            ("DRP_HOLDER", lease.holder.clone()),
            (
                "DRP_DATACENTER",
                host.datacenter.clone().unwrap_or_default(),
            ),
            (
                "DRP_HOST_JSON",
                serde_json::to_string(host).expect("a host serializes"),
            ),
        ];
        tracing::info!(%command, host = %host, "running the release command");
        self.run("release", command, &env).await?;
        Ok(())
    }
}
