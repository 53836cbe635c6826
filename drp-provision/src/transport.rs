//! The [`Transport`] trait, the [`RemoteChild`] it spawns, and the helpers shared by the
//! implementations (`run`, shell-based `upload`/`download`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{ExitStatus, TransportError};

/// Buffer size used when copying streams (large enough for full-speed SSH transfers).
pub(crate) const COPY_BUF: usize = 64 * 1024;

/// A boxed byte stream read from a command or a file.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed byte sink written to a command.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A way to run commands on, and move files to and from, one host.
///
/// Implementations: [`LocalTransport`](crate::LocalTransport) (this machine) and
/// [`SshTransport`](crate::SshTransport). `Display` says where commands run:
/// `ssh://root@10.0.0.5:22` or `local`; every error message starts with it.
///
/// Commands are shell command lines, run by the user's shell (`sh -c COMMAND` semantics).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + fmt::Display {
    /// Starts `command` with streamed stdin, stdout and stderr.
    async fn spawn(&self, command: &str) -> Result<RemoteChild, TransportError>;

    /// Runs `command` to completion with an empty stdin, collecting (the tail of) its
    /// output with the default [`RunOptions`]; a non-zero exit is
    /// [`TransportError::CommandFailed`] with the tail of stderr.
    async fn run(&self, command: &str) -> Result<Output, TransportError> {
        run_with_options(self, command, &RunOptions::default()).await
    }

    /// Writes `data` to `path` atomically: into a temporary file in the same directory,
    /// which gets `mode` and is then renamed onto `path`. `path` is not touched when
    /// `data` fails or the transfer breaks (the temporary file is removed, best effort).
    /// Returns the number of bytes written.
    ///
    /// The default implementation streams through `spawn` and POSIX shell tools
    /// (`cat`, `chmod`, `mv`), so it works on any host with a POSIX shell.
    async fn upload(&self, path: &str, data: BoxRead, mode: u32) -> Result<u64, TransportError> {
        shell_upload(self, path, data, mode).await
    }

    /// Reads the file at `path` as a stream. A missing or unreadable file is an error of
    /// this call; a failure later on (e.g. a lost connection) is an error of the stream,
    /// never a clean end of file.
    ///
    /// The default implementation streams `cat -- PATH` through `spawn`.
    async fn download(&self, path: &str) -> Result<BoxRead, TransportError> {
        shell_download(self, path).await
    }
}

/// What a [`RemoteChild`] needs from its transport: waiting for the exit status and
/// killing the command. Public so that other transports (and wrappers) can build a
/// [`RemoteChild`] with [`RemoteChild::new`].
#[async_trait]
pub trait ChildControl: Send + Sync + fmt::Debug {
    /// Waits until the command has ended. May be called again after it returned.
    async fn wait(&mut self) -> Result<ExitStatus, TransportError>;
    /// Kills the command so that it does not run on and does not see a clean end of its
    /// stdin. See [`RemoteChild::kill`].
    async fn kill(&mut self) -> Result<(), TransportError>;
}

/// A command started by [`Transport::spawn`].
///
/// stdout and stderr must be read (or dropped) while the command runs: they are bounded
/// pipes, and a command whose output is not consumed blocks, as with local processes.
/// Dropping a `RemoteChild` (its control part) before the command has ended kills it.
pub struct RemoteChild {
    /// The command's stdin. Shutting it down or dropping it is end-of-file for the
    /// command. **Call [`RemoteChild::kill`] before dropping it** when the command must not
    /// see a clean end of its input (e.g. the data turned out bad).
    pub stdin: Option<BoxWrite>,
    /// The command's stdout.
    pub stdout: BoxRead,
    /// The command's stderr.
    pub stderr: BoxRead,
    control: Box<dyn ChildControl>,
}

impl fmt::Debug for RemoteChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteChild")
            .field("stdin", &self.stdin.as_ref().map(|_| ".."))
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl RemoteChild {
    /// Assembles a child from its streams and its control (for transport implementations).
    pub fn new(
        stdin: BoxWrite,
        stdout: BoxRead,
        stderr: BoxRead,
        control: Box<dyn ChildControl>,
    ) -> Self {
        RemoteChild {
            stdin: Some(stdin),
            stdout,
            stderr,
            control,
        }
    }

    /// Closes stdin (if still here: end-of-file for the command) and waits for the command
    /// to end. Keep reading stdout/stderr concurrently if the command may write a lot.
    pub async fn wait(&mut self) -> Result<ExitStatus, TransportError> {
        drop(self.stdin.take());
        self.control.wait().await
    }

    /// Kills the command, without giving it a clean end of its stdin:
    ///
    /// - local: `SIGKILL` to the command's process group (the shell and everything it
    ///   started; each spawned command gets its own process group);
    /// - SSH: a `signal` channel request for `KILL`, which OpenSSH's sshd delivers to the
    ///   command's process group, and no end-of-file is sent on the channel. If the server
    ///   refuses signals (forced commands, very old sshd, non-OpenSSH servers) the channel is
    ///   closed instead; the server then closes the command's stdin, which the command may
    ///   see as an end of file — treat data as final only after it was verified.
    ///
    /// Does nothing if the command has already ended. `wait` then reports the signal.
    pub async fn kill(&mut self) -> Result<(), TransportError> {
        self.control.kill().await
    }

    pub(crate) fn into_parts(self) -> (Option<BoxWrite>, BoxRead, BoxRead, Box<dyn ChildControl>) {
        (self.stdin, self.stdout, self.stderr, self.control)
    }
}

/// The result of [`Transport::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How the command ended (always success when returned by `run`).
    pub status: ExitStatus,
    /// stdout, or its last [`RunOptions::max_stdout`] bytes.
    pub stdout: Vec<u8>,
    /// stderr, or its last [`RunOptions::max_stderr`] bytes.
    pub stderr: Vec<u8>,
    /// Whether the beginning of stdout was dropped to respect the limit.
    pub stdout_truncated: bool,
    /// Whether the beginning of stderr was dropped to respect the limit.
    pub stderr_truncated: bool,
}

impl Output {
    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Options of [`TransportExt::run_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Keep at most this many bytes of stdout: the tail (default 16 MiB).
    pub max_stdout: usize,
    /// Keep at most this many bytes of stderr: the tail (default 1 MiB).
    pub max_stderr: usize,
    /// A non-zero exit is an error (default true). When false, `run_with` returns the
    /// `Output` whatever the status.
    pub check: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_stdout: 16 << 20,
            max_stderr: 1 << 20,
            check: true,
        }
    }
}

/// Convenience methods for every [`Transport`].
#[async_trait]
pub trait TransportExt: Transport {
    /// [`Transport::run`] with explicit [`RunOptions`].
    async fn run_with(
        &self,
        command: &str,
        options: &RunOptions,
    ) -> Result<Output, TransportError> {
        run_with_options(self, command, options).await
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}

/// How many bytes of stderr error messages carry.
pub(crate) const STDERR_TAIL: usize = 4096;

/// Keeps the last `limit` bytes of a stream.
#[derive(Debug)]
pub(crate) struct Tail {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Tail {
    pub(crate) fn new(limit: usize) -> Self {
        Tail {
            buf: Vec::new(),
            limit,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        // Compact only when twice over the limit: amortised O(1) per byte.
        if self.buf.len() > self.limit.saturating_mul(2).max(COPY_BUF) {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
            self.truncated = true;
        }
    }

    pub(crate) fn finish(mut self) -> (Vec<u8>, bool) {
        if self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
            self.truncated = true;
        }
        (self.buf, self.truncated)
    }

    /// Reads `reader` to its end into a tail buffer.
    pub(crate) async fn collect(
        mut reader: impl AsyncRead + Unpin,
        limit: usize,
    ) -> io::Result<(Vec<u8>, bool)> {
        let mut tail = Tail::new(limit);
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(tail.finish());
            }
            tail.push(&buf[..n]);
        }
    }
}

pub(crate) fn lossy_tail(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn run_with_options<T: Transport + ?Sized>(
    transport: &T,
    command: &str,
    options: &RunOptions,
) -> Result<Output, TransportError> {
    let child = transport.spawn(command).await?;
    let (stdin, stdout, stderr, mut control) = child.into_parts();
    drop(stdin);
    let (out, err) = tokio::join!(
        Tail::collect(stdout, options.max_stdout),
        Tail::collect(stderr, options.max_stderr)
    );
    let status = control.wait().await?;
    let (stdout, stdout_truncated) = out
        .map_err(|e| TransportError::io(transport, format!("reading stdout of {command:?}"), e))?;
    let (stderr, stderr_truncated) = err
        .map_err(|e| TransportError::io(transport, format!("reading stderr of {command:?}"), e))?;
    if options.check && !status.success() {
        let start = stderr.len().saturating_sub(STDERR_TAIL);
        return Err(TransportError::CommandFailed {
            host: transport.to_string(),
            command: command.to_string(),
            status,
            stderr_tail: lossy_tail(&stderr[start..]),
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
    })
}

/// Quotes `s` for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A unique name for a temporary file next to `path`: `DIR/.NAME.drp-tmp.PID.N.NANOS`.
pub(crate) fn temp_sibling(path: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    format!("{dir}.{name}.drp-tmp.{}.{n}.{nanos:x}", std::process::id())
}

enum CopyError {
    Source(io::Error),
    Sink(io::Error),
}

async fn copy_stream(
    source: &mut (dyn AsyncRead + Send + Unpin),
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = source.read(&mut buf).await.map_err(CopyError::Source)?;
        if n == 0 {
            sink.shutdown().await.map_err(CopyError::Sink)?;
            return Ok(total);
        }
        sink.write_all(&buf[..n]).await.map_err(CopyError::Sink)?;
        total += n as u64;
    }
}

async fn shell_upload<T: Transport + ?Sized>(
    transport: &T,
    path: &str,
    mut data: BoxRead,
    mode: u32,
) -> Result<u64, TransportError> {
    if path.is_empty() || path.ends_with('/') {
        return Err(TransportError::Config {
            host: transport.to_string(),
            message: format!("upload target {path:?} is not a file path"),
        });
    }
    let tmp = shell_quote(&temp_sibling(path));
    let target = shell_quote(path);
    // umask 077: the data is never readable by others, whatever `mode` ends up being.
    let command = format!(
        "umask 077 && cat > {tmp} && chmod {mode:o} {tmp} && mv -f {tmp} {target} || {{ rc=$?; rm -f {tmp}; exit $rc; }}"
    );
    let child = transport.spawn(&command).await?;
    let (stdin, stdout, stderr, mut control) = child.into_parts();
    let mut stdin = stdin.expect("a new child has its stdin");
    let control_ref = &mut control;
    let copy = async move {
        let result = copy_stream(&mut *data, &mut *stdin).await;
        if let Err(CopyError::Source(_)) = &result {
            // Kill before `stdin` is dropped: `cat` must not see a clean end of file,
            // or the truncated data would be renamed onto the target.
            let _ = control_ref.kill().await;
        }
        drop(stdin);
        result
    };
    let (copied, _out, err) = tokio::join!(
        copy,
        Tail::collect(stdout, 0),
        Tail::collect(stderr, STDERR_TAIL)
    );
    let status = control.wait().await;
    match copied {
        Err(CopyError::Source(e)) => {
            // Best effort: the killed command left its temporary file behind.
            let _ = transport.run(&format!("rm -f {tmp}")).await;
            Err(TransportError::io(
                transport,
                format!(
                    "reading the data to upload to {path:?} (upload aborted, target untouched)"
                ),
                e,
            ))
        }
        copied => {
            let status = status?;
            if !status.success() {
                let (stderr, _) = err.unwrap_or_default();
                return Err(TransportError::CommandFailed {
                    host: transport.to_string(),
                    command,
                    status,
                    stderr_tail: lossy_tail(&stderr),
                });
            }
            match copied {
                Ok(n) => Ok(n),
                Err(CopyError::Sink(e) | CopyError::Source(e)) => Err(TransportError::io(
                    transport,
                    format!("uploading to {path:?}"),
                    e,
                )),
            }
        }
    }
}

type FinishFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A stream that, at its end, checks that the producing command succeeded: a failure is
/// an error of the stream, not a clean end of file.
struct CheckedReader {
    inner: BoxRead,
    finish: Option<FinishFuture>,
    done: bool,
}

impl AsyncRead for CheckedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(finish) = this.finish.as_mut() {
            let result = ready!(finish.as_mut().poll(cx));
            this.finish = None;
            result?;
        }
        this.done = true;
        Poll::Ready(Ok(()))
    }
}

async fn shell_download<T: Transport + ?Sized>(
    transport: &T,
    path: &str,
) -> Result<BoxRead, TransportError> {
    let command = format!("exec cat -- {}", shell_quote(path));
    let child = transport.spawn(&command).await?;
    let (stdin, mut stdout, stderr, mut control) = child.into_parts();
    drop(stdin);
    let host = transport.to_string();
    let stderr_task = tokio::spawn(Tail::collect(stderr, STDERR_TAIL));
    let finish = {
        let host = host.clone();
        let command = command.clone();
        async move {
            let status = control.wait().await?;
            let (stderr, _) = stderr_task
                .await
                .map_err(|e| TransportError::io(&host, "collecting stderr", io::Error::other(e)))?
                .unwrap_or_default();
            if status.success() {
                Ok(())
            } else {
                Err(TransportError::CommandFailed {
                    host,
                    command,
                    status,
                    stderr_tail: lossy_tail(&stderr),
                })
            }
        }
    };
    // Read the first chunk now, so that a missing file is an error of `download` itself.
    let mut first = vec![0u8; COPY_BUF];
    let n = stdout
        .read(&mut first)
        .await
        .map_err(|e| TransportError::io(&host, format!("downloading {path:?}"), e))?;
    if n == 0 {
        finish.await?;
        return Ok(Box::new(tokio::io::empty()));
    }
    first.truncate(n);
    let finish: FinishFuture = Box::pin(async move { finish.await.map_err(io::Error::other) });
    Ok(Box::new(CheckedReader {
        inner: Box::new(std::io::Cursor::new(first).chain(stdout)),
        finish: Some(finish),
        done: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/tmp/a_b-1.txt"), "/tmp/a_b-1.txt");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn temp_names_are_siblings() {
        let t = temp_sibling("/srv/data/file.tar");
        assert!(t.starts_with("/srv/data/.file.tar.drp-tmp."), "{t}");
        let t = temp_sibling("file");
        assert!(t.starts_with(".file.drp-tmp."), "{t}");
        assert_ne!(temp_sibling("x"), temp_sibling("x"));
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::new(10);
        for i in 0..100_000u32 {
            tail.push(format!("{}", i % 10).as_bytes());
        }
        let (buf, truncated) = tail.finish();
        assert_eq!(buf, b"0123456789");
        assert!(truncated);
        let mut tail = Tail::new(10);
        tail.push(b"abc");
        assert_eq!(tail.finish(), (b"abc".to_vec(), false));
    }

    #[test]
    fn exit_status_display() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert_eq!(
            ExitStatus::Signal("KILL".into()).to_string(),
            "signal SIGKILL"
        );
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal("TERM".into()).success());
    }
}
