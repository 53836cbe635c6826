//! [`LocalTransport`]: commands and files on this machine.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::error::{ExitStatus, TransportError};
use crate::transport::{BoxRead, COPY_BUF, ChildControl, RemoteChild, Transport, temp_sibling};

/// This machine: commands run with `sh -c`, files are read and written directly.
///
/// The embedded default transport (no SSH involved). Relative paths (in commands, uploads
/// and downloads) are relative to the process's current directory, or to the transport's
/// own directory when made with [`LocalTransport::in_dir`].
#[derive(Debug, Clone, Default)]
pub struct LocalTransport {
    dir: Option<PathBuf>,
}

impl LocalTransport {
    /// The local transport, in the process's current directory.
    pub fn new() -> Self {
        LocalTransport::default()
    }

    /// The local transport working in `dir`: commands start there, and relative upload
    /// and download paths resolve against it.
    ///
    /// This lets one machine stand in for several hosts without root or SSH (a drill
    /// demo, tests): each "host" gets its own directory, so the same relative paths in a
    /// plan land in a different place per host. It is not isolation: commands can still
    /// reach anything on the machine. The directory must exist when commands run; it is
    /// used as given (not canonicalised). `Display` is `local:DIR`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        LocalTransport {
            dir: Some(dir.into()),
        }
    }

    /// The directory given to [`LocalTransport::in_dir`], if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// `path` as this transport sees it: relative paths are taken from its directory.
    fn resolve(&self, path: &str) -> PathBuf {
        match &self.dir {
            Some(dir) if Path::new(path).is_relative() => dir.join(path),
            _ => PathBuf::from(path),
        }
    }

    fn io_err(&self, context: impl Into<String>, e: std::io::Error) -> TransportError {
        TransportError::io(self, context, e)
    }
}

impl fmt::Display for LocalTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dir {
            Some(dir) => write!(f, "local:{}", dir.display()),
            None => f.write_str("local"),
        }
    }
}

/// Converts a local exit status; signals are named like SSH names them (`KILL`).
fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    if let Some(code) = status.code() {
        return ExitStatus::Code(code);
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(signal) => ExitStatus::Signal(signal.as_str().trim_start_matches("SIG").to_string()),
            Err(_) => ExitStatus::Signal(sig.to_string()),
        },
        None => ExitStatus::Code(-1),
    }
}

/// Waits for and kills a local process group.
#[derive(Debug)]
struct LocalControl {
    /// The transport's `Display`, for error messages.
    host: String,
    child: Child,
    /// The process group (= the shell's pid), while the shell may still be running.
    pgid: Option<Pid>,
    status: Option<ExitStatus>,
}

impl LocalControl {
    fn kill_group(&mut self) -> std::io::Result<()> {
        // `child.id()` is None once the shell has been reaped: its pid (= the group id)
        // may then be reused, so do not signal it.
        if let (Some(pgid), Some(_)) = (self.pgid, self.child.id()) {
            match killpg(pgid, Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ChildControl for LocalControl {
    async fn wait(&mut self) -> Result<ExitStatus, TransportError> {
        if let Some(status) = &self.status {
            return Ok(status.clone());
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| TransportError::io(&self.host, "waiting for a command", e))?;
        let status = exit_status(status);
        self.status = Some(status.clone());
        Ok(status)
    }

    async fn kill(&mut self) -> Result<(), TransportError> {
        if self.status.is_some() {
            return Ok(());
        }
        self.kill_group()
            .map_err(|e| TransportError::io(&self.host, "killing a command's process group", e))
    }
}

impl Drop for LocalControl {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.kill_group();
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn spawn(&self, command: &str) -> Result<RemoteChild, TransportError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that `kill` reaches everything the shell started.
            .process_group(0);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let place = match &self.dir {
                Some(dir) => format!(" in {}", dir.display()),
                None => String::new(),
            };
            self.io_err(format!("starting `sh -c {command:?}`{place}"), e)
        })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        Ok(RemoteChild::new(
            Box::new(stdin),
            Box::new(stdout),
            Box::new(stderr),
            Box::new(LocalControl {
                host: self.to_string(),
                child,
                pgid,
                status: None,
            }),
        ))
    }

    async fn upload(
        &self,
        path: &str,
        mut data: BoxRead,
        mode: u32,
    ) -> Result<u64, TransportError> {
        let target = self.resolve(path);
        let path = target.to_string_lossy();
        let tmp = temp_sibling(&path);
        let io_err = |context: String, e| self.io_err(context, e);
        let result = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .await
                .map_err(|e| io_err(format!("creating {tmp:?}"), e))?;
            let mut buf = vec![0u8; COPY_BUF];
            let mut total = 0u64;
            loop {
                let n = data.read(&mut buf).await.map_err(|e| {
                    io_err(
                        format!("reading the data to upload to {path:?} (upload aborted, target untouched)"),
                        e,
                    )
                })?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n])
                    .await
                    .map_err(|e| io_err(format!("writing {tmp:?}"), e))?;
                total += n as u64;
            }
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .await
                .map_err(|e| io_err(format!("setting the mode of {tmp:?}"), e))?;
            file.sync_all()
                .await
                .map_err(|e| io_err(format!("syncing {tmp:?}"), e))?;
            drop(file);
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(|e| io_err(format!("renaming {tmp:?} to {path:?}"), e))?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn download(&self, path: &str) -> Result<BoxRead, TransportError> {
        let file = tokio::fs::File::open(self.resolve(path))
            .await
            .map_err(|e| self.io_err(format!("opening {path:?}"), e))?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            COPY_BUF, file,
        )))
    }
}
