//! Backups and restores on another machine: drp-backup's [`Host`] over drp-provision's
//! [`Transport`] — the one place where the two meet.
//!
//! Everything streams through the transport: a directory is read with `tar -cf - -C DIR .`
//! on the host and restored with `tar -x` there, a file with `cat`; no temporary copy is made
//! on either side. Restores are staged in a hidden directory inside the target on the host and
//! moved into place with `mv` only after every byte was checked, as locally.
//!
//! ## Staging directories that outlive their restore
//!
//! Each staging directory (`TARGET/.drp-restore-XXXXXX`) is locked (`flock`, util-linux or
//! BusyBox) by a small *lease* process on the host, started with it and tied to the restore's
//! SSH session: it waits on its standard input, and is released by a `done` line once the
//! restore committed or discarded. Three things keep a cut-off restore from leaving its staging
//! (up to the whole restored data) on the host:
//!
//! 1. the lease removes the staging directory itself when its input ends without `done` — the
//!    session ended under it (drp killed, connection lost): no new connection is needed;
//! 2. a [`TransportHost`] that cannot discard a staging directory because the host does not
//!    answer remembers it, and removes it (logging so) at its next restore on that host — a
//!    recovery's retried restore step — since it knows that restore is over;
//! 3. every restore removes, before it starts, the staging directories in its target that
//!    nobody holds the lock of (see [`Staging`]): those of restores that ended without any of
//!    the above (session processes killed, host rebooted).
//!
//! The [`Host`] methods are blocking (the backup pipeline calls them from its own threads);
//! they drive the async transport with the runtime handle captured at construction.
//!
//! When the transport itself fails (the host cannot be reached, authentication or host-key
//! checking fails, the connection is lost), the error keeps the [`TransportError`] as its
//! source, behind the same message; [`transport_cause`] finds it.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use drp_backup::host::{
    EMPTY_STAGING_GRACE, STAGING_PREFIX, STDERR_TAIL, Staging, failure_message,
};
use drp_backup::{Host, HostError, SourceKind, SourceOrigin};
use drp_provision::{
    ExitStatus, RemoteChild, RunOptions, Transport, TransportError, TransportExt, shell_quote,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Bytes moved per read or write between the pipeline and the transport.
const CHUNK: usize = 256 * 1024;

/// How long releasing a staging directory's lease waits for it to end.
const LEASE_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A [`Host`] reached through a [`Transport`] (SSH, or local for tests and symmetry).
///
/// Clones share their restores' state (leases, and staging directories left to discard): a
/// caller that restores onto one host several times (a recovery retrying a restore step)
/// keeps one `TransportHost` for it, so that what a cut-off restore left is removed by the
/// next one.
#[derive(Debug, Clone)]
pub struct TransportHost {
    transport: Arc<dyn Transport>,
    runtime: Handle,
    restores: Arc<Mutex<Restores>>,
}

#[derive(Debug, Default)]
struct Restores {
    /// The lease of each running restore's staging directory, by directory.
    leases: HashMap<PathBuf, RemoteChild>,
    /// Staging directories of ended restores that could not be removed: the host did not
    /// answer.
    unfinished: Vec<Staging>,
}

/// How a staging directory's lease ended.
enum Released {
    /// Its restore released it, or it had none.
    Cleanly,
    /// The connection it ran on was lost: the host did not answer a moment ago.
    ConnectionLost,
}

impl TransportHost {
    /// Must be called inside a tokio runtime, which then carries the transport's work.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            runtime: Handle::current(),
            restores: Arc::default(),
        }
    }

    fn restores(&self) -> MutexGuard<'_, Restores> {
        self.restores.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the lease of `dir`: tells it the restore is over (so it leaves the directory as
    /// the restore left it) and waits for it, briefly. Reports whether its connection was lost.
    fn release(&self, dir: &Path) -> Released {
        let Some(mut lease) = self.restores().leases.remove(dir) else {
            return Released::Cleanly;
        };
        self.runtime.block_on(async {
            let mut told = false;
            if let Some(mut stdin) = lease.stdin.take() {
                told = stdin.write_all(b"done\n").await.is_ok() && stdin.shutdown().await.is_ok();
            }
            // A lease whose connection is gone ends with an error; one that does not end
            // is on a host that does not answer.
            match tokio::time::timeout(LEASE_RELEASE_WAIT, lease.wait()).await {
                Ok(Ok(_)) if told => Released::Cleanly,
                _ => Released::ConnectionLost,
            }
        })
    }

    /// Remembers `staging`, which could not be removed, for the next restore on this host.
    fn leave_for_later(&self, staging: &Staging, why: &dyn fmt::Display) {
        tracing::warn!(
            "{}: the staging directory {} could not be removed ({why}); it is removed by the \
             next restore on this host, or into {}",
            self.transport,
            staging.dir.display(),
            staging.target.display()
        );
        self.restores().unfinished.push(staging.clone());
    }

    /// Runs a short script to completion. Its stdout if it exits 0; otherwise its standard
    /// error (which the scripts here use for their messages), prefixed with the host.
    fn run(&self, script: &str) -> Result<String, HostError> {
        let options = RunOptions {
            check: false,
            ..RunOptions::default()
        };
        let out = self
            .runtime
            .block_on(self.transport.run_with(script, &options))
            .map_err(transport_failure)?;
        if out.status.success() {
            Ok(out.stdout_str())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(HostError::new(format!(
                "{}: {} ({})",
                self.transport,
                stderr.trim(),
                out.status
            )))
        }
    }

    fn spawn(&self, command: &str) -> Result<Spawned, HostError> {
        let mut child = self
            .runtime
            .block_on(self.transport.spawn(command))
            .map_err(transport_failure)?;
        let mut stderr = std::mem::replace(&mut child.stderr, Box::new(tokio::io::empty()));
        let stderr = self.runtime.spawn(async move {
            let mut tail = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        Ok(Spawned { child, stderr })
    }

    /// Streams `plain` into `command`'s stdin. A read error kills the command before its
    /// stdin closes, so it never sees the end of bad data.
    fn feed(&self, command: &str, what: &str, plain: &mut dyn Read) -> io::Result<()> {
        let Spawned { mut child, stderr } = self.spawn(command).map_err(io::Error::other)?;
        let mut stdin = child.stdin.take().expect("a spawned command has stdin");
        // Output goes nowhere, but must be read so the command never blocks on it.
        let mut stdout = std::mem::replace(&mut child.stdout, Box::new(tokio::io::empty()));
        let drain = self
            .runtime
            .spawn(async move { tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await });
        let mut buf = vec![0u8; CHUNK];
        // The input's own errors go back as they are; the command's are its writing failures.
        let fed: Result<(), (io::Error, bool)> = loop {
            let n = match plain.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err((e, false)),
            };
            if let Err(e) = self.runtime.block_on(stdin.write_all(&buf[..n])) {
                break Err((e, true));
            }
        };
        if let Err((e, writing)) = fed {
            let _ = self.runtime.block_on(child.kill());
            drop(stdin);
            let waited = self.runtime.block_on(child.wait());
            if !writing {
                return Err(e);
            }
            let message = format!("{}: {what} stopped reading its input: {e}", self.transport);
            return Err(io::Error::other(match waited {
                // The connection is gone: that is why the command stopped reading.
                Err(lost) => HostError::caused_by(message, lost),
                Ok(_) => HostError::new(message),
            }));
        }
        self.runtime.block_on(stdin.shutdown()).map_err(|e| {
            io::Error::other(format!("{}: closing {what}'s input: {e}", self.transport))
        })?;
        drop(stdin);
        let status = self.runtime.block_on(child.wait()).map_err(transport_io)?;
        let _ = self.runtime.block_on(drain);
        let tail = self.runtime.block_on(stderr).unwrap_or_default();
        check_status(&self.transport, what, &status, &tail).map_err(io::Error::other)
    }
}

struct Spawned {
    child: RemoteChild,
    stderr: JoinHandle<Vec<u8>>,
}

/// The transport failed: its message, and the error itself as the source.
fn transport_failure(e: TransportError) -> HostError {
    HostError::caused_by(e.to_string(), e)
}

/// The same as an I/O error (whose message is the transport error's, and which carries it).
fn transport_io(e: TransportError) -> io::Error {
    io::Error::other(e)
}

/// The transport failure behind `error`, if its chain of sources has one: the host could not
/// be reached or used (connection refused, unreachable, timed out, authentication or host-key
/// checking failed, bad SSH settings) or the connection was lost. A command that ran on the
/// host and failed is not one. Frontends use it to report these failures as such (drp-py's
/// `drp.errors.TransportError`); messages are unchanged by it.
pub fn transport_cause<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e TransportError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(transport) = e.downcast_ref::<TransportError>() {
            return (!matches!(transport, TransportError::CommandFailed { .. }))
                .then_some(transport);
        }
        // `io::Error::source` skips the error an I/O error carries: look at that one first.
        next = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(carried) => Some(carried as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

fn check_status(
    host: &Arc<dyn Transport>,
    what: &str,
    status: &ExitStatus,
    stderr: &[u8],
) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{host}: {}",
            failure_message(what, &status.to_string(), stderr)
        ))
    }
}

fn quote(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

impl fmt::Display for TransportHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.transport, f)
    }
}

impl Host for TransportHost {
    fn path_kind(&self, path: &Path) -> Result<SourceKind, HostError> {
        let p = quote(path);
        let script = format!(
            "if [ -d {p} ]; then echo directory; elif [ -f {p} ]; then echo file; \
             elif [ -e {p} ]; then echo other; else echo missing; fi"
        );
        match self.run(&script)?.trim() {
            "directory" => Ok(SourceKind::Directory),
            "file" => Ok(SourceKind::File),
            "other" => Err(HostError::new(format!(
                "{}:{}: neither a directory nor a regular file",
                self.transport,
                path.display()
            ))),
            _ => Err(HostError::new(format!(
                "{}:{}: No such file or directory",
                self.transport,
                path.display()
            ))),
        }
    }

    fn read_source(
        &self,
        origin: &SourceOrigin,
        kind: SourceKind,
        out: &mut dyn Write,
    ) -> Result<(), HostError> {
        let (command, what) = match (origin, kind) {
            (SourceOrigin::Path(path), SourceKind::Directory) => {
                (format!("tar -cf - -C {} .", quote(path)), "tar")
            }
            (SourceOrigin::Path(path), _) => (format!("cat {}", quote(path)), "cat"),
            (SourceOrigin::Command(command), _) => (command.clone(), "the command"),
        };
        let Spawned { mut child, stderr } = self.spawn(&command)?;
        drop(child.stdin.take());
        let mut buf = vec![0u8; CHUNK];
        let copied: io::Result<()> = loop {
            match self.runtime.block_on(child.stdout.read(&mut buf)) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = out.write_all(&buf[..n]) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if copied.is_err() {
            // The pipeline stopped: stop the command too.
            let _ = self.runtime.block_on(child.kill());
        }
        let status = self
            .runtime
            .block_on(child.wait())
            .map_err(transport_failure)?;
        let tail = self.runtime.block_on(stderr).unwrap_or_default();
        copied.map_err(|e| format!("{}: reading the output of {what}: {e}", self.transport))?;
        check_status(&self.transport, what, &status, &tail).map_err(HostError::new)
    }

    fn prepare_restore(&self, target: &Path, names: &[&str]) -> Result<Staging, HostError> {
        let t = quote(target);
        // What earlier restores of this process left: theirs for sure, so removed whatever
        // their locks say (a lease of a cut-off session may still hold one on the host).
        let unfinished = self.restores().unfinished.clone();
        let discards: String = unfinished
            .iter()
            .enumerate()
            .map(|(i, staging)| {
                let d = quote(&staging.dir);
                let mut discard = format!(
                    "if [ -e {d} ]; then rm -rf -- {d} && echo discarded {i}; \
                     else echo gone {i}; fi; "
                );
                if staging.created_target {
                    discard.push_str(&format!("rmdir {} 2>/dev/null; ", quote(&staging.target)));
                }
                discard
            })
            .collect();
        let checks: String = names
            .iter()
            .map(|name| {
                let d = quote(&target.join(name));
                format!(
                    "if [ -e {d} ] || [ -L {d} ]; then echo {d} already exists\\; restore into \
                     another directory or move it away first >&2; exit 3; fi; "
                )
            })
            .collect();
        // Abandoned staging directories: see `Staging`. An empty, young one may be a restore's
        // in the instant before its lease locks it; a restore writes only once locked.
        let grace_minutes = EMPTY_STAGING_GRACE.as_secs().div_ceil(60);
        let script = format!(
            "{discards}{checks}created=0; if [ ! -d {t} ]; then mkdir -p {t} || exit 1; created=1; fi; \
             locked=0; if command -v flock >/dev/null 2>&1; then locked=1; \
             for d in {t}/{STAGING_PREFIX}*; do \
             if [ ! -d \"$d\" ] || [ -L \"$d\" ]; then continue; fi; \
             if [ -z \"$(ls -A \"$d\" 2>/dev/null)\" ] && \
             [ -z \"$(find \"$d\" -maxdepth 0 -mmin +{grace_minutes} 2>/dev/null)\" ]; then continue; fi; \
             flock -n \"$d\" rm -rf -- \"$d\" 2>/dev/null; \
             if [ ! -e \"$d\" ]; then echo \"removed $d\"; fi; \
             done; fi; \
             d=$(mktemp -d {t}/{STAGING_PREFIX}XXXXXX) || exit 1; \
             if [ $locked = 0 ]; then echo \"staging $created 0 $d\"; exit 0; fi; \
             exec flock \"$d\" sh -c 'echo \"staging $2 1 $1\"; exec >/dev/null; \
             IFS= read -r word; [ \"$word\" = done ] || rm -rf -- \"$1\"' lease \"$d\" \"$created\""
        );
        let Spawned { mut child, stderr } = self.spawn(&script)?;
        // Read up to the staging line, which the lease prints once it holds the lock (the
        // restore writes nothing before): the lease then keeps running, its outputs open (a
        // command whose outputs all ended counts as ended), silent but for errors.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let staging_line = loop {
            if let Some(line) = out
                .split(|&b| b == b'\n')
                .rev()
                .skip(1)
                .find(|l| l.starts_with(b"staging "))
            {
                break Some(String::from_utf8_lossy(line).into_owned());
            }
            match self.runtime.block_on(child.stdout.read(&mut buf)) {
                Ok(0) | Err(_) => break None,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        };
        for line in String::from_utf8_lossy(&out).lines() {
            let reported = |rest: &str| rest.parse::<usize>().ok().and_then(|i| unfinished.get(i));
            if let Some(staging) = line.strip_prefix("discarded ").and_then(reported) {
                tracing::warn!(
                    "{}: removed {}, the staging directory of a restore that was cut off from \
                     this host",
                    self.transport,
                    staging.dir.display()
                );
            }
            if let Some(dir) = line.strip_prefix("removed ") {
                tracing::warn!(
                    "{}: removed {dir}, the staging directory of an earlier restore that did \
                     not finish (nobody held its lock)",
                    self.transport
                );
            }
            let done = line
                .strip_prefix("discarded ")
                .or_else(|| line.strip_prefix("gone "))
                .and_then(reported);
            if let Some(done) = done {
                self.restores().unfinished.retain(|s| s != done);
            }
        }
        let Some(line) = staging_line else {
            let status = self
                .runtime
                .block_on(child.wait())
                .map_err(transport_failure)?;
            let tail = self.runtime.block_on(stderr).unwrap_or_default();
            let message = String::from_utf8_lossy(&tail).trim().to_string();
            return Err(HostError::new(if status.success() {
                format!(
                    "{}: unexpected answer {:?} while preparing the restore",
                    self.transport,
                    String::from_utf8_lossy(&out)
                )
            } else {
                format!("{}: {message} ({status})", self.transport)
            }));
        };
        let mut fields = line.splitn(4, ' ').skip(1);
        let (Some(created), Some(locked), Some(dir)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(HostError::new(format!(
                "{}: unexpected answer {line:?} while preparing the restore",
                self.transport
            )));
        };
        let dir = PathBuf::from(dir);
        if locked == "1" {
            self.restores().leases.insert(dir.clone(), child);
        } else {
            // No flock on the host: the script ended; no lease, and no cleanup either.
            let _ = self.runtime.block_on(child.wait());
        }
        Ok(Staging {
            target: target.to_path_buf(),
            dir,
            created_target: created == "1",
        })
    }

    fn write_restored(
        &self,
        kind: SourceKind,
        path: &Path,
        plain: &mut dyn Read,
    ) -> io::Result<()> {
        let p = quote(path);
        match kind {
            SourceKind::Directory => {
                self.feed(&format!("mkdir {p} && tar -xf - -C {p}"), "tar", plain)
            }
            SourceKind::File | SourceKind::Command => {
                self.feed(&format!("set -C && cat > {p}"), "cat", plain)
            }
        }
    }

    fn commit_restore(&self, staging: &Staging, names: &[&str]) -> Result<(), HostError> {
        let dir = quote(&staging.dir);
        let kept = quote(&staging.kept_dir());
        let moves: String = names
            .iter()
            .map(|name| {
                let from = quote(&staging.dir.join(name));
                let to = quote(&staging.target.join(name));
                format!(
                    "if [ -e {to} ] || [ -L {to} ]; then kept={dir}; mv {dir} {kept} && kept={kept}; \
                     echo {to} appeared during the restore\\; the restored data was left in \
                     \"$kept\" >&2; exit 3; fi; mv {from} {to} || exit 1; "
                )
            })
            .collect();
        let committed = self.run(&format!("{moves}rmdir {dir}")).map(drop);
        let released = self.release(&staging.dir);
        if let Err(e) = &committed
            && (transport_cause(e).is_some() || matches!(released, Released::ConnectionLost))
        {
            // Cut off while moving: what was not moved yet is left; the restore is over.
            self.leave_for_later(staging, e);
        }
        committed
    }

    fn discard_restore(&self, staging: &Staging) {
        if let Released::ConnectionLost = self.release(&staging.dir) {
            // The host did not answer a moment ago: no new connection just for this. The
            // lease, if its session ends on the host, removed the directory already.
            self.leave_for_later(staging, &"the connection to the host was lost");
            return;
        }
        let mut script = format!("rm -rf {}", quote(&staging.dir));
        if staging.created_target {
            script.push_str(&format!(
                "; rmdir {} 2>/dev/null; true",
                quote(&staging.target)
            ));
        }
        if let Err(e) = self.run(&script)
            && transport_cause(&e).is_some()
        {
            self.leave_for_later(staging, &e);
        }
    }

    fn pipe_to(&self, command: &str, plain: &mut dyn Read) -> io::Result<()> {
        self.feed(command, "the restore command", plain)
    }
}
