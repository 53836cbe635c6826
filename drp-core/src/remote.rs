//! Backups and restores on another machine: drp-backup's [`Host`] over drp-provision's
//! [`Transport`] — the one place where the two meet.
//!
//! Everything streams through the transport: a directory is read with `tar -cf - -C DIR .`
//! on the host and restored with `tar -x` there, a file with `cat`; no temporary copy is made
//! on either side. Restores are staged in a hidden directory inside the target on the host and
//! moved into place with `mv` only after every byte was checked, as locally.
//!
//! The [`Host`] methods are blocking (the backup pipeline calls them from its own threads);
//! they drive the async transport with the runtime handle captured at construction.
//!
//! When the transport itself fails (the host cannot be reached, authentication or host-key
//! checking fails, the connection is lost), the error keeps the [`TransportError`] as its
//! source, behind the same message; [`transport_cause`] finds it.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drp_backup::host::{STDERR_TAIL, Staging, failure_message};
use drp_backup::{Host, HostError, SourceKind, SourceOrigin};
use drp_provision::{
    ExitStatus, RemoteChild, RunOptions, Transport, TransportError, TransportExt, shell_quote,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Bytes moved per read or write between the pipeline and the transport.
const CHUNK: usize = 256 * 1024;

/// A [`Host`] reached through a [`Transport`] (SSH, or local for tests and symmetry).
#[derive(Debug, Clone)]
pub struct TransportHost {
    transport: Arc<dyn Transport>,
    runtime: Handle,
}

impl TransportHost {
    /// Must be called inside a tokio runtime, which then carries the transport's work.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            runtime: Handle::current(),
        }
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
        let script = format!(
            "{checks}created=0; if [ ! -d {t} ]; then mkdir -p {t} || exit 1; created=1; fi; \
             d=$(mktemp -d {t}/.drp-restore-XXXXXX) || exit 1; echo \"$created $d\""
        );
        let out = self.run(&script)?;
        let (created, dir) = out.trim().split_once(' ').ok_or_else(|| {
            HostError::new(format!(
                "{}: unexpected answer {out:?} while preparing the restore",
                self.transport
            ))
        })?;
        Ok(Staging {
            target: target.to_path_buf(),
            dir: PathBuf::from(dir),
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
        let moves: String = names
            .iter()
            .map(|name| {
                let from = quote(&staging.dir.join(name));
                let to = quote(&staging.target.join(name));
                format!(
                    "if [ -e {to} ] || [ -L {to} ]; then echo {to} appeared during the restore >&2; \
                     exit 3; fi; mv {from} {to} || exit 1; "
                )
            })
            .collect();
        self.run(&format!("{moves}rmdir {}", quote(&staging.dir)))
            .map(drop)
    }

    fn discard_restore(&self, staging: &Staging) {
        let mut script = format!("rm -rf {}", quote(&staging.dir));
        if staging.created_target {
            script.push_str(&format!(
                "; rmdir {} 2>/dev/null; true",
                quote(&staging.target)
            ));
        }
        let _ = self.run(&script);
    }

    fn pipe_to(&self, command: &str, plain: &mut dyn Read) -> io::Result<()> {
        self.feed(command, "the restore command", plain)
    }
}
