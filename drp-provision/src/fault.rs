//! Fault injection for drills: put a real fault on a host (cut its network, stop or freeze
//! a service, run a command), and take it away again — with a guarantee that it goes away
//! even if drp does not come back.
//!
//! # The dead-man timer
//!
//! A drill breaks production on purpose; the worst outcome is a fault that stays because
//! the machine that injected it crashed, or lost its network to the very fault it
//! injected. So [`Fault::inject`] first *arms* the fault's revert on the target host
//! itself, and only then injects: a detached process (`setsid sh -c 'sleep N; REVERT'`,
//! its stdio on `/dev/null`, so closing the SSH session or killing drp leaves it alone)
//! that runs the very script [`Fault::revert`] runs. Its process group id is in
//! `${TMPDIR:-/tmp}/drp-fault-ID.pid` (written atomically; removed when it fires), which is
//! how [`Fault::revert`] disarms it and [`Fault::is_armed`] finds it; beside it,
//! `drp-fault-ID.status` carries the injection's progress to the dead-man and to drp
//! (removed by `revert`). The id names every trace a fault leaves on a host, so two
//! faults never touch each other's. It must differ between hosts that share a temporary
//! directory (several "hosts" on one machine): drp's drills use `DRILL_ID.HOST`.
//!
//! [`Fault::revert`] first freezes the dead-man (`SIGSTOP` to its group), reverts, and
//! then kills it; if the revert fails, the dead-man is let go again, so it retries when it
//! fires. Reverting is idempotent.
//!
//! Caveat: a host whose systemd-logind kills a user's processes at logout
//! (`KillUserProcesses=yes`, not the default) kills the dead-man with the SSH session.
//!
//! # A blackhole that cuts drp's own connection
//!
//! A network blackhole that does not keep drp's SSH port cuts the connection that injects
//! it. On a blackholed connection, nothing fails: packets just vanish, so waiting for a
//! command's answer would hang (for TCP's retransmission timeout, many minutes). So the
//! blackhole's rules are applied by the dead-man process itself, one second after it is
//! armed (by then the arming command has answered), and drp then polls a status file for
//! the outcome. An answer (`applied`, or the failure with its output) is reported as
//! such; if the host stops answering (no answer within 5 s, or a transport error) after
//! the dead-man was confirmed armed, the rules are taken as applied: the armed dead-man
//! applies them and reverts them `dead_man` later whatever happens to drp. That case is
//! logged as a warning, and `inject` succeeds. Applying from the dead-man also means the
//! rules can never be in place without their revert pending.
//!
//! Other faults are injected synchronously; a `command` fault that cuts drp's connection
//! should detach itself (`(sleep 1; ...) >/dev/null 2>&1 &`) for the same reason.
//!
//! # Requirements on the host
//!
//! A POSIX shell, `setsid`, a `sleep` that takes fractions (GNU coreutils, busybox),
//! Linux `/proc`, and privileges for the fault (root for
//! firewall rules, systemctl and signalling other users' processes); plus `nft` or
//! `iptables` for a network blackhole, `systemctl` for a unit, `pkill` for a process
//! pattern. A missing tool is [`FaultError::Unsupported`], found before anything is armed.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{TransportError, stderr_suffix};
use crate::transport::{STDERR_TAIL, Transport, shell_quote};

/// Delay between arming a blackhole's dead-man and applying its rules: time for the
/// arming command's answer to leave the host before the rules may cut the connection.
const APPLY_DELAY: Duration = Duration::from_secs(1);
/// How often the status of a blackhole being applied is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A poll without an answer for this long means the connection is gone.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long applying a blackhole's rules may take once started.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest dead-man accepted: the arming command must see its dead-man alive.
const MIN_DEAD_MAN: Duration = Duration::from_secs(1);
/// iptables refuses chain names longer than this.
const IPTABLES_CHAIN_MAX: usize = 28;
/// `ip6tables`' ICMPv6 neighbour discovery, which keeps kept ports working over IPv6.
const ND_TYPES_IPTABLES: [&str; 2] = ["neighbour-solicitation", "neighbour-advertisement"];

/// What a fault does to a host. Serialized as a table with a `kind` tag:
///
/// ```toml
/// kind = "network-blackhole"
/// keep_ports = [22]
/// ```
///
/// `keep_ports` has no default on purpose: leaving it out would cut drp's own SSH
/// connection, so a plan has to say `keep_ports = []` to mean it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum FaultSpec {
    /// Drops every packet the host sends or receives, except on loopback and TCP to or
    /// from `keep_ports` (both directions, so that drp's SSH control connection — the
    /// sshd port — survives). With nftables: a table `inet drp_fault_ID` with input and
    /// output chains, policy drop (ICMPv6 neighbour discovery is let through, or a kept
    /// port stops working over IPv6 once the neighbour cache expires). Without nft:
    /// iptables (and ip6tables, if present), a chain `DRP-ID` jumped to first from INPUT
    /// and OUTPUT. Established connections are cut too: there is no conntrack exception.
    NetworkBlackhole {
        /// TCP ports that keep working (local or remote side).
        keep_ports: Vec<u16>,
    },
    /// Takes a service down. Give exactly one of:
    /// - `unit`: a systemd unit, `systemctl stop` / `systemctl start`;
    /// - `process`: a `pkill -f` pattern (an extended regular expression matched against
    ///   whole command lines); matching processes are frozen (`SIGSTOP`) rather than
    ///   killed, so they stop answering — health checks time out, as with a hung service —
    ///   and resume where they were (`SIGCONT`) with their state, without anything having
    ///   to restart them. Injecting fails when nothing matches. The pattern never appears
    ///   in a command line drp runs, so it cannot match drp's own shells or the dead-man.
    StopService {
        /// The systemd unit to stop.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
        /// The process pattern to freeze.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<String>,
    },
    /// The user's own fault: `inject` and `revert` run with `sh -c` on the host. The
    /// revert should be idempotent: it runs again when an earlier revert failed, and
    /// may run after a failed inject.
    Command {
        /// Puts the fault in place.
        inject: String,
        /// Takes it away.
        revert: String,
    },
}

/// Which firewall a network blackhole is put in with.
///
/// Only injecting uses it: reverting removes the fault's own nftables table and iptables
/// chain, whichever exist, so a revert never depends on knowing how the fault was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// nftables if `nft` is installed, else iptables.
    #[default]
    Auto,
    /// nftables only (fails if `nft` is missing).
    Nftables,
    /// iptables (and ip6tables if installed), even where nft is installed: for hosts
    /// whose firewall is managed with iptables, and for tests.
    Iptables,
}

/// One fault of one drill, to inject on and revert from hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    spec: FaultSpec,
    id: String,
    backend: Backend,
}

/// The step of a fault's life that failed, in [`FaultError`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultStep {
    /// Finding the tools the fault needs on the host.
    Check,
    /// Starting the dead-man timer.
    Arm,
    /// Putting the fault in place.
    Inject,
    /// Taking it away (and disarming the dead-man).
    Revert,
    /// Asking whether the dead-man is pending.
    Status,
}

impl fmt::Display for FaultStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultStep::Check => "checking the host",
            FaultStep::Arm => "arming the dead-man",
            FaultStep::Inject => "injecting",
            FaultStep::Revert => "reverting",
            FaultStep::Status => "checking the dead-man",
        })
    }
}

/// Errors of [`Fault`]. Messages name the host (the transport's `Display`), the fault
/// (`DESCRIPTION [fault ID]`) and the step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// The fault cannot be used as given (bad id, a stop-service without exactly one of
    /// unit and process, a dead-man shorter than a second). Nothing was run.
    #[error("invalid fault {fault}: {reason}")]
    Invalid {
        /// The fault.
        fault: String,
        /// What is wrong.
        reason: String,
    },

    /// The host lacks a tool the fault needs. Nothing was armed or injected.
    #[error("{host}: cannot inject {fault}: {reason}")]
    Unsupported {
        /// The host, as the transport displays it.
        host: String,
        /// The fault.
        fault: String,
        /// What is missing.
        reason: String,
    },

    /// A dead-man of this fault (same id) is already pending on the host: the fault may
    /// be in place. Nothing was done; revert it first.
    #[error(
        "{host}: {fault} is already injected: its dead-man (process group {pgid}) is pending; revert it first"
    )]
    AlreadyInjected {
        /// The host, as the transport displays it.
        host: String,
        /// The fault.
        fault: String,
        /// The dead-man's process group id.
        pgid: String,
    },

    /// A step ran on the host and failed.
    #[error(
        "{host}: {fault}: {step} failed: {reason}{}{}",
        stderr_suffix(stderr_tail),
        revert_suffix(revert_error)
    )]
    Failed {
        /// The host, as the transport displays it.
        host: String,
        /// The fault.
        fault: String,
        /// What was being done.
        step: FaultStep,
        /// Why it failed (`exit code 3`, ...).
        reason: String,
        /// The end of the failed command's stderr (bounded).
        stderr_tail: String,
        /// For a failed inject: the error of the immediate revert, if that failed too.
        revert_error: Option<Box<FaultError>>,
    },

    /// The transport failed (connection lost, ...). The message of `source` names the
    /// host.
    #[error("{fault}: {step} failed: {source}{}", revert_suffix(revert_error))]
    Transport {
        /// The host, as the transport displays it.
        host: String,
        /// The fault.
        fault: String,
        /// What was being done.
        step: FaultStep,
        /// The transport's error (boxed: it is large, and rare).
        #[source]
        source: Box<TransportError>,
        /// For a failed inject: the error of the immediate revert, if that failed too.
        revert_error: Option<Box<FaultError>>,
    },
}

fn revert_suffix(revert_error: &Option<Box<FaultError>>) -> String {
    match revert_error {
        None => String::new(),
        Some(e) => format!(
            "\n(reverting at once failed too, so the fault may be in place until its dead-man fires: {e})"
        ),
    }
}

impl FaultError {
    /// The host, when the error happened on one.
    pub fn host(&self) -> Option<&str> {
        match self {
            FaultError::Invalid { .. } => None,
            FaultError::Unsupported { host, .. }
            | FaultError::AlreadyInjected { host, .. }
            | FaultError::Failed { host, .. }
            | FaultError::Transport { host, .. } => Some(host),
        }
    }

    fn with_revert_error(mut self, error: Option<FaultError>) -> Self {
        if let FaultError::Failed { revert_error, .. }
        | FaultError::Transport { revert_error, .. } = &mut self
        {
            *revert_error = error.map(Box::new);
        }
        self
    }
}

/// Whether `id` can name a fault (it becomes part of file, table and chain names).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 8 hex digits of SHA-256: what keeps shortened or sanitised names unique.
fn short_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `drp_fault_ID`: nft identifiers allow only letters, digits and `_` here, so other
/// characters become `_` and a hash of the id is appended (`a-b` and `a_b` must differ).
fn nft_table_name(id: &str) -> String {
    let sanitised: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if sanitised == id {
        format!("drp_fault_{id}")
    } else {
        format!("drp_fault_{sanitised}_{}", short_hash(id))
    }
}

/// `DRP-ID`, or `DRP-HASH-END_OF_ID` when that is longer than iptables allows (a run id
/// such as `20261129T101500Z-1a2b3c4d` already is).
fn iptables_chain_name(id: &str) -> String {
    let name = format!("DRP-{id}");
    if name.len() <= IPTABLES_CHAIN_MAX {
        return name;
    }
    let head = format!("DRP-{}-", short_hash(id));
    let keep = IPTABLES_CHAIN_MAX - head.len();
    format!("{head}{}", &id[id.len() - keep..])
}

/// `s` as `printf` octal escapes, so that a script can rebuild it without the text itself
/// appearing in any command line: a `pkill -f` pattern written literally in a script
/// would match (and freeze) the shell running that script, and the dead-man's.
fn printf_octal(s: &str) -> String {
    s.bytes().map(|b| format!("\\{b:03o}")).collect()
}

impl Fault {
    /// A fault of drill run `id` (`[A-Za-z0-9._-]+`; checked when used). The id names
    /// everything the fault leaves on a host (nft table, iptables chain, dead-man pid
    /// file), so that two drills never collide and a revert finds its own fault.
    pub fn new(spec: FaultSpec, id: &str) -> Fault {
        Fault {
            spec,
            id: id.to_string(),
            backend: Backend::Auto,
        }
    }

    /// The same fault with a network blackhole forced onto `backend`.
    pub fn with_backend(mut self, backend: Backend) -> Fault {
        self.backend = backend;
        self
    }

    /// What the fault does.
    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// The drill run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The firewall backend for a network blackhole.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// One line for people: `network blackhole (keeping TCP port 22)`,
    /// `stop systemd unit nginx`, `freeze processes matching 'http.server 8081'`,
    /// ``command `...` (revert `...`)``.
    pub fn describe(&self) -> String {
        match &self.spec {
            FaultSpec::NetworkBlackhole { keep_ports } => match keep_ports.as_slice() {
                [] => "network blackhole (no port kept)".to_string(),
                [port] => format!("network blackhole (keeping TCP port {port})"),
                ports => format!(
                    "network blackhole (keeping TCP ports {})",
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            FaultSpec::StopService {
                unit: Some(unit),
                process: None,
            } => format!("stop systemd unit {unit}"),
            FaultSpec::StopService {
                unit: None,
                process: Some(pattern),
            } => format!("freeze processes matching '{pattern}'"),
            FaultSpec::StopService { .. } => {
                "stop service (needs exactly one of unit and process)".to_string()
            }
            FaultSpec::Command { inject, revert } => {
                format!("command `{inject}` (revert `{revert}`)")
            }
        }
    }

    /// Checks what can be checked without a host: the id, and that a stop-service has
    /// exactly one of unit and process (also done by `inject`, `revert` and `is_armed`).
    pub fn validate(&self) -> Result<(), FaultError> {
        let invalid = |reason: &str| {
            Err(FaultError::Invalid {
                fault: self.label(),
                reason: reason.to_string(),
            })
        };
        if !valid_id(&self.id) {
            return invalid("the id must be made of letters, digits, '.', '_' and '-'");
        }
        match &self.spec {
            FaultSpec::StopService {
                unit: Some(_),
                process: Some(_),
            }
            | FaultSpec::StopService {
                unit: None,
                process: None,
            } => invalid("a stop-service fault needs exactly one of `unit` and `process`"),
            FaultSpec::StopService {
                unit: Some(s),
                process: None,
            }
            | FaultSpec::StopService {
                unit: None,
                process: Some(s),
            } if s.trim().is_empty() => invalid("the unit or process pattern is empty"),
            _ => Ok(()),
        }
    }

    /// Arms the dead-man on `host`, then injects the fault. If injecting fails, the fault
    /// is reverted at once (best effort) and the error returned.
    ///
    /// The dead-man reverts the fault `dead_man` (at least 1 s, rounded up to whole
    /// seconds) after arming, unless [`Fault::revert`] disarms it first; if the injection
    /// is still running then, it waits for it to end, so a slow injection cannot outlast
    /// its revert. A network blackhole is applied by the dead-man process itself, a second
    /// after arming, and `dead_man` counts from then; when the host stops answering
    /// after that (the blackhole cut this connection), the fault counts as injected — see
    /// the module documentation. `inject` then returns about 5 s after the rules were
    /// applied, not when.
    ///
    /// Fails with [`FaultError::AlreadyInjected`] if a dead-man of this fault is pending
    /// on the host; with [`FaultError::Unsupported`] (before arming anything) if a tool
    /// the fault needs is missing.
    pub async fn inject(&self, host: &dyn Transport, dead_man: Duration) -> Result<(), FaultError> {
        self.validate()?;
        if dead_man < MIN_DEAD_MAN {
            return Err(FaultError::Invalid {
                fault: self.label(),
                reason: format!(
                    "the dead-man must be at least {}s (got {:?})",
                    MIN_DEAD_MAN.as_secs(),
                    dead_man
                ),
            });
        }
        let backend = self.check(host).await?;
        let blackhole_apply = match (&self.spec, backend) {
            (FaultSpec::NetworkBlackhole { keep_ports }, Some(backend)) => {
                Some(self.blackhole_apply_script(backend, keep_ports))
            }
            _ => None,
        };
        let secs = dead_man.as_secs() + u64::from(dead_man.subsec_nanos() > 0);
        let arm = self.arm_script(secs, blackhole_apply.as_deref());
        let out = host
            .run(&arm)
            .await
            .map_err(|e| self.step_error(host, FaultStep::Arm, e))?;
        let answer = out.stdout_str();
        if let Some(pgid) = answer.trim().strip_prefix("already-armed ") {
            return Err(FaultError::AlreadyInjected {
                host: host.to_string(),
                fault: self.label(),
                pgid: pgid.to_string(),
            });
        }
        tracing::info!(host = %host, fault = %self.label(), answer = %answer.trim(), "dead-man armed");

        let injected = match blackhole_apply {
            Some(_) => self.await_blackhole(host, secs).await,
            None => host
                .run(&self.inject_command())
                .await
                .map(drop)
                .map_err(|e| self.step_error(host, FaultStep::Inject, e)),
        };
        match injected {
            Ok(()) => {
                tracing::info!(host = %host, fault = %self.label(), "fault injected");
                Ok(())
            }
            Err(e) => {
                // Not the error itself: its stderr tail may echo a secret, and the caller,
                // who knows the secrets, reports it.
                tracing::warn!(host = %host, fault = %self.label(), "injecting failed; reverting at once");
                let revert_error = self.revert(host).await.err();
                Err(e.with_revert_error(revert_error))
            }
        }
    }

    /// Disarms the dead-man (so it will not fire later) and reverts the fault.
    /// Idempotent: reverting a fault that is not, or no longer, in place succeeds.
    ///
    /// The dead-man is frozen while the revert runs and killed only once it succeeded;
    /// when the revert fails, it is let go again and retries when it fires.
    ///
    /// Like any command, this needs the host to answer: after a blackhole that did not
    /// keep drp's SSH port, it cannot get through until the dead-man has restored the
    /// network (on a blackholed connection, it waits rather than fails: bound it with a
    /// timeout, or wait for the dead-man first).
    pub async fn revert(&self, host: &dyn Transport) -> Result<(), FaultError> {
        self.validate()?;
        host.run(&self.revert_command())
            .await
            .map_err(|e| self.step_error(host, FaultStep::Revert, e))?;
        tracing::info!(host = %host, fault = %self.label(), "fault reverted");
        Ok(())
    }

    /// Whether a dead-man of this fault is still pending on `host` (armed, not yet fired,
    /// not disarmed).
    pub async fn is_armed(&self, host: &dyn Transport) -> Result<bool, FaultError> {
        self.validate()?;
        let script = format!(
            "{}if drp_armed; then echo armed; else echo disarmed; fi\n",
            self.prelude()
        );
        let out = host
            .run(&script)
            .await
            .map_err(|e| self.step_error(host, FaultStep::Status, e))?;
        match out.stdout_str().trim() {
            "armed" => Ok(true),
            "disarmed" => Ok(false),
            other => Err(FaultError::Failed {
                host: host.to_string(),
                fault: self.label(),
                step: FaultStep::Status,
                reason: format!("unexpected answer {other:?}"),
                stderr_tail: out_tail(&out.stderr),
                revert_error: None,
            }),
        }
    }

    /// `DESCRIPTION [fault ID]`, as errors and logs name the fault.
    fn label(&self) -> String {
        format!("{} [fault {}]", self.describe(), self.id)
    }

    fn step_error(
        &self,
        host: &dyn Transport,
        step: FaultStep,
        error: TransportError,
    ) -> FaultError {
        match error {
            TransportError::CommandFailed {
                host,
                status,
                stderr_tail,
                ..
            } => FaultError::Failed {
                host,
                fault: self.label(),
                step,
                reason: status.to_string(),
                stderr_tail,
                revert_error: None,
            },
            source => FaultError::Transport {
                host: host.to_string(),
                fault: self.label(),
                step,
                source: Box::new(source),
                revert_error: None,
            },
        }
    }

    /// Finds the tools the fault needs; for a network blackhole, the backend to use.
    async fn check(&self, host: &dyn Transport) -> Result<Option<Backend>, FaultError> {
        let script = "for t in setsid nft iptables systemctl pkill; do \
                      command -v \"$t\" >/dev/null 2>&1 && echo \"$t\"; done; true";
        let out = host
            .run(script)
            .await
            .map_err(|e| self.step_error(host, FaultStep::Check, e))?;
        let found = out.stdout_str();
        let has = |tool: &str| found.lines().any(|l| l.trim() == tool);
        let unsupported = |reason: &str| FaultError::Unsupported {
            host: host.to_string(),
            fault: self.label(),
            reason: reason.to_string(),
        };
        if !has("setsid") {
            return Err(unsupported(
                "setsid is not installed (the dead-man timer needs it)",
            ));
        }
        match &self.spec {
            FaultSpec::NetworkBlackhole { .. } => match self.backend {
                Backend::Auto if has("nft") => Ok(Some(Backend::Nftables)),
                Backend::Auto if has("iptables") => Ok(Some(Backend::Iptables)),
                Backend::Auto => Err(unsupported("neither nft nor iptables is installed")),
                Backend::Nftables if has("nft") => Ok(Some(Backend::Nftables)),
                Backend::Nftables => Err(unsupported(
                    "nft is not installed (the nftables backend was asked for)",
                )),
                Backend::Iptables if has("iptables") => Ok(Some(Backend::Iptables)),
                Backend::Iptables => Err(unsupported(
                    "iptables is not installed (the iptables backend was asked for)",
                )),
            },
            FaultSpec::StopService { unit: Some(_), .. } if !has("systemctl") => {
                Err(unsupported("systemctl is not installed (no systemd?)"))
            }
            FaultSpec::StopService {
                process: Some(_), ..
            } if !has("pkill") => Err(unsupported("pkill is not installed (procps)")),
            _ => Ok(None),
        }
    }

    /// Waits for the dead-man's report on applying the blackhole's rules.
    async fn await_blackhole(&self, host: &dyn Transport, secs: u64) -> Result<(), FaultError> {
        let poll = format!(
            "{}if [ -s \"$status\" ]; then cat \"$status\"; \
             elif drp_armed; then echo pending; else echo gone; fi\n",
            self.prelude()
        );
        let deadline = Instant::now() + APPLY_DELAY + APPLY_TIMEOUT;
        let lost = |why: String| {
            tracing::warn!(
                host = %host,
                fault = %self.label(),
                "{why} after the dead-man was armed: the blackhole probably cut this connection; \
                 taking the rules as applied (the dead-man applies them and reverts them {secs}s later)"
            );
            Ok(())
        };
        loop {
            let out = match tokio::time::timeout(POLL_TIMEOUT, host.run(&poll)).await {
                Err(_) => {
                    return lost(format!("no answer within {}s", POLL_TIMEOUT.as_secs()));
                }
                Ok(Err(e @ TransportError::CommandFailed { .. })) => {
                    return Err(self.step_error(host, FaultStep::Inject, e));
                }
                Ok(Err(e)) => return lost(format!("the connection failed ({e})")),
                Ok(Ok(out)) => out.stdout_str(),
            };
            let (first, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
            let failed = |reason: String, stderr: &str| FaultError::Failed {
                host: host.to_string(),
                fault: self.label(),
                step: FaultStep::Inject,
                reason,
                stderr_tail: out_tail(stderr.as_bytes()),
                revert_error: None,
            };
            match first.trim() {
                "applied" => return Ok(()),
                "pending" => {}
                "gone" => {
                    return Err(failed(
                        "the dead-man process ended before reporting on the rules (killed?)"
                            .to_string(),
                        "",
                    ));
                }
                line => {
                    let code = line.strip_prefix("failed ").unwrap_or(line);
                    return Err(failed(
                        format!("applying the rules: exit code {code}"),
                        rest,
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(failed(
                    format!(
                        "the rules were not applied within {}s",
                        (APPLY_DELAY + APPLY_TIMEOUT).as_secs()
                    ),
                    "",
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Shell variables and functions every script of this fault starts with:
    /// `$pidfile`, `$status`, `$marker`; `drp_ours PID` (a live dead-man of this fault),
    /// `drp_armed` (sets `$pg`), `drp_release` (removes the pid file if it is ours).
    fn prelude(&self) -> String {
        let base = format!("drp-fault-{}", self.id);
        format!(
            "pidfile=\"${{TMPDIR:-/tmp}}\"/{pid}\n\
             status=\"${{TMPDIR:-/tmp}}\"/{status}\n\
             marker={marker}\n\
             drp_ours() {{ [ -n \"$1\" ] && [ \"$1\" != \"$$\" ] && kill -0 \"$1\" 2>/dev/null \
             && grep -qF -e \"$marker\" \"/proc/$1/cmdline\" 2>/dev/null; }}\n\
             drp_armed() {{ [ -s \"$pidfile\" ] && pg=$(cat \"$pidfile\" 2>/dev/null) && drp_ours \"$pg\"; }}\n\
             drp_release() {{ if [ \"$(cat \"$pidfile\" 2>/dev/null)\" = \"$$\" ]; then rm -f \"$pidfile\"; fi; }}\n",
            pid = shell_quote(&format!("{base}.pid")),
            status = shell_quote(&format!("{base}.status")),
            marker = shell_quote(&self.marker()),
        )
    }

    /// The dead-man's `$0`: how its process is told from a reused pid.
    fn marker(&self) -> String {
        format!("drp-fault-dead-man:{}", self.id)
    }

    /// Starts the dead-man and waits until it is alive and has written its pid file.
    /// Prints `armed PGID`, or `already-armed PGID` (and starts nothing) when a dead-man
    /// of this fault is pending.
    fn arm_script(&self, secs: u64, blackhole_apply: Option<&str>) -> String {
        let revert = self.revert_script();
        let apply = match blackhole_apply {
            None => String::new(),
            Some(apply) => format!(
                "sleep {delay}\n\
                 if out=$( ( {apply} ) 2>&1 ); then\n\
                 printf 'applied\\n' > \"$status.$$\" && mv -f \"$status.$$\" \"$status\"\n\
                 else\n\
                 rc=$?\n\
                 printf 'failed %s\\n%s\\n' \"$rc\" \"$out\" > \"$status.$$\" && mv -f \"$status.$$\" \"$status\"\n\
                 ( {revert} )\n\
                 drp_release\n\
                 exit 1\n\
                 fi\n",
                delay = APPLY_DELAY.as_secs(),
            ),
        };
        // After its time, the dead-man still waits for an injection that is running (its
        // shell's pid is in the status file): reverting first would leave the fault in
        // place for good when the injection outlasts the timer.
        let dead_man = format!(
            "{prelude}echo $$ > \"$pidfile.$$\" && mv -f \"$pidfile.$$\" \"$pidfile\" || exit 1\n\
             {apply}sleep {secs}\n\
             while read -r what pid < \"$status\" && [ \"$what\" = injecting ] && kill -0 \"$pid\"; do sleep 1; done 2>/dev/null\n\
             ( {revert} )\n\
             drp_release\n",
            prelude = self.prelude(),
        );
        format!(
            "{prelude}if drp_armed; then echo \"already-armed $pg\"; exit 0; fi\n\
             rm -f \"$pidfile\" \"$status\"\n\
             setsid sh -c {dead_man} {marker} </dev/null >/dev/null 2>&1 &\n\
             i=0\n\
             while ! drp_armed; do\n\
             i=$((i + 1))\n\
             if [ \"$i\" -gt 100 ]; then echo \"drp: the dead-man did not start (no live process in $pidfile after 5s)\" >&2; exit 1; fi\n\
             sleep 0.05\n\
             done\n\
             echo \"armed $pg\"\n",
            prelude = self.prelude(),
            dead_man = shell_quote(&dead_man),
            marker = shell_quote(&self.marker()),
        )
    }

    /// What `revert` runs: freeze the dead-man, revert, then kill it — or let it go again
    /// if the revert failed, so it retries when it fires. `HUP` and `PIPE` are ignored:
    /// a connection dropping mid-way must not kill the script between freezing the
    /// dead-man and letting it go.
    fn revert_command(&self) -> String {
        format!(
            "trap '' HUP PIPE\n\
             {prelude}if drp_armed; then kill -STOP \"-$pg\" 2>/dev/null || pg=; else pg=; fi\n\
             if ( {revert} ); then\n\
             if [ -n \"$pg\" ]; then kill -KILL \"-$pg\" 2>/dev/null; fi\n\
             rm -f \"$pidfile\" \"$status\"\n\
             else\n\
             rc=$?\n\
             if [ -n \"$pg\" ]; then kill -CONT \"-$pg\" 2>/dev/null; fi\n\
             exit \"$rc\"\n\
             fi\n",
            prelude = self.prelude(),
            revert = self.revert_script(),
        )
    }

    /// What `inject` runs for a fault other than a blackhole: the injection, with its
    /// shell's pid in the status file while it runs (for the dead-man to wait on).
    fn inject_command(&self) -> String {
        format!(
            "{prelude}echo \"injecting $$\" > \"$status\"\n\
             ( {inject} )\n\
             rc=$?\n\
             rm -f \"$status\"\n\
             exit \"$rc\"\n",
            prelude = self.prelude(),
            inject = self.inject_script(),
        )
    }

    /// Puts a (non-blackhole) fault in place.
    fn inject_script(&self) -> String {
        match &self.spec {
            FaultSpec::StopService {
                unit: Some(unit), ..
            } => format!("systemctl stop {}\n", shell_quote(unit)),
            FaultSpec::StopService {
                process: Some(pattern),
                ..
            } => format!(
                "pat=$(printf {})\n\
                 pkill -STOP -f -- \"$pat\"\n\
                 rc=$?\n\
                 if [ \"$rc\" -eq 1 ]; then printf 'drp: no process matches %s\\n' \"$pat\" >&2; fi\n\
                 exit \"$rc\"\n",
                shell_quote(&printf_octal(pattern))
            ),
            FaultSpec::Command { inject, .. } => format!("sh -c {}\n", shell_quote(inject)),
            // Blackholes are applied by the dead-man; invalid specs never get here.
            FaultSpec::NetworkBlackhole { .. } | FaultSpec::StopService { .. } => {
                "true\n".to_string()
            }
        }
    }

    /// Takes the fault away; idempotent. Shared by `revert` and the dead-man, which run it
    /// in a subshell (so it may `exit`).
    fn revert_script(&self) -> String {
        match &self.spec {
            FaultSpec::NetworkBlackhole { .. } => self.blackhole_revert_script(),
            FaultSpec::StopService {
                unit: Some(unit), ..
            } => format!("systemctl start {}\n", shell_quote(unit)),
            FaultSpec::StopService {
                process: Some(pattern),
                ..
            } => format!(
                "pat=$(printf {})\n\
                 pkill -CONT -f -- \"$pat\"\n\
                 [ \"$?\" -le 1 ]\n",
                shell_quote(&printf_octal(pattern))
            ),
            FaultSpec::Command { revert, .. } => format!("sh -c {}\n", shell_quote(revert)),
            FaultSpec::StopService { .. } => "true\n".to_string(),
        }
    }

    /// The rules, as the dead-man applies them.
    fn blackhole_apply_script(&self, backend: Backend, keep_ports: &[u16]) -> String {
        let mut ports = keep_ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        if backend == Backend::Iptables {
            return self.iptables_apply_script(&ports);
        }
        let table = nft_table_name(&self.id);
        let list = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let chain = |name: &str, hook: &str, iface: &str, local: &str, remote: &str| {
            let mut rules = format!(
                "\tchain {name} {{\n\
                 \t\ttype filter hook {hook} priority 0; policy drop;\n\
                 \t\t{iface} \"lo\" accept\n\
                 \t\ticmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept\n"
            );
            if !ports.is_empty() {
                rules.push_str(&format!(
                    "\t\ttcp {local} {{ {list} }} accept\n\t\ttcp {remote} {{ {list} }} accept\n"
                ));
            }
            rules.push_str("\t}\n");
            rules
        };
        // Declaring, deleting and re-creating the table in one transaction makes
        // injecting again replace the rules atomically instead of failing.
        let ruleset = format!(
            "table inet {table}\n\
             delete table inet {table}\n\
             table inet {table} {{\n{}{}}}\n",
            chain("input", "input", "iifname", "dport", "sport"),
            chain("output", "output", "oifname", "sport", "dport"),
        );
        format!("printf '%s' {} | nft -f -\n", shell_quote(&ruleset))
    }

    fn iptables_apply_script(&self, ports: &[u16]) -> String {
        let chain = shell_quote(&iptables_chain_name(&self.id));
        let mut script = String::new();
        for (tool, v6) in [("iptables", false), ("ip6tables", true)] {
            let t = format!("{tool} -w 5");
            let mut rules = vec![
                format!("-N {chain} 2>/dev/null || {t} -F {chain}"),
                format!("-A {chain} -i lo -j ACCEPT"),
                format!("-A {chain} -o lo -j ACCEPT"),
            ];
            if v6 {
                for nd in ND_TYPES_IPTABLES {
                    rules.push(format!(
                        "-A {chain} -p ipv6-icmp --icmpv6-type {nd} -j ACCEPT"
                    ));
                }
            }
            for port in ports {
                rules.push(format!("-A {chain} -p tcp --dport {port} -j ACCEPT"));
                rules.push(format!("-A {chain} -p tcp --sport {port} -j ACCEPT"));
            }
            rules.push(format!("-A {chain} -j DROP"));
            for builtin in ["INPUT", "OUTPUT"] {
                rules.push(format!(
                    "-C {builtin} -j {chain} 2>/dev/null || {t} -I {builtin} 1 -j {chain}"
                ));
            }
            let body: String = rules
                .iter()
                .map(|r| format!("{t} {r} || exit 1\n"))
                .collect();
            if v6 {
                // IPv6 too when the host has it (a kernel without IPv6 cannot even list).
                script.push_str(&format!(
                    "if command -v ip6tables >/dev/null 2>&1 && {t} -n -L >/dev/null 2>&1; then\n{body}fi\n"
                ));
            } else {
                script.push_str(&body);
            }
        }
        script
    }

    /// Removes the fault's own table and chains, whichever backend made them; touches
    /// nothing else. Fails only if something of the fault's could not be removed.
    fn blackhole_revert_script(&self) -> String {
        let table = shell_quote(&nft_table_name(&self.id));
        let chain = shell_quote(&iptables_chain_name(&self.id));
        format!(
            "rc=0\n\
             if command -v nft >/dev/null 2>&1 && nft list table inet {table} >/dev/null 2>&1; then\n\
             nft delete table inet {table} || rc=1\n\
             fi\n\
             for t in iptables ip6tables; do\n\
             command -v \"$t\" >/dev/null 2>&1 || continue\n\
             while \"$t\" -w 5 -D INPUT -j {chain} 2>/dev/null; do :; done\n\
             while \"$t\" -w 5 -D OUTPUT -j {chain} 2>/dev/null; do :; done\n\
             if \"$t\" -w 5 -n -L {chain} >/dev/null 2>&1; then\n\
             \"$t\" -w 5 -F {chain} && \"$t\" -w 5 -X {chain} || rc=1\n\
             fi\n\
             done\n\
             exit \"$rc\"\n"
        )
    }
}

fn out_tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str) -> Fault {
        Fault::new(
            FaultSpec::StopService {
                unit: Some(name.into()),
                process: None,
            },
            "t1",
        )
    }

    #[test]
    fn describe() {
        let blackhole = |ports: Vec<u16>| {
            Fault::new(FaultSpec::NetworkBlackhole { keep_ports: ports }, "x").describe()
        };
        assert_eq!(
            blackhole(vec![22]),
            "network blackhole (keeping TCP port 22)"
        );
        assert_eq!(
            blackhole(vec![22, 2222]),
            "network blackhole (keeping TCP ports 22, 2222)"
        );
        assert_eq!(blackhole(vec![]), "network blackhole (no port kept)");
        assert_eq!(unit("nginx").describe(), "stop systemd unit nginx");
        let process = Fault::new(
            FaultSpec::StopService {
                unit: None,
                process: Some("http.server 8081".into()),
            },
            "x",
        );
        assert_eq!(
            process.describe(),
            "freeze processes matching 'http.server 8081'"
        );
        let command = Fault::new(
            FaultSpec::Command {
                inject: "touch /x".into(),
                revert: "rm -f /x".into(),
            },
            "x",
        );
        assert_eq!(command.describe(), "command `touch /x` (revert `rm -f /x`)");
    }

    // No systemd here (and tests must not stop real units): the unit fault is tested by
    // the commands it builds, the rest of its life by the other faults' integration tests.
    #[test]
    fn stop_unit_commands() {
        let fault = unit("nginx.service");
        assert_eq!(fault.inject_script(), "systemctl stop nginx.service\n");
        assert_eq!(fault.revert_script(), "systemctl start nginx.service\n");
        let odd = unit("my unit@1");
        assert_eq!(odd.inject_script(), "systemctl stop 'my unit@1'\n");
        let arm = fault.arm_script(60, None);
        assert!(arm.contains("sleep 60"), "{arm}");
        assert!(arm.contains("systemctl start nginx.service"), "{arm}");
        assert!(
            !arm.contains("systemctl stop"),
            "the dead-man only reverts: {arm}"
        );
        assert!(
            fault
                .revert_command()
                .contains("systemctl start nginx.service")
        );
    }

    #[test]
    fn validation() {
        assert!(unit("nginx").validate().is_ok());
        let both = Fault::new(
            FaultSpec::StopService {
                unit: Some("a".into()),
                process: Some("b".into()),
            },
            "x",
        );
        let err = both.validate().unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
        let neither = Fault::new(
            FaultSpec::StopService {
                unit: None,
                process: None,
            },
            "x",
        );
        assert!(neither.validate().is_err());
        for bad in ["", "a b", "a/b", "x;rm", "é"] {
            let f = Fault::new(FaultSpec::NetworkBlackhole { keep_ports: vec![] }, bad);
            assert!(f.validate().is_err(), "{bad:?} accepted");
        }
        let f = Fault::new(
            FaultSpec::NetworkBlackhole { keep_ports: vec![] },
            "20261129T101500Z-1a2b3c4d.web_1",
        );
        assert!(f.validate().is_ok());
    }

    #[test]
    fn names_are_valid_and_distinct() {
        assert_eq!(nft_table_name("run1"), "drp_fault_run1");
        let a = nft_table_name("a-b");
        let b = nft_table_name("a_b");
        let c = nft_table_name("a.b");
        assert!(a.starts_with("drp_fault_a_b_"), "{a}");
        assert!(a != b && b != c && a != c);
        assert_eq!(iptables_chain_name("run1"), "DRP-run1");
        let long = "20261129T101500Z-1a2b3c4d";
        let other = "20261129T101500Z-1a2b3c4e";
        let chain = iptables_chain_name(long);
        assert_eq!(chain.len(), IPTABLES_CHAIN_MAX, "{chain}");
        assert!(
            chain.starts_with("DRP-") && chain.ends_with("1a2b3c4d"),
            "{chain}"
        );
        assert_ne!(chain, iptables_chain_name(other));
    }

    #[test]
    fn serde_round_trip() {
        let specs = [
            FaultSpec::NetworkBlackhole {
                keep_ports: vec![22],
            },
            FaultSpec::StopService {
                unit: Some("nginx".into()),
                process: None,
            },
            FaultSpec::StopService {
                unit: None,
                process: Some("http.server".into()),
            },
            FaultSpec::Command {
                inject: "a".into(),
                revert: "b".into(),
            },
        ];
        for spec in specs {
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<FaultSpec>(&json).unwrap(), spec);
            let toml = toml::to_string(&spec).unwrap();
            assert_eq!(toml::from_str::<FaultSpec>(&toml).unwrap(), spec, "{toml}");
        }
        let spec: FaultSpec =
            toml::from_str("kind = \"network-blackhole\"\nkeep_ports = [22, 2222]\n").unwrap();
        assert_eq!(
            spec,
            FaultSpec::NetworkBlackhole {
                keep_ports: vec![22, 2222]
            }
        );
        let spec: FaultSpec =
            toml::from_str("kind = \"stop-service\"\nunit = \"nginx\"\n").unwrap();
        assert!(matches!(
            spec,
            FaultSpec::StopService {
                unit: Some(_),
                process: None
            }
        ));
        // keep_ports must be said, and typos are refused.
        assert!(toml::from_str::<FaultSpec>("kind = \"network-blackhole\"\n").is_err());
        assert!(toml::from_str::<FaultSpec>("kind = \"stop-service\"\nunits = \"x\"\n").is_err());
    }

    #[test]
    fn patterns_never_appear_in_scripts() {
        let fault = Fault::new(
            FaultSpec::StopService {
                unit: None,
                process: Some("http.server 8081".into()),
            },
            "t",
        );
        for script in [
            fault.inject_command(),
            fault.revert_command(),
            fault.arm_script(5, None),
        ] {
            assert!(!script.contains("http.server"), "{script}");
        }
    }

    #[test]
    fn octal_round_trips_through_sh() {
        let text = "a'b\"c $x `y` \\ %s %% é\t-f";
        let script = format!("printf {}", shell_quote(&printf_octal(text)));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
    }

    #[test]
    fn blackhole_rules() {
        let fault = Fault::new(
            FaultSpec::NetworkBlackhole {
                keep_ports: vec![2222, 22, 22],
            },
            "r-1",
        );
        let nft = fault.blackhole_apply_script(Backend::Nftables, &[2222, 22, 22]);
        assert!(nft.contains("tcp dport { 22, 2222 } accept"), "{nft}");
        assert!(nft.contains(&nft_table_name("r-1")), "{nft}");
        let none = fault.blackhole_apply_script(Backend::Nftables, &[]);
        assert!(!none.contains("tcp "), "{none}");
        let ipt = fault.blackhole_apply_script(Backend::Iptables, &[22]);
        assert!(
            ipt.contains("iptables -w 5 -A DRP-r-1 -p tcp --sport 22 -j ACCEPT || exit 1"),
            "{ipt}"
        );
        assert!(ipt.contains("-I INPUT 1 -j DRP-r-1"), "{ipt}");
        let revert = fault.revert_script();
        assert!(
            revert.contains("nft delete table inet drp_fault_r_1_"),
            "{revert}"
        );
        assert!(revert.contains("-X DRP-r-1"), "{revert}");
    }
}
