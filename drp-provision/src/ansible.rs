//! [`AnsibleRunner`]: runs `ansible-playbook` on acquired hosts, streams its output and
//! reports the failed task and host.
//!
//! **Why the default stdout callback.** `ANSIBLE_STDOUT_CALLBACK=json` prints one JSON
//! document at the very end of the run: nothing could be streamed to the log while a long
//! playbook runs, and a killed run prints nothing at all. The default callback prints one
//! line per task and host as it happens, and its failure lines are stable and easy to
//! parse: `TASK [NAME] ***` starts a task, `fatal: [HOST]: FAILED! => {JSON}` (or
//! `UNREACHABLE!`) reports a failure, `...ignoring` follows an ignored one, and the
//! `PLAY RECAP` says which hosts ended failed. The runner forces that callback
//! (`ANSIBLE_STDOUT_CALLBACK=default`), so a `stdout_callback` in an `ansible.cfg` does
//! not break the parsing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::provisioner::HostSpec;
use crate::transport::shell_quote;

/// How many bytes of output a [`AnsibleError::Failed`] carries.
const OUTPUT_TAIL: usize = 8192;

/// Which stream of `ansible-playbook` a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout (task results).
    Stdout,
    /// stderr (warnings, errors).
    Stderr,
}

/// Receives each output line of `ansible-playbook` (without its line end) as it comes.
pub type OutputSink = Arc<dyn Fn(Stream, &str) + Send + Sync>;

/// Options of an [`AnsibleRunner`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnsibleOptions {
    /// The playbook.
    pub playbook: PathBuf,
    /// The `ansible-playbook` program (default: `ansible-playbook` from `PATH`).
    pub program: PathBuf,
    /// The SSH private key (`ansible_ssh_private_key_file`); `None`: ssh's defaults/agent.
    pub private_key: Option<PathBuf>,
    /// The known_hosts file ssh checks host keys against, strictly (default
    /// `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// Extra variables, written to a private JSON file passed as `-e @FILE` (never on the
    /// command line: they may hold secrets).
    pub extra_vars: BTreeMap<String, Value>,
    /// More arguments for `ansible-playbook` (`--tags`, `--limit`, `-v`, ...).
    pub extra_args: Vec<String>,
    /// More environment variables (e.g. `ANSIBLE_REMOTE_TEMP`).
    pub env: BTreeMap<String, String>,
    /// The working directory (default: the playbook's directory, so that its
    /// `ansible.cfg` applies).
    pub current_dir: Option<PathBuf>,
    /// The run is killed after this long (default 1 hour).
    pub timeout: Duration,
}

impl AnsibleOptions {
    /// Options for `playbook` with every default.
    pub fn new(playbook: impl Into<PathBuf>) -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        AnsibleOptions {
            playbook: playbook.into(),
            program: PathBuf::from("ansible-playbook"),
            private_key: None,
            known_hosts: home.join(".ssh").join("known_hosts"),
            extra_vars: BTreeMap::new(),
            extra_args: Vec::new(),
            env: BTreeMap::new(),
            current_dir: None,
            timeout: Duration::from_secs(3600),
        }
    }

    /// Sets the SSH private key.
    pub fn with_private_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.private_key = Some(path.into());
        self
    }

    /// Sets the known_hosts file.
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = path.into();
        self
    }

    /// Adds an extra variable.
    pub fn with_extra_var(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra_vars.insert(key.into(), value.into());
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// One failed task on one host, parsed from the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The inventory hostname.
    pub host: String,
    /// The task name as Ansible prints it (`role : name` for role tasks).
    pub task: String,
    /// The result's `msg` (or the whole result when it has none).
    pub message: String,
    /// Whether the host was unreachable (rather than the task failing).
    pub unreachable: bool,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.unreachable {
            "unreachable"
        } else {
            "failed"
        };
        write!(
            f,
            "task {:?} {what} on host {}: {}",
            self.task, self.host, self.message
        )
    }
}

fn more_failures(failures: &[TaskFailure]) -> String {
    match failures.len() {
        0 | 1 => String::new(),
        n => format!(
            " (and {} more: {})",
            n - 1,
            failures[1..]
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// Errors of an [`AnsibleRunner`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnsibleError {
    /// A task failed (or a host was unreachable). `host`, `task` and `message` are those of
    /// the first failure; `failures` holds them all.
    #[error("playbook {}: {}{}", playbook.display(), failures[0], more_failures(failures))]
    TaskFailed {
        /// The playbook.
        playbook: PathBuf,
        /// The first failed host.
        host: String,
        /// Its failed task.
        task: String,
        /// Its message.
        message: String,
        /// Every failure that made the run fail, in order.
        failures: Vec<TaskFailure>,
    },

    /// `ansible-playbook` failed without a task failure (syntax error, missing file, ...).
    #[error("playbook {}: ansible-playbook failed with {status}; output:\n{output_tail}", playbook.display())]
    Failed {
        /// The playbook.
        playbook: PathBuf,
        /// `exit code 4`, `signal ...`.
        status: String,
        /// The end of its output (both streams).
        output_tail: String,
    },

    /// The run took longer than the timeout and was killed.
    #[error("playbook {}: timed out after {}s (killed)", playbook.display(), timeout.as_secs_f64())]
    TimedOut {
        /// The playbook.
        playbook: PathBuf,
        /// The timeout.
        timeout: Duration,
    },

    /// A host cannot be put in the inventory.
    #[error("host {host}: {message}")]
    Inventory {
        /// The host.
        host: String,
        /// What is wrong.
        message: String,
    },

    /// Starting `ansible-playbook`, or writing its inventory and variables, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs a playbook on hosts, over SSH with strict host-key checking.
///
/// For each run it writes, into a private temporary directory, an inventory (YAML
/// inventory structure, in JSON) and the extra variables. Each host gets `ansible_host`,
/// `ansible_port` and `ansible_user` from its address, `ansible_ssh_private_key_file`, and
/// `ansible_ssh_common_args='-o UserKnownHostsFile=FILE -o StrictHostKeyChecking=yes'`;
/// then its own [`HostSpec::vars`] (which win). Hosts are in the groups `drp`, one group
/// per role and `dc_DATACENTER` (names with other characters than letters, digits and `_`
/// have them replaced by `_`), so playbooks can say `hosts: db`.
///
/// Environment: `ANSIBLE_STDOUT_CALLBACK=default`, `ANSIBLE_NOCOLOR=1`,
/// `ANSIBLE_HOST_KEY_CHECKING=True`, `ANSIBLE_RETRY_FILES_ENABLED=False`,
/// `ANSIBLE_LOCAL_TEMP` and `ANSIBLE_SSH_CONTROL_PATH_DIR` in the temporary directory (the
/// run's ssh ControlPersist masters are stopped when it ends), `PYTHONUNBUFFERED=1` and
/// `LC_ALL=C.UTF-8`, then [`AnsibleOptions::env`].
#[derive(Clone)]
pub struct AnsibleRunner {
    options: AnsibleOptions,
    sink: Option<OutputSink>,
}

impl fmt::Debug for AnsibleRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnsibleRunner")
            .field("options", &self.options)
            .field("sink", &self.sink.as_ref().map(|_| ".."))
            .finish()
    }
}

/// A group name Ansible accepts without warnings.
fn group_name(s: &str) -> String {
    let mut name: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Parses the output of the default callback.
#[derive(Debug, Default)]
struct OutputParser {
    task: String,
    failures: Vec<TaskFailure>,
    /// host → failed + unreachable count from the PLAY RECAP.
    recap: BTreeMap<String, u64>,
    in_recap: bool,
}

impl OutputParser {
    fn line(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("TASK [") {
            if let Some(end) = rest.rfind("] ") {
                self.task = rest[..end].to_string();
            } else if let Some(name) = rest.strip_suffix(']') {
                self.task = name.to_string();
            }
            self.in_recap = false;
        } else if line.starts_with("PLAY RECAP") {
            self.in_recap = true;
        } else if line.starts_with("PLAY [") {
            self.in_recap = false;
        } else if line.trim() == "...ignoring" {
            self.failures.pop();
        } else if let Some(rest) = line.strip_prefix("fatal: [") {
            let Some((host, rest)) = rest.split_once("]: ") else {
                return;
            };
            let (unreachable, json) = if let Some(json) = rest.strip_prefix("UNREACHABLE! => ") {
                (true, json)
            } else if let Some(json) = rest.strip_prefix("FAILED! => ") {
                (false, json)
            } else {
                (false, rest)
            };
            // `fatal: [HOST -> DELEGATE]`: the failing host is the first one.
            let host = host.split(" -> ").next().unwrap_or(host);
            self.failures.push(TaskFailure {
                host: host.to_string(),
                task: self.task.clone(),
                message: result_message(json),
                unreachable,
            });
        } else if self.in_recap
            && let Some((host, counts)) = line.split_once(" : ")
        {
            let bad: u64 = counts
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == "failed" || *k == "unreachable")
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum();
            self.recap.insert(host.trim().to_string(), bad);
        }
    }

    /// The failures that made the run fail: per host that the recap says failed, its last
    /// failure (earlier ones were rescued); all of them without a recap.
    fn final_failures(&self) -> Vec<TaskFailure> {
        if self.recap.is_empty() {
            return self.failures.clone();
        }
        let mut out: Vec<TaskFailure> = Vec::new();
        for failure in self.failures.iter().rev() {
            if self.recap.get(&failure.host).copied().unwrap_or(1) > 0
                && !out.iter().any(|f| f.host == failure.host)
            {
                out.push(failure.clone());
            }
        }
        out.reverse();
        out
    }
}

/// The `msg` of a result printed as JSON (plus `stderr`/`module_stderr` when present), or
/// the text as is.
fn result_message(json: &str) -> String {
    let Ok(Value::Object(result)) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    let text = |key: &str| match result.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Null) | None => None,
        Some(Value::String(_)) => None,
        Some(other) => Some(other.to_string()),
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(msg) = text("msg") {
        parts.push(msg);
    }
    for key in ["stderr", "module_stderr"] {
        if let Some(s) = text(key) {
            parts.push(format!("{key}: {s}"));
        }
    }
    if parts.is_empty() {
        json.to_string()
    } else {
        parts.join("; ")
    }
}

/// The last `max` bytes of the output.
#[derive(Debug, Default)]
struct OutputTail {
    buf: String,
}

impl OutputTail {
    fn push(&mut self, line: &str) {
        self.buf.push_str(line);
        self.buf.push('\n');
        if self.buf.len() > 2 * OUTPUT_TAIL {
            let mut cut = self.buf.len() - OUTPUT_TAIL;
            while !self.buf.is_char_boundary(cut) {
                cut += 1;
            }
            self.buf.drain(..cut);
        }
    }

    fn finish(mut self) -> String {
        if self.buf.len() > OUTPUT_TAIL {
            let mut cut = self.buf.len() - OUTPUT_TAIL;
            while !self.buf.is_char_boundary(cut) {
                cut += 1;
            }
            self.buf.drain(..cut);
        }
        self.buf
    }
}

#[derive(Debug, Default)]
struct RunState {
    parser: OutputParser,
    tail: OutputTail,
}

impl AnsibleRunner {
    /// A runner with these options that sends output to `tracing` only.
    pub fn new(options: AnsibleOptions) -> Self {
        AnsibleRunner {
            options,
            sink: None,
        }
    }

    /// Also sends every output line to `sink`, as it comes.
    pub fn with_output(mut self, sink: impl Fn(Stream, &str) + Send + Sync + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The options.
    pub fn options(&self) -> &AnsibleOptions {
        &self.options
    }

    /// The inventory for `hosts` (YAML inventory structure; JSON is YAML).
    pub fn inventory(&self, hosts: &[HostSpec]) -> Result<Value, AnsibleError> {
        let mut all_hosts = Map::new();
        let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        let common_args = format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            shell_quote(&self.options.known_hosts.display().to_string())
        );
        for host in hosts {
            if all_hosts.contains_key(&host.name) {
                return Err(AnsibleError::Inventory {
                    host: host.name.clone(),
                    message: "two hosts have this name".into(),
                });
            }
            let mut vars = Map::new();
            vars.insert("ansible_host".into(), json!(host.address.host));
            if let Some(port) = host.address.port {
                vars.insert("ansible_port".into(), json!(port));
            }
            if let Some(user) = &host.address.user {
                vars.insert("ansible_user".into(), json!(user));
            }
            if let Some(key) = &self.options.private_key {
                vars.insert(
                    "ansible_ssh_private_key_file".into(),
                    json!(key.display().to_string()),
                );
            }
            vars.insert("ansible_ssh_common_args".into(), json!(common_args));
            for (k, v) in &host.vars {
                vars.insert(k.clone(), v.clone());
            }
            all_hosts.insert(host.name.clone(), Value::Object(vars));
            let mut member_of = vec!["drp".to_string()];
            member_of.extend(host.roles.iter().map(|r| group_name(r)));
            if let Some(dc) = &host.datacenter {
                member_of.push(format!("dc_{}", group_name(dc)));
            }
            for group in member_of {
                groups
                    .entry(group)
                    .or_default()
                    .insert(host.name.clone(), json!({}));
            }
        }
        let children: Map<String, Value> = groups
            .into_iter()
            .map(|(name, members)| (name, json!({ "hosts": members })))
            .collect();
        Ok(json!({ "all": { "hosts": all_hosts, "children": children } }))
    }

    /// Runs the playbook on `hosts`.
    pub async fn run(&self, hosts: &[HostSpec]) -> Result<(), AnsibleError> {
        let o = &self.options;
        let io = |context: String| move |source| AnsibleError::Io { context, source };
        let dir = tempfile::Builder::new()
            .prefix("drp-ansible-")
            .tempdir()
            .map_err(io("creating a temporary directory for ansible".into()))?;
        let inventory_path = dir.path().join("inventory.json");
        let vars_path = dir.path().join("extra-vars.json");
        let inventory = self.inventory(hosts)?;
        write_private(&inventory_path, &inventory)
            .map_err(io(format!("writing {}", inventory_path.display())))?;
        write_private(&vars_path, &json!(o.extra_vars))
            .map_err(io(format!("writing {}", vars_path.display())))?;
        let local_temp = dir.path().join("local-tmp");
        std::fs::create_dir(&local_temp)
            .map_err(io(format!("creating {}", local_temp.display())))?;
        // ssh's ControlPersist masters of this run live here and are stopped at its end,
        // instead of lingering (with their sshd sessions) for 60 s after each run.
        let control_dir =
            (!o.env.contains_key("ANSIBLE_SSH_CONTROL_PATH_DIR")).then(|| dir.path().join("cp"));

        let mut cmd = tokio::process::Command::new(&o.program);
        cmd.arg(&o.playbook)
            .arg("-i")
            .arg(&inventory_path)
            .arg("-e")
            .arg(format!("@{}", vars_path.display()))
            .args(&o.extra_args)
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .env("ANSIBLE_NOCOLOR", "1")
            .env_remove("ANSIBLE_FORCE_COLOR")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env("ANSIBLE_LOCAL_TEMP", &local_temp)
            .env("PYTHONUNBUFFERED", "1")
            .env("LC_ALL", "C.UTF-8")
            .envs(
                control_dir
                    .iter()
                    .map(|d| ("ANSIBLE_SSH_CONTROL_PATH_DIR", d)),
            )
            .envs(&o.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match &o.current_dir {
            Some(d) => {
                cmd.current_dir(d);
            }
            None => {
                if let Some(d) = o.playbook.parent().filter(|d| !d.as_os_str().is_empty()) {
                    cmd.current_dir(d);
                }
            }
        }
        let host_names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        tracing::info!(playbook = %o.playbook.display(), hosts = ?host_names, "running ansible-playbook");
        let mut child = cmd
            .spawn()
            .map_err(io(format!("starting {}", o.program.display())))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let state = Mutex::new(RunState::default());
        let work = async {
            let (a, b) = tokio::join!(
                self.pump(stdout, Stream::Stdout, &state),
                self.pump(stderr, Stream::Stderr, &state)
            );
            let status = child.wait().await;
            a.and(b).and(status)
        };
        let result = tokio::time::timeout(o.timeout, work).await;
        if let Some(control_dir) = &control_dir {
            stop_control_masters(control_dir).await;
        }
        let status = match result {
            Ok(result) => result.map_err(io("running ansible-playbook".into()))?,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return Err(AnsibleError::TimedOut {
                    playbook: o.playbook.clone(),
                    timeout: o.timeout,
                });
            }
        };
        let state = state.into_inner().unwrap_or_else(|e| e.into_inner());
        if status.success() {
            tracing::info!(playbook = %o.playbook.display(), "ansible-playbook succeeded");
            return Ok(());
        }
        let failures = state.parser.final_failures();
        if let Some(first) = failures.first() {
            return Err(AnsibleError::TaskFailed {
                playbook: o.playbook.clone(),
                host: first.host.clone(),
                task: first.task.clone(),
                message: first.message.clone(),
                failures,
            });
        }
        Err(AnsibleError::Failed {
            playbook: o.playbook.clone(),
            status: match status.code() {
                Some(code) => format!("exit code {code}"),
                None => status.to_string(),
            },
            output_tail: state.tail.finish(),
        })
    }

    async fn pump(
        &self,
        stream: impl AsyncRead + Unpin,
        which: Stream,
        state: &Mutex<RunState>,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).await? == 0 {
                return Ok(());
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            match which {
                Stream::Stdout => tracing::info!(target: "drp_provision::ansible", "{line}"),
                Stream::Stderr => tracing::warn!(target: "drp_provision::ansible", "{line}"),
            }
            if let Some(sink) = &self.sink {
                sink(which, line);
            }
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            if which == Stream::Stdout {
                state.parser.line(line);
            }
            state.tail.push(line);
        }
    }
}

/// Asks every ssh ControlMaster with a socket in `dir` to exit (best effort).
async fn stop_control_masters(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let mut ssh = tokio::process::Command::new("ssh");
        ssh.arg("-o")
            .arg(format!("ControlPath={}", entry.path().display()))
            .args(["-O", "exit", "drp-control-master"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), ssh.status()).await;
    }
}

/// Writes `value` as JSON to a new file readable by its owner only.
fn write_private(path: &Path, value: &Value) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&serde_json::to_vec_pretty(value).expect("JSON serializes"))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_callback_output() {
        let mut p = OutputParser::default();
        for line in [
            "PLAY [all] *****",
            "",
            "TASK [Create the file] *****",
            "changed: [spare-1]",
            "TASK [Try something] *****",
            r#"fatal: [spare-1]: FAILED! => {"changed": false, "msg": "nope"}"#,
            "...ignoring",
            "TASK [myrole : Break it [really]] *****",
            r#"fatal: [spare-1]: FAILED! => {"changed": false, "msg": "boom", "stderr": "oops"}"#,
            r#"fatal: [spare-2]: UNREACHABLE! => {"changed": false, "msg": "ssh: connect refused", "unreachable": true}"#,
            "PLAY RECAP *****",
            "spare-1                    : ok=1    changed=1    unreachable=0    failed=1    skipped=0    rescued=0    ignored=1",
            "spare-2                    : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0",
        ] {
            p.line(line);
        }
        let f = p.final_failures();
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].host, "spare-1");
        assert_eq!(f[0].task, "myrole : Break it [really]");
        assert_eq!(f[0].message, "boom; stderr: oops");
        assert!(!f[0].unreachable);
        assert_eq!(f[1].host, "spare-2");
        assert!(f[1].unreachable);
        assert_eq!(f[1].message, "ssh: connect refused");
    }

    #[test]
    fn group_names() {
        assert_eq!(group_name("db-main"), "db_main");
        assert_eq!(group_name("2nd"), "_2nd");
    }
}
