//! The thread that drives one SSH connection.
//!
//! # Why one thread owns the session
//!
//! libssh2 is blocking, and `ssh2::Session` wraps it in a mutex that every call (on the
//! session or on any of its channels) takes. With one thread per stream in blocking mode,
//! a thread blocked in `read` on a command's stdout holds that mutex until data arrives,
//! so the thread that wants to write the command's stdin cannot — and if the command only
//! produces output after it got its input, both wait forever. Blocking calls also cannot
//! be bounded or interrupted.
//!
//! So each connection gets exactly one thread (never the async runtime), which owns the
//! session and all its channels, in libssh2's **non-blocking** mode. It loops: start the
//! requested commands, move data between every channel and its bounded queues (tokio mpsc
//! channels of chunks up to 64 KiB, 16 deep: about 1 MiB per stream, plus libssh2's own
//! receive window of 2 MiB per channel), send keepalives; and when nothing can progress,
//! sleeps in `poll(2)` on the socket (in the directions libssh2 says it is blocked on) and
//! on an eventfd that the async side signals whenever it adds or consumes a chunk. No lock
//! is ever held while waiting, so nothing can deadlock; back-pressure is the queues.
//!
//! The async side talks to the thread through a request queue (start a command, stop
//! sending stdin, close a channel). When the connection fails, every stream ends with an
//! error (a reader sees an error, never a clean end of file) and every `wait` fails.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use ssh2::{BlockDirections, Channel, ErrorCode, Session};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::PollSender;

use super::connect::ssh_error;
use crate::error::{ExitStatus, TransportError};
use crate::transport::{ChildControl, RemoteChild};

/// Size of the chunks moved between the pump thread and the async side.
const CHUNK: usize = 64 * 1024;
/// Depth of each stream's queue, in chunks.
const QUEUE: usize = 16;
/// The first line a spawned command writes to stderr: its process (group) id, used by
/// `kill`. It is removed from the stderr stream.
const PID_MARKER: &[u8] = b"drp-pid:";
/// How long `kill` waits for the process id before falling back to closing the channel.
const PID_WAIT: Duration = Duration::from_secs(5);

const LIBSSH2_ERROR_EAGAIN: i32 = -37;
const SOCKET_ERRORS: [i32; 4] = [-7, -13, -43, -44]; // SEND, DISCONNECT, RECV, (unused)

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

fn is_io_eagain(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn is_socket_error(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(code) if SOCKET_ERRORS.contains(&code))
}

/// The libssh2 error behind an `io::Error` from `ssh2`'s `Read`/`Write` (which drop the code).
fn session_error(session: &Session, e: &io::Error) -> ssh2::Error {
    ssh2::Error::last_session_error(session)
        .unwrap_or_else(|| ssh2::Error::new(ErrorCode::Session(-1), "I/O error on the channel"))
        .tap(e)
}

trait Tap {
    fn tap(self, e: &io::Error) -> Self;
}

impl Tap for ssh2::Error {
    fn tap(self, e: &io::Error) -> Self {
        tracing::debug!(error = %e, libssh2 = %self, "channel I/O error");
        self
    }
}

fn lost(host: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("{host}: connection lost while {what}"),
    )
}

/// Wakes the pump thread.
#[derive(Debug)]
struct Waker(EventFd);

impl Waker {
    fn wake(&self) {
        // Fails only if the counter would overflow: then a wake-up is pending anyway.
        let _ = self.0.write(1);
    }
}

enum Chunk {
    Data(Bytes),
    Eof,
}

enum Request {
    Open(Box<OpenRequest>),
    /// Stop writing stdin and never send end-of-file (the command is being killed).
    SuppressEof(u64),
    /// Close the channel (fallback of kill when the process id is unknown).
    Close(u64),
}

struct OpenRequest {
    id: u64,
    command: String,
    stdin: mpsc::Receiver<Bytes>,
    stdout: mpsc::Sender<Chunk>,
    stderr: mpsc::Sender<Chunk>,
    pid: Option<watch::Sender<Option<u32>>>,
    exit: oneshot::Sender<Result<ExitStatus, TransportError>>,
    reply: oneshot::Sender<Result<(), TransportError>>,
}

/// The async side's handle on a connection (its pump thread).
pub(crate) struct Connection {
    name: Arc<str>,
    requests: std_mpsc::Sender<Request>,
    waker: Arc<Waker>,
    alive: Arc<AtomicBool>,
    next_id: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("alive", &self.alive.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Connection {
    /// Starts the pump thread for an authenticated, non-blocking session.
    pub(crate) fn start(
        (session, socket): (Session, TcpStream),
        name: Arc<str>,
        keepalive: Duration,
    ) -> Result<Self, TransportError> {
        let eventfd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| TransportError::io(&name, "creating an eventfd", e.into()))?;
        let waker = Arc::new(Waker(eventfd));
        let (requests, receiver) = std_mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let pump = Pump {
            session,
            socket,
            waker: waker.clone(),
            requests: receiver,
            requests_closed: false,
            name: name.clone(),
            alive: alive.clone(),
            keepalive: !keepalive.is_zero(),
            opening: VecDeque::new(),
            channels: Vec::new(),
            buf: vec![0u8; CHUNK],
        };
        std::thread::Builder::new()
            .name(format!("drp-ssh {name}"))
            .spawn(move || pump.run())
            .map_err(|e| TransportError::io(&name, "starting the SSH thread", e))?;
        Ok(Connection {
            name,
            requests,
            waker,
            alive,
            next_id: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    fn send(&self, request: Request) -> Result<(), TransportError> {
        self.requests.send(request).map_err(|_| {
            TransportError::io(&self.name, "sending a request", lost(&self.name, "idle"))
        })?;
        self.waker.wake();
        Ok(())
    }

    /// Starts `command` as is (no process-id marker): used for `kill` itself.
    async fn exec(
        self: &Arc<Self>,
        command: String,
        with_pid: bool,
    ) -> Result<RemoteChild, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stdin_tx, stdin_rx) = mpsc::channel(QUEUE);
        let (stdout_tx, stdout_rx) = mpsc::channel(QUEUE);
        let (stderr_tx, stderr_rx) = mpsc::channel(QUEUE);
        let (exit_tx, exit_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let (pid_tx, pid_rx) = if with_pid {
            let (tx, rx) = watch::channel(None);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let wire_command = if with_pid {
            // sshd runs the command as `$SHELL -c COMMAND` in a new session, so `$$` is the
            // id of the process group of everything the command starts.
            format!("printf 'drp-pid:%s\\n' \"$$\" >&2\n{command}")
        } else {
            command.clone()
        };
        self.send(Request::Open(Box::new(OpenRequest {
            id,
            command: wire_command,
            stdin: stdin_rx,
            stdout: stdout_tx,
            stderr: stderr_tx,
            pid: pid_tx,
            exit: exit_tx,
            reply: reply_tx,
        })))?;
        reply_rx.await.map_err(|_| {
            TransportError::io(
                &self.name,
                format!("starting {command:?}"),
                lost(&self.name, "starting a command"),
            )
        })??;
        let host: Arc<str> = self.name.clone();
        Ok(RemoteChild::new(
            Box::new(ChannelWriter {
                tx: Some(PollSender::new(stdin_tx)),
                waker: self.waker.clone(),
                host: host.clone(),
            }),
            Box::new(ChannelReader::new(
                stdout_rx,
                self.waker.clone(),
                host.clone(),
                "stdout",
            )),
            Box::new(ChannelReader::new(
                stderr_rx,
                self.waker.clone(),
                host,
                "stderr",
            )),
            Box::new(SshControl {
                id,
                connection: self.clone(),
                command,
                exit: Some(exit_rx),
                status: None,
                pid: pid_rx,
            }),
        ))
    }

    pub(crate) async fn spawn(
        self: &Arc<Self>,
        command: &str,
    ) -> Result<RemoteChild, TransportError> {
        self.exec(command.to_string(), true).await
    }
}

/// A command's stdout or stderr, fed by the pump thread.
struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    eof: bool,
    waker: Arc<Waker>,
    host: Arc<str>,
    what: &'static str,
}

impl ChannelReader {
    fn new(
        rx: mpsc::Receiver<Chunk>,
        waker: Arc<Waker>,
        host: Arc<str>,
        what: &'static str,
    ) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            eof: false,
            waker,
            host,
            what,
        }
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.current.is_empty() {
                let n = this.current.len().min(buf.remaining());
                buf.put_slice(&this.current[..n]);
                this.current.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(Chunk::Data(data)) => {
                    this.current = data;
                    // A slot is free again: the pump may have been waiting for it.
                    this.waker.wake();
                }
                Some(Chunk::Eof) => this.eof = true,
                None => {
                    return Poll::Ready(Err(lost(
                        &this.host,
                        &format!("reading the command's {}", this.what),
                    )));
                }
            }
        }
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        self.waker.wake();
    }
}

/// A command's stdin, drained by the pump thread.
struct ChannelWriter {
    tx: Option<PollSender<Bytes>>,
    waker: Arc<Waker>,
    host: Arc<str>,
}

impl ChannelWriter {
    fn closed(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!(
                "{}: the remote command's stdin is closed (the command ended or was killed)",
                self.host
            ),
        )
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(self.closed()));
        };
        if ready!(tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(self.closed()));
        }
        let n = buf.len().min(CHUNK);
        if tx.send_item(Bytes::copy_from_slice(&buf[..n])).is_err() {
            return Poll::Ready(Err(self.closed()));
        }
        self.waker.wake();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Dropping the sender is end-of-file, once the pump has written what is queued.
        self.tx = None;
        self.waker.wake();
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        self.tx = None;
        self.waker.wake();
    }
}

/// Waits for and kills a command on an SSH connection.
struct SshControl {
    id: u64,
    connection: Arc<Connection>,
    command: String,
    exit: Option<oneshot::Receiver<Result<ExitStatus, TransportError>>>,
    status: Option<ExitStatus>,
    pid: Option<watch::Receiver<Option<u32>>>,
}

impl fmt::Debug for SshControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshControl")
            .field("host", &self.connection.name)
            .field("command", &self.command)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl SshControl {
    fn finished(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match self.exit.as_mut() {
            None => true,
            Some(rx) => {
                !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) && {
                    // Consumed a result: keep it if it was a status.
                    true
                }
            }
        }
    }

    async fn process_group(&mut self) -> Option<u32> {
        let rx = self.pid.as_mut()?;
        let wait = rx.wait_for(|pid| pid.is_some());
        match tokio::time::timeout(PID_WAIT, wait).await {
            Ok(Ok(pid)) => *pid,
            _ => None,
        }
    }
}

#[async_trait]
impl ChildControl for SshControl {
    async fn wait(&mut self) -> Result<ExitStatus, TransportError> {
        if let Some(status) = &self.status {
            return Ok(status.clone());
        }
        let name = &self.connection.name;
        let rx = self.exit.as_mut().ok_or_else(|| {
            TransportError::io(
                name,
                format!("waiting for {:?}", self.command),
                lost(name, "waiting"),
            )
        })?;
        let result = rx.await;
        self.exit = None;
        match result {
            Ok(Ok(status)) => {
                self.status = Some(status.clone());
                Ok(status)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TransportError::io(
                name,
                format!("waiting for {:?}", self.command),
                lost(name, "waiting for the command"),
            )),
        }
    }

    /// Stops feeding stdin (and never sends end-of-file), then kills the command's process
    /// group with `kill -KILL -PGID` run over a second channel. libssh2 cannot send
    /// `signal` channel requests (and `ssh2` does not expose `libssh2_channel_signal_ex`),
    /// hence the process id that every command reports first on stderr.
    async fn kill(&mut self) -> Result<(), TransportError> {
        if self.status.is_some() || self.exit.is_none() {
            return Ok(());
        }
        self.connection.send(Request::SuppressEof(self.id))?;
        match self.process_group().await {
            Some(pgid) => {
                let mut killer = self
                    .connection
                    .exec(
                        format!("kill -KILL -{pgid} 2>/dev/null || kill -9 -{pgid}"),
                        false,
                    )
                    .await?;
                // Ignore the result: the group may have ended on its own meanwhile.
                let _ = killer.wait().await;
                Ok(())
            }
            None => {
                tracing::warn!(host = %self.connection.name, command = %self.command,
                    "process id of the remote command unknown: closing its channel instead of killing it");
                self.connection.send(Request::Close(self.id))
            }
        }
    }
}

impl Drop for SshControl {
    fn drop(&mut self) {
        if self.finished() {
            return;
        }
        // Not waited for: kill it (needs the runtime for the second channel).
        let _ = self.connection.send(Request::SuppressEof(self.id));
        let pid = self.pid.as_ref().and_then(|rx| *rx.borrow());
        match (pid, tokio::runtime::Handle::try_current()) {
            (Some(pgid), Ok(handle)) => {
                let connection = self.connection.clone();
                handle.spawn(async move {
                    if let Ok(mut killer) = connection
                        .exec(
                            format!("kill -KILL -{pgid} 2>/dev/null || kill -9 -{pgid}"),
                            false,
                        )
                        .await
                    {
                        let _ = killer.wait().await;
                    }
                });
            }
            _ => {
                let _ = self.connection.send(Request::Close(self.id));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pump thread.

/// What the loop waits for when nothing progressed.
#[derive(Default)]
struct Want {
    read: bool,
    write: bool,
    /// Retry soon even without an event (libssh2 returned "nothing" without EAGAIN).
    soon: bool,
    timeout: Option<Duration>,
}

impl Want {
    fn blocked(&mut self, session: &Session) {
        match session.block_directions() {
            BlockDirections::Inbound => self.read = true,
            BlockDirections::Outbound => self.write = true,
            BlockDirections::Both => {
                self.read = true;
                self.write = true;
            }
            // Unknown: assume we wait for the server.
            BlockDirections::None => self.read = true,
        }
    }
}

/// One output stream of a channel.
struct Output {
    stream_id: i32,
    tx: Option<mpsc::Sender<Chunk>>,
    pending: Option<Chunk>,
    /// libssh2 reported the end of this stream.
    eof: bool,
    eof_queued: bool,
    /// For stderr: the beginning, until the process-id line has been seen.
    marker: Option<Vec<u8>>,
    pid: Option<watch::Sender<Option<u32>>>,
}

impl Output {
    fn new(stream_id: i32, tx: mpsc::Sender<Chunk>) -> Self {
        Output {
            stream_id,
            tx: Some(tx),
            pending: None,
            eof: false,
            eof_queued: false,
            marker: None,
            pid: None,
        }
    }

    /// All of the stream has been handed to the async side (or it is gone).
    fn delivered(&self) -> bool {
        self.eof_queued && self.pending.is_none()
    }

    /// Hands `pending` over. Returns (progress, blocked on the consumer).
    fn deliver(&mut self) -> (bool, bool) {
        let Some(chunk) = self.pending.take() else {
            return (false, false);
        };
        let Some(tx) = self.tx.as_ref() else {
            return (true, false); // nobody reads this stream any more: discard
        };
        match tx.try_send(chunk) {
            Ok(()) => (true, false),
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                self.pending = Some(chunk);
                (false, true)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.tx = None;
                (true, false)
            }
        }
    }

    /// Strips the process-id line from the start of stderr. Returns the data to pass on.
    fn strip_marker(&mut self, data: &[u8], at_eof: bool) -> Option<Bytes> {
        let Some(head) = self.marker.as_mut() else {
            return (!data.is_empty()).then(|| Bytes::copy_from_slice(data));
        };
        head.extend_from_slice(data);
        let prefix_ok = head.len() < PID_MARKER.len() && PID_MARKER.starts_with(head)
            || head.starts_with(PID_MARKER);
        if let Some(newline) = head.iter().position(|&b| b == b'\n')
            && prefix_ok
        {
            let pid = std::str::from_utf8(&head[PID_MARKER.len()..newline])
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let (Some(pid), Some(tx)) = (pid, self.pid.take()) {
                let _ = tx.send(Some(pid));
            }
            let rest = Bytes::copy_from_slice(&head[newline + 1..]);
            self.marker = None;
            self.pid = None;
            return (!rest.is_empty()).then_some(rest);
        }
        if !prefix_ok || head.len() > 64 || at_eof {
            // Not our line (a shell that is not POSIX?): pass everything through; `kill`
            // will fall back to closing the channel.
            let all = Bytes::from(self.marker.take().unwrap_or_default());
            self.pid = None;
            return (!all.is_empty()).then_some(all);
        }
        None
    }

    /// Moves data from libssh2 to the queue until blocked. Returns progress.
    fn pump(
        &mut self,
        session: &Session,
        channel: &mut Channel,
        buf: &mut [u8],
        want: &mut Want,
    ) -> Result<bool, ssh2::Error> {
        let mut progress = false;
        loop {
            let (moved, blocked) = self.deliver();
            progress |= moved;
            if blocked {
                return Ok(progress);
            }
            if self.eof {
                if !self.eof_queued {
                    if let Some(rest) = self.strip_marker(&[], true) {
                        self.pending = Some(Chunk::Data(rest));
                        continue;
                    }
                    self.eof_queued = true;
                    self.pending = Some(Chunk::Eof);
                    continue;
                }
                return Ok(progress);
            }
            match channel.stream(self.stream_id).read(buf) {
                Ok(0) => {
                    // 0 also comes back when libssh2 only processed other packets (a key
                    // re-exchange, the other stream's data): it is the end only if the
                    // channel says so.
                    if channel.eof() {
                        self.eof = true;
                        progress = true;
                    } else {
                        want.read = true;
                        want.soon = true;
                        return Ok(progress);
                    }
                }
                Ok(n) => {
                    progress = true;
                    if let Some(data) = self.strip_marker(&buf[..n], false) {
                        self.pending = Some(Chunk::Data(data));
                    }
                }
                Err(e) if is_io_eagain(&e) => {
                    want.read = true;
                    return Ok(progress);
                }
                Err(e) => return Err(session_error(session, &e)),
            }
        }
    }
}

#[derive(PartialEq, Eq, Debug)]
enum Phase {
    Running,
    Closing,
    Closed,
}

struct Chan {
    id: u64,
    channel: Channel,
    stdin: Option<mpsc::Receiver<Bytes>>,
    stdin_pending: Option<Bytes>,
    /// Send end-of-file once stdin is drained (false once killed).
    send_eof: bool,
    eof_sent: bool,
    outputs: [Output; 2],
    phase: Phase,
    exit: Option<oneshot::Sender<Result<ExitStatus, TransportError>>>,
}

impl Chan {
    fn step_stdin(&mut self, session: &Session, want: &mut Want) -> Result<bool, ssh2::Error> {
        let mut progress = false;
        loop {
            if self.stdin_pending.is_none() {
                let Some(rx) = self.stdin.as_mut() else { break };
                match rx.try_recv() {
                    Ok(first) => {
                        // Coalesce small writes into bigger SSH packets.
                        if first.len() >= CHUNK / 2 {
                            self.stdin_pending = Some(first);
                        } else {
                            let mut joined = BytesMut::from(&first[..]);
                            while joined.len() < CHUNK {
                                match rx.try_recv() {
                                    Ok(more) => joined.extend_from_slice(&more),
                                    Err(_) => break,
                                }
                            }
                            self.stdin_pending = Some(joined.freeze());
                        }
                        progress = true;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.stdin = None;
                        progress = true;
                        break;
                    }
                }
            }
            let Some(data) = self.stdin_pending.as_mut() else {
                break;
            };
            match self.channel.write(data) {
                Ok(n) => {
                    data.advance(n);
                    if data.is_empty() {
                        self.stdin_pending = None;
                    }
                    progress = true;
                }
                Err(e) if is_io_eagain(&e) => {
                    want.blocked(session);
                    return Ok(progress);
                }
                Err(e) => {
                    let e = session_error(session, &e);
                    if is_socket_error(&e) {
                        return Err(e);
                    }
                    // The channel no longer takes data (the command ended): the writer
                    // sees a broken pipe.
                    self.stdin = None;
                    self.stdin_pending = None;
                    self.send_eof = false;
                    return Ok(true);
                }
            }
        }
        if self.stdin.is_none() && self.stdin_pending.is_none() && self.send_eof && !self.eof_sent {
            match self.channel.send_eof() {
                Ok(()) => {
                    self.eof_sent = true;
                    progress = true;
                }
                Err(e) if is_eagain(&e) => want.blocked(session),
                Err(e) if is_socket_error(&e) => return Err(e),
                Err(_) => self.eof_sent = true,
            }
        }
        Ok(progress)
    }

    fn step(
        &mut self,
        session: &Session,
        buf: &mut [u8],
        want: &mut Want,
    ) -> Result<bool, ssh2::Error> {
        let mut progress = false;
        if self.phase == Phase::Running {
            progress |= self.step_stdin(session, want)?;
        }
        for output in &mut self.outputs {
            progress |= output.pump(session, &mut self.channel, buf, want)?;
        }
        if self.phase == Phase::Running && self.outputs.iter().all(|o| o.eof) {
            self.phase = Phase::Closing;
            self.stdin = None;
            self.stdin_pending = None;
            progress = true;
        }
        if self.phase == Phase::Closing {
            match self
                .channel
                .close()
                .and_then(|()| self.channel.wait_close())
            {
                Ok(()) => {
                    self.phase = Phase::Closed;
                    progress = true;
                    let status = match self.channel.exit_signal() {
                        Ok(signal) if signal.exit_signal.is_some() => {
                            ExitStatus::Signal(signal.exit_signal.unwrap_or_default())
                        }
                        _ => ExitStatus::Code(self.channel.exit_status().unwrap_or(-1)),
                    };
                    if let Some(exit) = self.exit.take() {
                        let _ = exit.send(Ok(status));
                    }
                }
                Err(e) if is_eagain(&e) => want.blocked(session),
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    fn done(&self) -> bool {
        self.phase == Phase::Closed && self.outputs.iter().all(Output::delivered)
    }
}

struct Opening {
    request: Box<OpenRequest>,
    channel: Option<Channel>,
}

struct Pump {
    session: Session,
    socket: TcpStream,
    waker: Arc<Waker>,
    requests: std_mpsc::Receiver<Request>,
    requests_closed: bool,
    name: Arc<str>,
    alive: Arc<AtomicBool>,
    keepalive: bool,
    opening: VecDeque<Opening>,
    channels: Vec<Chan>,
    buf: Vec<u8>,
}

impl Pump {
    fn run(mut self) {
        let result = self.run_loop();
        self.alive.store(false, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::warn!(host = %self.name, error = %e, "SSH connection failed");
            let name = self.name.to_string();
            let message = e.to_string();
            for opening in self.opening.drain(..) {
                let _ = opening.request.reply.send(Err(TransportError::Protocol {
                    host: name.clone(),
                    context: format!("starting {:?}", opening.request.command),
                    message: message.clone(),
                }));
            }
            for mut chan in self.channels.drain(..) {
                if let Some(exit) = chan.exit.take() {
                    let _ = exit.send(Err(TransportError::io(
                        &name,
                        "waiting for a command",
                        lost(&name, &format!("running a command ({message})")),
                    )));
                }
                // Dropping the senders without an end-of-file marker: readers get an error.
            }
        }
        // Requests that raced with the end of the thread get "connection lost" when their
        // reply sender is dropped here.
    }

    fn fatal(&self, context: &str, e: &ssh2::Error) -> TransportError {
        ssh_error(&self.name, context, e, Duration::ZERO)
    }

    fn run_loop(&mut self) -> Result<(), TransportError> {
        loop {
            let mut want = Want::default();
            let mut progress = false;
            loop {
                match self.requests.try_recv() {
                    Ok(request) => {
                        progress = true;
                        self.handle(request);
                    }
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.requests_closed = true;
                        break;
                    }
                }
            }
            if self.requests_closed && self.channels.is_empty() && self.opening.is_empty() {
                let _ = self.session.disconnect(None, "done", None);
                return Ok(());
            }
            progress |= self.step_open(&mut want)?;
            for chan in &mut self.channels {
                progress |= chan
                    .step(&self.session, &mut self.buf, &mut want)
                    .map_err(|e| ssh_error(&self.name, "moving data", &e, Duration::ZERO))?;
            }
            self.channels.retain(|c| !c.done());
            if self.keepalive {
                match self.session.keepalive_send() {
                    Ok(secs) => want.timeout = Some(Duration::from_secs(u64::from(secs.max(1)))),
                    Err(e) if is_eagain(&e) => want.blocked(&self.session),
                    Err(e) => return Err(self.fatal("sending a keepalive", &e)),
                }
            }
            if !progress {
                tracing::trace!(
                    channels = self.channels.len(),
                    opening = self.opening.len(),
                    read = want.read,
                    write = want.write,
                    "nothing to do: waiting"
                );
                self.sleep(&want)?;
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Open(request) => self.opening.push_back(Opening {
                request,
                channel: None,
            }),
            Request::SuppressEof(id) => {
                if let Some(chan) = self.channels.iter_mut().find(|c| c.id == id) {
                    chan.send_eof = false;
                    chan.stdin = None;
                    chan.stdin_pending = None;
                }
            }
            Request::Close(id) => {
                if let Some(chan) = self.channels.iter_mut().find(|c| c.id == id)
                    && chan.phase == Phase::Running
                {
                    chan.phase = Phase::Closing;
                    chan.stdin = None;
                    chan.stdin_pending = None;
                }
            }
        }
    }

    /// Opens the channel of the first waiting request and starts its command.
    fn step_open(&mut self, want: &mut Want) -> Result<bool, TransportError> {
        let Some(opening) = self.opening.front_mut() else {
            return Ok(false);
        };
        if opening.channel.is_none() {
            // libssh2 keeps the state of one pending channel open per session: retry the
            // same call until it completes, one request at a time.
            match self.session.channel_session() {
                Ok(channel) => opening.channel = Some(channel),
                Err(e) if is_eagain(&e) => {
                    want.blocked(&self.session);
                    return Ok(false);
                }
                Err(e) if is_socket_error(&e) => return Err(self.fatal("opening a channel", &e)),
                Err(e) => {
                    let opening = self.opening.pop_front().expect("front exists");
                    let _ = opening.request.reply.send(Err(TransportError::Protocol {
                        host: self.name.to_string(),
                        context: "opening a channel (sshd allows MaxSessions, default 10, per connection)".into(),
                        message: format!("{} ({:?})", e.message(), e.code()),
                    }));
                    return Ok(true);
                }
            }
        }
        let channel = opening.channel.as_mut().expect("just opened");
        match channel.exec(&opening.request.command) {
            Ok(()) => {}
            Err(e) if is_eagain(&e) => {
                want.blocked(&self.session);
                return Ok(true);
            }
            Err(e) if is_socket_error(&e) => return Err(self.fatal("starting a command", &e)),
            Err(e) => {
                let opening = self.opening.pop_front().expect("front exists");
                let _ = opening.request.reply.send(Err(TransportError::Protocol {
                    host: self.name.to_string(),
                    context: "starting a command".into(),
                    message: format!("{} ({:?})", e.message(), e.code()),
                }));
                return Ok(true);
            }
        }
        let Opening { request, channel } = self.opening.pop_front().expect("front exists");
        let OpenRequest {
            id,
            command: _,
            stdin,
            stdout,
            stderr,
            pid,
            exit,
            reply,
        } = *request;
        let mut stderr = Output::new(1, stderr);
        if pid.is_some() {
            stderr.marker = Some(Vec::new());
            stderr.pid = pid;
        }
        if reply.send(Ok(())).is_ok() {
            self.channels.push(Chan {
                id,
                channel: channel.expect("opened"),
                stdin: Some(stdin),
                stdin_pending: None,
                send_eof: true,
                eof_sent: false,
                outputs: [Output::new(0, stdout), stderr],
                phase: Phase::Running,
                exit: Some(exit),
            });
        } else {
            // The caller is gone: close the channel at once.
            let mut chan = Chan {
                id,
                channel: channel.expect("opened"),
                stdin: None,
                stdin_pending: None,
                send_eof: false,
                eof_sent: false,
                outputs: [Output::new(0, stdout), stderr],
                phase: Phase::Closing,
                exit: None,
            };
            for o in &mut chan.outputs {
                o.tx = None;
            }
            self.channels.push(chan);
        }
        Ok(true)
    }

    fn sleep(&mut self, want: &Want) -> Result<(), TransportError> {
        let mut timeout = want
            .timeout
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        if want.soon {
            timeout = timeout.min(Duration::from_millis(5));
        }
        let mut flags = PollFlags::empty();
        if want.read {
            flags |= PollFlags::POLLIN;
        }
        if want.write {
            flags |= PollFlags::POLLOUT;
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = vec![PollFd::new(self.waker.0.as_fd(), PollFlags::POLLIN)];
        if !flags.is_empty() {
            // Only when libssh2 waits for the socket: otherwise a readable socket (data for
            // a stream whose reader is slow) would make this loop spin.
            fds.push(PollFd::new(self.socket.as_fd(), flags));
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(TransportError::io(
                    &self.name,
                    "waiting for the socket",
                    e.into(),
                ));
            }
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            let _ = self.waker.0.read();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> Output {
        let (tx, _rx) = mpsc::channel(1);
        let mut o = Output::new(1, tx);
        o.marker = Some(Vec::new());
        o
    }

    #[test]
    fn marker_is_stripped() {
        let mut o = output();
        let (tx, rx) = watch::channel(None);
        o.pid = Some(tx);
        assert_eq!(o.strip_marker(b"drp-p", false), None);
        assert_eq!(
            o.strip_marker(b"id:1234\nhello", false),
            Some(Bytes::from_static(b"hello"))
        );
        assert_eq!(*rx.borrow(), Some(1234));
        assert_eq!(
            o.strip_marker(b"drp-pid:1\n", false),
            Some(Bytes::from_static(b"drp-pid:1\n"))
        );
    }

    #[test]
    fn foreign_stderr_passes_through() {
        let mut o = output();
        assert_eq!(
            o.strip_marker(b"Welcome!\n", false),
            Some(Bytes::from_static(b"Welcome!\n"))
        );
        let mut o = output();
        assert_eq!(o.strip_marker(b"drp", false), None);
        assert_eq!(o.strip_marker(b"", true), Some(Bytes::from_static(b"drp")));
    }

    #[allow(dead_code)]
    fn assert_send<T: Send>() {}

    #[test]
    fn send_bounds() {
        assert_send::<Pump>();
        assert_send::<Connection>();
    }
}
