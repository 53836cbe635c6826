//! A TCP fault proxy on loopback, between drp and a real server (moto): it forwards bytes
//! both ways and, on command, breaks things the way a dying server or network does — resets
//! open connections, refuses new ones, answers `503 Slow Down`, or resets a connection once
//! it has carried more than N bytes upstream (a link that drops large transfers).
//!
//! The server behind it stays alive, so once the proxy is healthy again, the data that did
//! reach the server is there for the next backup or the resume.
//!
//! ```ignore
//! let proxy = FaultProxy::start(moto_addr);
//! proxy.set(Fault::Refuse);        // "the server is down"
//! proxy.reset_all();               // RST every open connection now
//! proxy.set(Fault::None);          // back
//! ```
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use socket2::SockRef;

/// What the proxy does to new connections and to the bytes of open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Accept and reset at once (connection refused/reset, as a dead server's host does).
    Refuse,
    /// Answer every request with `503 Slow Down` and close, at most `remaining` times
    /// (counted in [`FaultProxy::served_503`]); then forward again.
    ServiceUnavailable { remaining: usize },
    /// Answer every request with this HTTP status and an S3 error body (`<Code>error</Code>`),
    /// as S3 answers a wrong secret key with `403 SignatureDoesNotMatch`; counted in
    /// [`FaultProxy::served_status`].
    Status {
        code: u16,
        reason: &'static str,
        error: &'static str,
    },
    /// Reset a connection once it has carried more than this many bytes upstream (request
    /// bodies); smaller requests pass.
    ResetUpstreamAfter(u64),
    /// Reset a connection once it has carried more than this many bytes downstream
    /// (response bodies).
    ResetDownstreamAfter(u64),
}

#[derive(Debug)]
struct State {
    fault: Mutex<Fault>,
    /// Open connections (client side, server side), to reset them on command.
    open: Mutex<Vec<(usize, TcpStream, TcpStream)>>,
    next_id: AtomicUsize,
    stopped: AtomicBool,
    connections: AtomicUsize,
    resets: AtomicUsize,
    served_503: AtomicUsize,
    served_status: AtomicUsize,
    upstream_bytes: AtomicU64,
    downstream_bytes: AtomicU64,
}

/// The proxy; stops accepting when dropped (connections in flight are reset).
#[derive(Debug)]
pub struct FaultProxy {
    /// `127.0.0.1:PORT` the clients connect to.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            fault: Mutex::new(Fault::None),
            open: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            resets: AtomicUsize::new(0),
            served_503: AtomicUsize::new(0),
            served_status: AtomicUsize::new(0),
            upstream_bytes: AtomicU64::new(0),
            downstream_bytes: AtomicU64::new(0),
        });
        let accept_state = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accept_state.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let state = accept_state.clone();
                thread::spawn(move || serve(client, upstream, state));
            }
        });
        FaultProxy { addr, state }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault for what comes next (new connections, and bytes on open ones).
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Resets every open connection now (the peer sees ECONNRESET).
    pub fn reset_all(&self) {
        let open: Vec<_> = self.state.open.lock().unwrap().drain(..).collect();
        for (_, client, server) in open {
            reset(&client);
            reset(&server);
            self.state.resets.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections reset by a fault so far.
    pub fn resets(&self) -> usize {
        self.state.resets.load(Ordering::SeqCst)
    }

    /// `503` answers given so far.
    pub fn served_503(&self) -> usize {
        self.state.served_503.load(Ordering::SeqCst)
    }

    /// Answers given for [`Fault::Status`] so far.
    pub fn served_status(&self) -> usize {
        self.state.served_status.load(Ordering::SeqCst)
    }

    /// Bytes forwarded client → server so far.
    pub fn upstream_bytes(&self) -> u64 {
        self.state.upstream_bytes.load(Ordering::SeqCst)
    }

    /// Bytes forwarded server → client so far.
    pub fn downstream_bytes(&self) -> u64 {
        self.state.downstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        self.reset_all();
    }
}

/// Breaks the connection with an RST (as a crashed server's kernel or a middlebox does):
/// `SO_LINGER` 0 makes the last close of the socket send a reset instead of a FIN; shutting
/// down the reading side (which sends nothing) wakes the threads blocked on it, and they
/// drop their descriptors.
fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Read);
}

/// Whether [`reset`] was called on this socket.
fn is_reset(stream: &TcpStream) -> bool {
    SockRef::from(stream).linger().ok().flatten() == Some(Duration::ZERO)
}

fn serve(client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    state.connections.fetch_add(1, Ordering::SeqCst);
    let fault = *state.fault.lock().unwrap();
    match fault {
        Fault::Refuse => {
            reset(&client);
            state.resets.fetch_add(1, Ordering::SeqCst);
            return;
        }
        Fault::ServiceUnavailable { remaining } if remaining > 0 => {
            *state.fault.lock().unwrap() = if remaining > 1 {
                Fault::ServiceUnavailable {
                    remaining: remaining - 1,
                }
            } else {
                Fault::None
            };
            answer(client, 503, "Slow Down", "SlowDown");
            state.served_503.fetch_add(1, Ordering::SeqCst);
            return;
        }
        Fault::Status {
            code,
            reason,
            error,
        } => {
            answer(client, code, reason, error);
            state.served_status.fetch_add(1, Ordering::SeqCst);
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        reset(&client);
        return;
    };
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    state
        .open
        .lock()
        .unwrap()
        .push((id, client.try_clone().unwrap(), server.try_clone().unwrap()));
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up_state = state.clone();
    let up = thread::spawn(move || pump(c2, s2, &up_state, true));
    pump(server, client, &state, false);
    let _ = up.join();
    state.open.lock().unwrap().retain(|(i, _, _)| *i != id);
}

/// Reads the request's head (so the client is not reset while still writing it), then
/// answers `code reason` with an S3 error body, as S3 does (`503 Slow Down` / `SlowDown`
/// when throttling), and closes.
fn answer(mut client: TcpStream, code: u16, reason: &str, error: &str) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{error}</Code>\
         <Message>injected by the test's fault proxy</Message></Error>"
    );
    let _ = write!(
        client,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.flush();
    // Whatever body the client still sends is not read: close with RST after the answer
    // would lose it, so drain briefly, then close.
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies `from` → `to`, counting, and resets both once the fault says so.
fn pump(mut from: TcpStream, to: TcpStream, state: &State, upstream: bool) {
    let mut to = to;
    let mut buf = vec![0u8; 64 * 1024];
    let mut carried = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        carried += n as u64;
        let limit = match *state.fault.lock().unwrap() {
            Fault::ResetUpstreamAfter(limit) if upstream => Some(limit),
            Fault::ResetDownstreamAfter(limit) if !upstream => Some(limit),
            _ => None,
        };
        if limit.is_some_and(|limit| carried > limit) {
            state.resets.fetch_add(1, Ordering::SeqCst);
            reset(&from);
            reset(&to);
            return;
        }
        let counter = if upstream {
            &state.upstream_bytes
        } else {
            &state.downstream_bytes
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !is_reset(&from) && !is_reset(&to) {
        let _ = to.shutdown(Shutdown::Write);
    }
}
